"""UDP sockets of a worker (batched receive and send); the overload monitor.

No parsing or policy here (STYLE.md section 1): simplefast/transport/driver.py
feeds the core, sends what it produced and keeps its one timer.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time

from simplefast._impl import udpio as _udpio
from simplefast.logs import get_logger
from simplefast.proxy.core import SipCore
from simplefast.transport.driver import CoreDriver

log = get_logger(__name__)


SO_MEMINFO = 55  # linux/sock_diag.h: SK_MEMINFO_RMEM_ALLOC is the first u32
SO_TIMESTAMPNS = 35  # the receive time of each datagram as ancillary data (udpio.batch_timestamp)


class OverloadMonitor:
    """Watches the listener's receive queue (bytes waiting in the kernel, read
    with SO_MEMINFO every ``interval``) and sets how much new work the core
    sheds (``core.shed_fraction``). A queue that grows is the one sign of
    falling behind that costs nothing per packet; loop lag does not show it
    (the loop drains a bounded batch per iteration).

    Shedding starts once the queue has stayed above ``high`` bytes for
    ``sustain`` readings (a backlog, not a burst) at ``step``; each further
    reading above ``high`` adds ``step``, a reading below ``low`` halves it
    (to nothing under ``step``), in between it holds. The worker thus keeps
    taking as many new requests as it can serve and answers only the excess
    with 503: shedding every new request until the queue empties (the first
    version) threw away more goodput than the backlog cost."""

    def __init__(
        self, core: SipCore, loop: asyncio.AbstractEventLoop, sock: socket.socket,
        *, high: int = 512 << 10, low: int = 64 << 10, interval: float = 0.005, sustain: int = 4,
        step: float = 0.1,
    ) -> None:  # fmt: skip
        self.core, self.loop, self.sock = core, loop, sock
        self.high, self.low, self.interval, self.sustain = high, min(low, high), interval, sustain
        self.step = step
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
        f = core.shed_fraction
        self._above = self._above + 1 if q > self.high else 0
        if q > self.high:
            if f > 0.0:
                core.shed_fraction = min(1.0, f + self.step)
            elif self._above >= self.sustain:
                core.shed_fraction = self.step
                self.episodes += 1
        elif q < self.low and f > 0.0:
            f *= 0.5
            core.shed_fraction = f if f >= self.step else 0.0
        self._handle = self.loop.call_later(self.interval, self._tick)


class UdpPort:
    """One UDP socket of the worker, read and written in batches (recvmmsg/sendmmsg
    through simplefast._impl.udpio) straight from the loop's reader callback.

    ``tag`` says how its peers are named (simplefast/sip/peer.py): listener 0
    gives ``(host, port)``, listener ``n`` ``(host, port, n)``, the client
    socket ``(host, port, "c")``. A readable socket is drained in batches of
    64, at most ``_MAX_BATCHES`` per wake-up so timers and other sockets get
    their turn (the reader fires again while data waits); the core's answers
    to a whole batch leave in one ``send_batch``. What the kernel does not take
    (EAGAIN) waits in ``backlog`` behind a writer callback, in order."""

    _MAX_BATCHES = 8

    def __init__(self, sock: socket.socket, driver: CoreDriver, tag: int | str,
                 loop: asyncio.AbstractEventLoop) -> None:  # fmt: skip
        self.sock = sock
        self.driver = driver
        self.tag = tag
        self.loop = loop
        self.pending: list[tuple[bytes, tuple[str, int]]] = []  # answers of the batch being handled
        self.backlog: list[tuple[bytes, tuple[str, int]]] = []  # what the kernel refused for now
        self.received = self.recv_errors = 0
        self._fd = sock.fileno()
        self.delay_limit = 0.0  # set_delay_limit
        self.late_batches = 0  # batches whose first datagram waited past delay_limit

    def set_delay_limit(self, seconds: float) -> None:
        """Shed by queueing delay (``[server] overload_delay_ms``): a batch whose first
        datagram waited in the kernel longer than ``seconds`` (its ``SO_TIMESTAMPNS``
        receive time against the clock) is handled with every new request answered 503,
        statelessly; the decision holds for that batch only. The queue is FIFO, so the
        first datagram is the batch's oldest. 0 turns it off."""
        self.delay_limit = seconds
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1 if seconds else 0)

    def start(self) -> None:
        self.loop.add_reader(self._fd, self._readable)

    def close(self) -> None:
        self.loop.remove_reader(self._fd)
        if self.backlog:
            self.loop.remove_writer(self._fd)
        self.sock.close()

    def _readable(self) -> None:
        recv = _udpio.recv_batch
        driver = self.driver
        tag = self.tag
        for _ in range(self._MAX_BATCHES):
            try:
                batch = recv(self.sock, 64)
            except OSError:  # an ICMP error reported on the socket: nothing to do (timers)
                self.recv_errors += 1
                continue
            if not batch:
                break
            self.received += len(batch)
            late = False
            if self.delay_limit:
                ts = _udpio.batch_timestamp()
                late = ts > 0.0 and time.time() - ts > self.delay_limit
            if late:  # this batch only: what comes next (a stream, a hand-off) is judged afresh
                self.late_batches += 1
                driver.core.shed_fraction = 1.0
            try:
                driver.datagrams(batch, tag)
            finally:
                if late:
                    driver.core.shed_fraction = 0.0

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        """Queue one datagram; ``flush`` (the driver calls it after each batch) sends."""
        if not self.pending:
            self.driver.dirty.append(self)
        self.pending.append((data, addr))

    def flush(self) -> None:
        out, self.pending = self.pending, []
        if self.backlog:
            self.backlog += out
            return
        sent = _udpio.send_batch(self.sock, out)
        if sent < len(out):
            self.backlog = out[sent:]
            self.loop.add_writer(self._fd, self._writable)

    def _writable(self) -> None:
        sent = _udpio.send_batch(self.sock, self.backlog)
        del self.backlog[:sent]
        if not self.backlog:
            self.loop.remove_writer(self._fd)
