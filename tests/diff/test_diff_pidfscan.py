"""The one-pass PIDF pre-check (``pidfscan.scan``): its two twins against each other, and
both against the rule they stand in for (``check_pidf``).

``scan`` answers True only when it is sure ``check_pidf`` accepts the body
(simplefast/_ref/pidfscan.py). Checked here on every XML vector of
tests/vectors, on the SIPp body of bench/sipp/publish.xml, on documents
generated from a grammar of the cases the structure check tells apart
(roots, ids, status/basic/contact/timestamp counts and values, text where
only elements may be, unqualified and unknown elements, extensions,
namespace spellings, entity and character references, comments, CDATA,
DOCTYPE, declarations, depth), and on random edits of all of these:

- the compiled and the reference twin give the same answer;
- a True is never wrong: ``check_pidf`` accepts the body;
- the documents a PUBLISH usually carries (every valid grammar document
  without the rare constructs the scan leaves to the full check) get True,
  so the fast path is taken for them.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from simplefast.presence.pidf import check_pidf
from simplefast.presence.xmlsafe import XmlRejected
from simplefast.testing import REPO, VECTORS, load_impl, mutate

REF = load_impl("ref").pidfscan
EXT = load_impl("ext").pidfscan


def accepted(data: bytes) -> bool:
    try:
        check_pidf(data)
    except XmlRejected:
        return False
    return True


def verdict(data: bytes) -> bool:
    """Both twins' answer (asserted equal), asserted never wrong."""
    ext, ref = EXT.scan(data), REF.scan(data)
    assert ext == ref, (data[:300], ext, ref)
    if ext:
        assert accepted(data), data[:300]
    return bool(ext)


def sipp_body() -> bytes:
    text = (REPO / "bench" / "sipp" / "publish.xml").read_text()
    body = text.split("<![CDATA[")[1].split("]]>")[0].split("\n\n", 1)[1].strip()
    for k, v in {"[pid]": "77", "[call_number]": "5", "[service]": "example.com", "[local_ip]": "127.0.0.1",
                 "[local_port]": "5061"}.items():  # fmt: skip
        body = body.replace(k, v)
    return body.encode()


def test_every_xml_vector_and_the_bench_body() -> None:
    sure = 0
    for path in sorted(VECTORS.rglob("*.xml")):
        sure += verdict(path.read_bytes())
    assert sure >= 6  # the RFC 3863/4479/4481 documents
    assert verdict(sipp_body())


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   <presence/>",
        b"\xef\xbb\xbf<presence xmlns='urn:ietf:params:xml:ns:pidf'/>",
        b'<?xml version="1.0" encoding="ISO-8859-1"?><presence xmlns="urn:ietf:params:xml:ns:pidf"/>',
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        b'<presence xmlns="urn:ietf:params:xml:ns:pidf"/>',
        b'<!DOCTYPE p [<!ENTITY a "b">]><presence xmlns="urn:ietf:params:xml:ns:pidf"/>',
        b'<presence xmlns="urn:ietf:params:xml:ns:pidf"><!-- c --></presence>',
        b'<presence xmlns="urn:ietf:params:xml:ns:pidf"><?pi x?></presence>',
        b'<presence xmlns="urn:ietf:params:xml:ns:pidf"><note><![CDATA[x]]></note></presence>',
        b'<presence xmlns="urn:ietf:params:xml:ns:pidf}x"/>',
        b'<presence xmlns="urn:ietf:params:xml:ns:pidf">&#160;</presence>',
        b"<presence xmlns='urn:ietf:params:xml:ns:pidf'>"
        + b"<x:a xmlns:x='u'>" * 40
        + b"</x:a>" * 40
        + b"</presence>",
    ],
)
def test_left_to_the_full_check(body: bytes) -> None:
    assert verdict(body) is False


LONG = b"a" * 1025


@pytest.mark.parametrize(
    "body",
    [
        b'<presence xmlns="urn:ietf:params:xml:ns:pidf" ' + LONG + b'=""/>',
        b'<presence xmlns="urn:ietf:params:xml:ns:pidf"><' + LONG + b' xmlns="urn:x"/></presence>',
        b'<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:' + LONG + b'="urn:x"/>',
        b'<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:q="urn:x" q:' + LONG + b'=""/>',
    ],
    ids=["attribute", "element", "prefix", "prefixed-attribute"],
)
def test_names_longer_than_1024_bytes_are_left_to_the_full_check(body: bytes) -> None:
    assert verdict(body) is False
    assert verdict(body.replace(LONG, LONG[:1024])) is True


def test_a_name_libxml2_finds_too_long_is_refused_by_both() -> None:
    body = b'<presence xmlns="urn:ietf:params:xml:ns:pidf" ' + b"a" * 50001 + b'=""/>'
    assert not accepted(body) and verdict(body) is False


def test_element_bound_above_a_c_int_is_the_same_answer() -> None:
    doc = sipp_body()
    assert EXT.scan(doc, max_elements=1 << 40) is REF.scan(doc, max_elements=1 << 40) is True


def test_bounds_are_the_parsers() -> None:
    doc = sipp_body()
    assert verdict(doc)
    assert EXT.scan(doc, max_bytes=len(doc) - 1) is REF.scan(doc, max_bytes=len(doc) - 1) is False
    # presence > dm:person > rpid:activities > rpid:on-the-phone: depth 4, 10 elements
    assert EXT.scan(doc, max_depth=4) is REF.scan(doc, max_depth=4) is True
    assert EXT.scan(doc, max_depth=3) is REF.scan(doc, max_depth=3) is False
    assert EXT.scan(doc, max_elements=10) is REF.scan(doc, max_elements=10) is True
    assert EXT.scan(doc, max_elements=9) is REF.scan(doc, max_elements=9) is False
    with pytest.raises(TypeError):
        EXT.scan("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        REF.scan("text")  # type: ignore[arg-type]


P = 'xmlns="urn:ietf:params:xml:ns:pidf"'
DM = 'xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"'
RPID = 'xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"'
IDENTS = ["t1", "t2", "p1", "_x", "a.b-c", "1bad", "", "x y", "\u00e9t\u00e9", "t1", " t3"]
TEXTS = ["", "", "", " ", "\n  ", "\t\r\n", "junk", "&amp;", "&#32;", "&#xa0;", "\u00a0", "\u2003"]
STAMPS = [
    "2025-01-01T12:00:00Z", "2025-01-01T12:00:00.5+02:00", "2025-01-01T24:00:00Z", "2025-01-01T24:00:01Z",
    "2025-02-30T00:00:00Z", "2024-02-29T23:59:59-23:59", "2023-02-29T00:00:00", "yesterday", "",
    " 2025-01-01T12:00:00 ", "2025-01-01T12:00:60Z", "0999-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
    "2025-01-01T12:00:00.123456789Z", "2025-01-01T12:00:00+24:00", "2025-01-01T12:00:00+01:60",
    "2025-01-01T12:00:00.Z", "2025-01-01t12:00:00Z", "\u0662025-01-01T12:00:00Z", "2025-01-01T12:00:00\u00a0",
]  # fmt: skip
PRIORITIES = ["", ' priority="0.8"', ' priority="1"', ' priority="2"', ' priority=" 0.5 "', ' priority="0."',
              ' priority="1.000"', ' priority="1.001"', ' priority="0.1234"', ' priority="\u00a00.5"',
              ' priority=""']  # fmt: skip
BASICS = ["open", "closed", " open ", "busy", "", "\nclosed\t", "&#111;pen", "\u00a0open", "OPEN"]
TUPLE_EXTRA = ["<note>n</note>", '<note xml:lang="en">e</note>', "<rpid:class>c</rpid:class>", "<bogus/>",
               "<dm:note>x</dm:note>", "<plain xmlns=''/>", "<dm:deviceID>d</dm:deviceID>"]  # fmt: skip
DM_EXTRA = ["<dm:note>n</dm:note>", "<rpid:activities><rpid:away/></rpid:activities>", "<dm:bogus/>",
            "<note>pidf note</note>", "<plain xmlns=''/>"]  # fmt: skip
ROOT_EXTRA = ["<note>n</note>", "<rpid:mood><rpid:happy/></rpid:mood>", "<bogus/>", "<plain xmlns=''/>",
              "<x:y xmlns:x='urn:x'/>", "<dm:deviceID>d</dm:deviceID>", "<dm:note>n</dm:note>",
              "<q:status xmlns:q='urn:ietf:params:xml:ns:pidf'/>"]  # fmt: skip


@st.composite
def tuple_st(draw: st.DrawFn) -> str:
    attrs = draw(st.sampled_from(["", ' id="{}"', " id='{}' x='1'"])).format(draw(st.sampled_from(IDENTS)))
    parts = []
    for _ in range(draw(st.integers(0, 2))):
        basics = "".join(
            f"<basic>{draw(st.sampled_from(BASICS))}</basic>" for _ in range(draw(st.integers(0, 2)))
        )
        inner = basics + draw(st.sampled_from(["", "<rpid:x/>", "<basic2/>", "<other/>"]))
        parts.append(f"<status>{draw(st.sampled_from(TEXTS))}{inner}</status>")
    for _ in range(draw(st.integers(0, 2))):
        parts.append(f"<contact{draw(st.sampled_from(PRIORITIES))}>sip:a@b</contact>")
    for _ in range(draw(st.integers(0, 2))):
        inner = draw(st.sampled_from(["", "", "<rpid:x/>"]))
        parts.append(f"<timestamp>{draw(st.sampled_from(STAMPS))}{inner}</timestamp>")
    parts += draw(st.lists(st.sampled_from(TUPLE_EXTRA), max_size=3))
    parts = draw(st.permutations(parts))
    body = "".join(f"{p}{draw(st.sampled_from(TEXTS))}" for p in parts)
    return f"<tuple{attrs}>{draw(st.sampled_from(TEXTS))}{body}</tuple>{draw(st.sampled_from(TEXTS))}"


@st.composite
def dm_st(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["person", "device"]))
    attrs = draw(st.sampled_from(["", ' id="{}"'])).format(draw(st.sampled_from(IDENTS)))
    parts = [
        f"<dm:timestamp>{draw(st.sampled_from(STAMPS))}</dm:timestamp>"
        for _ in range(draw(st.integers(0, 2)))
    ]
    parts += ["<dm:deviceID>urn:x</dm:deviceID>" for _ in range(draw(st.integers(0, 2)))]
    parts += draw(st.lists(st.sampled_from(DM_EXTRA), max_size=3))
    parts = draw(st.permutations(parts))
    text, tail = draw(st.sampled_from(TEXTS)), draw(st.sampled_from(TEXTS))
    return f"<dm:{kind}{attrs}>{text}{''.join(parts)}</dm:{kind}>{tail}"


# namespace names: libxml2 refuses some as URIs ("is not a valid URI"), and the scan must not take those
NS_URIS = ["urn:x", "$rn:x", "a b", "foo", "http://x/%zz", "http://x/a%20b", "urn:a#b", "urn:a#b#c", "http://h:80/",
           "https://h.example/p/q", "HTTP://h/", "urn:x?y", "", "x:y z", "a:b]", "mailto:a@b", "urn:\u00e9",
           "tag:a,b;c=d/e", "urn://x", "http:/x", "http://", "a:", "1a:b", "&amp;:x", "urn:&apos;q&apos;",
           "http://[::1]/", "xmlns:x", "http://www.w3.org/XML/1998/namespace"]  # fmt: skip
DECLS = ["", "", '<?xml version="1.0" encoding="UTF-8"?>', "<?xml version='1.0' encoding='UTF-8'?>",
         '<?xml version="1.0"?>', '<?xml version="1.0" encoding="utf-8"?>\n']  # fmt: skip
ROOTS = [f"presence {P} {DM} {RPID}", f"presence {P} {DM} {RPID}", f"p:presence xmlns:p='urn:x' {DM} {RPID}",
         f"presence xmlns='urn:ietf:params:xml:ns:pidf:data-model' {DM} {RPID}"]  # fmt: skip


@st.composite
def doc_st(draw: st.DrawFn) -> bytes:
    decl = draw(st.sampled_from(DECLS))
    root = draw(st.sampled_from(ROOTS))
    name = root.split()[0]
    entity = draw(st.sampled_from(["", ' entity="sip:a@example.com"', ' entity=" pres:a@b "']))
    entity += draw(st.sampled_from(["", "", ' xmlns:z="{}"', " xmlns:z='{}'"])).format(
        draw(st.sampled_from(NS_URIS))
    )
    children = draw(st.lists(tuple_st() | dm_st() | st.sampled_from(ROOT_EXTRA), max_size=4))
    text = draw(st.sampled_from(TEXTS))
    return f"{decl}<{root}{entity}>{text}{''.join(children)}</{name}>".encode()


@settings(max_examples=1500)
@given(doc_st())
def test_generated_documents(data: bytes) -> None:
    sure = verdict(data)
    event("sure" if sure else ("not sure, accepted" if accepted(data) else "not sure, refused"))


@settings(max_examples=800)
@given(doc_st(), st.data())
def test_edited_documents(doc: bytes, data: st.DataObject) -> None:
    verdict(mutate(doc, data))


@settings(max_examples=400)
@given(st.sampled_from(sorted(p.name for p in (VECTORS / "pidf").glob("*.xml"))), st.data())
def test_edited_vectors(name: str, data: st.DataObject) -> None:
    verdict(mutate((VECTORS / "pidf" / name).read_bytes(), data))


_RARE = re.compile(r"&#|&amp;|\u00a0|\u2003")


@st.composite
def usual_doc_st(draw: st.DrawFn) -> bytes:
    """Valid documents of the usual shape: unique ASCII ids, one status with an open or
    closed basic, at most one contact with a good priority and one good timestamp,
    notes, persons and devices, extensions; white space between elements."""
    parts = []
    for i in range(draw(st.integers(0, 3))):
        extra = draw(st.sampled_from(["", "<note>n</note>", "<contact priority='0.5'>sip:x@y</contact>",
                                      "<timestamp>2025-01-01T12:00:00Z</timestamp>",
                                      "<rpid:user-input>idle</rpid:user-input>"]))  # fmt: skip
        basic = draw(st.sampled_from(["open", "closed"]))
        parts.append(f"<tuple id='t{i}'>\n <status><basic>{basic}</basic></status>{extra}</tuple>")
    for i in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["person", "device"]))
        extra = draw(
            st.sampled_from(
                [
                    "",
                    "<dm:note>n</dm:note>",
                    "<dm:timestamp>2025-01-01T12:00:00.25+01:00</dm:timestamp>",
                    "<rpid:activities><rpid:busy/></rpid:activities>",
                ]
            )
        )
        parts.append(f"<dm:{kind} id='{kind[0]}{i}'>{extra}</dm:{kind}>")
    parts += draw(
        st.lists(st.sampled_from(["<note>n</note>", "<rpid:mood><rpid:happy/></rpid:mood>"]), max_size=2)
    )
    parts = draw(st.permutations(parts))
    decl = draw(st.sampled_from(["", '<?xml version="1.0" encoding="UTF-8"?>\n']))
    body = "\n".join(parts)
    return f"{decl}<presence {P} {DM} {RPID} entity='sip:a@example.com'>\n{body}\n</presence>".encode()


@settings(max_examples=300)
@given(usual_doc_st())
def test_usual_documents_are_sure(data: bytes) -> None:
    assert accepted(data)
    assert not _RARE.search(data.decode())
    assert verdict(data) is True
