"""examples/shop as a whole: `acknet up`, listings, real packets, updates, deletes and a killed daemon.

Every check goes through the real `acknet` command: `get ... -o json` for what the emulation says,
`exec` for packets sent from inside pods and ECS instances.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import textwrap
from itertools import product
from pathlib import Path

import pytest
from e2e_support import EXAMPLES, pid_alive

from acknet.dataplane.render import names

pytestmark = pytest.mark.root

SHOP = EXAMPLES / "shop"
DB = "192.168.8.10"


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"]["conditions"])


def inodes(emu, pods: dict[str, dict]) -> dict[str, tuple[int, str]]:
    """``NS/NAME`` -> (inode of /var/run/netns/<pod netns>, pod IP)."""
    found = {}
    for key, pod in pods.items():
        namespace, _, name = key.partition("/")
        netns = names.pod_netns(emu.name, namespace, name)
        found[key] = (os.stat(f"/var/run/netns/{netns}").st_ino, pod["status"]["podIP"])
    return found


def of(pods: dict[str, dict], app: str) -> list[str]:
    return sorted(k for k, p in pods.items() if p["metadata"]["labels"].get("app") == app)


def test_shop_up_listings_and_packets(emu):
    run = emu.up(SHOP)
    assert f"emulation {emu.name} is up" in run.stdout

    pods = emu.pods()
    assert {app: len(of(pods, app)) for app in ("web", "api", "cart", "monitor")} == {
        "web": 3,
        "api": 2,
        "cart": 2,
        "monitor": 1,
    }
    nodes = {n["name"]: n for n in emu.get("nodes")}
    assert set(nodes) == {"ack-default-0", "ack-default-1", "ack-exclusive-0"}
    for key, pod in pods.items():
        assert pod["kind"] == "Pod"
        status = pod["status"]
        assert status["phase"] == "Running", key
        assert ready(pod), key
        assert status["podIP"] and status["hostIP"] == nodes[pod["spec"]["nodeName"]]["ip"], key
        # Every pod namespace exists in the kernel under the emulation's prefix.
        namespace, _, name = key.partition("/")
        assert Path("/var/run/netns", names.pod_netns(emu.name, namespace, name)).exists()
    assert len({p["status"]["podIP"] for p in pods.values()}) == len(pods)

    ecs = {e["name"]: e for e in emu.get("ecs")}
    assert set(ecs) == {"bastion", "db-1"}
    assert ecs["db-1"]["ip"] == DB and ecs["db-1"]["securityGroups"] == ["db-sg"]
    vswitches = {v["name"]: v for v in emu.get("vswitches")}
    assert set(vswitches) == {"node-h", "node-i", "pod-h", "pod-i", "data-h"}
    assert vswitches["node-h"]["gateway"] == "192.168.0.253"
    groups = {g["name"]: g for g in emu.get("securitygroups")}
    assert set(groups) == {"bastion-sg", "cluster-sg", "db-sg"}
    assert "db-1/eth0" in groups["db-sg"]["members"]
    assert "bastion/eth0" in groups["bastion-sg"]["members"]
    # The table output works too.
    assert "ack-default-0" in emu.acknet("get", "nodes").stdout

    # Pod to pod across nodes (api -> cart, which the shop's policies allow as well): the answer names
    # the destination pod, and the client address it saw is the source pod's own (no NAT on the VPC).
    pairs = [
        (a, c)
        for a, c in product(of(pods, "api"), of(pods, "cart"))
        if pods[a]["spec"]["nodeName"] != pods[c]["spec"]["nodeName"]
    ]
    assert pairs
    for src, dst in pairs:
        answer = emu.http(src, f"http://{pods[dst]['status']['podIP']}:7070/")
        assert answer.get("pod") == dst.split("/")[1], answer
        assert answer["client"].rsplit(":", 1)[0] == pods[src]["status"]["podIP"], answer

    # Pod -> ECS db-1:3306: db-sg admits cluster-sg members (the pods' ENIs carry cluster-sg).
    api = of(pods, "api")[0]
    answer = emu.http(api, f"http://{DB}:3306/")
    assert answer.get("ecs") == "db-1", answer
    assert answer["client"].rsplit(":", 1)[0] == pods[api]["status"]["podIP"]
    # The bastion matches only db-sg's drop at priority 10: the SYN is dropped, not refused.
    assert emu.connect("ecs/bastion", DB, 3306) == "timeout"


EXTRA = textwrap.dedent(
    """\
    apiVersion: v1
    kind: Namespace
    metadata: {name: extra}
    ---
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: echo, namespace: extra}
    spec:
      replicas: 2
      selector: {matchLabels: {app: echo}}
      template:
        metadata: {labels: {app: echo}}
        spec:
          containers:
          - name: echo
            ports: [{containerPort: 8081, protocol: TCP}]
    """
)
BASTION_RULE = (
    "  - {direction: ingress, policy: accept, priority: 1, ipProtocol: tcp, portRange: 3306/3306, "
    "sourceCidrIp: 192.168.0.1/32}\n"
)


def changed_shop(tmp: Path) -> Path:
    """The shop with an extra Deployment and a db-sg rule that lets the bastion (192.168.0.1) in."""
    folder = tmp / "shop2"
    shutil.copytree(SHOP, folder)
    database = folder / "database.yaml"
    text = database.read_text()
    anchor = "  rules:\n"
    assert text.count(anchor) == 1
    database.write_text(text.replace(anchor, anchor + BASTION_RULE))
    (folder / "extra.yaml").write_text(EXTRA)
    return folder


def test_reup_applies_only_the_difference(emu):
    emu.up(SHOP)
    daemon = emu.daemon_pid()
    before = emu.pods()
    kept = inodes(emu, before)
    assert emu.connect("ecs/bastion", DB, 3306) == "timeout"

    emu.up(changed_shop(emu.tmp))
    assert emu.daemon_pid() == daemon, "the running daemon applies the change"
    after = emu.pods()
    assert set(before) < set(after)
    assert inodes(emu, before) == kept, "unchanged pods keep their namespace and address"
    echo = of(after, "echo")
    assert len(echo) == 2
    assert all(after[k]["status"]["phase"] == "Running" and ready(after[k]) for k in echo)

    # The changed rule takes effect: the bastion now reaches db-1; everything else still does.
    assert emu.connect("ecs/bastion", DB, 3306) == "connected"
    api = of(after, "api")[0]
    assert emu.http(api, f"http://{DB}:3306/").get("ecs") == "db-1"
    for key in echo:
        answer = emu.http(api, f"http://{after[key]['status']['podIP']}:8081/")
        assert answer.get("pod") == key.split("/")[1], answer

    # And back: the original files remove the extra namespace's pods and the rule.
    emu.up(SHOP)
    again = emu.pods()
    assert set(again) == set(before)
    assert inodes(emu, before) == kept
    assert not [ns for ns in os.listdir("/var/run/netns") if ns.startswith(f"{emu.name}-pod-extra.")]
    assert emu.connect("ecs/bastion", DB, 3306) == "timeout"


@pytest.mark.parametrize(
    ("app", "node", "port"),
    [("payments", "ack-exclusive-0", 8443), ("web", "ack-default-1", 8080)],
    ids=["exclusive-eni", "shared-eni"],
)
def test_delete_pod_is_replaced(emu, app, node, port):
    emu.up(SHOP)
    before = emu.pods()
    # On the exclusive pool the pod's ENI moves to the replacement; on a shared-ENI node it does not.
    victim = next(k for k in of(before, app) if before[k]["spec"]["nodeName"] == node)
    replicas = len(of(before, app))
    run = emu.acknet("delete", "pod", victim)
    assert "deleted" in run.stdout

    def replaced() -> dict | None:
        pods = emu.pods()
        now = of(pods, app)
        return (
            pods if len(now) == replicas and victim not in pods and all(ready(pods[k]) for k in now) else None
        )

    after = emu.wait_for(f"the replacement {app} pod", replaced)
    new = set(of(after, app)) - set(before)
    assert len(new) == 1, (before.keys(), after.keys())
    replacement = new.pop()
    assert replacement.startswith(f"shop/{app}-")
    assert after[replacement]["status"]["phase"] == "Running"
    namespace, _, name = victim.partition("/")
    assert not Path("/var/run/netns", names.pod_netns(emu.name, namespace, name)).exists()
    # The other pods were left alone.
    rest = {k: v for k, v in before.items() if k != victim}
    assert inodes(emu, rest) == inodes(emu, {k: after[k] for k in rest})
    # The replacement answers as itself, across nodes. From a node: the shop's policies admit node
    # addresses to web (its ipBlock rule), and exclusive-ENI pods are not policed at all.
    here = after[replacement]["spec"]["nodeName"]
    other = next(p for p in after.values() if p["spec"]["nodeName"] not in (here, "ack-exclusive-0"))
    source = f"ecs/{other['spec']['nodeName']}"
    answer = emu.http(source, f"http://{after[replacement]['status']['podIP']}:{port}/")
    assert answer.get("pod") == replacement.split("/")[1], answer
    assert answer["client"].rsplit(":", 1)[0] == other["status"]["hostIP"]

    # A pod that is gone is an error, exit 1.
    missing = emu.acknet("delete", "pod", victim, check=False)
    assert missing.returncode == 1


COMMAND_POD = textwrap.dedent(
    """\
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: files, namespace: shop}
    spec:
      replicas: 1
      selector: {matchLabels: {app: files}}
      template:
        metadata: {labels: {app: files}}
        spec:
          containers:
          - name: files
            command: [{python}, -m, http.server, "8000", --bind, 0.0.0.0]
            ports: [{containerPort: 8000, protocol: TCP}]
    """
)


def kill_daemon(emu) -> int:
    pid = emu.daemon_pid()
    assert pid is not None and pid_alive(pid)
    assert b"acknet.daemon" in Path(f"/proc/{pid}/cmdline").read_bytes()
    os.kill(pid, signal.SIGKILL)
    emu.wait_for("the daemon to die", lambda: not pid_alive(pid), timeout=5)
    return pid


def recorded_pids(state: Path) -> list[int]:
    pids = [int((state / "builtin.pid").read_text().split()[0])]
    pids += [int(p.read_text().split()[0]) for p in (state / "pids").glob("*.pid")]
    return pids


def test_down_after_kill_9(emu):
    folder = emu.tmp / "shop-cmd"
    shutil.copytree(SHOP, folder)
    (folder / "files.yaml").write_text(COMMAND_POD.replace("{python}", sys.executable))
    emu.up(folder)
    # The built-in server, the pod's command and the SLB listeners' NGINX masters.
    workers = recorded_pids(emu.state)
    assert len(workers) >= 2 and all(pid_alive(p) for p in workers)
    kill_daemon(emu)
    assert all(pid_alive(p) for p in workers), "the workloads outlive the daemon"

    run = emu.acknet("down")
    assert f"emulation {emu.name} is down" in run.stdout
    assert not [ns for ns in os.listdir("/var/run/netns") if ns.startswith(emu.prefix)]
    assert not [p for p in workers if pid_alive(p)], "down ends the built-in server and the pod processes"
    assert (
        not [d for d in os.listdir("/etc/netns") if d.startswith(emu.prefix)]
        if Path("/etc/netns").is_dir()
        else True
    )
    assert not emu.state.exists()


def test_restarted_daemon_adopts_and_converges(emu):
    emu.up(SHOP)
    # A deleted pod first, so that the restarted daemon must keep the replacement's name and address.
    victim = of(emu.pods(), "cart")[0]
    emu.acknet("delete", "pod", victim)

    def replaced() -> dict | None:
        pods = emu.pods()
        return pods if len(of(pods, "cart")) == 2 and victim not in pods else None

    before = emu.wait_for("the replacement cart pod", replaced)
    kept = inodes(emu, before)
    builtin = int((emu.state / "builtin.pid").read_text().split()[0])
    assert emu.connect("ecs/bastion", DB, 3306) == "timeout"
    old = kill_daemon(emu)

    # The new daemon first converges to the files it finds, then to the changed ones `up` brings.
    emu.up(changed_shop(emu.tmp))
    assert emu.daemon_pid() not in (None, old)
    after = emu.pods()
    assert set(after) == set(before) | set(of(after, "echo"))
    assert len(of(after, "echo")) == 2
    assert inodes(emu, before) == kept, "the new daemon adopts the pods' namespaces and addresses"
    assert emu.connect("ecs/bastion", DB, 3306) == "connected"
    assert all(p["status"]["phase"] == "Running" and ready(p) for p in after.values())
    assert int((emu.state / "builtin.pid").read_text().split()[0]) == builtin, (
        "the built-in server is adopted"
    )
    assert pid_alive(builtin)
    # Packets still flow, to the built-in sockets the old daemon made.
    api = of(after, "api")[0]
    for dst in of(after, "cart"):
        answer = emu.http(api, f"http://{after[dst]['status']['podIP']}:7070/")
        assert answer.get("pod") == dst.split("/")[1], answer
