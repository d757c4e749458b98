"""validate + plan at scale: 2,000 nodes, 60,000 pods, 10,000 Services, 1,000 policies.

Prints the time and peak memory of `acknet plan` on generated files, beside a baseline measured in
the same run on the same files: parsing them with libyaml alone (the least any YAML tool must do).
Each measurement runs in a fresh process so its peak RSS is its own. Aim (issue 2): under 10 s and
1 GB on a 2-core machine.

    .venv/bin/python bench/plan_scale.py [--nodes 2000] [--pods 60000] [--services 10000] [--policies 1000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

NAMESPACES = 100
REPLICAS = 10


def generate(folder: Path, nodes: int, pods: int, services: int, policies: int) -> None:
    per_zone = (nodes + 1) // 2
    cloud = textwrap.dedent("""\
        apiVersion: acknet.io/v1
        kind: VPC
        metadata: {name: big}
        spec: {cidrBlock: 10.0.0.0/8}
        ---
        apiVersion: acknet.io/v1
        kind: SecurityGroup
        metadata: {name: nodes}
        spec: {vpc: big, rules: [{direction: ingress, ipProtocol: icmp, portRange: -1/-1, sourceCidrIp: 0.0.0.0/0}]}
        """)
    pools = []
    for z, zone in enumerate(("cn-hangzhou-h", "cn-hangzhou-i")):
        cloud += textwrap.dedent(f"""\
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
    cloud += "---\napiVersion: acknet.io/v1\nkind: Cluster\nmetadata: {name: ack}\nspec:\n  vpc: big\n"
    cloud += "  podVSwitches: [pod-h, pod-i]\n  networkPolicy: true\n  securityGroups: [nodes]\n"
    cloud += "  serviceCidr: 172.16.0.0/16\n  nodePools:\n" + "\n".join(pools) + "\n"
    (folder / "cloud.yaml").write_text(cloud)

    deployments = pods // REPLICAS
    docs = []
    for d in range(deployments):
        ns = f"ns-{d % NAMESPACES}"
        docs.append(
            textwrap.dedent(f"""\
            apiVersion: apps/v1
            kind: Deployment
            metadata: {{name: app-{d}, namespace: {ns}}}
            spec:
              replicas: {REPLICAS}
              selector: {{matchLabels: {{app: app-{d}}}}}
              template:
                metadata: {{labels: {{app: app-{d}, tier: t{d % 5}}}}}
                spec:
                  containers:
                  - name: main
                    image: registry.example/app:1
                    ports: [{{name: http, containerPort: 8080}}, {{name: metrics, containerPort: 9100}}]
            """)
        )
    (folder / "apps.yaml").write_text("---\n".join(docs))

    docs = []
    for s in range(services):
        d = s % deployments
        ns = f"ns-{d % NAMESPACES}"
        kind = "NodePort" if s % 20 == 0 else "ClusterIP"
        docs.append(
            textwrap.dedent(f"""\
            apiVersion: v1
            kind: Service
            metadata: {{name: svc-{s}, namespace: {ns}}}
            spec:
              type: {kind}
              selector: {{app: app-{d}}}
              ports: [{{name: http, port: 80, targetPort: http}}, {{name: metrics, port: 9100, targetPort: 9100}}]
            """)
        )
    (folder / "services.yaml").write_text("---\n".join(docs))

    docs = []
    for p in range(policies):
        ns = f"ns-{p % NAMESPACES}"
        d = p % deployments
        docs.append(
            textwrap.dedent(f"""\
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {{name: pol-{p}, namespace: {ns}}}
            spec:
              podSelector: {{matchLabels: {{app: app-{d}}}}}
              policyTypes: [Ingress]
              ingress:
              - from:
                - podSelector: {{matchExpressions: [{{key: tier, operator: In, values: [t1, t2]}}]}}
                - namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: ns-{(p + 1) % NAMESPACES}}}}}
                ports: [{{port: http}}, {{port: 9100, protocol: TCP}}]
            """)
        )
    (folder / "policies.yaml").write_text("---\n".join(docs))


BASELINE = """
import resource, sys, time, yaml
from pathlib import Path
start = time.perf_counter()
docs = 0
for f in sorted(Path(sys.argv[1]).glob("*.yaml")):
    docs += sum(1 for _ in yaml.load_all(f.read_text(), Loader=yaml.CSafeLoader))
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, docs)
"""

ACKNET = """
import resource, sys, time
start = time.perf_counter()
from acknet.controllers.plan import plan
from acknet.model.build import build_resources
from acknet.store.files import read_sources
resources = build_resources(read_sources([sys.argv[1]]))
validated = time.perf_counter()
planned = plan(resources)
done = time.perf_counter()
running = sum(1 for p in planned.pods if p.phase == "Running")
print(done - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, validated - start, done - validated,
      running, len(planned.services), len(planned.endpoint_slices))
"""


def run(script: str, folder: Path) -> list[float]:
    result = subprocess.run(
        [sys.executable, "-c", script, str(folder)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return [float(x) for x in result.stdout.split()]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--pods", type=int, default=60000)
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="acknet-bench-") as tmp:
        folder = Path(tmp)
        generate(folder, args.nodes, args.pods, args.services, args.policies)
        size = sum(f.stat().st_size for f in folder.glob("*.yaml"))
        base_time, base_rss, docs = run(BASELINE, folder)
        total, rss, validate_time, plan_time, running, services, slices = run(ACKNET, folder)
    figures = {
        "nodes": args.nodes,
        "pods": args.pods,
        "services": args.services,
        "policies": args.policies,
        "yaml_mb": round(size / 1e6, 1),
        "documents": int(docs),
        "baseline_parse_s": round(base_time, 2),
        "baseline_peak_mb": round(base_rss / 1024),
        "validate_s": round(validate_time, 2),
        "plan_s": round(plan_time, 2),
        "total_s": round(total, 2),
        "peak_mb": round(rss / 1024),
        "time_vs_parse": round(total / base_time, 2),
        "memory_vs_parse": round(rss / base_rss, 2),
        "running_pods": int(running),
        "planned_services": int(services),
        "endpoint_slices": int(slices),
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"input: {figures['yaml_mb']} MB of YAML, {figures['documents']} documents")
    print(f"baseline (libyaml parse only): {base_time:.2f} s, peak {base_rss / 1024:.0f} MB")
    print(
        f"acknet validate + plan:        {total:.2f} s (validate {validate_time:.2f} s, plan {plan_time:.2f} s), "
        f"peak {rss / 1024:.0f} MB"
    )
    print(f"ratio to baseline: time x{total / base_time:.2f}, memory x{rss / base_rss:.2f}")
    print(f"planned: {int(running)} running pods, {int(services)} services, {int(slices)} endpoint slices")
    print("aim: under 10 s and 1 GB")


if __name__ == "__main__":
    main()
