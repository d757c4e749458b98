"""nftables tables inside a namespace: each table is loaded whole, in one ``nft -f`` transaction.

One owner per table (STYLE.md, after Calico Felix): the renderer produces the complete table text and
this module replaces it atomically, never editing single rules in place.
"""

from __future__ import annotations

import subprocess

from acknet.errors import DataplaneError


def _nft(netns: str, args: list[str], script: str | None, what: str) -> str:
    try:
        result = subprocess.run(
            ["ip", "netns", "exec", netns, "nft", *args],
            input=script,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataplaneError(what, f"namespace {netns}", detail=str(exc)) from exc
    if result.returncode != 0:
        raise DataplaneError(what, f"namespace {netns}", detail=result.stderr.strip()[:2000])
    return result.stdout


def load_script(netns: str, script: str, table: str) -> None:
    """Runs an nft script (which replaces ``table`` whole) in one transaction inside ``netns``."""
    _nft(netns, ["-f", "-"], script, f"load nftables table {table}")


def delete_table(netns: str, family: str, table: str) -> None:
    """Deletes a table if it exists (``destroy`` needs nft 1.0.8; Debian 12 has 1.0.6)."""
    listing = _nft(netns, ["list", "tables"], None, "list nftables tables")
    if f"table {family} {table}" in listing.splitlines():
        _nft(netns, ["delete", "table", family, table], None, f"delete nftables table {family} {table}")


def list_ruleset(netns: str) -> str:
    return _nft(netns, ["list", "ruleset"], None, "list nftables ruleset")
