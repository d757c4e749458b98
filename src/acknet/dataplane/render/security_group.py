"""ECS security groups as one nftables table per ECS instance namespace.

Owner of the table ``inet <emulation>-sg`` in every ECS namespace (``inet acknet-sg`` for the default
emulation). The table is rendered whole and loaded whole in one ``nft -f`` transaction (see
``replace_script``), never edited rule by rule: rules do not read back exactly as written, and a
half-applied group is worse than an old one. Group membership lives in named sets
(``members-<group>``) so a pod or ENI coming and going is a set edit, not a rule change.

Semantics follow the ECS docs as summarised in reference/alibaba.md section 3; the analysis
(``acknet.analysis.security_group``) implements the same rules independently and the tests check
that both agree with the kernel.

Where the chains hook, and why:

- Ingress is judged in **prerouting** (priority ``mangle``, -150: after conntrack at -200, before the
  node's DNAT at -100), dispatched on ``iifname`` = the ENI. The VPC applies a group to the packet as
  it reaches the ENI, before kube-proxy on the node translates it, so a NodePort or a Service port
  must be opened in the group as such — which is what ACK tells users to do. Prerouting sees both
  traffic for the instance itself (later: input) and Terway pod traffic routed on to a ``cali`` veth
  (later: forward) in one place.
- Egress is judged in **output** (the instance's own traffic) and **forward** (Terway pod traffic,
  which the node routes from the ``cali`` veth out of the pod's ENI by policy routing, so it crosses
  forward with ``oifname`` = the ENI), both dispatched on ``oifname``. Both come after the node's DNAT,
  so the group sees the real destination, as the VPC does.

Each per-ENI chain starts with ``ct state established,related accept`` (groups are stateful:
replies of an accepted session pass both ways, and a rule change does not cut a session whose
verdict it does not change) and ``ct state invalid drop``. A session only exists when its first packet was accepted:
a dropped packet's conntrack entry is never confirmed.

Same-node pod traffic never touches an ENI and so never meets a group (alibaba.md 1.4). ENIs moved
into a pod (Terway exclusive ENI) are not in the instance's namespace and are left out here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network

from acknet.controllers.state import Eni, Instance, Plan
from acknet.model.cloud import SecurityGroup, SecurityGroupRule
from acknet.model.validate import parse_cidr, parse_port_range

TABLE_FAMILY = "inet"
# CLB health checks come from 100.64.0.0/10 and need no rule (alibaba.md section 4, and section 3 "ACK
# defaults"); the SLB emulation probes from there.
HEALTH_CHECK_SOURCE = IPv4Network("100.64.0.0/10")

_NFT_COMMENT_MAX = 128  # NFT_USERDATA_MAXLEN for comments in nftables userspace
_IDENT_OK = re.compile(r"[A-Za-z0-9_.-]+")


def table_name(emulation: str) -> str:
    """The table every ECS namespace of ``emulation`` carries; named after it so ``down`` finds its own."""
    return f"{emulation}-sg"


def eni_ifname(eni: Eni) -> str:
    """ENI n is ethN inside the instance, as on a real ECS (the primary ENI is eth0)."""
    return f"eth{eni.index}"


def set_name(group: str) -> str:
    """The named set of a group's member addresses; deterministic so apply can edit it by name."""
    if _IDENT_OK.fullmatch(group):
        return f"members-{group}"
    # Anything outside nft's identifier alphabet is replaced; a hash keeps two such names apart.
    digest = hashlib.sha256(group.encode()).hexdigest()[:8]
    return f"members-{re.sub(r'[^A-Za-z0-9_.-]', '_', group)}-{digest}"


def replace_script(table_text: str, emulation: str) -> str:
    """``table_text`` wrapped so one ``nft -f`` replaces the table atomically whether or not it exists.

    ``table X`` creates it if missing, ``delete table X`` removes it with everything in it, and the
    definition recreates it; nft runs the file as one transaction, so no packet sees a half table.
    """
    ref = f"{TABLE_FAMILY} {table_name(emulation)}"
    return f"table {ref}\ndelete table {ref}\n{table_text}"


def group_members(instances: Iterable[Instance]) -> dict[str, tuple[IPv4Address, ...]]:
    """Group -> every IP on every ENI that carries it, secondary (Terway pod) addresses included."""
    members: dict[str, set[IPv4Address]] = {}
    for instance in instances:
        for eni in instance.enis:
            for group in eni.security_groups:
                members.setdefault(group, set()).update(eni.ips)
    return {name: tuple(sorted(ips)) for name, ips in members.items()}


def render_security_groups(plan: Plan, emulation: str) -> dict[str, str]:
    """Instance name -> the full text of its ``inet <emulation>-sg`` table."""
    groups = plan.resources.security_groups
    members = group_members(plan.instances)
    return {
        instance.name: _render_table(
            f"security groups of ECS {instance.name} (emulation {emulation})",
            [e for e in instance.enis if e.exclusive_pod is None],
            eni_ifname,
            groups,
            members,
            emulation,
        )
        for instance in sorted(plan.instances, key=lambda i: i.name)
    }


def render_exclusive_pod_security_groups(plan: Plan, emulation: str) -> dict[str, str]:
    """Pod ("namespace/name") -> the table of its exclusive ENI, which lives in the pod as its eth0.

    Terway moves the whole ENI into the pod (exclusive_eni_linux.go), and the ENI keeps its security
    groups: the pod's own namespace is where its traffic crosses the ENI.
    """
    groups = plan.resources.security_groups
    members = group_members(plan.instances)
    running = {p.key for p in plan.pods if p.phase == "Running"}
    return {
        eni.exclusive_pod: _render_table(
            f"security groups of the exclusive ENI {eni.id} of pod {eni.exclusive_pod} (emulation {emulation})",
            [eni],
            lambda _: "eth0",
            groups,
            members,
            emulation,
        )
        for instance in sorted(plan.instances, key=lambda i: i.name)
        for eni in instance.enis
        if eni.exclusive_pod is not None and eni.exclusive_pod in running
    }


def _render_table(
    title: str,
    candidates: Sequence[Eni],
    ifname_of: Callable[[Eni], str],
    groups: Mapping[str, SecurityGroup],
    members: Mapping[str, tuple[IPv4Address, ...]],
    emulation: str,
) -> str:
    # An ENI without a known group has nothing to enforce.
    enis = [
        eni
        for eni in sorted(candidates, key=lambda e: e.index)
        if any(g in groups for g in eni.security_groups)
    ]
    sets: dict[str, None] = {}
    chains: list[str] = []
    for eni in enis:
        eni_groups = [groups[g] for g in dict.fromkeys(eni.security_groups) if g in groups]
        for sg in eni_groups:
            if sg.inner_access:
                sets[sg.name] = None
            for rule in sg.spec.rules:
                peer = rule.source_group_id if rule.direction == "ingress" else rule.dest_group_id
                cidr = rule.source_cidr_ip if rule.direction == "ingress" else rule.dest_cidr_ip
                if peer is not None and cidr is None:
                    sets[peer] = None
        chains.append(_eni_chain(eni, eni_groups, "ingress", ifname_of(eni)))
        chains.append(_eni_chain(eni, eni_groups, "egress", ifname_of(eni)))

    lines = [f"table {TABLE_FAMILY} {table_name(emulation)} {{"]
    lines.append(f"\tcomment {_quote(title)}")
    for group in sorted(sets):
        lines.append("")
        lines.extend(_member_set(group, members.get(group, ())))
    ifnames = [ifname_of(e) for e in enis]
    lines.append("")
    lines.extend(_base_chain("prerouting", "mangle", "iifname", [(n, f"{n}-ingress") for n in ifnames]))
    lines.append("")
    lines.extend(_base_chain("forward", "filter", "oifname", [(n, f"{n}-egress") for n in ifnames]))
    lines.append("")
    lines.extend(_base_chain("output", "filter", "oifname", [(n, f"{n}-egress") for n in ifnames]))
    for chain in chains:
        lines.append("")
        lines.append(chain)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _member_set(group: str, ips: Sequence[IPv4Address]) -> list[str]:
    out = [
        f"\tset {set_name(group)} {{",
        "\t\ttype ipv4_addr",
        f"\t\tcomment {_quote(f'members of security group {group}: every IP of every ENI in it')}",
    ]
    if ips:
        out.append("\t\telements = { " + ", ".join(str(ip) for ip in ips) + " }")
    out.append("\t}")
    return out


def _base_chain(hook: str, priority: str, key: str, dispatch: Sequence[tuple[str, str]]) -> list[str]:
    out = [
        f"\tchain {hook} {{",
        f"\t\ttype filter hook {hook} priority {priority}; policy accept;",
    ]
    if dispatch:  # nft refuses an empty anonymous map
        entries = ", ".join(f'"{ifname}" : jump {chain}' for ifname, chain in dispatch)
        out.append(f"\t\t{key} vmap {{ {entries} }}")
    out.append("\t}")
    return out


def _eni_chain(eni: Eni, eni_groups: Sequence[SecurityGroup], direction: str, ifname: str) -> str:
    name = f"{ifname}-{direction}"
    addr = "saddr" if direction == "ingress" else "daddr"
    body = [
        # Stateful, as the ECS docs say: replies of an accepted session pass in both directions.
        "ct state established,related accept",
        "ct state invalid drop",
    ]
    if direction == "ingress":
        body.append(
            f"ip saddr {HEALTH_CHECK_SOURCE} accept comment "
            + _quote(f"CLB health checks from {HEALTH_CHECK_SOURCE} need no rule (alibaba.md 4)")
        )
    for sg in eni_groups:
        # innerAccessPolicy Accept lets members reach each other and "overrides user drop rules", so
        # it comes before every user rule. Both directions: a member's egress drop rule must not cut
        # the group off from itself either. Enterprise groups never have it.
        if sg.inner_access:
            body.append(
                f"ip {addr} @{set_name(sg.name)} accept comment "
                + _quote(f"{sg.name} intra-group access (innerAccessPolicy Accept)")
            )
    pooled = sorted(
        (
            (rule.priority, rule.policy != "drop", order, index, sg.name, rule)
            for order, sg in enumerate(eni_groups)
            for index, rule in enumerate(sg.spec.rules)
            if rule.direction == direction
        ),
        key=lambda r: r[:4],
    )
    # All groups' rules pooled; smaller priority first and, at equal priority, drop before accept
    # (the ECS docs: "drop beats accept"). nft stops at the first verdict, so order is the semantics.
    for _, _, _, index, group, rule in pooled:
        match = _rule_match(rule, addr)
        if match is None:
            continue  # a peer that can never match (invalid CIDR); validation reports it
        comment = _quote(f"{group} {direction} rule {index + 1} priority {rule.priority}")
        body.append(f"{match} {rule.policy} comment {comment}".lstrip())
    if direction == "egress" and not all(sg.is_enterprise for sg in eni_groups):
        body.append("accept comment " + _quote("no rule drops: egress allowed by default"))
    else:
        suffix = " (enterprise group)" if all(sg.is_enterprise for sg in eni_groups) else ""
        body.append("drop comment " + _quote(f"no rule accepts: {direction} denied by default{suffix}"))
    return "\n".join([f"\tchain {name} {{", *(f"\t\t{line}" for line in body), "\t}"])


def _rule_match(rule: SecurityGroupRule, addr: str) -> str | None:
    """nft match of one rule: peer, then protocol and destination port."""
    parts: list[str] = []
    cidr_text = rule.source_cidr_ip if rule.direction == "ingress" else rule.dest_cidr_ip
    group = rule.source_group_id if rule.direction == "ingress" else rule.dest_group_id
    if cidr_text is not None:  # AuthorizeSecurityGroup: when a CIDR and a group are both set, the CIDR wins
        cidr = parse_cidr(cidr_text)
        if cidr is None:
            return None
        if cidr.prefixlen == 0:
            parts.append("meta nfproto ipv4")  # rules are IPv4; Ipv6*CidrIp would be separate rules
        elif cidr.prefixlen == 32:
            parts.append(f"ip {addr} {cidr.network_address}")
        else:
            parts.append(f"ip {addr} {cidr}")
    elif group is not None:
        parts.append(f"ip {addr} @{set_name(group)}")
    else:
        return None
    proto = rule.ip_protocol
    if proto in ("tcp", "udp"):
        bounds = parse_port_range(rule.port_range)
        if bounds is None or bounds in ((-1, -1), (1, 65535)):
            parts.append(f"meta l4proto {proto}")
        elif bounds[0] == bounds[1]:
            parts.append(f"{proto} dport {bounds[0]}")
        else:
            parts.append(f"{proto} dport {bounds[0]}-{bounds[1]}")
    elif proto in ("icmp", "gre"):
        parts.append(f"meta l4proto {proto}")  # PortRange is -1/-1 for these: the protocol is the match
    return " ".join(parts)


def _quote(text: str) -> str:
    """An nft comment string: no double quotes inside, at most 128 bytes."""
    clean = text.replace('"', "'")
    data = clean.encode()[:_NFT_COMMENT_MAX]
    return '"' + data.decode(errors="ignore") + '"'
