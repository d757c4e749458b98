"""EndpointSlices: selection, per-pod targetPort resolution, grouping, chunking, names, hand-written."""

from __future__ import annotations

import re
from ipaddress import IPv4Address

import pytest

from acknet.controllers.naming import ALPHANUMS
from acknet.controllers.state import EndpointAddress, EndpointSlicePort

WEB_SERVICE = ("selector: {app: web}", "ports: [{name: web, port: 80, targetPort: http}]")


def slices_of(planned, service: str, namespace: str = "default") -> list:
    return [s for s in planned.endpoint_slices if (s.namespace, s.service) == (namespace, service)]


def base(docs, nodes: int = 2) -> str:
    return docs.CLOUD + docs.cluster(docs.pool(count=nodes))


def test_selected_running_pods_become_one_slice(docs, plan_yaml) -> None:
    planned = plan_yaml(base(docs) + docs.deployment("web", 3) + docs.service("web", spec=WEB_SERVICE))
    (slice_,) = slices_of(planned, "web")
    assert re.fullmatch(rf"web-[{ALPHANUMS}]{{5}}", slice_.name)
    assert (slice_.cluster, slice_.managed) == ("ack", True)
    assert slice_.ports == (EndpointSlicePort("web", 8080, "TCP"),)
    assert set(slice_.endpoints) == {
        EndpointAddress(ip=p.ip, pod=p.key, node=p.node, ready=True) for p in planned.pods
    }


@pytest.mark.parametrize(
    ("workloads", "selector", "selected"),
    [
        pytest.param(
            lambda d: d.deployment("web", 2) + d.deployment("web", 2, namespace="other"),
            "{app: web}",
            2,
            id="same-labels-other-namespace-left-out",
        ),
        pytest.param(
            lambda d: (
                d.deployment("web", 2, labels="tier: front") + d.deployment("web2", 2, labels="tier: back")
            ),
            "{tier: front}",
            2,
            id="selector-subset-of-labels",
        ),
        pytest.param(
            lambda d: d.pod("a", labels="{app: web, tier: front}") + d.pod("b", labels="{app: web}"),
            "{app: web, tier: front}",
            1,
            id="every-selector-label-must-match",
        ),
        pytest.param(
            lambda d: (
                d.deployment("web", 1)
                + d.pod("stuck", labels="{app: web}", spec=("nodeSelector: {disk: ssd}",))
            ),
            "{app: web}",
            1,
            id="pending-pods-left-out",
        ),
    ],
)
def test_which_pods_are_endpoints(docs, plan_yaml, workloads, selector: str, selected: int) -> None:
    text = (
        base(docs)
        + workloads(docs)
        + docs.service("s", spec=(f"selector: {selector}", "ports: [{port: 80}]"))
    )
    endpoints = [e for s in slices_of(plan_yaml(text), "s") for e in s.endpoints]
    assert len(endpoints) == selected
    assert all(e.pod.startswith("default/") for e in endpoints)


def test_named_target_ports_resolve_per_pod_and_group_the_slices(docs, plan_yaml) -> None:
    workloads = (
        docs.deployment("a", 2, labels="role: mix", ports="[{name: http, containerPort: 8080}]")
        + docs.deployment("b", 1, labels="role: mix", ports="[{name: http, containerPort: 9090}]")
        + docs.deployment("c", 1, labels="role: mix", ports="[{name: other, containerPort: 7070}]")
        # Same name, other protocol: FindPort wants both to match.
        + docs.deployment(
            "d", 1, labels="role: mix", ports="[{name: http, containerPort: 5353, protocol: UDP}]"
        )
    )
    service = docs.service(
        "mix",
        spec=(
            "selector: {role: mix}",
            "ports: [{name: web, port: 80, targetPort: http}, {name: admin, port: 81, targetPort: 9999}]",
        ),
    )
    planned = plan_yaml(base(docs) + workloads + service)
    owner = {p.key: p.owner.removeprefix("Deployment/") for p in planned.pods}
    groups = {s.ports: sorted(owner[e.pod] for e in s.endpoints) for s in slices_of(planned, "mix")}
    admin = EndpointSlicePort("admin", 9999, "TCP")
    assert groups == {
        (EndpointSlicePort("web", 8080, "TCP"), admin): ["a", "a"],
        (EndpointSlicePort("web", 9090, "TCP"), admin): ["b"],
        (admin,): ["c", "d"],  # left out of the "web" port only
    }


def test_slices_hold_at_most_100_endpoints(docs, plan_yaml) -> None:
    text = base(docs, nodes=6) + docs.deployment("web", 250) + docs.service("web", spec=WEB_SERVICE)
    slices = slices_of(plan_yaml(text), "web")
    assert sorted(len(s.endpoints) for s in slices) == [50, 100, 100]
    assert len({s.name for s in slices}) == 3
    assert len({e.ip for s in slices for e in s.endpoints}) == 250


def test_a_service_selecting_nothing_gets_an_empty_placeholder_slice(docs, plan_yaml) -> None:
    planned = plan_yaml(
        base(docs) + docs.service("lonely", spec=("selector: {app: nobody}", "ports: [{port: 80}]"))
    )
    (slice_,) = slices_of(planned, "lonely")
    assert (slice_.endpoints, slice_.ports, slice_.managed) == ((), (), True)
    (dns,) = slices_of(planned, "kube-dns", "kube-system")
    assert dns.endpoints == ()


def test_hand_written_slices_are_carried_over(docs, plan_yaml) -> None:
    manual = """
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  ports: [{name: db, port: 3306}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-manual
  labels: {kubernetes.io/service-name: db}
addressType: IPv4
endpoints:
- addresses: [192.168.8.10]
  nodeName: db-host
- addresses: [192.168.8.11]
  conditions: {ready: false, terminating: true}
ports: [{name: db, port: 3306}]
"""
    (slice_,) = slices_of(plan_yaml(base(docs) + manual), "db")
    assert (slice_.name, slice_.managed, slice_.ports) == (
        "db-manual",
        False,
        (EndpointSlicePort("db", 3306, "TCP"),),
    )
    assert slice_.endpoints == (
        EndpointAddress(IPv4Address("192.168.8.10"), pod=None, node="db-host"),
        EndpointAddress(
            IPv4Address("192.168.8.11"), pod=None, node=None, ready=False, serving=False, terminating=True
        ),
    )


def test_external_name_services_get_no_slices(docs, plan_yaml) -> None:
    spec = ("type: ExternalName", "externalName: example.com", "selector: {app: web}")
    planned = plan_yaml(base(docs) + docs.deployment("web", 1) + docs.service("ext", spec=spec))
    assert slices_of(planned, "ext") == []


def test_host_network_pods_are_endpoints_at_their_node_address(docs, plan_yaml) -> None:
    pod = docs.pod("agent", labels="{app: agent}", spec=("hostNetwork: true",))
    service = docs.service("agent", spec=("selector: {app: agent}", "ports: [{port: 9100}]"))
    planned = plan_yaml(base(docs) + pod + service)
    (slice_,) = slices_of(planned, "agent")
    node = next(i for i in planned.instances if i.name == slice_.endpoints[0].node)
    assert slice_.endpoints[0].ip == node.primary_ip


def test_slice_names_are_deterministic(docs, plan_yaml) -> None:
    text = base(docs) + docs.deployment("web", 3) + docs.service("web", spec=WEB_SERVICE)
    assert [s.name for s in plan_yaml(text).endpoint_slices] == [
        s.name for s in plan_yaml(text).endpoint_slices
    ]
