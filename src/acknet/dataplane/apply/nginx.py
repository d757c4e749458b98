"""NGINX in the Ingress controller pods: one master per pod, inside the pod's namespace, with its own
prefix (configuration, certificates, pid file, logs, temporary files) in the emulation's state folder:
``<state>/ingress/<pod namespace name>/``. Never the host's /etc/nginx or /var/log/nginx: every path is
given on the command line (``-p``, ``-c``, ``-e``) or is relative to the prefix.

A configuration takes effect in three steps: written as ``nginx.conf.next`` with the files it names,
checked with ``nginx -t`` in the pod's namespace, then moved over ``nginx.conf`` and the master told
to reload (SIGHUP). NGINX starts new workers with the new configuration and lets the old ones finish
the requests they hold, so an endpoint change fails no request in flight. When ``nginx -t`` names a
line that belongs to an Ingress, that Ingress is left out (and reported) and the rest is checked
again: one broken Ingress never keeps the others from being served.

Masters are recorded like every workload process (``pids/<label>.pid``), so ``acknet down`` ends
them even without the daemon; a master is only ever signalled after its command line shows its own
prefix, so a recycled pid is left alone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from acknet.controllers.state import Plan
from acknet.dataplane.apply import processes
from acknet.dataplane.render import names
from acknet.dataplane.render.ingress import (
    DEFAULT_CERT,
    IngressConfig,
    IngressProblem,
    controller_pods,
    render_ingress,
)
from acknet.errors import DataplaneError

NGINX = "/usr/sbin/nginx"
OPENSSL = "/usr/bin/openssl"
_NEXT = "nginx.conf.next"
_MAX_EXCLUSIONS = 20  # Ingresses one check may leave out before acknet gives up on the configuration
_ERROR_AT = re.compile(
    r"\[(?:emerg|alert|crit)\] (?:[0-9]+#[0-9]+: )?(?P<message>.*?) in (?P<file>\S+):(?P<line>[0-9]+)\s*$",
    re.M,
)


def master_argv(prefix: Path) -> list[str]:
    """The master's command line: prefix, configuration and early error log all inside ``prefix``."""
    return [
        NGINX,
        "-p",
        f"{prefix}/",
        "-c",
        str(prefix / "nginx.conf"),
        "-e",
        str(prefix / "logs" / "error.log"),
        "-g",
        "daemon off;",
    ]


def prepare_prefix(prefix: Path, default_cert: Path) -> None:
    for sub in ("logs", "tmp", "certs"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    target = prefix / DEFAULT_CERT
    if not target.exists():
        shutil.copyfile(default_cert, target)
        target.chmod(0o600)


def make_default_certificate(path: Path) -> None:
    """The controller's own certificate for hosts without one, as ingress-nginx makes its
    "Kubernetes Ingress Controller Fake Certificate" at start (a fresh key, self-signed)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    key, crt = path.with_suffix(".key.tmp"), path.with_suffix(".crt.tmp")
    argv = [
        OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
        "-subj", "/O=Acme Co/CN=Kubernetes Ingress Controller Fake Certificate",
        "-keyout", str(key), "-out", str(crt),
    ]  # fmt: skip
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataplaneError("make certificate", str(path), getattr(exc, "errno", None)) from exc
    if run.returncode != 0:
        raise DataplaneError("make certificate", str(path), None, run.stderr.strip()[-300:])
    path.write_text(crt.read_text() + key.read_text())
    path.chmod(0o600)
    key.unlink()
    crt.unlink()


def write_files(prefix: Path, files: Mapping[str, str]) -> None:
    for name, content in files.items():
        target = prefix / name
        if target.exists() and target.read_text() == content:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(content)
        tmp.chmod(0o600)
        os.replace(tmp, target)


def test_config(netns: str, prefix: Path, text: str) -> tuple[bool, str]:
    """``nginx -t`` of ``text`` (written as nginx.conf.next) in ``netns``: (ok, what nginx said)."""
    (prefix / _NEXT).write_text(text)
    argv = ["ip", "netns", "exec", netns, NGINX, "-t", "-q", "-p", f"{prefix}/", "-c", str(prefix / _NEXT),
            "-e", "stderr"]  # fmt: skip
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataplaneError("nginx -t", f"{prefix / _NEXT} in {netns}", getattr(exc, "errno", None)) from exc
    return run.returncode == 0, (run.stderr + run.stdout).strip()


def error_line(output: str) -> tuple[int, str] | None:
    """(line, message) of the first error ``nginx -t`` reports in the configuration checked."""
    for match in _ERROR_AT.finditer(output):
        if match["file"].endswith(_NEXT):
            return int(match["line"]), match["message"]
    return None


def commit_config(prefix: Path) -> None:
    os.replace(prefix / _NEXT, prefix / "nginx.conf")


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def is_master(pid: int, prefix: Path) -> bool:
    """Whether ``pid`` is an NGINX master started with ``prefix`` (and still alive). The master
    rewrites its title ("nginx: master process /usr/sbin/nginx -p PREFIX/ ..."), so the command
    line is searched as one string."""
    cmdline = _cmdline(pid).replace(b"\0", b" ")
    return b"nginx" in cmdline and f" {prefix}/ ".encode() in cmdline + b" " and processes.alive(pid)


def start_master(netns: str, prefix: Path, pid_dir: Path, label: str, log: Path) -> int:
    """Starts NGINX in ``netns`` on ``prefix/nginx.conf`` (already checked) and records its pid."""
    started = processes.start(netns, master_argv(prefix), pid_dir, label, log)
    return started.pid


def reload_master(pid: int, prefix: Path) -> None:
    """SIGHUP: NGINX re-reads nginx.conf, starts new workers and retires the old ones gracefully."""
    if not is_master(pid, prefix):
        raise DataplaneError("reload nginx", str(prefix), errno.ESRCH, f"pid {pid} is not its master")
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError as exc:
        raise DataplaneError("reload nginx", str(prefix), errno.ESRCH) from exc


def stop_master(pid: int, prefix: Path, timeout: float = 3.0) -> None:
    """Ends the master and its workers (its process group) if ``pid`` is still that master."""
    if not is_master(pid, prefix):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not processes.alive(pid):
                return
            time.sleep(0.05)


def recorded_pid(pid_dir: Path, label: str) -> int | None:
    try:
        return int((pid_dir / f"{label}.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class Master:
    pod: str  # "namespace/name"
    netns: str
    prefix: Path
    label: str
    pid: int
    text: str = ""  # the configuration it was last given


@dataclass
class ClusterState:
    config: IngressConfig | None = None
    problems: tuple[IngressProblem, ...] = ()
    error: str | None = None  # the configuration could not be loaded at all
    loaded_at: float = 0.0  # time.monotonic() of the last reload or start
    reloads: int = 0


@dataclass
class NginxIngress:
    """The NGINX masters of every Ingress controller pod of an emulation and what they were given."""

    emulation: str
    folder: Path  # the emulation's state folder
    pid_dir: Path
    log_dir: Path
    on_event: Callable[[str, str, str], None] | None = None
    masters: dict[str, Master] = field(default_factory=dict)  # netns -> master
    clusters: dict[str, ClusterState] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.folder / "ingress"

    def _event(self, kind: str, obj: str, detail: str) -> None:
        if self.on_event is not None:
            self.on_event(kind, obj, detail)

    def load(self, plan: Plan) -> int:
        """Brings every controller pod's NGINX to the configuration of the plan; returns how many
        masters were started or reloaded. Masters of pods that went away are ended."""
        changed = 0
        wanted: set[str] = set()
        for cluster in plan.resources.clusters:
            pods = controller_pods(plan, cluster)
            if not pods:
                self.clusters.pop(cluster, None)
                continue
            default_cert = self.root / "default.pem"
            make_default_certificate(default_cert)
            targets = []
            for pod in pods:
                netns = names.pod_netns(self.emulation, pod.namespace, pod.name)
                prefix = self.root / netns
                prepare_prefix(prefix, default_cert)
                targets.append((pod.key, netns, prefix))
                wanted.add(netns)
            state = self.clusters.setdefault(cluster, ClusterState())
            config = self._checked_config(plan, cluster, targets[0][1], targets[0][2], state)
            if config is None:
                continue
            state.config, state.problems, state.error = config, config.problems, None
            for key, netns, prefix in targets:
                changed += self._give(key, netns, prefix, config, state)
        for netns in set(self.masters) - wanted:
            master = self.masters.pop(netns)
            stop_master(master.pid, master.prefix)
            (self.pid_dir / f"{master.label}.pid").unlink(missing_ok=True)
        return changed

    def _checked_config(
        self, plan: Plan, cluster: str, netns: str, prefix: Path, state: ClusterState
    ) -> IngressConfig | None:
        """The configuration ``nginx -t`` accepts, Ingresses it rejects left out; None (the running
        configuration stays) when it rejects a line no Ingress owns."""
        excluded: dict[str, str] = {}
        for _ in range(_MAX_EXCLUSIONS + 1):
            config = render_ingress(plan, cluster, excluded)
            if state.config is not None and config.text == state.config.text and not excluded:
                return config  # checked before, unchanged
            write_files(prefix, config.files)
            ok, output = test_config(netns, prefix, config.text)
            if ok:
                return config
            found = error_line(output)
            owner = config.owner_of_line(found[0]) if found is not None else None
            if found is None or owner is None or owner in excluded:
                state.error = f"nginx -t rejected the configuration: {output[-500:]}"
                self._event("failed", f"ingress/{cluster}", state.error)
                return None
            excluded[owner] = f"nginx -t: {found[1]}"
        state.error = f"nginx -t rejected more than {_MAX_EXCLUSIONS} Ingresses"
        return None

    def _give(self, key: str, netns: str, prefix: Path, config: IngressConfig, state: ClusterState) -> int:
        """Starts the pod's master on ``config`` or reloads it; 0 when it already has it."""
        master = self.masters.get(netns)
        label = f"pod.{key.replace('/', '.')}.nginx"
        if master is None:
            pid = recorded_pid(self.pid_dir, label)
            if pid is not None and is_master(pid, prefix):  # a previous daemon's: adopt it
                master = Master(key, netns, prefix, label, pid)
                self.masters[netns] = master
        if master is not None and not is_master(master.pid, prefix):
            self._event("died", f"pod/{key}", "nginx master")
            del self.masters[netns]
            master = None
        if master is not None and master.text == config.text:
            return 0
        write_files(prefix, config.files)
        (prefix / _NEXT).write_text(config.text)
        commit_config(prefix)
        if master is None:
            pid = start_master(netns, prefix, self.pid_dir, label, self.log_dir / f"{label}.log")
            self.masters[netns] = Master(key, netns, prefix, label, pid, config.text)
        else:
            reload_master(master.pid, prefix)
            master.text = config.text
            state.reloads += 1
        state.loaded_at = time.monotonic()
        return 1

    def problems(self) -> dict[str, tuple[IngressProblem, ...]]:
        return {cluster: state.problems for cluster, state in self.clusters.items()}

    def errors(self) -> dict[str, str]:
        return {cluster: state.error for cluster, state in self.clusters.items() if state.error}

    def stop(self) -> None:
        for master in self.masters.values():
            stop_master(master.pid, master.prefix)
            (self.pid_dir / f"{master.label}.pid").unlink(missing_ok=True)
        self.masters.clear()
