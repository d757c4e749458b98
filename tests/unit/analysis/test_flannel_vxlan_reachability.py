"""Flannel's vxlan backend in ``acknet check``: flannel.1 carries pod traffic between nodes as UDP 8472
between their primary IPs, so the security groups judge that, both ways, never the pod addresses;
the VPC has no route to any pod address (dataplane/render/topology.py builds the same).
"""

from __future__ import annotations

import pytest

from acknet.analysis.endpoints import resolve, resolve_destinations
from acknet.analysis.reachability import Verdict, check, parse_port
from acknet.controllers.plan import plan
from acknet.controllers.state import Plan
from acknet.model.build import build_resources
from acknet.model.documents import Source


def doc(kind: str, name: str, spec: str, api: str = "acknet.io/v1", meta: str = "") -> str:
    return f"---\napiVersion: {api}\nkind: {kind}\nmetadata: {{name: {name}{meta}}}\nspec:\n{spec}\n"


def pod(name: str, node: str, labels: str, port: int) -> str:
    return doc(
        "Pod",
        name,
        f"  nodeName: {node}\n  containers:\n  - name: main\n    ports: [{{containerPort: {port}}}]",
        api="v1",
        meta=f", namespace: default, labels: {labels}",
    )


NODE_0, NODE_1 = "192.168.0.1", "192.168.0.2"


def vxlan(rules: str) -> Plan:
    """Two Flannel vxlan nodes, pods on both, a database ECS; ``cluster-sg`` has only ``rules``."""
    text = (
        doc("VPC", "prod", "  cidrBlock: 192.168.0.0/16")
        + doc("VSwitch", "node-h", "  {vpc: prod, cidrBlock: 192.168.0.0/24, zoneId: cn-hangzhou-h}")
        + doc("VSwitch", "data-h", "  {vpc: prod, cidrBlock: 192.168.8.0/24, zoneId: cn-hangzhou-h}")
        + doc("SecurityGroup", "cluster-sg", f"  vpc: prod\n  innerAccessPolicy: Drop\n  rules:{rules}")
        + doc(
            "SecurityGroup",
            "db-sg",
            "  vpc: prod\n  rules:\n  - {direction: ingress, ipProtocol: all, portRange: -1/-1, sourceCidrIp: 0.0.0.0/0}",
        )
        + doc("ECSInstance", "db-1", "  {vswitch: data-h, securityGroups: [db-sg], ports: [{port: 3306}]}")
        + doc(
            "Cluster",
            "ack",
            "  vpc: prod\n  networkPlugin: flannel\n  flannelBackend: vxlan\n  podCidr: 172.20.0.0/16\n"
            "  securityGroups: [cluster-sg]\n  addons: []\n  nodePools:\n"
            "  - {name: default, vswitches: [node-h], count: 2}",
        )
        + pod("a", "ack-default-0", "{app: a}", 8080)
        + pod("b", "ack-default-0", "{app: b}", 8080)
        + pod("c", "ack-default-1", "{app: c}", 8080)
        + pod("d", "ack-default-1", "{app: c}", 8080)
        + doc(
            "Service",
            "c",
            "  selector: {app: c}\n  ports: [{port: 80, targetPort: 8080}]",
            "v1",
            ", namespace: default",
        )
    )
    planned = plan(build_resources([Source("vxlan.yaml", text)]))
    nodes = {i.name: str(i.primary_ip) for i in planned.instances if i.is_node}
    assert nodes == {"ack-default-0": NODE_0, "ack-default-1": NODE_1}, nodes
    return planned


def rule(direction: str, protocol: str, ports: str, cidr: str) -> str:
    side = "sourceCidrIp" if direction == "ingress" else "destCidrIp"
    return f"\n  - {{direction: {direction}, ipProtocol: {protocol}, portRange: {ports}, {side}: {cidr}}}"


VXLAN_BOTH_WAYS = rule("ingress", "udp", "8472/8472", "192.168.0.0/24")
VXLAN_FROM_0_ONLY = rule("ingress", "udp", "8472/8472", f"{NODE_0}/32")
POD_CIDR_ONLY = rule("ingress", "all", "-1/-1", "172.20.0.0/16")
ALL_FROM_NODES = rule("ingress", "all", "-1/-1", "192.168.0.0/24")


def one(planned: Plan, src: str, dst: str, port: str = "8080") -> Verdict:
    verdicts = check(
        planned, resolve(planned, src, "from"), resolve_destinations(planned, dst), [parse_port(port)]
    )
    assert len(verdicts) == 1
    return verdicts[0]


@pytest.mark.parametrize(
    ("rules", "src", "dst", "port", "allowed", "reason"),
    [
        pytest.param(
            VXLAN_BOTH_WAYS,
            "default/a",
            "default/c",
            "8080",
            True,
            f"ecs/ack-default-0 flannel.1: VXLAN to 172.20.0.130's node ecs/ack-default-1, UDP 8472 {NODE_0} -> {NODE_1}",
            id="pod-to-pod-through-the-tunnel",
        ),
        pytest.param(
            POD_CIDR_ONLY,
            "default/a",
            "default/c",
            "8080",
            False,
            "ingress at ecs/ack-default-1 eth0: no rule accepts: ingress denied by default",
            id="the-groups-see-udp-8472-not-the-pod-addresses",
        ),
        pytest.param(
            VXLAN_FROM_0_ONLY,
            "default/a",
            "default/c",
            "8080",
            False,
            "reply tunnelled back: ingress at ecs/ack-default-0 eth0: no rule accepts",
            id="the-reply-is-a-new-udp-flow-back",
        ),
        pytest.param(
            VXLAN_FROM_0_ONLY,
            "ecs/ack-default-0",
            "default/c",
            "8080",
            True,
            "ingress at ecs/ack-default-1 eth0: cluster-sg ingress rule 1",
            id="a-node-address-gets-its-reply-natively",
        ),
        pytest.param(
            VXLAN_BOTH_WAYS,
            "default/a",
            "default/b",
            "8080",
            True,
            "same node ecs/ack-default-0: bridged on cni0",
            id="same-node-needs-no-tunnel",
        ),
        pytest.param(
            VXLAN_BOTH_WAYS,
            "ecs/db-1",
            "default/c",
            "8080",
            False,
            "no route entry for 172.20.0.130 (the Flannel vxlan backend writes none",
            id="outside-the-cluster-no-route-to-pods",
        ),
        pytest.param(
            VXLAN_BOTH_WAYS,
            "default/a",
            "ecs/db-1",
            "3306",
            False,
            "reply lost: VPC prod has no route back to the pod address 172.20.0.2",
            id="the-reply-from-outside-is-lost",
        ),
        pytest.param(
            POD_CIDR_ONLY + VXLAN_FROM_0_ONLY,
            "default/a",
            "ecs/ack-default-1",
            "8080",
            False,
            "reply tunnelled back: ingress at ecs/ack-default-0 eth0: no rule accepts",
            id="pod-to-another-node-the-reply-needs-the-tunnel-back",
        ),
        pytest.param(
            POD_CIDR_ONLY + ALL_FROM_NODES,
            "default/a",
            "ecs/ack-default-1",
            "8080",
            False,  # it gets there and back; nothing listens on the node itself
            "reply tunnelled back: ingress at ecs/ack-default-0 eth0: cluster-sg ingress rule 2",
            id="pod-to-another-node-reply-comes-through-the-tunnel",
        ),
    ],
)
def test_vxlan(rules: str, src: str, dst: str, port: str, allowed: bool, reason: str) -> None:
    v = one(vxlan(rules), src, dst, port)
    assert v.allowed is allowed, v.reasons
    assert any(reason in r for r in v.reasons), v.reasons


def test_service_from_a_node_is_masqueraded_to_flannel_1_and_tunnelled_back() -> None:
    # Node to ClusterIP: kube-proxy masquerades to the address of the way out, flannel.1's, so the
    # reply comes back through the tunnel and needs UDP 8472 from node 1 as well.
    v = one(vxlan(VXLAN_FROM_0_ONLY), "ecs/ack-default-0", "svc/default/c", "80")
    assert not v.allowed and not v.partial
    assert all("reply tunnelled back" in b.reasons[-1] for b in v.backends), v.reasons
    assert one(vxlan(VXLAN_BOTH_WAYS), "ecs/ack-default-0", "svc/default/c", "80").allowed
