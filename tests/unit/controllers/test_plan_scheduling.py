"""Placement: fewest pods first, nodeSelector, nodeName, capacity, and kube-scheduler's Pending messages."""

from __future__ import annotations

from collections import Counter

import pytest

from acknet.controllers.scheduling import fit_error

SELECTOR_MISMATCH = "node(s) didn't match Pod's node affinity/selector"


def nodes_of(planned) -> Counter[str]:
    return Counter(p.node for p in planned.pods if p.node is not None)


def test_pods_spread_to_the_node_with_fewest_pods_ties_by_name(docs, plan_yaml) -> None:
    text = docs.CLOUD + docs.cluster(docs.pool(count=3)) + docs.deployment("web", 7)
    assert nodes_of(plan_yaml(text)) == {"ack-default-0": 3, "ack-default-1": 2, "ack-default-2": 2}


def test_a_single_pod_goes_to_the_first_node_by_name(docs, plan_yaml) -> None:
    text = docs.CLOUD + docs.cluster(docs.pool(count=3)) + docs.deployment("web", 1)
    assert nodes_of(plan_yaml(text)) == {"ack-default-0": 1}


def test_pods_with_node_name_count_towards_least_allocated(docs, plan_yaml) -> None:
    text = (
        docs.CLOUD
        + docs.cluster(docs.pool(count=2))
        + docs.pod("pinned", spec=("nodeName: ack-default-0",))
        + docs.deployment("web", 1)
    )
    by_name = {p.name: p.node for p in plan_yaml(text).pods}
    assert by_name.pop("pinned") == "ack-default-0"
    assert list(by_name.values()) == ["ack-default-1"]


def test_node_selector_must_be_a_subset_of_the_node_labels(docs, plan_yaml) -> None:
    text = (
        docs.CLOUD
        + docs.cluster(docs.pool("cpu", 2), docs.pool("gpu", 1, labels="{accel: gpu}"))
        + docs.deployment("train", 3, spec=("nodeSelector: {accel: gpu, kubernetes.io/os: linux}",))
    )
    assert nodes_of(plan_yaml(text)) == {"ack-gpu-0": 3}


FLANNEL_SMALL = ("networkPlugin: flannel", "podCidr: 172.20.0.0/24", "nodeCidrMask: 25")


@pytest.mark.parametrize(
    ("build", "pending", "reason"),
    [
        pytest.param(
            lambda d: (
                d.cluster(d.pool(count=2)) + d.deployment("web", 1, spec=("nodeSelector: {disk: ssd}",))
            ),
            1,
            f"0/2 nodes are available: 2 {SELECTOR_MISMATCH}.",
            id="selector-matches-no-node",
        ),
        pytest.param(
            lambda d: d.cluster(d.pool(count=1, instance_type="ecs.g6.large")) + d.deployment("web", 7),
            1,
            "0/1 nodes are available: 1 Too many pods.",
            id="node-full",
        ),
        pytest.param(
            lambda d: (
                d.cluster(d.pool("a", 2), d.pool("b", 1, "ecs.g6.large", labels="{x: y}"))
                + d.deployment("web", 7, spec=("nodeSelector: {x: y}",))
            ),
            1,
            f"0/3 nodes are available: 1 Too many pods, 2 {SELECTOR_MISMATCH}.",
            id="full-and-mismatched-sorted-like-kube-scheduler",
        ),
        pytest.param(
            lambda d: d.cluster(d.pool(count=1, eniMode="exclusive")) + d.deployment("web", 4),
            1,
            "0/1 nodes are available: 1 Insufficient aliyun/eni.",
            id="exclusive-eni-node-full",
        ),
        pytest.param(
            lambda d: d.cluster(d.pool(count=0)) + d.deployment("web", 2),
            2,
            "no nodes available to schedule pods",
            id="no-nodes",
        ),
        pytest.param(
            lambda d: (
                d.cluster(d.pool(count=3), spec=FLANNEL_SMALL)
                + d.deployment("web", 1, spec=("nodeSelector: {kubernetes.io/hostname: ack-default-2}",))
            ),
            1,
            "0/3 nodes are available: "
            "1 node(s) had untolerated taint {node.kubernetes.io/network-unavailable: }, "
            f"2 {SELECTOR_MISMATCH}.",
            id="flannel-node-without-pod-cidr-is-tainted",
        ),
        pytest.param(
            lambda d: d.cluster(d.pool(count=1)) + d.pod("lost", spec=("nodeName: ghost",)),
            1,
            'NodeNotFound: node "ghost" does not exist',
            id="node-name-does-not-exist",
        ),
        pytest.param(
            lambda d: (
                d.cluster(d.pool(count=1, instance_type="ecs.g6.large"))
                + "".join(d.pod(f"p{i}", spec=("nodeName: ack-default-0",)) for i in range(7))
            ),
            1,
            "OutOfpods: Pod was rejected: "
            "Node didn't have enough resource: pods, requested: 1, used: 6, capacity: 6",
            id="node-name-on-a-full-node",
        ),
        pytest.param(
            lambda d: (
                d.cluster(d.pool(count=1))
                + d.pod("picky", spec=("nodeName: ack-default-0", "nodeSelector: {disk: ssd}"))
            ),
            1,
            "NodeAffinity: Pod was rejected: Predicate NodeAffinity failed",
            id="node-name-with-mismatched-selector",
        ),
    ],
)
def test_unplaceable_pods_stay_pending_with_a_reason(
    docs, plan_yaml, build, pending: int, reason: str
) -> None:
    pods = plan_yaml(docs.CLOUD + build(docs)).pods
    waiting = [p for p in pods if p.phase == "Pending"]
    assert len(waiting) == pending
    assert {p.reason for p in waiting} == {reason}
    assert all(p.node is None and p.ip is None and p.eni is None for p in waiting)
    assert all(p.reason is None and p.ip is not None for p in pods if p.phase == "Running")


@pytest.mark.parametrize(
    ("nodes", "reasons", "message"),
    [
        pytest.param(0, {}, "no nodes available to schedule pods", id="no-nodes"),
        pytest.param(
            12,
            {"Too many pods": 10, SELECTOR_MISMATCH: 2},
            f"0/12 nodes are available: 10 Too many pods, 2 {SELECTOR_MISMATCH}.",
            id="sorted-as-strings",
        ),
        pytest.param(
            4,
            {SELECTOR_MISMATCH: 2, "Too many pods": 2},
            f"0/4 nodes are available: 2 Too many pods, 2 {SELECTOR_MISMATCH}.",
            id="equal-counts-sort-by-reason",
        ),
    ],
)
def test_fit_error_message(nodes: int, reasons: dict[str, int], message: str) -> None:
    assert fit_error(nodes, reasons) == message
