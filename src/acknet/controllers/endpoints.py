"""EndpointSlices: the pods each Service selects, as the EndpointSlice controller writes them.

For a Service with a selector (not ExternalName), every pod of its namespace with an address whose
labels include the selector is an endpoint. Each service port's targetPort is resolved per pod
(``podutil.FindPort``: a name means the first container port with that name *and* protocol; a pod
without it is left out of that port only). Endpoints with the same resolved ports share slices of
at most 100 (``--max-endpoints-per-slice``), named ``<service>-`` + 5 generated characters. A Service
that selects nothing still gets one empty placeholder slice. Slices written by hand (label
``kubernetes.io/service-name``) are not the controller's; they are carried over as they are.

Readiness is an input, not something planned: the daemon observes readiness probes and hands the
not-ready pods in. Such a pod stays in its slices with ``ready=False, serving=False`` (the controller
keeps not-ready endpoints, consumers skip them); a terminating pod (deleted, still running while
kube-proxy forgets it) gets ``ready=False, serving=True, terminating=True`` (KEP-1672).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from ipaddress import IPv4Address

from acknet.controllers.naming import generate_name
from acknet.controllers.state import (
    EndpointAddress,
    EndpointSlicePort,
    PlannedEndpointSlice,
    PlannedPod,
    PlannedService,
)
from acknet.model.k8s import EndpointSlice
from acknet.model.resources import KubeObjects

MAX_ENDPOINTS_PER_SLICE = 100
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

PortSet = tuple[EndpointSlicePort, ...]


class PodIndex:
    """Running pods with an address, indexed by (namespace, label key, label value).

    A Service's selector is answered by the shortest posting list among its labels, filtered on the
    rest, never by a scan of every pod: 10,000 Services over 60,000 pods stay well under a second.
    """

    def __init__(self, pods: Sequence[PlannedPod], not_ready: Collection[str] = frozenset()) -> None:
        self.pods = [p for p in pods if p.phase == "Running" and p.ip is not None]
        self.not_ready = not_ready
        self._postings: dict[tuple[str, str, str], list[int]] = {}
        for i, pod in enumerate(self.pods):
            namespace = pod.namespace
            for key, value in pod.labels.items():
                posting = self._postings.get((namespace, key, value))
                if posting is None:
                    self._postings[(namespace, key, value)] = [i]
                else:
                    posting.append(i)
        self._addresses: dict[int, EndpointAddress] = {}
        self._named: dict[int, dict[tuple[str, str], int]] = {}

    def select(self, namespace: str, selector: Mapping[str, str] | None) -> list[int]:
        """Indices of the pods the selector matches, in pod order."""
        if not selector:
            return []
        postings = []
        for key, value in selector.items():
            posting = self._postings.get((namespace, key, value))
            if not posting:
                return []
            postings.append(posting)
        shortest = min(postings, key=len)
        if len(postings) == 1:
            return shortest
        items = selector.items()
        pods = self.pods
        return [i for i in shortest if items <= pods[i].labels.items()]

    def address(self, i: int) -> EndpointAddress:
        """One EndpointAddress per pod, shared by every slice it appears in."""
        found = self._addresses.get(i)
        if found is None:
            pod = self.pods[i]
            assert pod.ip is not None
            ready = pod.key not in self.not_ready
            found = EndpointAddress(ip=pod.ip, pod=pod.key, node=pod.node, ready=ready, serving=ready)
            self._addresses[i] = found
        return found

    def named_ports(self, i: int) -> dict[tuple[str, str], int]:
        """(name, protocol) -> containerPort; the first container that declares it wins, as in FindPort."""
        found = self._named.get(i)
        if found is None:
            found = {}
            for port in self.pods[i].ports:
                if port.name is not None:
                    found.setdefault((port.name, port.protocol), port.port)
            self._named[i] = found
        return found


def _resolved_ports(service: PlannedService, index: PodIndex, i: int) -> PortSet:
    named = index.named_ports(i)
    out = []
    for p in service.ports:
        if isinstance(p.target_port, int):
            out.append(EndpointSlicePort(p.name, p.target_port, p.protocol))
        else:
            number = named.get((p.target_port, p.protocol))
            if number is not None:
                out.append(EndpointSlicePort(p.name, number, p.protocol))
    return tuple(out)


def _group(
    service: PlannedService, index: PodIndex, matched: list[int]
) -> dict[PortSet, list[EndpointAddress]]:
    groups: dict[PortSet, list[EndpointAddress]] = {}
    if all(isinstance(p.target_port, int) for p in service.ports):
        # The common case: every pod gets the same ports, no per-pod lookup.
        numeric: PortSet = tuple(
            EndpointSlicePort(p.name, int(p.target_port), p.protocol) for p in service.ports
        )
        groups[numeric] = [index.address(i) for i in matched]
        return groups
    for i in matched:
        groups.setdefault(_resolved_ports(service, index, i), []).append(index.address(i))
    return groups


def _port_key(ports: PortSet) -> str:
    return ",".join(f"{p.name or ''}:{p.port}/{p.protocol}" for p in ports)


def _managed(service: PlannedService, index: PodIndex, taken: set[str]) -> list[PlannedEndpointSlice]:
    groups = _group(service, index, index.select(service.namespace, service.selector))
    groups = {ports: endpoints for ports, endpoints in groups.items() if endpoints}
    if not groups:
        groups = {(): []}  # the placeholder slice: no endpoints, no ports
    out = []
    for ports, endpoints in groups.items():
        chunks = range(0, max(1, len(endpoints)), MAX_ENDPOINTS_PER_SLICE)
        for n, start in enumerate(chunks):
            seed = (service.cluster, service.namespace, service.name, _port_key(ports), str(n))
            out.append(
                PlannedEndpointSlice(
                    cluster=service.cluster,
                    namespace=service.namespace,
                    name=generate_name(f"{service.name}-", seed, taken),
                    service=service.name,
                    endpoints=tuple(endpoints[start : start + MAX_ENDPOINTS_PER_SLICE]),
                    ports=ports,
                )
            )
    return out


def _hand_written(cluster: str, slice_: EndpointSlice) -> PlannedEndpointSlice | None:
    service = slice_.service_name
    if not service or slice_.address_type != "IPv4":
        return None
    endpoints = []
    for endpoint in slice_.endpoints:
        conditions = endpoint.conditions
        # discovery/v1: an unset ready means unknown, which consumers treat as ready; serving follows it.
        ready = conditions.ready is not False
        serving = conditions.serving if conditions.serving is not None else ready
        for text in endpoint.addresses:
            try:
                ip = IPv4Address(text)
            except ValueError:
                continue  # validate reports it
            endpoints.append(
                EndpointAddress(
                    ip=ip,
                    pod=None,
                    node=endpoint.node_name,
                    ready=ready,
                    serving=serving,
                    terminating=bool(conditions.terminating),
                )
            )
    ports = tuple(EndpointSlicePort(p.name, p.port, p.protocol) for p in slice_.ports if p.port is not None)
    return PlannedEndpointSlice(
        cluster=cluster,
        namespace=slice_.namespace,
        name=slice_.name,
        service=service,
        endpoints=tuple(endpoints),
        ports=ports,
        managed=False,
    )


def plan_endpoint_slices(
    cluster: str,
    services: Sequence[PlannedService],
    pods: Sequence[PlannedPod],
    objs: KubeObjects,
    not_ready: Collection[str] = frozenset(),
) -> list[PlannedEndpointSlice]:
    """Every slice of the cluster, managed and hand-written, sorted by (namespace, service, name).

    ``not_ready`` holds pods ("namespace/name") whose readiness probe fails: their endpoints are not
    ready."""
    taken: dict[str, set[str]] = {}
    out = []
    for (namespace, name), slice_ in objs.endpoint_slices.items():
        taken.setdefault(namespace, set()).add(name)
        kept = _hand_written(cluster, slice_)
        if kept is not None:
            out.append(kept)
    index = PodIndex(pods, not_ready)
    for service in services:
        if service.selector and service.type != "ExternalName":
            out.extend(_managed(service, index, taken.setdefault(service.namespace, set())))
    out.sort(key=lambda s: (s.namespace, s.service, s.name))
    return out


def with_endpoint_conditions(
    slices: Sequence[PlannedEndpointSlice],
    not_ready: Collection[str] = frozenset(),
    terminating: Collection[str] = frozenset(),
) -> tuple[PlannedEndpointSlice, ...]:
    """``slices`` with the conditions of their pod endpoints set again from readiness: pods in
    ``terminating`` are ready=False, serving=True, terminating=True; pods in ``not_ready`` are
    ready=False, serving=False; every other pod endpoint is ready. Hand-written slices are left as
    written. Cheap: a readiness change re-derives the slices, it does not re-plan addresses."""

    def conditions(ep: EndpointAddress) -> EndpointAddress:
        if ep.pod is None:
            return ep
        if ep.pod in terminating:
            wanted = (False, True, True)
        elif ep.pod in not_ready:
            wanted = (False, False, False)
        else:
            wanted = (True, True, False)
        if (ep.ready, ep.serving, ep.terminating) == wanted:
            return ep
        return dataclasses.replace(ep, ready=wanted[0], serving=wanted[1], terminating=wanted[2])

    out = []
    for sl in slices:
        if not sl.managed:
            out.append(sl)
            continue
        endpoints = tuple(conditions(ep) for ep in sl.endpoints)
        same = all(a is b for a, b in zip(endpoints, sl.endpoints, strict=True))
        out.append(sl if same else dataclasses.replace(sl, endpoints=endpoints))
    return tuple(out)
