"""Placement: which node runs each pod, or why none can (the message ``kubectl describe pod`` shows).

kube-scheduler filters nodes (TaintToleration, NodeAffinity for ``nodeSelector``, NodeResourcesFit for
the pod count) and scores the rest; with equal requests LeastAllocated amounts to "the node with the
fewest pods". Ties go to the node name, where the real scheduler picks at random. A pod with
``nodeName`` bypasses the scheduler and is admitted, or rejected, by that node's kubelet.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from acknet.controllers.state import Instance
from acknet.controllers.workloads import DesiredPod

# kube-scheduler's filter reasons (pkg/scheduler/framework/plugins/...): the node-by-node words.
TAINT_NETWORK_UNAVAILABLE = "node(s) had untolerated taint {node.kubernetes.io/network-unavailable: }"
SELECTOR_MISMATCH = "node(s) didn't match Pod's node affinity/selector"
TOO_MANY_PODS = "Too many pods"
# Exclusive-ENI pods request the aliyun/eni extended resource that Terway's device plugin advertises.
INSUFFICIENT_ENI = "Insufficient aliyun/eni"
NO_NODES = "no nodes available to schedule pods"


@dataclass(frozen=True, slots=True)
class Placement:
    node: str | None
    reason: str | None = None


def fit_error(num_nodes: int, reasons: Mapping[str, int]) -> str:
    """``FitError.Error()``: "0/N nodes are available: " + "<count> <reason>" sorted as strings + "."."""
    if num_nodes == 0:
        return NO_NODES
    histogram = sorted(f"{count} {reason}" for reason, count in reasons.items())
    return f"0/{num_nodes} nodes are available: {', '.join(histogram)}."


class _Nodes:
    """The cluster's nodes with their pod counts, as the scheduler cache sees them."""

    def __init__(self, nodes: Sequence[Instance], ready: Mapping[str, bool]) -> None:
        self.nodes = {n.name: n for n in nodes}
        self.ready = ready
        self.count = dict.fromkeys(self.nodes, 0)
        self._heaps: dict[tuple[tuple[str, str], ...], list[tuple[int, str]]] = {}
        self._reasons: dict[tuple[tuple[str, str], ...], str] = {}

    def fits(self, node: Instance, selector: Mapping[str, str]) -> bool:
        return (
            self.ready[node.name]
            and selector.items() <= node.labels.items()
            and self.count[node.name] < node.max_pods
        )

    def bind(self, name: str) -> None:
        self.count[name] += 1

    def pick(self, selector: Mapping[str, str]) -> str | None:
        """The eligible node with the fewest pods, ties by name.

        One heap per distinct nodeSelector holds (pods, name) of its eligible nodes; counts only grow,
        so a stale entry is simply pushed back with its current count (lazy update), which keeps
        60,000 pods over 2,000 nodes at O(log n) each.
        """
        key = tuple(sorted(selector.items()))
        heap = self._heaps.get(key)
        if heap is None:
            heap = [
                (self.count[n.name], n.name)
                for n in self.nodes.values()
                if self.ready[n.name] and selector.items() <= n.labels.items()
            ]
            heapq.heapify(heap)
            self._heaps[key] = heap
        while heap:
            seen, name = heap[0]
            current = self.count[name]
            if current >= self.nodes[name].max_pods:
                heapq.heappop(heap)
            elif seen != current:
                heapq.heapreplace(heap, (current, name))
            else:
                heapq.heapreplace(heap, (current + 1, name))
                self.count[name] = current + 1
                return name
        return None

    def why_not(self, selector: Mapping[str, str]) -> str:
        """The FitError for a pod no node takes. Counts never shrink within a plan, so it is cached."""
        key = tuple(sorted(selector.items()))
        if key not in self._reasons:
            reasons: dict[str, int] = {}
            for node in self.nodes.values():
                if not self.ready[node.name]:
                    reason = TAINT_NETWORK_UNAVAILABLE
                elif not selector.items() <= node.labels.items():
                    reason = SELECTOR_MISMATCH
                else:
                    reason = INSUFFICIENT_ENI if node.eni_mode == "exclusive" else TOO_MANY_PODS
                reasons[reason] = reasons.get(reason, 0) + 1
            self._reasons[key] = fit_error(len(self.nodes), reasons)
        return self._reasons[key]

    def admit(self, name: str, selector: Mapping[str, str]) -> Placement:
        """Kubelet admission of a pod with ``nodeName`` (pkg/kubelet/lifecycle/predicate.go)."""
        node = self.nodes.get(name)
        if node is None:
            # Nothing runs the pod: no kubelet watches for that name, and the scheduler skips bound pods.
            return Placement(None, f'NodeNotFound: node "{name}" does not exist')
        if not selector.items() <= node.labels.items():
            return Placement(None, "NodeAffinity: Pod was rejected: Predicate NodeAffinity failed")
        used = self.count[name]
        if used >= node.max_pods:
            return Placement(
                None,
                "OutOfpods: Pod was rejected: Node didn't have enough resource: pods, "
                f"requested: 1, used: {used}, capacity: {node.max_pods}",
            )
        self.bind(name)
        return Placement(name)


def schedule(
    nodes: Sequence[Instance],
    pods: Sequence[DesiredPod],
    previous: Mapping[str, str],
    ready: Mapping[str, bool] | None = None,
) -> list[Placement]:
    """One Placement per pod, in the order given.

    ``previous`` maps a pod key to the node it ran on: such a pod stays there while the node exists,
    still matches and has room (pods are not rescheduled in Kubernetes). Then pods with ``nodeName``
    are admitted by their kubelet, then the scheduler places the rest in order. ``ready`` is False for
    nodes the scheduler must avoid (a Flannel node without a PodCIDR carries the network-unavailable
    taint); every node is ready when it is not given.
    """
    state = _Nodes(nodes, ready if ready is not None else dict.fromkeys((n.name for n in nodes), True))
    out: list[Placement | None] = [None] * len(pods)
    for i, desired in enumerate(pods):
        before = previous.get(desired.pod.key)
        spec = desired.spec
        if before is None or (spec.node_name is not None and spec.node_name != before):
            continue
        node = state.nodes.get(before)
        if node is not None and state.fits(node, spec.node_selector):
            state.bind(before)
            out[i] = Placement(before)
    for i, desired in enumerate(pods):
        spec = desired.spec
        if out[i] is None and spec.node_name is not None:
            out[i] = state.admit(spec.node_name, spec.node_selector)
    for i, desired in enumerate(pods):
        if out[i] is None:
            selector = desired.spec.node_selector
            chosen = state.pick(selector)
            out[i] = Placement(chosen) if chosen is not None else Placement(None, state.why_not(selector))
    return [p for p in out if p is not None]
