"""RFC 3261 section 17 transactions, sans-IO (with RFC 6026's Accepted states).

Theory of operation
-------------------
The layer sits between a transport and a transaction user (TU: registrar,
proxy core, presence). It never touches a socket or a clock:

    tl.receive(msg, peer, reliable=False, now=t)     # a parsed, validated message
    while (ev := tl.next_event()) is not None: ...   # RequestReceived, ResponseReceived, ...
    tl.respond(txn, data, status, now=t)             # the TU answers a server transaction
    tl.request(data, peer, reliable=False, now=t)    # the TU starts a client transaction
    for data, peer in tl.datagrams_to_send(): ...    # what to put on the wire
    tl.get_timer() / tl.handle_timer(now)            # Timers A-M

``peer`` is opaque here (an address tuple for UDP, a connection handle for
TCP/TLS); ``reliable`` says whether the transport retransmits by itself,
which turns the retransmission timers off and the wait timers to zero
(section 17, Table 4).

Server transactions (section 17.2) are keyed per section 17.2.3: the top Via
branch (with the magic cookie), its sent-by and the method, ACK matching
INVITE. A branch without the cookie falls back to RFC 2543 matching (section
17.2.3, last paragraphs) on Request-URI, From tag, Call-ID, CSeq and top Via.
A retransmitted request is absorbed: it only re-sends the last response.

    INVITE      Proceeding --1xx--> Proceeding --2xx--> Accepted (Timer L) --> Terminated
                     \\--300-699--> Completed (G: retransmit, H: give up) --ACK--> Confirmed (I)
    non-INVITE  Trying --1xx--> Proceeding --final--> Completed (J) --> Terminated

An INVITE gets 100 Trying at once (section 17.2.1 allows waiting 200 ms for
the TU; answering at once costs one datagram and stops the client's Timer A).
An ACK that matches no transaction (the ACK of a 2xx) goes to the TU as
AckReceived, as does an ACK to an INVITE already Accepted (RFC 6026 section 8.7).

Client transactions (section 17.1) are keyed by top Via branch and CSeq
method (section 17.1.3).

    INVITE      Calling (A, B) --1xx--> Proceeding --2xx--> Accepted (M) --> Terminated
                      \\------------------------------300-699--> Completed (D): ACK sent
    non-INVITE  Trying (E, F) --1xx--> Proceeding (E at T2) --final--> Completed (K)

Timer B/F expiry reports TimedOut (the TU answers 408 upstream, section
16.7 step 5, or just forgets); H reports TimedOut for the server side.
Responses that match no client transaction go to the TU as
ResponseReceived(txn=None), which a proxy forwards statelessly (section 16.7,
or drops them).

Every state that ends reports Terminated so the TU can drop what it keyed on
the transaction.

Timers live in one :class:`~simplefast.sip.timers.TimerQueue` per layer: each
transaction has two channels, 0 for retransmission (A, E, G) and 1 for the
timeout or wait (B, D, F, H, I, J, K, L, M).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from simplefast._impl import sipmsg as _codec
from simplefast.errors import SipParseError
from simplefast.sip.timers import TimerQueue

MAGIC_COOKIE = "z9hG4bK"
T1 = 0.5
T2 = 4.0
T4 = 5.0

Peer = Hashable
SipMessage = Any  # simplefast._ext.sipmsg.SipMessage or its reference twin

# states
TRYING, PROCEEDING, COMPLETED, CONFIRMED, ACCEPTED, TERMINATED, CALLING = range(7)
STATE_NAMES = ("trying", "proceeding", "completed", "confirmed", "accepted", "terminated", "calling")

_RETRANSMIT, _TIMEOUT = 0, 1


class ServerTransaction:
    """One server transaction; the TU answers it with ``TransactionLayer.respond``."""

    __slots__ = ("key", "method", "invite", "state", "peer", "reliable", "request", "last_response",
                 "tokens", "interval", "data", "watched")  # fmt: skip

    def __init__(self, key: tuple[Any, ...], request: SipMessage, peer: Peer, reliable: bool) -> None:
        self.key = key
        self.method: str = request.method
        self.invite = self.method == "INVITE"
        self.state = PROCEEDING if self.invite else TRYING
        self.peer = peer
        self.reliable = reliable
        self.request: SipMessage | None = request
        self.last_response: bytes | None = None
        self.tokens = [0, 0]
        self.interval = 0.0
        self.data: Any = None  # for the TU (e.g. the proxy context)
        # False: the TU keeps nothing keyed on it, so its end needs no Terminated event
        # (a registrar at 30k REGISTER/s would otherwise see 30k of them per second)
        self.watched = True

    def __repr__(self) -> str:
        return f"<ServerTransaction {self.method} {STATE_NAMES[self.state]} {self.key[0]!r}>"


class ClientTransaction:
    """One client transaction, started with ``TransactionLayer.request``."""

    __slots__ = ("key", "method", "invite", "state", "peer", "reliable", "request", "data_out",
                 "ack", "tokens", "interval", "data")  # fmt: skip

    def __init__(
        self, key: tuple[str, str], request: SipMessage, data_out: bytes, peer: Peer, reliable: bool
    ):
        self.key = key
        self.method: str = key[1]
        self.invite = self.method == "INVITE"
        self.state = CALLING if self.invite else TRYING
        self.peer = peer
        self.reliable = reliable
        self.request = request
        self.data_out = data_out
        self.ack: bytes | None = None
        self.tokens = [0, 0]
        self.interval = T1
        self.data: Any = None

    def __repr__(self) -> str:
        return f"<ClientTransaction {self.method} {STATE_NAMES[self.state]} {self.key[0]!r}>"


# ---------------------------------------------------------------- events
# Plain slotted dataclasses: one is made per message, and a frozen dataclass costs
# about three times as much to build. Treat them as read-only.


@dataclass(slots=True)
class RequestReceived:
    """A new request (not a retransmission); answer it with ``respond(txn, ...)``."""

    txn: ServerTransaction
    msg: SipMessage
    peer: Peer


@dataclass(slots=True)
class AckReceived:
    """An ACK outside any transaction: the ACK of a 2xx (section 17.2.1, RFC 6026)."""

    msg: SipMessage
    peer: Peer


@dataclass(slots=True)
class ResponseReceived:
    """A response for a client transaction, or (txn None) one that matches none."""

    txn: ClientTransaction | None
    msg: SipMessage
    peer: Peer


@dataclass(slots=True)
class TimedOut:
    """Timer B or F (client: no final response) or H (server: no ACK) fired."""

    txn: ClientTransaction | ServerTransaction


@dataclass(slots=True)
class TransportFailed:
    """The transport could not deliver a client transaction's request (section 17.1.4):
    the transaction is over; a proxy treats the branch as a 503 (section 16.9)."""

    txn: ClientTransaction


@dataclass(slots=True)
class Terminated:
    """The transaction is gone from the layer."""

    txn: ClientTransaction | ServerTransaction


Event = RequestReceived | AckReceived | ResponseReceived | TimedOut | TransportFailed | Terminated


class TransactionError(Exception):
    """Misuse of the layer by the TU (answering a finished transaction, ...)."""


# ---------------------------------------------------------------- the layer


class TransactionLayer:
    """Server and client transactions of one worker. See the module docstring."""

    def __init__(self, *, t1: float = T1, t2: float = T2, t4: float = T4, branch_prefix: str | None = None):
        self.t1, self.t2, self.t4 = t1, t2, t4
        self.server: dict[tuple[Any, ...], ServerTransaction] = {}
        self.client: dict[tuple[str, str], ClientTransaction] = {}
        self._timers = TimerQueue()
        self._events: deque[Event] = deque()
        self._out: list[tuple[bytes, Peer]] = []
        self._branch_prefix = MAGIC_COOKIE + (branch_prefix or os.urandom(6).hex())
        self._branch_seq = 0
        self.retransmissions_absorbed = 0
        self.retransmitted = 0  # requests and responses we sent again (Timers A, E, G)

    # ---- plumbing
    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self) -> list[tuple[bytes, Peer]]:
        out, self._out = self._out, []
        return out

    def send_stateless(self, data: bytes, peer: Peer) -> None:
        """Queue a message outside any transaction (a forwarded 2xx or ACK)."""
        self._out.append((data, peer))

    @property
    def branch_prefix(self) -> str:
        """What every branch made here starts with (the magic cookie, then the worker's)."""
        return self._branch_prefix

    def new_branch(self) -> str:
        """A branch unique to this layer (random prefix per worker + counter)."""
        self._branch_seq += 1
        return f"{self._branch_prefix}.{self._branch_seq:x}"

    def get_timer(self) -> float | None:
        return self._timers.next_deadline()

    # ---- receiving
    def receive(self, msg: SipMessage, peer: Peer, *, reliable: bool, now: float) -> None:
        """Feed one parsed message (requests already passed ``validate_request``)."""
        if msg.is_request:
            self._receive_request(msg, peer, reliable, now)
        else:
            self._receive_response(msg, peer, now)

    def server_key(self, msg: SipMessage, method: str | None = None) -> tuple[Any, ...]:
        """Section 17.2.3 key of a request; ``method`` overrides (ACK and CANCEL look up INVITE)."""
        m = method or msg.method
        if m == "ACK":
            m = "INVITE"
        branch = msg.via_branch
        if branch is not None and branch.startswith(MAGIC_COOKIE):
            return (branch, (msg.via_host or "").lower(), msg.via_port, m)
        # RFC 2543 matching: no usable branch
        return ("", msg.uri, msg.from_tag, msg.call_id, msg.cseq_num, m, msg.get("Via"))

    def find_server(self, msg: SipMessage, method: str) -> ServerTransaction | None:
        """The server transaction of ``method`` that ``msg`` belongs to (a CANCEL's INVITE)."""
        return self.server.get(self.server_key(msg, method))

    def _receive_request(self, msg: SipMessage, peer: Peer, reliable: bool, now: float) -> None:
        method = msg.method
        key = self.server_key(msg)
        txn = self.server.get(key)
        if method == "ACK":
            if txn is None or txn.state == ACCEPTED:
                self._events.append(AckReceived(msg, peer))
            elif txn.state == COMPLETED:  # section 17.2.1: ACK of our 300-699
                txn.state = CONFIRMED
                self._timers.cancel(txn, _RETRANSMIT)
                self._timers.cancel(txn, _TIMEOUT)
                if txn.reliable:
                    self._terminate_server(txn)
                else:
                    self._timers.add(txn, _TIMEOUT, self.t4, now)  # Timer I
            else:
                self.retransmissions_absorbed += 1
            return
        if txn is not None:
            # retransmission: re-send the last response (sections 17.2.1, 17.2.2)
            self.retransmissions_absorbed += 1
            if txn.last_response is not None and txn.state in (PROCEEDING, COMPLETED):
                self._out.append((txn.last_response, peer))
            return
        txn = ServerTransaction(key, msg, peer, reliable)
        self.server[key] = txn
        if txn.invite:
            trying = _codec.build_response(msg, 100, "Trying")
            txn.last_response = trying
            self._out.append((trying, peer))
        self._events.append(RequestReceived(txn, msg, peer))

    def _receive_response(self, msg: SipMessage, peer: Peer, now: float) -> None:
        branch = msg.via_branch
        txn = self.client.get((branch, msg.cseq_method)) if branch is not None else None
        if txn is None:
            self._events.append(ResponseReceived(None, msg, peer))
            return
        status: int = msg.status
        state = txn.state
        if txn.invite:
            if state in (CALLING, PROCEEDING):
                self._timers.cancel(txn, _RETRANSMIT)
                if status < 200:
                    txn.state = PROCEEDING
                elif status < 300:  # RFC 6026: Accepted, 2xx retransmissions go to the TU
                    txn.state = ACCEPTED
                    self._timers.add(txn, _TIMEOUT, 64 * self.t1, now)  # Timer M
                else:
                    txn.state = COMPLETED
                    txn.ack = _build_ack(txn.request, msg)
                    self._out.append((txn.ack, txn.peer))
                    if txn.reliable:
                        self._timers.cancel(txn, _TIMEOUT)
                        self._events.append(ResponseReceived(txn, msg, peer))
                        self._terminate_client(txn)
                        return
                    self._timers.add(txn, _TIMEOUT, 32.0, now)  # Timer D
                self._events.append(ResponseReceived(txn, msg, peer))
            elif state == ACCEPTED and 200 <= status < 300:
                self._events.append(ResponseReceived(txn, msg, peer))
            elif state == COMPLETED and status >= 300 and txn.ack is not None:
                self.retransmissions_absorbed += 1
                self._out.append((txn.ack, txn.peer))
            else:
                self.retransmissions_absorbed += 1
            return
        if state in (TRYING, PROCEEDING):
            if status < 200:
                if state == TRYING:
                    txn.state = PROCEEDING
                    if not txn.reliable:  # section 17.1.2.2: E now fires every T2
                        txn.interval = self.t2
                self._events.append(ResponseReceived(txn, msg, peer))
                return
            txn.state = COMPLETED
            self._timers.cancel(txn, _RETRANSMIT)
            txn.data_out = b""  # no more retransmissions; Timer K keeps the entry 5 s
            self._events.append(ResponseReceived(txn, msg, peer))
            if txn.reliable:
                self._timers.cancel(txn, _TIMEOUT)
                self._terminate_client(txn)
            else:
                self._timers.add(txn, _TIMEOUT, self.t4, now)  # Timer K
        else:
            self.retransmissions_absorbed += 1

    # ---- the TU's side
    def respond(self, txn: ServerTransaction, data: bytes, status: int, *, now: float) -> None:
        """Send a response (built by the TU, e.g. with ``build_response``) on ``txn``."""
        state = txn.state
        if state not in (TRYING, PROCEEDING) and not (state == ACCEPTED and 200 <= status < 300):
            raise TransactionError(f"{txn!r} cannot send {status} in state {STATE_NAMES[state]}")
        if self.server.get(txn.key) is not txn:
            raise TransactionError(f"{txn!r} is no longer in the layer")
        txn.last_response = data
        self._out.append((data, txn.peer))
        if status < 200:
            txn.state = PROCEEDING
            return
        # Past the final response only the key, the peer and that response are used
        # (retransmissions, ACK matching): let the parsed request go. At 10k/s with
        # Timer J at 32 s, a worker holds ~300k completed transactions.
        txn.request = None
        if txn.invite:
            if status < 300:
                if state != ACCEPTED:  # RFC 6026 section 7.1: Accepted, Timer L
                    txn.state = ACCEPTED
                    self._timers.add(txn, _TIMEOUT, 64 * self.t1, now)
                return
            txn.state = COMPLETED
            if not txn.reliable:
                txn.interval = self.t1
                self._timers.add(txn, _RETRANSMIT, self.t1, now)  # Timer G
            self._timers.add(txn, _TIMEOUT, 64 * self.t1, now)  # Timer H
            return
        txn.state = COMPLETED
        if txn.reliable:
            self._terminate_server(txn)
        else:
            self._timers.add(txn, _TIMEOUT, 64 * self.t1, now)  # Timer J

    def request(
        self, data: bytes, peer: Peer, *, reliable: bool, now: float, msg: SipMessage | None = None
    ) -> ClientTransaction:
        """Start a client transaction sending ``data`` (a request whose top Via we wrote).

        ``msg`` is ``data`` parsed, when the caller has it already.
        """
        if msg is None:
            msg = _codec.parse_message(data)
        method = msg.method
        if method == "ACK":
            raise TransactionError("ACK is not sent in a client transaction (use send_stateless)")
        branch = msg.via_branch
        if branch is None or not branch.startswith(MAGIC_COOKIE):
            raise TransactionError(f"client request needs a top Via branch starting {MAGIC_COOKIE}")
        key = (branch, method)
        if key in self.client:
            raise TransactionError(f"branch {branch!r} is already used by {self.client[key]!r}")
        txn = ClientTransaction(key, msg, data, peer, reliable)
        self.client[key] = txn
        self._out.append((data, peer))
        if not reliable:
            txn.interval = self.t1
            self._timers.add(txn, _RETRANSMIT, self.t1, now)  # Timer A / E
        self._timers.add(txn, _TIMEOUT, 64 * self.t1, now)  # Timer B / F
        return txn

    def transport_error(self, data: bytes, now: float) -> ClientTransaction | None:
        """``data`` (a request this layer sent) could not be delivered: a stream that
        could not be opened or was lost before the final response. Its client
        transaction, found by the top Via branch, ends with ``TransportFailed``.
        Anything else (a response, an ACK, a retransmission after the final
        response) is ignored: the peer's own timers cover it."""
        try:
            msg = _codec.parse_message(data)
        except SipParseError:
            return None
        if not msg.is_request or msg.method == "ACK":
            return None
        txn = self.client.get((msg.via_branch or "", msg.method))
        if txn is None or txn.state not in (CALLING, TRYING, PROCEEDING):
            return None
        self._timers.cancel(txn, _TIMEOUT)
        self._events.append(TransportFailed(txn))
        self._terminate_client(txn)
        return txn

    # ---- timers
    def handle_timer(self, now: float) -> None:
        """Run every timer due at ``now`` (call when ``get_timer()`` has passed)."""
        for owner, channel in self._timers.pop_due(now):
            if isinstance(owner, ClientTransaction):
                self._client_timer(owner, channel, now)
            elif isinstance(owner, ServerTransaction):
                self._server_timer(owner, channel, now)

    def _client_timer(self, txn: ClientTransaction, channel: int, now: float) -> None:
        if channel == _RETRANSMIT:
            if txn.state in (CALLING, TRYING, PROCEEDING):
                self._out.append((txn.data_out, txn.peer))
                self.retransmitted += 1
                if txn.invite:  # Timer A doubles without a cap (section 17.1.1.2)
                    txn.interval *= 2
                elif txn.state == TRYING:  # Timer E doubles up to T2 (section 17.1.2.2)
                    txn.interval = min(txn.interval * 2, self.t2)
                self._timers.add(txn, _RETRANSMIT, txn.interval, now)
            return
        if txn.state in (CALLING, TRYING, PROCEEDING):  # Timer B / F
            self._timers.cancel(txn, _RETRANSMIT)
            self._events.append(TimedOut(txn))
        self._terminate_client(txn)  # or Timer D / K / M: done

    def _server_timer(self, txn: ServerTransaction, channel: int, now: float) -> None:
        if channel == _RETRANSMIT:
            if txn.state == COMPLETED and txn.last_response is not None:  # Timer G
                self._out.append((txn.last_response, txn.peer))
                self.retransmitted += 1
                txn.interval = min(txn.interval * 2, self.t2)
                self._timers.add(txn, _RETRANSMIT, txn.interval, now)
            return
        if txn.invite and txn.state == COMPLETED:  # Timer H: the ACK never came
            self._timers.cancel(txn, _RETRANSMIT)
            self._events.append(TimedOut(txn))
        self._terminate_server(txn)  # or Timer I / J / L

    def _terminate_server(self, txn: ServerTransaction) -> None:
        txn.state = TERMINATED
        if self.server.get(txn.key) is txn:
            del self.server[txn.key]
        if txn.watched:
            self._events.append(Terminated(txn))

    def _terminate_client(self, txn: ClientTransaction) -> None:
        txn.state = TERMINATED
        self._timers.cancel(txn, _RETRANSMIT)
        if self.client.get(txn.key) is txn:
            del self.client[txn.key]
        self._events.append(Terminated(txn))


def _build_ack(request: SipMessage, response: SipMessage) -> bytes:
    """ACK for a 300-699 response (section 17.1.1.3): Request-URI, top Via, From,
    Call-ID and Route of the request, To of the response, CSeq number with ACK."""
    lines = [f"ACK {request.uri} SIP/2.0", f"Via: {request.get_all('Via')[0]}"]
    lines += [f"Route: {r}" for r in request.get_all("Route")]
    lines += [
        "Max-Forwards: 70",
        f"From: {request.get('From')}",
        f"To: {response.get('To')}",
        f"Call-ID: {request.call_id}",
        f"CSeq: {request.cseq_num} ACK",
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")
