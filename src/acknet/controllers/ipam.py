"""Pod addresses: Terway ENIs (shared or exclusive) or Flannel node PodCIDRs.

Terway (reference/alibaba.md 1.3): a node's pods take secondary private IPs of *secondary* ENIs; the
primary ENI (eth0) never carries pod addresses. ENIs are created on demand, at most ENIs-1 per node,
each in the pod VSwitch of the node's zone with the most free addresses (``vswitch_selection_policy:
ordered``). Shared mode puts up to IPs-per-ENI pods on an ENI, its own primary IP included (Terway on
Linux hands it out), filling the fullest ENI first (``eni_selection_policy: most_ips``). Exclusive mode
(eniOnly pools) moves one whole new ENI into each pod. When the VSwitches are dry the node reports
``IPResInsufficient`` and the pod waits.

Flannel on ACK (reference/alibaba.md 2): kube-controller-manager carves a PodCIDR per node out of the
cluster CIDR (``--node-cidr-mask-size``), the cloud controller writes one VPC route entry
``PodCIDR -> ECS`` per node, and host-local hands out pod addresses from ``.2``; ``.1`` is cni0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network

from acknet.controllers.exceptions import RangeFull
from acknet.controllers.naming import EniRegistry
from acknet.controllers.scheduling import Placement
from acknet.controllers.state import Eni, Instance, PlannedPod, RouteEntry
from acknet.controllers.vswitch import AddressBook, AddressPool, VSwitchAllocator
from acknet.controllers.workloads import DesiredPod
from acknet.model import defaults
from acknet.model.cloud import Cluster


@dataclass(frozen=True, slots=True)
class PodAddress:
    """What IPAM gave a placed pod: an address (and the ENI holding it), or why not."""

    ip: IPv4Address | None
    eni: str | None = None
    reason: str | None = None


# -- Flannel -------------------------------------------------------------------------------------------


def cluster_pod_cidr(cluster: Cluster) -> IPv4Network:
    return cluster.spec.pod_cidr or defaults.FLANNEL_POD_CIDR


def assign_pod_cidrs(
    cluster: Cluster, nodes: Sequence[Instance], previous: Mapping[str, Instance]
) -> list[Instance]:
    """Each node's PodCIDR, as kube-controller-manager's range allocator does it: a node keeps the one it
    had, new nodes take the lowest free subnet in node order. Nodes beyond the room get none (they stay
    tainted network-unavailable and take no pods)."""
    cidr = cluster_pod_cidr(cluster)
    mask = cluster.spec.node_cidr_mask
    if not cidr.prefixlen <= mask <= 32:
        return list(nodes)
    step = 1 << (32 - mask)
    room = 1 << (mask - cidr.prefixlen)
    base = int(cidr.network_address)
    chosen: dict[str, int] = {}
    taken: set[int] = set()
    for node in nodes:
        before = previous.get(node.name)
        old = before.pod_cidr if before is not None else None
        if old is not None and old.prefixlen == mask and old.subnet_of(cidr):
            kept = (int(old.network_address) - base) // step
            if kept not in taken:
                chosen[node.name] = kept
                taken.add(kept)
    cursor = 0
    for node in nodes:
        if node.name in chosen:
            continue
        while cursor in taken:
            cursor += 1
        if cursor >= room:
            continue
        chosen[node.name] = cursor
        taken.add(cursor)
    out = []
    for node in nodes:
        index = chosen.get(node.name)
        pod_cidr = IPv4Network((base + index * step, mask)) if index is not None else None
        out.append(replace(node, pod_cidr=pod_cidr))
    return out


def flannel_routes(cluster: Cluster, nodes: Sequence[Instance]) -> list[RouteEntry]:
    """One custom route entry per node with a PodCIDR (CCM route controller); none for the vxlan backend,
    which tunnels instead of asking the VPC to route."""
    if cluster.spec.network_plugin != "flannel" or cluster.spec.flannel_backend != "vpc":
        return []
    return [
        RouteEntry(
            vpc=cluster.spec.vpc,
            destination=node.pod_cidr,
            next_hop=node.name,
            description=f"PodCIDR of node {node.name} (cluster {cluster.name})",
        )
        for node in nodes
        if node.pod_cidr is not None
    ]


def cni0_gateway(pod_cidr: IPv4Network) -> IPv4Address:
    return pod_cidr.network_address + 1


def _flannel(
    nodes: Sequence[Instance],
    pods: Sequence[DesiredPod],
    placements: Sequence[Placement],
    previous: Mapping[str, PlannedPod],
) -> list[PodAddress]:
    by_name = {n.name: n for n in nodes}
    pools = {
        n.name: AddressPool(f"PodCIDR of node {n.name}", n.pod_cidr, 2, n.pod_cidr.num_addresses - 2)
        for n in nodes
        if n.pod_cidr is not None
    }
    out: list[PodAddress | None] = [None] * len(pods)
    for i, (desired, placement) in enumerate(zip(pods, placements, strict=True)):
        pod = desired.pod
        if placement.node is None:
            out[i] = PodAddress(None)
        elif pod.host_network:
            out[i] = PodAddress(by_name[placement.node].primary_ip)
        elif placement.node not in pools:
            out[i] = PodAddress(None, reason=f"NetworkNotReady: node {placement.node} has no PodCIDR")
        else:
            before = previous.get(pod.key)
            if (
                before is not None
                and before.node == placement.node
                and before.ip is not None
                and pools[placement.node].try_reserve(before.ip, pod.key)
            ):
                out[i] = PodAddress(before.ip)
    for i, (desired, placement) in enumerate(zip(pods, placements, strict=True)):
        if out[i] is None and placement.node is not None:
            pool = pools[placement.node]
            try:
                out[i] = PodAddress(pool.allocate(desired.pod.key))
            except RangeFull:
                # host-local's words when the node range is used up.
                out[i] = PodAddress(
                    None,
                    reason="failed to allocate for range 0: no IP addresses available in range set: "
                    f"{pool.describe_usable().removeprefix('usable: ')}",
                )
    return [a if a is not None else PodAddress(None) for a in out]


# -- Terway --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Eni:
    index: int
    id: str
    mac: str
    vswitch: VSwitchAllocator
    primary: IPv4Address
    secondary: list[IPv4Address] = field(default_factory=list)
    pods: set[IPv4Address] = field(default_factory=set)  # addresses handed to pods
    exclusive_pod: str | None = None

    @property
    def size(self) -> int:
        return 1 + len(self.secondary)

    def freeze(self, node: Instance, security_groups: tuple[str, ...]) -> Eni:
        return Eni(
            id=self.id,
            instance=node.name,
            index=self.index,
            vswitch=self.vswitch.name,
            mac=self.mac,
            primary_ip=self.primary,
            ips=(self.primary, *sorted(self.secondary)),
            security_groups=security_groups,
            exclusive_pod=self.exclusive_pod,
        )


class _TerwayNode:
    """One node's secondary ENIs while its pods are being addressed."""

    def __init__(self, node: Instance, vswitches: list[VSwitchAllocator], registry: EniRegistry) -> None:
        self.node = node
        self.vswitches = vswitches  # pod VSwitches of the node's zone, in the cluster's order
        self.registry = registry
        quota = defaults.instance_type(node.instance_type)
        self.max_secondary = quota.enis - 1
        self.ips_per_eni = quota.ips_per_eni
        self.enis: dict[int, _Eni] = {}

    # Messages as the node condition IPResInsufficient words them in ACK.
    def dry(self) -> str:
        if not self.vswitches:
            return f"IPResInsufficient: no pod vSwitch in zone {self.node.zone}"
        names = ", ".join(v.name for v in self.vswitches)
        return f"IPResInsufficient: no free address in pod vSwitches {names} of zone {self.node.zone}"

    def quota_reached(self) -> str:
        return (
            f"IPResInsufficient: node {self.node.name} uses all {self.max_secondary} secondary ENIs of "
            f"{self.node.instance_type} ({self.ips_per_eni} IPs each)"
        )

    def keep(self, old: Eni, claims: list[tuple[int, PlannedPod]], out: list[PodAddress | None]) -> None:
        """Re-creates a previous ENI while it still suits the node (a pod VSwitch of its zone, within the
        quota, same ENI mode), and gives each of its pods the address it had, while there is room."""
        exclusive = self.node.eni_mode == "exclusive"
        vswitch = next((v for v in self.vswitches if v.name == old.vswitch), None)
        if (
            vswitch is None
            or not 1 <= old.index <= self.max_secondary
            or old.index in self.enis
            or exclusive != (old.exclusive_pod is not None)
            or (exclusive and [p.key for _, p in claims] != [old.exclusive_pod])
            or not self.registry.adopt(old.id, old.mac)
        ):
            return
        if not vswitch.try_reserve(old.primary_ip, f"ENI {old.id} of {self.node.name}"):
            return
        eni = _Eni(old.index, old.id, old.mac, vswitch, old.primary_ip, exclusive_pod=old.exclusive_pod)
        self.enis[old.index] = eni
        for i, before in claims:
            ip = before.ip
            assert ip is not None
            if ip == eni.primary:
                eni.pods.add(ip)
            elif eni.size < self.ips_per_eni and vswitch.try_reserve(ip, before.key):
                eni.secondary.append(ip)
                eni.pods.add(ip)
            else:
                continue
            out[i] = PodAddress(ip, eni.id)

    def _new_eni(self, exclusive_pod: str | None) -> _Eni | str:
        if len(self.enis) >= self.max_secondary:
            return self.quota_reached()
        # ordered: the VSwitch with the most available addresses; max() keeps the first of equals.
        best = max(self.vswitches, key=lambda v: v.free, default=None)
        if best is None or best.free == 0:
            return self.dry()
        index = next(i for i in range(1, self.max_secondary + 1) if i not in self.enis)
        eni_id, mac = self.registry.new(self.node.name, index)
        primary = best.allocate(f"ENI {eni_id} of {self.node.name}")
        eni = _Eni(index, eni_id, mac, best, primary, exclusive_pod=exclusive_pod)
        self.enis[index] = eni
        return eni

    def address(self, pod: PlannedPod) -> PodAddress:
        if self.node.eni_mode == "exclusive":
            made = self._new_eni(pod.key)
            if isinstance(made, str):
                return PodAddress(None, reason=made)
            made.pods.add(made.primary)
            return PodAddress(made.primary, made.id)
        dry = False
        # most_ips: the fullest ENI with room first, then the lowest index.
        enis = list(self.enis.values())
        if len(enis) > 1:
            enis.sort(key=lambda e: (-len(e.pods), e.index))
        for eni in enis:
            if eni.primary not in eni.pods:
                eni.pods.add(eni.primary)
                return PodAddress(eni.primary, eni.id)
            if eni.size >= self.ips_per_eni:
                continue
            if eni.vswitch.free == 0:
                dry = True
                continue
            ip = eni.vswitch.allocate(pod.key)
            eni.secondary.append(ip)
            eni.pods.add(ip)
            return PodAddress(ip, eni.id)
        made = self._new_eni(None)
        if isinstance(made, str):
            return PodAddress(None, reason=self.dry() if dry else made)
        made.pods.add(made.primary)
        return PodAddress(made.primary, made.id)

    def instance(self, security_groups: tuple[str, ...]) -> Instance:
        secondary = tuple(self.enis[i].freeze(self.node, security_groups) for i in sorted(self.enis))
        return replace(self.node, enis=(self.node.enis[0], *secondary))


def _terway(
    cluster: Cluster,
    nodes: Sequence[Instance],
    pods: Sequence[DesiredPod],
    placements: Sequence[Placement],
    book: AddressBook,
    registry: EniRegistry,
    previous_pods: Mapping[str, PlannedPod],
    previous_instances: Mapping[str, Instance],
) -> tuple[list[Instance], list[PodAddress]]:
    by_zone: dict[str, list[VSwitchAllocator]] = {}
    for name in dict.fromkeys(cluster.spec.pod_vswitches):
        allocator = book.get(name)
        if allocator is not None:
            by_zone.setdefault(allocator.zone, []).append(allocator)
    states = {n.name: _TerwayNode(n, by_zone.get(n.zone, []), registry) for n in nodes}
    out: list[PodAddress | None] = [None] * len(pods)
    claims: dict[str, list[tuple[int, PlannedPod]]] = {}
    for i, (desired, placement) in enumerate(zip(pods, placements, strict=True)):
        if placement.node is None:
            out[i] = PodAddress(None)
        elif desired.pod.host_network:
            out[i] = PodAddress(states[placement.node].node.primary_ip)
        else:
            before = previous_pods.get(desired.pod.key)
            if before is not None and before.node == placement.node and before.eni and before.ip:
                claims.setdefault(before.eni, []).append((i, before))
    # Every kept ENI and address is claimed before anything new is handed out, on any node.
    if claims:
        for state in states.values():
            before_node = previous_instances.get(state.node.name)
            if before_node is None or before_node.cluster != cluster.name:
                continue
            for old in before_node.enis[1:]:
                if old.id in claims:
                    state.keep(old, claims[old.id], out)
    for i, (desired, placement) in enumerate(zip(pods, placements, strict=True)):
        if out[i] is None and placement.node is not None:
            out[i] = states[placement.node].address(desired.pod)
    sgs = tuple(cluster.spec.security_groups)
    return [states[n.name].instance(sgs) for n in nodes], [
        a if a is not None else PodAddress(None) for a in out
    ]


def allocate_pod_addresses(
    cluster: Cluster,
    nodes: Sequence[Instance],
    pods: Sequence[DesiredPod],
    placements: Sequence[Placement],
    book: AddressBook,
    registry: EniRegistry,
    previous_pods: Mapping[str, PlannedPod],
    previous_instances: Mapping[str, Instance],
) -> tuple[list[Instance], list[PodAddress]]:
    """The cluster's nodes (with their secondary ENIs) and one PodAddress per pod, in the order given.

    With a previous plan, a pod still on the same node keeps its address and ENI, claimed before any
    new address is handed out. hostNetwork pods use their node's address and no ENI.
    """
    if cluster.spec.network_plugin == "flannel":
        return list(nodes), _flannel(nodes, pods, placements, previous_pods)
    return _terway(cluster, nodes, pods, placements, book, registry, previous_pods, previous_instances)
