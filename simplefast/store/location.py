"""Write-behind store of the location table: ``<data-dir>/location.sqlite3``.

Workers write the AORs they changed about once a second (WAL mode, so two
workers and a reader do not block each other for long); the supervisor reads
everything back at start, before forking, into the shared table. Expiry is
stored as wall-clock time and converted to and from the event loop's
monotonic clock, so a binding keeps its remaining lifetime across a restart.
What a worker changed in its last second before a crash of the whole machine
is lost; a worker crash loses nothing (the table is in the supervisor's
mapping, and the next write-behind of any worker covers the AOR when it
changes again).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from simplefast.proxy.location import Binding

_SCHEMA = "CREATE TABLE IF NOT EXISTS location (aor TEXT PRIMARY KEY, bindings TEXT NOT NULL)"


def _connect(data_dir: Path) -> sqlite3.Connection:
    data_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(data_dir / "location.sqlite3", timeout=10.0)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(_SCHEMA)
    return db


def save(
    data_dir: Path, rows: Iterable[tuple[str, list[Binding]]], mono_now: float, wall_now: float,
    *, replace_all: bool = False,
) -> int:  # fmt: skip
    """Write the current bindings of some AORs (an empty list deletes the AOR);
    with ``replace_all`` the rows are the whole table and nothing else is kept."""
    db = _connect(data_dir)
    n = 0
    try:
        with db:
            if replace_all:
                db.execute("DELETE FROM location")
            for aor, bindings in rows:
                n += 1
                if not bindings:
                    db.execute("DELETE FROM location WHERE aor = ?", (aor,))
                    continue
                doc = [
                    {"contact": b.contact, "expires": wall_now + (b.expires_at - mono_now), "q": b.q,
                     "call_id": b.call_id, "cseq": b.cseq, "path": list(b.path), "source": b.source,
                     "instance": b.instance}
                    for b in bindings
                ]  # fmt: skip
                db.execute(
                    "INSERT OR REPLACE INTO location (aor, bindings) VALUES (?, ?)", (aor, json.dumps(doc))
                )
    finally:
        db.close()
    return n


def load(data_dir: Path, mono_now: float, wall_now: float) -> Iterator[tuple[str, list[Binding]]]:
    """Every stored AOR with its unexpired bindings (expiry back on the monotonic clock)."""
    path = data_dir / "location.sqlite3"
    if not path.exists():
        return
    db = _connect(data_dir)
    try:
        rows = db.execute("SELECT aor, bindings FROM location").fetchall()
    finally:
        db.close()
    for aor, text in rows:
        live = [
            Binding(d["contact"], mono_now + (d["expires"] - wall_now), d["q"], d["call_id"], d["cseq"],
                    tuple(d["path"]), d["source"], d["instance"])
            for d in json.loads(text)
            if d["expires"] > wall_now
        ]  # fmt: skip
        if live:
            yield aor, live
