"""RFC 4475 (SIP Torture Test Messages): the 33 archived messages in
tests/vectors/sip/rfc4475, run through both codec twins.

Each message goes through ``parse_message`` and ``validate_request`` and must
end as the table below says; the message's fields are then checked against
what the RFC's section text says about that message. The files are bytes
(CRLF, NUL escapes, UTF-8, binary MIME parts) and are read in binary.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from simplefast._sip_types import NameAddr, Via
from simplefast.errors import SipParseError
from simplefast.testing import RFC4475

MANIFEST: dict[str, dict[str, Any]] = json.loads((RFC4475 / "manifest.json").read_text("utf-8"))

# name -> (outcome, status):
#   ("ok", None)            parses, validate_request returns None
#   ("validate", status)    parses, validate_request returns (status, reason)
#   ("parse_error", status) parse_message raises SipParseError with that status_hint
EXPECTED: dict[str, tuple[str, int | None]] = {
    # 3.1.1 valid messages
    "esc02": ("ok", None),
    "escnull": ("ok", None),
    "mpart01": ("ok", None),
    "noreason": ("ok", None),
    "semiuri": ("ok", None),
    "transports": ("ok", None),
    "unreason": ("ok", None),
    # 3.1.2 invalid messages
    "badinv01": ("validate", 400),
    "scalar02": ("validate", 400),
    "ltgtruri": ("parse_error", 400),
    "lwsruri": ("parse_error", 400),
    "lwsstart": ("parse_error", 400),
    "trws": ("parse_error", 400),
    "escruri": ("validate", 400),
    # "reject as malformed, or ignore the Date": the codec rejects. RFC 3261
    # section 25.1 fixes the rfc1123-date zone to "GMT", so "EST" is a syntax
    # error of a header validate_request checks; answering 400 is the stricter
    # of the two choices RFC 4475 section 3.1.2.12 allows.
    "baddate": ("validate", 400),
    "regbadct": ("validate", 400),
    # The archived copy has no empty line closing the header section, so the
    # framing itself fails (400) before the display names are looked at;
    # test_baddn_display_name_is_rejected_once_framed checks the display names.
    "baddn": ("parse_error", 400),
    "badvers": ("validate", 505),
    "mismatch02": ("validate", 400),
    # A response: "drop; must not crash". The parser raises SipParseError (the
    # transport drops a response it cannot parse); status_hint stays 400.
    "bigcode": ("parse_error", 400),
    # 3.2 transaction layer
    # "400, or fall back to RFC 2543 transaction matching": the codec accepts it
    # (validate_request has no branch check) and via_branch is exactly the magic
    # cookie, so the transaction layer can see there is no RFC 3261 transaction
    # id and match the RFC 2543 way. RFC 4475 section 3.2.1 allows either.
    "badbranch": ("ok", None),
    # 3.3 application layer
    "insuf": ("validate", 400),
    "unkscm": ("validate", 416),
    # Well-formed; "registrar: 400 (To must be SIP/SIPS)" is the registrar's
    # decision (RFC 3261 section 10.3 step 3), not the codec's: it accepts the
    # message as a proxy would.
    "unksm2": ("ok", None),
    # 415 is the UAS's decision on Content-Type; the codec accepts the message.
    "invut": ("ok", None),
    # Unknown Authorization scheme: well-formed, authentication is a later layer.
    "regaut01": ("ok", None),
    "multi01": ("validate", 400),
    # A response: validate_request returns None (nothing to drop here); refusing
    # to send to the broadcast Via is the transport's job (RFC 4475 3.3.10).
    "bcast": ("ok", None),
    # 483 is a proxy's decision (RFC 3261 16.3 step 2); Max-Forwards 0 is legal.
    "zeromf": ("ok", None),
    "cparam01": ("ok", None),
    "cparam02": ("ok", None),
    "regescrt": ("ok", None),
    # 406 is the UAS's decision on Accept; the message is well-formed.
    "sdp01": ("ok", None),
}

# What the error must name, for every message that is not "ok": a regex on
# the SipParseError message or on the validate_request reason.
ERROR_TEXT: dict[str, str] = {
    "badinv01": r"Via",
    "scalar02": r"CSeq|Max-Forwards|Expires",
    "ltgtruri": r"Request-URI",
    "lwsruri": r"Request-(Line|URI)",
    "lwsstart": r"Request-(Line|URI)",
    "trws": r"Request-Line|version",
    "escruri": r"Request-URI.*header",
    "baddate": r"Date",
    "regbadct": r"Contact",
    "baddn": r"empty line|not terminated",
    "badvers": r"[Vv]ersion",
    "mismatch02": r"CSeq",
    "bigcode": r"status code",
    "insuf": r"^Missing (Call-ID|From|To) header",
    "unkscm": r"[Ss]cheme",
    "multi01": r"(Multiple|more than one|repeated).*(Call-ID|From|To|CSeq|Max-Forwards)",
}


def _load(name: str) -> bytes:
    return (RFC4475 / f"{name}.dat").read_bytes()


# ---------------------------------------------------------------- per-message field checks
#
# Each check gets the parsed message and the twin module. Facts come from the
# section of RFC 4475 that describes the message.


def _esc02(msg: Any, m: ModuleType) -> None:
    # 3.1.1.5: % is not an escape in a method, a display name, a branch or a
    # header name. RE%47IST%45R is an unknown method, not REGISTER.
    assert msg.method == "RE%47IST%45R"
    assert msg.method != "REGISTER"
    assert msg.uri == "sip:registrar.example.com"
    assert msg.cseq_num == 29344
    assert msg.cseq_method == "RE%47IST%45R"
    assert msg.to_addr() == NameAddr("%Z%45", "sip:resource@example.com", {})
    assert msg.from_addr() == NameAddr("%Z%45", "sip:resource@example.com", {"tag": "f232jadfj23"})
    assert msg.via_branch == "z9hG4bK209%fzsnel234"
    assert msg.via_transport == "TCP"
    assert msg.via_host == "host.example.com"
    # C%6Fntact is an unknown header, not a second spelling of Contact.
    assert msg.count("Contact") == 2
    assert [c.uri for c in msg.contacts()] == [
        "sip:alias1@host1.example.com",
        "sip:alias3@host3.example.com",
    ]
    assert msg.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert ("C%6Fntact", "<sip:alias2@host2.example.com>") in msg.headers()
    assert msg.max_forwards == 70
    assert msg.content_length == 0


def _escnull(msg: Any, m: ModuleType) -> None:
    # 3.1.1.4: %00 is an ordinary escaped octet in the user part.
    assert msg.method == "REGISTER"
    assert msg.uri == "sip:example.com"
    to = msg.to_addr()
    assert to == NameAddr(None, "sip:null-%00-null@example.com", {})
    assert m.parse_uri(to.uri).user == "null-%00-null"
    assert msg.from_tag == "839923423"
    assert msg.from_addr().uri == "sip:null-%00-null@example.com"
    assert [c.uri for c in msg.contacts()] == ["sip:%00@host5.example.com", "sip:%00%00@host5.example.com"]
    first, second = (m.parse_uri(c.uri) for c in msg.contacts())
    assert (first.user, first.host) == ("%00", "host5.example.com")
    assert second.user == "%00%00"
    # escapes are kept as written; unescaped they differ by one NUL octet
    assert not first.equivalent(second)
    assert msg.contact_uri == "sip:%00@host5.example.com"
    assert msg.cseq_num == 14398234
    # "L:0": upper-case compact form with no space
    assert msg.content_length == 0
    assert msg.get("content-length") == "0"


def _mpart01(msg: Any, m: ModuleType) -> None:
    # 3.1.1.11: multipart/mixed body with a binary part, framed by Content-Length.
    assert msg.method == "MESSAGE"
    assert msg.uri == "sip:kumiko@example.org"
    assert msg.content_length == 553
    assert len(msg.body) == 553
    assert msg.body.startswith(b"--7a9cbec02ceef655\r\nContent-Type: text/plain\r\n")
    assert msg.body.endswith(b"\r\n--7a9cbec02ceef655--\r\n")
    assert b"\x00" in msg.body  # binary octets survive
    assert msg.get("Content-Type") == "multipart/mixed;boundary=7a9cbec02ceef655"
    assert msg.get("c") == "multipart/mixed;boundary=7a9cbec02ceef655"
    assert msg.get("content-transfer-encoding") == "binary"
    assert msg.via_host == "127.0.0.1"
    assert msg.via_port == 5070
    assert msg.via_branch == "z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-"
    assert msg.via_rport == 0  # ";rport" without a value (RFC 3581)
    assert msg.get_all("Route") == ["<sip:127.0.0.1:5080>"]
    assert msg.get("y") is not None and msg.get("y").startswith("r5mwreLuyDRYBi/0TiPwEsY3rEVsk")
    assert msg.get("y").endswith("WYUA=")
    assert msg.call_id == "3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA.."
    assert (msg.cseq_num, msg.cseq_method) == (1, "MESSAGE")
    assert msg.from_tag == "2fb0dcc9"
    assert msg.to_tag is None
    assert msg.contact_uri == "sip:fluffy@127.0.0.1:5070"
    assert msg.get("date") == "Sat, 15 Oct 2005 04:44:56 GMT"
    assert msg.get("user-agent") == "SIPimp.org/0.2.5 (curses)"


def _noreason(msg: Any, m: ModuleType) -> None:
    # 3.1.1.13: "SIP/2.0 100 " with an empty reason phrase.
    assert not msg.is_request
    assert msg.status == 100
    assert msg.reason == ""
    assert msg.method is None and msg.uri is None
    assert msg.version == "SIP/2.0"
    assert msg.call_id == "noreason.asndj203insdf99223ndf"
    assert (msg.cseq_num, msg.cseq_method) == (35, "INVITE")
    assert msg.from_tag == "39ansfi3"
    assert msg.to_tag == "902jndnke3"
    assert msg.via_branch == "z9hG4bK2398ndaoe"
    assert msg.content_length == 0
    assert msg.body == b""


def _semiuri(msg: Any, m: ModuleType) -> None:
    # 3.1.1.9: the ';' belongs to the user part ("user;par=u%40example.net"),
    # the host is example.com and there are no URI parameters.
    assert msg.method == "OPTIONS"
    assert msg.uri == "sip:user;par=u%40example.net@example.com"
    ruri = m.parse_uri(msg.uri)
    assert ruri.user == "user;par=u%40example.net"
    assert ruri.host == "example.com"
    assert ruri.params == {}
    assert ruri.port is None
    # Accept is folded over three lines
    accept = [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]
    assert msg.count("Accept") == 1
    assert msg.get("Accept") == ", ".join(accept)
    assert msg.get_all("Accept") == accept
    assert msg.max_forwards == 3
    assert msg.from_tag == "33242"
    assert msg.to_addr().uri == "sip:j_user@example.com"


def _transports(msg: Any, m: ModuleType) -> None:
    # 3.1.1.10: UDP, SCTP, TLS, an unknown transport and TCP.
    vias = msg.vias()
    assert [v.transport for v in vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert [v.host for v in vias] == [f"t{i}.example.com" for i in range(1, 6)]
    assert [v.branch for v in vias] == [
        "z9hG4bKkdjuw",
        "z9hG4bKklasjdhf",
        "z9hG4bK2980unddj",
        "z9hG4bKasd0f3en",
        "z9hG4bK0a9idfnee",
    ]
    assert all(v.protocol == "SIP/2.0" and v.port is None for v in vias)
    assert msg.count("via") == 5
    assert msg.via_transport == "UDP"
    assert msg.via_host == "t1.example.com"
    # "Call-ID:  transports..." has two spaces after the colon
    assert msg.call_id == "transports.kijh4akdnaqjkwendsasfdj"
    assert (msg.cseq_num, msg.cseq_method) == (60, "OPTIONS")
    assert msg.from_addr() == NameAddr(None, "sip:caller@example.com", {"tag": "323"})


def _unreason(msg: Any, m: ModuleType) -> None:
    # 3.1.1.12: a UTF-8 reason phrase ("200 = 2**3 * 5**2 but 199 is prime" in Russian).
    assert msg.status == 200
    assert msg.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    assert msg.content_length == 154
    assert len(msg.body) == 154
    assert msg.body.startswith(b"v=0\r\n") and msg.body.endswith(b"a=rtpmap:31 LPC\r\n")
    assert msg.to_tag == "2229"
    assert msg.from_tag == "11141343"
    assert msg.contact_uri == "sip:user@host198.example.com"


def _badinv01(msg: Any, m: ModuleType) -> None:
    # 3.1.2.1: "Via: SIP/2.0/UDP 192.0.2.15;;,;,," and a Contact with ";;;;".
    assert msg.method == "INVITE"
    # get_all splits the list and keeps the empty elements
    assert msg.get_all("Via") == ["SIP/2.0/UDP 192.0.2.15;;", ";", "", ""]
    with pytest.raises(SipParseError) as ei:
        msg.vias()
    assert ei.value.status_hint == 400
    with pytest.raises(SipParseError):
        msg.via_branch  # noqa: B018
    with pytest.raises(SipParseError):
        msg.contacts()
    assert msg.content_length == 152
    assert len(msg.body) == 152


def _scalar02(msg: Any, m: ModuleType) -> None:
    # 3.1.2.4: CSeq, Max-Forwards, Expires and a Contact expires past their ranges.
    assert msg.method == "REGISTER"
    for field in ("cseq_num", "max_forwards", "expires"):
        with pytest.raises(SipParseError) as ei:
            getattr(msg, field)
        assert ei.value.status_hint == 400
        assert "range" in str(ei.value)
    assert msg.get("Max-Forwards") == "300"
    assert msg.get("CSeq") == "36893488147419103232 REGISTER"
    # the Contact is folded; its expires is a header parameter, not checked by the accessor
    assert msg.get("Contact") == "<sip:user@host129.example.com> ;expires=280297596632815"
    assert msg.contacts() == [NameAddr(None, "sip:user@host129.example.com", {"expires": "280297596632815"})]
    assert msg.via_transport == "TCP"
    assert msg.content_length == 0


def _escruri(msg: Any, m: ModuleType) -> None:
    # 3.1.2.11: the Request-URI carries an escaped Route header.
    assert msg.method == "INVITE"
    assert msg.uri == "sip:user@example.com?Route=%3Csip:example.com%3E"
    ruri = m.parse_uri(msg.uri)
    assert ruri.headers == (("Route", "%3Csip:example.com%3E"),)
    assert ruri.host == "example.com"
    assert msg.cseq_num == 149209342
    assert msg.content_length == 150


def _baddate(msg: Any, m: ModuleType) -> None:
    # 3.1.2.12: Date in EST instead of GMT.
    assert msg.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"
    assert (msg.cseq_num, msg.cseq_method) == (1392934, "INVITE")
    assert msg.content_length == 150
    assert len(msg.body) == 150


def _regbadct(msg: Any, m: ModuleType) -> None:
    # 3.1.2.13: a Contact URI with '?' must be a name-addr (in <>).
    assert msg.get("Contact") == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"
    with pytest.raises(SipParseError, match=r"<>") as ei:
        msg.contacts()
    assert ei.value.status_hint == 400
    assert msg.via_port == 5060
    assert msg.via_host == "135.180.130.133"


def _badvers(msg: Any, m: ModuleType) -> None:
    # 3.1.2.16: SIP/7.0 on the request line (and in Via).
    assert msg.version == "SIP/7.0"
    assert msg.method == "OPTIONS"
    assert msg.vias()[0].protocol == "SIP/7.0"


def _mismatch02(msg: Any, m: ModuleType) -> None:
    # 3.1.2.18: NEWMETHOD on the request line, INVITE in CSeq.
    assert msg.method == "NEWMETHOD"
    assert msg.cseq_method == "INVITE"
    assert msg.cseq_num == 8
    assert msg.content_length == 138
    assert len(msg.body) == 138


def _badbranch(msg: Any, m: ModuleType) -> None:
    # 3.2.1: the branch is exactly the magic cookie.
    assert msg.via_branch == "z9hG4bK"
    assert msg.via_host == "192.0.2.1"
    assert msg.via_port is None
    assert msg.via_transport == "UDP"
    assert msg.max_forwards == 3
    assert msg.from_tag == "33242"
    assert msg.to_tag is None
    assert (msg.cseq_num, msg.cseq_method) == (8, "OPTIONS")
    assert msg.content_length == 0


def _insuf(msg: Any, m: ModuleType) -> None:
    # 3.3.1: no Call-ID, From or To.
    assert msg.call_id is None
    assert msg.from_addr() is None and msg.to_addr() is None
    assert msg.from_tag is None and msg.to_tag is None
    assert msg.count("Call-ID") == msg.count("From") == msg.count("To") == 0
    assert (msg.cseq_num, msg.cseq_method) == (193942, "INVITE")
    assert msg.via_branch == "z9hG4bKkdj.insuf"
    assert msg.content_length == 152
    assert len(msg.body) == 152


def _unkscm(msg: Any, m: ModuleType) -> None:
    # 3.3.2: well-formed request with an unknown Request-URI scheme.
    assert msg.uri == "nobodyKnowsThisScheme:totallyopaquecontent"
    ruri = m.parse_uri(msg.uri)
    assert ruri.scheme == "nobodyknowsthisscheme"
    assert ruri.opaque == "totallyopaquecontent"
    assert ruri.host is None and ruri.user is None
    # the To is a normal SIP URI (the proxy must not route on it)
    assert msg.to_addr().uri == "sip:user@example.com"


def _unksm2(msg: Any, m: ModuleType) -> None:
    # 3.3.4: non-SIP schemes in To, From and Contact.
    assert msg.to_addr() == NameAddr(None, "isbn:2983792873", {})
    assert msg.from_addr() == NameAddr(None, "http://www.example.com", {"tag": "3234233"})
    assert msg.contacts() == [NameAddr(None, "name:John_Smith", {})]
    to = m.parse_uri("isbn:2983792873")
    assert (to.scheme, to.opaque, to.host) == ("isbn", "2983792873", None)
    assert m.parse_uri("http://www.example.com").opaque == "//www.example.com"
    assert msg.via_port == 5060


def _invut(msg: Any, m: ModuleType) -> None:
    # 3.3.6: unknown Content-Type; the 40-octet body is kept as is.
    assert msg.get("Content-Type") == "application/unknownformat"
    assert msg.content_length == 40
    assert msg.body == b'<audio>\r\n <pcmu port="443"/>\r\n</audio>\r\n'
    assert msg.contact_uri == "sip:caller@host5.example.net"


def _regaut01(msg: Any, m: ModuleType) -> None:
    # 3.3.7: Authorization with an unknown scheme; not a list header.
    assert msg.get_all("Authorization") == ["NoOneKnowsThisScheme opaque-data=here"]
    assert msg.via_transport == "TCP"
    assert msg.via_host == "192.0.2.253"
    # "Content-Length:0" without a space
    assert msg.content_length == 0
    assert msg.max_forwards == 8


def _multi01(msg: Any, m: ModuleType) -> None:
    # 3.3.8: several values of single-value headers.
    for name in ("Call-ID", "CSeq", "To", "From", "Max-Forwards", "Contact"):
        assert msg.count(name) == 2, name
    assert msg.get_all("Call-ID") == ["multi01.98asdh@192.0.2.1", "multi01.98asdh@192.0.2.2"]
    assert msg.get_all("CSeq") == ["5 INVITE", "59 INVITE"]
    assert msg.call_id == "multi01.98asdh@192.0.2.1"  # the first one
    assert msg.content_length == 154
    assert len(msg.body) == 154


def _bcast(msg: Any, m: ModuleType) -> None:
    # 3.3.10: 200 OK whose second Via is the broadcast address.
    assert (msg.status, msg.reason) == (200, "OK")
    assert msg.vias() == [
        Via("SIP/2.0", "UDP", "192.0.2.198", None, {"branch": "z9hG4bK1324923"}),
        Via("SIP/2.0", "UDP", "255.255.255.255", None, {"branch": "z9hG4bK1saber23"}),
    ]
    assert msg.via_host == "192.0.2.198"
    assert (msg.cseq_num, msg.cseq_method) == (35, "INVITE")
    assert msg.to_tag == "2229"
    assert msg.content_length == 154
    assert len(msg.body) == 154


def _zeromf(msg: Any, m: ModuleType) -> None:
    # 3.3.11: Max-Forwards 0 is legal.
    assert msg.max_forwards == 0
    assert msg.method == "OPTIONS"
    assert msg.cseq_num == 39234321
    assert msg.via_branch == "z9hG4bKkdjuw2349i"


def _cparam01(msg: Any, m: ModuleType) -> None:
    # 3.3.12: "unknownparam" outside <> is a contact parameter, not a URI parameter.
    assert msg.contacts() == [NameAddr(None, "sip:+19725552222@gw1.example.net", {"unknownparam": None})]
    uri = m.parse_uri(msg.contact_uri)
    assert uri.params == {}
    assert (uri.user, uri.host) == ("+19725552222", "gw1.example.net")
    assert msg.method == "REGISTER" and msg.uri == "sip:example.com"
    assert msg.via_host == "saturn.example.com" and msg.via_port == 5060
    assert msg.from_tag == "DkfVgjkrtMwaerKKpe"


def _cparam02(msg: Any, m: ModuleType) -> None:
    # 3.3.13: "unknownparam" inside <> is a URI parameter.
    assert msg.contacts() == [NameAddr(None, "sip:+19725552222@gw1.example.net;unknownparam", {})]
    uri = m.parse_uri(msg.contact_uri)
    assert uri.params == {"unknownparam": None}
    assert (uri.user, uri.host) == ("+19725552222", "gw1.example.net")
    assert msg.from_tag == "838293"


def _regescrt(msg: Any, m: ModuleType) -> None:
    # 3.3.14: "M:" compact Contact whose URI has an escaped Route header.
    assert msg.count("Contact") == 1
    assert msg.contact_uri == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"
    uri = m.parse_uri(msg.contact_uri)
    assert uri.headers == (("Route", "%3Csip:sip.example.com%3E"),)
    assert (uri.user, uri.host, uri.params) == ("user", "example.com", {})
    assert msg.from_tag == "8"
    assert msg.content_length == 0


def _sdp01(msg: Any, m: ModuleType) -> None:
    # 3.3.15: Accept does not list application/sdp.
    assert msg.get_all("Accept") == ["text/nobodyKnowsThis"]
    assert msg.get("Content-Type") == "application/sdp"
    assert msg.content_length == 150
    assert len(msg.body) == 150


CHECKS: dict[str, Callable[[Any, ModuleType], None]] = {
    "esc02": _esc02,
    "escnull": _escnull,
    "mpart01": _mpart01,
    "noreason": _noreason,
    "semiuri": _semiuri,
    "transports": _transports,
    "unreason": _unreason,
    "badinv01": _badinv01,
    "scalar02": _scalar02,
    "escruri": _escruri,
    "baddate": _baddate,
    "regbadct": _regbadct,
    "badvers": _badvers,
    "mismatch02": _mismatch02,
    "badbranch": _badbranch,
    "insuf": _insuf,
    "unkscm": _unkscm,
    "unksm2": _unksm2,
    "invut": _invut,
    "regaut01": _regaut01,
    "multi01": _multi01,
    "bcast": _bcast,
    "zeromf": _zeromf,
    "cparam01": _cparam01,
    "cparam02": _cparam02,
    "regescrt": _regescrt,
    "sdp01": _sdp01,
}


# ---------------------------------------------------------------- the table itself


def test_table_covers_exactly_the_manifest() -> None:
    assert set(EXPECTED) == set(MANIFEST)
    assert len(EXPECTED) == 33
    # every message that parses has a field check; every non-ok one names its error
    assert set(CHECKS) == {n for n, (kind, _) in EXPECTED.items() if kind != "parse_error"}
    assert set(ERROR_TEXT) == {n for n, (kind, _) in EXPECTED.items() if kind != "ok"}


def test_table_agrees_with_manifest_validity() -> None:
    # valid: false -> the codec must not accept the message outright
    for name, entry in MANIFEST.items():
        if not entry["valid"]:
            assert EXPECTED[name][0] != "ok", name


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_file_matches_manifest(name: str) -> None:
    data = _load(name)
    assert len(data) == MANIFEST[name]["bytes"]
    assert hashlib.sha256(data).hexdigest() == MANIFEST[name]["sha256"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_vector(impl: SimpleNamespace, name: str) -> None:
    m = impl.sipmsg
    data = _load(name)
    kind, status = EXPECTED[name]
    if kind == "parse_error":
        with pytest.raises(SipParseError) as ei:
            m.parse_message(data)
        assert type(ei.value) is SipParseError
        assert ei.value.status_hint == status
        assert re.search(ERROR_TEXT[name], str(ei.value)), str(ei.value)
        return
    msg = m.parse_message(data)
    result = m.validate_request(msg)
    if kind == "ok":
        assert result is None
    else:
        assert result is not None
        got_status, reason = result
        assert got_status == status
        assert isinstance(reason, str) and reason
        assert re.search(ERROR_TEXT[name], reason), reason
    # every archived message that parses is framed exactly: start line to end of body
    assert msg.to_bytes() == data
    CHECKS[name](msg, m)


# ---------------------------------------------------------------- follow-ups on single vectors


def test_baddn_display_name_is_rejected_once_framed(impl: SimpleNamespace) -> None:
    # RFC 4475 3.1.2.15: "Bell, Alexander" is an unquoted display name with a
    # comma. With the missing empty line added the message frames, and the
    # display names are what gets it rejected.
    m = impl.sipmsg
    msg = m.parse_message(_load("baddn") + b"\r\n")
    assert msg.get("From") == "Bell, Alexander <sip:a.g.bell@example.com>;tag=43"
    with pytest.raises(SipParseError, match="quoted") as ei:
        msg.from_addr()
    assert ei.value.status_hint == 400
    with pytest.raises(SipParseError, match="quoted"):
        msg.to_addr()
    result = m.validate_request(msg)
    assert result is not None
    assert result[0] == 400
    assert re.search(r"From|To", result[1]), result[1]


def test_baddn_framing_error_is_about_the_header_section(impl: SimpleNamespace) -> None:
    with pytest.raises(SipParseError) as ei:
        impl.sipmsg.parse_message(_load("baddn"))
    assert str(ei.value) == "header section is not terminated by an empty line"


def test_scalar02_each_overlarge_value_is_rejected_alone(impl: SimpleNamespace) -> None:
    # RFC 4475 3.1.2.4: each of the overlarge values on its own gets a 400.
    m = impl.sipmsg
    data = _load("scalar02")
    fixes = {
        b"CSeq: 36893488147419103232 REGISTER": b"CSeq: 1 REGISTER",
        b"Max-Forwards: 300": b"Max-Forwards: 70",
        b"Expires: 1" + b"0" * 100: b"Expires: 3600",
        b";expires=280297596632815": b";expires=3600",
    }
    for wrong in fixes:
        assert data.count(wrong) == 1
    # all four fixed: accepted
    fixed = data
    for wrong, right in fixes.items():
        fixed = fixed.replace(wrong, right)
    assert m.validate_request(m.parse_message(fixed)) is None
    # only one left wrong: 400 naming it
    names = {0: "CSeq", 1: "Max-Forwards", 2: "Expires", 3: "Contact"}
    for keep, (wrong, _) in enumerate(fixes.items()):
        one = data
        for i, (w, r) in enumerate(fixes.items()):
            if i != keep:
                one = one.replace(w, r)
        result = m.validate_request(m.parse_message(one))
        assert result is not None and result[0] == 400, wrong
        assert names[keep] in result[1], result


def test_bigcode_is_not_a_crash_but_a_clean_error(impl: SimpleNamespace) -> None:
    # 3.1.2.19: the code is 4294967301 (2**32 + 5); it must not wrap to 5 or 200.
    with pytest.raises(SipParseError) as ei:
        impl.sipmsg.parse_message(_load("bigcode"))
    assert "4294967301" in str(ei.value)


def test_insuf_names_every_missing_header_in_turn(impl: SimpleNamespace) -> None:
    m = impl.sipmsg
    data = _load("insuf")
    head, body = data.split(b"\r\n\r\n", 1)
    missing = {"Call-ID": b"Call-ID: insuf.1@example.com", "From": b"From: <sip:a@example.com>;tag=1"}
    missing["To"] = b"To: <sip:user@example.com>"
    for name in missing:
        others = [line for n, line in missing.items() if n != name]
        msg = m.parse_message(b"\r\n".join([head, *others]) + b"\r\n\r\n" + body)
        assert m.validate_request(msg) == (400, f"Missing {name} header")
    full = m.parse_message(b"\r\n".join([head, *missing.values()]) + b"\r\n\r\n" + body)
    assert m.validate_request(full) is None


def test_unkscm_416_even_though_to_is_sip(impl: SimpleNamespace) -> None:
    m = impl.sipmsg
    result = m.validate_request(m.parse_message(_load("unkscm")))
    assert result is not None and result[0] == 416
    assert "nobodyknowsthisscheme" not in m.SUPPORTED_URI_SCHEMES


def test_escruri_without_the_header_part_is_accepted(impl: SimpleNamespace) -> None:
    m = impl.sipmsg
    data = _load("escruri").replace(b"?Route=%3Csip:example.com%3E", b"", 1)
    assert m.validate_request(m.parse_message(data)) is None
