"""The compact row of a subscription (layout 2), reference twin of ext/subrow.pyx.

Theory of operation
-------------------
Every subscription a worker holds is mirrored in a row of the shared
subscription table (``simplefast/presence/subscribe.py``,
``ShmSubscriptions``): what another worker needs to find its owner, what a
worker that replaces a killed one needs to go on with it, and what the store
writes behind for a restart. The row is written with every NOTIFY (its CSeq)
and read on rare paths (adoption, watcher-information scans, the store).

Layout 1 (still read, by ``subscribe.decode_row``) was a fixed header and a
``marshal`` of the unchanging fields: about 285 bytes for a SIPp watcher, in
480-byte values. Layout 2 packs the same fields in about 175, so the table's
values can be 224 bytes and a subscription costs less than half the shared
memory:

- the event package, the body type and the authorization policy are one-byte
  codes for the names the server uses (``EVENTS``, ``CONTENT_TYPES``,
  ``POLICIES``), or ``LITERAL`` and the name written out;
- the flow (``peer``, see ``simplefast.sip.peer``) is a form byte, the port,
  the address as 4 or 16 bytes when it is the canonical text of an IPv4 or
  IPv6 address (else written out), and the listener number or connection
  id as a varint;
- the resource and the watcher's AOR are left out when they equal the
  local (To) URI and the remote (From) URI, which they usually do;
- strings are UTF-8 (``surrogateescape``, as the codec decodes wire text),
  each after its length as an unsigned LEB128 varint.

Bytes, little-endian::

    header (HEAD_SIZE = 49), what changes while the subscription lives:
       0 u8  layout (2)
       1 u16 owner         worker index (at offset 1 in layout 1 too: row_owner)
       3 u8  state         0 active, 1 pending, 2 terminated
       4 u32 cseq          of our last NOTIFY
       8 u32 remote_cseq   of the watcher's last SUBSCRIBE
      12 i64 version       of the state our last NOTIFY carried
      20 f64 expires_at    monotonic clock
      28 f64 subscribed_at
      36 f64 last_sent     of our last NOTIFY (pacing, RFC 3856 6.10)
      44 u32 rec           the owning worker's record of it (0xFFFFFFFF: none, -1)
      48 u8  held          1: a change waits for the pacing interval
    static part (``static``: made once per subscription and kept in
    ``Subscription.row_static``; a refresh that moves the target or the
    flow makes it again):
       u8 flags            1 resource written, 2 watcher written, 4 event id written
       u8 event code       u8 content-type code       u8 policy code
       u8 peer form        low 4 bits: 0 (host, port), 1 (host, port, listener),
                           2 (host, port, "c"), 3 (host, port, "tcp", cid),
                           4 (host, port, "tls", cid) (another shape raises
                           ValueError); high 4 bits: the address as 0 IPv4 (4 bytes),
                           1 IPv6 (16 bytes), 2 a string
       u16 port, address, varint listener or cid (forms 1, 3, 4)
       strings: call_id, remote_tag, local_uri, remote_uri, target,
                then resource, watcher, event_id as the flags say,
                then the event, content type and policy names whose code is LITERAL
       varint number of routes, then each route (a string)

Rows longer than ``MAX_ROW`` bytes, numbers out of their field's range and
a peer whose address family does not match its text raise ValueError; so
does ``decode`` of anything that is not a whole layout 2 row.
"""

from __future__ import annotations

import socket
import struct
from typing import Any as _Any

LAYOUT = 2
HEAD_SIZE = 49
MAX_ROW = 65535
LITERAL = 255

STATES = ("active", "pending", "terminated")
EVENTS = ("presence", "presence.winfo")
CONTENT_TYPES = ("application/pidf+xml", "application/watcherinfo+xml", "multipart/related")
POLICIES = ("allow", "confirm", "block", "polite-block")

_HEAD = struct.Struct("<BHBIIqdddIB")
_NO_REC = 0xFFFFFFFF
_U16 = struct.Struct("<H")

_F_RESOURCE, _F_WATCHER, _F_EVENT_ID = 1, 2, 4
_P_PAIR, _P_LISTENER, _P_CLIENT, _P_TCP, _P_TLS, _P_NONE = 0, 1, 2, 3, 4, -1
_A_V4, _A_V6, _A_TEXT = 0, 1, 2


def _varint(out: bytearray, n: int) -> None:
    if n < 0 or n >= 1 << 64:
        raise ValueError(f"subscription row: {n} does not fit a varint")
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _string(out: bytearray, s: str) -> None:
    b = s.encode("utf-8", "surrogateescape")
    _varint(out, len(b))
    out += b


def _code(names: tuple[str, ...], value: str) -> int:
    try:
        return names.index(value)
    except ValueError:
        return LITERAL


def _address(host: str) -> tuple[int, bytes]:
    """The address form and bytes of a peer's host: packed when ``host`` is exactly the
    canonical text of an IPv4 or IPv6 address (so decoding gives the same string back)."""
    for form, family in ((_A_V4, socket.AF_INET), (_A_V6, socket.AF_INET6)):
        try:
            packed = socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        if socket.inet_ntop(family, packed) == host:
            return form, packed
    return _A_TEXT, b""


def static(sub: _Any) -> bytes:
    """The static part of the row of ``sub`` (a ``Subscription``)."""
    out = bytearray()
    resource, watcher, event_id = sub.resource, sub.watcher, sub.event_id
    flags = (
        (_F_RESOURCE if resource != sub.local_uri else 0)
        | (_F_WATCHER if watcher != sub.remote_uri else 0)
        | (_F_EVENT_ID if event_id is not None else 0)
    )
    ev, ct, po = _code(EVENTS, sub.event), _code(CONTENT_TYPES, sub.content_type), _code(POLICIES, sub.policy)
    out += bytes((flags, ev, ct, po))
    peer = sub.peer
    n = len(peer)
    form = _P_NONE
    extra = -1
    if n >= 2 and type(peer[0]) is str and type(peer[1]) is int and 0 <= peer[1] <= 0xFFFF:
        if n == 2:
            form = _P_PAIR
        elif n == 3 and type(peer[2]) is int:
            form, extra = _P_LISTENER, peer[2]
        elif n == 3 and peer[2] == "c":
            form = _P_CLIENT
        elif n == 4 and peer[2] in ("tcp", "tls") and type(peer[3]) is int:
            form, extra = (_P_TCP if peer[2] == "tcp" else _P_TLS), peer[3]
    if form == _P_NONE:
        raise ValueError(f"subscription row: a peer of unknown shape {peer!r}")
    if form in (_P_LISTENER, _P_TCP, _P_TLS) and extra < 0:
        raise ValueError("subscription row: a negative listener or connection id")
    addr, packed = _address(peer[0])
    out.append(form | addr << 4)
    out += _U16.pack(peer[1])
    if addr == _A_TEXT:
        _string(out, peer[0])
    else:
        out += packed
    if extra >= 0:
        _varint(out, extra)
    for s in (sub.call_id, sub.remote_tag, sub.local_uri, sub.remote_uri, sub.target):
        _string(out, s)
    if flags & _F_RESOURCE:
        _string(out, resource)
    if flags & _F_WATCHER:
        _string(out, watcher)
    if event_id is not None:
        _string(out, event_id)
    for code, name in ((ev, sub.event), (ct, sub.content_type), (po, sub.policy)):
        if code == LITERAL:
            _string(out, name)
    routes = sub.routes
    _varint(out, len(routes))
    for r in routes:
        _string(out, r)
    if len(out) + HEAD_SIZE > MAX_ROW:
        raise ValueError(f"subscription row of {len(out) + HEAD_SIZE} bytes, more than {MAX_ROW}")
    return bytes(out)


def encode(sub: _Any) -> bytes:
    """The row of ``sub``: the header from its fields now and its static part, made and
    kept in ``sub.row_static`` when that is empty."""
    st: bytes = sub.row_static
    if not st:
        st = sub.row_static = static(sub)
    try:
        state = STATES.index(sub.state)
    except ValueError:
        raise ValueError(f"subscription row: unknown state {sub.state!r}") from None
    rec = sub.rec
    try:
        if not -1 <= rec < _NO_REC:
            raise struct.error(f"rec {rec}")
        head = _HEAD.pack(LAYOUT, sub.owner, state, sub.cseq, sub.remote_cseq, sub.version, sub.expires_at,
                          sub.subscribed_at, sub.last_sent, rec & _NO_REC, 1 if sub.held else 0)  # fmt: skip
    except struct.error as exc:
        raise ValueError(f"subscription row: a number out of range ({exc})") from None
    return head + st


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise ValueError("subscription row: truncated")
        b = self.data[self.pos : end]
        self.pos = end
        return b

    def byte(self) -> int:
        return self.take(1)[0]

    def varint(self) -> int:
        n = shift = 0
        while True:
            if shift > 63:
                raise ValueError("subscription row: varint too long")
            b = self.byte()
            n |= (b & 0x7F) << shift
            if n >= 1 << 64:  # no row holds one (encode refuses it)
                raise ValueError("subscription row: varint too long")
            if b < 0x80:
                return n
            shift += 7

    def string(self) -> str:
        return self.take(self.varint()).decode("utf-8", "surrogateescape")


def _name(names: tuple[str, ...], code: int) -> str | None:
    if code == LITERAL:
        return None
    if code >= len(names):
        raise ValueError(f"subscription row: unknown code {code}")
    return names[code]


def decode(value: bytes) -> dict[str, _Any]:
    """The fields of a layout 2 row (every ``Subscription`` field but the key and the
    ones not kept: ``row_static`` is the static part)."""
    if type(value) is not bytes:
        raise TypeError(f"value must be bytes, not {type(value).__name__}")
    if len(value) < HEAD_SIZE:
        raise ValueError("subscription row: truncated")
    fixed = _HEAD.unpack_from(value)
    layout, owner, state, cseq, rcseq, version, expires_at, subscribed_at, last_sent, rec, held = fixed
    if layout != LAYOUT:
        raise ValueError(f"subscription row layout {layout}, expected {LAYOUT}")
    if state >= len(STATES):
        raise ValueError(f"subscription row: unknown state {state}")
    if held > 1:
        raise ValueError(f"subscription row: held {held}")
    r = _Reader(value, HEAD_SIZE)
    flags, ev, ct, po, pform = r.take(5)
    if flags & ~7:
        raise ValueError(f"subscription row: unknown flags {flags:#x}")
    names = [_name(EVENTS, ev), _name(CONTENT_TYPES, ct), _name(POLICIES, po)]
    form, addr = pform & 15, pform >> 4
    if form > _P_TLS or addr > _A_TEXT:
        raise ValueError(f"subscription row: unknown peer form {pform:#x}")
    (port,) = _U16.unpack(r.take(2))
    if addr == _A_TEXT:
        host = r.string()
    else:
        family = socket.AF_INET if addr == _A_V4 else socket.AF_INET6
        host = socket.inet_ntop(family, r.take(4 if addr == _A_V4 else 16))
    peer: tuple[_Any, ...]
    if form == _P_PAIR:
        peer = (host, port)
    elif form == _P_LISTENER:
        peer = (host, port, r.varint())
    elif form == _P_CLIENT:
        peer = (host, port, "c")
    else:
        peer = (host, port, "tcp" if form == _P_TCP else "tls", r.varint())
    call_id, remote_tag, local_uri, remote_uri, target = (r.string() for _ in range(5))
    resource = r.string() if flags & _F_RESOURCE else local_uri
    watcher = r.string() if flags & _F_WATCHER else remote_uri
    event_id = r.string() if flags & _F_EVENT_ID else None
    for i in range(3):
        if names[i] is None:
            names[i] = r.string()
    routes = tuple(r.string() for _ in range(r.varint()))
    if r.pos != len(value):
        raise ValueError("subscription row: bytes after the routes")
    return {
        "call_id": call_id, "remote_tag": remote_tag, "local_uri": local_uri, "remote_uri": remote_uri,
        "target": target, "routes": routes, "peer": peer, "event": names[0], "event_id": event_id,
        "resource": resource, "watcher": watcher, "content_type": names[1], "policy": names[2],
        "expires_at": expires_at, "subscribed_at": subscribed_at, "cseq": cseq, "remote_cseq": rcseq,
        "version": version, "state": STATES[state], "owner": owner, "row_static": value[HEAD_SIZE:],
        "last_sent": last_sent, "rec": -1 if rec == _NO_REC else rec, "held": bool(held),
    }  # fmt: skip


def notify_parts(value: bytes, key: str, contact: bytes) -> tuple[bytes, bytes]:
    """What a NOTIFY of the subscription of row ``value`` (layout 2) takes from it: its
    Request-URI (the target) and the header lines that stay the same for every NOTIFY
    of the dialog, each ending CRLF::

        Route: <route>               (one per route, in order)
        Max-Forwards: 70
        From: <local_uri>;tag=<key>
        To: <remote_uri>;tag=<remote_tag>
        Call-ID: <call_id>
        Contact: <contact>           (ours, for the flow: given)
        Event: <event>[;id=<event_id>]

    Strings as the row holds them (UTF-8, escaped octets back as they came);
    ``key`` ASCII. ValueError as ``decode``, or a key that is not ASCII."""
    if not key.isascii():
        raise ValueError("notify_parts: the key must be ASCII")
    f = decode(value)
    ev = f["event"] if f["event_id"] is None else f"{f['event']};id={f['event_id']}"
    routes = "".join(f"Route: {r}\r\n" for r in f["routes"])
    head = (
        f"{routes}Max-Forwards: 70\r\nFrom: <{f['local_uri']}>;tag={key}\r\n"
        f"To: <{f['remote_uri']}>;tag={f['remote_tag']}\r\nCall-ID: {f['call_id']}\r\n"
    ).encode("utf-8", "surrogateescape")
    head += b"Contact: " + contact + b"\r\nEvent: " + ev.encode("utf-8", "surrogateescape") + b"\r\n"
    return f["target"].encode("utf-8", "surrogateescape"), head


def owner(value: bytes) -> int:
    """The owner of a row of layout 1 or 2 (both keep it at offset 1)."""
    if type(value) is not bytes:
        raise TypeError(f"value must be bytes, not {type(value).__name__}")
    if len(value) < 3:
        raise ValueError("subscription row: truncated")
    return int(value[1] | value[2] << 8)
