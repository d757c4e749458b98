"""CLB instances live: layer-4 listeners, schedulers and health checks in a running emulation, real packets.

One emulation (``td`` + 6 hex) serves the module: three ECS backends (web-1 weight 75, web-2 weight
25, web-3 weight 0), an internet CLB ``pub`` (TCP 80 wrr, UDP 53, TCP 81 sch, TCP 83 wlc over web-1
and web-2 at equal weights, TCP 84 wlc over 75:25:0) and an intranet CLB
``priv`` (TCP 80 rr with an HTTP check) in front of them, and a client ECS in the VPC. Clients in the
Internet namespace use 203.0.113.x. The built-in server's JSON answer names the ECS that answered and
the client address it saw. A backend is made to fail by a drop rule in its own namespace (a table of
this test's, in this emulation's namespace, removed again). The tests that break backends come last.
A Service of type LoadBalancer gets its own emulation at the end.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_support import ACKNET, REPO, Emu, netns_of, processes_mentioning

from acknet.dataplane.render import names

pytestmark = pytest.mark.root

PUB, PRIV = "198.51.100.10", "192.168.0.100"
WEB = {"web-1": "192.168.8.11", "web-2": "192.168.8.12", "web-3": "192.168.8.13"}
# Checks every second, 1 s timeout, 2 and 2: a failing backend is out within 1 x 2 + 1 x 1 = 3 s.
FAILURE_WINDOW = 3.0
SLACK = 4.0  # a busy two-core host: the checker's loop and `acknet get` polling add up

FILES = """\
apiVersion: acknet.io/v1
kind: VPC
metadata: {name: vpc}
spec: {cidrBlock: 192.168.0.0/16}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {name: node-h}
spec: {vpc: vpc, cidrBlock: 192.168.0.0/24, zoneId: cn-hangzhou-h}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {name: data-h}
spec: {vpc: vpc, cidrBlock: 192.168.8.0/24, zoneId: cn-hangzhou-h}
---
apiVersion: acknet.io/v1
kind: SecurityGroup
metadata: {name: web-sg}
spec:
  vpc: vpc
  rules:
  - {direction: ingress, policy: accept, priority: 1, ipProtocol: tcp, portRange: 8080/8080, sourceCidrIp: 0.0.0.0/0}
  - {direction: ingress, policy: accept, priority: 1, ipProtocol: udp, portRange: 5353/5353, sourceCidrIp: 0.0.0.0/0}
  # Layer 4 passes the client's address through, so the backends' group can keep one client out.
  - {direction: ingress, policy: drop, priority: 1, ipProtocol: all, portRange: -1/-1, sourceCidrIp: 203.0.113.66/32}
---
apiVersion: acknet.io/v1
kind: SecurityGroup
metadata: {name: client-sg}
spec: {vpc: vpc}
---
apiVersion: acknet.io/v1
kind: ECSInstance
metadata: {name: web-1}
spec: {vswitch: data-h, securityGroups: [web-sg], privateIpAddress: 192.168.8.11,
       ports: [{port: 8080, protocol: TCP}, {port: 5353, protocol: UDP}]}
---
apiVersion: acknet.io/v1
kind: ECSInstance
metadata: {name: web-2}
spec: {vswitch: data-h, securityGroups: [web-sg], privateIpAddress: 192.168.8.12,
       ports: [{port: 8080, protocol: TCP}, {port: 5353, protocol: UDP}]}
---
apiVersion: acknet.io/v1
kind: ECSInstance
metadata: {name: web-3}
spec: {vswitch: data-h, securityGroups: [web-sg], privateIpAddress: 192.168.8.13,
       ports: [{port: 8080, protocol: TCP}, {port: 5353, protocol: UDP}]}
---
apiVersion: acknet.io/v1
kind: ECSInstance
metadata: {name: client}
spec: {vswitch: node-h, securityGroups: [client-sg], privateIpAddress: 192.168.0.50}
---
apiVersion: acknet.io/v1
kind: LoadBalancer
metadata: {name: pub}
spec:
  addressType: internet
  address: 198.51.100.10
  vServerGroups:
  - name: web
    servers:
    - {ecs: web-1, port: 8080, weight: 75}
    - {ecs: web-2, port: 8080, weight: 25}
    - {ecs: web-3, port: 8080, weight: 0}
  - name: echo
    servers: [{ecs: web-1, port: 5353}]
  - name: even
    servers: [{ecs: web-1, port: 8080}, {ecs: web-2, port: 8080}]
  listeners:
  - protocol: tcp
    listenerPort: 80
    vServerGroup: web
    scheduler: wrr
    healthCheck: {type: tcp, interval: 1, connectTimeout: 1, healthyThreshold: 2, unhealthyThreshold: 2}
  - protocol: udp
    listenerPort: 53
    vServerGroup: echo
    healthCheck: {type: udp, interval: 1, connectTimeout: 1, healthyThreshold: 2, unhealthyThreshold: 2}
  - {protocol: tcp, listenerPort: 81, vServerGroup: web, scheduler: sch}
  - protocol: tcp
    listenerPort: 82
    vServerGroup: web
    persistenceTimeout: 60
    connectionRateLimit: 20
    acl: {type: white, entries: [203.0.113.0/25]}
  - {protocol: tcp, listenerPort: 83, vServerGroup: even, scheduler: wlc}
  - {protocol: tcp, listenerPort: 84, vServerGroup: web, scheduler: wlc}
---
apiVersion: acknet.io/v1
kind: LoadBalancer
metadata: {name: priv}
spec:
  addressType: intranet
  vswitch: node-h
  address: 192.168.0.100
  backendServers: [{ecs: web-1}, {ecs: web-2}]
  listeners:
  - protocol: tcp
    listenerPort: 80
    backendServerPort: 8080
    scheduler: rr
    healthCheck: {type: http, uri: /healthz, interval: 1, connectTimeout: 1, healthyThreshold: 2, unhealthyThreshold: 2}
"""

# Many connections from one namespace: which ECS answered each, as a JSON count. Sources rotate over
# 203.0.113.100-199 when asked to (sch hashes the source address).
MANY = textwrap.dedent(
    """\
    import collections, json, socket, sys
    ip, port, count, source = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    seen = collections.Counter()
    for i in range(count):
        s = socket.socket(); s.settimeout(3)
        if source == "spread":
            s.bind((f"203.0.113.{100 + i % 100}", 0))
        elif source:
            s.bind((source, 0))
        try:
            s.connect((ip, port)); s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n"); data = b""
            while chunk := s.recv(4096):
                data += chunk
            seen[json.loads(data.split(b"\\r\\n\\r\\n", 1)[1])["ecs"]] += 1
        except (OSError, ValueError) as exc:
            seen[type(exc).__name__] += 1
        finally:
            s.close()
    print(json.dumps(seen))
    """
)
# N connections at once (non-blocking), how many were accepted within 0.8 s: under the SYN retransmit.
BURST = textwrap.dedent(
    """\
    import select, socket, sys, time
    ip, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    socks = []
    for i in range(count):
        s = socket.socket(); s.setblocking(False); s.bind((f"203.0.113.{2 + i % 100}", 0))
        s.connect_ex((ip, port)); socks.append(s)
    deadline, done = time.monotonic() + 0.8, set()
    while time.monotonic() < deadline and len(done) < count:
        _, writable, _ = select.select([], [s for s in socks if s not in done], [], 0.1)
        done.update(writable)
    print(sum(1 for s in done if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0))
    """
)
# Connects, then waits for an answer that should never come: "handshake" or "answered" or "timeout".
HANDSHAKE_ONLY = textwrap.dedent(
    """\
    import socket, sys
    s = socket.socket(); s.settimeout(2)
    try:
        s.connect((sys.argv[1], int(sys.argv[2])))
    except OSError as exc:
        print(type(exc).__name__); sys.exit()
    s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
    try:
        print("answered" if s.recv(100) else "closed")
    except TimeoutError:
        print("handshake")
    """
)
CLIENT_FROM = textwrap.dedent(
    """\
    import json, socket, sys
    s = socket.socket(); s.settimeout(2); s.bind((sys.argv[3], 0))
    try:
        s.connect((sys.argv[1], int(sys.argv[2]))); s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n"); print(s.recv(4096).decode())
    except OSError as exc:
        print(type(exc).__name__)
    """
)


def _teardown(emu: Emu) -> None:
    down = subprocess.run(
        [*ACKNET, "down", "--name", emu.name, "--state", str(emu.state)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert down.returncode == 0, f"acknet down failed:\n{down.stdout}\n{down.stderr}"
    assert not netns_of(emu.prefix), f"namespaces of {emu.name} left behind"
    assert not processes_mentioning(str(emu.state)), f"processes of {emu.name} left behind"


def _new_emu(tmp_path_factory: pytest.TempPathFactory) -> Emu:
    name = "td" + secrets.token_hex(3)
    assert not netns_of(f"{name}-")
    tmp = tmp_path_factory.mktemp(name)
    return Emu(name, tmp / "state", tmp)


@pytest.fixture(scope="module")
def slb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emu]:
    emu = _new_emu(tmp_path_factory)
    try:
        files = emu.tmp / "slb.yaml"
        files.write_text(FILES)
        emu.up(files)
        yield emu
    finally:
        _teardown(emu)


def many(emu: Emu, target: str, ip: str, port: int, count: int, source: str = "") -> dict[str, int]:
    """``count`` connections one after the other; ``source`` "spread" rotates over 203.0.113.100-199."""
    run = emu.py(target, MANY, ip, str(port), str(count), source, timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)  # type: ignore[no-any-return]


def backends(emu: Emu, lb: str, listener: str) -> dict[str, dict[str, Any]]:
    item = next(i for i in emu.get("slb") if i["name"] == lb)
    return {b["server"]: b for b in item["backends"] if b["listener"] == listener}


class _Block:
    """A drop rule in one backend's namespace: the backend stops answering (TCP 8080 dropped)."""

    def __init__(self, emu: Emu, ecs: str) -> None:
        self.netns = names.ecs_netns(emu.name, ecs)

    def __enter__(self) -> _Block:
        rule = "{ chain in { type filter hook input priority -300; tcp dport 8080 drop; }; }"
        subprocess.run(
            ["ip", "netns", "exec", self.netns, "nft", "add", "table", "ip", "slbtestblock", rule], check=True
        )
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(
            ["ip", "netns", "exec", self.netns, "nft", "delete", "table", "ip", "slbtestblock"], check=True
        )


def test_get_slb_lists_instances_listeners_and_backends(slb: Emu) -> None:
    items = {i["name"]: i for i in slb.get("slb")}
    assert set(items) == {"pub", "priv"}
    pub, priv = items["pub"], items["priv"]
    assert (pub["address"], pub["addressType"], priv["address"], priv["addressType"]) == (
        PUB,
        "internet",
        PRIV,
        "intranet",
    )
    assert [(li["protocol"], li["port"], li["scheduler"]) for li in pub["listeners"]] == [
        ("tcp", 80, "wrr"),
        ("udp", 53, "wrr"),
        ("tcp", 81, "sch"),
        ("tcp", 82, "wrr"),
        ("tcp", 83, "wlc"),
        ("tcp", 84, "wlc"),
    ]
    for b in pub["backends"]:
        assert {"server", "port", "weight", "healthy"} <= b.keys()
    tcp80 = backends(slb, "pub", "tcp/80")
    assert {k: (v["weight"], v["healthy"]) for k, v in tcp80.items()} == {
        "ecs/web-1": (75, True),
        "ecs/web-2": (25, True),
        "ecs/web-3": (0, False),  # weight 0 shows as unhealthy on layer 4 (health check FAQ)
    }
    assert names.slb_netns(slb.name, "pub") in netns_of(slb.prefix)


def test_internet_tcp_and_udp_reach_a_backend_that_sees_the_client(slb: Emu) -> None:
    reply = slb.http("internet", f"http://{PUB}/")
    assert reply.get("ecs") in ("web-1", "web-2"), reply
    assert reply["client"].startswith("203.0.113.1:")  # layer 4 keeps the client's address
    echo = slb.udp("internet", PUB, 53)
    assert echo.get("from") == PUB, echo  # the answer comes back from the VIP, through the SLB
    assert echo["reply"]["ecs"] == "web-1" and echo["reply"]["client"].startswith("203.0.113.1:")


def test_an_ecs_instance_reaches_the_intranet_slb(slb: Emu) -> None:
    seen = [slb.http("ecs/client", f"http://{PRIV}/") for _ in range(2)]
    assert {r.get("ecs") for r in seen} == {"web-1", "web-2"}, seen  # rr: one each
    assert all(r["client"].startswith("192.168.0.50:") for r in seen)
    # The intranet VIP is not on the Internet.
    run = slb.py("internet", CLIENT_FROM, PRIV, "80", "203.0.113.1")
    assert run.stdout.strip() in ("OSError", "TimeoutError"), run.stdout  # no route, or no answer


def test_wrr_shares_connections_by_weight_and_weight_zero_takes_none(slb: Emu) -> None:
    counts = many(slb, "internet", PUB, 80, 200)
    # 3:1 of 200 is 150:50; a binomial standard deviation is ~6, so +-25 is over four of them.
    assert counts.get("web-3", 0) == 0, counts
    assert sum(counts.values()) == 200 and abs(counts.get("web-1", 0) - 150) <= 25, counts
    print(f"wrr 75:25:0 over 200 connections: {counts}")


def test_sch_keeps_a_client_on_one_backend(slb: Emu) -> None:
    counts = many(slb, "internet", PUB, 81, 10)
    assert len(counts) == 1 and sum(counts.values()) == 10, counts  # one source address, one backend
    spread = many(slb, "internet", PUB, 81, 200, "spread")
    assert set(spread) == {"web-1", "web-2"}, spread  # many sources share by weight
    print(f"sch 75:25:0 over 200 source addresses: {spread}")


# wlc, live: connections opened one at a time, GAP apart, and held open. Each line of input is a step:
# "open PORT" opens one more connection to the listener (the built-in server's first JSON line names
# the backend) and keeps it; "close NAME" closes every held connection to that backend. Prints, per
# "open", the backend it reached and the connections held to each backend just before it.
HOLD = textwrap.dedent(
    """\
    import collections, json, socket, sys, time
    ip, gap, steps = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
    held, out = [], []
    for step in steps:
        verb, arg = step.split(":")
        if verb == "close":
            for s, name in [h for h in held if h[1] == arg]:
                s.close(); held.remove((s, name))
            time.sleep(gap)
            continue
        before = collections.Counter(name for _, name in held)
        s = socket.socket(); s.settimeout(3); s.connect((ip, int(arg))); s.sendall(b"hello\\n")
        line = b""
        while not line.endswith(b"\\n"):
            line += s.recv(4096)
        name = json.loads(line.split(b"\\n")[0])["ecs"]  # the JSON line, then the echo
        held.append((s, name)); out.append({"to": name, "held": dict(before)})
        time.sleep(gap)
    print(json.dumps(out))
    """
)
# Longer than two readings of the counts (WLC_INTERVAL 0.25 s) and a map load, on a busy host (the
# suite runs two test files at once on two cores).
GAP = 1.0


def hold(emu: Emu, *steps: str) -> list[dict[str, Any]]:
    run = emu.py("internet", HOLD, PUB, str(GAP), *steps, timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)  # type: ignore[no-any-return]


def misplaced(opened: list[dict[str, Any]], weights: dict[str, int]) -> list[dict[str, Any]]:
    """The connections that went to a backend more loaded, relative to weight, than another was."""
    return [
        o
        for o in opened
        if any(
            o["held"].get(o["to"], 0) * weights[other] > o["held"].get(other, 0) * weights[o["to"]]
            for other in weights
        )
    ]


def test_wlc_sends_new_connections_to_the_backend_with_fewer(slb: Emu) -> None:
    # Equal weights: 6 held connections, each to the backend with fewer at the time (3:3), then every
    # connection to web-1 closed: the next 3 all go to web-1, which has none. Tolerance: one
    # connection misplaced in each phase (a reading delayed on a busy two-core host).
    even = {"web-1": 100, "web-2": 100}
    first = hold(slb, *["open:83"] * 6, "close:web-1", *["open:83"] * 3)
    opened, refill = first[:6], first[6:]
    assert len(misplaced(opened, even)) <= 1, opened
    assert sum(o["to"] == "web-1" for o in opened) in (2, 3, 4), opened
    assert sum(o["to"] == "web-1" for o in refill) >= 2, refill
    # Unequal weights 75:25 (web-3 weight 0 takes none): relative to weight, 6:2 of 8.
    weighted = hold(slb, *["open:84"] * 8)
    counts = Counter(o["to"] for o in weighted)
    assert counts["web-3"] == 0 and abs(counts["web-1"] - 6) <= 1, weighted
    # Two misplaced of 8 at most: weighted steps hinge on every reading (wrr misplaces about half).
    assert len(misplaced(weighted, {"web-1": 75, "web-2": 25})) <= 2, weighted
    print(
        f"wlc: equal weights {[o['to'] for o in opened]}, after closing web-1's "
        f"{[o['to'] for o in refill]}; 75:25 {dict(counts)}"
    )


def test_the_backends_security_group_sees_the_client_address(slb: Emu) -> None:
    run = slb.py("internet", CLIENT_FROM, PUB, "80", "203.0.113.66")
    assert run.stdout.strip() == "TimeoutError", run.stdout  # dropped by web-sg's rule for .66
    run = slb.py("internet", CLIENT_FROM, PUB, "80", "203.0.113.67")
    assert '"client": "203.0.113.67:' in run.stdout


def test_acl_persistence_and_the_connection_rate_limit(slb: Emu) -> None:
    # A whitelist lets in only its entries.
    assert slb.py("internet", CLIENT_FROM, PUB, "82", "203.0.113.200").stdout.strip() == "TimeoutError"
    assert '"client": "203.0.113.5:' in slb.py("internet", CLIENT_FROM, PUB, "82", "203.0.113.5").stdout
    # persistenceTimeout: one client stays on one backend (without it, 20 in a row on one is 0.3%).
    counts = many(slb, "internet", PUB, 82, 20, "203.0.113.6")
    assert len(counts) == 1 and sum(counts.values()) == 20, counts
    time.sleep(1.5)  # the limiter's bucket refills
    # connectionRateLimit 20/s: of 80 new connections at once, about 20 get in; the rest are dropped
    # and counted.
    run = slb.py("internet", BURST, PUB, "82", "80")
    accepted = int(run.stdout.strip())
    assert 15 <= accepted <= 45, run.stdout
    listener = next(
        li for li in next(i for i in slb.get("slb") if i["name"] == "pub")["listeners"] if li["port"] == 82
    )
    assert listener["droppedConnections"] >= 80 - accepted - 5, listener
    print(
        f"rate limit 20/s: {accepted} of 80 simultaneous connections accepted, {listener['droppedConnections']} dropped"
    )


def test_a_failing_backend_leaves_within_the_window_and_comes_back(slb: Emu) -> None:
    with _Block(slb, "web-2"):
        start = time.monotonic()
        slb.wait_for(
            "web-2 unhealthy",
            lambda: not backends(slb, "pub", "tcp/80")["ecs/web-2"]["healthy"],
            FAILURE_WINDOW + SLACK,
        )
        removed = time.monotonic() - start
        counts = many(slb, "internet", PUB, 80, 40)
        assert counts == {"web-1": 40}, counts
        # The intranet instance's HTTP check took it out too.
        slb.wait_for(
            "web-2 unhealthy on priv", lambda: not backends(slb, "priv", "tcp/80")["ecs/web-2"]["healthy"]
        )
    start = time.monotonic()
    slb.wait_for("web-2 healthy", lambda: backends(slb, "pub", "tcp/80")["ecs/web-2"]["healthy"], 2 + SLACK)
    back = time.monotonic() - start
    counts = many(slb, "internet", PUB, 80, 100)
    assert counts.get("web-2", 0) > 0, counts
    print(
        f"removed after {removed:.1f}s (window {FAILURE_WINDOW:g}s), back after {back:.1f}s (threshold 2 x 1s)"
    )


def test_with_no_healthy_backend_tcp_gets_the_handshake_only_and_udp_nothing(slb: Emu) -> None:
    with _Block(slb, "web-1"), _Block(slb, "web-2"):
        for ecs in ("web-1", "web-2"):
            slb.wait_for(
                f"{ecs} unhealthy",
                lambda ecs=ecs: not backends(slb, "pub", "tcp/80")[f"ecs/{ecs}"]["healthy"],  # type: ignore[misc]
                FAILURE_WINDOW + SLACK,
            )
        run = slb.py("internet", HANDSHAKE_ONLY, PUB, "80")
        assert run.stdout.strip() == "handshake", run.stdout
    slb.wait_for("web-1 healthy", lambda: backends(slb, "pub", "tcp/80")["ecs/web-1"]["healthy"], 2 + SLACK)
    assert slb.http("internet", f"http://{PUB}/").get("ecs") in ("web-1", "web-2")


SERVICE_FILES = """\
apiVersion: acknet.io/v1
kind: VPC
metadata: {name: vpc}
spec: {cidrBlock: 192.168.0.0/16}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {name: node-h}
spec: {vpc: vpc, cidrBlock: 192.168.0.0/24, zoneId: cn-hangzhou-h}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {name: pod-h}
spec: {vpc: vpc, cidrBlock: 192.168.32.0/20, zoneId: cn-hangzhou-h}
---
apiVersion: acknet.io/v1
kind: SecurityGroup
metadata: {name: cluster-sg}
spec:
  vpc: vpc
  rules:
  - {direction: ingress, policy: accept, priority: 1, ipProtocol: tcp, portRange: 30000/32767, sourceCidrIp: 0.0.0.0/0}
  - {direction: ingress, policy: accept, priority: 1, ipProtocol: tcp, portRange: 8080/8080, sourceCidrIp: 0.0.0.0/0}
---
apiVersion: acknet.io/v1
kind: Cluster
metadata: {name: ack}
spec:
  vpc: vpc
  podVSwitches: [pod-h]
  securityGroups: [cluster-sg]
  addons: []
  nodePools:
  - {name: default, vswitches: [node-h], count: 2}
---
apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: demo}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      nodeSelector: {kubernetes.io/hostname: ack-default-0}
      containers: [{name: main, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: web-local
  namespace: demo
  annotations:
    service.beta.kubernetes.io/alibaba-cloud-loadbalancer-address-type: intranet
    service.beta.kubernetes.io/alibaba-cloud-loadbalancer-scheduler: wrr
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: web-eni
  namespace: demo
  annotations: {service.beta.kubernetes.io/backend-type: eni}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"""


def test_a_loadbalancer_service_gets_its_own_clb(tmp_path_factory: pytest.TempPathFactory) -> None:
    emu = _new_emu(tmp_path_factory)
    try:
        files = emu.tmp / "svc.yaml"
        files.write_text(SERVICE_FILES)
        emu.up(files)
        services = {s["metadata"]["name"]: s for s in emu.get("services")}
        vip = services["web"]["status"]["loadBalancer"]["ingress"][0]["ip"]
        local_vip = services["web-local"]["status"]["loadBalancer"]["ingress"][0]["ip"]
        items = {i["name"]: i for i in emu.get("slb")}
        assert items["demo/web"]["address"] == vip and items["demo/web"]["addressType"] == "internet"
        node_port = services["web"]["spec"]["ports"][0]["nodePort"]
        # Cluster: every node on the NodePort at weight 100, CCM's rr.
        assert [(b["server"], b["port"], b["weight"]) for b in items["demo/web"]["backends"]] == [
            ("ecs/ack-default-0", node_port, 100),
            ("ecs/ack-default-1", node_port, 100),
        ]
        assert items["demo/web"]["listeners"][0]["scheduler"] == "rr"
        reply = emu.http("internet", f"http://{vip}/")
        assert reply.get("namespace") == "demo" and reply.get("node") == "ack-default-0", reply
        # Local: only the node with the ready pod, and the pod sees the client.
        assert items["demo/web-local"]["addressType"] == "intranet"
        emu.wait_for(
            "the Local Service's backend",
            lambda: (
                [b["server"] for i in emu.get("slb") if i["name"] == "demo/web-local" for b in i["backends"]]
                == ["ecs/ack-default-0"]
            ),
        )
        reply = emu.http("ecs/ack-default-1", f"http://{local_vip}/")
        node1 = next(n["ip"] for n in emu.get("nodes") if n["name"] == "ack-default-1")
        assert reply.get("client", "").startswith(f"{node1}:"), reply
        # ENI mode (Terway): the pod itself is the backend, on its targetPort; no NodePort, no SNAT.
        pod_ip = next(p for k, p in emu.pods().items() if k.startswith("demo/web-"))["status"]["podIP"]
        eni_vip = services["web-eni"]["status"]["loadBalancer"]["ingress"][0]["ip"]
        emu.wait_for(
            "the ENI-mode backend",
            lambda: (
                [
                    (b["server"], b["port"])
                    for i in emu.get("slb")
                    if i["name"] == "demo/web-eni"
                    for b in i["backends"]
                ]
                == [(f"eni/{pod_ip}", 8080)]
            ),
        )
        reply = emu.http("internet", f"http://{eni_vip}/")
        assert reply.get("podIP") == pod_ip and reply.get("client", "").startswith("203.0.113.1:"), reply
    finally:
        _teardown(emu)


# Steady requests for a while: one every ``gap`` seconds, each with a 1 s timeout; prints
# {"start": wall clock, "results": [[seconds since start, "ok" | error], ...]}.
LOAD = textwrap.dedent(
    """\
    import json, socket, sys, time
    ip, seconds, gap, patience = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    start, wall, out = time.monotonic(), time.time(), []
    while (now := time.monotonic() - start) < seconds:
        s = socket.socket(); s.settimeout(patience)
        try:
            s.connect((ip, 80)); s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n"); data = b""
            while chunk := s.recv(4096):
                data += chunk
            out.append([now, "ok" if b"podIP" in data else "bad-reply"])
        except OSError as exc:
            out.append([now, type(exc).__name__])
        finally:
            s.close()
        time.sleep(max(0.0, gap - (time.monotonic() - start - now)))
    print(json.dumps({"start": wall, "results": out}))
    """
)

RELIABILITY_FILES = (
    SERVICE_FILES.replace("replicas: 1", "replicas: 2")
    .replace("      nodeSelector: {kubernetes.io/hostname: ack-default-0}\n", "")
    .replace(
        "  annotations: {service.beta.kubernetes.io/backend-type: eni}\n",
        "  annotations:\n"
        "    service.beta.kubernetes.io/backend-type: eni\n"
        '    service.beta.kubernetes.io/alibaba-cloud-loadbalancer-health-check-interval: "1"\n'
        '    service.beta.kubernetes.io/alibaba-cloud-loadbalancer-health-check-connect-timeout: "1"\n'
        '    service.beta.kubernetes.io/alibaba-cloud-loadbalancer-unhealthy-threshold: "2"\n',
    )
)


def background_load(
    emu: Emu, ip: str, seconds: int, gap: float = 0.05, patience: float = 1.0
) -> subprocess.Popen[str]:
    """LOAD from the Internet namespace, 20 requests a second, in the background (ended by itself).
    ``patience``: seconds a request may take before it counts as failed."""
    command = [*ACKNET, "exec", "internet", "--name", emu.name, "--state", str(emu.state), "--"]
    return subprocess.Popen(
        [*command, sys.executable, "-c", LOAD, ip, str(seconds), str(gap), str(patience)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


class _PodBlock(_Block):
    """The same drop rule in a pod's namespace: the pod hangs."""

    def __init__(self, emu: Emu, pod: str) -> None:
        self.netns = names.pod_netns(emu.name, *pod.split("/"))


def test_reliability_under_load(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A load generator in the Internet sends steady requests through an SLB while (1) a backend pod
    of an ENI-mode Service hangs (its port dropped): failures stop within the failure window and none
    come after; (2) a pod of a Cluster Service and (3) one of the ENI-mode Service are deleted
    (graceful): no request fails."""
    emu = _new_emu(tmp_path_factory)
    try:
        files = emu.tmp / "svc.yaml"
        files.write_text(RELIABILITY_FILES)
        emu.up(files)
        services = {s["metadata"]["name"]: s for s in emu.get("services")}
        eni_vip = services["web-eni"]["status"]["loadBalancer"]["ingress"][0]["ip"]
        vip = services["web"]["status"]["loadBalancer"]["ingress"][0]["ip"]
        pods = {k: p for k, p in emu.pods().items() if k.startswith("demo/web-")}
        assert len(pods) == 2
        emu.wait_for(
            "both pods as ENI backends",
            lambda: (
                len([b for i in emu.get("slb") if i["name"] == "demo/web-eni" for b in i["backends"]]) == 2
            ),
        )

        # (1) A hung pod behind the ENI-mode Service: health checks take it out.
        victim = next(iter(pods))
        load = background_load(emu, eni_vip, 12)
        time.sleep(3)
        block = _PodBlock(emu, victim)
        with block:
            blocked_at = time.time()
            out, _ = load.communicate(timeout=60)
        report = json.loads(out)
        results = report["results"]
        failures = [t for t, status in results if status != "ok"]
        block_t = blocked_at - report["start"]  # when the hang began, on the generator's clock
        late = [t for t in failures if t > block_t + FAILURE_WINDOW + SLACK]
        assert failures and not late, (block_t, failures)
        assert all(t >= block_t - 1.0 for t in failures), (block_t, failures)  # 1.0: a request in flight
        print(
            f"hung ENI backend: {len(results)} requests, {len(failures)} failed, the last "
            f"{max(failures) - block_t:.1f}s after the hang (window {FAILURE_WINDOW:g}s), none after"
        )

        # (2) A graceful delete behind the Cluster Service: kube-proxy drains it, the SLB sees nothing.
        # A graceful delete may make a request slow on a busy host (the suite runs two files at once),
        # never fail: 5 s is more than the SLB's failure window, so a request sent to a pod that is gone
        # still fails (its SYNs keep going there) while a merely slow one does not.
        load = background_load(emu, vip, 10, patience=5.0)
        time.sleep(2)
        other = next(k for k in pods if k != victim)
        emu.acknet("delete", "pod", other, timeout=120)
        out, _ = load.communicate(timeout=60)
        results = json.loads(out)["results"]
        failures = [(t, s) for t, s in results if s != "ok"]
        print(f"graceful delete behind the Cluster Service: {len(results)} requests, {len(failures)} failed")
        assert not failures, failures

        # (3) A graceful delete behind the ENI-mode Service: the SLB itself stops sending new connections
        # to the pod before it stops (engine._drain_leaving), so again no request fails.
        def eni_backends() -> list[tuple[str, bool]]:
            return [
                (b["server"], b["healthy"])
                for i in emu.get("slb")
                if i["name"] == "demo/web-eni"
                for b in i["backends"]
            ]

        emu.wait_for(
            "two healthy ENI backends again",
            lambda: len(eni_backends()) == 2 and all(ok for _, ok in eni_backends()),
            30,
        )
        leaving = next(k for k in emu.pods() if k.startswith("demo/web-"))
        load = background_load(emu, eni_vip, 10, gap=0.01, patience=5.0)
        time.sleep(2)
        emu.acknet("delete", "pod", leaving, timeout=120)
        out, _ = load.communicate(timeout=60)
        results = json.loads(out)["results"]
        failures = [(t, s) for t, s in results if s != "ok"]
        print(f"graceful delete behind the ENI-mode Service: {len(results)} requests, {len(failures)} failed")
        assert not failures, failures
    finally:
        _teardown(emu)
