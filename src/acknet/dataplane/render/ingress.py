"""The NGINX Ingress controller's nginx.conf text, from the routes the controller builds.

Pure: ``controllers/ingress.py`` turns one cluster's Ingresses, Services, EndpointSlices and TLS Secrets
into servers, locations and upstreams (``IngressRoutes``: which Ingresses are served, in what order,
with which annotations, and why the others are left out); this module only writes them as nginx.conf,
with the certificate files it names and the owner of every line. The same text serves every controller
pod: every path in it is relative to the pod's own NGINX prefix (``nginx -p``), which
dataplane/apply/nginx.py sets to a folder of the emulation's state folder. NGINX does the routing.

How each location is written follows ingress-nginx's nginx.tmpl (without Lua): ``location = "/p"`` for
Exact, ``location "/p/"`` for Prefix, ``location ~* "^/p"`` in a regex server; the 308 to https as an
``if`` on ``$redirect_to_https``; ``allow``/``deny`` for whitelist-source-range; ``return 404`` for the
default backend and ``return 503`` for a backend without ready endpoints; canaries as ``map`` and
``split_clients`` on the request id and the canary header.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from acknet.controllers.ingress import (
    DEFAULT_CERT,
    DEFAULT_SERVER,
    HEALTH_PORT,
    HTTP_REDIRECT_CODE,
    IngressProblem,
    IngressRoutes,
    Location,
    Server,
    Upstream,
    check_regex,
    controller_pods,
    ingress_routes,
    is_nginx_class,
    wildcard_server_name,
)
from acknet.controllers.state import Plan
from acknet.model.ingress_config import DEFAULT as DEFAULT_CONFIG
from acknet.model.ingress_config import IngressNginxConfig, controller_config
from acknet.model.resources import KubeObjects

# Re-exported: the data plane, the daemon and the tests import these from here too.
__all__ = [
    "DEFAULT_CERT",
    "IngressConfig",
    "IngressProblem",
    "check_regex",
    "controller_pods",
    "is_nginx_class",
    "render_ingress",
    "wildcard_server_name",
]


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


# -- the text -----------------------------------------------------------------------------------------


class _Text:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.owners: list[str | None] = []

    def add(self, text: str, owner: str | None = None, indent: int = 0) -> None:
        for line in text.splitlines() or [""]:
            self.lines.append(("    " * indent + line) if line else "")
            self.owners.append(owner)


# The http block's head, in three parts around what use-forwarded-headers changes (_head).
_HEAD_TOP = """\
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
"""
_HEAD_MIDDLE = """\
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
"""
_HEAD_TAIL = """\
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


# ingress-nginx's ConfigMap use-forwarded-headers (model/ingress_config.py): nginx.tmpl's maps for
# $pass_access_scheme, $pass_server_port and $best_http_host, which lua_ingress.lua's rewrite sets
# from X-Forwarded-Proto, -Port and the first X-Forwarded-Host; the redirect and the headers passed to
# the backends use them; and the realip module takes the client from X-Forwarded-For.
_PLAIN_HEADERS = """\
    # What ingress-nginx tells the backends (nginx.tmpl; use-forwarded-headers false).
    proxy_set_header Host $http_host;
    proxy_set_header X-Request-ID $req_id;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Forwarded-For $remote_addr;
    proxy_set_header X-Forwarded-Host $host;
    proxy_set_header X-Forwarded-Port $server_port;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Scheme $scheme;
"""
_PLAIN_REDIRECT = """\
    # The HTTPS redirect: plain HTTP, not an ACME challenge (no-tls-redirect-locations).
    map "$scheme:$request_uri" $redirect_to_https {
"""
_FORWARDED_REDIRECT = """\
    # The HTTPS redirect: plain HTTP as the proxy in front saw it (X-Forwarded-Proto, else this
    # connection's scheme), not an ACME challenge (lua_ingress.lua redirect_to_https).
    map "$pass_access_scheme:$request_uri" $redirect_to_https {
"""


def _forwarded_headers(config: IngressNginxConfig) -> str:
    xff = "$full_x_forwarded_for" if config.compute_full_forwarded_for else "$remote_addr"
    lines = [
        "    # What ingress-nginx tells the backends with use-forwarded-headers (nginx.tmpl): the host,",
        "    # scheme and port the proxy in front names in X-Forwarded-*, else this connection's.",
        "    proxy_set_header Host $best_http_host;",
        "    proxy_set_header X-Request-ID $req_id;",
        "    proxy_set_header X-Real-IP $remote_addr;",
        f"    proxy_set_header X-Forwarded-For {xff};",
        "    proxy_set_header X-Forwarded-Host $best_http_host;",
        "    proxy_set_header X-Forwarded-Port $pass_server_port;",
        "    proxy_set_header X-Forwarded-Proto $pass_access_scheme;",
        "    proxy_set_header X-Scheme $pass_access_scheme;",
        "    # The client is the last address in X-Forwarded-For that is not a trusted proxy",
        "    # (proxy-real-ip-cidr); $realip_remote_addr keeps the connecting one.",
        "    real_ip_header X-Forwarded-For;",
        "    real_ip_recursive on;",
        *(f"    set_real_ip_from {cidr};" for cidr in config.proxy_real_ip_cidr),
        "    map $http_x_forwarded_proto $pass_access_scheme {",
        "        default $http_x_forwarded_proto;",
        "        '' $scheme;",
        "    }",
        "    map $http_x_forwarded_port $pass_server_port {",
        "        default $http_x_forwarded_port;",
        "        '' $server_port;",
        "    }",
        "    map $http_host $this_host {",
        "        default $http_host;",
        "        '' $host;",
        "    }",
        "    # The first X-Forwarded-Host (lua_ingress.lua parse_x_forwarded_host).",
        "    map $http_x_forwarded_host $best_http_host {",
        '        "~^(?<forwarded_host>[^,]+)" $forwarded_host;',
        "        default $this_host;",
        "    }",
        "    # The host a redirect names, without a port (lua_ingress.lua redirect_host).",
        "    map $best_http_host $redirect_host {",
        '        "~^(?<redirect_name>[^:]*)" $redirect_name;',
        "        default $best_http_host;",
        "    }",
    ]
    if config.compute_full_forwarded_for:
        lines += [
            "    # compute-full-forwarded-for: the incoming X-Forwarded-For and the connecting address.",
            "    map $http_x_forwarded_for $full_x_forwarded_for {",
            '        default "$http_x_forwarded_for, $realip_remote_addr";',
            "        '' $realip_remote_addr;",
            "    }",
        ]
    return "\n".join(lines) + "\n"


def _head(config: IngressNginxConfig) -> str:
    """The http block's head, with use-forwarded-headers' maps and headers when it is on."""
    if not config.use_forwarded_headers:
        return _HEAD_TOP + _PLAIN_HEADERS + _HEAD_MIDDLE + _PLAIN_REDIRECT + _HEAD_TAIL
    return _HEAD_TOP + _forwarded_headers(config) + _HEAD_MIDDLE + _FORWARDED_REDIRECT + _HEAD_TAIL


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
    out: _Text,
    server: Server,
    loc: Location,
    regex: bool,
    index: int,
    maps: list[tuple[str | None, str]],
    redirect_host: str = "$host",
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
            f"    return {HTTP_REDIRECT_CODE} https://{redirect_host}$redirect_uri;",
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


def _server(
    out: _Text,
    server: Server,
    maps: list[tuple[str | None, str]],
    counter: list[int],
    redirect_host: str = "$host",
) -> None:
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
    for loc in server.locations:  # already in NGINX order (controllers/ingress.py)
        counter[0] += 1
        _location(out, server, loc, server.regex, counter[0], maps, redirect_host)
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
    config = controller_config(plan.resources.kube.get(cluster) or KubeObjects())
    return _text(ingress_routes(plan, cluster, excluded), config)


def _text(routes: IngressRoutes, config: IngressNginxConfig = DEFAULT_CONFIG) -> IngressConfig:
    out = _Text()
    out.add(_head(config))
    redirect_host = "$redirect_host" if config.use_forwarded_headers else "$host"
    servers_text = _Text()
    maps: list[tuple[str | None, str]] = []
    counter = [0]
    for server in routes.servers:
        _server(servers_text, server, maps, counter, redirect_host)
    if routes.has_canary:
        out.add("", None, 1)
        out.add("# A canary's main backend without endpoints.", None, 1)
        out.add("upstream upstream-503 {", None, 1)
        out.add(f"server 127.0.0.1:{HEALTH_PORT + 1} max_fails=0;", None, 2)
        out.add("}", None, 1)
        out.add(f"server {{\n    listen 127.0.0.1:{HEALTH_PORT + 1};\n    return 503;\n}}", None, 1)
    for upstream in routes.upstreams:
        _upstream(out, upstream)
    for owner, text in maps:
        out.add("", None, 1)
        out.add(text, owner, 1)
    out.lines += servers_text.lines
    out.owners += servers_text.owners
    out.add(_TAIL)
    return IngressConfig(
        cluster=routes.cluster,
        text="\n".join(out.lines) + "\n",
        files=routes.files,
        served=routes.served,
        problems=routes.problems,
        line_owners=tuple(out.owners),
    )
