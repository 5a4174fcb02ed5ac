"""A real SIP client against the real server: baresip (Debian's ``baresip-core``) as alice@example.com.

Over UDP and over TCP, baresip registers, PUBLISHes its own status (RFC 3903) and SUBSCRIBEs
to its buddy bob's presence (RFC 6665 / 3856). Two raw-socket peers play the other side:
carol watches alice (she must hear what baresip publishes) and bob publishes (baresip must
show him Online, then Offline). The test fails, never skips, when baresip is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from baresip_client import Baresip, TracedMessage, require_baresip
from liveserver import free_udp_port, start_server
from presence_client import PIDF, Peer

WATCH = "Contact: <sip:carol@{local}>\r\nEvent: presence\r\nExpires: 600\r\nAccept: application/pidf+xml\r\n"
PUB = "Event: presence\r\nContent-Type: application/pidf+xml\r\nExpires: 600\r\n"


def request(method: str, *, sent: bool, ruri: str | None = None, call_id: str | None = None):
    """A predicate on traced messages: a ``method`` request baresip sent (or received)."""

    def want(t: TracedMessage) -> bool:
        m = t.msg
        return (t.sent == sent and m.is_request and m.method == method and (ruri is None or m.uri == ruri)
                and (call_id is None or m.call_id == call_id))  # fmt: skip

    return want


def response(to: TracedMessage, *, sent: bool):
    """A predicate on traced messages: the final response to the request ``to``."""
    r = to.msg

    def want(t: TracedMessage) -> bool:
        m = t.msg
        return (t.sent == sent and not m.is_request and m.status >= 200 and m.call_id == r.call_id
                and m.cseq_num == r.cseq_num and m.cseq_method == r.method)  # fmt: skip

    return want


def basic(value: str) -> bytes:
    return f"<basic>{value}</basic>".encode()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_baresip_publishes_and_watches_its_buddy(tmp_path: Path, transport: str) -> None:
    require_baresip()
    tcp_port = free_udp_port()
    srv = start_server(
        tmp_path, extra=("--listen", f"tcp:127.0.0.1:{tcp_port}", "--min-notify-interval", "0")
    )
    T = transport.upper()
    carol, bob = Peer(srv.port, "carol"), Peer(srv.port, "bob")  # raw UDP peers
    ua = Baresip(tmp_path, srv.port if transport == "udp" else tcp_port, transport)
    try:
        # carol watches alice before baresip runs: the default document, one closed tuple
        carol.request("SUBSCRIBE", "sip:alice@example.com", call_id="w1", from_tag="c1",
                      headers=WATCH.format(local=carol.local))  # fmt: skip
        assert carol.response_to("w1", 1).status == 200
        n = carol.notify("w1")
        assert n.cseq_num == 1 and basic("closed") in n.body

        ua.start()
        # 1. registration over the account's transport
        ua.wait_output(rf"alice@example\.com: \{{0/{T}/v4\}} 200 OK".encode(), 10)

        # 2. baresip's own PUBLISH (pubint > 0: 'open' at start-up) reaches carol
        pub = ua.wait_trace(request("PUBLISH", sent=True, ruri="sip:alice@example.com"), 10, "PUBLISH")
        assert pub.transport == T and pub.msg.get("Event") == "presence" and basic("open") in pub.msg.body
        ok = ua.wait_trace(response(pub, sent=False), 5, "response to the PUBLISH")
        assert ok.msg.status == 200, ok.raw.decode(errors="replace")
        etag = ok.msg.get("SIP-ETag")
        assert etag, "the server's 200 to PUBLISH has no SIP-ETag"
        n = carol.notify("w1")
        assert n.cseq_num == 2 and basic("open") in n.body and b"sip:alice@example.com" in n.body, n.body

        # 3. the buddy subscription: SUBSCRIBE bob, 200, then the NOTIFY over the same flow
        sub = ua.wait_trace(request("SUBSCRIBE", sent=True, ruri="sip:bob@example.com"), 10, "SUBSCRIBE")
        call_id = sub.msg.call_id
        assert sub.transport == T and sub.msg.get("Event") == "presence"
        ok = ua.wait_trace(response(sub, sent=False), 5, "response to the SUBSCRIBE")
        assert ok.msg.status == 200, ok.raw.decode(errors="replace")
        first = ua.wait_trace(request("NOTIFY", sent=False, call_id=call_id), 5, "NOTIFY for bob")
        assert first.transport == T and first.msg.cseq_num == 1 and basic("closed") in first.msg.body
        assert first.msg.get("Subscription-State") == "active;expires=600"
        if transport == "tcp":  # back over the connection the SUBSCRIBE came on
            assert (first.src, first.dst) == (sub.dst, sub.src), (first.src, first.dst, sub.src, sub.dst)
        ans = ua.wait_trace(response(first, sent=True), 5, "baresip's answer to the NOTIFY")
        assert ans.msg.status == 200 and ans.transport == T
        ua.wait_buddy_status("bob", "Offline")

        # 4. bob publishes 'open': baresip shows him Online; then 'closed' (SIP-If-Match): Offline
        mark = len(ua.out)
        body = PIDF.format(entity="sip:bob@example.com", basic="open", note="at work").encode()
        bob.request("PUBLISH", "sip:bob@example.com", call_id="b1", from_tag="b1", headers=PUB, body=body)
        r = bob.response_to("b1", 1)
        assert r.status == 200
        ua.wait_output(rb"<sip:bob@example\.com> changed status from Offline to Online", 5, start=mark)
        ua.wait_buddy_status("bob", "Online")
        mark = len(ua.out)
        body = PIDF.format(entity="sip:bob@example.com", basic="closed", note="gone").encode()
        bob.request("PUBLISH", "sip:bob@example.com", call_id="b2", from_tag="b2", body=body,
                    headers=PUB + f"SIP-If-Match: {r.get('SIP-ETag')}\r\n")  # fmt: skip
        assert bob.response_to("b2", 1).status == 200
        ua.wait_output(rb"<sip:bob@example\.com> changed status from Online to Offline", 5, start=mark)
        ua.wait_buddy_status("bob", "Offline")
        notifies = [t for t in ua.trace() if request("NOTIFY", sent=False, call_id=call_id)(t)]
        assert [t.msg.cseq_num for t in notifies] == [1, 2, 3] and {t.transport for t in notifies} == {T}

        # 5. alice goes offline and back online from baresip's UI: PUBLISHes that modify
        #    the publication (SIP-If-Match), each heard by carol
        for cmd, status, cseq in (("presence_offline", "closed", 3), ("presence_online", "open", 4)):
            start = len(ua.trace())
            ua.command(cmd)
            p = ua.wait_trace(request("PUBLISH", sent=True), 5, f"PUBLISH after /{cmd}", start=start)
            assert p.transport == T and p.msg.get("SIP-If-Match") == etag and basic(status) in p.msg.body
            ok = ua.wait_trace(response(p, sent=False), 5, "response to the PUBLISH")
            assert ok.msg.status == 200, ok.raw.decode(errors="replace")
            etag = ok.msg.get("SIP-ETag")
            n = carol.notify("w1")
            assert n.cseq_num == cseq and basic(status) in n.body, n.body

        # 6. SIGTERM: baresip removes its publication (Expires: 0), ends its subscription
        #    and unregisters; carol is back to the default document
        start = len(ua.trace())
        ua.stop()
        tail = ua.trace()[start:]
        unpub = [t for t in tail if request("PUBLISH", sent=True)(t)]
        assert unpub and unpub[0].msg.get("Expires") == "0" and unpub[0].msg.get("SIP-If-Match") == etag
        assert [t.msg.status for t in tail if response(unpub[0], sent=False)(t)] == [200], ua.text()[-6000:]
        unsub = [t for t in tail if request("SUBSCRIBE", sent=True, call_id=call_id)(t)]
        assert unsub and unsub[0].msg.get("Expires") == "0"
        assert [t.msg.status for t in tail if response(unsub[0], sent=False)(t)] == [200], ua.text()[-6000:]
        last = [t for t in tail if request("NOTIFY", sent=False, call_id=call_id)(t)]
        assert last and (last[-1].msg.get("Subscription-State") or "").startswith("terminated")
        n = carol.notify("w1")
        assert n.cseq_num == 5 and basic("closed") in n.body and basic("open") not in n.body, n.body
    finally:
        ua.stop()
        carol.close()
        bob.close()
        assert srv.stop() == 0
