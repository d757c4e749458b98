"""kube-proxy's nftables mode for one node: the table ``ip kube-proxy`` in the node's namespace.

Owner of that table. It is rendered whole and loaded whole in one ``nft -f`` transaction
(``replace_script``), like every acknet table (STYLE.md, after Felix), or moved to a newer rendering by
a partial sync in one transaction (``update_script``, below). The layout follows kube-proxy's
nftables proxier (KEP-3866, ``pkg/proxy/nftables/proxier.go``; reference/k8s.md section 3) closely
enough that its test baseline ``TestOverallNFTablesRules`` and its packet-flow vectors hold:

- ``nat-prerouting`` / ``nat-output`` (dstnat) ``jump services``: one lookup in the verdict map
  ``service-ips`` (``ip daddr . meta l4proto . th dport``) for ClusterIPs, external IPs and
  load-balancer IPs, and one in ``service-nodeports`` for packets to ``@nodeport-ips`` — never a
  linear list of per-Service rules on the packet path.
- Per service port: ``service-<H>-ns/svc/proto/port`` (Cluster policy endpoints), ``local-…`` (Local
  policy endpoints), ``external-…`` (NodePort / external / LB traffic), ``firewall-…``
  (loadBalancerSourceRanges); per endpoint ``endpoint-<H>-…__<ip>/<port>`` (hairpin masquerade mark,
  session-affinity update, DNAT) and, with ``sessionAffinity: ClientIP``, a dynamic ``affinity-…`` set.
  ``H`` is the first 8 characters of base32(sha256(name)), exactly as kube-proxy names its chains.
- ``nat-postrouting`` (srcnat) ``jump masquerading``: packets with the mark 0x4000 are masqueraded
  (``fully-random``).
- Filter chains: ``no-endpoint-services`` / ``no-endpoint-nodeports`` send packets for Services without
  endpoints to ``reject-chain`` (TCP reset, ICMP port unreachable; reject is not a verdict, hence the
  helper chain) from input/forward/output; ``cluster-ips-check`` rejects unknown ports of a live
  ClusterIP and drops unallocated service-CIDR addresses.

Differences from kube-proxy, on purpose:

- Endpoint choice. kube-proxy writes ``numgen random mod N vmap { 0 : goto A , 1 : goto B }``; every
  such rule makes an anonymous set, and the kernel names anonymous sets by scanning all the table's
  sets (``nf_tables_set_alloc_name``): 10,000 Services x 3 endpoints took 15 s to load and 46 s to
  replace on this machine (kernel 6.18, nft 1.0.6), against 2.0 s and 2.2 s for the cascade. The
  default ``endpoint_choice="cascade"`` writes the same uniform choice without sets, as iptables mode
  does with ``statistic``: ``numgen random mod N 0 goto A``, ``numgen random mod N-1 0 goto B``, …,
  ``goto Z`` (each endpoint is picked with probability 1/N). ``endpoint_choice="vmap"`` writes kube-proxy's form. The Service dispatch is a map lookup in
  both: only the few rules of the one Service the packet is for are walked.
- One table, IPv4: the emulated VPCs are IPv4-only. The core (``render_table``) renders ``ip6`` too
  from a ``ProxyInput``, which the conformance tests use for upstream's IPv6 vectors.
- No health-check node ports, topology hints or ``--nodeport-addresses`` flag; ``nodeport_addresses``
  plays that flag's part. External IPs and load-balancer IPs are not in the planned Service: callers
  that know them (the SLB controller) pass them in ``external``.

Partial syncs, as kube-proxy does them: ``render_kube_proxy_table`` gives the table as data
(``KubeProxyTable``) and ``update_script`` turns two of them into one transaction that adds, flushes
and deletes only the chains, sets and map elements that differ. Given the table loaded before, each
service port whose ``ProxyServicePort`` (frozen) is unchanged reuses its part of that table, so a
change to one endpoint among 10,000 Services re-renders one Service, not all of them, and the diff
looks only at the parts that are not the very same objects.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Literal

from acknet.controllers.state import (
    EndpointAddress,
    Instance,
    Plan,
    PlannedEndpointSlice,
    PlannedService,
    PlannedServicePort,
    Protocol,
)

TABLE_FAMILY = "ip"
TABLE_NAME = "kube-proxy"
# --masquerade-bit 14, kube-proxy's default; the mark is not public API but other tables may test it.
MASQUERADE_MARK = 0x4000

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
Family = Literal["ip", "ip6"]
EndpointChoice = Literal["cascade", "vmap"]

_CHAIN_NAME_BASE_MAX = 240  # chainNameBaseLengthMax in proxier.go

# Priorities of the newer upstream baseline (reference/k8s.md section 7 notes they changed once).
_DSTNAT, _SRCNAT, _PRE_DNAT_FILTER, _FILTER = -100, 100, -110, 0


@dataclass(frozen=True, slots=True)
class ServiceExternal:
    """Addresses a Service is reached on besides its ClusterIP and NodePorts (not in the planned
    Service): ``spec.externalIPs``, ``status.loadBalancer.ingress`` and ``loadBalancerSourceRanges``."""

    external_ips: tuple[IPAddress, ...] = ()
    load_balancer_ips: tuple[IPAddress, ...] = ()
    source_ranges: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True, slots=True)
class ProxyEndpoint:
    """One endpoint of one service port, its target port resolved (named ports come from the slice)."""

    ip: IPAddress
    port: int
    local: bool  # on the node being rendered
    ready: bool = True
    serving: bool = True
    terminating: bool = False

    @property
    def usable_ready(self) -> bool:
        return self.ready and self.serving and not self.terminating

    @property
    def serving_terminating(self) -> bool:
        return self.serving and self.terminating

    def address(self) -> str:
        return f"[{self.ip}]:{self.port}" if self.ip.version == 6 else f"{self.ip}:{self.port}"


@dataclass(frozen=True, slots=True)
class ProxyServicePort:
    """kube-proxy's servicePortInfo: one port of one Service, with what this node needs of it."""

    namespace: str
    name: str
    port_name: str  # "" for an unnamed port, as in kube-proxy's ServicePortName
    protocol: Protocol
    cluster_ip: IPAddress
    port: int
    endpoints: tuple[ProxyEndpoint, ...]
    node_port: int | None = None
    external: ServiceExternal = field(default_factory=ServiceExternal)
    affinity_timeout: int | None = None  # seconds, with sessionAffinity ClientIP
    external_policy: Literal["Cluster", "Local"] = "Cluster"
    internal_policy: Literal["Cluster", "Local"] = "Cluster"

    @property
    def display(self) -> str:
        """ServicePortName.String(): ``ns/name:port`` (``ns/name`` for an unnamed port)."""
        suffix = f":{self.port_name}" if self.port_name else ""
        return f"{self.namespace}/{self.name}{suffix}"

    @property
    def externally_accessible(self) -> bool:
        return bool(self.node_port or self.external.external_ips or self.external.load_balancer_ips)

    @property
    def external_policy_local(self) -> bool:
        return self.externally_accessible and self.external_policy == "Local"

    @property
    def internal_policy_local(self) -> bool:
        return self.internal_policy == "Local"

    @property
    def uses_cluster_endpoints(self) -> bool:
        # Even with externalTrafficPolicy Local the cluster chain is needed to short-circuit pod traffic.
        return not self.internal_policy_local or self.externally_accessible

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_policy_local or self.external_policy_local


@dataclass(frozen=True, slots=True)
class ProxyInput:
    """Everything the table of one node depends on."""

    family: Family
    node: str
    node_ip: IPAddress  # kube-proxy's nodeIP: lets the node through loadBalancerSourceRanges
    nodeport_ips: tuple[IPAddress, ...]
    pod_cidrs: tuple[IPNetwork, ...]  # the local-traffic detector (DetectLocalByCIDR)
    service_cidrs: tuple[IPNetwork, ...]
    service_ports: tuple[ProxyServicePort, ...]
    comment: str = "rules for kube-proxy"


# -- from the planned state ---------------------------------------------------------------------------


def render_kube_proxy(
    plan: Plan,
    node: str,
    cluster: str,
    emulation: str,
    *,
    external: Mapping[str, ServiceExternal] | None = None,
    nodeport_addresses: Sequence[IPv4Network] | None = None,
    endpoint_choice: EndpointChoice = "cascade",
) -> str:
    """The full text of the ``ip kube-proxy`` table of node ``node`` of cluster ``cluster``.

    ``external`` maps ``namespace/name`` to a Service's external and load-balancer addresses.
    ``nodeport_addresses`` is kube-proxy's ``--nodeport-addresses``: NodePorts answer on the node's
    addresses inside these ranges; by default only on its primary IP, as kube-proxy's nftables mode does.
    """
    return render_table(
        proxy_input(plan, node, cluster, emulation, external=external, nodeport_addresses=nodeport_addresses),
        endpoint_choice=endpoint_choice,
    )


def render_kube_proxy_table(
    plan: Plan,
    node: str,
    cluster: str,
    emulation: str,
    *,
    external: Mapping[str, ServiceExternal] | None = None,
    nodeport_addresses: Sequence[IPv4Network] | None = None,
    endpoint_choice: EndpointChoice = "cascade",
    previous: KubeProxyTable | None = None,
) -> KubeProxyTable:
    """``render_kube_proxy`` as data, for ``update_script``; ``previous`` is the node's table loaded
    before, whose unchanged service ports are reused."""
    return render_table_data(
        proxy_input(plan, node, cluster, emulation, external=external, nodeport_addresses=nodeport_addresses),
        endpoint_choice=endpoint_choice,
        previous=previous,
    )


def replace_script(table_text: str) -> str:
    """``table_text`` wrapped so one ``nft -f`` replaces the table atomically whether or not it exists:
    ``add table`` creates it if missing, ``delete table`` drops it whole, the text recreates it, all in
    one transaction."""
    ref = f"{TABLE_FAMILY} {TABLE_NAME}"
    return f"add table {ref}\ndelete table {ref}\n{table_text}"


def proxy_input(
    plan: Plan,
    node: str,
    cluster: str,
    emulation: str,
    *,
    external: Mapping[str, ServiceExternal] | None = None,
    nodeport_addresses: Sequence[IPv4Network] | None = None,
) -> ProxyInput:
    """The planned state, seen from node ``node`` as kube-proxy sees its Services and EndpointSlices."""
    instance = _instance(plan, node)
    spec = plan.resources.clusters[cluster].spec
    if spec.network_plugin == "flannel":
        pod_cidrs: tuple[IPNetwork, ...] = (spec.pod_cidr,) if spec.pod_cidr is not None else ()
    else:
        # Terway pods take addresses from the pod VSwitches: those ranges are "the cluster's pods".
        vswitches = plan.resources.vswitches
        pod_cidrs = tuple(
            sorted(
                {vswitches[n].spec.cidr_block for n in spec.pod_vswitches if n in vswitches},
                key=lambda n: (int(n.network_address), n.prefixlen),
            )
        )
    slices: dict[tuple[str, str], list[PlannedEndpointSlice]] = {}
    for sl in plan.endpoint_slices:
        if sl.cluster == cluster:
            slices.setdefault((sl.namespace, sl.service), []).append(sl)
    extra = external or {}
    ports = [
        _service_port(svc, port, slices.get((svc.namespace, svc.name), ()), node, extra.get(svc.key))
        for svc in plan.services
        if svc.cluster == cluster and _proxied(svc)
        for port in svc.ports
    ]
    return ProxyInput(
        family="ip",
        node=node,
        node_ip=instance.primary_ip,
        nodeport_ips=_nodeport_ips(instance, nodeport_addresses),
        pod_cidrs=pod_cidrs,
        service_cidrs=(spec.service_cidr,),
        service_ports=tuple(ports),
        comment=f"rules for kube-proxy on node {node} of cluster {cluster} (emulation {emulation})",
    )


def _instance(plan: Plan, node: str) -> Instance:
    for inst in plan.instances:
        if inst.name == node:
            return inst
    raise KeyError(f"no instance {node!r} in the plan")


def _proxied(svc: PlannedService) -> bool:
    # Headless and ExternalName Services are DNS only: kube-proxy skips them (TestBuildServiceMap*).
    return svc.type != "ExternalName" and svc.cluster_ip is not None


def _node_addresses(instance: Instance) -> list[IPv4Address]:
    # The node's own addresses: its primary IP and the primary ENI's. Secondary ENIs carry Terway pod
    # addresses, which are not the node's.
    out = [instance.primary_ip]
    for eni in instance.enis:
        if eni.index == 0:
            out.extend(eni.ips)
    return list(dict.fromkeys(out))


def _nodeport_ips(instance: Instance, ranges: Sequence[IPv4Network] | None) -> tuple[IPAddress, ...]:
    if ranges is None:
        return (instance.primary_ip,)
    return tuple(ip for ip in _node_addresses(instance) if any(ip in r for r in ranges))


def _service_port(
    svc: PlannedService,
    port: PlannedServicePort,
    slices: Iterable[PlannedEndpointSlice],
    node: str,
    external: ServiceExternal | None,
) -> ProxyServicePort:
    assert svc.cluster_ip is not None
    endpoints: dict[str, ProxyEndpoint] = {}
    for sl in slices:
        for sp in sl.ports:
            # The slice names its ports after the Service's; a named targetPort arrives resolved here.
            if sp.name == port.name and sp.protocol == port.protocol:
                for ep in sl.endpoints:
                    pe = _endpoint(ep, sp.port, node)
                    endpoints.setdefault(pe.address(), pe)
    return ProxyServicePort(
        namespace=svc.namespace,
        name=svc.name,
        port_name=port.name or "",
        protocol=port.protocol,
        cluster_ip=svc.cluster_ip,
        port=port.port,
        endpoints=tuple(endpoints[k] for k in sorted(endpoints)),
        node_port=port.node_port if svc.type in ("NodePort", "LoadBalancer") else None,
        external=external or ServiceExternal(),
        affinity_timeout=svc.session_affinity_timeout,
        external_policy=svc.external_traffic_policy,
        internal_policy=svc.internal_traffic_policy,
    )


def _endpoint(ep: EndpointAddress, port: int, node: str) -> ProxyEndpoint:
    return ProxyEndpoint(
        ip=ep.ip,
        port=port,
        local=ep.node == node,
        ready=ep.ready,
        serving=ep.serving,
        terminating=ep.terminating,
    )


# -- names ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1 << 18)
def hash_and_truncate(name: str) -> str:
    """kube-proxy's hashAndTruncate: ``<8 chars of base32(sha256(name))>-<name>``, at most 240 long."""
    # base32 turns each 5 bytes into 8 characters on their own: the first 5 bytes give the first 8.
    digest = base64.b32encode(hashlib.sha256(name.encode()).digest()[:5]).decode()
    out = f"{digest}-{name}"
    if len(out) > _CHAIN_NAME_BASE_MAX:
        out = out[: _CHAIN_NAME_BASE_MAX - 3] + "..."
    return out


def service_chain_base(sp: ProxyServicePort) -> str:
    return hash_and_truncate(f"{sp.namespace}/{sp.name}/{sp.protocol.lower()}/{sp.port_name}")


def endpoint_chain_base(sp: ProxyServicePort, ep: ProxyEndpoint) -> str:
    ip = str(ep.ip).replace(":", ".")  # colons are not allowed in chain names (IPv6)
    return hash_and_truncate(f"{sp.namespace}/{sp.name}/{sp.protocol.lower()}/{sp.port_name}__{ip}/{ep.port}")


# -- the table -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Categorized:
    cluster: tuple[ProxyEndpoint, ...]
    local: tuple[ProxyEndpoint, ...]
    reachable: tuple[ProxyEndpoint, ...]
    has_any: bool


def categorize_endpoints(sp: ProxyServicePort) -> _Categorized:
    """proxy.CategorizeEndpoints without topology: ready endpoints, or — only when none is ready — the
    serving terminating ones (KEP-1669), for the Cluster and the Local policy."""
    cluster: tuple[ProxyEndpoint, ...] = ()
    has_any = False
    if sp.uses_cluster_endpoints:
        cluster = tuple(e for e in sp.endpoints if e.usable_ready)
        if not cluster:
            cluster = tuple(e for e in sp.endpoints if e.serving_terminating)
        has_any = bool(cluster)
    if not sp.uses_local_endpoints:
        return _Categorized(cluster, (), cluster, has_any)
    local_ready = local_terminating = False
    for e in sp.endpoints:
        if e.usable_ready:
            has_any = True
            local_ready = local_ready or e.local
        elif e.serving_terminating:
            has_any = True
            local_terminating = local_terminating or e.local
    local: tuple[ProxyEndpoint, ...] = ()
    if local_ready:
        local = tuple(e for e in sp.endpoints if e.local and e.usable_ready)
    elif local_terminating:
        local = tuple(e for e in sp.endpoints if e.local and e.serving_terminating)
    if not sp.uses_cluster_endpoints:
        return _Categorized((), local, local, has_any)
    merged = {e.address(): e for e in (*cluster, *local)}
    return _Categorized(cluster, local, tuple(merged[k] for k in sorted(merged)), has_any)


class _Fragment:
    """Sets and chains of (part of) the table; elements of shared sets are recorded, not added."""

    def __init__(self, inp: ProxyInput) -> None:
        self.inp = inp
        self.ipx = inp.family  # "ip" or "ip6": the match keyword is the family's name
        self.addr_type = "ipv4_addr" if inp.family == "ip" else "ipv6_addr"
        self.sets: dict[str, tuple[list[str], set[str]]] = {}  # name -> (declaration lines, elements)
        self.chains: dict[str, tuple[str | None, list[str]]] = {}  # name -> (base chain spec, rules)
        self.elements: list[tuple[str, str]] = []  # (set, element) for sets declared elsewhere

    def set(self, name: str, *decl: str) -> None:
        self.sets[name] = (list(decl), set())

    def element(self, name: str, element: str) -> None:
        self.elements.append((name, element))

    def chain(self, name: str, base: str | None = None, comment: str | None = None) -> list[str]:
        head = " ".join(x for x in (base, f"comment {_quote(comment)};" if comment else None) if x)
        self.chains[name] = (head or None, [])
        return self.chains[name][1]


class KubeProxyTable(_Fragment):
    """The whole table as data: ``text()`` for a full load, ``update_script`` between two of them.

    Treat as read-only once rendered: its service ports' parts may be shared with the next rendering."""

    def __init__(self, inp: ProxyInput, endpoint_choice: EndpointChoice) -> None:
        super().__init__(inp)
        self.fragments: list[_Fragment] = []  # the service ports' parts, merged in
        self.by_port: dict[ProxyServicePort, _Fragment] = {}
        # What a service port's part depends on besides the port itself.
        self.context = (inp.family, inp.node_ip, inp.pod_cidrs, endpoint_choice)
        # The fixed part, before any fragment: its chains and each fixed set's own elements.
        self.fixed_chains: frozenset[str] = frozenset()
        self.fixed_elements: dict[str, frozenset[str]] = {}

    def element(self, name: str, element: str) -> None:
        self.sets[name][1].add(element)  # a ClusterIP with several ports is one element

    def seal_fixed(self) -> None:
        self.fixed_chains = frozenset(self.chains)
        self.fixed_elements = {name: frozenset(elements) for name, (_, elements) in self.sets.items()}

    def merge(self, part: _Fragment) -> None:
        self.fragments.append(part)
        self.sets.update(part.sets)
        self.chains.update(part.chains)
        sets = self.sets
        for name, element in part.elements:
            sets[name][1].add(element)

    def text(self) -> str:
        out = [f"table {self.inp.family} {TABLE_NAME} {{", f"\tcomment {_quote(self.inp.comment)}"]
        for name in sorted(self.sets):
            decl, elements = self.sets[name]
            out.append(f"\t{'map' if ' : ' in decl[0] else 'set'} {name} {{")
            out.extend(f"\t\t{line}" for line in decl)
            if elements:
                joined = ",\n\t\t\t     ".join(sorted(elements))
                out.append(f"\t\telements = {{ {joined} }}")
            out.append("\t}")
        for name in sorted(self.chains, key=_chain_order):
            base, rules = self.chains[name]
            out.append(f"\tchain {name} {{")
            if base is not None:
                out.append(f"\t\t{base}")
            out.extend(f"\t\t{rule}" for rule in rules)
            out.append("\t}")
        out.append("}")
        return "\n".join(out) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace('"', "'")[:120] + '"'


def _chain_order(name: str) -> tuple[int, str]:
    # Fixed chains first (in name order), then each service port's chains grouped by their hash part.
    kind, _, rest = name.partition("-")
    if kind in ("service", "local", "external", "firewall", "endpoint") and rest[8:9] == "-":
        order = ("service", "local", "external", "firewall", "endpoint").index(kind)
        return (1, f"{rest[9:].split('__')[0]}\0{order}\0{rest[9:]}")
    return (0, name)


def _cidrs(nets: Sequence[IPNetwork]) -> str:
    if len(nets) == 1:
        return str(nets[0])
    return "{ " + ", ".join(str(n) for n in nets) + " }"


def render_table(inp: ProxyInput, *, endpoint_choice: EndpointChoice = "cascade") -> str:
    """The table for ``inp``: pure, deterministic text for ``nft -f``."""
    return render_table_data(inp, endpoint_choice=endpoint_choice).text()


def render_table_data(
    inp: ProxyInput, *, endpoint_choice: EndpointChoice = "cascade", previous: KubeProxyTable | None = None
) -> KubeProxyTable:
    """The table for ``inp`` as data; service ports unchanged since ``previous`` reuse their part."""
    t = KubeProxyTable(inp, endpoint_choice)
    ipx, addr = t.ipx, t.addr_type
    svc_key = f"{addr} . inet_proto . inet_service : verdict"
    t.set("cluster-ips", f"type {addr}", 'comment "Active ClusterIPs"')
    t.set("nodeport-ips", f"type {addr}", 'comment "IPs that accept NodePort traffic"')
    t.set(
        "firewall-ips",
        f"type {svc_key}",
        'comment "destinations that are subject to LoadBalancerSourceRanges"',
    )
    t.set(
        "no-endpoint-nodeports",
        "type inet_proto . inet_service : verdict",
        'comment "vmap to drop or reject packets to service nodeports with no endpoints"',
    )
    t.set(
        "no-endpoint-services",
        f"type {svc_key}",
        'comment "vmap to drop or reject packets to services with no endpoints"',
    )
    t.set("service-ips", f"type {svc_key}", 'comment "ClusterIP, ExternalIP and LoadBalancer IP traffic"')
    t.set("service-nodeports", "type inet_proto . inet_service : verdict", 'comment "NodePort traffic"')
    for ip in sorted(set(inp.nodeport_ips), key=_ip_order):
        t.element("nodeport-ips", str(ip))

    def hook(kind: str, name: str, prio: int) -> str:
        return f"type {kind} hook {name} priority {prio}; policy accept;"

    t.chain("nat-prerouting", hook("nat", "prerouting", _DSTNAT)).append("jump services")
    t.chain("nat-output", hook("nat", "output", _DSTNAT)).append("jump services")
    t.chain("nat-postrouting", hook("nat", "postrouting", _SRCNAT)).append("jump masquerading")
    t.chain("filter-prerouting-pre-dnat", hook("filter", "prerouting", _PRE_DNAT_FILTER)).append(
        "ct state new jump firewall-check"
    )
    t.chain("filter-output-pre-dnat", hook("filter", "output", _PRE_DNAT_FILTER)).append(
        "ct state new jump firewall-check"
    )
    t.chain("filter-forward", hook("filter", "forward", _FILTER)).extend(
        ["ct state new jump service-endpoints-check", "ct state new jump cluster-ips-check"]
    )
    t.chain("filter-input", hook("filter", "input", _FILTER)).extend(
        ["ct state new jump nodeport-endpoints-check", "ct state new jump service-endpoints-check"]
    )
    t.chain("filter-output", hook("filter", "output", _FILTER)).extend(
        ["ct state new jump service-endpoints-check", "ct state new jump cluster-ips-check"]
    )
    t.chain("firewall-check").append(f"{ipx} daddr . meta l4proto . th dport vmap @firewall-ips")
    t.chain("services").extend(
        [
            f"{ipx} daddr . meta l4proto . th dport vmap @service-ips",
            f"{ipx} daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
        ]
    )
    t.chain("service-endpoints-check").append(
        f"{ipx} daddr . meta l4proto . th dport vmap @no-endpoint-services"
    )
    t.chain("nodeport-endpoints-check").append(
        f"{ipx} daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports"
    )
    check = t.chain("cluster-ips-check")
    check.append(f'{ipx} daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"')
    if inp.service_cidrs:
        cidrs = ", ".join(str(c) for c in inp.service_cidrs)
        check.append(f'{ipx} daddr {{ {cidrs} }} drop comment "Drop traffic to unallocated ClusterIPs"')
    t.chain("mark-for-masquerade").append(f"mark set mark or {MASQUERADE_MARK:#x}")
    t.chain("masquerading").extend(
        [
            f"mark and {MASQUERADE_MARK:#x} == 0 return",
            f"mark set mark xor {MASQUERADE_MARK:#x}",
            "masquerade fully-random",
        ]
    )
    t.chain("reject-chain", comment="helper for @no-endpoint-services / @no-endpoint-nodeports").append(
        "reject"
    )

    t.seal_fixed()
    reuse = previous.by_port if previous is not None and previous.context == t.context else {}
    by_port = t.by_port
    for sp in inp.service_ports:
        part = reuse.get(sp)
        if part is None:
            part = _Fragment(inp)
            _render_service_port(part, sp, endpoint_choice)
        by_port[sp] = part
        t.merge(part)
    return t


def _element_key(element: str) -> str:
    """A set or map element without its comment and value: what ``delete element`` takes."""
    return element.split(" comment ", 1)[0].split(" : ", 1)[0]


def update_script(old: KubeProxyTable, new: KubeProxyTable) -> str | None:
    """One ``nft -f`` transaction that turns the loaded table ``old`` into ``new``, touching only what
    differs (kube-proxy's partial sync); None when only a whole replacement will do (a base chain, a
    declaration or the family changed).

    Only the fixed chains and the service ports whose part changed are compared (``new`` rendered with
    ``previous=old`` holds the very same part objects for unchanged service ports; without it every
    part is compared and rewritten, which is still correct). Order: new
    sets and chains; changed chains flushed and refilled; elements removed, then added (a changed map
    value is both); then chains and sets nothing refers to any more are flushed and deleted."""
    if (old.inp.family, old.inp.comment) != (new.inp.family, new.inp.comment):
        return None
    if old.fixed_chains != new.fixed_chains:
        return None
    ref = f"{new.inp.family} {TABLE_NAME}"
    created: list[str] = []
    rules: list[str] = []
    removed_elements: dict[str, list[str]] = {}
    added_elements: dict[str, list[str]] = {}
    deleted_chains: list[str] = []
    deleted_sets: list[str] = []

    def refill(name: str) -> bool:
        head, body = new.chains[name]
        previous = old.chains.get(name)
        if previous is None:
            if head is not None:
                return False
            created.append(f"add chain {ref} {name}")
        elif previous[0] != head:
            return False
        elif previous[1] == body:
            return True
        else:
            rules.append(f"flush chain {ref} {name}")
        rules.extend(f"add rule {ref} {name} {rule}" for rule in body)
        return True

    for name in new.fixed_chains:
        if not refill(name):
            return None
    for name, elements in new.fixed_elements.items():
        before = old.fixed_elements.get(name)
        if before is None or old.sets[name][0] != new.sets[name][0]:
            return None
        for e in before - elements:
            if e not in new.sets[name][1]:
                removed_elements.setdefault(name, []).append(_element_key(e))
        for e in elements - before:
            if e not in old.sets[name][1]:
                added_elements.setdefault(name, []).append(e)

    new_ids = {id(f) for f in new.fragments}
    old_ids = {id(f) for f in old.fragments}
    gone = [f for f in old.fragments if id(f) not in new_ids]
    came = [f for f in new.fragments if id(f) not in old_ids]
    for part in came:
        for name, (decl, _) in part.sets.items():
            before_set = old.sets.get(name)
            if before_set is None:
                created.append(f"add set {ref} {name} {{ {' ; '.join(decl)} ; }}")
            elif before_set[0] != decl:
                return None
        for name in part.chains:
            if not refill(name):
                return None
        for name, e in part.elements:
            if e not in old.sets[name][1]:
                added_elements.setdefault(name, []).append(e)
    for part in gone:
        for name in part.sets:
            if name not in new.sets:
                deleted_sets.append(f"delete set {ref} {name}")
        for name in part.chains:
            if name not in new.chains:
                deleted_chains.append(name)
        for name, e in part.elements:
            if e not in new.sets[name][1]:
                removed_elements.setdefault(name, []).append(_element_key(e))
    lines = [*created, *rules]
    for name, keys in sorted(removed_elements.items()):
        lines.append(f"delete element {ref} {name} {{ {', '.join(sorted(set(keys)))} }}")
    for name, adding in sorted(added_elements.items()):
        lines.append(f"add element {ref} {name} {{ {', '.join(sorted(set(adding)))} }}")
    # Chains that go may jump to each other: all are emptied before any is deleted.
    lines.extend(f"flush chain {ref} {name}" for name in sorted(set(deleted_chains)))
    lines.extend(f"delete chain {ref} {name}" for name in sorted(set(deleted_chains)))
    lines.extend(sorted(set(deleted_sets)))
    return "\n".join(lines) + "\n" if lines else ""


def _ip_order(ip: IPAddress) -> tuple[int, int]:
    return (ip.version, int(ip))


def _render_service_port(t: _Fragment, sp: ProxyServicePort, endpoint_choice: EndpointChoice) -> None:
    inp, ipx = t.inp, t.ipx
    proto = sp.protocol.lower()
    base = service_chain_base(sp)
    cluster_chain, local_chain = f"service-{base}", f"local-{base}"
    external_chain, firewall_chain = f"external-{base}", f"firewall-{base}"
    eps = categorize_endpoints(sp)
    uses_cluster_chain = bool(eps.cluster) and sp.uses_cluster_endpoints
    uses_local_chain = bool(eps.local) and sp.uses_local_endpoints

    internal_chain, has_internal = cluster_chain, eps.has_any
    if sp.internal_policy_local:
        internal_chain, has_internal = local_chain, bool(eps.local)
    external_policy_chain, has_external = cluster_chain, eps.has_any
    if sp.external_policy_local:
        external_policy_chain, has_external = local_chain, bool(eps.local)
    # Needed even without external endpoints: it holds the short-circuit for pod and node traffic.
    uses_external_chain = eps.has_any and sp.externally_accessible

    reject = "goto reject-chain"
    internal_verdict = external_verdict = reject
    if eps.has_any:
        internal_verdict = "drop"  # internalTrafficPolicy Local and no endpoint on this node
        external_verdict = "drop"  # externalTrafficPolicy Local and no endpoint on this node
    comment = f"comment {_quote(sp.display)}"

    t.element("cluster-ips", str(sp.cluster_ip))
    key = f"{sp.cluster_ip} . {proto} . {sp.port}"
    if has_internal:
        t.element("service-ips", f"{key} : goto {internal_chain}")
    else:
        t.element("no-endpoint-services", f"{key} {comment} : {internal_verdict}")

    for ip in sp.external.external_ips:
        key = f"{ip} . {proto} . {sp.port}"
        if eps.has_any:
            t.element("service-ips", f"{key} : goto {external_chain}")
        if not has_external:
            t.element("no-endpoint-services", f"{key} {comment} : {external_verdict}")

    lb_ips = sp.external.load_balancer_ips
    uses_firewall = bool(lb_ips) and bool(sp.external.source_ranges)
    for ip in lb_ips:
        key = f"{ip} . {proto} . {sp.port}"
        if eps.has_any:
            t.element("service-ips", f"{key} : goto {external_chain}")
        if uses_firewall:
            t.element("firewall-ips", f"{key} : goto {firewall_chain}")
        if not has_external:
            t.element("no-endpoint-services", f"{key} {comment} : {external_verdict}")

    if sp.node_port:
        key = f"{proto} . {sp.node_port}"
        if eps.has_any:
            # NodePorts are not subject to loadBalancerSourceRanges, as in kube-proxy.
            t.element("service-nodeports", f"{key} : goto {external_chain}")
        if not has_external:
            t.element("no-endpoint-nodeports", f"{key} {comment} : {external_verdict}")

    if uses_cluster_chain:
        t.chain(cluster_chain)
    if uses_local_chain:
        t.chain(local_chain)
    if has_internal and inp.pod_cidrs:
        # Off-cluster traffic to a ClusterIP may bounce off-node: masquerade it (the local detector).
        t.chains[internal_chain][1].append(
            f"{ipx} daddr {sp.cluster_ip} {ipx} saddr != {_cidrs(inp.pod_cidrs)} jump mark-for-masquerade"
        )

    if uses_external_chain:
        ext = t.chain(external_chain)
        if not sp.external_policy_local:
            ext.append("jump mark-for-masquerade")
        else:
            if inp.pod_cidrs:
                ext.append(
                    f"{ipx} saddr {_cidrs(inp.pod_cidrs)} goto {cluster_chain} "
                    'comment "short-circuit pod traffic"'
                )
            ext.append('fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"')
            ext.append(f'fib saddr type local goto {cluster_chain} comment "short-circuit local traffic"')
        if has_external:
            ext.append(f"goto {external_policy_chain}")

    if uses_firewall:
        sources = [str(c) for c in sp.external.source_ranges]
        if any(inp.node_ip in c for c in sp.external.source_ranges if c.version == inp.node_ip.version):
            # A VIP bound on the node loops back with itself as the source: let the node through.
            sources.extend(str(ip) for ip in lb_ips)
        t.chain(firewall_chain).append(f"{ipx} saddr != {{ {', '.join(sources)} }} drop")

    affinity = sp.affinity_timeout is not None
    # Each endpoint's chain name and address text once (ipaddress's str() is slow at 30,000 endpoints).
    bases = {id(ep): endpoint_chain_base(sp, ep) for ep in eps.reachable}
    if affinity:
        for ep in eps.reachable:
            t.set(
                f"affinity-{bases[id(ep)]}",
                f"type {t.addr_type}",
                "flags dynamic,timeout",
                f"timeout {sp.affinity_timeout}s",
            )
    if uses_cluster_chain:
        _write_service_to_endpoints(t, sp, cluster_chain, eps.cluster, endpoint_choice, bases)
    if uses_local_chain:
        _write_service_to_endpoints(t, sp, local_chain, eps.local, endpoint_choice, bases)

    for ep in eps.reachable:
        epbase = bases[id(ep)]
        ip_text = str(ep.ip)
        rules = t.chain(f"endpoint-{epbase}")
        rules.append(f"{ipx} saddr {ip_text} jump mark-for-masquerade")  # hairpin: a pod to itself
        if affinity:
            rules.append(f"update @affinity-{epbase} {{ {ipx} saddr }}")
        address = f"[{ip_text}]:{ep.port}" if ep.ip.version == 6 else f"{ip_text}:{ep.port}"
        rules.append(f"meta l4proto {proto} dnat to {address}")


def _write_service_to_endpoints(
    t: _Fragment,
    sp: ProxyServicePort,
    chain: str,
    endpoints: Sequence[ProxyEndpoint],
    endpoint_choice: EndpointChoice,
    bases: Mapping[int, str],
) -> None:
    rules = t.chains[chain][1]
    targets = [f"endpoint-{bases[id(ep)]}" for ep in endpoints]
    if sp.affinity_timeout is not None:
        for ep, target in zip(endpoints, targets, strict=True):
            rules.append(f"{t.ipx} saddr @affinity-{bases[id(ep)]} goto {target}")
    if endpoint_choice == "vmap":
        elements = " , ".join(f"{i} : goto {target}" for i, target in enumerate(targets))
        rules.append(f"numgen random mod {len(targets)} vmap {{ {elements} }}")
        return
    # Endpoint i is taken with probability 1/(n-i) among those left: 1/n each in the end.
    n = len(targets)
    for i, target in enumerate(targets[:-1]):
        rules.append(f"numgen random mod {n - i} 0 goto {target}")
    rules.append(f"goto {targets[-1]}")
