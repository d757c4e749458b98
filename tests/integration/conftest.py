"""Integration fixtures: root-only tests are skipped without root; each test gets its own emulation name
and every namespace of it is removed at teardown, whatever the test did."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from acknet.dataplane.apply.netlink import list_netns, remove_emulation
from acknet.dataplane.render.names import netns_prefix


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: builds real network namespaces")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def emulation() -> Iterator[str]:
    """A fresh emulation name (``t`` + 6 hex); its namespaces are removed even when the test fails."""
    name = "t" + secrets.token_hex(3)
    assert not list_netns(netns_prefix(name))
    try:
        yield name
    finally:
        remove_emulation(name)
        assert not list_netns(netns_prefix(name)), "namespaces left behind"
