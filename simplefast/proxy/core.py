"""The SIP core of one worker: codec -> checks -> transactions -> TU, sans-IO.

Theory of operation: the transport hands every datagram (or stream message)
to :meth:`SipCore.on_message` with the peer and the clock; the core parses
it, applies ``validate_request`` (a bad request gets the codec's status
straight away, before any transaction exists; a bad response is dropped),
feeds the transaction layer and dispatches its events to the transaction
users:

- OPTIONS addressed to the server itself (Request-URI host is one of our
  listen addresses or domains, no user part): 200 with Allow, Accept,
  Supported (the readiness probe);
- REGISTER for our domains: the registrar;
- PUBLISH and SUBSCRIBE for AORs of our domains: the presence agent
  (simplefast/presence/agent.py), which also gets the outcomes of its NOTIFY
  client transactions; a SUBSCRIBE inside a dialog another worker owns is
  handed to that worker before any transaction exists here;
- other requests: the proxy core (simplefast/proxy/proxy.py), which also gets
  responses, ACKs of 2xx, client timeouts and ended transactions.

What to send comes out of :meth:`outgoing`; timers through ``get_timer`` /
``handle_timer``. Responses go back to the request's source (RFC 3581 when
the top Via asked with rport, otherwise the source address with the Via
port, RFC 3261 section 18.2.2).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from simplefast._impl import fastpub as _fastpub
from simplefast._impl import fastreg as _fastreg
from simplefast._impl import fastrelay as _fastrelay
from simplefast._impl import fastsub as _fastsub
from simplefast._impl import sipmsg as _codec
from simplefast.errors import LocalProtocolError, SipParseError
from simplefast.im.agent import Execute, ImConfig, PageMode
from simplefast.logs import RateLimited, get_logger
from simplefast.msrp.conference import CONFERENCE_EVENT, ConferencePackage
from simplefast.msrp.focus import ALLOW as FOCUS_ALLOW
from simplefast.msrp.focus import Answer as FocusAnswer
from simplefast.msrp.focus import ChatFocus
from simplefast.presence.agent import PresenceAgent
from simplefast.presence.winfo import decode_event
from simplefast.proxy.auth import DigestAuth, Users
from simplefast.proxy.location import Location, ShmLocation
from simplefast.proxy.proxy import Proxy, ProxyAddress, source_params
from simplefast.proxy.registrar import Registrar, RegistrarConfig, _http_date, aor_of
from simplefast.sip import warning_header
from simplefast.sip.peer import flow_of
from simplefast.sip.transaction import (
    CALLING,
    PROCEEDING,
    TRYING,
    AckReceived,
    ClientTransaction,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    Terminated,
    TransactionError,
    TransactionLayer,
    TransportFailed,
)
from simplefast.store.offline import OfflineStore
from simplefast.transport.reuseport import MARKER, marked_index, marker

log = get_logger(__name__)

_METHODS = "INVITE ACK CANCEL BYE OPTIONS REGISTER MESSAGE SUBSCRIBE NOTIFY PUBLISH INFO UPDATE PRACK REFER"
ALLOW = ", ".join(_METHODS.split())
ACCEPT = "application/sdp, application/pidf+xml, message/cpim, text/plain"
ALLOW_EVENTS = "presence, presence.winfo"
KNOWN_METHODS = frozenset(_METHODS.split())
# requests that reach a chat room (simplefast/msrp/focus.py) by their Request-URI
_ROOM_METHODS = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "SUBSCRIBE", "UPDATE", "INFO"})
SUPPORTED = ("path", "outbound", "recipient-list-message", "recipient-list")


@dataclass(slots=True)
class CoreConfig:
    domains: frozenset[str]
    # host strings the server answers to itself (listen addresses, with and without port)
    local_hosts: frozenset[str] = frozenset()
    server_header: str = "simplefast"
    registrar: RegistrarConfig = field(init=False)

    def __post_init__(self) -> None:
        self.registrar = RegistrarConfig(domains=self.domains)


class Stats:
    __slots__ = (
        "received", "parse_errors", "rejected", "responses_dropped", "sent", "shed", "handed_off", "methods",
        "answered", "messages_forwarded",
    )  # fmt: skip

    def __init__(self) -> None:
        self.received = self.parse_errors = self.rejected = self.responses_dropped = self.sent = 0
        self.shed = 0  # new requests answered 503 under overload
        self.handed_off = 0  # ACK/CANCEL passed to the next worker
        # requests that reached this worker first (not handed over), by method, past the
        # fast paths (their own counters add theirs); the metrics (server/metrics.py) read it
        self.methods: dict[str, int] = {}
        # responses of our own, (method, status class 1-6) -> count; methods outside
        # KNOWN_METHODS count as "other" (a label set a sender cannot grow)
        self.answered: dict[tuple[str, int], int] = {}
        self.messages_forwarded = 0  # MESSAGEs the general path proxied on

    def count_answer(self, method: str, status: int) -> None:
        key = (method if method in KNOWN_METHODS else "other", status // 100)
        self.answered[key] = self.answered.get(key, 0) + 1


class SipCore:
    def __init__(
        self,
        config: CoreConfig,
        location: Location,
        me: ProxyAddress,
        *,
        tl: TransactionLayer | None = None,
        auth: DigestAuth | None = None,
        users: dict[str, Users] | None = None,
        presence: PresenceAgent | None = None,
    ) -> None:
        self.config = config
        self.presence = presence
        self.tl = tl or TransactionLayer()
        self.registrar = Registrar(config.registrar, location)
        self.proxy = Proxy(self.tl, self.registrar, location, me)
        self.auth = auth
        self.users: dict[str, Users] = users or {}
        self.location = location
        self.stats = Stats()
        self._bad_packet = RateLimited(log, "unparseable message dropped")
        self._bad_request = RateLimited(log, "malformed request rejected")
        self._tag_seq = 0
        self._tag_prefix = self.tl.new_branch()[-8:]
        self.draining = False
        # Set by the worker: hand(data, peer, hops) passes a datagram to the next worker;
        # handoff_limit is the number of other workers (see docs/process-model.md).
        self.handoff: Callable[[bytes, Any, int], None] | None = None
        self.handoff_limit = 0
        # Set by the worker: route_response(index, data, peer) passes a response to the
        # worker whose branch prefix it carries (sent over a connection owned here).
        self.route_response: Callable[[int, bytes, Any], object] | None = None
        # Set by the worker: route_dialog(index, data, peer) passes a request inside a
        # subscription dialog to the worker that owns the subscription.
        self.route_dialog: Callable[[int, bytes, Any], object] | None = None
        self.index = -1
        # set by the transport when its receive queue backs up (see transport/udp.py)
        # Fraction (0-1) of new requests to shed, set by the transport's overload monitor
        # (transport/udp.py) while its receive queue backs up. A request's fate follows
        # a hash of its Call-ID, so its retransmissions get the same answer.
        self.shed_fraction = 0.0
        self.retry_after = 5
        self.im: PageMode | None = None  # page-mode IM (enable_im)
        # The registrar's stateless fast path (enable_fast_register); the To tags of
        # REGISTER answers are keyed with tag_key on either path (see _request_tag).
        self.fast: Any = None
        self.tag_key = os.urandom(16)
        # The proxy's compiled MESSAGE relay (enable_fast_relay).
        self.relay: Any = None
        # The state agent's stateless PUBLISH path (enable_fast_publish).
        self.fast_pub: Any = None
        # The notifier's stateless SUBSCRIBE path (enable_fast_subscribe).
        self.fast_sub: Any = None
        # The RFC 7701 chat focus (enable_focus): INVITEs and SUBSCRIBEs to chat rooms.
        self.focus: ChatFocus | None = None
        self.allow_events = ALLOW_EVENTS

    @property
    def overloaded(self) -> bool:
        return self.shed_fraction > 0.0

    @overloaded.setter
    def overloaded(self, value: bool) -> None:
        self.shed_fraction = 1.0 if value else 0.0

    def _sheds(self, msg: Any) -> bool:
        """Whether overload sheds this request (no transaction of it exists). Only what
        starts new work: a request inside a dialog (To tag), a CANCEL or a BYE continues
        or ends work already accepted, and so does a PUBLISH with SIP-If-Match (it
        refreshes, modifies or removes a publication we hold: shed, the publication could
        lapse, or its watchers miss a state); those are served."""
        if msg.to_tag is not None or msg.method in ("CANCEL", "BYE"):
            return False
        if msg.method == "PUBLISH" and msg.get("SIP-If-Match") is not None:
            return False
        f = self.shed_fraction
        return f >= 1.0 or (hash(msg.call_id) & 0xFFFF) < f * 65536.0

    def enable_im(
        self, config: ImConfig, store: OfflineStore | None, now: float, *, execute: Execute | None = None,
        reader: OfflineStore | None = None, marks: Any = None,
    ) -> None:  # fmt: skip
        """Page-mode IM (simplefast/im/agent.py): size limit, URI lists, offline store
        (its writes through ``execute``, see PageMode)."""
        domains = sorted(self.config.domains)
        me = self.proxy.me
        server_uri = f"sip:{domains[0]}" if domains else f"sip:{me.sent_by('udp', ':' in me.host)}"
        self.im = PageMode(
            config, self.proxy, self.location, store, server_uri=server_uri,
            is_ours=self.registrar.is_ours, new_id=self._new_id, now=now, execute=execute, reader=reader,
            marks=marks,
        )  # fmt: skip
        if self.fast is not None:
            self.fast.offline = self._fast_offline()
        self._relay_im()

    def enable_fast_relay(self) -> bool:
        """Relay the common MESSAGE over UDP (one registered UDP contact) in one compiled
        record instead of two transactions and a proxy context (simplefast/_ref/fastrelay.py
        says which). Only with auth off and a shared location table. True when enabled."""
        loc = self.location
        if self.auth is not None or not isinstance(loc, ShmLocation):
            return False
        tl = self.tl
        self.relay = _fastrelay.FastRelay(
            self.registrar.config, loc.table, self.proxy.me, prefix=f"{tl.branch_prefix}.r",
            supported=SUPPORTED, general=tl.server, tag_prefix=f"{os.urandom(4).hex()}r",
            t1=tl.t1, t2=tl.t2, t4=tl.t4,
        )  # fmt: skip
        self._relay_im()
        return True

    def _relay_im(self) -> None:
        """What the relay leaves to the IM rules: bodies over their limit (413) and the
        URI-list service."""
        relay, im = self.relay, self.im
        if relay is not None and im is not None:
            relay.max_body = im.config.max_body
            relay.service = im.service_key

    def enable_fast_register(self, tag_key: bytes) -> bool:
        """Answer the common REGISTER over UDP in one compiled call, without a transaction
        (simplefast/_ref/fastreg.py says which). Only with auth off and a shared location
        table; ``tag_key``: the secret of the To tags, the same in every worker so that a
        retransmission another worker answers gets the same tag. True when enabled."""
        self.tag_key = bytes(tag_key)
        loc = self.location
        if self.auth is not None or not isinstance(loc, ShmLocation):
            return False
        self.fast = _fastreg.FastRegistrar(
            self.registrar.config, loc.table, server=self.config.server_header, supported=SUPPORTED,
            tag_key=self.tag_key, dirty=loc.dirty_map(),
        )  # fmt: skip
        self.fast.offline = self._fast_offline()
        return True

    def enable_fast_publish(self) -> bool:
        """Answer an initial PUBLISH over UDP of a presentity nobody watches in one compiled
        call, without a transaction (simplefast/_ref/fastpub.py says which). Only with auth
        off and presence on; its entity-tags are keyed with ``tag_key`` (enable_fast_register
        sets the key every worker shares). True when enabled."""
        if self.auth is not None or self.presence is None:
            return False
        self.fast_pub = _fastpub.FastPublisher(
            self.registrar.config, self.presence.publications, server=self.config.server_header,
            supported=SUPPORTED, tag_key=self.tag_key, allow_events=self.allow_events,
        )  # fmt: skip
        return True

    def enable_fast_subscribe(self) -> bool:
        """Answer the common SUBSCRIBE over UDP (a presence subscription made, refreshed or
        ended) in one compiled call, without a transaction (simplefast/_ref/fastsub.py says
        which). Only with auth off and presence on; the tags of new subscriptions are the
        notifier's prefix and a hash keyed with ``tag_key`` (enable_fast_register sets it).
        True when enabled."""
        if self.auth is not None or self.presence is None:
            return False
        self.fast_sub = _fastsub.FastSubscriber(
            self.config, self.presence, server=self.config.server_header, supported=SUPPORTED,
            tag_key=self.tag_key, allow_events=self.allow_events,
        )  # fmt: skip
        self._fast_rooms()
        return True

    def _fast_rooms(self) -> None:
        fs, focus = self.fast_sub, self.focus
        if fs is not None:
            fs.allow_events = self.allow_events
            if focus is not None:
                fs.room = lambda user, host, local: focus.room_key(user, host, local=local)

    def enable_focus(self, focus: ChatFocus) -> None:
        """Serve chat rooms (simplefast/msrp/focus.py) and, with presence on, their
        ``conference`` event package (RFC 4575)."""
        self.focus = focus
        if self.presence is not None:
            self.presence.add_package(ConferencePackage(focus))
            self.allow_events = ", ".join(sorted(self.presence.notifier.packages))
            if self.fast_pub is not None:
                self.fast_pub.allow_events = self.allow_events
        self._fast_rooms()

    def _room(self, uri: str) -> str | None:
        """The room a Request-URI names (see ChatFocus.room_key), None for no room."""
        try:
            return self._room_of(_codec.parse_uri(uri))
        except SipParseError:
            return None

    def _room_of(self, ruri: Any) -> str | None:
        assert self.focus is not None
        return self.focus.room_key(ruri.user, ruri.host, local=self._is_local(ruri.host, ruri.port))

    def _fast_offline(self) -> Any:
        """What the fast path asks about stored MESSAGEs: the IM agent (its ``marks``)
        when there is an offline store, else None."""
        im = self.im
        return im if im is not None and im.store is not None else None

    def _request_tag(self, msg: Any) -> str:
        """The To tag of our answer to a REGISTER or PUBLISH (and a PUBLISH's entity-tag):
        the fast paths' (RFC 3261 8.2.7), so that a request answered by either path gets
        the same tag from the other."""
        return str(_fastreg.to_tag(self.tag_key, msg.via_branch or "", msg.call_id or "", msg.cseq_num or 0,
                                   msg.from_tag or ""))  # fmt: skip

    def _new_id(self) -> str:
        return f"{self.tl.new_branch()[7:]}@simplefast"

    def set_domains(self, domains: frozenset[str]) -> None:
        """Domains served, changed at run time (SIGHUP)."""
        self.config.domains = domains
        self.registrar.config.domains = domains

    def busy(self) -> bool:
        """Transactions that still need the network (drain waits for them)."""
        if self.relay is not None and self.relay.open:
            return True
        if self.presence is not None and self.presence.notifier.txns.outstanding:
            return True  # NOTIFYs waiting for their answer (a final one at drain, say)
        return any(t.state in (CALLING, TRYING, PROCEEDING) for t in self.tl.client.values()) or any(
            t.state in (TRYING, PROCEEDING) for t in self.tl.server.values()
        )

    # ---- transport side
    def take_notify_responses(self, batch: list[tuple[Any, Any]], start: int, now: float) -> int:
        """The responses 100-299 to our NOTIFYs at ``batch[start:]``, taken in one compiled
        pass while they come (``NotifyTxns.absorb``: what ``on_message`` would do with each,
        after the same checks); the index of the first datagram not taken, for
        ``on_message``. After a run, ``pump_notifies`` sends what it made room for."""
        presence = self.presence
        if presence is None:
            return start
        txns = presence.notifier.txns
        if not len(txns):  # no transaction of ours to answer
            return start
        end: int = txns.absorb(batch, start, now, _codec.parse_message, _codec.validate_request)
        if end > start:
            self.stats.received += end - start
            presence.now = now
        return end

    def pump_notifies(self, now: float) -> None:
        """The NOTIFYs that waited for room in the window go (after a run of responses
        taken by ``take_notify_responses``, as ``on_message`` does after each)."""
        if self.presence is not None:
            self.presence.notifier.pump(now)

    def on_message(self, data: bytes, peer: Any, *, reliable: bool, now: float, hops: int = 0) -> None:
        """One datagram, or a message handed over by another worker (``hops``: how many
        workers handed it on already)."""
        self.stats.received += 1
        if self.presence is not None:  # what the notifier's callbacks (watcher information) see
            self.presence.now = now
        fast = self.fast
        if (
            fast is not None
            and data.startswith(b"REGISTER ")
            and not reliable
            and hops == 0
            and not self.draining
        ):  # not shed under overload: its answer costs about what a 503 would
            r = fast.register(data, peer, now, _http_date())
            if type(r) is bytes:
                self.tl.send_stateless(r, peer)
                return
            if r is not None:  # parsed, declined: the general path takes it from here
                self.on_parsed(r, data, peer, reliable=reliable, now=now, hops=hops)
                return
        fp = self.fast_pub
        if (
            fp is not None
            and data.startswith(b"PUBLISH ")
            and not reliable
            and hops == 0
            and not self.draining
        ):  # not shed either (it declines what would cost more: the general path sheds those)
            r = fp.publish(data, peer, now)
            if type(r) is bytes:
                self.tl.send_stateless(r, peer)
                if fp.changed is not None:  # watched since: NOTIFY as the general path does
                    assert self.presence is not None
                    self.presence.changed(fp.changed, now)
                    self._dispatch(now)
                return
            if r is not None:
                self.on_parsed(r, data, peer, reliable=reliable, now=now, hops=hops)
                return
        fs = self.fast_sub
        if fs is not None and data.startswith(b"SUBSCRIBE ") and not reliable and hops == 0:
            # draining or shedding, it answers copies of what it took (they have no server
            # transaction), and the general path decides on the rest
            fs.only_again = bool(self.draining or self.shed_fraction)
            r = fs.subscribe(data, peer, now)
            if type(r) is bytes:
                self.tl.send_stateless(r, peer)
                sub = fs.notify
                if sub is not None:  # the NOTIFY it owes (RFC 6665 4.2.1.2)
                    fs.notify = None
                    assert self.presence is not None
                    self.presence.notifier.notify_now(sub, now)
                return
            if r is not None:
                self.on_parsed(r, data, peer, reliable=reliable, now=now, hops=hops)
                return
        relay = self.relay
        if relay is not None and not reliable and hops == 0:
            r = None
            if data.startswith(b"MESSAGE "):
                r = relay.request(data, peer, now, not (self.draining or self.shed_fraction))
            elif relay.expecting() and data.startswith(b"SIP/2.0 "):
                r = relay.response(data, now)
            if r is True:
                return
            if r is not None:  # parsed, not taken: the general path
                self.on_parsed(r, data, peer, reliable=reliable, now=now, hops=hops)
                return
        try:
            msg = _codec.parse_message(data)
        except SipParseError as exc:
            self.stats.parse_errors += 1
            self._bad_packet(str(exc), peer)
            answer = salvage_response(data, exc.status_hint, str(exc))
            if answer is not None:
                self.tl.send_stateless(answer, peer)
            return
        self.on_parsed(msg, data, peer, reliable=reliable, now=now, hops=hops)

    def on_stream_error(self, data: bytes, peer: Any, exc: SipParseError) -> None:
        """A stream lost its framing (``data``: what was buffered from the start of the
        bad message): the 400 the RFC asks for when it can be built (the transport
        closes the connection after it)."""
        self.stats.received += 1
        self.stats.parse_errors += 1
        self._bad_packet(str(exc), peer)
        answer = salvage_response(data, exc.status_hint, str(exc))
        if answer is not None:
            self.tl.send_stateless(answer, peer)

    def transport_error(self, data: bytes, now: float) -> None:
        """The transport could not deliver ``data`` (see TransactionLayer.transport_error)."""
        if self.presence is not None and data.startswith(b"NOTIFY "):
            try:
                branch = _codec.parse_message(data).via_branch
            except SipParseError:
                branch = None
            if branch is not None and self.presence.notifier.owns(branch):
                self.presence.notifier.on_transport_failed(branch, now)
                self._dispatch(now)
                return
        if self.tl.transport_error(data, now) is not None:
            self._dispatch(now)

    def on_parsed(
        self, msg: Any, data: bytes | None, peer: Any, *, reliable: bool, now: float, hops: int = 0
    ) -> None:
        """One parsed message (a stream's framer parses as it frames; ``data``, its
        octets, may be None: ``msg.to_bytes()`` gives them when a hand-off needs them)."""
        if msg.is_request:
            method = msg.method
            if hops == 0:
                m = self.stats.methods
                name = method if method in KNOWN_METHODS else "other"
                m[name] = m.get(name, 0) + 1
            # Before validation, which is the dearest check: hand-offs and load shedding
            # only need the top Via, and the owner or the client validates anyway.
            try:
                focus = self.focus
                if (
                    focus is not None
                    and self.route_dialog is not None
                    and hops == 0
                    and method in _ROOM_METHODS
                    and (room := self._room(msg.uri)) is not None
                    and (home := focus.owner(room.partition("@")[0])) != self.index
                ):
                    # a chat room lives in one worker: everything for it goes there
                    self.stats.handed_off += 1
                    self.route_dialog(home, data if data is not None else msg.to_bytes(), peer)
                    return
                if (
                    (method == "ACK" or method == "CANCEL")
                    and self.handoff is not None
                    and hops < self.handoff_limit
                    and len(peer) != 4  # a stream's messages all reach the connection's owner
                    and self.tl.server_key(msg, "INVITE") not in self.tl.server
                ):
                    # Its INVITE may live in another worker (the cBPF hashes these octets
                    # elsewhere): pass it along the ring; the last worker handles it as unmatched.
                    self.stats.handed_off += 1
                    self.handoff(data if data is not None else msg.to_bytes(), peer, hops + 1)
                    return
                if method == "SUBSCRIBE" and self.route_dialog is not None and hops == 0:
                    tag = msg.to_tag
                    if tag is not None and self.presence is not None:
                        notifier = self.presence.notifier
                        if tag not in notifier.by_key:
                            owner = notifier.owner_of(tag)
                            if owner is not None and owner != self.index:
                                self.stats.handed_off += 1
                                self.route_dialog(owner, data if data is not None else msg.to_bytes(), peer)
                                return
                if (self.draining or self.shed_fraction) and method != "ACK":
                    if self.tl.server_key(msg) not in self.tl.server:
                        if self.draining:
                            return  # no new transactions (retransmissions and ACKs still served)
                        if self._sheds(msg):  # shed load before any transaction exists
                            self._overload_reply(msg, peer)
                            return
            except SipParseError:
                pass  # a malformed top Via: validation below answers it
            bad = _codec.validate_request(msg, supported=SUPPORTED)
            if bad is not None:
                self._reject(msg, peer, bad[0], bad[1])
                return
        elif _codec.validate_request(msg) is not None:
            self.stats.responses_dropped += 1
            return
        elif (
            self.presence is not None
            and (nb := msg.via_branch) is not None
            and self.presence.notifier.owns(nb)
        ):
            self.presence.notifier.on_response(nb, msg.status, now)  # one of our NOTIFYs
            self._dispatch(now)
            return
        elif self.route_response is not None and hops == 0:
            branch = msg.via_branch
            if branch is not None and (branch, msg.cseq_method) not in self.tl.client:
                owner = branch_owner(branch)
                if owner is not None and owner != self.index:
                    # the response to a request another worker sent over one of our
                    # connections: that worker holds the client transaction
                    self.stats.handed_off += 1
                    self.route_response(owner, data if data is not None else msg.to_bytes(), peer)
                    return
        self.tl.receive(msg, peer, reliable=reliable, now=now)
        self._dispatch(now)

    def on_resolved(self, token: int, targets: list[Any], now: float) -> None:
        """The resolver's targets for a next hop the proxy asked about (``proxy.resolve_out``)."""
        self.proxy.on_resolved(token, targets, now)
        self._dispatch(now)

    def outgoing(self) -> list[tuple[bytes, Any]]:
        out = self.tl.datagrams_to_send()
        relay = self.relay
        if relay is not None and relay.out:
            out += relay.take()
        self.stats.sent += len(out)
        return out

    def get_timer(self) -> float | None:
        t = self.tl.get_timer()
        if self.relay is not None:
            p = self.relay.next_deadline()
            if p is not None and (t is None or p < t):
                t = p
        if self.presence is not None:
            p = self.presence.next_deadline()
            if p is not None and (t is None or p < t):
                t = p
        if self.im is not None:
            p = self.im.next_deadline()
            if p is not None and (t is None or p < t):
                t = p
        if self.focus is not None:
            p = self.focus.get_timer()
            if p is not None and (t is None or p < t):
                t = p
        return t

    def handle_timer(self, now: float) -> None:
        if self.relay is not None:
            self.relay.expire(now)
        self.tl.handle_timer(now)
        self._dispatch(now)
        if self.im is not None:
            self.im.handle_timer(now)
        if self.presence is not None:
            d = self.presence.next_deadline()
            if d is not None and d <= now:
                self.presence.handle_timer(now)
                self._dispatch(now)
        focus = self.focus
        if focus is not None:
            d = focus.get_timer()
            if d is not None and d <= now:
                focus.handle_timer(now)
            self._focus_out(now)

    def focus_step(self, _arg: object, now: float) -> None:
        """After the chat focus's MSRP side ran (transport/chat.py): the BYEs and
        conference NOTIFYs it owes."""
        if self.focus is not None:
            self._focus_out(now)

    def presence_watcher(self, data: bytes, now: float) -> None:
        """Another worker's watcher event (watcher information) for a resource."""
        if self.presence is not None:
            self.presence.watcher_event(decode_event(data), now)
            self._dispatch(now)

    def deactivate_presence(self, _arg: object, now: float) -> None:
        """Stopping without persisted subscriptions: end them all (PresenceAgent.deactivate_all)."""
        if self.presence is not None:
            self.presence.deactivate_all(now)
            self._dispatch(now)

    def presence_changed(self, resource: str, now: float) -> None:
        """Another worker changed a presentity (a hand-off frame)."""
        if self.presence is not None:
            self.presence.remote_changed(resource, now)
            self._dispatch(now)

    # ---- TU dispatch
    def _dispatch(self, now: float) -> None:
        tl = self.tl
        proxy = self.proxy
        while (ev := tl.next_event()) is not None:
            if isinstance(ev, RequestReceived):
                self._on_request(ev.txn, ev.msg, ev.peer, now)
            elif isinstance(ev, ResponseReceived):
                proxy.handle_response(ev.txn, ev.msg, now)
            elif isinstance(ev, Terminated):
                proxy.forget(ev.txn)
            elif isinstance(ev, AckReceived):
                if self.focus is None or not (self.focus.ack(ev.msg, now) or self._room(ev.msg.uri)):
                    proxy.forward_ack(ev.msg)  # a room's ACK with no dialog left is dropped
            elif isinstance(ev, TransportFailed):
                proxy.handle_transport_failure(ev.txn, now)
            elif isinstance(ev.txn, ClientTransaction):  # TimedOut of a client transaction
                proxy.handle_timeout(ev.txn, now)

    def _on_request(self, txn: ServerTransaction, msg: Any, peer: Any, now: float) -> None:
        method = msg.method
        ruri = _codec.parse_uri(msg.uri)
        if method == "REGISTER" and self.registrar.is_ours(ruri.host):
            if self.auth is not None and not self._authenticated(txn, msg, peer, now, register=True):
                return
            r = self.registrar.register(msg, now, flow_of(peer), ruri)
            self._respond(txn, msg, peer, r.status, r.reason, r.headers, now, to_tag=self._request_tag(msg))
            if r.status == 200 and self.im is not None and msg.get("Contact") not in (None, "*"):
                self.im.registered(msg, now)  # stored MESSAGEs go out now
                self._dispatch(now)
            return
        if method == "OPTIONS" and ruri.user is None and self._is_local(ruri.host, ruri.port):
            hdrs = [("Allow", ALLOW), ("Accept", ACCEPT), ("Supported", ", ".join(SUPPORTED))]
            if self.presence is not None:
                hdrs.append(("Allow-Events", self.allow_events))
            self._respond(txn, msg, peer, 200, "OK", hdrs, now)
            return
        if self.auth is not None and method not in ("ACK", "CANCEL"):  # never challenged (22.1)
            if not self._authenticated(txn, msg, peer, now, register=False):
                return
        if self.focus is not None and method in _ROOM_METHODS and method != "ACK":
            room = self._room_of(ruri)  # the Request-URI parsed above
            if room is not None:
                self._on_room(txn, msg, peer, room, now)
                return
        if (method == "SUBSCRIBE" or method == "PUBLISH") and self.presence is not None:
            if msg.to_tag is not None and method == "SUBSCRIBE":
                if not (self._is_local(ruri.host, ruri.port) or self.registrar.is_ours(ruri.host)):
                    answer = self.proxy.handle_request(txn, msg, now)  # someone else's dialog
                    if answer is not None:
                        self._respond(txn, msg, peer, answer[0], answer[1], [], now)
                    return
                self._presence_answer(txn, msg, peer, self.presence.refresh(msg, peer, now), now)
                return
            if self.registrar.is_ours(ruri.host) and (
                method == "PUBLISH"
                or msg.event in self.presence.notifier.packages
                or not self._reachable(msg, now)
            ):
                # another event package of a registered user is the user's business: proxied
                self._presence(txn, msg, peer, ruri, now)
                return
        if msg.count("Proxy-Require") and method != "CANCEL":  # RFC 3261 16.3 step 5
            unknown = [t for t in msg.get_all("Proxy-Require") if t and t not in SUPPORTED]
            if unknown:
                self._respond(
                    txn, msg, peer, 420, "Bad Extension", [("Unsupported", ", ".join(unknown))], now
                )
                return
        im = self.im if method == "MESSAGE" else None
        if im is not None:
            a = im.on_message(msg, now, local_sender=lambda: self._local_sender(msg))
            if a is not None:
                self._respond(txn, msg, peer, a[0], a[1], a[2], now)
                self._dispatch(now)  # requests of our own it sent (URI list)
                return
        answer = self.proxy.handle_request(txn, msg, now)
        if answer is None:
            if im is not None:
                self.stats.messages_forwarded += 1
        else:
            if im is not None and answer[0] == 480:  # a user of ours with no contact

                def reply(status: int, reason: str, headers: list[tuple[str, str]], now: float) -> None:
                    self._respond(txn, msg, peer, status, reason, headers, now)
                    self._dispatch(now)  # an IMDN it sent

                if im.unreachable(msg, now, local_sender=self._local_sender(msg), known_user=self._known,
                                  reply=reply):  # fmt: skip
                    return  # stored (202 when committed) or refused by the IM rules
            self._respond(txn, msg, peer, answer[0], answer[1], [], now)

    def _on_room(self, txn: ServerTransaction, msg: Any, peer: Any, room: str, now: float) -> None:
        """A request to a chat room (authenticated already): the focus answers."""
        focus = self.focus
        assert focus is not None
        method = msg.method
        if method == "SUBSCRIBE":
            if self.presence is None or msg.event != CONFERENCE_EVENT:
                self._respond(txn, msg, peer, 489, "Bad Event", [("Allow-Events", self.allow_events)], now)
            elif msg.to_tag is not None:
                self._presence_answer(txn, msg, peer, self.presence.refresh(msg, peer, now), now)
            else:
                try:
                    watcher = aor_of(msg.from_addr().uri)[0]
                except SipParseError as exc:
                    self._respond(txn, msg, peer, 400, "Bad Request", [warning_header(str(exc))], now)
                    return
                answer = self.presence.subscribe(msg, peer, focus.room_uri(room), watcher, now)
                self._presence_answer(txn, msg, peer, answer, now)
            return
        if method == "CANCEL":
            self._room_cancel(txn, msg, peer, now)
            return
        a: FocusAnswer
        if msg.to_tag is None:
            if method == "INVITE":
                a = focus.invite(msg, peer, room, now)
            elif method == "OPTIONS":
                a = FocusAnswer(200, "OK", [("Allow", FOCUS_ALLOW), ("Accept", "application/sdp")])
            else:
                a = FocusAnswer(481, "Call/Transaction Does Not Exist", [])
        else:
            a = focus.in_dialog(msg, now)
        data = self._respond(txn, msg, peer, a.status, a.reason, a.headers, now, to_tag=a.to_tag, body=a.body)
        if a.leg is not None and 200 <= a.status < 300 and method == "INVITE":
            focus.accepted(a.leg, txn, data, txn.reliable, now)
        self._focus_out(now)

    def _room_cancel(self, txn: ServerTransaction, msg: Any, peer: Any, now: float) -> None:
        """CANCEL of a room INVITE: the focus answers INVITEs at once, so there is nothing
        left to cancel; 200 when the INVITE is known, else 481 (RFC 3261 9.2)."""
        inv = self.tl.find_server(msg, "INVITE")
        if inv is None:
            self._respond(txn, msg, peer, 481, "Call/Transaction Does Not Exist", [], now)
        else:
            self._respond(txn, msg, peer, 200, "OK", [], now)

    def _focus_out(self, now: float) -> None:
        """The focus's 2xx retransmissions and BYEs, and conference NOTIFYs for rooms that
        changed."""
        focus = self.focus
        assert focus is not None
        for kind, txn, data, peer in focus.take_sip():
            if kind == "resend":
                try:
                    self.tl.respond(txn, data, 200, now=now)
                except TransactionError:  # the transaction ended (Timer L): the focus gives up on its own
                    pass
            else:
                try:
                    self.tl.request(data, peer, reliable=len(peer) == 4, now=now)
                except (TransactionError, SipParseError) as exc:  # e.g. a target we cannot write
                    log.warning("chat focus: BYE not sent: %s", exc)
        changed = focus.take_changed()
        if changed and self.presence is not None:
            for room in changed:
                self.presence.notifier.changed(focus.room_uri(room), now, CONFERENCE_EVENT)

    def _local_sender(self, msg: Any) -> bool:
        """The sender is a user of ours (authenticated: _authenticated checked the
        credentials of every From of our domains); anyone without auth."""
        if self.auth is None:
            return True
        try:
            return self.registrar.is_ours(aor_of(msg.from_addr().uri)[1])
        except SipParseError:
            return False

    def _known(self, aor: str) -> bool:
        """The AOR is a user of ours (any AOR without auth: there is no user list)."""
        if self.auth is None:
            return True
        user, _, domain = aor.partition(":")[2].partition("@")
        return user in self.users.get(domain, {})

    def _presence(self, txn: ServerTransaction, msg: Any, peer: Any, ruri: Any, now: float) -> None:
        """PUBLISH or initial SUBSCRIBE to an AOR of our domains (authenticated already)."""
        assert self.presence is not None
        try:
            resource, domain = aor_of(msg.uri)
            watcher = aor_of(msg.from_addr().uri)[0]
        except SipParseError as exc:
            self._respond(txn, msg, peer, 400, "Bad Request", [warning_header(str(exc))], now)
            return
        if ruri.user is None or (self.auth is not None and ruri.user not in self.users.get(domain, {})):
            self._respond(txn, msg, peer, 404, "Not Found", [("Allow-Events", self.allow_events)], now)
            return
        if msg.method == "PUBLISH":
            if self.auth is not None and watcher != resource:
                warn = warning_header("only the presentity publishes its state")
                self._respond(txn, msg, peer, 403, "Forbidden", [warn], now)
                return
            tag = self._request_tag(msg)  # the fast path's (simplefast/_ref/fastpub.py)
            r = self.presence.publish(msg, resource, now, etag=tag)
            headers = [*r.headers, ("Allow-Events", self.allow_events)]
            self._respond(txn, msg, peer, r.status, r.reason, headers, now, to_tag=tag)
            self.presence.publish_done(r, now)
            return
        tag = self._request_tag(msg)  # the fast path's (simplefast/_ref/fastsub.py)
        a = self.presence.subscribe(msg, peer, resource, watcher, now, tag)
        self._presence_answer(txn, msg, peer, a, now)

    def _reachable(self, msg: Any, now: float) -> bool:
        try:
            return bool(self.location.get(aor_of(msg.uri)[0], now))
        except SipParseError:
            return False

    def _presence_answer(self, txn: ServerTransaction, msg: Any, peer: Any, a: Any, now: float) -> None:
        """The notifier's answer, then (for a 200) the NOTIFY it owes (RFC 6665 4.2.1.2)."""
        headers = [*a.headers, ("Allow-Events", self.allow_events)]
        self._respond(txn, msg, peer, a.status, a.reason, headers, now, to_tag=a.to_tag)
        if a.sub is not None:
            assert self.presence is not None
            self.presence.notifier.notify_now(a.sub, now)

    def _authenticated(
        self, txn: ServerTransaction, msg: Any, peer: Any, now: float, *, register: bool
    ) -> bool:
        """Digest checks (simplefast/proxy/auth.py); answers the request itself when they fail.

        REGISTER: the credentials of the To user, in the To domain (401).
        Other requests from a user of our domains: that user's credentials
        (407). Requests from elsewhere go through only to our domains (403).
        """
        assert self.auth is not None
        who = msg.to_addr() if register else msg.from_addr()
        try:
            aor, domain = aor_of(who.uri)
        except SipParseError:
            self._respond(txn, msg, peer, 403, "Forbidden", [], now)
            return False
        if not self.registrar.is_ours(domain):
            if register:
                return True  # the registrar answers 404 for foreign domains
            ruri = _codec.parse_uri(msg.uri)
            if self.registrar.is_ours(ruri.host) or (self.focus is not None and self._room(msg.uri)):
                return True  # from outside, to one of our users or chat rooms
            self._respond(
                txn, msg, peer, 403, "Forbidden", [("Warning", '399 simplefast "relaying denied"')], now
            )
            return False
        header = "Authorization" if register else "Proxy-Authorization"
        wall = time.time()
        result = self.auth.check(msg.get_all(header), msg.method, domain, self.users.get(domain, {}), wall)
        if result.ok:
            user = aor.partition(":")[2].partition("@")[0]
            if result.username != user:
                warn = [("Warning", '399 simplefast "credentials are not for this user"')]
                self._respond(txn, msg, peer, 403, "Forbidden", warn, now)
                return False
            return True
        if register:
            status, reason, name = 401, "Unauthorized", "WWW-Authenticate"
        else:
            status, reason, name = 407, "Proxy Authentication Required", "Proxy-Authenticate"
        hdrs = [(name, c) for c in self.auth.challenges(domain, wall, stale=result.stale)]
        self._respond(txn, msg, peer, status, reason, hdrs, now)
        return False

    def _is_local(self, host: str | None, port: int | None) -> bool:
        if host is None:
            return False
        h = host.lower()
        return (
            h in self.config.domains
            or h in self.config.local_hosts
            or (port is not None and f"{h}:{port}" in self.config.local_hosts)
        )

    def _to_tag(self) -> str:
        self._tag_seq += 1
        return f"{self._tag_prefix}{self._tag_seq:x}"

    def _respond(
        self, txn: ServerTransaction, msg: Any, peer: Any, status: int, reason: str,
        headers: Sequence[tuple[str, str]], now: float, *, to_tag: str | None = None, body: bytes = b"",
    ) -> bytes:  # fmt: skip
        txn.watched = False  # answered here: nothing of the proxy is keyed on it
        headers = [*headers, ("Server", self.config.server_header)]
        if msg.to_tag is None:
            to_tag = to_tag or self._to_tag()
        else:
            to_tag = None
        data = _codec.build_response(
            msg, status, reason, to_tag=to_tag, extra_headers=headers, body=body, **source_params(msg, peer)
        )
        self.stats.count_answer(msg.method, status)
        self.tl.respond(txn, data, status, now=now)
        return bytes(data)

    def _overload_reply(self, msg: Any, peer: Any) -> None:
        """Stateless 503 + Retry-After (RFC 3261 21.5.4): cheap, and the client backs
        off instead of retransmitting into a full queue."""
        self.stats.shed += 1
        if msg.method == "CANCEL":
            return
        self.stats.count_answer(msg.method, 503)
        extra = [("Retry-After", str(self.retry_after)), ("Server", self.config.server_header)]
        try:
            data = _codec.build_response(
                msg, 503, "Service Unavailable", to_tag=self._to_tag(), extra_headers=extra
            )
        except (LocalProtocolError, SipParseError):  # not validated: it may be malformed
            return
        self.tl.send_stateless(data, peer)

    def _reject(self, msg: Any, peer: Any, status: int, reason: str) -> None:
        """A request that failed validate_request: answered statelessly (never an ACK)."""
        self.stats.rejected += 1
        self._bad_request(f"{status} {reason}", peer)
        if msg.method == "ACK":
            return
        extra: list[tuple[str, str]] = [("Server", self.config.server_header)]
        if status == 420:
            extra.append(("Unsupported", ", ".join(_codec.unsupported_requires(msg, SUPPORTED))))
        try:
            data = _codec.build_response(msg, status, reason, to_tag=self._to_tag(), extra_headers=extra)
        except LocalProtocolError:
            return
        self.stats.count_answer(msg.method, status)
        self.tl.send_stateless(data, peer)


def branch_prefix(index: int) -> str:
    """A worker's branch prefix (after the magic cookie): random, then its index, so a
    response that reaches another worker can be handed to the owner (``branch_owner``);
    the index as the worker's steering marker (transport/reuseport.py), so that the
    kernel sends such a response to the owner in the first place."""
    mark = marker(index)
    return f"{os.urandom(4).hex()}{mark}" if mark else f"{os.urandom(4).hex()}w{index}"


def branch_owner(branch: str) -> int | None:
    """The worker index in a branch made with ``branch_prefix``; None for other branches."""
    head = branch[7:].partition(".")[0]
    if MARKER in head:
        return marked_index(head)
    _, w, idx = head.rpartition("w")
    return int(idx) if w and idx.isdigit() and len(idx) < 4 else None


_REASONS = {400: "Bad Request", 413: "Request Entity Too Large", 416: "Unsupported URI Scheme",
            420: "Bad Extension", 505: "Version Not Supported", 513: "Message Too Large"}  # fmt: skip
_SALVAGE = {b"via": b"Via", b"v": b"Via", b"from": b"From", b"f": b"From", b"to": b"To", b"t": b"To",
            b"call-id": b"Call-ID", b"i": b"Call-ID", b"cseq": b"CSeq"}  # fmt: skip


def salvage_response(data: bytes, status: int, detail: str) -> bytes | None:
    """A stateless error response to a request the codec could not parse.

    RFC 3261 section 8.2 wants a 400 where one can be sent; that needs the
    Via, From, To, Call-ID and CSeq lines, copied as they are. A datagram
    that does not look like a request, or lacks one of those lines, or has
    more than one From/To/Call-ID/CSeq, gets nothing (dropped, as section
    18.1.2 allows for what cannot be parsed).
    """
    head = data.lstrip(b"\r\n").split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    if not lines or lines[0].startswith(b"SIP/") or b" SIP/" not in lines[0]:
        return None
    found: dict[bytes, list[bytes]] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        key = _SALVAGE.get(name.strip().lower()) if colon else None
        value = value.strip()
        if key is None or not value or b"\r" in value or len(value) > 1024:
            continue
        found.setdefault(key, []).append(value)
    if set(found) != set(_SALVAGE.values()) or any(
        len(found[k]) != 1 for k in (b"From", b"To", b"Call-ID", b"CSeq")
    ):
        return None
    if found[b"CSeq"][0].split()[-1:] == [b"ACK"]:
        return None  # never answer an ACK
    to = found[b"To"][0]
    if b";tag=" not in to.lower():
        to += b";tag=sf-salvage"
    text = "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in detail[:200])
    out = [b"SIP/2.0 %d %s" % (status, _REASONS.get(status, "Bad Request").encode())]
    out += [b"Via: " + v for v in found[b"Via"]]
    out += [b"From: " + found[b"From"][0], b"To: " + to, b"Call-ID: " + found[b"Call-ID"][0]]
    out += [
        b"CSeq: " + found[b"CSeq"][0],
        b'Warning: 399 simplefast "%s"' % text.encode(),
        b"Content-Length: 0",
    ]
    return b"\r\n".join(out) + b"\r\n\r\n"
