"""The records of the cluster DNS, as CoreDNS's kubernetes plugin serves them (the DNS spec of
kubernetes/dns ``docs/specification.md``), derived from the planned Services and EndpointSlices.

- ``<svc>.<ns>.svc.cluster.local``: A to the ClusterIP; for a headless Service, A to every ready
  endpoint, and ``<a-b-c-d>.<svc>.<ns>.svc.cluster.local`` per endpoint; ExternalName: a CNAME.
- ``_<port>._<proto>.<svc>.<ns>.svc.cluster.local``: SRV for every named port.
- ``<a-b-c-d>.<ns>.pod.cluster.local``: A to the pod's address.
Everything else in the zone is NXDOMAIN. Pure: the built-in server answers from this table.
"""

from __future__ import annotations

from collections import defaultdict

from acknet.controllers.state import Plan, PlannedEndpointSlice

ZONE = "cluster.local."
Record = tuple[str, str]  # (type, value in presentation format)


def _dashed(ip: object) -> str:
    return str(ip).replace(".", "-")


def render_dns_records(plan: Plan, cluster: str) -> dict[str, list[Record]]:
    """Lower-case absolute name -> its records."""
    records: dict[str, list[Record]] = defaultdict(list)
    slices: dict[tuple[str, str], list[PlannedEndpointSlice]] = defaultdict(list)
    for eps in plan.endpoint_slices:
        if eps.cluster == cluster:
            slices[(eps.namespace, eps.service)].append(eps)
    for svc in plan.services:
        if svc.cluster != cluster:
            continue
        name = f"{svc.name}.{svc.namespace}.svc.{ZONE}"
        if svc.type == "ExternalName":
            if svc.external_name:
                records[name].append(("CNAME", svc.external_name.rstrip(".") + "."))
            continue
        if svc.cluster_ip is not None:
            records[name].append(("A", str(svc.cluster_ip)))
            for port in svc.ports:
                if port.name:
                    srv = f"_{port.name}._{port.protocol.lower()}.{name}"
                    records[srv].append(("SRV", f"0 100 {port.port} {name}"))
            continue
        # Headless: the ready endpoints themselves (publishNotReadyAddresses aside).
        seen: set[str] = set()
        for eps in slices[(svc.namespace, svc.name)]:
            for endpoint in eps.endpoints:
                if not endpoint.ready or str(endpoint.ip) in seen:
                    continue
                seen.add(str(endpoint.ip))
                host = f"{_dashed(endpoint.ip)}.{name}"
                records[name].append(("A", str(endpoint.ip)))
                records[host].append(("A", str(endpoint.ip)))
                for ep_port in eps.ports:
                    if ep_port.name:
                        srv = f"_{ep_port.name}._{ep_port.protocol.lower()}.{name}"
                        records[srv].append(("SRV", f"0 100 {ep_port.port} {host}"))
    for pod in plan.pods:
        if pod.cluster == cluster and pod.ip is not None:
            records[f"{_dashed(pod.ip)}.{pod.namespace}.pod.{ZONE}"].append(("A", str(pod.ip)))
    return {name.lower(): sorted(set(recs)) for name, recs in records.items()}
