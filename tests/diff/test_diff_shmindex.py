"""The two shared-table twins against each other, on generated operation sequences.

* same operations on both (put_if_greater among them): same results (values,
  errors with their messages) and byte-identical memory images after every
  operation, which is the
  strongest check that the layouts and the algorithms agree (tombstones,
  pruning, compaction, counters, sequence counts: everything is in the image);
* one buffer, two twins: operations alternate between a ref table and an ext
  table attached to the same bytes, and every result matches a dict model;
* repair: an image left by a process SIGKILLed in the middle of a write
  (compiled twin, in a child) is healed identically by both twins.
"""

from __future__ import annotations

import os
import random
import select
import signal
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simplefast.errors import TableFullError
from simplefast.testing import load_impl

REF = load_impl("ref").shmindex
EXT = load_impl("ext").shmindex

KMAX, VMAX = 6, 10
GEOMETRIES = (4, 5, 8, 16, 17, 33, 64)
POOL = [b"", b"a", b"b", b"c", b"ab", b"ba", b"abc", b"key1", b"key2", b"xyzzy", b"\x00", b"\xff" * 6]
POOL += [b"k%d" % i for i in range(20)]

Op = tuple[Any, ...]

keys = st.one_of(st.sampled_from(POOL), st.binary(max_size=KMAX + 2))
values = st.binary(max_size=VMAX + 2)
# put_if_greater: small counters (so that they collide), any u64, out of range, not an int
counters = st.one_of(
    st.integers(0, 5),
    st.integers(0, (1 << 64) - 1),
    st.sampled_from([(1 << 64) - 1, 1 << 56, -1, 1 << 64, 1.5]),
)
tails = st.binary(max_size=VMAX - 8 + 2)
ops = st.one_of(
    st.tuples(st.just("put"), keys, values),
    st.tuples(st.just("put"), st.sampled_from(POOL), st.binary(max_size=VMAX)),
    st.tuples(st.just("pig"), keys, counters, tails),
    st.tuples(st.just("pig"), st.sampled_from(POOL), st.integers(0, 5), st.binary(max_size=VMAX - 8)),
    st.tuples(st.just("get"), keys),
    st.tuples(st.just("delete"), keys),
    st.tuples(st.just("delete"), st.sampled_from(POOL)),
    st.tuples(st.sampled_from(["len", "keys", "stats", "compact"])),
)


def apply(t: Any, op: Op) -> Any:
    """The observable outcome of one operation: a result or (error type, message)."""
    try:
        name = op[0]
        if name == "put":
            return t.put(op[1], op[2])
        if name == "pig":
            return t.put_if_greater(op[1], op[2], op[3])
        if name == "get":
            return t.get(op[1])
        if name == "delete":
            return t.delete(op[1])
        if name == "len":
            return len(t)
        if name == "keys":
            return t.keys()
        if name == "stats":
            return t.stats()
        assert name == "compact"
        return t.compact()
    except (ValueError, TypeError, TableFullError) as exc:
        return (type(exc).__name__, str(exc))


def pair(slots: int) -> tuple[bytearray, Any, bytearray, Any]:
    size = REF.table_size(slots, KMAX, VMAX)
    assert size == EXT.table_size(slots, KMAX, VMAX)
    rbuf, ebuf = bytearray(size), bytearray(size)
    r = REF.ShmTable(rbuf, slots, KMAX, VMAX, create=True)
    e = EXT.ShmTable(ebuf, slots, KMAX, VMAX, create=True)
    assert rbuf == ebuf
    return rbuf, r, ebuf, e


def first_difference(a: bytes | bytearray, b: bytes | bytearray) -> str:
    i = next(i for i in range(min(len(a), len(b))) if a[i] != b[i])
    return f"images differ first at byte {i}: ref {a[i]:#04x}, ext {b[i]:#04x}"


def run_both(slots: int, sequence: list[Op]) -> None:
    rbuf, r, ebuf, e = pair(slots)
    for n, op in enumerate(sequence):
        got_r, got_e = apply(r, op), apply(e, op)
        assert got_r == got_e, (n, op)
        assert rbuf == ebuf, (n, op, first_difference(rbuf, ebuf))


@settings(max_examples=300)
@given(st.sampled_from(GEOMETRIES), st.lists(ops, max_size=80))
def test_same_results_and_same_memory(slots: int, sequence: list[Op]) -> None:
    run_both(slots, sequence)


@settings(max_examples=30)
@given(st.sampled_from(GEOMETRIES), st.randoms(use_true_random=True))
def test_long_churn_same_memory(slots: int, rng: random.Random) -> None:
    """Long sequences (seeded PRNG): many compactions, full tables, wrapped clusters."""
    pool = POOL[: rng.randint(4, len(POOL))]
    sequence: list[Op] = []
    for n in range(600):
        r = rng.random()
        k = rng.choice(pool)
        if r < 0.35:
            sequence.append(("put", k, b"v%d" % n))
        elif r < 0.5:
            sequence.append(("pig", k, rng.randrange(8), b"%d" % rng.randrange(10)))
        elif r < 0.85:
            sequence.append(("delete", k))
        elif r < 0.99:
            sequence.append(("get", k))
        else:
            sequence.append(("compact",))
    sequence.append(("keys",))
    sequence.append(("stats",))
    run_both(slots, sequence)


def test_named_case_prune_across_the_ring_end() -> None:
    """A cluster that wraps from the last slot to slot 0 in a one-stripe table:
    the delete prunes it the same way in both twins."""
    slots = 8
    home7 = [k for k in (b"w%d" % i for i in range(500)) if REF.key_hash(k) % slots == 7][:3]
    run_both(slots, [("put", k, k) for k in home7] + [("delete", home7[0]), ("delete", home7[2])])


# ---------------------------------------------------------------- one buffer, both twins


@settings(max_examples=150)
@given(st.sampled_from(GEOMETRIES), st.lists(st.tuples(st.booleans(), ops), max_size=80))
def test_twins_share_one_buffer(slots: int, sequence: list[tuple[bool, Op]]) -> None:
    buf = bytearray(EXT.table_size(slots, KMAX, VMAX))
    tables = {
        False: REF.ShmTable(buf, slots, KMAX, VMAX, create=True),
        True: EXT.ShmTable(buf, slots, KMAX, VMAX, create=False),
    }
    capacity = slots * 3 // 4
    model: dict[bytes, bytes] = {}
    for use_ext, op in sequence:
        got = apply(tables[use_ext], op)
        name = op[0]
        if name in ("put", "pig", "get", "delete") and len(op[1]) > KMAX:
            assert got == ("ValueError", f"key is {len(op[1])} bytes, longer than key_max {KMAX}")
        elif name == "pig" and (type(op[2]) is not int or not 0 <= op[2] < 1 << 64):
            assert got[0] == ("TypeError" if type(op[2]) is not int else "ValueError")
        elif name == "pig" and 8 + len(op[3]) > VMAX:
            assert got == ("ValueError", f"value is {8 + len(op[3])} bytes, longer than value_max {VMAX}")
        elif name == "pig":
            if op[1] not in model and len(model) == capacity:
                assert got[0] == "TableFullError"
            else:
                stored = model.get(op[1])
                wins = stored is None or int.from_bytes(stored[:8].ljust(8, b"\0"), "big") < op[2]
                assert got is wins
                if wins:
                    model[op[1]] = op[2].to_bytes(8, "big") + op[3]
        elif name == "put" and len(op[2]) > VMAX:
            assert got == ("ValueError", f"value is {len(op[2])} bytes, longer than value_max {VMAX}")
        elif name == "put":
            if op[1] not in model and len(model) == capacity:
                assert got[0] == "TableFullError"
            else:
                assert got is None
                model[op[1]] = op[2]
        elif name == "get":
            assert got == model.get(op[1])
        elif name == "delete":
            assert got == (op[1] in model)
            model.pop(op[1], None)
        elif name == "len":
            assert got == len(model)
        elif name == "keys":
            assert sorted(got) == sorted(model)
        elif name == "stats":
            assert got["count"] == len(model)
    for k, v in model.items():
        assert tables[True].get(k) == v
        assert tables[False].get(k) == v


# ---------------------------------------------------------------- repair of a crashed writer's image


def crashed_image(slots: int, setup: Callable[[Any], None], victim: bytes) -> bytes:
    """The table image after a child died (SIGKILL) in the middle of writing ``victim``."""
    mm = EXT.create_shared(EXT.table_size(slots, KMAX, VMAX))
    t = EXT.ShmTable(mm, slots, KMAX, VMAX, create=True)
    setup(t)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            signal.alarm(60)
            t._debug_hold_lock(victim, 600, mid_write=True, ready_fd=w)
        finally:
            os._exit(1)
    try:
        assert select.select([r], [], [], 60)[0], "child never got into the write"
        assert os.read(r, 1) == b"!"
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)  # reaped: its pid no longer exists
        os.close(r)
        os.close(w)
    image = bytes(mm)
    del t
    mm.close()
    return image


@pytest.mark.parametrize("victim", [b"k3", b"new"], ids=["mid-replace", "mid-insert"])
@pytest.mark.parametrize("first", ["get", "put", "delete", "compact"])
def test_both_twins_repair_a_dead_writer_identically(victim: bytes, first: str) -> None:
    slots = 33

    def setup(t: Any) -> None:
        for i in range(12):
            t.put(b"k%d" % i, b"v%d" % i)

    image = crashed_image(slots, setup, victim)
    rbuf, ebuf = bytearray(image), bytearray(image)
    r = REF.ShmTable(rbuf, slots, KMAX, VMAX, create=False)
    e = EXT.ShmTable(ebuf, slots, KMAX, VMAX, create=False)
    # the first operation meets the dead writer (its slot, or its lock) and repairs
    first_op: Op = {
        "get": ("get", victim),
        "put": ("put", victim, b"fresh"),
        "delete": ("delete", victim),
        "compact": ("compact",),
    }[first]
    sequence: list[Op] = [first_op, ("stats",), ("len",), ("keys",)]
    sequence += [("get", b"k%d" % i) for i in range(12)] + [("get", b"new")]
    for op in sequence:
        got_r, got_e = apply(r, op), apply(e, op)
        assert got_r == got_e, op
        assert rbuf == ebuf, (op, first_difference(rbuf, ebuf))
    assert r.stats()["lock_steals"] == 1
    survivors = {b"k%d" % i for i in range(12)} - {victim}
    assert set(r.keys()) - {victim} == survivors
    assert len(r) == len(r.keys())
