"""Hop-by-hop traces for ``acknet trace``, and what would change a drop (AWS's "blocked paths").

A trace is one verdict of ``reachability`` (its hops name where, what decided, the rule and the
action) together with its branches: a Service is judged through every path kube-proxy can take
(each backend, each node for a NodePort), and each path is a branch with its own hops. Nothing here
follows packets itself; that stays in ``reachability.py``, so ``check`` and ``trace`` cannot drift.

For a branch that does not pass, ``suggest`` names the one change that makes its blocking hop pass,
in the spirit of "Debugging Network Reachability with Blocked Paths" (CAV 2021, reference/peers.md
3.2): the security group rule to add (with a priority that wins over the rule that dropped, checked
by evaluating the group again with the rule added), the NetworkPolicy that would allow the peer,
the container port to declare, the Service setting to change. Only the first blocking hop is
explained: a later hop may block too once it is fixed, which the next trace shows.

Where a hop was decided is found again from the public pieces (``evaluate_direction``,
``Reachability.policy_model``): each candidate leg of the path (source to destination, client to
node port, node to backend, node to node for Flannel's VXLAN) is judged again, and the leg that gives
the hop's own sentence is the one it came from. Pure: reads the Plan, never the kernel.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any, Literal, TypeVar

from acknet.analysis.endpoints import (
    Destination,
    Endpoint,
    EndpointIndex,
    IngressEndpoint,
    ServiceEndpoint,
    SlbEndpoint,
    resolve,
    resolve_destinations,
)
from acknet.analysis.ingress import IngressRequest, find_server, request_host
from acknet.analysis.ingress_reach import ingress_paths, verdict_of
from acknet.analysis.policy import PolicyDecision
from acknet.analysis.reachability import (
    FLANNEL_VXLAN_PORT,
    Hop,
    PortSpec,
    Reachability,
    Verdict,
    parse_port,
)
from acknet.analysis.security_group import (
    HEALTH_CHECK_SOURCE,
    SGDecision,
    evaluate_direction,
    group_members,
)
from acknet.analysis.slb import slb_fix, slb_legs
from acknet.controllers.ingress import DEFAULT_SERVER
from acknet.controllers.state import Plan, PlannedPod, Protocol
from acknet.errors import AcknetError, NotFound
from acknet.model.cloud import SecurityGroup, SecurityGroupRule
from acknet.model.k8s import NetworkPolicy

Direction = Literal["ingress", "egress"]
_D = TypeVar("_D", bound=Endpoint | ServiceEndpoint | SlbEndpoint | IngressEndpoint)

# Labels a controller stamps on one generation of pods: a policy that names them would stop
# selecting the pods after the next rollout.
_GENERATION_LABELS = frozenset(
    {"pod-template-hash", "controller-revision-hash", "statefulset.kubernetes.io/pod-name"}
)
_TARGET = re.compile(r"^(?P<name>.+?):(?P<port>\d{1,5}(?:/[A-Za-z]+)?)$")
_URL = re.compile(
    r"^(?P<scheme>https?)://(?P<host>[^/:?#]*)(?::(?P<port>\d{1,5}))?(?P<path>[^#]*)$", re.IGNORECASE
)
_TUNNEL_PREFIX = "reply tunnelled back: "


class AmbiguousEndpoint(AcknetError):
    """SRC or DST of ``trace`` names several endpoints (a selector): a trace follows one packet."""


# -- results --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A change that makes one blocking hop pass.

    ``object`` is what to change (``security group db-sg``, ``namespace shop``, ``Deployment
    shop/web``), ``change`` the sentence for people, ``snippet`` the YAML-ready fragment when there is
    one (a security group rule for ``spec.rules``, a whole NetworkPolicy document).
    """

    at: str
    object: str
    change: str
    snippet: Mapping[str, Any] | None = None
    cluster: str | None = None  # the cluster a suggested NetworkPolicy belongs to
    step: int = 1  # 2 and on: a further blocker, met once the changes of the steps before are made

    @property
    def key(self) -> str:
        """The same change for several backends of a Service is one change."""
        what = repr(sorted(self.snippet.items())) if self.snippet is not None else self.change
        return f"{self.object}|{what}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at": self.at, "object": self.object, "change": self.change}
        if self.snippet is not None:
            out["snippet"] = self.snippet
        out["step"] = self.step
        return out


@dataclass(frozen=True, slots=True)
class Branch:
    """One path of a trace: to a plain destination, or through a Service to one backend (via a node)."""

    destination: str
    allowed: bool
    hops: tuple[Hop, ...]
    suggestion: Suggestion | None = None

    @property
    def blocking(self) -> Hop | None:
        return next((h for h in self.hops if not h.passes), None)


@dataclass(frozen=True, slots=True)
class Trace:
    """``verdict`` as ``check`` gives it, its branches, and what would change each blocked branch."""

    verdict: Verdict
    branches: tuple[Branch, ...]
    head: tuple[Hop, ...] = ()  # a Service's own hops, before it branches (kube-proxy, NodePort)
    # What blocks next once the first suggestions are made, and after those (``Tracer.blocked_path``).
    further: tuple[Suggestion, ...] = ()

    @property
    def word(self) -> Literal["allowed", "dropped"]:
        return "allowed" if self.verdict.allowed else "dropped"

    @property
    def through_service(self) -> bool:
        """Whether the packet branched through a Service's backends (a Service that refused it
        outright has one path, shown like a plain one)."""
        return bool(self.verdict.backends)

    @property
    def suggestions(self) -> list[Suggestion]:
        """The changes that make each blocked branch's first blocking hop pass (step 1)."""
        # Backends of one Service often need the same fix (one policy selects them all): once.
        seen: dict[str, Suggestion] = {}
        for branch in self.branches:
            s = branch.suggestion
            if s is not None and not branch.allowed:
                seen.setdefault(s.key, s)
        return list(seen.values())

    def hops_json(self) -> list[dict[str, Any]]:
        """DESIGN.md's hops (at, object, rule, action), with the sentence; a Service's head hops, then
        each branch's hops marked with the branch they belong to."""
        if not self.through_service:
            return [_hop_json(h) for h in self.verdict.hops]
        out = [_hop_json(h) for h in self.head]
        for branch in self.branches:
            out.extend({**_hop_json(h), "branch": branch.destination} for h in branch.hops)
        return out

    def to_json(self) -> dict[str, Any]:
        v = self.verdict
        out: dict[str, Any] = {
            "verdict": self.word,
            "hops": self.hops_json(),
            "from": v.source,
            "to": v.destination,
            "port": v.port,
            "protocol": v.protocol,
        }
        if v.partial:
            out["partial"] = True
        if self.through_service:
            out["branches"] = [
                {"to": b.destination, "verdict": "allowed" if b.allowed else "dropped"} for b in self.branches
            ]
        out["suggestions"] = [s.to_json() for s in (*self.suggestions, *self.further)]
        return out


def _hop_json(hop: Hop) -> dict[str, Any]:
    return {**hop.to_json(), "reason": hop.reason}


# -- the command's arguments ----------------------------------------------------------------------


def parse_target(text: str) -> tuple[str, PortSpec | None]:
    """``DST[:PORT[/PROTO]]`` -> (DST, port or None). Names and label values never hold ``:``.

    DST may also be a URL, ``http://HOST[:PORT]/PATH`` or ``https://...``: a request through the
    NGINX Ingress controller, on the URL's port (80 for http, 443 for https by default)."""
    url = parse_url(text)
    if url is not None:
        scheme, host, port, path = url
        return f"{scheme}://{host}{'' if port == _DEFAULT_PORT[scheme] else f':{port}'}{path}", (port, "TCP")
    match = _TARGET.match(text.strip())
    if match is None:
        if ":" in text:
            raise ValueError(
                f"{text!r}: expected DST[:PORT[/PROTO]], e.g. shop/web-x:8080 or ecs/db-1:3306/tcp"
            )
        return text.strip(), None
    return match.group("name"), parse_port(match.group("port"))


_DEFAULT_PORT = {"http": 80, "https": 443}


def parse_url(text: str) -> tuple[str, str, int, str] | None:
    """``http(s)://HOST[:PORT]/PATH`` -> (scheme, host, port, path); None for anything that is not a
    URL; ``ValueError`` for a URL acknet cannot send (no host, a port out of range)."""
    stripped = text.strip()
    if not stripped.lower().startswith(("http://", "https://")):
        return None
    match = _URL.match(stripped)
    if match is None or not match.group("host"):
        raise ValueError(
            f"{text!r}: expected a URL like https://shop.example.com/api or http://HOST:PORT/PATH"
        )
    scheme = match.group("scheme").lower()
    port = int(match.group("port") or _DEFAULT_PORT[scheme])
    if not 1 <= port <= 65535:
        raise ValueError(f"{text!r}: port {port} is outside 1-65535")
    path = match.group("path") or "/"
    if not path.startswith("/"):
        path = "/" + path  # "http://host?q" has an empty path
    return scheme, match.group("host").lower(), port, path


def url_endpoint(
    index: EndpointIndex, text: str, scheme: str, host: str, port: int, path: str
) -> IngressEndpoint:
    """A URL as one request to the Ingress controller of the cluster that serves its host: the one
    with a rule for the host (exact, then wildcard), else the one whose nginx-ingress-lb VIP the
    host is, else the first cluster's. (``probe`` sends the same request for ``trace --live``.)"""
    fronts = list(index.ingress_fronts.values())
    if not fronts:
        raise NotFound(f"DST {text}: no cluster runs the NGINX Ingress controller")
    name = request_host(host)
    front = next((f for f in fronts if find_server(f.routes, name).host != DEFAULT_SERVER), None)
    if front is None:
        front = next((f for f in fronts if f.slb is not None and str(f.slb.lb.address) == name), fronts[0])
    request = IngressRequest("https" if scheme == "https" else "http", host, path)
    return dataclasses.replace(front, name=text.strip(), requests=(request,), url=text.strip(), url_port=port)


# -- tracing --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Leg:
    """A stretch of the path between two addresses: what a security group or policy hop judged."""

    src: Endpoint
    dst: Endpoint
    port: int
    protocol: str


@dataclass
class Tracer:
    """Traces over one Plan; ``Reachability`` and the endpoint index are built once."""

    plan: Plan
    reach: Reachability = field(init=False)
    index: EndpointIndex = field(init=False)
    _groups: Mapping[str, SecurityGroup] = field(init=False)
    _members: Mapping[str, frozenset[IPv4Address]] = field(init=False)
    _pods: Mapping[str, PlannedPod] = field(init=False)

    def __post_init__(self) -> None:
        self.reach = Reachability(self.plan)
        self.index = EndpointIndex.of(self.plan)
        self._groups = self.plan.resources.security_groups
        self._members = group_members(self.plan.instances)
        self._pods = {p.key: p for p in self.plan.pods}

    # -- endpoints --------------------------------------------------------------------------------

    def source(self, text: str) -> Endpoint:
        """SRC: a pod or ECS instance name, or a selector that matches exactly one of them."""
        return _one(resolve(self.index, [text], "from"), text, "SRC")

    def destination(self, text: str) -> Destination:
        """DST: as SRC, or a Service (``svc/NS/NAME``), an SLB (``slb/NAME``, ``slb/NS/NAME``), an
        Ingress (``ingress/NS/NAME``) or a URL (one request through the Ingress controller)."""
        url = parse_url(text)
        if url is not None:
            return self._url(text, *url)
        return _one(resolve_destinations(self.index, [text]), text, "DST")

    def _url(self, text: str, scheme: str, host: str, port: int, path: str) -> IngressEndpoint:
        return url_endpoint(self.index, text, scheme, host, port, path)

    @staticmethod
    def ports(dst: Destination, wanted: PortSpec | None) -> list[PortSpec]:
        """The port given, else each port DST declares; raises ``ValueError`` when it declares none."""
        if wanted is not None:
            return [wanted]
        declared = list(dst.ports if isinstance(dst, Endpoint) else dst.declared_ports)
        if not declared:
            raise ValueError(f"{dst.name} declares no port: give one as {dst.name}:PORT[/PROTO]")
        return declared

    # -- traces -----------------------------------------------------------------------------------

    def blocked_path(
        self, src: Endpoint, dst: Destination, port: int, protocol: Protocol, steps: int = 4
    ) -> Trace:
        """The trace, and for a drop every change on the way, not only the first (CAV 2021's blocked
        path): the suggestions that come with a snippet are made on a copy of the plan, the packet is
        traced again, and what blocks then is step 2, and so on, up to ``steps``. It stops where the
        packet passes, where a blocker has no change that can be made for it (a rule to narrow, a
        different VPC), or where nothing new turns up."""
        first = self.trace(src, dst, port, protocol)
        further: list[Suggestion] = []
        seen = {s.key for s in first.suggestions}
        tracer, current = self, first
        for step in range(2, steps + 1):
            fixes = [s for s in current.suggestions if s.snippet is not None]
            if current.verdict.allowed or not fixes:
                break
            tracer = tracer.changed(fixes)
            current = tracer.trace(tracer.source(src.name), tracer.destination(dst.name), port, protocol)
            new = [s for s in current.suggestions if s.key not in seen]
            seen.update(s.key for s in new)
            further.extend(dataclasses.replace(s, step=step) for s in new)
            if not new:
                break
        return dataclasses.replace(first, further=tuple(further))

    def changed(self, fixes: Iterable[Suggestion]) -> Tracer:
        """A tracer over a copy of the plan with ``fixes`` made: rules added to their security
        groups, NetworkPolicies to their clusters. Addresses and names stay as they are."""
        resources = self.plan.resources
        groups = dict(resources.security_groups)
        kube = dict(resources.kube)
        for fix in fixes:
            if fix.snippet is None:
                continue
            if fix.object.startswith("security group "):
                name = fix.object.removeprefix("security group ")
                groups[name] = _with_rule(groups[name], SecurityGroupRule.model_validate(dict(fix.snippet)))
            elif fix.snippet.get("kind") == "NetworkPolicy" and fix.cluster in kube:
                policy = NetworkPolicy.model_validate(dict(fix.snippet))
                objs = kube[fix.cluster]
                key = (policy.metadata.namespace or "default", policy.metadata.name)
                kube[fix.cluster] = dataclasses.replace(
                    objs, network_policies={**objs.network_policies, key: policy}
                )
        changed = dataclasses.replace(resources, security_groups=groups, kube=kube)
        return Tracer(dataclasses.replace(self.plan, resources=changed))

    def trace(self, src: Endpoint, dst: Destination, port: int, protocol: Protocol) -> Trace:
        if isinstance(dst, ServiceEndpoint):
            verdict = self.reach.service_verdict(src, dst, port, protocol)
            paths = verdict.backends
            head = verdict.hops[: len(verdict.hops) - len(paths)] if paths else verdict.hops
            legs = self._service_legs(src, dst, port, protocol)
            branches = [self._branch(p.destination, p.allowed, p.hops, legs, dst) for p in paths]
            if not paths and not verdict.allowed:
                # The Service itself refused (no port, no endpoint, not reachable from there).
                branches = [self._branch(dst.name, False, verdict.hops, legs, dst)]
            return Trace(verdict, tuple(branches), tuple(head))
        if isinstance(dst, SlbEndpoint):
            return self._slb_trace(src, dst, port, protocol)
        if isinstance(dst, IngressEndpoint):
            return self._ingress_trace(src, dst, port, protocol)
        if src.name == dst.name:
            raise ValueError(f"SRC and DST are the same endpoint ({src.name})")
        verdict = self.reach.verdict(src, dst, port, protocol)
        legs = [_Leg(src, dst, port, protocol), *self._tunnel_legs([src, dst])]
        return Trace(verdict, (self._branch(dst.name, verdict.allowed, verdict.hops, legs, None),))

    def _branch(
        self,
        name: str,
        allowed: bool,
        hops: Sequence[Hop],
        legs: Sequence[_Leg],
        svc: ServiceEndpoint | None,
        slb: SlbEndpoint | None = None,
    ) -> Branch:
        blocking = next((h for h in hops if not h.passes), None)
        suggestion = None if allowed or blocking is None else self.suggest(blocking, legs, svc, slb)
        return Branch(name, allowed, tuple(hops), suggestion)

    def _slb_trace(self, src: Endpoint, slb: SlbEndpoint, port: int, protocol: Protocol) -> Trace:
        """Through an SLB: one branch per backend path, each named after its listener, group and backend
        server (and the endpoint kube-proxy picks behind a NodePort)."""
        verdict = self.reach.slb_verdict(src, slb, port, protocol)
        paths = verdict.backends
        head = verdict.hops[: len(verdict.hops) - len(paths)] if paths else verdict.hops
        legs = [_Leg(a, b, p, proto) for a, b, p, proto in slb_legs(src, slb, port, protocol)]
        legs.extend(self._tunnel_legs([leg.dst for leg in legs if leg.dst.kind != "internet"]))
        branches = [self._branch(p.destination, p.allowed, p.hops, legs, None, slb) for p in paths]
        if not paths and not verdict.allowed:
            branches = [self._branch(slb.name, False, verdict.hops, legs, None, slb)]
        return Trace(verdict, tuple(branches), tuple(head))

    def _ingress_trace(self, src: Endpoint, ing: IngressEndpoint, port: int, protocol: Protocol) -> Trace:
        """Through the Ingress controller: one branch per path of each request (its SLB path to a
        controller pod, the Ingress rule, NGINX's connection to one backend pod)."""
        head, paths = ingress_paths(self.reach, src, ing, port, protocol)
        verdict = verdict_of(src, ing, port, protocol, head, paths)
        slb = ing.slb
        legs = [_Leg(a, b, p, proto) for a, b, p, proto in slb_legs(src, slb, port, protocol)] if slb else []
        for p in paths:
            if p.controller is not None and p.backend is not None and p.decision is not None:
                ip_port = next((pp for ip, pp in p.decision.upstreams if ip == p.backend.ip), port)
                legs.append(_Leg(p.controller, p.backend, ip_port, "TCP"))
        legs.extend(self._tunnel_legs([leg.dst for leg in legs if leg.dst.kind != "internet"]))
        branches = [
            self._branch(p.verdict.destination, p.verdict.allowed, p.verdict.hops, legs, None, slb)
            for p in paths
        ]
        if not paths and not verdict.allowed:
            branches = [self._branch(ing.name, False, verdict.hops, legs, None, slb)]
        return Trace(verdict, tuple(branches), tuple(head) if paths else ())

    def _service_legs(self, src: Endpoint, svc: ServiceEndpoint, port: int, protocol: str) -> list[_Leg]:
        target = svc.port(port, protocol)
        legs: list[_Leg] = []
        if target is None:
            return legs
        ends = [b for b in target.backends if b.endpoint is not None]
        own_node = self.index.instances.get(f"ecs/{src.instance}")
        for b in ends:
            assert b.endpoint is not None
            legs.append(_Leg(src, b.endpoint, b.port, protocol))
            if own_node is not None and own_node.name != src.name:
                legs.append(_Leg(own_node, b.endpoint, b.port, protocol))  # masqueraded by the node
        if target.port.node_port is not None:
            for node in svc.nodes:
                legs.append(_Leg(src, node, target.port.node_port, protocol))
                legs.extend(_Leg(node, b.endpoint, b.port, protocol) for b in ends if b.endpoint is not None)
        involved = [src, *svc.nodes, *(b.endpoint for b in ends if b.endpoint is not None)]
        legs.extend(self._tunnel_legs(involved))
        return legs

    def _tunnel_legs(self, involved: Iterable[Endpoint]) -> list[_Leg]:
        """Node to node UDP 8472: where Flannel's vxlan backend carries pod traffic."""
        nodes: dict[str, Endpoint] = {}
        for e in involved:
            node = self.index.instances.get(f"ecs/{e.instance}")
            if node is not None and node.cluster is not None:
                nodes.setdefault(node.name, node)
        return [
            _Leg(a, b, FLANNEL_VXLAN_PORT, "UDP")
            for a in nodes.values()
            for b in nodes.values()
            if a is not b
        ]

    # -- what would change the verdict ------------------------------------------------------------

    def suggest(
        self,
        hop: Hop,
        legs: Sequence[_Leg],
        svc: ServiceEndpoint | None = None,
        slb: SlbEndpoint | None = None,
    ) -> Suggestion:
        """The change that makes ``hop`` (a blocking hop of a path along ``legs``) pass."""
        if slb is not None:
            fix = slb_fix(hop, slb)
            if fix is not None:
                return Suggestion(hop.at, fix[0], fix[1])
        if hop.at.startswith("ingress controller ") or (
            hop.object.startswith("Ingress ") and hop.at.startswith("ingress/")
        ):
            return _ingress(hop)
        if hop.object == "listener":
            return self._listener(hop, svc)
        if hop.object.startswith("security group"):
            found = self._security_group(hop, legs)
            if found is not None:
                return found
        if " policy: " in hop.reason or hop.reason.startswith(("egress policy", "ingress policy")):
            found = self._policy(hop, legs)
            if found is not None:
                return found
        if svc is not None and hop.object in ("kube-proxy", "Service", "VPC route table"):
            found = _service(hop, svc)
            if found is not None:
                return found
        if hop.object in ("VPC route table", "VPC"):
            return _route(hop)
        what = f"{hop.object} {hop.rule}" if hop.rule else hop.object
        return Suggestion(hop.at, hop.object, f"change {what} at {hop.at}: {hop.reason}")

    # security groups

    def _security_group(self, hop: Hop, legs: Sequence[_Leg]) -> Suggestion | None:
        reason = hop.reason.removeprefix(_TUNNEL_PREFIX)
        direction: Direction = "egress" if reason.startswith("egress at ") else "ingress"
        for leg in legs:
            near, peer = (leg.src, leg.dst) if direction == "egress" else (leg.dst, leg.src)
            if str(near.eni) != hop.at:
                continue
            decision = self._sg(direction, near, peer.ip, leg.protocol, leg.port)
            if not decision.allowed and f"{direction} at {hop.at}: {decision.reason}" == reason:
                return self._sg_fix(hop, near, peer.ip, direction, leg.protocol, leg.port, decision)
        return None

    def _sg(
        self, direction: Direction, near: Endpoint, peer: IPv4Address, protocol: str, port: int
    ) -> SGDecision:
        return evaluate_direction(
            direction, near.eni.security_groups, peer, protocol, port, self._groups, self._members
        )

    def _sg_fix(
        self,
        hop: Hop,
        near: Endpoint,
        peer: IPv4Address,
        direction: Direction,
        protocol: str,
        port: int,
        decision: SGDecision,
    ) -> Suggestion:
        groups = [g for g in near.eni.security_groups if g in self._groups]
        ref = decision.rule
        if ref is not None and ref.priority <= 1:
            # Drop wins a tie and 1 is the highest priority: no accept rule can go before it.
            return Suggestion(
                hop.at,
                f"security group {ref.group}",
                f"narrow or remove {ref} in security group {ref.group}: no accept rule can outrank a "
                f"priority-1 drop (drop wins a tie), so it must stop matching {peer} {protocol} {port}",
            )
        group = ref.group if ref is not None else groups[0]
        priority = ref.priority - 1 if ref is not None else 1
        rule = _sg_rule(direction, protocol, port, peer, priority)
        fixed = {**self._groups, group: _with_rule(self._groups[group], rule)}
        after = evaluate_direction(
            direction, near.eni.security_groups, peer, protocol, port, fixed, self._members
        )
        words = _sg_words(direction, protocol, port, peer, priority)
        where = f"{direction} at {near.eni}"
        if not after.allowed:  # cannot happen by the rules above; say so rather than suggest a dud
            return Suggestion(hop.at, f"security group {group}", f"{where}: {decision.reason}")
        outranks = f" (before {ref}, which drops)" if ref is not None else ""
        return Suggestion(
            hop.at,
            f"security group {group}",
            f"add to security group {group}: {words}{outranks}",
            _rule_snippet(rule),
        )

    # network policy

    def _policy(self, hop: Hop, legs: Sequence[_Leg]) -> Suggestion | None:
        direction: Direction = "egress" if hop.reason.startswith("egress policy") else "ingress"
        for leg in legs:
            pod, peer = (leg.src, leg.dst) if direction == "egress" else (leg.dst, leg.src)
            if pod.kind != "pod" or not hop.at.startswith(f"{pod.name} "):
                continue
            model = self.reach.policy_model(pod.cluster or "")
            decision = (
                model.egress(pod, peer, leg.protocol, leg.port)
                if direction == "egress"
                else model.ingress(pod, peer, leg.protocol, leg.port)
            )
            if decision.allowed or f"{direction} policy: {decision.reason}" != hop.reason:
                continue
            return self._policy_fix(
                hop, direction, pod, peer, leg, decision, model.selecting(pod.name, direction)
            )
        return None

    def _policy_fix(
        self,
        hop: Hop,
        direction: Direction,
        pod: Endpoint,
        peer: Endpoint,
        leg: _Leg,
        decision: PolicyDecision,
        selecting: Sequence[str],
    ) -> Suggestion:
        where = f"{leg.port}/{leg.protocol}"
        if decision.rule is not None:
            # A rule decided (a Calico Deny): a Kubernetes policy (order 1000) would come too late.
            return Suggestion(
                hop.at,
                decision.policy or "network policy",
                f"{decision.deciding} denies {direction} {'to' if direction == 'egress' else 'from'} "
                f"{peer.name} on {where}: narrow that rule, or allow {peer.name} in a policy of lower order",
            )
        doc = _network_policy(direction, pod, peer, leg.port, leg.protocol, self._workload(peer))
        objs = self.plan.resources.kube.get(pod.cluster or "")
        taken = set(objs.network_policies) if objs is not None else set()
        base, n = doc["metadata"]["name"], 2
        while (pod.namespace, doc["metadata"]["name"]) in taken:  # never replace a policy of the files
            doc["metadata"]["name"], n = f"{base[:60]}-{n}", n + 1
        listed = ", ".join(selecting) or (decision.policy or "a policy")
        verb = "selects" if len(selecting) == 1 else "select"
        peer_words = f"{peer.name} ({peer.ip})"
        return Suggestion(
            hop.at,
            f"namespace {pod.namespace}",
            f"{listed} {verb} {pod.name} for {direction} and none allows "
            f"{'traffic to' if direction == 'egress' else 'traffic from'} {peer_words} on {where}: "
            f"add NetworkPolicy {pod.namespace}/{doc['metadata']['name']}",
            doc,
            cluster=pod.cluster,
        )

    def _workload(self, endpoint: Endpoint) -> str:
        pod = self._pods.get(endpoint.name)
        if pod is not None and pod.owner is not None:
            return pod.owner.partition("/")[2]
        return endpoint.name.rpartition("/")[2]

    # listeners

    def _listener(self, hop: Hop, svc: ServiceEndpoint | None) -> Suggestion:
        where = hop.rule or ""
        port, _, protocol = where.partition("/")
        endpoint = self.index.pods.get(hop.at) or self.index.instances.get(hop.at)
        declared = ", ".join(f"{p}/{proto}" for p, proto in endpoint.ports) if endpoint else ""
        listens = f"it listens on {declared}" if declared else "it declares no port"
        pod = self._pods.get(hop.at)
        if pod is not None:
            owner = pod.owner or f"Pod/{pod.name}"
            kind, _, name = owner.partition("/")
            what = f"{kind} {pod.namespace}/{name}"
            change = f"declare containerPort {port} (protocol {protocol}) in {what}"
            if kind != "Pod":
                change += "'s pod template"
        elif endpoint is not None and endpoint.cluster is not None:
            what = hop.at
            change = f"run a hostNetwork pod with containerPort {port}/{protocol} on {hop.at}"
        else:
            what = f"ECSInstance {hop.at.removeprefix('ecs/')}"
            change = f"add {{port: {port}, protocol: {protocol}}} to the spec.ports of {what}"
        if svc is not None and declared:
            change += f", or point the targetPort of {svc.name} at a port it declares"
        return Suggestion(hop.at, what, f"nothing listens on {where} at {hop.at} ({listens}): {change}")


# -- helpers --------------------------------------------------------------------------------------


def _one(found: Sequence[_D], text: str, role: str) -> _D:
    if len(found) != 1:
        names = ", ".join(e.name for e in found[:8]) + (" ..." if len(found) > 8 else "")
        raise AmbiguousEndpoint(
            f"{role} {text!r} names {len(found)} endpoints ({names}); a trace follows one packet: "
            "name one (NS/POD, ecs/NAME, svc/NS/NAME) or narrow the selector"
        )
    return found[0]


def _sg_protocol(protocol: str) -> tuple[Literal["tcp", "udp", "all"], str]:
    proto = protocol.lower()
    if proto in ("tcp", "udp"):
        return ("tcp" if proto == "tcp" else "udp"), ""
    return "all", "-1/-1"  # security groups know no SCTP: only "all" matches it


def _sg_rule(
    direction: Direction, protocol: str, port: int, peer: IPv4Address, priority: int
) -> SecurityGroupRule:
    proto, ports = _sg_protocol(protocol)
    cidr = f"{peer}/32"
    return SecurityGroupRule(
        direction=direction,
        policy="accept",
        priority=priority,
        ip_protocol=proto,
        port_range=ports or f"{port}/{port}",
        source_cidr_ip=cidr if direction == "ingress" else None,
        dest_cidr_ip=cidr if direction == "egress" else None,
    )


def _sg_words(direction: Direction, protocol: str, port: int, peer: IPv4Address, priority: int) -> str:
    proto, ports = _sg_protocol(protocol)
    what = f"{proto} {port}" if not ports else "all"
    return f"{direction} accept {what} {'from' if direction == 'ingress' else 'to'} {peer}/32 priority {priority}"


def _rule_snippet(rule: SecurityGroupRule) -> dict[str, Any]:
    """The rule as it is written in a SecurityGroup's ``spec.rules`` (DESIGN.md field names)."""
    out: dict[str, Any] = {
        "direction": rule.direction,
        "policy": rule.policy,
        "priority": rule.priority,
        "ipProtocol": rule.ip_protocol,
        "portRange": rule.port_range,
    }
    if rule.source_cidr_ip is not None:
        out["sourceCidrIp"] = rule.source_cidr_ip
    if rule.dest_cidr_ip is not None:
        out["destCidrIp"] = rule.dest_cidr_ip
    return out


def _with_rule(group: SecurityGroup, rule: SecurityGroupRule) -> SecurityGroup:
    spec = group.spec.model_copy(update={"rules": [*group.spec.rules, rule]})
    return group.model_copy(update={"spec": spec})


def _selector_labels(endpoint: Endpoint) -> dict[str, str]:
    return {k: v for k, v in sorted(endpoint.labels.items()) if k not in _GENERATION_LABELS}


def _dns_label(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def _network_policy(
    direction: Direction, pod: Endpoint, peer: Endpoint, port: int, protocol: str, peer_workload: str
) -> dict[str, Any]:
    """A Kubernetes NetworkPolicy that allows ``peer`` in ``direction`` at ``pod`` on ``port``.

    Kubernetes policies are additive, so one more that allows the peer is enough wherever the drop
    came from the end of the tier (policies select the pod and no rule matched).
    """
    if peer.kind == "pod" and peer.cluster == pod.cluster and peer.datapath != "host-network":
        selector: dict[str, Any] = {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": peer.namespace}},
            "podSelector": {"matchLabels": _selector_labels(peer)},
        }
    elif peer.kind == "internet" and peer.ip in HEALTH_CHECK_SOURCE:
        # A layer-7 SLB's proxy: CLB connects from any address of its system range, not one.
        selector = {"ipBlock": {"cidr": str(HEALTH_CHECK_SOURCE)}}
    else:
        selector = {"ipBlock": {"cidr": f"{peer.ip}/32"}}
    kind = "Ingress" if direction == "ingress" else "Egress"
    name = _dns_label(f"allow-{'from' if direction == 'ingress' else 'to'}-{peer_workload}-{port}")[:63]
    rule = {
        "from" if direction == "ingress" else "to": [selector],
        "ports": [{"protocol": protocol, "port": port}],
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": pod.namespace},
        "spec": {
            "podSelector": {"matchLabels": _selector_labels(pod)},
            "policyTypes": [kind],
            direction: [rule],
        },
    }


def _service(hop: Hop, svc: ServiceEndpoint) -> Suggestion | None:
    service = svc.service
    ports = ", ".join(f"{p}/{proto}" for p, proto in svc.declared_ports) or "none"
    what = f"Service {service.namespace}/{service.name}"
    reason = hop.reason
    if "no such port" in reason or "has no port" in reason:
        change = f"{what} declares the ports {ports}: use one of them, or add the port to its spec.ports"
    elif "internalTrafficPolicy Local" in reason:
        change = (
            f"set internalTrafficPolicy: Cluster on {what}, or run one of its endpoints on the client's node"
        )
    elif "externalTrafficPolicy Local" in reason:
        change = f"set externalTrafficPolicy: Cluster on {what}, or run one of its endpoints on that node"
    elif "no ready endpoint" in reason:
        selector = ",".join(f"{k}={v}" for k, v in (service.selector or {}).items()) or "(none)"
        change = (
            f"{what} has no ready endpoint: its selector {selector} must match a running, ready pod "
            "that declares the targetPort"
        )
    elif "reachable only from the nodes and pods" in reason:
        change = (
            f"make {what} type NodePort (or LoadBalancer) and connect to a node's NodePort: "
            "the VPC does not route the service CIDR"
        )
    else:
        return None
    return Suggestion(hop.at, what, change)


def _ingress(hop: Hop) -> Suggestion:
    """NGINX answered itself (308, 404, 403, 503), or the Ingress is not served: the decision's own
    sentence says what would change it (a rule or host to add, the whitelist, the ready endpoints)."""
    return Suggestion(hop.at, hop.object, hop.reason)


def _route(hop: Hop) -> Suggestion:
    reason = hop.reason
    if "different VPCs" in reason:
        change = "put both in one VPC: acknet has no peering or CEN between VPCs"
    elif "vxlan" in reason:
        change = (
            "only the cluster's nodes reach Flannel vxlan pods: use flannelBackend: vpc (the ACK default), "
            "whose VPC route entries make pod addresses reachable from the whole VPC"
        )
    elif "is no pod or instance address" in reason:
        change = "the EndpointSlice lists an address that nothing in the plan holds: correct or remove it"
    else:
        change = f"add a VPC route entry for the destination: {reason}"
    return Suggestion(hop.at, hop.object, change)
