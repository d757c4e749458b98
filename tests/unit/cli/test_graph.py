"""``acknet graph``: the data it draws (``analysis.graph``, pure) and the page it writes (``cli.graph``).

The page's drawing is tested in a real browser in tests/e2e/test_graph_browser.py; here, what goes in.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from acknet.analysis.endpoints import EndpointIndex
from acknet.analysis.graph import deciding_reason, graph_data, pod_group
from acknet.analysis.reachability import Hop, Reachability, Verdict
from acknet.cli.graph import render_html, run_graph
from acknet.cli.main import app
from acknet.controllers.plan import plan as make_plan
from acknet.controllers.state import Plan, PlannedPod
from acknet.model.build import build_resources
from acknet.store.files import read_sources

REPO = Path(__file__).resolve().parents[3]
SHOP = str(REPO / "examples" / "shop")
QUICKSTART = str(REPO / "examples" / "quickstart")


def _plan(path: str) -> Plan:
    return make_plan(build_resources(read_sources([path])))


def _all_verdicts(planned: Plan) -> tuple[list[Verdict], list[Any]]:
    """What ``acknet graph`` checks without --from/--to: every pod and ECS to them and every Service."""
    index = EndpointIndex.of(planned)
    destinations = [*index.everything(), *index.services.values()]
    return Reachability(planned).check(index.everything(), destinations), destinations


@pytest.fixture(scope="module")
def shop() -> tuple[Plan, list[Verdict], dict[str, Any]]:
    planned = _plan(SHOP)
    verdicts, destinations = _all_verdicts(planned)
    return planned, verdicts, graph_data(planned, verdicts, destinations, "shop")


def _pod_keys(planned: Plan) -> set[str]:
    return {p.key for p in planned.pods if p.node is not None and p.ip is not None}


# -- the topology ---------------------------------------------------------------------------------


def test_topology_nests_vpc_vswitch_instance_pod(shop: tuple[Plan, list[Verdict], dict[str, Any]]) -> None:
    planned, _, data = shop
    (vpc,) = data["topology"]["vpcs"]
    assert (vpc["name"], vpc["cidr"]) == ("prod", "192.168.0.0/16")
    vswitches = {v["name"]: v for v in vpc["vswitches"]}
    assert set(vswitches) == {"data-h", "node-h", "node-i", "pod-h", "pod-i"}
    where = {i["name"]: name for name, v in vswitches.items() for i in v["instances"]}
    assert where["ecs/db-1"] == "data-h" and where["ecs/bastion"] == "node-h"
    assert where["ecs/ack-default-1"] == "node-i"
    # Every running pod sits in exactly one instance box, its node's.
    on = {p["name"]: i["name"] for v in vpc["vswitches"] for i in v["instances"] for p in i["pods"]}
    assert set(on) == _pod_keys(planned)
    for pod in planned.pods:
        assert on[pod.key] == f"ecs/{pod.node}"
    # Terway's pod VSwitches hold ENIs, not instances: drawn empty, with what they hold.
    assert vswitches["pod-h"]["instances"] == [] and vswitches["pod-h"]["used"] > 0


def test_slbs_in_their_vswitch_or_on_the_internet(shop: tuple[Plan, list[Verdict], dict[str, Any]]) -> None:
    _, _, data = shop
    topo = data["topology"]
    in_vswitch = {s["name"]: v["name"] for vpc in topo["vpcs"] for v in vpc["vswitches"] for s in v["slbs"]}
    assert in_vswitch == {"slb/db-slb": "data-h"}
    internet = {s["name"]: s for s in topo["internet"]}
    assert "slb/shop/web-public" in internet
    public = internet["slb/shop/web-public"]
    assert public["addressType"] == "internet" and public["listeners"][0]["listener"].endswith("/80")
    # Where each SLB sends traffic: the instances (or pods, for ENI backends) behind its listeners.
    db_slb = next(s for vpc in topo["vpcs"] for v in vpc["vswitches"] for s in v["slbs"])
    assert db_slb["targets"] == ["ecs/db-1"]
    assert public["targets"] and all(t.startswith("ecs/ack-") for t in public["targets"])  # NodePort backends
    assert {s["name"] for s in topo["services"]} >= {
        "svc/shop/web",
        "svc/shop/api",
        "svc/kube-system/kube-dns",
    }


# -- groups and flows -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("owner", "labels", "group"),
    [
        ("Deployment/web", {"app": "web"}, "shop/web"),
        (None, {"app": "monitor"}, "shop/app=monitor"),
        (None, {"tier": "x"}, "shop/lonely"),
    ],
    ids=["replica-by-deployment", "bare-pod-by-app-label", "bare-pod-by-name"],
)
def test_pod_group(owner: str | None, labels: dict[str, str], group: str) -> None:
    pod = PlannedPod("ack", "shop", "lonely", labels, (), owner=owner)
    assert pod_group(pod) == group


def test_flows_aggregate_replicas_and_keep_the_deciding_rule(
    shop: tuple[Plan, list[Verdict], dict[str, Any]],
) -> None:
    _, verdicts, data = shop
    flows = {(f["from"], f["to"]): f for f in data["flows"]}
    web_api = flows[("shop/web", "shop/api")]
    # 3 web replicas x 2 api replicas, one port: six checks, all open, one edge.
    assert (web_api["pairs"], web_api["total"], web_api["state"]) == (6, 6, "allowed")
    (port,) = web_api["ports"]
    assert port["port"] == "9090/TCP"
    # Said once for the group, not once per replica.
    assert port["reasons"] == [
        "ingress policy: ingress to shop/api allowed by NetworkPolicy shop/allow-api-from-web ingress rule 1"
    ]
    # The bastion reaches none of the pods' ports: no edge; the monitor is kept off the database.
    assert not any(f["from"] == "ecs/bastion" and f["to"].startswith("shop/") for f in data["flows"])
    assert ("ops/app=monitor", "ecs/db-1") not in flows and ("ops/monitor", "ecs/db-1") not in flows
    # Every open verdict is behind exactly one flow, and no flow is made of denied ones only.
    opened = sum(1 for v in verdicts if v.state != "denied")
    assert sum(f["pairs"] for f in data["flows"]) == opened
    assert all(f["pairs"] > 0 for f in data["flows"])
    assert all(f["state"] in ("allowed", "partial") for f in data["flows"])


def test_groups_every_pod_reaches_are_marked_not_drawn(
    shop: tuple[Plan, list[Verdict], dict[str, Any]],
) -> None:
    _, _, data = shop
    opened = set(data["openToPods"])
    # Nothing selects CoreDNS, the ingress controller or the monitor for ingress; payments has an
    # exclusive ENI, which Terway does not police.
    assert {"kube-system/coredns", "svc/kube-system/kube-dns", "ops/app=monitor", "shop/payments"} <= opened
    # What policies and security groups shape stays drawn.
    assert not opened & {"shop/api", "shop/cart", "shop/web", "ecs/db-1", "ecs/bastion", "svc/shop/api"}


def test_every_group_has_a_namespace(shop: tuple[Plan, list[Verdict], dict[str, Any]]) -> None:
    _, _, data = shop
    for flow in data["flows"]:
        assert flow["from"] in data["groups"] and flow["to"] in data["groups"]
    assert data["groups"]["shop/web"] == "shop"
    assert data["groups"]["svc/shop/web"] == "shop Services"
    assert data["groups"]["ecs/db-1"] == "ECS instances"


# -- the matrix -----------------------------------------------------------------------------------


def test_matrix_has_one_cell_per_verdict(shop: tuple[Plan, list[Verdict], dict[str, Any]]) -> None:
    _, verdicts, data = shop
    m = data["matrix"]
    assert len(m["cells"]) == len(verdicts) == data["summary"]["verdicts"]
    positions = {(c["row"], c["col"]) for c in m["cells"]}
    assert len(positions) == len(verdicts)  # no two verdicts in one cell
    states = Counter(c["state"] for c in m["cells"])
    assert {k: data["summary"][k] for k in states} == dict(states)
    assert data["summary"]["partial"] > 0  # the bastion through the Internet-facing SLB's Service
    by_key = {
        (m["rows"][c["row"]]["name"], m["cols"][c["col"]]["name"], m["cols"][c["col"]]["port"]): c
        for c in m["cells"]
    }
    bastion_db = by_key[("ecs/bastion", "ecs/db-1", 3306)]
    assert bastion_db["state"] == "denied"
    assert bastion_db["why"] == "ingress at ecs/db-1 eth0: db-sg ingress rule 2 priority 10 (drop) drops"
    assert bastion_db["reasons"][-1] == bastion_db["why"]
    monitor_db = by_key[("ops/monitor", "ecs/db-1", 3306)]
    assert monitor_db["state"] == "denied"
    web = next(r["name"] for r in m["rows"] if r["name"].startswith("shop/web-"))
    assert by_key[(web, "ecs/db-1", 3306)]["state"] == "allowed"


def test_matrix_order_pods_by_namespace_then_services_then_ecs(
    shop: tuple[Plan, list[Verdict], dict[str, Any]],
) -> None:
    _, _, data = shop
    kinds = [c["kind"] for c in data["matrix"]["cols"]]
    assert kinds == sorted(kinds, key=["pod", "service", "ecs"].index)
    pod_namespaces = [c["namespace"] for c in data["matrix"]["cols"] if c["kind"] == "pod"]
    assert pod_namespaces == sorted(pod_namespaces)
    rows = [r["name"] for r in data["matrix"]["rows"]]
    assert rows[-2:] == ["ecs/bastion", "ecs/db-1"]


def _hop(action: str, reason: str, obj: str = "sg") -> Hop:
    return Hop("at", obj, action, reason)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("verdict", "why"),
    [
        (
            Verdict(
                "a", "b", 80, "TCP", True, (_hop("accept", "egress ok"), _hop("accept", "in", "listener"))
            ),
            "egress ok",
        ),
        (
            Verdict("a", "b", 80, "TCP", False, (_hop("accept", "egress ok"), _hop("drop", "sg drops"))),
            "sg drops",
        ),
        (
            Verdict(
                "a",
                "svc/x/y",
                80,
                "TCP",
                True,
                (_hop("forward", "kube-proxy"), _hop("drop", "policy drops")),
                partial=True,
                backends=(
                    Verdict("a", "x/p", 80, "TCP", True, ()),
                    Verdict("a", "x/q", 80, "TCP", False, ()),
                ),
            ),
            "1/2 backend paths reachable; policy drops",
        ),
    ],
    ids=["allowed-names-the-rule-before-the-listener", "denied-names-the-drop", "service-counts-paths"],
)
def test_deciding_reason(verdict: Verdict, why: str) -> None:
    assert deciding_reason(verdict) == why


# -- the page -------------------------------------------------------------------------------------


def _embedded(page: str) -> dict[str, Any]:
    match = re.search(r"const DATA = (.*?);\n", page)
    assert match is not None
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def test_page_is_self_contained_and_carries_the_data(
    shop: tuple[Plan, list[Verdict], dict[str, Any]],
) -> None:
    _, _, data = shop
    page = render_html(data)
    assert _embedded(page) == json.loads(json.dumps(data))
    # Nothing to fetch: no external script, style sheet, image or font, and a CSP that forbids them.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page and "fetch(" not in page
    assert "default-src 'none'" in page


def test_a_name_cannot_close_the_script() -> None:
    page = render_html({"title": "</script><script>alert(1)</script>"})
    assert "</script><script>alert(1)" not in page
    assert _embedded(page)["title"] == "</script><script>alert(1)</script>"


def test_run_graph_writes_the_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "q.html"
    assert run_graph([QUICKSTART], None, None, None, None, None, str(target)) == 0
    assert f"wrote {target}" in capsys.readouterr().err
    data = _embedded(target.read_text())
    planned = _plan(QUICKSTART)
    verdicts, _ = _all_verdicts(planned)
    assert data["summary"]["verdicts"] == len(verdicts) == len(data["matrix"]["cells"])
    assert data["title"] == f"acknet: {QUICKSTART}"


def test_run_graph_with_selectors_and_ports(tmp_path: Path) -> None:
    target = tmp_path / "g.html"
    code = run_graph(
        [SHOP], None, None, ["ecs/bastion"], ["ecs/db-1", "svc"], ["3306", "80/tcp"], str(target)
    )
    assert code == 0
    m = _embedded(target.read_text())["matrix"]
    assert [r["name"] for r in m["rows"]] == ["ecs/bastion"]
    assert {(c["port"], c["protocol"]) for c in m["cols"]} == {(3306, "TCP"), (80, "TCP")}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([SHOP], "emu", None, None, None), "not both"),
        ((None, None, None, None, None), "is not running"),
        (([SHOP], None, ["nope/nope"], None, None), "no pod named"),
        (([SHOP], None, None, None, ["99999"]), "--port"),
    ],
    ids=["files-and-name", "neither", "unknown-endpoint", "bad-port"],
)
def test_run_graph_bad_input_exits_1(
    args: tuple[Any, ...], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths, name, from_, to, ports = args
    target = tmp_path / "x.html"
    # No daemon at this state folder: "neither" means the default emulation, which is not up here.
    assert run_graph(paths, name, Path("/nonexistent/acknet-state"), from_, to, ports, str(target)) == 1
    assert message in capsys.readouterr().err
    assert not target.exists()


def test_cli_graph_to_stdout() -> None:
    result = CliRunner().invoke(app, ["graph", "-f", QUICKSTART, "--from", "pods", "--port", "80", "-o", "-"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("<!doctype html>")
    assert _embedded(result.stdout)["summary"]["verdicts"] > 0
