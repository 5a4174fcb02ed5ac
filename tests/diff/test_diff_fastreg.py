"""The two FastRegistrar twins against each other, on generated REGISTER sequences.

Each twin gets the same datagrams, peers and clock on its own table (same
config, tag key and offline marks, its own write-behind map). After every
datagram: the same kind of result (the 200's bytes, a declined SipMessage,
None, or the same exception type), byte-identical answers, the same decoded
rows for every AOR in either table, the same decoded write-behind map and the
same counters. The datagrams come from a small grammar with the cases the fast
path must tell apart (foreign domains, escaped and non-ASCII users, 0-2 or "*"
Contacts, expires and q values valid and not, +sip.instance, Expires, Path,
two Call-IDs and low CSeqs so that refreshes, retransmissions and reorderings
happen, rport, UDP and stream peers); a step is a new datagram or the previous one
again or a little changed (Call-ID, CSeq up or down, branch, expiry 0, peer), and now
and then a mutated one (simplefast.testing.mutate).
``to_tag`` is compared on arbitrary keys, text (surrogates included) and
integers past 64 bits.
"""

from __future__ import annotations

import marshal
import re
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from simplefast.proxy.core import SUPPORTED
from simplefast.proxy.registrar import RegistrarConfig
from simplefast.server.shared import AOR_MAX, BINDINGS_MAX
from simplefast.testing import load_impl, mutate

REF = load_impl("ref").fastreg
EXT = load_impl("ext").fastreg
SHM = load_impl("ext").shmindex  # the ext table works with either fastreg twin
KEY = b"k" * 16
DATE = "Mon, 01 Jan 2024 00:00:00 GMT"
SLOTS = 32

# Each choice is (values the fast path takes, values it declines or that break the parse).
# A datagram is "plain" (every choice from the first list), "one-off" (one choice, drawn,
# from the second list: one reason to decline at a time) or "wild" (every choice from
# both), so that answers, refreshes and retransmissions are common and every way out is
# taken on its own as well as in company.
USERS = (
    ["alice", "bob", None],
    ["al%41ce", "%62ob", "j%C3%BCrgen", "j\u00fcrgen", "\u7528\u6237", "x" * 130],
)
TO_HOSTS = (["example.com", "EXAMPLE.com"], ["other.org"])
SCHEMES = (["sip", "sip", "sip", "sips"], ["tel", "im"])
N_CONTACTS = ([1], [0, 2, "*"])
CONTACT_URIS = (
    ["sip:alice@127.0.0.1:5061", "sip:alice@10.0.0.2", "sip:bob@localhost:5061"],
    [
        "sip:bob@LOCALHOST:5061",
        "sip:j\u00fc@1.2.3.4",
        "sips:bob@10.0.0.3;transport=tcp",
        f"sip:{'y' * 700}@h",
    ],
)
EXPIRES_PARAM = ([None, None, "0", "60", "3600"], ["30", str(10**12), "abc", "", "4294967295", "0061"])
Q_PARAM = ([None, None, "0", "0.5", "1", "1.0", True], ["1.5", "0.1234", "x", "01", ".5"])  # True: ";q"
INSTANCE = ([False], [True])
EXPIRES_HEADER = ([None, None, 0, 60, 3600, 4294967295], [59, "x"])
PATH = ([False], [True])
REQUIRE = ([False], [True])
METHODS = (["REGISTER"], ["INVITE"])
PEER_SHAPES = ([2, 2, 3], [4])
STEPS = [0.0, 0.0, 1.0, 59.0, 3600.0, 1e6, 0.5]


CHOICES: dict[str, tuple[list[Any], list[Any]]] = {
    "user": USERS, "to_host": TO_HOSTS, "scheme": SCHEMES, "n_contacts": N_CONTACTS, "contact": CONTACT_URIS,
    "expires": EXPIRES_PARAM, "q": Q_PARAM, "instance": INSTANCE, "expires_header": EXPIRES_HEADER,
    "path": PATH, "require": REQUIRE, "method": METHODS, "peer_shape": PEER_SHAPES,
    "ruri_host": (["example.com", "EXAMPLE.COM"], ["other.org"]),
}  # fmt: skip


def pick(draw: Any, mode: str, name: str) -> Any:
    ok, bad = CHOICES[name]
    return draw(st.sampled_from(ok + bad if mode == "wild" else bad if mode == name else ok))


@st.composite
def contact_values(draw: Any, mode: str) -> str:
    uri = pick(draw, mode, "contact")
    params = []
    exp = pick(draw, mode, "expires")
    if exp is not None:
        params.append(f"expires={exp}")
    q = pick(draw, mode, "q")
    if q is True:
        params.append("q")
    elif q is not None:
        params.append(f"q={q}")
    if pick(draw, mode, "instance"):
        params.append('+sip.instance="<urn:uuid:00000000-0000-0000-0000-000000000001>"')
    if draw(st.booleans()):
        params.reverse()
    return f"<{uri}>" + "".join(";" + p for p in params)


@st.composite
def registers(draw: Any) -> tuple[bytes, tuple[Any, ...]]:
    """One REGISTER datagram and the peer it comes from."""
    mode = draw(st.sampled_from(["plain", "plain", "one-off", "one-off", "one-off", "one-off", "wild"]))
    if mode == "one-off":
        mode = draw(st.sampled_from(sorted(CHOICES)))  # the one choice made from the second list
    user = pick(draw, mode, "user")
    to_host = pick(draw, mode, "to_host")
    ruri_host = pick(draw, mode, "ruri_host")
    scheme = pick(draw, mode, "scheme")
    to_uri = f"{scheme}:{user}@{to_host}" if user is not None else f"{scheme}:{to_host}"
    n_contacts = pick(draw, mode, "n_contacts")
    rport = draw(st.booleans())
    branch = draw(st.sampled_from(["z9hG4bK-1", "z9hG4bK-2", "z9hG4bK-3"]))
    lines = [
        f"REGISTER sip:{ruri_host} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch={branch}{';rport' if rport else ''}",
    ]
    if draw(st.integers(0, 5)) == 0:
        lines.append("Via: SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bKlower")
    lines.append("Max-Forwards: 70")
    from_tag = draw(st.sampled_from([";tag=ft1", ";tag=ft1", ";tag=ft2", ""]))
    lines.append(f"From: <sip:alice@example.com>{from_tag}")
    to_tag = draw(st.sampled_from(["", "", "", "", ";tag=tt"]))
    lines.append(f"To: <{to_uri}>{to_tag}")
    lines.append(f"Call-ID: {draw(st.sampled_from(['c1@h', 'c2@h']))}")
    lines.append(f"CSeq: {draw(st.integers(0, 5))} {pick(draw, mode, 'method')}")
    if n_contacts == "*":
        lines.append("Contact: *")
    elif n_contacts == 2 and draw(st.booleans()):
        lines.append(f"Contact: {draw(contact_values(mode))}, {draw(contact_values(mode))}")
    else:
        for _ in range(int(n_contacts)):
            lines.append(f"Contact: {draw(contact_values(mode))}")
    exp = pick(draw, mode, "expires_header")
    if exp is not None:
        lines.append(f"Expires: {exp}")
    if pick(draw, mode, "path"):
        lines.append("Path: <sip:edge.example.net;lr>")
    if pick(draw, mode, "require"):
        lines.append("Require: foo")
    lines.append("User-Agent: SIPp")
    data = ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode("utf-8", "surrogateescape")
    host = draw(st.sampled_from(["127.0.0.1", "10.1.1.1", "10.1.1.1", ""]))
    port = draw(st.sampled_from([5061, 7000]))
    shape = pick(draw, mode, "peer_shape")
    if shape == 2:
        peer: tuple[Any, ...] = (host, port)
    elif shape == 3:
        peer = (host, port, draw(st.sampled_from([0, 1, "c"])))
    else:
        peer = (host, port, draw(st.sampled_from(["tcp", "tls"])), 5)
    return data, peer


class Marks:
    def __init__(self, *keys: bytes) -> None:
        self.keys = set(keys)

    def get(self, key: bytes) -> bytes | None:
        return b"1" if key in self.keys else None


OFFLINE = st.sampled_from(
    [None] * 6
    + [
        SimpleNamespace(marks=m)
        for m in (None, Marks(b"sip:alice@example.com"), Marks(b"*"), Marks(b"sip:x@h"))
    ]
)


def new_table() -> Any:
    mem = SHM.create_shared(SHM.table_size(SLOTS, AOR_MAX, BINDINGS_MAX))
    return SHM.ShmTable(mem, SLOTS, AOR_MAX, BINDINGS_MAX, create=True, zeroed=True)


def rows(table: Any) -> dict[bytes, str]:
    # repr: 3700 and 3700.0 compare equal, but the twins must write the same types
    return {k: repr(marshal.loads(table.get(k))) for k in table.keys()}


def dirty_rows(dirty: dict[str, bytes]) -> dict[str, str]:
    return {k: repr(marshal.loads(v)) if v else "" for k, v in dirty.items()}


def repeat(table: Any, raw: bytes) -> bool:
    """A binding in the table has the request's Call-ID and CSeq (asked before the request:
    answered, it is a retransmission)."""
    rows_ = [marshal.loads(table.get(k)) for k in table.keys()]
    # surrogateescape: a Call-ID taken from non-UTF-8 octets comes back as those octets
    return any(
        f"Call-ID: {b[3]}\r\nCSeq: {b[4]} ".encode("utf-8", "surrogateescape") in raw
        for r in rows_
        for b in r
    )


def outcome(fr: Any, data: bytes, peer: tuple[Any, ...], now: float, date: str = DATE) -> Any:
    try:
        out = fr.register(data, peer, now, date)
    except Exception as exc:  # noqa: BLE001 - both twins must fail alike
        return ("raised", type(exc).__name__)
    if out is None:
        return None
    if type(out) is bytes:
        return out
    assert type(out).__name__ == "SipMessage" and out.method == "REGISTER"
    return ("declined", out.call_id)


FIRST = (
    b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=ft1\r\nTo: <sip:alice@example.com>\r\n"
    b"Call-ID: c1@h\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@127.0.0.1:5061>;expires=3600\r\n"
    b"User-Agent: SIPp\r\nContent-Length: 0\r\n\r\n"
)
# The previous datagram again, as it was or changed a little: retransmissions, refreshes,
# reordered and replaced requests, removals (the interactions of two requests).
EDITS = ["again", "again", "other-call-id", "cseq+1", "cseq+1", "cseq-1", "new-branch", "remove", "peer"]
_CSEQ = re.compile(rb"CSeq: (\d+)")


def edited(raw: bytes, peer: tuple[Any, ...], edit: str) -> tuple[bytes, tuple[Any, ...]]:
    if edit == "other-call-id":
        raw = raw.replace(b"Call-ID: c1@h", b"Call-ID: c3@h").replace(b"Call-ID: c2@h", b"Call-ID: c1@h")
        raw = raw.replace(b"Call-ID: c3@h", b"Call-ID: c2@h")
    elif edit in ("cseq+1", "cseq-1"):
        d = 1 if edit == "cseq+1" else -1
        raw = _CSEQ.sub(lambda m: b"CSeq: %d" % max(0, int(m.group(1)) + d), raw, count=1)
    elif edit == "new-branch":
        raw = raw.replace(b";branch=z9hG4bK-", b";branch=z9hG4bK-x", 1)
    elif edit == "remove":
        raw, n = re.subn(rb"expires=\d+", b"expires=0", raw)
        raw, m = re.subn(rb"\r\nExpires: \d+", b"\r\nExpires: 0", raw)
        if not n and not m:
            raw = raw.replace(b"\r\nUser-Agent:", b"\r\nExpires: 0\r\nUser-Agent:", 1)
    elif edit == "peer":
        peer = ("10.2.2.2", 9, *peer[2:])
    return raw, peer


@settings(max_examples=450)
@given(
    st.lists(
        st.tuples(st.one_of(registers(), st.sampled_from(EDITS)), st.sampled_from(STEPS), st.integers(0, 11)),
        min_size=1, max_size=12,
    ),
    OFFLINE,
    st.sampled_from([86400, 3600, 100]),
    st.data(),
)  # fmt: skip
def test_twins_agree(steps: list[tuple[Any, float, int]], offline: Any, max_expires: int, data: Any) -> None:
    twins = []
    for mod in (REF, EXT):
        table, dirty = new_table(), dict[str, bytes]()
        config = RegistrarConfig(domains=frozenset({"example.com"}), max_expires=max_expires)
        fr = mod.FastRegistrar(
            config, table, server="simplefast", supported=SUPPORTED, tag_key=KEY, dirty=dirty
        )
        fr.offline = offline
        twins.append((fr, table, dirty))
    now = 1000.0
    raw, peer = FIRST, ("10.1.1.1", 7000)
    for i, (what, step, mut) in enumerate(steps):
        now += step
        raw, peer = edited(raw, peer, what) if type(what) is str else what
        sent = mutate(raw, data) if mut == 0 else raw
        (rf, rt, rd), (ef, et, ed) = twins
        again = repeat(rt, sent)
        want = outcome(rf, sent, peer, now)
        got = outcome(ef, sent, peer, now)
        assert got == want, (i, sent, peer, now)
        if type(want) is bytes:
            event("answered: " + ("a binding" if b"\r\nContact: " in want else "none left"))
            if again:
                event("answered: the request again (same Call-ID and CSeq as the row)")
        else:
            event(f"outcome: {want if want is None else want[0]}")
        assert rows(et) == rows(rt), (i, sent)
        assert dirty_rows(ed) == dirty_rows(rd), (i, sent)
        assert (ef.answered, ef.declined) == (rf.answered, rf.declined), i


# ------------------------------------------------------------------ to_tag

SURROGATES = st.sampled_from(["\udc80", "\udcff", "\udc00", "\ud800", "\udbff", "\udfff", "\udc7f"])
TEXT = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=30),
    st.text(st.one_of(st.characters(exclude_categories=()), SURROGATES), max_size=8),
    st.sampled_from(["", "z9hG4bK-1-7-0", "7-1@127.0.0.1", "1SIPpTag7"]),
)
INTS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 2**31 - 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 2**70, -(2**70)]),
)


def tag_of(mod: Any, *args: Any) -> Any:
    try:
        return mod.to_tag(*args)
    except Exception as exc:  # noqa: BLE001 - both twins must fail alike
        return ("raised", type(exc).__name__)


@settings(max_examples=800)
@given(st.one_of(st.binary(max_size=40), st.binary(max_size=8).map(bytearray)), TEXT, TEXT, INTS, TEXT)
def test_to_tag_twins_agree(key: bytes, branch: str, call_id: str, cseq: int, from_tag: str) -> None:
    want = tag_of(REF, key, branch, call_id, cseq, from_tag)
    assert tag_of(EXT, key, branch, call_id, cseq, from_tag) == want
    if type(want) is str:
        assert len(want) == 16 and int(want, 16) >= 0 and want == want.lower()
    else:  # only text that UTF-8 with surrogateescape cannot encode may fail
        assert want == ("raised", "UnicodeEncodeError")
        assert any(0xD800 <= ord(c) <= 0xDFFF and not 0xDC80 <= ord(c) <= 0xDCFF
                   for c in branch + call_id + from_tag)  # fmt: skip


@pytest.mark.parametrize("date", ["Mon, 01 Jan 2024 \u00e9", "Mon, 01 Jan 2024\r\nX: y"])
def test_twins_refuse_a_date_they_cannot_write(date: str) -> None:
    """A date that is not ASCII, or would split the header, is refused before anything is written."""
    results = []
    for mod in (REF, EXT):
        table, dirty = new_table(), dict[str, bytes]()
        config = RegistrarConfig(domains=frozenset({"example.com"}))
        fr = mod.FastRegistrar(
            config, table, server="simplefast", supported=SUPPORTED, tag_key=KEY, dirty=dirty
        )
        results.append((outcome(fr, FIRST, ("10.1.1.1", 7000), 100.0, date), rows(table),
                        dirty_rows(dirty), fr.answered, fr.declined))  # fmt: skip
    assert results[0] == results[1]
    assert results[0][0][0] == "raised" and results[0][1:] == ({}, {}, 0, 0), results[0]
