"""The NGINX Ingress controller live: ingress-nginx's routing vectors, TLS with a CA made at run time,
mistakes that stay with their Ingress, endpoint changes, network policy between the controller and
the backends, and examples/shop over HTTPS.

One emulation (``ing`` + 6 hex) serves the module: two nodes, the controller's two pods (the default
``nginx-ingress`` add-on), an echo Deployment in namespace ``conf`` whose one command answers on ports
8000-8015 with JSON naming the port, the Host header and the path it saw. Each Ingress of a vector
case gets its own Service ``echo-<i>`` (port 80 -> 8000+i), which is how the tests tell which Ingress
served a request (upstream uses a per-Ingress header snippet for that). Requests go from a client pod
to a controller pod, as in-cluster traffic does; the SLB test and the shop test (as `make demo` runs
it) go through nginx-ingress-lb from the Internet namespace.

The vectors are read where they are (``$ACKNET_SHARED/conformance/ingress-nginx``).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import ACKNET, EXAMPLES, REPO, Emu, netns_of, processes_mentioning

from acknet.cli.output import verdict_state
from acknet.dataplane.render import names

pytestmark = pytest.mark.root

SHARED = Path(os.environ.get("ACKNET_SHARED") or REPO.parent / "shared")
VECTORS = SHARED / "conformance" / "ingress-nginx" / "ingress-routing-vectors.yaml"
PORTS = 16  # echo ports 8000..8015

ECHO_SERVER = textwrap.dedent(
    """\
    import http.server, json, socketserver, sys, threading
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_GET(self):
            body = json.dumps({"port": self.server.server_address[1], "host": self.headers.get("Host"),
                               "ip": self.connection.getsockname()[0],
                               "uri": self.path, "client": self.client_address[0],
                               "xff": self.headers.get("X-Forwarded-For")}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        do_POST = do_GET
        def log_message(self, *a):
            pass
    class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True
    for port in range(8000, 8000 + int(sys.argv[1])):
        threading.Thread(target=S(("0.0.0.0", port), H).serve_forever, daemon=True).start()
    threading.Event().wait()
    """
)

# Requests from inside a pod: one process per batch. argv: JSON list of
# {ip, port, host, path, scheme, headers, resolve}; prints a JSON list of {status, location, body}.
CLIENT = textwrap.dedent(
    """\
    import http.client, json, socket, ssl, sys
    class SNI(http.client.HTTPSConnection):
        def __init__(self, ip, port, sni, ctx):
            super().__init__(ip, port, timeout=8, context=ctx)
            self.sni = sni
        def connect(self):
            sock = socket.create_connection((self.host, self.port), self.timeout)
            self.sock = self._context.wrap_socket(sock, server_hostname=self.sni)
    out = []
    for r in json.loads(sys.argv[1]):
        try:
            if r.get("scheme") == "https":
                ctx = ssl.create_default_context(cafile=r["ca"]) if r.get("ca") else ssl._create_unverified_context()
                conn = SNI(r["ip"], r.get("port", 443), r["host"], ctx)
            else:
                conn = http.client.HTTPConnection(r["ip"], r.get("port", 80), timeout=8)
            conn.request(r.get("method", "GET"), r["path"], body=r.get("body"),
                         headers={"Host": r["host"], **r.get("headers", {})})
            resp = conn.getresponse()
            text = resp.read().decode(errors="replace")
            try:
                body = json.loads(text)
            except ValueError:
                body = None
            out.append({"status": resp.status, "location": resp.getheader("Location"), "body": body})
        except Exception as exc:
            out.append({"status": None, "error": f"{type(exc).__name__}: {exc}"})
    print(json.dumps(out))
    """
)

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
  - {direction: ingress, policy: accept, priority: 1, ipProtocol: icmp, portRange: -1/-1, sourceCidrIp: 0.0.0.0/0}
  # The SLB keeps the client's address: the Internet must reach the NodePorts of nginx-ingress-lb.
  - {direction: ingress, policy: accept, priority: 1, ipProtocol: tcp, portRange: 30000/32767, sourceCidrIp: 0.0.0.0/0}
---
apiVersion: acknet.io/v1
kind: Cluster
metadata: {name: ack}
spec:
  vpc: vpc
  podVSwitches: [pod]
  networkPolicy: true
  securityGroups: [cluster-sg]
  nodePools: [{name: default, vswitches: [node], count: 2}]
"""


def workloads(replicas: int = 1) -> str:
    command = json.dumps([sys.executable, "-c", ECHO_SERVER, str(PORTS)])
    services = "".join(
        f"""---
apiVersion: v1
kind: Service
metadata: {{name: echo-{i}, namespace: conf}}
spec:
  selector: {{app: echo}}
  ports: [{{name: http, port: 80, targetPort: {8000 + i}}}]
"""
        for i in range(PORTS)
    )
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: echo, namespace: conf}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: echo}}}}
  template:
    metadata: {{labels: {{app: echo}}}}
    spec:
      containers:
      - name: echo
        command: {command}
        ports: [{{name: http, containerPort: 8000}}]
        readinessProbe: {{tcpSocket: {{port: 8000}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: conf, labels: {{app: client}}}}
spec:
  containers: [{{name: c, ports: [{{containerPort: 9}}]}}]
{services}"""


def ingress_doc(
    name: str, host: str | None, path: str, path_type: str, service: str, **extra: Any
) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    "path": path,
                    "pathType": path_type,
                    "backend": {"service": {"name": service, "port": {"number": 80}}},
                }
            ]
        }
    }
    if host:
        rule["host"] = host
    spec: dict[str, Any] = {"ingressClassName": "nginx", "rules": [rule]}
    if extra.get("tls"):
        spec["tls"] = extra["tls"]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": "conf", "annotations": extra.get("annotations") or {}},
        "spec": spec,
    }


def make_ca(folder: Path, hosts: list[str]) -> dict[str, str]:
    """A CA made now and one certificate for ``hosts`` it signs: PEM texts by file name."""
    folder.mkdir(parents=True, exist_ok=True)

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=acknet test CA",
        "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    ssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        f"/CN={hosts[0]}",
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
    )
    san = ",".join(f"DNS:{h}" for h in hosts)
    (folder / "san.cnf").write_text(f"subjectAltName={san}\n")
    ssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "san.cnf", "-out", "tls.crt")  # fmt: skip
    return {n: (folder / n).read_text() for n in ("ca.crt", "tls.crt", "tls.key")}


def controller_configmap(data: dict[str, str]) -> dict[str, Any]:
    """The NGINX Ingress controller's ConfigMap, where ACK has it (model/ingress_config.py)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "nginx-configuration", "namespace": "kube-system"},
        "data": data,
    }


def tls_secret(name: str, pems: dict[str, str], namespace: str = "conf") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": pems["tls.crt"], "tls.key": pems["tls.key"]},
    }


class Ingress:
    """The module's emulation and what the tests do with it."""

    def __init__(self, emu: Emu) -> None:
        self.emu = emu
        self.base = [CLOUD, workloads()]

    def up(self, *docs: dict[str, Any] | str) -> None:
        parts = [*self.base, *(d if isinstance(d, str) else yaml.safe_dump(d) for d in docs)]
        path = self.emu.tmp / "files.yaml"
        path.write_text("\n---\n".join(p.strip().removeprefix("---").strip() for p in parts) + "\n")
        self.emu.up(path)

    def controllers(self) -> list[str]:
        pods = self.emu.pods()
        return sorted(
            p["status"]["podIP"]
            for k, p in pods.items()
            if k.startswith("kube-system/nginx-ingress-controller")
        )

    def requests(self, batch: list[dict[str, Any]], source: str = "conf/client") -> list[dict[str, Any]]:
        run = self.emu.py(source, CLIENT, json.dumps(batch), timeout=60 + 10 * len(batch))
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout)  # type: ignore[no-any-return]

    def ingresses(self) -> dict[str, dict[str, Any]]:
        return {f"{i['metadata']['namespace']}/{i['metadata']['name']}": i for i in self.emu.get("ingress")}


@pytest.fixture(scope="module")
def ing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingress]:
    name = "ing" + secrets.token_hex(3)
    assert not netns_of(f"{name}-")
    tmp = tmp_path_factory.mktemp(name)
    emu = Emu(name, tmp / "state", tmp)
    try:
        yield Ingress(emu)
    finally:
        down = subprocess.run(
            [*ACKNET, "down", "--name", emu.name, "--state", str(emu.state)],
            capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
        )  # fmt: skip
        assert down.returncode == 0, down.stderr
        assert not netns_of(f"{name}-"), "namespaces left behind"
        assert not processes_mentioning(str(emu.state)), "processes left behind (nginx masters included)"


def _cases() -> list[dict[str, Any]]:
    if not VECTORS.exists():
        return []
    return list(yaml.safe_load(VECTORS.read_text())["cases"])


def case_docs(
    case: dict[str, Any], ca: Path, extra: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for i, spec in enumerate([*case["ingresses"], *(extra or [])]):
        path_type = spec.get("pathType", "Prefix")
        annotations = spec.get("annotations") or {}
        if annotations.get("nginx.ingress.kubernetes.io/use-regex") == "true":
            path_type = "ImplementationSpecific"  # strict-validate-path-type (vector header)
        docs.append(
            ingress_doc(
                spec["name"],
                spec["host"],
                spec["path"],
                path_type,
                f"echo-{i}",
                annotations=annotations,
                tls=spec.get("tls"),
            )
        )
        for tls in spec.get("tls") or []:
            docs.append(tls_secret(tls["secretName"], make_ca(ca / tls["secretName"], tls["hosts"])))
    return docs


def check_requests(
    ing: Ingress, case: dict[str, Any], names: list[str], requests: list[dict[str, Any]]
) -> list[str]:
    """Sends the vector's requests to each controller pod; the mismatches, described."""
    failures = []
    for ip in ing.controllers():
        batch = [
            {
                "ip": ip,
                "host": case["ingresses"][0]["host"],
                "path": r["path"],
                "headers": r.get("headers", {}),
            }
            for r in requests
        ]
        for want, got in zip(requests, ing.requests(batch), strict=True):
            where = f"{case['id']} {want['path']} via {ip}"
            if got["status"] != want["status"]:
                failures.append(f"{where}: status {got['status']} != {want['status']} ({got})")
                continue
            body = got.get("body") or {}
            if "served_by" in want:
                served = names[body["port"] - 8000] if "port" in body else None
                if served != want["served_by"]:
                    failures.append(f"{where}: served by {served}, want {want['served_by']}")
            if "backend_request_uri" in want:
                host = str(body.get("host", "")).split(":")[0]
                uri = f"http://{host}:80{body.get('uri')}"
                if uri != want["backend_request_uri"]:
                    failures.append(f"{where}: backend saw {uri}, want {want['backend_request_uri']}")
            if "location_header" in want and got.get("location") != want["location_header"]:
                failures.append(f"{where}: Location {got.get('location')}, want {want['location_header']}")
    return failures


@pytest.mark.parametrize("case", _cases(), ids=lambda c: str(c["id"]))
def test_routing_vector(ing: Ingress, case: dict[str, Any]) -> None:
    docs = case_docs(case, ing.emu.tmp / "ca")
    ing.up(*docs)
    names = [i["name"] for i in case["ingresses"]]
    status = ing.ingresses()
    for name in names:
        served = status[f"conf/{name}"]["status"]["conditions"][0]
        assert served["status"] == "True", served
    failures = check_requests(ing, case, names, case["requests"])
    then = case.get("then")
    if then:
        added = then["add_ingress"]
        ing.up(*case_docs(case, ing.emu.tmp / "ca", [added]))
        failures += check_requests(ing, case, [*names, added["name"]], then["requests"])
    variant = case.get("variant")
    if variant:
        # The same Ingresses under the controller's ConfigMap use-forwarded-headers: "true" (what the
        # vector file's comment on `variant` says upstream's e2e test sets).
        ing.up(*docs, controller_configmap({"use-forwarded-headers": "true"}))
        failures += check_requests(ing, case, names, variant["requests"])
    assert not failures, "\n".join(failures)


def test_vectors_are_there() -> None:
    if not VECTORS.exists():
        pytest.skip(f"{VECTORS} not found (set ACKNET_SHARED)")
    assert len(_cases()) == 13


def test_https_with_a_ca_made_now_and_sni(ing: Ingress) -> None:
    pems = make_ca(ing.emu.tmp / "ca-sni", ["a.example.com"])
    ca_file = ing.emu.tmp / "ca-sni" / "ca.crt"
    ing.up(
        tls_secret("a-tls", pems),
        ingress_doc(
            "a",
            "a.example.com",
            "/",
            "Prefix",
            "echo-0",
            tls=[{"hosts": ["a.example.com"], "secretName": "a-tls"}],
        ),
        ingress_doc("b", "b.example.com", "/", "Prefix", "echo-1"),
    )
    ip = ing.controllers()[0]
    # The client pod runs the test's interpreter, which reads the CA file from the host's file system.
    got = ing.requests(
        [
            {"ip": ip, "host": "a.example.com", "path": "/x", "scheme": "https", "ca": str(ca_file)},
            {"ip": ip, "host": "a.example.com", "path": "/x/"},
            {"ip": ip, "host": "b.example.com", "path": "/y", "scheme": "https"},
            {"ip": ip, "host": "b.example.com", "path": "/y"},
        ]
    )
    assert got[0]["status"] == 200 and got[0]["body"]["port"] == 8000, got[0]
    assert (got[1]["status"], got[1]["location"]) == (308, "https://a.example.com/x")
    # A host without TLS is served on 443 with the controller's own certificate, and is not redirected.
    assert got[2]["status"] == 200 and got[2]["body"]["port"] == 8001
    assert got[3]["status"] == 200


def test_forwarded_headers_from_a_proxy_in_front(ing: Ingress) -> None:
    """The controller's ConfigMap with use-forwarded-headers and compute-full-forwarded-for, as behind
    a proxy that terminates TLS: its X-Forwarded-Proto decides the HTTPS redirect, the first
    X-Forwarded-Host is the host the backend hears, and X-Forwarded-For names the client (the realip
    module), the connecting address appended (nginx.tmpl, lua_ingress.lua)."""
    pems = make_ca(ing.emu.tmp / "ca-fwd", ["fwd.example.com"])
    ing.up(
        tls_secret("fwd-tls", pems),
        ingress_doc(
            "fwd", "fwd.example.com", "/", "Prefix", "echo-0",
            tls=[{"hosts": ["fwd.example.com"], "secretName": "fwd-tls"}],
        ),
        controller_configmap({"use-forwarded-headers": "true", "compute-full-forwarded-for": "true"}),
    )  # fmt: skip
    ip = ing.controllers()[0]
    client = ing.emu.pods()["conf/client"]["status"]["podIP"]
    behind = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example.net:8443, edge.internal"}
    got = ing.requests(
        [
            {"ip": ip, "host": "fwd.example.com", "path": "/a/"},
            {"ip": ip, "host": "fwd.example.com", "path": "/a", "headers": {"X-Forwarded-Proto": "https"}},
            {"ip": ip, "host": "fwd.example.com", "path": "/b", "headers": {**behind, "X-Forwarded-For": "198.51.100.77"}},
            {"ip": ip, "host": "fwd.example.com", "path": "/c", "headers": {"X-Forwarded-Host": "example.com:80"}},
        ]
    )  # fmt: skip
    assert (got[0]["status"], got[0]["location"]) == (308, "https://fwd.example.com/a"), got[0]
    # TLS ended at the proxy in front: no redirect, and the backend hears the request's own host.
    assert got[1]["status"] == 200 and got[1]["body"]["host"] == "fwd.example.com", got[1]
    assert got[1]["body"]["xff"] == client, got[1]
    assert got[2]["status"] == 200, got[2]
    assert got[2]["body"]["host"] == "shop.example.net:8443", got[2]
    assert got[2]["body"]["xff"] == f"198.51.100.77, {client}", got[2]
    assert (got[3]["status"], got[3]["location"]) == (308, "https://example.com/c"), got[3]


def test_mistakes_stay_with_their_ingress(ing: Ingress) -> None:
    regex = {"nginx.ingress.kubernetes.io/use-regex": "true"}
    ing.up(
        ingress_doc("good", "good.example.com", "/", "Prefix", "echo-0"),
        ingress_doc("bad-regex", "r.example.com", "/x[", "ImplementationSpecific", "echo-1", annotations=regex),
        # Python's re takes \\U0001F600; PCRE does not: only `nginx -t` finds this one.
        ingress_doc("bad-pcre", "p.example.com", "/x\\U0001F600", "ImplementationSpecific", "echo-1", annotations=regex),
        ingress_doc("no-secret", "s.example.com", "/", "Prefix", "echo-1", tls=[{"hosts": ["s.example.com"], "secretName": "nope"}]),
        ingress_doc("no-service", "n.example.com", "/", "Prefix", "nope"),
    )  # fmt: skip
    status = {k: v["status"]["conditions"][0] for k, v in ing.ingresses().items()}
    assert status["conf/good"]["status"] == "True"
    assert {k: v["reason"] for k, v in status.items() if v["status"] == "False"} == {
        "conf/bad-regex": "InvalidPath",
        "conf/bad-pcre": "InvalidConfig",
        "conf/no-secret": "MissingSecret",
        "conf/no-service": "MissingService",
    }
    assert "nginx -t" in status["conf/bad-pcre"]["message"]
    table = ing.emu.acknet("get", "ingress").stdout
    assert "MissingSecret" in table and "good.example.com" in table
    ip = ing.controllers()[0]
    got = ing.requests([{"ip": ip, "host": h, "path": "/"} for h in ("good.example.com", "n.example.com")])
    assert [g["status"] for g in got] == [200, 404]


def test_endpoint_change_reaches_nginx_without_failing_requests(ing: Ingress) -> None:
    """Scaling the backend to three and back: NGINX reloads (new workers, old ones finish), and a
    stream of requests running through it meanwhile sees no failure."""
    ing.up(ingress_doc("scale", "scale.example.com", "/", "Prefix", "echo-0"))
    ip = ing.controllers()[0]
    loop = textwrap.dedent(
        f"""\
        import http.client, json, time
        end = time.time() + 25; codes = {{}}
        while time.time() < end:
            try:
                c = http.client.HTTPConnection("{ip}", 80, timeout=5)
                c.request("GET", "/", headers={{"Host": "scale.example.com"}})
                s = c.getresponse().status
            except Exception as e:
                s = type(e).__name__
            codes[str(s)] = codes.get(str(s), 0) + 1
            time.sleep(0.02)
        print(json.dumps(codes))
        """
    )
    netns = names.pod_netns(ing.emu.name, "conf", "client")
    stream = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-c", loop], stdout=subprocess.PIPE, text=True
    )
    try:
        ing.base = [CLOUD, workloads(replicas=3)]
        ing.up(ingress_doc("scale", "scale.example.com", "/", "Prefix", "echo-0"))
        pods = [p["status"]["podIP"] for k, p in ing.emu.pods().items() if k.startswith("conf/echo-")]
        assert len(pods) == 3

        def every_endpoint_used() -> bool:
            got = ing.requests([{"ip": ip, "host": "scale.example.com", "path": "/"}] * 12)
            assert {g["status"] for g in got} == {200}
            return {g["body"]["ip"] for g in got} == set(pods)

        # `up` returns once the new pods are ready; NGINX's new workers follow within moments.
        ing.emu.wait_for("NGINX to use the three endpoints", every_endpoint_used, timeout=15)
        ing.base = [CLOUD, workloads(replicas=1)]
        ing.up(ingress_doc("scale", "scale.example.com", "/", "Prefix", "echo-0"))
    finally:
        ing.base = [CLOUD, workloads()]
        out, _ = stream.communicate(timeout=60)
    codes = json.loads(out)
    assert set(codes) == {"200"}, codes


def test_network_policy_between_the_controller_and_the_backends(ing: Ingress) -> None:
    deny = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "deny", "namespace": "conf"},
        "spec": {"podSelector": {"matchLabels": {"app": "echo"}}, "policyTypes": ["Ingress"]},
    }
    allow = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "from-kube-system", "namespace": "conf"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "echo"}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}
                    ]
                }
            ],
        },
    }
    web = ingress_doc("np", "np.example.com", "/", "Prefix", "echo-0")
    ip = ing.controllers()[0]
    request = [{"ip": ip, "host": "np.example.com", "path": "/"}]
    ing.up(web, deny)
    # Dropped by the backend's policy: NGINX gives up after proxy-connect-timeout (5 s) with 504.
    assert ing.requests(request)[0]["status"] == 504
    ing.up(web, deny, allow)
    assert ing.requests(request)[0]["status"] == 200
    # The client pod itself (namespace conf) is still kept off the backend directly.
    echo_ip = next(p["status"]["podIP"] for k, p in ing.emu.pods().items() if k.startswith("conf/echo-"))
    assert ing.emu.connect("conf/client", echo_ip, 8000) == "timeout"


def test_through_the_slb_from_the_internet(ing: Ingress) -> None:
    ing.up(ingress_doc("pub", "pub.example.com", "/", "Prefix", "echo-0"))
    item = ing.ingresses()["conf/pub"]
    vip = item["status"]["loadBalancer"]["ingress"][0]["ip"]
    run = ing.emu.exec(
        "internet",
        "curl",
        "-s",
        "-m",
        "5",
        "--resolve",
        f"pub.example.com:80:{vip}",
        "http://pub.example.com/hi",
    )
    assert run.returncode == 0, run.stderr
    body = json.loads(run.stdout)
    assert body["uri"] == "/hi" and body["port"] == 8000
    # externalTrafficPolicy Local: NGINX sees the Internet client, as its X-Forwarded-For says.
    assert body["xff"].startswith("203.0.113.")


# Two rules of one Ingress, each to its own built-in pods (which name themselves in every answer).
TWO_RULES = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: a, namespace: conf}
spec:
  replicas: 2
  selector: {matchLabels: {app: a}}
  template:
    metadata: {labels: {app: a}}
    spec:
      containers: [{name: a, ports: [{containerPort: 8080}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: b, namespace: conf}
spec:
  replicas: 1
  selector: {matchLabels: {app: b}}
  template:
    metadata: {labels: {app: b}}
    spec:
      containers: [{name: b, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: a, namespace: conf}
spec: {selector: {app: a}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: b, namespace: conf}
spec: {selector: {app: b}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: two, namespace: conf}
spec:
  ingressClassName: nginx
  rules:
  - host: two.example.com
    http:
      paths:
      - {path: /a, pathType: Prefix, backend: {service: {name: a, port: {number: 80}}}}
      - {path: /b, pathType: Prefix, backend: {service: {name: b, port: {number: 80}}}}
"""
# Keeps everyone, the controller pods included, from b's pod: NGINX waits proxy_connect_timeout, 504.
KEEP_B = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: keep-b, namespace: conf}
spec:
  podSelector: {matchLabels: {app: b}}
  policyTypes: [Ingress]
"""


def check_and_probe(ing: Ingress, selection: list[str]) -> dict[tuple[str, str, int, str], str]:
    """``acknet check`` on the module's files and ``acknet probe`` on its emulation for ``selection``;
    the verdicts (allowed, partial or denied) once both agree on every one."""

    def states(output: str) -> dict[tuple[str, str, int, str], str]:
        found = json.loads(output)["verdicts"]
        return {(v["from"], v["to"], v["port"], v["protocol"]): verdict_state(v) for v in found}

    files = ing.emu.tmp / "files.yaml"
    checked = subprocess.run(
        [*ACKNET, "check", "-f", str(files), *selection, "-o", "json"],
        capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    probed = states(ing.emu.acknet("probe", *selection, "-o", "json", timeout=120).stdout)
    assert probed == states(checked.stdout)
    return probed


def test_check_and_probe_agree_through_the_ingress(ing: Ingress) -> None:
    """``--to ingress/conf/two`` from the Internet, a node and a pod: check from the files, probe with
    real requests (http://two.example.com/a and /b) to nginx-ingress-lb's VIP, which pass only when a
    pod of the rule answers. Then a NetworkPolicy keeps the controller from b's pod: /b's requests end
    in NGINX's 504 (or the probe's patience), /a's still pass, and both sides say partial. (The node and
    the pod meet SLB paths that fail either way: kube-proxy's answer on their own node.)"""
    ing.up(TWO_RULES)
    selection = ["--from", "internet,ecs/ack-default-0,conf/client", "--to", "ingress/conf/two"]
    key = ("internet", "ingress/conf/two", 80, "TCP")
    before = check_and_probe(ing, selection)
    assert before[key] == "allowed"
    ing.up(TWO_RULES, KEEP_B)
    after = check_and_probe(ing, selection)
    assert after[key] == "partial"


def test_shop_over_https_with_its_own_ca(emu: Emu) -> None:
    """examples/shop as `make demo` runs it: examples/shop/own_ca.py makes a CA now and a copy of the shop
    whose Secret holds a certificate it signs; from the Internet namespace, through nginx-ingress-lb
    (its layer-4 listeners keep the client's address, which cluster-sg admits on the NodePorts) and a
    controller pod, https://shop.example.com/ reaches web and /api reaches api, with TLS verified."""
    out = emu.tmp / "shop-ca"
    made = subprocess.run(
        [sys.executable, str(EXAMPLES / "shop" / "own_ca.py"), str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == str(out / "shop")
    emu.up(out / "shop")
    item = next(i for i in emu.get("ingress") if i["metadata"]["name"] == "shop")
    assert item["status"]["conditions"][0]["status"] == "True"
    vip = item["status"]["loadBalancer"]["ingress"][0]["ip"]
    resolve = ("--resolve", f"shop.example.com:443:{vip}", "--resolve", f"shop.example.com:80:{vip}")
    ca = str(out / "ca.crt")
    controllers = {
        p["status"]["podIP"] for k, p in emu.pods().items() if k.startswith("kube-system/nginx-ingress")
    }
    for path, app in (("/", "web"), ("/api", "api"), ("/api/items", "api")):
        run = emu.exec(
            "internet", "curl", "-sS", "-m", "8", "--retry", "3", "--retry-all-errors", "--cacert", ca,
            *resolve, f"https://shop.example.com{path}",
        )  # fmt: skip
        assert run.returncode == 0, (path, run.stdout, run.stderr)
        answer = json.loads(run.stdout)
        assert answer["pod"].startswith(f"{app}-"), (path, run.stdout)
        # The backend sees the controller pod (kube-system), which allow-web/allow-api-from-web admit.
        assert answer["client"].split(":")[0] in controllers, answer
    # The certificate is the CA's, not something curl trusts on its own.
    untrusted = emu.exec("internet", "curl", "-sS", "-m", "8", *resolve, "https://shop.example.com/")
    assert untrusted.returncode == 60, (untrusted.returncode, untrusted.stderr)
    plain = emu.exec("internet", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                     *resolve, "http://shop.example.com/cart")  # fmt: skip
    assert plain.stdout == "308 https://shop.example.com/cart"
