"""Retired pods: a deleted bare pod stays gone; a Deployment's replica comes back under a new name."""

from __future__ import annotations

from acknet.controllers.plan import plan
from acknet.model.build import build_resources
from acknet.model.documents import Source

FILES = """\
apiVersion: v1
kind: Pod
metadata: {name: solo, namespace: x}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: x}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
"""


def test_retired_replica_is_replaced_and_bare_pod_removed() -> None:
    resources = build_resources([Source("f.yaml", FILES)])
    before = plan(resources)
    web = sorted(p.name for p in before.pods if p.owner == "Deployment/web")
    gone = f"x/{web[0]}"
    after = plan(resources, previous=before, retired=frozenset({gone, "x/solo"}))
    names = sorted(p.name for p in after.pods)
    assert "solo" not in names
    assert web[0] not in names and web[1] in names
    replicas = [p for p in after.pods if p.owner == "Deployment/web"]
    assert len(replicas) == 2  # the Deployment keeps its count
    kept = next(p for p in after.pods if p.name == web[1])
    assert kept.ip == next(p.ip for p in before.pods if p.name == web[1])  # the survivor stays put
    assert plan(resources, previous=after, retired=frozenset({gone, "x/solo"})) == after
