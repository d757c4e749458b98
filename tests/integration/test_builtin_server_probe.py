"""The built-in server and the probe against each other, in namespaces made here.

Topology: nine "pod" namespaces, each with eth0 = 10.231.7.(10+i)/24 on a veth whose other end sits on
a bridge inside a hub namespace. Nothing is created in the host namespace; every namespace and the
server process are removed even when a test fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from acknet.dataplane.apply.builtin_server import (
    BuiltinEndpoint,
    BuiltinServerClient,
    start_builtin_server,
    stop_builtin_server,
)
from acknet.dataplane.apply.nsutil import NetnsSwitcher
from acknet.errors import DataplaneError
from acknet.observe.probe import ProbeJob, run_probes, verdicts

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

POD_COUNT = 9


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def delete_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


@dataclass
class Topology:
    prefix: str
    hub: str
    pods: list[str]
    ips: list[str]

    def identity(self, i: int) -> dict[str, str]:
        return {"pod": f"p{i}", "namespace": "x", "node": "node-1", "podIP": self.ips[i]}

    def endpoint(self, i: int, port: int, protocol: str = "TCP") -> BuiltinEndpoint:
        return BuiltinEndpoint(self.pods[i], self.ips[i], port, protocol, self.identity(i))

    def job(self, src: int, dst: int, port: int, protocol: str = "TCP", http: bool = True) -> ProbeJob:
        return ProbeJob(
            self.pods[src],
            self.ips[dst],
            port,
            protocol,
            http=http and protocol == "TCP",
            source=f"x/p{src}",
            target=f"x/p{dst}",
        )


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    prefix = "bst" + secrets.token_hex(3)
    made: list[str] = []
    try:
        hub = f"{prefix}-hub"
        ip("netns", "add", hub)
        made.append(hub)
        ip("-n", hub, "link", "add", "br0", "type", "bridge")
        ip("-n", hub, "link", "set", "br0", "up")
        pods, ips = [], []
        for i in range(POD_COUNT):
            ns, addr = f"{prefix}-p{i}", f"10.231.7.{10 + i}"
            ip("netns", "add", ns)
            made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", hub, "link", "add", f"v{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("-n", hub, "link", "set", f"v{i}", "master", "br0", "up")
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            pods.append(ns)
            ips.append(addr)
        yield Topology(prefix, hub, pods, ips)
    finally:
        for ns in reversed(made):
            delete_netns(ns)
        left = subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True).stdout
        assert prefix not in left, f"namespaces left behind: {left}"


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    client: BuiltinServerClient
    control: Path


@pytest.fixture
def server(topo: Topology) -> Iterator[Server]:
    tmp = Path(tempfile.mkdtemp(prefix="bst"))
    control = tmp / "ctl.sock"
    proc = start_builtin_server(control, sweep_seconds=0.2)
    try:
        yield Server(proc, BuiltinServerClient(control), control)
    finally:
        stop_builtin_server(proc.pid)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def test_tcp_answers_http_naming_the_pod_and_the_client(topo: Topology, server: Server) -> None:
    assert server.client.add(topo.endpoint(i, 80) for i in range(POD_COUNT)) == POD_COUNT

    http, bare = run_probes([topo.job(0, 1, 80), topo.job(0, 1, 80, http=False)])

    assert http.allowed and http.answered, http
    assert http.reply is not None
    assert http.reply["pod"] == "p1"
    assert http.reply["podIP"] == topo.ips[1]
    assert http.reply["port"] == 80
    assert http.reply["client"].startswith(topo.ips[0] + ":")
    assert bare.allowed and bare.connected and not bare.answered, bare


def test_udp_echoes_json(topo: Topology, server: Server) -> None:
    server.client.add([topo.endpoint(2, 5353, "UDP")])

    (result,) = run_probes([topo.job(3, 2, 5353, "UDP")])

    assert result.allowed, result
    assert result.reply is not None
    assert result.reply["pod"] == "p2"
    assert result.reply["client"].startswith(topo.ips[3] + ":")


def test_closed_port_is_refused(topo: Topology, server: Server) -> None:
    server.client.add([topo.endpoint(1, 80)])

    tcp, udp = run_probes([topo.job(0, 1, 81), topo.job(0, 1, 81, "UDP")])

    assert (tcp.allowed, tcp.error) == (False, "refused"), tcp
    assert (udp.allowed, udp.error) == (False, "refused"), udp


def test_dropped_port_times_out_in_parallel(topo: Topology, server: Server) -> None:
    target = 2
    server.client.add([topo.endpoint(target, 82), topo.endpoint(target, 82, "UDP"), topo.endpoint(1, 80)])
    rules = """table inet bst_drop {
        chain input {
            type filter hook input priority 0; policy accept;
            tcp dport 82 drop
            udp dport 82 drop
        }
    }
    """
    subprocess.run(
        ["ip", "netns", "exec", topo.pods[target], "nft", "-f", "-"], input=rules, text=True, check=True
    )
    sources = [i for i in range(POD_COUNT) if i != target]
    dropped = [topo.job(i, target, 82, proto) for i in sources for proto in ("TCP", "UDP")]
    fine = [topo.job(i, 1, 80) for i in sources if i != 1]

    began = time.monotonic()
    results = run_probes(dropped + fine, timeout=1.0)
    elapsed = time.monotonic() - began

    timed_out = results[: len(dropped)]
    assert {r.error for r in timed_out} == {"timeout"}, [r for r in timed_out if r.error != "timeout"]
    assert all(r.allowed for r in results[len(dropped) :])
    # Concurrency, not speed: every timeout was still waiting when the last one started.
    assert max(r.started for r in timed_out) < min(r.started + r.seconds for r in timed_out)
    print(f"\n{len(dropped)} dropped + {len(fine)} answered probes took {elapsed:.2f} s (timeout 1 s)")


def test_removed_endpoint_is_refused(topo: Topology, server: Server) -> None:
    client = server.client
    client.add([topo.endpoint(3, 80), topo.endpoint(3, 80, "UDP"), topo.endpoint(3, 81)])
    assert all(r.allowed for r in run_probes([topo.job(0, 3, 80), topo.job(0, 3, 80, "UDP")]))

    assert client.remove([topo.endpoint(3, 80)]) == 1
    tcp, udp = run_probes([topo.job(0, 3, 80), topo.job(0, 3, 80, "UDP")])
    assert tcp.error == "refused" and udp.allowed

    assert client.remove(netns=[topo.pods[3]]) == 2
    (udp,) = run_probes([topo.job(0, 3, 80, "UDP")])
    assert udp.error == "refused"
    assert client.list() == []


def test_ecs_identity_on_the_wildcard_address(topo: Topology, server: Server) -> None:
    server.client.add([BuiltinEndpoint(topo.pods[4], "0.0.0.0", 8080, "TCP", {"ecs": "ecs-1"})])

    (result,) = run_probes([topo.job(5, 4, 8080)])

    assert result.reply is not None
    assert result.reply["ecs"] == "ecs-1"
    assert result.reply["client"].startswith(topo.ips[5] + ":")


def test_add_is_idempotent_and_names_failures(topo: Topology, server: Server) -> None:
    client = server.client
    assert client.add([topo.endpoint(6, 80)]) == 1
    assert client.add([topo.endpoint(6, 80)]) == 0
    renamed = BuiltinEndpoint(topo.pods[6], topo.ips[6], 80, "TCP", {"pod": "renamed"})
    assert client.add([renamed]) == 0
    assert [e.identity for e in client.list()] == [{"pod": "renamed"}]
    (result,) = run_probes([topo.job(7, 6, 80)])
    assert result.reply is not None and result.reply["pod"] == "renamed"

    with pytest.raises(DataplaneError) as missing:
        client.add([BuiltinEndpoint(topo.prefix + "-nope", "10.231.7.99", 80)])
    assert missing.value.errno == 2  # ENOENT: no such namespace
    with pytest.raises(DataplaneError) as taken:
        client.add([topo.endpoint(6, 80), BuiltinEndpoint(topo.pods[6], "0.0.0.0", 80, "TCP")])
    assert taken.value.errno == 98  # EADDRINUSE: the pod IP already holds port 80
    assert len(client.list()) == 1


def test_endpoints_of_a_deleted_namespace_are_dropped(topo: Topology, server: Server) -> None:
    doomed = topo.prefix + "-gone"
    ip("netns", "add", doomed)
    try:
        ip("-n", doomed, "link", "set", "lo", "up")
        server.client.add([BuiltinEndpoint(doomed, "127.0.0.1", 80)])
        assert len(server.client.list()) == 1
    finally:
        delete_netns(doomed)
    deadline = time.monotonic() + 5
    while server.client.list() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.client.list() == []


def test_matrix_81_pairs_by_4_ports(topo: Topology, server: Server) -> None:
    ports = [(80, "TCP"), (81, "TCP"), (80, "UDP"), (81, "UDP")]
    server.client.add(topo.endpoint(i, p, proto) for i in range(POD_COUNT) for p, proto in ports)
    jobs = [
        topo.job(src, dst, p, proto)
        for src in range(POD_COUNT)
        for dst in range(POD_COUNT)
        for p, proto in ports
    ]

    began = time.monotonic()
    results = run_probes(jobs)
    elapsed = time.monotonic() - began

    print(f"\n81 pairs x 4 ports = {len(jobs)} probes in {elapsed:.2f} s")
    assert [r for r in results if not r.allowed] == []
    assert all(r.reply is not None and r.reply["pod"] == r.job.target[2:] for r in results)
    doc = verdicts(results)
    assert len(doc["verdicts"]) == len(jobs)
    assert doc["verdicts"][0] == {
        "from": "x/p0",
        "to": "x/p0",
        "port": 80,
        "protocol": "TCP",
        "allowed": True,
    }


def test_stop_by_pid(topo: Topology, server: Server) -> None:
    pid = server.proc.pid
    server.client.add([topo.endpoint(8, 80)])

    assert stop_builtin_server(pid)
    assert server.proc.wait(timeout=5) == 0
    assert not server.control.exists()
    assert not stop_builtin_server(pid)
    (result,) = run_probes([topo.job(0, 8, 80)])
    assert result.error == "refused"


def test_second_server_on_the_same_socket_refuses(topo: Topology, server: Server) -> None:
    with pytest.raises(DataplaneError, match="one is running"):
        start_builtin_server(server.control, log_path=server.control.with_name("second.log"))
    assert server.client.ping()["pid"] == server.proc.pid


def test_other_bytes_get_a_json_line_then_an_echo(topo: Topology, server: Server) -> None:
    server.client.add([topo.endpoint(1, 7)])
    with NetnsSwitcher() as switcher:
        sock = switcher.socket(topo.pods[0], socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(2)
        sock.connect((topo.ips[1], 7))
        sock.sendall(b"hello\n")
        data = b""
        while data.count(b"\n") < 2:
            data += sock.recv(4096)
    line, echo = data.split(b"\n", 1)
    assert json.loads(line)["pod"] == "p1"
    assert echo == b"hello\n"
