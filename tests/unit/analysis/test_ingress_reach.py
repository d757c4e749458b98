"""``acknet check --to ingress/NS/NAME`` and ``acknet trace SRC URL``: through the Ingress controller's SLB,
the controller pod, the Ingress rule and the backend pods (analysis/ingress_reach.py).

A small cluster whose security group opens the NodePort range to everyone (as tests/e2e/test_ingress_live.py
does), web and api Deployments behind an Ingress ``app/site`` (``/`` to web, ``/api`` to api), and
variations of it; and examples/shop, whose Ingress has TLS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from acknet.analysis.endpoints import (
    EndpointIndex,
    IngressEndpoint,
    UnsupportedEndpoint,
    resolve,
    resolve_destinations,
)
from acknet.analysis.reachability import Reachability, Verdict
from acknet.analysis.trace import Tracer, parse_target
from acknet.controllers.plan import plan
from acknet.controllers.state import Plan
from acknet.errors import NotFound
from acknet.model.build import build_resources
from acknet.model.documents import Source
from acknet.store.files import read_sources

REPO = Path(__file__).resolve().parents[3]
ANN = "nginx.ingress.kubernetes.io/"

CLOUD = """\
apiVersion: acknet.io/v1
kind: VPC
metadata: {name: vpc}
spec: {cidrBlock: 192.168.0.0/16}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {name: node}
spec: {vpc: vpc, cidrBlock: 192.168.0.0/24, zoneId: cn-hangzhou-h}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {name: pod}
spec: {vpc: vpc, cidrBlock: 192.168.32.0/19, zoneId: cn-hangzhou-h}
---
apiVersion: acknet.io/v1
kind: SecurityGroup
metadata: {name: cluster-sg}
spec:
  vpc: vpc
  innerAccessPolicy: Accept
  rules:
  - {direction: ingress, policy: accept, priority: 1, ipProtocol: tcp, portRange: 30000/32767, sourceCidrIp: 0.0.0.0/0}
---
apiVersion: acknet.io/v1
kind: Cluster
metadata: {name: ack}
spec:
  vpc: vpc
  podVSwitches: [pod]
  networkPolicy: true
  securityGroups: [cluster-sg]
  nodePools: [{name: default, vswitches: [node], count: 2}]
"""


def workload(name: str, port: int) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": "app"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "containers": [{"name": name, "ports": [{"name": "http", "containerPort": port}]}]
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": "app"},
            "spec": {
                "selector": {"app": name},
                "ports": [{"name": "http", "port": port, "targetPort": "http"}],
            },
        },
    ]


def site(annotations: dict[str, str] | None = None, api_service: str = "api") -> dict[str, Any]:
    def path(p: str, svc: str, port: int) -> dict[str, Any]:
        return {
            "path": p,
            "pathType": "Prefix",
            "backend": {"service": {"name": svc, "port": {"number": port}}},
        }

    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "site", "namespace": "app", "annotations": annotations or {}},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": "a.example.com",
                    "http": {"paths": [path("/", "web", 8080), path("/api", api_service, 9090)]},
                }
            ],
        },
    }


# Only web pods may reach api: the Ingress controller (kube-system) is kept off /api.
API_FROM_WEB_ONLY = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "api-from-web", "namespace": "app"},
    "spec": {
        "podSelector": {"matchLabels": {"app": "api"}},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}],
    },
}


def planned(*docs: dict[str, Any]) -> Plan:
    parts = [CLOUD, *(yaml.safe_dump(d) for d in [*workload("web", 8080), *workload("api", 9090), *docs])]
    return plan(
        build_resources([Source("test.yaml", "\n---\n".join(p.strip().removeprefix("---") for p in parts))])
    )


def ingress_verdict(p: Plan, src: str, dst: str, port: int) -> Verdict:
    index = EndpointIndex.of(p)
    (source,) = resolve(index, [src], "from")
    (target,) = resolve_destinations(index, [dst])
    (found,) = Reachability(p).check([source], [target], [(port, "TCP")])
    return found


def state(v: Verdict) -> str:
    return "partial" if v.partial else "allowed" if v.allowed else "denied"


@pytest.fixture(scope="module")
def shop() -> Plan:
    return plan(build_resources(read_sources([str(REPO / "examples" / "shop")])))


# -- check -----------------------------------------------------------------------------------------


def test_declared_ports_follow_tls_and_ssl_redirect(shop: Plan) -> None:
    index = EndpointIndex.of(shop)
    (ing,) = resolve_destinations(index, ["ingress"])
    assert isinstance(ing, IngressEndpoint) and ing.name == "ingress/shop/shop"
    assert ing.declared_ports == ((443, "TCP"),)  # TLS host, ssl-redirect on: plain HTTP is a 308
    assert [(r.scheme, r.host, r.path) for r in ing.requests] == [
        ("https", "shop.example.com", "/"),
        ("https", "shop.example.com", "/api"),
    ]
    off = planned(site({ANN + "ssl-redirect": "false"}))
    (plain,) = resolve_destinations(EndpointIndex.of(off), ["ingress/app/site"])
    assert isinstance(plain, IngressEndpoint) and plain.declared_ports == ((80, "TCP"),)


def test_shop_from_the_internet_names_each_rule(shop: Plan) -> None:
    v = ingress_verdict(shop, "internet", "ingress/shop/shop", 443)
    assert state(v) == "allowed"
    # two controller pods x (three web pods for "/" + two api pods for "/api")
    assert len(v.backends) == 10
    text = "\n".join(v.reasons)
    assert "Ingress shop/shop rule 1 host shop.example.com path /api (Prefix)" in text
    assert "Ingress shop/shop rule 1 host shop.example.com path / (Prefix)" in text
    redirect = ingress_verdict(shop, "internet", "ingress/shop/shop", 80)
    assert state(redirect) == "denied" and "308" in redirect.reasons[-1]


@pytest.mark.parametrize(
    ("docs", "port", "want", "words"),
    [
        pytest.param([site()], 80, "allowed", "path /api (Prefix)", id="both-rules-reach"),
        pytest.param([site(), API_FROM_WEB_ONLY], 80, "partial", "NetworkPolicy app/api-from-web", id="policy-keeps-controller-from-api"),
        pytest.param([site({ANN + "whitelist-source-range": "10.0.0.0/8"})], 80, "denied", "whitelist-source-range 10.0.0.0/8", id="whitelist-refuses-internet"),
        pytest.param([site({ANN + "whitelist-source-range": "203.0.113.0/24"})], 80, "allowed", "is in whitelist-source-range", id="whitelist-admits-client-address"),
        pytest.param([site(api_service="missing")], 80, "denied", "is not served", id="missing-service-not-served"),
        pytest.param([site()], 443, "denied", "exercised on 80/TCP", id="no-https-request"),
    ],
)  # fmt: skip
def test_internet_to_ingress(docs: list[dict[str, Any]], port: int, want: str, words: str) -> None:
    v = ingress_verdict(planned(*docs), "internet", "ingress/app/site", port)
    assert state(v) == want, v.reasons
    said = [*v.reasons, *(r for b in v.backends for r in b.reasons)]
    assert any(words in r for r in said), said


def test_policy_drop_names_the_policy_on_the_api_paths_only() -> None:
    v = ingress_verdict(planned(site(), API_FROM_WEB_ONLY), "internet", "ingress/app/site", 80)
    for path in v.backends:
        on_api = "a.example.com/api" in path.destination
        assert path.allowed != on_api, path.destination
        if on_api:
            blocking = next(h for h in path.hops if not h.passes)
            assert blocking.object == "NetworkPolicy app/api-from-web" or "api-from-web" in blocking.reason
            assert blocking.at.startswith("app/api-")
            # NGINX connects from the controller pod: its egress, then the api pod's ingress policy
            routed = next(i for i, h in enumerate(path.hops) if h.at.startswith("ingress controller "))
            after = path.hops[routed + 1]
            assert after.at.startswith("kube-system/nginx-ingress-controller-") and after.reason.startswith(
                "egress"
            )


def test_cluster_traffic_policy_shows_nginx_the_node() -> None:
    """externalTrafficPolicy Cluster masquerades the client to the node: a whitelist of the client's
    range no longer admits it (ACK keeps nginx-ingress-lb Local for that reason)."""
    lb = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "nginx-ingress-lb", "namespace": "kube-system"},
        "spec": {
            "type": "LoadBalancer",
            "externalTrafficPolicy": "Cluster",
            "selector": {"app": "ingress-nginx"},
            "ports": [
                {"name": "http", "port": 80, "targetPort": 80},
                {"name": "https", "port": 443, "targetPort": 443},
            ],
        },
    }
    v = ingress_verdict(
        planned(site({ANN + "whitelist-source-range": "203.0.113.0/24"}), lb),
        "internet",
        "ingress/app/site",
        80,
    )
    assert state(v) == "denied"
    assert all("is not in its whitelist-source-range" in r for r in v.reasons[3:]), v.reasons
    assert any("192.168.0." in r for r in v.reasons)


def test_ingress_is_a_destination_only() -> None:
    index = EndpointIndex.of(planned(site()))
    with pytest.raises(UnsupportedEndpoint):
        resolve(index, ["ingress/app/site"], "from")
    with pytest.raises(NotFound, match="ingress/NS/NAME"):
        resolve_destinations(index, ["ingress/app/nope"])
    # not in the default destinations while probe does not send requests through Ingresses
    assert not any(isinstance(d, IngressEndpoint) for d in resolve_destinations(index, []))


# -- trace -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("https://shop.example.com/api", ("https://shop.example.com/api", (443, "TCP"))),
        ("http://shop.example.com", ("http://shop.example.com/", (80, "TCP"))),
        ("http://Shop.Example.com:8080/x?y=1", ("http://shop.example.com:8080/x?y=1", (8080, "TCP"))),
        ("https://a.example.com:443/", ("https://a.example.com/", (443, "TCP"))),
        ("ecs/db-1:3306", ("ecs/db-1", (3306, "TCP"))),
    ],
    ids=["https", "no-path", "port-and-query", "default-port-dropped", "plain-target"],
)
def test_parse_target_urls(text: str, want: tuple[str, tuple[int, str]]) -> None:
    assert parse_target(text) == want


def test_parse_target_refuses_a_url_without_host() -> None:
    with pytest.raises(ValueError, match="expected a URL"):
        parse_target("http:///x")


def test_trace_url_names_controller_ingress_rule_and_service(shop: Plan) -> None:
    tracer = Tracer(shop)
    trace = tracer.trace(
        tracer.source("internet"), tracer.destination("https://shop.example.com/api"), 443, "TCP"
    )
    data = trace.to_json()
    assert data["verdict"] == "allowed"
    routed = [
        h
        for h in data["hops"]
        if h["at"].startswith("ingress controller kube-system/nginx-ingress-controller-")
    ]
    assert routed and all(
        (h["object"], h["rule"], h["action"])
        == (
            "Ingress shop/shop",
            "rule 1 host shop.example.com path /api (Prefix)",
            "route to svc/shop/api:9090",
        )
        for h in routed
    )
    # every path ends at an api pod's listener; every hop names what decided
    assert {b["to"].split(" -> ")[-1].split(" ")[0].rsplit("-", 2)[0] for b in data["branches"]} == {
        "shop/api"
    }
    assert all(h["object"] for h in data["hops"])


def test_trace_redirect_and_404_say_what_would_change_them(shop: Plan) -> None:
    tracer = Tracer(shop)
    src = tracer.source("internet")
    redirect = tracer.blocked_path(src, tracer.destination("http://shop.example.com/api"), 80, "TCP")
    assert redirect.word == "dropped"
    assert any("ssl-redirect" in s.change for s in redirect.suggestions)
    hop = next(h for h in redirect.hops_json() if h["at"].startswith("ingress controller"))
    assert hop["action"] == "redirect 308"
    missing = tracer.blocked_path(src, tracer.destination("https://other.example.com/"), 443, "TCP")
    assert any("add an Ingress rule for host other.example.com" in s.change for s in missing.suggestions)


def test_trace_policy_drop_suggests_allowing_the_controller() -> None:
    tracer = Tracer(planned(site(), API_FROM_WEB_ONLY))
    trace = tracer.blocked_path(
        tracer.source("internet"), tracer.destination("http://a.example.com/api/v1"), 80, "TCP"
    )
    assert trace.word == "dropped"
    (fix,) = trace.suggestions
    assert fix.object == "namespace app" and fix.snippet is not None
    peer = fix.snippet["spec"]["ingress"][0]["from"][0]
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}
    # with the suggested policy made, the request goes through
    fixed = tracer.changed([fix])
    again = fixed.trace(fixed.source("internet"), fixed.destination("http://a.example.com/api/v1"), 80, "TCP")
    assert again.word == "allowed"


def test_trace_from_a_pod_reaches_the_public_vip_inside_the_vpc() -> None:
    p = planned(site())
    tracer = Tracer(p)
    (web,) = [n for n in EndpointIndex.of(p).pods if n.startswith("app/web-")][:1]
    trace = tracer.trace(tracer.source(web), tracer.destination("http://a.example.com/"), 80, "TCP")
    assert trace.verdict.hops[0].reason.startswith("egress policy") or "VIP" in trace.verdict.reasons[0]
    assert any(h["at"].startswith("ingress controller") for h in trace.hops_json())


def test_trace_url_without_controller() -> None:
    p = plan(
        build_resources(
            [Source("x.yaml", CLOUD.replace("networkPolicy: true", "networkPolicy: true\n  addons: []"))]
        )
    )
    with pytest.raises(NotFound, match="Ingress controller"):
        Tracer(p).destination("http://a.example.com/")
