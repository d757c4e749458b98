"""What the controllers raise, as branches of the one tree in ``acknet.errors``.

    Conflict
    ├── AddressUnavailable      a fixed address is outside its range, reserved, or already held
    └── RangeFull               nothing left to hand out (a VSwitch, a service CIDR, the NodePort range)
        └── VSwitchFull

The controllers trust ``model.validate`` for the input's own contradictions, but stay total: when an
unvalidated input reaches them, they raise ``InvalidInput`` naming the file, the object and the field
(``invalid``) instead of a KeyError from deep inside.
"""

from __future__ import annotations

from acknet.errors import Conflict, InvalidInput
from acknet.model.base import Resource
from acknet.model.diagnostics import error


class AddressUnavailable(Conflict):
    """A fixed address cannot be had: outside the range, a reserved address, or held by someone else."""


class RangeFull(Conflict):
    """Every address (or port) of a range is held."""


class VSwitchFull(RangeFull):
    """A VSwitch has no free address left (the first and the last three are never handed out)."""


def invalid(obj: Resource, field: str, message: str) -> InvalidInput:
    """An ``InvalidInput`` pointing at one field of one object, as ``acknet validate`` reports it."""
    return InvalidInput([error(message, obj.origin, obj.ref, field)])
