"""The daemon's routes: each translates a request into one call on the Emulation, and back."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
from typing import Any

from acknet.api.transport import ApiError, ApiServer
from acknet.daemon import views
from acknet.daemon.engine import Emulation, probe_jobs
from acknet.errors import AcknetError, InvalidInput, NotFound
from acknet.model.documents import Source
from acknet.observe.probe import run_probes, verdicts


def register(server: ApiServer, emu: Emulation) -> None:
    def status(body: dict[str, Any], query: dict[str, str]) -> tuple[int, Any]:
        return 200, {"name": emu.name, "pid": os.getpid(), **dataclasses.asdict(emu.status)}

    def apply(body: dict[str, Any], query: dict[str, str]) -> tuple[int, Any]:
        sources = [Source(str(s["name"]), str(s["text"])) for s in body.get("sources", [])]
        try:
            revision = emu.submit(sources)
        except InvalidInput as exc:
            raise ApiError(422, str(exc), diagnostics=[d.to_json() for d in exc.diagnostics]) from exc
        return 202, {"revision": revision}

    def get(body: dict[str, Any], query: dict[str, str]) -> tuple[int, Any]:
        if emu.plan is None:
            raise ApiError(409, "the emulation has not been built yet")
        kind = views.ALIASES.get(query.get("kind", "pods"), query.get("kind", "pods"))
        if kind == "slb":
            health = emu.slb.health() if emu.slb is not None else {}
            dropped = emu.slb.dropped() if emu.slb is not None else {}
            return 200, {"items": views.slb_items(emu.plan, health, dropped)}
        if kind == "ingress":
            runtime = emu.ingress
            problems = runtime.problems() if runtime is not None else None
            errors = runtime.errors() if runtime is not None else None
            return 200, {"items": views.ingress_items(emu.plan, problems, errors)}
        try:
            return 200, {"items": views.items(emu.plan, query.get("kind", "pods"), emu.ready)}
        except NotFound as exc:
            raise ApiError(404, str(exc)) from exc

    def delete_pod(body: dict[str, Any], query: dict[str, str]) -> tuple[int, Any]:
        try:
            return 200, {"deleted": emu.delete_pod(str(body["namespace"]), str(body["name"]))}
        except NotFound as exc:
            raise ApiError(404, str(exc)) from exc

    def shutdown(body: dict[str, Any], query: dict[str, str]) -> tuple[int, Any]:
        removed: list[str] = []
        if body.get("teardown", True):
            try:
                removed = emu.teardown()
            except AcknetError as exc:
                raise ApiError(500, str(exc)) from exc
        # Answer first, then leave: the main thread waits for this signal.
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        return 200, {"removed": removed}

    def probe(body: dict[str, Any], query: dict[str, str]) -> tuple[int, Any]:
        planned = emu.plan
        if planned is None:
            raise ApiError(409, "the emulation has not been built yet")
        try:
            jobs = probe_jobs(emu.name, planned, body.get("from"), body.get("to"), body.get("ports"))
        except (AcknetError, ValueError) as exc:
            raise ApiError(400, str(exc)) from exc
        results = run_probes(jobs, timeout=float(body.get("timeout", 1.0)))
        return 200, verdicts(results)

    def sources(body: dict[str, Any], query: dict[str, str]) -> tuple[int, Any]:
        # The files of the latest revision, for answers from the files (`trace --name`, `verify`).
        latest = emu.store.latest()
        if latest is None:
            raise ApiError(409, "the emulation has no files yet")
        return 200, {
            "revision": latest.id,
            "sources": [{"name": s.name, "text": s.text} for s in latest.sources],
        }

    server.route("GET", "/status", status)
    server.route("GET", "/sources", sources)
    server.route("POST", "/probe", probe)
    server.route("POST", "/apply", apply)
    server.route("GET", "/objects", get)
    server.route("POST", "/pods/delete", delete_pod)
    server.route("POST", "/shutdown", shutdown)
