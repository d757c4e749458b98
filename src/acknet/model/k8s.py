"""Kubernetes kinds, the fields acknet uses. Everything else a manifest carries is accepted and ignored."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from acknet.model.base import KubeResource, KubeSchema

Protocol = Literal["TCP", "UDP", "SCTP"]
IntOrString = int | str


class LabelSelectorRequirement(KubeSchema):
    key: str
    operator: str
    values: list[str] | None = None


class LabelSelector(KubeSchema):
    match_labels: dict[str, str] | None = None
    match_expressions: list[LabelSelectorRequirement] | None = None

    def as_dict(self) -> dict[str, object]:
        return self.model_dump(by_alias=True, exclude_none=True)


class Namespace(KubeResource):
    kind_name: ClassVar[str] = "Namespace"
    namespaced: ClassVar[bool] = False


class ContainerPort(KubeSchema):
    name: str | None = None
    container_port: int
    protocol: Protocol = "TCP"


class HTTPGetAction(KubeSchema):
    path: str = "/"
    port: IntOrString


class TCPSocketAction(KubeSchema):
    port: IntOrString


class ExecAction(KubeSchema):
    command: list[str] = Field(default_factory=list)


class Probe(KubeSchema):
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    exec: ExecAction | None = None
    initial_delay_seconds: int = 0
    period_seconds: int = 10
    timeout_seconds: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3


class Container(KubeSchema):
    name: str
    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    ports: list[ContainerPort] = Field(default_factory=list)
    readiness_probe: Probe | None = None


class PodSpec(KubeSchema):
    node_name: str | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    containers: list[Container] = Field(min_length=1)
    service_account_name: str = "default"
    host_network: bool = False


class Pod(KubeResource):
    kind_name: ClassVar[str] = "Pod"
    spec: PodSpec


class PodTemplateMeta(KubeSchema):
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class PodTemplate(KubeSchema):
    metadata: PodTemplateMeta = Field(default_factory=PodTemplateMeta)
    spec: PodSpec


class DeploymentSpec(KubeSchema):
    replicas: int = Field(default=1, ge=0)
    selector: LabelSelector
    template: PodTemplate


class Deployment(KubeResource):
    kind_name: ClassVar[str] = "Deployment"
    spec: DeploymentSpec


class ServicePort(KubeSchema):
    name: str | None = None
    protocol: Protocol = "TCP"
    port: int
    target_port: IntOrString | None = None
    node_port: int | None = None


class ClientIPConfig(KubeSchema):
    timeout_seconds: int = 10800


class SessionAffinityConfig(KubeSchema):
    client_ip: ClientIPConfig = Field(default_factory=ClientIPConfig, alias="clientIP")


class ServiceSpec(KubeSchema):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] = "ClusterIP"
    selector: dict[str, str] | None = None
    cluster_ip: str | None = Field(default=None, alias="clusterIP")
    ports: list[ServicePort] = Field(default_factory=list)
    session_affinity: Literal["None", "ClientIP"] = "None"
    session_affinity_config: SessionAffinityConfig | None = None
    external_traffic_policy: Literal["Cluster", "Local"] = "Cluster"
    internal_traffic_policy: Literal["Cluster", "Local"] = "Cluster"
    external_name: str | None = None
    load_balancer_class: str | None = None
    publish_not_ready_addresses: bool = False

    @property
    def headless(self) -> bool:
        return self.cluster_ip == "None"


class Service(KubeResource):
    kind_name: ClassVar[str] = "Service"
    spec: ServiceSpec = Field(default_factory=ServiceSpec)


class EndpointConditions(KubeSchema):
    ready: bool | None = True
    serving: bool | None = None
    terminating: bool | None = None


class Endpoint(KubeSchema):
    addresses: list[str] = Field(min_length=1)
    conditions: EndpointConditions = Field(default_factory=EndpointConditions)
    node_name: str | None = None


class EndpointPort(KubeSchema):
    name: str | None = None
    port: int | None = None
    protocol: Protocol = "TCP"


class EndpointSlice(KubeResource):
    kind_name: ClassVar[str] = "EndpointSlice"
    address_type: Literal["IPv4", "IPv6", "FQDN"] = "IPv4"
    endpoints: list[Endpoint] = Field(default_factory=list)
    ports: list[EndpointPort] = Field(default_factory=list)

    @property
    def service_name(self) -> str | None:
        return self.metadata.labels.get("kubernetes.io/service-name")


class Secret(KubeResource):
    kind_name: ClassVar[str] = "Secret"
    type: str = "Opaque"
    data: dict[str, str] = Field(default_factory=dict)
    string_data: dict[str, str] = Field(default_factory=dict, alias="stringData")


class ConfigMap(KubeResource):
    """Only the NGINX Ingress controller's ConfigMap means anything to the network (ingress_config.py)."""

    kind_name: ClassVar[str] = "ConfigMap"
    data: dict[str, str] = Field(default_factory=dict)


class ServiceBackendPort(KubeSchema):
    number: int | None = None
    name: str | None = None


class IngressServiceBackend(KubeSchema):
    name: str
    port: ServiceBackendPort


class IngressBackend(KubeSchema):
    service: IngressServiceBackend | None = None


class HTTPIngressPath(KubeSchema):
    path: str = "/"
    path_type: Literal["Exact", "Prefix", "ImplementationSpecific"] = "ImplementationSpecific"
    backend: IngressBackend


class HTTPIngressRuleValue(KubeSchema):
    paths: list[HTTPIngressPath] = Field(default_factory=list)


class IngressRule(KubeSchema):
    host: str | None = None
    http: HTTPIngressRuleValue | None = None


class IngressTLS(KubeSchema):
    hosts: list[str] = Field(default_factory=list)
    secret_name: str | None = None


class IngressSpec(KubeSchema):
    ingress_class_name: str | None = None
    default_backend: IngressBackend | None = None
    tls: list[IngressTLS] = Field(default_factory=list)
    rules: list[IngressRule] = Field(default_factory=list)


class Ingress(KubeResource):
    kind_name: ClassVar[str] = "Ingress"
    spec: IngressSpec = Field(default_factory=IngressSpec)


class IngressClassSpec(KubeSchema):
    controller: str = "k8s.io/ingress-nginx"


class IngressClass(KubeResource):
    kind_name: ClassVar[str] = "IngressClass"
    namespaced: ClassVar[bool] = False
    spec: IngressClassSpec = Field(default_factory=IngressClassSpec)


class IPBlock(KubeSchema):
    cidr: str
    except_: list[str] = Field(default_factory=list, alias="except")


class NetworkPolicyPeer(KubeSchema):
    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None


class NetworkPolicyPort(KubeSchema):
    protocol: Protocol = "TCP"
    port: IntOrString | None = None
    end_port: int | None = None


class NetworkPolicyIngressRule(KubeSchema):
    from_: list[NetworkPolicyPeer] | None = Field(default=None, alias="from")
    ports: list[NetworkPolicyPort] | None = None


class NetworkPolicyEgressRule(KubeSchema):
    to: list[NetworkPolicyPeer] | None = None
    ports: list[NetworkPolicyPort] | None = None


class NetworkPolicySpec(KubeSchema):
    # A missing podSelector is the empty selector: every pod of the namespace (k8s.md 4.4).
    pod_selector: LabelSelector = Field(default_factory=LabelSelector)
    policy_types: list[Literal["Ingress", "Egress"]] | None = None
    ingress: list[NetworkPolicyIngressRule] | None = None
    egress: list[NetworkPolicyEgressRule] | None = None

    def effective_policy_types(self) -> tuple[str, ...]:
        """policyTypes as the API server defaults them: Ingress always, Egress iff egress rules exist."""
        if self.policy_types:
            return tuple(dict.fromkeys(self.policy_types))
        return ("Ingress", "Egress") if self.egress else ("Ingress",)


class NetworkPolicy(KubeResource):
    kind_name: ClassVar[str] = "NetworkPolicy"
    spec: NetworkPolicySpec = Field(default_factory=NetworkPolicySpec)
