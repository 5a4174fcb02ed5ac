"""MSRP connections of the chat focus (asyncio): octets to ``ChatFocus``, its output to sockets.

Theory of operation: ``ChatService`` owns this worker's focus listener (the
port named in the focus's ``a=path`` URIs, ``[chat] msrp_port + index``) and
every MSRP connection of the focus, accepted there or opened for the
focus's ``Connect`` (an offer with ``a=setup:passive``, RFC 6135). What a
connection reads goes to ``focus.data``; then the driver's ``focus_step``
sends the SIP the focus owes (BYEs, conference NOTIFYs), and the driver's
``after`` calls ``flush``, which writes ``focus.take_writes()`` and acts on
``focus.take_actions()``. No protocol decision is made here.

Back-pressure: a connection's write buffer has a high-water mark
(``WRITE_HIGH``); past it the focus stops moving that participant's octets
out of its room (``focus.congested``), so the room's ``max_queued`` bounds
what one slow participant holds and deliveries to it are skipped, counted
as failed deliveries; ``resume_writing`` lets them go again.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from typing import Any

from simplefast.logs import RateLimited, get_logger
from simplefast.msrp.focus import ChatFocus, Close, Connect

log = get_logger(__name__)
_internal = RateLimited(log, "chat focus internal error")
CONNECT_TIMEOUT = 10.0
WRITE_HIGH = 256 << 10
WRITE_LOW = 64 << 10


class ChatConn(asyncio.Protocol):
    def __init__(self, service: ChatService, token: int | None = None) -> None:
        self.service = service
        self.token = token
        self.cid = 0
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        svc = self.service
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)  # type: ignore[attr-defined]
        self.cid = next(svc.cids)
        svc.conns[self.cid] = self
        svc.step(lambda now: svc.focus.connected(self.cid, now, self.token))

    def data_received(self, data: bytes) -> None:
        svc = self.service
        svc.step(lambda now: svc.focus.data(self.cid, data, now))

    def connection_lost(self, exc: Exception | None) -> None:
        svc = self.service
        if svc.conns.pop(self.cid, None) is not None:
            svc.step(lambda now: svc.focus.closed(self.cid, str(exc) if exc else "connection closed", now))

    def pause_writing(self) -> None:
        self.service.focus.congested.add(self.cid)

    def resume_writing(self) -> None:
        svc = self.service
        svc.step(lambda now: svc.focus.resume(self.cid))


class ChatService:
    def __init__(self, loop: asyncio.AbstractEventLoop, focus: ChatFocus, driver: Any,
                 *, client_tls: ssl.SSLContext | None = None) -> None:  # fmt: skip
        self.loop = loop
        self.focus = focus
        self.driver = driver
        self.client_tls = client_tls
        self.cids = itertools.count(1)
        self.conns: dict[int, ChatConn] = {}
        self.internal_errors = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """With a relay configured: connect to it (the focus asks, ``Connect``)."""
        self.step(self.focus.start)

    def protocol(self) -> ChatConn:
        return ChatConn(self)

    def step(self, fn: Any) -> None:
        """One focus entry point, then the SIP it owes and its MSRP output."""
        try:
            fn(self.loop.time())
        except Exception as exc:  # a bug of ours: counted, the worker goes on
            self.internal_errors += 1
            _internal(f"{type(exc).__name__}: {exc}", "chat")
            log.debug("chat focus internal error", exc_info=True)
        self.driver.focus_step()  # its after() calls flush

    def flush(self) -> None:
        focus = self.focus
        for cid, data in focus.take_writes().items():
            conn = self.conns.get(cid)
            if conn is not None and conn.transport is not None and not conn.transport.is_closing():
                conn.transport.write(data)
        for act in focus.take_actions():
            if isinstance(act, Close):
                conn = self.conns.get(act.cid)
                if conn is not None and conn.transport is not None:
                    conn.transport.close()  # after what is buffered
            elif isinstance(act, Connect):
                task = self.loop.create_task(self._connect(act))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _connect(self, act: Connect) -> None:
        tls = self.client_tls if act.tls else None
        try:
            await asyncio.wait_for(
                self.loop.create_connection(lambda: ChatConn(self, act.token), act.host, act.port, ssl=tls),
                CONNECT_TIMEOUT,
            )
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            why = f"{type(exc).__name__}: {exc}"
            self.step(lambda now: self.focus.connect_failed(act.token, why, now))

    def close(self) -> None:
        for conn in list(self.conns.values()):
            if conn.transport is not None:
                conn.transport.close()
        for task in self._tasks:
            task.cancel()
