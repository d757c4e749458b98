"""The ctnetlink dump reader (apply/conntrack.py): the request it sends and the answers it decodes,
on messages built here byte by byte as the kernel lays them out. Pure, no root; the live wlc test
reads a real table."""

from __future__ import annotations

import socket
import struct

import pytest

from acknet.dataplane.apply import conntrack
from acknet.dataplane.render.slb import Flow
from acknet.errors import DataplaneError

NESTED = 0x8000


def attr(kind: int, payload: bytes, nested: bool = False) -> bytes:
    body = struct.pack("=HH", 4 + len(payload), kind | (NESTED if nested else 0)) + payload
    return body + b"\0" * (-len(body) % 4)


def tuple_attr(kind: int, proto: int, src: str, dst: str, sport: int, dport: int) -> bytes:
    ip = attr(1, attr(1, socket.inet_aton(src)) + attr(2, socket.inet_aton(dst)), nested=True)
    ports = attr(1, bytes([proto])) + attr(2, struct.pack(">H", sport)) + attr(3, struct.pack(">H", dport))
    return attr(kind, ip + attr(2, ports, nested=True), nested=True)


def message(kind: int, payload: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(payload), kind, 2, 1, 0) + payload


def entry(ident: int, proto: int, state: int | None) -> bytes:
    body = struct.pack("=BBH", socket.AF_INET, 0, 0)
    body += tuple_attr(1, proto, "203.0.113.1", "198.51.100.10", 40000, 80)
    body += tuple_attr(2, proto, "192.168.8.11", "203.0.113.1", 8080, 40000)
    if state is not None:
        body += attr(4, attr(1, attr(1, bytes([state])), nested=True), nested=True)
    body += attr(12, struct.pack(">I", ident))
    return message(0x0100, body)


def test_the_dump_request() -> None:
    request = conntrack.dump_request()
    length, kind, flags, _seq, _pid = struct.unpack_from("=IHHII", request)
    assert (length, kind, flags) == (len(request), 0x0101, 0x301)  # ctnetlink GET, request + dump
    assert request[16:] == bytes([socket.AF_INET, 0, 0, 0])


@pytest.mark.parametrize(
    ("proto", "state", "expected_state"),
    [(6, 3, 3), (6, 7, 7), (17, None, None)],
    ids=["tcp-established", "tcp-time-wait", "udp"],
)
def test_entries_decode_to_flows(proto: int, state: int | None, expected_state: int | None) -> None:
    flows, done = conntrack.parse_messages(entry(77, proto, state) + message(3, b"\0\0\0\0"))
    assert done
    assert flows == [Flow(77, proto, "198.51.100.10", 80, "192.168.8.11", 8080, expected_state)]


def test_a_dump_in_pieces_and_other_protocols() -> None:
    flows, done = conntrack.parse_messages(entry(1, 6, 3) + entry(2, 1, None))  # ICMP: left out
    assert not done and [f.id for f in flows] == [1]


def test_a_negative_ack_carries_the_errno() -> None:
    with pytest.raises(DataplaneError, match="EPERM"):
        conntrack.parse_messages(message(2, struct.pack("=i", -1) + b"\0" * 16))
