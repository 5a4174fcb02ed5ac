"""Named regression inputs for the twins of the SIP codec.

Two kinds:

- the ``test_found_*`` tests: inputs where the twins
  disagreed, or where both raised what the contract (simplefast/_ext/sipmsg.pyi)
  does not allow. Each says which side is wrong and why. They fail until the
  codec is fixed (the tests are kept failing on purpose, not marked xfail).
- ``NASTY``: the nastiest inputs met while writing the generators (folding
  inside comma lists, escaped quotes, IPv6 with LWS, parameter bounds, the
  header array growing past its inline size, ...). The twins agree on them;
  they stay as named cases so a regression shows up under a readable name.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from snapshot import (
    err_outcome,
    first_difference,
    snapshot,
    snapshot_stream,
    snapshot_text,
    unexpected,
)

from simplefast.errors import LocalProtocolError, SipParseError

OPTIONS = b"OPTIONS sip:a@example.com SIP/2.0\r\n"
BASE = (
    b"Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1;rport\r\n"
    b"From: <sip:a@example.com>;tag=1\r\n"
    b"To: <sip:a@example.com>\r\n"
    b"Call-ID: x\r\n"
    b"CSeq: 1 OPTIONS\r\n"
)
REQUEST = OPTIONS + BASE + b"Content-Length: 0\r\n\r\n"


def _outcome(fn: object) -> tuple[object, ...]:
    try:
        return ("ok", fn())  # type: ignore[operator]
    except Exception as exc:
        return err_outcome(exc)


# ---------------------------------------------------------------- found disagreements


@pytest.mark.parametrize("status", [2**31, 2**63, -(2**40)])
def test_found_build_response_status_beyond_c_int(
    status: int, ref: SimpleNamespace, ext: SimpleNamespace
) -> None:
    # ext is wrong: build_response(req, 2**31, "X") raises OverflowError ("value
    # too large to convert to int", from the Cython `int status` argument)
    # where the reference raises LocalProtocolError("status 2147483648 out of
    # range 100-699"), as the stub's Raises section says for any status
    # outside 100-699.
    got = [
        _outcome(lambda m=m: m.build_response(m.parse_message(REQUEST), status, "X"))
        for m in (ref.sipmsg, ext.sipmsg)
    ]
    assert got[0] == got[1]
    assert got[0][1] == "simplefast.errors.LocalProtocolError"


@pytest.mark.parametrize(
    "limits",
    [
        {"max_headers": 2**31},
        {"max_header_bytes": 2**63},
        {"max_body_bytes": 2**63},
        {"max_body_bytes": 10**30},
    ],
    ids=["max_headers=2**31", "max_header_bytes=2**63", "max_body_bytes=2**63", "max_body_bytes=10**30"],
)
def test_found_limits_beyond_c_integers(
    limits: dict[str, int], ref: SimpleNamespace, ext: SimpleNamespace
) -> None:
    # ext is wrong: parse_message(data, max_headers=2**31) (and the same
    # bounds given to SipStreamParser) raise OverflowError from the typed
    # Cython arguments (int / Py_ssize_t / long long); the reference accepts
    # any int, as the stub's `int` says. A caller passing sys.maxsize or
    # 2**63 for "no practical limit" gets a crash from one twin only.
    a = snapshot(ref.sipmsg, REQUEST, **limits)
    b = snapshot(ext.sipmsg, REQUEST, **limits)
    assert a == b, first_difference(a, b)
    a = snapshot_stream(ref.sipmsg, [REQUEST], full=False, **limits)
    b = snapshot_stream(ext.sipmsg, [REQUEST], full=False, **limits)
    assert a == b, first_difference(a, b)


def test_found_stream_error_offset_does_not_depend_on_chunking(
    ref: SimpleNamespace, ext: SimpleNamespace
) -> None:
    # Both twins (so the reference) are wrong, by the rule that stream framing
    # must not depend on chunking: the "offset N" of an error is counted from
    # the start of the parser's internal buffer, which holds whatever earlier
    # messages and keep-alives arrived in the same feed. The same bad message
    # is reported at offset 48 when its predecessor came in the same read and
    # at 23 when it came alone (27 after a CRLFCRLF ping in the same read).
    # The offset should be fixed by the stream's octets: counted from the
    # message start (or from the start of the stream), never from the buffer.
    first = b"OPTIONS sip:a SIP/2.0\r\n\r\n"
    bad = b"OPTIONS sip:a SIP/2.0\r\n:\r\n\r\n"
    for mod in (ref.sipmsg, ext.sipmsg):
        errors = set()
        for chunks in ([first + bad], [first, bad], [b"\r\n\r\n" + bad], [b"\r\n\r\n", bad]):
            parser = mod.SipStreamParser()
            with pytest.raises(SipParseError) as info:
                for chunk in chunks:
                    parser.feed(chunk)
            errors.add(str(info.value))
        assert len(errors) == 1, (mod.__name__, sorted(errors))


@pytest.mark.parametrize("received", ["dead", ":::", "999.999.999.999"])
def test_found_received_must_be_an_ip_address(
    received: str, ref: SimpleNamespace, ext: SimpleNamespace
) -> None:
    # Both twins are wrong, the reference included, because it contradicts the
    # stub ("LocalProtocolError: ... received that is not an IP address"): the
    # check only looks at the characters (hex digits, ':' and '.'), so "dead",
    # ":::" or "999.999.999.999" go out as Via received=dead (RFC 3261 25.1:
    # received = IPv4address / IPv6address).
    for mod in (ref.sipmsg, ext.sipmsg):
        req = mod.parse_message(REQUEST)
        with pytest.raises(LocalProtocolError):
            mod.build_response(req, 200, "OK", received=received)


LONE = "\ud800"  # a lone surrogate that surrogateescape cannot encode (only U+DC80..U+DCFF map to octets)


@pytest.mark.parametrize(
    "what",
    ["parse_uri", "parse_via", "parse_name_addr"],
)
def test_found_unencodable_text_in_parsers(what: str, ref: SimpleNamespace, ext: SimpleNamespace) -> None:
    # Both twins are wrong: parse_uri("sip:\ud800@a") (and parse_via,
    # parse_name_addr) raise UnicodeEncodeError ("surrogates not allowed")
    # from str.encode(..., "surrogateescape"). Such a str is not a URI; the
    # stub's only error for these is SipParseError (invalid character).
    text = {
        "parse_uri": f"sip:{LONE}@a",
        "parse_via": f"SIP/2.0/UDP {LONE}",
        "parse_name_addr": f"<sip:{LONE}>",
    }[what]
    a = snapshot_text(ref.sipmsg, text)
    b = snapshot_text(ext.sipmsg, text)
    assert a == b, first_difference(a, b)
    for mod in (ref.sipmsg, ext.sipmsg):
        with pytest.raises(SipParseError):
            getattr(mod, what)(text)


def test_found_unencodable_header_name_queries(ref: SimpleNamespace, ext: SimpleNamespace) -> None:
    # Both twins are wrong: msg.get("\ud800"), get_all and count raise
    # UnicodeEncodeError. No header can have that name (header names are
    # tokens): the answers are None, [] and 0, as for any other absent name.
    for mod in (ref.sipmsg, ext.sipmsg):
        msg = mod.parse_message(REQUEST)
        assert _outcome(lambda msg=msg: msg.get(LONE)) == ("ok", None)
        assert _outcome(lambda msg=msg: msg.get_all("X" + LONE)) == ("ok", [])
        assert _outcome(lambda msg=msg: msg.count(LONE)) == ("ok", 0)


@pytest.mark.parametrize(
    "kw",
    [
        {"extra_headers": [("X", LONE)]},
        {"extra_headers": [("X", "a" + LONE)]},
        {"reason": LONE},
        {"to_tag": LONE},
        {"received": LONE},
    ],
    ids=["extra-value", "extra-value-2", "reason", "to_tag", "received"],
)
def test_found_unencodable_text_in_build_response(
    kw: dict[str, object], ref: SimpleNamespace, ext: SimpleNamespace
) -> None:
    # Both twins raise UnicodeEncodeError, which is not a LocalProtocolError
    # ("a value we were asked to write would make an invalid message"), and
    # for an extra header value they even disagree on its text: the
    # reference encodes the value alone ("... in position 0"), ext the whole
    # "X: \ud800\r\n" line ("... in position 3"). Expected: both raise the
    # same LocalProtocolError.
    args = {"reason": "OK", **kw}
    reason = args.pop("reason")
    got = []
    for mod in (ref.sipmsg, ext.sipmsg):
        req = mod.parse_message(REQUEST)
        got.append(_outcome(lambda mod=mod, req=req: mod.build_response(req, 200, reason, **args)))
    assert got[0] == got[1]
    assert got[0][1] == "simplefast.errors.LocalProtocolError"


# ---------------------------------------------------------------- the twins' constants


def test_module_constants_agree(ref: SimpleNamespace, ext: SimpleNamespace) -> None:
    for name in (
        "DEFAULT_MAX_HEADER_BYTES",
        "DEFAULT_MAX_HEADERS",
        "DEFAULT_MAX_BODY_BYTES",
        "SUPPORTED_URI_SCHEMES",
    ):
        assert getattr(ref.sipmsg, name) == getattr(ext.sipmsg, name), name
    assert ref.sipmsg.SipParseError is ext.sipmsg.SipParseError is SipParseError


# ---------------------------------------------------------------- nasty inputs (the twins agree)

NASTY: dict[str, bytes] = {
    # a Via comma list folded across lines, the fold right after a comma and
    # inside the LWS before a parameter
    "via-list-folded": OPTIONS
    + b"Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1,\r\n"
    + b" SIP/2.0/TCP [2001:db8::1] : 5061\r\n\t;rport ;received=1.2.3.4\r\n"
    + BASE[BASE.index(b"From") :]
    + b"\r\n",
    # quoted display names ending in an escaped backslash, holding an escaped
    # quote, a comma and '<' (the comma must not split the Contact list)
    "display-name-escapes": OPTIONS
    + BASE
    + b'Contact: "a\\"b, <c>\\\\" <sip:x@h>;q=0.5, "" <sip:y@h>;expires=0,'
    + b" <sips:z@[::1]:5061;transport=tcp>\r\n\r\n",
    # the top Via's only element is empty after the comma split (leading comma)
    "via-leading-comma": OPTIONS + b"Via: , SIP/2.0/UDP h\r\n" + BASE[BASE.index(b"From") :] + b"\r\n",
    # Content-Length folded onto the next line, with leading zeros
    "content-length-folded": OPTIONS + BASE + b"Content-Length:\r\n  0004\r\n\r\nbodyEXTRA",
    # two Content-Length headers (compact and full) that agree: tolerated
    "content-length-twice-equal": OPTIONS + BASE + b"l: 3\r\nContent-Length: 003\r\n\r\nabc",
    # LF-only line ends
    "lf-only": (OPTIONS + BASE).replace(b"\r\n", b"\n") + b"Subject: a b\n\n",
    # a bare CR inside a value (an error), and CR CR LF at a line end
    "bare-cr": OPTIONS + BASE + b"Subject: a\rb\r\n\r\n",
    "cr-cr-lf": OPTIONS + BASE + b"Subject: ab\r\r\n\r\n",
    # 33 Via parameters: one past the bound
    "via-33-params": OPTIONS
    + b"Via: SIP/2.0/UDP h"
    + b"".join(b";p%d" % i for i in range(33))
    + b"\r\n"
    + BASE[BASE.index(b"From") :]
    + b"\r\n",
    # 40 headers: the compiled twin's inline header array (24) must grow
    "forty-headers": OPTIONS + BASE + b"".join(b"X-%d: %d\r\n" % (i, i) for i in range(35)) + b"l: 0\r\n\r\n",
    # names one letter off the known ones, and unused compact letters
    "near-known-names": OPTIONS
    + BASE
    + b"Vias: 1\r\nContent-Lengthx: 2\r\nCSe: 3\r\nq: 4\r\n"
    + b"P-Asserted-Identit: 5\r\nTO : <sip:b@h>;TAG=2\r\n\r\n",
    # To tag given twice in different case (a repeated parameter)
    "to-tag-twice": OPTIONS
    + BASE.replace(b"To: <sip:a@example.com>", b"To: <sip:a@example.com>;tag=a;TAG=b")
    + b"\r\n",
    # a request-URI with escapes, a password, an IPv6 host with port, uri headers
    "ruri-everything": b"INVITE sips:%61l%69ce:pw@[2001:db8::1]:05061;transport=TLS;lr"
    b"?Subject=hi&Priority=urgent SIP/2.0\r\n" + BASE.replace(b"OPTIONS", b"INVITE") + b"\r\n",
    # an unknown method with every token character, and odd spacing in CSeq
    "odd-method": b"!interesting-Method0123456789_*+`.%indeed'~"
    b" sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    b":&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0\r\n"
    + BASE.replace(b"1 OPTIONS", b"0000000001 \t !interesting-Method0123456789_*+`.%indeed'~")
    + b"\r\n",
    # rport with a value, received equal to the host, Max-Forwards and Expires at their bounds
    "bounds": OPTIONS
    + BASE.replace(b";rport", b";rport=065535")
    + b"Max-Forwards: 0255\r\nExpires: 4294967295\r\nEvent: presence ; id=1\r\n\r\n",
    "bounds-plus-one": OPTIONS
    + BASE.replace(b";rport", b";rport=65536").replace(b"1 OPTIONS", b"2147483648 OPTIONS")
    + b"Max-Forwards: 256\r\nExpires: 4294967296\r\n\r\n",
    # a status line without a reason phrase, and a response to answer (dropped)
    "response-no-reason": b"SIP/2.0 200\r\n" + BASE + b"\r\n",
    # continuation line of white space only, then a real continuation
    "blank-continuation": OPTIONS + BASE + b"Subject: a\r\n \t \r\n b\r\n\r\n",
    # NUL and 0xFF octets in values, an undecodable octet in a display name
    "binary-values": OPTIONS + BASE + b'Subject: \x00\xff\r\nContact: "\xc3\x28" <sip:a@h>\r\n\r\n',
    # datagram that ends inside the header section, after a lone CR
    "cut-after-cr": OPTIONS + BASE + b"\r",
    # leading keep-alive before a datagram
    "leading-crlfs": b"\r\n\r\n\n" + REQUEST,
}


@pytest.mark.parametrize("name", list(NASTY))
def test_nasty_inputs_agree(name: str, ref: SimpleNamespace, ext: SimpleNamespace) -> None:
    data = NASTY[name]
    a = snapshot(ref.sipmsg, data)
    b = snapshot(ext.sipmsg, data)
    assert a == b, first_difference(a, b)
    assert unexpected(a) == []
    # ... and on a stream, cut at every octet of the header section's end
    stream = data + b"\r\n\r\n" + REQUEST
    for k in range(max(0, len(data) - 8), len(stream) + 1):
        chunks = [stream[:k], stream[k:]]
        a = snapshot_stream(ref.sipmsg, chunks)
        b = snapshot_stream(ext.sipmsg, chunks)
        assert a == b, (k, first_difference(a, b))


def test_nasty_inputs_say_something(ref: SimpleNamespace) -> None:
    # guard against a case silently degrading into a start-line error
    parsed = {name for name, data in NASTY.items() if snapshot(ref.sipmsg, data)[0][1] == ("ok",)}
    assert set(NASTY) - parsed <= {"cut-after-cr", "bare-cr", "cr-cr-lf"}, set(NASTY) - parsed


def _sized(block: int) -> bytes:
    """A request whose header block (start line to the empty line, CRLFs
    included) is exactly ``block`` octets."""
    head = OPTIONS + BASE + b"X-Pad: "
    pad = block - len(head) - 4
    return head + b"p" * pad + b"\r\n\r\n"


@pytest.mark.parametrize("block", [16383, 16384, 16385, 20000])
def test_header_block_bound(block: int, ref: SimpleNamespace, ext: SimpleNamespace) -> None:
    # DEFAULT_MAX_HEADER_BYTES (16384) exactly, and one past it (513), as a
    # datagram, after leading CRLFs, and on a stream cut anywhere near the end
    data = _sized(block)
    assert len(data) == block
    for d in (data, b"\r\n" + data):
        a = snapshot(ref.sipmsg, d)
        b = snapshot(ext.sipmsg, d)
        assert a == b, first_difference(a, b)
    for k in (0, 100, block - 3, block - 1, block):
        chunks = [data[:k], data[k:]]
        a = snapshot_stream(ref.sipmsg, chunks, full=False)
        b = snapshot_stream(ext.sipmsg, chunks, full=False)
        assert a == b, (k, first_difference(a, b))


@pytest.mark.parametrize(
    "value",
    [
        b"1048576",
        b"1048577",
        b"0000000000000000000001",
        b"999999999999999999",
        b"9999999999999999999",
        b"0" * 40,
    ],
)
def test_content_length_bounds(value: bytes, ref: SimpleNamespace, ext: SimpleNamespace) -> None:
    # DEFAULT_MAX_BODY_BYTES (1 MiB) and one past it (413); leading zeros past
    # the 18-digit guard; 18 and 19 digits
    data = OPTIONS + BASE + b"Content-Length: " + value + b"\r\n\r\nabc"
    a = snapshot(ref.sipmsg, data)
    b = snapshot(ext.sipmsg, data)
    assert a == b, first_difference(a, b)
    a = snapshot_stream(ref.sipmsg, [data, b"x" * 10])
    b = snapshot_stream(ext.sipmsg, [data, b"x" * 10])
    assert a == b, first_difference(a, b)
