"""hostNetwork pods and the emulated Internet through the real ``acknet`` command, with real packets.

A hostNetwork pod shares its node's namespace and address: ``status.podIP`` is ``status.hostIP``, its
container ports answer on the node's address, it has no namespace of its own, and ``acknet exec`` into
it lands in the node. ``acknet exec internet`` runs in the emulated Internet, which reaches no private
address and which nothing private reaches. One emulation (``hnet`` + 6 hex) serves the whole module;
teardown runs ``acknet down`` and checks that none of its namespaces or processes is left.
"""

from __future__ import annotations

import secrets
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import ACKNET, REPO, Emu, netns_of, processes_mentioning

from acknet.dataplane.render import names

pytestmark = pytest.mark.root

APPS = textwrap.dedent(
    """\
    apiVersion: v1
    kind: Pod
    metadata: {name: agent, namespace: default, labels: {app: agent}}
    spec:
      hostNetwork: true
      containers:
      - name: agent
        ports:
        - {name: metrics, containerPort: 9100, protocol: TCP}
        - {name: beacon, containerPort: 9101, protocol: UDP}
        readinessProbe:
          httpGet: {path: /healthz, port: metrics}
          periodSeconds: 1
    ---
    # An exec readiness probe of a hostNetwork pod runs in its node's namespace.
    apiVersion: v1
    kind: Pod
    metadata: {name: checker, namespace: default, labels: {app: checker}}
    spec:
      hostNetwork: true
      containers:
      - name: checker
        ports: [{containerPort: 9200, protocol: TCP}]
        readinessProbe:
          exec: {command: [ip, link, show, eth0]}
          periodSeconds: 1
    ---
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: client, namespace: default}
    spec:
      replicas: 2
      selector: {matchLabels: {app: client}}
      template:
        metadata: {labels: {app: client}}
        spec:
          containers:
          - name: client
            ports: [{containerPort: 8080, protocol: TCP}]
    """
)

# A TCP connect that reports how it failed: "connected", "timeout", or the errno's name.
CONNECT = """
import errno, socket, sys
s = socket.socket(); s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); print("connected")
except TimeoutError:
    print("timeout")
except OSError as exc:
    print(errno.errorcode.get(exc.errno, str(exc)))
"""


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emu]:
    """One emulation for the module, up with APPS; ``acknet down`` at the end, whatever happened."""
    name = "hnet" + secrets.token_hex(3)
    assert not netns_of(f"{name}-")
    tmp = tmp_path_factory.mktemp(name)
    emulation = Emu(name, tmp / "state", tmp)
    try:
        folder = tmp / "apps"
        folder.mkdir()
        (folder / "apps.yaml").write_text(APPS)
        emulation.up(folder)
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
        left = netns_of(emulation.prefix)
        assert down.returncode == 0, f"acknet down failed:\n{down.stdout}\n{down.stderr}"
        assert not left, f"namespaces of {name} left behind: {left}"
        assert not processes_mentioning(str(emulation.state)), f"processes of {name} left behind"


def clients(emu: Emu) -> list[str]:
    return sorted(k for k, p in emu.pods().items() if p["metadata"]["labels"].get("app") == "client")


def test_host_network_pod_answers_on_its_nodes_address(emu: Emu) -> None:
    pods = emu.pods()
    agent = pods["default/agent"]
    node, ip = agent["spec"]["nodeName"], agent["status"]["podIP"]
    assert ip == agent["status"]["hostIP"]
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in agent["status"]["conditions"])
    nodes = {n["name"]: n["ip"] for n in emu.get("nodes")}
    assert nodes[node] == ip
    assert not Path("/var/run/netns", names.pod_netns(emu.name, "default", "agent")).exists()
    # Ordinary pods keep their own addresses.
    assert all(pods[c]["status"]["podIP"] != pods[c]["status"]["hostIP"] for c in clients(emu))

    # From pods on both nodes (one of them the agent's own) and from the node itself.
    for source in [*clients(emu), f"ecs/{node}"]:
        answer = emu.http(source, f"http://{ip}:9100/")
        assert answer.get("pod") == "agent" and answer.get("podIP") == ip, (source, answer)
        echo = emu.udp(source, ip, 9101)
        assert echo.get("reply", {}).get("pod") == "agent" and echo["from"] == ip, (source, echo)

    # Its exec readiness probe ran in the node (a pod namespace of its own has no eth0, nor exists).
    checker = pods["default/checker"]
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in checker["status"]["conditions"])

    # exec into the pod is exec into its node: the node's ENI address is there.
    run = emu.exec("default/agent", "ip", "-o", "-4", "addr", "show", "dev", "eth0")
    assert run.returncode == 0 and f"inet {ip}/" in run.stdout, run.stderr


def test_exec_internet_runs_in_the_emulated_internet(emu: Emu) -> None:
    internet = names.internet_netns(emu.name)
    assert internet in netns_of(emu.prefix)
    run = emu.exec("internet", "ip", "-o", "-4", "addr", "show", "dev", "lo")
    assert run.returncode == 0 and "inet 203.0.113.1/24" in run.stdout, run.stderr
    # The Internet reaches no private address: not a pod, not a node (the hostNetwork pod's address).
    pods = emu.pods()
    for target in (pods[clients(emu)[0]]["status"]["podIP"], pods["default/agent"]["status"]["podIP"]):
        got = emu.py("internet", CONNECT, target, "9100", "1.0").stdout.strip()
        assert got == "ENETUNREACH", (target, got)
    # And nothing private reaches the Internet: a pod and a node are turned back at their VRouter.
    for source in (clients(emu)[0], f"ecs/{pods['default/agent']['spec']['nodeName']}"):
        got = emu.py(source, CONNECT, "203.0.113.1", "80", "1.0").stdout.strip()
        assert got in ("EHOSTUNREACH", "ENETUNREACH", "timeout"), (source, got)
