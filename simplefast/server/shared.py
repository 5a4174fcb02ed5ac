"""Shared-memory state made by the supervisor before it forks the workers."""

from __future__ import annotations

import errno
import mmap
import os
import time
from dataclasses import dataclass, field
from typing import Any

from simplefast._impl import shmindex
from simplefast.logs import get_logger
from simplefast.presence.state import ShmPresentities
from simplefast.presence.subscribe import ShmSubscriptions
from simplefast.proxy.auth import NONCE_LEN, SWEEP_KEY, SharedNonceCounts
from simplefast.proxy.location import ShmLocation
from simplefast.server.config import Config
from simplefast.store import location as location_store
from simplefast.store import presence as presence_store

log = get_logger(__name__)

# Geometry of the location table: an AOR (sip:user@domain) up to 128 bytes, its
# encoded bindings up to 768 bytes (a handful of contacts with Path).
AOR_MAX = 128
BINDINGS_MAX = 768

# The nonce-count table (digest replay protection shared by the workers,
# proxy/auth.py SharedNonceCounts), in its own mapping, made only with auth on.
# Key: the nonce as issued, NONCE_LEN (43) ASCII bytes; value: nc and issue
# time, two u64. A slot is align8(24 + 43 + 16) = 88 bytes. An entry lives
# from its nonce's first authenticated request until a sweep after its expiry:
# up to nonce_ttl + SWEEP_GRACE + sweep_every = 300 + 5 + 60 s by default. So
# NONCE_CAPACITY = 65,536 entries carry ~180 newly used nonces per second,
# sustained; past that, new nonces fall back to per-worker tracking (counted,
# logged). 87,386 slots (75% of them: 65,539 entries) take 7.8 MB.
NONCE_CAPACITY = 65_536
NONCE_SLOTS = (NONCE_CAPACITY + 1) * 4 // 3 + 4  # + 1: the sweep claim entry
NONCE_VALUE_MAX = 16


# Presence (simplefast/presence/state.py, subscribe.py). Presentities: AOR ->
# publications and composed document, value up to presence.presentity_state_bytes.
# Subscriptions: our dialog tag (at most 32 ASCII bytes) -> the row a worker needs
# to go on with it (presence/subscribe.py encode_row, layout 2), up to
# presence.subscription_row_bytes (200 by default: one slot is align8(24 + 32 + 200) =
# 256 bytes, 341 per subscription at the table's 75 % fill). A longer row goes to the
# overflow table: SUB_OVERFLOW_VALUE_MAX-byte values, for one subscription in
# SUB_OVERFLOW_SHARE (and SUB_OVERFLOW_MIN more); one longer still stays in its worker
# only, counted.
SUB_KEY_MAX = 32
SUB_OVERFLOW_VALUE_MAX = 1024
SUB_OVERFLOW_SHARE = 64
SUB_OVERFLOW_MIN = 64
OFFLINE_ALL = b"*"  # in the offline marks: the table overflowed, every AOR may have messages
# the marks table: 8-byte hash of event and resource, NUL, worker index in decimal (at most
# 255: 3 digits) (presence/state.py mark_prefix); the value b"1". One slot: align8(24 + 12 + 1)
MARK_KEY_MAX = 12
MARK_VALUE_MAX = 1


def _slots(capacity: int) -> int:
    return capacity * 4 // 3 + 4  # a table holds entries in at most 75% of its slots


@dataclass
class SharedState:
    mapping: mmap.mmap
    slots: int
    nonces: mmap.mmap | None = None  # the nonce-count table; None when auth is off
    rundir: str = ""  # 0700 directory of the workers' hand-off sockets (transport/handoff.py)
    presentities: mmap.mmap | None = None
    presentity_geometry: tuple[int, int, int] = (0, 0, 0)  # slots, key_max, value_max
    subscriptions: mmap.mmap | None = None
    subscription_geometry: tuple[int, int, int] = (0, 0, 0)  # slots, key_max, value_max
    sub_overflow: mmap.mmap | None = None  # rows longer than the subscription table's values
    sub_overflow_slots: int = 0
    winfo_marks: mmap.mmap | None = None
    winfo_slots: int = 0
    offline_marks: mmap.mmap | None = None  # AORs with stored MESSAGEs (None: no offline store)
    # secret of the To tags of REGISTER answers (simplefast/_ref/fastreg.py), made before the
    # fork so every worker gives a retransmission the same tag
    tag_key: bytes = field(default_factory=lambda: os.urandom(16))
    offline_slots: int = 0
    prefaulted: bool = False  # the supervisor made every page resident (workers then map them too)

    def _maps(self) -> list[mmap.mmap]:
        maps = (self.mapping, self.nonces, self.presentities, self.subscriptions, self.sub_overflow,
                self.winfo_marks, self.offline_marks)  # fmt: skip
        return [m for m in maps if m is not None]

    def size(self) -> int:
        """Bytes of shared memory the tables take when every page is resident."""
        return sum(len(m) for m in self._maps())

    def prefault(self) -> bool:
        """Every page of every table resident and mapped in this process (see ``prefault``).
        The supervisor does it first (the pages are made) and sets ``prefaulted``; a forked
        worker does it again, as its page tables start empty and each first touch of a page
        would be a (minor) fault. False when the kernel refused (out of memory): the
        tables are then mapped page by page as rows are written."""
        return all(prefault(m) for m in self._maps())

    def offline_table(self, *, create: bool = False) -> Any:
        """AORs that have MESSAGEs in the offline store (key: AOR, value b"1"): a REGISTER
        of anyone else never asks SQLite. Set by the worker that stores, cleared by the
        one that finds the user's store empty (simplefast/im/agent.py)."""
        assert self.offline_marks is not None
        return shmindex.ShmTable(
            self.offline_marks, self.offline_slots, AOR_MAX, 8, create=create, zeroed=create
        )

    def marks_table(self, *, create: bool = False) -> Any:
        """Which workers hold subscriptions of an event to a resource: key
        ``event\0resource\0index`` (UTF-8), present while that worker holds some."""
        assert self.winfo_marks is not None
        return shmindex.ShmTable(
            self.winfo_marks, self.winfo_slots, MARK_KEY_MAX, MARK_VALUE_MAX, create=create, zeroed=create
        )

    def presentity_table(self, *, create: bool = False) -> Any:
        assert self.presentities is not None
        return shmindex.ShmTable(self.presentities, *self.presentity_geometry, create=create, zeroed=create)

    def subscription_table(self, *, create: bool = False) -> Any:
        assert self.subscriptions is not None
        geometry = self.subscription_geometry
        return shmindex.ShmTable(self.subscriptions, *geometry, create=create, zeroed=create)

    def subscription_overflow_table(self, *, create: bool = False) -> Any:
        """The rows longer than the subscription table's values (None: its values hold
        SUB_OVERFLOW_VALUE_MAX bytes already, there is no overflow table)."""
        if self.sub_overflow is None:
            return None
        return shmindex.ShmTable(
            self.sub_overflow, self.sub_overflow_slots, SUB_KEY_MAX, SUB_OVERFLOW_VALUE_MAX, create=create,
            zeroed=create,
        )  # fmt: skip

    def subscriptions_store(self) -> ShmSubscriptions:
        """Both subscription tables, as the workers and the store use them."""
        return ShmSubscriptions(self.subscription_table(), self.subscription_overflow_table())

    def location(self, *, create: bool = False) -> ShmLocation:
        # zeroed: created only once, by create() below, on a fresh mapping
        table = shmindex.ShmTable(
            self.mapping, self.slots, AOR_MAX, BINDINGS_MAX, create=create, zeroed=create
        )
        return ShmLocation(table)

    def nonce_counts(self) -> SharedNonceCounts:
        """The nonce counts every worker shares: hand it to ``DigestAuth(nonce_counts=...)``.

        Raises:
            RuntimeError: the state was created with auth off (no table).
        """
        if self.nonces is None:
            raise RuntimeError("no shared nonce table: the server was set up with auth off")
        table = shmindex.ShmTable(self.nonces, NONCE_SLOTS, NONCE_LEN, NONCE_VALUE_MAX, create=False)
        return SharedNonceCounts(table)


def save_presence(state: SharedState, cfg: Config) -> int:
    """Write both presence tables whole to the store (as ``save_all`` for the location)."""
    pres = ShmPresentities(state.presentity_table()).values()
    subs = state.subscriptions_store().values()
    presence_store.save(cfg.data_dir, pres, subs, time.monotonic(), time.time(), replace_all=True)
    return len(subs)


def save_all(state: SharedState, cfg: Config) -> int:
    """Write the whole table to the store (supervisor: after a worker died, and at stop),
    so what a killed worker had not written behind yet is not lost on disk."""
    table = state.location().table
    rows: dict[str, bytes] = {}
    for k in table.keys():
        v = table.get(k)
        if v is not None:
            rows[k.decode("utf-8", "surrogateescape")] = v
    return location_store.save_encoded(cfg.data_dir, rows, time.monotonic(), time.time(), replace_all=True)


MADV_POPULATE_WRITE = 23  # linux/mman.h (Linux 5.14); Python 3.11's mmap module lacks the name


def prefault(m: mmap.mmap) -> bool:
    """Make every page of a shared mapping resident now (one madvise; on kernels without
    MADV_POPULATE_WRITE a write per page), so that the first row written to a page does
    not stop a worker for a page fault under load. Zero stays zero: a table created
    zeroed is unchanged. False when the kernel could not populate it (ENOMEM and the
    like): nothing more is tried, the pages come as rows are written."""
    try:
        m.madvise(MADV_POPULATE_WRITE)
        return True
    except ValueError:
        pass
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: an older kernel without the advice
            return False
    page = mmap.PAGESIZE
    for off in range(0, len(m), page):
        m[off] = m[off]  # a write fault maps the page; the value is kept
    return True


def mem_available() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None where it cannot be read)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) << 10
    except (OSError, ValueError, IndexError):
        return None
    return None


def create(cfg: Config) -> SharedState:
    """Map the tables and restore the registrations kept in the data directory."""
    slots = cfg.location_capacity * 4 // 3 + 4  # the table holds entries in at most 75% of its slots
    size = shmindex.table_size(slots, AOR_MAX, BINDINGS_MAX)
    state = SharedState(shmindex.create_shared(size), slots)
    loc = state.location(create=True)
    if cfg.auth:
        nsize = shmindex.table_size(NONCE_SLOTS, NONCE_LEN, NONCE_VALUE_MAX)
        state.nonces = shmindex.create_shared(nsize)
        nonces = shmindex.ShmTable(
            state.nonces, NONCE_SLOTS, NONCE_LEN, NONCE_VALUE_MAX, create=True, zeroed=True
        )
        nonces.put_if_greater(SWEEP_KEY, 0)  # present from the start: claiming a sweep never needs room
        log.info("nonce-count table: %d nonces, %d MiB shared", NONCE_CAPACITY, nsize >> 20)
    state.presentity_geometry = (_slots(cfg.presentity_capacity), AOR_MAX, cfg.presentity_state_bytes)
    psize = shmindex.table_size(*state.presentity_geometry)
    state.presentities = shmindex.create_shared(psize)
    state.presentity_table(create=True)
    state.subscription_geometry = (_slots(cfg.subscription_capacity), SUB_KEY_MAX, cfg.subscription_row_bytes)
    ssize = shmindex.table_size(*state.subscription_geometry)
    state.subscriptions = shmindex.create_shared(ssize)
    state.subscription_table(create=True)
    if cfg.subscription_row_bytes < SUB_OVERFLOW_VALUE_MAX:
        state.sub_overflow_slots = _slots(cfg.subscription_capacity // SUB_OVERFLOW_SHARE + SUB_OVERFLOW_MIN)
        osize = shmindex.table_size(state.sub_overflow_slots, SUB_KEY_MAX, SUB_OVERFLOW_VALUE_MAX)
        state.sub_overflow = shmindex.create_shared(osize)
        state.subscription_overflow_table(create=True)
        ssize += osize
    subs = state.subscriptions_store()
    state.winfo_slots = _slots(cfg.subscription_capacity)  # a mark needs a subscription
    msize = shmindex.table_size(state.winfo_slots, MARK_KEY_MAX, MARK_VALUE_MAX)
    state.winfo_marks = shmindex.create_shared(msize)
    state.marks_table(create=True)
    if cfg.persist_presence:
        presence_store.init(cfg.data_dir)
        prows, srows = presence_store.load(cfg.data_dir, time.monotonic(), time.time(), cfg.workers)
        pres = ShmPresentities(state.presentity_table())
        for aor, value in prows.items():
            pres.load_row(aor, value)
        lost = sum(1 for key, value in srows.items() if not subs.load(key, value))
        if lost:
            log.warning("presence store: %d subscriptions did not fit the tables (raise"
                        " presence.subscription_row_bytes or subscription_capacity)", lost)  # fmt: skip
        log.info("presence store: %d presentities and %d subscriptions restored", len(prows), len(srows))
    log.info("presence tables: %d presentities (%d MiB), %d subscriptions (%d MiB), shared",
             cfg.presentity_capacity, psize >> 20, cfg.subscription_capacity, ssize >> 20)  # fmt: skip
    if cfg.im.offline:
        from simplefast.server.worker import open_offline

        state.offline_slots = _slots(cfg.location_capacity)
        state.offline_marks = shmindex.create_shared(shmindex.table_size(state.offline_slots, AOR_MAX, 8))
        marks = state.offline_table(create=True)
        store = open_offline(cfg)
        try:
            pending = store.aors(time.time())
        finally:
            store.close()
        for aor in pending[: cfg.location_capacity]:
            marks.put(aor.encode("utf-8", "surrogateescape"), b"1")
        if len(pending) > cfg.location_capacity:
            marks.put(OFFLINE_ALL, b"1")  # more than the table holds: every REGISTER asks SQLite
        log.info("offline store: %d users with stored MESSAGEs", len(pending))
    if cfg.prefault_tables:
        total, avail = state.size(), mem_available()
        if avail is not None and total > avail * 0.9:
            log.warning("shared tables: %d MiB, more than 90%% of the %d MiB of memory available: not"
                        " prefaulted (pages come as rows are written; lower the capacities or add memory)",
                        total >> 20, avail >> 20)  # fmt: skip
        else:
            t0 = time.monotonic()
            state.prefaulted = state.prefault()
            if state.prefaulted:
                log.info("shared tables: %d MiB resident (prefaulted in %.2f s)", total >> 20,
                         time.monotonic() - t0)  # fmt: skip
            else:
                log.warning("shared tables: the kernel could not make %d MiB resident: not prefaulted",
                            total >> 20)  # fmt: skip
    location_store.init(cfg.data_dir)
    n = 0
    for aor, bindings in location_store.load(cfg.data_dir, time.monotonic(), time.time()):
        loc.load(aor, bindings)
        n += 1
    log.info("location table: %d AORs restored, capacity %d, %d MiB shared", n, cfg.location_capacity,
             size >> 20)  # fmt: skip
    return state
