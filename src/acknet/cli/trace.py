"""``acknet trace SRC DST[:PORT[/PROTO]]``: one packet, hop by hop, and what would change a drop.

A thin edge over ``analysis.trace``: the Plan comes from the files (``-f``) or from the files of a
running emulation's latest revision (``--name``: the daemon's ``GET /sources``), planned the way
``check`` plans them. ``--live`` also sends the real packet through the daemon's probe and says
whether the kernel agrees. Rendering is pure (``render_text``) so tests read it without a terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer
import yaml

from acknet.analysis.trace import Trace, Tracer, parse_target
from acknet.cli.output import print_data, print_diagnostics, print_error, verdict_state
from acknet.controllers.plan import plan as make_plan
from acknet.controllers.state import Plan
from acknet.errors import AcknetError, InvalidInput
from acknet.model.build import build_resources
from acknet.model.documents import Source
from acknet.store.files import read_sources

TRACE_HELP = """One packet from SRC to DST, hop by hop: where it is, what decided there (security group,
network policy, VPC route, kube-proxy, listener), the rule, the action; then the verdict, and for a
drop the change that would let it through.

SRC and DST are NS/POD, ecs/NAME or a label selector matching exactly one endpoint; SRC may also be
internet (a client at 203.0.113.1); DST may also be svc/NS/NAME, traced through every backend, or
slb/NAME / slb/NS/NAME, traced through the listener and every backend server of its group, or
ingress/NS/NAME, or a URL (http://HOST[:PORT]/PATH, https://...): a request through the NGINX Ingress
controller's SLB (kube-system/nginx-ingress-lb), the controller pod, the Ingress rule that matches (or
NGINX's own 308/404/403/503) and every backend pod of the rule's Service. Without
:PORT each port DST declares is traced (text); -o json prints one trace, so it needs :PORT when DST
declares several ports. JSON:
{"verdict": "allowed"|"dropped", "hops": [{"at", "object", "rule", "action", "reason"}, ...], "from",
"to", "port", "protocol", "suggestions": [{"at", "object", "change", "snippet", "step"}, ...]} (a Service
or an SLB adds "partial", "branches" and a "branch" on each backend's hops; --live adds "live").
Suggestions come in steps: step 2 is what still blocks once the changes of step 1 are made, and so
on. --live exits 1 when the real packet disagrees with the trace."""


def load_plan(paths: Sequence[str] | None, name: str | None, state: Path | None) -> Plan:
    """The Plan of the files, or of the running emulation ``name``'s latest files."""
    sources = read_sources(list(paths)) if paths else emulation_sources(name or "acknet", state)
    resources = build_resources(sources)
    print_diagnostics(resources.warnings)
    return make_plan(resources)


def emulation_sources(name: str, state: Path | None) -> list[Source]:
    from acknet.cli.live import running_api

    data = running_api(name, state).get("/sources")
    return [Source(str(s["name"]), str(s["text"])) for s in data["sources"]]


def run_trace(
    paths: Sequence[str] | None,
    name: str | None,
    state: Path | None,
    source: str,
    target: str,
    output: str = "text",
    live: bool = False,
) -> int:
    """Prints the trace(s); 0 whatever the verdict, 1 on bad input (or, with ``live``, when the real
    packet disagrees with the trace)."""
    if paths and name is not None:
        print_error("give the files (-f PATH) or a running emulation (--name N), not both")
        return 1
    if not paths and name is None:
        name = "acknet"  # neither: the running emulation of the default name, as live commands do
    if live and name is None:
        print_error("--live sends a real packet: it needs a running emulation (--name N)")
        return 1
    try:
        dst_text, wanted = parse_target(target)
        tracer = Tracer(load_plan(paths, name, state))
        src = tracer.source(source)
        dst = tracer.destination(dst_text)
        ports = tracer.ports(dst, wanted)
        if output == "json" and len(ports) > 1:
            listed = ", ".join(f"{p}/{proto}" for p, proto in ports)
            raise ValueError(f"-o json prints one trace and {dst.name} declares {listed}: give DST:PORT")
        traces = [tracer.blocked_path(src, dst, port, protocol) for port, protocol in ports]
    except InvalidInput as exc:
        print_diagnostics(exc.diagnostics)
        return 1
    except (AcknetError, ValueError) as exc:
        print_error(str(exc))
        return 1
    lives: list[dict[str, Any] | None] = [None] * len(traces)
    if live:
        try:
            lives = [probe_live(name or "acknet", state, t) for t in traces]
        except AcknetError as exc:
            print_error(f"--live: {exc}")
            return 1
    if output == "json":
        data = traces[0].to_json()
        if lives[0] is not None:
            data["live"] = lives[0]
        print_data(data, "json")
    else:
        typer.echo("\n\n".join(render_text(t, lv) for t, lv in zip(traces, lives, strict=True)))
    return 1 if any(lv is not None and not lv["agrees"] for lv in lives) else 0


def probe_live(name: str, state: Path | None, trace: Trace) -> dict[str, Any]:
    """The same connection as real packets (``acknet probe --from SRC --to DST --port P``); for a URL,
    that HTTP request through the Ingress controller's SLB (the daemon reads the URL as trace does)."""
    from acknet.cli.live import running_api

    v = trace.verdict
    body = {"from": [v.source], "to": [v.destination], "ports": [f"{v.port}/{v.protocol}"]}
    found = running_api(name, state).post("/probe", body)["verdicts"]
    probed = next((p for p in found if (p["from"], p["to"]) == (v.source, v.destination)), None)
    if probed is None:
        raise AcknetError(f"the probe sent nothing from {v.source} to {v.destination}")
    state_probe, state_trace = verdict_state(probed), verdict_state(v.to_json())
    out: dict[str, Any] = {
        "verdict": "allowed" if probed["allowed"] else "dropped",
        "agrees": state_probe == state_trace,
    }
    if probed.get("partial"):
        out["partial"] = True
    return out


# -- text -----------------------------------------------------------------------------------------


def render_text(trace: Trace, live: dict[str, Any] | None = None) -> str:
    """One hop per line (number, action, where, what decided, rule, why), then the verdict and, for a
    drop, what would change it."""
    v = trace.verdict
    lines = [f"{v.source} -> {v.destination} {v.port}/{v.protocol}"]
    if trace.through_service:
        rows = [(f"{i}", h) for i, h in enumerate(trace.head, 1)]
        lines.extend(_hop_lines(rows, "  "))
        for n, branch in enumerate(trace.branches, 1):
            word = "allowed" if branch.allowed else "dropped"
            lines.append(f"  path {n}/{len(trace.branches)}: {branch.destination}: {word}")
            lines.extend(_hop_lines([(f"{n}.{i}", h) for i, h in enumerate(branch.hops, 1)], "    "))
    else:
        lines.extend(_hop_lines([(f"{i}", h) for i, h in enumerate(v.hops, 1)], "  "))
    lines.append(_verdict_line(trace))
    step = 0
    for s in (*trace.suggestions, *trace.further):
        if s.step != step:
            step = s.step
            lines.append("to change it:" if step == 1 else f"then, with that changed, step {step}:")
        lines.append(f"  - {s.change}")
        if s.snippet is not None:
            text = yaml.safe_dump(dict(s.snippet), sort_keys=False, default_flow_style=None, width=200)
            lines.extend(f"      {line}" for line in text.rstrip().splitlines())
    if live is not None:
        agrees = "agrees" if live["agrees"] else "DISAGREES"
        word = "partial" if live.get("partial") else live["verdict"]
        # Through an Ingress the probe sends HTTP requests (a URL's, or the rules' sample requests).
        what = "request" if v.destination.startswith(("ingress/", "http://", "https://")) else "packet"
        line = f"live: a real {what} was {word}: {agrees} with the trace"
        lines.append(line)
    return "\n".join(lines)


def _hop_lines(rows: Sequence[tuple[str, Any]], indent: str) -> list[str]:
    cells = [(n, h.shown, h.at, h.object, h.rule or "-", h.reason) for n, h in rows]
    if not cells:
        return []
    widths = [max(len(c[i]) for c in cells) for i in range(5)]
    return [indent + "  ".join(c[i].ljust(widths[i]) for i in range(5)) + f"  {c[5]}".rstrip() for c in cells]


def _verdict_line(trace: Trace) -> str:
    v = trace.verdict
    if trace.through_service and trace.branches and v.backends:
        passed = sum(1 for b in trace.branches if b.allowed)
        detail = f" ({passed} of {len(trace.branches)} paths pass)"
        return f"verdict: {'partial' if v.partial else trace.word}{detail}"
    if v.allowed:
        return "verdict: allowed"
    last = v.hops[-1]
    rule = f" {last.rule}" if last.rule else ""
    return f"verdict: dropped: {last.shown} at {last.at} by {last.object}{rule}"
