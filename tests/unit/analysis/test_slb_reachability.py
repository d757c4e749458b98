"""``acknet check`` and ``trace`` through SLBs (analysis/slb.py), and the probes ``acknet probe`` sends.

One VPC with a small Terway cluster (two shared-ENI nodes, one exclusive-ENI node, two web pods), ECS
instances in a data VSwitch, and a second VPC with one instance. SLBs:

- ``db-slb``: intranet, a layer-4 listener in front of ``db-1`` with a whitelist of the data VSwitch;
  ``db-sg`` lets in 3306 from ``ecs/ok`` and the pod VSwitch only;
- ``pub``: internet, TCP 80 to ``www-1`` and ``www-2`` (``www-2``'s group drops the Internet: partial),
  a blacklisted client range on 81, UDP 53 to ``www-1``, a weight-0-only group on 82;
- ``default/web-l4`` and ``default/web-l7``: Services of type LoadBalancer (internet); the node group
  opens the NodePort range to ``ecs/ok`` only, so layer 4 (the client's address) fails from the
  Internet and layer 7 (100.64.0.0/10) passes.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from acknet.analysis.endpoints import (
    INTERNET_CLIENT,
    EndpointIndex,
    SlbEndpoint,
    UnsupportedEndpoint,
    resolve,
    resolve_destinations,
)
from acknet.analysis.reachability import Reachability, Verdict, check
from acknet.analysis.trace import Tracer
from acknet.controllers.plan import plan
from acknet.controllers.state import Plan
from acknet.daemon.engine import probe_jobs
from acknet.errors import NotFound
from acknet.model.build import build_resources
from acknet.model.documents import Source


def doc(kind: str, name: str, spec: str, api: str = "acknet.io/v1", meta: str = "") -> str:
    return f"---\napiVersion: {api}\nkind: {kind}\nmetadata: {{name: {name}{meta}}}\nspec:\n{spec}\n"


def pod(name: str, node: str) -> str:
    return doc(
        "Pod",
        name,
        f"  nodeName: {node}\n  containers:\n  - name: main\n    ports: [{{name: http, containerPort: 8080}}]",
        api="v1",
        meta=", namespace: default, labels: {app: web}",
    )


def lb_service(name: str, annotations: str) -> str:
    return doc(
        "Service",
        name,
        "  type: LoadBalancer\n  selector: {app: web}\n"
        "  ports: [{name: http, port: 80, targetPort: http, protocol: TCP}]",
        api="v1",
        meta=f", namespace: default, annotations: {{{annotations}}}",
    )


def tls_secret() -> str:
    """The shop's self-signed certificate, as the Secret an HTTPS listener serves."""
    text = (Path(__file__).resolve().parents[3] / "examples" / "shop" / "ingress.yaml").read_text()
    crt, key = (re.search(rf"{name}: (\S+)", text) for name in ("tls.crt", "tls.key"))
    assert crt is not None and key is not None
    return (
        "---\napiVersion: v1\nkind: Secret\nmetadata: {name: tls, namespace: default}\n"
        f"type: kubernetes.io/tls\ndata:\n  tls.crt: {crt[1]}\n  tls.key: {key[1]}\n"
    )


ANN = "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-"
FILES = (
    doc("VPC", "prod", "  cidrBlock: 192.168.0.0/16")
    + doc("VPC", "other", "  cidrBlock: 10.0.0.0/16")
    + doc("VSwitch", "node-h", "  {vpc: prod, cidrBlock: 192.168.0.0/24, zoneId: z}")
    + doc("VSwitch", "pod-h", "  {vpc: prod, cidrBlock: 192.168.32.0/19, zoneId: z}")
    + doc("VSwitch", "data-h", "  {vpc: prod, cidrBlock: 192.168.8.0/24, zoneId: z}")
    + doc("VSwitch", "far", "  {vpc: other, cidrBlock: 10.0.0.0/24, zoneId: z}")
    + doc(
        "SecurityGroup",
        "cluster-sg",
        "  vpc: prod\n  innerAccessPolicy: Accept\n  rules:\n"
        "  - {direction: ingress, ipProtocol: tcp, portRange: 30000/32767, sourceCidrIp: 192.168.8.10/32}",
    )
    + doc("SecurityGroup", "ecs-sg", "  vpc: prod")
    + doc("SecurityGroup", "far-sg", "  vpc: other")
    + doc(
        "SecurityGroup",
        "db-sg",
        "  vpc: prod\n  innerAccessPolicy: Drop\n  rules:\n"
        "  - {direction: ingress, ipProtocol: tcp, portRange: 3306/3306, sourceCidrIp: 192.168.8.10/32}\n"
        "  - {direction: ingress, ipProtocol: tcp, portRange: 3306/3306, sourceCidrIp: 192.168.32.0/19}",
    )
    + doc(
        "SecurityGroup",
        "www-sg",
        "  vpc: prod\n  rules:\n"
        "  - {direction: ingress, ipProtocol: tcp, portRange: 80/80, sourceCidrIp: 0.0.0.0/0}\n"
        "  - {direction: ingress, ipProtocol: udp, portRange: 53/53, sourceCidrIp: 0.0.0.0/0}",
    )
    + doc("SecurityGroup", "closed-sg", "  vpc: prod")
    + doc(
        "ECSInstance", "ok", "  {vswitch: data-h, securityGroups: [ecs-sg], privateIpAddress: 192.168.8.10}"
    )
    + doc(
        "ECSInstance", "bad", "  {vswitch: data-h, securityGroups: [ecs-sg], privateIpAddress: 192.168.8.11}"
    )
    + doc("ECSInstance", "far-1", "  {vswitch: far, securityGroups: [far-sg], privateIpAddress: 10.0.0.10}")
    + doc(
        "ECSInstance",
        "db-1",
        "  {vswitch: data-h, securityGroups: [db-sg], privateIpAddress: 192.168.8.20,"
        " ports: [{port: 3306, protocol: TCP}]}",
    )
    + doc(
        "ECSInstance",
        "www-1",
        "  {vswitch: data-h, securityGroups: [www-sg], privateIpAddress: 192.168.8.30,"
        " ports: [{port: 80, protocol: TCP}, {port: 53, protocol: UDP}]}",
    )
    + doc(
        "ECSInstance",
        "www-2",
        "  {vswitch: data-h, securityGroups: [closed-sg], privateIpAddress: 192.168.8.31,"
        " ports: [{port: 80, protocol: TCP}]}",
    )
    + doc(
        "Cluster",
        "ack",
        "  vpc: prod\n  podVSwitches: [pod-h]\n  networkPolicy: true\n  securityGroups: [cluster-sg]\n"
        "  addons: []\n  nodePools:\n"
        "  - {name: default, vswitches: [node-h], count: 2}\n"
        "  - {name: excl, vswitches: [node-h], count: 1, eniMode: exclusive}",
    )
    + doc(
        "LoadBalancer",
        "db-slb",
        "  addressType: intranet\n  vswitch: data-h\n  address: 192.168.8.100\n"
        "  vServerGroups: [{name: db, servers: [{ecs: db-1, port: 3306}]}]\n"
        "  listeners:\n"
        "  - {protocol: tcp, listenerPort: 3306, vServerGroup: db,"
        " acl: {type: white, entries: [192.168.8.0/24, 192.168.32.0/19]}}",
    )
    + doc(
        "LoadBalancer",
        "pub",
        "  addressType: internet\n"
        "  backendServers: [{ecs: www-1}, {ecs: www-2}]\n"
        "  vServerGroups:\n"
        "  - {name: dns, servers: [{ecs: www-1, port: 53}]}\n"
        "  - {name: idle, servers: [{ecs: www-1, port: 80, weight: 0}]}\n"
        "  listeners:\n"
        "  - {protocol: tcp, listenerPort: 80, backendServerPort: 80}\n"
        "  - {protocol: tcp, listenerPort: 81, backendServerPort: 80,"
        " acl: {type: black, entries: [203.0.113.0/24]}}\n"
        "  - {protocol: udp, listenerPort: 53, vServerGroup: dns}\n"
        "  - {protocol: tcp, listenerPort: 82, vServerGroup: idle}\n"
        "  - {protocol: https, listenerPort: 443, backendServerPort: 80, certificate: {secret: default/tls}}",
    )
    + tls_secret()
    + pod("web-a", "ack-default-0")
    + pod("web-b", "ack-default-1")
    + lb_service("web-l4", f"{ANN}address-type: internet")
    + lb_service("web-l7", f'{ANN}address-type: internet, {ANN}protocol-port: "http:80"')
)


@pytest.fixture(scope="module")
def planned() -> Plan:
    return plan(build_resources([Source("slb.yaml", FILES)]))


@pytest.fixture(scope="module")
def reach(planned: Plan) -> Reachability:
    return Reachability(planned)


@pytest.fixture(scope="module")
def index(planned: Plan) -> EndpointIndex:
    return EndpointIndex.of(planned)


def verdict(
    index: EndpointIndex, reach: Reachability, src: str, slb: str, port: int, proto: str = "TCP"
) -> Verdict:
    (source,) = resolve(index, [src], "from")
    target = index.slbs[slb]
    found = reach.check([source], [target], [(port, proto)])  # type: ignore[list-item]
    assert len(found) == 1
    return found[0]


def state(v: Verdict) -> str:
    return "partial" if v.partial else "allowed" if v.allowed else "denied"


@pytest.mark.parametrize(
    ("src", "slb", "port", "proto", "expected", "reason"),
    [
        # The Internet reaches public VIPs only.
        pytest.param(
            "internet",
            "slb/db-slb",
            3306,
            "TCP",
            "denied",
            "intranet VIP of slb/db-slb",
            id="internet-intranet",
        ),
        pytest.param(
            "internet", "slb/pub", 80, "TCP", "partial", "www-sg ingress rule", id="internet-partial"
        ),
        pytest.param(
            "internet", "slb/pub", 81, "TCP", "denied", "blacklist entry 203.0.113.0/24", id="blacklist"
        ),
        pytest.param("internet", "slb/pub", 53, "UDP", "allowed", "53/UDP listens at ecs/www-1", id="udp"),
        pytest.param("internet", "slb/pub", 82, "TCP", "denied", "weight 0", id="weight-zero"),
        pytest.param(
            "internet", "slb/pub", 8080, "TCP", "denied", "has no listener on 8080/TCP", id="no-listener"
        ),
        # Layer 4 keeps the client's address: the node group opens the NodePorts to ecs/ok only.
        pytest.param(
            "internet", "slb/default/web-l4", 80, "TCP", "denied", "ingress at ecs/ack-", id="l4-sg"
        ),
        pytest.param("ecs/ok", "slb/default/web-l4", 80, "TCP", "allowed", "", id="l4-ok"),
        # Layer 7 connects from 100.64.0.0/10, which every group admits.
        pytest.param("internet", "slb/default/web-l7", 80, "TCP", "allowed", "100.64.0.0/10", id="l7"),
        # Intranet: the ACL, then db-sg on the client's address.
        pytest.param("ecs/ok", "slb/db-slb", 3306, "TCP", "allowed", "", id="intranet-ok"),
        pytest.param(
            "ecs/bad", "slb/db-slb", 3306, "TCP", "denied", "ingress at ecs/db-1 eth0", id="backend-sg"
        ),
        pytest.param(
            "ecs/ack-default-0", "slb/db-slb", 3306, "TCP", "denied", "not on the whitelist", id="acl"
        ),
        pytest.param("default/web-a", "slb/db-slb", 3306, "TCP", "allowed", "", id="pod-client"),
        pytest.param("ecs/db-1", "slb/db-slb", 3306, "TCP", "denied", "martian", id="own-backend"),
        pytest.param("ecs/far-1", "slb/db-slb", 3306, "TCP", "denied", "different VPCs", id="other-vpc"),
        pytest.param("ecs/far-1", "slb/pub", 80, "TCP", "denied", "no EIP", id="other-vpc-public"),
        # A VPC's own internet SLB: its VRouter routes the public VIP (as the emulation does).
        pytest.param(
            "ecs/ok",
            "slb/pub",
            80,
            "TCP",
            "partial",
            "its VRouter routes the public VIP",
            id="same-vpc-public",
        ),
    ],
)
def test_slb_verdicts(
    index: EndpointIndex,
    reach: Reachability,
    src: str,
    slb: str,
    port: int,
    proto: str,
    expected: str,
    reason: str,
) -> None:
    v = verdict(index, reach, src, slb, port, proto)
    assert state(v) == expected, v.reasons
    assert reason in " | ".join(v.reasons + [h.reason for b in v.backends for h in b.hops])


def test_hops_name_listener_group_and_backend(index: EndpointIndex, reach: Reachability) -> None:
    v = verdict(index, reach, "internet", "slb/pub", 80)
    listener = "slb/pub listener 80/TCP (tcp)"
    assert any(r.startswith(f"{listener}: wrr over server group default") for r in v.reasons)
    assert "each taken as healthy" in " ".join(v.reasons)
    names = [b.destination for b in v.backends]
    assert names == [
        f"{listener} group default -> ecs/www-1 (192.168.8.30:80)",
        f"{listener} group default -> ecs/www-2 (192.168.8.31:80)",
    ]
    assert [b.allowed for b in v.backends] == [True, False]
    out = v.to_json()
    assert out["partial"] is True and out["allowed"] is False


def test_layer4_backend_sees_client_address(index: EndpointIndex, reach: Reachability) -> None:
    v = verdict(index, reach, "internet", "slb/pub", 80)
    www1 = v.backends[0]
    sg = next(h for h in www1.hops if h.at == "ecs/www-1 eth0")
    assert sg.object == "security group www-sg" and sg.action == "accept"
    assert any(f"source {INTERNET_CLIENT} kept" in h.reason for h in www1.hops)


def test_layer7_through_node_ports(index: EndpointIndex, reach: Reachability, planned: Plan) -> None:
    v = verdict(index, reach, "internet", "slb/default/web-l7", 80)
    # Three nodes on the NodePort, each to both pods (externalTrafficPolicy Cluster).
    assert len(v.backends) == 6
    lb = next(lb for lb in planned.load_balancers if lb.name == "default/web-l7")
    first = v.backends[0]
    assert any(h.rule == "health-check" for h in first.hops)
    assert any(f"from {lb.health_source}" in h.reason for h in first.hops)
    assert "-> svc/default/web-l7 -> default/web-" in first.destination


def test_resolve_slbs_and_internet(index: EndpointIndex) -> None:
    names = [d.name for d in resolve_destinations(index, ["slb"])]
    assert names == ["slb/db-slb", "slb/pub", "slb/default/web-l4", "slb/default/web-l7"]
    slb = resolve_destinations(index, ["slb/pub"])[0]
    assert isinstance(slb, SlbEndpoint)
    assert slb.declared_ports == ((80, "TCP"), (81, "TCP"), (53, "UDP"), (82, "TCP"), (443, "TCP"))
    (internet,) = resolve(index, ["internet"], "from")
    assert internet.ip == INTERNET_CLIENT and internet.kind == "internet"
    with pytest.raises(UnsupportedEndpoint, match="the Internet is a source only"):
        resolve_destinations(index, ["internet"])
    with pytest.raises(UnsupportedEndpoint, match="an SLB is a destination only"):
        resolve(index, ["slb/pub"], "from")
    with pytest.raises(NotFound, match="no SLB named 'nope'"):
        resolve_destinations(index, ["slb/nope"])


def test_internet_to_private_addresses(planned: Plan, index: EndpointIndex) -> None:
    (internet,) = resolve(index, ["internet"], "from")
    found = check(planned, [internet], [index.pods["default/web-a"], index.services["svc/default/web-l4"]])
    assert found and not any(v.allowed for v in found)
    assert "the Internet reaches only public addresses" in found[0].reasons[-1]


def test_declared_ports_without_port(planned: Plan, index: EndpointIndex) -> None:
    (internet,) = resolve(index, ["internet"], "from")
    found = check(planned, [internet], [index.slbs["slb/pub"]])
    assert [(v.port, v.protocol, state(v)) for v in found] == [
        (80, "TCP", "partial"),
        (81, "TCP", "denied"),
        (53, "UDP", "allowed"),
        (82, "TCP", "denied"),
        (443, "TCP", "allowed"),  # layer 7: www-2's group admits 100.64.0.0/10
    ]


def test_trace_branches_and_suggestions(planned: Plan) -> None:
    tracer = Tracer(planned)
    t = tracer.trace(tracer.source("internet"), tracer.destination("slb/default/web-l4"), 80, "TCP")
    assert t.word == "dropped" and t.through_service
    assert all(
        b.destination.startswith("slb/default/web-l4 listener 80/TCP (tcp) group k8s/") for b in t.branches
    )
    (fix,) = t.suggestions
    assert fix.object == "security group cluster-sg"
    assert fix.snippet is not None and fix.snippet["sourceCidrIp"] == f"{INTERNET_CLIENT}/32"
    t = tracer.trace(tracer.source("internet"), tracer.destination("slb/db-slb"), 3306, "TCP")
    (fix,) = t.suggestions
    assert fix.object == "LoadBalancer db-slb" and "addressType: internet" in fix.change
    t = tracer.trace(tracer.source("ecs/ack-default-0"), tracer.destination("slb/db-slb"), 3306, "TCP")
    (fix,) = t.suggestions
    assert "whitelist" in fix.change
    json = t.to_json()
    assert json["verdict"] == "dropped" and json["hops"][-1]["object"].endswith(" ACL")


def test_probe_jobs(planned: Plan) -> None:
    jobs = probe_jobs("t", planned, ["internet"], ["slb/pub"], None)
    assert {j.netns for j in jobs} == {"t-internet"}
    assert {(j.ip, j.source_ip, j.target) for j in jobs} == {
        ("198.51.100.1", str(INTERNET_CLIENT), "slb/pub")
    }
    by_port = Counter((j.port, j.protocol, j.http) for j in jobs)
    # Two servers at equal weight: enough attempts for each to be met ATTEMPTS_PER_BACKEND times.
    assert by_port[(80, "TCP", True)] == 16
    assert by_port[(53, "UDP", False)] == 2
    assert by_port[(82, "TCP", True)] == 2  # no server takes new connections: the handshake only
    assert all(j.tls for j in jobs if j.port == 443) and not any(j.tls for j in jobs if j.port != 443)
    l7 = probe_jobs("t", planned, ["ecs/ok"], ["slb/default/web-l7"], None)
    assert all(j.http and j.netns == "t-ecs-ok" and j.label_port == 80 for j in l7)
    assert len(l7) == 48  # six paths, each at 1/6
