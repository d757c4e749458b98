"""``acknet check``: can A reach B, and why, from the files alone (no root, no kernel).

A thin edge over ``analysis``: read and validate the files, plan, resolve ``--from``/``--to``, judge
every pair and print it, as JSON in the shape DESIGN.md fixes (``probe`` prints the same, so the two
can be compared) or as a table. ``main.py`` wires it as the ``check`` command.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from acknet.analysis.endpoints import EndpointIndex, resolve
from acknet.analysis.reachability import PortSpec, Reachability, Verdict, parse_port
from acknet.cli.output import err, out, print_data, print_diagnostics, table
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
        _error(f"--port {exc}")
        return 1
    try:
        planned = make_plan(resources)
        index = EndpointIndex.of(planned)
        sources = resolve(index, list(from_sel or []), "from")
        destinations = resolve(index, list(to_sel or []), "to")
        verdicts = Reachability(planned).check(sources, destinations, wanted)
    except AcknetError as exc:
        _error(str(exc))
        return 1
    if output == "json":
        print_data({"verdicts": [v.to_json() for v in verdicts]}, "json")
    else:
        out.print(verdict_table(verdicts))
    return 0


def verdict_table(verdicts: Sequence[Verdict]) -> Table:
    """FROM, TO, PORT, VERDICT, WHY: WHY is the hop that decided (the last one on the path)."""
    rows = [
        (
            v.source,
            v.destination,
            f"{v.port}/{v.protocol}",
            "allowed" if v.allowed else "denied",
            _why(v),
        )
        for v in verdicts
    ]
    return table(f"Reachability ({len(verdicts)} checks)", ["FROM", "TO", "PORT", "VERDICT", "WHY"], rows)


def _why(verdict: Verdict) -> str:
    if not verdict.allowed:
        return verdict.reasons[-1]
    # Allowed: the listener is the last hop; the rule that let the packet in is the interesting part.
    deciding = [h for h in verdict.hops if h.object != "listener"]
    return deciding[-1].reason if deciding else verdict.reasons[-1]


def _error(message: str) -> None:
    err.print(f"error: {message}", style="red", markup=False, highlight=False)
