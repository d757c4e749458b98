"""Security group verdicts from the model (reference/alibaba.md section 3), one readable case per row.

Each case names the source and destination ENIs' groups (None: not an ENI, e.g. the Internet), the
flow, and the decision expected to matter: ``"<accept|drop> at <direction>: <group>#<rule index>"``
for a user rule, or ``"...: <implicit>[:<group>]"`` for a default.
"""

from __future__ import annotations

import ast
import inspect
from ipaddress import IPv4Address
from typing import Any

import pytest

from acknet.analysis import security_group as analysis
from acknet.analysis.security_group import (
    RuleRef,
    SGVerdict,
    evaluate,
    evaluate_direction,
    group_members,
)
from acknet.controllers.state import Eni, Instance
from acknet.model.cloud import SecurityGroup


def sg(name: str, rules: list[dict[str, Any]], **spec: Any) -> SecurityGroup:
    return SecurityGroup.model_validate(
        {
            "apiVersion": "acknet.io/v1",
            "kind": "SecurityGroup",
            "metadata": {"name": name},
            "spec": {"vpc": "prod", "rules": rules, **spec},
        }
    )


def ing(proto: str, ports: str, policy: str = "accept", priority: int = 1, **peer: str) -> dict[str, Any]:
    return {
        "direction": "ingress",
        "policy": policy,
        "priority": priority,
        "ipProtocol": proto,
        "portRange": ports,
        **peer,
    }


def egr(proto: str, ports: str, policy: str = "accept", priority: int = 1, **peer: str) -> dict[str, Any]:
    return {
        "direction": "egress",
        "policy": policy,
        "priority": priority,
        "ipProtocol": proto,
        "portRange": ports,
        **peer,
    }


ANY = "0.0.0.0/0"
GROUPS = {
    g.name: g
    for g in [
        sg(
            "web-sg",  # basic, innerAccessPolicy Accept (the default)
            [
                ing("tcp", "80/80", sourceCidrIp=ANY),  # 0
                ing("tcp", "22/22", "drop", sourceCidrIp="10.0.0.0/8"),  # 1
                ing("tcp", "22/22", sourceCidrIp=ANY),  # 2
                ing("tcp", "8000/8100", priority=5, sourceCidrIp="192.168.0.0/16"),  # 3
                ing("tcp", "8050/8050", "drop", priority=2, sourceCidrIp="192.168.0.0/16"),  # 4
                egr("tcp", "3306/3306", "drop", priority=5, destCidrIp="192.168.9.0/24"),  # 5
            ],
        ),
        sg("ops-sg", [ing("gre", "-1/-1", sourceCidrIp="192.168.0.0/24")]),  # 0
        sg(
            "db-sg",  # basic with innerAccessPolicy Drop: members need rules like anyone else
            [
                ing("tcp", "3306/3306", sourceGroupId="web-sg"),  # 0
                ing("icmp", "-1/-1", priority=10, sourceCidrIp=ANY),  # 1
                ing("tcp", "5432/5432", sourceGroupId="db-sg"),  # 2
                egr("all", "-1/-1", "drop", priority=100, destCidrIp=ANY),  # 3
                egr("tcp", "1/65535", destGroupId="db-sg"),  # 4
                egr("udp", "53/53", destCidrIp="192.168.0.10"),  # 5
            ],
            innerAccessPolicy="Drop",
        ),
        sg(
            "lock-sg",  # basic, Accept, and rules that drop everything
            [ing("all", "-1/-1", "drop", sourceCidrIp=ANY), egr("all", "-1/-1", "drop", destCidrIp=ANY)],
        ),
        sg(
            "ent-sg",
            [
                ing("tcp", "443/443", sourceCidrIp="192.168.0.0/16"),  # 0
                egr("all", "-1/-1", priority=100, destCidrIp="192.168.0.0/16"),  # 1
            ],
            securityGroupType="enterprise",
        ),
        sg(
            "both-sg",  # a CIDR and a group on one rule: the CIDR wins
            [ing("tcp", "9000/9000", sourceCidrIp="192.168.7.7", sourceGroupId="web-sg")],
        ),
    ]
}


def _eni(instance: str, index: int, ips: list[str], groups: tuple[str, ...]) -> Eni:
    addrs = tuple(IPv4Address(ip) for ip in ips)
    return Eni(
        f"eni-{instance}{index}", instance, index, "node-h", "02:00:00:00:00:01", addrs[0], addrs, groups
    )


def _instance(name: str, *enis: Eni) -> Instance:
    return Instance(
        name, "ecs.g7.large", "cn-hangzhou-h", "node-h", enis[0].primary_ip, enis[0].security_groups, enis
    )


INSTANCES = [
    _instance(
        "web-1",
        _eni("web-1", 0, ["192.168.0.10"], ("web-sg", "ops-sg")),
        _eni("web-1", 1, ["192.168.32.5", "192.168.32.6"], ("web-sg",)),  # Terway pod addresses
    ),
    _instance("web-2", _eni("web-2", 0, ["192.168.0.11"], ("web-sg",))),
    _instance("ops-1", _eni("ops-1", 0, ["192.168.0.40"], ("ops-sg",))),
    _instance("db-1", _eni("db-1", 0, ["192.168.8.10"], ("db-sg",))),
    _instance("db-2", _eni("db-2", 0, ["192.168.8.11"], ("db-sg",))),
    _instance("lock-1", _eni("lock-1", 0, ["192.168.1.1"], ("lock-sg",))),
    _instance("lock-2", _eni("lock-2", 0, ["192.168.1.2"], ("lock-sg",))),
    _instance("ent-1", _eni("ent-1", 0, ["192.168.0.30"], ("ent-sg",))),
    _instance("ent-2", _eni("ent-2", 0, ["192.168.0.31"], ("ent-sg",))),
    _instance("both-1", _eni("both-1", 0, ["192.168.7.1"], ("both-sg",))),
]
MEMBERS = group_members(INSTANCES)
ENI_OF = {ip: eni.security_groups for inst in INSTANCES for eni in inst.enis for ip in eni.ips}

WEB1, WEB1_POD, WEB2 = "192.168.0.10", "192.168.32.6", "192.168.0.11"
DB1, DB2, LOCK1, LOCK2, ENT1, ENT2 = (
    "192.168.8.10",
    "192.168.8.11",
    "192.168.1.1",
    "192.168.1.2",
    "192.168.0.30",
    "192.168.0.31",
)
INTERNET, OUTSIDER, CORP, HEALTH = "203.0.113.5", "192.168.5.5", "10.1.2.3", "100.64.1.2"


def verdict(src: str, dst: str, proto: str, port: int | None) -> SGVerdict:
    s, d = IPv4Address(src), IPv4Address(dst)
    return evaluate(ENI_OF.get(s), ENI_OF.get(d), s, d, proto, port, GROUPS, MEMBERS)


def summary(v: SGVerdict) -> str:
    d = v.deciding
    if d.rule is not None:
        what = f"{d.rule.group}#{d.rule.index}"
    else:
        what = f"{d.implicit}:{d.group}" if d.group else str(d.implicit)
    return f"{d.action} at {d.direction}: {what}"


CASES = [
    # rules, priority and ties
    ("rule-accepts-port-80-from-anywhere", INTERNET, WEB1, "tcp", 80, "accept at ingress: web-sg#0"),
    ("no-rule-accepts-ingress-denied", INTERNET, WEB1, "tcp", 81, "drop at ingress: default"),
    ("drop-wins-tie-at-equal-priority", CORP, WEB1, "tcp", 22, "drop at ingress: web-sg#1"),
    ("same-priority-accept-for-other-sources", INTERNET, WEB1, "tcp", 22, "accept at ingress: web-sg#2"),
    (
        "lower-number-wins-priority-2-drop-over-5-accept",
        OUTSIDER,
        WEB1,
        "tcp",
        8050,
        "drop at ingress: web-sg#4",
    ),
    ("port-range-start", OUTSIDER, WEB1, "tcp", 8000, "accept at ingress: web-sg#3"),
    ("port-range-end", OUTSIDER, WEB1, "tcp", 8100, "accept at ingress: web-sg#3"),
    ("port-range-just-outside", OUTSIDER, WEB1, "tcp", 8101, "drop at ingress: default"),
    ("protocol-must-match-udp-vs-tcp", INTERNET, WEB1, "udp", 80, "drop at ingress: default"),
    ("protocol-case-insensitive", INTERNET, WEB1, "TCP", 80, "accept at ingress: web-sg#0"),
    # pooling
    ("pooled-second-group-accepts-gre", "192.168.0.50", WEB1, "gre", None, "accept at ingress: ops-sg#0"),
    ("not-pooled-on-eni-without-that-group", "192.168.0.50", WEB2, "gre", None, "drop at ingress: default"),
    ("pod-eni-has-only-its-own-groups", "192.168.0.50", WEB1_POD, "gre", None, "drop at ingress: default"),
    # intra-group access
    ("intra-group-accept-basic-default", WEB2, WEB1, "tcp", 9999, "accept at ingress: intra-group:web-sg"),
    (
        "intra-group-through-second-group",
        "192.168.0.40",
        WEB1,
        "udp",
        5000,
        "accept at ingress: intra-group:ops-sg",
    ),
    ("intra-group-pod-ip-is-a-member", WEB1_POD, WEB2, "tcp", 9999, "accept at ingress: intra-group:web-sg"),
    (
        "intra-group-accept-overrides-user-drop",
        LOCK1,
        LOCK2,
        "tcp",
        80,
        "accept at ingress: intra-group:lock-sg",
    ),
    ("user-drop-applies-to-non-members", OUTSIDER, LOCK2, "tcp", 80, "drop at ingress: lock-sg#0"),
    ("egress-drop-rule-of-lock-sg", LOCK1, OUTSIDER, "tcp", 80, "drop at egress: lock-sg#1"),
    ("inner-access-drop-needs-a-rule", DB1, DB2, "tcp", 3306, "drop at ingress: default"),
    ("inner-access-drop-self-reference-rule", DB1, DB2, "tcp", 5432, "accept at ingress: db-sg#2"),
    ("different-groups-isolated", WEB2, "192.168.0.40", "tcp", 9999, "drop at ingress: default"),
    # group peers
    ("source-group-member-accepted", WEB1, DB1, "tcp", 3306, "accept at ingress: db-sg#0"),
    ("source-group-pod-ip-accepted", WEB1_POD, DB1, "tcp", 3306, "accept at ingress: db-sg#0"),
    ("source-group-non-member-denied", OUTSIDER, DB1, "tcp", 3306, "drop at ingress: default"),
    ("dest-group-egress-accept-before-catch-all-drop", DB1, DB2, "tcp", 7000, "drop at ingress: default"),
    ("dest-group-rule-is-tcp-only", DB1, DB2, "udp", 7000, "drop at egress: db-sg#3"),
    ("egress-catch-all-drop-priority-100", DB1, WEB2, "tcp", 80, "drop at egress: db-sg#3"),
    ("egress-udp-53-elsewhere-hits-catch-all", DB1, INTERNET, "udp", 53, "drop at egress: db-sg#3"),
    ("egress-udp-53-to-the-allowed-host", DB1, WEB1, "udp", 53, "drop at ingress: default"),
    ("cidr-wins-over-group", WEB2, "192.168.7.1", "tcp", 9000, "drop at ingress: default"),
    (
        "cidr-wins-over-group-cidr-matches",
        "192.168.7.7",
        "192.168.7.1",
        "tcp",
        9000,
        "accept at ingress: both-sg#0",
    ),
    # egress defaults and rules
    ("basic-egress-open-by-default", WEB1, INTERNET, "tcp", 443, "accept at ingress: not-an-eni"),
    ("egress-drop-rule-at-source", WEB1, "192.168.9.9", "tcp", 3306, "drop at egress: web-sg#5"),
    # icmp and all
    ("icmp-rule-accepts-ping", INTERNET, DB1, "icmp", None, "accept at ingress: db-sg#1"),
    ("icmp-not-opened", INTERNET, WEB1, "icmp", None, "drop at ingress: default"),
    ("all-protocol-matches-udp", ENT1, "192.168.44.4", "udp", 9999, "accept at ingress: not-an-eni"),
    ("all-protocol-matches-icmp", ENT1, "192.168.44.4", "icmp", None, "accept at ingress: not-an-eni"),
    # enterprise
    ("enterprise-rule-accepts", ENT1, ENT2, "tcp", 443, "accept at ingress: ent-sg#0"),
    ("enterprise-no-intra-group-access", ENT1, ENT2, "tcp", 22, "drop at ingress: default"),
    ("enterprise-egress-denied-by-default", ENT1, INTERNET, "tcp", 80, "drop at egress: default"),
    # health checks
    ("health-check-needs-no-rule", HEALTH, WEB1, "tcp", 8080, "accept at ingress: health-check"),
    ("health-check-before-user-drop", HEALTH, LOCK1, "tcp", 80, "accept at ingress: health-check"),
    ("health-check-into-enterprise", HEALTH, ENT1, "tcp", 8080, "accept at ingress: health-check"),
    ("health-check-range-ends-at-slash-10", "100.128.0.1", WEB1, "tcp", 8080, "drop at ingress: default"),
    # no ENI at either end
    (
        "internet-to-internet-not-filtered",
        INTERNET,
        "198.51.100.7",
        "tcp",
        80,
        "accept at ingress: not-an-eni",
    ),
]


@pytest.mark.parametrize(
    ("src", "dst", "proto", "port", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_verdict(src: str, dst: str, proto: str, port: int | None, expected: str) -> None:
    assert summary(verdict(src, dst, proto, port)) == expected


def test_egress_and_ingress_are_both_reported() -> None:
    v = verdict(WEB1, DB1, "tcp", 3306)
    assert v.allowed
    assert v.egress.implicit == "default" and v.egress.reason == "no rule drops: egress allowed by default"
    assert v.ingress.rule == RuleRef("db-sg", "ingress", 0, 1, "accept")
    assert v.ingress.reason == "db-sg ingress rule 1 priority 1 (accept) accepts"
    # Egress rules that let a flow out are reported even when ingress then drops it.
    assert verdict(DB1, DB2, "tcp", 7000).egress.rule == RuleRef("db-sg", "egress", 4, 1, "accept")
    assert verdict(DB1, WEB1, "udp", 53).egress.rule == RuleRef("db-sg", "egress", 5, 1, "accept")


@pytest.mark.parametrize(
    ("src", "dst", "proto", "port", "reason"),
    [
        pytest.param(
            WEB2,
            WEB1,
            "tcp",
            1,
            "basic group web-sg allows intra-group traffic (innerAccessPolicy Accept)",
            id="intra-group",
        ),
        pytest.param(
            INTERNET, WEB1, "tcp", 1, "no rule accepts: ingress denied by default", id="basic-default"
        ),
        pytest.param(
            ENT1,
            ENT2,
            "tcp",
            1,
            "no rule accepts: ingress denied by default (enterprise group)",
            id="enterprise-default",
        ),
        pytest.param(
            HEALTH,
            WEB1,
            "tcp",
            1,
            "100.64.1.2 is in 100.64.0.0/10, the CLB health-check source: no rule is needed",
            id="health-check",
        ),
        pytest.param(CORP, WEB1, "tcp", 22, "web-sg ingress rule 2 priority 1 (drop) drops", id="rule"),
    ],
)
def test_reasons_read_well(src: str, dst: str, proto: str, port: int, reason: str) -> None:
    assert verdict(src, dst, proto, port).deciding.reason == reason


def test_pooling_does_not_depend_on_group_order() -> None:
    a = evaluate_direction("ingress", ("web-sg", "ops-sg"), IPv4Address(CORP), "tcp", 22, GROUPS, MEMBERS)
    b = evaluate_direction("ingress", ("ops-sg", "web-sg"), IPv4Address(CORP), "tcp", 22, GROUPS, MEMBERS)
    assert a.rule == b.rule == RuleRef("web-sg", "ingress", 1, 1, "drop")


def test_drop_wins_tie_across_groups() -> None:
    allow = sg("allow-sg", [ing("tcp", "80/80", priority=3, sourceCidrIp=ANY)])
    deny = sg("deny-sg", [ing("tcp", "80/80", "drop", priority=3, sourceCidrIp="203.0.113.0/24")])
    groups = {g.name: g for g in (allow, deny)}
    d = evaluate_direction("ingress", ("allow-sg", "deny-sg"), IPv4Address(INTERNET), "tcp", 80, groups, {})
    assert (d.allowed, d.rule) == (False, RuleRef("deny-sg", "ingress", 0, 3, "drop"))


def test_eni_without_groups_and_unknown_groups() -> None:
    bare = evaluate_direction("ingress", (), IPv4Address(INTERNET), "tcp", 80, GROUPS, MEMBERS)
    assert (bare.allowed, bare.implicit) == (True, "no-security-group")
    dup = evaluate_direction(
        "ingress", ("web-sg", "web-sg", "ghost"), IPv4Address(INTERNET), "tcp", 80, GROUPS, MEMBERS
    )
    assert dup.rule == RuleRef("web-sg", "ingress", 0, 1, "accept")


def test_group_members_include_secondary_ips() -> None:
    assert MEMBERS["web-sg"] == frozenset(
        IPv4Address(ip) for ip in ("192.168.0.10", "192.168.32.5", "192.168.32.6", "192.168.0.11")
    )
    assert MEMBERS["ops-sg"] == frozenset({IPv4Address("192.168.0.10"), IPv4Address("192.168.0.40")})


def test_analysis_never_imports_the_data_plane() -> None:
    tree = ast.parse(inspect.getsource(analysis))
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert not [m for m in imported if m and m.startswith(("acknet.dataplane", "acknet.observe"))]
