"""The per-node policy table: which nodes get one, the chains in Felix's shape, selector sets, set-element
edits for pod churn and label changes, whole-chain rewrites for policy changes, and nft syntax and edits
(checked by the real nft in a throwaway namespace: every edit script applied to the loaded table gives
the same table as loading the new one whole).

One small Terway cluster from files (two shared-ENI nodes, one exclusive-ENI node), planned by the
controllers: the renderer is pure, so every test here runs without root but the syntax checks.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from functools import cache

import pytest

from acknet.controllers.plan import plan
from acknet.controllers.state import Plan
from acknet.dataplane.render import names
from acknet.dataplane.render.policy import (
    POD_VETHS,
    TABLE_FAMILY,
    render_policies,
    replace_script,
    selector_set_name,
    set_element_changes,
    table_changes,
    table_name,
)
from acknet.model.build import build_resources
from acknet.model.documents import Source
from acknet.model.selectors import parse_calico_selector

EMULATION = "pol"


def cloud(plugin: str = "terway", network_policy: bool = True) -> str:
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
        spec: {{vpc: vpc, {cluster}, networkPolicy: {str(network_policy).lower()}, addons: [coredns], nodePools: {pools}}}
        """
    )


def pod(ns: str, name: str, labels: str, ports: str, node: str = "ack-default-0", sa: str = "default") -> str:
    placement = "nodeSelector: {pool: excl}" if node == "excl" else f"nodeName: {node}"
    return textwrap.dedent(
        f"""\
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}, namespace: {ns}, labels: {labels}}}
        spec:
          serviceAccountName: {sa}
          {placement}
          containers: [{{name: main, ports: {ports}}}]
        """
    )


NAMESPACES = (
    "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: shop}}\n"
    "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ops, labels: {team: ops}}\n"
)
WEB = pod("shop", "web", "{app: web}", "[{name: http, containerPort: 8080}]")
API = pod("shop", "api", "{app: api}", "[{name: http, containerPort: 9000}]", node="ack-default-1")
CLIENT = pod("shop", "client", "{app: client}", "[]", node="ack-default-1")
MONITOR = pod("ops", "monitor", "{app: monitor}", "[{name: scrape, containerPort: 9100}]", sa="monitor")
LEGACY = pod("shop", "legacy", "{app: legacy}", "[{containerPort: 7070}]", node="excl")
PODS = NAMESPACES + WEB + API + CLIENT + MONITOR + LEGACY


def doc(api: str, kind: str, name: str, spec: str, ns: str | None = "shop") -> str:
    meta = f"{{name: {name}, namespace: {ns}}}" if ns else f"{{name: {name}}}"
    body = textwrap.indent(textwrap.dedent(spec).strip(), "  ")
    return f"\n---\napiVersion: {api}\nkind: {kind}\nmetadata: {meta}\nspec:\n{body}\n"


def knp(name: str, spec: str, ns: str = "shop") -> str:
    return doc("networking.k8s.io/v1", "NetworkPolicy", name, spec, ns)


def cnp(name: str, spec: str, ns: str = "shop") -> str:
    return doc("projectcalico.org/v3", "NetworkPolicy", name, spec, ns)


def gnp(name: str, spec: str) -> str:
    return doc("projectcalico.org/v3", "GlobalNetworkPolicy", name, spec, None)


DEFAULT_DENY = knp("default-deny", "podSelector: {}\npolicyTypes: [Ingress]")
ALLOW_WEB = knp(
    "allow-web",
    """
    podSelector: {matchLabels: {app: web}}
    policyTypes: [Ingress]
    ingress:
    - from: [{podSelector: {matchLabels: {app: client}}}]
      ports: [{port: http}]
    - from: [{ipBlock: {cidr: 10.1.2.3/8, except: [10.1.0.0/16]}}]
      ports: [{port: 8000, endPort: 8100, protocol: UDP}]
    """,
)
MONITOR_OUT = gnp(
    "monitor-out",
    """
    order: 10
    selector: app == 'monitor'
    types: [Egress]
    egress:
    - {action: Deny, protocol: TCP, destination: {nets: [192.168.8.0/24]}}
    - {action: Log, protocol: ICMP, icmp: {type: 8}}
    - {action: Pass, notProtocol: UDP}
    - {action: Allow, protocol: UDP, destination: {ports: [53, '1000:2000'], selector: app == 'api', namespaceSelector: all()}}
    """,
)
POLICIES = DEFAULT_DENY + ALLOW_WEB + MONITOR_OUT


@cache
def planned(text: str, plugin: str = "terway", network_policy: bool = True) -> Plan:
    return plan(build_resources([Source("policy.yaml", cloud(plugin, network_policy) + text)]))


@cache
def tables(
    text: str = PODS + POLICIES, plugin: str = "terway", network_policy: bool = True
) -> dict[str, str]:
    return render_policies(planned(text, plugin, network_policy), EMULATION)


def cali(key: str) -> str:
    ns, _, name = key.partition("/")
    return names.cali_ifname(ns, name)


def chain(text: str, name: str) -> list[str]:
    """The rules of chain ``name`` in a rendered table."""
    match = re.search(rf"^\tchain {re.escape(name)} {{\n(.*?)^\t}}", text, re.M | re.S)
    assert match, f"no chain {name}"
    return [line.strip() for line in match.group(1).splitlines()]


def set_elements(text: str, name: str) -> list[str]:
    match = re.search(rf"^\tset {re.escape(name)} {{\n(.*?)^\t}}", text, re.M | re.S)
    assert match, f"no set {name}"
    found = re.search(r"elements = \{ (.*) \}", match.group(1))
    return found.group(1).split(", ") if found else []


def client_set(text: str) -> str:
    """The set of ``podSelector: {app: client}`` in shop: named by its canonical scoped selector."""
    match = re.search(r"\tset (sel-\w+) \{\n[^}]*comment \"selector [^\"]*app == 'client'", text)
    assert match, "no set for app == 'client'"
    name = match.group(1)
    # The comment shows the canonical selector with its double quotes made single (nft strings).
    shown = re.findall(rf"set {name} {{\n[^}}]*comment \"selector ([^\"]*)\"", text)[0]
    assert name == selector_set_name(str(parse_calico_selector(shown.replace("'", '"'))))
    return name


def node_of(key: str, text: str = PODS + POLICIES) -> str:
    (found,) = [p.node for p in planned(text).pods if p.key == key]
    assert found is not None
    return found


def ip_of(key: str, text: str = PODS + POLICIES) -> str:
    (found,) = [str(p.ip) for p in planned(text).pods if p.key == key]
    return found


# -- where policy applies (ACK: Terway shared ENI with networkPolicy: true) ----------------------------


def test_one_table_per_node_of_a_policed_cluster() -> None:
    out = tables()
    assert sorted(out) == ["ack-default-0", "ack-default-1", "ack-excl-0"]
    for text in out.values():
        assert text.startswith(f"table {TABLE_FAMILY} {table_name(EMULATION)} {{\n")
        assert text.endswith("}\n")
    assert table_name(EMULATION) == "pol-policy"


@pytest.mark.parametrize(
    ("plugin", "network_policy"),
    [pytest.param("flannel", False, id="flannel"), pytest.param("terway", False, id="network-policy-off")],
)
def test_no_table_where_ack_has_no_policy(plugin: str, network_policy: bool) -> None:
    text = NAMESPACES + WEB + CLIENT + DEFAULT_DENY
    assert tables(text, plugin, network_policy) == {}


def test_an_exclusive_eni_pod_has_no_policy_chain_but_a_known_veth() -> None:
    out = tables()
    node = node_of("shop/legacy")
    text = out[node]
    # default-deny selects legacy's namespace, but Terway runs no Felix for exclusive-ENI pods.
    assert f"{cali('shop/legacy')}-ingress" not in text
    assert f'"{cali("shop/legacy")}"' in set_elements(text, POD_VETHS)


def test_the_render_is_pure_and_deterministic() -> None:
    first = render_policies(planned(PODS + POLICIES), EMULATION)
    assert render_policies(planned(PODS + POLICIES), EMULATION) == first
    assert first == tables()


# -- chains -------------------------------------------------------------------------------------------


def test_base_chains_keep_connections_and_drop_unknown_veths_first() -> None:
    text = tables()[node_of("shop/web")]
    forward = chain(text, "forward")
    assert forward[0] == "type filter hook forward priority filter; policy accept;"
    assert forward[1].startswith("ct state established,related accept")
    assert forward[2] == "ct state invalid drop"
    assert forward[3].startswith(f'iifname "cali*" iifname != @{POD_VETHS} drop')
    assert forward[4].startswith(f'oifname "cali*" oifname != @{POD_VETHS} drop')
    assert forward[5].startswith("iifname vmap {")  # egress of the sending pod first
    assert forward[6].startswith("oifname vmap {")
    assert chain(text, "input")[1].startswith('iifname != "cali*" accept')
    assert chain(text, "output")[1].startswith(f"oifname @{POD_VETHS} accept")


def test_every_pod_veth_of_the_node_is_known() -> None:
    out = tables()
    for p in planned(PODS + POLICIES).pods:
        if p.node is None or p.host_network:
            continue
        assert f'"{cali(p.key)}"' in set_elements(out[p.node], POD_VETHS), p.key


def test_default_deny_is_a_pod_chain_ending_in_the_tier_drop() -> None:
    text = tables()[node_of("shop/client")]
    assert chain(text, f"{cali('shop/client')}-ingress") == [
        'meta mark set meta mark and 0xfffeffff comment "ingress of pod shop/client"',
        "jump knp/shop/default-deny/ingress",
        "meta mark and 0x00010000 == 0x00010000 return",
        'drop comment "end of tier: 1 policy selects shop/client for ingress"',
    ]
    assert chain(text, "knp/shop/default-deny/ingress") == []
    # Ingress only: no egress chain, the client's egress is open.
    assert f"{cali('shop/client')}-egress" not in text


def test_a_pod_no_policy_selects_has_no_chain() -> None:
    text = tables()[node_of("ops/monitor")]
    assert f"{cali('ops/monitor')}-ingress" not in text  # default-deny is shop's only
    assert f"{cali('ops/monitor')}-egress" in text


def test_policies_are_jumped_in_calico_order() -> None:
    extra = cnp("first", "order: 5\nselector: app == 'web'\ningress: [{action: Allow}]") + cnp(
        "unordered", "selector: app == 'web'\ningress: [{action: Allow}]"
    )
    text = tables(PODS + POLICIES + extra)[node_of("shop/web")]
    jumps = [r for r in chain(text, f"{cali('shop/web')}-ingress") if r.startswith("jump")]
    # order 5, then the Kubernetes ones at 1000 by name, then no order last.
    assert jumps == [
        "jump cnp/shop/first/ingress",
        "jump knp/shop/allow-web/ingress",
        "jump knp/shop/default-deny/ingress",
        "jump cnp/shop/unordered/ingress",
    ]


def test_kubernetes_rules_with_named_ports_and_ip_blocks() -> None:
    text = tables()[node_of("shop/web")]
    rules = chain(text, "knp/shop/allow-web/ingress")
    client = client_set(text)
    assert rules[0] == (
        f"meta l4proto tcp ip saddr @{client} ip daddr . meta l4proto . th dport @port-http "
        'meta mark set meta mark or 0x00010000 return comment "NetworkPolicy shop/allow-web ingress rule 1"'
    )
    assert re.fullmatch(
        r"meta l4proto udp ip saddr @net-\w+ ip saddr != @net-\w+ th dport 8000-8100 "
        r'meta mark set meta mark or 0x00010000 return comment "NetworkPolicy shop/allow-web ingress rule 2"',
        rules[1],
    )
    assert set_elements(text, client) == [ip_of("shop/client")]
    # A named port is resolved on each destination pod: web's http is 8080, api's is 9000.
    assert set_elements(text, "port-http") == sorted(
        [f"{ip_of('shop/web')} . tcp . 8080", f"{ip_of('shop/api')} . tcp . 9000"]
    )
    # ipBlock with host bits set is accepted and normalised; the except is its own set.
    nets = re.findall(r'comment "nets ([^"]+)"\n\t\telements = \{ ([^}]+) \}', text)
    assert ("10.0.0.0/8", "10.0.0.0/8") in nets
    assert ("10.1.0.0/16", "10.1.0.0/16") in nets


def test_calico_actions_protocols_and_ports() -> None:
    text = tables()[node_of("ops/monitor")]
    rules = chain(text, "gnp/monitor-out/egress")
    assert re.fullmatch(
        r'meta l4proto tcp ip daddr @net-\w+ drop comment "GlobalNetworkPolicy monitor-out egress rule 1 \(Deny\)"',
        rules[0],
    )
    assert rules[1] == (
        'meta l4proto icmp icmp type 8 log prefix "calico-packet monitor-out egress rule 2: " '
        'comment "GlobalNetworkPolicy monitor-out egress rule 2 (Log)"'
    )
    # Pass leaves the only tier; the profile allows: the same mark as Allow.
    assert rules[2] == (
        "meta l4proto != udp meta mark set meta mark or 0x00010000 return "
        'comment "GlobalNetworkPolicy monitor-out egress rule 3 (Pass)"'
    )
    assert re.fullmatch(
        r"meta l4proto udp ip daddr @sel-\w+ th dport \{ 53, 1000-2000 \} meta mark set meta mark or "
        r'0x00010000 return comment "GlobalNetworkPolicy monitor-out egress rule 4"',
        rules[3],
    )
    api_set = re.search(r"ip daddr @(sel-\w+)", rules[3])
    assert api_set is not None
    assert set_elements(text, api_set.group(1)) == [ip_of("shop/api")]


def test_long_names_stay_nft_identifiers_and_comments_fit() -> None:
    long_name = "a" * 240
    text = tables(PODS + cnp(long_name, "selector: app == 'web'\ningress: [{action: Allow}]"))[
        node_of("shop/web")
    ]
    for line in text.splitlines():
        for comment in re.findall(r'comment ("[^"]*")', line):
            assert len(comment.encode()) - 2 <= 128
    # Chain names longer than nft allows are hashed; the comments still name the policy (cut short).
    assert re.search(r"^\t\tjump cnp/[0-9a-f]{12}/ingress$", text, re.M)
    assert f"chain cnp/shop/{long_name}" not in text


# -- set-element edits: pod churn and labels change sets, not rules ----------------------------------------


def test_equal_tables_need_no_edit() -> None:
    text = tables()[node_of("shop/web")]
    assert set_element_changes(text, text) == ""


def test_a_label_change_edits_set_elements_only() -> None:
    before = tables()
    relabelled = PODS.replace("{app: api}", "{app: client}") + POLICIES
    after = tables(relabelled)
    node = node_of("shop/web")
    edits = set_element_changes(before[node], after[node])
    assert edits is not None
    client = client_set(after[node])
    header = f"{TABLE_FAMILY} {table_name(EMULATION)}"
    assert f"add element {header} {client} {{ {ip_of('shop/api')} }}" in edits.splitlines()
    assert all(line.startswith(("add element", "delete element")) for line in edits.splitlines())


def test_a_new_pod_no_policy_selects_is_a_set_edit() -> None:
    extra = pod("ops", "new", "{app: monitor}", "[{name: scrape, containerPort: 9100}]", sa="monitor")
    text = PODS + POLICIES
    node = node_of("ops/monitor")
    # monitor-out selects app == 'monitor': the new pod gets chains, a rule change; a pod in ops
    # without that label is not selected by anything.
    plain = pod("ops", "plain", "{app: other}", "[]")
    edits = set_element_changes(tables(text)[node], tables(text + plain)[node])
    assert edits is not None and f'"{cali("ops/plain")}"' in edits
    assert set_element_changes(tables(text)[node], tables(text + extra)[node]) is None


def test_deletions_come_before_additions() -> None:
    moved = (
        NAMESPACES
        + WEB
        + API.replace("{app: api}", "{app: client}")
        + CLIENT.replace("{app: client}", "{app: api}")
        + MONITOR
        + LEGACY
        + POLICIES
    )
    node = node_of("shop/web")
    edits = set_element_changes(tables()[node], tables(moved)[node])
    assert edits is not None
    kinds = [line.split()[0] for line in edits.splitlines()]
    assert kinds == sorted(kinds, key=lambda k: k != "delete")


def test_a_policy_change_replaces_the_table() -> None:
    changed = ALLOW_WEB.replace("port: http", "port: 8080")
    node = node_of("shop/web")
    assert (
        set_element_changes(tables()[node], tables(PODS + DEFAULT_DENY + changed + MONITOR_OUT)[node]) is None
    )


def test_the_replace_script_deletes_then_declares_the_table() -> None:
    text = tables()["ack-default-0"]
    script = replace_script(text, EMULATION)
    head = script.splitlines()[:3]
    assert head == ["table inet pol-policy", "delete table inet pol-policy", "table inet pol-policy {"]


# -- syntax and edits, by the real nft in a throwaway namespace ---------------------------------------------


@pytest.fixture
def scratch_netns() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("ip") is None:
        pytest.skip("needs root, nft and ip to check the syntax in a throwaway network namespace")
    name = "polt" + secrets.token_hex(4)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def nft(netns: str, script: str, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", netns, "nft", *options, "-f", "-"],
        input=script,
        capture_output=True,
        text=True,
        check=False,
    )


def test_nft_accepts_every_table(scratch_netns: str) -> None:
    extra = gnp(
        "everything",
        """
        selector: all()
        ingress:
        - {action: Allow, protocol: ICMP, notICMP: {type: 8, code: 0}}
        - {action: Deny, notProtocol: 99, source: {notNets: [10.0.0.0/8], notSelector: app == 'web'}}
        - {action: Allow, protocol: TCP, destination: {notPorts: [22, http, '100:200']}}
        - {action: Allow, source: {serviceAccounts: {names: [monitor]}}}
        - {action: Allow, protocol: SCTP, destination: {ports: [5000]}}
        egress:
        - {action: Allow, protocol: UDP, destination: {ports: [scrape]}}
        - {action: Deny, protocol: UDPLite}
        """,
    )
    out = tables(PODS + POLICIES + extra)
    assert out
    for node, text in out.items():
        for script in (text, replace_script(text, EMULATION)):
            result = nft(scratch_netns, script, "-c")
            assert result.returncode == 0, f"{node}: {result.stderr}"


def test_nft_applies_set_edits_to_the_loaded_table(scratch_netns: str) -> None:
    moved = PODS.replace("{app: api}", "{app: client}") + POLICIES
    node = node_of("shop/web")
    before, after = tables()[node], tables(moved)[node]
    loaded = nft(scratch_netns, replace_script(before, EMULATION))
    assert loaded.returncode == 0, loaded.stderr
    edits = set_element_changes(before, after)
    assert edits
    applied = nft(scratch_netns, edits)
    assert applied.returncode == 0, applied.stderr
    # Loading the new table whole gives the same listing as the edits did.
    listed = subprocess.run(
        ["ip", "netns", "exec", scratch_netns, "nft", "list", "table", TABLE_FAMILY, table_name(EMULATION)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert nft(scratch_netns, replace_script(after, EMULATION)).returncode == 0
    relisted = subprocess.run(
        ["ip", "netns", "exec", scratch_netns, "nft", "list", "table", TABLE_FAMILY, table_name(EMULATION)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert sorted(listed.split()) == sorted(relisted.split())


# -- chain-level changes: what the engine loads when policies change ------------------------------------


def test_table_changes_of_equal_tables_is_empty_and_element_changes_are_set_edits() -> None:
    node = node_of("shop/web")
    before = tables()[node]
    assert table_changes(before, before) == ""
    relabelled = tables(PODS.replace("{app: api}", "{app: client}") + POLICIES)[node]
    assert table_changes(before, relabelled) == set_element_changes(before, relabelled)


def test_one_policy_changed_rewrites_its_chain_only() -> None:
    node = node_of("shop/web")
    changed = ALLOW_WEB.replace("ports: [{port: http}]", "ports: [{port: 8081}]")
    script = table_changes(tables()[node], tables(PODS + DEFAULT_DENY + changed + MONITOR_OUT)[node])
    assert script is not None
    lines = script.splitlines()
    assert lines[0] == f"flush chain {TABLE_FAMILY} {table_name(EMULATION)} knp/shop/allow-web/ingress"
    assert "\tchain knp/shop/allow-web/ingress {" in lines
    assert not any(line.startswith(("\tchain forward", "\tchain cali", "delete table")) for line in lines)
    # The named-port set is no longer used by it: flushed rules first, then the set goes.
    assert f"delete set {TABLE_FAMILY} {table_name(EMULATION)} port-http" in lines


def test_a_new_policy_declares_its_chain_and_dispatch() -> None:
    node = node_of("ops/monitor")
    deny_ops = knp("deny-ops", "podSelector: {}\npolicyTypes: [Ingress]", ns="ops")
    script = table_changes(tables()[node], tables(PODS + POLICIES + deny_ops)[node])
    assert script is not None
    assert f"\tchain {cali('ops/monitor')}-ingress {{" in script
    assert "\tchain knp/ops/deny-ops/ingress {" in script
    assert f"flush chain {TABLE_FAMILY} {table_name(EMULATION)} forward" in script
    # And back: the chains go after the rules that jumped to them were flushed.
    back = table_changes(tables(PODS + POLICIES + deny_ops)[node], tables()[node])
    assert back is not None
    lines = back.splitlines()
    flush_forward = lines.index(f"flush chain {TABLE_FAMILY} {table_name(EMULATION)} forward")
    delete = lines.index(f"delete chain {TABLE_FAMILY} {table_name(EMULATION)} knp/ops/deny-ops/ingress")
    assert flush_forward < delete


def test_another_table_header_is_a_whole_replacement() -> None:
    text = tables()["ack-default-0"]
    other = render_policies(planned(PODS + POLICIES), "pol2")["ack-default-0"]
    assert table_changes(text, other) is None


def test_nft_applies_chain_changes_to_the_loaded_table(scratch_netns: str) -> None:
    deny_ops = knp("deny-ops", "podSelector: {}\npolicyTypes: [Ingress]", ns="ops")
    changed = ALLOW_WEB.replace("ports: [{port: http}]", "ports: [{port: 8081}]")
    steps = [
        PODS + POLICIES,
        PODS + POLICIES + deny_ops,  # a new policy: new chains, dispatch changes
        PODS + DEFAULT_DENY + changed + MONITOR_OUT + deny_ops,  # a changed one, a set goes
        PODS.replace("{app: api}", "{app: client}")
        + DEFAULT_DENY
        + changed
        + MONITOR_OUT,  # labels, one goes
        PODS + POLICIES,
    ]
    for node in ("ack-default-0", "ack-default-1"):
        current = tables(steps[0])[node]
        assert nft(scratch_netns, replace_script(current, EMULATION)).returncode == 0
        for text in steps[1:]:
            wanted = tables(text)[node]
            script = table_changes(current, wanted)
            assert script is not None
            applied = nft(scratch_netns, script)
            assert applied.returncode == 0, f"{node}: {applied.stderr}\n{script}"
            edited = listing(scratch_netns)
            assert nft(scratch_netns, replace_script(wanted, EMULATION)).returncode == 0
            assert sorted(edited.split()) == sorted(listing(scratch_netns).split()), node
            current = wanted


def listing(netns: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "list", "table", TABLE_FAMILY, table_name(EMULATION)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
