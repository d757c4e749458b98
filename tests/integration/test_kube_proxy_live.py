"""The rendered kube-proxy table in a real namespace: ClusterIP, NodePort, reject without endpoints, hairpin.

Topology, all in throwaway namespaces named ``kpl<hex>-…`` (nothing in the host namespace):

    pod "a" (172.20.0.5/24) ──veth── node (pa 172.20.0.1/24, pb 172.20.1.1/24, veth eth0 192.168.0.10,
    pod "b" (172.20.1.5/24) ──veth──       default route out of eth0; table ip kube-proxy loaded)

Pod b runs a TCP server on 8080 that answers ``<its name> <the peer address it saw>``: what the server
saw tells whether the packet was translated and masqueraded. Pod a is the client.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Literal

import pytest

from acknet.controllers.state import (
    EndpointAddress,
    EndpointSlicePort,
    Eni,
    Instance,
    Plan,
    PlannedEndpointSlice,
    PlannedService,
    PlannedServicePort,
)
from acknet.dataplane.render.kube_proxy import render_kube_proxy, replace_script
from acknet.model.cloud import Cluster
from acknet.model.resources import Resources

pytestmark = pytest.mark.root

NODE_IP, POD_A, POD_B, GW_A, GW_B = "192.168.0.10", "172.20.0.5", "172.20.1.5", "172.20.0.1", "172.20.1.1"
WEB_IP, EMPTY_IP, SELF_IP, NODE_PORT = "172.21.0.20", "172.21.0.24", "172.21.0.25", 30080

SERVER = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 8080)); s.listen(64)
    print("ready", flush=True)
    while True:
        c, peer = s.accept()
        with c:
            c.sendall(f"{sys.argv[1]} {peer[0]}".encode())
    """
)

CLIENT = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(); s.settimeout(3.0)
    try:
        s.connect((sys.argv[1], int(sys.argv[2])))
        print(s.recv(256).decode())
    except ConnectionRefusedError:
        print("refused")
    except TimeoutError:
        print("timeout")
    """
)


def run(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True, text=True)


def in_ns(netns: str, *args: str) -> None:
    run("ip", "netns", "exec", netns, *args)


@dataclass(frozen=True)
class Net:
    node: str
    pod_a: str
    pod_b: str


def plan() -> Plan:
    cluster = Cluster.model_validate(
        {
            "apiVersion": "acknet.io/v1",
            "kind": "Cluster",
            "metadata": {"name": "ack"},
            "spec": {
                "vpc": "prod",
                "networkPlugin": "flannel",
                "podCidr": "172.20.0.0/16",
                "serviceCidr": "172.21.0.0/20",
                "nodePools": [{"name": "default", "instanceType": "ecs.g7.xlarge", "vswitches": ["node"]}],
            },
        }
    )
    ip = IPv4Address(NODE_IP)
    eni = Eni("eni-node-1", "node-1", 0, "node", "02:00:00:00:00:01", ip, (ip,), ())
    node = Instance("node-1", "ecs.g7.xlarge", "cn-hangzhou-h", "node", ip, (), (eni,), cluster="ack")

    def service(name: str, cluster_ip: str, kind: Literal["ClusterIP", "NodePort"]) -> PlannedService:
        node_port = NODE_PORT if kind == "NodePort" else None
        ports = (PlannedServicePort("http", "TCP", 80, "http", node_port),)
        return PlannedService("ack", "shop", name, kind, IPv4Address(cluster_ip), ports, selector={})

    def endpoints(name: str, *ips: str) -> PlannedEndpointSlice:
        addrs = tuple(EndpointAddress(IPv4Address(i), f"shop/{i}", "node-1") for i in ips)
        return PlannedEndpointSlice(
            "ack", "shop", f"{name}-abcde", name, addrs, (EndpointSlicePort("http", 8080, "TCP"),)
        )

    return Plan(
        resources=Resources(clusters={"ack": cluster}),
        vswitches=(),
        instances=(node,),
        pods=(),
        services=(
            service("web", WEB_IP, "NodePort"),
            service("empty", EMPTY_IP, "ClusterIP"),
            service("self", SELF_IP, "ClusterIP"),
        ),
        endpoint_slices=(endpoints("web", POD_B), endpoints("empty"), endpoints("self", POD_B)),
        routes=(),
    )


@pytest.fixture
def net() -> Iterator[Net]:
    prefix = "kpl" + secrets.token_hex(3)
    n = Net(f"{prefix}-node", f"{prefix}-a", f"{prefix}-b")
    made: list[str] = []
    try:
        for ns in (n.node, n.pod_a, n.pod_b):
            run("ip", "netns", "add", ns)
            made.append(ns)
        in_ns(n.node, "ip", "link", "set", "lo", "up")
        in_ns(n.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # The node's "ENI": a veth whose other end stays unplugged in the node (no dummy module here).
        in_ns(n.node, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "uplink")
        in_ns(n.node, "ip", "addr", "add", f"{NODE_IP}/32", "dev", "eth0")
        in_ns(n.node, "ip", "link", "set", "eth0", "up")
        in_ns(n.node, "ip", "link", "set", "uplink", "up")
        # Unknown destinations (an unallocated or endpoint-less ClusterIP) are forwarded, so they meet the
        # filter chains, as on a real node with a default route.
        in_ns(n.node, "ip", "route", "add", "default", "dev", "eth0")
        for pod, ifname, addr, gw in ((n.pod_a, "pa", POD_A, GW_A), (n.pod_b, "pb", POD_B, GW_B)):
            # The veth is made inside the node namespace and one end moved into the pod's: never the host's.
            in_ns(n.node, "ip", "link", "add", ifname, "type", "veth", "peer", "name", "eth0", "netns", pod)
            in_ns(n.node, "ip", "addr", "add", f"{gw}/24", "dev", ifname)
            in_ns(n.node, "ip", "link", "set", ifname, "up")
            in_ns(pod, "ip", "link", "set", "lo", "up")
            in_ns(pod, "ip", "addr", "add", f"{addr}/24", "dev", "eth0")
            in_ns(pod, "ip", "link", "set", "eth0", "up")
            in_ns(pod, "ip", "route", "add", "default", "via", gw)
        text = render_kube_proxy(plan(), "node-1", "ack", "acknet")
        subprocess.run(
            ["ip", "netns", "exec", n.node, "nft", "-f", "-"],
            input=replace_script(text),
            text=True,
            check=True,
        )
        yield n
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "delete", ns], check=False)


@pytest.fixture
def server(net: Net) -> Iterator[None]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", net.pod_b, sys.executable, "-c", SERVER, "pod-b"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield
    finally:
        proc.terminate()  # our own child, by its PID
        proc.wait(timeout=5)


def connect(netns: str, dst: str, port: int) -> tuple[str, float]:
    start = time.monotonic()
    out = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", CLIENT, dst, str(port)],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip(), time.monotonic() - start


def test_cluster_ip_reaches_the_endpoint_with_the_client_address(net: Net, server: None) -> None:
    for _ in range(3):
        assert connect(net.pod_a, WEB_IP, 80)[0] == f"pod-b {POD_A}"


def test_service_without_endpoints_refuses_at_once(net: Net) -> None:
    answer, took = connect(net.pod_a, EMPTY_IP, 80)
    assert answer == "refused"
    assert took < 1.5


def test_unknown_port_of_a_cluster_ip_refuses(net: Net, server: None) -> None:
    assert connect(net.pod_a, WEB_IP, 81)[0] == "refused"


def test_node_port_on_the_node_ip_is_masqueraded(net: Net, server: None) -> None:
    # externalTrafficPolicy Cluster: source NAT to the node (its address towards the endpoint).
    assert connect(net.pod_a, NODE_IP, NODE_PORT)[0] == f"pod-b {GW_B}"


def test_node_port_from_the_node_itself(net: Net, server: None) -> None:
    assert connect(net.node, NODE_IP, NODE_PORT)[0].startswith("pod-b ")


def test_hairpin_a_pod_reaches_itself_through_its_service(net: Net, server: None) -> None:
    assert connect(net.pod_b, SELF_IP, 80)[0] == f"pod-b {GW_B}"


def test_nothing_left_behind() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert "kpl" not in listing
