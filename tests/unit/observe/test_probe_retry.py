"""Timeouts that say more about a busy host than about the path are probed again (observe/probe.py).

At 100 x 100 pods (bench/probe_scale.py) thousands of probes in flight queue behind one event loop and
one built-in server: allowed pairs time out. Those timeouts (fired late, or after the connection was
made) run again with fewer at once; a drop that timed out on time is a verdict and is not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from acknet.observe import probe
from acknet.observe.probe import REFUSED, TIMEOUT, ProbeJob, ProbeResult

JOB = ProbeJob("ns", "10.0.0.1", 8080, http=True, target="a")


@pytest.mark.parametrize(
    ("result", "again"),
    [
        pytest.param(ProbeResult(JOB, False, False, TIMEOUT, seconds=1.02), False, id="drop-on-time"),
        pytest.param(ProbeResult(JOB, False, False, TIMEOUT, seconds=2.4), True, id="timer-fired-late"),
        pytest.param(ProbeResult(JOB, True, False, TIMEOUT, seconds=1.1), True, id="connected-reply-queued"),
        pytest.param(ProbeResult(JOB, False, False, REFUSED, seconds=3.0), False, id="refused-is-a-verdict"),
        pytest.param(
            ProbeResult(JOB, True, True, None, seconds=3.0), False, id="answered-late-still-answered"
        ),
        pytest.param(
            ProbeResult(dataclasses.replace(JOB, timeout=5.0), False, False, TIMEOUT, seconds=4.0),
            False,
            id="within-its-own-longer-timeout",
        ),
    ],
)
def test_which_timeouts_are_run_again(result: ProbeResult, again: bool) -> None:
    assert probe._overloaded(result, 1.0) is again


class _Script:
    """A stand-in for ``_run_job``: what each target gives on each pass, and the width of each pass."""

    def __init__(self, outcomes: dict[str, list[ProbeResult]]) -> None:
        self.outcomes = outcomes
        self.passes: list[list[str]] = []
        self.widths: list[int] = []

    async def run(self, job: ProbeJob, switcher: Any, limit: Any, timeout: float) -> ProbeResult:
        return self.outcomes[job.target].pop(0)


@contextlib.contextmanager
def _scripted(monkeypatch: pytest.MonkeyPatch, script: _Script) -> Iterator[None]:
    real = asyncio.Semaphore

    class Width(real):  # type: ignore[misc, valid-type]
        def __init__(self, value: int = 1) -> None:
            script.widths.append(value)
            script.passes.append([])
            super().__init__(value)

    async def run(job: ProbeJob, switcher: Any, limit: Any, timeout: float) -> ProbeResult:
        script.passes[-1].append(job.target)
        return await script.run(job, switcher, limit, timeout)

    monkeypatch.setattr(probe, "_run_job", run)
    monkeypatch.setattr(probe, "NetnsSwitcher", contextlib.nullcontext)
    monkeypatch.setattr(asyncio, "Semaphore", Width)
    yield


def _job(target: str) -> ProbeJob:
    return dataclasses.replace(JOB, target=target)


def test_late_timeouts_run_again_with_fewer_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    ok = lambda t: ProbeResult(_job(t), True, True, None, seconds=0.01)  # noqa: E731
    script = _Script(
        {
            "allowed": [ok("allowed")],
            # Timed out 3 s after it started: the host, not the path. The second pass reaches it.
            "queued": [ProbeResult(_job("queued"), False, False, TIMEOUT, seconds=3.0), ok("queued")],
            # Timed out on time: a drop, final on the first pass.
            "dropped": [ProbeResult(_job("dropped"), False, False, TIMEOUT, seconds=1.0)],
        }
    )
    jobs = [_job(t) for t in ("allowed", "queued", "dropped")]
    with _scripted(monkeypatch, script):
        results = probe.run_probes(jobs, timeout=1.0, concurrency=4096)
    assert [r.allowed for r in results] == [True, True, False]
    assert script.passes == [["allowed", "queued", "dropped"], ["queued"]]
    assert script.widths[1] < script.widths[0]


def test_a_timeout_that_stays_is_not_retried_forever(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connected and never answered (an L4 listener whose backends are all down: the handshake only)."""
    silent = [ProbeResult(_job("silent"), True, False, TIMEOUT, seconds=1.1) for _ in range(probe._PASSES)]
    script = _Script({"silent": silent})
    with _scripted(monkeypatch, script):
        (result,) = probe.run_probes([_job("silent")], timeout=1.0, concurrency=64)
    assert result.error == TIMEOUT and not result.allowed
    assert len(script.passes) == 2  # the second pass changed nothing: the timeout is the answer
