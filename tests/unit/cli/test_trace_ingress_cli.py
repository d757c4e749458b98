"""``acknet trace SRC URL`` and ``acknet check --to ingress/NS/NAME`` on the command line (examples/shop)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from acknet.cli.check import run_check
from acknet.cli.trace import run_trace

REPO = Path(__file__).resolve().parents[3]
SHOP = str(REPO / "examples" / "shop")


def test_trace_url_text_shows_the_route(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_trace([SHOP], None, None, "internet", "https://shop.example.com/api") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "internet -> https://shop.example.com/api 443/TCP"
    routed = [line for line in lines if "ingress controller kube-system/nginx-ingress-controller-" in line]
    assert routed and all(
        "route to svc/shop/api:9090" in line and "rule 1 host shop.example.com path /api (Prefix)" in line
        for line in routed
    )
    assert lines[-1] == "verdict: allowed (4 of 4 paths pass)"


def test_trace_url_json_is_one_design_trace(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_trace([SHOP], None, None, "internet", "http://shop.example.com/api", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "dropped" and data["port"] == 80
    assert all(set(h) >= {"at", "object", "rule", "action"} for h in data["hops"])
    redirects = [h for h in data["hops"] if h["action"] == "redirect 308"]
    assert redirects and all(h["object"] == "Ingress shop/shop" for h in redirects)
    assert any("ssl-redirect" in s["change"] for s in data["suggestions"])


def test_check_to_an_ingress(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_check([SHOP], ["internet"], ["ingress/shop/shop"], None, "json") == 0
    (verdict,) = json.loads(capsys.readouterr().out)["verdicts"]
    assert (verdict["to"], verdict["port"], verdict["allowed"]) == ("ingress/shop/shop", 443, True)
    assert any("Ingress shop/shop rule 1 host shop.example.com path /api" in r for r in verdict["reasons"])
    assert run_check([SHOP], ["internet"], ["ingress"], None, "matrix") == 0
    assert "internet -> ingress/shop/shop 443/TCP: allowed" in capsys.readouterr().out
