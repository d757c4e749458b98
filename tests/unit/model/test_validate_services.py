"""Service validation (issue 5, bad input): every error names the file, the object and the field.

A targetPort name that no selected pod declares, a nodePort already taken (one range for every
protocol), a clusterIP outside the service CIDR or already taken: errors. A selector that matches
nothing is valid (the Service rejects).
"""

from __future__ import annotations

import pytest

from acknet.model.build import check_sources
from acknet.model.diagnostics import Diagnostic
from acknet.model.documents import Source

CLUSTER = """\
apiVersion: acknet.io/v1
kind: VPC
metadata: {name: prod}
spec: {cidrBlock: 192.168.0.0/16}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {name: node-h}
spec: {vpc: prod, cidrBlock: 192.168.0.0/24, zoneId: cn-hangzhou-h}
---
apiVersion: acknet.io/v1
kind: VSwitch
metadata: {name: pod-h}
spec: {vpc: prod, cidrBlock: 192.168.32.0/20, zoneId: cn-hangzhou-h}
---
apiVersion: acknet.io/v1
kind: Cluster
metadata: {name: ack}
spec:
  vpc: prod
  podVSwitches: [pod-h]
  nodePools:
  - {name: default, instanceType: ecs.g7.xlarge, vswitches: [node-h], count: 1}
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
      containers:
      - {name: web, ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 53, protocol: UDP}]}
"""


def service(name: str, spec: str) -> str:
    return f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec: {spec}\n"


def errors(*services: str) -> list[Diagnostic]:
    _, diagnostics = check_sources([Source("svc.yaml", CLUSTER + "".join(services))])
    return [d for d in diagnostics if d.is_error]


@pytest.mark.parametrize(
    ("services", "ref", "field", "message"),
    [
        pytest.param(
            [service("s", "{selector: {app: web}, ports: [{port: 80, targetPort: htp}]}")],
            "Service/shop/s",
            "spec.ports[0].targetPort",
            "no pod this Service selects has a TCP container port named 'htp'",
            id="target-port-name-nobody-has",
        ),
        pytest.param(
            [service("s", "{selector: {app: web}, ports: [{port: 53, protocol: TCP, targetPort: dns}]}")],
            "Service/shop/s",
            "spec.ports[0].targetPort",
            "TCP container port named 'dns'",
            id="target-port-name-of-another-protocol",
        ),
        pytest.param(
            [
                service("a", "{type: NodePort, selector: {app: web}, ports: [{port: 80, nodePort: 30080}]}"),
                service("b", "{type: NodePort, selector: {app: web}, ports: [{port: 80, nodePort: 30080}]}"),
            ],
            "Service/shop/b",
            "spec.ports[0].nodePort",
            "30080/TCP is already taken by Service shop/a",
            id="node-port-taken",
        ),
        pytest.param(
            [
                service("a", "{type: NodePort, selector: {app: web}, ports: [{port: 80, nodePort: 30080}]}"),
                service(
                    "b",
                    "{type: NodePort, selector: {app: web}, "
                    "ports: [{port: 53, protocol: UDP, targetPort: dns, nodePort: 30080}]}",
                ),
            ],
            "Service/shop/b",
            "spec.ports[0].nodePort",
            "30080/UDP is already taken by Service shop/a (TCP)",
            id="node-port-taken-for-another-protocol",
        ),
        pytest.param(
            [
                service(
                    "a",
                    "{type: NodePort, selector: {app: web}, ports: [{name: x, port: 80, nodePort: 30080}, "
                    "{name: y, port: 81, nodePort: 30080}]}",
                )
            ],
            "Service/shop/a",
            "spec.ports[1].nodePort",
            "30080/TCP is already taken by Service shop/a",
            id="node-port-twice-in-one-service",
        ),
        pytest.param(
            [service("s", "{clusterIP: 10.0.0.5, selector: {app: web}, ports: [{port: 80}]}")],
            "Service/shop/s",
            "spec.clusterIP",
            "outside the service CIDR 172.21.0.0/20",
            id="cluster-ip-outside-the-range",
        ),
        pytest.param(
            [
                service("a", "{clusterIP: 172.21.0.50, selector: {app: web}, ports: [{port: 80}]}"),
                service("b", "{clusterIP: 172.21.0.50, selector: {app: web}, ports: [{port: 80}]}"),
            ],
            "Service/shop/b",
            "spec.clusterIP",
            "172.21.0.50 is already taken by Service shop/a",
            id="cluster-ip-taken",
        ),
        pytest.param(
            [service("s", "{clusterIP: 172.21.0.1, selector: {app: web}, ports: [{port: 80}]}")],
            "Service/shop/s",
            "spec.clusterIP",
            "already taken by the kubernetes Service",
            id="cluster-ip-of-the-api-server",
        ),
        pytest.param(
            [service("s", "{clusterIP: 172.21.0.10, selector: {app: web}, ports: [{port: 80}]}")],
            "Service/shop/s",
            "spec.clusterIP",
            "belongs to kube-system/kube-dns",
            id="cluster-ip-of-kube-dns",
        ),
    ],
)
def test_bad_service_is_an_error_naming_object_and_field(
    services: list[str], ref: str, field: str, message: str
) -> None:
    found = errors(*services)
    assert any(d.ref == ref and d.field == field and message in d.message for d in found), found
    assert all(str(d).startswith("svc.yaml") for d in found), [str(d) for d in found]


@pytest.mark.parametrize(
    "services",
    [
        pytest.param(
            [service("s", "{selector: {app: nothing}, ports: [{port: 80, targetPort: any}]}")],
            id="selects-nothing",
        ),
        pytest.param(
            [
                service(
                    "s",
                    "{type: NodePort, selector: {app: web}, ports: [{name: t, port: 53, protocol: TCP, nodePort: 30053}, "
                    "{name: u, port: 53, protocol: UDP, targetPort: dns, nodePort: 30053}]}",
                )
            ],
            id="one-node-port-for-tcp-and-udp-of-one-service",
        ),
        pytest.param(
            [service("s", "{selector: {app: web}, ports: [{port: 80, targetPort: http}]}")], id="named-port"
        ),
        pytest.param([service("s", "{ports: [{port: 80, targetPort: whatever}]}")], id="no-selector"),
    ],
)
def test_valid_services(services: list[str]) -> None:
    assert errors(*services) == []
