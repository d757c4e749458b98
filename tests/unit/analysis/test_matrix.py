"""The all-pairs matrix (analysis/matrix.py) says what the per-pair path says, pair by pair.

Every world the per-pair tests build (Kubernetes and Calico policies with Deny, Pass and Log, network
sets, exclusive ENIs, Flannel with VPC routes and with vxlan, the examples, a generated cluster and
the upstream conformance corpus) is checked whole: for every source, destination and port, the
matrix's bit equals ``Reachability.verdict(...).allowed``, its counts equal the per-pair counts, and
``verdicts()`` gives today's verdicts with today's reasons.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import pytest

from acknet.analysis.endpoints import Endpoint, EndpointIndex, resolve_destinations
from acknet.analysis.matrix import ReachabilityMatrix
from acknet.analysis.reachability import PortSpec, Reachability
from acknet.cli.check import write_json, write_matrix
from acknet.controllers.plan import plan
from acknet.controllers.state import Plan, Protocol
from acknet.model.build import build_resources
from acknet.model.documents import Source
from acknet.store.files import read_sources

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def _module(name: str) -> ModuleType:
    path = HERE / f"{name}.py" if (HERE / f"{name}.py").exists() else REPO / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_matrix_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _same_answers(planned: Plan, ports: Sequence[PortSpec] | None = None) -> int:
    """Every pod, node and instance to every other: the matrix against the per-pair path."""
    index = EndpointIndex.of(planned)
    endpoints = [*index.pods.values(), *index.instances.values()]
    reach = Reachability(planned)
    matrix = ReachabilityMatrix(planned, endpoints, endpoints, ports)
    wrong: list[str] = []
    allowed = total = 0
    for src, dst, port, protocol in matrix.pairs():
        expected = reach.verdict(src, dst, port, protocol)
        total += 1
        allowed += expected.allowed
        if matrix.allowed(src, dst, port, protocol) != expected.allowed:
            wrong.append(f"{src.name} -> {dst.name} {port}/{protocol}: per pair {expected.reasons}")
    assert not wrong, f"{len(wrong)} of {total} differ:\n" + "\n".join(wrong[:20])
    assert matrix.verdict_count == total
    assert matrix.allowed_count == allowed
    return total


def _policy_worlds() -> list[Any]:
    policy = _module("test_policy")
    seen: dict[tuple[str, str, bool], None] = {}
    for case in policy.PATH_CASES:
        seen.setdefault((case[1], "terway", True), None)
    return [
        pytest.param(policies, plugin, on, id=f"policy-world-{i}")
        for i, (policies, plugin, on) in enumerate(seen)
    ]


@pytest.mark.parametrize(("policies", "plugin", "network_policy"), _policy_worlds())
def test_policy_worlds(policies: str, plugin: str, network_policy: bool) -> None:
    planned, _ = _module("test_policy")._world(policies, plugin, network_policy)
    ports: list[PortSpec] = [(80, "TCP"), (5432, "TCP"), (9000, "TCP"), (53, "UDP"), (9000, "SCTP")]
    assert _same_answers(planned) > 0
    assert _same_answers(planned, ports) > 0


def test_terway_world() -> None:
    reachability = _module("test_reachability")
    assert _same_answers(reachability.plan_of(reachability.TERWAY + reachability.PODS)) > 0


@pytest.mark.parametrize("case", range(8))
def test_flannel_worlds(case: int) -> None:
    reachability = _module("test_reachability")
    cases = reachability.FLANNEL_CASES
    planned = reachability.flannel(cases[case % len(cases)][1])
    assert _same_answers(planned, [(8080, "TCP"), (3306, "TCP"), (53, "UDP")]) > 0


def test_flannel_vxlan_worlds() -> None:
    vxlan = _module("test_flannel_vxlan_reachability")
    for rules in (vxlan.VXLAN_BOTH_WAYS, vxlan.POD_CIDR_ONLY, vxlan.ALL_FROM_NODES):
        assert _same_answers(vxlan.vxlan(rules), [(8080, "TCP"), (53, "UDP")]) > 0


@pytest.mark.parametrize("example", ["shop", "quickstart"])
def test_examples(example: str) -> None:
    planned = plan(build_resources(read_sources([str(REPO / "examples" / example)])))
    assert _same_answers(planned) > 0


def test_a_generated_cluster() -> None:
    scale = _module("check_scale")
    objects = scale.k8s_objects(240, 60, 40, seed=7)
    text = scale.cloud(240) + "---\n" + "---\n".join(objects.values())
    planned = plan(build_resources([Source("generated.yaml", text)]))
    assert _same_answers(planned) > 10_000


def test_classes_are_few_where_pods_are_alike() -> None:
    scale = _module("check_scale")
    objects = scale.k8s_objects(400, 40, 40, seed=3)
    planned = plan(
        build_resources([Source("g.yaml", scale.cloud(400) + "---\n" + "---\n".join(objects.values()))])
    )
    pods = list(EndpointIndex.of(planned).pods.values())
    matrix = ReachabilityMatrix(planned, pods, pods)
    assert matrix.class_count < len(pods) / 3


def test_conformance_corpus() -> None:
    """The upstream NetworkPolicy e2e truth tables, through the matrix."""
    conformance = _module("test_netpol_conformance")
    if not conformance.CASES:
        pytest.skip(f"the conformance corpus is not at {conformance.CORPUS} (set ACKNET_SHARED)")
    cells = 0
    for case in conformance.CASES:
        for step in case["steps"]:
            state, spec = conformance._state_at(case, step["step"])
            bare = conformance._plan(state.documents(None))
            planned = conformance._plan(state.documents({p.key: str(p.ip) for p in bare.pods}))
            index = EndpointIndex.of(planned)
            columns = case["matrix_columns"]
            pods = [index.pods[name] for name in columns]
            for probe in spec["probes"]:
                port, protocol = probe["port"], cast(Protocol, probe["protocol"])
                matrix = ReachabilityMatrix(planned, pods, pods, [(port, protocol)])
                for source, row in probe["matrix"].items():
                    for destination, mark in zip(columns, row, strict=True):
                        if source == destination:
                            continue
                        cells += 1
                        got = matrix.allowed(index.pods[source], index.pods[destination], port, protocol)
                        assert got == (mark == "."), (
                            f"{case['id']} step {step['step']}: {source} -> {destination}"
                        )
    assert cells > 1000


def test_verdicts_are_the_per_pair_verdicts_with_their_reasons() -> None:
    planned = plan(build_resources(read_sources([str(REPO / "examples" / "shop")])))
    index = EndpointIndex.of(planned)
    sources = list(index.everything())
    destinations = [*index.everything(), *resolve_destinations(index, "svc")]
    matrix = ReachabilityMatrix(planned, sources, destinations)
    expected = Reachability(planned).check(sources, destinations)
    assert [v.to_json() for v in matrix.verdicts()] == [v.to_json() for v in expected]


def test_streamed_json_is_what_print_data_prints() -> None:
    planned = plan(build_resources(read_sources([str(REPO / "examples" / "quickstart")])))
    index = EndpointIndex.of(planned)
    verdicts = Reachability(planned).check(index.everything(), index.everything())
    sink = io.StringIO()
    assert write_json(iter(verdicts), sink) == len(verdicts)
    whole = json.dumps({"verdicts": [v.to_json() for v in verdicts]}, indent=2, default=str) + "\n"
    assert sink.getvalue() == whole
    empty = io.StringIO()
    assert write_json(iter(()), empty) == 0
    assert empty.getvalue() == json.dumps({"verdicts": []}, indent=2) + "\n"


def test_matrix_output_names_classes_ports_and_rows() -> None:
    planned = plan(build_resources(read_sources([str(REPO / "examples" / "shop")])))
    index = EndpointIndex.of(planned)
    endpoints: list[Endpoint] = list(index.everything())
    matrix = ReachabilityMatrix(planned, endpoints, [*endpoints, *resolve_destinations(index, "svc")])
    sink = io.StringIO()
    write_matrix(matrix, sink)
    text = sink.getvalue()
    assert text.startswith(f"# acknet check -o matrix: {len(endpoints)} sources")
    assert f"{matrix.verdict_count} verdicts, {matrix.allowed_count} allowed" in text
    assert "\nclasses:\nc0: " in text
    assert "\nport 3306/TCP (destinations: c" in text
    assert "\nservices and load balancers, pair by pair:\n" in text
    # Every pod and instance is in exactly one class line.
    members = [
        name
        for line in text.split("\nclasses:\n", 1)[1].split("\nport ", 1)[0].splitlines()
        for name in line.split(": ", 1)[1].split()
    ]
    assert sorted(members) == sorted(e.name for e in endpoints)
