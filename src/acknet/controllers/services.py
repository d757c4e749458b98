"""Services: ClusterIPs from the service CIDR, NodePorts from 30000-32767, and the cluster DNS Service.

Every ACK cluster runs CoreDNS behind ``kube-system/kube-dns`` at the ``.10`` of the service CIDR (ports
53/UDP, 53/TCP, 9153; reference/alibaba.md 6), and the API server's own ``default/kubernetes`` Service
holds the ``.1``. Given ``clusterIP``s and ``nodePort``s are honoured and taken before anything is
allocated. The API server allocates the rest at random; we hash ``namespace/name`` into the range and
probe upwards for a free one, so a Service keeps its address when others come and go.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_address

from acknet.controllers.exceptions import invalid
from acknet.controllers.naming import digest
from acknet.controllers.state import PlannedService, PlannedServicePort
from acknet.model import defaults
from acknet.model.base import ObjectMeta
from acknet.model.cloud import Cluster
from acknet.model.k8s import Service, ServicePort, ServiceSpec
from acknet.model.resources import KubeObjects

KUBE_DNS = ("kube-system", "kube-dns")
KUBERNETES_OFFSET = 1  # default/kubernetes, the API server's Service


def kube_dns_service() -> Service:
    """The Service ACK creates for CoreDNS (``kubectl get svc -n kube-system kube-dns -o yaml``)."""
    return Service(
        api_version="v1",
        kind="Service",
        metadata=ObjectMeta(name="kube-dns", namespace="kube-system", labels={"k8s-app": "kube-dns"}),
        spec=ServiceSpec(
            selector={"k8s-app": "kube-dns"},
            ports=[
                ServicePort(name="dns", port=53, protocol="UDP", target_port=53),
                ServicePort(name="dns-tcp", port=53, protocol="TCP", target_port=53),
                ServicePort(name="metrics", port=9153, protocol="TCP", target_port=9153),
            ],
        ),
    )


def cluster_dns_ip(service_cidr: IPv4Network) -> IPv4Address:
    return service_cidr.network_address + defaults.CLUSTER_DNS_OFFSET


class HashedRange:
    """Integers ``low``..``high``: given values are taken as they are, others hashed from a key and
    probed upwards (wrapping) for a free one."""

    def __init__(self, label: str, low: int, high: int, full: Callable[[str], Exception]) -> None:
        self.label = label
        self.low = low
        self.high = high
        self.taken: set[int] = set()
        self._full = full

    def take(self, value: int) -> bool:
        if not self.low <= value <= self.high or value in self.taken:
            return False
        self.taken.add(value)
        return True

    def allocate(self, key: str) -> int:
        size = self.high - self.low + 1
        if len(self.taken) >= size:
            raise self._full(key)
        start = int.from_bytes(digest(self.label, key)[:8], "big") % size
        for step in range(size):
            value = self.low + (start + step) % size
            if value not in self.taken:
                self.taken.add(value)
                return value
        raise self._full(key)  # pragma: no cover - excluded by the count above


@dataclass(frozen=True, slots=True)
class ServicePlan:
    services: list[PlannedService]
    cluster_dns: IPv4Address


def _given_cluster_ip(svc: Service) -> IPv4Address | None:
    text = svc.spec.cluster_ip
    if text in (None, "", "None"):
        return None
    try:
        address = ip_address(text)
    except ValueError:
        address = None
    if not isinstance(address, IPv4Address):
        raise invalid(svc, "spec.clusterIP", f"{text!r} is not an IPv4 address")
    return address


def _needs_cluster_ip(svc: Service) -> bool:
    return svc.spec.type != "ExternalName" and not (svc.spec.type == "ClusterIP" and svc.spec.headless)


def _needs_node_ports(svc: Service) -> bool:
    return svc.spec.type in ("NodePort", "LoadBalancer")


def _allocate_cluster_ips(
    cluster: Cluster, services: Mapping[tuple[str, str], Service], previous: Mapping[str, PlannedService]
) -> tuple[dict[tuple[str, str], IPv4Address], IPv4Address]:
    cidr = cluster.spec.service_cidr
    base = int(cidr.network_address)

    def full(key: str) -> Exception:
        ns, name = key.split("/", 1)
        return invalid(
            services[(ns, name)], "spec.clusterIP", f"failed to allocate a serviceIP: range {cidr} is full"
        )

    # The network and broadcast addresses are never handed out (Kubernetes' IPv4 range allocator).
    pool = HashedRange(f"service CIDR {cidr}", 1, cidr.num_addresses - 2, full)
    pool.take(KUBERNETES_OFFSET)
    dns_svc = services[KUBE_DNS]
    dns_ip = _given_cluster_ip(dns_svc) or cluster_dns_ip(cidr)
    out: dict[tuple[str, str], IPv4Address] = {}
    for key, svc in sorted(services.items(), key=lambda kv: kv[0] != KUBE_DNS):
        given = dns_ip if key == KUBE_DNS else _given_cluster_ip(svc)
        if given is None or not _needs_cluster_ip(svc):
            continue
        if not pool.take(int(given) - base):
            where = "outside the service CIDR" if given not in cidr else "already allocated"
            raise invalid(svc, "spec.clusterIP", f"{given}: provided IP is {where} ({cidr})")
        out[key] = given
    for key, svc in sorted(services.items()):
        before = previous.get("/".join(key))
        old = before.cluster_ip if before is not None else None
        if (
            key not in out
            and _needs_cluster_ip(svc)
            and old is not None
            and old in cidr
            and pool.take(int(old) - base)
        ):
            out[key] = old
    for key, svc in sorted(services.items()):
        if key not in out and _needs_cluster_ip(svc):
            out[key] = cidr.network_address + pool.allocate("/".join(key))
    return out, dns_ip


def _allocate_node_ports(
    services: Mapping[tuple[str, str], Service], previous: Mapping[str, PlannedService]
) -> dict[tuple[str, str, int], int]:
    """NodePorts by (namespace, name, port). Ports of one Service with the same number share a NodePort
    (53/UDP and 53/TCP), as the API server's ``initNodePorts`` does; the range is one for all protocols."""
    low, high = defaults.NODE_PORT_RANGE

    def full(key: str) -> Exception:
        ns, rest = key.split("/", 1)
        name = rest.rsplit(":", 1)[0]
        return invalid(
            services[(ns, name)], "spec.ports", f"failed to allocate a nodePort: range {low}-{high} is full"
        )

    pool = HashedRange("NodePort range", low, high, full)
    out: dict[tuple[str, str, int], int] = {}
    wanting = [(key, svc) for key, svc in sorted(services.items()) if _needs_node_ports(svc)]
    for (ns, name), svc in wanting:
        for p in svc.spec.ports:
            if p.node_port is not None and (ns, name, p.port) not in out:
                # Clashes are validate's to report; here a given port is simply honoured.
                pool.taken.add(p.node_port)
                out[(ns, name, p.port)] = p.node_port
    for (ns, name), svc in wanting:
        before = previous.get(f"{ns}/{name}")
        if before is None:
            continue
        for old in before.ports:
            key = (ns, name, old.port)
            still_there = any(p.port == old.port for p in svc.spec.ports)
            if old.node_port is not None and key not in out and still_there and pool.take(old.node_port):
                out[key] = old.node_port
    for (ns, name), svc in wanting:
        for p in svc.spec.ports:
            if (ns, name, p.port) not in out:
                out[(ns, name, p.port)] = pool.allocate(f"{ns}/{name}:{p.port}")
    return out


def _planned(
    cluster: str,
    svc: Service,
    cluster_ip: IPv4Address | None,
    node_ports: Mapping[tuple[str, str, int], int],
) -> PlannedService:
    spec = svc.spec
    node_port = _needs_node_ports(svc)
    ports = tuple(
        PlannedServicePort(
            name=p.name,
            protocol=p.protocol,
            port=p.port,
            target_port=p.target_port if p.target_port is not None else p.port,
            node_port=node_ports[(svc.namespace, svc.name, p.port)] if node_port else None,
        )
        for p in spec.ports
    )
    affinity = None
    if spec.session_affinity == "ClientIP":
        config = spec.session_affinity_config
        affinity = config.client_ip.timeout_seconds if config is not None else 10800
    return PlannedService(
        cluster=cluster,
        namespace=svc.namespace,
        name=svc.name,
        type=spec.type,
        cluster_ip=cluster_ip,
        ports=ports,
        # An empty selector is dropped by the API server (omitempty): such a Service gets no endpoints.
        selector=dict(spec.selector) if spec.selector else None,
        session_affinity_timeout=affinity,
        external_traffic_policy=spec.external_traffic_policy,
        internal_traffic_policy=spec.internal_traffic_policy,
        external_name=spec.external_name if spec.type == "ExternalName" else None,
        annotations=dict(svc.metadata.annotations),
    )


def plan_services(cluster: Cluster, objs: KubeObjects, previous: Mapping[str, PlannedService]) -> ServicePlan:
    """Every Service of the cluster (kube-dns added when the files lack it), sorted by (namespace, name).

    ``previous`` maps ``namespace/name`` to the Service in the previous plan: it keeps its ClusterIP
    and NodePorts while they are still in range and free.
    """
    services: dict[tuple[str, str], Service] = dict(objs.services)
    services.setdefault(KUBE_DNS, kube_dns_service())
    cluster_ips, dns_ip = _allocate_cluster_ips(cluster, services, previous)
    node_ports = _allocate_node_ports(services, previous)
    planned = [
        _planned(cluster.name, svc, cluster_ips.get(key), node_ports) for key, svc in sorted(services.items())
    ]
    return ServicePlan(planned, dns_ip)
