"""MSRP endpoint (RFC 4975) with relay AUTH (RFC 4976), sans-IO, plus an asyncio wrapper.

Theory of operation
-------------------
``MsrpSession`` is one endpoint's side of one MSRP session on one connection.
It owns no socket, loop or clock (STYLE.md section 1): octets in (``data``),
octets out (``outgoing``), events out (``next_event``), time injected
(``get_timer`` / ``handle_timer``).

- Our URI is ``local_uri`` (the From-Path we write). ``to_path`` is the whole
  To-Path of what we send: the Use-Path of our relay, if any, then the
  peer's path as its SDP ``a=path`` gives it (RFC 4976 section 6.1).
- ``authenticate(relay_uri, username, password)`` sends AUTH to the relay
  (To-Path the relay's URI, RFC 4976 section 5). A 401 is answered once with
  digest credentials (qop=auth; MD5 or SHA-256 as the challenge names it; the
  digest-uri is the relay URI as written); the 200's Use-Path and Expires
  come out as ``Authenticated``, any other final answer as ``AuthRejected``.
  The caller then puts the Use-Path in front of the peer's path.
- ``send_message`` splits the content into chunks of ``chunk_size`` octets
  (RFC 4975 section 7.1.1 Byte-Range, ``+`` on all but the last), each with a
  fresh transaction id whose end-line does not occur in its data. With
  Failure-Report ``yes`` (the default) every chunk waits for its response:
  a non-200 or no response within ``timeout`` seconds (30, as relays use)
  gives one ``MessageFailed`` for the message; when all chunks have their
  200, ``MessageSent``. With ``no`` nothing is awaited. A REPORT from the
  far end comes out as ``ReportReceived``.
- Incoming SENDs are answered 200 at once (unless their Failure-Report is
  ``no`` or ``partial``) and reassembled per Message-ID from their
  Byte-Range: a message whose octets are all there and whose last chunk
  came with ``$`` comes out as ``MessageReceived``, with a REPORT 200 first
  when it asked with ``Success-Report: yes``. A chunk with ``#`` gives
  ``MessageAborted``. Bounds: ``max_message`` octets per message (413 to a
  chunk past it, and the message is dropped) and ``max_incoming`` messages
  being reassembled at once (the oldest is dropped past it).
- Incoming requests must name us alone in To-Path (481) and, once ``to_path``
  is set, come along that path: the From-Path equals ``to_path`` (403),
  section 7.3; a SEND whose first chunk's type is not in ``accept_types``
  gets 415; a SEND without data only binds the connection (200, no event);
  an incomplete message with no chunk for ``max_idle`` seconds (90) is
  dropped. ``bind()`` sends such a SEND as the active side (section 7.1.1).
- Other requests (NICKNAME of RFC 7701, anything else) come out as
  ``RequestReceived``; ``respond(msg, status)`` answers them (end to end:
  To-Path is their From-Path). ``request(method, headers)`` sends one of
  our own (a NICKNAME to a chat focus); its answer is ``ResponseReceived``
  (408 after ``timeout`` seconds without one).
- A framing error ends the session (``Closed``); so does ``closed()``.

``MsrpEndpoint`` runs one session over an asyncio connection: ``authenticate``,
``send`` (waits for ``MessageSent`` or raises ``MsrpSendError``), ``bind``,
``request``, ``respond``, ``receive`` (the next ``MessageReceived``),
``other_event`` (the next report, abort or other request), ``close``.

Connections (RFC 4975 section 5.4, RFC 6135). A connection may carry several
sessions, so it is its own object (``_MsrpConnection``, the asyncio protocol):
one parser frames what it reads, and each message goes to the session whose
session id (the URI path between the authority and ``;``) is that of its
first To-Path URI, as one whole message (the session's own parser then sees
only complete messages). A request naming no session on the connection gets
481 from the connection itself, answered as ``MsrpSession`` answers one not
for it (section 7.3: never a REPORT or a SEND with Failure-Report no; a SEND
hop by hop, To-Path its first From-Path URI; another method end to end); a
response naming none is offered to every session there (each takes only the
transaction ids it drew). A framing error ends every session on the
connection and closes it.

- Active side (``a=setup:active``, or the offerer without ``a=setup``):
  ``await MsrpEndpoint.connect(host, port, local_uri)`` opens a connection
  with one session; ``MsrpEndpoint.attach(ep, local_uri, to_path=...)`` puts
  another session on ``ep``'s connection (``a=connection:existing``). The
  active side binds each session with ``bind()`` (section 7.1.1) unless it
  has something to send at once.
- Passive side (``a=setup:passive``): ``await MsrpListener.start(host,
  port)`` listens; ``listener.expect(local_uri)`` registers a session whose
  ``a=path`` we gave (``listener.uri()`` makes one with a fresh session id).
  The first request on any accepted connection whose To-Path is that URI
  alone binds the session to that connection (``await connected()`` returns);
  with no ``to_path`` given, the session learns it from that request's
  From-Path (what we send goes back along the path it came: the peer's URI,
  or the relays' URIs then the peer's). With ``to_path`` given, a first
  request from elsewhere gets 403 and binds nothing. A bound session is on
  that connection only: a request for it on another one gets 481. Several
  expected sessions may bind to one connection.
- Ending: ``close()`` on a session ends only that session while others use
  the connection; with the last one the connection closes (a connection no
  session uses may be closed, section 5.4). A session whose own checks end
  it (a malformed Byte-Range) leaves its connection the same way. A lost
  connection ends every session on it (``Closed``; ``wait_closed`` returns).
  ``listener.close()`` stops listening, ends the sessions not bound yet
  (their ``connected()`` raises ``MsrpSendError``) and closes every accepted
  connection. An accepted connection on which no session ever binds stays
  open until the listener closes (*not yet*: a first-request timer).
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import ssl
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from simplefast._impl import msrpframe
from simplefast.errors import SimplefastError
from simplefast.proxy.auth import h, ha1, parse_digest

DEFAULT_CHUNK = 2048  # RFC 4975 section 7.1: chunks over 2048 octets must be interruptible
DEFAULT_TIMEOUT = 30.0
DEFAULT_IDLE = 90.0  # an incomplete incoming message with no chunk for this long is dropped


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Authenticated:
    use_path: list[str]
    expires: int | None


@dataclass(frozen=True, slots=True)
class AuthRejected:
    status: int
    comment: str


@dataclass(frozen=True, slots=True)
class MessageSent:
    message_id: str


@dataclass(frozen=True, slots=True)
class MessageFailed:
    message_id: str
    status: int  # the response's status, 408 for no response
    comment: str


@dataclass(frozen=True, slots=True)
class MessageReceived:
    message_id: str
    content_type: str
    body: bytes
    from_path: list[str]


@dataclass(frozen=True, slots=True)
class MessageAborted:
    message_id: str
    received: int  # octets held when the sender aborted


@dataclass(frozen=True, slots=True)
class ReportReceived:
    message_id: str
    status: int
    byte_range: tuple[int, int | None, int | None] | None


@dataclass(frozen=True, slots=True)
class RequestReceived:
    msg: Any  # an MsrpMessage of another method (answer with respond)


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """The answer to a ``request`` (408 when none came within ``timeout``)."""

    tid: str
    status: int
    comment: str


@dataclass(frozen=True, slots=True)
class Closed:
    reason: str


Event = (
    Authenticated | AuthRejected | MessageSent | MessageFailed | MessageReceived | MessageAborted
    | ReportReceived | RequestReceived | ResponseReceived | Closed
)  # fmt: skip


class MsrpSendError(SimplefastError):
    """A message was refused or timed out (``MessageFailed``)."""


# ---------------------------------------------------------------- state


@dataclass(slots=True)
class _Outgoing:
    message_id: str
    pending: set[str]  # tids without their response yet
    deadline: float
    failed: bool = False


@dataclass(slots=True)
class _Incoming:
    content_type: str
    total: int | None
    from_path: list[str]
    last: float  # when its last chunk came
    parts: dict[int, bytes] = field(default_factory=dict)  # start offset (0-based) -> data
    held: int = 0
    last_seen: bool = False
    success_report: bool = False


@dataclass(slots=True)
class _Auth:
    tid: str
    relay_uri: str
    username: str
    password: str
    retried: bool = False


def _failure_report(msg: Any) -> str:
    v = (msg.get("Failure-Report") or "yes").strip().lower()
    return v if v in ("yes", "no", "partial") else "yes"


class MsrpSession:
    """One endpoint of one MSRP session (see the module docstring)."""

    def __init__(
        self, local_uri: str, *, to_path: list[str] | None = None, chunk_size: int = DEFAULT_CHUNK,
        timeout: float = DEFAULT_TIMEOUT, max_message: int = 64 << 20, max_incoming: int = 16,
        max_idle: float = DEFAULT_IDLE, accept_types: tuple[str, ...] = ("*",),
        new_tid: Callable[[], str] | None = None,
    ) -> None:  # fmt: skip
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self.local_uri = local_uri
        self.to_path: list[str] = list(to_path or [])
        self.chunk_size = chunk_size
        self.timeout = timeout
        self.max_message = max_message
        self.max_incoming = max_incoming
        self.max_idle = max_idle
        self.accept_types = tuple(t.strip().lower() for t in accept_types)
        prefix, seq = secrets.token_hex(4), itertools.count(1)
        self._new_tid = new_tid or (lambda: f"{prefix}{next(seq):x}")
        self._mids = itertools.count(1)
        self._mid_prefix = secrets.token_hex(6)
        self._parser = msrpframe.MsrpParser()
        self._out: list[bytes] = []
        self._events: deque[Event] = deque()
        self._sent: dict[str, _Outgoing] = {}  # tid -> the message it is a chunk of
        self._messages: dict[str, _Outgoing] = {}  # message id -> its state
        self._incoming: OrderedDict[str, _Incoming] = OrderedDict()
        self._auth: _Auth | None = None
        self._requests: dict[str, float] = {}  # tid of a request() -> when it times out
        self.closed_reason: str | None = None

    # ------------------------------------------------------------ caller API
    def outgoing(self) -> bytes:
        """The octets to write, in order; clears them."""
        out, self._out = self._out, []
        return b"".join(out)

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        live = [m.deadline for m in self._messages.values() if m.pending and not m.failed]
        if self._incoming:
            live.append(next(iter(self._incoming.values())).last + self.max_idle)
        live.extend(self._requests.values())
        return min(live) if live else None

    def handle_timer(self, now: float) -> None:
        for m in list(self._messages.values()):
            if m.pending and not m.failed and m.deadline <= now:
                self._fail(m, 408, "Request Timeout")
        for tid, t in list(self._requests.items()):
            if t <= now:
                del self._requests[tid]
                self._events.append(ResponseReceived(tid, 408, "Request Timeout"))
        inc = self._incoming
        while inc and next(iter(inc.values())).last + self.max_idle <= now:
            inc.popitem(last=False)  # the oldest activity first: see _send_in

    def closed(self, reason: str = "connection closed") -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
            self._events.append(Closed(reason))

    def authenticate(self, relay_uri: str, username: str, password: str) -> None:
        """AUTH to our relay (RFC 4976 section 5): ``Authenticated`` or ``AuthRejected`` follows."""
        tid = self._new_tid()
        self._auth = _Auth(tid, relay_uri, username, password)
        self._out.append(msrpframe.build_request(tid, "AUTH", [relay_uri], [self.local_uri]))

    def send_message(
        self, content_type: str, body: bytes, now: float, *, message_id: str | None = None,
        failure_report: str = "yes", success_report: bool = False,
    ) -> str:  # fmt: skip
        """Queue a message in chunks; returns its Message-ID."""
        if not self.to_path:
            raise ValueError("no To-Path: set to_path first")
        if failure_report not in ("yes", "no", "partial"):
            raise ValueError(f"Failure-Report {failure_report!r}")
        mid = message_id or f"{self._mid_prefix}{next(self._mids):x}"
        if mid in self._messages:
            raise ValueError(f"Message-ID {mid!r} is still being sent")
        extra: list[tuple[str, str]] = []
        if failure_report != "yes":
            extra.append(("Failure-Report", failure_report))
        if success_report:
            extra.append(("Success-Report", "yes"))
        state = _Outgoing(mid, set(), now + self.timeout)
        total = len(body)
        size = self.chunk_size
        starts = range(0, total, size) if total else range(1)
        for start in starts:
            piece = body[start : start + size]
            last = start + size >= total
            end = start + len(piece)
            headers = [("Message-ID", mid), ("Byte-Range", f"{start + 1}-{end}/{total}"), *extra]
            for _ in range(16):
                tid = self._new_tid()
                try:
                    data = msrpframe.build_request(tid, "SEND", self.to_path, [self.local_uri], headers,
                                                   content_type=content_type, body=piece,
                                                   flag="$" if last else "+")  # fmt: skip
                    break
                except ValueError:  # the data holds this tid's end-line: another tid
                    continue
            else:
                raise RuntimeError("new_tid gave 16 unusable transaction ids in a row")
            self._out.append(data)
            if failure_report == "yes":
                state.pending.add(tid)
                self._sent[tid] = state
        if failure_report == "yes":
            self._messages[mid] = state
        return mid

    def bind(self, now: float) -> str:
        """The active side's first request (RFC 4975 section 7.1.1): a SEND without data,
        so the far end learns the connection; ``MessageSent`` when its 200 comes."""
        if not self.to_path:
            raise ValueError("no To-Path: set to_path first")
        mid = f"{self._mid_prefix}{next(self._mids):x}"
        tid = self._new_tid()
        headers = [("Message-ID", mid), ("Byte-Range", "1-0/0")]
        self._out.append(msrpframe.build_request(tid, "SEND", self.to_path, [self.local_uri], headers))
        state = _Outgoing(mid, {tid}, now + self.timeout)
        self._sent[tid] = state
        self._messages[mid] = state
        return mid

    def request(self, method: str, headers: list[tuple[str, str]], now: float) -> str:
        """Send a request of another method along ``to_path`` (RFC 7701's NICKNAME, say);
        its answer comes out as ``ResponseReceived`` with the returned transaction id."""
        if not self.to_path:
            raise ValueError("no To-Path: set to_path first")
        tid = self._new_tid()
        self._out.append(msrpframe.build_request(tid, method, self.to_path, [self.local_uri], headers))
        self._requests[tid] = now + self.timeout
        return tid

    def respond(self, msg: Any, status: int, comment: str | None = None) -> None:
        """Answer a request that came out as ``RequestReceived`` (end to end)."""
        self._out.append(msrpframe.build_response(msg.tid, status, comment, msg.from_path, [self.local_uri]))

    def data(self, octets: bytes | bytearray | memoryview, now: float) -> None:
        """Octets read from the connection."""
        if self.closed_reason is not None:
            return
        try:
            msgs = self._parser.feed(octets)
        except msrpframe.MsrpFramingError as exc:
            self.closed(f"framing error: {exc}")
            return
        for msg in msgs:
            try:
                if msg.is_request:
                    self._request(msg, now)
                else:
                    self._response(msg, now)
            except msrpframe.MsrpFramingError as exc:  # e.g. a malformed Byte-Range
                self.closed(f"framing error: {exc}")
                return

    # ------------------------------------------------------------ internals
    def _request(self, msg: Any, now: float) -> None:
        method = msg.method
        # RFC 4975 7.3: a request must be for us (481) and, once we know the peer's path,
        # from it (403); REPORTs are never answered, a SEND with Failure-Report no neither
        status = 0
        to = msg.to_path
        if len(to) != 1 or not _same_uri(to[0], self.local_uri):
            status = 481
        elif self.to_path and not _same_path(msg.from_path, self.to_path):
            # a REPORT a relay on our path made (RFC 4976: its From-Path is that relay and the
            # hops before it, a beginning of our To-Path) is from the path too
            frm = msg.from_path
            relay_made = method == "REPORT" and 0 < len(frm) < len(self.to_path)
            if not (relay_made and _same_path(frm, self.to_path[: len(frm)])):
                status = 403
        if status:
            if (
                method != "REPORT"
                and msg.from_path
                and not (method == "SEND" and _failure_report(msg) == "no")
            ):
                if method == "SEND":
                    self._answer(msg, status)
                else:
                    self.respond(msg, status)
            return
        if method == "SEND":
            self._send_in(msg, now)
        elif method == "REPORT":
            fields = (msg.get("Status") or "").split()
            code = int(fields[1]) if len(fields) >= 2 and fields[1].isascii() and fields[1].isdigit() else 0
            self._events.append(ReportReceived(msg.message_id or "", code, msg.byte_range))
        else:
            self._events.append(RequestReceived(msg))

    def _answer(self, msg: Any, status: int, comment: str | None = None) -> None:
        # SEND responses are hop by hop: To-Path is the first From-Path URI (RFC 4975 7.2)
        self._out.append(
            msrpframe.build_response(msg.tid, status, comment, msg.from_path[:1], [self.local_uri])
        )

    def _send_in(self, msg: Any, now: float) -> None:
        fr = _failure_report(msg)
        mid = msg.message_id
        if mid is None or not msg.from_path:
            if fr != "no" and msg.from_path:
                self._answer(msg, 400, "Message-ID missing")
            return
        br = msg.byte_range
        body = bytes(msg.body)
        start = 1 if br is None else br[0]
        total = None if br is None else br[2]
        if br is None and msg.flag == "$":
            total = len(body)
        if start < 1 or (total is not None and start - 1 + len(body) > total):
            if fr != "no":
                self._answer(msg, 400, "Byte-Range does not fit")
            return
        if not msg.has_content:  # binds the connection (7.1.1): nothing to deliver
            if fr == "yes":
                self._answer(msg, 200, "OK")
            return
        inc = self._incoming.get(mid)
        if inc is None and not _accepts(self.accept_types, msg.content_type):
            if fr != "no":
                self._answer(msg, 415, "Unsupported Media Type")
            return
        held = 0 if inc is None else inc.held
        if (
            (total or 0) > self.max_message
            or start - 1 + len(body) > self.max_message
            or (held + len(body) > self.max_message and (inc is None or start - 1 not in inc.parts))
        ):  # past the bound (overlapping chunks count each time: what is held is bounded)
            self._incoming.pop(mid, None)
            if fr != "no":
                self._answer(msg, 413, "Message too large")
            return
        if inc is None:
            inc = _Incoming(msg.content_type or "text/plain", total, list(msg.from_path), now)
            self._incoming[mid] = inc
            while len(self._incoming) > self.max_incoming:
                self._incoming.popitem(last=False)
        else:  # kept in order of last activity: the idle timer looks at the first one
            inc.last = now
            self._incoming.move_to_end(mid)
        if fr == "yes":
            self._answer(msg, 200, "OK")
        if msg.flag == "#":
            self._incoming.pop(mid, None)
            self._events.append(MessageAborted(mid, inc.held))
            return
        if start - 1 not in inc.parts:
            inc.parts[start - 1] = body
            inc.held += len(body)
        if total is not None:
            inc.total = total
        if (msg.get("Success-Report") or "").strip().lower() == "yes":
            inc.success_report = True
        if msg.flag == "$":
            inc.last_seen = True
            if inc.total is None:
                inc.total = start - 1 + len(body)
        self._maybe_complete(mid, inc)

    def _maybe_complete(self, mid: str, inc: _Incoming) -> None:
        if not inc.last_seen or inc.total is None or inc.held < inc.total:
            return
        pos, pieces = 0, []
        for off in sorted(inc.parts):
            if off > pos:
                return  # a gap: a chunk still on its way
            piece = inc.parts[off]
            if off + len(piece) > pos:
                pieces.append(piece[pos - off :])
                pos = off + len(piece)
        if pos < inc.total:
            return
        del self._incoming[mid]
        body = b"".join(pieces)[: inc.total]
        if inc.success_report:
            tid = self._new_tid()
            self._out.append(msrpframe.build_request(
                tid, "REPORT", inc.from_path, [self.local_uri],
                [("Message-ID", mid), ("Byte-Range", f"1-{inc.total}/{inc.total}"), ("Status", "000 200 OK")],
            ))  # fmt: skip
        self._events.append(MessageReceived(mid, inc.content_type, body, inc.from_path))

    def _response(self, msg: Any, now: float) -> None:
        auth = self._auth
        if auth is not None and msg.tid == auth.tid:
            self._auth_response(auth, msg)
            return
        if self._requests.pop(msg.tid, None) is not None:
            self._events.append(ResponseReceived(msg.tid, msg.status or 0, msg.comment or ""))
            return
        state = self._sent.pop(msg.tid, None)
        if state is None:
            return
        state.pending.discard(msg.tid)
        if state.failed:
            return
        if msg.status != 200:
            self._fail(state, msg.status or 0, msg.comment or "")
            return
        if not state.pending:
            del self._messages[state.message_id]
            self._events.append(MessageSent(state.message_id))

    def _fail(self, state: _Outgoing, status: int, comment: str) -> None:
        state.failed = True
        for tid in state.pending:
            self._sent.pop(tid, None)
        state.pending.clear()
        self._messages.pop(state.message_id, None)
        self._events.append(MessageFailed(state.message_id, status, comment))

    def _auth_response(self, auth: _Auth, msg: Any) -> None:
        status = msg.status or 0
        if status == 401 and not auth.retried:
            cred = _digest_answer(msg.get_all("WWW-Authenticate"), auth)
            if cred is not None:
                auth.retried = True
                auth.tid = self._new_tid()
                self._out.append(msrpframe.build_request(
                    auth.tid, "AUTH", [auth.relay_uri], [self.local_uri], [("Authorization", cred)]
                ))  # fmt: skip
                return
        self._auth = None
        if status == 200:
            use = (msg.get("Use-Path") or "").split()
            exp = msg.get("Expires")
            ok = exp is not None and exp.isascii() and exp.isdigit()
            self._events.append(Authenticated(use, int(exp) if ok and exp is not None else None))
        else:
            self._events.append(AuthRejected(status, msg.comment or ""))


def _split_uri(uri: str) -> tuple[str, str]:
    """(scheme://authority lower-cased, the rest as written): RFC 4975 6.1 compares the
    scheme and host case-insensitively, the session id and the rest exactly."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri, ""
    authority, slash, tail = rest.partition("/")
    return f"{scheme}://{authority}".lower(), slash + tail


def _same_uri(a: str, b: str) -> bool:
    return a == b or _split_uri(a) == _split_uri(b)


def _same_path(a: list[str], b: list[str]) -> bool:
    return len(a) == len(b) and all(_same_uri(x, y) for x, y in zip(a, b, strict=True))


def _accepts(accept: tuple[str, ...], content_type: str | None) -> bool:
    """A media type against an ``a=accept-types`` list (``*``, ``type/*``, ``type/sub``)."""
    ct = (content_type or "").split(";", 1)[0].strip().lower()
    for a in accept:
        if a == "*" or a == ct or (a.endswith("/*") and ct.startswith(a[:-1])):
            return True
    return False


def _digest_answer(challenges: list[str], auth: _Auth) -> str | None:
    """Credentials for the first challenge we can answer (SHA-256 preferred, qop=auth)."""
    best: dict[str, str] | None = None
    for c in challenges:
        p = parse_digest(c)
        if p is None or "nonce" not in p or "realm" not in p:
            continue
        alg = p.get("algorithm", "MD5").upper()
        if alg not in ("MD5", "SHA-256") or "auth" not in [
            q.strip() for q in p.get("qop", "auth").split(",")
        ]:
            continue
        if best is None or alg == "SHA-256":
            best = {**p, "algorithm": alg}
    if best is None:
        return None
    alg, realm, nonce = best["algorithm"], best["realm"], best["nonce"]
    cnonce, nc = secrets.token_hex(8), "00000001"
    a1 = ha1(alg, auth.username, realm, auth.password)
    a2 = h(alg, f"AUTH:{auth.relay_uri}")
    response = h(alg, f"{a1}:{nonce}:{nc}:{cnonce}:auth:{a2}")
    out = (f'Digest username="{auth.username}", realm="{realm}", nonce="{nonce}", qop=auth, nc={nc}, '
           f'cnonce="{cnonce}", response="{response}", algorithm={alg}')  # fmt: skip
    if "opaque" in best:
        out += f', opaque="{best["opaque"]}"'
    return out


# ---------------------------------------------------------------- asyncio


def session_id(uri: str) -> str:
    """The session id of an MSRP URI: its path between the authority and ``;`` ("" if none)."""
    _, sep, rest = uri.partition("://")
    if not sep:
        return ""
    _, slash, tail = rest.partition("/")
    return tail.partition(";")[0] if slash else ""


_REFUSALS = {403: "Forbidden", 481: "Session Does Not Exist"}


class _MsrpConnection(asyncio.Protocol):
    """One MSRP connection and the sessions on it, keyed by session id: frames what it
    reads once and hands each message to the session its To-Path names (module docstring)."""

    def __init__(self, listener: MsrpListener | None = None) -> None:
        self.listener = listener
        self.parser = msrpframe.MsrpParser()
        self.transport: asyncio.Transport | None = None
        self.endpoints: dict[str, MsrpEndpoint] = {}
        self._loop = asyncio.get_running_loop()
        self.lost: asyncio.Future[None] = self._loop.create_future()

    # ---- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        for ep in self.endpoints.values():
            ep.transport = self.transport
        if self.listener is not None:
            self.listener._conns.add(self)

    def data_received(self, data: bytes) -> None:
        now = self._loop.time()
        try:
            msgs = self.parser.feed(data)
        except msrpframe.MsrpFramingError as exc:  # the stream is lost for every session on it
            self._end_all(f"framing error: {exc}")
            self.close()
            return
        for msg in msgs:
            self._route(msg, now)

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_all("connection closed" if exc is None else f"connection lost: {exc}")
        if self.listener is not None:
            self.listener._conns.discard(self)
        if not self.lost.done():
            self.lost.set_result(None)

    # ---- sessions
    def add(self, ep: MsrpEndpoint) -> None:
        sid = session_id(ep.session.local_uri)
        if sid in self.endpoints:
            raise ValueError(f"session id {sid!r} is already on this connection")
        self.endpoints[sid] = ep
        ep._conn = self
        ep.transport = self.transport
        ep._ever_bound = True
        if not ep._bound.done():
            ep._bound.set_result(None)

    def remove(self, ep: MsrpEndpoint) -> None:
        """``ep`` leaves; a connection no session uses any more is closed (RFC 4975 section 5.4)."""
        sid = session_id(ep.session.local_uri)
        if self.endpoints.get(sid) is ep:
            del self.endpoints[sid]
        if not self.endpoints:
            self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()  # connection_lost ends the sessions left on it
        else:
            self._end_all("connection closed")

    def _end_all(self, reason: str) -> None:
        eps = list(self.endpoints.values())
        self.endpoints.clear()
        for ep in eps:
            ep._detached(reason)

    # ---- demultiplexing
    def _route(self, msg: Any, now: float) -> None:
        to = msg.to_path
        sid = session_id(to[0]) if to else None
        ep = self.endpoints.get(sid) if sid is not None else None
        status = 481
        if ep is None and sid is not None and msg.is_request and self.listener is not None:
            ep, status = self.listener._claim(sid, msg, self)
        if ep is None:
            if msg.is_request:
                self._refuse(msg, status)
            else:  # matched by tid, which each session draws with its own random prefix
                octets = msg.to_bytes()
                for other in list(self.endpoints.values()):
                    other._data(octets, now)
            return
        ep._data(msg.to_bytes(), now)
        if ep.session.closed_reason is not None:  # e.g. a malformed Byte-Range ended it
            self.remove(ep)
            ep._detached(ep.session.closed_reason)

    def _refuse(self, msg: Any, status: int) -> None:
        """Answer a request no session on this connection takes (RFC 4975 section 7.3)
        as ``MsrpSession`` answers one not for it: never a REPORT or a SEND with
        Failure-Report no; a SEND's answer hop by hop, another method's end to end."""
        method, frm, to = msg.method, msg.from_path, msg.to_path
        if method == "REPORT" or not frm or not to or (method == "SEND" and _failure_report(msg) == "no"):
            return
        back = frm[:1] if method == "SEND" else frm
        out = msrpframe.build_response(msg.tid, status, _REFUSALS[status], back, to[:1])
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)


class MsrpListener:
    """The passive side (RFC 6135 ``a=setup:passive``): accepts connections and binds each
    session it expects to the connection its first request comes on (module docstring)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.host = ""
        self.port = 0
        self.server: asyncio.AbstractServer | None = None
        self._expected: dict[str, MsrpEndpoint] = {}  # session id -> a handle not bound yet
        self._conns: set[_MsrpConnection] = set()
        self._closed = False

    @classmethod
    async def start(cls, host: str, port: int, *, tls: ssl.SSLContext | None = None) -> MsrpListener:
        """Listen on ``host``:``port`` (0: any free port, then read ``.port``).

        Args:
            host: the address to bind.
            port: the TCP port; 0 for an ephemeral one.
            tls: a server context for ``msrps`` (None: plain TCP).

        Returns:
            The listening ``MsrpListener``.

        Raises:
            OSError: the address cannot be bound.
        """
        self = cls(tls)
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _MsrpConnection(self), host, port, ssl=tls)
        self.host, self.port = host, int(self.server.sockets[0].getsockname()[1])
        return self

    def uri(self, session_id: str | None = None) -> str:
        """A path URI on this listener, ``msrp[s]://host:port/<session id>;tcp`` (our
        ``a=path``); a fresh random session id unless one is given."""
        scheme = "msrps" if self.tls is not None else "msrp"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/{session_id or secrets.token_hex(8)};tcp"

    def expect(self, local_uri: str, *, to_path: list[str] | None = None, **session_kw: Any) -> MsrpEndpoint:
        """Register a session we answered for: the first request whose To-Path names
        ``local_uri`` (on any accepted connection) binds it to that connection.

        Args:
            local_uri: our path URI; its session id must be new to this listener.
            to_path: the peer's path if known (its first request must then come from it,
                else 403); None: learnt from that request's From-Path.
            session_kw: more ``MsrpSession`` arguments (chunk_size, timeout, ...).

        Returns:
            The session's ``MsrpEndpoint``; ``await connected()`` waits for the binding.

        Raises:
            ValueError: no session id in ``local_uri``, or one in use; the listener is closed.
        """
        if self._closed:
            raise ValueError("the listener is closed")
        sid = session_id(local_uri)
        if not sid:
            raise ValueError(f"{local_uri!r} has no session id")
        if sid in self._expected or any(sid in c.endpoints for c in self._conns):
            raise ValueError(f"session id {sid!r} is in use")
        ep = MsrpEndpoint(MsrpSession(local_uri, to_path=to_path, **session_kw))
        ep._listener = self
        self._expected[sid] = ep
        return ep

    def close(self) -> None:
        """Stop listening, forget the sessions not bound yet and close every connection."""
        self._closed = True
        if self.server is not None:
            self.server.close()
        expected = list(self._expected.values())
        self._expected.clear()
        for ep in expected:
            ep._detached("listener closed")
        for conn in list(self._conns):
            conn.close()

    async def wait_closed(self) -> None:
        conns = [c.lost for c in self._conns]
        if self.server is not None:
            await self.server.wait_closed()
        if conns:
            await asyncio.gather(*conns)

    def _claim(self, sid: str, msg: Any, conn: _MsrpConnection) -> tuple[MsrpEndpoint | None, int]:
        """The expected session a request on ``conn`` binds, or None and the status to refuse it."""
        ep = self._expected.get(sid)
        if ep is None:
            return None, 481
        s = ep.session
        to, frm = msg.to_path, msg.from_path
        if len(to) != 1 or not _same_uri(to[0], s.local_uri) or not frm:
            return None, 481  # not for us as we wrote ourselves (RFC 4975 section 6.1)
        if s.to_path and not _same_path(frm, s.to_path):
            return None, 403  # section 7.3: not from the path we were given; does not bind
        del self._expected[sid]
        if not s.to_path:  # direct or through relays alike: what we send goes back along it
            s.to_path = list(frm)
        conn.add(ep)
        return ep, 0

    def _forget(self, ep: MsrpEndpoint) -> None:
        sid = session_id(ep.session.local_uri)
        if self._expected.get(sid) is ep:
            del self._expected[sid]


class MsrpEndpoint(asyncio.Protocol):
    """One ``MsrpSession`` over an asyncio connection, possibly shared (module docstring)."""

    def __init__(self, session: MsrpSession) -> None:
        self.session = session
        self.transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._waiters: dict[str, asyncio.Future[Event]] = {}  # message id -> MessageSent/Failed
        self._auth_waiter: asyncio.Future[Event] | None = None
        self._received: asyncio.Queue[MessageReceived] = asyncio.Queue()
        self.other_events: deque[Event] = deque()  # reports, aborts, other requests
        self._other_ready: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._armed: float | None = None
        self._lost = self._loop.create_future()
        self._conn: _MsrpConnection | None = None  # the connection carrying the session
        self._own: _MsrpConnection | None = None  # when this object is itself the protocol
        self._listener: MsrpListener | None = None  # the listener expecting it (passive side)
        self._bound: asyncio.Future[None] = self._loop.create_future()  # done: bound, or ended
        self._ever_bound = False

    @classmethod
    async def connect(
        cls, host: str, port: int, local_uri: str, *, tls: ssl.SSLContext | None = None, **kw: Any
    ) -> MsrpEndpoint:
        """Open a connection as the active side and put a new session on it."""
        loop = asyncio.get_running_loop()
        ep = cls(MsrpSession(local_uri, **kw))
        conn = _MsrpConnection()
        conn.add(ep)  # before connection_made: nothing read can find no session
        await loop.create_connection(lambda: conn, host, port, ssl=tls)
        return ep

    @classmethod
    def attach(cls, other: MsrpEndpoint, local_uri: str, *, to_path: list[str], **kw: Any) -> MsrpEndpoint:
        """Another session on ``other``'s connection (``a=connection:existing``, RFC 6135).

        Args:
            other: an endpoint whose connection is open (either side).
            local_uri: our path URI for the new session; its session id must differ from
                those of the sessions already on the connection (messages are told apart by it).
            to_path: the To-Path of what the new session sends.
            kw: more ``MsrpSession`` arguments.

        Returns:
            The new session's ``MsrpEndpoint``.

        Raises:
            ConnectionError: ``other`` has no open connection.
            ValueError: the session id is in use on that connection.
        """
        conn = other._conn
        if conn is None or conn.transport is None or conn.transport.is_closing():
            raise ConnectionError("attach: that endpoint has no open connection")
        ep = cls(MsrpSession(local_uri, to_path=to_path, **kw))
        conn.add(ep)
        return ep

    # ---- asyncio.Protocol, when an MsrpEndpoint itself is given to create_connection
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._own = _MsrpConnection()
        self._own.add(self)
        self._own.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._own is not None:
            self._own.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._own is not None:
            self._own.connection_lost(exc)

    # ---- API
    async def connected(self) -> None:
        """Wait until the session has its connection: at once on the active side; for a
        session a listener expects, until the first request naming it (the binding
        request, RFC 4975 section 7.1.1).

        Raises:
            MsrpSendError: the session ended before it was bound.
        """
        await asyncio.shield(self._bound)
        if not self._ever_bound:
            raise MsrpSendError(f"not connected: {self.session.closed_reason}")

    async def authenticate(self, relay_uri: str, username: str, password: str) -> Authenticated:
        self._check_open("AUTH")
        self._auth_waiter = self._loop.create_future()
        self.session.authenticate(relay_uri, username, password)
        self._pump()
        ev = await self._auth_waiter
        if isinstance(ev, AuthRejected):
            raise MsrpSendError(f"AUTH refused: {ev.status} {ev.comment}")
        if isinstance(ev, Closed):
            raise MsrpSendError(f"AUTH: {ev.reason}")
        assert isinstance(ev, Authenticated)
        return ev

    async def send(self, content_type: str, body: bytes, **kw: Any) -> str:
        """Send a message and wait for all its chunks' 200s (Failure-Report yes)."""
        self._check_open("send")
        mid = self.session.send_message(content_type, body, self._loop.time(), **kw)
        if kw.get("failure_report", "yes") != "yes":
            self._pump()
            return mid
        fut: asyncio.Future[Event] = self._loop.create_future()
        self._waiters[mid] = fut
        self._pump()
        ev = await fut
        if isinstance(ev, MessageFailed):
            raise MsrpSendError(f"message {mid}: {ev.status} {ev.comment}")
        if isinstance(ev, Closed):
            raise MsrpSendError(f"message {mid}: {ev.reason}")
        return mid

    async def bind(self) -> None:
        """As the active side, send the empty SEND that binds the connection (RFC 4975
        section 7.1.1) and wait for its 200."""
        self._check_open("bind")
        mid = self.session.bind(self._loop.time())
        fut: asyncio.Future[Event] = self._loop.create_future()
        self._waiters[mid] = fut
        self._pump()
        ev = await fut
        if not isinstance(ev, MessageSent):
            raise MsrpSendError(f"bind: {ev}")

    async def request(self, method: str, headers: list[tuple[str, str]]) -> tuple[int, str]:
        """Send a request of another method (``MsrpSession.request``); its (status, comment)."""
        self._check_open(method)
        tid = self.session.request(method, headers, self._loop.time())
        fut: asyncio.Future[Event] = self._loop.create_future()
        self._waiters[tid] = fut
        self._pump()
        ev = await fut
        if isinstance(ev, Closed):
            raise MsrpSendError(f"{method}: {ev.reason}")
        assert isinstance(ev, ResponseReceived)
        return ev.status, ev.comment

    def respond(self, msg: Any, status: int, comment: str | None = None) -> None:
        """Answer a request that came out as ``RequestReceived`` (``MsrpSession.respond``)."""
        self.session.respond(msg, status, comment)
        self._pump()

    async def receive(self) -> MessageReceived:
        return await self._received.get()

    async def other_event(self) -> Event:
        """The next of ``other_events`` (a REPORT, an abort, a request to ``respond`` to),
        waiting for one.

        Raises:
            MsrpSendError: none is left and the session has ended.
        """
        while not self.other_events:
            if self.session.closed_reason is not None:
                raise MsrpSendError(f"no more events: {self.session.closed_reason}")
            self._other_ready = self._loop.create_future()
            await asyncio.shield(self._other_ready)
        return self.other_events.popleft()

    async def drain(self) -> None:
        """Wait until the transport's buffer is written (back-pressure for bulk senders)."""
        t = self.transport
        while t is not None and not t.is_closing() and t.get_write_buffer_size() > (1 << 20):
            await asyncio.sleep(0.005)

    def close(self) -> None:
        """End this session. On a connection other sessions still use (RFC 6135
        ``a=connection:existing``) only the session ends; with the last one the connection
        closes (RFC 4975 section 5.4). A session a listener still expects is forgotten."""
        conn = self._conn
        if conn is None:
            if self._listener is not None:
                self._listener._forget(self)
            self._detached("closed")
        elif len(conn.endpoints) > 1:
            conn.remove(self)
            self._detached("session closed")
        else:
            conn.close()

    async def wait_closed(self) -> None:
        """Wait until the session has ended (with the last one, its connection is gone)."""
        await asyncio.shield(self._lost)

    # ---- plumbing
    def _check_open(self, what: str) -> None:
        if self.session.closed_reason is not None:
            raise MsrpSendError(f"{what}: {self.session.closed_reason}")
        if not self._ever_bound:
            raise MsrpSendError(f"{what}: not connected yet (await connected())")

    def _data(self, octets: bytes, now: float) -> None:
        """One whole message for this session, from the connection's demultiplexer."""
        self.session.data(octets, now)
        self._pump()

    def _detached(self, reason: str) -> None:
        """The session has left its connection (or the listener): it ends."""
        self._conn = None
        self.session.closed(reason)
        self._pump()
        self.transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._armed = None
        for fut in (self._bound, self._lost, self._other_ready):
            if fut is not None and not fut.done():
                fut.set_result(None)

    def _pump(self) -> None:
        s = self.session
        out = s.outgoing()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)
        while (ev := s.next_event()) is not None:
            if isinstance(ev, MessageReceived):
                self._received.put_nowait(ev)
            elif isinstance(ev, ResponseReceived):
                fut = self._waiters.pop(ev.tid, None)
                if fut is not None and not fut.done():
                    fut.set_result(ev)
            elif isinstance(ev, MessageSent | MessageFailed):
                fut = self._waiters.pop(ev.message_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(ev)
            elif isinstance(ev, Authenticated | AuthRejected):
                if self._auth_waiter is not None and not self._auth_waiter.done():
                    self._auth_waiter.set_result(ev)
            elif isinstance(ev, Closed):
                for fut in [*self._waiters.values(), *([self._auth_waiter] if self._auth_waiter else [])]:
                    if not fut.done():
                        fut.set_result(ev)
                self._waiters.clear()
                if self._other_ready is not None and not self._other_ready.done():
                    self._other_ready.set_result(None)
            else:
                self.other_events.append(ev)
                if self._other_ready is not None and not self._other_ready.done():
                    self._other_ready.set_result(None)
        t = s.get_timer() if s.closed_reason is None else None  # an ended session waits for nothing
        if t != self._armed:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if t is not None:
                self._timer = self._loop.call_at(t, self._on_timer)
            self._armed = t

    def _on_timer(self) -> None:
        self._timer = None
        self._armed = None
        self.session.handle_timer(self._loop.time())
        self._pump()
