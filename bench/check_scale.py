"""``acknet check`` at scale: 10,000 pods, 1,000 NetworkPolicies, 2,000 Services (issue 8, part 3).

Generates a Terway cluster with realistic label distributions (namespaces of teams and
environments, Deployments of 1-20 replicas in tiers, named container ports) and a mix of the
policy shapes people write (per-namespace default deny, tier-to-tier allows on named ports,
namespace selectors ANDed and ORed with pod selectors, egress lock-downs with DNS and endPort
ranges, ipBlocks, matchExpressions), then measures in one run, each in a fresh process so that its
peak RSS is its own:

- baseline: ``acknet validate`` + ``plan`` of the same files (what every ``check`` pays first);
- ``check -o matrix``: every pod to every pod on each destination's declared ports, through
  ``analysis.matrix`` (equivalence classes and bitsets), written to /dev/null;
- ``check -o json`` (every verdict with its reasons, streamed): a sample of sources (every 500th
  pod) to every pod, and the rate in verdicts per second, from which the full all-pairs JSON is
  projected (1.4 x 10^8 verdicts at 10,000 pods: output-bound, see docs/check-scale.md);
- the per-pair path as it was before the matrix (``Reachability.check``) on a sample of sources,
  projected to all pairs.

Times are printed as ratios to the baseline measured in the same run (these machines are noisy).

    .venv/bin/python bench/check_scale.py [--pods 10000] [--policies 1000] [--services 2000] [--json]
    .venv/bin/python bench/check_scale.py --profile      # cProfile of the matrix run, top functions
    .venv/bin/python bench/check_scale.py --write DIR    # only write the files
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TEAMS = ("pay", "shop", "search", "ads", "data", "infra", "ml", "core")
ENVS = ("prod", "prod", "prod", "staging", "dev")
# tier -> container ports (name, port, protocol); named ports are what policies mostly use.
TIERS: dict[str, tuple[tuple[str, int, str], ...]] = {
    "web": (("http", 8080, "TCP"),),
    "api": (("http", 8080, "TCP"), ("grpc", 9090, "TCP")),
    "db": (("pg", 5432, "TCP"),),
    "cache": (("redis", 6379, "TCP"),),
    "worker": (("metrics", 9100, "TCP"),),
    "dns": (("dns", 5353, "UDP"), ("dns-tcp", 5353, "TCP")),
}
TIER_WEIGHTS = (30, 30, 10, 10, 15, 5)
REPLICAS = (1, 2, 3, 3, 5, 5, 10, 20)


def _ns_name(i: int) -> str:
    return f"ns-{i}"


def k8s_objects(
    pods: int,
    policies: int,
    services: int,
    seed: int = 1,
    ip_block: tuple[str, str] = ("10.16.0.0/12", "10.17.0.0/16"),
    key_operators: bool = True,
) -> dict[str, str]:
    """The Kubernetes objects (file name -> YAML text): namespaces, Deployments, Services, policies.

    Deterministic for a seed. Only Kubernetes kinds, so network-config-analyzer reads the same files.
    """
    rng = random.Random(seed)
    namespaces = max(4, pods // 200)
    ns_labels = {}
    docs = []
    for n in range(namespaces):
        name = _ns_name(n)
        labels = {"team": TEAMS[n % len(TEAMS)], "env": ENVS[n % len(ENVS)]}
        ns_labels[name] = labels
        all_labels = {"kubernetes.io/metadata.name": name, **labels}
        docs.append(
            f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {json.dumps(all_labels)}}}\n"
        )
    files = {"namespaces.yaml": "---\n".join(docs)}

    deployments: list[tuple[str, str, str, str]] = []  # (ns, app, tier, version)
    docs = []
    total = 0
    d = 0
    while total < pods:
        ns = _ns_name(rng.randrange(namespaces))
        tier = rng.choices(list(TIERS), TIER_WEIGHTS)[0]
        replicas = min(rng.choice(REPLICAS), pods - total)
        app = f"app-{d}"
        version = rng.choice(("v1", "v1", "v2"))
        labels = {"app": app, "tier": tier, "version": version}
        if rng.random() < 0.2:
            labels["canary"] = "true"
        ports = ", ".join(
            f"{{name: {n}, containerPort: {p}, protocol: {proto}}}" for n, p, proto in TIERS[tier]
        )
        docs.append(
            textwrap.dedent(f"""\
            apiVersion: apps/v1
            kind: Deployment
            metadata: {{name: {app}, namespace: {ns}}}
            spec:
              replicas: {replicas}
              selector: {{matchLabels: {{app: {app}}}}}
              template:
                metadata: {{labels: {json.dumps(labels)}}}
                spec:
                  containers:
                  - name: main
                    image: registry.example/{tier}:1
                    ports: [{ports}]
            """)
        )
        deployments.append((ns, app, tier, version))
        total += replicas
        d += 1
    files["apps.yaml"] = "---\n".join(docs)

    docs = []
    for s in range(services):
        ns, app, tier, _ = deployments[s % len(deployments)]
        ports = ", ".join(
            f"{{name: {n}, port: {80 if n == 'http' else p}, targetPort: {n}, protocol: {proto}}}"
            for n, p, proto in TIERS[tier]
        )
        kind = "NodePort" if s % 25 == 0 else "ClusterIP"
        docs.append(
            f"apiVersion: v1\nkind: Service\nmetadata: {{name: svc-{s}, namespace: {ns}}}\n"
            f"spec: {{type: {kind}, selector: {{app: {app}}}, ports: [{ports}]}}\n"
        )
    files["services.yaml"] = "---\n".join(docs)

    by_ns: dict[str, list[tuple[str, str, str, str]]] = {}
    for dep in deployments:
        by_ns.setdefault(dep[0], []).append(dep)
    used = sorted(by_ns)
    docs = []
    for p in range(policies):
        ns = used[p % len(used)] if p < len(used) else rng.choice(used)
        docs.append(_policy(rng, p, ns, by_ns[ns], namespaces, ip_block, key_operators))
    files["policies.yaml"] = "---\n".join(docs)
    return files


def _policy(
    rng: random.Random,
    index: int,
    ns: str,
    apps: list[tuple[str, str, str, str]],
    namespaces: int,
    ip_block: tuple[str, str],
    key_operators: bool,
) -> str:
    """One NetworkPolicy of a shape chosen by weight; the first one in each namespace denies ingress."""
    name = f"pol-{index}"
    _, app, tier, _ = rng.choice(apps)
    port_names = [n for n, _, _ in TIERS[tier]]
    other_tier = rng.choice(list(TIERS))
    team = rng.choice(TEAMS)
    head = f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\n"
    if index < namespaces // 2:
        return head + "spec: {podSelector: {}, policyTypes: [Ingress]}\n"
    shape = rng.choices(
        ("tier", "ns-and-pod", "ns-or-pod", "egress-lock", "egress-range", "ipblock", "expr", "open", "udp"),
        (30, 15, 15, 10, 8, 5, 10, 4, 3),
    )[0]
    ports = "[" + ", ".join(f"{{port: {n}}}" for n in port_names[: rng.randint(1, len(port_names))]) + "]"
    if shape == "tier":
        spec = {
            "podSelector": {"matchLabels": {"tier": tier}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": other_tier}}}]}],
        }
        return _with_ports(head, spec, ports)
    if shape == "ns-and-pod":
        spec = {
            "podSelector": {"matchLabels": {"app": app}},
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {"matchLabels": {"env": "prod"}},
                            "podSelector": {"matchLabels": {"tier": other_tier}},
                        }
                    ]
                }
            ],
        }
        return _with_ports(head, spec, ports)
    if shape == "ns-or-pod":
        spec = {
            "podSelector": {"matchLabels": {"app": app}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {"namespaceSelector": {"matchLabels": {"team": team}}},
                        {"podSelector": {"matchLabels": {"tier": other_tier}}},
                    ]
                }
            ],
        }
        return _with_ports(head, spec, ports)
    if shape == "egress-lock":
        spec = {
            "podSelector": {"matchLabels": {"tier": tier}},
            "policyTypes": ["Egress"],
            "egress": [
                {"ports": [{"port": 5353, "protocol": "UDP"}, {"port": "dns-tcp"}]},
                {
                    "to": [{"podSelector": {"matchLabels": {"tier": other_tier}}}],
                    "ports": [{"port": "http"}, {"port": 5432}],
                },
                {"to": [{"namespaceSelector": {"matchLabels": {"team": team}}}]},
            ],
        }
        return head + "spec: " + json.dumps(spec) + "\n"
    if shape == "egress-range":
        spec = {
            "podSelector": {"matchLabels": {"app": app}},
            "policyTypes": ["Ingress", "Egress"],
            "egress": [{"ports": [{"port": 5400, "endPort": 9095, "protocol": "TCP"}]}],
            "ingress": [{"from": [{"namespaceSelector": {}}]}],
        }
        return head + "spec: " + json.dumps(spec) + "\n"
    if shape == "ipblock":
        spec = {
            "podSelector": {"matchLabels": {"app": app}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"ipBlock": {"cidr": ip_block[0], "except": [ip_block[1]]}}]}],
        }
        return _with_ports(head, spec, ports)
    if shape == "expr":
        expr = rng.choice(
            (
                {"key": "version", "operator": "NotIn", "values": ["v2"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "tier", "operator": "In", "values": [tier, other_tier]},
                {"key": "canary", "operator": "Exists"},
            )
        )
        if not key_operators and expr["operator"] in ("Exists", "DoesNotExist"):
            # The same pods without the key operators: canary is "true" or absent.
            expr = {
                "key": "canary",
                "operator": "In" if expr["operator"] == "Exists" else "NotIn",
                "values": ["true"],
            }
        spec = {
            "podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": [tier]}]},
            "ingress": [
                {
                    "from": [
                        {
                            "podSelector": {"matchExpressions": [expr]},
                            "namespaceSelector": {
                                "matchExpressions": [{"key": "team", "operator": "NotIn", "values": [team]}]
                            },
                        }
                    ]
                }
            ],
        }
        return _with_ports(head, spec, ports)
    if shape == "open":
        spec = {"podSelector": {"matchLabels": {"app": app}}, "ingress": [{}]}
        return head + "spec: " + json.dumps(spec) + "\n"
    spec = {
        "podSelector": {"matchLabels": {"tier": "dns"}},
        "ingress": [{"ports": [{"protocol": "UDP"}]}],
    }
    return head + "spec: " + json.dumps(spec) + "\n"


def _with_ports(head: str, spec: dict[str, object], ports: str) -> str:
    text = json.dumps(spec)
    # The first rule's ports, written in flow YAML after the JSON (JSON is YAML).
    rules = spec.get("ingress")
    if isinstance(rules, list) and rules and isinstance(rules[0], dict):
        rule = dict(rules[0])
        rule["ports"] = "@PORTS@"
        text = json.dumps({**spec, "ingress": [rule, *rules[1:]]}).replace('"@PORTS@"', ports)
    return head + "spec: " + text + "\n"


def cloud(pods: int) -> str:
    """A Terway cluster in one VPC with two zones, enough nodes (25 pods a node) and a node group."""
    nodes = max(2, pods // 25)
    per_zone = (nodes + 1) // 2
    text = textwrap.dedent("""\
        apiVersion: acknet.io/v1
        kind: VPC
        metadata: {name: big}
        spec: {cidrBlock: 10.0.0.0/8}
        ---
        apiVersion: acknet.io/v1
        kind: SecurityGroup
        metadata: {name: nodes}
        spec:
          vpc: big
          rules:
          - {direction: ingress, policy: accept, priority: 1, ipProtocol: icmp, portRange: -1/-1, sourceCidrIp: 0.0.0.0/0}
          - {direction: ingress, policy: accept, priority: 10, ipProtocol: tcp, portRange: 30000/32767, sourceCidrIp: 10.0.0.0/8}
          - {direction: egress, policy: drop, priority: 5, ipProtocol: tcp, portRange: 25/25, destCidrIp: 0.0.0.0/0}
        """)
    pools = []
    for z, zone in enumerate(("cn-hangzhou-h", "cn-hangzhou-i")):
        text += textwrap.dedent(f"""\
            ---
            apiVersion: acknet.io/v1
            kind: VSwitch
            metadata: {{name: node-{zone[-1]}}}
            spec: {{vpc: big, cidrBlock: 10.{z}.0.0/18, zoneId: {zone}}}
            ---
            apiVersion: acknet.io/v1
            kind: VSwitch
            metadata: {{name: pod-{zone[-1]}}}
            spec: {{vpc: big, cidrBlock: 10.{16 + z}.0.0/16, zoneId: {zone}}}
            """)
        pools.append(
            f"  - {{name: pool-{zone[-1]}, instanceType: ecs.g7.xlarge, vswitches: [node-{zone[-1]}], "
            f"count: {per_zone}}}"
        )
    text += "---\napiVersion: acknet.io/v1\nkind: Cluster\nmetadata: {name: ack}\nspec:\n  vpc: big\n"
    text += "  podVSwitches: [pod-h, pod-i]\n  networkPolicy: true\n  securityGroups: [nodes]\n"
    text += "  serviceCidr: 172.16.0.0/16\n  nodePools:\n" + "\n".join(pools) + "\n"
    return text


def write(
    folder: Path, pods: int, policies: int, services: int, seed: int = 1, with_cloud: bool = True
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in k8s_objects(pods, policies, services, seed).items():
        (folder / name).write_text(text)
    if with_cloud:
        (folder / "cloud.yaml").write_text(cloud(pods))


# Each measurement runs in a fresh interpreter: its peak RSS (ru_maxrss) is its own.
MEASURE = """
import json, resource, sys, time
sys.path.insert(0, {src!r})
mode, folder, arg = sys.argv[1], sys.argv[2], sys.argv[3]
start = time.perf_counter()
from acknet.analysis.endpoints import EndpointIndex, resolve
from acknet.controllers.plan import plan
from acknet.model.build import build_resources
from acknet.store.files import read_sources
resources = build_resources(read_sources([folder]))
planned = plan(resources)
planned_at = time.perf_counter()
index = EndpointIndex.of(planned)
pods = list(index.pods.values())
figures = {{"plan_s": planned_at - start, "pods": len(pods)}}
if mode == "matrix":
    import io, os
    from acknet.analysis.matrix import ReachabilityMatrix
    from acknet.cli.check import write_matrix
    matrix = ReachabilityMatrix(planned, pods, pods)
    computed = time.perf_counter()
    with open(os.devnull, "w") as sink:
        write_matrix(matrix, sink)
    done = time.perf_counter()
    figures.update(compute_s=computed - planned_at, check_s=done - planned_at, classes=matrix.class_count,
                   verdicts=matrix.verdict_count, allowed=matrix.allowed_count)
elif mode == "json":
    import os
    from acknet.analysis.matrix import ReachabilityMatrix
    from acknet.cli.check import write_json
    from acknet.analysis.reachability import Reachability
    sources = pods[::int(arg)]
    with open(os.devnull, "w") as sink:
        count = write_json(Reachability(planned).verdicts(sources, pods), sink)
    done = time.perf_counter()
    figures.update(check_s=done - planned_at, verdicts=count, sources=len(sources))
elif mode == "pairs":
    from acknet.analysis.reachability import Reachability
    step = int(arg)
    sources = pods[::step]
    verdicts = Reachability(planned).check(sources, pods)
    done = time.perf_counter()
    figures.update(check_s=done - planned_at, verdicts=len(verdicts), sources=len(sources))
figures["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(figures))
"""


def measure(mode: str, folder: Path, arg: str = "") -> dict[str, float]:
    script = MEASURE.format(src=str(ROOT / "src"))
    result = subprocess.run(
        [sys.executable, "-c", script, mode, str(folder), arg], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"{mode}: {result.stderr}")
    figures: dict[str, float] = json.loads(result.stdout.splitlines()[-1])
    return figures


def profile(folder: Path) -> None:
    import cProfile
    import pstats

    sys.path.insert(0, str(ROOT / "src"))
    from acknet.analysis.endpoints import EndpointIndex
    from acknet.analysis.matrix import ReachabilityMatrix
    from acknet.controllers.plan import plan
    from acknet.model.build import build_resources
    from acknet.store.files import read_sources

    planned = plan(build_resources(read_sources([str(folder)])))
    pods = list(EndpointIndex.of(planned).pods.values())
    profiler = cProfile.Profile()
    profiler.enable()
    ReachabilityMatrix(planned, pods, pods)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pods", type=int, default=10000)
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--services", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sample", type=int, default=200, help="per-pair path: every Nth source")
    parser.add_argument("--json-sample", type=int, default=500, help="-o json: every Nth source")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--profile", action="store_true", help="cProfile the matrix computation")
    parser.add_argument("--write", metavar="DIR", help="only write the generated files to DIR")
    args = parser.parse_args()
    if args.write:
        write(Path(args.write), args.pods, args.policies, args.services, args.seed)
        return
    with tempfile.TemporaryDirectory(prefix="acknet-check-") as tmp:
        folder = Path(tmp)
        write(folder, args.pods, args.policies, args.services, args.seed)
        if args.profile:
            profile(folder)
            return
        base = measure("plan", folder)
        matrix = measure("matrix", folder)
        as_json = measure("json", folder, str(args.json_sample))
        pairs = measure("pairs", folder, str(args.sample))
    pods = int(base["pods"])
    all_verdicts = matrix["verdicts"]
    json_rate = as_json["verdicts"] / max(as_json["check_s"], 1e-9)
    pair_rate = pairs["verdicts"] / max(pairs["check_s"], 1e-9)
    figures = {
        "pods": pods,
        "policies": args.policies,
        "services": args.services,
        "baseline_plan_s": round(base["plan_s"], 2),
        "baseline_peak_mb": round(base["peak_mb"]),
        "matrix_check_s": round(matrix["check_s"], 2),
        "matrix_compute_s": round(matrix["compute_s"], 2),
        "matrix_total_s": round(matrix["plan_s"] + matrix["check_s"], 2),
        "matrix_peak_mb": round(matrix["peak_mb"]),
        "matrix_vs_plan": round(matrix["check_s"] / base["plan_s"], 2),
        "classes": int(matrix["classes"]),
        "all_pairs_verdicts": int(all_verdicts),
        "allowed": int(matrix["allowed"]),
        "json_sources": int(as_json["sources"]),
        "json_verdicts": int(as_json["verdicts"]),
        "json_check_s": round(as_json["check_s"], 2),
        "json_peak_mb": round(as_json["peak_mb"]),
        "json_vs_plan": round(as_json["check_s"] / base["plan_s"], 2),
        "json_verdicts_per_s": round(json_rate),
        "json_all_pairs_projected_s": round(all_verdicts / json_rate),
        "per_pair_sources": int(pairs["sources"]),
        "per_pair_check_s": round(pairs["check_s"], 2),
        "per_pair_peak_mb": round(pairs["peak_mb"]),
        "per_pair_verdicts_per_s": round(pair_rate),
        "per_pair_all_pairs_projected_s": round(all_verdicts / pair_rate),
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"input: {pods} running pods, {args.policies} policies, {args.services} Services")
    print(f"baseline validate + plan:     {base['plan_s']:.2f} s, peak {base['peak_mb']:.0f} MB")
    print(
        f"check -o matrix, all pairs:   {matrix['check_s']:.2f} s after plan (x{figures['matrix_vs_plan']} the "
        f"baseline; {figures['matrix_total_s']} s in all), peak {matrix['peak_mb']:.0f} MB; "
        f"{figures['classes']} classes, {all_verdicts:,} verdicts, {figures['allowed']:,} allowed"
    )
    print(
        f"check -o json, {figures['json_sources']} sources x all pods: {as_json['check_s']:.2f} s "
        f"(x{figures['json_vs_plan']}), {figures['json_verdicts']:,} verdicts, {json_rate:,.0f}/s, peak "
        f"{as_json['peak_mb']:.0f} MB; all pairs projected {figures['json_all_pairs_projected_s']:,} s"
    )
    print(
        f"per-pair path (before): {figures['per_pair_sources']} sources x all pods: {pairs['check_s']:.2f} s, "
        f"{pair_rate:,.0f} verdicts/s, peak {pairs['peak_mb']:.0f} MB; all pairs projected "
        f"{figures['per_pair_all_pairs_projected_s']:,} s"
    )
    print("aim: under 10 s and 2 GB")


if __name__ == "__main__":
    main()
