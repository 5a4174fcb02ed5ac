"""The structure check of a parsed PIDF document, reference twin of ext/pidfcheck.pyx.

``structure(root)`` checks the ``<presence>`` element of a parsed body
against the rules listed in simplefast/presence/pidf.py (root, tuples,
``dm:person``/``dm:device``, ids, status, contact priority, timestamps,
text and unqualified elements) and returns what ``parse_pidf`` keeps:
``(entity, tuples, persons, devices, notes, extensions)`` where each
component is ``(kind, id, timestamp, basic, element)``. The first violation
raises ``XmlRejected`` (400) with a message naming it; both twins raise the
same message for the same document.
"""

from __future__ import annotations

from typing import Any as _Any

from simplefast._sipshared import qvalue as _qvalue
from simplefast.presence.xmlsafe import XmlRejected
from simplefast.presence.xsd import NCNAME as _NCNAME
from simplefast.presence.xsd import parse_timestamp as _parse_timestamp

_Element = _Any
_Component = tuple[str, str, float | None, str | None, _Any]

_P = "{urn:ietf:params:xml:ns:pidf}"
_DM = "{urn:ietf:params:xml:ns:pidf:data-model}"
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


def _name(tag: object) -> str:
    """A tag for messages: ``pidf:tuple``-like when known, else the local name."""
    if not isinstance(tag, str):
        return "?"
    if tag.startswith(_P):
        return tag[len(_P) :]
    if tag.startswith(_DM):
        return "dm:" + tag[len(_DM) :]
    return tag.rpartition("}")[2]


def _where(kind: str, ident: str) -> str:
    return f"{kind} {ident[:40]!r}" if ident else kind


def _check_node(el: _Element, tag: str, where: str) -> None:
    """Refuse an unqualified child or text beside it (structural elements have element-only content).

    Only called on the rare path: callers test ``tag[0] == "{"`` and a None tail inline first.
    """
    if tag[:1] != "{":
        raise XmlRejected(f"element <{tag[:40]}> in {where} has no namespace")
    tail = el.tail
    if tail is not None and tail.strip():
        raise XmlRejected(f"text not allowed in {where}")


def _check_text(el: _Element, where: str) -> None:
    text = el.text
    if text is not None and text.strip():  # blank text is dropped by the parser
        raise XmlRejected(f"text not allowed in {where}")


def _id(el: _Element, what: str, seen: set[str]) -> str:
    ident: str | None = el.get("id")
    if ident is None:
        raise XmlRejected(f"{what} without id")
    if not _NCNAME.match(ident):
        raise XmlRejected(f"{what} id {ident[:40]!r} is not an XML ID")
    if ident in seen:  # xs:ID values are unique across the document
        raise XmlRejected(f"duplicate id {ident[:40]!r}")
    seen.add(ident)
    return ident


def _tuple(el: _Element, seen: set[str]) -> _Component:
    ident = _id(el, "tuple", seen)
    _check_text(el, _where("tuple", ident))
    status = contact = stamp = None
    for child in el:
        tag = child.tag
        if tag[0] != "{" or child.tail is not None:
            _check_node(child, tag, _where("tuple", ident))
        if not tag.startswith(_P):
            continue  # extension (RFC 3863 §4.1.4's ##other)
        if tag == _STATUS:
            if status is not None:
                raise XmlRejected(f"{_where('tuple', ident)} has two <status>")
            status = child
        elif tag == _CONTACT:
            if contact is not None:
                raise XmlRejected(f"{_where('tuple', ident)} has two <contact>")
            contact = child
            prio = child.get("priority")
            if prio is not None and _qvalue(prio.strip()) is None:  # RFC 3863 §4.1.5
                raise XmlRejected(f"{_where('tuple', ident)} contact priority {prio[:20]!r} is not a qvalue")
        elif tag == _TIMESTAMP:
            if stamp is not None:
                raise XmlRejected(f"{_where('tuple', ident)} has two <timestamp>")
            stamp = child
        elif tag != _NOTE:
            raise XmlRejected(f"unknown PIDF element <{_name(tag)}> in {_where('tuple', ident)}")
    if status is None:
        raise XmlRejected(f"{_where('tuple', ident)} has no <status>")  # RFC 3863 §4.1.4: mandatory
    basic = _status(status, ident)
    ts = None if stamp is None else _parse_timestamp(stamp.text, f"{_where('tuple', ident)} timestamp")
    return ("tuple", ident, ts, basic, el)


def _status(status: _Element, ident: str) -> str | None:
    if status.text is not None:
        _check_text(status, f"{_where('tuple', ident)} status")
    basic = None
    for child in status:
        tag = child.tag
        if tag[0] != "{" or child.tail is not None:
            _check_node(child, tag, f"{_where('tuple', ident)} status")
        if not tag.startswith(_P):
            continue
        if tag != _BASIC:
            raise XmlRejected(f"unknown PIDF element <{_name(tag)}> in {_where('tuple', ident)} status")
        if basic is not None:
            raise XmlRejected(f"{_where('tuple', ident)} has two <basic>")
        basic = (child.text or "").strip()
        if basic not in ("open", "closed") or len(child):  # RFC 3863 §4.1.4
            raise XmlRejected(f"{_where('tuple', ident)} basic status {basic[:20]!r} is not open or closed")
    return basic


def _dm_component(el: _Element, kind: str, seen: set[str]) -> _Component:
    ident = _id(el, kind, seen)
    _check_text(el, _where(kind, ident))
    stamp = None
    device_id = False
    for child in el:
        tag = child.tag
        if tag[0] != "{" or child.tail is not None:
            _check_node(child, tag, _where(kind, ident))
        if not tag.startswith(_DM):
            continue  # characteristics and status: RPID, CIPID, ... (RFC 4479 §4)
        if tag == _DM_TIMESTAMP:
            if stamp is not None:
                raise XmlRejected(f"{_where(kind, ident)} has two dm:timestamp")
            stamp = child
        elif tag == _DM_DEVICE_ID and kind == "device":
            if device_id:
                raise XmlRejected(f"{_where(kind, ident)} has two dm:deviceID")
            device_id = True
        elif tag != _DM_NOTE:
            raise XmlRejected(f"unknown data-model element <{_name(tag)}> in {_where(kind, ident)}")
    ts = None if stamp is None else _parse_timestamp(stamp.text, f"{_where(kind, ident)} timestamp")
    return (kind, ident, ts, None, el)


_Parts = tuple[str, list[_Component], list[_Component], list[_Component], list[_Element], list[_Element]]


def structure(root: _Element) -> _Parts:
    """The checked parts of a ``<presence>`` root (see the module docstring)."""
    if root.tag != _PRESENCE:
        raise XmlRejected(f"root element <{_name(root.tag)}> is not a PIDF <presence>")
    # RFC 3863 §4.1.1 requires ``entity``; a publication without one (RFC 4479's own
    # example has none) is taken all the same: compose writes the presentity's AOR
    entity = (root.get("entity") or "").strip()
    _check_text(root, "presence")
    seen: set[str] = set()
    tuples: list[_Component] = []
    persons: list[_Component] = []
    devices: list[_Component] = []
    notes: list[_Element] = []
    extensions: list[_Element] = []
    try:
        for child in root:
            tag = child.tag
            if tag[0] != "{" or child.tail is not None:
                _check_node(child, tag, "presence")
            if tag.startswith(_P):
                if tag == _TUPLE:
                    tuples.append(_tuple(child, seen))
                elif tag == _NOTE:
                    notes.append(child)
                else:
                    raise XmlRejected(f"unknown PIDF element <{_name(tag)}> in presence")
            elif tag == _PERSON:
                persons.append(_dm_component(child, "person", seen))
            elif tag == _DEVICE:
                devices.append(_dm_component(child, "device", seen))
            else:
                extensions.append(child)
    except (AttributeError, TypeError, IndexError):
        # Only elements reach here (the parser drops comments and PIs, and without a
        # DTD there are no entity nodes); this keeps a surprise a 400, not a crash.
        raise XmlRejected("unexpected node in a PIDF structure") from None
    return entity.strip(), tuples, persons, devices, notes, extensions
