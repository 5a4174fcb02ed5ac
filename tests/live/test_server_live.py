"""The real server on loopback, driven by sockets and SIPp (bounded loads)."""

from __future__ import annotations

import csv
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from liveserver import REPO, Server, exchange, options

from simplefast.sip import parse_message

pytestmark = pytest.mark.live

VECTORS = REPO / "tests" / "vectors" / "sip" / "rfc4475"


def test_options_probe_lists_allow_accept_supported(server: Server) -> None:
    resp = parse_message(options(server.port) or b"")
    assert resp.status == 200
    assert "REGISTER" in (resp.get("Allow") or "")
    assert resp.get("Accept") and resp.get("Supported") is not None
    # RFC 3581: rport filled with our source port, received added
    assert resp.via_rport and resp.vias()[0].params["received"] == "127.0.0.1"


def sipp(
    scenario: str, port: int, calls: int, rate: int, tmp_path: Path, extra: tuple[str, ...] = ()
) -> dict[str, str]:
    """Run SIPp to completion (bounded by -m and -timeout); returns the last statistics row."""
    if shutil.which("sipp") is None:
        pytest.fail("sipp is not installed (make test installs Debian's sip-tester)")
    stat = tmp_path / f"{scenario}.csv"
    cmd = [
        "sipp", "-sf", str(REPO / "bench" / "sipp" / scenario), "-s", "example.com", f"127.0.0.1:{port}",
        "-m", str(calls), "-r", str(rate), "-l", "1000", "-timeout", "60", "-nostdin",
        "-trace_stat", "-stf", str(stat), "-fd", "1", *extra,
    ]  # fmt: skip
    subprocess.run(cmd, capture_output=True, timeout=90, check=False)
    with open(stat, newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    return dict(zip(rows[0], rows[-1], strict=False))


def worker_counts(log: str) -> list[int]:
    return [int(m) for m in re.findall(r"worker \d+ stopped: (\d+) received", log)]


def test_sipp_register_spread_over_both_workers(server: Server, tmp_path: Path) -> None:
    stats = sipp("register.xml", server.port, 3000, 1000, tmp_path)
    assert stats["SuccessfulCall(C)"] == "3000", stats
    assert stats["FailedCall(C)"] == "0"
    assert server.stop() == 0  # SIGTERM drains and exits 0
    counts = worker_counts(server.log())
    # one SIPp instance (one UDP flow) still reaches both workers (payload-hash cBPF)
    assert len(counts) == 2 and sum(counts) >= 3000 and min(counts) > 3000 * 0.3, counts
    # auth is off: SIPp's REGISTERs (one Contact, new AOR) are the fast path's case
    fast = [int(n) for n in re.findall(r"REGISTER fast path: (\d+) answered", server.log())]
    assert len(fast) == 2 and sum(fast) >= 3000, fast


def test_a_retransmitted_register_gets_the_same_200(server: Server) -> None:
    """Stateless answers (RFC 3261 8.2.7): the same datagram twice gets byte-identical 200s
    (the same To tag), and the binding is not changed by the second one."""
    data = (
        b"REGISTER sip:example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKrtx1;rport\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:dave@example.com>;tag=d\r\nTo: <sip:dave@example.com>\r\n"
        b"Call-ID: rtx-1\r\nCSeq: 7 REGISTER\r\nContact: <sip:dave@192.0.2.7:5060>;expires=600\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # one source port, as a UA retransmits
        s.settimeout(2.0)
        s.sendto(data, ("127.0.0.1", server.port))
        first = s.recv(65535)
        s.sendto(data, ("127.0.0.1", server.port))
        second = s.recv(65535)
    r1 = parse_message(first)
    assert r1.status == 200 and r1.to_tag and re.search(r"expires=(600|599)", r1.get("Contact") or "")

    def steady(b: bytes) -> bytes:  # what may move between the two: the clock (Date, remaining expiry)
        return re.sub(rb"expires=\d+", b"expires=N", re.sub(rb"Date: [^\r]*", b"Date: D", b))

    assert steady(first) == steady(second)


def test_register_then_query_bindings(server: Server) -> None:
    def register(contact: str, cseq: int, call_id: str = "reg-1") -> object:
        data = (
            "REGISTER sip:example.com SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKreg{cseq}{call_id};rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:carol@example.com>;tag=c\r\nTo: <sip:carol@example.com>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n"
            f"{contact}Content-Length: 0\r\n\r\n"
        ).encode()
        return parse_message(exchange(server.port, data) or b"")

    r = register("Contact: <sip:carol@192.0.2.1:5060>;expires=600\r\n", 1)
    assert r.status == 200  # type: ignore[attr-defined]
    assert re.search(r"expires=(600|599)", r.get("Contact"))  # type: ignore[attr-defined]
    r = register("Contact: <sip:carol@192.0.2.1:5060>;expires=10\r\n", 2)
    assert (r.status, r.get("Min-Expires")) == (423, "60")  # type: ignore[attr-defined]


# What the running server answers to each RFC 4475 message sent over UDP (first
# datagram back). The messages a proxy must route (INVITEs, MESSAGE to users,
# Max-Forwards 0, ...) are checked once the proxy core lands; here: every
# rejection, every registration, and silence for responses.
TORTURE_ANSWER = {
    "badvers": 505, "unkscm": 416,
    "baddate": 400, "baddn": 400, "badinv01": 400, "escruri": 400, "insuf": 400, "ltgtruri": 400,
    "lwsruri": 400, "lwsstart": 400, "trws": 400, "mismatch02": 400, "multi01": 400, "regbadct": 400,
    "scalar02": 400,
    "cparam01": 200, "cparam02": 200, "regescrt": 200, "escnull": 200, "regaut01": 200,
    "bcast": None, "bigcode": None, "noreason": None, "unreason": None,
}  # fmt: skip


def test_torture_vectors_over_udp_then_still_serving(server: Server) -> None:
    answered = {}
    for name in TORTURE_ANSWER:
        data = (VECTORS / f"{name}.dat").read_bytes()
        resp = exchange(server.port, data, timeout=0.3)
        answered[name] = parse_message(resp).status if resp else None
    assert answered == TORTURE_ANSWER
    assert parse_message(options(server.port, branch="z9hG4bKafter") or b"").status == 200
    assert server.proc.poll() is None


def test_killed_worker_is_replaced_and_others_keep_serving(server: Server) -> None:
    import os
    import signal

    before = server.worker_pids()
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        now = server.worker_pids()
        if len(now) == 2 and before[0] not in now:
            break
        time.sleep(0.02)
    assert len(now) == 2 and before[0] not in now and before[1] in now
    for i in range(20):  # every message answered, whichever worker it hashes to
        assert parse_message(options(server.port, branch=f"z9hG4bKk{i}") or b"").status == 200


def register_contact(port: int, user: str, contact_port: int) -> int:
    data = (
        "REGISTER sip:example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{contact_port};branch=z9hG4bKreg{user};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=r\r\nTo: <sip:{user}@example.com>\r\n"
        f"Call-ID: reg-{user}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@127.0.0.1:{contact_port}>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    return int(parse_message(exchange(port, data) or b"").status)


def test_sipp_message_relayed_to_registered_sipp_uas(tmp_path: Path) -> None:
    from liveserver import free_udp_port, start_server

    # two workers: the REGISTER and the MESSAGEs land on either; the location table is shared
    srv = start_server(tmp_path, workers=2)
    uas_port = free_udp_port()
    uas = subprocess.Popen(
        ["sipp", "-sf", str(REPO / "bench" / "sipp" / "message_uas.xml"), "-i", "127.0.0.1",
         "-p", str(uas_port), "-m", "2000", "-timeout", "60", "-nostdin"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert register_contact(srv.port, "bob", uas_port) == 200
        stats = sipp("message_uac.xml", srv.port, 2000, 1000, tmp_path, ("-key", "to", "bob"))
        assert stats["SuccessfulCall(C)"] == "2000", stats
        assert stats["FailedCall(C)"] == "0"
    finally:
        uas.terminate()
        uas.wait(10)
        assert srv.stop() == 0
    # auth is off and bob has one UDP contact: every MESSAGE is the compiled relay's case
    relayed = [int(n) for n in re.findall(r"MESSAGE relay: (\d+) relayed", srv.log())]
    assert len(relayed) == 2 and sum(relayed) == 2000, relayed


def test_message_to_unregistered_user_is_stored_and_iscomposing_gets_480(server: Server) -> None:
    """The offline store keeps a MESSAGE (202); an isComposing is never stored (480)."""
    for n, ctype in ((1, b"text/plain"), (2, b"application/im-iscomposing+xml")):
        data = (
            b"MESSAGE sip:nobody@example.com SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKm480%d;rport\r\n"
            b"Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=x\r\nTo: <sip:nobody@example.com>\r\n"
            b"Call-ID: m480%d\r\nCSeq: 1 MESSAGE\r\nContent-Type: %s\r\nContent-Length: 0\r\n\r\n"
        ) % (n, n, ctype)
        assert parse_message(exchange(server.port, data) or b"").status == (202 if n == 1 else 480)


def test_digest_auth_sipp_md5_and_sha256_over_udp(tmp_path: Path) -> None:
    import sys

    from liveserver import start_server

    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    data = tmp_path / "data"
    subprocess.run(
        [sys.executable, "-m", "simplefast", "user", "add", "alice@example.com", "--password-file", str(pw),
         "--data-dir", str(data)], check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    # SIPp answers the first challenge and knows only MD5: offer MD5 first here
    srv = start_server(tmp_path, workers=2, auth=True, extra=("--auth-algorithms", "MD5,SHA-256"))
    try:
        stats = sipp("register_auth.xml", srv.port, 300, 200, tmp_path,
                     ("-au", "alice", "-ap", "s3cret", "-key", "user", "alice"))  # fmt: skip
        assert stats["SuccessfulCall(C)"] == "300", stats
        # SHA-256 with an independent client over UDP
        sys.path.insert(0, str(REPO / "tests" / "unit"))
        from test_auth import client_response

        def reg(cseq: int, extra: str = "") -> object:
            req = (
                "REGISTER sip:example.com SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKsha{cseq};rport\r\nMax-Forwards: 70\r\n"
                "From: <sip:alice@example.com>;tag=s\r\nTo: <sip:alice@example.com>\r\nCall-ID: sha\r\n"
                f"CSeq: {cseq} REGISTER\r\nContact: <sip:alice@127.0.0.1:9>\r\n"
                f"{extra}Content-Length: 0\r\n\r\n"
            ).encode()
            return parse_message(exchange(srv.port, req) or b"")

        r = reg(1)
        assert r.status == 401  # type: ignore[attr-defined]
        (sha,) = [c for c in r.get_all("WWW-Authenticate") if "SHA-256" in c]  # type: ignore[attr-defined]
        cred = client_response(sha, "REGISTER", "sip:example.com", "alice", "s3cret")
        assert reg(2, f"Authorization: {cred}\r\n").status == 200  # type: ignore[attr-defined]
        wrong = client_response(sha, "REGISTER", "sip:example.com", "alice", "guess", nc=2)
        assert reg(3, f"Authorization: {wrong}\r\n").status == 401  # type: ignore[attr-defined]
    finally:
        assert srv.stop() == 0


def query_contacts(port: int, user: str) -> list[str]:
    """A REGISTER without Contact lists the current bindings (RFC 3261 10.2.3)."""
    data = (
        "REGISTER sip:example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKq{user}{time.monotonic_ns()};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=q\r\nTo: <sip:{user}@example.com>\r\n"
        f"Call-ID: q-{user}-{time.monotonic_ns()}\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    resp = parse_message(exchange(port, data) or b"")
    assert resp.status == 200
    return [c.uri for c in resp.contacts()]


def test_registrations_survive_worker_kill_and_server_restart(tmp_path: Path) -> None:
    import os
    import signal

    from liveserver import start_server

    srv = start_server(tmp_path, workers=2)
    try:
        stats = sipp("register.xml", srv.port, 2000, 1000, tmp_path)
        assert stats["SuccessfulCall(C)"] == "2000"
        # every worker sees every binding (any query lands on either worker)
        for i in (0, 1, 999, 1999):
            assert len(query_contacts(srv.port, f"u{i + 1}")) == 1, i
        os.kill(srv.worker_pids()[0], signal.SIGKILL)
        time.sleep(1.0)
        for i in range(0, 2000, 97):
            assert len(query_contacts(srv.port, f"u{i + 1}")) == 1, i
    finally:
        assert srv.stop() in (0, 1)
    # restart on the same data directory: the bindings are restored
    srv2 = start_server(tmp_path, workers=2)
    try:
        for i in range(0, 2000, 97):
            assert len(query_contacts(srv2.port, f"u{i + 1}")) == 1, i
    finally:
        assert srv2.stop() == 0


def test_kill_9_during_sipp_load_loses_no_call_and_no_registration(tmp_path: Path) -> None:
    import os
    import signal
    import threading

    from liveserver import start_server

    srv = start_server(tmp_path, workers=2)
    try:
        result: dict[str, str] = {}
        load = threading.Thread(
            target=lambda: result.update(sipp("register.xml", srv.port, 6000, 1000, tmp_path))
        )
        load.start()
        time.sleep(2.0)  # about 2000 REGISTERs in
        victim = srv.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        load.join(90)
        # SIPp retransmits what the dead worker held; the other worker and the new one answer
        assert (result["SuccessfulCall(C)"], result["FailedCall(C)"]) == ("6000", "0"), result
        assert victim not in srv.worker_pids() and len(srv.worker_pids()) == 2
        missing = [i for i in range(1, 6001, 37) if len(query_contacts(srv.port, f"u{i}")) != 1]
        assert missing == []
    finally:
        assert srv.stop() in (0, 1)
    assert "exited with -9" in srv.log()


def test_no_persist_keeps_registrations_in_shared_memory_only(tmp_path: Path) -> None:
    from liveserver import start_server

    srv = start_server(tmp_path, workers=2, extra=("--no-persist",))
    try:
        assert register_contact(srv.port, "mem", 5999) == 200
        assert query_contacts(srv.port, "mem") == ["sip:mem@127.0.0.1:5999"]
    finally:
        assert srv.stop() == 0
    srv2 = start_server(tmp_path, workers=2)
    try:
        assert query_contacts(srv2.port, "mem") == []  # nothing was written to the store
    finally:
        assert srv2.stop() == 0


def test_hostile_datagrams_never_break_a_worker(server: Server) -> None:
    """Every seed of the fuzz corpus and 3000 seeded mutations of it, sent over UDP:
    no worker dies or reports an internal error, and the server keeps answering."""
    import random
    import socket

    seeds = [p.read_bytes() for p in sorted((REPO / "tests" / "corpus").rglob("*")) if p.is_file()]
    rnd = random.Random(4475)
    inputs = list(seeds)
    for _ in range(3000):
        b = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randint(1, 8)):
            op, at = rnd.randrange(4), rnd.randrange(len(b) + 1)
            if op == 0 and b:
                b[min(at, len(b) - 1)] = rnd.randrange(256)
            elif op == 1:
                b[at:at] = bytes([rnd.choice(b'\r\n :;,<>"\\%@[]=\x00\xff')])
            elif op == 2:
                del b[at : at + rnd.randint(1, 40)]
            else:
                b[at:at] = b[max(0, at - 30) : at]
        inputs.append(bytes(b[:60000]))
    before = server.worker_pids()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i, data in enumerate(inputs):
            if data:
                s.sendto(data, ("127.0.0.1", server.port))
            if i % 200 == 0:
                time.sleep(0.02)  # bounded rate: stay inside the socket buffers
    time.sleep(0.5)
    assert parse_message(options(server.port, branch="z9hG4bKafterfuzz") or b"").status == 200
    assert server.worker_pids() == before  # nobody died and was replaced
    assert server.stop() == 0
    log = server.log()
    assert "internal error while handling" not in log, log[-2000:]
    assert re.findall(r"(\d+) internal errors", log) == ["0", "0"], log[-2000:]


def test_cancel_and_non_2xx_ack_find_their_invite_in_any_worker(tmp_path: Path) -> None:
    """INVITE -> 180 -> CANCEL -> 200 + 487 -> ACK, for calls whose CANCEL and ACK hash
    to either worker: every CANCEL is matched (no 481) and every ACK stops the 487."""
    import socket
    import threading

    from liveserver import start_server

    from simplefast.sip import build_response

    srv = start_server(tmp_path, workers=2)
    uas = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    uas.bind(("127.0.0.1", 0))
    uas.settimeout(0.2)
    uas_port = uas.getsockname()[1]
    stop = threading.Event()
    invites: dict[str, object] = {}

    def run_uas() -> None:
        while not stop.is_set():
            try:
                data = uas.recv(65535)
            except TimeoutError:
                continue
            m = parse_message(data)
            if not m.is_request:
                continue
            to = (m.via_host, m.via_port or 5060)
            if m.method == "INVITE":
                invites[m.call_id] = m
                uas.sendto(build_response(m, 180, "Ringing", to_tag="uas"), to)
            elif m.method == "CANCEL":
                uas.sendto(build_response(m, 200, "OK", to_tag="uas"), to)
                inv = invites[m.call_id]
                uas.sendto(build_response(inv, 487, "Request Terminated", to_tag="uas"), to)  # type: ignore[arg-type]

    t = threading.Thread(target=run_uas, daemon=True)
    t.start()
    try:
        assert register_contact(srv.port, "bob", uas_port) == 200
        for k in range(12):
            cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            cli.bind(("127.0.0.1", 0))
            cli.settimeout(0.3)
            cport = cli.getsockname()[1]

            def req(method: str, k: int = k, cport: int = cport) -> bytes:
                cseq = f"1 {method}"
                return (
                    f"{method} sip:bob@example.com SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.1:{cport};branch=z9hG4bKcall{k};rport\r\nMax-Forwards: 70\r\n"
                    f"From: <sip:alice@example.com>;tag=a{k}\r\nTo: <sip:bob@example.com>"
                    f"{';tag=uas' if method == 'ACK' else ''}\r\nCall-ID: cancel-{k}\r\nCSeq: {cseq}\r\n"
                    "Content-Length: 0\r\n\r\n"
                ).encode()

            def responses(until: float, cli: socket.socket = cli) -> list[tuple[int, str]]:
                got = []
                end = time.monotonic() + until
                while time.monotonic() < end:
                    try:
                        r = parse_message(cli.recv(65535))
                    except TimeoutError:
                        continue
                    got.append((r.status, r.cseq_method))
                return got

            cli.sendto(req("INVITE"), ("127.0.0.1", srv.port))
            first = responses(0.4)
            assert (180, "INVITE") in first, (k, first)
            cli.sendto(req("CANCEL"), ("127.0.0.1", srv.port))
            after = responses(0.4)
            assert (200, "CANCEL") in after and (481, "CANCEL") not in after, (k, after)
            assert (487, "INVITE") in after, (k, after)
            cli.sendto(req("ACK"), ("127.0.0.1", srv.port))
            late = responses(1.2)  # Timer G would resend the 487 at 0.5 s if the ACK were lost
            assert (487, "INVITE") not in late, (k, late)
            cli.close()
    finally:
        stop.set()
        t.join(2)
        uas.close()
        assert srv.stop() == 0
    handed = re.findall(r"(\d+) handed off", srv.log())
    assert len(handed) == 2 and sum(map(int, handed)) > 0, handed  # the ring was used


def test_sighup_reloads_domains(tmp_path: Path) -> None:
    import signal

    from liveserver import start_server

    conf = tmp_path / "sf.toml"
    conf.write_text('[server]\ndomains = ["example.com"]\n')
    srv = start_server(tmp_path, workers=2, extra=("-c", str(conf)), domain=False)  # domains from the file

    def register(domain: str, n: int) -> int:
        data = (
            f"REGISTER sip:{domain} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKhup{n};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:dan@{domain}>;tag=h\r\nTo: <sip:dan@{domain}>\r\n"
            f"Call-ID: hup{n}\r\nCSeq: 1 REGISTER\r\nContact: <sip:dan@127.0.0.1:9>\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        return int(parse_message(exchange(srv.port, data) or b"").status)

    try:
        # not ours yet: the proxy would forward it, but cannot resolve the name (503: the
        # live servers' DNS server is a loopback port nobody serves)
        assert {register("new.example", n) for n in range(6)} == {503}
        conf.write_text('[server]\ndomains = ["example.com", "new.example"]\ntcp_idle_seconds = 120\n')
        srv.proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert {register("new.example", n) for n in range(6, 12)} == {200}  # whichever worker answers
    finally:
        assert srv.stop() == 0
    assert srv.log().count("reloaded: domains example.com,new.example") == 2
    assert srv.log().count("tcp idle 120 s") == 2


def test_requests_that_waited_past_the_delay_limit_get_503_then_service_resumes(tmp_path: Path) -> None:
    """Overload by queueing delay (docs/operator.md section 7) on the real server: the worker
    is stopped while requests queue in the kernel, so the batch it reads on waking waited
    past the limit; its new requests get a stateless 503 with Retry-After, and the next
    fresh request is served."""
    import os
    import signal
    import time

    from liveserver import start_server
    from presence_client import Peer

    srv = start_server(tmp_path, workers=1, extra=("--overload-delay-ms", "50"))
    p = Peer(srv.port, "alice")
    me = f"sip:127.0.0.1:{srv.port}"
    try:
        p.request("OPTIONS", me, call_id="before", from_tag="b")
        assert p.response_to("before", 1).status == 200
        (worker,) = srv.worker_pids()
        os.kill(worker, signal.SIGSTOP)
        try:
            for i in range(5):
                p.request("OPTIONS", me, call_id=f"late{i}", from_tag=f"l{i}")
            time.sleep(0.3)
        finally:
            os.kill(worker, signal.SIGCONT)
        for i in range(5):
            r = p.response_to(f"late{i}", 1)
            assert r.status == 503 and r.get("Retry-After") == "5"
        p.request("OPTIONS", me, call_id="after", from_tag="a")
        assert p.response_to("after", 1).status == 200
    finally:
        p.close()
        assert srv.stop() == 0
    assert re.search(r"5 shed \(503\) in 0 overloads and 1 late batches", srv.log())
