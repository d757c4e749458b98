"""The request router of analysis/ingress.py: ingress-nginx's routing vectors, and the cases around them.

Every vector of ``$ACKNET_SHARED/conformance/ingress-nginx/ingress-routing-vectors.yaml`` goes through
``route`` with the Ingresses built as tests/e2e/test_ingress_live.py builds them (Ingress ``i`` on its
own Service ``echo-i``, which is how "served_by" is told), so the router and the live NGINX answer the
same vectors: the status, which Ingress served, the path the backend saw, the redirect's Location.
"""

from __future__ import annotations

import base64
import os
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import yaml

from acknet.analysis.ingress import (
    IngressDecision,
    IngressRequest,
    normalize_path,
    request_host,
    route,
    sample_requests,
)
from acknet.controllers.ingress import IngressRoutes, ingress_routes
from acknet.controllers.plan import plan
from acknet.model.build import build_resources
from acknet.model.documents import Source

REPO = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("ACKNET_SHARED") or REPO.parent / "shared")
VECTORS = SHARED / "conformance" / "ingress-nginx" / "ingress-routing-vectors.yaml"
ANN = "nginx.ingress.kubernetes.io/"
PORTS = 16

CERT = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIBfake\n-----END PRIVATE KEY-----\n"


def workloads(replicas: int = 2, ready: bool = True) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "echo", "namespace": "conf"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "echo"}},
                "template": {
                    "metadata": {"labels": {"app": "echo"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "echo",
                                "ports": [{"containerPort": 8000 + i} for i in range(PORTS)],
                            }
                        ]
                    },
                },
            },
        }
    ]
    for i in range(PORTS):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"echo-{i}", "namespace": "conf"},
                "spec": {
                    "selector": {"app": "echo" if ready else "nothing"},
                    "ports": [{"name": "http", "port": 80, "targetPort": 8000 + i}],
                },
            }
        )
    return docs


def ingress_doc(
    name: str,
    host: str | None,
    path: str,
    path_type: str,
    service: str,
    annotations: dict[str, str] | None = None,
    tls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    "path": path,
                    "pathType": path_type,
                    "backend": {"service": {"name": service, "port": {"number": 80}}},
                }
            ]
        }
    }
    if host:
        rule["host"] = host
    spec: dict[str, Any] = {"ingressClassName": "nginx", "rules": [rule]}
    if tls:
        spec["tls"] = tls
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": "conf", "annotations": annotations or {}},
        "spec": spec,
    }


def tls_secret(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "conf"},
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64.b64encode(CERT.encode()).decode(),
            "tls.key": base64.b64encode(KEY.encode()).decode(),
        },
    }


def routes_of(*docs: dict[str, Any], ready: bool = True) -> IngressRoutes:
    text = "\n---\n".join(yaml.safe_dump(d) for d in [*workloads(ready=ready), *docs])
    p = plan(build_resources([Source("test.yaml", text)]))
    return ingress_routes(p, next(iter(p.resources.clusters)))


# -- the vectors -------------------------------------------------------------------------------------


def _cases() -> list[dict[str, Any]]:
    if not VECTORS.exists():
        return []
    return list(yaml.safe_load(VECTORS.read_text())["cases"])


def case_docs(case: dict[str, Any], extra: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    docs = []
    for i, spec in enumerate([*case["ingresses"], *(extra or [])]):
        annotations = spec.get("annotations") or {}
        path_type = spec.get("pathType", "Prefix")
        if annotations.get(ANN + "use-regex") == "true":
            path_type = "ImplementationSpecific"  # strict-validate-path-type (the vector file's header)
        docs.append(
            ingress_doc(
                spec["name"], spec["host"], spec["path"], path_type, f"echo-{i}", annotations, spec.get("tls")
            )
        )
        docs.extend(tls_secret(t["secretName"]) for t in spec.get("tls") or [])
    return docs


def mismatches(
    case: dict[str, Any], routes: IngressRoutes, names: list[str], requests: list[dict[str, Any]]
) -> list[str]:
    out = []
    host = case["ingresses"][0]["host"]
    for want in requests:
        request = IngressRequest(
            want.get("scheme", "http"), host, want["path"], headers=want.get("headers", {})
        )
        got = route(routes, request)
        where = f"{case['id']} {want['path']}"
        status = 200 if got.outcome == "proxied" else got.status
        if status != want["status"]:
            out.append(f"{where}: status {status} != {want['status']} ({got.reason})")
            continue
        if "served_by" in want:
            served = names[int(got.service.rpartition("-")[2])] if got.service else None
            if served != want["served_by"]:
                out.append(f"{where}: served by {served}, want {want['served_by']} ({got.reason})")
        if "backend_request_uri" in want:
            uri = f"http://{host}:80{got.backend_path}"
            if uri != want["backend_request_uri"]:
                out.append(f"{where}: backend sees {uri}, want {want['backend_request_uri']}")
        if "location_header" in want and got.location != want["location_header"]:
            out.append(f"{where}: Location {got.location}, want {want['location_header']}")
    return out


@pytest.mark.parametrize("case", _cases(), ids=lambda c: str(c["id"]))
def test_routing_vector(case: dict[str, Any]) -> None:
    names = [i["name"] for i in case["ingresses"]]
    routes = routes_of(*case_docs(case))
    assert set(routes.served) == {f"conf/{n}" for n in names}, routes.problems
    failures = mismatches(case, routes, names, case["requests"])
    then = case.get("then")
    if then:
        added = then["add_ingress"]
        routes = routes_of(*case_docs(case, [added]))
        failures += mismatches(case, routes, [*names, added["name"]], then["requests"])
    # `variant` is the ConfigMap's use-forwarded-headers, which the routes do not carry.
    assert not failures, "\n".join(failures)


def test_vectors_are_there() -> None:
    if not VECTORS.exists():
        pytest.skip(f"{VECTORS} not found (set ACKNET_SHARED)")
    assert len(_cases()) == 13


# -- the rest of what NGINX does ---------------------------------------------------------------------

SHOP_TLS = [{"hosts": ["a.example.com"], "secretName": "a-tls"}]


def _decide(routes: IngressRoutes, url: str, client: str | None = None, **headers: str) -> IngressDecision:
    scheme, _, rest = url.partition("://")
    host, _, path = rest.partition("/")
    return route(
        routes,
        IngressRequest(scheme, host, "/" + path, IPv4Address(client) if client else None, headers),  # type: ignore[arg-type]
    )


def _ingress(name: str, host: str | None, path: str, service: str, **kw: Any) -> dict[str, Any]:
    return ingress_doc(name, host, path, kw.pop("path_type", "Prefix"), service, **kw)


CASES: list[tuple[str, list[dict[str, Any]], str, dict[str, Any], tuple[str, str | None, int | None]]] = [
    # (id, documents, url, request extras, (outcome, service, status))
    (
        "exact-host",
        [_ingress("a", "a.example.com", "/", "echo-0")],
        "http://a.example.com/x",
        {},
        ("proxied", "svc/conf/echo-0", None),
    ),
    (
        "host-with-port-and-case",
        [_ingress("a", "a.example.com", "/", "echo-0")],
        "http://A.Example.com:80/x",
        {},
        ("proxied", "svc/conf/echo-0", None),
    ),
    (
        "unknown-host-404",
        [_ingress("a", "a.example.com", "/", "echo-0")],
        "http://b.example.com/",
        {},
        ("not_found", None, 404),
    ),
    (
        "wildcard-one-label",
        [_ingress("w", "*.example.com", "/", "echo-1")],
        "http://x.example.com/",
        {},
        ("proxied", "svc/conf/echo-1", None),
    ),
    (
        "wildcard-not-two-labels",
        [_ingress("w", "*.example.com", "/", "echo-1")],
        "http://a.b.example.com/",
        {},
        ("not_found", None, 404),
    ),
    (
        "exact-host-beats-wildcard",
        [_ingress("w", "*.example.com", "/", "echo-1"), _ingress("a", "a.example.com", "/", "echo-0")],
        "http://a.example.com/",
        {},
        ("proxied", "svc/conf/echo-0", None),
    ),
    (
        "no-host-rule-any-host",
        [_ingress("any", None, "/", "echo-2")],
        "http://whatever.test/",
        {},
        ("proxied", "svc/conf/echo-2", None),
    ),
    (
        "path-not-covered-404",
        [_ingress("a", "a.example.com", "/api", "echo-0")],
        "http://a.example.com/web",
        {},
        ("not_found", None, 404),
    ),
    (
        "tls-redirects-http",
        [_ingress("a", "a.example.com", "/", "echo-0", tls=SHOP_TLS), tls_secret("a-tls")],
        "http://a.example.com/x/",
        {},
        ("redirect", None, 308),
    ),
    (
        "tls-serves-https",
        [_ingress("a", "a.example.com", "/", "echo-0", tls=SHOP_TLS), tls_secret("a-tls")],
        "https://a.example.com/x",
        {},
        ("proxied", "svc/conf/echo-0", None),
    ),
    (
        "tls-acme-exempt",
        [_ingress("a", "a.example.com", "/", "echo-0", tls=SHOP_TLS), tls_secret("a-tls")],
        "http://a.example.com/.well-known/acme-challenge/t",
        {},
        ("proxied", "svc/conf/echo-0", None),
    ),
    (
        "ssl-redirect-off",
        [
            _ingress(
                "a", "a.example.com", "/", "echo-0", tls=SHOP_TLS, annotations={ANN + "ssl-redirect": "false"}
            ),
            tls_secret("a-tls"),
        ],
        "http://a.example.com/x",
        {},
        ("proxied", "svc/conf/echo-0", None),
    ),
    (
        "whitelist-refuses",
        [
            _ingress(
                "a",
                "a.example.com",
                "/",
                "echo-0",
                annotations={ANN + "whitelist-source-range": "10.0.0.0/8"},
            )
        ],
        "http://a.example.com/",
        {"client": "203.0.113.1"},
        ("forbidden", "svc/conf/echo-0", 403),
    ),
    (
        "whitelist-admits",
        [
            _ingress(
                "a",
                "a.example.com",
                "/",
                "echo-0",
                annotations={ANN + "whitelist-source-range": "10.0.0.0/8, 203.0.113.0/24"},
            )
        ],
        "http://a.example.com/",
        {"client": "203.0.113.1"},
        ("proxied", "svc/conf/echo-0", None),
    ),
    (
        "canary-header-value",
        [
            _ingress("main", "c.example.com", "/", "echo-0"),
            _ingress(
                "can",
                "c.example.com",
                "/",
                "echo-1",
                annotations={
                    ANN + "canary": "true",
                    ANN + "canary-by-header": "X-Canary",
                    ANN + "canary-by-header-value": "yes",
                },
            ),
        ],
        "http://c.example.com/",
        {"headers": {"x-canary": "yes"}},
        ("proxied", "svc/conf/echo-1", None),
    ),
    (
        "canary-header-other-value",
        [
            _ingress("main", "c.example.com", "/", "echo-0"),
            _ingress(
                "can",
                "c.example.com",
                "/",
                "echo-1",
                annotations={
                    ANN + "canary": "true",
                    ANN + "canary-by-header": "X-Canary",
                    ANN + "canary-by-header-value": "yes",
                },
            ),
        ],
        "http://c.example.com/",
        {"headers": {"X-Canary": "no"}},
        ("proxied", "svc/conf/echo-0", None),
    ),
    (
        "canary-always",
        [
            _ingress("main", "c.example.com", "/", "echo-0"),
            _ingress(
                "can",
                "c.example.com",
                "/",
                "echo-1",
                annotations={ANN + "canary": "true", ANN + "canary-by-header": "X-Canary"},
            ),
        ],
        "http://c.example.com/",
        {"headers": {"X-Canary": "always"}},
        ("proxied", "svc/conf/echo-1", None),
    ),
    (
        "canary-weight-all",
        [
            _ingress("main", "c.example.com", "/", "echo-0"),
            _ingress(
                "can",
                "c.example.com",
                "/",
                "echo-1",
                annotations={ANN + "canary": "true", ANN + "canary-weight": "100"},
            ),
        ],
        "http://c.example.com/",
        {},
        ("proxied", "svc/conf/echo-1", None),
    ),
    (
        "canary-weight-some-reports-main",
        [
            _ingress("main", "c.example.com", "/", "echo-0"),
            _ingress(
                "can",
                "c.example.com",
                "/",
                "echo-1",
                annotations={ANN + "canary": "true", ANN + "canary-weight": "30"},
            ),
        ],
        "http://c.example.com/",
        {},
        ("proxied", "svc/conf/echo-0", None),
    ),
]


@pytest.mark.parametrize(("docs", "url", "extra", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_route(
    docs: list[dict[str, Any]], url: str, extra: dict[str, Any], want: tuple[str, str | None, int | None]
) -> None:
    got = _decide(routes_of(*docs), url, extra.get("client"), **extra.get("headers", {}))
    assert (got.outcome, got.service, got.status) == want, got.reason
    if got.outcome == "proxied":
        assert got.upstreams and all(port >= 8000 for _, port in got.upstreams)
        assert got.rule is not None and got.rule.startswith("rule 1 ")


def test_reasons_name_the_rule_and_the_fix() -> None:
    routes = routes_of(
        ingress_doc(
            "a",
            "a.example.com",
            "/api",
            "Prefix",
            "echo-0",
            annotations={ANN + "whitelist-source-range": "10.0.0.0/8"},
        ),
    )
    got = _decide(routes, "http://a.example.com/api/v1", "203.0.113.9")
    assert got.ingress == "conf/a" and got.rule == "rule 1 host a.example.com path /api (Prefix)"
    assert "203.0.113.9" in got.reason and "whitelist-source-range" in got.reason
    assert "rule of host a.example.com" in _decide(routes, "http://a.example.com/other").reason
    weight = routes_of(
        ingress_doc("m", "c.example.com", "/", "Prefix", "echo-0"),
        ingress_doc(
            "c",
            "c.example.com",
            "/",
            "Prefix",
            "echo-1",
            annotations={ANN + "canary": "true", ANN + "canary-weight": "30"},
        ),
    )
    assert "30% of requests" in _decide(weight, "http://c.example.com/").reason


def test_no_ready_endpoint_is_503() -> None:
    routes = routes_of(ingress_doc("a", "a.example.com", "/", "Prefix", "echo-0"), ready=False)
    got = _decide(routes, "http://a.example.com/")
    assert (got.outcome, got.status, got.upstreams) == ("unavailable", 503, ())
    assert "no ready endpoint" in got.reason


def test_redirect_location_drops_one_trailing_slash() -> None:
    routes = routes_of(
        ingress_doc("a", "a.example.com", "/", "Prefix", "echo-0", tls=SHOP_TLS), tls_secret("a-tls")
    )
    assert _decide(routes, "http://a.example.com/x/").location == "https://a.example.com/x"
    assert _decide(routes, "http://a.example.com/").location == "https://a.example.com"


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("/a//b", "/a/b"),
        ("/a/./b", "/a/b"),
        ("/a/b/../c", "/a/c"),
        ("/a%2Fb", "/a/b"),
        ("/x?q=1", "/x"),
        ("/a/..", "/"),
    ],
    ids=["merge-slashes", "dot", "dot-dot", "percent", "query", "dot-dot-last"],
)
def test_normalize_path(raw: str, want: str) -> None:
    assert normalize_path(raw) == want


def test_request_host() -> None:
    assert request_host("A.Example.COM:8443") == "a.example.com"
    assert request_host("a.example.com.") == "a.example.com"


def test_sample_requests() -> None:
    routes = routes_of(
        tls_secret("a-tls"),
        {
            **ingress_doc("a", "a.example.com", "/", "Prefix", "echo-0", tls=SHOP_TLS),
            "spec": {
                "ingressClassName": "nginx",
                "tls": SHOP_TLS,
                "rules": [
                    {"host": "a.example.com", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "echo-0", "port": {"number": 80}}}},
                        {"path": "/api", "pathType": "Exact", "backend": {"service": {"name": "echo-1", "port": {"number": 80}}}},
                    ]}},
                    {"host": "*.w.example.com", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "echo-2", "port": {"number": 80}}}},
                    ]}},
                ],
            },
        },
        ingress_doc("r", "r.example.com", "/id/[0-9]+", "ImplementationSpecific", "echo-3", annotations={ANN + "use-regex": "true"}),
        ingress_doc("off", "a.example.com", "/off", "Prefix", "echo-4", annotations={ANN + "ssl-redirect": "false"}),
    )  # fmt: skip
    got = [(r.scheme, r.host, r.path) for r in sample_requests(routes, "conf", "a")]
    assert got == [
        ("https", "a.example.com", "/"),
        ("https", "a.example.com", "/api"),
        ("http", "probe.w.example.com", "/"),
    ]
    assert sample_requests(routes, "conf", "r") == []  # a regex path: no request is the pattern
    assert [(r.scheme, r.path) for r in sample_requests(routes, "conf", "off")] == [
        ("https", "/off"),
        ("http", "/off"),
    ]
    for ref in ("a", "off"):
        for request in sample_requests(routes, "conf", ref):
            assert route(routes, request).outcome == "proxied"
    assert sample_requests(routes, "conf", "nope") == []
