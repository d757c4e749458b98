"""Endpoint resolution for ``--from``/``--to``: names, kinds, label selectors, and the errors."""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest

from acknet.analysis.endpoints import EndpointIndex, UnsupportedEndpoint, resolve
from acknet.controllers.plan import plan
from acknet.controllers.state import Plan
from acknet.errors import AcknetError, NotFound
from acknet.model.build import build_resources
from acknet.model.documents import Source


def doc(kind: str, name: str, spec: str, api: str = "acknet.io/v1", meta: str = "") -> str:
    return f"---\napiVersion: {api}\nkind: {kind}\nmetadata: {{name: {name}{meta}}}\nspec:\n{spec}\n"


def pod(
    name: str, node: str | None, labels: str, ports: str, namespace: str = "shop", extra: str = ""
) -> str:
    where = f"  nodeName: {node}\n" if node else "  nodeSelector: {disk: ssd}\n"
    return doc(
        "Pod",
        name,
        f"{where}{extra}  containers:\n  - name: main\n    ports: {ports}",
        api="v1",
        meta=f", namespace: {namespace}, labels: {labels}",
    )


CLOUD = (
    doc("VPC", "prod", "  cidrBlock: 192.168.0.0/16")
    + doc("VSwitch", "node-h", "  {vpc: prod, cidrBlock: 192.168.0.0/24, zoneId: cn-hangzhou-h}")
    + doc("VSwitch", "pod-h", "  {vpc: prod, cidrBlock: 192.168.32.0/19, zoneId: cn-hangzhou-h}")
    + doc("SecurityGroup", "cluster-sg", "  vpc: prod")
    + doc("SecurityGroup", "db-sg", "  vpc: prod")
    + doc(
        "ECSInstance",
        "db-1",
        "  {vswitch: node-h, securityGroups: [db-sg], ports: [{port: 3306}, {port: 53, protocol: UDP}]}",
    )
)

TERWAY = (
    CLOUD
    + doc(
        "Cluster",
        "ack",
        "  vpc: prod\n  podVSwitches: [pod-h]\n  securityGroups: [cluster-sg]\n  addons: []\n  nodePools:\n"
        "  - {name: default, vswitches: [node-h], count: 2, labels: {disk: hdd}}\n"
        "  - {name: excl, vswitches: [node-h], count: 1, eniMode: exclusive}",
    )
    + pod(
        "web-x", "ack-default-0", "{app: web, tier: front}", "[{containerPort: 8080}, {containerPort: 8080}]"
    )
    + pod("api-x", "ack-default-1", "{app: api, tier: back}", "[{containerPort: 9090}]")
    + pod("db-proxy", "ack-default-1", "{app: api, tier: db}", "[{containerPort: 3306}]")
    + pod("solo", "ack-excl-0", "{app: solo}", "[{containerPort: 7070, protocol: UDP}]", namespace="ops")
    + pod(
        "agent",
        "ack-default-0",
        "{app: agent}",
        "[{containerPort: 9100}]",
        "kube-system",
        "  hostNetwork: true\n",
    )
    + pod("waiting", None, "{app: web}", "[{containerPort: 8080}]")
)


@pytest.fixture(scope="module")
def terway() -> Plan:
    return plan(build_resources([Source("test.yaml", TERWAY)]))


def names(planned: Plan, selectors: str | list[str] | None) -> list[str]:
    return [e.name for e in resolve(planned, selectors, "from")]


ALL_PODS = ["kube-system/agent", "ops/solo", "shop/api-x", "shop/db-proxy", "shop/web-x"]
NODES = ["ecs/ack-default-0", "ecs/ack-default-1", "ecs/ack-excl-0"]


@pytest.mark.parametrize(
    ("selectors", "expected"),
    [
        pytest.param(None, [*ALL_PODS, "ecs/db-1"], id="none-is-every-pod-and-standalone-ecs"),
        pytest.param([], [*ALL_PODS, "ecs/db-1"], id="empty-list-is-none"),
        pytest.param("shop/web-x", ["shop/web-x"], id="pod-by-name"),
        pytest.param("ecs/db-1", ["ecs/db-1"], id="standalone-ecs-by-name"),
        pytest.param("ecs/ack-default-1", ["ecs/ack-default-1"], id="node-by-name"),
        pytest.param("pods", ALL_PODS, id="kind-pods"),
        pytest.param(
            "ecs",
            ["ecs/ack-default-0", "ecs/ack-default-1", "ecs/ack-excl-0", "ecs/db-1"],
            id="kind-ecs-includes-nodes",
        ),
        pytest.param("app=web", ["shop/web-x"], id="selector-equals"),
        pytest.param("app=api,tier!=db", ["shop/api-x"], id="selector-and-not-equals"),
        pytest.param("app in (web,solo)", ["ops/solo", "shop/web-x"], id="selector-in"),
        pytest.param(
            "disk=hdd", ["ecs/ack-default-0", "ecs/ack-default-1"], id="selector-on-node-pool-labels"
        ),
        pytest.param("kubernetes.io/hostname=ack-excl-0", ["ecs/ack-excl-0"], id="selector-key-with-slash"),
        pytest.param(
            ["shop/web-x", "ecs/db-1", "shop/web-x"], ["shop/web-x", "ecs/db-1"], id="list-without-repeats"
        ),
        pytest.param("shop/web-x,ecs/db-1", ["shop/web-x", "ecs/db-1"], id="comma-separated-names"),
        pytest.param(
            ["app=web", "pods"],
            ["shop/web-x", *[p for p in ALL_PODS if p != "shop/web-x"]],
            id="selector-then-kind",
        ),
    ],
)
def test_resolve(terway: Plan, selectors: str | list[str] | None, expected: list[str]) -> None:
    assert names(terway, selectors) == expected


@pytest.mark.parametrize(
    ("selector", "error", "message"),
    [
        pytest.param("shop/nope", NotFound, r"--from shop/nope: no pod named 'shop/nope'", id="unknown-pod"),
        pytest.param("ecs/nope", NotFound, r"no ECS instance or node named 'nope'", id="unknown-ecs"),
        pytest.param(
            "shop/waiting",
            NotFound,
            r"the pod is Pending .*it has no address; only running pods are endpoints",
            id="pending-pod",
        ),
        pytest.param(
            "app=nothing", NotFound, r"--from app=nothing: the label selector matches no", id="no-match"
        ),
        pytest.param("app in (web", NotFound, r"not a name, a kind or a label selector", id="bad-selector"),
        pytest.param("svc/shop/web", UnsupportedEndpoint, r"a Service is a destination only", id="svc"),
        pytest.param("svc", UnsupportedEndpoint, r"a Service is a destination only", id="svc-kind"),
        pytest.param("slb/db-slb", UnsupportedEndpoint, r"an SLB is a destination only", id="slb"),
        pytest.param("slb", UnsupportedEndpoint, r"an SLB is a destination only", id="slb-kind"),
    ],
)
def test_resolve_errors(terway: Plan, selector: str, error: type[AcknetError], message: str) -> None:
    with pytest.raises(error, match=message):
        resolve(terway, selector, "from")


def test_errors_name_the_role(terway: Plan) -> None:
    with pytest.raises(NotFound, match=r"^--to shop/nope"):
        resolve(terway, ["shop/web-x", "shop/nope"], "to")


def test_shared_pod_leaves_through_the_secondary_eni_holding_its_ip(terway: Plan) -> None:
    (web,) = resolve(terway, "shop/web-x", "to")
    node = next(i for i in terway.instances if i.name == "ack-default-0")
    eni = next(e for e in node.enis if web.ip in e.ips)
    assert eni.index > 0
    assert (web.datapath, web.instance, web.kind, web.vpc) == (
        "terway-shared",
        "ack-default-0",
        "pod",
        "prod",
    )
    assert (web.eni.id, str(web.eni), web.eni.security_groups) == (
        eni.id,
        f"ecs/ack-default-0 eth{eni.index}",
        ("cluster-sg",),
    )
    assert web.ports == ((8080, "TCP"),)  # declared twice, listed once
    assert web.namespace == "shop" and web.labels == {"app": "web", "tier": "front"}


def test_exclusive_pod_owns_its_eni(terway: Plan) -> None:
    (solo,) = resolve(terway, "ops/solo", "to")
    assert solo.datapath == "terway-exclusive"
    assert str(solo.eni) == "ops/solo eth0"
    assert solo.ports == ((7070, "UDP"),)
    assert solo.listens(7070, "udp") and not solo.listens(7070, "TCP")


def test_ecs_and_nodes_use_their_primary_eni(terway: Plan) -> None:
    (db,) = resolve(terway, "ecs/db-1", "to")
    assert (db.datapath, str(db.eni), db.eni.security_groups, db.cluster) == (
        "ecs",
        "ecs/db-1 eth0",
        ("db-sg",),
        None,
    )
    assert db.ports == ((3306, "TCP"), (53, "UDP"))
    (node,) = resolve(terway, "ecs/ack-default-1", "to")
    assert (node.datapath, str(node.eni), node.cluster) == ("ecs", "ecs/ack-default-1 eth0", "ack")
    assert node.labels["alibabacloud.com/nodepool-id"] == "default"


def test_host_network_pod_shares_its_node(terway: Plan) -> None:
    (agent,) = resolve(terway, "kube-system/agent", "to")
    (node,) = resolve(terway, "ecs/ack-default-0", "to")
    assert (agent.datapath, agent.ip, agent.eni) == ("host-network", node.ip, node.eni)
    # What a hostNetwork pod serves listens on its node's address.
    assert node.ports == ((9100, "TCP"),)


def test_index_is_reusable(terway: Plan) -> None:
    index = EndpointIndex.of(terway)
    assert [e.name for e in resolve(index, "pods")] == ALL_PODS
    assert list(index.pending) == ["shop/waiting"]
    assert index.pending["shop/waiting"].startswith("is Pending")


def test_flannel_pod_crosses_the_vpc_through_node_eth0() -> None:
    text = (
        CLOUD
        + doc(
            "Cluster",
            "ack",
            "  vpc: prod\n  networkPlugin: flannel\n  securityGroups: [cluster-sg]\n  addons: []\n  nodePools:\n"
            "  - {name: default, vswitches: [node-h], count: 1}",
        )
        + pod("web-x", "ack-default-0", "{app: web}", "[{containerPort: 8080}]")
    )
    planned = plan(build_resources([Source("test.yaml", text)]))
    (web,) = resolve(planned, "shop/web-x", "to")
    assert web.datapath == "flannel"
    assert web.ip in IPv4Network("172.20.0.0/25")  # the node's PodCIDR, not an ENI address
    assert str(web.eni) == "ecs/ack-default-0 eth0"
    assert web.eni.security_groups == ("cluster-sg",)
