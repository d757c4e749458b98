"""Kubernetes and Calico network policy as one nftables table per node: Felix's work on the ``cali`` veths.

Owner of the table ``inet <emulation>-policy`` in every node namespace of a Terway cluster with
``networkPolicy: true``. As for every acknet table (STYLE.md, after Calico Felix) it is rendered whole
here, and every change reaches the kernel as one ``nft -f`` transaction per node: the whole table
(``replace_script``) when it is new, else ``table_changes`` between the last rendering and this one:
set element edits when they differ in elements only (a pod came or went, a label changed who a
selector picks; ``set_element_changes``), and whole chains rewritten when rules differ (Felix rewrote
whole chains). At 500 policies a table is thousands of lines; a change of one policy then costs that
policy's chains, not the table.

Where policy applies follows ACK (reference/alibaba.md 1.6): Terway's ``initPolicy`` runs Calico Felix
in policy-only mode for shared-ENI (veth) pods when the cluster enables network policy, nothing for
exclusive-ENI pods, Flannel clusters have none, and hostNetwork pods are the node's own traffic. What
policy decides follows Calico (reference/k8s.md sections 4 and 5); ``acknet.analysis.policy``
implements the same decisions independently (this module never imports it) and the tests check that
both agree with each other, with the upstream conformance suite and with real packets.

Where the chains hook, and why (reference/alibaba.md 1.4, Terway's veth datapath): a shared-ENI pod's
traffic is routed by its node, through the host side ``cali<hash>`` of its veth, so

- ``forward`` sees pod -> off-node, off-node -> pod and same-node pod <-> pod traffic: ``iifname``
  cali… is that pod's egress, ``oifname`` cali… the other pod's ingress, both in one pass when both
  ends are on this node (egress first, as the packet leaves one pod before it enters the other);
- ``input`` sees a pod talking to its own node: that pod's egress;
- ``output`` sees the node talking to its pods, which the NetworkPolicy API always allows ("traffic
  from the pod's local node is allowed", networking/v1 types.go; kubelet probes): accepted.

kube-proxy DNATs Service traffic at prerouting/output ``dstnat`` (-100), before these ``filter`` (0)
hooks, so policy sees a Service's chosen endpoint, its own address and targetPort, as Calico does.

A pod veth the table does not know yet (a pod whose policies are not loaded) is dropped, as Felix's
dispatch chains drop an "Unknown interface": the engine builds a pod's veth before it loads the
tables, and in between that pod must not be reachable.

Chains, in Felix's shape (``calc/policy`` → ``cali-tw-``/``cali-fw-`` endpoint chains jumping to
``cali-pi-``/``cali-po-`` policy chains):

- base chains: ``ct state established,related accept`` first (replies of an allowed connection pass,
  and a policy update never cuts a connection: conntrack outlives the table), ``ct state invalid
  drop``, then an ``iifname``/``oifname`` verdict map to the pod chains;
- one chain per pod and direction, only when some policy selects the pod for that direction: it jumps
  to each selecting policy's chain in Calico order (``order``, nil last, then name) and returns as
  soon as one of them accepted; when none did it drops (the default tier's end-of-tier deny). A pod no
  policy selects has no chain and passes (Calico's namespace profile allows);
- one chain per policy and direction, one rule per Calico rule (a Kubernetes rule expands to one per
  peer and protocol, as libcalico-go ``conversion.go`` converts it). Allow and Pass set the accept bit
  of the packet mark and return (Felix marks ``0x10000`` the same way: an accept inside a jumped chain
  would end the whole hook, and a same-node packet still needs the other pod's ingress); Deny drops;
  Log logs and goes on. Pass leaves the default tier, the only one, and the profile allows.

Selectors are named sets of addresses (``sel-<hash of the scoped selector>``): the pods whose labels
the selector matches plus the nets of the NetworkSets/GlobalNetworkSets it matches, pod addresses cut
out of those nets (a pod's /32 is the longest prefix: the pod is itself, not the set). CIDR lists are
interval sets (``net-<hash>``), named ports sets of ``address . protocol . port`` (``port-<name>``)
holding every pod's container port of that name, so a named port is resolved on the destination pod
for ingress and egress alike. Pod churn and label changes therefore edit set elements; only a change
of who a policy selects on this node, or of the policies themselves, changes rules.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from acknet.controllers.state import Instance, Plan, PlannedPod
from acknet.dataplane.render import names
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

TABLE_FAMILY = "inet"
POD_VETHS = "pod-veths"  # the set of this node's pod veth names
Direction = Literal["ingress", "egress"]
_DIRECTIONS: tuple[Direction, ...] = ("ingress", "egress")

# Felix's accept bit (its default IptablesMarkAccept is 0x10000 as well); kube-proxy uses 0x4000 for
# masquerading, so the two never meet. Only this bit is ever changed.
ACCEPT_MARK = 0x00010000
_MARK_CLEAR = f"meta mark set meta mark and {0xFFFFFFFF ^ ACCEPT_MARK:#010x}"
_MARK_ACCEPT = f"meta mark set meta mark or {ACCEPT_MARK:#010x} return"
_MARK_ACCEPTED = f"meta mark and {ACCEPT_MARK:#010x} == {ACCEPT_MARK:#010x} return"

# Calico's implicit workload labels (libcalico-go apiv3 constants) and the prefixes conversion.go uses
# for namespace and service-account labels.
LABEL_NAMESPACE = "projectcalico.org/namespace"
LABEL_ORCHESTRATOR = "projectcalico.org/orchestrator"
LABEL_SERVICE_ACCOUNT = "projectcalico.org/serviceaccount"
NAMESPACE_PREFIX = "pcns."
SERVICE_ACCOUNT_PREFIX = "pcsa."
K8S_ORDER = 1000.0  # conversion.go: every Kubernetes NetworkPolicy is order 1000 in the default tier

_PROTOCOL_NUMBERS = {"ICMP": 1, "TCP": 6, "UDP": 17, "ICMPV6": 58, "SCTP": 132, "UDPLITE": 136}
_NFT_PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 132: "sctp", 136: "udplite"}
_ICMP = (1, 58)
_UNKNOWN_PROTOCOL = -1  # a protocol name nobody knows: a rule on it never matches
# Transport protocols with ports: ``th dport`` reads the transport header of these only.
_PORTED = "meta l4proto { tcp, udp, sctp, udplite }"
_NFT_COMMENT_MAX = 128  # NFT_USERDATA_MAXLEN
_LOG_PREFIX_MAX = 127  # NF_LOG_PREFIXLEN minus the NUL
_CHAIN_NAME_MAX = 200  # below NFT_CHAIN_MAXNAMELEN (256), leaving room for the direction suffix
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9/_.-]*")
_PORT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")


def table_name(emulation: str) -> str:
    """The table every policed node of ``emulation`` carries; named after it so ``down`` finds its own."""
    return f"{emulation}-policy"


def replace_script(table_text: str, emulation: str) -> str:
    """``table_text`` wrapped so one ``nft -f`` replaces the table atomically whether or not it exists."""
    ref = f"{TABLE_FAMILY} {table_name(emulation)}"
    return f"table {ref}\ndelete table {ref}\n{table_text}"


# -- compiled policies ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Port:
    """A destination port criterion: a numeric range, or a named port resolved on the pod."""

    low: int = 0
    high: int = 0
    name: str | None = None


@dataclass(frozen=True, slots=True)
class _Entity:
    """A compiled EntityRule: nets as tuples of networks, selectors as canonical (scoped) text."""

    nets: tuple[IPv4Network, ...] | None = None
    not_nets: tuple[IPv4Network, ...] | None = None
    selector: str | None = None
    not_selector: str | None = None
    ports: tuple[_Port, ...] | None = None
    not_ports: tuple[_Port, ...] = ()


_ANY = _Entity()


@dataclass(frozen=True, slots=True)
class _Rule:
    action: Literal["Allow", "Deny", "Log", "Pass"]
    label: str  # "ingress rule 1": the rule the user wrote, counted from 1 (a Kubernetes rule expands to several)
    protocol: int | None = None
    not_protocol: int | None = None
    icmp: tuple[int | None, int | None] | None = None
    not_icmp: tuple[int | None, int | None] | None = None
    source: _Entity = _ANY
    destination: _Entity = _ANY

    @property
    def shown(self) -> str:
        """The rule as traces and ``check`` name it: Allow is implied, other actions spelled out."""
        return self.label if self.action == "Allow" else f"{self.label} ({self.action})"


@dataclass(frozen=True, slots=True)
class _Policy:
    kind: str  # "NetworkPolicy" (Kubernetes), "Calico NetworkPolicy", "GlobalNetworkPolicy"
    name: str  # "ns/name", or "name" for global policies
    chain: str  # chain name stem: knp/<ns>/<name>, cnp/<ns>/<name>, gnp/<name>
    order: float | None
    sort_name: str
    types: frozenset[str]
    ingress: tuple[_Rule, ...]
    egress: tuple[_Rule, ...]
    selected: frozenset[str]  # pod keys the policy applies to

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"

    def rules(self, direction: Direction) -> tuple[_Rule, ...]:
        return self.ingress if direction == "ingress" else self.egress


@dataclass(slots=True)
class _Uses:
    """The named sets some rules refer to, by name, with what each is made of."""

    selectors: dict[str, str] = field(default_factory=dict)
    nets: dict[str, tuple[IPv4Network, ...]] = field(default_factory=dict)
    ports: dict[str, str] = field(default_factory=dict)

    def selector(self, selector: str) -> str:
        name = selector_set_name(selector)
        self.selectors[name] = selector
        return name

    def net_list(self, nets: tuple[IPv4Network, ...]) -> str:
        name = nets_set_name(nets)
        self.nets[name] = nets
        return name

    def port(self, port: str) -> str:
        name = port_set_name(port)
        self.ports[name] = port
        return name

    def update(self, other: _Uses) -> None:
        self.selectors.update(other.selectors)
        self.nets.update(other.nets)
        self.ports.update(other.ports)


# -- the renderer -----------------------------------------------------------------------------------


def render_policies(plan: Plan, emulation: str) -> dict[str, str]:
    """Node name -> the full text of its ``inet <emulation>-policy`` table.

    Only nodes of Terway clusters with ``networkPolicy: true`` have one (ACK: no Felix otherwise); a
    node whose pods no policy selects gets a table without pod chains, so a later policy is a table
    change and never a table that appears from nothing in the middle of traffic.
    """
    out: dict[str, str] = {}
    for cluster in sorted(plan.resources.clusters):
        spec = plan.resources.clusters[cluster].spec
        if spec.network_plugin != "terway" or not spec.network_policy:
            continue
        compiled = _ClusterPolicy(plan, cluster)
        for node in sorted(plan.instances, key=lambda i: i.name):
            if node.cluster == cluster:
                out[node.name] = compiled.render_node(node, emulation)
    return out


def policed_pods(plan: Plan, cluster: str) -> list[PlannedPod]:
    """The pods Felix would police in ``cluster``: running Terway shared-ENI pods with an address.

    Exclusive-ENI pods (Terway's ``initPolicy`` runs no Felix for them) and hostNetwork pods (their
    traffic is the node's) are left out; a pod without an ENI address has no network at all.
    """
    enis = {eni.id: eni for inst in plan.instances for eni in inst.enis}
    out = []
    for pod in plan.pods:
        if pod.cluster != cluster or pod.ip is None or pod.node is None or pod.host_network:
            continue
        eni = enis.get(pod.eni or "")
        if pod.phase != "Running" or eni is None or eni.exclusive_pod == pod.key:
            continue
        out.append(pod)
    return out


class _ClusterPolicy:
    """The policies of one cluster compiled once; ``render_node`` writes one node's table."""

    def __init__(self, plan: Plan, cluster: str) -> None:
        self.cluster = cluster
        objs = plan.resources.kube.get(cluster) or KubeObjects()
        self._ns_labels: dict[str, Mapping[str, str]] = {
            name: ns.labels for name, ns in objs.namespaces.items()
        }
        # Calico workload endpoints: every pod of the cluster with an address but hostNetwork ones
        # (not workloads: their packets carry the node's address). Exclusive-ENI pods are peers too.
        self._pods: dict[str, PlannedPod] = {
            p.key: p for p in plan.pods if p.cluster == cluster and p.ip is not None and not p.host_network
        }
        self._pod_labels = {
            key: _workload_labels(pod, self._namespace_labels(pod.namespace))
            for key, pod in self._pods.items()
        }
        # Pods with equal labels match equal selectors: selectors are matched once per label class.
        self._label_class = {key: frozenset(labels.items()) for key, labels in self._pod_labels.items()}
        # Label class -> (its labels, the addresses of its pods): selector sets match classes, not pods.
        self._classes: dict[frozenset[tuple[str, str]], tuple[Mapping[str, str], list[IPv4Address]]] = {}
        for key, pod in self._pods.items():
            assert pod.ip is not None
            cls = self._label_class[key]
            self._classes.setdefault(cls, (self._pod_labels[key], []))[1].append(pod.ip)
        self._all_pod_ips = frozenset(ip for _, ips in self._classes.values() for ip in ips)
        self._pods_by_namespace: dict[str, list[str]] = {}
        for key, pod in self._pods.items():
            self._pods_by_namespace.setdefault(pod.namespace, []).append(key)
        self._policed = policed_pods(plan, cluster)
        # The pods with a cali veth on their node, as the topology renders them (an ENI address and
        # a node; exclusive-ENI pods have one too, for Services and their node).
        enis = {eni.id for inst in plan.instances for eni in inst.enis}
        self._veth_pods: dict[str, list[PlannedPod]] = {}
        for pod in self._pods.values():
            if pod.node is not None and pod.eni in enis:
                self._veth_pods.setdefault(pod.node, []).append(pod)
        # Network sets: (labels for selectors, nets). Namespaced sets carry their namespace as
        # workloads do, so a namespaced policy's selector finds its own namespace's sets.
        self._net_sets: list[tuple[dict[str, str], tuple[IPv4Network, ...]]] = []
        for (ns, _), ns_set in sorted(objs.network_sets.items()):
            labels = {**ns_set.labels, **self._namespace_labels(ns)}
            self._net_sets.append((labels, _nets(ns_set.spec.nets)))
        for _, g_set in sorted(objs.global_network_sets.items()):
            self._net_sets.append((dict(g_set.labels), _nets(g_set.spec.nets)))
        policies = [
            *(self._k8s_policy(p) for p in objs.network_policies.values()),
            *(self._calico_policy(p) for p in objs.calico_policies.values()),
            *(self._global_policy(p) for p in objs.global_policies.values()),
        ]
        # Calico's policy order within a tier: by order, nil last, then by name.
        policies.sort(key=lambda p: (p.order is None, p.order or 0.0, p.sort_name))
        self._policies = tuple(policies)
        # Pod -> the policies selecting it, per direction, in Calico order (an inverted index: a
        # scan of every policy for every pod is quadratic at 1,000 pods and 500 policies).
        self._applicable: dict[tuple[str, Direction], list[int]] = {}
        for index, policy in enumerate(self._policies):
            for direction in _DIRECTIONS:
                if direction.capitalize() in policy.types:
                    for key in policy.selected:
                        self._applicable.setdefault((key, direction), []).append(index)
        self._selector_members: dict[str, tuple[str, ...]] = {}
        self._net_elements: dict[str, tuple[str, ...]] = {}
        self._policy_text: dict[tuple[int, Direction], tuple[list[str], _Uses]] = {}
        self._named_ports: dict[str, tuple[str, ...]] | None = None

    # -- one node -----------------------------------------------------------------------------

    def render_node(self, node: Instance, emulation: str) -> str:
        pods = sorted((p for p in self._policed if p.node == node.name), key=lambda p: p.key)
        uses = _Uses()
        chains: dict[str, list[str]] = {}
        policy_chains: dict[tuple[int, Direction], tuple[str, list[str]]] = {}
        dispatch: dict[Direction, list[tuple[str, str]]] = {"ingress": [], "egress": []}
        for pod in pods:
            cali = names.cali_ifname(pod.namespace, pod.name)
            for direction in _DIRECTIONS:
                applicable = self._applicable.get((pod.key, direction), [])
                if not applicable:
                    continue  # no policy selects it: the profile allows, no chain (Calico)
                chain = f"{cali}-{direction}"
                dispatch[direction].append((cali, chain))
                body = [f"{_MARK_CLEAR} comment {_quote(f'{direction} of pod {pod.key}')}"]
                for index in applicable:
                    policy = self._policies[index]
                    policy_chain = _chain_name(policy, direction)
                    if (index, direction) not in policy_chains:
                        rules, used = self._policy_rules(index, direction)
                        policy_chains[index, direction] = (policy_chain, rules)
                        uses.update(used)
                    body.append(f"jump {policy_chain}")
                    body.append(_MARK_ACCEPTED)
                # Calico's end-of-tier deny: some policy of the (only) tier selects the pod, no rule
                # of any of them allowed the packet.
                count = f"{len(applicable)} policies select" if len(applicable) > 1 else "1 policy selects"
                body.append("drop comment " + _quote(f"end of tier: {count} {pod.key} for {direction}"))
                chains[chain] = body

        lines = [f"table {TABLE_FAMILY} {table_name(emulation)} {{"]
        lines.append(
            "\tcomment "
            + _quote(
                f"network policy of node {node.name} (Calico on Terway shared ENI; emulation {emulation})"
            )
        )
        declared = self._set_declarations(uses)
        # Every pod veth of this node (exclusive-ENI pods' veth1 too): an interface not in it is a pod
        # whose policies are not loaded yet, and Felix's dispatch chains drop it ("Unknown interface").
        veths = sorted(names.cali_ifname(p.namespace, p.name) for p in self._veth_pods.get(node.name, ()))
        declared[POD_VETHS] = (
            "the pod veths of this node: any other cali* is not programmed yet",
            "ifname",
            tuple(f'"{v}"' for v in veths),
        )
        for name in sorted(declared):
            comment, kind, elements = declared[name]
            lines.append("")
            lines.append(f"\tset {name} {{")
            lines.append(f"\t\ttype {kind}")
            if kind == "ipv4_addr":
                lines.append("\t\tflags interval")
            lines.append(f"\t\tcomment {_quote(comment)}")
            if elements:
                lines.append("\t\telements = { " + ", ".join(elements) + " }")
            lines.append("\t}")
        established = [
            "ct state established,related accept comment "
            + _quote("replies and connections allowed when they started (conntrack)"),
            "ct state invalid drop",
        ]
        unknown = _quote("unknown interface: a pod whose policies are not loaded yet (Felix)")
        from_unknown = f'iifname "{names.CALI_PREFIX}*" iifname != @{POD_VETHS} drop comment {unknown}'
        forward = [
            *established,
            from_unknown,
            f'oifname "{names.CALI_PREFIX}*" oifname != @{POD_VETHS} drop comment {unknown}',
            *_vmap("iifname", dispatch["egress"]),
            *_vmap("oifname", dispatch["ingress"]),
        ]
        lines.append("")
        lines.extend(_base_chain("forward", forward))
        inputs = [
            f'iifname != "{names.CALI_PREFIX}*" accept comment {_quote("not from a pod veth: not policy")}',
            *established,
            from_unknown,
            *_vmap("iifname", dispatch["egress"]),
        ]
        lines.append("")
        lines.extend(_base_chain("input", inputs))
        output = [
            f"oifname @{POD_VETHS} accept comment "
            + _quote("a node always reaches its own pods (NetworkPolicy API; kubelet probes)")
        ]
        lines.append("")
        lines.extend(_base_chain("output", output))
        # Pod chains first (in pod order), then policy chains in Calico order: a reader follows jumps
        # downwards.
        ordered = [*chains.items(), *(policy_chains[key] for key in sorted(policy_chains))]
        for chain, rules in ordered:
            lines.append("")
            lines.append(f"\tchain {chain} {{")
            lines.extend(f"\t\t{rule}" for rule in rules)
            lines.append("\t}")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def _policy_rules(self, index: int, direction: Direction) -> tuple[list[str], _Uses]:
        """The nft rules of one policy's chain for ``direction`` and the sets they use (cached: the
        same for every node)."""
        key = (index, direction)
        found = self._policy_text.get(key)
        if found is None:
            policy = self._policies[index]
            used = _Uses()
            rules: list[str] = []
            for rule in policy.rules(direction):
                comment = _quote(f"{policy.label} {rule.shown}")
                action = _action(rule, policy)
                for match in _rule_matches(rule, used):
                    rules.append(" ".join([*match, action, "comment", comment]))
            found = self._policy_text[key] = (rules, used)
        return found

    # -- sets -----------------------------------------------------------------------------------

    def _set_declarations(self, uses: _Uses) -> dict[str, tuple[str, str, tuple[str, ...]]]:
        """Set name -> (comment, nft type, elements) for every set ``uses`` names."""
        out: dict[str, tuple[str, str, tuple[str, ...]]] = {}
        for name, selector in uses.selectors.items():
            out[name] = (f"selector {selector}", "ipv4_addr", self._selector_elements(selector))
        for name, nets in uses.nets.items():
            elements = self._net_elements.get(name)
            if elements is None:
                elements = self._net_elements[name] = _interval_elements(nets, ())
            out[name] = ("nets " + ", ".join(str(n) for n in nets), "ipv4_addr", elements)
        named = self._named_port_elements()
        for name, port in uses.ports.items():
            out[name] = (
                f"named port {port}: address . protocol . port of each pod's container port so named",
                "ipv4_addr . inet_proto . inet_service",
                named.get(port, ()),
            )
        return out

    def _selector_elements(self, selector: str) -> tuple[str, ...]:
        found = self._selector_members.get(selector)
        if found is None:
            parsed = parse_calico_selector(selector)
            ips: set[IPv4Address] = set()
            for labels, class_ips in self._classes.values():
                if parsed.matches(labels):
                    ips.update(class_ips)
            nets = [n for labels, set_nets in self._net_sets if parsed.matches(labels) for n in set_nets]
            # A pod address is the pod (its /32 is the longest prefix): a set's nets lend their
            # labels to every address but the pods'.
            others = self._all_pod_ips - ips if nets else frozenset()
            found = _interval_elements([IPv4Network(ip) for ip in sorted(ips)] + nets, others)
            self._selector_members[selector] = found
        return found

    def _named_port_elements(self) -> dict[str, tuple[str, ...]]:
        if self._named_ports is None:
            by_name: dict[str, set[tuple[IPv4Address, str, int]]] = {}
            for pod in self._pods.values():
                assert pod.ip is not None
                for port in pod.ports:
                    if port.name:
                        by_name.setdefault(port.name, set()).add((pod.ip, port.protocol.lower(), port.port))
            self._named_ports = {
                name: tuple(f"{ip} . {proto} . {number}" for ip, proto, number in sorted(members))
                for name, members in by_name.items()
            }
        return self._named_ports

    # -- compiling ------------------------------------------------------------------------------

    def _namespace_labels(self, namespace: str) -> dict[str, str]:
        """What a namespaced Calico endpoint carries of its namespace: its name and the namespace's
        labels as ``pcns.<key>`` (libcalico-go conversion: NamespaceLabelPrefix)."""
        out = {LABEL_NAMESPACE: namespace, f"{NAMESPACE_PREFIX}projectcalico.org/name": namespace}
        for k, v in self._ns_labels.get(namespace, {}).items():
            out[NAMESPACE_PREFIX + k] = v
        return out

    def _select(self, text: str, namespace: str | None) -> frozenset[str]:
        selector = parse_calico_selector(text)
        candidates = self._pods_by_namespace.get(namespace, []) if namespace is not None else self._pods
        by_class: dict[frozenset[tuple[str, str]], bool] = {}
        out = []
        for key in candidates:
            labels = self._pod_labels[key]
            cls = self._label_class[key]
            hit = by_class.get(cls)
            if hit is None:
                hit = by_class[cls] = selector.matches(labels)
            if hit:
                out.append(key)
        return frozenset(out)

    def _k8s_policy(self, policy: NetworkPolicy) -> _Policy:
        spec = policy.spec
        ns = policy.namespace
        types = frozenset(spec.effective_policy_types())
        selector = _k8s_pod_selector(K8sSelector.from_dict(spec.pod_selector.as_dict()))
        # Rules of a type not in policyTypes are ignored (conversion.go).
        ingress = [(r.from_, r.ports) for r in spec.ingress or []] if "Ingress" in types else []
        egress = [(r.to, r.ports) for r in spec.egress or []] if "Egress" in types else []
        return _Policy(
            kind="NetworkPolicy",
            name=f"{ns}/{policy.name}",
            chain=f"knp/{ns}/{policy.name}",
            order=K8S_ORDER,
            sort_name=f"{ns}/knp.default.{policy.name}",
            types=types,
            ingress=tuple(
                r
                for i, (peers, ports) in enumerate(ingress)
                for r in _k8s_rule("ingress", i, ns, peers, ports)
            ),
            egress=tuple(
                r for i, (peers, ports) in enumerate(egress) for r in _k8s_rule("egress", i, ns, peers, ports)
            ),
            selected=self._select(selector, ns),
        )

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
            chain=f"cnp/{ns}/{policy.name}",
            order=spec.order,
            sort_name=f"{ns}/{policy.name}",
            types=types,
            ingress=_calico_rules("ingress", spec.ingress, ns) if "Ingress" in types else (),
            egress=_calico_rules("egress", spec.egress, ns) if "Egress" in types else (),
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
            chain=f"gnp/{policy.name}",
            order=spec.order,
            sort_name=policy.name,
            types=types,
            ingress=_calico_rules("ingress", spec.ingress, None) if "Ingress" in types else (),
            egress=_calico_rules("egress", spec.egress, None) if "Egress" in types else (),
            selected=self._select(selector or "all()", None),
        )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def selector_set_name(selector: str) -> str:
    """``sel-<hash>`` of a canonical, scoped Calico selector: every rule using it shares the set."""
    return f"sel-{_digest(selector)}"


def nets_set_name(nets: tuple[IPv4Network, ...]) -> str:
    """``net-<hash>`` of a CIDR list (nets, notNets, ipBlock cidr or except)."""
    return "net-" + _digest(",".join(str(n) for n in nets))


def port_set_name(port: str) -> str:
    # IANA_SVC_NAME (at most 15 lowercase letters, digits, '-') is what Kubernetes allows; anything
    # else is hashed so the set name stays an nft identifier.
    return f"port-{port}" if _PORT_NAME.fullmatch(port) else f"port-{_digest(port)}"


# -- rules ------------------------------------------------------------------------------------------


def _action(rule: _Rule, policy: _Policy) -> str:
    if rule.action in ("Allow", "Pass"):
        # Pass leaves the tier; the default tier is the only one, so the namespace profile (which
        # allows) decides: the same verdict as Allow here.
        return _MARK_ACCEPT
    if rule.action == "Deny":
        return "drop"
    prefix = f"calico-packet {policy.name} {rule.label}: "
    return f"log prefix {_quote(prefix, _LOG_PREFIX_MAX)}"


def _rule_matches(rule: _Rule, used: _Uses) -> list[list[str]]:
    """The nft matches of one Calico rule: criteria ANDed in one nft rule, an OR (named and numeric
    ports, notICMP) split into consecutive nft rules with the same action. [] when it can never
    match."""
    alternatives: list[list[str]] = [[]]

    def both(options: Sequence[Sequence[str]]) -> None:
        nonlocal alternatives
        alternatives = [[*a, *o] for a in alternatives for o in options]

    protocol = rule.protocol
    if protocol == _UNKNOWN_PROTOCOL:
        return []
    if protocol is not None:
        both([[f"meta l4proto {_NFT_PROTOCOLS.get(protocol, str(protocol))}"]])
    if rule.not_protocol is not None and rule.not_protocol != _UNKNOWN_PROTOCOL:
        both([[f"meta l4proto != {_NFT_PROTOCOLS.get(rule.not_protocol, str(rule.not_protocol))}"]])
    if rule.icmp is not None:
        if protocol is not None and protocol not in _ICMP:
            return []
        both([_icmp_match(rule.icmp, protocol)])
    if rule.not_icmp is not None and (protocol is None or protocol in _ICMP):
        options: list[list[str]] = []
        if protocol is None:
            options.append(["meta l4proto != { icmp, ipv6-icmp }"])
        kind, code = rule.not_icmp
        word = "icmpv6" if protocol == 58 else "icmp"
        if kind is not None:
            options.append([f"{word} type != {kind}"])
            if code is not None:
                options.append([f"{word} type {kind}", f"{word} code != {code}"])
        elif code is not None:
            options.append([f"{word} code != {code}"])
        if not options:
            return []
        both(options)
    sides: tuple[tuple[_Entity, Literal["s", "d"]], ...] = ((rule.source, "s"), (rule.destination, "d"))
    for entity, side in sides:
        options_or_none = _entity_matches(entity, side, protocol, used)
        if options_or_none is None:
            return []
        both(options_or_none)
    return alternatives


def _icmp_match(icmp: tuple[int | None, int | None], protocol: int | None) -> list[str]:
    kind, code = icmp
    word = "icmpv6" if protocol == 58 else "icmp"
    out = []
    if kind is not None:
        out.append(f"{word} type {kind}")
    if code is not None:
        out.append(f"{word} code {code}")
    return out or [f"meta l4proto {_NFT_PROTOCOLS.get(protocol or 0, '{ icmp, ipv6-icmp }')}"]


def _entity_matches(
    entity: _Entity, side: Literal["s", "d"], protocol: int | None, used: _Uses
) -> list[list[str]] | None:
    """The alternatives of one EntityRule (source ``s`` or destination ``d``), None when it never matches."""
    if entity == _ANY:
        return [[]]
    common: list[str] = []
    if entity.nets is not None:
        common.append(f"ip {side}addr @{used.net_list(entity.nets)}")
    if entity.not_nets is not None:
        common.append(f"ip {side}addr != @{used.net_list(entity.not_nets)}")
    if entity.selector is not None:
        common.append(f"ip {side}addr @{used.selector(entity.selector)}")
    if entity.not_selector is not None:
        common.append(f"ip {side}addr != @{used.selector(entity.not_selector)}")
    ported = [] if protocol is not None else [_PORTED]
    numeric = [p for p in entity.ports or () if p.name is None]
    named = [p.name for p in entity.ports or () if p.name is not None]
    not_numeric = [p for p in entity.not_ports if p.name is None]
    not_named = [p.name for p in entity.not_ports if p.name is not None]
    if not_numeric:
        common.extend([*ported, f"th {side}port != {_port_set(not_numeric)}"])
    if side == "d":
        # A named port is the destination pod's container port of that name and protocol (k8s.md
        # 4.8); an address that is no pod has none, so it is not in the set.
        for name in sorted(set(not_named)):
            common.append(f"ip daddr . meta l4proto . th dport != @{used.port(name)}")
    # On the source side a named port is never resolved (Calico resolves named source ports on the
    # source pod; acknet's clients use ephemeral ports, which no name covers).
    if entity.ports is None:
        return [common]
    options: list[list[str]] = []
    if numeric:
        options.append([*common, *ported, f"th {side}port {_port_set(numeric)}"])
    if side == "d":
        for name in dict.fromkeys(named):
            options.append([*common, f"ip daddr . meta l4proto . th dport @{used.port(name)}"])
    return options or None


def _port_set(ports: Sequence[_Port]) -> str:
    items = [
        str(p.low) if p.low == p.high else f"{p.low}-{p.high}"
        for p in sorted(set(ports), key=lambda p: (p.low, p.high))
    ]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _chain_name(policy: _Policy, direction: Direction) -> str:
    stem = policy.chain
    if len(stem) > _CHAIN_NAME_MAX or not _IDENT.fullmatch(stem):
        stem = f"{stem.partition('/')[0]}/{_digest(stem)}"
    return f"{stem}/{direction}"


def _vmap(key: str, dispatch: Sequence[tuple[str, str]]) -> list[str]:
    if not dispatch:  # nft refuses an empty anonymous map
        return []
    entries = ", ".join(f'"{ifname}" : jump {chain}' for ifname, chain in dispatch)
    return [f"{key} vmap {{ {entries} }}"]


def _base_chain(hook: str, body: Sequence[str]) -> list[str]:
    return [
        f"\tchain {hook} {{",
        f"\t\ttype filter hook {hook} priority filter; policy accept;",
        *(f"\t\t{line}" for line in body),
        "\t}",
    ]


# -- intervals --------------------------------------------------------------------------------------


def _interval_elements(nets: Iterable[IPv4Network], holes: Iterable[IPv4Address]) -> tuple[str, ...]:
    """Interval set elements covering ``nets`` but ``holes``: overlaps merged (an interval set refuses
    them), adjacent intervals kept apart so one pod's address is one element that can be added or
    deleted alone."""
    spans = sorted((int(n.network_address), int(n.broadcast_address)) for n in nets)
    merged: list[list[int]] = []
    for low, high in spans:
        if merged and low <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    cut = sorted({int(h) for h in holes})
    out: list[str] = []
    for low, high in merged:
        start = low
        for hole in cut[bisect_left(cut, low) : bisect_right(cut, high)]:
            if hole > start:
                out.extend(_span_text(start, hole - 1))
            start = hole + 1
        if start <= high:
            out.extend(_span_text(start, high))
    return tuple(out)


def _span_text(low: int, high: int) -> list[str]:
    if low == high:
        return [str(IPv4Address(low))]
    size = high - low + 1
    if size & (size - 1) == 0 and low % size == 0:
        return [f"{IPv4Address(low)}/{32 - size.bit_length() + 1}"]
    return [f"{IPv4Address(low)}-{IPv4Address(high)}"]


# -- set edits --------------------------------------------------------------------------------------

_SET_HEADER = re.compile(r"^\tset (\S+) \{$")
_ELEMENTS = "\t\telements = { "


def set_element_changes(old_text: str, new_text: str) -> str | None:
    """An nft script turning table ``old_text`` into ``new_text`` by set element edits alone, or None
    when anything but set elements differs (then the table is replaced whole). "" when equal.

    Deletions come before additions (an interval set refuses an element overlapping one still in it),
    and nft runs the script as one transaction, so no packet sees a half-edited set.
    """
    old_skeleton, old_sets = _split_elements(old_text)
    new_skeleton, new_sets = _split_elements(new_text)
    if old_skeleton != new_skeleton:
        return None
    header = new_skeleton[0].removesuffix(" {").removeprefix("table ")
    deletes, adds = [], []
    for name in sorted(set(old_sets) | set(new_sets)):
        before, after = old_sets.get(name, ()), new_sets.get(name, ())
        if before == after:
            continue
        before_set, after_set = set(before), set(after)
        gone = [e for e in before if e not in after_set]
        came = [e for e in after if e not in before_set]
        if gone:
            deletes.append(f"delete element {header} {name} {{ {', '.join(gone)} }}")
        if came:
            adds.append(f"add element {header} {name} {{ {', '.join(came)} }}")
    return "".join(line + "\n" for line in deletes + adds)


def table_changes(old_text: str, new_text: str) -> str | None:
    """An nft script turning the loaded table ``old_text`` into ``new_text`` in one transaction, or None
    when the table itself differs (then it is replaced whole). "" when equal.

    Whole chains are rewritten, as Felix rewrote them (STYLE.md): a chain whose rules changed is
    flushed and filled again, a new chain or set is declared, a chain or set that went is flushed and
    deleted; sets whose definition stayed get element edits (``set_element_changes``). nft runs the
    script as one transaction, so no packet sees half of it, and the table and its conntrack-based
    first rules stay: a policy change costs the chains it touches, not the whole table.
    """
    old_header, old_sets, old_chains = _blocks(old_text)
    new_header, new_sets, new_chains = _blocks(new_text)
    if old_header != new_header:
        return None
    header = new_header[0].removesuffix(" {").removeprefix("table ")
    gone_chains = sorted(old_chains.keys() - new_chains.keys())
    changed_chains = sorted(
        c for c in old_chains.keys() & new_chains.keys() if old_chains[c] != new_chains[c]
    )
    new_chain_names = sorted(new_chains.keys() - old_chains.keys())
    kept_sets = {n for n in old_sets.keys() & new_sets.keys() if old_sets[n][0] == new_sets[n][0]}
    gone_sets = sorted(old_sets.keys() - kept_sets)
    added_sets = sorted(new_sets.keys() - kept_sets)
    lines = [f"flush chain {header} {c}" for c in gone_chains + changed_chains]
    lines += [f"delete chain {header} {c}" for c in gone_chains]
    lines += [f"delete set {header} {n}" for n in gone_sets]
    deletes, adds = [], []
    for name in sorted(kept_sets):
        before, after = old_sets[name][1], new_sets[name][1]
        if before == after:
            continue
        before_set, after_set = set(before), set(after)
        gone = [e for e in before if e not in after_set]
        came = [e for e in after if e not in before_set]
        if gone:
            deletes.append(f"delete element {header} {name} {{ {', '.join(gone)} }}")
        if came:
            adds.append(f"add element {header} {name} {{ {', '.join(came)} }}")
    lines += deletes + adds
    declared: list[str] = []
    for name in added_sets:
        definition, elements = new_sets[name]
        declared += [f"\tset {name} {{", *definition]
        if elements:
            declared.append(_ELEMENTS + ", ".join(elements) + " }")
        declared.append("\t}")
    for name in new_chain_names + changed_chains:
        declared += [f"\tchain {name} {{", *new_chains[name], "\t}"]
    if declared:
        lines += [f"table {header} {{", *declared, "}"]
    return "".join(line + "\n" for line in lines)


def _blocks(
    text: str,
) -> tuple[list[str], dict[str, tuple[tuple[str, ...], tuple[str, ...]]], dict[str, tuple[str, ...]]]:
    """A rendered table as (its own lines, set name -> (definition lines, elements), chain name -> rule
    lines)."""
    header: list[str] = []
    sets: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    chains: dict[str, tuple[str, ...]] = {}
    kind, name = "", ""
    body: list[str] = []
    elements: tuple[str, ...] = ()
    for line in text.splitlines():
        if not kind:
            match = _BLOCK_HEADER.match(line)
            if match:
                kind, name, body, elements = match.group(1), match.group(2), [], ()
            elif line.strip():
                header.append(line)
            continue
        if line == "\t}":
            if kind == "set":
                sets[name] = (tuple(body), elements)
            else:
                chains[name] = tuple(body)
            kind = ""
        elif kind == "set" and line.startswith(_ELEMENTS) and line.endswith(" }"):
            elements = tuple(line[len(_ELEMENTS) : -2].split(", "))
        else:
            body.append(line)
    return header, sets, chains


_BLOCK_HEADER = re.compile(r"^\t(set|chain) (\S+) \{$")


def _split_elements(text: str) -> tuple[list[str], dict[str, tuple[str, ...]]]:
    skeleton: list[str] = []
    sets: dict[str, tuple[str, ...]] = {}
    current: str | None = None
    for line in text.splitlines():
        header = _SET_HEADER.match(line)
        if header:
            current = header.group(1)
        elif line == "\t}":
            current = None
        if current is not None and line.startswith(_ELEMENTS) and line.endswith(" }"):
            sets[current] = tuple(line[len(_ELEMENTS) : -2].split(", "))
            continue
        skeleton.append(line)
    return skeleton, sets


# -- Kubernetes and Calico to compiled rules (libcalico-go conversion.go, rules.go) ---------------


def _k8s_rule(
    direction: Direction,
    index: int,
    namespace: str,
    peers: Sequence[NetworkPolicyPeer] | None,
    ports: Sequence[NetworkPolicyPort] | None,
) -> list[_Rule]:
    """One Kubernetes rule as Calico Allow rules: one per (peer, protocol); no peers = any peer, no
    ports = any protocol and port (conversion.go k8sRuleToCalico)."""
    entities = [_k8s_peer(namespace, p) for p in peers] if peers else [_ANY]
    groups: dict[str, list[_Port] | None] = {}
    for p in ports or []:
        protocol = p.protocol or "TCP"  # the API server defaults a missing protocol to TCP
        if p.port is None:
            groups[protocol] = None  # {protocol: X} alone: every port of X
            continue
        matches = groups.get(protocol, [])
        if matches is None:
            continue
        matches.append(
            _Port(name=p.port)
            if isinstance(p.port, str)
            else _Port(p.port, p.end_port if p.end_port is not None else p.port)
        )
        groups[protocol] = matches
    protocols: list[tuple[int | None, tuple[_Port, ...] | None]] = (
        [(_PROTOCOL_NUMBERS[proto], tuple(m) if m is not None else None) for proto, m in groups.items()]
        if ports
        else [(None, None)]
    )
    label = f"{direction} rule {index + 1}"
    rules: list[_Rule] = []
    for entity in entities:
        for number, port_matches in protocols:
            # The peer is the source of an ingress rule and the destination of an egress rule; ports
            # are always the destination's (the protected pod, or the pod reached).
            if direction == "ingress":
                rules.append(
                    _Rule("Allow", label, number, source=entity, destination=_Entity(ports=port_matches))
                )
            else:
                rules.append(_Rule("Allow", label, number, destination=replace(entity, ports=port_matches)))
    return rules


def _k8s_peer(namespace: str, peer: NetworkPolicyPeer) -> _Entity:
    if peer.ip_block is not None:
        # ipBlock -> nets and notNets, normalised (host bits cleared) as Calico's ParseCIDR does.
        return _entity(policy_namespace=namespace, nets=[peer.ip_block.cidr], not_nets=peer.ip_block.except_)
    pod_sel = ""
    if peer.pod_selector is not None:
        pod_sel = _k8s_pod_selector(K8sSelector.from_dict(peer.pod_selector.as_dict()))
    ns_sel = ""
    if peer.namespace_selector is not None:
        # {} -> all(): every namespace; nil stays "" -> the policy's own namespace.
        ns_sel = K8sSelector.from_dict(peer.namespace_selector.as_dict()).to_calico()
    return _entity(policy_namespace=namespace, selector=pod_sel, namespace_selector=ns_sel)


def _calico_rules(direction: Direction, rules: Iterable[Rule], namespace: str | None) -> tuple[_Rule, ...]:
    return tuple(
        _Rule(
            action=rule.action,
            label=f"{direction} rule {i + 1}",
            protocol=_protocol_number(rule.protocol),
            not_protocol=_protocol_number(rule.not_protocol),
            icmp=_icmp(rule.icmp),
            not_icmp=_icmp(rule.not_icmp),
            source=_calico_entity(rule.source, namespace),
            destination=_calico_entity(rule.destination, namespace),
        )
        for i, rule in enumerate(rules)
    )


def _calico_entity(entity: EntityRule, namespace: str | None) -> _Entity:
    return _entity(
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


def _entity(
    *,
    policy_namespace: str | None,
    nets: Sequence[str] = (),
    not_nets: Sequence[str] = (),
    selector: str = "",
    not_selector: str = "",
    namespace_selector: str = "",
    service_accounts: ServiceAccountMatch | None = None,
    ports: Sequence[_Port] | None = None,
    not_ports: Sequence[_Port] = (),
) -> _Entity:
    positive = _endpoint_selector(
        namespace_selector,
        selector,
        _service_account_selector(service_accounts),
        not_selector,
        policy_namespace,
    )
    return _Entity(
        nets=_nets(nets) if nets else None,
        not_nets=_nets(not_nets) if not_nets else None,
        selector=str(parse_calico_selector(positive)) if positive else None,
        not_selector=str(parse_calico_selector(not_selector)) if not_selector else None,
        ports=tuple(ports) if ports is not None else None,
        not_ports=tuple(not_ports),
    )


def _endpoint_selector(
    namespace_selector: str,
    selector: str,
    service_account_selector: str,
    not_selector: str,
    policy_namespace: str | None,
) -> str:
    """The positive selector of an EntityRule, as libcalico-go rules.go ``getEndpointSelector``: a
    namespaceSelector becomes a ``pcns.`` selector (``all()`` -> any namespaced endpoint, ``global()``
    -> only non-namespaced ones); without one a namespaced policy keeps to its own namespace. The
    namespace part is added as soon as any selector field is used, notSelector included, and
    notSelector itself stays unscoped."""
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


def _workload_labels(pod: PlannedPod, namespace_labels: Mapping[str, str]) -> dict[str, str]:
    return {
        **pod.labels,
        **namespace_labels,
        LABEL_ORCHESTRATOR: "k8s",
        LABEL_SERVICE_ACCOUNT: pod.service_account,
    }


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
    listed = ", ".join(f"'{n}'" for n in match.names)
    return _and(selector, f"{LABEL_SERVICE_ACCOUNT} in {{ {listed} }}")


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


def _icmp(fields: ICMPFields | None) -> tuple[int | None, int | None] | None:
    return None if fields is None else (fields.type, fields.code)


def _protocol_number(protocol: int | str | None) -> int | None:
    if protocol is None:
        return None
    if isinstance(protocol, int):
        return protocol
    text = protocol.upper()
    return int(text) if text.isdigit() else _PROTOCOL_NUMBERS.get(text, _UNKNOWN_PROTOCOL)


def _calico_port(port: int | str) -> _Port:
    if isinstance(port, int):
        return _Port(port, port)
    low, sep, high = port.partition(":")
    if sep and low.isdigit() and high.isdigit():
        return _Port(int(low), int(high))
    if port.isdigit():
        return _Port(int(port), int(port))
    return _Port(name=port)


def _nets(texts: Iterable[str]) -> tuple[IPv4Network, ...]:
    # parse_cidr tolerates host bits and returns the network (Calico: normalizeIPNet / ipNet.String()).
    return tuple(net for net in (parse_cidr(t) for t in texts) if net is not None)


def _quote(text: str, limit: int = _NFT_COMMENT_MAX) -> str:
    """An nft string: no double quotes inside, at most ``limit`` bytes."""
    data = text.replace('"', "'").encode()[:limit]
    return '"' + data.decode(errors="ignore") + '"'
