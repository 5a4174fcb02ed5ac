"""NOTIFY fan-out: rendering and client transactions, reference twin of ext/fanout.pyx.

Theory of operation
-------------------
A presence change makes one NOTIFY per watcher, and each is a non-INVITE
client transaction (RFC 3261 §17.1.2). Kept as one Python object each in the
generic transaction layer, with a response event per 200, they cost more
than the rest of the fan-out together (measured: 11-14 µs to start one,
10 µs to finish one). ``NotifyTxns`` keeps them in a compact table instead:

- ``send`` renders the NOTIFY from its parts (the subscription's header
  block made once, the CSeq, the Subscription-State value, the body shared by
  every watcher) and starts its transaction; the branch is the table's
  prefix and the transaction number in lower-case hex, so a response finds
  its transaction by arithmetic;
- ``response`` takes a response's top-Via branch and status: the first final
  response of a transaction returns its token (the caller's subscription)
  so the caller can act on 481 or 408; provisional responses and
  retransmitted finals return None;
- ``poll(now)`` returns the retransmissions due (Timer E: T1, doubling up to
  T2; every T2 once a provisional came) and the tokens of transactions that
  timed out (Timer F, 64*T1); Timer K (T4, unreliable transports) keeps a
  completed transaction to absorb retransmitted finals; a reliable one ends
  at its final response;
- ``absorb(batch, start, now, parse, validate)`` takes from a batch of
  datagrams, from ``start`` on and while they come, the responses 100-299
  whose top-Via branch has this table's prefix and names a transaction
  number already sent, each as ``response`` would (a 2xx asks nothing more
  of the caller), once ``parse`` gave a message that ``validate`` passes:
  the same test a general path applies, so a datagram it would drop is left
  to it, as is one whose parse or check raises (the general path meets the
  same error). It returns the index of the first datagram not taken, which
  the caller handles itself before asking again: the order of the batch is
  kept (a number not sent yet is left because the caller's next step may
  send it). A
  datagram without the prefix anywhere in it is not parsed;
- ``failed(branch)``: the transport could not send it (a lost connection):
  the transaction ends and its token comes back.

Order: ``poll`` returns what is due sorted by (deadline, transaction number),
each retransmission as ``(data, dest)``. Times must not go backwards between
calls (``ValueError``): the compiled twin keeps its timers in one FIFO per
duration, which relies on it.

Rendered bytes::

    NOTIFY <target> SIP/2.0\\r\\n
    Via: <via>;branch=<prefix><n hex>\\r\\n
    <head>                               (header lines, each ending CRLF)
    CSeq: <cseq> NOTIFY\\r\\n
    Subscription-State: <state>\\r\\n
    Content-Type: <ctype>\\r\\n            (only with a body)
    Content-Length: <len>\\r\\n
    \\r\\n
    <body>
"""

from __future__ import annotations

import heapq
import operator
from typing import Any as _Any

_TRYING, _PROCEEDING, _COMPLETED = 0, 1, 2
_E, _F, _K = 0, 1, 2  # timer kinds, in the order a tie is broken after (deadline, n)


class NotifyTxns:
    def __init__(self, branch_prefix: str, *, t1: float = 0.5, t2: float = 4.0, t4: float = 5.0) -> None:
        if not branch_prefix.startswith("z9hG4bK") or not branch_prefix.isascii():
            raise ValueError("branch_prefix must be ASCII and start with z9hG4bK")
        if not 0 < t1 <= t2 or t4 < 0:
            raise ValueError("timers must be 0 < t1 <= t2 and t4 >= 0")
        self._prefix = branch_prefix
        self._prefix_b = branch_prefix.encode("ascii")
        self.t1, self.t2, self.t4 = float(t1), float(t2), float(t4)
        self._n = 0
        # n -> [state, reliable, interval, e_deadline, data, dest, token]
        self._txns: dict[int, list[_Any]] = {}
        self._heap: list[tuple[float, int, int]] = []  # (deadline, n, kind); stale ones skipped
        self._last = float("-inf")
        self.retransmissions = 0
        self.timeouts = 0
        self._outstanding = 0

    @property
    def branch_prefix(self) -> str:
        return self._prefix

    def __len__(self) -> int:
        return len(self._txns)

    @property
    def outstanding(self) -> int:
        """Transactions still waiting for their final response (trying or proceeding)."""
        return self._outstanding

    def _clock(self, now: float) -> None:
        if now < self._last:
            raise ValueError(f"time went backwards: {now} after {self._last}")
        self._last = now

    def send(
        self, target: bytes, via: bytes, head: bytes, cseq: int, state: bytes, ctype: bytes, body: bytes,
        dest: _Any, reliable: bool, token: _Any, now: float,
    ) -> bytes:  # fmt: skip
        """Render one NOTIFY and start its transaction; the bytes to send now."""
        cseq = operator.index(cseq)
        self._clock(now)
        if cseq < 0 or cseq > 0xFFFFFFFF:
            raise ValueError("cseq must be 0..2**32-1")
        self._n += 1
        n = self._n
        parts = [b"NOTIFY ", target, b" SIP/2.0\r\nVia: ", via, b";branch=", self._prefix_b,
                 b"%x" % n, b"\r\n", head, b"CSeq: %d NOTIFY\r\n" % cseq, b"Subscription-State: ", state,
                 b"\r\n"]  # fmt: skip
        if body:
            parts += [b"Content-Type: ", ctype, b"\r\n"]
        parts += [b"Content-Length: %d\r\n\r\n" % len(body), body]
        data = b"".join(parts)
        reliable = bool(reliable)
        e_deadline = now + self.t1
        self._txns[n] = [_TRYING, reliable, self.t1, e_deadline, data, dest, token]
        self._outstanding += 1
        if not reliable:
            heapq.heappush(self._heap, (e_deadline, n, _E))
        heapq.heappush(self._heap, (now + 64 * self.t1, n, _F))
        return data

    def _number(self, branch: str) -> int | None:
        if not branch.startswith(self._prefix):
            return None
        digits = branch[len(self._prefix) :]
        if not digits or len(digits) > 16 or any(c not in "0123456789abcdef" for c in digits):
            return None
        if digits[0] == "0":
            return None  # never minted (no leading zeros)
        return int(digits, 16)

    def owns(self, branch: str) -> bool:
        """Whether ``branch`` was made by this table (whatever the state of its transaction)."""
        return branch.startswith(self._prefix)

    def response(self, branch: str, status: int, now: float) -> _Any:
        """A response to one of ours: the token at its first final response, else None."""
        self._clock(now)
        n = self._number(branch)
        t = self._txns.get(n) if n is not None else None
        if n is None or t is None or t[0] == _COMPLETED or not 100 <= status <= 699:
            return None
        if status < 200:
            if t[0] == _TRYING:
                t[0] = _PROCEEDING
                if not t[1]:
                    t[2] = self.t2  # Timer E now every T2 (17.1.2.2); armed at its next firing
            return None
        token = t[6]
        self._outstanding -= 1
        if t[1] or self.t4 == 0:
            del self._txns[n]  # reliable: Timer K is zero
        else:
            t[0] = _COMPLETED
            t[4] = b""
            entry: tuple[float, int, int] = (now + self.t4, n, _K)
            heapq.heappush(self._heap, entry)
        return token

    def absorb(
        self, batch: list[tuple[_Any, _Any]], start: int, now: float, parse: _Any, validate: _Any
    ) -> int:
        """Take the responses 100-299 to this table's NOTIFYs from ``batch[start:]`` while
        they come (a fan-out's 200s, without a Python call each); the index of the first
        datagram not taken."""
        if type(batch) is not list:
            raise TypeError(f"batch must be a list, not {type(batch).__name__}")
        i = operator.index(start)
        if not -(2**63) <= i < 2**63:
            raise OverflowError("start out of range")
        if i < 0:
            raise ValueError("start must not be negative")
        self._clock(now)
        while i < len(batch) and self._takes(batch[i][0], now, parse, validate):
            i += 1
        return i

    def _takes(self, data: _Any, now: float, parse: _Any, validate: _Any) -> bool:
        if type(data) is not bytes or len(data) < 12 or not data.startswith(b"SIP/2.0 "):
            return False
        if data[8] not in b"12":  # 1xx, 2xx
            return False
        if self._prefix_b not in data:  # cannot be ours: not parsed here
            return False
        try:  # whatever fails here fails again on the general path, which deals with it
            msg = parse(data)
            if msg.is_request or validate(msg) is not None:
                return False
            branch = msg.via_branch
            status = operator.index(msg.status)  # an int, as the compiled twin's C int takes it
        except Exception:
            return False
        if type(branch) is not str or not branch.startswith(self._prefix) or not 100 <= status <= 299:
            return False
        n = self._number(branch)
        if n is not None and n > self._n:  # not sent yet: a pump between runs may send it
            return False
        self.response(branch, status, now)
        return True

    def failed(self, branch: str) -> _Any:
        """The transport could not deliver it: the transaction ends; its token (or None)."""
        n = self._number(branch)
        t = self._txns.get(n) if n is not None else None
        if n is None or t is None or t[0] == _COMPLETED:
            return None
        del self._txns[n]
        self._outstanding -= 1
        return t[6]

    def next_deadline(self) -> float | None:
        """The earliest timer held (it may be stale: an early wake-up, never a late one)."""
        return self._heap[0][0] if self._heap else None

    def poll(self, now: float) -> tuple[list[tuple[bytes, _Any]], list[_Any]]:
        """Retransmissions due ``(data, dest)`` and tokens of timed-out transactions."""
        self._clock(now)
        again: list[tuple[bytes, _Any]] = []
        timed_out: list[_Any] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, n, kind = heapq.heappop(heap)
            t = self._txns.get(n)
            if t is None:
                continue
            if kind == _E:
                if t[0] == _COMPLETED or t[3] != deadline:
                    continue
                again.append((t[4], t[5]))
                self.retransmissions += 1
                if t[0] == _TRYING:
                    t[2] = min(t[2] * 2, self.t2)
                t[3] = deadline + t[2]
                heapq.heappush(heap, (t[3], n, _E))
            elif kind == _F:
                if t[0] == _COMPLETED:
                    continue
                del self._txns[n]
                timed_out.append(t[6])
                self.timeouts += 1
                self._outstanding -= 1
            else:  # _K
                if t[0] == _COMPLETED:
                    del self._txns[n]
        return again, timed_out
