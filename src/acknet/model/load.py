"""Documents to typed resources: kind lookup, schema errors as diagnostics, duplicates, cluster membership,
implicit namespaces and the default cloud."""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from acknet.model import defaults, ingress_config
from acknet.model.base import CloudResource, KubeResource, Resource
from acknet.model.calico import CalicoNetworkPolicy, GlobalNetworkPolicy, GlobalNetworkSet, NetworkSet
from acknet.model.cloud import (
    VPC,
    Cluster,
    ECSInstance,
    LoadBalancer,
    SecurityGroup,
    VSwitch,
)
from acknet.model.diagnostics import Diagnostic, Origin, error, format_path, warning
from acknet.model.documents import Document, Source, parse_documents
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
from acknet.model.resources import KubeObjects, Resources

C = TypeVar("C", bound=CloudResource)

# (apiVersion, kind) -> class. Kubernetes kinds are matched on the group so v1beta1 manifests get a clear error.
KINDS: dict[tuple[str, str], type[Resource]] = {
    ("acknet.io/v1", "VPC"): VPC,
    ("acknet.io/v1", "VSwitch"): VSwitch,
    ("acknet.io/v1", "SecurityGroup"): SecurityGroup,
    ("acknet.io/v1", "ECSInstance"): ECSInstance,
    ("acknet.io/v1", "Cluster"): Cluster,
    ("acknet.io/v1", "LoadBalancer"): LoadBalancer,
    ("v1", "Namespace"): Namespace,
    ("v1", "Pod"): Pod,
    ("v1", "Service"): Service,
    ("v1", "Secret"): Secret,
    ("v1", "ConfigMap"): ConfigMap,  # only the NGINX Ingress controller's is kept (_add_kube)
    ("apps/v1", "Deployment"): Deployment,
    ("discovery.k8s.io/v1", "EndpointSlice"): EndpointSlice,
    ("networking.k8s.io/v1", "Ingress"): Ingress,
    ("networking.k8s.io/v1", "IngressClass"): IngressClass,
    ("networking.k8s.io/v1", "NetworkPolicy"): NetworkPolicy,
    ("projectcalico.org/v3", "NetworkPolicy"): CalicoNetworkPolicy,
    ("projectcalico.org/v3", "GlobalNetworkPolicy"): GlobalNetworkPolicy,
    ("projectcalico.org/v3", "NetworkSet"): NetworkSet,
    ("projectcalico.org/v3", "GlobalNetworkSet"): GlobalNetworkSet,
}

# Kinds real manifest folders carry that mean nothing to the network: skipped with a warning.
IGNORED_KINDS = frozenset(
    {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "PersistentVolumeClaim",
        "PersistentVolume",
        "StorageClass",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "LimitRange",
        "ResourceQuota",
        "PriorityClass",
        "CustomResourceDefinition",
    }
)


@dataclass
class LoadResult:
    resources: Resources
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]


def _describe_kinds() -> str:
    return ", ".join(sorted({f"{kind} ({api})" for api, kind in KINDS}))


def _unwrap(annotation: Any) -> list[Any]:
    """The model classes an annotation can hold, through Optional, unions, lists and dicts."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, tuple, dict, typing.Annotated):
        found: list[Any] = []
        for arg in typing.get_args(annotation):
            found.extend(_unwrap(arg))
        return found
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _model_at(model: type[BaseModel], path: Sequence[int | str]) -> type[BaseModel] | None:
    current: type[BaseModel] | None = model
    for part in path:
        if current is None:
            return None
        if isinstance(part, int):
            continue
        match = next(
            (f for n, f in current.model_fields.items() if part in (n, f.alias)),
            None,
        )
        if match is None:
            return None
        candidates = _unwrap(match.annotation)
        current = candidates[0] if candidates else None
    return current


def _field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()]


def _schema_message(cls: type[BaseModel], err: ErrorDetails) -> str:
    kind = err["type"]
    loc = err["loc"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        parent = _model_at(cls, loc[:-1])
        allowed = ", ".join(_field_names(parent)) if parent else ""
        return f"unknown field {loc[-1]!r}" + (f"; allowed fields: {allowed}" if allowed else "")
    given = err.get("input")
    shown = repr(given) if not isinstance(given, dict | list) else type(given).__name__
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{shown} is not allowed; allowed: {expected}"
    return f"{err['msg'].rstrip('.')} (got {shown})"


_TYPE_TOKENS = frozenset({"int", "str", "bool", "float", "none", "IPv4Address", "IPv4Network"})


def _clean_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """Drops the union member names pydantic puts in locations (``port.int``, ``port.str``)."""
    return tuple(
        p
        for p in loc
        if isinstance(p, int) or not (p in _TYPE_TOKENS or "[" in p or p.startswith("function"))
    )


def schema_diagnostics(
    cls: type[BaseModel], exc: ValidationError, origin: Origin, ref: str, prefix: tuple[int | str, ...] = ()
) -> list[Diagnostic]:
    by_path: dict[tuple[int | str, ...], list[str]] = {}
    for err in exc.errors():
        path = prefix + _clean_loc(err["loc"])
        message = _schema_message(cls, err)
        messages = by_path.setdefault(path, [])
        if message not in messages:
            messages.append(message)
    return [
        error(" or ".join(messages), origin, ref, format_path(path)) for path, messages in by_path.items()
    ]


def _ref_of(body: dict[str, Any], cls: type[Resource] | None) -> str:
    kind = str(body.get("kind", "?"))
    meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    name = str(meta.get("name", "?"))
    namespaced = cls.namespaced if cls is not None else "namespace" in meta
    if namespaced:
        return f"{kind}/{meta.get('namespace') or 'default'}/{name}"
    return f"{kind}/{name}"


def _parse_resource(doc: Document) -> tuple[Resource | None, list[Diagnostic]]:
    body = doc.body
    if not isinstance(body, dict):
        return None, [
            error("a document must be a mapping with apiVersion, kind, metadata and spec", doc.origin)
        ]
    missing = [k for k in ("apiVersion", "kind") if not body.get(k)]
    if missing:
        return None, [
            error(
                f"required field is missing; every document needs {', '.join(missing)}",
                doc.origin,
                _ref_of(body, None),
                missing[0],
            )
        ]
    api, kind = str(body["apiVersion"]), str(body["kind"])
    cls = KINDS.get((api, kind))
    if cls is None:
        ref = _ref_of(body, None)
        if kind in IGNORED_KINDS:
            return None, [warning(f"{kind} has no effect on the network; skipped", doc.origin, ref)]
        versions = sorted(a for a, k in KINDS if k == kind)
        if versions:
            return None, [
                error(
                    f"apiVersion {api!r} is not supported for {kind}; use {' or '.join(versions)}",
                    doc.origin,
                    ref,
                    "apiVersion",
                )
            ]
        return None, [
            error(f"unknown kind {kind!r}; acknet knows {_describe_kinds()}", doc.origin, ref, "kind")
        ]
    ref = _ref_of(body, cls)
    try:
        resource = cls.model_validate(body)
    except ValidationError as exc:
        return None, schema_diagnostics(cls, exc, doc.origin, ref)
    resource.with_origin(doc.origin)
    return resource, []


class _Builder:
    def __init__(self) -> None:
        self.res = Resources()
        self.diags: list[Diagnostic] = []
        self.kube_docs: list[KubeResource] = []

    def _add(self, table: dict[Any, Any], key: Any, obj: Resource) -> None:
        first = table.get(key)
        if first is not None:
            where = f" (first at {first.origin})" if first.origin else ""
            self.diags.append(
                error(
                    f"duplicate name: {obj.ref} is defined twice{where}", obj.origin, obj.ref, "metadata.name"
                )
            )
            return
        table[key] = obj

    def add_cloud(self, obj: CloudResource) -> None:
        r = self.res
        tables: dict[type[Resource], dict[Any, Any]] = {
            VPC: r.vpcs,
            VSwitch: r.vswitches,
            SecurityGroup: r.security_groups,
            ECSInstance: r.ecs_instances,
            Cluster: r.clusters,
            LoadBalancer: r.load_balancers,
        }
        self._add(tables[type(obj)], obj.name, obj)

    def place_kube(self) -> None:
        """Gives every Kubernetes/Calico object to its cluster: the annotation, else the only one."""
        if self.kube_docs and not self.res.clusters:
            if any(True for _ in self._cloud_objects()):
                first = self.kube_docs[0]
                self.diags.append(
                    error(
                        f"{len(self.kube_docs)} Kubernetes object(s) but no Cluster to run them; add a Cluster "
                        "(acknet.io/v1), or leave out every cloud object to get the default cloud",
                        first.origin,
                        first.ref,
                    )
                )
                return
            self.res.default_cloud = True
            self._make_default_cloud()
        for obj in self.kube_docs:
            wanted = obj.metadata.annotations.get(defaults.CLUSTER_ANNOTATION)
            if wanted is None and len(self.res.clusters) > 1:
                self.diags.append(
                    error(
                        f"the files define {len(self.res.clusters)} clusters ({', '.join(sorted(self.res.clusters))}); "
                        f"say which one with the annotation {defaults.CLUSTER_ANNOTATION}",
                        obj.origin,
                        obj.ref,
                        f"metadata.annotations[{defaults.CLUSTER_ANNOTATION}]",
                    )
                )
                continue
            name = wanted if wanted is not None else next(iter(self.res.clusters))
            if name not in self.res.clusters:
                self.diags.append(
                    error(
                        f"cluster {name!r} does not exist; clusters: {', '.join(sorted(self.res.clusters)) or 'none'}",
                        obj.origin,
                        obj.ref,
                        f"metadata.annotations[{defaults.CLUSTER_ANNOTATION}]",
                    )
                )
                continue
            self._add_kube(self.res.kube.setdefault(name, KubeObjects()), obj)
        for cluster_name in self.res.clusters:
            self._implicit_namespaces(self.res.kube.setdefault(cluster_name, KubeObjects()))

    def _cloud_objects(self) -> Any:
        r = self.res
        for table in (r.vpcs, r.vswitches, r.security_groups, r.ecs_instances, r.load_balancers):
            yield from table.values()

    def _add_kube(self, objs: KubeObjects, obj: KubeResource) -> None:
        key: Any = (obj.namespace, obj.name) if obj.namespaced else obj.name
        if isinstance(obj, ConfigMap):
            if key != defaults.INGRESS_CONFIGMAP:
                ns, name = defaults.INGRESS_CONFIGMAP
                self.diags.append(
                    warning(
                        f"ConfigMap has no effect on the network; skipped (acknet reads only {ns}/{name}, "
                        "the NGINX Ingress controller's)",
                        obj.origin,
                        obj.ref,
                    )
                )
                return
            self.diags.extend(ingress_config.read(obj)[1])
        tables: dict[type[Resource], dict[Any, Any]] = {
            Namespace: objs.namespaces,
            Pod: objs.pods,
            Deployment: objs.deployments,
            Service: objs.services,
            EndpointSlice: objs.endpoint_slices,
            Secret: objs.secrets,
            ConfigMap: objs.config_maps,
            Ingress: objs.ingresses,
            IngressClass: objs.ingress_classes,
            NetworkPolicy: objs.network_policies,
            CalicoNetworkPolicy: objs.calico_policies,
            GlobalNetworkPolicy: objs.global_policies,
            NetworkSet: objs.network_sets,
            GlobalNetworkSet: objs.global_network_sets,
        }
        self._add(tables[type(obj)], key, obj)

    def _implicit_namespaces(self, objs: KubeObjects) -> None:
        """Namespaces used but not declared exist (as default and kube-system do on every cluster), and every
        namespace carries kubernetes.io/metadata.name, as the API server sets it since 1.22."""
        used = set(defaults.SYSTEM_NAMESPACES)
        for table in (
            objs.pods,
            objs.deployments,
            objs.services,
            objs.endpoint_slices,
            objs.secrets,
            objs.ingresses,
            objs.network_policies,
            objs.calico_policies,
            objs.network_sets,
        ):
            used.update(ns for ns, _ in table)
        for ns in sorted(used - objs.namespaces.keys()):
            objs.namespaces[ns] = Namespace.model_validate(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
            )
        for name, ns_obj in list(objs.namespaces.items()):
            if ns_obj.labels.get(defaults.NAMESPACE_NAME_LABEL) != name:
                meta = ns_obj.metadata.model_copy(
                    update={"labels": {**ns_obj.labels, defaults.NAMESPACE_NAME_LABEL: name}}
                )
                objs.namespaces[name] = ns_obj.model_copy(update={"metadata": meta}).with_origin(
                    ns_obj.origin
                )

    def _make_default_cloud(self) -> None:
        """One VPC, node and pod VSwitches, and a Terway cluster with policy on and nodes enough for the pods."""
        addons = defaults.COREDNS_REPLICAS + defaults.INGRESS_CONTROLLER_REPLICAS
        demand = addons + sum(
            1 if isinstance(o, Pod) else o.spec.replicas if isinstance(o, Deployment) else 0
            for o in self.kube_docs
        )
        per_node = defaults.instance_type(defaults.DEFAULT_NODE_INSTANCE_TYPE).shared_eni_pods
        count = max(defaults.DEFAULT_MIN_NODES, math.ceil(demand / per_node))
        r = self.res
        r.vpcs["vpc"] = _cloud(VPC, "vpc", {"cidrBlock": str(defaults.DEFAULT_VPC_CIDR)})
        for name, cidr in (
            ("node", defaults.DEFAULT_NODE_VSWITCH_CIDR),
            ("pod", defaults.DEFAULT_POD_VSWITCH_CIDR),
        ):
            r.vswitches[name] = _cloud(
                VSwitch, name, {"vpc": "vpc", "cidrBlock": str(cidr), "zoneId": defaults.DEFAULT_ZONE}
            )
        pool = {
            "name": "default",
            "vswitches": ["node"],
            "instanceType": defaults.DEFAULT_NODE_INSTANCE_TYPE,
            "count": count,
        }
        r.clusters["ack"] = _cloud(
            Cluster,
            "ack",
            {"vpc": "vpc", "podVSwitches": ["pod"], "networkPolicy": True, "nodePools": [pool]},
        )

    def cluster_dns(self) -> None:
        """Every ACK cluster runs CoreDNS in kube-system: two replicas behind kube-dns (alibaba.md 6),
        unless the files bring their own."""
        for name, cluster in self.res.clusters.items():
            objs = self.res.kube.setdefault(name, KubeObjects())
            if "coredns" in cluster.spec.addons and ("kube-system", "coredns") not in objs.deployments:
                objs.deployments[("kube-system", "coredns")] = Deployment.model_validate(COREDNS)

    def ingress_controller(self) -> None:
        """ACK installs its NGINX Ingress controller in kube-system: the Deployment
        nginx-ingress-controller behind the LoadBalancer Service nginx-ingress-lb, a public CLB on ports
        80 and 443 (alibaba.md 6), unless the Cluster drops the ``nginx-ingress`` add-on or the files
        bring their own objects of those names."""
        for name, cluster in self.res.clusters.items():
            if "nginx-ingress" not in cluster.spec.addons:
                continue
            objs = self.res.kube.setdefault(name, KubeObjects())
            deployment = ("kube-system", "nginx-ingress-controller")
            if deployment not in objs.deployments:
                objs.deployments[deployment] = Deployment.model_validate(NGINX_INGRESS_CONTROLLER)
            if ("kube-system", "nginx-ingress-lb") not in objs.services:
                objs.services[("kube-system", "nginx-ingress-lb")] = Service.model_validate(NGINX_INGRESS_LB)

    def cluster_security_groups(self) -> None:
        """A cluster without security groups gets the basic group ACK creates with it (help page
        'Configure and manage cluster security groups': ICMP from anywhere, all traffic within the group)."""
        for name, cluster in list(self.res.clusters.items()):
            if cluster.spec.security_groups:
                continue
            sg_name = f"{name}-sg"
            if sg_name not in self.res.security_groups:
                icmp = {
                    "direction": "ingress",
                    "policy": "accept",
                    "priority": 100,
                    "ipProtocol": "icmp",
                    "portRange": "-1/-1",
                    "sourceCidrIp": "0.0.0.0/0",
                }
                self.res.security_groups[sg_name] = _cloud(
                    SecurityGroup,
                    sg_name,
                    {"vpc": cluster.spec.vpc, "innerAccessPolicy": "Accept", "rules": [icmp]},
                )
            spec = cluster.spec.model_copy(update={"security_groups": [sg_name]})
            updated = cluster.model_copy(update={"spec": spec})
            updated.with_origin(cluster.origin)
            self.res.clusters[name] = updated


COREDNS = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "coredns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
        "template": {
            "metadata": {
                "labels": {"k8s-app": "kube-dns"},
                # Answered by acknet's built-in server, which speaks DNS on these ports.
                "annotations": {defaults.BUILTIN_ANNOTATION: "dns"},
            },
            "spec": {
                "containers": [
                    {
                        "name": "coredns",
                        "image": "registry-vpc.cn-hangzhou.aliyuncs.com/acs/coredns",
                        "ports": [
                            {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                            {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                            {"name": "metrics", "containerPort": 9153, "protocol": "TCP"},
                        ],
                    }
                ]
            },
        },
    },
}


# ACK's ingress-nginx pods (app: ingress-nginx). acknet runs Debian's NGINX in each of them with a
# configuration and prefix of its own (dataplane/apply/nginx.py): the command below only says so;
# were it ever run as it is, ``-e stderr`` and a prefix that does not exist make it stop at once,
# never touching the host's /etc/nginx or /var/log/nginx.
NGINX_INGRESS_CONTROLLER = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "nginx-ingress-controller",
        "namespace": "kube-system",
        "labels": {"app": "ingress-nginx"},
    },
    "spec": {
        "replicas": defaults.INGRESS_CONTROLLER_REPLICAS,
        "selector": {"matchLabels": {"app": "ingress-nginx"}},
        "template": {
            "metadata": {
                "labels": {"app": "ingress-nginx"},
                "annotations": {defaults.BUILTIN_ANNOTATION: defaults.INGRESS_BUILTIN_ROLE},
            },
            "spec": {
                "containers": [
                    {
                        "name": "nginx-ingress-controller",
                        "image": "registry-vpc.cn-hangzhou.aliyuncs.com/acs/aliyun-ingress-controller",
                        "command": list(defaults.INGRESS_PLACEHOLDER_COMMAND),
                        "ports": [
                            {"name": "http", "containerPort": 80, "protocol": "TCP"},
                            {"name": "https", "containerPort": 443, "protocol": "TCP"},
                            {"name": "metrics", "containerPort": 10254, "protocol": "TCP"},
                        ],
                        # As ingress-nginx's chart: ready once NGINX answers /healthz on 10254.
                        "readinessProbe": {
                            "httpGet": {"path": "/healthz", "port": 10254},
                            "periodSeconds": 2,
                            "failureThreshold": 3,
                        },
                    }
                ]
            },
        },
    },
}

NGINX_INGRESS_LB = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {
        "name": "nginx-ingress-lb",
        "namespace": "kube-system",
        "labels": {"app": "nginx-ingress-lb"},
    },
    "spec": {
        "type": "LoadBalancer",
        # ACK's nginx-ingress-lb keeps the client address (whitelist-source-range needs it).
        "externalTrafficPolicy": "Local",
        "selector": {"app": "ingress-nginx"},
        "ports": [
            {"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"},
            {"name": "https", "port": 443, "targetPort": 443, "protocol": "TCP"},
        ],
    },
}


def _cloud(cls: type[C], name: str, spec: dict[str, Any]) -> C:
    """A cloud object acknet makes itself (no origin: it is in no file)."""
    return cls.model_validate(
        {"apiVersion": "acknet.io/v1", "kind": cls.kind_name, "metadata": {"name": name}, "spec": spec}
    )


def load_resources(sources: Sequence[Source]) -> LoadResult:
    """Parses every source and collects every problem; nothing stops at the first error."""
    builder = _Builder()
    for source in sources:
        docs, diags = parse_documents(source)
        builder.diags.extend(diags)
        for doc in docs:
            resource, problems = _parse_resource(doc)
            builder.diags.extend(problems)
            if resource is None and isinstance(doc.body, dict) and isinstance(doc.body.get("metadata"), dict):
                builder.res.unloaded.add(str(doc.body["metadata"].get("name")))
            if isinstance(resource, CloudResource):
                builder.add_cloud(resource)
            elif isinstance(resource, KubeResource):
                builder.kube_docs.append(resource)
    builder.place_kube()
    builder.cluster_security_groups()
    builder.cluster_dns()
    builder.ingress_controller()
    return LoadResult(builder.res, builder.diags)
