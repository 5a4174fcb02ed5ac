"""UDP listener: datagrams into the SIP core, its output onto the socket, one timer.

No parsing or policy here (STYLE.md section 1): ``datagram_received`` feeds
the core, sends what it produced and re-arms a single ``loop.call_at`` for
the core's earliest deadline (re-armed only when that deadline moves
earlier, so a busy listener does not touch the timer per packet).
"""

from __future__ import annotations

import asyncio
import math
import socket
import struct
from typing import Any, cast

from simplefast.logs import RateLimited, get_logger
from simplefast.proxy.core import SipCore

log = get_logger(__name__)
_internal_error = RateLimited(log, "internal error while handling a message (please report it)")


class UdpSockets:
    """The worker's two UDP transports: the shared listener (SO_REUSEPORT group)
    and its own client socket, from which forwarded requests leave so that
    their responses come back to this worker. Destinations ``("c", host, port)``
    go out of the client socket, plain ``(host, port)`` out of the listener."""

    __slots__ = ("server", "client")

    def __init__(self) -> None:
        self.server: asyncio.DatagramTransport | None = None
        self.client: asyncio.DatagramTransport | None = None

    def send(self, data: bytes, peer: Any) -> None:
        if len(peer) == 3 and peer[0] == "c":
            if self.client is not None:
                self.client.sendto(data, (peer[1], peer[2]))
        elif self.server is not None:
            self.server.sendto(data, peer)


SO_MEMINFO = 55  # linux/sock_diag.h: SK_MEMINFO_RMEM_ALLOC is the first u32


class OverloadMonitor:
    """Watches the listener's receive queue (bytes waiting in the kernel, read
    with SO_MEMINFO every ``interval``) and sets ``core.overloaded`` once it has
    stayed above ``high`` bytes for ``sustain`` readings, until it falls below
    ``low``. A queue that grows
    is the one sign of falling behind that costs nothing per packet; loop lag
    does not show it (libuv drains a bounded batch per iteration)."""

    def __init__(
        self, core: SipCore, loop: asyncio.AbstractEventLoop, sock: socket.socket,
        *, high: int = 512 << 10, low: int = 64 << 10, interval: float = 0.005, sustain: int = 4,
    ) -> None:  # fmt: skip
        self.core, self.loop, self.sock = core, loop, sock
        self.high, self.low, self.interval, self.sustain = high, min(low, high), interval, sustain
        self.episodes = 0
        self._above = 0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._handle = self.loop.call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()

    def queued(self) -> int:
        info = self.sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 36)
        return int(struct.unpack_from("=I", info)[0])

    def _tick(self) -> None:
        try:
            q = self.queued()
        except OSError:
            return  # socket closed
        core = self.core
        self._above = self._above + 1 if q > self.high else 0
        if not core.overloaded and self._above >= self.sustain:  # a backlog, not a burst
            core.overloaded = True
            self.episodes += 1
        elif core.overloaded and q < self.low:
            core.overloaded = False
        self._handle = self.loop.call_later(self.interval, self._tick)


class UdpListener(asyncio.DatagramProtocol):
    """One protocol per socket (listener or client); both feed the same core."""

    def __init__(
        self, core: SipCore, loop: asyncio.AbstractEventLoop, sockets: UdpSockets, *, client: bool = False
    ) -> None:
        self.core = core
        self.loop = loop
        self.sockets = sockets
        self.is_client = client
        self.transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._armed = math.inf
        self.internal_errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDPTransport has DatagramTransport's interface without subclassing it
        self.transport = cast(asyncio.DatagramTransport, transport)
        if self.is_client:
            self.sockets.client = self.transport
        else:
            self.sockets.server = self.transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        core = self.core
        try:
            core.on_message(data, addr, reliable=False, now=self.loop.time())
        except Exception as exc:  # a bug of ours: logged and counted, the worker goes on
            self.internal_errors += 1
            _internal_error(f"{type(exc).__name__}: {exc}", addr)
            log.debug("internal error on a datagram", exc_info=True)
        self._flush()
        t = core.get_timer()
        if t is not None and t < self._armed:
            self._arm(t)

    def deliver(self, data: bytes, peer: Any, hops: int) -> None:
        """A datagram handed over by another worker (transport/handoff.py), as if received here."""
        core = self.core
        try:
            core.on_message(data, peer, reliable=False, now=self.loop.time(), hops=hops)
        except Exception as exc:
            self.internal_errors += 1
            _internal_error(f"{type(exc).__name__}: {exc}", peer)
        self._flush()
        t = core.get_timer()
        if t is not None and t < self._armed:
            self._arm(t)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors on a connected-less socket: nothing to do per RFC 3261 (timers handle it)
        pass

    def _flush(self) -> None:
        send = self.sockets.send
        for data, peer in self.core.outgoing():
            send(data, peer)

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
            self.internal_errors += 1
            _internal_error(f"{type(exc).__name__} in a timer: {exc}", "-")
        self._flush()
        t = self.core.get_timer()
        if t is not None:
            self._arm(t)
