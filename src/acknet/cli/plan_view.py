"""The plan as people read it (tables) and as tools read it (the JSON of ``acknet plan -o json``)."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table

from acknet.cli.output import table
from acknet.controllers.state import Plan


def plan_json(plan: Plan) -> dict[str, Any]:
    res = plan.resources
    return {
        "vpcs": [
            {
                "name": v.name,
                "cidrBlock": str(v.spec.cidr_block),
                "vswitches": sorted(s.name for s in plan.vswitches if s.vpc == v.name),
            }
            for v in res.vpcs.values()
        ],
        "vswitches": [
            {
                "name": s.name,
                "vpc": s.vpc,
                "zone": s.zone,
                "cidrBlock": str(s.cidr),
                "gateway": str(s.gateway),
                "reserved": [str(a) for a in s.reserved],
                "used": s.used,
                "free": s.free,
            }
            for s in plan.vswitches
        ],
        "nodes": [
            {
                "name": i.name,
                "cluster": i.cluster,
                "nodePool": i.node_pool,
                "instanceType": i.instance_type,
                "zone": i.zone,
                "vswitch": i.vswitch,
                "ip": str(i.primary_ip),
                "eniMode": i.eni_mode,
                "maxPods": i.max_pods,
                "podCidr": str(i.pod_cidr) if i.pod_cidr else None,
                "securityGroups": list(i.security_groups),
                "enis": [_eni(e) for e in i.enis],
            }
            for i in plan.instances
            if i.is_node
        ],
        "ecs": [
            {
                "name": i.name,
                "instanceType": i.instance_type,
                "zone": i.zone,
                "vswitch": i.vswitch,
                "ip": str(i.primary_ip),
                "securityGroups": list(i.security_groups),
                "ports": [{"port": p, "protocol": proto} for p, proto in i.ports],
                "enis": [_eni(e) for e in i.enis],
            }
            for i in plan.instances
            if not i.is_node
        ],
        "pods": [
            {
                "cluster": p.cluster,
                "namespace": p.namespace,
                "name": p.name,
                "node": p.node,
                "ip": str(p.ip) if p.ip else None,
                "eni": p.eni,
                "phase": p.phase,
                "reason": p.reason,
                "labels": dict(p.labels),
                "owner": p.owner,
                "ports": [{"name": q.name, "port": q.port, "protocol": q.protocol} for q in p.ports],
            }
            for p in plan.pods
        ],
        "services": [
            {
                "cluster": s.cluster,
                "namespace": s.namespace,
                "name": s.name,
                "type": s.type,
                "clusterIP": str(s.cluster_ip) if s.cluster_ip else ("None" if s.headless else None),
                "ports": [
                    {
                        "name": p.name,
                        "protocol": p.protocol,
                        "port": p.port,
                        "targetPort": p.target_port,
                        "nodePort": p.node_port,
                    }
                    for p in s.ports
                ],
            }
            for s in plan.services
        ],
        "endpointSlices": [
            {
                "cluster": e.cluster,
                "namespace": e.namespace,
                "name": e.name,
                "service": e.service,
                "endpoints": [
                    {"ip": str(a.ip), "pod": a.pod, "node": a.node, "ready": a.ready} for a in e.endpoints
                ],
                "ports": [{"name": p.name, "port": p.port, "protocol": p.protocol} for p in e.ports],
            }
            for e in plan.endpoint_slices
        ],
        "routes": [
            {
                "vpc": r.vpc,
                "destination": str(r.destination),
                "nextHopType": r.next_hop_type,
                "nextHop": r.next_hop,
                "description": r.description,
            }
            for r in plan.routes
        ],
        "clusterDNS": {name: str(ip) for name, ip in plan.cluster_dns.items()},
    }


def _eni(e: Any) -> dict[str, Any]:
    return {
        "id": e.id,
        "index": e.index,
        "vswitch": e.vswitch,
        "mac": e.mac,
        "primaryIp": str(e.primary_ip),
        "ips": [str(ip) for ip in e.ips],
        "securityGroups": list(e.security_groups),
        "pod": e.exclusive_pod,
    }


def plan_tables(plan: Plan) -> Group:
    data = plan_json(plan)
    tables: list[Table] = [
        table(
            "VSwitches",
            ["NAME", "VPC", "ZONE", "CIDR", "GATEWAY", "USED", "FREE"],
            [
                (s["name"], s["vpc"], s["zone"], s["cidrBlock"], s["gateway"], s["used"], s["free"])
                for s in data["vswitches"]
            ],
        ),
        table(
            "Nodes",
            ["NAME", "CLUSTER", "POOL", "TYPE", "ZONE", "IP", "ENIS", "PODS MAX", "POD CIDR"],
            [
                (
                    n["name"],
                    n["cluster"],
                    n["nodePool"],
                    n["instanceType"],
                    n["zone"],
                    n["ip"],
                    " ".join(f"eth{e['index']}:{e['primaryIp']}" for e in n["enis"]),
                    n["maxPods"],
                    n["podCidr"],
                )
                for n in data["nodes"]
            ],
        ),
    ]
    if data["ecs"]:
        tables.append(
            table(
                "ECS instances",
                ["NAME", "TYPE", "VSWITCH", "IP", "SECURITY GROUPS", "PORTS"],
                [
                    (
                        e["name"],
                        e["instanceType"],
                        e["vswitch"],
                        e["ip"],
                        ",".join(e["securityGroups"]),
                        ",".join(f"{p['port']}/{p['protocol']}" for p in e["ports"]),
                    )
                    for e in data["ecs"]
                ],
            )
        )
    eni_index = {e["id"]: f"eth{e['index']}" for n in data["nodes"] for e in n["enis"]}
    tables.append(
        table(
            "Pods",
            ["NAMESPACE", "NAME", "NODE", "ENI", "IP", "STATUS"],
            [
                (
                    p["namespace"],
                    p["name"],
                    p["node"],
                    eni_index.get(p["eni"], p["eni"]),
                    p["ip"],
                    p["phase"] if not p["reason"] else f"{p['phase']}: {p['reason']}",
                )
                for p in data["pods"]
            ],
        )
    )
    tables.append(
        table(
            "Services",
            ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "PORTS"],
            [
                (
                    s["namespace"],
                    s["name"],
                    s["type"],
                    s["clusterIP"],
                    ",".join(
                        f"{p['port']}{':' + str(p['nodePort']) if p['nodePort'] else ''}/{p['protocol']}"
                        for p in s["ports"]
                    ),
                )
                for s in data["services"]
            ],
        )
    )
    tables.append(
        table(
            "EndpointSlices",
            ["NAMESPACE", "NAME", "SERVICE", "ENDPOINTS"],
            [
                (
                    e["namespace"],
                    e["name"],
                    e["service"],
                    " ".join(f"{a['ip']}" for a in e["endpoints"]) or "<none>",
                )
                for e in data["endpointSlices"]
            ],
        )
    )
    if data["routes"]:
        tables.append(
            table(
                "VPC route entries",
                ["VPC", "DESTINATION", "NEXT HOP"],
                [(r["vpc"], r["destination"], f"{r['nextHopType']} {r['nextHop']}") for r in data["routes"]],
            )
        )
    return Group(*(t for pair in zip(tables, [""] * len(tables), strict=True) for t in pair))
