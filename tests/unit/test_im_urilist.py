"""The RFC 5365 MESSAGE URI-list service: expansion of the incoming list, the forwarded bodies.

Vectors (tests/vectors, see the manifests): ``flows/rfc5365-9-f1-message-multipart.msg`` is the
RFC 5365 section 9 Figure 2 MESSAGE. Its Content-Length (501) is printed as in the RFC, not
recomputed; the real body is 983 bytes, so the tests that want the whole body rewrite it (and one
test checks that the body cut at 501 bytes is refused, not half-read). ``im/rfc5365-9-f1-*.xml`` is
that MESSAGE's list part (LF line ends) and ``im/rfc5365-9-f3-*.xml`` the recipient-list-history
list of the Figure 3 MESSAGE the service sends out.

Forwarded bodies are read back with the standard library's ``email`` parser, an implementation
independent of the one under test.
"""

from __future__ import annotations

import email
import email.policy
import pickle
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree  # type: ignore[import-untyped]

from simplefast._impl import sipmsg as codec
from simplefast.errors import RemoteProtocolError
from simplefast.im.urilist import CP_NS, RL_NS, Expansion, Recipient, UriListError, expand, forwarded_body
from simplefast.presence.xmlsafe import XmlRejected

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
F1_MESSAGE = VECTORS / "flows" / "rfc5365-9-f1-message-multipart.msg"
F1_LIST = VECTORS / "im" / "rfc5365-9-f1-resource-lists.xml"
F3_LIST = VECTORS / "im" / "rfc5365-9-f3-resource-lists.xml"

# RFC 5365 section 9 Figure 2, as the list shows it: (uri, copyControl, anonymize)
FIGURE2 = [
    ("sip:bill@example.com", "to", False),
    ("sip:randy@example.net", "to", True),
    ("sip:eddy@example.com", "to", True),
    ("sip:joe@example.org", "cc", False),
    ("sip:carol@example.net", "cc", True),
    ("sip:ted@example.net", "bcc", False),
    ("sip:andy@example.com", "bcc", False),
]

LIST_HEADERS = [
    ("Content-Type", "application/resource-lists+xml"),
    ("Content-Disposition", "recipient-list"),
]
TEXT_HEADERS = [("Content-Type", "text/plain")]


# -- helpers ------------------------------------------------------------------------------------------


def figure2() -> tuple[str, bytes]:
    """(Content-Type, body) of the Figure 2 MESSAGE, its Content-Length made true."""
    data = F1_MESSAGE.read_bytes()
    head, body = data.split(b"\r\n\r\n", 1)
    assert b"Content-Length: 501" in head
    fixed = head.replace(b"Content-Length: 501", b"Content-Length: %d" % len(body)) + b"\r\n\r\n" + body
    msg = codec.parse_message(fixed)
    ctype = msg.get("Content-Type")
    assert ctype is not None
    return ctype, bytes(msg.body)


def multipart(
    parts: list[tuple[list[tuple[str, str]], bytes]],
    boundary: str = "b1",
    preamble: bytes = b"",
    epilogue: bytes = b"",
) -> bytes:
    """A multipart body (RFC 2046 section 5.1.1) of (headers, body) parts."""
    dash = b"--" + boundary.encode()
    out = [preamble + b"\r\n" if preamble else b""]
    for i, (headers, body) in enumerate(parts):
        if i:
            out.append(b"\r\n")
        out.append(dash + b"\r\n")
        out.append(b"".join(f"{n}: {v}\r\n".encode() for n, v in headers))
        out.append(b"\r\n" + body)
    out.append(b"\r\n" + dash + b"--")
    if epilogue:
        out.append(b"\r\n" + epilogue)
    return b"".join(out)


def rl_doc(entries: list[str], wrap: str = "<list>{}</list>") -> bytes:
    """A resource-lists document holding the given raw entry markup."""
    inner = wrap.format("".join(entries))
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns="{RL_NS}" xmlns:cp="{CP_NS}">'
        f"{inner}</resource-lists>"
    ).encode()


def request(list_xml: bytes, payload: bytes = b"Hello", boundary: str = "b1") -> tuple[str, bytes]:
    body = multipart([(TEXT_HEADERS, payload), (LIST_HEADERS, list_xml)], boundary)
    return f'multipart/mixed;boundary="{boundary}"', body


def expand_entries(*entries: str, **kw: int) -> Expansion:
    ctype, body = request(rl_doc(list(entries)))
    return expand(ctype, body, **kw)


def refused(ctype: str | None, body: bytes, **kw: int) -> UriListError:
    with pytest.raises(UriListError) as info:
        expand(ctype, body, **kw)
    return info.value


def read_forwarded(ctype: str, body: bytes) -> list[email.message.Message]:
    """The parts of a forwarded multipart body, by the stdlib parser."""
    msg = email.message_from_bytes(
        f"Content-Type: {ctype}\r\n\r\n".encode() + body, policy=email.policy.compat32
    )
    assert msg.is_multipart()
    parts = msg.get_payload()
    assert isinstance(parts, list) and all(isinstance(p, email.message.Message) for p in parts)
    return [p for p in parts if isinstance(p, email.message.Message)]


def decoded(part: email.message.Message) -> bytes:
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    return data


def raw_parts(ctype: str, body: bytes) -> list[bytes]:
    """The part contents (after the blank line) of a forwarded body, split as plain bytes."""
    m = re.fullmatch(r'multipart/mixed;boundary="(.+)"', ctype)
    assert m is not None
    dash = b"--" + m.group(1).encode()
    assert body.startswith(dash + b"\r\n") and body.endswith(b"\r\n" + dash + b"--\r\n")
    chunks = body[len(dash) + 2 : -len(dash) - 6].split(b"\r\n" + dash + b"\r\n")
    return [chunk.split(b"\r\n\r\n", 1)[1] for chunk in chunks]


def history_entries(xml: bytes) -> list[tuple[str, str | None, str | None]]:
    root = etree.fromstring(xml)
    return [
        (e.get("uri"), e.get(f"{{{CP_NS}}}copyControl"), e.get(f"{{{CP_NS}}}count"))
        for e in root.iter(f"{{{RL_NS}}}entry")
    ]


# -- the RFC 5365 section 9 vectors -----------------------------------------------------------------


def test_figure2_message_expands_to_the_listed_recipients() -> None:
    ctype, body = figure2()
    exp = expand(ctype, body)
    assert [(r.uri, r.copy, r.anonymize) for r in exp.recipients] == FIGURE2
    assert all(r.display is None for r in exp.recipients)
    assert exp.payload_type == "text/plain"
    assert exp.payload_headers == ()
    # the empty line after "Hello World!" is content; the CRLF before the delimiter is not
    assert exp.payload == b"Hello World!\r\n"


def test_figure2_body_cut_at_the_printed_content_length_is_refused() -> None:
    msg = codec.parse_message(F1_MESSAGE.read_bytes())
    assert len(msg.body) == 501  # the RFC's Content-Length, shorter than the body it shows
    err = refused(msg.get("Content-Type"), bytes(msg.body))
    assert err.status == 400 and "closing" in str(err)


def test_figure2_list_vector_alone_in_a_request() -> None:
    exp = expand(*request(F1_LIST.read_bytes()))
    assert [(r.uri, r.copy, r.anonymize) for r in exp.recipients] == FIGURE2


def test_forwarded_body_reproduces_figure3_history() -> None:
    exp = expand(*figure2())
    want = history_entries(F3_LIST.read_bytes())
    assert want == [
        ("sip:bill@example.com", "to", None),
        ("sip:anonymous@anonymous.invalid", "to", "2"),
        ("sip:joe@example.org", "cc", None),
        ("sip:anonymous@anonymous.invalid", "cc", "1"),
    ]
    bodies = set()
    for rcpt in exp.recipients:
        ctype, body = forwarded_body(exp, rcpt, boundary="sf0123")
        assert ctype == 'multipart/mixed;boundary="sf0123"'
        payload, hist = read_forwarded(ctype, body)
        assert payload.get_content_type() == "text/plain"
        assert decoded(payload) == b"Hello World!\r\n"
        assert hist.get_content_type() == "application/resource-lists+xml"
        assert hist["Content-Disposition"] == "recipient-list-history; handling=optional"
        xml = decoded(hist)
        assert history_entries(xml) == want
        bodies.add(body)
    assert len(bodies) == 1  # one history for everyone, built once


def test_forwarded_bodies_never_name_bcc_or_anonymized_recipients() -> None:
    exp = expand(*figure2())
    hidden = [uri for uri, copy, anon in FIGURE2 if copy == "bcc" or anon]
    for rcpt in exp.recipients:
        _, body = forwarded_body(exp, rcpt, boundary="x")
        for uri in hidden:
            assert uri.encode() not in body
        assert b"recipient-list\r\n" not in body  # the incoming list is never forwarded


# -- forwarded_body -----------------------------------------------------------------------------------


def test_no_history_when_nobody_is_to_or_cc() -> None:
    exp = expand_entries(
        '<entry uri="sip:a@example.com" cp:copyControl="bcc"/>',
        '<entry uri="sip:b@example.com" cp:copyControl="bcc" cp:anonymize="true"/>',
    )
    for rcpt in exp.recipients:
        assert forwarded_body(exp, rcpt, boundary="x") == ("text/plain", b"Hello")


def test_only_anonymized_to_and_cc_are_counted() -> None:
    exp = expand_entries(
        '<entry uri="sip:a@example.com" cp:anonymize="true"/>',
        '<entry uri="sip:b@example.com" cp:copyControl="cc" cp:anonymize="1"/>',
        '<entry uri="sip:c@example.com" cp:copyControl="cc" cp:anonymize="true"/>',
        '<entry uri="sip:d@example.com" cp:copyControl="bcc"/>',
    )
    ctype, body = forwarded_body(exp, exp.recipients[3], boundary="x")
    _, hist = read_forwarded(ctype, body)
    assert history_entries(decoded(hist)) == [
        ("sip:anonymous@anonymous.invalid", "to", "1"),
        ("sip:anonymous@anonymous.invalid", "cc", "2"),
    ]
    for uri in (b"sip:a@", b"sip:b@", b"sip:c@", b"sip:d@"):
        assert uri not in body


def test_history_escapes_and_keeps_display_names() -> None:
    exp = expand_entries(
        '<entry uri="sip:a&amp;b@example.com"><display-name>Bob &lt;&amp;&gt; "Co"</display-name></entry>',
        '<entry uri="sip:c@example.com" cp:copyControl="cc"><display-name>Zoë</display-name></entry>',
    )
    assert exp.recipients[0] == Recipient("sip:a&b@example.com", 'Bob <&> "Co"', "to", False)
    ctype, body = forwarded_body(exp, exp.recipients[0], boundary="x")
    root = etree.fromstring(decoded(read_forwarded(ctype, body)[1]))
    entries = root.findall(f"{{{RL_NS}}}list/{{{RL_NS}}}entry")
    assert [e.get("uri") for e in entries] == ["sip:a&b@example.com", "sip:c@example.com"]
    assert [e.findtext(f"{{{RL_NS}}}display-name") for e in entries] == ['Bob <&> "Co"', "Zoë"]


def test_payload_headers_travel_with_the_payload() -> None:
    headers = [
        ("Content-Type", "message/cpim"),
        ("Content-ID", "<1234@example.com>"),
        ("content-disposition", "render;handling=optional"),
    ]
    cpim = b"From: <sip:a@example.com>\r\n\r\nContent-Type: text/plain\r\n\r\nhi"
    body = multipart([(headers, cpim), (LIST_HEADERS, rl_doc(['<entry uri="sip:b@example.com"/>']))])
    exp = expand("multipart/mixed; boundary=b1", body)
    assert exp.payload_type == "message/cpim"
    assert exp.payload_headers == (
        ("Content-ID", "<1234@example.com>"),
        ("content-disposition", "render;handling=optional"),
    )
    assert exp.payload == cpim
    ctype, out = forwarded_body(exp, exp.recipients[0], boundary="x")
    first = read_forwarded(ctype, out)[0]
    assert first["Content-ID"] == "<1234@example.com>"
    assert first["Content-Disposition"] == "render;handling=optional"
    assert raw_parts(ctype, out)[0] == cpim


def test_boundary_planted_in_the_payload_is_avoided() -> None:
    payload = b"text\r\n--sf42\r\nContent-Type: text/html\r\n\r\n<b>\r\n--sf42--\r\n"
    exp = expand(*request(rl_doc(['<entry uri="sip:b@example.com"/>']), payload=payload))
    ctype, body = forwarded_body(exp, exp.recipients[0], boundary="sf42")
    assert ctype != 'multipart/mixed;boundary="sf42"'
    boundary = re.fullmatch(r'multipart/mixed;boundary="(.+)"', ctype)
    assert boundary is not None and len(boundary.group(1)) <= 70
    first, hist = read_forwarded(ctype, body)
    assert decoded(first) == payload
    assert history_entries(decoded(hist)) == [("sip:b@example.com", "to", None)]


@pytest.mark.parametrize(
    ("boundary", "used"),
    [
        ("", "sf"),
        ("x" * 71, "x" * 70),
        ("ends with space ", "ends with space"),
        ("semi;colon", "semi.colon"),
        ('q"uote', "q.uote"),
        ("sf5a7df3221685.2@s", "sf5a7df3221685.2.s"),  # an id with "@": not an RFC 2046 bchar
    ],
)
def test_forwarded_body_mends_a_bad_boundary(boundary: str, used: str) -> None:
    exp = expand_entries('<entry uri="sip:b@example.com"/>')
    ctype, body = forwarded_body(exp, exp.recipients[0], boundary=boundary)
    assert ctype == f'multipart/mixed;boundary="{used}"'
    assert raw_parts(ctype, body)[0] == b"Hello"
    # our own parser splits it the same way, once the history is relabelled as a list
    again = expand(ctype, body.replace(b"recipient-list-history", b"recipient-list"))
    assert again.recipients == exp.recipients and again.payload == b"Hello"


def test_forwarded_body_wants_a_recipient_of_the_expansion() -> None:
    exp = expand_entries('<entry uri="sip:b@example.com"/>')
    with pytest.raises(ValueError):
        forwarded_body(exp, Recipient("sip:other@example.com"), boundary="x")


def test_recipient_refuses_an_unknown_copy_control() -> None:
    with pytest.raises(ValueError):
        Recipient("sip:a@example.com", None, "all")  # type: ignore[arg-type]


# -- the multipart body -------------------------------------------------------------------------------


def test_preamble_epilogue_padding_folding_and_header_case() -> None:
    xml = rl_doc(['<entry uri="sip:b@example.com"/>'])
    body = multipart(
        [
            ([("CONTENT-TYPE", "text/plain;\r\n charset=utf-8")], b"hi"),
            (
                [
                    ("content-type", "Application/Resource-Lists+XML"),
                    ("Content-Disposition", "Recipient-List"),
                ],
                xml,
            ),
        ],
        boundary="simple boundary",
        preamble=b"This is the preamble.  It is to be ignored",
        epilogue=b"This is the epilogue.  It is also to be ignored.",
    )
    body = body.replace(b"--simple boundary\r\n", b"--simple boundary  \t\r\n", 1)  # transport padding
    exp = expand('Multipart/Mixed ; Boundary = "simple boundary" ; foo=bar', body)
    assert exp.payload_type == "text/plain; charset=utf-8"
    assert exp.payload == b"hi"
    assert [r.uri for r in exp.recipients] == ["sip:b@example.com"]


def test_unquoted_boundary_and_list_first() -> None:
    xml = rl_doc(['<entry uri="sip:b@example.com"/>'])
    body = multipart([(LIST_HEADERS, xml), (TEXT_HEADERS, b"x")], boundary="abc")
    exp = expand("multipart/mixed;boundary=abc", body)
    assert exp.payload == b"x" and exp.recipients[0].uri == "sip:b@example.com"


def test_a_part_without_headers_is_text_plain() -> None:
    xml = rl_doc(['<entry uri="sip:b@example.com"/>'])
    exp = expand("multipart/mixed;boundary=b1", multipart([([], b"plain"), (LIST_HEADERS, xml)]))
    assert exp.payload_type == "text/plain; charset=us-ascii" and exp.payload == b"plain"


XML1 = rl_doc(['<entry uri="sip:b@example.com"/>'])
GOOD = multipart([(TEXT_HEADERS, b"hi"), (LIST_HEADERS, XML1)])
CT = "multipart/mixed;boundary=b1"


@pytest.mark.parametrize(
    ("ctype", "body", "status", "words"),
    [
        (None, GOOD, 415, "Content-Type"),
        ("", GOOD, 415, "Content-Type"),
        ("text/plain", GOOD, 415, "not multipart/mixed"),
        ("multipart/related;boundary=b1", GOOD, 415, "not multipart/mixed"),
        ("multipart/mixed", GOOD, 400, "boundary"),
        ("multipart/mixed;boundary=", GOOD, 400, "empty value"),
        ('multipart/mixed;boundary="b1', GOOD, 400, "unterminated"),
        ("multipart/mixed;boundary=b1;boundary=b2", GOOD, 400, "twice"),
        ("multipart/mixed;boundary=" + "x" * 71, GOOD, 400, "bchars"),
        ("multipart/mixed;boundary=b1 junk", GOOD, 400, "unexpected"),
        ("multipart", GOOD, 400, "type/subtype"),
        (CT, b"", 400, "empty body"),
        (CT, GOOD.replace(b"--b1", b"--b2"), 400, "no --boundary"),
        (CT, GOOD[: -len(b"\r\n--b1--")], 400, "closing"),
        (CT, GOOD + b"junk", 400, "junk after the closing"),
        (CT, GOOD.replace(b"\r\n", b"\n"), 400, "bare LF"),
        (CT, b"--b1--\r\n", 400, "no parts"),
        (CT, GOOD.replace(b"hi", b"hi\r\n--b1x"), 400, "no delimiter"),
        (CT, b"--b1\r\n--b1--", 400, "empty body part"),
        (
            CT,
            GOOD.replace(b"Content-Type: text/plain\r\n\r\n", b"Content-Type: text/plain\r\n"),
            400,
            "no empty line",
        ),
        (CT, GOOD.replace(b"Content-Type: text/plain", b"Content-Type text/plain"), 400, "malformed line"),
        (CT, GOOD.replace(b"Content-Type: text/plain", b" Content-Type: text/plain"), 400, "continuation"),
        (CT, GOOD.replace(b"Content-Type: text/plain", b"Content-Type: text"), 400, "type/subtype"),
        (CT, GOOD.replace(b"Content-Type: text/plain", b"Content-Type: \xff"), 400, "UTF-8"),
        (CT, GOOD.replace(b"Content-Type: text/plain", b"X: a\rb"), 400, "bare CR"),
        (CT, GOOD.replace(b"Content-Type: text/plain", b"X: " + b"a" * 5000), 400, "exceed 4096"),
        (
            CT,
            GOOD.replace(b"Content-Type: text/plain", b"Content-Type: text/plain\r\nContent-Type: a/b"),
            400,
            "2 content-type",
        ),
    ],
)
def test_malformed_multipart(ctype: str | None, body: bytes, status: int, words: str) -> None:
    err = refused(ctype, body)
    assert err.status == status and err.status_hint == status
    assert words.lower() in str(err).lower()
    if status == 415:
        assert err.accept == "multipart/mixed" and err.reason == "Unsupported Media Type"
    else:
        assert err.reason == "Bad Request" and err.accept is None


def test_list_part_missing() -> None:
    err = refused(CT, multipart([(TEXT_HEADERS, b"a"), (TEXT_HEADERS, b"b")]))
    assert err.status == 400 and "recipient-list" in str(err)


def test_resource_lists_part_without_the_recipient_list_disposition() -> None:
    for disp in (
        [],
        [("Content-Disposition", "render")],
        [("Content-Disposition", "x-foo;handling=required")],
    ):
        headers = [("Content-Type", "application/resource-lists+xml"), *disp]
        err = refused(CT, multipart([(TEXT_HEADERS, b"a"), (headers, XML1)]))
        assert err.status == 415 and "recipient-list" in str(err)


def test_two_list_parts() -> None:
    err = refused(CT, multipart([(TEXT_HEADERS, b"a"), (LIST_HEADERS, XML1), (LIST_HEADERS, XML1)]))
    assert err.status == 400 and "2 parts with Content-Disposition: recipient-list" in str(err)


def test_two_payload_parts() -> None:
    err = refused(CT, multipart([(TEXT_HEADERS, b"a"), (LIST_HEADERS, XML1), (TEXT_HEADERS, b"b")]))
    assert err.status == 400 and "2 payload parts" in str(err)


def test_too_many_parts() -> None:
    err = refused(CT, multipart([(TEXT_HEADERS, b"p")] * 8 + [(LIST_HEADERS, XML1)]))
    assert err.status == 400 and "more than 8 body parts" in str(err)


@pytest.mark.parametrize(
    ("headers", "accept"),
    [
        ([("Content-Type", "text/uri-list"), ("Content-Disposition", "recipient-list")], True),
        ([("Content-Disposition", "recipient-list")], True),
        ([*LIST_HEADERS, ("Content-Transfer-Encoding", "base64")], True),
        ([*LIST_HEADERS, ("Content-Encoding", "gzip")], True),
    ],
)
def test_list_in_a_format_or_coding_we_do_not_take(headers: list[tuple[str, str]], accept: bool) -> None:
    err = refused(CT, multipart([(TEXT_HEADERS, b"a"), (headers, XML1)]))
    assert err.status == 415 and err.accept == "application/resource-lists+xml"


def test_list_part_in_8bit_with_handling_and_charset_is_fine() -> None:
    headers = [
        ("Content-Type", "application/resource-lists+xml; charset=UTF-8"),
        ("Content-Disposition", "recipient-list;handling=required"),
        ("Content-Transfer-Encoding", "8bit"),
    ]
    exp = expand(CT, multipart([(TEXT_HEADERS, b"a"), (headers, XML1)]))
    assert len(exp.recipients) == 1


def test_body_over_the_byte_bound() -> None:
    err = refused(CT, GOOD, max_bytes=len(GOOD) - 1)
    assert err.status == 413 and err.reason == "Request Entity Too Large"
    assert len(expand(CT, GOOD, max_bytes=len(GOOD)).recipients) == 1


# -- the list document --------------------------------------------------------------------------------


def test_too_many_recipients() -> None:
    entries = [f'<entry uri="sip:u{i}@example.com"/>' for i in range(5)]
    err = refused(*request(rl_doc(entries)), max_recipients=4)
    assert err.status == 403 and err.reason == "Too Many Recipients"
    assert "5 recipients, limit 4" in str(err)
    assert len(expand(*request(rl_doc(entries)), max_recipients=5).recipients) == 5
    # duplicates do not count against the limit
    dup = entries + ['<entry uri="sip:u0@EXAMPLE.com"/>']
    assert len(expand(*request(rl_doc(dup)), max_recipients=5).recipients) == 5


@pytest.mark.parametrize(
    "xml",
    [
        b'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>\n'
        b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list>'
        b'<entry uri="sip:a@example.com"><display-name>&b;</display-name></entry></list></resource-lists>',
        b'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
        b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list>'
        b'<entry uri="sip:a@example.com"><display-name>&x;</display-name></entry></list></resource-lists>',
    ],
    ids=["entity-expansion", "xxe"],
)
def test_hostile_xml_is_refused_by_xmlsafe(xml: bytes) -> None:
    err = refused(*request(xml))
    assert err.status == 400 and "DOCTYPE" in str(err)
    assert isinstance(err.__cause__, XmlRejected)


@pytest.mark.parametrize(
    ("xml", "words"),
    [
        (b"<resource-lists", "not well-formed"),
        (b"   ", "empty"),
        (b'<resource-lists xmlns="urn:other"><list/></resource-lists>', "not <resource-lists>"),
        (b"<resource-lists><list/></resource-lists>", "not <resource-lists>"),
        (rl_doc([], wrap="<entry uri='sip:a@example.com'/>"), "unexpected <entry>"),
        (rl_doc([]), "no entries"),
        (rl_doc(["<entry/>"]), "without a uri"),
        (rl_doc(["<bogus/>"]), "unexpected <bogus>"),
        (
            rl_doc(
                [
                    '<entry uri="sip:a@example.com">'
                    "<display-name>a</display-name><display-name>b</display-name></entry>"
                ]
            ),
            "two <display-name>",
        ),
        (rl_doc(['<entry uri="sip:a@example.com" cp:copyControl="To"/>']), "copyControl"),
        (rl_doc(['<entry uri="sip:a@example.com" cp:copyControl="all"/>']), "copyControl"),
        (rl_doc(['<entry uri="sip:a@example.com" cp:anonymize="yes"/>']), "anonymize"),
        (
            rl_doc(['<entry uri="sip:a@example.com"/>'], wrap="<list>" * 9 + "{}" + "</list>" * 9),
            "deeper than 8",
        ),
    ],
)
def test_bad_list_documents(xml: bytes, words: str) -> None:
    err = refused(*request(xml))
    assert err.status == 400 and words in str(err)


@pytest.mark.parametrize(
    "markup",
    [
        '<entry-ref ref="resource-lists/users/sip:a@example.com/index'
        '/~~/resource-lists/list%5b@name=%22l%22%5d"/>',
        '<external anchor="http://xcap.example.com/resource-lists/users/sip:a@example.com/index"/>',
    ],
    ids=["entry-ref", "external"],
)
def test_references_are_refused_with_403(markup: str) -> None:
    err = refused(*request(rl_doc(['<entry uri="sip:a@example.com"/>', markup])))
    assert err.status == 403 and "cannot be resolved" in str(err)
    assert "RFC 5365 section 4" in str(err)


@pytest.mark.parametrize(
    "uri",
    [
        "http://example.com/",
        "mailto:a@example.com",
        "pres:a@example.com",
        "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
        "sip:",
        "sip:a@",
        "sip:a b@example.com",
        "sip:a@example.com?Subject=hi",
        "sip:a@example.com:99999",
        "tel:abc",
        "tel:7042",
        "tel:+",
        "im:nobody",
        "example.com",
        "sip:a@example.com" + "x" * 1100,
    ],
)
def test_bad_entry_uri_is_named(uri: str) -> None:
    err = refused(*request(rl_doc([f'<entry uri="{uri}"/>'])))
    assert err.status == 400
    assert uri[:30] in str(err) or "empty uri" in str(err)


@pytest.mark.parametrize(
    "uri",
    [
        "sip:alice@example.com",
        "sips:alice@example.com;transport=tcp",
        "sip:example.com",
        "sip:alice:secret@[2001:db8::1]:5061;user=phone",
        "SIP:Alice@Example.COM",
        "tel:+1-201-555-0123",
        "tel:7042;phone-context=example.com",
        "tel:+358-555-1234567;postd=pp22",
        "im:alice@example.com",
    ],
)
def test_good_entry_uris(uri: str) -> None:
    exp = expand_entries(f'<entry uri="  {uri}\n"/>')
    assert exp.recipients == (Recipient(uri),)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("sip:alice@Example.COM", "SIP:alice@example.com"),
        ("sip:al%69ce@example.com", "sip:alice@example.com"),
        ("sip:alice@example.com;foo=1", "sip:alice@example.com"),  # RFC 3261 19.1.4: one side only
        ("sip:alice@example.com;transport=TCP", "sip:alice@example.com;transport=tcp"),
        ("tel:+1-201-555-0123", "tel:+12015550123"),
        ("tel:7042;phone-context=Example.com", "tel:7042;phone-context=example.COM"),
        ("im:bob@EXAMPLE.com", "im:bob@example.com"),
    ],
)
def test_duplicates_are_removed(a: str, b: str) -> None:
    exp = expand_entries(f'<entry uri="{a}"/>', '<entry uri="sip:x@example.com"/>', f'<entry uri="{b}"/>')
    assert [r.uri for r in exp.recipients] == [a, "sip:x@example.com"]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("sip:Alice@example.com", "sip:alice@example.com"),  # user part is case-sensitive
        ("sip:alice@example.com;transport=tcp", "sip:alice@example.com"),  # must match if in either
        ("sip:alice@example.com:5060", "sip:alice@example.com"),  # explicit default port differs
        ("sips:alice@example.com", "sip:alice@example.com"),
        ("sip:alice@example.com;foo=1", "sip:alice@example.com;foo=2"),
        ("tel:+12015550123", "tel:+12015550124"),
        ("im:Bob@example.com", "im:bob@example.com"),
    ],
)
def test_distinct_uris_are_kept(a: str, b: str) -> None:
    exp = expand_entries(f'<entry uri="{a}"/>', f'<entry uri="{b}"/>')
    assert [r.uri for r in exp.recipients] == [a, b]


def test_duplicate_merge_keeps_the_most_private_role() -> None:
    exp = expand_entries(
        '<entry uri="sip:a@example.com"/>',
        '<entry uri="sip:b@example.com" cp:copyControl="cc"><display-name>B</display-name></entry>',
        '<entry uri="sip:A@example.com"/>',
        '<entry uri="sip:a@EXAMPLE.COM" cp:copyControl="bcc"><display-name>A</display-name></entry>',
        '<entry uri="sip:b@example.com" cp:copyControl="to" cp:anonymize="true"/>',
    )
    assert exp.recipients == (
        Recipient("sip:a@example.com", "A", "bcc", False),
        Recipient("sip:b@example.com", "B", "cc", True),
        Recipient("sip:A@example.com", None, "to", False),
    )


def test_nested_lists_flatten_in_document_order() -> None:
    xml = rl_doc(
        [],
        wrap=(
            "<list name='outer'><display-name>Friends</display-name>"
            '<entry uri="sip:1@example.com"/>'
            '<list><entry uri="sip:2@example.com"/><list><entry uri="sip:3@example.com"/></list></list>'
            '<entry uri="sip:4@example.com"/>'
            "</list>"
            '<list><entry uri="sip:5@example.com"/></list>{}'
        ),
    )
    exp = expand(*request(xml))
    assert [r.uri for r in exp.recipients] == [f"sip:{i}@example.com" for i in range(1, 6)]


def test_extensions_and_unqualified_attributes_are_ignored() -> None:
    exp = expand_entries(
        '<entry uri="sip:a@example.com" copyControl="bcc" anonymize="true" xmlns:x="urn:x" x:y="1">'
        "<display-name xml:lang='en'>A</display-name><x:z>ignored</x:z></entry>",
        "<x:thing xmlns:x='urn:x'><entry uri='sip:hidden@example.com'/></x:thing>",
        '<entry uri="sip:b@example.com" cp:copyControl=" cc " cp:anonymize="0" cp:count="7"/>',
    )
    assert exp.recipients == (
        Recipient("sip:a@example.com", "A", "to", False),
        Recipient("sip:b@example.com", None, "cc", False),
    )


# -- the error type -----------------------------------------------------------------------------------


def test_error_text_is_safe_for_a_warning_header_and_pickles() -> None:
    err = refused(*request(rl_doc(['<entry uri="sip:a&quot;\\&#10;b@example.com"/>'])))
    text = str(err)
    assert '"' not in text and "\\" not in text and "\n" not in text and len(text) <= 160
    assert isinstance(err, RemoteProtocolError)
    again = pickle.loads(pickle.dumps(err))
    assert (type(again), str(again), again.status, again.reason, again.accept) == (
        UriListError,
        text,
        err.status,
        err.reason,
        err.accept,
    )


# -- properties ---------------------------------------------------------------------------------------

CONTENT_TYPES = st.one_of(
    st.none(),
    st.text(max_size=60),
    st.sampled_from(
        [CT, 'multipart/mixed;boundary="b1"', "multipart/mixed", "text/plain", "multipart/mixed;b"]
    ),
    st.from_regex(r"multipart/mixed;\s*boundary=(\"[^\"]{0,80}\"?|[!-~]{0,80})", fullmatch=True),
)


@given(ctype=CONTENT_TYPES, body=st.binary(max_size=600))
def test_any_input_gives_an_expansion_or_a_uri_list_error(ctype: str | None, body: bytes) -> None:
    try:
        exp = expand(ctype, body)
    except UriListError as err:
        assert err.status in (400, 403, 413, 415)
    else:
        assert exp.recipients


@given(
    cut=st.integers(min_value=0, max_value=1000),
    flips=st.lists(st.tuples(st.integers(min_value=0, max_value=982), st.integers(0, 255)), max_size=4),
)
def test_mutated_figure2_gives_an_expansion_or_a_uri_list_error(
    cut: int, flips: list[tuple[int, int]]
) -> None:
    ctype, body = figure2()
    data = bytearray(body)
    for at, value in flips:
        if at < len(data):
            data[at] = value
    try:
        expand(ctype, bytes(data[: len(data) - cut]))
    except UriListError:
        pass


_USERS = st.from_regex(r"[a-z0-9][a-z0-9._\-]{0,15}", fullmatch=True)
_HOSTS = st.sampled_from(["example.com", "example.net", "192.0.2.7", "[2001:db8::1]"])
_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn"), include_characters="\t\n"),
    max_size=20,
)
_RECIPIENTS = st.lists(
    st.builds(
        lambda user, host, display, copy, anon: Recipient(f"sip:{user}@{host}", display, copy, anon),
        _USERS,
        _HOSTS,
        st.none() | _TEXT,
        st.sampled_from(["to", "cc", "bcc"]),
        st.booleans(),
    ),
    min_size=1,
    max_size=12,
    unique_by=lambda r: r.uri,
)


def _list_document(recipients: list[Recipient]) -> bytes:
    root = etree.Element(f"{{{RL_NS}}}resource-lists", nsmap={None: RL_NS, "cp": CP_NS})
    lst = etree.SubElement(root, f"{{{RL_NS}}}list")
    for r in recipients:
        entry = etree.SubElement(lst, f"{{{RL_NS}}}entry", uri=r.uri)
        if r.copy != "to" or r.anonymize:  # the defaults may be left out (RFC 5364 section 4)
            entry.set(f"{{{CP_NS}}}copyControl", r.copy)
        if r.anonymize:
            entry.set(f"{{{CP_NS}}}anonymize", "true")
        if r.display is not None:
            etree.SubElement(entry, f"{{{RL_NS}}}display-name").text = r.display
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return data


@given(
    recipients=_RECIPIENTS,
    payload=st.binary(max_size=200).filter(lambda b: b"--bnd" not in b),
    ptype=st.sampled_from(
        ["text/plain", "text/plain;charset=UTF-8", "message/cpim", "application/im-iscomposing+xml"]
    ),
)
def test_round_trip(recipients: list[Recipient], payload: bytes, ptype: str) -> None:
    body = multipart(
        [([("Content-Type", ptype)], payload), (LIST_HEADERS, _list_document(recipients))], "bnd"
    )
    exp = expand('multipart/mixed; boundary="bnd"', body)
    assert list(exp.recipients) == recipients
    assert (exp.payload_type, exp.payload) == (ptype, payload)
    # what each of them receives
    shown = [r for r in recipients if r.copy != "bcc" and not r.anonymize]
    for rcpt in exp.recipients:
        ctype, out = forwarded_body(exp, rcpt, boundary="sf-01")
        if not any(r.copy != "bcc" for r in recipients):
            assert (ctype, out) == (ptype, payload)
            continue
        first, hist = read_forwarded(ctype, out)
        assert first.get_content_type() == ptype.split(";")[0].lower()
        raw_payload, xml = raw_parts(ctype, out)
        assert raw_payload == payload
        assert decoded(hist) == xml
        got = history_entries(xml)
        named = [(u, c) for u, c, n in got if n is None]
        assert sorted(named, key=lambda x: x[1] != "to") == named  # to before cc
        assert named == [(r.uri, r.copy) for r in sorted(shown, key=lambda r: r.copy != "to")]
        counted = {c: int(n) for u, c, n in got if n is not None}
        for copy in ("to", "cc"):
            hidden = sum(1 for r in recipients if r.copy == copy and r.anonymize)
            assert counted.get(copy, 0) == hidden
        for r in recipients:
            if r.copy == "bcc" or r.anonymize:
                assert f'uri="{r.uri}"'.encode() not in xml
