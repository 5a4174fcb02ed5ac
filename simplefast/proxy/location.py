"""The location service: address-of-record -> contact bindings (RFC 3261 section 10).

``MemoryLocation`` keeps bindings in this process (tests, one worker).
``ShmLocation`` keeps them in a shared-memory table (simplefast._impl.shmindex)
that the supervisor maps before forking, so every worker sees every
registration. The registrar only uses ``get``, ``put`` and ``count``; the
server core also asks for the AORs changed since the last write-behind
(``take_dirty``) to persist them (simplefast/store/location.py).

Times are the event loop's clock (CLOCK_MONOTONIC), the same in every worker.
"""

from __future__ import annotations

import marshal
from typing import Any, NamedTuple, Protocol

from simplefast.errors import SimplefastError


class Binding(NamedTuple):
    """One registered contact of an address-of-record (a NamedTuple: one is built per
    binding read from the shared table, and a frozen dataclass costs several times more)."""

    contact: str  # the Contact URI as the UA wrote it (without < >)
    expires_at: float  # absolute time (the layer's clock)
    q: float | None  # q-value, None when not given
    call_id: str
    cseq: int
    path: tuple[str, ...] = ()  # Path header values, in order (RFC 3327)
    source: str = ""  # "transport:host:port" the REGISTER came from
    instance: str | None = None  # +sip.instance (RFC 5626), if given

    def _replace_expiry(self, expires_at: float) -> Binding:
        return self._replace(expires_at=expires_at)


class Location(Protocol):
    def get(self, aor: str, now: float) -> list[Binding]:
        """Unexpired bindings of ``aor`` (the order they were added in)."""
        ...

    def put(self, aor: str, bindings: list[Binding]) -> None:
        """Replace every binding of ``aor`` (an empty list removes the AOR)."""
        ...

    def count(self) -> int:
        """Number of AORs with at least one binding."""
        ...

    def take_dirty(self) -> dict[str, bytes]:
        """AOR -> encoded bindings changed since the last call (for the write-behind store)."""
        ...


class MemoryLocation:
    """Location service held in one process (tests, single worker)."""

    def __init__(self) -> None:
        self._aors: dict[str, list[Binding]] = {}

    def get(self, aor: str, now: float) -> list[Binding]:
        bindings = self._aors.get(aor)
        if not bindings:
            return []
        live = [b for b in bindings if b.expires_at > now]
        if len(live) != len(bindings):
            self.put(aor, live)
        return live

    def put(self, aor: str, bindings: list[Binding]) -> None:
        if bindings:
            self._aors[aor] = list(bindings)
        else:
            self._aors.pop(aor, None)

    def count(self) -> int:
        return len(self._aors)

    def take_dirty(self) -> dict[str, bytes]:
        return {}


class LocationFullError(SimplefastError):
    """The AOR's bindings do not fit the table (too many or too long), or the table is full."""


def encode_bindings(bindings: list[Binding]) -> bytes:
    """Compact bytes of a binding list (marshal: the table lives in memory only;
    the store on disk has its own columns)."""
    return marshal.dumps([tuple(b) for b in bindings])  # marshal takes plain tuples only


def decode_bindings(data: bytes) -> list[Binding]:
    return list(map(Binding._make, marshal.loads(data)))


class ShmLocation:
    """Location service in a shared-memory table: AOR (UTF-8) -> encoded bindings."""

    def __init__(self, table: Any) -> None:
        self.table = table
        # AOR -> encoded bindings as last written here (b"" for removed): the
        # write-behind takes these as they are, without reading the table again
        self._dirty: dict[str, bytes] = {}
        self.track_dirty = True  # False: registrations are not persisted (nothing to write behind)

    def get(self, aor: str, now: float) -> list[Binding]:
        key = aor.encode("utf-8", "surrogateescape")
        if len(key) > self.table.key_max:
            return []  # never stored (put refuses it): a proxy lookup gets 480, a REGISTER 503
        raw = self.table.get(key)
        if raw is None:
            return []
        bindings = decode_bindings(raw)
        live = [b for b in bindings if b.expires_at > now]
        if len(live) != len(bindings):
            self.put(aor, live)
        return live

    def put(self, aor: str, bindings: list[Binding]) -> None:
        key = aor.encode("utf-8", "surrogateescape")
        if len(key) > self.table.key_max:
            raise LocationFullError(f"AOR {aor[:64]!r} is longer than {self.table.key_max} bytes")
        value = b""
        if bindings:
            value = encode_bindings(bindings)
            if len(value) > self.table.value_max:
                raise LocationFullError(
                    f"bindings of {aor[:64]!r} take {len(value)} bytes, more than {self.table.value_max}"
                )
            try:
                self.table.put(key, value)
            except SimplefastError as exc:  # TableFullError
                raise LocationFullError(str(exc)) from exc
        else:
            self.table.delete(key)
        if self.track_dirty:
            self._dirty[aor] = value

    def count(self) -> int:
        return len(self.table)

    def take_dirty(self) -> dict[str, bytes]:
        """AOR -> encoded bindings (b"": removed) changed through this process since the last call."""
        out = dict(self._dirty)
        self._dirty.clear()  # the same dict: the registrar's fast path writes into it too
        return out

    def dirty_map(self) -> dict[str, bytes] | None:
        """The write-behind map itself (for the registrar's fast path), None when not tracked."""
        return self._dirty if self.track_dirty else None

    def load(self, aor: str, bindings: list[Binding]) -> None:
        """Restore an AOR at start (not marked dirty)."""
        self.put(aor, bindings)
        self._dirty.pop(aor, None)
