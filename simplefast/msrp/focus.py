"""The chat focus (RFC 7701): SIP dialogs and MSRP connections of chat rooms, sans-IO.

Theory of operation
-------------------
:class:`ChatFocus` is the part of one worker that answers for chat rooms. Each
room is a :class:`~simplefast.msrp.chat.ChatRoom` (the MSRP switch); the focus
adds what a room needs around it:

SIP (RFC 3261 as a UAS, RFC 4975 section 8 offer/answer)
    An INVITE to a room URI whose SDP offers an MSRP media line that takes
    ``message/cpim`` (RFC 7701 section 6) is answered 200 with the focus's
    SDP answer: our ``a=path`` (``msrp://<host>:<port>/<session-id>;tcp``,
    the worker's own focus port), ``a=accept-types:message/cpim``,
    ``a=accept-wrapped-types:*``, ``a=chatroom`` with the room's tokens
    (``nickname``, ``private-messages``) and a Contact that names the room
    (``<sip:ROOM@host:port>;isfocus``, RFC 4579 section 4.2), so the requests
    of the dialog come back to the room by their Request-URI. The participant
    is the INVITE's From URI (authenticated when auth is on): it joins the
    room at once, and what the room sends it waits (bounded by the room's
    ``max_queued``) until its MSRP connection is there.

    The 200 is retransmitted until the ACK comes (section 13.3.1.4: T1
    doubling up to T2; over a reliable transport once); no ACK within 64*T1:
    the focus sends BYE and the participant leaves. BYE from the participant:
    200, it leaves. A re-INVITE gets the same answer again (the session does
    not move); CANCEL of an INVITE already answered changes nothing (200 to
    the CANCEL from the transaction core, section 9.2). Failures: 404 for a
    room that does not exist (and cannot be made), 488 with a Warning for an
    offer without a usable MSRP line or one that does not take
    ``message/cpim``, 400 for SDP that does not parse, 486 when the room is
    full, 403 when that URI is in the room already (*choice*: one session per
    participant URI; RFC 7701 section 6.1 identifies senders by URI).

MSRP (RFC 4975, RFC 6135)
    The participant is the active side when its offer says ``a=setup:active``
    or ``actpass`` or nothing (RFC 4975 section 5.4: the offerer connects):
    the focus waits for the connection on its port. The first request that
    names one of our session URIs in its To-Path binds the connection to that
    session; a connection may carry several sessions (a relay in front, or
    ``a=connection:existing``, RFC 6135), so every message is demultiplexed
    by its To-Path. A request for a session we do not know gets 481 (section
    7.3). An offer with ``a=setup:passive`` makes the focus the active side:
    it opens a connection to the first URI of the participant's path
    (``Connect``), and binds it with an empty SEND.

    A participant with no MSRP connection ``bind_timeout`` seconds after its
    ACK gets a BYE and leaves; a closed connection ends every session on it
    (BYE to each). A room made on first join (``room_domains``) goes when
    its last participant does.

Rooms and workers
    A room lives in one worker: ``owner(user)`` (a hash of the room's user
    part modulo the number of workers). The core hands every request for a
    room that reaches another worker to the owner before any transaction
    exists (transport/handoff.py frame ``D``). The focus's MSRP URI names
    the owner's port, so the connection reaches the same worker.

Conference state (RFC 4575)
    ``members(room)`` is what the ``conference`` event package shows;
    ``changed`` lists the rooms whose membership or nicknames changed since
    the last ``take_changed``.

What the caller does: ``invite``/``ack``/``bye``/``reinvite`` for SIP (the
core builds and sends the responses and gives back the 2xx with
``accepted``); ``take_sip`` gives the 2xx retransmissions and the BYEs to
send; ``connected``/``data``/``closed`` and ``take_writes``/``take_actions``
for MSRP connections; ``get_timer``/``handle_timer``.
"""

from __future__ import annotations

import functools
import secrets
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from simplefast._impl import msrpframe
from simplefast.errors import SipParseError
from simplefast.logs import get_logger
from simplefast.msrp.chat import (
    ChatConfig,
    ChatError,
    ChatRoom,
    MessageRefused,
    MessageRelayed,
    NicknameChanged,
    ParticipantLeft,
    RoomFull,
)
from simplefast.msrp.endpoint import Authenticated, AuthRejected, MsrpSession, session_id
from simplefast.msrp.relay import parse_msrp_uri
from simplefast.msrp.sdp import SdpError, build_msrp_answer, offer_accepts, parse_msrp_offer
from simplefast.sip import parse_uri, warning_header

log = get_logger(__name__)

T1 = 0.5
T2 = 4.0
CPIM = "message/cpim"


@dataclass(frozen=True, slots=True)
class FocusConfig:
    """Rooms and the MSRP side of one worker's focus.

    Attributes:
        rooms: room URIs (``sip:user@domain``) that exist from the start and stay.
        room_domains: every user of these domains is a room, made on first join.
        msrp_scheme: ``msrp`` (TCP) or ``msrps`` (TLS) for our path URIs.
        msrp_host: the address in our path URIs and SDP ``c=``.
        msrp_port: this worker's focus port.
        room: the policy and bounds of every room.
        max_rooms: most rooms at once in this worker (made rooms past it: 403).
        max_sessions: most participants in all rooms of this worker at once (503 past it).
        bind_timeout: seconds after the ACK for the participant's MSRP connection.
        workers: how many workers share the rooms (``owner``).
    """

    rooms: tuple[str, ...] = ()
    room_domains: tuple[str, ...] = ()
    msrp_scheme: str = "msrp"
    msrp_host: str = "127.0.0.1"
    msrp_port: int = 2870
    room: ChatConfig = field(default_factory=ChatConfig)
    max_rooms: int = 10000
    max_sessions: int = 20000  # participants in all rooms of this worker at once (past it: 503)
    bind_timeout: float = 30.0
    workers: int = 1
    relay: str | None = None  # an MSRP relay URI (RFC 4976): our a=path goes through it
    relay_user: str = ""
    relay_password: str = ""
    relay_pool: int = 4  # relay session URIs AUTHed ahead, so an INVITE needs no wait


@dataclass(frozen=True, slots=True)
class Answer:
    """What the core sends for a request of the focus."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    to_tag: str | None = None
    leg: str | None = None  # the dialog's key when a 2xx is to be handed back (``accepted``)


@dataclass(frozen=True, slots=True)
class Connect:
    """Open an MSRP connection to ``host``:``port`` (TLS for ``msrps``); then ``connected(token, cid)``."""

    token: int
    host: str
    port: int
    tls: bool


@dataclass(frozen=True, slots=True)
class Close:
    """Close MSRP connection ``cid``."""

    cid: int


@dataclass(slots=True, eq=False)
class _Leg:
    key: str  # our tag: the dialog's local tag
    room: str  # the room key
    uri: str  # the participant (INVITE From URI)
    call_id: str
    remote_tag: str
    local_uri: str  # the INVITE's To URI: our From in requests we send
    remote_uri: str
    target: str  # its Contact: the Request-URI of our BYE
    routes: tuple[str, ...]  # its Record-Route, as the route set of our requests
    peer: Any  # the flow the INVITE came on
    remote_cseq: int
    sid: str  # our MSRP session id
    session: MsrpSession
    answer: bytes  # our SDP
    active: bool  # we open the MSRP connection (the offer said setup:passive)
    connect_to: tuple[str, int, bool] | None = None
    cid: int | None = None
    cseq: int = 0
    txn: Any = None  # the INVITE server transaction while the 2xx waits for its ACK
    response: bytes = b""
    interval: float = T1
    resend_at: float | None = None
    give_up_at: float | None = None
    bind_by: float | None = None  # no MSRP connection by then: BYE
    acked: bool = False
    heard: bool = False  # a message of its session came (the binding one, at least)
    gone: bool = False


@dataclass(slots=True, eq=False)
class _Spare:
    """A relay session URI AUTHed ahead (``relay``): the focus's end of one future leg."""

    sid: str
    session: MsrpSession
    use_path: list[str] | None = None  # the relay's 200 (Authenticated)
    expires_at: float = 0.0


RELAY_TOKEN = 0  # Connect/connected token of the relay connection (legs count from 1)
RELAY_RETRY = 5.0  # seconds before the relay connection is tried again
RELAY_MARGIN = 60.0  # a spare this close to its Expires is not handed out (and is replaced)


@dataclass(slots=True)
class FocusStats:
    invites: int = 0
    joined: int = 0
    refused: int = 0
    left: int = 0
    messages: int = 0
    refused_messages: int = 0
    byes_sent: int = 0


def owner(user: str, workers: int) -> int:
    """The worker that holds the room of ``user`` (every worker computes the same)."""
    if workers <= 1:
        return 0
    return zlib.crc32(user.lower().encode("utf-8", "surrogatepass")) % workers


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


_F = TypeVar("_F", bound=Callable[..., Any])


def _touches(method: _F) -> _F:
    """An entry point that may move a deadline: ``get_timer`` computes it again after it."""

    @functools.wraps(method)
    def wrapper(self: ChatFocus, *args: Any, **kw: Any) -> Any:
        self._stale = True
        return method(self, *args, **kw)

    return wrapper  # type: ignore[return-value]


class ChatFocus:
    """The chat rooms of one worker (see the module docstring)."""

    def __init__(self, config: FocusConfig, *, index: int = 0, via: Any = None, contact: Any = None) -> None:
        if config.msrp_scheme not in ("msrp", "msrps"):
            raise ValueError(f"msrp_scheme {config.msrp_scheme!r}: msrp or msrps")
        self.config = config
        self.index = index
        self.via = via  # via(peer) -> our Via sent-by for a request over that flow
        self.contact = contact  # contact(peer) -> our URI for that flow (sip:host:port[;transport=x])
        self.stats = FocusStats()
        self._fixed: dict[str, str] = {}  # user -> room key, configured rooms
        for uri in config.rooms:
            try:
                ruri = parse_uri(uri.strip().strip("<>"))
            except SipParseError:
                ruri = None
            if ruri is None or not ruri.user or not ruri.host:
                raise ValueError(f"room URI {uri!r} has no user@host")
            user, host = ruri.user.lower(), ruri.host.lower()
            if user in self._fixed:
                raise ValueError(f"two rooms named {user!r}: room names must differ in their user part")
            self._fixed[user] = f"{user}@{host}"
        self._domains = frozenset(d.lower() for d in config.room_domains)
        self.rooms: dict[str, ChatRoom] = {}  # room key -> room (made on first join)
        self._users: dict[str, str] = dict(self._fixed)  # user -> room key
        self.legs: dict[str, _Leg] = {}  # our tag -> leg
        self._by_sid: dict[str, _Leg] = {}
        self._by_member: dict[tuple[str, str], _Leg] = {}  # (room, uri) -> leg
        self._conns: dict[int, Any] = {}  # cid -> its MSRP parser
        self._conn_legs: dict[int, set[str]] = {}  # cid -> the legs bound to it
        self._pending_connect: dict[int, str] = {}  # token -> leg key
        self._tokens = 0
        self._tag_prefix = secrets.token_hex(3)
        self._seq = 0
        # ("resend", txn, 2xx, None) and ("request", None, BYE, peer): take_sip
        self._sip: list[tuple[str, Any, bytes, Any]] = []
        self._writes: dict[int, list[bytes]] = {}
        self._actions: list[Connect | Close] = []
        self.changed: set[str] = set()  # rooms whose member list or nicknames changed
        # the relay (FocusConfig.relay): one connection, spare sessions AUTHed on it
        self._relay: tuple[str, int, bool] | None = None
        if config.relay:
            r = parse_msrp_uri(config.relay)
            if r is None:
                raise ValueError(f"relay {config.relay!r}: expected msrp://HOST:PORT;tcp or msrps://...")
            self._relay = (r[1], r[2], r[0] == "msrps")
        self._relay_cid: int | None = None
        self._relay_connecting = False
        self._relay_retry_at: float | None = None
        self._spares: dict[str, _Spare] = {}
        # connections whose write buffer is full (the transport says): their participants'
        # octets stay in the room, which skips deliveries past its max_queued
        self.congested: set[int] = set()
        self._ended: list[_Leg] = []  # legs whose dialogs we end with a BYE
        self._stale = True  # get_timer's cached deadline must be computed again
        self._deadline: float | None = None

    # ------------------------------------------------------------ the relay
    @_touches
    def start(self, now: float) -> None:
        """At start: with a relay, open the connection to it."""
        if self._relay is not None and self._relay_cid is None and not self._relay_connecting:
            self._relay_connecting = True
            self._relay_retry_at = None
            h, p, tls = self._relay
            self._actions.append(Connect(RELAY_TOKEN, h, p, tls))

    @property
    def relay_ready(self) -> int:
        """How many relay session URIs are ready to be handed out."""
        return sum(1 for sp in self._spares.values() if sp.use_path is not None)

    def _refill(self, now: float) -> None:
        """AUTH new relay sessions until ``relay_pool`` are ready or waiting (RFC 4976 5)."""
        cid, relay = self._relay_cid, self.config.relay
        if cid is None or relay is None:
            return
        for sid, sp in list(self._spares.items()):
            if sp.use_path is not None and sp.expires_at - RELAY_MARGIN <= now:
                del self._spares[sid]  # about to expire at the relay: replaced below
        cfg = self.config
        while len(self._spares) < cfg.relay_pool:
            sid = secrets.token_urlsafe(12)
            local = f"{cfg.msrp_scheme}://{_bracket(cfg.msrp_host)}:{cfg.msrp_port}/{sid};tcp"
            sp = _Spare(sid, MsrpSession(local))
            sp.session.authenticate(relay, cfg.relay_user, cfg.relay_password)
            self._spares[sid] = sp
            self._writes.setdefault(cid, []).append(sp.session.outgoing())

    def _spare_message(self, sp: _Spare, msg: Any, cid: int, now: float) -> None:
        sp.session.data(msg.to_bytes(), now)
        while (ev := sp.session.next_event()) is not None:
            if isinstance(ev, Authenticated):
                sp.use_path = list(ev.use_path)
                sp.expires_at = now + (ev.expires or 1800)
            elif isinstance(ev, AuthRejected):
                log.warning("chat focus: the relay refused AUTH: %d %s", ev.status, ev.comment)
                self._spares.pop(sp.sid, None)
                self._relay_retry_at = now + 30.0  # not a tight loop of refused AUTHs
        out = sp.session.outgoing()
        if out:
            self._writes.setdefault(cid, []).append(out)

    def _take_spare(self, now: float) -> _Spare | None:
        for sid, sp in self._spares.items():
            if sp.use_path is not None and sp.expires_at - RELAY_MARGIN > now:
                del self._spares[sid]
                return sp
        return None

    # ------------------------------------------------------------ rooms
    def room_key(self, user: str | None, host: str | None, *, local: bool) -> str | None:
        """The room a Request-URI names: a configured room, a user of ``room_domains``,
        or (``local``: the host is one of our addresses, as in our Contact) a room by its
        user part. The key is ``user@host`` lower-cased; None when it names no room."""
        if not user:
            return None
        u = user.lower()
        h = (host or "").lower()
        key = self._fixed.get(u)
        if key is not None and (local or key.endswith("@" + h)):
            return key
        if h in self._domains:
            return f"{u}@{h}"
        if local:
            return self._users.get(u)
        return None

    def owner(self, user: str) -> int:
        return owner(user, self.config.workers)

    def members(self, room: str) -> list[tuple[str, str | None]]:
        """(URI, nickname) of the room's participants in join order; [] for no room."""
        r = self.rooms.get(room)
        return [] if r is None else [(p.uri, p.nickname) for p in r.participants()]

    def room_uri(self, room: str) -> str:
        return f"sip:{room}"

    def take_changed(self) -> set[str]:
        out, self.changed = self.changed, set()
        return out

    def _room(self, key: str, create: bool) -> ChatRoom | None:
        r = self.rooms.get(key)
        if r is None and create:
            user = key.partition("@")[0]
            if key not in self._fixed.values() and len(self.rooms) >= self.config.max_rooms:
                return None
            other = self._users.get(user)
            if other is not None and other != key:
                return None  # another domain's room holds that name in this worker
            r = self.rooms[key] = ChatRoom(self.room_uri(key), self.config.room)
            self._users[user] = key
        return r

    # ------------------------------------------------------------ SIP
    @_touches
    def invite(self, msg: Any, peer: Any, room: str, now: float) -> Answer:
        """An initial INVITE (no To tag) to ``room``."""
        self.stats.invites += 1
        try:
            return self._invite(msg, peer, room, now)
        except SdpError as exc:
            self.stats.refused += 1
            return Answer(exc.status, _REASONS.get(exc.status, "Bad Request"), [warning_header(exc.reason)])

    def _invite(self, msg: Any, peer: Any, room_key: str, now: float) -> Answer:
        ctype = (msg.get("Content-Type") or "").partition(";")[0].strip().lower()
        if ctype != "application/sdp" or not msg.body:
            self.stats.refused += 1
            warn = warning_header("the INVITE needs an SDP offer with MSRP media")
            return Answer(488, "Not Acceptable Here", [warn, ("Accept", "application/sdp")])
        offer = parse_msrp_offer(msg.body)
        if not offer_accepts(offer, CPIM):
            raise SdpError(488, "the chat room takes message/cpim (RFC 7701 section 6)")
        # Every refusal the offer or the request itself decides comes before the room is
        # made and joined: a room made for nobody would stay, and a join undone with
        # leave() would leave a ParticipantLeft behind for that URI's next session.
        target = msg.contact_uri
        if target is None:
            self.stats.refused += 1
            return Answer(400, "Bad Request", [warning_header("INVITE needs a Contact")])
        setup = offer.setup
        if setup == "holdconn":
            raise SdpError(488, "a=setup:holdconn: the chat room needs its MSRP connection now")
        if offer.tls != (self.config.msrp_scheme == "msrps"):  # RFC 4975 8.1: proto and scheme agree
            want = "TCP/TLS/MSRP" if self.config.msrp_scheme == "msrps" else "TCP/MSRP"
            raise SdpError(488, f"the chat room takes MSRP over {want}")
        active = setup == "passive"
        connect_to: tuple[str, int, bool] | None = None
        if active:
            first = parse_msrp_uri(offer.path[0])
            if first is None:
                raise SdpError(488, "the first a=path URI is not an MSRP URI to connect to")
            connect_to = (first[1], first[2], first[0] == "msrps")
        if len(self.legs) >= self.config.max_sessions:
            self.stats.refused += 1
            warn = warning_header("the chat focus holds as many sessions as it may")
            return Answer(503, "Service Unavailable", [warn, ("Retry-After", "30")])
        spare: _Spare | None = None
        if self._relay is not None:
            spare = self._take_spare(now)
            if spare is None:
                self.stats.refused += 1
                warn = warning_header("the focus's MSRP relay is not ready")
                return Answer(503, "Service Unavailable", [warn, ("Retry-After", "2")])
            connect_to = None  # through the relay, the relay opens the connection toward them
        room = self._room(room_key, create=True)
        if room is None:
            self.stats.refused += 1
            if spare is not None:
                self._spares[spare.sid] = spare  # unused: back in the pool
            return Answer(403, "Forbidden", [warning_header("no room can be made now")])
        frm = msg.from_addr()
        self._seq += 1
        key = f"{self._tag_prefix}f{self._seq:x}"
        cfg = self.config
        if spare is not None:
            assert spare.use_path is not None
            sid, session = spare.sid, spare.session
            session.to_path = [*spare.use_path, *offer.path]  # RFC 4976 6.1
            local = " ".join([*spare.use_path, session.local_uri])
        else:
            sid = secrets.token_urlsafe(12)
            local = f"{cfg.msrp_scheme}://{_bracket(cfg.msrp_host)}:{cfg.msrp_port}/{sid};tcp"
            session = MsrpSession(local, to_path=list(offer.path))
        tokens = []
        if cfg.room.nicknames:
            tokens.append("nickname")
        if cfg.room.private_messages:
            tokens.append("private-messages")
        answer = build_msrp_answer(
            offer, address=cfg.msrp_host, path=local, accept_types=(CPIM,), accept_wrapped_types=("*",),
            chatroom=tuple(tokens), session_id=str(secrets.randbits(60)), port=cfg.msrp_port,
            setup="active" if active else "passive", max_size=cfg.room.max_message,
        )  # fmt: skip
        try:
            room.join(frm.uri, session, private_messages="private-messages" in offer.chatroom)
        except (RoomFull, ChatError) as exc:
            self.stats.refused += 1
            self._drop_if_empty(room_key)
            if spare is not None:
                session.to_path = []
                self._spares[spare.sid] = spare  # unused: back in the pool
            if isinstance(exc, RoomFull):
                return Answer(486, "Busy Here", [warning_header("the room is full")])
            return Answer(403, "Forbidden", [warning_header(str(exc))])
        leg = _Leg(
            key=key, room=room_key, uri=frm.uri, call_id=msg.call_id, remote_tag=msg.from_tag or "",
            local_uri=msg.to_addr().uri, remote_uri=frm.uri, target=target,
            routes=tuple(v.strip() for v in msg.get_all("Record-Route") if v.strip()),  # the codec splits
            peer=peer, remote_cseq=msg.cseq_num or 0, sid=sid, session=session, answer=answer,
            active=active, connect_to=connect_to,
        )  # fmt: skip
        self.legs[key] = leg
        self._by_sid[sid] = leg
        self._by_member[(room_key, frm.uri)] = leg
        if spare is not None and self._relay_cid is not None:
            self._bind(leg, self._relay_cid)  # every leg through the relay shares its connection
            self._refill(now)
        self.stats.joined += 1
        self.changed.add(room_key)
        headers = [("Contact", self._contact(leg)), ("Content-Type", "application/sdp"), ("Allow", ALLOW)]
        return Answer(200, "OK", headers, answer, key, key)

    @_touches
    def accepted(self, leg_key: str, txn: Any, response: bytes, reliable: bool, now: float) -> None:
        """The core sent the 2xx of ``leg_key``'s INVITE on ``txn``: retransmit it until the ACK."""
        leg = self.legs.get(leg_key)
        if leg is None:
            return
        leg.txn, leg.response = txn, response
        leg.give_up_at = now + 64 * T1
        leg.resend_at = None if reliable else now + T1
        leg.interval = T1

    def dialog(self, msg: Any) -> _Leg | None:
        leg = self.legs.get(msg.to_tag or "")
        if leg is None or leg.gone or leg.call_id != msg.call_id or leg.remote_tag != (msg.from_tag or ""):
            return None
        return leg

    @_touches
    def ack(self, msg: Any, now: float) -> bool:
        """An ACK outside any transaction: ours when it names one of our dialogs."""
        leg = self.dialog(msg)
        if leg is None:
            return False
        # the ACK of any 2xx of ours, a re-INVITE's too, ends its retransmissions (13.3.1.4)
        leg.txn = None
        leg.response = b""
        leg.resend_at = leg.give_up_at = None
        if not leg.acked:
            leg.acked = True
            if not leg.heard:
                leg.bind_by = now + self.config.bind_timeout
            if leg.cid is not None and leg.active:  # through the relay: bind along our path
                leg.session.bind(now)
                self._flush(leg)
            elif leg.cid is None:
                if leg.active and leg.connect_to is not None:
                    self._tokens += 1
                    self._pending_connect[self._tokens] = leg.key
                    h, p, tls = leg.connect_to
                    self._actions.append(Connect(self._tokens, h, p, tls))
        return True

    @_touches
    def in_dialog(self, msg: Any, now: float) -> Answer:
        """A request with a To tag for a room: BYE, re-INVITE, OPTIONS; 481 when no dialog."""
        leg = self.dialog(msg)
        method = msg.method
        if leg is None:
            return Answer(481, "Call/Transaction Does Not Exist", [])
        cseq = msg.cseq_num or 0
        if cseq <= leg.remote_cseq and method != "ACK":
            return Answer(500, "Server Internal Error", [warning_header("CSeq out of order")])
        leg.remote_cseq = cseq
        if method == "BYE":
            self._end(leg, "bye", send_bye=False)
            return Answer(200, "OK", [])
        if method == "INVITE":  # a refresh or a target update: same session, same answer
            target = msg.contact_uri
            if target is not None:
                leg.target = target
            headers = [("Contact", self._contact(leg)), ("Content-Type", "application/sdp"), ("Allow", ALLOW)]
            return Answer(200, "OK", headers, leg.answer, None, leg.key)
        if method in ("OPTIONS", "UPDATE", "INFO"):
            return Answer(200, "OK", [("Allow", ALLOW)])
        return Answer(405, "Method Not Allowed", [("Allow", ALLOW)])

    def _contact(self, leg: _Leg) -> str:
        base = self.contact(leg.peer) if self.contact is not None else "sip:127.0.0.1"
        user = leg.room.partition("@")[0]
        return f"<{base.replace('sip:', f'sip:{user}@', 1)}>;isfocus"

    def take_sip(self) -> list[tuple[str, Any, bytes, Any]]:
        """("resend", txn, 2xx octets, None) and ("request", None, BYE octets, peer) to send."""
        for leg in self._ended:
            self._sip.append(("request", None, self._bye(leg), leg.peer))
            self.stats.byes_sent += 1
        self._ended.clear()
        out, self._sip = self._sip, []
        return out

    def _bye(self, leg: _Leg) -> bytes:
        leg.cseq += 1
        sent_by = self.via(leg.peer) if self.via is not None else "SIP/2.0/UDP 127.0.0.1"
        branch = f"z9hG4bK{secrets.token_hex(8)}"
        lines = [
            f"BYE {leg.target} SIP/2.0",
            f"Via: {sent_by};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <{leg.local_uri}>;tag={leg.key}",
            f"To: <{leg.remote_uri}>;tag={leg.remote_tag}" if leg.remote_tag else f"To: <{leg.remote_uri}>",
            f"Call-ID: {leg.call_id}",
            f"CSeq: {leg.cseq} BYE",
        ]
        lines += [f"Route: {r}" for r in leg.routes]
        lines += ["Content-Length: 0", "", ""]
        return "\r\n".join(lines).encode("utf-8", "surrogateescape")

    # ------------------------------------------------------------ MSRP connections
    @_touches
    def connected(self, cid: int, now: float, token: int | None = None) -> None:
        """A connection: accepted (``token`` None) or opened for ``Connect(token)``."""
        self._conns[cid] = msrpframe.MsrpParser()
        self._conn_legs[cid] = set()
        if token == RELAY_TOKEN:
            self._relay_cid = cid
            self._relay_connecting = False
            self._refill(now)
            return
        if token is not None:
            key = self._pending_connect.pop(token, None)
            leg = self.legs.get(key) if key is not None else None
            if leg is None or leg.gone:
                self._actions.append(Close(cid))
                return
            self._bind(leg, cid)
            leg.session.bind(now)
            self._flush(leg)

    @_touches
    def connect_failed(self, token: int, reason: str, now: float = 0.0) -> None:
        if token == RELAY_TOKEN:
            log.warning("chat focus: no connection to the relay %s: %s", self.config.relay, reason)
            self._relay_connecting = False
            self._relay_retry_at = now + RELAY_RETRY
            return
        key = self._pending_connect.pop(token, None)
        leg = self.legs.get(key) if key is not None else None
        if leg is not None and not leg.gone:
            self._end(leg, f"connect failed: {reason}", send_bye=True)

    @_touches
    def data(self, cid: int, octets: bytes | bytearray | memoryview, now: float) -> None:
        parser = self._conns.get(cid)
        if parser is None:
            return
        try:
            msgs = parser.feed(octets)
        except msrpframe.MsrpFramingError as exc:
            self.closed(cid, f"framing error: {exc}")
            self._actions.append(Close(cid))
            return
        touched: set[str] = set()
        for msg in msgs:
            to_path = msg.to_path
            sid = session_id(to_path[0]) if to_path else ""
            if cid == self._relay_cid and sid in self._spares:
                self._spare_message(self._spares[sid], msg, cid, now)
                continue
            leg = self._by_sid.get(sid)
            if leg is None or leg.gone:
                if msg.is_request and msg.method != "REPORT" and msg.get("Failure-Report") != "no":
                    frm = msg.from_path
                    if frm:
                        out = msrpframe.build_response(msg.tid, 481, "Session Does Not Exist", frm[:1],
                                                       to_path[:1] or ["msrp://invalid/;tcp"])  # fmt: skip
                        self._writes.setdefault(cid, []).append(out)
                continue
            if leg.cid is None:
                self._bind(leg, cid)
            elif leg.cid != cid:
                continue  # a second connection for a bound session: ignored (section 5.4)
            leg.heard = True
            leg.bind_by = None
            self.rooms[leg.room].data(leg.uri, msg.to_bytes(), now)
            touched.add(leg.room)
        for room in touched:
            self._after(room, now)

    @_touches
    def closed(self, cid: int, reason: str = "connection closed", now: float = 0.0) -> None:
        if cid == self._relay_cid:  # every leg through it ends; the connection is made again
            log.warning("chat focus: the connection to the relay closed (%s)", reason)
            self._relay_cid = None
            self._spares.clear()
            self._relay_retry_at = now + RELAY_RETRY
        self._conns.pop(cid, None)
        self._writes.pop(cid, None)
        self.congested.discard(cid)
        for key in self._conn_legs.pop(cid, set()):
            leg = self.legs.get(key)
            if leg is not None and not leg.gone:
                leg.cid = None
                self._end(leg, reason, send_bye=True)

    def take_writes(self) -> dict[int, bytes]:
        out = {cid: b"".join(parts) for cid, parts in self._writes.items() if parts}
        self._writes.clear()
        return out

    def take_actions(self) -> list[Connect | Close]:
        out, self._actions = self._actions, []
        return out

    def _bind(self, leg: _Leg, cid: int) -> None:
        leg.cid = cid
        leg.bind_by = None
        self._conn_legs.setdefault(cid, set()).add(leg.key)

    @_touches
    def resume(self, cid: int) -> None:
        """Connection ``cid`` drained its write buffer: what waited for it goes now."""
        self.congested.discard(cid)
        for key in self._conn_legs.get(cid, ()):
            leg = self.legs.get(key)
            if leg is not None:
                self._flush(leg)

    def _flush(self, leg: _Leg) -> None:
        if leg.cid is not None and not leg.gone and leg.cid not in self.congested:
            room = self.rooms.get(leg.room)
            if room is not None:
                out = room.outgoing(leg.uri)
                if out:
                    self._writes.setdefault(leg.cid, []).append(out)

    def _after(self, room_key: str, now: float) -> None:
        """After the room ran: its events, then every bound participant's octets."""
        room = self.rooms.get(room_key)
        if room is None:
            return
        while (ev := room.next_event()) is not None:
            if isinstance(ev, ParticipantLeft):
                self.changed.add(room_key)
                self.stats.left += 1
                leg = self._by_member.get((room_key, ev.uri))
                if leg is not None and not leg.gone:
                    self._end(leg, ev.reason, send_bye=True, in_room=False)
            elif isinstance(ev, NicknameChanged):
                self.changed.add(room_key)
            elif isinstance(ev, MessageRelayed):
                self.stats.messages += 1
            elif isinstance(ev, MessageRefused):
                self.stats.refused_messages += 1
        for p in room.participants():
            leg = self._by_member.get((room_key, p.uri))
            if leg is not None:
                self._flush(leg)
        self._drop_if_empty(room_key)

    def _end(self, leg: _Leg, reason: str, *, send_bye: bool, in_room: bool = True) -> None:
        if leg.gone:
            return
        leg.gone = True
        del self.legs[leg.key]
        self._by_sid.pop(leg.sid, None)
        if self._by_member.get((leg.room, leg.uri)) is leg:
            del self._by_member[(leg.room, leg.uri)]
        if leg.cid is not None:
            legs = self._conn_legs.get(leg.cid)
            if legs is not None:
                legs.discard(leg.key)
        room = self.rooms.get(leg.room)
        if room is not None and in_room:
            rest = room.leave(leg.uri, reason)
            if rest and leg.cid is not None:
                self._writes.setdefault(leg.cid, []).append(rest)
            self.changed.add(leg.room)
            self.stats.left += 1
            while (ev := room.next_event()) is not None:
                if isinstance(ev, ParticipantLeft) and ev.uri != leg.uri:
                    other = self._by_member.get((leg.room, ev.uri))
                    if other is not None:
                        self._end(other, ev.reason, send_bye=True, in_room=False)
        if leg.cid is not None and leg.cid != self._relay_cid and not self._conn_legs.get(leg.cid):
            self._actions.append(Close(leg.cid))  # no other session on it (section 5.4)
        if send_bye:
            self._ended.append(leg)
        self._drop_if_empty(leg.room)

    def _drop_if_empty(self, room_key: str) -> None:
        room = self.rooms.get(room_key)
        if room is not None and not len(room) and room_key not in self._fixed.values():
            del self.rooms[room_key]
            user = room_key.partition("@")[0]
            if self._users.get(user) == room_key:
                del self._users[user]

    @_touches
    def close_all(self, reason: str = "focus stopping") -> int:
        """End every dialog with a BYE (a worker that stops); how many."""
        legs = list(self.legs.values())
        for leg in legs:
            self._end(leg, reason, send_bye=True)
        return len(legs)

    # ------------------------------------------------------------ time
    def get_timer(self) -> float | None:
        """The earliest deadline; computed again only after an entry point that may move one
        ran (``_touches``): the core asks after every message, most of them not ours."""
        if self._stale:
            self._stale = False
            self._deadline = self._earliest()
        return self._deadline

    def _earliest(self) -> float | None:
        times: list[float] = []
        for leg in self.legs.values():
            for t in (leg.resend_at, leg.give_up_at, leg.bind_by):
                if t is not None:
                    times.append(t)
        for room in self.rooms.values():
            t = room.get_timer()
            if t is not None:
                times.append(t)
        if self._relay_retry_at is not None:
            times.append(self._relay_retry_at)
        for sp in self._spares.values():
            if sp.use_path is not None:
                times.append(sp.expires_at - RELAY_MARGIN)
        return min(times) if times else None

    @_touches
    def handle_timer(self, now: float) -> None:
        for leg in list(self.legs.values()):
            if leg.gone:
                continue
            if leg.give_up_at is not None and leg.give_up_at <= now:
                self._end(leg, "no ACK", send_bye=True)  # RFC 3261 13.3.1.4
                continue
            if leg.resend_at is not None and leg.resend_at <= now and leg.txn is not None:
                self._sip.append(("resend", leg.txn, leg.response, None))
                leg.interval = min(2 * leg.interval, T2)
                leg.resend_at = now + leg.interval
            if leg.bind_by is not None and leg.bind_by <= now:
                self._end(leg, "no MSRP connection", send_bye=True)
        for key, room in list(self.rooms.items()):
            t = room.get_timer()
            if t is not None and t <= now:
                room.handle_timer(now)
                self._after(key, now)
        if self._relay is not None:
            if self._relay_retry_at is not None and self._relay_retry_at <= now:
                self._relay_retry_at = None
                if self._relay_cid is None:
                    self.start(now)
                else:
                    self._refill(now)
            elif self._relay_cid is not None and any(
                sp.use_path is not None and sp.expires_at - RELAY_MARGIN <= now
                for sp in self._spares.values()
            ):
                self._refill(now)


ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, SUBSCRIBE"
_REASONS = {400: "Bad Request", 488: "Not Acceptable Here", 415: "Unsupported Media Type"}
