"""Shared-memory hash table, pure-Python reference twin of ``simplefast._ext.shmindex``.

This module is the readable specification: the Cython module runs the same
algorithm on the same bytes, and the differential tests check that both leave
byte-identical memory images after the same operations. The API is documented
in ``simplefast/_ext/shmindex.pyi``, the layout in ``ext/_shmlayout.pxd`` and
the design in ``docs/shmindex.md``.

**Single-process only.** Python cannot compare-and-swap a word of shared
memory, so this twin takes a stripe lock with a plain read, compare, write.
It follows the same pid-in-word protocol (and steals from a dead owner the
same way), which makes it correct when one process at a time uses the table,
for example a test, or a tool that inspects a mapping, but not when several
processes write concurrently. The multi-process guarantees are the compiled
twin's.

Theory of operation
-------------------
Slots are probed linearly from ``home = fnv1a64(key) % slots``. A LIVE
entry is always *reachable*: no EMPTY slot lies between its home and its
slot. Deleted entries leave a TOMB (tombstone) so the entries behind them stay
reachable.

* ``get``: no lock. Each slot is read under its seqlock (read ``seq``; while
  it is odd a writer is inside, so wait; read the fields; read ``seq`` again
  and start over if it moved). The probe stops at the key or at an EMPTY
  slot. A miss is confirmed by the header's compaction word not having moved
  (compaction moves entries; nothing else does).
* ``put`` / ``delete``: take the stripe lock of the key's home slot (it
  serializes every writer of that key), scan, then take the stripe lock of
  the slot to write if it lies in another stripe. That second lock is waited
  for only when its index is higher than the first one (so waits always go
  up and cannot form a cycle); otherwise it is tried, and on failure
  everything is released and the operation starts over. An insert that had
  to take the second lock scans again under both locks and starts over if
  the first free slot moved.
* ``put_if_greater`` is ``put`` with one comparison added: when the scan
  (home lock held) finds the key, its stored counter (first 8 value bytes,
  big-endian) is compared with the new one and, unless it is lower, the
  lock is released with nothing written. Every writer of the key holds that
  lock, so the comparison and the write are one atomic step.
* An insert goes into the first free slot (TOMB or EMPTY) on the key's path.
  ``live`` is reserved in the header before the slot is written (at
  ``capacity`` the insert raises ``TableFullError``), and so is ``nonempty``
  when an EMPTY slot is consumed: if that would pass ``max_nonempty`` (7/8
  of the slots), the table is compacted first, so an unsuccessful probe
  always meets an EMPTY slot soon.
* ``delete`` writes a TOMB, then *prunes* the key's cluster: with the stripes
  from the key's home to the next EMPTY slot locked (tried, never waited
  for), every TOMB that no LIVE entry's probe path crosses becomes EMPTY.
* ``compact`` (all stripe locks, compaction word odd): every LIVE entry, in
  slot order starting after an EMPTY slot, moves to the first non-LIVE slot
  on its path; then every TOMB becomes EMPTY and the counters are recounted.
  Each move writes the destination before the source becomes a TOMB, so an
  entry is never unreachable; a reader that misses during a compaction sees
  the compaction word move and looks again.
* A writer that dies leaves its stripe locks holding its pid and maybe one
  slot with an odd ``seq``. The process that steals the lock turns odd slots
  of the stripe into TOMBs (the entry being written is lost, nothing else),
  recounts the stripe and carries the difference to the header counters.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
import time
import typing

from simplefast.errors import TableFullError

if typing.TYPE_CHECKING:
    _Buffer = bytearray | mmap.mmap | memoryview

LAYOUT_VERSION = 1

_MAGIC = int.from_bytes(b"SFSHMTB1", "little")
_HEADER_SIZE = 256
_STRIPE_SIZE = 64
_SLOT_HEAD = 24
_MAX_STRIPES = 1024
_MIN_STRIPE_WIDTH = 16
_MAX_SLOTS = (1 << 32) - 1
_MAX_KEY = 65535
_MAX_VALUE = 1 << 24
_EMPTY, _LIVE, _TOMB = 0, 1, 2
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_M32 = (1 << 32) - 1
_M64 = (1 << 64) - 1
_CHECK_EVERY = 16  # yields between two looks at a lock owner's pid
_PRUNE_MAX_STRIPES = 4  # a delete prunes a cluster spanning at most this many stripes
_COUNTER_BYTES = 8  # put_if_greater: the counter, big-endian, opens the value

# Native byte order, standard sizes, no padding: the C structs of _shmlayout.pxd.
_GEOMETRY = struct.Struct("=QIIQIIIIIIQQ")  # header bytes 0..63
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_I64 = struct.Struct("=q")
_SLOT = struct.Struct("=IIQII")  # seq, state, hash, klen, vlen
# header offsets
_H_LIVE, _H_NONEMPTY, _H_COMPACT, _H_COMPACTIONS, _H_STEALS, _H_MAX_NONEMPTY = 64, 72, 128, 136, 192, 200
# stripe offsets
_S_OWNER, _S_LIVE, _S_NONEMPTY = 0, 8, 16
# slot offsets
_O_SEQ, _O_STATE, _O_HASH, _O_KLEN, _O_VLEN = 0, 4, 8, 16, 20


def key_hash(key: bytes) -> int:
    """FNV-1a 64 of ``key``: the hash both twins place keys by (home = hash % slots)."""
    if type(key) is not bytes:
        raise TypeError(f"key must be bytes, not {type(key).__name__}")
    h = _FNV_OFFSET
    for b in key:
        h = ((h ^ b) * _FNV_PRIME) & _M64
    return h


def _debug_set_delay(spins: int) -> None:
    """Test hook of the compiled twin (widens race windows); nothing to widen here."""
    _check_int("spins", spins, 0, 1 << 32)


def _check_int(name: str, value: object, lo: int, hi: int) -> int:
    if type(value) is not int:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


class _Geometry(typing.NamedTuple):
    slots: int
    key_max: int
    value_max: int
    slot_size: int
    nstripes: int
    width: int
    capacity: int
    slots_offset: int
    max_nonempty: int
    total: int


def _geometry(slots: object, key_max: object, value_max: object) -> _Geometry:
    n = _check_int("slots", slots, 4, _MAX_SLOTS)
    km = _check_int("key_max", key_max, 1, _MAX_KEY)
    vm = _check_int("value_max", value_max, 0, _MAX_VALUE)
    slot_size = (_SLOT_HEAD + km + vm + 7) & ~7
    width = max(_MIN_STRIPE_WIDTH, -(-n // _MAX_STRIPES))
    nstripes = -(-n // width)
    slots_offset = _HEADER_SIZE + nstripes * _STRIPE_SIZE
    total = (slots_offset + n * slot_size + 63) & ~63
    return _Geometry(
        n, km, vm, slot_size, nstripes, width, n * 3 // 4, slots_offset, n - max(1, n // 8), total
    )


def table_size(slots: int, key_max: int, value_max: int) -> int:
    """Bytes of shared memory one table needs (see the stub for the formula)."""
    return _geometry(slots, key_max, value_max).total


def create_shared(size: int) -> mmap.mmap:
    """An anonymous ``MAP_SHARED`` read-write mapping of ``size`` bytes (zero-filled)."""
    _check_int("size", size, 1, 1 << 48)
    m = mmap.mmap(-1, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        try:  # fewer TLB misses on a big table; shmem THP is often off ("never")
            m.madvise(mmap.MADV_HUGEPAGE)
        except OSError:
            pass
    return m


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _full_message(g: _Geometry) -> str:
    return f"shared table is full: {g.capacity} entries (75% of {g.slots} slots)"


class ShmTable:
    """One table in a writable buffer; see ``simplefast/_ext/shmindex.pyi``."""

    def __init__(
        self, buf: _Buffer, slots: int, key_max: int, value_max: int, *, create: bool, zeroed: bool = False
    ) -> None:
        g = _geometry(slots, key_max, value_max)
        try:
            mv = memoryview(buf)
        except TypeError:
            raise TypeError(f"buf must be a writable buffer, not {type(buf).__name__}") from None
        if mv.readonly:
            raise TypeError(f"buf must be a writable buffer ({type(buf).__name__} is read-only)")
        if not mv.c_contiguous:
            raise TypeError("buf must be a C-contiguous buffer")
        mv = mv.cast("B")
        if mv.nbytes < g.total:
            raise ValueError(f"buffer is {mv.nbytes} bytes, the table needs {g.total}")
        probe = ctypes.c_char.from_buffer(mv)
        address = ctypes.addressof(probe)
        del probe
        if address % 8:
            raise ValueError("buffer is not 8-byte aligned")
        self._mv = mv
        self._g = g
        if create:
            self._create(zeroed)
        else:
            self._attach()

    # ------------------------------------------------------------ set-up

    def _create(self, zeroed: bool) -> None:
        g = self._g
        mv = self._mv
        zeros = bytes(min(g.total, 1 << 20))
        for off in range(0, _HEADER_SIZE if zeroed else g.total, len(zeros)):
            end = min(off + len(zeros), g.total)
            mv[off:end] = zeros[: end - off]
        _GEOMETRY.pack_into(
            mv,
            0,
            _MAGIC,
            LAYOUT_VERSION,
            _HEADER_SIZE,
            g.slots,
            g.key_max,
            g.value_max,
            g.slot_size,
            g.nstripes,
            g.width,
            _STRIPE_SIZE,
            g.capacity,
            g.slots_offset,
        )
        _U64.pack_into(mv, _H_MAX_NONEMPTY, g.max_nonempty)

    def _attach(self) -> None:
        g = self._g
        fields = _GEOMETRY.unpack_from(self._mv, 0)
        if fields[0] != _MAGIC:
            raise ValueError(f"buffer holds no simplefast shared table (magic {fields[0]:#018x})")
        if fields[1] != LAYOUT_VERSION:
            raise ValueError(f"shared table layout version {fields[1]}, this build reads {LAYOUT_VERSION}")
        want = (
            ("header_size", _HEADER_SIZE),
            ("slots", g.slots),
            ("key_max", g.key_max),
            ("value_max", g.value_max),
            ("slot_size", g.slot_size),
            ("nstripes", g.nstripes),
            ("stripe_width", g.width),
            ("stripe_size", _STRIPE_SIZE),
            ("capacity", g.capacity),
            ("slots_offset", g.slots_offset),
        )
        for (name, expected), have in zip(want, fields[2:], strict=True):
            if have != expected:
                raise ValueError(
                    f"shared table geometry mismatch: {name} is {have} in the buffer, {expected} requested"
                )
        have = _U64.unpack_from(self._mv, _H_MAX_NONEMPTY)[0]
        if have != g.max_nonempty:
            raise ValueError(
                f"shared table geometry mismatch: max_nonempty is {have} in the buffer, "
                f"{g.max_nonempty} requested"
            )

    # ------------------------------------------------------------ raw access

    def _rd32(self, off: int) -> int:
        v: int = _U32.unpack_from(self._mv, off)[0]
        return v

    def _wr32(self, off: int, v: int) -> None:
        _U32.pack_into(self._mv, off, v & _M32)

    def _rd64(self, off: int) -> int:
        v: int = _U64.unpack_from(self._mv, off)[0]
        return v

    def _wr64(self, off: int, v: int) -> None:
        _U64.pack_into(self._mv, off, v & _M64)

    def _rdi64(self, off: int) -> int:
        v: int = _I64.unpack_from(self._mv, off)[0]
        return v

    def _addi64(self, off: int, d: int) -> int:
        """fetch_add: returns the value before."""
        old: int = _I64.unpack_from(self._mv, off)[0]
        _I64.pack_into(self._mv, off, old + d)
        return old

    def _stripe(self, s: int) -> int:
        return _HEADER_SIZE + s * _STRIPE_SIZE

    def _slot(self, i: int) -> int:
        return self._g.slots_offset + i * self._g.slot_size

    def _state(self, i: int) -> int:
        return self._rd32(self._slot(i) + _O_STATE)

    # ------------------------------------------------------------ seqlock

    def _write_begin(self, off: int) -> None:
        self._wr32(off + _O_SEQ, self._rd32(off + _O_SEQ) + 1)

    def _write_end(self, off: int) -> None:
        self._wr32(off + _O_SEQ, self._rd32(off + _O_SEQ) + 1)

    def _seq_even(self, i: int) -> int:
        """The slot's seq once even; steals (and so repairs) from a dead writer."""
        off = self._slot(i)
        n = 0
        while True:
            q = self._rd32(off + _O_SEQ)
            if not q & 1:
                return q
            n += 1
            if n % _CHECK_EVERY == 0:
                s = i // self._g.width
                owner = self._rd32(self._stripe(s) + _S_OWNER)
                if owner != 0 and not _alive(owner) and self._steal(s, owner):
                    self._unlock(s)
                    continue
            os.sched_yield()

    def _compact_settled(self) -> int:
        n = 0
        while True:
            c = self._rd64(_H_COMPACT)
            if not c & 1:
                return c
            n += 1
            if n % _CHECK_EVERY == 0 and not _alive(c >> 32):
                if self._rd64(_H_COMPACT) == c:
                    self._wr64(_H_COMPACT, (c + 1) & _M32)
                continue
            os.sched_yield()

    # ------------------------------------------------------------ locks

    def _repair(self, s: int, dead: int) -> None:
        g = self._g
        live = nonempty = 0
        for i in range(s * g.width, min((s + 1) * g.width, g.slots)):
            off = self._slot(i)
            q = self._rd32(off + _O_SEQ)
            if q & 1:
                self._wr32(off + _O_STATE, _TOMB)
                self._wr32(off + _O_SEQ, q + 1)
            st = self._rd32(off + _O_STATE)
            if st == _LIVE:
                live += 1
                nonempty += 1
            elif st == _TOMB:
                nonempty += 1
        so = self._stripe(s)
        recorded = self._rdi64(so + _S_LIVE)
        if live != recorded:
            self._addi64(_H_LIVE, live - recorded)
            _I64.pack_into(self._mv, so + _S_LIVE, live)
        recorded = self._rdi64(so + _S_NONEMPTY)
        if nonempty != recorded:
            self._addi64(_H_NONEMPTY, nonempty - recorded)
            _I64.pack_into(self._mv, so + _S_NONEMPTY, nonempty)
        c = self._rd64(_H_COMPACT)
        if dead != 0 and c & 1 and c >> 32 == dead:
            self._wr64(_H_COMPACT, (c + 1) & _M32)

    def _steal(self, s: int, owner: int) -> bool:
        off = self._stripe(s) + _S_OWNER
        if self._rd32(off) != owner:
            return False
        self._wr32(off, os.getpid())
        self._wr64(_H_STEALS, self._rd64(_H_STEALS) + 1)
        self._repair(s, owner)
        return True

    def _lock(self, s: int) -> None:
        off = self._stripe(s) + _S_OWNER
        me = os.getpid()
        n = 0
        while True:
            owner = self._rd32(off)
            if owner == 0:
                self._wr32(off, me)
                return
            n += 1
            if n % _CHECK_EVERY == 0 and not _alive(owner) and self._steal(s, owner):
                return
            os.sched_yield()

    def _trylock(self, s: int) -> bool:
        off = self._stripe(s) + _S_OWNER
        owner = self._rd32(off)
        if owner == 0:
            self._wr32(off, os.getpid())
            return True
        return not _alive(owner) and self._steal(s, owner)

    def _lock_second(self, s: int, first: int) -> bool:
        """Take ``s`` while holding ``first``: wait only upwards, else just try."""
        if s > first:
            self._lock(s)
            return True
        return self._trylock(s)

    def _unlock(self, s: int) -> None:
        self._wr32(self._stripe(s) + _S_OWNER, 0)

    # ------------------------------------------------------------ probing

    def _scan(self, key: bytes, h: int, hv: int) -> tuple[int, int]:
        """(slot holding ``key`` or -1, first free slot on its path or -1); home lock held."""
        n = self._g.slots
        klen = len(key)
        free = -1
        i = h
        for _ in range(n):
            off = self._slot(i)
            while True:
                q = self._seq_even(i)
                _, st, shash, sklen, _ = _SLOT.unpack_from(self._mv, off)
                match = st == _LIVE and shash == hv and sklen == klen
                if match:
                    k0 = off + _SLOT_HEAD
                    match = self._mv[k0 : k0 + klen] == key
                if self._rd32(off + _O_SEQ) == q:
                    break
            if match:
                return i, free
            if st == _EMPTY:
                return -1, i if free < 0 else free
            if st == _TOMB and free < 0:
                free = i
            i += 1
            if i == n:
                i = 0
        return -1, free

    def _check_key(self, key: object) -> bytes:
        if type(key) is not bytes:
            raise TypeError(f"key must be bytes, not {type(key).__name__}")
        if len(key) > self._g.key_max:
            raise ValueError(f"key is {len(key)} bytes, longer than key_max {self._g.key_max}")
        return key

    # ------------------------------------------------------------ API

    @property
    def slots(self) -> int:
        return self._g.slots

    @property
    def key_max(self) -> int:
        return self._g.key_max

    @property
    def value_max(self) -> int:
        return self._g.value_max

    @property
    def capacity(self) -> int:
        return self._g.capacity

    def get(self, key: bytes) -> bytes | None:
        key = self._check_key(key)
        hv = key_hash(key)
        n = self._g.slots
        klen = len(key)
        h = hv % n
        while True:
            c1 = self._rd64(_H_COMPACT)
            i = h
            for _ in range(n):
                off = self._slot(i)
                while True:
                    q = self._seq_even(i)
                    _, st, shash, sklen, vlen = _SLOT.unpack_from(self._mv, off)
                    value = None
                    if st == _LIVE and shash == hv and sklen == klen:
                        k0 = off + _SLOT_HEAD
                        if self._mv[k0 : k0 + klen] == key:
                            v0 = k0 + self._g.key_max
                            value = bytes(self._mv[v0 : v0 + min(vlen, self._g.value_max)])
                    if self._rd32(off + _O_SEQ) == q:
                        break
                if value is not None:
                    return value
                if st == _EMPTY:
                    break
                i += 1
                if i == n:
                    i = 0
            if c1 == self._rd64(_H_COMPACT) and not c1 & 1:
                return None
            self._compact_settled()

    def put(self, key: bytes, value: bytes) -> None:
        key = self._check_key(key)
        if type(value) is not bytes:
            raise TypeError(f"value must be bytes, not {type(value).__name__}")
        self._check_value_len(len(value))
        self._put(key, value, None)

    def put_if_greater(self, key: bytes, counter: int, tail: bytes = b"") -> bool:
        key = self._check_key(key)
        _check_int("counter", counter, 0, _M64)
        if type(tail) is not bytes:
            raise TypeError(f"tail must be bytes, not {type(tail).__name__}")
        self._check_value_len(_COUNTER_BYTES + len(tail))
        return self._put(key, counter.to_bytes(_COUNTER_BYTES, "big") + tail, counter)

    def _check_value_len(self, vlen: int) -> None:
        if vlen > self._g.value_max:
            raise ValueError(f"value is {vlen} bytes, longer than value_max {self._g.value_max}")

    def _stored_counter(self, i: int) -> int:
        """The counter of the LIVE slot ``i``: its first 8 value bytes, big-endian;
        a shorter value reads as if padded with zero bytes on the right."""
        off = self._slot(i)
        vlen = min(self._rd32(off + _O_VLEN), _COUNTER_BYTES)
        v0 = off + _SLOT_HEAD + self._g.key_max
        return int.from_bytes(bytes(self._mv[v0 : v0 + vlen]).ljust(_COUNTER_BYTES, b"\0"), "big")

    def _put(self, key: bytes, value: bytes, counter: int | None) -> bool:
        """Insert or replace ``key``. With ``counter``, an existing entry is replaced
        only when its stored counter is lower; False then means nothing was written.
        Raises TableFullError (a new key, no room)."""
        g = self._g
        hv = key_hash(key)
        h = hv % g.slots
        sh = h // g.width
        compactions = 0
        while True:
            self._lock(sh)
            found, free = self._scan(key, h, hv)
            if found >= 0:
                # The home lock serializes every writer of this key and keeps
                # compaction out: the slot cannot change between this comparison
                # and the write below (the second lock, when needed, is only
                # about other keys' slots of that stripe).
                if counter is not None and self._stored_counter(found) >= counter:
                    self._unlock(sh)
                    return False
                sp = found // g.width
                if sp != sh and not self._lock_second(sp, sh):
                    self._unlock(sh)
                    os.sched_yield()
                    continue
                off = self._slot(found)
                self._write_begin(off)
                self._wr32(off + _O_VLEN, len(value))
                v0 = off + _SLOT_HEAD + g.key_max
                self._mv[v0 : v0 + len(value)] = value
                self._write_end(off)
                if sp != sh:
                    self._unlock(sp)
                self._unlock(sh)
                return True
            if free < 0:  # no free slot on the whole ring: cannot happen below max_nonempty
                self._unlock(sh)
                raise TableFullError(_full_message(g))
            sf = free // g.width
            if sf != sh:
                if not self._lock_second(sf, sh):
                    self._unlock(sh)
                    os.sched_yield()
                    continue
                if self._scan(key, h, hv) != (-1, free):
                    self._unlock(sf)
                    self._unlock(sh)
                    continue
            off = self._slot(free)
            was_empty = self._rd32(off + _O_STATE) == _EMPTY
            if self._addi64(_H_LIVE, 1) + 1 > g.capacity:
                self._addi64(_H_LIVE, -1)
                if sf != sh:
                    self._unlock(sf)
                self._unlock(sh)
                raise TableFullError(_full_message(g))
            if was_empty and self._addi64(_H_NONEMPTY, 1) + 1 > g.max_nonempty:
                self._addi64(_H_NONEMPTY, -1)
                self._addi64(_H_LIVE, -1)
                if sf != sh:
                    self._unlock(sf)
                self._unlock(sh)
                if compactions == 4:  # others keep refilling: give up as full
                    raise TableFullError(_full_message(g))
                compactions += 1
                self._compact(force=False)
                continue
            so = self._stripe(sf)
            self._addi64(so + _S_LIVE, 1)
            if was_empty:
                self._addi64(so + _S_NONEMPTY, 1)
            self._write_begin(off)
            _SLOT.pack_into(self._mv, off, self._rd32(off), _LIVE, hv, len(key), len(value))
            k0 = off + _SLOT_HEAD
            self._mv[k0 : k0 + len(key)] = key
            self._mv[k0 + g.key_max : k0 + g.key_max + len(value)] = value
            self._write_end(off)
            if sf != sh:
                self._unlock(sf)
            self._unlock(sh)
            return True

    def delete(self, key: bytes) -> bool:
        key = self._check_key(key)
        g = self._g
        hv = key_hash(key)
        h = hv % g.slots
        sh = h // g.width
        while True:
            self._lock(sh)
            found, _ = self._scan(key, h, hv)
            if found < 0:
                self._unlock(sh)
                return False
            sp = found // g.width
            if sp != sh and not self._lock_second(sp, sh):
                self._unlock(sh)
                os.sched_yield()
                continue
            self._addi64(self._stripe(sp) + _S_LIVE, -1)
            self._addi64(_H_LIVE, -1)
            off = self._slot(found)
            self._write_begin(off)
            self._wr32(off + _O_STATE, _TOMB)
            self._write_end(off)
            self._prune(h, found, sh, sp)
            if sp != sh:
                self._unlock(sp)
            self._unlock(sh)
            return True

    def _prune(self, h: int, p: int, held1: int, held2: int) -> None:
        """Turn into EMPTY every TOMB in [h, cluster end) that no LIVE path crosses."""
        g = self._g
        n = g.slots
        e = p + 1 if p + 1 < n else 0
        for _ in range(n):
            if self._state(e) == _EMPTY:
                break
            e = e + 1 if e + 1 < n else 0
        else:
            return
        sh, se = h // g.width, e // g.width
        nst = min(g.nstripes, se - sh + 1 if e >= h else g.nstripes - sh + se + 1)
        if nst > _PRUNE_MAX_STRIPES:
            return
        taken: list[int] = []
        try:
            for k in range(nst):
                s = (sh + k) % g.nstripes
                if s == held1 or s == held2:
                    continue
                if not self._trylock(s):
                    return
                taken.append(s)
            if self._state(e) != _EMPTY:
                return
            length = (e - h) % n
            low = length
            for j in range(length - 1, -1, -1):
                i = (h + j) % n
                off = self._slot(i)
                st = self._rd32(off + _O_STATE)
                if st == _LIVE:
                    low = min(low, j - (i - self._rd64(off + _O_HASH) % n) % n)
                elif st == _TOMB and low > j:
                    s = i // g.width
                    self._addi64(self._stripe(s) + _S_NONEMPTY, -1)
                    self._addi64(_H_NONEMPTY, -1)
                    self._write_begin(off)
                    self._wr32(off + _O_STATE, _EMPTY)
                    self._write_end(off)
        finally:
            for s in taken:
                self._unlock(s)

    def __len__(self) -> int:
        return max(0, self._rdi64(_H_LIVE))

    def keys(self) -> list[bytes]:
        g = self._g
        while True:
            c1 = self._compact_settled()
            out: list[bytes] = []
            for i in range(g.slots):
                off = self._slot(i)
                while True:
                    q = self._seq_even(i)
                    _, st, _, klen, _ = _SLOT.unpack_from(self._mv, off)
                    k = None
                    if st == _LIVE:
                        k0 = off + _SLOT_HEAD
                        k = bytes(self._mv[k0 : k0 + min(klen, g.key_max)])
                    if self._rd32(off + _O_SEQ) == q:
                        break
                if k is not None:
                    out.append(k)
            if self._rd64(_H_COMPACT) == c1:
                return list(dict.fromkeys(out))

    def stats(self) -> dict[str, int]:
        live = self._rdi64(_H_LIVE)
        return {
            "count": max(0, live),
            "capacity": self._g.capacity,
            "slots": self._g.slots,
            "tombstones": max(0, self._rdi64(_H_NONEMPTY) - live),
            "lock_steals": self._rd64(_H_STEALS),
            "compactions": self._rd64(_H_COMPACTIONS),
        }

    def compact(self) -> None:
        self._compact(force=True)

    def _compact(self, force: bool) -> None:
        g = self._g
        n = g.slots
        for s in range(g.nstripes):
            self._lock(s)
        try:
            if not force and self._rdi64(_H_NONEMPTY) < g.max_nonempty:
                return  # another process compacted while we waited
            epoch = self._rd64(_H_COMPACT) & _M32
            self._wr64(_H_COMPACT, os.getpid() << 32 | ((epoch + 1) & _M32))
            start = 0
            for i in range(n):
                if self._state(i) == _EMPTY:
                    start = i
                    break
            # pass 1: every LIVE entry to the first non-LIVE slot of its path
            for k in range(1, n + 1):
                i = (start + k) % n
                off = self._slot(i)
                if self._rd32(off + _O_STATE) != _LIVE:
                    continue
                j = self._rd64(off + _O_HASH) % n
                while j != i and self._state(j) == _LIVE:
                    j = j + 1 if j + 1 < n else 0
                if j != i:
                    self._move(i, j)
            # pass 2: no LIVE path crosses a TOMB any more; all become EMPTY
            total = 0
            for s in range(g.nstripes):
                live = 0
                for i in range(s * g.width, min((s + 1) * g.width, n)):
                    off = self._slot(i)
                    st = self._rd32(off + _O_STATE)
                    if st == _TOMB:
                        self._write_begin(off)
                        self._wr32(off + _O_STATE, _EMPTY)
                        self._write_end(off)
                    elif st == _LIVE:
                        live += 1
                so = self._stripe(s)
                _I64.pack_into(self._mv, so + _S_LIVE, live)
                _I64.pack_into(self._mv, so + _S_NONEMPTY, live)
                total += live
            _I64.pack_into(self._mv, _H_LIVE, total)
            _I64.pack_into(self._mv, _H_NONEMPTY, total)
            self._wr64(_H_COMPACTIONS, self._rd64(_H_COMPACTIONS) + 1)
            self._wr64(_H_COMPACT, (epoch + 2) & _M32)
        finally:
            for s in range(g.nstripes - 1, -1, -1):
                self._unlock(s)

    def _move(self, i: int, j: int) -> None:
        """Copy the LIVE entry of slot i into slot j (earlier on its path), then tomb i."""
        g = self._g
        src, dst = self._slot(i), self._slot(j)
        was_empty = self._rd32(dst + _O_STATE) == _EMPTY
        self._write_begin(src)
        _, _, hv, klen, vlen = _SLOT.unpack_from(self._mv, src)
        self._write_begin(dst)
        _SLOT.pack_into(self._mv, dst, self._rd32(dst), _LIVE, hv, klen, vlen)
        k0, d0 = src + _SLOT_HEAD, dst + _SLOT_HEAD
        self._mv[d0 : d0 + klen] = self._mv[k0 : k0 + klen]
        k0 += g.key_max
        d0 += g.key_max
        self._mv[d0 : d0 + vlen] = self._mv[k0 : k0 + vlen]
        self._write_end(dst)
        self._wr32(src + _O_STATE, _TOMB)
        self._write_end(src)
        sj, si = self._stripe(j // g.width), self._stripe(i // g.width)
        self._addi64(sj + _S_LIVE, 1)
        self._addi64(si + _S_LIVE, -1)
        if was_empty:
            self._addi64(sj + _S_NONEMPTY, 1)
            self._addi64(_H_NONEMPTY, 1)

    # ------------------------------------------------------------ test hooks

    def _debug_hold_lock(
        self, key: bytes, seconds: float, *, mid_write: bool = False, ready_fd: int = -1
    ) -> None:
        key = self._check_key(key)
        g = self._g
        hv = key_hash(key)
        h = hv % g.slots
        sh = h // g.width
        self._lock(sh)
        st = sh
        if mid_write:
            found, free = self._scan(key, h, hv)
            target = found if found >= 0 else free
            if target < 0:
                self._unlock(sh)
                raise TableFullError(_full_message(g))
            st = target // g.width
            if st != sh:
                self._lock(st)
            off = self._slot(target)
            if found < 0:  # an insert, stopped where a crash would stop it
                was_empty = self._rd32(off + _O_STATE) == _EMPTY
                self._addi64(_H_LIVE, 1)
                so = self._stripe(st)
                self._addi64(so + _S_LIVE, 1)
                if was_empty:
                    self._addi64(_H_NONEMPTY, 1)
                    self._addi64(so + _S_NONEMPTY, 1)
                self._write_begin(off)
                _SLOT.pack_into(self._mv, off, self._rd32(off), _LIVE, hv, len(key), 0)
                k0 = off + _SLOT_HEAD
                self._mv[k0 : k0 + len(key)] = key
            else:  # a replace, stopped the same way
                self._write_begin(off)
                self._wr32(off + _O_VLEN, 0)
        if ready_fd >= 0:
            os.write(ready_fd, b"!")
        time.sleep(seconds)
        if mid_write:
            self._repair(st, 0)  # what a stealer would find and do
            if st != sh:
                self._unlock(st)
        self._unlock(sh)
