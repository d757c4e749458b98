"""Terway's ``terway-masq`` table: only on exclusive-ENI nodes, and valid nft (checked in a throwaway
namespace when root)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from acknet.controllers.plan import plan
from acknet.dataplane.render.terway import TABLE_NAME, render_terway_masq, replace_script
from acknet.model.build import build_resources
from acknet.store.files import read_sources

SHOP = Path(__file__).resolve().parents[3] / "examples" / "shop"


@pytest.fixture(scope="module")
def tables() -> dict[str, str]:
    return render_terway_masq(plan(build_resources(read_sources([str(SHOP)]))))


def test_only_the_exclusive_pool_nodes_masquerade(tables: dict[str, str]) -> None:
    shop = plan(build_resources(read_sources([str(SHOP)])))
    exclusive = {i.name for i in shop.instances if i.is_node and i.eni_mode == "exclusive"}
    assert exclusive, "the shop has an exclusive-ENI pool"
    assert set(tables) == exclusive


def test_everything_but_loopback_is_masqueraded(tables: dict[str, str]) -> None:
    text = next(iter(tables.values()))
    assert f"table ip {TABLE_NAME}" in text
    assert "type nat hook postrouting priority srcnat" in text
    assert 'oifname != "lo" jump terway-masq' in text
    assert "\t\tmasquerade\n" in text


def test_nft_accepts_the_table(tables: dict[str, str]) -> None:
    if os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("ip") is None:
        pytest.skip("needs root, nft and ip to check the syntax in a throwaway network namespace")
    name = "twt" + secrets.token_hex(4)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        text = next(iter(tables.values()))
        result = subprocess.run(
            ["ip", "netns", "exec", name, "nft", "-f", "-"],
            input=replace_script(text) + replace_script(text),  # loads twice: replaceable
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)
