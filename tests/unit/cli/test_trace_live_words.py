"""``trace --live`` names what it sent: through an Ingress (a URL, ``ingress/NS/NAME``) HTTP requests,
otherwise a packet."""

from __future__ import annotations

from pathlib import Path

import pytest

from acknet.analysis.trace import Tracer
from acknet.cli.trace import render_text
from acknet.controllers.plan import plan
from acknet.model.build import build_resources
from acknet.store.files import read_sources

SHOP = Path(__file__).resolve().parents[3] / "examples" / "shop"


@pytest.fixture(scope="module")
def tracer() -> Tracer:
    return Tracer(plan(build_resources(read_sources([str(SHOP)]))))


@pytest.mark.parametrize(
    ("dst", "port", "word"),
    [
        ("https://shop.example.com/api", 443, "request"),
        ("ingress/shop/shop", 443, "request"),
        ("ecs/db-1", 3306, "packet"),
    ],
    ids=["url", "ingress", "instance"],
)
def test_the_live_line_names_what_was_sent(tracer: Tracer, dst: str, port: int, word: str) -> None:
    trace = tracer.blocked_path(tracer.source("internet"), tracer.destination(dst), port, "TCP")
    text = render_text(trace, {"verdict": "dropped", "agrees": False})
    assert text.splitlines()[-1] == f"live: a real {word} was dropped: DISAGREES with the trace"
