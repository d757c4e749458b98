"""``acknet check -f NEW --against OLD``: the verdicts a change changes, and exit 2 when there are any."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from acknet.cli.against import changes, run_against, verdicts_of
from acknet.cli.main import app

REPO = Path(__file__).resolve().parents[3]
SHOP = REPO / "examples" / "shop"


@pytest.fixture
def shop_changed(tmp_path: Path) -> Path:
    """The shop with the database's cluster-sg accept moved behind its priority-10 drop."""
    new = tmp_path / "shop"
    shutil.copytree(SHOP, new)
    db = new / "database.yaml"
    text = db.read_text()
    old = "policy: accept, priority: 1, ipProtocol: tcp, portRange: 3306/3306, sourceGroupId: cluster-sg"
    assert old in text
    db.write_text(text.replace(old, old.replace("priority: 1,", "priority: 20,")))
    return new


def test_same_files_change_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_against([str(SHOP)], [str(SHOP)], None, None, None, "json") == 0
    assert json.loads(capsys.readouterr().out) == {"changes": []}
    assert run_against([str(SHOP)], [str(SHOP)], None, ["ecs/db-1"], None) == 0
    assert "no verdict changes" in capsys.readouterr().out


def test_a_changed_rule_changes_verdicts_and_exits_2(
    shop_changed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_against([str(SHOP)], [str(shop_changed)], None, None, None, "json") == 2
    found = json.loads(capsys.readouterr().out)["changes"]
    assert found, "the database should now refuse the cluster"
    assert {(c["to"], c["port"], c["protocol"], c["before"], c["after"]) for c in found} == {
        ("ecs/db-1", 3306, "TCP", "allowed", "denied")
    }
    assert "ops/monitor" not in {c["from"] for c in found}  # denied before and after (a GlobalNetworkPolicy)
    assert all("db-sg ingress rule 2 priority 10 (drop) drops" in c["why"] for c in found)


def test_table_and_selection(shop_changed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_against([str(SHOP)], [str(shop_changed)], ["app=web"], ["ecs/db-1"], ["3306"]) == 2
    text = capsys.readouterr().out
    for header in ("FROM", "TO", "PORT", "BEFORE", "AFTER"):
        assert header in text
    assert text.count("allowed  denied") == 3  # the three web replicas
    # The bastion was refused by the database before and still is: no change to report.
    assert run_against([str(SHOP)], [str(shop_changed)], ["ecs/bastion"], ["ecs/db-1"], None) == 0


def test_verdicts_that_appear_or_go(tmp_path: Path) -> None:
    new = tmp_path / "shop"
    shutil.copytree(SHOP, new)
    (new / "extra.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: extra, namespace: ops, labels: {app: extra}}\n"
        "spec:\n  containers:\n  - name: main\n    ports: [{containerPort: 5000}]\n"
    )
    before = verdicts_of([str(SHOP)], ["ecs/bastion"], None, None)
    after = verdicts_of([str(new)], ["ecs/bastion"], None, None)
    found = changes(before, after)
    assert [(c.destination, c.port, c.before) for c in found] == [("ops/extra", 5000, "absent")]
    assert found[0].after in ("allowed", "denied")
    assert [(c.destination, c.after) for c in changes(after, before)] == [("ops/extra", "absent")]


def test_bad_input_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_against([str(SHOP)], [str(SHOP)], None, ["ecs/nope"], None) == 1
    assert "no ECS instance or node named 'nope'" in capsys.readouterr().err
    assert run_against([str(SHOP)], [str(SHOP)], None, None, ["http"]) == 1


def test_command_line(shop_changed: Path) -> None:
    from typer.testing import CliRunner

    runner = CliRunner()
    result = runner.invoke(
        app, ["check", "-f", str(shop_changed), "--against", str(SHOP), "--to", "ecs/db-1", "-o", "json"]
    )
    assert result.exit_code == 2, result.output
    assert json.loads(result.output)["changes"]
    result = runner.invoke(app, ["check", "-f", str(SHOP), "--against", str(SHOP), "--to", "ecs/db-1"])
    assert result.exit_code == 0, result.output
