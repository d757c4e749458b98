"""Workload processes inside namespaces, and the record of them that lets ``down`` end them later.

A container with a ``command`` runs via ``ip netns exec``, which also bind-mounts
``/etc/netns/<namespace>/resolv.conf`` over ``/etc/resolv.conf`` for that process: that is how a pod
sees the cluster DNS without touching the host's own resolver configuration. Every process started
gets a pid file in the emulation's state folder, so a later ``down`` (even after the daemon was
killed) ends exactly the processes acknet started, and no others.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from acknet.errors import DataplaneError

NETNS_ETC = Path("/etc/netns")


@dataclass(frozen=True, slots=True)
class Started:
    pid: int
    netns: str
    argv: tuple[str, ...]


def write_resolv_conf(netns: str, text: str) -> None:
    folder = NETNS_ETC / netns
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "resolv.conf").write_text(text)


def remove_netns_etc(prefix: str) -> None:
    """Removes /etc/netns/<prefix>* folders acknet wrote for its namespaces."""
    if NETNS_ETC.is_dir():
        for entry in NETNS_ETC.iterdir():
            if entry.name.startswith(prefix) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)


def start(netns: str, argv: Sequence[str], pid_dir: Path, label: str, log: Path) -> Started:
    """Starts ``argv`` inside ``netns`` in its own session, recording its pid as ``<label>.pid``."""
    pid_dir.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", netns, *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    except OSError as exc:
        raise DataplaneError(
            "start process", f"{label} in namespace {netns}", exc.errno, " ".join(argv)
        ) from exc
    (pid_dir / f"{label}.pid").write_text(f"{proc.pid}\n{netns}\n")
    return Started(proc.pid, netns, tuple(argv))


def alive(pid: int) -> bool:
    try:
        pid_done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pid_done = 0  # not our child (a restarted daemon adopted it): ask the kernel
    if pid_done == pid:
        return False
    return Path(f"/proc/{pid}").exists() and not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def _in_netns(pid: int, netns: str) -> bool:
    """Whether ``pid`` runs in the named namespace: what makes a recorded pid still ours."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/var/run/netns/{netns}").st_ino
    except OSError:
        return False


def stop(pid: int, netns: str, timeout: float = 3.0) -> None:
    """Ends the process group of ``pid`` if it still runs in ``netns`` (a recycled pid is left alone)."""
    if not _in_netns(pid, netns):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(0.05)


def stop_recorded(pid_dir: Path, label: str | None = None) -> int:
    """Ends recorded processes (all, or one label) and removes their pid files; returns how many."""
    if not pid_dir.is_dir():
        return 0
    count = 0
    for path in sorted(pid_dir.glob("*.pid")):
        if label is not None and path.stem != label:
            continue
        try:
            pid_text, netns = path.read_text().split()[:2]
            stop(int(pid_text), netns)
            count += 1
        except (OSError, ValueError):
            pass
        path.unlink(missing_ok=True)
    return count
