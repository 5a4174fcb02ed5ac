"""NotifyTxns (fanout twins): rendering and the RFC 3261 17.1.2 timers, both twins through ``impl``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from simplefast.sip import parse_message

PREFIX = "z9hG4bKab12w0n"
HEAD = (
    b"From: <sip:alice@example.com>;tag=x1\r\nTo: <sip:bob@example.com>;tag=b1\r\nCall-ID: c1\r\n"
    b"Event: presence\r\n"
)
BODY = b'<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com"/>'


def make(impl: SimpleNamespace, **kw: float) -> Any:
    return impl.fanout.NotifyTxns(PREFIX, **kw)


def send(
    t: Any, now: float, token: Any = "tok", *, reliable: bool = False, body: bytes = BODY, cseq: int = 7
) -> bytes:
    return t.send(b"sip:bob@10.0.0.9:5070", b"SIP/2.0/UDP 10.0.0.1:40000", HEAD, cseq, b"active;expires=600",
                  b"application/pidf+xml", body, ("10.0.0.9", 5070, "c"), reliable, token, now)  # fmt: skip


def test_render_is_a_valid_notify(impl: SimpleNamespace) -> None:
    t = make(impl)
    data = send(t, 0.0)
    m = parse_message(data)
    assert m.method == "NOTIFY" and m.uri == "sip:bob@10.0.0.9:5070"
    assert m.via_branch == PREFIX + "1" and m.cseq_num == 7 and m.cseq_method == "NOTIFY"
    assert (
        m.get("Subscription-State") == "active;expires=600"
        and m.get("Content-Type") == "application/pidf+xml"
    )
    assert m.body == BODY and m.call_id == "c1" and m.from_tag == "x1"
    data = send(t, 0.0, body=b"")
    m = parse_message(data)
    assert m.get("Content-Type") is None and m.get("Content-Length") == "0" and m.via_branch == PREFIX + "2"
    assert len(t) == 2


def test_final_response_returns_the_token_once_and_timer_k_absorbs(impl: SimpleNamespace) -> None:
    t = make(impl)
    m = parse_message(send(t, 0.0, "sub-a"))
    assert t.response(m.via_branch, 100, 0.1) is None  # provisional
    assert t.outstanding == 1
    assert t.response(m.via_branch, 200, 0.2) == "sub-a"
    assert t.response(m.via_branch, 200, 0.3) is None  # retransmitted final: absorbed
    assert len(t) == 1 and t.outstanding == 0  # Timer K holds it
    again, gone = t.poll(5.2)
    assert (again, gone, len(t)) == ([], [], 0)
    assert t.response(m.via_branch, 481, 6.0) is None  # ended


def test_timer_e_doubles_to_t2_and_timer_f_times_out(impl: SimpleNamespace) -> None:
    t = make(impl)
    data = send(t, 0.0, "sub-b")
    fired: list[float] = []
    now = 0.0
    while (d := t.next_deadline()) is not None and d <= 40:
        now = d
        again, gone = t.poll(now)
        fired += [now] * len(again)
        if gone:
            assert gone == ["sub-b"] and now == 32.0
            break
    assert all(a == data for a in [data])
    # T1 0.5, doubling: 0.5 1.5 3.5 7.5 11.5 15.5 ... (capped at T2 = 4) until Timer F at 32
    assert fired[:5] == [0.5, 1.5, 3.5, 7.5, 11.5] and fired[-1] == 31.5
    assert t.timeouts == 1 and t.retransmissions == len(fired) and len(t) == 0


def test_provisional_makes_e_fire_every_t2_and_reliable_has_no_e(impl: SimpleNamespace) -> None:
    t = make(impl)
    m = parse_message(send(t, 0.0))
    t.response(m.via_branch, 180, 0.1)
    again, _ = t.poll(0.5)  # the armed E still fires once
    assert len(again) == 1
    assert t.poll(4.4) == ([], []) and len(t.poll(4.5)[0]) == 1  # then every T2
    r = make(impl)
    m = parse_message(send(r, 0.0, "rel", reliable=True))
    assert r.poll(31.9) == ([], []) and r.poll(32.0) == ([], ["rel"])
    m = parse_message(send(r, 40.0, "rel2", reliable=True))
    assert r.response(m.via_branch, 200, 40.1) == "rel2" and len(r) == 0  # no Timer K


def test_foreign_and_malformed_branches_and_failures(impl: SimpleNamespace) -> None:
    t = make(impl)
    m = parse_message(send(t, 0.0, "tok"))
    for b in [
        "z9hG4bKother1",
        PREFIX,
        PREFIX + "01",
        PREFIX + "1A",
        PREFIX + "g",
        PREFIX + "1" * 17,
        PREFIX + "2",
    ]:
        assert t.response(b, 200, 0.1) is None
    assert t.owns(m.via_branch) and not t.owns("z9hG4bKx")
    assert t.response(m.via_branch, 99, 0.1) is None and t.response(m.via_branch, 700, 0.1) is None
    assert t.failed(m.via_branch) == "tok" and t.failed(m.via_branch) is None and len(t) == 0


def test_errors(impl: SimpleNamespace) -> None:
    with pytest.raises(ValueError, match="z9hG4bK"):
        impl.fanout.NotifyTxns("abc")
    with pytest.raises(ValueError, match="timers"):
        impl.fanout.NotifyTxns(PREFIX, t1=2.0, t2=1.0)
    t = make(impl)
    with pytest.raises(ValueError, match="cseq"):
        send(t, 0.0, cseq=-1)
    with pytest.raises(TypeError):
        send(t, 0.0, cseq=1.5)  # type: ignore[arg-type]
    send(t, 5.0)
    with pytest.raises(ValueError, match="backwards"):
        t.poll(4.0)


def test_table_grows_past_its_first_size(impl: SimpleNamespace) -> None:
    t = make(impl)
    branches = [parse_message(send(t, 0.0, i)).via_branch for i in range(5000)]
    assert len(t) == 5000
    assert [t.response(b, 200, 1.0) for b in branches] == list(range(5000))


def _answer(branch: str, status: int, *, call_id: bool = True) -> bytes:
    cid = "Call-ID: c1\r\n" if call_id else ""
    return (
        f"SIP/2.0 {status} X\r\nVia: SIP/2.0/UDP 10.0.0.1:40000;branch={branch}\r\n"
        f"From: <sip:alice@example.com>;tag=x1\r\nTo: <sip:bob@example.com>;tag=b1\r\n{cid}"
        "CSeq: 7 NOTIFY\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_absorb_takes_what_the_general_path_would_pass_with_a_2xx_or_1xx(impl: SimpleNamespace) -> None:
    t = make(impl)
    codec = impl.sipmsg
    b = [parse_message(send(t, 0.0, f"s{i}")).via_branch for i in range(5)]
    peer = ("10.0.0.9", 5070)
    batch = [
        (_answer(b[0], 200), peer),  # taken
        (_answer(b[1], 481), peer),  # a failure: the notifier acts on it, one by one
        (_answer(b[2], 180), peer),  # taken (provisional)
        (_answer(b[3], 200, call_id=False), peer),  # the general path drops it: left to it
        (b"OPTIONS sip:x SIP/2.0\r\n\r\n", peer),  # a request
        (_answer("z9hG4bKelse1", 200), peer),  # another prefix: not parsed here
        (b"SIP/2.0 200 OK\r\nVia: garbage " + PREFIX.encode() + b"\r\n\r\n", peer),  # malformed
        (_answer(b[4], 202), peer),  # taken
        (_answer(b[0], 200), peer),  # its retransmission: taken (the table absorbs it)
    ]
    args = (codec.parse_message, codec.validate_request)
    assert t.absorb(batch, 0, 0.1, *args) == 1  # stops at what it leaves, in order
    assert t.absorb(batch, 2, 0.1, *args) == 3
    assert t.absorb(batch, 3, 0.1, *args) == 3
    assert [t.absorb(batch, i, 0.1, *args) for i in (4, 5, 6)] == [4, 5, 6]
    assert t.absorb(batch, 7, 0.1, *args) == len(batch)
    assert t.outstanding == 3  # b[1] (481 left), b[3] (its 200 dropped), b[2] (proceeding)
    assert t.response(b[0], 200, 0.2) is None and t.response(b[4], 200, 0.2) is None  # ended
    assert t.response(b[2], 200, 0.2) == "s2"  # the 180 was taken: it is still live
    assert t.response(b[1], 481, 0.2) == "s1"
    assert t.absorb(batch, len(batch), 0.3, *args) == len(batch)
    ahead = [(_answer(PREFIX + "6", 200), peer), (_answer(PREFIX + "5", 200), peer)]
    assert t.absorb(ahead, 0, 0.3, *args) == 0  # 6 is not sent yet: left (a pump may send it)
    assert t.absorb(ahead, 1, 0.3, *args) == 2  # 5 was (a retransmitted 200: taken, nothing to do)
    send(t, 0.3, "s6")
    assert t.outstanding == 2 and t.absorb(ahead, 0, 0.3, *args) == 2 and t.outstanding == 1

    def boom(data: bytes) -> Any:
        raise RuntimeError("a bug in the codec")

    assert t.absorb(batch, 0, 0.3, boom, codec.validate_request) == 0  # left to the general path
    with pytest.raises(ValueError):
        t.absorb([], -1, 0.3, *args)
    with pytest.raises(TypeError):
        t.absorb(tuple(batch), 0, 0.3, *args)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        t.absorb([], 0, 0.0, *args)
