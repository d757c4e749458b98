"""`acknet probe` of 100 x 100 pods in a running emulation: 10,000 pairs, real packets (issue 8).

Brings up, for real, a two-zone Terway cluster with network policy on and two groups of bare Pods:
``src-0`` .. ``src-99`` (app=src) and ``dst-0`` .. ``dst-99`` (app=dst, answered by acknet's built-in
server on ``--ports`` ports from 8080), placed over the nodes by the scheduler. Then, in the same run:

(a) the probe: ``POST /probe {from: app=src, to: app=dst}`` to the daemon, what ``acknet probe`` asks
    for; each pair and port is a TCP connect from the source pod's namespace plus the built-in
    server's HTTP GET, which names the pod that answered. Wall time and pairs/s, ``--repeat`` times
    (the median is reported), and once through the CLI end to end (interpreter start and JSON
    printing included);
(b) the yardstick: the same connections made by a minimal asyncio loop in one source pod's namespace,
    as many at once as the probe allows itself: (b1) connect and close, (b2) connect, GET and read
    the reply. That is what the kernel path (veths, security groups, policy chains) and the built-in
    server cost without acknet's machinery (a namespace switch per socket, verdict assembly, the API);
(c) the probe of a tenth of the sources to a tenth of the destinations (10 x 10 of the 100 x 100):
    the fixed cost of a probe, and how far (a) is from linear, as (a) / (c x 100);
(d) a NetworkPolicy that admits only the even-numbered sources: half of the pairs are dropped, each
    costing the probe its 1 s timeout; with the probes concurrent, that is a few timeouts in all.

Every run checks the verdicts it times (all 10,000 allowed in (a), half in (d)), so a fast wrong
answer cannot pass for a fast probe. Needs root. The emulation (``--name``, default ``bprobe``) lives
in a temporary state folder and is always taken down, whatever fails.

    sudo .venv/bin/python bench/probe_scale.py [--pods 100] [--ports 1] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from acknet.daemon import launch  # noqa: E402
from acknet.dataplane.apply.netlink import list_netns, remove_emulation  # noqa: E402
from acknet.dataplane.apply.nsutil import raise_open_file_limit  # noqa: E402
from acknet.dataplane.render import names  # noqa: E402

ACKNET = [str(Path(sys.executable).parent / "acknet")]
BASE_PORT = 8080
PODS_PER_NODE = 45  # ecs.g7.xlarge in shared-ENI mode: (4 - 1) x 15
# As observe/probe.py sizes its semaphore, so that the yardstick runs as wide as the probe.
MAX_CONCURRENCY = 4096

# The yardstick: stdin = JSON [[ip, port], ...]; argv = concurrency, "get" or "connect"; prints JSON figures.
YARDSTICK = textwrap.dedent(
    """\
    import asyncio, json, resource, socket, sys, time
    targets, width, mode = json.load(sys.stdin), int(sys.argv[1]), sys.argv[2]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    async def one(limit, ip, port):
        async with limit:
            loop = asyncio.get_running_loop()
            s = socket.socket(); s.setblocking(False)
            try:
                async with asyncio.timeout(60):  # a yardstick, not a verdict: every one must finish
                    await loop.sock_connect(s, (ip, port))
                    if mode == "get":
                        await loop.sock_sendall(s, b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
                        data = b""
                        while chunk := await loop.sock_recv(s, 65536):
                            data += chunk
                        return b'"pod"' in data
                return True
            except OSError:
                return False
            finally:
                s.close()
    async def main():
        limit = asyncio.Semaphore(width)
        start = time.perf_counter()
        ok = await asyncio.gather(*(one(limit, ip, port) for ip, port in targets))
        print(json.dumps({"seconds": time.perf_counter() - start, "ok": sum(ok)}))
    asyncio.run(main())
    """
)


def generate(folder: Path, pods: int, ports: int) -> None:
    """The cloud, a cluster with enough nodes over two zones, ``pods`` sources and ``pods`` destinations."""
    nodes = max(2, -(-(2 * pods + 2) // PODS_PER_NODE))
    half = (nodes + 1) // 2
    cloud = textwrap.dedent(f"""\
        apiVersion: acknet.io/v1
        kind: VPC
        metadata: {{name: bench}}
        spec: {{cidrBlock: 10.0.0.0/8}}
        ---
        apiVersion: acknet.io/v1
        kind: VSwitch
        metadata: {{name: node-h}}
        spec: {{vpc: bench, cidrBlock: 10.0.0.0/24, zoneId: cn-hangzhou-h}}
        ---
        apiVersion: acknet.io/v1
        kind: VSwitch
        metadata: {{name: node-i}}
        spec: {{vpc: bench, cidrBlock: 10.0.1.0/24, zoneId: cn-hangzhou-i}}
        ---
        apiVersion: acknet.io/v1
        kind: VSwitch
        metadata: {{name: pod-h}}
        spec: {{vpc: bench, cidrBlock: 10.16.0.0/16, zoneId: cn-hangzhou-h}}
        ---
        apiVersion: acknet.io/v1
        kind: VSwitch
        metadata: {{name: pod-i}}
        spec: {{vpc: bench, cidrBlock: 10.17.0.0/16, zoneId: cn-hangzhou-i}}
        ---
        apiVersion: acknet.io/v1
        kind: SecurityGroup
        metadata: {{name: nodes}}
        spec: {{vpc: bench, innerAccessPolicy: Accept}}
        ---
        apiVersion: acknet.io/v1
        kind: Cluster
        metadata: {{name: ack}}
        spec:
          vpc: bench
          podVSwitches: [pod-h, pod-i]
          networkPolicy: true
          securityGroups: [nodes]
          addons: [coredns]          # no NGINX Ingress: nothing here uses it
          nodePools:
          - {{name: pool-h, instanceType: ecs.g7.xlarge, vswitches: [node-h], count: {half}}}
          - {{name: pool-i, instanceType: ecs.g7.xlarge, vswitches: [node-i], count: {nodes - half}}}
        """)
    (folder / "cloud.yaml").write_text(cloud)
    container_ports = ", ".join(f"{{containerPort: {BASE_PORT + p}}}" for p in range(ports))
    docs = ["apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n"]
    for role in ("src", "dst"):
        for i in range(pods):
            # `tenth` picks the subset of (c); `parity` is what the policy of (d) admits.
            labels = f"{{app: {role}, tenth: t{i // max(1, pods // 10)}, parity: {'even' if i % 2 == 0 else 'odd'}}}"
            ports_field = f", ports: [{container_ports}]" if role == "dst" else ""
            docs.append(
                f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {role}-{i}, namespace: bench, labels: {labels}}}\n"
                f"spec:\n  containers: [{{name: main, image: registry.example/app:1{ports_field}}}]\n"
            )
    (folder / "pods.yaml").write_text("---\n".join(docs))


EVEN_SOURCES_ONLY = textwrap.dedent("""\
    apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: even-sources-only, namespace: bench}
    spec:
      podSelector: {matchLabels: {app: dst}}
      policyTypes: [Ingress]
      ingress:
      - from: [{podSelector: {matchLabels: {app: src, parity: even}}}]
    """)


def cli(*args: str) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run([*ACKNET, *args], capture_output=True, text=True, check=False, cwd=ROOT)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(
            f"acknet {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )
    return elapsed, result.stdout


def tally(found: dict[str, Any]) -> tuple[int, int]:
    """(verdicts, allowed) of a probe answer."""
    verdicts = found["verdicts"]
    return len(verdicts), sum(1 for v in verdicts if v["allowed"])


def timed_probe(api: Any, frm: str, to: str) -> tuple[float, int, int]:
    start = time.perf_counter()
    found = api.post("/probe", {"from": [frm], "to": [to], "ports": None})
    elapsed = time.perf_counter() - start
    return (elapsed, *tally(found))


def expect(what: str, got: tuple[int, int], want: tuple[int, int]) -> None:
    if got != want:
        raise SystemExit(f"{what}: {got[0]} verdicts, {got[1]} allowed; expected {want[0]}, {want[1]}")


def yardstick(emulation: str, api: Any, pods: int, ports: int, mode: str) -> dict[str, float]:
    """The probe's connections, each destination ``pods`` times over, from src-0's namespace."""
    items = api.get("/objects?kind=pods")["items"]
    dst = sorted(
        p["status"]["podIP"]
        for p in items
        if p["metadata"]["labels"].get("app") == "dst" and p["status"].get("podIP")
    )
    if len(dst) != pods:
        raise SystemExit(f"expected {pods} destination pods with addresses, found {len(dst)}")
    targets = [[ip, BASE_PORT + p] for _ in range(pods) for ip in dst for p in range(ports)]
    width = max(16, min(MAX_CONCURRENCY, raise_open_file_limit() - 128))
    netns = names.pod_netns(emulation, "bench", "src-0")
    start = time.perf_counter()
    run = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", YARDSTICK, str(width), mode],
        input=json.dumps(targets), capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    total = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"yardstick ({mode}) failed:\n{run.stderr}")
    got = json.loads(run.stdout)
    if got["ok"] != len(targets):
        raise SystemExit(f"yardstick ({mode}): {got['ok']} of {len(targets)} connections succeeded")
    return {f"yardstick_{mode}_s": got["seconds"], f"yardstick_{mode}_process_s": total}


def measure(
    fig: dict[str, float], emulation: str, state: Path, files: Path, pods: int, ports: int, repeat: int
) -> None:
    """Fills ``fig`` as it goes, so a failure still leaves the figures measured before it."""
    fig["up_s"], _ = cli("up", "-f", str(files), "--name", emulation, "--state", str(state))
    api = launch.client(state, timeout=600)
    pairs = pods * pods * ports
    # The pairs of (c): a tenth of the sources to a tenth of the destinations.
    tenth = (pods // 10) ** 2 * ports
    # One small probe first: it warms the daemon (imports, the probe's descriptor limit) as (a) expects.
    expect("warm-up", tuple(timed_probe(api, "app=src,tenth=t0", "app=dst,tenth=t0")[1:]), (tenth, tenth))
    runs = []
    for _ in range(repeat):
        seconds, *counts = timed_probe(api, "app=src", "app=dst")
        expect("(a) probe", (counts[0], counts[1]), (pairs, pairs))
        runs.append(seconds)
    fig["probe_s"], fig["probe_min_s"] = statistics.median(runs), min(runs)
    fig["probe_cli_s"], out = cli(
        "probe", "--name", emulation, "--state", str(state), "--from", "app=src", "--to", "app=dst", "-o", "json"
    )  # fmt: skip
    expect("(a) probe via the CLI", tally(json.loads(out)), (pairs, pairs))
    small = []
    for _ in range(repeat):
        seconds, *counts = timed_probe(api, "app=src,tenth=t0", "app=dst,tenth=t0")
        expect("(c) probe of a tenth by a tenth", (counts[0], counts[1]), (tenth, tenth))
        small.append(seconds)
    fig["probe_tenth_s"] = statistics.median(small)
    for mode in ("connect", "get"):
        fig.update(yardstick(emulation, api, pods, ports, mode))
    (files / "policy.yaml").write_text(EVEN_SOURCES_ONLY)
    fig["up_policy_s"], _ = cli("up", "-f", str(files), "--name", emulation, "--state", str(state))
    seconds, *counts = timed_probe(api, "app=src", "app=dst")
    expect("(d) probe, odd sources denied", (counts[0], counts[1]), (pairs, pairs // 2))
    fig["probe_half_denied_s"] = seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pods", type=int, default=100, help="sources, and as many destinations (>= 10)")
    parser.add_argument("--ports", type=int, default=1, help="built-in ports per destination pod")
    parser.add_argument("--repeat", type=int, default=3, help="runs of (a) and (c); the median is reported")
    parser.add_argument("--name", default="bprobe", help="the emulation's name")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/probe_scale.py needs root: it builds real network namespaces")
    if args.pods < 10 or args.pods % 10:
        raise SystemExit(
            "--pods must be a multiple of 10, at least 10 (the probe of (c) takes a tenth of each side)"
        )
    if list_netns(names.netns_prefix(args.name)):
        raise SystemExit(
            f"namespaces of emulation {args.name} already exist; run acknet down --name {args.name} first"
        )
    fig: dict[str, float] = {"pods": args.pods, "ports": args.ports, "load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="acknet-probe-") as tmp:
        files, state = Path(tmp) / "files", Path(tmp) / "state"
        files.mkdir()
        generate(files, args.pods, args.ports)
        try:
            measure(fig, args.name, state, files, args.pods, args.ports, args.repeat)
        except BaseException:
            print(f"figures so far: {json.dumps(fig)}", file=sys.stderr)
            raise
        finally:
            # Whatever failed above: take the emulation down, and make sure nothing is left.
            try:
                fig["down_s"], _ = cli("down", "--name", args.name, "--state", str(state))
            finally:
                left = list_netns(names.netns_prefix(args.name))
                if left:
                    remove_emulation(args.name)
                    print(f"acknet down left {len(left)} namespaces; removed them", file=sys.stderr)
    fig["load_after"] = os.getloadavg()[0]
    report(fig, args.json)


def report(fig: dict[str, float], as_json: bool) -> None:
    pairs = fig["pods"] * fig["pods"] * fig["ports"]
    fig.update(
        pairs=pairs,
        probe_pairs_per_s=pairs / fig["probe_s"],
        yardstick_connect_per_s=pairs / fig["yardstick_connect_s"],
        yardstick_get_per_s=pairs / fig["yardstick_get_s"],
        probe_over_connect=fig["probe_s"] / fig["yardstick_connect_s"],
        probe_over_get=fig["probe_s"] / fig["yardstick_get_s"],
        probe_over_tenth_scaled=fig["probe_s"] / (fig["probe_tenth_s"] * 100),
    )
    if as_json:
        print(json.dumps({k: round(v, 4) for k, v in fig.items()}))
        return
    p = fig["probe_s"]
    side = fig["pods"] // 10
    lines = [
        f"topology: {fig['pods']:.0f} source and {fig['pods']:.0f} destination pods, {fig['ports']:.0f} port(s)"
        f" each: {pairs:.0f} pairs x ports; up {fig['up_s']:.2f} s",
        f"(a) probe (daemon API), median of runs: {p:.2f} s (best {fig['probe_min_s']:.2f} s)"
        f" -> {fig['probe_pairs_per_s']:.0f} pairs/s; through the CLI end to end {fig['probe_cli_s']:.2f} s",
        f"(b) yardstick, a minimal asyncio loop in one pod doing the same {pairs:.0f} connections:",
        f"    connect + close {fig['yardstick_connect_s']:.2f} s ({fig['yardstick_connect_per_s']:.0f}/s)"
        f" -> the probe takes {fig['probe_over_connect']:.2f} x as long",
        f"    connect + GET + reply {fig['yardstick_get_s']:.2f} s ({fig['yardstick_get_per_s']:.0f}/s)"
        f" -> the probe takes {fig['probe_over_get']:.2f} x as long",
        f"(c) probe of {side:.0f} x {side:.0f}: {fig['probe_tenth_s']:.3f} s; (a) is"
        f" {fig['probe_over_tenth_scaled']:.2f} x that time scaled by 100 (below 1: fixed costs amortised)",
        f"(d) half the sources denied by a NetworkPolicy (each drop waits out the 1 s timeout):"
        f" {fig['probe_half_denied_s']:.2f} s ({pairs / fig['probe_half_denied_s']:.0f} pairs/s);"
        f" up with the policy {fig['up_policy_s']:.2f} s",
        f"down {fig['down_s']:.2f} s; load average {fig['load_before']:.1f} before, {fig['load_after']:.1f} after"
        " (2 CPUs shared: the ratios hold better than the absolute figures)",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
