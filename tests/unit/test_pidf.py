"""PIDF parse / compose / default documents, against the RFC vectors and the merge rule.

Vectors (tests/vectors/pidf, see its manifest.json): every file is classified
below, and a new file fails ``test_every_vector_is_classified`` until it is.

* ``DOCUMENTS``: complete documents, well-formed as published: parsed, composed
  alone and with the others, and checked intact in the output.
* ``FIXED``: examples the RFC prints broken (manifest ``well_formed: false``):
  the published bytes must be rejected with 400, and the
  minimal fix (named next to each) must parse and compose intact.
* ``FRAGMENTS``: RFC 4480 section 3 element fragments: wrapped in a
  ``dm:person`` of a complete document (RPID as their default namespace) and
  then treated like documents; the ``pt:`` fragment also needs its prefix.
* ``SCHEMAS``: the ``.xsd`` files: they go through the hardened parser (their
  ``schemaLocation`` URLs are not fetched) and are refused as PIDF.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simplefast.presence.pidf import (
    DEFAULT_TUPLE_ID,
    DM_NS,
    PIDF_NS,
    RPID_NS,
    Component,
    PidfDocument,
    Publication,
    check_pidf,
    compose,
    default_document,
    parse_pidf,
    parse_timestamp,
)
from simplefast.presence.xmlsafe import Element, XmlRejected, parse_xml
from simplefast.testing import mutate

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "pidf"
MANIFEST: dict[str, dict[str, object]] = json.loads((VECTORS / "manifest.json").read_bytes())
AOR = "sip:alice@example.com"
CIPID_NS = "urn:ietf:params:xml:ns:pidf:cipid"

DOCUMENTS = [
    "rfc3863-4.2.2-default-ns.xml",
    "rfc3863-4.2.2-prefixed-ns.xml",
    "rfc3863-4.3.1-default-ns-status-ext.xml",
    "rfc3863-4.3.2-other-ext-elements.xml",
    "rfc4479-7.1-basic-im-client.xml",  # without the entity RFC 3863 requires: taken all the same
    "rfc4481-4-timed-status.xml",
]


def _add_entity(data: bytes) -> bytes:
    return data.replace(b"<presence ", b'<presence entity="pres:someone@example.com" ', 1)


FIXED: dict[str, Callable[[bytes], bytes]] = {
    # a space before <?xml left by the RFC's indentation: drop it
    "rfc4480-4-example.xml": lambda d: d.lstrip(b" "),
    # <c:display-name> closed by </c:card>: close it by its own name
    "rfc4482-4-example-1.xml": lambda d: d.replace(
        b"<c:display-name>Alice Lewis</c:card>", b"<c:display-name>Alice Lewis</c:display-name>"
    ),
}

FRAGMENTS = [name for name, m in MANIFEST.items() if "fragment" in name]
SCHEMAS = [name for name, m in MANIFEST.items() if m["kind"] == "schema"]


def wrap_fragment(fragment: bytes) -> bytes:
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<p:presence xmlns:p="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"'
        b' xmlns="urn:ietf:params:xml:ns:pidf:rpid" xmlns:pt="urn:ietf:params:xml:ns:location-type"'
        b' entity="pres:someone@example.com">\n'
        b'<p:tuple id="t1"><p:status><p:basic>open</p:basic></p:status></p:tuple>\n'
        b'<dm:person id="p1">\n' + fragment + b"</dm:person>\n</p:presence>\n"
    )


def vector(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def usable_documents() -> dict[str, bytes]:
    """Every vector as a complete, well-formed PIDF document (fixed or wrapped as documented)."""
    docs = {name: vector(name) for name in DOCUMENTS}
    docs.update({name: fix(vector(name)) for name, fix in FIXED.items()})
    docs.update({name: wrap_fragment(vector(name)) for name in FRAGMENTS})
    return docs


# -- structural comparison, independent of prefixes and of blank text between elements -----------


def sig(el: Element) -> tuple[object, ...]:
    children = tuple(sig(c) for c in el)
    text = el.text if not children else (el.text or "").strip()
    return (el.tag, tuple(sorted(el.attrib.items())), text, children)


def find_id(elements: tuple[Component, ...], ident: str) -> Component:
    (found,) = [c for c in elements if c.id == ident]
    return found


def assert_intact(doc: PidfDocument, out: PidfDocument) -> None:
    """Everything of a single publication's document is in the composed one."""
    assert out.entity == AOR
    assert [t.id for t in out.tuples] == [t.id for t in doc.tuples]
    for t in doc.tuples:
        assert sig(find_id(out.tuples, t.id).element) == sig(t.element)
    for d in doc.devices:
        assert sig(find_id(out.devices, d.id).element) == sig(d.element)
    if doc.persons:
        (person,) = out.persons
        assert person.id == doc.persons[0].id
        out_children = [sig(c) for c in person.element]
        for p in doc.persons:  # one person in every vector; the merge keeps all its children
            for child in p.element:
                assert sig(child) in out_children
    assert sorted(map(sig, out.notes)) == sorted(map(sig, doc.notes))
    assert sorted(map(sig, out.extensions)) == sorted(map(sig, doc.extensions))


# -- the vectors ------------------------------------------------------------------------------------


def test_every_vector_is_classified() -> None:
    files = {p.name for p in VECTORS.iterdir() if p.name != "manifest.json"}
    assert files == set(MANIFEST)
    classified = [*DOCUMENTS, *FIXED, *FRAGMENTS, *SCHEMAS]
    assert sorted(classified) == sorted(MANIFEST)
    for name in DOCUMENTS:
        assert MANIFEST[name]["well_formed"] is True and MANIFEST[name]["kind"] == "example"


@pytest.mark.parametrize("name", DOCUMENTS)
def test_document_vectors_parse(name: str) -> None:
    doc = parse_pidf(vector(name))
    assert doc.entity == ("" if name.startswith("rfc4479") else "pres:someone@example.com") and doc.tuples
    assert all(t.basic == "open" for t in doc.tuples)


@pytest.mark.parametrize("name", sorted(FIXED))
def test_broken_vectors_are_rejected_as_published_and_parse_when_fixed(name: str) -> None:
    with pytest.raises(XmlRejected) as info:
        parse_pidf(vector(name))
    assert info.value.status_hint == 400
    assert parse_pidf(FIXED[name](vector(name))).entity == "pres:someone@example.com"


def test_place_type_fragment_needs_its_prefix() -> None:
    name = "rfc4480-3.7-place-type-fragment.xml"
    assert MANIFEST[name]["well_formed"] is False
    with pytest.raises(XmlRejected, match="not well-formed"):
        parse_xml(vector(name))


@pytest.mark.parametrize("name", sorted(n for n in FRAGMENTS if MANIFEST[n]["well_formed"]))
def test_fragments_parse_alone_but_are_not_pidf(name: str) -> None:
    parse_xml(vector(name))
    with pytest.raises(XmlRejected, match="not a PIDF <presence>"):
        parse_pidf(vector(name))


@pytest.mark.parametrize("name", SCHEMAS)
def test_schemas_go_through_the_hardened_parser(name: str) -> None:
    assert parse_xml(vector(name)).tag == "{http://www.w3.org/2001/XMLSchema}schema"
    with pytest.raises(XmlRejected, match="not a PIDF <presence>"):
        parse_pidf(vector(name))


@pytest.mark.parametrize("name", sorted(usable_documents()))
def test_each_vector_composes_intact_and_round_trips(name: str) -> None:
    doc = parse_pidf(usable_documents()[name])
    out = compose(AOR, [Publication("e1", doc, 1.0)])
    again = parse_pidf(out)
    assert_intact(doc, again)
    assert compose(AOR, [Publication("e2", again, 2.0)]) == out  # a fixed point


def test_vector_details() -> None:
    rpid = parse_pidf(FIXED["rfc4480-4-example.xml"](vector("rfc4480-4-example.xml")))
    assert [t.id for t in rpid.tuples] == ["bs35r9", "ty4658", "eg92n8"]
    assert rpid.tuples[0].timestamp == parse_timestamp("2005-10-27T16:49:29Z")
    assert [d.id for d in rpid.devices] == ["pc147"] and rpid.devices[0].timestamp is None
    assert rpid.persons[0].timestamp == parse_timestamp("2005-05-30T11:09:44Z")
    assert len(rpid.notes) == 1 and not rpid.extensions
    cipid = parse_pidf(FIXED["rfc4482-4-example-1.xml"](vector("rfc4482-4-example-1.xml")))
    assert [c.tag.rpartition("}")[2] for c in cipid.persons[0].element][:2] == ["card", "display-name"]
    timed = parse_pidf(vector("rfc4481-4-timed-status.xml"))
    assert timed.tuples[0].element[1].tag == "{urn:ietf:params:xml:ns:pidf:timed-status}timed-status"
    ext = parse_pidf(vector("rfc3863-4.3.2-other-ext-elements.xml"))
    assert [e.tag for e in ext.extensions] == ["{http://id.example.com/presence/}mytag"]


def test_all_vectors_compose_together() -> None:
    docs = usable_documents()
    pubs = [
        Publication(f"e{i:02}", parse_pidf(data), float(i)) for i, data in enumerate(sorted(docs.values()))
    ]
    out = compose(AOR, pubs)
    composed = parse_pidf(out)
    want_tuples = {t.id for p in pubs for t in p.document.tuples}
    assert {t.id for t in composed.tuples} == want_tuples and len(composed.tuples) == len(want_tuples)
    assert len(composed.persons) == 1 and sorted(d.id for d in composed.devices) == ["pc122", "pc147"]
    person_tags = {c.tag for c in composed.persons[0].element}
    for p in pubs:  # every extension name of every person survives the merge
        for person in p.document.persons:
            assert {c.tag for c in person.element} - {
                f"{{{DM_NS}}}note",
                f"{{{DM_NS}}}timestamp",
            } <= person_tags
    assert out.count(b"xmlns:rpid=") == 1 and b"xmlns:impp" not in out and b"xmlns:rp=" not in out
    random.Random(5).shuffle(pubs)
    assert compose(AOR, pubs) == out


# -- the merge rule ---------------------------------------------------------------------------------


def pidf(body: str, entity: str = "pres:someone@example.com", extra_ns: str = "") -> PidfDocument:
    return parse_pidf(
        (
            f'<presence xmlns="{PIDF_NS}" xmlns:dm="{DM_NS}" xmlns:rpid="{RPID_NS}" xmlns:c="{CIPID_NS}"'
            f" {extra_ns} entity={quoteattr(entity)}>{body}</presence>"
        ).encode()
    )


def tup(ident: str, basic: str = "open", ts: str | None = None, note: str | None = None) -> str:
    return (
        f'<tuple id="{ident}"><status><basic>{basic}</basic></status>'
        + (f"<note>{escape(note)}</note>" if note else "")
        + (f"<timestamp>{ts}</timestamp>" if ts else "")
        + "</tuple>"
    )


def basics(out: bytes) -> dict[str, str | None]:
    return {t.id: t.basic for t in parse_pidf(out).tuples}


def test_same_tuple_id_newer_publication_wins() -> None:
    old = Publication("a", pidf(tup("t", "open") + tup("only-old")), 10.0)
    new = Publication("b", pidf(tup("t", "closed")), 20.0)
    for order in ([old, new], [new, old]):
        assert basics(compose(AOR, order)) == {"t": "closed", "only-old": "open"}


def test_same_tuple_id_later_timestamp_wins_when_both_have_one() -> None:
    old = Publication("a", pidf(tup("t", "open", "2024-01-01T12:00:00Z")), 10.0)
    new = Publication("b", pidf(tup("t", "closed", "2024-01-01T11:00:00Z")), 20.0)
    assert basics(compose(AOR, [old, new])) == {"t": "open"}
    tie = Publication("b", pidf(tup("t", "closed", "2024-01-01T13:00:00+01:00")), 20.0)
    assert basics(compose(AOR, [old, tie])) == {"t": "closed"}  # same instant: newer publication


def test_timestamp_only_counts_when_every_candidate_has_one() -> None:
    a = Publication("a", pidf(tup("t", "open", "2024-01-01T12:00:00Z")), 10.0)
    b = Publication("b", pidf(tup("t", "closed")), 20.0)
    c = Publication("c", pidf(tup("t", "open", "2023-01-01T12:00:00Z", note="c")), 30.0)
    assert basics(compose(AOR, [a, b])) == {"t": "closed"}
    out = parse_pidf(compose(AOR, [a, b, c]))  # pairwise comparison would cycle; newest publication wins
    assert out.tuples[0].element.find(f"{{{PIDF_NS}}}note").text == "c"


def test_same_published_at_is_ordered_by_etag() -> None:
    x = Publication("x", pidf(tup("t", "open")), 5.0)
    y = Publication("y", pidf(tup("t", "closed")), 5.0)
    assert basics(compose(AOR, [y, x])) == basics(compose(AOR, [x, y])) == {"t": "closed"}


def test_devices_keyed_by_id() -> None:
    def dev(ident: str, ua: str, ts: str) -> str:
        return (
            f'<dm:device id="{ident}"><rpid:user-input>{ua}</rpid:user-input>'
            f"<dm:deviceID>urn:x:{ident}</dm:deviceID><dm:timestamp>{ts}</dm:timestamp></dm:device>"
        )

    a = Publication(
        "a", pidf(dev("d1", "active", "2024-05-01T00:00:00Z") + dev("d2", "idle", "2024-05-01T00:00:00Z")), 1
    )
    b = Publication("b", pidf(dev("d1", "idle", "2024-04-01T00:00:00Z")), 2)
    out = parse_pidf(compose(AOR, [a, b]))
    assert [(d.id, d.element[0].text) for d in out.devices] == [("d1", "active"), ("d2", "idle")]


def person(ident: str, inner: str, ts: str | None = None, note: str | None = None) -> str:
    return (
        f'<dm:person id="{ident}">{inner}'
        + (f"<dm:note>{note}</dm:note>" if note else "")
        + (f"<dm:timestamp>{ts}</dm:timestamp>" if ts else "")
        + "</dm:person>"
    )


def local_names(el: Element) -> list[str]:
    return [c.tag.rpartition("}")[2] for c in el]


def test_person_merge_winner_plus_missing_extensions() -> None:
    older = person(
        "p-old",
        "<rpid:activities><rpid:away/></rpid:activities><c:display-name>Alice</c:display-name>"
        "<c:icon>http://example.com/a.png</c:icon>",
        ts="2024-01-01T10:00:00Z",
        note="old note",
    )
    newer = person(
        "p-new",
        "<rpid:activities><rpid:on-the-phone/></rpid:activities><rpid:mood><rpid:happy/></rpid:mood>",
        ts="2024-01-01T11:00:00Z",
        note="new note",
    )
    pubs = [Publication("a", pidf(tup("t1") + newer), 1.0), Publication("b", pidf(tup("t2") + older), 2.0)]
    (merged,) = parse_pidf(compose(AOR, pubs)).persons
    assert merged.id == "p-new"  # later dm:timestamp, although published earlier
    assert local_names(merged.element) == ["activities", "mood", "display-name", "icon", "note", "timestamp"]
    assert merged.element[0][0].tag == f"{{{RPID_NS}}}on-the-phone"
    assert merged.element[4].text == "new note" and merged.timestamp == parse_timestamp(
        "2024-01-01T11:00:00Z"
    )


def test_person_merge_without_timestamps_uses_publication_order() -> None:
    a = person("pa", "<rpid:activities><rpid:away/></rpid:activities>", ts="2030-01-01T00:00:00Z")
    b = person("pb", "<rpid:activities><rpid:busy/></rpid:activities><rpid:class>x</rpid:class>")
    c = person("pc", "<rpid:class>y</rpid:class><c:card>http://c</c:card>")
    pubs = [Publication("1", pidf(a), 1.0), Publication("2", pidf(b), 2.0), Publication("3", pidf(c), 3.0)]
    (merged,) = parse_pidf(compose(AOR, pubs)).persons
    assert merged.id == "pc"
    assert local_names(merged.element) == ["class", "card", "activities"]
    assert merged.element[0].text == "y" and merged.element[2][0].tag == f"{{{RPID_NS}}}busy"


def test_person_merge_takes_every_instance_of_a_name_from_one_person() -> None:
    two = "".join(
        f'<rpid:activities from="2024-01-0{d}T00:00:00Z"><rpid:meeting/></rpid:activities>' for d in (1, 2)
    )
    pubs = [Publication("1", pidf(person("p", two)), 1.0), Publication("2", pidf(person("q", "")), 2.0)]
    (merged,) = parse_pidf(compose(AOR, pubs)).persons
    assert merged.id == "q" and local_names(merged.element) == ["activities", "activities"]


def test_presence_notes_per_language_and_extensions_per_name() -> None:
    ns = 'xmlns:x="urn:x"'
    a = pidf(
        '<note xml:lang="en">old en</note><note xml:lang="fr">vieux</note><note>none</note>'
        "<x:info>a1</x:info><x:info>a2</x:info><x:other>o</x:other>",
        extra_ns=ns,
    )
    b = pidf(
        '<note xml:lang="en">new en</note><note xml:lang="en">more</note><x:info>b</x:info>', extra_ns=ns
    )
    out = parse_pidf(compose(AOR, [Publication("a", a, 1.0), Publication("b", b, 2.0)]))
    assert [n.text for n in out.notes] == ["new en", "more", "vieux", "none"]
    assert [(e.tag, e.text) for e in out.extensions] == [("{urn:x}info", "b"), ("{urn:x}other", "o")]


def test_entity_is_the_presentity_and_is_escaped() -> None:
    out = compose('sip:o"d&d<@example.com', [Publication("a", pidf(tup("t"), entity="sip:other@x"), 1.0)])
    assert parse_pidf(out).entity == 'sip:o"d&d<@example.com'


def test_namespaces_hoisted_once_and_prefix_clashes_resolved() -> None:
    a = parse_pidf(vector("rfc3863-4.2.2-prefixed-ns.xml"))
    b = pidf('<x:info>b</x:info><tuple id="u"><status/><x:t>1</x:t></tuple>', extra_ns='xmlns:x="urn:b"')
    c = parse_pidf(
        f'<presence xmlns="{PIDF_NS}" xmlns:x="urn:c" entity="e"><x:more>c</x:more></presence>'.encode()
    )
    out = compose(AOR, [Publication("a", a, 1.0), Publication("b", b, 2.0), Publication("c", c, 3.0)])
    head = out.split(b">", 2)[1]
    assert head.startswith(b'\n<presence xmlns="urn:ietf:params:xml:ns:pidf"')
    assert b'xmlns:x="urn:b"' in head and b'xmlns:ns1="urn:c"' in head
    assert out.count(b"xmlns") == head.count(b"xmlns")  # nothing re-declared below the root
    assert b"impp" not in out
    doc = parse_pidf(out)
    assert [e.tag for e in doc.extensions] == ["{urn:b}info", "{urn:c}more"]
    assert find_id(doc.tuples, "u").basic is None


def test_ids_clashing_between_kinds_are_renamed() -> None:
    a = Publication("a", pidf(tup("x")), 1.0)
    b = Publication("b", pidf('<dm:device id="x"/><dm:device id="x-2"/>'), 2.0)
    c = Publication("c", pidf(person("x", "")), 3.0)
    out = parse_pidf(compose(AOR, [a, b, c]))
    assert [t.id for t in out.tuples] == ["x"] and out.persons[0].id == "x-2"
    assert [d.id for d in out.devices] == ["x-3", "x-2-2"]


def test_no_publication_gives_the_default() -> None:
    assert compose(AOR, []) == default_document(AOR)


def test_compose_output_is_compact_and_deterministic() -> None:
    doc = parse_pidf(FIXED["rfc4480-4-example.xml"](vector("rfc4480-4-example.xml")))
    out = compose(AOR, [Publication("a", doc, 1.0)])
    assert out.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<presence ')
    assert b"\n" not in out.split(b"\n", 1)[1].rstrip(b"\n")  # no blank text between elements
    assert (
        compose(
            AOR,
            [
                Publication(
                    "a", parse_pidf(FIXED["rfc4480-4-example.xml"](vector("rfc4480-4-example.xml"))), 1.0
                )
            ],
        )
        == out
    )


# -- default documents ---------------------------------------------------------------------------


def test_default_documents() -> None:
    closed = parse_pidf(default_document(AOR))
    assert closed.entity == AOR and [(t.id, t.basic) for t in closed.tuples] == [(DEFAULT_TUPLE_ID, "closed")]
    assert not closed.notes and not closed.persons
    with_note = parse_pidf(default_document(AOR, "closed", note="Gone fishing & back <soon>"))
    assert with_note.tuples[0].element.find(f"{{{PIDF_NS}}}note").text == "Gone fishing & back <soon>"
    offline = parse_pidf(default_document(AOR, "note"))
    assert not offline.tuples and [n.text for n in offline.notes] == ["Offline"]
    assert [n.text for n in parse_pidf(default_document(AOR, "note", "Away")).notes] == ["Away"]
    empty = parse_pidf(default_document(AOR, "empty"))
    assert not empty.tuples and not empty.notes
    with pytest.raises(ValueError, match="open"):
        default_document(AOR, "open")


# -- rejected documents ----------------------------------------------------------------------------

P = f'xmlns="{PIDF_NS}" xmlns:dm="{DM_NS}" xmlns:x="urn:x"'
T = "<status><basic>open</basic></status>"


def pres(body: str) -> str:
    return f'<presence {P} entity="e">{body}</presence>'


BAD = [
    ("<presence/>", "not a PIDF"),
    ('<p:presence xmlns:p="urn:other" entity="e"/>', "not a PIDF"),
    (pres(f"<tuple>{T}</tuple>"), "tuple without id"),
    (pres(f'<tuple id="1a">{T}</tuple>'), "not an XML ID"),
    (
        pres(f'<tuple id="a">{T}</tuple><tuple id="a">{T}</tuple>'),
        "duplicate id",
    ),
    (pres(f'<tuple id="a">{T}</tuple><dm:person id="a"/>'), "duplicate id"),
    (pres('<tuple id="a"><contact>sip:a</contact></tuple>'), "no <status>"),
    (pres(f'<tuple id="a">{T}{T}</tuple>'), "two <status>"),
    (
        pres('<tuple id="a"><status><basic>away</basic></status></tuple>'),
        "not open",
    ),
    (
        pres('<tuple id="a"><status><basic>open</basic><basic>open</basic></status></tuple>'),
        "two <basic>",
    ),
    (
        pres('<tuple id="a"><status><foo/></status></tuple>'),
        "unknown PIDF element",
    ),
    (
        pres(f'<tuple id="a">{T}<contact priority="1.5">sip:a</contact></tuple>'),
        "not a qvalue",
    ),
    (
        pres(f'<tuple id="a">{T}<contact>a</contact><contact>b</contact></tuple>'),
        "two <contact>",
    ),
    (
        pres(f'<tuple id="a">{T}<timestamp>yesterday</timestamp></tuple>'),
        "xs:dateTime",
    ),
    (
        pres(f'<tuple id="a">{T}<timestamp>2024-02-30T00:00:00Z</timestamp></tuple>'),
        "not a valid date",
    ),
    (
        pres(
            f'<tuple id="a">{T}<timestamp>2024-01-01T00:00:00Z</timestamp>'
            "<timestamp>2024-01-01T00:00:00Z</timestamp></tuple>"
        ),
        "two <timestamp>",
    ),
    (pres(f'<tuple id="a">{T}<frob/></tuple>'), "unknown PIDF element <frob>"),
    (pres("<status/>"), "unknown PIDF element <status>"),
    (
        f'<p:presence xmlns:p="{PIDF_NS}" entity="e"><p:tuple id="a"><status/></p:tuple></p:presence>',
        "no namespace",
    ),
    (f'<presence xmlns:p="{PIDF_NS}" entity="e"><junk/></presence>', "not a PIDF"),
    (f'<p:presence xmlns:p="{PIDF_NS}" entity="e"><junk/></p:presence>', "no namespace"),
    (pres(f'text<tuple id="a">{T}</tuple>'), "text not allowed"),
    (pres(f'<tuple id="a">{T}</tuple>tail'), "text not allowed"),
    (pres("<dm:person/>"), "person without id"),
    (
        pres('<dm:person id="p"><dm:deviceID>x</dm:deviceID></dm:person>'),
        "unknown data-model",
    ),
    (
        pres('<dm:device id="d"><dm:person id="p"/></dm:device>'),
        "unknown data-model",
    ),
    (
        pres('<dm:device id="d"><dm:deviceID>a</dm:deviceID><dm:deviceID>b</dm:deviceID></dm:device>'),
        "two dm:deviceID",
    ),
    (
        pres(
            '<dm:person id="p"><dm:timestamp>2024-01-01T00:00:00Z</dm:timestamp>'
            "<dm:timestamp>2024-01-01T00:00:00Z</dm:timestamp></dm:person>"
        ),
        "two dm:timestamp",
    ),
    (
        pres('<dm:person id="p"><dm:timestamp>soon</dm:timestamp></dm:person>'),
        "xs:dateTime",
    ),
]


@pytest.mark.parametrize(("body", "reason"), BAD, ids=[r for _, r in BAD])
def test_invalid_pidf_is_rejected_with_a_reason(body: str, reason: str) -> None:
    with pytest.raises(XmlRejected, match=reason) as info:
        parse_pidf(body.encode())
    assert info.value.status_hint == 400


def test_accepted_variants() -> None:
    doc = parse_pidf(
        f'<presence {P} entity=" sip:a@b "><tuple id="_a.b-c">{T}<x:e/><contact priority="1.000">x</contact>'
        '<note/><note xml:lang="de">n</note></tuple><tuple id="\u00e9t\u00e9"><status/></tuple>'
        '<dm:device id="d"><x:y/></dm:device><x:z/></presence>'.encode()
    )
    assert doc.entity == "sip:a@b" and [t.basic for t in doc.tuples] == ["open", None]
    assert [d.id for d in doc.devices] == ["d"] and len(doc.extensions) == 1


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("2005-08-15T10:20:00.000-05:00", "2005-08-15T15:20:00+00:00"),
        ("2005-08-15T10:20:00.123456789Z", "2005-08-15T10:20:00.123456+00:00"),
        ("2005-08-15T10:20:00", "2005-08-15T10:20:00+00:00"),
        (" 2005-12-31T24:00:00Z\n", "2006-01-01T00:00:00+00:00"),
    ],
)
def test_timestamps(text: str, iso: str) -> None:
    assert parse_timestamp(text) == datetime.fromisoformat(iso).timestamp()


@pytest.mark.parametrize(
    "text", ["", "2005-08-15", "2005-08-15T10:20Z", "2005-12-31T24:00:01Z", "20050815T102000Z"]
)
def test_bad_timestamps(text: str) -> None:
    with pytest.raises(XmlRejected):
        parse_timestamp(text)


# -- properties ------------------------------------------------------------------------------------

_ids = st.sampled_from(["a", "b", "c", "p1", "d1", "_x"])
_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=8)
_ts = st.one_of(
    st.none(),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat().replace("+00:00", "Z")),
)
_ext_ns = st.sampled_from(
    [("rpid", RPID_NS), ("c", CIPID_NS), ("x", "urn:x"), ("y", "urn:x"), ("x", "urn:y")]
)


@st.composite
def extension(draw: st.DrawFn, depth: int = 0) -> str:
    """An extension element declaring its own prefix (prefixes clash on purpose: x and y)."""
    prefix, uri = draw(_ext_ns)
    name = draw(st.sampled_from(["e", "f", "activities", "note"]))
    attrs = draw(st.dictionaries(st.sampled_from(["a", "from", "id"]), _text, max_size=2))
    children = draw(st.lists(extension(depth + 1), max_size=2)) if depth < 2 else []
    attr_text = "".join(f" {k}={quoteattr(v)}" for k, v in attrs.items())
    inner = "".join(children) if children else escape(draw(_text))
    return f'<{prefix}:{name} xmlns:{prefix}="{uri}"{attr_text}>{inner}</{prefix}:{name}>'


@st.composite
def pidf_documents(draw: st.DrawFn) -> bytes:
    """Random PIDF documents; duplicate ids make some of them invalid (they must be refused)."""
    parts: list[str] = []
    for ident in draw(st.lists(_ids, max_size=3)):
        ts = draw(_ts)
        exts = "".join(draw(st.lists(extension(), max_size=2)))
        basic = draw(st.sampled_from(["", "<basic>open</basic>", "<basic>closed</basic>"]))
        stamp = f"<timestamp>{ts}</timestamp>" if ts else ""
        note = f"<note>{escape(draw(_text))}</note>"
        parts.append(f'<tuple id="{ident}"><status>{basic}</status>{exts}{note}{stamp}</tuple>')
    for kind in draw(st.lists(st.sampled_from(["person", "device"]), max_size=2)):
        ts = draw(_ts)
        exts = "".join(draw(st.lists(extension(), max_size=3)))
        stamp = f"<dm:timestamp>{ts}</dm:timestamp>" if ts else ""
        parts.append(f'<dm:{kind} id="{draw(_ids)}">{exts}{stamp}</dm:{kind}>')
    parts.extend(draw(st.lists(extension(), max_size=2)))
    body = "".join(parts)
    return f'<presence xmlns="{PIDF_NS}" xmlns:dm="{DM_NS}" entity="sip:x@y">{body}</presence>'.encode()


@given(st.lists(pidf_documents(), min_size=1, max_size=4), st.lists(st.floats(0, 10), min_size=4, max_size=4))
def test_compose_of_any_accepted_documents_reparses(docs: list[bytes], times: list[float]) -> None:
    pubs = []
    for i, data in enumerate(docs):
        try:
            pubs.append(Publication(f"e{i}", parse_pidf(data), times[i]))
        except XmlRejected:
            continue
    out = compose(AOR, pubs)
    if not pubs:
        assert out == default_document(AOR)
        return
    composed = parse_pidf(out)  # ids unique, namespaces sound
    # Same ids and kinds, but for ids renamed "<id>-<n>" on a clash between kinds (merge rule 6).
    in_tuples = {t.id for p in pubs for t in p.document.tuples}
    in_devices = {d.id for p in pubs for d in p.document.devices}
    assert {t.id.partition("-")[0] for t in composed.tuples} == in_tuples
    assert {d.id.partition("-")[0] for d in composed.devices} == in_devices
    assert len(composed.persons) == (1 if any(p.document.persons for p in pubs) else 0)
    assert compose(AOR, list(reversed(pubs))) == out


@given(st.sampled_from(sorted(usable_documents())), st.data())
def test_mutated_vectors_only_raise_xml_rejected(name: str, data: st.DataObject) -> None:
    try:
        doc = parse_pidf(mutate(usable_documents()[name], data))
    except XmlRejected:
        return
    parse_pidf(compose(AOR, [Publication("m", doc, 0.0)]))


def test_a_document_without_entity_is_taken() -> None:
    # RFC 3863 requires the attribute, RFC 4479's example lacks it; compose names the AOR anyway
    assert parse_pidf(f'<presence xmlns="{PIDF_NS}"/>'.encode()).entity == ""
    assert parse_pidf(f'<presence xmlns="{PIDF_NS}" entity=" "/>'.encode()).entity == ""


def test_rfc4479_example_has_no_entity_and_is_taken_as_published() -> None:
    name = "rfc4479-7.1-basic-im-client.xml"
    doc = parse_pidf(vector(name))
    assert doc.entity == "" and [t.id for t in doc.tuples] and doc.persons
    assert parse_pidf(_add_entity(vector(name))).entity == "pres:someone@example.com"


def test_check_pidf_accepts_and_refuses_as_parse_pidf_does() -> None:
    """check_pidf (PUBLISH to a presentity nobody watches) runs parse_pidf's checks: the same
    documents pass, the others fail with the same status and message."""
    seen = 0
    for path in sorted(VECTORS.iterdir()):
        if path.suffix != ".xml":
            continue
        data = path.read_bytes()
        for body in (data, data.replace(b"<status>", b"<status>x"), data.replace(b'id="', b'id="1', 1)):
            try:
                parse_pidf(body)
                want: object = None
            except XmlRejected as exc:
                want = (exc.status_hint, str(exc))
            try:
                got: object = check_pidf(body)
            except XmlRejected as exc:
                got = (exc.status_hint, str(exc))
            assert got == want, path.name
            seen += 1
    assert seen > 30
