"""kube-proxy's table at scale: programming time, and the cost of a ClusterIP on the packet path.

Builds only what the figures need, in throwaway namespaces ``svcb<hex>-…`` (never the host's):

    client ns (172.20.0.5) ──veth── node ns (kube-proxy table) ──veth── server ns (172.20.1.5)

and measures, with N Services x 3 endpoints rendered by ``render/kube_proxy.py`` (the one Service on
the measured path has its single endpoint in the server namespace; the others point at unused
addresses):

1. programming from scratch: render (cold fragment cache) and one ``nft -f`` load of the whole table;
2. changing one endpoint of one Service among N: render (warm cache), ``update_script`` (the partial
   sync) and its transaction; a whole-table replacement beside it for comparison;
3. first-packet latency (TCP connect + close, each a new conntrack entry through the nat hooks) and
   TCP throughput (iperf3, one stream) through the ClusterIP, and to the pod address directly in the
   same run, with 100 and with N Services loaded. Ratios: direct / ClusterIP for latency, ClusterIP /
   direct for throughput (1.0 = the Service costs nothing; aim: at least 0.9, flat as N grows).

Safety: all commands run inside the bench's namespaces; only processes this script started are ended,
by PID; the namespaces are deleted at the end whatever happened.

    sudo .venv/bin/python bench/services.py [--services 10000] [--connects 2000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import secrets
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Network

from acknet.dataplane.apply import nftables
from acknet.dataplane.render import kube_proxy
from acknet.dataplane.render.kube_proxy import (
    ProxyEndpoint,
    ProxyInput,
    ProxyServicePort,
    render_table_data,
    replace_script,
    update_script,
)

CLIENT_IP, SERVER_IP, NODE_IP = "172.20.0.5", "172.20.1.5", "192.168.0.10"
TARGET_IP, PORT, IPERF_PORT = "172.21.0.16", 8080, 5201
SERVICE_CIDR = IPv4Network("172.21.0.0/16")


def sh(*args: str) -> str:
    return subprocess.run(list(args), check=True, capture_output=True, text=True).stdout


@contextmanager
def topology() -> Iterator[tuple[str, str, str]]:
    prefix = "svcb" + secrets.token_hex(3)
    node, client, server = f"{prefix}-node", f"{prefix}-cli", f"{prefix}-srv"
    made: list[str] = []
    try:
        for ns in (node, client, server):
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        for ns, ip, gw, short in (
            (client, CLIENT_IP, "172.20.0.1", "c"),
            (server, SERVER_IP, "172.20.1.1", "s"),
        ):
            sh(
                "ip",
                "-n",
                node,
                "link",
                "add",
                f"v{short}",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns,
            )
            sh("ip", "-n", node, "addr", "add", f"{gw}/24", "dev", f"v{short}")
            sh("ip", "-n", node, "link", "set", f"v{short}", "up")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "route", "add", "default", "via", gw)
        sh("ip", "-n", node, "addr", "add", f"{NODE_IP}/32", "dev", "lo")  # the node's own address
        sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        yield node, client, server
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "delete", ns], check=False)


def proxy_input(count: int, changed: int = -1) -> ProxyInput:
    """``count`` Services x 3 endpoints; Service 0 is the measured one (one endpoint, the server);
    Service ``changed`` has its last endpoint replaced."""
    base, pod = int(SERVICE_CIDR.network_address), int(IPv4Address("10.0.0.0"))
    ports = [
        ProxyServicePort(
            "bench",
            "target",
            "http",
            "TCP",
            IPv4Address(TARGET_IP),
            PORT,
            (ProxyEndpoint(IPv4Address(SERVER_IP), PORT, local=True),),
        )
    ]
    for i in range(1, count):
        eps = tuple(ProxyEndpoint(IPv4Address(pod + 3 * i + j), PORT, local=False) for j in range(3))
        if i == changed:
            eps = (*eps[:2], ProxyEndpoint(IPv4Address(pod + 3 * count + i), PORT, local=False))
        ports.append(ProxyServicePort("bench", f"svc{i}", "http", "TCP", IPv4Address(base + 16 + i), 80, eps))
    return ProxyInput(
        "ip",
        "node",
        IPv4Address(NODE_IP),
        (IPv4Address(NODE_IP),),
        (IPv4Network("172.20.0.0/16"),),
        (SERVICE_CIDR,),
        tuple(ports),
    )


def cold_caches() -> None:
    kube_proxy.hash_and_truncate.cache_clear()


def program_from_scratch(node: str, count: int) -> dict[str, float]:
    inp = proxy_input(count)
    nftables.delete_table(node, "ip", "kube-proxy")  # from scratch: no table there before
    cold_caches()
    t0 = time.perf_counter()
    table = render_table_data(inp)
    text = table.text()
    t1 = time.perf_counter()
    nftables.load_script(node, replace_script(text), "kube-proxy")
    t2 = time.perf_counter()
    return {"render_s": t1 - t0, "load_s": t2 - t1, "total_s": t2 - t0}


def change_one_endpoint(node: str, count: int, rounds: int) -> dict[str, float]:
    current = render_table_data(proxy_input(count))
    nftables.load_script(node, replace_script(current.text()), "kube-proxy")
    renders, diffs, loads, totals = [], [], [], []
    for r in range(rounds):
        changed = 1 + (r * 7919) % (count - 1)
        inp = proxy_input(count, changed)  # the planner's side: not timed
        t0 = time.perf_counter()
        new = render_table_data(inp, previous=current)
        t1 = time.perf_counter()
        script = update_script(current, new)
        t2 = time.perf_counter()
        assert script
        nftables.load_script(node, script, "kube-proxy")
        t3 = time.perf_counter()
        renders.append(t1 - t0)
        diffs.append(t2 - t1)
        loads.append(t3 - t2)
        totals.append(t3 - t0)
        # And back, so the next round starts from the original table.
        back = update_script(new, current)
        assert back
        nftables.load_script(node, back, "kube-proxy")
    # The floor of any partial sync through nft: the smallest edit that needs nft's cache.
    floor = []
    for r in range(rounds):
        t0 = time.perf_counter()
        nftables.load_script(
            node, f"add element ip kube-proxy cluster-ips {{ 172.21.255.{r} }}\n", "kube-proxy"
        )
        floor.append(time.perf_counter() - t0)
    # For comparison: the same change as a whole-table replacement.
    text = replace_script(render_table_data(proxy_input(count, 1)).text())
    t0 = time.perf_counter()
    nftables.load_script(node, text, "kube-proxy")
    whole = time.perf_counter() - t0
    nftables.load_script(node, replace_script(current.text()), "kube-proxy")
    med = statistics.median
    return {
        "render_ms": med(renders) * 1e3,
        "diff_ms": med(diffs) * 1e3,
        "nft_ms": med(loads) * 1e3,
        "total_ms": med(totals) * 1e3,
        "nft_one_element_ms": med(floor) * 1e3,
        "whole_table_replace_ms": whole * 1e3,
    }


SERVER = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1024)
    print("ready", flush=True)
    while True:
        c, _ = s.accept(); c.close()
    """
)
CONNECTS = textwrap.dedent(
    """
    import json, socket, sys, time
    port, count, ips = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    out = {ip: [] for ip in ips}
    for i in range(count + 100):  # the addresses alternate, so a noisy neighbour hits them alike
        for ip in ips:
            s = socket.socket()
            t = time.perf_counter()
            s.connect((ip, port))
            if i >= 100:
                out[ip].append(time.perf_counter() - t)
            s.close()
    print(json.dumps(out))
    """
)


def latency(client: str, connects: int) -> dict[str, float]:
    """Median connect time (us) to the pod directly and through the ClusterIP, alternating: each
    connect is a new conntrack entry, so its SYN goes through kube-proxy's nat chains."""
    run = sh(
        "ip",
        "netns",
        "exec",
        client,
        sys.executable,
        "-c",
        CONNECTS,
        str(PORT),
        str(connects),
        SERVER_IP,
        TARGET_IP,
    )
    times = json.loads(run)
    d, s = statistics.median(times[SERVER_IP]) * 1e6, statistics.median(times[TARGET_IP]) * 1e6
    return {"direct_us": d, "clusterip_us": s, "ratio": d / s}


def throughput(client: str, seconds: float) -> dict[str, float]:
    def one(ip: str) -> float:
        out = sh(
            "ip",
            "netns",
            "exec",
            client,
            "iperf3",
            "-c",
            ip,
            "-p",
            str(PORT + 1),
            "-t",
            str(seconds),
            "-J",
        )
        return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e9

    direct, service = [], []
    for _ in range(3):
        direct.append(one(SERVER_IP))
        service.append(one(TARGET_IP))
    d, s = statistics.mean(direct), statistics.mean(service)
    return {"direct_gbps": d, "clusterip_gbps": s, "ratio": s / d}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--connects", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    with topology() as (node, client, server):
        started = [
            subprocess.Popen(
                ["ip", "netns", "exec", server, sys.executable, "-c", SERVER, str(PORT)],
                stdout=subprocess.PIPE,
                text=True,
            ),
            subprocess.Popen(
                ["ip", "netns", "exec", server, "iperf3", "-s", "-p", str(PORT + 1)],
                stdout=subprocess.DEVNULL,
            ),
        ]
        try:
            assert started[0].stdout is not None and started[0].stdout.readline().strip() == "ready"
            time.sleep(0.3)
            results: dict[str, object] = {}
            # The measured Service maps port 8080 and the iperf3 port to the server's.
            for count in (100, args.services):
                inp = proxy_input(count)
                extra = dataclasses.replace(
                    inp.service_ports[0],
                    port=PORT + 1,
                    port_name="iperf",
                    endpoints=(ProxyEndpoint(IPv4Address(SERVER_IP), PORT + 1, local=True),),
                )
                inp = dataclasses.replace(inp, service_ports=(*inp.service_ports, extra))
                nftables.load_script(node, replace_script(render_table_data(inp).text()), "kube-proxy")
                results[f"latency_{count}"] = latency(client, args.connects)
                results[f"throughput_{count}"] = throughput(client, args.seconds)
            results["program_from_scratch"] = program_from_scratch(node, args.services)
            results["change_one_endpoint"] = change_one_endpoint(node, args.services, args.rounds)
        finally:
            for proc in started:
                proc.terminate()
                proc.wait(timeout=10)
    print(json.dumps(results, indent=2))
    scratch = results["program_from_scratch"]
    change = results["change_one_endpoint"]
    assert isinstance(scratch, dict) and isinstance(change, dict)
    print(
        f"\n{args.services} Services x 3 endpoints: from scratch {scratch['total_s']:.2f} s "
        f"(render {scratch['render_s']:.2f} s + nft {scratch['load_s']:.2f} s; aim < 2 s)"
    )
    print(
        f"change one endpoint: {change['total_ms']:.1f} ms (render {change['render_ms']:.1f} + diff "
        f"{change['diff_ms']:.1f} + nft {change['nft_ms']:.1f}; aim < 50 ms); whole-table replace "
        f"{change['whole_table_replace_ms']:.0f} ms; nft's floor (one element, after fetching every "
        f"chain into its cache) {change['nft_one_element_ms']:.1f} ms"
    )
    for count in (100, args.services):
        lat, thr = results[f"latency_{count}"], results[f"throughput_{count}"]
        assert isinstance(lat, dict) and isinstance(thr, dict)
        print(
            f"{count:>6} Services: connect {lat['clusterip_us']:.0f} us via ClusterIP vs {lat['direct_us']:.0f} us "
            f"direct (ratio {lat['ratio']:.2f}); throughput {thr['clusterip_gbps']:.1f} vs "
            f"{thr['direct_gbps']:.1f} Gbit/s (ratio {thr['ratio']:.2f})"
        )


if __name__ == "__main__":
    main()
