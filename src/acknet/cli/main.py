"""The ``acknet`` command line (DESIGN.md: a contract that tests and scripts depend on)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from acknet.cli import live
from acknet.cli.against import run_against
from acknet.cli.check import MATRIX_HELP, run_check
from acknet.cli.graph import GRAPH_HELP, run_graph
from acknet.cli.output import out, print_data, print_diagnostics
from acknet.cli.plan_view import plan_json, plan_tables
from acknet.cli.trace import TRACE_HELP, run_trace
from acknet.cli.verify import run_verify
from acknet.controllers.plan import plan as make_plan
from acknet.errors import AcknetError, InvalidInput
from acknet.model.build import check_sources
from acknet.model.resources import Resources
from acknet.store.files import read_sources

app = typer.Typer(
    name="acknet",
    help="The container network of an Alibaba Cloud ACK cluster, real on one Linux host, and explained.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

Files = Annotated[
    list[str], typer.Option("-f", "--filename", help="A YAML file, a folder of them, or - for stdin.")
]


class PlanFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


def _load(paths: list[str]) -> Resources:
    """Reads and validates the files; prints every diagnostic and exits 1 on errors."""
    try:
        resources, diagnostics = check_sources(read_sources(paths))
    except InvalidInput as exc:
        print_diagnostics(exc.diagnostics)
        raise typer.Exit(1) from exc
    print_diagnostics(diagnostics)
    if any(d.is_error for d in diagnostics):
        raise typer.Exit(1)
    return resources


@app.command()
def validate(files: Files) -> None:
    """Check the files: every error with its file, document, line, object and field. Exit 1 on errors."""
    resources = _load(files)
    counts = {
        "clusters": len(resources.clusters),
        "objects": sum(
            len(t)
            for objs in resources.kube.values()
            for t in (objs.pods, objs.deployments, objs.services, objs.network_policies, objs.ingresses)
        ),
    }
    note = " (default cloud around Kubernetes objects)" if resources.default_cloud else ""
    out.print(
        f"valid: {counts['clusters']} cluster(s), {counts['objects']} workload and network objects{note}",
        highlight=False,
    )


@app.command()
def plan(
    files: Files,
    output: Annotated[PlanFormat, typer.Option("-o", "--output")] = PlanFormat.table,
) -> None:
    """What would be built: VSwitches, nodes and their ENIs, pods with node, ENI and IP, Services, routes."""
    resources = _load(files)
    planned = make_plan(resources)
    if output is PlanFormat.table:
        out.print(plan_tables(planned))
    else:
        print_data(plan_json(planned), output.value)


def main() -> None:
    try:
        app()
    except AcknetError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from exc


Name = Annotated[str, typer.Option("--name", help="The emulation's name (lowercase letters and digits).")]
State = Annotated[Path | None, typer.Option("--state", help="State folder (default /var/lib/acknet/NAME).")]
# trace and graph: the files, or a running emulation (the default one when no file is given either).
LiveName = Annotated[
    str | None,
    typer.Option("--name", help="A running emulation instead of files (default: acknet, without -f)."),
]


class GetFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


@app.command()
def up(files: Files, name: Name = "acknet", state: State = None) -> None:
    """Build or update the emulation from the files; returns when every pod is running and ready."""
    _load(files)  # every error before anything is built
    raise typer.Exit(live.up(read_sources(files), name, state))


@app.command()
def get(
    kind: Annotated[
        str, typer.Argument(help="pods, nodes, ecs, vswitches, securitygroups, services, slb, ingress")
    ],
    name: Name = "acknet",
    state: State = None,
    output: Annotated[GetFormat, typer.Option("-o", "--output")] = GetFormat.table,
) -> None:
    """List objects of a running emulation; -o json gives {"items": [...]}, pods in Kubernetes shape."""
    raise typer.Exit(live.get(kind, name, state, output.value))


@app.command(
    "exec",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def exec_(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="NAMESPACE/POD, ecs/NAME or internet")],
    name: Name = "acknet",
    state: State = None,
) -> None:
    """Run a command in a pod, an ECS instance or the Internet: acknet exec shop/web-x -- curl ..."""
    live.exec_in(name, state, target, list(ctx.args))


delete_app = typer.Typer(help="Delete an object of a running emulation.", no_args_is_help=True)
app.add_typer(delete_app, name="delete")


@delete_app.command("pod")
def delete_pod(
    target: Annotated[str, typer.Argument(help="NAMESPACE/NAME")], name: Name = "acknet", state: State = None
) -> None:
    """Delete a pod; its Deployment replaces it under a new name, as on a real cluster."""
    raise typer.Exit(live.delete_pod(name, state, target))


@app.command()
def down(name: Name = "acknet", state: State = None) -> None:
    """Remove every namespace, link, process and nftables table of the emulation, and nothing else."""
    raise typer.Exit(live.down(name, state))


Selectors = Annotated[
    list[str] | None,
    typer.Option(
        help="NS/POD, ecs/NAME, svc/NS/NAME, slb/NAME, ingress/NS/NAME (--to only: the requests that "
        "exercise its rules, through the Ingress controller), a kind (pods, ecs, svc, slb, ingress) or "
        "labels (app=web,tier!=db); repeatable."
    ),
]
Ports = Annotated[
    list[str] | None, typer.Option("--port", help="PORT or PORT/PROTO (80, 53/udp); repeatable.")
]


class CheckFormat(StrEnum):
    table = "table"
    json = "json"


class CheckOutput(StrEnum):
    table = "table"
    json = "json"
    matrix = "matrix"


@app.command(
    help=f"""Can A reach B, and why — from the files alone, naming the rule that decided each verdict.

{MATRIX_HELP}"""
)
def check(
    files: Files,
    from_: Annotated[
        list[str] | None, typer.Option("--from", help="Sources (see --to); default: every pod and ECS.")
    ] = None,
    to: Selectors = None,
    port: Ports = None,
    output: Annotated[
        CheckOutput, typer.Option("-o", "--output", help="table, json, or matrix (all pairs, compactly).")
    ] = CheckOutput.table,
    against: Annotated[
        list[str] | None,
        typer.Option(
            "--against",
            help="Older files (repeatable): print only the verdicts that change from them to -f; exit 2 if any.",
        ),
    ] = None,
) -> None:
    if against:
        raise typer.Exit(run_against(against, files, from_, to, port, output.value))
    raise typer.Exit(run_check(files, from_, to, port, output.value))


@app.command()
def probe(
    name: Name = "acknet",
    state: State = None,
    from_: Annotated[
        list[str] | None, typer.Option("--from", help="Sources (see --to); default: every pod and ECS.")
    ] = None,
    to: Selectors = None,
    port: Ports = None,
    output: Annotated[CheckFormat, typer.Option("-o", "--output")] = CheckFormat.table,
) -> None:
    """Real packets from every source to every destination and port of a running emulation."""
    raise typer.Exit(live.probe(name, state, from_, to, port, output.value))


class TraceFormat(StrEnum):
    text = "text"
    json = "json"


@app.command(help=TRACE_HELP)
def trace(
    source: Annotated[
        str, typer.Argument(metavar="SRC", help="NS/POD, ecs/NAME or a selector of one endpoint.")
    ],
    target: Annotated[
        str, typer.Argument(metavar="DST[:PORT[/PROTO]]", help="As SRC, or svc/NS/NAME; PORT as 80, 53/udp.")
    ],
    files: Annotated[
        list[str] | None,
        typer.Option("-f", "--filename", help="A YAML file, a folder of them, or - for stdin."),
    ] = None,
    name: LiveName = None,
    state: State = None,
    output: Annotated[TraceFormat, typer.Option("-o", "--output")] = TraceFormat.text,
    live: Annotated[bool, typer.Option("--live", help="Also send the real packet (with --name).")] = False,
) -> None:
    raise typer.Exit(run_trace(files, name, state, source, target, output.value, live))


@app.command(help=GRAPH_HELP)
def graph(
    files: Annotated[
        list[str] | None,
        typer.Option("-f", "--filename", help="A YAML file, a folder of them, or - for stdin."),
    ] = None,
    name: LiveName = None,
    state: State = None,
    from_: Annotated[
        list[str] | None, typer.Option("--from", help="Sources (see --to); default: every pod and ECS.")
    ] = None,
    to: Annotated[
        list[str] | None,
        typer.Option(help="Destinations as for check; default: every pod, ECS instance and Service."),
    ] = None,
    port: Ports = None,
    output: Annotated[
        str, typer.Option("-o", "--output", help="The HTML file to write, - for standard output.")
    ] = "acknet-graph.html",
) -> None:
    raise typer.Exit(run_graph(files, name, state, from_, to, port, output))


@app.command()
def verify(
    name: Name = "acknet",
    state: State = None,
    output: Annotated[CheckFormat, typer.Option("-o", "--output")] = CheckFormat.table,
) -> None:
    """check (from the emulation's own files) against probe (real packets) on every pair and port:
    pods, ECS instances and nodes, and each of them to every Service. Prints the disagreements and
    exits 1 if there is any (known differences between ACK and the emulation are listed, not counted)."""
    raise typer.Exit(run_verify(name, state, output.value))


if __name__ == "__main__":
    main()
