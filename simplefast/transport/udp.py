"""UDP sockets of a worker: datagrams into the core's driver; the overload monitor.

No parsing or policy here (STYLE.md section 1): simplefast/transport/driver.py
feeds the core, sends what it produced and keeps its one timer.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from typing import Any, cast

from simplefast.logs import get_logger
from simplefast.proxy.core import SipCore
from simplefast.transport.driver import CoreDriver

log = get_logger(__name__)


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
    """One protocol per UDP socket (a listener or the client socket); all feed the
    worker's one core through its driver. ``index`` is the listener's number in
    the peer tuple (simplefast/sip/peer.py): 0 gives ``(host, port)``, others
    ``(host, port, index)``, the client socket ``(host, port, "c")``."""

    def __init__(
        self, driver: CoreDriver, index: int | str = 0,
        ready: Callable[[asyncio.DatagramTransport], None] | None = None,
    ) -> None:  # fmt: skip
        self.driver = driver
        self.index = index
        self.ready = ready
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDPTransport has DatagramTransport's interface without subclassing it
        self.transport = cast(asyncio.DatagramTransport, transport)
        if self.ready is not None:
            # the dispatcher learns the transport now: the loop may deliver a datagram (and
            # the core answer it) before create_datagram_endpoint returns to the worker
            self.ready(self.transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.index != 0 or len(addr) != 2:  # IPv6 addresses come with flowinfo and scope
            addr = (addr[0], addr[1]) if self.index == 0 else (addr[0], addr[1], self.index)
        self.driver.datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors on an unconnected socket: nothing to do per RFC 3261 (timers handle it)
        pass
