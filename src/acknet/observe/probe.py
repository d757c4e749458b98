"""Real packets between namespaces, many at once, and the verdicts they imply.

Each probe's socket is made in its source namespace (setns, socket, setns back, on the event loop's
own thread; see ``nsutil``) and then driven by one asyncio loop, so a hundred dropped packets cost one
timeout rather than a hundred. TCP (and SCTP) probes connect and, towards a built-in port, also send an
HTTP GET and read the JSON naming the pod; UDP probes send a datagram and wait for the echo. A cluster
DNS port (CoreDNS's 53) is asked a real DNS question instead, over UDP or TCP, and any DNS answer
counts. An ICMP port unreachable surfaces as a refusal on the connected UDP socket.

A request through the Ingress (``ProbeJob.ingress``) is a real ``GET path`` with ``Host: host`` (over
TLS with SNI = host for https) to the Ingress controller's VIP: it passes when the answer comes from a
backend pod of the rule the request should match, never from NGINX itself (its 308, 403, 404, 502, 503
or 504). ``verdicts`` then asks for every request to pass and every backend of each rule to have
answered one, since NGINX retries the next upstream when one does not accept the connection.

Errors form a closed set: ``timeout`` (nothing came back), ``refused`` (RST or ICMP port
unreachable), ``reset``, ``unreachable`` (no route, host or network unreachable), ``blocked`` (a
firewall in the source namespace refused to send), ``unsupported`` (protocol not in this kernel),
``bad-reply`` (connected, but the built-in reply was not what it should be; through the Ingress: NGINX
answered itself, or a pod that is not a backend of the rule did), ``no-namespace``,
``no-address`` (nothing to connect to: a headless Service without endpoints) and ``error`` (anything
else; ``detail`` says what).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import socket
import ssl
import time
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.message
import dns.rcode

from acknet.dataplane.apply.nsutil import HomeNamespaceLost, NetnsSwitcher, raise_open_file_limit
from acknet.errors import DataplaneError

DEFAULT_TIMEOUT = 1.0
# One descriptor per probe in flight; 4096 lets 10,000 dropped probes finish in about three timeouts.
_MAX_CONCURRENCY = 4096
_MAX_REPLY = 1 << 16
_UDP_PAYLOAD = b"acknet-probe\n"
# What a probe asks a DNS port: the cluster's own DNS Service, whose answer every cluster has.
_DNS_QUESTION = "kube-dns.kube-system.svc.cluster.local."

TIMEOUT = "timeout"
REFUSED = "refused"
RESET = "reset"
UNREACHABLE = "unreachable"
BLOCKED = "blocked"
UNSUPPORTED = "unsupported"
BAD_REPLY = "bad-reply"
NO_NAMESPACE = "no-namespace"
NO_ADDRESS = "no-address"
ERROR = "error"

_ERRNO_KINDS = {
    errno.ECONNREFUSED: REFUSED,
    errno.ECONNRESET: RESET,
    errno.ECONNABORTED: RESET,
    errno.EPIPE: RESET,
    errno.EHOSTUNREACH: UNREACHABLE,
    errno.ENETUNREACH: UNREACHABLE,
    errno.EHOSTDOWN: UNREACHABLE,
    errno.ENETDOWN: UNREACHABLE,
    errno.EADDRNOTAVAIL: UNREACHABLE,
    errno.ETIMEDOUT: TIMEOUT,
    errno.EPERM: BLOCKED,
    errno.EACCES: BLOCKED,
    errno.EPROTONOSUPPORT: UNSUPPORTED,
    errno.ESOCKTNOSUPPORT: UNSUPPORTED,
    errno.EAFNOSUPPORT: UNSUPPORTED,
}


@dataclass(frozen=True)
class ProbeJob:
    """One probe: from a namespace to ``ip:port``; ``source``/``target`` label it for verdicts.

    ``http`` marks a built-in port, which must also answer an HTTP GET with its JSON; ``dns`` a port
    that speaks DNS, which must answer a DNS query. ``label_port`` is the port the verdict names when
    it is not the one connected to (a Service port reached through a NodePort). An empty ``ip``
    means there is no address to connect to (a headless Service without endpoints): not allowed.
    ``http_any`` asks for any HTTP answer but a proxy's own failure (502, 503, 504): a layer-7 SLB
    listener in front of servers that are not the built-in one.
    """

    netns: str
    ip: str
    port: int
    protocol: str = "TCP"
    http: bool = False
    dns: bool = False
    source: str = ""
    target: str = ""
    source_ip: str | None = None
    label_port: int | None = None
    http_any: bool = False
    tls: bool = False  # the HTTP request goes over TLS (an SLB's HTTPS listener)
    # Seconds to wait, when this probe needs longer than the run's timeout: many attempts through one
    # SLB all land on the same few servers at once (and a layer-7 one adds a proxy and TLS).
    timeout: float | None = None
    # Seconds to wait for the reply once connected, when longer than the timeout (which then bounds the
    # connect): NGINX tries a rule's upstreams one after the other, proxy_connect_timeout each.
    reply_timeout: float | None = None
    # A request through the Ingress controller: ``GET path`` with ``Host: host`` (SNI = host over TLS).
    ingress: bool = False
    host: str = ""
    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()  # more request headers (a canary's canary-by-header)
    # ``ip:port`` of the pods NGINX may proxy the request to (the rule's upstream): the built-in reply
    # must come from one of them. Empty: no backend can answer (NGINX's own 404/308/403/503 is what
    # the files predict); None: the backends are not built-in, so any answer but NGINX's own counts.
    backends: tuple[str, ...] | None = None

    @property
    def verdict_port(self) -> int:
        return self.label_port if self.label_port is not None else self.port

    @property
    def request_line(self) -> str:
        """``https://host/path``: the request an Ingress probe sends."""
        return f"{'https' if self.tls else 'http'}://{self.host}{self.path}"


@dataclass(frozen=True)
class ProbeResult:
    """What one probe saw. ``started`` is ``time.monotonic()``, to show that probes overlapped."""

    job: ProbeJob
    connected: bool
    answered: bool
    error: str | None = None
    detail: str = ""
    reply: dict[str, Any] | None = None
    started: float = 0.0
    seconds: float = 0.0

    @property
    def allowed(self) -> bool:
        """UDP needs an answer (silence is not consent); TCP needs the connection, plus the HTTP reply
        from a built-in port."""
        if self.job.protocol == "UDP":
            return self.answered
        asks = self.job.http or self.job.dns or self.job.http_any or self.job.ingress
        return self.connected and (self.answered or not asks)

    def to_json(self) -> dict[str, Any]:
        job = self.job
        data: dict[str, Any] = {
            "from": job.source or job.netns,
            "to": job.target or job.ip,
            "netns": job.netns,
            "ip": job.ip,
            "connected_port": job.port,
            "port": job.verdict_port,
            "protocol": job.protocol,
            "allowed": self.allowed,
            "connected": self.connected,
            "answered": self.answered,
            "error": self.error,
            "detail": self.detail,
            "reply": self.reply,
            "seconds": round(self.seconds, 4),
        }
        if job.ingress:
            data["request"] = job.request_line
        return data


def classify_os_error(exc: OSError) -> str:
    """The probe error kind for a socket error."""
    if isinstance(exc, TimeoutError):
        return TIMEOUT
    return _ERRNO_KINDS.get(exc.errno or 0, ERROR)


def parse_http_reply(data: bytes) -> dict[str, Any]:
    """The JSON object of a built-in server's HTTP 200 reply; ValueError when it is anything else."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("no complete HTTP header")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or not status[0].startswith(b"HTTP/1.") or status[1] != b"200":
        raise ValueError(f"status line {head[:60]!r}")
    reply = json.loads(body)
    if not isinstance(reply, dict):
        raise ValueError("the body is not a JSON object")
    return reply


# What NGINX answers itself when it has no backend (503, CLB's "no healthy backend") or the backend
# failed it (502 refused, 504 timed out): not the backend's answer.
_PROXY_FAILURES = (b"502", b"503", b"504")


def parse_http_status(data: bytes) -> dict[str, Any]:
    """The status of any HTTP reply that is not a proxy's own failure; ValueError otherwise."""
    head, sep, _ = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if not sep or len(status) < 2 or not status[0].startswith(b"HTTP/1."):
        raise ValueError(f"not an HTTP reply: {data[:60]!r}")
    if status[1] in _PROXY_FAILURES:
        raise ValueError(f"the proxy failed: {head[:60]!r}")
    return {"status": int(status[1])}


# NGINX's own answers carry its built-in error page (server_tokens off still signs it): a redirect to
# https (308), whitelist-source-range (403), no rule or the default backend (404), no endpoints (503),
# or upstreams that failed (502 refused, 504 proxy_connect_timeout on every one tried).
_NGINX_PAGE = b"<center>nginx</center>"


def parse_ingress_reply(data: bytes, backends: tuple[str, ...] | None) -> dict[str, Any]:
    """The answer to a request through the Ingress when a backend of the rule gave it; ValueError
    (saying who answered instead) otherwise.

    ``backends`` lists the ``ip:port`` the reply may come from (the built-in server names its pod and
    port); None accepts any answer that is not one of NGINX's own pages.
    """
    head, sep, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if not sep or len(status) < 2 or not status[0].startswith(b"HTTP/1.") or not status[1].isdigit():
        raise ValueError(f"not an HTTP reply: {data[:60]!r}")
    code = int(status[1])
    if _NGINX_PAGE in body or (backends is not None and code != 200):
        location = next(
            (
                line.split(b":", 1)[1].strip().decode(errors="replace")
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"location:")
            ),
            None,
        )
        to = f" to {location}" if location else ""
        raise ValueError(f"NGINX answered {code}{to} itself, not a backend")
    if backends is None:
        return {"status": code}
    reply = parse_http_reply(data)
    answered = f"{reply.get('podIP') or reply.get('ip')}:{reply.get('port')}"
    if answered not in backends:
        who = reply.get("pod") or reply.get("ecs") or answered
        expected = ", ".join(backends) or "none"
        raise ValueError(f"answered by {who} ({answered}), not a backend of the rule ({expected})")
    return reply


def _dns_query() -> dns.message.Message:
    return dns.message.make_query(_DNS_QUESTION, "A")


def parse_dns_reply(query: dns.message.Message, data: bytes) -> dict[str, Any]:
    """The rcode and answers of a DNS reply to ``query``; ValueError when it is not one."""
    try:
        reply = dns.message.from_wire(data)
    except dns.exception.DNSException as exc:
        raise ValueError(f"not a DNS message: {exc}") from exc
    if not query.is_response(reply):
        raise ValueError("a DNS message that does not answer the question asked")
    answers = [rdata.to_text() for rrset in reply.answer for rdata in rrset]
    return {"rcode": dns.rcode.to_text(reply.rcode()), "answers": answers}


def _parse_udp_reply(data: bytes) -> dict[str, Any] | None:
    """The echo's JSON when it is the built-in server's; any datagram back still counts as an answer."""
    try:
        reply = json.loads(data)
    except ValueError:
        return None
    return reply if isinstance(reply, dict) else None


async def _read_to_eof(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    data = b""
    while len(data) < _MAX_REPLY:
        chunk = await loop.sock_recv(sock, _MAX_REPLY)
        if not chunk:
            break
        data += chunk
    return data


async def _probe_stream(sock: socket.socket, job: ProbeJob, timeout: float) -> tuple[bool, bool, Any]:
    """(connected, answered, reply) of a TCP/SCTP probe; socket errors propagate."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        await loop.sock_connect(sock, (job.ip, job.port))
    if job.dns:
        query = _dns_query()
        wire = query.to_wire()
        async with asyncio.timeout(timeout):
            # RFC 1035 4.2.2: over TCP each message is preceded by its two-byte length.
            await loop.sock_sendall(sock, len(wire).to_bytes(2, "big") + wire)
            data = b""
            while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
                chunk = await loop.sock_recv(sock, _MAX_REPLY)
                if not chunk:
                    raise ValueError("the connection closed before a whole DNS reply")
                data += chunk
        return True, True, parse_dns_reply(query, data[2 : 2 + int.from_bytes(data[:2], "big")])
    if not (job.http or job.http_any or job.ingress):
        return True, False, None
    if job.ingress:
        host, path = job.host, job.path
    else:
        host, path = (f"[{job.ip}]" if ":" in job.ip else job.ip) + f":{job.port}", "/"
    extra = "".join(f"{name}: {value}\r\n" for name, value in job.headers)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}User-Agent: acknet-probe\r\nConnection: close\r\n\r\n"
    )
    async with asyncio.timeout(max(timeout, job.reply_timeout or 0.0)):
        if job.tls:
            data = await _https_exchange(sock, request.encode(), job.host if job.ingress else "")
        else:
            await loop.sock_sendall(sock, request.encode())
            data = await _read_to_eof(loop, sock)
    if job.ingress:
        return True, True, parse_ingress_reply(data, job.backends)
    return True, True, parse_http_reply(data) if job.http else parse_http_status(data)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One client context for every TLS probe: ``ssl.create_default_context`` loads the system's CA
    store each time (tens of milliseconds of CPU), which hundreds of probes at once cannot afford on the
    loop's one thread, and a probe trusts no certificate anyway."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def _https_exchange(sock: socket.socket, request: bytes, sni: str = "") -> bytes:
    """The request over TLS on the connected ``sock`` (SNI ``sni`` when given), and the whole reply.

    The certificate is not verified: an SLB's HTTPS listener serves whatever certificate the files give
    it, and NGINX serves a TLS host's Secret (often self-signed, as the shop's) or, when the Secret is
    missing, its own default certificate and still routes the request (ingress-nginx does the same).
    Reachability and routing are what a probe measures; trust is the client's business.
    """
    reader, writer = await asyncio.open_connection(sock=sock, ssl=_tls_context(), server_hostname=sni)
    try:
        writer.write(request)
        await writer.drain()
        data = b""
        while len(data) < _MAX_REPLY:
            chunk = await reader.read(_MAX_REPLY)
            if not chunk:
                break
            data += chunk
        return data
    finally:
        writer.close()


async def _probe_datagram(sock: socket.socket, job: ProbeJob, timeout: float) -> dict[str, Any] | None:
    """The reply of a UDP probe; sends once more halfway through, as a lost first datagram is normal."""
    loop = asyncio.get_running_loop()
    sock.connect((job.ip, job.port))  # connected, so that ICMP errors reach this socket
    query = _dns_query() if job.dns else None
    payload = query.to_wire() if query is not None else _UDP_PAYLOAD
    for _attempt in range(2):
        await loop.sock_sendall(sock, payload)
        try:
            async with asyncio.timeout(timeout / 2):
                data = await loop.sock_recv(sock, _MAX_REPLY)
            return parse_dns_reply(query, data) if query is not None else _parse_udp_reply(data)
        except TimeoutError:
            continue
    raise TimeoutError


def _new_socket(switcher: NetnsSwitcher, job: ProbeJob) -> socket.socket:
    family = socket.AF_INET6 if ":" in job.ip else socket.AF_INET
    kind = socket.SOCK_DGRAM if job.protocol == "UDP" else socket.SOCK_STREAM
    proto = socket.IPPROTO_SCTP if job.protocol == "SCTP" else 0
    sock = switcher.socket(job.netns, family, kind, proto)
    sock.setblocking(False)
    if job.source_ip:
        try:
            sock.bind((job.source_ip, 0))
        except OSError:
            sock.close()
            raise
    return sock


async def _run_job(
    job: ProbeJob, switcher: NetnsSwitcher, limit: asyncio.Semaphore, timeout: float
) -> ProbeResult:
    timeout = max(timeout, job.timeout or 0.0)
    async with limit:
        started = time.monotonic()
        connected = answered = False
        reply: dict[str, Any] | None = None
        error: str | None = None
        detail = ""
        if not job.ip:
            return ProbeResult(job, False, False, NO_ADDRESS, "no address to connect to", None, started, 0.0)
        try:
            sock = _new_socket(switcher, job)
        except HomeNamespaceLost:
            raise
        except DataplaneError as exc:
            return ProbeResult(job, False, False, NO_NAMESPACE, str(exc), None, started, 0.0)
        except OSError as exc:
            return ProbeResult(job, False, False, classify_os_error(exc), str(exc), None, started, 0.0)
        try:
            if job.protocol == "UDP":
                reply = await _probe_datagram(sock, job, timeout)
                answered = True
            else:
                connected, answered, reply = await _probe_stream(sock, job, timeout)
        except TimeoutError:
            # A TCP probe that connected but got no HTTP reply in time keeps connected=True.
            connected = connected or (
                job.protocol != "UDP" and (job.http or job.http_any or job.ingress) and _is_connected(sock)
            )
            error = TIMEOUT
        except OSError as exc:
            connected = connected or (job.protocol != "UDP" and _is_connected(sock))
            error, detail = classify_os_error(exc), str(exc)
        except ValueError as exc:
            connected, error, detail = True, BAD_REPLY, str(exc)
        finally:
            sock.close()
        return ProbeResult(
            job, connected, answered, error, detail, reply, started, time.monotonic() - started
        )


def _is_connected(sock: socket.socket) -> bool:
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


async def probe_all(
    jobs: Sequence[ProbeJob], *, timeout: float = DEFAULT_TIMEOUT, concurrency: int | None = None
) -> list[ProbeResult]:
    """Run every job, at most ``concurrency`` at once; results in the order of ``jobs``.

    Call from the thread that runs the loop: that thread briefly enters each source namespace.
    """
    if concurrency is None:
        concurrency = max(16, min(_MAX_CONCURRENCY, raise_open_file_limit() - 128))
    results: list[ProbeResult] = []
    with NetnsSwitcher() as switcher:
        todo = list(range(len(jobs)))
        for attempt in range(_PASSES):
            limit = asyncio.Semaphore(concurrency)
            start = time.monotonic()
            found = await _paced(_run_job(jobs[i], switcher, limit, timeout) for i in todo)
            elapsed = time.monotonic() - start
            if attempt == 0:
                results, changed = list(found), True
            else:
                changed = any(r.error != results[i].error for i, r in zip(todo, found, strict=True))
                for i, result in zip(todo, found, strict=True):
                    results[i] = result
            retry = [i for i in todo if _overloaded(results[i], timeout)]
            if not retry or not changed:
                break
            # As many at once as this pass finished within half a timeout, but never so few that the
            # real drops among them (each holding its place for a whole timeout) take long.
            rate = (len(todo) - len(retry)) / max(elapsed, 1e-3)
            concurrency = max(min(_RETRY_WIDTH, concurrency), min(concurrency // 2, int(rate * timeout / 2)))
            todo = retry
    return results


# A timeout is a verdict only when the probe had its whole time. With thousands of probes in flight
# on a busy host (one event loop here, one built-in server for every pod), replies queue and timers fire
# late, and pairs that are allowed would read as dropped (bench/probe_scale.py found 8 in 10 at 100 x
# 100 pods). Such timeouts are run again, fewer at once; a real drop times out again, on time.
_PASSES = 4
_RETRY_WIDTH = 256


# Jobs started per turn of the event loop. A job's start (enter the namespace, make and bind the socket,
# send the SYN) is synchronous; thousands started in one turn keep the loop from reading the answers for
# over a second, and the first jobs' timers then fire before their SYN-ACK is seen: the shop's verify
# read allowed ClusterIP pairs as dropped, every time, once ECS sources made the run 3,400 jobs long.
_STARTS_PER_TURN = 64


async def _paced(jobs: Iterable[Coroutine[Any, Any, ProbeResult]]) -> list[ProbeResult]:
    """``asyncio.gather`` of ``jobs``, started ``_STARTS_PER_TURN`` at a time with a turn of the loop
    in between, so the answers of the jobs already started are read while the rest start."""
    tasks = []
    for count, job in enumerate(jobs, 1):
        tasks.append(asyncio.ensure_future(job))
        if count % _STARTS_PER_TURN == 0:
            await asyncio.sleep(0)
    return list(await asyncio.gather(*tasks))


def _overloaded(result: ProbeResult, timeout: float) -> bool:
    """A timeout that says more about the host than the path: the connection was made (the reply
    queued), or the timer fired well after its time."""
    budget = max(timeout, result.job.timeout or 0.0)
    return result.error == TIMEOUT and (result.connected or result.seconds > 1.5 * budget)


def run_probes(
    jobs: Sequence[ProbeJob], *, timeout: float = DEFAULT_TIMEOUT, concurrency: int | None = None
) -> list[ProbeResult]:
    """Synchronous ``probe_all`` for callers without an event loop (the CLI, tests)."""
    return asyncio.run(probe_all(jobs, timeout=timeout, concurrency=concurrency))


def verdicts(results: Iterable[ProbeResult]) -> dict[str, list[dict[str, Any]]]:
    """DESIGN.md's check/probe JSON, in the order the pairs first appear.

    Results with the same labels, verdict port and protocol (the backends behind one Service or SLB:
    every attempt through a ClusterIP or through each node's NodePort, labelled with the Service
    port) make one verdict: allowed when every one is allowed, not allowed when none is, and otherwise not allowed
    with ``"partial": true``. Requests through the Ingress must also have reached every backend of
    their rule (``_unreached``) to be allowed.
    """
    groups: dict[tuple[str, str, int, str], list[ProbeResult]] = {}
    for result in results:
        job = result.job
        key = (job.source or job.netns, job.target or job.ip, job.verdict_port, job.protocol)
        groups.setdefault(key, []).append(result)
    out: list[dict[str, Any]] = []
    for (source, target, port, protocol), found in groups.items():
        allowed = [r.allowed for r in found]
        missed = _unreached(found)
        verdict: dict[str, Any] = {
            "from": source,
            "to": target,
            "port": port,
            "protocol": protocol,
            "allowed": all(allowed) and not missed,
        }
        if any(allowed) and not verdict["allowed"]:
            verdict["partial"] = True
        out.append(verdict)
    return {"verdicts": out}


def _unreached(results: Sequence[ProbeResult]) -> list[str]:
    """What the requests through the Ingress among ``results`` never got an answer from: a request
    (``https://host/path``) none of whose attempts passed, or a backend (``ip:port``) of a rule's
    upstream that answered none of the requests sent to that upstream.

    NGINX proxies each request to the next server of the upstream (round robin) and, when that one
    does not accept the connection within proxy_connect_timeout, to the one after it
    (proxy_next_upstream error timeout): a backend the controller cannot reach makes requests slow,
    not failed. Which backends answered is how a probe sees it. Requests to the same upstream share
    NGINX's round robin, so the upstream's backends are counted over all of them together.
    """
    wanted: set[tuple[str, ...]] = set()
    reached: set[tuple[str, ...]] = set()
    for result in results:
        job = result.job
        if not job.ingress:
            continue
        wanted.add(("request", job.request_line))
        upstream = ",".join(job.backends or ())
        wanted.update(("backend", upstream, b) for b in job.backends or ())
        if result.allowed:
            reached.add(("request", job.request_line))
            if job.backends and result.reply is not None:
                answered = f"{result.reply.get('podIP') or result.reply.get('ip')}:{result.reply.get('port')}"
                reached.add(("backend", upstream, answered))
    return sorted(unit[-1] for unit in wanted - reached)
