"""The command line contract of DESIGN.md for validate and plan: exit codes, messages, JSON shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from acknet.cli.main import app

REPO = Path(__file__).resolve().parents[3]
runner = CliRunner()


@pytest.mark.parametrize("example", ["shop", "quickstart"])
def test_examples_validate(example: str) -> None:
    result = runner.invoke(app, ["validate", "-f", str(REPO / "examples" / example)])
    assert result.exit_code == 0, result.output
    assert "valid:" in result.output


def test_broken_file_lists_every_error_and_exits_1(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "apiVersion: acknet.io/v1\nkind: VPC\nmetadata: {name: prod}\nspec: {cidrBlock: 8.8.0.0/16}\n---\n"
        "apiVersion: acknet.io/v1\nkind: SecurityGroup\nmetadata: {name: sg}\nspec:\n  vpc: prod\n  rules:\n"
        "  - {direction: ingress, priority: 101, ipProtocol: tcp, portRange: 80/80, sourceGroupId: nope}\n"
    )
    result = runner.invoke(app, ["validate", "-f", str(broken)])
    assert result.exit_code == 1
    text = result.output
    assert f"{broken}:4 (document 1): VPC/prod: spec.cidrBlock:" in text
    assert "SecurityGroup/sg: spec.rules[0].priority: 101 is outside 1-100" in text
    assert "SecurityGroup/sg: spec.rules[0].sourceGroupId: SecurityGroup 'nope' does not exist" in text
    assert "nothing was applied" in text


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", "-f", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "no such file or folder" in result.output


def test_stdin_is_read_with_dash() -> None:
    manifest = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\n"
    result = runner.invoke(app, ["plan", "-f", "-", "-o", "json"], input=manifest)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [(p["namespace"], p["name"]) for p in data["pods"] if p["namespace"] != "kube-system"] == [
        ("default", "p")
    ]


def test_plan_json_shape_for_the_shop() -> None:
    result = runner.invoke(app, ["plan", "-f", str(REPO / "examples" / "shop"), "-o", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert {"vpcs", "vswitches", "nodes", "pods", "services", "routes"} <= data.keys()
    for pod in data["pods"]:
        assert {"namespace", "name", "node", "ip"} <= pod.keys()
    web = [p for p in data["pods"] if p["namespace"] == "shop" and p["name"].startswith("web-")]
    assert len(web) == 3 and all(p["ip"] and p["node"] for p in web)
    pod_vswitch_cidrs = [v["cidrBlock"] for v in data["vswitches"] if v["name"] in ("pod-h", "pod-i")]
    assert pod_vswitch_cidrs
    dns = next(s for s in data["services"] if s["namespace"] == "kube-system" and s["name"] == "kube-dns")
    assert dns["clusterIP"] == "172.21.0.10"
    nodeport = next(s for s in data["services"] if s["name"] == "web-nodeport")
    assert nodeport["ports"][0]["nodePort"] == 30080


def test_plan_table_names_nodes_pods_and_services() -> None:
    result = runner.invoke(app, ["plan", "-f", str(REPO / "examples" / "quickstart")])
    assert result.exit_code == 0, result.output
    for heading in ("VSwitches", "Nodes", "Pods", "Services", "EndpointSlices"):
        assert heading in result.output
    assert "frontend-" in result.output
