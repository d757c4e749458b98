"""CLB instances in the kernel: a namespace per instance, its VIP, and its layer-4 listeners in nftables.

What a CLB instance is here (DESIGN.md "SLB"; reference/alibaba.md 4):

- a namespace ``<emulation>-slb-<name>`` whose ``eth0`` is a veth into the VPC's VRouter. An intranet
  instance's veth is a port of its VSwitch bridge and holds the VIP like an ECS primary ENI; an
  internet instance's veth is a point-to-point link to the VRouter (unnumbered, like the Internet
  uplinks) holding the public VIP as /32, which the Internet routes to that VRouter
  (``topology.public_addresses``). Both also hold a health-check source in 100.64.0.0/10;
- TCP and UDP listeners as DNAT in the instance's own table ``ip <emulation>-slb``: the destination
  becomes a backend's address and port, the source stays the client's. CLB layer-4 listeners work in
  pass-through mode, so the backend sees the client's address (Alibaba Cloud, "Enable Layer 4
  listeners to preserve client IP addresses": "the source IP address that the backend server receives
  is the client's actual IP address"), and the backend's security group judges the client's address
  as the source; health checks come from 100.64.0.0/10, which needs no security-group rule ("CLB
  health checks" / health check FAQ; security_group.py accepts it);
- the way back: a backend answers the client directly, towards its default gateway, so the VPC must
  hand the reply back to the load balancer that translated it (the VPC's SDN does so for CLB; it is
  also why "a backend ECS instance cannot be a client of its own layer-4 CLB", backend server FAQ:
  the request then arrives from the backend's own address). Here the VRouter does it with conntrack:
  a connection the instance opens (its veth, or its MAC on the bridge) gets the instance's ``ct mark``
  in the VRouter's ``inet <emulation>-slb`` table; its replies get it as ``meta mark``, and an ``ip rule
  fwmark`` sends them to a table whose default route is the instance. No ECS namespace changes.

Schedulers (CreateLoadBalancerTCPListener ``Scheduler``; "SLB scheduling algorithms") pick a slot
``0..SLOTS-1`` per new connection and a map turns the slot into ``address . port``:

- ``wrr`` (and ``wlc``, which needs live connection counts and is approximated by wrr here):
  ``numgen random``, each backend owning a share of the slots proportional to its weight;
- ``rr``: ``numgen inc`` over slots dealt to the backends in turn (weights ignored, as documented);
- ``sch``: ``jhash ip saddr``; ``tch``: ``jhash`` of the four-tuple; the slots are given out by
  weighted rendezvous hashing, so removing a backend moves only its own slots (a consistent hash).

A backend of weight 0 takes no new connections; established ones go on (conntrack keeps their DNAT).
An unhealthy backend leaves the map, a health change is one ``flush map`` + ``add element`` transaction
(``map_update_script``), never a table rebuild. With no backend left the lookup fails and the packet
is the instance's own: a TCP listener then completes the handshake with a socket that forwards nothing
(observe/health.py) and UDP is dropped, as CLB does (Billing FAQ: "Layer 4 returns only the three-way
handshake").

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from acknet.controllers.state import Plan, PlannedListener, PlannedLoadBalancer, SlbBackend, VSwitchUsage
from acknet.dataplane.render import names
from acknet.dataplane.render.kernel import Address, Link, Neighbour, Route, Rule, Veth, VethEnd

SLOTS = 2520  # divisible by 1..10: rr over up to ten backends is exact
SLB_IFNAME = "eth0"
# An internet instance's link to its VRouter is unnumbered: each side names the other by a next hop
# that is on no interface, resolved by a permanent neighbour (as the Internet uplinks do).
VROUTER_SIDE = IPv4Address("169.254.0.1")
SLB_SIDE = IPv4Address("169.254.0.2")
# ip rule priority of the reply rules in a VRouter: before main (32766).
REPLY_RULE_PRIORITY = 100
_MARK_BASE = 0x5B10000  # marks and route tables of the instances of one VRouter: base + 0..0xFFFF
_HASH_SEED = 0x5B1
_DEFAULT = IPv4Network("0.0.0.0/0")

# rp_filter off: replies come back on the veth whatever the source; forwarding on for the DNAT.
_SLB_SYSCTLS = (
    ("net.ipv6.conf.all.disable_ipv6", "1"),
    ("net.ipv6.conf.default.disable_ipv6", "1"),
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv4.conf.all.rp_filter", "0"),
    ("net.ipv4.conf.default.rp_filter", "0"),
)


def table_name(emulation: str) -> str:
    """The table of every SLB namespace (``ip``) and every VRouter (``inet``) of ``emulation``."""
    return f"{emulation}-slb"


def live(plan: Plan) -> tuple[PlannedLoadBalancer, ...]:
    """The instances that exist in the kernel: an address, and a VPC to sit in (intranet: a VSwitch)."""
    vswitches = {v.name for v in plan.vswitches}
    return tuple(
        lb
        for lb in plan.load_balancers
        if lb.address is not None
        and lb.vpc is not None
        and (lb.address_type == "internet" or (lb.vswitch is not None and lb.vswitch in vswitches))
    )


def reply_marks(plan: Plan) -> dict[str, int]:
    """Instance name -> its ct mark (and route table) in its VRouter: a hash of the name, the next free
    value on a collision within the VPC. Deterministic for a given set of instances."""
    out: dict[str, int] = {}
    used: dict[str, set[int]] = {}
    for lb in sorted(live(plan), key=lambda lb: lb.name):
        assert lb.vpc is not None
        taken = used.setdefault(lb.vpc, set())
        slot = int(hashlib.sha1(f"mark/{lb.name}".encode(), usedforsecurity=False).hexdigest(), 16) % 0x10000
        while slot in taken:
            slot = (slot + 1) % 0x10000
        taken.add(slot)
        out[lb.name] = _MARK_BASE + slot
    return out


def slb_mac(lb: PlannedLoadBalancer) -> str:
    return names.mac_for(f"slb/{lb.name}")


def _port_mac(lb: PlannedLoadBalancer) -> str:
    return names.mac_for(f"slb-port/{lb.name}")


@dataclass(frozen=True, slots=True)
class SlbKernelObjects:
    namespaces: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
    links: tuple[Link, ...]
    addresses: tuple[Address, ...]
    routes: tuple[Route, ...]
    rules: tuple[Rule, ...]
    neighbours: tuple[Neighbour, ...]


def render_slb_kernel(plan: Plan, emulation: str) -> SlbKernelObjects:
    """The namespaces, veths, addresses, routes, reply rules and neighbours of every CLB instance."""
    vswitches: Mapping[str, VSwitchUsage] = {v.name: v for v in plan.vswitches}
    marks = reply_marks(plan)
    namespaces, links, addresses, routes, rules, neighbours = [], [], [], [], [], []
    for lb in live(plan):
        assert lb.address is not None and lb.vpc is not None
        ns = names.slb_netns(emulation, lb.name)
        vrouter = names.vpc_netns(emulation, lb.vpc)
        port = names.slb_port(lb.name)
        mark = marks[lb.name]
        namespaces.append((ns, _SLB_SYSCTLS))
        health = IPv4Interface(f"{lb.health_source}/32")
        if lb.address_type == "intranet":
            vsw = vswitches[lb.vswitch or ""]
            bridge = names.vswitch_bridge(vsw.name)
            links.append(
                Veth(
                    VethEnd(ns, SLB_IFNAME, mac=slb_mac(lb)),
                    VethEnd(vrouter, port, mac=_port_mac(lb), master=bridge),
                )
            )
            # Like an ECS primary ENI (topology._render_instance): everything via the VSwitch gateway.
            addresses.append(
                Address(
                    ns, SLB_IFNAME, IPv4Interface(f"{lb.address}/{vsw.cidr.prefixlen}"), prefix_route=False
                )
            )
            routes.append(Route(ns, vsw.cidr, dev=SLB_IFNAME, via=vsw.gateway, onlink=True))
            routes.append(Route(ns, _DEFAULT, dev=SLB_IFNAME, via=vsw.gateway, onlink=True))
            neighbours.append(Neighbour(ns, SLB_IFNAME, vsw.gateway, names.VPC_GATEWAY_MAC))
            neighbours.append(Neighbour(vrouter, bridge, lb.address, slb_mac(lb)))
            to_slb = (bridge, lb.address)
        else:
            links.append(
                Veth(VethEnd(ns, SLB_IFNAME, mac=slb_mac(lb)), VethEnd(vrouter, port, mac=_port_mac(lb)))
            )
            addresses.append(Address(ns, SLB_IFNAME, IPv4Interface(f"{lb.address}/32")))
            routes.append(Route(ns, _DEFAULT, dev=SLB_IFNAME, via=VROUTER_SIDE, onlink=True))
            neighbours.append(Neighbour(ns, SLB_IFNAME, VROUTER_SIDE, _port_mac(lb)))
            neighbours.append(Neighbour(vrouter, port, SLB_SIDE, slb_mac(lb)))
            routes.append(
                Route(vrouter, IPv4Network(f"{lb.address}/32"), dev=port, via=SLB_SIDE, onlink=True)
            )
            to_slb = (port, SLB_SIDE)
        addresses.append(Address(ns, SLB_IFNAME, health))
        dev, via = to_slb
        # The health-check source is routed to the instance (its probes' replies), and the replies of
        # everything it forwarded come back to it by their mark.
        routes.append(Route(vrouter, health.network, dev=dev, via=via, onlink=True))
        routes.append(Route(vrouter, _DEFAULT, dev=dev, via=via, table=mark, onlink=True))
        rules.append(Rule(vrouter, REPLY_RULE_PRIORITY, mark, fwmark=mark))
    return SlbKernelObjects(
        tuple(namespaces), tuple(links), tuple(addresses), tuple(routes), tuple(rules), tuple(neighbours)
    )


# -- backends -> slots --------------------------------------------------------------------------------

BackendKey = tuple[str, int]  # (address, port)


def backend_key(b: SlbBackend) -> BackendKey:
    return (str(b.ip), b.port)


def candidates(listener: PlannedListener, unhealthy: Collection[BackendKey] = ()) -> list[SlbBackend]:
    """The backends that take new connections: weight above 0 and not unhealthy. A primary/secondary
    group sends everything to the primary while it is healthy, else to the secondary (failover and
    failback; CreateMasterSlaveServerGroup docs)."""
    usable = [b for b in listener.backends if b.weight > 0 and backend_key(b) not in unhealthy]
    if any(b.role for b in listener.backends):
        master = [b for b in usable if b.role == "Master"]
        return master or [b for b in usable if b.role == "Slave"]
    return usable


def _mix(value: int) -> int:
    """splitmix64's finaliser: a cheap, well-spread 64-bit hash of an integer."""
    value = (value + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return value ^ (value >> 31)


def _seed(b: SlbBackend) -> int:
    return int(hashlib.sha1(f"{b.ip}:{b.port}".encode(), usedforsecurity=False).hexdigest()[:16], 16)


def slot_owners(listener: PlannedListener, unhealthy: Collection[BackendKey] = ()) -> list[SlbBackend | None]:
    """Which backend each of the SLOTS slots sends to (None: no backend at all)."""
    pool = candidates(listener, unhealthy)
    if not pool:
        return [None] * SLOTS
    if listener.scheduler == "rr":
        return [pool[i % len(pool)] for i in range(SLOTS)]
    if listener.scheduler in ("sch", "tch"):
        # Weighted rendezvous hashing: slot s goes to the backend with the highest -w / ln(u(s, b)).
        seeds = [(_seed(b), b) for b in pool]
        owners: list[SlbBackend | None] = []
        for slot in range(SLOTS):
            best, best_score = pool[0], -math.inf
            for seed, b in seeds:
                u = (_mix(seed ^ slot) >> 11) / float(1 << 53)
                score = -b.weight / math.log(u) if 0.0 < u < 1.0 else math.inf
                if score > best_score:
                    best, best_score = b, score
            owners.append(best)
        return owners
    # wrr (and wlc): contiguous shares proportional to weight; numgen random picks a slot.
    total = sum(b.weight for b in pool)
    owners = []
    cumulative = 0
    for b in pool:
        start = cumulative * SLOTS // total
        cumulative += b.weight
        owners.extend([b] * (cumulative * SLOTS // total - start))
    return owners


def map_elements(listener: PlannedListener, unhealthy: Collection[BackendKey] = ()) -> list[str]:
    """``lo-hi : address . port`` elements, runs of one owner merged into one interval."""
    owners = slot_owners(listener, unhealthy)
    out = []
    start = 0
    for i in range(1, SLOTS + 1):
        if i == SLOTS or owners[i] != owners[start]:
            owner = owners[start]
            if owner is not None:
                lo_hi = f"{start}" if i - 1 == start else f"{start}-{i - 1}"
                out.append(f"{lo_hi} : {owner.ip} . {owner.port}")
            start = i
    return out


def map_name(listener: PlannedListener) -> str:
    return f"{listener.protocol}_{listener.port}"


def _selector(listener: PlannedListener) -> str:
    seed = f"seed {_HASH_SEED:#x}"
    if listener.scheduler == "rr":
        return f"numgen inc mod {SLOTS}"
    if listener.scheduler == "sch":
        return f"jhash ip saddr mod {SLOTS} {seed}"
    if listener.scheduler == "tch":
        return f"jhash ip saddr . {listener.protocol} sport . ip daddr . {listener.protocol} dport mod {SLOTS} {seed}"
    return f"numgen random mod {SLOTS}"


def _transport(listener: PlannedListener) -> str:
    return "udp" if listener.protocol == "udp" else "tcp"


def layer4(lb: PlannedLoadBalancer) -> list[PlannedListener]:
    """The listeners the kernel serves (HTTP and HTTPS are layer 7, not in this data path)."""
    return [li for li in lb.listeners if li.protocol in ("tcp", "udp")]


def render_slb_table(
    lb: PlannedLoadBalancer, emulation: str, unhealthy: Mapping[str, Collection[BackendKey]] | None = None
) -> str:
    """The whole ``ip <emulation>-slb`` table of one instance's namespace; ``unhealthy`` holds, per
    listener key ("tcp/80"), the backends its health check took out."""
    unhealthy = unhealthy or {}
    assert lb.address is not None
    vip = lb.address
    lines = [f"table ip {table_name(emulation)} {{"]
    listeners = layer4(lb)
    for li in listeners:
        elements = map_elements(li, unhealthy.get(li.key, ()))
        lines.append(f"  map {map_name(li)} {{")
        lines.append(f"    typeof numgen random mod {SLOTS} : ip daddr . th dport")
        lines.append("    flags interval")
        if elements:
            lines.append(f"    elements = {{ {', '.join(elements)} }}")
        lines.append("  }")
    for li in lb.listeners:
        if li.acl_type is not None and li.acl_entries:
            lines.append(f"  set acl_{map_name(li)} {{")
            lines.append("    typeof ip saddr")
            lines.append("    flags interval")
            lines.append(f"    elements = {{ {', '.join(str(e) for e in li.acl_entries)} }}")
            lines.append("  }")
        if li.connection_rate_limit is not None:
            lines.append(f"  counter over_{map_name(li)} {{ }}")
        if li.persistence_timeout > 0 and li in listeners:
            lines.append(f"  map persist_{map_name(li)} {{")
            lines.append("    typeof ip saddr : ip daddr . th dport")
            lines.append("    size 65535")
            lines.append("    flags dynamic,timeout")
            lines.append(f"    timeout {li.persistence_timeout}s")
            lines.append("  }")
    # Before any translation: the listener's ACL (a whitelist forwards only its entries, a blacklist
    # drops them; an empty list forwards everything, as the TCP/UDP listener docs say) and its cap on
    # new connections per second (over it, new connections are dropped and counted). Layer-7 listeners
    # too: their proxy (render/slb_l7.py) only sees what this chain lets through.
    lines.append("  chain guard {")
    lines.append("    type filter hook prerouting priority mangle; policy accept;")
    for li in lb.listeners:
        match = f"ip daddr {vip} {_transport(li)} dport {li.port}"
        if li.acl_type is not None and li.acl_entries:
            negate = "!= " if li.acl_type == "white" else ""
            lines.append(f"    {match} ip saddr {negate}@acl_{map_name(li)} drop")
        if li.connection_rate_limit is not None:
            rate = li.connection_rate_limit
            lines.append(
                f"    {match} ct state new limit rate over {rate}/second burst {rate} packets "
                f'counter name "over_{map_name(li)}" drop'
            )
    lines.append("  }")
    lines.append("  chain prerouting {")
    lines.append("    type nat hook prerouting priority dstnat; policy accept;")
    for index, li in enumerate(listeners, start=1):
        match = f"ip daddr {vip} {li.protocol} dport {li.port}"
        if li.persistence_timeout > 0:
            # Source-IP persistence (PersistenceTimeout): a client seen within the timeout goes where
            # it went before; the forward chain records where a new connection went.
            lines.append(f"    {match} ct mark set {index:#x}")
            lines.append(f"    {match} dnat ip to ip saddr map @persist_{map_name(li)}")
        lines.append(f"    {match} dnat ip to {_selector(li)} map @{map_name(li)}")
    lines.append("  }")
    lines.append("  chain forward {")
    lines.append("    type filter hook forward priority filter; policy accept;")
    for index, li in enumerate(listeners, start=1):
        if li.persistence_timeout > 0:
            lines.append(
                f"    ct state new ct mark {index:#x} update @persist_{map_name(li)} "
                f"{{ ip saddr : ip daddr . {li.protocol} dport }}"
            )
    lines.append("  }")
    lines.append("  chain input {")
    lines.append("    type filter hook input priority filter; policy accept;")
    lines.append("    ct state established,related accept")
    # Not translated: no backend takes it. TCP reaches the socket that completes the handshake and
    # forwards nothing; everything else addressed to the VIP is dropped (a CLB answers only listeners).
    for li in listeners:
        if li.protocol == "tcp":
            lines.append(f"    ip daddr {vip} tcp dport {li.port} accept")
    for li in lb.listeners:
        if li.protocol in ("http", "https"):
            lines.append(f'    ip daddr {vip} tcp dport {li.port} accept comment "{li.key}: the proxy"')
    lines.append(f"    ip daddr {vip} icmp type echo-request accept")
    lines.append(f"    ip daddr {vip} drop")
    lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def replace_script(table_text: str, emulation: str, family: str = "ip") -> str:
    """One transaction that replaces the table whole whether or not it exists (as security_group.py)."""
    ref = f"{family} {table_name(emulation)}"
    return f"table {ref}\ndelete table {ref}\n{table_text}"


def map_update_script(
    lb: PlannedLoadBalancer, listener: PlannedListener, emulation: str, unhealthy: Collection[BackendKey]
) -> str:
    """One listener's backends after a health change: element edits of its map, in one transaction."""
    ref = f"ip {table_name(emulation)} {map_name(listener)}"
    elements = map_elements(listener, unhealthy)
    script = f"flush map {ref}\n"
    if listener.persistence_timeout > 0:
        # A remembered client may point at the backend that went: everyone is scheduled afresh.
        script += f"flush map ip {table_name(emulation)} persist_{map_name(listener)}\n"
    if elements:
        script += f"add element {ref} {{ {', '.join(elements)} }}\n"
    return script


def render_vrouter_tables(plan: Plan, emulation: str) -> dict[str, str]:
    """VRouter namespace -> its ``inet <emulation>-slb`` table: the reply marks of its instances."""
    marks = reply_marks(plan)
    by_vpc: dict[str, list[PlannedLoadBalancer]] = {}
    for lb in live(plan):
        assert lb.vpc is not None
        by_vpc.setdefault(lb.vpc, []).append(lb)
    out = {}
    for vpc, lbs in sorted(by_vpc.items()):
        lines = [f"table inet {table_name(emulation)} {{", "  chain prerouting {"]
        lines.append("    type filter hook prerouting priority mangle; policy accept;")
        for lb in sorted(lbs, key=lambda lb: lb.name):
            port = names.slb_port(lb.name)
            if lb.address_type == "intranet":
                bridge = names.vswitch_bridge(lb.vswitch or "")
                match = f'iifname "{bridge}" ether saddr {slb_mac(lb)}'
            else:
                match = f'iifname "{port}"'
            lines.append(f"    {match} ct state new ct mark set {marks[lb.name]:#x}")
        lines.append("    ct direction reply ct mark != 0 meta mark set ct mark")
        lines.append("  }")
        lines.append("}")
        out[names.vpc_netns(emulation, vpc)] = "\n".join(lines) + "\n"
    return out


def internet_vips(plan: Plan) -> Iterable[tuple[IPv4Address, str]]:
    """(VIP, VPC) of every live internet instance, for the Internet's routes."""
    for lb in live(plan):
        if lb.address_type == "internet" and lb.address is not None and lb.vpc is not None:
            yield lb.address, lb.vpc
