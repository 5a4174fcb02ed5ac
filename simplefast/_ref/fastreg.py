"""The registrar's stateless fast path, reference twin of ext/fastreg.pyx.

Theory of operation
-------------------
Most REGISTERs a registrar sees are alike: one UA, one Contact, over UDP,
either a first registration or a refresh of the same Contact. Through the
general path (server transaction, event dispatch, the registrar's binding
list, a response from header pairs) each costs tens of microseconds of
Python. ``FastRegistrar.register`` takes the datagram itself and, for those
requests only, does the whole of RFC 3261 section 10.3 in one call and
returns the 200; for anything else it changes nothing and hands the parsed
request back, and the general path (``simplefast.proxy.registrar``, which
is the specification of every rule below) answers it.

Stateless (section 8.2.7). No transaction is kept. A retransmitted REGISTER
is that request again, and the registrar's own rule makes it idempotent: a
binding with the same Call-ID and CSeq is left as it is and listed in a new
200. The To tag is a keyed hash of the request's branch, Call-ID, CSeq and
From tag (``to_tag``), so the retransmission's 200 carries the same tag.
The general path uses the same tag for REGISTER, so a request answered by
either path gets the same 200 from the other.

Taken here (every condition, else declined):

- the datagram starts ``REGISTER`` and parses, and ``validate_request``
  passes (a request it fails is declined: the general path answers it);
- the peer is a UDP peer (a 2- or 3-tuple, simplefast/sip/peer.py);
- the Request-URI host is one of ``config.domains`` (case-insensitive);
- the To URI is sip/sips with a host of ours; its user part, if any, has no
  ``%`` escape; the AOR is ``scheme:user@host`` (host lower-cased) and fits
  the table's key;
- exactly one Contact, not ``*``, an ASCII URI; no ``+sip.instance``; its
  ``expires`` parameter, if any, an integer; its ``q``, if any, a valid
  qvalue; no Path header;
- the expiry (the Contact's ``expires``, else Expires, else
  ``default_expires``) is 0 or at least ``min_expires`` (the general path
  answers 423); it is cut to ``max_expires``;
- the offline store (``offline``) has no mark for the user (or there is no
  store): a user with stored MESSAGEs is declined, and the general path
  delivers them after its 200;
- the AOR has no live binding, or exactly one whose Contact is the same
  string; with the same Call-ID that binding's CSeq is not higher (the
  general path answers 500): the same CSeq is the request again, and the
  binding stays as it is;
- the new row fits the table's value size, and the table takes it.

Then the row is written (deleted when no binding is left), the write-behind
map gets the AOR, and the 200 is ``build_response`` of the request with the
top Via stamped (received, and rport when asked), the To tag, one
``Contact: <uri>;expires=N[;q=Q]`` per binding, ``Date`` and ``Server``:
the bytes the general path writes for the same request.
"""

from __future__ import annotations

import marshal
from typing import Any as _Any

from simplefast._ref import sipmsg as _codec
from simplefast._sipshared import qvalue as _qvalue
from simplefast.errors import SimplefastError, SipParseError

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK = (1 << 64) - 1
_OFFLINE_ALL = b"*"  # simplefast/im/agent.py OFFLINE_ALL


def to_tag(key: bytes, branch: str, call_id: str, cseq: int, from_tag: str) -> str:
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise TypeError(f"key must be bytes-like, not {type(key).__name__}")
    for name, v in (("branch", branch), ("call_id", call_id), ("from_tag", from_tag)):
        if type(v) is not str:
            raise TypeError(f"{name} must be str, not {type(v).__name__}")
    if type(cseq) is not int:
        raise TypeError(f"cseq must be int, not {type(cseq).__name__}")
    key = bytes(key)
    h = _FNV_OFFSET
    for part in (key, branch.encode("utf-8", "surrogateescape") + b"\x00",
                 call_id.encode("utf-8", "surrogateescape") + b"\x00", b"%d\x00" % cseq,
                 from_tag.encode("utf-8", "surrogateescape") + b"\x00"):  # fmt: skip
        for c in part:
            h = ((h ^ c) * _FNV_PRIME) & _MASK
    return f"{h:016x}"


class FastRegistrar:
    def __init__(self, config: _Any, table: _Any, *, server: str, supported: tuple[str, ...],
                 tag_key: bytes, dirty: dict[str, bytes] | None) -> None:  # fmt: skip
        if not server.isascii() or "\r" in server or "\n" in server:
            raise ValueError("server must be ASCII without CR or LF")
        self.config = config
        self.table = table
        self.server = server
        self.supported = tuple(supported)
        self.tag_key = bytes(tag_key)
        self.dirty = dirty
        self.offline: _Any = None
        self.answered = 0
        self.declined = 0

    def register(self, data: bytes, peer: tuple[_Any, ...], now: float, date: str) -> _Any:
        if type(peer) is not tuple:
            raise TypeError(f"peer must be a tuple, not {type(peer).__name__}")
        if type(date) is not str:
            raise TypeError(f"date must be str, not {type(date).__name__}")
        if not date.isascii() or "\r" in date or "\n" in date:
            raise ValueError("date must be ASCII without CR or LF")
        now = float(now)
        if not data.startswith(b"REGISTER "):
            return None
        try:
            msg = _codec.parse_message(data)
        except SipParseError:
            return None
        try:
            out = self._apply(msg, peer, now, date)
        except SipParseError:
            out = None
        if out is None:
            self.declined += 1
            return msg
        self.answered += 1
        return out

    def _apply(self, msg: _Any, peer: tuple[_Any, ...], now: float, date: str) -> bytes | None:
        """The 200, the change made; None: declined, nothing changed."""
        cfg = self.config
        if len(peer) not in (2, 3) or _codec.validate_request(msg, supported=self.supported) is not None:
            return None
        domains = cfg.domains
        ruri = _codec.parse_uri(msg.uri)
        if ruri.host is None or ruri.host.lower() not in domains:
            return None
        to = msg.to_addr()
        turi = _codec.parse_uri(to.uri)
        if turi.scheme not in ("sip", "sips") or turi.host is None:
            return None
        host = turi.host.lower()
        if host not in domains:
            return None
        user = turi.user
        if user is None:
            aor = f"{turi.scheme}:{host}"
        elif "%" in user:
            return None
        else:
            aor = f"{turi.scheme}:{user}@{host}"
        key = aor.encode("utf-8", "surrogateescape")
        table = self.table
        if len(key) > table.key_max:
            return None
        contacts = msg.contacts()
        if len(contacts) != 1 or msg.get("Path") is not None:
            return None
        c = contacts[0]
        curi = c.uri
        if curi == "*" or not curi.isascii():
            return None
        params = c.params
        if "+sip.instance" in params:
            return None
        raw = params.get("expires")
        if raw is not None:
            if not raw.isdigit() or not raw.isascii():
                return None
            exp = int(raw)
        else:
            hdr = msg.expires
            exp = cfg.default_expires if hdr is None else hdr
        if 0 < exp < cfg.min_expires:
            return None
        exp = min(exp, cfg.max_expires)
        q = None
        raw_q = params.get("q")
        if raw_q is not None:
            q = _qvalue(raw_q)
            if q is None:
                return None
        off = self.offline
        if off is not None:
            marks = off.marks
            if marks is None or marks.get(key) is not None or marks.get(_OFFLINE_ALL) is not None:
                return None
        call_id = msg.call_id
        cseq = msg.cseq_num
        row = table.get(key)
        live = [] if row is None else [b for b in marshal.loads(row) if b[1] > now]
        if not live:
            updated = []
            unchanged = False
        elif len(live) == 1 and live[0][0] == curi:
            old = live[0]
            if old[3] == call_id and old[4] > cseq:
                return None
            unchanged = old[3] == call_id and old[4] == cseq
            updated = [old] if unchanged else []
        else:
            return None
        if not unchanged and exp > 0:
            updated.append((curi, now + exp, q, call_id, cseq, (), f"udp:{peer[0]}:{peer[1]}", None))
        if len(updated) > cfg.max_contacts:
            return None
        if updated:
            value = marshal.dumps(updated)
            if len(value) > table.value_max:
                return None
            try:
                table.put(key, value)
            except SimplefastError:  # the table is full: the general path answers 503
                return None
        else:
            value = b""
            table.delete(key)
        if self.dirty is not None:
            self.dirty[aor] = value
        lines = []
        for b in updated:
            line = f"Contact: <{b[0]}>;expires={max(0, int(b[1] - now + 0.5))}"
            if b[2] is not None:
                line += f";q={b[2]:g}"
            lines.append(line + "\r\n")
        lines.append(f"Date: {date}\r\nServer: {self.server}\r\n")
        try:
            rport = msg.via_rport
            stamp: dict[str, _Any] = {"received": peer[0], "rport": peer[1] if rport is not None else None}
        except SipParseError:
            stamp = {}
        if not peer[0]:
            stamp = {}
        tag = None
        if msg.to_tag is None:
            tag = to_tag(self.tag_key, msg.via_branch or "", call_id, cseq, msg.from_tag or "")
        extra = "".join(lines).encode("ascii")
        return bytes(_codec.build_response(msg, 200, "OK", to_tag=tag, extra_headers=extra, **stamp))
