"""Rendered security group tables in real namespaces: what the kernel does equals what the analysis says.

Topology, all in throwaway namespaces named ``sgt<hex>…`` (nothing in the host namespace):

    pod (192.168.0.12/32) ──cali veth── node "web-1" (eth0 192.168.0.10, ENI of web-sg; the pod IP is a
                                        secondary IP of that ENI, as on Terway)
                                            │ eth0 ═ veth ═ eth0
                                        ecs "db-1" (eth0 192.168.0.20, ENI of db-sg; also holds
                                        100.64.0.5, a CLB health-check source)

The node routes pod traffic between its ``cali`` veth and eth0, so pod flows cross the forward hook and
ECS flows the input/output hooks: both paths of the renderer are exercised. Every case opens a real TCP
connection; a blocked one times out (or fails with EPERM when the sender's own egress chain drops it).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from acknet.analysis.security_group import evaluate, group_members
from acknet.controllers.state import Eni, Instance, Plan
from acknet.dataplane.render.security_group import render_security_groups, replace_script
from acknet.model.cloud import SecurityGroup
from acknet.model.resources import Resources

pytestmark = pytest.mark.root

NODE_IP, POD_IP, DB_IP, HEALTH_IP = "192.168.0.10", "192.168.0.12", "192.168.0.20", "100.64.0.5"
PORTS = (80, 81, 3306, 5000, 8080, 9090)

SERVER = textwrap.dedent(
    """
    import socket, sys, threading
    def serve(s):
        while True:
            c, _ = s.accept()
            threading.Thread(target=echo, args=(c,), daemon=True).start()
    def echo(c):
        with c:
            while data := c.recv(64):
                c.sendall(data)
    listeners = []
    for p in sys.argv[1:]:  # listen on every port before saying ready: no race with the first client
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", int(p))); s.listen(64); listeners.append(s)
    for s in listeners:
        threading.Thread(target=serve, args=(s,), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()
    """
)

# Exit codes: 0 connected and echoed, 1 connect timed out (dropped), 2 refused, 3 EPERM (dropped by the
# sender's own chain), 4 connected but the echo stalled (a bug, never a verdict).
CLIENT = textwrap.dedent(
    """
    import socket, subprocess, sys
    dst, port, src, reload = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    s = socket.socket(); s.settimeout(2.0)
    if src != "-":
        s.bind((src, 0))
    try:
        s.connect((dst, port))
    except TimeoutError:
        sys.exit(1)
    except ConnectionRefusedError:
        sys.exit(2)
    except PermissionError:
        sys.exit(3)
    s.settimeout(10.0)
    try:
        s.sendall(b"ping"); assert s.recv(64) == b"ping"
        if reload != "-":
            # Replace the table while the session is open: an accepted session survives a reload whose
            # verdict for it does not change (conntrack keeps it established).
            subprocess.run(["nft", "-f", reload], check=True)
            s.sendall(b"again"); assert s.recv(64) == b"again"
    except (OSError, AssertionError):
        sys.exit(4)
    sys.exit(0)
    """
)


def sg(name: str, rules: list[dict[str, Any]], **spec: Any) -> SecurityGroup:
    return SecurityGroup.model_validate(
        {
            "apiVersion": "acknet.io/v1",
            "kind": "SecurityGroup",
            "metadata": {"name": name},
            "spec": {"vpc": "prod", "rules": rules, **spec},
        }
    )


def rule(direction: str, port: int, policy: str = "accept", priority: int = 1, **peer: str) -> dict[str, Any]:
    return {
        "direction": direction,
        "policy": policy,
        "priority": priority,
        "ipProtocol": "tcp",
        "portRange": f"{port}/{port}",
        **peer,
    }


GROUPS = [
    sg(
        "web-sg",
        [
            rule("ingress", 80, sourceCidrIp="0.0.0.0/0"),
            rule("ingress", 81, sourceCidrIp="0.0.0.0/0"),
            rule("ingress", 81, "drop", sourceCidrIp=DB_IP),  # ties with the accept above: drop wins
            rule("egress", 9090, "drop", destCidrIp=DB_IP),
        ],
    ),
    sg(
        "db-sg",  # innerAccessPolicy Drop, no egress rules: ingress opens only where a rule says so
        [
            rule("ingress", 3306, sourceGroupId="web-sg"),
            rule("ingress", 5000, priority=5, sourceCidrIp="0.0.0.0/0"),
            rule("ingress", 5000, "drop", priority=2, sourceCidrIp=POD_IP),  # 2 beats 5
            rule("ingress", 9090, sourceCidrIp="0.0.0.0/0"),
        ],
        innerAccessPolicy="Drop",
    ),
]


def _eni(instance: str, ips: tuple[str, ...], group: str) -> Eni:
    addrs = tuple(IPv4Address(ip) for ip in ips)
    return Eni(f"eni-{instance}", instance, 0, "node-h", "02:00:00:00:00:01", addrs[0], addrs, (group,))


def _instance(eni: Eni) -> Instance:
    return Instance(
        eni.instance, "ecs.g7.large", "cn-hangzhou-h", "node-h", eni.primary_ip, eni.security_groups, (eni,)
    )


PLAN = Plan(
    resources=Resources(security_groups={g.name: g for g in GROUPS}),
    vswitches=(),
    instances=(
        _instance(_eni("web-1", (NODE_IP, POD_IP), "web-sg")),
        _instance(_eni("db-1", (DB_IP,), "db-sg")),
    ),
    pods=(),
    services=(),
    endpoint_slices=(),
    routes=(),
)


@dataclass
class Lab:
    prefix: str
    ns: dict[str, str]  # role -> namespace
    workdir: Path
    scripts: dict[str, Path]  # role -> replace script of its table

    def connect(self, role: str, dst: str, port: int, src: str = "-", reload: str = "-") -> str:
        result = subprocess.run(
            ["ip", "netns", "exec", self.ns[role], sys.executable, "-c", CLIENT, dst, str(port), src, reload],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        outcomes = {0: "connected", 1: "timeout", 2: "refused", 3: "eperm", 4: "stalled"}
        return outcomes.get(result.returncode, f"error {result.returncode}: {result.stderr.strip()}")


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


def nsrun(ns: str, *args: str) -> None:
    run("ip", "netns", "exec", ns, *args)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nft")):
        pytest.skip("needs root, ip and nft to build network namespaces")
    prefix = "sgt" + secrets.token_hex(3)
    ns = {"node": f"{prefix}n", "pod": f"{prefix}p", "db": f"{prefix}d"}
    servers: list[subprocess.Popen[str]] = []
    made: list[str] = []
    try:
        for name in ns.values():
            run("ip", "netns", "add", name)
            made.append(name)
            run("ip", "-n", name, "link", "set", "lo", "up")
        node, pod, db = ns["node"], ns["pod"], ns["db"]
        # Both veth pairs are created inside the namespaces (ip -n), never in the host's.
        run("ip", "-n", node, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", db)
        run("ip", "-n", node, "link", "add", "calisgt0", "type", "veth", "peer", "name", "eth0", "netns", pod)
        # The node: ENI eth0 and the pod's host-side veth; it routes between them (Terway veth datapath).
        run("ip", "-n", node, "addr", "add", f"{NODE_IP}/24", "dev", "eth0")
        for link in ("eth0", "calisgt0"):
            run("ip", "-n", node, "link", "set", link, "up")
        run("ip", "-n", node, "route", "add", f"{POD_IP}/32", "dev", "calisgt0", "scope", "link")
        run("ip", "-n", node, "route", "add", "100.64.0.0/10", "dev", "eth0", "scope", "link")
        for key in (
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
            "net.ipv4.conf.eth0.proxy_arp=1",
        ):
            nsrun(node, "sysctl", "-q", "-w", key)  # inside the throwaway namespace only
        # The pod: eth0 = pod IP/32, default via 169.254.1.1, a permanent neighbour entry for it with the
        # MAC of the host-side veth (as Terway's veth datapath does; alibaba.md 1.4).
        run("ip", "-n", pod, "addr", "add", f"{POD_IP}/32", "dev", "eth0")
        run("ip", "-n", pod, "link", "set", "eth0", "up")
        cali_mac = json.loads(
            subprocess.run(
                ["ip", "-j", "-n", node, "link", "show", "calisgt0"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )[0]["address"]
        run(
            "ip",
            "-n",
            pod,
            "neigh",
            "add",
            "169.254.1.1",
            "lladdr",
            cali_mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        )
        run("ip", "-n", pod, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
        run("ip", "-n", pod, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
        # The other ECS, plus an address in the health-check range.
        run("ip", "-n", db, "addr", "add", f"{DB_IP}/24", "dev", "eth0")
        run("ip", "-n", db, "addr", "add", f"{HEALTH_IP}/32", "dev", "eth0")
        run("ip", "-n", db, "link", "set", "eth0", "up")

        workdir = tmp_path_factory.mktemp(prefix)
        tables = render_security_groups(PLAN, prefix)
        scripts = {}
        for role, instance in (("node", "web-1"), ("db", "db-1")):
            path = workdir / f"{instance}.nft"
            path.write_text(replace_script(tables[instance], prefix))
            nsrun(ns[role], "nft", "-f", str(path))
            scripts[role] = path

        for role in ("node", "pod", "db"):
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns[role], sys.executable, "-c", SERVER, *map(str, PORTS)],
                stdout=subprocess.PIPE,
                text=True,
            )
            servers.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield Lab(prefix, ns, workdir, scripts)
    finally:
        for proc in servers:  # only the processes this fixture started, by their own handle
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for name in made:
            subprocess.run(["ip", "netns", "delete", name], check=False)


ADDRESS_OF = {"node": NODE_IP, "pod": POD_IP, "db": DB_IP}
ENI_GROUPS = {ip: eni.security_groups for inst in PLAN.instances for eni in inst.enis for ip in eni.ips}

# (id, from, to, port, bind source, expected kernel result)
CASES = [
    ("ecs-to-ecs-source-group-accept", "node", "db", 3306, "-", True),
    ("return-traffic-passes-closed-web-sg-ingress", "node", "db", 5000, "-", True),
    ("ingress-closed-no-rule", "db", "node", 3306, "-", False),
    ("rule-accepts-80-return-passes-closed-db-sg", "db", "node", 80, "-", True),
    ("drop-wins-tie", "db", "node", 81, "-", False),
    ("egress-drop-at-source-output", "node", "db", 9090, "-", False),
    ("pod-source-group-member-via-forward", "pod", "db", 3306, "-", True),
    ("priority-2-drop-beats-5-accept-for-pod", "pod", "db", 5000, "-", False),
    ("pod-egress-drop-in-forward", "pod", "db", 9090, "-", False),
    ("ingress-to-pod-via-forward-accepted", "db", "pod", 80, "-", True),
    ("ingress-to-pod-drop-wins-tie", "db", "pod", 81, "-", False),
    ("ingress-to-pod-closed", "db", "pod", 8080, "-", False),
    ("health-check-source-needs-no-rule", "db", "node", 8080, HEALTH_IP, True),
    ("health-check-source-to-pod", "db", "pod", 8080, HEALTH_IP, True),
]


@pytest.mark.parametrize(
    ("src", "dst", "port", "bind", "expected"), [pytest.param(*c[1:], id=c[0]) for c in CASES]
)
def test_kernel_matches_expectation_and_analysis(
    lab: Lab, src: str, dst: str, port: int, bind: str, expected: bool
) -> None:
    outcome = lab.connect(src, ADDRESS_OF[dst], port, bind)
    assert outcome in ("connected", "timeout", "eperm"), outcome  # refused would mean a missing server
    kernel = outcome == "connected"
    assert kernel == expected, outcome

    src_ip = IPv4Address(bind if bind != "-" else ADDRESS_OF[src])
    dst_ip = IPv4Address(ADDRESS_OF[dst])
    verdict = evaluate(
        ENI_GROUPS.get(src_ip),
        ENI_GROUPS.get(dst_ip),
        src_ip,
        dst_ip,
        "tcp",
        port,
        PLAN.resources.security_groups,
        group_members(PLAN.instances),
    )
    assert verdict.allowed == kernel, verdict.deciding.reason


def test_established_session_survives_a_table_reload(lab: Lab) -> None:
    # db -> node:80 is open while db-1 reloads its own table (same content). The replies come back into
    # db-sg's ingress, which has no rule for them: only the established session lets them through.
    outcome = lab.connect("db", NODE_IP, 80, reload=str(lab.scripts["db"]))
    assert outcome == "connected"


def test_namespaces_are_ours_and_named_with_the_prefix(lab: Lab) -> None:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert all(name in listed for name in lab.ns.values())
    assert all(name.startswith(lab.prefix) for name in lab.ns.values())
