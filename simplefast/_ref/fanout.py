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
import math
import operator
import struct
from array import array as _array
from typing import Any as _Any

from simplefast._ref import subrow as _subrow

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


# ---------------------------------------------------------------- fan-out over rows

_KEY = 32  # a worker's record of a subscription: its key, NUL-padded (presence.subscribe.Held)
_ROW = struct.Struct("<BHBIIqdddIB")  # the header of a layout 2 row (simplefast/_ref/subrow.py)
_NO_REC = 0xFFFFFFFF
_ACTIVE = 0
_STATE_B = (b"active", b"pending")
_EXPIRY_SANE = 1e15  # an expiry this far from now is left to the object path (it prints any number)
_UDP_FORMS = (0, 1, 2)  # (host, port), (host, port, listener), (host, port, "c")


class RowFan:
    """A change fanned out to a resource's watchers from their rows, without a
    ``Subscription`` object each (docs/presence.md, "Fan-out over rows").

    The notifier (``simplefast.presence.subscribe``) keeps, per worker, a
    record per subscription (``Held``: its key in ``keys``, 32 bytes each,
    NUL-padded; longer keys in ``long``) and the subscription itself in its
    row of the shared table (layout 2, ``simplefast/_ref/subrow.py``).
    ``changed`` walks a resource's records (``recs``, record numbers from
    ``start``) and does for each what the notifier's object path does for an
    active watcher (``Notifier._changed``, ``_send``, ``_emit``), reading and
    writing the row only; it returns ``(i, sends)``: the index of the first
    record it leaves to the caller's object path and how many NOTIFYs it sent
    or queued. It leaves a record when the worker holds an object that may be
    newer than the row (its key in ``pinned`` or ``queued``), the row is of
    layout 1, the change falls inside the pacing interval (``last_sent +
    interval > now``: the object path holds it back and sets the timer), the
    row's policy has no code (a name of its own), or the row has a route set
    (where the NOTIFY goes then is the object path's rule). It skips, as the
    object path does, a record whose row is gone or names another owner or
    record, and a subscription that is not active. A key kept decoded in
    ``cache`` is forgotten there (``forget(key)``): the row equals it.

    For a watcher it takes: the body is ``bodies[policy code]``, made once per
    change by ``body_of(policy name)`` (a ``Body``: version, content type,
    data); when the notifier's window is full (``window`` and the queue not
    empty or ``window`` transactions outstanding) the NOTIFY waits in
    ``queue`` as ``(key, None, body, False)`` and the fields the object path
    sets at that moment (last_sent, held, version) are kept in ``rowq[key] =
    [entries queued, last_sent, version, policy code]`` (queuing writes
    nothing to the row, as on the object path; ``Held.get`` applies them to an
    object it decodes, and ``Held.put`` of an object clears them (None), its
    row then holds them). While a key's
    overlay has its fields and the NOTIFY waits too, its row is not read: the
    overlay answers pacing and the policy (nothing was written to the row
    since, or the fields would be gone). Else it goes now: the CSeq, the
    version, last_sent and held are written into the row's header, the
    NOTIFY is rendered from the row (``subrow.notify_parts``; the flow and
    our Via and Contact from the row's peer, ``wire(dest) -> (via, contact)``
    asked once per transport and address family) with ``Subscription-State:
    active;expires=<left>``, its transaction started in ``txns`` (token: the
    key), handed to ``send(data, dest)`` and the row written back with
    ``put(key, row)``; a row that no longer fits (``put`` False) goes to
    ``lost(key, row)``.

    ``pump(queue, window, now)`` sends the row entries at the head of the
    queue while the window has room, each from its row as it is then (with
    ``rowq``'s fields, and its count down: the entry goes at 0), and stops at an
    entry of an object or at a row entry whose key has an object
    (``pinned``, ``queued``, ``cache``), which the caller sends; an entry
    whose subscription is no longer held here is dropped. How many went.
    """

    def __init__(
        self, txns: NotifyTxns, *, index: int, keys: bytearray, long: dict[int, str],
        pinned: dict[str, _Any], queued: dict[str, _Any], cache: dict[str, _Any], rowq: dict[str, list[_Any]],
        get: _Any, put: _Any, forget: _Any, lost: _Any, send: _Any, wire: _Any, ctypes: dict[str, bytes],
    ) -> None:  # fmt: skip
        self.txns = txns
        self.index = index
        self._keys, self._long = keys, long
        self._pinned, self._queued, self._cache, self._rowq = pinned, queued, cache, rowq
        self._get, self._put, self._forget, self._lost, self._send = get, put, forget, lost, send
        self._wire = wire
        self._wires: dict[tuple[int, bool], tuple[bytes, bytes]] = {}
        self._ctypes = ctypes
        self.sent = 0  # NOTIFYs sent from rows
        self.queued = 0  # NOTIFYs of rows that waited for room in the window

    def _key(self, r: int) -> str | None:
        """The key of record ``r`` (None past the records)."""
        if (r + 1) * _KEY > len(self._keys):
            return None
        return self._keys[r * _KEY : (r + 1) * _KEY].split(b"\0", 1)[0].decode("ascii")

    def _holds(self, rec: int, key: str) -> bool:
        if rec == _NO_REC or (rec + 1) * _KEY > len(self._keys) or len(key) > _KEY or not key.isascii():
            return False
        kb = key.encode("ascii")
        return self._keys[rec * _KEY : (rec + 1) * _KEY] == kb + b"\0" * (_KEY - len(kb))

    @staticmethod
    def _sane(expires_at: float, now: float) -> bool:
        """An expiry the row path prints as the object path would."""
        return math.isfinite(expires_at) and -_EXPIRY_SANE < expires_at - now < _EXPIRY_SANE

    def _fields(self, row: bytes, now: float) -> dict[str, _Any] | None:
        """The fields of a row the fan-out takes: one that decodes, with a sane expiry."""
        try:
            f = _subrow.decode(row)
        except ValueError:
            return None
        return f if self._sane(f["expires_at"], now) else None

    def changed(
        self, recs: _Any, start: int, now: float, interval: float, window: int, queue: _Any,
        bodies: list[_Any], body_of: _Any,
    ) -> tuple[int, int]:  # fmt: skip
        """Fan a change out to the records ``recs[start:]``: ``(i, sends)``, see above."""
        if not isinstance(recs, _array) or recs.typecode != "I":
            raise TypeError("recs must be an array of typecode 'I'")
        i = operator.index(start)
        if i < 0:
            raise ValueError("start must not be negative")
        if len(bodies) < len(_subrow.POLICIES):
            raise ValueError("bodies must have a place per policy code")
        sends = 0
        while i < len(recs):
            r = recs[i]
            if self._long and r in self._long:
                return i, sends
            key = self._key(r)
            if key is None:
                return i, sends  # not a record (the object path looks for itself)
            if key in self._pinned or key in self._queued:
                return i, sends
            if key in self._cache:
                self._forget(key)
            ov = self._rowq.get(key)
            later = bool(window and (len(queue) or self.txns.outstanding >= window))
            if later and ov is not None and ov[1] is not None:
                # a NOTIFY of this row waits already and nothing was written to the row since
                # (an object's put clears the overlay): the overlay has what is needed
                last_sent, code = ov[1], ov[3]
                if last_sent + interval > now:
                    return i, sends
            else:
                row = self._get(key)
                if type(row) is bytes and row[:1] == b"\x01":
                    return i, sends  # layout 1: the object path reads it
                if type(row) is not bytes or len(row) < _ROW.size or row[0] != 2:
                    i += 1
                    continue
                try:
                    f = _subrow.decode(row)
                except ValueError:
                    return i, sends  # a row that does not decode: the object path's rule
                _, owner, state, _, _, _, _, _, last_sent, rec, _ = _ROW.unpack_from(row)
                if owner != self.index or rec != r:
                    i += 1
                    continue  # not this record's (the object path finds no subscription either)
                if ov is not None and ov[1] is not None:
                    last_sent = ov[1]
                if state != _ACTIVE:
                    i += 1
                    continue
                code = row[_ROW.size + 3]  # the policy's code (LITERAL: a name of its own)
                if (
                    last_sent + interval > now
                    or code == _subrow.LITERAL
                    or f["routes"]
                    or not self._sane(f["expires_at"], now)
                ):
                    return i, sends
            body = bodies[code]
            if body is None:
                body = bodies[code] = body_of(_subrow.POLICIES[code])
            sends += 1
            if later:
                queue.append((key, None, body, False))
                if ov is None:
                    ov = self._rowq[key] = [0, None, None, None]
                ov[0] += 1
                ov[1], ov[2], ov[3] = now, body.version, code
                self.queued += 1
            else:
                self._emit(key, row, now, body, now, body.version, 0)
            i += 1
        return i, sends

    def pump(self, queue: _Any, window: int, now: float) -> int:
        """Send the row entries at the head of ``queue`` while the window has room."""
        sent = 0
        while queue and (not window or self.txns.outstanding < window):
            key = queue[0][0]
            if type(key) is not str or key in self._pinned or key in self._queued or key in self._cache:
                break
            row = self._get(key)
            if row is not None and (type(row) is not bytes or self._fields(row, now) is None):
                break  # the caller's object path reads it
            body = queue.popleft()[2]
            ov = self._rowq.get(key)
            last_sent: float | None = None
            version = 0
            if ov is not None:
                last_sent, version = ov[1], ov[2]
                ov[0] -= 1  # its fields stay while more wait: the row will hold them too
                if ov[0] <= 0:
                    del self._rowq[key]
            if row is None:
                continue
            _, owner, state, _, _, row_version, _, _, row_sent, rec, held = _ROW.unpack_from(row)
            if owner != self.index or state > 1 or not self._holds(rec, key):
                continue  # ended meanwhile: not held here any more
            if last_sent is None:  # the row has them (an object was written since): as they are
                last_sent, version = row_sent, row_version
            else:
                held = 0
            self._emit(key, row, now, body, last_sent, version, held)
            sent += 1
        return sent

    def _emit(
        self, key: str, row: bytes, now: float, body: _Any, last_sent: float, version: int, held: int
    ) -> None:
        layout, owner, state, cseq, rcseq, _, expires_at, subscribed_at, _, rec, _ = _ROW.unpack_from(row)
        cseq += 1
        if cseq > 0xFFFFFFFF:
            raise ValueError("cseq must be 0..2**32-1")
        self.txns._clock(now)
        if not -(1 << 63) <= version < 1 << 63:
            raise OverflowError("a version out of the row's range")
        data = body.data
        if type(data) is not bytes:
            raise TypeError("a body's data must be bytes")
        new = _ROW.pack(layout, owner, state, cseq, rcseq, version, expires_at, subscribed_at, last_sent, rec,
                        held) + row[_ROW.size :]  # fmt: skip
        f = _subrow.decode(new)
        peer = f["peer"]
        reliable = len(peer) == 4
        dest = peer if reliable else (peer[0], peer[1], "c")
        wkey = (len(peer) == 4 and peer[2] == "tls") + 2 * reliable, ":" in peer[0]
        w = self._wires.get(wkey)
        if w is None:
            w = tuple(self._wire(dest))
            if len(w) != 2 or type(w[0]) is not bytes or type(w[1]) is not bytes:
                raise TypeError("wire must give (via, contact) as bytes")
            self._wires[wkey] = w
        via, contact = w
        target, head = _subrow.notify_parts(new, key, contact)
        left = int(expires_at - now + 0.5)
        st = b"%s;expires=%d" % (_STATE_B[state], left if left > 0 else 0)
        ct = body.content_type
        ctype = self._ctypes.get(ct)
        if ctype is None:
            ctype = self._ctypes[ct] = ct.encode("ascii")
        data = self.txns.send(target, via, head, cseq, st, ctype, data, dest, reliable, key, now)
        self._send(data, dest)
        self.sent += 1
        if not self._put(key, new):
            self._lost(key, new)
