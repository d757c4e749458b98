"""Bring-up of a live emulation at scale: 1,000 Terway pods on 25 nodes, built and torn down for real.

Measured in one run, beside a yardstick measured on the same machine in the same run:

(a) the yardstick: creating and deleting bare namespaces the way acknet does (a thread unshares and
    bind-mounts, a netlink socket in the namespace sets lo up), and with ``ip netns add``/``del``
    for reference;
(b) ``acknet up`` end to end through the CLI (daemon start included), with the time of each of the
    daemon's reconcile stages, and the apply step alone (``apply_kernel_plan`` in this process, then
    the security-group loads);
(c) ``acknet down`` of the whole emulation;
(d) memory per built-in pod: RSS of the built-in server and of the daemon before and after ``up``,
    divided by the number of pods.

Needs root. The emulation is named ``bbup`` and lives in a temporary state folder; it is always
taken down, whatever fails.

    .venv/bin/python bench/bringup.py [--nodes 25] [--pods-per-node 40] [--profile FILE] [--json]
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from acknet.controllers.plan import plan as make_plan  # noqa: E402
from acknet.daemon import launch  # noqa: E402
from acknet.dataplane.apply import nftables  # noqa: E402
from acknet.dataplane.apply.netlink import (  # noqa: E402
    _Applier,
    _create_netns,
    _remove_netns,
    apply_kernel_plan,
    list_netns,
    remove_emulation,
)
from acknet.dataplane.render import names  # noqa: E402
from acknet.dataplane.render.kernel import Namespace  # noqa: E402
from acknet.dataplane.render.security_group import (  # noqa: E402
    render_security_groups,
    replace_script,
    table_name,
)
from acknet.dataplane.render.topology import render_topology  # noqa: E402
from acknet.model.build import build_resources  # noqa: E402
from acknet.store.files import read_sources  # noqa: E402

NAME = "bbup"
YARDSTICK = "bbys"  # the bare namespaces of the yardstick: never an acknet emulation's prefix
ACKNET = [str(Path(sys.executable).parent / "acknet")]
DEPLOYMENT_REPLICAS = 20


def generate(folder: Path, nodes: int, pods: int) -> None:
    """A VPC with node, pod and data VSwitches; a Terway cluster; Deployments; two ECS instances; SGs."""
    half = (nodes + 1) // 2
    text = textwrap.dedent(f"""\
        apiVersion: acknet.io/v1
        kind: VPC
        metadata: {{name: bench}}
        spec: {{cidrBlock: 10.0.0.0/8}}
        ---
        apiVersion: acknet.io/v1
        kind: VSwitch
        metadata: {{name: node-h}}
        spec: {{vpc: bench, cidrBlock: 10.0.0.0/24, zoneId: cn-hangzhou-h}}
        ---
        apiVersion: acknet.io/v1
        kind: VSwitch
        metadata: {{name: node-i}}
        spec: {{vpc: bench, cidrBlock: 10.0.1.0/24, zoneId: cn-hangzhou-i}}
        ---
        apiVersion: acknet.io/v1
        kind: VSwitch
        metadata: {{name: pod-h}}
        spec: {{vpc: bench, cidrBlock: 10.16.0.0/16, zoneId: cn-hangzhou-h}}
        ---
        apiVersion: acknet.io/v1
        kind: VSwitch
        metadata: {{name: pod-i}}
        spec: {{vpc: bench, cidrBlock: 10.17.0.0/16, zoneId: cn-hangzhou-i}}
        ---
        apiVersion: acknet.io/v1
        kind: VSwitch
        metadata: {{name: data-h}}
        spec: {{vpc: bench, cidrBlock: 10.8.0.0/24, zoneId: cn-hangzhou-h}}
        ---
        apiVersion: acknet.io/v1
        kind: SecurityGroup
        metadata: {{name: nodes}}
        spec:
          vpc: bench
          rules:
          - {{direction: ingress, policy: accept, priority: 1, ipProtocol: icmp, portRange: -1/-1, sourceCidrIp: 10.0.0.0/8}}
          - {{direction: ingress, policy: accept, priority: 1, ipProtocol: tcp, portRange: 30000/32767, sourceCidrIp: 10.0.0.0/8}}
        ---
        apiVersion: acknet.io/v1
        kind: SecurityGroup
        metadata: {{name: db}}
        spec:
          vpc: bench
          rules:
          - {{direction: ingress, policy: accept, priority: 1, ipProtocol: tcp, portRange: 5432/5432, sourceCidrIp: 10.16.0.0/15}}
          - {{direction: egress, policy: drop, priority: 5, ipProtocol: tcp, portRange: 25/25, destCidrIp: 0.0.0.0/0}}
        ---
        apiVersion: acknet.io/v1
        kind: ECSInstance
        metadata: {{name: db-1}}
        spec: {{vswitch: data-h, instanceType: ecs.g7.large, securityGroups: [db], ports: [{{port: 5432, protocol: TCP}}]}}
        ---
        apiVersion: acknet.io/v1
        kind: ECSInstance
        metadata: {{name: db-2}}
        spec: {{vswitch: data-h, instanceType: ecs.g7.large, securityGroups: [db], ports: [{{port: 5432, protocol: TCP}}]}}
        ---
        apiVersion: acknet.io/v1
        kind: Cluster
        metadata: {{name: ack}}
        spec:
          vpc: bench
          networkPlugin: terway
          podVSwitches: [pod-h, pod-i]
          networkPolicy: true
          securityGroups: [nodes]
          nodePools:
          - {{name: pool-h, instanceType: ecs.g7.xlarge, vswitches: [node-h], count: {half}}}
          - {{name: pool-i, instanceType: ecs.g7.xlarge, vswitches: [node-i], count: {nodes - half}}}
        """)
    (folder / "cloud.yaml").write_text(text)
    docs = []
    deployments, rest = divmod(pods, DEPLOYMENT_REPLICAS)
    sizes = [DEPLOYMENT_REPLICAS] * deployments + ([rest] if rest else [])
    for d, replicas in enumerate(sizes):
        docs.append(
            textwrap.dedent(f"""\
            apiVersion: apps/v1
            kind: Deployment
            metadata: {{name: app-{d}, namespace: ns-{d % 5}}}
            spec:
              replicas: {replicas}
              selector: {{matchLabels: {{app: app-{d}}}}}
              template:
                metadata: {{labels: {{app: app-{d}}}}}
                spec:
                  containers:
                  - name: main
                    image: registry.example/app:1
                    ports: [{{name: http, containerPort: 8080}}]
            """)
        )
    (folder / "apps.yaml").write_text("---\n".join(docs))


def rss_kb(pid: int | None) -> int:
    if pid is None:
        return 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def cli(*args: str) -> float:
    start = time.perf_counter()
    result = subprocess.run([*ACKNET, *args], capture_output=True, text=True, check=False, cwd=ROOT)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(
            f"acknet {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )
    return elapsed


class StageWatch:
    """Polls the daemon's status while ``up`` runs and notes when each reconcile stage was first seen,
    so the report can say where the time of ``up`` goes (the daemon's own stages, not this process's)."""

    def __init__(self, state: Path) -> None:
        self.api = launch.client(state, timeout=5)
        self.seen: list[tuple[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.start = time.perf_counter()

    def __enter__(self) -> StageWatch:
        self.start = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                status = self.api.get("/status")
            except Exception:  # a status that fails to come is not worth failing the benchmark for
                continue
            stage = f"{status.get('phase')}: {status.get('stage')}"
            if not self.seen or self.seen[-1][0] != stage:
                self.seen.append((stage, time.perf_counter() - self.start))

    def lines(self, end: float) -> list[str]:
        marks = [*self.seen, ("cli exits", end)]
        return [
            f"      {stage:<48} from {at:5.2f} s  ({nxt - at:4.2f} s)"
            for (stage, at), (_, nxt) in itertools.pairwise(marks)
        ]


def settle(timeout: float = 60.0) -> float:
    """Wait until the kernel has finished destroying deleted namespaces; return how long that took.

    Unmounting a namespace returns at once; the kernel destroys it (and its links) later in the
    ``netns`` workqueue, holding the RTNL lock in turns, which would slow whatever is measured next.
    A worker busy with that work names itself ``kworker/...+netns``.
    """
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        busy = False
        for comm in Path("/proc").glob("[0-9]*/comm"):
            try:
                busy = "+netns" in comm.read_text()
            except OSError:
                continue
            if busy:
                break
        if not busy:
            break
        time.sleep(0.05)
    return time.perf_counter() - start


def yardstick(count: int) -> dict[str, float]:
    """Bare namespaces: acknet's own mechanism (one at a time, and with apply's pool), then ``ip netns``."""
    nss = [f"{YARDSTICK}-{i}" for i in range(count)]
    assert not list_netns(YARDSTICK), "leftover yardstick namespaces"
    figures: dict[str, float] = {}
    try:
        settle()
        start = time.perf_counter()
        for ns in nss:
            _create_netns(Namespace(ns)).close()
        figures["acknet_mechanism_create_s"] = time.perf_counter() - start
        start = time.perf_counter()
        for ns in nss:
            _remove_netns(ns)
        figures["acknet_mechanism_delete_s"] = time.perf_counter() - start
        figures["acknet_mechanism_settle_s"] = settle()
        applier = _Applier()
        start = time.perf_counter()
        applier._create_namespaces([Namespace(ns) for ns in nss])
        applier.close()
        figures["acknet_pool_create_s"] = time.perf_counter() - start
        for ns in nss:
            _remove_netns(ns)
        settle()
        start = time.perf_counter()
        for ns in nss:
            subprocess.run(["ip", "netns", "add", ns], check=True)
        figures["ip_netns_add_s"] = time.perf_counter() - start
        start = time.perf_counter()
        for ns in nss:
            subprocess.run(["ip", "netns", "del", ns], check=True)
        figures["ip_netns_del_s"] = time.perf_counter() - start
        settle()
    finally:
        for ns in list_netns(YARDSTICK + "-"):
            _remove_netns(ns)
    return figures


def apply_alone(folder: Path, profile: str | None) -> dict[str, float]:
    """plan, render and apply in this process, timed step by step; then the namespaces are removed."""
    figures: dict[str, float] = {}
    start = time.perf_counter()
    planned = make_plan(build_resources(read_sources([str(folder)])))
    kernel = render_topology(planned, NAME)
    tables = render_security_groups(planned, NAME)
    figures["plan_render_s"] = time.perf_counter() - start
    figures["namespaces"] = len(kernel.namespaces)
    figures["kernel_objects"] = sum(
        len(x) for x in (kernel.links, kernel.addresses, kernel.routes, kernel.rules, kernel.neighbours)
    )
    profiler = cProfile.Profile() if profile else None
    try:
        start = time.perf_counter()
        if profiler:
            profiler.enable()
        apply_kernel_plan(kernel, None)
        if profiler:
            profiler.disable()
        figures["apply_kernel_s"] = time.perf_counter() - start
        start = time.perf_counter()
        for inst, text in sorted(tables.items()):
            nftables.load_script(names.ecs_netns(NAME, inst), replace_script(text, NAME), table_name(NAME))
        figures["security_groups_s"] = time.perf_counter() - start
        figures["security_group_tables"] = len(tables)
        start = time.perf_counter()
        assert not apply_kernel_plan(kernel, kernel).count()
        figures["second_apply_s"] = time.perf_counter() - start
    finally:
        start = time.perf_counter()
        remove_emulation(NAME)
        figures["remove_emulation_s"] = time.perf_counter() - start
        figures["remove_emulation_settle_s"] = settle()
    if profiler and profile:
        profiler.dump_stats(profile)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=25)
    parser.add_argument("--pods-per-node", type=int, default=40)
    parser.add_argument("--profile", help="write a cProfile of the in-process apply here")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/bringup.py needs root: it builds real network namespaces")
    if list_netns(names.netns_prefix(NAME)):
        raise SystemExit(f"namespaces of emulation {NAME} already exist; run acknet down --name {NAME} first")
    pods = args.nodes * args.pods_per_node
    fig: dict[str, float] = {"pods": pods, "load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="acknet-bringup-") as tmp:
        files, state = Path(tmp) / "files", Path(tmp) / "state"
        files.mkdir()
        generate(files, args.nodes, pods)
        fig.update(yardstick(pods))
        fig.update(apply_alone(files, args.profile))
        try:
            # Started by a process that exits at once, as `acknet up` does: a daemon that were our
            # child would stay a zombie after `down`, which waits for it to be gone.
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", "import sys; from pathlib import Path; from acknet.daemon import launch;"
                 " launch.ensure_daemon(sys.argv[1], Path(sys.argv[2]))", NAME, str(state)],
                check=True, cwd=ROOT,
            )  # fmt: skip
            fig["daemon_start_s"] = time.perf_counter() - start
            daemon_pid, builtin_pid = read_pid(state / "acknetd.pid"), read_pid(state / "builtin.pid")
            deadline = time.monotonic() + 10
            while builtin_pid is None and time.monotonic() < deadline:
                time.sleep(0.05)
                builtin_pid = read_pid(state / "builtin.pid")
            daemon_before, builtin_before = rss_kb(daemon_pid), rss_kb(builtin_pid)
            with StageWatch(state) as watch:
                fig["up_cli_s"] = cli("up", "-f", str(files), "--name", NAME, "--state", str(state))
            stages = watch.lines(fig["up_cli_s"])
            fig["daemon_rss_before_kb"], fig["daemon_rss_after_kb"] = daemon_before, rss_kb(daemon_pid)
            fig["builtin_rss_before_kb"], fig["builtin_rss_after_kb"] = builtin_before, rss_kb(builtin_pid)
            fig["namespaces_up"] = len(list_netns(names.netns_prefix(NAME)))
        finally:
            fig["down_cli_s"] = cli("down", "--name", NAME, "--state", str(state))
            fig["down_settle_s"] = settle()
            left = list_netns(names.netns_prefix(NAME))
            if left:
                remove_emulation(NAME)
                raise SystemExit(f"acknet down left {len(left)} namespaces behind")
    fig["load_after"] = os.getloadavg()[0]
    report(fig, args.json, stages)


def report(fig: dict[str, float], as_json: bool, stages: list[str]) -> None:
    pods = fig["pods"]
    yardstick_s = fig["acknet_mechanism_create_s"]  # 1,000 bare namespaces, one at a time
    pool_s = fig["acknet_pool_create_s"]  # the same, with apply's pool
    up_total = fig["daemon_start_s"] + fig["up_cli_s"]
    teardown_yardstick = fig["acknet_mechanism_delete_s"] + fig["acknet_mechanism_settle_s"]
    fig.update(
        yardstick_ns_per_s=pods / yardstick_s,
        yardstick_pool_ns_per_s=pods / pool_s,
        ip_netns_add_per_s=pods / fig["ip_netns_add_s"],
        apply_pods_per_s=pods / fig["apply_kernel_s"],
        up_total_s=up_total,
        up_pods_per_s=pods / up_total,
        builtin_kb_per_pod=(fig["builtin_rss_after_kb"] - fig["builtin_rss_before_kb"]) / pods,
        daemon_kb_per_pod=(fig["daemon_rss_after_kb"] - fig["daemon_rss_before_kb"]) / pods,
        teardown_s=fig["down_cli_s"] + fig["down_settle_s"],
    )
    if as_json:
        print(json.dumps({k: round(v, 3) for k, v in fig.items()}))
        return
    yps, pps = fig["yardstick_ns_per_s"], fig["yardstick_pool_ns_per_s"]
    lines = [
        f"topology: {pods:.0f} pods, {fig['namespaces']:.0f} namespaces, {fig['kernel_objects']:.0f} kernel"
        f" objects, {fig['security_group_tables']:.0f} security-group tables",
        f"(a) yardstick: {pods:.0f} bare namespaces",
        f"    acknet's mechanism, one at a time: create {yardstick_s:.2f} s ({yps:.0f}/s),"
        f" delete {fig['acknet_mechanism_delete_s']:.2f} s + kernel cleanup {fig['acknet_mechanism_settle_s']:.2f} s",
        f"    acknet's mechanism, apply's pool:  create {pool_s:.2f} s ({pps:.0f}/s)",
        f"    ip netns add / del (a process each): create {fig['ip_netns_add_s']:.2f} s"
        f" ({fig['ip_netns_add_per_s']:.0f}/s), delete {fig['ip_netns_del_s']:.2f} s",
        "(b) acknet up",
        f"    end to end (CLI): {up_total:.2f} s = daemon start {fig['daemon_start_s']:.2f} s + up"
        f" {fig['up_cli_s']:.2f} s -> {fig['up_pods_per_s']:.0f} pods/s"
        f" = {fig['up_pods_per_s'] / yps:.2f} x yardstick ({fig['up_pods_per_s'] / pps:.2f} x pooled)",
        "    where up's time goes (the daemon's stages, polled every 50 ms):",
        *stages,
        f"    apply alone (in process): {fig['apply_kernel_s']:.2f} s -> {fig['apply_pods_per_s']:.0f} pods/s"
        f" = {fig['apply_pods_per_s'] / yps:.2f} x yardstick ({fig['apply_pods_per_s'] / pps:.2f} x pooled);"
        f" plan+render {fig['plan_render_s']:.2f} s, security groups {fig['security_groups_s']:.2f} s,"
        f" second apply {fig['second_apply_s']:.3f} s",
        "(c) teardown",
        f"    acknet down (CLI): {fig['down_cli_s']:.2f} s, then the kernel's own cleanup {fig['down_settle_s']:.2f} s"
        f" ({(fig['down_cli_s'] + fig['down_settle_s']) / teardown_yardstick:.2f} x yardstick delete + cleanup"
        f" {teardown_yardstick:.2f} s); remove_emulation in process {fig['remove_emulation_s']:.2f} s"
        f" + cleanup {fig['remove_emulation_settle_s']:.2f} s",
        "(d) memory per built-in pod",
        f"    built-in server {fig['builtin_rss_before_kb'] / 1024:.1f} -> {fig['builtin_rss_after_kb'] / 1024:.1f} MB"
        f" = {fig['builtin_kb_per_pod']:.1f} KB/pod; daemon {fig['daemon_rss_before_kb'] / 1024:.1f} ->"
        f" {fig['daemon_rss_after_kb'] / 1024:.1f} MB = {fig['daemon_kb_per_pod']:.1f} KB/pod;"
        f" together {fig['builtin_kb_per_pod'] + fig['daemon_kb_per_pod']:.1f} KB/pod",
        "summary (issue 3)",
        f"    bare namespaces {yps:.0f}/s; bring-up {fig['up_pods_per_s']:.0f} pods/s end to end"
        f" ({fig['up_pods_per_s'] / yps:.2f} x bare), apply alone {fig['apply_pods_per_s']:.0f} pods/s"
        f" ({fig['apply_pods_per_s'] / yps:.2f} x bare); teardown {fig['teardown_s']:.2f} s;"
        f" built-in server {fig['builtin_kb_per_pod']:.1f} KB/pod",
        f"    aims: >= 300 pods/s {_met(fig['apply_pods_per_s'] >= 300)} by the apply (namespaces, links,"
        f" addresses, routes), {_met(fig['up_pods_per_s'] >= 300)} end to end; down < 5 s"
        f" {_met(fig['teardown_s'] < 5)}, memory < 100 KB/pod {_met(fig['builtin_kb_per_pod'] < 100)}",
        f"    load average {fig['load_before']:.1f} before, {fig['load_after']:.1f} after (2 CPUs shared:"
        " above ~1 the absolute figures drift, the ratios less)",
    ]
    print("\n".join(lines))


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


if __name__ == "__main__":
    main()
