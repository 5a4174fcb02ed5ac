"""Stateful proxy core (RFC 3261 section 16), sans-IO, on the transaction layer.

Theory of operation
-------------------
A request that is not for the server itself arrives as a server transaction
(``handle_request``). The proxy

1. checks Max-Forwards (483 at 0, section 16.3 step 3) and loops (482: one of
   the Vias is ours and carries the loop hash of this very request, section
   16.3 step 4 / 16.6 step 8);
2. pre-processes Route (section 16.4): a Request-URI that is our own
   Record-Route URI means the previous hop was a strict router, so the last
   Route value becomes the Request-URI; a top Route that is ours is removed;
3. determines the targets (section 16.5): with a Route left, or a
   Request-URI outside our domains, the Request-URI itself; otherwise every
   contact bound to the address-of-record, highest q first (480 when none);
4. forwards one copy per target (section 16.6): new Request-URI, Max-Forwards
   decremented, Record-Route for requests that can make a dialog, the
   binding's Path as Route (RFC 3327), our Via on top with a fresh branch
   ``z9hG4bK<worker-prefix>.<n>.<loop hash>``, and sends it in a client
   transaction to the first Route's URI if there is one (loose routing), else
   the Request-URI. A host name is resolved first (RFC 3263, by the worker's
   resolver through ``resolve_out``/``on_resolved``); the branch waits
   without a client transaction meanwhile, goes to the first target, and to
   the next one when the transport fails; no target at all is a 503;
5. collects responses per request (section 16.7): 100 stays here, other 1xx
   and every 2xx go upstream at once (less our Via); 3xx-6xx wait until every
   branch has one, then the best goes up (6xx first, else the lowest class,
   408 for branches that timed out); a 2xx to an INVITE cancels the other
   branches;
6. CANCEL (section 16.10): answered 200 when its INVITE is here, and a CANCEL
   goes down every branch still without a final response; otherwise 481.

ACKs of 2xx and responses with no client transaction are forwarded
statelessly (sections 16.11, 16.7 step "no match"). Timer C is not kept
(the client transactions' Timer B bounds the wait for a final response).

Outgoing requests over UDP name their destination ``(host, port, "c")`` so
the transport sends them from the worker's own client socket: the responses
then come back to the worker that holds the transactions. Over TCP/TLS
(a ``transport`` parameter, a sips URI, or a contact that registered over a
connection) they name ``(host, port, kind, cid)`` (simplefast/sip/peer.py);
the responses come back on that connection, to the worker that owns it,
which hands them to the worker whose branch prefix they carry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simplefast._impl import fastrelay as _fastrelay
from simplefast._impl import sipmsg as _codec
from simplefast._sipshared import source_params as source_params  # core and tests import it from here
from simplefast.errors import LocalProtocolError, SipParseError
from simplefast.proxy.location import Location
from simplefast.proxy.registrar import Registrar, aor_of
from simplefast.sip.peer import STREAMS, is_stream, stream_of_flow, transport_of
from simplefast.sip.rfc3263 import Target, UriParts
from simplefast.sip.transaction import (
    ACCEPTED,
    PROCEEDING,
    TRYING,
    ClientTransaction,
    ServerTransaction,
    TransactionLayer,
)

SipMessage = Any

# Requests that may create a dialog get our Record-Route (section 16.6 step 4).
_DIALOG_FORMING = frozenset({"INVITE", "SUBSCRIBE", "REFER", "NOTIFY"})

# RFC 3261 section 18.1.1: a request larger than 1300 octets (path MTU unknown) goes
# over a congestion-controlled transport. A UDP next hop gets it over TCP instead (every
# SIP element implements TCP, section 18); a URI that insists on transport=udp cannot.
UDP_MAX_REQUEST = 1300


@dataclass(slots=True)
class Branch:
    txn: ClientTransaction | None  # None while its next hop is being resolved (RFC 3263)
    final: int = 0  # status of the final response (408 timeout, 503 transport), 0 while pending
    response: SipMessage = None
    cancelled: bool = False
    upgraded: bool = False  # sent over TCP instead of UDP for its size (section 18.1.1)
    # to send it again elsewhere: (target, route set), and the RFC 3263 targets not tried yet
    route: tuple[str, list[str]] | None = None
    alternatives: list[Target] = field(default_factory=list)


@dataclass(slots=True)
class Context:
    """A response context (section 16.7): one server transaction and its branches.

    A request the server sends on its own behalf (``Proxy.originate``) has no
    server transaction; its final status goes to ``on_final`` instead."""

    server: ServerTransaction | None
    request: SipMessage
    branches: list[Branch] = field(default_factory=list)
    answered: bool = False  # a final response went upstream
    on_final: Callable[[int, float], None] | None = None


@dataclass(slots=True)
class ProxyAddress:
    """How the proxy names itself.

    ``host``/``port``: the first UDP listener (the shared listen address);
    ``client_port``: the worker's client socket, in the Via of requests sent
    over UDP so that responses come back to this worker. ``listeners`` holds
    every (transport, host, port) the server listens on (several addresses,
    TCP, TLS); ``client_ports`` the client socket of each address family
    ("4"/"6"). Requests sent over a stream name the stream listener of that
    transport in their Via (responses come back on the same connection).
    """

    host: str
    port: int
    client_port: int
    listeners: tuple[tuple[str, str, int], ...] = ()
    client_ports: dict[str, tuple[str, int]] = field(default_factory=dict)
    _mine: frozenset[tuple[str, int]] = field(default=frozenset(), init=False)
    _picked: dict[tuple[str, bool], tuple[str, int]] = field(default_factory=dict, init=False)
    _contacts: dict[tuple[str, bool], str] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if not self.listeners:
            self.listeners = (("udp", self.host, self.port),)
        fam = "6" if ":" in self.host else "4"
        self.client_ports.setdefault(fam, (self.host, self.client_port))
        mine = {(h.lower(), p) for _, h, p in self.listeners}
        mine |= {(h.lower(), p) for h, p in self.client_ports.values()}
        self._mine = frozenset(mine)

    def _pick(self, kind: str, v6: bool) -> tuple[str, int]:
        """Our (host, port) for ``kind`` in that address family: the first such listener,
        else the first listener of that family, else the primary one (worked out once per
        (kind, family): every forwarded request asks)."""
        got = self._picked.get((kind, v6))
        if got is None:
            fam = [(t, h, p) for t, h, p in self.listeners if (":" in h) == v6] or list(self.listeners)
            got = next(((h, p) for t, h, p in fam if t == kind), (fam[0][1], fam[0][2]))
            self._picked[(kind, v6)] = got
        return got

    def via(self, kind: str, v6: bool, branch: str) -> str:
        """Our Via element for a request sent over ``kind`` to a v4/v6 destination."""
        if kind == "udp":
            host, port = self.client_ports.get("6" if v6 else "4") or (self.host, self.client_port)
        else:
            host, port = self._pick(kind, v6)
        return f"SIP/2.0/{kind.upper()} {_bracket(host)}:{port};branch={branch}"

    def sent_by(self, kind: str, v6: bool) -> str:
        """Our Via value without its branch for a request sent over ``kind`` (see ``via``)."""
        return self.via(kind, v6, "").rpartition(";branch=")[0]

    def record_route(self, kind: str = "udp", v6: bool = False) -> str:
        host, port = self._pick(kind, v6)
        tp = "" if kind == "udp" else f";transport={kind}"
        return f"<sip:{_bracket(host)}:{port}{tp};lr>"

    def contact_uri(self, kind: str = "udp", v6: bool = False) -> str:
        """Our URI for a Contact (of a NOTIFY): the listener of that transport and family."""
        got = self._contacts.get((kind, v6))
        if got is None:
            host, port = self._pick(kind, v6)
            tp = "" if kind == "udp" else f";transport={kind}"
            got = self._contacts[(kind, v6)] = f"sip:{_bracket(host)}:{port}{tp}"
        return got

    def _host(self) -> str:
        return _bracket(self.host)

    def is_me(self, host: str | None, port: int | None) -> bool:
        if host is None:
            return False
        h = host[1:-1] if host.startswith("[") else host
        return (h.lower(), port or 5060) in self._mine


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class Proxy:
    def __init__(
        self, tl: TransactionLayer, registrar: Registrar, location: Location, me: ProxyAddress
    ) -> None:
        self.tl = tl
        self.registrar = registrar
        self.location = location
        self.me = me
        self.contexts: dict[ClientTransaction, Context] = {}
        self.by_server: dict[ServerTransaction, Context] = {}
        # next hops with a host name: (token, what to resolve) for the worker's resolver,
        # answered through on_resolved(token, targets)
        self.resolve_out: list[tuple[int, UriParts]] = []
        self._resolving: dict[int, tuple[Context, Branch]] = {}
        self._token = 0
        self.can_resolve = False  # set when a resolver is wired (else host names get 503)

    # ------------------------------------------------------------ requests
    def handle_request(self, txn: ServerTransaction, msg: SipMessage, now: float) -> tuple[int, str] | None:
        """Route ``msg``; returns (status, reason) when the proxy answers it itself."""
        method = msg.method
        if method == "CANCEL":
            return self._cancel(msg, now)
        return self._route(Context(txn, msg), now)

    def originate(
        self, msg: SipMessage, now: float, on_final: Callable[[int, float], None]
    ) -> tuple[int, str] | None:
        """Send a request of the server's own (a stored MESSAGE, an IMDN, one copy of a
        URI-list MESSAGE): ``msg`` is a parsed request without a Via; it is routed like
        a proxied one (location, forking, RFC 3263, the size rule) and ``on_final``
        gets the best final status and the time. Returns (status, reason) when it cannot be sent
        at all (then ``on_final`` is never called)."""
        return self._route(Context(None, msg, on_final=on_final), now)

    def _route(self, ctx: Context, now: float) -> tuple[int, str] | None:
        msg = ctx.request
        txn = ctx.server
        source = txn.peer if txn is not None else None
        mf = msg.max_forwards
        if mf == 0:
            return 483, "Too Many Hops"
        loop = _loop_hash(msg)
        for via in msg.vias():
            if self.me.is_me(via.host, via.port) and (via.branch or "").endswith("." + loop):
                return 482, "Loop Detected"
        uri = msg.uri
        routes = msg.get_all("Route")
        if self._is_my_uri(uri) and routes:  # strict router before us (section 16.4)
            uri = _strip_brackets(routes[-1])
            routes = routes[:-1]
        while routes and self._is_my_uri(_strip_brackets(routes[0])):
            routes = routes[1:]  # ours (twice when we double record-routed)
        targets: list[tuple[str, tuple[str, ...], str]]
        try:
            ruri = _codec.parse_uri(uri)
        except SipParseError:
            return 400, "Bad Request-URI"
        if not routes and ruri.scheme in ("sip", "sips") and self.registrar.is_ours(ruri.host):
            aor, _ = aor_of(uri)
            bindings = sorted(self.location.get(aor, now), key=lambda b: -(b.q if b.q is not None else 1.0))
            if not bindings:
                return 480, "Temporarily Unavailable"
            targets = [(b.contact, b.path, b.source) for b in bindings]
        else:
            targets = [(uri, (), "")]
        too_big = False
        for target, path, flow in targets:
            route_set = [*path, *routes]
            hop = route_set[0] if route_set else target
            dest = _next_hop(hop)
            stream = stream_of_flow(flow) if flow and not path else None
            if stream is not None:
                # the contact registered over a connection: requests for it reuse that
                # connection (RFC 5626 section 5.2 in spirit); the contact's own address,
                # when numeric, is the way back if the connection is gone
                kind, _, _, cid = stream
                peer: tuple[Any, ...] = (
                    (dest[0], dest[1], kind, cid) if dest is not None else ("", 0, kind, cid)
                )
            elif dest is None:
                parts = _hop_parts(hop) if self.can_resolve else None
                if parts is None:
                    continue
                br = Branch(None, route=(target, route_set))
                ctx.branches.append(br)
                self._token += 1
                self._resolving[self._token] = (ctx, br)
                self.resolve_out.append((self._token, parts))
                continue
            else:
                peer = (dest[0], dest[1], "c") if dest[2] == "udp" else (dest[0], dest[1], dest[2], 0)
            try:
                data = self._forward_bytes(msg, target, route_set, mf, loop, source, peer)
                upgraded = False
                if len(data) > UDP_MAX_REQUEST and not is_stream(peer):
                    if _insists_on_udp(hop):
                        too_big = True
                        continue
                    peer, upgraded = (peer[0], peer[1], "tcp", 0), True
                    data = self._forward_bytes(msg, target, route_set, mf, loop, source, peer)
            except LocalProtocolError:  # a contact or route we cannot write into a request
                continue
            client = self.tl.request(data, peer, reliable=is_stream(peer), now=now)
            ctx.branches.append(Branch(client, route=(target, route_set), upgraded=upgraded))
            self.contexts[client] = ctx
        if not ctx.branches:
            if too_big:
                return 513, "Message Too Large"  # only UDP, and too large for it (18.1.1)
            return 503, "Service Unavailable"  # no next hop we can reach
        if txn is not None:
            self.by_server[txn] = ctx
        return None

    def on_resolved(self, token: int, targets: list[Target], now: float) -> None:
        """The resolver's answer for a branch waiting on a host name (RFC 3263 section 4):
        the request goes to the first target; the others are kept for a transport failure."""
        entry = self._resolving.pop(token, None)
        if entry is None:
            return
        ctx, br = entry
        if ctx.answered or br.cancelled:
            br.final = 487
            self._maybe_finish(ctx, now)
            return
        br.alternatives = list(targets)
        self._send_branch(ctx, br, now)

    def _send_branch(self, ctx: Context, br: Branch, now: float) -> None:
        """Send ``br`` to its next untried target; with none left it ends as a 503."""
        assert br.route is not None
        if not br.alternatives:
            br.final = 503  # nothing resolved, or every target failed (sections 16.9, RFC 3263 4.3)
            self._maybe_finish(ctx, now)
            return
        t = br.alternatives.pop(0)
        peer: tuple[Any, ...] = (
            (t.host, t.port, "c") if t.transport == "udp" else (t.host, t.port, t.transport, 0)
        )
        msg = ctx.request
        target, route_set = br.route
        mf = msg.max_forwards
        source = ctx.server.peer if ctx.server is not None else None
        try:
            data = self._forward_bytes(msg, target, route_set, mf, _loop_hash(msg), source, peer)
            if len(data) > UDP_MAX_REQUEST and not is_stream(peer):  # section 18.1.1
                peer, br.upgraded = (t.host, t.port, "tcp", 0), True
                data = self._forward_bytes(msg, target, route_set, mf, _loop_hash(msg), source, peer)
        except LocalProtocolError:
            br.final = 503
            self._maybe_finish(ctx, now)
            return
        client = self.tl.request(data, peer, reliable=is_stream(peer), now=now)
        br.txn = client
        self.contexts[client] = ctx

    def handle_transport_failure(self, txn: ClientTransaction, now: float) -> None:
        """The request could not be delivered: the next RFC 3263 target if there is one
        (section 4.3), else the branch is a 503 (RFC 3261 section 16.9)."""
        ctx = self.contexts.get(txn)
        if ctx is None:
            return
        for br in ctx.branches:
            if br.txn is txn and not br.final:
                if br.alternatives and not br.cancelled and not ctx.answered:
                    self._send_branch(ctx, br, now)
                else:
                    # a request sent over TCP for its size to a UA that takes no TCP
                    br.final = 513 if br.upgraded else 503
                    self._maybe_finish(ctx, now)
                return

    def foreign_routes(self, msg: SipMessage) -> list[str]:
        """The Route values of ``msg`` left once the leading ones naming us are dropped."""
        routes: list[str] = msg.get_all("Route")
        while routes and self._is_my_uri(_strip_brackets(routes[0])):
            routes = routes[1:]
        return routes

    def _is_my_uri(self, text: str) -> bool:
        try:
            u = _codec.parse_uri(text)
        except SipParseError:
            return False
        return self.me.is_me(u.host, u.port)

    def _forward_bytes(
        self, msg: SipMessage, target: str, routes: list[str], mf: int | None, loop: str, peer: Any,
        dest: tuple[Any, ...],
    ) -> bytes:  # fmt: skip
        """The forwarded copy (section 16.6), built by the codec: new Request-URI, our Via,
        Record-Route for dialogs (double when the two sides differ, RFC 5658: the callee's
        side first), the route set, Max-Forwards less one, the previous hop's Via stamped
        with received/rport."""
        me = self.me
        branch = f"{self.tl.new_branch()}.{loop}"
        out_kind, out_v6 = transport_of(dest), ":" in dest[0]
        rr = None
        if msg.method in _DIALOG_FORMING:
            rr = me.record_route(out_kind, out_v6)
            rr_in = rr if peer is None else me.record_route(transport_of(peer), ":" in str(peer[0]))
            if rr_in != rr:
                rr = f"{rr}, {rr_in}"
        return bytes(
            _codec.forward_request(
                msg, target, me.via(out_kind, out_v6, branch), record_route=rr, routes=routes,
                max_forwards=70 if mf is None else min(mf - 1, 255), **source_params(msg, peer),
            )
        )  # fmt: skip

    def _cancel(self, cancel: SipMessage, now: float) -> tuple[int, str]:
        inv = self.tl.find_server(cancel, "INVITE")
        ctx = self.by_server.get(inv) if inv is not None else None
        if ctx is None:
            return 481, "Call/Transaction Does Not Exist"
        self._cancel_branches(ctx, now)
        return 200, "OK"

    def _cancel_branches(self, ctx: Context, now: float) -> None:
        for br in ctx.branches:
            if br.final or br.cancelled:
                continue
            if br.txn is None:  # still resolving: it will not be sent (on_resolved)
                br.cancelled = True
                continue
            if not br.txn.invite:
                continue
            br.cancelled = True
            sent = br.txn.request
            lines = [f"CANCEL {sent.uri} SIP/2.0", f"Via: {sent.get_all('Via')[0]}"]
            lines += [f"Route: {r}" for r in sent.get_all("Route")]
            lines += [
                "Max-Forwards: 70", f"From: {sent.get('From')}", f"To: {sent.get('To')}",
                f"Call-ID: {sent.call_id}", f"CSeq: {sent.cseq_num} CANCEL", "Content-Length: 0", "", "",
            ]  # fmt: skip
            self.tl.request(
                "\r\n".join(lines).encode("utf-8", "surrogateescape"), br.txn.peer,
                reliable=br.txn.reliable, now=now,
            )  # fmt: skip

    # ------------------------------------------------------------ responses
    def handle_response(self, txn: ClientTransaction | None, msg: SipMessage, now: float) -> None:
        if txn is None:
            self._forward_stateless_response(msg)
            return
        ctx = self.contexts.get(txn)
        if ctx is None:  # e.g. the 200 to one of our CANCELs
            return
        status: int = msg.status
        br = next(b for b in ctx.branches if b.txn is txn)
        if status < 200:
            if status > 100 and not ctx.answered:
                self._send_up(ctx, msg, status, now)
            return
        if br.final and not (200 <= status < 300):
            return
        br.final, br.response = status, msg
        if status < 300:
            self._send_up(ctx, msg, status, now)  # every 2xx goes up (section 16.7 step 5)
            ctx.answered = True
            if ctx.request.method == "INVITE":
                self._cancel_branches(ctx, now)
            return
        self._maybe_finish(ctx, now)

    def handle_timeout(self, txn: ClientTransaction, now: float) -> None:
        """No final response on a branch before Timer B/F: it counts as a 408."""
        ctx = self.contexts.get(txn)
        if ctx is None:
            return
        for br in ctx.branches:
            if br.txn is txn and not br.final:
                br.final = 408
        self._maybe_finish(ctx, now)

    def forget(self, txn: ClientTransaction | ServerTransaction) -> None:
        """The transaction ended: drop what was keyed on it."""
        if isinstance(txn, ClientTransaction):
            ctx = self.contexts.pop(txn, None)
            if (
                ctx is not None
                and ctx.server is not None
                and all(b.txn is not None and b.txn not in self.contexts for b in ctx.branches)
            ):
                self.by_server.pop(ctx.server, None)
        else:
            self.by_server.pop(txn, None)

    def _maybe_finish(self, ctx: Context, now: float) -> None:
        if ctx.answered or any(not b.final for b in ctx.branches):
            return
        best = min(ctx.branches, key=lambda b: (0 if b.final >= 600 else 1, b.final // 100, b.final))
        ctx.answered = True
        if ctx.server is None:
            if ctx.on_final is not None:
                ctx.on_final(best.final, now)
            return
        if best.response is not None:
            self._send_up(ctx, best.response, best.final, now)
        else:  # no branch answered: our own 408 or 503 (section 16.7 step 6, 16.9)
            reason = _OWN_REASONS.get(best.final, "Service Unavailable")
            data = _codec.build_response(ctx.request, best.final, reason, to_tag=self.tl.new_branch()[-10:])
            self.tl.respond(ctx.server, data, best.final, now=now)

    def _send_up(self, ctx: Context, msg: SipMessage, status: int, now: float) -> None:
        if ctx.server is None:  # our own request: only its outcome matters
            if status >= 200 and ctx.on_final is not None:
                ctx.on_final(status, now)
                ctx.on_final = None
            return
        data = _without_top_via(msg)
        if data is not None and ctx.server.state in (TRYING, PROCEEDING, ACCEPTED):
            self.tl.respond(ctx.server, data, status, now=now)

    def _forward_stateless_response(self, msg: SipMessage) -> None:
        vias = msg.vias()
        if len(vias) < 2 or not self.me.is_me(vias[0].host, vias[0].port):
            return
        data = _without_top_via(msg)
        nxt = vias[1]
        host = nxt.params.get("received") or nxt.host.strip("[]")
        rport = nxt.params.get("rport")
        kind = nxt.transport.lower()
        port = int(rport) if rport else (nxt.port or (5061 if kind == "tls" else 5060))
        if data is not None:
            self.tl.send_stateless(data, (host, port, kind, 0) if kind in STREAMS else (host, port))

    def forward_ack(self, msg: SipMessage) -> None:
        """An ACK of a 2xx: forwarded statelessly along its Route (section 16.11)."""
        routes = msg.get_all("Route")
        while routes and self._is_my_uri(_strip_brackets(routes[0])):
            routes = routes[1:]
        dest = _next_hop(routes[0] if routes else msg.uri)
        if dest is None or msg.max_forwards == 0:
            return
        loop = _loop_hash(msg)
        me = self.me
        branch = (
            f"z9hG4bK{hashlib.blake2s((msg.via_branch or '').encode(), digest_size=8).hexdigest()}.{loop}"
        )
        lines = [f"ACK {msg.uri} SIP/2.0", f"Via: {me.via(dest[2], ':' in dest[0], branch)}"]
        lines += [f"Route: {r}" for r in routes]
        lines.append(f"Max-Forwards: {70 if msg.max_forwards is None else msg.max_forwards - 1}")
        for name, value in msg.headers():
            if name.lower() not in ("route", "max-forwards", "content-length", "l"):
                lines.append(f"{name}: {value}")
        body: bytes = msg.body
        lines.append(f"Content-Length: {len(body)}")
        peer = (dest[0], dest[1], "c") if dest[2] == "udp" else (dest[0], dest[1], dest[2], 0)
        self.tl.send_stateless(
            ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body, peer
        )


# Section 16.6 step 8: what makes a request the same request when it comes back (the
# top Via left out: through another proxy a looping request comes back under that
# proxy's Via). One definition, the MESSAGE relay's (simplefast/_ref/fastrelay.py), so
# that a copy either path forwarded is recognised by the other.
_loop_hash: Callable[[SipMessage], str] = _fastrelay.loop_hash


_OWN_REASONS = {408: "Request Timeout", 487: "Request Terminated", 503: "Service Unavailable",
                513: "Message Too Large"}  # fmt: skip


def _insists_on_udp(uri_text: str) -> bool:
    """The next hop's URI names transport=udp: the size rule cannot move it to TCP."""
    try:
        u = _codec.parse_uri(_strip_brackets(uri_text))
    except SipParseError:
        return False
    return (u.params.get("transport") or "").lower() == "udp"


def _hop_parts(uri_text: str) -> UriParts | None:
    """What RFC 3263 needs of a next hop whose host is a name; None when it cannot be used."""
    try:
        return UriParts.from_uri(_codec.parse_uri(_strip_brackets(uri_text)))
    except (SipParseError, ValueError):
        return None


def _strip_brackets(value: str) -> str:
    v = value.strip()
    if "<" in v and ">" in v:
        return v[v.index("<") + 1 : v.index(">")]
    return v


def _next_hop(uri_text: str) -> tuple[str, int, str] | None:
    """(host, port, transport) of a URI when the host is numeric (RFC 3263 section 4.1
    and 4.2 for an IP literal: the transport parameter, else TLS for sips and UDP)."""
    try:
        u = _codec.parse_uri(_strip_brackets(uri_text))
    except SipParseError:
        return None
    if u.host is None:
        return None
    host = u.host[1:-1] if u.host.startswith("[") else u.host
    maddr = u.params.get("maddr")
    if maddr:
        host = maddr
    if not (host.replace(".", "").isdigit() or ":" in host):
        return None
    tp = (u.params.get("transport") or "").lower()
    kind = "tls" if u.scheme == "sips" else tp if tp in ("udp", "tcp", "tls") else "udp"
    return host, u.port or (5061 if kind == "tls" else 5060), kind


def _without_top_via(msg: SipMessage) -> bytes | None:
    """The response less its first Via element (section 16.7 step 3), by the codec."""
    out = _codec.strip_top_via(msg)
    return None if out is None else bytes(out)
