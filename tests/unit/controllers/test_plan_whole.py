"""plan() as a whole: deterministic, a fixpoint given itself, minimal change on re-apply, several clusters."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from acknet.controllers.plan import plan
from acknet.model.documents import Source
from acknet.model.load import load_resources

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
EXAMPLE_DIRS = sorted(p for p in EXAMPLES.iterdir() if p.is_dir()) if EXAMPLES.is_dir() else []


def example_sources(folder: Path) -> list[Source]:
    return [Source(str(p), p.read_text()) for p in sorted(folder.glob("*.yaml"))]


@pytest.mark.parametrize("folder", EXAMPLE_DIRS, ids=[p.name for p in EXAMPLE_DIRS])
def test_examples_plan_deterministically(folder: Path) -> None:
    loaded = load_resources(example_sources(folder))
    assert not loaded.errors
    first = plan(loaded.resources)
    assert plan(loaded.resources) == first
    assert plan(loaded.resources, first) == first
    assert set(first.cluster_dns) == set(loaded.resources.clusters)


PRINT_PLAN = """
import sys
from pathlib import Path
from acknet.controllers.plan import plan
from acknet.model.documents import Source
from acknet.model.load import load_resources
sources = [Source(str(p), p.read_text()) for p in sorted(Path(sys.argv[1]).glob("*.yaml"))]
p = plan(load_resources(sources).resources)
print(repr((p.vswitches, p.instances, p.pods, p.services, p.endpoint_slices, p.routes, p.slb_addresses)))
"""


@pytest.mark.skipif(not EXAMPLE_DIRS, reason="no examples")
def test_plan_does_not_depend_on_the_hash_seed() -> None:
    """Sets of strings iterate in a per-process order; nothing in a plan may follow it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    outputs = {
        subprocess.run(
            [sys.executable, "-c", PRINT_PLAN, str(EXAMPLE_DIRS[-1])],
            env={**env, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1


def test_reapplying_a_change_changes_only_what_changed(docs, plan_yaml) -> None:
    service = "selector: {app: web}", "ports: [{port: 80, targetPort: http}]"
    base = docs.CLOUD + docs.cluster(docs.pool(count=3)) + docs.deployment("web", 5)
    before = plan_yaml(base + docs.deployment("old", 2) + docs.service("web", spec=service))
    after = plan_yaml(
        base
        + docs.deployment("new", 4)
        + docs.service("web", spec=service)
        + docs.service("new", spec=service),
        before,
    )
    pods_after = {p.key: p for p in after.pods}
    assert all(pods_after[p.key] == p for p in before.pods if p.owner == "Deployment/web")
    assert {p.owner for p in after.pods if p.key not in {q.key for q in before.pods}} == {"Deployment/new"}
    services_after = {s.key: s for s in after.services}
    assert all(services_after[s.key] == s for s in before.services)
    assert [i.primary_ip for i in after.instances] == [i.primary_ip for i in before.instances]
    assert all(a.enis[0] == b.enis[0] for a, b in zip(after.instances, before.instances, strict=True))


def test_two_clusters_share_a_pod_vswitch_without_sharing_addresses(docs, plan_yaml) -> None:
    text = (
        docs.CLOUD
        + docs.cluster(docs.pool(count=2), name="blue")
        + docs.cluster(
            docs.pool(count=2, instance_type="ecs.g7.large"),
            name="green",
            spec=("podVSwitches: [pod-h]", "serviceCidr: 172.22.0.0/20"),
        )
        + docs.deployment("web", 20, cluster="blue")
        + docs.deployment("web", 20, cluster="green")
    )
    planned = plan_yaml(text)
    assert Counter(p.cluster for p in planned.pods if p.phase == "Running") == {"blue": 20, "green": 20}
    addresses = [a for i in planned.instances for e in i.enis for a in e.ips]
    assert len(addresses) == len(set(addresses))
    assert {p.node.rsplit("-", 2)[0] for p in planned.pods} == {"blue", "green"}
    assert {k: str(v) for k, v in planned.cluster_dns.items()} == {
        "blue": "172.21.0.10",
        "green": "172.22.0.10",
    }


def test_kubernetes_only_files_get_the_default_cloud(load) -> None:
    text = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 100
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web}]}
"""
    planned = plan(load(text))
    assert all(p.phase == "Running" for p in planned.pods)
    assert len([p for p in planned.pods if p.namespace == "default"]) == 100
    # ACK's default add-on: CoreDNS, two replicas in kube-system behind kube-dns.
    assert len([p for p in planned.pods if p.owner == "Deployment/coredns"]) == 2
    assert {i.node_pool for i in planned.instances} == {"default"}
    assert planned.cluster_dns == {"ack": planned.services[0].cluster_ip}
