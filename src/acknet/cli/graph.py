"""``acknet graph``: one self-contained HTML page to look at instead of reading ``check``'s table.

A thin edge: the Plan comes from the files (``-f``) or a running emulation (``--name``, as ``trace``
loads it), the verdicts from ``analysis.reachability`` over the ``--from``/``--to``/``--port``
endpoints, the data from ``analysis.graph``. The page is ``graph_template.html`` from this package
with that data inlined as JSON: its CSS and script are inline too, so it opens from a file with no
network at all (no CDN, no fonts, no fetch).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import typer

from acknet.analysis.endpoints import Destination, EndpointIndex, resolve, resolve_destinations
from acknet.analysis.graph import graph_data
from acknet.analysis.reachability import PortSpec, Reachability, parse_port
from acknet.cli.output import err, print_diagnostics, print_error
from acknet.cli.trace import load_plan
from acknet.errors import AcknetError, InvalidInput

GRAPH_HELP = """A picture of the network: the topology (VPC > VSwitch > ECS instance or node > pods, SLBs,
Services) with the allowed flows between Deployments, instances and Services as edges (hover for the
ports and the rule that decided), and a reachability heat-map (sources x destination ports, green
allowed, amber partial, red denied; hover for the reasons). One HTML file, nothing fetched from the
network. Default endpoints: every pod and standalone ECS instance, to them and to every Service."""

# Beyond this many verdicts the page takes seconds to draw (one matrix cell each): say so.
LARGE = 20_000
_DATA_MARK = "/*ACKNET_GRAPH_DATA*/null"


def run_graph(
    paths: Sequence[str] | None,
    name: str | None,
    state: Path | None,
    from_sel: Sequence[str] | None,
    to_sel: Sequence[str] | None,
    ports: Sequence[str] | None,
    output: str = "acknet-graph.html",
) -> int:
    """Writes the page to ``output`` (``-`` for standard output); 0 when written, 1 on bad input."""
    if paths and name is not None:
        print_error("give the files (-f PATH) or a running emulation (--name N), not both")
        return 1
    if not paths and name is None:
        name = "acknet"  # neither: the running emulation of the default name, as live commands do
    try:
        wanted: list[PortSpec] | None = [parse_port(p) for p in ports] if ports else None
    except ValueError as exc:
        print_error(f"--port {exc}")
        return 1
    try:
        planned = load_plan(paths, name, state)
        index = EndpointIndex.of(planned)
        sources = resolve(index, list(from_sel or []), "from")
        destinations: list[Destination] = (
            resolve_destinations(index, list(to_sel))
            if to_sel
            else [*index.everything(), *index.services.values()]
        )
        verdicts = Reachability(planned).check(sources, destinations, wanted)
    except InvalidInput as exc:
        print_diagnostics(exc.diagnostics)
        return 1
    except AcknetError as exc:
        print_error(str(exc))
        return 1
    if len(verdicts) > LARGE:
        err.print(
            f"warning: {len(verdicts)} verdicts make a heavy page; narrow it with --from, --to or --port",
            style="yellow",
            highlight=False,
            markup=False,
        )
    title = f"acknet: {name}" if name is not None else "acknet: " + ", ".join(paths or [])
    page = render_html(graph_data(planned, verdicts, destinations, title))
    if output == "-":
        typer.echo(page, nl=False)
        return 0
    try:
        Path(output).write_text(page, encoding="utf-8")
    except OSError as exc:
        print_error(f"-o {output}: {exc.strerror or exc}")
        return 1
    err.print(
        f"wrote {output}: {len(verdicts)} verdicts, {len(sources)} sources, {len(destinations)} destinations",
        highlight=False,
        markup=False,
    )
    return 0


def render_html(data: dict[str, Any]) -> str:
    """The template with ``data`` inlined; ``<`` is escaped so no name can close the script element."""
    template = resources.files("acknet.cli").joinpath("graph_template.html").read_text(encoding="utf-8")
    if _DATA_MARK not in template:
        raise AcknetError("graph_template.html has lost its data mark")
    payload = json.dumps(data, sort_keys=False, separators=(",", ":")).replace("<", "\\u003c")
    return template.replace(_DATA_MARK, payload, 1)
