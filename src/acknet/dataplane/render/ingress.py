"""The NGINX Ingress controller's nginx.conf, from Ingresses, Services, EndpointSlices and TLS Secrets.

Pure: one cluster's planned state in, one ``IngressConfig`` out (the nginx.conf text, the certificate
files it names, which Ingresses it serves and why the others are left out). The same text serves every
controller pod: every path in it is relative to the pod's own NGINX prefix (``nginx -p``), which
dataplane/apply/nginx.py sets to a folder of the emulation's state folder. NGINX does the routing.

The rules are ingress-nginx's (reference/k8s.md 6; kubernetes/ingress-nginx
internal/ingress/controller/controller.go, location.go, template/template.go, nginx.tmpl), without Lua:

- Ingresses of class ``nginx``: ``spec.ingressClassName`` (an IngressClass of controller
  ``k8s.io/ingress-nginx``, or ``nginx`` itself, which ACK creates), the legacy annotation
  ``kubernetes.io/ingress.class``, or no class at all (ACK's controller is the default class).
  Processed in file order, which stands for creationTimestamp order.
- One upstream per ``<namespace>-<service>-<port>`` with the Service's ready endpoints (pod address and
  target port from the EndpointSlices, never the ClusterIP); a backend without any is answered 503.
- One server per host, sorted by name, after the catch-all ``_`` (the default server: the
  ``defaultBackend`` of an Ingress without rules, else 404). ``*.example.com`` becomes ingress-nginx's
  regex that matches exactly one more label. Every server starts with a ``/`` location on the default
  backend (the Ingress's ``defaultBackend`` when it has one).
- Paths: ``ImplementationSpecific`` is ``Prefix``; the same path and type from a later Ingress is
  ignored; ``Exact`` is ``location = "/p"``; ``Prefix`` ``/p`` becomes ``location "/p/"`` plus
  ``location = "/p"`` (unless an Exact one exists), so it matches whole path elements. A server with
  any ``use-regex`` or ``rewrite-target`` location gets every location as ``location ~* "^<path>"``.
  Locations are sorted by path, descending, then by length, descending (NGINX takes the first
  matching regex in file order).
- TLS per host from ``kubernetes.io/tls`` Secrets of the Ingress's namespace (SNI through
  ``server_name``); hosts without a certificate get the controller's default (fake) one.
- Redirect to HTTPS with 308 where a host has TLS (``ssl-redirect``, default true) or where
  ``force-ssl-redirect`` says so; ``/.well-known/acme-challenge`` is exempt; the Location has no port
  and no trailing slash (lua_ingress.lua).
- Annotations (``nginx.ingress.kubernetes.io/``): rewrite-target, use-regex, ssl-redirect,
  force-ssl-redirect, whitelist-source-range, canary with canary-weight and canary-by-header
  (-value), backend-protocol, proxy-body-size.

An Ingress that cannot be served as written (a Service, port or Secret missing, a regex NGINX cannot
compile, an annotation value out of range) is left out whole and reported; the others are served.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from acknet.controllers.state import Plan, PlannedPod, PlannedService
from acknet.model import defaults
from acknet.model.k8s import Ingress, IngressBackend, Secret
from acknet.model.resources import KubeObjects

ANNOTATION = "nginx.ingress.kubernetes.io/"
DEFAULT_SERVER = "_"
HEALTH_PORT = 10254  # ingress-nginx's /healthz and metrics port
DEFAULT_CERT = "default.pem"  # the controller's own certificate, made at run time (apply/nginx.py)
ACME_EXEMPT = "/.well-known/acme-challenge"  # no-tls-redirect-locations default
PROXY_BODY_SIZE = "1m"  # ingress-nginx ConfigMap default
HTTP_REDIRECT_CODE = 308
BACKEND_PROTOCOLS = ("HTTP", "HTTPS", "GRPC", "GRPCS", "FCGI")
_BODY_SIZE = re.compile(r"^[0-9]+[kKmMgG]?$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]+$")

PathType = Literal["Exact", "Prefix"]


@dataclass(frozen=True, slots=True)
class IngressProblem:
    """Why an Ingress is not served: ``reason`` is a CamelCase word, ``message`` says it in full."""

    ingress: str  # "namespace/name"
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class IngressConfig:
    """One cluster's nginx.conf, the files it reads (relative to the NGINX prefix: certificates), which
    Ingresses it serves, and the owner of each line (an Ingress, or None) to name the Ingress behind an
    ``nginx -t`` error."""

    cluster: str
    text: str
    files: Mapping[str, str]
    served: tuple[str, ...]
    problems: tuple[IngressProblem, ...]
    line_owners: tuple[str | None, ...] = field(repr=False, default=())

    def owner_of_line(self, line: int) -> str | None:
        return self.line_owners[line - 1] if 0 < line <= len(self.line_owners) else None


class Skip(Exception):
    """An Ingress that cannot be served: carries its reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    servers: tuple[str, ...]  # "ip:port", sorted


@dataclass(slots=True)
class Canary:
    upstream: Upstream
    weight: int
    weight_total: int
    header: str | None
    header_value: str | None


@dataclass(slots=True)
class Location:
    path: str
    path_type: PathType
    ingress: str | None  # None: the server's default location
    upstream: Upstream | None  # None: the default backend (404)
    service: str = ""
    port: str = ""
    rewrite_target: str | None = None
    use_regex: bool = False
    ssl_redirect: bool = True
    force_ssl_redirect: bool = False
    allow: tuple[str, ...] = ()
    protocol: str = "HTTP"
    body_size: str | None = None
    canary: Canary | None = None
    default: bool = False  # the root location every server starts with

    @property
    def needs_rewrite(self) -> bool:
        return bool(self.rewrite_target) and self.rewrite_target != self.path


@dataclass(slots=True)
class Server:
    host: str
    locations: list[Location]
    certificate: str | None = None  # file name, relative to the prefix
    tls_ingress: str | None = None


# -- which Ingresses are ours -------------------------------------------------------------------------


def is_nginx_class(ing: Ingress, objs: KubeObjects) -> bool:
    """Whether the NGINX Ingress controller serves this Ingress (its class, see the module docstring)."""
    name = ing.spec.ingress_class_name or ing.metadata.annotations.get(defaults.INGRESS_CLASS_ANNOTATION)
    if not name:
        return True
    cls = objs.ingress_classes.get(name)
    if cls is not None:
        return cls.spec.controller == defaults.INGRESS_CONTROLLER_NAME
    return name == defaults.INGRESS_CLASS


def controller_pods(plan: Plan, cluster: str) -> list[PlannedPod]:
    """The running pods of the cluster's NGINX Ingress controller (the add-on's Deployment)."""
    return [
        p
        for p in plan.pods
        if p.cluster == cluster
        and p.phase == "Running"
        and p.ip is not None
        and p.annotations.get(defaults.BUILTIN_ANNOTATION) == defaults.INGRESS_BUILTIN_ROLE
    ]


# -- annotations ---------------------------------------------------------------------------------------


def _annotation(ing: Ingress, key: str) -> str | None:
    return ing.metadata.annotations.get(ANNOTATION + key)


def _flag(ing: Ingress, key: str, default: bool) -> bool:
    value = _annotation(ing, key)
    if value is None:
        return default
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise Skip("InvalidAnnotation", f"{ANNOTATION}{key}: {value!r} is not true or false")


def _int(ing: Ingress, key: str, default: int, low: int, high: int | None = None) -> int:
    value = _annotation(ing, key)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if number < low or (high is not None and number > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise Skip("InvalidAnnotation", f"{ANNOTATION}{key}: {value!r} is not a whole number {bound}")
    return number


def _source_ranges(ing: Ingress) -> tuple[str, ...]:
    value = _annotation(ing, "whitelist-source-range") or _annotation(ing, "allowlist-source-range")
    if not value:
        return ()
    out = []
    for part in value.split(","):
        text = part.strip()
        if not text:
            continue
        try:
            out.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError as exc:
            raise Skip(
                "InvalidAnnotation", f"{ANNOTATION}whitelist-source-range: {text!r} is not a CIDR"
            ) from exc
    return tuple(out)


def check_regex(pattern: str) -> str | None:
    """Why NGINX could not compile ``pattern`` (PCRE, case-insensitive), as far as Python's ``re`` can
    tell; None when it compiles. ``nginx -t`` has the last word (apply/nginx.py)."""
    try:
        re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        return str(exc)
    if '"' in pattern or ("{" in pattern and "}" not in pattern):
        return "a double quote or an unbalanced brace cannot be written into nginx.conf"
    if any(c.isspace() for c in pattern) or ";" in pattern:
        return "whitespace and ';' cannot be written into a location"
    return None


# -- backends -----------------------------------------------------------------------------------------


def _ready_servers(plan: Plan, cluster: str, svc: PlannedService, port_name: str | None) -> tuple[str, ...]:
    """``ip:port`` of the Service port's ready endpoints (EndpointSlices: ready and not terminating)."""
    found: set[str] = set()
    for sl in plan.endpoint_slices:
        if sl.cluster != cluster or sl.namespace != svc.namespace or sl.service != svc.name:
            continue
        ports = [p for p in sl.ports if p.protocol == "TCP" and p.name == port_name]
        for p in ports:
            for ep in sl.endpoints:
                if ep.ready and not ep.terminating:
                    found.add(f"{ep.ip}:{p.port}")
    return tuple(sorted(found, key=_address_key))


def _address_key(text: str) -> tuple[int, int]:
    ip, _, port = text.rpartition(":")
    return int(ipaddress.IPv4Address(ip)), int(port)


class _Backends:
    def __init__(self, plan: Plan, cluster: str) -> None:
        self.plan = plan
        self.cluster = cluster
        self.services = {(s.namespace, s.name): s for s in plan.services if s.cluster == cluster}
        self.upstreams: dict[str, Upstream] = {}

    def resolve(self, namespace: str, backend: IngressBackend, where: str) -> tuple[Upstream, str, str]:
        """(upstream, service name, port) of an Ingress backend; Skip when it cannot be served."""
        ref = backend.service
        if ref is None:
            raise Skip("MissingService", f"{where}: only Service backends are served")
        svc = self.services.get((namespace, ref.name))
        if svc is None:
            raise Skip("MissingService", f"{where}: Service {namespace}/{ref.name} does not exist")
        port = next(
            (
                p
                for p in svc.ports
                if p.protocol == "TCP"
                and (p.port == ref.port.number if ref.port.number is not None else p.name == ref.port.name)
            ),
            None,
        )
        wanted = ref.port.number if ref.port.number is not None else ref.port.name
        if port is None:
            raise Skip(
                "MissingServicePort", f"{where}: Service {namespace}/{ref.name} has no TCP port {wanted}"
            )
        name = f"{namespace}-{ref.name}-{wanted}"
        upstream = Upstream(name, _ready_servers(self.plan, self.cluster, svc, port.name))
        self.upstreams[name] = upstream
        return upstream, ref.name, str(wanted)


# -- TLS ----------------------------------------------------------------------------------------------


def _secret_text(secret: Secret, key: str) -> str | None:
    if key in secret.string_data:
        return secret.string_data[key]
    value = secret.data.get(key)
    if value is None:
        return None
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def certificate_file(cert: str, key: str) -> tuple[str, str]:
    """(file name, content): certificate and key in one PEM file named by its content, so a new
    certificate never overwrites the one a running NGINX was started with."""
    content = cert.rstrip("\n") + "\n" + key.rstrip("\n") + "\n"
    digest = hashlib.sha256(content.encode()).hexdigest()[:16]
    return f"certs/{digest}.pem", content


def _tls_secret(objs: KubeObjects, namespace: str, name: str) -> tuple[str, str]:
    secret = objs.secrets.get((namespace, name))
    if secret is None:
        raise Skip("MissingSecret", f"TLS Secret {namespace}/{name} does not exist")
    if secret.type != "kubernetes.io/tls":
        raise Skip(
            "InvalidSecret", f"Secret {namespace}/{name} is of type {secret.type}, not kubernetes.io/tls"
        )
    cert, key = _secret_text(secret, "tls.crt"), _secret_text(secret, "tls.key")
    if not cert or "BEGIN CERTIFICATE" not in cert or not key or "PRIVATE KEY" not in key:
        raise Skip("InvalidSecret", f"Secret {namespace}/{name} lacks a PEM tls.crt and tls.key")
    return certificate_file(cert, key)


# -- the Ingress -> servers and locations --------------------------------------------------------------


@dataclass(slots=True)
class _Parsed:
    """One Ingress, checked whole before anything of it enters the configuration."""

    ref: str
    ingress: Ingress
    canary: bool
    default_upstream: Upstream | None
    default_service: tuple[str, str]
    rules: list[tuple[str, list[Location]]]
    tls: dict[str, str]  # host -> certificate file
    files: dict[str, str]


def _parse(ing: Ingress, objs: KubeObjects, backends: _Backends) -> _Parsed:
    ref = f"{ing.namespace}/{ing.name}"
    canary = _flag(ing, "canary", False)
    rewrite = _annotation(ing, "rewrite-target")
    use_regex = _flag(ing, "use-regex", False)
    protocol = (_annotation(ing, "backend-protocol") or "HTTP").upper()
    if protocol not in BACKEND_PROTOCOLS:
        raise Skip(
            "InvalidAnnotation",
            f"{ANNOTATION}backend-protocol: {protocol!r} is not one of {', '.join(BACKEND_PROTOCOLS)}",
        )
    body_size = _annotation(ing, "proxy-body-size")
    if body_size is not None and not _BODY_SIZE.match(body_size):
        raise Skip("InvalidAnnotation", f"{ANNOTATION}proxy-body-size: {body_size!r} is not a size like 8m")
    if rewrite is not None and (any(c.isspace() for c in rewrite) or '"' in rewrite or ";" in rewrite):
        raise Skip(
            "InvalidAnnotation", f"{ANNOTATION}rewrite-target: {rewrite!r} cannot be written into nginx.conf"
        )
    common = {
        "rewrite_target": rewrite,
        "use_regex": use_regex,
        "ssl_redirect": _flag(ing, "ssl-redirect", True),
        "force_ssl_redirect": _flag(ing, "force-ssl-redirect", False),
        "allow": _source_ranges(ing),
        "protocol": protocol,
        "body_size": body_size,
    }
    default_upstream = None
    default_service = ("", "")
    if ing.spec.default_backend is not None:
        default_upstream, svc, port = backends.resolve(
            ing.namespace or "default", ing.spec.default_backend, "spec.defaultBackend"
        )
        default_service = (svc, port)
    rules: list[tuple[str, list[Location]]] = []
    for i, rule in enumerate(ing.spec.rules):
        host = (rule.host or DEFAULT_SERVER).lower()
        if host != DEFAULT_SERVER and not re.fullmatch(r"(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?", host):
            raise Skip("InvalidHost", f"spec.rules[{i}].host: {rule.host!r} is not a DNS name")
        locations = []
        for j, path in enumerate(rule.http.paths if rule.http else []):
            where = f"spec.rules[{i}].http.paths[{j}]"
            upstream, svc, port = backends.resolve(
                ing.namespace or "default", path.backend, f"{where}.backend"
            )
            text = path.path or "/"
            path_type: PathType = "Exact" if path.path_type == "Exact" else "Prefix"
            regex = use_regex or (rewrite is not None and rewrite != text)
            problem = check_regex(text) if regex else None
            if problem is None and not regex and any(c.isspace() or c in '";{}' for c in text):
                problem = "whitespace, quotes, braces and ';' cannot be written into a location"
            if problem is not None:
                raise Skip("InvalidPath", f"{where}.path: {text!r}: {problem}")
            locations.append(
                Location(text, path_type, ref, upstream, svc, port, **common)  # type: ignore[arg-type]
            )
        rules.append((host, locations))
    tls: dict[str, str] = {}
    files: dict[str, str] = {}
    for tls_entry in ing.spec.tls:
        if not tls_entry.secret_name:
            continue  # ingress-nginx serves its default certificate for these hosts
        name, content = _tls_secret(objs, ing.namespace or "default", tls_entry.secret_name)
        files[name] = content
        for host in tls_entry.hosts:
            tls.setdefault(host.lower(), name)
    return _Parsed(ref, ing, canary, default_upstream, default_service, rules, tls, files)


def _canary_of(ing: Ingress, upstream: Upstream) -> Canary:
    header = _annotation(ing, "canary-by-header")
    if header is not None and not _HEADER_NAME.match(header):
        raise Skip("InvalidAnnotation", f"{ANNOTATION}canary-by-header: {header!r} is not a header name")
    value = _annotation(ing, "canary-by-header-value")
    if value is not None and (not value or any(c in value for c in '"\\;{}') or value != value.strip()):
        raise Skip("InvalidAnnotation", f"{ANNOTATION}canary-by-header-value: {value!r} cannot be matched")
    total = _int(ing, "canary-weight-total", 100, 1)
    weight = _int(ing, "canary-weight", 0, 0, total)
    return Canary(upstream, weight, total, header, value)


class _Builder:
    def __init__(self, plan: Plan, cluster: str, objs: KubeObjects) -> None:
        self.objs = objs
        self.backends = _Backends(plan, cluster)
        self.servers: dict[str, Server] = {
            DEFAULT_SERVER: Server(DEFAULT_SERVER, [Location("/", "Prefix", None, None, default=True)])
        }
        self.files: dict[str, str] = {}
        self.served: list[str] = []
        self.problems: list[IngressProblem] = []

    def add(self, parsed: _Parsed) -> None:
        """Adds a checked Ingress (ingress-nginx createServers + getBackendServers)."""
        ing = parsed.ingress
        if parsed.canary:
            self._add_canary(parsed)
            return
        catch_all = self.servers[DEFAULT_SERVER].locations[0]
        if parsed.default_upstream is not None and not ing.spec.rules and catch_all.default:
            catch_all.upstream = parsed.default_upstream
            catch_all.ingress = parsed.ref
            catch_all.service, catch_all.port = parsed.default_service
        for host, _ in parsed.rules:
            if host not in self.servers:
                root = Location("/", "Prefix", None, parsed.default_upstream, default=True)
                if parsed.default_upstream is not None:
                    root.ingress = parsed.ref
                    root.service, root.port = parsed.default_service
                self.servers[host] = Server(host, [root])
        for host, locations in parsed.rules:
            server = self.servers[host]
            for loc in locations:
                same = next(
                    (x for x in server.locations if x.path == loc.path and x.path_type == loc.path_type), None
                )
                if same is None:
                    server.locations.append(loc)
                elif same.default:  # the rule's own "/" replaces the default root location
                    server.locations[server.locations.index(same)] = loc
                # else: first one wins (an earlier Ingress has this path and type)
        for host, name in parsed.tls.items():
            tls_server = self.servers.get(host)
            if tls_server is not None and tls_server.certificate is None and host != DEFAULT_SERVER:
                tls_server.certificate = name
                tls_server.tls_ingress = parsed.ref
                self.files[name] = parsed.files[name]
        self.served.append(parsed.ref)

    def _add_canary(self, parsed: _Parsed) -> None:
        """A canary Ingress adds its backend to the same host and path of a main Ingress; alone it
        serves nothing (ingress-nginx mergeAlternativeBackends)."""
        canary_found = False
        for host, locations in parsed.rules:
            server = self.servers.get(host)
            for loc in locations:
                main = next(
                    (
                        x
                        for x in (server.locations if server else [])
                        if x.path == loc.path and x.path_type == loc.path_type and not x.default
                    ),
                    None,
                )
                if main is not None and main.upstream is not None and loc.upstream is not None:
                    main.canary = _canary_of(parsed.ingress, loc.upstream)
                    canary_found = True
        if not canary_found:
            raise Skip("NoMainIngress", "a canary Ingress needs a main Ingress with the same host and path")
        self.served.append(parsed.ref)


def _order(server: Server) -> list[Location]:
    """ingress-nginx updateServerLocations, then the two stable sorts of createServers."""
    exact = {loc.path for loc in server.locations if loc.path_type == "Exact"}
    out: list[Location] = []
    for loc in server.locations:
        if loc.path == "/" or loc.path_type != "Prefix" or loc.needs_rewrite or loc.use_regex:
            out.append(loc)
            continue
        normalized = loc.path if loc.path.endswith("/") else loc.path + "/"
        if loc.path not in exact:
            out.append(dataclasses.replace(loc, path_type="Exact"))
        loc.path = normalized
        out.append(loc)
    out.sort(key=lambda x: x.path, reverse=True)
    out.sort(key=lambda x: len(x.path), reverse=True)
    return out


def _regex_server(server: Server) -> bool:
    return any(loc.use_regex or loc.needs_rewrite for loc in server.locations)


def wildcard_server_name(host: str) -> str:
    """``*.example.com`` as ingress-nginx writes it: exactly one more label (template.go buildServerName)."""
    rest = host.removeprefix("*.")
    return "~^(?<subdomain>[\\w-]+)\\." + rest.replace(".", "\\.") + "$"


# -- the text -----------------------------------------------------------------------------------------


class _Text:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.owners: list[str | None] = []

    def add(self, text: str, owner: str | None = None, indent: int = 0) -> None:
        for line in text.splitlines() or [""]:
            self.lines.append(("    " * indent + line) if line else "")
            self.owners.append(owner)


_HEAD = """\
# nginx.conf of the NGINX Ingress controller, rendered by acknet (dataplane/render/ingress.py).
# Paths are relative to the controller pod's NGINX prefix (nginx -p) in the emulation's state folder.
user root;
worker_processes 1;
pid nginx.pid;
error_log logs/error.log notice;
# A reload lets old workers finish the requests they hold (ingress-nginx worker-shutdown-timeout).
worker_shutdown_timeout 30s;

events {
    worker_connections 4096;
    multi_accept on;
}

http {
    default_type text/html;
    server_tokens off;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 1000;
    server_names_hash_bucket_size 128;
    server_names_hash_max_size 4096;
    map_hash_bucket_size 128;
    variables_hash_bucket_size 256;

    client_body_temp_path tmp/client_body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;

    log_format upstreaminfo '$remote_addr - $remote_user [$time_local] "$request" $status '
        '$body_bytes_sent "$http_referer" "$http_user_agent" $request_length $request_time '
        '[$proxy_upstream_name] $upstream_addr $upstream_status $req_id $namespace/$ingress_name';
    access_log logs/access.log upstreaminfo buffer=32k flush=1s;

    # ingress-nginx ConfigMap defaults (internal/ingress/controller/config/config.go).
    client_max_body_size 1m;
    proxy_connect_timeout 5s;
    proxy_send_timeout 60s;
    proxy_read_timeout 60s;
    proxy_buffering off;
    proxy_request_buffering on;
    proxy_http_version 1.1;
    proxy_next_upstream error timeout;
    proxy_next_upstream_tries 3;
    # What ingress-nginx tells the backends (nginx.tmpl; use-forwarded-headers false).
    proxy_set_header Host $http_host;
    proxy_set_header X-Request-ID $req_id;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Forwarded-For $remote_addr;
    proxy_set_header X-Forwarded-Host $host;
    proxy_set_header X-Forwarded-Port $server_port;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Scheme $scheme;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection $connection_upgrade;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;

    # A literal $ for values that hold one (geo does not resolve variables; nginx.tmpl).
    geo $literal_dollar {
        default "$";
    }
    map $http_upgrade $connection_upgrade {
        default upgrade;
        '' '';
    }
    map $http_x_request_id $req_id {
        default $http_x_request_id;
        '' $request_id;
    }
    # The HTTPS redirect: plain HTTP, not an ACME challenge (no-tls-redirect-locations).
    map "$scheme:$request_uri" $redirect_to_https {
        "~^http:/\\.well-known/acme-challenge" 0;
        "~^http:" 1;
        default 0;
    }
    # The redirect drops one trailing slash (lua_ingress.lua, preserve-trailing-slash false).
    map $request_uri $redirect_uri {
        "~^(?<kept>.*)/$" $kept;
        default $request_uri;
    }
"""


def _proxy(loc: Location, upstream: str) -> str:
    """The lines that hand a request to ``upstream`` (a name, or a variable holding one)."""
    if loc.protocol in ("GRPC", "GRPCS"):
        scheme = "grpcs" if loc.protocol == "GRPCS" else "grpc"
        return f"grpc_set_header Host $http_host;\ngrpc_pass {scheme}://{upstream};"
    if loc.protocol == "FCGI":
        return "\n".join(
            [
                "fastcgi_param REQUEST_METHOD $request_method;",
                "fastcgi_param QUERY_STRING $query_string;",
                "fastcgi_param CONTENT_TYPE $content_type;",
                "fastcgi_param CONTENT_LENGTH $content_length;",
                "fastcgi_param SCRIPT_NAME $fastcgi_script_name;",
                "fastcgi_param REQUEST_URI $request_uri;",
                "fastcgi_param DOCUMENT_URI $document_uri;",
                "fastcgi_param SERVER_PROTOCOL $server_protocol;",
                "fastcgi_param REMOTE_ADDR $remote_addr;",
                "fastcgi_param SERVER_NAME $server_name;",
                "fastcgi_param SERVER_PORT $server_port;",
                f"fastcgi_pass {upstream};",
            ]
        )
    scheme = "https" if loc.protocol == "HTTPS" else "http"
    return f"proxy_pass {scheme}://{upstream};"  # with the proxy_set_header lines of the http block


def _location(
    out: _Text, server: Server, loc: Location, regex: bool, index: int, maps: list[tuple[str | None, str]]
) -> None:
    if regex:
        head = f'location ~* "^{loc.path}" {{'
    elif loc.path_type == "Exact":
        head = f'location = "{loc.path}" {{'
    else:
        head = f'location "{loc.path}" {{'
    owner = loc.ingress
    body: list[str] = []
    upstream = loc.upstream
    name = upstream.name if upstream is not None else "upstream-default-backend"
    namespace, _, ingress_name = (loc.ingress or "").partition("/")
    body += [
        f'set $namespace "{namespace}";',
        f'set $ingress_name "{ingress_name}";',
        f'set $service_name "{loc.service}";',
        f'set $service_port "{loc.port}";',
        f'set $location_path "{loc.path.replace("$", "${literal_dollar}")}";',
        f'set $proxy_upstream_name "{name}";',
    ]
    # The default location of a host redirects too (ingress-nginx applies the Ingress's annotations
    # to the root location it makes for each host).
    redirect = loc.force_ssl_redirect or (loc.ssl_redirect and server.certificate is not None)
    if redirect and server.host != DEFAULT_SERVER:
        body += [
            "if ($redirect_to_https) {",
            f"    return {HTTP_REDIRECT_CODE} https://$host$redirect_uri;",
            "}",
        ]
    if loc.allow:
        body += [f"allow {cidr};" for cidr in loc.allow] + ["deny all;"]
    if loc.body_size is not None:
        body.append(f"client_max_body_size {loc.body_size};")
    if upstream is None:
        body.append("return 404;")  # the default backend (ingress-nginx's upstream-default-backend)
    elif not upstream.servers and (loc.canary is None or not loc.canary.upstream.servers):
        body.append("return 503;")  # no ready endpoint
    else:
        if loc.needs_rewrite:
            body.append(f'rewrite "(?i){loc.path}" {loc.rewrite_target} break;')
        target = upstream.name
        canary = loc.canary
        if canary is not None and canary.upstream.servers:
            main = upstream.name if upstream.servers else "upstream-503"
            variable = f"$canary_{index}"
            weighted = f"$canary_weight_{index}"
            percent = canary.weight * 100 / canary.weight_total
            shown = f"{percent:.4f}".rstrip("0").rstrip(".")
            if canary.weight >= canary.weight_total:
                maps.append(
                    (owner, f"map $request_id {weighted} {{\n    default {canary.upstream.name};\n}}")
                )
            elif canary.weight == 0:
                maps.append((owner, f"map $request_id {weighted} {{\n    default {main};\n}}"))
            else:
                maps.append(
                    (
                        owner,
                        f'split_clients "${{request_id}}" {weighted} {{\n'
                        f"    {shown}% {canary.upstream.name};\n    * {main};\n}}",
                    )
                )
            if canary.header is not None:
                var = "$http_" + canary.header.lower().replace("-", "_")
                if canary.header_value is not None:
                    cases = f'    "{canary.header_value}" {canary.upstream.name};\n'
                else:
                    cases = f"    always {canary.upstream.name};\n    never {main};\n"
                maps.append((owner, f"map {var} {variable} {{\n{cases}    default {weighted};\n}}"))
            else:
                maps.append((owner, f"map $request_id {variable} {{\n    default {weighted};\n}}"))
            target = variable
        body.append(_proxy(loc, target))
    out.add(head, owner, 2)
    for line in body:
        out.add(line, owner, 3)
    out.add("}", owner, 2)


def _server(out: _Text, server: Server, maps: list[tuple[str | None, str]], counter: list[int]) -> None:
    default = server.host == DEFAULT_SERVER
    out.add("", None, 1)
    out.add(f"## {'default server' if default else server.host}", None, 1)
    out.add("server {", None, 1)
    if default:
        out.add("server_name _;", None, 2)
        out.add("listen 80 default_server reuseport backlog=4096;", None, 2)
        out.add("listen 443 ssl http2 default_server reuseport backlog=4096;", None, 2)
    else:
        name = wildcard_server_name(server.host) if server.host.startswith("*.") else server.host
        out.add(f'server_name "{name}";' if not name.startswith("~") else f"server_name {name};", None, 2)
        out.add("listen 80;", None, 2)
        out.add("listen 443 ssl http2;", None, 2)
    cert = server.certificate or DEFAULT_CERT
    out.add(f"ssl_certificate {cert};", server.tls_ingress, 2)
    out.add(f"ssl_certificate_key {cert};", server.tls_ingress, 2)
    regex = _regex_server(server)
    for loc in _order(server):
        counter[0] += 1
        _location(out, server, loc, regex, counter[0], maps)
    out.add("}", None, 1)


def _upstream(out: _Text, upstream: Upstream) -> None:
    out.add("", None, 1)
    out.add(f"upstream {upstream.name} {{", None, 1)
    for address in upstream.servers:
        out.add(f"server {address} max_fails=0;", None, 2)
    out.add("keepalive 32;", None, 2)
    out.add("}", None, 1)


_TAIL = f"""
    ## health and status (ingress-nginx's port {HEALTH_PORT})
    server {{
        listen {HEALTH_PORT};
        access_log off;
        location = /healthz {{
            return 200 "ok\\n";
        }}
        location = /nginx_status {{
            stub_status;
        }}
        location / {{
            return 404;
        }}
    }}
}}
"""


def render_ingress(plan: Plan, cluster: str, excluded: Mapping[str, str] | None = None) -> IngressConfig:
    """The cluster's nginx.conf. ``excluded`` maps Ingresses (``namespace/name``) to leave out to why
    (what ``nginx -t`` said about their lines); they are reported with reason ``InvalidConfig``."""
    excluded = excluded or {}
    objs = plan.resources.kube.get(cluster) or KubeObjects()
    builder = _Builder(plan, cluster, objs)
    mains: list[_Parsed] = []
    canaries: list[_Parsed] = []
    for (namespace, name), ing in objs.ingresses.items():
        ref = f"{namespace}/{name}"
        if not is_nginx_class(ing, objs):
            continue
        if ref in excluded:
            builder.problems.append(IngressProblem(ref, "InvalidConfig", excluded[ref]))
            continue
        try:
            parsed = _parse(ing, objs, builder.backends)
        except Skip as skip:
            builder.problems.append(IngressProblem(ref, skip.reason, skip.message))
            continue
        (canaries if parsed.canary else mains).append(parsed)
    for parsed in [*mains, *canaries]:  # canaries attach to the main Ingresses, whatever their order
        try:
            builder.add(parsed)
        except Skip as skip:
            builder.problems.append(IngressProblem(parsed.ref, skip.reason, skip.message))
    return _text(cluster, builder)


def _text(cluster: str, builder: _Builder) -> IngressConfig:
    out = _Text()
    out.add(_HEAD)
    servers_text = _Text()
    maps: list[tuple[str | None, str]] = []
    counter = [0]
    names = sorted(h for h in builder.servers if h != DEFAULT_SERVER)
    for host in [DEFAULT_SERVER, *names]:
        _server(servers_text, builder.servers[host], maps, counter)
    used = sorted(
        {
            up.name: up
            for server in builder.servers.values()
            for loc in server.locations
            for up in (loc.upstream, loc.canary.upstream if loc.canary else None)
            if up is not None and up.servers
        }.values(),
        key=lambda u: u.name,
    )
    if any(loc.canary for s in builder.servers.values() for loc in s.locations):
        out.add("", None, 1)
        out.add("# A canary's main backend without endpoints.", None, 1)
        out.add("upstream upstream-503 {", None, 1)
        out.add(f"server 127.0.0.1:{HEALTH_PORT + 1} max_fails=0;", None, 2)
        out.add("}", None, 1)
        out.add(f"server {{\n    listen 127.0.0.1:{HEALTH_PORT + 1};\n    return 503;\n}}", None, 1)
    for upstream in used:
        _upstream(out, upstream)
    for owner, text in maps:
        out.add("", None, 1)
        out.add(text, owner, 1)
    out.lines += servers_text.lines
    out.owners += servers_text.owners
    out.add(_TAIL)
    return IngressConfig(
        cluster=cluster,
        text="\n".join(out.lines) + "\n",
        files=dict(sorted(builder.files.items())),
        served=tuple(builder.served),
        problems=tuple(builder.problems),
        line_owners=tuple(out.owners),
    )
