"""Contract tests of the shared-memory table (simplefast/_ext/shmindex.pyi),
run against both twins through the ``impl`` fixture. Single process; the
multi-process behaviour is in test_shmindex_procs.py."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from simplefast.errors import SimplefastError, TableFullError


def make(impl: SimpleNamespace, slots: int = 64, key_max: int = 8, value_max: int = 16) -> Any:
    buf = bytearray(impl.shmindex.table_size(slots, key_max, value_max))
    return impl.shmindex.ShmTable(buf, slots, key_max, value_max, create=True)


def same_home(impl: SimpleNamespace, slots: int, home: int, count: int, prefix: bytes = b"c") -> list[bytes]:
    """``count`` keys whose probe sequences all start at slot ``home``."""
    out: list[bytes] = []
    i = 0
    while len(out) < count:
        k = prefix + b"%d" % i
        if impl.shmindex.key_hash(k) % slots == home:
            out.append(k)
        i += 1
    return out


def occupied(t: Any) -> int:
    s = t.stats()
    return int(s["count"] + s["tombstones"])


# ---------------------------------------------------------------- geometry


def test_key_hash_is_fnv1a_64(impl: SimpleNamespace) -> None:
    assert impl.shmindex.key_hash(b"") == 0xCBF29CE484222325
    assert impl.shmindex.key_hash(b"a") == 0xAF63DC4C8601EC8C  # published FNV-1a 64 test vector
    assert impl.shmindex.key_hash(b"foobar") == 0x85944171F73967E8


def test_table_size(impl: SimpleNamespace) -> None:
    ts = impl.shmindex.table_size
    # 1,000,000 slots: 977 slots per stripe, 1024 stripes; slot 24 + 64 + 256 = 344 bytes
    assert ts(1_000_000, 64, 256) == 256 + 1024 * 64 + 1_000_000 * 344
    assert ts(4, 1, 0) == 448  # 256 + 64 + 4 * 32
    assert ts(100, 8, 13) % 64 == 0
    assert ts(100, 8, 13) == (256 + 7 * 64 + 100 * 48 + 63) // 64 * 64


@pytest.mark.parametrize(
    ("args", "exc", "message"),
    [
        ((3, 8, 8), ValueError, "slots must be between 4 and 4294967295, got 3"),
        ((1 << 32, 8, 8), ValueError, "slots must be between 4 and 4294967295, got 4294967296"),
        ((8, 0, 8), ValueError, "key_max must be between 1 and 65535, got 0"),
        ((8, 8, -1), ValueError, "value_max must be between 0 and 16777216, got -1"),
        ((8.0, 8, 8), TypeError, "slots must be an int, not float"),
        ((8, True, 8), TypeError, "key_max must be an int, not bool"),
    ],
)
def test_geometry_errors(impl: SimpleNamespace, args: tuple[Any, ...], exc: type, message: str) -> None:
    with pytest.raises(exc) as info:
        impl.shmindex.table_size(*args)
    assert str(info.value) == message
    with pytest.raises(exc):
        impl.shmindex.ShmTable(bytearray(4096), *args, create=True)


def test_properties(impl: SimpleNamespace) -> None:
    t = make(impl, 100, 8, 13)
    assert (t.slots, t.key_max, t.value_max, t.capacity) == (100, 8, 13, 75)


# ---------------------------------------------------------------- basic use


def test_put_get_replace_delete(impl: SimpleNamespace) -> None:
    t = make(impl)
    assert t.get(b"alice") is None
    t.put(b"alice", b"contact-1")
    t.put(b"bob", b"contact-2")
    assert t.get(b"alice") == b"contact-1"
    assert t.get(b"bob") == b"contact-2"
    assert len(t) == 2
    t.put(b"alice", b"longer contact")
    assert t.get(b"alice") == b"longer contact"
    t.put(b"alice", b"x")
    assert t.get(b"alice") == b"x"  # a shorter value leaves no trace of the longer one
    assert len(t) == 2
    assert t.delete(b"alice") is True
    assert t.delete(b"alice") is False
    assert t.get(b"alice") is None
    assert t.get(b"bob") == b"contact-2"
    assert len(t) == 1
    assert t.keys() == [b"bob"]


def test_empty_key_and_empty_value(impl: SimpleNamespace) -> None:
    t = make(impl)
    t.put(b"", b"empty key")
    t.put(b"k", b"")
    assert t.get(b"") == b"empty key"
    assert t.get(b"k") == b""
    assert sorted(t.keys()) == [b"", b"k"]


def test_keys_and_stats(impl: SimpleNamespace) -> None:
    t = make(impl, 32)
    for i in range(10):
        t.put(b"k%d" % i, b"v")
    t.delete(b"k3")
    assert sorted(t.keys()) == sorted(b"k%d" % i for i in range(10) if i != 3)
    s = t.stats()
    assert s == {
        "count": 9,
        "capacity": 24,
        "slots": 32,
        "tombstones": s["tombstones"],
        "lock_steals": 0,
        "compactions": 0,
    }


# ---------------------------------------------------------------- limits and errors


def test_limits(impl: SimpleNamespace) -> None:
    t = make(impl, 16, key_max=8, value_max=16)
    t.put(b"k" * 8, b"v" * 16)  # exactly at the limits
    assert t.get(b"k" * 8) == b"v" * 16
    with pytest.raises(ValueError, match=r"^key is 9 bytes, longer than key_max 8$"):
        t.put(b"k" * 9, b"v")
    with pytest.raises(ValueError, match=r"^value is 17 bytes, longer than value_max 16$"):
        t.put(b"k", b"v" * 17)
    with pytest.raises(ValueError, match="key_max 8"):
        t.get(b"k" * 9)
    with pytest.raises(ValueError, match="key_max 8"):
        t.delete(b"k" * 9)
    assert len(t) == 1


def test_types(impl: SimpleNamespace) -> None:
    t = make(impl)
    with pytest.raises(TypeError, match=r"^key must be bytes, not str$"):
        t.put("k", b"v")
    with pytest.raises(TypeError, match=r"^value must be bytes, not bytearray$"):
        t.put(b"k", bytearray(b"v"))
    with pytest.raises(TypeError, match=r"^key must be bytes, not memoryview$"):
        t.get(memoryview(b"k"))
    with pytest.raises(TypeError, match=r"^key must be bytes, not int$"):
        impl.shmindex.key_hash(5)


def test_full_table(impl: SimpleNamespace) -> None:
    t = make(impl, 16)
    assert t.capacity == 12
    for i in range(12):
        t.put(b"k%d" % i, b"v%d" % i)
    with pytest.raises(TableFullError) as info:
        t.put(b"one more", b"v")
    assert str(info.value) == "shared table is full: 12 entries (75% of 16 slots)"
    assert isinstance(info.value, SimplefastError)
    assert t.get(b"one more") is None
    assert len(t) == 12
    t.put(b"k5", b"replaced")  # a replace needs no room
    assert t.get(b"k5") == b"replaced"
    assert t.delete(b"k0")
    t.put(b"one more", b"v")
    assert t.get(b"one more") == b"v"
    for i in range(1, 12):
        assert t.get(b"k%d" % i) == (b"replaced" if i == 5 else b"v%d" % i)


def test_create_is_keyword_only(impl: SimpleNamespace) -> None:
    buf = bytearray(impl.shmindex.table_size(16, 8, 8))
    with pytest.raises(TypeError):
        impl.shmindex.ShmTable(buf, 16, 8, 8, True)
    with pytest.raises(TypeError):
        impl.shmindex.ShmTable(buf, 16, 8, 8)


# ---------------------------------------------------------------- tombstones, compaction


def test_tombstone_is_reused(impl: SimpleNamespace) -> None:
    t = make(impl, 64)
    a, b, c, d = same_home(impl, 64, 10, 4)
    for k in (a, b, c):
        t.put(k, k)  # slots 10, 11, 12
    assert t.delete(b)  # slot 11: c's path crosses it, so it stays a tombstone
    assert t.stats()["tombstones"] == 1
    assert t.get(c) == c
    t.put(d, d)  # d's first free slot is the tombstone
    assert t.stats()["tombstones"] == 0
    assert occupied(t) == 3
    assert [t.get(k) for k in (a, b, c, d)] == [a, None, c, d]


def test_delete_prunes_uncrossed_tombstones(impl: SimpleNamespace) -> None:
    t = make(impl, 64)
    a, b, c = same_home(impl, 64, 20, 3)
    for k in (a, b, c):
        t.put(k, k)
    assert t.delete(c)  # end of the cluster: nothing behind it, no tombstone
    assert t.stats()["tombstones"] == 0
    assert t.delete(a)  # b still needs slot 20 to be crossed
    assert t.stats()["tombstones"] == 1
    assert t.get(b) == b
    assert t.delete(b)  # the last entry of the cluster: both slots become empty
    assert t.stats() == {**t.stats(), "count": 0, "tombstones": 0}


def test_compact(impl: SimpleNamespace) -> None:
    t = make(impl, 64)
    keys = same_home(impl, 64, 60, 12) + [b"x%d" % i for i in range(20)]
    for k in keys:
        t.put(k, k + b"!")
    for k in keys[:12:2]:
        t.delete(k)
    assert t.stats()["tombstones"] > 0
    t.compact()
    s = t.stats()
    assert (s["tombstones"], s["compactions"], s["count"]) == (0, 1, len(keys) - 6)
    for i, k in enumerate(keys):
        assert t.get(k) == (None if i < 12 and i % 2 == 0 else k + b"!")


def test_churn_keeps_probe_paths_short(impl: SimpleNamespace) -> None:
    """Entries plus tombstones never pass 7/8 of the slots: compaction kicks in."""
    slots = 64
    t = make(impl, slots)
    limit = slots - slots // 8
    rng = random.Random(7)
    model: dict[bytes, bytes] = {}
    n = 0
    for _ in range(1500):
        if len(model) < 44 and (not model or rng.random() < 0.55):
            k = b"n%d" % n
            n += 1
            t.put(k, k)
            model[k] = k
        else:
            k = rng.choice(sorted(model))
            assert t.delete(k)
            del model[k]
        assert occupied(t) <= limit
    assert t.stats()["compactions"] > 0
    assert len(t) == len(model)
    assert sorted(t.keys()) == sorted(model)
    for k, v in model.items():
        assert t.get(k) == v


def test_colliding_probe_chains(impl: SimpleNamespace) -> None:
    """Many keys with one home near the end of the ring: chains wrap around slot 0
    and cross stripe boundaries (64 slots = 4 stripes of 16)."""
    slots = 64
    t = make(impl, slots)
    chain = same_home(impl, slots, 58, 16)
    other = same_home(impl, slots, 2, 6, prefix=b"o")
    model: dict[bytes, bytes] = {}
    for k in chain + other:
        t.put(k, b"v" + k)
        model[k] = b"v" + k
    for k in model:
        assert t.get(k) == model[k]
    for k in chain[::2] + other[1::2]:
        assert t.delete(k)
        del model[k]
    for k in chain + other:
        assert t.get(k) == model.get(k)
    for k in chain[::4]:
        t.put(k, b"again")
        model[k] = b"again"
    assert len(t) == len(model)
    assert sorted(t.keys()) == sorted(model)
    for k in chain + other:
        assert t.get(k) == model.get(k)
    t.compact()
    for k in chain + other:
        assert t.get(k) == model.get(k)


# ---------------------------------------------------------------- buffers, attach


def test_attach_sees_the_same_table(impl: SimpleNamespace) -> None:
    m = impl.shmindex
    buf = bytearray(m.table_size(32, 8, 8))
    a = m.ShmTable(buf, 32, 8, 8, create=True)
    a.put(b"k", b"v")
    b = m.ShmTable(buf, 32, 8, 8, create=False)
    assert b.get(b"k") == b"v"
    b.put(b"k2", b"v2")
    assert a.get(b"k2") == b"v2"
    assert len(a) == len(b) == 2


def test_attach_wrong_geometry(impl: SimpleNamespace) -> None:
    m = impl.shmindex
    buf = bytearray(m.table_size(128, 16, 16))
    m.ShmTable(buf, 64, 8, 16, create=True)
    with pytest.raises(ValueError) as info:
        m.ShmTable(buf, 128, 8, 16, create=False)
    assert str(info.value) == "shared table geometry mismatch: slots is 64 in the buffer, 128 requested"
    mismatch = "^shared table geometry mismatch: "
    with pytest.raises(ValueError, match=mismatch + "key_max is 8 in the buffer, 16 requested$"):
        m.ShmTable(buf, 64, 16, 16, create=False)
    with pytest.raises(ValueError, match=mismatch + "value_max is 16 in the buffer, 8 requested$"):
        m.ShmTable(buf, 64, 8, 8, create=False)
    m.ShmTable(buf, 64, 8, 16, create=False)  # the right geometry attaches


def test_attach_without_table(impl: SimpleNamespace) -> None:
    m = impl.shmindex
    buf = bytearray(m.table_size(16, 8, 8))
    no_table = r"^buffer holds no simplefast shared table \(magic 0x0000000000000000\)$"
    with pytest.raises(ValueError, match=no_table):
        m.ShmTable(buf, 16, 8, 8, create=False)


def test_attach_other_layout_version(impl: SimpleNamespace) -> None:
    m = impl.shmindex
    buf = bytearray(m.table_size(16, 8, 8))
    m.ShmTable(buf, 16, 8, 8, create=True)
    buf[8:12] = (2).to_bytes(4, "little")
    with pytest.raises(ValueError, match=r"^shared table layout version 2, this build reads 1$"):
        m.ShmTable(buf, 16, 8, 8, create=False)


def test_buffer_errors(impl: SimpleNamespace) -> None:
    m = impl.shmindex
    size = m.table_size(16, 8, 8)
    with pytest.raises(TypeError, match=r"^buf must be a writable buffer \(bytes is read-only\)$"):
        m.ShmTable(bytes(size), 16, 8, 8, create=True)
    with pytest.raises(TypeError, match=r"^buf must be a writable buffer, not int$"):
        m.ShmTable(5, 16, 8, 8, create=True)
    with pytest.raises(TypeError, match=r"^buf must be a C-contiguous buffer$"):
        m.ShmTable(memoryview(bytearray(2 * size))[::2], 16, 8, 8, create=True)
    with pytest.raises(ValueError, match=rf"^buffer is {size - 1} bytes, the table needs {size}$"):
        m.ShmTable(bytearray(size - 1), 16, 8, 8, create=True)
    with pytest.raises(ValueError, match=r"^buffer is not 8-byte aligned$"):
        m.ShmTable(memoryview(bytearray(size + 64))[4:], 16, 8, 8, create=True)


def test_table_in_a_slice_of_a_larger_mapping(impl: SimpleNamespace) -> None:
    m = impl.shmindex
    size = m.table_size(16, 8, 8)
    mm = m.create_shared(3 * size)
    a = m.ShmTable(memoryview(mm)[0:size], 16, 8, 8, create=True)
    b = m.ShmTable(memoryview(mm)[size : 2 * size], 16, 8, 8, create=True)
    a.put(b"k", b"in a")
    b.put(b"k", b"in b")
    assert (a.get(b"k"), b.get(b"k")) == (b"in a", b"in b")
    assert mm[2 * size :] == bytes(size)
    del a, b
    mm.close()


def test_create_zeroes_a_dirty_buffer(impl: SimpleNamespace) -> None:
    m = impl.shmindex
    size = m.table_size(16, 8, 8)
    buf = bytearray(b"\xff" * (size + 10))
    t = m.ShmTable(buf, 16, 8, 8, create=True)
    assert len(t) == 0 and t.keys() == [] and t.get(b"k") is None
    assert buf[size:] == b"\xff" * 10  # nothing past the table is touched


def test_create_shared(impl: SimpleNamespace) -> None:
    mm = impl.shmindex.create_shared(8192)
    assert len(mm) == 8192 and mm[:] == bytes(8192)
    mm[0:2] = b"ok"
    mm.close()
    with pytest.raises(ValueError):
        impl.shmindex.create_shared(0)


# ---------------------------------------------------------------- crash repair, in one process


def test_abandoned_replace_loses_only_that_entry(impl: SimpleNamespace) -> None:
    t = make(impl, 32)
    for i in range(8):
        t.put(b"k%d" % i, b"v%d" % i)
    t._debug_hold_lock(b"k3", 0, mid_write=True)  # the write stops half-way, is repaired
    assert t.get(b"k3") is None
    assert len(t) == 7
    assert t.stats()["tombstones"] >= 1
    for i in range(8):
        if i != 3:
            assert t.get(b"k%d" % i) == b"v%d" % i
    t.put(b"k3", b"back")
    assert t.get(b"k3") == b"back"


def test_abandoned_insert_leaves_counts_right(impl: SimpleNamespace) -> None:
    t = make(impl, 32)
    t.put(b"a", b"1")
    t._debug_hold_lock(b"new", 0, mid_write=True)
    assert t.get(b"new") is None
    assert len(t) == 1 and t.keys() == [b"a"]
    t._debug_hold_lock(b"a", 0)  # without mid_write nothing changes
    assert t.get(b"a") == b"1"
    assert t.stats()["lock_steals"] == 0


# ---------------------------------------------------------------- put_if_greater


def counter_value(counter: int, tail: bytes = b"") -> bytes:
    return counter.to_bytes(8, "big") + tail


def test_put_if_greater(impl: SimpleNamespace) -> None:
    t = make(impl, 32, key_max=8, value_max=16)
    assert t.put_if_greater(b"n", 0) is True  # a new key is stored whatever its counter
    assert t.get(b"n") == counter_value(0)
    assert t.put_if_greater(b"n", 0) is False
    assert t.put_if_greater(b"n", 5, b"t1") is True
    assert t.get(b"n") == counter_value(5, b"t1")
    assert t.put_if_greater(b"n", 5, b"other") is False  # equal: refused, tail kept
    assert t.put_if_greater(b"n", 4) is False
    assert t.get(b"n") == counter_value(5, b"t1")
    assert t.put_if_greater(b"n", 6) is True  # value and tail are replaced together
    assert t.get(b"n") == counter_value(6)
    top = (1 << 64) - 1
    assert t.put_if_greater(b"n", top, b"x" * 8) is True  # exactly at value_max
    assert t.put_if_greater(b"n", top) is False
    assert t.get(b"n") == counter_value(top, b"x" * 8)
    assert len(t) == 1
    assert t.delete(b"n")
    assert t.put_if_greater(b"n", 1) is True  # deleted: new again
    assert t.get(b"n") == counter_value(1)


def test_put_if_greater_reads_values_written_by_put(impl: SimpleNamespace) -> None:
    t = make(impl, 32, key_max=8, value_max=16)
    t.put(b"short", b"\x01")  # counter 0x0100000000000000: padded with zeros on the right
    assert t.put_if_greater(b"short", 1 << 56) is False
    assert t.put_if_greater(b"short", (1 << 56) + 1) is True
    t.put(b"empty", b"")  # counter 0
    assert t.put_if_greater(b"empty", 0) is False
    assert t.put_if_greater(b"empty", 1) is True
    t.put(b"long", counter_value(7, b"payload"))
    assert t.put_if_greater(b"long", 7) is False  # the bytes after the first 8 do not count
    assert t.put_if_greater(b"long", 8) is True


def test_put_if_greater_errors(impl: SimpleNamespace) -> None:
    t = make(impl, 16, key_max=8, value_max=12)
    with pytest.raises(TypeError, match=r"^key must be bytes, not str$"):
        t.put_if_greater("k", 1)
    with pytest.raises(ValueError, match=r"^key is 9 bytes, longer than key_max 8$"):
        t.put_if_greater(b"k" * 9, 1)
    with pytest.raises(TypeError, match=r"^counter must be an int, not float$"):
        t.put_if_greater(b"k", 1.0)
    with pytest.raises(TypeError, match=r"^counter must be an int, not bool$"):
        t.put_if_greater(b"k", True)
    with pytest.raises(ValueError, match=r"^counter must be between 0 and 18446744073709551615, got -1$"):
        t.put_if_greater(b"k", -1)
    with pytest.raises(ValueError, match=r"got 18446744073709551616$"):
        t.put_if_greater(b"k", 1 << 64)
    with pytest.raises(TypeError, match=r"^tail must be bytes, not bytearray$"):
        t.put_if_greater(b"k", 1, bytearray(b"t"))
    with pytest.raises(ValueError, match=r"^value is 13 bytes, longer than value_max 12$"):
        t.put_if_greater(b"k", 1, b"t" * 5)
    assert len(t) == 0
    small = make(impl, 16, key_max=8, value_max=4)  # no room for a counter at all
    with pytest.raises(ValueError, match=r"^value is 8 bytes, longer than value_max 4$"):
        small.put_if_greater(b"k", 1)


def test_put_if_greater_full_table(impl: SimpleNamespace) -> None:
    t = make(impl, 16)
    for i in range(12):
        assert t.put_if_greater(b"k%d" % i, i)
    with pytest.raises(TableFullError, match=r"^shared table is full: 12 entries \(75% of 16 slots\)$"):
        t.put_if_greater(b"new", 1)
    assert t.get(b"new") is None
    assert t.put_if_greater(b"k3", 3) is False  # an existing key needs no room, refused or not
    assert t.put_if_greater(b"k3", 4) is True
    assert len(t) == 12


def test_put_if_greater_refusal_writes_nothing(impl: SimpleNamespace) -> None:
    slots = 64
    buf = bytearray(impl.shmindex.table_size(slots, 8, 16))
    t = impl.shmindex.ShmTable(buf, slots, 8, 16, create=True)
    chain = same_home(impl, slots, 14, 6)  # slots 14..19: across the stripe boundary at 16
    for i, k in enumerate(chain):
        assert t.put_if_greater(k, 10 + i, b"x")
    before = bytes(buf)
    for i, k in enumerate(chain):
        assert t.put_if_greater(k, 10 + i) is False
        assert t.put_if_greater(k, 0, b"y") is False
    assert bytes(buf) == before  # not a byte moved, lock words free again
    for i, k in enumerate(chain):  # entries in the next stripe take its lock too
        assert t.put_if_greater(k, 11 + i, b"z") is True
        assert t.get(k) == counter_value(11 + i, b"z")


def test_put_if_greater_through_two_attachments(impl: SimpleNamespace) -> None:
    m = impl.shmindex
    buf = bytearray(m.table_size(32, 8, 16))
    a = m.ShmTable(buf, 32, 8, 16, create=True)
    b = m.ShmTable(buf, 32, 8, 16, create=False)
    assert a.put_if_greater(b"nonce", 1)
    assert not b.put_if_greater(b"nonce", 1)  # the replay, seen through the other attachment
    assert b.put_if_greater(b"nonce", 2)
    assert not a.put_if_greater(b"nonce", 2)
    assert a.get(b"nonce") == counter_value(2)


def test_put_if_greater_survives_compaction(impl: SimpleNamespace) -> None:
    t = make(impl, 64)
    keys = same_home(impl, 64, 60, 10)
    for i, k in enumerate(keys):
        t.put_if_greater(k, 100 + i)
    for k in keys[:8:2]:
        t.delete(k)
    t.compact()
    for i, k in enumerate(keys):
        if i < 8 and i % 2 == 0:
            assert t.get(k) is None
        else:
            assert not t.put_if_greater(k, 100 + i)
            assert t.put_if_greater(k, 101 + i)


def test_zeroed_create_writes_only_the_header_and_gives_the_same_table(impl: SimpleNamespace) -> None:
    size = impl.shmindex.table_size(4096, 16, 64)
    full, lazy = bytearray(size), bytearray(size)
    impl.shmindex.ShmTable(full, 4096, 16, 64, create=True)
    t = impl.shmindex.ShmTable(lazy, 4096, 16, 64, create=True, zeroed=True)
    assert full == lazy  # a zero buffer: the same image either way
    t.put(b"k", b"v")
    assert t.get(b"k") == b"v" and len(t) == 1
    # on a fresh shared mapping, only the header's pages become resident (RssShmem: the
    # process's resident shared memory); without zeroed, the whole table would
    big = impl.shmindex.table_size(200_000, 32, 480)  # 143 MB
    before = _rss_shmem()
    mm = impl.shmindex.create_shared(big)
    t2 = impl.shmindex.ShmTable(mm, 200_000, 32, 480, create=True, zeroed=True)
    t2.put(b"k", b"v")
    assert _rss_shmem() - before < 16 << 20
    dirty = bytearray(size)
    dirty[-1] = 1
    impl.shmindex.ShmTable(dirty, 4096, 16, 64, create=True)  # without zeroed: zeroes everything
    assert dirty == full


def _rss_shmem() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssShmem:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssShmem in /proc/self/status")
