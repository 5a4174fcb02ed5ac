"""Deadlines of one worker's engines, kept without a Python-level scan.

Theory of operation. Almost every SIP timer has one of a few fixed
durations (RFC 3261 Table 4: T1 * 2**k capped at T2 for retransmissions,
64*T1 for B/F/H/J/L/M, T4 for I/K, 32 s for D). Entries added with the same
duration arrive in deadline order, so each duration gets a FIFO queue and
expiry pops from its left end: O(1) per timer, whatever the number of live
transactions. Durations beyond the first ``max_queues`` distinct ones (for
example subscription expiries of any length) go to a binary heap.

Cancellation is lazy: an entry carries a token; the owner records the token
of its live timer per channel (``owner.tokens[channel]``) and cancels by
clearing it. A popped entry whose token no longer matches is discarded.
Stale entries live at most until their deadline, which bounds the memory.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Protocol


class TimerOwner(Protocol):
    tokens: list[int]


# (deadline, token, owner, channel)
_Entry = tuple[float, int, TimerOwner, int]


class TimerQueue:
    """FIFO queues per duration plus a heap; see the module docstring."""

    __slots__ = ("_queues", "_heap", "_next_token", "_max_queues")

    def __init__(self, max_queues: int = 32) -> None:
        self._queues: dict[float, deque[_Entry]] = {}
        self._heap: list[_Entry] = []
        self._next_token = 1
        self._max_queues = max_queues

    def add(self, owner: TimerOwner, channel: int, delay: float, now: float) -> None:
        """(Re)arm ``owner``'s timer on ``channel`` to fire at ``now + delay``."""
        token = self._next_token
        self._next_token = token + 1
        owner.tokens[channel] = token
        entry = (now + delay, token, owner, channel)
        q = self._queues.get(delay)
        if q is None and len(self._queues) < self._max_queues:
            q = self._queues[delay] = deque()
        if q is not None:
            q.append(entry)
        else:
            heapq.heappush(self._heap, entry)

    @staticmethod
    def cancel(owner: TimerOwner, channel: int) -> None:
        owner.tokens[channel] = 0

    def next_deadline(self) -> float | None:
        """Earliest deadline held (it may belong to a cancelled entry: an early wake-up, never a late one)."""
        best: float | None = self._heap[0][0] if self._heap else None
        for q in self._queues.values():
            if q and (best is None or q[0][0] < best):
                best = q[0][0]
        return best

    def pop_due(self, now: float) -> list[tuple[TimerOwner, int]]:
        """Every live (owner, channel) whose deadline is <= now, in deadline order
        within each queue. Each returned timer is disarmed before it is returned."""
        due: list[tuple[float, int, TimerOwner, int]] = []
        sources = 0
        for q in self._queues.values():
            if q and q[0][0] <= now:
                sources += 1
                while q and q[0][0] <= now:
                    due.append(q.popleft())
        heap = self._heap
        if heap and heap[0][0] <= now:
            sources += 1
            while heap and heap[0][0] <= now:
                due.append(heapq.heappop(heap))
        if sources > 1:  # one FIFO queue (or the heap) alone is in order already
            due.sort()  # by (deadline, token): tokens are unique, owners are never compared
        out: list[tuple[TimerOwner, int]] = []
        for _, token, owner, channel in due:
            if owner.tokens[channel] == token:
                owner.tokens[channel] = 0
                out.append((owner, channel))
        return out

    def __len__(self) -> int:
        """Entries held, cancelled ones included until their deadline passes."""
        return len(self._heap) + sum(len(q) for q in self._queues.values())
