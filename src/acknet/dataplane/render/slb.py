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

- ``wrr``: ``numgen random``, each backend owning a share of the slots proportional to its weight;
- ``wlc`` (weighted least connections: "in addition to the weight of each backend server, the number
  of connections is considered ... If the weights are the same, the system directs network connections
  to the server with the least number of established connections", Alibaba Cloud SLB FAQ,
  alibabacloud.com/help/doc-detail/55193.htm; reference/alibaba.md 4): the same ``numgen random`` slot
  map, but its shares come from live connection counts. The SLB runtime (observe/health.py) reads the
  instance's conntrack table every ``WLC_INTERVAL`` seconds (apply/conntrack.py), counts each
  backend's live connections per listener (``count_connections``) and loads ``wlc_update_script``:
  the slots go to the backends by water-filling (``wlc_shares``), so the expected new connections of
  the next interval fill the least loaded backends, relative to weight, up to a common level. With
  one new connection expected that is exactly IPVS's wlc (ip_vs_wlc.c: the lowest
  connections / weight wins); with a burst it spreads instead of sending the whole burst to one
  backend. Why not nftables alone: ``ct count`` only caps connections per key (a connlimit), it cannot
  pick the smallest of several counts, and a rule per backend cannot compare counters. The price is a
  lag: a backend's count is at most ``WLC_INTERVAL`` old, so connections opened within one interval
  are placed on the counts of its start (spread by the expected number, not one by one);
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
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from acknet.controllers.state import Plan, PlannedListener, PlannedLoadBalancer, SlbBackend, VSwitchUsage
from acknet.dataplane.render import names
from acknet.dataplane.render.kernel import Address, Link, Neighbour, Route, Rule, Veth, VethEnd

SLOTS = 2520  # divisible by 1..10: rr over up to ten backends is exact
# Seconds between two readings of an instance's connection counts for its wlc listeners.
WLC_INTERVAL = 0.25
# TCP conntrack states that count as a live connection for wlc (linux/netfilter/nf_conntrack_tcp.h:
# SYN_SENT 1, SYN_RECV 2, ESTABLISHED 3). A closing or TIME_WAIT connection no longer loads the backend;
# IPVS likewise weighs established ("active") connections 256 times the others.
LIVE_TCP_STATES = frozenset({1, 2, 3})
_IPPROTO = {"tcp": 6, "udp": 17}
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


def slot_owners(
    listener: PlannedListener,
    unhealthy: Collection[BackendKey] = (),
    connections: Mapping[BackendKey, int] | None = None,
    expected_new: int = 1,
) -> list[SlbBackend | None]:
    """Which backend each of the SLOTS slots sends to (None: no backend at all). ``connections`` (wlc
    only): each backend's live connections on this listener; without them wlc shares as wrr does."""
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
    if listener.scheduler == "wlc" and connections is not None:
        return _contiguous(pool, wlc_shares(pool, connections, expected_new))
    # wrr (and wlc before its first count): contiguous shares proportional to weight; numgen random
    # picks a slot.
    return _contiguous(pool, [b.weight for b in pool])


def _contiguous(pool: Sequence[SlbBackend], shares: Sequence[int]) -> list[SlbBackend | None]:
    """SLOTS slots dealt in runs, each backend's run proportional to its (integer) share."""
    total = sum(shares)
    owners: list[SlbBackend | None] = []
    cumulative = 0
    for b, share in zip(pool, shares, strict=True):
        start = cumulative * SLOTS // total
        cumulative += share
        owners.extend([b] * (cumulative * SLOTS // total - start))
    return owners


def wlc_shares(
    pool: Sequence[SlbBackend], connections: Mapping[BackendKey, int], expected_new: int = 1
) -> list[int]:
    """Each backend's share of the next ``expected_new`` connections under weighted least connections.

    Water-filling: the level ``L`` at which ``sum(max(0, L x weight - connections))`` is
    ``expected_new``; a backend's share is how far it is below that level, so the least loaded (relative
    to weight) fill first and none is pushed above the others. With one connection expected only the
    backends with the lowest connections / weight get a share (ties by weight), which is IPVS's wlc
    choice; when all are equally loaded the shares are the weights (wrr). Integers: the shares are
    scaled by the total weight of the backends below the level."""
    n = max(1, expected_new)
    load = [(connections.get(backend_key(b), 0), b.weight) for b in pool]
    # By connections / weight, compared without division (as ip_vs_wlc.c does).
    order = sorted(range(len(pool)), key=lambda i: _Ratio(*load[i]))
    chosen: list[int] = []
    conns = weights = 0
    for position, i in enumerate(order):
        chosen.append(i)
        conns += load[i][0]
        weights += load[i][1]
        if position + 1 == len(order):
            break
        c_next, w_next = load[order[position + 1]]
        # The level (n + conns) / weights stays at or below the next backend's ratio: it gets nothing.
        if (n + conns) * w_next <= c_next * weights:
            break
    shares = [0] * len(pool)
    for i in chosen:
        c, w = load[i]
        shares[i] = max(0, (n + conns) * w - c * weights)
    if not any(shares):  # only when rounding left nothing: the lowest ratio takes it all
        shares[order[0]] = 1
    return shares


@dataclass(frozen=True, slots=True)
class _Ratio:
    connections: int
    weight: int

    def __lt__(self, other: _Ratio) -> bool:
        return self.connections * other.weight < other.connections * self.weight


def map_elements(
    listener: PlannedListener,
    unhealthy: Collection[BackendKey] = (),
    connections: Mapping[BackendKey, int] | None = None,
    expected_new: int = 1,
) -> list[str]:
    """``lo-hi : address . port`` elements, runs of one owner merged into one interval."""
    owners = slot_owners(listener, unhealthy, connections, expected_new)
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
    lb: PlannedLoadBalancer,
    listener: PlannedListener,
    emulation: str,
    unhealthy: Collection[BackendKey],
    connections: Mapping[BackendKey, int] | None = None,
    expected_new: int = 1,
) -> str:
    """One listener's backends after a health change: element edits of its map, in one transaction."""
    return _map_script(
        listener, emulation, map_elements(listener, unhealthy, connections, expected_new), True
    )


def wlc_update_script(listener: PlannedListener, emulation: str, elements: Sequence[str]) -> str:
    """A wlc listener's map after a new reading of the connection counts (``map_elements`` with them):
    one transaction, so no packet sees the map empty. Remembered clients (persistenceTimeout) stay
    where they are: only new clients are steered."""
    return _map_script(listener, emulation, elements, False)


def _map_script(listener: PlannedListener, emulation: str, elements: Sequence[str], forget: bool) -> str:
    ref = f"ip {table_name(emulation)} {map_name(listener)}"
    script = f"flush map {ref}\n"
    if forget and listener.persistence_timeout > 0:
        # A remembered client may point at the backend that went: everyone is scheduled afresh.
        script += f"flush map ip {table_name(emulation)} persist_{map_name(listener)}\n"
    if elements:
        script += f"add element {ref} {{ {', '.join(elements)} }}\n"
    return script


@dataclass(frozen=True, slots=True)
class Flow:
    """One conntrack entry of an SLB namespace, as apply/conntrack.py reads it: the original direction
    (client -> VIP:port) and the reply's source (the backend after DNAT; the VIP when no backend took it)."""

    id: int
    protocol: int  # IPPROTO_TCP 6, IPPROTO_UDP 17
    orig_dst: str
    orig_dport: int
    reply_src: str
    reply_sport: int
    tcp_state: int | None = None  # None for UDP


def wlc_listeners(lb: PlannedLoadBalancer) -> list[PlannedListener]:
    return [li for li in layer4(lb) if li.scheduler == "wlc"]


def count_connections(
    lb: PlannedLoadBalancer, flows: Iterable[Flow]
) -> dict[str, tuple[dict[BackendKey, int], frozenset[int]]]:
    """Per wlc listener key ("tcp/80"): each backend's live connections, and the conntrack ids of every
    connection the listener forwarded (live or closing; a new id since the last reading is a new
    connection). Live: a TCP connection being opened or established, any UDP flow conntrack still
    holds (its timeout, 30 s or 120 s once answered both ways, is what ends a UDP "connection")."""
    wanted = {(_IPPROTO[li.protocol], li.port): li.key for li in wlc_listeners(lb)}
    out: dict[str, tuple[dict[BackendKey, int], set[int]]] = {key: ({}, set()) for key in wanted.values()}
    vip = str(lb.address)
    for flow in flows:
        key = wanted.get((flow.protocol, flow.orig_dport))
        if key is None or flow.orig_dst != vip or flow.reply_src == vip:
            continue
        counts, ids = out[key]
        ids.add(flow.id)
        if flow.tcp_state is None or flow.tcp_state in LIVE_TCP_STATES:
            backend = (flow.reply_src, flow.reply_sport)
            counts[backend] = counts.get(backend, 0) + 1
    return {key: (counts, frozenset(ids)) for key, (counts, ids) in out.items()}


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
