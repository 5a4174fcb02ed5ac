"""RFC 3261 section 17 transactions (simplefast/sip/transaction.py), fake clock."""

from __future__ import annotations

import pytest

from simplefast.sip import build_response, parse_message
from simplefast.sip.timers import TimerQueue
from simplefast.sip.transaction import (
    ACCEPTED,
    COMPLETED,
    CONFIRMED,
    PROCEEDING,
    TRYING,
    AckReceived,
    ClientTransaction,
    RequestReceived,
    ResponseReceived,
    Terminated,
    TimedOut,
    TransactionError,
    TransactionLayer,
)

PEER = ("192.0.2.10", 5060)


def req(method: str = "MESSAGE", branch: str = "z9hG4bKabc", cseq: int = 1, extra: str = "") -> bytes:
    cm = "INVITE" if method == "ACK" else method
    return (
        f"{method} sip:bob@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=ft\r\nTo: <sip:bob@example.com>\r\n"
        f"Call-ID: cid-1\r\nCSeq: {cseq} {cm if method == 'ACK' else method}\r\n"
        "Route: <sip:proxy.example.com;lr>\r\n"
        f"{extra}Content-Length: 0\r\n\r\n"
    ).encode()


def events(tl: TransactionLayer) -> list[object]:
    out = []
    while (ev := tl.next_event()) is not None:
        out.append(ev)
    return out


def run_until(tl: TransactionLayer, end: float) -> list[tuple[float, bytes]]:
    """Fire timers up to ``end``; returns (time, datagram) of what was sent."""
    sent = []
    while (t := tl.get_timer()) is not None and t <= end:
        tl.handle_timer(t)
        sent += [(t, d) for d, _ in tl.datagrams_to_send()]
    return sent


# ---------------------------------------------------------------- timer queue


class Owner:
    def __init__(self) -> None:
        self.tokens = [0, 0]


def test_timer_queue_fires_in_order_and_cancels_lazily() -> None:
    q = TimerQueue()
    a, b, c = Owner(), Owner(), Owner()
    q.add(a, 0, 2.0, now=0.0)
    q.add(b, 1, 1.0, now=0.0)
    q.add(c, 0, 2.0, now=0.5)
    q.cancel(a, 0)
    assert q.next_deadline() == 1.0
    assert q.pop_due(1.0) == [(b, 1)]
    assert q.pop_due(2.4) == []  # a was cancelled
    assert q.pop_due(2.5) == [(c, 0)]
    assert q.next_deadline() is None and len(q) == 0


def test_timer_queue_rearm_replaces_the_old_deadline() -> None:
    q = TimerQueue()
    a = Owner()
    q.add(a, 0, 1.0, now=0.0)
    q.add(a, 0, 4.0, now=0.0)
    assert q.pop_due(1.0) == []
    assert q.pop_due(4.0) == [(a, 0)]


def test_timer_queue_spills_to_heap_past_max_queues() -> None:
    q = TimerQueue(max_queues=2)
    owners = [Owner() for _ in range(5)]
    for i, o in enumerate(owners):
        q.add(o, 0, 10.0 - i, now=0.0)  # five distinct durations: three go to the heap
    got = []
    while (t := q.next_deadline()) is not None:
        got += q.pop_due(t)
    assert got == [(o, 0) for o in reversed(owners)]


def test_timer_queue_pops_only_what_is_due_among_100k() -> None:
    q = TimerQueue()
    owners = [Owner() for _ in range(100_000)]
    for i, o in enumerate(owners):
        q.add(o, 1, 32.0, now=i * 1e-4)  # one arrival every 0.1 ms, like 10k/s
    due = q.pop_due(32.0 + 0.05)
    assert len(due) == 501  # arrivals at 0 .. 0.05 s
    assert len(q) == 100_000 - 501


# ---------------------------------------------------------------- server non-INVITE


def test_server_non_invite_absorbs_retransmissions_and_waits_timer_j() -> None:
    tl = TransactionLayer()
    msg = parse_message(req())
    tl.receive(msg, PEER, reliable=False, now=0.0)
    (ev,) = events(tl)
    assert isinstance(ev, RequestReceived) and ev.msg is msg and ev.peer == PEER
    txn = ev.txn
    assert txn.state == TRYING
    # a retransmission before the TU answers: absorbed, nothing sent
    tl.receive(parse_message(req()), PEER, reliable=False, now=0.2)
    assert events(tl) == [] and tl.datagrams_to_send() == []
    ok = build_response(msg, 200, "OK", to_tag="tt")
    tl.respond(txn, ok, 200, now=0.3)
    assert tl.datagrams_to_send() == [(ok, PEER)]
    assert txn.state == COMPLETED
    # retransmission in Completed: the 200 again
    tl.receive(parse_message(req()), PEER, reliable=False, now=1.0)
    assert tl.datagrams_to_send() == [(ok, PEER)]
    assert tl.retransmissions_absorbed == 2
    # Timer J = 64*T1 after the final response
    assert tl.get_timer() == pytest.approx(0.3 + 32.0)
    run_until(tl, 32.29)
    assert txn.key in tl.server
    run_until(tl, 32.3)
    assert events(tl) == [Terminated(txn)]
    assert tl.server == {}


def test_an_unwatched_server_transaction_ends_without_an_event() -> None:
    tl = TransactionLayer()
    tl.receive(parse_message(req()), PEER, reliable=False, now=0.0)
    (ev,) = events(tl)
    txn = ev.txn  # type: ignore[attr-defined]
    txn.watched = False  # the TU keeps nothing keyed on it (a registrar's answer)
    tl.respond(txn, build_response(ev.msg, 200, "OK", to_tag="w"), 200, now=0.1)  # type: ignore[attr-defined]
    run_until(tl, 40.0)
    assert tl.server == {} and events(tl) == []


def test_timers_from_several_queues_fire_in_deadline_order() -> None:
    class Owner:
        def __init__(self, name: str) -> None:
            self.name, self.tokens = name, [0, 0]

    q = TimerQueue()
    a, b, c, d = Owner("a"), Owner("b"), Owner("c"), Owner("d")
    q.add(a, 0, 32.0, now=0.0)  # 32.0
    q.add(b, 0, 0.5, now=31.0)  # 31.5
    q.add(c, 1, 4.0, now=28.5)  # 32.5
    q.add(d, 0, 0.5, now=31.6)  # 32.1
    assert [(o.name, ch) for o, ch in q.pop_due(40.0)] == [("b", 0), ("a", 0), ("d", 0), ("c", 1)]


def test_server_non_invite_provisional_then_final() -> None:
    tl = TransactionLayer()
    msg = parse_message(req())
    tl.receive(msg, PEER, reliable=False, now=0.0)
    txn = events(tl)[0].txn
    trying = build_response(msg, 100, "Trying")
    tl.respond(txn, trying, 100, now=0.0)
    assert txn.state == PROCEEDING
    tl.receive(parse_message(req()), PEER, reliable=False, now=0.5)
    assert tl.datagrams_to_send() == [(trying, PEER), (trying, PEER)]
    tl.respond(txn, build_response(msg, 202, "Accepted"), 202, now=0.6)
    assert txn.state == COMPLETED
    with pytest.raises(TransactionError, match="cannot send 200 in state completed"):
        tl.respond(txn, build_response(msg, 200, "OK"), 200, now=0.7)


def test_server_non_invite_reliable_terminates_at_once() -> None:
    tl = TransactionLayer()
    msg = parse_message(req())
    tl.receive(msg, "conn-7", reliable=True, now=0.0)
    txn = events(tl)[0].txn
    tl.respond(txn, build_response(msg, 200, "OK"), 200, now=0.0)
    assert events(tl) == [Terminated(txn)] and tl.server == {}
    assert tl.get_timer() is None


def test_server_keys_distinguish_sent_by_and_method() -> None:
    tl = TransactionLayer()
    a = parse_message(req())
    b = parse_message(req().replace(b"192.0.2.10:5060;", b"192.0.2.11:5060;"))
    c = parse_message(req("OPTIONS"))
    for m in (a, b, c):
        tl.receive(m, PEER, reliable=False, now=0.0)
    assert [type(e) for e in events(tl)] == [RequestReceived] * 3
    assert len(tl.server) == 3


def test_rfc2543_branch_without_cookie_still_matches_retransmissions() -> None:
    tl = TransactionLayer()
    data = req(branch="oldstyle1")
    tl.receive(parse_message(data), PEER, reliable=False, now=0.0)
    tl.receive(parse_message(data), PEER, reliable=False, now=0.5)
    assert len(events(tl)) == 1 and tl.retransmissions_absorbed == 1


# ---------------------------------------------------------------- server INVITE


def test_server_invite_sends_100_and_retransmits_non_2xx_until_ack() -> None:
    tl = TransactionLayer()
    msg = parse_message(req("INVITE"))
    tl.receive(msg, PEER, reliable=False, now=0.0)
    (sent,) = tl.datagrams_to_send()
    assert sent[0].startswith(b"SIP/2.0 100 Trying\r\n")
    txn = events(tl)[0].txn
    assert txn.state == PROCEEDING
    busy = build_response(msg, 486, "Busy Here", to_tag="x")
    tl.respond(txn, busy, 486, now=1.0)
    assert txn.state == COMPLETED
    tl.datagrams_to_send()
    # Timer G: T1, 2T1, 4T1, T2, T2 ... after the response
    times = [t for t, _ in run_until(tl, 1.0 + 12.0)]
    assert times == pytest.approx([1.5, 2.5, 4.5, 8.5, 12.5])
    ack = parse_message(req("ACK"))
    tl.receive(ack, PEER, reliable=False, now=13.0)
    assert txn.state == CONFIRMED
    assert events(tl) == []  # the ACK of a non-2xx is the transaction's
    assert run_until(tl, 17.9) == []  # no more retransmissions; Timer I = T4
    run_until(tl, 18.0)
    assert events(tl) == [Terminated(txn)]


def test_server_invite_timer_h_reports_timeout() -> None:
    tl = TransactionLayer()
    msg = parse_message(req("INVITE"))
    tl.receive(msg, PEER, reliable=False, now=0.0)
    txn = events(tl)[0].txn
    tl.respond(txn, build_response(msg, 404, "Not Found", to_tag="x"), 404, now=0.0)
    run_until(tl, 32.0)
    assert events(tl) == [TimedOut(txn), Terminated(txn)]


def test_server_invite_2xx_accepted_state_rfc6026() -> None:
    tl = TransactionLayer()
    msg = parse_message(req("INVITE"))
    tl.receive(msg, PEER, reliable=False, now=0.0)
    txn = events(tl)[0].txn
    ok = build_response(msg, 200, "OK", to_tag="x")
    tl.respond(txn, ok, 200, now=0.1)
    assert txn.state == ACCEPTED
    tl.respond(txn, ok, 200, now=0.6)  # the TU retransmits its 2xx through the layer
    tl.datagrams_to_send()
    tl.receive(parse_message(req("INVITE")), PEER, reliable=False, now=0.7)
    assert tl.datagrams_to_send() == []  # absorbed in Accepted
    ack = parse_message(req("ACK"))
    tl.receive(ack, PEER, reliable=False, now=0.8)
    assert events(tl) == [AckReceived(ack, PEER)]
    run_until(tl, 32.1)  # Timer L from the first 2xx
    assert events(tl) == [Terminated(txn)]
    # a late ACK of the 2xx still reaches the TU
    tl.receive(ack, PEER, reliable=False, now=40.0)
    assert events(tl) == [AckReceived(ack, PEER)]


def test_cancel_finds_its_invite() -> None:
    tl = TransactionLayer()
    inv = parse_message(req("INVITE"))
    tl.receive(inv, PEER, reliable=False, now=0.0)
    txn = events(tl)[0].txn
    cancel = parse_message(req("CANCEL"))
    tl.receive(cancel, PEER, reliable=False, now=0.1)
    (ev,) = events(tl)
    assert isinstance(ev, RequestReceived) and ev.txn is not txn
    assert tl.find_server(cancel, "INVITE") is txn


# ---------------------------------------------------------------- client non-INVITE


def test_client_non_invite_timer_e_and_f() -> None:
    tl = TransactionLayer()
    data = req(branch=tl.new_branch())
    txn = tl.request(data, PEER, reliable=False, now=0.0)
    assert tl.datagrams_to_send() == [(data, PEER)]
    times = [t for t, d in run_until(tl, 31.9)]
    # E: 0.5, 1, 2, 4, then every T2 = 4 s until F at 32 s
    assert times == pytest.approx([0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5])
    run_until(tl, 32.0)
    assert events(tl) == [TimedOut(txn), Terminated(txn)]
    assert tl.client == {}


def test_client_non_invite_final_response_then_timer_k() -> None:
    tl = TransactionLayer()
    data = req(branch=tl.new_branch())
    txn = tl.request(data, PEER, reliable=False, now=0.0)
    tl.datagrams_to_send()
    resp = parse_message(build_response(parse_message(data), 180, "Ringing"))
    tl.receive(resp, PEER, reliable=False, now=0.2)
    assert events(tl) == [ResponseReceived(txn, resp, PEER)]
    # Proceeding: E fires every T2 from now on
    assert [t for t, _ in run_until(tl, 4.6)] == pytest.approx([0.5, 4.5])
    final = parse_message(build_response(parse_message(data), 200, "OK"))
    tl.receive(final, PEER, reliable=False, now=5.0)
    assert events(tl) == [ResponseReceived(txn, final, PEER)]
    tl.receive(final, PEER, reliable=False, now=5.1)  # retransmitted final: absorbed
    assert events(tl) == []
    assert run_until(tl, 9.9) == []
    run_until(tl, 10.0)  # Timer K = T4
    assert events(tl) == [Terminated(txn)]


def test_client_reliable_has_no_retransmissions() -> None:
    tl = TransactionLayer()
    data = req(branch=tl.new_branch())
    txn = tl.request(data, "conn", reliable=True, now=0.0)
    tl.datagrams_to_send()
    assert run_until(tl, 31.9) == []
    final = parse_message(build_response(parse_message(data), 200, "OK"))
    tl.receive(final, "conn", reliable=True, now=1.0)
    assert events(tl) == [ResponseReceived(txn, final, "conn"), Terminated(txn)]


def test_stray_response_goes_to_the_tu() -> None:
    tl = TransactionLayer()
    resp = parse_message(build_response(parse_message(req()), 200, "OK"))
    tl.receive(resp, PEER, reliable=False, now=0.0)
    assert events(tl) == [ResponseReceived(None, resp, PEER)]


def test_client_request_needs_a_fresh_cookie_branch() -> None:
    tl = TransactionLayer()
    with pytest.raises(TransactionError, match="branch"):
        tl.request(req(branch="nocookie"), PEER, reliable=False, now=0.0)
    b = tl.new_branch()
    tl.request(req(branch=b), PEER, reliable=False, now=0.0)
    with pytest.raises(TransactionError, match="already used"):
        tl.request(req(branch=b), PEER, reliable=False, now=0.0)
    with pytest.raises(TransactionError, match="ACK"):
        tl.request(req("ACK", branch=tl.new_branch()), PEER, reliable=False, now=0.0)


def test_branches_are_unique_and_carry_the_cookie() -> None:
    a, b = TransactionLayer(), TransactionLayer()
    seen = {a.new_branch() for _ in range(1000)} | {b.new_branch() for _ in range(1000)}
    assert len(seen) == 2000 and all(s.startswith("z9hG4bK") for s in seen)


# ---------------------------------------------------------------- client INVITE


def test_client_invite_timer_a_b() -> None:
    tl = TransactionLayer()
    data = req("INVITE", branch=tl.new_branch())
    txn = tl.request(data, PEER, reliable=False, now=0.0)
    tl.datagrams_to_send()
    times = [t for t, _ in run_until(tl, 31.9)]
    assert times == pytest.approx([0.5, 1.5, 3.5, 7.5, 15.5, 31.5])  # A doubles, no cap
    run_until(tl, 32.0)
    assert events(tl) == [TimedOut(txn), Terminated(txn)]


def test_client_invite_non_2xx_gets_an_ack_and_timer_d() -> None:
    tl = TransactionLayer()
    data = req("INVITE", branch=tl.new_branch())
    txn = tl.request(data, PEER, reliable=False, now=0.0)
    tl.datagrams_to_send()
    sent = parse_message(data)
    busy = parse_message(build_response(sent, 486, "Busy Here", to_tag="callee"))
    tl.receive(busy, PEER, reliable=False, now=0.1)
    assert events(tl) == [ResponseReceived(txn, busy, PEER)]
    ((ack_bytes, to),) = tl.datagrams_to_send()
    ack = parse_message(ack_bytes)
    assert to == PEER and ack.method == "ACK" and ack.uri == "sip:bob@example.com"
    assert ack.via_branch == sent.via_branch and ack.to_tag == "callee" and ack.from_tag == "ft"
    assert (ack.cseq_num, ack.cseq_method) == (1, "ACK")
    assert ack.get_all("Route") == ["<sip:proxy.example.com;lr>"]
    tl.receive(busy, PEER, reliable=False, now=0.5)  # retransmitted 486: the ACK again
    assert tl.datagrams_to_send() == [(ack_bytes, PEER)] and events(tl) == []
    run_until(tl, 32.1)  # Timer D
    assert events(tl) == [Terminated(txn)]


def test_client_invite_2xx_retransmissions_reach_the_tu() -> None:
    tl = TransactionLayer()
    data = req("INVITE", branch=tl.new_branch())
    txn = tl.request(data, PEER, reliable=False, now=0.0)
    ok = parse_message(build_response(parse_message(data), 200, "OK", to_tag="c"))
    tl.receive(ok, PEER, reliable=False, now=0.1)
    tl.receive(ok, PEER, reliable=False, now=0.6)
    assert events(tl) == [ResponseReceived(txn, ok, PEER)] * 2
    assert txn.state == ACCEPTED
    run_until(tl, 32.2)  # Timer M
    assert events(tl) == [Terminated(txn)]
    assert isinstance(txn, ClientTransaction) and tl.client == {}
