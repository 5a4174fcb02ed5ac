"""Batched UDP I/O over loopback: ext (recvmmsg/sendmmsg) beside ref and a
plain ``socket.sendto`` / ``socket.recvfrom`` loop, the per-datagram cost the
workers pay today.

Traffic: 64 datagrams of the PUBLISH in bench/data (380 bytes) between two
non-blocking sockets on 127.0.0.1, one sender and one receiver. Groups:

* ``udpio round-64``: one round sends the 64 and receives them (what a
  loaded worker does per wake-up, replies included);
* ``udpio send-64`` / ``udpio recv-64``: one side alone (pedantic mode, the
  other side done in the untimed setup).

``extra_info["impl"]`` is ``ext``, ``ref`` or ``plain``; ``datagrams`` is 64.
Loopback delivery happens inside the send call (the receiver's kernel work
is counted on the sender's side). Nothing here asserts on time.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from benchdata import load

N = 64
ROUNDS = 400


class Pair:
    def __init__(self) -> None:
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for s in (self.tx, self.rx):
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
        self.dst = self.rx.getsockname()
        self.items = [(load("publish"), self.dst)] * N

    def fill(self) -> None:
        for data, dst in self.items:
            self.tx.sendto(data, dst)

    def empty(self) -> None:
        try:
            while True:
                self.rx.recvfrom(65535)
        except BlockingIOError:
            pass

    def close(self) -> None:
        self.tx.close()
        self.rx.close()


@pytest.fixture
def pair() -> Iterator[Pair]:
    p = Pair()
    try:
        yield p
    finally:
        p.close()


def _tag(benchmark: Any, kind: str, impl: str) -> None:
    benchmark.group = f"udpio {kind}-{N}"
    benchmark.extra_info["impl"] = impl
    benchmark.extra_info["datagrams"] = N


# ---------------------------------------------------------------- one side each way


def batched(impl: SimpleNamespace, p: Pair) -> tuple[Callable[[], int], Callable[[], int]]:
    udpio, tx, rx, items = impl.udpio, p.tx, p.rx, p.items

    def send() -> int:
        return int(udpio.send_batch(tx, items))

    def recv() -> int:
        return len(udpio.recv_batch(rx, N))

    return send, recv


def plain(p: Pair) -> tuple[Callable[[], int], Callable[[], int]]:
    tx, rx, items = p.tx, p.rx, p.items
    sendto, recvfrom = tx.sendto, rx.recvfrom

    def send() -> int:
        for data, dst in items:
            sendto(data, dst)
        return N

    def recv() -> int:
        got = []
        try:
            while len(got) < N:
                got.append(recvfrom(65535))
        except BlockingIOError:
            pass
        return len(got)

    return send, recv


def _round(send: Callable[[], int], recv: Callable[[], int]) -> Callable[[], int]:
    def one_round() -> int:
        send()
        return recv()

    return one_round


def test_round(benchmark: Any, impl: SimpleNamespace, pair: Pair) -> None:
    _tag(benchmark, "round", impl.name)
    assert benchmark(_round(*batched(impl, pair))) == N


def test_round_plain(benchmark: Any, pair: Pair) -> None:
    _tag(benchmark, "round", "plain")
    assert benchmark(_round(*plain(pair))) == N


def test_send(benchmark: Any, impl: SimpleNamespace, pair: Pair) -> None:
    _tag(benchmark, "send", impl.name)
    send, _ = batched(impl, pair)
    assert benchmark.pedantic(send, setup=pair.empty, rounds=ROUNDS) == N


def test_send_plain(benchmark: Any, pair: Pair) -> None:
    _tag(benchmark, "send", "plain")
    send, _ = plain(pair)
    assert benchmark.pedantic(send, setup=pair.empty, rounds=ROUNDS) == N


def test_recv(benchmark: Any, impl: SimpleNamespace, pair: Pair) -> None:
    _tag(benchmark, "recv", impl.name)
    _, recv = batched(impl, pair)
    assert benchmark.pedantic(recv, setup=pair.fill, rounds=ROUNDS) == N


def test_recv_plain(benchmark: Any, pair: Pair) -> None:
    _tag(benchmark, "recv", "plain")
    _, recv = plain(pair)
    assert benchmark.pedantic(recv, setup=pair.fill, rounds=ROUNDS) == N
