"""Can A reach an Ingress, and why: the path of ``acknet check --to ingress/NS/NAME`` and of ``acknet trace
SRC URL`` — the SLB, the Ingress controller, the Ingress rule, the backend pod.

A request to an Ingress travels the way ACK sends it (reference/alibaba.md 6, reference/k8s.md 6):

1. The client connects to the controller's SLB, the LoadBalancer Service ``kube-system/nginx-ingress-lb``
   (port 80 for http, 443 for https): the SLB hops of ``analysis/slb.py`` (routing to the VIP, the
   client's egress, the listener and its ACL, each backend server, the NodePort, kube-proxy, the
   security groups and policies up to a controller pod listening on its port). From inside the VPC the
   VIP is reached as ``slb.py`` says (a public VIP through the VPC's VRouter, an intranet one in its
   VSwitch).
2. NGINX in that controller pod routes the request (``analysis/ingress.py``): the Ingress rule that
   matches, or NGINX's own answer (308, 404, 403, 503). whitelist-source-range judges the address
   NGINX sees, which the path decides: a layer-4 listener keeps the client's address and a layer-7
   one replaces it with the SLB's proxy in 100.64.0.0/10; behind the NodePort, externalTrafficPolicy
   Local (ACK's default for nginx-ingress-lb) keeps it, Cluster masquerades it to the node that took
   the connection.
3. NGINX opens a new connection from the controller pod to each upstream (a ready pod address and
   target port of the rule's Service): the pod-to-pod path of ``reachability.py`` (the controller's
   egress policy, the security groups, the backend's ingress policy, its listening port).

One request takes one path per (controller pod the SLB reaches, backend pod NGINX picks); the verdict
is allowed when every path of every request is, not allowed when none is, ``partial`` in between, as
for Services and SLBs. Its hops are the SLB's own and one line per path naming the request, the
controller, the Ingress rule and the backend.

Pure: reads the Plan through ``EndpointIndex``, never the kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address

from acknet.analysis.endpoints import Endpoint, IngressEndpoint, SlbEndpoint, SlbListener, SlbServer
from acknet.analysis.ingress import IngressDecision, IngressRequest, route
from acknet.analysis.reachability import Hop, Reachability, Verdict
from acknet.analysis.slb import LAYER7, candidates, proxy_endpoint, server_paths, slb_verdict
from acknet.controllers.ingress import INGRESS_LB
from acknet.controllers.state import Protocol


@dataclass(frozen=True, slots=True)
class IngressPath:
    """One path of one request: through the SLB to ``controller`` (None: it did not get there), and
    from there to ``backend`` (None: NGINX answered itself, or the path stopped before)."""

    request: IngressRequest
    verdict: Verdict
    controller: Endpoint | None = None
    decision: IngressDecision | None = None
    backend: Endpoint | None = None


def ingress_hop(controller: Endpoint, decision: IngressDecision) -> Hop:
    """What NGINX in ``controller`` did: route to a Service, or answer with its own status."""
    at = f"ingress controller {controller.name}"
    obj = f"Ingress {decision.ingress}" if decision.ingress else "NGINX default server"
    if decision.proxied:
        return Hop(
            at,
            obj,
            "forward",
            decision.reason,
            decision.rule,
            shown_action=f"route to {decision.service}:{decision.service_port}",
        )
    shown = {
        "redirect": f"redirect {decision.status}",
        "not_found": f"answer {decision.status} (not found)",
        "forbidden": f"answer {decision.status} (forbidden)",
        "unavailable": f"answer {decision.status} (unavailable)",
    }[decision.outcome]
    return Hop(at, obj, "reject", decision.reason, decision.rule, shown_action=shown)


def seen_client(src: Endpoint, slb: SlbEndpoint, target: SlbListener, server: SlbServer) -> IPv4Address:
    """The address NGINX sees for a connection ``src`` made through ``server`` of ``target``."""
    client = proxy_endpoint(slb).ip if target.listener.protocol in LAYER7 else src.ip
    svc = server.node_port_of
    node = server.endpoint
    if svc is not None and node is not None and svc.service.external_traffic_policy != "Local":
        return node.ip  # kube-proxy masquerades NodePort traffic to the node (externalTrafficPolicy Cluster)
    return client


def _controller_of(path: Verdict, controllers: Sequence[Endpoint]) -> Endpoint | None:
    """The controller pod a path through the SLB ends at (its last leg names ``POD (IP:PORT)``)."""
    last = path.destination.rsplit(" -> ", 1)[-1]
    return next((c for c in controllers if last.startswith(f"{c.name} (")), None)


@dataclass(frozen=True, slots=True)
class _Front:
    """One path through the SLB: where it ends (a controller pod, or None) and the address NGINX sees."""

    path: Verdict
    controller: Endpoint | None
    client: IPv4Address


def _fronts(
    reach: Reachability, src: Endpoint, ing: IngressEndpoint, port: int
) -> tuple[tuple[Hop, ...], list[_Front]]:
    """The SLB's own hops, and every path from ``src`` through it to a controller pod (the same for
    every request sent to ``port``); no path when the SLB refuses before its backends."""
    protocol: Protocol = "TCP"
    slb = ing.slb
    if slb is None:
        hop = Hop(
            f"cluster {ing.cluster}",
            "Ingress controller",
            "drop",
            f"cluster {ing.cluster} has no LoadBalancer Service {INGRESS_LB}: nothing takes requests for "
            "its Ingresses (the Cluster drops the nginx-ingress add-on)",
        )
        return (hop,), []
    front = slb_verdict(reach, src, slb, port, protocol)
    if not front.backends:
        return front.hops, []  # refused before any backend server (routing, ACL, no listener)
    head = front.hops[: len(front.hops) - len(front.backends)]
    target = slb.listener(port, protocol)
    assert target is not None
    out = []
    for server in candidates(target):
        client = seen_client(src, slb, target, server)
        for path in server_paths(reach, src, slb, target, server, port, protocol):
            out.append(_Front(path, _controller_of(path, ing.controllers), client))
    return head, out


def request_paths(
    reach: Reachability,
    src: Endpoint,
    ing: IngressEndpoint,
    request: IngressRequest,
    fronts: Sequence[_Front],
) -> list[IngressPath]:
    """Every path ``request`` takes from ``src`` to the backends, past each of the SLB's ``fronts``."""
    out: list[IngressPath] = []
    for front in fronts:
        path, controller = front.path, front.controller
        label = f"{request.url} via {path.destination}"
        if not path.allowed:
            out.append(IngressPath(request, replace(path, destination=label)))
            continue
        if controller is None:
            hop = Hop(
                path.destination,
                "SLB backend",
                "drop",
                f"{path.destination} is no pod of the Ingress controller of cluster {ing.cluster}",
            )
            out.append(IngressPath(request, _ended(path, label, hop)))
            continue
        decision = route(ing.routes, replace(request, client=front.client))
        hop = ingress_hop(controller, decision)
        if not decision.proxied:
            ended = _ended(path, f"{request.url} via {controller.name}", hop)
            out.append(IngressPath(request, ended, controller, decision))
            continue
        out.extend(_to_backends(reach, src, ing, request, path, controller, decision, hop))
    return out


def _ended(path: Verdict, label: str, hop: Hop) -> Verdict:
    return replace(path, destination=label, allowed=hop.passes, hops=(*path.hops, hop))


def _to_backends(
    reach: Reachability,
    src: Endpoint,
    ing: IngressEndpoint,
    request: IngressRequest,
    path: Verdict,
    controller: Endpoint,
    decision: IngressDecision,
    hop: Hop,
) -> list[IngressPath]:
    """NGINX's connections from ``controller`` to each upstream of ``decision``."""
    out = []
    for ip, port in decision.upstreams:
        backend = ing.by_ip.get(ip)
        label = f"{request.url} via {controller.name} -> {backend.name if backend else ip} ({ip}:{port})"
        hops = [*path.hops, hop]
        if backend is None:
            hops.append(Hop(str(ip), "VPC", "drop", f"{ip} is no pod or instance address in the plan"))
        else:
            hops.extend(reach.path(controller, backend, port, "TCP"))
            if hops[-1].passes:
                hops.append(reach.listen_hop(backend, port, "TCP"))
        allowed = hops[-1].passes
        verdict = Verdict(src.name, label, path.port, path.protocol, allowed, tuple(hops))
        out.append(IngressPath(request, verdict, controller, decision, backend))
    return out


def ingress_verdict(
    reach: Reachability, src: Endpoint, ing: IngressEndpoint, port: int, protocol: Protocol
) -> Verdict:
    """``src`` to Ingress ``ing`` on ``port``: every request of that port through every path."""
    head, paths = ingress_paths(reach, src, ing, port, protocol)
    return verdict_of(src, ing, port, protocol, head, paths)


def verdict_of(
    src: Endpoint,
    ing: IngressEndpoint,
    port: int,
    protocol: Protocol,
    head: Sequence[Hop],
    paths: Sequence[IngressPath],
) -> Verdict:
    """The verdict of ``ingress_paths``' answer: allowed when every path is, partial when some are."""
    if not paths:
        return Verdict(src.name, ing.name, port, protocol, False, tuple(head))
    ok = [p.verdict.allowed for p in paths]
    return Verdict(
        src.name,
        ing.name,
        port,
        protocol,
        all(ok),
        (*head, *(_summary(p) for p in paths)),
        partial=any(ok) and not all(ok),
        backends=tuple(p.verdict for p in paths),
    )


def ingress_paths(
    reach: Reachability, src: Endpoint, ing: IngressEndpoint, port: int, protocol: Protocol
) -> tuple[tuple[Hop, ...], list[IngressPath]]:
    """The hops before the paths branch, and the paths of every request ``ing`` sends to ``port``; a
    single refusing hop and no path when no request can go (not served, wrong port, UDP)."""
    at = ing.name
    if ing.problem is not None:
        why = (
            f"Ingress {ing.ingress} is not served: the controller leaves it out of nginx.conf: {ing.problem}"
        )
        return (Hop(at, f"Ingress {ing.ingress}", "drop", why),), []
    requests = ing.requests_for(port) if protocol == "TCP" else ()
    if not requests:
        return (Hop(at, f"Ingress {ing.ingress}", "drop", _no_request(ing, port, protocol)),), []
    head, fronts = _fronts(reach, src, ing, port)
    if not fronts:
        return head, []
    paths = [p for request in requests for p in request_paths(reach, src, ing, request, fronts)]
    return head, paths


def _no_request(ing: IngressEndpoint, port: int, protocol: str) -> str:
    if protocol != "TCP":
        return f"NGINX takes HTTP over TCP only, not {protocol}"
    if not ing.requests:
        return (
            f"Ingress {ing.ingress} has no rule path a request can name (only regex paths): trace a URL "
            "that matches one instead"
        )
    listed = ", ".join(f"{p}/{t}" for p, t in ing.declared_ports)
    if port == 80:
        return (
            f"every host of Ingress {ing.ingress} has TLS and ssl-redirect: plain HTTP on 80 is answered "
            f"308 to https (it is exercised on {listed})"
        )
    return f"Ingress {ing.ingress} is exercised on {listed}, not on {port}/{protocol}"


def _summary(path: IngressPath) -> Hop:
    """One line per path: the request, the controller and rule, the backend, the hop that decided."""
    verdict = path.verdict
    decision = path.decision
    rule = f"Ingress {decision.ingress} {decision.rule}" if decision and decision.ingress else None
    routed = f" ({rule})" if rule and decision and decision.proxied else ""
    if verdict.allowed:
        deciding = [h for h in verdict.hops if h.object != "listener"]
        last = deciding[-1] if deciding else verdict.hops[-1]
        return Hop(
            verdict.destination,
            "Ingress backend",
            "accept",
            f"{verdict.destination}{routed}: reached ({last.reason})",
            decision.rule if decision else last.rule,
        )
    last = next((h for h in verdict.hops if not h.passes), verdict.hops[-1])
    return Hop(
        verdict.destination,
        "Ingress backend",
        last.action,
        f"{verdict.destination}{routed}: {last.reason}",
        last.rule,
        shown_action=last.shown_action,
    )
