"""Page-mode IM on the real server (2 workers, loopback): offline store-and-forward across
a worker kill -9 and a restart, the size rule (a large MESSAGE reaches a UDP contact over
TCP), the body limit, and digest-authenticated use of the store."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from liveserver import start_server
from presence_client import Peer, ok

from simplefast.sip import parse_message
from simplefast.testing import REPO


def send_message(p: Peer, to: str, n: int, body: bytes, headers: str = "") -> None:
    p.request("MESSAGE", f"sip:{to}@example.com", call_id=f"{p.user}-m{n}", from_tag=f"f{n}", cseq=1,
              headers=f"Content-Type: text/plain\r\n{headers}", body=body)  # fmt: skip


def register(p: Peer, n: int, contact: str | None = None) -> int:
    p.request("REGISTER", "sip:example.com", call_id=f"{p.user}-reg", from_tag="r", cseq=n,
              to_uri=f"sip:{p.user}@example.com",
              headers=f"Contact: <sip:{p.user}@{contact or p.local}>\r\nExpires: 600\r\n")  # fmt: skip
    return int(p.response_to(f"{p.user}-reg", n).status)


def take_messages(p: Peer, count: int, timeout: float = 10.0) -> list:
    """Receive ``count`` MESSAGEs, answering each 200 (the next one comes after it)."""
    got = []
    for _ in range(count):
        m = p.receive(timeout, want=lambda m: m.is_request and m.method == "MESSAGE")
        p.send(ok(m))
        got.append(m)
    return got


def test_offline_messages_survive_a_worker_kill_and_a_restart(tmp_path: Path) -> None:
    srv = start_server(tmp_path)
    alice, bob = Peer(srv.port, "alice"), Peer(srv.port, "bob")
    try:
        for i in range(12):  # each with other octets: the cBPF spreads them over both workers
            send_message(alice, "bob", i, f"stored message {i}".encode())
            assert alice.response_to(f"alice-m{i}", 1).status == 202
        os.kill(srv.worker_pids()[0], signal.SIGKILL)  # nothing stored may go with it
        time.sleep(1.0)
        assert srv.stop() == 0
        srv = start_server(tmp_path, port=srv.port)  # same data directory
        assert register(bob, 1) == 200
        got = take_messages(bob, 12)
        assert [m.body for m in got] == [f"stored message {i}".encode() for i in range(12)]  # in order
        assert [m.get("From") for m in got] == [f"<sip:alice@example.com>;tag=f{i}" for i in range(12)]
        assert all(m.get("To") == "<sip:bob@example.com>" and m.get("Date") for m in got)
        assert register(bob, 2) == 200
        time.sleep(0.5)
        assert not [m for m in bob.inbox if m.is_request and m.method == "MESSAGE"]  # delivered once
        # online now: relayed at once
        send_message(alice, "bob", 99, b"live")
        (m,) = take_messages(bob, 1)
        assert m.body == b"live"
        assert alice.response_to("alice-m99", 1).status == 200
    finally:
        alice.close()
        bob.close()
        assert srv.stop() == 0
    assert "MESSAGEs stored offline" in srv.log()


def test_a_large_message_reaches_a_udp_contact_over_tcp(tmp_path: Path) -> None:
    srv = start_server(tmp_path)
    alice, bob = Peer(srv.port, "alice"), Peer(srv.port, "bob")
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        lsock.bind(("127.0.0.1", bob.sock.getsockname()[1]))  # TCP on bob's UDP port
        lsock.listen(4)
        lsock.settimeout(10)
        assert register(bob, 1) == 200
        body = b"z" * 3000  # RFC 3261 18.1.1: over 1300 octets
        send_message(alice, "bob", 1, body)
        conn, _ = lsock.accept()
        conn.settimeout(10)
        buf = b""
        while b"\r\n\r\n" not in buf or len(buf.split(b"\r\n\r\n", 1)[1]) < len(body):
            chunk = conn.recv(65536)
            assert chunk, "connection closed before the MESSAGE arrived"
            buf += chunk
        m = parse_message(buf)
        assert m.method == "MESSAGE" and m.body == body and m.get("Via").startswith("SIP/2.0/TCP")
        conn.sendall(ok(m))
        assert alice.response_to("alice-m1", 1).status == 200
        conn.close()
    finally:
        lsock.close()
        alice.close()
        bob.close()
        assert srv.stop() == 0


def test_body_limit_and_uri_list_on_the_server(tmp_path: Path) -> None:
    srv = start_server(tmp_path, extra=("--max-body", "2000", "--uri-list-service", "sip:list@example.com"))
    alice, bob, carol = Peer(srv.port, "alice"), Peer(srv.port, "bob"), Peer(srv.port, "carol")
    try:
        send_message(alice, "bob", 1, b"q" * 2001)
        r = alice.response_to("alice-m1", 1)
        assert r.status == 413 and "2000" in r.get("Warning")
        assert register(bob, 1) == 200
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"'
            ' xmlns:cp="urn:ietf:params:xml:ns:copycontrol"><list>'
            '<entry uri="sip:bob@example.com" cp:copyControl="to"/>'
            '<entry uri="sip:carol@example.com" cp:copyControl="bcc"/></list></resource-lists>'
        )
        body = (
            "--b1\r\nContent-Type: text/plain\r\n\r\nHello both\r\n--b1\r\n"
            "Content-Type: application/resource-lists+xml\r\nContent-Disposition: recipient-list\r\n\r\n"
            f"{xml}\r\n--b1--\r\n"
        ).encode()
        alice.request("MESSAGE", "sip:list@example.com", call_id="list1", from_tag="l1",
                      headers="Require: recipient-list-message\r\n"
                      "Content-Type: multipart/mixed;boundary=b1\r\n",
                      body=body)  # fmt: skip
        assert alice.response_to("list1", 1).status == 202
        (m,) = take_messages(bob, 1)
        assert b"Hello both" in m.body and b"carol" not in m.body
        assert m.get("From") == "<sip:alice@example.com>;tag=l1"
        assert register(carol, 1) == 200  # carol was offline: hers was stored
        (m,) = take_messages(carol, 1)
        assert b"Hello both" in m.body
    finally:
        for p in (alice, bob, carol):
            p.close()
        assert srv.stop() == 0


def test_with_auth_only_our_users_may_store(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "tests" / "unit"))
    from test_auth import client_response

    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    for user in ("alice", "bob"):
        subprocess.run(
            [sys.executable, "-m", "simplefast", "user", "add", f"{user}@example.com", "--password-file",
             str(pw), "--data-dir", str(tmp_path / "data")], check=True, capture_output=True, timeout=30,
        )  # fmt: skip
    srv = start_server(tmp_path, auth=True)
    alice = Peer(srv.port, "alice")
    try:
        # from another domain, to an offline user of ours: not stored (480)
        alice.send(
            b"MESSAGE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP " + alice.local.encode()
            + b";branch=z9hG4bKforeign;rport\r\nMax-Forwards: 70\r\nFrom: <sip:eve@elsewhere.org>;tag=e\r\n"
            b"To: <sip:bob@example.com>\r\nCall-ID: foreign\r\nCSeq: 1 MESSAGE\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
        )  # fmt: skip
        assert alice.response_to("foreign", 1).status == 480
        # alice, authenticated: stored for bob; for a user that does not exist: 404
        for n, to, want in ((1, "bob", 202), (3, "nobody", 404)):
            send_message(alice, to, n, b"hello")
            r = alice.response_to(f"alice-m{n}", 1)
            assert r.status == 407
            (ch,) = [c for c in r.get_all("Proxy-Authenticate") if "SHA-256" in c]
            cred = client_response(ch, "MESSAGE", f"sip:{to}@example.com", "alice", "s3cret")
            alice.request("MESSAGE", f"sip:{to}@example.com", call_id=f"alice-m{n}", from_tag=f"f{n}", cseq=2,
                          headers=f"Proxy-Authorization: {cred}\r\nContent-Type: text/plain\r\n",
                          body=b"hello")  # fmt: skip
            assert alice.response_to(f"alice-m{n}", 2).status == want
    finally:
        alice.close()
        assert srv.stop() == 0


def test_messages_reach_a_tcp_contact_from_either_worker(tmp_path: Path) -> None:
    """bob registers over one TCP connection (one worker owns it); alice's MESSAGEs over
    UDP land on both workers (cBPF); every one reaches bob on that connection, and so
    do the ones stored while he was away, when he registers again over TCP."""
    from liveserver import free_udp_port
    from test_presence_tcp_live import Conn

    from simplefast.proxy.core import branch_owner

    tport = free_udp_port()
    srv = start_server(tmp_path, extra=("--listen", f"tcp:127.0.0.1:{tport}"))
    alice = Peer(srv.port, "alice")
    conn = Conn(tport)

    def tcp_register(c: Conn, n: int, expires: int = 600) -> int:
        c.send(
            (
                f"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP {c.local};branch=z9hG4bKtr{n}x\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=r\r\nTo: <sip:bob@example.com>\r\n"
                f"Call-ID: bob-tcp-reg\r\nCSeq: {n} REGISTER\r\n"
                f"Contact: <sip:bob@{c.local};transport=tcp>\r\nExpires: {expires}\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode()
        )
        return int(c.expect(lambda m: not m.is_request and m.cseq_num == n).status)

    def take(c: Conn) -> object:
        m = c.expect(lambda m: m.is_request and m.method == "MESSAGE")
        c.send(ok(m))
        return m

    try:
        assert tcp_register(conn, 1) == 200
        workers = set()
        for i in range(10):
            send_message(alice, "bob", i, f"over tcp {i}".encode())
            m = take(conn)
            assert m.body == f"over tcp {i}".encode()  # type: ignore[attr-defined]
            workers.add(branch_owner(m.via_branch))  # type: ignore[attr-defined]  # the worker that sent it
            assert alice.response_to(f"alice-m{i}", 1).status == 200
        assert tcp_register(conn, 2, expires=0) == 200  # away: the next ones are stored
        for i in range(10, 13):
            send_message(alice, "bob", i, f"stored {i}".encode())
            assert alice.response_to(f"alice-m{i}", 1).status == 202
        conn.close()
        conn = Conn(tport)
        assert tcp_register(conn, 3) == 200
        got = [take(conn).body for _ in range(3)]  # type: ignore[attr-defined]
        assert got == [b"stored 10", b"stored 11", b"stored 12"]
    finally:
        conn.close()
        alice.close()
        assert srv.stop() == 0
    assert workers == {0, 1}  # both workers sent over the one connection (S frames to its owner)
