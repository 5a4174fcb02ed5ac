"""Presence on the real server (2 workers): PUBLISH, SUBSCRIBE/NOTIFY, refresh hand-off, over UDP sockets."""

from __future__ import annotations

from pathlib import Path

from liveserver import start_server
from presence_client import PIDF, Peer

SUB = "Contact: <sip:bob@{local}>\r\nEvent: presence\r\nExpires: {expires}\r\n"


def test_publish_subscribe_refresh_unsubscribe_across_workers(tmp_path: Path) -> None:
    srv = start_server(tmp_path, extra=("--min-notify-interval", "0"))
    w, p = Peer(srv.port, "bob"), Peer(srv.port, "alice")
    try:
        w.request("SUBSCRIBE", "sip:alice@example.com", call_id="s1", from_tag="b1",
                  headers=SUB.format(local=w.local, expires=600))  # fmt: skip
        ok = w.response_to("s1", 1)
        n = w.notify("s1")
        assert ok.status == 200 and n.get("Subscription-State") == "active;expires=600"
        assert b"<basic>closed</basic>" in n.body and n.cseq_num == 1
        tag, cseq = ok.to_tag, 1
        # each PUBLISH has other octets, so the cBPF program spreads them over both workers;
        # whichever worker takes one, the watcher's worker sends the NOTIFY
        etag = None
        for i in range(8):
            body = PIDF.format(entity="sip:alice@example.com", basic="open", note=f"note {i}").encode()
            hdr = "Event: presence\r\nContent-Type: application/pidf+xml\r\nExpires: 600\r\n"
            hdr += f"SIP-If-Match: {etag}\r\n" if etag else ""
            p.request(
                "PUBLISH", "sip:alice@example.com", call_id=f"p{i}", from_tag=f"a{i}", headers=hdr, body=body
            )
            r = p.response_to(f"p{i}", 1)
            assert r.status == 200
            etag = r.get("SIP-ETag")
            n = w.notify("s1")
            cseq += 1
            assert n.cseq_num == cseq and f"note {i}".encode() in n.body
        # refreshes in the dialog: those reaching the other worker are handed to the owner
        for i in range(2, 10):
            w.request("SUBSCRIBE", "sip:alice@example.com", call_id="s1", from_tag="b1", to_tag=tag, cseq=i,
                      headers=SUB.format(local=w.local, expires=300))  # fmt: skip
            assert w.response_to("s1", i).status == 200
            n = w.notify("s1")
            cseq += 1
            assert n.cseq_num == cseq and n.get("Subscription-State") == "active;expires=300"
        w.request("SUBSCRIBE", "sip:alice@example.com", call_id="s1", from_tag="b1", to_tag=tag, cseq=10,
                  headers=SUB.format(local=w.local, expires=0))  # fmt: skip
        assert w.response_to("s1", 10).status == 200
        assert w.notify("s1").get("Subscription-State") == "terminated;reason=timeout"
        w.request("SUBSCRIBE", "sip:alice@example.com", call_id="s1", from_tag="b1", to_tag=tag, cseq=11,
                  headers=SUB.format(local=w.local, expires=300))  # fmt: skip
        assert w.response_to("s1", 11).status == 481
    finally:
        w.close()
        p.close()
        assert srv.stop() == 0
    assert "handed off" in srv.log()
