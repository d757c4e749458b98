"""Reading the conntrack table of a namespace: one ctnetlink dump on a plain netlink socket.

What for: the SLB runtime (observe/health.py) counts each backend's live connections for the ``wlc``
scheduler of layer-4 listeners (render/slb.py ``count_connections``). The SLB namespace is the
instance's own, so its table holds only what the instance forwarded and its health checks.

Why not pyroute2's ``NFCTSocket``: measured here with pyroute2 0.9.7, a dump with ``netns=`` costs
about 60 ms (the socket is made anew in the namespace each time), a socket handed over with
``use_socket`` is closed after its first dump, and decoding takes about a millisecond per entry; the
runtime reads every instance with a wlc listener four times a second. The request is one fixed message
(``IPCTNL_MSG_CT_GET`` with ``NLM_F_DUMP``, linux/netfilter/nfnetlink_conntrack.h), and only four
attributes of each answer are needed, decoded with ``struct`` as apply/rtnl.py does for rtnetlink. The
socket is made in the namespace by the caller (nsutil.NetnsSwitcher), so nothing here switches
namespaces. Read-only: nothing in the table is changed.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator
from typing import Final

from acknet.dataplane.render.slb import Flow
from acknet.errors import DataplaneError

NETLINK_NETFILTER: Final = 12
_NLMSG_ERROR: Final = 2
_NLMSG_DONE: Final = 3
_F_REQUEST: Final = 0x1
_F_DUMP: Final = 0x300
_NFNL_SUBSYS_CTNETLINK: Final = 1
_IPCTNL_MSG_CT_GET: Final = 1
# Attributes (nfnetlink_conntrack.h): the entry, its tuples, their address and protocol parts.
_CTA_TUPLE_ORIG: Final = 1
_CTA_TUPLE_REPLY: Final = 2
_CTA_PROTOINFO: Final = 4
_CTA_ID: Final = 12
_CTA_TUPLE_IP: Final = 1
_CTA_TUPLE_PROTO: Final = 2
_CTA_IP_V4_SRC: Final = 1
_CTA_IP_V4_DST: Final = 2
_CTA_PROTO_NUM: Final = 1
_CTA_PROTO_SRC_PORT: Final = 2
_CTA_PROTO_DST_PORT: Final = 3
_CTA_PROTOINFO_TCP: Final = 1
_CTA_PROTOINFO_TCP_STATE: Final = 1
_NLA_TYPE_MASK: Final = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
_HEADER = struct.Struct("=IHHII")  # nlmsghdr
_NFGEN = struct.Struct("=BBH")  # nfgenmsg: family, version, res_id (big-endian, 0 here)
_SEQ: Final = 1


def dump_request() -> bytes:
    """The one request: every IPv4 entry of the namespace's table."""
    body = _NFGEN.pack(socket.AF_INET, 0, 0)
    kind = (_NFNL_SUBSYS_CTNETLINK << 8) | _IPCTNL_MSG_CT_GET
    return _HEADER.pack(_HEADER.size + len(body), kind, _F_REQUEST | _F_DUMP, _SEQ, 0) + body


def _attrs(data: memoryview) -> Iterator[tuple[int, memoryview]]:
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            return
        yield kind & _NLA_TYPE_MASK, data[offset + 4 : offset + length]
        offset += (length + 3) & ~3


def _tuple(data: memoryview) -> tuple[int, str, str, int, int]:
    """(protocol, source, destination, source port, destination port) of a CTA_TUPLE_* attribute."""
    proto, src, dst, sport, dport = 0, "", "", 0, 0
    for kind, value in _attrs(data):
        if kind == _CTA_TUPLE_IP:
            for k, v in _attrs(value):
                if k == _CTA_IP_V4_SRC:
                    src = socket.inet_ntoa(bytes(v))
                elif k == _CTA_IP_V4_DST:
                    dst = socket.inet_ntoa(bytes(v))
        elif kind == _CTA_TUPLE_PROTO:
            for k, v in _attrs(value):
                if k == _CTA_PROTO_NUM:
                    proto = v[0]
                elif k == _CTA_PROTO_SRC_PORT:
                    sport = struct.unpack(">H", v)[0]
                elif k == _CTA_PROTO_DST_PORT:
                    dport = struct.unpack(">H", v)[0]
    return proto, src, dst, sport, dport


def parse_entry(payload: memoryview) -> Flow | None:
    """One IPCTNL_MSG_CT_NEW answer (after its nlmsghdr) as a Flow; None for an entry that is neither
    TCP nor UDP."""
    orig = reply = None
    ident = 0
    state: int | None = None
    for kind, value in _attrs(payload[_NFGEN.size :]):
        if kind == _CTA_TUPLE_ORIG:
            orig = _tuple(value)
        elif kind == _CTA_TUPLE_REPLY:
            reply = _tuple(value)
        elif kind == _CTA_ID:
            ident = struct.unpack(">I", value)[0]
        elif kind == _CTA_PROTOINFO:
            for k, v in _attrs(value):
                if k == _CTA_PROTOINFO_TCP:
                    for k2, v2 in _attrs(v):
                        if k2 == _CTA_PROTOINFO_TCP_STATE:
                            state = v2[0]
    if orig is None or reply is None or orig[0] not in (socket.IPPROTO_TCP, socket.IPPROTO_UDP):
        return None
    tcp = orig[0] == socket.IPPROTO_TCP
    return Flow(ident, orig[0], orig[2], orig[4], reply[1], reply[3], state if tcp else None)


def parse_messages(data: bytes) -> tuple[list[Flow], bool]:
    """The flows in one read of the dump, and whether the dump ended (NLMSG_DONE) in it."""
    view = memoryview(data)
    flows: list[Flow] = []
    offset = 0
    while offset + _HEADER.size <= len(view):
        length, kind, _flags, _seq, _pid = _HEADER.unpack_from(view, offset)
        if length < _HEADER.size:
            break
        payload = view[offset + _HEADER.size : offset + length]
        if kind == _NLMSG_DONE:
            return flows, True
        if kind == _NLMSG_ERROR:
            code = -struct.unpack_from("=i", payload)[0]
            if code:
                raise DataplaneError("dump conntrack", "ctnetlink", code)
        else:
            flow = parse_entry(payload)
            if flow is not None:
                flows.append(flow)
        offset += (length + 3) & ~3
    return flows, False


def dump(sock: socket.socket, timeout: float = 2.0) -> list[Flow]:
    """Every TCP and UDP entry of the table of the namespace ``sock`` was made in (an
    ``AF_NETLINK``/``NETLINK_NETFILTER`` socket); the socket is left open for the caller to close."""
    sock.settimeout(timeout)
    try:
        sock.sendto(dump_request(), (0, 0))
        flows: list[Flow] = []
        while True:
            more, done = parse_messages(sock.recv(1 << 20))
            flows.extend(more)
            if done:
                return flows
    except TimeoutError as exc:
        raise DataplaneError("dump conntrack", "ctnetlink", errno.ETIMEDOUT) from exc
    except OSError as exc:
        raise DataplaneError("dump conntrack", "ctnetlink", exc.errno) from exc
