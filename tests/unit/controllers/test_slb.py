"""The SLB controller and the cloud controller (controllers/slb.py): pure, from YAML to planned CLBs."""

from __future__ import annotations

import dataclasses
import textwrap
from ipaddress import IPv4Address, IPv4Network

import pytest

from acknet.controllers.plan import plan
from acknet.controllers.slb import refresh_service_backends
from acknet.controllers.state import Plan, PlannedLoadBalancer
from acknet.model.documents import Source
from acknet.model.load import load_resources

CLOUD = """\
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
kind: VSwitch
metadata: {name: data-h}
spec: {vpc: vpc, cidrBlock: 192.168.8.0/24, zoneId: cn-hangzhou-h}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {name: pod-h}
spec: {vpc: vpc, cidrBlock: 192.168.32.0/20, zoneId: cn-hangzhou-h}
---
apiVersion: acknet.io/v1
kind: SecurityGroup
metadata: {name: sg}
spec: {vpc: vpc}
---
apiVersion: acknet.io/v1
kind: ECSInstance
metadata: {name: web-1}
spec: {vswitch: data-h, securityGroups: [sg], privateIpAddress: 192.168.8.11}
---
apiVersion: acknet.io/v1
kind: ECSInstance
metadata: {name: web-2}
spec: {vswitch: data-h, securityGroups: [sg], privateIpAddress: 192.168.8.12}
"""

LOAD_BALANCERS = """\
---
apiVersion: acknet.io/v1
kind: LoadBalancer
metadata: {name: pub}
spec:
  addressType: internet
  backendServers: [{ecs: web-1, weight: 30}, {ecs: web-2}]
  vServerGroups:
  - {name: g, servers: [{ecs: web-2, port: 9090, weight: 5}, {eni: 192.168.8.77, port: 9091}]}
  masterSlaveServerGroups:
  - {name: ms, servers: [{ecs: web-2, port: 80, serverType: Slave}, {ecs: web-1, port: 80, serverType: Master}]}
  listeners:
  - {protocol: tcp, listenerPort: 80, backendServerPort: 8080}
  - {protocol: udp, listenerPort: 53, vServerGroup: g, scheduler: sch,
     healthCheck: {type: udp, interval: 10, connectTimeout: 3, healthyThreshold: 2, unhealthyThreshold: 4}}
  - {protocol: tcp, listenerPort: 81, masterSlaveServerGroup: ms}
---
apiVersion: acknet.io/v1
kind: LoadBalancer
metadata: {name: fixed}
spec: {addressType: internet, address: 198.51.100.1, backendServers: [{ecs: web-1}]}
---
apiVersion: acknet.io/v1
kind: LoadBalancer
metadata: {name: priv}
spec:
  addressType: intranet
  vswitch: data-h
  backendServers: [{ecs: web-1}]
  listeners: [{protocol: tcp, listenerPort: 80, backendServerPort: 8080}]
"""

CLUSTER = """\
---
apiVersion: acknet.io/v1
kind: Cluster
metadata: {name: ack}
spec:
  vpc: vpc
  podVSwitches: [pod-h]
  securityGroups: [sg]
  addons: [coredns]
  nodePools:
  - {name: default, vswitches: [node-h], count: 3}
  - {name: masters, vswitches: [node-h], count: 1, labels: {node-role.kubernetes.io/master: ""}}
---
apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: demo, labels: {app: web}}
spec:
  nodeSelector: {kubernetes.io/hostname: ack-default-0}
  containers: [{name: main, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: demo, labels: {app: web}}
spec:
  nodeSelector: {kubernetes.io/hostname: ack-default-0}
  containers: [{name: main, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: demo, labels: {app: web}}
spec:
  nodeSelector: {kubernetes.io/hostname: ack-default-1}
  containers: [{name: main, ports: [{containerPort: 8080}]}]
"""


def service(name: str, annotations: dict[str, str] | None = None, extra: str = "") -> str:
    prefix = "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-"
    notes = {(k if k.startswith("service.") else prefix + k): v for k, v in (annotations or {}).items()}
    meta = f"{{name: {name}, namespace: demo, annotations: {notes!r}}}".replace("'", '"')
    return textwrap.dedent(
        f"""\
        ---
        apiVersion: v1
        kind: Service
        metadata: {meta}
        spec:
          type: LoadBalancer
          selector: {{app: web}}
          ports: [{{name: http, port: 80, targetPort: 8080}}, {{name: dns, port: 53, protocol: UDP, targetPort: 53}}]
        """
    ) + (f"  {extra}\n" if extra else "")


def planned(*texts: str, previous: Plan | None = None) -> Plan:
    result = load_resources([Source("slb.yaml", CLOUD + "".join(texts))])
    assert not result.errors, "\n".join(str(d) for d in result.errors)
    return plan(result.resources, previous)


def lb_named(p: Plan, name: str) -> PlannedLoadBalancer:
    return next(lb for lb in p.load_balancers if lb.name == name)


def test_files_load_balancers_resolve_groups_to_backends() -> None:
    p = planned(LOAD_BALANCERS)
    pub = lb_named(p, "pub")
    assert pub.address_type == "internet" and pub.vpc == "vpc" and pub.vswitch is None
    # 198.51.100.1 is taken by `fixed`, so `pub` gets the next free one.
    assert pub.address == IPv4Address("198.51.100.2")
    assert lb_named(p, "fixed").address == IPv4Address("198.51.100.1")
    tcp80, udp53, tcp81 = pub.listeners
    assert [(b.server, str(b.ip), b.port, b.weight) for b in tcp80.backends] == [
        ("ecs/web-1", "192.168.8.11", 8080, 30),
        ("ecs/web-2", "192.168.8.12", 8080, 100),
    ]
    assert tcp80.group == "default" and tcp80.scheduler == "wrr"  # the API's default
    assert [(b.server, b.port, b.weight) for b in udp53.backends] == [
        ("ecs/web-2", 9090, 5),
        ("eni/192.168.8.77", 9091, 100),
    ]
    assert [(b.server, b.role) for b in tcp81.backends] == [("ecs/web-1", "Master"), ("ecs/web-2", "Slave")]
    # Every instance checks health from its own address in 100.64.0.0/10.
    sources = {lb.health_source for lb in p.load_balancers}
    assert len(sources) == 3 and all(s.packed[0] == 100 and 64 <= s.packed[1] < 128 for s in sources)
    priv = lb_named(p, "priv")
    assert priv.address == p.slb_addresses["priv"] and priv.vswitch == "data-h" and priv.vpc == "vpc"
    # The files' instances' VIPs, internet ones included, by name.
    assert p.slb_addresses["pub"] == pub.address


def test_health_check_defaults_and_the_effective_timeout() -> None:
    pub = lb_named(planned(LOAD_BALANCERS), "pub")
    tcp80, udp53, _ = pub.listeners
    # SLB's defaults: TCP check for a tcp listener, 2 s interval, 5 s timeout, 3 and 3.
    hc = tcp80.health_check
    assert (hc.type, hc.interval, hc.timeout, hc.healthy_threshold, hc.unhealthy_threshold) == (
        "tcp",
        2,
        5,
        3,
        3,
    )
    assert hc.failure_window == 5 * 3 + 2 * 2
    # A timeout shorter than the interval gives way to the interval (HealthCheckConnectTimeout docs).
    assert udp53.health_check.timeout == 10 and udp53.health_check.failure_window == 10 * 4 + 10 * 3


def test_previous_internet_vips_stay_put() -> None:
    first = planned(LOAD_BALANCERS)
    without_fixed = LOAD_BALANCERS.replace("metadata: {name: fixed}", "metadata: {name: afixed}")
    again = planned(without_fixed, previous=first)
    assert lb_named(again, "pub").address == lb_named(first, "pub").address


def test_cloud_controller_makes_one_clb_per_loadbalancer_service() -> None:
    p = planned(CLUSTER, service("web"))
    lb = lb_named(p, "demo/web")
    svc = next(s for s in p.services if s.name == "web")
    assert lb.service == "ack/demo/web" and lb.address_type == "internet" and lb.vpc == "vpc"
    assert lb.address is not None and lb.address in IPv4Network("198.51.100.0/24")
    # One listener per Service port on port.port, protocol lower(port.protocol), CCM's rr.
    assert [(li.protocol, li.port, li.scheduler) for li in lb.listeners] == [
        ("tcp", 80, "rr"),
        ("udp", 53, "rr"),
    ]
    http = lb.listeners[0]
    node_port = svc.ports[0].node_port
    assert http.group == f"k8s/{node_port}/web/demo/ack"
    # Cluster: every node but the master, on the NodePort, weight 100.
    assert [(b.server, b.port, b.weight) for b in http.backends] == [
        (f"ecs/ack-default-{i}", node_port, 100) for i in range(3)
    ]
    assert not lb.events


def test_local_weights_nodes_by_their_ready_pods() -> None:
    p = planned(CLUSTER, service("web", extra="externalTrafficPolicy: Local"))
    http = lb_named(p, "demo/web").listeners[0]
    assert [(b.server, b.weight) for b in http.backends] == [
        ("ecs/ack-default-0", 2),
        ("ecs/ack-default-1", 1),
    ]
    # Readiness observed later: pod c not ready, node 1 leaves the group.
    slices = tuple(
        dataclasses.replace(
            s,
            endpoints=tuple(dataclasses.replace(e, ready=e.pod != "demo/c") for e in s.endpoints),
        )
        for s in p.endpoint_slices
    )
    refreshed = refresh_service_backends(dataclasses.replace(p, endpoint_slices=slices))
    http = lb_named(refreshed, "demo/web").listeners[0]
    assert [(b.server, b.weight) for b in http.backends] == [("ecs/ack-default-0", 2)]
    assert refresh_service_backends(p) is p  # nothing changed: the same plan


@pytest.mark.parametrize(
    ("annotations", "expect"),
    [
        ({"address-type": "intranet"}, {"address_type": "intranet", "vswitch": "node-h"}),
        (
            {"address-type": "intranet", "vswitch-id": "data-h"},
            {"address_type": "intranet", "vswitch": "data-h"},
        ),
        ({"scheduler": "wrr"}, {"scheduler": "wrr"}),
        (
            {"health-check-type": "http", "health-check-uri": "/hz", "health-check-interval": "1"},
            {"hc": ("http", "/hz", 1)},
        ),
        ({"backend-label": "kubernetes.io/hostname=ack-default-2"}, {"servers": ["ecs/ack-default-2"]}),
        ({"weight": "60"}, {"weights": [20, 20, 20]}),
    ],
    ids=["intranet", "vswitch-id", "scheduler", "health-check", "backend-label", "weight"],
)
def test_annotations_shape_the_clb(annotations: dict[str, str], expect: dict[str, object]) -> None:
    lb = lb_named(planned(CLUSTER, service("web", annotations)), "demo/web")
    assert not lb.events
    if "address_type" in expect:
        assert lb.address_type == expect["address_type"] and lb.vswitch == expect["vswitch"]
        assert lb.address is not None and not lb.address.is_global
    if "scheduler" in expect:
        assert {li.scheduler for li in lb.listeners} == {expect["scheduler"]}
    if "hc" in expect:
        hc = lb.listeners[0].health_check
        assert (hc.type, hc.uri, hc.interval) == expect["hc"]
    if "weights" in expect:
        assert [b.weight for b in lb.listeners[0].backends] == expect["weights"]
    if "servers" in expect:
        assert [b.server for b in lb.listeners[0].backends] == expect["servers"]


def test_a_bad_annotation_is_an_event_and_the_other_services_are_untouched() -> None:
    p = planned(
        CLUSTER, service("bad", {"scheduler": "fastest", "health-check-interval": "99"}), service("good")
    )
    bad, good = lb_named(p, "demo/bad"), lb_named(p, "demo/good")
    assert any("scheduler" in e for e in bad.events) and any("health-check-interval" in e for e in bad.events)
    assert {li.scheduler for li in bad.listeners} == {"rr"} and bad.listeners[0].health_check.interval == 2
    assert not good.events and good.address is not None and good.address != bad.address


def test_a_load_balancer_class_or_another_type_gets_no_clb() -> None:
    nlb = service("nlb", extra="loadBalancerClass: alibabacloud.com/nlb")
    p = planned(CLUSTER, nlb, service("web"))
    assert [lb.name for lb in p.load_balancers] == ["demo/web"]


def test_intranet_service_vips_are_kept_across_plans() -> None:
    text = CLUSTER + service("web", {"address-type": "intranet"})
    first = planned(text)
    again = planned(text, previous=first)
    assert lb_named(again, "demo/web").address == lb_named(first, "demo/web").address
    # The VIP is taken from the VSwitch: no node holds it.
    vip = lb_named(first, "demo/web").address
    assert vip not in {ip for i in first.instances for e in i.enis for ip in e.ips}


def test_eni_backends_are_the_ready_pods_on_their_target_port() -> None:
    p = planned(CLUSTER, service("web", {"service.beta.kubernetes.io/backend-type": "eni"}))
    lb = lb_named(p, "demo/web")
    pods = sorted((pod.ip, pod.name) for pod in p.pods if pod.ip is not None and pod.namespace == "demo")
    http = lb.listeners[0]
    assert [(b.server, b.port, b.weight) for b in http.backends] == [
        (f"eni/{ip}", 8080, 100) for ip, _ in pods
    ]
    assert http.group == "k8s/8080/web/demo/ack"  # the targetPort names an ENI-mode group
    slices = tuple(
        dataclasses.replace(
            s, endpoints=tuple(dataclasses.replace(e, ready=e.pod != "demo/a") for e in s.endpoints)
        )
        for s in p.endpoint_slices
    )
    refreshed = lb_named(refresh_service_backends(dataclasses.replace(p, endpoint_slices=slices)), "demo/web")
    assert len(refreshed.listeners[0].backends) == 2


def test_listener_acl_rate_limit_and_persistence_are_planned() -> None:
    text = LOAD_BALANCERS.replace(
        "  - {protocol: tcp, listenerPort: 80, backendServerPort: 8080}\n",
        "  - {protocol: tcp, listenerPort: 80, backendServerPort: 8080, persistenceTimeout: 60,\n"
        "     connectionRateLimit: 100, acl: {type: black, entries: [203.0.113.0/28, 203.0.113.99]}}\n",
    )
    tcp80 = lb_named(planned(text), "pub").listeners[0]
    assert tcp80.persistence_timeout == 60 and tcp80.connection_rate_limit == 100
    assert tcp80.acl_type == "black"
    assert [str(e) for e in tcp80.acl_entries] == ["203.0.113.0/28", "203.0.113.99/32"]


def test_the_weight_annotation_on_a_local_service_follows_the_pods() -> None:
    annotations = {"weight": "90"}
    p = planned(CLUSTER, service("web", annotations, extra="externalTrafficPolicy: Local"))
    http = lb_named(p, "demo/web").listeners[0]
    assert [(b.server, b.weight) for b in http.backends] == [
        ("ecs/ack-default-0", 60),
        ("ecs/ack-default-1", 30),
    ]


TLS_SECRET = """\
---
apiVersion: v1
kind: Secret
metadata: {name: web-tls, namespace: demo}
type: kubernetes.io/tls
data: {tls.crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==, tls.key: LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCg==}
---
apiVersion: v1
kind: Secret
metadata: {name: opaque, namespace: demo}
type: Opaque
data: {password: cGFzcw==}
"""


def test_protocol_port_makes_layer_7_listeners_with_ccms_health_check_default() -> None:
    lb = lb_named(planned(CLUSTER, service("web", {"protocol-port": "http:80"})), "demo/web")
    http, udp = lb.listeners
    assert (http.protocol, http.port, udp.protocol) == ("http", 80, "udp")
    # The backends do not change: the nodes on the NodePort; the L7 check is off unless flagged on.
    assert [b.server for b in http.backends] == [f"ecs/ack-default-{i}" for i in range(3)]
    assert http.health_check.type == "http" and not http.health_check.enabled
    assert udp.health_check.enabled and not lb.events
    flagged = lb_named(
        planned(CLUSTER, service("web", {"protocol-port": "http:80", "health-check-flag": "on"})), "demo/web"
    )
    assert flagged.listeners[0].health_check.enabled


@pytest.mark.parametrize(
    ("annotations", "certificate", "event"),
    [
        ({"cert-id": "web-tls"}, "demo/web-tls", None),
        ({"cert-id": "demo/web-tls"}, "demo/web-tls", None),
        ({}, None, "needs annotation cert-id"),
        ({"cert-id": "nope"}, None, "Secret demo/nope does not exist"),
        ({"cert-id": "opaque"}, None, "is not a certificate"),
    ],
    ids=["name", "namespace-name", "no-cert-id", "missing-secret", "not-a-certificate"],
)
def test_an_https_listener_takes_its_certificate_from_cert_id(
    annotations: dict[str, str], certificate: str | None, event: str | None
) -> None:
    notes = {"protocol-port": "https:80", **annotations}
    lb = lb_named(planned(CLUSTER, TLS_SECRET, service("web", notes)), "demo/web")
    https = [li for li in lb.listeners if li.protocol == "https"]
    if certificate is None:
        assert not https, "CCM cannot make an https listener without its certificate"
        assert any(event in e for e in lb.events), lb.events  # type: ignore[operator]
    else:
        assert [(li.port, li.certificate) for li in https] == [(80, certificate)] and not lb.events


@pytest.mark.parametrize(
    ("annotations", "expect", "event"),
    [
        ({"protocol-port": "http:53"}, [("tcp", 80), ("udp", 53)], "Service port 53 is UDP"),
        ({"protocol-port": "ftp:80"}, [("tcp", 80), ("udp", 53)], "'ftp:80' ignored"),
        ({"protocol-port": "http:80", "scheduler": "sch"}, [("http", 80), ("udp", 53)], "for http:80"),
    ],
    ids=["udp-port-as-http", "unknown-protocol", "sch-on-layer-7"],
)
def test_bad_protocol_port_annotations_are_events(
    annotations: dict[str, str], expect: list[tuple[str, int]], event: str
) -> None:
    lb = lb_named(planned(CLUSTER, service("bad", annotations), service("good")), "demo/bad")
    assert [(li.protocol, li.port) for li in lb.listeners] == expect
    assert any(event in e for e in lb.events), lb.events
    if "scheduler" in annotations:
        assert [li.scheduler for li in lb.listeners] == ["rr", "sch"]  # layer 7: wrr, wlc or rr only


@pytest.mark.parametrize(
    ("annotations", "acl", "event"),
    [
        (
            {"acl-status": "on", "acl-type": "white", "acl-id": "203.0.113.0/24, 198.51.100.7"},
            ("white", ["203.0.113.0/24", "198.51.100.7/32"]),
            None,
        ),
        ({"acl-status": "off", "acl-type": "black", "acl-id": "203.0.113.0/24"}, (None, []), None),
        (
            {"acl-status": "on", "acl-type": "black", "acl-id": "203.0.113.0/24,acl-bp1x"},
            ("black", ["203.0.113.0/24"]),
            "'acl-bp1x' ignored",
        ),
        ({"acl-status": "on", "acl-type": "white"}, (None, []), "needs acl-id"),
        ({"acl-status": "on", "acl-type": "grey", "acl-id": "203.0.113.0/24"}, (None, []), "white or black"),
    ],
    ids=["white", "status-off", "bad-entry", "no-acl-id", "bad-type"],
)
def test_acl_annotations_put_an_acl_on_every_listener(
    annotations: dict[str, str], acl: tuple[str | None, list[str]], event: str | None
) -> None:
    lb = lb_named(planned(CLUSTER, service("web", annotations)), "demo/web")
    for li in lb.listeners:
        assert (li.acl_type, [str(e) for e in li.acl_entries]) == acl
    if event is None:
        assert not lb.events
    else:
        assert any(event in e for e in lb.events), lb.events


@pytest.mark.parametrize(
    ("annotations", "sticky", "event"),
    [
        (
            {"sticky-session": "on", "sticky-session-type": "insert", "cookie-timeout": "1800"},
            ("insert", 1800, None),
            None,
        ),
        (
            {"sticky-session": "on", "sticky-session-type": "server", "cookie": "session-id"},
            ("server", 0, "session-id"),
            None,
        ),
        ({"sticky-session": "off", "sticky-session-type": "insert"}, (None, 0, None), None),
        ({"sticky-session": "yes"}, (None, 0, None), "sticky-session='yes' ignored"),
        ({"sticky-session": "on"}, (None, 0, None), "sticky-session-type=None: insert or server"),
        ({"sticky-session": "on", "sticky-session-type": "insert"}, (None, 0, None), "needs cookie-timeout"),
        (
            {"sticky-session": "on", "sticky-session-type": "insert", "cookie-timeout": "0"},
            (None, 0, None),
            "cookie-timeout='0' ignored",
        ),
        (
            {"sticky-session": "on", "sticky-session-type": "server"},
            (None, 0, None),
            "needs annotation cookie: missing",
        ),
        (
            {"sticky-session": "on", "sticky-session-type": "server", "cookie": "a b"},
            (None, 0, None),
            "is not a cookie name",
        ),
    ],
    ids=["insert", "server", "off", "bad-status", "no-type", "insert-no-timeout", "timeout-range",
         "server-no-cookie", "bad-cookie"],
)  # fmt: skip
def test_sticky_session_annotations_on_layer_7_listeners(
    annotations: dict[str, str], sticky: tuple[str | None, int, str | None], event: str | None
) -> None:
    notes = {"protocol-port": "http:80", **annotations}
    lb = lb_named(planned(CLUSTER, service("web", notes), service("good")), "demo/web")
    http, udp = lb.listeners
    assert (http.sticky_session_type, http.cookie_timeout, http.cookie) == sticky
    assert (udp.sticky_session_type, udp.cookie) == (None, None)  # layer 4 keeps clients by source address
    if event is None:
        assert not lb.events
    else:
        assert any(event in e for e in lb.events), lb.events
    good = lb_named(planned(CLUSTER, service("web", notes), service("good")), "demo/good")
    assert not good.events


def test_refresh_follows_an_eni_services_layer_7_listener() -> None:
    notes = {"service.beta.kubernetes.io/backend-type": "eni", "protocol-port": "http:80"}
    p = planned(CLUSTER, service("web", notes))
    slices = tuple(
        dataclasses.replace(
            s, endpoints=tuple(dataclasses.replace(e, ready=e.pod != "demo/a") for e in s.endpoints)
        )
        for s in p.endpoint_slices
    )
    refreshed = lb_named(refresh_service_backends(dataclasses.replace(p, endpoint_slices=slices)), "demo/web")
    assert refreshed.listeners[0].protocol == "http" and len(refreshed.listeners[0].backends) == 2
