"""Contract tests of batched UDP I/O (simplefast/_ext/udpio.pyi), run against
both twins through the ``impl`` fixture, over real loopback sockets (IPv4
127.0.0.1 and IPv6 ::1). Every socket is closed by the ``net`` fixture."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from simplefast.transport.udp import SO_TIMESTAMPNS

V4, V6 = "127.0.0.1", "::1"
Addr = tuple[str, int]
Batch = list[tuple[bytes, Addr]]


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind((V6, 0))
    except OSError:
        return False
    return True


FAMILIES = [
    pytest.param(V4, id="ipv4"),
    pytest.param(V6, id="ipv6", marks=pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback")),
]


class Net:
    """Makes non-blocking sockets and closes them all at teardown."""

    def __init__(self) -> None:
        self.socks: list[socket.socket] = []

    def add(self, s: socket.socket) -> socket.socket:
        self.socks.append(s)
        return s

    def udp(self, host: str = V4, *, v6only: bool | None = None) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = self.add(socket.socket(family, socket.SOCK_DGRAM))
        if v6only is not None:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
        s.bind((host, 0))
        s.setblocking(False)
        return s

    def close(self) -> None:
        for s in self.socks:
            s.close()


@pytest.fixture
def net() -> Iterator[Net]:
    n = Net()
    try:
        yield n
    finally:
        n.close()


def addr(s: socket.socket) -> Addr:
    name = s.getsockname()
    return (name[0], name[1])


def settle(sock: socket.socket) -> None:
    """Wait until ``sock`` is readable, then a little more: loopback delivery
    is done inside sendto unless the kernel defers it to ksoftirqd."""
    assert select.select([sock], [], [], 5.0)[0], "nothing arrived"
    time.sleep(0.01)


def drain(impl: SimpleNamespace, sock: socket.socket, **kw: int) -> list[Batch]:
    """recv_batch until it returns []."""
    batches: list[Batch] = []
    while batch := impl.udpio.recv_batch(sock, **kw):
        batches.append(batch)
    return batches


def counting(impl: SimpleNamespace) -> Callable[[], tuple[int, int, int]]:
    """A function giving the counters' growth since this call."""
    u = impl.udpio
    start = (u.truncated(), u.invalid_destinations(), u.send_errors())

    def delta() -> tuple[int, int, int]:
        now = (u.truncated(), u.invalid_destinations(), u.send_errors())
        return (now[0] - start[0], now[1] - start[1], now[2] - start[2])

    return delta


# ---------------------------------------------------------------- receive


@pytest.mark.parametrize("host", FAMILIES)
def test_hundred_datagrams_in_batches_of_64(impl: SimpleNamespace, net: Net, host: str) -> None:
    r, s = net.udp(host), net.udp(host)
    sent = [b"datagram %03d " % i + bytes(range(i)) for i in range(100)]
    for data in sent:
        s.sendto(data, addr(r))
    settle(r)
    batches = drain(impl, r)
    assert [len(b) for b in batches] == [64, 36]
    got = [x for b in batches for x in b]
    assert [d for d, _ in got] == sent  # in order, whole
    assert {a for _, a in got} == {addr(s)}  # (host, port): no brackets, no flowinfo
    assert all(type(d) is bytes and type(a[0]) is str and type(a[1]) is int for d, a in got)
    assert impl.udpio.recv_batch(r) == []


def test_max_msgs_bounds_each_batch(impl: SimpleNamespace, net: Net) -> None:
    r, s = net.udp(), net.udp()
    for i in range(10):
        s.sendto(b"%d" % i, addr(r))
    settle(r)
    assert [len(b) for b in drain(impl, r, max_msgs=3)] == [3, 3, 3, 1]


def test_more_than_one_chunk_per_call(impl: SimpleNamespace, net: Net) -> None:
    # max_msgs above 64: the compiled twin makes several recvmmsg calls
    r, s = net.udp(), net.udp()
    r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    for i in range(200):
        s.sendto(b"%d" % i, addr(r))
    settle(r)
    batches = drain(impl, r, max_msgs=150)
    assert [len(b) for b in batches] == [150, 50]
    assert [d for b in batches for d, _ in b] == [b"%d" % i for i in range(200)]


def test_empty_queue_gives_empty_list(impl: SimpleNamespace, net: Net) -> None:
    r = net.udp()
    assert impl.udpio.recv_batch(r) == []
    # a blocking socket too: MSG_DONTWAIT, never a wait
    r.setblocking(True)
    assert impl.udpio.recv_batch(r, 1) == []


def test_empty_datagram(impl: SimpleNamespace, net: Net) -> None:
    r, s = net.udp(), net.udp()
    s.sendto(b"", addr(r))
    settle(r)
    assert impl.udpio.recv_batch(r) == [(b"", addr(s))]


def test_returned_bytes_are_copies(impl: SimpleNamespace, net: Net) -> None:
    # the compiled twin reuses one receive buffer: earlier results must not change
    r, s = net.udp(), net.udp()
    s.sendto(b"A" * 100, addr(r))
    settle(r)
    first = impl.udpio.recv_batch(r)
    s.sendto(b"B" * 100, addr(r))
    settle(r)
    second = impl.udpio.recv_batch(r)
    assert first == [(b"A" * 100, addr(s))]
    assert second == [(b"B" * 100, addr(s))]


def test_truncated_datagrams_are_dropped_and_counted(impl: SimpleNamespace, net: Net) -> None:
    r, s = net.udp(), net.udp()
    delta = counting(impl)
    for data in (b"a" * 10, b"b" * 51, b"c" * 50, b"d" * 4000, b"e"):
        s.sendto(data, addr(r))
    settle(r)
    got = impl.udpio.recv_batch(r, bufsize=50)
    assert [d for d, _ in got] == [b"a" * 10, b"c" * 50, b"e"]  # exactly bufsize is kept
    assert delta() == (2, 0, 0)


def test_truncated_ones_do_not_count_towards_max_msgs(impl: SimpleNamespace, net: Net) -> None:
    # so that [] keeps meaning "queue empty", even after a batch of cut datagrams
    r, s = net.udp(), net.udp()
    delta = counting(impl)
    for data in [b"x" * 100] * 70 + [b"ok1", b"ok2", b"ok3"]:
        s.sendto(data, addr(r))
    settle(r)
    got = impl.udpio.recv_batch(r, max_msgs=2, bufsize=10)
    assert [d for d, _ in got] == [b"ok1", b"ok2"]
    assert delta() == (70, 0, 0)
    assert [d for d, _ in impl.udpio.recv_batch(r, bufsize=10)] == [b"ok3"]
    assert impl.udpio.recv_batch(r, bufsize=10) == []


def test_ipv4_peer_of_a_dual_stack_socket(impl: SimpleNamespace, net: Net) -> None:
    if not _has_ipv6():
        pytest.skip("no IPv6")
    r = net.udp("::", v6only=False)
    s = net.udp(V4)
    s.sendto(b"hello", (V4, addr(r)[1]))
    settle(r)
    assert impl.udpio.recv_batch(r) == [(b"hello", ("::ffff:127.0.0.1", addr(s)[1]))]


@pytest.mark.parametrize(
    ("kw", "exc", "message"),
    [
        ({"max_msgs": 0}, ValueError, "max_msgs must be between 1 and 1024, got 0"),
        ({"max_msgs": 1025}, ValueError, "max_msgs must be between 1 and 1024, got 1025"),
        ({"max_msgs": 1.0}, TypeError, "max_msgs must be an int, not float"),
        ({"max_msgs": True}, TypeError, "max_msgs must be an int, not bool"),
        ({"bufsize": 0}, ValueError, "bufsize must be between 1 and 65535, got 0"),
        ({"bufsize": 65536}, ValueError, "bufsize must be between 1 and 65535, got 65536"),
        ({"bufsize": 1 << 80}, ValueError, f"bufsize must be between 1 and 65535, got {1 << 80}"),
        ({"bufsize": "4"}, TypeError, "bufsize must be an int, not str"),
    ],
)
def test_recv_arguments(impl: SimpleNamespace, net: Net, kw: dict[str, Any], exc: type, message: str) -> None:
    with pytest.raises(exc) as info:
        impl.udpio.recv_batch(net.udp(), **kw)
    assert str(info.value) == message


def test_recv_on_a_closed_socket(impl: SimpleNamespace, net: Net) -> None:
    r = net.udp()
    r.close()
    with pytest.raises(OSError) as info:
        impl.udpio.recv_batch(r)
    assert info.value.errno == 9  # EBADF


def test_recv_needs_an_ip_socket(impl: SimpleNamespace) -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        a.send(b"x")
        with pytest.raises(ValueError, match="needs an AF_INET or AF_INET6 socket"):
            impl.udpio.recv_batch(b)


def test_constants(impl: SimpleNamespace) -> None:
    assert impl.udpio.MAX_BATCH == 1024
    assert impl.udpio.MAX_BUFSIZE == 65535


# ---------------------------------------------------------------- send


@pytest.mark.parametrize("host", FAMILIES)
def test_send_to_several_destinations(impl: SimpleNamespace, net: Net, host: str) -> None:
    s = net.udp(host)
    rs = [net.udp(host) for _ in range(3)]
    items = [(b"to %d #%d" % (i % 3, i), addr(rs[i % 3])) for i in range(90)]
    delta = counting(impl)
    assert impl.udpio.send_batch(s, items) == 90
    assert delta() == (0, 0, 0)
    for k, r in enumerate(rs):
        settle(r)
        got = [x for b in drain(impl, r) for x in b]
        assert got == [(b"to %d #%d" % (k, i), addr(s)) for i in range(k, 90, 3)]


def test_send_accepts_bytes_like_and_any_sequence(impl: SimpleNamespace, net: Net) -> None:
    s, r = net.udp(), net.udp()
    dst = addr(r)
    items = [(b"b", dst), (bytearray(b"ba"), dst), (memoryview(b"_mv_")[1:3], dst)]
    assert impl.udpio.send_batch(s, tuple(items)) == 3
    assert impl.udpio.send_batch(s, (x for x in items)) == 3  # an iterable becomes a list
    assert impl.udpio.send_batch(s, []) == 0
    settle(r)
    assert [d for b in drain(impl, r) for d, _ in b] == [b"b", b"ba", b"mv"] * 2


BAD_DESTINATIONS: list[Any] = [
    ("example.com", 5060),  # a name: never resolved
    ("1.2.3", 5060),
    ("[::1]", 5060),
    ("::1%lo", 5060),
    ("127.0.0.1\x00", 5060),
    ("127.0.0.1 ", 5060),
    ("", 5060),
    ("é", 5060),
    ("\udcff", 5060),
    ("1" * 100, 5060),
    ("127.0.0.1", 0),
    ("127.0.0.1", -1),
    ("127.0.0.1", 65536),
    ("127.0.0.1", 1 << 70),
    ("127.0.0.1", "5060"),
    ("127.0.0.1", True),
    ("127.0.0.1", 5060.0),
    (b"127.0.0.1", 5060),
    ("127.0.0.1",),
    ("::1", 5060, 0, 0),
    ["127.0.0.1", 5060],
    None,
    "127.0.0.1:5060",
]


def test_invalid_destinations_are_skipped_and_counted(impl: SimpleNamespace, net: Net) -> None:
    s, r = net.udp(), net.udp()
    items: list[Any] = []
    for i, bad in enumerate(BAD_DESTINATIONS):
        items.append((b"bad", bad))
        items.append((b"good %d" % i, addr(r)))
    delta = counting(impl)
    for _ in range(2):  # the second time from the compiled twin's cache
        assert impl.udpio.send_batch(s, items) == len(items)
    assert delta() == (0, 2 * len(BAD_DESTINATIONS), 0)
    settle(r)
    got = [d for b in drain(impl, r) for d, _ in b]
    assert got == [b"good %d" % i for i in range(len(BAD_DESTINATIONS))] * 2


def test_kernel_refusals_are_dropped_and_counted(impl: SimpleNamespace, net: Net) -> None:
    s, r = net.udp(), net.udp()
    dst = addr(r)
    items = [
        (b"one", dst),
        (b"x" * 65508, dst),  # EMSGSIZE: over the IPv4 maximum of 65507
        (b"two", dst),
        (b"v6", ("::1", dst[1])),  # EAFNOSUPPORT: IPv6 destination, IPv4 socket
        (b"three", dst),
        (b"x" * 65507, dst),  # the largest IPv4 datagram goes
    ]
    delta = counting(impl)
    assert impl.udpio.send_batch(s, items) == 6
    assert delta() == (0, 0, 2)
    settle(r)
    got = [d for b in drain(impl, r) for d, _ in b]
    assert got == [b"one", b"two", b"three", b"x" * 65507]


def test_ipv4_destination_on_ipv6_sockets(impl: SimpleNamespace, net: Net) -> None:
    if not _has_ipv6():
        pytest.skip("no IPv6")
    r = net.udp(V4)
    dual = net.udp("::", v6only=False)
    only = net.udp("::", v6only=True)
    delta = counting(impl)
    assert impl.udpio.send_batch(dual, [(b"mapped", addr(r))]) == 1
    assert impl.udpio.send_batch(only, [(b"lost", addr(r))]) == 1  # ENETUNREACH
    assert delta() == (0, 0, 1)
    settle(r)
    assert impl.udpio.recv_batch(r) == [(b"mapped", (V4, addr(dual)[1]))]


@pytest.mark.parametrize(
    ("bad_item", "message"),
    [
        ([b"x", (V4, 9)], "items[2] must be a (data, (host, port)) tuple, not list"),
        ((b"x",), "items[2] must be a (data, (host, port)) tuple, not tuple"),
        ((b"x", (V4, 9), 0), "items[2] must be a (data, (host, port)) tuple, not tuple"),
        (b"x", "items[2] must be a (data, (host, port)) tuple, not bytes"),
        (("x", (V4, 9)), "items[2][0] must be a bytes-like object, not str"),
        ((None, (V4, 9)), "items[2][0] must be a bytes-like object, not NoneType"),
        ((memoryview(b"abcdef")[::2], (V4, 9)), "items[2][0] must be a C-contiguous buffer"),
    ],
)
def test_bad_items_raise_before_anything_is_sent(
    impl: SimpleNamespace, net: Net, bad_item: Any, message: str
) -> None:
    s, r = net.udp(), net.udp()
    items = [(b"a", addr(r)), (b"b", ("bad", 1)), bad_item, (b"c", addr(r))]
    delta = counting(impl)
    with pytest.raises(TypeError) as info:
        impl.udpio.send_batch(s, items)
    assert str(info.value) == message
    assert delta() == (0, 0, 0)
    assert select.select([r], [], [], 0.05)[0] == []
    assert impl.udpio.recv_batch(r) == []


def test_send_on_a_closed_socket(impl: SimpleNamespace, net: Net) -> None:
    s, r = net.udp(), net.udp()
    s.close()
    delta = counting(impl)
    with pytest.raises(OSError) as info:
        impl.udpio.send_batch(s, [(b"x", ("bad", 1)), (b"y", addr(r)), (b"z", ("bad", 2))])
    assert info.value.errno == 9  # EBADF
    assert delta() == (0, 1, 0)  # the items before the failure were dealt with


def tcp_pair(net: Net) -> tuple[socket.socket, socket.socket]:
    """A connected TCP pair, sender non-blocking with small buffers."""
    lst = net.add(socket.socket())
    lst.bind((V4, 0))
    lst.listen()
    tx = net.add(socket.socket())
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
    tx.connect(addr(lst))
    rx = net.add(lst.accept()[0])
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    tx.setblocking(False)
    rx.setblocking(False)
    return tx, rx


def test_eagain_stops_and_the_rest_is_sent_later(impl: SimpleNamespace, net: Net) -> None:
    # Loopback UDP never reports EAGAIN (lo hands the datagram to the receiver
    # and frees the sender's buffer space within the same call; a full
    # receiver drops instead). A TCP socket does: its send path ignores the
    # destination and returns EAGAIN once its buffer is full, which drives
    # the same code path of send_batch.
    tx, rx = tcp_pair(net)
    chunk = b"z" * 4096
    items: list[Any] = []
    for i in range(2000):  # 8 MB, far more than the socket buffers hold
        items.append((chunk, (V4, 9)) if i % 7 else (chunk, ("not-an-address", 9)))
    delta = counting(impl)
    n = impl.udpio.send_batch(tx, items)
    assert 0 < n < len(items)
    # items before the stop were dealt with; the invalid ones after it were not counted
    assert delta() == (0, sum(1 for i in range(n) if i % 7 == 0), 0)
    assert items[n][1] == (V4, 9)  # EAGAIN stops at a datagram, never at a skipped item
    # resume as a worker would: when writable, send what is left
    done, deadline = n, time.monotonic() + 30
    while done < len(items):
        assert time.monotonic() < deadline
        while True:
            try:
                if not rx.recv(1 << 20):
                    break
            except BlockingIOError:
                break
        select.select([], [tx], [], 1.0)
        done += impl.udpio.send_batch(tx, items[done:])
    assert delta() == (0, sum(1 for i in range(len(items)) if i % 7 == 0), 0)


def test_twins_share_no_state(ref: SimpleNamespace, ext: SimpleNamespace) -> None:
    assert ref.udpio is not ext.udpio
    assert ref.udpio.__name__ == "simplefast._ref.udpio"
    assert ext.udpio.__file__.endswith(".so")


def test_kernel_error_raises_its_oserror_and_keeps_the_queue(impl: SimpleNamespace, net: Net) -> None:
    # IP_RECVERR: an ICMP "port unreachable" for an earlier send becomes a
    # socket error that the next receive reports (before any datagram).
    ip_recverr = getattr(socket, "IP_RECVERR", 11)
    a, b, gone = net.udp(), net.udp(), net.udp()
    a.setsockopt(socket.IPPROTO_IP, ip_recverr, 1)
    closed = addr(gone)
    gone.close()
    b.sendto(b"first", addr(a))
    assert impl.udpio.send_batch(a, [(b"x", closed)]) == 1
    settle(a)
    b.sendto(b"second", addr(a))
    with pytest.raises(ConnectionRefusedError):
        impl.udpio.recv_batch(a)
    assert impl.udpio.recv_batch(a) == [(b"first", addr(b)), (b"second", addr(b))]


def test_echo_on_uvloop_with_add_reader(impl: SimpleNamespace, net: Net) -> None:
    # The pattern of the stub's docstring: drain on readable, send the replies
    # in one batch, queue what EAGAIN leaves for a writer callback.
    import asyncio

    import uvloop

    udpio = impl.udpio
    server, client = net.udp(), net.udp()
    sent = [b"ping %d" % i for i in range(300)]

    async def main() -> list[Batch]:
        loop = asyncio.get_running_loop()
        fd = server.fileno()
        backlog: list[tuple[bytes, Addr]] = []

        def flush(out: list[tuple[bytes, Addr]] | None = None) -> None:
            had = bool(backlog)
            backlog.extend(out or ())
            del backlog[: udpio.send_batch(server, backlog)]
            if backlog and not had:
                loop.add_writer(fd, flush)
            elif had and not backlog:
                loop.remove_writer(fd)

        def on_readable() -> None:
            out = []
            for _ in range(8):
                batch = udpio.recv_batch(server)
                if not batch:
                    break
                out += [(b"pong" + data[4:], peer) for data, peer in batch]
            flush(out)

        loop.add_reader(fd, on_readable)
        try:
            got: list[Batch] = []
            deadline = loop.time() + 5
            for i in range(0, len(sent), 50):  # in bursts that the receive buffers hold
                for data in sent[i : i + 50]:
                    client.sendto(data, addr(server))
                while sum(map(len, got)) < i + 50 and loop.time() < deadline:
                    await asyncio.sleep(0.002)
                    while batch := udpio.recv_batch(client):
                        got.append(batch)
            return got
        finally:
            loop.remove_reader(fd)
            loop.remove_writer(fd)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        got = runner.run(main())
    assert [x for b in got for x in b] == [(b"pong" + d[4:], addr(server)) for d in sent]


def test_batch_timestamp_is_when_the_first_datagram_arrived(impl: SimpleNamespace, net: Net) -> None:
    u = impl.udpio
    r, s = net.udp(), net.udp()
    r.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    time.sleep(0.05)  # the kernel turns receive timestamps on lazily
    t0 = time.time()
    s.sendto(b"first", addr(r))
    time.sleep(0.1)
    s.sendto(b"second", addr(r))
    settle(r)
    assert [d for d, _ in u.recv_batch(r)] == [b"first", b"second"]
    ts = u.batch_timestamp()
    assert t0 - 0.01 <= ts <= t0 + 0.05  # the first one's arrival, not the second's or the read's
    assert u.recv_batch(r) == [] and u.batch_timestamp() == 0.0  # read nothing
    plain = net.udp()  # no SO_TIMESTAMPNS: no time
    s.sendto(b"x", addr(plain))
    settle(plain)
    assert u.recv_batch(plain) and u.batch_timestamp() == 0.0
    s.sendto(b"y" * 100, addr(r))  # a datagram dropped as truncated still dates the batch
    s.sendto(b"z", addr(r))
    settle(r)
    assert u.recv_batch(r, bufsize=10) == [(b"z", addr(s))] and u.batch_timestamp() > t0
