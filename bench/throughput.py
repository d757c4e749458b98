"""Cross-node pod-to-pod throughput and latency: Terway vs Flannel (vpc) vs Flannel (vxlan).

Builds three 2-node emulations with one pod per node from generated files through the real CLI
(``acknet up``; ``acknet down`` always follows), then, between the two pods:

- TCP throughput: iperf3, one stream for 5 s, server in the destination pod's namespace;
- request/response latency: a TCP ping-pong of 64-byte messages (TCP_NODELAY), 2,000 round trips
  after 200 warm-up ones, reporting mean, p50 and p99;

each with offloads as the kernel sets them and again with TSO, GSO and GRO off on every veth of the
emulation (``ethtool -K`` inside its namespaces). Terway, measured in the same run, is the baseline:
each figure is also printed as a ratio to Terway's under the same offload setting (these machines are
noisy; a ratio holds, an absolute figure does not). On one host the VPC is a Linux bridge, so the
figures show the per-packet cost of each datapath (the VRouter hop, cni0, VXLAN encapsulation), not
what a real VPC delivers. reference/peers.md section 7 has the anchors for the bare paths.

Safety: every command runs inside the emulations' own namespaces (``ip netns exec``); the host
namespace is never changed. Only processes this script started are ended, by PID.

    sudo .venv/bin/python bench/throughput.py [--seconds 5] [--round-trips 2000] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from acknet.dataplane.render import names

REPO = Path(__file__).resolve().parent.parent
ACKNET = str(REPO / ".venv" / "bin" / "acknet")
IPERF_PORT = 5201
PINGPONG_PORT = 7007
# The pods' declared port, served by acknet's built-in server (readiness); the tools use others.
POD_PORT = 8080

MODES = (  # (label, emulation name, cluster spec lines)
    ("terway", "bthr", ("networkPlugin: terway", "podVSwitches: [pod-h]")),
    ("flannel vpc", "bthf", ("networkPlugin: flannel", "flannelBackend: vpc", "podCidr: 172.20.0.0/16")),
    ("flannel vxlan", "bthx", ("networkPlugin: flannel", "flannelBackend: vxlan", "podCidr: 172.20.0.0/16")),
)


def cluster_files(spec: tuple[str, ...]) -> str:
    """One VPC, a node and a pod VSwitch, two nodes, one pod pinned to each.

    The cluster group accepts the pod CIDR, as ACK asks Flannel users to (reference/alibaba.md 2):
    the same group for all three, so every datapath crosses the same rules.
    """
    cluster_spec = "\n".join(f"  {line}" for line in spec)
    pods = "".join(
        textwrap.dedent(f"""\
            ---
            apiVersion: v1
            kind: Pod
            metadata: {{name: {pod}, namespace: default}}
            spec: {{nodeName: ack-default-{i}, containers: [{{name: main, ports: [{{containerPort: {POD_PORT}}}]}}]}}
            """)
        for i, pod in enumerate(("src", "dst"))
    )
    return (
        textwrap.dedent("""\
        apiVersion: acknet.io/v1
        kind: VPC
        metadata: {name: prod}
        spec: {cidrBlock: 192.168.0.0/16}
        ---
        apiVersion: acknet.io/v1
        kind: VSwitch
        metadata: {name: node-h}
        spec: {vpc: prod, cidrBlock: 192.168.0.0/24, zoneId: cn-hangzhou-h}
        ---
        apiVersion: acknet.io/v1
        kind: VSwitch
        metadata: {name: pod-h}
        spec: {vpc: prod, cidrBlock: 192.168.16.0/20, zoneId: cn-hangzhou-h}
        ---
        apiVersion: acknet.io/v1
        kind: SecurityGroup
        metadata: {name: cluster-sg}
        spec:
          vpc: prod
          rules:
          - {direction: ingress, policy: accept, priority: 1, ipProtocol: all, portRange: -1/-1, sourceCidrIp: 172.20.0.0/16}
        ---
        apiVersion: acknet.io/v1
        kind: Cluster
        metadata: {name: ack}
        spec:
          vpc: prod
          securityGroups: [cluster-sg]
        """)
        + cluster_spec
        + "\n  nodePools:\n  - {name: default, instanceType: ecs.g7.xlarge, vswitches: [node-h], count: 2}\n"
        + pods
    )


# -- processes in namespaces ------------------------------------------------------------------------


def in_ns(netns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv]


def run(argv: list[str], timeout: float = 60) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()[:500]}")
    return result.stdout


@contextmanager
def started(argv: list[str]) -> Iterator[subprocess.Popen[str]]:
    """A background process that is ours; ended by its PID however the block ends."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_listening(netns: str, port: int, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if run(in_ns(netns, "ss", "-Htln", f"sport = :{port}")).strip():
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} in {netns}")


# -- measurements -----------------------------------------------------------------------------------

PINGPONG_SERVER = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1)
    c, _ = s.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        data = c.recv(64, socket.MSG_WAITALL)
        if len(data) < 64:
            break
        c.sendall(data)
    """
)

PINGPONG_CLIENT = textwrap.dedent(
    """
    import json, socket, sys, time
    dst, port, n, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    c = socket.create_connection((dst, port), timeout=5); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg, rtts = b"x" * 64, []
    for i in range(warmup + n):
        t0 = time.perf_counter_ns()
        c.sendall(msg)
        got = c.recv(64, socket.MSG_WAITALL)
        t1 = time.perf_counter_ns()
        assert len(got) == 64
        if i >= warmup:
            rtts.append((t1 - t0) / 1000)
    c.close()
    rtts.sort()
    print(json.dumps({"mean": sum(rtts) / len(rtts), "p50": rtts[len(rtts) // 2], "p99": rtts[int(len(rtts) * 0.99)]}))
    """
)


def iperf(src: str, dst: str, dst_ip: str, seconds: int) -> tuple[float, int]:
    """Gbit/s received and TCP retransmits of one iperf3 stream from ``src`` to ``dst_ip``."""
    with started(in_ns(dst, "iperf3", "-s", "-1", "-p", str(IPERF_PORT))):
        wait_listening(dst, IPERF_PORT)
        out = run(
            in_ns(src, "iperf3", "-c", dst_ip, "-p", str(IPERF_PORT), "-t", str(seconds), "-J"), seconds + 30
        )
    end = json.loads(out)["end"]
    return end["sum_received"]["bits_per_second"] / 1e9, int(end["sum_sent"].get("retransmits", 0))


def pingpong(src: str, dst: str, dst_ip: str, round_trips: int) -> dict[str, float]:
    py = sys.executable
    with started(in_ns(dst, py, "-c", PINGPONG_SERVER, str(PINGPONG_PORT))):
        wait_listening(dst, PINGPONG_PORT)
        out = run(in_ns(src, py, "-c", PINGPONG_CLIENT, dst_ip, str(PINGPONG_PORT), str(round_trips), "200"))
    result: dict[str, float] = json.loads(out)
    return result


# -- offloads ---------------------------------------------------------------------------------------

OFFLOADS = {
    "tcp-segmentation-offload": "tso",
    "generic-segmentation-offload": "gso",
    "generic-receive-offload": "gro",
}


def veths(emulation: str) -> list[tuple[str, str]]:
    """Every veth end of the emulation: (namespace, device)."""
    out = []
    for netns in run(["ip", "netns", "list"]).split():
        if not netns.startswith(names.netns_prefix(emulation)):
            continue
        for link in json.loads(run(["ip", "-n", netns, "-j", "link", "show", "type", "veth"]) or "[]"):
            out.append((netns, link["ifname"]))
    return out


def offload_state(netns: str, dev: str) -> str:
    features = run(in_ns(netns, "ethtool", "-k", dev))
    state = {}
    for line in features.splitlines():
        key, _, value = line.strip().partition(":")
        if key in OFFLOADS:
            state[OFFLOADS[key]] = value.split()[0] if value.split() else "?"
    return " ".join(f"{k} {state.get(k, '?')}" for k in ("tso", "gso", "gro"))


def offloads_off(emulation: str) -> int:
    devices = veths(emulation)
    for netns, dev in devices:
        run(in_ns(netns, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off"))
    return len(devices)


# -- one emulation ------------------------------------------------------------------------------------


@dataclass
class Result:
    mode: str
    offloads: str
    gbps: float
    retransmits: int
    mean: float
    p50: float
    p99: float
    path: str


def measure(
    mode: str,
    emulation: str,
    src: str,
    dst: str,
    src_ip: str,
    dst_ip: str,
    offloads: str,
    args: argparse.Namespace,
) -> Result:
    runs = [iperf(src, dst, dst_ip, args.seconds) for _ in range(args.repeat)]
    lat = [pingpong(src, dst, dst_ip, args.round_trips) for _ in range(args.repeat)]
    # The way the source node sends the pod's packets (Terway: policy routing by source, so from + iif).
    node = names.ecs_netns(emulation, "ack-default-0")
    host_veth = (
        names.cali_ifname("default", "src")
        if mode == "terway"
        else names.flannel_veth_ifname("default", "src")
    )
    route = run(["ip", "-n", node, "route", "get", dst_ip, "from", src_ip, "iif", host_veth]).split()
    path = route[route.index("dev") + 1] if "dev" in route else "?"
    return Result(
        mode,
        offloads,
        statistics.median(g for g, _ in runs),
        int(statistics.median(r for _, r in runs)),
        statistics.median(x["mean"] for x in lat),
        statistics.median(x["p50"] for x in lat),
        statistics.median(x["p99"] for x in lat),
        path,
    )


def bench_mode(
    mode: str, emulation: str, spec: tuple[str, ...], folder: Path, args: argparse.Namespace
) -> list[Result]:
    files = folder / emulation
    files.mkdir()
    (files / "cluster.yaml").write_text(cluster_files(spec))
    state = folder / f"state-{emulation}"
    try:
        t0 = time.monotonic()
        run([ACKNET, "up", "-f", str(files), "--name", emulation, "--state", str(state)], timeout=300)
        print(f"# {mode}: up in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        pods = json.loads(
            run([ACKNET, "get", "pods", "--name", emulation, "--state", str(state), "-o", "json"])
        )
        ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods["items"]}
        src, dst = names.pod_netns(emulation, "default", "src"), names.pod_netns(emulation, "default", "dst")
        sample = names.pod_netns(emulation, "default", "src"), "eth0"
        on = offload_state(*sample)
        results = [measure(mode, emulation, src, dst, ips["src"], ips["dst"], f"default ({on})", args)]
        count = offloads_off(emulation)
        off = offload_state(*sample)
        print(f"# {mode}: offloads off on {count} veths", file=sys.stderr)
        results.append(measure(mode, emulation, src, dst, ips["src"], ips["dst"], f"off ({off})", args))
        return results
    finally:
        subprocess.run([ACKNET, "down", "--name", emulation, "--state", str(state)], check=False, timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="iperf3 duration per run")
    parser.add_argument("--round-trips", type=int, default=2000, help="ping-pong round trips per run")
    parser.add_argument("--repeat", type=int, default=1, help="runs per figure (the median is printed)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root: builds network namespaces")
    for tool in ("iperf3", "ethtool"):
        if subprocess.run(["which", tool], capture_output=True, check=False).returncode != 0:
            sys.exit(f"{tool} is missing: make system-packages")

    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="acknet-bench-") as tmp:
        for mode, emulation, spec in MODES:
            results.extend(bench_mode(mode, emulation, spec, Path(tmp), args))

    base = {r.offloads.split()[0]: r for r in results if r.mode == "terway"}
    print(
        f"\ncross-node pod -> pod, 2 nodes, 1 pod each; iperf3 1 stream {args.seconds} s; "
        f"ping-pong {args.round_trips} x 64 B; median of {args.repeat}; ratio = / Terway, same offloads"
    )
    header = (
        f"{'datapath':<14} {'offloads (pod eth0)':<30} {'node dev':<10} {'Gbit/s':>7} {'ratio':>6} {'retr':>6}"
        f" {'mean us':>8} {'p50 us':>7} {'p99 us':>7} {'p50 ratio':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        b = base[r.offloads.split()[0]]
        print(
            f"{r.mode:<14} {r.offloads:<30} {r.path:<10} {r.gbps:>7.2f} {r.gbps / b.gbps:>6.2f} {r.retransmits:>6}"
            f" {r.mean:>8.1f} {r.p50:>7.1f} {r.p99:>7.1f} {r.p50 / b.p50:>9.2f}"
        )


if __name__ == "__main__":
    main()
