"""Pod addresses: Terway shared and exclusive ENIs, Flannel PodCIDRs and routes, and stickiness."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from acknet.controllers.ipam import cni0_gateway
from acknet.controllers.state import RouteEntry


def ip(text: str) -> IPv4Address:
    return IPv4Address(text)


def node(planned, name: str):
    return next(i for i in planned.instances if i.name == name)


def pods_by_name(planned):
    return {p.name: p for p in planned.pods}


def bare(docs, names) -> str:
    return "".join(docs.pod(n) for n in names)


# -- Terway shared ENI ---------------------------------------------------------------------------------


def test_first_pod_takes_the_secondary_enis_own_primary_ip(docs, plan_yaml) -> None:
    planned = plan_yaml(docs.CLOUD + docs.cluster(docs.pool(count=1)) + docs.deployment("web", 1))
    (pod,) = planned.pods
    eth0, eth1 = node(planned, "ack-default-0").enis
    assert eth0.ips == (ip("192.168.0.1"),)  # the primary ENI never carries pods
    assert (eth1.index, eth1.vswitch, eth1.primary_ip, eth1.ips) == (
        1,
        "pod-h",
        ip("192.168.32.1"),
        (ip("192.168.32.1"),),
    )
    assert eth1.security_groups == ("cluster-sg",)
    assert (pod.ip, pod.eni, pod.phase, pod.node) == (eth1.primary_ip, eth1.id, "Running", "ack-default-0")


def test_fullest_eni_is_filled_first_then_a_new_eni_is_made(docs, plan_yaml) -> None:
    # ecs.g7.large: 2 secondary ENIs of 6 addresses each.
    text = docs.CLOUD + docs.cluster(docs.pool(count=1, instance_type="ecs.g7.large"))
    planned = plan_yaml(text + bare(docs, [f"p{i}" for i in range(1, 9)]))
    _, eth1, eth2 = node(planned, "ack-default-0").enis
    assert eth1.ips == tuple(ip(f"192.168.32.{i}") for i in range(1, 7))
    assert eth2.ips == (ip("192.168.32.7"), ip("192.168.32.8"))
    pods = pods_by_name(planned)
    assert [pods[f"p{i}"].eni for i in range(1, 9)] == [eth1.id] * 6 + [eth2.id] * 2

    # p3 leaves and p9 arrives: most_ips puts p9 on the fuller eth1, and it does not get p3's address
    # (held from the previous plan while the VSwitch has others).
    again = plan_yaml(text + bare(docs, ["p1", "p2", *(f"p{i}" for i in range(4, 10))]), planned)
    _, eth1_after, eth2_after = node(again, "ack-default-0").enis
    assert pods_by_name(again)["p9"].eni == eth1.id
    assert pods_by_name(again)["p9"].ip == ip("192.168.32.9")
    assert eth1_after.ips == tuple(ip(f"192.168.32.{i}") for i in (1, 2, 4, 5, 6, 9))
    assert eth2_after == eth2


@pytest.mark.parametrize(
    ("vswitches", "chosen"),
    [
        pytest.param(("pod-a", "192.168.64.0/28", "pod-b", "192.168.65.0/24"), "pod-b", id="most-free-wins"),
        pytest.param(
            ("pod-a", "192.168.64.0/24", "pod-b", "192.168.65.0/24"), "pod-a", id="tie-keeps-config-order"
        ),
    ],
)
def test_new_eni_goes_to_the_pod_vswitch_with_most_free_addresses(docs, plan_yaml, vswitches, chosen) -> None:
    a, a_cidr, b, b_cidr = vswitches
    text = (
        docs.CLOUD
        + docs.vswitch(a, a_cidr)
        + docs.vswitch(b, b_cidr)
        + docs.cluster(docs.pool(count=1), spec=(f"podVSwitches: [{a}, {b}]",))
        + docs.deployment("web", 1)
    )
    assert node(plan_yaml(text), "ack-default-0").enis[1].vswitch == chosen


@pytest.mark.parametrize(
    ("build", "running", "reason"),
    [
        pytest.param(
            lambda d: (
                d.vswitch("tiny", "192.168.64.0/29")
                + d.cluster(d.pool(count=1), spec=("podVSwitches: [tiny]",))
                + d.deployment("web", 6)
            ),
            4,
            "IPResInsufficient: no free address in pod vSwitches tiny of zone cn-hangzhou-h",
            id="pod-vswitch-exhausted",
        ),
        pytest.param(
            lambda d: (
                d.vswitch("tiny", "192.168.64.0/29")
                + d.vswitch("tiny2", "192.168.64.8/29")
                + d.cluster(d.pool(count=1), spec=("podVSwitches: [tiny, tiny2]",))
                + d.deployment("web", 10)
            ),
            8,
            "IPResInsufficient: no free address in pod vSwitches tiny, tiny2 of zone cn-hangzhou-h",
            id="every-pod-vswitch-of-the-zone-exhausted",
        ),
        pytest.param(
            lambda d: d.cluster(d.pool(count=1, vswitches="[node-i]")) + d.deployment("web", 2),
            0,
            "IPResInsufficient: no pod vSwitch in zone cn-hangzhou-i",
            id="zone-without-pod-vswitch",
        ),
    ],
)
def test_pods_without_an_address_stay_pending_on_their_node(docs, plan_yaml, build, running, reason) -> None:
    pods = plan_yaml(docs.CLOUD + build(docs)).pods
    assert sum(p.phase == "Running" for p in pods) == running
    waiting = [p for p in pods if p.phase == "Pending"]
    assert {p.reason for p in waiting} == {reason}
    # Scheduled, but the sandbox has no address: the pod is bound to its node.
    assert all(p.node == "ack-default-0" and p.ip is None and p.eni is None for p in waiting)


def test_host_network_pods_use_the_node_address_and_no_eni(docs, plan_yaml) -> None:
    text = docs.CLOUD + docs.cluster(docs.pool(count=1)) + docs.pod("agent", spec=("hostNetwork: true",))
    planned = plan_yaml(text)
    (pod,) = planned.pods
    assert (pod.ip, pod.eni, pod.phase, pod.host_network) == (ip("192.168.0.1"), None, "Running", True)
    assert len(node(planned, "ack-default-0").enis) == 1


# -- Terway exclusive ENI ------------------------------------------------------------------------------


def test_exclusive_mode_moves_one_new_eni_into_each_pod(docs, plan_yaml) -> None:
    text = docs.CLOUD + docs.cluster(docs.pool(count=1, eniMode="exclusive")) + docs.deployment("db", 3)
    planned = plan_yaml(text)
    _, *enis = node(planned, "ack-default-0").enis
    assert [e.index for e in enis] == [1, 2, 3]
    pods = {p.key: p for p in planned.pods}
    assert sorted(e.exclusive_pod for e in enis) == sorted(pods)
    for eni in enis:
        pod = pods[eni.exclusive_pod]
        assert (pod.ip, pod.eni, eni.ips) == (eni.primary_ip, eni.id, (eni.primary_ip,))


# -- Flannel -------------------------------------------------------------------------------------------


def test_flannel_pod_cidrs_gateway_pods_and_routes(docs, plan_yaml) -> None:
    spec = ("networkPlugin: flannel", "podCidr: 172.20.0.0/16", "nodeCidrMask: 24")
    planned = plan_yaml(docs.CLOUD + docs.cluster(docs.pool(count=2), spec=spec) + docs.deployment("web", 3))
    cidrs = {i.name: i.pod_cidr for i in planned.instances}
    assert cidrs == {
        "ack-default-0": IPv4Network("172.20.0.0/24"),
        "ack-default-1": IPv4Network("172.20.1.0/24"),
    }
    assert cni0_gateway(IPv4Network("172.20.0.0/24")) == ip("172.20.0.1")
    by_node: dict[str, set[IPv4Address]] = {}
    for pod in planned.pods:
        assert pod.eni is None and pod.phase == "Running"
        by_node.setdefault(pod.node, set()).add(pod.ip)
    assert by_node == {
        "ack-default-0": {ip("172.20.0.2"), ip("172.20.0.3")},
        "ack-default-1": {ip("172.20.1.2")},
    }
    assert [(r.vpc, r.destination, r.next_hop, r.next_hop_type) for r in planned.routes] == [
        ("vpc", IPv4Network("172.20.0.0/24"), "ack-default-0", "Instance"),
        ("vpc", IPv4Network("172.20.1.0/24"), "ack-default-1", "Instance"),
    ]
    assert all(len(i.enis) == 1 for i in planned.instances)


def test_flannel_defaults_are_acks(docs, plan_yaml) -> None:
    planned = plan_yaml(docs.CLOUD + docs.cluster(docs.pool(count=2), spec=("networkPlugin: flannel",)))
    assert [i.pod_cidr for i in planned.instances] == [
        IPv4Network("172.20.0.0/25"),
        IPv4Network("172.20.0.128/25"),
    ]


def test_flannel_vxlan_backend_needs_no_vpc_routes(docs, plan_yaml) -> None:
    spec = ("networkPlugin: flannel", "flannelBackend: vxlan")
    planned = plan_yaml(docs.CLOUD + docs.cluster(docs.pool(count=2), spec=spec))
    assert planned.routes == ()
    assert all(i.pod_cidr is not None for i in planned.instances)


# -- Stickiness with the previous plan -----------------------------------------------------------------


def test_adding_workloads_moves_nothing_that_exists(docs, plan_yaml) -> None:
    base = docs.CLOUD + docs.cluster(docs.pool(count=2)) + docs.deployment("web", 3)
    before = plan_yaml(base)
    after = plan_yaml(base + docs.deployment("api", 4), before)
    kept = pods_by_name(after)
    assert all(kept[p.name] == p for p in before.pods)
    new_ips = {p.ip for p in after.pods} - {p.ip for p in before.pods}
    assert len(new_ips) == 4


def test_scaling_the_node_pool_keeps_pods_where_they_are(docs, plan_yaml) -> None:
    workload = docs.deployment("web", 4)
    before = plan_yaml(docs.CLOUD + docs.cluster(docs.pool(count=2)) + workload)
    after = plan_yaml(docs.CLOUD + docs.cluster(docs.pool(count=3)) + workload, before)
    assert after.pods == before.pods  # least-allocated would prefer the new node; running pods stay
    assert [i.primary_ip for i in after.instances[:2]] == [i.primary_ip for i in before.instances]


def test_pods_of_a_removed_node_are_placed_again(docs, plan_yaml) -> None:
    workload = docs.deployment("web", 4)
    before = plan_yaml(docs.CLOUD + docs.cluster(docs.pool(count=2)) + workload)
    after = plan_yaml(docs.CLOUD + docs.cluster(docs.pool(count=1)) + workload, before)
    assert {p.node for p in after.pods} == {"ack-default-0"}
    assert all(p.phase == "Running" for p in after.pods)
    stayed = {p.name: p for p in before.pods if p.node == "ack-default-0"}
    assert all(pods_by_name(after)[name] == pod for name, pod in stayed.items())


def test_exclusive_pods_keep_their_enis(docs, plan_yaml) -> None:
    pools = docs.cluster(docs.pool(count=1, eniMode="exclusive"))
    before = plan_yaml(docs.CLOUD + pools + bare(docs, ["a", "b", "c"]))
    after = plan_yaml(docs.CLOUD + pools + bare(docs, ["b", "c"]), before)
    assert list(after.pods) == [p for p in before.pods if p.name != "a"]
    kept = {e.exclusive_pod for e in after.instances[0].enis[1:]}
    assert kept == {"default/b", "default/c"}


def test_flannel_nodes_keep_their_pod_cidr(docs, plan_yaml) -> None:
    spec = ("networkPlugin: flannel", "nodeCidrMask: 24")
    workload = docs.deployment("web", 2, spec=("nodeSelector: {alibabacloud.com/nodepool-id: b}",))
    before = plan_yaml(docs.CLOUD + docs.cluster(docs.pool("a", 1), docs.pool("b", 1), spec=spec) + workload)
    after = plan_yaml(docs.CLOUD + docs.cluster(docs.pool("b", 1), spec=spec) + workload, before)
    (b,) = after.instances
    assert b.pod_cidr == IPv4Network("172.20.1.0/24")  # not the now free 172.20.0.0/24
    assert after.pods == before.pods
    assert after.routes == (
        RouteEntry("vpc", b.pod_cidr, "ack-b-0", description=after.routes[0].description),
    )
