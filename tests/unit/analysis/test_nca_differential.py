"""acknet against network-config-analyzer (NCA), an independent NetworkPolicy implementation.

On a suite of generated clusters (namespaces, Deployments, Services and NetworkPolicies from
``bench/check_scale.py``, read by both tools from the same folder) every (Deployment pair, port)
verdict of acknet must be NCA's, once the two causes of disagreement that docs/check-scale.md
investigates are left out of the generator: an ipBlock that holds pod addresses (acknet, as Calico
and the upstream e2e suite, matches the pods; NCA never does) and a peer's podSelector with
Exists/DoesNotExist next to a namespaceSelector (NCA keeps only the policy's own namespace: a bug).
Both are then pinned, each on a small case, with acknet's answer checked against the Kubernetes API
text.

NCA comes from PyPI only, into its own virtualenv (bench/.nca-venv); when it cannot be installed the
tests are skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pytest

from acknet.analysis.endpoints import EndpointIndex
from acknet.analysis.reachability import Reachability
from acknet.controllers.plan import plan
from acknet.model.build import build_resources
from acknet.store.files import read_sources

REPO = Path(__file__).resolve().parents[3]


def _bench() -> ModuleType:
    path = REPO / "bench" / "nca_compare.py"
    spec = importlib.util.spec_from_file_location("_nca_compare", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


BENCH = _bench()
NCA, WHY = BENCH.nca_executable(install=os.environ.get("ACKNET_NCA_INSTALL", "1") != "0")
needs_nca = pytest.mark.skipif(NCA is None, reason=f"network-config-analyzer unavailable: {WHY}")


@needs_nca
@pytest.mark.parametrize(
    ("pods", "policies", "seed"), [(60, 16, 1), (80, 24, 2), (120, 30, 3), (150, 40, 4), (200, 50, 5)]
)
def test_same_answers_as_nca(pods: int, policies: int, seed: int) -> None:
    _, _, comparison = BENCH.run_case(NCA, pods, policies, seed, 600, "and no Exists/DoesNotExist in peers")
    assert comparison is not None, "NCA did not finish"
    assert comparison.cells > 100
    assert not comparison.mixed, comparison.mixed[:5]
    assert not comparison.differ, "\n".join(BENCH._explain(comparison.differ, 20))


MINI = """\
apiVersion: v1
kind: Namespace
metadata: {{name: a, labels: {{kubernetes.io/metadata.name: a, team: pay}}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: b, labels: {{kubernetes.io/metadata.name: b, team: search}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: client, namespace: a}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: client}}}}
  template:
    metadata: {{labels: {{app: client}}}}
    spec: {{containers: [{{name: m, image: x, ports: [{{name: http, containerPort: 8080}}]}}]}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: server, namespace: b}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: server}}}}
  template:
    metadata: {{labels: {{app: server}}}}
    spec: {{containers: [{{name: m, image: x, ports: [{{name: http, containerPort: 8080}}]}}]}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: p, namespace: b}}
spec:
  podSelector: {{matchLabels: {{app: server}}}}
  policyTypes: [Ingress]
  ingress:
  - from: [{peer}]
"""

# (id, peer, does the Kubernetes API let a/client reach b/server)
KNOWN = [
    pytest.param(
        "{podSelector: {matchExpressions: [{key: canary, operator: DoesNotExist}]}, "
        "namespaceSelector: {matchLabels: {team: pay}}}",
        True,
        id="exists-operator-beside-a-namespace-selector",
    ),
    pytest.param("{ipBlock: {cidr: 192.168.32.0/19}}", True, id="ip-block-holding-the-pod-address"),
    pytest.param(
        "{podSelector: {matchLabels: {app: client}}, namespaceSelector: {matchLabels: {team: pay}}}",
        True,
        id="match-labels-beside-a-namespace-selector",
    ),
]


def _acknet_allows(folder: Path) -> bool:
    planned = plan(build_resources(read_sources([str(folder)])))
    index = EndpointIndex.of(planned)
    (client,) = (p for p in index.pods.values() if p.name.startswith("a/client"))
    (server,) = (p for p in index.pods.values() if p.name.startswith("b/server"))
    return Reachability(planned).verdict(client, server, 8080, "TCP").allowed


@pytest.mark.parametrize(("peer", "allowed"), KNOWN)
def test_known_disagreements_acknet_follows_the_api(peer: str, allowed: bool) -> None:
    """NetworkPolicyPeer (k8s.io/api networking/v1 types.go): with both selectors set, "selects the
    Pods matching PodSelector in the Namespaces selected by NamespaceSelector"; an ipBlock is a set of
    addresses, and Calico (ACK's Terway policy engine) and the upstream e2e tests match pod addresses
    with it (reference/k8s.md 4.7)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "k8s.yaml").write_text(MINI.format(peer=peer))
        assert _acknet_allows(folder) is allowed


@needs_nca
@pytest.mark.parametrize(
    ("peer", "nca_allows"),
    [
        pytest.param(KNOWN[0].values[0], False, id="nca-keeps-the-own-namespace-for-exists"),
        pytest.param(KNOWN[1].values[0], False, id="nca-never-matches-pods-by-ip-block"),
        pytest.param(KNOWN[2].values[0], True, id="nca-agrees-with-match-labels"),
    ],
)
def test_what_nca_says_on_the_known_disagreements(peer: str, nca_allows: bool) -> None:
    """Pins NCA's side of docs/check-scale.md; if a new NCA release fixes one, this says so."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "k8s.yaml").write_text(MINI.format(peer=peer))
        _, pairs = BENCH.run_nca(NCA, folder, 120)
        got = pairs.get(("a/client", "b/server"), BENCH.Connections()).allows(8080, "TCP")
        assert got is nca_allows


def test_policy_types_in_either_order_acknet() -> None:
    """``policyTypes: [Egress, Ingress]`` is valid (the API takes a list; upstream e2e case 027 writes
    it in that order) and means both directions."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        text = MINI.format(peer="{namespaceSelector: {}}").replace(
            "policyTypes: [Ingress]", "policyTypes: [Egress, Ingress]\n  egress: [{}]"
        )
        (folder / "k8s.yaml").write_text(text)
        assert _acknet_allows(folder)


@needs_nca
def test_nca_refuses_policy_types_in_the_other_order() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        text = MINI.format(peer="{namespaceSelector: {}}").replace(
            "policyTypes: [Ingress]", "policyTypes: [Egress, Ingress]\n  egress: [{}]"
        )
        (folder / "k8s.yaml").write_text(text)
        with pytest.raises(RuntimeError, match="policyTypes has invalid value"):
            BENCH.run_nca(NCA, folder, 120)
