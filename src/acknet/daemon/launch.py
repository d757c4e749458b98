"""Starting the daemon in the background, and finding it again."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from acknet.api.transport import ApiClient
from acknet.errors import DaemonError

SOCKET = "acknetd.sock"  # the daemon's REST API, in the state folder

DEFAULT_STATE_ROOT = Path("/var/lib/acknet")


def state_folder(name: str, state: Path | None) -> Path:
    return state if state is not None else DEFAULT_STATE_ROOT / name


def client(folder: Path, timeout: float = 300.0) -> ApiClient:
    return ApiClient(folder / SOCKET, timeout=timeout)


def ensure_daemon(name: str, folder: Path, wait: float = 15.0) -> ApiClient:
    """The running daemon of this state folder, started first if there is none."""
    api = client(folder)
    if api.alive():
        return api
    folder.mkdir(parents=True, exist_ok=True)
    log = (folder / "acknetd.log").open("ab")
    subprocess.Popen(
        [sys.executable, "-m", "acknet.daemon", "--name", name, "--state", str(folder)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # outlives the command that started it
    )
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if api.alive():
            return api
        time.sleep(0.1)
    tail = (folder / "acknetd.log").read_text(errors="replace")[-2000:]
    raise DaemonError(f"acknetd for {name} did not start within {wait:g}s; its log ends with:\n{tail}")


def daemon_pid(folder: Path) -> int | None:
    try:
        return int((folder / "acknetd.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
