"""The NGINX Ingress on the request path: requests per second through the Ingress against the pod
directly, and the time from an endpoint change to NGINX using it.

Brings up a small emulation (``ingb`` + 6 hex) with the real ``acknet up``: two nodes, the controller's
two pods (the default add-on), a Deployment ``web`` (built-in HTTP server on 8080) behind Service
``web`` and an Ingress for ``bench.example.com``, a client pod, and a security group that lets the
Internet reach the NodePorts of ``nginx-ingress-lb`` (its SLB keeps the client address). Then:

1. requests per second with wrk (Debian's; a small Python loop when it is missing), in interleaved
   rounds, the median of each: from the client pod to the web pod directly, from the client pod to a
   controller pod (NGINX -> pod), and from the Internet namespace to the SLB's VIP (SLB -> node ->
   NGINX -> pod). Ratios against the direct figure (1.0 = the hops cost nothing);
2. endpoint change: ``web`` scaled from 1 to 2 replicas while a client polls the Ingress every 10 ms;
   the time from NGINX's new nginx.conf (written when the new pod turned ready) to the first answer
   from the new pod, and from ``acknet up`` to it; failed requests during the change are counted.

The built-in server closes every connection (``Connection: close``), so each request is a new TCP
connection to the backend. The host's load average is printed beside the figures: on a shared host
they move with it. ``acknet down`` runs at the end whatever happened.

    sudo .venv/bin/python bench/ingress.py [--seconds 3] [--rounds 3] [--connections 8]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from acknet.dataplane.render import names

ACKNET = [sys.executable, "-m", "acknet.cli.main"]
HOST = "bench.example.com"

CLOUD = """\
apiVersion: acknet.io/v1
kind: VPC
metadata: {name: vpc}
spec: {cidrBlock: 192.168.0.0/16}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {name: node}
spec: {vpc: vpc, cidrBlock: 192.168.0.0/24, zoneId: cn-hangzhou-h}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {name: pod}
spec: {vpc: vpc, cidrBlock: 192.168.32.0/19, zoneId: cn-hangzhou-h}
---
apiVersion: acknet.io/v1
kind: SecurityGroup
metadata: {name: cluster-sg}
spec:
  vpc: vpc
  innerAccessPolicy: Accept
  rules:
  - {direction: ingress, policy: accept, priority: 1, ipProtocol: tcp, portRange: 30000/32767, sourceCidrIp: 0.0.0.0/0}
---
apiVersion: acknet.io/v1
kind: Cluster
metadata: {name: ack}
spec: {vpc: vpc, podVSwitches: [pod], securityGroups: [cluster-sg], nodePools: [{name: d, vswitches: [node], count: 2}]}
"""

APPS = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: bench}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: bench}
spec:
  containers: [{name: c, ports: [{containerPort: 9}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: bench}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: bench}
spec:
  ingressClassName: nginx
  rules:
  - host: bench.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]
"""

# Requests in a loop for a number of seconds; prints requests per second. argv: url host seconds.
PY_LOAD = textwrap.dedent(
    """\
    import http.client, sys, time, urllib.parse
    u = urllib.parse.urlsplit(sys.argv[1]); end = time.time() + float(sys.argv[3]); n = 0
    while time.time() < end:
        c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=5)
        c.request("GET", "/", headers={"Host": sys.argv[2]}); c.getresponse().read(); c.close(); n += 1
    print(n / float(sys.argv[3]))
    """
)

# Polls the Ingress every 10 ms for `seconds`; prints JSON [[time, pod or error], ...].
POLL = textwrap.dedent(
    """\
    import http.client, json, sys, time
    end = time.time() + float(sys.argv[2]); seen = []
    while time.time() < end:
        try:
            c = http.client.HTTPConnection(sys.argv[1], 80, timeout=3)
            c.request("GET", "/", headers={"Host": "bench.example.com"})
            r = c.getresponse(); body = r.read()
            seen.append([time.time(), json.loads(body)["pod"] if r.status == 200 else str(r.status)])
        except Exception as e:
            seen.append([time.time(), type(e).__name__])
        time.sleep(0.01)
    print(json.dumps(seen))
    """
)


class Bench:
    def __init__(self, folder: Path) -> None:
        self.name = "ingb" + secrets.token_hex(3)
        self.state = folder / "state"
        self.files = folder / "files.yaml"

    def acknet(self, *args: str) -> str:
        split = args.index("--") if "--" in args else len(args)
        argv = [*args[:split], "--name", self.name, "--state", str(self.state), *args[split:]]
        run = subprocess.run([*ACKNET, *argv], capture_output=True, text=True, timeout=300, check=False)
        if run.returncode != 0:
            raise SystemExit(f"acknet {' '.join(argv)} failed:\n{run.stdout}\n{run.stderr}")
        return run.stdout

    def up(self, replicas: int) -> None:
        self.files.write_text(CLOUD + "---\n" + APPS.replace("REPLICAS", str(replicas)))
        self.acknet("up", "-f", str(self.files))

    def get(self, kind: str) -> list[dict[str, object]]:
        return json.loads(self.acknet("get", kind, "-o", "json"))["items"]  # type: ignore[no-any-return]

    def run_in(self, target: str, *cmd: str) -> str:
        return self.acknet("exec", target, "--", *cmd)


def rate(bench: Bench, target: str, url: str, seconds: float, connections: int) -> float:
    if shutil.which("wrk"):
        out = bench.run_in(
            target, "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-H", f"Host: {HOST}", url
        )
        match = re.search(r"Requests/sec:\s+([0-9.]+)", out)
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if errors:
            print(f"  warning: {errors.group(1)} non-2xx answers from {url}")
        return float(match.group(1)) if match else 0.0
    return float(bench.run_in(target, sys.executable, "-c", PY_LOAD, url, HOST, str(seconds)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root: builds network namespaces")
    folder = Path(tempfile.mkdtemp(prefix="acknet-ingress-bench-"))
    bench = Bench(folder)
    try:
        start = time.monotonic()
        bench.up(1)
        print(f"emulation {bench.name} up in {time.monotonic() - start:.1f} s; load tool: "
              f"{'wrk' if shutil.which('wrk') else 'python loop'}")  # fmt: skip
        pods = {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p for p in bench.get("pods")}
        web = next(p["status"]["podIP"] for k, p in pods.items() if k.startswith("bench/web-"))  # type: ignore[index]
        controller = next(
            p["status"]["podIP"]  # type: ignore[index]
            for k, p in pods.items()
            if k.startswith("kube-system/nginx-ingress-controller")
        )
        vip = next(
            (
                i["status"]["loadBalancer"]["ingress"][0]["ip"]  # type: ignore[index]
                for i in bench.get("ingress")
                if i["status"]["loadBalancer"]  # type: ignore[index]
            ),
            None,
        )
        paths = {
            "pod directly": ("bench/client", f"http://{web}:8080/"),
            "Ingress (NGINX pod)": ("bench/client", f"http://{controller}/"),
        }
        if vip is not None:
            paths["SLB + Ingress (Internet)"] = ("internet", f"http://{vip}/")
        results: dict[str, list[float]] = {k: [] for k in paths}
        for _ in range(args.rounds):
            for label, (target, url) in paths.items():
                results[label].append(rate(bench, target, url, args.seconds, args.connections))
        base = statistics.median(results["pod directly"])
        print(
            f"\nrequests/s, median of {args.rounds} rounds of {args.seconds:g} s, {args.connections} connections:"
        )
        for label, values in results.items():
            med = statistics.median(values)
            print(f"  {label:28s} {med:9.0f}   ratio {med / base if base else 0:.2f}")

        # 2. endpoint change: 1 -> 2 replicas while a client polls the Ingress.
        poll_seconds = 40.0
        netns = names.pod_netns(bench.name, "bench", "client")
        poller = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-c", POLL, controller, str(poll_seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)
        up_at = time.time()
        bench.up(2)
        up_done = time.time()
        seen = json.loads(poller.communicate(timeout=poll_seconds + 30)[0])
        confs = list((bench.state / "ingress").glob("*/nginx.conf"))
        conf_at = max((c.stat().st_mtime for c in confs), default=up_done)
        first_pods = {s[1] for s in seen if s[0] < up_at}
        new = [s for s in seen if s[0] > up_at and s[1].startswith("web-") and s[1] not in first_pods]
        failed = [s for s in seen if not s[1].startswith("web-")]
        print("\nendpoint change (1 -> 2 replicas):")
        print(f"  acknet up returned after              {up_done - up_at:6.2f} s")
        if new:
            print(f"  new nginx.conf -> first answer of the new pod {new[0][0] - conf_at:6.3f} s")
            print(f"  acknet up called -> first answer of the new pod {new[0][0] - up_at:6.2f} s")
        else:
            print("  the new pod never answered through the Ingress during the poll")
        print(f"  requests during the change: {len(seen)}, failed: {len(failed)}")
        print(f"\nload average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return 0
    finally:
        subprocess.run(
            [*ACKNET, "down", "--name", bench.name, "--state", str(bench.state)],
            capture_output=True, timeout=300, check=False,
        )  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
