"""CLB listeners on the packet path: the cost of a layer-4 listener (nftables) and of a layer-7 one
(NGINX in the SLB's namespace) against hitting the backend directly, and how long a failing backend
takes to leave against the configured failure window.

Brings up a small emulation (``slbb`` + 6 hex) with the real ``acknet up``: one backend ECS (web-1),
one client ECS, an intranet CLB in front of web-1: TCP 80 -> 8080 (the built-in HTTP server) with a
TCP health check every second (timeout 1 s, unhealthy threshold 2: window 1 x 2 + 1 x 1 = 3 s), TCP
5201 -> 5201 (iperf3), HTTP 8000 -> 8080 and HTTP 8001 -> 8081 (a Python file server with one large
sparse file). From the client namespace, in the same run:

1. requests per second: sequential connect + HTTP GET + close, to web-1 directly, through the L4
   listener and through the L7 one (interleaved rounds, the median of each);
2. throughput: TCP with iperf3 (one stream, N seconds) directly and through the L4 listener; an HTTP
   download (curl) directly and through the L7 listener;
3. failure detection: a drop rule in web-1's namespace, then the time until the listener's map no
   longer holds web-1 (polled every 50 ms in the SLB namespace), against the window; and back;
4. wlc's balance: 20 connections held open, opened at 4/s, 20/s and all at once, through a wlc and a
   wrr listener over web-1 and web-2 at equal weights (TCP 81 and 82 -> 8080): the split of the live
   connections at the end (wlc: 10:10 when its readings, 4 a second, keep up; wrr: a coin per
   connection). The median over rounds of |web-1 - web-2|.

Ratios: via SLB / direct (1.0 = the listener costs nothing). The load average of the host is printed
beside the figures: on a shared host they move with it. Everything runs in the emulation's own
namespaces; the iperf3 and file servers this script starts are ended by their PIDs; ``acknet down``
runs at the end whatever happened.

    sudo .venv/bin/python bench/slb.py [--requests 2000] [--seconds 3] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ACKNET = [sys.executable, "-m", "acknet.cli.main"]
VIP, WEB, WINDOW = "192.168.0.100", "192.168.8.11", 3.0

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
  - {direction: ingress, policy: accept, priority: 1, ipProtocol: tcp, portRange: 5201/8081, sourceCidrIp: 0.0.0.0/0}
---
apiVersion: acknet.io/v1
kind: SecurityGroup
metadata: {name: client-sg}
spec: {vpc: vpc}
---
apiVersion: acknet.io/v1
kind: ECSInstance
metadata: {name: web-1}
spec: {vswitch: data-h, securityGroups: [web-sg], privateIpAddress: 192.168.8.11, ports: [{port: 8080}]}
---
apiVersion: acknet.io/v1
kind: ECSInstance
metadata: {name: web-2}
spec: {vswitch: data-h, securityGroups: [web-sg], privateIpAddress: 192.168.8.12, ports: [{port: 8080}]}
---
apiVersion: acknet.io/v1
kind: ECSInstance
metadata: {name: client}
spec: {vswitch: node-h, securityGroups: [client-sg], privateIpAddress: 192.168.0.50}
---
apiVersion: acknet.io/v1
kind: LoadBalancer
metadata: {name: lb}
spec:
  addressType: intranet
  vswitch: node-h
  address: 192.168.0.100
  vServerGroups:
  - {name: http, servers: [{ecs: web-1, port: 8080}]}
  - {name: iperf, servers: [{ecs: web-1, port: 5201}]}
  - {name: files, servers: [{ecs: web-1, port: 8081}]}
  - {name: pair, servers: [{ecs: web-1, port: 8080}, {ecs: web-2, port: 8080}]}
  listeners:
  - protocol: tcp
    listenerPort: 80
    vServerGroup: http
    healthCheck: {type: tcp, interval: 1, connectTimeout: 1, healthyThreshold: 2, unhealthyThreshold: 2}
  - {protocol: tcp, listenerPort: 5201, vServerGroup: iperf}
  - {protocol: http, listenerPort: 8000, vServerGroup: http}
  - {protocol: http, listenerPort: 8001, vServerGroup: files}
  - {protocol: tcp, listenerPort: 81, vServerGroup: pair, scheduler: wlc}
  - {protocol: tcp, listenerPort: 82, vServerGroup: pair, scheduler: wrr}
"""
BIG = 512 * 1024 * 1024  # the file downloaded for HTTP throughput (sparse: zeros, no disk)

REQUESTS = textwrap.dedent(
    """\
    import socket, sys, time
    ip, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    start = time.perf_counter()
    for _ in range(count):
        s = socket.create_connection((ip, port), timeout=3)
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        while s.recv(65536):
            pass
        s.close()
    print(count / (time.perf_counter() - start))
    """
)

# COUNT connections to IP:PORT, RATE a second (0: all at once), each held open; the built-in server's
# first JSON line names the backend. Prints how many each backend holds at the end, then closes them.
HOLD = textwrap.dedent(
    """\
    import collections, json, socket, sys, time
    ip, port, count, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    held, seen = [], collections.Counter()
    for _ in range(count):
        s = socket.create_connection((ip, port), timeout=3); s.sendall(b"hello\\n"); held.append(s)
        if rate:
            time.sleep(1 / rate)
    for s in held:
        line = b""
        while b"\\n" not in line:
            line += s.recv(4096)
        seen[json.loads(line.split(b"\\n")[0])["ecs"]] += 1
    print(json.dumps(seen))
    for s in held:
        s.close()
    """
)
WLC_RATES = (4.0, 20.0, 0.0)  # connections a second; 0: all at once


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run(*args: str, timeout: float = 300) -> str:
    return subprocess.run(list(args), check=True, capture_output=True, text=True, timeout=timeout).stdout


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prefix", default="slbb", help="the emulation's name: this and 6 hex digits")
    args = parser.parse_args()
    name = args.prefix + secrets.token_hex(3)
    folder = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    common = ["--name", name, "--state", str(folder / "state")]
    (folder / "lb.yaml").write_text(FILES)
    client, web = f"{name}-ecs-client", f"{name}-ecs-web-1"
    slb_ns = f"{name}-slb-lb"
    servers: list[subprocess.Popen[bytes]] = []
    figures: dict[str, float] = {}
    spread: dict[str, list[int]] = {}
    load_before = load_average()
    try:
        run(*ACKNET, "up", "-f", str(folder / "lb.yaml"), *common)
        files = folder / "files"
        files.mkdir()
        with (files / "big").open("wb") as big:
            big.truncate(BIG)
        for argv in (
            ["iperf3", "-s", "-p", "5201"],
            [sys.executable, "-m", "http.server", "8081", "--bind", "0.0.0.0", "--directory", str(files)],
        ):
            servers.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", web, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        time.sleep(1.0)
        # Interleaved rounds, the median of each side: a shared host is noisy from one second to the next.
        rps: dict[str, list[float]] = {"direct": [], "slb": [], "slb_l7": []}
        gbps: dict[str, list[float]] = {"direct": [], "slb": [], "http_direct": [], "http_l7": []}
        for _ in range(args.rounds):
            for label, ip, port in (("direct", WEB, 8080), ("slb", VIP, 80), ("slb_l7", VIP, 8000)):
                command = [sys.executable, "-c", REQUESTS, ip, str(port), str(args.requests)]
                rps[label].append(float(run("ip", "netns", "exec", client, *command)))
            for label, ip in (("direct", WEB), ("slb", VIP)):
                command = ["iperf3", "-c", ip, "-p", "5201", "-t", str(args.seconds), "-J"]
                out = run("ip", "netns", "exec", client, *command)
                gbps[label].append(json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9)
            for label, url in (
                ("http_direct", f"http://{WEB}:8081/big"),
                ("http_l7", f"http://{VIP}:8001/big"),
            ):
                command = ["curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{speed_download}", url]
                gbps[label].append(float(run("ip", "netns", "exec", client, *command)) * 8 / 1e9)
        for label, values in rps.items():
            figures[f"rps_{label}"] = statistics.median(values)
        for label, values in gbps.items():
            figures[f"gbps_{label}"] = statistics.median(values)

        def web_in_map() -> bool:
            return WEB in run(
                "ip", "netns", "exec", slb_ns, "nft", "list", "map", "ip", f"{name}-slb", "tcp_80"
            )

        rule = "{ chain in { type filter hook input priority -300; tcp dport 8080 drop; }; }"
        run("ip", "netns", "exec", web, "nft", "add", "table", "ip", "benchblock", rule)
        start = time.monotonic()
        while web_in_map() and time.monotonic() - start < 30:
            time.sleep(0.05)
        figures["removal_s"] = time.monotonic() - start
        run("ip", "netns", "exec", web, "nft", "delete", "table", "ip", "benchblock")
        start = time.monotonic()
        while not web_in_map() and time.monotonic() - start < 30:
            time.sleep(0.05)
        figures["return_s"] = time.monotonic() - start
        for _ in range(args.rounds):
            for rate in WLC_RATES:
                for scheduler, port in (("wlc", 81), ("wrr", 82)):
                    command = [sys.executable, "-c", HOLD, VIP, str(port), "20", str(rate)]
                    seen = json.loads(run("ip", "netns", "exec", client, *command))
                    diff = abs(seen.get("web-1", 0) - seen.get("web-2", 0))
                    spread.setdefault(f"{scheduler} {rate:g}", []).append(diff)
                    time.sleep(0.6)  # the next reading sees them closed
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)
        subprocess.run([*ACKNET, "down", *common], capture_output=True, timeout=120, check=False)
    print(f"load average (1, 5, 15 min): {load_before} before, {load_average()} after")
    print(
        f"requests/s: direct {figures['rps_direct']:.0f}, via L4 listener {figures['rps_slb']:.0f} "
        f"(ratio {figures['rps_slb'] / figures['rps_direct']:.2f}), via L7 listener {figures['rps_slb_l7']:.0f} "
        f"(ratio {figures['rps_slb_l7'] / figures['rps_direct']:.2f})"
    )
    print(
        f"TCP throughput (iperf3): direct {figures['gbps_direct']:.2f} Gbit/s, via L4 listener "
        f"{figures['gbps_slb']:.2f} Gbit/s, ratio {figures['gbps_slb'] / figures['gbps_direct']:.2f}"
    )
    print(
        f"HTTP download ({BIG >> 20} MiB): direct {figures['gbps_http_direct']:.2f} Gbit/s, via L7 listener "
        f"{figures['gbps_http_l7']:.2f} Gbit/s, ratio {figures['gbps_http_l7'] / figures['gbps_http_direct']:.2f}"
    )
    print(
        f"failing backend removed after {figures['removal_s']:.2f}s (window {WINDOW:g}s, "
        f"ratio {figures['removal_s'] / WINDOW:.2f}); back after {figures['return_s']:.2f}s (2 checks, 1s apart)"
    )
    for rate in WLC_RATES:
        pace = f"{rate:g}/s" if rate else "at once"
        wlc, wrr = (statistics.median(spread[f"{s} {rate:g}"]) for s in ("wlc", "wrr"))
        print(
            f"20 held connections opened {pace}: |web-1 - web-2| wlc {wlc:g}, wrr {wrr:g} (median of rounds)"
        )


if __name__ == "__main__":
    main()
