"""What the end-to-end tests share: the `Emu` driver around the real `acknet` command, and the small
programs it runs inside pods and ECS instances to send real packets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
ACKNET = [sys.executable, "-m", "acknet.cli.main"]


# Programs run inside pods and ECS instances by `acknet exec`, with this interpreter.
HTTP_GET = """
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as r:
    body = r.read().decode()
try:
    print(json.dumps(json.loads(body)))
except ValueError:
    print(json.dumps({"status": r.status, "text": body}))
"""
TCP_CONNECT = """
import socket, sys
s = socket.socket(); s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); print("connected")
except TimeoutError:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
"""
UDP_ECHO = """
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(float(sys.argv[3]))
s.sendto(b"hello", (sys.argv[1], int(sys.argv[2])))
data, peer = s.recvfrom(65535)
print(json.dumps({"reply": json.loads(data), "from": peer[0]}))
"""


def netns_of(prefix: str) -> list[str]:
    """Names under /var/run/netns starting with ``prefix`` (what ``ip netns list`` shows)."""
    run = Path("/var/run/netns")
    return sorted(p.name for p in run.iterdir() if p.name.startswith(prefix)) if run.is_dir() else []


def processes_mentioning(text: str) -> list[int]:
    """Running processes whose command line contains ``text`` (the daemon and built-in server name
    their state folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class Emu:
    """One emulation under test: its name, its state folder, and the commands that drive it."""

    name: str
    state: Path
    tmp: Path

    @property
    def prefix(self) -> str:
        return f"{self.name}-"

    def acknet(self, *args: str, timeout: float = 90, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``acknet ARGS --name N --state DIR`` (the options go before a ``--``)."""
        args_list = list(args)
        split = args_list.index("--") if "--" in args_list else len(args_list)
        argv = [*args_list[:split], "--name", self.name, "--state", str(self.state), *args_list[split:]]
        run = subprocess.run(
            [*ACKNET, *argv], capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO
        )
        if check and run.returncode != 0:
            pytest.fail(
                f"acknet {' '.join(argv)} exited {run.returncode}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}"
            )
        return run

    def up(self, *paths: Path | str, check: bool = True) -> subprocess.CompletedProcess[str]:
        files = [arg for p in paths for arg in ("-f", str(p))]
        return self.acknet("up", *files, timeout=150, check=check)

    def get(self, kind: str) -> list[dict[str, Any]]:
        return json.loads(self.acknet("get", kind, "-o", "json").stdout)["items"]  # type: ignore[no-any-return]

    def pods(self) -> dict[str, dict[str, Any]]:
        """``NS/NAME`` -> pod, from ``acknet get pods -o json``."""
        return {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p for p in self.get("pods")}

    def exec(self, target: str, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return self.acknet("exec", target, "--", *cmd, timeout=timeout, check=False)

    def py(self, target: str, code: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Runs Python code inside TARGET (a pod or ``ecs/NAME``)."""
        return self.exec(target, sys.executable, "-c", code, *args, timeout=timeout)

    # -- real packets from inside a target --------------------------------------------------------
    def http(self, target: str, url: str, timeout: float = 3.0) -> dict[str, Any]:
        """GET ``url`` from inside TARGET; the JSON answer, or ``{"error": ...}`` when it fails."""
        run = self.py(target, HTTP_GET, url, str(timeout), timeout=timeout + 20)
        if run.returncode != 0:
            return {"error": (run.stderr or run.stdout).strip()[-500:]}
        return json.loads(run.stdout)  # type: ignore[no-any-return]

    def connect(self, target: str, ip: str, port: int, timeout: float = 1.5) -> str:
        """A TCP connect from inside TARGET: ``connected``, ``timeout`` or ``refused``."""
        run = self.py(target, TCP_CONNECT, ip, str(port), str(timeout), timeout=timeout + 20)
        assert run.returncode == 0, run.stderr
        return run.stdout.strip()

    def udp(self, target: str, ip: str, port: int, timeout: float = 2.0) -> dict[str, Any]:
        """One UDP datagram from inside TARGET; the JSON reply, or ``{"error": ...}``."""
        run = self.py(target, UDP_ECHO, ip, str(port), str(timeout), timeout=timeout + 20)
        if run.returncode != 0:
            return {"error": (run.stderr or run.stdout).strip()[-500:]}
        return json.loads(run.stdout)  # type: ignore[no-any-return]

    def daemon_pid(self) -> int | None:
        try:
            return int((self.state / "acknetd.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def wait_for(
        self, what: str, predicate: Callable[[], Any], timeout: float = 20.0, every: float = 0.3
    ) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
            time.sleep(every)
