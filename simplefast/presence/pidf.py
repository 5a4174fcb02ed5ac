"""PIDF documents (RFC 3863) with the data model (RFC 4479): parse, compose, defaults. Sans-IO.

Theory of operation
-------------------
``parse_pidf(body)`` runs once per PUBLISH. It parses with the hardened
parser (:mod:`simplefast.presence.xmlsafe`; blank text between elements is
dropped) and checks the structure the server relies on, raising
:class:`~simplefast.presence.xmlsafe.XmlRejected` (400, with a reason) on the
first violation, so a bad body changes nothing:

- the root is ``<presence>`` in ``urn:ietf:params:xml:ns:pidf``; its
  ``entity`` (required by RFC 3863 §4.1.1, missing from RFC 4479's own
  example) is kept when present and not required: the composed document
  names the presentity's AOR anyway (rule 5 below);
- its children are ``<tuple>``, ``<note>``, ``dm:person``, ``dm:device``
  (``urn:ietf:params:xml:ns:pidf:data-model``) or extension elements in any
  other namespace; any other PIDF element, and any unqualified element, is
  refused; so is non-blank text between structural elements;
- a tuple has an ``id`` (an NCName, unique among all tuple, person and device
  ids: they are ``xs:ID``), exactly one ``<status>`` whose optional
  ``<basic>`` is ``open`` or ``closed``, at most one ``<contact>`` (its
  ``priority`` a qvalue, §4.1.5), any ``<note>`` and at most one
  ``<timestamp>`` (an ``xs:dateTime``, §4.1.7);
- a ``dm:person`` or ``dm:device`` has an ``id``, at most one
  ``dm:timestamp``, any ``dm:note``, and (device only) ``dm:deviceID``; other
  data-model elements inside them are refused. ``dm:deviceID`` is not
  required (RFC 4479's schema requires it; clients omit it and the server
  does not need it);
- everything else (RPID 4480, timed status 4481, CIPID 4482, caps, vendor
  namespaces) is an extension and is kept as parsed, attributes, text and
  children, to be copied out again; it is not validated.

The element order of RFC 3863's schema is not enforced; compose writes the
canonical order.

``compose(entity, publications)`` builds the document watchers get, once per
presentity version (the caller caches the bytes; it is never run per
watcher). Publications are ranked oldest to newest by ``(published_at,
etag)``; "newer" below means later in that ranking. The merge rule:

1. Tuples are keyed by ``id``. When several publications carry the same id:
   if every candidate has a ``<timestamp>``, the latest timestamp wins (a tie
   goes to the newer publication); otherwise the newest publication wins. The
   winning tuple is copied whole, with its notes; nothing is mixed from the
   losers. (Deciding "all have a timestamp, else publication order" over the
   whole set, not pairwise, keeps the choice a total order.)
2. Devices (``dm:device``) are keyed by ``id`` with the same rule, using
   ``dm:timestamp``.
3. Persons: RFC 4479 §3.2 gives a presentity one person, so the output has at
   most one ``dm:person``. Among all person elements of all publications the
   winner is picked as in rule 1 (``dm:timestamp``); it keeps its id, notes
   and timestamp. Then every other person, best first by the same order,
   contributes each of its extension children whose qualified name (for
   example ``rpid:activities``, ``c:display-name``) the merged person does
   not have yet, all instances of that name from that person; they go before
   the winner's ``dm:note``. So a CIPID card from one device and RPID
   activities from another both reach watchers, and on a conflict the better
   person wins.
4. Presence-level ``<note>`` elements are keyed by ``xml:lang``: for each
   language, the notes of the newest publication that has any in that
   language. Presence-level extension elements are keyed by qualified name
   the same way (the newest publication that has that name supplies all its
   instances).
5. The ``entity`` is the presentity's AOR given to compose; the entities of
   the publications are not used.
6. Ids are one space in a document (``xs:ID``) but rules 1-3 key each kind
   apart, so a tuple, the person and a device from different publications
   may share an id. In output order, an element whose id is already taken
   gets ``<id>-<n>``, the smallest n from 2 that is free.

Output order: tuples, notes, the person, devices, other extensions; within
each group, the order in which ids or keys first appear (oldest publication
first, document order). Namespaces: ``pidf`` is the default namespace; every
namespace declared on a publication's root is declared once on the output
root, with a well-known prefix (``dm``, ``rpid``, ``c``, ``ts``, ``caps``,
``im``) or else the publisher's prefix, or ``nsN`` when that prefix is taken.
lxml re-points copied elements at those root declarations, so they are not
repeated; a namespace declared only deeper in a publication stays declared
there. Prefixes may change, so a QName inside text or an attribute value
(``xsi:type``) keeps its meaning only while its prefix was declared on the
publisher's root under a free name. Same publications in, same bytes out.

With no publication, compose returns ``default_document(entity)``; a server
configured for another default calls :func:`default_document` itself
(modes ``closed``: one closed tuple; ``note``: no tuple, a presence note,
"Offline" unless given; ``empty``: a bare ``<presence>``, RFC 3863 §4.1.1
allows zero tuples).

Cost, measured with ``bench/test_pidf.py`` (pytest-benchmark minimum, 2
shared cores, CPython 3.11, lxml 6.1): parse 28 µs for the 1 KB RFC 4479
example, 60 µs for the 2.4 KB RFC 4480 one (libxml2 itself takes about 17 µs
of that; the rest is lxml property access in the structural walk); compose
41 µs for one such publication, 63 µs for three.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from lxml import etree  # type: ignore[import-untyped]

from simplefast._impl import pidfcheck as _pidfcheck
from simplefast.presence.xmlsafe import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_ELEMENTS,
    Element,
    parse_xml,
)
from simplefast.presence.xsd import parse_timestamp as parse_timestamp  # re-exported

PIDF_NS = "urn:ietf:params:xml:ns:pidf"
DM_NS = "urn:ietf:params:xml:ns:pidf:data-model"
RPID_NS = "urn:ietf:params:xml:ns:pidf:rpid"
CIPID_NS = "urn:ietf:params:xml:ns:pidf:cipid"
TIMED_STATUS_NS = "urn:ietf:params:xml:ns:pidf:timed-status"
CAPS_NS = "urn:ietf:params:xml:ns:pidf:caps"
IM_NS = "urn:ietf:params:xml:ns:pidf:im"
XML_NS = "http://www.w3.org/XML/1998/namespace"

#: Prefixes compose prefers for well-known namespaces.
PREFERRED_PREFIXES: dict[str, str] = {
    DM_NS: "dm",
    RPID_NS: "rpid",
    CIPID_NS: "c",
    TIMED_STATUS_NS: "ts",
    CAPS_NS: "caps",
    IM_NS: "im",
}

#: The id of the tuple of ``default_document(mode="closed")``.
DEFAULT_TUPLE_ID = "sf-default"

_P = "{" + PIDF_NS + "}"
_DM = "{" + DM_NS + "}"
_PRESENCE = _P + "presence"
_TUPLE = _P + "tuple"
_STATUS = _P + "status"
_BASIC = _P + "basic"
_CONTACT = _P + "contact"
_NOTE = _P + "note"
_TIMESTAMP = _P + "timestamp"
_PERSON = _DM + "person"
_DEVICE = _DM + "device"
_DM_NOTE = _DM + "note"
_DM_TIMESTAMP = _DM + "timestamp"
_DM_DEVICE_ID = _DM + "deviceID"
_LANG = "{" + XML_NS + "}lang"
_XML_DECL = b'<?xml version="1.0" encoding="UTF-8"?>\n'


@dataclass(frozen=True, slots=True, eq=False)
class Component:
    """One tuple, ``dm:person`` or ``dm:device`` of a parsed document.

    Attributes:
        kind: ``"tuple"``, ``"person"`` or ``"device"``.
        id: its ``id`` attribute.
        timestamp: its ``<timestamp>`` / ``dm:timestamp`` as POSIX seconds, or None.
        basic: a tuple's ``<basic>`` (``"open"``/``"closed"``), else None.
        element: the parsed element; treat it as read-only (compose copies it).
    """

    kind: str
    id: str
    timestamp: float | None
    basic: str | None
    element: Element


@dataclass(frozen=True, slots=True, eq=False)
class PidfDocument:
    """A validated PIDF document, as kept per publication.

    Attributes:
        entity: the ``entity`` attribute of ``<presence>``.
        tuples, persons, devices: the components, in document order.
        notes: presence-level ``<note>`` elements.
        extensions: other presence-level children (extension namespaces).
        nsmap: the namespace declarations of the root, (prefix or None, URI).
        root: the parsed ``<presence>`` element; read-only.
    """

    entity: str
    tuples: tuple[Component, ...]
    persons: tuple[Component, ...]
    devices: tuple[Component, ...]
    notes: tuple[Element, ...]
    extensions: tuple[Element, ...]
    nsmap: tuple[tuple[str | None, str], ...]
    root: Element


class Publication(NamedTuple):
    """One live publication of a presentity (RFC 3903): its entity-tag, document and time."""

    etag: str
    document: PidfDocument
    published_at: float


def parse_pidf(
    data: bytes | bytearray | memoryview,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> PidfDocument:
    """Parse and check a PIDF body (``application/pidf+xml``).

    Args:
        data: the body of a PUBLISH (or a NOTIFY, or an XCAP pidf-manipulation document).
        max_bytes, max_depth, max_elements: the parser bounds (see ``parse_xml``).

    Returns:
        The document; its elements are shared with compose, which copies them.

    Raises:
        XmlRejected: not well-formed, hostile, past a bound, or not PIDF (400; 413 for size).
    """
    root = parse_xml(
        data, max_bytes=max_bytes, max_depth=max_depth, max_elements=max_elements, remove_blank_text=True
    )
    entity, tuples, persons, devices, notes, extensions = _pidfcheck.structure(root)
    return PidfDocument(
        entity=entity,
        tuples=tuple(Component(*c) for c in tuples),
        persons=tuple(Component(*c) for c in persons),
        devices=tuple(Component(*c) for c in devices),
        notes=tuple(notes),
        extensions=tuple(extensions),
        nsmap=tuple(root.nsmap.items()),
        root=root,
    )


def check_pidf(
    data: bytes | bytearray | memoryview,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> None:
    """``parse_pidf``'s checks without building the document (a PUBLISH for a presentity
    nobody watches: its body is never composed). Raises what ``parse_pidf`` raises."""
    root = parse_xml(
        data, max_bytes=max_bytes, max_depth=max_depth, max_elements=max_elements, remove_blank_text=True
    )
    _pidfcheck.structure(root)


def _by_timestamp(rc: tuple[int, Component]) -> tuple[float, int]:
    return (rc[1].timestamp or 0.0, rc[0])


def _by_publication(rc: tuple[int, Component]) -> int:
    return rc[0]


def _ranked(candidates: list[tuple[int, Component]]) -> list[tuple[int, Component]]:
    """(publication rank, component) pairs best first: merge rule 1.

    By timestamp when every candidate has one, else by publication; the sort is
    stable, so equal keys (two persons of one document) keep document order.
    """
    if all(c.timestamp is not None for _, c in candidates):
        return sorted(candidates, key=_by_timestamp, reverse=True)
    return sorted(candidates, key=_by_publication, reverse=True)


def _winners_by_id(pubs: Sequence[Publication], kind: str) -> list[Component]:
    groups: dict[str, list[tuple[int, Component]]] = {}
    for rank, pub in enumerate(pubs):
        doc = pub.document
        comps = doc.tuples if kind == "tuple" else doc.devices
        for comp in comps:
            groups.setdefault(comp.id, []).append((rank, comp))
    return [cands[0][1] if len(cands) == 1 else _ranked(cands)[0][1] for cands in groups.values()]


def _newest_per_key(
    pubs: Sequence[Publication],
    pick: Callable[[PidfDocument], Iterable[Element]],
    key: Callable[[Element], object],
) -> list[Element]:
    chosen: dict[object, tuple[int, list[Element]]] = {}
    for rank, pub in enumerate(pubs):
        for el in pick(pub.document):
            k = key(el)
            cur = chosen.get(k)
            if cur is None or cur[0] < rank:
                chosen[k] = (rank, [el])
            else:
                cur[1].append(el)
    return [el for _, els in chosen.values() for el in els]


def _copy(el: Element) -> Element:
    c = copy.deepcopy(el)
    c.tail = None
    return c


def _unique_id(el: Element, used: set[str]) -> Element:
    """Merge rule 6: ids stay unique across tuples, the person and devices."""
    ident: str = el.get("id")
    if ident in used:
        n = 2
        while f"{ident}-{n}" in used:
            n += 1
        ident = f"{ident}-{n}"
        el.set("id", ident)
    used.add(ident)
    return el


def _merged_person(pubs: Sequence[Publication]) -> Element | None:
    cands = [(rank, comp) for rank, pub in enumerate(pubs) for comp in pub.document.persons]
    if not cands:
        return None
    ranked = _ranked(cands)
    merged = _copy(ranked[0][1].element)
    have = {child.tag for child in merged if not child.tag.startswith(_DM)}
    at = next((i for i, child in enumerate(merged) if child.tag.startswith(_DM)), len(merged))
    for _, loser in ranked[1:]:
        added: set[str] = set()
        for child in loser.element:
            tag = child.tag
            if tag in have or tag.startswith(_DM):
                continue
            merged.insert(at, _copy(child))
            at += 1
            added.add(tag)
        have |= added
    return merged


def _output_nsmap(pubs: Sequence[Publication]) -> dict[str | None, str]:
    nsmap: dict[str | None, str] = {None: PIDF_NS}
    known = {PIDF_NS, XML_NS}
    n = 0
    for pub in pubs:
        for prefix, uri in pub.document.nsmap:
            if uri in known:
                continue
            known.add(uri)
            want = PREFERRED_PREFIXES.get(uri, prefix)
            if want is None or want in nsmap:
                while True:
                    n += 1
                    want = f"ns{n}"
                    if want not in nsmap:
                        break
            nsmap[want] = uri
    return nsmap


def compose(entity: str, publications: Sequence[Publication]) -> bytes:
    """The presentity's document from all its live publications (merge rule: module docstring).

    Args:
        entity: the presentity's AOR, written as ``entity``.
        publications: the live publications, any order.

    Returns:
        A UTF-8 PIDF document; the same inputs always give the same bytes.
    """
    if not publications:
        return default_document(entity)
    pubs = sorted(publications, key=lambda p: (p.published_at, p.etag))
    root = etree.Element(_PRESENCE, nsmap=_output_nsmap(pubs))
    root.set("entity", entity)
    used: set[str] = set()
    for comp in _winners_by_id(pubs, "tuple"):
        root.append(_unique_id(_copy(comp.element), used))
    for el in _newest_per_key(pubs, lambda d: d.notes, lambda e: e.get(_LANG)):
        root.append(_copy(el))
    person = _merged_person(pubs)
    if person is not None:
        root.append(_unique_id(person, used))
    for comp in _winners_by_id(pubs, "device"):
        root.append(_unique_id(_copy(comp.element), used))
    for el in _newest_per_key(pubs, lambda d: d.extensions, lambda e: e.tag):
        root.append(_copy(el))
    return _XML_DECL + bytes(etree.tostring(root, encoding="UTF-8", xml_declaration=False))


def default_document(entity: str, mode: str = "closed", note: str | None = None) -> bytes:
    """The document of a presentity with no live publication.

    Args:
        entity: the presentity's AOR.
        mode: ``"closed"`` (one tuple, basic closed, with ``note`` in it if given),
            ``"note"`` (no tuple; a presence ``<note>``, ``note`` or "Offline"),
            or ``"empty"`` (``<presence>`` alone).
        note: the note text.

    Raises:
        ValueError: for an unknown mode.
    """
    root = etree.Element(_PRESENCE, nsmap={None: PIDF_NS})
    root.set("entity", entity)
    if mode == "closed":
        tup = etree.SubElement(root, _TUPLE, id=DEFAULT_TUPLE_ID)
        etree.SubElement(etree.SubElement(tup, _STATUS), _BASIC).text = "closed"
        if note is not None:
            etree.SubElement(tup, _NOTE).text = note
    elif mode == "note":
        etree.SubElement(root, _NOTE).text = "Offline" if note is None else note
    elif mode != "empty":
        raise ValueError(f"default presence mode {mode!r} is not closed, note or empty")
    return _XML_DECL + bytes(etree.tostring(root, encoding="UTF-8", xml_declaration=False))
