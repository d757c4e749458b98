"""Node pools and standalone ECS instances: names, spread, addresses, quotas, labels, ENI identities."""

from __future__ import annotations

import re
from ipaddress import IPv4Address

import pytest

from acknet.errors import InvalidInput
from acknet.model import defaults

ECS_FIXED = """
---
apiVersion: acknet.io/v1
kind: ECSInstance
metadata: {name: zz-fixed}
spec: {vswitch: node-h, securityGroups: [cluster-sg], privateIpAddress: 192.168.0.1}
"""


def ip(text: str) -> IPv4Address:
    return IPv4Address(text)


# reference/alibaba.md 1.3: ENIs incl. primary, IPv4 per ENI, (ENIs-1) x IPs, ENIs-1.
QUOTAS = [
    pytest.param("ecs.g6.large", 2, 6, 6, 1, id="g6.large"),
    pytest.param("ecs.g6.xlarge", 3, 10, 20, 2, id="g6.xlarge"),
    pytest.param("ecs.g6.2xlarge", 4, 10, 30, 3, id="g6.2xlarge"),
    pytest.param("ecs.g7.large", 3, 6, 12, 2, id="g7.large"),
    pytest.param("ecs.g7.xlarge", 4, 15, 45, 3, id="g7.xlarge"),
    pytest.param("ecs.g7.2xlarge", 4, 15, 45, 3, id="g7.2xlarge"),
]


@pytest.mark.parametrize(("instance_type", "enis", "ips", "shared", "exclusive"), QUOTAS)
def test_eni_quota_table(instance_type: str, enis: int, ips: int, shared: int, exclusive: int) -> None:
    quota = defaults.instance_type(instance_type)
    assert (quota.enis, quota.ips_per_eni) == (enis, ips)
    assert (quota.shared_eni_pods, quota.exclusive_eni_pods) == (shared, exclusive)


@pytest.mark.parametrize(("instance_type", "enis", "ips", "shared", "exclusive"), QUOTAS)
def test_node_max_pods_follow_the_quota(docs, plan_yaml, instance_type, enis, ips, shared, exclusive) -> None:
    text = docs.CLOUD + docs.cluster(
        docs.pool("shared", 1, instance_type), docs.pool("excl", 1, instance_type, eniMode="exclusive")
    )
    nodes = {i.node_pool: i for i in plan_yaml(text).instances}
    assert nodes["shared"].max_pods == shared
    assert (nodes["excl"].max_pods, nodes["excl"].eni_mode) == (exclusive, "exclusive")


@pytest.mark.parametrize(
    ("mask", "max_pods"),
    [
        pytest.param(25, 125, id="slash25-ack-default"),
        pytest.param(24, 253, id="slash24"),
        pytest.param(23, defaults.FLANNEL_MAX_PODS, id="slash23-capped"),
        pytest.param(28, 13, id="slash28"),
    ],
)
def test_flannel_max_pods_is_bounded_by_the_node_pod_cidr(docs, plan_yaml, mask: int, max_pods: int) -> None:
    text = docs.CLOUD + docs.cluster(
        docs.pool(count=1), spec=("networkPlugin: flannel", f"nodeCidrMask: {mask}")
    )
    (node,) = plan_yaml(text).instances
    assert node.max_pods == max_pods
    assert node.eni_mode == "shared"


def test_pool_nodes_are_named_and_spread_round_robin(docs, plan_yaml) -> None:
    text = docs.CLOUD + docs.cluster(docs.pool(count=3, vswitches="[node-h, node-i]"))
    nodes = plan_yaml(text).instances
    assert [(n.name, n.vswitch, n.zone, n.primary_ip) for n in nodes] == [
        ("ack-default-0", "node-h", "cn-hangzhou-h", ip("192.168.0.1")),
        ("ack-default-1", "node-i", "cn-hangzhou-i", ip("192.168.1.1")),
        ("ack-default-2", "node-h", "cn-hangzhou-h", ip("192.168.0.2")),
    ]
    assert all((n.cluster, n.node_pool, n.is_node) == ("ack", "default", True) for n in nodes)


def test_node_labels(docs, plan_yaml) -> None:
    text = docs.CLOUD + docs.cluster(
        docs.pool("gpu", 1, vswitches="[node-i]", eniMode="exclusive", labels="{accel: gpu, team: ml}")
    )
    (node,) = plan_yaml(text).instances
    assert dict(node.labels) == {
        "kubernetes.io/hostname": "ack-gpu-0",
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "topology.kubernetes.io/zone": "cn-hangzhou-i",
        "topology.kubernetes.io/region": "cn-hangzhou",
        "node.kubernetes.io/instance-type": "ecs.g7.xlarge",
        "alibabacloud.com/nodepool-id": "gpu",
        "k8s.aliyun.com/exclusive-mode-eni-type": "eniOnly",
        "accel": "gpu",
        "team": "ml",
    }


def test_primary_eni_is_index_zero_with_the_cluster_security_groups(docs, plan_yaml) -> None:
    (node,) = plan_yaml(docs.CLOUD + docs.cluster(docs.pool(count=1))).instances
    (eth0,) = node.enis
    assert (eth0.index, eth0.instance, eth0.vswitch, eth0.primary_ip, eth0.ips) == (
        0,
        "ack-default-0",
        "node-h",
        node.primary_ip,
        (node.primary_ip,),
    )
    assert node.security_groups == eth0.security_groups == ("cluster-sg",)
    assert eth0.exclusive_pod is None


def test_fixed_ecs_address_is_reserved_before_any_allocation(docs, plan_yaml) -> None:
    # The ECS sorts after the cluster's nodes would be allocated, yet keeps its .1.
    text = docs.CLOUD + docs.cluster(docs.pool(count=2)) + ECS_FIXED
    by_name = {i.name: i.primary_ip for i in plan_yaml(text).instances}
    assert by_name == {
        "zz-fixed": ip("192.168.0.1"),
        "ack-default-0": ip("192.168.0.2"),
        "ack-default-1": ip("192.168.0.3"),
    }


def test_standalone_ecs_instance(docs, plan_yaml) -> None:
    ecs = """
---
apiVersion: acknet.io/v1
kind: ECSInstance
metadata: {name: db}
spec:
  vswitch: node-i
  instanceType: ecs.g7.large
  securityGroups: [cluster-sg]
  ports: [{port: 3306}, {port: 53, protocol: UDP}]
  command: [sleep, infinity]
"""
    (db,) = plan_yaml(docs.CLOUD + ecs).instances
    assert (db.name, db.zone, db.vswitch, db.primary_ip, db.instance_type) == (
        "db",
        "cn-hangzhou-i",
        "node-i",
        ip("192.168.1.1"),
        "ecs.g7.large",
    )
    assert db.ports == ((3306, "TCP"), (53, "UDP"))
    assert db.command == ("sleep", "infinity")
    assert (db.is_node, db.max_pods, db.cluster) == (False, 0, None)


def test_eni_ids_and_macs_are_well_formed_and_unique(docs, plan_yaml) -> None:
    text = (
        docs.CLOUD
        + docs.cluster(
            docs.pool(count=4, instance_type="ecs.g7.large"), docs.pool("x", 2, eniMode="exclusive")
        )
        + docs.deployment("web", 40)
        + ECS_FIXED
    )
    enis = [e for i in plan_yaml(text).instances for e in i.enis]
    assert len(enis) > 10
    assert all(re.fullmatch(r"eni-[0-9a-f]{16}", e.id) for e in enis)
    # Locally administered unicast: first octet 02.
    assert all(re.fullmatch(r"02(:[0-9a-f]{2}){5}", e.mac) for e in enis)
    assert len({e.id for e in enis}) == len({e.mac for e in enis}) == len(enis)


def test_eni_identity_is_derived_from_instance_and_index(docs, plan_yaml) -> None:
    text = docs.CLOUD + docs.cluster(docs.pool(count=2))
    first = [e.id for i in plan_yaml(text).instances for e in i.enis]
    again = [e.id for i in plan_yaml(text).instances for e in i.enis]
    assert first == again
    assert len(set(first)) == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(
            lambda d: d.cluster(d.pool(count=1, vswitches="[nope]")),
            "VSwitch 'nope' does not exist",
            id="missing-vswitch",
        ),
        pytest.param(
            lambda d: d.vswitch("tiny", "192.168.9.0/29") + d.cluster(d.pool(count=5, vswitches="[tiny]")),
            r"VSwitch tiny \(192.168.9.0/29\) has no free address for ECS ack-default-4",
            id="node-vswitch-full",
        ),
        pytest.param(
            lambda d: ECS_FIXED.replace("192.168.0.1", "192.168.0.253"),
            "192.168.0.253 is reserved",
            id="fixed-address-is-the-gateway",
        ),
    ],
)
def test_impossible_instances_raise_invalid_input(docs, plan_yaml, extra, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        plan_yaml(docs.CLOUD + extra(docs))
