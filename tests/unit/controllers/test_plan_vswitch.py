"""VSwitch bookkeeping: reserved addresses, the .253 gateway, lowest-free allocation, usage counts."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from acknet.controllers.exceptions import AddressUnavailable, VSwitchFull
from acknet.controllers.vswitch import VSwitchAllocator, gateway, reserved
from acknet.errors import Conflict


def ip(text: str) -> IPv4Address:
    return IPv4Address(text)


def allocator(cidr: str = "192.168.0.0/24") -> VSwitchAllocator:
    return VSwitchAllocator("vsw", "vpc", "cn-hangzhou-h", IPv4Network(cidr))


@pytest.mark.parametrize(
    ("cidr", "gw", "reserved_addresses"),
    [
        pytest.param(
            "192.168.0.0/24",
            "192.168.0.253",
            ("192.168.0.0", "192.168.0.253", "192.168.0.254", "192.168.0.255"),
            id="slash24-dot253",
        ),
        pytest.param(
            "192.168.32.0/19",
            "192.168.63.253",
            ("192.168.32.0", "192.168.63.253", "192.168.63.254", "192.168.63.255"),
            id="slash19-ack-pod-vswitch",
        ),
        pytest.param(
            "10.0.0.0/29", "10.0.0.5", ("10.0.0.0", "10.0.0.5", "10.0.0.6", "10.0.0.7"), id="slash29-smallest"
        ),
        pytest.param(
            "172.16.0.0/16",
            "172.16.255.253",
            ("172.16.0.0", "172.16.255.253", "172.16.255.254", "172.16.255.255"),
            id="slash16-largest",
        ),
    ],
)
def test_gateway_is_broadcast_minus_two_and_first_plus_last_three_are_reserved(
    cidr: str, gw: str, reserved_addresses: tuple[str, ...]
) -> None:
    network = IPv4Network(cidr)
    assert gateway(network) == ip(gw)
    assert reserved(network) == tuple(ip(a) for a in reserved_addresses)
    assert gateway(network) in reserved(network)


def test_allocates_lowest_first_until_full() -> None:
    vsw = allocator("10.0.0.0/29")
    assert [vsw.allocate(f"o{i}") for i in range(4)] == [ip(f"10.0.0.{i}") for i in (1, 2, 3, 4)]
    with pytest.raises(VSwitchFull, match=r"VSwitch vsw \(10.0.0.0/29\) has no free address for o5"):
        vsw.allocate("o5")
    assert issubclass(VSwitchFull, Conflict)


def test_allocation_skips_addresses_already_taken() -> None:
    vsw = allocator()
    vsw.reserve(ip("192.168.0.1"), "ecs")
    vsw.reserve(ip("192.168.0.3"), "slb")
    assert [vsw.allocate("a"), vsw.allocate("b"), vsw.allocate("c")] == [
        ip("192.168.0.2"),
        ip("192.168.0.4"),
        ip("192.168.0.5"),
    ]
    assert vsw.owner(ip("192.168.0.3")) == "slb"


@pytest.mark.parametrize(
    ("address", "message"),
    [
        pytest.param("192.168.1.7", "is outside VSwitch vsw", id="outside"),
        pytest.param("192.168.0.0", "is reserved", id="network-address"),
        pytest.param("192.168.0.253", "is reserved", id="gateway"),
        pytest.param("192.168.0.254", "is reserved", id="second-to-last"),
        pytest.param("192.168.0.255", "is reserved", id="broadcast"),
        pytest.param("192.168.0.9", "already used by ECS db-1", id="taken"),
    ],
)
def test_reserve_refuses_unusable_addresses(address: str, message: str) -> None:
    vsw = allocator()
    vsw.reserve(ip("192.168.0.9"), "ECS db-1")
    with pytest.raises(AddressUnavailable, match=message):
        vsw.reserve(ip(address), "someone")
    assert not vsw.try_reserve(ip(address), "someone")


def test_held_addresses_are_handed_out_only_when_nothing_else_is_free() -> None:
    vsw = allocator("10.0.0.0/29")
    vsw.hold([ip("10.0.0.1"), ip("10.0.0.3")])
    assert [vsw.allocate(x) for x in "ab"] == [ip("10.0.0.2"), ip("10.0.0.4")]
    assert vsw.try_reserve(ip("10.0.0.3"), "the previous owner")
    assert vsw.allocate("c") == ip("10.0.0.1")
    with pytest.raises(VSwitchFull):
        vsw.allocate("d")


@pytest.mark.parametrize(
    ("cidr", "allocations", "used", "free"),
    [
        pytest.param("192.168.0.0/24", 0, 0, 252, id="empty-slash24"),
        pytest.param("192.168.0.0/24", 10, 10, 242, id="ten-used"),
        pytest.param("10.0.0.0/29", 4, 4, 0, id="full-slash29"),
    ],
)
def test_usage_counts(cidr: str, allocations: int, used: int, free: int) -> None:
    vsw = allocator(cidr)
    for i in range(allocations):
        vsw.allocate(str(i))
    usage = vsw.usage()
    assert (usage.used, usage.free) == (used, free)
    assert usage.gateway == gateway(IPv4Network(cidr))
    assert (usage.name, usage.vpc, usage.zone) == ("vsw", "vpc", "cn-hangzhou-h")


def test_plan_counts_enis_pods_and_slb_vips(docs, plan_yaml) -> None:
    slb = """
---
apiVersion: acknet.io/v1
kind: LoadBalancer
metadata: {name: fixed}
spec: {addressType: intranet, vswitch: node-h, address: 192.168.0.100}
---
apiVersion: acknet.io/v1
kind: LoadBalancer
metadata: {name: auto}
spec: {addressType: intranet, vswitch: node-h}
"""
    text = docs.CLOUD + docs.cluster(docs.pool(count=2)) + docs.deployment("web", 3) + slb
    planned = plan_yaml(text)
    usage = {u.name: u for u in planned.vswitches}
    # node-h: two node primary IPs and two SLB VIPs; pod-h: the pods' addresses on secondary ENIs.
    assert (usage["node-h"].used, usage["node-h"].free) == (4, 248)
    assert usage["pod-h"].used == 3
    assert usage["pod-h"].gateway == ip("192.168.63.253")
    assert planned.slb_addresses == {"auto": ip("192.168.0.3"), "fixed": ip("192.168.0.100")}
