"""The NGINX Ingress controller's reading of Ingresses: Ingress -> NGINX servers, locations and upstreams.

Pure: one cluster's planned state in, one ``IngressRoutes`` out (the servers with their locations in the
order NGINX meets them, the upstreams with the ready pod addresses, canaries, redirects, source
whitelists, which Ingresses are served and why the others are left out). It is the controller's part of
ingress-nginx (DESIGN.md: controllers do "Ingress -> NGINX config" semantics): ``dataplane/render/
ingress.py`` only writes it as nginx.conf text, and ``analysis/ingress.py`` routes requests through the
same routes, so what ``check``/``trace`` say and what NGINX does cannot drift apart.

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
Every location keeps the Ingress rule it came from (``Location.rule``), counted from 1 as written, so
a trace can name it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
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
DEFAULT_BACKEND_RULE = "defaultBackend"
# The LoadBalancer Service the controller publishes itself through (ACK's add-on; model/load.py).
INGRESS_LB = "kube-system/nginx-ingress-lb"
BACKEND_PROTOCOLS = ("HTTP", "HTTPS", "GRPC", "GRPCS", "FCGI")
_BODY_SIZE = re.compile(r"^[0-9]+[kKmMgG]?$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]+$")
# What a regex path holds that a request for the path's own text would not match ('.' matches itself).
_REGEX_SYNTAX = re.compile(r"[\\^$|?*+()\[\]{}]")

PathType = Literal["Exact", "Prefix"]


@dataclass(frozen=True, slots=True)
class IngressProblem:
    """Why an Ingress is not served: ``reason`` is a CamelCase word, ``message`` says it in full."""

    ingress: str  # "namespace/name"
    reason: str
    message: str


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


@dataclass(frozen=True, slots=True)
class IngressRule:
    """One path of one Ingress as written, for people and for requests that exercise it: ``index`` and
    ``path_index`` count from 1 (``spec.rules[index-1].http.paths[path_index-1]``); ``index`` None is
    the Ingress's ``spec.defaultBackend``. ``literal``: a request for ``path`` itself reaches it (not a
    use-regex or rewrite pattern)."""

    ingress: str  # "namespace/name"
    index: int | None
    path_index: int
    host: str  # DEFAULT_SERVER when the rule has none
    path: str
    path_type: str  # as written: Exact, Prefix or ImplementationSpecific
    literal: bool = True
    ssl_redirect: bool = True
    force_ssl_redirect: bool = False

    def __str__(self) -> str:
        if self.index is None:
            return DEFAULT_BACKEND_RULE
        shown = f"host {self.host}" if self.host != DEFAULT_SERVER else "(any host)"
        return f"rule {self.index} {shown} path {self.path} ({self.path_type})"


@dataclass(slots=True)
class Canary:
    """A canary Ingress's backend on a main Ingress's location (ingress-nginx alternative backends)."""

    upstream: Upstream
    weight: int
    weight_total: int
    header: str | None
    header_value: str | None
    ingress: str = ""  # the canary Ingress, "namespace/name"
    service: str = ""
    port: str = ""
    rule: IngressRule | None = None  # the canary Ingress's own rule


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
    # The Ingress rule this location comes from ("rule 1 host a.example.com path /api (Prefix)", or the
    # defaultBackend); None for a root location without a default backend.
    rule: IngressRule | None = None

    @property
    def needs_rewrite(self) -> bool:
        return bool(self.rewrite_target) and self.rewrite_target != self.path


@dataclass(slots=True)
class Server:
    """One ``server`` block: its host (``_`` for the default server), its locations (in NGINX order once
    ``ingress_routes`` has ordered them), its certificate, and whether every location is a regex."""

    host: str
    locations: list[Location]
    certificate: str | None = None  # file name, relative to the prefix
    tls_ingress: str | None = None
    regex: bool = False  # some location uses a regex or rewrite: all are ``location ~* "^path"``


@dataclass(frozen=True, slots=True)
class IngressRoutes:
    """What the NGINX Ingress controller makes of one cluster's Ingresses: the servers (the default
    server ``_`` first, then by host name) with their locations in NGINX order, the upstreams that have
    ready endpoints (by name), the certificate files, the Ingresses served, and why the others are not.
    ``dataplane/render/ingress.py`` writes it as nginx.conf; ``analysis/ingress.py`` routes requests
    through it."""

    cluster: str
    servers: tuple[Server, ...]
    upstreams: tuple[Upstream, ...]
    files: Mapping[str, str]
    served: tuple[str, ...]
    problems: tuple[IngressProblem, ...]
    # Every rule path of each served Ingress as written, also those an earlier Ingress's same path and
    # type shadows (first one wins), which are in no location.
    rules: Mapping[str, tuple[IngressRule, ...]] = dataclasses.field(default_factory=dict)

    def server(self, host: str) -> Server | None:
        return next((s for s in self.servers if s.host == host), None)

    @property
    def has_canary(self) -> bool:
        return any(loc.canary is not None for s in self.servers for loc in s.locations)


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
    default_rule: IngressRule | None = None


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
            literal = not (regex and _REGEX_SYNTAX.search(text))
            rule_ref = IngressRule(
                ref,
                i + 1,
                j + 1,
                host,
                text,
                path.path_type,
                literal,
                bool(common["ssl_redirect"]),
                bool(common["force_ssl_redirect"]),
            )
            locations.append(
                Location(text, path_type, ref, upstream, svc, port, rule=rule_ref, **common)  # type: ignore[arg-type]
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
    default_rule = None
    if default_upstream is not None:
        default_rule = IngressRule(
            ref,
            None,
            1,
            DEFAULT_SERVER,
            "/",
            "Prefix",
            True,
            bool(common["ssl_redirect"]),
            bool(common["force_ssl_redirect"]),
        )
    return _Parsed(ref, ing, canary, default_upstream, default_service, rules, tls, files, default_rule)


def _canary_of(ing: Ingress, loc: Location) -> Canary:
    header = _annotation(ing, "canary-by-header")
    if header is not None and not _HEADER_NAME.match(header):
        raise Skip("InvalidAnnotation", f"{ANNOTATION}canary-by-header: {header!r} is not a header name")
    value = _annotation(ing, "canary-by-header-value")
    if value is not None and (not value or any(c in value for c in '"\\;{}') or value != value.strip()):
        raise Skip("InvalidAnnotation", f"{ANNOTATION}canary-by-header-value: {value!r} cannot be matched")
    total = _int(ing, "canary-weight-total", 100, 1)
    weight = _int(ing, "canary-weight", 0, 0, total)
    assert loc.upstream is not None
    return Canary(
        loc.upstream, weight, total, header, value, loc.ingress or "", loc.service, loc.port, loc.rule
    )


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
            catch_all.rule = parsed.default_rule
        for host, _ in parsed.rules:
            if host not in self.servers:
                root = Location("/", "Prefix", None, parsed.default_upstream, default=True)
                if parsed.default_upstream is not None:
                    root.ingress = parsed.ref
                    root.service, root.port = parsed.default_service
                    root.rule = parsed.default_rule
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
                    main.canary = _canary_of(parsed.ingress, loc)
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
        out.append(dataclasses.replace(loc, path=normalized))
    out.sort(key=lambda x: x.path, reverse=True)
    out.sort(key=lambda x: len(x.path), reverse=True)
    return out


def _regex_server(server: Server) -> bool:
    return any(loc.use_regex or loc.needs_rewrite for loc in server.locations)


def wildcard_server_name(host: str) -> str:
    """``*.example.com`` as ingress-nginx writes it: exactly one more label (template.go buildServerName)."""
    rest = host.removeprefix("*.")
    return "~^(?<subdomain>[\\w-]+)\\." + rest.replace(".", "\\.") + "$"


# -- the whole cluster ---------------------------------------------------------------------------------


def ingress_routes(plan: Plan, cluster: str, excluded: Mapping[str, str] | None = None) -> IngressRoutes:
    """The cluster's servers, locations and upstreams as the controller builds them. ``excluded`` maps
    Ingresses (``namespace/name``) to leave out to why (what ``nginx -t`` said about their lines); they
    are reported with reason ``InvalidConfig``."""
    excluded = excluded or {}
    objs = plan.resources.kube.get(cluster) or KubeObjects()
    builder = _Builder(plan, cluster, objs)
    rules: dict[str, tuple[IngressRule, ...]] = {}
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
            continue
        written = [loc.rule for _, locations in parsed.rules for loc in locations if loc.rule is not None]
        if parsed.default_rule is not None:
            written.append(parsed.default_rule)
        rules[parsed.ref] = tuple(written)
    names = sorted(h for h in builder.servers if h != DEFAULT_SERVER)
    servers = []
    for host in [DEFAULT_SERVER, *names]:
        server = builder.servers[host]
        # Whether the server is all regex is decided on the locations as the Ingresses wrote them.
        regex = _regex_server(server)
        servers.append(dataclasses.replace(server, locations=_order(server), regex=regex))
    used = sorted(
        {
            up.name: up
            for server in servers
            for loc in server.locations
            for up in (loc.upstream, loc.canary.upstream if loc.canary else None)
            if up is not None and up.servers
        }.values(),
        key=lambda u: u.name,
    )
    return IngressRoutes(
        cluster=cluster,
        servers=tuple(servers),
        upstreams=tuple(used),
        files=dict(sorted(builder.files.items())),
        served=tuple(builder.served),
        problems=tuple(builder.problems),
        rules=rules,
    )
