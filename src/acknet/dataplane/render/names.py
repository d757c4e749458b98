"""Kernel names: the one place that turns acknet objects into namespace, interface and MAC names.

Every name here is a pure function of the object it names, so a restarted daemon (or ``acknet down``
with nothing but the emulation name) finds exactly what an earlier run made. Network namespace names
are ``<emulation>-<kind>-<name>``, and the emulated Internet, of which there is one, is
``<emulation>-internet``; the emulation name may not contain ``-`` so that one emulation's
prefix can never be the prefix of another's (``a`` vs ``a-ecs``). Interface names live inside the
emulation's own namespaces, so they need no emulation prefix, only the kernel's 15-character limit
(IFNAMSIZ - 1).
"""

from __future__ import annotations

import hashlib
import re
from typing import Final, Literal

NamespaceKind = Literal["vpc", "ecs", "pod", "slb"]

IFNAMSIZ: Final = 15  # usable characters of an interface name (IFNAMSIZ 16 minus the NUL)
NETNS_NAME_MAX: Final = 63  # not a kernel limit (the name is a file in /run/netns) but short enough for logs

_EMULATION = re.compile(r"^[a-z][a-z0-9]{0,15}$")

# What the pod sees as its gateway on a Terway veth: an address that exists nowhere, answered by a
# permanent neighbour entry (T:plugin/datapath/consts_linux.go, LinkIP).
TERWAY_LINK_IP: Final = "169.254.1.1"
# The host side of a Terway veth: Calico's prefix, so that felix recognises the interface
# (T:plugin/terway/cni.go, defaultVethPrefix = "cali").
CALI_PREFIX: Final = "cali"
# The Flannel bridge and the pod side of every veth.
CNI_BRIDGE: Final = "cni0"
POD_IFNAME: Final = "eth0"
# Terway's exclusive-ENI datapath gives the pod a second veth to reach the host stack
# (T:plugin/datapath/exclusive_eni_linux.go, defaultVethForENI).
EXCLUSIVE_HOST_VETH: Final = "veth1"
# ECS instances see their VSwitch gateway at this MAC; all bridges of a VRouter use it, which is
# harmless because each bridge is its own L2 domain.
VPC_GATEWAY_MAC: Final = "ee:ff:ff:ff:ff:ff"
# The VRouter end of a VPC's uplink to the emulated Internet (one per VRouter, so a fixed name).
VROUTER_UPLINK: Final = "internet"


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def check_emulation(emulation: str) -> str:
    """Return ``emulation`` if it can prefix kernel names, else raise ValueError.

    Lowercase letters and digits only, starting with a letter, at most 16 characters: no ``-``, so
    ``<emulation>-`` identifies one emulation's namespaces exactly.
    """
    if not _EMULATION.match(emulation):
        raise ValueError(
            f"emulation name {emulation!r} must be 1-16 lowercase letters or digits, starting with a letter"
        )
    return emulation


def netns_prefix(emulation: str) -> str:
    """What every namespace of ``emulation`` starts with, and nothing of any other emulation does."""
    return f"{check_emulation(emulation)}-"


def netns_name(emulation: str, kind: NamespaceKind, name: str) -> str:
    """``<emulation>-<kind>-<name>``, shortened with a hash of the full name when it would be too long."""
    full = f"{netns_prefix(emulation)}{kind}-{name}"
    if len(full) <= NETNS_NAME_MAX:
        return full
    digest = _sha1(full)[:10]
    return f"{full[: NETNS_NAME_MAX - len(digest) - 1]}-{digest}"


def vpc_netns(emulation: str, vpc: str) -> str:
    """The VRouter of ``vpc``."""
    return netns_name(emulation, "vpc", vpc)


def internet_netns(emulation: str) -> str:
    """The emulated Internet. No ``<kind>-`` follows the prefix, so no VPC, ECS or pod name can make it."""
    return f"{netns_prefix(emulation)}internet"


def ecs_netns(emulation: str, instance: str) -> str:
    return netns_name(emulation, "ecs", instance)


def pod_netns(emulation: str, namespace: str, pod: str) -> str:
    # Kubernetes namespace names are DNS labels (no dots), so the first dot separates the two parts
    # unambiguously.
    return netns_name(emulation, "pod", f"{namespace}.{pod}")


def slb_netns(emulation: str, load_balancer: str) -> str:
    """A CLB instance. A Service's SLB is named "namespace/service": the slash becomes a dot, as for pods."""
    return netns_name(emulation, "slb", load_balancer.replace("/", "."))


def cali_ifname(namespace: str, pod: str) -> str:
    """Host side of a pod veth: ``cali`` + 11 hex of sha1("<namespace>.<pod>").

    The same formula as Calico's VethNameForWorkload, which Terway calls with prefix "cali"
    (T:plugin/terway/cni.go), so names match what a real node shows.
    """
    return CALI_PREFIX + _sha1(f"{namespace}.{pod}")[:11]


def flannel_veth_ifname(namespace: str, pod: str) -> str:
    """Host side of a Flannel pod veth. The bridge plugin picks ``veth`` + 8 random hex; ours is hashed."""
    return "veth" + _sha1(f"{namespace}.{pod}")[:8]


def eni_ifname(index: int) -> str:
    """An ENI inside its ECS instance: eth0 for the primary, eth1... in attachment order."""
    return f"eth{index}"


def vswitch_bridge(vswitch: str) -> str:
    """The Linux bridge that is ``vswitch`` inside its VRouter namespace."""
    return "vsw" + _sha1(f"vswitch/{vswitch}")[:11]


def eni_port(eni_id: str) -> str:
    """The VRouter end of an ENI's veth, a port of the ENI's VSwitch bridge."""
    return "eni" + _sha1(f"eni/{eni_id}")[:12]


def internet_port(vpc: str) -> str:
    """The Internet's end of ``vpc``'s uplink: ``vpc`` + 12 hex, one per VPC in the Internet namespace."""
    return "vpc" + _sha1(f"uplink/{vpc}")[:12]


def slb_port(load_balancer: str) -> str:
    """The VRouter end of a CLB instance's veth: ``slb`` + 12 hex (a VSwitch bridge port when intranet)."""
    return "slb" + _sha1(f"slb/{load_balancer}")[:12]


def mac_for(key: str) -> str:
    """A deterministic locally administered unicast MAC (first octet 0x02) for interfaces the plan has none for."""
    digest = _sha1(f"mac/{key}")
    return "02:" + ":".join(digest[i : i + 2] for i in range(0, 10, 2))


def route_table_for_eni(index: int) -> int:
    """The policy routing table of a Terway ENI.

    Terway uses 1000 + the ENI's ifindex (T:plugin/driver/utils/utils_linux.go, GetRouteTableID).
    ifindexes are not known before the link exists and differ between runs, so the plan uses
    1000 + the ENI's attachment index instead: deterministic, and unique per node as ifindexes are.
    """
    return 1000 + index
