"""The whole planned state from the desired state: every controller, in the order ACK would act.

1. VSwitch bookkeeping, with fixed addresses (SLB ``address``, ECS ``privateIpAddress``) taken first;
2. ECS instances: standalone ones and node pools; intranet SLB VIPs;
3. per cluster: Flannel PodCIDRs, Deployments -> pods, scheduling, pod addresses (Terway ENIs or
   Flannel), Services, EndpointSlices, Flannel VPC routes;
4. what every VSwitch holds at the end.

Given the previous plan, whatever still fits stays where it was (an instance's address, a pod's node,
ENI and address, a Service's ClusterIP and NodePorts, a node's PodCIDR), so applying a changed input
changes only what changed. Pure and deterministic: the same input always gives an equal Plan.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address

from acknet.controllers.endpoints import plan_endpoint_slices
from acknet.controllers.ipam import PodAddress, allocate_pod_addresses, assign_pod_cidrs, flannel_routes
from acknet.controllers.naming import EniRegistry
from acknet.controllers.nodes import plan_instances
from acknet.controllers.scheduling import Placement, schedule
from acknet.controllers.services import plan_services
from acknet.controllers.slb import plan_load_balancers
from acknet.controllers.slb_address import allocate_slb_addresses, reserve_fixed_slb_addresses
from acknet.controllers.state import (
    Instance,
    Plan,
    PlannedEndpointSlice,
    PlannedPod,
    PlannedService,
    RouteEntry,
)
from acknet.controllers.vswitch import AddressBook
from acknet.controllers.workloads import DesiredPod, expand_workloads
from acknet.model.cloud import Cluster
from acknet.model.resources import KubeObjects, Resources


def _previous_addresses(previous: Plan, book: AddressBook) -> None:
    """Holds every VSwitch address the previous plan used, so new allocations leave them be."""
    held: dict[str, list[IPv4Address]] = {}
    for instance in previous.instances:
        for eni in instance.enis:
            held.setdefault(eni.vswitch, []).extend(eni.ips)
    for name, address in previous.slb_addresses.items():
        lb = previous.resources.load_balancers.get(name)
        if lb is not None and lb.spec.vswitch is not None:
            held.setdefault(lb.spec.vswitch, []).append(address)
    for planned_lb in previous.load_balancers:  # the Services' intranet SLBs (controllers/slb.py)
        if planned_lb.service is not None and planned_lb.vswitch and planned_lb.address:
            held.setdefault(planned_lb.vswitch, []).append(planned_lb.address)
    for vswitch, addresses in held.items():
        allocator = book.get(vswitch)
        if allocator is not None:
            allocator.hold(addresses)


def _final_pod(desired: DesiredPod, placement: Placement, address: PodAddress) -> PlannedPod:
    """The pod with its node and address; Running once it has both. Bound to a node but without an
    address (the sandbox cannot be set up), it stays Pending with the CNI's reason, as kubelet shows."""
    pod = desired.pod
    running = placement.node is not None and address.ip is not None
    # Spelled out rather than dataclasses.replace, which costs a third of this at 60,000 pods.
    return PlannedPod(
        cluster=pod.cluster,
        namespace=pod.namespace,
        name=pod.name,
        labels=pod.labels,
        ports=pod.ports,
        service_account=pod.service_account,
        owner=pod.owner,
        node=placement.node,
        ip=address.ip if running else None,
        eni=address.eni if running else None,
        phase="Running" if running else "Pending",
        reason=None if running else (placement.reason if placement.node is None else address.reason),
        commands=pod.commands,
        annotations=pod.annotations,
        host_network=pod.host_network,
    )


class _Planner:
    def __init__(
        self,
        resources: Resources,
        previous: Plan | None,
        retired: frozenset[str],
        not_ready: frozenset[str] = frozenset(),
    ) -> None:
        self.resources = resources
        self.retired = retired
        self.not_ready = not_ready
        self.book = AddressBook.from_resources(resources)
        self.registry = EniRegistry()
        self.prev_instances: dict[str, Instance] = {}
        self.prev_pods: dict[str, dict[str, PlannedPod]] = {}
        self.prev_services: dict[str, dict[str, PlannedService]] = {}
        self.prev_slb: dict[str, IPv4Address] = {}
        self.prev_lbs = previous.load_balancers if previous is not None else ()
        if previous is not None:
            _previous_addresses(previous, self.book)
            self.prev_instances = {i.name: i for i in previous.instances}
            for pod in previous.pods:
                self.prev_pods.setdefault(pod.cluster, {})[pod.key] = pod
            for svc in previous.services:
                self.prev_services.setdefault(svc.cluster, {})[svc.key] = svc
            self.prev_slb = dict(previous.slb_addresses)
        self.pods: list[PlannedPod] = []
        self.services: list[PlannedService] = []
        self.slices: list[PlannedEndpointSlice] = []
        self.routes: list[RouteEntry] = []
        self.cluster_dns: dict[str, IPv4Address] = {}

    def cluster(self, cluster: Cluster, objs: KubeObjects, nodes: list[Instance]) -> list[Instance]:
        name = cluster.name
        prev_pods = self.prev_pods.get(name, {})
        flannel = cluster.spec.network_plugin == "flannel"
        if flannel:
            nodes = assign_pod_cidrs(cluster, nodes, self.prev_instances)
        ready = {n.name: not flannel or n.pod_cidr is not None for n in nodes}
        desired = expand_workloads(name, objs, self.retired)
        previous_nodes = {key: pod.node for key, pod in prev_pods.items() if pod.node is not None}
        placements = schedule(nodes, desired, previous_nodes, ready)
        nodes, addresses = allocate_pod_addresses(
            cluster, nodes, desired, placements, self.book, self.registry, prev_pods, self.prev_instances
        )
        pods = [_final_pod(d, p, a) for d, p, a in zip(desired, placements, addresses, strict=True)]
        planned = plan_services(cluster, objs, self.prev_services.get(name, {}))
        self.pods.extend(pods)
        self.services.extend(planned.services)
        self.cluster_dns[name] = planned.cluster_dns
        self.slices.extend(plan_endpoint_slices(name, planned.services, pods, objs, self.not_ready))
        self.routes.extend(flannel_routes(cluster, nodes))
        return nodes

    def run(self) -> Plan:
        resources = self.resources
        fixed_slb = reserve_fixed_slb_addresses(resources, self.book)
        instances = plan_instances(resources, self.book, self.registry, self.prev_instances)
        slb = allocate_slb_addresses(resources, self.book, fixed_slb, self.prev_slb)
        out: list[Instance] = [i for i in instances if not i.is_node]
        for cluster in resources.clusters.values():
            nodes = [i for i in instances if i.cluster == cluster.name]
            objs = resources.kube.get(cluster.name) or KubeObjects()
            out.extend(self.cluster(cluster, objs, nodes))
        load_balancers, slb = plan_load_balancers(
            resources, out, self.services, self.slices, self.book, slb, self.prev_lbs
        )
        return Plan(
            resources=resources,
            vswitches=self.book.usage(),
            instances=tuple(out),
            pods=tuple(self.pods),
            services=tuple(self.services),
            endpoint_slices=tuple(self.slices),
            routes=tuple(self.routes),
            cluster_dns=self.cluster_dns,
            slb_addresses=slb,
            load_balancers=load_balancers,
        )


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """A plan is one large, acyclic structure built in one go. While it grows, CPython 3.11's cyclic
    collector keeps rescanning the whole heap (the input included): at 60,000 pods that was ~45% of
    plan(). Reference counting still frees every temporary; the collector is back on afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def plan(
    resources: Resources,
    previous: Plan | None = None,
    retired: frozenset[str] = frozenset(),
    not_ready: frozenset[str] = frozenset(),
) -> Plan:
    """The planned state of ``resources``; with ``previous``, allocations that are still valid are kept.

    ``retired`` holds pods ("namespace/name") that were deleted or whose process died: a bare pod stays
    gone, a Deployment's replica comes back under a new name, as its ReplicaSet makes a new pod.
    ``not_ready`` holds pods whose readiness probe fails (observed, so an input): their EndpointSlice
    endpoints are not ready, and kube-proxy and the cluster DNS leave them out.
    """
    with _cyclic_gc_paused():
        return _Planner(resources, previous, retired, not_ready).run()
