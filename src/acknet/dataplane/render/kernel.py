"""The kernel plan: namespaces, links, addresses, routes, rules and neighbours as frozen data.

Render functions return a ``KernelPlan``; only ``dataplane.apply`` makes one real. Keeping the plan
plain data lets tests assert on it without root, lets ``acknet plan`` print it, and lets apply work
from a diff of two plans instead of reading the kernel back object by object (Mininet's topology
vs. build split, STYLE.md). Security groups, Services and NGINX add their own table/config objects
elsewhere; this module stays generic.

Identity: every object has a ``key``. Two objects with the same key are the same kernel object; if
they differ otherwise the kernel object is replaced (routes, neighbours, FDB entries, sysctls) or
recreated (links, which take their addresses and routes with them — ``diff_plans`` re-adds those).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Literal, TypeVar

Scope = Literal["global", "link", "host"]

MAIN_TABLE = 254


@dataclass(frozen=True, slots=True)
class Namespace:
    """A network namespace with its sysctls (``net.ipv4.conf.eth0.rp_filter`` style keys, sorted).

    Interface-specific keys (``net.ipv4.conf.<ifname>.*`` with a real ifname) are applied after the
    links exist; the others right after the namespace is created, before any link, so that
    ``conf.default.*`` reaches every interface made later.
    """

    name: str
    sysctls: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> tuple[str, ...]:
        return (self.name,)


def sysctl_device(key: str) -> str | None:
    """The interface a sysctl key belongs to, or None for namespace-wide keys (all, default, globals)."""
    parts = key.split(".")
    if (
        len(parts) >= 5
        and parts[0] == "net"
        and parts[2] in ("conf", "neigh")
        and parts[3]
        not in (
            "all",
            "default",
        )
    ):
        return parts[3]
    return None


@dataclass(frozen=True, slots=True)
class Bridge:
    namespace: str
    name: str
    mac: str | None = None

    @property
    def key(self) -> tuple[str, ...]:
        return ("link", self.namespace, self.name)

    @property
    def devices(self) -> tuple[tuple[str, str], ...]:
        return ((self.namespace, self.name),)


@dataclass(frozen=True, slots=True)
class VethEnd:
    """One end of a veth pair: where it lives, its name and MAC, and the bridge it is a port of;
    ``hairpin`` lets that bridge port send frames back where they came from."""

    namespace: str
    name: str
    mac: str | None = None
    master: str | None = None
    hairpin: bool = False


@dataclass(frozen=True, slots=True)
class Veth:
    """A veth pair. Both ends are created directly in their namespaces: no end ever sits in the host."""

    end: VethEnd
    peer: VethEnd

    @property
    def key(self) -> tuple[str, ...]:
        return ("link", self.end.namespace, self.end.name)

    @property
    def devices(self) -> tuple[tuple[str, str], ...]:
        return ((self.end.namespace, self.end.name), (self.peer.namespace, self.peer.name))


@dataclass(frozen=True, slots=True)
class Vxlan:
    """A VXLAN device (``ip link add NAME type vxlan id VNI local LOCAL dev UNDERLAY dstport PORT``).

    ``learning`` False is ``nolearning``: remote MACs come only from the FDB entries of the plan, as with
    flannel's vxlan backend, never from received frames. ``underlay`` is the device the encapsulated
    packets leave through (flannel: the node's external interface); the kernel deletes the VXLAN device
    when its underlay goes away, so ``diff_plans`` re-creates it when the underlay is re-created.
    """

    namespace: str
    name: str
    vni: int
    local: IPv4Address
    underlay: str | None = None
    port: int = 4789
    learning: bool = False
    mac: str | None = None
    mtu: int | None = None

    @property
    def key(self) -> tuple[str, ...]:
        return ("link", self.namespace, self.name)

    @property
    def devices(self) -> tuple[tuple[str, str], ...]:
        return ((self.namespace, self.name),)


Link = Bridge | Veth | Vxlan


@dataclass(frozen=True, slots=True)
class Address:
    """An address on ``dev``. ``prefix_route`` False is ``noprefixroute``: no connected route for the
    prefix, so the subnet is reached through whatever route the plan gives (the VSwitch gateway)."""

    namespace: str
    dev: str
    address: IPv4Interface
    prefix_route: bool = True

    @property
    def key(self) -> tuple[str, ...]:
        return (self.namespace, self.dev, str(self.address))


@dataclass(frozen=True, slots=True)
class Route:
    """A route in ``table`` (254 = main). ``onlink`` lets ``via`` be outside every prefix of ``dev``."""

    namespace: str
    dst: IPv4Network
    dev: str
    via: IPv4Address | None = None
    table: int = MAIN_TABLE
    scope: Scope = "global"
    onlink: bool = False

    @property
    def key(self) -> tuple[str, ...]:
        return (self.namespace, str(self.table), str(self.dst))


@dataclass(frozen=True, slots=True)
class Rule:
    """An ``ip rule``: ``from src`` and/or ``to dst`` and/or ``fwmark`` at ``priority``, looking up ``table``."""

    namespace: str
    priority: int
    table: int
    src: IPv4Network | None = None
    dst: IPv4Network | None = None
    fwmark: int | None = None  # SLB replies policy-routed in the VRouter (render/slb.py)

    @property
    def key(self) -> tuple[str, ...]:
        key = (self.namespace, str(self.priority), str(self.src), str(self.dst), str(self.table))
        return key if self.fwmark is None else (*key, hex(self.fwmark))


@dataclass(frozen=True, slots=True)
class Neighbour:
    """A permanent neighbour entry: ``address`` is at ``mac`` behind ``dev``."""

    namespace: str
    dev: str
    address: IPv4Address
    mac: str

    @property
    def key(self) -> tuple[str, ...]:
        return (self.namespace, self.dev, str(self.address))


@dataclass(frozen=True, slots=True)
class Fdb:
    """A permanent forwarding entry of a VXLAN device (``bridge fdb replace MAC dev DEV dst DST self``):
    frames for ``mac`` are encapsulated towards the remote VTEP ``dst``. One ``dst`` per MAC, so the key
    leaves ``dst`` out and a changed ``dst`` is a replace."""

    namespace: str
    dev: str
    mac: str
    dst: IPv4Address

    @property
    def key(self) -> tuple[str, ...]:
        return (self.namespace, self.dev, self.mac)


def _sort_key(obj: object) -> tuple[str, ...]:
    key: tuple[str, ...] = obj.key  # type: ignore[attr-defined]
    return key


@dataclass(frozen=True, slots=True)
class KernelPlan:
    """Everything one emulation wants in the kernel, each kind sorted by key (deterministic, diffable)."""

    namespaces: tuple[Namespace, ...] = ()
    links: tuple[Link, ...] = ()
    addresses: tuple[Address, ...] = ()
    routes: tuple[Route, ...] = ()
    rules: tuple[Rule, ...] = ()
    neighbours: tuple[Neighbour, ...] = ()
    fdbs: tuple[Fdb, ...] = ()

    def namespace(self, name: str) -> Namespace:
        for ns in self.namespaces:
            if ns.name == name:
                return ns
        raise KeyError(name)

    def in_namespace(self, name: str) -> KernelPlan:
        """The objects that live in one namespace (veths with either end there)."""
        return KernelPlan(
            namespaces=tuple(n for n in self.namespaces if n.name == name),
            links=tuple(lk for lk in self.links if any(ns == name for ns, _ in lk.devices)),
            addresses=tuple(a for a in self.addresses if a.namespace == name),
            routes=tuple(r for r in self.routes if r.namespace == name),
            rules=tuple(r for r in self.rules if r.namespace == name),
            neighbours=tuple(n for n in self.neighbours if n.namespace == name),
            fdbs=tuple(f for f in self.fdbs if f.namespace == name),
        )

    def lines(self) -> Iterator[str]:
        """The plan as iproute2-like commands: for people and golden files, never executed."""
        for ns in self.namespaces:
            yield f"netns add {ns.name}"
            for k, v in ns.sysctls:
                yield f"  sysctl -n {ns.name} {k}={v}"
        for link in self.links:
            if isinstance(link, Bridge):
                yield f"link add -n {link.namespace} {link.name} type bridge address {link.mac}"
            elif isinstance(link, Vxlan):
                dev = f" dev {link.underlay}" if link.underlay else ""
                mtu = f" mtu {link.mtu}" if link.mtu else ""
                learning = "learning" if link.learning else "nolearning"
                yield (
                    f"link add -n {link.namespace} {link.name} address {link.mac}{mtu} type vxlan id {link.vni} "
                    f"local {link.local}{dev} dstport {link.port} {learning}"
                )
            else:
                a, b = link.end, link.peer
                yield (
                    f"link add -n {a.namespace} {a.name} address {a.mac} master {a.master} type veth "
                    f"peer {b.name} netns {b.namespace} address {b.mac} master {b.master}"
                )
        for ad in self.addresses:
            yield f"addr add -n {ad.namespace} {ad.address} dev {ad.dev}"
        for r in self.routes:
            via = f" via {r.via}" if r.via else ""
            onlink = " onlink" if r.onlink else ""
            yield f"route add -n {r.namespace} {r.dst}{via} dev {r.dev} table {r.table} scope {r.scope}{onlink}"
        for ru in self.rules:
            yield (
                f"rule add -n {ru.namespace} prio {ru.priority} from {ru.src or 'all'}"
                f"{f' to {ru.dst}' if ru.dst else ''}{f' fwmark {ru.fwmark:#x}' if ru.fwmark else ''} lookup {ru.table}"
            )
        for n in self.neighbours:
            yield f"neigh add -n {n.namespace} {n.address} lladdr {n.mac} dev {n.dev} nud permanent"
        for f in self.fdbs:
            yield f"fdb add -n {f.namespace} {f.mac} dev {f.dev} dst {f.dst} self permanent"

    def __str__(self) -> str:
        return "\n".join(self.lines())


T = TypeVar("T")


def sorted_by_key(objs: Iterable[T]) -> tuple[T, ...]:
    """Sort and reject two different objects claiming one key: that would be a render bug."""
    seen: dict[tuple[str, ...], T] = {}
    for obj in objs:
        k = _sort_key(obj)
        if k in seen and seen[k] != obj:
            raise ValueError(f"two different kernel objects share the key {k}: {seen[k]} and {obj}")
        seen[k] = obj
    return tuple(seen[k] for k in sorted(seen))


def make_plan(
    namespaces: Iterable[Namespace],
    links: Iterable[Link],
    addresses: Iterable[Address],
    routes: Iterable[Route],
    rules: Iterable[Rule],
    neighbours: Iterable[Neighbour],
    fdbs: Iterable[Fdb] = (),
) -> KernelPlan:
    """A KernelPlan with every kind sorted by key and keys unique."""
    return KernelPlan(
        namespaces=sorted_by_key(namespaces),
        links=sorted_by_key(links),
        addresses=sorted_by_key(addresses),
        routes=sorted_by_key(routes),
        rules=sorted_by_key(rules),
        neighbours=sorted_by_key(neighbours),
        fdbs=sorted_by_key(fdbs),
    )


@dataclass(frozen=True, slots=True)
class PlanDiff:
    """What apply has to do to go from one plan to the next.

    ``remove_*`` are deleted first (FDB entries and neighbours to namespaces), then ``add_*`` created
    (namespaces to neighbours and FDB entries). Objects inside a removed namespace are not listed: the namespace takes them along,
    except veths, which are deleted explicitly so their peer in a surviving namespace goes at once
    rather than when the kernel gets round to destroying the namespace.
    """

    remove_namespaces: tuple[Namespace, ...] = ()
    remove_links: tuple[Link, ...] = ()
    remove_addresses: tuple[Address, ...] = ()
    remove_routes: tuple[Route, ...] = ()
    remove_rules: tuple[Rule, ...] = ()
    remove_neighbours: tuple[Neighbour, ...] = ()
    remove_fdbs: tuple[Fdb, ...] = ()
    add_namespaces: tuple[Namespace, ...] = ()
    # (namespace, key, value): sysctls new or changed in namespaces that already exist, and those of
    # interfaces that are (re)created.
    set_sysctls: tuple[tuple[str, str, str], ...] = ()
    add_links: tuple[Link, ...] = ()
    add_addresses: tuple[Address, ...] = ()
    add_routes: tuple[Route, ...] = ()
    add_rules: tuple[Rule, ...] = ()
    add_neighbours: tuple[Neighbour, ...] = ()
    add_fdbs: tuple[Fdb, ...] = ()

    @property
    def empty(self) -> bool:
        return not any(getattr(self, f) for f in self.__slots__)

    def count(self) -> int:
        return sum(len(getattr(self, f)) for f in self.__slots__)


def diff_plans(previous: KernelPlan | None, current: KernelPlan) -> PlanDiff:
    """The work that turns ``previous`` (what an earlier apply made) into ``current``.

    Pure. With ``previous`` None everything in ``current`` is to be added (apply then tolerates
    objects that already exist, which is how a restarted daemon adopts its namespaces).
    """
    prev = previous or KernelPlan()
    cur_ns = {n.name: n for n in current.namespaces}
    prev_ns = {n.name: n for n in prev.namespaces}
    gone_ns = {name for name in prev_ns if name not in cur_ns}

    def alive(namespace: str) -> bool:
        return namespace not in gone_ns

    # Links: a changed link is deleted and created again; everything on it must then be re-added.
    cur_links = set(current.links)
    prev_links = set(prev.links)
    remove_links = [lk for lk in prev.links if lk not in cur_links]
    add_links = [lk for lk in current.links if lk not in prev_links]
    # The kernel deletes a VXLAN device with its underlay: a re-created underlay brings it back too.
    underlays = {dev for lk in add_links for dev in lk.devices}
    for lk in current.links:
        if isinstance(lk, Vxlan) and lk not in add_links and (lk.namespace, lk.underlay) in underlays:
            add_links.append(lk)
    remade = {dev for lk in add_links for dev in lk.devices}
    remade_bridges = {(b.namespace, b.name) for b in add_links if isinstance(b, Bridge)}
    # A recreated bridge has lost its ports: re-add (ensure) the veths enslaved to it.
    adding = set(add_links)  # a set: a first apply has a thousand veths to check
    for lk in current.links:
        if isinstance(lk, Veth) and lk not in adding:
            ends = (lk.end, lk.peer)
            if any(e.master and (e.namespace, e.master) in remade_bridges for e in ends):
                add_links.append(lk)

    def kept(cur_items: Sequence[T], prev_items: Sequence[T], on_dev: bool = True) -> tuple[list[T], list[T]]:
        cur_set = set(cur_items)
        prev_set = set(prev_items)
        removed = [o for o in prev_items if o not in cur_set]
        added = [
            o
            for o in cur_items
            if o not in prev_set or (on_dev and (o.namespace, o.dev) in remade)  # type: ignore[attr-defined]
        ]
        return removed, added

    rm_addr, add_addr = kept(current.addresses, prev.addresses)
    rm_route, add_route = kept(current.routes, prev.routes)
    rm_neigh, add_neigh = kept(current.neighbours, prev.neighbours)
    rm_fdb, add_fdb = kept(current.fdbs, prev.fdbs)
    rm_rule, add_rule = kept(current.rules, prev.rules, on_dev=False)
    # Same key, new value: "replace" updates it in place, no delete needed.
    cur_route_keys = {r.key for r in current.routes}
    cur_neigh_keys = {n.key for n in current.neighbours}
    rm_route = [r for r in rm_route if r.key not in cur_route_keys]
    rm_neigh = [n for n in rm_neigh if n.key not in cur_neigh_keys]
    cur_fdb_keys = {f.key for f in current.fdbs}
    rm_fdb = [f for f in rm_fdb if f.key not in cur_fdb_keys]

    sysctls: list[tuple[str, str, str]] = []
    for name, ns in cur_ns.items():
        before = dict(prev_ns[name].sysctls) if name in prev_ns else {}
        for k, v in ns.sysctls:
            dev = sysctl_device(k)
            fresh = name not in prev_ns  # its namespace-wide values are set when it is created
            if (not fresh and before.get(k) != v) or (dev is not None and (fresh or (name, dev) in remade)):
                sysctls.append((name, k, v))

    return PlanDiff(
        remove_namespaces=tuple(prev_ns[n] for n in sorted(gone_ns)),
        remove_links=tuple(lk for lk in remove_links if isinstance(lk, Veth) or alive(lk.namespace)),
        remove_addresses=tuple(a for a in rm_addr if alive(a.namespace)),
        remove_routes=tuple(r for r in rm_route if alive(r.namespace)),
        remove_rules=tuple(r for r in rm_rule if alive(r.namespace)),
        remove_neighbours=tuple(n for n in rm_neigh if alive(n.namespace)),
        remove_fdbs=tuple(f for f in rm_fdb if alive(f.namespace)),
        add_namespaces=tuple(cur_ns[n] for n in sorted(cur_ns) if n not in prev_ns),
        set_sysctls=tuple(sysctls),
        add_links=tuple(add_links),
        add_addresses=tuple(add_addr),
        add_routes=tuple(add_route),
        add_rules=tuple(add_rule),
        add_neighbours=tuple(add_neigh),
        add_fdbs=tuple(add_fdb),
    )
