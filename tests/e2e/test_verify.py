"""``acknet verify`` and ``acknet trace --name/--live`` on a running emulation of examples/quickstart.

verify must find no disagreement between check (from the emulation's own files) and probe (real
packets); a trace from the emulation must be the trace from the files, and its real packet must agree.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from e2e_support import ACKNET, EXAMPLES, REPO, Emu, netns_of

from conftest import _teardown

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces"),
]

QUICKSTART = EXAMPLES / "quickstart"


@contextmanager
def running(example: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emu]:
    """An emulation of ``example`` named ``vfy`` + 6 hex; taken down (and checked gone) whatever happens."""
    name = "vfy" + secrets.token_hex(3)
    assert not netns_of(f"{name}-")
    tmp = tmp_path_factory.mktemp(name)
    emu = Emu(name, tmp / "state", tmp)
    try:
        emu.up(example)
        yield emu
    finally:
        _teardown(emu)


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emu]:
    with running(QUICKSTART, tmp_path_factory) as emu:
        yield emu


def pod_named(emu: Emu, prefix: str) -> str:
    return next(key for key in sorted(emu.pods()) if key.startswith(prefix))


def test_verify_finds_no_disagreement(quickstart: Emu) -> None:
    run = quickstart.acknet("verify", "-o", "json", timeout=240, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    data = json.loads(run.stdout)
    assert data["compared"] > 50
    assert data["disagreements"] == []
    text = quickstart.acknet("verify", timeout=240).stdout
    assert "0 disagreement(s)" in text


def test_verify_shop(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The full example: Terway shared and exclusive ENI (terway-masq on its nodes), ECS instances,
    Services of every type."""
    with running(EXAMPLES / "shop", tmp_path_factory) as shop:
        run = shop.acknet("verify", "-o", "json", timeout=240, check=False)
        assert run.returncode == 0, run.stdout + run.stderr
        data = json.loads(run.stdout)
        assert data["compared"] > 250
        assert data["disagreements"] == []


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ("demo/frontend", "svc/demo/backend:8080"),  # allowed by the backend's policy
        ("kube-system/coredns", "svc/demo/backend:8080"),  # not from the frontend: dropped
        ("demo/backend", "demo/frontend:80"),
    ],
    ids=["frontend-to-backend", "coredns-to-backend", "backend-to-frontend-pod"],
)
def test_trace_live_agrees(quickstart: Emu, src: str, dst: str) -> None:
    source = pod_named(quickstart, src)
    name, _, port = dst.rpartition(":")
    if not name.startswith("svc/"):
        name = pod_named(quickstart, name)
    run = quickstart.acknet(
        "trace", source, f"{name}:{port}", "--live", "-o", "json", timeout=120, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    data = json.loads(run.stdout)
    assert data["live"]["agrees"], data
    text = quickstart.acknet("trace", source, f"{name}:{port}", "--live", timeout=120).stdout
    assert "agrees with the trace" in text
    # The emulation's files give the trace the files give.
    argv = [*ACKNET, "trace", "-f", str(QUICKSTART), source, f"{name}:{port}", "-o", "json"]
    from_files = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True, cwd=REPO)
    assert json.loads(from_files.stdout)["hops"] == data["hops"]
