"""``acknet check -f NEW --against OLD``: the verdicts a change to the files changes, for CI.

Both versions are checked as ``acknet check`` does (same ``--from``/``--to``/``--port``), and the
verdicts are matched by (from, to, port, protocol). A verdict that changes (allowed, partial, denied)
or that exists in one version only (``absent``: a pod, port or Service came or went) is printed.
Exit 2 when anything changed, 0 when nothing did, 1 on invalid files or arguments, so a pipeline can
fail a pull request that changes reachability and show what it changes.

Pod names of Deployments carry a hash of their template, so editing a template renames its pods: their
verdicts show as gone under the old names and new under the new ones, as they would on a cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from acknet.analysis.endpoints import EndpointIndex, resolve, resolve_destinations
from acknet.analysis.reachability import PortSpec, Reachability, Verdict, parse_port
from acknet.cli.output import out, print_data, print_diagnostics, print_error, table
from acknet.controllers.plan import plan as make_plan
from acknet.errors import AcknetError, InvalidInput, NotFound
from acknet.model.build import build_resources
from acknet.store.files import read_sources

ABSENT = "absent"


@dataclass(frozen=True, slots=True)
class Change:
    source: str
    destination: str
    port: int
    protocol: str
    before: str  # allowed | partial | denied | absent
    after: str
    why: str  # the hop that decides now (or decided before, for a verdict that went away)

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "to": self.destination,
            "port": self.port,
            "protocol": self.protocol,
            "before": self.before,
            "after": self.after,
            "why": self.why,
        }


def state(verdict: Verdict | None) -> str:
    return ABSENT if verdict is None else verdict.state


def verdicts_of(
    paths: Sequence[str],
    from_sel: Sequence[str] | None,
    to_sel: Sequence[str] | None,
    ports: Sequence[PortSpec] | None,
) -> list[Verdict]:
    """``check``'s verdicts for one version of the files; an endpoint named by ``--from``/``--to``
    that this version does not have gives no verdict (it is absent here, not an error)."""
    resources = build_resources(read_sources(list(paths)))
    print_diagnostics(resources.warnings)
    planned = make_plan(resources)
    index = EndpointIndex.of(planned)
    try:
        sources = resolve(index, list(from_sel or []), "from")
        destinations = resolve_destinations(index, list(to_sel or []))
    except NotFound:
        return []
    return Reachability(planned).check(sources, destinations, list(ports) if ports is not None else None)


def changes(before: Sequence[Verdict], after: Sequence[Verdict]) -> list[Change]:
    """Every (from, to, port, protocol) whose state differs, in a stable order."""
    old = {(v.source, v.destination, v.port, v.protocol): v for v in before}
    new = {(v.source, v.destination, v.port, v.protocol): v for v in after}
    out: list[Change] = []
    for key in sorted(old.keys() | new.keys()):
        b, a = old.get(key), new.get(key)
        if state(b) == state(a):
            continue
        deciding = a if a is not None else b
        assert deciding is not None
        out.append(Change(*key, state(b), state(a), _why(deciding)))
    return out


def run_against(
    old_paths: Sequence[str],
    paths: Sequence[str],
    from_sel: Sequence[str] | None,
    to_sel: Sequence[str] | None,
    ports: Sequence[str] | None,
    output: str = "table",
) -> int:
    """Prints the changed verdicts; 2 if there are any, 0 if none, 1 on bad input."""
    try:
        wanted = [parse_port(p) for p in ports] if ports else None
    except ValueError as exc:
        print_error(f"--port {exc}")
        return 1
    try:
        before = verdicts_of(old_paths, from_sel, to_sel, wanted)
        after = verdicts_of(paths, from_sel, to_sel, wanted)
        if not before and not after and (from_sel or to_sel):
            # Neither version has what was asked for: that is a typo, not "nothing changed".
            _resolve_or_raise(paths, from_sel, to_sel)
    except InvalidInput as exc:
        print_diagnostics(exc.diagnostics)
        return 1
    except AcknetError as exc:
        print_error(str(exc))
        return 1
    found = changes(before, after)
    if output == "json":
        print_data({"changes": [c.to_json() for c in found]}, "json")
    elif found:
        rows = [(c.source, c.destination, f"{c.port}/{c.protocol}", c.before, c.after, c.why) for c in found]
        out.print(
            table(f"Changed verdicts ({len(found)})", ["FROM", "TO", "PORT", "BEFORE", "AFTER", "WHY"], rows)
        )
    else:
        out.print(f"no verdict changes ({len(after)} verdicts checked)", highlight=False)
    return 2 if found else 0


def _resolve_or_raise(
    paths: Sequence[str], from_sel: Sequence[str] | None, to_sel: Sequence[str] | None
) -> None:
    index = EndpointIndex.of(make_plan(build_resources(read_sources(list(paths)))))
    resolve(index, list(from_sel or []), "from")
    resolve_destinations(index, list(to_sel or []))


def _why(verdict: Verdict) -> str:
    if not verdict.allowed:
        failing = [h for h in verdict.hops if not h.passes]
        return (failing[0] if failing else verdict.hops[-1]).reason
    deciding = [h for h in verdict.hops if h.object != "listener"]
    return (deciding[-1] if deciding else verdict.hops[-1]).reason
