"""Shared-memory state made by the supervisor before it forks the workers."""

from __future__ import annotations

import mmap
import time
from dataclasses import dataclass

from simplefast._impl import shmindex
from simplefast.logs import get_logger
from simplefast.proxy.location import ShmLocation
from simplefast.server.config import Config
from simplefast.store import location as location_store

log = get_logger(__name__)

# Geometry of the location table: an AOR (sip:user@domain) up to 128 bytes, its
# encoded bindings up to 768 bytes (a handful of contacts with Path).
AOR_MAX = 128
BINDINGS_MAX = 768


@dataclass
class SharedState:
    mapping: mmap.mmap
    slots: int

    def location(self, *, create: bool = False) -> ShmLocation:
        table = shmindex.ShmTable(self.mapping, self.slots, AOR_MAX, BINDINGS_MAX, create=create)
        return ShmLocation(table)


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


def create(cfg: Config) -> SharedState:
    """Map the tables and restore the registrations kept in the data directory."""
    slots = cfg.location_capacity * 4 // 3 + 4  # the table holds entries in at most 75% of its slots
    size = shmindex.table_size(slots, AOR_MAX, BINDINGS_MAX)
    state = SharedState(shmindex.create_shared(size), slots)
    loc = state.location(create=True)
    location_store.init(cfg.data_dir)
    n = 0
    for aor, bindings in location_store.load(cfg.data_dir, time.monotonic(), time.time()):
        loc.load(aor, bindings)
        n += 1
    log.info("location table: %d AORs restored, capacity %d, %d MiB shared", n, cfg.location_capacity,
             size >> 20)  # fmt: skip
    return state
