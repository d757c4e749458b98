"""Network policy in ``acknet check``: Kubernetes and Calico semantics and ACK's rules, one row per case.

One small Terway cluster (two shared-ENI nodes, one exclusive-ENI node) with namespaces ``shop``
(team=shop) and ``ops`` (team=ops); each case adds its policies and asks one question, either of the
whole path (``Reachability``, so the hop is known to be in the verdict) or of ``PolicyModel`` for an
outside address. Every row names the verdict and a fragment of the reason that decided.
"""

from __future__ import annotations

import textwrap
from functools import cache
from ipaddress import IPv4Address
from typing import Any, cast

import pytest

from acknet.analysis.endpoints import Endpoint, EndpointIndex
from acknet.analysis.policy import PolicyModel
from acknet.analysis.reachability import Reachability, Verdict
from acknet.controllers.plan import plan
from acknet.controllers.state import Plan, Protocol
from acknet.model.build import build_resources
from acknet.model.documents import Source


def _cloud(plugin: str, network_policy: bool) -> str:
    if plugin == "flannel":
        cluster = "networkPlugin: flannel, podCidr: 172.20.0.0/16"
        pools = "[{name: default, vswitches: [node], count: 2}]"
    else:
        cluster = "networkPlugin: terway, podVSwitches: [pod]"
        pools = (
            "[{name: default, vswitches: [node], count: 2},"
            " {name: excl, vswitches: [node], count: 1, eniMode: exclusive, labels: {pool: excl}}]"
        )
    return textwrap.dedent(
        f"""\
        apiVersion: acknet.io/v1
        kind: VPC
        metadata: {{name: vpc}}
        spec: {{cidrBlock: 192.168.0.0/16}}
        ---
        apiVersion: acknet.io/v1
        kind: VSwitch
        metadata: {{name: node}}
        spec: {{vpc: vpc, cidrBlock: 192.168.0.0/24, zoneId: cn-hangzhou-h}}
        ---
        apiVersion: acknet.io/v1
        kind: VSwitch
        metadata: {{name: pod}}
        spec: {{vpc: vpc, cidrBlock: 192.168.32.0/19, zoneId: cn-hangzhou-h}}
        ---
        apiVersion: acknet.io/v1
        kind: Cluster
        metadata: {{name: ack}}
        spec: {{vpc: vpc, {cluster}, networkPolicy: {str(network_policy).lower()}, nodePools: {pools}}}
        """
    )


def _pod(ns: str, name: str, labels: str, ports: str, sa: str = "default", extra: str = "") -> str:
    return textwrap.dedent(
        f"""\
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}, namespace: {ns}, labels: {labels}}}
        spec:
          serviceAccountName: {sa}
          {extra or "nodeName: ack-default-" + ("0" if name in ("web", "monitor") else "1")}
          containers: [{{name: main, ports: {ports}}}]
        """
    )


WORKLOADS = (
    "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: shop}}\n"
    "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ops, labels: {team: ops}}\n"
    + _pod("shop", "web", "{app: web, tier: front}", "[{name: http, containerPort: 8080}]")
    + _pod(
        "shop",
        "api",
        "{app: api, tier: back}",
        "[{name: api, containerPort: 9000}, {name: metrics, containerPort: 9100, protocol: UDP}]",
    )
    + _pod("shop", "db", "{app: db}", "[{name: pg, containerPort: 5432}]", sa="db-sa")
    + _pod("ops", "monitor", "{app: monitor}", "[{name: scrape, containerPort: 9100}]", sa="monitor")
)
EXCLUSIVE = _pod(
    "shop", "legacy", "{app: legacy}", "[{containerPort: 7070}]", extra="nodeSelector: {pool: excl}"
)

DEFAULT_DENY = """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: shop}
spec: {podSelector: {}, policyTypes: [Ingress]}
"""


@cache
def _world(policies: str, plugin: str = "terway", network_policy: bool = True) -> tuple[Plan, EndpointIndex]:
    text = _cloud(plugin, network_policy) + WORKLOADS + (EXCLUSIVE if plugin == "terway" else "") + policies
    planned = plan(build_resources([Source("policy.yaml", text)]))
    return planned, EndpointIndex.of(planned)


def _verdict(
    policies: str,
    src: str,
    dst: str,
    port: int,
    protocol: str = "TCP",
    plugin: str = "terway",
    network_policy: bool = True,
) -> Verdict:
    planned, index = _world(policies, plugin, network_policy)
    endpoints: dict[str, Endpoint] = {**index.pods, **index.instances}
    return Reachability(planned).verdict(endpoints[src], endpoints[dst], port, cast(Protocol, protocol))


def _policy_doc(text: str) -> str:
    return "\n---\n" + textwrap.dedent(text).strip() + "\n"


def knp(name: str, spec: str, ns: str = "shop") -> str:
    return _policy_doc(
        f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\n"
        f"spec:\n{textwrap.indent(textwrap.dedent(spec).strip(), '  ')}"
    )


def cnp(name: str, spec: str, ns: str = "shop") -> str:
    return _policy_doc(
        f"apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\n"
        f"spec:\n{textwrap.indent(textwrap.dedent(spec).strip(), '  ')}"
    )


def gnp(name: str, spec: str) -> str:
    return _policy_doc(
        f"apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: {name}}}\n"
        f"spec:\n{textwrap.indent(textwrap.dedent(spec).strip(), '  ')}"
    )


def gns(name: str, labels: str, nets: str) -> str:
    return _policy_doc(
        f"apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\n"
        f"metadata: {{name: {name}, labels: {labels}}}\nspec: {{nets: {nets}}}"
    )


def nset(name: str, labels: str, nets: str, ns: str = "shop") -> str:
    return _policy_doc(
        f"apiVersion: projectcalico.org/v3\nkind: NetworkSet\n"
        f"metadata: {{name: {name}, namespace: {ns}, labels: {labels}}}\nspec: {{nets: {nets}}}"
    )


ALLOW_API_FROM_WEB = knp(
    "allow-api",
    """
    podSelector: {matchLabels: {app: api}}
    ingress:
    - from: [{podSelector: {matchLabels: {app: web}}}]
      ports: [{port: api}]
    """,
)
ALLOW_ALL_DB = knp("allow-all", "podSelector: {matchLabels: {app: db}}\ningress: [{}]")
DENY_MONITOR_TO_DB = """
order: {order}
selector: app == 'db'
types: [Ingress]
ingress:
- {{action: Deny, protocol: TCP, source: {{selector: app == 'monitor', namespaceSelector: all()}}}}
"""
MONITOR_EGRESS_PG = knp(
    "monitor-out",
    """
    podSelector: {}
    policyTypes: [Egress]
    egress:
    - ports: [{port: pg}]
    """,
    ns="ops",
)

# (id, policies, source, destination, port, protocol, allowed, reason fragment)
PATH_CASES = [
    (
        "no-policy-is-open",
        "",
        "shop/web",
        "shop/api",
        9000,
        "TCP",
        True,
        "no policy selects shop/api for ingress",
    ),
    (
        "default-deny-names-the-policy",
        DEFAULT_DENY,
        "shop/web",
        "shop/api",
        9000,
        "TCP",
        False,
        "NetworkPolicy shop/default-deny selects shop/api for ingress and no rule allows it",
    ),
    (
        "named-port-ingress-rule",
        DEFAULT_DENY + ALLOW_API_FROM_WEB,
        "shop/web",
        "shop/api",
        9000,
        "TCP",
        True,
        "allowed by NetworkPolicy shop/allow-api ingress rule 1",
    ),
    (
        "podselector-alone-is-own-namespace",
        DEFAULT_DENY + ALLOW_API_FROM_WEB + knp("web-in-ops", "podSelector: {}\ningress: []", ns="ops"),
        "ops/monitor",
        "shop/api",
        9000,
        "TCP",
        False,
        "select shop/api for ingress and no rule allows it",
    ),
    (
        "named-port-needs-its-protocol",
        knp(
            "udp-api",
            "podSelector: {matchLabels: {app: api}}\ningress: [{ports: [{port: api, protocol: UDP}]}]",
        ),
        "shop/web",
        "shop/api",
        9000,
        "TCP",
        False,
        "NetworkPolicy shop/udp-api selects shop/api",
    ),
    (
        "egress-named-port-resolved-on-destination",
        MONITOR_EGRESS_PG,
        "ops/monitor",
        "shop/db",
        5432,
        "TCP",
        True,
        "egress from ops/monitor allowed by NetworkPolicy ops/monitor-out egress rule 1",
    ),
    (
        "egress-named-port-not-on-other-pods",
        MONITOR_EGRESS_PG,
        "ops/monitor",
        "shop/api",
        9000,
        "TCP",
        False,
        "NetworkPolicy ops/monitor-out selects ops/monitor for egress and no rule allows it",
    ),
    (
        "policytypes-inferred-egress-from-rules",
        knp(
            "web-out",
            "podSelector: {matchLabels: {app: web}}\negress: [{to: [{namespaceSelector: {}}], ports: [{port: 5432}]}]",
        ),
        "shop/web",
        "shop/api",
        9000,
        "TCP",
        False,
        "NetworkPolicy shop/web-out selects shop/web for egress",
    ),
    (
        "policytypes-inferred-ingress-always",
        knp(
            "web-out",
            "podSelector: {matchLabels: {app: web}}\negress: [{to: [{namespaceSelector: {}}], ports: [{port: 5432}]}]",
        ),
        "shop/api",
        "shop/web",
        8080,
        "TCP",
        False,
        "NetworkPolicy shop/web-out selects shop/web for ingress",
    ),
    (
        "egress-only-policy-leaves-ingress-open",
        knp("out-only", "podSelector: {matchLabels: {app: web}}\npolicyTypes: [Egress]"),
        "shop/api",
        "shop/web",
        8080,
        "TCP",
        True,
        "no policy selects shop/web for ingress",
    ),
    (
        "peer-and-of-both-selectors",
        DEFAULT_DENY
        + knp(
            "and",
            "podSelector: {}\ningress: [{from: [{namespaceSelector: {matchLabels: {team: ops}},"
            " podSelector: {matchLabels: {app: web}}}]}]",
        ),
        "ops/monitor",
        "shop/db",
        5432,
        "TCP",
        False,
        "no rule allows it",
    ),
    (
        "peer-or-of-two-peers",
        DEFAULT_DENY
        + knp(
            "or",
            "podSelector: {}\ningress: [{from: [{namespaceSelector: {matchLabels: {team: ops}}},"
            " {podSelector: {matchLabels: {app: web}}}]}]",
        ),
        "ops/monitor",
        "shop/db",
        5432,
        "TCP",
        True,
        "allowed by NetworkPolicy shop/or ingress rule 1",
    ),
    (
        "calico-deny-before-k8s-order-1000",
        ALLOW_ALL_DB + gnp("no-monitor", DENY_MONITOR_TO_DB.format(order=10)),
        "ops/monitor",
        "shop/db",
        5432,
        "TCP",
        False,
        "denied by GlobalNetworkPolicy no-monitor ingress rule 1 (Deny)",
    ),
    (
        "k8s-allow-before-calico-order-2000",
        ALLOW_ALL_DB + gnp("no-monitor", DENY_MONITOR_TO_DB.format(order=2000)),
        "ops/monitor",
        "shop/db",
        5432,
        "TCP",
        True,
        "allowed by NetworkPolicy shop/allow-all ingress rule 1",
    ),
    (
        "nil-order-runs-last",
        ALLOW_ALL_DB + gnp("no-monitor", DENY_MONITOR_TO_DB.format(order="null")),
        "ops/monitor",
        "shop/db",
        5432,
        "TCP",
        True,
        "NetworkPolicy shop/allow-all ingress rule 1",
    ),
    (
        "pass-falls-through-to-the-profile",
        DEFAULT_DENY
        + cnp(
            "pass-ops",
            "order: 10\nselector: app == 'api'\ningress:\n- {action: Pass, source: {namespaceSelector: team == 'ops'}}",
        ),
        "ops/monitor",
        "shop/api",
        9000,
        "TCP",
        True,
        "passed by Calico NetworkPolicy shop/pass-ops ingress rule 1 (Pass)",
    ),
    (
        "pass-does-not-apply-to-others",
        DEFAULT_DENY
        + cnp(
            "pass-ops",
            "order: 10\nselector: app == 'api'\ningress:\n- {action: Pass, source: {namespaceSelector: team == 'ops'}}",
        ),
        "shop/web",
        "shop/api",
        9000,
        "TCP",
        False,
        "Calico NetworkPolicy shop/pass-ops, NetworkPolicy shop/default-deny select shop/api",
    ),
    (
        "log-goes-on-to-the-next-rule",
        cnp("log", "selector: app == 'api'\ningress:\n- {action: Log}\n- {action: Allow, protocol: TCP}"),
        "shop/web",
        "shop/api",
        9000,
        "TCP",
        True,
        "Calico NetworkPolicy shop/log ingress rule 2",
    ),
    (
        "log-alone-ends-in-deny",
        cnp("log", "selector: app == 'api'\ningress:\n- {action: Log}"),
        "shop/web",
        "shop/api",
        9000,
        "TCP",
        False,
        "Calico NetworkPolicy shop/log selects shop/api for ingress and no rule allows it",
    ),
    (
        "calico-namespaced-selector-stays-in-namespace",
        cnp(
            "from-monitor",
            "selector: app == 'db'\ningress:\n- {action: Allow, source: {selector: app == 'monitor'}}",
        ),
        "ops/monitor",
        "shop/db",
        5432,
        "TCP",
        False,
        "no rule allows it",
    ),
    (
        "service-account-names",
        cnp(
            "sa",
            "selector: app == 'db'\ningress:\n- {action: Allow, source: {serviceAccounts: {names: [monitor]}, namespaceSelector: all()}}",
        ),
        "ops/monitor",
        "shop/db",
        5432,
        "TCP",
        True,
        "Calico NetworkPolicy shop/sa ingress rule 1",
    ),
    (
        "service-account-names-others-denied",
        cnp(
            "sa",
            "selector: app == 'db'\ningress:\n- {action: Allow, source: {serviceAccounts: {names: [monitor]}, namespaceSelector: all()}}",
        ),
        "shop/web",
        "shop/db",
        5432,
        "TCP",
        False,
        "no rule allows it",
    ),
    (
        "calico-port-range-and-notports",
        cnp(
            "range",
            "selector: app == 'api'\ningress:\n- {action: Allow, protocol: TCP, destination: {ports: ['8990:9010'], notPorts: [9005]}}",
        ),
        "shop/web",
        "shop/api",
        9000,
        "TCP",
        True,
        "Calico NetworkPolicy shop/range ingress rule 1",
    ),
    (
        "calico-not-protocol",
        cnp("not-udp", "selector: app == 'api'\ningress:\n- {action: Allow, notProtocol: UDP}"),
        "shop/web",
        "shop/api",
        9100,
        "UDP",
        False,
        "Calico NetworkPolicy shop/not-udp selects shop/api",
    ),
    (
        "calico-named-port-udp",
        cnp(
            "metrics",
            "selector: app == 'api'\ningress:\n- {action: Allow, protocol: UDP, destination: {ports: [metrics]}}",
        ),
        "shop/web",
        "shop/api",
        9100,
        "UDP",
        True,
        "Calico NetworkPolicy shop/metrics ingress rule 1",
    ),
    (
        "egress-and-ingress-both-needed",
        ALLOW_ALL_DB + knp("monitor-deny-out", "podSelector: {}\npolicyTypes: [Egress]", ns="ops"),
        "ops/monitor",
        "shop/db",
        5432,
        "TCP",
        False,
        "NetworkPolicy ops/monitor-deny-out selects ops/monitor for egress and no rule allows it",
    ),
    (
        "exclusive-eni-pods-are-not-policed",
        DEFAULT_DENY,
        "shop/web",
        "shop/legacy",
        7070,
        "TCP",
        True,
        "no network policy: exclusive ENI pods are not policed (Terway)",
    ),
    (
        "own-node-always-reaches-its-pod",
        DEFAULT_DENY,
        "ecs/ack-default-1",
        "shop/api",
        9000,
        "TCP",
        True,
        "from its own node ecs/ack-default-1: always allowed",
    ),
    (
        "another-node-is-just-an-address",
        DEFAULT_DENY,
        "ecs/ack-default-0",
        "shop/api",
        9000,
        "TCP",
        False,
        "NetworkPolicy shop/default-deny selects shop/api for ingress",
    ),
]


@pytest.mark.parametrize(
    ("policies", "src", "dst", "port", "protocol", "allowed", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in PATH_CASES],
)
def test_path(
    policies: str, src: str, dst: str, port: int, protocol: str, allowed: bool, reason: str
) -> None:
    verdict = _verdict(policies, src, dst, port, protocol)
    assert verdict.allowed is allowed, verdict.reasons
    assert any(reason in r for r in verdict.reasons), verdict.reasons


OFFICE = gns("office", "{role: office}", "[203.0.113.0/24]")
WEB_FROM_OFFICE = "selector: app == 'web'\ningress:\n- {action: Allow, source: {selector: role == 'office'}}"

# (id, policies, direction, pod, peer address, port, protocol, allowed, reason fragment)
ADDRESS_CASES = [
    (
        "global-set-from-global-policy",
        OFFICE + gnp("office-web", WEB_FROM_OFFICE),
        "ingress",
        "shop/web",
        "203.0.113.9",
        8080,
        "TCP",
        True,
        "GlobalNetworkPolicy office-web ingress rule 1",
    ),
    (
        "outside-the-set",
        OFFICE + gnp("office-web", WEB_FROM_OFFICE),
        "ingress",
        "shop/web",
        "198.51.100.9",
        8080,
        "TCP",
        False,
        "GlobalNetworkPolicy office-web selects shop/web for ingress and no rule allows it",
    ),
    (
        "namespaced-policy-does-not-see-global-sets",
        OFFICE + cnp("office-web", WEB_FROM_OFFICE),
        "ingress",
        "shop/web",
        "203.0.113.9",
        8080,
        "TCP",
        False,
        "no rule allows it",
    ),
    (
        "namespaced-policy-global-namespace-selector",
        OFFICE
        + cnp(
            "office-web",
            "selector: app == 'web'\ningress:\n- {action: Allow, source: {selector: role == 'office', namespaceSelector: global()}}",
        ),
        "ingress",
        "shop/web",
        "203.0.113.9",
        8080,
        "TCP",
        True,
        "Calico NetworkPolicy shop/office-web ingress rule 1",
    ),
    (
        "namespaced-network-set",
        nset("partner", "{role: partner}", "[198.51.100.0/24]")
        + cnp(
            "partner-web",
            "selector: app == 'web'\ningress:\n- {action: Allow, source: {selector: role == 'partner'}}",
        ),
        "ingress",
        "shop/web",
        "198.51.100.9",
        8080,
        "TCP",
        True,
        "Calico NetworkPolicy shop/partner-web ingress rule 1",
    ),
    (
        "set-covering-an-address",
        gns("vpc", "{role: vpc}", "[192.168.0.0/16]")
        + gnp(
            "vpc-web",
            "selector: app == 'web'\ningress:\n- {action: Allow, source: {selector: role == 'vpc'}}",
        ),
        "ingress",
        "shop/web",
        "192.168.200.5",
        8080,
        "TCP",
        True,
        "GlobalNetworkPolicy vpc-web ingress rule 1",
    ),
    (
        "egress-not-nets",
        gnp(
            "no-docs",
            "selector: app == 'monitor'\ntypes: [Egress]\negress:\n- {action: Allow, destination: {notNets: [203.0.113.0/24]}}",
        ),
        "egress",
        "ops/monitor",
        "203.0.113.9",
        443,
        "TCP",
        False,
        "GlobalNetworkPolicy no-docs selects ops/monitor for egress",
    ),
    (
        "egress-not-nets-elsewhere",
        gnp(
            "no-docs",
            "selector: app == 'monitor'\ntypes: [Egress]\negress:\n- {action: Allow, destination: {notNets: [203.0.113.0/24]}}",
        ),
        "egress",
        "ops/monitor",
        "198.51.100.9",
        443,
        "TCP",
        True,
        "GlobalNetworkPolicy no-docs egress rule 1",
    ),
    (
        "ipblock-with-host-bits-and-except",
        knp(
            "out",
            "podSelector: {}\npolicyTypes: [Egress]\negress:\n- to: [{ipBlock: {cidr: 203.0.113.77/24, except: [203.0.113.128/25]}}]",
            ns="ops",
        ),
        "egress",
        "ops/monitor",
        "203.0.113.9",
        443,
        "TCP",
        True,
        "NetworkPolicy ops/out egress rule 1",
    ),
    (
        "ipblock-except-cut-out",
        knp(
            "out",
            "podSelector: {}\npolicyTypes: [Egress]\negress:\n- to: [{ipBlock: {cidr: 203.0.113.77/24, except: [203.0.113.128/25]}}]",
            ns="ops",
        ),
        "egress",
        "ops/monitor",
        "203.0.113.200",
        443,
        "TCP",
        False,
        "no rule allows it",
    ),
    (
        "named-port-never-matches-an-address",
        MONITOR_EGRESS_PG,
        "egress",
        "ops/monitor",
        "203.0.113.9",
        5432,
        "TCP",
        False,
        "NetworkPolicy ops/monitor-out selects ops/monitor for egress",
    ),
    (
        "endport-range-inside",
        knp(
            "range",
            "podSelector: {}\npolicyTypes: [Egress]\negress:\n- ports: [{port: 8000, endPort: 8100}]",
            ns="ops",
        ),
        "egress",
        "ops/monitor",
        "203.0.113.9",
        8100,
        "TCP",
        True,
        "NetworkPolicy ops/range egress rule 1",
    ),
    (
        "endport-range-outside",
        knp(
            "range",
            "podSelector: {}\npolicyTypes: [Egress]\negress:\n- ports: [{port: 8000, endPort: 8100}]",
            ns="ops",
        ),
        "egress",
        "ops/monitor",
        "203.0.113.9",
        8101,
        "TCP",
        False,
        "no rule allows it",
    ),
    (
        "empty-rule-allows-everything",
        knp("all", "podSelector: {}\npolicyTypes: [Egress]\negress: [{}]", ns="ops"),
        "egress",
        "ops/monitor",
        "198.51.100.1",
        53,
        "UDP",
        True,
        "NetworkPolicy ops/all egress rule 1",
    ),
    (
        "sctp-rule-does-not-open-tcp",
        knp(
            "sctp",
            "podSelector: {}\npolicyTypes: [Egress]\negress: [{ports: [{protocol: SCTP, port: 80}]}]",
            ns="ops",
        ),
        "egress",
        "ops/monitor",
        "198.51.100.1",
        80,
        "TCP",
        False,
        "no rule allows it",
    ),
]


@pytest.mark.parametrize(
    ("policies", "direction", "pod", "address", "port", "protocol", "allowed", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in ADDRESS_CASES],
)
def test_address(
    policies: str,
    direction: str,
    pod: str,
    address: str,
    port: int,
    protocol: str,
    allowed: bool,
    reason: str,
) -> None:
    planned, index = _world(policies)
    model = PolicyModel.of(planned, "ack")
    endpoint, peer = index.pods[pod], IPv4Address(address)
    if direction == "ingress":
        decision = model.ingress(endpoint, peer, protocol, port)
    else:
        decision = model.egress(endpoint, peer, protocol, port)
    assert decision.allowed is allowed, decision.reason
    assert reason in decision.reason, decision.reason


def test_a_pod_address_inside_a_set_is_the_pod() -> None:
    """Calico's identities by longest prefix: a pod's /32 wins over a set that covers it, so the set's
    labels do not reach the pod (shop/api is in 192.168.0.0/16 but is no role=vpc)."""
    policies = gns("vpc", "{role: vpc}", "[192.168.0.0/16]") + gnp(
        "vpc-web", "selector: app == 'web'\ningress:\n- {action: Allow, source: {selector: role == 'vpc'}}"
    )
    planned, index = _world(policies)
    model = PolicyModel.of(planned, "ack")
    api = index.pods["shop/api"]
    for peer in (api, api.ip):
        decision = model.ingress(index.pods["shop/web"], peer, "TCP", 8080)
        assert not decision.allowed, decision.reason


@pytest.mark.parametrize(
    ("cloud", "reason"),
    [
        pytest.param(
            {"plugin": "flannel"}, "no network policy: Flannel clusters on ACK have none", id="flannel"
        ),
        pytest.param(
            {"network_policy": False}, "network policy is off in cluster ack (networkPolicy: false)", id="off"
        ),
    ],
)
def test_where_ack_has_no_policy(cloud: dict[str, Any], reason: str) -> None:
    # web and monitor share a node: no security group in the way, only policy would stop it.
    deny_ops = knp("default-deny", "podSelector: {}\npolicyTypes: [Ingress, Egress]", ns="ops")
    verdict = _verdict(DEFAULT_DENY + deny_ops, "shop/web", "ops/monitor", 9100, **cloud)
    assert verdict.allowed, verdict.reasons
    policy_hops = [h for h in verdict.hops if "cali veth" in h.at]
    assert [h.reason for h in policy_hops] == [f"egress policy: {reason}", f"ingress policy: {reason}"]


def test_policy_hops_sit_around_the_network_hops() -> None:
    """Egress policy is the first hop of a pod's packet, ingress policy the last before the listener;
    the hop names the policy as its object and the rule as its rule."""
    verdict = _verdict(DEFAULT_DENY + ALLOW_API_FROM_WEB, "shop/web", "shop/api", 9000)
    hops = verdict.hops
    assert hops[0].at == "shop/web cali veth on ecs/ack-default-0"
    assert hops[0].reason == "egress policy: no policy selects shop/web for egress"
    assert (hops[-2].object, hops[-2].rule, hops[-2].action) == (
        "NetworkPolicy shop/allow-api",
        "ingress rule 1",
        "accept",
    )
    assert hops[-1].object == "listener"
    assert [h.object for h in hops[1:-2]] != []  # security groups and the VPC in between


def test_connection_and_deciding_rule() -> None:
    planned, index = _world(ALLOW_ALL_DB + gnp("no-monitor", DENY_MONITOR_TO_DB.format(order=10)))
    model = PolicyModel.of(planned, "ack")
    both = model.connection(index.pods["ops/monitor"], index.pods["shop/db"], "TCP", 5432)
    assert both.egress is not None and both.egress.allowed
    assert both.ingress is not None and not both.ingress.allowed
    assert both.ingress.deciding == "GlobalNetworkPolicy no-monitor ingress rule 1 (Deny)"
    assert not both.allowed
    assert model.selecting("shop/db", "ingress") == [
        "GlobalNetworkPolicy no-monitor",
        "NetworkPolicy shop/allow-all",
    ]
    # An outside client has no egress decision here, only the pod's ingress.
    outside = model.connection(IPv4Address("203.0.113.1"), index.pods["shop/web"], "TCP", 8080)
    assert outside.egress is None and outside.ingress is not None and outside.ingress.allowed
