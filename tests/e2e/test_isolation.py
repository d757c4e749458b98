"""Emulations side by side, and invalid files that build nothing."""

from __future__ import annotations

import os
import textwrap

import pytest
from e2e_support import EXAMPLES, netns_of, pid_alive, processes_mentioning

pytestmark = pytest.mark.root

QUICKSTART = EXAMPLES / "quickstart"


def snapshot(prefix: str) -> dict[str, int]:
    return {ns: os.stat(f"/var/run/netns/{ns}").st_ino for ns in netns_of(prefix)}


def check_frontend_to_backend(emu) -> None:
    pods = emu.pods()
    frontend = sorted(k for k in pods if k.startswith("demo/frontend-"))
    backend = sorted(k for k in pods if k.startswith("demo/backend-"))
    assert len(frontend) == 2 and len(backend) == 2
    for dst in backend:
        answer = emu.http(frontend[0], f"http://{pods[dst]['status']['podIP']}:8080/")
        assert answer.get("pod") == dst.split("/")[1], answer
        assert answer["client"].rsplit(":", 1)[0] == pods[frontend[0]]["status"]["podIP"]


def test_two_emulations_side_by_side(emu, emu2):
    emu.up(QUICKSTART)
    emu2.up(QUICKSTART)
    # The same files, so the same addresses, in separate namespaces.
    assert {k: p["status"]["podIP"] for k, p in emu.pods().items()} == {
        k: p["status"]["podIP"] for k, p in emu2.pods().items()
    }
    mine = snapshot(emu.prefix)
    assert mine and snapshot(emu2.prefix)
    assert not set(mine) & set(snapshot(emu2.prefix))
    check_frontend_to_backend(emu)
    check_frontend_to_backend(emu2)

    daemon = emu.daemon_pid()
    emu2.acknet("down")
    assert not netns_of(emu2.prefix)
    assert snapshot(emu.prefix) == mine, "down of one emulation leaves the other's namespaces alone"
    assert daemon is not None and pid_alive(daemon)
    check_frontend_to_backend(emu)
    # A second down of a gone emulation is harmless.
    emu2.acknet("down")
    assert snapshot(emu.prefix) == mine


BAD = textwrap.dedent(
    """\
    apiVersion: acknet.io/v1
    kind: VPC
    metadata: {name: prod}
    spec: {cidrBlock: 192.168.0.0/16}
    ---
    apiVersion: acknet.io/v1
    kind: VSwitch
    metadata: {name: node-h}
    spec: {vpc: prod, cidrBlock: 192.168.0.0/24, zoneId: cn-hangzhou-h, colour: blue}
    ---
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web, namespace: default}
    spec:
      replicas: three
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec:
          containers: [{name: web, ports: [{containerPort: 80}]}]
    """
)


def test_invalid_files_build_nothing(emu):
    bad = emu.tmp / "bad"
    bad.mkdir()
    (bad / "cloud.yaml").write_text(BAD)
    run = emu.up(bad, check=False)
    assert run.returncode == 1
    assert "cloud.yaml" in run.stderr
    assert "VSwitch/node-h" in run.stderr and "spec.colour" in run.stderr
    assert "Deployment/default/web" in run.stderr and "spec.replicas" in run.stderr
    assert not netns_of(emu.prefix)
    assert not processes_mentioning(str(emu.state))
    assert not (emu.state / "acknetd.pid").exists()

    # The same holds with the invalid file next to valid ones.
    run = emu.up(QUICKSTART, bad, check=False)
    assert run.returncode == 1 and "spec.colour" in run.stderr
    assert not netns_of(emu.prefix)
    assert not processes_mentioning(str(emu.state))
