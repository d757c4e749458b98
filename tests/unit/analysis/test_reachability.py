"""Reachability from the model (``acknet check``), one readable case per row.

Small topologies are written inline as YAML. Each case names the source, destination and port, the
expected verdict, and a fragment of the reason that must appear: the hop that decided.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from acknet.analysis.endpoints import Endpoint, resolve
from acknet.analysis.reachability import Hop, Reachability, Verdict, check, parse_port
from acknet.controllers.plan import plan
from acknet.controllers.state import Plan
from acknet.model.build import build_resources
from acknet.model.documents import Source
from acknet.store.files import read_sources

REPO = Path(__file__).resolve().parents[3]


def plan_of(text: str) -> Plan:
    return plan(build_resources([Source("test.yaml", text)]))


def doc(kind: str, name: str, spec: str, api: str = "acknet.io/v1", meta: str = "") -> str:
    return f"---\napiVersion: {api}\nkind: {kind}\nmetadata: {{name: {name}{meta}}}\nspec:\n{spec}\n"


# One VPC with a node, a pod and a data VSwitch; a second VPC far away.
CLOUD = (
    doc("VPC", "prod", "  cidrBlock: 192.168.0.0/16")
    + doc("VSwitch", "node-h", "  {vpc: prod, cidrBlock: 192.168.0.0/24, zoneId: cn-hangzhou-h}")
    + doc("VSwitch", "pod-h", "  {vpc: prod, cidrBlock: 192.168.32.0/19, zoneId: cn-hangzhou-h}")
    + doc("VSwitch", "data-h", "  {vpc: prod, cidrBlock: 192.168.8.0/24, zoneId: cn-hangzhou-h}")
    + doc("VPC", "other", "  cidrBlock: 10.0.0.0/16")
    + doc("VSwitch", "other-h", "  {vpc: other, cidrBlock: 10.0.0.0/24, zoneId: cn-hangzhou-h}")
    + doc(
        "SecurityGroup",
        "other-sg",
        "  vpc: other\n  rules:\n"
        "  - {direction: ingress, ipProtocol: tcp, portRange: 5432/5432, sourceCidrIp: 0.0.0.0/0}",
    )
    + doc(
        "ECSInstance",
        "far-1",
        "  {vswitch: other-h, securityGroups: [other-sg], ports: [{port: 5432}]}",
    )
)

# cluster-sg with innerAccessPolicy Drop: members need rules like anyone else, which makes visible
# where a security group is met and where it is not.
TERWAY = (
    CLOUD
    + doc(
        "SecurityGroup",
        "cluster-sg",
        "  vpc: prod\n  innerAccessPolicy: Drop\n  rules:\n"
        "  - {direction: ingress, ipProtocol: icmp, portRange: -1/-1, sourceCidrIp: 0.0.0.0/0}\n"  # 0
        "  - {direction: ingress, ipProtocol: tcp, portRange: 9090/9090, sourceCidrIp: 192.168.0.0/24}\n"  # 1
        "  - {direction: egress, policy: drop, ipProtocol: tcp, portRange: 22/22, destCidrIp: 192.168.8.0/24}",  # 2
    )
    + doc(
        "SecurityGroup",
        "db-sg",
        "  vpc: prod\n  innerAccessPolicy: Drop\n  rules:\n"
        "  - {direction: ingress, ipProtocol: tcp, portRange: 3306/3306, sourceGroupId: cluster-sg}\n"  # 0
        "  - {direction: ingress, policy: drop, priority: 10, ipProtocol: tcp, portRange: 3306/3306,"
        " sourceCidrIp: 0.0.0.0/0}\n"  # 1
        "  - {direction: ingress, ipProtocol: tcp, portRange: 22/22, sourceCidrIp: 192.168.0.0/16}",  # 2
    )
    + doc(
        "SecurityGroup",
        "app-sg",
        "  vpc: prod\n  rules:\n"
        "  - {direction: ingress, ipProtocol: tcp, portRange: 80/80, sourceCidrIp: 192.168.32.0/19}",
    )
    + doc(
        "ECSInstance",
        "db-1",
        "  {vswitch: data-h, securityGroups: [db-sg], privateIpAddress: 192.168.8.10,"
        " ports: [{port: 3306}, {port: 22}]}",
    )
    + doc("ECSInstance", "app-1", "  {vswitch: node-h, securityGroups: [app-sg], ports: [{port: 80}]}")
    + doc(
        "Cluster",
        "ack",
        "  vpc: prod\n  podVSwitches: [pod-h]\n  securityGroups: [cluster-sg]\n  addons: []\n  nodePools:\n"
        "  - {name: default, vswitches: [node-h], count: 2}\n"
        "  - {name: excl, vswitches: [node-h], count: 1, eniMode: exclusive}",
    )
)


def pod(name: str, node: str | None, labels: str, port: int, namespace: str = "default") -> str:
    where = f"  nodeName: {node}\n" if node else "  nodeSelector: {disk: ssd}\n"
    return doc(
        "Pod",
        name,
        f"{where}  containers:\n  - name: main\n    ports: [{{containerPort: {port}}}]",
        api="v1",
        meta=f", namespace: {namespace}, labels: {labels}",
    )


PODS = (
    pod("web-a", "ack-default-0", "{app: web, tier: front}", 8080)
    + pod("api", "ack-default-0", "{app: api, tier: back}", 9090)
    + pod("web-b", "ack-default-1", "{app: web, tier: front}", 8080)
    + pod("solo", "ack-excl-0", "{app: solo}", 7070)
    + pod("solo2", "ack-excl-0", "{app: solo}", 7070)
    + pod("waiting", None, "{app: web}", 8080)
)


@pytest.fixture(scope="module")
def terway() -> Plan:
    return plan_of(TERWAY + PODS)


def one(planned: Plan, src: str, dst: str, port: str | None) -> Verdict:
    ports = [parse_port(port)] if port else None
    verdicts = check(planned, resolve(planned, src, "from"), resolve(planned, dst, "to"), ports)
    assert len(verdicts) == 1, verdicts
    return verdicts[0]


TERWAY_CASES = [
    # (id, from, to, port, allowed, reason fragment)
    (
        "same-node-shared-pods-skip-security-groups",
        "default/web-a",
        "default/api",
        "9090",
        True,
        "same node ecs/ack-default-0: routed inside the node (Terway veth policy routing), never reaches a security group",
    ),
    (
        "cross-node-pods-meet-the-destination-eni-groups",
        "default/web-b",
        "default/api",
        "9090",
        False,
        "ingress at ecs/ack-default-0 eth1: no rule accepts: ingress denied by default",
    ),
    (
        "cross-node-vpc-delivers-without-encapsulation",
        "default/web-b",
        "default/api",
        "9090",
        False,
        "delivered without encapsulation",
    ),
    (
        "pod-to-ecs-allowed-by-source-group-rule",
        "default/web-a",
        "ecs/db-1",
        "3306",
        True,
        "ingress at ecs/db-1 eth0: db-sg ingress rule 1 priority 1 (accept) accepts",
    ),
    (
        "ecs-to-ecs-dropped-by-priority-10-rule",
        "ecs/app-1",
        "ecs/db-1",
        "3306",
        False,
        "ingress at ecs/db-1 eth0: db-sg ingress rule 2 priority 10 (drop) drops",
    ),
    (
        "pod-egress-leaves-through-its-secondary-eni-and-is-dropped",
        "default/web-a",
        "ecs/db-1",
        "22",
        False,
        "egress at ecs/ack-default-0 eth1: cluster-sg egress rule 3 priority 1 (drop) drops",
    ),
    (
        "node-egress-leaves-through-eth0",
        "ecs/ack-default-0",
        "ecs/db-1",
        "22",
        False,
        "egress at ecs/ack-default-0 eth0: cluster-sg egress rule 3 priority 1 (drop) drops",
    ),
    (
        "ecs-to-ecs-allowed",
        "ecs/app-1",
        "ecs/db-1",
        "22",
        True,
        "ingress at ecs/db-1 eth0: db-sg ingress rule 3 priority 1 (accept) accepts",
    ),
    (
        "ecs-to-pod-allowed-by-cidr-rule",
        "ecs/app-1",
        "default/api",
        "9090",
        True,
        "ingress at ecs/ack-default-0 eth1: cluster-sg ingress rule 2 priority 1 (accept) accepts",
    ),
    (
        "ecs-to-pod-denied-by-default",
        "ecs/db-1",
        "default/web-a",
        "8080",
        False,
        "ingress at ecs/ack-default-0 eth1: no rule accepts: ingress denied by default",
    ),
    (
        "pod-to-ecs-allowed-by-pod-vswitch-cidr",
        "default/web-b",
        "ecs/app-1",
        "80",
        True,
        "ingress at ecs/app-1 eth0: app-sg ingress rule 1 priority 1 (accept) accepts",
    ),
    (
        "ecs-to-ecs-denied-by-default",
        "ecs/db-1",
        "ecs/app-1",
        "80",
        False,
        "ingress at ecs/app-1 eth0: no rule accepts: ingress denied by default",
    ),
    (
        "exclusive-pod-on-the-same-node-goes-through-both-enis",
        "default/solo2",
        "default/solo",
        "7070",
        False,
        "ingress at default/solo eth0: no rule accepts: ingress denied by default",
    ),
    (
        "exclusive-pod-egress-at-its-own-eni",
        "default/solo",
        "ecs/db-1",
        "22",
        False,
        "egress at default/solo eth0: cluster-sg egress rule 3 priority 1 (drop) drops",
    ),
    (
        "exclusive-pod-ingress-from-ecs",
        "ecs/app-1",
        "default/solo",
        "9090",
        False,
        "nothing listens on 9090/TCP at default/solo",
    ),
    (
        "node-reaches-its-exclusive-pod-over-veth1",
        "ecs/ack-excl-0",
        "default/solo",
        "7070",
        True,
        "same node ecs/ack-excl-0: the exclusive-ENI pod reaches its node over veth1",
    ),
    (
        "shared-pod-reaches-its-own-node-inside-the-node",
        "default/web-a",
        "ecs/ack-default-0",
        "22",
        False,
        "nothing listens on 22/TCP at ecs/ack-default-0",
    ),
    (
        "refused-port-on-a-reachable-pod",
        "default/web-a",
        "default/api",
        "8080",
        False,
        "nothing listens on 8080/TCP at default/api",
    ),
    (
        "refused-udp-port",
        "ecs/app-1",
        "default/api",
        "9090/udp",
        False,
        "ingress at ecs/ack-default-0 eth1: no rule accepts: ingress denied by default",
    ),
    (
        "listening-port-is-named",
        "default/web-a",
        "default/api",
        "9090/TCP",
        True,
        "9090/TCP listens at default/api",
    ),
    (
        "different-vpcs-have-no-route",
        "default/web-a",
        "ecs/far-1",
        "5432",
        False,
        "no route: different VPCs (default/web-a is in prod, ecs/far-1 in other)",
    ),
    (
        "different-vpcs-both-ways",
        "ecs/far-1",
        "ecs/db-1",
        "3306",
        False,
        "no route: different VPCs",
    ),
]


@pytest.mark.parametrize(
    ("src", "dst", "port", "allowed", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in TERWAY_CASES],
)
def test_terway(terway: Plan, src: str, dst: str, port: str, allowed: bool, reason: str) -> None:
    verdict = one(terway, src, dst, port)
    assert verdict.allowed is allowed, verdict.reasons
    assert any(reason in r for r in verdict.reasons), verdict.reasons


def test_a_denied_verdict_stops_at_the_hop_that_dropped(terway: Plan) -> None:
    verdict = one(terway, "default/web-a", "ecs/db-1", "22")
    assert [h.object for h in verdict.hops] == ["network policy", "security group cluster-sg"]
    hop = verdict.hops[-1]
    assert (hop.at, hop.object, hop.rule, hop.action) == (
        "ecs/ack-default-0 eth1",
        "security group cluster-sg",
        "egress rule 3",
        "drop",
    )


def test_an_allowed_verdict_names_every_hop(terway: Plan) -> None:
    verdict = one(terway, "default/web-a", "ecs/db-1", "3306")
    assert [h.action for h in verdict.hops] == ["accept", "accept", "forward", "accept", "accept"]
    assert "network policy is off in cluster ack" in verdict.reasons[0]
    assert verdict.reasons[1] == "egress at ecs/ack-default-0 eth1: no rule drops: egress allowed by default"
    assert verdict.reasons[-1] == "3306/TCP listens at ecs/db-1"
    assert verdict.to_json() == {
        "from": "default/web-a",
        "to": "ecs/db-1",
        "port": 3306,
        "protocol": "TCP",
        "allowed": True,
        "reasons": verdict.reasons,
    }


def test_refused_is_a_reject_not_a_drop(terway: Plan) -> None:
    verdict = one(terway, "default/web-a", "default/api", "8080")
    assert verdict.hops[-1].action == "reject"
    assert not verdict.hops[-1].passes


def test_without_ports_each_destination_declares_its_own(terway: Plan) -> None:
    verdicts = check(
        terway, resolve(terway, "default/web-a", "from"), resolve(terway, ["ecs/db-1", "pods"], "to")
    )
    assert [(v.destination, v.port, v.protocol) for v in verdicts] == [
        ("ecs/db-1", 3306, "TCP"),
        ("ecs/db-1", 22, "TCP"),
        ("default/api", 9090, "TCP"),
        ("default/solo", 7070, "TCP"),
        ("default/solo2", 7070, "TCP"),
        ("default/web-b", 8080, "TCP"),
    ]


def test_a_pair_of_an_endpoint_with_itself_is_left_out(terway: Plan) -> None:
    pods = resolve(terway, "pods", "from")
    verdicts = check(terway, pods, pods, [(80, "TCP")])
    assert len(verdicts) == len(pods) * (len(pods) - 1)
    assert all(v.source != v.destination for v in verdicts)


def test_a_pending_pod_is_never_a_source_or_destination(terway: Plan) -> None:
    everything = resolve(terway, None, "to")
    verdicts = check(terway, everything, everything, [(8080, "TCP")])
    assert "default/waiting" not in {v.source for v in verdicts} | {v.destination for v in verdicts}


def test_security_group_decisions_are_cached_per_eni_and_peer(terway: Plan) -> None:
    reach = Reachability(terway)
    pods = resolve(terway, "pods", "from")
    first = reach.check(pods, pods, [(9090, "TCP")])
    again = reach.check(pods, pods, [(9090, "TCP")])
    assert first == again
    # The same hop object is handed out again, not recomputed.
    assert all(a is b for x, y in zip(first, again, strict=True) for a, b in zip(x.hops, y.hops, strict=True))


# -- Flannel ---------------------------------------------------------------------------------------------


def flannel(rules: str, backend: str = "vpc") -> Plan:
    text = (
        CLOUD
        + doc("SecurityGroup", "cluster-sg", f"  vpc: prod\n  rules:\n{rules}")
        + doc("SecurityGroup", "db-sg", "  vpc: prod\n  rules:\n" + OPEN_DB)
        + doc("ECSInstance", "db-1", "  {vswitch: data-h, securityGroups: [db-sg], ports: [{port: 3306}]}")
        + doc(
            "Cluster",
            "ack",
            "  vpc: prod\n  networkPlugin: flannel\n  podCidr: 172.20.0.0/16\n"
            f"  flannelBackend: {backend}\n  securityGroups: [cluster-sg]\n  addons: []\n  nodePools:\n"
            "  - {name: default, vswitches: [node-h], count: 2}",
        )
        + pod("a", "ack-default-0", "{app: a}", 8080)
        + pod("b", "ack-default-0", "{app: b}", 8080)
        + pod("c", "ack-default-1", "{app: c}", 8080)
    )
    return plan_of(text)


OPEN_DB = "  - {direction: ingress, ipProtocol: tcp, portRange: 3306/3306, sourceCidrIp: 172.20.0.0/16}"
# What ACK tells Flannel users to add: the pod CIDR (pod addresses are not ENI addresses, so
# intra-group access does not cover them).
POD_CIDR_RULE = "  - {direction: ingress, ipProtocol: all, portRange: -1/-1, sourceCidrIp: 172.20.0.0/16}"
ICMP_ONLY = "  - {direction: ingress, ipProtocol: icmp, portRange: -1/-1, sourceCidrIp: 0.0.0.0/0}"

FLANNEL_CASES = [
    # (id, cluster-sg rules, from, to, port, allowed, reason fragment)
    (
        "same-node-via-cni0",
        ICMP_ONLY,
        "default/a",
        "default/b",
        True,
        "same node ecs/ack-default-0: bridged on cni0, never reaches a security group",
    ),
    (
        "cross-node-without-pod-cidr-rule-is-dropped-at-node-eth0",
        ICMP_ONLY,
        "default/a",
        "default/c",
        False,
        "ingress at ecs/ack-default-1 eth0: no rule accepts: ingress denied by default",
    ),
    (
        "cross-node-allowed-by-the-pod-cidr-rule",
        POD_CIDR_RULE,
        "default/a",
        "default/c",
        True,
        "ingress at ecs/ack-default-1 eth0: cluster-sg ingress rule 1 priority 1 (accept) accepts",
    ),
    (
        "cross-node-uses-the-vpc-route-entry",
        POD_CIDR_RULE,
        "default/a",
        "default/c",
        True,
        "VPC prod route entry 172.20.0.128/25 -> ack-default-1 (Flannel PodCIDR), no encapsulation",
    ),
    (
        "pod-to-ecs-with-the-pod-address-as-source",
        ICMP_ONLY,
        "default/c",
        "ecs/db-1",
        True,
        "ingress at ecs/db-1 eth0: db-sg ingress rule 1 priority 1 (accept) accepts",
    ),
    (
        "pod-egress-at-the-node-primary-eni",
        ICMP_ONLY,
        "default/c",
        "ecs/db-1",
        True,
        "egress at ecs/ack-default-1 eth0: no rule drops",
    ),
    (
        "node-is-not-a-member-for-pods-but-intra-group-for-nodes",
        ICMP_ONLY,
        "ecs/ack-default-0",
        "ecs/ack-default-1",
        False,
        "nothing listens on 8080/TCP at ecs/ack-default-1",
    ),
]


@pytest.mark.parametrize(
    ("rules", "src", "dst", "allowed", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in FLANNEL_CASES],
)
def test_flannel(rules: str, src: str, dst: str, allowed: bool, reason: str) -> None:
    planned = flannel(rules)
    port = "3306" if dst == "ecs/db-1" else "8080"
    verdict = one(planned, src, dst, port)
    assert verdict.allowed is allowed, verdict.reasons
    assert any(reason in r for r in verdict.reasons), verdict.reasons


def test_flannel_vxlan_crosses_the_vpc_between_node_addresses() -> None:
    # More in test_flannel_vxlan_reachability.py: the groups judge node-to-node UDP 8472.
    verdict = one(flannel(POD_CIDR_RULE, backend="vxlan"), "default/a", "default/c", "8080")
    assert verdict.allowed, verdict.reasons
    assert any("flannel.1: VXLAN to 172.20.0.130's node ecs/ack-default-1" in r for r in verdict.reasons)


# -- examples/shop ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shop() -> Plan:
    return plan(build_resources(read_sources([str(REPO / "examples" / "shop")])))


def test_shop_pods_reach_the_database_through_cluster_sg(shop: Plan) -> None:
    pods = resolve(shop, "pods", "from")
    verdicts = check(shop, pods, resolve(shop, "ecs/db-1", "to"), [(3306, "TCP")])
    assert len(verdicts) == len(pods) == 13  # with CoreDNS and the two NGINX Ingress pods
    for v in verdicts:
        if v.source == "ops/monitor":  # the shop's GlobalNetworkPolicy keeps monitors off the data VSwitch
            assert not v.allowed
            assert "GlobalNetworkPolicy monitor-not-to-data egress rule 1 (Deny)" in v.reasons[0]
            continue
        assert v.allowed, v.reasons
        assert "ingress at ecs/db-1 eth0: db-sg ingress rule 1 priority 1 (accept) accepts" in v.reasons


@pytest.mark.parametrize(
    ("src", "dst", "port", "allowed", "reason"),
    [
        pytest.param(
            "ecs/bastion",
            "ecs/db-1",
            "3306",
            False,
            "ingress at ecs/db-1 eth0: db-sg ingress rule 2 priority 10 (drop) drops",
            id="bastion-to-db-dropped-by-priority-10",
        ),
        pytest.param(
            "ecs/bastion",
            "ecs/db-1",
            "22",
            False,  # db-sg lets SSH in from node-h, but db-1 serves 3306 only: refused
            "ingress at ecs/db-1 eth0: db-sg ingress rule 3 priority 1 (accept) accepts",
            id="bastion-ssh-passes-db-sg-but-nothing-listens",
        ),
        pytest.param(
            "ecs/ack-default-1",
            "ecs/db-1",
            "22",
            False,
            "ingress at ecs/db-1 eth0: no rule accepts: ingress denied by default",
            id="node-in-node-i-gets-no-ssh",
        ),
        pytest.param(
            "app=web",
            "ecs/bastion",
            "22",
            False,
            "ingress at ecs/bastion eth0: no rule accepts: ingress denied by default (enterprise group)",
            id="pods-to-bastion-enterprise-default",
        ),
        pytest.param(
            "app=api",
            "app=cart",
            "7070",
            True,
            "basic group cluster-sg allows intra-group traffic (innerAccessPolicy Accept)",
            id="cross-node-pods-intra-group",
        ),
        pytest.param(
            "app=monitor",
            "app=cart",
            "7070",
            False,
            "NetworkPolicy shop/default-deny select",
            id="default-deny-without-an-allowing-rule",
        ),
    ],
)
def test_shop(shop: Plan, src: str, dst: str, port: str, allowed: bool, reason: str) -> None:
    verdicts = check(shop, resolve(shop, src, "from"), resolve(shop, dst, "to"), [parse_port(port)])
    assert verdicts
    for v in verdicts:
        if allowed and any("same node" in r for r in v.reasons):
            continue  # a replica next to its peer is reached inside the node, without security groups
        assert v.allowed is allowed, (v.source, v.destination, v.reasons)
        assert any(reason in r for r in v.reasons), v.reasons


def test_shop_exclusive_pod_is_reached_through_its_own_eni(shop: Plan) -> None:
    exclusive = [e for e in resolve(shop, "pods", "to") if e.datapath == "terway-exclusive"]
    assert exclusive
    web = resolve(shop, "ecs/bastion", "from")
    for v in check(shop, web, exclusive, [(22, "TCP")]):
        assert any(r.startswith(f"ingress at {v.destination} eth0:") for r in v.reasons), v.reasons


# -- ports -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("80", (80, "TCP"), id="bare-is-tcp"),
        pytest.param("80/TCP", (80, "TCP"), id="tcp"),
        pytest.param("53/udp", (53, "UDP"), id="udp-any-case"),
        pytest.param("3868/sctp", (3868, "SCTP"), id="sctp"),
    ],
)
def test_parse_port(text: str, expected: tuple[int, str]) -> None:
    assert parse_port(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("http", "expected PORT or PORT/PROTOCOL", id="name"),
        pytest.param("0", "outside 1-65535", id="zero"),
        pytest.param("70000/tcp", "outside 1-65535", id="too-big"),
        pytest.param("80/icmp", "not one of TCP, UDP, SCTP", id="protocol"),
    ],
)
def test_parse_port_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_port(text)


def test_hop_json_has_the_trace_shape() -> None:
    hop = Hop(
        "ecs/db-1 eth0", "security group db-sg", "drop", "ingress at ecs/db-1 eth0: ...", "ingress rule 2"
    )
    assert hop.to_json() == {
        "at": "ecs/db-1 eth0",
        "object": "security group db-sg",
        "rule": "ingress rule 2",
        "action": "drop",
    }


def test_endpoint_type_is_what_check_takes(terway: Plan) -> None:
    endpoints: list[Endpoint] = resolve(terway, "ecs", "from")
    assert {e.kind for e in endpoints} == {"ecs"}


def test_a_command_may_listen_on_undeclared_ports_and_the_reason_says_so() -> None:
    tool = doc(
        "Pod",
        "tool",
        "  nodeName: ack-default-0\n  containers:\n  - name: main\n"
        "    command: [python3, -m, http.server, '5000']\n    ports: [{containerPort: 8000}]",
        api="v1",
        meta=", namespace: default, labels: {app: tool}",
    )
    planned = plan_of(TERWAY + PODS + tool)
    verdict = one(planned, "default/web-a", "default/tool", "5000")
    assert verdict.allowed
    assert verdict.reasons[-1] == (
        "5000/TCP is not declared at default/tool, which runs its own command: assumed to listen"
    )
    assert (
        one(planned, "default/web-a", "default/tool", "8000").reasons[-1]
        == "8000/TCP listens at default/tool"
    )
