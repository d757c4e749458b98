"""``acknet check`` through Services: the ClusterIP from pods and nodes, NodePorts from ECS instances,
headless names, no endpoints, readiness, traffic policies, and the ``partial`` verdict.

One small Terway cluster (two shared-ENI nodes and one exclusive-ENI node) with three web pods, one
of which a NetworkPolicy closes to the client pod, so the client's verdict through the Service is
partial. Two ECS instances outside the cluster: the node security group opens the NodePort range to
``ecs/ok`` only.
"""

from __future__ import annotations

import pytest

from acknet.analysis.endpoints import (
    EndpointIndex,
    ServiceEndpoint,
    UnsupportedEndpoint,
    resolve,
    resolve_destinations,
)
from acknet.analysis.reachability import Reachability, Verdict, check, parse_port
from acknet.controllers.plan import plan
from acknet.controllers.state import Plan
from acknet.errors import NotFound
from acknet.model.build import build_resources
from acknet.model.documents import Source


def doc(kind: str, name: str, spec: str, api: str = "acknet.io/v1", meta: str = "") -> str:
    return f"---\napiVersion: {api}\nkind: {kind}\nmetadata: {{name: {name}{meta}}}\nspec:\n{spec}\n"


def pod(name: str, node: str, labels: str, ports: str) -> str:
    return doc(
        "Pod",
        name,
        f"  nodeName: {node}\n  containers:\n  - name: main\n    ports: {ports}",
        api="v1",
        meta=f", namespace: default, labels: {labels}",
    )


def service(name: str, spec: str) -> str:
    return doc("Service", name, spec, api="v1", meta=", namespace: default")


HTTP = "[{name: http, containerPort: 8080}]"
CLOUD = (
    doc("VPC", "prod", "  cidrBlock: 192.168.0.0/16")
    + doc("VSwitch", "node-h", "  {vpc: prod, cidrBlock: 192.168.0.0/24, zoneId: cn-hangzhou-h}")
    + doc("VSwitch", "pod-h", "  {vpc: prod, cidrBlock: 192.168.32.0/19, zoneId: cn-hangzhou-h}")
    + doc("VSwitch", "data-h", "  {vpc: prod, cidrBlock: 192.168.8.0/24, zoneId: cn-hangzhou-h}")
    + doc(
        "SecurityGroup",
        "cluster-sg",
        "  vpc: prod\n  innerAccessPolicy: Accept\n  rules:\n"
        "  - {direction: ingress, ipProtocol: tcp, portRange: 30000/32767, sourceCidrIp: 192.168.8.10/32}",
    )
    + doc("SecurityGroup", "ecs-sg", "  vpc: prod")
    + doc(
        "ECSInstance", "ok", "  {vswitch: data-h, securityGroups: [ecs-sg], privateIpAddress: 192.168.8.10}"
    )
    + doc(
        "ECSInstance", "bad", "  {vswitch: data-h, securityGroups: [ecs-sg], privateIpAddress: 192.168.8.11}"
    )
    + doc(
        "Cluster",
        "ack",
        "  vpc: prod\n  podVSwitches: [pod-h]\n  networkPolicy: true\n  securityGroups: [cluster-sg]\n  addons: []\n  nodePools:\n"
        "  - {name: default, vswitches: [node-h], count: 2}\n"
        "  - {name: excl, vswitches: [node-h], count: 1, eniMode: exclusive}",
    )
)
WORKLOADS = (
    pod("web-a", "ack-default-0", "{app: web}", HTTP)
    # The named targetPort resolves per pod: web-b serves "http" on 8081.
    + pod("web-b", "ack-default-1", "{app: web}", "[{name: http, containerPort: 8081}]")
    + pod("web-c", "ack-default-1", "{app: web, closed: 'yes'}", HTTP)
    + pod("client", "ack-default-0", "{app: client}", "[{containerPort: 9000}]")
    + pod("solo", "ack-excl-0", "{app: solo}", "[{containerPort: 7070}]")
    + doc(
        "NetworkPolicy",
        "closed-to-client",
        "  podSelector: {matchLabels: {closed: 'yes'}}\n  policyTypes: [Ingress]\n  ingress:\n"
        "  - from: [{ipBlock: {cidr: 0.0.0.0/0, except: [192.168.32.0/19]}}]",
        api="networking.k8s.io/v1",
        meta=", namespace: default",
    )
    + service("web", "  selector: {app: web}\n  ports: [{port: 80, targetPort: http}]")
    + service(
        "web-np",
        "  type: NodePort\n  selector: {app: web}\n  ports: [{port: 80, targetPort: http, nodePort: 30080}]",
    )
    + service(
        "web-local",
        "  type: NodePort\n  externalTrafficPolicy: Local\n  selector: {app: web}\n"
        "  ports: [{port: 80, targetPort: http, nodePort: 30081}]",
    )
    + service(
        "web-itp",
        "  internalTrafficPolicy: Local\n  selector: {app: web}\n  ports: [{port: 80, targetPort: http}]",
    )
    + service("empty", "  selector: {app: nothing}\n  ports: [{port: 80}]")
    + service(
        "web-headless", "  clusterIP: None\n  selector: {app: web}\n  ports: [{port: 80, targetPort: http}]"
    )
    + service("cname", "  type: ExternalName\n  externalName: example.com")
    + service("manual", "  ports: [{port: 80, targetPort: 8080}]")
    + "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
    "metadata: {name: manual-1, namespace: default, labels: {kubernetes.io/service-name: manual}}\n"
    "addressType: IPv4\nports: [{port: 8080}]\nendpoints:\n"
    "- addresses: [192.168.8.10]\n- addresses: [192.168.8.11]\n  conditions: {ready: false}\n"
)


@pytest.fixture(scope="module")
def planned() -> Plan:
    return plan(build_resources([Source("svc.yaml", CLOUD + WORKLOADS)]))


def one(planned: Plan, src: str, dst: str, port: str | None = None) -> Verdict:
    ports = [parse_port(port)] if port else None
    verdicts = check(planned, resolve(planned, src, "from"), resolve_destinations(planned, dst), ports)
    assert len(verdicts) == 1, verdicts
    return verdicts[0]


def test_all_backends_reachable_is_allowed(planned: Plan) -> None:
    v = one(planned, "ecs/ack-default-0", "svc/default/web")
    assert (v.allowed, v.partial, v.port, v.protocol) == (True, False, 80, "TCP")
    assert v.reasons[0].startswith("ClusterIP ")
    assert "kube-proxy on ecs/ack-default-0 DNATs to one of 3 ready endpoint(s)" in v.reasons[0]
    assert len(v.backends) == 3 and all(b.allowed for b in v.backends)


def test_a_policy_closing_one_backend_makes_the_verdict_partial(planned: Plan) -> None:
    v = one(planned, "default/client", "svc/default/web")
    assert (v.allowed, v.partial) == (False, True)
    assert v.to_json()["partial"] is True
    closed = [r for r in v.reasons if "web-c" in r]
    assert closed and "NetworkPolicy default/closed-to-client" in closed[0], v.reasons
    assert sum(1 for b in v.backends if b.allowed) == 2


def test_named_target_port_is_resolved_per_pod(planned: Plan) -> None:
    v = one(planned, "ecs/ack-default-0", "svc/default/web")
    assert any("default/web-b (" in r and ":8081)" in r for r in v.reasons), v.reasons
    assert any("default/web-a (" in r and ":8080)" in r for r in v.reasons), v.reasons


def test_no_ready_endpoint_rejects(planned: Plan) -> None:
    v = one(planned, "default/client", "svc/default/empty")
    assert not v.allowed and not v.partial
    assert v.hops[-1].action == "reject"
    assert "no ready endpoint" in v.reasons[0] and "rejects" in v.reasons[0]


def test_a_port_the_service_does_not_have_is_rejected(planned: Plan) -> None:
    v = one(planned, "default/client", "svc/default/web", "8080")
    assert not v.allowed
    assert "the Service has no such port" in v.reasons[0]


def test_not_ready_endpoints_get_no_connection(planned: Plan) -> None:
    # The hand-written slice lists ecs/ok (ready) and ecs/bad (ready: false): only ecs/ok is judged.
    v = one(planned, "ecs/ack-default-0", "svc/default/manual")
    assert [b.destination for b in v.backends] == ["svc/default/manual -> ecs/ok (192.168.8.10:8080)"]


def test_internal_traffic_policy_local_keeps_to_the_clients_node(planned: Plan) -> None:
    v = one(planned, "default/client", "svc/default/web-itp")
    assert v.allowed and [b.destination.split(" -> ")[1].split(" ")[0] for b in v.backends] == [
        "default/web-a"
    ]
    nothing_local = one(planned, "ecs/ack-excl-0", "svc/default/web-itp")
    assert not nothing_local.allowed
    assert "internalTrafficPolicy Local and no ready endpoint on ecs/ack-excl-0" in nothing_local.reasons[0]


def test_headless_name_resolves_to_the_pod_addresses(planned: Plan) -> None:
    v = one(planned, "default/client", "svc/default/web-headless")
    assert "headless" in v.reasons[0]
    assert v.partial and len(v.backends) == 3
    # From outside the cluster too: Terway pod addresses are VPC addresses.
    outside = one(planned, "ecs/ok", "svc/default/web-headless")
    assert len(outside.backends) == 3


def test_headless_without_endpoints_resolves_to_nothing() -> None:
    text = CLOUD + service("h", "  clusterIP: None\n  selector: {app: nobody}\n  ports: [{port: 80}]")
    planned = plan(build_resources([Source("h.yaml", text)]))
    v = one(planned, "ecs/ack-default-0", "svc/default/h")
    assert not v.allowed and "the name resolves to no address" in v.reasons[0]


def test_ecs_outside_the_cluster_cannot_use_a_cluster_ip(planned: Plan) -> None:
    v = one(planned, "ecs/ok", "svc/default/web")
    assert not v.allowed and not v.partial
    assert "reachable only from the nodes and pods of cluster ack" in v.reasons[0]
    assert "the Service has no NodePort" in v.reasons[0]


def test_ecs_reaches_a_node_port_on_every_node_when_the_group_allows_it(planned: Plan) -> None:
    v = one(planned, "ecs/ok", "svc/default/web-np")
    assert v.allowed, v.reasons
    assert "NodePort 30080 on each node's primary IP" in v.reasons[0]
    # Three nodes, three endpoints each (Cluster policy: any endpoint from any node).
    assert len(v.backends) == 9
    # web-c is closed to pods only: with SNAT to a node, a remote web-c sees the node's address.
    remote = next(b for b in v.backends if "ack-default-0:30080 -> default/web-c" in b.destination)
    assert remote.allowed and any("masquerades to the node" in h.reason for h in remote.hops)
    assert "ingress at ecs/ack-default-0 eth0: cluster-sg ingress rule 1" in remote.reasons[2]


def test_ecs_node_port_is_judged_by_the_node_group_on_the_node_port(planned: Plan) -> None:
    v = one(planned, "ecs/bad", "svc/default/web-np")
    assert not v.allowed and not v.partial
    assert len(v.backends) == 3  # one failing path per node: the packet never reaches kube-proxy
    assert all(
        "ingress at ecs/ack-" in b.reasons[-1] and "denied by default" in b.reasons[-1] for b in v.backends
    )


def test_external_traffic_policy_local_drops_on_nodes_without_an_endpoint(planned: Plan) -> None:
    v = one(planned, "ecs/ok", "svc/default/web-local")
    assert v.partial, v.reasons
    dropped = [b for b in v.backends if not b.allowed]
    assert [b.destination for b in dropped] == ["svc/default/web-local via ecs/ack-excl-0:30081"]
    assert "externalTrafficPolicy Local and no ready endpoint on ecs/ack-excl-0" in dropped[0].reasons[-1]
    # Only the node's own endpoints, with the client address kept.
    via_0 = [b.destination for b in v.backends if "ack-default-0:" in b.destination]
    assert len(via_0) == 1 and "default/web-a" in via_0[0]


def test_exclusive_eni_pod_goes_through_its_node(planned: Plan) -> None:
    v = one(planned, "default/solo", "svc/default/web")
    assert any("veth1" in h.reason and "terway-masq" in h.reason for b in v.backends for h in b.hops)
    assert v.allowed, v.reasons


def test_svc_kind_lists_services_but_not_external_names(planned: Plan) -> None:
    names = [d.name for d in resolve_destinations(planned, "svc")]
    assert "svc/default/web" in names and "svc/default/cname" not in names
    assert all(isinstance(d, ServiceEndpoint) for d in resolve_destinations(planned, "svc"))


@pytest.mark.parametrize(
    ("selector", "error", "message"),
    [
        pytest.param(
            "svc/default/cname", UnsupportedEndpoint, "only a DNS CNAME to 'example.com'", id="cname"
        ),
        pytest.param("svc/default/nope", NotFound, "no Service named 'default/nope'", id="unknown"),
    ],
)
def test_service_name_errors(planned: Plan, selector: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        resolve_destinations(planned, selector)


def test_without_ports_each_service_port_is_used(planned: Plan) -> None:
    index = EndpointIndex.of(planned)
    verdicts = Reachability(planned).check(
        resolve(index, "default/client", "from"), resolve_destinations(index, "svc/default/web"), None
    )
    assert [(v.destination, v.port, v.protocol) for v in verdicts] == [("svc/default/web", 80, "TCP")]


def test_hairpin_through_its_own_service(planned: Plan) -> None:
    # web-a reaching svc web lands on itself one time in three: a backend like the others.
    v = one(planned, "default/web-a", "svc/default/web")
    assert any(
        b.destination.endswith("default/web-a (" + str(_ip(planned, "web-a")) + ":8080)") for b in v.backends
    )


def _ip(planned: Plan, name: str) -> object:
    return next(p.ip for p in planned.pods if p.name == name)
