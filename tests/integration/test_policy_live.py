"""Network policy in real namespaces, through the engine that ``acknet up`` runs (in this process).

One Terway cluster with ``networkPolicy: true``: two shared-ENI nodes and one exclusive-ENI node,
namespaces ``shop`` and ``ops``. Pods: shop/web (node 0, 8080), shop/client and shop/api (node 1),
ops/monitor (node 0), shop/legacy (exclusive ENI, 7070). The tests run in order on one emulation and
each applies its files as an update of the running emulation, as ``acknet up`` does:

- default deny, then allow by selector;
- a label change edits set elements: the table (its kernel handle) stays, the answer changes;
- no window: a new pod under default-deny is never reachable, not even refused or pinged, while it is
  built and its workload starts (probed every few milliseconds from two pods meanwhile);
- an established connection that the new policies still allow survives a policy update (whole chains
  rewritten in one transaction) and a whole-table replacement (a restarted daemon);
- ACK's rules: the exclusive-ENI pod has no policy, and a Flannel cluster (its own emulation) neither.

Emulations are named ``pol`` + 6 hex; every namespace of them is removed at teardown, even on failure.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import socket
import struct
import subprocess
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from acknet.controllers.plan import plan as make_plan
from acknet.daemon.engine import Emulation, Status
from acknet.dataplane.apply.netlink import list_netns, remove_emulation
from acknet.dataplane.apply.nsutil import NetnsSwitcher
from acknet.dataplane.render import names
from acknet.dataplane.render.policy import TABLE_FAMILY, table_name
from acknet.model.build import build_resources
from acknet.model.documents import Source

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces"),
]


def cloud(plugin: str = "terway") -> str:
    if plugin == "flannel":
        cluster = "networkPlugin: flannel, podCidr: 172.20.0.0/16, networkPolicy: false"
        pools = "[{name: default, vswitches: [node], count: 1}]"
    else:
        cluster = "networkPlugin: terway, podVSwitches: [pod], networkPolicy: true"
        pools = (
            "[{name: default, vswitches: [node], count: 2},"
            " {name: excl, vswitches: [node], count: 1, eniMode: exclusive, labels: {pool: excl}}]"
        )
    return textwrap.dedent(
        f"""\
        apiVersion: acknet.io/v1
        kind: VPC
        metadata: {{name: vpc}}
        spec: {{cidrBlock: 192.168.0.0/16}}
        ---
        apiVersion: acknet.io/v1
        kind: VSwitch
        metadata: {{name: node}}
        spec: {{vpc: vpc, cidrBlock: 192.168.0.0/24, zoneId: cn-hangzhou-h}}
        ---
        apiVersion: acknet.io/v1
        kind: VSwitch
        metadata: {{name: pod}}
        spec: {{vpc: vpc, cidrBlock: 192.168.32.0/19, zoneId: cn-hangzhou-h}}
        ---
        apiVersion: acknet.io/v1
        kind: SecurityGroup
        metadata: {{name: open}}
        spec:
          vpc: vpc
          rules:
          - {{direction: ingress, policy: accept, priority: 1, ipProtocol: all, portRange: -1/-1, sourceCidrIp: 0.0.0.0/0}}
        ---
        apiVersion: acknet.io/v1
        kind: Cluster
        metadata: {{name: ack}}
        spec: {{vpc: vpc, {cluster}, securityGroups: [open], nodePools: {pools}}}
        ---
        apiVersion: v1
        kind: Namespace
        metadata: {{name: shop}}
        ---
        apiVersion: v1
        kind: Namespace
        metadata: {{name: ops}}
        """
    )


def pod(ns: str, name: str, app: str, port: int | None, node: str = "ack-default-0") -> str:
    placement = "nodeSelector: {pool: excl}" if node == "excl" else f"nodeName: {node}"
    ports = f"[{{name: serve, containerPort: {port}}}]" if port else "[]"
    return textwrap.dedent(
        f"""\
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}, namespace: {ns}, labels: {{app: {app}}}}}
        spec:
          {placement}
          containers: [{{name: main, ports: {ports}}}]
        """
    )


def knp(name: str, spec: str, ns: str = "shop") -> str:
    body = textwrap.indent(textwrap.dedent(spec).strip(), "  ")
    return (
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
        f"metadata: {{name: {name}, namespace: {ns}}}\nspec:\n{body}\n"
    )


PODS = (
    pod("shop", "web", "web", 8080)
    + pod("shop", "client", "client", None, node="ack-default-1")
    + pod("shop", "api", "api", 9000, node="ack-default-1")
    + pod("ops", "monitor", "monitor", 9100)
    + pod("shop", "legacy", "legacy", 7070, node="excl")
)
DEFAULT_DENY = knp("default-deny", "podSelector: {}\npolicyTypes: [Ingress]")
ALLOW_WEB = knp(
    "allow-web",
    """
    podSelector: {matchLabels: {app: web}}
    policyTypes: [Ingress]
    ingress:
    - from: [{podSelector: {matchLabels: {app: client}}}]
      ports: [{port: serve}]
    """,
)


# -- the emulation ------------------------------------------------------------------------------------


@dataclass
class Live:
    emu: Emulation
    switcher: NetnsSwitcher = field(default_factory=NetnsSwitcher)
    files: str = ""

    @property
    def name(self) -> str:
        return self.emu.name

    def apply(self, files: str, timeout: float = 120) -> Status:
        """Submits ``files`` as the next revision and waits until the engine is ready with it."""
        self.files = files
        revision = self.emu.submit([Source("policy.yaml", files)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.emu.status
            if status.revision == revision and status.phase in ("ready", "failed"):
                assert status.phase == "ready", status.error
                return status
            time.sleep(0.05)
        pytest.fail(f"revision {revision} not ready after {timeout:g}s: {self.emu.status}")

    def netns(self, key: str) -> str:
        namespace, _, name = key.partition("/")
        return names.pod_netns(self.name, namespace, name)

    def ip(self, key: str) -> str:
        assert self.emu.plan is not None
        (found,) = [str(p.ip) for p in self.emu.plan.pods if p.key == key]
        return found

    def node(self, key: str) -> str:
        assert self.emu.plan is not None
        (found,) = [p.node for p in self.emu.plan.pods if p.key == key]
        assert found is not None
        return names.ecs_netns(self.name, found)

    def connect(self, src_netns: str, ip: str, port: int, timeout: float = 1.0) -> str:
        """A TCP connect from ``src_netns``: ``connected``, ``refused``, ``timeout`` or ``unreachable``."""
        sock = self.switcher.socket(src_netns, socket.AF_INET, socket.SOCK_STREAM)
        with sock:
            sock.settimeout(timeout)
            try:
                sock.connect((ip, port))
            except TimeoutError:
                return "timeout"
            except ConnectionRefusedError:
                return "refused"
            except OSError as exc:
                if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                    return "unreachable"
                raise
            return "connected"

    def reach(self, src: str, dst: str, port: int) -> str:
        return self.connect(self.netns(src), self.ip(dst), port)

    def table_handle(self, netns: str) -> int:
        """The kernel handle of the policy table: a new one each time the table is replaced."""
        out = subprocess.run(
            ["ip", "netns", "exec", netns, "nft", "-j", "list", "tables"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        (table,) = [
            t["table"]
            for t in json.loads(out)["nftables"]
            if "table" in t and t["table"]["name"] == table_name(self.name)
        ]
        return int(table["handle"])

    def has_table(self, netns: str) -> bool:
        out = subprocess.run(
            ["ip", "netns", "exec", netns, "nft", "list", "tables", TABLE_FAMILY],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return table_name(self.name) in out.split()


def _start(tmp: Path, files: str) -> Iterator[Live]:
    name = "pol" + secrets.token_hex(3)
    assert not list_netns(names.netns_prefix(name))
    emu = Emulation(name, tmp / name)
    live = Live(emu)
    try:
        emu.start()
        live.apply(files)
        yield live
    finally:
        try:
            emu.teardown()
        finally:
            live.switcher.close()
            remove_emulation(name)
            assert not list_netns(names.netns_prefix(name)), "namespaces left behind"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    yield from _start(tmp_path_factory.mktemp("pol"), cloud() + PODS + DEFAULT_DENY)


# -- the tests, in order on one emulation -----------------------------------------------------------------


def test_default_deny(live: Live) -> None:
    assert live.reach("shop/client", "shop/web", 8080) == "timeout"
    assert live.reach("shop/web", "shop/api", 9000) == "timeout"
    assert live.reach("shop/client", "ops/monitor", 9100) == "connected"  # no policy selects it
    # A node always reaches its own pods (NetworkPolicy API; kubelet probes).
    assert live.connect(live.node("shop/web"), live.ip("shop/web"), 8080) == "connected"


def test_allow_by_selector(live: Live) -> None:
    live.apply(cloud() + PODS + DEFAULT_DENY + ALLOW_WEB)
    assert live.reach("shop/client", "shop/web", 8080) == "connected"
    assert live.reach("shop/api", "shop/web", 8080) == "timeout"
    assert live.reach("ops/monitor", "shop/web", 8080) == "timeout"  # same node, other namespace
    assert live.reach("shop/client", "shop/api", 9000) == "timeout"


def test_a_label_change_edits_sets_not_rules(live: Live) -> None:
    node = live.node("shop/web")
    before = live.table_handle(node)
    text_before = live.emu.policy_tables[node]
    relabelled = PODS.replace("{app: api}", "{app: client}")
    status = live.apply(cloud() + relabelled + DEFAULT_DENY + ALLOW_WEB)
    assert status.changed["policy tables"] >= 1
    assert live.emu.policy_tables[node] != text_before
    assert live.table_handle(node) == before, "the table was replaced, not edited"
    assert live.reach("shop/api", "shop/web", 8080) == "connected"
    live.apply(cloud() + PODS + DEFAULT_DENY + ALLOW_WEB)
    assert live.table_handle(node) == before
    assert live.reach("shop/api", "shop/web", 8080) == "timeout"


# The prober of the no-window test: TCP connects and ICMP echoes, one after the other, until stopped.
@dataclass
class Prober:
    netns: str
    ip: str
    port: int
    seen: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        # A switcher belongs to the thread that made it (nsutil): this thread has its own.
        with NetnsSwitcher() as switcher:
            self._run(switcher)

    def _run(self, switcher: NetnsSwitcher) -> None:
        icmp = switcher.socket(self.netns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        icmp.setblocking(False)
        ident = secrets.randbelow(0xFFFF)
        seq = 0
        with icmp:
            while not self.stop.is_set():
                self.seen[self._connect(switcher)] += 1
                seq = (seq + 1) & 0xFFFF
                icmp.sendto(_echo(ident, seq), (self.ip, 0))
                time.sleep(0.01)
                while True:
                    try:
                        data, addr = icmp.recvfrom(2048)
                    except BlockingIOError:
                        break
                    ihl = (data[0] & 0xF) * 4
                    kind, _, _, got, _ = struct.unpack("!BBHHH", data[ihl : ihl + 8])
                    if kind == 0 and got == ident and addr[0] == self.ip:
                        self.seen["echo reply"] += 1

    def _connect(self, switcher: NetnsSwitcher) -> str:
        sock = switcher.socket(self.netns, socket.AF_INET, socket.SOCK_STREAM)
        with sock:
            sock.settimeout(0.03)
            try:
                sock.connect((self.ip, self.port))
            except TimeoutError:
                return "timeout"
            except ConnectionRefusedError:
                return "refused"
            except OSError as exc:
                return errno.errorcode.get(exc.errno or 0, "error")
            return "connected"


def _echo(ident: int, seq: int) -> bytes:
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"acknet"
    total = sum(struct.unpack(f"!{len(body) // 2}H", body))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return struct.pack("!BBHHH", 8, 0, ~total & 0xFFFF, ident, seq) + b"acknet"


def test_no_window_a_new_pod_is_never_reachable_under_default_deny(live: Live) -> None:
    files = cloud() + PODS + DEFAULT_DENY + ALLOW_WEB
    newbie = pod("shop", "newbie", "newbie", 8080)  # on web's node, beside ops/monitor
    assert live.emu.plan is not None
    preview = make_plan(build_resources([Source("policy.yaml", files + newbie)]), previous=live.emu.plan)
    (ip,) = [str(p.ip) for p in preview.pods if p.key == "shop/newbie"]
    probers = [Prober(live.netns(src), ip, 8080) for src in ("ops/monitor", "shop/client", "shop/web")]
    threads = [threading.Thread(target=p.run, daemon=True) for p in probers]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.2)
        live.apply(files + newbie)
        assert live.ip("shop/newbie") == ip
        # Its workload runs: its node reaches it, and so does an allowed peer once a policy says so.
        assert live.connect(live.node("shop/newbie"), ip, 8080) == "connected"
        time.sleep(0.2)
    finally:
        for prober in probers:
            prober.stop.set()
        for thread in threads:
            thread.join(timeout=10)
    for prober in probers:
        assert sum(prober.seen.values()) > 10, prober.seen
        reached = {k: prober.seen[k] for k in ("connected", "refused", "echo reply") if prober.seen[k]}
        assert not reached, f"from {prober.netns}: {dict(prober.seen)}"
    assert live.reach("shop/client", "shop/newbie", 8080) == "timeout"


def test_established_connections_survive_a_policy_update(live: Live) -> None:
    files = cloud() + PODS + DEFAULT_DENY + ALLOW_WEB
    live.apply(files)
    node = live.node("shop/web")
    sock = live.switcher.socket(live.netns("shop/client"), socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(2.0)
        sock.connect((live.ip("shop/web"), 8080))
        first = _exchange(sock, b"one\n", lines=2)
        assert json.loads(first.split(b"\n", 1)[0])["pod"] == "web"
        handle = live.table_handle(node)
        # New policies, client -> web still allowed: the chains they touch are rewritten in one
        # transaction; the connection goes on.
        changed = ALLOW_WEB.replace("ports: [{port: serve}]", "ports: [{port: serve}, {port: 9999}]")
        monitor = knp("monitor-deny", "podSelector: {}\npolicyTypes: [Ingress]", ns="ops")
        live.apply(cloud() + PODS + DEFAULT_DENY + changed + monitor)
        assert live.table_handle(node) == handle
        assert _exchange(sock, b"two\n", lines=1) == b"two\n"
        # The new policy denies what was open before: a new connection fails, the table is live.
        assert live.reach("shop/client", "ops/monitor", 9100) == "timeout"
        assert live.reach("shop/client", "shop/web", 8080) == "connected"
        # A daemon that knows nothing of the loaded tables (restarted) replaces them whole, in one
        # transaction: conntrack outlives the table, the connection goes on.
        live.emu.policy_tables.clear()
        live.apply(cloud() + PODS + DEFAULT_DENY + ALLOW_WEB + monitor)
        assert live.table_handle(node) != handle
        assert _exchange(sock, b"three\n", lines=1) == b"three\n"
        assert live.reach("shop/client", "ops/monitor", 9100) == "timeout"
    live.apply(files)


def _exchange(sock: socket.socket, data: bytes, lines: int) -> bytes:
    sock.sendall(data)
    got = b""
    while got.count(b"\n") < lines:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed after {got!r}"
        got += chunk
    return got


def test_an_exclusive_eni_pod_has_no_policy(live: Live) -> None:
    # default-deny selects every shop pod, but ACK enforces nothing on exclusive ENIs.
    assert live.reach("shop/client", "shop/legacy", 7070) == "connected"
    assert live.reach("shop/client", "shop/web", 8080) == "connected"
    assert live.reach("shop/api", "shop/web", 8080) == "timeout"
    excl = live.node("shop/legacy")
    assert live.has_table(excl)  # every node of the cluster carries the table, without chains for it
    cali = names.cali_ifname("shop", "legacy")
    assert f"{cali}-ingress" not in live.emu.policy_tables[excl]


def test_a_flannel_cluster_has_no_policy(tmp_path: Path) -> None:
    files = (
        cloud("flannel")
        + pod("shop", "web", "web", 8080)
        + pod("shop", "client", "client", None)
        + DEFAULT_DENY
    )
    for flannel in _start(tmp_path, files):
        assert flannel.reach("shop/client", "shop/web", 8080) == "connected"
        assert not flannel.has_table(flannel.node("shop/web"))
        assert flannel.emu.policy_tables == {}
