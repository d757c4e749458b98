"""``analysis.trace``: traces name what decided on every hop, and every drop says what would change it.

The suggestions are checked by doing what they say: the security group rule is added to its group,
the NetworkPolicy to the files, and the same packet is traced again: the hop that blocked it must
pass (a later hop may still block; the next trace explains that one).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from acknet.analysis.endpoints import ServiceEndpoint
from acknet.analysis.trace import AmbiguousEndpoint, Suggestion, Trace, Tracer, parse_target
from acknet.controllers.plan import plan
from acknet.controllers.state import Plan
from acknet.model.build import build_resources
from acknet.model.cloud import SecurityGroupRule
from acknet.model.documents import Source
from acknet.store.files import read_sources

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = sorted(p.name for p in (REPO / "examples").iterdir() if p.is_dir())


def doc(kind: str, name: str, spec: str, api: str = "acknet.io/v1", meta: str = "") -> str:
    return f"---\napiVersion: {api}\nkind: {kind}\nmetadata: {{name: {name}{meta}}}\nspec:\n{spec}\n"


def pod(name: str, node: str, labels: str, port: int, namespace: str = "default") -> str:
    return doc(
        "Pod",
        name,
        f"  nodeName: {node}\n  containers:\n  - name: main\n    ports: [{{containerPort: {port}}}]",
        api="v1",
        meta=f", namespace: {namespace}, labels: {labels}",
    )


# A small Terway cloud whose groups drop on purpose: an enterprise group that opens no egress, a
# priority-1 drop nothing can outrank, a priority-5 drop an accept can go before.
SMALL = (
    doc("VPC", "prod", "  cidrBlock: 192.168.0.0/16")
    + doc("VSwitch", "node-h", "  {vpc: prod, cidrBlock: 192.168.0.0/24, zoneId: cn-hangzhou-h}")
    + doc("VSwitch", "pod-h", "  {vpc: prod, cidrBlock: 192.168.32.0/19, zoneId: cn-hangzhou-h}")
    + doc("VSwitch", "data-h", "  {vpc: prod, cidrBlock: 192.168.8.0/24, zoneId: cn-hangzhou-h}")
    + doc("VPC", "other", "  cidrBlock: 10.0.0.0/16")
    + doc("VSwitch", "other-h", "  {vpc: other, cidrBlock: 10.0.0.0/24, zoneId: cn-hangzhou-h}")
    + doc("SecurityGroup", "other-sg", "  vpc: other\n  rules: []")
    + doc("ECSInstance", "far-1", "  {vswitch: other-h, securityGroups: [other-sg], ports: [{port: 5432}]}")
    + doc(
        "SecurityGroup",
        "cluster-sg",
        "  vpc: prod\n  innerAccessPolicy: Drop\n  rules:\n"
        "  - {direction: ingress, ipProtocol: tcp, portRange: 8080/8080, sourceCidrIp: 192.168.32.0/19}\n"
        "  - {direction: egress, policy: drop, ipProtocol: tcp, portRange: 22/22, destCidrIp: 192.168.8.0/24}\n"
        "  - {direction: ingress, ipProtocol: tcp, portRange: 30000/32767, sourceCidrIp: 192.168.8.0/24}",
    )
    + doc(
        "SecurityGroup",
        "db-sg",
        "  vpc: prod\n  rules:\n"
        "  - {direction: ingress, policy: drop, priority: 5, ipProtocol: tcp, portRange: 3306/3306,"
        " sourceCidrIp: 0.0.0.0/0}\n"
        "  - {direction: ingress, ipProtocol: tcp, portRange: 22/2222, sourceCidrIp: 192.168.0.0/16}",
    )
    + doc("SecurityGroup", "ent-sg", "  vpc: prod\n  securityGroupType: enterprise\n  rules: []")
    + doc(
        "ECSInstance",
        "db-1",
        "  {vswitch: data-h, securityGroups: [db-sg], privateIpAddress: 192.168.8.10,"
        " ports: [{port: 3306}, {port: 22}]}",
    )
    + doc("ECSInstance", "locked", "  {vswitch: data-h, securityGroups: [ent-sg], ports: [{port: 80}]}")
    + doc(
        "Cluster",
        "ack",
        "  vpc: prod\n  podVSwitches: [pod-h]\n  networkPolicy: true\n  securityGroups: [cluster-sg]\n  addons: []\n"
        "  nodePools:\n"
        "  - {name: default, vswitches: [node-h], count: 2}",
    )
    + pod("web", "ack-default-0", "{app: web}", 8080)
    + pod("api", "ack-default-1", "{app: api}", 9090)
    + pod("client", "ack-default-0", "{app: client}", 7000, namespace="team")
    + doc(
        "NetworkPolicy",
        "deny-all",
        "  podSelector: {}\n  policyTypes: [Ingress]",
        api="networking.k8s.io/v1",
        meta=", namespace: default",
    )
    + doc(
        "Service",
        "api",
        "  selector: {app: api}\n  ports: [{port: 80, targetPort: 9090}]",
        api="v1",
        meta=", namespace: default",
    )
    + doc(
        "Service",
        "local",
        "  type: NodePort\n  externalTrafficPolicy: Local\n  selector: {app: web}\n"
        "  ports: [{port: 80, targetPort: 8080}]",
        api="v1",
        meta=", namespace: default",
    )
)


def sources_of(text: str) -> list[Source]:
    return [Source("small.yaml", text)]


@pytest.fixture(scope="module")
def small() -> Tracer:
    return Tracer(plan(build_resources(sources_of(SMALL))))


def trace(tracer: Tracer, src: str, dst: str, port: int, protocol: str = "TCP") -> Trace:
    return tracer.trace(tracer.source(src), tracer.destination(dst), port, protocol)  # type: ignore[arg-type]


# -- arguments ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("shop/web-x", ("shop/web-x", None)),
        ("shop/web-x:8080", ("shop/web-x", (8080, "TCP"))),
        ("ecs/db-1:53/udp", ("ecs/db-1", (53, "UDP"))),
        ("svc/shop/web:80/TCP", ("svc/shop/web", (80, "TCP"))),
        ("app=web,tier!=db:80", ("app=web,tier!=db", (80, "TCP"))),
    ],
    ids=["name", "port", "udp", "service", "selector"],
)
def test_parse_target(text: str, expected: tuple[str, object]) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize("text", ["ecs/db-1:http", "ecs/db-1:99999", "ecs/db-1:80/icmpx"])
def test_parse_target_refuses_bad_ports(text: str) -> None:
    with pytest.raises(ValueError, match=r"port|PORT"):
        parse_target(text)


def test_a_selector_must_name_one_endpoint(small: Tracer) -> None:
    assert small.source("app=web").name == "default/web"
    with pytest.raises(AmbiguousEndpoint, match="names 2 endpoints"):
        small.destination("app in (web, api)")


def test_ports_default_to_the_declared_ones(small: Tracer) -> None:
    assert small.ports(small.destination("ecs/db-1"), None) == [(3306, "TCP"), (22, "TCP")]
    assert small.ports(small.destination("ecs/db-1"), (80, "UDP")) == [(80, "UDP")]


# -- suggestions, one per kind of blocking hop -------------------------------------------------------


def only(t: Trace) -> Suggestion:
    assert t.word == "dropped"
    (s,) = t.suggestions
    return s


def test_default_deny_ingress_asks_for_an_accept_rule(small: Tracer) -> None:
    s = only(trace(small, "ecs/db-1", "default/web", 8080))
    assert (
        s.change
        == "add to security group cluster-sg: ingress accept tcp 8080 from 192.168.8.10/32 priority 1"
    )
    assert s.snippet == {
        "direction": "ingress",
        "policy": "accept",
        "priority": 1,
        "ipProtocol": "tcp",
        "portRange": "8080/8080",
        "sourceCidrIp": "192.168.8.10/32",
    }


def test_a_drop_rule_is_outranked_by_one_priority(small: Tracer) -> None:
    s = only(trace(small, "ecs/locked", "ecs/db-1", 3306))
    # ent-sg opens no egress: the first hop that blocks is the source's own group.
    assert s.object == "security group ent-sg"
    assert s.snippet is not None and s.snippet["direction"] == "egress" and "destCidrIp" in s.snippet
    s = only(trace(small, "ecs/ack-default-0", "ecs/db-1", 3306))
    assert s.object == "security group db-sg"
    assert s.snippet is not None and s.snippet["priority"] == 4
    assert "before db-sg ingress rule 1 priority 5 (drop)" in s.change


def test_a_priority_one_drop_cannot_be_outranked(small: Tracer) -> None:
    s = only(trace(small, "default/web", "ecs/db-1", 22))
    assert s.snippet is None
    assert s.change.startswith("narrow or remove cluster-sg egress rule 2 priority 1 (drop)")


def test_a_policy_drop_names_the_policy_and_writes_one_that_allows(small: Tracer) -> None:
    s = only(trace(small, "team/client", "default/web", 8080))
    assert "NetworkPolicy default/deny-all selects default/web for ingress" in s.change
    assert s.snippet is not None and s.snippet["kind"] == "NetworkPolicy"
    assert s.snippet["spec"]["podSelector"] == {"matchLabels": {"app": "web"}}
    (peer,) = s.snippet["spec"]["ingress"][0]["from"]
    assert peer == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "team"}},
        "podSelector": {"matchLabels": {"app": "client"}},
    }


def test_nothing_listening_names_the_port_to_declare(small: Tracer) -> None:
    s = only(trace(small, "ecs/ack-default-0", "ecs/db-1", 2000))
    assert "nothing listens on 2000/TCP at ecs/db-1 (it listens on 3306/TCP, 22/TCP)" in s.change
    assert "add {port: 2000, protocol: TCP} to the spec.ports of ECSInstance db-1" in s.change
    s = only(trace(small, "ecs/ack-default-0", "default/web", 5000))
    assert "declare containerPort 5000 (protocol TCP) in Pod default/web" in s.change
    s = only(trace(small, "ecs/ack-default-0", "team/client", 7001))
    assert "declare containerPort 7001 (protocol TCP) in Pod team/client" in s.change


def test_other_vpcs_and_service_settings(small: Tracer) -> None:
    assert "one VPC" in only(trace(small, "ecs/db-1", "ecs/far-1", 5432)).change
    assert "declares the ports 80/TCP" in only(trace(small, "team/client", "svc/default/api", 81)).change
    assert "type NodePort" in only(trace(small, "ecs/db-1", "svc/default/api", 80)).change
    local = trace(small, "ecs/db-1", "svc/default/local", 80)
    changes = [s.change for s in local.suggestions]
    assert any("externalTrafficPolicy: Cluster" in c for c in changes), changes


def test_a_service_trace_branches_per_backend(small: Tracer) -> None:
    t = trace(small, "team/client", "svc/default/api", 80)
    assert t.through_service and len(t.branches) == 1
    assert t.head[0].object == "kube-proxy"
    data = t.to_json()
    assert data["verdict"] == "dropped"
    assert data["branches"] == [{"to": t.branches[0].destination, "verdict": "dropped"}]
    assert all(h["branch"] == t.branches[0].destination for h in data["hops"][1:])


def test_json_is_the_design_shape(small: Tracer) -> None:
    data = trace(small, "ecs/db-1", "default/web", 8080).to_json()
    assert data["verdict"] in ("allowed", "dropped")
    for hop in data["hops"]:
        assert {"at", "object", "rule", "action"} <= hop.keys()
    assert (data["from"], data["to"], data["port"], data["protocol"]) == (
        "ecs/db-1",
        "default/web",
        8080,
        "TCP",
    )


# -- doing what the suggestions say -------------------------------------------------------------------


def with_rule(planned: Plan, group: str, snippet: dict[str, object]) -> Plan:
    sg = planned.resources.security_groups[group]
    rule = SecurityGroupRule.model_validate(snippet)
    new = sg.model_copy(update={"spec": sg.spec.model_copy(update={"rules": [*sg.spec.rules, rule]})})
    groups = {**planned.resources.security_groups, group: new}
    return dataclasses.replace(
        planned, resources=dataclasses.replace(planned.resources, security_groups=groups)
    )


def fixed(sources: list[Source], tracer: Tracer, s: Suggestion) -> Tracer:
    assert s.snippet is not None
    if s.object.startswith("security group "):
        return Tracer(with_rule(tracer.plan, s.object.removeprefix("security group "), dict(s.snippet)))
    extra = Source("suggested.yaml", yaml.safe_dump(dict(s.snippet)))
    return Tracer(plan(build_resources([*sources, extra])))


def all_traces(tracer: Tracer) -> list[Trace]:
    index = tracer.index
    sources = [*index.pods.values(), *index.instances.values()]
    destinations = [*index.everything(), *index.services.values()]
    out = []
    for src in sources:
        for dst in destinations:
            if dst.name == src.name:
                continue
            ports = dst.declared_ports if isinstance(dst, ServiceEndpoint) else dst.ports
            out.extend(tracer.trace(src, dst, port, protocol) for port, protocol in ports)
    return out


def assert_fixes(sources: list[Source], tracer: Tracer, traces: list[Trace]) -> int:
    """Applies each distinct suggestion with a snippet once and re-traces its packet; returns how many."""
    done: set[str] = set()
    for t in traces:
        for branch in t.branches:
            s = branch.suggestion
            if branch.allowed or s is None or s.snippet is None:
                continue
            key = s.object + repr(sorted(s.snippet.items()))
            if key in done:
                continue
            done.add(key)
            again = fixed(sources, tracer, s)
            v = t.verdict
            src, dst = again.source(v.source), again.destination(v.destination)
            after = again.trace(src, dst, v.port, v.protocol)
            # Through a NodePort, a path that passes the node's group goes on to each backend.
            twins = [b for b in after.branches if b.destination.startswith(branch.destination)]
            assert twins, (branch.destination, [b.destination for b in after.branches])
            for twin in twins:
                assert twin.allowed or twin.blocking != branch.blocking, (s.change, twin.blocking)
    return len(done)


def test_suggestions_on_the_small_topology_do_what_they_say(small: Tracer) -> None:
    assert assert_fixes(sources_of(SMALL), small, all_traces(small)) >= 4


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_hop_of_every_example_names_what_decided(example: str) -> None:
    sources = read_sources([str(REPO / "examples" / example)])
    tracer = Tracer(plan(build_resources(sources)))
    traces = all_traces(tracer)
    assert traces
    for t in traces:
        hops = [h for b in t.branches for h in b.hops] + list(t.head or t.verdict.hops)
        for hop in hops:
            assert hop.at and hop.object, hop
            if hop.object.startswith("security group"):
                assert hop.rule, hop  # a user rule or the implicit default that decided
            if hop.object == "listener":
                assert hop.rule, hop
        for branch in t.branches:
            if not branch.allowed:
                assert branch.suggestion is not None, (t.verdict.source, branch.destination, branch.blocking)
        data = t.to_json()
        assert data["verdict"] == ("allowed" if t.verdict.allowed else "dropped")
    assert_fixes(sources, tracer, traces)


# -- the whole blocked path -----------------------------------------------------------------------------


def test_blocked_path_names_every_change_in_order(small: Tracer) -> None:
    src, dst = small.source("ecs/db-1"), small.destination("default/web")
    t = small.blocked_path(src, dst, 8080, "TCP")
    steps = [(s.step, s.object) for s in (*t.suggestions, *t.further)]
    # The node's group first (the packet meets it first), then the pod's policy behind it.
    assert steps == [(1, "security group cluster-sg"), (2, "namespace default")]
    assert [s["step"] for s in t.to_json()["suggestions"]] == [1, 2]
    done = small.changed([*t.suggestions, *t.further])
    assert done.trace(done.source("ecs/db-1"), done.destination("default/web"), 8080, "TCP").verdict.allowed
    # The plan of the tracer itself is left as it was.
    assert not small.trace(src, dst, 8080, "TCP").verdict.allowed


def test_blocked_path_stops_at_a_change_it_cannot_make(small: Tracer) -> None:
    t = small.blocked_path(small.source("default/web"), small.destination("ecs/db-1"), 22, "TCP")
    assert [s.step for s in t.suggestions] == [1] and t.further == ()
    assert t.suggestions[0].snippet is None  # a priority-1 drop: narrow it, nothing to add


def test_a_suggested_policy_never_replaces_one_of_the_files() -> None:
    taken = doc(
        "NetworkPolicy",
        "allow-from-client-8080",
        "  podSelector: {matchLabels: {app: nothing}}\n  policyTypes: [Ingress]",
        api="networking.k8s.io/v1",
        meta=", namespace: default",
    )
    tracer = Tracer(plan(build_resources(sources_of(SMALL + taken))))
    s = only(trace(tracer, "team/client", "default/web", 8080))
    assert s.snippet is not None and s.snippet["metadata"]["name"] == "allow-from-client-8080-2"


@pytest.mark.parametrize("example", EXAMPLES)
def test_blocked_paths_of_every_example_end_allowed_or_at_a_manual_change(example: str) -> None:
    tracer = Tracer(plan(build_resources(read_sources([str(REPO / "examples" / example)]))))
    index = tracer.index
    for t in all_traces(tracer):
        if t.verdict.allowed:
            continue
        v = t.verdict
        full = tracer.blocked_path(
            tracer.source(v.source), tracer.destination(v.destination), v.port, v.protocol
        )
        changes = [*full.suggestions, *full.further]
        assert changes
        done = tracer.changed(changes)
        after = done.trace(done.source(v.source), done.destination(v.destination), v.port, v.protocol)
        manual = [b.suggestion for b in after.branches if not b.allowed and b.suggestion is not None]
        assert after.verdict.allowed or any(s.snippet is None for s in manual), (
            v.source,
            v.destination,
            manual,
        )
    assert index.pods
