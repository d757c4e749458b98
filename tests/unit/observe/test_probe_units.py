"""Pure parts of the probe and the built-in server: error kinds, the HTTP reply both sides agree on,
endpoint parsing and the verdict document."""

from __future__ import annotations

import errno
import json
from typing import Any

import pytest

from acknet.dataplane.apply.builtin_server import BuiltinEndpoint, format_address, http_response
from acknet.observe.probe import ProbeJob, ProbeResult, classify_os_error, parse_http_reply, verdicts


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        pytest.param(ConnectionRefusedError(errno.ECONNREFUSED, "x"), "refused", id="rst-or-icmp-port"),
        pytest.param(ConnectionResetError(errno.ECONNRESET, "x"), "reset", id="reset"),
        pytest.param(OSError(errno.EHOSTUNREACH, "x"), "unreachable", id="host-unreachable"),
        pytest.param(OSError(errno.ENETUNREACH, "x"), "unreachable", id="no-route"),
        pytest.param(TimeoutError(), "timeout", id="timeout"),
        pytest.param(OSError(errno.EPERM, "x"), "blocked", id="local-firewall"),
        pytest.param(OSError(errno.EPROTONOSUPPORT, "x"), "unsupported", id="no-sctp"),
        pytest.param(OSError(errno.EIO, "x"), "error", id="other"),
    ],
)
def test_classify_os_error(exc: OSError, kind: str) -> None:
    assert classify_os_error(exc) == kind


def test_server_reply_parses_in_the_probe() -> None:
    body = json.dumps({"pod": "a", "client": "10.0.0.1:4000", "port": 80}).encode()
    assert parse_http_reply(http_response(body)) == {"pod": "a", "client": "10.0.0.1:4000", "port": 80}


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", id="header-cut"),
        pytest.param(b"HTTP/1.1 404 Not Found\r\n\r\n{}", id="not-200"),
        pytest.param(b"HTTP/1.1 200 OK\r\n\r\n[1]", id="not-an-object"),
        pytest.param(b"HTTP/1.1 200 OK\r\n\r\n<html>", id="not-json"),
        pytest.param(b"SSH-2.0-OpenSSH\r\n\r\n{}", id="not-http"),
    ],
)
def test_parse_http_reply_rejects(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_http_reply(data)


def test_head_response_has_no_body() -> None:
    assert http_response(b"{}", head=True).endswith(b"Content-Length: 2\r\nConnection: close\r\n\r\n")


@pytest.mark.parametrize(
    ("peer", "text"),
    [(("10.0.0.1", 80), "10.0.0.1:80"), (("fd00::1", 80, 0, 0), "[fd00::1]:80")],
    ids=["v4", "v6"],
)
def test_format_address(peer: tuple[Any, ...], text: str) -> None:
    assert format_address(peer) == text


def test_endpoint_round_trips_through_json() -> None:
    ep = BuiltinEndpoint("acknet-x-a", "10.0.0.5", 80, "UDP", {"pod": "a"})
    assert BuiltinEndpoint.from_json(ep.to_json()) == ep
    assert BuiltinEndpoint.from_json({"netns": "n", "port": 22}).ip == "0.0.0.0"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"ip": "10.0.0.1", "port": 80}, id="no-netns"),
        pytest.param({"netns": "../x", "port": 80}, id="netns-path"),
        pytest.param({"netns": "n", "ip": "10.0.0.300", "port": 80}, id="bad-ip"),
        pytest.param({"netns": "n", "port": 0}, id="port-0"),
        pytest.param({"netns": "n", "port": True}, id="port-bool"),
        pytest.param({"netns": "n", "port": 80, "protocol": "ICMP"}, id="protocol"),
        pytest.param({"netns": "n", "port": 80, "identity": ["a"]}, id="identity-list"),
        pytest.param(["n", 80], id="not-an-object"),
    ],
)
def test_endpoint_from_json_rejects(data: object) -> None:
    with pytest.raises(ValueError):
        BuiltinEndpoint.from_json(data)


def result(
    protocol: str = "TCP",
    *,
    http: bool = False,
    connected: bool = False,
    answered: bool = False,
    source: str = "x/a",
    target: str = "y/b",
    ip: str = "10.0.0.2",
) -> ProbeResult:
    job = ProbeJob("ns-a", ip, 80, protocol, http=http, source=source, target=target)
    return ProbeResult(job, connected, answered)


@pytest.mark.parametrize(
    ("probe", "allowed"),
    [
        pytest.param(result(connected=True), True, id="tcp-connected"),
        pytest.param(result(http=True, connected=True), False, id="builtin-without-reply"),
        pytest.param(result(http=True, connected=True, answered=True), True, id="builtin-replied"),
        pytest.param(result("UDP"), False, id="udp-silence"),
        pytest.param(result("UDP", answered=True), True, id="udp-echo"),
    ],
)
def test_allowed(probe: ProbeResult, allowed: bool) -> None:
    assert probe.allowed is allowed


def test_verdicts_merge_backends_of_one_service() -> None:
    results = [
        result(connected=True),
        result("UDP"),
        result(connected=True, ip="10.0.1.1", source="x/a", target="svc/y/web"),
        result(connected=True, ip="10.0.1.2", source="x/a", target="svc/y/web"),
        result(connected=True, ip="10.0.1.1", source="x/c", target="svc/y/web"),
        result(connected=False, ip="10.0.1.2", source="x/c", target="svc/y/web"),
        result(connected=False, ip="10.0.1.1", source="x/d", target="svc/y/web"),
    ]

    assert verdicts(results) == {
        "verdicts": [
            {"from": "x/a", "to": "y/b", "port": 80, "protocol": "TCP", "allowed": True},
            {"from": "x/a", "to": "y/b", "port": 80, "protocol": "UDP", "allowed": False},
            {"from": "x/a", "to": "svc/y/web", "port": 80, "protocol": "TCP", "allowed": True},
            {
                "from": "x/c",
                "to": "svc/y/web",
                "port": 80,
                "protocol": "TCP",
                "allowed": False,
                "partial": True,
            },
            {"from": "x/d", "to": "svc/y/web", "port": 80, "protocol": "TCP", "allowed": False},
        ]
    }


def test_verdicts_fall_back_to_namespace_and_address() -> None:
    (verdict,) = verdicts([result(connected=True, source="", target="")])["verdicts"]
    assert (verdict["from"], verdict["to"]) == ("ns-a", "10.0.0.2")
