"""The few rtnetlink requests apply sends, encoded with ``struct`` and sent on a plain socket.

Why not pyroute2 here: its request API costs about half a millisecond of Python per message (argument
processing, an asyncio loop turn per call), which made encoding, not the kernel, the cost of building
a thousand pods. These are the same messages, field for field (routes ``proto static``, rules
``proto unspec``, addresses without broadcast, links up at creation), built directly; every request
asks for an ack, and a negative ack raises ``NetlinkError`` with the kernel's errno. VXLAN devices
and FDB entries (Flannel's vxlan backend only) and every dump but the link dump stay with pyroute2,
which ``netlink`` imports only then: importing it costs every command a tenth of a second.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from typing import Final

# linux/netlink.h
_NLMSG_ERROR: Final = 2
_NLMSG_DONE: Final = 3
_F_REQUEST: Final = 0x1
_F_ACK: Final = 0x4
_F_DUMP: Final = 0x300
_F_REPLACE: Final = 0x100
_F_EXCL: Final = 0x200
_F_CREATE: Final = 0x400
# linux/rtnetlink.h
_RTM_NEWLINK: Final = 16
_RTM_DELLINK: Final = 17
_RTM_GETLINK: Final = 18
_RTM_SETLINK: Final = 19
_RTM_NEWADDR: Final = 20
_RTM_DELADDR: Final = 21
_RTM_NEWROUTE: Final = 24
_RTM_DELROUTE: Final = 25
_RTM_NEWNEIGH: Final = 28
_RTM_DELNEIGH: Final = 29
_RTM_NEWRULE: Final = 32
_RTM_DELRULE: Final = 33
_IFF_UP: Final = 0x1
_IFLA_ADDRESS: Final = 1
_IFLA_IFNAME: Final = 3
_IFLA_MASTER: Final = 10
_IFLA_PROTINFO: Final = 12
_IFLA_LINKINFO: Final = 18
_IFLA_NET_NS_FD: Final = 28
_IFLA_NUM_TX_QUEUES: Final = 31
_IFLA_NUM_RX_QUEUES: Final = 32
_IFLA_INFO_KIND: Final = 1
_IFLA_INFO_DATA: Final = 2
_VETH_INFO_PEER: Final = 1
_IFLA_BRPORT_MODE: Final = 4  # linux/if_link.h: the port's hairpin mode
_NLA_F_NESTED: Final = 0x8000
_AF_BRIDGE: Final = 7
_IFA_ADDRESS: Final = 1
_IFA_LOCAL: Final = 2
_IFA_FLAGS: Final = 8
_RTA_DST: Final = 1
_RTA_OIF: Final = 4
_RTA_GATEWAY: Final = 5
_RTA_TABLE: Final = 15
_RTPROT_STATIC: Final = 4
_RTN_UNICAST: Final = 1
_RT_SCOPE_NOWHERE: Final = 255
_FRA_DST: Final = 1
_FRA_SRC: Final = 2
_FRA_PRIORITY: Final = 6
_FRA_TABLE: Final = 15
_FRA_FWMARK: Final = 10
_FR_ACT_TO_TBL: Final = 1
_NDA_DST: Final = 1
_NDA_LLADDR: Final = 2

_HEADER = struct.Struct("=IHHII")
_ATTR = struct.Struct("=HH")
_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")  # also struct fib_rule_hdr: same layout
_NDMSG = struct.Struct("=BBHiHBB")
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")


class NetlinkError(Exception):
    """A negative ack; ``code`` is the kernel's errno (the shape of pyroute2's exception of this name,
    which ``netlink`` turns into this one)."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(code, message or errno.errorcode.get(code, str(code)))
        self.code = code


def _attr(kind: int, payload: bytes) -> bytes:
    size = _ATTR.size + len(payload)
    return _ATTR.pack(size, kind) + payload + b"\0" * (-size % 4)


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, _U32.pack(value))


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _ifname(name: str) -> bytes:
    return _attr(_IFLA_IFNAME, name.encode() + b"\0")


# A veth gets one RX and one TX queue per possible CPU unless told otherwise, each with its own
# sysfs objects: on two CPUs, asking for one of each makes creating a pair 2.5 times as fast. A
# queue per CPU only matters for XDP and GRO spread over CPUs, which the emulation never uses.
_ONE_QUEUE: Final = _u32(_IFLA_NUM_TX_QUEUES, 1) + _u32(_IFLA_NUM_RX_QUEUES, 1)


class RtnlSocket:
    """One NETLINK_ROUTE socket (opened by the caller in the namespace it must act on).

    Requests are sent one at a time and each waits for its ack: the next object may depend on this
    one (a route on an address), and an error names exactly the object that failed.
    """

    __slots__ = ("_buffer", "_seq", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._seq = 0
        self._buffer = bytearray(1 << 16)

    def close(self) -> None:
        self.sock.close()

    def _send(self, kind: int, flags: int, body: bytes) -> int:
        self._seq = seq = (self._seq + 1) & 0xFFFFFFFF
        self.sock.send(_HEADER.pack(_HEADER.size + len(body), kind, flags, seq, 0) + body)
        return seq

    def _messages(self) -> Iterator[tuple[int, int, memoryview]]:
        """(type, seq, payload) of every message in the next datagram."""
        size = self.sock.recv_into(self._buffer)
        view = memoryview(self._buffer)[:size]
        offset = 0
        while offset + _HEADER.size <= size:
            length, kind, _, seq, _ = _HEADER.unpack_from(view, offset)
            if length < _HEADER.size:
                break
            yield kind, seq, view[offset + _HEADER.size : offset + length]
            offset += (length + 3) & ~3

    def request(self, kind: int, flags: int, body: bytes) -> None:
        """Send one request and wait for its ack; a negative ack raises NetlinkError(errno)."""
        seq = self._send(kind, flags | _F_REQUEST | _F_ACK, body)
        while True:
            for mtype, mseq, payload in self._messages():
                if mtype == _NLMSG_ERROR and mseq == seq:
                    code = -_I32.unpack_from(payload)[0]
                    if code:
                        raise NetlinkError(code, f"{errno.errorcode.get(code, code)}")
                    return

    def links(self) -> dict[str, int]:
        """Every interface of the namespace: name -> ifindex."""
        seq = self._send(_RTM_GETLINK, _F_REQUEST | _F_DUMP, _IFINFO.pack(0, 0, 0, 0, 0))
        found: dict[str, int] = {}
        while True:
            for mtype, mseq, payload in self._messages():
                if mseq != seq:
                    continue
                if mtype == _NLMSG_DONE:
                    return found
                if mtype == _NLMSG_ERROR:
                    code = -_I32.unpack_from(payload)[0]
                    raise NetlinkError(code, f"link dump: {errno.errorcode.get(code, code)}")
                if mtype != _RTM_NEWLINK:
                    continue
                index = _IFINFO.unpack_from(payload)[2]
                offset = _IFINFO.size
                while offset + _ATTR.size <= len(payload):
                    alen, akind = _ATTR.unpack_from(payload, offset)
                    if alen < _ATTR.size:
                        break
                    if akind & 0x3FFF == _IFLA_IFNAME:
                        name = bytes(payload[offset + _ATTR.size : offset + alen]).rstrip(b"\0")
                        found[name.decode()] = index
                        break
                    offset += (alen + 3) & ~3

    # -- links ---------------------------------------------------------------------------------------

    def add_bridge(self, name: str, index: int, mac: str | None) -> None:
        """A bridge, up, with the ifindex given."""
        attrs = _ifname(name) + (_attr(_IFLA_ADDRESS, _mac(mac)) if mac else b"")
        attrs += _attr(_IFLA_LINKINFO, _attr(_IFLA_INFO_KIND, b"bridge\0"))
        body = _IFINFO.pack(0, 0, index, _IFF_UP, _IFF_UP) + attrs
        self.request(_RTM_NEWLINK, _F_CREATE | _F_EXCL, body)

    def add_veth(
        self,
        name: str,
        index: int,
        mac: str | None,
        master: int | None,
        peer: str,
        peer_index: int,
        peer_mac: str | None,
        peer_netns_fd: int,
    ) -> None:
        """A veth pair, each end with the ifindex given; the peer is born in ``peer_netns_fd``, down.

        The kernel takes the peer's ifindex from the peer's ifinfomsg once the first end's is given,
        so the peer needs no lookup; bring it up with ``set_link`` from its own namespace (IFF_UP in
        the peer's ifinfomsg is refused with ENOTCONN).
        """
        peer_attrs = _ifname(peer) + _ONE_QUEUE + (_attr(_IFLA_ADDRESS, _mac(peer_mac)) if peer_mac else b"")
        peer_attrs += _u32(_IFLA_NET_NS_FD, peer_netns_fd)
        peer_info = _IFINFO.pack(0, 0, peer_index, 0, 0) + peer_attrs
        linkinfo = _attr(_IFLA_INFO_KIND, b"veth\0") + _attr(
            _IFLA_INFO_DATA, _attr(_VETH_INFO_PEER, peer_info)
        )
        attrs = _ifname(name) + _ONE_QUEUE + (_attr(_IFLA_ADDRESS, _mac(mac)) if mac else b"")
        if master is not None:
            attrs += _u32(_IFLA_MASTER, master)
        attrs += _attr(_IFLA_LINKINFO, linkinfo)
        body = _IFINFO.pack(0, 0, index, _IFF_UP, _IFF_UP) + attrs
        self.request(_RTM_NEWLINK, _F_CREATE | _F_EXCL, body)

    def set_link(self, index: int, mac: str | None = None, master: int | None = None) -> None:
        """Bring a link up, and set its MAC and master when given."""
        attrs = _attr(_IFLA_ADDRESS, _mac(mac)) if mac else b""
        if master is not None:
            attrs += _u32(_IFLA_MASTER, master)
        self.request(_RTM_NEWLINK, 0, _IFINFO.pack(0, 0, index, _IFF_UP, _IFF_UP) + attrs)

    def set_hairpin(self, index: int) -> None:
        """``bridge link set dev X hairpin on``: the bridge may send a frame back out of the port it came
        in by (a pod reaching itself through its Service, DNAT done on the bridged packet)."""
        protinfo = _attr(_IFLA_PROTINFO | _NLA_F_NESTED, _attr(_IFLA_BRPORT_MODE, b"\x01"))
        self.request(_RTM_SETLINK, 0, _IFINFO.pack(_AF_BRIDGE, 0, index, 0, 0) + protinfo)

    def delete_link(self, index: int) -> None:
        self.request(_RTM_DELLINK, 0, _IFINFO.pack(0, 0, index, 0, 0))

    # -- addresses, routes, rules, neighbours ---------------------------------------------------------

    def address(self, add: bool, index: int, address: IPv4Address, prefixlen: int, flags: int = 0) -> None:
        packed = address.packed
        attrs = _attr(_IFA_LOCAL, packed) + _attr(_IFA_ADDRESS, packed)
        if flags:
            attrs += _u32(_IFA_FLAGS, flags)
        body = _IFADDR.pack(socket.AF_INET, prefixlen, flags & 0xFF, 0, index) + attrs
        if add:
            self.request(_RTM_NEWADDR, _F_CREATE | _F_EXCL, body)
        else:
            self.request(_RTM_DELADDR, 0, body)

    def replace_route(
        self,
        dst: IPv4Network,
        table: int,
        oif: int,
        scope: int,
        gateway: IPv4Address | None,
        flags: int,
    ) -> None:
        attrs = _attr(_RTA_DST, dst.network_address.packed) if dst.prefixlen else b""
        attrs += _u32(_RTA_TABLE, table) + _u32(_RTA_OIF, oif)
        if gateway is not None:
            attrs += _attr(_RTA_GATEWAY, gateway.packed)
        header = _RTMSG.pack(
            socket.AF_INET, dst.prefixlen, 0, 0, table if table < 256 else 0, _RTPROT_STATIC, scope,
            _RTN_UNICAST, flags,
        )  # fmt: skip
        self.request(_RTM_NEWROUTE, _F_CREATE | _F_REPLACE, header + attrs)

    def delete_route(self, dst: IPv4Network, table: int) -> None:
        """Whatever route ``dst`` has in ``table`` (any type, scope, protocol or next hop)."""
        attrs = _attr(_RTA_DST, dst.network_address.packed) if dst.prefixlen else b""
        attrs += _u32(_RTA_TABLE, table)
        header = _RTMSG.pack(
            socket.AF_INET, dst.prefixlen, 0, 0, table if table < 256 else 0, 0, _RT_SCOPE_NOWHERE, 0, 0
        )
        self.request(_RTM_DELROUTE, 0, header + attrs)

    def rule(
        self,
        add: bool,
        priority: int,
        table: int,
        src: IPv4Network | None,
        dst: IPv4Network | None,
        fwmark: int | None = None,
    ) -> None:
        attrs = _u32(_FRA_PRIORITY, priority) + _u32(_FRA_TABLE, table)
        if fwmark is not None:
            attrs += _u32(_FRA_FWMARK, fwmark)
        if src is not None:
            attrs += _attr(_FRA_SRC, src.network_address.packed)
        if dst is not None:
            attrs += _attr(_FRA_DST, dst.network_address.packed)
        header = _RTMSG.pack(
            socket.AF_INET,
            dst.prefixlen if dst is not None else 0,
            src.prefixlen if src is not None else 0,
            0,
            table if table < 256 else 0,
            0,
            0,
            _FR_ACT_TO_TBL,
            0,
        )
        if add:
            self.request(_RTM_NEWRULE, _F_CREATE | _F_EXCL, header + attrs)
        else:
            self.request(_RTM_DELRULE, 0, header + attrs)

    def neighbour(self, add: bool, index: int, address: IPv4Address, mac: str, state: int) -> None:
        attrs = _attr(_NDA_DST, address.packed)
        if add:
            attrs += _attr(_NDA_LLADDR, _mac(mac))
            body = _NDMSG.pack(socket.AF_INET, 0, 0, index, state, 0, 0) + attrs
            self.request(_RTM_NEWNEIGH, _F_CREATE | _F_REPLACE, body)
        else:
            self.request(_RTM_DELNEIGH, 0, _NDMSG.pack(socket.AF_INET, 0, 0, index, 0, 0, 0) + attrs)
