"""ECS security group verdicts from the model's semantics, for ``acknet check`` and ``trace``.

This is the second, independent implementation of the rules that ``dataplane.render.security_group``
compiles to nftables: it never imports the data plane, so when the two disagree the differential tests
(check vs probe) catch it instead of both sharing one bug.

Semantics (reference/alibaba.md section 3, the ECS security group docs):

- Groups attach to ENIs; the rules of every group on an ENI are pooled. Among the rules that match,
  the smallest priority number wins and at equal priority ``drop`` beats ``accept``.
- Ingress matches protocol + destination port + source; egress matches protocol + destination port +
  destination. A peer is a CIDR or the members of a group (the CIDR wins when a rule has both).
- Implicit defaults: a basic (normal) group denies ingress and allows egress. With
  ``innerAccessPolicy: Accept`` traffic between members of the group is accepted and that overrides
  user drop rules; with ``Drop`` only user rules decide. Enterprise groups deny both directions and
  have no intra-group access. Different groups are isolated unless a rule names the other group.
- CLB health checks come from 100.64.0.0/10 and need no rule (alibaba.md section 4).
- Stateful: only the first packet of a session is judged; replies of an accepted session pass both
  ways. So a verdict here is the verdict for opening a session from ``src`` to ``dst``.

The functions are pure and take plain data so ``check``, ``trace`` and tests can call them directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from acknet.controllers.state import Instance
from acknet.model.cloud import SecurityGroup, SecurityGroupRule
from acknet.model.validate import parse_cidr, parse_port_range

Direction = Literal["ingress", "egress"]
Implicit = Literal["health-check", "intra-group", "default", "no-security-group", "not-an-eni"]

# SLB/CLB health checks and other Alibaba Cloud system probes come from here; the ECS docs say no SG
# rule is needed for them (alibaba.md sections 3 "ACK defaults" and 4 "Health checks").
HEALTH_CHECK_SOURCE = IPv4Network("100.64.0.0/10")

# Their PortRange must be -1/-1: the protocol alone is the match.
_PORTLESS = frozenset({"icmp", "gre", "all"})


@dataclass(frozen=True, slots=True)
class RuleRef:
    """The user rule that decided: its group, its index in the group's ``spec.rules`` (as in the file),
    shown counting from 1 as people number the rules of a file."""

    group: str
    direction: Direction
    index: int
    priority: int
    policy: Literal["accept", "drop"]

    def __str__(self) -> str:
        return f"{self.group} {self.direction} rule {self.index + 1} priority {self.priority} ({self.policy})"


@dataclass(frozen=True, slots=True)
class SGDecision:
    """The verdict of one direction at one ENI, with either the deciding rule or the implicit default."""

    direction: Direction
    allowed: bool
    reason: str
    rule: RuleRef | None = None
    implicit: Implicit | None = None
    group: str | None = None  # the group behind an implicit intra-group verdict

    @property
    def action(self) -> Literal["accept", "drop"]:
        return "accept" if self.allowed else "drop"


@dataclass(frozen=True, slots=True)
class SGVerdict:
    """Egress at the source ENI, then ingress at the destination ENI; a session opens when both accept."""

    egress: SGDecision
    ingress: SGDecision

    @property
    def allowed(self) -> bool:
        return self.egress.allowed and self.ingress.allowed

    @property
    def deciding(self) -> SGDecision:
        """The decision to report: the first that drops, else the ingress one (the last check passed)."""
        if not self.egress.allowed:
            return self.egress
        return self.ingress


def group_members(instances: Iterable[Instance]) -> dict[str, frozenset[IPv4Address]]:
    """Group name -> every private IP on every ENI that carries the group.

    Secondary IPs count: on Terway the pod addresses live on the ENI, so a pod is "in" the groups of
    the ENI that holds its IP (alibaba.md 1.7). Flannel pod addresses are not ENI addresses, which is
    why ACK tells Flannel users to open the pod CIDR in the group.
    """
    members: dict[str, set[IPv4Address]] = {}
    for instance in instances:
        for eni in instance.enis:
            for group in eni.security_groups:
                members.setdefault(group, set()).update(eni.ips)
    return {name: frozenset(ips) for name, ips in members.items()}


def evaluate(
    groups_of_src_eni: Sequence[str] | None,
    groups_of_dst_eni: Sequence[str] | None,
    src_ip: IPv4Address,
    dst_ip: IPv4Address,
    protocol: str,
    port: int | None,
    security_groups: Mapping[str, SecurityGroup],
    members: Mapping[str, frozenset[IPv4Address]],
) -> SGVerdict:
    """Whether a new session ``src_ip -> dst_ip:port/protocol`` passes both ENIs' security groups.

    ``groups_of_*_eni`` is None when that end is not an ENI (the Internet, an SLB, a pod reached on
    its own node): no security group sits there. ``port`` is the destination port as it crosses the
    ENI — for traffic to a node that is the NodePort, not the pod's targetPort, because the VPC
    applies the group before the node's kube-proxy translates it. ``protocol`` is tcp, udp, icmp or
    gre, in any case.
    """
    return SGVerdict(
        egress=evaluate_direction(
            "egress", groups_of_src_eni, dst_ip, protocol, port, security_groups, members
        ),
        ingress=evaluate_direction(
            "ingress", groups_of_dst_eni, src_ip, protocol, port, security_groups, members
        ),
    )


def evaluate_direction(
    direction: Direction,
    eni_groups: Sequence[str] | None,
    peer_ip: IPv4Address,
    protocol: str,
    port: int | None,
    security_groups: Mapping[str, SecurityGroup],
    members: Mapping[str, frozenset[IPv4Address]],
) -> SGDecision:
    """One direction at one ENI. ``peer_ip`` is the source for ingress and the destination for egress.

    The order is the one the ECS docs imply and the renderer compiles: the health-check source (ingress
    only), intra-group access of basic groups with Accept (it overrides user drop rules), the pooled
    user rules by (priority, drop first), then the type's default.
    """
    proto = protocol.lower()
    if eni_groups is None:
        end = "source" if direction == "egress" else "destination"
        return SGDecision(
            direction, True, f"the {end} is not an ECS ENI: no security group applies", implicit="not-an-eni"
        )
    names = list(dict.fromkeys(eni_groups))  # an ENI listing a group twice has it once
    groups = [security_groups[n] for n in names if n in security_groups]
    if not groups:
        return SGDecision(
            direction, True, "the ENI has no security group: nothing filters it", implicit="no-security-group"
        )

    if direction == "ingress" and peer_ip in HEALTH_CHECK_SOURCE:
        return SGDecision(
            direction,
            True,
            f"{peer_ip} is in {HEALTH_CHECK_SOURCE}, the CLB health-check source: no rule is needed",
            implicit="health-check",
        )

    for sg in groups:
        # Basic groups with innerAccessPolicy Accept: members reach each other whatever the rules say
        # ("Accept overrides user drop rules"). Applied in both directions: the policy is about members
        # communicating, and a user egress drop rule must not cut the group off from itself either.
        if sg.inner_access and peer_ip in members.get(sg.name, frozenset()):
            return SGDecision(
                direction,
                True,
                f"basic group {sg.name} allows intra-group traffic (innerAccessPolicy Accept)",
                implicit="intra-group",
                group=sg.name,
            )

    matching = [
        (
            rule.priority,
            rule.policy != "drop",
            order,
            RuleRef(sg.name, direction, index, rule.priority, rule.policy),
        )
        for order, sg in enumerate(groups)
        for index, rule in enumerate(sg.spec.rules)
        if rule.direction == direction and rule_matches(rule, peer_ip, proto, port, members)
    ]
    if matching:
        ref = min(matching, key=lambda m: (m[0], m[1], m[2], m[3].index))[3]
        verb = "accepts" if ref.policy == "accept" else "drops"
        return SGDecision(direction, ref.policy == "accept", f"{ref} {verb}", rule=ref)

    # Egress is open by default for basic groups and closed for enterprise ones. One ENI cannot mix the
    # two types (validation refuses it); if it happens anyway, any basic group opens egress.
    if direction == "egress" and not all(sg.is_enterprise for sg in groups):
        return SGDecision(direction, True, "no rule drops: egress allowed by default", implicit="default")
    suffix = " (enterprise group)" if all(sg.is_enterprise for sg in groups) else ""
    return SGDecision(
        direction, False, f"no rule accepts: {direction} denied by default{suffix}", implicit="default"
    )


def rule_matches(
    rule: SecurityGroupRule,
    peer_ip: IPv4Address,
    protocol: str,
    port: int | None,
    members: Mapping[str, frozenset[IPv4Address]],
) -> bool:
    """Protocol + destination port + peer, as AuthorizeSecurityGroup(Egress) define a rule."""
    if rule.ip_protocol != "all" and rule.ip_protocol != protocol.lower():
        return False
    if rule.ip_protocol not in _PORTLESS and not _port_in(rule.port_range, port):
        return False
    return _peer_matches(rule, peer_ip, members)


def _port_in(port_range: str, port: int | None) -> bool:
    bounds = parse_port_range(port_range)
    if bounds is None or bounds == (-1, -1):  # -1/-1: every port (the only range icmp/gre/all take)
        return True
    return port is not None and bounds[0] <= port <= bounds[1]


def _peer_matches(
    rule: SecurityGroupRule, peer_ip: IPv4Address, members: Mapping[str, frozenset[IPv4Address]]
) -> bool:
    inbound = rule.direction == "ingress"
    cidr_text = rule.source_cidr_ip if inbound else rule.dest_cidr_ip
    group = rule.source_group_id if inbound else rule.dest_group_id
    if cidr_text is not None:  # AuthorizeSecurityGroup: when both are given the CIDR wins
        cidr = parse_cidr(cidr_text)
        return cidr is not None and peer_ip in cidr
    if group is not None:
        return peer_ip in members.get(group, frozenset())
    return False
