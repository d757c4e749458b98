"""``acknet verify`` and ``acknet trace --name/--live`` on running emulations of examples/quickstart and
examples/shop.

verify must find no disagreement between check (from the emulation's own files) and probe (real
packets); a trace from the emulation must be the trace from the files, and its real packet must agree.
On the shop, check and probe also agree on the Ingress (real HTTPS requests through nginx-ingress-lb),
and ``trace --live SRC URL`` sends that one request.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from e2e_support import ACKNET, EXAMPLES, REPO, Emu, netns_of

from acknet.cli.output import verdict_state
from conftest import _teardown

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces"),
]

QUICKSTART = EXAMPLES / "quickstart"
SHOP = EXAMPLES / "shop"


@contextmanager
def running(example: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emu]:
    """An emulation of ``example`` named ``vfy`` + 6 hex; taken down (and checked gone) whatever happens."""
    name = "vfy" + secrets.token_hex(3)
    assert not netns_of(f"{name}-")
    tmp = tmp_path_factory.mktemp(name)
    emu = Emu(name, tmp / "state", tmp)
    try:
        emu.up(example)
        yield emu
    finally:
        _teardown(emu)


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emu]:
    with running(QUICKSTART, tmp_path_factory) as emu:
        yield emu


def pod_named(emu: Emu, prefix: str) -> str:
    return next(key for key in sorted(emu.pods()) if key.startswith(prefix))


def test_verify_finds_no_disagreement(quickstart: Emu) -> None:
    run = quickstart.acknet("verify", "-o", "json", timeout=240, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    data = json.loads(run.stdout)
    assert data["compared"] > 50
    assert data["disagreements"] == []
    text = quickstart.acknet("verify", timeout=240).stdout
    assert "0 disagreement(s)" in text


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emu]:
    with running(SHOP, tmp_path_factory) as emu:
        yield emu


def test_verify_shop(shop: Emu) -> None:
    """The full example: Terway shared and exclusive ENI (terway-masq on its nodes), ECS instances,
    Services of every type, SLBs, and the Ingress shop/shop (requests through nginx-ingress-lb)."""
    run = shop.acknet("verify", "-o", "json", timeout=240, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    data = json.loads(run.stdout)
    assert data["compared"] > 250
    assert data["disagreements"] == []


def states(output: str) -> dict[tuple[str, str, int, str], str]:
    return {
        (v["from"], v["to"], v["port"], v["protocol"]): verdict_state(v)
        for v in json.loads(output)["verdicts"]
    }


def test_check_and_probe_agree_on_the_shops_ingress(shop: Emu) -> None:
    """``--to ingress/shop/shop``: check from the files, probe with real HTTPS requests (/ and /api, SNI
    shop.example.com) to nginx-ingress-lb's VIP that must come back from a web or an api pod. From the
    Internet every request reaches every backend; bastion's enterprise group keeps it from sending;
    a pod meets the SLB paths kube-proxy answers on its own node (partial, as for ``--to slb``)."""
    web = pod_named(shop, "shop/web-")
    selection = [
        "--from",
        f"internet,ecs/bastion,ecs/db-1,{web}",
        "--to",
        "ingress/shop/shop",
        "--port",
        "443",
    ]
    checked = states(
        subprocess.run(
            [*ACKNET, "check", "-f", str(SHOP), *selection, "-o", "json"],
            capture_output=True, text=True, timeout=120, check=True, cwd=REPO,
        ).stdout
    )  # fmt: skip
    probed = states(shop.acknet("probe", *selection, "-o", "json", timeout=120).stdout)
    assert probed == checked
    assert checked[("internet", "ingress/shop/shop", 443, "TCP")] == "allowed"
    assert checked[("ecs/bastion", "ingress/shop/shop", 443, "TCP")] == "denied"


@pytest.mark.parametrize(
    ("url", "verdict"),
    [
        ("https://shop.example.com/api/items", "allowed"),  # rule path /api (Prefix): an api pod answers
        ("https://other.example.com/", "dropped"),  # no rule for the host: NGINX's 404
    ],
    ids=["api-over-https", "unknown-host"],
)
def test_trace_live_of_a_url_agrees(shop: Emu, url: str, verdict: str) -> None:
    run = shop.acknet("trace", "internet", url, "--live", "-o", "json", timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    data = json.loads(run.stdout)
    assert (data["verdict"], data["live"]["verdict"], data["live"]["agrees"]) == (verdict, verdict, True)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ("demo/frontend", "svc/demo/backend:8080"),  # allowed by the backend's policy
        ("kube-system/coredns", "svc/demo/backend:8080"),  # not from the frontend: dropped
        ("demo/backend", "demo/frontend:80"),
    ],
    ids=["frontend-to-backend", "coredns-to-backend", "backend-to-frontend-pod"],
)
def test_trace_live_agrees(quickstart: Emu, src: str, dst: str) -> None:
    source = pod_named(quickstart, src)
    name, _, port = dst.rpartition(":")
    if not name.startswith("svc/"):
        name = pod_named(quickstart, name)
    run = quickstart.acknet(
        "trace", source, f"{name}:{port}", "--live", "-o", "json", timeout=120, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    data = json.loads(run.stdout)
    assert data["live"]["agrees"], data
    text = quickstart.acknet("trace", source, f"{name}:{port}", "--live", timeout=120).stdout
    assert "agrees with the trace" in text
    # The emulation's files give the trace the files give.
    argv = [*ACKNET, "trace", "-f", str(QUICKSTART), source, f"{name}:{port}", "-o", "json"]
    from_files = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True, cwd=REPO)
    assert json.loads(from_files.stdout)["hops"] == data["hops"]
