"""NGINX for the layer-7 listeners of CLB instances, one process per instance inside its namespace.

The configuration comes whole from render/slb_l7.py; this module writes it and the certificates into
the instance's folder (under the emulation's state folder), starts NGINX in the instance's namespace
through processes.py (so its pid is recorded and ``down`` ends it even after the daemon died), tests
every new configuration with ``nginx -t`` before it is used, and reloads with SIGHUP: NGINX's graceful
reload, where the old workers finish the requests they have and the new ones take the new upstreams.

It is a small helper of its own: apply/nginx.py runs the Ingress controller's NGINX and has another
owner; the two share nothing but the binary. NGINX never runs in the host's namespace here: every
start and test goes through ``ip netns exec`` into the instance's namespace.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from acknet.dataplane.apply import processes
from acknet.dataplane.render.slb_l7 import ProxyConfig
from acknet.errors import DataplaneError

NGINX = "nginx"
_START_WAIT = 10.0  # seconds for a new NGINX to bind its listeners and write its pid file


def label_of(netns: str) -> str:
    """The pid file label of an instance's proxy (``<label>.pid`` in the emulation's pid folder)."""
    return f"slb-proxy.{netns}"


def _argv(config: ProxyConfig, *extra: str) -> list[str]:
    return [NGINX, "-p", config.folder, "-c", config.conf_path, "-e", config.error_log, *extra]


def write_files(config: ProxyConfig) -> bool:
    """The configuration, certificates and temporary folders of ``config``; True when a file changed.
    Keys are readable by root only."""
    folder = Path(config.folder)
    (folder / "tmp").mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    changed = False
    for name, text in ((Path(config.conf_path).name, config.conf), *config.files):
        path = folder / name
        try:
            if path.read_text() == text:
                continue
        except OSError:
            pass
        tmp = path.with_suffix(path.suffix + ".new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(tmp, path)
        changed = True
    return changed


def test_config(config: ProxyConfig) -> None:
    """``nginx -t`` in the instance's namespace: a configuration NGINX would refuse is never loaded."""
    try:
        run = subprocess.run(
            ["ip", "netns", "exec", config.netns, *_argv(config, "-t", "-q")],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataplaneError("test proxy configuration", f"slb/{config.lb}", None, str(exc)) from exc
    if run.returncode != 0:
        raise DataplaneError(
            "test proxy configuration", f"slb/{config.lb}", None, (run.stderr or run.stdout).strip()[-400:]
        )


def _in_netns(pid: int, netns: str) -> bool:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/var/run/netns/{netns}").st_ino
    except OSError:
        return False


def running(pid: int, netns: str) -> bool:
    """Whether ``pid`` is still an NGINX master in ``netns`` (a recycled pid is not ours)."""
    if not processes.alive(pid) or not _in_netns(pid, netns):
        return False
    try:
        return b"nginx" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def adopt(config: ProxyConfig, pid_dir: Path) -> int | None:
    """The proxy a previous daemon started for this instance, if it still runs there."""
    try:
        pid_text, netns = (pid_dir / f"{label_of(config.netns)}.pid").read_text().split()[:2]
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return pid if netns == config.netns and running(pid, netns) else None


def start(config: ProxyConfig, pid_dir: Path, log: Path) -> int:
    """Starts NGINX for ``config`` in its namespace; returns once its listeners are bound (its pid file
    is written after the listening sockets are opened)."""
    write_files(config)
    test_config(config)
    pid_file = Path(config.pid_path)
    pid_file.unlink(missing_ok=True)
    started = processes.start(config.netns, _argv(config), pid_dir, label_of(config.netns), log)
    deadline = time.monotonic() + _START_WAIT
    while time.monotonic() < deadline:
        if pid_file.exists():
            return started.pid
        if not processes.alive(started.pid):
            break
        time.sleep(0.05)
    stop(config.netns, pid_dir)
    detail = ""
    with contextlib.suppress(OSError):
        detail = Path(config.error_log).read_text()[-400:]
    raise DataplaneError("start proxy", f"slb/{config.lb} in {config.netns}", None, detail or "no pid file")


def reload(config: ProxyConfig, pid: int) -> None:
    """Writes ``config`` and has NGINX load it gracefully (SIGHUP); a bad one is refused before."""
    write_files(config)
    test_config(config)
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        raise DataplaneError("reload proxy", f"slb/{config.lb} (pid {pid})", exc.errno) from exc


def stop(netns: str, pid_dir: Path) -> None:
    """Ends the recorded proxy of ``netns`` (its whole process group) and forgets its pid file."""
    processes.stop_recorded(pid_dir, label_of(netns))
