"""Printing: diagnostics to standard error, data as table, JSON or YAML to standard output."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from acknet.model.diagnostics import Diagnostic

# Piped output (CI logs, `| less`) gets a wide page instead of rich's 80-column default, so that no
# address or name is cut short.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 200)


def print_error(message: str) -> None:
    """One bad-input or failure line on standard error, as every command writes them."""
    err.print(f"error: {message}", style="red", markup=False, highlight=False)


def verdict_state(verdict: Mapping[str, Any]) -> str:
    """``allowed``, ``partial`` or ``denied`` of a verdict in DESIGN.md's JSON shape."""
    return "partial" if verdict.get("partial") else "allowed" if verdict["allowed"] else "denied"


def print_diagnostics(diagnostics: Sequence[Diagnostic]) -> None:
    for d in diagnostics:
        style = "red" if d.is_error else "yellow"
        err.print(str(d), style=style, markup=False, highlight=False)
    errors = sum(1 for d in diagnostics if d.is_error)
    if errors:
        err.print(f"{errors} error(s); nothing was applied.", style="bold red", highlight=False)


def print_data(data: Any, fmt: str) -> None:
    if fmt == "json":
        typer.echo(json.dumps(data, indent=2, default=str))
    elif fmt == "yaml":
        typer.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
    else:
        raise ValueError(fmt)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold", box=None, pad_edge=False)
    for c in columns:
        t.add_column(c)
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    return t
