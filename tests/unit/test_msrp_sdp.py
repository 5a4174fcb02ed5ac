"""SDP offer/answer for MSRP media (simplefast/msrp/sdp.py), sans-IO.

The offers of RFC 4975 section 4 and RFC 7701 section 9.1 (tests/vectors/msrp) are read
field by field; answers are built and read back with the same parser; each 400 and 488
case of the module docstring has an example; hypothesis feeds random octets, random
SDP-looking lines and mutated offers and checks that only ``SdpError`` escapes.
"""

from __future__ import annotations

import pickle
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simplefast.errors import LocalProtocolError, QuotableError, RemoteProtocolError
from simplefast.msrp.sdp import (
    MAX_SDP_BYTES,
    MAX_SDP_LINES,
    MsrpOffer,
    SdpError,
    answer_setup,
    build_msrp_answer,
    negotiate_types,
    offer_accepts,
    parse_msrp_offer,
)
from simplefast.testing import msrp_vector, mutate

FOCUS_PATH = "msrp://chat.example.com:7777/9di4eaZzs;tcp"


def vector_body(name: str) -> bytes:
    """The SDP body of a SIP message vector: everything after the first blank line."""
    raw = msrp_vector(name)
    head, sep, body = re.split(rb"(\r?\n\r?\n)", raw, maxsplit=1)
    assert sep and head.startswith(b"INVITE ")
    return body


def sdp(*lines: str, end: str = "\r\n") -> bytes:
    return ("".join(line + end for line in lines)).encode()


BASE = (
    "v=0",
    "o=alice 2890844526 2890844527 IN IP4 client.atlanta.example.com",
    "s=-",
    "c=IN IP4 client.atlanta.example.com",
    "t=0 0",
)
MSRP = (
    "m=message 7654 TCP/MSRP *",
    "a=accept-types:message/cpim text/plain",
    "a=path:msrp://client.atlanta.example.com:7654/jshA7weztas;tcp",
)


def offer(*extra: str, base: tuple[str, ...] = BASE, msrp: tuple[str, ...] = MSRP) -> bytes:
    return sdp(*base, *msrp, *extra)


def answer(o: MsrpOffer, **kw: Any) -> bytes:
    args: dict[str, Any] = {
        "address": "chat.example.com",
        "path": FOCUS_PATH,
        "accept_types": ("message/cpim",),
        "session_id": "3344",
    }
    args.update(kw)
    return build_msrp_answer(o, **args)


def refused(body: bytes | str) -> SdpError:
    with pytest.raises(SdpError) as info:
        parse_msrp_offer(body)
    return info.value


# ---------------------------------------------------------------- the RFC offers


def test_rfc4975_section4_offer() -> None:
    # RFC 4975 section 4 prints only c=, m= and a= lines ("removed for brevity").
    o = parse_msrp_offer(vector_body("rfc4975-4-sip-invite.msg"))
    assert o == MsrpOffer(
        origin_user="",
        session_id="",
        session_version="",
        address="atlanta.example.com",
        port=7654,
        tls=False,
        path=("msrp://atlanta.example.com:7654/jshA7weztas;tcp",),
        accept_types=("text/plain",),
        accept_wrapped_types=(),
        max_size=None,
        setup="active",
        connection="new",
        chatroom=frozenset(),
        media_index=0,
        media_count=1,
        other_media=(),
    )
    assert not offer_accepts(o, "message/cpim")
    assert offer_accepts(o, "text/plain")


def test_rfc7701_f1_offer() -> None:
    raw = msrp_vector("rfc7701-9.1-f1-invite.msg")
    body = vector_body("rfc7701-9.1-f1-invite.msg")
    length = re.search(rb"Content-Length: (\d+)", raw)
    assert length is not None and int(length.group(1)) == len(body)  # the body is whole
    o = parse_msrp_offer(body)
    assert o.origin_user == "alice"
    assert o.session_id == "2890844526"
    assert o.session_version == "2890844526"
    assert o.address == "client.atlanta.example.com"
    assert o.port == 7654
    assert o.tls is False
    assert o.path == ("msrp://client.atlanta.example.com:7654/jshA7weztas;tcp",)
    assert o.accept_types == ("message/cpim", "text/plain", "text/html")
    assert o.accept_wrapped_types == ()
    assert o.max_size is None
    assert o.setup == "active"
    assert o.connection == "new"
    assert o.chatroom == frozenset({"nickname", "private-messages"})
    assert (o.media_index, o.media_count, o.other_media) == (0, 1, ())
    assert offer_accepts(o, "message/cpim")
    assert parse_msrp_offer(body.decode()) == o  # str in, same result
    assert parse_msrp_offer(body.rstrip(b"\r\n")) == o  # no line end after the last line


def test_answer_to_rfc7701_f1() -> None:
    o = parse_msrp_offer(vector_body("rfc7701-9.1-f1-invite.msg"))
    body = answer(
        o,
        accept_wrapped_types=("*",),
        chatroom=("nickname", "private-messages"),
        port=7777,
        max_size=65536,
    )
    assert body == (
        b"v=0\r\n"
        b"o=- 3344 1 IN IP4 chat.example.com\r\n"
        b"s=-\r\n"
        b"c=IN IP4 chat.example.com\r\n"
        b"t=0 0\r\n"
        b"m=message 7777 TCP/MSRP *\r\n"
        b"a=accept-types:message/cpim\r\n"
        b"a=accept-wrapped-types:*\r\n"
        b"a=path:msrp://chat.example.com:7777/9di4eaZzs;tcp\r\n"
        b"a=max-size:65536\r\n"
        b"a=setup:passive\r\n"
        b"a=chatroom:nickname private-messages\r\n"
    )


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"accept_types": ("message/cpim", "text/*", "*"), "accept_wrapped_types": ("text/plain", "*")},
        {"chatroom": ("nickname",), "max_size": 0, "port": 65535},
        {"setup": "active", "connection": "existing"},
        {"setup": "holdconn", "session_version": "42", "origin_user": "focus"},
        {"path": "msrps://relay.example.net:2855/r1;tcp " + FOCUS_PATH.replace("msrp:", "msrps:")},
        {"address": "2001:db8::7"},
    ],
)
def test_answer_round_trip(kw: dict[str, Any]) -> None:
    o = parse_msrp_offer(vector_body("rfc7701-9.1-f1-invite.msg"))
    back = parse_msrp_offer(answer(o, **kw))
    assert back.origin_user == kw.get("origin_user", "-")
    assert back.session_id == "3344"
    assert back.session_version == kw.get("session_version", "1")
    assert back.address == kw.get("address", "chat.example.com")
    assert back.port == kw.get("port", 9)
    assert back.tls is False
    assert back.path == tuple(str(kw.get("path", FOCUS_PATH)).split())
    assert back.accept_types == kw.get("accept_types", ("message/cpim",))
    assert back.accept_wrapped_types == kw.get("accept_wrapped_types", ())
    assert back.max_size == kw.get("max_size")
    assert back.setup == kw.get("setup", "passive")
    assert back.connection == kw.get("connection", "new")
    assert back.chatroom == frozenset(kw.get("chatroom", ()))
    assert (back.media_index, back.media_count, back.other_media) == (0, 1, ())


def test_ipv6_offer_and_answer() -> None:
    body = offer(base=("v=0", "o=- 1 1 IN IP6 2001:db8::1", "s=-", "c=IN IP6 2001:db8::1", "t=0 0"))
    o = parse_msrp_offer(body)
    assert o.address == "2001:db8::1"
    ans = answer(o, address="2001:db8::2")
    assert b"o=- 3344 1 IN IP6 2001:db8::2\r\n" in ans
    assert b"c=IN IP6 2001:db8::2\r\n" in ans
    assert parse_msrp_offer(ans).address == "2001:db8::2"


def test_tls_proto() -> None:
    tls = (
        "m=message 2855 TCP/TLS/MSRP *",
        "a=accept-types:*",
        "a=path:msrps://client.atlanta.example.com:2855/s1;tcp",
    )
    o = parse_msrp_offer(offer(msrp=tls))
    assert o.tls is True and o.port == 2855 and o.accept_types == ("*",)
    ans = answer(o, path="msrps://chat.example.com:2855/x;tcp", port=2855)
    assert b"m=message 2855 TCP/TLS/MSRP *\r\n" in ans
    assert parse_msrp_offer(ans).tls is True
    # the proto and media are compared without case
    lower = parse_msrp_offer(offer(msrp=("m=MESSAGE 2855 tcp/tls/msrp *", *tls[1:])))
    assert lower.tls is True


def test_media_level_c_wins_and_session_level_c_serves() -> None:
    o = parse_msrp_offer(offer("c=IN IP4 192.0.2.9", msrp=(*MSRP,)))
    # the c= after the MSRP m= line belongs to that media
    assert o.address == "192.0.2.9"
    assert parse_msrp_offer(offer()).address == "client.atlanta.example.com"


def test_line_ends_and_blank_lines() -> None:
    crlf = offer()
    lf = offer().replace(b"\r\n", b"\n")
    mixed = crlf.replace(b"s=-\r\n", b"s=-\n\n  \n").rstrip(b"\r\n")
    assert parse_msrp_offer(crlf) == parse_msrp_offer(lf) == parse_msrp_offer(mixed)


def test_path_keeps_every_uri_in_order() -> None:
    uris = (
        "msrp://relay.example.com:2855/a;tcp",
        "MSRPS://relay2.example.com:2855/b;tcp",
        "msrp://x:1/c;tcp",
    )
    o = parse_msrp_offer(offer("a=path:" + " ".join(uris), msrp=MSRP[:2]))
    assert o.path == uris


def test_optional_attributes() -> None:
    o = parse_msrp_offer(
        offer(
            "a=accept-wrapped-types:Text/Plain image/*",
            "a=max-size:2048",
            "a=chatroom:Nickname private-messages future-token",
            "a=sendrecv",
        )
    )
    assert o.accept_wrapped_types == ("text/plain", "image/*")
    assert o.max_size == 2048
    assert o.chatroom == frozenset({"nickname", "private-messages", "future-token"})
    # a chatroom attribute with no value reads as no tokens
    assert parse_msrp_offer(offer("a=chatroom")).chatroom == frozenset()


def test_accept_types_with_parameters_are_kept() -> None:
    o = parse_msrp_offer(offer(msrp=(MSRP[0], "a=accept-types:text/plain;charset=UTF-8", MSRP[2])))
    assert o.accept_types == ("text/plain;charset=utf-8",)
    assert offer_accepts(o, "text/plain")


# ---------------------------------------------------------------- other m= lines


def test_audio_before_msrp_is_refused_with_port_0() -> None:
    body = sdp(
        *BASE,
        "m=audio 49170 RTP/AVP 0 8",
        "a=rtpmap:0 PCMU/8000",
        "m=message 7654 TCP/MSRP *",
        "a=accept-types:message/cpim",
        "a=path:msrp://client.atlanta.example.com:7654/jshA7weztas;tcp",
        "m=video 51372/2 RTP/AVP 31",
    )
    o = parse_msrp_offer(body)
    assert (o.media_index, o.media_count) == (1, 3)
    assert o.other_media == ((0, "audio 49170 RTP/AVP 0 8"), (2, "video 51372/2 RTP/AVP 31"))
    ans = answer(o, port=7777)
    lines = ans.decode().split("\r\n")
    m_lines = [line for line in lines if line.startswith("m=")]
    assert m_lines == ["m=audio 0 RTP/AVP 0 8", "m=message 7777 TCP/MSRP *", "m=video 0 RTP/AVP 31"]
    # the MSRP attributes sit under the MSRP m= line, before the video line
    assert lines.index("a=setup:passive") < lines.index("m=video 0 RTP/AVP 31")
    back = parse_msrp_offer(ans)
    assert (back.media_index, back.media_count) == (1, 3)
    assert back.other_media == ((0, "audio 0 RTP/AVP 0 8"), (2, "video 0 RTP/AVP 31"))


def test_only_the_first_live_msrp_line_is_taken() -> None:
    body = sdp(
        *BASE,
        "m=message 0 TCP/MSRP *",  # disabled by the offerer (RFC 3264 section 8.2)
        "a=accept-types:text/plain",
        "a=path:msrp://a.example.com:1/old;tcp",
        *MSRP,
        "m=message 9000 TCP/MSRP *",
        "a=accept-types:text/plain",
        "a=path:msrp://a.example.com:9000/second;tcp",
    )
    o = parse_msrp_offer(body)
    assert (o.media_index, o.media_count) == (1, 3)
    assert o.path == ("msrp://client.atlanta.example.com:7654/jshA7weztas;tcp",)
    m_lines = [line for line in answer(o).decode().split("\r\n") if line.startswith("m=")]
    assert m_lines == ["m=message 0 TCP/MSRP *", "m=message 9 TCP/MSRP *", "m=message 0 TCP/MSRP *"]


# ---------------------------------------------------------------- connection roles


@pytest.mark.parametrize(
    ("offered", "ours"),
    [
        ("active", "passive"),
        ("passive", "active"),
        ("actpass", "passive"),
        ("holdconn", "holdconn"),
        ("ACTPASS", "passive"),
        (" passive ", "active"),
    ],
)
def test_answer_setup_table(offered: str, ours: str) -> None:
    assert answer_setup(offered) == ours


@pytest.mark.parametrize("bad", ["", "connect", "activ", "active passive"])
def test_answer_setup_unknown_is_488(bad: str) -> None:
    with pytest.raises(SdpError) as info:
        answer_setup(bad)
    assert info.value.status == 488


@pytest.mark.parametrize(
    ("session", "media", "setup", "ours"),
    [
        (None, None, "active", "passive"),  # RFC 4975: the offerer connects
        ("a=setup:passive", None, "passive", "active"),
        (None, "a=setup:actpass", "actpass", "passive"),
        ("a=setup:passive", "a=setup:active", "active", "passive"),  # media level wins
        (None, "a=setup:HoldConn", "holdconn", "holdconn"),
    ],
)
def test_setup_levels_and_derived_answer(
    session: str | None, media: str | None, setup: str, ours: str
) -> None:
    base = BASE + ((session,) if session else ())
    o = parse_msrp_offer(offer(*((media,) if media else ()), base=base))
    assert o.setup == setup
    assert f"a=setup:{ours}\r\n".encode() in answer(o)
    # an explicit role wins over the derived one
    assert b"a=setup:active\r\n" in answer(o, setup="active")


@pytest.mark.parametrize(
    ("session", "media", "connection"),
    [
        (None, None, "new"),
        ("a=connection:existing", None, "existing"),
        ("a=connection:existing", "a=connection:new", "new"),
        (None, "a=connection:EXISTING", "existing"),
    ],
)
def test_connection_levels(session: str | None, media: str | None, connection: str) -> None:
    base = BASE + ((session,) if session else ())
    assert parse_msrp_offer(offer(*((media,) if media else ()), base=base)).connection == connection


# ---------------------------------------------------------------- type negotiation


@pytest.mark.parametrize(
    ("offered", "ours", "common"),
    [
        (("text/plain", "message/cpim"), ("message/cpim",), ("message/cpim",)),
        (("text/plain",), ("message/cpim",), ()),
        (("*",), ("message/cpim", "text/plain"), ("message/cpim", "text/plain")),
        (("message/*",), ("text/plain", "message/cpim"), ("message/cpim",)),
        (("text/plain", "text/html", "image/png"), ("text/*",), ("text/plain", "text/html")),
        (("text/plain", "image/png"), ("*",), ("text/plain", "image/png")),
        (("*",), ("*",), ("*",)),
        (("text/*",), ("*",), ("text/*",)),
        (("text/*",), ("text/*", "text/plain"), ("text/*", "text/plain")),
        (("Message/CPIM;foo=bar",), ("message/cpim",), ("message/cpim",)),
        (("text/plain", "text/plain"), ("text/*", "text/plain"), ("text/plain",)),
        (("image/*",), ("text/*",), ()),
        ((), ("*",), ()),
    ],
)
def test_negotiate_types(offered: tuple[str, ...], ours: tuple[str, ...], common: tuple[str, ...]) -> None:
    assert negotiate_types(offered, ours) == common


@pytest.mark.parametrize(
    ("accept", "ctype", "ok"),
    [
        ("message/cpim", "message/cpim", True),
        ("message/cpim", "Message/CPIM; charset=utf-8", True),
        ("text/plain", "message/cpim", False),
        ("*", "message/cpim", True),
        ("message/*", "message/cpim", True),
        ("text/* message/imdn+xml", "message/cpim", False),
        ("message/cpim", "", False),
    ],
)
def test_offer_accepts(accept: str, ctype: str, ok: bool) -> None:
    o = parse_msrp_offer(offer(msrp=(MSRP[0], "a=accept-types:" + accept, MSRP[2])))
    assert offer_accepts(o, ctype) is ok


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (offer(msrp=MSRP[:2]), "no a=path"),
        (offer(msrp=(MSRP[0], MSRP[2])), "no a=accept-types"),
        (offer(msrp=(MSRP[0], "a=accept-types:", MSRP[2])), "no a=accept-types"),
        (offer(msrp=(MSRP[0], MSRP[1], "a=path:")), "no a=path"),
        (offer(msrp=(MSRP[0], MSRP[1], "a=path:sip:alice@atlanta.example.com")), "not msrp"),
        (offer(msrp=(MSRP[0], MSRP[1], "a=path:msrp://a:1/x;tcp http://b/")), "not msrp"),
        (offer(msrp=(MSRP[0], MSRP[1], "a=path:msrp://")), "not msrp"),
        (sdp(*BASE), "no MSRP media"),
        (sdp(*BASE, "m=audio 49170 RTP/AVP 0"), "no MSRP media"),
        (sdp(*BASE, "m=message 7654 TCP/MSRP *", MSRP[1], MSRP[2]).replace(b"7654", b"0"), "no MSRP media"),
        (sdp(*BASE, "m=message 7654 UDP/MSRP *", MSRP[1], MSRP[2]), "no MSRP media"),
        (sdp(*BASE, "m=text 7654 TCP/MSRP *", MSRP[1], MSRP[2]), "no MSRP media"),
        (offer(MSRP[2]), "second a=path"),
        (offer("a=setup:active", "a=setup:active"), "second a=setup"),
        (offer("a=setup:client"), "a=setup value"),
        (offer("a=setup"), "a=setup value"),
        (offer("a=connection:reuse"), "a=connection value"),
        (offer("a=max-size:big"), "a=max-size"),
        (offer("a=max-size:-1"), "a=max-size"),
        (offer("a=max-size:+1"), "a=max-size"),
        (offer("a=max-size:\u0661"), "a=max-size"),  # an Arabic-Indic digit is no digit here
        (offer("a=max-size:12345678901234567890"), "a=max-size"),
        (offer(msrp=(MSRP[0], "a=accept-types:*/*", MSRP[2])), "not a media type"),
        (offer(msrp=(MSRP[0], "a=accept-types:text", MSRP[2])), "not a media type"),
        (offer(msrp=(MSRP[0], "a=accept-types:text/plain;charset", MSRP[2])), "not a media type"),
        (offer("a=accept-wrapped-types:text/"), "not a media type"),
        (sdp(*BASE[:1], "a=setup:bogus", *BASE[1:], *MSRP), "a=setup value"),
    ],
)
def test_not_acceptable_488(body: bytes, words: str) -> None:
    err = refused(body)
    assert err.status == 488 and err.status_hint == 488
    assert words in err.reason


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"", "empty"),
        (b"\r\n\r\n", "empty"),
        (b"hello world\r\n", "not <type>=<value>"),
        (b"\x00\xff\xfe garbage", "not UTF-8"),
        (offer().replace(b"v=0", b"v=1"), "version"),
        (sdp("o=- 1 1 IN IP4 h", *BASE[2:], "v=0", *MSRP), "v= must be the first"),
        (sdp(*BASE, "v=0", *MSRP), "v= must be the first"),
        (offer().replace(b"s=-", b"s=a\x00b"), "control character"),
        (offer().replace(b"s=-", b"s=a\rb"), "control character"),
        (offer().replace(b"s=-", b"S=-"), "unknown line type"),
        (offer().replace(b"s=-", b"x=-"), "unknown line type"),
        (offer().replace(b"s=-", b"s-"), "not <type>=<value>"),
        (offer().replace(b"s=-", b"ss=-"), "not <type>=<value>"),
        (offer("t=0 0"), "after the first m="),
        (offer("o=- 1 1 IN IP4 h"), "after the first m="),
        (sdp(*BASE, "o=- 1 1 IN IP4 h", *MSRP), "second o="),
        (offer().replace(b"o=alice 2890844526 2890844527 IN IP4", b"o=alice"), "6 fields"),
        (offer().replace(b"c=IN IP4 client", b"c=IN client"), "c= needs"),
        (offer("c=IN IP4 a", "c=IN IP4 b"), "second c="),
        (offer().replace(b"c=IN IP4 client.atlanta.example.com\r\n", b""), "no c= line"),
        (offer().replace(b"7654 TCP", b"76x4 TCP"), "is not a port"),
        (offer().replace(b"7654 TCP", b"65536 TCP"), "is not a port"),
        (offer().replace(b"7654 TCP/MSRP *", b"7654 TCP/MSRP"), "m= needs"),
        (offer("a=bad name:1"), "not a token"),
        (offer("a=:1"), "not a token"),
        (b"v=0\r\n" + b"a=x\r\n" * MAX_SDP_LINES, f"exceeds {MAX_SDP_LINES} lines"),
        (offer("a=x:" + "y" * MAX_SDP_BYTES), f"exceeds {MAX_SDP_BYTES} bytes"),
    ],
)
def test_unparseable_400(body: bytes, words: str) -> None:
    err = refused(body)
    assert err.status == 400
    assert words in err.reason


def test_bounds_for_text_input() -> None:
    assert refused("x" * (MAX_SDP_BYTES + 1)).status == 400
    assert refused("s=\udcff").status == 400  # a lone surrogate cannot be UTF-8
    # the bound counts octets: 3 octets per character here
    assert "exceeds" in refused("s=" + "\u20ac" * (MAX_SDP_BYTES // 3 + 1)).reason
    # exactly at the limits is fine
    at_limit = offer("a=x:" + "y" * (MAX_SDP_BYTES - len(offer()) - 6))
    assert len(at_limit) == MAX_SDP_BYTES
    assert parse_msrp_offer(at_limit).port == 7654
    lines = offer(*(["a=sendrecv"] * (MAX_SDP_LINES - len(BASE) - len(MSRP))))
    assert parse_msrp_offer(lines).port == 7654


def test_session_level_msrp_attributes_are_not_read() -> None:
    # RFC 4975 section 8.1 attributes are media-level; only setup/connection rise (RFC 4145)
    body = sdp(*BASE, "a=path:msrp://s:1/x;tcp", "a=path:msrp://s:1/y;tcp", "a=max-size:7", *MSRP)
    o = parse_msrp_offer(body)
    assert o.path == ("msrp://client.atlanta.example.com:7654/jshA7weztas;tcp",)
    assert o.max_size is None
    assert refused(sdp(*BASE, "a=setup:active", "a=setup:passive", *MSRP)).status == 488


def test_body_must_be_octets_or_text() -> None:
    assert parse_msrp_offer(bytearray(offer())) == parse_msrp_offer(memoryview(offer()))
    with pytest.raises(TypeError):
        parse_msrp_offer(5)  # type: ignore[arg-type]


def test_sdp_error_shape() -> None:
    err = refused(offer(msrp=(MSRP[0], MSRP[1], 'a=path:sip:"x"\\y')))
    assert isinstance(err, ValueError)
    assert isinstance(err, QuotableError) and isinstance(err, RemoteProtocolError)
    assert '"' not in err.reason and "\\" not in err.reason  # Warning-header safe
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is SdpError
    assert (copy.status, copy.reason, copy.status_hint) == (err.status, err.reason, 488)
    made = SdpError(400, "bad\r\nthing")
    assert made.status == 400 and made.reason == "bad thing"


# ---------------------------------------------------------------- answer refusals


@pytest.mark.parametrize(
    "kw",
    [
        {"session_id": "Zm9v-bar_"},  # RFC 4566 sess-id is digits
        {"session_id": ""},
        {"session_version": "1.0"},
        {"address": "chat example.com"},
        {"address": ""},
        {"origin_user": "a b"},
        {"path": ""},
        {"path": "sip:chat@example.com"},
        {"path": "msrp://x:1/a;tcp\r\na=evil:1"},
        {"accept_types": ()},
        {"accept_types": ("text",)},
        {"accept_wrapped_types": ("*/*",)},
        {"chatroom": ("nick name",)},
        {"setup": "actpass"},  # RFC 4145: never in an answer
        {"setup": "sideways"},
        {"connection": "maybe"},
        {"port": 0},
        {"port": 65536},
        {"max_size": -1},
    ],
)
def test_answer_refuses_what_it_cannot_write(kw: dict[str, Any]) -> None:
    o = parse_msrp_offer(offer())
    with pytest.raises(LocalProtocolError):
        answer(o, **kw)


# ---------------------------------------------------------------- fuzzing


def parse_or_refuse(body: bytes | str) -> MsrpOffer | None:
    try:
        return parse_msrp_offer(body)
    except SdpError as exc:
        assert exc.status in (400, 488)
        assert exc.reason
        return None


def check_answer_round_trip(o: MsrpOffer) -> None:
    back = parse_msrp_offer(answer(o))
    assert (back.media_index, back.media_count) == (o.media_index, o.media_count)
    assert [i for i, _ in back.other_media] == [i for i, _ in o.other_media]
    for (_, theirs), (_, ours) in zip(o.other_media, back.other_media, strict=True):
        t, a = theirs.split(), ours.split()
        assert a[0] == t[0] and a[1] == "0" and a[2:] == t[2:]


@given(st.binary(max_size=600))
def test_fuzz_random_octets(body: bytes) -> None:
    parse_or_refuse(body)


SDP_PIECES = st.sampled_from(
    [
        "v=0",
        "v=1",
        "o=- 1 2 IN IP4 h",
        "s=-",
        "c=IN IP4 192.0.2.1",
        "c=IN IP6 ::1",
        "t=0 0",
        "m=message 7654 TCP/MSRP *",
        "m=message 0 TCP/MSRP *",
        "m=message 2855 TCP/TLS/MSRP *",
        "m=audio 49170 RTP/AVP 0",
        "a=accept-types:message/cpim text/*",
        "a=accept-types:*",
        "a=accept-wrapped-types:*",
        "a=path:msrp://h:1/s;tcp",
        "a=path:msrps://r:2/x;tcp msrp://h:1/s;tcp",
        "a=max-size:100",
        "a=setup:actpass",
        "a=setup:passive",
        "a=connection:existing",
        "a=chatroom:nickname",
        "a=sendrecv",
    ]
)


@given(
    st.lists(st.one_of(SDP_PIECES, st.text(max_size=30)), max_size=14),
    st.sampled_from(["\r\n", "\n"]),
)
def test_fuzz_sdp_like_lines(lines: list[str], end: str) -> None:
    o = parse_or_refuse(end.join(lines))
    if o is not None:
        check_answer_round_trip(o)


VALID = [
    vector_body("rfc4975-4-sip-invite.msg"),
    vector_body("rfc7701-9.1-f1-invite.msg"),
    sdp(
        *BASE,
        "a=setup:passive",
        "m=audio 49170 RTP/AVP 0 8",
        "m=message 2855 TCP/TLS/MSRP *",
        "a=accept-types:message/cpim text/*",
        "a=accept-wrapped-types:*",
        "a=path:msrps://relay.example.com:2855/r;tcp msrps://h.example.com:2855/s;tcp",
        "a=max-size:4096",
        "a=connection:existing",
        "a=chatroom:nickname private-messages",
        "m=video 0 RTP/AVP 31",
    ),
]


@given(st.sampled_from(VALID), st.data())
def test_fuzz_mutated_offers(body: bytes, data: st.DataObject) -> None:
    o = parse_or_refuse(mutate(body, data))
    if o is not None:
        check_answer_round_trip(o)


@pytest.mark.parametrize("body", VALID)
def test_valid_offers_round_trip(body: bytes) -> None:
    check_answer_round_trip(parse_msrp_offer(body))
