"""IPAM invariants over random clusters: no address twice, none outside its VSwitch, none reserved,
quotas respected, and a re-plan keeps every allocation that is still valid."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from hypothesis import event, given, settings
from hypothesis import strategies as st

from acknet.controllers.plan import plan
from acknet.controllers.state import Plan
from acknet.controllers.vswitch import reserved
from acknet.model import defaults
from acknet.model.documents import Source
from acknet.model.load import load_resources
from acknet.model.resources import Resources

TYPES = ["ecs.g6.large", "ecs.g6.xlarge", "ecs.g7.large", "ecs.g7.xlarge"]


@dataclass(frozen=True)
class Topology:
    mode: str  # shared | exclusive | flannel
    instance_type: str
    nodes: int
    zones: int
    pod_prefix: int
    pod_vswitches_per_zone: int
    nodes_in_pod_vswitch: bool
    fixed_ecs: bool
    node_cidr_mask: int
    pods: int

    def yaml(self, pods: list[str]) -> str:
        docs = [
            "apiVersion: acknet.io/v1\nkind: VPC\nmetadata: {name: vpc}\nspec: {cidrBlock: 192.168.0.0/16}"
        ]
        docs.append("apiVersion: acknet.io/v1\nkind: SecurityGroup\nmetadata: {name: sg}\nspec: {vpc: vpc}")

        def vswitch(name: str, cidr: str, zone: str) -> None:
            docs.append(
                f"apiVersion: acknet.io/v1\nkind: VSwitch\nmetadata: {{name: {name}}}\n"
                f"spec: {{vpc: vpc, cidrBlock: {cidr}, zoneId: cn-hangzhou-{zone}}}"
            )

        pod_vswitches, node_vswitches = [], []
        for z, zone in enumerate("hi"[: self.zones]):
            vswitch(f"node-{zone}", f"192.168.{z}.0/24", zone)
            for k in range(self.pod_vswitches_per_zone):
                name = f"pod-{zone}{k}"
                vswitch(name, f"192.168.{64 + 16 * z + k}.0/{self.pod_prefix}", zone)
                pod_vswitches.append(name)
            node_vswitches.append(f"pod-{zone}0" if self.nodes_in_pod_vswitch else f"node-{zone}")
        if self.fixed_ecs:
            # A fixed address in the middle of the first pod VSwitch: IPAM must step around it.
            docs.append(
                "apiVersion: acknet.io/v1\nkind: ECSInstance\nmetadata: {name: fixed}\n"
                "spec: {vswitch: pod-h0, securityGroups: [sg], privateIpAddress: 192.168.64.3}"
            )
        network = "flannel" if self.mode == "flannel" else "terway"
        eni_mode = "exclusive" if self.mode == "exclusive" else "shared"
        docs.append(
            "apiVersion: acknet.io/v1\nkind: Cluster\nmetadata: {name: ack}\nspec:\n  vpc: vpc\n"
            f"  networkPlugin: {network}\n  podVSwitches: [{', '.join(pod_vswitches)}]\n"
            f"  nodeCidrMask: {self.node_cidr_mask}\n  securityGroups: [sg]\n  addons: []\n  nodePools:\n"
            f"  - {{name: p, instanceType: {self.instance_type}, vswitches: [{', '.join(node_vswitches)}], "
            f"count: {self.nodes}, eniMode: {eni_mode}}}"
        )
        for name in pods:
            docs.append(
                f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers: [{{name: c}}]"
            )
        return "\n---\n".join(docs)


@st.composite
def topologies(draw: st.DrawFn) -> Topology:
    nodes_in_pod_vswitch = draw(st.booleans())
    return Topology(
        mode=draw(st.sampled_from(["shared", "exclusive", "flannel"])),
        instance_type=draw(st.sampled_from(TYPES)),
        nodes=draw(st.integers(1, 5)),
        zones=draw(st.integers(1, 2)),
        # Small pod VSwitches, so that exhaustion happens; big enough for 5 nodes when they share it.
        pod_prefix=draw(st.integers(25, 27 if nodes_in_pod_vswitch else 29)),
        pod_vswitches_per_zone=draw(st.integers(1, 2)),
        nodes_in_pod_vswitch=nodes_in_pod_vswitch,
        fixed_ecs=draw(st.booleans()),
        node_cidr_mask=draw(st.integers(25, 28)),
        # Few pods, or enough to run the small pod VSwitches dry (IPResInsufficient).
        pods=draw(st.one_of(st.integers(0, 30), st.integers(100, 220))),
    )


def resources_of(text: str) -> Resources:
    result = load_resources([Source("random.yaml", text)])
    assert not result.errors, result.errors
    return result.resources


def pod_names(count: int) -> list[str]:
    return [f"p{i:03d}" for i in range(count)]


def check_invariants(planned: Plan, mode: str, replanned: bool = False) -> None:
    vswitches = {u.name: u for u in planned.vswitches}
    seen: dict[IPv4Address, str] = {}
    for instance in planned.instances:
        quota = defaults.instance_type(instance.instance_type)
        assert len(instance.enis) <= quota.enis
        assert [e.index for e in instance.enis][:1] == [0]
        for eni in instance.enis:
            usage = vswitches[eni.vswitch]
            assert eni.ips[0] == eni.primary_ip
            assert len(eni.ips) <= quota.ips_per_eni
            for address in eni.ips:
                assert address not in seen, f"{address} on {eni.id} and {seen[address]}"
                seen[address] = eni.id
                assert address in usage.cidr
                assert address not in reserved(usage.cidr)
                assert address != usage.gateway
            if eni.exclusive_pod is not None:
                assert eni.ips == (eni.primary_ip,)
    # Every address a VSwitch counts is an ENI address or the fixed ECS's, nothing is lost or invented.
    assert sum(u.used for u in planned.vswitches) == len(seen)
    assert all(u.free == u.cidr.num_addresses - 4 - u.used for u in planned.vswitches)

    nodes = {i.name: i for i in planned.instances}
    enis = {e.id: e for i in planned.instances for e in i.enis}
    pod_ips: set[IPv4Address] = set()
    per_node: dict[str, int] = {}
    for pod in planned.pods:
        if pod.node is not None:
            per_node[pod.node] = per_node.get(pod.node, 0) + 1
        if pod.phase != "Running":
            assert pod.ip is None and pod.reason
            continue
        assert pod.ip is not None and pod.node is not None and pod.ip not in pod_ips
        pod_ips.add(pod.ip)
        if mode == "flannel":
            cidr = nodes[pod.node].pod_cidr
            assert cidr is not None and pod.ip in cidr and pod.eni is None
            assert pod.ip not in (cidr.network_address, cidr.network_address + 1, cidr.broadcast_address)
        else:
            eni = enis[pod.eni]
            assert eni.instance == pod.node and eni.index > 0 and pod.ip in eni.ips
            if mode == "exclusive":
                assert eni.exclusive_pod == pod.key and pod.ip == eni.primary_ip
    assert all(count <= nodes[name].max_pods for name, count in per_node.items())
    if mode == "flannel":
        cidrs = [i.pod_cidr for i in planned.instances if i.pod_cidr is not None]
        assert all(not a.overlaps(b) for n, a in enumerate(cidrs) for b in cidrs[n + 1 :])
        assert all(c.subnet_of(IPv4Network("172.20.0.0/16")) for c in cidrs)
    else:
        secondary = {a for i in planned.instances if i.is_node for e in i.enis[1:] for a in e.ips}
        assert pod_ips <= secondary
        if not replanned:
            # Fresh, every secondary-ENI address is a pod's; re-planned, an ENI keeps its primary IP
            # after the pod that had it is gone.
            assert secondary == pod_ips


@settings(max_examples=60, deadline=None)
@given(topologies())
def test_ipam_never_hands_out_an_address_twice_or_a_reserved_one(topology: Topology) -> None:
    planned = plan(resources_of(topology.yaml(pod_names(topology.pods))))
    check_invariants(planned, topology.mode)
    pending = {p.reason.split(":")[0] for p in planned.pods if p.reason}
    event(f"{topology.mode}: pending {sorted(pending) or 'none'}")


@settings(max_examples=40, deadline=None)
@given(topologies(), st.data())
def test_replanning_keeps_what_is_still_valid(topology: Topology, data: st.DataObject) -> None:
    names = pod_names(topology.pods)
    first = plan(resources_of(topology.yaml(names)))
    assert plan(first.resources, first) == first

    survivors = data.draw(st.lists(st.sampled_from(names), unique=True) if names else st.just([]))
    added = [f"q{i:03d}" for i in range(data.draw(st.integers(0, 20)))]
    second = plan(resources_of(topology.yaml(sorted(survivors) + added)), first)
    before = {p.name: p for p in first.pods}
    for pod in second.pods:
        old = before.get(pod.name)
        if old is not None and old.phase == "Running":
            assert (pod.node, pod.ip, pod.eni, pod.phase) == (old.node, old.ip, old.eni, "Running")
    check_invariants(second, topology.mode, replanned=True)
