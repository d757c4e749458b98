"""Sources to a validated ``Resources``: load, validate, and point every diagnostic at its line."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from acknet.errors import InvalidInput
from acknet.model.diagnostics import Diagnostic
from acknet.model.documents import Source, field_line
from acknet.model.load import load_resources
from acknet.model.resources import Resources
from acknet.model.validate import validate

_PATH_PART = re.compile(r"([^.\[\]]+)|\[([^\]]+)\]")


def _path(field: str) -> tuple[str | int, ...]:
    parts: list[str | int] = []
    for name, index in _PATH_PART.findall(field):
        if name:
            parts.append(name)
        else:
            parts.append(int(index) if index.isdigit() else index)
    return tuple(parts)


def _with_lines(diagnostics: list[Diagnostic], sources: Sequence[Source]) -> list[Diagnostic]:
    texts = {s.name: s.text for s in sources}
    out = []
    for d in diagnostics:
        line = None
        if d.line is None and d.origin is not None and d.field and d.origin.file in texts:
            line = field_line(texts[d.origin.file], d.origin.document, _path(d.field))
        out.append(dataclasses.replace(d, line=line) if line is not None else d)
    return out


def check_sources(sources: Sequence[Source]) -> tuple[Resources, list[Diagnostic]]:
    """Every diagnostic of the sources (errors and warnings), and the resources as far as they loaded."""
    loaded = load_resources(sources)
    # Validation runs even after schema errors, so that one run lists every problem.
    diagnostics = list(loaded.diagnostics) + validate(loaded.resources)
    diagnostics = _with_lines(diagnostics, sources)
    loaded.resources.warnings = [d for d in diagnostics if not d.is_error]
    return loaded.resources, diagnostics


def build_resources(sources: Sequence[Source]) -> Resources:
    """The validated desired state; raises InvalidInput holding every error (and warning) otherwise."""
    resources, diagnostics = check_sources(sources)
    if any(d.is_error for d in diagnostics):
        raise InvalidInput(diagnostics)
    return resources
