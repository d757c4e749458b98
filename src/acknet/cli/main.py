"""The ``acknet`` command line (DESIGN.md: a contract that tests and scripts depend on)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from acknet.cli.output import out, print_data, print_diagnostics
from acknet.cli.plan_view import plan_json, plan_tables
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
