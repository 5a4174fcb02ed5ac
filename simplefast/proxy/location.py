"""The location service: address-of-record -> contact bindings (RFC 3261 section 10).

``MemoryLocation`` keeps bindings in this process. The shared-memory table
(ext/shmindex.pyx, issue #4 section 5) will implement the same small
interface so every worker sees every registration; the registrar only uses
``get``, ``put`` and ``count``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Binding:
    """One registered contact of an address-of-record."""

    contact: str  # the Contact URI as the UA wrote it (without < >)
    expires_at: float  # absolute time (the layer's clock)
    q: float | None  # q-value, None when not given
    call_id: str
    cseq: int
    path: tuple[str, ...] = ()  # Path header values, in order (RFC 3327)
    source: str = ""  # "transport:host:port" the REGISTER came from
    instance: str | None = None  # +sip.instance (RFC 5626), if given


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
