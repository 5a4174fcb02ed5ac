"""A TCP watcher whose subscription lives in one worker and whose connection lives in another.

The watcher subscribes over connection A (accepted by worker X: the Via
branch of its NOTIFY names the sending worker), then opens connections until
one, B, is accepted by the other worker Y, refreshes the subscription over B
and closes A. The refresh reaches Y, which hands it to X (the owner, ``D``
frame); X answers over B through Y (``S`` frame), and from then on sends its
NOTIFYs over B the same way. A PUBLISH must reach the watcher on B.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path
from typing import Any

from liveserver import free_udp_port, start_server
from presence_client import PIDF, Peer, ok

from simplefast.sip import SipStreamParser


class Conn:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.local = "{}:{}".format(*self.sock.getsockname())
        self.parser = SipStreamParser()
        self.got: list[Any] = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def expect(self, want: Any, timeout: float = 5.0) -> Any:
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.2)
        while time.monotonic() < deadline:
            for i, m in enumerate(self.got):
                if want(m):
                    return self.got.pop(i)
            try:
                chunk = self.sock.recv(65535)
            except TimeoutError:
                continue
            if not chunk:
                break
            for m in self.parser.feed(chunk):
                if m.is_request and m.method == "NOTIFY":
                    self.send(ok(m))
                self.got.append(m)
        raise AssertionError("nothing matching on the connection")

    def close(self) -> None:
        self.sock.close()


def subscribe(conn: Conn, call_id: str, user: str, cseq: int = 1, to_tag: str | None = None) -> bytes:
    to = f"<sip:{user}@example.com>" + (f";tag={to_tag}" if to_tag else "")
    return (
        f"SUBSCRIBE sip:{user}@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP {conn.local};branch=z9hG4bK{call_id}{cseq}\r\nMax-Forwards: 70\r\n"
        f"From: <sip:bob@example.com>;tag=b{call_id}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n"
        f"CSeq: {cseq} SUBSCRIBE\r\nContact: <sip:bob@{conn.local};transport=tcp>\r\nEvent: presence\r\n"
        "Expires: 600\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def worker_of(notify: Any) -> int:
    m = re.search(r"w(\d+)\.n", notify.via_branch or "")
    assert m is not None, notify.via_branch
    return int(m.group(1))


def is_notify(call_id: str) -> Any:
    return lambda m: m.is_request and m.method == "NOTIFY" and m.call_id == call_id


def test_notify_over_a_connection_another_worker_accepted(tmp_path: Path) -> None:
    tcp = free_udp_port()
    srv = start_server(tmp_path, extra=("--listen", f"tcp:127.0.0.1:{tcp}", "--min-notify-interval", "0"))
    conns: list[Conn] = []
    try:
        a = Conn(tcp)
        conns.append(a)
        a.send(subscribe(a, "sa", "alice"))
        ok_a = a.expect(lambda m: not m.is_request and m.call_id == "sa")
        owner = worker_of(a.expect(is_notify("sa")))
        b = None
        for i in range(40):  # the kernel spreads connections over the workers by their addresses
            c = Conn(tcp)
            conns.append(c)
            c.send(subscribe(c, f"p{i}", f"probe{i}"))
            if worker_of(c.expect(is_notify(f"p{i}"))) != owner:
                b = c
                break
        assert b is not None, "no connection reached the other worker in 40 tries"
        b.send(subscribe(b, "sa", "alice", cseq=2, to_tag=ok_a.to_tag))  # the refresh, over B
        assert b.expect(lambda m: not m.is_request and m.call_id == "sa" and m.cseq_num == 2).status == 200
        n = b.expect(is_notify("sa"))
        assert worker_of(n) == owner and n.cseq_num == 2  # sent by the owner, over B
        a.close()
        pub = Peer(srv.port, "alice")
        try:
            body = PIDF.format(entity="sip:alice@example.com", basic="open", note="over B").encode()
            hdr = "Event: presence\r\nContent-Type: application/pidf+xml\r\nExpires: 600\r\n"
            pub.request(
                "PUBLISH", "sip:alice@example.com", call_id="pa", from_tag="a", headers=hdr, body=body
            )
            assert pub.response_to("pa", 1).status == 200
        finally:
            pub.close()
        n = b.expect(is_notify("sa"))
        assert n.cseq_num == 3 and b"over B" in n.body and worker_of(n) == owner
    finally:
        for c in conns:
            c.close()
        assert srv.stop() == 0
