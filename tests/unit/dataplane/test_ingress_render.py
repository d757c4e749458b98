"""The NGINX Ingress controller's nginx.conf: golden text, ingress-nginx's location rules, the routing
vectors' expected configuration lines, and Ingresses left out with their reason.

The vectors are read where they are (``$ACKNET_SHARED/conformance/ingress-nginx`` or ``<repo>/../shared``);
the live test (tests/e2e/test_ingress_live.py) sends their requests. Regenerate the golden files with
``ACKNET_UPDATE_GOLDEN=1 pytest tests/unit/dataplane/test_ingress_render.py`` and review the diff.
"""

from __future__ import annotations

import base64
import difflib
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from acknet.controllers.ingress import check_regex, controller_pods, wildcard_server_name
from acknet.controllers.plan import plan
from acknet.controllers.state import Plan
from acknet.dataplane.apply.nginx import error_line, master_argv
from acknet.dataplane.render.ingress import IngressConfig, render_ingress
from acknet.model.build import build_resources
from acknet.model.documents import Source
from acknet.store.files import read_sources

REPO = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).parent / "golden"
SHARED = Path(os.environ.get("ACKNET_SHARED") or REPO.parent / "shared")
VECTORS = SHARED / "conformance" / "ingress-nginx" / "ingress-routing-vectors.yaml"

# A throwaway PEM pair: render only checks the PEM markers and copies the text.
CERT = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIBfake\n-----END PRIVATE KEY-----\n"

ECHO = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: conf}
spec:
  replicas: 2
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - name: echo
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: conf}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http}]
"""

CATCH_ALL = """\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: catch-all, namespace: conf}
spec:
  ingressClassName: nginx
  defaultBackend: {service: {name: echo, port: {number: 80}}}
"""


def planned(*docs: str) -> Plan:
    text = "\n---\n".join(docs)
    return plan(build_resources([Source("test.yaml", text)]))


def config_of(*docs: str) -> IngressConfig:
    p = planned(*docs)
    return render_ingress(p, next(iter(p.resources.clusters)))


def ingress(
    name: str,
    host: str | None = "a.example.com",
    path: str = "/",
    path_type: str = "Prefix",
    service: str = "echo",
    port: int | str = 80,
    annotations: dict[str, str] | None = None,
    tls: list[dict[str, Any]] | None = None,
    namespace: str = "conf",
    **spec: Any,
) -> str:
    port_ref = {"number": port} if isinstance(port, int) else {"name": port}
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    "path": path,
                    "pathType": path_type,
                    "backend": {"service": {"name": service, "port": port_ref}},
                }
            ]
        }
    }
    if host is not None:
        rule["host"] = host
    body: dict[str, Any] = {"ingressClassName": "nginx", "rules": [rule], **spec}
    if tls:
        body["tls"] = tls
    return yaml.safe_dump(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
            "spec": body,
        }
    )


def tls_secret(name: str, namespace: str = "conf", cert: str = CERT, key: str = KEY) -> str:
    data = {
        "tls.crt": base64.b64encode(cert.encode()).decode(),
        "tls.key": base64.b64encode(key.encode()).decode(),
    }
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "type": "kubernetes.io/tls",
            "data": data,
        }
    )


def locations(text: str, host: str) -> list[str]:
    """The location lines of one server, in file order."""
    block = text.split(f"## {host}\n", 1)[1].split("\n    ## ", 1)[0]
    return [
        line.strip().removesuffix(" {") for line in block.splitlines() if line.strip().startswith("location ")
    ]


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("ACKNET_UPDATE_GOLDEN"):
        path.write_text(text)
    expected = path.read_text()
    if text != expected:
        diff = "".join(
            difflib.unified_diff(expected.splitlines(True), text.splitlines(True), str(path), "rendered")
        )
        pytest.fail(f"rendered text differs from {path}:\n{diff}")


# -- golden files -----------------------------------------------------------------------------------


def test_shop_golden() -> None:
    p = plan(build_resources(read_sources([str(REPO / "examples" / "shop")])))
    config = render_ingress(p, "ack")
    assert config.served == ("shop/shop",) and config.problems == ()
    assert len(config.files) == 1 and all(n.startswith("certs/") for n in config.files)
    check_golden("ingress_shop.conf", config.text)


def test_features_golden() -> None:
    """Wildcard host, Exact/Prefix, defaultBackend, TLS, canary by weight and header, allow list,
    backend protocol, body size, rewrite with captures: one configuration to read and diff."""
    ann = "nginx.ingress.kubernetes.io/"
    config = config_of(
        ECHO,
        ECHO.replace("echo", "canary"),
        tls_secret("wild"),
        ingress(
            "main",
            "*.example.com",
            "/app",
            tls=[{"hosts": ["*.example.com"], "secretName": "wild"}],
            annotations={
                ann + "whitelist-source-range": "10.0.0.0/8, 192.168.0.0/16",
                ann + "proxy-body-size": "8m",
            },
        ),
        ingress(
            "main-canary",
            "*.example.com",
            "/app",
            service="canary",
            annotations={
                ann + "canary": "true",
                ann + "canary-weight": "25",
                ann + "canary-by-header": "X-Canary",
            },
        ),
        ingress("exact", "b.example.com", "/exact", "Exact", annotations={ann + "backend-protocol": "GRPC"}),
        ingress(
            "rewrite",
            "c.example.com",
            "/api(/|$)(.*)",
            "ImplementationSpecific",
            annotations={ann + "use-regex": "true", ann + "rewrite-target": "/$2"},
        ),
        CATCH_ALL,
    )
    assert config.problems == ()
    check_golden("ingress_features.conf", config.text)


# -- ingress-nginx's location rules -----------------------------------------------------------------


def test_prefix_gets_a_slash_location_and_an_exact_twin() -> None:
    text = config_of(ECHO, ingress("a", path="/aaa")).text
    assert locations(text, "a.example.com") == ['location "/aaa/"', 'location = "/aaa"', 'location "/"']


def test_exact_twin_is_not_added_when_an_exact_path_exists() -> None:
    text = config_of(ECHO, ingress("a", path="/foo", path_type="Exact"), ingress("b", path="/foo")).text
    assert locations(text, "a.example.com") == ['location "/foo/"', 'location = "/foo"', 'location "/"']


def test_one_regex_location_switches_the_whole_server() -> None:
    ann = {"nginx.ingress.kubernetes.io/use-regex": "true"}
    text = config_of(ECHO, ingress("a", path="/plain"), ingress("b", path="/id/[0-9]+", annotations=ann)).text
    assert locations(text, "a.example.com") == [
        'location ~* "^/id/[0-9]+"',
        'location ~* "^/plain/"',
        'location ~* "^/plain"',
        'location ~* "^/"',
    ]


def test_first_ingress_wins_the_same_path_and_type() -> None:
    text = config_of(ECHO, ingress("first", path="/x"), ingress("second", path="/x")).text
    assert '"first"' in text and '$ingress_name "second"' not in text


def test_wildcard_matches_exactly_one_more_label() -> None:
    name = wildcard_server_name("*.example.com")
    pattern = re.compile(name.removeprefix("~").replace("(?<", "(?P<"))
    assert pattern.match("a.example.com") and not pattern.match("a.b.example.com")
    assert not pattern.match("example.com")


def test_tls_host_redirects_with_308_and_no_port() -> None:
    text = config_of(
        ECHO, tls_secret("t"), ingress("a", tls=[{"hosts": ["a.example.com"], "secretName": "t"}])
    ).text
    assert "return 308 https://$host$redirect_uri;" in text
    assert '"~^http:/\\.well-known/acme-challenge" 0;' in text


def test_ssl_redirect_false_and_force_ssl_redirect() -> None:
    ann = "nginx.ingress.kubernetes.io/"
    tls = [{"hosts": ["a.example.com"], "secretName": "t"}]
    off = config_of(
        ECHO, tls_secret("t"), ingress("a", tls=tls, annotations={ann + "ssl-redirect": "false"})
    ).text
    assert "return 308" not in locations_block(off, "a.example.com")
    forced = config_of(ECHO, ingress("a", annotations={ann + "force-ssl-redirect": "true"})).text
    assert "return 308" in locations_block(forced, "a.example.com")


def locations_block(text: str, host: str) -> str:
    return text.split(f"## {host}\n", 1)[1].split("\n    ## ", 1)[0]


def test_upstreams_are_ready_pod_addresses_not_the_cluster_ip() -> None:
    p = planned(ECHO, ingress("a"))
    config = render_ingress(p, "ack")
    pods = sorted(str(x.ip) for x in p.pods if x.namespace == "conf")
    block = config.text.split("upstream conf-echo-80 {", 1)[1].split("}", 1)[0]
    assert sorted(re.findall(r"server ([0-9.]+):8080", block)) == pods
    svc = next(s for s in p.services if s.name == "echo")
    assert str(svc.cluster_ip) not in config.text


def test_a_service_without_ready_endpoints_answers_503() -> None:
    config = config_of(ECHO.replace("replicas: 2", "replicas: 0"), ingress("a"))
    assert "return 503;" in locations_block(config.text, "a.example.com")
    assert "upstream conf-echo-80" not in config.text


def test_default_server_answers_404_and_the_controller_pods_exist() -> None:
    p = planned(ECHO)
    config = render_ingress(p, "ack")
    assert "listen 80 default_server" in config.text and "return 404;" in locations_block(
        config.text, "default server"
    )
    assert len(controller_pods(p, "ack")) == 2


def test_an_ingress_of_another_class_is_not_rendered() -> None:
    other = ingress("a").replace("ingressClassName: nginx", "ingressClassName: alb")
    config = config_of(ECHO, other)
    assert config.served == () and "a.example.com" not in config.text


def test_the_legacy_class_annotation_and_no_class_are_served() -> None:
    legacy = ingress("a").replace("ingressClassName: nginx", "ingressClassName: null")
    legacy = legacy.replace("annotations: {}", "annotations: {kubernetes.io/ingress.class: nginx}")
    bare = ingress("b", host="b.example.com").replace("ingressClassName: nginx", "ingressClassName: null")
    assert config_of(ECHO, legacy, bare).served == ("conf/a", "conf/b")


def test_addon_can_be_dropped() -> None:
    cloud = """\
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
kind: Cluster
metadata: {name: ack}
spec: {vpc: vpc, podVSwitches: [node], addons: [coredns], nodePools: [{name: d, vswitches: [node], count: 1}]}
"""
    p = planned(cloud, ECHO)
    assert controller_pods(p, "ack") == []
    assert not any(s.name == "nginx-ingress-lb" for s in p.services)


# -- mistakes stay with their Ingress --------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        pytest.param(
            ingress(
                "bad", "b.example.com", "/x[", annotations={"nginx.ingress.kubernetes.io/use-regex": "true"}
            ),
            "InvalidPath",
            id="invalid-regex",
        ),
        pytest.param(
            ingress("bad", "b.example.com", tls=[{"hosts": ["b.example.com"], "secretName": "nope"}]),
            "MissingSecret",
            id="missing-secret",
        ),
        pytest.param(ingress("bad", "b.example.com", service="nope"), "MissingService", id="missing-service"),
        pytest.param(ingress("bad", "b.example.com", port=81), "MissingServicePort", id="missing-port"),
        pytest.param(
            ingress("bad", "b.example.com", annotations={"nginx.ingress.kubernetes.io/canary-weight": "x"}),
            "",
            id="canary-weight-without-canary-is-ignored",
        ),
        pytest.param(
            ingress(
                "bad", "b.example.com", annotations={"nginx.ingress.kubernetes.io/backend-protocol": "SMTP"}
            ),
            "InvalidAnnotation",
            id="bad-backend-protocol",
        ),
        pytest.param(
            ingress(
                "bad", "b.example.com", annotations={"nginx.ingress.kubernetes.io/proxy-body-size": "lots"}
            ),
            "InvalidAnnotation",
            id="bad-body-size",
        ),
        pytest.param(
            ingress("bad", "b.example.com", annotations={"nginx.ingress.kubernetes.io/canary": "true"}),
            "NoMainIngress",
            id="canary-alone",
        ),
    ],
)
def test_a_broken_ingress_is_left_out_and_the_others_served(bad: str, reason: str) -> None:
    config = config_of(ECHO, ingress("good"), bad)
    assert "conf/good" in config.served
    if not reason:
        assert "conf/bad" in config.served
        return
    assert "conf/bad" not in config.served and "b.example.com" not in config.text
    assert [(p.ingress, p.reason) for p in config.problems] == [("conf/bad", reason)]


def test_excluded_ingress_is_reported_with_what_nginx_said() -> None:
    p = planned(ECHO, ingress("a"), ingress("b", "b.example.com"))
    config = render_ingress(p, "ack", excluded={"conf/b": "nginx -t: bad"})
    assert config.served == ("conf/a",)
    assert [(x.ingress, x.reason, x.message) for x in config.problems] == [
        ("conf/b", "InvalidConfig", "nginx -t: bad")
    ]


def test_line_owners_name_the_ingress_of_each_location_line() -> None:
    config = config_of(ECHO, ingress("a"))
    lines = config.text.splitlines()
    owned = [i + 1 for i, line in enumerate(lines) if 'set $ingress_name "a"' in line]
    assert owned and all(config.owner_of_line(n) == "conf/a" for n in owned)
    assert config.owner_of_line(1) is None


@pytest.mark.parametrize(
    ("pattern", "ok"), [("/id/[0-9]+$", True), ("/foo/bar/(.+)", True), ("/x[", False), ("/a(b", False)]
)
def test_check_regex(pattern: str, ok: bool) -> None:
    assert (check_regex(pattern) is None) == ok


# -- the routing vectors' configuration lines ------------------------------------------------------


def _vector_cases() -> list[dict[str, Any]]:
    if not VECTORS.exists():
        return []
    cases: list[dict[str, Any]] = yaml.safe_load(VECTORS.read_text())["cases"]
    return cases


def vector_ingresses(case: dict[str, Any]) -> list[str]:
    """The case's Ingresses as manifests (namespace conf, Service echo port 80, file order = creation
    order); regex paths as ImplementationSpecific, as strict path validation wants (vector header)."""
    out = []
    for ing in case["ingresses"]:
        path_type = ing.get("pathType", "Prefix")
        if ing.get("annotations", {}).get("nginx.ingress.kubernetes.io/use-regex") == "true":
            path_type = "ImplementationSpecific"
        tls = ing.get("tls")
        out.append(
            ingress(
                ing["name"], ing["host"], ing["path"], path_type, annotations=ing.get("annotations"), tls=tls
            )
        )
        for entry in tls or []:
            out.append(tls_secret(entry["secretName"]))
    return out


@pytest.mark.parametrize("case", _vector_cases(), ids=lambda c: str(c["id"]))
def test_vector_expected_configuration_lines(case: dict[str, Any]) -> None:
    config = config_of(ECHO, *vector_ingresses(case))
    assert config.problems == ()
    for line in case.get("expect_nginx_conf_contains", []):
        assert line in config.text, line


def test_vectors_are_there() -> None:
    if not VECTORS.exists():
        pytest.skip(f"{VECTORS} not found (set ACKNET_SHARED)")
    assert len(_vector_cases()) == 13


# -- the apply side's pure helpers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        pytest.param(
            "2026/12/02 03:17:43 [emerg] 16466#16466: invalid variable name in /s/p/nginx.conf.next:236\n"
            "nginx: configuration file /s/p/nginx.conf.next test failed",
            (236, "invalid variable name"),
            id="error-log-format",
        ),
        pytest.param(
            'nginx: [emerg] pcre2_compile() failed: PCRE2 does not support \\F in "^/x" at "U" in /p/nginx.conf.next:12',
            (12, 'pcre2_compile() failed: PCRE2 does not support \\F in "^/x" at "U"'),
            id="nginx-prefix-format",
        ),
        pytest.param("nginx: [emerg] open() failed in /etc/other.conf:3", None, id="another-file"),
    ],
)
def test_nginx_t_error_line(output: str, expected: tuple[int, str] | None) -> None:
    assert error_line(output) == expected


def test_master_uses_only_its_prefix(tmp_path: Path) -> None:
    argv = master_argv(tmp_path / "p")
    assert argv[0] == "/usr/sbin/nginx"
    assert all(not a.startswith(("/etc", "/var/log", "/run")) for a in argv)
    assert ["-p", f"{tmp_path / 'p'}/"] == argv[1:3] and "-e" in argv and "-c" in argv
    for text in (render_ingress(planned(ECHO), "ack").text,):
        assert "/etc/nginx" not in text and "/var/log" not in text and "include " not in text
