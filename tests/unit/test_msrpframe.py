"""MSRP framing (RFC 4975 section 9): both twins of ``msrpframe`` through the ``fr`` fixture.

``fr`` is ``simplefast._ref.msrpframe`` or ``simplefast._ext.msrpframe``; while the extension
is not built the ext cases fail (on purpose: a missing twin is not a skip). The readings the
stub leaves open are the "Decisions" (D1..D16) at the top of ``simplefast/_ref/msrpframe.py``.
"""

from __future__ import annotations

import importlib
import itertools
import json
import re
import string
import time
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simplefast.errors import RemoteProtocolError
from simplefast.testing import VECTORS, msrp_summary, msrp_vector


@pytest.fixture(scope="module", params=["ref", "ext"])
def fr(request: pytest.FixtureRequest) -> ModuleType:
    pkg = "simplefast._ref" if request.param == "ref" else "simplefast._ext"
    return importlib.import_module(f"{pkg}.msrpframe")


# ---------------------------------------------------------------- helpers

Summary = tuple[Any, ...]


def summary(m: Any) -> Summary:
    return msrp_summary(m)


def cut(data: bytes, points: list[int]) -> list[bytes]:
    """data split at the given offsets (any order, duplicates allowed)."""
    edges = [0, *sorted(points), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def run(fr: ModuleType, parts: list[bytes], **limits: int) -> tuple[str, Any, Any]:
    """Feed parts in order: ("ok", summaries, buffered) or ("err", status_hint, str)."""
    p = fr.MsrpParser(**limits)
    out: list[Summary] = []
    for part in parts:
        try:
            out += [summary(m) for m in p.feed(part)]
        except fr.MsrpFramingError as e:
            return ("err", e.status_hint, str(e))
    return ("ok", out, p.buffered)


def err_status(fr: ModuleType, parts: list[bytes], **limits: int) -> int:
    res = run(fr, parts, **limits)
    assert res[0] == "err", res
    return int(res[1])


def every_split(fr: ModuleType, data: bytes, **limits: int) -> list[tuple[str, Any, Any]]:
    """The outcome of data fed in two parts at every split point, then byte by byte."""
    outs = [run(fr, [data[:i], data[i:]], **limits) for i in range(len(data) + 1)]
    outs.append(run(fr, bytewise(data), **limits))
    return outs


def same_at_every_split(fr: ModuleType, data: bytes, **limits: int) -> tuple[str, Any, Any]:
    """The one-shot outcome, checked equal (messages, or error status) at every split."""
    whole = run(fr, [data], **limits)
    for res in every_split(fr, data, **limits):
        if whole[0] == "ok":
            assert res == whole
        else:
            assert res[:2] == whole[:2]
    return whole


# ---------------------------------------------------------------- vectors

MSRP_DIR = VECTORS / "msrp"
MANIFEST: dict[str, Any] = json.loads((MSRP_DIR / "manifest.json").read_text())
# SIP requests printed next to the MSRP examples: not MSRP, skipped by name.
NOT_MSRP = frozenset(["rfc4975-4-sip-invite.msg", "rfc4975-4-sip-ack.msg", "rfc7701-9.1-f1-invite.msg"])
# RFC 4976 prints this 200 OK without its end-line (the figure stops at a page break).
NO_END_LINE = "rfc4976-3-6-200ok-xght6.msg"
# RFC 4976 section 5.1 prints 'username="Alice",' without the trailing backslash its other
# Authorization continuation lines carry: as printed the next line is an indented line, i.e.
# a folded header, which MSRP does not have.
UNMARKED_CONTINUATION = frozenset(
    ["rfc4976-5.1-03-auth-49fi.msg", "rfc4976-5.1-09-auth-m3nbvx.msg", "rfc4976-5.1-10-auth-m4nbvx.msg"]
)
load_vector = msrp_vector  # simplefast/testing.py: continuations joined


def repaired(name: str) -> bytes:
    """An UNMARKED_CONTINUATION vector with the missing backslash put back."""
    return re.sub(rb'(username="Alice",)\r\n[ \t]+', rb"\1 ", load_vector(name))


ALL_MSG = sorted(n for n in MANIFEST if n.endswith(".msg"))
FRAMED = [n for n in ALL_MSG if n not in NOT_MSRP and n != NO_END_LINE]


def framable(name: str) -> bytes:
    return repaired(name) if name in UNMARKED_CONTINUATION else load_vector(name)


def test_manifest_lists_every_vector() -> None:
    assert sorted(p.name for p in MSRP_DIR.glob("*.msg")) == ALL_MSG


@pytest.mark.parametrize("name", FRAMED)
def test_vector_frames_the_same_at_every_split(fr: ModuleType, name: str) -> None:
    data = framable(name)
    p = fr.MsrpParser()
    (m,) = p.feed(data)
    assert p.buffered == 0 and m.to_bytes() == data
    assert isinstance(m.body, memoryview) and m.body.obj is data  # D8: one call, a view
    whole = summary(m)
    for i in range(len(data) + 1):
        p = fr.MsrpParser()
        got = p.feed(data[:i]) + p.feed(data[i:])
        assert [summary(x) for x in got] == [whole], i
        assert p.buffered == 0
        # D8: a message cut by the split arrived in two calls, so its body is bytes
        assert isinstance(got[0].body, bytes if 0 < i < len(data) else memoryview)
    assert run(fr, bytewise(data)) == ("ok", [whole], 0)


def test_vectors_as_one_stream(fr: ModuleType) -> None:
    datas = [framable(n) for n in FRAMED]
    stream = b"".join(datas)
    want = ("ok", [summary(fr.parse_one(d)) for d in datas], 0)
    assert run(fr, [stream]) == want
    for size in (1, 7, 64, 333):
        assert run(fr, [stream[i : i + size] for i in range(0, len(stream), size)]) == want


def test_vector_fields_by_hand(fr: ModuleType) -> None:
    m = fr.parse_one(load_vector("rfc4975-4-send.msg"))
    assert (m.is_request, m.tid, m.method, m.status, m.comment, m.flag) == (
        True,
        "a786hjs2",
        "SEND",
        None,
        None,
        "$",
    )
    assert m.headers() == [
        ("To-Path", "msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp"),
        ("From-Path", "msrp://atlanta.example.com:7654/jshA7weztas;tcp"),
        ("Message-ID", "87652491"),
        ("Byte-Range", "1-25/25"),
        ("Content-Type", "text/plain"),
    ]
    assert bytes(m.body) == b"Hey Bob, are you there?" and m.has_content
    assert m.to_path == ["msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp"]
    assert m.from_path == ["msrp://atlanta.example.com:7654/jshA7weztas;tcp"]
    assert (m.message_id, m.content_type, m.byte_range) == ("87652491", "text/plain", (1, 25, 25))
    assert m.get("content-TYPE") == "text/plain" and m.get("Nope") is None and m.get_all("nope") == []

    m = fr.parse_one(load_vector("rfc4975-4-200ok.msg"))
    assert (m.is_request, m.tid, m.method, m.status, m.comment, m.flag) == (
        False,
        "a786hjs2",
        None,
        200,
        "OK",
        "$",
    )
    assert bytes(m.body) == b"" and not m.has_content and m.byte_range is None and m.content_type is None

    m = fr.parse_one(load_vector("rfc4975-5.1-chunk-1.msg"))  # a snippet: no To-Path/From-Path
    assert (m.tid, m.flag, bytes(m.body), m.byte_range) == ("dkei38sd", "+", b"abcd", (1, None, 8))
    assert m.to_path == [] and m.from_path == [] and m.message_id == "4564dpWd"

    m = fr.parse_one(load_vector("rfc4975-11.4-chunk-1-cpim.msg"))
    assert m.flag == "+" and m.byte_range == (1, 137, 148)
    assert bytes(m.body) == (
        b"To: Bob <sip:bob@example.com>\r\nFrom: Alice <sip:alice@example.com>\r\n"
        b"DateTime: 2006-05-15T15:02:31-03:00\r\nContent-Type: text/plain\r\n\r\nABCD"
    )

    m = fr.parse_one(load_vector("rfc4976-3-1-send-6aef.msg"))
    assert m.to_path == [
        "msrps://a.example.org:9000/kjfjan;tcp",
        "msrps://b.example.net:9000/aeiug;tcp",
        "msrps://bob.example.net:8145/foo;tcp",
    ]
    assert m.byte_range == (1, None, None) and m.get("success-report") == "yes"

    m = fr.parse_one(load_vector("rfc4976-5.1-02-401-49fh.msg"))
    assert (m.status, m.comment) == (401, "Unauthorized")
    assert m.get("www-authenticate") == (
        'Digest realm="intra.example.com", qop="auth", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093"'
    )

    m = fr.parse_one(load_vector("rfc7701-9.2-f2-425.msg"))
    assert (m.tid, m.status, m.comment) == ("d93kswow", 425, "Nickname reserved or already in use")

    m = fr.parse_one(load_vector("rfc7701-9.2-f1-nickname.msg"))
    assert (m.method, m.get("Use-Nickname")) == ("NICKNAME", '"Alice the great"')

    m = fr.parse_one(load_vector("rfc4976-5.1-12-200ok-m3nbvx.msg"))
    assert m.get("Use-Path") == (
        "msrps://extra.example.com:9000/mywdEe1233;tcp msrps://extra.example.com:9000/mywdEe1233;tcp"
    )
    assert m.get("expires") == "1800"


@pytest.mark.parametrize("name", sorted(UNMARKED_CONTINUATION))
def test_rfc4976_unmarked_continuation_is_a_folded_header(fr: ModuleType, name: str) -> None:
    data = load_vector(name)
    assert same_at_every_split(fr, data)[:2] == ("err", 400)
    assert (fr.parse_one(repaired(name)).get("Authorization") or "").startswith(
        'Digest username="Alice", realm='
    )


def test_vector_without_end_line_stays_buffered(fr: ModuleType) -> None:
    data = load_vector(NO_END_LINE)
    assert run(fr, [data]) == ("ok", [], len(data))
    assert run(fr, bytewise(data)) == ("ok", [], len(data))
    m = fr.parse_one(data + b"-------xght6$\r\n")
    assert (m.tid, m.status, m.message_id) == ("xght6", 200, "87652")


@pytest.mark.parametrize("name", sorted(NOT_MSRP))
def test_sip_on_an_msrp_connection_is_a_400(fr: ModuleType, name: str) -> None:
    assert err_status(fr, [(MSRP_DIR / name).read_bytes()]) == 400


# ---------------------------------------------------------------- the end-line

TID = b"a786hjs2"
HEAD = (
    b"MSRP a786hjs2 SEND\r\nTo-Path: msrp://b.example.com/s;tcp\r\nFrom-Path: msrp://a.example.com/t;tcp\r\n"
)


def send(data: bytes, flag: bytes = b"$") -> bytes:
    return HEAD + b"Content-Type: text/plain\r\n\r\n" + data + b"\r\n-------" + TID + flag + b"\r\n"


FALSE_END_LINES = [
    b"x\r\n-------b786hjs2$\r\ny",  # another transaction id
    b"x\r\n-------a786hjs2x$\r\ny",  # our id + a longer suffix
    b"x\r\n-------a786hjs29$\r\ny",
    b"x\r\n-------a786hjs2+$\r\ny",  # our id + flag, then not CRLF
    b"x\r\n-------a786hjs2\r\ny",  # our id without a flag
    b"x\r\n-------a786hjs2$y",  # our id + flag without CRLF
    b"x\r\n-------a786hjs2$\rz",
    b"x\r\n-------a786hjs2$\n",
    b"x\r\n-------a786hjs2",
    b"x\r\n------a786hjs2$\r\n",  # six dashes
    b"x\r\n--------a786hjs2$\r\n",  # eight dashes
    b"x\r\n-------A786HJS2$\r\n",  # ids are compared octet for octet
    b"x\n-------a786hjs2$\r\n",  # LF alone is not the CRLF before an end-line
    b"x\r-------a786hjs2$\r\n",
    b"-------a786hjs2$\r\n",  # D3: no CRLF of its own (the empty line's CRLF is not data)
    b"-------a786hjs2$\r\nmore",
    b"-------\r\n-------\r\n",
    b"\r\n",  # data may end with CRLF
    b"\r\n\r\n-------",
    b"",
]


@pytest.mark.parametrize("data", FALSE_END_LINES)
def test_false_end_lines_are_data(fr: ModuleType, data: bytes) -> None:
    msg = send(data)
    whole = same_at_every_split(fr, msg)
    assert whole[0] == "ok" and len(whole[1]) == 1 and whole[2] == 0
    assert whole[1][0][7] == data


@pytest.mark.parametrize("flag", ["$", "+", "#"])
def test_flags(fr: ModuleType, flag: str) -> None:
    m = fr.parse_one(send(b"abc", flag.encode()))
    assert m.flag == flag and bytes(m.body) == b"abc"
    m = fr.parse_one(HEAD + b"-------" + TID + flag.encode() + b"\r\n")
    assert m.flag == flag and not m.has_content


def test_message_boundaries_and_buffered(fr: ModuleType) -> None:
    a, b = send(b"one"), send(b"two\r\n-------a786hjs2")
    p = fr.MsrpParser()
    assert p.feed(a[:-1]) == [] and p.buffered == len(a) - 1
    ms = p.feed(a[-1:] + b[:5])
    assert [bytes(m.body) for m in ms] == [b"one"] and p.buffered == 5
    data = b[5:] + a
    ms = p.feed(data)
    assert [bytes(m.body) for m in ms] == [b"two\r\n-------a786hjs2", b"one"] and p.buffered == 0
    # D8: the first began in an earlier call (bytes); the second came whole in this one (a view)
    assert isinstance(ms[0].body, bytes)
    assert isinstance(ms[1].body, memoryview) and ms[1].body.obj is data
    assert ms[1].to_bytes() == a and isinstance(ms[1].to_bytes(), bytes)
    assert p.feed(b"") == [] and p.buffered == 0


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_feed_takes_any_buffer(fr: ModuleType, kind: Any) -> None:
    msg = send(b"hello")
    data = kind(msg)
    (m,) = fr.MsrpParser().feed(data)
    assert bytes(m.body) == b"hello" and m.to_bytes() == msg and isinstance(m.body, memoryview)


def test_efficient_end_line_search(fr: ModuleType) -> None:
    """2 MiB of data full of near-miss end-lines, fed 128 octets at a time: a parser that
    rescans its whole buffer on every feed does ~16 GiB of searching here."""
    filler = (b"\r\n-------b786hjs2$" * 120000)[: 2 << 20]
    msg = send(filler)
    p = fr.MsrpParser(max_chunk_bytes=4 << 20)
    t0 = time.perf_counter()
    got = []
    for i in range(0, len(msg), 128):
        got += p.feed(msg[i : i + 128])
        if not got:
            assert p.buffered == min(i + 128, len(msg))
    elapsed = time.perf_counter() - t0
    assert len(got) == 1 and bytes(got[0].body) == filler
    assert elapsed < 2.0, elapsed


# ---------------------------------------------------------------- limits (413)

WITH_CONTENT = b"MSRP abcd SEND\r\nTo-Path: x\r\n\r\nhi\r\n-------abcd$\r\n"
HB_CONTENT = WITH_CONTENT.index(b"hi")  # start line + header + empty line
NO_CONTENT = b"MSRP abcd SEND\r\nTo-Path: x\r\n-------abcd$\r\n"
HB_NO_CONTENT = NO_CONTENT.index(b"-------")  # D4: the end-line is not counted


def test_header_limit_with_content(fr: ModuleType) -> None:
    assert same_at_every_split(fr, WITH_CONTENT, max_header_bytes=HB_CONTENT)[0] == "ok"
    assert same_at_every_split(fr, WITH_CONTENT, max_header_bytes=HB_CONTENT - 1)[:2] == ("err", 413)


def test_header_limit_without_content(fr: ModuleType) -> None:
    # byte by byte the end-line is an incomplete line past the limit: still not an error
    assert same_at_every_split(fr, NO_CONTENT, max_header_bytes=HB_NO_CONTENT)[0] == "ok"
    assert same_at_every_split(fr, NO_CONTENT, max_header_bytes=HB_NO_CONTENT - 1)[:2] == ("err", 413)
    for bad in (b"-------abcd$x\r\n", b"-------abcd\r\n", b"-------abcdX$\r\n", b"-------abce$\r\n"):
        data = NO_CONTENT[:HB_NO_CONTENT] + bad  # not our end-line: a line past the limit
        assert same_at_every_split(fr, data, max_header_bytes=HB_NO_CONTENT)[:2] == ("err", 413)
        assert same_at_every_split(fr, data, max_header_bytes=1000)[:2] == ("err", 400)


def test_header_limit_is_checked_before_the_syntax(fr: ModuleType) -> None:
    data = b"MSRP abcd SEND\r\nno colon in this line\r\n-------abcd$\r\n"
    assert same_at_every_split(fr, data, max_header_bytes=30)[:2] == ("err", 413)  # D4
    assert same_at_every_split(fr, data, max_header_bytes=100)[:2] == ("err", 400)


def test_header_limit_raised_before_the_line_ends(fr: ModuleType) -> None:
    p = fr.MsrpParser(max_header_bytes=64)
    with pytest.raises(fr.MsrpFramingError) as ei:
        p.feed(b"MSRP " + b"a" * 100)
    assert ei.value.status_hint == 413
    p = fr.MsrpParser(max_header_bytes=64)
    p.feed(b"MSRP abcd SEND\r\n")
    with pytest.raises(fr.MsrpFramingError) as ei:
        p.feed(b"X-Long: " + b"v" * 60)
    assert ei.value.status_hint == 413
    assert fr.MsrpParser().feed(b"MSRP " + b"a" * 16000) == []  # default: 16384


def test_chunk_limit(fr: ModuleType) -> None:
    data = send(b"0123456789")
    assert same_at_every_split(fr, data, max_chunk_bytes=10)[0] == "ok"
    assert same_at_every_split(fr, data, max_chunk_bytes=9)[:2] == ("err", 413)
    assert run(fr, [send(b"")], max_chunk_bytes=0)[0] == "ok"
    # raised as soon as the data is known to be too long, long before any end-line
    p = fr.MsrpParser(max_chunk_bytes=10)
    with pytest.raises(fr.MsrpFramingError) as ei:
        p.feed(HEAD + b"Content-Type: a/b\r\n\r\n" + b"x" * 100)
    assert ei.value.status_hint == 413
    # ten octets and a partial end-line: not yet an error
    p = fr.MsrpParser(max_chunk_bytes=10)
    assert p.feed(HEAD + b"Content-Type: a/b\r\n\r\n0123456789\r\n-------a786hjs2") == []
    assert [bytes(m.body) for m in p.feed(b"$\r\n")] == [b"0123456789"]


def test_limits_are_checked(fr: ModuleType) -> None:
    assert fr.MAX_HEADER_BYTES == 16384 and fr.MAX_CHUNK_BYTES == 1048576
    with pytest.raises(TypeError):
        fr.MsrpParser(max_header_bytes="1")
    with pytest.raises(ValueError):
        fr.MsrpParser(max_chunk_bytes=-1)
    with pytest.raises(TypeError):
        fr.MsrpParser(100)


def test_parser_stays_failed(fr: ModuleType) -> None:
    p = fr.MsrpParser()
    good = send(b"ok")
    assert len(p.feed(good)) == 1
    with pytest.raises(fr.MsrpFramingError) as first:
        p.feed(good + b"GET / HTTP/1.1\r\n")  # the good message before the error is lost
    assert first.value.status_hint == 400 and p.buffered == 0
    for again in (b"", good, b"x"):
        with pytest.raises(fr.MsrpFramingError) as ei:
            p.feed(again)
        assert ei.value is first.value  # D7
    assert p.buffered == 0
    assert isinstance(first.value, RemoteProtocolError)


# ---------------------------------------------------------------- syntax (400)

BAD = {
    "not msrp": b"GET / HTTP/1.1\r\n",
    "lower-case msrp": b"msrp abcd SEND\r\n-------abcd$\r\n",
    "leading crlf": b"\r\nMSRP abcd SEND\r\n-------abcd$\r\n",
    "tid too short": b"MSRP abc SEND\r\n-------abc$\r\n",
    "tid too long": b"MSRP " + b"a" * 33 + b" SEND\r\n-------" + b"a" * 33 + b"$\r\n",
    "tid first char": b"MSRP .abc SEND\r\n-------.abc$\r\n",
    "tid bad char": b"MSRP ab_c SEND\r\n-------ab_c$\r\n",
    "double space": b"MSRP  abcd SEND\r\n-------abcd$\r\n",
    "no method": b"MSRP abcd\r\n-------abcd$\r\n",
    "empty method": b"MSRP abcd \r\n-------abcd$\r\n",
    "lower-case method": b"MSRP abcd send\r\n-------abcd$\r\n",
    "mixed-case method": b"MSRP abcd Send\r\n-------abcd$\r\n",
    "method with digit": b"MSRP abcd SEND2\r\n-------abcd$\r\n",
    "method trailing space": b"MSRP abcd SEND \r\n-------abcd$\r\n",
    "status two digits": b"MSRP abcd 20\r\n-------abcd$\r\n",
    "status four digits": b"MSRP abcd 2000\r\n-------abcd$\r\n",
    "status then tab": b"MSRP abcd 200\tOK\r\n-------abcd$\r\n",
    "comment bad utf8": b"MSRP abcd 200 \xff\r\n-------abcd$\r\n",
    "comment bare cr": b"MSRP abcd 200 O\rK\r\n-------abcd$\r\n",
    "start line bare lf": b"MSRP abcd SEND\nTo-Path: x\r\n-------abcd$\r\n",
    "no colon": b"MSRP abcd SEND\r\nTo-Path x\r\n-------abcd$\r\n",
    "no space after colon": b"MSRP abcd SEND\r\nTo-Path:x\r\n-------abcd$\r\n",
    "colon only": b"MSRP abcd SEND\r\nTo-Path:\r\n-------abcd$\r\n",
    "space before colon": b"MSRP abcd SEND\r\nTo-Path : x\r\n-------abcd$\r\n",
    "empty name": b"MSRP abcd SEND\r\n: x\r\n-------abcd$\r\n",
    "name not a token": b"MSRP abcd SEND\r\nTo(Path): x\r\n-------abcd$\r\n",
    "name non-ascii": b"MSRP abcd SEND\r\nT\xc3\xa9: x\r\n-------abcd$\r\n",
    "value bare lf": b"MSRP abcd SEND\r\nTo-Path: a\nb\r\n-------abcd$\r\n",
    "value bare cr": b"MSRP abcd SEND\r\nTo-Path: a\rb\r\n-------abcd$\r\n",
    "value bad utf8": b"MSRP abcd SEND\r\nSubject: \xc3\x28\r\n-------abcd$\r\n",
    "value surrogate": b"MSRP abcd SEND\r\nSubject: \xed\xa0\x80\r\n-------abcd$\r\n",
    "value overlong": b"MSRP abcd SEND\r\nSubject: \xc0\xaf\r\n-------abcd$\r\n",
    "folded header": b"MSRP abcd SEND\r\nTo-Path: a\r\n b\r\n-------abcd$\r\n",
    "other tid end-line in headers": b"MSRP abcd SEND\r\nTo-Path: a\r\n-------abce$\r\n",
    "end-line without flag": b"MSRP abcd SEND\r\n-------abcd\r\n",
    "end-line bad flag": b"MSRP abcd SEND\r\n-------abcd!\r\n",
    "response with empty content": b"MSRP abcd 200 OK\r\nTo-Path: a\r\n\r\n\r\n-------abcd$\r\n",
    "response with content": b"MSRP abcd 200 OK\r\nTo-Path: a\r\n\r\nhello\r\n-------abcd$\r\n",
    "second message bad": b"MSRP abcd SEND\r\n-------abcd$\r\nMSRP abcd send\r\n",
}


@pytest.mark.parametrize("data", list(BAD.values()), ids=list(BAD))
def test_syntax_errors_are_400_and_fatal(fr: ModuleType, data: bytes) -> None:
    assert same_at_every_split(fr, data)[:2] == ("err", 400)
    p = fr.MsrpParser()
    with pytest.raises(fr.MsrpFramingError) as ei:
        p.feed(data)
    with pytest.raises(fr.MsrpFramingError):
        p.feed(b"MSRP abcd SEND\r\n-------abcd$\r\n")
    assert ei.value.status_hint == 400 and str(ei.value)


def test_response_with_empty_line_fails_at_once(fr: ModuleType) -> None:
    p = fr.MsrpParser()
    with pytest.raises(fr.MsrpFramingError) as ei:
        p.feed(b"MSRP abcd 200 OK\r\nTo-Path: a\r\n\r\n")  # D2: no need to see data
    assert ei.value.status_hint == 400


GOOD = {
    "no headers": (b"MSRP abcd SEND\r\n-------abcd$\r\n", {"method": "SEND", "headers": []}),
    "any method": (b"MSRP abcd FOO\r\n-------abcd$\r\n", {"method": "FOO"}),
    "ident chars": (b"MSRP a.-+%=Z9 SEND\r\n-------a.-+%=Z9+\r\n", {"tid": "a.-+%=Z9", "flag": "+"}),
    "32-char tid": (b"MSRP " + b"7" * 32 + b" SEND\r\n-------" + b"7" * 32 + b"$\r\n", {"tid": "7" * 32}),
    "no comment": (b"MSRP abcd 200\r\n-------abcd$\r\n", {"status": 200, "comment": None}),
    "empty comment": (b"MSRP abcd 200 \r\n-------abcd$\r\n", {"status": 200, "comment": ""}),
    "status 000": (b"MSRP abcd 000 x\r\n-------abcd$\r\n", {"status": 0, "comment": "x"}),
    "utf-8 comment": (b"MSRP abcd 403 Verboten \xc3\xa4\r\n-------abcd$\r\n", {"comment": "Verboten \xe4"}),
    "empty value": (b"MSRP abcd SEND\r\nX: \r\n-------abcd$\r\n", {"headers": [("X", "")]}),
    "value kept as is": (
        b"MSRP abcd SEND\r\nX:  a\tb \x00\r\n-------abcd$\r\n",
        {"headers": [("X", " a\tb \x00")]},
    ),
    "token name": (
        b"MSRP abcd SEND\r\n1!#$%&'*+-.^_`|~: v\r\n-------abcd$\r\n",
        {"headers": [("1!#$%&'*+-.^_`|~", "v")]},
    ),
    "utf-8 value": (
        b"MSRP abcd SEND\r\nSubject: \xe2\x82\xac\r\n-------abcd$\r\n",
        {"headers": [("Subject", "\u20ac")]},
    ),
    "colon in value": (b"MSRP abcd SEND\r\nX: a: b\r\n-------abcd$\r\n", {"headers": [("X", "a: b")]}),
    "empty data": (
        b"MSRP abcd SEND\r\nContent-Type: t/p\r\n\r\n\r\n-------abcd$\r\n",
        {"body": b"", "has_content": True},
    ),
    "empty content-stuff": (
        b"MSRP abcd SEND\r\n\r\n\r\n-------abcd#\r\n",
        {"body": b"", "has_content": True},
    ),
    "binary data": (
        b"MSRP abcd SEND\r\n\r\n\x00\xff\r\n\r\n-------abcd$\r\n",
        {"body": b"\x00\xff\r\n", "has_content": True},
    ),
}


@pytest.mark.parametrize(("data", "want"), list(GOOD.values()), ids=list(GOOD))
def test_edge_cases_that_frame(fr: ModuleType, data: bytes, want: dict[str, Any]) -> None:
    whole = same_at_every_split(fr, data)
    assert whole[0] == "ok" and len(whole[1]) == 1
    m = fr.parse_one(data)
    for k, v in want.items():
        got = m.headers() if k == "headers" else getattr(m, k)
        assert (bytes(got) if k == "body" else got) == v, k


def test_header_lookups(fr: ModuleType) -> None:
    m = fr.parse_one(
        b"MSRP abcd SEND\r\nKey: 1\r\nTo-Path: a\tb  c \xc2\xa0d\r\nkey: 2\r\nKEY: 3\r\nFrom-Path: \r\n"
        b"To-Path: z\r\n-------abcd$\r\n"
    )
    assert m.get("key") == "1" and m.get_all("kEy") == ["1", "2", "3"]
    assert m.get("\u212aey") is None and m.get_all("\u212aey") == []  # D11: ASCII folding only
    assert m.to_path == ["a", "b", "c", "\xa0d"]  # D12: SP/HTAB only, first To-Path
    assert m.from_path == []
    assert m.headers()[0] == ("Key", "1")
    hs = m.headers()
    hs.clear()
    assert len(m.headers()) == 6  # a fresh list each call


RANGES = {
    "1-16/16": (1, 16, 16),
    "1-*/8": (1, None, 8),
    "1-*/*": (1, None, None),
    "138-148/148": (138, 148, 148),
    "01-02/03": (1, 2, 3),
    "1-0/0": (1, 0, 0),
    "0-0/0": (0, 0, 0),  # D13: syntax only
    "9223372036854775807-1/*": (9223372036854775807, 1, None),
}
BAD_RANGES = [
    "",
    "1-16",
    "1/16",
    "*-1/2",
    "a-1/2",
    " 1-2/3",
    "1-2/3 ",
    "1 -2/3",
    "-1-2/3",
    "1--2/3",
    "1-2/",
    "1-/3",
    "-2/3",
    "1-2/3/4",
    "1-2-3/4",
    "+1-2/3",
    "1-2/**",
    "\u0661-2/3",  # ARABIC-INDIC DIGIT ONE: not DIGIT
    "1-2/\uff13",
    "9223372036854775808-1/1",
]


def _with_range(value: str) -> bytes:
    return b"MSRP abcd SEND\r\nByte-Range: " + value.encode() + b"\r\n-------abcd$\r\n"


@pytest.mark.parametrize("value", list(RANGES))
def test_byte_range(fr: ModuleType, value: str) -> None:
    assert fr.parse_one(_with_range(value)).byte_range == RANGES[value]


@pytest.mark.parametrize("value", BAD_RANGES)
def test_bad_byte_range_is_400_on_access(fr: ModuleType, value: str) -> None:
    m = fr.parse_one(_with_range(value))  # framing does not look at it
    for _ in range(2):
        with pytest.raises(fr.MsrpFramingError) as ei:
            m.byte_range  # noqa: B018
        assert ei.value.status_hint == 400


def test_parse_one(fr: ModuleType) -> None:
    one = send(b"x")
    m = fr.parse_one(one)
    assert isinstance(m.body, memoryview) and m.body.obj is one
    for bad in (b"", one[:-1], one + one, one + b"M"):
        with pytest.raises(fr.MsrpFramingError) as ei:
            fr.parse_one(bad)
        assert ei.value.status_hint == 400


# ---------------------------------------------------------------- writers

TO = ["msrp://bob.example.com:8888/9di4eae923wzd;tcp"]
FROM = ["msrp://alicepc.example.com:7777/iau39soe2843z;tcp", "msrp://relay.example.net/r;tcp"]


def test_build_request_round_trip(fr: ModuleType) -> None:
    data = fr.build_request(
        "d93kswow",
        "SEND",
        TO,
        FROM,
        [("Message-ID", "12339sdqwer"), ("Byte-Range", "1-16/16")],
        content_type="text/plain",
        body=b"Hi, I'm Alice!",
    )
    assert data == (
        b"MSRP d93kswow SEND\r\nTo-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\r\n"
        b"From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp msrp://relay.example.net/r;tcp\r\n"
        b"Message-ID: 12339sdqwer\r\nByte-Range: 1-16/16\r\nContent-Type: text/plain\r\n\r\n"
        b"Hi, I'm Alice!\r\n-------d93kswow$\r\n"
    )
    m = fr.parse_one(data)
    assert (m.tid, m.method, m.flag, bytes(m.body), m.to_path, m.from_path) == (
        "d93kswow",
        "SEND",
        "$",
        b"Hi, I'm Alice!",
        TO,
        FROM,
    )
    data = fr.build_request("49fh", "AUTH", TO, FROM, [("Subject", "\u20ac")], flag="#")
    assert data.endswith(b"\r\nSubject: \xe2\x82\xac\r\n-------49fh#\r\n")
    m = fr.parse_one(data)
    assert (m.method, m.flag, m.has_content, m.get("subject")) == ("AUTH", "#", False, "\u20ac")
    m = fr.parse_one(fr.build_request("abcd", "SEND", [], [], content_type="", body=b""))
    assert m.has_content and bytes(m.body) == b"" and m.content_type == "" and m.to_path == []


def test_build_response_round_trip(fr: ModuleType) -> None:
    data = fr.build_response("d93kswow", 200, "OK", TO, FROM, [("Message-ID", "x1")])
    assert data.startswith(b"MSRP d93kswow 200 OK\r\nTo-Path: ") and data.endswith(b"-------d93kswow$\r\n")
    m = fr.parse_one(data)
    assert (m.status, m.comment, m.flag, m.message_id, m.from_path) == (200, "OK", "$", "x1", FROM)
    assert fr.parse_one(fr.build_response("abcd", 7, None, TO, FROM)).status == 7
    assert fr.build_response("abcd", 7, None, TO, FROM).startswith(b"MSRP abcd 007\r\n")
    assert fr.parse_one(fr.build_response("abcd", 481, "", TO, FROM)).comment == ""
    m = fr.parse_one(fr.build_response("abcd", 425, "Nickname reserved \u00e9", TO, FROM))
    assert m.comment == "Nickname reserved \u00e9"


BUILD_ERRORS = {
    "short tid": dict(tid="abc"),
    "bad tid char": dict(tid="ab_cd"),
    "non-ascii tid": dict(tid="abc\u00e9"),
    "lower method": dict(method="send"),
    "empty method": dict(method=""),
    "bad flag": dict(flag="!"),
    "two flags": dict(flag="$$"),
    "name not token": dict(headers=[("Bad Name", "v")]),
    "empty name": dict(headers=[("", "v")]),
    "value with lf": dict(headers=[("X", "a\nb")]),
    "value with cr": dict(headers=[("X", "a\rb")]),
    "value surrogate": dict(headers=[("X", "\udc80")]),
    "content type crlf": dict(content_type="a\r\nb", body=b"x"),
    "path with space": dict(to_path=["a b"]),
    "path empty element": dict(from_path=[""]),
    "path with lf": dict(to_path=["a\n"]),
    "body without content type": dict(body=b"x"),
    "body with end-line": dict(content_type="t/p", body=b"a\r\n-------abcd$\r\nb"),
    "body with end-line other flag": dict(content_type="t/p", body=b"a\r\n-------abcd#\r\nb"),
    "body ending in an end-line start": dict(content_type="t/p", body=b"a\r\n-------abcd$"),
}


@pytest.mark.parametrize("kw", list(BUILD_ERRORS.values()), ids=list(BUILD_ERRORS))
def test_build_request_errors(fr: ModuleType, kw: dict[str, Any]) -> None:
    args: dict[str, Any] = dict(tid="abcd", method="SEND", to_path=TO, from_path=FROM) | kw
    with pytest.raises(ValueError):
        fr.build_request(
            args.pop("tid"), args.pop("method"), args.pop("to_path"), args.pop("from_path"), **args
        )


def test_build_response_errors(fr: ModuleType) -> None:
    for kw in (dict(status=1000), dict(status=-1), dict(comment="a\r\n"), dict(tid="a")):
        args: dict[str, Any] = dict(tid="abcd", status=200, comment="OK") | kw
        with pytest.raises(ValueError):
            fr.build_response(args["tid"], args["status"], args["comment"], TO, FROM)


def tids(*names: str) -> Any:
    it = iter(names)
    return lambda: next(it)


def counter_tids(prefix: str = "t") -> Any:
    n = itertools.count(1)
    return lambda: f"{prefix}{next(n):07d}"


def test_chunk_round_trip(fr: ModuleType) -> None:
    body = bytes(range(256)) * 19 + b"\r\n-------t0000003$\r\n" + b"tail"  # 4888 octets
    new_tid = counter_tids()
    chunks = fr.chunk(new_tid, TO, FROM, "msg1", "text/plain", body, chunk_size=2048, headers=[("X", "y")])
    assert len(chunks) == 3
    p = fr.MsrpParser()
    ms = p.feed(b"".join(chunks))
    assert len(ms) == 3 and p.buffered == 0
    total = len(body)
    assert [m.byte_range for m in ms] == [(1, 2048, total), (2049, 4096, total), (4097, total, total)]
    assert [m.flag for m in ms] == ["+", "+", "$"]
    assert b"".join(bytes(m.body) for m in ms) == body
    ids = [m.tid for m in ms]
    assert len(set(ids)) == 3
    for m in ms:
        assert m.tid.encode() not in bytes(m.body)
        assert m.method == "SEND" and m.message_id == "msg1" and m.content_type == "text/plain"
        assert [n for n, _ in m.headers()] == [
            "To-Path",
            "From-Path",
            "Message-ID",
            "Byte-Range",
            "X",
            "Content-Type",
        ]
        assert m.to_path == TO and m.from_path == FROM
    # the last chunk's data holds "t0000003": the id offered for it collided and was replaced
    assert ids == ["t0000001", "t0000002", "t0000004"]


def test_chunk_exact_multiple_and_small(fr: ModuleType) -> None:
    ms = [fr.parse_one(c) for c in fr.chunk(counter_tids(), TO, FROM, "m", "t/p", b"abcdef", chunk_size=3)]
    assert [(m.byte_range, m.flag, bytes(m.body)) for m in ms] == [
        ((1, 3, 6), "+", b"abc"),
        ((4, 6, 6), "$", b"def"),
    ]
    ms = [fr.parse_one(c) for c in fr.chunk(counter_tids(), TO, FROM, "m", "t/p", b"ab", chunk_size=1)]
    assert [m.byte_range for m in ms] == [(1, 1, 2), (2, 2, 2)]
    (c,) = fr.chunk(counter_tids(), TO, FROM, "m", "t/p", b"xyz")
    assert fr.parse_one(c).byte_range == (1, 3, 3) and fr.parse_one(c).flag == "$"


def test_chunk_empty_body(fr: ModuleType) -> None:
    (c,) = fr.chunk(counter_tids(), TO, FROM, "m", "text/plain", b"")
    m = fr.parse_one(c)
    assert (m.byte_range, m.flag, bytes(m.body), m.has_content) == ((1, 0, 0), "$", b"", True)


def test_chunk_replaces_a_colliding_tid(fr: ModuleType) -> None:
    (c,) = fr.chunk(tids("collide1", "fresh001"), TO, FROM, "m", "t/p", b"xx collide1 xx")
    assert fr.parse_one(c).tid == "fresh001"
    # the check is per chunk: "bbbbbbbb" only collides with the second chunk's data
    cs = fr.chunk(
        tids("bbbbbbbb", "bbbbbbbb", "cccccccc"), TO, FROM, "m", "t/p", b"a" * 8 + b"b" * 8, chunk_size=8
    )
    assert [fr.parse_one(c).tid for c in cs] == ["bbbbbbbb", "cccccccc"]


def test_chunk_errors(fr: ModuleType) -> None:
    with pytest.raises(ValueError):
        fr.chunk(lambda: "same0000", TO, FROM, "m", "t/p", b"same0000")  # D15: gives up
    with pytest.raises(ValueError):
        fr.chunk(lambda: "no", TO, FROM, "m", "t/p", b"x")
    with pytest.raises(ValueError):
        fr.chunk(counter_tids(), TO, FROM, "m", "t/p", b"x", chunk_size=0)
    with pytest.raises(ValueError):
        fr.chunk(counter_tids(), TO, FROM, "m\r\n", "t/p", b"x")


# ---------------------------------------------------------------- generated

_IDENT_FIRST = string.ascii_letters + string.digits
# RFC 4975 section 9 token: VCHAR minus these separators
_TOKEN_CH = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"(),/:;<=>?@[\\]')

tid_st = st.builds(
    lambda a, b: a + b,
    st.sampled_from(_IDENT_FIRST),
    st.text(_IDENT_FIRST + ".-+%=", min_size=3, max_size=31),
)
value_st = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\r\n"), max_size=16)
uri_st = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=16)
header_st = st.tuples(st.text(_TOKEN_CH, min_size=1, max_size=10), value_st)


@st.composite
def request_st(draw: st.DrawFn) -> dict[str, Any]:
    tid = draw(tid_st)
    t = tid.encode()
    content_type = draw(st.none() | value_st)
    body = b""
    if content_type is not None:
        near = [
            b"\r\n",
            b"\r",
            b"\n",
            b"-------",
            b"\r\n-------",
            b"$",
            b"+",
            b"#",
            t,
            b"-------" + t,
            b"\r\n-------" + t,
        ]
        near += [b"\r\n-------" + t + b"$", b"\r\n-------" + t + b"x$\r\n", b"\r\n-------" + t + b"+\r\n"]
        parts = draw(st.lists(st.binary(max_size=8) | st.sampled_from(near), max_size=8))
        body = b"".join(parts)
    return dict(
        tid=tid,
        method=draw(st.text(string.ascii_uppercase, min_size=1, max_size=8)),
        to_path=draw(st.lists(uri_st, max_size=3)),
        from_path=draw(st.lists(uri_st, max_size=3)),
        headers=draw(st.lists(header_st, max_size=4)),
        content_type=content_type,
        body=body,
        flag=draw(st.sampled_from("$+#")),
    )


def contains_end_line(r: dict[str, Any]) -> bool:
    """Independent oracle: would a reader stop before the real end-line? (RFC 4975 section 7.1)"""
    t = re.escape(r["tid"].encode())
    data = r["body"] + b"\r\n-------" + r["tid"].encode() + b"$\r\n"
    first = re.search(rb"\r\n-------" + t + rb"[$+#]\r\n", data)
    return first is not None and first.start() != len(r["body"])


@given(reqs=st.lists(request_st(), min_size=1, max_size=3), points=st.lists(st.integers(0, 5000), max_size=6))
def test_generated_requests_parse_back(fr: ModuleType, reqs: list[dict[str, Any]], points: list[int]) -> None:
    built = []
    for r in reqs:
        args = (r["tid"], r["method"], r["to_path"], r["from_path"], r["headers"])
        kw = dict(content_type=r["content_type"], body=r["body"], flag=r["flag"])
        if contains_end_line(r):
            with pytest.raises(ValueError):
                fr.build_request(*args, **kw)
            continue
        built.append((r, fr.build_request(*args, **kw)))
    stream = b"".join(b for _, b in built)
    res = run(fr, cut(stream, [x % (len(stream) + 1) for x in points]))
    assert res[0] == "ok" and res[2] == 0
    assert len(res[1]) == len(built)
    for (r, data), got in zip(built, res[1], strict=True):
        headers = [
            ("To-Path", " ".join(r["to_path"])),
            ("From-Path", " ".join(r["from_path"])),
            *r["headers"],
        ]
        if r["content_type"] is not None:
            headers.append(("Content-Type", r["content_type"]))
        want = (
            True,
            r["tid"],
            r["method"],
            None,
            None,
            r["flag"],
            headers,
            r["body"],
            r["content_type"] is not None,
            data,
        )
        assert got == want
    if built:
        m = fr.parse_one(built[0][1])
        assert m.to_path == built[0][0]["to_path"] and m.from_path == built[0][0]["from_path"]


_PIECES = [
    b"MSRP ",
    b"abcd",
    b"abcd1",
    b" SEND",
    b" 200",
    b" OK",
    b" ",
    b"\r\n",
    b"\r",
    b"\n",
    b"\r\n\r\n",
    b"To-Path: x",
    b"Byte-Range: 1-2/3",
    b"Byte-Range: 1-*/x",
    b"Content-Type: t/p",
    b"X: \xc3\xa9",
    b"X: \xc3",
    b"-------",
    b"-------abcd",
    b"$",
    b"+",
    b"#",
    b"\xff",
]
_SEEDS = [
    WITH_CONTENT,
    NO_CONTENT,
    NO_CONTENT + WITH_CONTENT,
    b"MSRP abcd 200 OK\r\nTo-Path: x\r\n-------abcd$\r\n",
    b"MSRP abcd SEND\r\nByte-Range: 1-2/3\r\nContent-Type: t/p\r\n\r\nab\r\n-------abcd\r\n-------abcd+\r\n",
]
_piece_st = st.sampled_from(_PIECES) | st.binary(max_size=6)


@st.composite
def mutated_st(draw: st.DrawFn) -> bytes:
    """A valid message or two with a few random edits (delete a range, insert a piece)."""
    data = draw(st.sampled_from(_SEEDS))
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(data)))
        drop = draw(st.integers(0, 4))
        data = data[:at] + draw(_piece_st) + data[at + drop :]
    return data


fuzz_st = st.lists(_piece_st, max_size=24).map(b"".join) | mutated_st()


@given(
    data=fuzz_st | st.binary(max_size=64),
    points=st.lists(st.integers(0, 400), max_size=5),
    max_header=st.none() | st.integers(0, 80),
    max_chunk=st.none() | st.integers(0, 20),
)
def test_random_input_only_raises_framing_errors(
    fr: ModuleType, data: bytes, points: list[int], max_header: int | None, max_chunk: int | None
) -> None:
    limits = {}
    if max_header is not None:
        limits["max_header_bytes"] = max_header
    if max_chunk is not None:
        limits["max_chunk_bytes"] = max_chunk
    parts = cut(data, [x % (len(data) + 1) for x in points])
    whole = run(fr, [data], **limits)  # run() lets only MsrpFramingError through
    split = run(fr, parts, **limits)
    if whole[0] == "ok":
        assert split == whole  # D6: the split does not change the outcome
    else:
        assert split[:2] == whole[:2] and whole[1] in (400, 413)
    p = fr.MsrpParser(**limits)
    try:
        msgs = p.feed(data)
    except fr.MsrpFramingError:
        return
    for m in msgs:
        assert m.to_bytes() in data
        m.to_path, m.from_path, m.message_id, m.content_type, m.get("x"), m.get_all("X")  # noqa: B018
        try:
            m.byte_range  # noqa: B018
        except fr.MsrpFramingError as e:
            assert e.status_hint == 400
