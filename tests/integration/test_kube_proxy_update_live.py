"""kube-proxy partial syncs in a real kernel: after ``update_script``, the table equals a fresh load.

For every transition of tests/unit/dataplane/test_kube_proxy_update.py (and a chain of them), one
throwaway namespace ``svc<hex>-upd`` gets the old table loaded whole, then the update; another gets the
new table loaded whole. Both are listed as JSON and compared as sets (the kernel lists chains in the
order they were made, which differs). Nothing runs in the host namespace.
"""

from __future__ import annotations

import importlib.util
import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from acknet.dataplane.apply import nftables
from acknet.dataplane.render.kube_proxy import render_table_data, replace_script, update_script

_spec = importlib.util.spec_from_file_location(
    "kube_proxy_update_cases", Path(__file__).parents[1] / "unit" / "dataplane" / "test_kube_proxy_update.py"
)
assert _spec is not None and _spec.loader is not None
_cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cases)
BASE, TRANSITIONS, proxy_input = _cases.BASE, _cases.TRANSITIONS, _cases.proxy_input

pytestmark = pytest.mark.root


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    prefix = "svc" + secrets.token_hex(3)
    made: list[str] = []
    try:
        for suffix in ("upd", "fresh"):
            subprocess.run(["ip", "netns", "add", f"{prefix}-{suffix}"], check=True)
            made.append(f"{prefix}-{suffix}")
        yield made[0], made[1]
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "delete", ns], check=False)


def listing(netns: str) -> dict[str, Any]:
    out = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "-j", "list", "table", "ip", "kube-proxy"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    chains: dict[str, list[str]] = {}
    sets: dict[str, list[str]] = {}
    for item in json.loads(out)["nftables"]:
        if "chain" in item:
            chains.setdefault(item["chain"]["name"], [])
        elif "rule" in item:
            rule = item["rule"]
            chains.setdefault(rule["chain"], []).append(json.dumps(rule["expr"], sort_keys=True))
        elif "set" in item or "map" in item:
            body = item.get("set") or item["map"]
            sets[body["name"]] = sorted(json.dumps(e, sort_keys=True) for e in body.get("elem", []))
    return {"chains": chains, "sets": sets}


@pytest.mark.parametrize(("change", "present", "absent"), TRANSITIONS)
def test_update_equals_fresh_load(namespaces, change, present, absent) -> None:
    updated, fresh = namespaces
    old = render_table_data(proxy_input(*BASE))
    new = render_table_data(proxy_input(*change(BASE)), previous=old)
    nftables.load_script(updated, replace_script(old.text()), "kube-proxy")
    script = update_script(old, new)
    assert script
    nftables.load_script(updated, script, "kube-proxy")
    nftables.load_script(fresh, replace_script(new.text()), "kube-proxy")
    assert listing(updated) == listing(fresh)

    # And back again.
    nftables.load_script(updated, update_script(new, old) or "", "kube-proxy")
    nftables.load_script(fresh, replace_script(old.text()), "kube-proxy")
    assert listing(updated) == listing(fresh)
