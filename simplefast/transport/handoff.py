"""Passing a datagram to the next worker (Unix datagram sockets in a ring).

The cBPF program sends a retransmission to the worker holding its transaction,
but the ACK of a non-2xx response and a CANCEL carry other octets than their
INVITE and may reach another worker. A worker that finds no INVITE transaction
for one of them passes the datagram, with the sender's address, to the next
worker; after ``workers - 1`` hops the last one handles it as unmatched (ACK
forwarded statelessly, CANCEL answered 481). The owner answers from its own
listener socket, which shares the listen address, so the client sees the same
source. Each worker binds ``\\0simplefast-<supervisor pid>-<index>`` (abstract
namespace: nothing on disk, gone with the process).

Frame: ``b"<hops> <host> <port>\\n" + datagram``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any, cast

from simplefast.logs import get_logger

log = get_logger(__name__)


def address(supervisor: int, index: int) -> str:
    return f"\0simplefast-{supervisor}-{index}"


class HandoffRing(asyncio.DatagramProtocol):
    def __init__(
        self, sock: socket.socket, supervisor: int, index: int, workers: int,
        deliver: Callable[[bytes, Any, int], None],
    ) -> None:  # fmt: skip
        self.sock = sock  # sends go straight to the socket (uvloop's sendto takes no abstract names)
        self.next = address(supervisor, (index + 1) % workers)
        self.deliver = deliver
        self.transport: asyncio.DatagramTransport | None = None
        self.lost = 0  # the next worker was not there (being replaced)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def send(self, data: bytes, peer: Any, hops: int) -> None:
        head = f"{hops} {peer[0]} {peer[1]}\n".encode()
        try:
            self.sock.sendto(head + data, self.next)
        except OSError:  # the next worker is being replaced, or its queue is full
            self.lost += 1

    def datagram_received(self, data: bytes, addr: Any) -> None:
        head, nl, body = data.partition(b"\n")
        try:
            hops_text, host, port_text = head.decode().split(" ")
            hops, port = int(hops_text), int(port_text)
        except ValueError:
            return  # not one of ours
        if nl:
            self.deliver(body, (host, port), hops)

    def error_received(self, exc: Exception) -> None:
        self.lost += 1


def bind(supervisor: int, index: int) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address(supervisor, index))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setblocking(False)
    return sock
