"""TCP and TLS: connections of one worker (RFC 3261 section 18.3, RFC 5626 section 4.4.1).

Theory of operation
-------------------
Every worker listens on each TCP/TLS address with its own SO_REUSEPORT
socket; the kernel gives each new connection to one worker, which keeps it.
A connection gets a server-wide id (``cid``, simplefast/sip/peer.py: the
worker's index in its high bits) and its messages reach the core with the
peer ``(host, port, kind, cid)``; a response goes back on the same
connection (section 18.2.2).

Framing is the codec's ``SipStreamParser`` (it parses as it frames). A
CRLFCRLF keep-alive is answered with CRLF (RFC 5626 section 4.4.1). When
framing is lost (a bad start line, a bad Content-Length, a header block over
the limit) the core answers 400 where the message's headers allow it and the
connection is closed: nothing after that point can be trusted.

Sending to ``(host, port, kind, cid)``: connection ``cid`` if it is open
here; if another worker owns it, the message is handed to that worker
(simplefast/transport/handoff.py); otherwise a connection of this worker to
host:port of that kind is reused (``by_addr``: inbound and outbound ones),
or one is opened (messages queue while it connects). When none can be
opened, a request's client transaction fails at once (503 upstream,
RFC 3261 section 16.9) through the driver's ``undeliverable``.

Limits: ``max_connections`` per worker (a new inbound connection past it is
reset), connections idle for ``idle_seconds`` are closed, a peer that does
not read (its write buffer past ``max_write_buffer``) is reset, and a TLS
handshake has ``handshake_seconds``.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from simplefast._impl import sipmsg as _codec
from simplefast.errors import SipParseError
from simplefast.logs import RateLimited, get_logger
from simplefast.sip.peer import CID_SHIFT, owner_of
from simplefast.transport.driver import CoreDriver

log = get_logger(__name__)
_connect_failed = RateLimited(log, "could not open a connection")
_reset = RateLimited(log, "connection reset")

_HEAD_KEEP = 16384  # octets of a message's start kept for the 400 when framing is lost


@dataclass(slots=True)
class StreamLimits:
    max_connections: int = 16384
    idle_seconds: float = 3600.0
    max_write_buffer: int = 4 << 20
    connect_seconds: float = 5.0
    handshake_seconds: float = 10.0


class StreamConn(asyncio.Protocol):
    def __init__(self, streams: Streams, kind: str, key: tuple[str, int, str] | None = None) -> None:
        self.streams = streams
        self.kind = kind
        self.key = key  # (host, port, kind) we dialled, for outbound connections
        self.parser = _codec.SipStreamParser()
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int, str, int] = ("", 0, kind, 0)
        self.cid = 0
        self.last = streams.loop.time()
        self._pings = 0
        self._head = b""  # the start of the message being framed (for the 400)
        self._open = 0  # octets of that message buffered in the parser

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        pn = transport.get_extra_info("peername")
        self.cid = self.streams.new_cid()
        self.peer = (str(pn[0]), int(pn[1]), self.kind, self.cid) if pn else ("", 0, self.kind, self.cid)
        if not self.streams.adopt(self):
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self.last = self.streams.loop.time()
        try:
            msgs = self.parser.feed(data)
        except SipParseError as exc:
            start = self._head + data if self._open else data
            self.streams.driver.stream_error(start[:_HEAD_KEEP], self.peer, exc)
            self.close()  # after the 400 (close() sends what is queued)
            return
        pings = self.parser.ping_count
        if pings != self._pings:
            self.write(b"\r\n" * (pings - self._pings))  # RFC 5626 section 4.4.1 pong
            self._pings = pings
        left = self.parser.buffered
        if not left:
            self._head = b""
        elif msgs or not self._open:  # a new message started inside this chunk
            self._head = data[len(data) - left :][:_HEAD_KEEP]
        elif len(self._head) < _HEAD_KEEP:
            self._head = (self._head + data)[:_HEAD_KEEP]
        self._open = left
        if msgs:
            self.streams.driver.messages(msgs, self.peer)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.streams.forget(self)
        self.transport = None

    def write(self, data: bytes) -> bool:
        t = self.transport
        if t is None or t.is_closing():
            return False
        t.write(data)
        if t.get_write_buffer_size() > self.streams.limits.max_write_buffer:
            _reset("the peer does not read (write buffer full)", self.peer)
            t.abort()
        return True

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Streams:
    """The TCP/TLS connections of one worker, and sending on them."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, index: int, *, limits: StreamLimits | None = None,
        client_tls: ssl.SSLContext | None = None,
    ) -> None:  # fmt: skip
        self.loop = loop
        self.index = index
        self.limits = limits or StreamLimits()
        self.client_tls = client_tls
        self.conns: dict[int, StreamConn] = {}
        self.by_addr: dict[tuple[str, int, str], StreamConn] = {}
        self._pending: dict[tuple[str, int, str], list[tuple[bytes, int]]] = {}
        self._seq = int.from_bytes(os.urandom(4), "big") << 4
        self.driver: CoreDriver = cast(CoreDriver, None)  # set by the worker before serving
        # set by the worker with several workers: (owner, data, peer, origin) -> delivered?
        self.hand_to: Callable[[int, bytes, tuple[Any, ...], int], bool] | None = None
        # set by the worker: tell worker ``origin`` that its request could not be sent
        self.report_failed: Callable[[int, bytes], object] | None = None
        self.opened = self.accepted = self.refused = self.connect_failures = 0
        self._sweeper: asyncio.TimerHandle | None = None

    def new_cid(self) -> int:
        self._seq += 1
        return (self.index << CID_SHIFT) | (self._seq & ((1 << CID_SHIFT) - 1))

    def adopt(self, conn: StreamConn) -> bool:
        if conn.key is None:
            if len(self.conns) >= self.limits.max_connections:
                self.refused += 1
                _reset(f"connection limit {self.limits.max_connections} reached", conn.peer)
                return False
            self.accepted += 1
        else:
            self.opened += 1
            self.by_addr[conn.key] = conn
        self.conns[conn.cid] = conn
        self.by_addr.setdefault((conn.peer[0], conn.peer[1], conn.kind), conn)
        return True

    def forget(self, conn: StreamConn) -> None:
        if self.conns.get(conn.cid) is conn:
            del self.conns[conn.cid]
        for key in (conn.key, (conn.peer[0], conn.peer[1], conn.kind)):
            if key is not None and self.by_addr.get(key) is conn:
                del self.by_addr[key]

    # ---- sending
    def send(self, data: bytes, peer: tuple[Any, ...], origin: int | None = None) -> None:
        """Send on ``peer`` = (host, port, kind, cid); see the module docstring."""
        host, port, kind, cid = peer
        if origin is None:
            origin = self.index
        if cid:
            conn = self.conns.get(cid)
            if conn is not None:
                if conn.write(data):
                    return
            elif owner_of(cid) != self.index and self.hand_to is not None:
                if self.hand_to(owner_of(cid), data, peer, origin):
                    return
        self.send_to(data, host, port, kind, origin)

    def send_to(self, data: bytes, host: str, port: int, kind: str, origin: int) -> None:
        key = (host, port, kind)
        conn = self.by_addr.get(key)
        if conn is not None and conn.write(data):
            return
        if not host or not port:
            self._failed(data, origin)
            return
        queue = self._pending.get(key)
        if queue is not None:
            queue.append((data, origin))
            return
        self._pending[key] = [(data, origin)]
        self.loop.create_task(self._connect(key))

    async def _connect(self, key: tuple[str, int, str]) -> None:
        host, port, kind = key
        conn: StreamConn | None = None
        try:
            if kind == "tls" and self.client_tls is None:
                raise OSError("no TLS client context")
            tls = self.client_tls if kind == "tls" else None
            _, proto = await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: StreamConn(self, kind, key),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls is not None else None,
                ),  # fmt: skip
                self.limits.connect_seconds,
            )
            conn = proto
        except (OSError, TimeoutError, ssl.SSLError, ValueError) as exc:
            self.connect_failures += 1
            _connect_failed(f"{kind}:{host}:{port}: {exc or type(exc).__name__}", "-")
        for data, origin in self._pending.pop(key, []):
            if conn is None or not conn.write(data):
                self._failed(data, origin)

    def _failed(self, data: bytes, origin: int) -> None:
        if origin == self.index or self.report_failed is None:
            self.loop.call_soon(self.driver.undeliverable, data)
        else:
            self.report_failed(origin, data)

    # ---- housekeeping
    def start(self) -> None:
        self._sweeper = self.loop.call_later(min(30.0, self.limits.idle_seconds / 4), self._sweep)

    def _sweep(self) -> None:
        horizon = self.loop.time() - self.limits.idle_seconds
        for conn in [c for c in self.conns.values() if c.last < horizon]:
            conn.close()
        self.start()

    def close_all(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.conns.values()):
            conn.close()


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """TLS for our listeners: TLS 1.2 or later, the configured certificate chain."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def client_context(ca: str | None, verify: bool = True) -> ssl.SSLContext:
    """TLS for connections we open: the server certificate is checked against ``ca``
    (a PEM file) or the system's trust store, and against the host we dialled."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
