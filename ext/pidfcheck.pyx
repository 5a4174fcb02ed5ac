# The structure check of a parsed PIDF document, compiled twin of
# simplefast/_ref/pidfcheck.py.
#
# The reference module is the specification (its docstring, and the rules
# listed in simplefast/presence/pidf.py); the contract lives in
# simplefast/_ext/pidfcheck.pyi. Same result, same message for the same
# document. What this twin changes is the cost of the walk: each element's
# tag, tail, text and id are read once into typed locals, and the strings
# that name an element in a message ("tuple 't1'") are built only when a
# message is raised. The parsing stays lxml's; the xs:dateTime and qvalue
# rules are the shared Python helpers (a timestamp or a priority is at most
# a few per document).

from simplefast._sipshared import qvalue as _qvalue
from simplefast.presence.xmlsafe import XmlRejected
from simplefast.presence.xsd import NCNAME as _NCNAME_RE
from simplefast.presence.xsd import parse_timestamp as _parse_timestamp

cdef str _P = "{urn:ietf:params:xml:ns:pidf}"
cdef str _DM = "{urn:ietf:params:xml:ns:pidf:data-model}"
cdef str _PRESENCE = _P + "presence"
cdef str _TUPLE = _P + "tuple"
cdef str _STATUS = _P + "status"
cdef str _BASIC = _P + "basic"
cdef str _CONTACT = _P + "contact"
cdef str _NOTE = _P + "note"
cdef str _TIMESTAMP = _P + "timestamp"
cdef str _PERSON = _DM + "person"
cdef str _DEVICE = _DM + "device"
cdef str _DM_NOTE = _DM + "note"
cdef str _DM_TIMESTAMP = _DM + "timestamp"
cdef str _DM_DEVICE_ID = _DM + "deviceID"
cdef object _ncname_match = _NCNAME_RE.match


cdef str _name(object tag):
    if not isinstance(tag, str):
        return "?"
    cdef str t = <str>tag
    if t.startswith(_P):
        return t[len(_P):]
    if t.startswith(_DM):
        return "dm:" + t[len(_DM):]
    return t.rpartition("}")[2]


cdef str _where(str kind, str ident):
    return f"{kind} {ident[:40]!r}" if ident else kind


cdef inline bint _blank(object text):
    """None or white space only (str.strip's idea of it)."""
    return text is None or not (<str>text).strip()


cdef int _check_node(object el, str tag, str where) except -1:
    if tag[:1] != "{":
        raise XmlRejected(f"element <{tag[:40]}> in {where} has no namespace")
    tail = el.tail
    if tail is not None and (<str>tail).strip():
        raise XmlRejected(f"text not allowed in {where}")
    return 0


cdef str _id(object el, str what, set seen):
    ident = el.get("id")
    if ident is None:
        raise XmlRejected(f"{what} without id")
    if _ncname_match(ident) is None:
        raise XmlRejected(f"{what} id {ident[:40]!r} is not an XML ID")
    if ident in seen:  # xs:ID values are unique across the document
        raise XmlRejected(f"duplicate id {ident[:40]!r}")
    seen.add(ident)
    return <str>ident


cdef tuple _tuple(object el, set seen):
    cdef str ident = _id(el, "tuple", seen)
    cdef str tag
    if not _blank(el.text):
        raise XmlRejected(f"text not allowed in {_where('tuple', ident)}")
    status = contact = stamp = None
    for child in el:
        tag = child.tag
        if tag[0] != "{" or child.tail is not None:
            _check_node(child, tag, _where("tuple", ident))
        if not tag.startswith(_P):
            continue  # extension (RFC 3863 section 4.1.4's ##other)
        if tag == _STATUS:
            if status is not None:
                raise XmlRejected(f"{_where('tuple', ident)} has two <status>")
            status = child
        elif tag == _CONTACT:
            if contact is not None:
                raise XmlRejected(f"{_where('tuple', ident)} has two <contact>")
            contact = child
            prio = child.get("priority")
            if prio is not None and _qvalue(prio.strip()) is None:  # RFC 3863 section 4.1.5
                raise XmlRejected(f"{_where('tuple', ident)} contact priority {prio[:20]!r} is not a qvalue")
        elif tag == _TIMESTAMP:
            if stamp is not None:
                raise XmlRejected(f"{_where('tuple', ident)} has two <timestamp>")
            stamp = child
        elif tag != _NOTE:
            raise XmlRejected(f"unknown PIDF element <{_name(tag)}> in {_where('tuple', ident)}")
    if status is None:
        raise XmlRejected(f"{_where('tuple', ident)} has no <status>")  # RFC 3863 section 4.1.4
    basic = _status(status, ident)
    ts = None if stamp is None else _parse_timestamp(stamp.text, f"{_where('tuple', ident)} timestamp")
    return ("tuple", ident, ts, basic, el)


cdef object _status(object status, str ident):
    cdef str tag
    if not _blank(status.text):
        raise XmlRejected(f"text not allowed in {_where('tuple', ident)} status")
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
        if (basic != "open" and basic != "closed") or len(child):  # RFC 3863 section 4.1.4
            raise XmlRejected(f"{_where('tuple', ident)} basic status {basic[:20]!r} is not open or closed")
    return basic


cdef tuple _dm_component(object el, str kind, set seen):
    cdef str ident = _id(el, kind, seen)
    cdef str tag
    cdef bint device_id = False
    if not _blank(el.text):
        raise XmlRejected(f"text not allowed in {_where(kind, ident)}")
    stamp = None
    for child in el:
        tag = child.tag
        if tag[0] != "{" or child.tail is not None:
            _check_node(child, tag, _where(kind, ident))
        if not tag.startswith(_DM):
            continue  # characteristics and status: RPID, CIPID, ... (RFC 4479 section 4)
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


def structure(root):
    if root.tag != _PRESENCE:
        raise XmlRejected(f"root element <{_name(root.tag)}> is not a PIDF <presence>")
    entity = (root.get("entity") or "").strip()
    if not _blank(root.text):
        raise XmlRejected("text not allowed in presence")
    cdef set seen = set()
    cdef list tuples = [], persons = [], devices = [], notes = [], extensions = []
    cdef str tag
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
