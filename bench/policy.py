"""Network policy at scale: 1,000 pods and 500 policies, the time to enforce them and their per-packet cost.

Measured in one run, each beside a baseline measured on the same machine in the same run (these
machines are noisy; a ratio holds, an absolute time does not):

(a) **500 policies applied -> enforced**: the engine's own ``_load_policies`` (render every node's table
    and load it with one ``nft -f`` transaction per node) going from the cluster without policies to the
    cluster with the 500. Baseline: the same call loading the tables without policies (base chains and
    the pod veth set only) into fresh nodes.
(b) **one policy changed -> enforced**: the port of one policy's rule edited; ``_load_policies`` again
    (on each node whose pods it selects, that policy's chain is rewritten and the sets it uses change,
    in one transaction; the other nodes are untouched). Also one bare pod's label changed (selector
    sets edited, no rule touched). Baseline: one ``nft`` transaction that adds and deletes one set
    element in every node (the floor of any change to these tables).

``apply_*`` is the whole ``_load_policies`` call (it renders, diffs and loads); ``render_*`` is the
rendering alone, measured just before, so the kernel's share is the difference. Plans (controllers)
are timed apart: ``acknet up`` plans the whole emulation before any table.
(c) **per-packet cost**: iperf3 between two pods on two nodes of a small real emulation, with no
    policy and with the same 500 policies loaded (the destination selected by 50 of them, its allowing
    rule in the last one), several alternating rounds; the ratio of medians. Conntrack accepts
    established packets before any pod chain, so only a connection's first packet walks the chains.

What is built: by default (a) and (b) run on the 25 node namespaces of the 1,000-pod plan, created for
real, but not the 1,000 pod namespaces and veths (the policy tables name pod veths and addresses; they
load the same whether the veths exist or not, and the topology's own cost is bench/bringup.py's
subject). ``--real-pods`` builds the whole topology with ``apply_kernel_plan`` first (slow on 2 cores).
Plan and render times (pure Python) are printed apart from the kernel load.

Needs root. Namespaces are named ``polbench-…`` and ``polbthr-…``; all are removed at the end, whatever
fails. Only processes this script started are ended, by PID.

    sudo .venv/bin/python bench/policy.py [--nodes 25] [--pods 1000] [--policies 500] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from acknet.controllers.plan import plan as make_plan  # noqa: E402
from acknet.controllers.state import Plan  # noqa: E402
from acknet.daemon.engine import Emulation  # noqa: E402
from acknet.dataplane.apply import nftables  # noqa: E402
from acknet.dataplane.apply.netlink import apply_kernel_plan, list_netns, remove_emulation  # noqa: E402
from acknet.dataplane.render import names  # noqa: E402
from acknet.dataplane.render import policy as policy_render  # noqa: E402
from acknet.dataplane.render.kernel import KernelPlan, Namespace  # noqa: E402
from acknet.dataplane.render.topology import render_topology  # noqa: E402
from acknet.model.build import build_resources  # noqa: E402
from acknet.model.documents import Source  # noqa: E402

SCALE = "polbench"
THROUGHPUT = "polbthr"
NAMESPACES = 10
IPERF_PORT = 5201


def cloud(nodes: int, extra_cluster: str = "") -> str:
    return textwrap.dedent(
        f"""\
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
        metadata: {{name: pod-h}}
        spec: {{vpc: bench, cidrBlock: 10.16.0.0/16, zoneId: cn-hangzhou-h}}
        ---
        apiVersion: acknet.io/v1
        kind: SecurityGroup
        metadata: {{name: open}}
        spec:
          vpc: bench
          rules:
          - {{direction: ingress, policy: accept, priority: 1, ipProtocol: all, portRange: -1/-1, sourceCidrIp: 10.0.0.0/8}}
        ---
        apiVersion: acknet.io/v1
        kind: Cluster
        metadata: {{name: ack}}
        spec:
          vpc: bench
          networkPlugin: terway
          podVSwitches: [pod-h]
          networkPolicy: true
          securityGroups: [open]
          nodePools:
          - {{name: pool, instanceType: ecs.g7.4xlarge, vswitches: [node-h], count: {nodes}}}
        {extra_cluster}"""
    )


def workloads(pods: int) -> str:
    """Deployments of 20 replicas over ten namespaces (labelled team=<n>), each pod serving http 8080."""
    docs = [
        f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: ns-{n}, labels: {{team: t{n % 3}}}}}\n"
        for n in range(NAMESPACES)
    ]
    deployments, rest = divmod(pods, 20)
    for d, replicas in enumerate([20] * deployments + ([rest] if rest else [])):
        docs.append(
            textwrap.dedent(f"""\
            apiVersion: apps/v1
            kind: Deployment
            metadata: {{name: app-{d}, namespace: ns-{d % NAMESPACES}}}
            spec:
              replicas: {replicas}
              selector: {{matchLabels: {{app: app-{d}}}}}
              template:
                metadata: {{labels: {{app: app-{d}, tier: t{d % 4}}}}}
                spec:
                  containers: [{{name: main, image: app, ports: [{{name: http, containerPort: 8080}}]}}]
            """)
        )
    # One bare pod whose label (b) changes: a Deployment's template label would roll new pods out.
    docs.append(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: solo, namespace: ns-0, labels: {app: app-0, tier: t0}}\n"
        "spec: {containers: [{name: main, image: app, ports: [{name: http, containerPort: 8080}]}]}\n"
    )
    return "---\n".join(docs)


def policies(
    count: int,
    apps: int,
    target: str | None = None,
    allow_from: str | None = None,
    changed: int | None = None,
) -> str:
    """``count`` policies in the shapes people write: per-app allow lists by pod and namespace
    selectors, named and numeric ports, port ranges, ipBlocks with except, egress; a tenth are Calico
    policies with orders and Deny rules. With ``target``, the first ``count // 10`` also select pods
    labelled ``app: <target>`` and the last of them allows ``app: <allow_from>`` on the iperf port."""
    docs = []
    selecting_target = count // 10 if target else 0
    for i in range(count):
        app = f"app-{i % apps}"
        ns = f"ns-{(i % apps) % NAMESPACES}"
        peer = f"app-{(i * 7 + 3) % apps}"
        selector = f"{{matchLabels: {{app: {app}}}}}"
        if i < selecting_target:
            ns = "default"
            selector = f"{{matchLabels: {{app: {target}}}}}"
        if i % 10 == 9 and i >= selecting_target:
            docs.append(
                textwrap.dedent(f"""\
                apiVersion: projectcalico.org/v3
                kind: NetworkPolicy
                metadata: {{name: calico-{i}, namespace: {ns}}}
                spec:
                  order: {i}
                  selector: app == '{app}'
                  types: [Ingress, Egress]
                  ingress:
                  - {{action: Deny, protocol: TCP, source: {{selector: tier == 't{i % 4}'}}, destination: {{ports: [22]}}}}
                  - {{action: Allow, protocol: TCP, source: {{namespaceSelector: team == 't{i % 3}'}}, destination: {{ports: ['8000:8100', http]}}}}
                  egress:
                  - {{action: Deny, protocol: UDP, destination: {{nets: [10.99.{i % 256}.0/24]}}}}
                  - {{action: Allow}}
                """)
            )
            continue
        first_port = "8443" if i == changed else "http"  # the one policy changed in (b)
        ingress = [
            f"  - from: [{{podSelector: {{matchLabels: {{app: {peer}}}}}}}]\n    ports: [{{port: {first_port}}}]",
            f"  - from: [{{namespaceSelector: {{matchLabels: {{team: t{i % 3}}}}}, podSelector: "
            f"{{matchExpressions: [{{key: tier, operator: In, values: [t{i % 4}, t{(i + 1) % 4}]}}]}}}}]\n"
            f"    ports: [{{port: 8080}}, {{port: 9000, endPort: 9100, protocol: UDP}}]",
            f"  - from: [{{ipBlock: {{cidr: 10.{i % 200}.0.0/16, except: [10.{i % 200}.{i % 250}.0/24]}}}}]",
        ]
        if i == selecting_target - 1 and allow_from:
            ingress.append(
                f"  - from: [{{podSelector: {{matchLabels: {{app: {allow_from}}}}}}}]\n"
                f"    ports: [{{port: {IPERF_PORT}}}]"
            )
        egress = ""
        if i % 5 == 0:
            egress = (
                "  egress:\n"
                f"  - to: [{{podSelector: {{matchLabels: {{app: {peer}}}}}}}]\n"
                "  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}}]\n"
                "    ports: [{port: 53, protocol: UDP}]\n"
            )
        types = "[Ingress, Egress]" if egress else "[Ingress]"
        docs.append(
            f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: np-{i}, namespace: {ns}}}\n"
            f"spec:\n  podSelector: {selector}\n  policyTypes: {types}\n  ingress:\n"
            + "\n".join(ingress)
            + "\n"
            + egress
        )
    return "---\n".join(docs)


def build_plan(text: str, previous: Plan | None = None) -> tuple[Plan, float]:
    start = time.perf_counter()
    planned = make_plan(build_resources([Source("bench.yaml", text)]), previous=previous)
    return planned, time.perf_counter() - start


@contextmanager
def emulation_state(name: str) -> Iterator[Emulation]:
    """An Emulation object (its engine methods, no daemon); its namespaces are removed at the end."""
    with tempfile.TemporaryDirectory(prefix=f"{name}-") as tmp:
        emu = Emulation(name, Path(tmp))
        try:
            yield emu
        finally:
            remove_emulation(name)
            emu.switcher.close()
            assert not list_netns(names.netns_prefix(name)), f"namespaces of {name} left behind"


def node_namespaces_only(kernel: KernelPlan, emulation: str) -> KernelPlan:
    """The node namespaces of ``kernel`` alone, without sysctls (they name interfaces not built here)."""
    prefix = names.ecs_netns(emulation, "")
    nodes = [Namespace(ns.name) for ns in kernel.namespaces if ns.name.startswith(prefix)]
    return KernelPlan(namespaces=tuple(sorted(nodes, key=lambda n: n.name)))


def timed_load(emu: Emulation, planned: Plan, kernel: KernelPlan) -> tuple[float, float, int]:
    """(render seconds, render + load seconds, tables changed) of the engine's ``_load_policies``."""
    start = time.perf_counter()
    policy_render.render_policies(planned, emu.name)
    rendered = time.perf_counter() - start
    start = time.perf_counter()
    changed = emu._load_policies(planned, kernel)
    return rendered, time.perf_counter() - start, changed


def floor_edit(emu: Emulation, netns: list[str]) -> float:
    """One transaction per node adding and deleting one element of the pod veth set: the floor."""
    table = policy_render.table_name(emu.name)
    start = time.perf_counter()
    for ns in netns:
        header = f"{policy_render.TABLE_FAMILY} {table} {policy_render.POD_VETHS}"
        nftables.load_script(
            ns, f'add element {header} {{ "calibench" }}\ndelete element {header} {{ "calibench" }}\n', table
        )
    return time.perf_counter() - start


def scale(args: argparse.Namespace) -> dict[str, float]:
    base_text = cloud(args.nodes) + "---\n" + workloads(args.pods)
    apps = (args.pods + 19) // 20
    with_policies = base_text + "---\n" + policies(args.policies, apps)
    out: dict[str, float] = {}
    with emulation_state(SCALE) as emu:
        bare, out["plan_without_policies_s"] = build_plan(base_text)
        planned, out["plan_with_policies_s"] = build_plan(with_policies, previous=bare)
        pods = sum(1 for p in planned.pods if p.ip is not None and not p.namespace.startswith("kube-"))
        kernel = render_topology(planned, emu.name)
        if args.real_pods:
            start = time.perf_counter()
            apply_kernel_plan(kernel, None)
            out["topology_apply_s"] = time.perf_counter() - start
        else:
            kernel = node_namespaces_only(kernel, emu.name)
            apply_kernel_plan(kernel, None)
        nodes = [names.ecs_netns(emu.name, node) for node in policy_render.render_policies(planned, emu.name)]
        print(f"scale: {pods} pods on {len(nodes)} nodes, {args.policies} policies", file=sys.stderr)

        # Baseline: the tables without any policy, into fresh nodes.
        _, out["baseline_load_no_policies_s"], _ = timed_load(emu, bare, kernel)
        # (a) the 500 policies arrive.
        out["render_500_s"], out["apply_500_s"], out["tables_500"] = timed_load(emu, planned, kernel)
        sizes = [len(t.splitlines()) for t in emu.policy_tables.values()]
        out["table_lines_max"] = max(sizes)
        out["table_lines_total"] = sum(sizes)
        # Baseline for (b): the floor of any change.
        out["baseline_floor_edit_s"] = floor_edit(emu, nodes)
        # (b) one policy changed: the port of np-1's first rule.
        changed_text = base_text + "---\n" + policies(args.policies, apps, changed=1)
        assert changed_text != with_policies
        after, out["plan_after_change_s"] = build_plan(changed_text, previous=planned)
        out["render_one_policy_s"], out["apply_one_policy_s"], out["tables_one_policy"] = timed_load(
            emu, after, kernel
        )
        # One pod's label: selector sets change, no rule (set element edits).
        relabel = changed_text.replace(
            "name: solo, namespace: ns-0, labels: {app: app-0, tier: t0}",
            "name: solo, namespace: ns-0, labels: {app: app-0, tier: t1}",
        )
        assert relabel != changed_text
        relabelled, _ = build_plan(relabel, previous=after)
        out["render_label_s"], out["apply_label_s"], out["tables_label"] = timed_load(emu, relabelled, kernel)
    out["ratio_500_vs_no_policies"] = out["apply_500_s"] / out["baseline_load_no_policies_s"]
    out["ratio_one_policy_vs_floor"] = out["apply_one_policy_s"] / out["baseline_floor_edit_s"]
    out["ratio_label_vs_floor"] = out["apply_label_s"] / out["baseline_floor_edit_s"]
    return out


# -- (c) per-packet cost --------------------------------------------------------------------------------


def throughput_files(with_policies: bool, count: int) -> str:
    pods = "".join(
        textwrap.dedent(f"""\
            ---
            apiVersion: v1
            kind: Pod
            metadata: {{name: {name}, namespace: default, labels: {{app: {name}}}}}
            spec: {{nodeName: ack-pool-{i}, containers: [{{name: main, ports: [{{containerPort: 8080}}]}}]}}
            """)
        for i, name in enumerate(("src", "dst"))
    )
    text = cloud(2) + pods
    if with_policies:
        text += "---\n" + policies(count, 50, target="dst", allow_from="src")
    return text


def wait_ready(emu: Emulation, revision: int) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = emu.status
        if status.revision == revision and status.phase in ("ready", "failed"):
            if status.phase == "failed":
                raise SystemExit(f"apply failed: {status.error}")
            return
        time.sleep(0.05)
    raise SystemExit("apply did not finish in 300 s")


def iperf(emu: Emulation, seconds: float) -> float:
    src = names.pod_netns(emu.name, "default", "src")
    dst = names.pod_netns(emu.name, "default", "dst")
    assert emu.plan is not None
    (ip,) = [str(p.ip) for p in emu.plan.pods if p.key == "default/dst"]
    server = subprocess.Popen(
        ["ip", "netns", "exec", dst, "iperf3", "-s", "-1", "-p", str(IPERF_PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.3)
        run = subprocess.run(
            ["ip", "netns", "exec", src, "iperf3", "-c", ip, "-p", str(IPERF_PORT), "-t", str(seconds), "-J"],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=False,
        )
        if run.returncode != 0:
            raise SystemExit(f"iperf3 failed: {run.stdout[-500:]} {run.stderr[-500:]}")
        return float(json.loads(run.stdout)["end"]["sum_received"]["bits_per_second"])
    finally:
        server.wait(timeout=10) if server.poll() is not None else server.kill()
        server.wait(timeout=10)


def per_packet(args: argparse.Namespace) -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix=f"{THROUGHPUT}-") as tmp:
        emu = Emulation(THROUGHPUT, Path(tmp))
        try:
            emu.start()
            none, loaded = [], []
            for _ in range(args.rounds):
                wait_ready(emu, emu.submit([Source("bench.yaml", throughput_files(False, args.policies))]))
                none.append(iperf(emu, args.seconds))
                wait_ready(emu, emu.submit([Source("bench.yaml", throughput_files(True, args.policies))]))
                dst = names.ecs_netns(THROUGHPUT, "ack-pool-1")
                assert "jump knp/default/np-" in emu.policy_tables[dst], "dst is not under the policies"
                loaded.append(iperf(emu, args.seconds))
            out["iperf_no_policy_gbps"] = statistics.median(none) / 1e9
            out["iperf_500_policies_gbps"] = statistics.median(loaded) / 1e9
            out["ratio_throughput_500_vs_none"] = statistics.median(loaded) / statistics.median(none)
            out["iperf_rounds"] = args.rounds
        finally:
            emu.teardown()
            remove_emulation(THROUGHPUT)
            assert not list_netns(names.netns_prefix(THROUGHPUT)), "namespaces left behind"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=25)
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--policies", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3, help="alternating iperf3 rounds (no policy, 500)")
    parser.add_argument("--seconds", type=float, default=3.0, help="iperf3 duration per round")
    parser.add_argument("--real-pods", action="store_true", help="build every pod namespace and veth first")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root: builds network namespaces")
    results = {} if args.skip_scale else scale(args)
    if not args.skip_throughput:
        results.update(per_packet(args))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for key, value in results.items():
            shown = f"{value * 1000:9.1f} ms" if key.endswith("_s") else f"{value:9.3f}"
            print(f"{key:34} {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
