"""Can A reach B, and why: verdicts from the model's semantics, for ``acknet check``.

This is the independent second implementation that ``acknet probe`` is compared with: it follows a
new session's first packet through the hops ACK puts on its way and never looks at what the data
plane renders (it does not import ``acknet.dataplane``), so a bug in either shows up as a
disagreement instead of being shared.

The path of a packet (reference/alibaba.md 1.4, 1.5, 2 and 3):

- Same instance, Terway shared ENI: pod <-> pod and pod <-> node are routed inside the node by the
  veth policy routing (``ip rule 512 to pod -> main``) and never reach the VPC, so no security group
  applies. Flannel: the pods share the node's ``cni0`` bridge, same result.
- Terway exclusive ENI: the ENI is the pod's eth0, so everything but the way to its own node (the
  ``hostIP/32 via veth1`` route) leaves through it: even a pod on the same node is reached through
  both ENIs and both sets of security groups.
- Off the instance: egress at the ENI the source's traffic leaves through (a shared pod's own
  secondary ENI, an exclusive pod's ENI, a Flannel pod's node eth0, an ECS instance's eth0), across
  the VPC, ingress at the destination's ENI. Terway pod addresses are ENI addresses, so the VPC
  delivers them natively without encapsulation; Flannel pod addresses are not, so a VPC route entry
  PodCIDR -> node must bring them (and the node's groups see the pod address: ACK tells Flannel
  users to open the pod CIDR in the group). Different VPCs have no route to each other.
- Security groups are stateful and judge the first packet of a session (``security_group.evaluate``):
  egress at the source ENI, then ingress at the destination ENI, before any DNAT.
- At the destination, a port nobody listens on answers with a TCP reset (ICMP port unreachable for
  UDP): the connection is refused, not dropped. The declared ports are what listens (acknet's
  built-in server answers exactly those); an endpoint running its own command is assumed to listen
  on an undeclared port, and the reason says it was assumed.

- NetworkPolicy (``policy.py``) sits on each pod's ``cali`` veth: the source pod's egress policy is
  the first hop of a pod's packet, the destination pod's ingress policy the last before the
  listener, so a verdict names the policy and rule that decided, or why none applies (no policy
  selects the pod; Flannel, exclusive ENI or ``networkPolicy: false`` on ACK).

- Flannel's ``vxlan`` backend (``flannelBackend: vxlan``; dataplane/render/topology.py): the VPC
  has no route entry for any PodCIDR. A node reaches another node's pods through ``flannel.1``,
  which wraps the packet in VXLAN, UDP 8472 from its primary IP to the peer node's: the security
  groups judge that node-to-node UDP flow, never the pod addresses. The reply to a pod address is
  tunnelled back the same way, and its outer flow (peer -> node, UDP 8472) is a new flow to the
  stateful groups, so both directions of UDP 8472 must pass. Addresses outside the cluster's nodes
  cannot reach a pod, nor answer one (flannel's ``--ip-masq`` is not part of the emulation).

Services (``service_verdict``; reference/k8s.md 3, kube-proxy): a connection to ``svc/NS/NAME`` is
judged through each endpoint kube-proxy could pick, after its DNAT, so the policies and security
groups see the endpoint's own address and targetPort. Pods and nodes of the cluster use the
ClusterIP (internalTrafficPolicy Local: only endpoints on the client's node); anything else reaches
the Service only through its NodePort on each node's primary IP (the VPC has no route to the
service CIDR), judged at both ENIs' groups on the nodePort, then kube-proxy on that node:
externalTrafficPolicy Cluster SNATs to the node, so an endpoint elsewhere sees the node (policy on
a local endpoint still sees the client: SNAT happens at postrouting, after the filter hooks);
Local keeps the client address and only the node's own endpoints, and a node without one drops.
A Service without ready endpoints rejects. A headless Service has no virtual address: its name
resolves to its ready endpoints' addresses, which are judged directly. The verdict is allowed when
every path is, not allowed when none is, and ``partial`` in between; its hops are the Service hop
and one line per backend (and node, through a NodePort), each naming what decided.

Pure and cached: security group decisions are kept per (ENI, peer address, protocol, port), so a
check over every pair of a 500-pod plan evaluates the rules O(pods x ENIs) times, not O(pods²).
Every pair of 10,000 pods is still 10^8 verdicts: ``matrix.py`` answers those per equivalence class
of endpoints with bitsets, and comes back here (``verdict``, ``_network_path``) for one pair per
class pair and for every reason it prints.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any, Literal, cast

from acknet.analysis.endpoints import (
    Backend,
    Destination,
    Endpoint,
    EniRef,
    IngressEndpoint,
    ServiceEndpoint,
    ServicePortTarget,
    SlbEndpoint,
)
from acknet.analysis.policy import PolicyDecision, PolicyModel
from acknet.analysis.security_group import SGDecision, evaluate_direction, group_members
from acknet.controllers.state import Plan, Protocol, RouteEntry
from acknet.model.cloud import SecurityGroup

HopAction = Literal["accept", "drop", "reject", "forward"]
PortSpec = tuple[int, Protocol]

# flannel's vxlan backend: the Linux VXLAN port (flannel:pkg/backend/vxlan), not IANA's 4789.
FLANNEL_VXLAN_PORT = 8472
# Probes and the differential tests send this many attempts per backend through a Service, so that
# random endpoint choice reaches each one (a backend is missed with probability about e^-8).
ATTEMPTS_PER_BACKEND = 8

_PORT = re.compile(r"^\s*(\d{1,5})\s*(?:/\s*([A-Za-z]+)\s*)?$")
_PROTOCOLS: tuple[Protocol, ...] = ("TCP", "UDP", "SCTP")


def parse_port(text: str) -> PortSpec:
    """``80``, ``80/TCP``, ``53/udp`` -> (port, protocol); TCP when no protocol is given, as kubectl.

    Raises ``ValueError`` with a message that says what is accepted.
    """
    match = _PORT.match(text)
    if match is None:
        raise ValueError(f"port {text!r}: expected PORT or PORT/PROTOCOL, e.g. 80, 80/TCP, 53/udp")
    port = int(match.group(1))
    if not 1 <= port <= 65535:
        raise ValueError(f"port {text!r}: {port} is outside 1-65535")
    protocol = (match.group(2) or "TCP").upper()
    if protocol not in _PROTOCOLS:
        raise ValueError(f"port {text!r}: protocol {match.group(2)!r} is not one of TCP, UDP, SCTP")
    return port, cast(Protocol, protocol)


@dataclass(frozen=True, slots=True)
class Hop:
    """One place on the path that decided something, in the shape of ``trace -o json``'s hops.

    ``at`` is where (``ecs/db-1 eth0``, ``VPC prod``), ``object`` what decided there (a security
    group, the VPC route table, the node's routing, the listening socket), ``rule`` the deciding rule
    when there is one, ``action`` what happened to the packet, ``reason`` the sentence shown to users.
    """

    at: str
    object: str
    action: HopAction
    reason: str
    rule: str | None = None
    # What to show as the action where the four words say too little: an Ingress controller's hop
    # "route to svc/shop/api:9090", "answer 404 (not found)"; ``action`` still decides ``passes``.
    shown_action: str | None = None

    @property
    def passes(self) -> bool:
        return self.action in ("accept", "forward")

    @property
    def shown(self) -> str:
        return self.shown_action or self.action

    def __str__(self) -> str:
        return self.reason

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "object": self.object, "rule": self.rule, "action": self.shown}


VerdictState = Literal["allowed", "partial", "denied"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a new session ``source -> destination:port/protocol`` opens, and the hops that decided.

    ``partial`` is for Services and SLBs (DESIGN.md: some backends reachable, not all); a plain
    endpoint is never partial. ``backends`` are the verdicts of each path through a Service, to one
    endpoint (through one node, for a NodePort), the hops of which are summarised in ``hops``.
    """

    source: str
    destination: str
    port: int
    protocol: Protocol
    allowed: bool
    hops: tuple[Hop, ...]
    partial: bool = False
    backends: tuple[Verdict, ...] = ()

    @property
    def reasons(self) -> list[str]:
        return [hop.reason for hop in self.hops]

    @property
    def state(self) -> VerdictState:
        """``allowed``, ``partial`` or ``denied``: the three answers DESIGN.md gives for a pair."""
        return "partial" if self.partial else "allowed" if self.allowed else "denied"

    def to_json(self) -> dict[str, Any]:
        """The verdict as DESIGN.md's ``check``/``probe`` JSON prints it."""
        out: dict[str, Any] = {
            "from": self.source,
            "to": self.destination,
            "port": self.port,
            "protocol": self.protocol,
            "allowed": self.allowed,
        }
        if self.partial:
            out["partial"] = True
        out["reasons"] = self.reasons
        return out


def check(
    plan: Plan,
    sources: Iterable[Endpoint],
    destinations: Iterable[Destination],
    ports: Sequence[PortSpec] | None = None,
) -> list[Verdict]:
    """A verdict for every source, destination and port, in that order.

    Without ``ports`` each destination's declared ports are used (container ports, ECS ports, Service
    ports); a destination that declares none gets no verdict then. A pair of an endpoint with itself
    is left out.
    """
    return Reachability(plan).check(sources, destinations, ports)


class Reachability:
    """The path logic over one Plan, with the caches that make all-pairs checks cheap.

    Public so that later layers (Services, SLB, trace) reuse ``path`` towards a chosen backend.
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.groups: Mapping[str, SecurityGroup] = plan.resources.security_groups
        self.members = group_members(plan.instances)
        self._routes: dict[str, list[RouteEntry]] = {}
        for entry in plan.routes:
            self._routes.setdefault(entry.vpc, []).append(entry)
        self._flannel_backend = {
            name: c.spec.flannel_backend
            for name, c in plan.resources.clusters.items()
            if c.spec.network_plugin == "flannel"
        }
        self._sg: dict[tuple[tuple[str, ...], str, IPv4Address, str, int], SGDecision] = {}
        self._sg_hops: dict[tuple[str, str, IPv4Address, str, int], Hop] = {}
        self._vpc_hops: dict[tuple[str, str], Hop] = {}
        self._local_hops: dict[tuple[str, str, str], Hop] = {}
        self._listen_hops: dict[tuple[str, int, str], Hop] = {}
        self._policies: dict[str, PolicyModel] = {}
        self._policy_hops: dict[tuple[str, PolicyDecision], Hop] = {}
        self._node_ip = {i.name: i.primary_ip for i in plan.instances}
        self._nodes = {i.name: i.cluster for i in plan.instances if i.cluster is not None}

    def check(
        self,
        sources: Iterable[Endpoint],
        destinations: Iterable[Destination],
        ports: Sequence[PortSpec] | None = None,
    ) -> list[Verdict]:
        return list(self.verdicts(sources, destinations, ports))

    def verdicts(
        self,
        sources: Iterable[Endpoint],
        destinations: Iterable[Destination],
        ports: Sequence[PortSpec] | None = None,
    ) -> Iterator[Verdict]:
        """``check``, one verdict at a time: what ``check -o json`` streams at scale."""
        dsts = list(destinations)
        for src in sources:
            for dst in dsts:
                if isinstance(dst, ServiceEndpoint):
                    for port, protocol in ports if ports is not None else dst.declared_ports:
                        yield self.service_verdict(src, dst, port, protocol)
                    continue
                if isinstance(dst, SlbEndpoint):
                    for port, protocol in ports if ports is not None else dst.declared_ports:
                        yield self.slb_verdict(src, dst, port, protocol)
                    continue
                if isinstance(dst, IngressEndpoint):
                    for port, protocol in ports if ports is not None else dst.declared_ports:
                        yield self.ingress_verdict(src, dst, port, protocol)
                    continue
                if src.name == dst.name:
                    continue
                for port, protocol in ports if ports is not None else dst.ports:
                    yield self.verdict(src, dst, port, protocol)

    def verdict(self, src: Endpoint, dst: Endpoint, port: int, protocol: Protocol) -> Verdict:
        hops = self.path(src, dst, port, protocol)
        if hops[-1].passes:
            hops.append(self.listen_hop(dst, port, protocol))
        return Verdict(src.name, dst.name, port, protocol, hops[-1].passes, tuple(hops))

    def slb_verdict(self, src: Endpoint, slb: SlbEndpoint, port: int, protocol: Protocol) -> Verdict:
        """``src`` to an SLB's listener ``port/protocol``, through every backend server (analysis/slb.py)."""
        from acknet.analysis.slb import slb_verdict

        return slb_verdict(self, src, slb, port, protocol)

    def ingress_verdict(self, src: Endpoint, ing: IngressEndpoint, port: int, protocol: Protocol) -> Verdict:
        """``src`` to an Ingress's requests on ``port``: the SLB, the controller, the rule, each backend
        (analysis/ingress_reach.py)."""
        from acknet.analysis.ingress_reach import ingress_verdict

        return ingress_verdict(self, src, ing, port, protocol)

    # -- Services -------------------------------------------------------------------------------------

    def service_verdict(self, src: Endpoint, svc: ServiceEndpoint, port: int, protocol: Protocol) -> Verdict:
        """``src`` to ``svc``'s port ``port/protocol`` (a Service port), judged through every backend."""
        service = svc.service
        target = svc.port(port, protocol)
        where = f"{port}/{protocol}"
        paths: list[Verdict] = []
        if service.headless:
            head = Hop(
                svc.name,
                "Service",
                "forward",
                f"{svc.name} is headless (clusterIP: None): no virtual address and no kube-proxy; its DNS "
                "name resolves to the ready endpoints' addresses, each judged directly",
            )
            if target is None:
                return self._service_refused(src, svc, port, protocol, head, f"has no port {where}")
            if not target.usable():
                why = "has no ready endpoint: the name resolves to no address"
                return self._service_refused(src, svc, port, protocol, head, why)
            paths = [self._backend_verdict(src, svc, port, protocol, b) for b in target.usable()]
        elif src.cluster == service.cluster:
            head, paths = self._cluster_ip(src, svc, port, protocol, target)
        else:
            head, paths = self._node_ports(src, svc, port, protocol, target)
        if not paths:
            return Verdict(src.name, svc.name, port, protocol, False, (head,))
        ok = [p.allowed for p in paths]
        summary = tuple(_summary(p) for p in paths)
        return Verdict(
            src.name,
            svc.name,
            port,
            protocol,
            all(ok),
            (head, *summary),
            partial=any(ok) and not all(ok),
            backends=tuple(paths),
        )

    def _service_refused(
        self, src: Endpoint, svc: ServiceEndpoint, port: int, protocol: Protocol, head: Hop, why: str
    ) -> Verdict:
        hop = Hop(head.at, head.object, "drop", f"{head.reason}; but it {why}")
        return Verdict(src.name, svc.name, port, protocol, False, (hop,))

    def _cluster_ip(
        self,
        src: Endpoint,
        svc: ServiceEndpoint,
        port: int,
        protocol: Protocol,
        target: ServicePortTarget | None,
    ) -> tuple[Hop, list[Verdict]]:
        """A pod or node of the Service's cluster: the ClusterIP, translated by kube-proxy on its node."""
        service = svc.service
        node = f"ecs/{src.instance}"
        at = f"kube-proxy on {node}"
        address = f"ClusterIP {service.cluster_ip}:{port}/{protocol} of {svc.name}"
        if target is None:
            # cluster-ips-check: "Reject traffic to invalid ports of ClusterIPs".
            return Hop(
                at, "kube-proxy", "reject", f"{address}: the Service has no such port, {at} rejects"
            ), []
        backends = target.usable()
        if not backends:
            return (
                Hop(
                    at,
                    "kube-proxy",
                    "reject",
                    f"{address}: no ready endpoint, {at} rejects it (TCP reset, ICMP port unreachable)",
                ),
                [],
            )
        if service.internal_traffic_policy == "Local":
            backends = tuple(b for b in backends if b.node == src.instance)
            if not backends:
                return (
                    Hop(
                        at,
                        "kube-proxy",
                        "drop",
                        f"{address}: internalTrafficPolicy Local and no ready endpoint on {node}: {at} drops",
                    ),
                    [],
                )
        via = (
            f" (over veth1 from the exclusive ENI of {src.name}; Terway's terway-masq SNATs what leaves the node)"
            if src.datapath == "terway-exclusive"
            else ""
        )
        head = Hop(
            at,
            "kube-proxy",
            "forward",
            f"{address}: {at}{via} DNATs to one of {len(backends)} ready endpoint(s) at random "
            f"(targetPort {target.port.target_port})",
            rule=f"{service.cluster_ip}:{port}/{protocol}",
        )
        return head, [self._backend_verdict(src, svc, port, protocol, b) for b in backends]

    def _backend_verdict(
        self, src: Endpoint, svc: ServiceEndpoint, port: int, protocol: Protocol, backend: Backend
    ) -> Verdict:
        """From ``src`` (in the cluster, or any client of a headless name) to one endpoint, after DNAT."""
        dst = backend.endpoint
        label = f"{svc.name} -> {backend}"
        if dst is None:
            hop = Hop(
                str(backend.ip), "VPC", "drop", f"{backend.ip} is no pod or instance address in the plan"
            )
            return Verdict(src.name, label, port, protocol, False, (hop,))
        if dst.name == src.name and not svc.service.headless:
            # kube-proxy sends a pod's own packet back to it (masqueraded); on Flannel that means out of
            # the cni0 port it came in on, which the bridge allows only in hairpin mode.
            hops = self.path(src, dst, backend.port, protocol)
            how = (
                "cni0 sends it back out of the port it came in on: hairpin mode, which flannel's CNI "
                "configuration (hairpinMode: true) turns on for every pod"
                if src.datapath == "flannel"
                else "the node routes it back to the pod's own veth"
            )
            hops.insert(0, Hop(f"ecs/{src.instance}", "hairpin", "forward", f"hairpin to itself: {how}"))
        elif svc.service.headless or src.datapath != "terway-exclusive":
            # Off the node, kube-proxy masquerades a node's own traffic (its address is not a pod's).
            hops = self.path(src, dst, backend.port, protocol, masqueraded=src.on_host_stack)
        else:
            hops = self._exclusive_to_service(src, svc, dst, backend, protocol)
        if hops[-1].passes:
            hops.append(self.listen_hop(dst, backend.port, protocol))
        return Verdict(src.name, label, port, protocol, hops[-1].passes, tuple(hops))

    def _exclusive_to_service(
        self, src: Endpoint, svc: ServiceEndpoint, dst: Endpoint, backend: Backend, protocol: Protocol
    ) -> list[Hop]:
        """An exclusive-ENI pod sends Service traffic over veth1 to its node (exclusive_eni_linux.go);
        the node's kube-proxy translates it and Terway's ``terway-masq`` chain SNATs what leaves the
        node (alibaba.md 1.6), so the endpoint sees the node and replies to it."""
        node = next((n for n in svc.nodes if n.instance == src.instance), None)
        hops = [self._policy_hop("egress", src, dst, protocol, backend.port)]
        if node is None or not hops[-1].passes:
            return hops
        hops.append(
            Hop(
                f"{src.name} veth1",
                "pod routing",
                "forward",
                f"{src.name}: the service CIDR is routed over veth1 to ecs/{src.instance}, "
                "which masquerades it (terway-masq)",
            )
        )
        if dst.instance == src.instance:
            hops.append(self._local_hop(node, dst))
            if dst.kind == "pod":
                hops.append(self._policy_hop("ingress", dst, src, protocol, backend.port))
            return hops
        hops.extend(self.path(node, dst, backend.port, protocol, masqueraded=True))
        return hops

    def _node_ports(
        self,
        src: Endpoint,
        svc: ServiceEndpoint,
        port: int,
        protocol: Protocol,
        target: ServicePortTarget | None,
    ) -> tuple[Hop, list[Verdict]]:
        """A client outside the cluster: only a NodePort on a node's primary IP leads to the Service."""
        service = svc.service
        node_port = target.port.node_port if target is not None else None
        if node_port is None or service.type not in ("NodePort", "LoadBalancer") or not svc.nodes:
            why = (
                "the Service has no NodePort"
                if target is not None
                else f"the Service has no port {port}/{protocol}"
            )
            return (
                Hop(
                    f"VPC {src.vpc}",
                    "VPC route table",
                    "drop",
                    f"ClusterIP {service.cluster_ip} of {svc.name} is reachable only from the nodes and pods "
                    f"of cluster {service.cluster} (the VPC has no route to the service CIDR); "
                    f"{src.name} is outside it and {why}",
                ),
                [],
            )
        assert target is not None
        head = Hop(
            svc.name,
            "Service",
            "forward",
            f"{src.name} is outside cluster {service.cluster}: {svc.name} port {port}/{protocol} through "
            f"NodePort {node_port} on each node's primary IP (externalTrafficPolicy "
            f"{service.external_traffic_policy})",
            rule=f"nodePort {node_port}",
        )
        backends = target.usable()
        paths: list[Verdict] = []
        for node in svc.nodes:
            paths.extend(self._through_node(src, svc, port, protocol, node, node_port, backends))
        return head, paths

    def _through_node(
        self,
        src: Endpoint,
        svc: ServiceEndpoint,
        port: int,
        protocol: Protocol,
        node: Endpoint,
        node_port: int,
        backends: Sequence[Backend],
    ) -> list[Verdict]:
        via = f"{svc.name} via {node.name}:{node_port}"
        # The groups judge the nodePort at the node's ENI, before kube-proxy translates it.
        front = self.path(src, node, node_port, protocol)
        if not front[-1].passes:
            return [Verdict(src.name, via, port, protocol, False, tuple(front))]
        return self.node_port_backends(src, svc, port, protocol, node, node_port, backends, front, via)

    def node_port_backends(
        self,
        src: Endpoint,
        svc: ServiceEndpoint,
        port: int,
        protocol: Protocol,
        node: Endpoint,
        node_port: int,
        backends: Sequence[Backend],
        front: Sequence[Hop],
        via: str,
    ) -> list[Verdict]:
        """kube-proxy on ``node`` takes a connection from ``src``'s address that ``front`` brought to
        its NodePort: one path per endpoint it may pick (also an SLB's backend server, analysis/slb.py)."""
        service = svc.service
        at = f"kube-proxy on {node.name}"
        local = service.external_traffic_policy == "Local"
        if not backends:
            hop = Hop(at, "kube-proxy", "reject", f"NodePort {node_port}: no ready endpoint, {at} rejects it")
            return [Verdict(src.name, via, port, protocol, False, (*front, hop))]
        chosen = [b for b in backends if b.node == node.instance] if local else list(backends)
        if not chosen:
            hop = Hop(
                at,
                "kube-proxy",
                "drop",
                f"NodePort {node_port}: externalTrafficPolicy Local and no ready endpoint on {node.name}: {at} drops",
            )
            return [Verdict(src.name, via, port, protocol, False, (*front, hop))]
        nat = (
            "keeps the client address (externalTrafficPolicy Local)"
            if local
            else "masquerades to the node (externalTrafficPolicy Cluster)"
        )
        out = []
        for backend in chosen:
            dnat = Hop(
                at,
                "kube-proxy",
                "forward",
                f"NodePort {node_port}: {at} DNATs to {backend} and {nat}",
                rule=f"{node.ip}:{node_port}/{protocol}",
            )
            hops = [*front, dnat]
            dst = backend.endpoint
            if dst is None:
                hops.append(
                    Hop(str(backend.ip), "VPC", "drop", f"{backend.ip} is no pod or instance address")
                )
            elif dst.instance == node.instance:
                # A local endpoint: the filter hooks see the client's address (SNAT comes at postrouting).
                hops.append(self._local_hop(node, dst))
                if dst.kind == "pod":
                    hops.append(self._policy_hop("ingress", dst, src, protocol, backend.port))
            else:
                hops.extend(self.path(node, dst, backend.port, protocol, masqueraded=True))
            if hops[-1].passes and dst is not None:
                hops.append(self.listen_hop(dst, backend.port, protocol))
            out.append(Verdict(src.name, f"{via} -> {backend}", port, protocol, hops[-1].passes, tuple(hops)))
        return out

    def path(
        self, src: Endpoint, dst: Endpoint, port: int, protocol: str, *, masqueraded: bool = False
    ) -> list[Hop]:
        """The hops from ``src`` to ``dst``'s address up to the first that stops the packet.

        A pod's egress policy is met first, on its ``cali`` veth before any routing; the destination
        pod's ingress policy last, on its veth after the security groups (policy.py). ``masqueraded``:
        kube-proxy SNATs the packet to ``src`` (a node) on its way out, which changes where a Flannel
        vxlan reply goes (to the node's flannel.1 address, through the tunnel).
        """
        hops: list[Hop] = []
        if src.kind == "pod":
            hops.append(self._policy_hop("egress", src, dst, protocol, port))
            if not hops[-1].passes:
                return hops
        hops.extend(self._network_path(src, dst, port, protocol, masqueraded=masqueraded))
        if hops[-1].passes and dst.kind == "pod":
            hops.append(self._policy_hop("ingress", dst, src, protocol, port))
        return hops

    def _network_path(
        self, src: Endpoint, dst: Endpoint, port: int, protocol: str, *, masqueraded: bool = False
    ) -> list[Hop]:
        """Routing and security groups between the two addresses."""
        if src.kind == "internet" or dst.kind == "internet":
            from acknet.analysis.slb import internet_hop

            return [internet_hop(src, dst)]
        if src.vpc != dst.vpc:
            return [
                Hop(
                    f"VPC {src.vpc}",
                    "VPC route table",
                    "drop",
                    f"no route: different VPCs ({src.name} is in {src.vpc}, {dst.name} in {dst.vpc})",
                )
            ]
        if src.instance == dst.instance and _stays_in_instance(src, dst):
            return [self._local_hop(src, dst)]
        if self._vxlan(dst) and self._nodes.get(src.instance) == dst.cluster:
            # A node of the cluster (or one of its pods) reaches another node's pod through flannel.1.
            reply = src.datapath == "flannel" or masqueraded
            return self._tunnel(src.instance, dst.instance, dst, reply_too=reply)
        hops = [self._sg_hop("egress", src.eni, dst.ip, protocol, port)]
        if not hops[-1].passes:
            return hops
        hops.append(self._vpc_hop(dst))
        if not hops[-1].passes:
            return hops
        hops.append(self._sg_hop("ingress", dst.eni, src.ip, protocol, port))
        if hops[-1].passes and self._vxlan(src):
            hops.extend(self._vxlan_reply(src, dst))
        return hops

    # -- Flannel vxlan --------------------------------------------------------------------------------

    def _vxlan(self, endpoint: Endpoint) -> bool:
        return endpoint.datapath == "flannel" and self._flannel_backend.get(endpoint.cluster or "") == "vxlan"

    def _tunnel(self, node: str, peer: str, dst: Endpoint, *, reply_too: bool) -> list[Hop]:
        """flannel.1 on ``node`` to ``peer`` (the node of ``dst``'s PodCIDR) and, when the reply is
        tunnelled too, back: the groups of both primary ENIs judge node-to-node UDP 8472."""
        local, remote = self._node_ip[node], self._node_ip[peer]
        at = f"ecs/{node} flannel.1"
        hops = [
            Hop(
                at,
                "flannel vxlan",
                "forward",
                f"{at}: VXLAN to {dst.ip}'s node ecs/{peer}, UDP {FLANNEL_VXLAN_PORT} {local} -> {remote} "
                "(the VPC sees only the node addresses)",
                rule=f"{remote}:{FLANNEL_VXLAN_PORT}/UDP",
            )
        ]
        hops.extend(self._udp_8472(node, peer, dst, ""))
        if reply_too and hops[-1].passes:
            hops.extend(self._udp_8472(peer, node, dst, "reply tunnelled back: "))
        return hops

    def _udp_8472(self, node: str, peer: str, dst: Endpoint, prefix: str) -> list[Hop]:
        """Egress at ``node``'s primary ENI, the VPC, ingress at ``peer``'s, for VXLAN between them."""
        src_eni, dst_eni = self._primary_eni(node, dst), self._primary_eni(peer, dst)
        local, remote = self._node_ip[node], self._node_ip[peer]
        hops: list[Hop] = []
        for hop in (
            self._sg_hop("egress", src_eni, remote, "udp", FLANNEL_VXLAN_PORT),
            self._sg_hop("ingress", dst_eni, local, "udp", FLANNEL_VXLAN_PORT),
        ):
            hops.append(Hop(hop.at, hop.object, hop.action, f"{prefix}{hop.reason}", hop.rule))
            if not hop.passes:
                break
        return hops

    def _primary_eni(self, node: str, near: Endpoint) -> EniRef:
        # Every node of a Flannel cluster talks through its primary ENI (eth0); Endpoints carry it.
        for inst in self.plan.instances:
            if inst.name == node:
                eni = next(e for e in inst.enis if e.index == 0)
                return EniRef(eni.id, node, f"ecs/{node}", "eth0", eni.vswitch, near.vpc, eni.security_groups)
        raise KeyError(node)

    def _vxlan_reply(self, src: Endpoint, dst: Endpoint) -> list[Hop]:
        """A vxlan pod's packet left natively (to an instance address); the reply to the pod's address
        comes back through a node's flannel.1, or finds no route at all."""
        if self._nodes.get(dst.instance) == src.cluster and dst.on_host_stack:
            return self._udp_8472(dst.instance, src.instance, src, "reply tunnelled back: ")
        at = f"VPC {dst.vpc}"
        return [
            Hop(
                at,
                "VPC route table",
                "drop",
                f"reply lost: {at} has no route back to the pod address {src.ip} (the Flannel vxlan "
                "backend writes no route entry; only the cluster's nodes reach pods, through flannel.1)",
            )
        ]

    def policy_model(self, cluster: str) -> PolicyModel:
        """The network policy of ``cluster``, built on first use and kept."""
        model = self._policies.get(cluster)
        if model is None:
            model = self._policies[cluster] = PolicyModel.of(self.plan, cluster)
        return model

    def _policy_hop(
        self, direction: Literal["ingress", "egress"], pod: Endpoint, peer: Endpoint, protocol: str, port: int
    ) -> Hop:
        """NetworkPolicy at ``pod``'s veth: egress towards ``peer`` or ingress from it."""
        model = self.policy_model(pod.cluster or "")
        if direction == "egress":
            decision = model.egress(pod, peer, protocol, port)
        else:
            decision = model.ingress(pod, peer, protocol, port)
        # Decisions repeat across a class of pairs; their hops are kept per (pod, decision).
        key = (pod.name, decision)
        hop = self._policy_hops.get(key)
        if hop is None:
            hop = Hop(
                f"{pod.name} cali veth on ecs/{pod.instance}",
                decision.policy or "network policy",
                "accept" if decision.allowed else "drop",
                f"{direction} policy: {decision.reason}",
                decision.rule,
            )
            self._policy_hops[key] = hop
        return hop

    # -- hops ---------------------------------------------------------------------------------------

    def _sg_decision(
        self,
        direction: Literal["ingress", "egress"],
        eni: EniRef,
        peer: IPv4Address,
        protocol: str,
        port: int,
    ) -> SGDecision:
        # Keyed by the groups, not the ENI: every node ENI of a cluster carries the same groups.
        key = (eni.security_groups, direction, peer, protocol, port)
        decision = self._sg.get(key)
        if decision is None:
            decision = evaluate_direction(
                direction, eni.security_groups, peer, protocol, port, self.groups, self.members
            )
            self._sg[key] = decision
        return decision

    def _sg_hop(
        self,
        direction: Literal["ingress", "egress"],
        eni: EniRef,
        peer: IPv4Address,
        protocol: str,
        port: int,
    ) -> Hop:
        key = (eni.id, direction, peer, protocol, port)
        hop = self._sg_hops.get(key)
        if hop is None:
            d = self._sg_decision(direction, eni, peer, protocol, port)
            where = str(eni)
            rule: str | None = d.implicit
            if d.rule is not None:
                obj, rule = f"security group {d.rule.group}", f"{d.rule.direction} rule {d.rule.index + 1}"
            elif d.group is not None:  # intra-group access of one basic group
                obj = f"security group {d.group}"
            else:
                obj = "security groups " + (", ".join(eni.security_groups) or "(none)")
            hop = Hop(where, obj, d.action, f"{direction} at {where}: {d.reason}", rule)
            self._sg_hops[key] = hop
        return hop

    def _vpc_hop(self, dst: Endpoint) -> Hop:
        """How the VPC delivers to ``dst``: natively to an ENI address, or by a route entry (Flannel)."""
        key = (dst.name, dst.vpc)
        hop = self._vpc_hops.get(key)
        if hop is not None:
            return hop
        at = f"VPC {dst.vpc}"
        if dst.datapath != "flannel":
            # Terway pod addresses and instance addresses are private IPs of ENIs: the VPC delivers
            # them itself, no overlay and no custom route entry (reference/alibaba.md 1.5).
            hop = Hop(
                at,
                "VPC",
                "forward",
                f"{at}: {dst.ip} is a private IP of {dst.eni.id} ({dst.eni}), delivered without encapsulation",
            )
        else:
            entry = self._route(dst.vpc, dst.ip)
            if entry is not None and entry.next_hop == dst.instance:
                hop = Hop(
                    at,
                    "VPC route table",
                    "forward",
                    f"{at} route entry {entry.destination} -> {entry.next_hop} (Flannel PodCIDR), "
                    "no encapsulation",
                    rule=str(entry.destination),
                )
            elif entry is not None:
                hop = Hop(
                    at,
                    "VPC route table",
                    "drop",
                    f"no route: {at} sends {dst.ip} to {entry.next_hop} ({entry.destination}), "
                    f"not to {dst.instance}",
                    rule=str(entry.destination),
                )
            else:
                backend = self._flannel_backend.get(dst.cluster or "", "vpc")
                note = (
                    " (the Flannel vxlan backend writes none: only the cluster's nodes reach pods, "
                    "through flannel.1)"
                    if backend == "vxlan"
                    else ""
                )
                hop = Hop(
                    at, "VPC route table", "drop", f"no route: {at} has no route entry for {dst.ip}{note}"
                )
        self._vpc_hops[key] = hop
        return hop

    def _route(self, vpc: str, ip: IPv4Address) -> RouteEntry | None:
        best: RouteEntry | None = None
        for entry in self._routes.get(vpc, ()):
            if ip in entry.destination and (
                best is None or entry.destination.prefixlen > best.destination.prefixlen
            ):
                best = entry
        return best

    def _local_hop(self, src: Endpoint, dst: Endpoint) -> Hop:
        key = (src.instance, src.datapath, dst.datapath)
        hop = self._local_hops.get(key)
        if hop is None:
            kinds = {src.datapath, dst.datapath}
            node = f"ecs/{src.instance}"
            if "terway-exclusive" in kinds:
                # exclusive_eni_linux.go: hostIP/32 via veth1 in the pod, podIP/32 on the host's peer.
                how = "the exclusive-ENI pod reaches its node over veth1"
            elif "flannel" in kinds:
                how = "bridged on cni0"
            elif kinds <= {"ecs", "host-network"}:
                how = "both in the instance's own namespace"
            else:
                # policy_router_linux.go: ip rule 512 "to pod -> main" keeps it off the ENIs.
                how = "routed inside the node (Terway veth policy routing)"
            hop = Hop(
                node,
                "node routing",
                "forward",
                f"same node {node}: {how}, never reaches a security group",
            )
            self._local_hops[key] = hop
        return hop

    def listen_hop(self, dst: Endpoint, port: int, protocol: str) -> Hop:
        key = (dst.name, port, protocol)
        hop = self._listen_hops.get(key)
        if hop is None:
            where = f"{port}/{protocol}"
            if dst.listens(port, protocol):
                hop = Hop(dst.name, "listener", "accept", f"{where} listens at {dst.name}", rule=where)
            elif dst.runs_command:
                # A user's command may listen on ports it never declared (Kubernetes does not require
                # containerPorts); only the built-in server's sockets are known from the files.
                hop = Hop(
                    dst.name,
                    "listener",
                    "accept",
                    f"{where} is not declared at {dst.name}, which runs its own command: assumed to listen",
                    rule=where,
                )
            else:
                # Linux answers a SYN to a closed port with RST, a UDP datagram with ICMP port unreachable.
                hop = Hop(
                    dst.name, "listener", "reject", f"nothing listens on {where} at {dst.name}", rule=where
                )
            self._listen_hops[key] = hop
        return hop


def _summary(path: Verdict) -> Hop:
    """One line for one path through a Service: where it leads and the hop that decided it."""
    hops = path.hops
    if path.allowed:
        deciding = [h for h in hops if h.object != "listener"]
        last = deciding[-1] if deciding else hops[-1]
        hairpin = "".join(f"; {h.reason}" for h in hops if h.object == "hairpin")
        return Hop(
            path.destination,
            "Service backend",
            "accept",
            f"{path.destination}: reached ({last.reason}){hairpin}",
            last.rule,
        )
    last = hops[-1]
    return Hop(
        path.destination, "Service backend", last.action, f"{path.destination}: {last.reason}", last.rule
    )


def _stays_in_instance(src: Endpoint, dst: Endpoint) -> bool:
    """Whether two endpoints on one instance talk without leaving it.

    An exclusive-ENI pod is wired to its node only through veth1 for the node's own addresses; to
    every other pod it goes out of its ENI, and shared pods reach it through their ENI too (their
    ``from pod`` rule sends everything not to a shared pod to the ENI's table).
    """
    if src.datapath == "terway-exclusive":
        return dst.on_host_stack
    if dst.datapath == "terway-exclusive":
        return src.on_host_stack
    return True
