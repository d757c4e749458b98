"""Fixtures for the controller tests: YAML text in, Resources or a Plan out."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from acknet.controllers.plan import plan
from acknet.controllers.state import Plan
from acknet.model.documents import Source
from acknet.model.load import load_resources
from acknet.model.resources import Resources

# One VPC, a node VSwitch per zone and a pod VSwitch in zone h (ACK's Terway example plan).
CLOUD = """
apiVersion: acknet.io/v1
kind: VPC
metadata: {name: vpc}
spec: {cidrBlock: 192.168.0.0/16}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {name: node-h}
spec: {vpc: vpc, cidrBlock: 192.168.0.0/24, zoneId: cn-hangzhou-h}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {name: node-i}
spec: {vpc: vpc, cidrBlock: 192.168.1.0/24, zoneId: cn-hangzhou-i}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {name: pod-h}
spec: {vpc: vpc, cidrBlock: 192.168.32.0/19, zoneId: cn-hangzhou-h}
---
apiVersion: acknet.io/v1
kind: SecurityGroup
metadata: {name: cluster-sg}
spec: {vpc: vpc}
"""

Load = Callable[[str], Resources]
PlanYaml = Callable[..., Plan]


def _doc(*lines: str) -> str:
    return "\n---\n" + "\n".join(lines) + "\n"


class Docs:
    """YAML builders for the tests (handed out by a fixture: test modules should not import conftest)."""

    CLOUD = CLOUD

    @staticmethod
    def vswitch(name: str, cidr: str, zone: str = "cn-hangzhou-h") -> str:
        return _doc(
            "apiVersion: acknet.io/v1",
            "kind: VSwitch",
            f"metadata: {{name: {name}}}",
            f"spec: {{vpc: vpc, cidrBlock: {cidr}, zoneId: {zone}}}",
        )

    @staticmethod
    def cluster(*pools: str, spec: tuple[str, ...] = ("podVSwitches: [pod-h]",), name: str = "ack") -> str:
        """A Cluster; ``pools`` are node pool lines (``Docs.pool``), ``spec`` more spec lines."""
        return _doc(
            "apiVersion: acknet.io/v1",
            "kind: Cluster",
            f"metadata: {{name: {name}}}",
            "spec:",
            "  vpc: vpc",
            "  securityGroups: [cluster-sg]",
            *(f"  {line}" for line in spec),
            "  addons: []",
            "  nodePools:",
            *pools,
        )

    @staticmethod
    def pool(
        name: str = "default", count: int = 2, instance_type: str = "ecs.g7.xlarge", **extra: str
    ) -> str:
        """One node pool in flow style; ``extra`` adds or overrides fields (vswitches, eniMode, labels)."""
        fields = {"name": name, "instanceType": instance_type, "vswitches": "[node-h]", "count": str(count)}
        fields.update(extra)
        return "  - {" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}"

    @staticmethod
    def deployment(
        name: str,
        replicas: int,
        *,
        namespace: str = "default",
        labels: str = "",
        spec: tuple[str, ...] = (),
        ports: str = "[{name: http, containerPort: 8080}]",
        cluster: str | None = None,
    ) -> str:
        """Pods labelled ``app: <name>`` (plus ``labels``), one container ``main`` with ``ports``."""
        extra = f", {labels}" if labels else ""
        annotations = f", annotations: {{acknet.io/cluster: {cluster}}}" if cluster else ""
        return _doc(
            "apiVersion: apps/v1",
            "kind: Deployment",
            f"metadata: {{name: {name}, namespace: {namespace}{annotations}}}",
            "spec:",
            f"  replicas: {replicas}",
            f"  selector: {{matchLabels: {{app: {name}}}}}",
            "  template:",
            f"    metadata: {{labels: {{app: {name}{extra}}}}}",
            "    spec:",
            *(f"      {line}" for line in spec),
            "      containers:",
            "      - name: main",
            f"        ports: {ports}",
        )

    @staticmethod
    def pod(
        name: str,
        *,
        namespace: str = "default",
        labels: str = "{}",
        spec: tuple[str, ...] = (),
        ports: str = "[{name: http, containerPort: 8080}]",
    ) -> str:
        return _doc(
            "apiVersion: v1",
            "kind: Pod",
            f"metadata: {{name: {name}, namespace: {namespace}, labels: {labels}}}",
            "spec:",
            *(f"  {line}" for line in spec),
            "  containers:",
            "  - name: main",
            f"    ports: {ports}",
        )

    @staticmethod
    def service(name: str, *, namespace: str = "default", spec: tuple[str, ...] = ()) -> str:
        return _doc(
            "apiVersion: v1",
            "kind: Service",
            f"metadata: {{name: {name}, namespace: {namespace}}}",
            "spec:",
            *(f"  {line}" for line in spec),
        )


@pytest.fixture
def docs() -> type[Docs]:
    return Docs


@pytest.fixture
def load() -> Load:
    def _load(text: str) -> Resources:
        result = load_resources([Source("test.yaml", text)])
        assert not result.errors, "\n".join(str(d) for d in result.errors)
        return result.resources

    return _load


@pytest.fixture
def plan_yaml(load: Load) -> PlanYaml:
    def _plan(text: str, previous: Plan | None = None) -> Plan:
        return plan(load(text), previous)

    return _plan
