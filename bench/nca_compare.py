"""acknet ``check`` beside network-config-analyzer (NCA, PyPI), on the same generated manifests.

NCA (np-guard, IBM) is an independent implementation of Kubernetes NetworkPolicy semantics in
Python (reference/peers.md 2.1). Both read the same folder of Kubernetes objects (namespaces,
Deployments, Services, NetworkPolicies from ``bench/check_scale.py``'s generator; acknet puts its
default Terway cloud around them). NCA's ``--connectivity -o txt_no_fw_rules`` lists, per pair of
Deployments, the connections its policies allow; acknet's all-pairs matrix gives a verdict per pod
pair and declared port, which is folded per pair of Deployments (all replicas must agree) and
compared port by port. Times are wall clock of the whole run of each (NCA: its process; acknet:
validate + plan + matrix, in one fresh process), beside each other.

NCA is installed from PyPI into its own virtualenv (``bench/.nca-venv``, gitignored; never a project
dependency) on first use.

    .venv/bin/python bench/nca_compare.py [--sizes 500x50,2000x200] [--seeds 1] [--timeout 900] [--json]
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

import check_scale  # noqa: E402

NCA_VENV = HERE / ".nca-venv"
NCA_PACKAGE = "network-config-analyzer==2.1.0"  # the release docs/check-scale.md compares with
# The default cloud's pod VSwitch (model/defaults.py): an ipBlock over it holds the pods' addresses.
POD_IP_BLOCK = ("192.168.32.0/19", "192.168.40.0/22")
OUTSIDE_IP_BLOCK = ("10.16.0.0/12", "10.17.0.0/16")

SYSTEM = "kube-system/"
Pair = tuple[str, str]  # (ns/deployment, ns/deployment)
PortKey = tuple[int, str]


def nca_executable(venv_dir: Path = NCA_VENV, install: bool = True) -> tuple[Path | None, str]:
    """The ``nca`` command, installed from PyPI into its own virtualenv when missing; (None, why) when
    it cannot be had."""
    nca = venv_dir / "bin" / "nca"
    if nca.exists():
        return nca, ""
    if not install:
        return None, f"{nca} is not installed"
    # One installer at a time: every pytest-xdist worker imports the differential test, and two
    # virtualenvs made in one folder at once fail ("Text file busy").
    with open(venv_dir.with_name(venv_dir.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if nca.exists():
            return nca, ""
        return _install_nca(venv_dir, nca)


def _install_nca(venv_dir: Path, nca: Path) -> tuple[Path | None, str]:
    try:
        venv.create(venv_dir, with_pip=True)
        result = subprocess.run(
            [str(venv_dir / "bin" / "pip"), "install", "-q", NCA_PACKAGE],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"cannot create a virtualenv for {NCA_PACKAGE}: {exc}"
    if result.returncode != 0 or not nca.exists():
        return None, f"pip install {NCA_PACKAGE} failed: {result.stderr.strip()[-500:]}"
    return nca, ""


# -- NCA's answer ---------------------------------------------------------------------------------

_LINE = re.compile(r"^(\S+)\[(Deployment|Pod|ReplicaSet|StatefulSet|DaemonSet)\] => (\S+)\[\w+\] : (.+)$")
_CUBE = re.compile(r"\{([^}]*)\}")


@dataclass(frozen=True)
class Connections:
    """What NCA allows between two endpoints: everything, or (protocol -> port ranges | None=all)."""

    everything: bool = False
    protocols: Mapping[str, tuple[tuple[int, int], ...] | None] = field(default_factory=dict)

    def union(self, other: Connections) -> Connections:
        if self.everything or other.everything:
            return Connections(everything=True)
        merged: dict[str, tuple[tuple[int, int], ...] | None] = dict(self.protocols)
        for name, ranges in other.protocols.items():
            before = merged.get(name, ())
            merged[name] = None if ranges is None or before is None else (*before, *ranges)
        return Connections(protocols=merged)

    def allows(self, port: int, protocol: str) -> bool:
        if self.everything:
            return True
        if protocol not in self.protocols:
            return False
        ranges = self.protocols[protocol]
        return ranges is None or any(low <= port <= high for low, high in ranges)


def parse_connections(text: str) -> Connections:
    """``All connections``, ``{protocols:TCP,dst_ports:8080,9090}``, ``{protocols:TCP, UDP,dst_ports:53}``,
    ``{protocols:UDP}``, and several cubes side by side."""
    text = text.strip()
    if text == "All connections":
        return Connections(everything=True)
    protocols: dict[str, tuple[tuple[int, int], ...] | None] = {}
    cubes = _CUBE.findall(text)
    if not cubes:
        raise ValueError(f"unknown NCA connection text {text!r}")
    for cube in cubes:
        head, _, ports = cube.partition(",dst_ports:")
        if not head.startswith("protocols:") or ":" in ports:
            raise ValueError(f"unknown NCA connection text {text!r}")
        names = [p.strip().upper() for p in head[len("protocols:") :].split(",") if p.strip()]
        ranges: tuple[tuple[int, int], ...] | None = None
        if ports:
            parsed = []
            for item in ports.split(","):
                low, _, high = item.strip().partition("-")
                parsed.append((int(low), int(high or low)))
            ranges = tuple(parsed)
        for name in names:
            before = protocols.get(name, ())
            protocols[name] = None if ranges is None or before is None else (*before, *ranges)
    return Connections(protocols=protocols)


def run_nca(nca: Path, folder: Path, timeout: float) -> tuple[float, dict[Pair, Connections]]:
    """NCA's connectivity between workloads (Deployments) of ``folder``; (seconds, pair -> allowed)."""
    out = folder / "nca.txt"
    start = time.perf_counter()
    result = subprocess.run(
        [str(nca), "--connectivity", str(folder), "-r", str(folder), "-o", "txt_no_fw_rules", "-f", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=folder,
        check=False,
    )
    seconds = time.perf_counter() - start
    if not out.exists():
        raise RuntimeError(f"nca exited {result.returncode}: {result.stdout[-2000:]} {result.stderr[-2000:]}")
    pairs: dict[Pair, Connections] = {}
    for line in out.read_text().splitlines():
        match = _LINE.match(line.strip())
        if match is not None:
            # One pair may have several lines (one per protocol cube): they add up.
            key = (match.group(1), match.group(3))
            pairs[key] = (
                pairs[key].union(parse_connections(match.group(4)))
                if key in pairs
                else (parse_connections(match.group(4)))
            )
    return seconds, pairs


# -- acknet's answer ------------------------------------------------------------------------------

OURS = """
import json, sys, time
sys.path.insert(0, {src!r})
start = time.perf_counter()
from acknet.analysis.endpoints import EndpointIndex
from acknet.analysis.matrix import ReachabilityMatrix
from acknet.controllers.plan import plan
from acknet.model.build import build_resources
from acknet.store.files import read_sources
planned = plan(build_resources(read_sources([sys.argv[1]])))
pods = list(EndpointIndex.of(planned).pods.values())
matrix = ReachabilityMatrix(planned, pods, pods)
seconds = time.perf_counter() - start
owner = {{p.key: p.namespace + "/" + p.owner.split("/", 1)[1] for p in planned.pods if p.owner}}
(cluster,) = planned.resources.clusters
model = matrix.reach.policy_model(cluster)
cells = {{}}
for src in pods:
    for dst in pods:
        if src.name == dst.name or src.name not in owner or dst.name not in owner:
            continue
        for port, protocol in dst.ports:
            key = json.dumps([owner[src.name], owner[dst.name], port, protocol])
            allowed = matrix.allowed(src, dst, port, protocol)
            policy = model.connection(src, dst, protocol, port).allowed
            cell = cells.setdefault(key, [set(), set(), src.name, dst.name])
            cell[0].add(allowed)
            cell[1].add(policy)
print(json.dumps({{"seconds": seconds, "cells": {{k: [sorted(v[0]), sorted(v[1]), v[2], v[3]] for k, v in cells.items()}}}}))
"""


@dataclass
class Comparison:
    cells: int = 0
    agree: int = 0
    mixed: list[str] = field(default_factory=list)  # acknet's replicas of one pair disagree
    differ: list[tuple[str, bool, bool, bool, str, str]] = field(default_factory=list)


def run_ours(
    folder: Path,
) -> tuple[float, dict[tuple[str, str, int, str], tuple[list[bool], list[bool], str, str]]]:
    script = OURS.format(src=str(ROOT / "src"))
    result = subprocess.run(
        [sys.executable, "-c", script, str(folder)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    data = json.loads(result.stdout.splitlines()[-1])
    cells = {}
    for key, (allowed, policy, src, dst) in data["cells"].items():
        a, b, port, protocol = json.loads(key)
        cells[(a, b, int(port), protocol)] = (allowed, policy, src, dst)
    return float(data["seconds"]), cells


def compare(
    ours: Mapping[tuple[str, str, int, str], tuple[list[bool], list[bool], str, str]],
    theirs: Mapping[Pair, Connections],
) -> Comparison:
    out = Comparison()
    nothing = Connections()
    for (a, b, port, protocol), (allowed, policy, src, dst) in sorted(ours.items()):
        if a.startswith(SYSTEM) or b.startswith(SYSTEM):
            continue  # acknet's add-ons (CoreDNS, the Ingress controller): not in NCA's input
        if a == b:
            # Between replicas of one Deployment: NCA folds a Deployment into one endpoint and lists
            # no connection of an endpoint with itself, so it has no answer to compare with.
            continue
        out.cells += 1
        if len(allowed) != 1:
            out.mixed.append(f"{a} -> {b} {port}/{protocol}")
            continue
        nca = theirs.get((a, b), nothing).allows(port, protocol)
        if allowed[0] == nca:
            out.agree += 1
        else:
            out.differ.append((f"{a} -> {b} {port}/{protocol}", allowed[0], policy[0], nca, src, dst))
    return out


# Each variant takes out one known cause of disagreement (docs/check-scale.md), so that what is left
# shows whether there is any other.
VARIANTS: dict[str, dict[str, object]] = {
    "as generated": {"ip_block": POD_IP_BLOCK, "key_operators": True},
    "ipBlocks outside the pod CIDR": {"ip_block": OUTSIDE_IP_BLOCK, "key_operators": True},
    "and no Exists/DoesNotExist in peers": {"ip_block": OUTSIDE_IP_BLOCK, "key_operators": False},
}


def generate(folder: Path, pods: int, policies: int, seed: int, variant: str = "as generated") -> None:
    options = VARIANTS[variant]
    objects = check_scale.k8s_objects(
        pods,
        policies,
        max(1, pods // 5),
        seed,
        ip_block=cast(tuple[str, str], options["ip_block"]),
        key_operators=bool(options["key_operators"]),
    )
    for name, text in objects.items():
        (folder / name).write_text(text)


def run_case(
    nca: Path, pods: int, policies: int, seed: int, timeout: float, variant: str = "as generated"
) -> tuple[float, float | None, Comparison | None]:
    with tempfile.TemporaryDirectory(prefix="acknet-nca-") as tmp:
        folder = Path(tmp)
        generate(folder, pods, policies, seed, variant)
        ours_s, ours = run_ours(folder)
        try:
            nca_s, theirs = run_nca(nca, folder, timeout)
        except subprocess.TimeoutExpired:
            return ours_s, None, None
        return ours_s, nca_s, compare(ours, theirs)


def conformance(nca: Path, timeout: float) -> tuple[int, int, list[str]]:
    """NCA on the upstream NetworkPolicy e2e truth tables (shared/conformance, 48 cases; acknet passes
    every cell: tests/unit/analysis/test_netpol_conformance.py). Returns (cells, NCA right, wrong)."""
    spec = importlib.util.spec_from_file_location(
        "_conformance", ROOT / "tests" / "unit" / "analysis" / "test_netpol_conformance.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    cells = right = 0
    wrong: list[str] = []
    for case in module.CASES:
        for step in case["steps"]:
            state, expected = module._state_at(case, step["step"])
            bare = module._plan(state.documents(None))
            text = state.documents({p.key: str(p.ip) for p in bare.pods})
            with tempfile.TemporaryDirectory(prefix="acknet-nca-e2e-") as tmp:
                folder = Path(tmp)
                (folder / "case.yaml").write_text(text)
                try:
                    _, pairs = run_nca(nca, folder, timeout)
                except RuntimeError as exc:
                    wrong.append(f"{case['id']} step {step['step']}: NCA refused the input: {str(exc)[:200]}")
                    continue
            columns = case["matrix_columns"]
            for probe in expected["probes"]:
                for source, row in probe["matrix"].items():
                    for destination, mark in zip(columns, row, strict=True):
                        if source == destination:
                            continue
                        cells += 1
                        got = pairs.get((source, destination), Connections()).allows(
                            probe["port"], probe["protocol"]
                        )
                        if got == (mark == "."):
                            right += 1
                        else:
                            wrong.append(
                                f"{case['id']} step {step['step']}: {source} -> {destination} "
                                f"{probe['port']}/{probe['protocol']}: upstream "
                                f"{'allows' if mark == '.' else 'denies'}, NCA {'allows' if got else 'denies'}"
                            )
    return cells, right, wrong


def _explain(rows: Iterable[tuple[str, bool, bool, bool, str, str]], limit: int = 10) -> list[str]:
    lines = []
    for what, ours, policy, nca, src, dst in list(rows)[:limit]:
        lines.append(
            f"  {what}: acknet {'allows' if ours else 'denies'} (policy alone: "
            f"{'allows' if policy else 'denies'}; e.g. {src} -> {dst}), NCA {'allows' if nca else 'denies'}"
        )
    return lines


def _case(
    nca: Path, pods: int, policies: int, seed: int, variant: str, args: argparse.Namespace
) -> dict[str, object]:
    ours_s, nca_s, comparison = run_case(nca, pods, policies, seed, args.timeout, variant)
    row: dict[str, object] = {
        "pods": pods,
        "policies": policies,
        "seed": seed,
        "variant": variant,
        "acknet_s": round(ours_s, 2),
        "nca_s": None if nca_s is None else round(nca_s, 2),
    }
    if comparison is None:
        row["note"] = f"NCA did not finish within {args.timeout:.0f} s"
    else:
        row.update(
            cells=comparison.cells,
            agree=comparison.agree,
            differ=len(comparison.differ),
            mixed=len(comparison.mixed),
            ratio=round((nca_s or 0) / ours_s, 1),
        )
    if args.json:
        return row
    timing = f"NCA {nca_s:.2f} s (x{(nca_s or 0) / ours_s:.1f})" if nca_s is not None else row["note"]
    print(f"{pods} pods, {policies} policies, seed {seed}, {variant}: acknet {ours_s:.2f} s, {timing}")
    if comparison is not None:
        print(
            f"  {comparison.cells} (deployment pair, port) cells: {comparison.agree} agree, "
            f"{len(comparison.differ)} differ, {len(comparison.mixed)} mixed within acknet"
        )
        for line in _explain(comparison.differ, args.show):
            print(line)
    sys.stdout.flush()
    return row


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="500x50,2000x200", help="PODSxPOLICIES,...")
    parser.add_argument("--seeds", default="1", help="comma-separated generator seeds")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds NCA may take per case")
    parser.add_argument("--show", type=int, default=3, help="differences shown per case")
    parser.add_argument("--no-variants", action="store_true", help="only the files as generated")
    parser.add_argument(
        "--conformance",
        action="store_true",
        help="only NCA on the upstream e2e truth tables (shared/conformance)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    nca, why = nca_executable()
    if nca is None:
        print(f"skipped: {why}")
        return 0
    if args.conformance:
        cells, right, wrong = conformance(nca, args.timeout)
        print(
            f"upstream e2e truth tables: {cells} cells, NCA right on {right}, wrong or refused on {len(wrong)}"
        )
        print("\n".join(f"  {w}" for w in wrong))
        return 0
    results = []
    for n, size in enumerate(args.sizes.split(",")):
        pods, policies = (int(x) for x in size.split("x"))
        # The variants on the first size only: NCA takes minutes on the larger ones.
        variants = list(VARIANTS) if n == 0 and not args.no_variants else ["as generated"]
        for seed in (int(s) for s in args.seeds.split(",")):
            for variant in variants:
                results.append(_case(nca, pods, policies, seed, variant, args))
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
