"""What the NGINX Ingress controller does with one HTTP request: the Ingress rule that matches, or why
NGINX answers itself (redirect, 404, 403, 503).

An independent reading of the nginx.conf acknet renders (``dataplane/render/ingress.py``, never imported
here) over the same routes the controller builds (``controllers/ingress.py``: servers, locations in
NGINX order, upstreams, canaries), so that ``check`` and ``trace`` say what NGINX does:

- The server: by the Host header (lowercased, without port), as NGINX picks a ``server_name``: an exact
  name first, then the regex names in the order of the file (ingress-nginx writes ``*.example.com`` as
  a regex that takes exactly one more label), then the default server ``_`` (listen ... default_server).
  The SNI of an https request only picks the certificate; the Host header picks the server.
- The location, on the normalised path (percent-decoded, ``//`` merged, dot segments resolved, as
  NGINX's ``$uri``): in a server without regex locations an ``=`` location equal to the path wins
  at once, else the longest prefix location; in a regex server (some Ingress on that host uses
  use-regex or rewrite-target, so every location is ``~* "^path"``) the first location in file order
  whose pattern matches, case-insensitively (ngx_http_core_find_location).
- Within the location, NGINX's phases in order: the rewrite phase (the ``if ($redirect_to_https)``
  308 where the host has TLS and ssl-redirect, or force-ssl-redirect, unless the request is an ACME
  challenge; ``return 404`` for the default backend; ``return 503`` when the backend has no ready
  endpoint), then the access phase (whitelist-source-range's ``allow``/``deny all``: 403), then the
  proxy to the upstream (the Service's ready pod addresses and target ports).
- A canary: ``canary-by-header`` first (the header equal to ``canary-by-header-value``, else
  ``always`` / ``never``; NGINX's ``map`` compares strings ignoring case, ngx_http_map_find lowercases
  the value), then ``canary-weight`` of ``canary-weight-total``: 0 is never, the total is always,
  anything between is a draw per request, so the decision reports the main backend and its reason
  names the canary and its share.

Pure: reads ``IngressRoutes``, never the kernel.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import IPv4Address
from typing import Literal
from urllib.parse import unquote

from acknet.controllers.ingress import (
    ACME_EXEMPT,
    ANNOTATION,
    DEFAULT_SERVER,
    HTTP_REDIRECT_CODE,
    Canary,
    IngressRoutes,
    Location,
    Server,
    Upstream,
)

Scheme = Literal["http", "https"]
Outcome = Literal["proxied", "redirect", "not_found", "forbidden", "unavailable"]
# The host a sample request uses for a wildcard rule: any one label in front of the rest matches.
WILDCARD_LABEL = "probe"


@dataclass(frozen=True, slots=True)
class IngressRequest:
    """One request as NGINX receives it.

    ``host`` is the Host header (and the SNI of https); empty means the client names no host (it
    connects by address), which NGINX's default server takes. ``path`` is the request URI's path (a
    query after ``?`` is ignored). ``client`` is the source address NGINX sees, which
    whitelist-source-range judges; None leaves the whitelist unjudged (the reason says so).
    """

    scheme: Scheme
    host: str
    path: str
    client: IPv4Address | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host or '<address>'}{self.path}"


@dataclass(frozen=True, slots=True)
class IngressDecision:
    """What NGINX does with a request: proxied to a Service's ready endpoints, or answered by itself.

    ``ingress`` and ``rule`` name the Ingress and its rule whose location matched (None when none did);
    ``service`` is ``svc/NS/NAME`` (the canary's when it is chosen); ``upstreams`` the pod addresses
    and target ports NGINX proxies to; ``status`` NGINX's own answer (308, 404, 403, 503), None when it
    proxies. ``location`` is the redirect's target, ``backend_path`` the path the backend receives
    (after rewrite-target).
    """

    outcome: Outcome
    ingress: str | None
    rule: str | None
    service: str | None
    service_port: int | str | None
    upstreams: tuple[tuple[IPv4Address, int], ...]
    status: int | None
    reason: str
    location: str | None = None
    backend_path: str | None = None

    @property
    def proxied(self) -> bool:
        return self.outcome == "proxied"


# -- choosing the server and the location -------------------------------------------------------------


def request_host(host: str) -> str:
    """The Host header as NGINX's ``$host``: lowercased, without a port or a trailing dot."""
    text = host.strip().lower()
    name, colon, port = text.rpartition(":")
    if colon and port.isdigit() and not name.endswith("]"):
        text = name
    return text.rstrip(".")


def _wildcard_regex(host: str) -> re.Pattern[str]:
    # ingress-nginx's buildServerName: ``~^(?<subdomain>[\w-]+)\.example\.com$``; NGINX's PCRE \w is ASCII.
    return re.compile(r"^[\w-]+\." + re.escape(host.removeprefix("*.")) + "$", re.ASCII)


def find_server(routes: IngressRoutes, host: str) -> Server:
    """The server block NGINX picks for ``host``: exact name, then wildcard (regex) names in file order,
    then the default server."""
    wanted = request_host(host)
    named = [s for s in routes.servers if s.host != DEFAULT_SERVER]
    exact = next((s for s in named if not s.host.startswith("*.") and s.host == wanted), None)
    if exact is not None:
        return exact
    for server in named:
        if server.host.startswith("*.") and _wildcard_regex(server.host).match(wanted):
            return server
    default = routes.server(DEFAULT_SERVER)
    assert default is not None, "controllers/ingress.py always makes the default server"
    return default


def normalize_path(path: str) -> str:
    """The path as NGINX's ``$uri``: without query and fragment, percent-decoded, consecutive slashes
    merged (merge_slashes on), ``.`` and ``..`` segments resolved."""
    text = path.split("?", 1)[0].split("#", 1)[0] or "/"
    text = unquote(text)
    if not text.startswith("/"):
        text = "/" + text
    text = re.sub(r"/{2,}", "/", text)
    out: list[str] = []
    parts = text.split("/")[1:]
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == ".":
            if last:
                out.append("")
            continue
        if part == "..":
            if out:
                out.pop()
            if last:
                out.append("")
            continue
        out.append(part)
    return "/" + "/".join(out)


@lru_cache(maxsize=4096)
def _location_regex(path: str) -> re.Pattern[str] | None:
    try:
        return re.compile("^" + path, re.IGNORECASE)
    except re.error:
        return None  # NGINX would not load it either (nginx -t leaves its Ingress out)


def find_location(server: Server, uri: str) -> Location | None:
    """The location NGINX picks in ``server`` for the normalised ``uri``."""
    if server.regex:
        for loc in server.locations:
            pattern = _location_regex(loc.path)
            if pattern is not None and pattern.match(uri):
                return loc
        return None
    best: Location | None = None
    for loc in server.locations:
        if loc.path_type == "Exact":
            if uri == loc.path:
                return loc
        elif uri.startswith(loc.path) and (best is None or len(loc.path) > len(best.path)):
            best = loc
    return best


# -- the decision -----------------------------------------------------------------------------------


def _service(loc: Location | Canary, ingress: str | None) -> tuple[str | None, int | str | None]:
    if not loc.service:
        return None, None
    namespace = (ingress or "").partition("/")[0]
    port: int | str = int(loc.port) if loc.port.isdigit() else loc.port
    return f"svc/{namespace}/{loc.service}", port


def _servers(upstream: Upstream | None) -> tuple[tuple[IPv4Address, int], ...]:
    if upstream is None:
        return ()
    out = []
    for text in upstream.servers:
        ip, _, port = text.rpartition(":")
        out.append((IPv4Address(ip), int(port)))
    return tuple(out)


def _redirects(server: Server, loc: Location) -> bool:
    """Whether the location sends plain HTTP to https (render: ``if ($redirect_to_https)``)."""
    if server.host == DEFAULT_SERVER:
        return False
    return loc.force_ssl_redirect or (loc.ssl_redirect and server.certificate is not None)


def _redirectable(request: IngressRequest) -> bool:
    """``$redirect_to_https``: plain HTTP whose request URI is not an ACME challenge (render's map on
    ``$scheme:$request_uri``, ingress-nginx's no-tls-redirect-locations)."""
    return request.scheme == "http" and not request.path.startswith(ACME_EXEMPT)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def _canary_choice(canary: Canary, headers: Mapping[str, str]) -> tuple[bool | None, str]:
    """(True: the canary, False: the main backend, None: a draw by weight) and the words for it."""
    who = f"canary Ingress {canary.ingress}"
    if canary.header is not None:
        value = _header(headers, canary.header)
        if value is not None:
            if canary.header_value is not None:
                if value.lower() == canary.header_value.lower():
                    return True, f"{who}: header {canary.header}: {canary.header_value} chooses it"
            elif value.lower() == "always":
                return True, f"{who}: header {canary.header}: always chooses it"
            elif value.lower() == "never":
                return False, f"{who}: header {canary.header}: never keeps the main backend"
    if canary.weight >= canary.weight_total:
        return True, f"{who}: canary-weight {canary.weight} of {canary.weight_total} takes every request"
    if canary.weight == 0:
        by = f" (send header {canary.header} to choose it)" if canary.header else ""
        return False, f"{who}: canary-weight 0, the main backend takes every request{by}"
    share = canary.weight * 100 / canary.weight_total
    shown = f"{share:.4f}".rstrip("0").rstrip(".")
    by = f"; header {canary.header} chooses it" if canary.header else ""
    return None, (
        f"{who} takes {shown}% of requests by canary-weight (to svc/{canary.ingress.partition('/')[0]}/"
        f"{canary.service}:{canary.port}){by}; shown: the main backend"
    )


def _rewritten(loc: Location, uri: str, path: str) -> str:
    """What the backend receives: NGINX's ``rewrite "(?i)<path>" <target> break`` replaces the whole
    URI with the target (``$1``... from the captures) when the pattern matches; else the request URI."""
    if not loc.needs_rewrite or loc.rewrite_target is None:
        return path
    try:
        match = re.search(loc.path, uri, re.IGNORECASE)
    except re.error:
        return path
    if match is None:
        return path
    groups = match.groups()

    def capture(m: re.Match[str]) -> str:
        n = int(m.group(1))
        return (groups[n - 1] or "") if 0 < n <= len(groups) else ""

    return re.sub(r"\$(\d)", capture, loc.rewrite_target)


def route(routes: IngressRoutes, request: IngressRequest) -> IngressDecision:
    """What NGINX, configured from ``routes``, does with ``request`` (the module docstring)."""
    server = find_server(routes, request.host)
    host = request_host(request.host)
    uri = normalize_path(request.path)
    loc = find_location(server, uri)
    shown_host = host or "(no host)"
    if loc is None or loc.upstream is None:
        rule = str(loc.rule) if loc is not None and loc.rule is not None else None
        if loc is not None and _redirects(server, loc) and _redirectable(request):
            return _redirect(server, loc, request, host)
        if server.host == DEFAULT_SERVER:
            if any(s.host != DEFAULT_SERVER for s in routes.servers) or host:
                why = f"no Ingress rule has host {shown_host}, and no rule without a host matches {uri}"
            else:
                why = f"no Ingress rule matches {uri}"
            change = f"add an Ingress rule for host {host}" if host else "add an Ingress rule for that path"
        else:
            why = f"no path of the Ingress rules of host {host} matches {uri}"
            change = f"add a path to an Ingress rule of host {host}, or a defaultBackend"
        return IngressDecision(
            "not_found",
            None,
            rule,
            None,
            None,
            (),
            404,
            f"{why}: NGINX answers 404 from its default backend ({change})",
        )
    ingress = loc.ingress
    rule = str(loc.rule) if loc.rule is not None else None
    named = f"Ingress {ingress} {rule}" if rule else f"Ingress {ingress}"
    service, port = _service(loc, ingress)
    if _redirects(server, loc) and _redirectable(request):
        return _redirect(server, loc, request, host)
    canary = loc.canary if loc.canary is not None and loc.canary.upstream.servers else None
    main_ready = bool(loc.upstream.servers)
    if not main_ready and canary is None:
        return IngressDecision(
            "unavailable",
            ingress,
            rule,
            service,
            port,
            (),
            503,
            f"{named} matches {request.url}, but {service}:{port} has no ready endpoint: NGINX answers 503 "
            "(the Service's selector must match a running, ready pod that declares the targetPort)",
        )
    note = ""
    if loc.allow:
        ranges = ", ".join(loc.allow)
        if request.client is None:
            note = f"; whitelist-source-range {ranges} not judged: no client address given"
        elif not any(request.client in ipaddress.ip_network(cidr) for cidr in loc.allow):
            return IngressDecision(
                "forbidden",
                ingress,
                rule,
                service,
                port,
                (),
                403,
                f"{named} matches {request.url}, but the client address {request.client} is not in its "
                f"whitelist-source-range {ranges}: NGINX answers 403 (add {request.client} or its range "
                f"to the annotation {ANNOTATION}whitelist-source-range of Ingress {ingress})",
            )
        else:
            note = f"; {request.client} is in whitelist-source-range {ranges}"
    chosen: bool | None = False
    if canary is not None:
        chosen, words = _canary_choice(canary, request.headers)
        note += f"; {words}"
    backend_path = _rewritten(loc, uri, request.path)
    rewrite = f", rewritten to {backend_path}" if backend_path != request.path else ""
    if chosen and canary is not None:
        c_service, c_port = _service(canary, canary.ingress)
        c_rule = f" {canary.rule}" if canary.rule is not None else ""
        return IngressDecision(
            "proxied",
            canary.ingress,
            str(canary.rule) if canary.rule is not None else rule,
            c_service,
            c_port,
            _servers(canary.upstream),
            None,
            f"{named} matches {request.url} and the canary Ingress {canary.ingress}{c_rule} takes it: "
            f"NGINX proxies to {c_service}:{c_port}{rewrite}{note}",
            backend_path=backend_path,
        )
    if not main_ready:
        return IngressDecision(
            "unavailable",
            ingress,
            rule,
            service,
            port,
            (),
            503,
            f"{named} matches {request.url}, but {service}:{port} has no ready endpoint: NGINX answers 503 "
            f"(upstream-503){note}",
        )
    upstreams = _servers(loc.upstream)
    listed = ", ".join(f"{ip}:{p}" for ip, p in upstreams)
    return IngressDecision(
        "proxied",
        ingress,
        rule,
        service,
        port,
        upstreams,
        None,
        f"{named} matches {request.url}: NGINX proxies to {service}:{port} ({listed}){rewrite}{note}",
        backend_path=backend_path,
    )


def _redirect(server: Server, loc: Location, request: IngressRequest, host: str) -> IngressDecision:
    # ``return 308 https://$host$redirect_uri``: $redirect_uri is the request URI without one trailing
    # slash (render: the map on $request_uri; lua_ingress.lua's preserve-trailing-slash false).
    uri = request.path or "/"
    target = f"https://{host}{uri[:-1] if uri.endswith('/') else uri}"
    why = "force-ssl-redirect" if loc.force_ssl_redirect else f"host {server.host} has TLS and ssl-redirect"
    rule = str(loc.rule) if loc.rule is not None else None
    named = f"Ingress {loc.ingress} {rule}" if loc.ingress and rule else f"the host {server.host}"
    change = (
        f'send https, or set {ANNOTATION}force-ssl-redirect: "false"'
        if loc.force_ssl_redirect
        else f'send https, or set {ANNOTATION}ssl-redirect: "false"'
    )
    service, port = _service(loc, loc.ingress)
    then = f"; over https it goes to {service}:{port}" if service else ""
    return IngressDecision(
        "redirect",
        loc.ingress,
        rule,
        None,
        None,
        (),
        HTTP_REDIRECT_CODE,
        f"{named}: plain HTTP is answered {HTTP_REDIRECT_CODE} to {target} ({why}){then} ({change})",
        location=target,
    )


# -- requests that exercise an Ingress -------------------------------------------------------------------


def sample_requests(routes: IngressRoutes, namespace: str, name: str) -> list[IngressRequest]:
    """One request per rule path of Ingress ``namespace/name`` that a client would send to exercise it.

    https for a host with TLS (or force-ssl-redirect), http for the others, and http as well where
    ssl-redirect is off; a concrete host for a wildcard (``probe.example.com`` for ``*.example.com``)
    and no host (empty: by address, NGINX's default server) for a rule without one; the path itself
    for Exact and Prefix paths. Regex paths (use-regex, or rewrite-target with a pattern) are left out
    when their text holds regex syntax (``/id/[0-9]+``: no request is that pattern), kept when it is a
    plain path that matches itself. A canary Ingress's requests carry its canary-by-header (with the
    header value, else ``always``); one without a header is exercised by weight only. An Ingress with
    no rules gets one request for its defaultBackend. An Ingress that is not served gets none.
    Deterministic: in the order of the rules as written, https before http.
    """
    ref = f"{namespace}/{name}"
    rules = routes.rules.get(ref, ())
    headers: dict[str, str] = {}
    for server in routes.servers:
        for loc in server.locations:
            c = loc.canary
            if c is not None and c.ingress == ref and c.header is not None:
                headers = {c.header: c.header_value if c.header_value is not None else "always"}
    has_rules = any(r.index is not None for r in rules)
    out: dict[tuple[str, str, str], IngressRequest] = {}
    for rule in rules:
        if not rule.literal or (rule.index is None and has_rules):
            continue
        host = rule.host
        if host == DEFAULT_SERVER:
            host = ""
        elif host.startswith("*."):
            host = f"{WILDCARD_LABEL}.{host[2:]}"
        held = routes.server(rule.host)
        tls = held is not None and held.certificate is not None and rule.host != DEFAULT_SERVER
        redirected = rule.host != DEFAULT_SERVER and (rule.force_ssl_redirect or (rule.ssl_redirect and tls))
        schemes: list[Scheme] = []
        if tls or (rule.force_ssl_redirect and rule.host != DEFAULT_SERVER):
            schemes.append("https")
        if not redirected:
            schemes.append("http")
        for scheme in schemes:
            out.setdefault((scheme, host, rule.path), IngressRequest(scheme, host, rule.path, None, headers))
    return list(out.values())
