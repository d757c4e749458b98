"""All-pairs reachability at scale: equivalence classes of endpoints and bitsets, as Kano does.

``Reachability.verdict`` follows one packet and names every hop; at 10,000 pods that is 10^8 pairs,
hours of Python. Most of those pairs are the same question asked again: two pods of one Deployment
on two nodes carry the same labels, namespace, ports and security groups, so every policy, group and
route treats them alike. This module asks each question once per class:

- **Classes.** Endpoints are grouped by everything a verdict between two endpoints on different
  instances depends on: kind, datapath, VPC, cluster (and the cluster of the instance, for Flannel
  vxlan), the ENI's security groups, the *security-group class* of the address (the health-check
  range, the groups whose members hold it, the rule CIDRs that contain it), the declared ports and
  whether a command runs, the policy identity in every cluster's model (matched selectors, nets and
  named ports: ``policy._Identity.cls``), the policies that select it per direction, whether the VPC
  route table delivers to it (Flannel), and for Flannel vxlan endpoints their instance (the tunnel
  runs between two nodes' addresses). Nothing in ``reachability.py`` looks at anything else, so two
  endpoints of one class get the same verdicts (and the tests check it against the per-pair path).
- **Bitsets.** A Python int over class indices. Per policy rule, the peers it matches are an AND of
  the bitsets of its selector and net lists (``policy._Entity``) and the port criterion; the rules of
  the policies that select a class are then walked in Calico order over a *remaining* bitset (the
  first Allow, Deny or Pass takes the peers it matches; Log takes none), which gives the allowed
  peers of a whole class at once. Security groups and routing are judged once per pair of
  *network signatures* (a few per cluster) through ``Reachability._network_path`` itself.
- **Same instance.** A pair on one instance differs only where ``reachability.py`` makes it differ:
  no security group when the packet stays in the node, and a pod's own node always passes its
  ingress policy. Those pairs (a few per node squared) are judged from the same class bits.
- **Per pair only for output.** ``allowed`` answers a pair from the bits; ``verdicts`` builds each
  pair's ``Verdict`` through ``Reachability.verdict``, so the hops and reasons are exactly the
  per-pair ones (they are per pod: they name the pod, its veth and its ENI).

Services and SLBs are not classes (their paths depend on the client's node); they are judged pair by
pair, as ``Reachability.check`` does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from acknet.analysis.endpoints import Destination, Endpoint
from acknet.analysis.policy import (
    _ICMP,
    _PROTOCOL_NUMBERS,
    PolicyModel,
    _Entity,
    _entity_matches,
    _icmp_matches,
    _Identity,
    _Rule,
)
from acknet.analysis.reachability import PortSpec, Reachability, Verdict, _stays_in_instance
from acknet.analysis.security_group import HEALTH_CHECK_SOURCE
from acknet.controllers.state import Plan, Protocol
from acknet.model.validate import parse_cidr

Direction = Literal["ingress", "egress"]


@dataclass(slots=True)
class EndpointClass:
    """Endpoints that every policy, security group and route treats alike (see the module doc)."""

    index: int
    members: list[Endpoint]
    net_signature: int  # index into the matrix's network signatures

    @property
    def first(self) -> Endpoint:
        return self.members[0]

    @property
    def name(self) -> str:
        """``c12 ns-3/app-7-... (+4)``: the class and its first member."""
        more = f" (+{len(self.members) - 1})" if len(self.members) > 1 else ""
        return f"c{self.index} {self.first.name}{more}"


class ReachabilityMatrix:
    """Every source to every destination on each destination's declared ports (or ``ports``).

    Built once; ``allowed`` answers one pair in a few bit tests, ``rows`` gives the class matrix,
    ``verdicts`` the per-pair ``Verdict`` objects (computed lazily, with today's hops and reasons).
    """

    def __init__(
        self,
        plan: Plan,
        sources: Iterable[Endpoint],
        destinations: Iterable[Destination],
        ports: Sequence[PortSpec] | None = None,
        reachability: Reachability | None = None,
    ) -> None:
        self.reach = reachability if reachability is not None else Reachability(plan)
        self.plan = plan
        self.sources = list(sources)
        dsts = self._given = list(destinations)
        # Services (and any destination behind a translation) are judged pair by pair.
        self.services: list[Destination] = [d for d in dsts if not isinstance(d, Endpoint)]
        self.destinations = [d for d in dsts if isinstance(d, Endpoint)]
        self.ports = list(ports) if ports is not None else None
        self._models = {name: self.reach.policy_model(name) for name in sorted(plan.resources.clusters)}
        self._sg_cidrs = _sg_cidrs(plan)
        self._member_groups = _member_groups(self.reach.members)
        self._classify()
        self._policed_classes: dict[tuple[int, Direction], bool] = {}
        self._local: dict[tuple[int, int, int, str], bool] = {}
        self._summary: tuple[dict[tuple[int, int, int, str], bool], int] | None = None
        self._ingress_bits: dict[tuple[object, ...], int] = {}
        self._egress_bits: dict[tuple[object, ...], int] = {}
        self._entity_bits: dict[tuple[str, Direction, _Entity, int | None, str], int] = {}
        self._selector_bits: dict[tuple[str, int], int] = {}
        self._net_bits: dict[tuple[str, int], int] = {}
        self._net_ok: dict[tuple[int, int, int, str], bool | None] = {}
        self._net_columns: dict[tuple[int, int, str], int] = {}
        # port -> destination class -> bitset of source classes allowed (pairs on different instances)
        self.columns: dict[tuple[int, str], dict[int, int]] = {}
        self._compute()

    # -- classes ----------------------------------------------------------------------------------

    def _classify(self) -> None:
        keys: dict[tuple[object, ...], int] = {}
        signatures: dict[tuple[object, ...], int] = {}
        self.classes: list[EndpointClass] = []
        self.class_of: dict[str, int] = {}
        self._signature_members: list[list[Endpoint]] = []
        seen: dict[str, Endpoint] = {}
        for endpoint in (*self.sources, *self.destinations):
            seen.setdefault(endpoint.name, endpoint)
        for endpoint in seen.values():
            signature = self._net_signature(endpoint)
            sig = signatures.get(signature)
            if sig is None:
                sig = signatures[signature] = len(self._signature_members)
                self._signature_members.append([])
            self._signature_members[sig].append(endpoint)
            key = (sig, *self._policy_key(endpoint), endpoint.ports, endpoint.runs_command)
            index = keys.get(key)
            if index is None:
                index = keys[key] = len(self.classes)
                self.classes.append(EndpointClass(index, [], sig))
            self.classes[index].members.append(endpoint)
            self.class_of[endpoint.name] = index
        self._source_mask = _bits(self.class_of[e.name] for e in self.sources)
        self._signature_classes = [0] * len(self._signature_members)
        for cls in self.classes:
            self._signature_classes[cls.net_signature] |= 1 << cls.index
        self._all = (1 << len(self.classes)) - 1

    def _net_signature(self, e: Endpoint) -> tuple[object, ...]:
        """What routing and security groups see of an endpoint (``Reachability._network_path``)."""
        reach = self.reach
        return (
            e.kind,
            e.datapath,
            e.vpc,
            e.cluster,
            reach._nodes.get(e.instance),
            e.eni.security_groups,
            self._sg_address_class(e.ip),
            reach._vpc_hop(e).passes if e.datapath == "flannel" else True,
            e.instance if reach._vxlan(e) else None,
        )

    def _sg_address_class(self, ip: IPv4Address) -> tuple[object, ...]:
        # security_group.evaluate_direction looks at a peer address only through these.
        return (
            ip in HEALTH_CHECK_SOURCE,
            self._member_groups.get(ip, frozenset()),
            tuple(i for i, net in enumerate(self._sg_cidrs) if ip in net),
        )

    def _policy_key(self, e: Endpoint) -> tuple[object, ...]:
        """The endpoint as every cluster's policy sees it: as a peer, and as a policed pod."""
        key: list[object] = []
        for model in self._models.values():
            key.append(model._peer_identity(e).cls)
        own = self._models.get(e.cluster or "") if e.kind == "pod" else None
        if own is not None and own.not_policed(e) is None:
            key.append(
                (own._applicable_to(e.name, "ingress"), own._applicable_to(e.name, "egress"), e.namespace)
            )
        return tuple(key)

    @property
    def class_count(self) -> int:
        return len(self.classes)

    # -- the matrix -------------------------------------------------------------------------------

    def port_list(self) -> list[PortSpec]:
        if self.ports is not None:
            return list(self.ports)
        return sorted({p for d in self.destinations for p in d.ports}, key=lambda p: (p[1], p[0]))

    def _compute(self) -> None:
        dst_classes = sorted({self.class_of[d.name] for d in self.destinations})
        src_classes = sorted({self.class_of[s.name] for s in self.sources})
        for port, protocol in self.port_list():
            wanted = [
                c
                for c in dst_classes
                if self.ports is not None or (port, protocol) in self.classes[c].first.ports
            ]
            if not wanted:
                continue
            # Policed sources grouped by their egress row (a row is cached per policy class).
            rows: dict[int, int] = {}
            policed = 0
            for s in src_classes:
                src = self.classes[s].first
                if self._policed(src, "egress"):
                    row = self._egress_row(src, port, protocol)
                    rows[row] = rows.get(row, 0) | 1 << s
                    policed |= 1 << s
            open_sources = self._source_mask & ~policed
            columns: dict[int, int] = {}
            for d in wanted:
                dst = self.classes[d].first
                if not self._listens(dst, port, protocol):
                    columns[d] = 0
                    continue
                column = self._ingress_column(dst, port, protocol) & self._network_column(d, port, protocol)
                egress = open_sources
                for row, sources in rows.items():
                    if row >> d & 1:
                        egress |= sources
                columns[d] = column & egress & self._source_mask
            self.columns[(port, protocol)] = columns

    def _listens(self, dst: Endpoint, port: int, protocol: str) -> bool:
        return self.reach.listen_hop(dst, port, protocol).passes

    def _policed(self, e: Endpoint, direction: Direction) -> bool:
        """Whether a policy of its cluster selects ``e`` for ``direction`` (the same for its class)."""
        key = (self.class_of[e.name], direction)
        found = self._policed_classes.get(key)
        if found is None:
            found = False
            model = self._models.get(e.cluster or "") if e.kind == "pod" else None
            if model is not None and model.not_policed(e) is None:
                found = bool(model._applicable_to(e.name, direction))
            self._policed_classes[key] = found
        return found

    def _network_column(self, d: int, port: int, protocol: str) -> int:
        """Source classes whose packets reach class ``d`` through routing and security groups."""
        dsig = self.classes[d].net_signature
        key = (dsig, port, protocol)
        found = self._net_columns.get(key)
        if found is None:
            found = 0
            for ssig, classes in enumerate(self._signature_classes):
                if self._network_ok(ssig, dsig, port, protocol):
                    found |= classes
            self._net_columns[key] = found
        return found

    def _network_ok(self, ssig: int, dsig: int, port: int, protocol: str) -> bool:
        """Whether routing and groups pass between two signatures, judged on one pair of their members
        on different instances (``None`` kept when there is no such pair: no pair can ask)."""
        key = (ssig, dsig, port, protocol)
        if key not in self._net_ok:
            pair = self._apart(ssig, dsig)
            self._net_ok[key] = (
                None if pair is None else self.reach._network_path(*pair, port, protocol)[-1].passes
            )
        return bool(self._net_ok[key])

    def _apart(self, ssig: int, dsig: int) -> tuple[Endpoint, Endpoint] | None:
        """Two members of the signatures on different instances (the result holds for every such pair)."""
        srcs, dsts = self._signature_members[ssig], self._signature_members[dsig]
        for src in srcs[:2]:
            for dst in dsts:
                if dst.instance != src.instance:
                    return src, dst
        for dst in dsts[:2]:
            for src in srcs:
                if dst.instance != src.instance:
                    return src, dst
        return None

    # -- policy as bitsets ------------------------------------------------------------------------

    def _ingress_column(self, dst: Endpoint, port: int, protocol: str) -> int:
        """Source classes that ``dst``'s ingress policy lets in on ``port/protocol``."""
        if not self._policed(dst, "ingress"):
            return self._all
        model = self._models[dst.cluster or ""]
        applicable = model._applicable_to(dst.name, "ingress")
        local = model._pod_identity(dst.name)
        key = (dst.cluster, applicable, local.cls, port, protocol)
        found = self._ingress_bits.get(key)
        if found is None:
            found = self._walk(model, "ingress", applicable, local, port, protocol)
            self._ingress_bits[key] = found
        return found

    def _egress_row(self, src: Endpoint, port: int, protocol: str) -> int:
        """Destination classes that ``src``'s egress policy lets out to on ``port/protocol``."""
        model = self._models[src.cluster or ""]
        applicable = model._applicable_to(src.name, "egress")
        local = model._pod_identity(src.name)
        key = (src.cluster, applicable, local.cls, port, protocol)
        found = self._egress_bits.get(key)
        if found is None:
            found = self._walk(model, "egress", applicable, local, port, protocol)
            self._egress_bits[key] = found
        return found

    def _walk(
        self,
        model: PolicyModel,
        direction: Direction,
        applicable: tuple[int, ...],
        local: _Identity,
        port: int,
        protocol: str,
    ) -> int:
        """``PolicyModel._evaluate`` for every peer class at once: the rules in Calico order over the
        peers not yet decided; the first Allow or Pass allows, the first Deny denies, Log goes on, and
        the peers no rule took are denied at the end of the tier."""
        proto = protocol.upper()
        number = _PROTOCOL_NUMBERS.get(proto)
        remaining = self._all
        allowed = 0
        for index in applicable:
            for rule in model._policies[index].rules(direction):
                if not remaining:
                    return allowed
                if not _protocol_matches(rule, number):
                    continue
                if direction == "ingress":
                    if not _entity_matches(rule.destination, local, port, proto):
                        continue
                    matched = self._peers(model, direction, rule.source, None, proto)
                else:
                    if not _entity_matches(rule.source, local, None, proto):
                        continue
                    matched = self._peers(model, direction, rule.destination, port, proto)
                matched &= remaining
                if not matched or rule.action == "Log":
                    continue
                if rule.action in ("Allow", "Pass"):
                    allowed |= matched
                remaining &= ~matched
        return allowed

    def _peers(
        self, model: PolicyModel, direction: Direction, entity: _Entity, port: int | None, protocol: str
    ) -> int:
        """The classes whose identity in ``model`` an entity rule matches (``policy._entity_matches``)."""
        key = (model.cluster, direction, entity, port, protocol)
        found = self._entity_bits.get(key)
        if found is not None:
            return found
        bits = self._all
        if entity.nets is not None:
            bits &= self._nets(model, entity.nets)
        if entity.not_nets is not None:
            bits &= ~self._nets(model, entity.not_nets)
        if entity.selector is not None:
            bits &= self._selectors(model, entity.selector)
        if entity.not_selector is not None:
            bits &= ~self._selectors(model, entity.not_selector)
        ports_only = replace(entity, nets=None, not_nets=None, selector=None, not_selector=None)
        named = any(m.name is not None for m in (*(entity.ports or ()), *entity.not_ports))
        if port is not None and named:
            # A named port is the peer's own container port: judged class by class.
            keep = 0
            for cls in self.classes:
                if bits >> cls.index & 1 and _entity_matches(
                    ports_only, model._peer_identity(cls.first), port, protocol
                ):
                    keep |= 1 << cls.index
            bits = keep
        elif not _entity_matches(ports_only, _NO_ONE, port, protocol):
            bits = 0
        self._entity_bits[key] = bits
        return bits

    def _selectors(self, model: PolicyModel, selector: int) -> int:
        key = (model.cluster, selector)
        if key not in self._selector_bits:
            self._index_identities(model)
        return self._selector_bits.get(key, 0)

    def _nets(self, model: PolicyModel, nets: int) -> int:
        key = (model.cluster, nets)
        if key not in self._net_bits and (model.cluster, -1) not in self._net_bits:
            self._index_identities(model)
        return self._net_bits.get(key, 0)

    def _index_identities(self, model: PolicyModel) -> None:
        """Selector index -> classes that match it, and net list -> classes inside it, in one pass."""
        marker = (model.cluster, -1)
        if marker in self._net_bits:
            return
        self._net_bits[marker] = 0
        for cls in self.classes:
            identity = model._peer_identity(cls.first)
            bit = 1 << cls.index
            for s in identity.selectors:
                self._selector_bits[(model.cluster, s)] = self._selector_bits.get((model.cluster, s), 0) | bit
            for n in identity.nets:
                self._net_bits[(model.cluster, n)] = self._net_bits.get((model.cluster, n), 0) | bit
        for s in range(len(model._selectors)):
            self._selector_bits.setdefault((model.cluster, s), 0)

    # -- answers ----------------------------------------------------------------------------------

    def allowed(self, src: Endpoint, dst: Endpoint, port: int, protocol: str) -> bool:
        """The verdict of one pair, from the bits (what ``Reachability.verdict(...).allowed`` says)."""
        s, d = self.class_of[src.name], self.class_of[dst.name]
        key = (port, protocol.upper())
        if src.instance != dst.instance:
            column = self.columns.get(key, {}).get(d)
            if column is None:
                column = self._column(d, port, protocol)
            return bool(column >> s & 1)
        return self._same_instance(src, dst, port, protocol)

    def _column(self, d: int, port: int, protocol: str) -> int:
        # A port outside the computed ones (asked directly): compute its column now.
        dst = self.classes[d].first
        if not self._listens(dst, port, protocol):
            return 0
        column = self._ingress_column(dst, port, protocol) & self._network_column(d, port, protocol)
        egress = 0
        for cls in self.classes:
            src = cls.first
            if not self._policed(src, "egress") or self._egress_row(src, port, protocol) >> d & 1:
                egress |= 1 << cls.index
        return column & egress

    def _same_instance(self, src: Endpoint, dst: Endpoint, port: int, protocol: str) -> bool:
        """A pair on one instance: ``Reachability.path`` with the node's own exceptions. The same for
        every pair of the two classes on one instance, so it is kept per class pair."""
        s, d = self.class_of[src.name], self.class_of[dst.name]
        key = (s, d, port, protocol)
        found = self._local.get(key)
        if found is None:
            found = self._local[key] = self._judge_same_instance(src, dst, s, d, port, protocol)
        return found

    def _judge_same_instance(
        self, src: Endpoint, dst: Endpoint, s: int, d: int, port: int, protocol: str
    ) -> bool:
        if self._policed(src, "egress") and not self._egress_row(src, port, protocol) >> d & 1:
            return False
        if src.vpc != dst.vpc:
            return False
        if not _stays_in_instance(src, dst):
            # An exclusive ENI: the packet leaves through the groups even on its own node. The class
            # pair's off-instance answer holds; when it has none (no such pair), this pair is judged.
            sig_s, sig_d = self.classes[s].net_signature, self.classes[d].net_signature
            self._network_ok(sig_s, sig_d, port, protocol)
            passes = self._net_ok[(sig_s, sig_d, port, protocol)]
            if passes is None:
                passes = self.reach._network_path(src, dst, port, protocol)[-1].passes
            if not passes:
                return False
        return self._after_network(src, dst, s, port, protocol)

    def _after_network(self, src: Endpoint, dst: Endpoint, s: int, port: int, protocol: str) -> bool:
        # types.go: traffic from the pod's own node is always allowed; anything else is policed.
        own_node = src.on_host_stack and src.instance == dst.instance
        if dst.kind == "pod" and not own_node and not self._ingress_column(dst, port, protocol) >> s & 1:
            return False
        return self._listens(dst, port, protocol)

    def pairs(self) -> Iterator[tuple[Endpoint, Endpoint, int, Protocol]]:
        """Every (source, destination, port, protocol) in ``Reachability.check``'s order."""
        for src in self.sources:
            for dst in self.destinations:
                if src.name == dst.name:
                    continue
                for port, protocol in self.ports if self.ports is not None else dst.ports:
                    yield src, dst, port, protocol

    def verdicts(self) -> Iterator[Verdict]:
        """The per-pair verdicts with hops and reasons, Services included, exactly as
        ``Reachability.check`` gives them (same order, same reasons), one at a time."""
        return self.reach.verdicts(self.sources, self._given, self.ports)

    def rows(self) -> Iterator[tuple[tuple[int, str], int, int]]:
        """(port, source class, bitset of destination classes) for pairs on different instances."""
        for spec, columns in self.columns.items():
            by_source: dict[int, int] = {}
            for d, column in columns.items():
                bit = 1 << d
                left = column
                while left:
                    low = left & -left
                    s = low.bit_length() - 1
                    by_source[s] = by_source.get(s, 0) | bit
                    left ^= low
            for s in sorted({self.class_of[e.name] for e in self.sources}):
                yield spec, s, by_source.get(s, 0)

    def exceptions(self) -> Iterator[tuple[Endpoint, Endpoint, int, Protocol, bool]]:
        """Pairs on one instance whose verdict differs from their classes' cell (no group between them,
        or a pod's own node), and nothing else; self-pairs are left out as everywhere."""
        differing, _ = self._same_instance_summary()
        if not differing:
            return
        by_instance = self._destinations_by_instance()
        for src in self.sources:
            s = self.class_of[src.name]
            for dst, d in by_instance.get(src.instance, ()):
                if dst.name == src.name:
                    continue
                for port, protocol in self._ports_of(dst):
                    here = differing.get((s, d, port, protocol))
                    if here is not None:
                        yield src, dst, port, protocol, here

    @property
    def verdict_count(self) -> int:
        """How many pod/instance verdicts all pairs make (Services apart)."""
        sizes = self._destination_sizes()
        total = 0
        for columns in self.columns.values():
            for d in columns:
                total += sizes[d] * len(self.sources)
        names = {e.name for e in self.sources}
        return total - sum(len(self._ports_of(e)) for e in self.destinations if e.name in names)

    @property
    def allowed_count(self) -> int:
        """How many of those are allowed (same-instance exceptions and self-pairs accounted for)."""
        src_sizes: dict[int, int] = {}
        for e in self.sources:
            c = self.class_of[e.name]
            src_sizes[c] = src_sizes.get(c, 0) + 1
        by_size: dict[int, int] = {}
        for c, n in src_sizes.items():
            by_size[n] = by_size.get(n, 0) | 1 << c
        dst_sizes = self._destination_sizes()
        total = 0
        for columns in self.columns.values():
            for d, column in columns.items():
                total += dst_sizes[d] * sum(n * (column & bits).bit_count() for n, bits in by_size.items())
        return total + self._same_instance_summary()[1]

    def _cell(self, s: int, d: int, port: int, protocol: str) -> bool:
        return bool(self.columns.get((port, protocol), {}).get(d, 0) >> s & 1)

    def _same_instance_summary(self) -> tuple[dict[tuple[int, int, int, str], bool], int]:
        """The class pairs (and ports) whose same-instance verdict differs from their cell, and how many
        allowed verdicts the same-instance pairs and the left-out self-pairs add to the cells' count."""
        if self._summary is not None:
            return self._summary
        by_instance = self._destinations_by_instance()
        pairs: list[tuple[int, int]] = []
        selves: list[int] = []
        class_of = self.class_of
        for src in self.sources:
            s, name = class_of[src.name], src.name
            for dst, d in by_instance.get(src.instance, ()):
                if dst.name == name:
                    selves.append(d)
                else:
                    pairs.append((s, d))
        differing: dict[tuple[int, int, int, str], bool] = {}
        delta = 0
        # The verdict of a same-instance pair depends on the two classes only: judged on their firsts.
        for (s, d), n in Counter(pairs).items():
            src, dst = self.classes[s].first, self.classes[d].first
            for port, protocol in self._ports_of(dst):
                here = self._same_instance(src, dst, port, protocol)
                if here != self._cell(s, d, port, protocol):
                    differing[(s, d, port, protocol)] = here
                    delta += n if here else -n
        for d, n in Counter(selves).items():
            for port, protocol in self._ports_of(self.classes[d].first):
                delta -= n * self._cell(d, d, port, protocol)
        self._summary = (differing, delta)
        return self._summary

    def _ports_of(self, dst: Endpoint) -> Sequence[PortSpec]:
        return self.ports if self.ports is not None else dst.ports

    def _destinations_by_instance(self) -> dict[str, list[tuple[Endpoint, int]]]:
        out: dict[str, list[tuple[Endpoint, int]]] = {}
        for dst in self.destinations:
            out.setdefault(dst.instance, []).append((dst, self.class_of[dst.name]))
        return out

    def _destination_sizes(self) -> dict[int, int]:
        sizes: dict[int, int] = {}
        for e in self.destinations:
            c = self.class_of[e.name]
            sizes[c] = sizes.get(c, 0) + 1
        return sizes


# A peer with no labels, nets or ports: what a port criterion that names no port is judged on.
_NO_ONE = _Identity("", False, frozenset(), frozenset(), frozenset())


def _protocol_matches(rule: _Rule, number: int | None) -> bool:
    """The protocol and ICMP criteria of ``policy._rule_matches`` (the rest are per peer)."""
    if rule.protocol is not None and rule.protocol != number:
        return False
    if rule.not_protocol is not None and rule.not_protocol == number:
        return False
    if rule.icmp is not None and (number not in _ICMP or not _icmp_matches(rule.icmp)):
        return False
    return not (rule.not_icmp is not None and number in _ICMP and _icmp_matches(rule.not_icmp))


def _bits(indices: Iterable[int]) -> int:
    out = 0
    for i in indices:
        out |= 1 << i
    return out


def _sg_cidrs(plan: Plan) -> list[IPv4Network]:
    """Every CIDR a security group rule names, once."""
    found: dict[IPv4Network, None] = {}
    for group in plan.resources.security_groups.values():
        for rule in group.spec.rules:
            for text in (rule.source_cidr_ip, rule.dest_cidr_ip):
                net = parse_cidr(text) if text is not None else None
                if net is not None:
                    found[net] = None
    return list(found)


def _member_groups(members: dict[str, frozenset[IPv4Address]]) -> dict[IPv4Address, frozenset[str]]:
    out: dict[IPv4Address, set[str]] = {}
    for group, ips in members.items():
        for ip in ips:
            out.setdefault(ip, set()).add(group)
    return {ip: frozenset(groups) for ip, groups in out.items()}
