"""Intranet SLB VIPs: an intranet CLB takes its address from a VSwitch, like an ECS primary IP.

CreateLoadBalancer with AddressType=intranet and a VSwitchId takes ``Address`` when given, else the
VPC hands out a free address of that VSwitch. Internet CLBs get a public address, which is not a
VSwitch's business, so they are left to the SLB controller.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address

from acknet.controllers.exceptions import AddressUnavailable, invalid
from acknet.controllers.vswitch import AddressBook
from acknet.errors import Conflict
from acknet.model.resources import Resources


def _owner(name: str) -> str:
    return f"LoadBalancer {name}"


def reserve_fixed_slb_addresses(resources: Resources, book: AddressBook) -> dict[str, IPv4Address]:
    """The ``address`` of every intranet LoadBalancer that names one, taken before any allocation."""
    out: dict[str, IPv4Address] = {}
    for name, lb in sorted(resources.load_balancers.items()):
        spec = lb.spec
        if spec.address_type != "intranet" or spec.vswitch is None or spec.address is None:
            continue
        allocator = book.get(spec.vswitch)
        if allocator is None:
            raise invalid(lb, "spec.vswitch", f"VSwitch {spec.vswitch!r} does not exist")
        try:
            allocator.reserve(spec.address, _owner(name))
        except AddressUnavailable as exc:
            raise invalid(lb, "spec.address", str(exc)) from exc
        out[name] = spec.address
    return out


def allocate_slb_addresses(
    resources: Resources,
    book: AddressBook,
    fixed: Mapping[str, IPv4Address],
    previous: Mapping[str, IPv4Address],
) -> dict[str, IPv4Address]:
    """Every intranet LoadBalancer's VIP: the fixed ones, the previous plan's, then the lowest free."""
    out = dict(fixed)
    pending = []
    for name, lb in sorted(resources.load_balancers.items()):
        spec = lb.spec
        if spec.address_type != "intranet" or spec.vswitch is None or name in out:
            continue
        allocator = book.get(spec.vswitch)
        if allocator is None:
            raise invalid(lb, "spec.vswitch", f"VSwitch {spec.vswitch!r} does not exist")
        before = previous.get(name)
        if before is not None and allocator.try_reserve(before, _owner(name)):
            out[name] = before
        else:
            pending.append((name, lb, allocator))
    for name, lb, allocator in pending:
        try:
            out[name] = allocator.allocate(_owner(name))
        except Conflict as exc:
            raise invalid(lb, "spec.vswitch", str(exc)) from exc
    return dict(sorted(out.items()))
