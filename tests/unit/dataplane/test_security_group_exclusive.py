"""An exclusive ENI keeps its security groups inside the pod that owns it (Terway exclusive mode)."""

from __future__ import annotations

from pathlib import Path

from acknet.controllers.plan import plan
from acknet.dataplane.render.security_group import (
    render_exclusive_pod_security_groups,
    render_security_groups,
)
from acknet.model.build import build_resources
from acknet.store.files import read_sources

SHOP = Path(__file__).resolve().parents[3] / "examples" / "shop"


def test_exclusive_pods_get_their_enis_table_and_the_node_does_not() -> None:
    planned = plan(build_resources(read_sources([str(SHOP)])))
    exclusive = [e for i in planned.instances for e in i.enis if e.exclusive_pod is not None]
    assert exclusive, "the shop has an exclusive node pool"
    tables = render_exclusive_pod_security_groups(planned, "acknet")
    assert set(tables) == {e.exclusive_pod for e in exclusive}
    for text in tables.values():
        assert 'iifname vmap { "eth0" : jump eth0-ingress }' in text
        assert "cluster-sg" in text
    node = next(i for i in planned.instances if i.eni_mode == "exclusive")
    node_table = render_security_groups(planned, "acknet")[node.name]
    assert '"eth0"' in node_table and '"eth1"' not in node_table and '"eth2"' not in node_table
