"""Write-behind store of the presence tables: ``<data-dir>/presence.sqlite3``.

Same scheme as the location store (``location.py``): each worker writes the
rows it changed about once a second (presentities it published to or
expired, subscriptions it made, refreshed, ended or NOTIFYed: the row
carries the last NOTIFY CSeq), the supervisor writes both tables whole
when a worker dies and at stop, and reads them back at start, before
forking, into the shared tables. So a restarted server goes on with every
publication and subscription a client was told about, NOTIFY CSeqs
continuing; what changed in the last second before the whole machine stops
is lost (a crash of one worker loses nothing: the shared tables keep it).

Rows hold the shared-table values as they are (``state.py`` and
``subscribe.py`` encodings, times on the monotonic clock) and the offset
between the wall clock and the monotonic clock when they were written;
``load`` moves every time onto this boot's monotonic clock and drops the
subscriptions that expired while the server was down (publications that
ended are expired by the workers as they start, which rebuilds the document
and tells the watchers). A row that cannot be decoded (written
by another Python version) is skipped with a warning.
"""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

from simplefast.logs import get_logger
from simplefast.presence.state import decode, encode
from simplefast.presence.subscribe import decode_row, encode_row

log = get_logger(__name__)

FILE = "presence.sqlite3"
_SCHEMA = tuple(
    f"CREATE TABLE IF NOT EXISTS {t} ({k} TEXT PRIMARY KEY, value BLOB NOT NULL, wall_offset REAL NOT NULL)"
    for t, k in (("presentities", "aor"), ("subscriptions", "key"))
)


def init(data_dir: Path) -> None:
    """Create the file in WAL mode (by the supervisor, before the workers exist)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(data_dir / FILE, timeout=10.0)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        for s in _SCHEMA:
            db.execute(s)
        db.commit()
    finally:
        db.close()


def _connect(data_dir: Path) -> sqlite3.Connection:
    if not (data_dir / FILE).exists():
        init(data_dir)
    db = sqlite3.connect(data_dir / FILE, timeout=10.0)
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def save(
    data_dir: Path, presentities: dict[str, bytes], subscriptions: dict[str, bytes], mono_now: float,
    wall_now: float, *, replace_all: bool = False,
) -> int:  # fmt: skip
    """Write shared-table values by key (b"" deletes the key); with ``replace_all``
    the rows are the whole tables and nothing else is kept. Returns the rows written."""
    offset = wall_now - mono_now
    db = _connect(data_dir)
    try:
        with db:
            for table, key, rows in (
                ("presentities", "aor", presentities),
                ("subscriptions", "key", subscriptions),
            ):
                if replace_all:
                    db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
                db.executemany(
                    f"DELETE FROM {table} WHERE {key} = ?", [(k,) for k, v in rows.items() if not v]
                )  # noqa: S608
                db.executemany(
                    f"INSERT OR REPLACE INTO {table} ({key}, value, wall_offset) VALUES (?, ?, ?)",  # noqa: S608
                    [(k, v, offset) for k, v in rows.items() if v],
                )
    finally:
        db.close()
    return len(presentities) + len(subscriptions)


def load(
    data_dir: Path, mono_now: float, wall_now: float, workers: int
) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """The stored rows as shared-table values on this boot's clock: presentities (their
    expired publications dropped) and live subscriptions (an owner index past
    ``workers`` goes to the worker of that index modulo ``workers``). Publications that
    ended while the server was down are kept, for the workers to expire at start."""
    pres: dict[str, bytes] = {}
    subs: dict[str, bytes] = {}
    if not (data_dir / FILE).exists():
        return pres, subs
    db = _connect(data_dir)
    try:
        prow = db.execute("SELECT aor, value, wall_offset FROM presentities").fetchall()
        srow = db.execute("SELECT key, value, wall_offset FROM subscriptions").fetchall()
    finally:
        db.close()
    now_offset = wall_now - mono_now
    for aor, value, offset in prow:
        shift = offset - now_offset  # stored monotonic time + shift = this boot's monotonic time
        try:
            p = decode(int.from_bytes(value[:8], "big"), value[8:])
        except (ValueError, EOFError, TypeError) as exc:
            log.warning("presence store: presentity %s skipped: %s", aor, exc)
            continue
        # publications that ended while the server was down are kept, with their times
        # moved: the workers expire them at start like any other (document rebuilt, NOTIFYs)
        pubs = tuple(
            x._replace(changed_at=x.changed_at + shift, expires_at=x.expires_at + shift) for x in p.pubs
        )
        p = p._replace(pubs=pubs, retired=tuple((e, u + shift) for e, u in p.retired))
        pres[aor] = value[:8] + encode(p)
    for key, value, offset in srow:
        shift = offset - now_offset
        try:
            sub = decode_row(value, key)
        except (ValueError, EOFError, TypeError, struct.error) as exc:
            log.warning("presence store: subscription %s skipped: %s", key, exc)
            continue
        if sub.expires_at + offset <= wall_now:
            continue
        sub.expires_at += shift
        sub.subscribed_at += shift
        if sub.last_sent > -1e17:  # a NOTIFY went (pacing counts from it)
            sub.last_sent += shift
        sub.owner %= workers
        try:
            subs[key] = encode_row(sub)  # layout 2 (a layout 1 row is converted here)
        except ValueError as exc:
            log.warning("presence store: subscription %s skipped: %s", key, exc)
    return pres, subs
