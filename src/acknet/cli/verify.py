"""``acknet verify --name N``: does the static answer hold in the kernel? ``check`` against ``probe``.

The emulation's own files (its latest revision, from the daemon's ``GET /sources``) are planned and
checked as ``acknet check`` would; the daemon probes the same pairs with real packets; every pair,
port and protocol is compared, first between every pod and ECS instance (nodes included, on each
destination's declared ports), then from each of them towards every Service, and towards every SLB
(its listener ports) and every Ingress (its sample requests through the controller's SLB) from each of
them and from the Internet. A pair one side has and the other not
is a disagreement too.

Check answers from the files: a pod that failed its readiness probe, or one replaced after
``acknet delete pod``, shows up as a disagreement, which is what it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acknet.analysis.endpoints import EndpointIndex, resolve, resolve_destinations
from acknet.analysis.reachability import Reachability, Verdict
from acknet.cli.output import err, out, print_data, print_error, table, verdict_state
from acknet.cli.trace import load_plan
from acknet.errors import AcknetError, InvalidInput

Key = tuple[str, str, int, str]


@dataclass(frozen=True, slots=True)
class Disagreement:
    source: str
    destination: str
    port: int
    protocol: str
    check: str  # allowed | partial | denied | absent
    probe: str
    why: str  # check's reasons

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "to": self.destination,
            "port": self.port,
            "protocol": self.protocol,
            "check": self.check,
            "probe": self.probe,
            "why": self.why,
        }


def compare(checked: list[Verdict], probed: list[dict[str, Any]]) -> tuple[int, list[Disagreement]]:
    """How many verdicts were compared, and every one where the two differ (or only one has it)."""
    mine: dict[Key, Verdict] = {(v.source, v.destination, v.port, v.protocol): v for v in checked}
    theirs: dict[Key, dict[str, Any]] = {(p["from"], p["to"], p["port"], p["protocol"]): p for p in probed}
    found: list[Disagreement] = []
    for key in sorted(mine.keys() | theirs.keys()):
        c, p = mine.get(key), theirs.get(key)
        c_state = verdict_state(c.to_json()) if c is not None else "absent"
        p_state = verdict_state(p) if p is not None else "absent"
        if c_state == p_state:
            continue
        why = "; ".join(c.reasons) if c is not None else "check has no such verdict"
        found.append(Disagreement(*key, c_state, p_state, why))
    return len(mine.keys() | theirs.keys()), found


def run_verify(name: str, state: Path | None, output: str = "table") -> int:
    """0 when check and probe agree on every verdict, 1 otherwise."""
    from acknet.cli.live import running_api

    try:
        api = running_api(name, state)
        planned = load_plan(None, name, state)
        index = EndpointIndex.of(planned)
        reach = Reachability(planned)
        # Nodes too (check and probe leave them out by default): their Service paths are kube-proxy's.
        every = [kind for kind, present in (("pods", index.pods), ("ecs", index.instances)) if present]
        selections = [(every, every)]
        if index.services:
            selections.append((every, ["svc"]))
        if index.slbs:
            selections.extend([(every, ["slb"]), (["internet"], ["slb"])])
        if index.ingresses:  # requests through the NGINX Ingress controller's SLB, from inside and out
            selections.extend([(every, ["ingress"]), (["internet"], ["ingress"])])
        total, disagreements = 0, []
        for frm, to in selections:
            checked = reach.check(resolve(index, frm, "from"), resolve_destinations(index, to), None)
            probed = api.post("/probe", {"from": frm, "to": to, "ports": None})["verdicts"]
            n, found = compare(checked, probed)
            total += n
            disagreements.extend(found)
    except InvalidInput as exc:
        err.print(str(exc), style="red", markup=False, highlight=False)
        return 1
    except AcknetError as exc:
        print_error(str(exc))
        return 1
    if output == "json":
        print_data(
            {"compared": total, "disagreements": [d.to_json() for d in disagreements]},
            "json",
        )
    else:
        if disagreements:
            rows = [
                (
                    d.source,
                    d.destination,
                    f"{d.port}/{d.protocol}",
                    d.check,
                    d.probe,
                    d.why,
                )
                for d in disagreements
            ]
            out.print(table("Disagreements", ["FROM", "TO", "PORT", "CHECK", "PROBE", "WHY"], rows))
        out.print(
            f"verify {name}: {total} verdicts compared, {len(disagreements)} disagreement(s)", highlight=False
        )
    return 1 if disagreements else 0
