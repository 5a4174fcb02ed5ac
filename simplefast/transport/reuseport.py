"""Spreading one peer's UDP datagrams over every worker (SO_REUSEPORT + classic BPF).

The kernel's default SO_REUSEPORT selection hashes the flow (addresses and
ports), so a single peer (one SIPp instance, one SBC in front of us) lands on
one worker. We attach a classic BPF program to the reuseport group that
picks the socket from a hash of the datagram's first ``HASH_BYTES`` octets
instead:

- a retransmission is the same octets, so it reaches the worker that holds
  its transaction (RFC 3261 section 17: retransmissions are byte-identical);
- different transactions differ in their Via branch, Call-ID, tags or CSeq,
  all near the start of the message, so they spread evenly.

What does not land with its transaction: the ACK of a non-2xx final
response and a CANCEL (same branch, different octets). Those need a
hand-off to the owning worker (see DESIGN notes in README "Where this
stands"); everything else is local.

The program: for each 32-bit word at offsets 0, 4, ... of the whole 32-octet
chunks of the first ``HASH_BYTES`` octets ``h = (h * FNV_PRIME) ^ word``; then
``h ^= h >> 16`` and ``return h % workers``. An index past the group's size (a worker being
replaced) makes the kernel fall back to its flow hash, so nothing is lost.
For UDP the kernel runs the program with offset 0 at the UDP payload.

Steering (``slots`` given): before the hash, the program looks for a worker
marker in the first ``SCAN_BYTES`` octets: ``~sfw`` and one character
``0-9a-z``, the worker's index in base 36 (``marker``). Every identifier a
worker mints for something it keeps state about carries its marker: the Via
branches of its client transactions (NOTIFYs, forwarded requests) and the
local tags of its subscription dialogs. So the 200 to a NOTIFY and a
SUBSCRIBE inside a dialog reach the worker that holds the transaction or the
subscription, even from a peer (SIPp, an SBC) that sends everything to the
shared port, instead of a worker that would hand them across. The first
marker wins; the index goes through ``slots`` (worker -> its socket's place
in the group, see ``SlotOrder``); a marker of a worker not in the group, or
none in the scanned octets, leaves the datagram to the hash. A marker is only
ever a shortcut: whichever worker a datagram reaches handles it correctly
(hand-offs), so a stray ``~sfw`` in someone else's octets costs a hand-off,
nothing more. The scan is unrolled (classic BPF has no loops): four
instructions per octet position, with a length check every 32 positions, so
a marker in the last 36 octets of a datagram is not seen.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import socket
import struct
from collections.abc import Iterator, Sequence

SO_ATTACH_REUSEPORT_CBPF = 51
HASH_BYTES = 512
SCAN_BYTES = 448  # a multiple of 32: the octets searched for a worker marker
MARKER = "~sfw"
_DIGITS36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_MAGIC = int.from_bytes(MARKER.encode("ascii"), "big")
_FNV_PRIME = 0x01000193

# classic BPF opcodes (linux/filter.h)
_LD, _LDX, _ST, _ALU, _JMP, _RET, _MISC = 0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x07
_W, _B, _ABS, _MEM, _LEN, _IMM = 0x00, 0x10, 0x20, 0x60, 0x80, 0x00
_SUB, _MUL, _RSH, _MOD, _XOR = 0x10, 0x20, 0x70, 0x90, 0xA0
_JA, _JEQ, _JGE = 0x00, 0x10, 0x30
_K, _X, _A = 0x00, 0x08, 0x10
_TAX = 0x00


def marker(index: int) -> str:
    """Worker ``index``'s marker for the identifiers it mints ("" past 35: those go by
    the hash, and hand-offs)."""
    if index < 0:
        raise ValueError("index must be >= 0")
    return f"{MARKER}{_DIGITS36[index]}" if index < len(_DIGITS36) else ""


def marked_index(text: str) -> int | None:
    """The worker index of the first marker in ``text`` (None: none)."""
    i = text.find(MARKER)
    if i < 0 or i + 4 >= len(text):
        return None
    c = text[i + 4]
    return _DIGITS36.index(c) if c in _DIGITS36 else None


def payload_hash_program(
    workers: int,
    hash_bytes: int = HASH_BYTES,
    slots: Sequence[int] | None = None,
    scan_bytes: int = SCAN_BYTES,
) -> list[tuple[int, int, int, int]]:
    """The (code, jt, jf, k) instructions; see the module docstring. ``slots[w]``: the
    group slot of worker w's socket (-1: not in the group); None: no steering."""
    if workers < 1:
        raise ValueError("workers must be >= 1")
    steer = _steer_program(slots, scan_bytes) if slots is not None else []
    return steer + _hash_program(workers, hash_bytes)


def _steer_program(slots: Sequence[int], scan_bytes: int) -> list[tuple[int, int, int, int]]:
    if scan_bytes % 32:
        raise ValueError("scan_bytes must be a multiple of 32")
    body: list[tuple[int, int, int, int] | tuple[str, str]] = [
        (_LD | _W | _LEN, 0, 0, 0),
        (_ST, 0, 0, 1),  # M[1] = length
    ]
    for base in range(0, scan_bytes, 32):
        body += [
            (_LD | _MEM, 0, 0, 1),
            (_JMP | _JGE | _K, 1, 0, base + 36),  # positions base..base+31 readable (ld, ldb +4)
            ("ja", "hash"),
        ]
        for i in range(base, base + 32):
            body += [
                (_LD | _W | _ABS, 0, 0, i),
                (_JMP | _JEQ | _K, 0, 2, _MAGIC),
                (_LD | _B | _ABS, 0, 0, i + 4),  # A = the index character
                ("ja", "found"),
            ]
    body += [("ja", "hash"), ("label", "found")]
    body += [  # "0"-"9" -> 0-9, "a"-"z" -> 10-35; ":"-"`" no marker; below "0": no worker below
        (_JMP | _JGE | _K, 0, 2, 0x61),
        (_ALU | _SUB | _K, 0, 0, 0x61 - 10),
        ("ja", "map"),
        (_JMP | _JGE | _K, 0, 1, 0x3A),
        ("ja", "hash"),
        (_ALU | _SUB | _K, 0, 0, 0x30),
        ("label", "map"),
    ]
    for w, slot in enumerate(slots[: len(_DIGITS36)]):
        if slot >= 0:
            body += [(_JMP | _JEQ | _K, 0, 1, w), (_RET | _K, 0, 0, slot)]
    body += [("label", "hash")]
    labels: dict[str, int] = {}
    n = 0
    for ins in body:
        if ins[0] == "label":
            labels[str(ins[1])] = n
        else:
            n += 1
    out: list[tuple[int, int, int, int]] = []
    for ins in body:
        if ins[0] == "label":
            continue
        if ins[0] == "ja":
            out.append((_JMP | _JA, 0, 0, labels[str(ins[1])] - len(out) - 1))
        else:
            out.append(ins)  # type: ignore[arg-type]
    return out


def _hash_program(workers: int, hash_bytes: int) -> list[tuple[int, int, int, int]]:
    if hash_bytes % 32:
        raise ValueError("hash_bytes must be a multiple of 32")
    chunks = hash_bytes // 32
    per_chunk = 5 + 8 * 4
    prog: list[tuple[int, int, int, int]] = [
        (_LD | _W | _LEN, 0, 0, 0),  # A = payload length
        (_ST, 0, 0, 1),  # M[1] = length
        (_LD | _IMM, 0, 0, 0),  # A = hash = 0
    ]
    for c in range(chunks):
        base = 32 * c
        to_done = (chunks - c - 1) * per_chunk + 8 * 4 + 1 + 1  # from after the JA to DONE
        prog += [
            (_ST, 0, 0, 0),  # M[0] = hash
            (_LD | _MEM, 0, 0, 1),  # A = length
            (_JMP | _JGE | _K, 1, 0, base + 32),  # the whole chunk is there: skip the JA
            (_JMP | _JA, 0, 0, to_done),
            (_LD | _MEM, 0, 0, 0),  # A = hash
        ]
        for off in range(base, base + 32, 4):
            prog += [
                (_ALU | _MUL | _K, 0, 0, _FNV_PRIME),
                (_MISC | _TAX, 0, 0, 0),  # X = hash * prime
                (_LD | _W | _ABS, 0, 0, off),  # A = word
                (_ALU | _XOR | _X, 0, 0, 0),  # A = hash
            ]
    prog += [
        (_ST, 0, 0, 0),
        (_LD | _MEM, 0, 0, 0),  # DONE: A = hash
        (_MISC | _TAX, 0, 0, 0),
        (_ALU | _RSH | _K, 0, 0, 16),
        (_ALU | _XOR | _X, 0, 0, 0),
        (_ALU | _MOD | _K, 0, 0, workers),
        (_RET | _A, 0, 0, 0),
    ]
    return prog


def payload_hash_reference(
    data: bytes,
    workers: int,
    hash_bytes: int = HASH_BYTES,
    slots: Sequence[int] | None = None,
    scan_bytes: int = SCAN_BYTES,
) -> int:
    """What the program computes, in Python (tests compare against the kernel's choice)."""
    if slots is not None:
        magic = MARKER.encode("ascii")
        for base in range(0, scan_bytes, 32):
            if len(data) < base + 36:
                break
            i = data.find(magic, base, base + 32 + 3)  # a start in base .. base + 31
            if i >= 0:
                c = data[i + 4]
                if 0x3A <= c < 0x61:
                    break  # not an index character
                w = c - (0x61 - 10) if c >= 0x61 else (c - 0x30) & 0xFFFFFFFF
                if w < len(_DIGITS36) and w < len(slots) and slots[w] >= 0:
                    return slots[w]
                break
    h = 0
    for off in range(0, min(len(data) // 32 * 32, hash_bytes), 4):
        h = ((h * _FNV_PRIME) & 0xFFFFFFFF) ^ int.from_bytes(data[off : off + 4], "big")
    h ^= h >> 16
    return h % workers


def attach_payload_hash(sock: socket.socket, workers: int, slots: Sequence[int] | None = None) -> int:
    """Attach the program to ``sock``'s reuseport group (call after bind); it replaces
    the group's program, whichever member attached that one. The kernel charges the
    program to the socket's option memory (``net.core.optmem_max``); where the full
    marker scan does not fit, a shorter one is tried, then none. Returns how many
    octets are scanned for a marker (0: hash only)."""
    scans = (SCAN_BYTES, 256, 128, 0) if slots is not None else (0,)
    for i, scan in enumerate(scans):
        prog = payload_hash_program(workers, slots=slots if scan else None, scan_bytes=scan)
        buf = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *ins) for ins in prog))
        fprog = struct.pack("@HP", len(prog), ctypes.addressof(buf))
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
        except OSError as exc:
            if exc.errno != errno.ENOMEM or i == len(scans) - 1:
                raise
            continue
        return scan
    return 0


def reuseport_udp_socket(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket bound with SO_REUSEPORT (one per worker)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def reuseport_tcp_socket(host: str, port: int, backlog: int = 4096) -> socket.socket:
    """A listening, non-blocking TCP socket bound with SO_REUSEPORT (one per worker).

    The kernel spreads new connections over the group by their address hash;
    each connection then stays with the worker that accepted it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class SlotOrder:
    """Which worker holds which slot of the UDP reuseport groups: a file in the run
    directory, edited under ``flock``.

    The kernel gives a socket the next slot of its group when it binds, and when
    a socket closes it moves the last slot's socket into the hole. So a worker
    binds its UDP listeners and appends its index with the file locked (the
    workers of a start bind one at a time), and the supervisor, when a worker
    has died, makes the same move in the file before it starts the replacement.
    The steering program (``attach_payload_hash(..., slots=...)``) is made from
    this order by each worker as it joins."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    @contextlib.contextmanager
    def edit(self) -> Iterator[list[int]]:
        """The order (worker indexes by slot), locked; written back when the block ends
        without an exception."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = b""
            while chunk := os.read(fd, 65536):
                raw += chunk
            order = [int(x) for x in raw.split()]
            yield order
            text = " ".join(map(str, order)).encode("ascii")
            os.pwrite(fd, text, 0)
            os.ftruncate(fd, len(text))
        finally:
            os.close(fd)  # and the lock with it

    def leave(self, index: int) -> None:
        """Worker ``index`` died (its sockets are closed): the kernel's move, here."""
        with self.edit() as order:
            if index in order:
                slot = order.index(index)
                order[slot] = order[-1]
                order.pop()


def slot_map(order: Sequence[int], workers: int) -> list[int]:
    """slots[w] = the group slot of worker w (-1: not in the group)."""
    slots = [-1] * workers
    for slot, w in enumerate(order):
        if 0 <= w < workers:
            slots[w] = slot
    return slots
