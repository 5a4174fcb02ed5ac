"""The proxy's compiled-path MESSAGE relay, reference twin of ext/fastrelay.pyx.

Theory of operation
-------------------
Page-mode IM through the proxy is, nearly always, one MESSAGE over UDP to a
user with one registered contact, and its 200 back. Through the general
path (a server transaction, a proxy context with its branch, a client
transaction, each with Python timers, and the event dispatch between them)
that costs several times the codec's work. ``FastRelay`` keeps both
transactions of such a request in one record and does the proxy's part in a
few codec calls; every request it does not take comes back parsed and
untouched, and the general path (``simplefast.proxy.proxy``, with
``simplefast.sip.transaction``, which are the specification of every rule
below) handles it.

Taken (``request``; every condition, else declined):

- the datagram starts ``MESSAGE`` and parses; the peer is a UDP peer (a 2- or
  3-tuple);
- its top Via branch starts with the magic cookie (section 17.2.3 matching);
  a request whose server key the general layer holds (``general``, the
  transaction layer's server table) is declined: it is a retransmission of a
  request the general path took;
- new requests are accepted (``accept``: the core passes False while it
  drains or sheds load; a retransmission of a request held here is still
  answered);
- ``validate_request`` passes; no Route header; no Proxy-Require tag outside
  ``supported`` (the general path answers 420); Max-Forwards absent or above
  0; none of its Vias names us (``me.is_me``: the general path does loop
  detection);
- the Request-URI is ``sip:user@host`` with a host of ``config.domains``, a
  user without ``%`` escapes, an AOR (``sip:user@host``, host lower-cased)
  that fits the table's key, and is not the URI-list service (``service``,
  ``(user, host)`` as simplefast/im/agent.py compares them);
- the body is within ``max_body`` (None: no limit);
- the AOR's row holds exactly one binding, live, without Path, registered
  over UDP (its flow does not start ``tcp:``/``tls:``), whose Contact is a
  ``sip:`` URI with a numeric host, no ``maddr`` and no transport other
  than ``udp``;
- the forwarded copy is within 1300 octets (larger ones go over TCP,
  section 18.1.1: the general path does that).

A request taken is forwarded (``forward_request``: Request-URI the contact,
our Via ``me.via("udp", v6, branch)``, no Record-Route, Max-Forwards less
one or 70, the previous hop's Via stamped with received/rport) to
``(host, port, "c")`` (the worker's client socket) with the branch
``<prefix><n hex>.<loop hash>`` (``prefix``: the layer's branch prefix and
``.r``; the loop hash is the general path's, so a copy that comes back
through another proxy is still caught there).

The record then runs both transactions as the transaction layer would for
UDP (section 17.1.2 and 17.2.2) with the proxy's rules for one branch
(section 16.7):

- a retransmitted request: the last response sent up again (a provisional
  or the final), or absorbed when there is none;
- responses are matched by their top Via branch and the CSeq method; a 100
  stays here, a 101-199 goes up (less our Via, ``strip_top_via``) while no
  final did; the first final goes up and ends the client side (Timer K, T4,
  absorbs its retransmissions); a response that matches nothing here goes to
  the general path (a response for no transaction is forwarded statelessly);
- Timer E resends the forwarded copy at T1, doubling up to T2 (every T2 once
  a provisional came); Timer F (64*T1) without a final: the client side ends
  and the 408 the general path would write goes up (``build_response`` of
  the request as it arrived, with a To tag of ours); Timer J (64*T1) keeps
  the final response for retransmissions, then the record is gone.

``out`` collects what to send, ``(bytes, peer)``, in order; ``take()``
empties it. Timers: ``next_deadline()`` (a wake-up may be early, never
late) and ``expire(now)``, with a nondecreasing ``now``: due Timers E and F
in deadline order (on a tie: F, then E of the smaller interval), as the
transaction layer runs them, so a late wake-up past Timer F sends no last
copy; then K and J.

The one place where the bytes may differ from the general path's beyond the
branch: the 1300-octet rule is applied to the copy the relay sends. Its
branch (``.r<n>.``, counting the relay's requests) is not the general path's
(``.<m>.``, counting every branch of the layer), so a request within a few
octets of the limit may go over UDP here and over TCP there; each path's
copy follows section 18.1.1.
"""

from __future__ import annotations

import hashlib
import marshal
from collections import deque
from typing import Any as _Any

from simplefast._ref import sipmsg as _codec
from simplefast.errors import LocalProtocolError, SipParseError

_MAGIC_COOKIE = "z9hG4bK"
_UDP_MAX_REQUEST = 1300  # simplefast/proxy/proxy.py, RFC 3261 section 18.1.1

# record states (client side; the server side is "srv_final")
_TRYING = 0
_PROCEEDING = 1
_COMPLETED = 2
_TERMINATED = 3


def loop_hash(msg: _Any) -> str:
    """Section 16.6 step 8: what makes a request the same request when it comes back. The
    top Via is left out (the RFC lists it): through another proxy a looping request comes
    back under that proxy's Via. The general path's ``_loop_hash`` too."""
    parts = (msg.uri, msg.to_tag or "", msg.from_tag or "", msg.call_id or "", str(msg.cseq_num),
             msg.get("Proxy-Require") or "", msg.get("Proxy-Authorization") or "")  # fmt: skip
    return hashlib.blake2s("\x00".join(parts).encode("utf-8", "surrogateescape"), digest_size=6).hexdigest()


class _Rec:
    __slots__ = ("skey", "branch", "peer", "dest", "fwd", "orig", "state", "last", "srv_final",
                 "interval", "e_due", "f_due", "k_due", "j_due")  # fmt: skip

    def __init__(self, skey: str, branch: str, peer: tuple[_Any, ...], dest: tuple[_Any, ...], fwd: bytes,
                 orig: bytes, t1: float) -> None:  # fmt: skip
        self.skey = skey
        self.branch = branch
        self.peer = peer  # upstream: where responses go
        self.dest: tuple[_Any, ...] | None = dest  # downstream: where the copy went
        self.fwd: bytes | None = fwd  # the forwarded copy (Timer E)
        self.orig: bytes | None = orig  # the request as it arrived (the 408 of Timer F)
        self.state = _TRYING
        self.last: bytes | None = None  # the last response sent up
        self.srv_final = False
        self.interval = t1
        self.e_due = 0.0
        self.f_due = 0.0
        self.k_due = 0.0
        self.j_due = 0.0


class FastRelay:
    def __init__(self, config: _Any, table: _Any, me: _Any, *, prefix: str, supported: tuple[str, ...],
                 general: dict[_Any, _Any], tag_prefix: str, t1: float = 0.5, t2: float = 4.0,
                 t4: float = 5.0) -> None:  # fmt: skip
        if not prefix.startswith(_MAGIC_COOKIE):
            raise ValueError(f"prefix must start with {_MAGIC_COOKIE}")
        if not tag_prefix.isascii() or not tag_prefix.isalnum():
            raise ValueError("tag_prefix must be ASCII letters and digits")
        if not (0.0 < t1 <= t2) or t4 <= 0.0:
            raise ValueError("timers must be positive with t1 <= t2")
        self.config = config
        self.table = table
        self.me = me
        self.prefix = prefix
        self.supported = tuple(supported)
        self.general = general
        self.tag_prefix = tag_prefix
        self.t1, self.t2, self.t4 = float(t1), float(t2), float(t4)
        self.max_body: int | None = None
        self.service: tuple[str, str] | None = None
        self.out: list[tuple[bytes, _Any]] = []
        self.relayed = 0  # requests taken and forwarded
        self.declined = 0  # MESSAGEs handed back to the general path
        self.absorbed = 0  # retransmissions answered or absorbed (requests and responses)
        self.timeouts = 0  # Timer F: 408 sent up
        self.open = 0  # records whose client side waits for a final response
        self._via4 = me.via("udp", False, "")
        self._via6 = me.via("udp", True, "")
        self._seq = 0
        self._tags = 0
        self._by_skey: dict[str, _Rec] = {}
        self._by_branch: dict[str, _Rec] = {}
        self._dests: dict[str, tuple[_Any, ...] | None] = {}
        self._e: dict[float, deque[_Rec]] = {}
        self._f: deque[_Rec] = deque()
        self._k: deque[_Rec] = deque()
        self._j: deque[_Rec] = deque()

    # ------------------------------------------------------------ state
    def __len__(self) -> int:
        """Records held (either side alive)."""
        return len(self._by_skey)

    def expecting(self) -> bool:
        """A response may be ours (some client side is alive)."""
        return bool(self._by_branch)

    def take(self) -> list[tuple[bytes, _Any]]:
        out, self.out = self.out, []
        return out

    # ------------------------------------------------------------ requests
    def request(self, data: bytes, peer: tuple[_Any, ...], now: float, accept: bool = True) -> _Any:
        """True: handled here (what to send is in ``out``); a SipMessage: declined,
        parsed, nothing changed; None: not a MESSAGE, or it does not parse."""
        if type(peer) is not tuple:
            raise TypeError(f"peer must be a tuple, not {type(peer).__name__}")
        now = float(now)
        if not data.startswith(b"MESSAGE "):
            return None
        try:
            msg = _codec.parse_message(data)
        except SipParseError:
            return None
        try:
            done = self._request(msg, data, peer, now, accept)
        except SipParseError:
            done = False
        if done:
            return True
        self.declined += 1
        return msg

    def _request(self, msg: _Any, data: bytes, peer: tuple[_Any, ...], now: float, accept: bool) -> bool:
        if len(peer) not in (2, 3):
            return False
        branch = msg.via_branch
        if branch is None or not branch.startswith(_MAGIC_COOKIE):
            return False
        host = (msg.via_host or "").lower()
        port = msg.via_port
        skey = f"{branch}\x00{host}\x00{port}"
        rec = self._by_skey.get(skey)
        if rec is not None:  # a retransmission (sections 17.2.2, 16.7)
            self.absorbed += 1
            if rec.last is not None:
                self.out.append((rec.last, peer))
            return True
        if not accept or (branch, host, port, "MESSAGE") in self.general:
            return False
        if _codec.validate_request(msg, supported=self.supported) is not None:
            return False
        if msg.count("Route"):
            return False
        if msg.count("Proxy-Require") and any(
            t and t not in self.supported for t in msg.get_all("Proxy-Require")
        ):
            return False  # the general path answers 420 (section 16.3 step 5)
        mf = msg.max_forwards
        if mf == 0:
            return False
        me = self.me
        for via in msg.vias():
            if me.is_me(via.host, via.port):
                return False
        ruri = _codec.parse_uri(msg.uri)
        rhost = ruri.host
        user = ruri.user
        if ruri.scheme != "sip" or rhost is None or user is None or "%" in user:
            return False
        rhost = rhost.lower()
        if rhost not in self.config.domains:
            return False
        service = self.service
        if service is not None and service[0] == user and service[1] == rhost:
            return False
        max_body = self.max_body
        if max_body is not None and len(msg.body) > max_body:
            return False
        key = f"sip:{user}@{rhost}".encode("utf-8", "surrogateescape")
        table = self.table
        if len(key) > table.key_max:
            return False
        row = table.get(key)
        if row is None:
            return False
        bindings = marshal.loads(row)
        if len(bindings) != 1:
            return False
        b = bindings[0]
        if b[1] <= now or b[5] or b[6].startswith(("tcp:", "tls:")):
            return False
        contact = b[0]
        dest = self._dest(contact)
        if dest is None:
            return False
        self._seq += 1
        fbranch = f"{self.prefix}{self._seq:x}.{loop_hash(msg)}"
        via = (self._via6 if ":" in dest[0] else self._via4) + fbranch
        stamp: dict[str, _Any] = {}
        if peer[0]:
            rport = msg.via_rport
            stamp = {"received": peer[0], "rport": peer[1] if rport is not None else None}
        fmf = 70 if mf is None else min(mf - 1, 255)
        try:
            fwd = bytes(_codec.forward_request(msg, contact, via, record_route=None, routes=(),
                                               max_forwards=fmf, **stamp))  # fmt: skip
        except LocalProtocolError:
            return False
        if len(fwd) > _UDP_MAX_REQUEST:
            return False
        rec = _Rec(skey, fbranch, peer, dest, fwd, bytes(data), self.t1)
        self._by_skey[skey] = rec
        self._by_branch[fbranch] = rec
        self.open += 1
        self.relayed += 1
        self.out.append((fwd, dest))
        rec.e_due = now + self.t1
        self._ring(self.t1).append(rec)
        rec.f_due = now + 64 * self.t1
        self._f.append(rec)
        return True

    def _dest(self, contact: str) -> tuple[_Any, ...] | None:
        """(host, port, "c") of a contact the relay sends to, else None (cached)."""
        dests = self._dests
        if contact in dests:
            return dests[contact]
        dest: tuple[_Any, ...] | None = None
        try:
            u = _codec.parse_uri(contact)
        except SipParseError:
            u = None
        if u is not None and u.scheme == "sip" and u.host is not None and "maddr" not in u.params:
            tp = u.params.get("transport")
            host = u.host[1:-1] if u.host.startswith("[") else u.host
            numeric = (host.replace(".", "").isdigit() and host.isascii()) or ":" in host
            if (tp is None or tp.lower() == "udp") and numeric:
                dest = (host, u.port or 5060, "c")
        if len(dests) >= 65536:
            dests.clear()
        dests[contact] = dest
        return dest

    def _ring(self, interval: float) -> deque[_Rec]:
        q = self._e.get(interval)
        if q is None:
            q = self._e[interval] = deque()
            self._e = dict(sorted(self._e.items()))
        return q

    # ------------------------------------------------------------ responses
    def response(self, data: bytes, now: float) -> _Any:
        """True: a response to a request relayed here, handled; a SipMessage: not ours,
        parsed, nothing changed; None: not a response, or it does not parse."""
        now = float(now)
        if not data.startswith(b"SIP/2.0 "):
            return None
        try:
            msg = _codec.parse_message(data)
        except SipParseError:
            return None
        if msg.is_request:
            return msg
        try:
            branch = msg.via_branch
        except SipParseError:
            return msg
        if branch is None or not branch.startswith(self.prefix):
            return msg
        rec = self._by_branch.get(branch)
        if rec is None or msg.cseq_method != "MESSAGE" or _codec.validate_request(msg) is not None:
            return msg
        status = msg.status
        assert status is not None  # a response
        if rec.state >= _COMPLETED:
            self.absorbed += 1
            return True
        if status < 200:
            if rec.state == _TRYING:
                rec.state = _PROCEEDING
                rec.interval = self.t2
            if status > 100 and not rec.srv_final:
                self._send_up(rec, msg, False, now)
            return True
        rec.state = _COMPLETED
        self.open -= 1
        rec.e_due = rec.f_due = 0.0
        rec.fwd = rec.orig = None
        rec.dest = None
        rec.k_due = now + self.t4
        self._k.append(rec)
        if not rec.srv_final:
            self._send_up(rec, msg, True, now)
        return True

    def _send_up(self, rec: _Rec, msg: _Any, final: bool, now: float) -> None:
        up = _codec.strip_top_via(msg)
        if up is not None:
            rec.last = up = bytes(up)
            self.out.append((up, rec.peer))
        if final:
            self._final(rec, now)

    def _final(self, rec: _Rec, now: float) -> None:
        rec.srv_final = True
        rec.j_due = now + 64 * self.t1
        self._j.append(rec)

    # ------------------------------------------------------------ timers
    def next_deadline(self) -> float | None:
        best: float | None = None
        for q in self._e.values():
            while q and not (q[0].e_due and q[0].state < _COMPLETED):
                q.popleft()  # cancelled: dropped now
            if q and (best is None or q[0].e_due < best):
                best = q[0].e_due
        q = self._f
        while q and not q[0].f_due:
            q.popleft()
        if q and (best is None or q[0].f_due < best):
            best = q[0].f_due
        for q, attr in ((self._k, "k_due"), (self._j, "j_due")):
            if q:
                d = getattr(q[0], attr)
                if best is None or d < best:
                    best = d
        return best

    def expire(self, now: float) -> None:
        now = float(now)
        while True:  # due Timers E and F in deadline order, F first on a tie
            q = self._next_due(now)
            if q is None:
                break
            rec = q.popleft()
            if q is self._f:
                self._timeout(rec, now)
                continue
            assert rec.fwd is not None and rec.dest is not None
            self.out.append((rec.fwd, rec.dest))
            if rec.state == _TRYING:
                rec.interval = min(rec.interval * 2, self.t2)
            rec.e_due = now + rec.interval
            self._ring(rec.interval).append(rec)
        q = self._k
        while q and q[0].k_due <= now:
            rec = q.popleft()
            self._by_branch.pop(rec.branch, None)
        q = self._j
        while q and q[0].j_due <= now:
            rec = q.popleft()
            self._by_skey.pop(rec.skey, None)
            self._by_branch.pop(rec.branch, None)

    def _next_due(self, now: float) -> deque[_Rec] | None:
        """The ring whose head is the Timer F or E due first at ``now`` (a tie goes to F,
        then to the ring of the smaller interval); cancelled heads are dropped."""
        best: deque[_Rec] | None = None
        due = now
        q = self._f
        while q and not q[0].f_due:
            q.popleft()
        if q and q[0].f_due <= due:
            best, due = q, q[0].f_due
        for q in self._e.values():
            while q and not (q[0].e_due and q[0].state < _COMPLETED):
                q.popleft()
            if q and q[0].e_due <= due and (best is None or q[0].e_due < due):
                best, due = q, q[0].e_due
        return best

    def _timeout(self, rec: _Rec, now: float) -> None:
        """Timer F: the client side ends; the 408 of section 16.7 step 6 goes up."""
        self.timeouts += 1
        self.open -= 1
        rec.state = _TERMINATED
        rec.e_due = rec.f_due = 0.0
        self._by_branch.pop(rec.branch, None)
        orig = rec.orig
        rec.fwd = rec.orig = None
        rec.dest = None
        if rec.srv_final or orig is None:
            return
        self._tags += 1
        try:
            req = _codec.parse_message(orig)
            data = bytes(_codec.build_response(req, 408, "Request Timeout",
                                               to_tag=f"{self.tag_prefix}{self._tags:x}"))  # fmt: skip
        except (SipParseError, LocalProtocolError):
            data = None
        if data is not None:
            rec.last = data
            self.out.append((data, rec.peer))
        self._final(rec, now)
