"""The Flannel vxlan backend in real namespaces: pods on two nodes talk through flannel.1, the VPC only
carries UDP 8472 between the node primary IPs, and the VRouter has no route entry for any PodCIDR.

Built from files through the controllers (``plan(resources)``), rendered, applied, and the cluster
security group loaded as the daemon loads it. The group has no rule for the pod CIDR: with the vpc
backend pod traffic would need one (reference/alibaba.md 2); through the tunnel the group sees only
node-to-node UDP, which its intra-group access accepts. Every namespace belongs to the test's own
emulation and is removed by the ``emulation`` fixture.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from acknet.controllers.plan import plan
from acknet.controllers.state import Plan
from acknet.dataplane.apply import nftables
from acknet.dataplane.apply.netlink import apply_kernel_plan
from acknet.dataplane.render import names
from acknet.dataplane.render.kernel import KernelPlan, Veth
from acknet.dataplane.render.security_group import render_security_groups, replace_script, table_name
from acknet.dataplane.render.topology import flannel_vtep_mac, render_topology
from acknet.model.build import build_resources
from acknet.model.documents import Source

pytestmark = pytest.mark.root

FILES = """
apiVersion: acknet.io/v1
kind: VPC
metadata: {name: prod}
spec: {cidrBlock: 192.168.0.0/16}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {name: node-h}
spec: {vpc: prod, cidrBlock: 192.168.0.0/24, zoneId: cn-hangzhou-h}
---
apiVersion: acknet.io/v1
kind: SecurityGroup
metadata: {name: cluster-sg}
spec: {vpc: prod}
---
apiVersion: acknet.io/v1
kind: Cluster
metadata: {name: ack}
spec:
  vpc: prod
  networkPlugin: flannel
  flannelBackend: vxlan
  podCidr: 172.20.0.0/16
  nodeCidrMask: 25
  securityGroups: [cluster-sg]
  addons: []
  nodePools:
  - {name: default, instanceType: ecs.g7.xlarge, vswitches: [node-h], count: 2}
---
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: default}
spec: {nodeName: ack-default-0, containers: [{name: main, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: q, namespace: default}
spec: {nodeName: ack-default-1, containers: [{name: main, ports: [{containerPort: 8080}]}]}
"""

# A TCP echo on one port; prints "ready" once it listens.
SERVER = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(8)
    print("ready", flush=True)
    while True:
        c, _ = s.accept()
        with c:
            while data := c.recv(4096):
                c.sendall(data)
    """
)

# Sends 64 KiB (more than one flannel.1 MTU per segment) and expects it back; exit 0 on success.
CLIENT = textwrap.dedent(
    """
    import socket, sys
    payload = bytes(range(256)) * 256
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as c:
        c.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = c.recv(65536)
            if not chunk:
                break
            got += chunk
    sys.exit(0 if got == payload else 1)
    """
)


@dataclass(frozen=True)
class Built:
    emulation: str
    plan: Plan
    kernel: KernelPlan

    def pod_ip(self, name: str) -> str:
        return next(str(p.ip) for p in self.plan.pods if p.name == name)

    def node_ns(self, index: int) -> str:
        return names.ecs_netns(self.emulation, f"ack-default-{index}")

    def pod_ns(self, name: str) -> str:
        return names.pod_netns(self.emulation, "default", name)


def run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout


def build(emulation: str, backend: str = "vxlan") -> Built:
    files = FILES.replace("flannelBackend: vxlan", f"flannelBackend: {backend}")
    planned = plan(build_resources([Source(f"{backend}.yaml", files)]))
    assert {p.name: p.phase for p in planned.pods} == {"p": "Running", "q": "Running"}
    kernel = render_topology(planned, emulation)
    apply_kernel_plan(kernel)
    for instance, text in render_security_groups(planned, emulation).items():
        netns = names.ecs_netns(emulation, instance)
        nftables.load_script(netns, replace_script(text, emulation), table_name(emulation))
    return Built(emulation, planned, kernel)


@pytest.fixture
def built(emulation: str) -> Built:
    return build(emulation)


@pytest.fixture
def echo_servers(built: Built) -> Iterator[None]:
    yield from serve_echo(built)


def serve_echo(built: Built) -> Iterator[None]:
    procs = []
    try:
        for pod in ("p", "q"):
            proc = subprocess.Popen(
                ["ip", "netns", "exec", built.pod_ns(pod), sys.executable, "-c", SERVER, "8080"],
                stdout=subprocess.PIPE,
                text=True,
            )
            procs.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield
    finally:
        for proc in procs:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)


def tcp_echo(netns: str, dst: str) -> bool:
    result = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", CLIENT, dst, "8080"],
        capture_output=True,
        check=False,
        timeout=30,
    )
    return result.returncode == 0


def tx_packets(netns: str, dev: str) -> int:
    stats = run("ip", "-n", netns, "-s", "-j", "link", "show", dev)
    match = re.search(r'"tx":\{"bytes":\d+,"packets":(\d+)', stats)
    assert match, stats
    return int(match.group(1))


def test_pods_on_two_nodes_talk_through_the_tunnel(built: Built, echo_servers: None) -> None:
    p_ip, q_ip = built.pod_ip("p"), built.pod_ip("q")
    before = tx_packets(built.node_ns(0), "flannel.1"), tx_packets(built.node_ns(1), "flannel.1")
    assert tcp_echo(built.pod_ns("p"), q_ip), "pod p -> pod q on the other node"
    assert tcp_echo(built.pod_ns("q"), p_ip), "and back"
    after = tx_packets(built.node_ns(0), "flannel.1"), tx_packets(built.node_ns(1), "flannel.1")
    assert after[0] > before[0] and after[1] > before[1], "both directions went into flannel.1"
    # The kernel resolves the way as flannel built it: the other PodCIDR via its VTEP, onlink.
    route = run("ip", "-n", built.node_ns(0), "route", "get", q_ip)
    assert f"{q_ip} via 172.20.0.128 dev flannel.1" in route


def test_the_vpc_carries_only_udp_8472_between_node_ips(built: Built, echo_servers: None) -> None:
    vrouter = names.vpc_netns(built.emulation, "prod")
    # No route entry for any PodCIDR: the VRouter has only its VSwitch's connected route.
    routes = run("ip", "-n", vrouter, "route", "show", "table", "all")
    assert "172.20." not in routes
    # The tunnel as flannel configures it, read back from the kernel.
    node0 = built.node_ns(0)
    details = run("ip", "-n", node0, "-d", "link", "show", "flannel.1")
    assert "vxlan id 1 local 192.168.0." in details and "dstport 8472" in details
    assert "nolearning" in details and "mtu 1450" in details
    fdb = run("bridge", "-n", node0, "fdb", "show", "dev", "flannel.1")
    node1_ip = next(str(i.primary_ip) for i in built.plan.instances if i.name == "ack-default-1")
    assert f"{flannel_vtep_mac('ack-default-1')} dst {node1_ip} self permanent" in fdb
    neigh = run("ip", "-n", node0, "neigh", "show", "dev", "flannel.1")
    assert f"172.20.0.128 lladdr {flannel_vtep_mac('ack-default-1')} PERMANENT" in neigh
    # The security group is in force on the node ENIs, with no rule for the pod CIDR: the echo passes
    # because the group only ever sees the outer node-to-node UDP.
    assert f"table inet {table_name(built.emulation)}" in nftables.list_ruleset(node0)
    assert "172.20." not in nftables.list_ruleset(node0)
    assert tcp_echo(built.pod_ns("p"), built.pod_ip("q"))


def test_second_apply_changes_nothing_and_adopts_flannel_1(built: Built) -> None:
    assert apply_kernel_plan(built.kernel, built.kernel).empty
    node0 = built.node_ns(0)
    before = (
        run("ip", "-n", node0, "-d", "-o", "link", "show", "flannel.1"),
        run("bridge", "-n", node0, "fdb", "show", "dev", "flannel.1"),
    )
    # A restarted daemon ensures every object: the existing device is adopted, not re-created.
    apply_kernel_plan(built.kernel, None)
    after = (
        run("ip", "-n", node0, "-d", "-o", "link", "show", "flannel.1"),
        run("bridge", "-n", node0, "fdb", "show", "dev", "flannel.1"),
    )
    assert after == before


def test_the_same_group_blocks_the_vpc_backend_without_a_pod_cidr_rule(emulation: str) -> None:
    # The control for the claim above: without the tunnel the group sees pod addresses and drops them.
    vpc = build(emulation, backend="vpc")
    vrouter = names.vpc_netns(emulation, "prod")
    assert "172.20.0.128/25 via" in run("ip", "-n", vrouter, "route", "show")
    servers = serve_echo(vpc)
    next(servers)
    try:
        assert not tcp_echo(vpc.pod_ns("p"), vpc.pod_ip("q"))
    finally:
        servers.close()


def test_a_recreated_underlay_brings_the_tunnel_back(built: Built, echo_servers: None) -> None:
    # The kernel deletes flannel.1 with eth0; the diff re-creates both and everything on flannel.1.
    node0 = built.node_ns(0)
    eth0 = next(lk for lk in built.kernel.links if lk.key == ("link", node0, "eth0"))
    assert isinstance(eth0, Veth)
    remade = dataclasses.replace(eth0, end=dataclasses.replace(eth0.end, mac="00:16:3e:ff:ff:ff"))
    # A new ENI MAC, as the VRouter knows it too (else it would deliver to the old one).
    neighbours = tuple(
        dataclasses.replace(n, mac=remade.end.mac) if n.mac == eth0.end.mac else n
        for n in built.kernel.neighbours
    )
    links = tuple(remade if lk is eth0 else lk for lk in built.kernel.links)
    after = dataclasses.replace(built.kernel, links=links, neighbours=neighbours)
    diff = apply_kernel_plan(after, built.kernel)
    assert ("link", node0, "flannel.1") in {lk.key for lk in diff.add_links}
    assert "00:16:3e:ff:ff:ff" in run("ip", "-n", node0, "link", "show", "eth0")
    assert tcp_echo(built.pod_ns("p"), built.pod_ip("q"))
    assert tcp_echo(built.pod_ns("q"), built.pod_ip("p"))
    assert apply_kernel_plan(after, after).empty
