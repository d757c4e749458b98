"""The NGINX Ingress controller's ConfigMap: global settings for every Ingress it serves.

On ACK the controller reads ``kube-system/nginx-configuration`` (its ``--configmap`` flag; ACK help
page "Nginx Ingress configuration dictionary": ``kubectl edit cm -n kube-system nginx-configuration``).
ingress-nginx documents some 200 keys (docs/user-guide/nginx-configuration/configmap.md); acknet
implements the ones below, and every other key is reported, not silently ignored: a warning names the
file, the ConfigMap and ``data.<key>``. A value ingress-nginx could not parse leaves the default in
place, as the controller does, and is reported the same way.

- ``use-forwarded-headers`` (default false): trust the ``X-Forwarded-*`` headers a proxy in front of
  NGINX sends. The scheme, port and host of a request become X-Forwarded-Proto, -Port and the first
  X-Forwarded-Host (lua_ingress.lua ``rewrite``: ``$pass_access_scheme``, ``$pass_server_port``,
  ``$best_http_host``), which the HTTPS redirect and the headers passed to the backend use; and the
  client address comes from X-Forwarded-For (the realip module, nginx.tmpl).
- ``compute-full-forwarded-for`` (default false): with use-forwarded-headers, pass the backend the
  incoming X-Forwarded-For with the connecting address appended, instead of the client address alone.
- ``proxy-real-ip-cidr`` (default ``0.0.0.0/0``): the addresses whose X-Forwarded-For is trusted,
  comma-separated CIDRs.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from acknet.model import defaults
from acknet.model.diagnostics import Diagnostic, warning
from acknet.model.k8s import ConfigMap
from acknet.model.resources import KubeObjects


@dataclass(frozen=True, slots=True)
class IngressNginxConfig:
    """The settings acknet implements, with ingress-nginx's defaults (internal/ingress/controller/
    config/config.go NewDefault)."""

    use_forwarded_headers: bool = False
    compute_full_forwarded_for: bool = False
    proxy_real_ip_cidr: tuple[str, ...] = ("0.0.0.0/0",)


DEFAULT = IngressNginxConfig()
USE_FORWARDED_HEADERS = "use-forwarded-headers"
COMPUTE_FULL_FORWARDED_FOR = "compute-full-forwarded-for"
PROXY_REAL_IP_CIDR = "proxy-real-ip-cidr"
KEYS = (USE_FORWARDED_HEADERS, COMPUTE_FULL_FORWARDED_FOR, PROXY_REAL_IP_CIDR)

# The spellings Go's strconv.ParseBool takes, which ingress-nginx's ConfigMap decoding uses.
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def read(cm: ConfigMap | None) -> tuple[IngressNginxConfig, list[Diagnostic]]:
    """The settings of the controller's ConfigMap (defaults without one), and a warning per key acknet
    does not implement or value it cannot use."""
    if cm is None:
        return DEFAULT, []
    problems: list[Diagnostic] = []

    def problem(key: str, message: str) -> None:
        problems.append(warning(message, cm.origin, cm.ref, f"data.{key}"))

    def flag(key: str, default: bool) -> bool:
        value = cm.data.get(key)
        if value is None:
            return default
        if value in _TRUE or value in _FALSE:
            return value in _TRUE
        problem(
            key, f"{value!r} is not a boolean (true or false); the default {str(default).lower()} applies"
        )
        return default

    forwarded = flag(USE_FORWARDED_HEADERS, DEFAULT.use_forwarded_headers)
    full = flag(COMPUTE_FULL_FORWARDED_FOR, DEFAULT.compute_full_forwarded_for)
    cidrs = DEFAULT.proxy_real_ip_cidr
    if PROXY_REAL_IP_CIDR in cm.data:
        text = cm.data[PROXY_REAL_IP_CIDR]
        try:
            parts = [p.strip() for p in text.split(",") if p.strip()]
            cidrs = tuple(str(ipaddress.ip_network(p, strict=False)) for p in parts) or cidrs
        except ValueError as exc:
            problem(PROXY_REAL_IP_CIDR, f"{text!r}: {exc}; the default {','.join(cidrs)} applies")
    if full and not forwarded:
        problem(
            COMPUTE_FULL_FORWARDED_FOR, f"has no effect without {USE_FORWARDED_HEADERS}: true (nginx.tmpl)"
        )
    for key in sorted(cm.data.keys() - set(KEYS)):
        problem(
            key,
            f"ingress-nginx setting {key!r} is not implemented by acknet and has no effect here; "
            f"acknet implements {', '.join(KEYS)}",
        )
    return IngressNginxConfig(forwarded, full, cidrs), problems


def controller_config(objs: KubeObjects) -> IngressNginxConfig:
    """The cluster's controller settings, from kube-system/nginx-configuration if the files have it."""
    return read(objs.config_maps.get(defaults.INGRESS_CONFIGMAP))[0]
