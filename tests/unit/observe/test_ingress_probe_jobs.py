"""What ``acknet probe`` sends for an Ingress destination (``daemon.engine.probe_jobs``): real HTTP(S)
requests to nginx-ingress-lb's VIP, one set per sample request of the port's scheme, expecting the pods
the files route each request to; and a URL (``trace --live SRC URL``) as that one request.

examples/shop, planned from its files; no namespace is built.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from acknet.analysis.reachability import ATTEMPTS_PER_BACKEND
from acknet.controllers.plan import plan
from acknet.controllers.state import Plan
from acknet.daemon.engine import (
    PROXY_CONNECT_TIMEOUT,
    PROXY_NEXT_UPSTREAM_TRIES,
    SLB_PROBE_TIMEOUT,
    probe_jobs,
)
from acknet.dataplane.render.ingress import render_ingress
from acknet.model.build import build_resources
from acknet.model.documents import Source
from acknet.store.files import read_sources

SHOP = Path(__file__).resolve().parents[3] / "examples" / "shop"
WHITELIST = "nginx.ingress.kubernetes.io/whitelist-source-range"


def shop(edit: str | None = None) -> Plan:
    """The shop's Plan; ``edit`` is inserted under the Ingress's metadata (annotations)."""
    sources = read_sources([str(SHOP)])
    if edit is not None:
        anchor = "  name: shop\n  namespace: shop\nspec:\n  ingressClassName: nginx\n"
        edited = anchor.replace("spec:\n", edit + "spec:\n")
        changed = [Source(s.name, s.text.replace(anchor, edited)) for s in sources]
        assert changed != sources, "the shop's Ingress changed its layout"
        sources = changed
    return plan(build_resources(sources))


@pytest.fixture(scope="module")
def planned() -> Plan:
    return shop()


def vip(p: Plan) -> str:
    return next(
        str(lb.address) for lb in p.load_balancers if lb.service == "ack/kube-system/nginx-ingress-lb"
    )


def upstream(p: Plan, app: str, port: int) -> tuple[str, ...]:
    ips = sorted(pod.ip for pod in p.pods if pod.labels.get("app") == app and pod.ip is not None)
    return tuple(f"{ip}:{port}" for ip in ips)


def test_https_requests_per_rule_to_the_vip_expecting_the_rules_pods(planned: Plan) -> None:
    jobs = probe_jobs("t", planned, ["internet"], ["ingress/shop/shop"], None)
    assert {(j.netns, j.ip, j.port, j.verdict_port, j.protocol) for j in jobs} == {
        ("t-internet", vip(planned), 443, 443, "TCP")
    }
    assert all(
        j.ingress and j.tls and j.host == "shop.example.com" and j.target == "ingress/shop/shop" for j in jobs
    )
    web, api = upstream(planned, "web", 8080), upstream(planned, "api", 9090)
    assert len(web) == 3 and len(api) == 2
    assert Counter((j.path, j.backends) for j in jobs) == {
        ("/", web): ATTEMPTS_PER_BACKEND * 3,
        ("/api", api): ATTEMPTS_PER_BACKEND * 2,
    }
    # The connection to the VIP as for an SLB; the reply may wait for NGINX to try every upstream (up to
    # proxy_next_upstream_tries), proxy_connect_timeout each, to see its 504 (TLS doubles the SLB's part).
    by_path = {j.path: j for j in jobs}
    assert {j.timeout for j in jobs} == {SLB_PROBE_TIMEOUT}
    assert by_path["/"].reply_timeout == 2 * SLB_PROBE_TIMEOUT + 3 * PROXY_CONNECT_TIMEOUT
    assert by_path["/api"].reply_timeout == 2 * SLB_PROBE_TIMEOUT + 2 * PROXY_CONNECT_TIMEOUT


def test_plain_http_to_a_tls_only_ingress_expects_no_backend(planned: Plan) -> None:
    """ssl-redirect: NGINX answers 308 itself, so no reply counts (check: denied on 80)."""
    jobs = probe_jobs("t", planned, ["internet"], ["ingress/shop/shop"], ["80"])
    assert {(j.port, j.tls, j.path, j.backends) for j in jobs} == {
        (80, False, "/", ()),
        (80, False, "/api", ()),
    }


def test_a_url_is_that_one_request(planned: Plan) -> None:
    url = "https://shop.example.com/api/items"
    jobs = probe_jobs("t", planned, ["ecs/db-1"], [url], ["443"])
    assert {(j.target, j.host, j.path, j.tls, j.backends) for j in jobs} == {
        (url, "shop.example.com", "/api/items", True, upstream(planned, "api", 9090))
    }
    nowhere = probe_jobs("t", planned, ["ecs/db-1"], ["https://nope.example.com/"], ["443"])
    assert {(j.target, j.backends) for j in nowhere} == {("https://nope.example.com/", ())}  # NGINX's 404
    both = probe_jobs("t", planned, ["ecs/db-1"], [url, "ecs/bastion"], ["443"])
    assert {j.target for j in both} == {url, "ecs/bastion"}


@pytest.mark.parametrize(
    ("ranges", "expected"),
    [
        pytest.param("203.0.113.0/24", True, id="internet-client-in-the-range"),
        pytest.param("192.168.0.0/16", False, id="internet-client-refused-403"),
    ],
)
def test_whitelist_judged_on_the_address_nginx_sees(ranges: str, expected: bool) -> None:
    """nginx-ingress-lb: layer-4 listeners and externalTrafficPolicy Local, so NGINX sees the Internet
    client's own address."""
    p = shop(f"  annotations:\n    {WHITELIST}: {ranges}\n")
    jobs = probe_jobs("t", p, ["internet"], ["ingress/shop/shop"], None)
    assert {bool(j.backends) for j in jobs} == {expected}


def test_the_timeouts_are_those_acknet_gives_nginx(planned: Plan) -> None:
    text = render_ingress(planned, "ack").text
    assert f"proxy_connect_timeout {PROXY_CONNECT_TIMEOUT:g}s;" in text
    assert "proxy_next_upstream error timeout;" in text
    assert f"proxy_next_upstream_tries {PROXY_NEXT_UPSTREAM_TRIES};" in text
    assert "max_fails=0" in text  # no server is skipped for having failed: each request tries anew


CANARY = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: shop-canary
  namespace: shop
  annotations:
    nginx.ingress.kubernetes.io/canary: "true"
    nginx.ingress.kubernetes.io/canary-by-header: X-Canary
spec:
  ingressClassName: nginx
  tls: [{hosts: [shop.example.com], secretName: shop-tls}]
  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: /api, pathType: Prefix, backend: {service: {name: cart, port: {number: 7070}}}}
"""


def test_a_canary_ingress_is_asked_for_by_its_header() -> None:
    """canary-by-header: the canary's requests carry the header (``always``), so NGINX takes the
    canary's backend (cart here) instead of the main Ingress's."""
    p = plan(build_resources([*read_sources([str(SHOP)]), Source("canary.yaml", CANARY)]))
    jobs = probe_jobs("t", p, ["internet"], ["ingress/shop/shop-canary"], None)
    assert {(j.path, j.headers, j.backends) for j in jobs} == {
        ("/api", (("X-Canary", "always"),), upstream(p, "cart", 7070))
    }
