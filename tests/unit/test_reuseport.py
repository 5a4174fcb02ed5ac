"""The reuseport cBPF program on the real kernel: the socket it picks is the one the
Python reference predicts, with and without worker markers (steering), and the
slot bookkeeping (``SlotOrder``) follows what the kernel does when a socket closes."""

from __future__ import annotations

import os
import random
import socket
import time
from pathlib import Path

import pytest

from simplefast.proxy.core import branch_owner, branch_prefix
from simplefast.transport.reuseport import (
    SCAN_BYTES,
    SlotOrder,
    attach_payload_hash,
    marked_index,
    marker,
    payload_hash_program,
    payload_hash_reference,
    reuseport_udp_socket,
    slot_map,
)


def _group(n: int) -> tuple[list[socket.socket], int]:
    """n sockets of one reuseport group on 127.0.0.1, bound in order (slot i = socket i)."""
    first = reuseport_udp_socket("127.0.0.1", 0)
    port = first.getsockname()[1]
    socks = [first] + [reuseport_udp_socket("127.0.0.1", port) for _ in range(n - 1)]
    return socks, port


def _landed(socks: list[socket.socket], port: int, payloads: list[bytes]) -> list[int]:
    """Which socket each payload reached (sent one at a time)."""
    out: list[int] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for p in payloads:
            tx.sendto(p, ("127.0.0.1", port))
            deadline = time.monotonic() + 2.0
            got = None
            while got is None and time.monotonic() < deadline:
                for i, s in enumerate(socks):
                    try:
                        data = s.recv(65535)
                    except BlockingIOError:
                        continue
                    assert data == p
                    got = i
                    break
            assert got is not None, "datagram not received"
            out.append(got)
    return out


def _message(rng: random.Random, mark: str | None, at: int) -> bytes:
    """A SIP-looking datagram with ``mark`` (or none) ``at`` octets in."""
    head = (
        f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-{rng.getrandbits(40):x}\r\n"
        f"Call-ID: {rng.getrandbits(64):x}\r\nCSeq: {rng.randint(1, 999)} NOTIFY\r\n"
    ).encode()
    pad = (head * 8)[:at]
    tail = f";tag={mark}{rng.getrandbits(20):x}\r\n" if mark is not None else "\r\n"
    return pad + tail.encode() + b"Content-Length: 0\r\n\r\n" + b"x" * rng.randint(0, 200)


def test_markers_and_owners() -> None:
    assert marker(0) == "~sfw0" and marker(10) == "~sfwa" and marker(35) == "~sfwz" and marker(36) == ""
    assert marked_index("z9hG4bKab12~sfwb.n3") == 11 and marked_index("abc") is None
    assert marked_index("x~sfw") is None and marked_index("x~sfw!") is None and marked_index("~sfwA1") is None
    for i in (0, 1, 9, 10, 35, 36, 200):
        p = branch_prefix(i)
        assert branch_owner(f"z9hG4bK{p}") == i and branch_owner(f"z9hG4bK{p}.n1f") == i
        assert ("~sfw" in p) == (i < 36)
    assert branch_owner("z9hG4bK-1234-1-0") is None


@pytest.mark.parametrize("slots", [None, [0, 1, 2], [2, 0, 1]])
def test_the_kernel_picks_what_the_reference_predicts(slots: list[int] | None) -> None:
    rng = random.Random(7)
    socks, port = _group(3)
    try:
        attach_payload_hash(socks[0], 3, slots)
        payloads = []
        for _ in range(60):  # no marker: the hash
            payloads.append(_message(rng, None, rng.randint(0, 700)))
        for w in range(3):  # a marker early, late in the scan, past it
            for at in (0, 17, 300, SCAN_BYTES - 40, SCAN_BYTES + 50):
                payloads.append(_message(rng, marker(w), at))
        payloads.append(_message(rng, marker(5), 40))  # a worker not in the group
        payloads.append(_message(rng, "~sfw!", 40))  # not an index
        payloads.append(_message(rng, "~sfw:", 40))  # between "9" and "a": not an index either
        payloads.append(_message(rng, "~sfwA", 40))
        payloads.append(b"~sfw1" + b"y" * 40)  # at offset 0
        payloads.append(b"~sfw1")  # too short to be scanned
        got = _landed(socks, port, payloads)
        want = [payload_hash_reference(p, 3, slots=slots) for p in payloads]
        assert got == want
        if slots is not None:  # steering did steer: every early marker went to its worker
            for p, g in zip(payloads, got, strict=True):
                i = p.find(b"~sfw")
                scanned = 0 <= i < SCAN_BYTES and len(p) >= i // 32 * 32 + 36
                if scanned and p[i + 4 : i + 5] in (b"0", b"1", b"2"):
                    assert g == slots[int(p[i + 4 : i + 5])]
        assert len(set(got[:60])) == 3  # the hash still spreads the rest
    finally:
        for s in socks:
            s.close()


def test_a_closed_socket_s_slot_goes_to_the_last_one(tmp_path: Path) -> None:
    """What SlotOrder.leave assumes of the kernel: closing slot 0 of [a, b, c] makes it [c, b]."""
    order = SlotOrder(tmp_path / "slots")
    socks, port = _group(3)
    with order.edit() as o:
        o.extend([0, 1, 2])  # worker w holds socks[w]
    try:
        socks[0].close()
        order.leave(0)
        with order.edit() as o:
            assert o == [2, 1]
        live = {1: socks[1], 2: socks[2]}
        attach_payload_hash(socks[1], 3, slot_map([2, 1], 3))
        rng = random.Random(3)
        payloads = [_message(rng, marker(w), 30) for w in (1, 2, 2, 1)]
        got = _landed([live[2], live[1]], port, payloads)  # in slot order now
        assert got == [1, 0, 0, 1]  # worker 1 in slot 1, worker 2 moved to slot 0
        # the replacement of worker 0 binds last: slot 2
        socks[0] = reuseport_udp_socket("127.0.0.1", port)
        with order.edit() as o:
            o.append(0)
            assert slot_map(o, 3) == [2, 1, 0]
        attach_payload_hash(socks[0], 3, slot_map([2, 1, 0], 3))
        got = _landed([live[2], live[1], socks[0]], port, [_message(rng, marker(w), 30) for w in (0, 1, 2)])
        assert got == [2, 1, 0]
    finally:
        for s in socks:
            if s.fileno() >= 0:
                s.close()


def test_slot_order_file(tmp_path: Path) -> None:
    order = SlotOrder(tmp_path / "slots")
    with order.edit() as o:
        assert o == []
        o += [1, 0, 3, 2]
    order.leave(0)  # slot 1: the last (2) moves there
    order.leave(7)  # not there: nothing
    with order.edit() as o:
        assert o == [1, 2, 3]
    order.leave(3)  # the last one: just gone
    with pytest.raises(RuntimeError), order.edit() as o:
        o.append(9)
        raise RuntimeError("not written back")
    with order.edit() as o:
        assert o == [1, 2]
    assert slot_map([1, 2], 4) == [-1, 0, 1, -1]
    assert oct(os.stat(tmp_path / "slots").st_mode & 0o777) == "0o600"


def test_the_program_fits_classic_bpf() -> None:
    assert len(payload_hash_program(36, slots=list(range(36)))) <= 4096
    assert len(payload_hash_program(2)) < len(payload_hash_program(2, slots=[0, 1]))
