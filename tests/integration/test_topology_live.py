"""The rendered topology in real namespaces: real ICMP packets between pods, nodes and ECS instances.

Plans are built by hand (two Terway nodes with a secondary ENI each in the pod VSwitch, a standalone
ECS in the node VSwitch; an exclusive-ENI node; two Flannel nodes with VPC route entries). Every
namespace belongs to the test's own emulation and is removed at teardown by the ``emulation`` fixture.
"""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap
from ipaddress import IPv4Address, IPv4Network

import pytest

from acknet.controllers.state import Eni, Instance, Plan, PlannedPod, RouteEntry, VSwitchUsage
from acknet.dataplane.apply.netlink import apply_kernel_plan, list_netns, remove_emulation
from acknet.dataplane.render import names
from acknet.dataplane.render.kernel import KernelPlan, Route, make_plan
from acknet.dataplane.render.topology import render_topology
from acknet.errors import DataplaneError
from acknet.model.resources import Resources

pytestmark = pytest.mark.root

# One ICMP echo from a raw socket (no ping binary needed); exit 0 when the reply arrives within 1 s.
PING = textwrap.dedent(
    """
    import os, socket, struct, sys, time
    def csum(b):
        s = sum(struct.unpack(f"!{len(b) // 2}H", b)); s = (s >> 16) + (s & 0xFFFF); s += s >> 16
        return ~s & 0xFFFF
    dst, ident = sys.argv[1], os.getpid() & 0xFFFF
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.settimeout(1.0)
    body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"acknet"
    s.sendto(struct.pack("!BBHHH", 8, 0, csum(body), ident, 1) + b"acknet", (dst, 0))
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


def ping(netns: str, dst: str) -> bool:
    run = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", PING, dst], capture_output=True, check=False
    )
    return run.returncode == 0


def kernel_state(netns: list[str]) -> str:
    """What the kernel holds in ``netns``, minus counters and learned neighbours (they age)."""
    out = []
    for ns in netns:
        for cmd in (["-o", "link"], ["-o", "addr"], ["route", "show", "table", "all"], ["rule"]):
            out.append(
                subprocess.run(["ip", "-n", ns, *cmd], capture_output=True, text=True, check=True).stdout
            )
        neigh = ["ip", "-n", ns, "neigh", "show", "nud", "permanent"]
        out.append(subprocess.run(neigh, capture_output=True, text=True, check=True).stdout)
    return "\n".join(out)


# -- hand-built plans ------------------------------------------------------------------------------

MACS = {"node-1": 1, "node-2": 2, "db": 3, "node-x": 4, "fl-1": 5, "fl-2": 6}


def vswitch(name: str, cidr: str) -> VSwitchUsage:
    net = IPv4Network(cidr)
    return VSwitchUsage(name, "prod", net, "cn-hangzhou-h", net[-3], (), 0, 0)


def eni(instance: str, index: int, vsw: str, *ips: str, exclusive: str | None = None) -> Eni:
    return Eni(
        id=f"eni-{instance}-{index}",
        instance=instance,
        index=index,
        vswitch=vsw,
        mac=f"00:16:3e:{MACS[instance]:02x}:00:{index:02x}",
        primary_ip=IPv4Address(ips[0]),
        ips=tuple(IPv4Address(i) for i in ips),
        security_groups=("sg",),
        exclusive_pod=exclusive,
    )


def instance(name: str, ip: str, *enis: Eni, node: bool = True, pod_cidr: str | None = None) -> Instance:
    return Instance(
        name=name,
        instance_type="ecs.g7.xlarge",
        zone="cn-hangzhou-h",
        vswitch="node-h",
        primary_ip=IPv4Address(ip),
        security_groups=("sg",),
        enis=(eni(name, 0, "node-h", ip), *enis),
        cluster="ack" if node else None,
        pod_cidr=IPv4Network(pod_cidr) if pod_cidr else None,
    )


def pod(ns: str, name: str, node: str, ip: str, eni_id: str | None) -> PlannedPod:
    return PlannedPod("ack", ns, name, {}, (), node=node, ip=IPv4Address(ip), eni=eni_id, phase="Running")


def plan_of(
    instances: tuple[Instance, ...], pods: tuple[PlannedPod, ...], routes: tuple[RouteEntry, ...] = ()
) -> Plan:
    vswitches = (vswitch("node-h", "192.168.0.0/24"), vswitch("pod-h", "192.168.16.0/20"))
    return Plan(Resources(), vswitches, instances, pods, (), (), routes)


def terway_plan(with_pod_a: bool = True) -> Plan:
    n1 = instance("node-1", "192.168.0.10", eni("node-1", 1, "pod-h", "192.168.16.5", "192.168.16.6"))
    n2 = instance("node-2", "192.168.0.11", eni("node-2", 1, "pod-h", "192.168.16.7"))
    db = instance("db", "192.168.0.20", node=False)
    pods = (
        pod("default", "a", "node-1", "192.168.16.5", "eni-node-1-1"),
        pod("default", "b", "node-1", "192.168.16.6", "eni-node-1-1"),
        pod("web", "c", "node-2", "192.168.16.7", "eni-node-2-1"),
    )
    return plan_of((n1, n2, db), pods if with_pod_a else pods[1:])


def exclusive_plan() -> Plan:
    nx = instance("node-x", "192.168.0.30", eni("node-x", 1, "pod-h", "192.168.16.40", exclusive="default/x"))
    db = instance("db", "192.168.0.20", node=False)
    return plan_of((nx, db), (pod("default", "x", "node-x", "192.168.16.40", "eni-node-x-1"),))


def flannel_plan() -> Plan:
    n1 = instance("fl-1", "192.168.0.10", pod_cidr="172.20.0.0/25")
    n2 = instance("fl-2", "192.168.0.11", pod_cidr="172.20.0.128/25")
    pods = (
        pod("default", "p", "fl-1", "172.20.0.2", None),
        pod("default", "q", "fl-2", "172.20.0.130", None),
    )
    routes = (
        RouteEntry("prod", IPv4Network("172.20.0.0/25"), "fl-1"),
        RouteEntry("prod", IPv4Network("172.20.0.128/25"), "fl-2"),
    )
    return plan_of((n1, n2), pods, routes)


# -- tests -----------------------------------------------------------------------------------------


def test_terway_pods_reach_each_other_and_ecs(emulation: str) -> None:
    apply_kernel_plan(render_topology(terway_plan(), emulation))
    a, c = names.pod_netns(emulation, "default", "a"), names.pod_netns(emulation, "web", "c")
    db = names.ecs_netns(emulation, "db")
    assert ping(a, "192.168.16.6"), "pod -> pod on the same node"
    assert ping(a, "192.168.16.7"), "pod -> pod on another node, through the VRouter"
    assert ping(c, "192.168.16.5"), "and back"
    assert ping(a, "192.168.0.20"), "pod -> ECS"
    assert ping(db, "192.168.16.7"), "ECS -> pod"
    assert ping(names.ecs_netns(emulation, "node-1"), "192.168.16.5"), "node -> its pod"
    # No encapsulation anywhere: every link is a veth, a bridge or lo.
    for ns in list_netns(names.netns_prefix(emulation)):
        links = subprocess.run(
            ["ip", "-n", ns, "-d", "-o", "link"], capture_output=True, text=True, check=True
        ).stdout
        assert "vxlan" not in links and "ipip" not in links


def test_cross_node_pod_traffic_leaves_through_the_owning_eni(emulation: str) -> None:
    apply_kernel_plan(render_topology(terway_plan(), emulation))
    node1 = names.ecs_netns(emulation, "node-1")
    route = subprocess.run(
        [
            "ip",
            "-n",
            node1,
            "route",
            "get",
            "192.168.16.7",
            "from",
            "192.168.16.5",
            "iif",
            names.cali_ifname("default", "a"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "dev eth1" in route and "table 1001" in route


def test_exclusive_eni_pod_is_reachable(emulation: str) -> None:
    apply_kernel_plan(render_topology(exclusive_plan(), emulation))
    x, db = names.pod_netns(emulation, "default", "x"), names.ecs_netns(emulation, "db")
    assert ping(db, "192.168.16.40"), "ECS -> exclusive-ENI pod"
    assert ping(x, "192.168.0.20"), "exclusive-ENI pod -> ECS"
    assert ping(names.ecs_netns(emulation, "node-x"), "192.168.16.40"), "node -> its pod over veth1"


def test_flannel_pods_cross_nodes_via_vpc_route_entries(emulation: str) -> None:
    apply_kernel_plan(render_topology(flannel_plan(), emulation))
    p, q = names.pod_netns(emulation, "default", "p"), names.pod_netns(emulation, "default", "q")
    assert ping(p, "172.20.0.130")
    assert ping(q, "172.20.0.2")


def test_second_apply_changes_nothing(emulation: str) -> None:
    kp = render_topology(terway_plan(), emulation)
    first = apply_kernel_plan(kp)
    assert first.count() > 0
    everything = list_netns(names.netns_prefix(emulation))
    before = kernel_state(everything)
    assert apply_kernel_plan(kp, kp).empty
    # Without a previous plan (a restarted daemon) every object is ensured: still no change.
    apply_kernel_plan(kp, None)
    assert kernel_state(everything) == before


def test_diff_apply_removes_one_pod_and_keeps_the_rest(emulation: str) -> None:
    before = render_topology(terway_plan(), emulation)
    apply_kernel_plan(before)
    after = render_topology(terway_plan(with_pod_a=False), emulation)
    diff = apply_kernel_plan(after, before)
    assert not diff.add_links
    a = names.pod_netns(emulation, "default", "a")
    assert a not in list_netns(names.netns_prefix(emulation))
    node1 = names.ecs_netns(emulation, "node-1")
    rules = subprocess.run(["ip", "-n", node1, "rule"], capture_output=True, text=True, check=True).stdout
    assert "192.168.16.5" not in rules and "192.168.16.6" in rules
    links = subprocess.run(
        ["ip", "-n", node1, "-o", "link"], capture_output=True, text=True, check=True
    ).stdout
    assert names.cali_ifname("default", "a") not in links
    assert ping(names.pod_netns(emulation, "default", "b"), "192.168.16.7")
    # And back again.
    apply_kernel_plan(before, after)
    assert ping(a, "192.168.16.7")


def test_kernel_errors_name_the_object_and_operation(emulation: str) -> None:
    kp = render_topology(terway_plan(), emulation)
    ns = names.ecs_netns(emulation, "db")
    broken = make_plan(
        kp.namespaces,
        kp.links,
        kp.addresses,
        (*kp.routes, Route(ns, IPv4Network("10.9.0.0/16"), "eth7")),
        kp.rules,
        kp.neighbours,
    )
    with pytest.raises(DataplaneError) as info:
        apply_kernel_plan(broken)
    assert info.value.operation == "add route"
    assert "10.9.0.0/16" in info.value.object and ns in info.value.object
    assert info.value.errno == errno.ENODEV


def test_remove_emulation_leaves_no_namespace(emulation: str) -> None:
    apply_kernel_plan(render_topology(terway_plan(), emulation))
    assert list_netns(names.netns_prefix(emulation))
    removed = remove_emulation(emulation)
    assert len(removed) == 8  # 7 of the VPC and its instances, and the Internet
    assert not list_netns(names.netns_prefix(emulation))
    # Nothing of another emulation whose name starts the same is touched.
    assert remove_emulation(emulation) == []


def test_apply_of_an_empty_plan_does_nothing(emulation: str) -> None:
    assert apply_kernel_plan(KernelPlan()).empty
    assert not list_netns(names.netns_prefix(emulation))


def test_veths_have_one_queue_each_way(emulation: str) -> None:
    apply_kernel_plan(render_topology(terway_plan(), emulation))
    for ns, dev in (
        (names.pod_netns(emulation, "default", "a"), "eth0"),
        (names.ecs_netns(emulation, "node-1"), "eth1"),
    ):
        details = subprocess.run(
            ["ip", "-n", ns, "-d", "link", "show", dev], capture_output=True, text=True, check=True
        ).stdout
        assert "numtxqueues 1 numrxqueues 1" in details, details


# -- namespaces deleted behind apply's back ---------------------------------------------------------


def delete_netns(netns: str, make_again: bool) -> None:
    """What someone else may do between two applies: ``ip netns del`` (the kernel then destroys the
    namespace's veths and their peers elsewhere, later), and perhaps ``ip netns add`` of the same name."""
    subprocess.run(["ip", "netns", "del", netns], check=True)
    if make_again:
        subprocess.run(["ip", "netns", "add", netns], check=True)


@pytest.mark.parametrize("make_again", [False, True], ids=["deleted", "deleted-and-made-again"])
def test_apply_rebuilds_a_pod_namespace_deleted_since_the_last_apply(
    emulation: str, make_again: bool
) -> None:
    kp = render_topology(terway_plan(), emulation)
    apply_kernel_plan(kp)
    a = names.pod_netns(emulation, "default", "a")
    delete_netns(a, make_again)
    diff = apply_kernel_plan(kp, kp)
    assert a in {ns.name for ns in diff.add_namespaces}
    assert ping(a, "192.168.16.7"), "the pod's own side is back"
    assert ping(names.ecs_netns(emulation, "node-1"), "192.168.16.5"), "and its node's side of the veth"
    assert ping(names.pod_netns(emulation, "web", "c"), "192.168.16.5"), "and the way from another node"
    assert apply_kernel_plan(kp, kp).empty


def test_apply_rebuilds_an_exclusive_eni_pod_made_again(emulation: str) -> None:
    """The exclusive ENI's other end is a port of the VRouter's bridge: it goes with the pod's namespace."""
    kp = render_topology(exclusive_plan(), emulation)
    apply_kernel_plan(kp)
    x, db = names.pod_netns(emulation, "default", "x"), names.ecs_netns(emulation, "db")
    delete_netns(x, make_again=True)
    apply_kernel_plan(kp, kp)
    assert ping(db, "192.168.16.40"), "ECS -> exclusive-ENI pod, through a new VRouter port"
    assert ping(names.ecs_netns(emulation, "node-x"), "192.168.16.40"), "node -> its pod over veth1"
    assert apply_kernel_plan(kp, kp).empty


def test_a_changed_plan_applies_over_a_namespace_made_again(emulation: str) -> None:
    before = render_topology(terway_plan(), emulation)
    apply_kernel_plan(before)
    b = names.pod_netns(emulation, "default", "b")
    delete_netns(b, make_again=True)
    after = render_topology(terway_plan(with_pod_a=False), emulation)
    apply_kernel_plan(after, before)
    assert names.pod_netns(emulation, "default", "a") not in list_netns(names.netns_prefix(emulation))
    assert ping(b, "192.168.16.7")
    assert apply_kernel_plan(after, after).empty
