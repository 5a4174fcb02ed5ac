"""Offline store-and-forward of page-mode IM (what Kamailio's msilo does).

Theory of operation
-------------------
When a MESSAGE reaches a user of ours with no registered contact, the IM
layer calls ``put`` and answers 202; when the user next registers it calls
``has`` (cheap, on every REGISTER) and, if true, ``claim``, sends the claimed
messages in the order given and reports each outcome with ``delivered`` or
``release``. A message moves through these states (one row each)::

    put ──> WAITING ──claim──> CLAIMED (until now + lease, attempts += 1)
              ^  ^                │  │  │
              │  └────release─────┘  │  └──delivered──> (row deleted)
              └───lease ran out──────┘
    WAITING or CLAIMED ──expire (stored_at <= now - max_age)──> (row deleted)

* A message is *unexpired* while ``stored_at > now - max_age``. Expired rows
  are invisible to ``has``, ``claim`` and the per-user cap at once, and are
  deleted by ``expire`` (call it now and then, e.g. once a minute);
  ``count`` counts the rows still in the file, expired or not.
* ``claim`` hands out each message to one caller at a time: one write
  transaction (``BEGIN IMMEDIATE``) picks the aor's oldest unexpired
  messages whose ``claimed_until <= now`` and sets ``claimed_until = now +
  lease``. Two workers claiming at once are serialised by SQLite's write
  lock, so they never get the same message. Messages are ordered by
  ``stored_at`` (the caller's time of arrival, taken before it waits for
  the write lock: two workers storing a user's messages 20 ms apart may
  commit them the other way round when one waits on the lock), then by id;
  ids only grow (``AUTOINCREMENT``: never reused, so a late ``delivered``
  from a worker whose lease ran out cannot delete a newer message).
* The lease (default 40 s) outlasts a non-INVITE client transaction (Timer
  F = 64*T1 = 32 s, RFC 3261 §17.1.2.2), so a worker always learns the
  outcome of its MESSAGE before its lease ends. If it dies first (kill -9),
  its messages stay claimed until the lease ends, then the next claim takes
  them again: delivery is at least once, and ``Stored.attempts`` (claims so
  far, this one included) lets the caller give up on a message that never
  gets through. A claim survives a restart (another worker may still hold it).
* Order: each claim returns oldest first. Deliver one claim's messages one
  after the other, and claim again only when done, or two batches of the
  same user may be sent side by side.
* The per-user cap is checked inside put's write transaction (count the
  aor's unexpired rows; ``>= per_user`` -> ``OfflineFull``), so processes
  racing cannot exceed it. ``release`` makes the message claimable at once
  (``claimed_until = 0``); its ``now`` is kept for a retry back-off.

Processes and durability
------------------------
The server runs N forked workers; each opens its OWN ``OfflineStore`` on the
same file after the fork (a SQLite connection must not cross a fork: the
child's use of an inherited store raises ``OfflineStoreError``). Let the
supervisor open and close the store once before forking, which creates the
file, its schema and WAL mode; concurrent first opens are safe too (the
schema is created under the write lock; the one-off switch to WAL, which
SQLite does not retry, is retried here for up to ``BUSY_TIMEOUT``: the only
place this module reads a clock or sleeps; everything else takes ``now``).
Use a store from one thread (sqlite3's default check).

The file is in WAL mode; ``put`` returns only after its transaction
committed. With ``synchronous=NORMAL`` (the default) a committed transaction
survives the crash or kill -9 of any process, since it is in the WAL file
(the OS has it); an OS crash or power loss may lose the last commits before
the next checkpoint. ``durable=True`` selects ``synchronous=FULL``: each
commit fsyncs the WAL, which survives that too and costs a disk flush per
write call. Writers wait for each other for up to
``BUSY_TIMEOUT`` seconds (``PRAGMA busy_timeout``); every write here is one
short transaction, so waits are short. A commit now and then also runs a
WAL checkpoint (SQLite's default, every 1000 pages) and takes longer.

Schema and file checks
----------------------
One table ``offline`` (see ``_SCHEMA``) with an index on ``(aor, id,
stored_at)`` (claim order; covering for the cap's count and ``has``, which
halves the cost of a put for a user near the cap) and one on ``stored_at``
(``expire``). ``extra`` holds the kept headers as JSON ``[[name, value],
...]``. The file is tagged with ``PRAGMA application_id`` (``APPLICATION_ID``)
and ``PRAGMA user_version`` (``SCHEMA_VERSION``, to bump with a migration
when the schema changes). Opening a new or empty file creates the schema.
Opening a file that is not SQLite, another program's database (even one
with a table named ``offline``), another schema version, a store missing
its table, or a directory raises ``OfflineStoreError`` naming the file,
before anything in the file was changed. Damage deeper in the file shows at
the first call that reads it, and any SQLite error in a call is raised as
``OfflineStoreError`` too (naming the file and the call; the sqlite3 error
is its cause), never as a bare ``sqlite3`` exception.

Cost
----
Every call is one or a few prepared statements (sqlite3 keeps them cached
per connection): ``has`` is one read of a covering index starting from the
aor's newest message, no write; ``put`` and ``claim`` one write transaction
each, ``delivered``, ``release`` and ``expire`` one statement each (its own
commit). Measured with ``.venv/bin/python -m simplefast.store.offline [DIR]``
(1 000 users x 20 messages of 200 bytes, one process; Python 3.11.7, SQLite
3.40.1, a shared and noisy 2-vCPU AMD EPYC VM at load ~2, so runs differ by
up to 2x: read them as orders of magnitude)::

                                tmpfs (/dev/shm)        ext4 (/tmp)
    put, synchronous=NORMAL     ~18 000/s (55 us)       6 000-8 000/s (130-190 us)
    put, durable=True (FULL)    ~18 000/s (55 us)       ~2 000/s (440-560 us: an fsync)
    has, hit or miss            80 000-130 000/s (8-12 us), on either
    claim(20) + 20 x delivered  ~900 users/s =          200-350 users/s =
                                ~18 000 messages/s      4 000-7 000 messages/s

So a call stalls the event loop for tens of microseconds (a few hundred on
a disk, more with ``durable=True``), and one worker can store and deliver
thousands of messages a second; ``has`` on every REGISTER costs ~10 us.
Most of claim + delivered is the per-message commit of ``delivered``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from simplefast.errors import SimplefastError

__all__ = [
    "APPLICATION_ID",
    "BUSY_TIMEOUT",
    "SCHEMA_VERSION",
    "OfflineFull",
    "OfflineStore",
    "OfflineStoreError",
    "Stored",
]

APPLICATION_ID = int.from_bytes(b"sfIM", "big")  # PRAGMA application_id of our files
SCHEMA_VERSION = 1  # PRAGMA user_version; bump (and migrate) when _SCHEMA changes
BUSY_TIMEOUT = 5.0  # seconds a writer waits for another's transaction

_SCHEMA = (
    """CREATE TABLE offline (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        aor TEXT NOT NULL,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        content_type TEXT NOT NULL,
        body BLOB NOT NULL,
        date TEXT NOT NULL,
        extra TEXT NOT NULL,
        stored_at REAL NOT NULL,
        claimed_until REAL NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0
    )""",
    # (aor, id) orders a user's messages; stored_at makes it cover the cap's count and has()
    "CREATE INDEX offline_aor ON offline (aor, id, stored_at)",
    "CREATE INDEX offline_age ON offline (stored_at)",
    f"PRAGMA application_id = {APPLICATION_ID}",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
# the objects _SCHEMA creates (sqlite_sequence comes with AUTOINCREMENT)
_OBJECTS = frozenset({"offline", "offline_aor", "offline_age", "sqlite_sequence"})

_COLUMNS = "id, aor, sender, recipient, content_type, body, date, stored_at, attempts, extra"
_COUNT_LIVE = "SELECT count(*) FROM offline WHERE aor = ? AND stored_at > ?"
_INSERT = (
    "INSERT INTO offline (aor, sender, recipient, content_type, body, date, extra, stored_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
# newest first: the first row looked at is almost always unexpired
_HAS = "SELECT 1 FROM offline WHERE aor = ? AND stored_at > ? ORDER BY id DESC LIMIT 1"
_CLAIM = (
    "UPDATE offline SET claimed_until = ?, attempts = attempts + 1 WHERE id IN ("
    " SELECT id FROM offline WHERE aor = ? AND stored_at > ? AND claimed_until <= ?"
    " ORDER BY stored_at, id LIMIT ?"
    f") RETURNING {_COLUMNS}"
)
# in_order: nothing while another claim of the user's is live, so two workers
# delivering to the same user cannot overtake each other
_CLAIM_IN_ORDER = (
    "UPDATE offline SET claimed_until = ?, attempts = attempts + 1 WHERE id IN ("
    " SELECT id FROM offline WHERE aor = ? AND stored_at > ? AND claimed_until <= ?"
    " AND NOT EXISTS (SELECT 1 FROM offline WHERE aor = ?2 AND stored_at > ?3 AND claimed_until > ?4)"
    " ORDER BY stored_at, id LIMIT ?"
    f") RETURNING {_COLUMNS}"
)
_DELETE = "DELETE FROM offline WHERE id = ?"
_RELEASE = "UPDATE offline SET claimed_until = 0 WHERE id = ?"
_EXPIRE = "DELETE FROM offline WHERE stored_at <= ?"
_COUNT = "SELECT count(*) FROM offline"
_COUNT_AOR = "SELECT count(*) FROM offline WHERE aor = ?"
_AORS = "SELECT DISTINCT aor FROM offline WHERE stored_at > ?"
_NO_EXTRA = "[]"

# Bumped in every child after a fork: a store opened in another generation
# holds the parent's connection, which the child must not use.
_generation = 0
_inherited: list[sqlite3.Connection] = []  # see OfflineStore.close


def _after_fork_in_child() -> None:
    global _generation
    _generation += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


class OfflineStoreError(SimplefastError, RuntimeError):
    """The store's file cannot be used: not SQLite, damaged, another program's
    database or another schema version, or a SQLite error in a call. The
    message names the file; the sqlite3 error, if any, is the cause."""


class OfflineFull(SimplefastError):
    """The user already has ``limit`` unexpired messages stored.

    ``str()`` is a short ASCII reason with no user data in it (fit for a
    response's reason phrase or a log line).
    """

    limit: int

    def __init__(self, limit: int) -> None:
        super().__init__(f"offline message store full ({limit} messages)")
        self.limit = limit

    def __reduce__(self) -> tuple[type, tuple[int]]:
        return (type(self), (self.limit,))


@dataclass(frozen=True, slots=True)
class Stored:
    """One stored MESSAGE, as ``claim`` returns it.

    ``sender`` and ``to`` are the original From and To header values (From
    with its tag, as received); ``date`` the original Date value, or the
    store time in RFC 1123 form if the MESSAGE had none; ``extra`` the other
    headers the caller chose to keep, in order; ``attempts`` how many claims
    took the message, this one included.
    """

    id: int
    aor: str
    sender: str
    to: str
    content_type: str
    body: bytes
    date: str
    stored_at: float
    attempts: int
    extra: tuple[tuple[str, str], ...]


def _stored(row: tuple[int, str, str, str, str, bytes, str, float, int, str]) -> Stored:
    i, aor, sender, to, ctype, body, date, stored_at, attempts, extra = row
    kept = () if extra == _NO_EXTRA else tuple((str(n), str(v)) for n, v in json.loads(extra))
    return Stored(i, aor, sender, to, ctype, body, date, stored_at, attempts, kept)


class OfflineStore:
    """The offline messages in one SQLite file, for one process (see the module doc).

    Args:
        path: the database file (e.g. ``<data-dir>/offline.sqlite3``); created if missing.
        max_age: seconds a message is kept; older ones are never delivered.
        per_user: the most unexpired messages one aor may have stored.
        max_bytes: the largest body accepted.
        durable: ``synchronous=FULL`` (survives an OS crash; a disk flush per commit)
            instead of ``NORMAL`` (survives process crashes).

    Raises:
        OfflineStoreError: the file cannot be opened, is not SQLite, or holds another schema.
        ValueError: a limit is not positive.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_age: float = 7 * 86400,
        per_user: int = 100,
        max_bytes: int = 65536,
        durable: bool = False,
    ) -> None:
        if not max_age > 0 or per_user < 1 or max_bytes < 0:
            raise ValueError(
                f"offline store: need max_age > 0, per_user >= 1, max_bytes >= 0"
                f" (got {max_age}, {per_user}, {max_bytes})"
            )
        self.path = os.fspath(path)
        self.max_age = float(max_age)
        self.per_user = per_user
        self.max_bytes = max_bytes
        self.durable = durable
        self._gen = _generation
        self._db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._error("open", exc) from exc
        try:
            self._open(db)
        except BaseException:
            db.close()
            raise
        self._db = db

    # -- opening

    def _open(self, db: sqlite3.Connection) -> None:
        try:
            db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            db.execute("BEGIN")  # a read transaction: the three reads see one snapshot
            try:
                self._check(db)  # read only: refuse a foreign file untouched
            finally:
                _rollback(db)
            db.execute("PRAGMA synchronous = FULL" if self.durable else "PRAGMA synchronous = NORMAL")
            self._wal(db)
            db.execute("BEGIN IMMEDIATE")  # one creator; the others see its schema
            try:
                if self._check(db):
                    for statement in _SCHEMA:
                        db.execute(statement)
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise
        except sqlite3.Error as exc:
            raise self._error("open", exc) from exc

    def _check(self, db: sqlite3.Connection) -> bool:
        """True if the file is empty (to create), False if it holds our schema; else raise."""
        (app,) = db.execute("PRAGMA application_id").fetchone()
        (version,) = db.execute("PRAGMA user_version").fetchone()
        names = {n for (n,) in db.execute("SELECT name FROM sqlite_master").fetchall()}
        if app == 0 and version == 0 and not names:
            return True
        if app != APPLICATION_ID:
            shown = ", ".join(sorted(names)[:5]) or "none"
            raise OfflineStoreError(
                f"{self.path}: not a simplefast offline store (application_id {app}, tables: {shown})"
            )
        if version != SCHEMA_VERSION:
            raise OfflineStoreError(
                f"{self.path}: offline store schema version {version}; this simplefast reads {SCHEMA_VERSION}"
            )
        if not _OBJECTS <= names:
            raise OfflineStoreError(f"{self.path}: offline store is missing {sorted(_OBJECTS - names)}")
        return False

    def _wal(self, db: sqlite3.Connection) -> None:
        # Switching to WAL takes an exclusive lock without calling the busy handler:
        # a worker opening a new file while another does gets "locked" at once.
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                (mode,) = db.execute("PRAGMA journal_mode = WAL").fetchone()
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.002)
                continue
            if str(mode).lower() != "wal":
                raise OfflineStoreError(f"{self.path}: cannot use WAL mode (journal_mode {mode})")
            return

    # -- helpers

    def _conn(self) -> sqlite3.Connection:
        db = self._db
        if db is None:
            raise OfflineStoreError(f"{self.path}: offline store is closed")
        if self._gen != _generation:
            raise OfflineStoreError(
                f"{self.path}: offline store opened before a fork; open one in each process"
            )
        return db

    def _error(self, op: str, exc: sqlite3.Error) -> OfflineStoreError:
        return OfflineStoreError(f"{self.path}: offline store {op}: {exc}")

    # -- API

    def put(
        self,
        aor: str,
        sender: str,
        to: str,
        content_type: str,
        body: bytes,
        date: str,
        now: float,
        extra: Iterable[tuple[str, str]] = (),
    ) -> int:
        """Store a MESSAGE for ``aor``; returns after the commit.

        Args:
            aor: the recipient user (the key ``has`` and ``claim`` take).
            sender, to: the original From (with tag) and To header values.
            content_type, body: the MESSAGE's Content-Type value and body.
            date: the original Date value, or an RFC 1123 date of ``now``.
            now: wall-clock seconds since the epoch.
            extra: other (name, value) headers to keep for delivery, in order.

        Returns:
            The message id (ids only grow).

        Raises:
            ValueError: ``body`` is longer than ``max_bytes`` (answer 413).
            OfflineFull: ``aor`` already has ``per_user`` unexpired messages.
            OfflineStoreError: SQLite failed (nothing was stored).
        """
        (got,) = self.put_many([(aor, sender, to, content_type, body, date, now, extra)])
        if isinstance(got, Exception):
            raise got
        return got

    def put_many(
        self, items: Sequence[tuple[str, str, str, str, bytes, str, float, Iterable[tuple[str, str]]]]
    ) -> list[int | Exception]:
        """Several ``put``s (argument tuples in ``put``'s order) in one transaction: one
        commit for all (a group commit when MESSAGEs queue for the store). Each gets its
        id, or the exception ``put`` would have raised for it (``OfflineFull``,
        ``ValueError``), in order; the cap counts the earlier items of the same call.

        Raises:
            OfflineStoreError: SQLite failed (nothing of the call was stored).
        """
        out: list[int | Exception] = []
        with self._write_txn("put") as db:
            for aor, sender, to, content_type, body, date, now, extra in items:
                if len(body) > self.max_bytes:
                    out.append(
                        ValueError(f"body of {len(body)} bytes exceeds the offline limit of {self.max_bytes}")
                    )
                    continue
                (n,) = db.execute(_COUNT_LIVE, (aor, now - self.max_age)).fetchone()
                if n >= self.per_user:
                    out.append(OfflineFull(self.per_user))
                    continue
                kept = json.dumps([[k, v] for k, v in extra]) if extra else _NO_EXTRA
                rowid = db.execute(_INSERT, (aor, sender, to, content_type, body, date, kept, now)).lastrowid
                if rowid is None:  # pragma: no cover - an INSERT always has one
                    raise OfflineStoreError(f"{self.path}: offline store put: no row id")
                out.append(int(rowid))
        return out

    @contextlib.contextmanager
    def _write_txn(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT; rolled back on any error;
        an SQLite error becomes OfflineStoreError naming ``what``)."""
        db = self._conn()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise
        except sqlite3.Error as exc:
            raise self._error(what, exc) from exc

    def has(self, aor: str, now: float) -> bool:
        """Whether ``aor`` has any unexpired message, claimed or not (one indexed read)."""
        db = self._conn()
        try:
            return bool(db.execute(_HAS, (aor, now - self.max_age)).fetchall())
        except sqlite3.Error as exc:
            raise self._error("has", exc) from exc

    def claim(
        self, aor: str, now: float, *, lease: float = 40.0, limit: int = 50, in_order: bool = False
    ) -> list[Stored]:
        """Take up to ``limit`` of ``aor``'s unexpired, unclaimed messages, oldest first.

        Each is claimed until ``now + lease`` (no other claim returns it before,
        unless it is released) and its ``attempts`` goes up by one. Report each
        with ``delivered`` or ``release``. ``in_order``: nothing at all while
        another claim on the user's messages is live (delivery one at a time,
        oldest first, whichever process claims).

        Raises:
            ValueError: ``limit`` < 1 or ``lease`` <= 0.
            OfflineStoreError: SQLite failed (nothing was claimed).
        """
        if limit < 1 or not lease > 0:
            raise ValueError(f"offline claim: need limit >= 1 and lease > 0 (got {limit}, {lease})")
        with self._write_txn("claim") as db:
            sql = _CLAIM_IN_ORDER if in_order else _CLAIM
            rows = db.execute(sql, (now + lease, aor, now - self.max_age, now, limit)).fetchall()
        out = [_stored(r) for r in rows]
        out.sort(key=lambda m: (m.stored_at, m.id))  # RETURNING has no defined order
        return out

    def delivered(self, id: int) -> None:
        """The message was delivered: delete it (an unknown id is ignored)."""
        db = self._conn()
        try:
            db.execute(_DELETE, (id,))
        except sqlite3.Error as exc:
            raise self._error("delivered", exc) from exc

    def release(self, id: int, now: float) -> None:
        """Delivery failed: make the message claimable again at once (unknown id: ignored)."""
        db = self._conn()
        try:
            db.execute(_RELEASE, (id,))
        except sqlite3.Error as exc:
            raise self._error("release", exc) from exc

    def expire(self, now: float) -> int:
        """Delete the messages stored ``max_age`` or more seconds before ``now``; returns how many."""
        db = self._conn()
        try:
            return db.execute(_EXPIRE, (now - self.max_age,)).rowcount
        except sqlite3.Error as exc:
            raise self._error("expire", exc) from exc

    def aors(self, now: float) -> list[str]:
        """Every address-of-record with an unexpired message (at start, to mark them)."""
        db = self._conn()
        try:
            return [str(r[0]) for r in db.execute(_AORS, (now - self.max_age,)).fetchall()]
        except sqlite3.Error as exc:
            raise self._error("aors", exc) from exc

    def count(self, aor: str | None = None) -> int:
        """Rows in the file (of ``aor``, or all), claimed or not, expired ones until ``expire``."""
        db = self._conn()
        try:
            cur = db.execute(_COUNT) if aor is None else db.execute(_COUNT_AOR, (aor,))
            (n,) = cur.fetchone()
        except sqlite3.Error as exc:
            raise self._error("count", exc) from exc
        return int(n)

    def close(self) -> None:
        """Close the connection (idempotent). In a forked child the parent's
        connection is only forgotten: kept referenced, never closed, since
        closing it there could checkpoint or delete the WAL under the parent."""
        db, self._db = self._db, None
        if db is None:
            return
        if self._gen == _generation:
            db.close()
        else:
            _inherited.append(db)


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the first error is the one to report


def _bench() -> None:  # pragma: no cover - `python -m simplefast.store.offline`
    import tempfile
    from collections.abc import Callable

    users, per, body = 1000, 20, b"x" * 200
    aors = [f"sip:u{i}@example.com" for i in range(users)]

    def rate(label: str, n: int, fn: Callable[[], object], msgs: int = 0) -> None:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        print(f"{label:36} {n / dt:9.0f} /s {dt / n * 1e6:7.1f} us", end="")
        print(f"  ({n * msgs / dt:.0f} messages/s)" if msgs else "")

    def run(s: OfflineStore, durable: bool) -> None:
        def puts() -> None:
            for k in range(per):
                for a in aors:
                    s.put(a, "<sip:b@example.com>;tag=1", a, "text/plain", body, "D", 1000.0 + k)

        def hass() -> None:
            for _ in range(10):
                for a in aors:
                    s.has(a, 2000.0)
                    s.has(a + "x", 2000.0)

        def drain() -> None:
            for a in aors:
                for m in s.claim(a, 2000.0, limit=per):
                    s.delivered(m.id)

        rate(f"put (durable={durable})", users * per, puts)
        if not durable:
            rate("has (half true, half false)", 20 * users, hass)
            rate(f"claim({per}) + {per} x delivered, per user", users, drain, per)

    where = sys.argv[1] if len(sys.argv) > 1 else ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    with tempfile.TemporaryDirectory(dir=where) as d:
        print(f"{users} users x {per} messages of {len(body)} bytes in {d}, SQLite {sqlite3.sqlite_version}")
        for durable in (False, True):
            s = OfflineStore(os.path.join(d, f"bench{int(durable)}.sqlite3"), durable=durable)
            try:
                run(s, durable)
            finally:
                s.close()


if __name__ == "__main__":  # pragma: no cover
    _bench()
