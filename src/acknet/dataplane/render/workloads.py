"""What runs in each pod and instance: built-in endpoints, commands, and the resolver configuration.

Pure. A container with a ``command`` runs it in the pod's namespace; every other container's ports are
answered by the one built-in server (DESIGN.md "Workloads"). Pods resolve through the cluster DNS at
the kube-dns address with ACK's search path and ``ndots:5`` (reference/alibaba.md section 6).
A hostNetwork pod is its node's namespace and address: its ports are served there, its commands run
there, and it keeps the node's resolver (with ``dnsPolicy: ClusterFirst``, the default, the kubelet
gives a hostNetwork pod the node's resolv.conf, not the cluster DNS).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from acknet.controllers.state import Instance, Plan, PlannedPod
from acknet.dataplane.render import names
from acknet.model.defaults import BUILTIN_ANNOTATION, INGRESS_BUILTIN_ROLE
from acknet.model.k8s import PodSpec


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A socket the built-in server holds: in ``netns``, bound to ``ip:port/protocol``."""

    netns: str
    ip: IPv4Address
    port: int
    protocol: str
    identity: Mapping[str, Any]
    owner: str  # "pod/<ns>/<name>" or "ecs/<name>"

    @property
    def key(self) -> tuple[str, str, int, str]:
        return (self.netns, str(self.ip), self.port, self.protocol)


@dataclass(frozen=True, slots=True)
class Process:
    """A command to run in ``netns``; ``label`` names it (and its pid file) uniquely and stably."""

    label: str
    netns: str
    argv: tuple[str, ...]
    owner: str


@dataclass(frozen=True, slots=True)
class Workloads:
    endpoints: tuple[Endpoint, ...]
    processes: tuple[Process, ...]
    resolv_confs: Mapping[str, str]  # pod namespace name -> resolv.conf text


def pod_spec(plan: Plan, pod: PlannedPod) -> PodSpec | None:
    """The spec a pod was made from: its own, or its Deployment's template."""
    objs = plan.resources.kube.get(pod.cluster)
    if objs is None:
        return None
    if pod.owner is None:
        bare = objs.pods.get((pod.namespace, pod.name))
        return bare.spec if bare is not None else None
    kind, _, name = pod.owner.partition("/")
    deployment = objs.deployments.get((pod.namespace, name)) if kind == "Deployment" else None
    return deployment.spec.template.spec if deployment is not None else None


def resolv_conf(dns: IPv4Address, namespace: str) -> str:
    return (
        f"nameserver {dns}\n"
        f"search {namespace}.svc.cluster.local svc.cluster.local cluster.local\n"
        "options ndots:5\n"
    )


DNS_PORT = 53


def speaks_dns(pod: PlannedPod, port: int) -> bool:
    """Whether the built-in server answers DNS on this pod port: CoreDNS's 53 (render/dns.py)."""
    return port == DNS_PORT and pod.annotations.get(BUILTIN_ANNOTATION) == "dns"


def _pod_workloads(emulation: str, plan: Plan, pod: PlannedPod) -> tuple[list[Endpoint], list[Process]]:
    spec = pod_spec(plan, pod)
    if spec is None or pod.ip is None or pod.node is None:
        return [], []
    if pod.host_network:
        netns = names.ecs_netns(emulation, pod.node)  # pod.ip is the node's primary IP
    else:
        netns = names.pod_netns(emulation, pod.namespace, pod.name)
    identity: dict[str, Any] = {
        "pod": pod.name,
        "namespace": pod.namespace,
        "node": pod.node,
        "podIP": str(pod.ip),
    }
    endpoints: list[Endpoint] = []
    processes: list[Process] = []
    if pod.annotations.get(BUILTIN_ANNOTATION) == INGRESS_BUILTIN_ROLE:
        return [], []  # the NGINX Ingress controller: acknet runs NGINX there (render/ingress.py)
    for container in spec.containers:
        if container.command:
            argv = (*container.command, *(container.args or ()))
            label = f"pod.{pod.namespace}.{pod.name}.{container.name}"
            processes.append(Process(label, netns, argv, f"pod/{pod.key}"))
            continue
        for port in container.ports:
            served = {**identity, "dns": pod.cluster} if speaks_dns(pod, port.container_port) else identity
            endpoints.append(
                Endpoint(netns, pod.ip, port.container_port, port.protocol, served, f"pod/{pod.key}")
            )
    return endpoints, processes


def _ecs_workloads(emulation: str, inst: Instance) -> tuple[list[Endpoint], list[Process]]:
    netns = names.ecs_netns(emulation, inst.name)
    owner = f"ecs/{inst.name}"
    if inst.command:
        return [], [Process(f"ecs.{inst.name}", netns, tuple(inst.command), owner)]
    identity = {"ecs": inst.name, "ip": str(inst.primary_ip)}
    # One socket per address: a wildcard UDP socket may answer from another address of the instance.
    endpoints = [
        Endpoint(netns, ip, port, protocol, identity, owner)
        for eni in inst.enis
        for ip in eni.ips
        for port, protocol in inst.ports
    ]
    return endpoints, []


def render_workloads(plan: Plan, emulation: str) -> Workloads:
    endpoints: list[Endpoint] = []
    processes: list[Process] = []
    resolv: dict[str, str] = {}
    # hostNetwork pods of one node share its sockets. The kube-scheduler keeps two pods that want one
    # host port off the same node (NodePorts filter: a hostNetwork pod's container ports are host
    # ports); should a plan still hold two, the first (in plan order) keeps the port.
    host_sockets: set[tuple[str, str, int, str]] = set()
    for pod in plan.pods:
        if pod.phase != "Running":
            continue
        eps, procs = _pod_workloads(emulation, plan, pod)
        if pod.host_network:
            eps = [e for e in eps if e.key not in host_sockets]
            host_sockets.update(e.key for e in eps)
        endpoints += eps
        processes += procs
        dns = plan.cluster_dns.get(pod.cluster)
        if dns is not None and not pod.host_network:
            resolv[names.pod_netns(emulation, pod.namespace, pod.name)] = resolv_conf(dns, pod.namespace)
    for inst in plan.instances:
        if not inst.is_node:
            eps, procs = _ecs_workloads(emulation, inst)
            endpoints += eps
            processes += procs
    return Workloads(tuple(endpoints), tuple(processes), resolv)
