"""Multi-party chat focus (RFC 7701): the message handling of one chat room, sans-IO.

Theory of operation
-------------------
A :class:`ChatRoom` is one chat room (one conference URI, RFC 7701 section 4): the
MSRP switch of the focus for that room. Every participant has one MSRP session with
the focus; the caller (later: the SIP INVITE/SDP side) creates the focus's end of it,
an :class:`~simplefast.msrp.endpoint.MsrpSession` with ``local_uri`` our ``a=path``
and ``to_path`` the participant's, and hands it over with ``join(uri, session)``.
From then on the room owns the session's I/O:

- ``data(uri, octets, now)``: octets read from that participant's connection;
  ``outgoing(uri)``: the octets to write to it; ``closed(uri, reason)``: the connection
  is gone; ``get_timer()`` / ``handle_timer(now)``: every session's timers;
  ``next_event()``: what happened (``MessageRelayed``, ``MessageRefused``,
  ``DeliveryFailed``, ``NicknameChanged``, ``ParticipantLeft``).
- ``participants()``: (URI, nickname, private-messages support) of everyone in the
  room, in join order: what the conference event package (RFC 4575 with the RFC 7701
  section 7.4 nickname) will publish. ``leave(uri)`` removes one (SIP BYE).

Incoming octets go through a framer of the room's own first (the "screen") and then,
message by message, to the session. The screen exists because the session answers
every SEND chunk 200 at once: a chunk the room must refuse is answered by the room
(hop by hop, To-Path the first From-Path URI, RFC 4975 section 7.2) and never reaches
the session. Everything else (NICKNAME, REPORT, responses, later chunks) passes.

Messages (RFC 7701 section 6)
    Every message in the room is ``message/cpim`` (section 6: the focus offers only
    that type, the real content is wrapped in it). The first chunk of a SEND whose
    type is something else gets 415. The CPIM headers of the first chunk are read as
    far as they came in it (a message in one chunk is parsed whole with
    :func:`simplefast.im.cpim.parse_cpim`):

    - CPIM ``From`` must be the sender's URI, the one it joined with (section 6.1;
      compared as an identity: scheme, user and host, parameters ignored, so
      ``sip:alice@atlanta.example.com`` matches ``<sip:alice@atlanta.example.com>``
      whatever display name or URI parameters are written): else 403. Missing or
      unreadable: 400. The display name is not checked (a participant may put its
      nickname there).
    - CPIM ``To`` the room URI (same comparison: RFC 7701's own example writes
      ``;transport=tcp`` on it, section 9.3): a regular message, sent to every other
      participant (not back to the sender). No ``To`` at all: also a regular message
      (*choice*: the session is with the room, so the room is the implied recipient).
    - CPIM ``To`` another participant's URI: a private message (section 6.2), sent to
      that participant only. 428 (Private messages not supported) when the room does
      not allow them (``ChatConfig.private_messages``) or the recipient did not offer
      the ``private-messages`` token of ``a=chatroom`` (section 8; ``join(...,
      private_messages=True)``). Unknown URI: 404 (Failure to resolve recipient's
      URI). Extension (``ChatConfig.nickname_addressing``, on by default): a ``To``
      whose URI is nobody's but whose display name is a participant's nickname
      (compared as nicknames are) addresses that participant.
    - *Choices* where the RFC is silent: more than one distinct recipient (several
      ``To``, or the room and a participant) gets 403 (section 6.2 private messages
      have one recipient; a client sends one message per recipient); a private
      message to oneself gets 403.

    The focus forwards the CPIM body unchanged, octet for octet: ``From`` stays the
    sender's URI (so the recipients know who spoke), ``To`` and ``DateTime`` are kept
    (RFC 7701 section 9.3, F3 is F1's body). It is sent as a new message (a new
    Message-ID, the focus's own chunking) with Failure-Report yes; a recipient's
    failure comes out as ``DeliveryFailed`` and is not reported to the sender
    (section 6.3: responses and reports are hop by hop; the sender got its 200 from
    the switch).

    A message whose first chunk does not carry enough of the CPIM header block to
    decide is accepted chunk by chunk and decided when whole; refused then, it is
    dropped without a word on the wire (the 200s are gone) and ``MessageRefused``
    says ``answered=False``. Later chunks of a refused message get the same status.
    With ``Failure-Report: no`` a refusal is silent too (RFC 4975 section 7.1.2).

Nicknames (RFC 7701 section 7)
    ``NICKNAME`` with one ``Use-Nickname: "quoted-string"`` header. 200 when granted;
    425 (Nickname reserved or already in use) when another participant holds it or
    ``ChatConfig.reserved_nicknames`` keeps it for another URI (or for nobody); 424
    (Malformed nickname) when it is not a quoted-string or is not a valid nickname
    (below); 423 (Parameter out of bounds) past ``ChatConfig.max_nickname``
    characters (*choice*: the size bound is RFC 4975's out-of-bounds case); 400 when
    the header is missing or repeated; 403 when the room has nicknames off
    (*choice*). A granted nickname replaces the participant's previous one, which is
    free again; ``Use-Nickname: ""`` drops it (*choice*: an empty nickname is never a
    valid one, so it can only mean "none"); leaving frees it. Other methods get 501.

    Nicknames follow RFC 8266 (which obsoletes RFC 7700), done with ``unicodedata``:
    the nickname kept is the *enforced* form (non-ASCII spaces mapped to U+0020,
    leading and trailing spaces removed, runs of spaces made one, then NFKC); two
    nicknames are the same when their *comparison* forms are equal (enforced form,
    then ``str.lower`` (Unicode toLowerCase, RFC 8264 section 9.3), then NFKC again),
    the rules repeated until stable (4 rounds at most, else 424). Refused as outside
    the PRECIS FreeformClass, approximated by general category: controls (Cc),
    format characters (Cf, which holds most default-ignorable code points), surrogates
    (Cs), private use (Co), unassigned (Cn), line and paragraph separators (Zl, Zp);
    and an empty result. Not done: the exact FreeformClass derivation (its
    CONTEXTJ/CONTEXTO rules and the old Hangul jamo), bidi rules (RFC 8266 has none).

Bounds
    ``max_participants`` (``join`` raises :class:`RoomFull`); ``max_message`` octets
    per message (lowered on each session's ``max_message``: 413 past it, RFC 4975
    section 7.1.1); per recipient, ``max_queued`` octets written and not yet taken by
    ``outgoing`` and ``max_pending`` forwarded messages awaiting their responses:
    past either, a delivery to that participant is skipped (``DeliveryFailed``,
    status 0): a participant that does not read cannot grow the focus's memory
    (RFC 7701 section 6.4 leaves congestion handling to the switch). The screen
    remembers the last 64 refused Message-IDs per participant.

    A session that ends (a framing error, ``closed``, the session's own ``Closed``)
    removes its participant at once (``ParticipantLeft``; its nickname is freed).

One URI, one session: a second ``join`` with the same participant URI raises
:class:`ChatError` (*choice*: RFC 7701 section 7 lets a user join from several
devices; the SIP side can ``leave`` the old session first). Not done yet: the SIP and
SDP side, the conference event package, anonymous participants (section 6.1's
focus-assigned URIs), and forwarding chunks before the whole message is in.
"""

from __future__ import annotations

import unicodedata
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from simplefast._impl import msrpframe
from simplefast._impl import sipmsg as _codec
from simplefast.errors import SimplefastError, SipParseError
from simplefast.im.cpim import CPIM_CT, CpimError, media_type, parse_cpim
from simplefast.msrp.endpoint import (
    Closed,
    MessageFailed,
    MessageReceived,
    MessageSent,
    MsrpSession,
    RequestReceived,
    _failure_report,
    _same_path,
    _same_uri,
)

DEFAULT_MAX_PARTICIPANTS = 100
DEFAULT_MAX_MESSAGE = 64 * 1024
DEFAULT_MAX_NICKNAME = 64  # characters of the enforced form
DEFAULT_MAX_QUEUED = 1 << 20
DEFAULT_MAX_PENDING = 256
_REFUSED_KEPT = 64  # refused Message-IDs remembered per participant (their later chunks)
_MAX_SCREEN_HEADERS = 64  # CPIM header lines the screen reads from a first chunk

# RFC 7701 section 10 / the IANA MSRP status code registry
S_OK = (200, "OK")
S_BAD = 400
S_FORBIDDEN = 403
S_NO_RECIPIENT = (404, "Failure to resolve recipient's URI")
S_UNSUPPORTED_TYPE = (415, "Unsupported Media Type")
S_OUT_OF_BOUNDS = (423, "Parameter out of bounds")
S_MALFORMED_NICKNAME = (424, "Malformed nickname")
S_NICKNAME_TAKEN = (425, "Nickname reserved or already in use")
S_NO_PRIVATE = (428, "Private messages not supported")
S_UNKNOWN_METHOD = (501, "Unknown method")


# ---------------------------------------------------------------- config, errors


@dataclass(frozen=True, slots=True)
class ChatConfig:
    """Policy and bounds of one room (see the module docstring).

    Attributes:
        max_participants: most participants at once.
        max_message: largest message (the whole CPIM body) in octets; 413 past it.
        private_messages: the room allows private messages (RFC 7701 section 6.2).
        nicknames: the room allows nicknames (section 7).
        max_nickname: longest nickname in characters after RFC 8266 enforcement.
        reserved_nicknames: nickname -> the URI that alone may take it, or None for
            nobody (e.g. ``{"admin": None}``).
        nickname_addressing: a CPIM To naming no participant's URI but a
            participant's nickname as display name reaches that participant.
        max_queued: octets waiting in ``outgoing`` for one participant past which
            deliveries to it are skipped.
        max_pending: forwarded messages awaiting their responses from one participant
            past which deliveries to it are skipped.
    """

    max_participants: int = DEFAULT_MAX_PARTICIPANTS
    max_message: int = DEFAULT_MAX_MESSAGE
    private_messages: bool = True
    nicknames: bool = True
    max_nickname: int = DEFAULT_MAX_NICKNAME
    reserved_nicknames: Mapping[str, str | None] = field(default_factory=dict)
    nickname_addressing: bool = True
    max_queued: int = DEFAULT_MAX_QUEUED
    max_pending: int = DEFAULT_MAX_PENDING


class ChatError(SimplefastError):
    """A participant cannot join (already in the room, a closed session, a bad URI)."""


class RoomFull(ChatError):
    """The room holds ``max_participants`` already."""


class NicknameError(ValueError):
    """A nickname that cannot be granted: ``status`` and ``comment`` are the MSRP answer."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(f"{status} {comment}")
        self.status = status
        self.comment = comment


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Participant:
    """One participant as the conference event package will show it."""

    uri: str  # as given to join
    nickname: str | None  # the enforced form (RFC 8266), None without one
    private_messages: bool  # offered the ``private-messages`` chatroom token


@dataclass(frozen=True, slots=True)
class ParticipantLeft:
    uri: str
    reason: str  # "left" for leave(), else why the session closed


@dataclass(frozen=True, slots=True)
class NicknameChanged:
    uri: str
    nickname: str | None
    previous: str | None


@dataclass(frozen=True, slots=True)
class MessageRelayed:
    sender: str
    message_id: str  # the sender's Message-ID
    private: bool
    recipients: tuple[str, ...]  # participants it was sent to (not those skipped)


@dataclass(frozen=True, slots=True)
class MessageRefused:
    sender: str
    message_id: str
    status: int
    comment: str
    answered: bool  # False: dropped silently (decided after the 200s, or Failure-Report no)


@dataclass(frozen=True, slots=True)
class DeliveryFailed:
    recipient: str
    message_id: str | None  # the focus's Message-ID; None when it was not sent
    status: int  # the recipient's status (408 for no answer); 0 when the focus did not send
    comment: str


ChatEvent = ParticipantLeft | NicknameChanged | MessageRelayed | MessageRefused | DeliveryFailed


# ---------------------------------------------------------------- nicknames (RFC 8266)

_DISALLOWED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_STABLE_ROUNDS = 4


def parse_use_nickname(value: str) -> str:
    """The nickname of a ``Use-Nickname`` header value (RFC 7701 section 7.1: a quoted-string
    of RFC 4975: qdtext and the escapes ``\\\\`` and ``\\"``).

    Raises:
        NicknameError: 424 when the value is not one quoted-string.
    """
    v = value.strip(" \t")
    if len(v) < 2 or v[0] != '"' or v[-1] != '"':
        raise NicknameError(*S_MALFORMED_NICKNAME)
    out: list[str] = []
    i, end = 1, len(v) - 1
    while i < end:
        c = v[i]
        if c == "\\":
            if i + 1 < end and v[i + 1] in '\\"':
                out.append(v[i + 1])
                i += 2
                continue
            raise NicknameError(*S_MALFORMED_NICKNAME)
        if c == '"' or (c < " " and c != "\t") or c == "\x7f":
            raise NicknameError(*S_MALFORMED_NICKNAME)
        out.append(c)
        i += 1
    return "".join(out)


def _collapse(s: str) -> str:
    return " ".join(part for part in s.split(" ") if part)


def _enforce_round(s: str) -> str:
    # RFC 8266 section 2.2: the additional mapping rule (non-ASCII spaces to U+0020, no
    # leading or trailing space, one space for a run), then NFKC
    mapped = "".join(" " if unicodedata.category(c) == "Zs" else c for c in s)
    return unicodedata.normalize("NFKC", _collapse(mapped))


def _stable(s: str, step: Callable[[str], str]) -> str:
    for _ in range(_STABLE_ROUNDS):
        nxt = step(s)
        if nxt == s:
            return s
        s = nxt
    raise NicknameError(*S_MALFORMED_NICKNAME)  # RFC 8266: not stable: invalid


def prepare_nickname(nickname: str, max_chars: int = DEFAULT_MAX_NICKNAME) -> str:
    """The RFC 8266 enforced form of a nickname (what the room keeps and shows).

    Raises:
        NicknameError: 424 for a disallowed character, an empty result or one that
            does not stabilize; 423 when longer than ``max_chars`` characters.
    """
    if len(nickname) > 4 * max_chars + 16:  # before any work on a huge value
        raise NicknameError(*S_OUT_OF_BOUNDS)
    for c in nickname:
        if unicodedata.category(c) in _DISALLOWED_CATEGORIES:
            raise NicknameError(*S_MALFORMED_NICKNAME)
    out = _stable(nickname, _enforce_round)
    if not out or any(unicodedata.category(c) in _DISALLOWED_CATEGORIES for c in out):
        raise NicknameError(*S_MALFORMED_NICKNAME)
    if len(out) > max_chars:
        raise NicknameError(*S_OUT_OF_BOUNDS)
    return out


def nickname_key(nickname: str) -> str:
    """The RFC 8266 comparison form: two nicknames are the same nickname when their keys are
    equal (enforced form, toLowerCase, NFKC, until stable).

    Raises:
        NicknameError: as :func:`prepare_nickname` (with no length bound).
    """
    enforced = prepare_nickname(nickname, max_chars=len(nickname) + 1)
    return _stable(enforced, lambda s: unicodedata.normalize("NFKC", _collapse(s.lower())))


def same_nickname(a: str, b: str) -> bool:
    """RFC 8266 section 2.4 comparison; a string that is no valid nickname matches nothing."""
    try:
        return nickname_key(a) == nickname_key(b)
    except NicknameError:
        return False


def chatroom_tokens(value: str) -> frozenset[str]:
    """The tokens of an SDP ``a=chatroom`` value (RFC 7701 section 8), lower-cased:
    ``"nickname private-messages"`` -> ``{"nickname", "private-messages"}``."""
    return frozenset(t.lower() for t in value.split())


# ---------------------------------------------------------------- identities

Identity = tuple[str, ...]


def uri_identity(uri: str) -> Identity | None:
    """Who a URI names, for comparing a CPIM From/To with a participant or the room: for
    sip/sips the scheme, the unescaped user, the lower-cased host and the port (URI
    parameters and headers ignored); for other schemes (im, pres, tel) the scheme and the
    unescaped rest, with the part after its last ``@`` lower-cased. None if unreadable."""
    try:
        u = _codec.parse_uri(uri.strip())
    except (SipParseError, ValueError):
        return None
    if u.scheme in ("sip", "sips"):
        if not u.host:
            return None
        user = "" if u.user is None else unquote(u.user, errors="surrogateescape")
        return (u.scheme, user, u.host.lower(), "" if u.port is None else str(u.port))
    rest = unquote(u.opaque or "", errors="surrogateescape").split(";", 1)[0]
    if not rest:
        return None
    local, at, host = rest.rpartition("@")
    return (u.scheme, f"{local}{at}{host.lower()}" if at else rest)


def _address(value: str) -> tuple[str | None, Identity] | None:
    """(display name, identity) of a CPIM From/To value (RFC 3862 section 3.3: [Formal-name]
    "<" URI ">"), or None if unreadable."""
    try:
        na = _codec.parse_name_addr(value)
    except (SipParseError, ValueError):
        return None
    ident = uri_identity(na.uri)
    return None if ident is None else (na.display_name, ident)


def _scan_cpim_headers(data: bytes) -> tuple[list[tuple[str, str]], bool] | None:
    """The CPIM message headers readable at the start of a first chunk: those whose line is
    complete and cannot be continued by a folded line still to come; True when the block's
    blank line is in. None for anything odd (the whole message will be parsed anyway)."""
    headers: list[tuple[str, str]] = []
    pos, n = 0, len(data)
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            break
        raw = data[pos:nl]
        pos = nl + 1
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if not raw:
            return headers, True
        if len(headers) >= _MAX_SCREEN_HEADERS:
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if text[0] in " \t":
            if not headers:
                return None
            name, value = headers[-1]
            headers[-1] = (name, value + " " + text.strip(" \t"))
            continue
        name, colon, value = text.partition(":")
        if not colon:
            return None
        headers.append((name.strip(" \t"), value.strip(" \t")))
    if headers and (pos >= n or data[pos : pos + 1] in (b" ", b"\t")):
        headers.pop()  # it may go on in the next chunk
    return headers, False


# ---------------------------------------------------------------- the room


@dataclass(slots=True)
class _Member:
    uri: str
    ident: Identity
    session: MsrpSession
    private_messages: bool
    parser: Any = field(default_factory=msrpframe.MsrpParser)
    out: bytearray = field(default_factory=bytearray)
    pending: set[str] = field(default_factory=set)  # focus Message-IDs awaiting responses
    refused: OrderedDict[str, tuple[int, str]] = field(default_factory=OrderedDict)
    nickname: str | None = None
    nick_key: str | None = None
    gone: bool = False


@dataclass(frozen=True, slots=True)
class _Route:
    to: _Member | None  # None: everyone else (a regular message)


class ChatRoom:
    """One RFC 7701 chat room (see the module docstring)."""

    def __init__(self, room_uri: str, config: ChatConfig | None = None) -> None:
        ident = uri_identity(room_uri)
        if ident is None:
            raise ValueError(f"room URI {room_uri[:64]!r} is not a URI")
        self.room_uri = room_uri
        self._room = ident
        self.config = cfg = config or ChatConfig()
        if cfg.max_participants < 1 or cfg.max_message < 1 or cfg.max_nickname < 1:
            raise ValueError("max_participants, max_message and max_nickname must be at least 1")
        self._reserved: dict[str, Identity | None] = {}
        for nick, owner in cfg.reserved_nicknames.items():
            owner_id = None if owner is None else uri_identity(owner)
            if owner is not None and owner_id is None:
                raise ValueError(f"reserved nickname owner {owner[:64]!r} is not a URI")
            self._reserved[nickname_key(nick)] = owner_id
        self._by_uri: dict[str, _Member] = {}
        self._by_ident: dict[Identity, _Member] = {}
        self._nicks: dict[str, _Member] = {}
        self._events: deque[ChatEvent] = deque()

    # ------------------------------------------------------------ membership
    def join(self, uri: str, session: MsrpSession, *, private_messages: bool = False) -> Participant:
        """Add a participant with the focus's end of its MSRP session.

        Args:
            uri: the participant's URI (its SIP identity; CPIM From must name it).
            session: the focus's session with it (``to_path`` set to reach it).
            private_messages: it offered ``a=chatroom:... private-messages``.

        Raises:
            RoomFull: ``max_participants`` are in already.
            ChatError: the URI is unreadable or in the room already, or the session closed.
        """
        ident = uri_identity(uri)
        if ident is None:
            raise ChatError(f"participant URI {uri[:64]!r} is not a URI")
        if uri in self._by_uri or ident in self._by_ident:
            raise ChatError(f"{uri[:64]} is in the room already")
        if session.closed_reason is not None:
            raise ChatError(f"the session of {uri[:64]} is closed")
        if len(self._by_uri) >= self.config.max_participants:
            raise RoomFull(f"room {self.room_uri[:64]} is full ({self.config.max_participants})")
        session.max_message = min(session.max_message, self.config.max_message)
        m = _Member(uri, ident, session, private_messages)
        self._by_uri[uri] = m
        self._by_ident[ident] = m
        return _info(m)

    def leave(self, uri: str, reason: str = "left") -> bytes | None:
        """Remove a participant (``ParticipantLeft``, its nickname freed); returns the octets
        still to write to it, or None when it is not in the room."""
        m = self._by_uri.get(uri)
        if m is None:
            return None
        m.out += m.session.outgoing()
        out = bytes(m.out)
        self._remove(m, reason)
        return out

    def closed(self, uri: str, reason: str = "connection closed") -> None:
        """The participant's connection is gone: it leaves the room."""
        m = self._by_uri.get(uri)
        if m is not None:
            m.session.closed(reason)
            while m.session.next_event() is not None:  # data() left nothing else queued
                pass
            self._remove(m, reason)

    def participants(self) -> list[Participant]:
        return [_info(m) for m in self._by_uri.values()]

    def participant(self, uri: str) -> Participant | None:
        m = self._by_uri.get(uri)
        return None if m is None else _info(m)

    def __contains__(self, uri: object) -> bool:
        return uri in self._by_uri

    def __len__(self) -> int:
        return len(self._by_uri)

    # ------------------------------------------------------------ I/O
    def data(self, uri: str, octets: bytes | bytearray | memoryview, now: float) -> None:
        """Octets read from a participant's connection (ignored for one not in the room)."""
        m = self._by_uri.get(uri)
        if m is None:
            return
        if m.session.closed_reason is not None:
            self._pump(m, now)
            return
        try:
            msgs = m.parser.feed(octets)
        except msrpframe.MsrpFramingError as exc:
            m.session.closed(f"framing error: {exc}")
            self._pump(m, now)
            return
        for msg in msgs:
            if not self._screen(m, msg):
                m.session.data(msg.to_bytes(), now)
            self._pump(m, now)
            if m.gone:
                return

    def outgoing(self, uri: str) -> bytes:
        """The octets to write to a participant, in order; clears them."""
        m = self._by_uri.get(uri)
        if m is None:
            return b""
        m.out += m.session.outgoing()
        out = bytes(m.out)
        m.out.clear()
        return out

    def next_event(self) -> ChatEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        times = [t for m in self._by_uri.values() if (t := m.session.get_timer()) is not None]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        for m in list(self._by_uri.values()):
            if not m.gone:
                m.session.handle_timer(now)
                self._pump(m, now)

    # ------------------------------------------------------------ internals
    def _remove(self, m: _Member, reason: str) -> None:
        if m.gone:
            return
        m.gone = True
        del self._by_uri[m.uri]
        del self._by_ident[m.ident]
        if m.nick_key is not None:
            self._nicks.pop(m.nick_key, None)
        m.out.clear()
        m.pending.clear()
        m.refused.clear()
        self._events.append(ParticipantLeft(m.uri, reason))

    def _pump(self, m: _Member, now: float) -> None:
        s = m.session
        while (ev := s.next_event()) is not None:
            if isinstance(ev, MessageReceived):
                self._on_message(m, ev, now)
            elif isinstance(ev, RequestReceived):
                self._on_request(m, ev.msg)
            elif isinstance(ev, MessageSent):
                m.pending.discard(ev.message_id)
            elif isinstance(ev, MessageFailed):
                if ev.message_id in m.pending:
                    m.pending.discard(ev.message_id)
                    self._events.append(DeliveryFailed(m.uri, ev.message_id, ev.status, ev.comment))
            elif isinstance(ev, Closed):
                self._remove(m, ev.reason)
                return
            # ReportReceived, MessageAborted: nothing to do (section 6.3: hop by hop)
        m.out += s.outgoing()

    # ---- the screen (first chunks of SENDs)
    def _screen(self, m: _Member, msg: Any) -> bool:
        """Refuse a SEND chunk before the session answers it 200: True when done here."""
        if not msg.is_request or msg.method != "SEND":
            return False
        s = m.session
        to, frm, mid = msg.to_path, msg.from_path, msg.message_id
        if (
            len(to) != 1 or not _same_uri(to[0], s.local_uri) or not frm or mid is None
            or (s.to_path and not _same_path(frm, s.to_path))
        ):  # fmt: skip
            return False  # the session's own answer (481, 403, 400)
        verdict = m.refused.get(mid)
        if verdict is None:
            verdict = self._screen_first(m, msg)
            if verdict is None:
                return False
            m.refused[mid] = verdict
            while len(m.refused) > _REFUSED_KEPT:
                m.refused.popitem(last=False)
            answered = _failure_report(msg) != "no"
            self._events.append(MessageRefused(m.uri, mid, verdict[0], verdict[1], answered))
        if _failure_report(msg) != "no":
            m.out += msrpframe.build_response(msg.tid, verdict[0], verdict[1], frm[:1], [s.local_uri])
        return True

    def _screen_first(self, m: _Member, msg: Any) -> tuple[int, str] | None:
        try:
            br = msg.byte_range
        except msrpframe.MsrpFramingError:
            return None  # the session answers 400
        if (br is not None and br[0] != 1) or not msg.has_content or msg.flag == "#":
            return None
        if media_type(msg.content_type) != CPIM_CT:  # RFC 7701 section 6: message/cpim only
            return S_UNSUPPORTED_TYPE
        body = bytes(msg.body)
        total = None if br is None else br[2]
        if total is not None and total > m.session.max_message:
            return None  # the session answers 413
        if msg.flag == "$" and (total is None or total == len(body)):  # the whole message
            try:
                cpim = parse_cpim(body, max_bytes=self.config.max_message)
            except CpimError:
                return (S_BAD, "Malformed CPIM body")
            verdict = self._route(m, cpim.get_all("From"), cpim.get_all("To"), complete=True)
        else:
            scanned = _scan_cpim_headers(body)
            if scanned is None:
                return None
            headers, complete = scanned
            froms = [v for n, v in headers if n.lower() == "from"]
            tos = [v for n, v in headers if n.lower() == "to"]
            verdict = self._route(m, froms, tos, complete)
        return verdict if isinstance(verdict, tuple) else None

    def _route(
        self, m: _Member, froms: list[str], tos: list[str], complete: bool
    ) -> tuple[int, str] | _Route | None:
        """Where a message goes, or the status refusing it; None: not known yet."""
        # RFC 7701 section 6.1: the CPIM From is the sender
        if len(froms) > 1:
            return (S_BAD, "More than one CPIM From")
        if froms:
            addr = _address(froms[0])
            if addr is None:
                return (S_BAD, "Malformed CPIM From")
            if addr[1] != m.ident:
                return (S_FORBIDDEN, "CPIM From is not the sender")
        elif complete:
            return (S_BAD, "CPIM From missing")
        public = False
        targets: list[_Member] = []
        for value in tos:
            addr = _address(value)
            if addr is None:
                return (S_BAD, "Malformed CPIM To")
            display, ident = addr
            if ident == self._room:
                public = True
                continue
            r = self._by_ident.get(ident)
            if r is None and display and self.config.nickname_addressing:
                r = self._member_by_nickname(display)
            if r is None:
                return S_NO_RECIPIENT  # section 6.2
            if r is m:
                return (S_FORBIDDEN, "Private message to the sender")
            if r not in targets:
                targets.append(r)
        if len(targets) > 1 or (targets and public):
            return (S_FORBIDDEN, "One recipient per private message")
        if targets:
            r = targets[0]
            if not self.config.private_messages or not r.private_messages:
                return S_NO_PRIVATE  # section 6.2
            return _Route(r)
        if not tos and not complete:
            return None
        return _Route(None)

    def _member_by_nickname(self, nickname: str) -> _Member | None:
        try:
            return self._nicks.get(nickname_key(nickname))
        except NicknameError:
            return None

    # ---- complete messages
    def _on_message(self, m: _Member, ev: MessageReceived, now: float) -> None:
        verdict: tuple[int, str] | _Route | None
        if media_type(ev.content_type) != CPIM_CT:
            verdict = S_UNSUPPORTED_TYPE
        else:
            try:
                cpim = parse_cpim(ev.body, max_bytes=self.config.max_message)
            except CpimError:
                verdict = (S_BAD, "Malformed CPIM body")
            else:
                verdict = self._route(m, cpim.get_all("From"), cpim.get_all("To"), complete=True)
        if not isinstance(verdict, _Route):
            status, comment = verdict or (S_BAD, "Undecidable")
            self._events.append(MessageRefused(m.uri, ev.message_id, status, comment, False))
            return
        recipients = (
            [verdict.to] if verdict.to is not None else [r for r in self._by_uri.values() if r is not m]
        )
        sent: list[str] = []
        cfg = self.config
        for r in recipients:
            rs = r.session
            if rs.closed_reason is not None or not rs.to_path:
                self._events.append(DeliveryFailed(r.uri, None, 0, "no session path"))
                continue
            if len(r.out) > cfg.max_queued or len(r.pending) >= cfg.max_pending:
                self._events.append(DeliveryFailed(r.uri, None, 0, "queue full"))
                continue
            r.pending.add(rs.send_message(CPIM_CT, ev.body, now))
            r.out += rs.outgoing()
            sent.append(r.uri)
        self._events.append(MessageRelayed(m.uri, ev.message_id, verdict.to is not None, tuple(sent)))

    # ---- NICKNAME (section 7)
    def _on_request(self, m: _Member, msg: Any) -> None:
        if msg.method == "NICKNAME":
            status, comment = self._nickname(m, msg)
        else:
            status, comment = S_UNKNOWN_METHOD
        m.session.respond(msg, status, comment)

    def _nickname(self, m: _Member, msg: Any) -> tuple[int, str]:
        if not self.config.nicknames:
            return (S_FORBIDDEN, "Nicknames not allowed in this room")
        values = msg.get_all("Use-Nickname")
        if len(values) != 1:
            return (S_BAD, "Use-Nickname missing" if not values else "More than one Use-Nickname")
        try:
            raw = parse_use_nickname(values[0])
            if raw == "":  # no nickname any more (a choice, see the module docstring)
                self._set_nickname(m, None, None)
                return S_OK
            nick = prepare_nickname(raw, self.config.max_nickname)
            key = nickname_key(nick)
        except NicknameError as exc:
            return (exc.status, exc.comment)
        if key in self._reserved and self._reserved[key] != m.ident:
            return S_NICKNAME_TAKEN
        holder = self._nicks.get(key)
        if holder is not None and holder is not m:
            return S_NICKNAME_TAKEN
        self._set_nickname(m, nick, key)
        return S_OK

    def _set_nickname(self, m: _Member, nick: str | None, key: str | None) -> None:
        previous = m.nickname
        if m.nick_key is not None:
            self._nicks.pop(m.nick_key, None)
        m.nickname, m.nick_key = nick, key
        if key is not None:
            self._nicks[key] = m
        if nick != previous:
            self._events.append(NicknameChanged(m.uri, nick, previous))


def _info(m: _Member) -> Participant:
    return Participant(m.uri, m.nickname, m.private_messages)
