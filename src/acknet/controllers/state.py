"""The planned state: what the controllers derive from the desired state. Frozen, printable data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from acknet.model.resources import Resources

EniMode = Literal["shared", "exclusive"]
Protocol = Literal["TCP", "UDP", "SCTP"]


@dataclass(frozen=True, slots=True)
class VSwitchUsage:
    """A VSwitch with its gateway (.253 of the last block), reserved and used addresses."""

    name: str
    vpc: str
    cidr: IPv4Network
    zone: str
    gateway: IPv4Address
    reserved: tuple[IPv4Address, ...]  # first address and last three (CreateVSwitchCidrReservation docs)
    used: int  # addresses held by ENIs (primary and secondary IPs) and SLB VIPs
    free: int


@dataclass(frozen=True, slots=True)
class Eni:
    """An elastic network interface. index 0 is the instance's primary ENI (eth0)."""

    id: str  # eni-<16 hex>, deterministic
    instance: str
    index: int
    vswitch: str
    mac: str  # locally administered, deterministic
    primary_ip: IPv4Address
    # Every private IP on the ENI, primary first. On Terway shared ENIs the secondary ENI's primary IP is a
    # pod address too (Terway on Linux hands it out; reference/alibaba.md 1.3).
    ips: tuple[IPv4Address, ...]
    security_groups: tuple[str, ...]
    exclusive_pod: str | None = None  # "namespace/name" when the whole ENI is moved into one pod


@dataclass(frozen=True, slots=True)
class Instance:
    """An ECS instance: a cluster node (cluster and node_pool set) or a standalone ECSInstance."""

    name: str
    instance_type: str
    zone: str
    vswitch: str
    primary_ip: IPv4Address
    security_groups: tuple[str, ...]
    enis: tuple[Eni, ...]
    cluster: str | None = None
    node_pool: str | None = None
    eni_mode: EniMode = "shared"
    max_pods: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    pod_cidr: IPv4Network | None = None  # Flannel: this node's PodCIDR
    ports: tuple[tuple[int, Protocol], ...] = ()  # standalone ECS: served ports
    command: tuple[str, ...] | None = None

    @property
    def is_node(self) -> bool:
        return self.cluster is not None


@dataclass(frozen=True, slots=True)
class PodPort:
    name: str | None
    port: int
    protocol: Protocol
    container: str


@dataclass(frozen=True, slots=True)
class PlannedPod:
    cluster: str
    namespace: str
    name: str
    labels: Mapping[str, str]
    ports: tuple[PodPort, ...]
    service_account: str = "default"
    owner: str | None = None  # "Deployment/<name>" for replicas
    node: str | None = None
    ip: IPv4Address | None = None
    eni: str | None = None  # id of the ENI holding the address (Terway)
    phase: Literal["Pending", "Running"] = "Pending"
    reason: str | None = None  # why it is Pending, as kubectl describe would say (IPResInsufficient, ...)
    commands: tuple[tuple[str, ...], ...] = ()  # per container: command + args, empty when built-in
    annotations: Mapping[str, str] = field(default_factory=dict)
    # hostNetwork: the pod shares its node's namespace and address (ip = the node's primary IP, no ENI).
    host_network: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class PlannedServicePort:
    name: str | None
    protocol: Protocol
    port: int
    target_port: int | str  # a number, or a container port name resolved per pod
    node_port: int | None = None


@dataclass(frozen=True, slots=True)
class PlannedService:
    cluster: str
    namespace: str
    name: str
    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]
    cluster_ip: IPv4Address | None  # None for headless and ExternalName
    ports: tuple[PlannedServicePort, ...]
    selector: Mapping[str, str] | None
    session_affinity_timeout: int | None = None  # seconds, when sessionAffinity is ClientIP
    external_traffic_policy: Literal["Cluster", "Local"] = "Cluster"
    internal_traffic_policy: Literal["Cluster", "Local"] = "Cluster"
    external_name: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def headless(self) -> bool:
        return self.cluster_ip is None and self.type != "ExternalName"


@dataclass(frozen=True, slots=True)
class EndpointAddress:
    ip: IPv4Address
    pod: str | None  # "namespace/name", None for hand-written slices
    node: str | None
    ready: bool = True
    serving: bool = True
    terminating: bool = False


@dataclass(frozen=True, slots=True)
class EndpointSlicePort:
    name: str | None
    port: int
    protocol: Protocol


@dataclass(frozen=True, slots=True)
class PlannedEndpointSlice:
    cluster: str
    namespace: str
    name: str  # <service>-<5 chars>, as the EndpointSlice controller names them
    service: str
    endpoints: tuple[EndpointAddress, ...]
    ports: tuple[EndpointSlicePort, ...]
    managed: bool = True  # False for slices written by hand in the files


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """A custom entry of a VPC's route table (Flannel: PodCIDR -> the node's instance)."""

    vpc: str
    destination: IPv4Network
    next_hop: str  # instance name
    next_hop_type: Literal["Instance"] = "Instance"
    description: str = ""


@dataclass(frozen=True, slots=True)
class Plan:
    resources: Resources
    vswitches: tuple[VSwitchUsage, ...]
    instances: tuple[Instance, ...]
    pods: tuple[PlannedPod, ...]
    services: tuple[PlannedService, ...]
    endpoint_slices: tuple[PlannedEndpointSlice, ...]
    routes: tuple[RouteEntry, ...]
    # cluster name -> address of kube-dns (.10 of its service CIDR)
    cluster_dns: Mapping[str, IPv4Address] = field(default_factory=dict)
    # LoadBalancer name -> VIP of each intranet CLB of the files, from its VSwitch (given or allocated)
    slb_addresses: Mapping[str, IPv4Address] = field(default_factory=dict)
    # Every CLB instance with its VIP, listeners and backends (controllers/slb.py)
    load_balancers: tuple[PlannedLoadBalancer, ...] = ()


# -- Server Load Balancer (CLB) instances, as the SLB controller plans them -------------------------

SlbProtocol = Literal["tcp", "udp", "http", "https"]


@dataclass(frozen=True, slots=True)
class SlbHealthCheck:
    """A listener's health check with every default filled in (reference/alibaba.md 4).

    ``timeout`` is the effective one: CLB uses the interval when the configured timeout is shorter.
    ``port`` None means the backend's own port (HealthCheckConnectPort -520).
    """

    type: Literal["tcp", "http", "udp"] = "tcp"
    interval: int = 2
    timeout: int = 5
    healthy_threshold: int = 3
    unhealthy_threshold: int = 3
    port: int | None = None
    uri: str = "/"
    domain: str | None = None
    http_codes: tuple[str, ...] = ("http_2xx",)
    enabled: bool = True

    @property
    def failure_window(self) -> int:
        """Seconds from a backend failing to its removal, at most (health check FAQ)."""
        return self.timeout * self.unhealthy_threshold + self.interval * (self.unhealthy_threshold - 1)


@dataclass(frozen=True, slots=True)
class SlbBackend:
    """One backend of a listener: ``server`` names it (``ecs/NAME`` or ``eni/IP``), ``ip`` is where
    traffic goes (an ECS instance's primary IP, or the ENI address)."""

    server: str
    ip: IPv4Address
    port: int
    weight: int = 100
    role: Literal["", "Master", "Slave"] = ""  # primary/secondary groups only


@dataclass(frozen=True, slots=True)
class PlannedListener:
    protocol: SlbProtocol
    port: int
    scheduler: Literal["wrr", "wlc", "rr", "sch", "tch"]
    group: str  # "default", or the VServer / primary-secondary group's name
    backends: tuple[SlbBackend, ...]
    health_check: SlbHealthCheck
    persistence_timeout: int = 0
    acl_type: Literal["white", "black"] | None = None  # None: no ACL on the listener
    acl_entries: tuple[IPv4Network, ...] = ()
    connection_rate_limit: int | None = None  # new connections per second; over it they are dropped
    certificate: str | None = None  # https: the kubernetes.io/tls Secret "namespace/name" it serves
    # http(s) sticky sessions: None (off), "insert" (the CLB's SERVERID cookie, cookie_timeout seconds)
    # or "server" (the backend's cookie named ``cookie``, rewritten to name the backend).
    sticky_session_type: Literal["insert", "server"] | None = None
    cookie_timeout: int = 0
    cookie: str | None = None

    @property
    def key(self) -> str:
        return f"{self.protocol}/{self.port}"


@dataclass(frozen=True, slots=True)
class PlannedLoadBalancer:
    """A CLB instance: one from the files (``name`` = the LoadBalancer's) or one the cloud controller
    made for a Service of type LoadBalancer (``name`` = "NAMESPACE/SERVICE", ``service`` set).

    ``vpc`` is where it reaches its backends (None: nowhere, it has no backend in any VPC).
    ``health_source`` is its address in 100.64.0.0/10, the source of its health checks.
    """

    name: str
    address_type: Literal["internet", "intranet"]
    address: IPv4Address | None
    vpc: str | None
    vswitch: str | None
    listeners: tuple[PlannedListener, ...]
    health_source: IPv4Address
    service: str | None = None  # "cluster/namespace/name" for the Services' SLBs
    events: tuple[str, ...] = ()  # what the cloud controller would report as Service events
