"""The Flannel ``vxlan`` backend as rendered from files: flannel.1 per node, and per other node a route,
a permanent neighbour and an FDB entry (flannel:pkg/backend/vxlan); no VPC route entries. Pure; no root."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from acknet.controllers.plan import plan
from acknet.controllers.state import Plan
from acknet.dataplane.render import names
from acknet.dataplane.render.kernel import (
    Address,
    Bridge,
    Fdb,
    KernelPlan,
    Neighbour,
    Route,
    Veth,
    Vxlan,
    diff_plans,
)
from acknet.dataplane.render.topology import flannel_vtep_mac, render_topology
from acknet.model.build import build_resources
from acknet.model.documents import Source

EMU = "tx"
VRT = "tx-vpc-prod"


def cluster_yaml(backend: str, nodes: int = 2) -> str:
    return f"""
apiVersion: acknet.io/v1
kind: VPC
metadata: {{name: prod}}
spec: {{cidrBlock: 192.168.0.0/16}}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {{name: node-h}}
spec: {{vpc: prod, cidrBlock: 192.168.0.0/24, zoneId: cn-hangzhou-h}}
---
apiVersion: acknet.io/v1
kind: SecurityGroup
metadata: {{name: cluster-sg}}
spec: {{vpc: prod}}
---
apiVersion: acknet.io/v1
kind: Cluster
metadata: {{name: ack}}
spec:
  vpc: prod
  networkPlugin: flannel
  flannelBackend: {backend}
  podCidr: 172.20.0.0/16
  nodeCidrMask: 25
  securityGroups: [cluster-sg]
  addons: []
  nodePools:
  - {{name: default, instanceType: ecs.g7.xlarge, vswitches: [node-h], count: {nodes}}}
"""


def planned(backend: str, nodes: int = 2) -> Plan:
    return plan(build_resources([Source("cluster.yaml", cluster_yaml(backend, nodes))]))


@pytest.fixture(scope="module")
def vxlan_plan() -> Plan:
    return planned("vxlan", nodes=3)


@pytest.fixture(scope="module")
def kp(vxlan_plan: Plan) -> KernelPlan:
    return render_topology(vxlan_plan, EMU)


def vxlans(kp: KernelPlan) -> list[Vxlan]:
    return [lk for lk in kp.links if isinstance(lk, Vxlan)]


def test_every_node_gets_flannel_1_as_flannel_builds_it(vxlan_plan: Plan, kp: KernelPlan) -> None:
    assert len(vxlans(kp)) == 3
    for node in vxlan_plan.instances:
        assert node.pod_cidr is not None
        ns = names.ecs_netns(EMU, node.name)
        assert (
            Vxlan(
                ns,
                "flannel.1",
                vni=1,
                local=node.primary_ip,
                underlay="eth0",
                port=8472,
                learning=False,
                mac=flannel_vtep_mac(node.name),
                mtu=1450,
            )
            in kp.links
        )
        # The VTEP address is the PodCIDR's .0 as /32; cni0 keeps .1 with the PodCIDR's mask, as for vpc.
        vtep = IPv4Interface(f"{node.pod_cidr.network_address}/32")
        assert Address(ns, "flannel.1", vtep) in kp.addresses
        gateway = IPv4Interface(f"{node.pod_cidr.network_address + 1}/25")
        assert Address(ns, "cni0", gateway) in kp.addresses
        assert Bridge(ns, "cni0", names.mac_for(f"cni0/{node.name}")) in kp.links


def test_every_other_node_is_a_route_a_neighbour_and_an_fdb_entry(vxlan_plan: Plan, kp: KernelPlan) -> None:
    nodes = vxlan_plan.instances
    for node in nodes:
        ns = names.ecs_netns(EMU, node.name)
        others = [o for o in nodes if o.name != node.name]
        expected_routes, expected_neigh, expected_fdb = set(), set(), set()
        for other in others:
            assert other.pod_cidr is not None
            vtep, mac = other.pod_cidr.network_address, flannel_vtep_mac(other.name)
            expected_routes.add(Route(ns, other.pod_cidr, "flannel.1", via=vtep, onlink=True))
            expected_neigh.add(Neighbour(ns, "flannel.1", vtep, mac))
            expected_fdb.add(Fdb(ns, "flannel.1", mac, other.primary_ip))
        assert {r for r in kp.routes if r.namespace == ns and r.dev == "flannel.1"} == expected_routes
        assert {n for n in kp.neighbours if n.namespace == ns and n.dev == "flannel.1"} == expected_neigh
        assert {f for f in kp.fdbs if f.namespace == ns} == expected_fdb
        # The node's own PodCIDR is cni0's connected prefix, never a route over the tunnel.
        assert node.pod_cidr not in {r.dst for r in expected_routes}


def test_vxlan_clusters_have_no_vpc_route_entries(vxlan_plan: Plan, kp: KernelPlan) -> None:
    assert vxlan_plan.routes == ()
    pod_cidr = IPv4Network("172.20.0.0/16")
    assert not [r for r in kp.routes if r.namespace == VRT and r.dst.subnet_of(pod_cidr)]


def test_pods_sit_on_cni0_as_with_the_vpc_backend() -> None:
    text = (
        cluster_yaml("vxlan")
        + "\n---\n"
        + "\n".join(
            [
                "apiVersion: v1",
                "kind: Pod",
                "metadata: {name: p, namespace: default}",
                "spec: {nodeName: ack-default-1, containers: [{name: main, ports: [{containerPort: 80}]}]}",
            ]
        )
    )
    p = plan(build_resources([Source("c.yaml", text)]))
    (pod,) = p.pods
    node = next(i for i in p.instances if i.name == pod.node)
    assert node.pod_cidr is not None and pod.ip is not None and pod.ip in node.pod_cidr
    kp = render_topology(p, EMU)
    pns = names.pod_netns(EMU, "default", "p")
    assert Route(pns, IPv4Network("0.0.0.0/0"), "eth0", via=node.pod_cidr[1]) in kp.routes
    assert Address(pns, "eth0", IPv4Interface(f"{pod.ip}/25")) in kp.addresses


def test_the_vpc_backend_has_no_tunnel_but_route_entries() -> None:
    p = planned("vpc")
    kp = render_topology(p, EMU)
    assert not vxlans(kp) and not kp.fdbs
    assert not [r for r in kp.routes if r.dev == "flannel.1"]
    assert {r.dst for r in kp.routes if r.namespace == VRT} >= {
        IPv4Network("172.20.0.0/25"),
        IPv4Network("172.20.0.128/25"),
    }


def test_plan_lines_read_like_iproute2(kp: KernelPlan) -> None:
    text = str(kp)
    assert "type vxlan id 1 local 192.168.0." in text
    assert "dev eth0 dstport 8472 nolearning" in text
    assert "mtu 1450" in text
    assert "fdb add -n tx-ecs-ack-default-0 " in text and " dev flannel.1 dst 192.168.0." in text


def test_in_namespace_keeps_fdb_entries(kp: KernelPlan) -> None:
    ns = names.ecs_netns(EMU, "ack-default-0")
    part = kp.in_namespace(ns)
    assert len(part.fdbs) == 2 and all(f.namespace == ns for f in part.fdbs)
    assert [lk.name for lk in part.links if isinstance(lk, Vxlan)] == ["flannel.1"]


# -- diff ------------------------------------------------------------------------------------------


def test_same_vxlan_plan_diffs_empty(kp: KernelPlan) -> None:
    assert diff_plans(kp, kp).empty
    fresh = diff_plans(None, kp)
    assert len([lk for lk in fresh.add_links if isinstance(lk, Vxlan)]) == 3
    assert len(fresh.add_fdbs) == 6


def test_a_removed_node_leaves_no_tunnel_state_behind() -> None:
    before = render_topology(planned("vxlan", nodes=3), EMU)
    after = render_topology(planned("vxlan", nodes=2), EMU)
    diff = diff_plans(before, after)
    gone = "tx-ecs-ack-default-2"
    assert gone in {n.name for n in diff.remove_namespaces}
    mac = flannel_vtep_mac("ack-default-2")
    assert sorted(f.namespace for f in diff.remove_fdbs) == ["tx-ecs-ack-default-0", "tx-ecs-ack-default-1"]
    assert all(f.mac == mac for f in diff.remove_fdbs)
    assert sorted(n.namespace for n in diff.remove_neighbours if n.dev == "flannel.1") == [
        "tx-ecs-ack-default-0",
        "tx-ecs-ack-default-1",
    ]
    assert len([r for r in diff.remove_routes if r.dev == "flannel.1"]) == 2
    # Objects inside the removed namespace go with it.
    assert not [f for f in diff.remove_fdbs if f.namespace == gone]
    assert not (diff.add_links or diff.add_fdbs or diff.add_routes)


def test_a_moved_vtep_is_an_fdb_replace_not_a_removal(kp: KernelPlan) -> None:
    moved = tuple(
        dataclasses.replace(f, dst=IPv4Address("192.168.0.99"))
        if f.mac == flannel_vtep_mac("ack-default-2")
        else f
        for f in kp.fdbs
    )
    after = dataclasses.replace(kp, fdbs=moved)
    diff = diff_plans(kp, after)
    assert not diff.remove_fdbs
    assert {f.dst for f in diff.add_fdbs} == {IPv4Address("192.168.0.99")} and len(diff.add_fdbs) == 2
    assert diff.count() == 2


def test_a_recreated_underlay_brings_flannel_1_back_with_everything_on_it(kp: KernelPlan) -> None:
    ns = "tx-ecs-ack-default-0"
    eth0 = next(lk for lk in kp.links if lk.key == ("link", ns, "eth0"))
    assert isinstance(eth0, Veth)
    remade = dataclasses.replace(eth0, end=dataclasses.replace(eth0.end, mac="00:16:3e:ff:ff:ff"))
    after = dataclasses.replace(kp, links=tuple(remade if lk is eth0 else lk for lk in kp.links))
    diff = diff_plans(kp, after)
    assert sorted(lk.key for lk in diff.add_links) == [("link", ns, "eth0"), ("link", ns, "flannel.1")]
    assert Address(ns, "flannel.1", IPv4Interface("172.20.0.0/32")) in diff.add_addresses
    assert len([r for r in diff.add_routes if r.dev == "flannel.1"]) == 2
    assert len([n for n in diff.add_neighbours if n.dev == "flannel.1"]) == 2
    assert {f.namespace for f in diff.add_fdbs} == {ns} and len(diff.add_fdbs) == 2


def test_a_changed_vxlan_is_recreated(kp: KernelPlan) -> None:
    ns = "tx-ecs-ack-default-1"
    links = tuple(
        dataclasses.replace(lk, port=4789) if isinstance(lk, Vxlan) and lk.namespace == ns else lk
        for lk in kp.links
    )
    diff = diff_plans(kp, dataclasses.replace(kp, links=links))
    assert [lk.key for lk in diff.remove_links] == [("link", ns, "flannel.1")]
    assert [lk.key for lk in diff.add_links] == [("link", ns, "flannel.1")]
    assert len(diff.add_fdbs) == 2 and len(diff.add_addresses) == 1
