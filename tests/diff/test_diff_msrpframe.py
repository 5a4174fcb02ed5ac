"""The two msrpframe twins on the same inputs: every result equal, every error alike.

``simplefast._ref.msrpframe`` is the specification (its "Decisions" D1..D16 settle
what the stub leaves open); ``simplefast._ext.msrpframe`` must match it for every
input and every way of cutting a stream into reads. Compared:

- streams, feed by feed (a *trace*): each ``feed`` gives the messages it completed,
  as (is_request, tid, method, status, comment, flag, headers(), bytes(body),
  has_content, to_bytes()) plus the accessors (paths, Message-ID, Content-Type,
  Byte-Range or its error, lookups, whether body is a memoryview, D8) and
  ``buffered``; or an error as (class name, status_hint). One more ``feed`` after
  the stream checks that a failed parser stays failed with the same exception
  object (D7);
- every RFC 4975/4976/7701 vector of tests/vectors/msrp (the three SIP messages
  printed next to them are skipped by name), as printed and with RFC 4976's
  "\\" line continuations joined, and with every indented continuation joined,
  at every split point into two reads and one octet at a time; all of them as one
  stream, at every split point; ``parse_one`` of each;
- generated streams (hypothesis): valid requests and responses with random tids,
  methods, status codes, comments, headers and flags, data with dash lines and
  near-miss end-lines (another tid, a longer tid, no flag, no CRLF, six or eight
  dashes, the tid in another case), cut at random points, fed as bytes, bytearray
  or memoryview, with limits drawn near the real header and data sizes so the 413
  edges are hit; the same with random edits; random bytes;
- the writers: ``build_request``, ``build_response`` and ``chunk`` (with a
  deterministic ``new_tid`` that sometimes returns ids occurring in the data, or
  invalid ones) give equal bytes, or raise the same exception class.
"""

from __future__ import annotations

import importlib
import re
import string
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simplefast.errors import RemoteProtocolError
from simplefast.testing import VECTORS, msrp_summary

REF = importlib.import_module("simplefast._ref.msrpframe")
EXT = importlib.import_module("simplefast._ext.msrpframe")

MSRP_DIR = VECTORS / "msrp"
# SIP messages printed beside the MSRP examples (RFC 4975 Figure 1, RFC 7701 9.1).
SIP_VECTORS = frozenset(["rfc4975-4-sip-invite.msg", "rfc4975-4-sip-ack.msg", "rfc7701-9.1-f1-invite.msg"])
VECTOR_PATHS = sorted(p for p in MSRP_DIR.glob("*.msg") if p.name not in SIP_VECTORS)

Trace = list[tuple[Any, ...]]

# ---------------------------------------------------------------- observing


def _outcome(mod: ModuleType, fn: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        return ("ok", fn())
    except mod.MsrpFramingError as e:
        return ("err", type(e).__name__, e.status_hint)


def summary(m: Any) -> tuple[Any, ...]:
    return msrp_summary(m)


def observe(mod: ModuleType, m: Any) -> tuple[Any, ...]:
    """Everything a caller can read from one message."""
    lookups = [(m.get(n), m.get_all(n)) for n in ("to-path", "MESSAGE-ID", "x-Unknown", "k", "\u212a")]
    return (
        summary(m),
        isinstance(m.body, memoryview),
        m.to_path,
        m.from_path,
        m.message_id,
        m.content_type,
        _outcome(mod, lambda: m.byte_range),
        lookups,
    )


def trace(mod: ModuleType, chunks: list[Any], limits: dict[str, int] | None = None) -> Trace:
    """Feed chunks in order; what each feed gave, then what one more feed does."""
    p = mod.MsrpParser(**(limits or {}))
    out: Trace = []
    first: BaseException | None = None
    for c in chunks:
        try:
            msgs = p.feed(c)
        except mod.MsrpFramingError as e:
            first = first or e
            out.append(("err", type(e).__name__, e.status_hint, p.buffered))
        else:
            out.append(("ok", [observe(mod, m) for m in msgs], p.buffered))
    try:
        msgs = p.feed(b"")
        out.append(("after", len(msgs), p.buffered))
    except mod.MsrpFramingError as e:
        out.append(("after-err", type(e).__name__, e.status_hint, e is first, p.buffered))
    return out


def check_trace(chunks: list[Any], limits: dict[str, int] | None = None) -> Trace:
    ref = trace(REF, chunks, limits)
    ext = trace(EXT, chunks, limits)
    assert ext == ref, _first_difference(ref, ext, chunks)
    return ref


def _first_difference(ref: Trace, ext: Trace, chunks: list[Any]) -> str:
    cut = [len(c) for c in chunks]
    for i, (r, e) in enumerate(zip(ref, ext, strict=False)):
        if r != e:
            return f"feed {i} of chunks {cut}:\nref={r!r}\next={e!r}"
    return f"traces differ in length ({len(ref)} / {len(ext)}) for chunks {cut}"


def cut(data: bytes, points: list[int]) -> list[bytes]:
    edges = [0, *sorted(p % (len(data) + 1) for p in points), len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


# ---------------------------------------------------------------- the error classes


def test_error_classes_alike() -> None:
    for mod in (REF, EXT):
        assert issubclass(mod.MsrpFramingError, RemoteProtocolError)
        assert mod.MsrpFramingError.__name__ == "MsrpFramingError"
    errs = []
    for mod in (REF, EXT):
        with pytest.raises(mod.MsrpFramingError) as info:
            mod.MsrpParser().feed(b"SIP/2.0 200 OK\r\n")
        errs.append(info.value.status_hint)
    assert errs == [400, 400]


def test_same_public_names() -> None:
    def names(mod: ModuleType) -> set[str]:
        return {
            n
            for n in dir(mod)
            if not n.startswith("_") and n not in {"annotations", "operator", "re", "typing"}
        }

    assert names(EXT) >= {
        "MAX_HEADER_BYTES",
        "MAX_CHUNK_BYTES",
        "MsrpFramingError",
        "MsrpMessage",
        "MsrpParser",
        "parse_one",
        "build_request",
        "build_response",
        "forward",
        "chunk",
    }
    assert names(EXT) - {"RemoteProtocolError"} == names(REF) - {"RemoteProtocolError"}
    assert (EXT.MAX_HEADER_BYTES, EXT.MAX_CHUNK_BYTES) == (REF.MAX_HEADER_BYTES, REF.MAX_CHUNK_BYTES)


# ---------------------------------------------------------------- vectors

_BACKSLASH = re.compile(rb"\\\r\n[ \t]*")  # RFC 4976's printed line continuation
_INDENTED = re.compile(rb"\r\n[ \t]+")  # any indented continuation line


def _in_header_block(data: bytes, rx: re.Pattern[bytes], repl: bytes) -> bytes:
    """rx replaced in the header block only (up to the first empty line)."""
    end = data.find(b"\r\n\r\n")
    head, rest = (data, b"") if end < 0 else (data[:end], data[end:])
    return rx.sub(repl, head) + rest


VARIANTS: dict[str, Callable[[bytes], bytes]] = {
    "as-printed": lambda d: d,
    "unfolded": lambda d: _in_header_block(d, _BACKSLASH, b""),
    "joined": lambda d: _in_header_block(_in_header_block(d, _BACKSLASH, b""), _INDENTED, b" "),
}


def test_vectors_present() -> None:
    assert len(VECTOR_PATHS) >= 35
    assert all(p.read_bytes().startswith(b"MSRP ") for p in VECTOR_PATHS)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("path", VECTOR_PATHS, ids=[p.stem for p in VECTOR_PATHS])
def test_vector_every_split(path: Path, variant: str) -> None:
    data = VARIANTS[variant](path.read_bytes())
    whole = check_trace([data])
    for i in range(len(data) + 1):
        check_trace([data[:i], data[i:]])
    check_trace([data[i : i + 1] for i in range(len(data))])
    # parse_one agrees too (a message, or the same error)
    ref = _outcome(REF, lambda: summary(REF.parse_one(data)))
    ext = _outcome(EXT, lambda: summary(EXT.parse_one(data)))
    assert ext == ref
    if variant != "as-printed":
        return
    assert whole[0][0] in ("ok", "err")


def _sizes(data: bytes) -> tuple[int, int]:
    """Header block and data sizes of a vector that frames (D4, D5)."""
    m = REF.parse_one(data)
    size = len(m.to_bytes()) - len(m.body) - (2 if m.has_content else 0) - len(m.tid) - 10
    return size, len(m.body)


@pytest.mark.parametrize("path", VECTOR_PATHS, ids=[p.stem for p in VECTOR_PATHS])
def test_vector_limit_edges_one_octet_at_a_time(path: Path) -> None:
    data = VARIANTS["joined"](path.read_bytes())
    try:
        hsize, dsize = _sizes(data)
    except REF.MsrpFramingError:
        hsize, dsize = len(data), len(data)
    octets = [data[i : i + 1] for i in range(len(data))]
    for dh in (-1, 0, 1):
        for dd in (-1, 0, 1):
            limits = {"max_header_bytes": max(0, hsize + dh), "max_chunk_bytes": max(0, dsize + dd)}
            got = check_trace(octets, limits)
            fits = limits["max_header_bytes"] >= hsize and limits["max_chunk_bytes"] >= dsize
            if path.name != "rfc4976-3-6-200ok-xght6.msg":  # printed without its end-line
                assert (got[-2][0] == "ok") == fits, (limits, got[-2:])


def _framing(variant: str) -> list[bytes]:
    """The vectors of one variant that frame alone as exactly one message."""
    out = []
    for p in VECTOR_PATHS:
        data = VARIANTS[variant](p.read_bytes())
        got = trace(REF, [data])
        if got[0][0] == "ok" and len(got[0][1]) == 1 and got[0][2] == 0:
            out.append(data)
    return out


def test_joined_vectors_frame() -> None:
    # every vector frames once its continuations are joined, except the 200 OK
    # RFC 4976 prints without its end-line
    assert len(_framing("joined")) == len(VECTOR_PATHS) - 1


def test_all_vectors_as_one_stream_every_split() -> None:
    stream = b"".join(_framing("joined"))
    whole = check_trace([stream])
    assert whole[0][0] == "ok" and len(whole[0][1]) == len(VECTOR_PATHS) - 1
    for i in range(0, len(stream) + 1, 3):
        check_trace([stream[:i], stream[i:]])
    for i in range(0, len(stream) + 1, 97):
        check_trace([stream[:i], stream[i : i + 1500], stream[i + 1500 :]])
    check_trace([stream[i : i + 1] for i in range(len(stream))])
    # and with a message that breaks the stream in the middle
    bad = VARIANTS["as-printed"](MSRP_DIR.joinpath("rfc4976-3-1-send-6aef.msg").read_bytes())
    broken = stream[:2000] + bad + stream[2000:]
    for i in range(0, len(broken) + 1, 11):
        check_trace([broken[:i], broken[i:]])


# ---------------------------------------------------------------- generated streams

_ALNUM = string.ascii_letters + string.digits
_TOKEN = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"(),/:;<=>?@[\\]')

tid_st = st.builds(
    lambda a, b: a + b, st.sampled_from(_ALNUM), st.text(_ALNUM + ".-+%=", min_size=3, max_size=31)
)
text_st = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\r\n"), max_size=20)
name_st = st.sampled_from(
    [
        "To-Path",
        "From-Path",
        "Message-ID",
        "Byte-Range",
        "Content-Type",
        "Success-Report",
        "Status",
        "byte-range",
    ]
) | st.text(_TOKEN, min_size=1, max_size=12)
range_st = st.sampled_from(
    [
        "1-25/25",
        "1-*/*",
        "1-*/8",
        "0-0/0",
        "5-2/1",
        "01-002/3",
        "1-2/",
        "-1/2",
        "1 -2/3",
        "x",
        "9223372036854775807-1/*",
        "9223372036854775808-1/2",
        "1-\u0661/2",
    ]
)
path_st = st.lists(
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12), max_size=3
)


@st.composite
def header_line_st(draw: st.DrawFn) -> bytes:
    name = draw(name_st)
    if name.lower() == "byte-range":
        value = draw(range_st | text_st)
    elif name.lower().endswith("-path"):
        # D12: only SP and HTAB separate; other white space is part of a URI
        seps = [" ", "\t", "  ", " \t ", "\x0b", "\x0c", "\x1c", "\x85", "\xa0", "\u2003", "\u3000"]
        value = draw(st.sampled_from(seps)).join(draw(path_st))
    else:
        value = draw(text_st)
    line = name.encode() + b": " + value.encode()
    if draw(st.integers(0, 8)) == 0:  # any octets as the value (D10: strict UTF-8, no CR/LF)
        line = name.encode() + b": " + draw(st.binary(max_size=12) | st.sampled_from(_UTF8_EDGES))
    if draw(st.integers(0, 30)) == 0:  # now and then a broken line
        line = draw(
            st.sampled_from([b"X:y", b" folded", b"X: \xc3", b"X: a\rb", b"X: a\nb", b":", b"X : y", b""])
        )
    return line


# well-formed and ill-formed UTF-8 at the edges of Python's strict codec
_UTF8_EDGES = [
    b"\xc2\x80",
    b"\xdf\xbf",
    b"\xc0\xaf",
    b"\xc1\xbf",
    b"\xe0\xa0\x80",
    b"\xe0\x9f\xbf",
    b"\xed\x9f\xbf",
    b"\xed\xa0\x80",
    b"\xed\xbf\xbf",
    b"\xee\x80\x80",
    b"\xef\xbf\xbf",
    b"\xf0\x90\x80\x80",
    b"\xf0\x8f\xbf\xbf",
    b"\xf4\x8f\xbf\xbf",
    b"\xf4\x90\x80\x80",
    b"\xf5\x80\x80\x80",
    b"\xf0\x9f\x98",
    b"\xe2\x82",
    b"\x80",
    b"\xff",
    b"\x00\x01\x7f\t",
    b"abcdefgh\xc3\xa9ijklmnop",
    b"abcdefghijklmno\r",
    b"abcdefghijklmnopqrstuvw\xed\xa0\x80",
]


def _near_misses(t: bytes, other: bytes) -> list[bytes]:
    return [
        b"\r\n",
        b"\r",
        b"\n",
        b"-------",
        b"\r\n-------",
        t,
        b"-------" + t + b"$\r\n",
        b"\r\n-------" + t,
        b"\r\n-------" + t + b"$",
        b"\r\n-------" + t + b"$\r",
        b"\r\n-------" + t + b"x\r\n",
        b"\r\n-------" + t + b"0$\r\n",
        b"\r\n-------" + t + b"$$\r\n",
        b"\r\n------" + t + b"$\r\n",
        b"\r\n--------" + t + b"$\r\n",
        b"\r\n-------" + t.swapcase() + b"$\r\n",
        b"\r\n-------" + t[:-1] + b"$\r\n",
        b"\r\n-------" + other + b"+\r\n",
        b"\r\n-------" + t + b"#\r\n",  # the real thing: ends the data early
    ]


@st.composite
def message_st(draw: st.DrawFn) -> tuple[bytes, int, int]:
    """(octets, header block size, data size) of one request or response."""
    tid = draw(tid_st)
    t = tid.encode()
    request = draw(st.integers(0, 3)) > 0
    if request:
        rest = draw(
            st.sampled_from([b"SEND", b"REPORT", b"AUTH", b"NICKNAME"]) | st.text("ABCDEFGHXYZ", min_size=1)
        )
        if isinstance(rest, str):
            rest = rest.encode()
    else:
        code = draw(st.integers(0, 999))
        rest = b"%03d" % code
        comment = draw(
            st.none() | st.sampled_from(["OK", "", "Nickname reserved", "\u00e9t\u00e9", " x"]) | text_st
        )
        if comment is not None:
            rest += b" " + comment.encode()
        elif draw(st.integers(0, 5)) == 0:
            rest += b" " + draw(st.sampled_from(_UTF8_EDGES))
    head = b"MSRP " + t + b" " + rest + b"\r\n"
    for _ in range(draw(st.integers(0, 6))):
        head += draw(header_line_st()) + b"\r\n"
    content = request and draw(st.booleans()) or draw(st.integers(0, 20)) == 0  # a response now and then
    flag = draw(st.sampled_from(b"$+#")).to_bytes(1, "big")
    body = b""
    if content:
        other = draw(tid_st).encode()
        parts = draw(st.lists(st.binary(max_size=12) | st.sampled_from(_near_misses(t, other)), max_size=8))
        body = b"".join(parts)
        head += b"\r\n"
        data = head + body + b"\r\n-------" + t + flag + b"\r\n"
    else:
        data = head + b"-------" + t + flag + b"\r\n"
    return data, len(head), len(body)


@st.composite
def stream_st(draw: st.DrawFn) -> tuple[list[Any], dict[str, int]]:
    msgs = draw(st.lists(message_st(), min_size=1, max_size=4))
    data = b"".join(m[0] for m in msgs)
    tail = draw(
        st.sampled_from([b"", b"M", b"MSRP ", b"MSRP abcd SEND\r\n", b"MSRP abcd SEND\r\nX: y\r\n\r\nda"])
    )
    data += tail
    if draw(st.integers(0, 4)) == 0:  # a few random edits
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(data)))
            data = data[:at] + draw(st.binary(max_size=4)) + data[at + draw(st.integers(0, 3)) :]
    limits: dict[str, int] = {}
    if draw(st.booleans()):
        _, hsize, dsize = draw(st.sampled_from(msgs))
        limits["max_header_bytes"] = max(0, hsize + draw(st.integers(-3, 3)))
        limits["max_chunk_bytes"] = max(0, dsize + draw(st.integers(-3, 3)))
    chunks = cut(data, draw(st.lists(st.integers(0, 10**6), max_size=6)))
    kinds = draw(
        st.lists(st.sampled_from([bytes, bytearray, memoryview]), min_size=len(chunks), max_size=len(chunks))
    )
    return [k(c) for k, c in zip(kinds, chunks, strict=True)], limits


_LINE_ENDS = [
    b"$\r\n",
    b"+\r\n",
    b"#\r\n",
    b"$",
    b"$\r",
    b"$x\r\n",
    b"$\rx\r\n",
    b"x\r\n",
    b"\r\n",
    b"$$\r\n",
]


@pytest.mark.parametrize("tail", _LINE_ENDS)
@pytest.mark.parametrize("dashes", [b"-------", b"------", b"--------"])
def test_end_line_without_content_at_the_limit(dashes: bytes, tail: bytes) -> None:
    # D2 (a) and D4: a line that may still become the end-line is not counted
    # while incomplete; one octet at a time, every header limit around it
    for tid in (b"abcd", b"abcde", b"abc"):
        head = b"MSRP abcd SEND\r\nTo-Path: x\r\n"
        data = head + dashes + tid + tail + b"X: y\r\n-------abcd$\r\n"
        octets = [data[i : i + 1] for i in range(len(data))]
        for limit in range(len(head) - 1, len(data) + 1):
            check_trace(octets, {"max_header_bytes": limit})


@pytest.mark.parametrize("tail", _LINE_ENDS)
def test_end_line_after_data_at_the_limit(tail: bytes) -> None:
    # D3 and D5: near misses are data; the data limit is raised as soon as proven
    for tid in (b"abcd", b"abcde", b"abc", b"ABCD"):
        head = b"MSRP abcd SEND\r\nTo-Path: x\r\n\r\n"
        body = b"xy\r\n-------" + tid + tail + b"z"
        data = head + body + b"\r\n-------abcd$\r\n"
        octets = [data[i : i + 1] for i in range(len(data))]
        for limit in range(0, len(body) + 3):
            check_trace(octets, {"max_chunk_bytes": limit})
        check_trace([data[:40], data[40:]], {"max_chunk_bytes": 4})


@settings(max_examples=1500)
@given(stream_st())
def test_generated_streams(case: tuple[list[Any], dict[str, int]]) -> None:
    chunks, limits = case
    check_trace(chunks, limits)
    whole = b"".join(bytes(c) for c in chunks)
    check_trace([whole], limits)


@settings(max_examples=300)
@given(msg=message_st(), dh=st.integers(-2, 2), dd=st.integers(-2, 2))
def test_generated_message_one_octet_at_a_time(msg: tuple[bytes, int, int], dh: int, dd: int) -> None:
    # one octet a feed shows exactly when each twin raises (D4, D5: as soon as proven)
    data, hsize, dsize = msg
    octets = [data[i : i + 1] for i in range(len(data))]
    check_trace(octets)
    check_trace(octets, {"max_header_bytes": max(0, hsize + dh), "max_chunk_bytes": max(0, dsize + dd)})


_PIECES = [
    b"MSRP ",
    b"abcd",
    b" SEND",
    b" 200",
    b" OK",
    b" ",
    b"\r\n",
    b"\r",
    b"\n",
    b"\r\n\r\n",
    b"To-Path: x y",
    b"Byte-Range: 1-2/3",
    b"Content-Type: t/p",
    b"X: \xc3\xa9",
    b"\xed\xa0\x80",
    b"-------",
    b"-------abcd",
    b"\r\n-------abcd",
    b"$",
    b"+",
    b"#",
    b"\xff",
]


@settings(max_examples=1500)
@given(
    data=st.lists(st.sampled_from(_PIECES) | st.binary(max_size=6), max_size=30).map(b"".join)
    | st.binary(max_size=80),
    points=st.lists(st.integers(0, 400), max_size=5),
    max_header=st.none() | st.integers(0, 80),
    max_chunk=st.none() | st.integers(0, 20),
)
def test_random_bytes(data: bytes, points: list[int], max_header: int | None, max_chunk: int | None) -> None:
    limits = {}
    if max_header is not None:
        limits["max_header_bytes"] = max_header
    if max_chunk is not None:
        limits["max_chunk_bytes"] = max_chunk
    check_trace(cut(data, points), limits)
    ref = _outcome(REF, lambda: observe(REF, REF.parse_one(data)))
    ext = _outcome(EXT, lambda: observe(EXT, EXT.parse_one(data)))
    assert ext == ref


@pytest.mark.parametrize(
    "limits",
    [
        {"max_header_bytes": True},
        {"max_header_bytes": -1},
        {"max_chunk_bytes": 1.5},
        {"max_chunk_bytes": 1 << 70},
    ],
)
def test_limit_arguments(limits: dict[str, Any]) -> None:
    got = []
    for mod in (REF, EXT):
        try:
            mod.MsrpParser(**limits).feed(b"MSRP abcd SEND\r\n-------abcd$\r\n")
            got.append("ok")
        except (TypeError, ValueError) as e:
            got.append(type(e).__name__)
    assert got[0] == got[1]


# ---------------------------------------------------------------- writers


def _call(fn: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        return ("ok", fn())
    except (ValueError, TypeError) as e:
        return ("err", type(e).__name__)


bad_text_st = st.sampled_from(["a\rb", "a\nb", "\ud800", ""])
wtid_st = tid_st | st.sampled_from(["abc", "a" * 33, "-abc", "ab cd", "ab\u00e9cd", "abc\ud800"])
method_st = st.sampled_from(["SEND", "REPORT", "X", "send", "", "SE ND", "\u00c9T\u00c9"]) | st.text(
    "ABCZ", min_size=1
)
wpath_st = path_st | st.sampled_from([["a b"], [""], ["a\tb"], ["x\r"], ["\u00e9"], ["x", "\ud800"]])
wheaders_st = st.lists(
    st.tuples(
        st.text(_TOKEN, min_size=1, max_size=8) | st.sampled_from(["", "A B", "\u00e9", "A:"]),
        text_st | bad_text_st,
    ),
    max_size=4,
)


@st.composite
def body_st(draw: st.DrawFn, tid: str) -> bytes:
    t = tid.encode("utf-8", "surrogatepass")
    return b"".join(
        draw(st.lists(st.binary(max_size=10) | st.sampled_from(_near_misses(t, b"zzzz")), max_size=6))
    )


@settings(max_examples=800)
@given(data=st.data())
def test_build_request(data: st.DataObject) -> None:
    tid = data.draw(wtid_st)
    args = (tid, data.draw(method_st), data.draw(wpath_st), data.draw(wpath_st), data.draw(wheaders_st))
    kw = {
        "content_type": data.draw(st.none() | text_st | bad_text_st),
        "body": data.draw(body_st(tid) | st.just(b"")),
        "flag": data.draw(st.sampled_from(["$", "+", "#", "", "$$", "x"])),
    }
    if data.draw(st.booleans()):
        kw["body"] = data.draw(st.sampled_from([bytearray, memoryview]))(kw["body"])
    ref = _call(lambda: REF.build_request(*args, **kw))
    ext = _call(lambda: EXT.build_request(*args, **kw))
    assert ext == ref
    if ref[0] == "ok":  # what we write frames back as written
        assert summary(EXT.parse_one(ext[1])) == summary(REF.parse_one(ref[1]))


@settings(max_examples=500)
@given(
    tid=wtid_st,
    status=st.integers(-2, 1001) | st.sampled_from([True, 200]),
    comment=st.none() | text_st | bad_text_st,
    to_path=wpath_st,
    from_path=wpath_st,
    headers=wheaders_st,
)
def test_build_response(
    tid: str,
    status: int,
    comment: str | None,
    to_path: list[str],
    from_path: list[str],
    headers: list[tuple[str, str]],
) -> None:
    ref = _call(lambda: REF.build_response(tid, status, comment, to_path, from_path, headers))
    ext = _call(lambda: EXT.build_response(tid, status, comment, to_path, from_path, headers))
    assert ext == ref


def rewritten(m: Any, tid: str, to_path: list[str], from_path: list[str]) -> bytes:
    """An independent rendering of what ``forward`` must write (RFC 4976 3.3): new start
    line and paths, every other header as ``name: value``, the data, the new end-line."""
    parts = [
        f"MSRP {tid} {m.method}\r\n",
        f"To-Path: {' '.join(to_path)}\r\n",
        f"From-Path: {' '.join(from_path)}\r\n",
    ]
    parts += [f"{n}: {v}\r\n" for n, v in m.headers() if n.lower() not in ("to-path", "from-path")]
    head = "".join(parts).encode("utf-8")
    end = f"-------{tid}{m.flag}\r\n".encode()
    return head + b"\r\n" + bytes(m.body) + b"\r\n" + end if m.has_content else head + end


def rewritten_part(m: Any, tid: str, to_path: list[str], from_path: list[str], off: int, n: int) -> bytes:
    """What ``forward(..., part=(off, n))`` must write: the Byte-Range values and flag of
    the part, its octets of the data."""
    start, _, total = m.byte_range
    br = f"{start + off}-{start + off + n - 1}/{'*' if total is None else total}"
    data = bytes(m.body)
    flag = m.flag if off + n == len(data) else "+"
    parts = [
        f"MSRP {tid} {m.method}\r\n",
        f"To-Path: {' '.join(to_path)}\r\n",
        f"From-Path: {' '.join(from_path)}\r\n",
    ]
    for name, v in m.headers():
        if name.lower() in ("to-path", "from-path"):
            continue
        parts.append(f"{name}: {br if name.lower() == 'byte-range' else v}\r\n")
    return (
        "".join(parts).encode("utf-8")
        + b"\r\n"
        + data[off : off + n]
        + f"\r\n-------{tid}{flag}\r\n".encode()
    )


@settings(max_examples=400)
@given(
    msg=message_st(),
    tid=wtid_st,
    to_path=wpath_st,
    from_path=wpath_st,
    part=st.none() | st.tuples(st.integers(-1, 40), st.integers(-1, 40)),
)
def test_forward(
    msg: tuple[bytes, int, int],
    tid: str,
    to_path: list[str],
    from_path: list[str],
    part: tuple[int, int] | None,
) -> None:
    data = msg[0]
    got = []
    for mod in (REF, EXT):
        try:
            m = mod.parse_one(data)
            _ = m.byte_range
        except mod.MsrpFramingError:
            return
        out = _call(lambda mod=mod, m=m: mod.forward(m, tid, to_path, from_path, part=part))
        got.append(out)
        if out[0] == "ok" and out[1] is not None:
            if part is None:
                assert out[1] == rewritten(m, tid, to_path, from_path)
            else:
                assert out[1] == rewritten_part(m, tid, to_path, from_path, *part)
            # it frames back: same method, the part's data, its flag
            back = mod.parse_one(out[1])
            assert (back.tid, back.method) == (tid, m.method)
        elif out == ("ok", None):
            assert m.has_content  # only data can hold the new end-line
    assert got[0] == got[1]


def test_forward_refuses_responses_and_other_objects() -> None:
    for mod in (REF, EXT):
        r = mod.parse_one(
            b"MSRP abcd 200 OK\r\nTo-Path: msrp://a:1/x;tcp\r\nFrom-Path: msrp://b:1/y;tcp\r\n-------abcd$\r\n"
        )
        with pytest.raises(ValueError):
            mod.forward(r, "efgh", ["msrp://a:1/x;tcp"], ["msrp://b:1/y;tcp"])
        with pytest.raises(TypeError):
            mod.forward(b"MSRP abcd SEND", "efgh", [], [])


class Tids:
    """A deterministic new_tid: the given ids in turn (then generated ones), counted."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= len(self.ids):
            return self.ids[self.calls - 1]
        return f"gen{self.calls:06d}"


@settings(max_examples=600)
@given(data=st.data())
def test_chunk(data: st.DataObject) -> None:
    body = b"".join(
        data.draw(
            st.lists(
                st.binary(max_size=40) | st.sampled_from([b"abcd", b"gen0000", b"tid1", b"-------"]),
                max_size=8,
            )
        )
    )
    ids = data.draw(
        st.lists(st.sampled_from(["abcd", "tid1", "tid2", "zzzzzz", "gen0000", "ab"]), max_size=20)
    )
    if data.draw(st.integers(0, 5)) == 0:
        ids = ["abcd"] * 40  # every try collides (when the data holds "abcd")
    args = (
        data.draw(wpath_st),
        data.draw(wpath_st),
        data.draw(text_st | bad_text_st),
        data.draw(text_st | bad_text_st),
        body,
    )
    kw = {
        "chunk_size": data.draw(st.integers(-1, 50) | st.sampled_from([True, 2048])),
        "headers": data.draw(wheaders_st),
    }
    out = []
    for mod in (REF, EXT):
        tids = Tids(ids)
        out.append((_call(lambda m=mod, t=tids: m.chunk(t, *args, **kw)), tids.calls))
    assert out[1] == out[0]
    res = out[0][0]
    if res[0] == "ok":  # the chunks frame back to the body
        msgs = EXT.MsrpParser().feed(b"".join(res[1]))
        assert b"".join(bytes(m.body) for m in msgs) == body
        assert [m.flag for m in msgs] == ["+"] * (len(msgs) - 1) + ["$"]


def test_chunk_large_body() -> None:
    body = bytes(range(256)) * 4000 + b"\r\n-------gen000001$\r\n"
    paths = (["msrp://a:1/x;tcp"], ["msrp://b:2/y;tcp"])
    out = [mod.chunk(Tids([]), *paths, "m1", "a/b", body, chunk_size=65536) for mod in (REF, EXT)]
    assert out[0] == out[1]
    assert len(out[0]) == -(-len(body) // 65536)
