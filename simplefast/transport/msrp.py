"""MSRP relay connections of one worker (asyncio): octets to ``MsrpRelay``, its output to sockets.

Theory of operation: ``MsrpService`` owns the worker's ``MsrpRelay``
(simplefast/msrp/relay.py, sans-IO) and every MSRP connection of the worker,
inbound (accepted on the shared listener or on the worker's own session port)
or outbound (opened when the relay asks with a ``Connect`` event). Each
connection gets a ``cid``; what it reads goes to ``relay.data``, and after
every step the service writes ``relay.outgoing()``, acts on the relay's
events (open, close) and re-arms one ``loop.call_at`` timer for
``relay.get_timer()``. No protocol decision is made here.

Why two listeners per worker (see docs/msrp.md 8.3): a session URI handed out
in a Use-Path names the port of the worker that issued it (``port + 1 +
index``), so the peer that connects to it reaches the worker holding the
session; the client's AUTH connection, on the shared port (SO_REUSEPORT), may
land on any worker, which then holds that client's sessions.

Back-pressure: each connection's write buffer has a high-water mark
(``WRITE_HIGH``; asyncio calls ``pause_writing`` past it). When the relay
writes to a connection that is over it, the connection whose octets made
that write stops being read (``pause_reading``) until the congested one has
drained to its low-water mark (``resume_writing``). A slow receiver thus
slows its sender's reads, and what the relay holds for one session stays
within about the high-water mark plus one read, whatever the sender sends:
TCP's own flow control carries the rest back to the sender.

Not yet: connection limits per worker.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import ssl
import time
from collections.abc import Callable
from typing import Any

from simplefast.logs import RateLimited, get_logger
from simplefast.msrp.relay import Authority, CloseConnection, Connect, MsrpRelay, SessionCreated

log = get_logger(__name__)
_internal = RateLimited(log, "MSRP relay internal error")
CONNECT_TIMEOUT = 10.0
WRITE_HIGH = 1 << 20  # bytes buffered for one connection before its feeders are paused
WRITE_LOW = 256 << 10


class MsrpConn(asyncio.Protocol):
    """One MSRP connection (inbound, or opened for the relay's ``Connect``)."""

    def __init__(self, service: MsrpService, outbound: tuple[Authority, int] | None = None) -> None:
        self.service = service
        self.outbound = outbound
        self.cid = 0
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport subclasses
        self.congested = False  # its write buffer is over WRITE_HIGH
        self.paused: set[MsrpConn] = set()  # connections not read until this one drains
        self.reading = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)  # type: ignore[attr-defined]
        self.service.made(self)

    def data_received(self, data: bytes) -> None:
        self.service.received(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.resume_writing()  # nobody waits for a connection that is gone
        self.service.lost(self)

    def pause_writing(self) -> None:
        self.congested = True

    def resume_writing(self) -> None:
        self.congested = False
        paused, self.paused = self.paused, set()
        for conn in paused:
            conn.resume()

    def pause(self) -> None:
        if self.reading and self.transport is not None:
            self.reading = False
            self.service.pauses += 1
            self.transport.pause_reading()

    def resume(self) -> None:
        if not self.reading and self.transport is not None and not self.transport.is_closing():
            self.reading = True
            self.transport.resume_reading()


class MsrpService:
    def __init__(self, loop: asyncio.AbstractEventLoop, relay: MsrpRelay, *,
                 client_tls: ssl.SSLContext | None = None) -> None:  # fmt: skip
        self.loop = loop
        self.relay = relay
        self.client_tls = client_tls
        self.conns: dict[int, MsrpConn] = {}
        self._cids = itertools.count(1)
        self._timer: asyncio.TimerHandle | None = None
        self._armed = math.inf
        self.accepted = self.opened = self.connect_failures = self.internal_errors = 0
        self.sessions = self.pauses = 0
        self.bytes_out = 0  # octets written to MSRP connections (what the relay forwarded and answered)

    def protocol(self) -> MsrpConn:
        return MsrpConn(self)

    # ---- connections
    def made(self, conn: MsrpConn) -> None:
        conn.cid = next(self._cids)
        self.conns[conn.cid] = conn
        if conn.outbound is None:
            self.accepted += 1
            self._step(lambda now: self.relay.connected(conn.cid, None, now))
        else:
            self.opened += 1
            authority, token = conn.outbound
            self._step(lambda now: self.relay.connected(conn.cid, authority, now, token=token))

    def received(self, conn: MsrpConn, data: bytes) -> None:
        self._step(lambda now: self.relay.data(conn.cid, data, now), source=conn)

    def lost(self, conn: MsrpConn) -> None:
        if self.conns.pop(conn.cid, None) is not None:
            self._step(lambda now: self.relay.closed(conn.cid, now))

    def close_all(self) -> None:
        for conn in list(self.conns.values()):
            if conn.transport is not None:
                conn.transport.close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ---- the relay's output
    def _step(self, step: Callable[[float], Any], source: MsrpConn | None = None) -> None:
        try:
            step(time.time())  # the relay's clock is the wall clock (digest nonces carry it)
        except Exception as exc:  # a bug of ours: counted and logged, the worker goes on
            self.internal_errors += 1
            _internal(f"{type(exc).__name__}: {exc}", "msrp")
            log.debug("internal error", exc_info=True)
        self._after(source)

    def _after(self, source: MsrpConn | None = None) -> None:
        relay = self.relay
        # One write per connection for everything one read produced (a 256 KiB read of
        # 1 KiB chunks is some 200 forwarded chunks: one write() each cost a sixth of the
        # worker's time); each connection's octets keep their order.
        by_conn: dict[int, list[bytes]] = {}
        for cid, octets in relay.outgoing():
            parts = by_conn.get(cid)
            if parts is None:
                by_conn[cid] = [octets]
            else:
                parts.append(octets)
        for cid, parts in by_conn.items():
            conn = self.conns.get(cid)
            if conn is not None and conn.transport is not None:
                data = parts[0] if len(parts) == 1 else b"".join(parts)
                self.bytes_out += len(data)
                conn.transport.write(data)
                if conn.congested and source is not None and source is not conn:
                    conn.paused.add(source)  # the sender waits for this receiver to drain
                    source.pause()
        while (ev := relay.next_event()) is not None:
            if isinstance(ev, Connect):
                self.loop.create_task(self._open(ev))
            elif isinstance(ev, CloseConnection):
                conn = self.conns.get(ev.cid)
                if conn is not None and conn.transport is not None:
                    log.info("MSRP connection %d closed: %s", ev.cid, ev.reason)
                    conn.transport.close()
            elif isinstance(ev, SessionCreated):
                self.sessions += 1
        t = relay.get_timer()
        if t is not None and t < self._armed:
            if self._timer is not None:
                self._timer.cancel()
            self._armed = t
            self._timer = self.loop.call_later(max(0.0, t - time.time()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._armed = math.inf
        self._step(lambda now: self.relay.handle_timer(now))

    async def _open(self, ev: Connect) -> None:
        a = ev.authority
        tls = None
        if a.scheme == "msrps":
            tls = self.client_tls or ssl.create_default_context()
        try:
            await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: MsrpConn(self, (a, ev.token)), a.host, a.port, ssl=tls,
                    server_hostname=a.host if tls is not None else None,
                ),
                CONNECT_TIMEOUT,
            )  # fmt: skip
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            self.connect_failures += 1
            log.info("MSRP connection to %s:%d failed: %s", a.host, a.port, exc)
            self._step(lambda now: self.relay.connect_failed(ev.token, now))
