"""The layer-7 listeners of a CLB instance (HTTP and HTTPS) as the configuration of a real proxy.

CLB serves HTTP and HTTPS listeners with Tengine, an NGINX derivative (reference/alibaba.md 4); here
one NGINX (Debian's) per instance runs inside the instance's namespace and serves all its layer-7
listeners. What it does, and where that comes from:

- it listens on the VIP and the listener port; for HTTPS it terminates TLS with the listener's
  certificate (a kubernetes.io/tls Secret: ``certificate.secret`` of a file's listener, the ``cert-id``
  annotation of a Service's) and talks plain HTTP to the backends ("CLB communicates with backend
  servers over HTTP", Alibaba Cloud, "Retrieve client IP addresses with a CLB Layer 7 listener",
  help.aliyun.com/en/slb/classic-load-balancer/use-cases/preserve-client-ip-addresses-when-layer-7-listeners-are-used);
- it adds ``X-Forwarded-For`` with the client's address (same page: "By default, CLB Layer 7 listeners
  use the X-Forwarded-For header to retrieve the client IP address. This feature cannot be disabled."),
  appended to what the client sent, so the leftmost address is the client's;
- it connects to the backends from the instance's own address in 100.64.0.0/10, not the client's:
  "CLB forwards external requests to backend ECS instances by using the private IP address of the
  system server ... The system CIDR block of CLB is 100.64.0.0/10" (CLB "FAQ about backend servers",
  alibabacloud.com/help/en/slb/classic-load-balancer/user-guide/faq-about-backend-servers). The
  backends' security groups therefore see that range, which they accept without a rule as they do
  the health checks (render/security_group.py ``HEALTH_CHECK_SOURCE``), and a security-group rule on
  the client's address has no effect on layer 7;
- schedulers (CreateLoadBalancerHTTPListener ``Scheduler``: wrr, wlc, rr): ``wrr`` is NGINX's
  weighted round robin with the backends' weights, ``wlc`` its ``least_conn`` (weighted), ``rr`` plain
  round robin (weights left out, as CLB ignores them for rr). A backend of weight 0 takes no new
  requests: it is left out;
- the upstream list holds the backends the health checks keep (observe/health.py); a change rewrites
  this file and NGINX reloads it gracefully: old workers finish the requests they have;
- with no backend left, the listener answers 503 itself (Billing FAQ: "L7 returns a Tengine 503 page");
- a backend that fails between checks is not retried elsewhere (``proxy_next_upstream off``): until
  the failure window passes requests still reach it (health check FAQ) and fail with 502 (CLB's
  "How do I troubleshoot HTTP 5xx errors?");
- timeouts: ``RequestTimeout`` 60 s (504 when it expires) and ``IdleTimeout`` 15 s, the API defaults;
- sticky sessions (``StickySession``; CLB "FAQ about session persistence", doc-detail 55202: layer 7
  persists sessions by cookie, at most 86400 s; "Configure cookies on a backend server", doc-detail
  27704). Debian's NGINX has no ``sticky`` directive (it is NGINX Plus's), so a ``map`` turns the
  cookie into the backend and ``proxy_pass`` goes to a variable: a known backend id sends the request
  straight to that backend, anything else to the listener's upstream and its scheduler. Only backends
  that take new requests (healthy, weight above 0) have an id in the map, so a session whose backend
  failed its checks moves to a healthy one and is stuck there from its next response on.
  ``insert``: the CLB inserts a cookie ``SERVERID`` = the backend's id into the first response (one
  not routed by a valid cookie), ``Max-Age`` = ``CookieTimeout``. ``server``: the backend sets a cookie
  named ``Cookie`` (its value a placeholder, as in Alibaba's examples: ``add_header Set-Cookie
  name=xxxx``) and the CLB rewrites it to the backend's id; here every response that sets that cookie
  gets a ``Set-Cookie: <name>=<id>; Path=/`` after the backend's own (stock NGINX cannot edit a
  header's value, so the backend's line stays; a client keeps the later of two cookies with the same
  name and path, so this holds for cookies set with ``Path=/``, or without a path on a request for
  ``/``, and the backend's expiry is not carried over).

Listener ACLs and ``connectionRateLimit`` of layer-7 listeners stay in the kernel, in the instance's
nftables ``guard`` chain (render/slb.py), before NGINX sees a packet.

Every path the proxy uses (pid, lock, logs, temporary files, certificates) is under ``folder``, the
instance's folder in the emulation's state folder. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from acknet.controllers.state import Plan, PlannedListener, PlannedLoadBalancer, SlbBackend
from acknet.dataplane.render.slb import BackendKey, candidates

_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
REQUEST_TIMEOUT = 60  # CreateLoadBalancerHTTPListener RequestTimeout default, seconds
IDLE_TIMEOUT = 15  # IdleTimeout default, seconds
INSERT_COOKIE = "SERVERID"  # the cookie CLB inserts (FAQ about session persistence)
_PAGE_503 = (
    "<html><head><title>503 Service Temporarily Unavailable</title></head><body>"
    "<center><h1>503 Service Temporarily Unavailable</h1></center>"
    "<hr><center>acknet CLB: no healthy backend</center></body></html>"
)


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """Everything one instance's proxy needs: its configuration and the files it reads."""

    lb: str
    netns: str
    folder: str
    conf: str  # nginx.conf
    files: tuple[tuple[str, str], ...]  # (file name in ``folder``, content): certificates and keys

    @property
    def conf_path(self) -> str:
        return f"{self.folder}/nginx.conf"

    @property
    def pid_path(self) -> str:
        return f"{self.folder}/nginx.pid"

    @property
    def error_log(self) -> str:
        return f"{self.folder}/error.log"


def layer7(lb: PlannedLoadBalancer) -> list[PlannedListener]:
    return [li for li in lb.listeners if li.protocol in ("http", "https")]


def upstream_name(listener: PlannedListener) -> str:
    return f"{listener.protocol}_{listener.port}"


def certificate_pem(plan: Plan, ref: str) -> tuple[str, str] | None:
    """(certificate chain, private key) of the kubernetes.io/tls Secret ``namespace/name``, or None."""
    namespace, _, name = ref.partition("/")
    for objs in plan.resources.kube.values():
        secret = objs.secrets.get((namespace, name))
        if secret is None:
            continue
        pems = []
        for key in ("tls.crt", "tls.key"):
            if key in secret.string_data:
                pems.append(secret.string_data[key])
            elif key in secret.data:
                try:
                    pems.append(base64.b64decode(secret.data[key], validate=True).decode("ascii"))
                except (binascii.Error, ValueError):
                    return None  # validation reports it
            else:
                return None
        return pems[0], pems[1]
    return None


def _upstream(listener: PlannedListener, unhealthy: Collection[BackendKey]) -> list[str]:
    """The ``server`` lines of a listener's upstream (empty: no backend takes new requests)."""
    lines = []
    for b in candidates(listener, unhealthy):
        # max_fails=0: NGINX's passive checks stay off; the health checks alone decide (CLB has no
        # retry on another backend in its documented behaviour).
        weight = "" if listener.scheduler == "rr" else f" weight={b.weight}"
        lines.append(f"    server {b.ip}:{b.port}{weight} max_fails=0;")
    return lines


def server_id(backend: SlbBackend) -> str:
    """The opaque id a sticky cookie carries for ``backend``: a hash of its address and port (Tengine's
    session_sticky likewise hashes the server's address), so it stays the same across reloads."""
    digest = hashlib.sha1(f"{backend.ip}:{backend.port}".encode(), usedforsecurity=False)
    return digest.hexdigest()[:16]


def _sticky(listener: PlannedListener, unhealthy: Collection[BackendKey]) -> tuple[list[str], str, str]:
    """The ``map`` blocks of a sticky listener, the ``proxy_pass`` target and the ``add_header`` line."""
    name = upstream_name(listener)
    route, set_cookie = f"$sticky_{name}", f"$sticky_cookie_{name}"
    pool = candidates(listener, unhealthy)
    if listener.sticky_session_type == "insert":
        cookie = INSERT_COOKIE
        # Set on the response to a request the upstream scheduled: the cookie names who answered it.
        cookie_key = f'"{route}|$upstream_addr"'
        entries = [
            (f"{name}|{b.ip}:{b.port}", f"{cookie}={server_id(b)}; Max-Age={listener.cookie_timeout}; Path=/")
            for b in pool
        ]
        lines = []
    else:
        cookie = listener.cookie or ""
        # Set whenever the backend set its cookie: its placeholder would otherwise replace the id.
        sets = f"$sticky_set_{name}"
        cookie_key = f'"{sets}|$upstream_addr"'
        entries = [(f"1|{b.ip}:{b.port}", f"{cookie}={server_id(b)}; Path=/") for b in pool]
        lines = [f"  map ${{upstream_cookie_{cookie}}} {sets} {{", '    "" 0;', "    default 1;", "  }"]
    lines.append(f"  map ${{cookie_{cookie}}} {route} {{")
    lines.append(f"    default {name};")
    lines.extend(f"    {server_id(b)} {b.ip}:{b.port};" for b in pool)
    lines.append("  }")
    lines.append(f"  map {cookie_key} {set_cookie} {{")
    lines.append('    default "";')
    lines.extend(f'    "{key}" "{value}";' for key, value in entries)
    lines.append("  }")
    return lines, f"http://{route}", f"add_header Set-Cookie {set_cookie} always;"


def render_proxy(
    plan: Plan,
    lb: PlannedLoadBalancer,
    netns: str,
    folder: str,
    unhealthy: Mapping[str, Collection[BackendKey]] | None = None,
) -> ProxyConfig | None:
    """The proxy of ``lb``'s layer-7 listeners (None when it has none); ``unhealthy`` holds, per
    listener key ("http/80"), the backends its health check took out. An HTTPS listener whose
    certificate cannot be read is left out (validation and the cloud controller report why)."""
    listeners = layer7(lb)
    if not listeners or lb.address is None:
        return None
    unhealthy = unhealthy or {}
    vip = lb.address
    files: list[tuple[str, str]] = []
    lines = [
        f"# CLB {lb.name}: its layer-7 listeners. Written by acknet; every change is a graceful reload.",
        "daemon off;",
        "master_process on;",
        "worker_processes 1;",
        # Root workers: the state folder may be private to root (0700), and the temporary files live there.
        "user root;",
        f"pid {folder}/nginx.pid;",
        f"lock_file {folder}/nginx.lock;",
        f"error_log {folder}/error.log warn;",
        "worker_shutdown_timeout 60s;",
        "events { worker_connections 4096; }",
        "http {",
        "  access_log off;",
        "  server_tokens off;",
        *(f"  {kind}_temp_path {folder}/tmp/{kind};" for kind in _TEMP_PATHS),
        "  default_type text/html;",
        f"  keepalive_timeout {IDLE_TIMEOUT}s;",
        "  proxy_http_version 1.1;",
        "  proxy_set_header Host $http_host;",
        "  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        # To the backends from the instance's address in CLB's system range 100.64.0.0/10.
        f"  proxy_bind {lb.health_source};",
        "  proxy_connect_timeout 5s;",
        f"  proxy_read_timeout {REQUEST_TIMEOUT}s;",
        f"  proxy_send_timeout {REQUEST_TIMEOUT}s;",
        "  proxy_next_upstream off;",
    ]
    for li in listeners:
        servers = _upstream(li, unhealthy.get(li.key, ()))
        listen = f"{vip}:{li.port}"
        tls: list[str] = []
        if li.protocol == "https":
            pem = certificate_pem(plan, li.certificate) if li.certificate is not None else None
            if pem is None:
                continue
            name = upstream_name(li)
            files.append((f"{name}.crt", pem[0]))
            files.append((f"{name}.key", pem[1]))
            listen += " ssl"
            tls = [
                f"    ssl_certificate {folder}/{name}.crt;",
                f"    ssl_certificate_key {folder}/{name}.key;",
                "    ssl_protocols TLSv1.2 TLSv1.3;",
            ]
        sticky = ""
        if li.sticky_session_type == "insert":
            sticky = f", sticky sessions: insert cookie {INSERT_COOKIE} for {li.cookie_timeout} s"
        elif li.sticky_session_type == "server":
            sticky = f", sticky sessions: rewrite the backend's cookie {li.cookie}"
        lines.append(
            f"  # {li.protocol} listener {li.port}, server group {li.group}, scheduler {li.scheduler}{sticky}"
        )
        target, add_header = f"http://{upstream_name(li)}", ""
        if servers:
            if li.sticky_session_type is not None:
                maps, target, add_header = _sticky(li, unhealthy.get(li.key, ()))
                lines.extend(maps)
                add_header = f" {add_header}"
            lines.append(f"  upstream {upstream_name(li)} {{")
            if li.scheduler == "wlc":
                lines.append("    least_conn;")
            lines.extend(servers)
            lines.append("  }")
        lines.append("  server {")
        lines.append(f"    listen {listen};")
        lines.extend(tls)
        if servers:
            lines.append(f"    location / {{ proxy_pass {target};{add_header} }}")
        else:
            lines.append(f"    location / {{ return 503 '{_PAGE_503}'; }}")
        lines.append("  }")
    lines.append("}")
    return ProxyConfig(lb.name, netns, folder, "\n".join(lines) + "\n", tuple(files))
