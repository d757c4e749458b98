"""ECS instances: the cluster's node pools become nodes, and standalone ECSInstances come along.

ACK names pool nodes after the pool and spreads them over the pool's VSwitches; each node has its
primary ENI (eth0, index 0) in its VSwitch with the cluster's security groups, and carries the labels
kubelet and the cloud controller put on it, plus the pool's own labels (console "Node Labels").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from acknet.controllers.exceptions import AddressUnavailable, invalid
from acknet.controllers.naming import EniRegistry
from acknet.controllers.state import Eni, EniMode, Instance, Protocol
from acknet.controllers.vswitch import AddressBook, VSwitchAllocator
from acknet.errors import Conflict
from acknet.model import defaults
from acknet.model.base import Resource
from acknet.model.cloud import Cluster, NodePool
from acknet.model.resources import Resources

# Set on exclusive-ENI nodes by ACK (Terway docs/design.md: the eniOnly node pool label).
EXCLUSIVE_ENI_LABEL = "k8s.aliyun.com/exclusive-mode-eni-type"
NODEPOOL_LABEL = "alibabacloud.com/nodepool-id"


def node_name(cluster: str, pool: str, index: int) -> str:
    return f"{cluster}-{pool}-{index}"


def max_pods(cluster: Cluster, pool: NodePool) -> int:
    """Pods a node takes (kubelet max-pods), by network mode.

    Terway shared ENI: ``(ENIs-1) x IPs per ENI``; exclusive ENI: ``ENIs-1`` (ACK, 使用Terway网络插件;
    Terway daemon/config.go). Flannel: FLANNEL_MAX_PODS, but never more than the node PodCIDR holds
    once its network address, the cni0 gateway (.1) and the broadcast address are left out.
    """
    if cluster.spec.network_plugin == "flannel":
        usable = (1 << (32 - cluster.spec.node_cidr_mask)) - 3
        return max(0, min(defaults.FLANNEL_MAX_PODS, usable))
    quota = defaults.instance_type(pool.instance_type)
    return quota.exclusive_eni_pods if pool.eni_mode == "exclusive" else quota.shared_eni_pods


def region_of(zone: str) -> str:
    """cn-hangzhou-h -> cn-hangzhou: Alibaba zone ids are the region id plus a letter."""
    head, sep, _ = zone.rpartition("-")
    return head if sep else zone


def node_labels(
    name: str, zone: str, instance_type: str, pool: NodePool, eni_mode: EniMode
) -> dict[str, str]:
    """The labels kubelet (hostname, os, arch) and the cloud controller (zone, region, instance type) set,
    the ACK node pool id, and the pool's labels last so that they can add but are never lost."""
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "topology.kubernetes.io/zone": zone,
        "topology.kubernetes.io/region": region_of(zone),
        "node.kubernetes.io/instance-type": instance_type,
        NODEPOOL_LABEL: pool.name,
    }
    if eni_mode == "exclusive":
        labels[EXCLUSIVE_ENI_LABEL] = "eniOnly"
    labels.update(pool.labels)
    return labels


@dataclass(slots=True)
class _Wanted:
    """An instance to make, before its primary address is known."""

    name: str
    source: Resource
    at: str  # the field naming its VSwitch, for error messages
    vswitch: str
    instance_type: str
    security_groups: tuple[str, ...]
    fixed_ip: IPv4Address | None = None
    cluster: str | None = None
    node_pool: str | None = None
    eni_mode: EniMode = "shared"
    max_pods: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    ports: tuple[tuple[int, Protocol], ...] = ()
    command: tuple[str, ...] | None = None


def _standalone(resources: Resources) -> list[_Wanted]:
    out = []
    for name, ecs in sorted(resources.ecs_instances.items()):
        spec = ecs.spec
        out.append(
            _Wanted(
                name=name,
                source=ecs,
                at="spec.vswitch",
                vswitch=spec.vswitch,
                instance_type=spec.instance_type,
                security_groups=tuple(spec.security_groups),
                fixed_ip=spec.private_ip_address,
                ports=tuple((p.port, p.protocol) for p in spec.ports),
                command=tuple(spec.command) if spec.command is not None else None,
            )
        )
    return out


def _pool_nodes(cluster: Cluster, book: AddressBook) -> list[_Wanted]:
    out = []
    terway = cluster.spec.network_plugin == "terway"
    for p, pool in enumerate(cluster.spec.node_pools):
        eni_mode: EniMode = pool.eni_mode if terway else "shared"
        pods = max_pods(cluster, pool)
        for i in range(pool.count):
            j = i % len(pool.vswitches)
            vswitch = pool.vswitches[j]
            at = f"spec.nodePools[{p}].vswitches[{j}]"
            allocator = book.get(vswitch)
            if allocator is None:
                raise invalid(cluster, at, f"VSwitch {vswitch!r} does not exist")
            name = node_name(cluster.name, pool.name, i)
            out.append(
                _Wanted(
                    name=name,
                    source=cluster,
                    at=at,
                    vswitch=vswitch,
                    instance_type=pool.instance_type,
                    security_groups=tuple(cluster.spec.security_groups),
                    cluster=cluster.name,
                    node_pool=pool.name,
                    eni_mode=eni_mode,
                    max_pods=pods,
                    labels=node_labels(name, allocator.zone, pool.instance_type, pool, eni_mode),
                )
            )
    return out


def _allocator(book: AddressBook, want: _Wanted) -> VSwitchAllocator:
    allocator = book.get(want.vswitch)
    if allocator is None:
        raise invalid(want.source, want.at, f"VSwitch {want.vswitch!r} does not exist")
    return allocator


def plan_instances(
    resources: Resources, book: AddressBook, registry: EniRegistry, previous: Mapping[str, Instance]
) -> list[Instance]:
    """Standalone ECS instances (by name), then every cluster's nodes (pool order, index order).

    Fixed ``privateIpAddress``es are taken first so an explicit address never collides with one handed
    out automatically, then the previous plan's addresses are kept, then the rest are allocated.
    """
    wanted = _standalone(resources)
    for cluster in resources.clusters.values():
        wanted.extend(_pool_nodes(cluster, book))
    owner = {w.name: f"ECS {w.name}" for w in wanted}
    primary: dict[str, IPv4Address] = {}
    for w in wanted:
        if w.fixed_ip is not None:
            try:
                _allocator(book, w).reserve(w.fixed_ip, owner[w.name])
            except AddressUnavailable as exc:
                raise invalid(w.source, "spec.privateIpAddress", str(exc)) from exc
            primary[w.name] = w.fixed_ip
    for w in wanted:
        before = previous.get(w.name)
        if (
            w.name not in primary
            and before is not None
            and before.vswitch == w.vswitch
            and _allocator(book, w).try_reserve(before.primary_ip, owner[w.name])
        ):
            primary[w.name] = before.primary_ip
    for w in wanted:
        if w.name not in primary:
            try:
                primary[w.name] = _allocator(book, w).allocate(owner[w.name])
            except Conflict as exc:
                raise invalid(w.source, w.at, str(exc)) from exc
    return [_instance(w, primary[w.name], book, registry, previous.get(w.name)) for w in wanted]


def _instance(
    w: _Wanted, ip: IPv4Address, book: AddressBook, registry: EniRegistry, before: Instance | None
) -> Instance:
    old = before.enis[0] if before is not None and before.enis else None
    if old is not None and old.index == 0 and registry.adopt(old.id, old.mac):
        eni_id, mac = old.id, old.mac
    else:
        eni_id, mac = registry.new(w.name, 0)
    eth0 = Eni(
        id=eni_id,
        instance=w.name,
        index=0,
        vswitch=w.vswitch,
        mac=mac,
        primary_ip=ip,
        ips=(ip,),
        security_groups=w.security_groups,
    )
    return Instance(
        name=w.name,
        instance_type=w.instance_type,
        zone=book[w.vswitch].zone,
        vswitch=w.vswitch,
        primary_ip=ip,
        security_groups=w.security_groups,
        enis=(eth0,),
        cluster=w.cluster,
        node_pool=w.node_pool,
        eni_mode=w.eni_mode,
        max_pods=w.max_pods,
        labels=w.labels,
        ports=w.ports,
        command=w.command,
    )
