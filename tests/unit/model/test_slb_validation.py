"""Bad CLB input (model/validate.py, the LoadBalancer checks): each error names the object and the field.

The cases of issue 6: a listener port clash, a server group naming a missing ECS instance, a
primary/secondary group with other than two servers or on an HTTP listener, and an HTTPS listener
whose certificate Secret is missing or is not a certificate.
"""

from __future__ import annotations

import pytest
from test_validation import run

ECS = """\
apiVersion: acknet.io/v1
kind: ECSInstance
metadata: {name: e1}
spec: {vswitch: node-h, securityGroups: [web-sg]}
---
apiVersion: acknet.io/v1
kind: ECSInstance
metadata: {name: e2}
spec: {vswitch: node-h, securityGroups: [web-sg]}
---
apiVersion: v1
kind: Secret
metadata: {name: opaque, namespace: shop}
type: Opaque
data: {password: cGFzcw==}
---
apiVersion: v1
kind: Secret
metadata: {name: half, namespace: shop}
type: kubernetes.io/tls
data: {tls.crt: bm90IGEgY2VydA==, tls.key: LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCg==}
---
apiVersion: acknet.io/v1
kind: LoadBalancer
metadata: {name: lb}
"""


def one(protocol: str, fields: str) -> str:
    """A load balancer with one listener on port 80 of the default group, with ``fields`` added."""
    return (
        "spec:\n  backendServers: [{ecs: e1}]\n"
        f"  listeners: [{{protocol: {protocol}, listenerPort: 80, backendServerPort: 80, {fields}}}]\n"
    )


CASES = [
    (
        "listener-port-clash",
        "spec:\n  backendServers: [{ecs: e1}]\n  listeners:\n"
        "  - {protocol: http, listenerPort: 80, backendServerPort: 80}\n"
        "  - {protocol: https, listenerPort: 80, backendServerPort: 80, certificate: {secret: shop/opaque}}\n",
        "spec.listeners[1].listenerPort",
        "port 80/tcp is already taken by listener 0",
    ),
    (
        "vserver-group-missing-ecs",
        "spec:\n  vServerGroups: [{name: g, servers: [{ecs: e1, port: 80}, {ecs: ghost, port: 80}]}]\n"
        "  listeners: [{protocol: tcp, listenerPort: 80, vServerGroup: g}]\n",
        "spec.vServerGroups[0].servers[1].ecs",
        "ghost",
    ),
    (
        "default-group-missing-ecs",
        "spec:\n  backendServers: [{ecs: ghost}]\n"
        "  listeners: [{protocol: http, listenerPort: 80, backendServerPort: 80}]\n",
        "spec.backendServers[0].ecs",
        "ghost",
    ),
    (
        "primary-secondary-three-servers",
        "spec:\n  masterSlaveServerGroups:\n  - name: ms\n    servers:\n"
        "    - {ecs: e1, port: 80, serverType: Master}\n    - {ecs: e2, port: 80, serverType: Slave}\n"
        "    - {ecs: e2, port: 81, serverType: Slave}\n"
        "  listeners: [{protocol: tcp, listenerPort: 80, masterSlaveServerGroup: ms}]\n",
        "spec.masterSlaveServerGroups[0].servers",
        "exactly two servers, one Master and one Slave; got 3",
    ),
    (
        "primary-secondary-on-http",
        "spec:\n  masterSlaveServerGroups:\n  - name: ms\n    servers:\n"
        "    - {ecs: e1, port: 80, serverType: Master}\n    - {ecs: e2, port: 80, serverType: Slave}\n"
        "  listeners: [{protocol: http, listenerPort: 80, masterSlaveServerGroup: ms}]\n",
        "spec.listeners[0].masterSlaveServerGroup",
        "tcp and udp listeners only",
    ),
    (
        "certificate-secret-missing",
        "spec:\n  backendServers: [{ecs: e1}]\n"
        "  listeners: [{protocol: https, listenerPort: 443, backendServerPort: 80, certificate: {secret: shop/nope}}]\n",
        "spec.listeners[0].certificate.secret",
        "Secret shop/nope does not exist",
    ),
    (
        "certificate-secret-opaque",
        "spec:\n  backendServers: [{ecs: e1}]\n"
        "  listeners: [{protocol: https, listenerPort: 443, backendServerPort: 80, certificate: {secret: shop/opaque}}]\n",
        "spec.listeners[0].certificate.secret",
        "Secret shop/opaque is not a certificate: type is 'Opaque'",
    ),
    (
        "certificate-secret-no-pem",
        "spec:\n  backendServers: [{ecs: e1}]\n"
        "  listeners: [{protocol: https, listenerPort: 443, backendServerPort: 80, certificate: {secret: shop/half}}]\n",
        "spec.listeners[0].certificate.secret",
        "holds no PEM certificate",
    ),
    (
        "https-without-certificate",
        "spec:\n  backendServers: [{ecs: e1}]\n  listeners: [{protocol: https, listenerPort: 443, backendServerPort: 80}]\n",
        "spec.listeners[0].certificate",
        "an https listener needs a certificate",
    ),
    (
        "sch-on-http",
        "spec:\n  backendServers: [{ecs: e1}]\n"
        "  listeners: [{protocol: http, listenerPort: 80, backendServerPort: 80, scheduler: sch}]\n",
        "spec.listeners[0].scheduler",
        "http(s) allow wrr, wlc, rr",
    ),
    (
        "sticky-on-tcp",
        one("tcp", 'stickySession: "on", stickySessionType: insert, cookieTimeout: 60'),
        "spec.listeners[0].stickySession",
        "for http and https listeners",
    ),
    (
        "sticky-without-type",
        one("http", 'stickySession: "on"'),
        "spec.listeners[0].stickySessionType",
        "required with stickySession: on",
    ),
    (
        "sticky-insert-without-timeout",
        one("http", 'stickySession: "on", stickySessionType: insert'),
        "spec.listeners[0].cookieTimeout",
        "needs a cookieTimeout",
    ),
    (
        "sticky-insert-timeout-range",
        one("http", 'stickySession: "on", stickySessionType: insert, cookieTimeout: 86401'),
        "spec.listeners[0].cookieTimeout",
        "86401 is outside 1-86400 seconds",
    ),
    (
        "sticky-server-with-timeout",
        one("http", 'stickySession: "on", stickySessionType: server, cookie: sid, cookieTimeout: 60'),
        "spec.listeners[0].cookieTimeout",
        "only stickySessionType insert",
    ),
    (
        "sticky-server-without-cookie",
        one("http", 'stickySession: "on", stickySessionType: server'),
        "spec.listeners[0].cookie",
        "needs the name of the backend's cookie",
    ),
    (
        "sticky-server-bad-cookie",
        one("http", 'stickySession: "on", stickySessionType: server, cookie: "a;b"'),
        "spec.listeners[0].cookie",
        "is not a cookie name",
    ),
    (
        "sticky-insert-with-cookie",
        one("http", 'stickySession: "on", stickySessionType: insert, cookieTimeout: 60, cookie: sid'),
        "spec.listeners[0].cookie",
        "only stickySessionType server",
    ),
    (
        "sticky-fields-while-off",
        one("http", "stickySessionType: insert"),
        "spec.listeners[0].stickySessionType",
        "only with stickySession: on",
    ),
]


@pytest.mark.parametrize(("spec", "field", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_load_balancer_input_names_object_and_field(spec: str, field: str, message: str) -> None:
    errors = run(ECS + spec)
    found = [d for d in errors if d.ref == "LoadBalancer/lb" and d.field == field and message in d.message]
    assert found, "\n".join(str(d) for d in errors) or "no error"
    assert str(found[0]).startswith("net.yaml:")


def test_a_good_layer_7_load_balancer_is_valid() -> None:
    spec = (
        "spec:\n  backendServers: [{ecs: e1}, {ecs: e2, weight: 0}]\n"
        "  listeners:\n  - {protocol: http, listenerPort: 80, backendServerPort: 8080, scheduler: wlc}\n"
        "  - {protocol: tcp, listenerPort: 81, backendServerPort: 8080, scheduler: wlc}\n"
        '  - {protocol: http, listenerPort: 82, backendServerPort: 8080, stickySession: "on",'
        " stickySessionType: insert, cookieTimeout: 86400}\n"
        '  - {protocol: http, listenerPort: 83, backendServerPort: 8080, stickySession: "on",'
        " stickySessionType: server, cookie: session-id}\n"
    )
    assert [
        str(d) for d in run(ECS.replace("name: half", "name: fine") + spec) if "LoadBalancer" in d.ref
    ] == []
