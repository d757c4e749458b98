"""YAML documents keep their file, index and line; syntax errors say where."""

from __future__ import annotations

import pytest

from acknet.model.documents import Source, field_line, parse_documents

TEXT = "a: 1\n---\n# comment only\n---\nkind: X\nspec:\n  rules:\n  - {priority: 3}\n  - {priority: 4}\n"


def test_documents_keep_index_and_line() -> None:
    docs, diags = parse_documents(Source("f.yaml", TEXT))
    assert diags == []
    assert [(d.origin.document, d.origin.line) for d in docs] == [(1, 1), (3, 5)]


@pytest.mark.parametrize(
    ("path", "line"),
    [
        (("spec", "rules", 1, "priority"), 9),
        (("spec", "rules", 0), 8),
        (("spec", "missing"), 6),
        ((), 5),
    ],
    ids=["deep-field", "list-item", "missing-child-gives-parent", "document"],
)
def test_field_line(path: tuple[str | int, ...], line: int) -> None:
    assert field_line(TEXT, 3, path) == line


def test_syntax_error_has_line_and_column() -> None:
    docs, diags = parse_documents(Source("bad.yaml", "a: 1\n---\nb: [1, 2\nc: 3\n"))
    assert len(docs) == 1
    (diag,) = diags
    assert diag.origin is not None and diag.origin.document == 2
    assert "malformed YAML at line" in diag.message and "column" in diag.message
