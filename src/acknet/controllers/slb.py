"""The SLB controller and the cloud controller: every CLB instance, with its VIP, listeners and backends.

Two sources, one result (``PlannedLoadBalancer``):

- ``LoadBalancer`` objects of the files (DESIGN.md): the default server group, VServer groups and
  primary/secondary groups resolve to backends (an ECS instance's primary IP, or an ENI address);
- Services of type LoadBalancer, as ACK's cloud-controller-manager makes a CLB for each
  (reference/alibaba.md 5; CCM:pkg/controller/service/clbv1/{listeners.go,vgroups.go},
  CCM:pkg/controller/helper/node_utils.go): one listener per Service port on ``port.port`` with
  protocol ``lower(port.protocol)``, scheduler ``rr`` unless annotated, one VServer group per port named
  ``k8s/<nodePort>/<svc>/<ns>/<cluster>``; backends are every eligible node on the NodePort at weight
  100 (``externalTrafficPolicy: Cluster``) or only the nodes with ready endpoints, weighted by their
  number (``Local``, CCM's podNumberAlgorithm). An annotation the controller cannot use is reported as
  an event on that Service and leaves the others alone.

Addresses: intranet VIPs come from their VSwitch (``slb_address`` for the files' instances, the same
AddressBook here for the Services'); internet VIPs from the emulated Internet's 198.51.100.0/24, lowest
free first, a previous plan's kept. Every instance also gets a health-check source in 100.64.0.0/10,
the range CLB health checks come from (CLB health check FAQ, help.aliyun.com "CLB health checks").

Pure and deterministic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from acknet.controllers.state import (
    Instance,
    Plan,
    PlannedEndpointSlice,
    PlannedListener,
    PlannedLoadBalancer,
    PlannedService,
    PlannedServicePort,
    SlbBackend,
    SlbHealthCheck,
    SlbProtocol,
)
from acknet.controllers.vswitch import AddressBook
from acknet.errors import Conflict
from acknet.model.cloud import HealthCheck, Listener, LoadBalancer
from acknet.model.resources import Resources
from acknet.model.validate import INTERNET_VIP_RANGE, cookie_name_problem, tls_secret_problem

HEALTH_CHECK_RANGE = IPv4Network("100.64.0.0/10")
# CCM's annotation prefixes: the current one and the legacy one it still honours (CCM annotations.go).
ANNOTATION_PREFIXES = (
    "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-",
    "service.beta.kubernetes.io/alicloud-loadbalancer-",
)
# Nodes CCM never uses as backends (CCM:pkg/controller/helper/node_utils.go).
_MASTER_LABEL = "node-role.kubernetes.io/master"
_EXCLUDE_LABELS = (
    "node.kubernetes.io/exclude-from-external-load-balancers",
    "alpha.service-controller.kubernetes.io/exclude-balancer",
)
_SCHEDULERS = ("wrr", "wlc", "rr", "sch", "tch")
_PROTOCOLS = ("tcp", "udp", "http", "https")
_HTTP_CODES = ("http_2xx", "http_3xx", "http_4xx", "http_5xx")


def annotation(annotations: Mapping[str, str], name: str) -> str | None:
    """``…-loadbalancer-<name>``, under the current prefix or the legacy one."""
    for prefix in ANNOTATION_PREFIXES:
        value = annotations.get(prefix + name)
        if value is not None:
            return value
    return None


def health_check_of(listener_protocol: str, hc: HealthCheck | None) -> SlbHealthCheck:
    """A listener's check with SLB's defaults (TCP for tcp listeners, UDP for udp ones, 2 s / 5 s / 3 / 3)
    and the effective timeout: the interval when the configured timeout is shorter (API docs of
    HealthCheckConnectTimeout)."""
    if hc is None:
        kind: Literal["tcp", "http", "udp"] = "udp" if listener_protocol == "udp" else "tcp"
        if listener_protocol in ("http", "https"):
            kind = "http"
        return SlbHealthCheck(type=kind)
    return SlbHealthCheck(
        type=hc.type,
        interval=hc.interval,
        timeout=max(hc.connect_timeout, hc.interval),
        healthy_threshold=hc.healthy_threshold,
        unhealthy_threshold=hc.unhealthy_threshold,
        port=hc.connect_port,
        uri=hc.uri or "/",
        domain=hc.domain,
        http_codes=tuple(hc.http_code),
    )


@dataclass
class _Addresses:
    """Internet VIPs and health-check sources handed out so far."""

    public: dict[str, IPv4Address]
    health: dict[IPv4Address, str]

    def public_vip(self, name: str, wanted: IPv4Address | None, previous: IPv4Address | None) -> IPv4Address:
        taken = {a for n, a in self.public.items() if n != name}
        for candidate in (wanted, previous):
            if candidate is not None and candidate in INTERNET_VIP_RANGE and candidate not in taken:
                self.public[name] = candidate
                return candidate
        for host in INTERNET_VIP_RANGE.hosts():
            if host not in taken:
                self.public[name] = host
                return host
        raise Conflict(f"no free internet VIP left in {INTERNET_VIP_RANGE} for load balancer {name}")

    def health_source(self, name: str) -> IPv4Address:
        """A deterministic address of 100.64.0.0/10 per instance; the next one on a collision."""
        size = HEALTH_CHECK_RANGE.num_addresses - 2
        offset = int(hashlib.sha1(f"slb/{name}".encode(), usedforsecurity=False).hexdigest(), 16) % size
        while True:
            address = HEALTH_CHECK_RANGE.network_address + 1 + offset
            if address not in self.health:
                self.health[address] = name
                return address
            offset = (offset + 1) % size


def _ecs_backend(
    instances: Mapping[str, Instance], ecs: str, port: int, weight: int, role: str = ""
) -> SlbBackend | None:
    inst = instances.get(ecs)
    if inst is None:
        return None  # validation names the missing instance; nothing to send traffic to
    return SlbBackend(f"ecs/{ecs}", inst.primary_ip, port, weight, role)  # type: ignore[arg-type]


def _file_listener(lb: LoadBalancer, li: Listener, instances: Mapping[str, Instance]) -> PlannedListener:
    spec = lb.spec
    backends: list[SlbBackend | None] = []
    group = "default"
    if li.v_server_group is not None:
        group = li.v_server_group
        for g in spec.v_server_groups:
            if g.name == group:
                for s in g.servers:
                    if s.ecs is not None:
                        backends.append(_ecs_backend(instances, s.ecs, s.port, s.weight))
                    elif s.eni is not None:
                        backends.append(SlbBackend(f"eni/{s.eni}", s.eni, s.port, s.weight))
    elif li.master_slave_server_group is not None:
        group = li.master_slave_server_group
        for ms in spec.master_slave_server_groups:
            if ms.name == group:
                for s in sorted(ms.servers, key=lambda s: s.server_type):
                    if s.ecs is not None:
                        backends.append(_ecs_backend(instances, s.ecs, s.port, s.weight, s.server_type))
                    elif s.eni is not None:
                        backends.append(SlbBackend(f"eni/{s.eni}", s.eni, s.port, s.weight, s.server_type))
    else:
        port = li.backend_server_port or li.listener_port
        backends.extend(_ecs_backend(instances, b.ecs, port, b.weight) for b in spec.backend_servers)
    acl_entries = tuple(
        IPv4Network(e, strict=False) for e in (li.acl.entries if li.acl is not None else []) if _is_cidr(e)
    )
    return PlannedListener(
        protocol=li.protocol,
        port=li.listener_port,
        scheduler=li.scheduler,
        group=group,
        backends=tuple(b for b in backends if b is not None),
        health_check=health_check_of(li.protocol, li.health_check),
        persistence_timeout=li.persistence_timeout,
        acl_type=li.acl.type if li.acl is not None else None,
        acl_entries=acl_entries,
        connection_rate_limit=li.connection_rate_limit,
        certificate=li.certificate.secret if li.certificate is not None else None,
        sticky_session_type=li.sticky_session_type if li.sticky_session == "on" else None,
        cookie_timeout=(li.cookie_timeout or 0) if li.sticky_session == "on" else 0,
        cookie=li.cookie if li.sticky_session == "on" else None,
    )


def _is_cidr(text: str) -> bool:
    try:
        IPv4Network(text, strict=False)
    except ValueError:
        return False  # validation reports it
    return True


def _file_load_balancers(
    resources: Resources,
    instances: Mapping[str, Instance],
    vpc_of_vswitch: Mapping[str, str],
    intranet: Mapping[str, IPv4Address],
    previous: Mapping[str, PlannedLoadBalancer],
    addresses: _Addresses,
) -> list[PlannedLoadBalancer]:
    out = []
    for name, lb in sorted(resources.load_balancers.items()):
        spec = lb.spec
        listeners = tuple(_file_listener(lb, li, instances) for li in spec.listeners)
        if spec.address_type == "intranet":
            vpc = vpc_of_vswitch.get(spec.vswitch or "")
            address = intranet.get(name)
        else:
            # An internet CLB takes no VSwitch; it reaches the VPC its backends are in (as
            # topology.public_addresses routes it).
            vpcs = sorted(
                {
                    vpc_of_vswitch[inst.vswitch]
                    for li in listeners
                    for b in li.backends
                    if b.server.startswith("ecs/")
                    and (inst := instances.get(b.server[4:])) is not None
                    and inst.vswitch in vpc_of_vswitch
                }
            )
            vpc = vpcs[0] if vpcs else None
            before = previous.get(name)
            address = addresses.public_vip(name, spec.address, before.address if before else None)
        out.append(
            PlannedLoadBalancer(
                name=name,
                address_type=spec.address_type,
                address=address,
                vpc=vpc,
                vswitch=spec.vswitch,
                listeners=listeners,
                health_source=addresses.health_source(name),
            )
        )
    return out


def _eligible(node: Instance, selector: Mapping[str, str]) -> bool:
    labels = node.labels
    if _MASTER_LABEL in labels or any(label in labels for label in _EXCLUDE_LABELS):
        return False
    return all(labels.get(k) == v for k, v in selector.items())


def _parse_labels(text: str) -> dict[str, str] | None:
    out = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or not key:
            return None
        out[key] = value
    return out


def _backend_nodes(
    svc: PlannedService, instances: Iterable[Instance], selector: Mapping[str, str]
) -> list[Instance]:
    return sorted(
        (n for n in instances if n.cluster == svc.cluster and _eligible(n, selector)), key=lambda n: n.name
    )


def _int_annotation(
    annotations: Mapping[str, str], name: str, low: int, high: int, events: list[str]
) -> int | None:
    text = annotation(annotations, name)
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        events.append(f"annotation {name}={text!r} ignored: expected an integer in {low}-{high}")
        return None
    return value


def _service_health_check(protocol: str, annotations: Mapping[str, str], events: list[str]) -> SlbHealthCheck:
    """The health-check annotations (CCM passes them through only when set; SLB defaults otherwise).

    Layer 4 checks are on unless ``health-check-switch: "off"``; a layer-7 listener's check is off unless
    ``health-check-flag: "on"`` (CCM's default for HTTP and HTTPS, reference/alibaba.md 5), and is
    always an HTTP check."""
    base = health_check_of(protocol, None)
    layer7 = protocol in ("http", "https")
    if layer7:
        flag = annotation(annotations, "health-check-flag")
        if flag not in (None, "on", "off"):
            events.append(f"annotation health-check-flag={flag!r} ignored: on or off")
        enabled = flag == "on"
    else:
        enabled = annotation(annotations, "health-check-switch") != "off"
    kind = annotation(annotations, "health-check-type") or base.type
    if (
        kind not in ("tcp", "http", "udp")
        or (protocol == "tcp" and kind == "udp")
        or (layer7 and kind != "http")
    ):
        events.append(f"annotation health-check-type={kind!r} ignored for a {protocol} listener")
        kind = base.type
    interval = _int_annotation(annotations, "health-check-interval", 1, 50, events) or base.interval
    timeout = _int_annotation(annotations, "health-check-connect-timeout", 1, 300, events)
    if timeout is None:
        timeout = _int_annotation(annotations, "health-check-timeout", 1, 300, events) or base.timeout
    healthy = _int_annotation(annotations, "healthy-threshold", 2, 10, events) or base.healthy_threshold
    unhealthy = _int_annotation(annotations, "unhealthy-threshold", 2, 10, events) or base.unhealthy_threshold
    port = _int_annotation(annotations, "health-check-connect-port", 1, 65535, events)
    codes_text = annotation(annotations, "health-check-httpcode")
    codes = base.http_codes
    if codes_text is not None:
        parsed = tuple(c.strip() for c in codes_text.split(",") if c.strip())
        if parsed and all(c in _HTTP_CODES for c in parsed):
            codes = parsed
        else:
            events.append(f"annotation health-check-httpcode={codes_text!r} ignored")
    return SlbHealthCheck(
        type=kind,  # type: ignore[arg-type]
        interval=interval,
        timeout=max(timeout, interval),
        healthy_threshold=healthy,
        unhealthy_threshold=unhealthy,
        port=port,
        uri=annotation(annotations, "health-check-uri") or "/",
        domain=annotation(annotations, "health-check-domain"),
        http_codes=codes,
        enabled=enabled,
    )


BACKEND_TYPE = "service.beta.kubernetes.io/backend-type"


def _eni_backends(port: PlannedServicePort, slices: Sequence[PlannedEndpointSlice]) -> tuple[SlbBackend, ...]:
    """``backend-type: eni``: each ready pod on its targetPort, weight 100 (CCM vgroups.go, ENI mode)."""
    out = {}
    for sl in slices:
        number = next((p.port for p in sl.ports if p.name == port.name and p.protocol == port.protocol), None)
        if number is None:
            continue
        for ep in sl.endpoints:
            if ep.ready and not ep.terminating:
                out[(ep.ip, number)] = SlbBackend(f"eni/{ep.ip}", ep.ip, number, 100)
    return tuple(out[k] for k in sorted(out))


def _service_backends(
    svc: PlannedService,
    port: PlannedServicePort,
    nodes: Sequence[Instance],
    slices: Sequence[PlannedEndpointSlice],
    eni: bool = False,
) -> tuple[SlbBackend, ...]:
    if eni:
        return _eni_backends(port, slices)
    node_port = port.node_port or 0
    if svc.external_traffic_policy == "Local":
        # Only nodes with ready (not terminating) endpoints, weighted by how many (podNumberAlgorithm).
        counts: dict[str, int] = {}
        for sl in slices:
            for ep in sl.endpoints:
                if ep.ready and not ep.terminating and ep.node is not None:
                    counts[ep.node] = counts.get(ep.node, 0) + 1
        return tuple(
            SlbBackend(f"ecs/{n.name}", n.primary_ip, node_port, min(100, counts[n.name]))
            for n in nodes
            if counts.get(n.name)
        )
    return tuple(SlbBackend(f"ecs/{n.name}", n.primary_ip, node_port, 100) for n in nodes)


def _percent(backends: tuple[SlbBackend, ...], weight: int | None, local: bool) -> tuple[SlbBackend, ...]:
    """The ``weight`` annotation (0-100 for the whole Service) switches CCM to its percent algorithm:
    ``weight / backends`` each, or for Local ``weight x podsOnNode / pods``; at least 1."""
    if weight is None or not backends:
        return backends
    if local:
        pods = sum(b.weight for b in backends)
        return tuple(replace(b, weight=max(1, weight * b.weight // pods)) for b in backends)
    return tuple(replace(b, weight=max(1, weight // len(backends))) for b in backends)


def _service_load_balancer(
    svc: PlannedService,
    resources: Resources,
    instances: Sequence[Instance],
    slices: Sequence[PlannedEndpointSlice],
    vpc_of_vswitch: Mapping[str, str],
    book: AddressBook,
    previous: PlannedLoadBalancer | None,
    addresses: _Addresses,
) -> PlannedLoadBalancer:
    name = svc.key
    annotations = svc.annotations
    events: list[str] = []
    cluster = resources.clusters.get(svc.cluster)
    vpc = cluster.spec.vpc if cluster is not None else None
    address_type: Literal["internet", "intranet"] = "internet"
    kind = annotation(annotations, "address-type")
    if kind in ("internet", "intranet"):
        address_type = kind  # type: ignore[assignment]
    elif kind is not None:
        events.append(f"annotation address-type={kind!r} ignored: internet or intranet")
    scheduler = annotation(annotations, "scheduler") or "rr"  # CCM's default, not the API's wrr
    if scheduler not in _SCHEDULERS:
        events.append(f"annotation scheduler={scheduler!r} ignored: one of {', '.join(_SCHEDULERS)}")
        scheduler = "rr"
    persistence = _int_annotation(annotations, "persistence-timeout", 0, 3600, events) or 0

    selector: dict[str, str] = {}
    label_text = annotation(annotations, "backend-label")
    if label_text is not None:
        parsed = _parse_labels(label_text)
        if parsed is None:
            events.append(f"annotation backend-label={label_text!r} ignored: expected k=v[,k2=v2]")
        else:
            selector = parsed
    nodes = _backend_nodes(svc, instances, selector)
    own_slices = [
        s
        for s in slices
        if s.cluster == svc.cluster and s.namespace == svc.namespace and s.service == svc.name
    ]

    eni = _eni_mode(svc, resources, events)
    overrides = _protocol_ports(annotations, events)
    acl_type, acl_entries = _service_acl(annotations, events)
    sticky: tuple[Literal["insert", "server"] | None, int, str | None] | None = None
    listeners = []
    for port in svc.ports:
        if port.protocol not in ("TCP", "UDP") or (port.node_port is None and not eni):
            continue
        protocol: SlbProtocol = "udp" if port.protocol == "UDP" else "tcp"
        wanted = overrides.get(port.port)
        if wanted is not None and (wanted == "udp") != (protocol == "udp"):
            events.append(
                f"annotation protocol-port {wanted}:{port.port} ignored: Service port {port.port} is {port.protocol}"
            )
        elif wanted is not None:
            protocol = wanted
        layer7 = protocol in ("http", "https")
        certificate = None
        if protocol == "https":
            certificate = _service_certificate(svc, resources, events)
            if certificate is None:
                continue  # CCM cannot make an HTTPS listener without its certificate
        listener_scheduler = scheduler
        if layer7 and scheduler in ("sch", "tch"):
            events.append(
                f"annotation scheduler={scheduler!r} ignored for {protocol}:{port.port}: wrr, wlc or rr"
            )
            listener_scheduler = "rr"
        if layer7 and sticky is None:
            sticky = _service_sticky(annotations, events)
        sticky_type, cookie_timeout, cookie = sticky if layer7 and sticky is not None else (None, 0, None)
        backends = _percent(
            _service_backends(svc, port, nodes, own_slices, eni),
            _int_annotation(annotations, "weight", 0, 100, events),
            svc.external_traffic_policy == "Local" and not eni,
        )
        listeners.append(
            PlannedListener(
                protocol=protocol,
                port=port.port,
                scheduler=listener_scheduler,  # type: ignore[arg-type]
                group=f"k8s/{port.target_port if eni else port.node_port}/{svc.name}/{svc.namespace}/{svc.cluster}",
                backends=backends,
                health_check=_service_health_check(protocol, annotations, events),
                # Layer 7 keeps sessions by cookie (StickySession), not by PersistenceTimeout.
                persistence_timeout=0 if layer7 else persistence,
                acl_type=acl_type,
                acl_entries=acl_entries,
                certificate=certificate,
                sticky_session_type=sticky_type,
                cookie_timeout=cookie_timeout,
                cookie=cookie,
            )
        )
    if listeners and not any(li.backends for li in listeners):
        events.append("UnAvailableLoadBalancer: There are no available nodes for LoadBalancer")

    vswitch: str | None = None
    address: IPv4Address | None
    before = previous.address if previous is not None else None
    if address_type == "intranet":
        vswitch = annotation(annotations, "vswitch-id")
        if vswitch is not None and vpc_of_vswitch.get(vswitch) != vpc:
            events.append(f"annotation vswitch-id={vswitch!r} ignored: not a VSwitch of the cluster's VPC")
            vswitch = None
        if vswitch is None:
            # CCM takes a random vSwitch of the cluster; the first node VSwitch keeps plans deterministic.
            vswitch = next(
                (n.vswitch for n in sorted(instances, key=lambda n: n.name) if n.cluster == svc.cluster), None
            )
        address = None
        allocator = book.get(vswitch) if vswitch is not None else None
        if allocator is not None:
            owner = f"Service {svc.cluster}/{name} (SLB)"
            if (
                before is not None
                and previous is not None
                and previous.vswitch == vswitch
                and allocator.try_reserve(before, owner)
            ):
                address = before
            else:
                try:
                    address = allocator.allocate(owner)
                except Conflict as exc:
                    events.append(f"no intranet VIP: {exc}")
    else:
        address = addresses.public_vip(f"svc/{svc.cluster}/{name}", None, before)
    return PlannedLoadBalancer(
        name=name,
        address_type=address_type,
        address=address,
        vpc=vpc,
        vswitch=vswitch,
        listeners=tuple(listeners),
        health_source=addresses.health_source(f"svc/{svc.cluster}/{name}"),
        service=f"{svc.cluster}/{name}",
        events=tuple(dict.fromkeys(events)),  # one event per problem, however many ports it touches
    )


def _protocol_ports(annotations: Mapping[str, str], events: list[str]) -> dict[int, SlbProtocol]:
    """``protocol-port: "https:443,http:80"``: the listener protocol of those Service ports (CCM
    listeners.go); the other ports keep ``lower(port.protocol)``."""
    text = annotation(annotations, "protocol-port")
    out: dict[int, SlbProtocol] = {}
    if text is None:
        return out
    for part in text.split(","):
        protocol, _, number = part.strip().partition(":")
        if protocol not in _PROTOCOLS or not number.isdigit() or not 1 <= int(number) <= 65535:
            events.append(f"annotation protocol-port entry {part.strip()!r} ignored: expected PROTOCOL:PORT")
            continue
        out[int(number)] = protocol  # type: ignore[assignment]
    return out


def _service_certificate(svc: PlannedService, resources: Resources, events: list[str]) -> str | None:
    """``cert-id`` of an HTTPS listener, as ``namespace/name`` of a kubernetes.io/tls Secret.

    CCM's cert-id is the ID of a certificate in Alibaba Cloud's certificate service, which acknet has no
    kind for; here it names the Secret holding the certificate: ``NAME`` (in the Service's namespace)
    or ``NAMESPACE/NAME``."""
    text = annotation(svc.annotations, "cert-id")
    if text is None:
        events.append("an https listener needs annotation cert-id (a kubernetes.io/tls Secret)")
        return None
    namespace, sep, name = text.partition("/")
    if not sep:
        namespace, name = svc.namespace, text
    objs = resources.kube.get(svc.cluster)
    secret = objs.secrets.get((namespace, name)) if objs is not None else None
    if secret is None:
        events.append(f"annotation cert-id={text!r}: Secret {namespace}/{name} does not exist")
        return None
    problem = tls_secret_problem(secret.type, secret.data, secret.string_data)
    if problem is not None:
        events.append(
            f"annotation cert-id={text!r}: Secret {namespace}/{name} is not a certificate: {problem}"
        )
        return None
    return f"{namespace}/{name}"


def _service_sticky(
    annotations: Mapping[str, str], events: list[str]
) -> tuple[Literal["insert", "server"] | None, int, str | None]:
    """``sticky-session: "on"`` with ``sticky-session-type`` (insert | server), ``cookie-timeout``
    (insert, 1-86400 s) and ``cookie`` (server: the backend's cookie name), for the http and https
    listeners (CCM listeners.go; CCM leaves sticky sessions off unless annotated, reference/alibaba.md
    5). A combination the CLB API would refuse is an event, and the listener stays without them."""
    status = annotation(annotations, "sticky-session")
    if status is None or status == "off":
        return None, 0, None
    if status != "on":
        events.append(f"annotation sticky-session={status!r} ignored: on or off")
        return None, 0, None
    kind = annotation(annotations, "sticky-session-type")
    if kind == "insert":
        text = annotation(annotations, "cookie-timeout")
        timeout = _int_annotation(annotations, "cookie-timeout", 1, 86400, events)
        if timeout is None:
            if text is None:
                events.append("annotation sticky-session-type=insert needs cookie-timeout (1-86400 s)")
            return None, 0, None
        return "insert", timeout, None
    if kind == "server":
        cookie = annotation(annotations, "cookie")
        problem = "missing" if cookie is None else cookie_name_problem(cookie)
        if cookie is None or problem is not None:
            events.append(f"annotation sticky-session-type=server needs annotation cookie: {problem}")
            return None, 0, None
        return "server", 0, cookie
    events.append(f"annotation sticky-session-type={kind!r}: insert or server; no sticky sessions")
    return None, 0, None


def _service_acl(
    annotations: Mapping[str, str], events: list[str]
) -> tuple[Literal["white", "black"] | None, tuple[IPv4Network, ...]]:
    """``acl-status: "on"`` with ``acl-type`` (white | black) and ``acl-id``: the ACL of every listener.

    CCM's acl-id names an access control list object of CLB, which acknet has no kind for; here it
    holds the list's entries themselves, comma-separated (``"203.0.113.0/24,198.51.100.7"``)."""
    status = annotation(annotations, "acl-status")
    if status is None or status == "off":
        return None, ()
    if status != "on":
        events.append(f"annotation acl-status={status!r} ignored: on or off")
        return None, ()
    kind = annotation(annotations, "acl-type")
    ids = annotation(annotations, "acl-id")
    if kind not in ("white", "black"):
        events.append(f"annotation acl-type={kind!r}: white or black; no ACL on the listeners")
        return None, ()
    if ids is None:
        events.append(
            "annotation acl-status=on needs acl-id (the ACL's CIDR entries); no ACL on the listeners"
        )
        return None, ()
    entries = []
    for entry in (e.strip() for e in ids.split(",")):
        if entry and _is_cidr(entry):
            entries.append(IPv4Network(entry, strict=False))
        elif entry:
            events.append(f"annotation acl-id entry {entry!r} ignored: not an IPv4 address or CIDR block")
    return kind, tuple(entries)  # type: ignore[return-value]


def _eni_mode(svc: PlannedService, resources: Resources, events: list[str] | None = None) -> bool:
    """Pods as backends (``service.beta.kubernetes.io/backend-type: eni``): Terway clusters only."""
    kind = svc.annotations.get(BACKEND_TYPE)
    if kind is None or kind == "ecs":
        return False
    cluster = resources.clusters.get(svc.cluster)
    if kind != "eni" or cluster is None or cluster.spec.network_plugin != "terway":
        if events is not None:
            events.append(f"annotation backend-type={kind!r} ignored: eni works with Terway only")
        return False
    return True


def is_clb_service(svc: PlannedService, resources: Resources) -> bool:
    """A CLB is made for type LoadBalancer without a loadBalancerClass or a class annotation (CCM)."""
    if svc.type != "LoadBalancer" or "service.beta.kubernetes.io/class" in svc.annotations:
        return False
    objs = resources.kube.get(svc.cluster)
    source = objs.services.get((svc.namespace, svc.name)) if objs is not None else None
    return source is None or source.spec.load_balancer_class is None


def plan_load_balancers(
    resources: Resources,
    instances: Iterable[Instance],
    services: Iterable[PlannedService],
    slices: Sequence[PlannedEndpointSlice],
    book: AddressBook,
    intranet: Mapping[str, IPv4Address],
    previous: Sequence[PlannedLoadBalancer] = (),
) -> tuple[tuple[PlannedLoadBalancer, ...], dict[str, IPv4Address]]:
    """Every CLB instance, and the files' instances' VIPs by name (intranet and internet).

    ``intranet`` holds the VIPs ``slb_address`` gave the files' intranet instances; ``previous`` the
    last plan's instances, whose addresses are kept where still free.
    """
    inst = list(instances)
    by_name = {i.name: i for i in inst}
    vpc_of_vswitch = {v.name: v.spec.vpc for v in resources.vswitches.values()}
    prev = {lb.name if lb.service is None else f"svc/{lb.service}": lb for lb in previous}
    addresses = _Addresses(public={}, health={})
    # Fixed internet addresses of the files first, so that no allocation takes them.
    for name, lb in sorted(resources.load_balancers.items()):
        if lb.spec.address_type == "internet" and lb.spec.address is not None:
            addresses.public_vip(name, lb.spec.address, None)
    out = _file_load_balancers(resources, by_name, vpc_of_vswitch, intranet, prev, addresses)
    for svc in sorted(services, key=lambda s: (s.cluster, s.namespace, s.name)):
        if is_clb_service(svc, resources):
            out.append(
                _service_load_balancer(
                    svc,
                    resources,
                    inst,
                    slices,
                    vpc_of_vswitch,
                    book,
                    prev.get(f"svc/{svc.cluster}/{svc.key}"),
                    addresses,
                )
            )
    vips = {lb.name: lb.address for lb in out if lb.service is None and lb.address is not None}
    return tuple(out), dict(sorted(vips.items()))


def refresh_service_backends(plan: Plan) -> Plan:
    """``plan`` with the backends of ``externalTrafficPolicy: Local`` and ENI-mode Services' SLBs taken
    again from its EndpointSlices: readiness, observed after planning, decides which pods are ready."""
    services = {f"{s.cluster}/{s.key}": s for s in plan.services}
    out = []
    for lb in plan.load_balancers:
        svc = services.get(lb.service or "")
        if svc is None or (
            svc.external_traffic_policy != "Local" and svc.annotations.get(BACKEND_TYPE) != "eni"
        ):
            out.append(lb)
            continue
        label_text = annotation(svc.annotations, "backend-label")
        selector = (_parse_labels(label_text) if label_text is not None else None) or {}
        nodes = _backend_nodes(svc, plan.instances, selector)
        slices = [
            s
            for s in plan.endpoint_slices
            if s.cluster == svc.cluster and s.namespace == svc.namespace and s.service == svc.name
        ]
        listeners = []
        eni = _eni_mode(svc, plan.resources)
        for li in lb.listeners:
            family = "UDP" if li.protocol == "udp" else "TCP"  # http and https listen on TCP ports
            port = next((p for p in svc.ports if p.port == li.port and p.protocol == family), None)
            if port is None or (port.node_port is None and not eni):
                listeners.append(li)
                continue
            listeners.append(
                replace(
                    li,
                    backends=_percent(
                        _service_backends(svc, port, nodes, slices, eni),
                        _int_annotation(svc.annotations, "weight", 0, 100, []),
                        svc.external_traffic_policy == "Local" and not eni,
                    ),
                )
            )
        out.append(lb if tuple(listeners) == lb.listeners else replace(lb, listeners=tuple(listeners)))
    if tuple(out) == plan.load_balancers:
        return plan
    return replace(plan, load_balancers=tuple(out))
