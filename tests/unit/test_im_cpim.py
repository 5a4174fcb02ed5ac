"""CPIM (RFC 3862) parse/build and the server's IMDN (RFC 5438) and isComposing (RFC 3994) checks.

Vectors (tests/vectors/im, the same files as shared/vectors/im; see manifest.json):

* ``rfc3862-5.1-cpim-message.msg`` is printed with per-line tags; :func:`rfc3862_body`
  strips them and drops the ``m:`` line and its separator, which are the
  Message/CPIM MIME header: in SIP that is the Content-Type of the MESSAGE, not
  part of the body. Kept whole it is a MIME entity whose content is the CPIM
  message, and parses that way too.
* The RFC 5438 CPIM figures print the content headers straight after the
  message headers (no blank line). They parse as printed (the tolerance
  documented in simplefast.im.cpim), ``strict=True`` refuses them, and with the
  blank line put back they parse strictly to the same message. The §8.1 figure
  starts with the Message/CPIM MIME header line and a blank line: dropped, as
  for RFC 3862.
* The IMDN ``.xml`` vectors and the XML inside the CPIM vectors validate
  against ``rfc5438-11.1.9-imdn.rng`` (a check of the harness), and so do
  the documents that :func:`stored_notification` builds.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree  # type: ignore[import-untyped]

from simplefast.errors import RemoteProtocolError
from simplefast.im.cpim import (
    CPIM_NS,
    CpimError,
    CpimMessage,
    build_cpim,
    media_type,
    parse_cpim,
    split_header_params,
    unescape_value,
)
from simplefast.im.imdn import (
    IMDN_CT,
    IMDN_NS,
    IMDN_XML_NS,
    ISCOMPOSING_CT,
    ImdnRequest,
    imdn_request,
    is_composing,
    is_notification,
    notification_target,
    request_from_cpim,
    rfc3339,
    stored_notification,
    uri_of,
    wants_processing,
)
from simplefast.testing import mutate

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "im"
MANIFEST: dict[str, dict[str, object]] = json.loads((VECTORS / "manifest.json").read_bytes())
IMDN_X = "{" + IMDN_XML_NS + "}"
MY_FEATURES = "mid:MessageFeatures@id.foo.com"


def vector(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def rfc3862_tagged_stripped() -> bytes:
    """The RFC 3862 §5.1 figure without its per-line tags ("m: ", "s:", "h: ", "e: ")."""
    out = []
    for line in vector("rfc3862-5.1-cpim-message.msg").split(b"\r\n")[:-1]:
        tag, _, rest = line.partition(b":")
        assert tag in (b"m", b"s", b"h", b"e"), line
        out.append(rest[1:] if rest.startswith(b" ") else rest)
    return b"".join(line + b"\r\n" for line in out)


def rfc3862_body() -> bytes:
    """The SIP body of the RFC 3862 §5.1 example: tags stripped, MIME header dropped."""
    head, sep, body = rfc3862_tagged_stripped().partition(b"\r\n\r\n")
    assert head == b"Content-type: Message/CPIM" and sep
    return body


def drop_mime_header(data: bytes) -> bytes:
    """Drop the leading "Content-type: Message/CPIM" line and its blank line (RFC 5438 §8.1 figure)."""
    first, sep, rest = data.partition(b"\r\n\r\n")
    assert first.lower() == b"content-type: message/cpim" and sep
    return rest


def add_blank_line(data: bytes) -> bytes:
    """Put back the blank line RFC 5438 leaves out before the first Content-* header."""
    m = re.search(rb"^Content-", data, re.MULTILINE | re.IGNORECASE)
    assert m is not None
    return data[: m.start()] + b"\r\n" + data[m.start() :]


# name -> (body as the SIP body, message headers, content headers)
RFC5438_CPIM: dict[str, tuple[bytes, list[tuple[str, str]], list[tuple[str, str]]]] = {
    "rfc5438-7.1.1.3-cpim-im-request.msg": (
        vector("rfc5438-7.1.1.3-cpim-im-request.msg"),
        [
            ("From", "Alice <im:alice@example.com>"),
            ("To", "Bob <im:bob@example.com>"),
            ("NS", "imdn <urn:ietf:params:imdn>"),
            ("imdn.Message-ID", "34jk324j"),
            ("DateTime", "2006-04-04T12:16:49-05:00"),
            ("imdn.Disposition-Notification", "positive-delivery, negative-delivery"),
        ],
        [("Content-type", "text/plain"), ("Content-length", "12")],
    ),
    "rfc5438-7.2.1.1-cpim-delivery-notification.msg": (
        vector("rfc5438-7.2.1.1-cpim-delivery-notification.msg"),
        [
            ("From", "Bob <im:bob@example.com>"),
            ("To", "Alice <im:alice@example.com>"),
            ("NS", "imdn <urn:ietf:params:imdn>"),
            ("imdn.Message-ID", "d834jied93rf"),
        ],
        [
            ("Content-type", "message/imdn+xml"),
            ("Content-Disposition", "notification"),
            ("Content-length", "..."),
        ],
    ),
    "rfc5438-8.1-cpim-processing-notification.msg": (
        drop_mime_header(vector("rfc5438-8.1-cpim-processing-notification.msg")),
        [("From", "Bob <im:bob@example.com>"), ("To", "Alice <im:alice@example.com>")],
        [
            ("Content-type", "message/imdn+xml"),
            ("Content-Disposition", "notification"),
            ("Content-length", "..."),
        ],
    ),
    "rfc5438-8.3-cpim-aggregated.msg": (
        vector("rfc5438-8.3-cpim-aggregated.msg"),
        [
            ("From", "Bob <im:bob@example.com>"),
            ("To", "Alice <im:alice@example.com>"),
            ("NS", "imdn <urn:ietf:params:imdn>"),
            ("imdn.Message-ID", "d834jied93rf"),
        ],
        [
            ("Content-type", 'multipart/mixed; boundary="imdn-boundary"'),  # unfolded
            ("Content-Disposition", "notification"),
            ("Content-length", "..."),
        ],
    ),
}


def all_cpim_bodies() -> dict[str, bytes]:
    bodies = {name: spec[0] for name, spec in RFC5438_CPIM.items()}
    bodies["rfc3862-5.1-cpim-message.msg"] = rfc3862_body()
    return bodies


_RNG: list[Any] = []


def imdn_schema() -> Any:
    if not _RNG:
        _RNG.append(etree.RelaxNG(etree.parse(str(VECTORS / "rfc5438-11.1.9-imdn.rng"))))
    return _RNG[0]


def assert_valid_imdn(xml: bytes) -> None:
    schema = imdn_schema()
    doc = etree.fromstring(xml)
    assert schema.validate(doc), schema.error_log


def request(**changes: object) -> ImdnRequest:
    fields: dict[str, object] = {
        "message_id": "34jk324j",
        "datetime": "2006-04-04T12:16:49-05:00",
        "notifications": frozenset({"processing"}),
        "sender": "Alice <im:alice@example.com>",
        "recipient": "Bob <im:bob@example.com>",
        "original_recipient": None,
        "record_route": (),
    }
    fields.update(changes)
    return ImdnRequest(**fields)  # type: ignore[arg-type]


# -- the vectors ------------------------------------------------------------------------------------


def test_every_vector_is_known() -> None:
    used = set(RFC5438_CPIM) | {
        "rfc3862-5.1-cpim-message.msg",
        "rfc3994-5-active.xml",
        "rfc3994-6.1-iscomposing.xsd",
        "rfc5438-11.1.9-imdn.rng",
        "rfc5438-7.2.1.1-delivery-notification.xml",
        "rfc5438-7.2.1.2-display-notification.xml",
        "rfc5438-8.3-aggregated-part-1.xml",
        "rfc5438-8.3-aggregated-part-2.xml",
        "rfc5365-9-f1-resource-lists.xml",  # RFC 5365 multi-recipient MESSAGE: another module's
        "rfc5365-9-f3-resource-lists.xml",
    }
    assert set(MANIFEST) == used
    assert {p.name for p in VECTORS.iterdir()} == used | {"manifest.json"}


def test_rfc3862_example() -> None:
    for strict in (False, True):
        m = parse_cpim(rfc3862_body(), strict=strict)
        assert m.headers == (
            ("From", "MR SANDERS <im:piglet@100akerwood.com>"),
            ("To", "Depressed Donkey <im:eeyore@100akerwood.com>"),
            ("DateTime", "2000-12-13T13:40:00-08:00"),
            ("Subject", "the weather will be fine today"),
            ("Subject", ";lang=fr beau temps prevu pour aujourd'hui"),
            ("NS", "MyFeatures <mid:MessageFeatures@id.foo.com>"),
            ("Require", "MyFeatures.VitalMessageOption"),
            ("MyFeatures.VitalMessageOption", "Confirmation-requested"),
            ("MyFeatures.WackyMessageOption", "Use-silly-font"),
        )
        assert m.ns == {"": CPIM_NS, "MyFeatures": MY_FEATURES}
        assert m.content_headers == (
            ("Content-type", "text/xml; charset=utf-8"),
            ("Content-ID", "<1234567890@foo.com>"),
        )
        assert m.body == b"<body>\r\nHere is the text of my message.\r\n</body>\r\n"
    assert m.content_type == "text/xml"
    assert m.get("From") == "MR SANDERS <im:piglet@100akerwood.com>"
    assert m.get("from") == m.get("From")  # names compared without case
    assert m.get_all("Subject") == [
        "the weather will be fine today",
        ";lang=fr beau temps prevu pour aujourd'hui",
    ]
    assert split_header_params(m.get_all("Subject")[1]) == (
        {"lang": "fr"},
        "beau temps prevu pour aujourd'hui",
    )
    assert split_header_params(m.get_all("Subject")[0]) == ({}, "the weather will be fine today")
    assert m.get("VitalMessageOption", MY_FEATURES) == "Confirmation-requested"
    assert m.get("WackyMessageOption", MY_FEATURES) == "Use-silly-font"
    assert m.get("VitalMessageOption") is None  # not in the default namespace
    assert m.get("Subject", MY_FEATURES) is None
    assert m.get_content("content-id") == "<1234567890@foo.com>"
    assert uri_of(m.get("To") or "") == "im:eeyore@100akerwood.com"


def test_rfc3862_example_with_its_mime_header_is_a_cpim_entity() -> None:
    whole = parse_cpim(rfc3862_tagged_stripped())
    assert whole.headers == ()
    assert whole.content_headers == (("Content-type", "Message/CPIM"),)
    assert whole.content_type == "message/cpim"
    assert parse_cpim(whole.body) == parse_cpim(rfc3862_body())


@pytest.mark.parametrize("name", sorted(RFC5438_CPIM))
def test_rfc5438_cpim_vectors(name: str) -> None:
    data, headers, content_headers = RFC5438_CPIM[name]
    m = parse_cpim(data)
    assert m.headers == tuple(headers)
    assert m.content_headers == tuple(content_headers)
    assert m.body == data[data.index(b"\r\n\r\n") + 4 :]
    if any(n == "NS" for n, _ in headers):
        assert m.ns == {"": CPIM_NS, "imdn": IMDN_NS}
        assert m.get("Message-ID", IMDN_NS) == dict(headers)["imdn.Message-ID"]
        assert m.get("Message-ID") is None
    # printed without the blank line between the blocks: strict refuses, the fixed body agrees
    with pytest.raises(CpimError):
        parse_cpim(data, strict=True)
    assert parse_cpim(add_blank_line(data), strict=True) == m
    assert parse_cpim(add_blank_line(data)) == m


@pytest.mark.parametrize("name", sorted(all_cpim_bodies()))
def test_canonical_form_round_trips(name: str) -> None:
    m = parse_cpim(all_cpim_bodies()[name])
    again = parse_cpim(m.to_bytes(), strict=True)
    assert again == m
    assert again.to_bytes() == m.to_bytes()


@pytest.mark.parametrize("name", sorted(all_cpim_bodies()))
def test_bare_lf_line_ends_are_taken(name: str) -> None:
    crlf = parse_cpim(all_cpim_bodies()[name])
    lf = parse_cpim(all_cpim_bodies()[name].replace(b"\r\n", b"\n"))
    assert (lf.headers, lf.ns, lf.content_headers) == (crlf.headers, crlf.ns, crlf.content_headers)
    assert lf.body == crlf.body.replace(b"\r\n", b"\n")


def test_imdn_request_of_rfc5438_7_1_1_3() -> None:
    req = imdn_request("message/cpim", vector("rfc5438-7.1.1.3-cpim-im-request.msg"))
    assert req == ImdnRequest(
        message_id="34jk324j",
        datetime="2006-04-04T12:16:49-05:00",
        notifications=frozenset({"positive-delivery", "negative-delivery"}),
        sender="Alice <im:alice@example.com>",
        recipient="Bob <im:bob@example.com>",
        original_recipient=None,
        record_route=(),
    )
    assert not wants_processing(req)
    assert imdn_request("Message/CPIM; charset=utf-8", vector("rfc5438-7.1.1.3-cpim-im-request.msg")) == req


@pytest.mark.parametrize(
    "name",
    [
        "rfc5438-7.2.1.1-cpim-delivery-notification.msg",
        "rfc5438-8.1-cpim-processing-notification.msg",
        "rfc5438-8.3-cpim-aggregated.msg",  # multipart/mixed, Content-Disposition: notification
    ],
)
def test_notification_vectors(name: str) -> None:
    data = RFC5438_CPIM[name][0]
    assert is_notification("message/cpim", data)
    assert is_notification("MESSAGE/CPIM;x=y", data)
    assert imdn_request("message/cpim", data) is None
    assert not is_notification("text/plain", data)


def test_a_request_is_not_a_notification() -> None:
    data = vector("rfc5438-7.1.1.3-cpim-im-request.msg")
    assert not is_notification("message/cpim", data)
    assert not is_notification("message/cpim", b"garbage")
    assert not is_notification(None, data)


XML_VECTORS = [
    "rfc5438-7.2.1.1-delivery-notification.xml",
    "rfc5438-7.2.1.2-display-notification.xml",
    "rfc5438-8.3-aggregated-part-1.xml",
    "rfc5438-8.3-aggregated-part-2.xml",
]


@pytest.mark.parametrize("name", XML_VECTORS)
def test_imdn_xml_vectors_validate(name: str) -> None:
    assert_valid_imdn(vector(name))


@pytest.mark.parametrize(
    "name", ["rfc5438-7.2.1.1-cpim-delivery-notification.msg", "rfc5438-8.1-cpim-processing-notification.msg"]
)
def test_imdn_xml_inside_cpim_vectors_validates(name: str) -> None:
    m = parse_cpim(RFC5438_CPIM[name][0])
    assert m.content_type == IMDN_CT
    assert_valid_imdn(m.body)


def test_schema_rejects_what_it_should() -> None:
    # the harness would be worthless if the schema took anything
    bad = vector("rfc5438-7.2.1.1-delivery-notification.xml").replace(b"<delivered/>", b"<stored/>")
    assert not imdn_schema().validate(etree.fromstring(bad))


# -- imdn_request -----------------------------------------------------------------------------------


def cpim_im(
    headers: list[tuple[str, str]], *, ct: str = "text/plain", ns: dict[str, str] | None = None
) -> bytes:
    return build_cpim(headers, ct, b"Hello World", ns={"imdn": IMDN_NS} if ns is None else ns)


BASE = [
    ("From", "Alice <im:alice@example.com>"),
    ("To", "Bob <im:bob@example.com>"),
    ("DateTime", "2006-04-04T12:16:49-05:00"),
    ("imdn.Message-ID", "34jk324j"),
]


def test_imdn_request_reads_every_field() -> None:
    body = cpim_im(
        [
            *BASE,
            ("To", "Carol <im:carol@example.com>"),
            ("imdn.Disposition-Notification", "Positive-Delivery;x=1, bogus , display"),
            ("imdn.Disposition-Notification", "processing"),
            ("imdn.Original-To", "<sip:bob@example.net>"),
            ("imdn.IMDN-Record-Route", "<sip:relay2.example.com>"),
            ("imdn.IMDN-Record-Route", "Relay <sip:relay1.example.com>"),
        ]
    )
    req = imdn_request("message/cpim", body)
    assert req is not None
    assert req.notifications == frozenset({"positive-delivery", "display", "processing"})
    assert req.recipient == "Bob <im:bob@example.com>"  # the first To
    assert req.original_recipient == "<sip:bob@example.net>"
    assert req.record_route == ("<sip:relay2.example.com>", "Relay <sip:relay1.example.com>")
    assert wants_processing(req)
    assert notification_target(req) == "sip:relay2.example.com"
    assert notification_target(request()) == "im:alice@example.com"


def test_imdn_request_with_only_unknown_dispositions_asks_for_nothing() -> None:
    req = imdn_request("message/cpim", cpim_im([*BASE, ("imdn.Disposition-Notification", "telepathy")]))
    assert req is not None and req.notifications == frozenset()
    assert not wants_processing(req)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", cpim_im([*BASE, ("imdn.Disposition-Notification", "processing")])),
        (None, cpim_im([*BASE, ("imdn.Disposition-Notification", "processing")])),
        ("message/cpim", cpim_im(BASE)),  # no Disposition-Notification
        ("message/cpim", cpim_im([*BASE[:3], ("imdn.Disposition-Notification", "processing")])),  # no id
        ("message/cpim", cpim_im([*BASE[1:], ("imdn.Disposition-Notification", "processing")])),  # no From
        # no To, no DateTime
        ("message/cpim", cpim_im([BASE[0], *BASE[2:], ("imdn.Disposition-Notification", "display")])),
        ("message/cpim", cpim_im([*BASE[:2], BASE[3], ("imdn.Disposition-Notification", "display")])),
        (  # imdn prefix bound to another namespace
            "message/cpim",
            cpim_im([*BASE, ("imdn.Disposition-Notification", "processing")], ns={"imdn": "urn:x"}),
        ),
        (  # unprefixed: in the CPIM namespace, not IMDN's
            "message/cpim",
            cpim_im([*BASE[:3], ("Message-ID", "1"), ("Disposition-Notification", "processing")], ns={}),
        ),
        (  # a notification asking for notifications is still a notification
            "message/cpim",
            cpim_im([*BASE, ("imdn.Disposition-Notification", "processing")], ct="message/imdn+xml"),
        ),
        ("message/cpim", b"From: a\r\nno colon\r\n\r\n\r\nx"),
        ("message/cpim", b"\xff" * 10),
        ("message/cpim", b""),
        ("message/cpim", b"x" * 70000),
    ],
)
def test_imdn_request_is_none(content_type: str | None, body: bytes) -> None:
    assert imdn_request(content_type, body) is None


def test_request_from_cpim_lets_the_caller_see_parse_errors() -> None:
    with pytest.raises(CpimError, match="no colon"):
        parse_cpim(b"From: a\r\nno colon\r\n\r\n\r\nx")
    m = parse_cpim(vector("rfc5438-7.1.1.3-cpim-im-request.msg"))
    assert request_from_cpim(m) == imdn_request("message/cpim", vector("rfc5438-7.1.1.3-cpim-im-request.msg"))


def test_imdn_request_bounds_are_passed_on() -> None:
    body = vector("rfc5438-7.1.1.3-cpim-im-request.msg")
    assert imdn_request("message/cpim", body, max_bytes=100) is None
    assert imdn_request("message/cpim", body, max_headers=7) is None
    assert imdn_request("message/cpim", body, max_headers=8) is not None


# -- the stored notification ------------------------------------------------------------------------

NOW = 1_700_000_000.75  # 2023-11-14T22:13:20Z


def test_stored_notification() -> None:
    req = request(
        original_recipient="Bob <sip:bob@example.net>",
        record_route=("<sip:relay2.example.com>", "<sip:relay1.example.com>"),
    )
    ct, body = stored_notification(req, notifier="<sip:im.example.com>", now=NOW, message_id="n-1.x")
    assert ct == "message/cpim"
    m = parse_cpim(body, strict=True)
    assert m.headers == (
        ("NS", "imdn <urn:ietf:params:imdn>"),
        ("From", "<sip:im.example.com>"),
        ("To", "Alice <im:alice@example.com>"),
        ("DateTime", "2023-11-14T22:13:20Z"),
        ("imdn.Message-ID", "n-1.x"),
        ("imdn.IMDN-Route", "<sip:relay2.example.com>"),
        ("imdn.IMDN-Route", "<sip:relay1.example.com>"),
    )
    assert m.get_all("IMDN-Route", IMDN_NS) == list(req.record_route)
    assert m.get("Disposition-Notification", IMDN_NS) is None
    assert m.content_headers == (("Content-Type", IMDN_CT), ("Content-Disposition", "notification"))
    assert m.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    assert_valid_imdn(m.body)
    doc = etree.fromstring(m.body)
    assert doc.tag == IMDN_X + "imdn"
    assert [(el.tag.replace(IMDN_X, ""), el.text) for el in doc.iter()] == [
        ("imdn", None),
        ("message-id", "34jk324j"),
        ("datetime", "2006-04-04T12:16:49-05:00"),
        ("recipient-uri", "im:bob@example.com"),
        ("original-recipient-uri", "sip:bob@example.net"),
        ("processing-notification", None),
        ("status", None),
        ("stored", None),
    ]
    # the server's own notification is recognised as one, and asks for nothing
    assert is_notification(ct, body)
    assert imdn_request(ct, body) is None
    assert not is_composing(ct, body)


def test_stored_notification_without_original_to_names_the_recipient_twice() -> None:
    _, body = stored_notification(request(), notifier="<sip:im.example.com>", now=NOW, message_id="n2")
    m = parse_cpim(body)
    assert m.get_all("IMDN-Route", IMDN_NS) == []
    assert_valid_imdn(m.body)
    doc = etree.fromstring(m.body)
    assert doc.findtext(IMDN_X + "recipient-uri") == "im:bob@example.com"
    assert doc.findtext(IMDN_X + "original-recipient-uri") == "im:bob@example.com"


def test_stored_notification_of_the_rfc_request() -> None:
    req = imdn_request("message/cpim", vector("rfc5438-7.1.1.3-cpim-im-request.msg"))
    assert req is not None
    _, body = stored_notification(req, notifier="<im:server@example.com>", now=0.0, message_id="abc")
    m = parse_cpim(body)
    assert m.get("DateTime") == "1970-01-01T00:00:00Z"
    assert m.get("To") == req.sender
    assert_valid_imdn(m.body)


HOSTILE = "x<y>&z\"'&amp;]]><!--<![CDATA[</imdn>"


def test_hostile_values_are_escaped_in_the_xml() -> None:
    req = request(message_id=HOSTILE, datetime=HOSTILE, recipient="Bob <im:a&b\"c'd]]>e>")
    _, body = stored_notification(req, notifier="<sip:im.example.com>", now=NOW, message_id="n3")
    xml = parse_cpim(body).body
    assert HOSTILE.encode() not in xml
    doc = etree.fromstring(xml)
    assert doc.findtext(IMDN_X + "message-id") == HOSTILE
    assert doc.findtext(IMDN_X + "datetime") == HOSTILE
    assert doc.findtext(IMDN_X + "recipient-uri") == "im:a&b\"c'd]]>e"
    assert len(doc) == 5
    assert doc.find(f"{IMDN_X}processing-notification/{IMDN_X}status/{IMDN_X}stored") is not None


def test_hostile_values_from_the_wire_survive_the_round_trip() -> None:
    body = cpim_im(
        [
            ("From", "Alice <im:alice@example.com>"),
            ("To", "<im:a&b>c>"),
            ("DateTime", "<now/>"),
            ("imdn.Message-ID", "]]>&lt;"),
            ("imdn.Disposition-Notification", "processing"),
        ]
    )
    req = imdn_request("message/cpim", body)
    assert req is not None
    _, note = stored_notification(req, notifier="<sip:im.example.com>", now=NOW, message_id="n4")
    doc = etree.fromstring(parse_cpim(note).body)
    assert doc.findtext(IMDN_X + "message-id") == "]]>&lt;"
    assert doc.findtext(IMDN_X + "datetime") == "<now/>"
    assert doc.findtext(IMDN_X + "recipient-uri") == "im:a&b>c"


@pytest.mark.parametrize(
    ("changes", "notifier", "message_id"),
    [
        ({}, "<sip:im.example.com>", "has space"),
        ({}, "<sip:im.example.com>", ""),
        ({}, "<sip:im.example.com>", "caf\u00e9"),
        ({}, "<sip:im.example.com>\r\nEvil: 1", "n5"),
        ({"sender": "Alice\r\nimdn.Disposition-Notification: display"}, "<sip:im.example.com>", "n5"),
        ({"record_route": ("<sip:a>\nX: y",)}, "<sip:im.example.com>", "n5"),
        ({"message_id": "bad\x00char"}, "<sip:im.example.com>", "n5"),
    ],
)
def test_stored_notification_refuses_header_injection(
    changes: dict[str, object], notifier: str, message_id: str
) -> None:
    with pytest.raises(ValueError):
        stored_notification(request(**changes), notifier=notifier, now=NOW, message_id=message_id)


def test_stored_notification_takes_an_id_with_at_sign() -> None:
    # not an RFC 3862 token, but opaque to receivers and a common form
    _, body = stored_notification(request(), notifier="<sip:im.example.com>", now=NOW, message_id="a1.2@host")
    assert parse_cpim(body).get("Message-ID", IMDN_NS) == "a1.2@host"


def test_rfc3339() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(NOW) == "2023-11-14T22:13:20Z"


# -- isComposing ------------------------------------------------------------------------------------


def test_is_composing() -> None:
    xml = vector("rfc3994-5-active.xml")
    assert is_composing(ISCOMPOSING_CT, xml)
    assert is_composing("Application/IM-IsComposing+XML; charset=UTF-8", xml)
    wrapped = build_cpim(
        [("From", "<im:alice@example.com>"), ("To", "<im:bob@example.com>")], ISCOMPOSING_CT, xml
    )
    assert is_composing("message/cpim", wrapped)
    assert is_composing("message/CPIM", wrapped.replace(b"\r\n", b"\n"))
    assert not is_composing("text/plain", xml)
    assert not is_composing(None, xml)
    assert not is_composing("message/cpim", vector("rfc5438-7.1.1.3-cpim-im-request.msg"))
    assert not is_composing("message/cpim", xml)  # not a CPIM body
    assert not is_notification("message/cpim", wrapped)
    assert imdn_request("message/cpim", wrapped) is None


def test_iscomposing_vector_is_schema_valid() -> None:
    # a check of the vectors: the RFC 3994 example against the RFC 3994 schema
    schema = etree.XMLSchema(etree.parse(str(VECTORS / "rfc3994-6.1-iscomposing.xsd")))
    assert schema.validate(etree.fromstring(vector("rfc3994-5-active.xml"))), schema.error_log


# -- parse_cpim: refusals and details ---------------------------------------------------------------

GOOD = b"From: <im:a@example.com>\r\n\r\nContent-Type: text/plain\r\n\r\nhi"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "message headers not ended"),
        (b"From: <im:a@example.com>\r\n", "message headers not ended"),
        (b"From: <im:a@example.com>\r\n\r\nhi", "content headers not ended"),
        (b"From: <im:a@example.com>\r\n\r\nContent-Type: text/plain\r\nhi", "content headers not ended"),
        (b"From alice\r\n\r\n\r\n", "no colon"),
        (b"From: <im:a@example.com>\r\n\r\nContent-Type text/plain\r\n\r\n", "no colon"),
        (b"Fr\xc3om: x\r\n\r\n\r\n", "not UTF-8"),
        (b"From: caf\xe9\r\n\r\n\r\n", "not UTF-8"),
        (b"From: a\x00b\r\n\r\n\r\n", "control character"),
        (b"From: a\rb\r\n\r\n\r\n", "control character"),
        (b"From: a\x7f\r\n\r\n\r\n", "control character"),
        ("From: a\ufffe\r\n\r\n\r\n".encode(), "control character"),
        (b"From : a\r\n\r\n\r\n", "invalid header name"),
        (b": a\r\n\r\n\r\n", "invalid header name"),
        (b"a.b.c: x\r\n\r\n\r\n", "invalid CPIM header name"),
        (b".b: x\r\n\r\n\r\n", "invalid CPIM header name"),
        (b"F(o): x\r\n\r\n\r\n", "invalid CPIM header name"),
        (b"Fo/o: x\r\n\r\n\r\n", "invalid CPIM header name"),
        (b" From: a\r\n\r\n\r\n", "continues no header"),
        (b"NS: imdn urn:ietf:params:imdn\r\n\r\n\r\n", "malformed NS"),
        (b"NS: im.dn <urn:x>\r\n\r\n\r\n", "malformed NS"),
        (b"NS: <>\r\n\r\n\r\n", "malformed NS"),
    ],
)
def test_refused(data: bytes, reason: str) -> None:
    with pytest.raises(CpimError, match=reason) as info:
        parse_cpim(data)
    assert info.value.status_hint == 400


def test_bounds() -> None:
    with pytest.raises(CpimError, match="exceeds 20") as info:
        parse_cpim(GOOD, max_bytes=20)
    assert info.value.status_hint == 413
    assert parse_cpim(GOOD, max_bytes=len(GOOD)).body == b"hi"
    assert parse_cpim(memoryview(GOOD)) == parse_cpim(bytearray(GOOD)) == parse_cpim(GOOD)
    with pytest.raises(CpimError, match="exceeds"):
        parse_cpim(memoryview(GOOD), max_bytes=20)
    many = b"".join(b"X%d: v\r\n" % i for i in range(64)) + b"\r\n\r\n"
    assert len(parse_cpim(many).headers) == 64
    with pytest.raises(CpimError, match="more than 64 headers"):
        parse_cpim(b"Y: v\r\n" + many)
    with pytest.raises(CpimError, match="more than 64 headers"):  # both blocks count
        parse_cpim(many[:-2] + b"Content-Type: a/b\r\n\r\n")
    with pytest.raises(CpimError, match="more than 2 headers"):
        parse_cpim(GOOD.replace(b"\r\n\r\nC", b"\r\nTo: x\r\n\r\nC"), max_headers=2)


def test_cpim_error_is_safe_and_typed() -> None:
    err = CpimError('bad "thing"\r\n\\' + "x" * 300)
    assert isinstance(err, ValueError) and isinstance(err, RemoteProtocolError)
    assert '"' not in err.reason and "\r" not in err.reason and "\\" not in err.reason
    assert len(err.reason) <= 160
    again = pickle.loads(pickle.dumps(CpimError("too big", 413)))
    assert (type(again), str(again), again.status_hint) == (CpimError, "too big", 413)


def test_details_of_parsing() -> None:
    m = parse_cpim(
        b"From:\t  <im:a@example.com>  \r\n"
        b"Empty:\r\n"
        b"Folded: one\r\n \t two\r\n"
        b"NS: <urn:other>\r\n"
        b"ns: P <urn:p>\r\n"
        b"p.Thing: 1\r\n"
        b"Q.Thing: 2\r\n"
        b"\n"
        b"content-type: TEXT/Plain ; charset=x\r\n"
        b"\r\n"
        b"\r\n\r\nbody\r\n"
    )
    assert m.headers[0] == ("From", "<im:a@example.com>")
    assert m.headers[1] == ("Empty", "")
    assert m.headers[2] == ("Folded", "one two")
    assert m.ns == {"": "urn:other", "P": "urn:p"}  # an unprefixed NS rebinds the default
    assert m.get("From") is None and m.get("From", "urn:other") == "<im:a@example.com>"
    assert m.get("thing", "urn:p") == "1"  # prefix and name compared without case
    assert m.get_all("Thing", "urn:p") == ["1"]  # Q is undeclared: in no namespace
    assert m.content_type == "text/plain"
    assert m.body == b"\r\n\r\nbody\r\n"  # the content is taken as is


def test_a_later_ns_declaration_wins() -> None:
    m = parse_cpim(b"NS: a <urn:1>\r\na.X: v\r\nNS: a <urn:2>\r\n\r\n\r\n")
    assert m.ns == {"": CPIM_NS, "a": "urn:2"}
    assert m.get("X", "urn:2") == "v" and m.get("X", "urn:1") is None


def test_empty_blocks_are_allowed() -> None:
    m = parse_cpim(b"\r\n\r\n")
    assert m == CpimMessage(headers=(), ns={"": CPIM_NS}, content_headers=(), body=b"")
    assert m.content_type is None
    assert parse_cpim(b"\n\nbody") == CpimMessage((), {"": CPIM_NS}, (), b"body")
    assert parse_cpim(b"A: b\r\n\r\nContent-Type: ;x\r\n\r\n").content_type is None


def test_message_is_hashable_and_frozen() -> None:
    m = parse_cpim(GOOD)
    assert hash(m) == hash(parse_cpim(GOOD))
    with pytest.raises(AttributeError):
        m.body = b""  # type: ignore[misc]


def test_media_type() -> None:
    assert media_type(" Message/CPIM ; a=b") == "message/cpim"
    assert media_type(None) is None
    assert media_type("") is None
    assert media_type(";x") is None


def test_split_header_params() -> None:
    assert split_header_params(';lang=fr;x="a b" text') == ({"lang": "fr", "x": '"a b"'}, "text")
    assert split_header_params(";LANG=en") == ({"lang": "en"}, "")
    assert split_header_params(";lang") == ({}, ";lang")
    assert split_header_params(";lang=fr") == ({"lang": "fr"}, "")
    assert split_header_params("plain ;lang=fr") == ({}, "plain ;lang=fr")


def test_unescape_value() -> None:
    assert unescape_value(r"a\"b\\c\u00e9\n\r\t\b\'") == "a\"b\\c\u00e9\n\r\t\b'"
    assert unescape_value(r"keep \q and \u12 and trailing \ ") == r"keep \q and \u12 and trailing \ "
    assert unescape_value("\\") == "\\"


# -- build_cpim -------------------------------------------------------------------------------------


def test_build_cpim_layout() -> None:
    data = build_cpim(
        [("From", "<im:a@example.com>"), ("imdn.Message-ID", "1")],
        "text/plain; charset=utf-8",
        b"hi\r\n",
        ns={"imdn": IMDN_NS, "": "urn:d"},
        content_headers=[("Content-ID", "<x@y>")],
    )
    assert data == (
        b"NS: imdn <urn:ietf:params:imdn>\r\nNS: <urn:d>\r\n"
        b"From: <im:a@example.com>\r\nimdn.Message-ID: 1\r\n\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-ID: <x@y>\r\n\r\nhi\r\n"
    )


@pytest.mark.parametrize(
    ("headers", "content_type", "ns", "content_headers"),
    [
        ([("Bad Name", "v")], "text/plain", None, None),
        ([("a.b.c", "v")], "text/plain", None, None),
        ([("Content-Type", "v")], "text/plain", None, None),  # belongs in content_headers
        ([("From", "a\r\nb")], "text/plain", None, None),
        ([("From", " padded")], "text/plain", None, None),
        ([], "text/plain\r\nX: y", None, None),
        ([], "text/plain", {"a.b": "urn:x"}, None),
        ([], "text/plain", {"a": "urn:x y"}, None),
        ([], "text/plain", {"a": "<urn:x>"}, None),
        ([], "text/plain", {"a": ""}, None),
        ([], "text/plain", None, [("Content-Type", "text/html")]),
        ([], "text/plain", None, [("Bad:Name", "x")]),
        ([], "text/plain", None, [("X", "a\nb")]),
    ],
)
def test_build_cpim_refuses_what_would_not_read_back(
    headers: list[tuple[str, str]],
    content_type: str,
    ns: dict[str, str] | None,
    content_headers: list[tuple[str, str]] | None,
) -> None:
    with pytest.raises(ValueError):
        build_cpim(headers, content_type, b"", ns=ns, content_headers=content_headers)


# -- properties -------------------------------------------------------------------------------------

_NAMECHAR = "abcXYZ019!#$%&'*+-^_`|~"
names = st.text(alphabet=_NAMECHAR, min_size=1, max_size=8)
cpim_names = st.builds(lambda p, n: f"{p}.{n}" if p else n, st.one_of(st.just(""), names), names).filter(
    lambda n: not n.lower().startswith("content-")
)
mime_names = st.text(alphabet=_NAMECHAR + ".", min_size=1, max_size=8).filter(
    lambda n: n.lower() != "content-type"
)
values = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x7f\ufffe\uffff"),
    max_size=20,
).map(lambda s: re.sub("[\x00-\x1f]", "", s).strip(" \t"))
uris = st.text(alphabet="abc:/@.-_0189%", min_size=1, max_size=12)


@given(
    headers=st.lists(st.tuples(cpim_names, values), max_size=10),
    content_type=values,
    body=st.binary(max_size=64),
    ns=st.dictionaries(st.one_of(st.just(""), names), uris, max_size=3),
    content_headers=st.lists(st.tuples(mime_names, values), max_size=4),
)
def test_build_parse_round_trip(
    headers: list[tuple[str, str]],
    content_type: str,
    body: bytes,
    ns: dict[str, str],
    content_headers: list[tuple[str, str]],
) -> None:
    data = build_cpim(headers, content_type, body, ns=ns, content_headers=content_headers)
    for strict in (False, True):
        m = parse_cpim(data, strict=strict)
        ns_lines = tuple(("NS", f"{p} <{u}>" if p else f"<{u}>") for p, u in ns.items())
        assert m.headers == ns_lines + tuple(headers)
        assert m.content_headers == (("Content-Type", content_type), *content_headers)
        assert m.body == body
        expected_ns = {"": CPIM_NS}
        expected_ns.update(ns)
        assert m.ns == expected_ns
        assert m.to_bytes() == data
        assert m.content_type == media_type(content_type)


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_cpim_error(data: bytes) -> None:
    try:
        m = parse_cpim(data)
    except CpimError:
        return
    assert parse_cpim(m.to_bytes()) == m


SOUP = [b"From: <im:a>", b"NS: x <u:1>", b"x.Y: 1", b"", b" folded", b"Content-Type: a/b", b"Hello", b"\xff"]


@given(st.lists(st.sampled_from([*SOUP, b"a\rb", b":"]), max_size=12), st.sampled_from([b"\r\n", b"\n"]))
def test_header_soup_parses_or_raises_cpim_error(lines: list[bytes], eol: bytes) -> None:
    data = eol.join(lines)
    try:
        m = parse_cpim(data)
    except CpimError:
        return
    assert parse_cpim(m.to_bytes()) == m


@given(st.sampled_from(sorted(all_cpim_bodies())), st.data())
def test_mutated_vectors_parse_or_raise_cpim_error(name: str, data: st.DataObject) -> None:
    body = mutate(all_cpim_bodies()[name], data)
    try:
        parse_cpim(body)
    except CpimError:
        pass
    # the IMDN helpers never raise, whatever the body
    req = imdn_request("message/cpim", body)
    is_notification("message/cpim", body)
    is_composing("message/cpim", body)
    if req is not None:
        _, note = stored_notification(req, notifier="<sip:im.example.com>", now=NOW, message_id="m")
        assert is_notification("message/cpim", note)
        if uri_ok(req):
            assert_valid_imdn(parse_cpim(note).body)


def uri_ok(req: ImdnRequest) -> bool:
    """True when the URIs are ones libxml2's anyURI check takes (mutations can put spaces in them)."""
    return not re.search(r"\s", uri_of(req.recipient) + uri_of(req.original_recipient or ""))
