"""``acknet check``: can A reach B, and why, from the files alone (no root, no kernel).

A thin edge over ``analysis``: read and validate the files, plan, resolve ``--from``/``--to``, judge
every pair and print it, as JSON in the shape DESIGN.md fixes (``probe`` prints the same, so the two
can be compared), as a table, or as a compact matrix of equivalence classes (``-o matrix``, the
all-pairs answer at 10,000 pods: ``analysis.matrix``). ``main.py`` wires it as the ``check`` command.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from rich.table import Table

from acknet.analysis.endpoints import EndpointIndex, resolve, resolve_destinations
from acknet.analysis.matrix import ReachabilityMatrix
from acknet.analysis.reachability import PortSpec, Reachability, Verdict, parse_port
from acknet.cli.output import out, print_diagnostics, print_error, table
from acknet.controllers.plan import plan as make_plan
from acknet.errors import AcknetError, InvalidInput
from acknet.model.build import build_resources
from acknet.store.files import read_sources


def run_check(
    paths: Sequence[str],
    from_sel: Sequence[str] | None,
    to_sel: Sequence[str] | None,
    ports: Sequence[str] | None,
    output: str = "table",
) -> int:
    """Prints the verdicts of every source, destination and port; returns the exit code.

    0 when the check ran, whatever the verdicts (a denied pair is an answer, not an error); 1 on invalid
    files, an unknown endpoint or a malformed port, with the message on standard error.
    """
    try:
        resources = build_resources(read_sources(paths))
    except InvalidInput as exc:
        print_diagnostics(exc.diagnostics)
        return 1
    print_diagnostics(resources.warnings)
    try:
        wanted: list[PortSpec] | None = [parse_port(p) for p in ports] if ports else None
    except ValueError as exc:
        print_error(f"--port {exc}")
        return 1
    try:
        planned = make_plan(resources)
        index = EndpointIndex.of(planned)
        sources = resolve(index, list(from_sel or []), "from")
        destinations = resolve_destinations(index, list(to_sel or []))
        if output == "matrix":
            write_matrix(ReachabilityMatrix(planned, sources, destinations, wanted), sys.stdout)
            return 0
        if output == "json":
            # Streamed: at 10,000 pods the verdicts do not fit in memory, their JSON does not either.
            write_json(Reachability(planned).verdicts(sources, destinations, wanted), sys.stdout)
            return 0
        verdicts = Reachability(planned).check(sources, destinations, wanted)
    except AcknetError as exc:
        print_error(str(exc))
        return 1
    out.print(verdict_table(verdicts))
    return 0


def write_json(verdicts: Iterable[Verdict], sink: TextIO) -> int:
    """``{"verdicts": [...]}`` as ``print_data(..., "json")`` prints it (indent 2), one verdict at a
    time; returns how many were written."""
    count = 0
    encoded: dict[str, str] = {}  # reasons repeat across pairs: each is encoded once
    for verdict in verdicts:
        sink.write(
            ('{\n  "verdicts": [\n' if count == 0 else ",\n") + _verdict_text(verdict.to_json(), encoded)
        )
        count += 1
    sink.write('{\n  "verdicts": []\n}\n' if count == 0 else "\n  ]\n}\n")
    return count


def _verdict_text(item: dict[str, Any], encoded: dict[str, str]) -> str:
    """``json.dumps(item, indent=2)`` one level in, for a flat object whose lists hold strings: with
    an indent ``json`` falls back to its pure-Python encoder, ten times slower than this."""
    lines = ["    {"]
    last = len(item) - 1
    for i, (key, value) in enumerate(item.items()):
        comma = "," if i < last else ""
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            lines.append(f"      {json.dumps(key)}: [")
            end = len(value) - 1
            for j, text in enumerate(value):
                found = encoded.get(text)
                if found is None:
                    found = encoded[text] = json.dumps(text)
                lines.append(f"        {found}{',' if j < end else ''}")
            lines.append(f"      ]{comma}")
        elif isinstance(value, (dict, list)):
            nested = json.dumps(value, indent=2, default=str).replace("\n", "\n      ")
            lines.append(f"      {json.dumps(key)}: {nested}{comma}")
        else:
            lines.append(f"      {json.dumps(key)}: {json.dumps(value, default=str)}{comma}")
    lines.append("    }")
    return "\n".join(lines)


_RUN = re.compile("1+")

MATRIX_HELP = (
    "-o matrix prints every source to every destination compactly, through equivalence classes of "
    "endpoints (same namespace, labels, ports, security groups, datapath and policies, so the same "
    "verdicts): the classes with their members, then per port one line per source class naming the "
    "destination classes it reaches (all, none, or classes and ranges such as c3-c7) for pairs on "
    "different instances, then the pairs on one instance whose verdict differs from their classes' "
    "cell, and Services and SLBs pair by pair."
)


def write_matrix(matrix: ReachabilityMatrix, sink: TextIO) -> None:
    """The compact all-pairs answer (``MATRIX_HELP``)."""
    w = sink.write
    w(
        f"# acknet check -o matrix: {len(matrix.sources)} sources, {len(matrix.destinations)} "
        f"destinations, {matrix.class_count} classes; {matrix.verdict_count} verdicts, "
        f"{matrix.allowed_count} allowed\n"
    )
    w("classes:\n")
    for cls in matrix.classes:
        w(f"c{cls.index}: {' '.join(e.name for e in cls.members)}\n")
    wanted_by_port: dict[tuple[int, str], int] = {}
    for spec, columns in matrix.columns.items():
        wanted_by_port[spec] = sum(1 << d for d in columns)
    current: tuple[int, str] | None = None
    for spec, source, reached in matrix.rows():
        if spec != current:
            current = spec
            wanted = wanted_by_port[spec]
            w(f"port {spec[0]}/{spec[1]} (destinations: {_classes(wanted, 0)}):\n")
        w(f"  c{source} -> {_classes(reached, wanted_by_port[spec])}\n")
    exceptions = list(matrix.exceptions())
    if exceptions:
        w("same instance, unlike their classes:\n")
        for src, dst, port, protocol, allowed in exceptions:
            w(f"  {src.name} -> {dst.name} {port}/{protocol}: {'allowed' if allowed else 'denied'}\n")
    if matrix.services:
        w("services and load balancers, pair by pair:\n")
        for v in matrix.reach.verdicts(matrix.sources, matrix.services, matrix.ports):
            word = v.state
            w(f"  {v.source} -> {v.destination} {v.port}/{v.protocol}: {word}\n")


def _classes(bits: int, wanted: int) -> str:
    """A set of classes as ``all``, ``none`` or ``c1 c4-c9``."""
    if bits == 0:
        return "none"
    if bits == wanted and bits.bit_count() > 1:
        return "all"
    # Runs of ones in the binary text, lowest class first: linear in the number of classes.
    digits = bin(bits)[:1:-1]
    parts = []
    for run in _RUN.finditer(digits):
        start, end = run.start(), run.end() - 1
        parts.append(f"c{start}" if start == end else f"c{start}-c{end}")
    return " ".join(parts)


def verdict_table(verdicts: Sequence[Verdict]) -> Table:
    """FROM, TO, PORT, VERDICT, WHY: WHY is the hop that decided (the last one on the path)."""
    rows = [
        (
            v.source,
            v.destination,
            f"{v.port}/{v.protocol}",
            v.state,
            _why(v),
        )
        for v in verdicts
    ]
    return table(f"Reachability ({len(verdicts)} checks)", ["FROM", "TO", "PORT", "VERDICT", "WHY"], rows)


def _why(verdict: Verdict) -> str:
    if verdict.backends:
        # Through a Service: how many paths passed, and the first that did not (or the Service hop).
        passed = sum(1 for b in verdict.backends if b.allowed)
        failing = [h.reason for h in verdict.hops[1:] if not h.passes]
        detail = failing[0] if failing else verdict.reasons[0]
        return f"{passed}/{len(verdict.backends)} backend paths reachable; {detail}"
    if not verdict.allowed:
        return verdict.reasons[-1]
    # Allowed: the listener is the last hop; the rule that let the packet in is the interesting part.
    deciding = [h for h in verdict.hops if h.object != "listener"]
    return deciding[-1].reason if deciding else verdict.reasons[-1]
