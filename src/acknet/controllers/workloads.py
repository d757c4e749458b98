"""Deployments become pods, named as their ReplicaSet names them; bare Pods are kept as they are.

The Deployment controller names the ReplicaSet ``<deployment>-<pod-template-hash>``, where the hash is
``rand.SafeEncodeString`` of the decimal FNV-1a hash of the pod template (``controller.ComputeHash``),
so it is at most 10 characters, all from ``bcdfghjklmnpqrstvwxz2456789``, and changes exactly when the
template does. The ReplicaSet creates pods with ``generateName: <replicaset>-``; the API server adds
5 random characters, which we derive from (deployment, hash, replica index).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from acknet.controllers.naming import fnv32a, generate_name, safe_encode
from acknet.controllers.state import PlannedPod, PodPort
from acknet.model.k8s import Container, Deployment, PodSpec, PodTemplate
from acknet.model.resources import KubeObjects

POD_TEMPLATE_HASH_LABEL = "pod-template-hash"


@dataclass(frozen=True, slots=True)
class DesiredPod:
    """A pod to place: what the plan shows, and the spec the scheduler and IPAM read."""

    pod: PlannedPod
    spec: PodSpec


def pod_template_hash(template: PodTemplate) -> str:
    """Deterministic stand-in for ``controller.ComputeHash``: FNV-1a over the defaulted template.

    Kubernetes hashes the template after the API server defaulted it, so a field spelled out with its
    default value does not change the hash; hashing the validated model without the fields that equal
    their default (keys sorted) keeps that property. Fields acknet ignores (image pull policy,
    resources, env) are not part of the model and do not count.
    """
    body = template.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return safe_encode(str(fnv32a(data)))


def pod_ports(containers: Iterable[Container]) -> tuple[PodPort, ...]:
    return tuple(
        PodPort(name=p.name, port=p.container_port, protocol=p.protocol, container=c.name)
        for c in containers
        for p in c.ports
    )


def pod_commands(containers: Iterable[Container]) -> tuple[tuple[str, ...], ...]:
    """Per container, command + args; empty for a container acknet's built-in server answers for.

    Without ``command`` the image's entrypoint would run, which acknet does not have, so ``args`` alone
    do not make a container run a process.
    """
    return tuple(tuple(c.command) + tuple(c.args or ()) if c.command else () for c in containers)


def _pods(
    cluster: str,
    namespace: str,
    names: list[str],
    spec: PodSpec,
    labels: dict[str, str],
    annotations: dict[str, str],
    owner: str | None,
) -> list[DesiredPod]:
    """Pods sharing one spec. They share its derived tuples and mappings too: PlannedPod only reads them."""
    ports = pod_ports(spec.containers)
    commands = pod_commands(spec.containers)
    return [
        DesiredPod(
            PlannedPod(
                cluster=cluster,
                namespace=namespace,
                name=name,
                labels=labels,
                ports=ports,
                service_account=spec.service_account_name,
                owner=owner,
                commands=commands,
                annotations=annotations,
                host_network=spec.host_network,
            ),
            spec,
        )
        for name in names
    ]


def _replicas(cluster: str, deployment: Deployment, taken: set[str]) -> list[DesiredPod]:
    template = deployment.spec.template
    hash_ = pod_template_hash(template)
    prefix = f"{deployment.name}-{hash_}-"  # generateName of the ReplicaSet <deployment>-<hash>
    names = [
        generate_name(prefix, (deployment.namespace, deployment.name, hash_, str(index)), taken)
        for index in range(deployment.spec.replicas)
    ]
    labels = {**template.metadata.labels, POD_TEMPLATE_HASH_LABEL: hash_}
    annotations = dict(template.metadata.annotations)
    owner = f"Deployment/{deployment.name}"
    return _pods(cluster, deployment.namespace, names, template.spec, labels, annotations, owner)


def expand_workloads(
    cluster: str, objs: KubeObjects, retired: frozenset[str] = frozenset()
) -> list[DesiredPod]:
    """Every pod of the cluster, sorted by (namespace, name).

    Bare pods' names are taken first: a generated name that happens to equal one gets another suffix,
    as the API server's AlreadyExists makes the ReplicaSet controller retry.
    """
    taken: dict[str, set[str]] = {}
    for key in retired:
        namespace, _, name = key.partition("/")
        taken.setdefault(namespace, set()).add(name)  # a replacement never reuses a retired name
    out = []
    for (namespace, name), pod in objs.pods.items():
        if f"{namespace}/{name}" in retired:
            continue  # deleted; nothing recreates a bare pod
        taken.setdefault(namespace, set()).add(name)
        labels, annotations = dict(pod.labels), dict(pod.metadata.annotations)
        out.extend(_pods(cluster, namespace, [name], pod.spec, labels, annotations, None))
    for (namespace, _), deployment in sorted(objs.deployments.items()):
        out.extend(_replicas(cluster, deployment, taken.setdefault(namespace, set())))
    out.sort(key=lambda d: (d.pod.namespace, d.pod.name))
    return out
