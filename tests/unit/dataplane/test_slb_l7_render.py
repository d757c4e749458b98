"""The layer-7 proxy of a CLB instance rendered (render/slb_l7.py): golden NGINX text, schedulers,
health, certificates. Pure, no root.

Regenerate the golden file with ``ACKNET_UPDATE_GOLDEN=1 pytest tests/unit/dataplane`` and review the diff.
"""

from __future__ import annotations

import base64
import dataclasses
import difflib
import os
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from acknet.controllers.plan import plan
from acknet.controllers.state import Plan, PlannedLoadBalancer, SlbBackend
from acknet.dataplane.render import slb_l7
from acknet.model.documents import Source
from acknet.model.load import load_resources

GOLDEN = Path(__file__).parent / "golden"
FOLDER = "/var/lib/acknet/slbt/slb/slbt-slb-pub"
PEM_CRT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PEM_KEY = "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


FILES = f"""\
apiVersion: acknet.io/v1
kind: VPC
metadata: {{name: vpc}}
spec: {{cidrBlock: 192.168.0.0/16}}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {{name: node-h}}
spec: {{vpc: vpc, cidrBlock: 192.168.0.0/24, zoneId: cn-hangzhou-h}}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {{name: pod-h}}
spec: {{vpc: vpc, cidrBlock: 192.168.32.0/20, zoneId: cn-hangzhou-h}}
---
apiVersion: acknet.io/v1
kind: SecurityGroup
metadata: {{name: sg}}
spec: {{vpc: vpc}}
---
apiVersion: acknet.io/v1
kind: ECSInstance
metadata: {{name: web-1}}
spec: {{vswitch: node-h, securityGroups: [sg], privateIpAddress: 192.168.0.11}}
---
apiVersion: acknet.io/v1
kind: ECSInstance
metadata: {{name: web-2}}
spec: {{vswitch: node-h, securityGroups: [sg], privateIpAddress: 192.168.0.12}}
---
apiVersion: acknet.io/v1
kind: ECSInstance
metadata: {{name: web-3}}
spec: {{vswitch: node-h, securityGroups: [sg], privateIpAddress: 192.168.0.13}}
---
apiVersion: acknet.io/v1
kind: Cluster
metadata: {{name: ack}}
spec:
  vpc: vpc
  podVSwitches: [pod-h]
  addons: []
  nodePools: [{{name: default, vswitches: [node-h], count: 1}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: tls, namespace: default}}
type: kubernetes.io/tls
data: {{tls.crt: {_b64(PEM_CRT)}, tls.key: {_b64(PEM_KEY)}}}
---
apiVersion: acknet.io/v1
kind: LoadBalancer
metadata: {{name: pub}}
spec:
  addressType: internet
  address: 198.51.100.10
  backendServers: [{{ecs: web-1, weight: 75}}, {{ecs: web-2, weight: 25}}, {{ecs: web-3, weight: 0}}]
  listeners:
  - {{protocol: http, listenerPort: 80, backendServerPort: 8080}}
  - {{protocol: https, listenerPort: 443, backendServerPort: 8080, scheduler: rr, certificate: {{secret: default/tls}}}}
  - {{protocol: http, listenerPort: 81, backendServerPort: 8080, scheduler: wlc,
     acl: {{type: white, entries: [203.0.113.0/25]}}, connectionRateLimit: 50}}
  - {{protocol: tcp, listenerPort: 82, backendServerPort: 8080}}
  - {{protocol: http, listenerPort: 83, backendServerPort: 8080, stickySession: "on", stickySessionType: insert,
     cookieTimeout: 1800}}
  - {{protocol: http, listenerPort: 84, backendServerPort: 8080, scheduler: wlc, stickySession: "on",
     stickySessionType: server, cookie: session_id}}
"""


@pytest.fixture(scope="module")
def planned() -> Plan:
    result = load_resources([Source("l7.yaml", FILES)])
    assert not result.errors, "\n".join(str(d) for d in result.errors)
    return plan(result.resources)


def pub(p: Plan) -> PlannedLoadBalancer:
    return next(lb for lb in p.load_balancers if lb.name == "pub")


def render(p: Plan, unhealthy: dict[str, set[tuple[str, int]]] | None = None) -> slb_l7.ProxyConfig:
    config = slb_l7.render_proxy(p, pub(p), "slbt-slb-pub", FOLDER, unhealthy)
    assert config is not None
    return config


def test_golden(planned: Plan) -> None:
    text = render(planned).conf
    path = GOLDEN / "slb_proxy_pub.conf"
    if os.environ.get("ACKNET_UPDATE_GOLDEN"):
        path.write_text(text)
    expected = path.read_text()
    diff = "".join(
        difflib.unified_diff(expected.splitlines(True), text.splitlines(True), "golden", "rendered")
    )
    assert text == expected, diff


def test_schedulers_weights_xff_and_the_source_address(planned: Plan) -> None:
    config = render(planned)
    text = config.conf
    lb = pub(planned)
    # wrr: the weights; weight 0 left out (no new requests).
    assert "  upstream http_80 {\n    server 192.168.0.11:8080 weight=75 max_fails=0;\n" in text
    assert "192.168.0.13" not in text
    # rr: no weights; wlc: least_conn with weights.
    assert "  upstream https_443 {\n    server 192.168.0.11:8080 max_fails=0;\n" in text
    assert "  upstream http_81 {\n    least_conn;\n    server 192.168.0.11:8080 weight=75" in text
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in text
    assert f"proxy_bind {lb.health_source};" in text and str(lb.health_source).startswith("100.")
    # Only layer 7 here; the TCP listener is the kernel's.
    assert ":82" not in text
    # Every path under the instance's folder.
    for directive in ("pid", "lock_file", "error_log", "proxy_temp_path", "client_body_temp_path"):
        line = next(li for li in text.splitlines() if li.strip().startswith(directive + " "))
        assert FOLDER in line, line


def test_tls_with_the_secrets_certificate(planned: Plan) -> None:
    config = render(planned)
    assert f"    listen 198.51.100.10:443 ssl;\n    ssl_certificate {FOLDER}/https_443.crt;" in config.conf
    assert dict(config.files) == {"https_443.crt": PEM_CRT, "https_443.key": PEM_KEY}
    # A certificate that cannot be read leaves that listener out, not the others.
    lb = pub(planned)
    broken = dataclasses.replace(
        lb,
        listeners=tuple(dataclasses.replace(li, certificate="default/nope") for li in lb.listeners),
    )
    other = slb_l7.render_proxy(planned, broken, "n", FOLDER)
    assert other is not None and ":443" not in other.conf and ":80;" in other.conf and not other.files


def test_health_edits_the_upstreams_and_none_left_answers_503(planned: Plan) -> None:
    one_down = render(planned, {"http/80": {("192.168.0.12", 8080)}}).conf
    http80 = one_down.split("upstream http_80 {", 1)[1].split("}", 1)[0]
    assert "192.168.0.11" in http80 and "192.168.0.12" not in http80
    assert (
        "upstream https_443 {\n    server 192.168.0.11:8080 max_fails=0;\n    server 192.168.0.12" in one_down
    )
    all_down = render(planned, {"http/80": {("192.168.0.11", 8080), ("192.168.0.12", 8080)}}).conf
    assert "upstream http_80" not in all_down
    server80 = all_down.split("listen 198.51.100.10:80;", 1)[1].split("  }", 1)[0]
    assert "return 503 " in server80
    assert render(planned) == render(planned)  # deterministic


def test_no_layer7_listener_no_proxy(planned: Plan) -> None:
    lb = pub(planned)
    tcp_only = dataclasses.replace(lb, listeners=tuple(li for li in lb.listeners if li.protocol == "tcp"))
    assert slb_l7.render_proxy(planned, tcp_only, "n", FOLDER) is None


def _id(ip: str) -> str:
    return slb_l7.server_id(SlbBackend(f"ecs/{ip}", IPv4Address(ip), 8080, 100))


ID_11, ID_12 = _id("192.168.0.11"), _id("192.168.0.12")  # the id hashes address and port only


def block(text: str, head: str) -> str:
    return text.split(head, 1)[1].split("\n  }", 1)[0]


def test_sticky_insert_maps_the_cookie_to_the_backend_and_sets_it_on_scheduled_responses(
    planned: Plan,
) -> None:
    text = render(planned).conf
    assert "sticky sessions: insert cookie SERVERID for 1800 s" in text
    # A known SERVERID goes straight to its backend; anything else to the upstream and its scheduler.
    route = block(text, "  map ${cookie_SERVERID} $sticky_http_83 {")
    assert route.split("\n")[1:] == [
        "    default http_83;",
        f"    {ID_11} 192.168.0.11:8080;",
        f"    {ID_12} 192.168.0.12:8080;",
    ]
    # The cookie is set only when the upstream chose (not when a cookie already routed the request).
    cookie = block(text, '  map "$sticky_http_83|$upstream_addr" $sticky_cookie_http_83 {')
    assert f'"http_83|192.168.0.11:8080" "SERVERID={ID_11}; Max-Age=1800; Path=/";' in cookie
    assert (
        "location / { proxy_pass http://$sticky_http_83; add_header Set-Cookie $sticky_cookie_http_83 always; }"
        in text
    )
    # Ids are stable across renders and distinct per backend; weight 0 gets none.
    assert len({ID_11, ID_12}) == 2 and "192.168.0.13" not in text


def test_sticky_server_rewrites_the_backends_cookie(planned: Plan) -> None:
    text = render(planned).conf
    assert "sticky sessions: rewrite the backend's cookie session_id" in text
    assert '  map ${upstream_cookie_session_id} $sticky_set_http_84 {\n    "" 0;\n    default 1;\n  }' in text
    route = block(text, "  map ${cookie_session_id} $sticky_http_84 {")
    assert f"    {ID_12} 192.168.0.12:8080;" in route and "    default http_84;" in route
    cookie = block(text, '  map "$sticky_set_http_84|$upstream_addr" $sticky_cookie_http_84 {')
    assert f'"1|192.168.0.12:8080" "session_id={ID_12}; Path=/";' in cookie
    # The scheduler still decides for requests without a valid id: wlc is least_conn.
    assert "  upstream http_84 {\n    least_conn;" in text


@pytest.mark.parametrize("port", [83, 84], ids=["insert", "server"])
def test_an_unhealthy_sticky_backend_leaves_the_map(planned: Plan, port: int) -> None:
    text = render(planned, {f"http/{port}": {("192.168.0.11", 8080)}}).conf
    heads = [h for h in text.splitlines() if h.startswith("  map ") and f"_http_{port} {{" in h]
    maps = "".join(block(text, h) for h in heads)
    # Its id no longer routes: the session goes to the scheduler, which has only healthy backends.
    assert ID_11 not in maps and "192.168.0.11" not in block(text, f"upstream http_{port} {{")
    assert ID_12 in maps
