"""The MSRP relay on the real server (2 workers, loopback, RFC 4976): alice authenticates
with digest on the shared listener and gets a session URI naming her worker's own port;
bob connects to that URI and the two exchange SENDs through the relay, a 64 KiB message
in 2 KiB chunks included; an unknown session gets 481."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import time
from pathlib import Path

from liveserver import free_udp_port, start_server

from simplefast._impl import msrpframe
from simplefast.proxy.auth import parse_digest


class Endpoint:
    """An MSRP endpoint on one TCP connection (the framer of the server parses for it)."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.parser = msrpframe.MsrpParser()
        self.got: list = []
        self.path = path
        self.n = 0

    def tid(self) -> str:
        self.n += 1
        return f"t{self.path.split('/')[-1].split(';')[0]}{self.n:04d}"

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def expect(self, want, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.2)
        while time.monotonic() < deadline:
            for i, m in enumerate(self.got):
                if want(m):
                    return self.got.pop(i)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            self.got += self.parser.feed(chunk)
        raise AssertionError(
            f"{self.path}: nothing matching (got {[(m.method, m.status) for m in self.got]})"
        )

    def response(self, tid: str):
        return self.expect(lambda m: not m.is_request and m.tid == tid)

    def request(self, method: str):
        return self.expect(lambda m: m.is_request and m.method == method)

    def close(self) -> None:
        self.sock.close()


def _md5(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()


def test_relay_auth_and_sessions_through_two_workers(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    subprocess.run(
        [sys.executable, "-m", "simplefast", "user", "add", "alice@example.com", "--password-file", str(pw),
         "--data-dir", str(tmp_path / "data")], check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    mport = free_udp_port()
    srv = start_server(tmp_path, auth=True, extra=("--listen", f"msrp:127.0.0.1:{mport}",
                                                   "--auth-algorithms", "MD5"))  # fmt: skip
    relay_uri = f"msrp://127.0.0.1:{mport};tcp"
    alice = Endpoint(mport, "msrp://127.0.0.1:7001/alice1;tcp")
    bob = None
    try:
        # AUTH without credentials: 401 with a digest challenge (RFC 4976 5.1)
        t1 = alice.tid()
        alice.send(msrpframe.build_request(t1, "AUTH", [relay_uri], [alice.path]))
        r = alice.response(t1)
        assert r.status == 401 and r.to_path == [alice.path]
        ch = parse_digest(r.get("WWW-Authenticate"))
        assert ch is not None and ch["realm"] == "example.com" and ch.get("opaque")
        # the retried AUTH: the digest-uri is the To-Path URI as written (no uri parameter)
        ha1, ha2 = _md5("alice:example.com:s3cret"), _md5(f"AUTH:{relay_uri}")
        cnonce, nc = "0a4f113b", "00000001"
        resp = _md5(f"{ha1}:{ch['nonce']}:{nc}:{cnonce}:auth:{ha2}")
        cred = (f'Digest username="alice", realm="example.com", nonce="{ch["nonce"]}", qop=auth, nc={nc}, '
                f'cnonce="{cnonce}", response="{resp}", opaque="{ch["opaque"]}"')  # fmt: skip
        t2 = alice.tid()
        alice.send(msrpframe.build_request(t2, "AUTH", [relay_uri], [alice.path], [("Authorization", cred)]))
        ok = alice.response(t2)
        assert ok.status == 200 and ok.get("Expires")
        (session,) = ok.get("Use-Path").split()
        sport = int(session.split(":")[2].split("/")[0])
        assert sport in (mport + 1, mport + 2)  # the port of the worker that holds it
        # bob (no relay of his own) connects to the session URI and sends to alice
        bob = Endpoint(sport, "msrp://127.0.0.1:7002/bob1;tcp")
        t3 = bob.tid()
        bob.send(msrpframe.build_request(t3, "SEND", [session, alice.path], [bob.path],
                                         [("Message-ID", "m1"), ("Byte-Range", "1-5/5")],
                                         content_type="text/plain", body=b"hello"))  # fmt: skip
        assert bob.response(t3).status == 200  # the relay's hop-by-hop 200
        m = alice.request("SEND")
        assert (m.to_path, m.from_path, bytes(m.body)) == ([alice.path], [session, bob.path], b"hello")
        alice.send(msrpframe.build_response(m.tid, 200, "OK", [session], [alice.path]))
        # alice answers bob over her own connection
        t4 = alice.tid()
        alice.send(msrpframe.build_request(t4, "SEND", [session, bob.path], [alice.path],
                                           [("Message-ID", "m2"), ("Byte-Range", "1-2/2")],
                                           content_type="text/plain", body=b"hi"))  # fmt: skip
        assert alice.response(t4).status == 200
        m = bob.request("SEND")
        assert (m.to_path, m.from_path, bytes(m.body)) == ([bob.path], [session, alice.path], b"hi")
        bob.send(msrpframe.build_response(m.tid, 200, "OK", [session], [bob.path]))
        # a 64 KiB message in 2 KiB chunks, in order and whole
        body = bytes(range(256)) * 256
        chunks = msrpframe.chunk(bob.tid, [session, alice.path], [bob.path], "m3", "application/octet-stream",
                                 body, chunk_size=2048)  # fmt: skip
        for c in chunks:
            bob.send(c)
        got = b""
        for _ in chunks:
            m = alice.request("SEND")
            assert m.get("Message-ID") == "m3"
            start = m.byte_range[0]
            assert start == len(got) + 1
            got += bytes(m.body)
            alice.send(msrpframe.build_response(m.tid, 200, "OK", [session], [alice.path]))
        assert got == body
        # a session the relay never issued
        t5 = bob.tid()
        bad = session.rsplit("/", 1)[0] + "/nosuchsession;tcp"
        bob.send(msrpframe.build_request(t5, "SEND", [bad, alice.path], [bob.path],
                                         [("Message-ID", "m4"), ("Byte-Range", "1-1/1")],
                                         content_type="text/plain", body=b"x"))  # fmt: skip
        assert bob.response(t5).status == 481
    finally:
        alice.close()
        if bob is not None:
            bob.close()
        assert srv.stop() == 0


def _rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def test_a_slow_receiver_slows_the_sender_and_the_relay_holds_little(tmp_path: Path) -> None:
    """alice stops reading; bob sends 48 MiB through the relay. The relay stops reading bob
    once alice's connection is backed up (transport/msrp.py), so bob is blocked after a
    bounded amount (kernel buffers on both sides plus about 1 MiB in the relay) and the
    workers' memory does not grow by the message; when alice reads again, everything
    arrives, in order."""
    import select

    mport = free_udp_port()
    srv = start_server(tmp_path, extra=("--listen", f"msrp:127.0.0.1:{mport}"))  # --no-auth: AUTH granted
    alice = Endpoint(mport, "msrp://127.0.0.1:7001/slow1;tcp")
    bob = None
    try:
        t1 = alice.tid()
        alice.send(msrpframe.build_request(t1, "AUTH", [f"msrp://127.0.0.1:{mport};tcp"], [alice.path]))
        (session,) = alice.response(t1).get("Use-Path").split()
        sport = int(session.split(":")[2].split("/")[0])
        bob = Endpoint(sport, "msrp://127.0.0.1:7002/fast1;tcp")
        body = bytes(range(256)) * (48 * 4096)  # 48 MiB
        ct = "application/octet-stream"
        chunks = msrpframe.chunk(bob.tid, [session, alice.path], [bob.path], "big", ct, body,
                                 chunk_size=65536, headers=[("Failure-Report", "no")])  # fmt: skip
        wire = b"".join(chunks)
        rss0 = _rss_kib(srv.worker_pids())
        bob.sock.setblocking(False)
        sent, stalled_since = 0, None
        deadline = time.monotonic() + 30
        while sent < len(wire) and time.monotonic() < deadline:
            try:
                n = bob.sock.send(wire[sent : sent + 262144])
                sent += n
                stalled_since = None
            except BlockingIOError:
                stalled_since = stalled_since or time.monotonic()
                if time.monotonic() - stalled_since > 1.5:
                    break  # blocked for good: the relay has stopped reading bob
                select.select([], [bob.sock], [], 0.1)
        assert sent < len(wire) // 2, f"bob sent {sent} of {len(wire)} octets with alice not reading"
        grown = _rss_kib(srv.worker_pids()) - rss0
        assert grown < 24 * 1024, f"the workers grew by {grown} KiB"
        # alice reads again: everything bob sent arrives, then bob can finish
        got = bytearray()
        alice.sock.settimeout(0.2)
        deadline = time.monotonic() + 60
        while len(got) < len(body) and time.monotonic() < deadline:
            if sent < len(wire):
                try:
                    sent += bob.sock.send(wire[sent : sent + 262144])
                except BlockingIOError:
                    pass
            try:
                data = alice.sock.recv(1 << 20)
            except TimeoutError:
                continue
            assert data, "alice's connection closed"
            for m in alice.parser.feed(data):
                assert m.method == "SEND" and m.byte_range[0] == len(got) + 1
                got += bytes(m.body)
        assert len(got) == len(body) and got == body
    finally:
        alice.close()
        if bob is not None:
            bob.close()
        assert srv.stop() == 0
