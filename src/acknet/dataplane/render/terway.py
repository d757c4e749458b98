"""Terway's node NAT for exclusive-ENI pods: the table ``ip terway`` with its ``terway-masq`` chain.

Owner of that table, rendered whole and loaded whole in one transaction like every acknet table.
When a node's pods own their ENIs, Terway's init script (``masq_eni_only``) adds
``-t nat -A POSTROUTING ! -o lo -j terway-masq`` and ``-A terway-masq -j MASQUERADE``
(reference/alibaba.md 1.6). What it is for: an exclusive-ENI pod reaches Services over ``veth1`` to
its node, where kube-proxy picks an endpoint; when that endpoint is on another node, the reply must
come back to the node that translated the request, not straight to the pod's own ENI, where no
connection tracking knows it. Shared-ENI and Flannel nodes get no such table.
"""

from __future__ import annotations

from typing import Final

from acknet.controllers.state import Plan

TABLE_FAMILY: Final = "ip"
TABLE_NAME: Final = "terway"


def render_terway_masq(plan: Plan) -> dict[str, str]:
    """Node name -> the table text, for every node of an exclusive-ENI node pool."""
    text = (
        f"table {TABLE_FAMILY} {TABLE_NAME} {{\n"
        "\tchain terway-masq {\n"
        "\t\tmasquerade\n"
        "\t}\n"
        "\n"
        "\tchain postrouting {\n"
        "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
        '\t\toifname != "lo" jump terway-masq comment "terway:masq-outgoing"\n'
        "\t}\n"
        "}\n"
    )
    return {i.name: text for i in plan.instances if i.is_node and i.eni_mode == "exclusive"}


def replace_script(table_text: str) -> str:
    """Replace the table atomically whether or not it exists (see kube_proxy.replace_script)."""
    ref = f"{TABLE_FAMILY} {TABLE_NAME}"
    return f"add table {ref}\ndelete table {ref}\n{table_text}"
