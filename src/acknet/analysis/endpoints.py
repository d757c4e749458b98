"""The endpoints of ``acknet check`` and ``probe``: what ``--from``/``--to`` name, resolved over a Plan.

DESIGN.md ("The command line") names endpoints ``NS/POD``, ``ecs/NAME``, ``svc/NS/NAME``,
``slb/NAME`` or ``slb/NS/NAME`` and ``internet``, and lets ``--from``/``--to`` also take kinds
(``pods``, ``ecs``, ``svc``, ``slb``) and kubectl label selectors (``app=web,tier!=db``). This layer
resolves pods, ECS instances and, as destinations only, Services (``ServiceEndpoint``: the Service
with its ports and the EndpointSlice endpoints behind each, each tied to the pod or instance at its
address), SLBs as destinations (``SlbEndpoint``: a CLB instance with its listeners and the pod or
instance behind each backend server; ``analysis/slb.py`` judges them), Ingresses as destinations
(``IngressEndpoint``, ``ingress/NS/NAME``: the requests that exercise its rules, sent to the Ingress
controller's SLB ``nginx-ingress-lb``; ``analysis/ingress_reach.py`` judges them), and ``internet`` as
a source (a client at 203.0.113.1 of the emulated Internet, DESIGN.md).

An ``Endpoint`` carries what reachability needs to follow a packet without looking anything up again:
its address, the ENI its traffic crosses the VPC through (with that ENI's security groups), the ECS
instance it lives on, and its datapath, because the datapath decides which security groups a packet
meets (reference/alibaba.md 1.4, 1.7 and 2):

- ``terway-shared``: the pod's address is a secondary IP of one of the node's ENIs; off-node traffic
  leaves and enters through that ENI, same-node traffic is routed inside the node;
- ``terway-exclusive``: the ENI is moved into the pod and is its eth0, for all traffic but the node's;
- ``flannel``: the pod sits on the node's ``cni0`` bridge with an address from the node's PodCIDR;
  off-node traffic crosses the VPC through the node's primary ENI (a VPC route entry brings it back);
- ``host-network``: a hostNetwork pod shares its node's namespace, address and primary ENI;
- ``ecs``: an ECS instance, standalone or a cluster node, on its primary ENI (eth0).

Pure: reads the Plan, never the kernel.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Literal

from acknet.analysis.ingress import IngressRequest, sample_requests
from acknet.controllers.ingress import INGRESS_LB, IngressRoutes, controller_pods, ingress_routes
from acknet.controllers.state import (
    EndpointAddress,
    Eni,
    Instance,
    Plan,
    PlannedEndpointSlice,
    PlannedListener,
    PlannedLoadBalancer,
    PlannedPod,
    PlannedService,
    PlannedServicePort,
    Protocol,
    SlbBackend,
)
from acknet.errors import AcknetError, NotFound
from acknet.model.selectors import K8sSelector, SelectorError, parse_label_selector_string

EndpointKind = Literal["pod", "ecs", "internet"]
Datapath = Literal["terway-shared", "terway-exclusive", "flannel", "host-network", "ecs", "internet"]
Role = Literal["from", "to"]

# The kinds --from/--to accept (DESIGN.md); the ones without a layer yet are refused by name.
POD_KIND = "pods"
ECS_KIND = "ecs"
SVC_KIND = "svc"
SVC_PREFIX = "svc/"
SLB_KIND = "slb"
SLB_PREFIX = "slb/"
INGRESS_KIND = "ingress"
INGRESS_PREFIX = "ingress/"
INTERNET = "internet"
# The client the ``internet`` endpoint stands for: the emulated Internet's own address (DESIGN.md, "The
# emulated Internet": clients use 203.0.113.0/24; the probes send from .1). Not imported from the
# data plane, which analysis never does.
INTERNET_CLIENT = IPv4Address("203.0.113.1")

# kubectl selector syntax needs one of these; a word without them is a name, a kind or a label key.
_SELECTOR_SYNTAX = re.compile(r"[=!()\s]")


class UnsupportedEndpoint(AcknetError):
    """An endpoint DESIGN.md names but not in this role: a Service or an SLB as a source, the Internet
    as a destination, an ExternalName Service (it has no address).

    Local to this module because ``errors.py`` belongs to another change; it is an ``AcknetError``, so
    the command line reports it like any other.
    """


@dataclass(frozen=True, slots=True)
class EniRef:
    """The ENI an endpoint's traffic crosses the VPC through, named the way a trace shows it.

    ``owner`` is the endpoint whose namespace holds the interface: the instance (``ecs/NAME``) for
    primary and shared secondary ENIs, the pod for an exclusive ENI, which Terway moves into the pod
    as its eth0 (T:plugin/datapath/exclusive_eni_linux.go).
    """

    id: str
    instance: str
    owner: str
    ifname: str
    vswitch: str
    vpc: str
    security_groups: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.owner} {self.ifname}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One thing that sends and answers packets: a running pod or an ECS instance (node or standalone).

    ``ports`` are what listens: container ports for pods, ``spec.ports`` for standalone ECS instances,
    and for a node the container ports of its hostNetwork pods (they share its address). For an
    endpoint that ``runs_command`` they are what it declares, not all it may serve.
    """

    name: str  # "NS/POD" or "ecs/NAME", as DESIGN.md spells endpoints
    kind: EndpointKind
    ip: IPv4Address
    eni: EniRef
    instance: str  # the ECS instance: the pod's node, or the instance itself
    datapath: Datapath
    vpc: str
    ports: tuple[tuple[int, Protocol], ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    cluster: str | None = None
    namespace: str | None = None  # pods only
    # Runs a user command (a container's or the instance's ``command``): what it listens on beyond the
    # declared ports cannot be known from the files, unlike acknet's built-in server.
    runs_command: bool = False

    @property
    def on_host_stack(self) -> bool:
        """Whether it lives in the instance's own namespace (the instance itself, a hostNetwork pod)."""
        return self.datapath in ("ecs", "host-network")

    def listens(self, port: int, protocol: str) -> bool:
        return (port, protocol.upper()) in self.ports


def ecs_name(instance: str) -> str:
    return f"ecs/{instance}"


def svc_name(service: PlannedService) -> str:
    return f"{SVC_PREFIX}{service.namespace}/{service.name}"


@dataclass(frozen=True, slots=True)
class Backend:
    """One endpoint of one Service port as kube-proxy sees it: an address and the resolved targetPort.

    ``endpoint`` is the pod (or instance) at that address, None when nothing in the plan holds it (a
    hand-written EndpointSlice may name any address). The conditions are the EndpointSlice's.
    """

    ip: IPv4Address
    port: int
    endpoint: Endpoint | None
    node: str | None
    ready: bool = True
    serving: bool = True
    terminating: bool = False

    @property
    def name(self) -> str:
        return self.endpoint.name if self.endpoint is not None else str(self.ip)

    @property
    def usable_ready(self) -> bool:
        return self.ready and self.serving and not self.terminating

    def __str__(self) -> str:
        return f"{self.name} ({self.ip}:{self.port})"


@dataclass(frozen=True, slots=True)
class ServicePortTarget:
    """A Service port and every endpoint its EndpointSlices list for it (ready or not)."""

    port: PlannedServicePort
    backends: tuple[Backend, ...]

    def usable(self) -> tuple[Backend, ...]:
        """The endpoints that take new connections, as kube-proxy's CategorizeEndpoints picks them.

        Ready ones (ready, serving, not terminating); only when there is none, the serving
        terminating ones (KEP-1669), so a rolling update does not cut the Service off.
        """
        ready = tuple(b for b in self.backends if b.usable_ready)
        if ready:
            return ready
        return tuple(b for b in self.backends if b.serving and b.terminating)


@dataclass(frozen=True, slots=True)
class ServiceEndpoint:
    """A Service as a destination (``svc/NS/NAME``): reached through kube-proxy, judged per backend.

    ``nodes`` are the cluster's nodes (their primary ENIs carry its NodePorts), in name order.
    """

    name: str
    service: PlannedService
    ports: tuple[ServicePortTarget, ...]
    nodes: tuple[Endpoint, ...]
    vpc: str
    kind: Literal["service"] = "service"

    @property
    def cluster(self) -> str:
        return self.service.cluster

    @property
    def declared_ports(self) -> tuple[tuple[int, Protocol], ...]:
        """The Service's ports, what ``check``/``probe`` use without ``--port`` (DESIGN.md)."""
        return tuple(dict.fromkeys((p.port.port, p.port.protocol) for p in self.ports))

    def port(self, port: int, protocol: str) -> ServicePortTarget | None:
        """The Service port ``port/protocol`` (matched against ``port``, not targetPort or nodePort)."""
        proto = protocol.upper()
        return next((p for p in self.ports if p.port.port == port and p.port.protocol == proto), None)


@dataclass(frozen=True, slots=True)
class SlbServer:
    """One backend server of a listener: the pod or instance at its address (None: nothing in the plan
    holds it), and the Service whose NodePort it is when it is a node on a NodePort of its cluster
    (kube-proxy then takes the connection over)."""

    backend: SlbBackend
    endpoint: Endpoint | None
    node_port_of: ServiceEndpoint | None = None

    def __str__(self) -> str:
        return f"{self.backend.server} ({self.backend.ip}:{self.backend.port})"


@dataclass(frozen=True, slots=True)
class SlbListener:
    listener: PlannedListener
    servers: tuple[SlbServer, ...]

    @property
    def protocol(self) -> Protocol:
        """The transport the listener takes: TCP for tcp, http and https, UDP for udp."""
        return "UDP" if self.listener.protocol == "udp" else "TCP"


@dataclass(frozen=True, slots=True)
class SlbEndpoint:
    """A CLB instance as a destination: ``slb/NAME`` (a LoadBalancer of the files) or ``slb/NS/NAME``
    (the one the cloud controller made for a LoadBalancer Service). ``live`` is None when it exists in
    the network, else why not (no VIP, no VPC with its backends, its VSwitch missing)."""

    name: str
    lb: PlannedLoadBalancer
    listeners: tuple[SlbListener, ...]
    live: str | None = None
    kind: Literal["slb"] = "slb"

    @property
    def declared_ports(self) -> tuple[tuple[int, Protocol], ...]:
        """The listener ports, what ``check``/``probe`` use without ``--port`` (DESIGN.md)."""
        return tuple(dict.fromkeys((li.listener.port, li.protocol) for li in self.listeners))

    def listener(self, port: int, protocol: str) -> SlbListener | None:
        proto = protocol.upper()
        return next((li for li in self.listeners if li.listener.port == port and li.protocol == proto), None)


def slb_name(lb: PlannedLoadBalancer) -> str:
    return f"{SLB_PREFIX}{lb.name}"


def internet_endpoint() -> Endpoint:
    """The ``internet`` source: a client of the emulated Internet, outside every VPC."""
    return Endpoint(
        name=INTERNET,
        kind="internet",
        ip=INTERNET_CLIENT,
        eni=EniRef("", "", INTERNET, "", "", "", ()),
        instance="",
        datapath="internet",
        vpc="",
    )


@dataclass(frozen=True, slots=True)
class IngressEndpoint:
    """An Ingress as a destination (``ingress/NS/NAME``): HTTP requests sent to the NGINX Ingress
    controller through its SLB (``slb``: the cluster's ``kube-system/nginx-ingress-lb``), routed by the
    controller pods (``controllers``) over ``routes`` to the backend pods (``by_ip`` finds the endpoint
    at an upstream's address).

    ``requests`` are what exercise the Ingress (``analysis.ingress.sample_requests``): https ones on
    443, http ones on 80, the declared ports. ``url`` is set for a single request that ``trace`` was
    given as a URL, sent to that URL's port whatever its scheme. ``problem`` is why the controller does
    not serve the Ingress (it is left out of nginx.conf), None when it does.
    """

    name: str
    ingress: str  # "NS/NAME"; empty for a URL
    cluster: str
    routes: IngressRoutes = field(repr=False)
    requests: tuple[IngressRequest, ...]
    slb: SlbEndpoint | None
    controllers: tuple[Endpoint, ...]
    by_ip: Mapping[IPv4Address, Endpoint] = field(repr=False, default_factory=dict)
    problem: str | None = None
    url: str | None = None
    url_port: int | None = None
    tls: bool = False  # the Ingress names TLS hosts (443 is declared even when it is not served)
    kind: Literal["ingress"] = "ingress"

    @property
    def declared_ports(self) -> tuple[tuple[int, Protocol], ...]:
        """443/TCP when a request is https, 80/TCP when one is http (DESIGN.md: the declared ports)."""
        if self.url_port is not None:
            return ((self.url_port, "TCP"),)
        schemes = {r.scheme for r in self.requests}
        if not self.requests:  # not served, or regex paths only: what the Ingress would be sent on
            schemes = {"https"} if self.tls else {"http"}
        out: list[tuple[int, Protocol]] = []
        if "http" in schemes:
            out.append((80, "TCP"))
        if "https" in schemes:
            out.append((443, "TCP"))
        return tuple(out)

    def requests_for(self, port: int) -> tuple[IngressRequest, ...]:
        """The requests sent to ``port``: the URL's own, or https on 443 and http on 80."""
        if self.url is not None:
            return self.requests if port == self.url_port else ()
        scheme = {80: "http", 443: "https"}.get(port)
        return tuple(r for r in self.requests if r.scheme == scheme)


def ingress_name(ref: str) -> str:
    return f"{INGRESS_PREFIX}{ref}"


Destination = Endpoint | ServiceEndpoint | SlbEndpoint | IngressEndpoint


@dataclass(slots=True)
class EndpointIndex:
    """Every endpoint of a Plan, by name, built once; ``resolve`` reads it."""

    pods: dict[str, Endpoint]
    instances: dict[str, Endpoint]  # "ecs/NAME" -> endpoint, nodes included
    pending: dict[str, str]  # "NS/POD" -> why it is not an endpoint
    standalone: tuple[str, ...]  # names of ECS instances that are not nodes
    services: dict[str, ServiceEndpoint] = field(default_factory=dict)  # "svc/NS/NAME" -> Service
    external_names: dict[str, str] = field(default_factory=dict)  # "svc/NS/NAME" -> its CNAME
    slbs: dict[str, SlbEndpoint] = field(default_factory=dict)  # "slb/NAME", "slb/NS/NAME" -> CLB
    ingresses: dict[str, IngressEndpoint] = field(default_factory=dict)  # "ingress/NS/NAME" -> Ingress
    # Per cluster with Ingresses: its routes, its controller's SLB and pods, for URLs of ``trace``.
    ingress_fronts: dict[str, IngressEndpoint] = field(default_factory=dict)

    @classmethod
    def of(cls, plan: Plan) -> EndpointIndex:
        vpc_of = {v.name: v.vpc for v in plan.vswitches}
        instances = {i.name: i for i in plan.instances}
        enis = {e.id: (i, e) for i in plan.instances for e in i.enis}
        flannel = {name for name, c in plan.resources.clusters.items() if c.spec.network_plugin == "flannel"}
        pods: dict[str, Endpoint] = {}
        pending: dict[str, str] = {}
        host_ports: dict[str, list[tuple[int, Protocol]]] = {}
        for pod in sorted(plan.pods, key=lambda p: p.key):
            endpoint, why = _pod_endpoint(pod, instances, enis, vpc_of, flannel)
            if endpoint is None:
                pending[pod.key] = why
                continue
            pods[pod.key] = endpoint
            if endpoint.datapath == "host-network":
                host_ports.setdefault(endpoint.instance, []).extend(endpoint.ports)
        ecs: dict[str, Endpoint] = {}
        for inst in sorted(plan.instances, key=lambda i: i.name):
            ports = [*inst.ports, *host_ports.get(inst.name, ())]
            ecs[ecs_name(inst.name)] = Endpoint(
                name=ecs_name(inst.name),
                kind="ecs",
                ip=inst.primary_ip,
                eni=_eni_ref(inst, _primary(inst), vpc_of),
                instance=inst.name,
                datapath="ecs",
                vpc=vpc_of.get(inst.vswitch, ""),
                ports=tuple(dict.fromkeys(ports)),
                labels=inst.labels,
                cluster=inst.cluster,
                runs_command=inst.command is not None,
            )
        standalone = tuple(
            ecs_name(i.name) for i in sorted(plan.instances, key=lambda i: i.name) if not i.is_node
        )
        services, external_names = _services(plan, pods, ecs)
        slbs = _slbs(plan, pods, ecs, services)
        fronts, ingresses = _ingresses(plan, pods, ecs, slbs)
        return cls(pods, ecs, pending, standalone, services, external_names, slbs, ingresses, fronts)

    def everything(self) -> list[Endpoint]:
        """Every pod and every standalone ECS instance: what an absent ``--from``/``--to`` means.

        Nodes are left out: they are infrastructure, asked for by name, kind or label.
        """
        return [*self.pods.values(), *(self.instances[n] for n in self.standalone)]


def _services(
    plan: Plan, pods: Mapping[str, Endpoint], instances: Mapping[str, Endpoint]
) -> tuple[dict[str, ServiceEndpoint], dict[str, str]]:
    """Every Service of the plan as a destination; ExternalName Services apart (a CNAME, no backend)."""
    slices: dict[tuple[str, str, str], list[PlannedEndpointSlice]] = {}
    for sl in plan.endpoint_slices:
        slices.setdefault((sl.cluster, sl.namespace, sl.service), []).append(sl)
    # An address in a slice is a pod's (a pod key when the controller wrote it) or, in a hand-written
    # slice, any address: the pod, hostNetwork pod or instance holding it, if any.
    by_ip: dict[IPv4Address, Endpoint] = {}
    for endpoint in (*instances.values(), *pods.values()):
        if endpoint.datapath != "host-network":
            by_ip[endpoint.ip] = endpoint
    nodes_of: dict[str, list[Endpoint]] = {}
    for endpoint in instances.values():
        if endpoint.cluster is not None:
            nodes_of.setdefault(endpoint.cluster, []).append(endpoint)
    services: dict[str, ServiceEndpoint] = {}
    external: dict[str, str] = {}
    for svc in plan.services:
        name = svc_name(svc)
        if name in services or name in external:
            continue  # the same namespace/name in a second cluster: the first one keeps the name
        if svc.type == "ExternalName":
            external[name] = svc.external_name or ""
            continue
        own = slices.get((svc.cluster, svc.namespace, svc.name), [])
        nodes = tuple(sorted(nodes_of.get(svc.cluster, []), key=lambda e: e.name))
        services[name] = ServiceEndpoint(
            name=name,
            service=svc,
            ports=tuple(_service_port(p, own, pods, by_ip) for p in svc.ports),
            nodes=nodes,
            vpc=nodes[0].vpc if nodes else "",
        )
    return services, external


def _slbs(
    plan: Plan,
    pods: Mapping[str, Endpoint],
    instances: Mapping[str, Endpoint],
    services: Mapping[str, ServiceEndpoint],
) -> dict[str, SlbEndpoint]:
    """Every CLB instance of the plan, each backend server tied to what holds its address."""
    by_ip: dict[IPv4Address, Endpoint] = {}
    for endpoint in (*instances.values(), *pods.values()):
        if endpoint.datapath != "host-network":
            by_ip.setdefault(endpoint.ip, endpoint)
    # (cluster, nodePort, protocol) -> the Service: kube-proxy on every node of the cluster answers it.
    node_ports: dict[tuple[str, int, str], ServiceEndpoint] = {}
    for svc in services.values():
        if svc.service.type in ("NodePort", "LoadBalancer"):
            for p in svc.ports:
                if p.port.node_port is not None:
                    node_ports.setdefault((svc.cluster, p.port.node_port, p.port.protocol), svc)
    vswitches = {v.name for v in plan.vswitches}
    out: dict[str, SlbEndpoint] = {}
    for lb in plan.load_balancers:
        listeners = []
        for li in lb.listeners:
            proto = "UDP" if li.protocol == "udp" else "TCP"
            servers = []
            for b in li.backends:
                held = by_ip.get(b.ip)
                fronted = None
                if held is not None and held.kind == "ecs" and held.cluster is not None:
                    fronted = node_ports.get((held.cluster, b.port, proto))
                servers.append(SlbServer(b, held, fronted))
            listeners.append(SlbListener(li, tuple(servers)))
        # As the data plane builds them: an address, a VPC to sit in, and an intranet VIP's VSwitch.
        live = None
        if lb.address is None:
            live = "has no VIP"
        elif lb.vpc is None:
            live = "has no backend server in any VPC, so it sits in none"
        elif lb.address_type == "intranet" and (lb.vswitch is None or lb.vswitch not in vswitches):
            live = f"has no VSwitch {lb.vswitch!r} to hold its intranet VIP"
        out.setdefault(slb_name(lb), SlbEndpoint(slb_name(lb), lb, tuple(listeners), live))
    return out


def _ingresses(
    plan: Plan,
    pods: Mapping[str, Endpoint],
    instances: Mapping[str, Endpoint],
    slbs: Mapping[str, SlbEndpoint],
) -> tuple[dict[str, IngressEndpoint], dict[str, IngressEndpoint]]:
    """Per cluster with Ingresses, its controller's front (routes, SLB, pods); every Ingress of class
    nginx as a destination."""
    by_ip: dict[IPv4Address, Endpoint] = {}
    for endpoint in (*instances.values(), *pods.values()):
        if endpoint.datapath != "host-network":
            by_ip.setdefault(endpoint.ip, endpoint)
    fronts: dict[str, IngressEndpoint] = {}
    out: dict[str, IngressEndpoint] = {}
    for cluster in sorted(plan.resources.clusters):
        objs = plan.resources.kube.get(cluster)
        if objs is None or not objs.ingresses:
            continue
        routes = ingress_routes(plan, cluster)
        lb = next((b for b in plan.load_balancers if b.service == f"{cluster}/{INGRESS_LB}"), None)
        slb = slbs.get(slb_name(lb)) if lb is not None else None
        if slb is not None and slb.lb is not lb:
            slb = None  # the name belongs to the same Service of another cluster
        controllers = tuple(pods[p.key] for p in controller_pods(plan, cluster) if p.key in pods)
        front = IngressEndpoint(
            f"ingress controller of {cluster}", "", cluster, routes, (), slb, controllers, by_ip
        )
        fronts[cluster] = front
        problems = {p.ingress: p.message for p in routes.problems}
        for (namespace, name), ing in objs.ingresses.items():
            ref = f"{namespace}/{name}"
            if ref not in routes.served and ref not in problems:
                continue  # of another class: not the NGINX controller's
            key = ingress_name(ref)
            if key in out:
                continue  # the same namespace/name in a second cluster: the first one keeps the name
            out[key] = IngressEndpoint(
                key,
                ref,
                cluster,
                routes,
                tuple(sample_requests(routes, namespace, name)),
                slb,
                controllers,
                by_ip,
                problem=problems.get(ref),
                tls=bool(ing.spec.tls),
            )
    return fronts, out


def _service_port(
    port: PlannedServicePort,
    slices: Sequence[PlannedEndpointSlice],
    pods: Mapping[str, Endpoint],
    by_ip: Mapping[IPv4Address, Endpoint],
) -> ServicePortTarget:
    backends: dict[tuple[IPv4Address, int], Backend] = {}
    for sl in slices:
        for sp in sl.ports:
            # Slices name their ports after the Service's (a named targetPort arrives resolved per pod).
            if sp.name != port.name or sp.protocol != port.protocol:
                continue
            for address in sl.endpoints:
                backends.setdefault((address.ip, sp.port), _backend(address, sp.port, pods, by_ip))
    return ServicePortTarget(
        port, tuple(backends[k] for k in sorted(backends, key=lambda k: (int(k[0]), k[1])))
    )


def _backend(
    address: EndpointAddress, port: int, pods: Mapping[str, Endpoint], by_ip: Mapping[IPv4Address, Endpoint]
) -> Backend:
    endpoint = pods.get(address.pod) if address.pod is not None else None
    if endpoint is None:
        endpoint = by_ip.get(address.ip)
    return Backend(
        ip=address.ip,
        port=port,
        endpoint=endpoint,
        node=address.node if address.node is not None else (endpoint.instance if endpoint else None),
        ready=address.ready,
        serving=address.serving,
        terminating=address.terminating,
    )


def _primary(inst: Instance) -> Eni:
    return next((e for e in inst.enis if e.index == 0), inst.enis[0])


def _eni_ref(inst: Instance, eni: Eni, vpc_of: Mapping[str, str], owner: str | None = None) -> EniRef:
    # Inside an instance ENIs are eth0, eth1... in attachment order; an exclusive ENI is the pod's eth0.
    return EniRef(
        id=eni.id,
        instance=inst.name,
        owner=owner or ecs_name(inst.name),
        ifname="eth0" if owner is not None else f"eth{eni.index}",
        vswitch=eni.vswitch,
        vpc=vpc_of.get(eni.vswitch, ""),
        security_groups=eni.security_groups,
    )


def _pod_endpoint(
    pod: PlannedPod,
    instances: Mapping[str, Instance],
    enis: Mapping[str, tuple[Instance, Eni]],
    vpc_of: Mapping[str, str],
    flannel: set[str],
) -> tuple[Endpoint | None, str]:
    """The pod as an endpoint, or None and why not (a Pending pod has no network to reach)."""
    if pod.phase != "Running" or pod.ip is None or pod.node is None:
        return None, f"is {pod.phase}" + (f" ({pod.reason})" if pod.reason else "") + ", it has no address"
    node = instances.get(pod.node)
    if node is None:
        return None, f"runs on {pod.node}, which is not in the plan"
    datapath: Datapath
    if pod.host_network:
        datapath, eni = "host-network", _eni_ref(node, _primary(node), vpc_of)
    elif pod.cluster in flannel or (pod.eni is None and node.pod_cidr is not None):
        # Flannel (VPC backend): cni0 on the node, the node's eth0 towards the VPC (reference/alibaba.md 2).
        datapath, eni = "flannel", _eni_ref(node, _primary(node), vpc_of)
    else:
        held = enis.get(pod.eni or "")
        if held is None:
            # Terway runs a pod only once an ENI holds its address; without one it has no network.
            return None, "has no ENI holding its address"
        inst, owned = held
        if owned.exclusive_pod == pod.key:
            datapath, eni = "terway-exclusive", _eni_ref(inst, owned, vpc_of, owner=pod.key)
        else:
            datapath, eni = "terway-shared", _eni_ref(inst, owned, vpc_of)
    return (
        Endpoint(
            name=pod.key,
            kind="pod",
            ip=pod.ip,
            eni=eni,
            instance=node.name,
            datapath=datapath,
            vpc=eni.vpc,
            ports=tuple(dict.fromkeys((p.port, p.protocol) for p in pod.ports)),
            labels=pod.labels,
            cluster=pod.cluster,
            namespace=pod.namespace,
            runs_command=any(pod.commands),
        ),
        "",
    )


def resolve(
    plan: Plan | EndpointIndex, selectors: str | Sequence[str] | None, role: Role = "to"
) -> list[Endpoint]:
    """The endpoints ``--from``/``--to`` name, in a stable order and without repeats.

    Each item is an exact name (``shop/web-x``, ``ecs/db-1``), a kind (``pods``, ``ecs``: nodes are
    ECS instances too), or a kubectl label selector matched against pod and ECS/node labels. A text
    with commas but no selector operators is a list of names and kinds when every part is one.
    ``None`` (or an empty list) means every pod and every standalone ECS instance. Raises
    ``NotFound`` naming the item that matched nothing, ``UnsupportedEndpoint`` for Services and SLBs
    (they are destinations: ``resolve_destinations``). ``internet`` is a source (``role="from"``).
    """
    found = _resolve(plan, selectors, role, services=False)
    return [e for e in found if isinstance(e, Endpoint)]


def resolve_destinations(
    plan: Plan | EndpointIndex, selectors: str | Sequence[str] | None
) -> list[Destination]:
    """What ``--to`` names: as ``resolve``, plus Services (``svc/NS/NAME`` and the kind ``svc``), SLBs
    (``slb/NAME``, ``slb/NS/NAME`` and the kind ``slb``) and Ingresses (``ingress/NS/NAME`` and the
    kind ``ingress``).

    Without selectors it is what ``resolve`` gives: pods and standalone instances, no Services or SLBs
    and no Ingresses (ask for them with ``--to svc``, ``--to slb``, ``--to ingress``).
    """
    return _resolve(plan, selectors, "to", services=True)


def _resolve(
    plan: Plan | EndpointIndex, selectors: str | Sequence[str] | None, role: Role, services: bool
) -> list[Destination]:
    index = plan if isinstance(plan, EndpointIndex) else EndpointIndex.of(plan)
    items = [selectors] if isinstance(selectors, str) else list(selectors or [])
    if not items:
        return list(index.everything())
    found: dict[str, Destination] = {}
    for item in _split(items):
        for endpoint in _resolve_one(index, item, role, services):
            found.setdefault(endpoint.name, endpoint)
    return list(found.values())


def _split(items: Iterable[str]) -> list[str]:
    out: list[str] = []
    for raw in items:
        text = raw.strip()
        parts = [p.strip() for p in text.split(",")]
        if "," in text and not _SELECTOR_SYNTAX.search(text) and all(_is_name_or_kind(p) for p in parts):
            out.extend(parts)
        else:
            out.append(text)
    return out


def _is_name_or_kind(text: str) -> bool:
    return "/" in text or text in (POD_KIND, ECS_KIND, SVC_KIND, SLB_KIND, INGRESS_KIND, INTERNET)


def _resolve_one(index: EndpointIndex, item: str, role: Role, services: bool) -> list[Destination]:
    flag = f"--{role}"
    if not item:
        raise NotFound(f"{flag}: an empty endpoint name")
    if item == SVC_KIND or item.startswith(SVC_PREFIX):
        if not services:
            raise UnsupportedEndpoint(
                f"{flag} {item}: a Service is a destination only (--to); connections start at pods and instances"
            )
        return _services_named(index, item, flag)
    if item == SLB_KIND or item.startswith(SLB_PREFIX):
        if not services:
            raise UnsupportedEndpoint(
                f"{flag} {item}: an SLB is a destination only (--to); connections start at pods, "
                "instances and the internet"
            )
        return _slbs_named(index, item, flag)
    if item == INGRESS_KIND or item.startswith(INGRESS_PREFIX):
        if not services:
            raise UnsupportedEndpoint(
                f"{flag} {item}: an Ingress is a destination only (--to); requests start at pods, "
                "instances and the internet"
            )
        return _ingresses_named(index, item, flag)
    if item == INTERNET:
        if role != "from":
            raise UnsupportedEndpoint(
                f"{flag} internet: the Internet is a source only (--from internet): nothing of the "
                "emulation listens there"
            )
        return [internet_endpoint()]
    if item == POD_KIND:
        if not index.pods:
            raise NotFound(f"{flag} pods: there is no running pod with an address")
        return list[Destination](index.pods.values())
    if item == ECS_KIND:
        if not index.instances:
            raise NotFound(f"{flag} ecs: there is no ECS instance")
        return list[Destination](index.instances.values())
    if not _SELECTOR_SYNTAX.search(item) and "/" in item:
        return [_by_name(index, item, flag)]
    return list[Destination](_by_labels(index, item, flag))


def _services_named(index: EndpointIndex, item: str, flag: str) -> list[Destination]:
    if item == SVC_KIND:
        if not index.services:
            raise NotFound(f"{flag} svc: there is no Service (ExternalName ones have no backend to reach)")
        return list(index.services.values())
    found = index.services.get(item)
    if found is not None:
        return [found]
    if item in index.external_names:
        raise UnsupportedEndpoint(
            f"{flag} {item}: an ExternalName Service is only a DNS CNAME to "
            f"{index.external_names[item]!r}; it has no address or backend in the cluster"
        )
    raise NotFound(f"{flag} {item}: no Service named {item[len(SVC_PREFIX) :]!r} (names are svc/NS/NAME)")


def _slbs_named(index: EndpointIndex, item: str, flag: str) -> list[Destination]:
    if item == SLB_KIND:
        if not index.slbs:
            raise NotFound(f"{flag} slb: there is no SLB (LoadBalancer or Service of type LoadBalancer)")
        return list(index.slbs.values())
    found = index.slbs.get(item)
    if found is None:
        raise NotFound(
            f"{flag} {item}: no SLB named {item[len(SLB_PREFIX) :]!r} (names are slb/NAME for a "
            "LoadBalancer, slb/NS/NAME for a Service's)"
        )
    return [found]


def _ingresses_named(index: EndpointIndex, item: str, flag: str) -> list[Destination]:
    if item == INGRESS_KIND:
        if not index.ingresses:
            raise NotFound(f"{flag} ingress: there is no Ingress of class nginx")
        return list(index.ingresses.values())
    found = index.ingresses.get(item)
    if found is None:
        raise NotFound(
            f"{flag} {item}: no Ingress of class nginx named {item[len(INGRESS_PREFIX) :]!r} "
            "(names are ingress/NS/NAME)"
        )
    return [found]


def _by_name(index: EndpointIndex, name: str, flag: str) -> Endpoint:
    if name.startswith("ecs/"):
        found = index.instances.get(name)
        if found is None:
            raise NotFound(f"{flag} {name}: no ECS instance or node named {name[4:]!r}")
        return found
    found = index.pods.get(name)
    if found is not None:
        return found
    if name in index.pending:
        raise NotFound(f"{flag} {name}: the pod {index.pending[name]}; only running pods are endpoints")
    raise NotFound(f"{flag} {name}: no pod named {name!r} (names are NS/POD or ecs/NAME)")


def _by_labels(index: EndpointIndex, text: str, flag: str) -> list[Endpoint]:
    try:
        selector: K8sSelector = parse_label_selector_string(text)
    except SelectorError as exc:
        raise NotFound(f"{flag} {text}: not a name, a kind or a label selector: {exc}") from exc
    matched = [e for e in (*index.pods.values(), *index.instances.values()) if selector.matches(e.labels)]
    if not matched:
        raise NotFound(f"{flag} {text}: the label selector matches no running pod and no ECS instance")
    return matched
