"""What ``acknet graph`` draws: the topology of a Plan and its verdicts, shaped as plain JSON data.

Three parts, all JSON-ready (dicts, lists, strings, numbers) so the page's script only draws:

- ``topology``: VPC ⊃ VSwitch ⊃ ECS instance (node or standalone) ⊃ pods, with the SLBs in their
  VSwitch (intranet) or on the Internet, and the Services of each cluster beside the VPCs;
- ``flows``: the allowed (and partial) verdicts aggregated by *group*, so the picture stays
  readable (``groups`` maps each group to its namespace): a Deployment's replicas are one group (``NS/Deployment``), a bare pod, an ECS instance
  and a Service are each their own. A flow carries its ports, how many of the pairs behind it are
  allowed, and the reason that decided each port;
- ``openToPods``: the destination groups every pod source reaches, whose arrows from pods the page
  hides until asked (they are many and say little);
- ``matrix``: one row per source, one column per destination and port, one cell per verdict (a
  pair of an endpoint with itself has no verdict and no cell), each with its state (``allowed``,
  ``partial``, ``denied``), the deciding reason and every hop's reason.

Pure: reads the Plan and the verdicts, never the kernel or a file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from acknet.analysis.endpoints import Destination, ServiceEndpoint, ecs_name, svc_name
from acknet.analysis.reachability import Verdict
from acknet.controllers.state import Instance, Plan, PlannedLoadBalancer, PlannedPod

# A flow lists at most this many distinct deciding reasons; the matrix has every one.
MAX_FLOW_REASONS = 4


def deciding_reason(verdict: Verdict) -> str:
    """The one sentence a cell or an edge shows first: the hop that decided.

    A drop: the hop that dropped. Allowed: the last hop before the listening socket (the rule that
    let the packet in is the interesting part). Through a Service: how many backend paths pass, and
    the first hop that did not.
    """
    if verdict.backends:
        passed = sum(1 for b in verdict.backends if b.allowed)
        failing = [h.reason for h in verdict.hops[1:] if not h.passes]
        detail = failing[0] if failing else verdict.reasons[0] if verdict.hops else ""
        return f"{passed}/{len(verdict.backends)} backend paths reachable; {detail}".rstrip("; ")
    if not verdict.hops:
        return ""
    if not verdict.allowed:
        dropped = [h for h in verdict.hops if not h.passes]
        return (dropped[0] if dropped else verdict.hops[-1]).reason
    deciding = [h for h in verdict.hops if h.object != "listener"]
    return deciding[-1].reason if deciding else verdict.hops[-1].reason


@dataclass(frozen=True, slots=True)
class Groups:
    """Endpoint name -> the group its flows are drawn for, and each group's label and namespace."""

    of: Mapping[str, str]
    label: Mapping[str, str]
    namespace: Mapping[str, str]

    def group(self, endpoint: str) -> str:
        return self.of.get(endpoint, endpoint)


def pod_group(pod: PlannedPod) -> str:
    """``NS/Deployment`` for a replica, else ``NS/app=VALUE`` when it has an app label, else the pod."""
    if pod.owner and "/" in pod.owner:
        return f"{pod.namespace}/{pod.owner.split('/', 1)[1]}"
    app = pod.labels.get("app") or pod.labels.get("app.kubernetes.io/name")
    if app:
        return f"{pod.namespace}/app={app}"
    return pod.key


def groups_of(plan: Plan) -> Groups:
    of: dict[str, str] = {}
    label: dict[str, str] = {}
    namespace: dict[str, str] = {}
    for pod in plan.pods:
        g = pod_group(pod)
        of[pod.key] = g
        label[g] = g
        namespace[g] = pod.namespace
    for inst in plan.instances:
        name = ecs_name(inst.name)
        of[name] = name
        label[name] = name
        namespace[name] = f"nodes of {inst.cluster}" if inst.cluster else "ECS instances"
    for svc in plan.services:
        name = svc_name(svc)
        of[name] = name
        label[name] = name
        namespace[name] = f"{svc.namespace} Services"
    return Groups(of, label, namespace)


def graph_data(
    plan: Plan,
    verdicts: Sequence[Verdict],
    destinations: Iterable[Destination] = (),
    title: str = "acknet",
) -> dict[str, Any]:
    """Everything the page draws, as JSON data (see the module docstring)."""
    groups = groups_of(plan)
    counts = {"allowed": 0, "partial": 0, "denied": 0}
    for v in verdicts:
        counts[v.state] += 1
    return {
        "title": title,
        "summary": {"verdicts": len(verdicts), **counts},
        "topology": topology(plan, groups),
        "groups": dict(sorted(groups.namespace.items())),
        "flows": flows(verdicts, groups),
        "openToPods": open_to_pods(verdicts, groups),
        "matrix": matrix(verdicts, groups, destinations),
    }


# -- topology -------------------------------------------------------------------------------------


def topology(plan: Plan, groups: Groups) -> dict[str, Any]:
    vpc_of = {v.name: v.vpc for v in plan.vswitches}
    pods_on: dict[str, list[PlannedPod]] = {}
    pending: list[dict[str, Any]] = []
    for pod in sorted(plan.pods, key=lambda p: p.key):
        if pod.node is None or pod.ip is None:
            pending.append({"name": pod.key, "group": groups.group(pod.key), "reason": pod.reason or ""})
        else:
            pods_on.setdefault(pod.node, []).append(pod)
    by_vswitch: dict[str, list[Instance]] = {}
    for inst in sorted(plan.instances, key=lambda i: i.name):
        by_vswitch.setdefault(inst.vswitch, []).append(inst)
    slbs_in: dict[str, list[PlannedLoadBalancer]] = {}
    internet: list[dict[str, Any]] = []
    at = _endpoint_at(plan)
    for lb in sorted(plan.load_balancers, key=lambda b: b.name):
        if lb.address_type == "intranet" and lb.vswitch:
            slbs_in.setdefault(lb.vswitch, []).append(lb)
        else:
            internet.append(_slb(lb, at))
    vpcs: dict[str, dict[str, Any]] = {}
    for name, vpc in sorted(plan.resources.vpcs.items()):
        vpcs[name] = {"name": name, "cidr": str(vpc.spec.cidr_block), "vswitches": []}
    for vsw in sorted(plan.vswitches, key=lambda v: (v.vpc, v.zone, v.name)):
        box = vpcs.setdefault(vsw.vpc, {"name": vsw.vpc, "cidr": "", "vswitches": []})
        box["vswitches"].append(
            {
                "name": vsw.name,
                "cidr": str(vsw.cidr),
                "zone": vsw.zone,
                "used": vsw.used,
                "free": vsw.free,
                "instances": [
                    _instance(i, pods_on.get(i.name, []), groups, vpc_of)
                    for i in by_vswitch.get(vsw.name, [])
                ],
                "slbs": [_slb(lb, at) for lb in slbs_in.get(vsw.name, [])],
            }
        )
    services = [
        {
            "name": svc_name(s),
            "namespace": s.namespace,
            "cluster": s.cluster,
            "type": s.type,
            "ip": str(s.cluster_ip) if s.cluster_ip is not None else None,
            "ports": [
                f"{p.port}/{p.protocol}" + (f" (node {p.node_port})" if p.node_port else "") for p in s.ports
            ],
        }
        for s in sorted(plan.services, key=lambda s: (s.cluster, s.namespace, s.name))
        if s.type != "ExternalName"
    ]
    return {"vpcs": list(vpcs.values()), "internet": internet, "services": services, "pending": pending}


def _instance(
    inst: Instance, pods: Sequence[PlannedPod], groups: Groups, vpc_of: Mapping[str, str]
) -> dict[str, Any]:
    return {
        "name": ecs_name(inst.name),
        "type": inst.instance_type,
        "zone": inst.zone,
        "ip": str(inst.primary_ip),
        "node": inst.is_node,
        "cluster": inst.cluster,
        "pool": inst.node_pool,
        "securityGroups": list(inst.security_groups),
        "enis": [
            {"id": e.id, "index": e.index, "vswitch": e.vswitch, "ip": str(e.primary_ip)} for e in inst.enis
        ],
        "ports": [f"{p}/{proto}" for p, proto in inst.ports],
        "vpc": vpc_of.get(inst.vswitch, ""),
        "pods": [
            {
                "name": p.key,
                "namespace": p.namespace,
                "group": groups.group(p.key),
                "ip": str(p.ip),
                "hostNetwork": p.host_network,
                "ports": [f"{pp.port}/{pp.protocol}" for pp in p.ports],
            }
            for p in pods
        ],
    }


def _endpoint_at(plan: Plan) -> dict[str, str]:
    """Address -> the pod or instance holding it (pods win: an ENI backend is a pod, on ACK)."""
    at = {str(i.primary_ip): ecs_name(i.name) for i in plan.instances}
    at.update({str(p.ip): p.key for p in plan.pods if p.ip is not None and not p.host_network})
    return at


def _slb(lb: PlannedLoadBalancer, at: Mapping[str, str]) -> dict[str, Any]:
    """An SLB with its listeners, and ``targets``: the pods and instances its backends are."""
    targets = dict.fromkeys(
        b.server if b.server.startswith("ecs/") else at.get(str(b.ip), str(b.ip))
        for lis in lb.listeners
        for b in lis.backends
    )
    return {
        "name": f"slb/{lb.name}",
        "addressType": lb.address_type,
        "address": str(lb.address) if lb.address is not None else None,
        "service": lb.service,
        "listeners": [
            {
                "listener": lis.key,
                "backends": [f"{b.server} {b.ip}:{b.port}" for b in lis.backends],
            }
            for lis in lb.listeners
        ],
        "targets": list(targets),
    }


# -- flows and the matrix -------------------------------------------------------------------------


def open_to_pods(verdicts: Sequence[Verdict], groups: Groups) -> list[str]:
    """The destination groups every pod source reaches on every port checked (CoreDNS, most often).

    Their arrows from pods say nothing a badge cannot, and there are many of them: the page draws
    them only when asked, and marks these groups instead, so the arrows left are the ones that a
    policy or a security group shapes.
    """
    judged: dict[str, bool] = {}
    for v in verdicts:
        if _kind_of(v.source) != "pod":
            continue
        dst = groups.group(v.destination)
        judged[dst] = judged.get(dst, True) and v.state == "allowed"
    return sorted(g for g, open_ in judged.items() if open_)


def flows(verdicts: Sequence[Verdict], groups: Groups) -> list[dict[str, Any]]:
    """Allowed and partial verdicts by (source group, destination group), with their ports.

    ``pairs`` counts the verdicts that open (partial ones count), ``total`` all the verdicts between
    the two groups, so an edge can say "4 of 6": some replicas reach, others do not.
    """
    table: dict[tuple[str, str], dict[str, Any]] = {}
    for v in verdicts:
        key = (groups.group(v.source), groups.group(v.destination))
        flow = table.setdefault(
            key, {"from": key[0], "to": key[1], "ports": {}, "pairs": 0, "partial": 0, "total": 0}
        )
        flow["total"] += 1
        state = v.state
        if state == "denied":
            continue
        flow["pairs"] += 1
        if state == "partial":
            flow["partial"] += 1
        reasons: list[str] = flow["ports"].setdefault(f"{v.port}/{v.protocol}", [])
        why = _in_group_words(deciding_reason(v), v, groups)
        if why not in reasons and len(reasons) < MAX_FLOW_REASONS:
            reasons.append(why)
    out = []
    for (src, dst), flow in sorted(table.items()):
        if not flow["pairs"]:
            continue
        flow["state"] = "allowed" if flow["pairs"] == flow["total"] and not flow["partial"] else "partial"
        flow["ports"] = [{"port": p, "reasons": r} for p, r in sorted(flow["ports"].items(), key=_port_order)]
        flow["self"] = src == dst
        out.append(flow)
    return out


def _in_group_words(reason: str, verdict: Verdict, groups: Groups) -> str:
    """The reason said of the groups, so that six replicas' identical reasons become one."""
    for name in (verdict.destination, verdict.source):
        group = groups.group(name)
        if group != name:
            reason = reason.replace(name, group)
    return reason


def _port_order(item: tuple[str, Any]) -> tuple[int, str]:
    port, _, proto = item[0].partition("/")
    return int(port), proto


def matrix(
    verdicts: Sequence[Verdict], groups: Groups, destinations: Iterable[Destination] = ()
) -> dict[str, Any]:
    """Rows are sources, columns destination + port, cells the verdicts (by row and column index).

    Rows and columns come in namespace order, then name; ``group`` and ``namespace`` let the page
    group and re-sort them. ``destinations`` adds the ``kind`` (pod, ecs, service) of each column.
    """
    kinds: dict[str, str] = {}
    for d in destinations:
        kinds[d.name] = "service" if isinstance(d, ServiceEndpoint) else d.kind
    row_names = sorted({v.source for v in verdicts}, key=lambda n: _order(n, groups))
    col_keys = sorted(
        {(v.destination, v.port, v.protocol) for v in verdicts},
        key=lambda c: (*_order(c[0], groups), c[1], c[2]),
    )
    row_index = {n: i for i, n in enumerate(row_names)}
    col_index = {c: i for i, c in enumerate(col_keys)}
    rows = [
        {"name": n, "group": groups.group(n), "namespace": groups.namespace.get(groups.group(n), "")}
        for n in row_names
    ]
    cols = [
        {
            "name": d,
            "port": port,
            "protocol": proto,
            "group": groups.group(d),
            "namespace": groups.namespace.get(groups.group(d), ""),
            "kind": kinds.get(d, _kind_of(d)),
        }
        for d, port, proto in col_keys
    ]
    cells = [
        {
            "row": row_index[v.source],
            "col": col_index[(v.destination, v.port, v.protocol)],
            "state": v.state,
            "why": deciding_reason(v),
            "reasons": v.reasons,
        }
        for v in verdicts
    ]
    return {"rows": rows, "cols": cols, "cells": cells}


def _kind_of(name: str) -> str:
    if name.startswith("svc/"):
        return "service"
    return "ecs" if name.startswith("ecs/") else "pod"


def _order(name: str, groups: Groups) -> tuple[int, str, str]:
    """Pods first (by namespace), then Services, then ECS instances."""
    kind = _kind_of(name)
    rank = {"pod": 0, "service": 1, "ecs": 2}[kind]
    return rank, groups.namespace.get(groups.group(name), ""), name
