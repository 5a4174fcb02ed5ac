"""Proxy core (RFC 3261 section 16) through SipCore, sans-IO with a fake clock."""

from __future__ import annotations

from simplefast.proxy.core import CoreConfig, SipCore
from simplefast.proxy.location import MemoryLocation
from simplefast.proxy.proxy import ProxyAddress
from simplefast.sip import build_response, parse_message

ME = ProxyAddress("10.0.0.1", 5060, 40000)
UAC = ("192.0.2.1", 5070)


def core() -> SipCore:
    return SipCore(CoreConfig(domains=frozenset({"example.com"}), local_hosts=frozenset({"10.0.0.1"})),
                   MemoryLocation(), ME)  # fmt: skip


def req(method: str, uri: str = "sip:bob@example.com", *, branch: str = "z9hG4bKu1", extra: str = "",
        mf: int = 70, cseq: int = 1, call_id: str = "c1") -> bytes:  # fmt: skip
    return (
        f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch={branch};rport\r\n"
        f"Max-Forwards: {mf}\r\nFrom: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n{extra}Content-Length: 2\r\n\r\nhi"
    ).encode()


def register(c: SipCore, user: str, contact: str, q: str = "", now: float = 0.0) -> None:
    h = abs(hash(contact))
    data = (
        f"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKr{h}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=r\r\nTo: <sip:{user}@example.com>\r\n"
        f"Call-ID: reg-{h}\r\nCSeq: 1 REGISTER\r\nContact: <{contact}>{q}\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    c.on_message(data, ("192.0.2.9", 5060), reliable=False, now=now)
    ((resp, _),) = c.outgoing()
    assert parse_message(resp).status == 200


def sent(c: SipCore) -> list[tuple[object, object]]:
    return [(parse_message(d), p) for d, p in c.outgoing()]


def test_message_is_forwarded_to_the_binding_and_the_200_comes_back() -> None:
    c = core()
    register(c, "bob", "sip:bob@192.0.2.20:5080")
    c.on_message(req("MESSAGE"), UAC, reliable=False, now=1.0)
    ((fwd, dest),) = sent(c)
    assert dest == ("192.0.2.20", 5080, "c")
    assert fwd.uri == "sip:bob@192.0.2.20:5080" and fwd.max_forwards == 69 and fwd.body == b"hi"
    top, orig = fwd.vias()
    assert (top.host, top.port) == ("10.0.0.1", 40000) and top.branch.startswith("z9hG4bK")
    assert orig.branch == "z9hG4bKu1"
    assert orig.params["rport"] == "5070" and orig.params["received"] == "192.0.2.1"  # RFC 3581
    assert fwd.get("Record-Route") is None  # MESSAGE does not make a dialog
    ok = build_response(fwd, 200, "OK", to_tag="b")
    c.on_message(ok, ("192.0.2.20", 5080), reliable=False, now=1.1)
    ((up, to),) = sent(c)
    assert to == UAC and up.status == 200 and [v.branch for v in up.vias()] == ["z9hG4bKu1"]
    assert up.via_rport == 5070


def test_subscribe_gets_record_route_and_path_becomes_route() -> None:
    c = core()
    data = (
        b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKp\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=r\r\nTo: <sip:bob@example.com>\r\n"
        b"Call-ID: p\r\nCSeq: 1 REGISTER\r\n"
        b"Path: <sip:192.0.2.50:5090;lr>\r\nContact: <sip:bob@198.51.100.7>\r\nContent-Length: 0\r\n\r\n"
    )
    c.on_message(data, ("192.0.2.9", 5060), reliable=False, now=0.0)
    c.outgoing()
    c.on_message(req("SUBSCRIBE", extra="Event: presence\r\nExpires: 600\r\n"), UAC, reliable=False, now=1.0)
    ((fwd, dest),) = sent(c)
    assert dest == ("192.0.2.50", 5090, "c")  # the Path hop first (RFC 3327)
    assert fwd.get("Record-Route") == "<sip:10.0.0.1:5060;lr>"
    assert fwd.get_all("Route") == ["<sip:192.0.2.50:5090;lr>"]


def test_our_route_is_removed_and_the_next_route_is_the_next_hop() -> None:
    c = core()
    extra = "Route: <sip:10.0.0.1:5060;lr>, <sip:192.0.2.30:5080;lr>\r\n"
    c.on_message(req("BYE", "sip:bob@198.51.100.7", extra=extra), UAC, reliable=False, now=0.0)
    ((fwd, dest),) = sent(c)
    assert dest == ("192.0.2.30", 5080, "c")
    assert fwd.uri == "sip:bob@198.51.100.7" and fwd.get_all("Route") == ["<sip:192.0.2.30:5080;lr>"]


def test_strict_router_before_us() -> None:
    c = core()
    # previous hop put our Record-Route URI in the Request-URI and the target in the last Route
    extra = "Route: <sip:bob@198.51.100.7:5062>\r\n"
    c.on_message(req("BYE", "sip:10.0.0.1:5060;lr", extra=extra), UAC, reliable=False, now=0.0)
    ((fwd, dest),) = sent(c)
    assert fwd.uri == "sip:bob@198.51.100.7:5062" and dest == ("198.51.100.7", 5062, "c")
    assert fwd.get("Route") is None


def test_max_forwards_zero_gets_483_and_unregistered_480() -> None:
    c = core()
    c.on_message(req("MESSAGE", mf=0), UAC, reliable=False, now=0.0)
    ((resp, to),) = sent(c)
    assert (resp.status, to) == (483, UAC)
    c.on_message(req("MESSAGE", branch="z9hG4bKu2"), UAC, reliable=False, now=0.0)
    assert [m.status for m, _ in sent(c)] == [480]


def test_proxy_require_we_lack_gets_420_with_unsupported() -> None:
    """RFC 3261 16.3 step 5: a Proxy-Require tag the proxy does not support is a 420 listing
    it in Unsupported, and nothing is forwarded; a supported one (path) is forwarded."""
    c = core()
    register(c, "bob", "sip:bob@192.0.2.20:5080")
    c.on_message(req("MESSAGE", extra="Proxy-Require: foo, path\r\n"), UAC, reliable=False, now=1.0)
    ((resp, to),) = sent(c)
    assert (resp.status, to, resp.get("Unsupported")) == (420, UAC, "foo")
    c.on_message(
        req("MESSAGE", branch="z9hG4bKu2", extra="Proxy-Require: path\r\n"), UAC, reliable=False, now=1.0
    )
    ((fwd, dest),) = sent(c)
    assert fwd.method == "MESSAGE" and dest == ("192.0.2.20", 5080, "c")
    assert fwd.get("Proxy-Require") == "path"  # passed on as it came


def test_a_request_coming_back_is_a_loop() -> None:
    c = core()
    register(c, "bob", "sip:bob@example.com")  # the binding points back at our own domain
    c.on_message(req("MESSAGE"), UAC, reliable=False, now=1.0)
    ((fwd_bytes, _),) = c.outgoing()
    fwd = parse_message(fwd_bytes)
    # it cannot be sent to a host name yet: 503 upstream instead
    assert fwd.status == 503
    c2 = core()
    register(c2, "bob", "sip:bob@10.0.0.1:5060")  # the binding is ourselves
    c2.on_message(req("MESSAGE", uri="sip:carol@192.0.2.99"), UAC, reliable=False, now=1.0)
    ((out, _),) = c2.outgoing()
    # feed our own forwarded request back in, as a looping network would
    c2.on_message(out, ("10.0.0.1", 40000), reliable=False, now=1.1)
    assert [m.status for m, _ in sent(c2)] == [482]


def test_no_answer_gives_408_after_timer_f() -> None:
    c = core()
    register(c, "bob", "sip:bob@192.0.2.20")
    c.on_message(req("MESSAGE"), UAC, reliable=False, now=0.0)
    c.outgoing()
    while (t := c.get_timer()) is not None and t <= 40.0:
        c.handle_timer(t)
    ups = [m for m, to in sent(c) if to == UAC]
    assert [m.status for m in ups] == [408]


def test_forking_picks_the_best_final_response() -> None:
    c = core()
    register(c, "bob", "sip:bob@192.0.2.20")
    register(c, "bob", "sip:bob@192.0.2.21", q=";q=0.5")
    c.on_message(req("MESSAGE"), UAC, reliable=False, now=1.0)
    branches = sent(c)
    assert [d for _, d in branches] == [("192.0.2.20", 5060, "c"), ("192.0.2.21", 5060, "c")]
    (a, _), (b, _) = branches
    c.on_message(
        build_response(a, 486, "Busy Here", to_tag="x"), ("192.0.2.20", 5060), reliable=False, now=1.1
    )
    assert sent(c) == []  # waits for the other branch
    c.on_message(
        build_response(b, 404, "Not Found", to_tag="y"), ("192.0.2.21", 5060), reliable=False, now=1.2
    )
    assert [m.status for m, _ in sent(c)] == [404]


def test_cancel_is_answered_and_sent_down_every_pending_branch() -> None:
    c = core()
    register(c, "bob", "sip:bob@192.0.2.20")
    c.on_message(req("INVITE"), UAC, reliable=False, now=0.0)
    out = sent(c)
    trying = [m for m, to in out if to == UAC]
    (fwd,) = [m for m, to in out if to != UAC]
    assert [m.status for m in trying] == [100]
    c.on_message(req("CANCEL"), UAC, reliable=False, now=0.5)
    out = sent(c)
    assert [m.status for m, to in out if to == UAC] == [200]
    (cancel,) = [m for m, to in out if to != UAC]
    assert cancel.method == "CANCEL" and cancel.via_branch == fwd.via_branch and cancel.uri == fwd.uri
    # the callee answers the INVITE with 487; it goes upstream
    c.on_message(build_response(fwd, 487, "Request Terminated", to_tag="z"), ("192.0.2.20", 5060),
                 reliable=False, now=0.6)  # fmt: skip
    ups = [m for m, to in sent(c) if to == UAC]
    assert [m.status for m in ups] == [487]


def test_cancel_without_invite_is_481() -> None:
    c = core()
    c.on_message(req("CANCEL"), UAC, reliable=False, now=0.0)
    assert [m.status for m, _ in sent(c)] == [481]


def test_overloaded_core_sheds_new_requests_with_503_retry_after() -> None:
    c = core()
    c.on_message(req("MESSAGE", branch="z9hG4bKbefore"), UAC, reliable=False, now=0.0)
    assert [m.status for m, _ in sent(c)] == [480]
    c.overloaded = True
    c.on_message(req("MESSAGE", branch="z9hG4bKshed"), UAC, reliable=False, now=0.1)
    ((resp, to),) = sent(c)
    assert (resp.status, resp.get("Retry-After"), to) == (503, "5", UAC)
    assert "z9hG4bKshed" not in {k[0] for k in c.tl.server}  # no transaction was made
    # a retransmission of a request already in a transaction is still absorbed and answered
    c.on_message(req("MESSAGE", branch="z9hG4bKbefore"), UAC, reliable=False, now=0.2)
    assert [m.status for m, _ in sent(c)] == [480]
    assert c.stats.shed == 1


def test_shedding_spares_what_continues_or_ends_accepted_work() -> None:
    """In-dialog requests, CANCEL, BYE and a PUBLISH with SIP-If-Match are served under
    overload (no 503); an initial PUBLISH is shed."""
    c = core()
    c.overloaded = True
    c.on_message(req("MESSAGE", branch="z9hG4bKnew"), UAC, reliable=False, now=0.0)
    c.on_message(
        req("PUBLISH", branch="z9hG4bKpub", extra="Event: presence\r\n"), UAC, reliable=False, now=0.0
    )
    assert [m.status for m, _ in sent(c)] == [503, 503]
    in_dialog = req("MESSAGE", branch="z9hG4bKdlg").replace(b"bob@example.com>", b"bob@example.com>;tag=t1")
    modify = req("PUBLISH", branch="z9hG4bKmod", extra="Event: presence\r\nSIP-If-Match: e1\r\n")
    for data in (in_dialog, req("BYE", branch="z9hG4bKbye"), req("CANCEL", branch="z9hG4bKcan"), modify):
        c.on_message(data, UAC, reliable=False, now=0.1)
        assert 503 not in [m.status for m, _ in sent(c) if not m.is_request], data[:8]
    assert c.stats.shed == 2


def test_partial_shedding_follows_the_call_id() -> None:
    c = core()
    c.shed_fraction = 0.5
    fates = {}
    for i in range(200):
        c.on_message(req("MESSAGE", branch=f"z9hG4bKp{i}", call_id=f"cid{i}"), UAC, reliable=False, now=0.0)
        fates[i] = [m.status for m, _ in sent(c)]
    shed = [i for i, st in fates.items() if st == [503]]
    assert 60 < len(shed) < 140 and all(st in ([503], [480]) for st in fates.values())
    # a retransmission of a shed request (no transaction was made) is shed again
    for i in shed[:5]:
        c.on_message(req("MESSAGE", branch=f"z9hG4bKp{i}", call_id=f"cid{i}"), UAC, reliable=False, now=0.1)
        assert [m.status for m, _ in sent(c)] == [503]


def test_overload_monitor_reads_the_kernel_queue() -> None:
    import asyncio
    import socket

    from simplefast.transport.udp import OverloadMonitor

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    loop = asyncio.new_event_loop()
    try:
        c = core()
        mon = OverloadMonitor(c, loop, rx, high=2000, low=500, sustain=2)
        assert mon.queued() == 0
        for _ in range(10):
            tx.sendto(b"x" * 400, rx.getsockname())
        assert mon.queued() > 2000  # datagrams wait, with their kernel overhead
        mon._tick()
        assert not c.overloaded  # one reading is a burst
        mon._tick()
        assert c.overloaded and mon.episodes == 1
        while True:
            rx.setblocking(False)
            try:
                rx.recv(1000)
            except BlockingIOError:
                break
        mon._tick()
        assert not c.overloaded
        mon.stop()
    finally:
        loop.close()
        rx.close()
        tx.close()


def test_a_batch_that_waited_past_the_delay_limit_sheds_its_new_requests() -> None:
    """Shedding by queueing delay (UdpPort.set_delay_limit): real sockets, the kernel's
    receive times; a batch whose first datagram waited past the limit gets 503s, the next
    fresh one is served."""
    import asyncio
    import socket
    import time

    from simplefast.transport.driver import CoreDriver
    from simplefast.transport.udp import SO_TIMESTAMPNS, UdpPort

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    tx.settimeout(2.0)
    loop = asyncio.new_event_loop()
    try:
        c = core()
        out: list[bytes] = []
        driver = CoreDriver(c, loop, lambda data, peer: out.append(data))
        port = UdpPort(rx, driver, 0, loop)
        port.set_delay_limit(0.05)
        time.sleep(0.05)  # the kernel turns receive timestamps on lazily
        for i in range(3):
            tx.sendto(req("MESSAGE", branch=f"z9hG4bKd{i}", call_id=f"d{i}"), rx.getsockname())
        time.sleep(0.2)  # they wait past the limit
        port._readable()
        assert [parse_message(d).status for d in out] == [503, 503, 503] and port.late_batches == 1
        assert all(parse_message(d).get("Retry-After") for d in out)
        assert not c.overloaded  # for that batch only: a stream or a hand-off is judged afresh
        out.clear()
        tx.sendto(req("MESSAGE", branch="z9hG4bKfresh", call_id="fresh"), rx.getsockname())
        time.sleep(0.005)
        port._readable()
        assert 503 not in [parse_message(d).status for d in out if not parse_message(d).is_request]
        assert not c.overloaded and port.late_batches == 1
        port.set_delay_limit(0)
        assert rx.getsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS) == 0
    finally:
        loop.close()
        rx.close()
        tx.close()


def test_response_with_vias_on_one_line_loses_only_ours() -> None:
    from simplefast.proxy.proxy import _without_top_via

    resp = parse_message(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:40000;branch=z9hG4bKours ,  SIP/2.0/UDP 192.0.2.1:5070"
        b";branch=z9hG4bKu1;received=192.0.2.1\r\nv: SIP/2.0/TCP 192.0.2.7;branch=z9hG4bKthird\r\n"
        b"From: <sip:a@example.com>;tag=a\r\nTo: <sip:b@example.com>;tag=b\r\nCall-ID: c\r\n"
        b"CSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
    )
    up = parse_message(_without_top_via(resp) or b"")
    assert [v.branch for v in up.vias()] == ["z9hG4bKu1", "z9hG4bKthird"]
    one = parse_message(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:40000;branch=z9hG4bKours\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKu1\r\nCall-ID: c\r\nContent-Length: 0\r\n\r\n"
    )
    assert parse_message(_without_top_via(one) or b"").get_all("Via") == [
        "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKu1"
    ]


def test_ack_and_cancel_without_their_invite_go_round_the_ring() -> None:
    c = core()
    handed: list[tuple[bytes, object, int]] = []
    c.handoff = lambda data, peer, hops: handed.append((data, peer, hops))
    c.handoff_limit = 2  # three workers: two others to ask
    cancel = req("CANCEL", branch="z9hG4bKelsewhere")
    c.on_message(cancel, UAC, reliable=False, now=0.0)
    assert handed == [(cancel, UAC, 1)] and sent(c) == []  # passed on, not answered here
    c.on_message(cancel, UAC, reliable=False, now=0.0, hops=1)
    assert handed[-1] == (cancel, UAC, 2)
    c.on_message(cancel, UAC, reliable=False, now=0.0, hops=2)  # the last worker: unmatched
    assert [m.status for m, _ in sent(c)] == [481] and len(handed) == 2
    # with its INVITE here, a CANCEL stays here
    register(c, "bob", "sip:bob@192.0.2.20")
    c.on_message(req("INVITE"), UAC, reliable=False, now=1.0)
    c.outgoing()
    c.on_message(req("CANCEL"), UAC, reliable=False, now=1.1)
    assert len(handed) == 2 and 200 in [m.status for m, to in sent(c) if to == UAC]
    assert c.stats.handed_off == 2


def test_malformed_q_value_is_refused_with_400() -> None:
    c = core()
    for q, status in (("0.5", 200), ("1.000", 200), ("0.1234", 400), ("1.5", 400), ("nan", 400), ("-0", 400)):
        data = (
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKq" + q + "\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:qq@example.com>;tag=r\r\nTo: <sip:qq@example.com>\r\n"
            f"Call-ID: q-{q}\r\nCSeq: 1 REGISTER\r\nContact: <sip:qq@192.0.2.1>;q={q}\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        c.on_message(data, ("192.0.2.9", 5060), reliable=False, now=0.0)
        ((resp, _),) = sent(c)
        assert resp.status == status, (q, resp.status)
        if status == 400:
            assert "is not a qvalue" in (resp.get("Warning") or "")


# ---------------------------------------------------------------- streams (simplefast/sip/peer.py)
def register_over_stream(c: SipCore, user: str, contact: str, peer: tuple[object, ...]) -> None:
    data = (
        f"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.9:5060;branch=z9hG4bKs{user}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=r\r\nTo: <sip:{user}@example.com>\r\n"
        f"Call-ID: sreg-{user}\r\nCSeq: 1 REGISTER\r\nContact: <{contact}>\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    c.on_message(data, peer, reliable=True, now=0.0)
    ((resp, to),) = c.outgoing()
    assert parse_message(resp).status == 200 and to == peer  # the answer goes back on the connection


def test_a_contact_registered_over_a_connection_is_reached_on_that_connection() -> None:
    c = core()
    conn = ("192.0.2.9", 41000, "tcp", (1 << 40) | 7)  # an ephemeral port; worker 1's connection 7
    register_over_stream(c, "bob", "sip:bob@192.0.2.9:5060;transport=tcp", conn)
    c.on_message(req("MESSAGE"), UAC, reliable=False, now=1.0)
    ((fwd, dest),) = sent(c)
    # the connection id is kept; the contact's address is the way back if it is gone
    assert dest == ("192.0.2.9", 5060, "tcp", (1 << 40) | 7)
    top = fwd.vias()[0]
    assert top.transport == "TCP" and (top.host, top.port) == ("10.0.0.1", 5060)
    # reliable transport: no retransmission (Timer E off); Timer F still bounds the wait
    while (t := c.get_timer()) is not None and t <= 20.0:
        c.handle_timer(t)
    assert [d for _, d in c.outgoing()] == []


def test_transport_param_and_sips_choose_the_stream_and_dialogs_get_double_record_route() -> None:
    listeners = (("udp", "10.0.0.1", 5060), ("tcp", "10.0.0.1", 5060), ("tls", "10.0.0.1", 5061))
    me = ProxyAddress("10.0.0.1", 5060, 40000, listeners=listeners)
    c = SipCore(CoreConfig(domains=frozenset({"example.com"})), MemoryLocation(), me)
    register(c, "bob", "sip:bob@192.0.2.20:5070;transport=tcp")
    register(c, "carol", "sips:carol@192.0.2.21")
    c.on_message(req("INVITE"), UAC, reliable=False, now=1.0)
    out = [(m, d) for m, d in sent(c) if d != UAC]  # less the 100 Trying
    ((fwd, dest),) = out
    assert dest == ("192.0.2.20", 5070, "tcp", 0)
    assert fwd.vias()[0].transport == "TCP"
    # UDP in, TCP out: two Record-Route values, the callee's side first (RFC 5658)
    assert fwd.get_all("Record-Route") == ["<sip:10.0.0.1:5060;transport=tcp;lr>", "<sip:10.0.0.1:5060;lr>"]
    c.on_message(req("MESSAGE", "sip:carol@example.com", branch="z9hG4bKsips"), UAC, reliable=False, now=1.0)
    ((fwd2, dest2),) = sent(c)
    assert dest2 == ("192.0.2.21", 5061, "tls", 0) and fwd2.vias()[0].transport == "TLS"
    assert fwd2.vias()[0].port == 5061
    # an in-dialog request carrying both of our Record-Route values as Route: both removed
    extra = "Route: <sip:10.0.0.1:5060;transport=tcp;lr>, <sip:10.0.0.1:5060;lr>, <sip:192.0.2.30;lr>\r\n"
    c.on_message(req("BYE", "sip:bob@192.0.2.20:5070", branch="z9hG4bKbye", extra=extra), UAC,
                 reliable=False, now=2.0)  # fmt: skip
    ((bye, dest3),) = sent(c)
    assert dest3 == ("192.0.2.30", 5060, "c") and bye.get_all("Route") == ["<sip:192.0.2.30;lr>"]


def test_a_transport_failure_answers_503_at_once() -> None:
    c = core()
    register(c, "bob", "sip:bob@192.0.2.20:5070;transport=tcp")
    c.on_message(req("MESSAGE"), UAC, reliable=False, now=1.0)
    ((data, dest),) = c.outgoing()
    c.transport_error(data, now=1.1)  # the connection could not be opened (RFC 3261 16.9)
    ((resp, to),) = sent(c)
    assert (resp.status, to) == (503, UAC)
    c.transport_error(data, now=1.2)  # a second report of the same request changes nothing
    assert sent(c) == []


def test_a_response_with_another_workers_branch_is_handed_to_that_worker() -> None:
    from simplefast.proxy.core import branch_owner, branch_prefix
    from simplefast.sip.transaction import TransactionLayer

    assert branch_owner("z9hG4bK" + branch_prefix(3) + ".1f.abc") == 3
    assert branch_owner("z9hG4bKu1") is None and branch_owner("z9hG4bKwx") is None
    c = SipCore(CoreConfig(domains=frozenset({"example.com"})), MemoryLocation(), ME,
                tl=TransactionLayer(branch_prefix=branch_prefix(0)))  # fmt: skip
    c.index = 0
    handed: list[tuple[int, bytes, object]] = []
    c.route_response = lambda i, d, p: handed.append((i, d, p))
    other = parse_message(req("MESSAGE", branch="z9hG4bK" + branch_prefix(1) + ".5.loop"))
    resp = build_response(other, 200, "OK", to_tag="t")
    conn = ("192.0.2.9", 41000, "tcp", 42)
    c.on_message(resp, conn, reliable=True, now=0.0)
    assert handed == [(1, resp, conn)] and c.outgoing() == []
    # a stray response with a branch of ours is not handed anywhere
    ours = parse_message(req("MESSAGE", branch="z9hG4bK" + branch_prefix(0) + ".9"))
    mine = build_response(ours, 200, "OK")
    c.on_message(mine, conn, reliable=True, now=0.0)
    assert len(handed) == 1


def test_peer_flows_round_trip() -> None:
    from simplefast.sip.peer import flow_of, owner_of, stream_of_flow, transport_of

    cid = (5 << 40) | 99
    assert flow_of(("2001:db8::1", 5060, "tls", cid)) == f"tls:2001:db8::1:5060/{cid}"
    assert stream_of_flow(flow_of(("2001:db8::1", 5060, "tls", cid))) == ("tls", "2001:db8::1", 5060, cid)
    assert owner_of(cid) == 5 and transport_of(("h", 1, "c")) == "udp" and transport_of(("h", 1)) == "udp"
    assert stream_of_flow(flow_of(("192.0.2.1", 5060))) is None
    assert stream_of_flow("tcp:garbage") is None and stream_of_flow("") is None
