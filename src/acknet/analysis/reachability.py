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

A ``Verdict`` is a list of ``Hop``s, one per place that decided, so later layers insert theirs where
they happen: Services as a DNAT hop before the path to each backend (policy then sees the backend's
own address and port) with ``partial`` when only some backends are reachable.

Pure and cached: security group decisions are kept per (ENI, peer address, protocol, port), so a
check over every pair of a 500-pod plan evaluates the rules O(pods x ENIs) times, not O(pods²).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any, Literal, cast

from acknet.analysis.endpoints import Endpoint, EniRef
from acknet.analysis.policy import PolicyDecision, PolicyModel
from acknet.analysis.security_group import SGDecision, evaluate_direction, group_members
from acknet.controllers.state import Plan, Protocol, RouteEntry
from acknet.model.cloud import SecurityGroup

HopAction = Literal["accept", "drop", "reject", "forward"]
PortSpec = tuple[int, Protocol]

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

    @property
    def passes(self) -> bool:
        return self.action in ("accept", "forward")

    def __str__(self) -> str:
        return self.reason

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "object": self.object, "rule": self.rule, "action": self.action}


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a new session ``source -> destination:port/protocol`` opens, and the hops that decided.

    ``partial`` is for Services and SLBs (DESIGN.md: some backends reachable, not all); a plain
    endpoint is never partial.
    """

    source: str
    destination: str
    port: int
    protocol: Protocol
    allowed: bool
    hops: tuple[Hop, ...]
    partial: bool = False

    @property
    def reasons(self) -> list[str]:
        return [hop.reason for hop in self.hops]

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
    destinations: Iterable[Endpoint],
    ports: Sequence[PortSpec] | None = None,
) -> list[Verdict]:
    """A verdict for every source, destination and port, in that order.

    Without ``ports`` each destination's declared ports are used (container ports, ECS ports); a
    destination that declares none gets no verdict then. A pair of an endpoint with itself is left out.
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

    def check(
        self,
        sources: Iterable[Endpoint],
        destinations: Iterable[Endpoint],
        ports: Sequence[PortSpec] | None = None,
    ) -> list[Verdict]:
        dsts = list(destinations)
        out: list[Verdict] = []
        for src in sources:
            for dst in dsts:
                if src.name == dst.name:
                    continue
                for port, protocol in ports if ports is not None else dst.ports:
                    out.append(self.verdict(src, dst, port, protocol))
        return out

    def verdict(self, src: Endpoint, dst: Endpoint, port: int, protocol: Protocol) -> Verdict:
        hops = self.path(src, dst, port, protocol)
        if hops[-1].passes:
            hops.append(self.listen_hop(dst, port, protocol))
        return Verdict(src.name, dst.name, port, protocol, hops[-1].passes, tuple(hops))

    def path(self, src: Endpoint, dst: Endpoint, port: int, protocol: str) -> list[Hop]:
        """The hops from ``src`` to ``dst``'s address up to the first that stops the packet.

        A pod's egress policy is met first, on its ``cali`` veth before any routing; the destination
        pod's ingress policy last, on its veth after the security groups (policy.py).
        """
        hops: list[Hop] = []
        if src.kind == "pod":
            hops.append(self._policy_hop("egress", src, dst, protocol, port))
            if not hops[-1].passes:
                return hops
        hops.extend(self._network_path(src, dst, port, protocol))
        if hops[-1].passes and dst.kind == "pod":
            hops.append(self._policy_hop("ingress", dst, src, protocol, port))
        return hops

    def _network_path(self, src: Endpoint, dst: Endpoint, port: int, protocol: str) -> list[Hop]:
        """Routing and security groups between the two addresses."""
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
        hops = [self._sg_hop("egress", src.eni, dst.ip, protocol, port)]
        if not hops[-1].passes:
            return hops
        hops.append(self._vpc_hop(dst))
        if not hops[-1].passes:
            return hops
        hops.append(self._sg_hop("ingress", dst.eni, src.ip, protocol, port))
        return hops

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
                obj, rule = f"security group {d.rule.group}", f"{d.rule.direction} rule {d.rule.index}"
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
                note = " (the Flannel vxlan backend is not modelled)" if backend == "vxlan" else ""
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
