"""The validated desired state: every object of the files, grouped by cluster."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from acknet.model.calico import CalicoNetworkPolicy, GlobalNetworkPolicy, GlobalNetworkSet, NetworkSet
from acknet.model.cloud import VPC, Cluster, ECSInstance, LoadBalancer, SecurityGroup, VSwitch
from acknet.model.diagnostics import Diagnostic
from acknet.model.k8s import (
    ConfigMap,
    Deployment,
    EndpointSlice,
    Ingress,
    IngressClass,
    Namespace,
    NetworkPolicy,
    Pod,
    Secret,
    Service,
)

NsName = tuple[str, str]


@dataclass(slots=True)
class KubeObjects:
    """The Kubernetes and Calico objects of one cluster. Namespaced objects are keyed (namespace, name)."""

    namespaces: dict[str, Namespace] = field(default_factory=dict)
    pods: dict[NsName, Pod] = field(default_factory=dict)
    deployments: dict[NsName, Deployment] = field(default_factory=dict)
    services: dict[NsName, Service] = field(default_factory=dict)
    endpoint_slices: dict[NsName, EndpointSlice] = field(default_factory=dict)
    secrets: dict[NsName, Secret] = field(default_factory=dict)
    config_maps: dict[NsName, ConfigMap] = field(default_factory=dict)
    ingresses: dict[NsName, Ingress] = field(default_factory=dict)
    ingress_classes: dict[str, IngressClass] = field(default_factory=dict)
    network_policies: dict[NsName, NetworkPolicy] = field(default_factory=dict)
    calico_policies: dict[NsName, CalicoNetworkPolicy] = field(default_factory=dict)
    global_policies: dict[str, GlobalNetworkPolicy] = field(default_factory=dict)
    network_sets: dict[NsName, NetworkSet] = field(default_factory=dict)
    global_network_sets: dict[str, GlobalNetworkSet] = field(default_factory=dict)

    def pod_demand(self) -> int:
        """Pods these objects ask for: bare pods plus every Deployment's replicas."""
        return len(self.pods) + sum(d.spec.replicas for d in self.deployments.values())


@dataclass(slots=True)
class Resources:
    vpcs: dict[str, VPC] = field(default_factory=dict)
    vswitches: dict[str, VSwitch] = field(default_factory=dict)
    security_groups: dict[str, SecurityGroup] = field(default_factory=dict)
    ecs_instances: dict[str, ECSInstance] = field(default_factory=dict)
    clusters: dict[str, Cluster] = field(default_factory=dict)
    load_balancers: dict[str, LoadBalancer] = field(default_factory=dict)
    kube: dict[str, KubeObjects] = field(default_factory=dict)
    # True when the files held Kubernetes objects only and acknet made the cloud around them.
    default_cloud: bool = False
    warnings: list[Diagnostic] = field(default_factory=list)
    # Names of documents that failed their schema: references to them are not reported a second time.
    unloaded: set[str] = field(default_factory=set)

    def cluster_objects(self) -> Iterator[tuple[Cluster, KubeObjects]]:
        for name, cluster in self.clusters.items():
            yield cluster, self.kube.setdefault(name, KubeObjects())
