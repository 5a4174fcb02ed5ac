"""Presentity state shared by the workers: publications, composed document, version.

Theory of operation
-------------------
A presentity (an AOR of ours) has one record: its live publications (RFC
3903), the document composed from them, and a version that grows with every
change a watcher could see. Any worker may receive a PUBLISH for any
presentity, so the record lives in a shared-memory table
(``simplefast/_impl.shmindex``, one row per AOR) and every change is a
compare-and-swap on the row's write counter ``seq``:

1. ``load(aor)`` reads the row: counter ``s`` and the decoded record;
2. the caller computes the new record (``publish.py``);
3. ``replace(aor, s, new)`` writes it with ``put_if_greater(aor, s + 1)``:
   the table compares the stored counter under the row's stripe lock, so of
   two workers changing the same presentity from ``s`` exactly one
   succeeds; the other reads again and retries (``publish.py``).

``version`` is the state watchers see: bumped when the document changes, not
by a refresh (which only moves an entity-tag and an expiry).

A row is never deleted while the server runs: a presentity whose last
publication ends keeps an empty row, so its version keeps growing (a
watcher compares versions) and the compare-and-swap never meets a row that
vanished between read and write. Rows are as many as presentities that
ever published since start; the capacity is configured
(``presence.presentity_capacity``).

Row value: ``seq`` (8 bytes, big-endian: the counter ``put_if_greater``
compares) then ``marshal`` of ``(version, document, publications)`` with each
publication a plain tuple (``PubRecord``), and a fourth item, the retired
entity-tags as ``(tag, until)`` pairs, when there are any (``decode`` reads
both forms; a build from before retired tags cannot read the four-item
form, so a downgrade drops such rows at restore). Times are the loop's monotonic
clock (one clock for every process of the machine); the store on disk
converts to wall time.
"""

from __future__ import annotations

import marshal
from hashlib import blake2b as _blake2b
from typing import Any, NamedTuple, Protocol

from simplefast.errors import SimplefastError


class PubRecord(NamedTuple):
    """One live publication: entity-tag, package, body type, body, when its state last
    changed, when it ends."""

    etag: str
    event: str
    content_type: str
    body: bytes
    changed_at: float
    expires_at: float


class Presentity(NamedTuple):
    version: int  # of the state watchers see: bumped when the document changes
    pubs: tuple[PubRecord, ...]
    document: bytes  # composed from pubs (b"": none; watchers get the configured default)
    seq: int = 0  # of the row: bumped by every write (the compare-and-swap counter)
    # (entity-tag, until): tags that named a publication until a modify, refresh or removal,
    # kept while a retransmission of the request that minted them may still arrive
    # (RETRANSMIT_WINDOW): such a retransmission is the request again, not a new publication
    retired: tuple[tuple[str, float], ...] = ()


# How long after a publication's entity-tag is retired a retransmission of the request that
# minted it may still arrive: 64*T1 with RFC 3261's T1 of 500 ms (Timer J's span over UDP).
RETRANSMIT_WINDOW = 32.0

# Compare-and-swap attempts on a presentity's row before a writer gives up (500): another
# worker changed it in between each time.
CAS_RETRIES = 8


EMPTY = Presentity(0, (), b"", 0)


class StateFullError(SimplefastError):
    """The presentity's record does not fit the table: too large (``status_hint`` 413),
    or no room left (500)."""

    def __init__(self, message: str, status_hint: int = 500) -> None:
        super().__init__(message)
        self.status_hint = status_hint


class PresentityStore(Protocol):
    def load(self, aor: str) -> Presentity: ...

    def replace(self, aor: str, seq: int, new: Presentity) -> bool:
        """Write ``new`` (its ``seq`` must be ``seq + 1``) unless the stored row moved
        on from ``seq``; False then (read again and retry)."""
        ...

    def aors(self) -> list[str]: ...

    def count(self) -> int: ...


class MemoryPresentities:
    """One process (tests, single worker)."""

    def __init__(self) -> None:
        self._rows: dict[str, Presentity] = {}

    def load(self, aor: str) -> Presentity:
        return self._rows.get(aor, EMPTY)

    def replace(self, aor: str, seq: int, new: Presentity) -> bool:
        if self._rows.get(aor, EMPTY).seq != seq:
            return False
        self._rows[aor] = new
        return True

    def aors(self) -> list[str]:
        return list(self._rows)

    def count(self) -> int:
        return len(self._rows)


def encode(p: Presentity) -> bytes:
    """The row's payload (after the 8-byte ``seq``): ``retired`` only when there is any
    (a row without it is what earlier versions wrote, and ``decode`` reads both)."""
    if p.retired:
        return marshal.dumps(
            (p.version, p.document, [tuple(x) for x in p.pubs], [tuple(r) for r in p.retired])
        )
    return marshal.dumps((p.version, p.document, [tuple(x) for x in p.pubs]))


def decode(seq: int, payload: bytes) -> Presentity:
    fields = marshal.loads(payload)
    version, document, pubs = fields[:3]
    retired = tuple((str(e), float(u)) for e, u in fields[3]) if len(fields) > 3 else ()
    return Presentity(version, tuple(map(PubRecord._make, pubs)), document, seq, retired)


def mark_prefix(event: str, resource: str) -> bytes:
    """The key prefix of the shared marks table (simplefast/server/worker.py ``mark``):
    8 bytes of BLAKE2b of ``event NUL resource`` and a NUL, then the worker's index in
    decimal. A fixed 16-byte key whatever the resource's length: the table costs 64
    bytes per subscription of capacity instead of 245 with the names written out. Two
    names with the same hash only make a change go to a worker that holds no watcher
    of it, which finds none."""
    return _blake2b(f"{event}\0{resource}".encode("utf-8", "surrogateescape"), digest_size=8).digest() + b"\0"


def still_retired(p: Presentity, now: float) -> tuple[tuple[str, float], ...]:
    """``p.retired`` without the tags whose window has passed (every write keeps only these)."""
    return tuple(r for r in p.retired if r[1] > now) if p.retired else ()


class ShmPresentities:
    """The shared-memory table of every worker (see the module docstring)."""

    def __init__(self, table: Any) -> None:
        self.table = table
        # decoded rows by AOR, reused while the stored version is the same (a fan-out
        # reads the document once per worker and version, not per watcher)
        self._cache: dict[str, Presentity] = {}
        self.track_dirty = True  # False: not persisted (nothing to write behind)
        self._dirty: dict[str, bytes] = {}  # AOR -> row value as last written here

    def load(self, aor: str) -> Presentity:
        raw = self.table.get(aor.encode("utf-8", "surrogateescape"))
        if raw is None:
            return EMPTY
        seq = int.from_bytes(raw[:8], "big")
        hit = self._cache.get(aor)
        if hit is not None and hit.seq == seq:
            return hit
        p = decode(seq, raw[8:])
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[aor] = p
        return p

    def replace(self, aor: str, seq: int, new: Presentity) -> bool:
        return self.put_encoded(aor, seq, encode(new))

    def put_encoded(self, aor: str, seq: int, payload: bytes) -> bool:
        """``replace`` with the new record already encoded (``payload``: what ``encode``
        gives, or bytes that ``decode`` reads as the same record): the PUBLISH fast path
        (simplefast/_ref/fastpub.py) writes a presentity's first row this way."""
        key = aor.encode("utf-8", "surrogateescape")
        if len(key) > self.table.key_max:
            raise StateFullError(f"presentity {aor[:64]!r} is longer than {self.table.key_max} bytes")
        if len(payload) + 8 > self.table.value_max:
            raise StateFullError(
                f"the state of {aor[:64]!r} would take {len(payload) + 8} bytes, more than the"
                f" {self.table.value_max} of presence.presentity_state_bytes",
                413,
            )
        try:
            done = bool(self.table.put_if_greater(key, seq + 1, payload))
        except SimplefastError as exc:  # TableFullError
            raise StateFullError(f"presentity table full: {exc}") from exc
        if done and self.track_dirty:
            self._dirty[aor] = (seq + 1).to_bytes(8, "big") + payload
        return done

    def take_dirty(self) -> dict[str, bytes]:
        """Rows written through this process since the last call."""
        out, self._dirty = self._dirty, {}
        return out

    def load_row(self, aor: str, value: bytes) -> None:
        """Restore a row at start."""
        self.table.put(aor.encode("utf-8", "surrogateescape"), value)

    def values(self) -> dict[str, bytes]:
        """Every row as stored (the supervisor saves them whole)."""
        out = {}
        for k in self.table.keys():
            v = self.table.get(k)
            if v is not None:
                out[k.decode("utf-8", "surrogateescape")] = v
        return out

    def aors(self) -> list[str]:
        return [k.decode("utf-8", "surrogateescape") for k in self.table.keys()]

    def count(self) -> int:
        return len(self.table)
