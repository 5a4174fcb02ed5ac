"""Messages between workers: one Unix datagram socket per worker.

Each worker binds ``<rundir>/w<index>``, ``rundir`` being a directory the
supervisor makes with mode 0700 before it forks (and removes at exit): only
our own user can write to these sockets. (An abstract-namespace name, the
first version, is writable by any local process: it could have injected
messages with a forged source address.) A worker reaches every other one by
its index. Seven kinds of frame, each ``b"<K> <fields>\\n" + message``:

``A hops host port li``
    The ring for ACK and CANCEL. The cBPF program sends a retransmission to
    the worker holding its transaction, but the ACK of a non-2xx response and
    a CANCEL carry other octets than their INVITE and may reach another
    worker. A worker that finds no INVITE transaction for one of them passes
    the datagram, with the sender's address and the listener it came on, to
    the next worker; after ``workers - 1`` hops the last one handles it as
    unmatched (ACK forwarded statelessly, CANCEL answered 481). The owner
    answers from its own listener socket, which shares the listen address.
``S host port kind cid origin``
    "Send this on your connection ``cid``": a worker forwards a request to a
    contact that registered over a TCP/TLS connection another worker
    accepted (simplefast/sip/peer.py: the owner's index is in the cid).
``R host port tag cid``
    "A response for you": its top Via branch carries the receiver's prefix
    (it holds the client transaction). It came on one of the sender's
    connections, or on a UDP listener: a peer that sends its responses to
    our listen address rather than to the Via (SIPp does) reaches whichever
    worker the cBPF program picks. ``tag`` and ``cid`` as for ``D``.
``F``
    "Your request could not be delivered" (the connection was gone and no
    other could be opened): the origin fails the client transaction at once
    instead of waiting for Timer F.
``D host port tag cid``
    "A request in one of your dialogs": a SUBSCRIBE whose To tag names a
    subscription the receiver owns (the shared subscription table says
    which worker). ``tag`` is the listener number for UDP (``-`` for the
    first), ``c`` for the client socket, or the transport of a connection
    (``cid`` then names it; ``-`` otherwise). The owner answers it as if it
    had received it, from its own socket of that listener or through the
    connection's owner.
``P``
    "This presentity changed" (the message is its AOR, UTF-8): sent after a
    PUBLISH or an expiry changed the state to the other workers that hold
    subscriptions to it (a shared table of marks says which), so that each
    NOTIFYs its own watchers.
``E``
    "A watcher came or went" (the message is an encoded
    ``simplefast.presence.winfo.WatcherEvent``): sent to the workers that
    hold watcher-information subscriptions of its resource.

Datagrams keep message boundaries and are atomic; the socket buffers are
raised so that a message up to the codec's limits fits one datagram (a
larger one is lost and counted). Each worker sends on sockets connected to
the others (``_Out``) and parks datagrams while a receiver's queue is full.

Batching: the frames a worker makes for another during one turn of its loop
leave together, when the loop gets to the ``flush`` it scheduled: one frame as
it is, several as an ``M`` datagram (``M\n`` then each frame preceded by its
length, 4 bytes big-endian; at most about 60 kB, then a new one). The
receiver runs an ``M`` datagram's frames between ``on_batch(True)`` and
``on_batch(False)``, so its driver sends the answers of all of them at once.
In a fan-out through SIPp, which answers NOTIFYs to our listen address rather
than to the Via, half the 200s cross workers: one syscall and one loop
callback each before.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from simplefast.logs import get_logger

log = get_logger(__name__)

Peer = tuple[Any, ...]


_QUEUE_MAX = 65536  # datagrams waiting for one slow worker; past it they are lost (and counted)
_BATCH_BYTES = 60_000  # an M datagram is sent once its frames reach this size


def address(rundir: str, index: int) -> str:
    return os.path.join(rundir, f"w{index}")


class _Out:
    """A socket connected to one other worker, and the frames waiting for it.

    Connected, because then the kernel reports it writable only when the
    receiver's queue has room (``net.unix.max_dgram_qlen`` datagrams, 10 by
    default, is easily filled by a burst): a full queue parks frames here
    until the receiver reads, instead of losing them."""

    __slots__ = ("sock", "queue")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.queue: deque[bytes] = deque()


class Handoff(asyncio.DatagramProtocol):
    def __init__(
        self, sock: socket.socket, rundir: str, index: int, workers: int, *,
        on_ring: Callable[[bytes, Peer, int], None],
        on_response: Callable[[bytes, Peer], None],
        on_send: Callable[[bytes, Peer, int], None],
        on_failed: Callable[[bytes], None],
        on_dialog: Callable[[bytes, Peer], None] | None = None,
        on_changed: Callable[[str], None] | None = None,
        on_watcher: Callable[[bytes], None] | None = None,
        on_batch: Callable[[bool], None] | None = None,
    ) -> None:  # fmt: skip
        self.sock = sock  # the bound socket others send to (receiving goes through the transport)
        self.rundir = rundir
        self.index = index
        self.workers = workers
        self.on_ring, self.on_response = on_ring, on_response
        self.on_send, self.on_failed = on_send, on_failed
        self.on_dialog, self.on_changed, self.on_watcher = on_dialog, on_changed, on_watcher
        self.on_batch = on_batch  # (True) before the frames of an M datagram, (False) after
        self.transport: asyncio.DatagramTransport | None = None
        self._out: dict[int, _Out] = {}
        self._pending: dict[int, list[bytes]] = {}  # frames of this loop iteration, by worker
        self._sizes: dict[int, int] = {}
        self._flush_soon = False
        self.lost = 0  # frames whose worker was not there (being replaced), or its queue was full
        self.bad = 0  # frames that were not ours
        self.batches = 0  # M datagrams sent

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def _send(self, index: int, head: str, data: bytes) -> bool:
        """Queue one frame for worker ``index``; False when that worker is not there. The
        frames of one loop iteration leave together (``flush``)."""
        if index not in self._out and self._connect(index) is None:
            self.lost += 1
            return False
        frame = head.encode() + b"\n" + data
        pending = self._pending.get(index)
        if pending is None:
            pending = self._pending[index] = []
            self._sizes[index] = 0
            if not self._flush_soon:
                self._flush_soon = True
                asyncio.get_running_loop().call_soon(self.flush)
        pending.append(frame)
        self._sizes[index] += len(frame) + 4
        if self._sizes[index] >= _BATCH_BYTES:
            self._emit(index)
        return True

    def flush(self) -> None:
        """Send what was queued: one datagram per worker (an ``M`` batch when several)."""
        self._flush_soon = False
        for index in list(self._pending):
            self._emit(index)

    def _emit(self, index: int) -> None:
        frames = self._pending.pop(index, None)
        self._sizes.pop(index, None)
        if not frames:
            return
        if len(frames) == 1:
            data = frames[0]
        else:
            data = b"M\n" + b"".join(len(f).to_bytes(4, "big") + f for f in frames)
            self.batches += 1
        if not self._deliver(index, data):
            self.lost += len(frames)

    def _deliver(self, index: int, data: bytes) -> bool:
        for _ in range(2):  # a second try on a fresh socket when the worker was replaced
            out = self._out.get(index) or self._connect(index)
            if out is None:
                break
            if out.queue:
                if len(out.queue) >= _QUEUE_MAX:
                    break
                out.queue.append(data)
                return True
            try:
                out.sock.send(data)
                return True
            except BlockingIOError:  # its queue is full: wait until it reads
                out.queue.append(data)
                asyncio.get_running_loop().add_writer(out.sock, self._flush, index)
                return True
            except OSError:
                self._drop(index)
        return False

    def _connect(self, index: int) -> _Out | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.connect(address(self.rundir, index))
        except OSError:  # not there (yet, or being replaced)
            sock.close()
            return None
        _buffers(sock)
        sock.setblocking(False)
        out = self._out[index] = _Out(sock)
        return out

    def _drop(self, index: int) -> None:
        out = self._out.pop(index, None)
        if out is not None:
            if out.queue:
                asyncio.get_running_loop().remove_writer(out.sock)
                self.lost += len(out.queue)
            out.sock.close()

    def _flush(self, index: int) -> None:
        out = self._out.get(index)
        if out is None:
            return
        while out.queue:
            try:
                out.sock.send(out.queue[0])
            except BlockingIOError:
                return
            except OSError:
                self._drop(index)
                return
            out.queue.popleft()
        asyncio.get_running_loop().remove_writer(out.sock)

    def close(self) -> None:
        for index in list(self._out):
            self._drop(index)

    # ---- sending
    def ring(self, data: bytes, peer: Peer, hops: int) -> None:
        li = peer[2] if len(peer) == 3 and type(peer[2]) is int else 0
        self._send((self.index + 1) % self.workers, f"A {hops} {peer[0]} {peer[1]} {li}", data)

    def send_on(self, index: int, data: bytes, peer: Peer, origin: int) -> bool:
        return self._send(index, f"S {peer[0] or '-'} {peer[1]} {peer[2]} {peer[3]} {origin}", data)

    def response(self, index: int, data: bytes, peer: Peer) -> bool:
        return self._send(index, f"R {_peer_fields(peer)}", data)

    def failed(self, index: int, data: bytes) -> bool:
        return self._send(index, "F", data)

    def dialog(self, index: int, data: bytes, peer: Peer) -> bool:
        return self._send(index, f"D {_peer_fields(peer)}", data)

    def changed(self, resource: str, targets: list[int] | None = None) -> None:
        """``P`` to ``targets`` (worker indexes; None: every other worker)."""
        data = resource.encode("utf-8", "surrogateescape")
        for index in range(self.workers) if targets is None else targets:
            if index != self.index:
                self._send(index, "P", data)

    def watcher(self, index: int, data: bytes) -> bool:
        return self._send(index, "E", data)

    # ---- receiving
    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not data.startswith(b"M\n"):
            self._frame(data)
            return
        if self.on_batch is not None:
            self.on_batch(True)
        try:
            pos, end = 2, len(data)
            while pos + 4 <= end:
                n = int.from_bytes(data[pos : pos + 4], "big")
                pos += 4
                if pos + n > end:
                    self.bad += 1
                    break
                self._frame(data[pos : pos + n])
                pos += n
        finally:
            if self.on_batch is not None:
                self.on_batch(False)

    def _frame(self, data: bytes) -> None:
        head, nl, body = data.partition(b"\n")
        if not nl:
            self.bad += 1
            return
        f = head.decode("ascii", "replace").split(" ")
        try:
            if f[0] == "A" and len(f) == 5:
                li = int(f[4])
                peer: Peer = (f[2], int(f[3])) if li == 0 else (f[2], int(f[3]), li)
                self.on_ring(body, peer, int(f[1]))
            elif f[0] == "S" and len(f) == 6:
                host = "" if f[1] == "-" else f[1]
                self.on_send(body, (host, int(f[2]), f[3], int(f[4])), int(f[5]))
            elif f[0] == "R" and len(f) == 5:
                self.on_response(body, _parse_peer(f))
            elif f[0] == "F":
                self.on_failed(body)
            elif f[0] == "D" and len(f) == 5 and self.on_dialog is not None:
                self.on_dialog(body, _parse_peer(f))
            elif f[0] == "E" and self.on_watcher is not None:
                self.on_watcher(body)
            elif f[0] == "P" and self.on_changed is not None:
                self.on_changed(body.decode("utf-8", "surrogateescape"))
            else:
                self.bad += 1
        except ValueError:
            self.bad += 1

    def error_received(self, exc: Exception) -> None:
        self.lost += 1


def _peer_fields(peer: Peer) -> str:
    """``host port third cid`` of any peer tuple (simplefast/sip/peer.py), ``-`` for what
    it lacks: (host, port), (host, port, li or "c"), (host, port, kind, cid)."""
    third = "-" if len(peer) == 2 else str(peer[2])
    cid = str(peer[3]) if len(peer) == 4 else "-"
    return f"{peer[0] or '-'} {peer[1]} {third} {cid}"


def _parse_peer(f: list[str]) -> Peer:
    """The peer of a frame's fields ``[kind, host, port, third, cid]`` (``_peer_fields``)."""
    host = "" if f[1] == "-" else f[1]
    port = int(f[2])
    if f[4] != "-":
        return (host, port, f[3], int(f[4]))
    if f[3] == "-":
        return (host, port)
    return (host, port, f[3] if f[3] == "c" else int(f[3]))


def bind(rundir: str, index: int) -> socket.socket:
    path = address(rundir, index)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # left by the worker this one replaces
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    _buffers(sock)
    sock.setblocking(False)
    return sock


def _buffers(sock: socket.socket) -> None:
    for opt, force, size in (
        (socket.SO_RCVBUF, 33, 8 << 20),  # SO_RCVBUFFORCE: past rmem_max when we may
        (socket.SO_SNDBUF, 32, 2 << 20),  # SO_SNDBUFFORCE: a datagram can be this large
    ):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, opt, size)
