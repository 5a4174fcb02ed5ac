"""MSRP endpoint session (simplefast/msrp/endpoint.py), sans-IO: fake clock, no sockets.

Two sessions wired back to back (what one writes is what the other reads), hand-made
chunks and responses for reassembly and failures, and AUTH (RFC 4976) against the real
relay core (simplefast/msrp/relay.py) in-process, then two sessions through that relay.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from simplefast._impl import msrpframe as fr
from simplefast.msrp.endpoint import (
    Authenticated,
    AuthRejected,
    Closed,
    Event,
    MessageAborted,
    MessageFailed,
    MessageReceived,
    MessageSent,
    MsrpSession,
    ReportReceived,
    RequestReceived,
)
from simplefast.msrp.relay import CloseConnection, Connect, MsrpRelay, RelayConfig, SessionCreated
from simplefast.proxy.auth import Credentials, h, ha1, parse_digest

T0 = 1_700_000_000.0  # the fake clock (wall-clock seconds: the relay's nonces carry their issue time)
ALICE = "msrps://alice.example.org:7965/bar;tcp"
BOB = "msrps://bob.example.net:8145/foo;tcp"
RELAY = "msrps://a.example.org:9000;tcp"
A_URI = "msrps://a.example.org:9000/kjfjan;tcp"  # the session URI the relay issues
REALM = "a.example.org"
PASSWORD = "wonderland"


# ---------------------------------------------------------------- helpers


def tids(prefix: str) -> Callable[[], str]:
    seq = itertools.count(1)
    return lambda: f"{prefix}{next(seq):04d}"


def pattern(size: int) -> bytes:
    return hashlib.shake_256(b"simplefast").digest(size) if size else b""


def pair(**kw: Any) -> tuple[MsrpSession, MsrpSession]:
    alice = MsrpSession(ALICE, to_path=[BOB], new_tid=tids("a"), **kw)
    bob = MsrpSession(BOB, to_path=[ALICE], new_tid=tids("b"), **kw)
    return alice, bob


def drain(s: MsrpSession) -> list[Event]:
    evs = []
    while (ev := s.next_event()) is not None:
        evs.append(ev)
    return evs


def run(a: MsrpSession, b: MsrpSession, now: float = T0) -> tuple[bytes, bytes]:
    """Feed each side's output to the other until both are quiet; all octets a->b and b->a."""
    a2b, b2a = bytearray(), bytearray()
    for _ in range(10_000):
        x, y = a.outgoing(), b.outgoing()
        if not x and not y:
            return bytes(a2b), bytes(b2a)
        a2b += x
        b2a += y
        if x:
            b.data(x, now)
        if y:
            a.data(y, now)
    raise AssertionError("the sessions never went quiet")


def parse(data: bytes) -> list[Any]:
    p = fr.MsrpParser()
    msgs = p.feed(data)
    assert p.buffered == 0
    return list(msgs)


def chunk(
    tid: str,
    mid: str | None,
    start: int,
    data: bytes,
    total: int | str,
    flag: str = "$",
    *,
    frm: tuple[str, ...] = (ALICE,),
    to: tuple[str, ...] = (BOB,),
    ct: str = "text/plain",
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """One SEND chunk to Bob, octets ``start``.. (1-based) of a message of ``total`` octets."""
    hdrs = [] if mid is None else [("Message-ID", mid)]
    hdrs.append(("Byte-Range", f"{start}-{start + len(data) - 1}/{total}"))
    return fr.build_request(
        tid, "SEND", list(to), list(frm), [*hdrs, *extra], content_type=ct, body=data, flag=flag
    )


def responses(s: MsrpSession) -> list[tuple[str, int, str | None, list[str], list[str]]]:
    """What ``s`` wrote, each a response: (tid, status, comment, To-Path, From-Path)."""
    out = []
    for m in parse(s.outgoing()):
        assert not m.is_request, m.to_bytes()
        out.append((m.tid, m.status, m.comment, m.to_path, m.from_path))
    return out


def ok(tid: str) -> tuple[str, int, str, list[str], list[str]]:
    return (tid, 200, "OK", [ALICE], [BOB])


# ---------------------------------------------------------------- 1. back to back


@pytest.mark.parametrize("size", [0, 1, 2048, 2049, 100_000])
def test_message_arrives_whole_in_chunks(size: int) -> None:
    alice, bob = pair()
    body = pattern(size)
    mid = alice.send_message("application/octet-stream", body, T0)
    a2b, b2a = run(alice, bob)

    sends = parse(a2b)
    assert len(sends) == max(1, -(-size // 2048))
    pos = 0
    for i, m in enumerate(sends):
        last = i == len(sends) - 1
        n = len(m.body)
        assert (m.method, m.to_path, m.from_path, m.message_id) == ("SEND", [BOB], [ALICE], mid)
        assert m.content_type == "application/octet-stream"
        assert n == (size - pos if last else 2048)
        assert m.get("Byte-Range") == f"{pos + 1}-{pos + n}/{size}"
        assert m.byte_range == (pos + 1, pos + n, size)
        assert m.flag == ("$" if last else "+")
        assert m.get("Failure-Report") is None and m.get("Success-Report") is None  # defaults
        assert bytes(m.body) == body[pos : pos + n]
        pos += n
    assert pos == size
    assert len({m.tid for m in sends}) == len(sends)  # a fresh tid per chunk

    # every chunk answered 200, hop by hop, with its own tid
    assert [(m.tid, m.status, m.to_path, m.from_path) for m in parse(b2a)] == [
        (s.tid, 200, [ALICE], [BOB]) for s in sends
    ]
    assert drain(bob) == [MessageReceived(mid, "application/octet-stream", body, [ALICE])]
    assert drain(alice) == [MessageSent(mid)]
    assert alice.get_timer() is None and bob.get_timer() is None


def test_chunks_follow_chunk_size_and_message_ids_are_unique() -> None:
    alice, bob = pair(chunk_size=1000)
    body = pattern(2500)
    mid1 = alice.send_message("text/plain", body, T0)
    alice.send_message("text/plain", b"second", T0, message_id="given-id")
    a2b, _ = run(alice, bob)
    ranges = [(m.message_id, m.get("Byte-Range"), m.flag) for m in parse(a2b)]
    assert ranges == [
        (mid1, "1-1000/2500", "+"),
        (mid1, "1001-2000/2500", "+"),
        (mid1, "2001-2500/2500", "$"),
        ("given-id", "1-6/6", "$"),
    ]
    assert mid1 != "given-id"
    assert [type(e) for e in drain(bob)] == [MessageReceived, MessageReceived]
    assert drain(alice) == [MessageSent(mid1), MessageSent("given-id")]


@pytest.mark.parametrize("report", ["no", "partial"])
def test_failure_report_no_and_partial_get_no_200(report: str) -> None:
    alice, bob = pair(chunk_size=100)
    body = pattern(250)
    mid = alice.send_message("text/plain", body, T0, failure_report=report)
    assert alice.get_timer() is None  # nothing is awaited
    a2b, b2a = run(alice, bob)
    sends = parse(a2b)
    assert [m.get("Failure-Report") for m in sends] == [report] * 3
    assert b2a == b""  # no 200 for no or partial
    assert drain(bob) == [MessageReceived(mid, "text/plain", body, [ALICE])]
    assert drain(alice) == []


@pytest.mark.parametrize("size", [0, 5000])
def test_success_report_reaches_the_sender(size: int) -> None:
    alice, bob = pair()
    body = pattern(size)
    mid = alice.send_message("text/plain", body, T0, success_report=True)
    a2b, b2a = run(alice, bob)
    assert {m.get("Success-Report") for m in parse(a2b)} == {"yes"}
    back = parse(b2a)
    report = back[-1]
    assert [m.is_request for m in back] == [False] * (len(back) - 1) + [True]
    assert (report.method, report.to_path, report.from_path) == ("REPORT", [ALICE], [BOB])
    assert (report.message_id, report.get("Status")) == (mid, "000 200 OK")
    assert report.get("Byte-Range") == f"1-{size}/{size}"
    assert drain(bob) == [MessageReceived(mid, "text/plain", body, [ALICE])]
    assert drain(alice) == [MessageSent(mid), ReportReceived(mid, 200, (1, size, size))]


def test_report_is_never_answered() -> None:
    _, bob = pair()
    rep = fr.build_request(
        "rep1", "REPORT", [BOB], [ALICE],
        [("Message-ID", "m9"), ("Byte-Range", "1-10/20"), ("Status", "000 413 Too big")],
    )  # fmt: skip
    bob.data(rep, T0)
    assert bob.outgoing() == b""
    assert drain(bob) == [ReportReceived("m9", 413, (1, 10, 20))]


def test_a_report_made_by_a_relay_on_our_path_is_taken() -> None:
    """RFC 4976: a relay's REPORT (a 481 when the far end is gone) has From-Path the relay and
    the hops before it; that is the beginning of our To-Path, so it is from our path. A REPORT
    claiming a relay that is not on it is still refused (silently: REPORTs get no answer)."""
    relay = "msrps://relay.example.com:2855/s1;tcp"
    alice = MsrpSession(ALICE, to_path=[relay, BOB])
    rep = fr.build_request(
        "rep2", "REPORT", [ALICE], [relay], [("Message-ID", "m1"), ("Status", "000 481 Session gone")]
    )
    alice.data(rep, T0)
    assert drain(alice) == [ReportReceived("m1", 481, None)]
    other = fr.build_request(
        "rep3", "REPORT", [ALICE], ["msrps://evil.example.com:2855/x;tcp"],
        [("Message-ID", "m1"), ("Status", "000 481 Session gone")],
    )  # fmt: skip
    alice.data(other, T0)
    assert drain(alice) == [] and alice.outgoing() == b""


def test_tid_whose_end_line_is_in_the_data_is_replaced() -> None:
    names = iter(["abcd", "efgh", "ijkl"])
    alice = MsrpSession(ALICE, to_path=[BOB], new_tid=lambda: next(names))
    _, bob = pair()
    body = b"one\r\n-------abcd$\r\ntwo"
    mid = alice.send_message("text/plain", body, T0)
    a2b, _ = run(alice, bob)
    [m] = parse(a2b)
    assert m.tid == "efgh" and bytes(m.body) == body
    assert drain(bob) == [MessageReceived(mid, "text/plain", body, [ALICE])]
    assert drain(alice) == [MessageSent(mid)]


def test_sixteen_unusable_tids_raise() -> None:
    alice = MsrpSession(ALICE, to_path=[BOB], new_tid=lambda: "abcd")
    with pytest.raises(RuntimeError):
        alice.send_message("text/plain", b"\r\n-------abcd$\r\n", T0)


# ---------------------------------------------------------------- 2. reassembly

BODY = b"0123456789abcdefghijklmnopqrstuvwxyz!"  # 37 octets


def four_chunks(mid: str = "m1", body: bytes = BODY) -> list[bytes]:
    cuts = [0, 10, 20, 30, len(body)]
    return [
        chunk(f"c{mid}{i}", mid, cuts[i] + 1, body[cuts[i] : cuts[i + 1]], len(body), "$" if i == 3 else "+")
        for i in range(4)
    ]


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_chunks_in_any_order(order: tuple[int, ...]) -> None:
    _, bob = pair()
    chunks = four_chunks()
    for n, i in enumerate(order):
        bob.data(chunks[i], T0)
        evs = drain(bob)
        if n < 3:
            assert evs == []
        else:
            assert evs == [MessageReceived("m1", "text/plain", BODY, [ALICE])]
    assert responses(bob) == [ok(f"cm1{i}") for i in order]


def test_duplicated_chunks_are_held_once() -> None:
    _, bob = pair()
    c = four_chunks()
    for i in (2, 0, 2, 0, 1, 1, 3):
        bob.data(c[i], T0)
    assert drain(bob) == [MessageReceived("m1", "text/plain", BODY, [ALICE])]
    assert len(responses(bob)) == 7  # each one is a transaction of its own: a 200 each


def test_whole_stream_in_one_read_and_byte_by_byte() -> None:
    _, bob = pair()
    bob.data(b"".join(four_chunks("m1")), T0)
    for octet in b"".join(four_chunks("m2")):
        bob.data(bytes([octet]), T0)
    assert drain(bob) == [
        MessageReceived("m1", "text/plain", BODY, [ALICE]),
        MessageReceived("m2", "text/plain", BODY, [ALICE]),
    ]


def test_abort_flag_gives_message_aborted() -> None:
    _, bob = pair()
    c = four_chunks()
    bob.data(c[0], T0)
    bob.data(c[1], T0)
    bob.data(chunk("cab1", "m1", 21, b"klmno", len(BODY), "#"), T0)
    assert drain(bob) == [MessageAborted("m1", 20)]
    assert responses(bob) == [ok("cm10"), ok("cm11"), ok("cab1")]
    bob.data(c[3], T0)  # the message is gone: its last chunk alone completes nothing
    assert drain(bob) == []


def test_abort_of_an_unknown_message() -> None:
    _, bob = pair()
    bob.data(chunk("cab1", "m7", 1, b"", "*", "#"), T0)
    assert drain(bob) == [MessageAborted("m7", 0)]


def test_interleaved_messages() -> None:
    _, bob = pair()
    bob.to_path = []  # a passive side that has not learned its peer's path takes any From-Path
    other = "msrps://carol.example.com:1/c;tcp"
    b2 = b"<p>hello, interleaved world</p>"
    m1 = four_chunks("m1")
    m2 = [
        chunk("xx01", "m2", 1, b2[:10], len(b2), "+", frm=(other,), ct="text/html"),
        chunk("xx02", "m2", 11, b2[10:], len(b2), "$", frm=(other,), ct="text/html"),
    ]
    for data in (m1[0], m2[0], m1[1], m1[2], m2[1], m1[3]):
        bob.data(data, T0)
    assert drain(bob) == [
        MessageReceived("m2", "text/html", b2, [other]),
        MessageReceived("m1", "text/plain", BODY, [ALICE]),
    ]
    got = responses(bob)
    assert [r[:3] for r in got] == [(t, 200, "OK") for t in ("cm10", "xx01", "cm11", "cm12", "xx02", "cm13")]
    assert got[1][3] == [other] and got[4][3] == [other]  # each answered to its own From-Path


def test_message_over_max_message_gets_413() -> None:
    alice, bob = pair(chunk_size=40)
    bob.max_message = 100
    mid = alice.send_message("text/plain", pattern(100), T0)  # exactly the bound: fine
    run(alice, bob)
    assert drain(bob) == [MessageReceived(mid, "text/plain", pattern(100), [ALICE])]
    assert drain(alice) == [MessageSent(mid)]

    big = alice.send_message("text/plain", pattern(101), T0)  # the total says too large
    _, b2a = run(alice, bob)
    assert [(m.status, m.comment) for m in parse(b2a)] == [(413, "Message too large")] * 3
    assert drain(bob) == []
    assert drain(alice) == [MessageFailed(big, 413, "Message too large")]


def test_message_of_unknown_total_over_max_message_is_dropped() -> None:
    _, bob = pair(max_message=100)
    bob.data(chunk("uu01", "m1", 1, pattern(60), "*", "+"), T0)
    bob.data(chunk("uu02", "m1", 61, pattern(41), "*", "+"), T0)  # octet 101: past the bound
    assert [r[:2] for r in responses(bob)] == [("uu01", 200), ("uu02", 413)]
    bob.data(chunk("uu01", "m1", 1, pattern(60), "*", "+"), T0)  # its octets are gone: it starts over
    bob.data(chunk("uu03", "m1", 61, b"end", "*", "$"), T0)
    assert drain(bob) == [MessageReceived("m1", "text/plain", pattern(60) + b"end", [ALICE])]


def test_an_oversized_message_does_not_evict_a_partial_one() -> None:
    _, bob = pair(max_incoming=1, max_message=100)
    c = four_chunks("m1")
    bob.data(c[0], T0)
    bob.data(chunk("big1", "m2", 1, b"x", 1000, "+"), T0)
    assert [r[:2] for r in responses(bob)] == [("cm10", 200), ("big1", 413)]
    for data in c[1:]:
        bob.data(data, T0)
    assert drain(bob) == [MessageReceived("m1", "text/plain", BODY, [ALICE])]


def test_overlapping_chunks_stay_within_max_message() -> None:
    _, bob = pair(max_message=100)
    for i in range(1, 52):  # octets i..i+49, every one inside the bound
        bob.data(chunk(f"ov{i:02d}", "m1", i, pattern(50), "*", "+"), T0)
    bob.data(chunk("ov99", "m1", 1, b"", "*", "#"), T0)
    [ev] = drain(bob)
    assert isinstance(ev, MessageAborted) and ev.received <= 100


def test_past_max_incoming_the_oldest_partial_message_is_dropped() -> None:
    _, bob = pair(max_incoming=2)
    msgs = {mid: four_chunks(mid) for mid in ("m1", "m2", "m3")}
    for mid in ("m1", "m2", "m3"):
        bob.data(msgs[mid][0], T0)
    for mid in ("m2", "m3", "m1"):  # m1 was dropped: its other chunks complete nothing
        for c in msgs[mid][1:]:
            bob.data(c, T0)
    assert [e.message_id for e in drain(bob) if isinstance(e, MessageReceived)] == ["m2", "m3"]
    assert len(responses(bob)) == 12  # every chunk still got its 200


def test_byte_range_with_unknown_total() -> None:
    _, bob = pair()
    bob.data(chunk("ss02", "m1", 11, b"klmnop", "*", "$"), T0)  # the last one first
    bob.data(chunk("ss01", "m1", 1, b"abcdefghij", "*", "+"), T0)
    assert drain(bob) == [MessageReceived("m1", "text/plain", b"abcdefghijklmnop", [ALICE])]
    assert [r[:2] for r in responses(bob)] == [("ss02", 200), ("ss01", 200)]


def test_send_without_message_id_gets_400() -> None:
    _, bob = pair()
    bob.data(chunk("nm01", None, 1, b"hi", 2), T0)
    assert responses(bob) == [("nm01", 400, "Message-ID missing", [ALICE], [BOB])]
    bob.data(chunk("nm02", None, 1, b"hi", 2, extra=(("Failure-Report", "no"),)), T0)
    assert bob.outgoing() == b""
    assert drain(bob) == []


def test_byte_range_past_the_total_gets_400() -> None:
    _, bob = pair()
    bob.data(chunk("br01", "m1", 5, b"abcdef", 8), T0)
    assert [r[:2] for r in responses(bob)] == [("br01", 400)]
    assert drain(bob) == []


# ---------------------------------------------------------------- 3. failures


def sent_tids(s: MsrpSession) -> list[str]:
    return [m.tid for m in parse(s.outgoing())]


def answer(tid: str, status: int, comment: str | None = None) -> bytes:
    return fr.build_response(tid, status, comment, [ALICE], [BOB])


def test_non_200_fails_the_message_once() -> None:
    alice, _ = pair(chunk_size=10)
    mid = alice.send_message("text/plain", pattern(30), T0)
    t1, t2, t3 = sent_tids(alice)
    alice.data(answer(t1, 200, "OK"), T0)
    assert drain(alice) == []
    alice.data(answer(t2, 403, "Forbidden"), T0)
    assert drain(alice) == [MessageFailed(mid, 403, "Forbidden")]
    alice.data(answer(t3, 481, "No session") + answer(t3, 200, "OK") + answer(t2, 200), T0)
    assert drain(alice) == []
    assert alice.get_timer() is None
    alice.handle_timer(T0 + 3600)
    assert drain(alice) == []


def test_no_response_times_out_with_408() -> None:
    alice, _ = pair(chunk_size=10, timeout=30.0)
    mid = alice.send_message("text/plain", pattern(20), T0)
    t1, t2 = sent_tids(alice)
    mid2 = alice.send_message("text/plain", b"later", T0 + 5)
    assert alice.get_timer() == T0 + 30
    alice.data(answer(t1, 200, "OK"), T0 + 1)
    alice.handle_timer(T0 + 29.5)
    assert drain(alice) == []
    alice.handle_timer(T0 + 30)
    assert drain(alice) == [MessageFailed(mid, 408, "Request Timeout")]
    assert alice.get_timer() == T0 + 35  # the second message's deadline
    alice.data(answer(t2, 200, "OK"), T0 + 31)  # too late: ignored
    assert drain(alice) == []
    alice.handle_timer(T0 + 35)
    assert drain(alice) == [MessageFailed(mid2, 408, "Request Timeout")]
    assert alice.get_timer() is None


def test_responses_to_unknown_tids_are_ignored() -> None:
    alice, bob = pair()
    mid = alice.send_message("text/plain", b"hello", T0)
    alice.data(answer("zzzz9", 200, "OK") + answer("yyyy8", 500, "Oops"), T0)
    assert drain(alice) == []
    assert alice.get_timer() == T0 + 30
    run(alice, bob)
    assert drain(alice) == [MessageSent(mid)]


def test_framing_error_closes_the_session() -> None:
    alice, bob = pair()
    bob.data(b"HTTP/1.1 200 OK\r\n\r\n", T0)
    [ev] = drain(bob)
    assert isinstance(ev, Closed) and ev.reason.startswith("framing error")
    assert bob.closed_reason == ev.reason
    alice.send_message("text/plain", b"hello", T0)
    bob.data(alice.outgoing(), T0)  # ignored from now on
    assert drain(bob) == [] and bob.outgoing() == b""
    bob.closed()
    assert drain(bob) == []


def test_malformed_byte_range_closes_the_session() -> None:
    _, bob = pair()
    bad = fr.build_request(
        "bad1", "SEND", [BOB], [ALICE], [("Message-ID", "m1"), ("Byte-Range", "x-y/z")],
        content_type="text/plain", body=b"hi",
    )  # fmt: skip
    bob.data(bad, T0)
    [ev] = drain(bob)
    assert isinstance(ev, Closed) and ev.reason.startswith("framing error")
    assert bob.outgoing() == b""


def test_closed_is_idempotent() -> None:
    alice, _ = pair()
    alice.closed("bye")
    alice.closed("again")
    alice.closed()
    assert drain(alice) == [Closed("bye")]
    assert alice.closed_reason == "bye"


# ---------------------------------------------------------------- 4. other methods


def test_nickname_is_handed_to_the_caller_and_answered_end_to_end() -> None:
    _, bob = pair()
    via = [A_URI, ALICE]  # as it arrives through a relay
    bob.to_path = via
    req = fr.build_request("nick1", "NICKNAME", [BOB], via, [("Use-Nickname", '"Alice"')])
    bob.data(req, T0)
    assert bob.outgoing() == b""  # not answered by the session
    [ev] = drain(bob)
    assert isinstance(ev, RequestReceived)
    assert (ev.msg.method, ev.msg.tid, ev.msg.get("Use-Nickname")) == ("NICKNAME", "nick1", '"Alice"')
    bob.respond(ev.msg, 200)
    [m] = parse(bob.outgoing())
    assert (m.is_request, m.tid, m.status, m.to_path, m.from_path) == (False, "nick1", 200, via, [BOB])
    bob.respond(ev.msg, 425, "Nickname reserved")
    [m] = parse(bob.outgoing())
    assert (m.status, m.comment, m.to_path) == (425, "Nickname reserved", via)


# ---------------------------------------------------------------- 5. AUTH and the relay core


def make_relay(algorithms: tuple[str, ...] = ("MD5",), **cfg: Any) -> MsrpRelay:
    users = {
        name: Credentials(name, REALM, {a: ha1(a, name, REALM, PASSWORD) for a in ("MD5", "SHA-256")})
        for name in ("Alice", "Bob")
    }
    sids = itertools.chain(["kjfjan"], (f"s{n:04d}" for n in itertools.count(1)))
    config = RelayConfig("msrps", "a.example.org", 9000, REALM, algorithms=algorithms, **cfg)
    return MsrpRelay(config, users, secret=b"s" * 32, new_session_id=lambda: next(sids))


class Net:
    """Sessions on relay connections (one cid each); everything written is recorded."""

    def __init__(self, relay: MsrpRelay) -> None:
        self.relay = relay
        self.sessions: dict[int, MsrpSession] = {}
        self.up: list[tuple[int, bytes]] = []  # session -> relay
        self.down: list[tuple[int, bytes]] = []  # relay -> session

    def attach(self, cid: int, s: MsrpSession) -> None:
        self.relay.connected(cid, None, T0)
        self.sessions[cid] = s

    def run(self, now: float = T0) -> None:
        for _ in range(10_000):
            moved = False
            for cid, s in self.sessions.items():
                if octets := s.outgoing():
                    self.up.append((cid, octets))
                    self.relay.data(cid, octets, now)
                    moved = True
            for cid, octets in self.relay.outgoing():
                self.down.append((cid, octets))
                self.sessions[cid].data(octets, now)
                moved = True
            if not moved:
                return
        raise AssertionError("never quiet")

    def relay_events(self) -> list[Any]:
        evs = []
        while (ev := self.relay.next_event()) is not None:
            evs.append(ev)
        return evs


def auth_requests(net: Net, cid: int) -> list[Any]:
    return [m for c, data in net.up if c == cid for m in parse(data) if m.method == "AUTH"]


def challenges(net: Net, cid: int) -> list[str]:
    return [v for c, data in net.down if c == cid for m in parse(data) for v in m.get_all("WWW-Authenticate")]


def check_credentials(cred: str, challenge: str, algorithm: str, user: str = "Alice") -> None:
    """The Authorization answers ``challenge`` (RFC 2617 with A2 = AUTH:<relay URI>, qop=auth)."""
    p, c = parse_digest(cred), parse_digest(challenge)
    assert p is not None and c is not None
    assert p["algorithm"] == algorithm and p["qop"] == "auth" and p["nc"] == "00000001"
    assert (p["username"], p["realm"], p["nonce"]) == (user, c["realm"], c["nonce"])
    assert p.get("opaque") == c.get("opaque")
    a1, a2 = ha1(algorithm, user, c["realm"], PASSWORD), h(algorithm, f"AUTH:{RELAY}")
    assert p["response"] == h(algorithm, f"{a1}:{c['nonce']}:00000001:{p['cnonce']}:auth:{a2}")


@pytest.mark.parametrize(
    ("algorithms", "chosen"), [(("MD5",), "MD5"), (("MD5", "SHA-256"), "SHA-256"), (("SHA-256",), "SHA-256")]
)
def test_authenticate_against_the_relay(algorithms: tuple[str, ...], chosen: str) -> None:
    net = Net(make_relay(algorithms))
    alice = MsrpSession(ALICE)
    net.attach(1, alice)
    alice.authenticate(RELAY, "Alice", PASSWORD)
    net.run()
    assert drain(alice) == [Authenticated([A_URI], 1800)]
    first, second = auth_requests(net, 1)
    assert (first.to_path, first.from_path, first.get("Authorization")) == ([RELAY], [ALICE], None)
    assert (second.to_path, second.from_path) == ([RELAY], [ALICE])
    chals = challenges(net, 1)
    assert len(chals) == len(algorithms)
    [chal] = [c for c in chals if f"algorithm={chosen}" in c]
    check_credentials(second.get("Authorization"), chal, chosen)
    [created] = [e for e in net.relay_events() if isinstance(e, SessionCreated)]
    assert (created.uri, created.username, created.cid) == (A_URI, "Alice", 1)


@pytest.mark.parametrize("algorithms", [("MD5",), ("MD5", "SHA-256")])
def test_wrong_password_is_rejected(algorithms: tuple[str, ...]) -> None:
    net = Net(make_relay(algorithms))
    alice = MsrpSession(ALICE)
    net.attach(1, alice)
    alice.authenticate(RELAY, "Alice", "guess")
    net.run()
    assert drain(alice) == [AuthRejected(403, "Forbidden")]
    assert len(auth_requests(net, 1)) == 2  # answered once, not again
    assert net.relay.sessions == {}


def test_relay_without_auth_grants_at_once() -> None:
    net = Net(make_relay(require_auth=False))
    alice = MsrpSession(ALICE)
    net.attach(1, alice)
    alice.authenticate(RELAY, "anyone", "")
    net.run()
    assert drain(alice) == [Authenticated([A_URI], 1800)]
    assert len(auth_requests(net, 1)) == 1


def hand_auth() -> tuple[MsrpSession, str]:
    alice = MsrpSession(ALICE, new_tid=tids("a"))
    alice.authenticate(RELAY, "Alice", PASSWORD)
    [m] = parse(alice.outgoing())
    assert (m.method, m.to_path, m.from_path) == ("AUTH", [RELAY], [ALICE])
    return alice, m.tid


def r401(tid: str, *chals: str) -> bytes:
    return fr.build_response(
        tid, 401, "Unauthorized", [ALICE], [RELAY], [("WWW-Authenticate", c) for c in chals]
    )


MD5_CHAL = 'Digest realm="a.example.org", nonce="n-md5", qop="auth", algorithm=MD5'
SHA_CHAL = 'Digest realm="a.example.org", nonce="n-sha", opaque="op1", qop="auth", algorithm=SHA-256'


def test_sha256_is_preferred_whatever_the_order() -> None:
    alice, tid = hand_auth()
    alice.data(r401(tid, MD5_CHAL, SHA_CHAL), T0)
    [m] = parse(alice.outgoing())
    assert m.method == "AUTH" and m.tid != tid
    check_credentials(m.get("Authorization"), SHA_CHAL, "SHA-256")
    assert drain(alice) == []


def test_a_second_401_is_not_answered() -> None:
    alice, tid = hand_auth()
    alice.data(r401(tid, MD5_CHAL), T0)
    [m] = parse(alice.outgoing())
    check_credentials(m.get("Authorization"), MD5_CHAL, "MD5")
    alice.data(r401(m.tid, MD5_CHAL), T0)
    assert alice.outgoing() == b""
    assert drain(alice) == [AuthRejected(401, "Unauthorized")]
    alice.data(r401(m.tid, MD5_CHAL), T0)  # the AUTH is over: a stray answer does nothing
    assert drain(alice) == [] and alice.outgoing() == b""


def test_a_401_without_a_usable_challenge_is_rejected() -> None:
    alice, tid = hand_auth()
    alice.data(r401(tid, 'Digest realm="x", nonce="n", algorithm=SHA-512-256', "Basic realm=x"), T0)
    assert alice.outgoing() == b""
    assert drain(alice) == [AuthRejected(401, "Unauthorized")]


def test_qop_list_with_spaces_is_understood() -> None:
    alice, tid = hand_auth()
    chal = 'Digest realm="a.example.org", nonce="n1", qop="auth-int, auth", algorithm=MD5'
    alice.data(r401(tid, chal), T0)
    msgs = parse(alice.outgoing())
    assert [m.method for m in msgs] == ["AUTH"], drain(alice)
    check_credentials(msgs[0].get("Authorization"), chal, "MD5")


def test_auth_200_with_non_ascii_digit_expires() -> None:
    alice, tid = hand_auth()
    ok200 = fr.build_response(tid, 200, "OK", [ALICE], [RELAY], [("Use-Path", A_URI), ("Expires", "\u00b2")])
    alice.data(ok200, T0)
    assert drain(alice) == [Authenticated([A_URI], None)]


def test_report_with_non_ascii_digit_status() -> None:
    _, bob = pair()
    rep = fr.build_request(
        "rep1", "REPORT", [BOB], [ALICE], [("Message-ID", "m9"), ("Status", "000 \u00b200 OK")]
    )
    bob.data(rep, T0)
    assert drain(bob) == [ReportReceived("m9", 0, None)]


def through_relay(algorithms: tuple[str, ...]) -> tuple[Net, MsrpSession, MsrpSession]:
    """Alice logged in on cid 1, Bob on cid 2 connecting to her session URI."""
    net = Net(make_relay(algorithms))
    alice = MsrpSession(ALICE, new_tid=tids("a"))
    net.attach(1, alice)
    alice.authenticate(RELAY, "Alice", PASSWORD)
    net.run()
    [ev] = drain(alice)
    assert isinstance(ev, Authenticated) and ev.use_path == [A_URI]
    bob = MsrpSession(BOB, to_path=[*ev.use_path, ALICE], new_tid=tids("b"))
    alice.to_path = [*ev.use_path, BOB]
    net.attach(2, bob)
    return net, alice, bob


@pytest.mark.parametrize("algorithms", [("MD5",), ("SHA-256", "MD5")])
def test_messages_both_ways_through_the_relay(algorithms: tuple[str, ...]) -> None:
    net, alice, bob = through_relay(algorithms)
    body = pattern(10_000)
    mid = bob.send_message("application/octet-stream", body, T0, success_report=True)
    net.run()
    assert drain(alice) == [MessageReceived(mid, "application/octet-stream", body, [A_URI, BOB])]
    assert drain(bob) == [MessageSent(mid), ReportReceived(mid, 200, (1, 10_000, 10_000))]
    # Bob's 200s came from the relay (hop by hop), Alice's were absorbed by it
    to_bob = [m for c, data in net.down if c == 2 for m in parse(data) if not m.is_request]
    assert len(to_bob) == 5 and {(m.status, tuple(m.from_path)) for m in to_bob} == {(200, (A_URI,))}
    from_alice = [m for c, data in net.up if c == 1 for m in parse(data) if not m.is_request]
    assert len(from_alice) == 5 and {(m.status, tuple(m.to_path)) for m in from_alice} == {(200, (A_URI,))}

    back = body[::-1]
    mid2 = alice.send_message("application/octet-stream", back, T0 + 1)
    net.run(T0 + 1)
    assert drain(bob) == [MessageReceived(mid2, "application/octet-stream", back, [A_URI, ALICE])]
    assert drain(alice) == [MessageSent(mid2)]
    evs = net.relay_events()
    assert not any(isinstance(e, Connect | CloseConnection) for e in evs), evs
    assert net.relay.sessions == {"kjfjan": "BOUND"}
    assert alice.get_timer() is None and bob.get_timer() is None


def test_nickname_through_the_relay_comes_back_end_to_end() -> None:
    net, alice, bob = through_relay(("MD5",))
    nick = fr.build_request("nick1", "NICKNAME", [A_URI, ALICE], [BOB], [("Use-Nickname", '"Bob"')])
    net.relay.data(2, nick, T0)
    net.run()
    [ev] = drain(alice)
    assert isinstance(ev, RequestReceived) and ev.msg.from_path == [A_URI, BOB]
    alice.respond(ev.msg, 200)
    net.run()
    [(cid, data)] = [(c, d) for c, d in net.down if c == 2]
    [m] = parse(data)
    assert (cid, m.tid, m.status, m.to_path, m.from_path) == (2, "nick1", 200, [BOB], [A_URI, ALICE])


def test_message_id_reused_while_in_flight() -> None:
    alice, bob = pair()
    alice.send_message("text/plain", b"one", T0, message_id="dup")
    try:
        alice.send_message("text/plain", b"two", T0, message_id="dup")
    except ValueError:
        return  # refusing a Message-ID that is in flight would be fine too
    run(alice, bob)
    assert drain(alice) == [MessageSent("dup"), MessageSent("dup")]


# ---------------------------------------------------------------- 6. caller errors


def test_send_without_to_path_raises() -> None:
    s = MsrpSession(ALICE)
    with pytest.raises(ValueError, match="To-Path"):
        s.send_message("text/plain", b"x", T0)
    assert s.outgoing() == b""


@pytest.mark.parametrize("bad", ["maybe", "YES", ""])
def test_bad_failure_report_raises(bad: str) -> None:
    alice, _ = pair()
    with pytest.raises(ValueError, match="Failure-Report"):
        alice.send_message("text/plain", b"x", T0, failure_report=bad)
    assert alice.outgoing() == b"" and alice.get_timer() is None


def test_chunk_size_below_one_raises() -> None:
    with pytest.raises(ValueError):
        MsrpSession(ALICE, chunk_size=0)


# ---------------------------------------------------------------- RFC 4975 7.3 and 7.1.1


def test_a_request_not_for_us_gets_481_and_one_from_elsewhere_403() -> None:
    _, bob = pair()
    carol = "msrps://carol.example.com:1/c;tcp"
    bob.data(chunk("wtid1", "m1", 1, b"x", 1, "$", to=("msrps://bob.example.net:8145/other;tcp",)), T0)
    bob.data(chunk("wtid2", "m2", 1, b"x", 1, "$", frm=(carol,)), T0)
    assert [r[:2] for r in responses(bob)] == [("wtid1", 481), ("wtid2", 403)]
    assert drain(bob) == []
    # the scheme and host compare case-insensitively (RFC 4975 6.1), the session id exactly
    bob.data(chunk("wtid3", "m3", 1, b"x", 1, "$", to=("MSRPS://BOB.example.net:8145/foo;tcp",)), T0)
    assert [r[:2] for r in responses(bob)] == [("wtid3", 200)]
    # a REPORT is never answered; a NICKNAME from elsewhere gets its 403 end to end
    bob.data(
        fr.build_request("wtid4", "REPORT", [BOB], [carol], [("Message-ID", "m1"), ("Status", "000 200 OK")]),
        T0,
    )
    bob.data(fr.build_request("wtid5", "NICKNAME", [BOB], [carol]), T0)
    [m] = parse(bob.outgoing())
    assert (m.tid, m.status, m.to_path) == ("wtid5", 403, [carol])
    assert [type(e) for e in drain(bob)] == [MessageReceived]


def test_accept_types_refuse_other_media_with_415() -> None:
    _, bob = pair(accept_types=("text/plain", "message/*"))
    bob.data(chunk("atid1", "m1", 1, b"<p/>", 4, "$", ct="text/html"), T0)
    bob.data(chunk("atid2", "m2", 1, b"hi", 2, "$", ct="message/cpim"), T0)
    bob.data(chunk("atid3", "m3", 1, b"hi", 2, "$", ct="Text/Plain; charset=utf-8"), T0)
    assert [r[:2] for r in responses(bob)] == [("atid1", 415), ("atid2", 200), ("atid3", 200)]
    assert [e.message_id for e in drain(bob)] == ["m2", "m3"]  # type: ignore[union-attr]


def test_bind_sends_a_bodiless_send_that_only_binds() -> None:
    alice, bob = pair()
    mid = alice.bind(T0)
    [m] = parse(alice.outgoing())
    assert (m.method, m.has_content, m.message_id, m.get("Byte-Range")) == ("SEND", False, mid, "1-0/0")
    bob.data(m.to_bytes(), T0)
    assert drain(bob) == []  # nothing to deliver
    alice.data(bob.outgoing(), T0)
    assert drain(alice) == [MessageSent(mid)]


def test_an_incomplete_message_idle_for_max_idle_is_dropped() -> None:
    _, bob = pair(max_idle=90.0)
    c = four_chunks("m1")
    bob.data(c[0], T0)
    bob.data(chunk("itid2", "m2", 1, b"ab", 4, "+"), T0 + 50)
    assert bob.get_timer() == T0 + 90
    bob.handle_timer(T0 + 90)  # m1 is dropped; m2 had a chunk 40 s ago
    assert bob.get_timer() == T0 + 140
    for data in c[1:]:
        bob.data(data, T0 + 91)  # m1 starts again from its second chunk: never whole
    bob.data(chunk("itid3", "m2", 3, b"cd", 4, "$"), T0 + 100)
    assert [e.message_id for e in drain(bob)] == ["m2"]  # type: ignore[union-attr]
