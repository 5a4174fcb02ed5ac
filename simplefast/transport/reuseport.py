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

The program: for each 32-bit word at offsets 0, 4, ... (while the datagram
is long enough) ``h = (h * FNV_PRIME) ^ word``; then ``h ^= h >> 16`` and
``return h % workers``. An index past the group's size (a worker being
replaced) makes the kernel fall back to its flow hash, so nothing is lost.
For UDP the kernel runs the program with offset 0 at the UDP payload.
"""

from __future__ import annotations

import ctypes
import socket
import struct

SO_ATTACH_REUSEPORT_CBPF = 51
HASH_BYTES = 512
_FNV_PRIME = 0x01000193

# classic BPF opcodes (linux/filter.h)
_LD, _LDX, _ST, _ALU, _JMP, _RET, _MISC = 0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x07
_W, _ABS, _MEM, _LEN, _IMM = 0x00, 0x20, 0x60, 0x80, 0x00
_MUL, _RSH, _MOD, _XOR = 0x20, 0x70, 0x90, 0xA0
_JA, _JGE = 0x00, 0x30
_K, _X, _A = 0x00, 0x08, 0x10
_TAX = 0x00


def payload_hash_program(workers: int, hash_bytes: int = HASH_BYTES) -> list[tuple[int, int, int, int]]:
    """The (code, jt, jf, k) instructions; see the module docstring."""
    if workers < 1:
        raise ValueError("workers must be >= 1")
    words = hash_bytes // 4
    per_word = 9
    prog: list[tuple[int, int, int, int]] = [
        (_LD | _W | _LEN, 0, 0, 0),  # A = payload length
        (_ST, 0, 0, 1),  # M[1] = length
        (_LD | _IMM, 0, 0, 0),
        (_ST, 0, 0, 0),  # M[0] = hash = 0
    ]
    for i in range(words):
        off = 4 * i
        to_done = (words - i - 1) * per_word + (per_word - 3)  # from after the JA to DONE
        prog += [
            (_LD | _MEM, 0, 0, 1),  # A = length
            (_JMP | _JGE | _K, 1, 0, off + 4),  # long enough: skip the JA
            (_JMP | _JA, 0, 0, to_done),
            (_LD | _MEM, 0, 0, 0),  # A = hash
            (_ALU | _MUL | _K, 0, 0, _FNV_PRIME),
            (_MISC | _TAX, 0, 0, 0),  # X = hash * prime
            (_LD | _W | _ABS, 0, 0, off),  # A = word
            (_ALU | _XOR | _X, 0, 0, 0),
            (_ST, 0, 0, 0),
        ]
    prog += [  # DONE
        (_LD | _MEM, 0, 0, 0),
        (_MISC | _TAX, 0, 0, 0),
        (_ALU | _RSH | _K, 0, 0, 16),
        (_ALU | _XOR | _X, 0, 0, 0),
        (_ALU | _MOD | _K, 0, 0, workers),
        (_RET | _A, 0, 0, 0),
    ]
    return prog


def payload_hash_reference(data: bytes, workers: int, hash_bytes: int = HASH_BYTES) -> int:
    """What the program computes, in Python (tests compare against the kernel's choice)."""
    h = 0
    for off in range(0, min(len(data), hash_bytes) - 3, 4):
        h = ((h * _FNV_PRIME) & 0xFFFFFFFF) ^ int.from_bytes(data[off : off + 4], "big")
    h ^= h >> 16
    return h % workers


def attach_payload_hash(sock: socket.socket, workers: int) -> None:
    """Attach the program to ``sock``'s reuseport group (call after bind)."""
    prog = payload_hash_program(workers)
    buf = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *ins) for ins in prog))
    fprog = struct.pack("@HP", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)


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
