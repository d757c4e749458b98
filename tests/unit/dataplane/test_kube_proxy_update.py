"""kube-proxy partial syncs: ``update_script`` between two rendered tables touches only what changed.

The same transitions are applied to a real kernel table in
tests/integration/test_kube_proxy_update_live.py, which checks the result equals a fresh load.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network

import pytest

from acknet.dataplane.render.kube_proxy import (
    ProxyEndpoint,
    ProxyInput,
    ProxyServicePort,
    render_table_data,
    update_script,
)

NODE = IPv4Address("192.168.0.10")


def endpoint(n: int, *, local: bool = False, ready: bool = True) -> ProxyEndpoint:
    return ProxyEndpoint(IPv4Address(f"192.168.32.{n}"), 8080, local=local, ready=ready)


def service(n: int, endpoints: tuple[ProxyEndpoint, ...], **kw: object) -> ProxyServicePort:
    return ProxyServicePort(
        "ns",
        f"svc{n}",
        "http",
        "TCP",
        IPv4Address(f"172.21.0.{20 + n}"),
        80,
        endpoints,
        **kw,  # type: ignore[arg-type]
    )


def proxy_input(*ports: ProxyServicePort, nodeport_ips: tuple[IPv4Address, ...] = (NODE,)) -> ProxyInput:
    return ProxyInput(
        "ip",
        "node-1",
        NODE,
        nodeport_ips,
        (IPv4Network("192.168.32.0/19"),),
        (IPv4Network("172.21.0.0/20"),),
        ports,
    )


THREE = (endpoint(1, local=True), endpoint(2), endpoint(3))
BASE = (
    service(0, THREE),
    service(1, THREE[:2], node_port=30080),
    service(2, THREE, affinity_timeout=60),
    service(3, THREE[:1], node_port=30081, external_policy="Local"),
)


def replaced(
    i: int, sp: ProxyServicePort
) -> Callable[[tuple[ProxyServicePort, ...]], tuple[ProxyServicePort, ...]]:
    return lambda ports: tuple(sp if n == i else p for n, p in enumerate(ports))


# (id, how the service ports change, lines expected in the script, lines that must not be there)
TRANSITIONS = [
    pytest.param(
        replaced(0, service(0, (THREE[0], dataclasses.replace(THREE[1], ready=False), THREE[2]))),
        ["flush chain ip kube-proxy service-", "delete chain ip kube-proxy endpoint-"],
        ["add element", "delete element"],
        id="one-endpoint-not-ready",
    ),
    pytest.param(
        replaced(1, service(1, ())),
        ["delete element ip kube-proxy service-ips", "add element ip kube-proxy no-endpoint-services"],
        ["flush chain ip kube-proxy nat-"],
        id="last-endpoints-go-reject",
    ),
    pytest.param(
        replaced(2, service(2, THREE[:2], affinity_timeout=60)),
        ["delete set ip kube-proxy affinity-"],
        ["add element"],
        id="affinity-endpoint-goes",
    ),
    pytest.param(
        replaced(3, service(3, THREE[1:2], node_port=30081, external_policy="Local")),
        ["add element ip kube-proxy no-endpoint-nodeports", "delete chain ip kube-proxy local-"],
        [],
        id="local-endpoint-moves-away",
    ),
    pytest.param(
        lambda ports: (*ports, service(9, THREE)),
        ["add chain ip kube-proxy service-", "add element ip kube-proxy cluster-ips { 172.21.0.29 }"],
        ["delete"],
        id="service-added",
    ),
    pytest.param(
        lambda ports: ports[1:],
        ["delete element ip kube-proxy cluster-ips { 172.21.0.20 }", "delete chain ip kube-proxy service-"],
        ["add "],
        id="service-removed",
    ),
]


@pytest.mark.parametrize(("change", "present", "absent"), TRANSITIONS)
def test_update_touches_only_the_change(change, present: list[str], absent: list[str]) -> None:
    old = render_table_data(proxy_input(*BASE))
    new = render_table_data(proxy_input(*change(BASE)), previous=old)
    script = update_script(old, new)
    assert script, "something changed"
    # Rendered from scratch, every part is compared: the same transaction.
    assert update_script(old, render_table_data(proxy_input(*change(BASE)))) == script
    for text in present:
        assert text in script, script
    for text in absent:
        assert text not in script, script
    # Nothing of the untouched Services is in it.
    untouched = [p for p in BASE if p in change(BASE)]
    for sp in untouched:
        assert f"/{sp.name}/" not in script.replace("ns/", "/"), (sp.name, script)


def test_same_table_needs_nothing() -> None:
    assert update_script(render_table_data(proxy_input(*BASE)), render_table_data(proxy_input(*BASE))) == ""


def test_nodeport_addresses_are_element_edits() -> None:
    old = render_table_data(proxy_input(*BASE))
    new = render_table_data(proxy_input(*BASE, nodeport_ips=(NODE, IPv4Address("192.168.0.11"))))
    assert update_script(old, new) == "add element ip kube-proxy nodeport-ips { 192.168.0.11 }\n"


def test_a_changed_base_needs_a_whole_replacement() -> None:
    old = render_table_data(proxy_input(*BASE))
    new = render_table_data(
        dataclasses.replace(proxy_input(*BASE), service_cidrs=(IPv4Network("10.0.0.0/16"),))
    )
    # Only a base chain's rules changed: still a partial sync of that chain.
    script = update_script(old, new)
    assert script is not None and script.startswith("flush chain ip kube-proxy cluster-ips-check")
    other = render_table_data(dataclasses.replace(proxy_input(*BASE), comment="another node"))
    assert update_script(old, other) is None


def test_unchanged_service_ports_reuse_their_part() -> None:
    old = render_table_data(proxy_input(*BASE))
    changed = service(0, THREE[:2])
    new = render_table_data(proxy_input(changed, *BASE[1:]), previous=old)
    assert [a is b for a, b in zip(old.fragments, new.fragments, strict=True)] == [False, True, True, True]
    assert new.text() == render_table_data(proxy_input(changed, *BASE[1:])).text()
    # Another node's context (its address, its pod CIDRs) reuses nothing.
    other = render_table_data(
        dataclasses.replace(proxy_input(*BASE), node_ip=IPv4Address("192.168.0.11")), previous=old
    )
    assert not any(a is b for a, b in zip(old.fragments, other.fragments, strict=True))
