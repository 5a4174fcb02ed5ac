"""Write-behind store of the location table: ``<data-dir>/location.sqlite3``.

Workers write the AORs they changed about once a second (WAL mode, so two
workers and a reader do not block each other for long); the supervisor reads
everything back at start, before forking, into the shared table, and writes
the whole table when a worker dies and at stop.

A row is the AOR, its bindings encoded as in the shared table
(``encode_bindings``: marshal, so the write costs no per-binding work) and the
offset between the wall clock and the monotonic clock when it was written:
expiry times are monotonic, and ``wall_offset`` turns them into wall-clock
times so a binding keeps its remaining lifetime across a restart. A row that
cannot be decoded (written by another Python version) is skipped with a
warning. What a worker changed in its last second before the whole machine
stops is lost; a worker crash loses nothing (the supervisor saves the table).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from simplefast.logs import get_logger
from simplefast.proxy.location import Binding, decode_bindings

log = get_logger(__name__)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS location2"
    " (aor TEXT PRIMARY KEY, bindings BLOB NOT NULL, wall_offset REAL NOT NULL)"
)


def init(data_dir: Path) -> None:
    """Create the file in WAL mode (persistent in the file). Done once by the
    supervisor before the workers exist: switching the journal mode needs an
    exclusive lock that concurrent writers would refuse with "database is locked"."""
    data_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(data_dir / "location.sqlite3", timeout=10.0)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(_SCHEMA)
        db.commit()
    finally:
        db.close()


def _connect(data_dir: Path) -> sqlite3.Connection:
    if not (data_dir / "location.sqlite3").exists():
        init(data_dir)
    db = sqlite3.connect(data_dir / "location.sqlite3", timeout=10.0)
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def save_encoded(
    data_dir: Path, rows: dict[str, bytes], mono_now: float, wall_now: float, *, replace_all: bool = False
) -> int:
    """Write AOR -> encoded bindings (b"" deletes the AOR); with ``replace_all``
    the rows are the whole table and nothing else is kept."""
    offset = wall_now - mono_now
    db = _connect(data_dir)
    try:
        with db:
            if replace_all:
                db.execute("DELETE FROM location2")
            db.executemany("DELETE FROM location2 WHERE aor = ?", [(a,) for a, v in rows.items() if not v])
            db.executemany(
                "INSERT OR REPLACE INTO location2 (aor, bindings, wall_offset) VALUES (?, ?, ?)",
                [(a, v, offset) for a, v in rows.items() if v],
            )
    finally:
        db.close()
    return len(rows)


def save(
    data_dir: Path, rows: Iterable[tuple[str, list[Binding]]], mono_now: float, wall_now: float,
    *, replace_all: bool = False,
) -> int:  # fmt: skip
    """Like ``save_encoded``, from binding lists."""
    from simplefast.proxy.location import encode_bindings

    enc = {aor: encode_bindings(b) if b else b"" for aor, b in rows}
    return save_encoded(data_dir, enc, mono_now, wall_now, replace_all=replace_all)


def load(data_dir: Path, mono_now: float, wall_now: float) -> Iterator[tuple[str, list[Binding]]]:
    """Every stored AOR with its unexpired bindings (expiry back on this boot's monotonic clock)."""
    path = data_dir / "location.sqlite3"
    if not path.exists():
        return
    db = _connect(data_dir)
    try:
        rows = db.execute("SELECT aor, bindings, wall_offset FROM location2").fetchall()
    finally:
        db.close()
    now_offset = wall_now - mono_now
    for aor, blob, offset in rows:
        try:
            bindings = decode_bindings(blob)
        except (ValueError, EOFError, TypeError) as exc:
            log.warning("location store: row of %s skipped: %s", aor, exc)
            continue
        shift = offset - now_offset  # stored monotonic time + shift = this boot's monotonic time
        live = [b._replace_expiry(b.expires_at + shift) for b in bindings if b.expires_at + offset > wall_now]
        if live:
            yield aor, live
