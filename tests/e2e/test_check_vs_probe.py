"""Differential: `acknet check` (from the files) and `acknet probe` (real packets) agree on every pair.

For every example, and for topologies hypothesis generates (Terway and Flannel, security groups with
random priorities, policies, protocols, ports and peers, ECS instances and pods), the emulation is
brought up and both answers are compared port by port.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
ACKNET = [sys.executable, "-m", "acknet.cli.main"]

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces"),
]


def acknet(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*ACKNET, *args], capture_output=True, text=True, timeout=300, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"acknet {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@contextmanager
def emulation(paths: list[str]) -> Iterator[list[str]]:
    """Brings the files up under a fresh name; always takes it down again."""
    name = "diff" + secrets.token_hex(3)
    with tempfile.TemporaryDirectory(prefix="acknet-diff-") as state:
        where = ["--name", name, "--state", str(Path(state) / "st")]
        try:
            acknet("up", *[a for p in paths for a in ("-f", p)], *where)
            yield where
        finally:
            acknet("down", *where, check=False)
            leaked = subprocess.run(
                ["ip", "netns", "list"], capture_output=True, text=True, check=True
            ).stdout
            assert f"{name}-" not in leaked


def verdicts(output: str) -> dict[tuple[str, str, int, str], Any]:
    return {(v["from"], v["to"], v["port"], v["protocol"]): v for v in json.loads(output)["verdicts"]}


def compare(paths: list[str], require_allowed: bool = False) -> None:
    checked = verdicts(acknet("check", *[a for p in paths for a in ("-f", p)], "-o", "json").stdout)
    with emulation(paths) as where:
        probed = verdicts(acknet("probe", *where, "-o", "json").stdout)
    assert probed.keys() == checked.keys()
    disagreements = [
        f"{k}: probe {'allowed' if probed[k]['allowed'] else 'denied'}, check says {checked[k]['reasons']}"
        for k in checked
        if probed[k]["allowed"] != checked[k]["allowed"]
    ]
    assert not disagreements, "\n".join(disagreements)
    if require_allowed:  # the examples carry allowed flows: agreeing on "nothing passes" proves nothing
        assert any(v["allowed"] for v in checked.values())


@pytest.mark.parametrize("example", ["shop", "quickstart"])
def test_examples_check_equals_probe(example: str) -> None:
    compare([str(REPO / "examples" / example)], require_allowed=True)


PORTS = ["80/TCP", "8080/TCP", "53/UDP", "3306/TCP"]
PEERS = ["0.0.0.0/0", "192.168.0.0/16", "192.168.0.0/24", "192.168.32.0/20", "172.20.0.0/16", "192.168.8.10"]


@st.composite
def topology(draw: st.DrawFn) -> str:
    plugin = draw(st.sampled_from(["terway", "flannel"]))
    docs = [
        "apiVersion: acknet.io/v1\nkind: VPC\nmetadata: {name: vpc}\nspec: {cidrBlock: 192.168.0.0/16}",
        "apiVersion: acknet.io/v1\nkind: VSwitch\nmetadata: {name: node}\n"
        "spec: {vpc: vpc, cidrBlock: 192.168.0.0/24, zoneId: z}",
        "apiVersion: acknet.io/v1\nkind: VSwitch\nmetadata: {name: pod}\n"
        "spec: {vpc: vpc, cidrBlock: 192.168.32.0/20, zoneId: z}",
        "apiVersion: acknet.io/v1\nkind: VSwitch\nmetadata: {name: data}\n"
        "spec: {vpc: vpc, cidrBlock: 192.168.8.0/24, zoneId: z}",
    ]
    groups = {"cluster-sg": "normal", "ecs-sg": draw(st.sampled_from(["normal", "enterprise"]))}
    for group, kind in groups.items():
        rules = []
        for _ in range(draw(st.integers(0, 4))):
            direction = draw(st.sampled_from(["ingress", "egress"]))
            protocol = draw(st.sampled_from(["tcp", "udp", "all", "icmp"]))
            if protocol in ("tcp", "udp"):
                low = draw(st.sampled_from([1, 53, 80, 3306, 8080]))
                ports = (
                    f"{low}/{draw(st.sampled_from([low, 8080, 65535]))}" if low <= 8080 else f"{low}/{low}"
                )
                if int(ports.split("/")[1]) < low:
                    ports = f"{low}/{low}"
            else:
                ports = "-1/-1"
            side = "source" if direction == "ingress" else "dest"
            if kind == "normal" and draw(st.booleans()) and draw(st.booleans()):
                peer = f"{side}GroupId: {draw(st.sampled_from(['cluster-sg'] + (['ecs-sg'] if groups['ecs-sg'] == 'normal' else [])))}"
            else:
                peer = f"{side}CidrIp: {draw(st.sampled_from(PEERS))}"
            rules.append(
                f"  - {{direction: {direction}, policy: {draw(st.sampled_from(['accept', 'drop']))}, "
                f"priority: {draw(st.integers(1, 5))}, ipProtocol: {protocol}, portRange: '{ports}', {peer}}}"
            )
        inner = (
            f"\n  innerAccessPolicy: {draw(st.sampled_from(['Accept', 'Drop']))}" if kind == "normal" else ""
        )
        docs.append(
            f"apiVersion: acknet.io/v1\nkind: SecurityGroup\nmetadata: {{name: {group}}}\nspec:\n  vpc: vpc\n"
            f"  securityGroupType: {kind}{inner}\n  rules:{'' if rules else ' []'}\n" + "\n".join(rules)
        )
    pods_spec = "podCidr: 172.20.0.0/16" if plugin == "flannel" else "podVSwitches: [pod]"
    docs.append(
        f"apiVersion: acknet.io/v1\nkind: Cluster\nmetadata: {{name: ack}}\nspec:\n  vpc: vpc\n"
        f"  networkPlugin: {plugin}\n  {pods_spec}\n  securityGroups: [cluster-sg]\n"
        "  nodePools: [{name: np, instanceType: ecs.g7.large, vswitches: [node], count: 2}]"
    )
    for i in range(draw(st.integers(1, 2))):
        ports = draw(st.lists(st.sampled_from(PORTS), min_size=1, max_size=2, unique=True))
        items = ", ".join(f"{{port: {p.split('/')[0]}, protocol: {p.split('/')[1]}}}" for p in ports)
        address = "\n  privateIpAddress: 192.168.8.10" if i == 0 else ""
        docs.append(
            f"apiVersion: acknet.io/v1\nkind: ECSInstance\nmetadata: {{name: ecs{i}}}\nspec:\n  vswitch: data\n"
            f"  securityGroups: [ecs-sg]{address}\n  ports: [{items}]"
        )
    for i in range(draw(st.integers(2, 5))):
        ports = draw(st.lists(st.sampled_from(PORTS[:3]), min_size=1, max_size=2, unique=True))
        items = ", ".join(f"{{containerPort: {p.split('/')[0]}, protocol: {p.split('/')[1]}}}" for p in ports)
        node = f"\n  nodeName: ack-np-{draw(st.integers(0, 1))}" if draw(st.booleans()) else ""
        docs.append(
            f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: t, labels: {{app: p{i}}}}}\n"
            f"spec:{node}\n  containers: [{{name: c, ports: [{items}]}}]"
        )
    return "\n---\n".join(docs) + "\n"


@settings(
    max_examples=int(os.environ.get("ACKNET_DIFF_EXAMPLES", "6")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(topology())
def test_generated_topologies_check_equals_probe(text: str) -> None:
    with tempfile.TemporaryDirectory(prefix="acknet-gen-") as folder:
        path = Path(folder) / "net.yaml"
        path.write_text(text)
        compare([str(path)])
