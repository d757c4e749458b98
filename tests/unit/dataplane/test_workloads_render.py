"""render_workloads for hostNetwork pods: they serve and run in their node's namespace, on its address,
with the node's resolver. Pure; no root."""

from __future__ import annotations

from ipaddress import IPv4Address

from acknet.controllers.plan import plan
from acknet.controllers.state import Plan
from acknet.dataplane.render import names
from acknet.dataplane.render.workloads import render_workloads
from acknet.model.documents import Source
from acknet.model.load import load_resources

EMU = "tx"
CLOUD = """
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
spec: {vpc: vpc, cidrBlock: 192.168.32.0/19, zoneId: cn-hangzhou-h}
---
apiVersion: acknet.io/v1
kind: SecurityGroup
metadata: {name: cluster-sg}
spec: {vpc: vpc}
---
apiVersion: acknet.io/v1
kind: Cluster
metadata: {name: ack}
spec:
  vpc: vpc
  securityGroups: [cluster-sg]
  podVSwitches: [pod-h]
  addons: []
  nodePools:
  - {name: default, instanceType: ecs.g7.xlarge, vswitches: [node-h], count: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default}
spec:
  containers:
  - {name: main, ports: [{containerPort: 8080}]}
"""


def host_pod(name: str, port: int, command: str = "") -> str:
    cmd = f", command: [{command}]" if command else ""
    return (
        "\n---\napiVersion: v1\nkind: Pod\n"
        f"metadata: {{name: {name}, namespace: default}}\n"
        "spec:\n  hostNetwork: true\n  containers:\n"
        f"  - {{name: main, ports: [{{containerPort: {port}, protocol: UDP}}]{cmd}}}\n"
    )


def plan_of(text: str) -> Plan:
    result = load_resources([Source("test.yaml", text)])
    assert not result.errors, "\n".join(str(d) for d in result.errors)
    return plan(result.resources)


NODE_NS = names.ecs_netns(EMU, "ack-default-0")


def test_host_network_pod_is_served_in_its_nodes_namespace_on_its_address() -> None:
    planned = plan_of(CLOUD + host_pod("agent", 9100))
    node_ip = next(i.primary_ip for i in planned.instances if i.name == "ack-default-0")
    work = render_workloads(planned, EMU)
    (agent,) = [e for e in work.endpoints if e.owner == "pod/default/agent"]
    assert (agent.netns, agent.ip, agent.port, agent.protocol) == (NODE_NS, node_ip, 9100, "UDP")
    assert agent.identity["podIP"] == str(node_ip)
    # The ordinary pod keeps its own namespace and address; only it gets the cluster DNS.
    (web,) = [e for e in work.endpoints if e.owner == "pod/default/web"]
    assert web.netns == names.pod_netns(EMU, "default", "web") and web.ip != node_ip
    assert set(work.resolv_confs) == {names.pod_netns(EMU, "default", "web")}


def test_host_network_commands_run_in_the_node() -> None:
    work = render_workloads(plan_of(CLOUD + host_pod("agent", 9100, command="sleep, '60'")), EMU)
    (proc,) = work.processes
    assert (proc.netns, proc.argv, proc.owner) == (NODE_NS, ("sleep", "60"), "pod/default/agent")
    assert not [e for e in work.endpoints if e.owner == "pod/default/agent"]


def test_two_host_network_pods_on_one_port_share_no_socket() -> None:
    planned = plan_of(CLOUD + host_pod("a", 9100) + host_pod("b", 9100) + host_pod("c", 9200))
    work = render_workloads(planned, EMU)
    keys = [e.key for e in work.endpoints]
    assert len(keys) == len(set(keys))
    by_port = {e.port: e.owner for e in work.endpoints if e.netns == NODE_NS}
    assert by_port == {9100: "pod/default/a", 9200: "pod/default/c"}
    assert all(e.ip == IPv4Address(str(e.identity["podIP"])) for e in work.endpoints)
