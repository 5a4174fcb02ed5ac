"""Batched UDP receive and send, pure-Python reference twin of ``simplefast._ext.udpio``.

This module is the readable specification; the contract (arguments, results,
errors, counters) is documented in ``simplefast/_ext/udpio.pyi``. The compiled
twin does the same with one ``recvmmsg(2)`` / ``sendmmsg(2)`` per 64
datagrams; this one makes one ``recvmsg`` / ``sendto`` call per datagram.
Both take the socket object (not its fd) so that they share one signature:
the compiled twin calls ``sock.fileno()`` once per batch.

Theory of operation
-------------------
``recv_batch``: take datagrams from the socket's queue with ``MSG_DONTWAIT``
until ``max_msgs`` have been kept or the queue is empty (``EAGAIN``). A
datagram longer than ``bufsize`` arrives cut (``MSG_TRUNC`` in the message
flags); it is dropped, counted by ``truncated()``, and does not count
towards ``max_msgs``, so ``[]`` always means "nothing left to read". Peer
addresses become ``(host, port)``: the host is the numeric text
(``inet_ntop``), IPv6 without brackets, flow label or scope. Another error
with nothing kept raises ``OSError``; after something was kept, the batch is
returned and the error is raised by the next call on the same socket (the
kernel does the same for an error met in the middle of a ``recvmmsg``).
The first datagram of each call is read with room for ancillary data: on a
socket with ``SO_TIMESTAMPNS`` on, its kernel receive time is kept for
``batch_timestamp()`` (the oldest of the batch: the queue is FIFO), which a
caller compares with the clock to know how long the batch waited.

``send_batch``: walk the items in order. Caller bugs (an item that is not a
``(data, destination)`` pair, data that is not a contiguous bytes-like
object) raise ``TypeError`` before anything is sent. Destinations are peer
data: one that is not ``(IP literal, port 1..65535)`` is skipped and counted
by ``invalid_destinations()``, so one bad peer never blocks a batch. A
datagram the kernel refuses (``EMSGSIZE``, ``ENETUNREACH``, an IPv6
destination on an IPv4 socket, ...) is dropped and counted by
``send_errors()``; an error about the socket itself (``EBADF``, ``ENOTSOCK``)
is raised. ``EAGAIN`` stops the batch: the result is the number of
items dealt with (sent, skipped or dropped), so ``items[n:]`` is exactly what
the caller still has to send once the socket is writable.
"""

from __future__ import annotations

import errno
import socket
import struct
import typing

if typing.TYPE_CHECKING:
    from collections.abc import Sequence

    _Item = tuple[bytes | bytearray | memoryview, tuple[str, int]]

MAX_BATCH = 1024
MAX_BUFSIZE = 65535

_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_DONTWAIT = socket.MSG_DONTWAIT
_TRUNC = socket.MSG_TRUNC
# SO_TIMESTAMPNS (Linux): the kernel's receive time of each datagram, as ancillary data of the
# same number (a struct timespec); the socket module names neither
_SCM_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@ll")
_ANCBUF = socket.CMSG_SPACE(_TIMESPEC.size)
_batch_ts = 0.0  # batch_timestamp()
# errors about the socket itself (closed, not a socket): raised, never counted
_SOCKET_ERRORS = (errno.EBADF, errno.ENOTSOCK)

_counters = {"truncated": 0, "invalid": 0, "send_errors": 0}
# fd -> the error met after a batch had already kept datagrams (raised next call)
_pending: dict[int, OSError] = {}


def batch_timestamp() -> float:
    """When the kernel received the first datagram the last ``recv_batch`` read; see the stub."""
    return _batch_ts


def truncated() -> int:
    """Datagrams dropped by ``recv_batch`` because they were longer than ``bufsize``."""
    return _counters["truncated"]


def invalid_destinations() -> int:
    """Items skipped by ``send_batch`` because their destination was not valid."""
    return _counters["invalid"]


def send_errors() -> int:
    """Datagrams dropped by ``send_batch`` because the kernel refused them."""
    return _counters["send_errors"]


def _check_range(name: str, value: object, hi: int) -> int:
    if type(value) is not int:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not 1 <= value <= hi:
        raise ValueError(f"{name} must be between 1 and {hi}, got {value}")
    return value


def recv_batch(
    sock: socket.socket, max_msgs: int = 64, bufsize: int = MAX_BUFSIZE
) -> list[tuple[bytes, tuple[str, int]]]:
    """Up to ``max_msgs`` queued datagrams as ``(data, (host, port))``; see the stub."""
    _check_range("max_msgs", max_msgs, MAX_BATCH)
    _check_range("bufsize", bufsize, MAX_BUFSIZE)
    global _batch_ts
    fd = sock.fileno()
    _batch_ts = 0.0
    if _pending:
        exc = _pending.pop(fd, None)
        if exc is not None:
            raise exc
    out: list[tuple[bytes, tuple[str, int]]] = []
    first = True
    while len(out) < max_msgs:
        try:
            data, anc, flags, addr = sock.recvmsg(bufsize, _ANCBUF if first else 0, _DONTWAIT)
        except BlockingIOError:
            break
        except OSError as exc:
            if not out:
                raise
            _pending[fd] = exc
            break
        if first:
            first = False
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == _SCM_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                    sec, nsec = _TIMESPEC.unpack_from(value)
                    _batch_ts = sec + nsec * 1e-9
                    break
        if flags & _TRUNC:
            _counters["truncated"] += 1
            continue
        if type(addr) is not tuple:
            raise ValueError("recv_batch needs an AF_INET or AF_INET6 socket")
        host = addr[0]
        if "%" in host:  # getnameinfo appends the scope of a link-local address
            host = host[: host.index("%")]
        out.append((data, (host, addr[1])))
    return out


def _destination_family(dest: object) -> int:
    """AF_INET or AF_INET6 for a valid ``(host, port)``, 0 for an invalid one."""
    if type(dest) is not tuple or len(dest) != 2:
        return 0
    host, port = dest
    if type(host) is not str or type(port) is not int or not 1 <= port <= 65535:
        return 0
    family = _AF_INET6 if ":" in host else _AF_INET
    try:
        socket.inet_pton(family, host)
    except (OSError, ValueError):  # ValueError: an embedded NUL
        return 0
    return family


def _check_items(items: Sequence[_Item]) -> None:
    for i, item in enumerate(items):
        if not isinstance(item, tuple) or len(item) != 2:
            raise TypeError(f"items[{i}] must be a (data, (host, port)) tuple, not {type(item).__name__}")
        data = item[0]
        try:
            view = memoryview(data)
        except TypeError:
            raise TypeError(f"items[{i}][0] must be a bytes-like object, not {type(data).__name__}") from None
        contiguous = view.c_contiguous
        view.release()
        if not contiguous:
            raise TypeError(f"items[{i}][0] must be a C-contiguous buffer")


def send_batch(sock: socket.socket, items: Sequence[_Item]) -> int:
    """Send every item without blocking; the number of items dealt with. See the stub."""
    if type(items) is not list and type(items) is not tuple:
        items = list(items)
    _check_items(items)
    sock_family = sock.family
    for i, (data, dest) in enumerate(items):
        family = _destination_family(dest)
        if not family:
            _counters["invalid"] += 1
            continue
        host, port = dest
        if family == _AF_INET6 and sock_family == _AF_INET:
            _counters["send_errors"] += 1  # the kernel says EAFNOSUPPORT
            continue
        if family == _AF_INET and sock_family == _AF_INET6:
            host = "::ffff:" + host  # what the kernel does with an AF_INET address
        try:
            sock.sendto(data, _DONTWAIT, (host, port))
        except BlockingIOError:
            return i
        except OSError as exc:
            if exc.errno in _SOCKET_ERRORS:
                raise
            _counters["send_errors"] += 1
    return len(items)
