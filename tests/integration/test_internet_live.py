"""The emulated Internet in real namespaces: real ICMP between it and the VPCs it is joined to.

As on Alibaba Cloud, an instance or pod without an EIP, NAT gateway or internet SLB cannot reach the
Internet, and the Internet reaches no private address. A public address behind a VRouter is reachable
from the Internet and answers it. The SLB that will own such an address does not exist yet, so the test
puts the address on the VRouter's lo itself: what is tested is the Internet's routing, not an SLB.

Plans come from YAML through the real controllers (two VPCs, a Terway cluster, a standalone ECS).
Every namespace belongs to the test's own emulation (``inet`` + 6 hex) and is removed at teardown.
"""

from __future__ import annotations

import dataclasses
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from acknet.controllers.plan import plan
from acknet.controllers.state import Plan
from acknet.dataplane.apply.netlink import apply_kernel_plan, list_netns, remove_emulation
from acknet.dataplane.render import names
from acknet.dataplane.render.topology import render_topology
from acknet.model.cloud import LoadBalancer
from acknet.model.documents import Source
from acknet.model.load import load_resources

pytestmark = pytest.mark.root

CLIENT = "203.0.113.1"
VIP = "198.51.100.5"

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
kind: VSwitch
metadata: {name: pod-h}
spec: {vpc: prod, cidrBlock: 192.168.32.0/19, zoneId: cn-hangzhou-h}
---
apiVersion: acknet.io/v1
kind: VPC
metadata: {name: dev}
spec: {cidrBlock: 10.0.0.0/16}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {name: dev-h}
spec: {vpc: dev, cidrBlock: 10.0.0.0/24, zoneId: cn-hangzhou-h}
---
apiVersion: acknet.io/v1
kind: SecurityGroup
metadata: {name: sg}
spec: {vpc: prod}
---
apiVersion: acknet.io/v1
kind: SecurityGroup
metadata: {name: dev-sg}
spec: {vpc: dev}
---
apiVersion: acknet.io/v1
kind: ECSInstance
metadata: {name: db}
spec: {vswitch: node-h, securityGroups: [sg]}
---
apiVersion: acknet.io/v1
kind: ECSInstance
metadata: {name: box}
spec: {vswitch: dev-h, securityGroups: [dev-sg]}
---
apiVersion: acknet.io/v1
kind: Cluster
metadata: {name: ack}
spec:
  vpc: prod
  securityGroups: [sg]
  podVSwitches: [pod-h]
  addons: []
  nodePools:
  - {name: default, instanceType: ecs.g7.xlarge, vswitches: [node-h], count: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default}
spec:
  containers:
  - {name: main, ports: [{containerPort: 8080}]}
"""

# One ICMP echo from a raw socket, from an optional source address; exit 0 when the reply arrives
# within 1 s, 1 when it does not, 2 when the kernel refuses to send (no route).
PING = textwrap.dedent(
    """
    import os, socket, struct, sys, time
    def csum(b):
        s = sum(struct.unpack(f"!{len(b) // 2}H", b)); s = (s >> 16) + (s & 0xFFFF); s += s >> 16
        return ~s & 0xFFFF
    dst, src, ident = sys.argv[1], sys.argv[2], os.getpid() & 0xFFFF
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.settimeout(1.0)
    if src:
        s.bind((src, 0))
    body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"acknet"
    try:
        s.sendto(struct.pack("!BBHHH", 8, 0, csum(body), ident, 1) + b"acknet", (dst, 0))
    except OSError:
        sys.exit(2)
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        try:
            data, addr = s.recvfrom(2048)
        except OSError:
            break
        ihl = (data[0] & 0xF) * 4
        kind, _, _, got, _ = struct.unpack("!BBHHH", data[ihl : ihl + 8])
        if kind == 0 and got == ident and addr[0] == dst:
            sys.exit(0)
    sys.exit(1)
    """
)


def pings(pairs: list[tuple[str, str]], src: str = "") -> dict[tuple[str, str], bool]:
    """(namespace, destination) -> whether the echo came back; all pings at once (a lost one takes 1 s)."""
    procs = {
        pair: subprocess.Popen(
            ["ip", "netns", "exec", pair[0], sys.executable, "-c", PING, pair[1], src],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pair in pairs
    }
    return {pair: proc.wait(timeout=30) == 0 for pair, proc in procs.items()}


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def emulation() -> Iterator[str]:
    """A fresh emulation name (``inet`` + 6 hex); its namespaces are removed even when the test fails."""
    name = "inet" + secrets.token_hex(3)
    assert not list_netns(names.netns_prefix(name))
    try:
        yield name
    finally:
        remove_emulation(name)
        assert not list_netns(names.netns_prefix(name)), "namespaces left behind"


def planned(public_vip: bool = False) -> Plan:
    result = load_resources([Source("internet.yaml", FILES)])
    assert not result.errors, "\n".join(str(d) for d in result.errors)
    p = plan(result.resources)
    if not public_vip:
        return p
    # An internet CLB in front of db, with the VIP the SLB controller will hand out.
    lb = LoadBalancer.model_validate(
        {
            "apiVersion": "acknet.io/v1",
            "kind": "LoadBalancer",
            "metadata": {"name": "web"},
            "spec": {"addressType": "internet", "backendServers": [{"ecs": "db"}]},
        }
    )
    resources = dataclasses.replace(p.resources, load_balancers={"web": lb})
    return dataclasses.replace(p, resources=resources, slb_addresses={"web": IPv4Address(VIP)})


def private_addresses(p: Plan) -> list[str]:
    """Every address in the VPCs: ENI addresses, pod addresses and the VSwitch gateways."""
    found = {str(a) for i in p.instances for e in i.enis for a in e.ips}
    found |= {str(pod.ip) for pod in p.pods if pod.ip is not None}
    found |= {str(v.gateway) for v in p.vswitches}
    return sorted(found)


def vpc_namespaces(emulation: str) -> list[str]:
    internet = names.internet_netns(emulation)
    return [ns for ns in list_netns(names.netns_prefix(emulation)) if ns != internet]


def test_internet_and_vpcs_cannot_reach_each_other_without_public_addresses(emulation: str) -> None:
    p = planned()
    apply_kernel_plan(render_topology(p, emulation))
    internet = names.internet_netns(emulation)
    assert internet in list_netns(names.netns_prefix(emulation))
    # The Internet's clients: all of 203.0.113.0/24 is local there (the prefix route of lo's address).
    assert "203.0.113.1/24" in ip("-n", internet, "-o", "addr", "show", "dev", "lo")
    assert "local 203.0.113.0/24" in ip("-n", internet, "route", "show", "table", "local")
    assert pings([(internet, "203.0.113.200")]) == {(internet, "203.0.113.200"): True}
    # One uplink per VRouter, nothing routed anywhere.
    links = ip("-n", internet, "-o", "link")
    assert names.internet_port("prod") in links and names.internet_port("dev") in links
    assert ip("-n", internet, "route") == ""

    inbound = [(internet, a) for a in private_addresses(p)]
    outbound = [(ns, CLIENT) for ns in vpc_namespaces(emulation)]
    assert len(inbound) >= 6 and len(outbound) >= 5  # node, pod, db, box, both gateways; 2 VRouters
    results = pings(inbound + outbound)
    assert not [pair for pair, ok in results.items() if ok], "the Internet and a VPC reached each other"


def test_a_public_address_is_reachable_and_private_ones_stay_cut_off(emulation: str) -> None:
    before = render_topology(planned(), emulation)
    apply_kernel_plan(before)
    kp = render_topology(planned(public_vip=True), emulation)
    diff = apply_kernel_plan(kp, before)
    assert diff.count() == len(diff.add_routes) == 2  # only the routes: the uplinks stay as they were
    internet, prod = names.internet_netns(emulation), names.vpc_netns(emulation, "prod")
    assert f"dev {names.internet_port('prod')}" in ip("-n", internet, "route", "get", VIP)
    # Stand-in for the SLB that will own the VIP: the address on the VRouter itself.
    ip("-n", prod, "addr", "add", f"{VIP}/32", "dev", "lo")
    db = names.ecs_netns(emulation, "db")
    results = pings([(internet, VIP), (db, CLIENT), (names.ecs_netns(emulation, "box"), CLIENT)])
    assert results[(internet, VIP)], "Internet -> public VIP and back"
    # prod's VRouter now routes 203.0.113.0/24 (for the VIP's replies), yet a private source still gets
    # nowhere: the Internet's reverse-path filter drops it, and it has no route back to it anyway.
    # dev's VRouter has no route to the Internet at all.
    assert f"dev {names.VROUTER_UPLINK}" in ip("-n", prod, "route", "get", CLIENT)
    assert not results[(db, CLIENT)] and not results[(names.ecs_netns(emulation, "box"), CLIENT)]
    # Many clients: any address of 203.0.113.0/24 can be the source.
    assert pings([(internet, VIP)], src="203.0.113.77") == {(internet, VIP): True}
    inbound = pings([(internet, a) for a in private_addresses(planned())])
    assert not any(inbound.values()), "the Internet reached a private address"
    # Removing the public address takes its routes away again and nothing else.
    diff = apply_kernel_plan(before, kp)
    assert diff.count() == len(diff.remove_routes) == 2
    assert ip("-n", internet, "route") == ""
