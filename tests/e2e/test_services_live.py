"""Services live: kube-proxy's nftables table and the cluster DNS in a running emulation, real packets.

One emulation (``svc`` + 6 hex) serves the whole module: two nodes, client pods pinned to each, and
ECS instances in another VSwitch, one let in by the cluster security group and one not. Packets go
through the real ``acknet exec``; the built-in server's JSON answer names the pod (and the port) that
answered and the client address it saw, which tells the backend and whether the packet was NATed.
The tests that change the emulation (readiness, deleting pods) come last.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import ACKNET, REPO, Emu, netns_of, processes_mentioning

from acknet.dataplane.render import names

pytestmark = pytest.mark.root

NODES = ("ack-default-0", "ack-default-1")
WEB, SOLO, SOLO_ITP, AFFINITY, MANUAL, EMPTY, PROBE = (f"172.21.0.{n}" for n in range(100, 107))
ECS_OK, ECS_NO = "192.168.8.10", "192.168.8.11"
NODE_PORT, LOCAL_NODE_PORT = 30080, 30081

CLOUD = """\
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
kind: VSwitch
metadata: {name: data-h}
spec: {vpc: vpc, cidrBlock: 192.168.8.0/24, zoneId: cn-hangzhou-h}
---
apiVersion: acknet.io/v1
kind: SecurityGroup
metadata: {name: cluster-sg}
spec:
  vpc: vpc
  innerAccessPolicy: Accept
  rules:
  # NodePorts: only ecs-ok may come in.
  - {direction: ingress, policy: accept, priority: 1, ipProtocol: tcp, portRange: 30000/32767, sourceCidrIp: 192.168.8.10/32}
---
apiVersion: acknet.io/v1
kind: SecurityGroup
metadata: {name: client-sg}
spec:
  vpc: vpc
  rules:
  - {direction: ingress, policy: accept, priority: 1, ipProtocol: tcp, portRange: 8080/8080, sourceCidrIp: 192.168.0.0/16}
---
apiVersion: acknet.io/v1
kind: ECSInstance
metadata: {name: ecs-ok}
spec: {vswitch: data-h, instanceType: ecs.g7.large, securityGroups: [client-sg], privateIpAddress: 192.168.8.10,
       ports: [{port: 8080, protocol: TCP}]}
---
apiVersion: acknet.io/v1
kind: ECSInstance
metadata: {name: ecs-no}
spec: {vswitch: data-h, instanceType: ecs.g7.large, securityGroups: [client-sg], privateIpAddress: 192.168.8.11}
---
apiVersion: acknet.io/v1
kind: Cluster
metadata: {name: ack}
spec:
  vpc: vpc
  networkPlugin: terway
  podVSwitches: [pod-h]
  networkPolicy: false
  securityGroups: [cluster-sg]
  nodePools:
  - {name: default, instanceType: ecs.g7.xlarge, vswitches: [node-h], count: 2}
"""


def deployment(name: str, replicas: int, labels: str, ports: str, extra: str = "", node: str = "") -> str:
    lines = [
        "---",
        "apiVersion: apps/v1",
        "kind: Deployment",
        f"metadata: {{name: {name}, namespace: demo}}",
        "spec:",
        f"  replicas: {replicas}",
        f"  selector: {{matchLabels: {labels}}}",
        "  template:",
        f"    metadata: {{labels: {labels}}}",
        "    spec:",
        *([f"      nodeSelector: {{kubernetes.io/hostname: {node}}}"] if node else []),
        "      containers:",
        "      - name: main",
        f"        ports: {ports}",
        *(f"        {line}" for line in extra.splitlines()),
    ]
    return "\n".join(lines) + "\n"


def service(name: str, spec: str) -> str:
    return f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: demo}}\nspec: {spec}\n"


def client(node: str, n: int) -> str:
    return textwrap.dedent(
        f"""\
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: client-{n}, namespace: demo, labels: {{app: client}}}}
        spec:
          nodeSelector: {{kubernetes.io/hostname: {node}}}
          containers:
          - name: main
            ports: [{{containerPort: 8080}}]
        """
    )


def workloads(marks: Path) -> str:
    # The readiness probe of the `probe` pods fails while a file named after the pod's namespace exists.
    probe = textwrap.dedent(
        f"""\
        readinessProbe:
          exec:
            command: [sh, -c, 'test ! -e {marks}/$(ip netns identify)']
          periodSeconds: 1
          failureThreshold: 1
        """
    )
    web_ports = "[{name: http, containerPort: %d}, {name: echo, containerPort: 5353, protocol: UDP}, {containerPort: 9000}]"
    return "".join(
        [
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n",
            # Two versions behind one Service: the named targetPort `http` is 8080 in one, 8088 in the other.
            deployment("web", 2, "{app: web, v: one}", web_ports % 8080),
            deployment("web2", 1, "{app: web, v: two}", web_ports % 8088),
            deployment("solo", 1, "{app: solo}", "[{name: http, containerPort: 8080}]", node=NODES[0]),
            deployment("probe", 2, "{app: probe}", "[{name: http, containerPort: 8080}]", extra=probe),
            client(NODES[0], 0),
            client(NODES[1], 1),
            service(
                "web",
                f"{{clusterIP: {WEB}, selector: {{app: web}}, ports: [{{name: http, port: 80, targetPort: http}}, "
                "{name: echo, port: 53, protocol: UDP, targetPort: echo}, {name: alt, port: 8081, targetPort: 9000}]}",
            ),
            service(
                "web-np",
                f"{{type: NodePort, selector: {{app: web}}, ports: [{{port: 80, targetPort: http, nodePort: {NODE_PORT}}}]}}",
            ),
            service(
                "web-aff",
                f"{{clusterIP: {AFFINITY}, selector: {{app: web}}, sessionAffinity: ClientIP, "
                "ports: [{port: 80, targetPort: http}]}",
            ),
            service(
                "web-headless",
                "{clusterIP: None, selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}]}",
            ),
            service("ext", "{type: ExternalName, externalName: www.example.com}"),
            service(
                "solo",
                f"{{clusterIP: {SOLO}, selector: {{app: solo}}, ports: [{{port: 80, targetPort: http}}]}}",
            ),
            service(
                "solo-local",
                "{type: NodePort, externalTrafficPolicy: Local, selector: {app: solo}, "
                f"ports: [{{port: 80, targetPort: http, nodePort: {LOCAL_NODE_PORT}}}]}}",
            ),
            service(
                "solo-itp",
                f"{{clusterIP: {SOLO_ITP}, internalTrafficPolicy: Local, selector: {{app: solo}}, "
                "ports: [{port: 80, targetPort: http}]}",
            ),
            service("manual", f"{{clusterIP: {MANUAL}, ports: [{{port: 80, protocol: TCP}}]}}"),
            textwrap.dedent(
                f"""\
                ---
                apiVersion: discovery.k8s.io/v1
                kind: EndpointSlice
                metadata: {{name: manual-1, namespace: demo, labels: {{kubernetes.io/service-name: manual}}}}
                addressType: IPv4
                ports: [{{port: 8080, protocol: TCP}}]
                endpoints:
                - addresses: [{ECS_OK}]
                """
            ),
            service("empty", f"{{clusterIP: {EMPTY}, selector: {{app: nothing}}, ports: [{{port: 80}}]}}"),
            service(
                "probe",
                f"{{clusterIP: {PROBE}, selector: {{app: probe}}, ports: [{{port: 80, targetPort: http}}]}}",
            ),
        ]
    )


# Requests in a loop inside a pod: one `acknet exec` for many requests.
REPEAT = """
import json, sys, time, urllib.request
url, count, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
answers = []
for _ in range(count):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            answers.append(json.loads(r.read()))
    except Exception as exc:
        answers.append({"error": repr(exc), "at": time.monotonic()})
    time.sleep(pause)
print(json.dumps(answers))
"""
LOAD = """
import json, sys, time, urllib.request
url, seconds = sys.argv[1], float(sys.argv[2])
end = time.monotonic() + seconds
ok, errors, pods = 0, [], {}
while time.monotonic() < end:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            pod = json.loads(r.read())["pod"]
        ok += 1
        pods[pod] = pods.get(pod, 0) + 1
    except Exception as exc:
        errors.append(repr(exc))
    time.sleep(0.002)
print(json.dumps({"ok": ok, "errors": errors, "pods": pods}))
"""
RESOLVE = """
import json, socket, sys
import dns.resolver
out = {}
try:
    out["hosts"] = sorted(socket.gethostbyname_ex(sys.argv[1])[2])
except OSError as exc:
    out["hosts"] = repr(exc)
try:
    answer = dns.resolver.resolve(sys.argv[2], "CNAME")
    out["cname"] = [r.target.to_text() for r in answer]
except Exception as exc:
    out["cname"] = repr(exc)
print(json.dumps(out))
"""
CONNECT_TIME = """
import socket, sys, time
s = socket.socket(); s.settimeout(3)
start = time.monotonic()
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); what = "connected"
except ConnectionRefusedError:
    what = "refused"
except TimeoutError:
    what = "timeout"
print(what, round(time.monotonic() - start, 3))
"""


def repeat(emu: Emu, target: str, url: str, count: int = 12, pause: float = 0.0) -> list[dict[str, Any]]:
    run = emu.py(target, REPEAT, url, str(count), str(pause), timeout=count * 3 + 30)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)  # type: ignore[no-any-return]


def client_ip(answer: dict[str, Any]) -> str:
    return str(answer["client"]).rsplit(":", 1)[0]


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emu]:
    """The module's emulation, built once; ``acknet down`` runs for it whatever happened."""
    name = "svc" + secrets.token_hex(3)
    assert not netns_of(f"{name}-")
    tmp = tmp_path_factory.mktemp(name)
    emulation = Emu(name, tmp / "state", tmp)
    marks = tmp / "marks"
    marks.mkdir()
    (tmp / "files").mkdir()
    (tmp / "files" / "cloud.yaml").write_text(CLOUD)
    (tmp / "files" / "apps.yaml").write_text(workloads(marks))
    try:
        emulation.up(tmp / "files")
        yield emulation
    finally:
        down = subprocess.run(
            [*ACKNET, "down", "--name", name, "--state", str(emulation.state)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=REPO,
        )
        assert down.returncode == 0, down.stderr
        assert not netns_of(f"{name}-"), "namespaces left behind"
        assert not processes_mentioning(str(emulation.state)), "processes left behind"


@pytest.fixture(scope="module")
def pods(emu: Emu) -> dict[str, dict[str, Any]]:
    return emu.pods()


def of(pods: dict[str, dict[str, Any]], app: str) -> dict[str, dict[str, Any]]:
    return {k.split("/")[1]: p for k, p in pods.items() if p["metadata"]["labels"].get("app") == app}


def node_ips(emu: Emu) -> dict[str, str]:
    return {n["name"]: n["ip"] for n in emu.get("nodes")}


def test_cluster_ip_tcp_udp_several_ports_named_target_port(emu, pods) -> None:
    web = of(pods, "web")
    assert len(web) == 3
    answers = repeat(emu, "demo/client-0", f"http://{WEB}/", count=15)
    assert all("pod" in a for a in answers), answers
    # Balanced over the pods, each on its own resolution of the named port `http`.
    assert {a["pod"] for a in answers} <= set(web)
    assert len({a["pod"] for a in answers}) >= 2, answers
    for a in answers:
        expected = 8088 if web[a["pod"]]["metadata"]["labels"]["v"] == "two" else 8080
        assert a["port"] == expected, a
        # Pod to ClusterIP: no SNAT, the backend sees the client pod.
        assert client_ip(a) == pods["demo/client-0"]["status"]["podIP"], a
    # The numeric targetPort.
    alt = repeat(emu, "demo/client-1", f"http://{WEB}:8081/", count=3)
    assert all(a.get("port") == 9000 and a["pod"] in web for a in alt), alt
    # UDP through the same ClusterIP, to the named UDP port.
    seen = set()
    for _ in range(4):
        reply = emu.udp("demo/client-1", WEB, 53)
        assert reply.get("from") == WEB, reply  # the answer comes back from the ClusterIP (un-DNAT)
        assert reply["reply"]["pod"] in web and reply["reply"]["port"] == 5353, reply
        seen.add(reply["reply"]["pod"])
    # A port the ClusterIP does not have is rejected.
    assert emu.connect("demo/client-0", WEB, 9999) == "refused"


def test_by_name_with_curl_and_search_domains(emu, pods) -> None:
    for url in ("http://web/", "http://web.demo/", "http://web.demo.svc.cluster.local/"):
        run = emu.exec("demo/client-0", "curl", "-s", "--max-time", "5", url)
        assert run.returncode == 0, (url, run.stderr)
        assert json.loads(run.stdout)["pod"] in of(pods, "web"), run.stdout


def test_node_port_on_every_node_from_a_pod_and_from_ecs(emu, pods) -> None:
    web = of(pods, "web")
    for node, ip in node_ips(emu).items():
        answers = repeat(emu, "demo/client-1", f"http://{ip}:{NODE_PORT}/", count=6)
        assert all(a.get("pod") in web for a in answers), (node, answers)
        # From a pod too, the NodePort (externalTrafficPolicy Cluster) is masqueraded to that node.
        assert {client_ip(a) for a in answers} == {ip}, answers
        # From ECS: the security group lets ecs-ok in; externalTrafficPolicy Cluster NATs the source
        # to the node, so the pod never sees the ECS address.
        answer = emu.http("ecs/ecs-ok", f"http://{ip}:{NODE_PORT}/")
        assert answer.get("pod") in web, (node, answer)
        assert client_ip(answer) == ip, answer
        # ecs-no is not in the group's rule: dropped by the security group, not refused.
        assert emu.connect("ecs/ecs-no", ip, NODE_PORT) == "timeout"


def test_external_traffic_policy_local_keeps_the_client_and_drops_elsewhere(emu, pods) -> None:
    (solo,) = of(pods, "solo").values()
    ips = node_ips(emu)
    here = solo["spec"]["nodeName"]
    (elsewhere,) = set(ips) - {here}
    answer = emu.http("ecs/ecs-ok", f"http://{ips[here]}:{LOCAL_NODE_PORT}/")
    assert answer.get("pod") == solo["metadata"]["name"], answer
    assert client_ip(answer) == ECS_OK, "externalTrafficPolicy Local keeps the client address"
    # The other node has no endpoint: dropped (not rejected, as kube-proxy does).
    assert emu.connect("ecs/ecs-ok", ips[elsewhere], LOCAL_NODE_PORT) == "timeout"


def test_internal_traffic_policy_local(emu, pods) -> None:
    (solo,) = of(pods, "solo").values()
    near = "demo/client-0" if solo["spec"]["nodeName"] == NODES[0] else "demo/client-1"
    far = "demo/client-1" if near == "demo/client-0" else "demo/client-0"
    assert emu.http(near, f"http://{SOLO_ITP}/").get("pod") == solo["metadata"]["name"]
    assert emu.connect(far, SOLO_ITP, 80) == "timeout"


def test_session_affinity_client_ip(emu, pods) -> None:
    for client in ("demo/client-0", "demo/client-1"):
        answers = repeat(emu, client, f"http://{AFFINITY}/", count=10)
        assert len({a.get("pod") for a in answers}) == 1, answers
        assert answers[0]["pod"] in of(pods, "web")


def test_headless_and_external_name_by_dns(emu, pods) -> None:
    run = emu.py("demo/client-0", RESOLVE, "web-headless", "ext.demo.svc.cluster.local.")
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got["hosts"] == sorted(p["status"]["podIP"] for p in of(pods, "web").values()), got
    assert got["cname"] == ["www.example.com."], got


def test_selectorless_service_with_hand_written_slice(emu) -> None:
    answer = emu.http("demo/client-1", f"http://{MANUAL}/")
    assert answer.get("ecs") == "ecs-ok", answer


def test_no_endpoints_rejects_quickly(emu) -> None:
    run = emu.py("demo/client-0", CONNECT_TIME, EMPTY, "80")
    what, seconds = run.stdout.split()
    assert what == "refused" and float(seconds) < 0.5, run.stdout


def test_hairpin_a_pod_through_its_own_service(emu, pods) -> None:
    (name,) = of(pods, "solo")
    answer = emu.http(f"demo/{name}", f"http://{SOLO}/")
    assert answer.get("pod") == name, answer
    # Masqueraded, so the reply comes back through the node and the connection completes.
    assert client_ip(answer) != pods[f"demo/{name}"]["status"]["podIP"], answer


def ready(emu: Emu, key: str) -> bool:
    pod = emu.pods()[key]
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"]["conditions"])


def test_readiness_failing_pod_leaves_the_service(emu, pods) -> None:
    probe = of(pods, "probe")
    assert len(probe) == 2
    victim, other = sorted(probe)
    mark = emu.tmp / "marks" / names.pod_netns(emu.name, "demo", victim)
    mark.touch()
    try:
        emu.wait_for("the probe pod to turn not ready", lambda: not ready(emu, f"demo/{victim}"), timeout=30)

        # The EndpointSlice follows within one supervision round; then only the other pod answers.
        def only_other() -> bool:
            answers = repeat(emu, "demo/client-0", f"http://{PROBE}/", count=8)
            return {a.get("pod") for a in answers} == {other}

        emu.wait_for("the not-ready pod to leave the Service", only_other, timeout=20, every=1)
    finally:
        mark.unlink()
    emu.wait_for("the probe pod to turn ready again", lambda: ready(emu, f"demo/{victim}"), timeout=30)

    def both() -> bool:
        answers = repeat(emu, "demo/client-0", f"http://{PROBE}/", count=12)
        return {a.get("pod") for a in answers} == {victim, other}

    emu.wait_for("the ready pod to come back", both, timeout=20, every=1)


def test_pods_deleted_under_load_the_service_keeps_answering(emu) -> None:
    before = of(emu.pods(), "web")
    victims = sorted(k for k, p in before.items() if p["metadata"]["labels"]["v"] == "one")
    load = subprocess.Popen(
        [
            *ACKNET,
            "exec",
            "--name",
            emu.name,
            "--state",
            str(emu.state),
            "demo/client-1",
            "--",
            sys.executable,
            "-c",
            LOAD,
            f"http://{WEB}/",
            "25",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        time.sleep(3)
        for victim in victims:  # one after the other, each replaced by its Deployment
            emu.acknet("delete", "pod", f"demo/{victim}")

            def replaced(victim: str = victim) -> bool:
                web = of(emu.pods(), "web")
                return victim not in web and len(web) == 3 and all(ready(emu, f"demo/{k}") for k in web)

            emu.wait_for(f"a replacement for {victim}", replaced, timeout=30)
        out, _ = load.communicate(timeout=60)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    result = json.loads(out)
    after = of(emu.pods(), "web")
    assert not set(victims) & set(after)
    assert result["errors"] == [], result
    assert result["ok"] > 100, result
    # The replacements took over: both answered before the load ended, the deleted pods stopped.
    new = set(after) - set(before)
    assert len(new) == 2
    assert new <= set(result["pods"]), result
    answers = repeat(emu, "demo/client-0", f"http://{WEB}/", count=12)
    assert {a["pod"] for a in answers} <= set(after) and not {a["pod"] for a in answers} & set(victims)
    assert os.path.isdir(emu.state)


@pytest.fixture
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emu]:
    """examples/shop in an emulation of its own (``svc`` + 6 hex), always brought down."""
    name = "svc" + secrets.token_hex(3)
    tmp = tmp_path_factory.mktemp(name)
    emulation = Emu(name, tmp / "state", tmp)
    try:
        yield emulation
    finally:
        subprocess.run(
            [*ACKNET, "down", "--name", name, "--state", str(emulation.state)],
            capture_output=True,
            timeout=120,
            check=False,
            cwd=REPO,
        )
        assert not netns_of(f"{name}-"), "namespaces left behind"
        assert not processes_mentioning(str(emulation.state)), "processes left behind"


def test_shop_pods_talk_by_service_name(shop) -> None:
    shop.up(REPO / "examples" / "shop")
    pods = shop.pods()
    web = next(k for k, p in pods.items() if p["metadata"]["labels"].get("app") == "web" and "shop/" in k)
    api = {k.split("/")[1] for k, p in pods.items() if p["metadata"]["labels"].get("app") == "api"}
    cart = {k.split("/")[1] for k, p in pods.items() if p["metadata"]["labels"].get("app") == "cart"}
    run = shop.exec(web, "curl", "-s", "--max-time", "5", "http://api:9090/")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["pod"] in api
    some_api = f"shop/{sorted(api)[0]}"
    run = shop.exec(some_api, "curl", "-s", "--max-time", "5", "http://cart.shop.svc.cluster.local:7070/")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["pod"] in cart
    # Policies apply after the Service's translation: web may not reach cart, even by its Service.
    run = shop.exec(web, "curl", "-s", "--max-time", "2", "http://cart:7070/")
    assert run.returncode != 0, run.stdout
