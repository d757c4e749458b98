"""A policy that selects no pod is accepted and reported as a warning (never an error): Kubernetes
NetworkPolicy, Calico NetworkPolicy and GlobalNetworkPolicy alike, with Calico's workload labels."""

from __future__ import annotations

import pytest

from acknet.model.build import build_resources, check_sources
from acknet.model.diagnostics import Diagnostic
from acknet.model.documents import Source

PODS = """\
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: web-sa
      containers: [{name: web, image: nginx, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: monitor, namespace: ops, labels: {app: monitor}}
spec:
  containers: [{name: m, image: prom, ports: [{containerPort: 9100}]}]
"""


def diagnostics(policy: str) -> list[Diagnostic]:
    _, found = check_sources([Source("p.yaml", PODS + "---\n" + policy)])
    return found


def k8s(namespace: str, selector: str) -> str:
    return (
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
        f"metadata: {{name: p, namespace: {namespace}}}\n"
        f"spec: {{podSelector: {selector}, policyTypes: [Ingress]}}\n"
    )


def calico(namespace: str, selector: str) -> str:
    return (
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\n"
        f"metadata: {{name: p, namespace: {namespace}}}\n"
        f'spec: {{selector: "{selector}", types: [Ingress]}}\n'
    )


def global_policy(selector: str, namespace_selector: str = "") -> str:
    ns = f', namespaceSelector: "{namespace_selector}"' if namespace_selector else ""
    return (
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n"
        "metadata: {name: p}\n"
        f'spec: {{selector: "{selector}", types: [Ingress]{ns}}}\n'
    )


@pytest.mark.parametrize(
    ("policy", "ref", "message"),
    [
        pytest.param(
            k8s("shop", "{matchLabels: {app: wbe}}"),
            "NetworkPolicy/shop/p",
            "selects no pod in namespace shop",
            id="k8s-typo",
        ),
        pytest.param(
            k8s("empty", "{}"), "NetworkPolicy/empty/p", "selects no pod in namespace empty", id="k8s-ns"
        ),
        pytest.param(
            calico("shop", "app == 'monitor'"),
            "NetworkPolicy/shop/p",
            "selects no pod in namespace shop",
            id="calico-other-namespace",
        ),
        pytest.param(
            global_policy("app == 'db'"),
            "GlobalNetworkPolicy/p",
            "selects no pod in any namespace",
            id="global",
        ),
        pytest.param(
            global_policy("app == 'web'", "team == 'ops'"),
            "GlobalNetworkPolicy/p",
            "selects no pod in any namespace",
            id="global-namespace-selector",
        ),
    ],
)
def test_a_policy_selecting_no_pod_is_a_warning(policy: str, ref: str, message: str) -> None:
    found = diagnostics(policy)
    assert not [d for d in found if d.is_error], found
    (warn,) = [d for d in found if not d.is_error]
    assert warn.message == message
    assert warn.ref == ref
    assert warn.field in ("spec.podSelector", "spec.selector")
    assert str(warn).startswith("warning: p.yaml:")
    build_resources([Source("p.yaml", PODS + "---\n" + policy)])  # accepted: warnings do not fail


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param(k8s("shop", "{matchLabels: {app: web}}"), id="k8s"),
        pytest.param(calico("shop", "app == 'web'"), id="calico"),
        pytest.param(calico("shop", ""), id="calico-empty-selects-all"),
        pytest.param(calico("ops", "projectcalico.org/namespace == 'ops'"), id="calico-namespace-label"),
        pytest.param(
            calico("shop", "projectcalico.org/serviceaccount == 'web-sa'"), id="calico-service-account-label"
        ),
        pytest.param(global_policy("app == 'monitor'"), id="global"),
        pytest.param(global_policy("all()", "team == 'shop'"), id="global-namespace-selector"),
        pytest.param(
            global_policy("has(app)", "kubernetes.io/metadata.name == 'ops'"), id="global-metadata-name"
        ),
    ],
)
def test_a_policy_selecting_a_pod_gets_no_warning(policy: str) -> None:
    assert diagnostics(policy) == []


def test_an_invalid_selector_is_an_error_not_also_a_warning() -> None:
    found = diagnostics(calico("shop", "app == "))
    assert [d.is_error for d in found] == [True]
