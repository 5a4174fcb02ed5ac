"""The two udpio twins against each other, on generated traffic over loopback.

The same batch goes through each twin in turn, over the same sockets (so the
peer addresses are the same): ``send_batch`` from one socket to two receivers
with valid and invalid destinations mixed in, then ``recv_batch`` drains each
receiver with the same ``max_msgs`` and ``bufsize``. The whole results must
match: the count returned, every (data, (host, port)), the batch sizes, and
the growth of the three counters. Both are also checked against a model of
what should arrive (a valid destination, not longer than ``bufsize``).
Errors for bad items must match by type and message.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simplefast.testing import load_impl

REF = load_impl("ref").udpio
EXT = load_impl("ext").udpio
V4 = "127.0.0.1"

Addr = tuple[str, int]


class Rig:
    """One sender and two receivers on 127.0.0.1, shared by every example."""

    def __init__(self) -> None:
        self.socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
        for s in self.socks:
            s.bind((V4, 0))
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        self.tx, self.r1, self.r2 = self.socks
        self.src: Addr = self.tx.getsockname()
        self.dst: list[Addr] = [self.r1.getsockname(), self.r2.getsockname()]

    def close(self) -> None:
        for s in self.socks:
            s.close()


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    r = Rig()
    try:
        yield r
    finally:
        r.close()


INVALID: list[Any] = [
    ("localhost", 5060),
    ("127.1", 5060),
    ("::1%lo", 5060),
    ("127.0.0.1", 0),
    ("127.0.0.1", 70000),
    ("127.0.0.1", "5060"),
    ("127.0.0.1",),
    None,
]

# a destination: 0 or 1 = a receiver, or an invalid one
destinations = st.one_of(st.integers(0, 1), st.sampled_from(INVALID))
payloads = st.one_of(
    st.binary(max_size=80),
    # up to 1500 bytes: 150 of them fit the smallest receive buffer (rmem_max 212992)
    st.integers(0, 1500).map(lambda n: bytes(range(256)) * (n // 256) + bytes(range(n % 256))),
)
# short batches, and long ones that fill several receive batches
traffic = st.one_of(
    st.lists(st.tuples(payloads, destinations), max_size=10),
    st.lists(st.tuples(payloads, destinations), min_size=60, max_size=150),
)


def _counters(mod: ModuleType) -> tuple[int, int, int]:
    return (mod.truncated(), mod.invalid_destinations(), mod.send_errors())


def _drain(mod: ModuleType, sock: socket.socket, expected: int, max_msgs: int, bufsize: int) -> list[Any]:
    """Batches until ``expected`` datagrams (whether kept or cut) have been
    taken, then the final [] (waiting out a delivery the kernel deferred)."""
    batches: list[Any] = []
    start = mod.truncated()
    deadline = time.monotonic() + 10
    waited = False
    while True:
        taken = sum(len(b) for b in batches) + mod.truncated() - start
        if taken >= expected:
            break
        if waited:  # [] although some are missing: wait for a deferred delivery
            assert time.monotonic() < deadline, f"{taken} of {expected} datagrams arrived"
            select.select([sock], [], [], 0.5)
        batch = mod.recv_batch(sock, max_msgs, bufsize)
        if batch:
            batches.append(batch)
        waited = not batch
    assert mod.recv_batch(sock, max_msgs, bufsize) == []
    return batches


def _run(mod: ModuleType, rig: Rig, traffic: list[Any], max_msgs: int, bufsize: int) -> Any:
    items = [(data, rig.dst[d] if isinstance(d, int) else d) for data, d in traffic]
    before = _counters(mod)
    sent = mod.send_batch(rig.tx, items)
    per = [sum(1 for _, d in traffic if d == k) for k in (0, 1)]
    received = [_drain(mod, r, per[k], max_msgs, bufsize) for k, r in enumerate((rig.r1, rig.r2))]
    after = _counters(mod)
    return sent, received, tuple(a - b for a, b in zip(after, before, strict=True))


@settings(max_examples=60)
@given(
    traffic=traffic,
    max_msgs=st.sampled_from([1, 3, 64, 100]),
    bufsize=st.sampled_from([1, 64, 1500, 65535]),
)
def test_same_traffic_same_results(rig: Rig, traffic: list[Any], max_msgs: int, bufsize: int) -> None:
    want = _run(REF, rig, traffic, max_msgs, bufsize)
    got = _run(EXT, rig, traffic, max_msgs, bufsize)
    assert got == want
    sent, received, counters = got
    assert sent == len(traffic)
    for k in (0, 1):
        flat = [x for b in received[k] for x in b]
        assert flat == [(data, rig.src) for data, d in traffic if d == k and len(data) <= bufsize]
        assert all(1 <= len(b) <= max_msgs for b in received[k])
        assert all(len(b) == max_msgs for b in received[k][:-1])  # all queued: only the last is short
    cut = sum(1 for data, d in traffic if isinstance(d, int) and len(data) > bufsize)
    assert counters == (cut, sum(1 for _, d in traffic if not isinstance(d, int)), 0)


bad_items = st.sampled_from(
    [
        [b"x", (V4, 9)],
        (b"x",),
        ("text", (V4, 9)),
        (None, (V4, 9)),
        (1, (V4, 9)),
        (memoryview(b"abcdefgh")[::3], (V4, 9)),
        "item",
    ]
)


@settings(max_examples=40)
@given(before=st.integers(0, 70), bad=bad_items, after=st.integers(0, 3))
def test_same_errors_for_bad_items(rig: Rig, before: int, bad: Any, after: int) -> None:
    dst = rig.dst[0]
    items = [(b"ok", dst)] * before + [bad] + [(b"ok", dst)] * after
    errors = []
    for mod in (REF, EXT):
        start = _counters(mod)
        with pytest.raises(TypeError) as info:
            mod.send_batch(rig.tx, items)
        assert _counters(mod) == start
        errors.append(str(info.value))
    assert errors[0] == errors[1]
    assert errors[0].startswith(f"items[{before}]")
    assert REF.recv_batch(rig.r1) == []  # nothing was sent


@settings(max_examples=40)
@given(
    max_msgs=st.one_of(st.integers(-2, 1030), st.sampled_from([1.5, "8", None, True, 1 << 70])),
    bufsize=st.one_of(st.integers(-2, 70000), st.sampled_from([2.0, b"1", False, -(1 << 70)])),
)
def test_same_errors_for_recv_arguments(rig: Rig, max_msgs: Any, bufsize: Any) -> None:
    outcomes = []
    for mod in (REF, EXT):
        try:
            outcomes.append(("ok", mod.recv_batch(rig.r1, max_msgs, bufsize)))
        except (TypeError, ValueError) as exc:
            outcomes.append((type(exc).__name__, str(exc)))
    assert outcomes[0] == outcomes[1]
