"""simplefast.sip.dnswire: queries, replies built by hand (and by dnslib), and
hostile input that must only ever raise DnsFormatError."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import pytest
from dnslib import AAAA as DL_AAAA
from dnslib import CNAME as DL_CNAME
from dnslib import NAPTR as DL_NAPTR
from dnslib import QTYPE, RR, DNSRecord
from dnslib import SRV as DL_SRV
from dnslib import A as DL_A
from hypothesis import given
from hypothesis import strategies as st

from simplefast.sip import dnswire as w
from simplefast.sip.dnswire import (
    AAAARecord,
    ARecord,
    CNAMERecord,
    DnsFormatError,
    NAPTRRecord,
    SOARecord,
    SRVRecord,
)

# ---------------------------------------------------------------- hand builders


def name(text: str) -> bytes:
    out = b""
    for label in text.split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def header(qid: int, flags: int, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def question(owner: bytes, qtype: int) -> bytes:
    return owner + struct.pack("!HH", qtype, 1)


def rr(owner: bytes, rtype: int, ttl: int, rdata: bytes, rclass: int = 1) -> bytes:
    return owner + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


PTR_QNAME = b"\xc0\x0c"  # the question's name, right after the header
REPLY = 0x8180  # QR, RD, RA, NOERROR


def reply(
    qid: int, qname: str, qtype: int, answers: Sequence[bytes], authority: Sequence[bytes] = (),
    rcode: int = 0, flags: int = REPLY,
) -> bytes:  # fmt: skip
    return (
        header(qid, flags | rcode, 1, len(answers), len(authority))
        + question(name(qname), qtype)
        + b"".join(answers)
        + b"".join(authority)
    )


def soa(owner: bytes, ttl: int, minimum: int) -> bytes:
    rdata = (
        name("ns.example.com") + name("hostmaster.example.com") + struct.pack("!IIIII", 1, 2, 3, 4, minimum)
    )
    return rr(owner, w.SOA, ttl, rdata)


# ---------------------------------------------------------------- queries


def test_query_bytes_exact() -> None:
    q = w.build_query("example.com", w.A, 0x1234)
    assert q == bytes.fromhex("123401000001000000000000") + b"\x07example\x03com\x00" + b"\x00\x01\x00\x01"


def test_query_with_edns_and_trailing_dot() -> None:
    q = w.build_query("_sip._udp.Example.COM.", w.SRV, 7, edns_payload=1232)
    assert q[:12] == bytes.fromhex("000701000001000000000001")
    assert q.endswith(b"\x00" + struct.pack("!HHIH", w.OPT, 1232, 0, 0))
    msg = w.parse_message(q)
    assert not msg.is_response and msg.recursion_desired
    assert msg.questions == (w.Question("_sip._udp.example.com", w.SRV),)


def test_query_is_read_by_dnslib() -> None:
    rec = DNSRecord.parse(w.build_query("_sips._tcp.example.com", w.SRV, 4242))
    assert rec.header.id == 4242 and rec.header.rd == 1 and len(rec.questions) == 1
    assert str(rec.q.qname) == "_sips._tcp.example.com." and rec.q.qtype == QTYPE.SRV


@pytest.mark.parametrize(
    "bad", ["", "a..b", ".a", "a" * 64 + ".com", ".".join(["abcdefghi"] * 26), "ex ample.com", "é.com", "a\\"]
)
def test_bad_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        w.encode_name(bad)


def test_bad_query_arguments() -> None:
    with pytest.raises(ValueError):
        w.build_query("a.b", w.A, 70000)
    with pytest.raises(ValueError):
        w.build_query("a.b", w.A, 1, edns_payload=100)


_label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=63)


@given(labels=st.lists(_label, min_size=1, max_size=4), qtype=st.sampled_from([1, 28, 33, 35, 5]),
       qid=st.integers(0, 0xFFFF), edns=st.sampled_from([None, 512, 1232, 4096]))  # fmt: skip
def test_query_round_trip(labels: list[str], qtype: int, qid: int, edns: int | None) -> None:
    qname = ".".join(labels)
    msg = w.parse_message(w.build_query(qname, qtype, qid, edns_payload=edns))
    assert msg.id == qid and msg.questions == (w.Question(qname, qtype),)
    assert msg.answers == msg.authority == msg.additional == ()  # the OPT record is skipped


def test_escaped_labels_round_trip() -> None:
    raw = b"\x05a.b\\\x01" + b"\x03com\x00"
    text, end = w._read_name(header(0, 0) + raw, 12, 12 + len(raw))
    assert text == "a\\046b\\092\\001.com" and end == 12 + len(raw)
    assert w.encode_name(text) == raw
    assert w.encode_name("a\\.b.com") == b"\x03a.b\x03com\x00"
    assert w.encode_name(".") == b"\x00"


# ---------------------------------------------------------------- replies


def test_a_and_aaaa_with_compression() -> None:
    data = reply(1, "host.example.com", w.A, [rr(PTR_QNAME, w.A, 300, bytes([192, 0, 2, 7]))])
    msg = w.parse_response(data)
    assert msg.answers == (ARecord("host.example.com", 300, "192.0.2.7"),)
    assert w.response_matches(msg, 1, "HOST.example.com.", w.A)
    ans = w.extract_answer(msg, "host.example.com", w.A)
    assert ans.status == "ok" and ans.ttl == 300 and ans.usable
    six = bytes.fromhex("20010db8000000000000000000000001")
    msg6 = w.parse_response(reply(2, "h.example", w.AAAA, [rr(PTR_QNAME, w.AAAA, 60, six)]))
    assert msg6.answers == (AAAARecord("h.example", 60, "2001:db8::1"),)


def test_cname_chain_is_followed() -> None:
    # host.example.com CNAME alias (pointer into its own rdata's suffix: "example.com" at offset 17)
    cname_rdata = b"\x05alias\xc0\x11"
    data = reply(
        3, "host.example.com", w.A,
        [rr(PTR_QNAME, w.CNAME, 100, cname_rdata),
         rr(b"\x05alias\xc0\x11", w.A, 50, bytes([192, 0, 2, 9])),
         rr(b"\x05other\xc0\x11", w.A, 10, bytes([192, 0, 2, 10]))],
    )  # fmt: skip
    msg = w.parse_response(data)
    assert msg.answers[0] == CNAMERecord("host.example.com", 100, "alias.example.com")
    ans = w.extract_answer(msg, "host.example.com", w.A)
    assert ans.status == "ok" and ans.canonical == "alias.example.com"
    assert ans.records == (ARecord("alias.example.com", 50, "192.0.2.9"),) and ans.ttl == 50
    # asking for the CNAME itself does not follow it
    assert w.extract_answer(msg, "host.example.com", w.CNAME).records == (msg.answers[0],)


def test_dangling_and_looping_cname() -> None:
    dangling = w.parse_response(reply(4, "a.example", w.A, [rr(PTR_QNAME, w.CNAME, 30, name("b.example"))]))
    ans = w.extract_answer(dangling, "a.example", w.A)
    assert ans.status == "nodata" and ans.dangling and ans.canonical == "b.example"
    looping = w.parse_response(
        reply(5, "a.example", w.A, [rr(PTR_QNAME, w.CNAME, 30, name("b.example")),
                                    rr(name("b.example"), w.CNAME, 30, name("a.example"))])
    )  # fmt: skip
    assert w.extract_answer(looping, "a.example", w.A).status == "error"


def test_srv_and_naptr() -> None:
    srv = struct.pack("!HHH", 10, 60, 5060) + name("server1.example.com")
    naptr = struct.pack("!HH", 50, 51) + b"\x01s" + b"\x08SIPS+D2T" + b"\x00" + name("_sips._tcp.example.com")
    msg = w.parse_response(reply(6, "_sip._udp.example.com", w.SRV, [rr(PTR_QNAME, w.SRV, 3600, srv)]))
    assert msg.answers == (SRVRecord("_sip._udp.example.com", 3600, 10, 60, 5060, "server1.example.com"),)
    msg = w.parse_response(reply(7, "example.com", w.NAPTR, [rr(PTR_QNAME, w.NAPTR, 99, naptr)]))
    assert msg.answers == (
        NAPTRRecord("example.com", 99, 50, 51, "s", "SIPS+D2T", "", "_sips._tcp.example.com"),
    )
    root = struct.pack("!HHH", 0, 0, 0) + b"\x00"
    msg = w.parse_response(reply(8, "_sip._tcp.example.com", w.SRV, [rr(PTR_QNAME, w.SRV, 5, root)]))
    assert msg.answers[0].target == "."  # type: ignore[union-attr]


def test_rcodes_and_negative_ttl() -> None:
    nx = w.parse_response(
        reply(9, "nope.example", w.A, [], [soa(name("example"), 600, 45)], rcode=w.NXDOMAIN)
    )
    assert nx.authority == (
        SOARecord("example", 600, "ns.example.com", "hostmaster.example.com", 1, 2, 3, 4, 45),
    )
    ans = w.extract_answer(nx, "nope.example", w.A)
    assert (ans.status, ans.ttl, ans.usable) == ("nxdomain", 45, True)
    nodata = w.parse_response(reply(10, "h.example", w.AAAA, [], [soa(name("example"), 20, 300)]))
    ans = w.extract_answer(nodata, "h.example", w.AAAA)
    assert (ans.status, ans.ttl) == ("nodata", 20)
    fail = w.parse_response(reply(11, "h.example", w.A, [], rcode=w.SERVFAIL))
    assert w.extract_answer(fail, "h.example", w.A).status == "error"
    assert not w.extract_answer(fail, "h.example", w.A).usable
    bare = w.parse_response(header(12, 0x8000 | w.REFUSED, qd=0))
    assert w.response_matches(bare, 12, "h.example", w.A)
    assert not w.response_matches(w.parse_response(header(12, 0x8000, qd=0)), 12, "h.example", w.A)
    assert w.response_matches(w.parse_response(header(12, 0x8200, qd=0)), 12, "h.example", w.A)  # TC


def test_truncated_reply_is_reported_and_not_read() -> None:
    data = reply(13, "big.example", w.A, [rr(PTR_QNAME, w.A, 1, b"\x01\x02\x03\x04")], flags=REPLY | 0x0200)
    msg = w.parse_response(data[:-3])  # cut inside the record: TC says so, only the question is read
    assert msg.truncated and msg.answers == ()
    assert w.extract_answer(msg, "big.example", w.A).status == "error"


def test_response_matching() -> None:
    msg = w.parse_response(reply(14, "h.example", w.A, []))
    assert w.response_matches(msg, 14, "H.Example.", w.A)
    assert not w.response_matches(msg, 15, "h.example", w.A)
    assert not w.response_matches(msg, 14, "g.example", w.A)
    assert not w.response_matches(msg, 14, "h.example", w.AAAA)
    with pytest.raises(DnsFormatError):
        w.parse_response(w.build_query("h.example", w.A, 14))


def test_ttl_top_bit_unknown_types_and_classes() -> None:
    data = reply(
        16, "h.example", w.A,
        [rr(PTR_QNAME, 16, 5, b"\x03txt"),  # TXT: skipped
         rr(PTR_QNAME, w.A, 5, b"\x01\x01\x01\x01", rclass=3),  # CHAOS: skipped
         rr(PTR_QNAME, w.A, 0x80000001, b"\x01\x02\x03\x04")],
    )  # fmt: skip
    assert w.parse_response(data).answers == (ARecord("h.example", 0, "1.2.3.4"),)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 11,
        header(1, REPLY) + b"\x03abc",  # name runs off the end
        header(1, REPLY) + b"\xc0\x0c" + b"\x00\x01\x00\x01",  # pointer to itself
        header(1, REPLY) + b"\xc0\x20" + b"\x00\x01\x00\x01",  # pointer forward
        header(1, REPLY) + b"\xc0\x02" + b"\x00\x01\x00\x01",  # pointer into the header
        header(1, REPLY) + b"\x01a\xc0\x0c" + b"\x00\x01\x00\x01",  # loop back to the run's start
        header(1, REPLY) + b"\x41" + b"a" * 70 + b"\x00\x00\x01\x00\x01",  # label type 01
        header(1, REPLY) + b"\x80\x00\x00\x01\x00\x01",  # label type 10
        header(1, REPLY) + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01",  # 257-byte name
        header(1, REPLY) + name("a.b"),  # question without type and class
        reply(1, "a.b", 1, [rr(PTR_QNAME, w.A, 1, b"\x01\x02\x03")]),  # A of 3 bytes
        reply(1, "a.b", 28, [rr(PTR_QNAME, w.AAAA, 1, b"\x01" * 4)]),  # AAAA of 4 bytes
        reply(1, "a.b", 33, [rr(PTR_QNAME, w.SRV, 1, b"\x00" * 6 + b"\x00\x00")]),  # trailing byte
        reply(1, "a.b", 33, [rr(PTR_QNAME, w.SRV, 1, b"\x00" * 4)]),  # SRV too short
        reply(
            1, "a.b", 35, [rr(PTR_QNAME, w.NAPTR, 1, b"\x00\x01\x00\x01\x05s\x00\x00\x00")]
        ),  # string past rdata
        reply(1, "a.b", 5, [rr(PTR_QNAME, w.CNAME, 1, b"\x03abc")]),  # name past rdata
        reply(1, "a.b", 6, [rr(PTR_QNAME, w.SOA, 1, b"\x00\x00" + b"\x00" * 19)]),  # SOA counters short
        reply(1, "a.b", 1, [rr(PTR_QNAME, w.A, 1, b"\x01\x02\x03\x04")])[:-1],  # rdata past the message
        header(1, REPLY, qd=1, an=3) + question(name("a.b"), 1),  # counts beyond the data
    ],
)
def test_malformed_raises_format_error(data: bytes) -> None:
    with pytest.raises(DnsFormatError):
        w.parse_message(data)


def test_pointer_hop_bound() -> None:
    # 40 names each pointing to the one before: a legal backward chain longer than the bound
    body = bytearray(header(1, REPLY, qd=1) + b"\x01a\x00")
    prev = 12
    for _ in range(w.MAX_POINTER_HOPS + 2):
        here = len(body)
        body += struct.pack("!H", 0xC000 | prev)
        prev = here
    body += b"\x00\x01\x00\x01"
    data = bytes(body)
    assert w._read_name(data, 12, len(data))[0] == "a"
    with pytest.raises(DnsFormatError, match="pointers"):
        w._read_name(data, prev, len(data))


# ---------------------------------------------------------------- dnslib interop


def _dnslib_reply(qname: str, qtype: str, rrs: list[RR]) -> bytes:
    rec = DNSRecord.question(qname, qtype)
    rec.header.id = 777
    out = rec.reply()
    for r in rrs:
        out.add_answer(r)
    return bytes(out.pack())


DNSLIB_REPLIES = [
    _dnslib_reply("example.com", "NAPTR", [
        RR("example.com", QTYPE.NAPTR, ttl=60,
           rdata=DL_NAPTR(50, 50, b"s", b"SIPS+D2T", b"", "_sips._tcp.example.com")),
        RR("example.com", QTYPE.NAPTR, ttl=60,
           rdata=DL_NAPTR(90, 50, b"s", b"SIP+D2T", b"", "_sip._tcp.example.com")),
    ]),
    _dnslib_reply("_sip._udp.example.com", "SRV", [
        RR("_sip._udp.example.com", QTYPE.SRV, ttl=60, rdata=DL_SRV(0, 1, 5060, "server1.example.com")),
        RR("_sip._udp.example.com", QTYPE.SRV, ttl=60, rdata=DL_SRV(0, 2, 5060, "server2.example.com")),
    ]),
    _dnslib_reply("www.example.com", "A", [
        RR("www.example.com", QTYPE.CNAME, ttl=60, rdata=DL_CNAME("server1.example.com")),
        RR("server1.example.com", QTYPE.A, ttl=30, rdata=DL_A("192.0.2.1")),
        RR("server1.example.com", QTYPE.AAAA, ttl=30, rdata=DL_AAAA("2001:db8::1")),
    ]),
]  # fmt: skip


def test_dnslib_replies_parse() -> None:
    naptr, srv, a = (w.parse_response(d) for d in DNSLIB_REPLIES)
    assert [r.services for r in naptr.answers] == ["SIPS+D2T", "SIP+D2T"]  # type: ignore[union-attr]
    assert [r.target for r in srv.answers] == ["server1.example.com", "server2.example.com"]  # type: ignore[union-attr]
    ans = w.extract_answer(a, "www.example.com", w.A)
    assert ans.records == (ARecord("server1.example.com", 30, "192.0.2.1"),) and ans.ttl == 30
    assert w.response_matches(a, 777, "www.example.com", w.A)


# ---------------------------------------------------------------- hostile input


def _only_format_errors(data: bytes) -> None:
    try:
        msg = w.parse_message(data)
    except DnsFormatError:
        return
    for q in msg.questions[:1]:
        w.extract_answer(msg, q.name, q.qtype)
        w.response_matches(msg, msg.id, q.name, q.qtype)


@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    _only_format_errors(data)


@given(st.binary(max_size=40))
def test_random_bytes_after_a_valid_header(data: bytes) -> None:
    _only_format_errors(header(1, REPLY, 1, 2, 1, 1) + data)


VALID = [
    *DNSLIB_REPLIES,
    reply(1, "host.example.com", w.A, [rr(PTR_QNAME, w.CNAME, 100, b"\x05alias\xc0\x11"),
                                       rr(b"\x05alias\xc0\x11", w.A, 50, bytes([192, 0, 2, 9]))]),
    reply(9, "nope.example", w.A, [], [soa(name("example"), 600, 45)], rcode=w.NXDOMAIN),
]  # fmt: skip


@given(
    which=st.integers(0, len(VALID) - 1),
    edits=st.lists(st.tuples(st.sampled_from(["set", "cut", "insert", "delete"]), st.integers(0, 10_000),
                             st.integers(0, 255)), min_size=1, max_size=6),
)  # fmt: skip
def test_mutated_replies(which: int, edits: list[tuple[str, int, int]]) -> None:
    data = bytearray(VALID[which])
    for op, where, value in edits:
        i = where % (len(data) + 1)
        if op == "set" and i < len(data):
            data[i] = value
        elif op == "cut":
            del data[i:]
        elif op == "insert":
            data[i:i] = bytes([value])
        elif op == "delete" and i < len(data):
            del data[i]
    _only_format_errors(bytes(data))
