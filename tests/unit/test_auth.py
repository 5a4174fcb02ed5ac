"""Digest authentication (simplefast/proxy/auth.py) and its use by the SIP core."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from simplefast.proxy.auth import (
    NONCE_LEN,
    SWEEP_KEY,
    Credentials,
    DigestAuth,
    LocalNonceCounts,
    NonceCounts,
    SharedNonceCounts,
    h,
    ha1,
    parse_digest,
)
from simplefast.proxy.core import CoreConfig, SipCore
from simplefast.proxy.location import MemoryLocation
from simplefast.proxy.proxy import ProxyAddress
from simplefast.server import shared
from simplefast.server.config import Config
from simplefast.sip import parse_message
from simplefast.store.users import add_user, load_users, nonce_secret
from simplefast.testing import load_impl

NOW = 1_800_000_000.0


def test_rfc7616_example_responses() -> None:
    # RFC 7616 section 3.9.1: the same request answered with MD5 and with SHA-256
    nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
    cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
    want = {"MD5": "8ca523f5e9506fed4657c9700eebdbec",
            "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"}  # fmt: skip
    for alg, response in want.items():
        a1 = ha1(alg, "Mufasa", "http-auth@example.org", "Circle of Life")
        a2 = h(alg, "GET:/dir/index.html")
        assert h(alg, f"{a1}:{nonce}:00000001:{cnonce}:auth:{a2}") == response


def test_parse_digest() -> None:
    p = parse_digest(
        'Digest username="bob", realm="a.com", nonce="n\\"x", uri="sip:a.com", nc=00000001, qop=auth'
    )
    assert p == {"username": "bob", "realm": "a.com", "nonce": 'n"x', "uri": "sip:a.com", "nc": "00000001",
                 "qop": "auth"}  # fmt: skip
    assert parse_digest("Basic Ym9iOnNlY3JldA==") is None
    assert parse_digest('Digest username="bob') is None  # unterminated
    assert parse_digest('Digest realm="a", realm="b"') is None  # repeated


def client_response(challenge: str, method: str, uri: str, user: str, password: str, nc: int = 1) -> str:
    """An independent client: answers one challenge header value (RFC 7616 section 3.4)."""
    p = parse_digest(challenge)
    assert p is not None
    alg = p["algorithm"]
    H = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}[alg]  # noqa: N806

    def hx(s: str) -> str:
        return H(s.encode()).hexdigest()

    nc_text, cnonce = f"{nc:08x}", "0a4f113b"
    a1, a2 = hx(f"{user}:{p['realm']}:{password}"), hx(f"{method}:{uri}")
    resp = hx(f"{a1}:{p['nonce']}:{nc_text}:{cnonce}:auth:{a2}")
    return (f'Digest username="{user}", realm="{p["realm"]}", nonce="{p["nonce"]}", uri="{uri}", '
            f'response="{resp}", algorithm={alg}, cnonce="{cnonce}", qop=auth, nc={nc_text}')  # fmt: skip


USERS = {"alice": Credentials("alice", "example.com", {a: ha1(a, "alice", "example.com", "s3cret")
                                                       for a in ("MD5", "SHA-256")})}  # fmt: skip


@pytest.mark.parametrize("alg_index", [0, 1], ids=["SHA-256", "MD5"])
def test_check_accepts_both_algorithms_and_refuses_replay(alg_index: int) -> None:
    auth = DigestAuth(b"k" * 32)
    challenge = auth.challenges("example.com", NOW)[alg_index]
    cred = client_response(challenge, "REGISTER", "sip:example.com", "alice", "s3cret")
    assert auth.check([cred], "REGISTER", "example.com", USERS, NOW + 1).ok
    replay = auth.check([cred], "REGISTER", "example.com", USERS, NOW + 2)
    assert not replay.ok and replay.reason == "nonce count replayed"
    again = client_response(challenge, "REGISTER", "sip:example.com", "alice", "s3cret", nc=2)
    assert auth.check([again], "REGISTER", "example.com", USERS, NOW + 3).ok


def test_every_401_has_its_own_nonce() -> None:
    auth = DigestAuth(b"k" * 32)
    challenges = [c for _ in range(50) for c in auth.challenges("example.com", NOW)]
    nonces = {(parse_digest(c) or {})["nonce"] for c in challenges}
    assert len(nonces) == 50  # one nonce per 401, shared by its SHA-256 and MD5 challenges


def test_check_refusals() -> None:
    auth = DigestAuth(b"k" * 32)
    ch = auth.challenges("example.com", NOW)[0]
    assert auth.challenges("example.com", NOW)[0].startswith('Digest realm="example.com"')
    assert "algorithm=SHA-256" in ch and "algorithm=MD5" in auth.challenges("example.com", NOW)[1]
    wrong = client_response(ch, "REGISTER", "sip:example.com", "alice", "guess")
    assert auth.check([wrong], "REGISTER", "example.com", USERS, NOW).reason == "wrong response"
    other = DigestAuth(b"x" * 32).challenges("example.com", NOW)[0]  # nonce made with another secret
    forged = client_response(other, "REGISTER", "sip:example.com", "alice", "s3cret")
    assert auth.check([forged], "REGISTER", "example.com", USERS, NOW).reason == "nonce not ours"
    nobody = client_response(ch, "REGISTER", "sip:example.com", "mallory", "s3cret")
    assert auth.check([nobody], "REGISTER", "example.com", USERS, NOW).reason == "unknown user"
    good = client_response(ch, "REGISTER", "sip:example.com", "alice", "s3cret")
    stale = auth.check([good], "REGISTER", "example.com", USERS, NOW + 301)
    assert not stale.ok and stale.stale
    # credentials computed for another method do not pass
    assert auth.check([good], "INVITE", "example.com", USERS, NOW).reason == "wrong response"
    assert auth.check([], "REGISTER", "example.com", USERS, NOW).reason == "no credentials for this realm"


def test_nc_zero_is_refused() -> None:
    auth = DigestAuth(b"k" * 32)
    ch = auth.challenges("example.com", NOW)[0]
    zero = client_response(ch, "REGISTER", "sip:example.com", "alice", "s3cret", nc=0)
    assert auth.check([zero], "REGISTER", "example.com", USERS, NOW).reason == "nonce count replayed"


def test_only_the_issued_nonce_string_is_accepted() -> None:
    """A nonce is one string (its base64 padding or other spellings of the
    same bytes are refused), so it has one entry in the nonce-count table."""
    auth = DigestAuth(b"k" * 32)
    ch = auth.challenges("example.com", NOW)[0]
    nonce = (parse_digest(ch) or {})["nonce"]
    assert len(nonce) == NONCE_LEN
    padded = client_response(ch.replace(nonce, nonce + "="), "REGISTER", "sip:example.com", "alice", "s3cret")
    assert auth.check([padded], "REGISTER", "example.com", USERS, NOW).reason == "nonce not ours"
    last = nonce[-1]  # its 2 lowest bits are unused: flipping one spells the same bytes
    other = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = other[other.index(last) ^ 1]
    respelled = client_response(
        ch.replace(nonce, nonce[:-1] + twin), "REGISTER", "sip:example.com", "alice", "s3cret"
    )
    assert auth.check([respelled], "REGISTER", "example.com", USERS, NOW).reason == "nonce not ours"
    good = client_response(ch, "REGISTER", "sip:example.com", "alice", "s3cret")
    assert auth.check([good], "REGISTER", "example.com", USERS, NOW).ok


# ---------------------------------------------------------------- nonce counts: per worker and shared

NONCE_KINDS = ("local", "ref", "ext")  # LocalNonceCounts; SharedNonceCounts on either shmindex twin


def nonce_table(kind: str, slots: int = 64) -> Any:
    m = load_impl(kind).shmindex
    buf = bytearray(m.table_size(slots, NONCE_LEN, 16))
    return m.ShmTable(buf, slots, NONCE_LEN, 16, create=True)


def make_counts(kind: str) -> NonceCounts:
    return LocalNonceCounts() if kind == "local" else SharedNonceCounts(nonce_table(kind))


def nonces(n: int) -> list[str]:
    auth = DigestAuth(b"k" * 32)
    return [auth.nonce("example.com", NOW) for _ in range(n)]


@pytest.mark.parametrize("kind", NONCE_KINDS)
def test_nonce_counts_advance(kind: str) -> None:
    c = make_counts(kind)
    a, b = nonces(2)
    assert c.advance(a, 1, NOW)
    assert not c.advance(a, 1, NOW)  # the replay
    assert c.advance(a, 3, NOW)  # counts may skip (a client's parallel requests)
    assert not c.advance(a, 2, NOW)  # but never go back
    assert c.advance(b, 1, NOW)  # per nonce
    assert not c.advance(b, 1, NOW)


@pytest.mark.parametrize("kind", NONCE_KINDS)
def test_nonce_counts_sweep_forgets_expired_nonces(kind: str) -> None:
    c = make_counts(kind)
    old, new = nonces(2)
    assert c.advance(old, 5, NOW)
    assert c.advance(new, 5, NOW + 100)
    assert c.sweep(NOW + 50) == 1  # issued before NOW + 50: forgotten
    assert c.sweep(NOW + 51) == 0  # not again within sweep_every
    assert c.advance(old, 1, NOW)  # (DigestAuth refuses an expired nonce as stale before asking)
    assert not c.advance(new, 5, NOW + 100)  # the live one is kept
    if isinstance(c, SharedNonceCounts):
        assert c.sweep(NOW + 200) == 2  # the next period: old (again) and new


def test_local_nonce_counts_are_bounded() -> None:
    c = LocalNonceCounts(max_tracked=3)
    ns = nonces(4)
    for n in ns:
        assert c.advance(n, 1, NOW)
    assert len(c) == 3
    assert c.advance(ns[0], 1, NOW)  # the least recently used was dropped
    assert not c.advance(ns[3], 1, NOW)


@pytest.mark.parametrize("kind", ("ref", "ext"))
def test_shared_sweep_is_done_by_one_worker_per_period(kind: str) -> None:
    table = nonce_table(kind)
    w1, w2 = SharedNonceCounts(table), SharedNonceCounts(table)
    a, b, d = nonces(3)
    assert w1.advance(a, 1, NOW)
    assert w1.sweep(NOW + 10) == 1  # w1 claims the period of NOW + 10 and sweeps
    assert w2.advance(b, 1, NOW)
    assert w2.sweep(NOW + 20) == 0  # same period (60 s): already claimed, nothing scanned
    assert not w1.advance(b, 1, NOW)
    assert w2.sweep(NOW + 70) == 1  # the next period is w2's
    assert w2.advance(d, 1, NOW + 70)
    assert sorted(table.keys()) == sorted([SWEEP_KEY, d.encode()])


@pytest.mark.parametrize("kind", ("ref", "ext"))
def test_full_shared_table_falls_back_to_the_worker(kind: str) -> None:
    table = nonce_table(kind, slots=8)  # room for 6 nonces
    c = SharedNonceCounts(table)
    ns = nonces(8)
    for n in ns[:6]:
        assert c.advance(n, 1, NOW)
    assert c.full == 0
    assert c.advance(ns[6], 1, NOW)  # no room: tracked by this worker
    assert c.full == 1 and table.get(ns[6].encode()) is None
    assert not c.advance(ns[6], 1, NOW)  # still refused here
    assert c.full == 1
    assert not c.advance(ns[0], 1, NOW)  # nonces in the table keep working when it is full
    assert c.advance(ns[0], 2, NOW)
    table.delete(ns[1].encode())  # room again
    assert not c.advance(ns[6], 1, NOW)  # the worker's count still holds for that nonce
    assert c.advance(ns[6], 2, NOW)  # and a higher count goes to the table
    assert table.get(ns[6].encode()) == (2).to_bytes(8, "big") + int(NOW).to_bytes(8, "big")
    assert not c.advance(ns[6], 2, NOW)


@pytest.mark.parametrize("kind", ("ref", "ext"))
def test_two_workers_sharing_a_table_refuse_each_others_replays(kind: str) -> None:
    m = load_impl(kind).shmindex
    buf = bytearray(m.table_size(64, NONCE_LEN, 16))
    t1 = m.ShmTable(buf, 64, NONCE_LEN, 16, create=True)
    t2 = m.ShmTable(buf, 64, NONCE_LEN, 16, create=False)  # the second worker's attachment
    w1 = DigestAuth(b"k" * 32, nonce_counts=SharedNonceCounts(t1))
    w2 = DigestAuth(b"k" * 32, nonce_counts=SharedNonceCounts(t2))
    ch = w1.challenges("example.com", NOW)[0]

    def cred(nc: int) -> list[str]:
        return [client_response(ch, "REGISTER", "sip:example.com", "alice", "s3cret", nc=nc)]

    assert w1.check(cred(1), "REGISTER", "example.com", USERS, NOW + 1).ok
    replay = w2.check(cred(1), "REGISTER", "example.com", USERS, NOW + 2)
    assert not replay.ok and replay.reason == "nonce count replayed"
    assert w2.check(cred(2), "REGISTER", "example.com", USERS, NOW + 3).ok
    assert w1.check(cred(2), "REGISTER", "example.com", USERS, NOW + 4).reason == "nonce count replayed"
    assert w1.check(cred(3), "REGISTER", "example.com", USERS, NOW + 5).ok


def test_per_worker_counts_miss_a_replay_to_another_worker() -> None:
    """Why the table is shared: without it, the second worker has not seen the nonce."""
    w1, w2 = DigestAuth(b"k" * 32), DigestAuth(b"k" * 32)
    ch = w1.challenges("example.com", NOW)[0]
    cred = [client_response(ch, "REGISTER", "sip:example.com", "alice", "s3cret")]
    assert w1.check(cred, "REGISTER", "example.com", USERS, NOW).ok
    assert w2.check(cred, "REGISTER", "example.com", USERS, NOW).ok


@pytest.mark.parametrize("kind", ("ref", "ext"))
def test_digest_auth_sweeps_expired_nonces(kind: str) -> None:
    table = nonce_table(kind)
    auth = DigestAuth(b"k" * 32, nonce_counts=SharedNonceCounts(table), nonce_ttl=300)
    old_ch = auth.challenges("example.com", NOW)[0]
    old = [client_response(old_ch, "REGISTER", "sip:example.com", "alice", "s3cret")]
    assert auth.check(old, "REGISTER", "example.com", USERS, NOW).ok
    old_nonce = (parse_digest(old_ch) or {})["nonce"].encode()
    assert table.get(old_nonce) is not None
    later = NOW + 300 + 5 + 60  # past nonce_ttl, SWEEP_GRACE and a sweep period
    new_ch = auth.challenges("example.com", later)[0]
    new = [client_response(new_ch, "REGISTER", "sip:example.com", "alice", "s3cret")]
    assert auth.check(new, "REGISTER", "example.com", USERS, later).ok  # sweeps on the way
    assert table.get(old_nonce) is None
    stale = auth.check(old, "REGISTER", "example.com", USERS, later)  # forgotten, and refused anyway
    assert not stale.ok and stale.stale


def test_shared_state_hands_every_worker_the_same_counts(tmp_path: Path) -> None:
    cfg = Config(data_dir=tmp_path / "d", location_capacity=16, workers=2)
    state = shared.create(cfg)
    secret = b"k" * 32
    ch = DigestAuth(secret).challenges("example.com", NOW)[0]
    cred = [client_response(ch, "REGISTER", "sip:example.com", "alice", "s3cret")]
    pid = os.fork()
    if pid == 0:  # worker 1: accepts the request
        code = 1
        try:
            signal.alarm(30)
            w1 = DigestAuth(secret, nonce_counts=state.nonce_counts())
            code = 0 if w1.check(cred, "REGISTER", "example.com", USERS, NOW).ok else 3
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("worker hung")
        time.sleep(0.005)
    assert os.waitstatus_to_exitcode(done[1]) == 0
    w2 = DigestAuth(secret, nonce_counts=state.nonce_counts())  # worker 2: gets the replay
    assert w2.check(cred, "REGISTER", "example.com", USERS, NOW).reason == "nonce count replayed"
    no_auth = shared.create(Config(data_dir=tmp_path / "e", location_capacity=16, auth=False))
    assert no_auth.nonces is None
    with pytest.raises(RuntimeError, match="auth off"):
        no_auth.nonce_counts()


# ---------------------------------------------------------------- through the SIP core


def secure_core(tmp_path: Path) -> SipCore:
    add_user(tmp_path, "alice@example.com", "s3cret")
    add_user(tmp_path, "bob@example.com", "b0b")
    cfg = CoreConfig(domains=frozenset({"example.com"}), local_hosts=frozenset({"10.0.0.1"}))
    return SipCore(cfg, MemoryLocation(), ProxyAddress("10.0.0.1", 5060, 40000),
                   auth=DigestAuth(nonce_secret(tmp_path)), users=load_users(tmp_path))  # fmt: skip


def request(method: str, frm: str, to: str, ruri: str, cseq: int, extra: str = "") -> bytes:
    return (
        f"{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK{method}{cseq}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:{frm}>;tag=f\r\nTo: <sip:{to}>\r\nCall-ID: a1\r\n"
        f"CSeq: {cseq} {method}\r\nContact: <sip:{frm.split('@')[0]}@192.0.2.1:5070>\r\n{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def exchange(c: SipCore, data: bytes) -> object:
    c.on_message(data, ("192.0.2.1", 5070), reliable=False, now=0.0)
    out = [parse_message(d) for d, p in c.outgoing() if p == ("192.0.2.1", 5070)]
    return out[-1]


def test_register_is_challenged_then_accepted(tmp_path: Path) -> None:
    c = secure_core(tmp_path)
    r = exchange(c, request("REGISTER", "alice@example.com", "alice@example.com", "sip:example.com", 1))
    assert r.status == 401  # type: ignore[attr-defined]
    challenges = r.get_all("WWW-Authenticate")  # type: ignore[attr-defined]
    assert [("SHA-256" in x, "MD5" in x) for x in challenges] == [(True, False), (False, True)]
    for i, ch in enumerate(challenges):
        # the two challenges of one 401 share a nonce, so its count grows across them
        cred = client_response(ch, "REGISTER", "sip:example.com", "alice", "s3cret", nc=1 + i)
        ok = exchange(
            c,
            request(
                "REGISTER",
                "alice@example.com",
                "alice@example.com",
                "sip:example.com",
                2 + i,
                f"Authorization: {cred}\r\n",
            ),
        )
        assert ok.status == 200  # type: ignore[attr-defined]


def test_register_with_another_users_credentials_is_403(tmp_path: Path) -> None:
    c = secure_core(tmp_path)
    r = exchange(c, request("REGISTER", "alice@example.com", "alice@example.com", "sip:example.com", 1))
    cred = client_response(r.get_all("WWW-Authenticate")[0], "REGISTER", "sip:example.com", "bob", "b0b")  # type: ignore[attr-defined]
    bad = exchange(
        c,
        request(
            "REGISTER",
            "alice@example.com",
            "alice@example.com",
            "sip:example.com",
            2,
            f"Authorization: {cred}\r\n",
        ),
    )
    assert bad.status == 403  # type: ignore[attr-defined]


def test_proxied_requests_get_407_from_our_users_and_pass_from_outside(tmp_path: Path) -> None:
    c = secure_core(tmp_path)
    msg = request("MESSAGE", "alice@example.com", "carol@192.0.2.50", "sip:carol@192.0.2.50", 1)
    r = exchange(c, msg)
    assert r.status == 407  # type: ignore[attr-defined]
    ch = r.get_all("Proxy-Authenticate")[0]  # type: ignore[attr-defined]
    cred = client_response(ch, "MESSAGE", "sip:carol@192.0.2.50", "alice", "s3cret")
    c.on_message(
        request(
            "MESSAGE",
            "alice@example.com",
            "carol@192.0.2.50",
            "sip:carol@192.0.2.50",
            2,
            f"Proxy-Authorization: {cred}\r\n",
        ),
        ("192.0.2.1", 5070),
        reliable=False,
        now=0.0,
    )
    assert [p for _, p in c.outgoing()] == [("192.0.2.50", 5060, "c")]  # forwarded
    # from another domain to another domain: no open relay
    r = exchange(c, request("MESSAGE", "eve@evil.example", "x@192.0.2.60", "sip:x@192.0.2.60", 3))
    assert r.status == 403  # type: ignore[attr-defined]
    # from another domain to one of ours: passes auth (480: bob has no binding)
    r = exchange(c, request("MESSAGE", "eve@evil.example", "bob@example.com", "sip:bob@example.com", 4))
    assert r.status == 480  # type: ignore[attr-defined]


def test_cli_user_add_stores_ha1_not_the_password(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("correct horse\n")
    out = subprocess.run(
        [sys.executable, "-m", "simplefast", "user", "add", "dave@example.com", "--password-file", str(pw),
         "--data-dir", str(tmp_path / "d")], capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    users = load_users(tmp_path / "d")
    assert users["example.com"]["dave"].ha1["MD5"] == ha1("MD5", "dave", "example.com", "correct horse")
    assert b"correct horse" not in (tmp_path / "d" / "users.sqlite3").read_bytes()
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "simplefast",
            "user",
            "add",
            "nodomain",
            "--password-file",
            str(pw),
            "--data-dir",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "expected USER@DOMAIN" in bad.stderr
