"""The one exception tree of acknet.

    AcknetError                     anything acknet raises on purpose
    ├── InvalidInput                files that cannot become a desired state; carries every Diagnostic
    ├── NotFound                    a named object (pod, emulation, endpoint) does not exist
    ├── Conflict                    the request contradicts what exists (a name taken, an address in use)
    ├── DataplaneError              a kernel operation failed: names the operation, the object and the errno
    └── DaemonError                 the daemon could not be reached or answered with an error

Boundaries translate foreign exceptions into these with ``raise ... from exc`` so that the
cause stays visible while callers handle one tree.
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from acknet.model.diagnostics import Diagnostic


class AcknetError(Exception):
    """Base of everything acknet raises on purpose."""


class InvalidInput(AcknetError):
    """The files do not describe a valid desired state. Holds every error found, not only the first."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        errors = [d for d in self.diagnostics if d.is_error]
        super().__init__(f"{len(errors)} error(s) in the input:\n" + "\n".join(str(d) for d in errors))


class NotFound(AcknetError):
    """A named object does not exist."""


class Conflict(AcknetError):
    """The request contradicts what already exists."""


class DataplaneError(AcknetError):
    """A kernel operation failed. Says which operation, on which object, and the errno."""

    def __init__(self, operation: str, obj: str, err: int | None = None, detail: str = "") -> None:
        self.operation = operation
        self.object = obj
        self.errno = err
        reason = ""
        if err is not None:
            name = _errno.errorcode.get(err, str(err))
            reason = f": {name} ({_errno_message(err)})"
        extra = f" — {detail}" if detail else ""
        super().__init__(f"{operation} {obj} failed{reason}{extra}")


class DaemonError(AcknetError):
    """The daemon could not be reached (status None), or answered with an error status and JSON body."""

    def __init__(self, message: str, status: int | None = None, body: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def _errno_message(err: int) -> str:
    import os

    return os.strerror(err)
