"""YAML text to documents, keeping where each came from.

Documents are loaded with libyaml when present (the fast path matters at 60,000 pods). Field lines
are only needed when something is wrong, so they are found afterwards by composing that one
document again (``field_line``) instead of carrying positions for every value.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from acknet.model.diagnostics import Diagnostic, Origin, error

try:  # libyaml is the difference between seconds and minutes on large inputs
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _Loader = yaml.SafeLoader


@dataclass(frozen=True, slots=True)
class Source:
    """The text of one file, named as the user named it (``-`` for standard input)."""

    name: str
    text: str


@dataclass(frozen=True, slots=True)
class Document:
    origin: Origin
    body: Any


def parse_documents(source: Source) -> tuple[list[Document], list[Diagnostic]]:
    """Every non-empty document of a multi-document YAML text, or the syntax error with its position."""
    docs: list[Document] = []
    loader = _Loader(source.text)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            index += 1
            if node is None:
                continue
            body = loader.construct_document(node)
            if body is None:
                continue
            docs.append(Document(Origin(source.name, index, node.start_mark.line + 1), body))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        column = mark.column + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        detail = f"{context}, {problem}" if context else problem
        origin = Origin(source.name, index + 1, line)
        return docs, [error(f"malformed YAML at line {line}, column {column}: {detail}", origin, line=line)]
    finally:
        loader.dispose()
    return docs, []


def _child(node: yaml.Node, key: str | int) -> tuple[int, yaml.Node] | None:
    """The child at ``key`` and the line to show for it: a mapping key's own line, a list item's start."""
    if isinstance(node, yaml.MappingNode) and isinstance(key, str):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return int(k.start_mark.line) + 1, v
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
        item = node.value[key]
        return int(item.start_mark.line) + 1, item
    return None


def _nodes(text: str) -> Iterator[yaml.Node | None]:
    loader = _Loader(text)
    try:
        while loader.check_node():
            yield loader.get_node()
    finally:
        loader.dispose()


def field_line(text: str, document: int, path: tuple[str | int, ...]) -> int | None:
    """The 1-based line of ``path`` in the given document, or of its deepest existing parent."""
    try:
        for index, node in enumerate(_nodes(text), start=1):
            if index != document:
                continue
            if node is None:
                return None
            current: yaml.Node = node
            line = int(node.start_mark.line) + 1
            for part in path:
                child = _child(current, part)
                if child is None:
                    break
                line, current = child
            return line
    except yaml.YAMLError:
        return None
    return None
