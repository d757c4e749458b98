"""Diagnostics: what is wrong, and exactly where — file, document, line, object and field."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a document came from: the file as the user named it, its 1-based index and first line."""

    file: str
    document: int
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line} (document {self.document})"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding. ``ref`` is ``Kind/namespace/name`` (or ``Kind/name``); ``field`` a path like
    ``spec.rules[0].priority``. ``line`` is the line of the field when known, else the document's."""

    severity: Severity
    message: str
    origin: Origin | None = None
    ref: str = ""
    field: str = ""
    line: int | None = None

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def __str__(self) -> str:
        parts: list[str] = []
        if self.origin is not None:
            line = self.line if self.line is not None else self.origin.line
            parts.append(f"{self.origin.file}:{line} (document {self.origin.document})")
        if self.ref:
            parts.append(self.ref)
        if self.field:
            parts.append(self.field)
        where = ": ".join(parts)
        prefix = "warning: " if self.severity is Severity.WARNING else ""
        return f"{prefix}{where}: {self.message}" if where else f"{prefix}{self.message}"

    def to_json(self) -> dict[str, object]:
        return {
            "severity": self.severity.value,
            "file": self.origin.file if self.origin else None,
            "document": self.origin.document if self.origin else None,
            "line": self.line if self.line is not None else (self.origin.line if self.origin else None),
            "object": self.ref or None,
            "field": self.field or None,
            "message": self.message,
        }


def error(
    message: str, origin: Origin | None = None, ref: str = "", field: str = "", line: int | None = None
) -> Diagnostic:
    return Diagnostic(Severity.ERROR, message, origin, ref, field, line)


def warning(
    message: str, origin: Origin | None = None, ref: str = "", field: str = "", line: int | None = None
) -> Diagnostic:
    return Diagnostic(Severity.WARNING, message, origin, ref, field, line)


def format_path(path: tuple[str | int, ...]) -> str:
    """('spec', 'rules', 0, 'priority') -> 'spec.rules[0].priority'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out
