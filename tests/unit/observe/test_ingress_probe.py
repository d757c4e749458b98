"""Requests through the Ingress as a probe sends them: the bytes on the wire (Host, path, SNI over TLS),
which answers count (a backend of the rule, never NGINX's own page) and the verdict they make (every
request answered, every backend of each rule seen)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from acknet.dataplane.apply.builtin_server import http_response
from acknet.observe.probe import ProbeJob, ProbeResult, _probe_stream, parse_ingress_reply, verdicts

API = ("192.168.32.10:9090", "192.168.32.11:9090")


def builtin(pod: str, ip: str, port: int) -> bytes:
    return http_response(
        json.dumps({"pod": pod, "podIP": ip, "port": port, "client": "192.168.32.5:4000"}).encode()
    )


def nginx_page(status: str, location: str | None = None) -> bytes:
    """NGINX's own error page, as it sends it with server_tokens off."""
    head = f"HTTP/1.1 {status}\r\nServer: nginx\r\nContent-Type: text/html\r\n"
    if location:
        head += f"Location: {location}\r\n"
    body = (
        f"<html>\r\n<head><title>{status}</title></head>\r\n<body>\r\n<center><h1>{status}</h1></center>\r\n"
    )
    return (head + "\r\n" + body + "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n").encode()


@pytest.mark.parametrize(
    ("data", "backends", "answer"),
    [
        pytest.param(builtin("api-0", "192.168.32.10", 9090), API, "api-0", id="a-backend-of-the-rule"),
        pytest.param(b"HTTP/1.1 200 OK\r\n\r\n<html>app</html>", None, 200, id="not-built-in-any-app-answer"),
        pytest.param(b"HTTP/1.1 404 Not Found\r\n\r\nno such item", None, 404, id="not-built-in-app-404"),
    ],
)
def test_answers_that_count(data: bytes, backends: tuple[str, ...] | None, answer: Any) -> None:
    reply = parse_ingress_reply(data, backends)
    assert (reply.get("pod") or reply.get("status")) == answer


@pytest.mark.parametrize(
    ("data", "backends", "message"),
    [
        pytest.param(
            builtin("web-0", "192.168.32.20", 8080), API, "answered by web-0", id="another-rules-pod"
        ),
        pytest.param(
            builtin("api-0", "192.168.32.10", 9091), API, "192.168.32.10:9091", id="same-pod-other-port"
        ),
        pytest.param(nginx_page("404 Not Found"), API, "NGINX answered 404", id="no-rule-404"),
        pytest.param(
            nginx_page("308 Permanent Redirect", "https://shop.example.com/api"),
            API,
            "308 to https://shop.example.com/api",
            id="ssl-redirect-308",
        ),
        pytest.param(nginx_page("403 Forbidden"), API, "NGINX answered 403", id="whitelist-403"),
        pytest.param(nginx_page("503 Service Temporarily Unavailable"), API, "503", id="no-endpoints-503"),
        pytest.param(nginx_page("504 Gateway Time-out"), None, "NGINX answered 504", id="not-built-in-504"),
        pytest.param(builtin("api-0", "192.168.32.10", 9090), (), "not a backend", id="no-backend-expected"),
        pytest.param(b"SSH-2.0-OpenSSH\r\n", API, "not an HTTP reply", id="not-http"),
    ],
)
def test_answers_that_do_not_count(data: bytes, backends: tuple[str, ...] | None, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_ingress_reply(data, backends)


def job(path: str = "/api", backends: tuple[str, ...] | None = API, source: str = "internet") -> ProbeJob:
    return ProbeJob(
        "ns",
        "47.0.0.1",
        443,
        tls=True,
        ingress=True,
        host="shop.example.com",
        path=path,
        backends=backends,
        source=source,
        target="ingress/shop/shop",
    )


def passed(j: ProbeJob, answered: str | None) -> ProbeResult:
    reply = None
    if answered is not None:
        ip, _, port = answered.partition(":")
        reply = {"pod": "x", "podIP": ip, "port": int(port)}
    return ProbeResult(j, True, True, None, "", reply)


def failed(j: ProbeJob) -> ProbeResult:
    return ProbeResult(j, True, False, "bad-reply", "NGINX answered 504 itself, not a backend")


WEB = ("192.168.32.20:8080",)


@pytest.mark.parametrize(
    ("results", "state"),
    [
        pytest.param(
            [passed(job(), API[0]), passed(job(), API[1]), passed(job("/", WEB), WEB[0])],
            "allowed",
            id="every-request-every-backend",
        ),
        # NGINX retried the next upstream after proxy_connect_timeout: every request answered, but
        # api's second pod never did.
        pytest.param(
            [passed(job(), API[0]), passed(job(), API[0]), passed(job("/", WEB), WEB[0])],
            "partial",
            id="a-backend-never-answered",
        ),
        # Two requests to one upstream share NGINX's round robin: together they saw both pods.
        pytest.param(
            [passed(job("/api"), API[0]), passed(job("/api/"), API[1])],
            "allowed",
            id="backends-counted-over-the-upstream",
        ),
        pytest.param(
            [passed(job(), API[0]), passed(job(), API[1]), failed(job("/", WEB)), failed(job("/", WEB))],
            "partial",
            id="one-rule-fails",
        ),
        pytest.param(
            [passed(job(), API[0]), failed(job()), passed(job(), API[1])],
            "partial",
            id="one-attempt-failed-slb-path",
        ),
        pytest.param([failed(job()), failed(job("/", WEB))], "denied", id="nothing-answers"),
        pytest.param([failed(job("/x", ()))], "denied", id="no-backend-expected"),
        pytest.param(
            [passed(job("/", None), None), passed(job("/", None), None)],
            "allowed",
            id="not-built-in-requests-only",
        ),
    ],
)
def test_verdict_of_requests_through_the_ingress(results: list[ProbeResult], state: str) -> None:
    (verdict,) = verdicts(results)["verdicts"]
    assert (verdict["from"], verdict["to"], verdict["port"], verdict["protocol"]) == (
        "internet",
        "ingress/shop/shop",
        443,
        "TCP",
    )
    got = "partial" if verdict.get("partial") else "allowed" if verdict["allowed"] else "denied"
    assert got == state


def test_request_line_in_the_result_json() -> None:
    data = passed(job(), API[0]).to_json()
    assert data["request"] == "https://shop.example.com/api"
    assert "request" not in ProbeResult(ProbeJob("ns", "10.0.0.1", 80), True, False).to_json()


# -- the bytes on the wire, against a server on loopback -----------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("cert")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", "/CN=acknet fake", "-keyout", "key.pem", "-out", "cert.pem"],
        cwd=folder, check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return folder / "cert.pem", folder / "key.pem"


class Server:
    """One connection's worth of an HTTP(S) server on 127.0.0.1: records the request and the SNI."""

    def __init__(self, reply: bytes, certificate: tuple[Path, Path] | None) -> None:
        self.reply = reply
        self.request = b""
        self.sni: str | None = None
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.context: ssl.SSLContext | None = None
        if certificate is not None:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(*certificate)
            self.context.sni_callback = self._sni
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _sni(self, sock: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        self.sni = name

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            stream: socket.socket = self.context.wrap_socket(conn, server_side=True) if self.context else conn
            while b"\r\n\r\n" not in self.request:
                chunk = stream.recv(4096)
                if not chunk:
                    break
                self.request += chunk
            stream.sendall(self.reply)

    def close(self) -> None:
        self.thread.join(timeout=5)
        self.listener.close()


@pytest.fixture
def serve(certificate: tuple[Path, Path]) -> Iterator[Any]:
    servers: list[Server] = []

    def start(reply: bytes, tls: bool) -> Server:
        servers.append(Server(reply, certificate if tls else None))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https-with-sni"])
def test_the_request_on_the_wire(serve: Any, tls: bool) -> None:
    server = serve(builtin("api-0", "192.168.32.10", 9090), tls)
    probe = ProbeJob(
        "ns",
        "127.0.0.1",
        server.port,
        tls=tls,
        ingress=True,
        host="shop.example.com",
        path="/api/items",
        headers=(("X-Canary", "always"),),
        backends=API,
    )

    async def run() -> tuple[bool, bool, Any]:
        sock = socket.socket()
        sock.setblocking(False)
        try:
            return await _probe_stream(sock, probe, 5.0)
        finally:
            sock.close()

    connected, answered, reply = asyncio.run(run())
    assert (connected, answered, reply["pod"]) == (True, True, "api-0")
    lines = server.request.decode().split("\r\n")
    assert lines[0] == "GET /api/items HTTP/1.1"
    assert "Host: shop.example.com" in lines
    assert "X-Canary: always" in lines  # a canary Ingress's requests carry its canary-by-header
    # TLS carries the host as SNI (NGINX picks the certificate by it); the certificate is not verified.
    assert server.sni == ("shop.example.com" if tls else None)
