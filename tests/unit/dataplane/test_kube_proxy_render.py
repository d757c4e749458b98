"""The kube-proxy table of a node: upstream conformance, structure, golden text and nft syntax.

Conformance comes from kubernetes/kubernetes ``pkg/proxy/nftables/proxier_test.go`` as collected in
``shared/conformance/kube-proxy-nftables/`` (read where it is: ``$ACKNET_SHARED`` or ``<repo>/../shared``):

- the 59 packet-flow vectors are checked by tracing each packet through the rendered text with a small
  interpreter of the nft subset the renderer writes (``Ruleset.trace``, after upstream's
  ``helpers_test.go tracePacket``): firewall check before DNAT, the dstnat chains, then the filter
  chains for packets left untouched;
- ``TestOverallNFTablesRules`` is compared object by object with upstream's expected transaction.

The plans are built by hand from the vectors (not by the controllers) so these tests pin the renderer.
Regenerate the golden file with ``ACKNET_UPDATE_GOLDEN=1 pytest tests/unit/dataplane`` and review the diff.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from fractions import Fraction
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest
import yaml

from acknet.controllers.state import (
    EndpointAddress,
    EndpointSlicePort,
    Eni,
    Instance,
    Plan,
    PlannedEndpointSlice,
    PlannedService,
    PlannedServicePort,
)
from acknet.dataplane.render.kube_proxy import (
    EndpointChoice,
    IPAddress,
    IPNetwork,
    ProxyEndpoint,
    ProxyInput,
    ProxyServicePort,
    ServiceExternal,
    endpoint_chain_base,
    hash_and_truncate,
    render_kube_proxy,
    render_table,
    replace_script,
)
from acknet.model.cloud import Cluster
from acknet.model.resources import Resources

GOLDEN = Path(__file__).parent / "golden"
REPO = Path(__file__).resolve().parents[3]
CHOICES: tuple[EndpointChoice, ...] = ("cascade", "vmap")


def shared_dir() -> Path:
    return Path(os.environ.get("ACKNET_SHARED") or REPO.parent / "shared")


def conformance(name: str) -> Path:
    path = shared_dir() / "conformance" / "kube-proxy-nftables" / name
    if not path.exists():
        pytest.skip(f"conformance file {path} not found (set ACKNET_SHARED)")
    return path


# -- a tracer for the subset of nft the renderer writes ---------------------------------------------------


def tokenize(text: str) -> list[str]:
    """Words, with ``{ … }`` groups and quoted strings kept whole."""
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
        elif c == '"':
            j = text.index('"', i + 1)
            out.append(text[i : j + 1])
            i = j + 1
        elif c == "{":
            depth, j = 0, i
            while True:
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                if depth == 0:
                    break
                j += 1
            out.append(text[i : j + 1])
            i = j + 1
        else:
            j = i
            while j < len(text) and not text[j].isspace():
                j += 1
            out.append(text[i:j])
            i = j
    return out


def split_top(text: str, sep: str = ",") -> list[str]:
    """``text`` split on ``sep`` outside quotes."""
    parts, cur, quoted = [], "", False
    for c in text:
        if c == '"':
            quoted = not quoted
        if c == sep and not quoted:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += c
    if cur.strip():
        parts.append(cur.strip())
    return parts


def split_element(element: str) -> tuple[str, str | None]:
    """``key [comment "…"] [: verdict]`` -> (key, verdict)."""
    element = re.sub(r'\s*comment "[^"]*"', "", element)
    key, _, value = element.partition(" : ")
    return key.strip(), (value.strip() or None)


def norm_key(key: str) -> str:
    parts = [p.strip() for p in key.split(" . ")]
    out = []
    for p in parts:
        try:
            out.append(str(ip_address(p)))
        except ValueError:
            out.append(p)
    return " . ".join(out)


@dataclasses.dataclass
class State:
    masq: bool = False
    probability: Fraction = Fraction(1)


@dataclasses.dataclass(frozen=True)
class Outcome:
    kind: str  # end | drop | reject | accept | dnat
    value: str | None
    state: State


@dataclasses.dataclass(frozen=True)
class Trace:
    output: str  # as upstream: "ip:port, …" | "REJECT" | "DROP" | ""
    masq_of: Mapping[str, bool]  # DNAT destination -> marked for masquerade on the way there
    probabilities: Mapping[str, Fraction]

    @property
    def masq(self) -> bool:
        assert len(set(self.masq_of.values())) <= 1, f"the mark depends on the endpoint: {self.masq_of}"
        return any(self.masq_of.values())


class Ruleset:
    """One rendered table, parsed back: chains (base spec, rules) and sets/maps (declaration, elements)."""

    def __init__(self, text: str) -> None:
        self.chains: dict[str, tuple[str | None, list[str]]] = {}
        self.sets: dict[str, tuple[list[str], list[str]]] = {}
        lines = iter(text.splitlines())
        header = next(lines)
        m = re.fullmatch(r"table (ip6?) kube-proxy \{", header)
        assert m, header
        self.family = m.group(1)
        self.comment = ""
        for raw in lines:
            line = raw.strip()
            if line.startswith("comment "):
                self.comment = line[len("comment ") :]
            elif m := re.fullmatch(r"(set|map) (\S+) \{", line):
                decl: list[str] = []
                elements: list[str] = []
                body = next(lines).strip()
                while body != "}":
                    if body.startswith("elements = {"):
                        chunk = body
                        while chunk.count("{") != chunk.count("}"):
                            chunk += " " + next(lines).strip()
                        elements = split_top(chunk[len("elements = {") : -1])
                    else:
                        decl.append(body)
                    body = next(lines).strip()
                self.sets[m.group(2)] = (decl, elements)
            elif m := re.fullmatch(r"chain (\S+) \{", line):
                base: str | None = None
                rules: list[str] = []
                body = next(lines).strip()
                while body != "}":
                    if body.startswith(("type ", "comment ")):
                        base = body
                    else:
                        rules.append(body)
                    body = next(lines).strip()
                self.chains[m.group(1)] = (base, rules)
            else:
                assert line == "}", line

    # -- evaluation

    def lookup(self, name: str, key: str) -> str | None:
        for element in self.sets[name][1]:
            k, v = split_element(element)
            if norm_key(k) == norm_key(key):
                return v or "match"
        return None

    def addr_matches(self, addr: IPAddress, value: str) -> bool:
        if value.startswith("@"):
            return any(self.addr_matches(addr, split_element(e)[0]) for e in self.sets[value[1:]][1])
        if value.startswith("{"):
            return any(self.addr_matches(addr, v) for v in split_top(value[1:-1]))
        net = ip_network(value, strict=False)
        return net.version == addr.version and addr in net

    def run(self, chain: str, pkt: Packet, st: State, i: int = 0) -> Iterator[Outcome]:
        rules = self.chains[chain][1]
        if i == len(rules):
            yield Outcome("end", None, st)
            return
        for action, target, st2 in self.eval_rule(tokenize(rules[i]), 0, pkt, st):
            if action == "next":
                yield from self.run(chain, pkt, st2, i + 1)
            elif action == "jump":
                assert target is not None
                for out in self.run(target, pkt, st2):
                    if out.kind == "end":
                        yield from self.run(chain, pkt, out.state, i + 1)
                    else:
                        yield out
            elif action == "goto":
                assert target is not None
                yield from self.run(target, pkt, st2)
            elif action == "return":
                yield Outcome("end", None, st2)
            else:
                yield Outcome(action, target, st2)

    def verdict(self, verdict: str, pkt: Packet, st: State) -> Iterator[tuple[str, str | None, State]]:
        return self.eval_rule(tokenize(verdict), 0, pkt, st)

    def eval_rule(
        self, t: list[str], i: int, pkt: Packet, st: State
    ) -> Iterator[tuple[str, str | None, State]]:
        if i >= len(t):
            yield "next", None, st
            return
        word = t[i]
        if word in ("ip", "ip6"):
            assert word == self.family, f"{word} in an {self.family} table"
            if t[i + 2] == ".":  # ip daddr . meta l4proto . th dport vmap @map
                assert t[i + 1 : i + 9] == ["daddr", ".", "meta", "l4proto", ".", "th", "dport", "vmap"], t
                found = self.lookup(t[i + 9][1:], f"{pkt.dst} . {pkt.proto} . {pkt.dport}")
                if found is None:
                    yield "next", None, st
                else:
                    yield from self.verdict(found, pkt, st)
                return
            addr = pkt.src if t[i + 1] == "saddr" else pkt.dst
            negate = t[i + 2] == "!="
            value = t[i + 3] if negate else t[i + 2]
            if self.addr_matches(addr, value) != negate:
                yield from self.eval_rule(t, i + (4 if negate else 3), pkt, st)
            else:
                yield "next", None, st
        elif word == "meta" and t[i + 1] == "l4proto":
            if t[i + 2] == ".":  # meta l4proto . th dport vmap @map
                assert t[i + 3 : i + 6] == ["th", "dport", "vmap"], t
                found = self.lookup(t[i + 6][1:], f"{pkt.proto} . {pkt.dport}")
                if found is None:
                    yield "next", None, st
                else:
                    yield from self.verdict(found, pkt, st)
            elif t[i + 2] == pkt.proto:
                yield from self.eval_rule(t, i + 3, pkt, st)
            else:
                yield "next", None, st
        elif word == "fib":
            assert t[i + 1 : i + 4] == ["saddr", "type", "local"], t
            if pkt.src in pkt.node_ips:
                yield from self.eval_rule(t, i + 4, pkt, st)
            else:
                yield "next", None, st
        elif word == "ct":
            assert t[i + 1 : i + 3] == ["state", "new"], t
            yield from self.eval_rule(t, i + 3, pkt, st)
        elif word == "numgen":
            assert t[i + 1 : i + 3] == ["random", "mod"], t
            n = int(t[i + 3])
            if t[i + 4] == "vmap":
                for element in split_top(t[i + 5][1:-1]):
                    _, target = split_element(element)
                    assert target is not None
                    branch = dataclasses.replace(st, probability=st.probability / n)
                    yield from self.verdict(target, pkt, branch)
            else:
                assert t[i + 4] == "0", t
                hit = dataclasses.replace(st, probability=st.probability / n)
                yield from self.eval_rule(t, i + 5, pkt, hit)
                if n > 1:
                    yield "next", None, dataclasses.replace(st, probability=st.probability * (n - 1) / n)
        elif word == "mark":
            assert t[i : i + 5] == ["mark", "set", "mark", "or", "0x4000"], t
            yield from self.eval_rule(t, i + 5, pkt, dataclasses.replace(st, masq=True))
        elif word == "update":
            yield from self.eval_rule(t, i + 3, pkt, st)
        elif word == "comment":
            yield from self.eval_rule(t, i + 2, pkt, st)
        elif word == "dnat":
            assert t[i + 1] == "to", t
            yield "dnat", t[i + 2], st
        elif word in ("jump", "goto"):
            yield word, t[i + 1], st
        elif word in ("return", "drop", "reject", "accept"):
            yield word, None, st
        else:
            raise AssertionError(f"the tracer does not know {word!r} in {t}")

    def trace(self, pkt: Packet) -> Trace:
        """What happens to the first packet of a connection arriving at the node (prerouting)."""
        for out in self.run("filter-prerouting-pre-dnat", pkt, State()):
            if out.kind == "drop":
                return Trace("DROP", {}, {})
            assert out.kind == "end", out
        dnat: dict[str, Fraction] = {}
        masq: dict[str, bool] = {}
        untouched = False
        for out in self.run("nat-prerouting", pkt, State()):
            if out.kind == "dnat":
                assert out.value is not None
                dnat[out.value] = dnat.get(out.value, Fraction(0)) + out.state.probability
                assert masq.setdefault(out.value, out.state.masq) == out.state.masq
            else:
                assert out.kind == "end", out
                untouched = True
        if dnat:
            assert not untouched, "some branches translate the packet, some do not"
            assert sum(dnat.values()) == 1
            return Trace(", ".join(sorted(dnat)), masq, dnat)
        hook = "filter-input" if pkt.dst in pkt.node_ips else "filter-forward"
        for out in self.run(hook, pkt, State()):
            if out.kind in ("drop", "reject"):
                return Trace(out.kind.upper(), {}, {})
        return Trace("", {}, {})


@dataclasses.dataclass(frozen=True)
class Packet:
    src: IPAddress
    dst: IPAddress
    dport: int
    proto: str
    node_ips: frozenset[IPAddress]


# -- the vectors as planned state -------------------------------------------------------------------------

CLUSTER = "ack"
NODE = "test-node"


def vectors() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(conformance("packet-flow-vectors.yaml").read_text())
    return data


def cluster_resource(pod_cidr: str, service_cidr: str) -> Cluster:
    return Cluster.model_validate(
        {
            "apiVersion": "acknet.io/v1",
            "kind": "Cluster",
            "metadata": {"name": CLUSTER},
            "spec": {
                "vpc": "prod",
                "networkPlugin": "flannel",
                "podCidr": pod_cidr,
                "serviceCidr": service_cidr,
                "nodePools": [{"name": "default", "instanceType": "ecs.g7.xlarge", "vswitches": ["node"]}],
            },
        }
    )


def node_instance(name: str, ips: Sequence[str]) -> Instance:
    addrs = tuple(IPv4Address(ip) for ip in ips)
    eni = Eni(
        id=f"eni-{name}",
        instance=name,
        index=0,
        vswitch="node",
        mac="02:00:00:00:00:01",
        primary_ip=addrs[0],
        ips=addrs,
        security_groups=(),
    )
    return Instance(
        name=name,
        instance_type="ecs.g7.xlarge",
        zone="cn-hangzhou-h",
        vswitch="node",
        primary_ip=addrs[0],
        security_groups=(),
        enis=(eni,),
        cluster=CLUSTER,
        node_pool="default",
    )


def planned_service(spec: Mapping[str, Any]) -> PlannedService:
    ports = tuple(
        PlannedServicePort(
            name=p.get("name"),
            protocol=p.get("protocol", "TCP"),
            port=p["port"],
            target_port=p.get("targetPort", p["port"]),
            node_port=p.get("nodePort") or None,
        )
        for p in spec["ports"]
    )
    timeout = None
    if spec.get("sessionAffinity") == "ClientIP":
        timeout = spec.get("sessionAffinityConfig", {}).get("clientIP", {}).get("timeoutSeconds", 10800)
    return PlannedService(
        cluster=CLUSTER,
        namespace=spec["namespace"],
        name=spec["name"],
        type=spec.get("type", "ClusterIP"),
        cluster_ip=IPv4Address(spec["clusterIP"]),
        ports=ports,
        selector=None,
        session_affinity_timeout=timeout,
        external_traffic_policy=spec.get("externalTrafficPolicy", "Cluster"),
        internal_traffic_policy=spec.get("internalTrafficPolicy", "Cluster"),
    )


def external_of(spec: Mapping[str, Any]) -> ServiceExternal:
    return ServiceExternal(
        external_ips=tuple(ip_address(ip) for ip in spec.get("externalIPs", ())),
        load_balancer_ips=tuple(ip_address(ip) for ip in spec.get("loadBalancerIngress", ())),
        # kube-proxy trims the ranges (the vectors keep upstream's leading-space regression case).
        source_ranges=tuple(ip_network(r.strip()) for r in spec.get("loadBalancerSourceRanges", ())),
    )


def planned_slice(spec: Mapping[str, Any], index: int) -> PlannedEndpointSlice:
    namespace, service = spec["service"].split("/")
    return PlannedEndpointSlice(
        cluster=CLUSTER,
        namespace=namespace,
        name=f"{service}-{index:05d}",
        service=service,
        endpoints=tuple(
            EndpointAddress(ip=IPv4Address(e["ip"]), pod=None, node=e.get("node")) for e in spec["endpoints"]
        ),
        ports=tuple(
            EndpointSlicePort(p.get("name"), p["port"], p.get("protocol", "TCP")) for p in spec["ports"]
        ),
        managed=False,
    )


def vector_plan(
    services: Sequence[Mapping[str, Any]], slices: Sequence[Mapping[str, Any]], conv: Mapping[str, Any]
) -> Plan:
    ips = [
        conv["primary_node_ip"],
        *(ip for ip in conv["node_ips"] if ":" not in ip and ip != conv["primary_node_ip"]),
    ]
    return Plan(
        resources=Resources(clusters={CLUSTER: cluster_resource(conv["pod_cidr"], conv["service_cidr"])}),
        vswitches=(),
        instances=(node_instance(NODE, ips),),
        pods=(),
        services=tuple(planned_service(s) for s in services),
        endpoint_slices=tuple(planned_slice(s, i) for i, s in enumerate(slices)),
        routes=(),
    )


def render_vector_plan(
    services: Sequence[Mapping[str, Any]],
    slices: Sequence[Mapping[str, Any]],
    conv: Mapping[str, Any],
    choice: EndpointChoice,
    nodeport_addresses: Sequence[str] | None = None,
) -> str:
    ranges = None
    if nodeport_addresses is not None:
        ranges = [IPv4Network(r) for r in nodeport_addresses if ":" not in r]
    return render_kube_proxy(
        vector_plan(services, slices, conv),
        NODE,
        CLUSTER,
        "acknet",
        external={f"{s['namespace']}/{s['name']}": external_of(s) for s in services},
        nodeport_addresses=ranges,
        endpoint_choice=choice,
    )


def render_ipv6_subcase(sub: Mapping[str, Any], conv: Mapping[str, Any], choice: EndpointChoice) -> str:
    """The planned state is IPv4 (the emulated VPCs are); upstream's IPv6 sub-cases go in one layer lower."""
    node_ips = [ip_address(ip) for ip in conv["node_ips"] if ":" in ip]
    addresses = sub["nodePortAddresses"]
    if addresses == "default":
        nodeport_ips: tuple[IPAddress, ...] = (node_ips[0],)
    else:
        nets = [ip_network(r) for r in addresses if ":" in r]
        nodeport_ips = tuple(ip for ip in node_ips if any(ip in n for n in nets))
    endpoints = tuple(
        ProxyEndpoint(ip=ip_address(e["ip"]), port=80, local=e.get("node") == NODE) for e in sub["endpoints"]
    )
    port = ProxyServicePort(
        namespace="ns1",
        name="svc1",
        port_name="p80",
        protocol="TCP",
        cluster_ip=ip_address(sub["service"]["clusterIP"]),
        port=80,
        endpoints=endpoints,
        node_port=3001,
    )
    pod_cidrs: tuple[IPNetwork, ...] = (ip_network("fd00:10::/64"),)
    return render_table(
        ProxyInput(
            family="ip6",
            node=NODE,
            node_ip=node_ips[0],
            nodeport_ips=nodeport_ips,
            pod_cidrs=pod_cidrs,
            service_cidrs=(ip_network("fd00:10:96::/112"),),
            service_ports=(port,),
        ),
        endpoint_choice=choice,
    )


def flow_cases() -> Iterator[Any]:
    if not (shared_dir() / "conformance" / "kube-proxy-nftables" / "packet-flow-vectors.yaml").exists():
        return
    data = vectors()
    for test in data["tests"]:
        if "subcases" in test:
            for sub in test["subcases"]:
                for flow in sub["flows"]:
                    yield pytest.param(test, sub, flow, id=f"{test['name']}/{sub['name']}/{flow['name']}")
        else:
            for flow in test["flows"]:
                yield pytest.param(test, None, flow, id=f"{test['name']}/{flow['name']}")


FLOWS = list(flow_cases())


def test_all_59_vectors_are_collected() -> None:
    conformance("packet-flow-vectors.yaml")
    assert len(FLOWS) == 59


def render_for(test: Mapping[str, Any], sub: Mapping[str, Any] | None, choice: EndpointChoice) -> str:
    conv = vectors()["conventions"]
    if sub is None:
        return render_vector_plan(test["services"], test["endpointSlices"], conv, choice)
    if ":" in sub["service"]["clusterIP"]:
        return render_ipv6_subcase(sub, conv, choice)
    service = {
        "namespace": "ns1",
        "name": "svc1",
        "type": "NodePort",
        "clusterIP": sub["service"]["clusterIP"],
        "ports": [{"name": "p80", "port": 80, "protocol": "TCP", "nodePort": 3001}],
    }
    slices = [
        {
            "service": "ns1/svc1",
            "endpoints": sub["endpoints"],
            "ports": [{"name": "p80", "port": 80, "protocol": "TCP"}],
        }
    ]
    addresses = sub["nodePortAddresses"]
    return render_vector_plan([service], slices, conv, choice, None if addresses == "default" else addresses)


@pytest.mark.parametrize("choice", CHOICES)
@pytest.mark.parametrize(("test", "sub", "flow"), FLOWS)
def test_packet_flow_vector(
    test: Mapping[str, Any], sub: Mapping[str, Any] | None, flow: Mapping[str, Any], choice: EndpointChoice
) -> None:
    conv = vectors()["conventions"]
    ruleset = Ruleset(render_for(test, sub, choice))
    pkt = Packet(
        src=ip_address(flow["src"]),
        dst=ip_address(flow["dst"]),
        dport=flow["dport"],
        proto=flow.get("protocol", "TCP").lower(),
        node_ips=frozenset(ip_address(ip) for ip in conv["node_ips"]),
    )
    got = ruleset.trace(pkt)
    expected = ", ".join(sorted(x.strip() for x in flow["output"].split(","))) if flow["output"] else ""
    assert got.output == expected
    if expected and expected not in ("REJECT", "DROP"):
        assert got.masq == flow.get("masq", False)
        n = len(got.probabilities)
        assert all(p == Fraction(1, n) for p in got.probabilities.values()), got.probabilities


# -- TestOverallNFTablesRules, object by object -------------------------------------------------------------

# Where acknet's table differs from upstream's expected transaction, on purpose:
# 1. The table comment names the node, cluster and emulation (upstream: "rules for kube-proxy"): a person
#    reading `nft list ruleset` inside an emulation sees whose table it is.
# 2. Base chains say `policy accept;` explicitly (upstream leaves the default, which is accept).
# 3. With endpoint_choice="cascade" (the default) the `numgen random mod N vmap { … }` rule of a service
#    chain is written as N-1 `numgen random mod k 0 goto …` rules and a final `goto` (same uniform choice,
#    no anonymous set per service: those made a 10,000-Service table load in 13-16 s instead of ~2 s on this
#    kernel, see the module docstring). With endpoint_choice="vmap" the rules are upstream's, to the letter.
# Nothing else differs: the same chains, the same rules and the same map and set elements.


@dataclasses.dataclass
class Objects:
    comment: str
    chains: dict[str, tuple[tuple[str | None, ...] | None, list[str]]]
    sets: dict[str, tuple[frozenset[str], frozenset[str]]]


def base_spec(text: str | None) -> tuple[str | None, ...] | None:
    """(type, hook, priority, comment) of a chain's head, or None for a regular chain without a comment."""
    if text is None:
        return None
    m = re.search(r"type (\w+) hook (\w+) priority (-?\d+)", text)
    c = re.search(r'comment ("[^"]*")', text)
    if m is None and c is None:
        return None
    return (*(m.groups() if m else (None, None, None)), c.group(1) if c else None)


def decl_set(parts: Sequence[str]) -> frozenset[str]:
    return frozenset(p.strip() for part in parts for p in part.split(";") if p.strip())


def parse_transaction(text: str) -> Objects:
    """Upstream's expected transaction (``add table/set/map/chain/rule/element …`` lines)."""
    objs = Objects("", {}, {})
    elements: dict[str, set[str]] = {}
    prefix = "ip kube-proxy "
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        verb, _, rest = line.partition(" ")
        kind, _, rest = rest.partition(" ")
        assert verb == "add" and rest.startswith(prefix.strip()), line
        rest = rest[len(prefix) :] if kind != "table" else rest
        if kind == "table":
            objs.comment = re.search(r'comment ("[^"]*")', rest).group(1)  # type: ignore[union-attr]
        elif kind in ("set", "map"):
            name, _, body = rest.partition(" ")
            objs.sets[name] = (decl_set([body.strip()[1:-1]]), frozenset())
        elif kind == "chain":
            name, _, body = rest.partition(" ")
            objs.chains[name] = (base_spec(body or None), [])
        elif kind == "rule":
            name, _, rule = rest.partition(" ")
            objs.chains[name][1].append(rule)
        elif kind == "element":
            name, _, body = rest.partition(" ")
            elements.setdefault(name, set()).update(split_top(body.strip()[1:-1]))
    for name, elems in elements.items():
        objs.sets[name] = (objs.sets[name][0], frozenset(elems))
    return objs


def objects_of(text: str) -> Objects:
    rs = Ruleset(text)
    return Objects(
        rs.comment,
        {name: (base_spec(base), rules) for name, (base, rules) in rs.chains.items()},
        {name: (decl_set(decl), frozenset(elements)) for name, (decl, elements) in rs.sets.items()},
    )


def as_cascade(rule: str) -> list[str]:
    m = re.fullmatch(r"numgen random mod (\d+) vmap \{ (.*) \}", rule)
    if not m:
        return [rule]
    targets = [split_element(e)[1].split()[1] for e in split_top(m.group(2))]  # type: ignore[union-attr]
    n = len(targets)
    return [f"numgen random mod {n - i} 0 goto {t}" for i, t in enumerate(targets[:-1])] + [
        f"goto {targets[-1]}"
    ]


@pytest.mark.parametrize("choice", CHOICES)
def test_overall_ruleset_matches_upstream(choice: EndpointChoice) -> None:
    data = yaml.safe_load(conformance("TestOverallNFTablesRules.input.yaml").read_text())
    expected = parse_transaction(conformance("TestOverallNFTablesRules.expected.nft").read_text())
    conv = vectors()["conventions"]
    got = objects_of(render_vector_plan(data["services"], data["endpointSlices"], conv, choice))

    assert expected.comment == '"rules for kube-proxy"'
    assert got.comment.startswith('"rules for kube-proxy on node test-node')  # difference 1
    assert sorted(got.sets) == sorted(expected.sets)
    for name, (decl, elements) in expected.sets.items():
        assert got.sets[name][0] == decl, name
        assert got.sets[name][1] == elements, name
    assert sorted(got.chains) == sorted(expected.chains)
    for name, (base, rules) in expected.chains.items():
        assert got.chains[name][0] == base, name  # difference 2 is normalised away by base_spec
        want = rules if choice == "vmap" else [r for rule in rules for r in as_cascade(rule)]  # difference 3
        assert got.chains[name][1] == want, name


# -- behaviour beyond the vectors ------------------------------------------------------------------------------


def test_chain_name_hash_is_kube_proxys() -> None:
    assert hash_and_truncate("ns1/svc1/tcp/p80") == "ULMVA6XW-ns1/svc1/tcp/p80"
    port = ProxyServicePort("ns1", "svc1", "p80", "TCP", IPv4Address("172.30.0.41"), 80, ())
    ep = ProxyEndpoint(IPv4Address("10.180.0.1"), 80, local=False)
    assert endpoint_chain_base(port, ep) == "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
    long = "x" * 300
    assert len(hash_and_truncate(long)) == 240 and hash_and_truncate(long).endswith("...")


NODE_IP, OTHER_NODE_IP = "192.168.0.10", "192.168.0.11"
CONV = {
    "pod_cidr": "172.20.0.0/16",
    "service_cidr": "172.21.0.0/20",
    "primary_node_ip": NODE_IP,
    "node_ips": [],
}


def svc(
    name: str, ip: str | None, ports: list[tuple[str | None, int, str, int | str]], **kw: Any
) -> PlannedService:
    return PlannedService(
        cluster=CLUSTER,
        namespace="shop",
        name=name,
        type=kw.pop("type", "ClusterIP"),
        cluster_ip=IPv4Address(ip) if ip else None,
        ports=tuple(
            PlannedServicePort(n, proto, port, target, kw.pop(f"node_port_{port}", None))  # type: ignore[arg-type]
            for n, port, proto, target in ports
        ),
        selector={"app": name},
        **kw,
    )


def ep(ip: str, node: str | None = "node-1", **kw: Any) -> EndpointAddress:
    return EndpointAddress(ip=IPv4Address(ip), pod=f"shop/pod-{ip.rsplit('.', 1)[1]}", node=node, **kw)


def eps_slice(
    service: str, endpoints: list[EndpointAddress], ports: list[tuple[str | None, int, str]], n: int = 0
) -> PlannedEndpointSlice:
    return PlannedEndpointSlice(
        cluster=CLUSTER,
        namespace="shop",
        name=f"{service}-{n:05d}",
        service=service,
        endpoints=tuple(endpoints),
        ports=tuple(EndpointSlicePort(name, port, proto) for name, port, proto in ports),  # type: ignore[arg-type]
    )


def small_plan() -> Plan:
    """One of each feature on node ``node-1`` (pods 172.20.0.0/16, Flannel; node-2 is the other node)."""
    services = (
        # several ports, TCP and UDP, a named targetPort resolved per pod (two slices, two numbers)
        svc("web", "172.21.0.20", [("http", 80, "TCP", "http"), ("dns", 53, "UDP", 53)]),
        # NodePort, externalTrafficPolicy Local, sessionAffinity ClientIP
        svc(
            "api",
            "172.21.0.21",
            [("api", 9090, "TCP", 9090)],
            type="NodePort",
            node_port_9090=30090,
            external_traffic_policy="Local",
            session_affinity_timeout=600,
        ),
        # NodePort, Cluster policy, only a remote endpoint
        svc("shop", "172.21.0.22", [(None, 8080, "TCP", 8080)], type="NodePort", node_port_8080=30080),
        # internalTrafficPolicy Local, endpoints on the other node only -> drop
        svc("local-only", "172.21.0.23", [("p", 80, "TCP", 80)], internal_traffic_policy="Local"),
        # selector matching nothing -> reject
        svc("empty", "172.21.0.24", [("p", 80, "TCP", 80)]),
        # one ready + one terminating endpoint; and one with only a serving terminating endpoint
        svc("rolling", "172.21.0.25", [("p", 80, "TCP", 80)]),
        svc("draining", "172.21.0.26", [("p", 80, "TCP", 80)]),
        svc("headless", None, [("p", 80, "TCP", 80)]),
        PlannedService(
            CLUSTER, "shop", "ext", "ExternalName", None, (), None, external_name="db.example.com"
        ),
    )
    slices = (
        eps_slice("web", [ep("172.20.0.5")], [("http", 8080, "TCP"), ("dns", 53, "UDP")], 0),
        eps_slice("web", [ep("172.20.1.5", "node-2")], [("http", 8081, "TCP"), ("dns", 53, "UDP")], 1),
        eps_slice("api", [ep("172.20.0.6"), ep("172.20.1.6", "node-2")], [("api", 9090, "TCP")]),
        eps_slice("shop", [ep("172.20.1.7", "node-2")], [(None, 8080, "TCP")]),
        eps_slice("local-only", [ep("172.20.1.8", "node-2")], [("p", 80, "TCP")]),
        eps_slice(
            "rolling",
            [ep("172.20.0.9"), ep("172.20.0.10", ready=False, serving=True, terminating=True)],
            [("p", 80, "TCP")],
        ),
        eps_slice(
            "draining",
            [
                ep("172.20.0.11", ready=False, serving=True, terminating=True),
                ep("172.20.0.12", ready=False, serving=False, terminating=False),
            ],
            [("p", 80, "TCP")],
        ),
        eps_slice("headless", [ep("172.20.0.13")], [("p", 80, "TCP")]),
    )
    base = vector_plan([], [], CONV)
    return dataclasses.replace(
        base,
        instances=(node_instance("node-1", [NODE_IP]), node_instance("node-2", [OTHER_NODE_IP])),
        services=services,
        endpoint_slices=slices,
    )


def small_table(choice: EndpointChoice = "cascade") -> str:
    return render_kube_proxy(small_plan(), "node-1", CLUSTER, "acknet", endpoint_choice=choice)


def test_golden() -> None:
    text = small_table()
    path = GOLDEN / "kube_proxy_node-1.nft"
    if os.environ.get("ACKNET_UPDATE_GOLDEN"):
        path.write_text(text)
    expected = path.read_text()
    diff = "".join(
        difflib.unified_diff(expected.splitlines(True), text.splitlines(True), "golden", "rendered")
    )
    assert text == expected, diff


def test_render_is_pure_and_deterministic_whatever_the_input_order() -> None:
    plan = small_plan()
    shuffled = dataclasses.replace(
        plan, services=plan.services[::-1], endpoint_slices=plan.endpoint_slices[::-1]
    )
    assert small_table() == small_table()
    assert render_kube_proxy(shuffled, "node-1", CLUSTER, "acknet") == small_table()
    assert small_table().count("\ntable ") == 0 and small_table().startswith("table ip kube-proxy {\n")


def trace(text: str, src: str, dst: str, dport: int, proto: str = "tcp") -> Trace:
    ips = frozenset({ip_address(NODE_IP)})
    return Ruleset(text).trace(Packet(ip_address(src), ip_address(dst), dport, proto, ips))


POD, OUTSIDE = "172.20.0.100", "203.0.113.7"


@pytest.mark.parametrize("choice", CHOICES)
@pytest.mark.parametrize(
    ("src", "dst", "dport", "proto", "output", "masq"),
    [
        pytest.param(
            POD,
            "172.21.0.20",
            80,
            "tcp",
            "172.20.0.5:8080, 172.20.1.5:8081",
            False,
            id="named-port-per-slice",
        ),
        pytest.param(POD, "172.21.0.20", 53, "udp", "172.20.0.5:53, 172.20.1.5:53", False, id="udp-port"),
        pytest.param(POD, "172.21.0.20", 53, "tcp", "REJECT", False, id="udp-only-port-rejects-tcp"),
        pytest.param(
            NODE_IP,
            "172.21.0.20",
            80,
            "tcp",
            "172.20.0.5:8080, 172.20.1.5:8081",
            True,
            id="node-to-clusterip-masq",
        ),
        pytest.param(OUTSIDE, NODE_IP, 30090, "tcp", "172.20.0.6:9090", False, id="etp-local-keeps-client"),
        pytest.param(
            POD,
            NODE_IP,
            30090,
            "tcp",
            "172.20.0.6:9090, 172.20.1.6:9090",
            False,
            id="etp-local-pod-short-circuit",
        ),
        pytest.param(
            NODE_IP,
            NODE_IP,
            30090,
            "tcp",
            "172.20.0.6:9090, 172.20.1.6:9090",
            True,
            id="etp-local-node-short-circuit",
        ),
        pytest.param(OUTSIDE, NODE_IP, 30080, "tcp", "172.20.1.7:8080", True, id="etp-cluster-masq"),
        pytest.param(OUTSIDE, OTHER_NODE_IP, 30080, "tcp", "", False, id="nodeport-only-on-own-ip"),
        pytest.param(POD, "172.21.0.23", 80, "tcp", "DROP", False, id="itp-local-without-local-drops"),
        pytest.param(POD, "172.21.0.24", 80, "tcp", "REJECT", False, id="no-endpoints-rejects"),
        pytest.param(POD, "172.21.0.24", 81, "tcp", "REJECT", False, id="unknown-port-of-clusterip"),
        pytest.param(POD, "172.21.0.99", 80, "tcp", "DROP", False, id="unallocated-clusterip"),
        pytest.param(
            POD, "172.21.0.25", 80, "tcp", "172.20.0.9:80", False, id="terminating-skipped-while-ready"
        ),
        pytest.param(
            POD, "172.21.0.26", 80, "tcp", "172.20.0.11:80", False, id="serving-terminating-fallback"
        ),
    ],
)
def test_features(
    src: str, dst: str, dport: int, proto: str, output: str, masq: bool, choice: EndpointChoice
) -> None:
    got = trace(small_table(choice), src, dst, dport, proto)
    assert got.output == output
    if output not in ("", "REJECT", "DROP"):
        assert got.masq == masq


def test_hairpin_marks_masquerade_only_towards_the_pod_itself() -> None:
    got = trace(small_table(), "172.20.0.9", "172.21.0.25", 80)
    assert got.output == "172.20.0.9:80" and got.masq
    got = trace(small_table(), "172.20.0.5", "172.21.0.20", 80)
    assert got.masq_of == {"172.20.0.5:8080": True, "172.20.1.5:8081": False}


def test_headless_and_external_name_make_no_rules() -> None:
    text = small_table()
    assert "headless" not in text and "/ext/" not in text and "172.20.0.13" not in text


def test_etp_local_without_local_endpoint_drops_outside_but_serves_pods() -> None:
    # api (externalTrafficPolicy Local) with its node-1 endpoint gone, seen from node-1:
    plan = small_plan()
    slices = tuple(
        dataclasses.replace(s, endpoints=(ep("172.20.1.6", "node-2"),)) if s.service == "api" else s
        for s in plan.endpoint_slices
    )
    text = render_kube_proxy(dataclasses.replace(plan, endpoint_slices=slices), "node-1", CLUSTER, "acknet")
    assert trace(text, OUTSIDE, NODE_IP, 30090).output == "DROP"
    assert trace(text, POD, NODE_IP, 30090).output == "172.20.1.6:9090"
    assert trace(text, POD, "172.21.0.21", 9090).output == "172.20.1.6:9090"


def test_session_affinity_sets_per_endpoint() -> None:
    rs = Ruleset(small_table())
    affinity = sorted(n for n in rs.sets if n.startswith("affinity-"))
    assert len(affinity) == 2
    for name in affinity:
        assert rs.sets[name][0] == ["type ipv4_addr", "flags dynamic,timeout", "timeout 600s"]
        endpoint = "endpoint-" + name.removeprefix("affinity-")
        assert f"update @{name} {{ ip saddr }}" in rs.chains[endpoint][1]


def test_terway_detector_is_the_pod_vswitches() -> None:
    plan = small_plan()
    spec = plan.resources.clusters[CLUSTER].model_dump(by_alias=True)
    spec["spec"].update(networkPlugin="terway", podVSwitches=["pod-h", "pod-i"], podCidr=None)
    from acknet.model.cloud import VSwitch

    def vsw(name: str, cidr: str) -> VSwitch:
        return VSwitch.model_validate(
            {
                "apiVersion": "acknet.io/v1",
                "kind": "VSwitch",
                "metadata": {"name": name},
                "spec": {"vpc": "prod", "cidrBlock": cidr, "zoneId": "cn-hangzhou-h"},
            }
        )

    resources = Resources(
        clusters={CLUSTER: Cluster.model_validate(spec)},
        vswitches={"pod-i": vsw("pod-i", "192.168.32.0/19"), "pod-h": vsw("pod-h", "192.168.64.0/19")},
    )
    text = render_kube_proxy(dataclasses.replace(plan, resources=resources), "node-1", CLUSTER, "acknet")
    assert "ip saddr != { 192.168.32.0/19, 192.168.64.0/19 } jump mark-for-masquerade" in text


def test_replace_script_wraps_the_table() -> None:
    text = small_table()
    script = replace_script(text)
    assert script.startswith("add table ip kube-proxy\ndelete table ip kube-proxy\n")
    assert script.endswith(text)


def test_the_shop_example_renders_for_every_node() -> None:
    from acknet.controllers.plan import plan as make_plan
    from acknet.model.build import build_resources
    from acknet.model.documents import Source

    folder = REPO / "examples" / "shop"
    sources = [Source(str(p), p.read_text()) for p in sorted(folder.glob("*.yaml"))]
    planned = make_plan(build_resources(sources))
    nodes = [i for i in planned.instances if i.is_node]
    assert nodes
    for node in nodes:
        assert node.cluster is not None
        text = render_kube_proxy(planned, node.name, node.cluster, "acknet")
        rs = Ruleset(text)
        # kube-dns forwards to the CoreDNS pods, like every other Service.
        dns = planned.cluster_dns[node.cluster]
        assert str(dns) in rs.sets["cluster-ips"][1]
        assert any(e.startswith(f"{dns} . udp . 53 : goto service-") for e in rs.sets["service-ips"][1])
        api = next(s for s in planned.services if s.name == "api")
        assert any(
            e.startswith(f"{api.cluster_ip} . tcp . 9090 : goto service-") for e in rs.sets["service-ips"][1]
        )


# -- syntax, checked by the real nft in a throwaway namespace --------------------------------------------


@pytest.fixture
def scratch_netns() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("ip") is None:
        pytest.skip("needs root, nft and ip to check the syntax in a throwaway network namespace")
    name = "kpt" + secrets.token_hex(4)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def nft_check(netns: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "-c", "-f", "-"],
        input=script,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("choice", CHOICES)
def test_nft_accepts_the_tables(scratch_netns: str, choice: EndpointChoice) -> None:
    data = yaml.safe_load(conformance("TestOverallNFTablesRules.input.yaml").read_text())
    conv = vectors()["conventions"]
    texts = [small_table(choice), render_vector_plan(data["services"], data["endpointSlices"], conv, choice)]
    for sub in vectors()["tests"][3]["subcases"]:
        texts.append(render_for(vectors()["tests"][3], sub, choice))
    for text in texts:
        for script in (text, replace_script(text)):
            result = nft_check(scratch_netns, script)
            assert result.returncode == 0, result.stderr
