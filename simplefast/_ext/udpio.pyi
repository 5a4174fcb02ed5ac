"""Batched UDP receive and send for the workers' hot path.

This stub is the contract both twins implement: ``simplefast._ext.udpio``
(Cython: one ``recvmmsg(2)`` / ``sendmmsg(2)`` per 64 datagrams) and
``simplefast._ref.udpio`` (pure Python: one ``recvmsg`` / ``sendto`` per
datagram, the readable specification). Linux only.

Both functions take the **socket object**, not its fd: the reference needs
the object for its calls, and the compiled twin reads ``sock.fileno()`` once
per call, so the two share one signature at no measurable cost. ``sock`` is a
UDP socket of family ``AF_INET`` or ``AF_INET6`` (other sockets: results
unspecified), and should be non-blocking (``sock.setblocking(False)``, which
an event loop needs anyway): every call uses ``MSG_DONTWAIT`` and never
waits, but the reference would honour a socket *timeout* by waiting.

Addresses are ``(host, port)`` pairs with the host as numeric text, as
``inet_ntop`` writes it: ``"192.0.2.1"``, ``"2001:db8::1"`` (IPv6 without
brackets, flow label or scope id; an IPv4 peer of a dual-stack IPv6 socket
is ``"::ffff:192.0.2.1"``). Link-local IPv6 peers are not supported (their
scope is dropped).

Use with an event loop (asyncio or uvloop) on a plain socket that no
transport owns (not one from ``create_datagram_endpoint``): a reader callback
drains the queue in batches, the replies go out in one ``send_batch``, and
what ``EAGAIN`` leaves over waits for a writer callback; new replies queue
behind it, so the order is kept::

    sock.setblocking(False)
    fd = sock.fileno()
    backlog = []                                  # (data, (host, port)) not sent yet

    def on_readable():
        out = []
        for _ in range(8):                        # bounded, so timers run under load;
            batch = udpio.recv_batch(sock)        # readiness is level-triggered
            if not batch:                         # [] only when the queue is empty
                break
            out += engine_feed(batch)             # the replies to send
        flush(out)

    def flush(out=()):
        had = bool(backlog)
        backlog.extend(out)
        del backlog[: udpio.send_batch(sock, backlog)]
        if backlog and not had:
            loop.add_writer(fd, flush)
        elif had and not backlog:
            loop.remove_writer(fd)

    loop.add_reader(fd, on_readable)

Counters are per process and per twin, since import; they only grow.
"""

import socket
from collections.abc import Sequence

MAX_BATCH: int  # 1024: the largest max_msgs
MAX_BUFSIZE: int  # 65535: the largest bufsize (a UDP datagram never exceeds it)

def recv_batch(
    sock: socket.socket, max_msgs: int = 64, bufsize: int = 65535
) -> list[tuple[bytes, tuple[str, int]]]:
    """Take up to ``max_msgs`` datagrams from the socket's queue, without waiting.

    Datagrams come in arrival order as ``(data, (host, port))``; ``data`` is
    a fresh ``bytes`` copy. A datagram longer than ``bufsize`` arrives cut
    (``MSG_TRUNC``): it is dropped, counted by ``truncated()``, and does not
    count towards ``max_msgs``. So the list is shorter than ``max_msgs``
    only when the queue ran empty, and ``[]`` means nothing is queued.

    Args:
        sock: the UDP socket (see the module docstring).
        max_msgs: most datagrams to return, 1 .. ``MAX_BATCH``.
        bufsize: longest datagram kept, 1 .. ``MAX_BUFSIZE``; the compiled
            twin keeps one receive buffer of ``min(max_msgs, 64) * bufsize``
            bytes (4 MiB at most) between calls.

    Returns:
        The datagrams, ``[]`` when the queue is empty (``EAGAIN``).

    Raises:
        TypeError: ``max_msgs`` or ``bufsize`` is not an int.
        ValueError: ``max_msgs`` or ``bufsize`` out of range; a datagram from
            an address that is neither IPv4 nor IPv6 (not a UDP/IP socket).
        OSError: the kernel reported an error (``EBADF`` for a closed
            socket, ...), as Python's own subclass for its errno. If some
            datagrams were already taken by this call, they are returned and
            the error is raised by the next call on the same socket instead.
    """

def batch_timestamp() -> float:
    """When the kernel received the first datagram that the last ``recv_batch`` call read
    (returned or dropped as truncated), in seconds of ``time.time()``'s clock, from the
    socket's ``SO_TIMESTAMPNS`` ancillary data. The queue is FIFO, so this is the oldest
    datagram of the batch, and ``time.time() - batch_timestamp()`` is how long it waited
    in the kernel. 0.0 when that call read nothing or the socket does not have
    ``SO_TIMESTAMPNS`` (``setsockopt(SOL_SOCKET, 35, 1)``) on."""

def send_batch(
    sock: socket.socket, items: Sequence[tuple[bytes | bytearray | memoryview, tuple[str, int]]]
) -> int:
    """Send ``items`` in order, without waiting: one ``(data, (host, port))`` each.

    Caller bugs raise before anything is sent: every item must be a 2-tuple
    whose data is a C-contiguous bytes-like object (``bytes``, ``bytearray``,
    ``memoryview``, ...).

    Destinations are peer data, so a bad one never blocks the batch: an item
    whose destination is not a plain ``tuple`` ``(str, int)`` with the host
    an IPv4 or IPv6 literal (IPv6 when it holds a ``':'``; no names, no
    brackets, no ``%scope``) and the port in 1 .. 65535 is skipped and
    counted by ``invalid_destinations()``. An IPv4 destination on an IPv6
    socket is sent to its IPv4-mapped address (dual-stack sockets only).

    A datagram the kernel refuses (``EMSGSIZE``: longer than 65507 bytes over
    IPv4; ``ENETUNREACH``, ``EACCES``, ``EAFNOSUPPORT``: an IPv6 destination
    on an IPv4 socket, ...) is dropped and counted by ``send_errors()``, and
    sending goes on with the next item: UDP may lose a datagram anyway.

    ``EAGAIN`` (socket send buffer full) stops the batch. The result is the
    number of leading items dealt with (sent, skipped or dropped), so
    ``items[n:]`` is exactly what remains: keep it and call again when the
    socket is writable (``loop.add_writer``).

    Args:
        sock: the UDP socket (see the module docstring).
        items: a sequence (any iterable is turned into a list first).

    Returns:
        ``len(items)`` when everything was dealt with, less after ``EAGAIN``.

    Raises:
        OSError: an error about the socket itself (``EBADF``: closed;
            ``ENOTSOCK``), raised when the first datagram is tried; items
            skipped before it are counted.
        TypeError: an item is not a 2-tuple (``"items[3] must be a (data,
            (host, port)) tuple, not list"``), or its data not a bytes-like
            object (``"items[3][0] must be a bytes-like object, not str"``)
            or not contiguous (``"items[3][0] must be a C-contiguous buffer"``).
    """

def truncated() -> int:
    """Datagrams dropped by ``recv_batch`` because they were longer than ``bufsize``."""

def invalid_destinations() -> int:
    """Items skipped by ``send_batch`` because their destination was not valid."""

def send_errors() -> int:
    """Datagrams dropped by ``send_batch`` because the kernel refused them."""
