"""The one place where a worker's transports meet its SIP core.

Every protocol (UDP sockets, stream connections, the hand-off socket) feeds
the core through one ``CoreDriver``: it passes the message with the loop's
clock, contains a failure of ours (logged rate-limited and counted, the
worker goes on), sends what the core produced through ``send(data, peer)``
(the worker's dispatcher, which picks the socket or connection from the
peer, simplefast/sip/peer.py) and keeps a single ``loop.call_at`` for the
core's earliest deadline, re-armed only when that deadline moves earlier so
a busy worker does not touch the timer per packet. Next hops with a host
name that the proxy asks about (``proxy.resolve_out``) go to the worker's
RFC 3263 resolver (simplefast/transport/dns.py); its answer comes back
through ``resolved``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

from simplefast.errors import SipParseError
from simplefast.logs import RateLimited, get_logger
from simplefast.proxy.core import SipCore
from simplefast.sip.rfc3263 import Target, UriParts
from simplefast.transport.dns import Resolver

log = get_logger(__name__)
_internal_error = RateLimited(log, "internal error while handling a message (please report it)")


class CoreDriver:
    __slots__ = (
        "core",
        "loop",
        "send",
        "internal_errors",
        "_timer",
        "_armed",
        "resolver",
        "dirty",
        "_held",
        "also",
    )

    def __init__(
        self, core: SipCore, loop: asyncio.AbstractEventLoop, send: Callable[[bytes, Any], None]
    ) -> None:
        self.core = core
        self.loop = loop
        self.send = send
        self.internal_errors = 0
        self._timer: asyncio.TimerHandle | None = None
        self._armed = math.inf
        self.resolver: Resolver | None = None  # RFC 3263 for next hops with host names
        # batched senders (transport/udp.py UdpPort) with datagrams queued by ``send``
        self.dirty: list[Any] = []
        self._held = 0  # inside a batch of handed-over messages: ``after`` waits for its end
        self.also: Callable[[], None] | None = None  # run after every step (the chat focus's MSRP output)

    def datagram(self, data: bytes, peer: Any, hops: int = 0, *, reliable: bool = False) -> None:
        """A datagram (or a message another worker handed over)."""
        try:
            self.core.on_message(data, peer, reliable=reliable, now=self.loop.time(), hops=hops)
        except Exception as exc:  # a bug of ours: logged and counted, the worker goes on
            self._failed(exc, peer)
        if not self._held:
            self.after()

    def hold(self, on: bool) -> None:
        """Around a batch of handed-over messages (transport/handoff.py ``on_batch``): what
        they make is sent once, at the end."""
        if on:
            self._held += 1
        else:
            self._held -= 1
            if not self._held:
                self.after()

    def datagrams(self, batch: list[tuple[bytes, Any]], tag: int | str = 0) -> None:
        """A batch of datagrams read at once, in order: answered in one batch too. The
        responses to our NOTIFYs are taken in runs, each in one compiled pass. ``tag`` (not
        0) names the socket in the peers (simplefast/sip/peer.py)."""
        core = self.core
        now = self.loop.time()
        runs = True
        i, n = 0, len(batch)
        while i < n:
            if runs:
                try:
                    j = core.take_notify_responses(batch, i, now)
                except Exception as exc:  # a bug of ours: the rest of the batch goes one by one
                    self._failed(exc, "-")
                    j, runs = i, False
                if j > i:
                    i = j
                    try:
                        core.pump_notifies(now)
                    except Exception as exc:
                        self._failed(exc, "-")
                    if i >= n:
                        break
            data, peer = batch[i]
            if tag != 0:
                peer = (peer[0], peer[1], tag)
            try:
                core.on_message(data, peer, reliable=False, now=now)
            except Exception as exc:
                self._failed(exc, peer)
            i += 1
        self.after()

    def messages(self, msgs: list[Any], peer: Any) -> None:
        """Messages framed (and parsed) on a stream."""
        core = self.core
        now = self.loop.time()
        for msg in msgs:
            try:
                core.on_parsed(msg, None, peer, reliable=True, now=now)
            except Exception as exc:
                self._failed(exc, peer)
        self.after()

    def stream_error(self, data: bytes, peer: Any, exc: SipParseError) -> None:
        try:
            self.core.on_stream_error(data, peer, exc)
        except Exception as err:
            self._failed(err, peer)
        self.after()

    def undeliverable(self, data: bytes) -> None:
        """The transport could not send ``data``: a request's client transaction fails."""
        self._run(self.core.transport_error, data, "-")

    def presence_changed(self, resource: str) -> None:
        """Another worker changed a presentity: NOTIFY the watchers held here."""
        self._run(self.core.presence_changed, resource, "presence")

    def presence_watcher(self, data: bytes) -> None:
        """Another worker's watcher event (watcher information)."""
        self._run(self.core.presence_watcher, data, "presence")

    def deactivate_presence(self) -> None:
        """The worker stops and keeps no subscription: end them with reason deactivated."""
        self._run(self.core.deactivate_presence, None, "presence")

    def _run(self, step: Callable[[Any, float], None], arg: Any, what: str) -> None:
        """One core entry point with the time now; a bug is counted, what it made is sent
        (at the end of the hand-off batch, when inside one)."""
        try:
            step(arg, self.loop.time())
        except Exception as exc:
            self._failed(exc, what)
        if not self._held:
            self.after()

    def after(self) -> None:
        send = self.send
        for data, peer in self.core.outgoing():
            send(data, peer)
        if self.dirty:
            ports, self.dirty = self.dirty, []
            for port in ports:
                port.flush()
        proxy = self.core.proxy
        if proxy.resolve_out and self.resolver is not None:
            asks, proxy.resolve_out = proxy.resolve_out, []
            for token, parts in asks:
                self._resolve(token, parts)
        if self.also is not None:
            self.also()
        t = self.core.get_timer()
        if t is not None and t < self._armed:
            self._arm(t)

    def focus_step(self) -> None:
        """The chat focus's MSRP side ran: the SIP it owes goes out (transport/chat.py)."""
        self._run(self.core.focus_step, None, "chat")

    def _resolve(self, token: int, parts: UriParts) -> None:
        assert self.resolver is not None

        def done(targets: list[Target]) -> None:
            self.resolved(token, targets)

        try:
            ready = self.resolver.resolve(parts, done)
        except Exception as exc:  # a bug of ours: the branch gets its 503
            self._failed(exc, parts.host)
            ready = []
        if ready is not None:  # cached or numeric: still answered from the loop, never re-entrantly
            self.loop.call_soon(self.resolved, token, ready)

    def resolved(self, token: int, targets: list[Target]) -> None:
        try:
            self.core.on_resolved(token, targets, self.loop.time())
        except Exception as exc:
            self._failed(exc, "resolver")
        self.after()

    def _failed(self, exc: Exception, peer: Any) -> None:
        self.internal_errors += 1
        _internal_error(f"{type(exc).__name__}: {exc}", peer)
        log.debug("internal error", exc_info=True)

    def _arm(self, t: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed = t
        self._timer = self.loop.call_at(t, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._armed = math.inf
        try:
            self.core.handle_timer(self.loop.time())
        except Exception as exc:
            self._failed(exc, "timer")
        self.after()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
