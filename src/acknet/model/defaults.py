"""ACK defaults and quotas (reference/alibaba.md sections 1.3 and 6)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network


@dataclass(frozen=True, slots=True)
class InstanceType:
    """ENI quota of an ECS instance type: adapters including the primary ENI, IPv4 addresses per ENI."""

    name: str
    enis: int
    ips_per_eni: int

    @property
    def shared_eni_pods(self) -> int:
        """Terway shared-ENI capacity, ``(ENIs-1) x IPs per ENI`` (ACK docs, 使用Terway网络插件)."""
        return (self.enis - 1) * self.ips_per_eni

    @property
    def exclusive_eni_pods(self) -> int:
        """Terway exclusive-ENI capacity: one secondary ENI per pod, ``ENIs-1``."""
        return self.enis - 1


# ECS instance type families, 2021 docs (实例规格族.md): ENIs including the primary, private IPs per ENI.
INSTANCE_TYPES: dict[str, InstanceType] = {
    t.name: t
    for t in (
        InstanceType("ecs.g6.large", 2, 6),
        InstanceType("ecs.g6.xlarge", 3, 10),
        InstanceType("ecs.g6.2xlarge", 4, 10),
        InstanceType("ecs.g7.large", 3, 6),
        InstanceType("ecs.g7.xlarge", 4, 15),
        InstanceType("ecs.g7.2xlarge", 4, 15),
        InstanceType("ecs.g7.4xlarge", 8, 30),
        InstanceType("ecs.c7.large", 3, 6),
        InstanceType("ecs.c7.xlarge", 4, 15),
        InstanceType("ecs.r7.large", 3, 6),
        InstanceType("ecs.r7.xlarge", 4, 15),
    )
}
# An unknown type gets the quota of a common 4 vCPU type; validation warns about it.
DEFAULT_INSTANCE_TYPE = INSTANCE_TYPES["ecs.g7.xlarge"]


def instance_type(name: str) -> InstanceType:
    return INSTANCE_TYPES.get(
        name, InstanceType(name, DEFAULT_INSTANCE_TYPE.enis, DEFAULT_INSTANCE_TYPE.ips_per_eni)
    )


# The address ranges a VPC may use (ACK 网络规划: 10/8, 172.16/12, 192.168/16).
PRIVATE_RANGES = (IPv4Network("10.0.0.0/8"), IPv4Network("172.16.0.0/12"), IPv4Network("192.168.0.0/16"))
SERVICE_CIDR = IPv4Network("172.21.0.0/20")
FLANNEL_POD_CIDR = IPv4Network("172.20.0.0/16")
NODE_CIDR_MASK = 25
NODE_PORT_RANGE = (30000, 32767)
CLUSTER_DNS_OFFSET = 10  # kube-dns at the .10 address of the service CIDR
FLANNEL_MAX_PODS = 256  # kubelet max-pods on ACK Flannel nodes; also bounded by the node PodCIDR

# Labels every Kubernetes object of this kind carries once the API server has seen it.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
CLUSTER_ANNOTATION = "acknet.io/cluster"
# A pod template annotated with this is served by acknet's built-in server in a special role ("dns").
BUILTIN_ANNOTATION = "acknet.io/builtin"
COREDNS_REPLICAS = 2
# ACK's NGINX Ingress controller: kube-system/nginx-ingress-controller behind nginx-ingress-lb (alibaba.md 6).
INGRESS_CONTROLLER_REPLICAS = 2
INGRESS_CLASS = "nginx"  # ACK's default IngressClass
INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"  # the legacy way to name it
INGRESS_CONTROLLER_NAME = "k8s.io/ingress-nginx"  # IngressClass spec.controller
INGRESS_BUILTIN_ROLE = "nginx-ingress"  # BUILTIN_ANNOTATION value of the controller's pods
# What the controller pods declare as their command; acknet starts NGINX there itself.
INGRESS_PLACEHOLDER_COMMAND = ("/usr/sbin/nginx", "-e", "stderr", "-p", "/nonexistent/", "-c", "nginx.conf")
SYSTEM_NAMESPACES = ("default", "kube-system")
# The controller's ConfigMap: ACK's nginx-ingress-controller runs with
# --configmap=$(POD_NAMESPACE)/nginx-configuration (model/ingress_config.py reads it).
INGRESS_CONFIGMAP = ("kube-system", "nginx-configuration")

# The default cloud for files with Kubernetes objects only (ACK's Terway example network plan).
DEFAULT_VPC_CIDR = IPv4Network("192.168.0.0/16")
DEFAULT_NODE_VSWITCH_CIDR = IPv4Network("192.168.0.0/19")
DEFAULT_POD_VSWITCH_CIDR = IPv4Network("192.168.32.0/19")
DEFAULT_ZONE = "cn-hangzhou-h"
DEFAULT_NODE_INSTANCE_TYPE = "ecs.g7.xlarge"
DEFAULT_MIN_NODES = 2
