"""The daemon's readiness path, without a kernel: which pods count as not ready, and what is reloaded.

The kernel loads (kube-proxy tables, DNS records) are replaced by recorders; the decisions are the
engine's own: the kubelet's failureThreshold, new pods not ready until probed, only a change of
readiness reloads, and a leaving pod is drained (terminating) in the tables still in place.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from acknet.controllers.plan import plan
from acknet.controllers.state import Plan
from acknet.daemon import engine as engine_module
from acknet.daemon.engine import Emulation

WEB = ("selector: {app: web}", "ports: [{port: 80, targetPort: http}]")


def files(docs, replicas: int = 2) -> str:
    deployment = docs.deployment("web", replicas)
    deployment = deployment.replace(
        "        ports:",
        "        readinessProbe: {tcpSocket: {port: 8080}, failureThreshold: 3}\n        ports:",
    )
    return docs.CLOUD + docs.cluster(docs.pool(count=1)) + deployment + docs.service("web", spec=WEB)


class Recorder:
    def __init__(self) -> None:
        self.loaded: list[Plan] = []

    def proxy(self, planned: Plan) -> int:
        self.loaded.append(planned)
        return 1

    def dns(self, planned: Plan) -> None:
        pass


@pytest.fixture
def emulation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Emulation, Recorder]:
    emu = Emulation("unit", tmp_path)
    recorder = Recorder()
    monkeypatch.setattr(emu, "_load_kube_proxy", recorder.proxy)
    monkeypatch.setattr(emu, "_load_dns", recorder.dns)
    monkeypatch.setattr(engine_module, "TERMINATION_GRACE", 0.0)
    emu.kernel = object()  # type: ignore[assignment]  # "something is loaded"
    return emu, recorder


def ready_of(planned: Plan) -> dict[str, bool]:
    return {ep.pod: ep.ready for sl in planned.endpoint_slices for ep in sl.endpoints if ep.pod}


def test_failure_threshold_then_back(docs, load, emulation) -> None:
    emu, _ = emulation
    planned = plan(load(files(docs)))
    pod = planned.pods[0]
    emu.ready[pod.key] = True
    for _ in range(2):
        emu._observe_readiness(planned, pod, ok=False)
        assert emu.ready[pod.key] is True, "failureThreshold 3: still ready"
    emu._observe_readiness(planned, pod, ok=False)
    assert emu.ready[pod.key] is False
    emu._observe_readiness(planned, pod, ok=True)
    assert emu.ready[pod.key] is True
    # Never ready yet: the first failure keeps it not ready.
    other = planned.pods[1]
    emu._observe_readiness(planned, other, ok=False)
    assert emu.ready[other.key] is False


def test_new_pods_are_not_ready_until_probed(docs, load, emulation) -> None:
    emu, _ = emulation
    resources = load(files(docs))
    first = plan(resources)
    assert emu._not_ready(first) == {p.key for p in first.pods}, "a fresh `up`: nobody probed yet"
    emu.plan = first
    bigger = plan(load(files(docs, replicas=3)), previous=first)
    (new,) = {p.key for p in bigger.pods} - {p.key for p in first.pods}
    assert emu._not_ready(bigger) == {new}, "pods of the previous plan keep their endpoints"
    emu.ready[new] = True
    assert emu._not_ready(bigger) == frozenset()


def test_only_a_change_of_readiness_reloads(docs, load, emulation) -> None:
    emu, recorder = emulation
    emu.plan = plan(load(files(docs)))
    victim, other = (p.key for p in emu.plan.pods)
    emu.ready.update({victim: True, other: True})
    assert emu._apply_readiness() is False and not recorder.loaded
    emu.ready[victim] = False
    assert emu._apply_readiness() is True
    (loaded,) = recorder.loaded
    assert ready_of(loaded) == {victim: False, other: True}
    assert emu.plan is loaded
    assert emu._apply_readiness() is False, "nothing changed since"
    emu.ready[victim] = True
    assert emu._apply_readiness() is True
    assert ready_of(recorder.loaded[-1]) == {victim: True, other: True}


def test_leaving_pods_are_drained_first(docs, load, emulation) -> None:
    emu, recorder = emulation
    resources = load(files(docs))
    emu.plan = plan(resources)
    victim = emu.plan.pods[0]
    after = plan(resources, previous=emu.plan, retired=frozenset({victim.key}))
    emu._drain_leaving(after)
    (draining,) = recorder.loaded
    states = {
        ep.pod: (ep.ready, ep.serving, ep.terminating)
        for sl in draining.endpoint_slices
        for ep in sl.endpoints
    }
    assert states[victim.key] == (False, True, True)
    assert all(v == (True, True, False) for k, v in states.items() if k != victim.key)
    # Nothing leaves: nothing to drain.
    recorder.loaded.clear()
    emu._drain_leaving(dataclasses.replace(emu.plan))
    assert not recorder.loaded
