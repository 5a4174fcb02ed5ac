"""Shared-memory hash tables for the worker processes (DESIGN.md, "Process model").

This stub is the contract both twins implement: ``simplefast._ext.shmindex``
(Cython: atomics, safe for any number of processes at once) and
``simplefast._ref.shmindex`` (pure Python: the readable specification, correct
for one process at a time). Both run the same algorithm on the same memory
layout, byte for byte (``ext/_shmlayout.pxd``; design in ``docs/shmindex.md``).

A table has a fixed number of slots; keys (bytes, at most ``key_max``) and
values (bytes, at most ``value_max``) are stored inline in fixed-size slots.
The supervisor creates the tables in one ``MAP_SHARED`` mapping before it
forks (``create_shared``, then ``ShmTable(..., create=True)``); the workers
inherit the mapping (or attach with ``create=False``) and all read and write
concurrently. ``put_if_greater`` is the one conditional write: an atomic
"store this counter unless the stored one is at least as high".

Placement: open addressing with **linear probing** from
``home = key_hash(key) % slots``, where ``key_hash`` is FNV-1a 64. At most 75%
of the slots hold entries (``capacity``), so an expected lookup reads a couple
of slots. Deletion leaves a tombstone; a delete prunes the tombstones of its
cluster that no entry's probe path crosses, tombstones are reused by inserts,
and when entries plus tombstones would pass 7/8 of the slots the table is
compacted in place (every lookup therefore ends at an empty slot soon).

Concurrency (compiled twin): writers take pid-owned stripe locks (1024 at
most, each over a run of consecutive slots); readers take none, they read
every slot under its seqlock and retry. A lock held by a dead process is
stolen by the next process that needs it, which turns a half-written slot
into a tombstone: a process killed inside ``put`` or ``delete`` loses at most
the entry it was writing (a replaced entry loses its old value too).
"""

import mmap
from typing import final

from simplefast.errors import TableFullError as TableFullError

_Buffer = bytearray | mmap.mmap | memoryview

LAYOUT_VERSION: int  # 1: the layout of ext/_shmlayout.pxd; attaching checks it

def key_hash(key: bytes) -> int:
    """FNV-1a 64 of ``key`` (offset 0xcbf29ce484222325, prime 0x100000001b3).

    The probe sequence of a key starts at ``key_hash(key) % slots``.
    """

def table_size(slots: int, key_max: int, value_max: int) -> int:
    """Bytes of shared memory one table needs: header, stripe locks, slots.

    ``256 + 64 * nstripes + slots * slot_size``, rounded up to a multiple of
    64, where ``slot_size = align8(24 + key_max + value_max)`` and
    ``nstripes = ceil(slots / max(16, ceil(slots / 1024)))`` (at most 1024).
    Bytes per entry: ``slot_size`` per slot, and since at most 75% of the
    slots hold entries, ``4/3 * slot_size`` per entry at capacity. With
    ``key_max=64, value_max=256``: 344 bytes per slot, 1,000,000 slots take
    344,065,792 bytes and hold up to 750,000 entries (459 bytes per entry).

    Args:
        slots: number of slots, 4 .. 2**32 - 1.
        key_max: longest key in bytes, 1 .. 65535.
        value_max: longest value in bytes, 0 .. 16 MiB.

    Raises:
        TypeError: an argument is not an int.
        ValueError: an argument is out of its range (the message names it).
    """

def _debug_set_delay(spins: int) -> None:
    """Test hook: spin ``spins`` CPU pauses at every race-prone point of this
    process (between probe steps, between a writer's scan and its write,
    between ``put_if_greater``'s comparison and its write, inside a
    compaction move); 0 turns it off. The multi-process tests use it
    to meet the interleavings of a loaded machine. The reference ignores it.
    """

def create_shared(size: int) -> mmap.mmap:
    """An anonymous ``MAP_SHARED`` read-write mapping of ``size`` zero bytes.

    Created before ``fork``, it is shared by the parent and every child.
    Transparent huge pages are requested (``MADV_HUGEPAGE``) where the kernel
    offers them for shared memory.
    """

@final
class ShmTable:
    """One table living in ``buf``, which is any writable, C-contiguous buffer
    (``mmap.mmap``, ``bytearray``, or a ``memoryview`` slice of one, 8-byte
    aligned; 64-byte aligned is best). The buffer is held (exported) for the
    table's lifetime, so an mmap cannot be closed under it.

    Args:
        buf: the memory; at least ``table_size(slots, key_max, value_max)`` bytes.
        slots, key_max, value_max: the geometry (see ``table_size``).
        create: True writes a fresh header (magic, version, geometry) and
            zeroes the table; False attaches to a table already there and
            checks its magic, layout version and geometry.
        zeroed: with ``create``, the caller vouches that ``buf`` holds only
            zero bytes (a mapping fresh from ``create_shared``): only the
            header is written, so the slots' pages become resident as entries
            land instead of all at creation. A buffer that is not all zero
            gives a corrupt table.

    Raises:
        TypeError: ``buf`` is not a writable C-contiguous buffer.
        ValueError: bad geometry, buffer too small or misaligned; on attach,
            no table in the buffer ("magic"), another layout version, or a
            geometry mismatch naming the field ("slots is 64 in the buffer,
            128 requested").
    """

    def __init__(
        self, buf: _Buffer, slots: int, key_max: int, value_max: int, *, create: bool, zeroed: bool = False
    ) -> None: ...
    @property
    def slots(self) -> int: ...
    @property
    def key_max(self) -> int: ...
    @property
    def value_max(self) -> int: ...
    @property
    def capacity(self) -> int:
        """Most entries the table holds: ``slots * 3 // 4``."""
    def get(self, key: bytes) -> bytes | None:
        """The value stored under ``key``, or None. Takes no lock.

        Raises:
            TypeError: ``key`` is not bytes.
            ValueError: ``key`` is longer than ``key_max``.
        """
    def put(self, key: bytes, value: bytes) -> None:
        """Insert ``key``, or replace its value in place.

        Raises:
            TypeError: ``key`` or ``value`` is not bytes.
            ValueError: ``key`` longer than ``key_max`` or ``value`` longer than
                ``value_max`` (the message names the limit).
            TableFullError: ``key`` is new and the table holds ``capacity``
                entries (a replace never raises it).
        """
    def put_if_greater(self, key: bytes, counter: int, tail: bytes = b"") -> bool:
        """Store ``counter`` under ``key`` unless the stored counter is already
        at least as high: an atomic "advance a high-water mark".

        The value written is ``counter.to_bytes(8, "big") + tail`` (so
        ``get`` returns it, and the order of the first 8 bytes is the order of
        the counters). An existing entry is replaced, value and tail both,
        only when its counter is lower than ``counter``; its counter is the
        first 8 bytes of its value read big-endian, a shorter value (written
        by ``put``) read as if padded with zero bytes on the right. A new key
        is always inserted, whatever ``counter`` is.

        Why this and not a general compare-and-swap: it needs no read first
        and no retry loop. The comparison and the write happen under the
        stripe lock of the key's home slot, the lock every writer of that key
        (``put``, ``put_if_greater``, ``delete``) and every compaction holds,
        so of several processes offering the same counter for one key exactly
        one gets True, and a counter never goes down. A refusal writes no
        slot (the lock word is taken and given back: the memory image ends
        as it was). Readers take no lock as ever: ``get`` sees the old or the
        new value, never a mix.

        Use: the highest nonce-count per digest nonce (``proxy/auth.py``),
        with the nonce's issue time as ``tail`` so that a sweep can delete the
        entries of expired nonces.

        Returns:
            True if the value was written (key new, or its counter lower),
            False if the stored counter was equal or higher (nothing written).

        Raises:
            TypeError: ``key`` or ``tail`` is not bytes, ``counter`` not an int.
            ValueError: ``key`` longer than ``key_max``; ``counter`` outside
                0 .. 2**64 - 1; ``8 + len(tail)`` longer than ``value_max``
                ("value is N bytes, longer than value_max M").
            TableFullError: ``key`` is new and the table holds ``capacity``
                entries (an existing key never raises it, even when refused).
        """
    def delete(self, key: bytes) -> bool:
        """Remove ``key``; True if it was there.

        Raises:
            TypeError, ValueError: as for ``get``.
        """
    def __len__(self) -> int:
        """Number of entries (the header's counter: O(1))."""
    def keys(self) -> list[bytes]:
        """Every key, in slot order: a snapshot taken slot by slot, so entries
        written meanwhile by other processes may or may not be in it. O(slots)."""
    def stats(self) -> dict[str, int]:
        """``count``, ``capacity``, ``slots``, ``tombstones`` (deleted slots
        not reclaimed yet), ``lock_steals`` (locks taken over from dead
        processes since the table was created) and ``compactions``."""
    def compact(self) -> None:
        """Compact now: every entry moves to the first free slot of its probe
        path, then every tombstone becomes empty. Takes every stripe lock (a
        stop of about 35 ms per million slots); readers keep reading. Puts
        call it by themselves when needed."""
    def _debug_hold_lock(
        self, key: bytes, seconds: float, *, mid_write: bool = False, ready_fd: int = -1
    ) -> None:
        """Test hook: take the stripe lock of ``key``'s home slot and sleep.

        With ``mid_write``, also stop inside a write of ``key``'s slot (its
        seqlock odd, the counters of an insert already reserved), exactly as a
        process killed there leaves it. When ``ready_fd`` >= 0, one byte is
        written to it once all this is in place, so a test can SIGKILL the
        process at a known point. If the sleep ends, the half-written slot is
        repaired as a stealer would (the key is lost) and the locks released.
        """
