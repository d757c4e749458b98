"""The security group table of each ECS namespace: golden text, rule order, member sets, nft syntax.

The plan is built by hand (not by the controllers) so these tests pin the renderer alone. Regenerate
the golden files with ``ACKNET_UPDATE_GOLDEN=1 pytest tests/unit/dataplane`` and review the diff.
"""

from __future__ import annotations

import difflib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from acknet.controllers.state import Eni, Instance, Plan
from acknet.dataplane.render.security_group import (
    render_security_groups,
    replace_script,
    set_name,
    table_name,
)
from acknet.model.cloud import SecurityGroup
from acknet.model.resources import Resources

GOLDEN = Path(__file__).parent / "golden"


def sg(name: str, rules: list[dict[str, Any]], **spec: Any) -> SecurityGroup:
    return SecurityGroup.model_validate(
        {
            "apiVersion": "acknet.io/v1",
            "kind": "SecurityGroup",
            "metadata": {"name": name},
            "spec": {"vpc": "prod", "rules": rules, **spec},
        }
    )


def eni(instance: str, index: int, ips: list[str], groups: tuple[str, ...], **kw: Any) -> Eni:
    addrs = tuple(IPv4Address(ip) for ip in ips)
    return Eni(
        id=f"eni-{instance}-{index}",
        instance=instance,
        index=index,
        vswitch="node-h",
        mac=f"02:00:00:00:0{index}:01",
        primary_ip=addrs[0],
        ips=addrs,
        security_groups=groups,
        **kw,
    )


def instance(name: str, *enis: Eni) -> Instance:
    return Instance(
        name=name,
        instance_type="ecs.g7.large",
        zone="cn-hangzhou-h",
        vswitch="node-h",
        primary_ip=enis[0].primary_ip,
        security_groups=enis[0].security_groups,
        enis=enis,
    )


def make_plan(groups: list[SecurityGroup], instances: list[Instance]) -> Plan:
    return Plan(
        resources=Resources(security_groups={g.name: g for g in groups}),
        vswitches=(),
        instances=tuple(instances),
        pods=(),
        services=(),
        endpoint_slices=(),
        routes=(),
    )


WEB_SG = sg(
    "web-sg",
    [
        {
            "direction": "ingress",
            "priority": 5,
            "ipProtocol": "tcp",
            "portRange": "22/22",
            "sourceCidrIp": "0.0.0.0/0",
        },
        {"direction": "ingress", "ipProtocol": "tcp", "portRange": "80/80", "sourceCidrIp": "0.0.0.0/0"},
        {
            "direction": "ingress",
            "policy": "drop",
            "ipProtocol": "tcp",
            "portRange": "22/22",
            "sourceCidrIp": "10.0.0.0/8",
        },
        {
            "direction": "ingress",
            "ipProtocol": "tcp",
            "portRange": "30000/32767",
            "sourceCidrIp": "192.168.0.0/16",
        },
        {
            "direction": "egress",
            "policy": "drop",
            "priority": 5,
            "ipProtocol": "tcp",
            "portRange": "3306/3306",
            "destCidrIp": "192.168.8.0/24",
        },
    ],
)
DB_SG = sg(
    "db-sg",
    [
        {"direction": "ingress", "ipProtocol": "tcp", "portRange": "3306/3306", "sourceGroupId": "web-sg"},
        {
            "direction": "ingress",
            "priority": 10,
            "ipProtocol": "icmp",
            "portRange": "-1/-1",
            "sourceCidrIp": "0.0.0.0/0",
        },
        {
            "direction": "egress",
            "policy": "drop",
            "priority": 100,
            "ipProtocol": "all",
            "portRange": "-1/-1",
            "destCidrIp": "0.0.0.0/0",
        },
        {
            "direction": "egress",
            "priority": 1,
            "ipProtocol": "udp",
            "portRange": "53/53",
            "destCidrIp": "192.168.0.10",
        },
    ],
    innerAccessPolicy="Drop",
)
ENT_SG = sg(
    "ent-sg",
    [
        {
            "direction": "ingress",
            "ipProtocol": "tcp",
            "portRange": "443/443",
            "sourceCidrIp": "192.168.0.0/16",
        },
        {
            "direction": "egress",
            "priority": 100,
            "ipProtocol": "all",
            "portRange": "-1/-1",
            "destCidrIp": "0.0.0.0/0",
        },
    ],
    securityGroupType="enterprise",
)
OPS_SG = sg(
    "ops-sg",
    [{"direction": "ingress", "ipProtocol": "gre", "portRange": "-1/-1", "sourceCidrIp": "192.168.0.0/24"}],
)


def small_plan() -> Plan:
    """web-1: a Terway node, eth0 + eth1 (pod IPs) in web-sg + ops-sg, eth2 an exclusive ENI in a pod;
    db-1: a standalone ECS in db-sg (innerAccessPolicy Drop); ent-1: an ECS in an enterprise group."""
    web = instance(
        "web-1",
        eni("web-1", 0, ["192.168.0.10"], ("web-sg", "ops-sg")),
        eni("web-1", 1, ["192.168.32.5", "192.168.32.6", "192.168.32.7"], ("web-sg",)),
        eni("web-1", 2, ["192.168.32.9"], ("web-sg",), exclusive_pod="shop/pay-0"),
    )
    db = instance("db-1", eni("db-1", 0, ["192.168.8.10"], ("db-sg",)))
    ent = instance("ent-1", eni("ent-1", 0, ["192.168.0.30"], ("ent-sg",)))
    return make_plan([WEB_SG, DB_SG, ENT_SG, OPS_SG], [web, db, ent])


@pytest.fixture(scope="module")
def tables() -> dict[str, str]:
    return render_security_groups(small_plan(), "acknet")


@pytest.mark.parametrize("name", ["web-1", "db-1", "ent-1"])
def test_golden(tables: dict[str, str], name: str) -> None:
    path = GOLDEN / f"security_group_{name}.nft"
    if os.environ.get("ACKNET_UPDATE_GOLDEN"):
        path.write_text(tables[name])
    expected = path.read_text()
    diff = "".join(
        difflib.unified_diff(expected.splitlines(True), tables[name].splitlines(True), "golden", "rendered")
    )
    assert tables[name] == expected, diff


def test_one_table_per_instance_named_after_the_emulation() -> None:
    out = render_security_groups(small_plan(), "demo")
    assert sorted(out) == ["db-1", "ent-1", "web-1"]
    for text in out.values():
        assert text.startswith(f"table inet {table_name('demo')} {{\n")
        assert text.count("\ntable ") == 0  # exactly one table: one owner, one transaction


def test_render_is_pure_and_deterministic() -> None:
    assert render_security_groups(small_plan(), "acknet") == render_security_groups(small_plan(), "acknet")


def chain(text: str, name: str, kind: str = "chain") -> list[str]:
    lines = text.splitlines()
    start = lines.index(f"\t{kind} {name} {{")
    end = lines.index("\t}", start)
    return [line.strip() for line in lines[start + 1 : end]]


def test_rules_are_pooled_and_ordered_by_priority_then_drop_first(tables: dict[str, str]) -> None:
    body = chain(tables["web-1"], "eth0-ingress")
    comments = [line.split('comment "')[1].rstrip('"') for line in body if "comment" in line]
    assert comments == [
        "CLB health checks from 100.64.0.0/10 need no rule (alibaba.md 4)",
        "web-sg intra-group access (innerAccessPolicy Accept)",
        "ops-sg intra-group access (innerAccessPolicy Accept)",
        "web-sg ingress rule 3 priority 1",  # drop wins the tie at priority 1
        "web-sg ingress rule 2 priority 1",
        "web-sg ingress rule 4 priority 1",
        "ops-sg ingress rule 1 priority 1",  # pooled from the ENI's second group
        "web-sg ingress rule 1 priority 5",
        "no rule accepts: ingress denied by default",
    ]
    assert body[:2] == ["ct state established,related accept", "ct state invalid drop"]


def test_defaults_by_group_type(tables: dict[str, str]) -> None:
    assert (
        chain(tables["web-1"], "eth0-egress")[-1]
        == 'accept comment "no rule drops: egress allowed by default"'
    )
    assert chain(tables["ent-1"], "eth0-egress")[-1] == (
        'drop comment "no rule accepts: egress denied by default (enterprise group)"'
    )
    # innerAccessPolicy Drop and enterprise groups get no intra-group rule at all.
    assert "intra-group" not in tables["db-1"]
    assert "intra-group" not in tables["ent-1"]


def test_members_hold_every_eni_ip_including_pod_and_exclusive_enis(tables: dict[str, str]) -> None:
    # db-1 references web-sg as a source group; its members are all web-sg ENIs' addresses.
    body = chain(tables["db-1"], set_name("web-sg"), kind="set")
    assert "elements = { 192.168.0.10, 192.168.32.5, 192.168.32.6, 192.168.32.7, 192.168.32.9 }" in body


def test_dispatch_covers_the_instance_enis_but_not_an_exclusive_one(tables: dict[str, str]) -> None:
    text = tables["web-1"]
    assert 'iifname vmap { "eth0" : jump eth0-ingress, "eth1" : jump eth1-ingress }' in text
    assert 'oifname vmap { "eth0" : jump eth0-egress, "eth1" : jump eth1-egress }' in text
    assert "eth2" not in text  # moved into pod shop/pay-0


def test_a_membership_change_is_a_set_edit_only() -> None:
    before = render_security_groups(small_plan(), "acknet")["db-1"]
    plan = small_plan()
    grown = make_plan(
        list(plan.resources.security_groups.values()),
        [
            *plan.instances,
            instance("web-2", eni("web-2", 0, ["192.168.0.11"], ("web-sg",))),
        ],
    )
    after = render_security_groups(grown, "acknet")["db-1"]
    changed = [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert changed == [
        "-\t\telements = { 192.168.0.10, 192.168.32.5, 192.168.32.6, 192.168.32.7, 192.168.32.9 }",
        "+\t\telements = { 192.168.0.10, 192.168.0.11, 192.168.32.5, 192.168.32.6, 192.168.32.7, 192.168.32.9 }",
    ]


def test_cidr_wins_over_group_and_single_ips_print_bare() -> None:
    both = sg(
        "both-sg",
        [
            {
                "direction": "ingress",
                "ipProtocol": "udp",
                "portRange": "1/65535",
                "sourceCidrIp": "192.168.1.7",
                "sourceGroupId": "web-sg",
            },
        ],
    )
    plan = make_plan([both, WEB_SG], [instance("x", eni("x", 0, ["192.168.0.50"], ("both-sg",)))])
    body = chain(render_security_groups(plan, "acknet")["x"], "eth0-ingress")
    assert 'ip saddr 192.168.1.7 meta l4proto udp accept comment "both-sg ingress rule 1 priority 1"' in body
    assert set_name("web-sg") not in render_security_groups(plan, "acknet")["x"]


def test_an_eni_without_a_group_is_not_filtered() -> None:
    plan = make_plan([WEB_SG], [instance("bare", eni("bare", 0, ["192.168.0.60"], ()))])
    text = render_security_groups(plan, "acknet")["bare"]
    assert "vmap" not in text and "-ingress" not in text


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        pytest.param("web-sg", "members-web-sg", id="plain-name"),
        pytest.param("sg.with.dots", "members-sg.with.dots", id="dots"),
        pytest.param("odd name!", "members-odd_name_-", id="sanitised-with-hash"),
    ],
)
def test_set_names(group: str, expected: str) -> None:
    assert set_name(group).startswith(expected)
    assert set_name(group) == set_name(group)


def test_long_names_keep_comments_within_nft_limit() -> None:
    long = sg(
        "g" + "x" * 200,
        [{"direction": "ingress", "ipProtocol": "all", "portRange": "-1/-1", "sourceCidrIp": "0.0.0.0/0"}],
    )
    plan = make_plan([long], [instance("y", eni("y", 0, ["192.168.0.70"], (long.name,)))])
    text = render_security_groups(plan, "acknet")["y"]
    for line in text.splitlines():
        if 'comment "' in line:
            assert len(line.split('comment "', 1)[1].rstrip('"').encode()) <= 128


# -- syntax, checked by the real nft in a throwaway namespace --------------------------------------------


@pytest.fixture
def scratch_netns() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("ip") is None:
        pytest.skip("needs root, nft and ip to check the syntax in a throwaway network namespace")
    name = "sgt" + secrets.token_hex(4)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def test_nft_accepts_every_table(scratch_netns: str, tables: dict[str, str]) -> None:
    for name, text in tables.items():
        for script in (text, replace_script(text, "acknet")):
            result = subprocess.run(
                ["ip", "netns", "exec", scratch_netns, "nft", "-c", "-f", "-"],
                input=script,
                capture_output=True,
                text=True,
                check=False,
            )
            assert result.returncode == 0, f"{name}: {result.stderr}"
