"""Bad input gets an error that names the file, the document, the object and the field, and says what is
allowed; a run reports every error, not only the first."""

from __future__ import annotations

import textwrap

import pytest

from acknet.errors import InvalidInput
from acknet.model.build import build_resources, check_sources
from acknet.model.diagnostics import Diagnostic
from acknet.model.documents import Source

BASE = """\
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
kind: SecurityGroup
metadata: {name: web-sg}
spec:
  vpc: prod
  rules:
  - {direction: ingress, policy: accept, priority: 1, ipProtocol: tcp, portRange: 80/80, sourceCidrIp: 0.0.0.0/0}
---
apiVersion: acknet.io/v1
kind: Cluster
metadata: {name: ack}
spec:
  vpc: prod
  podVSwitches: [pod-h]
  securityGroups: [web-sg]
  nodePools:
  - {name: default, instanceType: ecs.g7.xlarge, vswitches: [node-h], count: 2}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx, ports: [{name: http, containerPort: 8080}]}]
"""


def run(extra: str) -> list[Diagnostic]:
    text = BASE + "---\n" + textwrap.dedent(extra)
    _, diagnostics = check_sources([Source("net.yaml", text)])
    return [d for d in diagnostics if d.is_error]


def test_base_is_valid() -> None:
    assert run("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n") == []


CASES = [
    (
        "vpc-cidr-public",
        "apiVersion: acknet.io/v1\nkind: VPC\nmetadata: {name: pub}\nspec: {cidrBlock: 8.8.0.0/16}\n",
        "VPC/pub",
        "spec.cidrBlock",
        "outside the ranges a VPC may use",
    ),
    (
        "unknown-field",
        "apiVersion: acknet.io/v1\nkind: VPC\nmetadata: {name: x}\n"
        "spec: {cidrBlock: 10.0.0.0/8, cidr: 10.0.0.0/8}\n",
        "VPC/x",
        "spec.cidr",
        "unknown field 'cidr'; allowed fields: cidrBlock",
    ),
    (
        "missing-field",
        "apiVersion: acknet.io/v1\nkind: VSwitch\nmetadata: {name: v}\n"
        "spec: {vpc: prod, cidrBlock: 192.168.9.0/24}\n",
        "VSwitch/v",
        "spec.zoneId",
        "required field is missing",
    ),
    (
        "unknown-kind",
        "apiVersion: v1\nkind: Pdo\nmetadata: {name: p}\n",
        "Pdo/p",
        "kind",
        "unknown kind 'Pdo'",
    ),
    (
        "old-api-version",
        "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata: {name: i}\n",
        "Ingress/i",
        "apiVersion",
        "use networking.k8s.io/v1",
    ),
    (
        "duplicate-name",
        "apiVersion: acknet.io/v1\nkind: VPC\nmetadata: {name: prod}\nspec: {cidrBlock: 10.0.0.0/8}\n",
        "VPC/prod",
        "metadata.name",
        "defined twice (first at net.yaml:1 (document 1))",
    ),
    (
        "vswitch-outside-vpc",
        "apiVersion: acknet.io/v1\nkind: VSwitch\nmetadata: {name: v}\n"
        "spec: {vpc: prod, cidrBlock: 10.1.0.0/24, zoneId: z}\n",
        "VSwitch/v",
        "spec.cidrBlock",
        "outside its VPC prod",
    ),
    (
        "vswitch-overlap",
        "apiVersion: acknet.io/v1\nkind: VSwitch\nmetadata: {name: v}\n"
        "spec: {vpc: prod, cidrBlock: 192.168.0.128/25, zoneId: z}\n",
        "VSwitch/v",
        "spec.cidrBlock",
        "overlaps VSwitch node-h",
    ),
    (
        "vswitch-missing-vpc",
        "apiVersion: acknet.io/v1\nkind: VSwitch\nmetadata: {name: v}\n"
        "spec: {vpc: dev, cidrBlock: 10.0.0.0/24, zoneId: z}\n",
        "VSwitch/v",
        "spec.vpc",
        "VPC 'dev' does not exist",
    ),
    (
        "sg-priority",
        "apiVersion: acknet.io/v1\nkind: SecurityGroup\nmetadata: {name: s}\nspec:\n  vpc: prod\n  rules:\n"
        "  - {direction: ingress, priority: 120, ipProtocol: tcp, portRange: 22/22, sourceCidrIp: 10.0.0.0/8}\n",
        "SecurityGroup/s",
        "spec.rules[0].priority",
        "120 is outside 1-100",
    ),
    (
        "sg-port-range",
        "apiVersion: acknet.io/v1\nkind: SecurityGroup\nmetadata: {name: s}\nspec:\n  vpc: prod\n"
        "  rules:\n  - {direction: ingress, ipProtocol: tcp, portRange: '80', sourceCidrIp: 10.0.0.0/8}\n",
        "SecurityGroup/s",
        "spec.rules[0].portRange",
        "use start/end",
    ),
    (
        "sg-icmp-port",
        "apiVersion: acknet.io/v1\nkind: SecurityGroup\nmetadata: {name: s}\nspec:\n  vpc: prod\n"
        "  rules:\n  - {direction: ingress, ipProtocol: icmp, portRange: 1/1, sourceCidrIp: 10.0.0.0/8}\n",
        "SecurityGroup/s",
        "spec.rules[0].portRange",
        "must be -1/-1",
    ),
    (
        "sg-enterprise-group-ref",
        "apiVersion: acknet.io/v1\nkind: SecurityGroup\nmetadata: {name: s}\nspec:\n"
        "  vpc: prod\n  securityGroupType: enterprise\n  rules:\n"
        "  - {direction: ingress, ipProtocol: all, portRange: -1/-1, sourceGroupId: web-sg}\n",
        "SecurityGroup/s",
        "spec.rules[0].sourceGroupId",
        "enterprise security groups cannot reference",
    ),
    (
        "sg-missing-group",
        "apiVersion: acknet.io/v1\nkind: SecurityGroup\nmetadata: {name: s}\nspec:\n  vpc: prod\n"
        "  rules:\n  - {direction: ingress, ipProtocol: all, portRange: -1/-1, sourceGroupId: nope}\n",
        "SecurityGroup/s",
        "spec.rules[0].sourceGroupId",
        "SecurityGroup 'nope' does not exist",
    ),
    (
        "ecs-missing-vswitch",
        "apiVersion: acknet.io/v1\nkind: ECSInstance\nmetadata: {name: db}\n"
        "spec: {vswitch: data, securityGroups: [web-sg]}\n",
        "ECSInstance/db",
        "spec.vswitch",
        "VSwitch 'data' does not exist",
    ),
    (
        "ecs-reserved-address",
        "apiVersion: acknet.io/v1\nkind: ECSInstance\nmetadata: {name: db}\n"
        "spec: {vswitch: node-h, securityGroups: [web-sg], privateIpAddress: 192.168.0.253}\n",
        "ECSInstance/db",
        "spec.privateIpAddress",
        "gateway of VSwitch node-h",
    ),
    (
        "service-cidr-overlaps-vpc",
        "apiVersion: acknet.io/v1\nkind: Cluster\nmetadata: {name: c2}\nspec:\n"
        "  vpc: prod\n  podVSwitches: [pod-h]\n  serviceCidr: 192.168.64.0/20\n"
        "  nodePools: [{name: p, vswitches: [node-h]}]\n",
        "Cluster/c2",
        "spec.serviceCidr",
        "overlaps VPC prod",
    ),
    (
        "flannel-pod-cidr-overlaps-vpc",
        "apiVersion: acknet.io/v1\nkind: Cluster\nmetadata: {name: c2}\nspec:\n"
        "  vpc: prod\n  networkPlugin: flannel\n  podCidr: 192.168.128.0/17\n"
        "  nodePools: [{name: p, vswitches: [node-h]}]\n",
        "Cluster/c2",
        "spec.podCidr",
        "overlaps VPC prod",
    ),
    (
        "nodeport-range",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: shop}\n"
        "spec: {type: NodePort, selector: {app: web}, ports: [{port: 80, nodePort: 8080}]}\n",
        "Service/shop/s",
        "spec.ports[0].nodePort",
        "outside the NodePort range 30000-32767",
    ),
    (
        "cluster-ip-outside",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: shop}\n"
        "spec: {clusterIP: 10.0.0.5, selector: {app: web}, ports: [{port: 80}]}\n",
        "Service/shop/s",
        "spec.clusterIP",
        "outside the service CIDR 172.21.0.0/20",
    ),
    (
        "target-port-name",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: shop}\n"
        "spec: {selector: {app: web}, ports: [{port: 80, targetPort: htp}]}\n",
        "Service/shop/s",
        "spec.ports[0].targetPort",
        "no pod this Service selects has a TCP container port named 'htp'",
    ),
    (
        "k8s-selector-operator",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\n"
        "spec:\n  podSelector: {matchExpressions: [{key: app, operator: Inn, values: [web]}]}\n",
        "NetworkPolicy/shop/p",
        "spec.podSelector.matchExpressions[0].operator",
        "Inn",
    ),
    (
        "calico-selector-syntax",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\n"
        "spec: {selector: \"app == 'web' &&\"}\n",
        "GlobalNetworkPolicy/g",
        "spec.selector",
        "position",
    ),
    (
        "lb-ms-group-size",
        "apiVersion: acknet.io/v1\nkind: ECSInstance\nmetadata: {name: e1}\n"
        "spec: {vswitch: node-h, securityGroups: [web-sg]}\n---\napiVersion: acknet.io/v1\nkind: LoadBalancer\n"
        "metadata: {name: lb}\nspec:\n  masterSlaveServerGroups:\n"
        "  - {name: ms, servers: [{ecs: e1, port: 80, serverType: Master}]}\n"
        "  listeners: [{protocol: tcp, listenerPort: 80, masterSlaveServerGroup: ms}]\n",
        "LoadBalancer/lb",
        "spec.masterSlaveServerGroups[0].servers",
        "exactly two servers",
    ),
    (
        "lb-missing-cert",
        "apiVersion: acknet.io/v1\nkind: LoadBalancer\nmetadata: {name: lb}\nspec:\n"
        "  listeners: [{protocol: https, listenerPort: 443, backendServerPort: 80, certificate: {secret: shop/tls}}]\n",
        "LoadBalancer/lb",
        "spec.listeners[0].certificate.secret",
        "Secret shop/tls does not exist",
    ),
    (
        "lb-listener-clash",
        "apiVersion: acknet.io/v1\nkind: LoadBalancer\nmetadata: {name: lb}\nspec:\n"
        "  listeners:\n  - {protocol: tcp, listenerPort: 80, backendServerPort: 80}\n"
        "  - {protocol: http, listenerPort: 80, backendServerPort: 80}\n",
        "LoadBalancer/lb",
        "spec.listeners[1].listenerPort",
        "already taken by listener 0",
    ),
    (
        "yaml-syntax",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: [x\n",
        "",
        "",
        "malformed YAML at line",
    ),
]


@pytest.mark.parametrize(
    ("extra", "ref", "field", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_reported_with_object_and_field(extra: str, ref: str, field: str, message: str) -> None:
    errors = run(extra)
    found = [d for d in errors if d.ref == ref and d.field == field and message in d.message]
    assert found, "\n".join(str(d) for d in errors) or "no error"
    d = found[0]
    assert d.origin is not None and d.origin.file == "net.yaml"
    assert d.origin.document >= 7  # the extra documents come after the six of BASE
    assert str(d).startswith("net.yaml:")


def test_every_error_in_one_run_with_field_lines() -> None:
    extra = """\
    apiVersion: acknet.io/v1
    kind: SecurityGroup
    metadata: {name: s}
    spec:
      vpc: prod
      rules:
      - {direction: ingress, priority: 0, ipProtocol: tcp, portRange: 22/22, sourceCidrIp: 10.0.0.0/8}
      - {direction: egress, priority: 1, ipProtocol: tcp, portRange: 99999/1, destCidrIp: 10.0.0.0/8}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: s, namespace: shop}
    spec: {type: NodePort, selector: {app: web}, ports: [{port: 80, nodePort: 1}]}
    """
    errors = run(extra)
    fields = {d.field for d in errors}
    assert {"spec.rules[0].priority", "spec.rules[1].portRange", "spec.ports[0].nodePort"} <= fields
    priority = next(d for d in errors if d.field == "spec.rules[0].priority")
    assert priority.line == BASE.count("\n") + 8  # the line of the rule, not of the document


def test_build_raises_invalid_input_with_all_errors() -> None:
    with pytest.raises(InvalidInput) as exc:
        build_resources(
            [Source("x.yaml", "apiVersion: acknet.io/v1\nkind: VPC\nmetadata: {name: v}\nspec: {}\n")]
        )
    assert "spec.cidrBlock" in str(exc.value)


def test_nodeport_taken_twice() -> None:
    extra = """\
    apiVersion: v1
    kind: Service
    metadata: {name: a, namespace: shop}
    spec: {type: NodePort, selector: {app: web}, ports: [{port: 80, nodePort: 30080}]}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: b, namespace: shop}
    spec: {type: NodePort, selector: {app: web}, ports: [{port: 80, nodePort: 30080}]}
    """
    errors = run(extra)
    assert any(d.ref == "Service/shop/b" and "already taken by Service shop/a" in d.message for d in errors)


def test_kubernetes_only_files_get_a_default_cloud() -> None:
    text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: x}]}\n"
    resources, diagnostics = check_sources([Source("p.yaml", text)])
    assert not [d for d in diagnostics if d.is_error]
    assert resources.default_cloud
    cluster = resources.clusters["ack"]
    assert cluster.spec.network_plugin == "terway" and cluster.spec.network_policy
    assert cluster.spec.node_pools[0].count >= 2
    assert set(resources.kube["ack"].namespaces) >= {"default", "kube-system"}


def test_default_cloud_has_nodes_enough_for_the_pods() -> None:
    text = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  replicas: 200\n"
        "  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n"
        "    spec: {containers: [{name: c}]}\n"
    )
    resources, _ = check_sources([Source("d.yaml", text)])
    assert resources.clusters["ack"].spec.node_pools[0].count == 5  # 200 pods / 45 per ecs.g7.xlarge


def test_unknown_kubernetes_fields_are_ignored() -> None:
    text = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, uid: abc, creationTimestamp: x}\n"
        "spec: {containers: [{name: c, image: x, resources: {limits: {cpu: 1}}}], tolerations: []}\n"
        "status: {phase: Running}\n"
    )
    _, diagnostics = check_sources([Source("p.yaml", text)])
    assert diagnostics == []
