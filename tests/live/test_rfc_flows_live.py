"""The RFC 3856, 3857 and 3903 example flows replayed against the server (2 workers), only addresses changed.

Each test sends the RFC's requests byte for byte from ``tests/vectors/flows``
except for what must change to reach this server and this client: the
client host names (``host.example.com``, ``watcherhost.example.com``,
``pua.example.com``, ``pc34.example.com``) become the test socket's
address, a "[Published PIDF document]" placeholder becomes a real PIDF
document with its Content-Length, and the entity-tag of a refresh (``dx200xyz``)
becomes the one our 200 gave. The server's answers are checked against what
the RFC's own responses and NOTIFYs show: status, the headers that matter
(SIP-ETag, Expires, Event, Subscription-State), and the bodies' meaning.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from liveserver import free_udp_port, start_server
from lxml import etree
from presence_client import Peer, ok

from simplefast.sip import SipStreamParser
from simplefast.testing import REPO

FLOWS = REPO / "tests" / "vectors" / "flows"
CLIENT_HOSTS = ("watcherhost.example.com", "host.example.com", "pua.example.com", "pc34.example.com")
PIDF_NS = "{urn:ietf:params:xml:ns:pidf}"
WINFO_NS = "{urn:ietf:params:xml:ns:watcherinfo}"


def vector(
    name: str, local: str, *, body: bytes | None = None, replace: dict[str, str] | None = None
) -> bytes:
    text = (FLOWS / name).read_bytes().decode()
    for host in CLIENT_HOSTS:
        text = text.replace(host, local)
    for a, b in (replace or {}).items():
        text = text.replace(a, b)
    head, _, rest = text.partition("\r\n\r\n")
    if body is not None:
        head = head.replace("Content-Length: ...", f"Content-Length: {len(body)}")
        return (head + "\r\n\r\n").encode() + body
    if "Content-Length" not in head:
        head += "\r\nContent-Length: 0"
    return (head + "\r\n\r\n" + rest).encode()


def pidf(entity: str, basic: str, note: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{entity}">'
        f'<tuple id="t1"><status><basic>{basic}</basic></status><note>{note}</note></tuple></presence>'
    ).encode()


class Udp(Peer):
    """A UDP client socket (presence_client.Peer): NOTIFYs answered 200 as they come."""

    def __init__(self, port: int) -> None:
        super().__init__(port, "rfc")

    def expect(self, want: Any, timeout: float = 5.0) -> Any:
        return self.receive(timeout, want=want)


def is_response(cseq_method: str, status: int = 200) -> Any:
    return lambda m: not m.is_request and m.cseq_method == cseq_method and m.status == status


def is_notify(m: Any) -> bool:
    return bool(m.is_request and m.method == "NOTIFY")


def test_rfc3903_section15_publish_refresh_and_the_watcher_sees_it(tmp_path: Path) -> None:
    srv = start_server(tmp_path, extra=("--min-notify-interval", "0"))
    w, pua = Udp(srv.port), Udp(srv.port)
    try:
        w.send(vector("rfc3903-15-m1-subscribe.msg", w.local))  # M1
        m2 = w.expect(is_response("SUBSCRIBE"))  # M2: 200 OK, Expires 3600
        assert m2.get("Expires") == "3600" and m2.to_tag
        m3 = w.expect(is_notify)  # M3: the state before any publication
        assert m3.get("Event") == "presence" and m3.get("Subscription-State") or "".startswith("active")
        assert m3.call_id == "12345678@host.example.com".replace("host.example.com", w.local)
        doc = pidf("sip:presentity@example.com", "open", "published")
        pua.send(vector("rfc3903-15-m5-publish-initial.msg", pua.local, body=doc))  # M5
        m6 = pua.expect(is_response("PUBLISH"))  # M6: 200 OK with SIP-ETag and Expires 3600
        etag = m6.get("SIP-ETag")
        assert etag and m6.get("Expires") == "3600"
        m7 = w.expect(is_notify)  # M7: the watcher gets the published state
        assert m7.cseq_num == m3.cseq_num + 1 and b"published" in m7.body
        root = etree.fromstring(m7.body)
        assert root.get("entity") == "sip:presentity@example.com"
        assert root.findtext(f"{PIDF_NS}tuple/{PIDF_NS}status/{PIDF_NS}basic") == "open"
        pua.send(vector("rfc3903-15-m9-publish-refresh.msg", pua.local, replace={"dx200xyz": etag}))  # M9
        m10 = pua.expect(is_response("PUBLISH"))  # M10: a new entity-tag, no NOTIFY (nothing changed)
        assert m10.get("SIP-ETag") not in (None, etag) and m10.get("Expires") == "3600"
        # M11 (modify) is not printed in the RFC: a PUBLISH with the new tag and a new document
        doc2 = pidf("sip:presentity@example.com", "closed", "modified")
        changes = {
            "dx200xyz": m10.get("SIP-ETag"),
            "z9hG4bK771ash02": "z9hG4bK771ash03",
            "98798798": "98798799",
        }
        modify = vector("rfc3903-15-m9-publish-refresh.msg", pua.local, replace=changes)
        head = modify.decode().split("\r\n\r\n")[0].replace("Content-Length: 0", "")
        head += f"Content-Type: application/pidf+xml\r\nContent-Length: {len(doc2)}"
        pua.send(head.encode() + b"\r\n\r\n" + doc2)
        m12 = pua.expect(is_response("PUBLISH"))  # M12
        assert m12.get("SIP-ETag")
        m13 = w.expect(is_notify)  # M13
        assert m13.cseq_num == m7.cseq_num + 1 and b"modified" in m13.body and b"published" not in m13.body
    finally:
        w.close()
        pua.close()
        assert srv.stop() == 0


def test_rfc3856_section8_subscribe_over_tcp_then_a_change(tmp_path: Path) -> None:
    tcp_port = free_udp_port()
    srv = start_server(
        tmp_path, extra=("--listen", f"tcp:127.0.0.1:{tcp_port}", "--min-notify-interval", "0")
    )
    conn = socket.create_connection(("127.0.0.1", tcp_port), timeout=5)
    pua = Udp(srv.port)
    try:
        local = "{}:{}".format(*conn.getsockname())
        conn.sendall(vector("rfc3856-8-f1-subscribe.msg", local))  # F1 (the RFC's flow runs over TCP)
        parser = SipStreamParser()
        got: list[Any] = []

        def read_until(pred: Any) -> Any:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                for i, m in enumerate(got):
                    if pred(m):
                        return got.pop(i)
                got.extend(parser.feed(conn.recv(65535)))
                for m in list(got):
                    if is_notify(m):
                        conn.sendall(ok(m))
            raise AssertionError("nothing matching on the connection")

        f2 = read_until(is_response("SUBSCRIBE"))  # F2: 200 OK, Expires 600
        assert f2.get("Expires") == "600" and f2.to_tag
        f3 = read_until(is_notify)  # F3: NOTIFY on the same connection
        assert f3.get("Subscription-State") or "".startswith("active") and f3.to_tag == "xfg9"
        assert f3.get("Content-Type") == "application/pidf+xml"
        doc = pidf("sip:resource@example.com", "open", "new document")
        pua.send(vector("rfc3903-15-m5-publish-initial.msg", pua.local, body=doc,
                        replace={"presentity@example.com": "resource@example.com"}))  # fmt: skip
        assert pua.expect(is_response("PUBLISH")).get("SIP-ETag")
        f5 = read_until(is_notify)  # F5: the new PIDF document, CSeq up, expires counting down
        assert f5.cseq_num == f3.cseq_num + 1 and b"new document" in f5.body
        state = f5.get("Subscription-State") or ""
        assert state.startswith("active;expires=") and int(state.split("=")[1]) <= 600
    finally:
        conn.close()
        pua.close()
        assert srv.stop() == 0


def test_rfc3857_section5_watcherinfo_pending_watcher(tmp_path: Path) -> None:
    cfg = tmp_path / "confirm.toml"
    cfg.write_text('[presence]\ndefault_policy = "confirm"\nmin_notify_interval = 0\n')
    srv = start_server(tmp_path, extra=("-c", str(cfg)))
    joe, a = Udp(srv.port), Udp(srv.port)
    try:
        joe.send(vector("rfc3857-5-subscribe.msg", joe.local))  # joe watches his own watchers
        assert joe.expect(is_response("SUBSCRIBE")).status == 200
        n1 = joe.expect(is_notify)  # full state, no watcher yet
        assert n1.get("Event") == "presence.winfo" and n1.get("Content-Type") == "application/watcherinfo+xml"
        root = etree.fromstring(n1.body)
        assert (root.get("version"), root.get("state")) == ("0", "full")
        assert root.find(f"{WINFO_NS}watcher-list").get("resource") == "sip:joe@example.com"
        # A subscribes to joe's presence: pending under the confirm policy (the RFC's 3.1 situation)
        sub = (
            f"SUBSCRIBE sip:joe@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {a.local};branch=z9hG4bKa1\r\n"
            "From: <sip:A@example.com>;tag=aa1\r\nTo: <sip:joe@example.com>\r\nCall-ID: a1@example.com\r\n"
            f"CSeq: 1 SUBSCRIBE\r\nContact: <sip:A@{a.local}>\r\nEvent: presence\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        a.send(sub)
        assert a.expect(is_response("SUBSCRIBE")).status == 200
        pending = a.expect(is_notify)
        assert pending.get("Subscription-State") or "".startswith("pending") and pending.body == b""
        n2 = joe.expect(is_notify)  # like the RFC's NOTIFY: watcher A, event subscribe, status pending
        root = etree.fromstring(n2.body)
        assert (root.get("version"), root.get("state")) == ("1", "partial")
        (w,) = root.iter(f"{WINFO_NS}watcher")
        assert (w.text, w.get("event"), w.get("status")) == ("sip:A@example.com", "subscribe", "pending")
    finally:
        joe.close()
        a.close()
        assert srv.stop() == 0
