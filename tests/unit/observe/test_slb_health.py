"""The CLB health checker's pure parts: thresholds, and what it checks (observe/health.py)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from acknet.controllers.state import (
    Plan,
    PlannedListener,
    PlannedLoadBalancer,
    SlbBackend,
    SlbHealthCheck,
    VSwitchUsage,
)
from acknet.model.resources import Resources
from acknet.observe.health import State, step, targets_of


@pytest.mark.parametrize(
    ("results", "flips", "healthy"),
    [
        ("ok ok ok", [], True),
        ("fail ok fail ok fail", [], True),  # never two failures in a row
        ("fail fail", [1], False),
        ("fail fail fail ok fail", [1], False),
        ("fail fail ok ok", [1, 3], True),
        ("fail fail ok fail ok ok", [1, 5], True),  # successes must be in a row too
    ],
    ids=["steady", "flapping", "out", "stays-out", "back", "back-in-a-row"],
)
def test_thresholds(results: str, flips: list[int], healthy: bool) -> None:
    check = SlbHealthCheck(healthy_threshold=2, unhealthy_threshold=2)
    state = State()
    seen = [i for i, r in enumerate(results.split()) if step(state, r == "ok", check)]
    assert seen == flips and state.healthy is healthy


def test_what_is_checked() -> None:
    vsw = VSwitchUsage("v", "vpc", IPv4Network("192.168.0.0/24"), "z", IPv4Address("192.168.0.253"), (), 0, 0)
    backends = (
        SlbBackend("ecs/a", IPv4Address("192.168.0.1"), 80, 100, "Master"),
        SlbBackend("ecs/b", IPv4Address("192.168.0.2"), 80, 100, "Slave"),
    )
    ms = PlannedListener("tcp", 80, "wrr", "ms", backends, SlbHealthCheck(port=8081))
    off = PlannedListener("udp", 53, "wrr", "g", backends[:1], SlbHealthCheck(type="udp", enabled=False))
    http = PlannedListener("http", 8000, "wrr", "g", backends[:1], SlbHealthCheck(type="http"))
    lb = PlannedLoadBalancer(
        "lb", "intranet", IPv4Address("192.168.0.100"), "vpc", "v", (ms, off, http), IPv4Address("100.64.0.9")
    )
    plan = Plan(Resources(), (vsw,), (), (), (), (), (), load_balancers=(lb,))
    targets = targets_of(plan, "emu")
    # Only the primary of a primary/secondary group, on the check's own port; none with checks off; the
    # layer-7 listener's backends too (their results feed the proxy's upstreams).
    assert [(t.listener, t.ip, t.port, t.backend_port, t.source, t.netns) for t in targets] == [
        ("tcp/80", "192.168.0.1", 8081, 80, "100.64.0.9", "emu-slb-lb"),
        ("http/8000", "192.168.0.1", 80, 80, "100.64.0.9", "emu-slb-lb"),
    ]


def test_wlc_steering_loads_a_map_only_when_the_slots_change(monkeypatch: pytest.MonkeyPatch) -> None:
    from acknet.dataplane.apply import nftables
    from acknet.observe.health import SlbRuntime

    backends = (
        SlbBackend("ecs/a", IPv4Address("192.168.0.1"), 80, 100),
        SlbBackend("ecs/b", IPv4Address("192.168.0.2"), 80, 100),
    )
    wlc = PlannedListener("tcp", 80, "wlc", "g", backends, SlbHealthCheck())
    lb = PlannedLoadBalancer(
        "lb", "intranet", IPv4Address("192.168.0.100"), "vpc", "v", (wlc,), IPv4Address("100.64.0.9")
    )
    loaded: list[tuple[str, str]] = []
    monkeypatch.setattr(nftables, "load_script", lambda netns, script, table: loaded.append((netns, script)))
    runtime = SlbRuntime("emu")
    try:
        runtime._lbs = {"lb": lb}
        a, b = ("192.168.0.1", 80), ("192.168.0.2", 80)
        runtime._steer("lb", {"tcp/80": ({b: 2}, frozenset({1, 2}))})
        assert loaded == [
            (
                "emu-slb-lb",
                "flush map ip emu-slb tcp_80\nadd element ip emu-slb tcp_80 { 0-2519 : 192.168.0.1 . 80 }\n",
            )
        ]
        # The same slots again: nothing loaded.
        runtime._steer("lb", {"tcp/80": ({a: 1, b: 2}, frozenset({1, 2, 3}))})
        assert len(loaded) == 1
        # Balanced, and 4 new connections in the last interval: shared by weight again.
        runtime._steer("lb", {"tcp/80": ({a: 2, b: 2}, frozenset({1, 2, 3, 4, 5, 6, 7}))})
        assert len(loaded) == 2 and "0-1259 : 192.168.0.1 . 80, 1260-2519 : 192.168.0.2 . 80" in loaded[1][1]
        assert runtime.connections() == {"lb": {"tcp/80": {a: 2, b: 2}}}
        assert runtime._wlc_counts[("lb", "tcp/80")][1] == 4  # the expected new connections
    finally:
        runtime.stop()
