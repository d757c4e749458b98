"""Can A reach an SLB, and why: the CLB hops of ``acknet check`` and ``trace`` (``slb/NAME``, ``slb/NS/NAME``).

An independent reading of how acknet emulates a CLB instance (docs/slb.md; reference/alibaba.md 4 and
5), next to the data plane (``dataplane/render/slb.py``, never imported here):

- Reaching the VIP. An internet VIP (198.51.100.0/24) is routed by the emulated Internet to its VPC's
  VRouter, so ``internet`` (a client at 203.0.113.1) reaches it. An intranet VIP is a private address
  in a VSwitch: only its VPC reaches it, and the Internet has no route to any private address. Inside
  the VPC a client's egress (its pod's egress policy towards the VIP, its ENI's security groups) is
  judged first. A VPC's VRouter routes the public VIPs of its own internet SLBs straight to them
  (render/slb.py: the VIP/32 route in the VRouter), so an ECS or pod of that VPC reaches them too; a
  public address of another VPC needs an EIP or a NAT gateway, which the emulation does not have
  (docs/slb.md, topology.py: "a private source meets network unreachable at its VRouter").
- The listener: the port and transport (tcp/http/https take TCP, udp UDP); a port without a listener
  is dropped (the instance answers only its listeners). The listener's ACL is judged on the client's
  address before anything else (a whitelist forwards only its entries, a blacklist drops them, an
  empty list forwards everything: CLB listener docs). ``connectionRateLimit`` is about load, not
  reachability, and is left out.
- The backend servers that take new connections: weight above 0; of a primary/secondary group the
  primary (the secondary only when the primary cannot take any). Health is not in the files: each
  backend is taken as healthy, as a freshly built emulation's checks pass where the backend listens
  (the reasons say so). None left: a TCP listener completes the handshake and forwards nothing, UDP
  is dropped, HTTP answers 503 (Billing FAQ), all "not allowed".
- Per backend, one path (several through a NodePort: one per endpoint kube-proxy may pick). Layer 4
  (tcp, udp) DNATs and keeps the client's address ("Enable Layer 4 listeners to preserve client IP
  addresses"), so the backend's security groups and a pod's ingress policy judge the client's
  address; layer 7 (http, https) is NGINX connecting from the instance's own address in 100.64.0.0/10
  ("FAQ about backend servers": the CLB system range), which every security group admits before any
  rule (``security_group.HEALTH_CHECK_SOURCE``) and which policies see. A node on the NodePort of a
  Service of its cluster hands the connection to kube-proxy (``Reachability.node_port_backends``:
  externalTrafficPolicy Cluster masquerades to the node, Local keeps the client's address). A layer-4
  client whose address is a pod address of that cluster meets kube-proxy's "short-circuit pod
  traffic" rule instead: every endpoint, Local or not, and no masquerade (``_short_circuit``), so a
  remote endpoint answers the client directly and the answer is lost, except from Terway's
  exclusive-ENI nodes, whose terway-masq masquerades everything they forward.
- Layer-4 replies must pass the SLB again: a backend answers the client directly and the VPC hands the
  answer back to the SLB. A client that is the backend server itself is a martian there ("a backend
  ECS instance cannot be a client of its own layer-4 CLB", backend server FAQ), and one on the same
  node gets the answer locally, from the wrong address: both are dropped. A Flannel vxlan pod's
  address has no route in the VPC, so the SLB's answer to it is lost.

``allowed`` when every backend path passes, not allowed when none does, ``partial`` in between, as for
a Service; the hops name the listener, its server group and each backend.

Not modelled: health from the running emulation (a backend that fails its checks leaves the group
there after the failure window; here it stays, and its path says why it fails), ``sch`` and
``persistenceTimeout`` (one client always reaches the same backend, so a real client sees one of the
paths judged here), ``connectionRateLimit``.

Pure: reads the Plan through ``EndpointIndex``, never the kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from ipaddress import IPv4Address

from acknet.analysis.endpoints import (
    INTERNET,
    Backend,
    Endpoint,
    EniRef,
    ServiceEndpoint,
    SlbEndpoint,
    SlbListener,
    SlbServer,
)
from acknet.analysis.reachability import Hop, Reachability, Verdict, _stays_in_instance
from acknet.controllers.state import Protocol

LAYER7 = ("http", "https")


def internet_hop(src: Endpoint, dst: Endpoint) -> Hop:
    """Between the Internet and a private address: no route either way (no EIP, no NAT gateway)."""
    if src.kind == "internet":
        return Hop(
            INTERNET,
            "Internet routing",
            "drop",
            f"no route: {dst.ip} ({dst.name}) is a private address of VPC {dst.vpc}; the Internet reaches "
            "only public addresses (internet SLBs), there is no EIP or DNAT entry for it",
        )
    return Hop(
        f"VPC {src.vpc}",
        "VPC route table",
        "drop",
        f"no route: {src.name} has no EIP and VPC {src.vpc} no NAT gateway, so nothing leaves for the "
        "Internet",
    )


def slb_verdict(
    reach: Reachability, src: Endpoint, slb: SlbEndpoint, port: int, protocol: Protocol
) -> Verdict:
    """``src`` to ``slb``'s listener on ``port/protocol``, judged through every backend server."""
    name = slb.name
    lb = slb.lb
    if slb.live is not None or lb.address is None:
        hop = Hop(name, "SLB", "drop", f"{name} {slb.live or 'has no VIP'}: it is not in the network")
        return Verdict(src.name, name, port, protocol, False, (hop,))
    hops = to_vip(reach, src, slb, port, protocol)
    if not hops[-1].passes:
        return Verdict(src.name, name, port, protocol, False, tuple(hops))
    target = slb.listener(port, protocol)
    if target is None:
        listening = ", ".join(f"{p}/{t}" for p, t in slb.declared_ports) or "none"
        hops.append(
            Hop(
                f"{name} {lb.address}",
                "SLB",
                "drop",
                f"{name} has no listener on {port}/{protocol} (listeners: {listening}): the instance drops "
                "what no listener takes",
            )
        )
        return Verdict(src.name, name, port, protocol, False, tuple(hops))
    where = listener_name(slb, target)
    hops.append(acl_hop(where, target, src.ip))
    if not hops[-1].passes:
        return Verdict(src.name, name, port, protocol, False, tuple(hops))
    servers = candidates(target)
    if not servers:
        hops.append(Hop(where, "SLB listener", "drop", f"{where}: {_nothing_to_forward(target)}"))
        return Verdict(src.name, name, port, protocol, False, tuple(hops))
    hops.append(listener_hop(slb, target, servers, src))
    paths: list[Verdict] = []
    for server in servers:
        paths.extend(server_paths(reach, src, slb, target, server, port, protocol))
    ok = [p.allowed for p in paths]
    summary = tuple(_summary(p) for p in paths)
    return Verdict(
        src.name,
        name,
        port,
        protocol,
        all(ok),
        (*hops, *summary),
        partial=any(ok) and not all(ok),
        backends=tuple(paths),
    )


def listener_name(slb: SlbEndpoint, target: SlbListener) -> str:
    """``slb/shop/web-public listener 80/TCP (http)``: how hops and branches name a listener."""
    li = target.listener
    return f"{slb.name} listener {li.port}/{target.protocol} ({li.protocol})"


def candidates(target: SlbListener) -> list[SlbServer]:
    """The backend servers that take new connections (all taken as healthy): weight above 0; in a
    primary/secondary group the primary, the secondary only when no primary can (failover;
    CreateMasterSlaveServerGroup docs)."""
    usable = [s for s in target.servers if s.backend.weight > 0]
    if any(s.backend.role for s in target.servers):
        primary = [s for s in usable if s.backend.role == "Master"]
        return primary or [s for s in usable if s.backend.role == "Slave"]
    return usable


def to_vip(reach: Reachability, src: Endpoint, slb: SlbEndpoint, port: int, protocol: Protocol) -> list[Hop]:
    """The hops from ``src`` to the SLB's VIP, up to the first that stops the packet."""
    lb = slb.lb
    vip = lb.address
    assert vip is not None
    public = lb.address_type == "internet"
    if src.kind == "internet":
        if public:
            return [
                Hop(
                    INTERNET,
                    "Internet routing",
                    "forward",
                    f"the Internet routes the public VIP {vip} of {slb.name} to VPC {lb.vpc}'s VRouter, "
                    "which hands it to the SLB",
                    rule=f"{vip}/32",
                )
            ]
        return [
            Hop(
                INTERNET,
                "Internet routing",
                "drop",
                f"no route: {vip} is the intranet VIP of {slb.name}, a private address of VPC {lb.vpc}; "
                "the Internet reaches only public addresses (internet SLBs)",
            )
        ]
    hops: list[Hop] = []
    if src.kind == "pod":
        hops.append(_egress_policy(reach, src, vip, protocol, port))
        if not hops[-1].passes:
            return hops
    if src.vpc != lb.vpc:
        if public:
            why = (
                f"no route: {src.name} has no EIP and VPC {src.vpc} no NAT gateway; the public VIP {vip} of "
                f"{slb.name} is routed only inside VPC {lb.vpc} (its VRouter) and from the Internet"
            )
        else:
            why = f"no route: different VPCs ({src.name} is in {src.vpc}, {slb.name}'s VIP {vip} in {lb.vpc})"
        hops.append(Hop(f"VPC {src.vpc}", "VPC route table", "drop", why))
        return hops
    hops.append(reach._sg_hop("egress", src.eni, vip, protocol, port))
    if not hops[-1].passes:
        return hops
    at = f"VPC {lb.vpc}"
    if public:
        how = f"its VRouter routes the public VIP {vip} of {slb.name} straight to the SLB"
    else:
        how = f"{vip} is the VIP of {slb.name} in VSwitch {lb.vswitch}"
    hops.append(Hop(at, "VPC", "forward", f"{at}: {how}", rule=f"{vip}/32"))
    return hops


def acl_hop(where: str, target: SlbListener, client: IPv4Address) -> Hop:
    """The listener's access control list on the client's address (checked before anything else)."""
    li = target.listener
    obj = f"{where} ACL"
    if li.acl_type is None or not li.acl_entries:
        what = "no ACL" if li.acl_type is None else f"an empty {li.acl_type}list, which forwards everything"
        return Hop(where, obj, "forward", f"{where}: {what}")
    match = next((e for e in li.acl_entries if client in e), None)
    entries = ", ".join(str(e) for e in li.acl_entries)
    if li.acl_type == "white":
        if match is not None:
            return Hop(
                where, obj, "accept", f"{where}: whitelist entry {match} admits {client}", rule=str(match)
            )
        return Hop(
            where,
            obj,
            "drop",
            f"{where}: {client} is not on the whitelist ({entries}): dropped",
            rule="white",
        )
    if match is not None:
        return Hop(where, obj, "drop", f"{where}: blacklist entry {match} drops {client}", rule=str(match))
    return Hop(where, obj, "accept", f"{where}: {client} is not on the blacklist ({entries})", rule="black")


def listener_hop(slb: SlbEndpoint, target: SlbListener, servers: list[SlbServer], src: Endpoint) -> Hop:
    where = listener_name(slb, target)
    li = target.listener
    if li.protocol in LAYER7:
        how = (
            f"layer 7: NGINX connects to the backend from {slb.lb.health_source} (the CLB system range "
            f"100.64.0.0/10), the client {src.ip} only in X-Forwarded-For"
        )
    else:
        how = f"layer 4: DNAT to the backend, the client address {src.ip} kept"
    return Hop(
        where,
        "SLB listener",
        "forward",
        f"{where}: {li.scheduler} over server group {li.group}, {len(servers)} backend server(s) with "
        f"weight above 0, each taken as healthy (health is not in the files; a fresh emulation's checks "
        f"pass where the backend listens); {how}",
        rule=f"{slb.lb.address}:{li.port}",
    )


def server_paths(
    reach: Reachability,
    src: Endpoint,
    slb: SlbEndpoint,
    target: SlbListener,
    server: SlbServer,
    port: int,
    protocol: Protocol,
) -> list[Verdict]:
    """From the SLB to one backend server: one path, or one per endpoint behind a NodePort."""
    lb = slb.lb
    li = target.listener
    b = server.backend
    layer7 = li.protocol in LAYER7
    label = f"{listener_name(slb, target)} group {li.group} -> {server}"
    # Who the backend sees: the client (layer 4) or the instance's proxy (layer 7).
    client = proxy_endpoint(slb) if layer7 else src
    dst = server.endpoint
    hops: list[Hop] = []
    if layer7:
        what = (
            f"NGINX proxies over HTTP to {b.ip}:{b.port} from {lb.health_source}, X-Forwarded-For: {src.ip}"
        )
    else:
        what = f"DNAT to {b.ip}:{b.port}, source {src.ip} kept"
    hops.append(
        Hop(
            f"{slb.name} {lb.address}",
            "SLB server group",
            "forward",
            f"{slb.name} server group {li.group}: {what} (weight {b.weight})",
            rule=f"{b.ip}:{b.port}",
        )
    )

    def done(path: list[Hop]) -> list[Verdict]:
        return [Verdict(src.name, label, port, protocol, path[-1].passes, tuple(path))]

    if dst is None:
        hops.append(Hop(str(b.ip), "VPC", "drop", f"{b.ip} is no pod or instance address in the plan"))
        return done(hops)
    if not layer7 and src.kind != "internet":
        back = _hairpin(src, dst, b.ip)
        if back is not None:
            hops.append(back)
            return done(hops)
    if dst.vpc != lb.vpc:
        hops.append(
            Hop(
                f"VPC {lb.vpc}",
                "VPC route table",
                "drop",
                f"no route: {dst.name} is in VPC {dst.vpc}, {slb.name} in {lb.vpc}",
            )
        )
        return done(hops)
    hops.append(reach._vpc_hop(dst))
    if not hops[-1].passes:
        return done(hops)
    hops.append(reach._sg_hop("ingress", dst.eni, client.ip, protocol, b.port))
    if not hops[-1].passes:
        return done(hops)
    svc = server.node_port_of
    if svc is not None and dst.kind == "ecs":
        svc_port = next(p for p in svc.ports if p.port.node_port == b.port and p.port.protocol == protocol)
        via = f"{label} -> {svc.name}"
        if svc.service.external_traffic_policy == "Local" and _from_pods(reach, svc.cluster, client.ip):
            paths = _short_circuit(
                reach, client, svc, port, protocol, dst, b.port, svc_port.usable(), hops, via
            )
        else:
            paths = reach.node_port_backends(
                client, svc, port, protocol, dst, b.port, svc_port.usable(), hops, via
            )
        out = []
        for path in paths:
            extra = _reply(reach, src) if not layer7 and path.allowed else None
            path_hops = (*path.hops, extra) if extra is not None else path.hops
            allowed = path.allowed and (extra is None or extra.passes)
            out.append(replace(path, source=src.name, hops=path_hops, allowed=allowed))
        return out
    if dst.kind == "pod":
        hops.append(reach._policy_hop("ingress", dst, client, protocol, b.port))
        if not hops[-1].passes:
            return done(hops)
    hops.append(reach.listen_hop(dst, b.port, protocol))
    if hops[-1].passes and not layer7:
        extra = _reply(reach, src)
        if extra is not None:
            hops.append(extra)
    return done(hops)


def _from_pods(reach: Reachability, cluster: str, ip: IPv4Address) -> bool:
    """Whether kube-proxy's local-traffic detector takes ``ip`` for a pod of ``cluster``: the pod
    VSwitches' ranges (Terway) or the pod CIDR (Flannel), as kube-proxy is configured on ACK."""
    found = reach.plan.resources.clusters.get(cluster)
    if found is None:
        return False
    spec = found.spec
    if spec.network_plugin == "flannel":
        return spec.pod_cidr is not None and ip in spec.pod_cidr
    vswitches = reach.plan.resources.vswitches
    return any(ip in vswitches[n].spec.cidr_block for n in spec.pod_vswitches if n in vswitches)


def _short_circuit(
    reach: Reachability,
    client: Endpoint,
    svc: ServiceEndpoint,
    port: int,
    protocol: Protocol,
    node: Endpoint,
    node_port: int,
    backends: Sequence[Backend],
    front: Sequence[Hop],
    via: str,
) -> list[Verdict]:
    """A NodePort with externalTrafficPolicy Local reached from a pod address of its cluster: kube-proxy
    short-circuits pod traffic to every endpoint, not only the node's, and masquerades none of it
    (kube-proxy's external chain, "short-circuit pod traffic"). Terway's exclusive-ENI nodes masquerade
    whatever they forward (terway-masq); elsewhere a remote endpoint answers the client directly, not
    through the node and the SLB, and the client drops that answer."""
    at = f"kube-proxy on {node.name}"
    if not backends:
        hop = Hop(at, "kube-proxy", "reject", f"NodePort {node_port}: no ready endpoint, {at} rejects it")
        return [Verdict(client.name, via, port, protocol, False, (*front, hop))]
    exclusive = any(i.name == node.instance and i.eni_mode == "exclusive" for i in reach.plan.instances)
    out = []
    for backend in backends:
        dnat = Hop(
            at,
            "kube-proxy",
            "forward",
            f"NodePort {node_port}: {client.ip} is a pod address of cluster {svc.cluster}, so {at} "
            f"short-circuits it to any endpoint (externalTrafficPolicy Local applies to traffic from "
            f"outside) and DNATs to {backend} without masquerading",
            rule=f"{node.ip}:{node_port}/{protocol}",
        )
        hops = [*front, dnat]
        dst = backend.endpoint
        if dst is None:
            hops.append(Hop(str(backend.ip), "VPC", "drop", f"{backend.ip} is no pod or instance address"))
        elif dst.instance == node.instance:
            hops.append(reach._local_hop(node, dst))
            if dst.kind == "pod":
                hops.append(reach._policy_hop("ingress", dst, client, protocol, backend.port))
        elif exclusive:
            hops.append(
                Hop(
                    node.name,
                    "terway-masq",
                    "forward",
                    f"{node.name} is an exclusive-ENI node: Terway's terway-masq masquerades what it forwards",
                )
            )
            hops.extend(reach.path(node, dst, backend.port, protocol, masqueraded=True))
        else:
            hops.append(
                Hop(
                    dst.name,
                    "node routing",
                    "drop",
                    f"{dst.name} on ecs/{dst.instance} answers {client.ip} directly, not through {node.name} "
                    "(which translated the connection) and the SLB: the client drops an answer from an "
                    "address it did not call",
                )
            )
        if hops[-1].passes and dst is not None:
            hops.append(reach.listen_hop(dst, backend.port, protocol))
        out.append(Verdict(client.name, f"{via} -> {backend}", port, protocol, hops[-1].passes, tuple(hops)))
    return out


def proxy_endpoint(slb: SlbEndpoint) -> Endpoint:
    """The layer-7 proxy of an instance as a client of its backends: its address in 100.64.0.0/10,
    outside every ENI (no security group of its own; the VPC routes it back to the instance)."""
    lb = slb.lb
    return Endpoint(
        name=f"{slb.name} (layer-7 proxy)",
        kind="internet",
        ip=lb.health_source,
        eni=EniRef("", "", slb.name, "", "", lb.vpc or "", ()),
        instance="",
        datapath="internet",
        vpc=lb.vpc or "",
    )


def _egress_policy(reach: Reachability, pod: Endpoint, vip: IPv4Address, protocol: str, port: int) -> Hop:
    """A pod's egress policy towards the VIP and listener port: the SLB translates later, elsewhere."""
    decision = reach.policy_model(pod.cluster or "").egress(pod, vip, protocol, port)
    return Hop(
        f"{pod.name} cali veth on ecs/{pod.instance}",
        decision.policy or "network policy",
        "accept" if decision.allowed else "drop",
        f"egress policy: {decision.reason}",
        decision.rule,
    )


def _hairpin(src: Endpoint, dst: Endpoint, server_ip: IPv4Address) -> Hop | None:
    """A layer-4 client that is the backend server, or shares its node: the answer misses the SLB."""
    at = f"ecs/{dst.instance}"
    if src.ip == server_ip or (src.on_host_stack and dst.on_host_stack and src.instance == dst.instance):
        return Hop(
            at,
            "kernel",
            "drop",
            f"{src.name} is the backend server {dst.name} itself: the packet comes back from the SLB with "
            "its own address as source and the kernel drops it as a martian (a backend server cannot be "
            "a client of its own layer-4 CLB: backend server FAQ)",
        )
    if src.instance == dst.instance and _stays_in_instance(dst, src):
        return Hop(
            at,
            "node routing",
            "drop",
            f"{src.name} and the backend server {dst.name} share {at}: the answer goes to {src.ip} inside "
            "the node, from the backend's address instead of the VIP, and the client drops it (a backend "
            "server cannot be a client of its own layer-4 CLB: backend server FAQ)",
        )
    return None


def _reply(reach: Reachability, src: Endpoint) -> Hop | None:
    """A layer-4 answer goes back through the SLB to the client's address: lost when the VPC has no
    route to it (a Flannel vxlan pod; a vpc-backend one has its PodCIDR route entry)."""
    if not reach._vxlan(src):
        return None
    at = f"VPC {src.vpc}"
    return Hop(
        at,
        "VPC route table",
        "drop",
        f"reply lost: the SLB answers {src.ip}, and {at} has no route to that pod address (the Flannel "
        "vxlan backend writes no route entry)",
    )


def _summary(path: Verdict) -> Hop:
    """One line per backend path: where it leads and the hop that decided."""
    hops = path.hops
    if path.allowed:
        deciding = [h for h in hops if h.object != "listener"]
        last = deciding[-1] if deciding else hops[-1]
        return Hop(
            path.destination,
            "SLB backend",
            "accept",
            f"{path.destination}: reached ({last.reason})",
            last.rule,
        )
    last = next((h for h in hops if not h.passes), hops[-1])
    return Hop(path.destination, "SLB backend", last.action, f"{path.destination}: {last.reason}", last.rule)


def _nothing_to_forward(target: SlbListener) -> str:
    li = target.listener
    if not target.servers:
        why = f"server group {li.group} has no backend server"
    else:
        why = f"no backend server of group {li.group} takes new connections (weight 0)"
    if li.protocol in LAYER7:
        return f"{why}: NGINX answers 503 itself"
    if li.protocol == "tcp":
        return f"{why}: the SLB completes the handshake and forwards nothing (Billing FAQ)"
    return f"{why}: the datagram is dropped"


# -- trace: the stretches a suggestion may change, and the SLB's own fixes ------------------------------


def vip_endpoint(slb: SlbEndpoint) -> Endpoint:
    """The VIP as the far end of a client's egress (security group, policy): an address, no ENI."""
    lb = slb.lb
    assert lb.address is not None
    return Endpoint(
        name=slb.name,
        kind="internet",
        ip=lb.address,
        eni=EniRef("", "", slb.name, "", "", lb.vpc or "", ()),
        instance="",
        datapath="internet",
        vpc=lb.vpc or "",
    )


def slb_legs(
    src: Endpoint, slb: SlbEndpoint, port: int, protocol: Protocol
) -> list[tuple[Endpoint, Endpoint, int, str]]:
    """(from, to, port, protocol) of every stretch a connection to ``slb`` may take: the client to the
    VIP, the client's address (or the layer-7 proxy's) to each backend server, and behind a NodePort
    the node and that address to each endpoint."""
    if slb.live is not None or slb.lb.address is None:
        return []
    legs: list[tuple[Endpoint, Endpoint, int, str]] = [(src, vip_endpoint(slb), port, protocol)]
    target = slb.listener(port, protocol)
    if target is None:
        return legs
    client = proxy_endpoint(slb) if target.listener.protocol in LAYER7 else src
    for server in candidates(target):
        node = server.endpoint
        if node is None:
            continue
        legs.append((client, node, server.backend.port, protocol))
        svc = server.node_port_of
        if svc is None:
            continue
        for p in svc.ports:
            if p.port.node_port == server.backend.port and p.port.protocol == protocol:
                for b in p.backends:
                    if b.endpoint is not None:
                        legs.append((node, b.endpoint, b.port, protocol))
                        legs.append((client, b.endpoint, b.port, protocol))
    return legs


def slb_fix(hop: Hop, slb: SlbEndpoint) -> tuple[str, str] | None:
    """(object, change) for a blocking hop that is the SLB's own (its ACL, listeners, server group, the
    Internet's routes); None for the others (security groups, policies, kube-proxy...)."""
    lb = slb.lb
    if lb.service is not None:
        ns, _, svc = lb.name.partition("/")
        what = f"Service {ns}/{svc}"
        prefix = "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-"
    else:
        what = f"LoadBalancer {lb.name}"
        prefix = ""
    reason = hop.reason
    if hop.object.endswith(" ACL"):
        client = reason.split(": ", 1)[1].split(" ")[0] if ": " in reason else "the client"
        if "whitelist" in reason:
            where = f"annotation {prefix}acl-id" if prefix else "the listener's acl.entries"
            return what, f"add {client} (or its range) to the whitelist ({where}), or take the ACL off"
        where = f"annotation {prefix}acl-id" if prefix else "the listener's acl.entries"
        return what, f"remove {hop.rule} from the blacklist ({where})"
    if hop.object == "Internet routing" and "intranet VIP" in reason:
        how = f"annotation {prefix}address-type: internet" if prefix else "addressType: internet"
        return what, f"the Internet reaches only public VIPs: make it an internet SLB ({how})"
    if hop.object == "SLB" and "has no listener" in reason:
        how = "a Service port (one listener each)" if prefix else "a listener in spec.listeners"
        return what, f"add {how} for that port, or connect to a port it listens on"
    if hop.object == "SLB listener":
        return what, "give the listener's server group a backend server with weight above 0"
    if hop.object == "SLB" and "not in the network" in reason:
        return what, f"{slb.name} must have a VIP and a backend in a VPC: {reason}"
    if hop.object == "VPC route table" and "no EIP" in reason:
        return (
            what,
            "acknet has no EIP or NAT gateway: reach the public VIP from the Internet (--from internet) "
            f"or from VPC {lb.vpc}, or use an intranet SLB in the client's VPC",
        )
    return None
