"""render_topology on hand-built plans: what the kernel plan holds for Terway (shared and exclusive ENI),
Flannel, standalone ECS, hostNetwork pods and the emulated Internet, plus the names and the plan diff.
Pure; no root."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from acknet.controllers.state import (
    Eni,
    Instance,
    Plan,
    PlannedPod,
    RouteEntry,
    VSwitchUsage,
)
from acknet.dataplane.render import names
from acknet.dataplane.render.kernel import (
    Address,
    Bridge,
    KernelPlan,
    Neighbour,
    Route,
    Rule,
    Veth,
    diff_plans,
)
from acknet.dataplane.render.topology import public_addresses, render_topology
from acknet.model.cloud import LoadBalancer
from acknet.model.documents import Source
from acknet.model.load import load_resources
from acknet.model.resources import Resources

EMU = "tx"
VRT = "tx-vpc-prod"
DEFAULT = IPv4Network("0.0.0.0/0")
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


def node(name: str, ip: str, *enis: Eni, pod_cidr: str | None = None, mode: str = "shared") -> Instance:
    return Instance(
        name=name,
        instance_type="ecs.g7.xlarge",
        zone="cn-hangzhou-h",
        vswitch="node-h",
        primary_ip=IPv4Address(ip),
        security_groups=("sg",),
        enis=(eni(name, 0, "node-h", ip), *enis),
        cluster="ack",
        node_pool="default",
        eni_mode=mode,  # type: ignore[arg-type]
        pod_cidr=IPv4Network(pod_cidr) if pod_cidr else None,
    )


def pod(ns: str, name: str, node_name: str, ip: str, eni_id: str | None) -> PlannedPod:
    return PlannedPod(
        cluster="ack",
        namespace=ns,
        name=name,
        labels={},
        ports=(),
        node=node_name,
        ip=IPv4Address(ip),
        eni=eni_id,
        phase="Running",
    )


def make_plan(
    instances: tuple[Instance, ...], pods: tuple[PlannedPod, ...], routes: tuple[RouteEntry, ...] = ()
) -> Plan:
    return Plan(
        resources=Resources(),
        vswitches=(vswitch("node-h", "192.168.0.0/24"), vswitch("pod-h", "192.168.16.0/20")),
        instances=instances,
        pods=pods,
        services=(),
        endpoint_slices=(),
        routes=routes,
    )


def terway_plan() -> Plan:
    """Two Terway nodes with one secondary ENI each in pod-h, pods on both, and a standalone ECS."""
    n1 = node("node-1", "192.168.0.10", eni("node-1", 1, "pod-h", "192.168.16.5", "192.168.16.6"))
    n2 = node("node-2", "192.168.0.11", eni("node-2", 1, "pod-h", "192.168.16.7"))
    db = Instance(
        name="db",
        instance_type="ecs.g7.large",
        zone="cn-hangzhou-h",
        vswitch="node-h",
        primary_ip=IPv4Address("192.168.0.20"),
        security_groups=("sg",),
        enis=(eni("db", 0, "node-h", "192.168.0.20"),),
    )
    pods = (
        pod("default", "a", "node-1", "192.168.16.5", "eni-node-1-1"),
        pod("default", "b", "node-1", "192.168.16.6", "eni-node-1-1"),
        pod("web", "c", "node-2", "192.168.16.7", "eni-node-2-1"),
    )
    return make_plan((n1, n2, db), pods)


def exclusive_plan() -> Plan:
    n = node(
        "node-x",
        "192.168.0.30",
        eni("node-x", 1, "pod-h", "192.168.16.40", exclusive="default/x"),
        mode="exclusive",
    )
    return make_plan((n,), (pod("default", "x", "node-x", "192.168.16.40", "eni-node-x-1"),))


def flannel_plan() -> Plan:
    n1 = node("fl-1", "192.168.0.10", pod_cidr="172.20.0.0/25")
    n2 = node("fl-2", "192.168.0.11", pod_cidr="172.20.0.128/25")
    pods = (
        pod("default", "p", "fl-1", "172.20.0.2", None),
        pod("default", "q", "fl-2", "172.20.0.130", None),
    )
    routes = (
        RouteEntry("prod", IPv4Network("172.20.0.0/25"), "fl-1"),
        RouteEntry("prod", IPv4Network("172.20.0.128/25"), "fl-2"),
    )
    return make_plan((n1, n2), pods, routes)


def veth_between(kp: KernelPlan, ns: str, dev: str) -> Veth:
    for link in kp.links:
        if isinstance(link, Veth):
            for a, b in ((link.end, link.peer), (link.peer, link.end)):
                if (a.namespace, a.name) == (ns, dev):
                    return Veth(a, b)
    raise AssertionError(f"no veth {dev} in {ns}")


# -- names ---------------------------------------------------------------------------------------


def test_cali_name_is_calicos_formula() -> None:
    # Calico VethNameForWorkload: prefix + first 11 hex of sha1("<namespace>.<pod>").
    name = names.cali_ifname("default", "a")
    assert name.startswith("cali") and len(name) == 15
    assert name == "cali" + __import__("hashlib").sha1(b"default.a").hexdigest()[:11]


@pytest.mark.parametrize(
    ("kind", "name"),
    [("vpc", "prod"), ("ecs", "node-1"), ("pod", "kube-system." + "very-long-pod-name-" * 5)],
    ids=["vpc", "ecs", "long-pod"],
)
def test_namespace_names_carry_the_prefix_and_stay_short(kind: names.NamespaceKind, name: str) -> None:
    ns = names.netns_name("acknet", kind, name)
    assert ns.startswith(f"acknet-{kind}-")
    assert len(ns) <= names.NETNS_NAME_MAX


def test_long_names_that_share_a_beginning_stay_distinct() -> None:
    a = names.pod_netns("acknet", "default", "x" * 80 + "a")
    b = names.pod_netns("acknet", "default", "x" * 80 + "b")
    assert a != b and len(a) == len(b) == names.NETNS_NAME_MAX


@pytest.mark.parametrize("bad", ["", "a-b", "Acknet", "1abc", "x" * 17], ids=repr)
def test_emulation_names_cannot_prefix_another(bad: str) -> None:
    with pytest.raises(ValueError, match="emulation name"):
        names.check_emulation(bad)


def test_interface_names_fit_ifnamsiz() -> None:
    for name in (
        names.vswitch_bridge("a-very-long-vswitch-name"),
        names.eni_port("eni-0123456789abcdef"),
        names.flannel_veth_ifname("ns", "pod"),
        names.internet_port("a-very-long-vpc-name-" * 3),
        names.VROUTER_UPLINK,
    ):
        assert len(name) <= names.IFNAMSIZ


# -- Terway shared ENI ---------------------------------------------------------------------------


def test_vrouter_has_a_bridge_with_the_gateway_per_vswitch() -> None:
    kp = render_topology(terway_plan(), EMU)
    bridges = {lk.name: lk for lk in kp.links if isinstance(lk, Bridge)}
    node_br, pod_br = names.vswitch_bridge("node-h"), names.vswitch_bridge("pod-h")
    assert set(bridges) == {node_br, pod_br}
    assert all(b.namespace == VRT for b in bridges.values())
    assert Address(VRT, node_br, IPv4Interface("192.168.0.253/24")) in kp.addresses
    assert Address(VRT, pod_br, IPv4Interface("192.168.31.253/20")) in kp.addresses
    sysctls = dict(kp.namespace(VRT).sysctls)
    assert sysctls["net.ipv4.ip_forward"] == "1"
    assert sysctls["net.ipv4.conf.all.send_redirects"] == "0"


def test_node_enis_are_veths_into_their_vswitch_bridges() -> None:
    kp = render_topology(terway_plan(), EMU)
    ns = "tx-ecs-node-1"
    eth0 = veth_between(kp, ns, "eth0")
    assert eth0.end.mac == "00:16:3e:01:00:00"
    assert (eth0.peer.namespace, eth0.peer.master) == (VRT, names.vswitch_bridge("node-h"))
    eth1 = veth_between(kp, ns, "eth1")
    assert eth1.end.mac == "00:16:3e:01:00:01"
    assert eth1.peer.master == names.vswitch_bridge("pod-h")
    assert Address(ns, "eth0", IPv4Interface("192.168.0.10/24"), prefix_route=False) in kp.addresses
    assert not [a for a in kp.addresses if a.namespace == ns and a.dev == "eth1"]  # shared mode
    # The VSwitch is reached through its gateway, a permanent neighbour: no ARP in a VPC.
    gateway = IPv4Address("192.168.0.253")
    assert Route(ns, IPv4Network("192.168.0.0/24"), "eth0", via=gateway, onlink=True) in kp.routes
    assert Neighbour(ns, "eth0", gateway, names.VPC_GATEWAY_MAC) in kp.neighbours
    assert (
        Neighbour(VRT, names.vswitch_bridge("node-h"), IPv4Address("192.168.0.10"), eth0.end.mac)
        in kp.neighbours
    )
    assert Route(ns, DEFAULT, "eth0", via=IPv4Address("192.168.0.253"), onlink=True) in kp.routes
    sysctls = dict(kp.namespace(ns).sysctls)
    assert sysctls["net.ipv4.conf.eth1.rp_filter"] == "0"
    assert sysctls["net.ipv4.conf.eth1.forwarding"] == "1"


def test_shared_eni_pod_gets_terways_policy_routing() -> None:
    kp = render_topology(terway_plan(), EMU)
    node_ns, pod_ns = "tx-ecs-node-1", "tx-pod-default.a"
    cali = names.cali_ifname("default", "a")
    link = veth_between(kp, pod_ns, "eth0")
    assert (link.peer.namespace, link.peer.name) == (node_ns, cali)
    pip = IPv4Address("192.168.16.5")
    host = IPv4Network("192.168.16.5/32")
    link_ip = IPv4Address("169.254.1.1")
    # In the pod.
    assert Address(pod_ns, "eth0", IPv4Interface("192.168.16.5/32")) in kp.addresses
    assert Route(pod_ns, DEFAULT, "eth0", via=link_ip, onlink=True) in kp.routes
    assert Neighbour(pod_ns, "eth0", link_ip, link.peer.mac or "") in kp.neighbours
    # On the node.
    assert Route(node_ns, host, cali, scope="link") in kp.routes
    assert Rule(node_ns, 512, 254, dst=host) in kp.rules
    assert Rule(node_ns, 2048, 1001, src=host) in kp.rules
    assert (
        Route(node_ns, DEFAULT, "eth1", via=IPv4Address("192.168.31.253"), table=1001, onlink=True)
        in kp.routes
    )
    # In the VRouter: the SDN knows the secondary IP lives behind node-1's eth1.
    assert Neighbour(VRT, names.vswitch_bridge("pod-h"), pip, "00:16:3e:01:00:01") in kp.neighbours


def test_standalone_ecs_has_only_its_enis() -> None:
    kp = render_topology(terway_plan(), EMU).in_namespace("tx-ecs-db")
    assert [lk.end.name for lk in kp.links if isinstance(lk, Veth)] == ["eth0"]
    gateway = IPv4Address("192.168.0.253")
    assert kp.addresses == (
        Address("tx-ecs-db", "eth0", IPv4Interface("192.168.0.20/24"), prefix_route=False),
    )
    assert set(kp.routes) == {
        Route("tx-ecs-db", DEFAULT, "eth0", via=gateway, onlink=True),
        Route("tx-ecs-db", IPv4Network("192.168.0.0/24"), "eth0", via=gateway, onlink=True),
    }
    assert kp.rules == ()
    assert kp.neighbours == (Neighbour("tx-ecs-db", "eth0", gateway, names.VPC_GATEWAY_MAC),)
    assert "net.ipv4.ip_forward" not in dict(kp.namespaces[0].sysctls)


def test_render_is_deterministic() -> None:
    plan = terway_plan()
    assert render_topology(plan, EMU) == render_topology(plan, EMU)
    assert str(render_topology(plan, EMU)) == str(render_topology(plan, EMU))


# -- Terway exclusive ENI ------------------------------------------------------------------------


def test_exclusive_eni_is_the_pods_eth0() -> None:
    kp = render_topology(exclusive_plan(), EMU)
    pod_ns, node_ns = "tx-pod-default.x", "tx-ecs-node-x"
    eth0 = veth_between(kp, pod_ns, "eth0")
    assert eth0.end.mac == "00:16:3e:04:00:01"
    assert (eth0.peer.namespace, eth0.peer.master) == (VRT, names.vswitch_bridge("pod-h"))
    assert Address(pod_ns, "eth0", IPv4Interface("192.168.16.40/32")) in kp.addresses
    assert Route(pod_ns, DEFAULT, "eth0", via=IPv4Address("192.168.31.253"), onlink=True) in kp.routes
    # The ENI is not in the node any more; veth1 connects the pod to the node's stack.
    assert "eth1" not in {
        lk.end.name for lk in kp.links if isinstance(lk, Veth) and lk.end.namespace == node_ns
    }
    veth1 = veth_between(kp, pod_ns, "veth1")
    assert veth1.peer.namespace == node_ns
    assert Route(node_ns, IPv4Network("192.168.16.40/32"), veth1.peer.name, scope="link") in kp.routes
    assert Address(node_ns, veth1.peer.name, IPv4Interface("169.254.1.1/32")) in kp.addresses
    assert (
        Route(pod_ns, IPv4Network("192.168.0.30/32"), "veth1", via=IPv4Address("169.254.1.1"), onlink=True)
        in kp.routes
    )
    # The VRouter knows the exclusive ENI's address as it knows every ENI address: no ARP.
    assert (
        Neighbour(VRT, names.vswitch_bridge("pod-h"), IPv4Address("192.168.16.40"), eth0.end.mac)
        in kp.neighbours
    )


# -- Flannel ---------------------------------------------------------------------------------------


def test_flannel_pods_sit_on_cni0_and_the_vpc_routes_podcidrs() -> None:
    kp = render_topology(flannel_plan(), EMU)
    node_ns, pod_ns = "tx-ecs-fl-1", "tx-pod-default.p"
    assert Bridge(node_ns, "cni0", names.mac_for("cni0/fl-1")) in kp.links
    assert Address(node_ns, "cni0", IPv4Interface("172.20.0.1/25")) in kp.addresses
    link = veth_between(kp, pod_ns, "eth0")
    assert (link.peer.namespace, link.peer.master) == (node_ns, "cni0")
    assert Address(pod_ns, "eth0", IPv4Interface("172.20.0.2/25")) in kp.addresses
    assert Route(pod_ns, DEFAULT, "eth0", via=IPv4Address("172.20.0.1")) in kp.routes
    br = names.vswitch_bridge("node-h")
    assert Route(VRT, IPv4Network("172.20.0.0/25"), br, via=IPv4Address("192.168.0.10")) in kp.routes
    assert Route(VRT, IPv4Network("172.20.0.128/25"), br, via=IPv4Address("192.168.0.11")) in kp.routes
    assert not kp.rules  # no policy routing in Flannel


# -- diff ------------------------------------------------------------------------------------------


def test_same_plan_diffs_empty() -> None:
    kp = render_topology(terway_plan(), EMU)
    assert diff_plans(kp, kp).empty
    assert diff_plans(None, kp).count() > 0


def test_removing_a_pod_removes_exactly_its_objects() -> None:
    plan = terway_plan()
    before = render_topology(plan, EMU)
    after = render_topology(make_plan(plan.instances, plan.pods[1:]), EMU)
    diff = diff_plans(before, after)
    assert [n.name for n in diff.remove_namespaces] == ["tx-pod-default.a"]
    assert [lk.key for lk in diff.remove_links] == [("link", "tx-pod-default.a", "eth0")]
    # The pod's namespace takes its own objects along; only the node and VRouter ones are listed.
    assert {r.namespace for r in diff.remove_routes} == {"tx-ecs-node-1"}
    assert len(diff.remove_rules) == 2
    assert sorted(n.namespace for n in diff.remove_neighbours) == ["tx-ecs-node-1", VRT]
    # The ENI's table route is still needed by pod b.
    assert not [r for r in diff.remove_routes if r.table == 1001]
    assert not (diff.add_namespaces or diff.add_links or diff.add_routes or diff.add_addresses)


def test_a_recreated_link_gets_its_addresses_back() -> None:
    plan = terway_plan()
    before = render_topology(plan, EMU)
    n1 = plan.instances[0]
    moved = Instance(
        **{
            **{f: getattr(n1, f) for f in n1.__slots__},
            "enis": (  # type: ignore[arg-type]
                Eni(
                    **{
                        **{f: getattr(n1.enis[0], f) for f in n1.enis[0].__slots__},
                        "mac": "00:16:3e:ff:ff:ff",
                    }
                ),
                n1.enis[1],
            ),
        }
    )
    after = render_topology(make_plan((moved, *plan.instances[1:]), plan.pods), EMU)
    diff = diff_plans(before, after)
    assert [lk.key for lk in diff.add_links] == [("link", "tx-ecs-node-1", "eth0")]
    assert (
        Address("tx-ecs-node-1", "eth0", IPv4Interface("192.168.0.10/24"), prefix_route=False)
        in diff.add_addresses
    )
    assert any(r.dev == "eth0" and r.namespace == "tx-ecs-node-1" for r in diff.add_routes)


# -- the emulated Internet -------------------------------------------------------------------------

INET = "tx-internet"
CLIENTS = IPv4Network("203.0.113.0/24")
INTERNET_HOP, VROUTER_HOP = IPv4Address("169.254.0.1"), IPv4Address("169.254.0.2")


def load_balancer(name: str, spec: dict[str, object]) -> LoadBalancer:
    return LoadBalancer.model_validate(
        {"apiVersion": "acknet.io/v1", "kind": "LoadBalancer", "metadata": {"name": name}, "spec": spec}
    )


def with_public_vip(plan: Plan, name: str = "web", address: str = "198.51.100.5") -> Plan:
    """``plan`` with an internet CLB in front of the ECS ``db``, its VIP as the SLB controller would give."""
    lb = load_balancer(name, {"addressType": "internet", "backendServers": [{"ecs": "db"}]})
    resources = dataclasses.replace(plan.resources, load_balancers={name: lb})
    return dataclasses.replace(plan, resources=resources, slb_addresses={name: IPv4Address(address)})


def test_internet_names_are_the_emulations_own() -> None:
    assert names.internet_netns("acknet") == "acknet-internet"
    assert names.internet_netns("acknet").startswith(names.netns_prefix("acknet"))
    assert names.internet_port("prod") != names.internet_port("dev")


def test_internet_holds_the_clients_and_an_unnumbered_uplink_per_vrouter() -> None:
    kp = render_topology(terway_plan(), EMU)
    sysctls = dict(kp.namespace(INET).sysctls)
    assert sysctls["net.ipv4.ip_forward"] == "1"
    assert sysctls["net.ipv4.conf.all.rp_filter"] == "1"  # strict: private sources never get in
    # The clients: 203.0.113.1/24 on lo, whose prefix route makes all of 203.0.113.0/24 local.
    inet = kp.in_namespace(INET)
    assert inet.addresses == (Address(INET, "lo", IPv4Interface("203.0.113.1/24")),)
    uplink = veth_between(kp, VRT, names.VROUTER_UPLINK)
    assert (uplink.peer.namespace, uplink.peer.name) == (INET, names.internet_port("prod"))
    assert uplink.end.master is None and uplink.peer.master is None
    assert not [a for a in kp.addresses if a.dev in (names.VROUTER_UPLINK, names.internet_port("prod"))]
    assert (
        Neighbour(VRT, names.VROUTER_UPLINK, INTERNET_HOP, uplink.peer.mac or "") in kp.neighbours
        and Neighbour(INET, names.internet_port("prod"), VROUTER_HOP, uplink.end.mac or "") in kp.neighbours
    )


def test_without_public_addresses_nothing_routes_between_vpc_and_internet() -> None:
    kp = render_topology(terway_plan(), EMU)
    assert kp.in_namespace(INET).routes == ()  # no way to any private address
    assert not [r for r in kp.routes if r.dev == names.VROUTER_UPLINK]  # no way out of the VPC


def test_an_empty_plan_still_has_the_internet() -> None:
    kp = render_topology(Plan(Resources(), (), (), (), (), (), ()), EMU)
    assert [n.name for n in kp.namespaces] == [INET]
    assert kp.links == () and len(kp.addresses) == 1


def test_public_addresses_route_to_the_vrouter_they_sit_behind() -> None:
    kp = render_topology(with_public_vip(terway_plan()), EMU)
    port = names.internet_port("prod")
    vip = IPv4Network("198.51.100.5/32")
    assert kp.in_namespace(INET).routes == (Route(INET, vip, port, via=VROUTER_HOP, onlink=True),)
    # And the VRouter routes the clients back, for the replies of that VIP only (the Internet's
    # reverse-path filter drops anything from a private source).
    assert [r for r in kp.routes if r.dev == names.VROUTER_UPLINK] == [
        Route(VRT, CLIENTS, names.VROUTER_UPLINK, via=INTERNET_HOP, onlink=True)
    ]
    # Adding or removing a public address touches routes only, never the uplink.
    diff = diff_plans(render_topology(terway_plan(), EMU), kp)
    assert diff.count() == len(diff.add_routes) == 2


DB_GROUP = [{"name": "g", "servers": [{"ecs": "db", "port": 80}]}]


@pytest.mark.parametrize(
    ("spec", "address", "public"),
    [
        ({"addressType": "internet", "backendServers": [{"ecs": "db"}]}, "198.51.100.5", True),
        ({"addressType": "internet", "vServerGroups": DB_GROUP}, "198.51.100.6", True),
        ({"addressType": "internet", "backendServers": [{"ecs": "db"}]}, "192.168.0.50", False),
        ({"addressType": "intranet", "vswitch": "node-h"}, "192.168.0.50", False),
        ({"addressType": "internet", "backendServers": [{"ecs": "gone"}]}, "198.51.100.7", False),
        ({"addressType": "internet"}, "198.51.100.8", False),
    ],
    ids=["backend-server", "vserver-group", "not-public", "intranet", "unknown-backend", "no-backend"],
)
def test_public_addresses_are_internet_vips_in_the_vpc_of_their_backends(
    spec: dict[str, object], address: str, public: bool
) -> None:
    plan = terway_plan()
    plan = dataclasses.replace(
        plan,
        resources=dataclasses.replace(plan.resources, load_balancers={"lb": load_balancer("lb", spec)}),
        slb_addresses={"lb": IPv4Address(address)},
    )
    assert public_addresses(plan) == ({IPv4Address(address): "prod"} if public else {})


# -- hostNetwork pods ------------------------------------------------------------------------------

CLOUD = """
apiVersion: acknet.io/v1
kind: VPC
metadata: {name: vpc}
spec: {cidrBlock: 192.168.0.0/16}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {name: node-h}
spec: {vpc: vpc, cidrBlock: 192.168.0.0/24, zoneId: cn-hangzhou-h}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {name: pod-h}
spec: {vpc: vpc, cidrBlock: 192.168.32.0/19, zoneId: cn-hangzhou-h}
---
apiVersion: acknet.io/v1
kind: SecurityGroup
metadata: {name: cluster-sg}
spec: {vpc: vpc}
---
apiVersion: acknet.io/v1
kind: Cluster
metadata: {name: ack}
spec:
  vpc: vpc
  securityGroups: [cluster-sg]
  podVSwitches: [pod-h]
  networkPlugin: PLUGIN
  addons: []
  nodePools:
  - {name: default, instanceType: ecs.g7.xlarge, vswitches: [node-h], count: 2}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default}
spec:
  nodeName: ack-default-0
  containers:
  - {name: main, ports: [{containerPort: 8080}]}
"""
HOST_POD = """
---
apiVersion: v1
kind: Pod
metadata: {name: agent, namespace: default}
spec:
  hostNetwork: true
  nodeName: ack-default-0
  containers:
  - {name: main, ports: [{containerPort: 9100}]}
"""


def plan_from_yaml(text: str) -> Plan:
    from acknet.controllers.plan import plan

    result = load_resources([Source("test.yaml", text)])
    assert not result.errors, "\n".join(str(d) for d in result.errors)
    return plan(result.resources)


@pytest.mark.parametrize("plugin", ["terway", "flannel"])
def test_host_network_pods_render_nothing_of_their_own(plugin: str) -> None:
    cloud = CLOUD.replace("PLUGIN", plugin)
    with_agent = plan_from_yaml(cloud + HOST_POD)
    agent = next(p for p in with_agent.pods if p.name == "agent")
    node = next(i for i in with_agent.instances if i.name == agent.node)
    assert agent.host_network and agent.ip == node.primary_ip and agent.phase == "Running"
    kp = render_topology(with_agent, EMU)
    assert names.pod_netns(EMU, "default", "agent") not in {n.name for n in kp.namespaces}
    assert names.pod_netns(EMU, "default", "web") in {n.name for n in kp.namespaces}
    # Exactly the plan without it: no veth, address, route, rule or neighbour for its (the node's) IP.
    assert kp == render_topology(plan_from_yaml(cloud), EMU)
