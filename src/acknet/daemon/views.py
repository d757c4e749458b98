"""What ``acknet get`` shows: objects of the running emulation, pods in Kubernetes shape."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from acknet.controllers.state import Instance, Plan, PlannedPod
from acknet.dataplane.render.ingress import IngressProblem, controller_pods, is_nginx_class, render_ingress
from acknet.errors import NotFound

KINDS = ("pods", "nodes", "ecs", "vswitches", "securitygroups", "services", "slb", "ingress")
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
    "slbs": "slb",
    "loadbalancers": "slb",
    "loadbalancer": "slb",
    "lb": "slb",
    "ingresses": "ingress",
    "ing": "ingress",
}

# Load balancer -> listener ("tcp/80") -> (address, port) -> healthy, as the health checker sees it.
SlbHealth = Mapping[str, Mapping[str, Mapping[tuple[str, int], bool]]]


def slb_items(
    plan: Plan, health: SlbHealth, dropped: Mapping[str, Mapping[str, int]] | None = None
) -> list[dict[str, Any]]:
    """``acknet get slb``: every CLB instance with its VIP, listeners and backends (DESIGN.md);
    ``dropped`` counts the new connections each listener dropped over its connectionRateLimit."""
    dropped = dropped or {}
    out = []
    for lb in plan.load_balancers:
        listeners = []
        backends = []
        for li in lb.listeners:
            seen = health.get(lb.name, {}).get(li.key, {})
            rows = [
                {
                    "server": b.server,
                    "ip": str(b.ip),
                    "port": b.port,
                    "weight": b.weight,
                    # On layer 4 a backend of weight 0 shows as unhealthy (health check FAQ).
                    "healthy": seen.get((str(b.ip), b.port), True)
                    and (b.weight > 0 or li.protocol in ("http", "https")),
                    "listener": li.key,
                    **({"serverType": b.role} if b.role else {}),
                }
                for b in li.backends
            ]
            hc = li.health_check
            listeners.append(
                {
                    "protocol": li.protocol,
                    "port": li.port,
                    "scheduler": li.scheduler,
                    "serverGroup": li.group,
                    "persistenceTimeout": li.persistence_timeout,
                    "acl": (
                        {"type": li.acl_type, "entries": [str(e) for e in li.acl_entries]}
                        if li.acl_type is not None
                        else None
                    ),
                    "connectionRateLimit": li.connection_rate_limit,
                    "droppedConnections": dropped.get(lb.name, {}).get(li.key, 0),
                    # https: the kubernetes.io/tls Secret whose certificate the listener's proxy serves
                    **({"certificate": li.certificate} if li.certificate is not None else {}),
                    "healthCheck": {
                        "enabled": hc.enabled,
                        "type": hc.type,
                        "interval": hc.interval,
                        "timeout": hc.timeout,
                        "healthyThreshold": hc.healthy_threshold,
                        "unhealthyThreshold": hc.unhealthy_threshold,
                        "failureWindow": hc.failure_window,
                    },
                    "backends": rows,
                }
            )
            backends.extend(rows)
        out.append(
            {
                "name": lb.name,
                "address": str(lb.address) if lb.address is not None else None,
                "addressType": lb.address_type,
                "vpc": lb.vpc,
                "vswitch": lb.vswitch,
                "service": lb.service,
                "healthCheckSource": str(lb.health_source),
                "listeners": listeners,
                "backends": backends,
                "events": list(lb.events),
            }
        )
    return out


def ingress_items(
    plan: Plan,
    problems: Mapping[str, Sequence[IngressProblem]] | None = None,
    errors: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """``acknet get ingress``: every Ingress in Kubernetes shape, ``status.loadBalancer`` holding the
    VIP of ``kube-system/nginx-ingress-lb`` (where the controller publishes itself), and a ``Served``
    condition saying why an Ingress is left out. ``problems`` are what the running controller found
    (``nginx -t`` included); without them, what the files alone show."""
    out = []
    vips = {lb.service: lb.address for lb in plan.load_balancers if lb.service and lb.address}
    for cluster in plan.resources.clusters:
        objs = plan.resources.kube.get(cluster)
        if objs is None:
            continue
        has_controller = bool(controller_pods(plan, cluster))
        found = problems.get(cluster) if problems is not None else None
        if found is None:
            found = render_ingress(plan, cluster).problems if has_controller else ()
        why = {p.ingress: p for p in found}
        vip = vips.get(f"{cluster}/kube-system/nginx-ingress-lb")
        error = (errors or {}).get(cluster)
        fields = ("type", "status", "reason", "message")
        for (namespace, name), ing in objs.ingresses.items():
            key = f"{namespace}/{name}"
            ours = is_nginx_class(ing, objs)
            if not ours:
                condition = ("False", "IngressClass", "not of the class the NGINX Ingress controller serves")
            elif not has_controller:
                condition = ("False", "NoController", "the cluster runs no NGINX Ingress controller pod")
            elif key in why:
                condition = ("False", why[key].reason, why[key].message)
            elif error is not None:
                condition = ("False", "ConfigRejected", error)
            else:
                condition = ("True", "Served", "in the NGINX configuration of every controller pod")
            spec = ing.spec.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True)
            served = condition[0] == "True"
            out.append(
                {
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "Ingress",
                    "metadata": {
                        "name": name,
                        "namespace": namespace,
                        "annotations": dict(ing.metadata.annotations),
                    },
                    "spec": spec,
                    "status": {
                        "loadBalancer": {"ingress": [{"ip": str(vip)}]} if vip is not None and served else {},
                        "conditions": [dict(zip(fields, ("Served", *condition), strict=True))],
                    },
                }
            )
    return out


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
    if kind == "slb":
        return slb_items(plan, {})
    if kind == "ingress":
        return ingress_items(plan)
    if kind == "services":
        vips = {lb.service: lb.address for lb in plan.load_balancers if lb.service and lb.address}
        return [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": s.name, "namespace": s.namespace},
                # The cloud controller writes the CLB's VIP here (reference/alibaba.md 5).
                "status": {
                    "loadBalancer": (
                        {"ingress": [{"ip": str(vips[f"{s.cluster}/{s.key}"])}]}
                        if f"{s.cluster}/{s.key}" in vips
                        else {}
                    )
                },
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
