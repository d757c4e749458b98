"""Readiness probes as the kubelet sends them: from the node's network namespace to the pod.

httpGet succeeds on a status of 200-399, tcpSocket on an accepted connection, exec on exit status 0
(Kubernetes probe semantics). Used to decide when ``acknet up`` may return and which endpoints are
ready.
"""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from ipaddress import IPv4Address

from acknet.dataplane.apply.nsutil import NetnsSwitcher


@dataclass(frozen=True, slots=True)
class ReadinessCheck:
    kind: str  # "httpGet" | "tcpSocket" | "exec"
    node_netns: str
    pod_netns: str
    ip: IPv4Address
    port: int = 0
    path: str = "/"
    command: tuple[str, ...] = ()
    timeout: float = 1.0


def run_check(check: ReadinessCheck, switcher: NetnsSwitcher) -> tuple[bool, str]:
    """(ready, why) for one probe."""
    if check.kind == "exec":
        try:
            result = subprocess.run(
                ["ip", "netns", "exec", check.pod_netns, *check.command],
                capture_output=True,
                timeout=check.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False, f"exec probe timed out after {check.timeout:g}s"
        except OSError as exc:
            return False, f"exec probe failed: {exc}"
        return result.returncode == 0, f"exec probe exited {result.returncode}"
    try:
        sock = switcher.socket(check.node_netns, socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        return False, f"no socket in {check.node_netns}: {exc}"
    with sock:
        sock.settimeout(check.timeout)
        try:
            sock.connect((str(check.ip), check.port))
            if check.kind == "tcpSocket":
                return True, "tcp connect succeeded"
            request = (
                f"GET {check.path} HTTP/1.1\r\nHost: {check.ip}:{check.port}\r\nConnection: close\r\n\r\n"
            )
            sock.sendall(request.encode())
            head = sock.recv(64).decode("latin-1")
        except OSError as exc:
            return False, f"{check.kind} probe to {check.ip}:{check.port}: {exc}"
    parts = head.split()
    if len(parts) >= 2 and parts[0].startswith("HTTP/") and parts[1].isdigit():
        code = int(parts[1])
        return 200 <= code < 400, f"HTTP probe returned {code}"
    return False, "HTTP probe got no status line"
