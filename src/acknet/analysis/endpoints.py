"""The endpoints of ``acknet check`` and ``probe``: what ``--from``/``--to`` name, resolved over a Plan.

DESIGN.md ("The command line") names endpoints ``NS/POD``, ``ecs/NAME``, ``svc/NS/NAME``,
``slb/NAME`` or ``slb/NS/NAME`` and ``internet``, and lets ``--from``/``--to`` also take kinds
(``pods``, ``ecs``, ``svc``, ``slb``) and kubectl label selectors (``app=web,tier!=db``). This layer
resolves pods and ECS instances; Services, SLBs and the Internet are recognised and refused with
``UnsupportedEndpoint`` until their layers exist, so that a later layer only adds a branch here.

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

from acknet.controllers.state import Eni, Instance, Plan, PlannedPod, Protocol
from acknet.errors import AcknetError, NotFound
from acknet.model.selectors import K8sSelector, SelectorError, parse_label_selector_string

EndpointKind = Literal["pod", "ecs"]  # later layers: "service", "slb", "internet"
Datapath = Literal["terway-shared", "terway-exclusive", "flannel", "host-network", "ecs"]
Role = Literal["from", "to"]

# The kinds --from/--to accept (DESIGN.md); the ones without a layer yet are refused by name.
POD_KIND = "pods"
ECS_KIND = "ecs"
_LATER_KINDS = {
    "svc": "Service endpoints (svc/NS/NAME)",
    "slb": "SLB endpoints (slb/NAME, slb/NS/NAME)",
    "internet": "the internet endpoint",
}
_LATER_PREFIXES = {"svc/": "svc", "slb/": "slb"}

# kubectl selector syntax needs one of these; a word without them is a name, a kind or a label key.
_SELECTOR_SYNTAX = re.compile(r"[=!()\s]")


class UnsupportedEndpoint(AcknetError):
    """An endpoint DESIGN.md names but whose layer (Services, SLB, the Internet) does not exist yet.

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


@dataclass(slots=True)
class EndpointIndex:
    """Every endpoint of a Plan, by name, built once; ``resolve`` reads it."""

    pods: dict[str, Endpoint]
    instances: dict[str, Endpoint]  # "ecs/NAME" -> endpoint, nodes included
    pending: dict[str, str]  # "NS/POD" -> why it is not an endpoint
    standalone: tuple[str, ...]  # names of ECS instances that are not nodes

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
        return cls(pods, ecs, pending, standalone)

    def everything(self) -> list[Endpoint]:
        """Every pod and every standalone ECS instance: what an absent ``--from``/``--to`` means.

        Nodes are left out: they are infrastructure, asked for by name, kind or label.
        """
        return [*self.pods.values(), *(self.instances[n] for n in self.standalone)]


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
    ``NotFound`` naming the item that matched nothing, ``UnsupportedEndpoint`` for Services, SLBs
    and the Internet.
    """
    index = plan if isinstance(plan, EndpointIndex) else EndpointIndex.of(plan)
    items = [selectors] if isinstance(selectors, str) else list(selectors or [])
    if not items:
        return index.everything()
    found: dict[str, Endpoint] = {}
    for item in _split(items):
        for endpoint in _resolve_one(index, item, role):
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
    return "/" in text or text in (POD_KIND, ECS_KIND) or text in _LATER_KINDS


def _resolve_one(index: EndpointIndex, item: str, role: Role) -> list[Endpoint]:
    flag = f"--{role}"
    if not item:
        raise NotFound(f"{flag}: an empty endpoint name")
    if item in _LATER_KINDS:
        raise UnsupportedEndpoint(f"{flag} {item}: {_LATER_KINDS[item]} are not supported yet")
    for prefix, kind in _LATER_PREFIXES.items():
        if item.startswith(prefix):
            raise UnsupportedEndpoint(f"{flag} {item}: {_LATER_KINDS[kind]} are not supported yet")
    if item == POD_KIND:
        if not index.pods:
            raise NotFound(f"{flag} pods: there is no running pod with an address")
        return list(index.pods.values())
    if item == ECS_KIND:
        if not index.instances:
            raise NotFound(f"{flag} ecs: there is no ECS instance")
        return list(index.instances.values())
    if not _SELECTOR_SYNTAX.search(item) and "/" in item:
        return [_by_name(index, item, flag)]
    return _by_labels(index, item, flag)


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
