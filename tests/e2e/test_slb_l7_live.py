"""CLB layer-7 listeners live: HTTP and HTTPS through a real NGINX in the SLB's namespace, real packets.

One emulation (``td`` + 6 hex) serves the module. Three ECS backends run a small Python HTTP server
(a ``command``) that answers with its name, the address it saw and the request's headers, so the
tests see X-Forwarded-For as a backend does. Their security group drops the Internet's client range
and has no accept rule for 8080 at all: layer-7 traffic comes from the CLB's own address in
100.64.0.0/10, which needs none (CLB backend server FAQ). The internet CLB ``pub`` has

- HTTP 80, wrr over echo-1 (75), echo-2 (25), echo-3 (0), HTTP checks every second (window 3 s);
- HTTP 82, echo-1 alone (an in-flight request during a reload of the proxy);
- HTTPS 443, rr over the same group, with a certificate signed at run time by a test CA (openssl);
- HTTP 85 and 86 over echo-1 and echo-2 at equal weights with sticky sessions: 85 inserts the CLB's
  cookie (``insert``, 600 s), 86 rewrites the backends' ``session_id`` cookie (``server``), which the
  echo servers set on ``/login`` with a placeholder value, as Alibaba's examples do.

A Service of type LoadBalancer with ``protocol-port: https:443`` and ``cert-id`` gets an HTTPS
listener of its own in front of the NodePort. The test that breaks backends comes last.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from e2e_support import ACKNET, REPO, Emu, netns_of, processes_mentioning

from acknet.dataplane.render import names

pytestmark = pytest.mark.root

PUB = "198.51.100.20"
HOST = "shop.example.com"
FAILURE_WINDOW = 3.0  # 1 s timeout x 2 + 1 s interval x 1
SLACK = 4.0

ECHO = textwrap.dedent(
    """\
    import http.server, json, sys, time
    name = sys.argv[1]
    class Echo(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def answer(self, body_too):
            if self.path == "/slow":
                time.sleep(8)
            body = json.dumps({"ecs": name, "client": self.client_address[0],
                               "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
            self.send_response(200)
            if self.path == "/login":
                self.send_header("Set-Cookie", "session_id=placeholder")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body_too:
                self.wfile.write(body)
        def do_GET(self):
            self.answer(True)
        def do_HEAD(self):
            self.answer(False)
        def log_message(self, *args):
            pass
    http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Echo).serve_forever()
    """
)

FILES = """\
apiVersion: acknet.io/v1
kind: VPC
metadata: {{name: vpc}}
spec: {{cidrBlock: 192.168.0.0/16}}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {{name: node-h}}
spec: {{vpc: vpc, cidrBlock: 192.168.0.0/24, zoneId: cn-hangzhou-h}}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {{name: pod-h}}
spec: {{vpc: vpc, cidrBlock: 192.168.32.0/20, zoneId: cn-hangzhou-h}}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {{name: data-h}}
spec: {{vpc: vpc, cidrBlock: 192.168.8.0/24, zoneId: cn-hangzhou-h}}
---
apiVersion: acknet.io/v1
kind: SecurityGroup
metadata: {{name: web-sg}}
spec:
  vpc: vpc
  rules:
  # Keeps every Internet client out on layer 4; layer 7 arrives from 100.64.0.0/10 instead.
  - {{direction: ingress, policy: drop, priority: 1, ipProtocol: all, portRange: -1/-1, sourceCidrIp: 203.0.113.0/24}}
---
apiVersion: acknet.io/v1
kind: SecurityGroup
metadata: {{name: cluster-sg}}
spec: {{vpc: vpc}}
---
apiVersion: acknet.io/v1
kind: ECSInstance
metadata: {{name: echo-1}}
spec: {{vswitch: data-h, securityGroups: [web-sg], privateIpAddress: 192.168.8.11, command: [{py}, {echo}, echo-1]}}
---
apiVersion: acknet.io/v1
kind: ECSInstance
metadata: {{name: echo-2}}
spec: {{vswitch: data-h, securityGroups: [web-sg], privateIpAddress: 192.168.8.12, command: [{py}, {echo}, echo-2]}}
---
apiVersion: acknet.io/v1
kind: ECSInstance
metadata: {{name: echo-3}}
spec: {{vswitch: data-h, securityGroups: [web-sg], privateIpAddress: 192.168.8.13, command: [{py}, {echo}, echo-3]}}
---
apiVersion: acknet.io/v1
kind: Cluster
metadata: {{name: ack}}
spec:
  vpc: vpc
  podVSwitches: [pod-h]
  securityGroups: [cluster-sg]
  addons: []
  nodePools:
  - {{name: default, vswitches: [node-h], count: 1}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: demo}}
---
apiVersion: v1
kind: Secret
metadata: {{name: web-tls, namespace: demo}}
type: kubernetes.io/tls
data: {{tls.crt: {crt}, tls.key: {key}}}
---
apiVersion: acknet.io/v1
kind: LoadBalancer
metadata: {{name: pub}}
spec:
  addressType: internet
  address: {pub}
  vServerGroups:
  - name: web
    servers:
    - {{ecs: echo-1, port: 8080, weight: 75}}
    - {{ecs: echo-2, port: 8080, weight: 25}}
    - {{ecs: echo-3, port: 8080, weight: 0}}
  - name: one
    servers: [{{ecs: echo-1, port: 8080}}]
  - name: pair
    servers: [{{ecs: echo-1, port: 8080}}, {{ecs: echo-2, port: 8080}}]
  listeners:
  - protocol: http
    listenerPort: 80
    vServerGroup: web
    scheduler: wrr
    healthCheck: {{type: http, uri: /healthz, interval: 1, connectTimeout: 1, healthyThreshold: 2, unhealthyThreshold: 2}}
  - {{protocol: http, listenerPort: 82, vServerGroup: one}}
  - protocol: https
    listenerPort: 443
    vServerGroup: web
    scheduler: rr
    certificate: {{secret: demo/web-tls}}
    healthCheck: {{type: http, interval: 1, connectTimeout: 1, healthyThreshold: 2, unhealthyThreshold: 2}}
  - protocol: http
    listenerPort: 85
    vServerGroup: pair
    stickySession: "on"
    stickySessionType: insert
    cookieTimeout: 600
    healthCheck: {{type: http, interval: 1, connectTimeout: 1, healthyThreshold: 2, unhealthyThreshold: 2}}
  - {{protocol: http, listenerPort: 86, vServerGroup: pair, stickySession: "on", stickySessionType: server,
     cookie: session_id}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: demo}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: main, ports: [{{containerPort: 8080}}]}}]
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
  annotations:
    service.beta.kubernetes.io/alibaba-cloud-loadbalancer-protocol-port: "https:443"
    service.beta.kubernetes.io/alibaba-cloud-loadbalancer-cert-id: web-tls
    service.beta.kubernetes.io/alibaba-cloud-loadbalancer-health-check-flag: "on"
spec:
  type: LoadBalancer
  selector: {{app: web}}
  ports: [{{port: 443, targetPort: 8080}}]
"""

# One HTTP(S) request: {"status": N, "body": JSON or text}, or {"error": ...}. Extra arguments are
# request headers "Name: value".
GET = textwrap.dedent(
    """\
    import json, ssl, sys, urllib.error, urllib.request
    url, cafile, headers = sys.argv[1], sys.argv[2], sys.argv[3:]
    request = urllib.request.Request(url, headers=dict(h.split(": ", 1) for h in headers))
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as r:
            status, body = r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read().decode()
    except (OSError, ValueError) as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"})); sys.exit()
    try:
        body = json.loads(body)
    except ValueError:
        pass
    print(json.dumps({"status": status, "body": body}))
    """
)
# Many requests one after the other: which backend answered each (or the status / error), as counts.
MANY = textwrap.dedent(
    """\
    import collections, json, sys, urllib.error, urllib.request
    url, count = sys.argv[1], int(sys.argv[2])
    seen = collections.Counter()
    for _ in range(count):
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                seen[json.loads(r.read())["ecs"]] += 1
        except urllib.error.HTTPError as exc:
            seen[str(exc.code)] += 1
        except (OSError, ValueError) as exc:
            seen[type(exc).__name__] += 1
    print(json.dumps(seen))
    """
)


# CLIENTS clients one after the other, each with a cookie jar that starts with COOKIE: COUNT requests
# to URL (the first to FIRST), each sending the cookies kept so far, the last Set-Cookie of a name
# winning as in a browser. Prints, per client, which backend answered each request, the Set-Cookie
# lines it got, and the cookies at the end.
STICKY = textwrap.dedent(
    """\
    import json, sys, urllib.request
    url, count, cookie, first, clients = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    out = []
    for _ in range(clients):
        jar = dict(c.split("=", 1) for c in cookie.split("; ") if c)
        seen = []
        for i in range(count):
            headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())} if jar else {}
            request = urllib.request.Request(url + (first if i == 0 else "/"), headers=headers)
            with urllib.request.urlopen(request, timeout=5) as r:
                body, sets = json.loads(r.read()), r.headers.get_all("Set-Cookie") or []
            for line in sets:
                name, value = line.split(";", 1)[0].split("=", 1)
                jar[name.strip()] = value.strip()
            seen.append({"ecs": body["ecs"], "set": sets})
        out.append({"seen": seen, "cookie": "; ".join(f"{k}={v}" for k, v in jar.items())})
    print(json.dumps(out))
    """
)


def _certificates(folder: Path) -> tuple[Path, str, str]:
    """A test CA and a certificate for HOST it signed, made now with openssl: (CA file, cert, key)."""
    folder.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=acknet test CA",
    )
    openssl("req", *ec, "-keyout", "tls.key", "-out", "tls.csr", "-subj", f"/CN={HOST}")
    (folder / "san.ext").write_text(f"subjectAltName=DNS:{HOST}\n")
    openssl(
        "x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "tls.crt", "-days", "1", "-extfile", "san.ext",
    )  # fmt: skip
    return folder / "ca.crt", (folder / "tls.crt").read_text(), (folder / "tls.key").read_text()


def _b64(pem: str) -> str:
    return base64.b64encode(pem.encode()).decode()


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
    assert not processes_mentioning(str(emu.state)), f"processes of {emu.name} (NGINX?) left behind"


@pytest.fixture(scope="module")
def l7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emu]:
    name = "td" + secrets.token_hex(3)
    assert not netns_of(f"{name}-")
    tmp = tmp_path_factory.mktemp(name)
    emu = Emu(name, tmp / "state", tmp)
    try:
        _, crt, key = _certificates(tmp / "pki")
        echo = tmp / "echo.py"
        echo.write_text(ECHO)
        files = tmp / "l7.yaml"
        files.write_text(FILES.format(py=sys.executable, echo=echo, crt=_b64(crt), key=_b64(key), pub=PUB))
        emu.up(files)
        emu.wait_for("the echo servers", lambda: get(emu, f"http://{PUB}/").get("status") == 200)
        yield emu
    finally:
        _teardown(emu)


def ca_file(emu: Emu) -> str:
    return str(emu.tmp / "pki" / "ca.crt")


def get(emu: Emu, url: str, cafile: str = "", *headers: str, resolve: str = "") -> dict[str, object]:
    """A request from the Internet namespace; ``resolve`` maps HOST to that address (curl's --resolve)."""
    code = GET
    if resolve:
        # Name resolution is the client's business: HOST -> the VIP, so SNI and verification use HOST.
        code = (
            "import socket\n_real = socket.getaddrinfo\n"
            f"socket.getaddrinfo = lambda h, *a, **k: _real({resolve!r} if h == {HOST!r} else h, *a, **k)\n"
        ) + GET
    run = emu.py("internet", code, url, cafile, *headers, timeout=40)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)  # type: ignore[no-any-return]


def many(emu: Emu, url: str, count: int) -> dict[str, int]:
    run = emu.py("internet", MANY, url, str(count), timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)  # type: ignore[no-any-return]


def backends(emu: Emu, lb: str, listener: str) -> dict[str, dict[str, object]]:
    item = next(i for i in emu.get("slb") if i["name"] == lb)
    return {b["server"]: b for b in item["backends"] if b["listener"] == listener}


def test_http_reaches_a_backend_with_the_client_in_x_forwarded_for(l7: Emu) -> None:
    reply = get(l7, f"http://{PUB}/")
    assert reply["status"] == 200, reply
    body = reply["body"]
    assert isinstance(body, dict) and body["ecs"] in ("echo-1", "echo-2"), body
    # The client's address travels in X-Forwarded-For; the connection comes from the CLB's own address
    # in 100.64.0.0/10, which web-sg accepts without a rule (its only rule drops 203.0.113.0/24).
    assert body["headers"]["x-forwarded-for"] == "203.0.113.1", body
    assert IPv4Address(body["client"]) in IPv4Network("100.64.0.0/10"), body
    assert body["headers"]["host"] == PUB
    # A header the client sent is kept, and the client appended (the leftmost address is the origin).
    reply = get(l7, f"http://{PUB}/", "", "X-Forwarded-For: 10.9.9.9")
    assert reply["body"]["headers"]["x-forwarded-for"] == "10.9.9.9, 203.0.113.1", reply  # type: ignore[index]


def test_wrr_weights_on_layer_7(l7: Emu) -> None:
    counts = many(l7, f"http://{PUB}/", 200)
    # NGINX's weighted round robin is exact over a whole cycle: 150:50 of 200; weight 0 takes none.
    assert counts.get("echo-3", 0) == 0 and sum(counts.values()) == 200, counts
    assert abs(counts.get("echo-1", 0) - 150) <= 10, counts
    print(f"layer-7 wrr 75:25:0 over 200 requests: {counts}")


def sticky(
    emu: Emu, port: int, count: int, cookie: str = "", first: str = "/", clients: int = 1
) -> list[dict[str, Any]]:
    url = f"http://{PUB}:{port}"
    run = emu.py("internet", STICKY, url, str(count), cookie, first, str(clients), timeout=60)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)  # type: ignore[no-any-return]


def test_sticky_insert_keeps_a_client_on_the_backend_of_its_first_response(l7: Emu) -> None:
    clients = sticky(l7, 85, 6, clients=4)
    for c in clients:
        first, rest = c["seen"][0], c["seen"][1:]
        # The CLB's cookie on the first response only, and every later request on that backend.
        assert len(first["set"]) == 1 and first["set"][0].startswith("SERVERID="), first
        assert "Max-Age=600" in first["set"][0], first
        assert {r["ecs"] for r in rest} == {first["ecs"]} and not any(r["set"] for r in rest), c
    # New clients are scheduled (equal weights: both backends); without the cookie requests spread.
    assert {c["seen"][0]["ecs"] for c in clients} == {"echo-1", "echo-2"}, clients
    counts = many(l7, f"http://{PUB}:85/", 10)
    assert counts.keys() == {"echo-1", "echo-2"} and min(counts.values()) >= 3, counts


def test_sticky_server_rewrites_the_backends_cookie_to_name_the_backend(l7: Emu) -> None:
    clients = sticky(l7, 86, 6, first="/login", clients=2)
    for c in clients:
        first, rest = c["seen"][0], c["seen"][1:]
        # The backend's own line (a placeholder) and the CLB's rewrite after it, which the client keeps.
        assert first["set"][0] == "session_id=placeholder", first
        assert first["set"][1].startswith("session_id=") and first["set"][1] != "session_id=placeholder"
        assert c["cookie"] != "session_id=placeholder"
        assert {r["ecs"] for r in rest} == {first["ecs"]}, c
    assert {c["seen"][0]["ecs"] for c in clients} == {"echo-1", "echo-2"}, clients
    # Without the backend's cookie, no stickiness: requests spread.
    assert many(l7, f"http://{PUB}:86/", 10).keys() == {"echo-1", "echo-2"}


def test_https_terminates_tls_with_the_listeners_certificate(l7: Emu) -> None:
    url = f"https://{HOST}/"
    reply = get(l7, url, ca_file(l7), resolve=PUB)
    assert reply.get("status") == 200, reply
    body = reply["body"]
    assert isinstance(body, dict) and body["headers"]["x-forwarded-for"] == "203.0.113.1", body
    # rr: the weights are ignored, weight 0 still takes nothing: echo-1 and echo-2 in turn.
    seen = {get(l7, url, ca_file(l7), resolve=PUB)["body"]["ecs"] for _ in range(4)}  # type: ignore[index]
    assert seen == {"echo-1", "echo-2"}, seen
    # Verified against the run-time CA under the name it was issued for; another name fails.
    wrong = get(l7, f"https://{PUB}/", ca_file(l7))
    assert "CERTIFICATE_VERIFY_FAILED" in str(wrong.get("error", "")) or "match" in str(
        wrong.get("error", "")
    ), wrong
    # The proxy runs in the SLB's namespace, not on the host.
    netns = names.slb_netns(l7.name, "pub")
    run = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=True)
    assert any(b"nginx" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in run.stdout.split()), (
        run.stdout
    )


def test_a_services_https_listener_from_protocol_port_and_cert_id(l7: Emu) -> None:
    services = {s["metadata"]["name"]: s for s in l7.get("services")}
    vip = services["web"]["status"]["loadBalancer"]["ingress"][0]["ip"]
    item = next(i for i in l7.get("slb") if i["name"] == "demo/web")
    assert [(li["protocol"], li["port"]) for li in item["listeners"]] == [("https", 443)]
    reply = get(l7, f"https://{HOST}/", ca_file(l7), resolve=vip)
    assert reply.get("status") == 200, reply
    body = reply["body"]
    assert isinstance(body, dict) and body.get("namespace") == "demo", body  # the pod's built-in server


class _Block:
    """A drop rule in one backend's namespace: it stops answering on 8080."""

    def __init__(self, emu: Emu, ecs: str) -> None:
        self.netns = names.ecs_netns(emu.name, ecs)

    def __enter__(self) -> _Block:
        rule = "{ chain in { type filter hook input priority -300; tcp dport 8080 drop; }; }"
        cmd = ["ip", "netns", "exec", self.netns, "nft", "add", "table", "ip", "slbtestblock", rule]
        subprocess.run(cmd, check=True)
        return self

    def __exit__(self, *exc: object) -> None:
        cmd = ["ip", "netns", "exec", self.netns, "nft", "delete", "table", "ip", "slbtestblock"]
        subprocess.run(cmd, check=True)


SLOW = textwrap.dedent(
    """\
    import json, sys, threading, time, urllib.request
    base, seconds = sys.argv[1], float(sys.argv[2])
    slow = {}
    def one():
        try:
            with urllib.request.urlopen(base + "/slow", timeout=20) as r:
                slow["status"] = r.status
        except Exception as exc:
            slow["error"] = repr(exc)
    t = threading.Thread(target=one); t.start()
    statuses, start = [], time.monotonic()
    while time.monotonic() - start < seconds:
        try:
            with urllib.request.urlopen(base + "/", timeout=3) as r:
                statuses.append(r.status)
        except Exception as exc:
            statuses.append(repr(exc))
        time.sleep(0.05)
    t.join()
    print(json.dumps({"slow": slow, "statuses": statuses}))
    """
)


def test_health_checks_feed_the_upstreams_reloads_fail_nothing_and_none_left_is_503(l7: Emu) -> None:
    # A request in flight on listener 82 and steady requests there while echo-2 leaves listener 80's
    # upstream (a reload of the same NGINX): nothing fails.
    exec_internet = [*ACKNET, "exec", "internet", "--name", l7.name, "--state", str(l7.state), "--"]
    load = subprocess.Popen(
        [*exec_internet, sys.executable, "-c", SLOW, f"http://{PUB}:82", str(FAILURE_WINDOW + SLACK + 2)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    time.sleep(0.5)
    with _Block(l7, "echo-2"):
        start = time.monotonic()
        l7.wait_for(
            "echo-2 unhealthy",
            lambda: not backends(l7, "pub", "http/80")["ecs/echo-2"]["healthy"],
            FAILURE_WINDOW + SLACK,
        )
        removed = time.monotonic() - start
        out, _ = load.communicate(timeout=60)
        report = json.loads(out)
        assert report["slow"] == {"status": 200}, report["slow"]
        assert report["statuses"] and set(report["statuses"]) == {200}, report["statuses"]
        assert many(l7, f"http://{PUB}/", 20) == {"echo-1": 20}
        with _Block(l7, "echo-1"):
            l7.wait_for(
                "echo-1 unhealthy",
                lambda: not backends(l7, "pub", "http/80")["ecs/echo-1"]["healthy"],
                FAILURE_WINDOW + SLACK,
            )
            reply = get(l7, f"http://{PUB}/")
            assert reply["status"] == 503, reply
            assert "503" in str(reply["body"])
    l7.wait_for("echo-1 healthy", lambda: backends(l7, "pub", "http/80")["ecs/echo-1"]["healthy"], 2 + SLACK)
    l7.wait_for("echo-2 healthy", lambda: backends(l7, "pub", "http/80")["ecs/echo-2"]["healthy"], 2 + SLACK)
    counts = many(l7, f"http://{PUB}/", 40)
    assert set(counts) == {"echo-1", "echo-2"}, counts
    print(
        f"layer 7: echo-2 out after {removed:.1f}s (window {FAILURE_WINDOW:g}s); "
        f"{len(report['statuses'])} requests and one 8 s request across the reload, none failed"
    )


def test_an_unhealthy_sticky_backend_is_left_for_a_healthy_one(l7: Emu) -> None:
    (start,) = sticky(l7, 85, 2)
    stuck = start["seen"][0]["ecs"]
    other = "echo-2" if stuck == "echo-1" else "echo-1"
    with _Block(l7, stuck):
        l7.wait_for(
            f"{stuck} unhealthy",
            lambda: not backends(l7, "pub", "http/85")[f"ecs/{stuck}"]["healthy"],
            FAILURE_WINDOW + SLACK,
        )
        (moved,) = sticky(l7, 85, 4, start["cookie"])
    # The old cookie no longer routes: the healthy backend answers and its cookie replaces the old one.
    first = moved["seen"][0]
    assert first["ecs"] == other and first["set"] and first["set"][0].startswith("SERVERID="), moved
    assert moved["cookie"] != start["cookie"]
    assert {r["ecs"] for r in moved["seen"]} == {other}, moved
    l7.wait_for(
        f"{stuck} healthy", lambda: backends(l7, "pub", "http/85")[f"ecs/{stuck}"]["healthy"], 2 + SLACK
    )
