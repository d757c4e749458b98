"""``acknet check`` (``run_check``): the JSON contract of DESIGN.md, the table, and the exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from acknet.cli.check import run_check

REPO = Path(__file__).resolve().parents[3]
SHOP = str(REPO / "examples" / "shop")


def test_json_is_the_design_contract(capsys: pytest.CaptureFixture[str]) -> None:
    code = run_check([SHOP], ["ecs/bastion"], ["ecs/db-1"], ["3306/TCP"], "json")
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data) == ["verdicts"]
    (verdict,) = data["verdicts"]
    assert {k: verdict[k] for k in ("from", "to", "port", "protocol", "allowed")} == {
        "from": "ecs/bastion",
        "to": "ecs/db-1",
        "port": 3306,
        "protocol": "TCP",
        "allowed": False,
    }
    assert verdict["reasons"][-1] == "ingress at ecs/db-1 eth0: db-sg ingress rule 2 priority 10 (drop) drops"


def test_json_for_every_shop_pod_to_the_database(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_check([SHOP], ["pods"], ["ecs/db-1"], [], "json") == 0
    verdicts = json.loads(capsys.readouterr().out)["verdicts"]
    assert len(verdicts) == 13  # 8 shop and ops pods, payments, two CoreDNS and two NGINX Ingress pods
    assert all((v["port"], v["protocol"]) == (3306, "TCP") for v in verdicts)
    # Every shop pod reaches the database; the monitor is kept off it by a GlobalNetworkPolicy.
    assert {v["from"] for v in verdicts if not v["allowed"]} == {"ops/monitor"}


def test_default_endpoints_and_declared_ports(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_check([SHOP], None, None, None, "json") == 0
    verdicts = json.loads(capsys.readouterr().out)["verdicts"]
    names = {v["from"] for v in verdicts} | {v["to"] for v in verdicts}
    assert "ecs/bastion" in names and "ops/monitor" in names
    assert not any(n.startswith("ecs/ack-") for n in names)  # nodes only when asked for
    assert all(v["from"] != v["to"] for v in verdicts)


def test_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_check([SHOP], ["ecs/bastion"], ["ecs/db-1"], ["3306", "22"], "table") == 0
    text = capsys.readouterr().out
    for header in ("FROM", "TO", "PORT", "VERDICT", "WHY"):
        assert header in text
    assert "3306/TCP" in text and "denied" in text
    assert "db-sg ingress rule 2 priority 10 (drop) drops" in text
    assert "nothing listens on 22/TCP at ecs/db-1" in text


@pytest.mark.parametrize(
    ("from_sel", "to_sel", "ports", "message"),
    [
        pytest.param(["shop/nope"], None, None, "--from shop/nope: no pod named", id="unknown-source"),
        pytest.param(["slb/db-slb"], None, None, "an SLB is a destination only", id="slb-source"),
        pytest.param(None, ["internet"], None, "the Internet is a source only", id="internet-destination"),
        pytest.param(["svc/shop/web"], None, None, "a Service is a destination only", id="service-source"),
        pytest.param(
            None, None, ["http"], "--port port 'http': expected PORT or PORT/PROTOCOL", id="bad-port"
        ),
    ],
)
def test_bad_arguments_exit_1(
    capsys: pytest.CaptureFixture[str],
    from_sel: list[str] | None,
    to_sel: list[str] | None,
    ports: list[str] | None,
    message: str,
) -> None:
    assert run_check([SHOP], from_sel, to_sel, ports, "json") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err.replace("\n", " ")


def test_service_destination_prints_partial_and_backends(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_check([SHOP], ["ecs/bastion"], ["svc/shop/web-nodeport", "svc/shop/web"], None, "json") == 0
    verdicts = json.loads(capsys.readouterr().out)["verdicts"]
    assert [(v["to"], v["port"], v["allowed"]) for v in verdicts] == [
        ("svc/shop/web-nodeport", 80, True),
        ("svc/shop/web", 80, False),
    ]
    assert "through NodePort 30080 on each node's primary IP" in verdicts[0]["reasons"][0]
    assert "reachable only from the nodes and pods of cluster ack" in verdicts[1]["reasons"][0]


def test_invalid_files_print_diagnostics_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "apiVersion: acknet.io/v1\nkind: SecurityGroup\nmetadata: {name: sg}\nspec:\n  vpc: nope\n"
    )
    assert run_check([str(broken)], None, None, None, "json") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{broken}" in captured.err and "SecurityGroup/sg" in captured.err


def test_missing_path_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_check([str(tmp_path / "absent")], None, None, None, "table") == 1
    assert "no such file or folder" in capsys.readouterr().err
