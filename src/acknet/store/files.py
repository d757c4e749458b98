"""The files a user names on the command line, read as ``Source``s."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from acknet.errors import InvalidInput
from acknet.model.diagnostics import Diagnostic, error
from acknet.model.documents import Source

YAML_SUFFIXES = (".yaml", ".yml", ".json")


def read_sources(paths: Iterable[str]) -> list[Source]:
    """Each PATH is a file, a folder (its YAML files, recursively, in name order) or ``-`` for standard input."""
    sources: list[Source] = []
    problems: list[Diagnostic] = []
    for raw in paths:
        if raw == "-":
            sources.append(Source("-", sys.stdin.read()))
            continue
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in YAML_SUFFIXES)
            if not files:
                problems.append(error(f"folder {raw} holds no YAML files ({', '.join(YAML_SUFFIXES)})"))
            for file in files:
                sources.append(_read(file, problems))
        elif path.is_file():
            sources.append(_read(path, problems))
        else:
            problems.append(error(f"{raw}: no such file or folder"))
    if problems:
        raise InvalidInput(problems)
    return sources


def _read(path: Path, problems: list[Diagnostic]) -> Source:
    try:
        return Source(str(path), path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(error(f"{path}: cannot be read: {exc}"))
        return Source(str(path), "")
