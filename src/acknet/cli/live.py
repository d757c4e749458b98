"""The commands that drive a running emulation: up, get, exec, delete, down."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from acknet.cli.output import err, out, print_data, table
from acknet.daemon import launch
from acknet.dataplane.apply import builtin_server, processes
from acknet.dataplane.apply.netlink import remove_emulation
from acknet.dataplane.render import names
from acknet.errors import AcknetError, DaemonError, NotFound
from acknet.model.documents import Source


def require_root(command: str) -> None:
    if os.geteuid() != 0:
        err.print(f"acknet {command} needs root: it builds and enters network namespaces.", style="red")
        raise typer.Exit(1)


def up(sources: list[Source], name: str, state: Path | None) -> int:
    require_root("up")
    folder = launch.state_folder(name, state)
    api = launch.ensure_daemon(name, folder)
    try:
        revision = api.post("/apply", {"sources": [{"name": s.name, "text": s.text} for s in sources]})[
            "revision"
        ]
    except DaemonError as exc:
        err.print(str(exc), style="red", markup=False)
        return 1
    status: dict[str, Any] = {}
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[stage]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(f"acknet up {name}", total=6, stage="")
        while True:
            status = api.get("/status", timeout=10)
            progress.update(task, completed=status["done"], stage=status["stage"])
            if status["revision"] >= revision and status["phase"] in ("ready", "failed"):
                break
            time.sleep(0.2)
    if status["phase"] == "failed":
        err.print(f"acknet up {name} failed: {status['error']}", style="red", markup=False)
        return 1
    pods = api.get("/objects?kind=pods")["items"]
    running = sum(1 for p in pods if p["status"]["phase"] == "Running")
    out.print(f"emulation {name} is up (revision {revision}): {running} pod(s) running", highlight=False)
    for line in status["pending"]:
        err.print(f"pending: {line}", style="yellow", markup=False)
    for key in status["not_ready"]:
        err.print(f"not ready: {key} (its readiness probe fails)", style="yellow", markup=False)
    return 0


COLUMNS: dict[str, tuple[list[str], Any]] = {
    "pods": (
        ["NAMESPACE", "NAME", "READY", "STATUS", "IP", "NODE"],
        lambda p: (
            p["metadata"]["namespace"],
            p["metadata"]["name"],
            "1/1"
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"])
            else "0/1",
            p["status"]["phase"],
            p["status"].get("podIP"),
            p["spec"]["nodeName"],
        ),
    ),
    "nodes": (
        ["NAME", "POOL", "ZONE", "IP", "ENIS", "MAX PODS"],
        lambda n: (
            n["name"],
            n["nodePool"],
            n["zone"],
            n["ip"],
            " ".join(e["name"] for e in n["enis"]),
            n["maxPods"],
        ),
    ),
    "ecs": (
        ["NAME", "TYPE", "VSWITCH", "IP", "SECURITY GROUPS"],
        lambda n: (n["name"], n["instanceType"], n["vswitch"], n["ip"], ",".join(n["securityGroups"])),
    ),
    "vswitches": (
        ["NAME", "VPC", "ZONE", "CIDR", "GATEWAY", "FREE"],
        lambda v: (v["name"], v["vpc"], v["zone"], v["cidrBlock"], v["gateway"], v["free"]),
    ),
    "securitygroups": (
        ["NAME", "TYPE", "VPC", "RULES", "MEMBERS"],
        lambda g: (g["name"], g["type"], g["vpc"], len(g["rules"]), " ".join(g["members"])),
    ),
    "services": (
        ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "PORTS"],
        lambda s: (
            s["metadata"]["namespace"],
            s["metadata"]["name"],
            s["spec"]["type"],
            s["spec"]["clusterIP"],
            ",".join(f"{p['port']}/{p['protocol']}" for p in s["spec"]["ports"]),
        ),
    ),
    "ingress": (
        ["NAMESPACE", "NAME", "HOSTS", "ADDRESS", "PORTS", "SERVED"],
        lambda i: (
            i["metadata"]["namespace"],
            i["metadata"]["name"],
            ",".join(r.get("host", "*") for r in i["spec"].get("rules", [])) or "*",
            ",".join(x["ip"] for x in i["status"]["loadBalancer"].get("ingress", [])),
            "80, 443" if i["spec"].get("tls") else "80",
            next(
                (
                    "yes" if c["status"] == "True" else f"no: {c['reason']}: {c['message']}"
                    for c in i["status"]["conditions"]
                    if c["type"] == "Served"
                ),
                "",
            ),
        ),
    ),
    "slb": (
        ["NAME", "TYPE", "ADDRESS", "LISTENERS", "BACKENDS (healthy/all)"],
        lambda b: (
            b["name"],
            b["addressType"],
            b["address"],
            ",".join(f"{li['protocol']}/{li['port']}:{li['scheduler']}" for li in b["listeners"]),
            f"{sum(1 for x in b['backends'] if x['healthy'])}/{len(b['backends'])}",
        ),
    ),
}


def running_api(name: str, state: Path | None) -> Any:
    folder = launch.state_folder(name, state)
    api = launch.client(folder)
    if not api.alive():
        raise NotFound(f"emulation {name} is not running (no daemon at {folder}); start it with acknet up")
    return api


def get(kind: str, name: str, state: Path | None, output: str) -> int:
    from acknet.daemon.views import ALIASES

    kind = ALIASES.get(kind, kind)
    items = running_api(name, state).get(f"/objects?kind={kind}")["items"]
    if output != "table":
        print_data({"items": items}, output)
    elif kind in COLUMNS:
        columns, row = COLUMNS[kind]
        out.print(table("", columns, [row(i) for i in items]))
    return 0


def target_netns(name: str, state: Path | None, target: str) -> str:
    """TARGET of exec: ``NS/POD``, ``ecs/NAME`` or ``internet``.

    ``internet`` is the emulated Internet, whose clients are 203.0.113.0/24 (a process there may bind
    any of them); a hostNetwork pod is its node's namespace.
    """
    api = running_api(name, state)
    if target == "internet":
        return names.internet_netns(name)
    kind, _, rest = target.partition("/")
    if kind == "ecs":
        instances = api.get("/objects?kind=ecs")["items"] + api.get("/objects?kind=nodes")["items"]
        if rest not in {i["name"] for i in instances}:
            raise NotFound(f"no ECS instance or node named {rest!r}")
        return names.ecs_netns(name, rest)
    pods = api.get("/objects?kind=pods")["items"]
    pod = next((p for p in pods if f"{p['metadata']['namespace']}/{p['metadata']['name']}" == target), None)
    if pod is None:
        raise NotFound(f"no pod {target}; targets are NAMESPACE/POD, ecs/NAME or internet")
    if pod["status"]["phase"] != "Running":
        raise NotFound(f"pod {target} is {pod['status']['phase']}: {pod['status'].get('message', '')}")
    if pod["spec"].get("hostNetwork") or pod["status"].get("podIP") == pod["status"].get("hostIP"):
        # Only a hostNetwork pod has its node's address: it has no namespace of its own.
        return names.ecs_netns(name, pod["spec"]["nodeName"])
    return names.pod_netns(name, kind, rest)


def exec_in(name: str, state: Path | None, target: str, command: list[str]) -> None:
    require_root("exec")
    netns = target_netns(name, state, target)
    # `ip netns exec` also gives the process the pod's resolv.conf (/etc/netns/<ns>/resolv.conf).
    os.execvp("ip", ["ip", "netns", "exec", netns, *(command or ["sh"])])


def delete_pod(name: str, state: Path | None, target: str) -> int:
    namespace, _, pod = target.partition("/")
    if not pod:
        raise NotFound(f"{target!r}: name the pod as NAMESPACE/NAME")
    api = running_api(name, state)
    api.post("/pods/delete", {"namespace": namespace, "name": pod})
    status = api.get("/status")
    while status["phase"] == "applying":
        time.sleep(0.2)
        status = api.get("/status")
    if status["phase"] == "failed":
        err.print(
            f"pod {target} deleted, but its replacement failed: {status['error']}", style="red", markup=False
        )
        return 1
    out.print(f"pod {target} deleted", highlight=False)
    return 0


def down(name: str, state: Path | None) -> int:
    """Removes everything of the emulation, with the daemon's help if it runs, on its own if not."""
    require_root("down")
    names.check_emulation(name)
    folder = launch.state_folder(name, state)
    api = launch.client(folder, timeout=120)
    removed: list[str] = []
    if api.alive():
        try:
            removed = api.post("/shutdown", {"teardown": True})["removed"]
        except DaemonError as exc:
            err.print(
                f"the daemon could not tear down ({exc}); removing directly", style="yellow", markup=False
            )
    pid = launch.daemon_pid(folder)
    if pid is not None:
        _wait_gone(pid)
    # Whatever is left (the daemon was killed, or failed): processes first, while their namespaces exist.
    processes.stop_recorded(folder / "pids")
    builtin_pid = _read_pid(folder / "builtin.pid")
    if builtin_pid is not None:
        builtin_server.stop_builtin_server(builtin_pid)
    try:
        removed += remove_emulation(name)
    except AcknetError as exc:
        err.print(str(exc), style="red", markup=False)
        return 1
    processes.remove_netns_etc(names.netns_prefix(name))
    if folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
    out.print(f"emulation {name} is down ({len(set(removed))} namespaces removed)", highlight=False)
    return 0


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Waits for the daemon to leave; one that hangs is ended, if the pid is still acknetd's."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.1)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"acknet.daemon" in cmdline:
        os.kill(pid, signal.SIGKILL)


def probe(
    name: str,
    state: Path | None,
    sources: list[str] | None,
    destinations: list[str] | None,
    ports: list[str] | None,
    output: str,
) -> int:
    """Real packets (TCP connect plus HTTP to built-in ports; UDP request and reply), many at once."""
    api = running_api(name, state)
    try:
        result = api.post("/probe", {"from": sources, "to": destinations, "ports": ports})
    except DaemonError as exc:
        err.print(str(exc), style="red", markup=False)
        return 1
    if output == "json":
        print_data(result, "json")
        return 0
    rows = [
        (
            v["from"],
            v["to"],
            f"{v['port']}/{v['protocol']}",
            "allowed" if v["allowed"] else ("partial" if v.get("partial") else "denied"),
        )
        for v in result["verdicts"]
    ]
    out.print(table(f"Probe ({len(rows)} pairs and ports)", ["FROM", "TO", "PORT", "VERDICT"], rows))
    return 0
