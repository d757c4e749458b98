"""Network policy from the model: which policy and rule let a connection through a pod's ``cali`` veth.

ACK's Terway runs Calico Felix in policy-only mode on shared-ENI pods (reference/alibaba.md 1.6), so
this module evaluates policy exactly as Calico does (reference/k8s.md sections 4 and 5), as an
independent second implementation next to the nftables data plane (it never imports
``acknet.dataplane``; when the two disagree, ``check`` and ``probe`` disagree and one of them has a
bug):

- Kubernetes NetworkPolicies take part as Calico policies of order 1000 in the default tier,
  converted as libcalico-go ``conversion.go`` (``K8sNetworkPolicyToCalico``) does: podSelector ->
  ``projectcalico.org/orchestrator == 'k8s' && ...``, a nil namespaceSelector -> the policy's own
  namespace, ``{}`` -> every namespace, peers x protocols -> Allow rules, ipBlock -> nets/notNets
  (normalised: ``<podIP>/4`` is the /4 network), a port without protocol -> TCP, endPort -> a range.
- Calico NetworkPolicy and GlobalNetworkPolicy rules keep their order and actions; rule selectors are
  combined with namespaces the way ``updateprocessors/rules.go`` (``getEndpointSelector``) does.
- One tier (the default one; acknet has no Tier kind): policies by order (nil last), ties by name.
  The first Allow or Deny decides; Log goes on; Pass leaves the tier and, there being no later tier,
  the namespace profile allows. A pod selected by some policy for a direction and matched by no rule
  is dropped at the end of the tier; a pod no policy selects is open (the profiles allow).
- Peers are identities: a pod of the cluster (its labels plus Calico's implicit
  ``projectcalico.org/namespace``, ``/orchestrator``, ``/serviceaccount`` and the namespace's labels
  as ``pcns.*``), or an address with the NetworkSets and GlobalNetworkSets whose nets hold it. A pod
  address is the pod first: the longest prefix (/32) wins, so a set that also covers pod addresses
  does not lend its labels to those pods.
- Connections are judged on their first packet after Service DNAT (the pod's own address and
  targetPort); replies of an allowed connection are allowed (conntrack), which is why a verdict is
  about new sessions only.

ACK's rules about where policy applies come first: nothing on Flannel clusters, nothing when the
cluster has ``networkPolicy: false``, nothing on exclusive-ENI pods (Terway's ``initPolicy`` runs no
Felix for them), nothing on hostNetwork pods (their traffic is the node's), and a pod's own node
always reaches it (the NetworkPolicy API: "traffic from the pod's local node is allowed"; kubelet
probes).

Speed: selectors are parsed once and interned; each identity carries the set of selector indices and
net lists it matches, computed once per label set; every policy keeps the frozenset of pods it
selects; decisions are cached by the classes of both ends (applicable policies, matched selectors,
matched nets, named ports), so an all-pairs check over 500 pods evaluates few distinct cases. A
policy's selector is matched once per (namespace, label set) and the policies of a pod come from an
index inverted once, so 1,000 policies over 10,000 pods cost a fraction of a second
(``matrix.py`` builds on these identities for all pairs at that size).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network
from typing import Literal, TypeGuard

from acknet.analysis.endpoints import Endpoint
from acknet.controllers.state import Plan, PlannedPod
from acknet.model.calico import (
    CalicoNetworkPolicy,
    EntityRule,
    GlobalNetworkPolicy,
    ICMPFields,
    Rule,
    ServiceAccountMatch,
)
from acknet.model.k8s import NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort
from acknet.model.resources import KubeObjects
from acknet.model.selectors import K8sSelector, parse_calico_selector
from acknet.model.validate import parse_cidr

Direction = Literal["ingress", "egress"]
Peer = Endpoint | IPv4Address

# Calico's implicit workload labels (libcalico-go apiv3 constants) and label prefixes (conversion.go).
LABEL_NAMESPACE = "projectcalico.org/namespace"
LABEL_ORCHESTRATOR = "projectcalico.org/orchestrator"
LABEL_SERVICE_ACCOUNT = "projectcalico.org/serviceaccount"
NAMESPACE_PREFIX = "pcns."
SERVICE_ACCOUNT_PREFIX = "pcsa."
K8S_ORDER = 1000.0  # conversion.go: every Kubernetes NetworkPolicy is order 1000 in the default tier

_PROTOCOL_NUMBERS = {"ICMP": 1, "TCP": 6, "UDP": 17, "ICMPV6": 58, "SCTP": 132, "UDPLITE": 136}
_ICMP = (1, 58)
# A client's source port is one of Linux's ephemeral ports (net.ipv4.ip_local_port_range), unknown in
# advance: a rule on source ports is taken to match only when it holds for every one of them.
EPHEMERAL_PORTS = (32768, 60999)
# What an ICMP "connection" is when asked about one: an echo request (type 8, code 0).
_ECHO_REQUEST = (8, 0)


# -- decisions ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """What policy did to a connection in one direction at one pod.

    ``policy`` and ``rule`` name what decided (``NetworkPolicy shop/allow-web`` and ``ingress rule 1``)
    when a rule did; ``enforced`` is False when no policy applies to the pod at all (ACK's rules, or a
    connection from the pod's own node), and the reason says why.
    """

    direction: Direction
    endpoint: str
    allowed: bool
    reason: str
    policy: str | None = None
    rule: str | None = None
    enforced: bool = True

    @property
    def deciding(self) -> str | None:
        """``NetworkPolicy shop/allow-web ingress rule 1``, or None when no rule decided."""
        if self.policy is None:
            return None
        return f"{self.policy} {self.rule}" if self.rule else self.policy


@dataclass(frozen=True, slots=True)
class ConnectionPolicy:
    """Both ends of one connection: egress at the source pod, ingress at the destination pod.

    An end that is not a pod of the cluster (an ECS instance, an outside address, a pod of another
    cluster) has no decision here.
    """

    egress: PolicyDecision | None
    ingress: PolicyDecision | None

    @property
    def allowed(self) -> bool:
        # A connection needs egress at the source AND ingress at the destination (k8s.md 4.1).
        return all(d.allowed for d in (self.egress, self.ingress) if d is not None)


# -- compiled policies --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PortMatch:
    """A destination port criterion: a numeric range, or a named port (resolved on the pod)."""

    low: int = 0
    high: int = 0
    name: str | None = None


@dataclass(frozen=True, slots=True)
class _Entity:
    """A compiled EntityRule. Indices point into the model's net-list and selector tables; None is
    "no such criterion"."""

    nets: int | None = None
    not_nets: int | None = None
    selector: int | None = None
    not_selector: int | None = None
    ports: tuple[_PortMatch, ...] | None = None
    not_ports: tuple[_PortMatch, ...] = ()


_ANY = _Entity()


@dataclass(frozen=True, slots=True)
class _Rule:
    action: Literal["Allow", "Deny", "Log", "Pass"]
    label: str  # "ingress rule 1": the rule the user wrote, counted from 1 (a k8s rule expands to several)
    protocol: int | None = None
    not_protocol: int | None = None
    icmp: tuple[int | None, int | None] | None = None
    not_icmp: tuple[int | None, int | None] | None = None
    source: _Entity = _ANY
    destination: _Entity = _ANY

    @property
    def shown(self) -> str:
        """The rule as reasons name it: Allow is implied, the other actions are spelled out."""
        return self.label if self.action == "Allow" else f"{self.label} ({self.action})"


@dataclass(frozen=True, slots=True)
class _Policy:
    kind: str  # "NetworkPolicy" (Kubernetes), "Calico NetworkPolicy", "GlobalNetworkPolicy"
    name: str  # "ns/name", or "name" for global policies
    order: float | None
    sort_name: str
    types: frozenset[str]
    ingress: tuple[_Rule, ...]
    egress: tuple[_Rule, ...]
    selected: frozenset[str]  # pod keys ("ns/name") the policy applies to

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"

    def rules(self, direction: Direction) -> tuple[_Rule, ...]:
        return self.ingress if direction == "ingress" else self.egress


@dataclass(frozen=True, slots=True)
class _Identity:
    """A peer or a policed pod as rules see it: which selectors and net lists it matches, and its
    named ports. ``cls`` is everything a rule can tell apart, the key of the decision cache."""

    name: str
    pod: bool
    ports: frozenset[tuple[str, int, str]]  # (name, port, protocol) of named container ports
    selectors: frozenset[int]
    nets: frozenset[int]
    cls: object = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Interned once: the decision cache hashes it on every query.
        object.__setattr__(self, "cls", (self.pod, self.ports, self.selectors, self.nets))


@dataclass(frozen=True, slots=True)
class _Outcome:
    """A cached decision without the pod's name: ``kind`` is rule | end | none | pass."""

    kind: Literal["rule", "end", "none", "pass"]
    allowed: bool
    policies: tuple[int, ...] = ()  # the deciding policy (rule, pass) or the selecting ones (end)
    rule: str | None = None


_NONE = _Outcome("none", True)


# -- the model ----------------------------------------------------------------------------------------


class PolicyModel:
    """The network policy of one cluster over one Plan, built once; ``ingress``/``egress`` answer."""

    def __init__(self, plan: Plan, cluster: str) -> None:
        self.cluster = cluster
        spec = plan.resources.clusters[cluster].spec if cluster in plan.resources.clusters else None
        self.network_plugin = spec.network_plugin if spec is not None else "terway"
        self.network_policy = bool(spec.network_policy) if spec is not None else False
        objs = plan.resources.kube.get(cluster) or KubeObjects()
        self._ns_labels: dict[str, Mapping[str, str]] = {
            name: ns.labels for name, ns in objs.namespaces.items()
        }
        # Calico workload endpoints: every pod of the cluster with an address, hostNetwork ones aside
        # (they are not workloads; their packets carry the node's address).
        self._pods: dict[str, PlannedPod] = {
            p.key: p for p in plan.pods if p.cluster == cluster and p.ip is not None and not p.host_network
        }
        self._by_ip: dict[IPv4Address, str] = {}
        for key, pod in self._pods.items():
            assert pod.ip is not None
            self._by_ip.setdefault(pod.ip, key)
        self._pod_labels = {key: self._workload_labels(pod) for key, pod in self._pods.items()}
        self._label_classes: dict[str | None, dict[frozenset[tuple[str, str]], list[str]]] | None = None
        self._selectors: list[str] = []
        self._selector_index: dict[str, int] = {}
        self._netlists: list[tuple[IPv4Network, ...]] = []
        self._netlist_index: dict[tuple[IPv4Network, ...], int] = {}
        # Network sets: (key, labels for selectors, nets). Namespaced sets carry their namespace the
        # way workloads do, so a namespaced policy's selector finds its own namespace's sets.
        self._sets: list[tuple[str, dict[str, str], tuple[IPv4Network, ...]]] = []
        for (ns, name), ns_set in sorted(objs.network_sets.items()):
            labels = {**ns_set.labels, **self._namespace_labels(ns)}
            self._sets.append((f"NetworkSet {ns}/{name}", labels, _nets(ns_set.spec.nets)))
        for name, g_set in sorted(objs.global_network_sets.items()):
            self._sets.append((f"GlobalNetworkSet {name}", dict(g_set.labels), _nets(g_set.spec.nets)))
        policies = [
            *(self._k8s_policy(p) for p in objs.network_policies.values()),
            *(self._calico_policy(p) for p in objs.calico_policies.values()),
            *(self._global_policy(p) for p in objs.global_policies.values()),
        ]
        # Calico's policy sorting within a tier: by order, nil last, then by name.
        policies.sort(key=lambda p: (p.order is None, p.order or 0.0, p.sort_name))
        self._policies: tuple[_Policy, ...] = tuple(policies)
        self._class_selectors: dict[frozenset[tuple[str, str]], frozenset[int]] = {}
        self._set_selectors = [self._matching_selectors(labels) for _, labels, _ in self._sets]
        self._identities: dict[str, _Identity] = {}
        self._ip_identities: dict[IPv4Address, _Identity] = {}
        self._applicable: dict[tuple[str, Direction], tuple[int, ...]] = {}
        self._outcomes: dict[tuple[object, ...], _Outcome] = {}
        self._decisions: dict[tuple[str, Direction, _Outcome], PolicyDecision] = {}

    @classmethod
    def of(cls, plan: Plan, cluster: str) -> PolicyModel:
        return cls(plan, cluster)

    # -- the questions ----------------------------------------------------------------------------

    def connection(self, source: Peer, destination: Peer, protocol: str, port: int) -> ConnectionPolicy:
        """Egress at ``source`` (when it is a pod of this cluster) and ingress at ``destination``
        (likewise), for a new session to ``destination``'s own address and port (after DNAT)."""
        egress = self.egress(source, destination, protocol, port) if self._is_local_pod(source) else None
        ingress = (
            self.ingress(destination, source, protocol, port) if self._is_local_pod(destination) else None
        )
        return ConnectionPolicy(egress, ingress)

    def ingress(self, destination: Endpoint, source: Peer, protocol: str, port: int) -> PolicyDecision:
        """The ingress verdict at pod ``destination`` for a new session from ``source``."""
        why_not = self.not_policed(destination)
        if why_not is not None:
            return PolicyDecision("ingress", destination.name, True, why_not, enforced=False)
        if isinstance(source, Endpoint) and source.on_host_stack and source.instance == destination.instance:
            # types.go (NetworkPolicyIngressRule): traffic from the pod's own node is always allowed,
            # so kubelet probes work under default-deny.
            return PolicyDecision(
                "ingress",
                destination.name,
                True,
                f"from its own node ecs/{destination.instance}: always allowed (kubelet; NetworkPolicy API)",
                enforced=False,
            )
        local = self._pod_identity(destination.name)
        outcome = self._decide("ingress", local, self._peer_identity(source), protocol.upper(), port)
        return self._decision_of("ingress", destination.name, outcome)

    def egress(self, source: Endpoint, destination: Peer, protocol: str, port: int) -> PolicyDecision:
        """The egress verdict at pod ``source`` for a new session to ``destination``."""
        why_not = self.not_policed(source)
        if why_not is not None:
            return PolicyDecision("egress", source.name, True, why_not, enforced=False)
        local = self._pod_identity(source.name)
        outcome = self._decide("egress", local, self._peer_identity(destination), protocol.upper(), port)
        return self._decision_of("egress", source.name, outcome)

    def not_policed(self, endpoint: Endpoint) -> str | None:
        """Why no policy applies to ``endpoint`` at all on ACK (alibaba.md 1.6), or None when it does."""
        if self.network_plugin == "flannel":
            return "no network policy: Flannel clusters on ACK have none"
        if not self.network_policy:
            return f"network policy is off in cluster {self.cluster} (networkPolicy: false)"
        if endpoint.kind != "pod" or endpoint.datapath == "host-network":
            return f"no network policy: {endpoint.name} is not a pod network endpoint (hostNetwork and nodes are not policed)"
        if endpoint.datapath == "terway-exclusive":
            # T:cmd/terway-cli/policy.go initPolicy: exclusive ENI gets a masquerade chain, no Felix.
            return "no network policy: exclusive ENI pods are not policed (Terway)"
        if endpoint.name not in self._pods:
            return f"no network policy: {endpoint.name} is not a pod of cluster {self.cluster}"
        return None

    def selecting(self, pod: str, direction: Direction) -> list[str]:
        """The policies that select ``pod`` for ``direction``, in evaluation order (for reports)."""
        return [self._policies[i].label for i in self._applicable_to(pod, direction)]

    # -- evaluation -------------------------------------------------------------------------------

    def _decide(
        self, direction: Direction, local: _Identity, peer: _Identity, protocol: str, port: int
    ) -> _Outcome:
        applicable = self._applicable_to(local.name, direction)
        if not applicable:
            return _NONE
        key = (direction, applicable, local.cls, peer.cls, protocol, port)
        outcome = self._outcomes.get(key)
        if outcome is None:
            outcome = self._evaluate(direction, applicable, local, peer, protocol, port)
            self._outcomes[key] = outcome
        return outcome

    def _evaluate(
        self,
        direction: Direction,
        applicable: tuple[int, ...],
        local: _Identity,
        peer: _Identity,
        protocol: str,
        port: int,
    ) -> _Outcome:
        src, dst = (peer, local) if direction == "ingress" else (local, peer)
        number = _PROTOCOL_NUMBERS.get(protocol)
        for index in applicable:
            for rule in self._policies[index].rules(direction):
                if not _rule_matches(rule, src, dst, number, protocol, port):
                    continue
                if rule.action == "Log":  # Calico: Log records the packet and goes on to the next rule
                    continue
                if rule.action == "Pass":
                    # Pass skips the rest of the tier; with the default tier the only one, the
                    # profiles (kns.<ns>, ksa.<ns>.<sa>) come next, and they allow.
                    return _Outcome("pass", True, (index,), rule.shown)
                return _Outcome("rule", rule.action == "Allow", (index,), rule.shown)
        # At least one policy of the tier applied and none acted: the tier's default action, Deny.
        return _Outcome("end", False, applicable)

    def _decision_of(self, direction: Direction, pod: str, outcome: _Outcome) -> PolicyDecision:
        key = (pod, direction, outcome)
        found = self._decisions.get(key)
        if found is None:
            found = self._decisions[key] = self._decision(direction, pod, outcome)
        return found

    def _decision(self, direction: Direction, pod: str, outcome: _Outcome) -> PolicyDecision:
        if outcome.kind == "none":
            return PolicyDecision(direction, pod, True, f"no policy selects {pod} for {direction}")
        if outcome.kind == "end":
            labels = [self._policies[i].label for i in outcome.policies]
            shown = ", ".join(labels[:3]) + (f" and {len(labels) - 3} more" if len(labels) > 3 else "")
            verb = "selects" if len(labels) == 1 else "select"
            return PolicyDecision(
                direction,
                pod,
                False,
                f"{shown} {verb} {pod} for {direction} and no rule allows it",
                policy=labels[0] if len(labels) == 1 else shown,
            )
        policy = self._policies[outcome.policies[0]]
        where = f"{direction} {'to' if direction == 'ingress' else 'from'} {pod}"
        if outcome.kind == "pass":
            reason = (
                f"{where} passed by {policy.label} {outcome.rule}: no later tier, "
                "so the namespace profile allows it"
            )
        else:
            verdict = "allowed" if outcome.allowed else "denied"
            reason = f"{where} {verdict} by {policy.label} {outcome.rule}"
        return PolicyDecision(direction, pod, outcome.allowed, reason, policy=policy.label, rule=outcome.rule)

    def _applicable_to(self, pod: str, direction: Direction) -> tuple[int, ...]:
        if not self._applicable:
            # Inverted once from the policies' selected pods, in evaluation order: a scan of every
            # policy per pod is 10^7 steps at 10,000 pods and 1,000 policies.
            found_for: dict[tuple[str, Direction], list[int]] = {}
            for i, p in enumerate(self._policies):
                for d in ("ingress", "egress"):
                    if d.capitalize() in p.types:
                        for key in p.selected:
                            found_for.setdefault((key, d), []).append(i)
            self._applicable.update({k: tuple(v) for k, v in found_for.items()})
            self._applicable[("", "ingress")] = ()  # built, even when no policy selects anything
        return self._applicable.get((pod, direction), ())

    # -- identities -------------------------------------------------------------------------------

    def _is_local_pod(self, peer: Peer) -> TypeGuard[Endpoint]:
        return isinstance(peer, Endpoint) and peer.kind == "pod" and peer.cluster == self.cluster

    def _pod_identity(self, key: str) -> _Identity:
        found = self._identities.get(key)
        if found is None:
            pod = self._pods[key]
            assert pod.ip is not None
            labels = self._pod_labels[key]
            found = _Identity(
                name=key,
                pod=True,
                ports=frozenset((p.name, p.port, p.protocol) for p in pod.ports if p.name),
                selectors=self._matching_selectors(labels),
                nets=self._matching_nets(pod.ip),
            )
            self._identities[key] = found
        return found

    def _peer_identity(self, peer: Peer) -> _Identity:
        if isinstance(peer, Endpoint):
            if peer.kind == "pod" and peer.cluster == self.cluster and peer.name in self._pods:
                return self._pod_identity(peer.name)
            ip = peer.ip
        else:
            ip = peer
            # An address that is a workload's is that workload (the /32 is the longest prefix).
            pod = self._by_ip.get(ip)
            if pod is not None:
                return self._pod_identity(pod)
        found = self._ip_identities.get(ip)
        if found is None:
            selectors: set[int] = set()
            for (_, _, nets), matched in zip(self._sets, self._set_selectors, strict=True):
                if any(ip in net for net in nets):
                    selectors |= matched
            found = _Identity(str(ip), False, frozenset(), frozenset(selectors), self._matching_nets(ip))
            self._ip_identities[ip] = found
        return found

    def _matching_selectors(self, labels: Mapping[str, str]) -> frozenset[int]:
        key = frozenset(labels.items())
        found = self._class_selectors.get(key)
        if found is None:
            found = frozenset(
                i for i, text in enumerate(self._selectors) if parse_calico_selector(text).matches(labels)
            )
            self._class_selectors[key] = found
        return found

    def _matching_nets(self, ip: IPv4Address) -> frozenset[int]:
        return frozenset(i for i, nets in enumerate(self._netlists) if any(ip in n for n in nets))

    def _namespace_labels(self, namespace: str) -> dict[str, str]:
        """What a namespaced Calico endpoint carries of its namespace: its name and the namespace's
        labels as ``pcns.<key>`` (libcalico-go conversion: NamespaceLabelPrefix)."""
        out = {LABEL_NAMESPACE: namespace, f"{NAMESPACE_PREFIX}projectcalico.org/name": namespace}
        for k, v in self._ns_labels.get(namespace, {}).items():
            out[NAMESPACE_PREFIX + k] = v
        return out

    def _workload_labels(self, pod: PlannedPod) -> dict[str, str]:
        return {
            **pod.labels,
            **self._namespace_labels(pod.namespace),
            LABEL_ORCHESTRATOR: "k8s",
            LABEL_SERVICE_ACCOUNT: pod.service_account,
        }

    def _select(self, text: str, namespace: str | None) -> frozenset[str]:
        """The pods a policy's (converted) selector picks, within ``namespace`` when given."""
        selector = parse_calico_selector(text)
        if self._label_classes is None:
            # Pods by namespace, then by label set: a selector is matched once per label set.
            classes: dict[str | None, dict[frozenset[tuple[str, str]], list[str]]] = {}
            for key, pod in self._pods.items():
                cls = frozenset(self._pod_labels[key].items())
                for ns in (pod.namespace, None):
                    classes.setdefault(ns, {}).setdefault(cls, []).append(key)
            self._label_classes = classes
        out: list[str] = []
        for keys in self._label_classes.get(namespace, {}).values():
            if selector.matches(self._pod_labels[keys[0]]):
                out.extend(keys)
        return frozenset(out)

    # -- compiling --------------------------------------------------------------------------------

    def _selector_id(self, text: str) -> int | None:
        if not text:
            return None
        canonical = str(parse_calico_selector(text))
        found = self._selector_index.get(canonical)
        if found is None:
            found = self._selector_index[canonical] = len(self._selectors)
            self._selectors.append(canonical)
        return found

    def _netlist_id(self, nets: Sequence[str]) -> int | None:
        if not nets:
            return None
        parsed = _nets(nets)
        found = self._netlist_index.get(parsed)
        if found is None:
            found = self._netlist_index[parsed] = len(self._netlists)
            self._netlists.append(parsed)
        return found

    def _entity(
        self,
        *,
        policy_namespace: str | None,
        nets: Sequence[str] = (),
        not_nets: Sequence[str] = (),
        selector: str = "",
        not_selector: str = "",
        namespace_selector: str = "",
        service_accounts: ServiceAccountMatch | None = None,
        ports: Sequence[_PortMatch] | None = None,
        not_ports: Sequence[_PortMatch] = (),
    ) -> _Entity:
        positive = _endpoint_selector(
            namespace_selector,
            selector,
            _service_account_selector(service_accounts),
            not_selector,
            policy_namespace,
        )
        return _Entity(
            nets=self._netlist_id(nets),
            not_nets=self._netlist_id(not_nets),
            selector=self._selector_id(positive),
            not_selector=self._selector_id(not_selector),
            ports=tuple(ports) if ports is not None else None,
            not_ports=tuple(not_ports),
        )

    def _k8s_policy(self, policy: NetworkPolicy) -> _Policy:
        spec = policy.spec
        ns = policy.namespace
        types = frozenset(spec.effective_policy_types())
        selector = _k8s_pod_selector(K8sSelector.from_dict(spec.pod_selector.as_dict()))
        ingress = (
            [(r.from_, r.ports) for r in spec.ingress or []] if "Ingress" in types else []
        )  # rules of a type not in policyTypes are ignored (conversion.go)
        egress = [(r.to, r.ports) for r in spec.egress or []] if "Egress" in types else []
        return _Policy(
            kind="NetworkPolicy",
            name=f"{ns}/{policy.name}",
            order=K8S_ORDER,
            sort_name=f"{ns}/knp.default.{policy.name}",
            types=types,
            ingress=tuple(
                r
                for i, (peers, ports) in enumerate(ingress)
                for r in self._k8s_rule("ingress", i, ns, peers, ports)
            ),
            egress=tuple(
                r
                for i, (peers, ports) in enumerate(egress)
                for r in self._k8s_rule("egress", i, ns, peers, ports)
            ),
            selected=self._select(selector, ns),
        )

    def _k8s_rule(
        self,
        direction: Direction,
        index: int,
        namespace: str,
        peers: Sequence[NetworkPolicyPeer] | None,
        ports: Sequence[NetworkPolicyPort] | None,
    ) -> list[_Rule]:
        """One Kubernetes rule as Calico Allow rules: one per (peer, protocol); no peers = any peer,
        no ports = any protocol and port (conversion.go k8sRuleToCalico)."""
        entities = [self._k8s_peer(namespace, p) for p in peers] if peers else [_ANY]
        groups: dict[str, list[_PortMatch] | None] = {}
        for p in ports or []:
            protocol = p.protocol or "TCP"  # the API server defaults a missing protocol to TCP
            if p.port is None:
                groups[protocol] = None  # {protocol: X} alone: every port of X
                continue
            matches = groups.get(protocol, [])
            if matches is None:
                continue
            matches.append(
                _PortMatch(name=p.port)
                if isinstance(p.port, str)
                else _PortMatch(p.port, p.end_port if p.end_port is not None else p.port)
            )
            groups[protocol] = matches
        protocols: list[tuple[int | None, tuple[_PortMatch, ...] | None]] = (
            [(_PROTOCOL_NUMBERS[proto], tuple(m) if m is not None else None) for proto, m in groups.items()]
            if ports
            else [(None, None)]
        )
        label = f"{direction} rule {index + 1}"
        rules: list[_Rule] = []
        for entity in entities:
            for number, port_matches in protocols:
                # The peer is the source of an ingress rule and the destination of an egress rule;
                # ports are always the destination's (the protected pod, or the pod reached).
                if direction == "ingress":
                    rules.append(
                        _Rule("Allow", label, number, source=entity, destination=_Entity(ports=port_matches))
                    )
                else:
                    rules.append(
                        _Rule("Allow", label, number, destination=replace(entity, ports=port_matches))
                    )
        return rules

    def _k8s_peer(self, namespace: str, peer: NetworkPolicyPeer) -> _Entity:
        if peer.ip_block is not None:
            # ipBlock -> nets and notNets, normalised (host bits cleared) as Calico's ParseCIDR does.
            return self._entity(
                policy_namespace=namespace, nets=[peer.ip_block.cidr], not_nets=peer.ip_block.except_
            )
        pod_sel = ""
        if peer.pod_selector is not None:
            pod_sel = _k8s_pod_selector(K8sSelector.from_dict(peer.pod_selector.as_dict()))
        ns_sel = ""
        if peer.namespace_selector is not None:
            # {} -> all(): every namespace; nil stays "" -> the policy's own namespace.
            ns_sel = K8sSelector.from_dict(peer.namespace_selector.as_dict()).to_calico()
        return self._entity(policy_namespace=namespace, selector=pod_sel, namespace_selector=ns_sel)

    def _calico_policy(self, policy: CalicoNetworkPolicy) -> _Policy:
        spec = policy.spec
        ns = policy.namespace
        selector = _and(
            f"{LABEL_NAMESPACE} == '{ns}'",
            spec.selector,
            _prefixed(spec.service_account_selector, SERVICE_ACCOUNT_PREFIX),
        )
        types = frozenset(spec.effective_types())
        return _Policy(
            kind="Calico NetworkPolicy",
            name=f"{ns}/{policy.name}",
            order=spec.order,
            sort_name=f"{ns}/{policy.name}",
            types=types,
            ingress=self._calico_rules("ingress", spec.ingress, ns) if "Ingress" in types else (),
            egress=self._calico_rules("egress", spec.egress, ns) if "Egress" in types else (),
            selected=self._select(selector, ns),
        )

    def _global_policy(self, policy: GlobalNetworkPolicy) -> _Policy:
        spec = policy.spec
        ns_sel = _prefixed(spec.namespace_selector, NAMESPACE_PREFIX).replace(
            "all()", f"has({LABEL_NAMESPACE})"
        )
        selector = _and(
            spec.selector, ns_sel, _prefixed(spec.service_account_selector, SERVICE_ACCOUNT_PREFIX)
        )
        types = frozenset(spec.effective_types())
        return _Policy(
            kind="GlobalNetworkPolicy",
            name=policy.name,
            order=spec.order,
            sort_name=policy.name,
            types=types,
            ingress=self._calico_rules("ingress", spec.ingress, None) if "Ingress" in types else (),
            egress=self._calico_rules("egress", spec.egress, None) if "Egress" in types else (),
            selected=self._select(selector or "all()", None),
        )

    def _calico_rules(
        self, direction: Direction, rules: Iterable[Rule], namespace: str | None
    ) -> tuple[_Rule, ...]:
        out: list[_Rule] = []
        for i, rule in enumerate(rules):
            out.append(
                _Rule(
                    action=rule.action,
                    label=f"{direction} rule {i + 1}",
                    protocol=_protocol_number(rule.protocol),
                    not_protocol=_protocol_number(rule.not_protocol),
                    icmp=_icmp(rule.icmp),
                    not_icmp=_icmp(rule.not_icmp),
                    source=self._calico_entity(rule.source, namespace),
                    destination=self._calico_entity(rule.destination, namespace),
                )
            )
        return tuple(out)

    def _calico_entity(self, entity: EntityRule, namespace: str | None) -> _Entity:
        return self._entity(
            policy_namespace=namespace,
            nets=entity.nets,
            not_nets=entity.not_nets,
            selector=entity.selector,
            not_selector=entity.not_selector,
            namespace_selector=entity.namespace_selector,
            service_accounts=entity.service_accounts,
            ports=[_calico_port(p) for p in entity.ports] if entity.ports else None,
            not_ports=[_calico_port(p) for p in entity.not_ports],
        )


# -- helpers --------------------------------------------------------------------------------------


def _rule_matches(
    rule: _Rule, src: _Identity, dst: _Identity, number: int | None, protocol: str, port: int
) -> bool:
    """Every criterion of a Calico rule holds (they are ANDed; each ``not*`` twin negates one)."""
    if rule.protocol is not None and rule.protocol != number:
        return False
    if rule.not_protocol is not None and rule.not_protocol == number:
        return False
    if rule.icmp is not None and (number not in _ICMP or not _icmp_matches(rule.icmp)):
        return False
    if rule.not_icmp is not None and number in _ICMP and _icmp_matches(rule.not_icmp):
        return False
    return _entity_matches(rule.source, src, None, protocol) and _entity_matches(
        rule.destination, dst, port, protocol
    )


def _entity_matches(entity: _Entity, who: _Identity, port: int | None, protocol: str) -> bool:
    if entity is _ANY:
        return True
    if entity.nets is not None and entity.nets not in who.nets:
        return False
    if entity.not_nets is not None and entity.not_nets in who.nets:
        return False
    if entity.selector is not None and entity.selector not in who.selectors:
        return False
    if entity.not_selector is not None and entity.not_selector in who.selectors:
        return False
    if port is None:  # the source side: the port is an unknown ephemeral one
        low, high = EPHEMERAL_PORTS
        if entity.ports is not None and not any(
            m.name is None and m.low <= low and high <= m.high for m in entity.ports
        ):
            return False
        return not any(m.name is None and m.low <= high and low <= m.high for m in entity.not_ports)
    if entity.ports is not None and not any(_port_matches(m, who, port, protocol) for m in entity.ports):
        return False
    return not any(_port_matches(m, who, port, protocol) for m in entity.not_ports)


def _port_matches(match: _PortMatch, who: _Identity, port: int, protocol: str) -> bool:
    if match.name is None:
        return match.low <= port <= match.high
    # A named port is the destination pod's container port of that name AND protocol (k8s.md 4.8);
    # an address that is no pod has no named ports (Calico keeps them as per-pod IP set members).
    return (match.name, port, protocol) in who.ports


def _icmp_matches(icmp: tuple[int | None, int | None]) -> bool:
    kind, code = icmp
    return (kind is None or kind == _ECHO_REQUEST[0]) and (code is None or code == _ECHO_REQUEST[1])


def _icmp(fields: ICMPFields | None) -> tuple[int | None, int | None] | None:
    return None if fields is None else (fields.type, fields.code)


def _protocol_number(protocol: int | str | None) -> int | None:
    if protocol is None:
        return None
    if isinstance(protocol, int):
        return protocol
    text = protocol.upper()
    return int(text) if text.isdigit() else _PROTOCOL_NUMBERS.get(text, -1)


def _calico_port(port: int | str) -> _PortMatch:
    if isinstance(port, int):
        return _PortMatch(port, port)
    low, sep, high = port.partition(":")
    if sep and low.isdigit() and high.isdigit():
        return _PortMatch(int(low), int(high))
    if port.isdigit():
        return _PortMatch(int(port), int(port))
    return _PortMatch(name=port)


def _nets(texts: Iterable[str]) -> tuple[IPv4Network, ...]:
    # parse_cidr tolerates host bits and returns the network (Calico: normalizeIPNet / ipNet.String()).
    return tuple(net for net in (parse_cidr(t) for t in texts) if net is not None)


def _and(*terms: str) -> str:
    parts = [t for t in terms if t]
    if not parts:
        return ""
    return parts[0] if len(parts) == 1 else " && ".join(f"({t})" for t in parts)


def _prefixed(text: str, prefix: str) -> str:
    """A selector with every label key prefixed (``parseSelectorAttachPrefix``), "" for none."""
    if not text:
        return ""
    return str(parse_calico_selector(text).with_label_prefix(prefix))


def _k8s_pod_selector(selector: K8sSelector) -> str:
    """conversion.go k8sSelectorToCalico(SelectorPod): Kubernetes pods only, then the terms."""
    orchestrator = f"{LABEL_ORCHESTRATOR} == 'k8s'"
    return orchestrator if selector.is_empty else f"{orchestrator} && {selector.to_calico()}"


def _service_account_selector(match: ServiceAccountMatch | None) -> str:
    """rules.go parseServiceAccounts: the pcsa.-prefixed selector AND the names as a set."""
    if match is None:
        return ""
    selector = _prefixed(match.selector, SERVICE_ACCOUNT_PREFIX)
    if not match.names:
        return selector
    names = ", ".join(f"'{n}'" for n in match.names)
    return _and(selector, f"{LABEL_SERVICE_ACCOUNT} in {{ {names} }}")


def _endpoint_selector(
    namespace_selector: str,
    selector: str,
    service_account_selector: str,
    not_selector: str,
    policy_namespace: str | None,
) -> str:
    """The positive selector of an EntityRule, as libcalico-go rules.go ``getEndpointSelector``:

    a namespaceSelector becomes a ``pcns.`` selector (``all()`` -> any namespaced endpoint,
    ``global()`` -> only non-namespaced ones: GlobalNetworkSets); without one, a namespaced policy
    keeps to its own namespace. The namespace part is added as soon as any selector field is used,
    notSelector included, and notSelector itself stays unscoped.
    """
    ns_selector = ""
    if namespace_selector:
        ns_selector = (
            _prefixed(namespace_selector, NAMESPACE_PREFIX)
            .replace("all()", f"has({LABEL_NAMESPACE})")
            .replace("global()", f"!has({LABEL_NAMESPACE})")
        )
    elif policy_namespace is not None:
        ns_selector = f"{LABEL_NAMESPACE} == '{policy_namespace}'"
    combined = _and(service_account_selector, selector)
    if ns_selector and (combined or not_selector or namespace_selector):
        return _and(ns_selector, combined)
    return combined
