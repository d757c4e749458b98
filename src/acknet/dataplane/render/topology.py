"""The VPC, its ECS instances and the pods' datapath, rendered as a kernel plan.

What is built (DESIGN.md, "The live network"; reference/alibaba.md 1.4, 1.5 and 2):

- one VRouter namespace per VPC; each VSwitch is a Linux bridge there holding the gateway address,
  and the VPC's custom route entries (Flannel PodCIDR -> node) are routes via the node's primary IP;
- one namespace per ECS instance; each ENI is a veth whose other end is a port of its VSwitch bridge,
  so packets between instances always cross the VRouter as they cross the VPC;
- Terway shared-ENI pods on veths with policy routing (T:plugin/datapath/policy_router_linux.go),
  exclusive-ENI pods owning their ENI (T:plugin/datapath/exclusive_eni_linux.go), Flannel pods on a
  ``cni0`` bridge with the ``vpc`` backend (no encapsulation; ACK's default) or the ``vxlan`` backend
  (a ``flannel.1`` VXLAN device per node, built as flannel's backend/vxlan does; the VPC routes only
  node addresses);
- hostNetwork pods get nothing here: they live in their node's namespace on its address;
- the emulated Internet: one namespace holding every client address (203.0.113.0/24) and one uplink
  per VRouter; it routes each public address (198.51.100.0/24) to the VRouter it sits behind, and a
  VRouter routes the clients back only when it owns a public address. Nothing routes a private
  address to the Internet or the Internet to a private address: traffic to the Internet needs SNAT
  on an EIP or a NAT gateway (reference/alibaba.md 1.5), and an intranet address is reachable only
  inside the VPC (4).

Pure: no I/O, the same plan always renders the same ``KernelPlan``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from acknet.controllers.state import Eni, Instance, Plan, PlannedPod, VSwitchUsage
from acknet.dataplane.render import names
from acknet.dataplane.render import slb as slb_render
from acknet.dataplane.render.kernel import (
    MAIN_TABLE,
    Address,
    Bridge,
    Fdb,
    KernelPlan,
    Link,
    Namespace,
    Neighbour,
    Route,
    Rule,
    Veth,
    VethEnd,
    Vxlan,
    make_plan,
)
from acknet.model.cloud import LoadBalancer
from acknet.model.validate import INTERNET_VIP_RANGE

DEFAULT = IPv4Network("0.0.0.0/0")
LINK_IP = IPv4Address(names.TERWAY_LINK_IP)

# Terway's rule priorities (T:plugin/datapath/consts_linux.go): traffic to a pod is looked up in
# main, where its /32 points at the pod's veth; traffic from a pod uses the table of its ENI.
TO_CONTAINER_PRIORITY = 512
FROM_CONTAINER_PRIORITY = 2048

# Every namespace: the emulation is IPv4-only, and without IPv6 no veth sends DAD or router
# solicitations, which keeps captures readable and link setup quick.
_IPV4_ONLY = (
    ("net.ipv6.conf.all.disable_ipv6", "1"),
    ("net.ipv6.conf.default.disable_ipv6", "1"),
)
# The VRouter forwards between VSwitches and, within one VSwitch, back out of the bridge a packet
# came in on (pod -> pod on another node): an ICMP redirect there would be wrong, the VPC sends none.
# rp_filter is off because a node's secondary ENI asks for its gateway with the node's primary IP
# (the ENI has no address in shared mode), which sits behind another bridge. New namespaces inherit
# conf.all from the host's namespace, so every value that matters is set explicitly.
_VROUTER_SYSCTLS = (
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv4.conf.all.send_redirects", "0"),
    ("net.ipv4.conf.default.send_redirects", "0"),
    ("net.ipv4.conf.all.rp_filter", "0"),
    ("net.ipv4.conf.default.rp_filter", "0"),
)
# A node routes for its pods. Terway sets forwarding=1 and rp_filter=0 per interface
# (T:plugin/driver/utils/utils_linux.go); the effective rp_filter is max(all, interface), so
# conf.all must be 0 too or the per-interface value has no effect.
_NODE_SYSCTLS = (
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv4.conf.all.rp_filter", "0"),
)


# flannel's vxlan backend (flannel:pkg/backend/vxlan): device "flannel.<VNI>" with VNI 1, the Linux
# VXLAN port 8472 (not IANA's 4789), learning off, and an MTU 50 bytes below the external interface's
# (outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14).
FLANNEL_VNI = 1
FLANNEL_VXLAN_PORT = 8472
FLANNEL_VXLAN_DEV = f"flannel.{FLANNEL_VNI}"
VXLAN_OVERHEAD = 50
ENI_MTU = 1500  # veths are created with the kernel default


# The emulated Internet (DESIGN.md): clients use 203.0.113.0/24 (TEST-NET-3), public VIPs and EIPs come
# from 198.51.100.0/24 (TEST-NET-2); documentation ranges (RFC 5737) that are routed nowhere real.
INTERNET_CLIENTS = IPv4Network("203.0.113.0/24")
PUBLIC_ADDRESSES = INTERNET_VIP_RANGE  # 198.51.100.0/24, as validation knows it
# On lo, an address's prefix route is a *local* route (the kernel's fib_add_ifaddr does for lo what
# it does for 127.0.0.1/8): every address of 203.0.113.0/24 is the Internet's own, so a test can act
# as any number of clients by binding 203.0.113.x, with one address object.
INTERNET_CLIENT = IPv4Interface("203.0.113.1/24")
# A VRouter's uplink is unnumbered, like Terway's pod veth: each side names the other by a next-hop
# address that is on no interface, resolved by a permanent neighbour. Link-local 169.254.0.0/16 cannot
# collide with a VPC (Alibaba Cloud rejects it as a VPC CIDR; acknet accepts only RFC 1918 ones) nor
# with SLB health checks (100.64.0.0/10); 169.254.1.1 is Terway's, these two are not. Unnumbered,
# because (1) the Internet's side must hold no address, or the kernel would pick it rather than
# 203.0.113.1 as the source towards a VRouter, and (2) every VPC uses the same two addresses: nothing to
# allocate, and adding a VPC changes nothing on the others' uplinks.
INTERNET_NEXT_HOP = IPv4Address("169.254.0.1")  # the Internet, as a VRouter's route names it
VROUTER_NEXT_HOP = IPv4Address("169.254.0.2")  # a VRouter, as the Internet's routes name it
# The Internet forwards between uplinks (one VPC's EIP to another's public VIP). Strict reverse-path
# filtering is its bogon filter: a packet is accepted on an uplink only from a public address routed
# back through that uplink, so a private source (an instance without EIP) never gets in, even where a
# VRouter routes 203.0.113.0/24 for the replies of its public addresses.
_INTERNET_SYSCTLS = (
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv4.conf.all.send_redirects", "0"),
    ("net.ipv4.conf.default.send_redirects", "0"),
    ("net.ipv4.conf.all.rp_filter", "1"),
    ("net.ipv4.conf.default.rp_filter", "1"),
)


def _iface_sysctls(dev: str) -> list[tuple[str, str]]:
    return [(f"net.ipv4.conf.{dev}.forwarding", "1"), (f"net.ipv4.conf.{dev}.rp_filter", "0")]


@dataclass(slots=True)
class _Builder:
    """Collects kernel objects; ``make_plan`` sorts them and rejects two different objects with one key."""

    emulation: str
    sysctls: dict[str, dict[str, str]] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)
    addresses: list[Address] = field(default_factory=list)
    routes: dict[tuple[str, ...], Route] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    neighbours: list[Neighbour] = field(default_factory=list)
    fdbs: list[Fdb] = field(default_factory=list)

    def namespace(self, name: str, sysctls: Iterable[tuple[str, str]] = ()) -> str:
        values = self.sysctls.setdefault(name, dict(_IPV4_ONLY))
        values.update(sysctls)
        return name

    def route(self, route: Route) -> None:
        # Several pods on one ENI render the same table default route: keep one.
        old = self.routes.setdefault(route.key, route)
        if old != route:
            raise ValueError(f"conflicting routes {old} and {route}")

    def plan(self) -> KernelPlan:
        return make_plan(
            (Namespace(n, tuple(sorted(s.items()))) for n, s in self.sysctls.items()),
            self.links,
            self.addresses,
            self.routes.values(),
            self.rules,
            self.neighbours,
            self.fdbs,
        )


def _host(ip: IPv4Address) -> IPv4Network:
    return IPv4Network(f"{ip}/32")


def _network_plugin(plan: Plan, inst: Instance) -> str:
    cluster = plan.resources.clusters.get(inst.cluster or "")
    if cluster is not None:
        return cluster.spec.network_plugin
    # Plans built without their Cluster resource (tests): only Flannel nodes carry a PodCIDR.
    return "flannel" if inst.pod_cidr is not None else "terway"


def _flannel_backend(plan: Plan, inst: Instance) -> str:
    cluster = plan.resources.clusters.get(inst.cluster or "")
    return cluster.spec.flannel_backend if cluster is not None else "vpc"


def _service_cidr(plan: Plan, inst: Instance) -> IPv4Network | None:
    cluster = plan.resources.clusters.get(inst.cluster or "")
    return cluster.spec.service_cidr if cluster is not None else None


def render_topology(plan: Plan, emulation: str) -> KernelPlan:
    """The namespaces, links, addresses, routes, rules and neighbours of every VPC, instance and pod."""
    names.check_emulation(emulation)
    b = _Builder(emulation)
    vswitches = {v.name: v for v in plan.vswitches}
    instances = {i.name: i for i in plan.instances}
    enis = {e.id: e for i in plan.instances for e in i.enis}
    pods = {p.key: p for p in plan.pods if p.node is not None and p.ip is not None}

    vpcs = sorted({v.vpc for v in plan.vswitches})
    for vpc in vpcs:
        b.namespace(names.vpc_netns(emulation, vpc), _VROUTER_SYSCTLS)
    _render_internet(b, plan, vpcs)
    for vsw in plan.vswitches:
        _render_vswitch(b, vsw)
    for entry in plan.routes:
        nexthop = instances[entry.next_hop]
        vsw = vswitches[nexthop.vswitch]
        b.route(
            Route(
                names.vpc_netns(emulation, entry.vpc),
                entry.destination,
                dev=names.vswitch_bridge(vsw.name),
                via=nexthop.primary_ip,
            )
        )
    for inst in plan.instances:
        _render_instance(b, plan, inst, vswitches, pods)
    for pod in pods.values():
        inst = instances[pod.node or ""]
        if not inst.is_node or pod.host_network:
            continue  # a hostNetwork pod is its node's namespace and address: nothing of its own
        if _network_plugin(plan, inst) == "flannel":
            _render_flannel_pod(b, inst, pod)
            continue
        eni = enis.get(pod.eni or "")
        if eni is None:
            # Terway only runs a pod once it has an ENI address; a pod without one has no network.
            continue
        if eni.exclusive_pod == pod.key:
            _render_exclusive_pod(b, plan, inst, eni, pod, vswitches[eni.vswitch])
        else:
            _render_shared_pod(b, inst, eni, pod, vswitches[eni.vswitch])
    _render_slbs(b, plan)
    return b.plan()


def _render_slbs(b: _Builder, plan: Plan) -> None:
    """CLB instances: a namespace each, on its VSwitch or behind its VRouter (render/slb.py)."""
    objs = slb_render.render_slb_kernel(plan, b.emulation)
    for ns, sysctls in objs.namespaces:
        b.namespace(ns, sysctls)
    b.links.extend(objs.links)
    b.addresses.extend(objs.addresses)
    for route in objs.routes:
        b.route(route)
    b.rules.extend(objs.rules)
    b.neighbours.extend(objs.neighbours)


def _backend_instances(lb: LoadBalancer) -> list[str]:
    spec = lb.spec
    servers = [s for g in spec.v_server_groups for s in g.servers]
    servers += [s for g in spec.master_slave_server_groups for s in g.servers]
    return sorted({b.ecs for b in spec.backend_servers} | {s.ecs for s in servers if s.ecs})


def public_addresses(plan: Plan) -> dict[IPv4Address, str]:
    """Every public address (in 198.51.100.0/24) of the plan -> the VPC whose VRouter it sits behind.

    An internet CLB takes no VSwitch (validate.py rejects one), so its VPC is the one its backend ECS
    instances are in; one without backends in the plan is reached from nowhere and left out. The SLB
    controller (controllers/slb.py) allocates internet VIPs; a Service's internet SLB sits in its
    cluster's VPC. EIPs will join here.
    """
    vpc_of = {v.name: v.vpc for v in plan.vswitches}
    instance_vpc = {i.name: vpc_of.get(i.vswitch) for i in plan.instances}
    out: dict[IPv4Address, str] = {}
    for name, address in sorted(plan.slb_addresses.items()):
        lb = plan.resources.load_balancers.get(name)
        if address not in PUBLIC_ADDRESSES or lb is None or lb.spec.address_type != "internet":
            continue
        vpcs = [v for v in (instance_vpc.get(e) for e in _backend_instances(lb)) if v is not None]
        if vpcs:
            out[address] = vpcs[0]
    # The planned instances (the files' and the Services' internet SLBs) sit behind their VPC's VRouter.
    for address, vpc in slb_render.internet_vips(plan):
        out.setdefault(address, vpc)
    return out


def _render_internet(b: _Builder, plan: Plan, vpcs: list[str]) -> None:
    """The Internet namespace, its clients on lo, an unnumbered uplink per VRouter, and public routes."""
    internet = b.namespace(names.internet_netns(b.emulation), _INTERNET_SYSCTLS)
    b.addresses.append(Address(internet, "lo", INTERNET_CLIENT))
    owned: dict[str, list[IPv4Address]] = {}
    for address, vpc in public_addresses(plan).items():
        owned.setdefault(vpc, []).append(address)
    for vpc in vpcs:
        vrouter = names.vpc_netns(b.emulation, vpc)
        port = names.internet_port(vpc)
        vrouter_mac, internet_mac = names.mac_for(f"uplink/{vpc}"), names.mac_for(f"internet/{vpc}")
        b.links.append(
            Veth(
                VethEnd(vrouter, names.VROUTER_UPLINK, mac=vrouter_mac),
                VethEnd(internet, port, mac=internet_mac),
            )
        )
        b.neighbours.append(Neighbour(vrouter, names.VROUTER_UPLINK, INTERNET_NEXT_HOP, internet_mac))
        b.neighbours.append(Neighbour(internet, port, VROUTER_NEXT_HOP, vrouter_mac))
        for address in sorted(owned.get(vpc, ())):
            b.route(Route(internet, _host(address), dev=port, via=VROUTER_NEXT_HOP, onlink=True))
        if owned.get(vpc):
            # Only for the replies of its public addresses: with no EIP, NAT gateway or internet SLB a
            # VPC has no way out, so a private source meets "network unreachable" at its VRouter.
            b.route(
                Route(vrouter, INTERNET_CLIENTS, dev=names.VROUTER_UPLINK, via=INTERNET_NEXT_HOP, onlink=True)
            )


def _render_vswitch(b: _Builder, vsw: VSwitchUsage) -> None:
    vrouter = names.vpc_netns(b.emulation, vsw.vpc)
    bridge = names.vswitch_bridge(vsw.name)
    b.links.append(Bridge(vrouter, bridge, mac=names.VPC_GATEWAY_MAC))
    b.addresses.append(Address(vrouter, bridge, IPv4Interface(f"{vsw.gateway}/{vsw.cidr.prefixlen}")))


def _eni_veth(b: _Builder, eni: Eni, vsw: VSwitchUsage, namespace: str, ifname: str) -> Veth:
    """An ENI: a veth from ``namespace`` to a port of its VSwitch's bridge, carrying the ENI's MAC."""
    return Veth(
        VethEnd(namespace, ifname, mac=eni.mac),
        VethEnd(
            names.vpc_netns(b.emulation, vsw.vpc),
            names.eni_port(eni.id),
            mac=names.mac_for(f"port/{eni.id}"),
            master=names.vswitch_bridge(vsw.name),
        ),
    )


def _render_instance(
    b: _Builder,
    plan: Plan,
    inst: Instance,
    vswitches: dict[str, VSwitchUsage],
    pods: dict[str, PlannedPod],
) -> None:
    ns = names.ecs_netns(b.emulation, inst.name)
    b.namespace(ns, _NODE_SYSCTLS if inst.is_node else ())
    flannel = inst.is_node and _network_plugin(plan, inst) == "flannel"
    for eni in inst.enis:
        vsw = vswitches[eni.vswitch]
        if eni.exclusive_pod is not None and eni.exclusive_pod in pods:
            continue  # moved into its pod (_render_exclusive_pod)
        ifname = names.eni_ifname(eni.index)
        b.links.append(_eni_veth(b, eni, vsw, ns, ifname))
        if inst.is_node:
            b.namespace(ns, _iface_sysctls(ifname))
        vrouter = names.vpc_netns(b.emulation, vsw.vpc)
        bridge = names.vswitch_bridge(vsw.name)
        if eni.index == 0 or not inst.is_node:
            # Every private IP of an instance's own ENIs is configured on it. A node's secondary ENIs
            # carry pod addresses, which live in the pods (Terway shared mode: no address on ethN).
            for ip in eni.ips:
                b.addresses.append(
                    Address(ns, ifname, IPv4Interface(f"{ip}/{vsw.cidr.prefixlen}"), prefix_route=False)
                )
                b.neighbours.append(Neighbour(vrouter, bridge, ip, eni.mac))
            # In a VPC every frame goes to the VSwitch gateway, whose MAC answers ARP for every address
            # of the VSwitch; neighbours of the same VSwitch are reached through it too. So the subnet is
            # routed via the gateway, and the gateway is a permanent neighbour: no instance ever ARPs.
            # That is also what keeps thousands of namespaces under the kernel's host-wide neighbour
            # table limit (gc_thresh3), which permanent entries do not count against.
            b.route(Route(ns, vsw.cidr, dev=ifname, via=vsw.gateway, onlink=True))
            b.neighbours.append(Neighbour(ns, ifname, vsw.gateway, names.VPC_GATEWAY_MAC))
        if eni.index == 0:
            b.route(Route(ns, DEFAULT, dev=ifname, via=vsw.gateway, onlink=True))
    if flannel and inst.pod_cidr is not None:
        # The bridge plugin's cni0 holds the first address of the node's PodCIDR, the pods' gateway.
        b.links.append(Bridge(ns, names.CNI_BRIDGE, mac=names.mac_for(f"cni0/{inst.name}")))
        gateway = IPv4Interface(f"{inst.pod_cidr[1]}/{inst.pod_cidr.prefixlen}")
        b.addresses.append(Address(ns, names.CNI_BRIDGE, gateway))
        b.namespace(ns, _iface_sysctls(names.CNI_BRIDGE))
        if _flannel_backend(plan, inst) == "vxlan":
            _render_flannel_vxlan(b, plan, inst)


def _render_shared_pod(b: _Builder, inst: Instance, eni: Eni, pod: PlannedPod, vsw: VSwitchUsage) -> None:
    """Terway ENIIP with the veth datapath (T:plugin/datapath/policy_router_linux.go)."""
    assert pod.ip is not None
    node = names.ecs_netns(b.emulation, inst.name)
    pns = b.namespace(names.pod_netns(b.emulation, pod.namespace, pod.name))
    cali = names.cali_ifname(pod.namespace, pod.name)
    cali_mac = names.mac_for(f"cali/{pod.key}")
    b.links.append(
        Veth(
            VethEnd(pns, names.POD_IFNAME, mac=names.mac_for(f"pod/{pod.key}")),
            VethEnd(node, cali, mac=cali_mac),
        )
    )
    # In the pod: the /32 address, a default route to an address that exists nowhere, and a permanent
    # neighbour that resolves it to the host veth (generateContCfgForPolicy).
    b.addresses.append(Address(pns, names.POD_IFNAME, IPv4Interface(f"{pod.ip}/32")))
    b.route(Route(pns, DEFAULT, dev=names.POD_IFNAME, via=LINK_IP, onlink=True))
    b.neighbours.append(Neighbour(pns, names.POD_IFNAME, LINK_IP, cali_mac))
    # On the node (generateHostPeerCfgForPolicy): the /32 towards the pod, "to pod -> main" so that
    # replies and same-node traffic reach it, "from pod -> the ENI's table" so that everything else
    # leaves through the ENI that owns the address.
    table = names.route_table_for_eni(eni.index)
    b.route(Route(node, _host(pod.ip), dev=cali, scope="link"))
    b.rules.append(Rule(node, TO_CONTAINER_PRIORITY, MAIN_TABLE, dst=_host(pod.ip)))
    b.rules.append(Rule(node, FROM_CONTAINER_PRIORITY, table, src=_host(pod.ip)))
    # generateENICfgForPolicy: the ENI's table only knows the way to its VSwitch gateway.
    b.route(Route(node, DEFAULT, dev=names.eni_ifname(eni.index), via=vsw.gateway, table=table, onlink=True))
    b.neighbours.append(Neighbour(node, names.eni_ifname(eni.index), vsw.gateway, names.VPC_GATEWAY_MAC))
    # The node knows its pod's MAC as Terway's CNI knows it: no ARP on the cali veth.
    b.neighbours.append(Neighbour(node, cali, pod.ip, names.mac_for(f"pod/{pod.key}")))
    b.namespace(node, _iface_sysctls(cali))
    # The VRouter: a secondary IP is answered by no interface (it lives behind the node), so ARP
    # cannot find it. The VPC's SDN knows on which ENI every private IP is and delivers there; a
    # permanent neighbour on the VSwitch bridge says exactly that. Proxy ARP on the node's ENI was
    # the alternative, but it would answer for every address the node routes elsewhere (its default
    # route included) and so steal other nodes' pods.
    vrouter = names.vpc_netns(b.emulation, vsw.vpc)
    b.neighbours.append(Neighbour(vrouter, names.vswitch_bridge(vsw.name), pod.ip, eni.mac))


def _render_exclusive_pod(
    b: _Builder, plan: Plan, inst: Instance, eni: Eni, pod: PlannedPod, vsw: VSwitchUsage
) -> None:
    """Terway exclusive ENI (T:plugin/datapath/exclusive_eni_linux.go): the ENI is the pod's eth0.

    As in Terway the address is the pod IP as /32 (NewIPNetToMaxMask) and the default route goes to
    the VSwitch gateway ``onlink``; ``veth1`` to the node carries Service traffic and the way to the
    node itself (generateVeth1Cfg, generateHostSlaveCfg).
    """
    assert pod.ip is not None
    node = names.ecs_netns(b.emulation, inst.name)
    pns = b.namespace(names.pod_netns(b.emulation, pod.namespace, pod.name))
    b.links.append(_eni_veth(b, eni, vsw, pns, names.POD_IFNAME))
    b.addresses.append(Address(pns, names.POD_IFNAME, IPv4Interface(f"{pod.ip}/32")))
    b.route(Route(pns, DEFAULT, dev=names.POD_IFNAME, via=vsw.gateway, onlink=True))
    b.neighbours.append(Neighbour(pns, names.POD_IFNAME, vsw.gateway, names.VPC_GATEWAY_MAC))
    vrouter = names.vpc_netns(b.emulation, vsw.vpc)
    b.neighbours.append(Neighbour(vrouter, names.vswitch_bridge(vsw.name), pod.ip, eni.mac))

    cali = names.cali_ifname(pod.namespace, pod.name)
    cali_mac = names.mac_for(f"cali/{pod.key}")
    veth1 = names.EXCLUSIVE_HOST_VETH
    b.links.append(
        Veth(VethEnd(pns, veth1, mac=names.mac_for(f"veth1/{pod.key}")), VethEnd(node, cali, mac=cali_mac))
    )
    b.addresses.append(Address(pns, veth1, IPv4Interface(f"{pod.ip}/32")))
    b.route(Route(pns, _host(LINK_IP), dev=veth1, scope="link"))
    b.neighbours.append(Neighbour(pns, veth1, LINK_IP, cali_mac))
    service_cidr = _service_cidr(plan, inst)
    if service_cidr is not None:
        b.route(Route(pns, service_cidr, dev=veth1, via=LINK_IP, onlink=True))
    # The node's own address as a host-stack CIDR (reference/alibaba.md 1.4): replies to the node go
    # back over veth1 rather than out of the ENI and through the VPC.
    b.route(Route(pns, _host(inst.primary_ip), dev=veth1, via=LINK_IP, onlink=True))
    b.addresses.append(Address(node, cali, IPv4Interface(f"{LINK_IP}/32")))
    b.route(Route(node, _host(pod.ip), dev=cali, scope="link"))
    b.neighbours.append(Neighbour(node, cali, pod.ip, names.mac_for(f"veth1/{pod.key}")))
    b.namespace(node, _iface_sysctls(cali))


def _render_flannel_pod(b: _Builder, inst: Instance, pod: PlannedPod) -> None:
    """Flannel: the bridge plugin's veth into ``cni0``; the VPC route entry brings other nodes' traffic."""
    assert pod.ip is not None
    if inst.pod_cidr is None:
        return
    node = names.ecs_netns(b.emulation, inst.name)
    pns = b.namespace(names.pod_netns(b.emulation, pod.namespace, pod.name))
    b.links.append(
        Veth(
            VethEnd(pns, names.POD_IFNAME, mac=names.mac_for(f"pod/{pod.key}")),
            VethEnd(
                node,
                names.flannel_veth_ifname(pod.namespace, pod.name),
                mac=names.mac_for(f"veth/{pod.key}"),
                master=names.CNI_BRIDGE,
                # The flannel CNI config ACK ships sets the bridge plugin's hairpinMode: a pod that
                # reaches itself through its Service gets its own packets back through cni0.
                hairpin=True,
            ),
        )
    )
    b.addresses.append(Address(pns, names.POD_IFNAME, IPv4Interface(f"{pod.ip}/{inst.pod_cidr.prefixlen}")))
    b.route(Route(pns, DEFAULT, dev=names.POD_IFNAME, via=inst.pod_cidr[1]))
    # Permanent both ways, as for Terway pods: no ARP on cni0 (the neighbour table limit is host-wide).
    cni0_mac = names.mac_for(f"cni0/{inst.name}")
    b.neighbours.append(Neighbour(pns, names.POD_IFNAME, inst.pod_cidr[1], cni0_mac))
    b.neighbours.append(Neighbour(node, names.CNI_BRIDGE, pod.ip, names.mac_for(f"pod/{pod.key}")))


def flannel_vtep_ip(pod_cidr: IPv4Network) -> IPv4Address:
    """flannel.1's address: the network address (``.0``) of the node's PodCIDR, configured as /32."""
    return pod_cidr.network_address


def flannel_vtep_mac(instance: str) -> str:
    # flannel lets the kernel pick the VTEP MAC and publishes it in the node annotation
    # flannel.alpha.coreos.com/backend-data; the plan needs it before the device exists, so it is derived.
    return names.mac_for(f"{FLANNEL_VXLAN_DEV}/{instance}")


def _render_flannel_vxlan(b: _Builder, plan: Plan, inst: Instance) -> None:
    """flannel's vxlan backend on one node (flannel:pkg/backend/vxlan/vxlan_network.go, handleSubnetEvents).

    The node's own PodCIDR stays on cni0; for every other node of the cluster flannel writes three
    objects, all keyed by that node's lease: a route ``<PodCIDR> via <VTEP .0> dev flannel.1 onlink``, a
    permanent neighbour ``<VTEP .0> -> <VTEP MAC>`` and an FDB entry ``<VTEP MAC> -> dst <node IP>``.
    So flannel.1 never ARPs and never floods; the VPC sees only UDP 8472 between node primary IPs.

    No per-interface sysctls: "flannel.1" holds a dot, which the ``net.ipv4.conf.<dev>`` keys cannot
    carry, and none are needed (forwarding comes from conf.default, set before the device exists, and
    the reverse path of a tunnelled pod address is flannel.1 itself).
    """
    assert inst.pod_cidr is not None
    ns = names.ecs_netns(b.emulation, inst.name)
    b.links.append(
        Vxlan(
            ns,
            FLANNEL_VXLAN_DEV,
            vni=FLANNEL_VNI,
            local=inst.primary_ip,
            underlay=names.eni_ifname(0),
            port=FLANNEL_VXLAN_PORT,
            learning=False,
            mac=flannel_vtep_mac(inst.name),
            mtu=ENI_MTU - VXLAN_OVERHEAD,
        )
    )
    b.addresses.append(Address(ns, FLANNEL_VXLAN_DEV, IPv4Interface(f"{flannel_vtep_ip(inst.pod_cidr)}/32")))
    for other in plan.instances:
        if other.name == inst.name or other.cluster != inst.cluster or other.pod_cidr is None:
            continue
        vtep, mac = flannel_vtep_ip(other.pod_cidr), flannel_vtep_mac(other.name)
        b.route(Route(ns, other.pod_cidr, dev=FLANNEL_VXLAN_DEV, via=vtep, onlink=True))
        b.neighbours.append(Neighbour(ns, FLANNEL_VXLAN_DEV, vtep, mac))
        b.fdbs.append(Fdb(ns, FLANNEL_VXLAN_DEV, mac, other.primary_ip))
