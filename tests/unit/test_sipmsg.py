"""Contract tests of the SIP codec (simplefast/_ext/sipmsg.pyi), run against
both twins through the ``impl`` fixture.

Messages are built by the small helpers below (CRLF line ends, a default
INVITE whose headers can be replaced, dropped or added to), so each test shows
only what it changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from simplefast._sip_types import NameAddr, SipURI, Via
from simplefast.errors import LocalProtocolError, SipParseError

CRLF = "\r\n"

TOP_VIA = "SIP/2.0/UDP pc33.example.com:5060;branch=z9hG4bK776asdhds"
BASE_HEADERS: tuple[tuple[str, str], ...] = (
    ("Via", TOP_VIA),
    ("Max-Forwards", "70"),
    ("To", "Bob <sip:bob@example.com>"),
    ("From", "Alice <sip:alice@example.com>;tag=1928301774"),
    ("Call-ID", "a84b4c76e66710@pc33.example.com"),
    ("CSeq", "314159 {method}"),
    ("Contact", "<sip:alice@pc33.example.com>"),
)

_AUTO = object()


def raw(start: str, *headers: str, body: bytes = b"", eol: str = CRLF) -> bytes:
    """A message from a start line and header lines as written (no Content-Length added)."""
    head = eol.join([start, *headers]) + eol + eol
    return head.encode("utf-8", "surrogateescape") + body


def request(
    method: str = "INVITE",
    uri: str = "sip:bob@example.com",
    *,
    hdr: dict[str, str | None] | None = None,
    add: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    content_length: object = _AUTO,
    version: str = "SIP/2.0",
) -> bytes:
    """The default request. ``hdr`` replaces (or with None drops) a base header
    by name; ``add`` appends lines; Content-Length is len(body) unless given
    (None: no Content-Length line)."""
    changes = dict(hdr or {})
    lines = []
    for name, value in BASE_HEADERS:
        if name in changes:
            new = changes[name]
            if new is None:
                continue
            value = new
        lines.append(f"{name}: {value.format(method=method)}")
    lines += [f"{n}: {v}" for n, v in add]
    if content_length is _AUTO:
        lines.append(f"Content-Length: {len(body)}")
    elif content_length is not None:
        lines.append(f"Content-Length: {content_length}")
    return raw(f"{method} {uri} {version}", *lines, body=body)


def response(
    status: int = 200,
    reason: str = "OK",
    *,
    hdr: dict[str, str | None] | None = None,
    add: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
) -> bytes:
    changes = dict(hdr or {})
    lines = []
    for name, value in BASE_HEADERS:
        if name == "To" and "To" not in changes:
            value += ";tag=a6c85cf"
        if name in changes:
            new = changes[name]
            if new is None:
                continue
            value = new
        lines.append(f"{name}: {value.format(method='INVITE')}")
    lines += [f"{n}: {v}" for n, v in add]
    lines.append(f"Content-Length: {len(body)}")
    return raw(f"SIP/2.0 {status} {reason}", *lines, body=body)


def parse(impl: SimpleNamespace, data: bytes, **kw: Any) -> Any:
    return impl.sipmsg.parse_message(data, **kw)


def parse_error(impl: SimpleNamespace, data: bytes, **kw: Any) -> SipParseError:
    with pytest.raises(SipParseError) as ei:
        impl.sipmsg.parse_message(data, **kw)
    return ei.value


def one_header(impl: SimpleNamespace, *lines: str) -> Any:
    """A minimal OPTIONS carrying just these header lines."""
    return parse(impl, raw("OPTIONS sip:a@example.com SIP/2.0", *lines))


# ================================================================ module surface


def test_constants(impl: SimpleNamespace) -> None:
    m = impl.sipmsg
    assert m.DEFAULT_MAX_HEADER_BYTES == 16384
    assert m.DEFAULT_MAX_HEADERS == 256
    assert m.DEFAULT_MAX_BODY_BYTES == 1 << 20
    assert m.SUPPORTED_URI_SCHEMES == frozenset({"sip", "sips", "tel", "pres", "im"})
    assert isinstance(m.SUPPORTED_URI_SCHEMES, frozenset)
    assert m.SipParseError is SipParseError


def test_parse_returns_sip_message(impl: SimpleNamespace) -> None:
    msg = parse(impl, request())
    assert isinstance(msg, impl.sipmsg.SipMessage)


# ================================================================ start line


def test_request_line(impl: SimpleNamespace) -> None:
    msg = parse(impl, request("INVITE", "sip:bob@biloxi.example.com"))
    assert msg.is_request is True
    assert msg.method == "INVITE"
    assert msg.uri == "sip:bob@biloxi.example.com"
    assert msg.version == "SIP/2.0"
    assert msg.status is None
    assert msg.reason is None


def test_method_is_case_sensitive_and_kept_as_written(impl: SimpleNamespace) -> None:
    # RFC 3261 7.1: the method is case-sensitive; "invite" is not INVITE.
    msg = parse(impl, request("invite"))
    assert msg.method == "invite"
    assert msg.method != "INVITE"


def test_extension_method_token(impl: SimpleNamespace) -> None:
    msg = parse(impl, request("X-FOO.bar!"))
    assert msg.method == "X-FOO.bar!"


def test_status_line(impl: SimpleNamespace) -> None:
    msg = parse(impl, response(183, "Session Progress"))
    assert msg.is_request is False
    assert msg.status == 183
    assert msg.reason == "Session Progress"
    assert msg.method is None
    assert msg.uri is None
    assert msg.version == "SIP/2.0"


@pytest.mark.parametrize("status", [100, 199, 200, 404, 699])
def test_status_range_accepted(impl: SimpleNamespace, status: int) -> None:
    assert parse(impl, response(status, "X")).status == status


@pytest.mark.parametrize("code", ["099", "000", "700", "999", "1000", "20", "2x0", "-20"])
def test_status_out_of_range_or_malformed(impl: SimpleNamespace, code: str) -> None:
    err = parse_error(impl, raw(f"SIP/2.0 {code} Odd", "Call-ID: x"))
    assert err.status_hint == 400
    assert "status" in str(err)


def test_empty_reason_phrase(impl: SimpleNamespace) -> None:
    # Reason-Phrase = *(...): may be empty (RFC 3261 25.1, RFC 4475 3.1.1.13).
    msg = parse(impl, raw("SIP/2.0 100 ", "Call-ID: x"))
    assert msg.status == 100
    assert msg.reason == ""


def test_reason_phrase_keeps_inner_spaces_and_utf8(impl: SimpleNamespace) -> None:
    msg = parse(impl, raw("SIP/2.0 486 Busy  Here – ça sonne", "Call-ID: x"))
    assert msg.reason == "Busy  Here – ça sonne"


def test_reason_phrase_non_utf8_survives(impl: SimpleNamespace) -> None:
    data = b"SIP/2.0 200 O\xffK\r\nCall-ID: x\r\n\r\n"
    msg = parse(impl, data)
    assert msg.reason == "O\udcffK"
    assert msg.reason.encode("utf-8", "surrogateescape") == b"O\xffK"


@pytest.mark.parametrize(
    "start",
    [
        "INVITE  sip:bob@example.com SIP/2.0",  # two SP after the method
        "INVITE sip:bob@example.com  SIP/2.0",  # two SP before the version
        "INVITE sip:bob@example.com SIP/2.0 ",  # trailing SP
        " INVITE sip:bob@example.com SIP/2.0",  # leading SP
        "INVITE\tsip:bob@example.com SIP/2.0",  # HT instead of SP
        "INVITE sip:bob@example.com",  # no version
        "INVITE",  # method only
        "INVITE sip:bob@ex ample.com SIP/2.0",  # white space in the URI
    ],
)
def test_request_line_needs_single_sp(impl: SimpleNamespace, start: str) -> None:
    # RFC 3261 7.1: Request-Line = Method SP Request-URI SP SIP-Version CRLF
    err = parse_error(impl, raw(start, "Call-ID: x"))
    assert err.status_hint == 400
    assert any(w in str(err) for w in ("Request-Line", "Request-URI", "method", "version")), str(err)


def test_status_line_needs_single_sp(impl: SimpleNamespace) -> None:
    err = parse_error(impl, raw("SIP/2.0  200 OK", "Call-ID: x"))
    assert err.status_hint == 400


@pytest.mark.parametrize(
    "uri",
    ["<sip:bob@example.com>", "bob@example.com", "sip", ":bob", "1sip:bob@example.com", 'sip:"bob"@x'],
)
def test_request_uri_must_be_a_uri(impl: SimpleNamespace, uri: str) -> None:
    err = parse_error(impl, raw(f"INVITE {uri} SIP/2.0", "Call-ID: x"))
    assert err.status_hint == 400
    assert "Request-URI" in str(err)


def test_method_must_be_a_token(impl: SimpleNamespace) -> None:
    err = parse_error(impl, raw("INV(ITE sip:bob@example.com SIP/2.0", "Call-ID: x"))
    assert err.status_hint == 400
    assert "method" in str(err)


@pytest.mark.parametrize("version", ["SIP/2", "SIP/.0", "SIP/2.", "SIP2.0", "HTTP/1.1", "SIP/2.x"])
def test_malformed_version_is_a_parse_error(impl: SimpleNamespace, version: str) -> None:
    err = parse_error(impl, raw(f"OPTIONS sip:a@example.com {version}", "Call-ID: x"))
    assert err.status_hint == 400
    assert "version" in str(err)


def test_other_version_parses_and_validate_says_505(impl: SimpleNamespace) -> None:
    msg = parse(impl, request(version="SIP/3.0"))
    assert msg.version == "SIP/3.0"
    result = impl.sipmsg.validate_request(msg)
    assert result is not None and result[0] == 505


def test_version_is_case_insensitive(impl: SimpleNamespace) -> None:
    # RFC 3261 7.1: "The SIP-Version string is case-insensitive".
    msg = parse(impl, request(version="sip/2.0"))
    assert msg.version == "sip/2.0"
    assert impl.sipmsg.validate_request(msg) is None


def test_leading_crlfs_are_skipped(impl: SimpleNamespace) -> None:
    # RFC 3261 7.5: CRLFs before the start line are ignored.
    data = request()
    msg = parse(impl, b"\r\n\r\n\r\n" + data)
    assert msg.method == "INVITE"
    assert msg.to_bytes() == data


def test_lf_only_line_ends(impl: SimpleNamespace) -> None:
    # RFC 3261 7: implementations should accept LF as a line terminator.
    data = raw(
        "MESSAGE sip:bob@example.com SIP/2.0",
        "Via: " + TOP_VIA,
        "Call-ID: lf@example.com",
        "Subject: hello",
        "Content-Length: 5",
        body=b"hello",
        eol="\n",
    )
    msg = parse(impl, data)
    assert msg.method == "MESSAGE"
    assert msg.version == "SIP/2.0"
    assert msg.call_id == "lf@example.com"
    assert msg.get("Subject") == "hello"
    assert msg.via_branch == "z9hG4bK776asdhds"
    assert msg.content_length == 5
    assert msg.body == b"hello"
    assert msg.to_bytes() == data


def test_lf_only_status_line(impl: SimpleNamespace) -> None:
    msg = parse(impl, raw("SIP/2.0 180 Ringing", "Call-ID: x", eol="\n"))
    assert (msg.status, msg.reason) == (180, "Ringing")


@pytest.mark.parametrize("data", [b"", b"\r\n", b"\r\n\r\n\r\n"])
def test_empty_input_is_an_error(impl: SimpleNamespace, data: bytes) -> None:
    assert parse_error(impl, data).status_hint == 400


def test_unterminated_start_line(impl: SimpleNamespace) -> None:
    err = parse_error(impl, b"OPTIONS sip:a@example.com SIP/2.0")
    assert err.status_hint == 400


def test_header_section_needs_an_empty_line(impl: SimpleNamespace) -> None:
    err = parse_error(impl, b"OPTIONS sip:a@example.com SIP/2.0\r\nCall-ID: x\r\n")
    assert err.status_hint == 400
    assert "empty line" in str(err)


def test_header_line_without_colon(impl: SimpleNamespace) -> None:
    err = parse_error(impl, raw("OPTIONS sip:a@example.com SIP/2.0", "Call-ID: x", "Subject hello"))
    assert err.status_hint == 400
    assert "colon" in str(err)


@pytest.mark.parametrize("line", ["Sub ject: x", "Sub<ject: x", ": x", "Subj\x7fect: x"])
def test_header_name_must_be_a_token(impl: SimpleNamespace, line: str) -> None:
    err = parse_error(impl, raw("OPTIONS sip:a@example.com SIP/2.0", line))
    assert err.status_hint == 400
    assert "header name" in str(err)


def test_white_space_before_colon_is_allowed(impl: SimpleNamespace) -> None:
    # HCOLON = *( SP / HTAB ) ":" SWS (RFC 3261 25.1)
    msg = one_header(impl, "Subject \t: lunch")
    assert msg.get("subject") == "lunch"
    assert msg.headers() == [("Subject", "lunch")]


def test_continuation_before_first_header(impl: SimpleNamespace) -> None:
    err = parse_error(impl, raw("OPTIONS sip:a@example.com SIP/2.0", " folded", "Call-ID: x"))
    assert err.status_hint == 400


# ================================================================ headers


def test_get_is_case_insensitive(impl: SimpleNamespace) -> None:
    msg = parse(impl, request())
    for name in ("Call-ID", "call-id", "CALL-ID", "cAlL-iD", "i", "I"):
        assert msg.get(name) == "a84b4c76e66710@pc33.example.com", name
    assert msg.get("X-Missing") is None


COMPACT = {
    "i": "Call-ID",
    "f": "From",
    "t": "To",
    "v": "Via",
    "m": "Contact",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "e": "Content-Encoding",
    "s": "Subject",
    "o": "Event",
    "u": "Allow-Events",
    "r": "Refer-To",
    "x": "Session-Expires",
    "y": "Identity",
    "b": "Referred-By",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
    "n": "Identity-Info",
}
COMPACT_VALUE = {"l": "0", "v": TOP_VIA, "f": "<sip:a@example.com>;tag=9", "t": "<sip:b@example.com>"}


@pytest.mark.parametrize(("short", "full"), sorted(COMPACT.items()))
def test_compact_form_is_the_full_header(impl: SimpleNamespace, short: str, full: str) -> None:
    value = COMPACT_VALUE.get(short, "tokenvalue")
    msg = one_header(impl, f"{short}: {value}")
    assert msg.get(full) == value
    assert msg.get(full.upper()) == value
    assert msg.get(full.lower()) == value
    assert msg.get(short) == value
    assert msg.get(short.upper()) == value
    assert msg.count(full) == 1
    assert msg.get_all(full) == [value]
    assert msg.headers() == [(short, value)]
    # and the other way round: the full name written, the compact form asked for
    full_msg = one_header(impl, f"{full}: {value}")
    assert full_msg.get(short) == value
    assert full_msg.count(short) == 1


def test_compact_and_full_lines_count_together(impl: SimpleNamespace) -> None:
    msg = one_header(impl, "Via: " + TOP_VIA, "v: SIP/2.0/TCP b.example.com;branch=z9hG4bK2")
    assert msg.count("via") == 2
    assert msg.count("V") == 2
    assert len(msg.get_all("v")) == 2


def test_unknown_single_letter_is_its_own_header(impl: SimpleNamespace) -> None:
    msg = one_header(impl, "q: 1", "z: 2")
    assert msg.get("q") == "1"
    assert msg.get("z") == "2"
    assert msg.count("q") == 1


def test_get_returns_the_first_whole_line(impl: SimpleNamespace) -> None:
    msg = one_header(
        impl,
        "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP b.example.com;branch=z9hG4bK2",
        "Via: SIP/2.0/UDP c.example.com;branch=z9hG4bK3",
    )
    assert msg.get("via") == (
        "SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP b.example.com;branch=z9hG4bK2"
    )


def test_get_all_splits_list_headers_in_order(impl: SimpleNamespace) -> None:
    msg = one_header(
        impl,
        "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP b.example.com;branch=z9hG4bK2",
        "Subject: between",
        "Via: SIP/2.0/UDP c.example.com;branch=z9hG4bK3",
    )
    assert msg.get_all("Via") == [
        "SIP/2.0/UDP a.example.com;branch=z9hG4bK1",
        "SIP/2.0/UDP b.example.com;branch=z9hG4bK2",
        "SIP/2.0/UDP c.example.com;branch=z9hG4bK3",
    ]
    assert msg.count("Via") == 2


@pytest.mark.parametrize(
    "name",
    ["Via", "Contact", "Route", "Record-Route", "Path", "Allow", "Supported", "Require", "Proxy-Require"],
)
def test_list_headers_are_split(impl: SimpleNamespace, name: str) -> None:
    msg = one_header(impl, f"{name}: a , b,c")
    assert msg.get_all(name) == ["a", "b", "c"]
    assert msg.get(name) == "a , b,c"


def test_split_respects_quotes_and_angle_brackets(impl: SimpleNamespace) -> None:
    msg = one_header(
        impl,
        'Contact: "Doe, John" <sip:john@example.com;x=a>, <sip:x@example.com?h=a,b>;q=0.5, '
        '"say \\"hi, there\\"" <sip:y@example.com>',
    )
    assert msg.get_all("Contact") == [
        '"Doe, John" <sip:john@example.com;x=a>',
        "<sip:x@example.com?h=a,b>;q=0.5",
        '"say \\"hi, there\\"" <sip:y@example.com>',
    ]


def test_split_quoted_param_with_angle_bracket(impl: SimpleNamespace) -> None:
    # RFC 5626 +sip.instance values are quoted and hold "<" and ">"
    msg = one_header(
        impl,
        'Contact: <sip:a@example.com>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>", '
        "<sip:b@example.com>",
    )
    assert msg.get_all("Contact") == [
        '<sip:a@example.com>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"',
        "<sip:b@example.com>",
    ]


def test_empty_list_elements_are_kept(impl: SimpleNamespace) -> None:
    msg = one_header(impl, "Supported: timer,,100rel", "Require: foo,", "Allow: , INVITE")
    assert msg.get_all("Supported") == ["timer", "", "100rel"]
    assert msg.get_all("Require") == ["foo", ""]
    assert msg.get_all("Allow") == ["", "INVITE"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WWW-Authenticate", 'Digest realm="atlanta.com", nonce="84a4cc6f", qop="auth", algorithm=MD5'),
        ("Authorization", 'Digest username="bob", realm="biloxi.com", response="42ce3cef"'),
        ("Proxy-Authenticate", 'Digest realm="a", nonce="b"'),
        ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
        ("Subject", "Hi, there"),
        ("X-Unknown", "a, b, c"),
        ("Call-ID", "weird,id@example.com"),
    ],
)
def test_non_list_headers_are_not_split(impl: SimpleNamespace, name: str, value: str) -> None:
    msg = one_header(impl, f"{name}: {value}", f"{name}: second, line")
    assert msg.get_all(name) == [value, "second, line"]
    assert msg.count(name) == 2


def test_get_all_absent_is_empty(impl: SimpleNamespace) -> None:
    msg = parse(impl, request())
    assert msg.get_all("Route") == []
    assert msg.get_all("X-Nothing") == []
    assert msg.count("Route") == 0


def test_headers_in_order_with_names_as_written(impl: SimpleNamespace) -> None:
    msg = one_header(impl, "v: " + TOP_VIA, "CALL-id:  abc  ", "X-Empty:", "subject:a,b")
    assert msg.headers() == [
        ("v", TOP_VIA),
        ("CALL-id", "abc"),
        ("X-Empty", ""),
        ("subject", "a,b"),
    ]


def test_value_white_space_is_trimmed(impl: SimpleNamespace) -> None:
    msg = one_header(impl, "Subject:\t  lunch at noon \t ")
    assert msg.get("Subject") == "lunch at noon"


def test_header_values_decode_utf8_with_surrogateescape(impl: SimpleNamespace) -> None:
    data = b"OPTIONS sip:a@example.com SIP/2.0\r\nSubject: caf\xc3\xa9 \xff\r\n\r\n"
    msg = parse(impl, data)
    assert msg.get("Subject") == "café \udcff"


@pytest.mark.parametrize(
    "data",
    [
        b"OPTIONS sip:a@example.com SIP/2.0\r\nSubject: one\rX-Injected: two\r\n\r\n",
        b"OPTIONS sip:a@example.com SIP/2.0\r\nCall-ID: a\rb\r\n\r\n",
        b"SIP/2.0 200 O\rK\r\nCall-ID: x\r\n\r\n",
    ],
)
def test_bare_cr_inside_a_line_is_malformed(impl: SimpleNamespace, data: bytes) -> None:
    # RFC 3261 25.1: CR appears only in CRLF (and in LWS before a fold); no
    # header value or Reason-Phrase production admits a lone CR. Accepting it
    # lets a value that another parser reads as two lines through.
    err = parse_error(impl, data)
    assert err.status_hint == 400


# ================================================================ folding


def test_folded_value_is_joined_with_one_space(impl: SimpleNamespace) -> None:
    # RFC 3261 7.3.1 example
    msg = one_header(
        impl,
        "Subject: I know you're there,",
        "               pick up the phone   ",
        "\t\tand talk to me!",
        "Call-ID: x",
    )
    assert msg.get("Subject") == "I know you're there, pick up the phone and talk to me!"
    assert msg.count("Subject") == 1
    assert msg.headers() == [
        ("Subject", "I know you're there, pick up the phone and talk to me!"),
        ("Call-ID", "x"),
    ]


def test_folded_list_header_splits_across_lines(impl: SimpleNamespace) -> None:
    msg = one_header(
        impl,
        "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1,",
        "     SIP/2.0/UDP b.example.com",
        "      ;branch=z9hG4bK2",
    )
    assert msg.get_all("Via") == [
        "SIP/2.0/UDP a.example.com;branch=z9hG4bK1",
        "SIP/2.0/UDP b.example.com ;branch=z9hG4bK2",
    ]
    assert [v.branch for v in msg.vias()] == ["z9hG4bK1", "z9hG4bK2"]
    assert msg.count("Via") == 1


def test_folded_typed_accessors(impl: SimpleNamespace) -> None:
    msg = one_header(
        impl,
        "CSeq: 4711",
        "  INVITE",
        "Max-Forwards:",
        " 69",
        "From: Alice",
        "  <sip:alice@example.com>;tag=88",
    )
    assert msg.cseq_num == 4711
    assert msg.cseq_method == "INVITE"
    assert msg.max_forwards == 69
    assert msg.from_tag == "88"
    assert msg.from_addr() == NameAddr("Alice", "sip:alice@example.com", {"tag": "88"})


def test_folded_content_length(impl: SimpleNamespace) -> None:
    data = raw("MESSAGE sip:a@example.com SIP/2.0", "Content-Length:", "  3", body=b"abcdef")
    msg = parse(impl, data)
    assert msg.content_length == 3
    assert msg.body == b"abc"


def test_folding_kept_in_to_bytes(impl: SimpleNamespace) -> None:
    data = raw("OPTIONS sip:a@example.com SIP/2.0", "Subject: one", "  two")
    assert parse(impl, data).to_bytes() == data


def test_folded_header_counts_once_towards_max_headers(impl: SimpleNamespace) -> None:
    data = raw("OPTIONS sip:a@example.com SIP/2.0", "Subject: one", " two", " three", "Call-ID: x")
    msg = parse(impl, data, max_headers=2)
    assert msg.get("Subject") == "one two three"


# ================================================================ body and Content-Length


def test_body_framed_by_content_length(impl: SimpleNamespace) -> None:
    msg = parse(impl, request("MESSAGE", body=b"hello world"))
    assert msg.content_length == 11
    assert msg.body == b"hello world"


def test_trailing_datagram_octets_are_ignored(impl: SimpleNamespace) -> None:
    data = request("MESSAGE", body=b"abcd")
    msg = parse(impl, data + b"GARBAGE\r\n")
    assert msg.body == b"abcd"
    assert msg.content_length == 4
    assert msg.to_bytes() == data


def test_short_datagram_keeps_body_short(impl: SimpleNamespace) -> None:
    data = request("MESSAGE", body=b"abcd", content_length=10)
    msg = parse(impl, data)
    assert msg.content_length == 10
    assert msg.body == b"abcd"
    assert msg.to_bytes() == data
    result = impl.sipmsg.validate_request(msg)
    assert result is not None and result[0] == 400
    assert "Content-Length" in result[1]


def test_no_content_length_body_is_rest_of_datagram(impl: SimpleNamespace) -> None:
    data = request("MESSAGE", body=b"rest of it\r\n", content_length=None)
    msg = parse(impl, data)
    assert msg.content_length is None
    assert msg.body == b"rest of it\r\n"
    assert msg.to_bytes() == data


def test_content_length_zero_drops_trailing_octets(impl: SimpleNamespace) -> None:
    data = request("OPTIONS")
    msg = parse(impl, data + b"xyz")
    assert msg.content_length == 0
    assert msg.body == b""
    assert msg.to_bytes() == data


def test_compact_content_length(impl: SimpleNamespace) -> None:
    data = raw("MESSAGE sip:a@example.com SIP/2.0", "l: 2", body=b"hi!")
    msg = parse(impl, data)
    assert msg.content_length == 2
    assert msg.body == b"hi"


def test_binary_body_survives(impl: SimpleNamespace) -> None:
    payload = bytes(range(256))
    msg = parse(impl, request("MESSAGE", body=payload))
    assert msg.body == payload
    assert type(msg.body) is bytes


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "0x10", "12 34", "+3"])
def test_content_length_not_a_number(impl: SimpleNamespace, value: str) -> None:
    err = parse_error(impl, request(content_length=value))
    assert err.status_hint == 400
    assert "Content-Length" in str(err)
    assert "not a number" in str(err)


def test_empty_content_length_is_not_a_number(impl: SimpleNamespace) -> None:
    err = parse_error(impl, raw("OPTIONS sip:a@example.com SIP/2.0", "Content-Length:"))
    assert err.status_hint == 400
    assert "Content-Length" in str(err)


def test_huge_content_length_is_413_not_overflow(impl: SimpleNamespace) -> None:
    err = parse_error(impl, request(content_length="99999999999999999999999999999999"))
    assert err.status_hint == 413


# ================================================================ to_bytes


def test_to_bytes_round_trip(impl: SimpleNamespace) -> None:
    data = request("MESSAGE", body=b"x" * 7, add=[("Subject", "round trip")])
    msg = parse(impl, data)
    out = msg.to_bytes()
    assert type(out) is bytes
    assert out == data
    again = parse(impl, out)
    assert again.headers() == msg.headers()
    assert again.body == msg.body


@pytest.mark.parametrize("wrap", [bytearray, memoryview])
def test_accepts_bytearray_and_memoryview(impl: SimpleNamespace, wrap: type) -> None:
    data = request("MESSAGE", body=b"hey")
    msg = parse(impl, wrap(bytearray(data)))
    assert msg.method == "MESSAGE"
    assert msg.body == b"hey"
    assert msg.to_bytes() == data
    assert type(msg.to_bytes()) is bytes


def test_message_does_not_alias_a_mutable_buffer(impl: SimpleNamespace) -> None:
    buf = bytearray(request("MESSAGE", body=b"hey"))
    msg = parse(impl, buf)
    buf[:] = b"X" * len(buf)
    assert msg.method == "MESSAGE"
    assert msg.body == b"hey"


# ================================================================ hot accessors


def test_hot_accessors_on_the_base_request(impl: SimpleNamespace) -> None:
    msg = parse(impl, request(add=[("Expires", "3600"), ("Event", "presence;id=4")]))
    assert msg.call_id == "a84b4c76e66710@pc33.example.com"
    assert msg.cseq_num == 314159
    assert msg.cseq_method == "INVITE"
    assert msg.via_branch == "z9hG4bK776asdhds"
    assert msg.via_host == "pc33.example.com"
    assert msg.via_port == 5060
    assert msg.via_transport == "UDP"
    assert msg.via_rport is None
    assert msg.from_tag == "1928301774"
    assert msg.to_tag is None
    assert msg.expires == 3600
    assert msg.event == "presence"
    assert msg.content_length == 0
    assert msg.max_forwards == 70
    assert msg.contact_uri == "sip:alice@pc33.example.com"
    # cached values stay the same
    assert msg.cseq_num == 314159
    assert msg.via_host == "pc33.example.com"


def test_hot_accessors_absent(impl: SimpleNamespace) -> None:
    msg = parse(impl, raw("OPTIONS sip:a@example.com SIP/2.0"))
    for name in (
        "call_id",
        "cseq_num",
        "cseq_method",
        "via_branch",
        "via_host",
        "via_port",
        "via_transport",
        "via_rport",
        "from_tag",
        "to_tag",
        "expires",
        "event",
        "content_length",
        "max_forwards",
        "contact_uri",
    ):
        assert getattr(msg, name) is None, name
    assert msg.vias() == []
    assert msg.contacts() == []
    assert msg.from_addr() is None
    assert msg.to_addr() is None


def test_accessors_use_the_first_header(impl: SimpleNamespace) -> None:
    msg = one_header(
        impl,
        "Via: SIP/2.0/TCP first.example.com:5070;branch=z9hG4bKfirst, "
        "SIP/2.0/UDP x.example.com;branch=z9hG4bKx",
        "Via: SIP/2.0/UDP second.example.com;branch=z9hG4bKsecond",
        "Contact: <sip:one@example.com>, <sip:two@example.com>",
        "Contact: <sip:three@example.com>",
    )
    assert msg.via_host == "first.example.com"
    assert msg.via_port == 5070
    assert msg.via_transport == "TCP"
    assert msg.via_branch == "z9hG4bKfirst"
    assert msg.contact_uri == "sip:one@example.com"


@pytest.mark.parametrize(
    ("value", "num", "method"),
    [
        ("0 INVITE", 0, "INVITE"),
        ("1 ACK", 1, "ACK"),
        ("2147483647 BYE", 2**31 - 1, "BYE"),
        ("101   REGISTER", 101, "REGISTER"),
        ("7\tinvite", 7, "invite"),
        ("00042 OPTIONS", 42, "OPTIONS"),
        ("9 RE%47IST%45R", 9, "RE%47IST%45R"),
    ],
)
def test_cseq_valid(impl: SimpleNamespace, value: str, num: int, method: str) -> None:
    msg = one_header(impl, f"CSeq: {value}")
    assert msg.cseq_num == num
    assert msg.cseq_method == method


@pytest.mark.parametrize(
    "value",
    ["2147483648 INVITE", "4294967296 INVITE", "99999999999999999999 INVITE"],
)
def test_cseq_out_of_range(impl: SimpleNamespace, value: str) -> None:
    # RFC 3261 8.1.1.5: the sequence number MUST be less than 2**31.
    msg = one_header(impl, f"CSeq: {value}")
    with pytest.raises(SipParseError) as ei:
        msg.cseq_num  # noqa: B018
    assert ei.value.status_hint == 400
    assert "range" in str(ei.value)
    with pytest.raises(SipParseError):
        msg.cseq_method  # noqa: B018


@pytest.mark.parametrize("value", ["INVITE", "1", "1INVITE", "-1 INVITE", "1 INVITE extra", "", "1 INV(TE"])
def test_cseq_malformed(impl: SimpleNamespace, value: str) -> None:
    msg = one_header(impl, f"CSeq: {value}")
    with pytest.raises(SipParseError) as ei:
        msg.cseq_num  # noqa: B018
    assert ei.value.status_hint == 400
    assert "CSeq" in str(ei.value)


@pytest.mark.parametrize(
    ("value", "expected"), [("0", 0), ("3600", 3600), ("4294967295", 2**32 - 1), ("007", 7)]
)
def test_expires_valid(impl: SimpleNamespace, value: str, expected: int) -> None:
    assert one_header(impl, f"Expires: {value}").expires == expected


@pytest.mark.parametrize("value", ["4294967296", "1" + "0" * 30, "-1", "abc", "3600 s", "1.5", ""])
def test_expires_invalid(impl: SimpleNamespace, value: str) -> None:
    msg = one_header(impl, f"Expires: {value}")
    with pytest.raises(SipParseError) as ei:
        msg.expires  # noqa: B018
    assert ei.value.status_hint == 400
    assert "Expires" in str(ei.value)


@pytest.mark.parametrize(("value", "expected"), [("0", 0), ("1", 1), ("70", 70), ("255", 255)])
def test_max_forwards_valid(impl: SimpleNamespace, value: str, expected: int) -> None:
    assert one_header(impl, f"Max-Forwards: {value}").max_forwards == expected


@pytest.mark.parametrize("value", ["256", "1000", "-1", "abc", "7 0", ""])
def test_max_forwards_invalid(impl: SimpleNamespace, value: str) -> None:
    msg = one_header(impl, f"Max-Forwards: {value}")
    with pytest.raises(SipParseError) as ei:
        msg.max_forwards  # noqa: B018
    assert ei.value.status_hint == 400
    assert "Max-Forwards" in str(ei.value)


@pytest.mark.parametrize(
    ("line", "field", "expected"),
    [
        ("Max-Forwards: 0070", "max_forwards", 70),
        ("Expires: 00000003600", "expires", 3600),
        ("CSeq: 000000000001 INVITE", "cseq_num", 1),
    ],
)
def test_leading_zeros_do_not_count_against_the_range(
    impl: SimpleNamespace, line: str, field: str, expected: int
) -> None:
    # Max-Forwards, delta-seconds and the CSeq number are 1*DIGIT (RFC 3261
    # 25.1); the range applies to the value, so "0070" is 70, not out of range.
    assert getattr(one_header(impl, line), field) == expected


@pytest.mark.parametrize(
    ("via", "host", "port", "transport"),
    [
        ("SIP/2.0/UDP pc33.example.com", "pc33.example.com", None, "UDP"),
        ("SIP/2.0/udp pc33.example.com:5060", "pc33.example.com", 5060, "UDP"),
        ("SIP/2.0/tls Client.Example.COM:5061", "Client.Example.COM", 5061, "TLS"),
        ("SIP/2.0/Tcp 192.0.2.1:0", "192.0.2.1", 0, "TCP"),
        ("SIP/2.0/sctp 192.0.2.1:65535", "192.0.2.1", 65535, "SCTP"),
        ("SIP/2.0/WSS [2001:db8::1]:443", "[2001:db8::1]", 443, "WSS"),
        ("SIP/2.0/UDP [2001:db8::9:255.255.255.1]", "[2001:db8::9:255.255.255.1]", None, "UDP"),
        ("SIP / 2.0 / UDP first.example.com: 4000", "first.example.com", 4000, "UDP"),
    ],
)
def test_via_host_port_transport(
    impl: SimpleNamespace, via: str, host: str, port: int | None, transport: str
) -> None:
    msg = one_header(impl, f"Via: {via};branch=z9hG4bKabc")
    assert msg.via_host == host
    assert msg.via_port == port
    assert msg.via_transport == transport
    assert msg.via_branch == "z9hG4bKabc"


def test_via_without_branch(impl: SimpleNamespace) -> None:
    msg = one_header(impl, "Via: SIP/2.0/UDP 192.0.2.1;received=192.0.2.9")
    assert msg.via_branch is None
    assert msg.via_host == "192.0.2.1"


@pytest.mark.parametrize(
    ("params", "rport"),
    [
        ("", None),
        (";rport", 0),
        (";rport;branch=z9hG4bK1", 0),
        (";rport=5066", 5066),
        (";RPORT=1", 1),
        (";branch=z9hG4bK1;rport=65535", 65535),
        (";received=192.0.2.4;rport=0", 0),
    ],
)
def test_via_rport(impl: SimpleNamespace, params: str, rport: int | None) -> None:
    msg = one_header(impl, f"Via: SIP/2.0/UDP 10.0.0.1:5060{params}")
    assert msg.via_rport == rport


@pytest.mark.parametrize("params", [";rport=abc", ";rport=65536", ";rport=-1"])
def test_via_rport_invalid(impl: SimpleNamespace, params: str) -> None:
    msg = one_header(impl, f"Via: SIP/2.0/UDP 10.0.0.1{params}")
    with pytest.raises(SipParseError) as ei:
        msg.via_rport  # noqa: B018
    assert ei.value.status_hint == 400


@pytest.mark.parametrize(
    "via",
    [
        "garbage",
        "SIP/2.0/UDP",
        "SIP/2.0 UDP host.example.com",
        "SIP/2.0/UDP host.example.com:99999",
        "SIP/2.0/UDP host.example.com:",
        "SIP/2.0/UDP host.example.com;;branch=z9hG4bK1",
        "SIP/2.0/UDP [2001:db8::1",
        "SIP/2.0/UDP host.example.com;branch=z9hG4bK1;branch=z9hG4bK2",
    ],
)
def test_malformed_via_raises_from_accessors(impl: SimpleNamespace, via: str) -> None:
    msg = one_header(impl, f"Via: {via}")
    for name in ("via_host", "via_branch", "via_port", "via_transport"):
        with pytest.raises(SipParseError) as ei:
            getattr(msg, name)
        assert ei.value.status_hint == 400
    with pytest.raises(SipParseError):
        msg.vias()


@pytest.mark.parametrize(
    ("line", "tag"),
    [
        ("From: Alice <sip:alice@example.com>;tag=1928301774", "1928301774"),
        ("From: sip:alice@example.com;tag=abc", "abc"),  # addr-spec: ;tag is a header parameter
        ("From: <sip:alice@example.com;tag=inuri>", None),  # inside <>: a URI parameter
        ('From: "A;tag=x" <sip:alice@example.com> ; TAG = up', "up"),
        ("f: <sip:alice@example.com>;tag=compact", "compact"),
        ("From: <sip:alice@example.com>", None),
    ],
)
def test_from_tag(impl: SimpleNamespace, line: str, tag: str | None) -> None:
    msg = one_header(impl, line)
    assert msg.from_tag == tag
    assert msg.from_addr().tag == tag


def test_to_tag(impl: SimpleNamespace) -> None:
    assert one_header(impl, "To: <sip:bob@example.com>;tag=a6c85cf").to_tag == "a6c85cf"
    assert one_header(impl, "t: sip:bob@example.com;tag=x1").to_tag == "x1"
    assert one_header(impl, "To: Bob <sip:bob@example.com>").to_tag is None


def test_malformed_from_raises(impl: SimpleNamespace) -> None:
    msg = one_header(impl, "From: Bell, Alexander <sip:a.g.bell@example.com>;tag=43")
    with pytest.raises(SipParseError) as ei:
        msg.from_tag  # noqa: B018
    assert ei.value.status_hint == 400
    with pytest.raises(SipParseError):
        msg.from_addr()


@pytest.mark.parametrize(
    ("value", "event"),
    [
        ("presence", "presence"),
        ("presence;id=1", "presence"),
        ("presence.winfo", "presence.winfo"),
        ("dialog ; id=77", "dialog"),
        ("Presence", "Presence"),
    ],
)
def test_event(impl: SimpleNamespace, value: str, event: str) -> None:
    assert one_header(impl, f"Event: {value}").event == event
    assert one_header(impl, f"o: {value}").event == event


@pytest.mark.parametrize("value", ["", ";id=1", "pres ence", "a,b"])
def test_event_malformed(impl: SimpleNamespace, value: str) -> None:
    msg = one_header(impl, f"Event: {value}")
    with pytest.raises(SipParseError) as ei:
        msg.event  # noqa: B018
    assert ei.value.status_hint == 400


@pytest.mark.parametrize(
    ("value", "uri"),
    [
        ("<sip:alice@pc33.example.com>", "sip:alice@pc33.example.com"),
        ('"Mr. Watson" <sip:watson@worcester.example.com>;q=0.7', "sip:watson@worcester.example.com"),
        ("sip:alice@example.com;expires=3600", "sip:alice@example.com"),
        (
            "<sip:a@example.com;transport=tcp>;expires=60, <sip:b@example.com>",
            "sip:a@example.com;transport=tcp",
        ),
        ("*", "*"),
        ("  *  ", "*"),
    ],
)
def test_contact_uri(impl: SimpleNamespace, value: str, uri: str) -> None:
    assert one_header(impl, f"Contact: {value}").contact_uri == uri
    assert one_header(impl, f"m: {value}").contact_uri == uri


# ================================================================ structured views


def test_vias_view(impl: SimpleNamespace) -> None:
    msg = one_header(
        impl,
        "Via: SIP/2.0/UDP 192.0.2.1:5060 ;received=192.0.2.207;branch=z9hG4bK77asjd, "
        "SIP/2.0/TCP [2001:db8::5]:5070;branch=z9hG4bKv6;rport",
        "v: SIP/2.0/tls proxy.example.com;Branch=z9hG4bKAbC;MADDR=239.255.255.1;ttl=16",
    )
    assert msg.vias() == [
        Via("SIP/2.0", "UDP", "192.0.2.1", 5060, {"received": "192.0.2.207", "branch": "z9hG4bK77asjd"}),
        Via("SIP/2.0", "TCP", "[2001:db8::5]", 5070, {"branch": "z9hG4bKv6", "rport": None}),
        Via(
            "SIP/2.0",
            "TLS",
            "proxy.example.com",
            None,
            {"branch": "z9hG4bKAbC", "maddr": "239.255.255.1", "ttl": "16"},
        ),
    ]
    # parameter order is kept
    assert list(msg.vias()[0].params) == ["received", "branch"]
    assert msg.vias()[2].branch == "z9hG4bKAbC"


def test_from_to_views(impl: SimpleNamespace) -> None:
    msg = one_header(
        impl,
        'From: "Alice \\"Al\\" Liddell" <sips:alice@example.com>;tag=88sja8x;x-extra',
        "To: Bob Smith <sip:bob@example.com>",
    )
    assert msg.from_addr() == NameAddr(
        'Alice "Al" Liddell', "sips:alice@example.com", {"tag": "88sja8x", "x-extra": None}
    )
    assert msg.to_addr() == NameAddr("Bob Smith", "sip:bob@example.com", {})


def test_contacts_view(impl: SimpleNamespace) -> None:
    msg = one_header(
        impl,
        'Contact: "Mr. Watson" <sip:watson@worcester.example.com>;q=0.7; expires=3600,',
        '  "Mr. Watson" <mailto:watson@example.com> ;q=0.1',
        "m: sip:alice@192.0.2.4;expires=60",
    )
    assert msg.contacts() == [
        NameAddr("Mr. Watson", "sip:watson@worcester.example.com", {"q": "0.7", "expires": "3600"}),
        NameAddr("Mr. Watson", "mailto:watson@example.com", {"q": "0.1"}),
        NameAddr(None, "sip:alice@192.0.2.4", {"expires": "60"}),
    ]


def test_contact_wildcard_view(impl: SimpleNamespace) -> None:
    msg = one_header(impl, "Contact: *", "Expires: 0")
    assert msg.contacts() == [NameAddr(None, "*", {})]
    assert msg.contact_uri == "*"


def test_structured_views_are_named_tuples(impl: SimpleNamespace) -> None:
    msg = parse(impl, request())
    assert type(msg.vias()[0]) is Via
    assert type(msg.from_addr()) is NameAddr
    assert type(msg.contacts()[0]) is NameAddr
    assert type(impl.sipmsg.parse_uri("sip:a@example.com")) is SipURI


def test_malformed_contact_raises(impl: SimpleNamespace) -> None:
    msg = one_header(impl, "Contact: <sip:a@example.com")
    with pytest.raises(SipParseError) as ei:
        msg.contacts()
    assert ei.value.status_hint == 400
    with pytest.raises(SipParseError):
        msg.contact_uri  # noqa: B018


# ================================================================ parse_uri


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sip:alice@atlanta.com", SipURI("sip", "alice", None, "atlanta.com", None, {}, (), None)),
        (
            "sip:alice:secretword@atlanta.com;transport=tcp",
            SipURI("sip", "alice", "secretword", "atlanta.com", None, {"transport": "tcp"}, (), None),
        ),
        (
            "sips:alice@atlanta.com?subject=project%20x&priority=urgent",
            SipURI(
                "sips",
                "alice",
                None,
                "atlanta.com",
                None,
                {},
                (("subject", "project%20x"), ("priority", "urgent")),
                None,
            ),
        ),
        (
            "sip:+1-212-555-1212:1234@gateway.com;user=phone",
            SipURI("sip", "+1-212-555-1212", "1234", "gateway.com", None, {"user": "phone"}, (), None),
        ),
        ("sips:1212@gateway.com", SipURI("sips", "1212", None, "gateway.com", None, {}, (), None)),
        ("sip:alice@192.0.2.4", SipURI("sip", "alice", None, "192.0.2.4", None, {}, (), None)),
        (
            "sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com",
            SipURI(
                "sip",
                None,
                None,
                "atlanta.com",
                None,
                {"method": "REGISTER"},
                (("to", "alice%40atlanta.com"),),
                None,
            ),
        ),
        (
            "sip:alice;day=tuesday@atlanta.com",
            SipURI("sip", "alice;day=tuesday", None, "atlanta.com", None, {}, (), None),
        ),
        ("sip:example.com:5060", SipURI("sip", None, None, "example.com", 5060, {}, (), None)),
        ("sip:[2001:db8::10]:5070", SipURI("sip", None, None, "[2001:db8::10]", 5070, {}, (), None)),
        (
            "sip:bob@[2001:db8::10];transport=udp",
            SipURI("sip", "bob", None, "[2001:db8::10]", None, {"transport": "udp"}, (), None),
        ),
        ("SIP:Alice@Example.COM", SipURI("sip", "Alice", None, "Example.COM", None, {}, (), None)),
        (
            "sip:%61lice@atlanta.com;Transport=TCP;lr;maddr=239.255.255.1;ttl=15",
            SipURI(
                "sip",
                "%61lice",
                None,
                "atlanta.com",
                None,
                {"transport": "TCP", "lr": None, "maddr": "239.255.255.1", "ttl": "15"},
                (),
                None,
            ),
        ),
        ("sip:alice@example.com:65535", SipURI("sip", "alice", None, "example.com", 65535, {}, (), None)),
        ("sip:a%20b@example.com", SipURI("sip", "a%20b", None, "example.com", None, {}, (), None)),
    ],
)
def test_parse_sip_uri(impl: SimpleNamespace, text: str, expected: SipURI) -> None:
    got = impl.sipmsg.parse_uri(text)
    assert got == expected
    assert list(got.params) == list(expected.params)


@pytest.mark.parametrize(
    ("text", "scheme", "opaque"),
    [
        ("tel:+1-201-555-0123", "tel", "+1-201-555-0123"),
        ("tel:7042;phone-context=example.com", "tel", "7042;phone-context=example.com"),
        ("TEL:+358-555-1234567", "tel", "+358-555-1234567"),
        ("pres:alice@example.com", "pres", "alice@example.com"),
        ("im:alice@example.com", "im", "alice@example.com"),
        ("mailto:watson@bell-telephone.com", "mailto", "watson@bell-telephone.com"),
        ("http://www.example.com/a?b=c", "http", "//www.example.com/a?b=c"),
        ("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", "urn", "uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"),
    ],
)
def test_parse_other_schemes(impl: SimpleNamespace, text: str, scheme: str, opaque: str) -> None:
    assert impl.sipmsg.parse_uri(text) == SipURI(scheme, None, None, None, None, {}, (), opaque)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "alice@atlanta.com",
        "sip",
        "sip:",
        "tel:",
        "1sip:a@b",
        "sip:alice@",
        "sip:@example.com",
        "sip:alice@example.com:65536",
        "sip:alice@example.com:99999999",
        "sip:alice@example.com:",
        "sip:alice@example.com:50a",
        "sip:alice@[2001:db8::1",
        "sip:alice@[]",
        "sip:alice@[zz::1]",
        "sip:alice@exa mple.com",
        "sip:alice@exa_mple.com",
        "sip:a@example.com;transport=udp;transport=tcp",
        "sip:a@example.com;Transport=udp;TRANSPORT=tcp",
        "sip:a@example.com;lr;lr",
        "sip:a@example.com;;lr",
        "sip:a@example.com?noequals",
        "sip:al<ce@example.com",
        "sip:alice@example.com%zz",
        "sip:a%4@example.com",
        "tel:+1 555",
        "mailto:<a@b>",
    ],
)
def test_parse_uri_errors(impl: SimpleNamespace, text: str) -> None:
    with pytest.raises(SipParseError) as ei:
        impl.sipmsg.parse_uri(text)
    assert ei.value.status_hint == 400


def test_parse_uri_error_messages_name_the_problem(impl: SimpleNamespace) -> None:
    m = impl.sipmsg
    with pytest.raises(SipParseError, match="port"):
        m.parse_uri("sip:alice@example.com:65536")
    with pytest.raises(SipParseError, match="transport"):
        m.parse_uri("sip:a@example.com;transport=udp;transport=tcp")
    with pytest.raises(SipParseError, match="IPv6"):
        m.parse_uri("sip:alice@[2001:db8::1")
    with pytest.raises(SipParseError, match="scheme"):
        m.parse_uri("alice@atlanta.com")


@pytest.mark.parametrize(
    "host", ["exa..mple.com", ".example.com", "-example.com", "example-.com", "a.-b.com"]
)
def test_parse_uri_rejects_bad_hostnames(impl: SimpleNamespace, host: str) -> None:
    # RFC 3261 25.1: hostname = *( domainlabel "." ) toplabel [ "." ];
    # domainlabel = alphanum / alphanum *( alphanum / "-" ) alphanum: no empty
    # label, no label that starts or ends with "-". The stub: "bad host" raises.
    with pytest.raises(SipParseError) as ei:
        impl.sipmsg.parse_uri(f"sip:alice@{host}")
    assert ei.value.status_hint == 400


# RFC 3261 section 19.1.4: "The URIs within each of the following sets are equivalent"
RFC3261_EQUIVALENT = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    (
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
    ),
    (
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
    ),
]
# "The URIs within each of the following sets are not equivalent"
RFC3261_NOT_EQUIVALENT = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),  # different usernames
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),  # can resolve to different ports
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),  # can resolve to different transports
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),  # different port and transports
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),  # different header component
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),  # even if that is what it resolves to
    # "equality is not transitive": each equals sip:carol@chicago.com, not each other
    ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
]


@pytest.mark.parametrize(("a", "b"), RFC3261_EQUIVALENT)
def test_rfc3261_equivalent_uris(impl: SimpleNamespace, a: str, b: str) -> None:
    ua, ub = impl.sipmsg.parse_uri(a), impl.sipmsg.parse_uri(b)
    assert ua.equivalent(ub)
    assert ub.equivalent(ua)


@pytest.mark.parametrize(("a", "b"), RFC3261_NOT_EQUIVALENT)
def test_rfc3261_not_equivalent_uris(impl: SimpleNamespace, a: str, b: str) -> None:
    ua, ub = impl.sipmsg.parse_uri(a), impl.sipmsg.parse_uri(b)
    assert not ua.equivalent(ub)
    assert not ub.equivalent(ua)


def test_scheme_differs_not_equivalent(impl: SimpleNamespace) -> None:
    m = impl.sipmsg
    assert not m.parse_uri("sip:alice@atlanta.com").equivalent(m.parse_uri("sips:alice@atlanta.com"))
    assert m.parse_uri("tel:+1-201-555-0123").equivalent(m.parse_uri("TEL:+1-201-555-0123"))


# ================================================================ parse_via / parse_name_addr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "SIP/2.0/UDP erlang.bell-telephone.com:5060;branch=z9hG4bK87asdks7",
            Via("SIP/2.0", "UDP", "erlang.bell-telephone.com", 5060, {"branch": "z9hG4bK87asdks7"}),
        ),
        (
            "SIP/2.0/UDP 192.0.2.1:5060 ;received=192.0.2.207 ;branch=z9hG4bK77asjd",
            Via("SIP/2.0", "UDP", "192.0.2.1", 5060, {"received": "192.0.2.207", "branch": "z9hG4bK77asjd"}),
        ),
        (
            # RFC 3261 20.42, white space everywhere the grammar allows it
            "SIP / 2.0 / UDP first.example.com: 4000;ttl=16;maddr=224.2.0.1 ;branch=z9hG4bKa7c6a8dlze.1",
            Via(
                "SIP/2.0",
                "UDP",
                "first.example.com",
                4000,
                {"ttl": "16", "maddr": "224.2.0.1", "branch": "z9hG4bKa7c6a8dlze.1"},
            ),
        ),
        (
            "SIP/2.0/TCP [2001:db8::9:1]:5061;branch=z9hG4bKv6;received=[2001:db8::9:255]",
            Via(
                "SIP/2.0",
                "TCP",
                "[2001:db8::9:1]",
                5061,
                {"branch": "z9hG4bKv6", "received": "[2001:db8::9:255]"},
            ),
        ),
        (
            'SIP/2.0/udp h.example.com;rport;x-q="a b;c"',
            Via("SIP/2.0", "UDP", "h.example.com", None, {"rport": None, "x-q": '"a b;c"'}),
        ),
        (
            "SIP/2.0/UDP h.example.com ; branch = z9hG4bKsp",
            Via("SIP/2.0", "UDP", "h.example.com", None, {"branch": "z9hG4bKsp"}),
        ),
        (
            "sip/2.0/UDP h.example.com",
            Via("sip/2.0", "UDP", "h.example.com", None, {}),
        ),
    ],
)
def test_parse_via(impl: SimpleNamespace, text: str, expected: Via) -> None:
    got = impl.sipmsg.parse_via(text)
    assert got == expected
    assert list(got.params) == list(expected.params)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP ",
        "SIP/2.0 UDP h.example.com",
        "SIP/2.0/UDPh.example.com",
        "SIP/2.0/UDP h.example.com:65536",
        "SIP/2.0/UDP h.example.com;",
        "SIP/2.0/UDP h.example.com;=x",
        "SIP/2.0/UDP h.example.com;branch=",
        "SIP/2.0/UDP h.example.com x",
        'SIP/2.0/UDP h.example.com;x="unterminated',
        "SIP/2.0/UDP h.example.com;branch=a;Branch=b",
    ],
)
def test_parse_via_errors(impl: SimpleNamespace, text: str) -> None:
    with pytest.raises(SipParseError) as ei:
        impl.sipmsg.parse_via(text)
    assert ei.value.status_hint == 400


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '"Mr. Watson" <mailto:watson@bell-telephone.com>;q=0.1',
            NameAddr("Mr. Watson", "mailto:watson@bell-telephone.com", {"q": "0.1"}),
        ),
        ("<sip:carol@chicago.com>", NameAddr(None, "sip:carol@chicago.com", {})),
        ("sip:carol@chicago.com;tag=887s", NameAddr(None, "sip:carol@chicago.com", {"tag": "887s"})),
        (
            "Anonymous <sip:c8oqz84zk7z@privacy.org>;tag=hyh8",
            NameAddr("Anonymous", "sip:c8oqz84zk7z@privacy.org", {"tag": "hyh8"}),
        ),
        (
            "A. G. Bell <sip:agb@bell-telephone.com> ;tag=a48s",
            NameAddr("A. G. Bell", "sip:agb@bell-telephone.com", {"tag": "a48s"}),
        ),
        ('"" <sip:a@example.com>', NameAddr("", "sip:a@example.com", {})),
        ('"\\\\back\\"slash" <sip:a@example.com>', NameAddr('\\back"slash', "sip:a@example.com", {})),
        ("  <sip:a@example.com;lr>  ", NameAddr(None, "sip:a@example.com;lr", {})),
        ("*", NameAddr(None, "*", {})),
        ("<tel:+1-201-555-0123>;Tag=ABC", NameAddr(None, "tel:+1-201-555-0123", {"tag": "ABC"})),
        (
            '<sip:a@example.com>;+sip.instance="<urn:uuid:1>";reg-id=1',
            NameAddr(None, "sip:a@example.com", {"+sip.instance": '"<urn:uuid:1>"', "reg-id": "1"}),
        ),
        ('"caf\u00e9" <sip:a@example.com>', NameAddr("caf\u00e9", "sip:a@example.com", {})),
    ],
)
def test_parse_name_addr(impl: SimpleNamespace, text: str, expected: NameAddr) -> None:
    got = impl.sipmsg.parse_name_addr(text)
    assert got == expected
    assert got.tag == expected.params.get("tag")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "<>",
        "<sip:a@example.com",
        '"unterminated <sip:a@example.com>',
        '"Quoted" sip:a@example.com',
        "Bell, Alexander <sip:a@example.com>",
        "sip:a@example.com?subject=x",
        "sip:a@example.com, sip:b@example.com",
        "no-scheme-here",
        "<no-scheme>",
        "<sip:a@example.com>;",
        "<sip:a@example.com> junk",
        "<sip:a@example.com>;tag=1;tag=2",
    ],
)
def test_parse_name_addr_errors(impl: SimpleNamespace, text: str) -> None:
    with pytest.raises(SipParseError) as ei:
        impl.sipmsg.parse_name_addr(text)
    assert ei.value.status_hint == 400


# ================================================================ limits


def _sized_header_block(total: int) -> bytes:
    """A request whose start line + header block (CRLFs included) is exactly ``total`` octets."""
    start = "OPTIONS sip:a@example.com SIP/2.0"
    fixed = len(start) + 2 + len("X-Pad: ") + 2 + 2
    return raw(start, "X-Pad: " + "a" * (total - fixed))


def test_max_header_bytes_boundary(impl: SimpleNamespace) -> None:
    data = _sized_header_block(300)
    assert len(data) == 300
    msg = parse(impl, data, max_header_bytes=300)
    assert len(msg.get("X-Pad")) == 300 - 46
    err = parse_error(impl, data, max_header_bytes=299)
    assert err.status_hint == 513
    assert "299" in str(err)
    assert "header" in str(err)


def test_max_header_bytes_counts_the_header_block_not_the_body(impl: SimpleNamespace) -> None:
    data = _sized_header_block(200) + b"b" * 1000
    msg = parse(impl, data, max_header_bytes=200)
    assert msg.body == b"b" * 1000


def test_default_max_header_bytes(impl: SimpleNamespace) -> None:
    ok = _sized_header_block(16384)
    assert parse(impl, ok).get("X-Pad") is not None
    err = parse_error(impl, _sized_header_block(16385))
    assert err.status_hint == 513
    assert "16384" in str(err)


def test_max_header_bytes_without_empty_line_is_still_513(impl: SimpleNamespace) -> None:
    data = b"OPTIONS sip:a@example.com SIP/2.0\r\nX-Pad: " + b"a" * 500
    err = parse_error(impl, data, max_header_bytes=100)
    assert err.status_hint == 513
    assert "100" in str(err)


def test_max_headers(impl: SimpleNamespace) -> None:
    lines = [f"X-H{i}: {i}" for i in range(10)]
    data = raw("OPTIONS sip:a@example.com SIP/2.0", *lines)
    assert len(parse(impl, data, max_headers=10).headers()) == 10
    err = parse_error(impl, data, max_headers=9)
    assert err.status_hint == 513
    assert "9" in str(err)
    assert "header" in str(err)


def test_default_max_headers(impl: SimpleNamespace) -> None:
    start = "OPTIONS sip:a@example.com SIP/2.0"
    assert len(parse(impl, raw(start, *(f"X: {i}" for i in range(256)))).headers()) == 256
    err = parse_error(impl, raw(start, *(f"X: {i}" for i in range(257))))
    assert err.status_hint == 513
    assert "256" in str(err)


def test_max_body_bytes(impl: SimpleNamespace) -> None:
    data = request("MESSAGE", body=b"z" * 100)
    assert parse(impl, data, max_body_bytes=100).body == b"z" * 100
    err = parse_error(impl, data, max_body_bytes=99)
    assert err.status_hint == 413
    assert "99" in str(err)
    assert "Content-Length" in str(err) or "body" in str(err)


def test_max_body_bytes_checks_content_length_not_octets(impl: SimpleNamespace) -> None:
    # A datagram announcing more than the limit is refused even if it is short.
    data = request("MESSAGE", body=b"z", content_length=(1 << 20) + 1)
    err = parse_error(impl, data)
    assert err.status_hint == 413
    assert str(1 << 20) in str(err)
    assert parse(impl, request("MESSAGE", body=b"z", content_length=1 << 20)).content_length == 1 << 20


# ================================================================ build_response


def _response_of(impl: SimpleNamespace, req: bytes, *args: Any, **kw: Any) -> tuple[bytes, Any]:
    m = impl.sipmsg
    out = m.build_response(m.parse_message(req), *args, **kw)
    assert type(out) is bytes
    return out, m.parse_message(out)


def test_build_response_copies_the_dialog_headers(impl: SimpleNamespace) -> None:
    req = request(
        add=[
            (
                "Via",
                "SIP/2.0/TCP proxy.example.com;branch=z9hG4bKp1, "
                "SIP/2.0/UDP edge.example.com;branch=z9hG4bKe",
            ),
            ("Subject", "not copied"),
            ("Record-Route", "<sip:proxy.example.com;lr>"),
        ]
    )
    out, resp = _response_of(impl, req, 200, "OK")
    assert out.startswith(b"SIP/2.0 200 OK\r\n")
    assert out.endswith(b"\r\n\r\n")
    assert resp.status == 200 and resp.reason == "OK"
    assert resp.get_all("Via") == [
        TOP_VIA,
        "SIP/2.0/TCP proxy.example.com;branch=z9hG4bKp1",
        "SIP/2.0/UDP edge.example.com;branch=z9hG4bKe",
    ]
    assert resp.count("Via") == 2  # the lines are copied as lines
    assert resp.get("From") == "Alice <sip:alice@example.com>;tag=1928301774"
    assert resp.get("To") == "Bob <sip:bob@example.com>"
    assert resp.call_id == "a84b4c76e66710@pc33.example.com"
    assert resp.get("CSeq") == "314159 INVITE"
    for absent in ("Subject", "Contact", "Max-Forwards", "Record-Route"):
        assert resp.get(absent) is None, absent
    assert resp.content_length == 0
    assert resp.count("Content-Length") == 1
    assert resp.body == b""
    # copied as written, byte for byte
    for line in (
        b"Via: " + TOP_VIA.encode(),
        b"Call-ID: a84b4c76e66710@pc33.example.com",
        b"CSeq: 314159 INVITE",
    ):
        assert line + b"\r\n" in out


def test_build_response_copies_compact_and_odd_spacing_as_written(impl: SimpleNamespace) -> None:
    req = raw(
        "OPTIONS sip:a@example.com SIP/2.0",
        "v: SIP/2.0/UDP h.example.com;branch=z9hG4bKc",
        "f:   <sip:x@example.com>;tag=9",
        "t: <sip:a@example.com>",
        "i: cid-1",
        "CSeq:  5   OPTIONS",
    )
    out, resp = _response_of(impl, req, 404, "Not Found")
    assert resp.via_branch == "z9hG4bKc"
    assert resp.from_tag == "9"
    assert resp.call_id == "cid-1"
    assert (resp.cseq_num, resp.cseq_method) == (5, "OPTIONS")
    assert b"CSeq:  5   OPTIONS\r\n" in out


def test_build_response_adds_to_tag_when_asked(impl: SimpleNamespace) -> None:
    out, resp = _response_of(impl, request(), 180, "Ringing", to_tag="a6c85cf")
    assert resp.to_tag == "a6c85cf"
    assert resp.get("To") == "Bob <sip:bob@example.com>;tag=a6c85cf"
    assert resp.to_addr() == NameAddr("Bob", "sip:bob@example.com", {"tag": "a6c85cf"})


def test_build_response_without_to_tag_adds_none(impl: SimpleNamespace) -> None:
    _, resp = _response_of(impl, request(), 100, "Trying")
    assert resp.to_tag is None
    assert resp.get("To") == "Bob <sip:bob@example.com>"


def test_build_response_keeps_an_existing_to_tag(impl: SimpleNamespace) -> None:
    req = request(hdr={"To": "Bob <sip:bob@example.com>;tag=existing"})
    out, resp = _response_of(impl, req, 200, "OK", to_tag="new")
    assert resp.to_tag == "existing"
    assert b"new" not in out


def test_build_response_to_tag_on_addr_spec_to(impl: SimpleNamespace) -> None:
    req = request(hdr={"To": "sip:bob@example.com"})
    _, resp = _response_of(impl, req, 200, "OK", to_tag="t1")
    assert resp.to_addr() == NameAddr(None, "sip:bob@example.com", {"tag": "t1"})


def test_build_response_extra_headers_as_bytes(impl: SimpleNamespace) -> None:
    extra = b"Server: simplefast\r\nAllow: INVITE, ACK, BYE\r\n"
    out, resp = _response_of(impl, request(), 200, "OK", extra_headers=extra)
    assert extra in out
    assert resp.get("Server") == "simplefast"
    assert resp.get_all("Allow") == ["INVITE", "ACK", "BYE"]
    assert resp.content_length == 0


def test_build_response_extra_headers_as_pairs(impl: SimpleNamespace) -> None:
    pairs = [("Server", "simplefast"), ("Warning", '399 example.com "odd"'), ("Server", "second")]
    out, resp = _response_of(impl, request(), 488, "Not Acceptable Here", extra_headers=pairs)
    assert resp.get_all("Server") == ["simplefast", "second"]
    assert resp.get("Warning") == '399 example.com "odd"'
    assert b"Server: simplefast\r\n" in out
    assert (resp.status, resp.reason) == (488, "Not Acceptable Here")


def test_build_response_body_sets_content_length(impl: SimpleNamespace) -> None:
    body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"
    out, resp = _response_of(
        impl, request(), 200, "OK", extra_headers=[("Content-Type", "application/sdp")], body=body
    )
    assert resp.content_length == len(body)
    assert resp.body == body
    assert out.endswith(b"\r\n\r\n" + body)
    assert resp.get("Content-Type") == "application/sdp"


def test_build_response_ignores_request_content_length(impl: SimpleNamespace) -> None:
    _, resp = _response_of(impl, request("MESSAGE", body=b"hello"), 200, "OK")
    assert resp.count("Content-Length") == 1
    assert resp.content_length == 0


def test_build_response_empty_reason(impl: SimpleNamespace) -> None:
    out, resp = _response_of(impl, request(), 100, "")
    assert out.startswith(b"SIP/2.0 100 \r\n")
    assert resp.reason == ""


def test_build_response_utf8_reason(impl: SimpleNamespace) -> None:
    out, resp = _response_of(impl, request(), 200, "Très bien")
    assert out.startswith("SIP/2.0 200 Très bien\r\n".encode())
    assert resp.reason == "Très bien"


@pytest.mark.parametrize("reason", ["OK\r\nX-Injected: 1", "OK\n", "O\rK"])
def test_build_response_rejects_line_breaks_in_reason(impl: SimpleNamespace, reason: str) -> None:
    m = impl.sipmsg
    with pytest.raises(LocalProtocolError):
        m.build_response(m.parse_message(request()), 200, reason)


@pytest.mark.parametrize(
    "pair",
    [
        ("X-Ok", "a\r\nX-Injected: 1"),
        ("X-Ok", "a\nb"),
        ("X-Ok", "a\rb"),
        ("X-Bad\r\nX-Injected", "1"),
        ("X-Bad\n", "1"),
    ],
)
def test_build_response_rejects_line_breaks_in_header_pairs(
    impl: SimpleNamespace, pair: tuple[str, str]
) -> None:
    m = impl.sipmsg
    with pytest.raises(LocalProtocolError):
        m.build_response(m.parse_message(request()), 200, "OK", extra_headers=[pair])


@pytest.mark.parametrize("name", ["", "X Bad", "X<Bad>"])
def test_build_response_rejects_non_token_header_names(impl: SimpleNamespace, name: str) -> None:
    # field-name is a token (RFC 3261 25.1): ": 1" or "X Bad: 1" is not a
    # header line; sending it is our bug (LocalProtocolError).
    m = impl.sipmsg
    with pytest.raises(LocalProtocolError):
        m.build_response(m.parse_message(request()), 200, "OK", extra_headers=[(name, "1")])


@pytest.mark.parametrize("to_tag", ["a\r\nX-Injected: 1", "a\nb", "a b", ""])
def test_build_response_rejects_a_bad_to_tag(impl: SimpleNamespace, to_tag: str) -> None:
    # tag-param = "tag" EQUAL token (RFC 3261 25.1); a CR/LF in it injects a header line.
    m = impl.sipmsg
    with pytest.raises(LocalProtocolError):
        m.build_response(m.parse_message(request()), 200, "OK", to_tag=to_tag)


@pytest.mark.parametrize(
    "kw",
    [{"received": "192.0.2.4\r\nX-Injected: 1"}, {"received": "192.0.2.4\n"}, {"received": "a b"}],
)
def test_build_response_rejects_a_bad_received(impl: SimpleNamespace, kw: dict[str, Any]) -> None:
    # via-received = "received" EQUAL (IPv4address / IPv6address) (RFC 3261 25.1)
    m = impl.sipmsg
    with pytest.raises(LocalProtocolError):
        m.build_response(m.parse_message(request()), 200, "OK", **kw)


def test_build_response_rejects_a_bad_rport(impl: SimpleNamespace) -> None:
    # response-port = "rport" [EQUAL 1*DIGIT], a port (RFC 3581 section 3)
    m = impl.sipmsg
    req = m.parse_message(request(hdr={"Via": "SIP/2.0/UDP 10.1.1.1:4540;rport;branch=z9hG4bKr"}))
    with pytest.raises(LocalProtocolError):
        m.build_response(req, 200, "OK", received="192.0.2.1", rport=70000)


@pytest.mark.parametrize("wrap", [bytearray, memoryview])
def test_build_response_body_types_twins_agree(
    ref: SimpleNamespace, ext: SimpleNamespace, wrap: type
) -> None:
    # The twins must agree on every result and error (stub header). The stub
    # types body as bytes; whichever way it goes, both twins must go it.
    def outcome(mod: Any) -> object:
        req = mod.parse_message(request())
        try:
            return mod.build_response(req, 200, "OK", body=wrap(b"ab"))
        except TypeError:
            return TypeError

    assert outcome(ref.sipmsg) == outcome(ext.sipmsg)


def test_build_response_received_when_sent_by_differs(impl: SimpleNamespace) -> None:
    # RFC 3261 18.2.1: received= is added when sent-by is not the source address.
    req = request(add=[("Via", "SIP/2.0/UDP second.example.com;branch=z9hG4bK2")])
    _, resp = _response_of(impl, req, 200, "OK", received="192.0.2.4", rport=5060)
    top, second = resp.vias()
    assert top == Via(
        "SIP/2.0", "UDP", "pc33.example.com", 5060, {"branch": "z9hG4bK776asdhds", "received": "192.0.2.4"}
    )
    assert "rport" not in top.params  # rport was not asked for: not added
    assert second == Via("SIP/2.0", "UDP", "second.example.com", None, {"branch": "z9hG4bK2"})


def test_build_response_no_received_when_sent_by_matches(impl: SimpleNamespace) -> None:
    via = "SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKsame"
    req = request(hdr={"Via": via})
    out, resp = _response_of(impl, req, 200, "OK", received="192.0.2.4", rport=5060)
    assert resp.vias()[0].params == {"branch": "z9hG4bKsame"}
    assert b"Via: " + via.encode() + b"\r\n" in out


def test_build_response_rport_filled_and_received_always_added(impl: SimpleNamespace) -> None:
    # RFC 3581 4: with an empty rport the server sets it to the source port and
    # MUST add received, even when it equals sent-by.
    via = "SIP/2.0/UDP 192.0.2.4:5060;rport;branch=z9hG4bKnat"
    _, resp = _response_of(impl, request(hdr={"Via": via}), 200, "OK", received="192.0.2.4", rport=61234)
    top = resp.vias()[0]
    assert top.host == "192.0.2.4"
    assert top.port == 5060
    assert top.params["rport"] == "61234"
    assert top.params["received"] == "192.0.2.4"
    assert top.branch == "z9hG4bKnat"
    assert resp.via_rport == 61234


def test_build_response_rport_behind_nat(impl: SimpleNamespace) -> None:
    # RFC 3581 section 4 example: sent-by 10.1.1.1:4540, source 192.0.2.1:9988
    via = "SIP/2.0/UDP 10.1.1.1:4540;rport;branch=z9hG4bKkjshdyff"
    _, resp = _response_of(impl, request(hdr={"Via": via}), 200, "OK", received="192.0.2.1", rport=9988)
    top = resp.vias()[0]
    assert top.params == {"rport": "9988", "branch": "z9hG4bKkjshdyff", "received": "192.0.2.1"}
    assert (top.host, top.port) == ("10.1.1.1", 4540)


def test_build_response_keeps_a_valued_rport(impl: SimpleNamespace) -> None:
    via = "SIP/2.0/UDP 10.1.1.1:4540;rport=4540;branch=z9hG4bKv"
    _, resp = _response_of(impl, request(hdr={"Via": via}), 200, "OK", received="192.0.2.1", rport=9988)
    top = resp.vias()[0]
    assert top.params["rport"] == "4540"
    assert top.params["received"] == "192.0.2.1"


def test_build_response_ipv6_sent_by_equal_to_source(impl: SimpleNamespace) -> None:
    via = "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK6"
    _, resp = _response_of(impl, request(hdr={"Via": via}), 200, "OK", received="2001:db8::1", rport=5060)
    assert resp.vias()[0].params == {"branch": "z9hG4bK6"}


def test_build_response_without_source_leaves_via_alone(impl: SimpleNamespace) -> None:
    via = "SIP/2.0/UDP 10.1.1.1:4540;rport;branch=z9hG4bKalone"
    out, resp = _response_of(impl, request(hdr={"Via": via}), 200, "OK")
    assert b"Via: " + via.encode() + b"\r\n" in out
    assert resp.vias()[0].params == {"rport": None, "branch": "z9hG4bKalone"}


# ---------------------------------------------------------------- Via stamping (byte splice)


def _top_via_line(impl: SimpleNamespace, via_lines: Sequence[str], **kw: Any) -> bytes:
    """The first Via line of build_response's output for a request with these Via lines."""
    lines = [f"Via: {v}" if ":" not in v.split(" ", 1)[0] else v for v in via_lines]
    req = raw(
        "OPTIONS sip:b@example.com SIP/2.0",
        *lines,
        "From: <sip:a@example.com>;tag=1",
        "To: <sip:b@example.com>",
        "Call-ID: c1",
        "CSeq: 1 OPTIONS",
    )
    m = impl.sipmsg
    out = m.build_response(m.parse_message(req), 200, "OK", **kw)
    return out.split(b"\r\n")[1]


@pytest.mark.parametrize(
    ("via", "kw", "want"),
    [
        # RFC 3581 section 4: rport filled in place, received appended after the last octet
        (
            "SIP/2.0/UDP 10.1.1.1:4540;rport;branch=z9hG4bKx",
            {"received": "192.0.2.1", "rport": 9988},
            "Via: SIP/2.0/UDP 10.1.1.1:4540;rport=9988;branch=z9hG4bKx;received=192.0.2.1",
        ),
        # LWS, parameter case and transport case are kept as written
        (
            "sip / 2.0 / udp  10.1.1.1 : 4540 ; RPort ; Branch = z9hG4bKx ",
            {"received": "192.0.2.1", "rport": 9988},
            "Via: sip / 2.0 / udp  10.1.1.1 : 4540 ; RPort=9988 ; Branch = z9hG4bKx;received=192.0.2.1",
        ),
        # rport last: its value, then received
        (
            "SIP/2.0/UDP h.example.com;branch=z9hG4bKx;rport",
            {"received": "192.0.2.1", "rport": 5060},
            "Via: SIP/2.0/UDP h.example.com;branch=z9hG4bKx;rport=5060;received=192.0.2.1",
        ),
        # several elements on the line: only the first is stamped, the rest kept
        (
            "SIP/2.0/UDP a.example.com;rport , SIP/2.0/TCP b.example.com;rport",
            {"received": "192.0.2.1", "rport": 7},
            "Via: SIP/2.0/UDP a.example.com;rport=7;received=192.0.2.1 , SIP/2.0/TCP b.example.com;rport",
        ),
        # compact form, no space after the colon
        (
            "v:SIP/2.0/UDP a.example.com",
            {"received": "192.0.2.1"},
            "v:SIP/2.0/UDP a.example.com;received=192.0.2.1",
        ),
        # rport given but not asked for: nothing for rport; sent-by equal: no received
        ("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx", {"received": "192.0.2.1", "rport": 1}, None),
        # a valued rport is kept; received still added (sent-by differs)
        (
            "SIP/2.0/UDP 10.0.0.1;rport=4540",
            {"received": "192.0.2.1", "rport": 1},
            "Via: SIP/2.0/UDP 10.0.0.1;rport=4540;received=192.0.2.1",
        ),
        # only rport given: rport filled, no received
        ("SIP/2.0/UDP 10.0.0.1;rport", {"rport": 2}, "Via: SIP/2.0/UDP 10.0.0.1;rport=2"),
        # IPv6: brackets ignored, hex compared without case
        ("SIP/2.0/UDP [2001:DB8::1]:5060;branch=z9hG4bKx", {"received": "2001:db8::1"}, None),
        (
            "SIP/2.0/UDP [2001:db8::1];rport",
            {"received": "2001:db8::9", "rport": 5062},
            "Via: SIP/2.0/UDP [2001:db8::1];rport=5062;received=2001:db8::9",
        ),
        # a received the element carries gets the source address, in place
        (
            "SIP/2.0/UDP 10.0.0.1;received=10.9.9.9;branch=z9hG4bKx",
            {"received": "192.0.2.1"},
            "Via: SIP/2.0/UDP 10.0.0.1;received=192.0.2.1;branch=z9hG4bKx",
        ),
        (
            "SIP/2.0/UDP 10.0.0.1;RECEIVED;rport",
            {"received": "192.0.2.1", "rport": 3},
            "Via: SIP/2.0/UDP 10.0.0.1;RECEIVED=192.0.2.1;rport=3",
        ),
        # a malformed first element is left as written
        ("SIP/2.0/UDP bad host;rport", {"received": "192.0.2.1", "rport": 3}, None),
        ("SIP/2.0/UDP h;rport;rport", {"received": "192.0.2.1", "rport": 3}, None),
    ],
)
def test_build_response_stamps_the_top_via_in_place(
    impl: SimpleNamespace, via: str, kw: dict[str, Any], want: str | None
) -> None:
    line = _top_via_line(impl, [via], **kw)
    written = via if via.startswith("v:") else f"Via: {via}"
    assert line == (written if want is None else want).encode()


def test_build_response_stamps_only_the_first_via_line(impl: SimpleNamespace) -> None:
    req = request(hdr={"Via": "SIP/2.0/UDP 10.0.0.1;rport"}, add=[("Via", "SIP/2.0/UDP 10.0.0.2;rport")])
    out, resp = _response_of(impl, req, 200, "OK", received="192.0.2.1", rport=9)
    assert b"Via: SIP/2.0/UDP 10.0.0.1;rport=9;received=192.0.2.1\r\n" in out
    assert b"Via: SIP/2.0/UDP 10.0.0.2;rport\r\n" in out
    assert resp.via_rport == 9


def test_build_response_stamps_a_folded_via_keeping_the_folds(impl: SimpleNamespace) -> None:
    m = impl.sipmsg
    req = (
        b"OPTIONS sip:b@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP\r\n 10.0.0.1:5060 ;rport\r\n\t;branch=z9hG4bKf ,\r\n SIP/2.0/UDP b.example.com\r\n"
        b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n"
    )
    out = m.build_response(m.parse_message(req), 200, "OK", received="192.0.2.1", rport=4)
    assert (
        b"Via: SIP/2.0/UDP\r\n 10.0.0.1:5060 ;rport=4\r\n\t;branch=z9hG4bKf;received=192.0.2.1 ,\r\n"
        b" SIP/2.0/UDP b.example.com\r\n"
    ) in out
    resp = m.parse_message(out)
    assert resp.vias()[0].params == {"rport": "4", "branch": "z9hG4bKf", "received": "192.0.2.1"}


# ================================================================ forward_request

FWD_VIA = "SIP/2.0/UDP proxy.example.net:5060;branch=z9hG4bKfwd1"
FWD_RR = "<sip:proxy.example.net;lr>"


def _forward(impl: SimpleNamespace, req: bytes, **kw: Any) -> bytes:
    m = impl.sipmsg
    args: dict[str, Any] = {"record_route": FWD_RR, "routes": (), "max_forwards": 69}
    args.update(kw)
    out = m.forward_request(m.parse_message(req), "sip:bob@192.0.2.9:5062", FWD_VIA, **args)
    assert type(out) is bytes
    return out


def test_forward_request_layout(impl: SimpleNamespace) -> None:
    req = request(
        body=b"v=0\r\n",
        add=[("Route", "<sip:proxy.example.net;lr>, <sip:edge.example.org;lr>"), ("Subject", "hi")],
    )
    out = _forward(impl, req, routes=["<sip:edge.example.org;lr>", "<sip:core;lr>"])
    assert out == (
        b"INVITE sip:bob@192.0.2.9:5062 SIP/2.0\r\n"
        b"Via: " + FWD_VIA.encode() + b"\r\n"
        b"Record-Route: <sip:proxy.example.net;lr>\r\n"
        b"Route: <sip:edge.example.org;lr>\r\n"
        b"Route: <sip:core;lr>\r\n"
        b"Max-Forwards: 69\r\n"
        b"Via: " + TOP_VIA.encode() + b"\r\n"
        b"To: Bob <sip:bob@example.com>\r\n"
        b"From: Alice <sip:alice@example.com>;tag=1928301774\r\n"
        b"Call-ID: a84b4c76e66710@pc33.example.com\r\n"
        b"CSeq: 314159 INVITE\r\n"
        b"Contact: <sip:alice@pc33.example.com>\r\n"
        b"Subject: hi\r\n"
        b"Content-Length: 5\r\n\r\nv=0\r\n"
    )
    fwd = impl.sipmsg.parse_message(out)
    assert impl.sipmsg.validate_request(fwd) is None
    assert [v.branch for v in fwd.vias()] == ["z9hG4bKfwd1", "z9hG4bK776asdhds"]


def test_forward_request_without_record_route_and_routes(impl: SimpleNamespace) -> None:
    out = _forward(impl, request("BYE"), record_route=None, max_forwards=0)
    fwd = impl.sipmsg.parse_message(out)
    assert fwd.method == "BYE" and fwd.uri == "sip:bob@192.0.2.9:5062"
    assert fwd.count("Record-Route") == 0 and fwd.count("Route") == 0
    assert fwd.max_forwards == 0 and fwd.count("Max-Forwards") == 1


def test_forward_request_drops_compact_content_length_and_keeps_the_body(impl: SimpleNamespace) -> None:
    req = raw(
        "MESSAGE sip:b@example.com SIP/2.0",
        "v: SIP/2.0/TCP a.example.com;branch=z9hG4bKc",
        "l: 3",
        "max-forwards: 10",
        "ROUTE: <sip:x;lr>",
        body=b"abcTRAILING",
    )
    out = _forward(impl, req)
    assert b"l: 3" not in out and b"max-forwards" not in out and b"ROUTE" not in out
    assert b"v: SIP/2.0/TCP a.example.com;branch=z9hG4bKc\r\n" in out
    assert out.endswith(b"\r\nContent-Length: 3\r\n\r\nabc")


def test_forward_request_keeps_header_octets_as_written(impl: SimpleNamespace) -> None:
    req = raw(
        "INVITE sip:b@example.com SIP/2.0",
        "Via  :  SIP/2.0/UDP a.example.com;branch=z9hG4bKw",
        "X-Odd:\tvalue with \xff octet".encode("latin-1").decode("utf-8", "surrogateescape"),
        "Subject: folded",
        " over two lines",
    )
    out = _forward(impl, req)
    assert b"Via  :  SIP/2.0/UDP a.example.com;branch=z9hG4bKw\r\n" in out
    assert b"X-Odd:\tvalue with \xff octet\r\n" in out
    assert b"Subject: folded\r\n over two lines\r\n" in out


def test_forward_request_stamps_the_first_via_element_only(impl: SimpleNamespace) -> None:
    req = raw(
        "INVITE sip:b@example.com SIP/2.0",
        "Via: SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKa, SIP/2.0/UDP 10.0.0.2;rport",
        "Via: SIP/2.0/UDP 10.0.0.3;rport",
    )
    out = _forward(impl, req, received="192.0.2.1", rport=40000)
    assert (
        b"Via: SIP/2.0/UDP 10.0.0.1:5060;rport=40000;branch=z9hG4bKa;received=192.0.2.1, "
        b"SIP/2.0/UDP 10.0.0.2;rport\r\n"
    ) in out
    assert b"Via: SIP/2.0/UDP 10.0.0.3;rport\r\n" in out


def test_forward_request_stamps_as_build_response_does(impl: SimpleNamespace) -> None:
    m = impl.sipmsg
    for via in (
        "SIP/2.0/UDP 10.0.0.1;rport",
        "SIP/2.0/UDP [::1]:5060;branch=z9hG4bK6",
        "SIP/2.0/TCP h;rport=1",
    ):
        msg = m.parse_message(request(hdr={"Via": via}))
        for src in ({"received": "::1", "rport": 5}, {"received": "10.0.0.1"}, {"rport": 9}):
            resp = m.build_response(msg, 200, "OK", **src)
            fwd = m.forward_request(
                msg, "sip:x", FWD_VIA, record_route=None, routes=[], max_forwards=1, **src
            )
            assert resp.split(b"\r\n")[1] == fwd.split(b"\r\n")[3], (via, src)


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        ({"uri": "sip:a\r\nX: 1"}, LocalProtocolError, "Request-URI contains CR or LF"),
        ({"uri": "sip:a b"}, LocalProtocolError, "contains white space"),
        ({"uri": ""}, LocalProtocolError, "Request-URI is empty"),
        ({"uri": "sip:\ud800"}, LocalProtocolError, "cannot be encoded"),
        ({"uri": 5}, TypeError, "Request-URI must be a str"),
        ({"via": "SIP/2.0/UDP h\n"}, LocalProtocolError, "Via contains CR or LF"),
        ({"via": " "}, LocalProtocolError, "Via is empty"),
        ({"record_route": "<sip:a>\r"}, LocalProtocolError, "Record-Route contains CR or LF"),
        ({"routes": ["<sip:a>", "<sip:b>\n"]}, LocalProtocolError, "Route contains CR or LF"),
        ({"routes": [""]}, LocalProtocolError, "Route is empty"),
        ({"routes": "<sip:a>"}, TypeError, "routes must be a sequence"),
        ({"routes": [b"<sip:a>"]}, TypeError, "Route must be a str"),
        ({"max_forwards": 256}, LocalProtocolError, "max_forwards 256 out of range"),
        ({"max_forwards": -1}, LocalProtocolError, "out of range"),
        ({"max_forwards": True}, TypeError, "max_forwards must be an int"),
        ({"received": "example.com"}, LocalProtocolError, "is not an IP address"),
        ({"received": "[::1]"}, LocalProtocolError, "is not an IP address"),
        ({"received": "1.2.3.4\x00"}, LocalProtocolError, "is not an IP address"),
        ({"rport": 0}, LocalProtocolError, "is not a port"),
        ({"rport": "5060"}, TypeError, "rport must be an int"),
    ],
)
def test_forward_request_rejects_bad_values(
    impl: SimpleNamespace, kw: dict[str, Any], exc: type[Exception], match: str
) -> None:
    m = impl.sipmsg
    args: dict[str, Any] = {
        "uri": "sip:b@example.com",
        "via": FWD_VIA,
        "record_route": FWD_RR,
        "routes": ["<sip:n;lr>"],
        "max_forwards": 69,
    }
    args.update(kw)
    msg = m.parse_message(request())
    with pytest.raises(exc, match=match):
        m.forward_request(msg, args.pop("uri"), args.pop("via"), **args)


def test_forward_request_accepts_any_iterable_of_routes_and_utf8(impl: SimpleNamespace) -> None:
    out = _forward(impl, request(), routes=(r for r in ["<sip:é@x;lr>"]), record_route='"Pröxy" <sip:p;lr>')
    assert "Route: <sip:é@x;lr>\r\n".encode() in out
    assert 'Record-Route: "Pröxy" <sip:p;lr>\r\n'.encode() in out


def test_forward_request_refuses_a_response(impl: SimpleNamespace) -> None:
    m = impl.sipmsg
    with pytest.raises(ValueError, match="needs a request"):
        m.forward_request(
            m.parse_message(response()), "sip:a", FWD_VIA, record_route=None, routes=[], max_forwards=1
        )


# ================================================================ strip_top_via


def _strip(impl: SimpleNamespace, data: bytes) -> bytes | None:
    m = impl.sipmsg
    out: bytes | None = m.strip_top_via(m.parse_message(data))
    return out


def test_strip_top_via_drops_a_one_element_line(impl: SimpleNamespace) -> None:
    data = response(add=[("Via", "SIP/2.0/UDP second.example.com;branch=z9hG4bK2")], body=b"xy")
    out = _strip(impl, data)
    assert out is not None
    assert out.startswith(b"SIP/2.0 200 OK\r\nMax-Forwards: 70\r\n")
    assert TOP_VIA.encode() not in out
    assert b"\r\nVia: SIP/2.0/UDP second.example.com;branch=z9hG4bK2\r\n" in out
    assert out.endswith(b"\r\nContent-Length: 2\r\n\r\nxy")
    assert out.count(b"Content-Length") == 1


def test_strip_top_via_keeps_the_rest_of_the_line(impl: SimpleNamespace) -> None:
    data = raw(
        "SIP/2.0 180 Ringing",
        'v : SIP/2.0/UDP me;branch=z9hG4bK1;x="a,b" ,  SIP/2.0/TCP b.example.com, SIP/2.0/UDP c',
        "Via: SIP/2.0/UDP d",
        "l: 0",
    )
    assert _strip(impl, data) == (
        b"SIP/2.0 180 Ringing\r\n"
        b"v: SIP/2.0/TCP b.example.com, SIP/2.0/UDP c\r\n"
        b"Via: SIP/2.0/UDP d\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


def test_strip_top_via_folded_line(impl: SimpleNamespace) -> None:
    data = raw("SIP/2.0 200 OK", "Via: SIP/2.0/UDP me;branch=z9hG4bK1 ,", " SIP/2.0/UDP\tb", "  ;branch=x")
    assert (
        _strip(impl, data)
        == b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP\tb\r\n  ;branch=x\r\nContent-Length: 0\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("start", "line"),
    [("SIP/2.0 200 OK", b"SIP/2.0 200 OK"), ("sip/2.0 100", b"SIP/2.0 100 "), ("SIP/2.0 503 N\xe4", None)],
)
def test_strip_top_via_status_line(impl: SimpleNamespace, start: str, line: bytes | None) -> None:
    out = _strip(impl, raw(start, "Via: SIP/2.0/UDP a", "Via: SIP/2.0/UDP b"))
    assert out is not None
    want = line if line is not None else start.encode("utf-8")
    assert out.split(b"\r\n")[0] == want


def test_strip_top_via_without_via_is_none(impl: SimpleNamespace) -> None:
    assert _strip(impl, raw("SIP/2.0 200 OK", "Call-ID: x")) is None


def test_strip_top_via_last_element_leaves_no_via(impl: SimpleNamespace) -> None:
    out = _strip(impl, raw("SIP/2.0 200 OK", "Via: SIP/2.0/UDP a ,  ", "Call-ID: x"))
    assert out == b"SIP/2.0 200 OK\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n"


def test_strip_top_via_refuses_a_request(impl: SimpleNamespace) -> None:
    with pytest.raises(ValueError, match="needs a response"):
        _strip(impl, request())


# ================================================================ unsupported_requires


def test_unsupported_requires(impl: SimpleNamespace) -> None:
    m = impl.sipmsg
    msg = parse(impl, request(add=[("Require", "100rel, timer"), ("Require", "precondition")]))
    assert m.unsupported_requires(msg) == ["100rel", "timer", "precondition"]
    assert m.unsupported_requires(msg, ["timer"]) == ["100rel", "precondition"]
    assert m.unsupported_requires(msg, {"timer", "100rel", "precondition"}) == []
    assert m.unsupported_requires(msg, (t for t in ["precondition"])) == ["100rel", "timer"]


def test_unsupported_requires_ignores_other_headers(impl: SimpleNamespace) -> None:
    m = impl.sipmsg
    msg = parse(impl, request(add=[("Proxy-Require", "foo"), ("Supported", "bar")]))
    assert m.unsupported_requires(msg) == []


# ================================================================ validate_request


def validate(impl: SimpleNamespace, data: bytes, **kw: Any) -> tuple[int, str] | None:
    m = impl.sipmsg
    return m.validate_request(m.parse_message(data), **kw)


def assert_status(result: tuple[int, str] | None, status: int, *words: str) -> None:
    assert result is not None, f"expected {status}, got None"
    assert result[0] == status, result
    assert isinstance(result[1], str) and result[1]
    for w in words:
        assert w in result[1], (w, result)


@pytest.mark.parametrize("method", ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "FOO"])
def test_validate_good_request(impl: SimpleNamespace, method: str) -> None:
    assert validate(impl, request(method)) is None


def test_validate_full_featured_request(impl: SimpleNamespace) -> None:
    data = request(
        "SUBSCRIBE",
        "sips:alice@example.com;transport=tcp",
        hdr={"Contact": "<sips:bob@[2001:db8::5]:5061;transport=tcp>;expires=3600"},
        add=[
            ("Expires", "3600"),
            ("Event", "presence"),
            ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
            ("Require", "eventlist"),
        ],
    )
    assert validate(impl, data, supported=["eventlist"]) is None


def test_validate_version(impl: SimpleNamespace) -> None:
    assert_status(validate(impl, request(version="SIP/3.0")), 505)
    assert_status(validate(impl, request(version="SIP/2.1")), 505)


@pytest.mark.parametrize("name", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_validate_missing_required_header(impl: SimpleNamespace, name: str) -> None:
    assert_status(validate(impl, request(hdr={name: None})), 400, name)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("From", "<sip:other@example.com>;tag=2"),
        ("To", "<sip:other@example.com>"),
        ("Call-ID", "second@example.com"),
        ("CSeq", "314159 INVITE"),
    ],
)
def test_validate_repeated_single_header(impl: SimpleNamespace, name: str, value: str) -> None:
    assert_status(validate(impl, request(add=[(name, value)])), 400, name)


def test_validate_several_via_lines_are_fine(impl: SimpleNamespace) -> None:
    assert validate(impl, request(add=[("Via", "SIP/2.0/TCP b.example.com;branch=z9hG4bK2")])) is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Via", "garbage"),
        ("Via", "SIP/2.0/UDP host.example.com;;"),
        ("From", "Bell, Alexander <sip:a@example.com>;tag=1"),
        ("From", "<sip:a@example.com"),
        ("To", "Watson, Thomas <sip:t@example.com>"),
        ("To", "<not a uri>"),
        ("Contact", "<sip:a@example.com"),
        ("Contact", "sip:a@example.com?x=y"),
        ("CSeq", "abc INVITE"),
        ("CSeq", "2147483648 INVITE"),
        ("Max-Forwards", "abc"),
        ("Max-Forwards", "256"),
    ],
)
def test_validate_malformed_header(impl: SimpleNamespace, name: str, value: str) -> None:
    assert_status(validate(impl, request(hdr={name: value})), 400, name)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Expires", "-1"),
        ("Expires", "4294967296"),
        ("Expires", "soon"),
        ("Date", "Fri, 01 Jan 2010 16:00:00 EST"),
        ("Date", "Friday, 01 Jan 2010 16:00:00 GMT"),
        ("Date", "Fri, 1 Jan 2010 16:00:00 GMT"),
        ("Contact", "<sip:a@example.com>;expires=4294967296"),
    ],
)
def test_validate_malformed_optional_header(impl: SimpleNamespace, name: str, value: str) -> None:
    data = request(hdr={"Contact": None}, add=[(name, value)])
    assert_status(validate(impl, data), 400, name)


def test_validate_good_date_and_expires(impl: SimpleNamespace) -> None:
    data = request(add=[("Date", "Sat, 13 Nov 2010 23:29:00 GMT"), ("Expires", "4294967295")])
    assert validate(impl, data) is None


@pytest.mark.parametrize(
    "lines",
    [
        [("Contact", "*, <sip:alice@192.0.2.4>")],
        [("Contact", "*"), ("Contact", "<sip:alice@192.0.2.4>")],
    ],
)
def test_validate_wildcard_contact_with_other_contacts(
    impl: SimpleNamespace, lines: list[tuple[str, str]]
) -> None:
    # RFC 3261 20.10: Contact = ( "Contact" / "m" ) HCOLON ( STAR / (contact-param
    # *(COMMA contact-param)) ): "*" stands alone (header lines combine into one
    # list, 7.3.1), and 10.3 step 6 answers "*" plus other Contacts with 400.
    data = request("REGISTER", "sip:example.com", hdr={"Contact": None}, add=[*lines, ("Expires", "0")])
    assert_status(validate(impl, data), 400, "Contact")


def test_validate_cseq_method_mismatch(impl: SimpleNamespace) -> None:
    assert_status(validate(impl, request("INVITE", hdr={"CSeq": "1 BYE"})), 400, "CSeq")
    # case matters: methods are case-sensitive
    assert_status(validate(impl, request("INVITE", hdr={"CSeq": "1 invite"})), 400, "CSeq")


def test_validate_content_length_larger_than_body(impl: SimpleNamespace) -> None:
    assert_status(validate(impl, request("MESSAGE", body=b"12345", content_length=6)), 400, "Content-Length")
    assert validate(impl, request("MESSAGE", body=b"12345", content_length=5)) is None
    # a smaller Content-Length is fine: the rest is ignored
    assert validate(impl, request("MESSAGE", body=b"12345", content_length=4)) is None


def test_validate_request_uri_with_headers(impl: SimpleNamespace) -> None:
    assert_status(validate(impl, request(uri="sip:bob@example.com?Subject=hi")), 400)


def test_validate_malformed_request_uri(impl: SimpleNamespace) -> None:
    assert_status(validate(impl, request(uri="sip:bob@example.com:70000")), 400, "Request-URI")


@pytest.mark.parametrize("uri", ["http://example.com/", "mailto:bob@example.com", "xmpp:bob@example.com"])
def test_validate_416_unsupported_scheme(impl: SimpleNamespace, uri: str) -> None:
    assert_status(validate(impl, request(uri=uri)), 416)


@pytest.mark.parametrize(
    "uri",
    [
        "sip:bob@example.com",
        "sips:bob@example.com",
        "tel:+1-201-555-0123",
        "pres:bob@example.com",
        "im:bob@example.com",
    ],
)
def test_validate_supported_schemes(impl: SimpleNamespace, uri: str) -> None:
    assert validate(impl, request(uri=uri)) is None


def test_validate_420_bad_extension(impl: SimpleNamespace) -> None:
    m = impl.sipmsg
    msg = m.parse_message(request(add=[("Require", "foo, 100rel")]))
    assert_status(m.validate_request(msg), 420)
    assert_status(m.validate_request(msg, supported=["100rel"]), 420)
    assert m.unsupported_requires(msg, ["100rel"]) == ["foo"]
    assert m.validate_request(msg, supported=["foo", "100rel"]) is None
    assert m.validate_request(msg, supported=iter(["100rel", "foo"])) is None


@pytest.mark.parametrize("method", ["ACK", "CANCEL"])
def test_validate_no_420_for_ack_and_cancel(impl: SimpleNamespace, method: str) -> None:
    # RFC 3261 8.2.2.3: Require is not checked for ACK and CANCEL.
    assert validate(impl, request(method, add=[("Require", "foo")])) is None


def test_validate_response_structural_checks(impl: SimpleNamespace) -> None:
    assert validate(impl, response()) is None
    # no Request-URI, CSeq-method or Require checks for a response
    assert validate(impl, response(add=[("Require", "unknown-ext")])) is None
    assert validate(impl, response(hdr={"CSeq": "1 BYE"})) is None
    # structural problems: drop
    assert_status(validate(impl, response(hdr={"Call-ID": None})), 400)
    assert_status(validate(impl, response(hdr={"Via": "garbage"})), 400)
    assert_status(validate(impl, response(add=[("CSeq", "2 INVITE")])), 400)
    assert_status(validate(impl, raw("SIP/3.0 200 OK", "Call-ID: x")), 505)


# ================================================================ SipStreamParser


def _stream(impl: SimpleNamespace, **kw: Any) -> Any:
    return impl.sipmsg.SipStreamParser(**kw)


def test_stream_several_messages_in_one_feed(impl: SimpleNamespace) -> None:
    a = request("MESSAGE", body=b"first")
    b = request("OPTIONS")
    c = response(body=b"third!")
    p = _stream(impl)
    msgs = p.feed(a + b + c)
    assert [x.to_bytes() for x in msgs] == [a, b, c]
    assert [x.body for x in msgs] == [b"first", b"", b"third!"]
    assert msgs[0].method == "MESSAGE"
    assert msgs[2].status == 200
    assert p.buffered == 0
    assert p.ping_count == 0


@pytest.mark.parametrize("cut", [1, 10, 40, -3, -1])
def test_stream_message_split_in_two_feeds(impl: SimpleNamespace, cut: int) -> None:
    data = request("MESSAGE", body=b"0123456789")
    p = _stream(impl)
    assert p.feed(data[:cut]) == []
    assert p.buffered == len(data[:cut])
    msgs = p.feed(data[cut:])
    assert len(msgs) == 1
    assert msgs[0].to_bytes() == data
    assert msgs[0].body == b"0123456789"
    assert p.buffered == 0


def test_stream_split_at_every_offset(impl: SimpleNamespace) -> None:
    data = request("MESSAGE", body=b"abc") + request("OPTIONS")
    for cut in range(1, len(data)):
        p = _stream(impl)
        got = p.feed(data[:cut]) + p.feed(data[cut:])
        assert [x.method for x in got] == ["MESSAGE", "OPTIONS"], cut
        assert got[0].body == b"abc"


def test_stream_byte_by_byte(impl: SimpleNamespace) -> None:
    data = request("MESSAGE", body=b"xyz")
    p = _stream(impl)
    got = []
    for i in range(len(data)):
        got += p.feed(data[i : i + 1])
        if i < len(data) - 1:
            assert got == []
            assert p.buffered == i + 1
    assert len(got) == 1
    assert got[0].body == b"xyz"
    assert got[0].to_bytes() == data


def test_stream_second_message_half_fed(impl: SimpleNamespace) -> None:
    a = request("MESSAGE", body=b"one")
    b = request("INFO", body=b"two")
    p = _stream(impl)
    msgs = p.feed(a + b[:20])
    assert [x.method for x in msgs] == ["MESSAGE"]
    assert p.buffered == 20
    msgs = p.feed(b[20:])
    assert [x.method for x in msgs] == ["INFO"]
    assert msgs[0].body == b"two"


def test_stream_keepalive_ping(impl: SimpleNamespace) -> None:
    # RFC 5626 3.5.1: CRLFCRLF is a ping.
    p = _stream(impl)
    assert p.feed(b"\r\n\r\n") == []
    assert p.ping_count == 1
    assert p.buffered == 0
    assert p.feed(b"\r\n\r\n\r\n\r\n") == []
    assert p.ping_count == 3


def test_stream_ping_split_across_feeds(impl: SimpleNamespace) -> None:
    p = _stream(impl)
    assert p.feed(b"\r\n") == []
    assert p.feed(b"\r\n") == []
    assert p.ping_count == 1


def test_stream_ping_between_messages(impl: SimpleNamespace) -> None:
    a = request("MESSAGE", body=b"one")
    b = request("OPTIONS")
    p = _stream(impl)
    msgs = p.feed(a + b"\r\n\r\n" + b)
    assert [x.method for x in msgs] == ["MESSAGE", "OPTIONS"]
    assert p.ping_count == 1
    assert msgs[1].to_bytes() == b


def test_stream_single_crlf_is_skipped_not_a_ping(impl: SimpleNamespace) -> None:
    b = request("OPTIONS")
    p = _stream(impl)
    msgs = p.feed(b"\r\n" + b)
    assert [x.method for x in msgs] == ["OPTIONS"]
    assert p.ping_count == 0


def test_stream_missing_content_length_means_empty_body(impl: SimpleNamespace) -> None:
    a = request("OPTIONS", content_length=None)
    b = request("INFO", body=b"x")
    p = _stream(impl)
    msgs = p.feed(a + b)
    assert [x.method for x in msgs] == ["OPTIONS", "INFO"]
    assert msgs[0].body == b""
    assert msgs[0].content_length is None
    assert msgs[0].to_bytes() == a


def test_stream_waits_for_the_whole_body(impl: SimpleNamespace) -> None:
    data = request("MESSAGE", body=b"x" * 1000)
    p = _stream(impl)
    head = data[:-1000]
    assert p.feed(head + b"x" * 999) == []
    assert p.buffered == len(head) + 999
    msgs = p.feed(b"x")
    assert len(msgs) == 1 and msgs[0].body == b"x" * 1000


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_stream_accepts_buffers(impl: SimpleNamespace, wrap: type) -> None:
    data = request("MESSAGE", body=b"buf")
    msgs = _stream(impl).feed(wrap(data))
    assert len(msgs) == 1 and msgs[0].body == b"buf"


def test_stream_body_bound(impl: SimpleNamespace) -> None:
    p = _stream(impl, max_body_bytes=10)
    assert len(p.feed(request("MESSAGE", body=b"x" * 10))) == 1
    with pytest.raises(SipParseError) as ei:
        p.feed(request("MESSAGE", body=b"x" * 11))
    assert ei.value.status_hint == 413
    assert "10" in str(ei.value)


def test_stream_body_bound_checked_before_the_body_arrives(impl: SimpleNamespace) -> None:
    data = request("MESSAGE", content_length=5000)
    p = _stream(impl, max_body_bytes=4096)
    with pytest.raises(SipParseError) as ei:
        p.feed(data)
    assert ei.value.status_hint == 413


def test_stream_header_block_bound_without_end(impl: SimpleNamespace) -> None:
    # a peer that never ends its header block must not make us buffer forever
    p = _stream(impl, max_header_bytes=200)
    assert p.feed(b"OPTIONS sip:a@example.com SIP/2.0\r\n") == []
    with pytest.raises(SipParseError) as ei:
        p.feed(b"X-Pad: " + b"a" * 300)
    assert ei.value.status_hint == 513
    assert "200" in str(ei.value)


def test_stream_header_block_bound_boundary(impl: SimpleNamespace) -> None:
    data = _sized_header_block(300)
    assert len(_stream(impl, max_header_bytes=300).feed(data)) == 1
    with pytest.raises(SipParseError) as ei:
        _stream(impl, max_header_bytes=299).feed(data)
    assert ei.value.status_hint == 513


def test_stream_default_header_bound(impl: SimpleNamespace) -> None:
    p = _stream(impl)
    with pytest.raises(SipParseError) as ei:
        p.feed(b"OPTIONS sip:a@example.com SIP/2.0\r\nX-Pad: " + b"a" * 20000)
    assert ei.value.status_hint == 513


def test_stream_max_headers(impl: SimpleNamespace) -> None:
    data = raw("OPTIONS sip:a@example.com SIP/2.0", *(f"X-{i}: {i}" for i in range(5)))
    assert len(_stream(impl, max_headers=5).feed(data)) == 1
    with pytest.raises(SipParseError) as ei:
        _stream(impl, max_headers=4).feed(data)
    assert ei.value.status_hint == 513


def test_stream_stays_broken_after_an_error(impl: SimpleNamespace) -> None:
    p = _stream(impl)
    with pytest.raises(SipParseError) as first:
        p.feed(b"GARBAGE LINE\r\n\r\n")
    assert first.value.status_hint == 400
    for data in (request("OPTIONS"), b"\r\n\r\n", b""):
        with pytest.raises(SipParseError) as again:
            p.feed(data)
        assert type(again.value) is type(first.value)
        assert str(again.value) == str(first.value)
        assert again.value.status_hint == first.value.status_hint
    assert p.ping_count == 0


def test_stream_error_after_good_messages(impl: SimpleNamespace) -> None:
    p = _stream(impl)
    assert len(p.feed(request("OPTIONS"))) == 1
    with pytest.raises(SipParseError) as ei:
        p.feed(request("MESSAGE", content_length="x1"))
    assert ei.value.status_hint == 400
    with pytest.raises(SipParseError) as again:
        p.feed(request("OPTIONS"))
    assert str(again.value) == str(ei.value)


def test_stream_messages_validate(impl: SimpleNamespace) -> None:
    m = impl.sipmsg
    msgs = _stream(impl).feed(request("INVITE") + request("BYE", hdr={"CSeq": "9 INVITE"}))
    assert m.validate_request(msgs[0]) is None
    assert_status(m.validate_request(msgs[1]), 400, "CSeq")


def test_stream_initial_state(impl: SimpleNamespace) -> None:
    p = _stream(impl)
    assert p.buffered == 0
    assert p.ping_count == 0
    assert p.feed(b"") == []


@pytest.mark.parametrize("kw", [{"max_header_bytes": -1}, {"max_headers": -5}, {"max_body_bytes": -1}])
def test_negative_limits_are_refused(impl: SimpleNamespace, kw: dict[str, int]) -> None:
    name = next(iter(kw))
    with pytest.raises(ValueError, match=f"{name} must be >= 0"):
        impl.sipmsg.parse_message(request(), **kw)
    with pytest.raises(ValueError, match=f"{name} must be >= 0"):
        impl.sipmsg.SipStreamParser(**kw)


def test_huge_limits_mean_no_limit(impl: SimpleNamespace) -> None:
    msg = impl.sipmsg.parse_message(
        request(), max_header_bytes=2**70, max_headers=2**40, max_body_bytes=10**30
    )
    assert msg.method == "INVITE"
    parser = impl.sipmsg.SipStreamParser(max_header_bytes=2**70, max_body_bytes=2**64, max_headers=2**33)
    assert [m.method for m in parser.feed(request() * 2)] == ["INVITE", "INVITE"]
