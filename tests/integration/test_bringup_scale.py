"""Bring-up at a scale where the bulk paths of apply matter: a hundred-odd Terway pods on three nodes,
planned from files as ``acknet up`` plans them, built with the namespace pool, changed, and torn down.

No timing here (bench/bringup.py measures speed): what is checked is that the fast paths build the
same network a slow one would, and that nothing is left behind.
"""

from __future__ import annotations

import subprocess
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from test_topology_live import ping  # one ICMP echo from inside a namespace

from acknet.controllers.plan import plan as make_plan
from acknet.controllers.state import Plan
from acknet.dataplane.apply.netlink import apply_kernel_plan, list_netns, remove_emulation
from acknet.dataplane.render import names
from acknet.dataplane.render.topology import render_topology
from acknet.model.build import build_resources
from acknet.store.files import read_sources

pytestmark = pytest.mark.root

CLOUD = """\
apiVersion: acknet.io/v1
kind: VPC
metadata: {name: scale}
spec: {cidrBlock: 10.0.0.0/8}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {name: node-h}
spec: {vpc: scale, cidrBlock: 10.0.0.0/24, zoneId: cn-hangzhou-h}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {name: pod-h}
spec: {vpc: scale, cidrBlock: 10.16.0.0/16, zoneId: cn-hangzhou-h}
---
apiVersion: acknet.io/v1
kind: Cluster
metadata: {name: ack}
spec:
  vpc: scale
  networkPlugin: terway
  podVSwitches: [pod-h]
  addons: []
  nodePools:
  - {name: pool, instanceType: ecs.g7.xlarge, vswitches: [node-h], count: 3}
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: app-{d}, namespace: ns-{d}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: app-{d}}}}}
  template:
    metadata: {{labels: {{app: app-{d}}}}}
    spec:
      containers: [{{name: main, image: registry.example/app:1, ports: [{{containerPort: 8080}}]}}]
"""


def planned(folder: Path, replicas: list[int]) -> Plan:
    (folder / "cloud.yaml").write_text(CLOUD)
    apps = "---\n".join(DEPLOYMENT.format(d=d, replicas=r) for d, r in enumerate(replicas) if r)
    (folder / "apps.yaml").write_text(apps or "")
    return make_plan(build_resources(read_sources([str(folder)])))


def test_a_hundred_pods_build_change_and_go(emulation: str, tmp_path: Path) -> None:
    first = planned(tmp_path, [40, 40, 40])
    kp = render_topology(first, emulation)
    pods = [p for p in first.pods if p.phase == "Running"]
    assert len(pods) == 120
    diff = apply_kernel_plan(kp)
    assert len(diff.add_namespaces) == len(kp.namespaces)
    made = set(list_netns(names.netns_prefix(emulation)))
    assert made == {ns.name for ns in kp.namespaces}

    # Every pod's eth0 came up with its address; pods on different nodes reach each other.
    by_node: dict[str, list[IPv4Address]] = {}
    for p in pods:
        assert p.node is not None and p.ip is not None
        by_node.setdefault(p.node, []).append(p.ip)
    assert len(by_node) == 3
    for p in pods:
        netns = names.pod_netns(emulation, p.namespace, p.name)
        eth0 = subprocess.run(
            ["ip", "-n", netns, "-4", "-o", "addr", "show", "dev", "eth0", "up"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert f"inet {p.ip}/32" in eth0, p.key
    source = next(p for p in pods if p.node == sorted(by_node)[0])
    src_ns = names.pod_netns(emulation, source.namespace, source.name)
    for node, ips in sorted(by_node.items())[1:]:
        assert ping(src_ns, str(ips[0])), f"{source.key} -> a pod on {node}"
        assert ping(src_ns, str(ips[-1])), f"{source.key} -> another pod on {node}"

    # The same plan again does nothing; a smaller one removes exactly the pods that went.
    assert apply_kernel_plan(kp, kp).empty
    second = planned(tmp_path, [40, 0, 40])
    kp2 = render_topology(second, emulation)
    diff = apply_kernel_plan(kp2, kp)
    assert len(diff.remove_namespaces) == 40 and not diff.add_namespaces
    assert set(list_netns(names.netns_prefix(emulation))) == {ns.name for ns in kp2.namespaces}
    kept = next(p for p in second.pods if p.phase == "Running" and p.node != source.node)
    assert ping(src_ns, str(kept.ip))

    assert len(remove_emulation(emulation)) == len(kp2.namespaces)
    assert not list_netns(names.netns_prefix(emulation))
