"""The desired state of one emulation, versioned in SQLite under its state folder.

Each ``acknet up`` stores a revision: the files as given, and the plan derived from them. The next
revision is planned against the last one, so allocations (addresses, NodePorts, pod names) stay put,
and a restarted daemon picks up where the last one stopped. Change events are the revisions
themselves plus the runtime events (pods deleted, processes died) recorded in ``events``.
"""

from __future__ import annotations

import json
import pickle
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acknet.model.documents import Source

SCHEMA = """
CREATE TABLE IF NOT EXISTS revisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    sources TEXT NOT NULL,          -- JSON [{name, text}]
    plan BLOB                       -- the planned state derived from the sources (pickle)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    kind TEXT NOT NULL,
    object TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Revision:
    id: int
    created: float
    sources: tuple[Source, ...]
    plan: Any | None


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    created: float
    kind: str
    object: str
    detail: str


class StateStore:
    """One SQLite file per emulation. Safe for one writer (the daemon) and readers (the CLI)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "state.db"
        with self._connect() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10)
        try:
            with db:
                yield db
        finally:
            db.close()

    def add_revision(self, sources: Sequence[Source], plan: Any | None = None) -> int:
        payload = json.dumps([{"name": s.name, "text": s.text} for s in sources])
        blob = pickle.dumps(plan) if plan is not None else None
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO revisions (created, sources, plan) VALUES (?, ?, ?)",
                (time.time(), payload, blob),
            )
            # Older revisions are history only; keep a few for `acknet check --against`-style diffs.
            db.execute("DELETE FROM revisions WHERE id < ?", (int(cursor.lastrowid or 0) - 20,))
            return int(cursor.lastrowid or 0)

    def set_plan(self, revision: int, plan: Any) -> None:
        with self._connect() as db:
            db.execute("UPDATE revisions SET plan = ? WHERE id = ?", (pickle.dumps(plan), revision))

    def latest(self) -> Revision | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT id, created, sources, plan FROM revisions ORDER BY id DESC LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        sources = tuple(Source(s["name"], s["text"]) for s in json.loads(row[2]))
        plan = pickle.loads(row[3]) if row[3] is not None else None
        return Revision(int(row[0]), float(row[1]), sources, plan)

    def record(self, kind: str, obj: str, detail: str = "") -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO events (created, kind, object, detail) VALUES (?, ?, ?, ?)",
                (time.time(), kind, obj, detail),
            )

    def events(self, since: int = 0, kind: str | None = None) -> list[Event]:
        query = "SELECT id, created, kind, object, detail FROM events WHERE id > ?"
        args: list[Any] = [since]
        if kind is not None:
            query += " AND kind = ?"
            args.append(kind)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY id", args).fetchall()
        return [Event(int(r[0]), float(r[1]), str(r[2]), str(r[3]), str(r[4])) for r in rows]

    def get_setting(self, key: str) -> str | None:
        with self._connect() as db:
            row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_setting(self, key: str, value: str) -> None:
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value))
