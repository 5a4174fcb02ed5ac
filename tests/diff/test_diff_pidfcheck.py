"""The two pidfcheck twins against each other (the PIDF structure check).

Both get the same parsed root (``parse_xml`` with blank text removed, as
``parse_pidf`` parses): every XML vector of tests/vectors (PIDF and the
rest, most of which must be refused), and documents generated from a small
grammar with the cases the check must tell apart: the root, ``entity``,
text where only elements may be, unqualified elements, tuples with missing,
malformed and duplicate ids, zero to two ``<status>``/``<basic>``/
``<contact>``/``<timestamp>``, basic values, priorities, timestamps valid
and not, notes, unknown PIDF and data-model elements, ``dm:person`` and
``dm:device`` with their timestamp, deviceID and notes, and extension
elements. Same result (the same elements, by identity) or the same
``XmlRejected`` message.
"""

from __future__ import annotations

from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from simplefast.presence.xmlsafe import XmlRejected, parse_xml
from simplefast.testing import VECTORS, load_impl

REF = load_impl("ref").pidfcheck
EXT = load_impl("ext").pidfcheck


def outcome(mod: Any, root: Any) -> tuple[Any, ...]:
    try:
        entity, tuples, persons, devices, notes, extensions = mod.structure(root)
    except XmlRejected as exc:
        return ("rejected", str(exc), exc.status_hint)

    tree = root.getroottree()

    def comps(cs: list[Any]) -> list[tuple[Any, ...]]:
        return [(k, i, ts, b, tree.getpath(el)) for k, i, ts, b, el in cs]

    return ("ok", entity, comps(tuples), comps(persons), comps(devices),
            [tree.getpath(e) for e in notes], [tree.getpath(e) for e in extensions])  # fmt: skip


def check(data: bytes) -> tuple[Any, ...] | None:
    try:
        root = parse_xml(data, remove_blank_text=True)
    except XmlRejected:
        return None
    ref, ext = outcome(REF, root), outcome(EXT, root)
    assert ext == ref, (data[:300], ref, ext)
    return ref


def test_every_xml_vector() -> None:
    seen = 0
    for path in sorted(VECTORS.rglob("*.xml")):
        if check(path.read_bytes()) is not None:
            seen += 1
    assert seen > 20


P = 'xmlns="urn:ietf:params:xml:ns:pidf"'
DM = 'xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"'
RPID = 'xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"'

ident_st = st.sampled_from(["t1", "t2", "p1", "_x", "a.b-c", "1bad", "", "x y", "\u00e9t\u00e9", "t1"])
text_st = st.sampled_from(["", "", "", " ", "\n  ", "junk", "&amp;"])
TUPLE_EXTRA = ["<note>n</note>", '<note xml:lang="en">e</note>', "<rpid:class>c</rpid:class>", "<bogus/>",
               "<dm:note>x</dm:note>", "<plain xmlns=''/>"]  # fmt: skip
DM_EXTRA = ["<dm:note>n</dm:note>", "<rpid:activities><rpid:away/></rpid:activities>", "<dm:bogus/>",
            "<note>pidf note</note>"]  # fmt: skip
ROOT_EXTRA = ["<note>n</note>", "<rpid:mood><rpid:happy/></rpid:mood>", "<bogus/>", "<plain xmlns=''/>",
              "<x:y xmlns:x='urn:x'/>"]  # fmt: skip
PRIORITIES = ["", ' priority="0.8"', ' priority="1"', ' priority="2"', ' priority=" 0.5 "']
CLEAN_TUPLE = ["", "", "<note>n</note>", "<contact priority='0.5'>sip:x@y</contact>", None,
               "<rpid:user-input>idle</rpid:user-input>"]  # fmt: skip
CLEAN_DM = ["", "<dm:note>n</dm:note>", None, "<dm:deviceID>urn:d</dm:deviceID>",
            "<rpid:activities><rpid:busy/></rpid:activities>"]  # fmt: skip

stamp_st = st.sampled_from([
    "2025-01-01T12:00:00Z", "2025-01-01T12:00:00.5+02:00", "2025-01-01T24:00:00Z", "2025-01-01T24:00:01Z",
    "2025-02-30T00:00:00Z", "yesterday", "", " 2025-01-01T12:00:00 ",
])  # fmt: skip


@st.composite
def tuple_st(draw: st.DrawFn) -> str:
    attrs = draw(st.sampled_from(["", ' id="{}"'])).format(draw(ident_st))
    parts = []
    for _ in range(draw(st.integers(0, 2))):
        basics = "".join(
            f"<basic>{draw(st.sampled_from(['open', 'closed', ' open ', 'busy', '']))}</basic>"
            for _ in range(draw(st.integers(0, 2)))
        )
        inner = basics + draw(st.sampled_from(["", "<rpid:x/>", "<basic2/>", "<other/>"]))
        parts.append(f"<status>{draw(text_st)}{inner}</status>")
    for _ in range(draw(st.integers(0, 2))):
        prio = draw(st.sampled_from(PRIORITIES))
        parts.append(f"<contact{prio}>sip:a@b</contact>")
    for _ in range(draw(st.integers(0, 2))):
        parts.append(f"<timestamp>{draw(stamp_st)}</timestamp>")
    parts += draw(st.lists(st.sampled_from(TUPLE_EXTRA), max_size=3))
    parts = draw(st.permutations(parts))
    tail = draw(text_st)
    return f"<tuple{attrs}>{draw(text_st)}{''.join(parts)}</tuple>{tail}"


@st.composite
def dm_st(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["person", "device"]))
    attrs = draw(st.sampled_from(["", ' id="{}"'])).format(draw(ident_st))
    parts = [f"<dm:timestamp>{draw(stamp_st)}</dm:timestamp>" for _ in range(draw(st.integers(0, 2)))]
    parts += ["<dm:deviceID>urn:x</dm:deviceID>" for _ in range(draw(st.integers(0, 2)))]
    parts += draw(st.lists(st.sampled_from(DM_EXTRA), max_size=3))
    parts = draw(st.permutations(parts))
    return f"<dm:{kind}{attrs}>{draw(text_st)}{''.join(parts)}</dm:{kind}>{draw(text_st)}"


@st.composite
def doc_st(draw: st.DrawFn) -> bytes:
    root = draw(st.sampled_from(["presence", "presence", "presence", "other"]))
    entity = draw(st.sampled_from(["", ' entity="sip:a@example.com"', ' entity=" pres:a@b "']))
    children = draw(st.lists(tuple_st() | dm_st() | st.sampled_from(ROOT_EXTRA), max_size=4))
    return f"<{root} {P} {DM} {RPID}{entity}>{draw(text_st)}{''.join(children)}</{root}>".encode()


@settings(max_examples=600)
@given(doc_st())
def test_generated_documents(data: bytes) -> None:
    r = check(data)
    event("not well-formed" if r is None else r[0])


@st.composite
def clean_doc_st(draw: st.DrawFn) -> bytes:
    """Mostly valid documents: unique ids, one status each, sometimes one thing wrong."""
    parts = []
    for i in range(draw(st.integers(0, 3))):
        extra = draw(st.sampled_from(CLEAN_TUPLE)) or f"<timestamp>{draw(stamp_st)}</timestamp>"
        basic = draw(st.sampled_from(["open", "closed", "open", "maybe"]))
        parts.append(f"<tuple id='t{i}'><status><basic>{basic}</basic></status>{extra}</tuple>")
    for i in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["person", "device"]))
        extra = draw(st.sampled_from(CLEAN_DM))
        if extra is None:
            extra = f"<dm:timestamp>{draw(stamp_st)}</dm:timestamp>"
        parts.append(f"<dm:{kind} id='{kind[0]}{i}'>{extra}</dm:{kind}>")
    parts += draw(
        st.lists(st.sampled_from(["<note>n</note>", "<rpid:mood><rpid:happy/></rpid:mood>"]), max_size=2)
    )
    parts = draw(st.permutations(parts))
    return f"<presence {P} {DM} {RPID} entity='sip:a@example.com'>{''.join(parts)}</presence>".encode()


@settings(max_examples=400)
@given(clean_doc_st())
def test_generated_clean_documents(data: bytes) -> None:
    r = check(data)
    event("not well-formed" if r is None else r[0])
