"""The built-in server: one asyncio process that answers the built-in ports of every pod and ECS instance.

Why one process: a socket keeps the network namespace it was created in (see ``nsutil``), so a
listener per pod costs a few kilobytes instead of a process per pod. The daemon drives it over a unix
socket, one JSON object per line and one JSON line back (always with ``"ok"``):

    {"op": "add", "endpoints": [{"netns": N, "ip": A, "port": P, "protocol": "TCP", "identity": {...}}]}
    {"op": "remove", "endpoints": [{"netns": N, "ip": A, "port": P, "protocol": "UDP"}], "netns": [N]}
    {"op": "list"}
    {"op": "ping"}

``add`` is idempotent (same key: the identity is updated in place); ``remove`` takes endpoint keys
and/or whole namespaces. TCP ports answer an HTTP/1.1 request with JSON: the identity (``pod``,
``namespace``, ``node``, ``podIP`` — or ``ecs``), the ``client`` address as the server saw it and the
``port``; a bare connect is fine, and anything that is not HTTP gets that JSON line and then an echo.
UDP ports answer every datagram with the same JSON.

An open socket keeps a deleted namespace (and its links) alive, so the server drops the endpoints of a
namespace whose ``/var/run/netns`` entry disappeared or was replaced; the daemon should still remove
them first.
"""

from __future__ import annotations

import argparse
import asyncio
import builtins
import contextlib
import errno
import ipaddress
import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from acknet.dataplane.apply import dns_answer
from acknet.dataplane.apply.nsutil import HomeNamespaceLost, NetnsSwitcher, raise_open_file_limit
from acknet.errors import DataplaneError

SERVER_MODULE = "acknet.dataplane.apply.builtin_server"
PROTOCOLS = frozenset({"TCP", "UDP", "SCTP"})

# Probes open up to ~100 connections to one port at once; a short accept queue turns them into SYN
# retransmits one second later, which a 1 s probe reports as a timeout.
_BACKLOG = 1024
_IDLE_SECONDS = 30.0
_MAX_HEADER = 16 * 1024
_CONTROL_LINE_LIMIT = 64 * 1024 * 1024
_SWEEP_SECONDS = 5.0
_HTTP_METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"TRACE ")
# IP_FREEBIND lets the daemon add a pod's endpoints before the pod's address is configured.
_IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
_IPV6_FREEBIND = 78

log = logging.getLogger(__name__)

EndpointKey = tuple[str, str, int, str]


@dataclass(frozen=True)
class BuiltinEndpoint:
    """One built-in socket: where it listens and whom it claims to be."""

    netns: str
    ip: str
    port: int
    protocol: str = "TCP"
    identity: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> EndpointKey:
        return (self.netns, self.ip, self.port, self.protocol)

    def to_json(self) -> dict[str, Any]:
        return {
            "netns": self.netns,
            "ip": self.ip,
            "port": self.port,
            "protocol": self.protocol,
            "identity": dict(self.identity),
        }

    @classmethod
    def from_json(cls, data: object) -> BuiltinEndpoint:
        """Parse one endpoint of a control request; ValueError says which field is wrong."""
        if not isinstance(data, dict):
            raise ValueError("an endpoint must be a JSON object")
        netns, ip, port = data.get("netns"), data.get("ip", "0.0.0.0"), data.get("port")
        protocol, identity = data.get("protocol", "TCP"), data.get("identity", {})
        if not isinstance(netns, str) or not netns or "/" in netns:
            raise ValueError(f"netns must be a namespace name, not {netns!r}")
        if not isinstance(ip, str):
            raise ValueError(f"ip must be a string, not {ip!r}")
        try:
            ip = str(ipaddress.ip_address(ip))
        except ValueError as exc:
            raise ValueError(f"ip {ip!r} is not an IP address") from exc
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            raise ValueError(f"port must be 1-65535, not {port!r}")
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, not {protocol!r}")
        if not isinstance(identity, dict):
            raise ValueError("identity must be a JSON object")
        return cls(netns, ip, port, protocol, identity)


def format_address(peer: object) -> str:
    """``ip:port`` (``[ip]:port`` for IPv6) from a socket address tuple."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peer)


def http_response(body: bytes, *, status: str = "200 OK", head: bool = False) -> bytes:
    """A complete HTTP/1.1 response; ``Connection: close`` keeps the server free of keep-alive state."""
    header = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return header if head else header + body


def _could_be_http(buffer: bytes) -> bool:
    return any(buffer.startswith(m) or m.startswith(buffer) for m in _HTTP_METHODS)


def _header_end(buffer: bytes) -> int:
    ends = [i for i in (buffer.find(b"\r\n\r\n"), buffer.find(b"\n\n")) if i >= 0]
    return min(ends) if ends else -1


class _Listener:
    """A listening socket and what it answers; the asyncio handle is kept only to close it."""

    __slots__ = ("endpoint", "handle", "zones")

    def __init__(self, endpoint: BuiltinEndpoint, zones: dict[str, dns_answer.Records]) -> None:
        self.endpoint = endpoint
        self.handle: asyncio.AbstractServer | asyncio.BaseTransport | None = None
        self.zones = zones  # shared with the server: the DNS tables pushed by the daemon

    def dns_zone(self) -> dns_answer.Records | None:
        """The records to answer from, when this endpoint is a cluster DNS port (identity "dns")."""
        zone = self.endpoint.identity.get("dns")
        return self.zones.get(str(zone), {}) if zone is not None else None

    def reply(self, peer: object) -> bytes:
        ep = self.endpoint
        return json.dumps({**ep.identity, "client": format_address(peer), "port": ep.port}).encode()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


class _TcpSession(asyncio.Protocol):
    """One accepted connection: HTTP request → JSON reply and close; other bytes → JSON line + echo."""

    __slots__ = ("_buffer", "_echo", "_listener", "_peer", "_timer", "_transport")

    def __init__(self, listener: _Listener) -> None:
        self._listener = listener
        self._buffer = b""
        self._echo = False
        self._peer: object = None
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._peer = transport.get_extra_info("peername")
        self._arm_timer()

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        assert self._transport is not None
        self._timer = asyncio.get_running_loop().call_later(_IDLE_SECONDS, self._transport.close)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        zone = self._listener.dns_zone()
        if zone is not None:
            self._dns_over_tcp(transport, data, zone)
            return
        if self._echo:
            transport.write(data)
            self._arm_timer()
            return
        self._buffer += data
        if not _could_be_http(self._buffer[:8]):
            self._echo = True
            transport.write(self._listener.reply(self._peer) + b"\n" + self._buffer)
            self._buffer = b""
            self._arm_timer()
            return
        if _header_end(self._buffer) < 0:
            if len(self._buffer) > _MAX_HEADER:
                transport.write(http_response(b"{}", status="431 Request Header Fields Too Large"))
                transport.close()
            return
        head = self._buffer.startswith(b"HEAD ")
        transport.write(http_response(self._listener.reply(self._peer), head=head))
        transport.close()

    def _dns_over_tcp(self, transport: asyncio.Transport, data: bytes, zone: dns_answer.Records) -> None:
        """RFC 1035 4.2.2: each message is preceded by its two-byte length."""
        self._buffer += data
        while len(self._buffer) >= 2:
            size = int.from_bytes(self._buffer[:2], "big")
            if len(self._buffer) < 2 + size:
                break
            query, self._buffer = self._buffer[2 : 2 + size], self._buffer[2 + size :]
            reply = dns_answer.answer(query, zone)
            if reply is not None:
                transport.write(len(reply).to_bytes(2, "big") + reply)
        self._arm_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._transport = None


class _UdpResponder(asyncio.DatagramProtocol):
    """Answers every datagram with the endpoint's JSON, to the address it came from."""

    __slots__ = ("_listener", "_transport")

    def __init__(self, listener: _Listener) -> None:
        self._listener = listener
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self._transport is None:
            return
        zone = self._listener.dns_zone()
        if zone is not None:
            reply = dns_answer.answer(data, zone)
            if reply is not None:
                self._transport.sendto(reply, addr)
            return
        self._transport.sendto(self._listener.reply(addr), addr)

    def error_received(self, exc: Exception) -> None:
        """ICMP errors for earlier replies (the client went away): nothing to do."""


class BuiltinServer:
    """The endpoints of one emulation and the control socket that edits them."""

    def __init__(self, control_path: Path, sweep_seconds: float = _SWEEP_SECONDS) -> None:
        self._control_path = control_path
        self._sweep_seconds = sweep_seconds
        self._listeners: dict[EndpointKey, _Listener] = {}
        self._switcher = NetnsSwitcher()
        self._stop = asyncio.Event()
        self._zones: dict[str, dns_answer.Records] = {}

    async def add(self, endpoints: Iterable[BuiltinEndpoint]) -> dict[str, Any]:
        """Open what is missing; a failure of one endpoint does not stop the others."""
        added = updated = unchanged = 0
        errors: builtins.list[dict[str, Any]] = []
        for ep in endpoints:
            existing = self._listeners.get(ep.key)
            if existing is not None:
                if dict(existing.endpoint.identity) == dict(ep.identity):
                    unchanged += 1
                else:
                    existing.endpoint = ep
                    updated += 1
                continue
            try:
                self._listeners[ep.key] = await self._open(ep)
                added += 1
            except HomeNamespaceLost:
                self._stop.set()
                raise
            except DataplaneError as exc:
                errors.append(
                    {
                        "endpoint": ep.to_json(),
                        "error": str(exc),
                        "errno": exc.errno,
                        "operation": exc.operation,
                    }
                )
                self._forget_unused(ep.netns)
        return {
            "ok": not errors,
            "added": added,
            "updated": updated,
            "unchanged": unchanged,
            "errors": errors,
        }

    async def _open(self, ep: BuiltinEndpoint) -> _Listener:
        loop = asyncio.get_running_loop()
        v6 = ":" in ep.ip
        family = socket.AF_INET6 if v6 else socket.AF_INET
        kind = socket.SOCK_DGRAM if ep.protocol == "UDP" else socket.SOCK_STREAM
        proto = socket.IPPROTO_SCTP if ep.protocol == "SCTP" else 0
        where = f"{ep.protocol} {format_address((ep.ip, ep.port))} in {ep.netns}"
        try:
            sock = self._switcher.socket(ep.netns, family, kind, proto)
        except OSError as exc:
            raise DataplaneError("create socket", where, exc.errno) from exc
        listener = _Listener(ep, self._zones)
        try:
            if kind == socket.SOCK_STREAM:
                # Not for UDP: there SO_REUSEADDR would let a second socket share the port silently.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if v6:
                sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_FREEBIND, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, _IP_FREEBIND, 1)
            sock.bind((ep.ip, ep.port))
            sock.setblocking(False)
            if kind == socket.SOCK_DGRAM:
                transport, _ = await loop.create_datagram_endpoint(lambda: _UdpResponder(listener), sock=sock)
                listener.handle = transport
            else:
                listener.handle = await loop.create_server(
                    lambda: _TcpSession(listener), sock=sock, backlog=_BACKLOG
                )
        except OSError as exc:
            sock.close()
            raise DataplaneError("listen", where, exc.errno) from exc
        return listener

    def remove(self, keys: Iterable[EndpointKey] = (), netns: Iterable[str] = ()) -> int:
        """Close the endpoints named by key and every endpoint of the namespaces named."""
        doomed = set(keys)
        names = set(netns)
        doomed.update(k for k in self._listeners if k[0] in names)
        removed = 0
        for key in doomed:
            listener = self._listeners.pop(key, None)
            if listener is not None:
                listener.close()
                removed += 1
        for name in names | {k[0] for k in doomed}:
            self._forget_unused(name)
        return removed

    def _forget_unused(self, name: str) -> None:
        # The handle on /var/run/netns/NAME would keep a deleted namespace alive.
        if not any(k[0] == name for k in self._listeners):
            self._switcher.forget(name)

    def endpoints(self) -> builtins.list[BuiltinEndpoint]:
        return [listener.endpoint for listener in self._listeners.values()]

    async def _sweep(self) -> None:
        """Drop endpoints whose namespace was deleted or replaced, so a forgotten remove leaks nothing."""
        while True:
            await asyncio.sleep(self._sweep_seconds)
            for name in {k[0] for k in self._listeners}:
                if not self._switcher.is_current(name):
                    count = self.remove(netns=[name])
                    log.warning("namespace %s is gone: closed its %d endpoint(s)", name, count)

    async def dispatch(self, line: bytes) -> dict[str, Any]:
        """One control request → one reply; never raises for a bad request."""
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "the request is not JSON"}
        if not isinstance(request, dict):
            return {"ok": False, "error": "the request must be a JSON object"}
        op = request.get("op")
        try:
            if op == "ping":
                return {"ok": True, "pid": os.getpid(), "endpoints": len(self._listeners)}
            if op == "list":
                return {"ok": True, "endpoints": [ep.to_json() for ep in self.endpoints()]}
            if op == "dns-records":
                zones = request.get("zones")
                if not isinstance(zones, dict):
                    raise ValueError("zones must map a cluster to its records")
                self._zones.clear()
                self._zones.update(zones)
                return {"ok": True, "zones": len(zones)}
            endpoints = [BuiltinEndpoint.from_json(e) for e in _json_list(request, "endpoints")]
            if op == "add":
                return await self.add(endpoints)
            if op == "remove":
                names = _json_list(request, "netns")
                if not all(isinstance(n, str) for n in names):
                    raise ValueError("netns must be a list of namespace names")
                removed = self.remove((ep.key for ep in endpoints), cast(builtins.list[str], names))
                return {"ok": True, "removed": removed}
        except ValueError as exc:
            return {"ok": False, "error": str(exc), "errno": errno.EINVAL}
        except HomeNamespaceLost as exc:
            log.critical("%s; stopping", exc)
            return {"ok": False, "error": str(exc), "errno": exc.errno}
        return {"ok": False, "error": f"unknown op {op!r}; use add, remove, list or ping"}

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                reply = await self.dispatch(line)
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError) as exc:  # ValueError: a line over the limit
            log.warning("control connection dropped: %s", exc)
        finally:
            writer.close()

    def _claim_control_path(self) -> None:
        path = self._control_path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise DataplaneError("start built-in server", str(path), errno.EEXIST, "not a socket")
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(str(path))
                except OSError:
                    path.unlink()  # stale: its server is gone
                else:
                    raise DataplaneError(
                        "start built-in server", str(path), errno.EADDRINUSE, "one is running"
                    )

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT, then close every socket and remove the control socket."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        self._claim_control_path()
        control = await asyncio.start_unix_server(
            self._serve_client, path=str(self._control_path), limit=_CONTROL_LINE_LIMIT
        )
        control_id = os.stat(self._control_path).st_ino
        sweeper = loop.create_task(self._sweep())
        log.info("built-in server %d listening on %s", os.getpid(), self._control_path)
        try:
            await self._stop.wait()
        finally:
            sweeper.cancel()
            control.close()
            self.remove(netns={k[0] for k in self._listeners})
            with contextlib.suppress(OSError):
                if os.stat(self._control_path).st_ino == control_id:
                    self._control_path.unlink()
            self._switcher.close()


def _json_list(request: Mapping[str, Any], name: str) -> builtins.list[Any]:
    value = request.get(name, [])
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list")
    return value


class BuiltinServerClient:
    """The daemon's side of the control socket: one short connection per call."""

    def __init__(self, control_path: str | Path, timeout: float = 30.0) -> None:
        self.path = Path(control_path)
        self.timeout = timeout

    def call(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Send one request; a refusal or an unreachable server becomes DataplaneError."""
        op = str(request.get("op"))
        buffer = b""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(str(self.path))
                sock.sendall(json.dumps(request).encode() + b"\n")
                while not buffer.endswith(b"\n"):
                    chunk = sock.recv(1 << 16)
                    if not chunk:
                        break
                    buffer += chunk
        except TimeoutError as exc:
            raise DataplaneError(f"built-in server {op}", str(self.path), errno.ETIMEDOUT) from exc
        except OSError as exc:
            raise DataplaneError(f"built-in server {op}", str(self.path), exc.errno) from exc
        try:
            reply = json.loads(buffer)
        except ValueError as exc:
            raise DataplaneError(f"built-in server {op}", str(self.path), None, "no JSON reply") from exc
        if not isinstance(reply, dict):
            raise DataplaneError(f"built-in server {op}", str(self.path), None, "reply is not an object")
        if not reply.get("ok") and op != "add":
            raise DataplaneError(
                f"built-in server {op}", str(self.path), reply.get("errno"), reply.get("error", "")
            )
        return reply

    def ping(self) -> dict[str, Any]:
        """``{"pid": ..., "endpoints": ...}``: the server is up and answering."""
        return self.call({"op": "ping"})

    def add(self, endpoints: Iterable[BuiltinEndpoint]) -> int:
        """Open endpoints (idempotent) and return how many were new.

        When some fail the rest are still open; DataplaneError names the first failure and the errno.
        """
        eps = builtins.list(endpoints)
        reply = self.call({"op": "add", "endpoints": [ep.to_json() for ep in eps]})
        errors = reply.get("errors") or []
        if errors:
            first = errors[0]
            raise DataplaneError(
                str(first.get("operation", "listen")),
                json.dumps(first.get("endpoint")),
                first.get("errno"),
                f"{len(errors)} of {len(eps)} endpoint(s) failed; first: {first.get('error')}",
            )
        if not reply.get("ok"):
            raise DataplaneError(
                "built-in server add", str(self.path), reply.get("errno"), reply.get("error", "")
            )
        return int(reply.get("added", 0))

    def remove(self, endpoints: Iterable[BuiltinEndpoint] = (), netns: Iterable[str] = ()) -> int:
        """Close endpoints by key and/or every endpoint of whole namespaces; returns how many closed."""
        request = {
            "op": "remove",
            "endpoints": [ep.to_json() for ep in endpoints],
            "netns": builtins.list(netns),
        }
        return int(self.call(request).get("removed", 0))

    def set_dns_records(self, zones: Mapping[str, dns_answer.Records]) -> None:
        """Replaces the DNS tables the cluster DNS ports answer from (cluster -> name -> records)."""
        reply = self.call({"op": "dns-records", "zones": {k: dict(v) for k, v in zones.items()}})
        if not reply.get("ok"):
            raise DataplaneError(
                "set DNS records", str(self.path), reply.get("errno"), reply.get("error", "")
            )

    def list(self) -> builtins.list[BuiltinEndpoint]:
        return [BuiltinEndpoint.from_json(e) for e in self.call({"op": "list"}).get("endpoints", [])]


def start_builtin_server(
    control_path: str | Path,
    *,
    log_path: str | Path | None = None,
    timeout: float = 10.0,
    sweep_seconds: float = _SWEEP_SECONDS,
) -> subprocess.Popen[bytes]:
    """Start the server process and return once it answers a ping.

    Its output goes to ``log_path`` (default: the control path + ``.log``). It runs in its own session
    so that a Ctrl-C at the terminal that started the daemon does not take it down.
    """
    control = Path(control_path)
    log_file = Path(log_path) if log_path is not None else control.with_name(control.name + ".log")
    control.parent.mkdir(parents=True, exist_ok=True)
    src_root = str(Path(__file__).resolve().parents[3])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src_root, env.get("PYTHONPATH", "")) if p)
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                SERVER_MODULE,
                "--control",
                str(control),
                "--sweep-seconds",
                str(sweep_seconds),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    client = BuiltinServerClient(control, timeout=1.0)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise DataplaneError(
                "start built-in server", str(control), None, f"exited {proc.returncode}: {_tail(log_file)}"
            )
        try:
            if client.ping().get("pid") == proc.pid:
                return proc
        except DataplaneError:
            pass
        if time.monotonic() > deadline:
            stop_builtin_server(proc.pid)
            raise DataplaneError("start built-in server", str(control), errno.ETIMEDOUT, _tail(log_file))
        time.sleep(0.02)


def _tail(path: Path, size: int = 2000) -> str:
    try:
        return path.read_bytes()[-size:].decode(errors="replace").strip()
    except OSError:
        return ""


def _is_builtin_server(pid: int) -> bool:
    """Guards against a recycled PID: only signal a process that is our server."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return SERVER_MODULE.encode() in cmdline


def _gone(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in {"Z", "X"}


def stop_builtin_server(pid: int, timeout: float = 5.0) -> bool:
    """Stop the server with this PID (SIGTERM, then SIGKILL); False if no such server was running."""
    if not _is_builtin_server(pid):
        return False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if _gone(pid):
                return True
            time.sleep(0.02)
    return _gone(pid)


def main(argv: builtins.list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m {SERVER_MODULE}",
        description="Serve the built-in ports of every pod and ECS instance from one process.",
    )
    parser.add_argument("--control", required=True, type=Path, help="unix socket for control requests")
    parser.add_argument(
        "--sweep-seconds",
        type=float,
        default=_SWEEP_SECONDS,
        help="how often to drop the endpoints of deleted namespaces",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s builtin-server %(levelname)s %(message)s")
    os.umask(0o077)  # the control socket accepts root's orders: nobody else may connect
    raise_open_file_limit()
    try:
        asyncio.run(BuiltinServer(args.control, args.sweep_seconds).run())
    except DataplaneError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
