"""Services: kube-dns, ClusterIP and NodePort allocation, given values, stickiness, port defaults."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from acknet.errors import InvalidInput

PORT_80 = ("ports: [{port: 80}]",)


def ip(text: str) -> IPv4Address:
    return IPv4Address(text)


def services(planned) -> dict:
    return {s.key: s for s in planned.services}


def cluster_with(docs, *spec: str) -> str:
    return docs.CLOUD + docs.cluster(docs.pool(count=1), spec=("podVSwitches: [pod-h]", *spec))


def svc(docs, name: str, *spec: str, namespace: str = "default") -> str:
    return docs.service(name, namespace=namespace, spec=spec or PORT_80)


def test_kube_dns_is_always_planned(docs, plan_yaml) -> None:
    planned = plan_yaml(cluster_with(docs))
    dns = services(planned)["kube-system/kube-dns"]
    assert (dns.type, dns.cluster_ip, dict(dns.selector)) == (
        "ClusterIP",
        ip("172.21.0.10"),
        {"k8s-app": "kube-dns"},
    )
    assert [(p.name, p.port, p.protocol, p.target_port) for p in dns.ports] == [
        ("dns", 53, "UDP", 53),
        ("dns-tcp", 53, "TCP", 53),
        ("metrics", 9153, "TCP", 9153),
    ]
    assert planned.cluster_dns == {"ack": ip("172.21.0.10")}


@pytest.mark.parametrize(
    ("cidr", "dns"),
    [
        pytest.param("172.21.0.0/20", "172.21.0.10", id="ack-api-example"),
        pytest.param("172.19.0.0/20", "172.19.0.10", id="ack-auto-vpc-default"),
        pytest.param("10.96.0.0/12", "10.96.0.10", id="terway-helm-default"),
    ],
)
def test_cluster_dns_is_the_dot_10_of_the_service_cidr(docs, plan_yaml, cidr: str, dns: str) -> None:
    assert plan_yaml(cluster_with(docs, f"serviceCidr: {cidr}")).cluster_dns == {"ack": ip(dns)}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param((), "172.21.0.10", id="without-clusterIP-gets-dot-10"),
        pytest.param(("clusterIP: 172.21.0.53",), "172.21.0.53", id="given-clusterIP-is-the-cluster-dns"),
    ],
)
def test_kube_dns_from_the_files_replaces_the_default(docs, plan_yaml, given, expected) -> None:
    text = cluster_with(docs) + svc(
        docs,
        "kube-dns",
        "selector: {k8s-app: coredns}",
        "ports: [{name: dns, port: 53, protocol: UDP}]",
        *given,
        namespace="kube-system",
    )
    planned = plan_yaml(text)
    (dns,) = [s for s in planned.services if s.name == "kube-dns"]
    assert (dns.cluster_ip, dict(dns.selector), len(dns.ports)) == (ip(expected), {"k8s-app": "coredns"}, 1)
    assert planned.cluster_dns == {"ack": ip(expected)}


def test_dot_1_is_never_handed_out_and_a_full_range_is_an_error(docs, plan_yaml) -> None:
    # /28: addresses 1-14 usable; .1 is the kubernetes Service, .10 kube-dns, 12 remain.
    base = cluster_with(docs, "serviceCidr: 10.100.0.0/28")
    twelve = "".join(svc(docs, f"s{i:02d}") for i in range(12))
    allocated = {s.cluster_ip for s in plan_yaml(base + twelve).services if s.name != "kube-dns"}
    assert allocated == {ip(f"10.100.0.{i}") for i in range(2, 15) if i != 10}
    with pytest.raises(InvalidInput, match=r"failed to allocate a serviceIP: range 10.100.0.0/28 is full"):
        plan_yaml(base + twelve + svc(docs, "one-too-many"))


def test_given_cluster_ips_are_taken_before_any_is_allocated(docs, plan_yaml) -> None:
    base = cluster_with(docs)
    hashed = services(plan_yaml(base + svc(docs, "a")))["default/a"].cluster_ip
    # "b" sorts after "a" but asks for the very address "a" would hash to: it gets it, "a" moves.
    planned = services(
        plan_yaml(base + svc(docs, "a") + svc(docs, "b", "clusterIP: " + str(hashed), *PORT_80))
    )
    assert planned["default/b"].cluster_ip == hashed
    assert planned["default/a"].cluster_ip not in (hashed, None)


@pytest.mark.parametrize(
    ("spec", "cluster_ip", "headless", "external_name"),
    [
        pytest.param(("clusterIP: None", *PORT_80), None, True, None, id="headless"),
        pytest.param(
            ("type: ExternalName", "externalName: db.example.com"),
            None,
            False,
            "db.example.com",
            id="external-name",
        ),
    ],
)
def test_services_without_a_cluster_ip(docs, plan_yaml, spec, cluster_ip, headless, external_name) -> None:
    planned = services(plan_yaml(cluster_with(docs) + svc(docs, "x", *spec)))["default/x"]
    assert (planned.cluster_ip, planned.headless, planned.external_name) == (
        cluster_ip,
        headless,
        external_name,
    )


def test_hashed_addresses_do_not_move_when_other_services_come_and_go(docs, plan_yaml) -> None:
    base = cluster_with(docs)
    first = services(plan_yaml(base + "".join(svc(docs, f"s{i:02d}") for i in range(20))))
    names = [f"s{i:02d}" for i in range(10, 20)] + [f"t{i:02d}" for i in range(10)]
    second = services(plan_yaml(base + "".join(svc(docs, n) for n in names)))
    assert all(
        second[f"default/s{i:02d}"].cluster_ip == first[f"default/s{i:02d}"].cluster_ip for i in range(10, 20)
    )
    assert all(IPv4Network("172.21.0.0/20").supernet_of(IPv4Network(s.cluster_ip)) for s in second.values())


def test_previous_allocations_are_kept(docs, plan_yaml) -> None:
    base = cluster_with(docs)
    pinned = svc(
        docs, "web", "type: NodePort", "clusterIP: 172.21.9.9", "ports: [{port: 80, nodePort: 31000}]"
    )
    before = plan_yaml(base + pinned)
    # The given values are gone from the files; the Service keeps what it was allocated (an update,
    # not a new Service), where a fresh plan would hash it elsewhere.
    loose = svc(docs, "web", "type: NodePort", "ports: [{port: 80}]")
    kept = services(plan_yaml(base + loose, before))["default/web"]
    fresh = services(plan_yaml(base + loose))["default/web"]
    assert (kept.cluster_ip, kept.ports[0].node_port) == (ip("172.21.9.9"), 31000)
    assert (fresh.cluster_ip, fresh.ports[0].node_port) != (ip("172.21.9.9"), 31000)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(("type: ClusterIP", "ports: [{port: 80}]"), [None], id="cluster-ip-has-none"),
        pytest.param(
            ("type: NodePort", "ports: [{name: a, port: 80}, {name: b, port: 443, nodePort: 30443}]"),
            ["auto", 30443],
            id="given-is-honoured",
        ),
        pytest.param(
            ("type: LoadBalancer", "ports: [{port: 80}]"), ["auto"], id="load-balancer-gets-node-ports"
        ),
        pytest.param(
            (
                "type: NodePort",
                "ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53, protocol: TCP}]",
            ),
            ["auto", "same"],
            id="same-port-number-shares-one",
        ),
        pytest.param(
            (
                "type: NodePort",
                "ports: [{name: dns, port: 53, protocol: UDP},"
                " {name: dns-tcp, port: 53, protocol: TCP, nodePort: 30053}]",
            ),
            [30053, 30053],
            id="shares-a-given-one-too",
        ),
    ],
)
def test_node_ports(docs, plan_yaml, spec, expected) -> None:
    ports = services(plan_yaml(cluster_with(docs) + svc(docs, "x", *spec)))["default/x"].ports
    got = [p.node_port for p in ports]
    for n, (value, want) in enumerate(zip(got, expected, strict=True)):
        if want == "auto":
            assert value is not None and 30000 <= value <= 32767
        elif want == "same":
            assert value == got[n - 1]
        else:
            assert value == want


def test_node_ports_are_unique_across_services(docs, plan_yaml) -> None:
    text = cluster_with(docs) + "".join(
        svc(docs, f"n{i}", "type: NodePort", "ports: [{port: 80}]") for i in range(200)
    )
    ports = [p.node_port for s in plan_yaml(text).services for p in s.ports if p.node_port is not None]
    assert len(ports) == len(set(ports)) == 200


@pytest.mark.parametrize(
    ("port", "target"),
    [
        pytest.param("{port: 80}", 80, id="defaults-to-port"),
        pytest.param("{port: 80, targetPort: 8080}", 8080, id="number"),
        pytest.param("{port: 80, targetPort: http}", "http", id="name-resolved-per-pod-later"),
    ],
)
def test_target_port(docs, plan_yaml, port: str, target) -> None:
    (planned,) = services(plan_yaml(cluster_with(docs) + svc(docs, "x", f"ports: [{port}]")))[
        "default/x"
    ].ports
    assert planned.target_port == target


@pytest.mark.parametrize(
    ("spec", "timeout"),
    [
        pytest.param((), None, id="no-affinity"),
        pytest.param(("sessionAffinity: ClientIP",), 10800, id="client-ip-default-3h"),
        pytest.param(
            ("sessionAffinity: ClientIP", "sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}"),
            600,
            id="client-ip-configured",
        ),
    ],
)
def test_session_affinity_timeout(docs, plan_yaml, spec, timeout) -> None:
    planned = services(plan_yaml(cluster_with(docs) + svc(docs, "x", *spec, *PORT_80)))["default/x"]
    assert planned.session_affinity_timeout == timeout


def test_fields_carried_over(docs, plan_yaml) -> None:
    text = cluster_with(docs) + svc(
        docs,
        "x",
        "type: LoadBalancer",
        "selector: {}",
        "externalTrafficPolicy: Local",
        "internalTrafficPolicy: Local",
        *PORT_80,
    )
    planned = services(plan_yaml(text))["default/x"]
    # An empty selector does not survive the API server (omitempty): no endpoints are managed.
    assert planned.selector is None
    assert (planned.external_traffic_policy, planned.internal_traffic_policy, planned.cluster) == (
        "Local",
        "Local",
        "ack",
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("10.0.0.1", "provided IP is outside the service CIDR", id="outside-cidr"),
        pytest.param("not-an-ip", "is not an IPv4 address", id="garbage"),
        pytest.param("172.21.0.10", "provided IP is already allocated", id="the-dns-address"),
    ],
)
def test_unusable_given_cluster_ips_are_invalid(docs, plan_yaml, value: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        plan_yaml(cluster_with(docs) + svc(docs, "x", f"clusterIP: '{value}'", *PORT_80))
