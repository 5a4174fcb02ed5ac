"""MSRP relay core (simplefast/msrp/relay.py), sans-IO: fake clock, fake connections.

Replays the RFC 4976 section 3 and 5.1 examples (tests/vectors/msrp) through one or two
relays wired by hand (a connection is a pair of cids, one per side), then the error,
timeout and teardown cases of docs/msrp.md sections 2-4.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from simplefast._impl import ACTIVE, load
from simplefast.msrp.relay import (
    AuthFailed,
    Authority,
    CloseConnection,
    Connect,
    MsrpRelay,
    RelayConfig,
    RelayEvent,
    SessionCreated,
    SessionEnded,
)
from simplefast.proxy.auth import Credentials, h, ha1, parse_digest
from simplefast.testing import VECTORS, msrp_vector

fr = load(ACTIVE).msrpframe

T0 = 1_700_000_000.0  # the fake clock (wall-clock seconds: nonces carry their issue time)
SECRET = b"s" * 32
PASSWORD = "wonderland"

# ---------------------------------------------------------------- vectors (from test_msrpframe.py)

MSRP_DIR = VECTORS / "msrp"
MANIFEST: dict[str, Any] = json.loads((MSRP_DIR / "manifest.json").read_text())
load_vector = msrp_vector  # simplefast/testing.py: continuations joined


def repaired(name: str) -> bytes:
    """5.1-03/-09/-10 print 'username="Alice",' without its backslash: put it back."""
    return re.sub(rb'(username="Alice",)\r\n[ \t]+', rb"\1 ", load_vector(name))


def lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n")


# ---------------------------------------------------------------- helpers

ALICE = "msrps://alice.example.org:7965/bar;tcp"
BOB = "msrps://bob.example.net:8145/foo;tcp"
A_URI = "msrps://a.example.org:9000/kjfjan;tcp"
B_URI = "msrps://b.example.net:9000/aeiug;tcp"
B_AUTHORITY = Authority("msrps", "b.example.net", 9000)


def ids(*names: str, prefix: str = "t") -> Callable[[], str]:
    """The given ids in order, then prefix0001, prefix0002, ..."""
    it = itertools.chain(names, (f"{prefix}{n:04d}" for n in itertools.count(1)))
    return lambda: next(it)


def make_relay(
    host: str,
    sids: Iterable[str] = (),
    tids: Iterable[str] = (),
    *,
    realm: str | None = None,
    port: int = 9000,
    algorithms: tuple[str, ...] = ("MD5",),
    **cfg: Any,
) -> MsrpRelay:
    realm = realm or host
    users = {
        name: Credentials(name, realm, {a: ha1(a, name, realm, PASSWORD) for a in ("MD5", "SHA-256")})
        for name in ("Alice", "Bob")
    }
    config = RelayConfig("msrps", host, port, realm, algorithms=algorithms, **cfg)
    return MsrpRelay(
        config, users, secret=SECRET, new_session_id=ids(*sids, prefix="s"), new_tid=ids(*tids, prefix="r")
    )


def out(relay: MsrpRelay) -> list[tuple[int, Any]]:
    """What the relay wrote, each piece parsed (each piece is exactly one message)."""
    return [(cid, fr.parse_one(data)) for cid, data in relay.outgoing()]


def events(relay: MsrpRelay) -> list[RelayEvent]:
    evs = []
    while (ev := relay.next_event()) is not None:
        evs.append(ev)
    return evs


def credentials(
    challenge: str,
    user: str,
    uri: str,
    *,
    password: str = PASSWORD,
    nc: str = "00000001",
    cnonce: str = "0a4f113b",
    algorithm: str | None = None,
) -> str:
    """The client's Authorization for an MSRP AUTH (A2 = AUTH:<last To-Path URI>, no uri=)."""
    p = parse_digest(challenge)
    assert p is not None
    alg = algorithm or p.get("algorithm", "MD5")
    ha2 = h(alg, f"AUTH:{uri}")
    resp = h(alg, f"{ha1(alg, user, p['realm'], password)}:{p['nonce']}:{nc}:{cnonce}:auth:{ha2}")
    extra = f", algorithm={alg}" if algorithm else ""
    opaque = f', opaque="{p["opaque"]}"' if "opaque" in p else ""
    return (
        f'Digest username="{user}", realm="{p["realm"]}", nonce="{p["nonce"]}", qop=auth, '
        f'nc={nc}, cnonce="{cnonce}", response="{resp}"{opaque}{extra}'
    )


def auth(
    relay: MsrpRelay,
    cid: int,
    to: list[str],
    frm: list[str],
    *,
    creds: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    tid: str = "49fh",
    now: float = T0,
) -> Any:
    hdrs = list(headers or [])
    if creds is not None:
        hdrs.append(("Authorization", creds))
    relay.data(cid, fr.build_request(tid, "AUTH", to, frm, hdrs), now)
    msgs = out(relay)
    assert len(msgs) == 1 and msgs[0][0] == cid, msgs
    return msgs[0][1]


def login(relay: MsrpRelay, cid: int, client: str, user: str = "Alice", now: float = T0) -> str:
    """AUTH twice on ``cid``; returns the issued URI."""
    c = relay.config
    relay.connected(cid, None, now)
    to = [f"msrps://{c.host}:{c.port};tcp"]
    r401 = auth(relay, cid, to, [client], now=now)
    assert r401.status == 401
    r200 = auth(relay, cid, to, [client], creds=credentials(r401.get("WWW-Authenticate"), user, to[-1]))
    assert r200.status == 200, r200.to_bytes()
    created = [e for e in events(relay) if isinstance(e, SessionCreated)]
    assert created[-1].uri == r200.get("Use-Path").split()[-1]
    return str(created[-1].uri)


def send(
    tid: str,
    to: list[str],
    frm: list[str],
    *,
    fr_value: str | None = None,
    body: bytes = b"hello",
    message_id: str | None = "m1",
) -> bytes:
    hdrs = []
    if message_id is not None:
        hdrs.append(("Message-ID", message_id))
    hdrs.append(("Byte-Range", f"1-{len(body)}/{len(body)}"))
    if fr_value is not None:
        hdrs.append(("Failure-Report", fr_value))
    return fr.build_request(tid, "SEND", to, frm, hdrs, content_type="text/plain", body=body)


def relay_a(tids: Iterable[str] = ()) -> MsrpRelay:
    """Relay A with Alice logged in on cid 1 (her URI A_URI)."""
    a = make_relay("a.example.org", ["kjfjan"], tids)
    assert login(a, 1, ALICE) == A_URI
    return a


def forward_to_b(a: MsrpRelay, data: bytes, now: float = T0) -> list[tuple[int, Any]]:
    """Feed ``data`` from Alice (cid 1); answer a Connect to B with cid 2."""
    a.data(1, data, now)
    first = out(a)
    for ev in events(a):
        if isinstance(ev, Connect):
            assert ev.authority == B_AUTHORITY
            a.connected(2, ev.authority, now, token=ev.token)
    return first + out(a)


# ---------------------------------------------------------------- AUTH: RFC 4976 5.1


def test_first_auth_gets_a_401_like_the_vector() -> None:
    intra = make_relay("intra.example.com", ["jui787s2f"])
    intra.data(1, load_vector("rfc4976-5.1-01-auth-49fh.msg"), T0)
    [(cid, m)] = out(intra)
    want = lines(load_vector("rfc4976-5.1-02-401-49fh.msg"))
    got = lines(m.to_bytes())
    assert cid == 1
    assert got[:3] == want[:3]  # start line (same tid), To-Path = From-Path, From-Path = To-Path[0]
    assert got[-2:] == want[-2:]  # end-line
    p = parse_digest(m.get("WWW-Authenticate"))
    assert p is not None
    assert p["realm"] == "intra.example.com" and p["qop"] == "auth"
    assert len(p["nonce"]) == 43 and p["opaque"]  # our nonce; an opaque for msrplib (2.2)
    assert p["algorithm"] == "MD5"


def test_retried_auth_gets_a_200_with_use_path_and_expires() -> None:
    intra = make_relay("intra.example.com", ["jui787s2f"])
    intra.data(1, load_vector("rfc4976-5.1-01-auth-49fh.msg"), T0)
    [(_, r401)] = out(intra)
    to = "msrps://alice@intra.example.com;tcp"
    frm = "msrps://alice.example.com:9892/98cjs;tcp"
    creds = credentials(r401.get("WWW-Authenticate"), "Alice", to)
    intra.data(1, fr.build_request("49fi", "AUTH", [to], [frm], [("Authorization", creds)]), T0)
    [(cid, m)] = out(intra)
    assert (cid, m.tid, m.status, m.to_path, m.from_path) == (1, "49fi", 200, [frm], [to])
    assert m.get("Use-Path") == "msrps://intra.example.com:9000/jui787s2f;tcp"
    assert m.get("Expires") == "1800"
    info = parse_digest("Digest " + m.get("Authentication-Info"))
    assert info is not None and info["cnonce"] == "0a4f113b" and info["nc"] == "00000001"
    p = parse_digest(r401.get("WWW-Authenticate"))
    assert p is not None
    a1 = ha1("MD5", "Alice", "intra.example.com", PASSWORD)
    assert info["rspauth"] == h("MD5", f"{a1}:{p['nonce']}:00000001:0a4f113b:auth:{h('MD5', ':' + to)}")
    [ev] = events(intra)
    assert ev == SessionCreated("jui787s2f", "msrps://intra.example.com:9000/jui787s2f;tcp", "Alice", 1, 1800)
    assert intra.sessions == {"jui787s2f": "ISSUED"}


def test_the_rfc_retry_with_a_foreign_nonce_gets_a_new_challenge() -> None:
    intra = make_relay("intra.example.com")
    intra.data(1, repaired("rfc4976-5.1-03-auth-49fi.msg"), T0)
    [(_, m)] = out(intra)
    assert (m.tid, m.status) == ("49fi", 401)
    assert intra.sessions == {}


def test_auth_through_an_inner_relay_rfc4976_5_1() -> None:
    """Alice -> intra -> extra: 05 gives 06 (byte for byte), the 401 and the 200 come back
    with Alice's tids and the paths of 12."""
    intra = make_relay("intra.example.com", ["jui787s2f"], ["m2nbvw", "m4nbvx"])
    extra = make_relay("extra.example.com", ["mywdEe1233"])
    alice = "msrps://alice.example.com:9892/98cjs;tcp"
    assert login(intra, 1, alice) == "msrps://intra.example.com:9000/jui787s2f;tcp"

    intra.data(1, load_vector("rfc4976-5.1-05-auth-mnbvw.msg"), T0)
    assert out(intra) == []
    [conn] = events(intra)
    assert isinstance(conn, Connect)
    assert conn.authority == Authority("msrps", "extra.example.com", 2855)  # no port: 2855
    intra.connected(7, conn.authority, T0, token=conn.token)
    [(cid, data)] = intra.outgoing()
    assert cid == 7 and data == load_vector("rfc4976-5.1-06-auth-m2nbvw.msg")

    extra.connected(70, None, T0)
    extra.data(70, data, T0)
    [(_, r401)] = extra.outgoing()
    assert lines(r401)[:3] == lines(load_vector("rfc4976-5.1-07-401-m2nbvw.msg"))[:3]
    intra.data(7, r401, T0)
    [(cid, m)] = out(intra)
    assert (cid, m.tid, m.status) == (1, "mnbvw", 401)
    assert m.to_path == [alice]
    assert m.from_path == ["msrps://intra.example.com:9000/jui787s2f;tcp", "msrps://extra.example.com;tcp"]

    to = ["msrps://intra.example.com:9000/jui787s2f;tcp", "msrps://extra.example.com;tcp"]
    creds = credentials(m.get("WWW-Authenticate"), "Alice", to[-1], cnonce="85a0dca8")
    intra.data(1, fr.build_request("m3nbvx", "AUTH", to, [alice], [("Authorization", creds)]), T0)
    [(cid, fwd)] = out(intra)
    want10 = lines(repaired("rfc4976-5.1-10-auth-m4nbvx.msg"))
    assert cid == 7 and lines(fwd.to_bytes())[:3] == want10[:3]
    extra.data(70, fwd.to_bytes(), T0)
    [(_, r200)] = extra.outgoing()
    intra.data(7, r200, T0)
    [(cid, m)] = out(intra)
    want12 = lines(load_vector("rfc4976-5.1-12-200ok-m3nbvx.msg"))
    assert cid == 1 and lines(m.to_bytes())[:3] == want12[:3]  # tid m3nbvx, paths as printed
    assert m.get("Expires") == "1800"
    # docs/msrp.md 2.4 (msrprelay's rule): the inner relay, then the outer relay's new URI
    assert m.get("Use-Path") == (
        "msrps://intra.example.com:9000/jui787s2f;tcp msrps://extra.example.com:9000/mywdEe1233;tcp"
    )
    assert extra.sessions == {"mywdEe1233": "ISSUED"}


# ---------------------------------------------------------------- AUTH errors


A_AUTH = ["msrps://a.example.org:9000;tcp"]


def challenge(relay: MsrpRelay, cid: int = 1) -> str:
    return str(auth(relay, cid, A_AUTH, [ALICE]).get("WWW-Authenticate"))


@pytest.mark.parametrize(
    ("expires", "status", "header"),
    [
        ("10", 423, ("Min-Expires", "60")),
        ("7200", 423, ("Max-Expires", "3600")),
        ("soon", 400, None),
        ("\u00b2", 400, None),
        ("-5", 400, None),
    ],
)
def test_auth_expires_out_of_bounds(expires: str, status: int, header: tuple[str, str] | None) -> None:
    a = make_relay("a.example.org")
    creds = credentials(challenge(a), "Alice", A_AUTH[0])
    m = auth(a, 1, A_AUTH, [ALICE], creds=creds, headers=[("Expires", expires)])
    assert m.status == status
    if header is not None:
        assert m.get(header[0]) == header[1]
    assert a.sessions == {}


def test_auth_expires_granted() -> None:
    a = make_relay("a.example.org")
    creds = credentials(challenge(a), "Alice", A_AUTH[0])
    m = auth(a, 1, A_AUTH, [ALICE], creds=creds, headers=[("Expires", "600")])
    assert (m.status, m.get("Expires")) == (200, "600")


def test_auth_wrong_password_is_403() -> None:
    a = make_relay("a.example.org")
    creds = credentials(challenge(a), "Alice", A_AUTH[0], password="guess")
    assert auth(a, 1, A_AUTH, [ALICE], creds=creds).status == 403
    assert [type(e) for e in events(a)] == [AuthFailed]


@pytest.mark.parametrize(
    "creds",
    [
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
        'Digest username="Alice", realm="a.example.org"',
        'Digest username="Alice", realm="a.example.org", nonce="x", qop=auth, nc=1, cnonce="c", response="r"',
        'Digest username="Alice", realm="unterminated',
    ],
)
def test_malformed_auth_is_400(creds: str) -> None:
    a = make_relay("a.example.org")
    assert auth(a, 1, A_AUTH, [ALICE], creds=creds).status == 400


def test_uri_parameter_must_be_the_digest_uri() -> None:
    a = make_relay("a.example.org")
    creds = credentials(challenge(a), "Alice", A_AUTH[0]) + ', uri="msrps://elsewhere;tcp"'
    assert auth(a, 1, A_AUTH, [ALICE], creds=creds).status == 403


def test_replayed_nonce_count_is_403() -> None:
    a = make_relay("a.example.org")
    creds = credentials(challenge(a), "Alice", A_AUTH[0])
    assert auth(a, 1, A_AUTH, [ALICE], creds=creds).status == 200
    assert auth(a, 1, A_AUTH, [ALICE], creds=creds).status == 403


def test_stale_nonce_gets_401_stale() -> None:
    a = make_relay("a.example.org")
    creds = credentials(challenge(a), "Alice", A_AUTH[0])
    m = auth(a, 1, A_AUTH, [ALICE], creds=creds, now=T0 + 301)
    assert m.status == 401
    p = parse_digest(m.get("WWW-Authenticate"))
    assert p is not None and p["stale"] == "true"


def test_wrong_opaque_is_403() -> None:
    a = make_relay("a.example.org")
    creds = credentials(challenge(a), "Alice", A_AUTH[0])
    creds = re.sub(r'opaque="[^"]*"', 'opaque="0000"', creds)
    assert auth(a, 1, A_AUTH, [ALICE], creds=creds).status == 403


def test_three_failures_close_the_connection() -> None:
    a = make_relay("a.example.org")
    bad = credentials(challenge(a), "Alice", A_AUTH[0], password="guess")
    for _ in range(2):
        assert auth(a, 1, A_AUTH, [ALICE], creds=bad).status == 403
    a.data(1, fr.build_request("49fz", "AUTH", A_AUTH, [ALICE], [("Authorization", bad)]), T0)
    assert [m.status for _, m in out(a)] == [403]
    assert isinstance(events(a)[-1], CloseConnection)
    a.data(1, fr.build_request("49fy", "AUTH", A_AUTH, [ALICE]), T0)  # ignored once closed
    assert out(a) == []


def test_sha256_challenge_first_and_accepted() -> None:
    a = make_relay("a.example.org", algorithms=("MD5", "SHA-256"))
    a.data(1, fr.build_request("49fh", "AUTH", A_AUTH, [ALICE]), T0)
    [(_, m)] = out(a)
    chals = m.get_all("WWW-Authenticate")
    assert ["algorithm=SHA-256" in chals[0], "algorithm=MD5" in chals[1]] == [True, True]
    creds = credentials(chals[0], "Alice", A_AUTH[0], algorithm="SHA-256")
    assert auth(a, 1, A_AUTH, [ALICE], creds=creds).status == 200


# ---------------------------------------------------------------- forwarding: RFC 4976 section 3


def test_rfc4976_section3_through_two_relays() -> None:
    a = relay_a(["juh76"])
    b = make_relay("b.example.net", ["aeiug"], ["xght6"])
    assert login(b, 4, BOB, "Bob") == B_URI

    # 3-1 at A: the immediate 200 (3-2, byte for byte), then the SEND to B under tid juh76
    [(c1, ok), (c2, fwd)] = forward_to_b(a, load_vector("rfc4976-3-1-send-6aef.msg"))
    assert (c1, ok.to_bytes()) == (1, load_vector("rfc4976-3-2-200ok-6aef.msg"))
    assert (c2, fwd.tid, fwd.to_path, fwd.from_path) == (2, "juh76", [B_URI, BOB], [A_URI, ALICE])
    orig = fr.parse_one(load_vector("rfc4976-3-1-send-6aef.msg"))
    assert fwd.headers()[2:] == orig.headers()[2:] and bytes(fwd.body) == bytes(orig.body)

    # at B (A's connection is B's cid 3): the 200 is 3-4, the SEND to Bob has 3-5's paths
    b.connected(3, None, T0)
    b.data(3, fwd.to_bytes(), T0)
    [(c3, ok_b), (c4, to_bob)] = out(b)
    assert (c3, ok_b.to_bytes()) == (3, load_vector("rfc4976-3-4-200ok-juh76.msg"))
    want = fr.parse_one(load_vector("rfc4976-3-5-send-xght6.msg"))
    assert (c4, to_bob.tid, to_bob.to_path, to_bob.from_path) == (4, "xght6", want.to_path, want.from_path)
    assert sorted(to_bob.headers()) == sorted(want.headers())  # the RFC prints another order
    assert bytes(to_bob.body) == bytes(want.body)

    # the hop-by-hop 200s are absorbed
    a.data(2, ok_b.to_bytes(), T0)
    b.data(4, load_vector("rfc4976-3-6-200ok-xght6.msg") + b"-------xght6$\r\n", T0)
    assert a.outgoing() == [] and b.outgoing() == []

    # Bob's REPORT (3-7) keeps tid yh67 through B and A; A emits 3-9 byte for byte
    b.data(4, load_vector("rfc4976-3-7-report-1.msg"), T0)
    [(c3, rep)] = b.outgoing()
    assert c3 == 3
    a.data(2, rep, T0)
    assert a.outgoing() == [(1, load_vector("rfc4976-3-9-report-3.msg"))]
    assert a.sessions == {"kjfjan": "BOUND"} and b.sessions == {"aeiug": "BOUND"}
    assert a.get_timer() is None  # Failure-Report absent = yes, answered: nothing waits


def test_other_method_forwarded_and_its_response_mapped_back() -> None:
    a = relay_a(["n1ck"])
    req = fr.build_request("nk01", "NICKNAME", [A_URI, B_URI, BOB], [ALICE], [("Use-Nickname", '"al"')])
    [(cid, fwd)] = forward_to_b(a, req)
    assert (cid, fwd.tid, fwd.method) == (2, "n1ck", "NICKNAME")
    resp = fr.build_response("n1ck", 425, "Nickname Usage Failed", [A_URI, ALICE], [B_URI, BOB])
    a.data(2, resp, T0)
    [(cid, m)] = out(a)
    assert (cid, m.tid, m.status, m.comment) == (1, "nk01", 425, "Nickname Usage Failed")
    assert (m.to_path, m.from_path) == ([ALICE], [A_URI, B_URI, BOB])


def test_other_methods_501_when_switched_off() -> None:
    a = make_relay("a.example.org", ["kjfjan"], forward_other_methods=False)
    login(a, 1, ALICE)
    a.data(1, fr.build_request("nk01", "NICKNAME", [A_URI, BOB], [ALICE]), T0)
    assert [m.status for _, m in out(a)] == [501]


def test_connection_to_an_authority_is_reused() -> None:
    a = make_relay("a.example.org", ["kjfjan", "second"])
    login(a, 1, ALICE)
    carol = "msrps://carol.example.org:1/c;tcp"
    login(a, 5, carol)
    forward_to_b(a, send("s001", [A_URI, B_URI, BOB], [ALICE]))
    a.data(5, send("s002", ["msrps://a.example.org:9000/second;tcp", B_URI, BOB], [carol]), T0)
    assert [cid for cid, _ in out(a)] == [5, 2]
    assert events(a) == []  # no second Connect


def test_bytes_wait_for_the_connection() -> None:
    a = relay_a()
    a.data(1, send("s001", [A_URI, B_URI, BOB], [ALICE]), T0)
    assert [cid for cid, _ in out(a)] == [1]  # the 200 only
    [ev] = events(a)
    assert isinstance(ev, Connect)
    a.connected(2, B_AUTHORITY, T0)  # matched by authority when no token is given
    [(cid, m)] = out(a)
    assert (cid, m.method, m.to_path) == (2, "SEND", [B_URI, BOB])


# ---------------------------------------------------------------- forwarding errors


def statuses(relay: MsrpRelay, cid: int, data: bytes) -> list[tuple[int, int | None]]:
    relay.data(cid, data, T0)
    return [(c, m.status) for c, m in out(relay)]


def test_unknown_session_is_481() -> None:
    a = relay_a()
    assert statuses(a, 1, send("s001", ["msrps://a.example.org:9000/nope;tcp", BOB], [ALICE])) == [(1, 481)]


def test_foreign_uri_is_481() -> None:
    a = relay_a()
    assert statuses(a, 1, send("s001", ["msrps://x.example.org:9000/kjfjan;tcp", BOB], [ALICE])) == [(1, 481)]


def test_no_next_hop_is_481() -> None:
    a = relay_a()
    assert statuses(a, 1, send("s001", [A_URI], [ALICE])) == [(1, 481)]


def test_wrong_direction_is_403() -> None:
    a = relay_a()
    # from another connection, pretending to be Alice's outgoing traffic
    assert statuses(a, 9, send("s001", [A_URI, BOB], [ALICE])) == [(9, 403)]
    # on Alice's connection with someone else's From-Path
    assert statuses(a, 1, send("s002", [A_URI, BOB], [BOB])) == [(1, 403)]


def test_peer_path_is_bound() -> None:
    a = relay_a()
    forward_to_b(a, send("s001", [A_URI, B_URI, BOB], [ALICE]))
    # another peer path for the same session: 403; a REPORT gets no answer at all
    mallory = "msrps://mallory.example.org:1/m;tcp"
    assert statuses(a, 2, send("s002", [A_URI, ALICE], [mallory])) == [(2, 403)]
    rep = fr.build_request("rp01", "REPORT", [A_URI, ALICE], [mallory], [("Message-ID", "m1")])
    assert statuses(a, 2, rep) == []
    # the bound peer path, but on another connection while the bound one lives: 506
    assert statuses(a, 8, send("s003", [A_URI, ALICE], [B_URI, BOB])) == [(8, 506)]


def test_send_without_message_id_is_400() -> None:
    a = relay_a()
    assert statuses(a, 1, send("s001", [A_URI, BOB], [ALICE], message_id=None)) == [(1, 400)]


def test_missing_from_path_gets_no_answer_missing_to_path_400() -> None:
    a = relay_a()
    assert statuses(a, 1, b"MSRP s001 SEND\r\nTo-Path: " + A_URI.encode() + b"\r\n-------s001$\r\n") == []
    assert statuses(a, 1, b"MSRP s002 SEND\r\nFrom-Path: " + ALICE.encode() + b"\r\n-------s002$\r\n") == [
        (1, 400)
    ]


@pytest.mark.parametrize(("value", "want"), [("yes", [200]), ("partial", []), ("no", [])])
def test_failure_report_decides_the_immediate_response(value: str, want: list[int]) -> None:
    a = relay_a()
    got = forward_to_b(a, send("s001", [A_URI, B_URI, BOB], [ALICE], fr_value=value))
    assert [m.status for c, m in got if c == 1] == want
    assert [m.method for c, m in got if c == 2] == ["SEND"]


@pytest.mark.parametrize(("value", "want"), [("yes", [481]), ("partial", [481]), ("no", [])])
def test_failure_report_decides_the_error_response(value: str, want: list[int]) -> None:
    a = relay_a()
    data = send("s001", ["msrps://a.example.org:9000/nope;tcp", BOB], [ALICE], fr_value=value)
    assert [s for _, s in statuses(a, 1, data)] == want


def test_response_without_a_transaction_is_dropped() -> None:
    a = relay_a()
    forward_to_b(a, send("s001", [A_URI, B_URI, BOB], [ALICE]))
    assert statuses(a, 2, fr.build_response("zzzz", 200, "OK", [A_URI], [B_URI])) == []


def test_tid_colliding_with_the_body_is_replaced() -> None:
    a = relay_a(["clash", "fine"])
    got = forward_to_b(a, send("s001", [A_URI, B_URI, BOB], [ALICE], body=b"x\r\n-------clash$\r\ny"))
    [fwd] = [m for c, m in got if c == 2]
    assert fwd.tid == "fine" and bytes(fwd.body) == b"x\r\n-------clash$\r\ny"


# ---------------------------------------------------------------- timeouts and REPORTs (4.2)


def test_timeout_gives_report_408_upstream() -> None:
    a = relay_a(["juh76", "rep1"])
    forward_to_b(a, send("s001", [A_URI, B_URI, BOB], [ALICE], body=b"0123456789"))
    assert a.get_timer() == T0 + 30
    a.handle_timer(T0 + 29.9)
    assert a.outgoing() == []
    a.handle_timer(T0 + 30)
    [(cid, rep)] = out(a)
    assert (cid, rep.method, rep.tid) == (1, "REPORT", "rep1")
    assert (rep.to_path, rep.from_path) == ([ALICE], [A_URI])
    assert rep.get("Message-ID") == "m1" and rep.get("Byte-Range") == "1-10/10"
    assert rep.get("Status") == "000 408 Request Timeout"
    assert a.get_timer() is None
    a.data(2, fr.build_response("juh76", 200, "OK", [A_URI], [B_URI]), T0 + 31)  # too late: dropped
    assert a.outgoing() == []


def test_partial_timeout_is_silent_but_an_error_response_is_reported() -> None:
    a = relay_a(["juh76", "juh77", "rep1"])
    forward_to_b(a, send("s001", [A_URI, B_URI, BOB], [ALICE], fr_value="partial"))
    a.handle_timer(T0 + 30)
    assert a.outgoing() == []
    forward_to_b(a, send("s002", [A_URI, B_URI, BOB], [ALICE], fr_value="partial"))
    a.data(2, fr.build_response("juh77", 413, "Too big", [A_URI], [B_URI]), T0)
    [(cid, rep)] = out(a)
    assert (cid, rep.method, rep.get("Status")) == (1, "REPORT", "000 413 Too big")


def test_no_timer_for_failure_report_no() -> None:
    a = relay_a()
    forward_to_b(a, send("s001", [A_URI, B_URI, BOB], [ALICE], fr_value="no"))
    assert a.get_timer() is None  # no transaction kept; the session is bound (no expiry)
    a.handle_timer(T0 + 3600)
    assert a.outgoing() == []


def test_non_send_timeout_is_a_408_response() -> None:
    a = relay_a(["n1ck"])
    forward_to_b(a, fr.build_request("nk01", "NICKNAME", [A_URI, B_URI, BOB], [ALICE]))
    a.handle_timer(T0 + 30)
    [(cid, m)] = out(a)
    assert (cid, m.tid, m.status, m.to_path, m.from_path) == (1, "nk01", 408, [ALICE], [A_URI])


def test_connect_failure_gives_report_408() -> None:
    a = relay_a()
    a.data(1, send("s001", [A_URI, B_URI, BOB], [ALICE]), T0)
    out(a)
    [ev] = events(a)
    assert isinstance(ev, Connect)
    a.connect_failed(ev.token, T0 + 1)
    [(cid, rep)] = out(a)
    assert (cid, rep.method) == (1, "REPORT") and (rep.get("Status") or "").startswith("000 408")
    assert a.sessions == {"kjfjan": "ISSUED"}  # the peer is unbound


# ---------------------------------------------------------------- teardown and expiry


def test_client_connection_closed_ends_its_sessions() -> None:
    a = relay_a()
    forward_to_b(a, send("s001", [A_URI, B_URI, BOB], [ALICE]))
    a.closed(1, T0 + 1)
    assert events(a) == [SessionEnded("kjfjan", "connection closed")]
    assert a.sessions == {}
    # the peer's traffic to the ended session: 481; the pending transaction is forgotten
    assert statuses(a, 2, send("s002", [A_URI, ALICE], [B_URI, BOB])) == [(2, 481)]
    a.handle_timer(T0 + 60)
    assert a.outgoing() == []
    a.closed(1, T0 + 2)  # idempotent
    assert events(a) == []


def test_peer_connection_lost_reports_and_unbinds() -> None:
    a = relay_a()
    forward_to_b(a, send("s001", [A_URI, B_URI, BOB], [ALICE]))
    a.closed(2, T0 + 1)
    [(cid, rep)] = out(a)
    assert (cid, rep.method, rep.get("Status")) == (1, "REPORT", "000 408 Session got disconnected")
    assert a.sessions == {"kjfjan": "ISSUED"}
    # a new peer connection may bind again (same peer path)
    assert statuses(a, 6, send("s003", [A_URI, ALICE], [B_URI, BOB])) == [(6, 200), (1, None)]


def test_unbound_session_expires_bound_one_stays() -> None:
    a = make_relay("a.example.org", ["kjfjan", "other"])
    login(a, 1, ALICE)
    login(a, 5, "msrps://carol.example.org:1/c;tcp")
    forward_to_b(a, send("s001", [A_URI, B_URI, BOB], [ALICE], fr_value="no"))
    assert a.get_timer() == T0 + 1800
    a.handle_timer(T0 + 1800)
    assert events(a) == [SessionEnded("other", "expired")]
    assert a.sessions == {"kjfjan": "BOUND"}
    assert a.get_timer() is None
    a.closed(2, T0 + 1801)  # the peer goes after the expiry: the session ends now
    assert events(a) == [SessionEnded("kjfjan", "expired")]


def test_framing_error_closes_the_connection_and_ends_sessions() -> None:
    a = relay_a()
    a.data(1, b"GET / HTTP/1.1\r\n\r\n", T0)
    evs = events(a)
    assert isinstance(evs[0], CloseConnection) and evs[0].cid == 1
    assert evs[1:] == [SessionEnded("kjfjan", evs[0].reason)]
    a.data(1, send("s001", [A_URI, B_URI, BOB], [ALICE]), T0)
    assert a.outgoing() == [] and events(a) == []


def test_malformed_byte_range_closes_the_connection() -> None:
    a = relay_a()
    bad = send("s001", [A_URI, B_URI, BOB], [ALICE]).replace(b"Byte-Range: 1-5/5", b"Byte-Range: x")
    a.data(1, bad, T0)
    assert a.outgoing() == []
    assert isinstance(events(a)[0], CloseConnection)


# ---------------------------------------------------------------- robustness


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=200), max_size=8), st.booleans())
def test_random_bytes_never_raise(chunks: list[bytes], prefixed: bool) -> None:
    a = relay_a()
    if prefixed and chunks:
        chunks[0] = b"MSRP abcd " + chunks[0]
    for part in chunks:
        a.data(1, part, T0)
        a.data(9, part, T0)
    a.handle_timer(T0 + 10_000)
    for _, data in a.outgoing():
        fr.parse_one(data)  # whatever we write frames
    for ev in events(a):
        assert isinstance(ev, CloseConnection | SessionEnded | Connect | AuthFailed)


@settings(max_examples=200)
@given(
    st.sampled_from(["SEND", "REPORT", "AUTH", "NICKNAME"]),
    st.lists(
        st.sampled_from([A_URI, B_URI, BOB, ALICE, "msrps://a.example.org:9000;tcp", "bad"]), max_size=3
    ),
    st.lists(st.sampled_from([A_URI, B_URI, BOB, ALICE, "bad"]), max_size=3),
    st.sampled_from([1, 2, 9]),
)
def test_random_requests_never_raise(method: str, to: list[str], frm: list[str], cid: int) -> None:
    a = relay_a()
    data = b"MSRP q123 " + method.encode() + b"\r\n"
    if to:
        data += b"To-Path: " + " ".join(to).encode() + b"\r\n"
    if frm:
        data += b"From-Path: " + " ".join(frm).encode() + b"\r\n"
    a.data(cid, data + b"Message-ID: x\r\n-------q123$\r\n", T0)
    for _, d in a.outgoing():
        fr.parse_one(d)


# ---------------------------------------------------------------- the route cache


class _NoRoutes(dict):  # type: ignore[type-arg]
    """A route table that keeps nothing: every request takes the full checks of 3.1."""

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


_ROUTE_URIS = [A_URI, B_URI, BOB, ALICE, "msrps://a.example.org:9000/other;tcp"]
_route_paths = st.sampled_from(
    # outgoing from Alice (cid 1) and incoming from B (cid 2), mostly; then anything
    [([A_URI, BOB], [ALICE])] * 4
    + [([A_URI, ALICE], [BOB])] * 3
    + [([A_URI], [ALICE]), ([A_URI, BOB], [BOB])]
) | st.tuples(
    st.lists(st.sampled_from(_ROUTE_URIS), min_size=1, max_size=3),
    st.lists(st.sampled_from(_ROUTE_URIS), min_size=1, max_size=2),
)
_route_req = st.tuples(
    st.just("req"),
    st.sampled_from([1, 1, 1, 2, 2, 9]),
    st.sampled_from(["SEND", "SEND", "REPORT", "NICKNAME"]),
    _route_paths,
    st.sampled_from(["", "Failure-Report: no\r\n", "Failure-Report: partial\r\n"]),
    st.booleans(),  # Message-ID
)
_route_step = st.one_of(
    _route_req,
    _route_req,
    _route_req,
    _route_req,
    st.tuples(st.just("close"), st.sampled_from([1, 2, 9])),
    st.tuples(st.just("wait"), st.sampled_from([1.0, 40.0, 4000.0])),
    st.tuples(st.just("answer"), st.sampled_from([200, 403])),
)


@settings(max_examples=500)
@given(st.lists(_route_step, max_size=14))
def test_route_cache_changes_nothing(steps: list[Any]) -> None:
    """The same requests and events through a relay that remembers routes and one that
    checks every request in full: the same octets on the same connections, the same
    events, the same session states."""
    relays = [relay_a(), relay_a()]
    relays[1]._routes = _NoRoutes()
    now = T0
    n = 0
    for step in steps:
        if step[0] == "req" and relays[0]._routes:
            event("a request met a remembered route")
        got = []
        for r in relays:
            if step[0] == "req":
                _, cid, method, (to, frm), fr_line, mid = step
                tid = f"q{n:05d}"
                data = f"MSRP {tid} {method}\r\nTo-Path: {' '.join(to)}\r\nFrom-Path: {' '.join(frm)}\r\n"
                data += (f"Message-ID: m{n}\r\n" if mid else "") + fr_line
                data += f"Byte-Range: 1-3/3\r\nContent-Type: text/plain\r\n\r\nhi!\r\n-------{tid}$\r\n"
                r.data(cid, data.encode(), now)
            elif step[0] == "close":
                r.closed(step[1], now)
            elif step[0] == "wait":
                r.handle_timer(now + step[1])
            else:  # a response from B (cid 2) to the last request forwarded there
                sent = [d for c, d in r.outgoing() if c == 2]
                got.append(("sent", sent))
                for d in sent[-1:]:
                    m = fr.parse_one(d)
                    if m.is_request and m.method != "REPORT":
                        resp = fr.build_response(m.tid, step[1], None, m.from_path[:1], m.to_path[:1])
                        r.data(2, resp, now)
            for ev in events(r):
                if isinstance(ev, Connect):
                    r.connected(2, ev.authority, now, token=ev.token)
                got.append(ev)
            got.append(r.outgoing())
            got.append(r.sessions)
        n += 1
        if step[0] == "wait":
            now += step[1]
        half = len(got) // 2
        assert got[:half] == got[half:], step


def test_route_cache_is_used_and_cleared() -> None:
    """A session's second chunk takes the remembered route; a lost link clears the table."""
    a = relay_a()
    forward_to_b(a, load_vector("rfc4976-3-1-send-6aef.msg"))
    assert len(a._routes) == 1
    forward_to_b(a, load_vector("rfc4976-3-1-send-6aef.msg"))
    assert len(a._routes) == 1
    a.closed(2, T0)
    assert not a._routes


# ---------------------------------------------------------------- re-chunking (docs/msrp.md 3.5)


def _relay_with_chunk(size: int) -> MsrpRelay:
    a = make_relay("a.example.org", ["kjfjan"], relay_chunk_bytes=size)
    assert login(a, 1, ALICE) == A_URI
    return a


def test_a_chunk_over_relay_chunk_bytes_goes_on_in_pieces() -> None:
    a = _relay_with_chunk(65536)
    body = bytes(range(256)) * 782  # 200 192 octets
    [(c1, ok), *pieces] = forward_to_b(a, send("big1", [A_URI, B_URI, BOB], [ALICE], body=body))
    assert (c1, ok.status) == (1, 200)  # the immediate 200 goes once, for the chunk (3.2)
    assert [c for c, _ in pieces] == [2, 2, 2, 2]
    assert [bytes(p.body) for _, p in pieces] == [body[i : i + 65536] for i in range(0, len(body), 65536)]
    assert [p.get("Byte-Range") for _, p in pieces] == [
        "1-65536/200192", "65537-131072/200192", "131073-196608/200192", "196609-200192/200192",
    ]  # fmt: skip
    assert [p.flag for _, p in pieces] == ["+", "+", "+", "$"]
    assert len({p.tid for _, p in pieces}) == 4
    for _, p in pieces:  # paths rewritten, the other headers as received
        assert (p.to_path, p.from_path) == ([B_URI, BOB], [A_URI, ALICE])
        assert (p.message_id, p.content_type) == ("m1", "text/plain")
    # each piece is its own transaction: a 403 to the second gives a REPORT for its range
    for i, (_, p) in enumerate(pieces):
        status = 403 if i == 1 else 200
        a.data(2, fr.build_response(p.tid, status, None, [A_URI], [B_URI]), T0)
    [(c, rep)] = out(a)
    assert (c, rep.method, rep.message_id) == (1, "REPORT", "m1")
    assert (rep.get("Byte-Range"), rep.get("Status")) == ("65537-131072/200192", "000 403 Forbidden")


def test_pieces_keep_a_star_total_and_the_chunk_flag() -> None:
    a = _relay_with_chunk(1000)
    data = fr.build_request("big2", "SEND", [A_URI, B_URI, BOB], [ALICE],
                            [("Message-ID", "m2"), ("Byte-Range", "5001-7500/*"), ("Failure-Report", "no")],
                            content_type="text/plain", body=b"z" * 2500, flag="+")  # fmt: skip
    pieces = forward_to_b(a, data)  # Failure-Report no: no 200, no transactions
    assert [(p.get("Byte-Range"), p.flag) for _, p in pieces] == [
        ("5001-6000/*", "+"), ("6001-7000/*", "+"), ("7001-7500/*", "+"),
    ]  # fmt: skip
    a.handle_timer(T0 + 100)
    assert out(a) == []  # nothing was waiting


@pytest.mark.parametrize("size", [0, 2500])
def test_chunks_within_the_limit_or_with_no_limit_go_whole(size: int) -> None:
    a = _relay_with_chunk(size)
    [(_, ok), (_, fwd)] = forward_to_b(a, send("big3", [A_URI, B_URI, BOB], [ALICE], body=b"q" * 2500))
    assert ok.status == 200 and bytes(fwd.body) == b"q" * 2500 and fwd.get("Byte-Range") == "1-2500/2500"
