"""What ``acknet get`` shows: objects of the running emulation, pods in Kubernetes shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from acknet.controllers.state import Instance, Plan, PlannedPod
from acknet.errors import NotFound

KINDS = ("pods", "nodes", "ecs", "vswitches", "securitygroups", "services")
ALIASES = {
    "pod": "pods",
    "po": "pods",
    "node": "nodes",
    "no": "nodes",
    "vswitch": "vswitches",
    "vsw": "vswitches",
    "securitygroup": "securitygroups",
    "sg": "securitygroups",
    "service": "services",
    "svc": "services",
}


def pod_item(pod: PlannedPod, ready: bool, host_ip: str | None) -> dict[str, Any]:
    conditions = [
        {"type": "PodScheduled", "status": "True" if pod.node else "False"},
        {"type": "Ready", "status": "True" if ready else "False"},
    ]
    status: dict[str, Any] = {"phase": pod.phase, "conditions": conditions}
    if pod.ip is not None:
        status["podIP"] = str(pod.ip)
        status["podIPs"] = [{"ip": str(pod.ip)}]
    if host_ip is not None:
        status["hostIP"] = host_ip
    if pod.reason:
        status["reason"] = pod.reason.split(":")[0]
        status["message"] = pod.reason
    metadata: dict[str, Any] = {"name": pod.name, "namespace": pod.namespace, "labels": dict(pod.labels)}
    if pod.owner:
        kind, _, name = pod.owner.partition("/")
        metadata["ownerReferences"] = [{"kind": kind, "name": name}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "nodeName": pod.node,
            "containers": [
                {
                    "ports": [
                        {"name": p.name, "containerPort": p.port, "protocol": p.protocol} for p in pod.ports
                    ]
                }
            ],
        },
        "status": status,
    }


def _instance(inst: Instance) -> dict[str, Any]:
    return {
        "name": inst.name,
        "cluster": inst.cluster,
        "nodePool": inst.node_pool,
        "instanceType": inst.instance_type,
        "zone": inst.zone,
        "vswitch": inst.vswitch,
        "ip": str(inst.primary_ip),
        "securityGroups": list(inst.security_groups),
        "eniMode": inst.eni_mode,
        "maxPods": inst.max_pods,
        "enis": [
            {
                "id": e.id,
                "name": f"eth{e.index}",
                "vswitch": e.vswitch,
                "mac": e.mac,
                "ips": [str(ip) for ip in e.ips],
                "pod": e.exclusive_pod,
            }
            for e in inst.enis
        ],
        "ports": [{"port": p, "protocol": proto} for p, proto in inst.ports],
    }


def items(plan: Plan, kind: str, ready: Mapping[str, bool]) -> list[dict[str, Any]]:
    kind = ALIASES.get(kind, kind)
    hosts = {i.name: str(i.primary_ip) for i in plan.instances}
    if kind == "pods":
        return [pod_item(p, ready.get(p.key, False), hosts.get(p.node or "")) for p in plan.pods]
    if kind == "nodes":
        return [_instance(i) for i in plan.instances if i.is_node]
    if kind == "ecs":
        return [_instance(i) for i in plan.instances if not i.is_node]
    if kind == "vswitches":
        return [
            {
                "name": v.name,
                "vpc": v.vpc,
                "zone": v.zone,
                "cidrBlock": str(v.cidr),
                "gateway": str(v.gateway),
                "used": v.used,
                "free": v.free,
            }
            for v in plan.vswitches
        ]
    if kind == "securitygroups":
        members: dict[str, list[str]] = {}
        for inst in plan.instances:
            for eni in inst.enis:
                for group in eni.security_groups:
                    members.setdefault(group, []).append(f"{inst.name}/eth{eni.index}")
        return [
            {
                "name": sg.name,
                "vpc": sg.spec.vpc,
                "type": sg.spec.security_group_type,
                "innerAccess": sg.inner_access,
                "members": sorted(set(members.get(sg.name, []))),
                "rules": [r.model_dump(by_alias=True, exclude_none=True) for r in sg.spec.rules],
            }
            for sg in plan.resources.security_groups.values()
        ]
    if kind == "services":
        return [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": s.name, "namespace": s.namespace},
                "spec": {
                    "type": s.type,
                    "clusterIP": str(s.cluster_ip) if s.cluster_ip else "None",
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
                },
            }
            for s in plan.services
        ]
    raise NotFound(f"unknown kind {kind!r}; acknet get knows {', '.join(KINDS)}")
