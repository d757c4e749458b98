"""Workloads in a plain folder of Kubernetes manifests (acknet's default cloud around them): UDP echo,
a container with a `command`, its replacement when the process dies, and readiness probes that fail.
"""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest
from e2e_support import pid_alive

from acknet.dataplane.render import names

pytestmark = pytest.mark.root

CLUSTER_DNS = "172.21.0.10"  # ACK's default service CIDR 172.21.0.0/20, kube-dns at its .10

APPS = textwrap.dedent(
    f"""\
    apiVersion: v1
    kind: Namespace
    metadata: {{name: apps}}
    ---
    apiVersion: apps/v1
    kind: Deployment
    metadata: {{name: echo, namespace: apps}}
    spec:
      replicas: 2
      selector: {{matchLabels: {{app: echo}}}}
      template:
        metadata: {{labels: {{app: echo}}}}
        spec:
          containers:
          - name: echo
            ports:
            - {{name: http, containerPort: 8080, protocol: TCP}}
            - {{name: dns, containerPort: 5353, protocol: UDP}}
    ---
    apiVersion: apps/v1
    kind: Deployment
    metadata: {{name: files, namespace: apps}}
    spec:
      replicas: 1
      selector: {{matchLabels: {{app: files}}}}
      template:
        metadata: {{labels: {{app: files}}}}
        spec:
          containers:
          - name: files
            # Serves /etc as the process sees it: its resolv.conf is the pod's.
            command: [{sys.executable}, -m, http.server, "8000", --bind, 0.0.0.0, --directory, /etc]
            ports: [{{containerPort: 8000, protocol: TCP}}]
            readinessProbe:
              tcpSocket: {{port: 8000}}
              periodSeconds: 1
    """
)

PROBES = textwrap.dedent(
    """\
    apiVersion: v1
    kind: Namespace
    metadata: {name: probes}
    ---
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: never, namespace: probes}
    spec:
      replicas: 1
      selector: {matchLabels: {app: never}}
      template:
        metadata: {labels: {app: never}}
        spec:
          containers:
          - name: never
            ports: [{containerPort: 8080, protocol: TCP}]
            readinessProbe:            # nothing serves 9999
              httpGet: {path: /healthz, port: 9999}
              periodSeconds: 1
              failureThreshold: 2
    ---
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: fine, namespace: probes}
    spec:
      replicas: 1
      selector: {matchLabels: {app: fine}}
      template:
        metadata: {labels: {app: fine}}
        spec:
          containers:
          - name: fine
            ports: [{name: http, containerPort: 8080, protocol: TCP}]
            readinessProbe:
              httpGet: {path: /healthz, port: http}
              periodSeconds: 1
    """
)


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"]["conditions"])


def of(pods: dict[str, dict], app: str) -> list[str]:
    return sorted(k for k, p in pods.items() if p["metadata"]["labels"].get("app") == app)


def write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "apps.yaml").write_text(text)
    return folder


def test_udp_echo_across_nodes(emu):
    emu.up(write(emu.tmp / "apps", APPS))
    pods = emu.pods()
    a, b = of(pods, "echo")
    assert pods[a]["spec"]["nodeName"] != pods[b]["spec"]["nodeName"], "the scheduler spreads replicas"
    for src, dst in ((a, b), (b, a)):
        dst_ip = pods[dst]["status"]["podIP"]
        answer = emu.udp(src, dst_ip, 5353)
        assert answer.get("reply", {}).get("pod") == dst.split("/")[1], answer
        assert answer["from"] == dst_ip
        # The same pod answers TCP on its other port.
        assert emu.http(src, f"http://{dst_ip}:8080/").get("pod") == dst.split("/")[1]
    # Nothing listens on UDP 5354: no answer.
    assert "error" in emu.udp(a, pods[b]["status"]["podIP"], 5354, timeout=1.0)


def test_command_runs_in_the_pod_and_is_replaced_when_it_dies(emu):
    emu.up(write(emu.tmp / "apps", APPS))
    pods = emu.pods()
    (files,) = of(pods, "files")
    assert ready(pods[files])
    files_ip = pods[files]["status"]["podIP"]
    client = of(pods, "echo")[0]

    # Real packets to the real process; the resolv.conf it sees names the cluster DNS.
    answer = emu.http(client, f"http://{files_ip}:8000/resolv.conf")
    assert answer.get("status") == 200, answer
    assert f"nameserver {CLUSTER_DNS}" in answer["text"]
    assert "search apps.svc.cluster.local svc.cluster.local cluster.local" in answer["text"]

    # The process recorded in the state folder is that server, inside the pod's namespace.
    namespace, _, name = files.partition("/")
    recorded = [p for p in (emu.state / "pids").glob("*.pid") if name in p.name]
    assert len(recorded) == 1, list((emu.state / "pids").iterdir())
    pid = int(recorded[0].read_text().split()[0])
    assert b"http.server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    netns = names.pod_netns(emu.name, namespace, name)
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/var/run/netns/{netns}").st_ino

    os.kill(pid, signal.SIGKILL)  # only this process, which acknet started for this test

    def replaced() -> dict | None:
        now = emu.pods()
        new = of(now, "files")
        return now if len(new) == 1 and files not in now and ready(now[new[0]]) else None

    after = emu.wait_for("the Deployment to replace the pod", replaced, timeout=15)
    (replacement,) = of(after, "files")
    assert replacement != files and replacement.startswith("apps/files-")
    assert not pid_alive(pid)
    assert not Path("/var/run/netns", netns).exists()
    answer = emu.http(client, f"http://{after[replacement]['status']['podIP']}:8000/resolv.conf")
    assert f"nameserver {CLUSTER_DNS}" in answer.get("text", ""), answer
    # The other pods were not touched.
    assert {k: p["status"]["podIP"] for k, p in after.items() if k != replacement} == {
        k: p["status"]["podIP"] for k, p in pods.items() if k != files
    }


def test_failing_readiness_probe(emu):
    run = emu.up(write(emu.tmp / "probes", PROBES))
    pods = emu.pods()
    (never,) = of(pods, "never")
    (fine,) = of(pods, "fine")
    assert f"not ready: {never}" in run.stderr
    assert fine not in run.stderr
    assert pods[never]["status"]["phase"] == "Running"
    assert not ready(pods[never])
    assert ready(pods[fine])
    assert "0/1" in next(line for line in emu.acknet("get", "pods").stdout.splitlines() if "never" in line)
    # Not ready is not unreachable: the built-in server still answers on the declared port.
    answer = emu.http(fine, f"http://{pods[never]['status']['podIP']}:8080/")
    assert answer.get("pod") == never.split("/")[1], answer
