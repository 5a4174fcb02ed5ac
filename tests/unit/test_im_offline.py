"""The offline IM store (simplefast/store/offline.py).

* one process, fake clock: fields round trip, order across claims, the
  per-user cap, expiry, max_bytes, claim leases, release, delivered,
  restart; a hypothesis state machine checks every call against a model;
* the file: a new file gets WAL and the schema; a non-SQLite, foreign,
  newer, damaged file or a directory is refused with OfflineStoreError;
* real processes (multiprocessing, fork): first opens racing, claims racing
  for 200 messages (each claimed exactly once), puts racing for a cap (met
  exactly), a putter SIGKILLed mid-run (every id it was given is stored), a
  claimer SIGKILLed (its messages come back when the lease ends), a store
  used across a fork (refused).

Every child is joined with a deadline and killed past it; nothing sleeps.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import select
import shutil
import signal
import sqlite3
import struct
import tempfile
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from simplefast.errors import SimplefastError
from simplefast.store.offline import (
    APPLICATION_ID,
    OfflineFull,
    OfflineStore,
    OfflineStoreError,
    Stored,
)

A = "sip:alice@example.com"
B = "sip:bob@example.com"
FROM = '"Bob" <sip:bob@example.com>;tag=9fxced76sl'
TO = "<sip:alice@example.com>"
DATE = "Sat, 13 Nov 2010 23:29:00 GMT"
T0 = 1_700_000_000.0


def put(s: OfflineStore, aor: str, n: int, now: float, **kw: Any) -> int:
    return s.put(aor, FROM, f"<{aor}>", "text/plain", b"msg %d" % n, DATE, now, **kw)


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "offline.sqlite3")


@pytest.fixture
def store(path: str) -> Iterator[OfflineStore]:
    s = OfflineStore(path, max_age=3600.0, per_user=100)
    yield s
    s.close()


# ------------------------------------------------------------------ one process


def test_fields_round_trip(store: OfflineStore) -> None:
    extra = (("Subject", "lunch?"), ("Priority", "urgent"), ("In-Reply-To", "x@y"), ("X-Ü", 'ü "q"'))
    body = bytes(range(256))
    i = store.put(A, FROM, TO, "message/cpim", body, DATE, T0, extra=extra)
    j = store.put(A, FROM, TO, "text/plain", b"", DATE, T0 + 1)
    assert store.claim(A, T0 + 2) == [
        Stored(i, A, FROM, TO, "message/cpim", body, DATE, T0, 1, extra),
        Stored(j, A, FROM, TO, "text/plain", b"", DATE, T0 + 1, 1, ()),
    ]


def test_claims_are_oldest_first_across_several_claims(store: OfflineStore) -> None:
    ids = []
    for n in range(10):
        ids.append(put(store, A, n, T0 + n))
        put(store, B, n, T0 + n)
    assert ids == sorted(ids)
    seen: list[int] = []
    while batch := store.claim(A, T0 + 20, limit=3):
        assert len(batch) <= 3
        seen += [m.id for m in batch]
        assert [m.body for m in batch] == [b"msg %d" % ids.index(m.id) for m in batch]
        for m in batch:
            store.delivered(m.id)
    assert seen == ids
    assert not store.has(A, T0 + 20) and store.count(A) == 0
    assert store.count(B) == 10 and store.has(B, T0 + 20)


def test_order_is_by_time_of_arrival_then_id(store: OfflineStore) -> None:
    # a worker that waited for the write lock commits an earlier arrival after a later one:
    # its stored_at (taken on arrival) puts it first
    later = put(store, A, 0, T0 + 5)
    earlier = put(store, A, 1, T0)
    same = put(store, A, 2, T0)
    assert [m.id for m in store.claim(A, T0 + 6)] == [earlier, same, later]


def test_per_user_cap(path: str) -> None:
    s = OfflineStore(path, per_user=3, max_age=100.0)
    for n in range(3):
        put(s, A, n, T0 + n)
    with pytest.raises(OfflineFull) as info:
        put(s, A, 3, T0 + 3)
    e = info.value
    assert isinstance(e, SimplefastError) and e.limit == 3
    assert str(e) == "offline message store full (3 messages)"
    assert str(e).isascii() and "alice" not in str(e) and len(str(e)) < 60
    assert s.count(A) == 3
    put(s, B, 0, T0 + 3)  # per user, not global
    s.claim(A, T0 + 4)  # claimed messages still count
    with pytest.raises(OfflineFull):
        put(s, A, 3, T0 + 4)
    # the first expires at T0 + 100: it no longer counts, even before expire() runs
    with pytest.raises(OfflineFull):
        put(s, A, 3, T0 + 99.5)
    put(s, A, 3, T0 + 100)
    assert s.count(A) == 4  # 3 live + 1 expired not yet deleted
    s.close()


def test_expiry(path: str) -> None:
    s = OfflineStore(path, max_age=60.0)
    put(s, A, 0, T0)
    put(s, A, 1, T0 + 30)
    put(s, B, 0, T0 + 10)
    assert s.has(A, T0 + 59.9)
    assert [m.body for m in s.claim(A, T0 + 60, lease=1.0)] == [b"msg 1"]  # msg 0 expired at T0 + 60
    assert s.has(A, T0 + 61) and not s.has(A, T0 + 90)
    assert s.claim(A, T0 + 90) == [] and s.count() == 3
    assert s.expire(T0 + 69.9) == 1  # msg 0 (B's ends at T0 + 70)
    assert s.expire(T0 + 70) == 1
    assert s.expire(T0 + 70) == 0
    assert s.count() == 1 and s.count(B) == 0
    assert s.expire(T0 + 1000) == 1 and s.count() == 0
    s.close()


def test_max_bytes(path: str) -> None:
    s = OfflineStore(path, max_bytes=10)
    s.put(A, FROM, TO, "text/plain", b"x" * 10, DATE, T0)
    with pytest.raises(ValueError, match="11 bytes exceeds the offline limit of 10"):
        s.put(A, FROM, TO, "text/plain", b"x" * 11, DATE, T0)
    assert s.count() == 1
    s.close()
    s = OfflineStore(path, max_bytes=0)
    s.put(A, FROM, TO, "text/plain", b"", DATE, T0)
    assert s.count() == 2
    s.close()


def test_bad_limits_are_refused(path: str) -> None:
    for kw in ({"max_age": 0.0}, {"per_user": 0}, {"max_bytes": -1}, {"max_age": float("nan")}):
        with pytest.raises(ValueError):
            OfflineStore(path, **kw)


def test_claim_lease_release_and_delivered(store: OfflineStore) -> None:
    i = put(store, A, 0, T0)
    (m,) = store.claim(A, T0 + 1, lease=40.0)
    assert (m.id, m.attempts) == (i, 1)
    assert store.has(A, T0 + 1)  # a claimed message is still there
    assert store.claim(A, T0 + 1) == [] and store.claim(A, T0 + 40.9) == []
    j = put(store, A, 1, T0 + 2)  # a new message is not held up by the claimed one
    assert [x.id for x in store.claim(A, T0 + 3)] == [j]
    (m,) = store.claim(A, T0 + 41)  # lease over: claimed again
    assert (m.id, m.attempts) == (i, 2)
    store.release(i, T0 + 42)
    (m,) = store.claim(A, T0 + 42)  # released: at once
    assert (m.id, m.attempts) == (i, 3)
    store.release(j, T0 + 42)
    store.delivered(i)
    store.delivered(i)  # twice, or unknown: nothing happens
    store.release(i, T0 + 43)
    assert [x.id for x in store.claim(A, T0 + 43)] == [j]
    store.delivered(j)
    assert not store.has(A, T0 + 43) and store.count() == 0
    # ids are never reused, even of the newest deleted message
    assert put(store, A, 2, T0 + 44) > j


def test_claim_limit(store: OfflineStore) -> None:
    ids = [put(store, A, n, T0) for n in range(7)]
    for kw in ({"limit": 0}, {"limit": -1}, {"lease": 0.0}):
        with pytest.raises(ValueError):
            store.claim(A, T0, **kw)
    assert [m.id for m in store.claim(A, T0, limit=4)] == ids[:4]
    assert [m.id for m in store.claim(A, T0, limit=4)] == ids[4:]
    assert store.claim(A, T0, limit=4) == []


def test_restart_keeps_everything(path: str) -> None:
    s = OfflineStore(path)
    ids = [put(s, A, n, T0 + n, extra=(("Subject", f"s{n}"),)) for n in range(5)]
    put(s, B, 0, T0)
    claimed = s.claim(A, T0 + 10, lease=40.0, limit=2)
    s.close()
    s.close()  # idempotent
    with pytest.raises(OfflineStoreError, match="closed"):
        s.has(A, T0)
    s = OfflineStore(path)
    assert s.count() == 6 and s.count(A) == 5
    # the claims survive (another worker may hold them) ...
    assert [m.id for m in s.claim(A, T0 + 11, lease=40.0)] == ids[2:]
    # ... until their lease ends; attempts kept
    again = s.claim(A, T0 + 50)
    assert [(m.id, m.attempts) for m in again] == [(m.id, 2) for m in claimed]
    assert [m.extra for m in again] == [(("Subject", "s0"),), (("Subject", "s1"),)]
    s.close()
    s = OfflineStore(path)
    assert [(m.id, m.attempts) for m in s.claim(A, T0 + 100)] == [
        (i, 3 if n < 2 else 2) for n, i in enumerate(ids)
    ]
    s.close()


def test_file_is_wal_and_synchronous_follows_durable(path: str) -> None:
    for durable, level in ((False, 1), (True, 2)):
        s = OfflineStore(path, durable=durable)
        db = s._db
        assert db is not None
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA synchronous").fetchone() == (level,)
        assert db.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
        s.close()


# ------------------------------------------------------------------ model


@dataclass
class Row:
    aor: str
    body: bytes
    stored_at: float
    claimed_until: float = 0.0
    attempts: int = 0


class OfflineModel(RuleBasedStateMachine):
    """Every call against a dict of rows; a fake clock that only moves forward."""

    AORS = (A, B)
    MAX_AGE, PER_USER = 100.0, 4

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="offline-model-")
        self.file = os.path.join(self.dir, "o.sqlite3")
        self.s = self.open()
        self.now = T0
        self.rows: dict[int, Row] = {}
        self.last_id = 0

    def open(self) -> OfflineStore:
        return OfflineStore(self.file, max_age=self.MAX_AGE, per_user=self.PER_USER, max_bytes=8)

    def live(self, r: Row) -> bool:
        return r.stored_at > self.now - self.MAX_AGE

    @rule(aor=st.sampled_from(AORS), body=st.binary(max_size=10))
    def put(self, aor: str, body: bytes) -> None:
        if len(body) > 8:
            with pytest.raises(ValueError):
                self.s.put(aor, FROM, TO, "text/plain", body, DATE, self.now)
        elif sum(r.aor == aor and self.live(r) for r in self.rows.values()) >= self.PER_USER:
            with pytest.raises(OfflineFull):
                self.s.put(aor, FROM, TO, "text/plain", body, DATE, self.now)
        else:
            i = self.s.put(aor, FROM, TO, "text/plain", body, DATE, self.now)
            assert i > self.last_id
            self.last_id = i
            self.rows[i] = Row(aor, body, self.now)

    @rule(dt=st.sampled_from([0.0, 0.5, 10.0, 39.0, 40.0, 60.0]))
    def tick(self, dt: float) -> None:
        self.now += dt

    @rule(aor=st.sampled_from(AORS), limit=st.integers(1, 5), lease=st.sampled_from([1.0, 40.0]))
    def claim(self, aor: str, limit: int, lease: float) -> None:
        want = sorted(
            i for i, r in self.rows.items() if r.aor == aor and self.live(r) and r.claimed_until <= self.now
        )[:limit]
        got = self.s.claim(aor, self.now, lease=lease, limit=limit)
        assert [m.id for m in got] == want
        for m in got:
            r = self.rows[m.id]
            r.claimed_until = self.now + lease
            r.attempts += 1
            assert (m.aor, m.body, m.stored_at, m.attempts) == (r.aor, r.body, r.stored_at, r.attempts)

    @precondition(lambda self: bool(self.rows))
    @rule(data=st.data())
    def delivered(self, data: st.DataObject) -> None:
        i = data.draw(st.sampled_from(sorted(self.rows)))
        self.s.delivered(i)
        del self.rows[i]

    @precondition(lambda self: bool(self.rows))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        i = data.draw(st.sampled_from(sorted(self.rows)))
        self.s.release(i, self.now)
        self.rows[i].claimed_until = 0.0

    @rule(i=st.integers(10_000, 20_000))
    def unknown_ids_are_ignored(self, i: int) -> None:
        self.s.delivered(i)
        self.s.release(i, self.now)

    @rule()
    def expire(self) -> None:
        old = [i for i, r in self.rows.items() if not self.live(r)]
        assert self.s.expire(self.now) == len(old)
        for i in old:
            del self.rows[i]

    @rule()
    def reopen(self) -> None:
        self.s.close()
        self.s = self.open()

    @invariant()
    def has_and_count(self) -> None:
        for aor in self.AORS:
            mine = [r for r in self.rows.values() if r.aor == aor]
            assert self.s.has(aor, self.now) == any(self.live(r) for r in mine)
            assert self.s.count(aor) == len(mine)
        assert self.s.count() == len(self.rows)

    def teardown(self) -> None:
        self.s.close()
        shutil.rmtree(self.dir, ignore_errors=True)


TestOfflineModel = OfflineModel.TestCase
TestOfflineModel.settings = settings(max_examples=40, stateful_step_count=40)


# ------------------------------------------------------------------ the file


def refused(path: str | Path) -> OfflineStoreError:
    with pytest.raises(OfflineStoreError) as info:
        OfflineStore(path)
    e = info.value
    assert isinstance(e, RuntimeError) and str(path) in str(e)
    return e


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "junk.sqlite3"
    p.write_bytes(b"this is not a database, just some text\n" * 200)
    assert "not a database" in str(refused(p))
    assert p.read_bytes() == b"this is not a database, just some text\n" * 200


def test_another_programs_database_is_refused_untouched(tmp_path: Path) -> None:
    p = tmp_path / "other.sqlite3"
    db = sqlite3.connect(p)
    db.execute("CREATE TABLE offline (x)")  # even with our table's name
    db.commit()
    db.close()
    before = p.read_bytes()
    assert "not a simplefast offline store" in str(refused(p))
    assert p.read_bytes() == before  # not switched to WAL, nothing created
    assert not (tmp_path / "other.sqlite3-wal").exists()


def test_another_schema_version_is_refused(path: str) -> None:
    OfflineStore(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    assert "schema version 99" in str(refused(path))


def test_a_store_missing_its_table_is_refused(path: str) -> None:
    OfflineStore(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE offline")
    db.close()
    assert "missing" in str(refused(path))


def test_a_directory_is_refused(tmp_path: Path) -> None:
    refused(tmp_path)


def test_a_damaged_store_raises_offline_store_error(path: str) -> None:
    s = OfflineStore(path)
    for n in range(300):
        s.put(f"sip:u{n % 7}@example.com", FROM, TO, "text/plain", b"x" * 500, DATE, T0 + n)
    s.close()  # last connection: the WAL is checkpointed into the file
    size = os.path.getsize(path)
    with open(path, "r+b") as f:  # scribble over the pages after the first two
        f.seek(2 * 4096)
        f.write(b"\xa5" * (size - 2 * 4096))
    with pytest.raises(OfflineStoreError) as info:
        s = OfflineStore(path)
        s.count()
        s.claim("sip:u1@example.com", T0 + 400)
        s.put(A, FROM, TO, "text/plain", b"x", DATE, T0)
    assert path in str(info.value) and isinstance(info.value.__cause__, sqlite3.DatabaseError)


def test_an_empty_file_becomes_a_store(path: str) -> None:
    Path(path).write_bytes(b"")
    s = OfflineStore(path)
    put(s, A, 0, T0)
    assert s.count() == 1
    s.close()


# ------------------------------------------------------------------ processes

CTX = mp.get_context("fork")
DEADLINE = 60.0  # seconds; a safety net only, the tests take well under a second each


def _child(i: int, q: Any, fn: Callable[..., object], args: tuple[Any, ...]) -> None:
    try:
        q.put((i, True, fn(*args)))
    except BaseException:
        q.put((i, False, traceback.format_exc()))


def in_processes(fn: Callable[..., object], args: list[tuple[Any, ...]]) -> list[Any]:
    """Run fn(*a) for each a in its own forked process; their results, in order."""
    q = CTX.Queue()
    procs = [CTX.Process(target=_child, args=(i, q, fn, a), daemon=True) for i, a in enumerate(args)]
    try:
        for p in procs:
            p.start()
        results: dict[int, Any] = {}
        for _ in procs:
            i, ok, value = q.get(timeout=DEADLINE)
            assert ok, f"process {i} failed:\n{value}"
            results[i] = value
        for p in procs:
            p.join(DEADLINE)
            assert p.exitcode == 0
        return [results[i] for i in range(len(procs))]
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
        q.close()


def _open_and_put(path: str, barrier: Any, n: int) -> list[int]:
    barrier.wait(DEADLINE)
    s = OfflineStore(path)
    ids = [put(s, A, k, T0 + k) for k in range(n)]
    s.close()
    return ids


def test_first_opens_racing_on_a_new_file(tmp_path: Path) -> None:
    for round in range(5):
        path = str(tmp_path / f"new{round}.sqlite3")
        barrier = CTX.Barrier(4)
        ids = in_processes(_open_and_put, [(path, barrier, 5)] * 4)
        s = OfflineStore(path)
        got = s.claim(A, T0)
        assert s.count() == 20 and sorted(sum(ids, [])) == sorted(m.id for m in got)
        assert [(m.stored_at, m.id) for m in got] == sorted((m.stored_at, m.id) for m in got)
        s.close()


def _claimer(path: str, barrier: Any, seed: int) -> list[int]:
    import random

    rng = random.Random(seed)
    s = OfflineStore(path)
    barrier.wait(DEADLINE)
    got: list[int] = []
    while batch := s.claim(A, T0, lease=1000.0, limit=rng.randint(1, 8)):
        ids = [m.id for m in batch]
        assert ids == sorted(ids) and all(m.attempts == 1 for m in batch)
        got += ids
        for i in ids:
            if i % 2:
                s.delivered(i)
    s.close()
    return got


@pytest.mark.parametrize("nproc", [2, 4])
def test_racing_claims_take_each_message_exactly_once(path: str, nproc: int) -> None:
    s = OfflineStore(path, per_user=1000)
    ids = [put(s, A, n, T0) for n in range(200)]
    barrier = CTX.Barrier(nproc)
    got = in_processes(_claimer, [(path, barrier, seed) for seed in range(nproc)])
    claimed: list[int] = sum(got, [])
    assert sorted(claimed) == ids  # all of them, none twice
    assert sum(1 for g in got if g) >= 1
    # the odd ones were delivered; the even ones are still there, claimed once
    left = s.claim(A, T0 + 1000, limit=500)
    assert [m.id for m in left] == [i for i in ids if i % 2 == 0]
    assert {m.attempts for m in left} == {2}
    s.close()


def _capped_putter(path: str, barrier: Any, n: int) -> tuple[list[int], int]:
    s = OfflineStore(path, per_user=50)
    barrier.wait(DEADLINE)
    ids, full = [], 0
    for k in range(n):
        try:
            ids.append(put(s, A, k, T0))
        except OfflineFull:
            full += 1
    s.close()
    return ids, full


def test_racing_puts_meet_the_cap_exactly(path: str) -> None:
    OfflineStore(path).close()
    barrier = CTX.Barrier(4)
    results = in_processes(_capped_putter, [(path, barrier, 30)] * 4)
    stored: list[int] = sum((ids for ids, _ in results), [])
    assert len(stored) == 50 and sum(full for _, full in results) == 4 * 30 - 50
    s = OfflineStore(path)
    assert s.count(A) == 50 and sorted(stored) == [m.id for m in s.claim(A, T0, limit=100)]
    s.close()


def _putter_reporting(path: str, w: int, who: int) -> None:
    s = OfflineStore(path, per_user=10**9)
    n = 0
    while True:  # until SIGKILLed
        i = s.put(A, FROM, TO, "text/plain", b"%d-%d" % (who, n), DATE, T0 + n)
        os.write(w, struct.pack("<qqq", who, n, i))  # 24 bytes < PIPE_BUF: atomic
        n += 1


def test_sigkill_during_puts_loses_no_returned_put(path: str) -> None:
    OfflineStore(path).close()
    r, w = os.pipe()
    procs = [CTX.Process(target=_putter_reporting, args=(path, w, who), daemon=True) for who in range(2)]
    try:
        for p in procs:
            p.start()
        os.close(w)
        data = b""
        kill_at = [150, 400]  # reports seen when each process is killed, mid-run
        while kill_at:
            ready, _, _ = select.select([r], [], [], DEADLINE)
            assert ready, "putters stopped reporting"
            data += os.read(r, 65536)
            if len(data) // 24 >= kill_at[0]:
                victim = procs[len(procs) - len(kill_at)].pid
                assert victim is not None
                os.kill(victim, signal.SIGKILL)
                kill_at.pop(0)
        for p in procs:
            p.join(DEADLINE)
            assert p.exitcode == -signal.SIGKILL
        while chunk := os.read(r, 65536):  # what they wrote before dying
            data += chunk
    finally:
        os.close(r)
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
    assert len(data) % 24 == 0
    reported = [struct.unpack_from("<qqq", data, k) for k in range(0, len(data), 24)]
    s = OfflineStore(path, per_user=10**9)
    stored = {m.id: m.body for m in s.claim(A, T0, limit=10**6)}
    for who, n, i in reported:
        assert stored.get(i) == b"%d-%d" % (who, n)
    # at most one commit per process that it had no time to report
    assert len(reported) <= len(stored) <= len(reported) + len(procs)
    s.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    db.close()


def _claim_then_die(path: str, w: int) -> None:
    s = OfflineStore(path)
    ids = [m.id for m in s.claim(A, T0, lease=40.0)]
    os.write(w, struct.pack("<q", len(ids)))
    os.kill(os.getpid(), signal.SIGKILL)


def test_claims_of_a_killed_worker_come_back_when_the_lease_ends(path: str) -> None:
    s = OfflineStore(path)
    ids = [put(s, A, n, T0) for n in range(5)]
    r, w = os.pipe()
    p = CTX.Process(target=_claim_then_die, args=(path, w), daemon=True)
    try:
        p.start()
        os.close(w)
        ready, _, _ = select.select([r], [], [], DEADLINE)
        assert ready and struct.unpack("<q", os.read(r, 8)) == (5,)
        p.join(DEADLINE)
        assert p.exitcode == -signal.SIGKILL
    finally:
        os.close(r)
        if p.is_alive():
            p.kill()
            p.join(5)
    assert s.has(A, T0 + 1) and s.claim(A, T0 + 39.9) == []
    assert [(m.id, m.attempts) for m in s.claim(A, T0 + 40)] == [(i, 2) for i in ids]
    s.close()


def _use_inherited(s: OfflineStore, path: str) -> str:
    with pytest.raises(OfflineStoreError) as info:
        s.has(A, T0)
    s.close()  # drops the parent's connection without closing it
    mine = OfflineStore(path)
    assert mine.has(A, T0)
    mine.close()
    return str(info.value)


def test_a_store_opened_before_a_fork_is_refused_in_the_child(path: str) -> None:
    s = OfflineStore(path)
    put(s, A, 0, T0)
    (msg,) = in_processes(_use_inherited, [(s, path)])
    assert "before a fork" in msg and path in msg
    assert s.has(A, T0) and s.count() == 1  # the parent's is unharmed
    s.close()


def test_in_order_claims_wait_for_the_live_one(tmp_path: Path) -> None:
    """Two workers delivering to one user: the second gets nothing while the first's
    claim is live, so the second message cannot overtake the first."""
    store = OfflineStore(str(tmp_path / "o.sqlite3"))
    for i in range(3):
        store.put("sip:bob@example.com", "<sip:a@example.com>", "<sip:bob@example.com>", "text/plain",
                  b"m%d" % i, "date", 100.0 + i)  # fmt: skip
    (first,) = store.claim("sip:bob@example.com", 200.0, limit=1, in_order=True)
    assert first.body == b"m0"
    assert store.claim("sip:bob@example.com", 201.0, limit=1, in_order=True) == []
    store.delivered(first.id)
    (second,) = store.claim("sip:bob@example.com", 202.0, limit=1, in_order=True)
    assert second.body == b"m1"
    assert store.claim("sip:bob@example.com", 300.0, limit=1, in_order=True)[0].body == b"m1"  # lease over


def test_put_many_is_one_transaction_with_the_cap_counted_inside(tmp_path: Path) -> None:
    store = OfflineStore(str(tmp_path / "o.sqlite3"), per_user=2, max_bytes=10)
    a, b = "sip:a@example.com", "sip:b@example.com"

    def item(aor: str, body: bytes, now: float) -> tuple[str, str, str, str, bytes, str, float, tuple[()]]:
        return (aor, "<sip:x@example.com>;tag=1", f"<{aor}>", "text/plain", body, "date", now, ())

    got = store.put_many([item(a, b"1", 1.0), item(b, b"2", 2.0), item(a, b"3", 3.0), item(a, b"4", 4.0),
                          item(b, b"x" * 11, 5.0)])  # fmt: skip
    assert isinstance(got[0], int) and isinstance(got[1], int) and isinstance(got[2], int)
    assert isinstance(got[3], OfflineFull) and isinstance(got[4], ValueError)
    assert got[0] < got[1] < got[2]
    assert [m.body for m in store.claim(a, 10.0)] == [b"1", b"3"] and store.count(b) == 1
