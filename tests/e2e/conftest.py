"""End-to-end fixtures: whole emulations driven through the real ``acknet`` command, real packets.

Every test gets its own emulation name (``e2e`` + 6 hex) and state folder. Whatever the test did,
teardown runs ``acknet down`` for it and then checks that no namespace of that emulation is left.
Root-only tests (``@pytest.mark.root``) are skipped without root.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator

import pytest
from e2e_support import ACKNET, REPO, Emu, netns_of, processes_mentioning


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: builds real network namespaces")
    for item in items:
        if "root" in item.keywords and "tests/e2e" in str(item.fspath):
            item.add_marker(skip)


def _make(tmp_path_factory: pytest.TempPathFactory) -> Emu:
    name = "e2e" + secrets.token_hex(3)
    assert len(name) <= 16 and name.isalnum() and name.islower()
    assert not netns_of(f"{name}-")
    tmp = tmp_path_factory.mktemp(name)
    return Emu(name, tmp / "state", tmp)


def _teardown(emu: Emu) -> None:
    down = subprocess.run(
        [*ACKNET, "down", "--name", emu.name, "--state", str(emu.state)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    left = netns_of(emu.prefix)
    assert down.returncode == 0, f"acknet down failed:\n{down.stdout}\n{down.stderr}"
    assert not left, f"namespaces of {emu.name} left behind: {left}"
    assert not processes_mentioning(str(emu.state)), f"processes of {emu.name} left behind"


@pytest.fixture
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emu]:
    """A fresh emulation name and state folder; ``acknet down`` runs for it at teardown, always."""
    emulation = _make(tmp_path_factory)
    try:
        yield emulation
    finally:
        _teardown(emulation)


@pytest.fixture
def emu2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emu]:
    """A second emulation, for tests that run two side by side."""
    emulation = _make(tmp_path_factory)
    try:
        yield emulation
    finally:
        _teardown(emulation)
