"""Semantic checks across objects: addresses, references, rule syntax, selectors, ports.

Every check reports and carries on, so one run lists every problem. Each message says what is
wrong and what is allowed, citing the Alibaba Cloud or Kubernetes rule it enforces.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network
from typing import Any

from acknet.model import defaults
from acknet.model.base import Resource
from acknet.model.calico import (
    CalicoNetworkPolicy,
    EntityRule,
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    NetworkSet,
    Rule,
)
from acknet.model.cloud import (
    ECSInstance,
    GroupServer,
    Listener,
    LoadBalancer,
    MasterSlaveServerGroup,
    SecurityGroup,
    VServerGroup,
)
from acknet.model.diagnostics import Diagnostic, error, warning
from acknet.model.k8s import Deployment, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, PodSpec, Service
from acknet.model.resources import KubeObjects, Resources
from acknet.model.selectors import (
    K8sSelector,
    SelectorError,
    parse_calico_selector,
    validate_k8s_selector,
    validate_label_key,
    validate_label_value,
)

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_IANA_SVC_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_CALICO_PROTOCOLS = {"TCP", "UDP", "ICMP", "ICMPV6", "SCTP", "UDPLITE"}
_PORT_PROTOCOLS = {"TCP", "UDP", "SCTP", "6", "17", "132"}
INTERNET_VIP_RANGE = IPv4Network("198.51.100.0/24")


def parse_port_range(text: str) -> tuple[int, int] | None:
    """``start/end`` as in AuthorizeSecurityGroup's PortRange; None when malformed."""
    m = re.fullmatch(r"(-?\d+)/(-?\d+)", text.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def parse_cidr(text: str) -> IPv4Network | None:
    """An IPv4 address or CIDR; host bits are tolerated (the Kubernetes e2e sends `<podIP>/4`)."""
    try:
        net = ip_network(text.strip(), strict=False)
    except ValueError:
        return None
    return net if isinstance(net, IPv4Network) else None


def usable_range(cidr: IPv4Network) -> tuple[IPv4Address, IPv4Address, IPv4Address]:
    """(first usable, last usable, gateway) of a VSwitch: the first address and the last three are reserved
    and the gateway is the `.253` (broadcast - 2), as VPC does it."""
    return cidr.network_address + 1, cidr.broadcast_address - 3, cidr.broadcast_address - 2


class _Checker:
    def __init__(self, res: Resources) -> None:
        self.res = res
        self.out: list[Diagnostic] = []
        self._workloads: dict[int, dict[str, list[tuple[Mapping[str, str], PodSpec]]]] = {}

    def workloads(self, objs: KubeObjects, namespace: str) -> list[tuple[Mapping[str, str], PodSpec]]:
        """(labels, spec) of every pod and pod template of a namespace, indexed once per cluster so that
        checks per Service port and per policy stay linear at 10,000 Services."""
        index = self._workloads.get(id(objs))
        if index is None:
            index = {}
            for (ns, _), pod in objs.pods.items():
                index.setdefault(ns, []).append((pod.labels, pod.spec))
            for (ns, _), dep in objs.deployments.items():
                index.setdefault(ns, []).append((dep.spec.template.metadata.labels, dep.spec.template.spec))
            self._workloads[id(objs)] = index
        return index.get(namespace, [])

    # -- reporting -----------------------------------------------------------------------------------
    def err(self, obj: Resource, field: str, message: str) -> None:
        self.out.append(error(message, obj.origin, obj.ref, field))

    def warn(self, obj: Resource, field: str, message: str) -> None:
        self.out.append(warning(message, obj.origin, obj.ref, field))

    def ref_exists(
        self, obj: Resource, field: str, kind: str, name: str | None, table: Mapping[str, Any]
    ) -> bool:
        if name is None or name in table:
            return True
        if name in self.res.unloaded:  # its own schema error was reported already
            return False
        known = ", ".join(sorted(table)) or "none"
        self.err(obj, field, f"{kind} {name!r} does not exist; defined: {known}")
        return False

    # -- cloud ---------------------------------------------------------------------------------------
    def vpcs(self) -> None:
        for vpc in self.res.vpcs.values():
            cidr = vpc.spec.cidr_block
            if not any(cidr.subnet_of(r) for r in defaults.PRIVATE_RANGES):
                self.err(
                    vpc,
                    "spec.cidrBlock",
                    f"{cidr} is outside the ranges a VPC may use: "
                    "10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 (or a subnet of one)",
                )
            elif not 8 <= cidr.prefixlen <= 28:
                self.err(vpc, "spec.cidrBlock", f"a VPC mask must be /8 to /28, got /{cidr.prefixlen}")

    def vswitches(self) -> None:
        seen: dict[str, list[tuple[IPv4Network, str]]] = {}
        for vsw in self.res.vswitches.values():
            if not self.ref_exists(vsw, "spec.vpc", "VPC", vsw.spec.vpc, self.res.vpcs):
                continue
            cidr, vpc = vsw.spec.cidr_block, self.res.vpcs[vsw.spec.vpc]
            if not 16 <= cidr.prefixlen <= 29:
                self.err(vsw, "spec.cidrBlock", f"a VSwitch mask must be /16 to /29, got /{cidr.prefixlen}")
            if not cidr.subnet_of(vpc.spec.cidr_block):
                self.err(
                    vsw, "spec.cidrBlock", f"{cidr} is outside its VPC {vpc.name} ({vpc.spec.cidr_block})"
                )
            for other_cidr, other in seen.get(vsw.spec.vpc, []):
                if cidr.overlaps(other_cidr):
                    self.err(
                        vsw,
                        "spec.cidrBlock",
                        f"{cidr} overlaps VSwitch {other} ({other_cidr}) in VPC {vpc.name}",
                    )
            seen.setdefault(vsw.spec.vpc, []).append((cidr, vsw.name))

    def security_groups(self) -> None:
        for sg in self.res.security_groups.values():
            self.ref_exists(sg, "spec.vpc", "VPC", sg.spec.vpc, self.res.vpcs)
            if sg.is_enterprise and sg.spec.inner_access_policy is not None:
                self.err(
                    sg,
                    "spec.innerAccessPolicy",
                    "enterprise security groups have no intra-group access and "
                    "the policy cannot be set; remove the field or use securityGroupType: normal",
                )
            for i, rule in enumerate(sg.spec.rules):
                self.sg_rule(sg, f"spec.rules[{i}]", rule)

    def sg_rule(self, sg: SecurityGroup, at: str, rule: Any) -> None:
        if not 1 <= rule.priority <= 100:
            self.err(sg, f"{at}.priority", f"{rule.priority} is outside 1-100 (1 is the highest priority)")
        ports = parse_port_range(rule.port_range)
        if rule.ip_protocol in ("tcp", "udp"):
            if ports is None or not 1 <= ports[0] <= ports[1] <= 65535:
                self.err(
                    sg,
                    f"{at}.portRange",
                    f"{rule.port_range!r} is not a {rule.ip_protocol} port range; "
                    "use start/end with 1 <= start <= end <= 65535, e.g. 80/80 or 1/65535",
                )
        elif ports != (-1, -1):
            self.err(
                sg,
                f"{at}.portRange",
                f"{rule.port_range!r} is not allowed for ipProtocol {rule.ip_protocol}; it must be -1/-1",
            )
        inbound = rule.direction == "ingress"
        cidr_field, group_field = (
            ("sourceCidrIp", "sourceGroupId") if inbound else ("destCidrIp", "destGroupId")
        )
        cidr = rule.source_cidr_ip if inbound else rule.dest_cidr_ip
        group = rule.source_group_id if inbound else rule.dest_group_id
        wrong = (
            (rule.dest_cidr_ip, rule.dest_group_id)
            if inbound
            else (rule.source_cidr_ip, rule.source_group_id)
        )
        if any(w is not None for w in wrong):
            wrong_fields = "destCidrIp/destGroupId" if inbound else "sourceCidrIp/sourceGroupId"
            self.err(
                sg,
                at,
                f"an {rule.direction} rule matches its peer with {cidr_field} or {group_field}; "
                f"{wrong_fields} belong to {'egress' if inbound else 'ingress'} rules",
            )
        if cidr is None and group is None:
            self.err(sg, at, f"an {rule.direction} rule needs {cidr_field} or {group_field}")
        if cidr is not None and parse_cidr(cidr) is None:
            self.err(sg, f"{at}.{cidr_field}", f"{cidr!r} is not an IPv4 address or CIDR block")
        if group is not None:
            if sg.is_enterprise:
                self.err(
                    sg,
                    f"{at}.{group_field}",
                    f"enterprise security groups cannot reference security groups; use {cidr_field}",
                )
            elif self.ref_exists(sg, f"{at}.{group_field}", "SecurityGroup", group, self.res.security_groups):
                peer = self.res.security_groups[group]
                if peer.is_enterprise:
                    self.err(
                        sg,
                        f"{at}.{group_field}",
                        f"{group} is an enterprise group; only basic groups can be referenced as peers",
                    )
                if peer.spec.vpc != sg.spec.vpc:
                    self.err(
                        sg,
                        f"{at}.{group_field}",
                        f"{group} is in VPC {peer.spec.vpc}, not {sg.spec.vpc}; "
                        "group references work within one VPC",
                    )
            if cidr is not None:
                self.warn(sg, at, f"both {cidr_field} and {group_field} are set; Alibaba Cloud uses the CIDR")

    def group_set(self, obj: Resource, field: str, names: Iterable[str], vpc: str | None) -> None:
        names = list(names)
        kinds = set()
        for i, name in enumerate(names):
            if not self.ref_exists(obj, f"{field}[{i}]", "SecurityGroup", name, self.res.security_groups):
                continue
            sg = self.res.security_groups[name]
            kinds.add(sg.spec.security_group_type)
            if vpc is not None and sg.spec.vpc != vpc:
                self.err(obj, f"{field}[{i}]", f"SecurityGroup {name} is in VPC {sg.spec.vpc}, not {vpc}")
        if len(kinds) > 1:
            self.err(obj, field, "one ENI cannot join both basic (normal) and enterprise security groups")
        if len(names) > 5:
            self.err(obj, field, f"{len(names)} security groups; an ENI joins at most 5")
        if len(set(names)) != len(names):
            self.err(obj, field, "a security group is listed twice")

    def address_in_vswitch(
        self,
        obj: Resource,
        field: str,
        addr: IPv4Address,
        vswitch: str,
        taken: dict[tuple[str, IPv4Address], str],
    ) -> None:
        vsw = self.res.vswitches[vswitch]
        first, last, gateway = usable_range(vsw.spec.cidr_block)
        if addr not in vsw.spec.cidr_block:
            self.err(obj, field, f"{addr} is outside VSwitch {vswitch} ({vsw.spec.cidr_block})")
        elif addr == gateway:
            self.err(obj, field, f"{addr} is the gateway of VSwitch {vswitch}; usable: {first}-{last}")
        elif not first <= addr <= last:
            self.err(
                obj,
                field,
                f"{addr} is reserved (the first and last three addresses of {vsw.spec.cidr_block}); "
                f"usable: {first}-{last}",
            )
        key = (vsw.spec.vpc, addr)
        if key in taken:
            self.err(obj, field, f"{addr} is already used by {taken[key]}")
        taken[key] = obj.ref

    def ecs_and_slb(self) -> None:
        taken: dict[tuple[str, IPv4Address], str] = {}
        for ecs in self.res.ecs_instances.values():
            self.ecs(ecs, taken)
        for lb in self.res.load_balancers.values():
            self.load_balancer(lb, taken)

    def ecs(self, ecs: ECSInstance, taken: dict[tuple[str, IPv4Address], str]) -> None:
        spec = ecs.spec
        vpc = None
        if self.ref_exists(ecs, "spec.vswitch", "VSwitch", spec.vswitch, self.res.vswitches):
            vpc = self.res.vswitches[spec.vswitch].spec.vpc
            if spec.private_ip_address is not None:
                self.address_in_vswitch(
                    ecs, "spec.privateIpAddress", spec.private_ip_address, spec.vswitch, taken
                )
        self.group_set(ecs, "spec.securityGroups", spec.security_groups, vpc)
        self.instance_type(ecs, "spec.instanceType", spec.instance_type)
        seen: set[tuple[int, str]] = set()
        for i, p in enumerate(spec.ports):
            if not 1 <= p.port <= 65535:
                self.err(ecs, f"spec.ports[{i}].port", f"{p.port} is not a port; use 1-65535")
            if (p.port, p.protocol) in seen:
                self.err(ecs, f"spec.ports[{i}]", f"{p.port}/{p.protocol} is listed twice")
            seen.add((p.port, p.protocol))
        if spec.command is not None and not spec.command:
            self.err(ecs, "spec.command", "an empty command; leave it out to use the built-in server")

    def instance_type(self, obj: Resource, field: str, name: str) -> None:
        if name not in defaults.INSTANCE_TYPES:
            known = ", ".join(sorted(defaults.INSTANCE_TYPES))
            t = defaults.DEFAULT_INSTANCE_TYPE
            self.warn(
                obj,
                field,
                f"unknown instance type {name!r}; using the ENI quota of {t.name} "
                f"({t.enis} ENIs x {t.ips_per_eni} IPs); known: {known}",
            )

    def clusters(self) -> None:
        pod_cidrs: list[tuple[IPv4Network, str]] = []
        for cluster in self.res.clusters.values():
            spec = cluster.spec
            if not self.ref_exists(cluster, "spec.vpc", "VPC", spec.vpc, self.res.vpcs):
                continue
            vpc = self.res.vpcs[spec.vpc]
            vpc_cidr = vpc.spec.cidr_block
            if spec.service_cidr.overlaps(vpc_cidr):
                self.err(
                    cluster,
                    "spec.serviceCidr",
                    f"{spec.service_cidr} overlaps VPC {vpc.name} ({vpc_cidr}); "
                    "ACK requires service, pod and VPC ranges to be disjoint",
                )
            self.group_set(cluster, "spec.securityGroups", spec.security_groups, spec.vpc)
            zones_with_pod_vsw: set[str] = set()
            for i, name in enumerate(spec.pod_vswitches):
                if self.ref_exists(cluster, f"spec.podVSwitches[{i}]", "VSwitch", name, self.res.vswitches):
                    vsw = self.res.vswitches[name]
                    if vsw.spec.vpc != spec.vpc:
                        self.err(
                            cluster,
                            f"spec.podVSwitches[{i}]",
                            f"VSwitch {name} is in VPC {vsw.spec.vpc}, not {spec.vpc}",
                        )
                    zones_with_pod_vsw.add(vsw.spec.zone_id)
            if spec.network_plugin == "terway":
                if not spec.pod_vswitches:
                    self.err(
                        cluster,
                        "spec.podVSwitches",
                        "a Terway cluster needs pod VSwitches for pod ENIs (one per zone of its nodes)",
                    )
                if spec.pod_cidr is not None:
                    self.warn(
                        cluster, "spec.podCidr", "Terway pods take VPC addresses; podCidr is for flannel"
                    )
            else:
                pod_cidr = spec.pod_cidr or defaults.FLANNEL_POD_CIDR
                if pod_cidr.overlaps(vpc_cidr):
                    self.err(cluster, "spec.podCidr", f"{pod_cidr} overlaps VPC {vpc.name} ({vpc_cidr})")
                if pod_cidr.overlaps(spec.service_cidr):
                    self.err(
                        cluster, "spec.podCidr", f"{pod_cidr} overlaps the service CIDR {spec.service_cidr}"
                    )
                for other_cidr, other in pod_cidrs:
                    if pod_cidr.overlaps(other_cidr):
                        self.err(
                            cluster,
                            "spec.podCidr",
                            f"{pod_cidr} overlaps the pod CIDR of cluster {other}; "
                            "pod CIDRs may not overlap across clusters",
                        )
                pod_cidrs.append((pod_cidr, cluster.name))
                if not pod_cidr.prefixlen < spec.node_cidr_mask <= 28:
                    self.err(
                        cluster,
                        "spec.nodeCidrMask",
                        f"/{spec.node_cidr_mask} must be longer than the pod CIDR "
                        f"(/{pod_cidr.prefixlen}) and at most /28",
                    )
                else:
                    nodes = sum(p.count for p in spec.node_pools)
                    room = 2 ** (spec.node_cidr_mask - pod_cidr.prefixlen)
                    if nodes > room:
                        self.err(
                            cluster,
                            "spec.nodePools",
                            f"{nodes} nodes but pod CIDR {pod_cidr} holds only {room} "
                            f"node CIDRs of /{spec.node_cidr_mask}",
                        )
                if spec.network_policy:
                    self.warn(
                        cluster,
                        "spec.networkPolicy",
                        "Flannel clusters on ACK have no NetworkPolicy; "
                        "policies in this cluster are not enforced",
                    )
            pool_names: set[str] = set()
            for i, pool in enumerate(spec.node_pools):
                at = f"spec.nodePools[{i}]"
                if pool.name in pool_names:
                    self.err(cluster, f"{at}.name", f"node pool {pool.name!r} is defined twice")
                pool_names.add(pool.name)
                self.instance_type(cluster, f"{at}.instanceType", pool.instance_type)
                if pool.eni_mode == "exclusive" and spec.network_plugin != "terway":
                    self.err(
                        cluster, f"{at}.eniMode", "exclusive ENI mode is a Terway mode; flannel has none"
                    )
                for j, name in enumerate(pool.vswitches):
                    if not self.ref_exists(
                        cluster, f"{at}.vswitches[{j}]", "VSwitch", name, self.res.vswitches
                    ):
                        continue
                    vsw = self.res.vswitches[name]
                    if vsw.spec.vpc != spec.vpc:
                        self.err(
                            cluster,
                            f"{at}.vswitches[{j}]",
                            f"VSwitch {name} is in VPC {vsw.spec.vpc}, not {spec.vpc}",
                        )
                    elif (
                        spec.network_plugin == "terway"
                        and spec.pod_vswitches
                        and vsw.spec.zone_id not in zones_with_pod_vsw
                    ):
                        self.err(
                            cluster,
                            f"{at}.vswitches[{j}]",
                            f"zone {vsw.spec.zone_id} of VSwitch {name} has no "
                            "pod VSwitch; Terway takes pod addresses from a pod VSwitch in the node's zone",
                        )
                for key, value in pool.labels.items():
                    self.label(cluster, f"{at}.labels", key, value)

    def load_balancer(self, lb: LoadBalancer, taken: dict[tuple[str, IPv4Address], str]) -> None:
        spec = lb.spec
        if spec.address_type == "intranet":
            if spec.vswitch is None:
                self.err(
                    lb, "spec.vswitch", "an intranet load balancer needs the VSwitch its address comes from"
                )
            elif (
                self.ref_exists(lb, "spec.vswitch", "VSwitch", spec.vswitch, self.res.vswitches)
                and spec.address
            ):
                self.address_in_vswitch(lb, "spec.address", spec.address, spec.vswitch, taken)
        else:
            if spec.vswitch is not None:
                self.err(
                    lb,
                    "spec.vswitch",
                    "an internet load balancer has a public address; vswitch is for intranet",
                )
            if spec.address is not None and spec.address not in INTERNET_VIP_RANGE:
                self.err(
                    lb,
                    "spec.address",
                    f"{spec.address} is not in the emulated Internet's VIP range {INTERNET_VIP_RANGE}",
                )
        for i, b in enumerate(spec.backend_servers):
            self.ref_exists(lb, f"spec.backendServers[{i}].ecs", "ECSInstance", b.ecs, self.res.ecs_instances)
            self.weight(lb, f"spec.backendServers[{i}].weight", b.weight)
        groups: dict[str, str] = {}
        all_groups: list[tuple[str, str, int, VServerGroup | MasterSlaveServerGroup]] = [
            *(("vserver", "vServerGroups", i, g) for i, g in enumerate(spec.v_server_groups)),
            *(
                ("masterslave", "masterSlaveServerGroups", i, g)
                for i, g in enumerate(spec.master_slave_server_groups)
            ),
        ]
        for kind, field, i, group in all_groups:
            at = f"spec.{field}[{i}]"
            if group.name in groups:
                self.err(lb, f"{at}.name", f"server group {group.name!r} is defined twice")
            groups[group.name] = kind
            servers: list[GroupServer] = list(group.servers)
            for j, server in enumerate(servers):
                sat = f"{at}.servers[{j}]"
                if (server.ecs is None) == (server.eni is None):
                    self.err(lb, sat, "a server is either an ECS instance (ecs) or an ENI address (eni)")
                self.ref_exists(lb, f"{sat}.ecs", "ECSInstance", server.ecs, self.res.ecs_instances)
                self.port(lb, f"{sat}.port", server.port)
                self.weight(lb, f"{sat}.weight", server.weight)
        for i, ms_group in enumerate(spec.master_slave_server_groups):
            types = sorted(s.server_type for s in ms_group.servers)
            if types != ["Master", "Slave"]:
                self.err(
                    lb,
                    f"spec.masterSlaveServerGroups[{i}].servers",
                    "a primary/secondary group has exactly "
                    f"two servers, one Master and one Slave; got {len(types)}",
                )
        used: dict[tuple[str, int], int] = {}
        for i, listener in enumerate(spec.listeners):
            self.listener(lb, f"spec.listeners[{i}]", listener, groups, used, i)

    def listener(
        self,
        lb: LoadBalancer,
        at: str,
        li: Listener,
        groups: Mapping[str, str],
        used: dict[tuple[str, int], int],
        index: int,
    ) -> None:
        self.port(lb, f"{at}.listenerPort", li.listener_port)
        family = "udp" if li.protocol == "udp" else "tcp"
        if (family, li.listener_port) in used:
            self.err(
                lb,
                f"{at}.listenerPort",
                f"port {li.listener_port}/{family} is already taken by listener "
                f"{used[(family, li.listener_port)]}",
            )
        used[(family, li.listener_port)] = index
        if li.protocol == "udp" and li.listener_port in (250, 4789, 4790):
            self.err(lb, f"{at}.listenerPort", "UDP listeners cannot use ports 250, 4789 or 4790")
        chosen = [
            f
            for f, v in (
                ("backendServerPort", li.backend_server_port),
                ("vServerGroup", li.v_server_group),
                ("masterSlaveServerGroup", li.master_slave_server_group),
            )
            if v is not None
        ]
        if len(chosen) != 1:
            self.err(
                lb,
                at,
                "a listener forwards to exactly one of: backendServerPort (the default server group), "
                f"vServerGroup or masterSlaveServerGroup; got {', '.join(chosen) or 'none'}",
            )
        if li.backend_server_port is not None:
            self.port(lb, f"{at}.backendServerPort", li.backend_server_port)
        for field, name, kind in (
            ("vServerGroup", li.v_server_group, "vserver"),
            ("masterSlaveServerGroup", li.master_slave_server_group, "masterslave"),
        ):
            if name is not None and groups.get(name) != kind:
                self.err(lb, f"{at}.{field}", f"no {field} named {name!r} on this load balancer")
        layer7 = li.protocol in ("http", "https")
        if layer7 and li.master_slave_server_group is not None:
            self.err(
                lb,
                f"{at}.masterSlaveServerGroup",
                "primary/secondary groups work with tcp and udp listeners only",
            )
        if layer7 and li.scheduler in ("sch", "tch"):
            self.err(
                lb,
                f"{at}.scheduler",
                f"{li.scheduler} is for tcp and udp listeners; http(s) allow wrr, wlc, rr",
            )
        if not 0 <= li.persistence_timeout <= 3600:
            self.err(lb, f"{at}.persistenceTimeout", f"{li.persistence_timeout} is outside 0-3600 seconds")
        if li.protocol == "https":
            if li.certificate is None:
                self.err(
                    lb, f"{at}.certificate", "an https listener needs a certificate: {secret: namespace/name}"
                )
            else:
                self.certificate(lb, f"{at}.certificate.secret", li.certificate.secret)
        elif li.certificate is not None:
            self.err(lb, f"{at}.certificate", "only https listeners take a certificate")
        hc = li.health_check
        if hc is not None:
            if layer7 and hc.type != "http":
                self.err(lb, f"{at}.healthCheck.type", "layer-7 listeners check health over http only")
            if li.protocol == "tcp" and hc.type == "udp":
                self.err(lb, f"{at}.healthCheck.type", "tcp listeners check health with tcp or http")
            for field, value, low, high in (
                ("healthyThreshold", hc.healthy_threshold, 2, 10),
                ("unhealthyThreshold", hc.unhealthy_threshold, 2, 10),
                ("interval", hc.interval, 1, 50),
                ("connectTimeout", hc.connect_timeout, 1, 300),
            ):
                if not low <= value <= high:
                    self.err(lb, f"{at}.healthCheck.{field}", f"{value} is outside {low}-{high}")
        if li.acl is not None:
            for j, entry in enumerate(li.acl.entries):
                if parse_cidr(entry) is None:
                    self.err(lb, f"{at}.acl.entries[{j}]", f"{entry!r} is not an IPv4 address or CIDR block")
        if li.connection_rate_limit is not None and li.connection_rate_limit < 1:
            self.err(
                lb, f"{at}.connectionRateLimit", "a cap on new connections per second must be at least 1"
            )
        self.sticky_session(lb, at, li)

    def sticky_session(self, lb: LoadBalancer, at: str, li: Listener) -> None:
        """StickySession of CreateLoadBalancerHTTP(S)Listener: StickySessionType required when on;
        CookieTimeout (1-86400 s) with insert only, Cookie (the backend's cookie name) with server only."""
        on = li.sticky_session == "on"
        if on and li.protocol not in ("http", "https"):
            self.err(
                lb,
                f"{at}.stickySession",
                "sticky sessions (cookies) are for http and https listeners; "
                "tcp and udp keep a client by persistenceTimeout",
            )
            return
        if not on:
            for field, value in (
                ("stickySessionType", li.sticky_session_type),
                ("cookieTimeout", li.cookie_timeout),
                ("cookie", li.cookie),
            ):
                if value is not None:
                    self.err(lb, f"{at}.{field}", "only with stickySession: on")
            return
        kind = li.sticky_session_type
        if kind is None:
            self.err(
                lb,
                f"{at}.stickySessionType",
                "required with stickySession: on: insert (the CLB inserts a cookie) or server "
                "(it rewrites the backend's cookie)",
            )
        if kind == "insert":
            if li.cookie_timeout is None:
                self.err(
                    lb, f"{at}.cookieTimeout", "stickySessionType insert needs a cookieTimeout (1-86400 s)"
                )
            elif not 1 <= li.cookie_timeout <= 86400:
                self.err(lb, f"{at}.cookieTimeout", f"{li.cookie_timeout} is outside 1-86400 seconds")
        elif li.cookie_timeout is not None:
            self.err(lb, f"{at}.cookieTimeout", "only stickySessionType insert takes a cookieTimeout")
        if kind == "server":
            if li.cookie is None:
                self.err(
                    lb, f"{at}.cookie", "stickySessionType server needs the name of the backend's cookie"
                )
            else:
                problem = cookie_name_problem(li.cookie)
                if problem is not None:
                    self.err(lb, f"{at}.cookie", problem)
        elif li.cookie is not None:
            self.err(lb, f"{at}.cookie", "only stickySessionType server takes a cookie name")

    def certificate(self, obj: Resource, field: str, ref: str) -> None:
        ns, _, name = ref.partition("/")
        if not name:
            self.err(obj, field, f"{ref!r}: name the Secret as namespace/name")
            return
        for objs in self.res.kube.values():
            secret = objs.secrets.get((ns, name))
            if secret is not None:
                problem = tls_secret_problem(secret.type, secret.data, secret.string_data)
                if problem:
                    self.err(obj, field, f"Secret {ref} is not a certificate: {problem}")
                return
        self.err(obj, field, f"Secret {ref} does not exist")

    def weight(self, obj: Resource, field: str, value: int) -> None:
        if not 0 <= value <= 100:
            self.err(obj, field, f"weight {value} is outside 0-100 (0 takes no new connections)")

    def port(self, obj: Resource, field: str, value: int) -> None:
        if not 1 <= value <= 65535:
            self.err(obj, field, f"{value} is not a port; use 1-65535")

    # -- Kubernetes ----------------------------------------------------------------------------------
    def label(self, obj: Resource, field: str, key: str, value: str) -> None:
        problem = validate_label_key(key)
        if problem:
            self.err(obj, f"{field}[{key}]", f"invalid label key: {problem}")
        problem = validate_label_value(value)
        if problem:
            self.err(obj, f"{field}[{key}]", f"invalid label value {value!r}: {problem}")

    def metadata(self, obj: Any) -> None:
        pattern = _DNS1123_SUBDOMAIN if obj.kind_name not in ("Namespace", "Service") else _DNS1123_LABEL
        limit = 253 if pattern is _DNS1123_SUBDOMAIN else 63
        if not pattern.match(obj.name) or len(obj.name) > limit:
            self.err(
                obj,
                "metadata.name",
                f"{obj.name!r} is not a valid name: lowercase letters, digits and '-'"
                f"{', ' if limit == 253 else ''}{'and .' if limit == 253 else ''}, starting and ending "
                f"alphanumeric, at most {limit} characters",
            )
        for key, value in obj.metadata.labels.items():
            self.label(obj, "metadata.labels", key, value)

    def selector(self, obj: Resource, field: str, selector: Mapping[str, Any] | None) -> None:
        for path, message in validate_k8s_selector(selector):
            self.err(obj, f"{field}.{path}" if path else field, message)

    def pod_spec(self, obj: Resource, at: str, spec: PodSpec) -> None:
        names: set[str] = set()
        port_names: set[str] = set()
        for i, c in enumerate(spec.containers):
            if c.name in names:
                self.err(obj, f"{at}.containers[{i}].name", f"container name {c.name!r} is used twice")
            names.add(c.name)
            for j, p in enumerate(c.ports):
                self.port(obj, f"{at}.containers[{i}].ports[{j}].containerPort", p.container_port)
                if p.name is not None:
                    if len(p.name) > 15 or not _IANA_SVC_NAME.match(p.name):
                        self.err(
                            obj,
                            f"{at}.containers[{i}].ports[{j}].name",
                            f"{p.name!r} is not a port name: at "
                            "most 15 lowercase letters, digits and '-', with at least one letter",
                        )
                    if p.name in port_names:
                        self.err(
                            obj,
                            f"{at}.containers[{i}].ports[{j}].name",
                            f"port name {p.name!r} is used twice",
                        )
                    port_names.add(p.name)
        if spec.host_network:
            self.warn(
                obj,
                f"{at}.hostNetwork",
                "the pod shares its node's network namespace and address: its container ports are "
                "served on the node's IP and no network policy applies to it",
            )

    def kube(self, cluster: str, objs: KubeObjects) -> None:
        everything: list[Any] = [
            *objs.namespaces.values(),
            *objs.pods.values(),
            *objs.deployments.values(),
            *objs.services.values(),
            *objs.secrets.values(),
            *objs.ingresses.values(),
            *objs.network_policies.values(),
            *objs.endpoint_slices.values(),
            *objs.ingress_classes.values(),
        ]
        for obj in everything:
            if obj.origin is not None:
                self.metadata(obj)
        for pod in objs.pods.values():
            self.pod_spec(pod, "spec", pod.spec)
        for dep in objs.deployments.values():
            self.deployment(dep)
        self.services(cluster, objs)
        for secret in objs.secrets.values():
            if secret.type == "kubernetes.io/tls":
                problem = tls_secret_problem(secret.type, secret.data, secret.string_data)
                if problem:
                    self.err(secret, "data", problem)
        for ing in objs.ingresses.values():
            self.ingress(objs, ing)
        for policy in objs.network_policies.values():
            self.network_policy(objs, policy)
        for cp in objs.calico_policies.values():
            self.calico_policy(cp, "spec", cp.spec.selector, namespaced=True)
            self.calico_policy_selects(objs, cp)
        for gp in objs.global_policies.values():
            self.calico_policy(gp, "spec", gp.spec.selector, namespaced=False)
            self.calico_selector(gp, "spec.namespaceSelector", gp.spec.namespace_selector)
            self.calico_policy_selects(objs, gp)
        net_sets: list[NetworkSet | GlobalNetworkSet] = [
            *objs.network_sets.values(),
            *objs.global_network_sets.values(),
        ]
        for ns_set in net_sets:
            for i, net in enumerate(ns_set.spec.nets):
                if parse_cidr(net) is None:
                    self.err(ns_set, f"spec.nets[{i}]", f"{net!r} is not an IPv4 address or CIDR block")

    def deployment(self, dep: Deployment) -> None:
        sel = dep.spec.selector.as_dict()
        self.selector(dep, "spec.selector", sel)
        self.pod_spec(dep, "spec.template.spec", dep.spec.template.spec)
        for key, value in dep.spec.template.metadata.labels.items():
            self.label(dep, "spec.template.metadata.labels", key, value)
        if not validate_k8s_selector(sel):
            selector = K8sSelector.from_dict(sel)
            if selector.is_empty:
                self.err(
                    dep,
                    "spec.selector",
                    "an empty selector would adopt every pod; select the template's labels",
                )
            elif not selector.matches(dep.spec.template.metadata.labels):
                self.err(
                    dep,
                    "spec.selector",
                    f"selector does not match template labels {dep.spec.template.metadata.labels}",
                )

    def services(self, cluster_name: str, objs: KubeObjects) -> None:
        cluster = self.res.clusters[cluster_name]
        cidr = cluster.spec.service_cidr
        dns_ip = cidr.network_address + defaults.CLUSTER_DNS_OFFSET
        cluster_ips: dict[IPv4Address, str] = {cidr.network_address + 1: "the kubernetes Service"}
        # One NodePort range for every protocol (the API server's single allocator): another Service
        # may not take a port in use for any protocol; one Service may use it for TCP and UDP alike.
        node_ports: dict[int, tuple[str, set[str]]] = {}
        low, high = defaults.NODE_PORT_RANGE
        for (ns, name), svc in sorted(objs.services.items()):
            spec = svc.spec
            if spec.cluster_ip not in (None, "", "None"):
                try:
                    ip = ip_address(spec.cluster_ip)
                except ValueError:
                    self.err(svc, "spec.clusterIP", f"{spec.cluster_ip!r} is not an IPv4 address")
                else:
                    if not isinstance(ip, IPv4Address) or ip not in cidr:
                        self.err(
                            svc,
                            "spec.clusterIP",
                            f"{ip} is outside the service CIDR {cidr} of cluster {cluster_name}",
                        )
                    elif ip in (cidr.network_address, cidr.broadcast_address):
                        self.err(svc, "spec.clusterIP", f"{ip} is the network or broadcast address of {cidr}")
                    elif ip == dns_ip and (ns, name) != ("kube-system", "kube-dns"):
                        self.err(
                            svc, "spec.clusterIP", f"{ip} belongs to kube-system/kube-dns (the .10 address)"
                        )
                    elif ip in cluster_ips:
                        self.err(svc, "spec.clusterIP", f"{ip} is already taken by {cluster_ips[ip]}")
                    else:
                        cluster_ips[ip] = f"Service {ns}/{name}"
            if spec.cluster_ip == "None" and spec.type != "ClusterIP":
                self.err(svc, "spec.clusterIP", f"headless (None) is for ClusterIP Services, not {spec.type}")
            if spec.type == "ExternalName" and not spec.external_name:
                self.err(svc, "spec.externalName", "an ExternalName Service needs externalName")
            if spec.type != "ExternalName" and not spec.ports and spec.cluster_ip != "None":
                self.err(svc, "spec.ports", "a Service needs at least one port")
            seen: set[tuple[int, str]] = set()
            names: set[str] = set()
            for i, p in enumerate(spec.ports):
                at = f"spec.ports[{i}]"
                self.port(svc, f"{at}.port", p.port)
                if (p.port, p.protocol) in seen:
                    self.err(svc, f"{at}.port", f"{p.port}/{p.protocol} is listed twice")
                seen.add((p.port, p.protocol))
                if len(spec.ports) > 1 and not p.name:
                    self.err(svc, f"{at}.name", "every port of a multi-port Service needs a name")
                if p.name:
                    if p.name in names:
                        self.err(svc, f"{at}.name", f"port name {p.name!r} is used twice")
                    names.add(p.name)
                if isinstance(p.target_port, int):
                    self.port(svc, f"{at}.targetPort", p.target_port)
                elif isinstance(p.target_port, str):
                    self.named_target_port(objs, svc, f"{at}.targetPort", p.target_port, p.protocol)
                if p.node_port is not None:
                    if spec.type not in ("NodePort", "LoadBalancer"):
                        self.err(
                            svc,
                            f"{at}.nodePort",
                            f"nodePort is for NodePort and LoadBalancer Services, not {spec.type}",
                        )
                    elif not low <= p.node_port <= high:
                        self.err(
                            svc, f"{at}.nodePort", f"{p.node_port} is outside the NodePort range {low}-{high}"
                        )
                    elif (held := node_ports.get(p.node_port)) is not None and (
                        held[0] != f"Service {ns}/{name}" or p.protocol in held[1]
                    ):
                        self.err(
                            svc,
                            f"{at}.nodePort",
                            f"{p.node_port}/{p.protocol} is already taken by {held[0]}"
                            + ("" if p.protocol in held[1] else f" ({'/'.join(sorted(held[1]))})"),
                        )
                    else:
                        node_ports.setdefault(p.node_port, (f"Service {ns}/{name}", set()))[1].add(p.protocol)
            if spec.session_affinity_config is not None:
                timeout = spec.session_affinity_config.client_ip.timeout_seconds
                if not 1 <= timeout <= 86400:
                    self.err(
                        svc,
                        "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                        f"{timeout} is outside 1-86400 seconds",
                    )

    def named_target_port(
        self, objs: KubeObjects, svc: Service, field: str, name: str, protocol: str
    ) -> None:
        """A name no selected pod (or pod template) declares is a mistake; a selector that matches nothing
        is not (the Service is valid and rejects, as kube-proxy does it)."""
        selector = svc.spec.selector
        if not selector:
            return
        specs = [
            spec for labels, spec in self.workloads(objs, svc.namespace) if selector.items() <= labels.items()
        ]
        if not specs:
            return
        for spec in specs:
            for c in spec.containers:
                if any(p.name == name and p.protocol == protocol for p in c.ports):
                    return
        self.err(svc, field, f"no pod this Service selects has a {protocol} container port named {name!r}")

    def ingress(self, objs: KubeObjects, ing: Any) -> None:
        spec = ing.spec
        if (
            spec.ingress_class_name
            and spec.ingress_class_name not in objs.ingress_classes
            and spec.ingress_class_name != "nginx"
        ):
            self.warn(
                ing,
                "spec.ingressClassName",
                f"IngressClass {spec.ingress_class_name!r} does not exist; "
                "no controller will serve this Ingress",
            )
        for i, tls in enumerate(spec.tls):
            if tls.secret_name and (ing.namespace, tls.secret_name) not in objs.secrets:
                self.warn(
                    ing,
                    f"spec.tls[{i}].secretName",
                    f"Secret {ing.namespace}/{tls.secret_name} does not exist; "
                    "the NGINX Ingress controller leaves this Ingress out (acknet get ingress)",
                )
        # use-regex or a rewrite-target make paths regular expressions (ingress-nginx, k8s.md 6).
        notes = ing.metadata.annotations
        regex_paths = (
            notes.get("nginx.ingress.kubernetes.io/use-regex") == "true"
            or "nginx.ingress.kubernetes.io/rewrite-target" in notes
        )
        backends: list[tuple[str, Any]] = []
        if spec.default_backend is not None:
            backends.append(("spec.defaultBackend", spec.default_backend))
        for i, rule in enumerate(spec.rules):
            for j, path in enumerate(rule.http.paths if rule.http else []):
                backends.append((f"spec.rules[{i}].http.paths[{j}].backend", path.backend))
                if path.path_type in ("Exact", "Prefix") and not path.path.startswith("/"):
                    self.err(
                        ing, f"spec.rules[{i}].http.paths[{j}].path", f"{path.path!r} must start with '/'"
                    )
                elif regex_paths:
                    try:
                        re.compile(path.path, re.IGNORECASE)
                    except re.error as exc:
                        self.warn(
                            ing,
                            f"spec.rules[{i}].http.paths[{j}].path",
                            f"{path.path!r} is not a regular expression ({exc}); "
                            "the NGINX Ingress controller leaves this Ingress out",
                        )
        for field, backend in backends:
            if backend.service is None:
                continue
            svc = objs.services.get((ing.namespace, backend.service.name))
            if svc is None:
                self.warn(
                    ing,
                    f"{field}.service.name",
                    f"Service {ing.namespace}/{backend.service.name} does not exist; "
                    "the NGINX Ingress controller leaves this Ingress out (acknet get ingress)",
                )
                continue
            port = backend.service.port
            if (port.number is None) == (port.name is None):
                self.err(ing, f"{field}.service.port", "give the port as number or name, one of them")
            elif not any(p.port == port.number or (p.name and p.name == port.name) for p in svc.spec.ports):
                self.warn(
                    ing,
                    f"{field}.service.port",
                    f"Service {svc.namespace}/{svc.name} has no port {port.number or port.name}",
                )

    def network_policy(self, objs: KubeObjects, policy: NetworkPolicy) -> None:
        spec = policy.spec
        self.selector(policy, "spec.podSelector", spec.pod_selector.as_dict())
        if spec.ingress and spec.policy_types and "Ingress" not in spec.policy_types:
            self.warn(policy, "spec.ingress", "ingress rules are ignored: policyTypes does not list Ingress")
        if spec.egress and spec.policy_types and "Egress" not in spec.policy_types:
            self.warn(policy, "spec.egress", "egress rules are ignored: policyTypes does not list Egress")
        rules: list[tuple[str, list[NetworkPolicyPeer], list[NetworkPolicyPort]]] = [
            *((f"spec.ingress[{i}]", r.from_ or [], r.ports or []) for i, r in enumerate(spec.ingress or [])),
            *((f"spec.egress[{i}]", r.to or [], r.ports or []) for i, r in enumerate(spec.egress or [])),
        ]
        for at, peers, ports in rules:
            peer_field = "from" if at.startswith("spec.ingress") else "to"
            for j, peer in enumerate(peers):
                self.policy_peer(policy, f"{at}.{peer_field}[{j}]", peer)
            for j, port in enumerate(ports):
                self.policy_port(policy, f"{at}.ports[{j}]", port)
        if not validate_k8s_selector(spec.pod_selector.as_dict()):
            selector = K8sSelector.from_dict(spec.pod_selector.as_dict())
            if not any(selector.matches(labels) for labels, _ in self.workloads(objs, policy.namespace)):
                self.warn(policy, "spec.podSelector", f"selects no pod in namespace {policy.namespace}")

    def policy_peer(self, policy: NetworkPolicy, at: str, peer: NetworkPolicyPeer) -> None:
        if peer.ip_block is not None:
            if peer.pod_selector is not None or peer.namespace_selector is not None:
                self.err(
                    policy, at, "ipBlock cannot be combined with podSelector or namespaceSelector in one peer"
                )
            cidr = parse_cidr(peer.ip_block.cidr)
            if cidr is None:
                self.err(policy, f"{at}.ipBlock.cidr", f"{peer.ip_block.cidr!r} is not an IPv4 CIDR block")
            for k, exc in enumerate(peer.ip_block.except_):
                inner = parse_cidr(exc)
                if inner is None:
                    self.err(policy, f"{at}.ipBlock.except[{k}]", f"{exc!r} is not an IPv4 CIDR block")
                elif cidr is not None and not inner.subnet_of(cidr):
                    self.err(policy, f"{at}.ipBlock.except[{k}]", f"{exc} is not inside the block {cidr}")
        elif peer.pod_selector is None and peer.namespace_selector is None:
            self.err(policy, at, "a peer needs podSelector, namespaceSelector or ipBlock")
        if peer.pod_selector is not None:
            self.selector(policy, f"{at}.podSelector", peer.pod_selector.as_dict())
        if peer.namespace_selector is not None:
            self.selector(policy, f"{at}.namespaceSelector", peer.namespace_selector.as_dict())

    def policy_port(self, policy: NetworkPolicy, at: str, port: NetworkPolicyPort) -> None:
        if isinstance(port.port, int):
            self.port(policy, f"{at}.port", port.port)
        elif isinstance(port.port, str) and (len(port.port) > 15 or not _IANA_SVC_NAME.match(port.port)):
            self.err(policy, f"{at}.port", f"{port.port!r} is neither a port number nor a valid port name")
        if port.end_port is not None:
            if not isinstance(port.port, int):
                self.err(policy, f"{at}.endPort", "endPort needs a numeric port to start the range")
            elif port.end_port < port.port:
                self.err(policy, f"{at}.endPort", f"endPort {port.end_port} is below port {port.port}")
            elif port.end_port > 65535:
                self.err(policy, f"{at}.endPort", f"{port.end_port} is not a port; use up to 65535")

    def calico_selector(self, obj: Resource, field: str, text: str) -> None:
        try:
            parse_calico_selector(text)
        except SelectorError as exc:
            self.err(obj, field, f"invalid selector {text!r}: {exc}")

    def calico_policy(
        self, policy: CalicoNetworkPolicy | GlobalNetworkPolicy, at: str, selector: str, namespaced: bool
    ) -> None:
        self.calico_selector(policy, f"{at}.selector", selector)
        self.calico_selector(policy, f"{at}.serviceAccountSelector", policy.spec.service_account_selector)
        for direction, rules in (("ingress", policy.spec.ingress), ("egress", policy.spec.egress)):
            for i, rule in enumerate(rules):
                self.calico_rule(policy, f"{at}.{direction}[{i}]", rule)

    def calico_policy_selects(
        self, objs: KubeObjects, policy: CalicoNetworkPolicy | GlobalNetworkPolicy
    ) -> None:
        """Warns when a Calico policy selects no pod: accepted (it may be meant for pods to come), but
        most often a typo in a label. Pods are matched as Calico workload endpoints: their labels plus
        ``projectcalico.org/namespace``, ``/orchestrator`` and ``/serviceaccount``; a global policy's
        namespaceSelector is matched on the namespace's labels (``all()`` is any namespace). A
        serviceAccountSelector matches ServiceAccount labels, which the files do not carry: no warning."""
        spec = policy.spec
        if spec.service_account_selector:
            return
        try:
            selector = parse_calico_selector(spec.selector or "all()")
            ns_text = policy.spec.namespace_selector if isinstance(policy, GlobalNetworkPolicy) else ""
            ns_selector = parse_calico_selector(ns_text) if ns_text else None
        except SelectorError:
            return  # reported as an error by calico_policy
        self.workloads(objs, "")
        index = self._workloads[id(objs)]
        namespaces = [policy.namespace] if isinstance(policy, CalicoNetworkPolicy) else sorted(index)
        for ns in namespaces:
            if ns_selector is not None:
                ns_obj = objs.namespaces.get(ns)
                ns_labels = {
                    **(ns_obj.labels if ns_obj is not None else {defaults.NAMESPACE_NAME_LABEL: ns}),
                    "projectcalico.org/name": ns,
                }
                if not ns_selector.matches(ns_labels):
                    continue
            for labels, pod_spec in index.get(ns, []):
                endpoint = {
                    **labels,
                    "projectcalico.org/namespace": ns,
                    "projectcalico.org/orchestrator": "k8s",
                    "projectcalico.org/serviceaccount": pod_spec.service_account_name,
                }
                if selector.matches(endpoint):
                    return
        where = (
            f"in namespace {policy.namespace}"
            if isinstance(policy, CalicoNetworkPolicy)
            else "in any namespace"
        )
        self.warn(policy, "spec.selector", f"selects no pod {where}")

    def calico_rule(self, policy: Resource, at: str, rule: Rule) -> None:
        protocol = None
        for field, value in (("protocol", rule.protocol), ("notProtocol", rule.not_protocol)):
            if value is None:
                continue
            if isinstance(value, int):
                if not 1 <= value <= 255:
                    self.err(policy, f"{at}.{field}", f"protocol number {value} is outside 1-255")
            elif value.upper() not in _CALICO_PROTOCOLS:
                self.err(
                    policy,
                    f"{at}.{field}",
                    f"unknown protocol {value!r}; allowed: TCP, UDP, ICMP, ICMPv6, "
                    "SCTP, UDPLite or a number 1-255",
                )
            if field == "protocol":
                protocol = str(value).upper()
        for field, icmp in (("icmp", rule.icmp), ("notICMP", rule.not_icmp)):
            if icmp is None:
                continue
            if icmp.code is not None and icmp.type is None:
                self.err(policy, f"{at}.{field}.code", "an ICMP code needs a type")
            if icmp.type is not None and not 0 <= icmp.type <= 254:
                self.err(policy, f"{at}.{field}.type", f"{icmp.type} is outside 0-254")
            if icmp.code is not None and not 0 <= icmp.code <= 255:
                self.err(policy, f"{at}.{field}.code", f"{icmp.code} is outside 0-255")
            if protocol not in ("ICMP", "ICMPV6", "1", "58"):
                self.err(policy, f"{at}.{field}", "icmp matching needs protocol ICMP or ICMPv6")
        for side in ("source", "destination"):
            self.entity_rule(policy, f"{at}.{side}", getattr(rule, side), protocol)

    def entity_rule(self, policy: Resource, at: str, entity: EntityRule, protocol: str | None) -> None:
        for field in ("selector", "notSelector", "namespaceSelector"):
            attr = {
                "selector": "selector",
                "notSelector": "not_selector",
                "namespaceSelector": "namespace_selector",
            }
            self.calico_selector(policy, f"{at}.{field}", getattr(entity, attr[field]))
        if entity.service_accounts is not None:
            self.calico_selector(policy, f"{at}.serviceAccounts.selector", entity.service_accounts.selector)
        for field, nets in (("nets", entity.nets), ("notNets", entity.not_nets)):
            for i, net in enumerate(nets):
                if parse_cidr(net) is None:
                    self.err(policy, f"{at}.{field}[{i}]", f"{net!r} is not an IPv4 address or CIDR block")
        for field, ports in (("ports", entity.ports), ("notPorts", entity.not_ports)):
            if ports and protocol not in _PORT_PROTOCOLS:
                self.err(policy, f"{at}.{field}", "ports need protocol TCP, UDP or SCTP on the rule")
            for i, port in enumerate(ports):
                problem = calico_port_problem(port)
                if problem:
                    self.err(policy, f"{at}.{field}[{i}]", problem)


def calico_port_problem(port: int | str) -> str | None:
    """Calico ports: a number, "min:max", or a named port."""
    if isinstance(port, int):
        return None if 1 <= port <= 65535 else f"{port} is not a port; use 1-65535"
    m = re.fullmatch(r"(\d+):(\d+)", port)
    if m:
        low, high = int(m.group(1)), int(m.group(2))
        return (
            None if 1 <= low <= high <= 65535 else f"{port!r} is not a port range; use min:max within 1-65535"
        )
    if len(port) > 15 or not _IANA_SVC_NAME.match(port):
        return f"{port!r} is neither a port, a min:max range nor a valid port name"
    return None


_COOKIE_NAME = re.compile(r"[A-Za-z0-9_-]{1,200}")


def cookie_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a sticky-session cookie name, or None. CLB takes 1-200 ASCII characters
    without commas, semicolons or spaces, not starting with $; acknet takes the letters, digits, ``_``
    and ``-`` of those (the name becomes part of an NGINX variable)."""
    if _COOKIE_NAME.fullmatch(name) is None:
        return f"{name!r} is not a cookie name: 1-200 letters, digits, '_' or '-'"
    return None


def tls_secret_problem(
    secret_type: str, data: Mapping[str, str], string_data: Mapping[str, str]
) -> str | None:
    """What keeps a Secret from being a kubernetes.io/tls certificate and key, or None."""
    if secret_type != "kubernetes.io/tls":
        return f"type is {secret_type!r}, not kubernetes.io/tls"
    for key, marker in (("tls.crt", "BEGIN CERTIFICATE"), ("tls.key", "PRIVATE KEY")):
        if key in string_data:
            text = string_data[key]
        elif key in data:
            try:
                text = base64.b64decode(data[key], validate=True).decode("ascii", "replace")
            except (binascii.Error, ValueError):
                return f"data[{key}] is not base64"
        else:
            return f"data[{key}] is missing"
        if marker not in text:
            return f"data[{key}] holds no PEM {'certificate' if key == 'tls.crt' else 'private key'}"
    return None


def validate(resources: Resources) -> list[Diagnostic]:
    checker = _Checker(resources)
    checker.vpcs()
    checker.vswitches()
    checker.security_groups()
    checker.ecs_and_slb()
    checker.clusters()
    for name, objs in resources.kube.items():
        if name in resources.clusters:
            checker.kube(name, objs)
    return checker.out
