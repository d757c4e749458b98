"""Endpoints follow readiness: not-ready and terminating pods get no new connections.

Readiness is an input of ``plan()`` (the daemon observes the probes); the slices mark such pods'
endpoints not ready, and kube-proxy's table and the cluster DNS leave them out.
"""

from __future__ import annotations

import dataclasses

import pytest

from acknet.controllers.endpoints import with_endpoint_conditions
from acknet.controllers.plan import plan
from acknet.dataplane.render.dns import render_dns_records
from acknet.dataplane.render.kube_proxy import render_kube_proxy

WEB = ("selector: {app: web}", "ports: [{name: web, port: 80, targetPort: http}]")
HEADLESS = ("clusterIP: None", *WEB)


def files(docs) -> str:
    return (
        docs.CLOUD
        + docs.cluster(docs.pool(count=2))
        + docs.deployment("web", 3)
        + docs.service("web", spec=WEB)
        + docs.service("web-headless", spec=HEADLESS)
    )


def conditions(planned, service: str = "web") -> dict[str, tuple[bool, bool, bool]]:
    return {
        ep.pod: (ep.ready, ep.serving, ep.terminating)
        for sl in planned.endpoint_slices
        if sl.service == service
        for ep in sl.endpoints
    }


def test_every_pod_is_ready_by_default(docs, load) -> None:
    planned = plan(load(files(docs)))
    assert set(conditions(planned).values()) == {(True, True, False)}


def test_not_ready_pods_stay_in_the_slice_not_ready(docs, load) -> None:
    resources = load(files(docs))
    first = plan(resources)
    victim = first.pods[0].key
    planned = plan(resources, previous=first, not_ready=frozenset({victim}))
    got = conditions(planned)
    assert got.pop(victim) == (False, False, False)
    assert set(got.values()) == {(True, True, False)}
    # Readiness changes no address.
    assert [(p.key, p.ip) for p in planned.pods] == [(p.key, p.ip) for p in first.pods]
    assert [(s.key, s.cluster_ip) for s in planned.services] == [
        (s.key, s.cluster_ip) for s in first.services
    ]


def test_with_endpoint_conditions_equals_a_replan(docs, load) -> None:
    resources = load(files(docs))
    first = plan(resources)
    victim = first.pods[1].key
    replanned = plan(resources, previous=first, not_ready=frozenset({victim}))
    assert with_endpoint_conditions(first.endpoint_slices, not_ready={victim}) == replanned.endpoint_slices
    # And back: everything ready again, the very same objects where nothing changed.
    back = with_endpoint_conditions(replanned.endpoint_slices)
    assert back == first.endpoint_slices
    untouched = with_endpoint_conditions(first.endpoint_slices)
    assert all(a is b for a, b in zip(untouched, first.endpoint_slices, strict=True))


def test_terminating_pods_are_serving_not_ready(docs, load) -> None:
    planned = plan(load(files(docs)))
    victim = planned.pods[0].key
    slices = with_endpoint_conditions(planned.endpoint_slices, terminating={victim})
    got = {ep.pod: (ep.ready, ep.serving, ep.terminating) for sl in slices for ep in sl.endpoints}
    assert got[victim] == (False, True, True)


def test_hand_written_slices_are_left_as_written(docs, load) -> None:
    text = files(docs) + docs.service("manual", spec=("ports: [{port: 80}]",))
    text += """
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: manual-1, namespace: default, labels: {kubernetes.io/service-name: manual}}
addressType: IPv4
ports: [{port: 8080}]
endpoints:
- addresses: [192.168.0.200]
  conditions: {ready: false}
"""
    planned = plan(load(text))
    (manual,) = [s for s in planned.endpoint_slices if s.service == "manual"]
    assert with_endpoint_conditions((manual,), not_ready={"default/x"}) == (manual,)
    assert manual.endpoints[0].ready is False


@pytest.mark.parametrize("how", ["not-ready", "terminating"])
def test_kube_proxy_and_dns_leave_the_pod_out(docs, load, how: str) -> None:
    resources = load(files(docs))
    planned = plan(resources)
    victim = planned.pods[0]
    assert victim.ip is not None
    marked = {"not-ready": {"not_ready": {victim.key}}, "terminating": {"terminating": {victim.key}}}[how]
    changed = dataclasses.replace(
        planned, endpoint_slices=with_endpoint_conditions(planned.endpoint_slices, **marked)
    )
    node = planned.pods[1].node
    assert node is not None
    before = render_kube_proxy(planned, node, "ack", "t")
    after = render_kube_proxy(changed, node, "ack", "t")
    assert f"dnat to {victim.ip}:8080" in before
    assert f"dnat to {victim.ip}:8080" not in after
    assert after.count("dnat to ") == before.count("dnat to ") - 1  # the headless Service has no rules
    dns_before = render_dns_records(planned, "ack")
    dns_after = render_dns_records(changed, "ack")
    name = "web-headless.default.svc.cluster.local."
    assert ("A", str(victim.ip)) in dns_before[name]
    assert ("A", str(victim.ip)) not in dns_after[name]


def test_the_only_endpoint_terminating_still_serves(docs, load) -> None:
    """KEP-1669: with no ready endpoint, serving terminating ones are used rather than rejecting."""
    text = docs.CLOUD + docs.cluster(docs.pool(count=1)) + docs.deployment("web", 1)
    planned = plan(load(text + docs.service("web", spec=WEB)))
    (pod,) = planned.pods
    assert pod.node is not None and pod.ip is not None
    terminating = with_endpoint_conditions(planned.endpoint_slices, terminating={pod.key})
    not_ready = with_endpoint_conditions(planned.endpoint_slices, not_ready={pod.key})

    def table(slices) -> str:
        return render_kube_proxy(dataclasses.replace(planned, endpoint_slices=slices), pod.node, "ack", "t")

    assert f"dnat to {pod.ip}:8080" in table(terminating)
    rejecting = table(not_ready)
    assert f"dnat to {pod.ip}:8080" not in rejecting
    assert "goto reject-chain" in rejecting.split("no-endpoint-services", 1)[1]
