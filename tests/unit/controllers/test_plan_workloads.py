"""Deployments -> pods named as ReplicaSets name them; bare pods kept; ports and commands."""

from __future__ import annotations

import re

import pytest

from acknet.controllers.naming import ALPHANUMS, fnv32a, generate_name, safe_encode
from acknet.controllers.state import PodPort
from acknet.controllers.workloads import pod_template_hash
from acknet.model.k8s import PodTemplate

CHARS = f"[{ALPHANUMS}]"


def template(**spec: object) -> PodTemplate:
    body: dict[str, object] = {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "ports": [{"name": "http", "containerPort": 8080}]}]},
    }
    body["spec"].update(spec)  # type: ignore[attr-defined]
    return PodTemplate.model_validate(body)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(b"", 0x811C9DC5, id="empty-is-offset-basis"),
        pytest.param(b"a", 0xE40C292C, id="a"),
        pytest.param(b"foobar", 0xBF9CF968, id="foobar"),
    ],
)
def test_fnv32a_reference_vectors(data: bytes, expected: int) -> None:
    assert fnv32a(data) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("0123456789", "456789bcdf", id="digits-as-in-pod-template-hashes"),
        pytest.param("abc", "vwx", id="letters-97-mod-27"),
    ],
)
def test_safe_encode_matches_kubernetes(text: str, expected: str) -> None:
    assert safe_encode(text) == expected


def test_pod_template_hash_looks_like_kubernetes_and_is_stable() -> None:
    h = pod_template_hash(template())
    # SafeEncodeString of a decimal uint32: at most 10 characters, only the images of 0-9.
    assert re.fullmatch(r"[456789bcdf]{1,10}", h)
    assert pod_template_hash(template()) == h


@pytest.mark.parametrize(
    ("changed", "same"),
    [
        pytest.param(template(nodeSelector={"disk": "ssd"}), False, id="node-selector-changes-it"),
        pytest.param(template(serviceAccountName="robot"), False, id="service-account-changes-it"),
        pytest.param(
            PodTemplate.model_validate(
                {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [{"name": "web", "ports": [{"name": "http", "containerPort": 9090}]}]
                    },
                }
            ),
            False,
            id="container-port-changes-it",
        ),
        pytest.param(
            PodTemplate.model_validate(
                {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                            }
                        ]
                    },
                }
            ),
            True,
            id="spelled-out-default-does-not",
        ),
        pytest.param(template(hostNetwork=False), True, id="explicit-default-hostnetwork-does-not"),
    ],
)
def test_pod_template_hash_changes_with_the_template(changed: PodTemplate, same: bool) -> None:
    assert (pod_template_hash(changed) == pod_template_hash(template())) is same


def test_replica_names_labels_and_owner(docs, plan_yaml) -> None:
    text = (
        docs.CLOUD
        + docs.cluster(docs.pool())
        + docs.deployment("web", 3, namespace="shop", labels="tier: front")
    )
    pods = plan_yaml(text).pods
    assert len(pods) == 3
    hashes = {p.labels["pod-template-hash"] for p in pods}
    assert len(hashes) == 1
    (h,) = hashes
    for p in pods:
        assert re.fullmatch(rf"web-{h}-{CHARS}{{5}}", p.name), p.name
        assert dict(p.labels) == {"app": "web", "tier": "front", "pod-template-hash": h}
        assert (p.namespace, p.owner, p.cluster, p.service_account) == (
            "shop",
            "Deployment/web",
            "ack",
            "default",
        )
    assert len({p.name for p in pods}) == 3


def test_scaling_up_keeps_the_existing_names(docs, plan_yaml) -> None:
    base = docs.CLOUD + docs.cluster(docs.pool())
    three = {p.name for p in plan_yaml(base + docs.deployment("web", 3)).pods}
    five = {p.name for p in plan_yaml(base + docs.deployment("web", 5)).pods}
    assert three < five and len(five) == 5


def test_changing_the_template_renames_every_pod(docs, plan_yaml) -> None:
    base = docs.CLOUD + docs.cluster(docs.pool())
    before = {p.name for p in plan_yaml(base + docs.deployment("web", 2)).pods}
    after = {p.name for p in plan_yaml(base + docs.deployment("web", 2, labels="v: '2'")).pods}
    assert before.isdisjoint(after)


def test_a_generated_name_never_takes_a_bare_pods_name(docs, plan_yaml) -> None:
    base = docs.CLOUD + docs.cluster(docs.pool()) + docs.deployment("web", 1)
    (generated,) = [p.name for p in plan_yaml(base).pods]
    pods = plan_yaml(base + docs.pod(generated, labels="{bare: 'yes'}")).pods
    assert len({p.name for p in pods}) == 2
    assert [p.labels.get("bare") for p in pods if p.name == generated] == ["yes"]


def test_generate_name_truncates_the_prefix_like_the_api_server() -> None:
    taken: set[str] = set()
    name = generate_name("x" * 70 + "-", ("seed",), taken)
    assert len(name) == 63 and name.startswith("x" * 58)
    assert generate_name("x" * 70 + "-", ("seed",), taken) != name


def test_bare_pods_are_kept(docs, plan_yaml) -> None:
    text = docs.CLOUD + docs.cluster(docs.pool()) + docs.pod("solo", namespace="ops", labels="{app: solo}")
    (pod,) = plan_yaml(text).pods
    assert (pod.key, dict(pod.labels), pod.owner) == ("ops/solo", {"app": "solo"}, None)


def test_ports_and_commands_per_container(docs, plan_yaml) -> None:
    pod = """
---
apiVersion: v1
kind: Pod
metadata: {name: multi}
spec:
  serviceAccountName: robot
  containers:
  - name: app
    command: [python, -m, http.server]
    args: ["8000"]
    ports: [{name: web, containerPort: 8000}, {containerPort: 53, protocol: UDP}]
  - name: sidecar
    args: [--ignored-without-command]
    ports: [{name: metrics, containerPort: 9100}]
"""
    (p,) = plan_yaml(docs.CLOUD + docs.cluster(docs.pool()) + pod).pods
    assert p.ports == (
        PodPort("web", 8000, "TCP", "app"),
        PodPort(None, 53, "UDP", "app"),
        PodPort("metrics", 9100, "TCP", "sidecar"),
    )
    assert p.commands == (("python", "-m", "http.server", "8000"), ())
    assert p.service_account == "robot"
