"""The upstream Kubernetes NetworkPolicy e2e suite, cell by cell, against ``acknet check``'s evaluator.

Every ``k8s-e2e-*.yaml`` of the shared corpus (format: shared/conformance/README.md) is read where it
lives (``$ACKNET_SHARED/conformance`` or ``<repo>/../shared/conformance``; never copied into the
project). Each case becomes acknet YAML: namespaces x, y, z with their labels, pods a, b, c with
their labels and containers, the per-pod Services, and nothing else, so acknet wraps them in its
default cloud (a Terway cluster with ``networkPolicy: true``) and every pod lands on a shared-ENI
node, the only pods ACK polices. Steps apply their actions cumulatively (policies created, replaced
and deleted, labels added); ``${podIP:ns/pod}`` placeholders become the planned pod addresses and
``${hostMask}`` 32.

Every non-loopback cell of every probe matrix is checked twice: by ``PolicyModel.connection`` (the
post-DNAT pod address and port, as upstream's probes through the ClusterIP see it) and by the whole
``Reachability`` verdict, so the policy hops are known to sit in the path. Loopback cells are
ignored as upstream does (``ignoreLoopback``). SCTP cases are checked here only: this kernel has no
SCTP sockets, so they cannot be probed live.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from acknet.analysis.endpoints import EndpointIndex
from acknet.analysis.policy import PolicyModel
from acknet.analysis.reachability import Reachability
from acknet.controllers.plan import plan
from acknet.controllers.state import Plan
from acknet.model.build import build_resources
from acknet.model.documents import Source

REPO = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("ACKNET_SHARED") or REPO.parent / "shared")
CORPUS = SHARED / "conformance"


def _cases() -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in sorted(CORPUS.glob("k8s-e2e-[0-9][0-9][0-9]-*.yaml"))]


CASES = _cases() if CORPUS.is_dir() else []


def _steps() -> Iterator[Any]:
    for case in CASES:
        for step in case["steps"]:
            yield pytest.param(case, step["step"], id=f"{case['id']}/step{step['step']}")


class _State:
    """The cluster as a case's actions leave it: namespace and pod labels, and the policies."""

    def __init__(self, cluster: Mapping[str, Any]) -> None:
        self.cluster = cluster
        self.ns_labels = {ns["name"]: dict(ns.get("labels") or {}) for ns in cluster["namespaces"]}
        self.pod_labels = {f"{p['namespace']}/{p['name']}": dict(p["labels"]) for p in cluster["pods"]}
        self.policies: dict[tuple[str, str], dict[str, Any]] = {}

    def apply(self, action: Mapping[str, Any]) -> None:
        ((kind, body),) = action.items()
        if kind in ("create_policy", "update_policy"):
            obj = body["object"]
            key = (body["namespace"], obj["metadata"]["name"])
            if kind == "create_policy":
                assert key not in self.policies, f"policy {key} created twice"
            self.policies[key] = obj
        elif kind == "delete_all_policies":
            namespaces = set(body["namespaces"])
            self.policies = {k: v for k, v in self.policies.items() if k[0] not in namespaces}
        elif kind == "add_namespace_labels":
            self.ns_labels[body["namespace"]].update(body["labels"])
        elif kind == "add_pod_labels":
            self.pod_labels[body["pod"]].update(body["labels"])
        else:
            raise AssertionError(f"unknown action {kind}")

    def documents(self, addresses: Mapping[str, str] | None) -> str:
        docs: list[dict[str, Any]] = []
        for name, labels in self.ns_labels.items():
            docs.append(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
            )
        for pod in self.cluster["pods"]:
            key = f"{pod['namespace']}/{pod['name']}"
            containers = [
                {"name": c["name"], "image": "registry.k8s.io/e2e-test-images/agnhost", "ports": [c["port"]]}
                for c in pod["containers"]
            ]
            meta = {"name": pod["name"], "namespace": pod["namespace"], "labels": self.pod_labels[key]}
            docs.append(
                {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": containers}}
            )
        for svc in self.cluster["services"]:
            docs.append(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": svc["name"], "namespace": svc["namespace"]},
                    "spec": {"type": svc["type"], "selector": svc["selector"], "ports": svc["ports"]},
                }
            )
        if addresses is not None:
            for (namespace, _), obj in sorted(self.policies.items()):
                text = json.dumps(obj).replace("${hostMask}", "32")
                for pod, ip in addresses.items():
                    text = text.replace(f"${{podIP:{pod}}}", ip)
                assert "${" not in text, f"unresolved placeholder in {text}"
                policy = json.loads(text)
                policy["metadata"]["namespace"] = namespace
                docs.append(policy)
        return yaml.safe_dump_all(docs, sort_keys=False)


def _plan(text: str) -> Plan:
    return plan(build_resources([Source("conformance.yaml", text)]))


def _state_at(case: Mapping[str, Any], step: int) -> tuple[_State, Mapping[str, Any]]:
    state = _State(case["cluster"])
    for s in case["steps"]:
        for action in s["actions"]:
            state.apply(action)
        if s["step"] == step:
            return state, s
    raise AssertionError(f"no step {step}")


@pytest.mark.skipif(not CASES, reason=f"the conformance corpus is not at {CORPUS} (set ACKNET_SHARED)")
def test_corpus_is_complete() -> None:
    assert len(CASES) == 48
    assert {case["cluster"]["served_protocols"][0] for case in CASES} >= {"TCP", "UDP", "SCTP"}


@pytest.mark.parametrize(("case", "step"), list(_steps()))
def test_matrix(case: Mapping[str, Any], step: int) -> None:
    state, spec = _state_at(case, step)
    # Pod addresses come from a plan without policies; policies never move a pod, which is checked.
    bare = _plan(state.documents(None))
    addresses = {p.key: str(p.ip) for p in bare.pods}
    planned = _plan(state.documents(addresses))
    assert {p.key: str(p.ip) for p in planned.pods} == addresses
    (cluster,) = planned.resources.clusters
    assert planned.resources.clusters[cluster].spec.network_policy
    index = EndpointIndex.of(planned)
    pods = {name: index.pods[name] for name in case["matrix_columns"]}
    assert {e.datapath for e in pods.values()} == {"terway-shared"}, "every pod must be policed"
    model = PolicyModel.of(planned, cluster)
    reach = Reachability(planned)
    columns = case["matrix_columns"]
    wrong: list[str] = []
    cells = 0
    for probe in spec["probes"]:
        port, protocol = probe["port"], probe["protocol"]
        for source, row in probe["matrix"].items():
            for destination, mark in zip(columns, row, strict=True):
                if source == destination:  # loopback: ignored upstream (issue #95879)
                    continue
                cells += 1
                expected = mark == "."
                src, dst = pods[source], pods[destination]
                decided = model.connection(src, dst, protocol, port)
                verdict = reach.verdict(src, dst, port, protocol)
                if decided.allowed != expected or verdict.allowed != expected:
                    why = "; ".join(verdict.reasons)
                    wrong.append(
                        f"{source} -> {destination} {port}/{protocol}: expected "
                        f"{'allowed' if expected else 'denied'}, policy says {decided.allowed}, "
                        f"check says {verdict.allowed} ({why})"
                    )
    assert cells > 0
    assert not wrong, f"{len(wrong)} of {cells} cells differ:\n" + "\n".join(wrong)
