"""``acknet trace`` (``run_trace``): the text for people, the JSON of DESIGN.md, the arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from acknet.cli.main import app
from acknet.cli.trace import run_trace

REPO = Path(__file__).resolve().parents[3]
SHOP = str(REPO / "examples" / "shop")
QUICKSTART = str(REPO / "examples" / "quickstart")


def test_text_one_hop_per_line_then_verdict_and_change(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_trace([SHOP], None, None, "ecs/bastion", "ecs/db-1:3306") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "ecs/bastion -> ecs/db-1 3306/TCP"
    hops = lines[1:4]
    assert hops[0].split()[:4] == ["1", "accept", "ecs/bastion", "eth0"]
    assert "security group bastion-sg" in hops[0] and "egress rule 2" in hops[0]
    assert hops[1].split()[:2] == ["2", "forward"] and "VPC prod" in hops[1]
    assert hops[2].split()[:2] == ["3", "drop"] and "security group db-sg" in hops[2]
    assert "ingress rule 2" in hops[2] and "priority 10 (drop) drops" in hops[2]
    assert lines[4] == "verdict: dropped: drop at ecs/db-1 eth0 by security group db-sg ingress rule 2"
    assert lines[5] == "to change it:"
    assert lines[6].startswith(
        "  - add to security group db-sg: ingress accept tcp 3306 from 192.168.0.1/32 priority 9"
    )
    assert "sourceCidrIp: 192.168.0.1/32" in lines[7]


def test_json_is_one_design_trace(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_trace([SHOP], None, None, "ecs/bastion", "ecs/db-1:3306/tcp", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "dropped"
    assert [(h["at"], h["object"], h["rule"], h["action"]) for h in data["hops"]] == [
        ("ecs/bastion eth0", "security group bastion-sg", "egress rule 2", "accept"),
        ("VPC prod", "VPC", None, "forward"),
        ("ecs/db-1 eth0", "security group db-sg", "ingress rule 2", "drop"),
    ]
    (suggestion,) = data["suggestions"]
    assert suggestion["snippet"]["priority"] == 9


def test_every_declared_port_without_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_trace([SHOP], None, None, "ops/monitor", "k8s-app=kube-dns,pod-template-hash!=x") == 1
    assert "names 2 endpoints" in capsys.readouterr().err
    assert run_trace([SHOP], None, None, "ops/monitor", "svc/kube-system/kube-dns") == 0
    text = capsys.readouterr().out
    assert "53/UDP" in text and "53/TCP" in text and "9153/TCP" in text
    assert text.count("verdict: ") == 3


def test_json_needs_a_port_when_there_are_several(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_trace([SHOP], None, None, "ops/monitor", "svc/kube-system/kube-dns", "json") == 1
    assert "give DST:PORT" in capsys.readouterr().err
    assert run_trace([SHOP], None, None, "ops/monitor", "svc/kube-system/kube-dns:53/udp", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "allowed" and data["protocol"] == "UDP"
    assert {b["verdict"] for b in data["branches"]} == {"allowed"}
    assert all(h["branch"] for h in data["hops"][1:])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([SHOP], "e2e", None, False), "not both"),
        (([], None, Path("/nonexistent/acknet-state"), False), "is not running"),  # the default emulation
        (([SHOP], None, None, True), "--live"),
    ],
    ids=["files-and-name", "neither", "live-without-name"],
)
def test_argument_errors(
    args: tuple[list[str], str | None, Path | None, bool], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    paths, name, state, live = args
    assert run_trace(paths, name, state, "ops/monitor", "ecs/db-1", live=live) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("src", "dst", "message"),
    [
        ("ops/monitor", "ops/monitor:80", "same endpoint"),
        ("ops/nobody", "ecs/db-1", "no pod named"),
        ("ops/monitor", "ecs/db-1:http", "expected DST[:PORT[/PROTO]]"),
        ("svc/shop/web", "ecs/db-1", "destination only"),
    ],
    ids=["self", "unknown", "bad-port", "service-source"],
)
def test_endpoint_errors(src: str, dst: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_trace([SHOP], None, None, src, dst) == 1
    assert message in capsys.readouterr().err


def test_command_line() -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["trace", "-f", SHOP, "ops/monitor", "svc/shop/web:80", "-o", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["verdict"] == "allowed" and data["to"] == "svc/shop/web"
    assert data["hops"][0]["object"] == "kube-proxy"


def test_help_documents_the_json_choice() -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["trace", "--help"])
    assert result.exit_code == 0
    assert "needs :PORT" in " ".join(result.output.split())


def test_every_blocker_on_the_way_in_steps(capsys: pytest.CaptureFixture[str]) -> None:
    # The VPC has no route to a ClusterIP: the database can only be told to use a NodePort.
    assert run_trace([SHOP], None, None, "ecs/db-1", "svc/shop/cart:7070") == 0
    text = capsys.readouterr().out
    assert "verdict: dropped (0 of 2 paths pass)" not in text  # the VPC cannot reach a ClusterIP at all
    assert "type NodePort" in text
    from acknet.analysis.trace import Tracer
    from acknet.cli.trace import load_plan

    # To a cart pod it meets the node's group first, then the cart's policies.
    cart = next(n for n in Tracer(load_plan([SHOP], None, None)).index.pods if n.startswith("shop/cart-"))
    assert run_trace([SHOP], None, None, "ecs/db-1", f"{cart}:7070") == 0
    text = capsys.readouterr().out
    _, _, rest = text.partition("to change it:\n")
    assert (
        "  - add to security group cluster-sg: ingress accept tcp 7070 from 192.168.8.10/32 priority 1"
        in rest
    )
    assert "then, with that changed, step 2:\n  - NetworkPolicy shop/allow-cart-from-api" in rest
    assert run_trace([SHOP], None, None, "ecs/db-1", f"{cart}:7070", "json") == 0
    steps = [s["step"] for s in json.loads(capsys.readouterr().out)["suggestions"]]
    assert steps == [1, 2]
