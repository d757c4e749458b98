"""JSON over HTTP/1.1 on a unix socket, with the standard library only.

The server routes ``METHOD /path`` to handler functions the daemon registers; a handler returns
(status, body) and may raise ``ApiError`` to answer with an error. The client raises
``acknet.errors.DaemonError`` when the daemon cannot be reached or answers with an error.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from acknet.errors import DaemonError

Handler = Callable[[dict[str, Any], dict[str, str]], tuple[int, Any]]


class ApiError(Exception):
    """An error answer: HTTP status and a JSON body (``{"error": ..., ...}``)."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **extra}


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    routes: dict[tuple[str, str], Handler]


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        handler = self.server.routes.get((method, url.path))
        status: int
        body: Any
        if handler is None:
            status, body = 404, {"error": f"no route {method} {url.path}"}
        else:
            try:
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}") if length else {}
                status, body = handler(payload, query)
            except ApiError as exc:
                status, body = exc.status, exc.body
            except Exception as exc:  # the daemon must answer, whatever a handler did
                status, body = 500, {"error": f"{type(exc).__name__}: {exc}"}
        data = json.dumps(body, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        return


class ApiServer:
    """Serves registered routes on a unix socket, one thread per request."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.routes: dict[tuple[str, str], Handler] = {}
        self._server: _Server | None = None

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method, path)] = handler

    def start(self) -> None:
        if self.socket_path.exists():
            self.socket_path.unlink()
        server = _Server(str(self.socket_path), _RequestHandler)
        server.routes = self.routes
        os.chmod(self.socket_path, 0o600)  # root's emulation: only root may drive it
        self._server = server
        # A short poll: stop() waits for the loop to notice, and `acknet down` waits for stop().
        threading.Thread(target=server.serve_forever, args=(0.05,), name="api", daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.socket_path.unlink(missing_ok=True)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class ApiClient:
    def __init__(self, socket_path: Path, timeout: float = 300.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        conn = _UnixConnection(str(self.socket_path), timeout or self.timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            payload = json.loads(response.read() or b"null")
        except (OSError, http.client.HTTPException, json.JSONDecodeError) as exc:
            raise DaemonError(f"cannot reach the daemon at {self.socket_path}: {exc}") from exc
        finally:
            conn.close()
        if response.status >= 400:
            message = payload.get("error", "") if isinstance(payload, dict) else str(payload)
            raise DaemonError(f"{method} {path}: {message}", response.status, payload)
        return payload

    def get(self, path: str, timeout: float | None = None) -> Any:
        return self.request("GET", path, timeout=timeout)

    def post(self, path: str, body: Any = None, timeout: float | None = None) -> Any:
        return self.request("POST", path, body if body is not None else {}, timeout=timeout)

    def alive(self) -> bool:
        try:
            self.get("/status", timeout=2)
        except DaemonError:
            return False
        return True
