"""MSRP relay core (RFC 4976), sans-IO: octets in, octets and events out, time injected.

Theory of operation
-------------------
One ``MsrpRelay`` per worker. It owns no socket, loop or clock (STYLE.md section 1).
Connections are opaque ``cid`` integers chosen by the caller:

- ``connected(cid, authority, now, token=...)``: a connection is up (inbound: authority
  None; outbound: the answer to a ``Connect`` event, matched by its token);
  ``connect_failed(token, now)``: an outbound one could not be opened;
- ``data(cid, octets, now)``: octets read from a connection (one ``MsrpParser`` each);
- ``closed(cid, now)``: the connection is gone (idempotent);
- ``outgoing()``: the ``(cid, octets)`` to write, in order; ``next_event()``: ``Connect``,
  ``CloseConnection``, ``SessionCreated``, ``SessionEnded``, ``AuthFailed`` (None when
  empty); ``get_timer()`` / ``handle_timer(now)``: transaction timeouts and session expiry.

``now`` is wall-clock seconds (``time.time()``): the digest nonces carry their issue time
and are checked by every worker (simplefast/proxy/auth.py).

Links. Each connection is a ``_Link``. An outbound link exists before its connection:
a forward to an authority (scheme, host, port) with no link opens one (event
``Connect(authority, token)``) and queues its octets on the link; ``connected`` with the
token gives the link its cid and releases the queue into ``outgoing()``. So
``outgoing()`` only ever names cids (the brief allowed ``int | Authority`` targets; holding
the queue here keeps one owner for it, so a failed connect can turn the queued
transactions into REPORTs).

Sessions (``_Session``, one per URI issued by AUTH; docs/msrp.md 2.5, 8.1). States and
moves are the table ``_TRANSITIONS``:

    ISSUED --bind (first request forwarded either way)--> BOUND
    ISSUED --expire-->       ENDED     (an unbound URI is forgotten at Expires)
    BOUND  --expire-->       BOUND     (a bound session lives as long as its client link)
    any    --client_lost-->  ENDED
    BOUND  --peer_lost-->    ISSUED    (the peer is unbound; expiry applies again)

A session remembers ``client_path`` (the AUTH's From-Path: the expected From-Path of
outgoing requests and the To-Path tail of incoming ones), the client link, and once bound
the peer path (outgoing To-Path[1:] == incoming From-Path) and the peer link.

Requests (docs/msrp.md 3.1), in order: AUTH addressed to us (one To-Path URI with our
scheme/host/port) is handled locally (section 2); everything else is checked -- To-Path and
From-Path present (400), To-Path[0] ours with a live session (481), a next hop (481),
direction (outgoing: on the client link with From-Path == client_path; incoming:
To-Path[1:] == client_path; else 403; the bound peer path must match, 403; a bound peer
link that is still open and is not this one, 506), SEND carries Message-ID (400) -- then
answered and forwarded: SEND with Failure-Report yes gets an immediate 200 (3.2);
To-Path[0] moves verbatim to the front of From-Path (3.3); SEND and other methods get a
new tid, REPORT keeps its own; every other header, the body and the flag pass verbatim.
Error answers: SEND unless Failure-Report is ``no``, other methods always, REPORT never.

Path comparisons (client_path, peer path) are string equality of the URIs as written, as
msrprelay does; only To-Path[0] against our authority follows RFC 4975 6.1 (scheme and host
case-insensitive, no port = ours).

Forward table (4.1): each forwarded SEND with Failure-Report yes/partial, and each other
non-REPORT method, leaves a ``_FwdTxn`` on the outgoing link keyed by the new tid. A
response on that link with that tid finds it: SEND responses are hop by hop (200 absorbed;
any other code becomes a REPORT upstream with that status); responses to other methods go
back end to end with the original tid, To-Path[0] moved to the front of From-Path, on the
link the request came in on. A response with no entry is dropped.

Timeouts (4.2): 30 s per entry that expects a response. SEND with Failure-Report yes:
REPORT 408 upstream; ``partial``: forgotten quietly; other methods: a 408 *response*
upstream (docs/msrp.md says unconfirmed; OpenSIPS does it for AUTH). A lost or failed
outgoing link does the same to its pending entries at once.

Connection loss and framing errors: a framing error emits ``CloseConnection`` and is then
handled as ``closed``: sessions whose client link it was end (``SessionEnded``), entries
that came in on it are dropped (their origin is gone), entries that went out on it fail
as above, sessions whose peer link it was are unbound. Three failed AUTHs on one
connection close it (msrprelay's rule).

AUTH (section 2): no Authorization -> 401 with ``WWW-Authenticate`` (realm, nonce, qop,
opaque; one header per configured algorithm, SHA-256 first); malformed credentials or a
bad Expires -> 400; Expires out of [min, max] -> 423 with Min-Expires / Max-Expires
(checked before the credentials); stale nonce or a nonce not ours -> a new 401 (stale=true
for the former); wrong password, unknown user, replayed nc, wrong opaque, a ``uri``
parameter that is not the digest-uri -> 403; success -> 200 with Use-Path, Expires,
Authentication-Info (rspauth with A2 = ":" digest-uri). The digest-uri is the last
To-Path URI as written (there is no ``uri`` parameter in MSRP, 2.3). ``DigestAuth``
requires a ``uri`` parameter, so ``_MsrpDigest`` (a subclass, auth.py unchanged) parses the
credentials, puts the digest-uri in, and runs ``DigestAuth._check_one``: the same HA1
values, nonce scheme (stateless HMAC nonces), nonce-count replay table and algorithms as SIP.

Re-chunking (3.5): a SEND chunk with more data than ``relay_chunk_bytes`` (64 KiB) goes on
in pieces of that size (``msrpframe.forward(..., part=...)``), each its own transaction.

Not implemented (yet):
- interrupting a chunk being written when a response or REPORT waits (3.5);
- back-pressure (Pause/ResumeReading, water marks), the first-message and idle timers,
  connect timeouts (the caller reports ``connect_failed``), TLS peer-name checks (5);
- the worker handoff (8.3); reuse of inbound relay connections for outbound traffic;
- closing peer links that only carried ended sessions;
- AUTH refresh of an existing URI (a new AUTH always issues a new URI) and ``nextnonce``;
- "413 to further chunks of the same message" after a downstream 413 (4.3);
- injecting the digest nonce (``DigestAuth.nonce`` draws its salt from ``os.urandom``),
  so tests compare the challenge's paths and parameters, not its nonce.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import re
import secrets
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from simplefast._impl import msrpframe  # the active twin (ext, or ref with SIMPLEFAST_IMPL=ref)
from simplefast.proxy.auth import AuthResult, DigestAuth, NonceCounts, Users, h, parse_digest

if TYPE_CHECKING:
    from simplefast._ext.msrpframe import MsrpMessage

__all__ = [
    "AuthFailed",
    "Authority",
    "CloseConnection",
    "Connect",
    "MsrpRelay",
    "RelayConfig",
    "RelayEvent",
    "SessionCreated",
    "SessionEnded",
]

DEFAULT_PORT: Final = 2855  # RFC 4975 section 6.2 [R?]: no port in a path URI
_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    408: "Request Timeout",
    423: "Interval Out-of-Bounds",
    481: "Session Does Not Exist",
    501: "Not Implemented",
    506: "Session Bound Elsewhere",
}
# RFC 4975 section 9: msrp-URI = scheme "://" [userinfo "@"] host [":" port] ["/" session-id]
#                                ";" transport *( ";" URI-parameter )
_URI = re.compile(
    r"(?P<scheme>msrps?)://(?:[^@/;\s]*@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^:/;@\[\]\s]+)"
    r"(?::(?P<port>[0-9]{1,5}))?(?:/(?P<session>[^;/\s]*))?;(?P<transport>[A-Za-z0-9.+-]+)(?:;\S*)?",
    re.IGNORECASE,
)


# ---------------------------------------------------------------- public types


@dataclass(frozen=True, slots=True)
class Authority:
    """Where a connection goes: scheme (``msrp``/``msrps``), host (lower case), port."""

    scheme: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Our listener's authority and the AUTH policy (docs/msrp.md 2.4, 3.1, 4.2)."""

    scheme: str
    host: str
    port: int
    realm: str
    min_expires: int = 60
    default_expires: int = 1800
    max_expires: int = 3600
    transaction_timeout: float = 30.0  # docs/msrp.md 4.2 [I]
    max_auth_failures: int = 3  # per connection, then close [I: msrprelay]
    algorithms: tuple[str, ...] = ("MD5",)  # docs/msrp.md 2.2: MD5 by default, SHA-256 opt-in
    nonce_ttl: float = 300.0
    forward_other_methods: bool = True  # docs/msrp.md 3.1 item 7: forward, behind a switch
    # docs/msrp.md 3.5: a SEND chunk with more data than this goes on in pieces of it (0: never)
    relay_chunk_bytes: int = 65536
    require_auth: bool = True  # False (the server's --no-auth): an AUTH gets its 200 at once
    # other ports of ours: the listener every worker shares (``port`` is this worker's own,
    # named in the session URIs it issues; simplefast/transport/msrp.py)
    other_ports: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.scheme not in ("msrp", "msrps"):
            raise ValueError(f"scheme {self.scheme!r}: expected msrp or msrps")
        if not 0 < self.min_expires <= self.default_expires <= self.max_expires:
            raise ValueError("expires: need 0 < min <= default <= max")


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a connection to ``authority``; report it with ``connected(cid, authority, now,
    token=token)`` or ``connect_failed(token, now)``."""

    authority: Authority
    token: int


@dataclass(frozen=True, slots=True)
class CloseConnection:
    """Close ``cid`` (framing error, too many failed AUTHs). The relay already treats it as
    closed; the caller's later ``closed(cid)`` is harmless."""

    cid: int
    reason: str


@dataclass(frozen=True, slots=True)
class SessionCreated:
    session_id: str
    uri: str
    username: str
    cid: int
    expires: int


@dataclass(frozen=True, slots=True)
class SessionEnded:
    session_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class AuthFailed:
    cid: int
    username: str | None
    reason: str


RelayEvent = Connect | CloseConnection | SessionCreated | SessionEnded | AuthFailed


# ---------------------------------------------------------------- URIs


@dataclass(frozen=True, slots=True)
class _Uri:
    scheme: str
    host: str
    port: int | None
    session: str


_URI_CACHE: dict[str, _Uri | None] = {}  # a session's chunks name the same URIs over and over


def _parse_uri(text: str) -> _Uri | None:
    got = _URI_CACHE.get(text, _MISSING)
    if got is not _MISSING:
        return got  # type: ignore[return-value]
    if len(_URI_CACHE) >= 4096:
        _URI_CACHE.clear()
    u = _URI_CACHE[text] = _parse_uri_text(text)
    return u


_MISSING = object()


def parse_msrp_uri(text: str) -> tuple[str, str, int, str] | None:
    """(scheme, host without brackets, port (2855 when absent), session id) of an MSRP URI,
    or None when it is not one (RFC 4975 section 9)."""
    u = _parse_uri(text)
    if u is None:
        return None
    return u.scheme, u.host.strip("[]"), u.port or DEFAULT_PORT, u.session


def _parse_uri_text(text: str) -> _Uri | None:
    m = _URI.fullmatch(text)
    if m is None:
        return None
    port = m["port"]
    if port is not None and not 0 < int(port) < 65536:
        return None
    return _Uri(
        m["scheme"].lower(), m["host"].lower(), None if port is None else int(port), m["session"] or ""
    )


# ---------------------------------------------------------------- internal state

ISSUED: Final = "ISSUED"
BOUND: Final = "BOUND"
ENDED: Final = "ENDED"
# (state, event) -> new state. A pair that is absent leaves the state as it is.
_TRANSITIONS: Final[dict[tuple[str, str], str]] = {
    (ISSUED, "bind"): BOUND,
    (ISSUED, "expire"): ENDED,
    (ISSUED, "client_lost"): ENDED,
    (BOUND, "client_lost"): ENDED,
    (BOUND, "peer_lost"): ISSUED,
}


class _Link:
    __slots__ = ("cid", "authority", "token", "parser", "queue", "txns", "closed", "auth_failures")

    def __init__(self, cid: int | None, authority: Authority | None, token: int | None) -> None:
        self.cid = cid
        self.authority = authority
        self.token = token
        self.parser = msrpframe.MsrpParser()
        self.queue: list[bytes] = []  # octets written before the connection is up
        self.txns: dict[str, _FwdTxn] = {}  # new tid -> transaction forwarded on this link
        self.closed = False
        self.auth_failures = 0


class _Session:
    __slots__ = (
        "sid",
        "uri",
        "client",
        "client_path",
        "username",
        "expires_at",
        "state",
        "peer_path",
        "peer",
    )

    def __init__(
        self, sid: str, uri: str, client: _Link, client_path: list[str], username: str, expires_at: float
    ) -> None:
        self.sid = sid
        self.uri = uri
        self.client = client
        self.client_path = client_path
        self.username = username
        self.expires_at = expires_at
        self.state = ISSUED
        self.peer_path: list[str] | None = None
        self.peer: _Link | None = None


class _FwdTxn:
    __slots__ = (
        "origin",
        "orig_tid",
        "new_tid",
        "out",
        "method",
        "failure_report",
        "from_path",
        "to0",
        "message_id",
        "start",
        "total",
        "octets",
        "deadline",
        "done",
    )

    def __init__(
        self,
        origin: _Link,
        msg: MsrpMessage,
        new_tid: str,
        out: _Link,
        failure_report: str,
        deadline: float,
        *,
        part: tuple[int, int] | None = None,
    ) -> None:
        """``part``: (offset, length) of the data when the chunk went on in pieces (3.5)."""
        self.origin = origin
        self.orig_tid = msg.tid
        self.new_tid = new_tid
        self.out = out
        self.method = msg.method or ""
        self.failure_report = failure_report
        self.from_path = msg.from_path
        self.to0 = msg.to_path[0]
        self.message_id = msg.message_id
        br = msg.byte_range  # checked readable before forwarding
        self.start = 1 if br is None else br[0]
        self.total: int | None = None if br is None else br[2]
        self.octets = len(msg.body)
        if br is None and msg.flag == "$":
            self.total = self.octets
        if part is not None:
            self.start += part[0]
            self.octets = part[1]
        self.deadline = deadline
        self.done = False


class _Route:
    """What the checks of 3.1 items 1-4 decided for one (link, To-Path, From-Path) as
    written, in a bound session: the link to forward on and the new paths. Kept in
    ``MsrpRelay._routes`` while the session is bound; every session move and every lost
    link clears the table (they are rare: a session's chunks all hit it)."""

    __slots__ = ("sess", "out", "new_to", "new_from")

    def __init__(self, sess: _Session, out: _Link, new_to: list[str], new_from: list[str]) -> None:
        self.sess = sess
        self.out = out
        self.new_to = new_to
        self.new_from = new_from


_ROUTES_MAX = 65536


class _MsrpDigest(DigestAuth):
    """``DigestAuth`` with the MSRP digest-uri (docs/msrp.md 2.3) and an ``opaque``.

    MSRP credentials carry no ``uri`` parameter: A2 is ``AUTH:<last To-Path URI>``. A
    ``uri`` parameter, if present, must equal that URI. The ``opaque`` is an HMAC of the
    nonce (stateless, like the nonce); a client that sends one must send ours back.
    """

    def opaque(self, nonce: str) -> str:
        return hmac.new(self._secret, b"opaque:" + nonce.encode(), hashlib.sha256).hexdigest()[:16]

    def msrp_challenges(self, realm: str, now: float, *, stale: bool) -> list[str]:
        nonce = self.nonce(realm, now)
        extra = ", stale=true" if stale else ""
        order = sorted(self.algorithms, key=lambda a: a != "SHA-256")  # RFC 8760 2.4: SHA-256 first
        return [
            f'Digest realm="{realm}", nonce="{nonce}", opaque="{self.opaque(nonce)}", '
            f'algorithm={alg}, qop="auth"{extra}'
            for alg in order
        ]

    def msrp_check(
        self, p: dict[str, str], digest_uri: str, realm: str, users: Users, now: float
    ) -> AuthResult:
        if p.get("uri", digest_uri) != digest_uri:
            return AuthResult(False, p.get("username"), reason="uri is not the last To-Path URI")
        if "opaque" in p and not hmac.compare_digest(p["opaque"], self.opaque(p["nonce"])):
            return AuthResult(False, p.get("username"), reason="opaque is not ours")
        return self._check_one({**p, "uri": digest_uri}, "AUTH", realm, users, now)


_REQUIRED_DIGEST = ("username", "realm", "nonce", "response", "nc", "cnonce")
_NC = re.compile(r"[0-9A-Fa-f]{8}")
_EXPIRES = re.compile(r"[0-9]{1,10}")


def _malformed_credentials(p: dict[str, str] | None) -> bool:
    """docs/msrp.md 2.3: malformed credentials get 400 (we only take qop=auth)."""
    if p is None or any(not p.get(k) for k in _REQUIRED_DIGEST):
        return True
    return p.get("qop") != "auth" or _NC.fullmatch(p["nc"]) is None


def _failure_report(msg: MsrpMessage) -> str:
    # RFC 4975 7.1.1 [R?]: absent means yes; an unknown value is read as yes
    v = (msg.get("Failure-Report") or "yes").strip().lower()
    return v if v in ("yes", "no", "partial") else "yes"


# ---------------------------------------------------------------- the relay


class MsrpRelay:
    """The relay core of one worker (see the module docstring)."""

    def __init__(
        self,
        config: RelayConfig,
        users: Users,
        *,
        secret: bytes,
        new_session_id: Callable[[], str] | None = None,
        new_tid: Callable[[], str] | None = None,
        nonce_counts: NonceCounts | None = None,
    ) -> None:
        """
        Args:
            config: our authority and policy.
            users: username -> credentials for ``config.realm`` (HA1 per algorithm).
            secret: the nonce secret shared by the workers.
            new_session_id: session ids for issued URIs; default 128 random bits (an
                issued URI must be unguessable, docs/msrp.md 2.4). Tests inject ids.
            new_tid: transaction ids of forwarded requests and relay-made REPORTs;
                default 64 random bits in hex.
            nonce_counts: the nc replay table (``SharedNonceCounts`` with workers).
        """
        self.config = config
        self.users = users
        self._auth = _MsrpDigest(
            secret, algorithms=config.algorithms, nonce_ttl=config.nonce_ttl, nonce_counts=nonce_counts
        )
        self._new_sid = new_session_id or (lambda: secrets.token_hex(16))
        # a random prefix and a counter: unique, unguessable enough, and no urandom per chunk
        tid_prefix, tid_seq = secrets.token_hex(4), itertools.count(1)
        self._new_tid = new_tid or (lambda: f"{tid_prefix}{next(tid_seq):x}")
        self._links: dict[int, _Link] = {}  # cid -> link (kept after close until closed())
        self._pending: dict[int, _Link] = {}  # token -> outbound link not yet connected
        self._by_authority: dict[Authority, _Link] = {}  # outbound links, open or pending
        self._sessions: dict[str, _Session] = {}
        self._routes: dict[tuple[int | None, str | None, str | None], _Route] = {}
        self._out: list[tuple[int, bytes]] = []
        self._events: deque[RelayEvent] = deque()
        self._timers: list[tuple[float, int, _FwdTxn | _Session]] = []
        self._seq = itertools.count()
        self._tokens = itertools.count(1)

    # ------------------------------------------------------------ caller API

    def connected(
        self, cid: int, authority: Authority | None, now: float, *, token: int | None = None
    ) -> None:
        """A connection is up: inbound (``authority`` None) or the one asked for by
        ``Connect`` (``token``, or else the first pending one to ``authority``)."""
        link = self._pending.pop(token, None) if token is not None else None
        if link is None and authority is not None:
            cand = self._by_authority.get(authority)
            if cand is not None and cand.cid is None and cand.token is not None:
                link = self._pending.pop(cand.token)
        if link is None:
            self._links[cid] = _Link(cid, authority, None)
            return
        link.cid = cid
        self._links[cid] = link
        for octets in link.queue:
            self._out.append((cid, octets))
        link.queue.clear()

    def connect_failed(self, token: int, now: float) -> None:
        """The connection asked for by ``Connect(token)`` could not be opened
        (docs/msrp.md 3.4: REPORT 408 upstream for what was queued)."""
        link = self._pending.pop(token, None)
        if link is not None:
            self._lose(link, now, "connect failed")

    def closed(self, cid: int, now: float) -> None:
        """The connection is gone (idempotent)."""
        link = self._links.pop(cid, None)
        if link is not None and not link.closed:
            self._lose(link, now, "connection closed")

    def data(self, cid: int, data: bytes | bytearray | memoryview, now: float) -> None:
        """Octets read from ``cid``. Never raises for bad input: a framing error becomes
        ``CloseConnection`` (the framer leaves the parser failed, so nothing else is
        possible)."""
        link = self._links.get(cid)
        if link is None:  # octets before connected(): an inbound connection
            link = self._links[cid] = _Link(cid, None, None)
        if link.closed:
            return
        try:
            msgs = link.parser.feed(data)
        except msrpframe.MsrpFramingError as exc:
            self._close(link, now, f"framing error: {exc}")
            return
        for msg in msgs:
            if link.closed:
                break
            try:
                self._dispatch(link, msg, now)
            except msrpframe.MsrpFramingError as exc:  # e.g. a malformed Byte-Range on access
                self._close(link, now, f"framing error: {exc}")

    def outgoing(self) -> list[tuple[int, bytes]]:
        """The octets to write, ``(cid, octets)`` in order; clears the list."""
        out, self._out = self._out, []
        return out

    def next_event(self) -> RelayEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """When ``handle_timer`` must run next, None when nothing waits."""
        while self._timers:
            _, _, obj = self._timers[0]
            if self._due_obj_alive(obj):
                return self._timers[0][0]
            heapq.heappop(self._timers)
        return None

    def handle_timer(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            _, _, obj = heapq.heappop(self._timers)
            if isinstance(obj, _FwdTxn):
                if not obj.done:
                    self._txn_failed(obj, 408, "Request Timeout", now, timeout=True)  # docs/msrp.md 4.2
            elif obj.state != ENDED and obj.expires_at <= now:
                self._move(obj, "expire", "expired")

    @property
    def sessions(self) -> dict[str, str]:
        """Session id -> state (read-only view for tests and metrics)."""
        return {sid: s.state for sid, s in self._sessions.items()}

    # ------------------------------------------------------------ plumbing

    @staticmethod
    def _due_obj_alive(obj: _FwdTxn | _Session) -> bool:
        return (not obj.done) if isinstance(obj, _FwdTxn) else obj.state == ISSUED

    def _at(self, when: float, obj: _FwdTxn | _Session) -> None:
        heapq.heappush(self._timers, (when, next(self._seq), obj))

    def _write(self, link: _Link, octets: bytes) -> None:
        if link.closed:
            return
        if link.cid is None:
            link.queue.append(octets)
        else:
            self._out.append((link.cid, octets))

    def _respond(
        self,
        link: _Link,
        msg: MsrpMessage,
        status: int,
        headers: Sequence[tuple[str, str]] = (),
        *,
        to_path: list[str] | None = None,
    ) -> None:
        """A relay-made response on the link the request came in on. SEND responses are hop by
        hop (To-Path = From-Path[0]); others end to end (To-Path = whole From-Path) [V 3-2,
        5.1-02, 5.1-07]. From-Path = To-Path[0] as received."""
        if not msg.from_path:
            return  # no address to answer to (docs/msrp.md 3.1 item 1)
        if to_path is None:
            to_path = msg.from_path[:1] if msg.method == "SEND" else msg.from_path
        from_path = msg.to_path[:1] or [self._our_base()]
        hdrs = list(headers)
        if msg.method == "SEND" and msg.message_id is not None:
            hdrs.insert(0, ("Message-ID", msg.message_id))  # as in RFC 4976 3-2
        self._write(
            link, msrpframe.build_response(msg.tid, status, _REASONS.get(status), to_path, from_path, hdrs)
        )

    def _our_base(self) -> str:
        c = self.config
        return f"{c.scheme}://{c.host}:{c.port};tcp"

    def _close(self, link: _Link, now: float, reason: str) -> None:
        if link.cid is not None:
            self._events.append(CloseConnection(link.cid, reason))
        self._lose(link, now, reason)

    def _lose(self, link: _Link, now: float, reason: str) -> None:
        """docs/msrp.md 5 teardown: sessions of the client end, peers are unbound, forwarded
        transactions fail upstream, transactions from here are forgotten."""
        link.closed = True
        link.queue.clear()
        self._routes.clear()
        if link.authority is not None and self._by_authority.get(link.authority) is link:
            del self._by_authority[link.authority]
        for sess in list(self._sessions.values()):
            if sess.client is link:
                self._move(sess, "client_lost", reason)
            elif sess.peer is link:
                sess.peer = None
                self._move(sess, "peer_lost", reason)
                if sess.state == ISSUED and sess.expires_at <= now:
                    self._move(sess, "expire", "expired")
                elif sess.state == ISSUED:
                    self._at(sess.expires_at, sess)  # expiry applies again
        for txn in list(link.txns.values()):
            self._txn_failed(txn, 408, "Session got disconnected", now)
        for other in [*self._links.values(), *self._pending.values()]:  # txns that came in here
            for txn in list(other.txns.values()):
                if txn.origin is link:
                    txn.done = True
                    del other.txns[txn.new_tid]

    def _move(self, sess: _Session, event: str, reason: str) -> None:
        new = _TRANSITIONS.get((sess.state, event), sess.state)
        if new == sess.state:
            return
        sess.state = new
        self._routes.clear()
        if new == ENDED:
            self._sessions.pop(sess.sid, None)
            self._events.append(SessionEnded(sess.sid, reason))

    # ------------------------------------------------------------ dispatch

    def _dispatch(self, link: _Link, msg: MsrpMessage, now: float) -> None:
        if not msg.is_request:
            self._response(link, msg, now)
            return
        to_path = msg.to_path
        if msg.method == "AUTH" and len(to_path) == 1:
            uri = _parse_uri(to_path[0])
            if uri is not None and self._is_us(uri):
                self._auth_request(link, msg, now)
                return
        self._relay_request(link, msg, now)

    def _is_us(self, uri: _Uri) -> bool:
        # RFC 4975 6.1 [R?]: scheme and host case-insensitive, port; no port = ours [I: OpenSIPS]
        c = self.config
        return (
            uri.scheme == c.scheme
            and uri.host == c.host.lower()
            and (uri.port is None or uri.port == c.port or uri.port in c.other_ports)
        )

    # ------------------------------------------------------------ AUTH (docs/msrp.md 2)

    def _auth_request(self, link: _Link, msg: MsrpMessage, now: float) -> None:
        c = self.config
        if not msg.from_path:
            return  # nowhere to answer
        expires = c.default_expires
        value = msg.get("Expires")
        if value is not None:
            if _EXPIRES.fullmatch(value) is None:  # ASCII digits only (str.isdigit takes "²")
                self._auth_fail(link, msg, 400, None, "Expires is not an integer", now)
                return
            expires = int(value)
            if expires < c.min_expires:  # docs/msrp.md 2.4 [I]: 423 with Min-Expires
                self._respond(link, msg, 423, [("Min-Expires", str(c.min_expires))])
                return
            if expires > c.max_expires:
                self._respond(link, msg, 423, [("Max-Expires", str(c.max_expires))])
                return
        if not c.require_auth:  # --no-auth: every AUTH is granted (an open relay: tests only)
            self._grant(link, msg, None, "anonymous", expires, now)
            return
        creds = msg.get_all("Authorization")
        if not creds:
            self._challenge(link, msg, now, stale=False)
            return
        p = parse_digest(creds[0])
        if _malformed_credentials(p):
            self._auth_fail(link, msg, 400, None, "malformed credentials", now)
            return
        assert p is not None
        if p["realm"] != c.realm:
            self._challenge(link, msg, now, stale=False)
            return
        digest_uri = msg.to_path[-1]  # docs/msrp.md 2.3: the last To-Path URI as written
        result = self._auth.msrp_check(p, digest_uri, c.realm, self.users, now)
        if result.stale or result.reason == "nonce not ours":
            self._challenge(link, msg, now, stale=result.stale)  # [I: OpenSIPS] stale -> 401
            return
        if not result.ok or result.username is None:
            self._auth_fail(link, msg, 403, p.get("username"), result.reason, now)
            return
        self._auth_ok(link, msg, p, digest_uri, result.username, expires, now)

    def _challenge(self, link: _Link, msg: MsrpMessage, now: float, *, stale: bool) -> None:
        hdrs = [
            ("WWW-Authenticate", v) for v in self._auth.msrp_challenges(self.config.realm, now, stale=stale)
        ]
        self._respond(link, msg, 401, hdrs)

    def _auth_fail(
        self, link: _Link, msg: MsrpMessage, status: int, username: str | None, reason: str, now: float
    ) -> None:
        self._respond(link, msg, status)
        self._events.append(AuthFailed(link.cid if link.cid is not None else -1, username, reason))
        link.auth_failures += 1
        if link.auth_failures >= self.config.max_auth_failures:  # [I: msrprelay]
            self._close(link, now, f"{link.auth_failures} failed AUTH requests")

    def _auth_ok(
        self,
        link: _Link,
        msg: MsrpMessage,
        p: dict[str, str],
        digest_uri: str,
        username: str,
        expires: int,
        now: float,
    ) -> None:
        algorithm = p.get("algorithm", "MD5")
        ha1 = self.users[username].ha1[algorithm]
        # RFC 2617 3.2.3: rspauth with A2 = ":" digest-uri [I: msrprelay]
        rspauth = h(
            algorithm, f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:auth:{h(algorithm, ':' + digest_uri)}"
        )
        info = f'rspauth="{rspauth}", cnonce="{p["cnonce"]}", nc={p["nc"]}, qop=auth'
        self._grant(link, msg, info, username, expires, now)

    def _grant(
        self, link: _Link, msg: MsrpMessage, info: str | None, username: str, expires: int, now: float
    ) -> None:
        """The 200 to an AUTH: a new session URI (Use-Path) and its Expires."""
        c = self.config
        sid = self._new_sid()
        while sid in self._sessions:
            sid = self._new_sid()
        uri = f"{c.scheme}://{c.host}:{c.port}/{sid};tcp"  # [V 5.1-12]
        sess = _Session(sid, uri, link, list(msg.from_path), username, now + expires)
        self._sessions[sid] = sess
        self._at(sess.expires_at, sess)
        # docs/msrp.md 2.4 (msrprelay's rule, unconfirmed): the inner relays the AUTH came
        # through, in the order the client sends in, then our new URI.
        use_path = [*reversed(msg.from_path[:-1]), uri]
        hdrs = [("Use-Path", " ".join(use_path))]
        if info is not None:
            hdrs.append(("Authentication-Info", info))
        hdrs.append(("Expires", str(expires)))
        self._respond(link, msg, 200, hdrs)
        link.auth_failures = 0
        self._events.append(
            SessionCreated(sid, uri, username, link.cid if link.cid is not None else -1, expires)
        )

    # ------------------------------------------------------------ forwarding (docs/msrp.md 3)

    def _relay_request(self, link: _Link, msg: MsrpMessage, now: float) -> None:
        method = msg.method or ""
        is_send, is_report = method == "SEND", method == "REPORT"
        fr = _failure_report(msg) if is_send else "yes"
        # A request whose link, To-Path and From-Path (as written) were checked before, in a
        # session still bound: the checks of 3.1 items 1-4 gave their answer then (see _Route)
        key = (link.cid, msg.get("To-Path"), msg.get("From-Path"))
        route = self._routes.get(key) if is_send or is_report else None
        if route is not None and route.sess.state == BOUND and not route.out.closed and not link.closed:
            if is_send and msg.message_id is None:  # 3.1 item 5 [I: msrprelay]
                if fr != "no":
                    self._respond(link, msg, 400)
                return
            _ = msg.byte_range  # raises MsrpFramingError (400: the connection closes) if malformed
            self._forward(link, msg, route.out, route.new_to, route.new_from, is_send, is_report, fr, now)
            return

        def fail(status: int) -> None:
            # 3.2: REPORT is never answered; a SEND with Failure-Report no gets nothing
            if not is_report and not (is_send and fr == "no"):
                self._respond(link, msg, status)

        to_path, from_path = msg.to_path, msg.from_path
        if not to_path or not from_path:  # 3.1 item 1
            fail(400)
            return
        first = _parse_uri(to_path[0])
        if first is None:
            fail(400)
            return
        sess = self._sessions.get(first.session) if first.session else None
        if not self._is_us(first) or sess is None or sess.state == ENDED:  # 3.1 item 2
            fail(481)
            return
        if len(to_path) < 2:  # 3.1 item 3: nowhere to relay
            fail(481)
            return
        nxt = _parse_uri(to_path[1])
        if nxt is None:
            fail(400)
            return
        # 3.1 item 4: direction
        outgoing = link is sess.client and from_path == sess.client_path
        incoming = not outgoing and to_path[1:] == sess.client_path
        if not outgoing and not incoming:
            fail(403)
            return
        peer_path = to_path[1:] if outgoing else from_path  # outgoing To-Path tail == incoming From-Path
        if sess.peer_path is not None and peer_path != sess.peer_path:
            fail(403)
            return
        if incoming and sess.peer is not None and not sess.peer.closed and sess.peer is not link:
            fail(506)  # [R?] session bound to another connection
            return
        if is_send and msg.message_id is None:  # 3.1 item 5 [I: msrprelay]
            fail(400)
            return
        _ = msg.byte_range  # raises MsrpFramingError (400: the connection closes) if malformed
        if not is_send and not is_report and method != "AUTH" and not self.config.forward_other_methods:
            fail(501)
            return
        # the next hop (3.4)
        if incoming:
            out = sess.client  # never dial a client
        elif sess.peer is not None and not sess.peer.closed:
            out = sess.peer
        else:
            out = self._link_to(Authority(nxt.scheme, nxt.host, nxt.port or DEFAULT_PORT))
        if sess.peer is None or sess.peer.closed:
            sess.peer = link if incoming else out
        sess.peer_path = peer_path
        self._move(sess, "bind", "")
        new_to = to_path[1:]
        new_from = [to_path[0], *from_path]  # 3.3: To-Path[0] verbatim to the front of From-Path
        if sess.state == BOUND and link.cid is not None:
            if len(self._routes) >= _ROUTES_MAX:
                self._routes.clear()
            self._routes[key] = _Route(sess, out, new_to, new_from)
        self._forward(link, msg, out, new_to, new_from, is_send, is_report, fr, now)

    def _forward(
        self, link: _Link, msg: MsrpMessage, out: _Link, new_to: list[str], new_from: list[str],
        is_send: bool, is_report: bool, fr: str, now: float,
    ) -> None:  # fmt: skip
        """Answer (3.2) and forward (3.3) a request that passed the checks of 3.1."""
        if is_send and fr == "yes":  # 3.2: the immediate 200 before forwarding [V 3-2]
            self._respond(link, msg, 200)
        size = self.config.relay_chunk_bytes
        if is_send and size and len(msg.body) > size and msg.byte_range is not None:
            self._forward_parts(link, msg, out, new_to, new_from, fr, now, size)
            return
        if is_report:
            tid = msg.tid  # [V 3-7, 3-9] REPORT keeps its tid
            data = msrpframe.forward(msg, tid, new_to, new_from)
        else:
            tid, data = self._fresh_forward(out, msg, new_to, new_from)
            if not (is_send and fr == "no"):
                txn = _FwdTxn(link, msg, tid, out, fr, now + self.config.transaction_timeout)
                out.txns[tid] = txn
                self._at(txn.deadline, txn)
        if data is None:  # a REPORT whose data holds its own end-line: it cannot be framed
            return
        self._write(out, data)

    def _forward_parts(
        self, link: _Link, msg: MsrpMessage, out: _Link, new_to: list[str], new_from: list[str], fr: str,
        now: float, size: int,
    ) -> None:  # fmt: skip
        """docs/msrp.md 3.5: a chunk over ``relay_chunk_bytes`` goes on in pieces of that
        size, each with its own tid and Byte-Range (the total as received), ``+`` on all but
        the last, which keeps the chunk's flag; each piece is its own forwarded transaction,
        so a failure is reported for its range. Sessions sharing the outgoing connection
        get their chunks in between."""
        n = len(msg.body)
        deadline = now + self.config.transaction_timeout
        for off in range(0, n, size):
            part = (off, min(size, n - off))
            tid, data = self._fresh_forward(out, msg, new_to, new_from, part)
            if fr != "no":
                txn = _FwdTxn(link, msg, tid, out, fr, deadline, part=part)
                out.txns[tid] = txn
                self._at(deadline, txn)
            self._write(out, data)

    def _fresh_forward(
        self, out: _Link, msg: MsrpMessage, new_to: list[str], new_from: list[str],
        part: tuple[int, int] | None = None,
    ) -> tuple[str, bytes]:  # fmt: skip
        """A new tid for a forwarded request and its octets: not in use on ``out``, and
        whose end-line does not occur in the data (RFC 4975 7.1)."""
        for _ in range(16):
            tid = self._new_tid()
            if tid in out.txns:
                continue
            data = msrpframe.forward(msg, tid, new_to, new_from, part=part)
            if data is not None:
                return tid, data
        raise RuntimeError("new_tid gave 16 unusable transaction ids in a row")

    def _free_tid(self, out: _Link) -> str:
        """A new tid not in use on ``out``, for a REPORT the relay writes (no data, so no
        end-line to avoid; forwarded requests get theirs from ``_fresh_forward``)."""
        for _ in range(16):
            tid = self._new_tid()
            if tid not in out.txns:
                return tid
        raise RuntimeError("new_tid gave 16 unusable transaction ids in a row")

    def _link_to(self, authority: Authority) -> _Link:
        link = self._by_authority.get(authority)  # 3.4 item 3: reuse by authority
        if link is not None and not link.closed:
            return link
        token = next(self._tokens)
        link = _Link(None, authority, token)
        self._pending[token] = link
        self._by_authority[authority] = link
        self._events.append(Connect(authority, token))  # 3.4 item 4
        return link

    # ------------------------------------------------------------ responses (docs/msrp.md 4)

    def _response(self, link: _Link, msg: MsrpMessage, now: float) -> None:
        txn = link.txns.pop(msg.tid, None)
        if txn is None or txn.done:
            return  # no forwarded transaction: dropped (4.1)
        txn.done = True
        status = msg.status or 0
        if txn.method == "SEND":  # hop by hop: 200 absorbed, else REPORT upstream (4.2)
            if status != 200:
                self._txn_failed(txn, status, msg.comment or _REASONS.get(status, ""), now)
            return
        if txn.origin.closed or not msg.to_path:
            return
        # end to end [V 5.1-12]: our URI moves from To-Path to the front of From-Path,
        # the upstream tid comes back
        hdrs = [(n, v) for n, v in msg.headers() if n.lower() not in ("to-path", "from-path")]
        self._write(
            txn.origin,
            msrpframe.build_response(
                txn.orig_tid, status, msg.comment, msg.to_path[1:], [msg.to_path[0], *msg.from_path], hdrs
            ),
        )

    def _txn_failed(
        self, txn: _FwdTxn, status: int, comment: str, now: float, *, timeout: bool = False
    ) -> None:
        """A forwarded transaction failed (timeout, lost link, error response): 4.2."""
        txn.done = True
        txn.out.txns.pop(txn.new_tid, None)
        if txn.origin.closed:
            return
        if txn.method != "SEND":
            # unconfirmed (docs/msrp.md 4.2, 10 item 8): 408 as a response for non-SEND
            hdrs: list[tuple[str, str]] = []
            self._write(
                txn.origin,
                msrpframe.build_response(
                    txn.orig_tid, status, _REASONS.get(status), txn.from_path, [txn.to0], hdrs
                ),
            )
            return
        if txn.failure_report == "partial" and timeout:
            return  # 3.2: no 200 is due for partial, so silence is no failure: just forget it
        if txn.failure_report == "no":
            return
        end = txn.start + txn.octets - 1
        total = "*" if txn.total is None else str(txn.total)
        headers = [
            ("Byte-Range", f"{txn.start}-{end}/{total}"),
            ("Status", f"000 {status} {comment}".rstrip()),
        ]
        if txn.message_id is not None:
            headers.insert(0, ("Message-ID", txn.message_id))
        tid = self._free_tid(txn.origin)
        # [I: msrprelay generate_report] To-Path = the SEND's From-Path, From-Path = our URI
        self._write(txn.origin, msrpframe.build_request(tid, "REPORT", txn.from_path, [txn.to0], headers))
