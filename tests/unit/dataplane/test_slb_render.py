"""CLB instances rendered (render/slb.py and its part of render/topology.py): pure, no root."""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv4Address, IPv4Network

import pytest

from acknet.controllers.plan import plan
from acknet.controllers.state import Plan, PlannedListener, PlannedLoadBalancer, SlbBackend, SlbHealthCheck
from acknet.dataplane.render import names
from acknet.dataplane.render import slb as slb_render
from acknet.dataplane.render.kernel import Rule
from acknet.dataplane.render.topology import public_addresses, render_topology
from acknet.model.documents import Source
from acknet.model.load import load_resources

EMU = "slbt"

FILES = """\
apiVersion: acknet.io/v1
kind: VPC
metadata: {name: vpc}
spec: {cidrBlock: 192.168.0.0/16}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {name: node-h}
spec: {vpc: vpc, cidrBlock: 192.168.0.0/24, zoneId: cn-hangzhou-h}
---
apiVersion: acknet.io/v1
kind: SecurityGroup
metadata: {name: sg}
spec: {vpc: vpc}
---
apiVersion: acknet.io/v1
kind: ECSInstance
metadata: {name: web-1}
spec: {vswitch: node-h, securityGroups: [sg], privateIpAddress: 192.168.0.11}
---
apiVersion: acknet.io/v1
kind: ECSInstance
metadata: {name: web-2}
spec: {vswitch: node-h, securityGroups: [sg], privateIpAddress: 192.168.0.12}
---
apiVersion: acknet.io/v1
kind: LoadBalancer
metadata: {name: pub}
spec:
  addressType: internet
  address: 198.51.100.10
  backendServers: [{ecs: web-1, weight: 75}, {ecs: web-2, weight: 25}]
  listeners:
  - {protocol: tcp, listenerPort: 80, backendServerPort: 8080}
  - {protocol: udp, listenerPort: 53, backendServerPort: 5353, scheduler: tch}
  - {protocol: http, listenerPort: 8000, backendServerPort: 8080}
---
apiVersion: acknet.io/v1
kind: LoadBalancer
metadata: {name: priv}
spec:
  addressType: intranet
  vswitch: node-h
  address: 192.168.0.100
  backendServers: [{ecs: web-1}]
  listeners: [{protocol: tcp, listenerPort: 80, backendServerPort: 8080, scheduler: sch}]
"""


@pytest.fixture(scope="module")
def planned() -> Plan:
    result = load_resources([Source("slb.yaml", FILES)])
    assert not result.errors, "\n".join(str(d) for d in result.errors)
    return plan(result.resources)


def lb_named(p: Plan, name: str) -> PlannedLoadBalancer:
    return next(lb for lb in p.load_balancers if lb.name == name)


def listener(scheduler: str, *weights: int, roles: tuple[str, ...] = ()) -> PlannedListener:
    backends = tuple(
        SlbBackend(f"ecs/b{i}", IPv4Address(f"10.0.0.{i + 1}"), 8080, w, roles[i] if roles else "")  # type: ignore[arg-type]
        for i, w in enumerate(weights)
    )
    return PlannedListener("tcp", 80, scheduler, "g", backends, SlbHealthCheck())  # type: ignore[arg-type]


def shares(li: PlannedListener, unhealthy: set[tuple[str, int]] | None = None) -> Counter[str]:
    return Counter(b.server if b else "none" for b in slb_render.slot_owners(li, unhealthy or set()))


def test_an_intranet_instance_is_a_port_of_its_vswitch(planned: Plan) -> None:
    kp = render_topology(planned, EMU)
    priv = lb_named(planned, "priv")
    ns, vrouter = names.slb_netns(EMU, "priv"), names.vpc_netns(EMU, "vpc")
    bridge = names.vswitch_bridge("node-h")
    assert ns == "slbt-slb-priv" and len(names.slb_port("priv")) <= names.IFNAMSIZ
    mine = kp.in_namespace(ns)
    (veth,) = mine.links
    assert veth.peer.namespace == vrouter and veth.peer.master == bridge  # type: ignore[union-attr]
    assert {str(a.address) for a in mine.addresses} == {"192.168.0.100/24", f"{priv.health_source}/32"}
    # Like an ECS primary ENI: everything via the VSwitch gateway, which is a permanent neighbour.
    assert {(str(r.dst), str(r.via)) for r in mine.routes} == {
        ("192.168.0.0/24", "192.168.0.253"),
        ("0.0.0.0/0", "192.168.0.253"),
    }
    assert dict(kp.namespace(ns).sysctls)["net.ipv4.ip_forward"] == "1"
    # The VRouter delivers the VIP to the instance's MAC, and policy-routes its replies back to it.
    vr = kp.in_namespace(vrouter)
    assert any(n.address == IPv4Address("192.168.0.100") and n.dev == bridge for n in vr.neighbours)
    mark = slb_render.reply_marks(planned)["priv"]
    assert Rule(vrouter, slb_render.REPLY_RULE_PRIORITY, mark, fwmark=mark) in vr.rules
    assert any(r.table == mark and r.via == IPv4Address("192.168.0.100") for r in vr.routes)
    assert any(r.dst == IPv4Network(f"{priv.health_source}/32") for r in vr.routes)


def test_an_internet_instance_sits_behind_its_vrouter_and_the_internet_routes_to_it(planned: Plan) -> None:
    kp = render_topology(planned, EMU)
    ns, vrouter = names.slb_netns(EMU, "pub"), names.vpc_netns(EMU, "vpc")
    (veth,) = kp.in_namespace(ns).links
    assert veth.peer.master is None  # type: ignore[union-attr]  # a point-to-point link, not on a bridge
    assert "198.51.100.10/32" in {str(a.address) for a in kp.in_namespace(ns).addresses}
    assert public_addresses(planned) == {IPv4Address("198.51.100.10"): "vpc"}
    internet = kp.in_namespace(names.internet_netns(EMU))
    assert any(r.dst == IPv4Network("198.51.100.10/32") for r in internet.routes)
    vr = kp.in_namespace(vrouter)
    assert any(r.dst == IPv4Network("198.51.100.10/32") and r.dev == names.slb_port("pub") for r in vr.routes)
    # The VRouter routes the Internet's clients back now that it owns a public address.
    assert any(r.dst == IPv4Network("203.0.113.0/24") for r in vr.routes)


def test_kernel_plan_lines_show_the_fwmark_rule(planned: Plan) -> None:
    text = str(render_topology(planned, EMU))
    assert f"fwmark {slb_render.reply_marks(planned)['pub']:#x} lookup" in text


def test_the_listener_table(planned: Plan) -> None:
    text = slb_render.render_slb_table(lb_named(planned, "pub"), EMU)
    assert text.startswith("table ip slbt-slb {")
    assert "ip daddr 198.51.100.10 tcp dport 80 dnat ip to numgen random mod 2520 map @tcp_80" in text
    assert (
        "ip daddr 198.51.100.10 udp dport 53 dnat ip to "
        "jhash ip saddr . udp sport . ip daddr . udp dport mod 2520 seed 0x5b1 map @udp_53"
    ) in text
    assert "elements = { 0-1889 : 192.168.0.11 . 8080, 1890-2519 : 192.168.0.12 . 8080 }" in text
    # Layer 7 is not translated in the kernel: its port is let through to the proxy (render/slb_l7.py).
    assert "map @http_8000" not in text and "map http_8000" not in text
    assert 'ip daddr 198.51.100.10 tcp dport 8000 accept comment "http/8000: the proxy"' in text
    # No backend: TCP reaches the handshake socket, anything else to the VIP is dropped.
    assert "ip daddr 198.51.100.10 tcp dport 80 accept" in text
    assert text.rstrip().endswith("ip daddr 198.51.100.10 drop\n  }\n}")
    priv = slb_render.render_slb_table(lb_named(planned, "priv"), EMU)
    assert "jhash ip saddr mod 2520 seed 0x5b1 map @tcp_80" in priv


def test_the_vrouter_marks_what_its_instances_open(planned: Plan) -> None:
    tables = slb_render.render_vrouter_tables(planned, EMU)
    marks = slb_render.reply_marks(planned)
    text = tables[names.vpc_netns(EMU, "vpc")]
    mac = slb_render.slb_mac(lb_named(planned, "priv"))
    bridge = names.vswitch_bridge("node-h")
    assert f'iifname "{bridge}" ether saddr {mac} ct state new ct mark set {marks["priv"]:#x}' in text
    assert f'iifname "{names.slb_port("pub")}" ct state new ct mark set {marks["pub"]:#x}' in text
    assert "ct direction reply ct mark != 0 meta mark set ct mark" in text
    assert len(set(marks.values())) == 2


def test_a_health_change_is_a_map_edit(planned: Plan) -> None:
    pub = lb_named(planned, "pub")
    tcp80 = pub.listeners[0]
    script = slb_render.map_update_script(pub, tcp80, EMU, {("192.168.0.12", 8080)})
    assert (
        script
        == "flush map ip slbt-slb tcp_80\nadd element ip slbt-slb tcp_80 { 0-2519 : 192.168.0.11 . 8080 }\n"
    )
    none_left = slb_render.map_update_script(
        pub, tcp80, EMU, {("192.168.0.11", 8080), ("192.168.0.12", 8080)}
    )
    assert none_left == "flush map ip slbt-slb tcp_80\n"


@pytest.mark.parametrize(
    ("scheduler", "weights", "expected"),
    [
        ("wrr", (3, 1), {"ecs/b0": 1890, "ecs/b1": 630}),
        ("wrr", (100, 0, 100), {"ecs/b0": 1260, "ecs/b2": 1260}),  # weight 0: no new connections
        ("wlc", (1, 1), {"ecs/b0": 1260, "ecs/b1": 1260}),
        ("rr", (90, 10, 50), {"ecs/b0": 840, "ecs/b1": 840, "ecs/b2": 840}),  # rr ignores weights
    ],
    ids=["wrr-3to1", "wrr-weight0", "wlc-as-wrr", "rr"],
)
def test_schedulers_share_the_slots(
    scheduler: str, weights: tuple[int, ...], expected: dict[str, int]
) -> None:
    assert shares(listener(scheduler, *weights)) == expected


def test_rr_deals_slots_in_turn() -> None:
    owners = slb_render.slot_owners(listener("rr", 1, 1, 1))
    assert [b.server for b in owners[:6] if b] == ["ecs/b0", "ecs/b1", "ecs/b2"] * 2


@pytest.mark.parametrize("scheduler", ["sch", "tch"])
def test_consistent_hashing_moves_only_the_removed_backends_slots(scheduler: str) -> None:
    li = listener(scheduler, 100, 100, 100, 100)
    before = slb_render.slot_owners(li)
    counts = Counter(b.server for b in before if b)
    assert all(500 < n < 760 for n in counts.values()), counts  # about a quarter each
    after = slb_render.slot_owners(li, {("10.0.0.2", 8080)})
    moved = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert moved and all(before[i] is not None and before[i].server == "ecs/b1" for i in moved)  # type: ignore[union-attr]
    weighted = Counter(b.server for b in slb_render.slot_owners(listener(scheduler, 300, 100)) if b)
    assert 1700 < weighted["ecs/b0"] < 2080, weighted


def test_unhealthy_and_no_backend() -> None:
    li = listener("wrr", 1, 1)
    assert shares(li, {("10.0.0.1", 8080)}) == {"ecs/b1": 2520}
    assert shares(li, {("10.0.0.1", 8080), ("10.0.0.2", 8080)}) == {"none": 2520}
    assert slb_render.map_elements(li, {("10.0.0.1", 8080), ("10.0.0.2", 8080)}) == []


def test_primary_secondary_fails_over_and_back() -> None:
    li = listener("wrr", 100, 100, roles=("Master", "Slave"))
    assert shares(li) == {"ecs/b0": 2520}
    assert shares(li, {("10.0.0.1", 8080)}) == {"ecs/b1": 2520}


def test_acl_rate_limit_and_persistence_in_the_table(planned: Plan) -> None:
    import dataclasses

    pub = lb_named(planned, "pub")
    tcp80 = dataclasses.replace(
        pub.listeners[0],
        acl_type="white",
        acl_entries=(IPv4Network("203.0.113.0/25"),),
        connection_rate_limit=20,
        persistence_timeout=30,
    )
    lb = dataclasses.replace(pub, listeners=(tcp80, *pub.listeners[1:]))
    text = slb_render.render_slb_table(lb, EMU)
    match = "ip daddr 198.51.100.10 tcp dport 80"
    assert f"{match} ip saddr != @acl_tcp_80 drop" in text
    assert (
        f'{match} ct state new limit rate over 20/second burst 20 packets counter name "over_tcp_80" drop'
        in text
    )
    assert "timeout 30s" in text and f"{match} dnat ip to ip saddr map @persist_tcp_80" in text
    # The remembered backend is used before the scheduler picks one.
    assert text.index("map @persist_tcp_80") < text.index("numgen random mod 2520 map @tcp_80")
    assert "ct state new ct mark 0x1 update @persist_tcp_80 { ip saddr : ip daddr . tcp dport }" in text
    black = dataclasses.replace(tcp80, acl_type="black")
    assert f"{match} ip saddr @acl_tcp_80 drop" in slb_render.render_slb_table(
        dataclasses.replace(pub, listeners=(black,)), EMU
    )
    # An empty list forwards everything (TCP/UDP listener docs): no rule.
    empty = dataclasses.replace(tcp80, acl_entries=())
    assert "@acl_" not in slb_render.render_slb_table(dataclasses.replace(pub, listeners=(empty,)), EMU)
    # A health change also forgets the remembered clients.
    script = slb_render.map_update_script(lb, tcp80, EMU, set())
    assert "flush map ip slbt-slb persist_tcp_80" in script


def key(i: int) -> tuple[str, int]:
    return (f"10.0.0.{i + 1}", 8080)


@pytest.mark.parametrize(
    ("weights", "connections", "expected_new", "expected"),
    [
        # Equal weights, one backend holding 4: the next connection goes to the other only.
        ((100, 100), {1: 4}, 1, {"ecs/b0": 2520}),
        # A burst of 3 still fills the emptier backend first: level 3.5 < 4, so b1 gets nothing.
        ((100, 100), {1: 4}, 3, {"ecs/b0": 2520}),
        # A burst of 10 brings both to 7 each: 7 new for b0, 3 for b1.
        ((100, 100), {1: 4}, 10, {"ecs/b0": 1764, "ecs/b1": 756}),
        # Equal load relative to weight (6/75 = 2/25): shares by weight, as wrr.
        ((75, 25), {0: 6, 1: 2}, 1, {"ecs/b0": 1890, "ecs/b1": 630}),
        # Weight-relative: 3 on weight 75 is less loaded than 2 on weight 25.
        ((75, 25), {0: 3, 1: 2}, 1, {"ecs/b0": 2520}),
        ((75, 25), {0: 9, 1: 2}, 1, {"ecs/b1": 2520}),
        # Ties among the least loaded share by weight; the loaded one gets none.
        ((100, 50, 100), {2: 5}, 1, {"ecs/b0": 1680, "ecs/b1": 840}),
        # No counts yet (none read): wrr's shares.
        ((75, 25), {}, 1, {"ecs/b0": 1890, "ecs/b1": 630}),
    ],
    ids=["equal-next", "equal-small-burst", "equal-big-burst", "relative-balanced", "relative-a", "relative-b",
         "tie-by-weight", "empty"],
)  # fmt: skip
def test_wlc_fills_the_least_loaded_relative_to_weight(
    weights: tuple[int, ...], connections: dict[int, int], expected_new: int, expected: dict[str, int]
) -> None:
    li = listener("wlc", *weights)
    counts = {key(i): n for i, n in connections.items()}
    owners = slb_render.slot_owners(li, (), counts, expected_new)
    assert Counter(b.server if b else "none" for b in owners) == expected


def test_wlc_leaves_out_unhealthy_and_weight_zero_whatever_their_counts() -> None:
    li = listener("wlc", 100, 100, 0)
    owners = slb_render.slot_owners(li, {key(0)}, {key(1): 50}, 1)
    assert Counter(b.server if b else "none" for b in owners) == {"ecs/b1": 2520}
    # Without counts, wlc renders as wrr (the table's first load, before the runtime's first reading).
    assert shares(li) == {"ecs/b0": 1260, "ecs/b1": 1260}


def test_wlc_map_update_keeps_remembered_clients(planned: Plan) -> None:
    import dataclasses

    pub = lb_named(planned, "pub")
    li = dataclasses.replace(pub.listeners[0], scheduler="wlc", persistence_timeout=60)
    elements = slb_render.map_elements(li, (), {("192.168.0.11", 8080): 3}, 1)
    assert elements == ["0-2519 : 192.168.0.12 . 8080"]
    script = slb_render.wlc_update_script(li, EMU, elements)
    # One transaction: flush and refill; the persistence map is not flushed by a steering update...
    assert script == (
        "flush map ip slbt-slb tcp_80\nadd element ip slbt-slb tcp_80 { 0-2519 : 192.168.0.12 . 8080 }\n"
    )
    # ...but a health change still forgets where clients went.
    assert "flush map ip slbt-slb persist_tcp_80" in slb_render.map_update_script(pub, li, EMU, set())


def flow(
    ident: int, dport: int, backend: str, state: int | None = 3, proto: int = 6, dst: str = ""
) -> slb_render.Flow:
    return slb_render.Flow(ident, proto, dst or "198.51.100.10", dport, backend, 8080, state)


def test_count_connections_per_wlc_listener_and_backend(planned: Plan) -> None:
    import dataclasses

    pub = lb_named(planned, "pub")
    assert pub.address == IPv4Address("198.51.100.10")
    wlc = dataclasses.replace(
        pub, listeners=tuple(dataclasses.replace(li, scheduler="wlc") for li in pub.listeners)
    )
    flows = [
        flow(1, 80, "192.168.0.11"),
        flow(2, 80, "192.168.0.11", state=1),  # SYN_SENT: being opened, counts
        flow(3, 80, "192.168.0.12", state=7),  # TIME_WAIT: closed, a new id but no load
        flow(4, 80, "198.51.100.10"),  # no backend took it (the handshake socket): not counted
        flow(5, 80, "192.168.0.12", dst="100.64.0.1"),  # not to the VIP (a health check)
        flow(6, 53, "192.168.0.11", state=None, proto=17),  # UDP: every flow counts
        flow(7, 9999, "192.168.0.11"),  # no such listener
    ]
    readings = slb_render.count_connections(wlc, flows)
    assert readings["tcp/80"] == ({("192.168.0.11", 8080): 2}, frozenset({1, 2, 3}))
    assert readings["udp/53"] == ({("192.168.0.11", 8080): 1}, frozenset({6}))
    # Only wlc listeners are read.
    assert slb_render.count_connections(pub, flows) == {}
