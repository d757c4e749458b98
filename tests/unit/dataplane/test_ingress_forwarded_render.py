"""nginx.conf with the controller's ConfigMap (kube-system/nginx-configuration): use-forwarded-headers,
compute-full-forwarded-for and proxy-real-ip-cidr as ingress-nginx's nginx.tmpl and lua_ingress.lua have
them. Without the ConfigMap, or with the options off, the text is the one of ingress_shop.conf.

Regenerate the golden file with ``ACKNET_UPDATE_GOLDEN=1 pytest
tests/unit/dataplane/test_ingress_forwarded_render.py`` and review the diff.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from acknet.controllers.plan import plan
from acknet.dataplane.render.ingress import render_ingress
from acknet.model.build import build_resources
from acknet.model.documents import Source
from acknet.store.files import read_sources

REPO = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).parent / "golden"


def shop_with(data: str | None) -> str:
    sources = read_sources([str(REPO / "examples" / "shop")])
    if data is not None:
        doc = f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: nginx-configuration, namespace: kube-system}}\ndata: {data}\n"
        sources = [*sources, Source("nginx-configuration.yaml", doc)]
    return render_ingress(plan(build_resources(sources)), "ack").text


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


def test_forwarded_headers_golden() -> None:
    text = shop_with(
        '{use-forwarded-headers: "true", compute-full-forwarded-for: "true", '
        'proxy-real-ip-cidr: "192.168.0.0/16,100.64.0.0/10"}'
    )
    check_golden("ingress_shop_forwarded.conf", text)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(None, id="no-configmap"),
        pytest.param('{use-forwarded-headers: "false"}', id="off"),
        pytest.param(
            '{compute-full-forwarded-for: "true", proxy-real-ip-cidr: "10.0.0.0/8"}', id="inert-alone"
        ),
    ],
)
def test_without_use_forwarded_headers_the_text_is_the_default(data: str | None) -> None:
    assert shop_with(data) == (GOLDEN / "ingress_shop.conf").read_text()


def test_what_use_forwarded_headers_changes() -> None:
    plain = shop_with(None).splitlines()
    forwarded = shop_with('{use-forwarded-headers: "true"}').splitlines()
    removed = [line[2:].strip() for line in difflib.ndiff(plain, forwarded) if line.startswith("- ")]
    added = {line[2:].strip() for line in difflib.ndiff(plain, forwarded) if line.startswith("+ ")}
    # The redirect: X-Forwarded-Proto decides it, the first X-Forwarded-Host without its port names it.
    assert 'map "$pass_access_scheme:$request_uri" $redirect_to_https {' in added
    assert "return 308 https://$redirect_host$redirect_uri;" in added
    assert not any("https://$host" in line for line in forwarded)
    # The backend hears what the proxy in front said; the client comes from X-Forwarded-For, trusted
    # from anywhere by default (proxy-real-ip-cidr 0.0.0.0/0), and is passed on alone.
    assert {
        "proxy_set_header Host $best_http_host;",
        "proxy_set_header X-Forwarded-Proto $pass_access_scheme;",
        "real_ip_header X-Forwarded-For;",
        "set_real_ip_from 0.0.0.0/0;",
    } <= added
    assert "    proxy_set_header X-Forwarded-For $remote_addr;" in forwarded
    assert "proxy_set_header Host $http_host;" in removed
    # Nothing else moves: only the http block's head and the redirect lines differ.
    assert all(
        line.startswith(("proxy_set_header", "map ", "# What", "# The HTTPS", "return 308"))
        for line in removed
    ), removed
