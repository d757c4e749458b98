"""The cloud kinds (apiVersion acknet.io/v1), with exactly the fields of DESIGN.md.

Field names follow the Alibaba Cloud API (CreateVpc, CreateVSwitch, AuthorizeSecurityGroup,
RunInstances, CreateLoadBalancer...). Ranges that deserve a sentence of explanation (priorities,
port ranges, CIDR rules) are checked in ``validate`` so the message can say what is allowed.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import ClassVar, Literal

from pydantic import Field

from acknet.model.base import CloudResource, CloudSchema


class VPCSpec(CloudSchema):
    cidr_block: IPv4Network


class VPC(CloudResource):
    kind_name: ClassVar[str] = "VPC"
    spec: VPCSpec


class VSwitchSpec(CloudSchema):
    vpc: str
    cidr_block: IPv4Network
    zone_id: str


class VSwitch(CloudResource):
    kind_name: ClassVar[str] = "VSwitch"
    spec: VSwitchSpec


IpProtocol = Literal["tcp", "udp", "icmp", "gre", "all"]


class SecurityGroupRule(CloudSchema):
    direction: Literal["ingress", "egress"]
    policy: Literal["accept", "drop"] = "accept"
    priority: int = 1
    ip_protocol: IpProtocol
    port_range: str
    source_cidr_ip: str | None = None
    source_group_id: str | None = None
    dest_cidr_ip: str | None = None
    dest_group_id: str | None = None


class SecurityGroupSpec(CloudSchema):
    vpc: str
    security_group_type: Literal["normal", "enterprise"] = "normal"
    # None means the type's default: Accept for normal groups; enterprise groups have no intra-group access.
    inner_access_policy: Literal["Accept", "Drop"] | None = None
    rules: list[SecurityGroupRule] = Field(default_factory=list)


class SecurityGroup(CloudResource):
    kind_name: ClassVar[str] = "SecurityGroup"
    spec: SecurityGroupSpec

    @property
    def is_enterprise(self) -> bool:
        return self.spec.security_group_type == "enterprise"

    @property
    def inner_access(self) -> bool:
        """Whether members reach each other without a rule (ECS docs: basic groups default to Accept)."""
        if self.is_enterprise:
            return False
        return (self.spec.inner_access_policy or "Accept") == "Accept"


class PortSpec(CloudSchema):
    port: int
    protocol: Literal["TCP", "UDP"] = "TCP"


class ECSInstanceSpec(CloudSchema):
    vswitch: str
    instance_type: str = "ecs.g7.large"
    security_groups: list[str] = Field(min_length=1)
    private_ip_address: IPv4Address | None = None
    ports: list[PortSpec] = Field(default_factory=list)
    command: list[str] | None = None


class ECSInstance(CloudResource):
    kind_name: ClassVar[str] = "ECSInstance"
    spec: ECSInstanceSpec


class NodePool(CloudSchema):
    name: str
    instance_type: str = "ecs.g7.xlarge"
    vswitches: list[str] = Field(min_length=1)
    count: int = Field(default=1, ge=0)
    eni_mode: Literal["shared", "exclusive"] = "shared"
    # ACK node pools carry node labels (console "Node Labels"); nodeSelector needs something to match.
    labels: dict[str, str] = Field(default_factory=dict)


Addon = Literal["coredns", "nginx-ingress"]


def _default_addons() -> list[Addon]:
    return ["coredns", "nginx-ingress"]


class ClusterSpec(CloudSchema):
    vpc: str
    network_plugin: Literal["terway", "flannel"] = "terway"
    pod_vswitches: list[str] = Field(default_factory=list, alias="podVSwitches")
    pod_cidr: IPv4Network | None = None
    node_cidr_mask: int = 25
    flannel_backend: Literal["vpc", "vxlan"] = "vpc"
    service_cidr: IPv4Network = IPv4Network("172.21.0.0/20")
    # Off unless asked for, as on ACK (Terway's eni-config disable_network_policy defaults to true).
    network_policy: bool = False
    security_groups: list[str] = Field(default_factory=list)
    node_pools: list[NodePool] = Field(min_length=1)
    # The cluster components ACK installs (CreateCluster's ``addons``): CoreDNS and the NGINX Ingress
    # controller unless the files say so.
    addons: list[Addon] = Field(default_factory=_default_addons)


class Cluster(CloudResource):
    kind_name: ClassVar[str] = "Cluster"
    spec: ClusterSpec


class BackendServer(CloudSchema):
    ecs: str
    weight: int = 100


class GroupServer(CloudSchema):
    ecs: str | None = None
    eni: IPv4Address | None = None
    port: int
    weight: int = 100


class MasterSlaveServer(GroupServer):
    server_type: Literal["Master", "Slave"]


class VServerGroup(CloudSchema):
    name: str
    servers: list[GroupServer] = Field(default_factory=list)


class MasterSlaveServerGroup(CloudSchema):
    name: str
    servers: list[MasterSlaveServer]


HttpCode = Literal["http_2xx", "http_3xx", "http_4xx", "http_5xx"]


def _default_http_codes() -> list[HttpCode]:
    return ["http_2xx"]  # HealthCheckHttpCode's API default


class HealthCheck(CloudSchema):
    type: Literal["tcp", "http", "udp"] = "tcp"
    interval: int = 2
    connect_timeout: int = 5
    healthy_threshold: int = 3
    unhealthy_threshold: int = 3
    connect_port: int | None = None
    uri: str | None = None
    domain: str | None = None
    http_code: list[HttpCode] = Field(default_factory=_default_http_codes)


class Acl(CloudSchema):
    type: Literal["white", "black"]
    entries: list[str] = Field(default_factory=list)


class Certificate(CloudSchema):
    secret: str


class Listener(CloudSchema):
    protocol: Literal["tcp", "udp", "http", "https"]
    listener_port: int
    backend_server_port: int | None = None
    v_server_group: str | None = None
    master_slave_server_group: str | None = None
    scheduler: Literal["wrr", "wlc", "rr", "sch", "tch"] = "wrr"
    persistence_timeout: int = 0
    health_check: HealthCheck | None = None
    acl: Acl | None = None
    certificate: Certificate | None = None
    connection_rate_limit: int | None = None
    # Layer-7 session persistence (CreateLoadBalancerHTTPListener StickySession, StickySessionType,
    # CookieTimeout, Cookie); layer 4 keeps a client by persistenceTimeout instead.
    sticky_session: Literal["on", "off"] = "off"
    sticky_session_type: Literal["insert", "server"] | None = None
    cookie_timeout: int | None = None
    cookie: str | None = None


class LoadBalancerSpec(CloudSchema):
    address_type: Literal["internet", "intranet"] = "internet"
    vswitch: str | None = None
    address: IPv4Address | None = None
    backend_servers: list[BackendServer] = Field(default_factory=list)
    v_server_groups: list[VServerGroup] = Field(default_factory=list)
    master_slave_server_groups: list[MasterSlaveServerGroup] = Field(default_factory=list)
    listeners: list[Listener] = Field(default_factory=list)


class LoadBalancer(CloudResource):
    kind_name: ClassVar[str] = "LoadBalancer"
    spec: LoadBalancerSpec


CLOUD_KINDS: tuple[type[CloudResource], ...] = (
    VPC,
    VSwitch,
    SecurityGroup,
    ECSInstance,
    Cluster,
    LoadBalancer,
)
