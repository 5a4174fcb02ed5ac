# The structure check of a parsed PIDF document, compiled twin of
# simplefast/_ref/pidfcheck.py.
#
# The reference module is the specification (its docstring, and the rules
# listed in simplefast/presence/pidf.py); the contract lives in
# simplefast/_ext/pidfcheck.pyi. Same result, same message for the same
# document.
#
# What this twin changes is the cost of the walk. The reference asks lxml
# for each node's tag, text, tail and attributes, and lxml builds a Python
# proxy object for every element it hands out. Here the walk reads libxml2's
# tree directly (lxml's public C API gives the root's xmlNode; the nodes'
# struct fields are read, no libxml2 function is called): a namespace is
# compared as a C string, text is tested for white space in place, and
# Python objects are made only for what is returned (the ids, the elements
# of the components, notes and extensions) and for what a message names.
# The semantics follow lxml's exactly: ``.text`` / ``.tail`` are the text
# nodes before the first child / after the element (None when there are
# none), ``get(name)`` an attribute without namespace, a Clark tag
# "{href}name" compared by prefix (so a namespace URI with "}" behaves as in
# the reference). The parser the server uses drops comments and processing
# instructions and has no DTD, so elements and text are the only children.
# The xs:dateTime and qvalue rules are the shared Python helpers (a
# timestamp or a priority is at most a few per document).

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.string cimport memcmp, strlen, strncmp

cimport lxml.includes.etreepublic as cetree
from lxml.includes.tree cimport XML_CDATA_SECTION_NODE, XML_ELEMENT_NODE, XML_TEXT_NODE, xmlAttr, xmlNode

from simplefast._sipshared import qvalue as _qvalue
from simplefast.presence.xmlsafe import XmlRejected
from simplefast.presence.xsd import NCNAME as _NCNAME_RE
from simplefast.presence.xsd import parse_timestamp as _parse_timestamp

from lxml import etree as _etree

# The walk reads lxml's and libxml2's structs as the headers of the lxml it was built
# against lay them out: another lxml at run time is refused (a startup error, the
# rule of simplefast/_impl.py), not guessed at.
_BUILT_WITH = (<bytes>cetree.LXML_VERSION_STRING).decode("ascii")
if _etree.__version__ != _BUILT_WITH:
    raise ImportError(f"simplefast._ext.pidfcheck was built with lxml {_BUILT_WITH}, this is lxml "
                      f"{_etree.__version__}: rebuild the extensions (make build)")
cetree.import_lxml__etree()

ctypedef const unsigned char* cstr

cdef bytes _P_HREF = b"urn:ietf:params:xml:ns:pidf"
cdef bytes _DM_HREF = b"urn:ietf:params:xml:ns:pidf:data-model"
cdef str _P = "{urn:ietf:params:xml:ns:pidf}"
cdef str _DM = "{urn:ietf:params:xml:ns:pidf:data-model}"
cdef object _ncname_match = _NCNAME_RE.match

DEF NS_NONE = 0   # no namespace: an unqualified element
DEF NS_P = 1      # exactly the PIDF namespace
DEF NS_DM = 2     # exactly the data-model namespace
DEF NS_P_LIKE = 3  # "{pidf}" is a prefix of the Clark tag without being the namespace (a "}" in the URI)
DEF NS_DM_LIKE = 4
DEF NS_OTHER = 5


cdef inline int _prefix_kind(cstr href, bytes base, int exact, int like) noexcept:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(base)
    if strncmp(<const char*>href, PyBytes_AS_STRING(base), n) != 0:
        return 0
    if href[n] == 0:
        return exact
    if href[n] == 125:  # "}": the Clark tag "{href}name" still starts with "{base}"
        return like
    return 0


cdef int _ns(xmlNode* n) noexcept:
    cdef cstr href
    cdef int k
    if n.ns is NULL or n.ns.href is NULL:
        return NS_NONE
    href = <cstr>n.ns.href
    k = _prefix_kind(href, _P_HREF, NS_P, NS_P_LIKE)
    if k:
        return k
    k = _prefix_kind(href, _DM_HREF, NS_DM, NS_DM_LIKE)
    if k:
        return k
    return NS_OTHER


cdef inline bint _named(xmlNode* n, const char* name) noexcept:
    return n.name is not NULL and memcmp(n.name, name, strlen(name) + 1) == 0


cdef str _s(cstr p):
    return (<const char*>p).decode("utf-8", "surrogateescape")


cdef str _clark(xmlNode* n):
    """The node's tag as lxml writes it: "{href}name", or "name"."""
    if n.ns is NULL or n.ns.href is NULL:
        return _s(<cstr>n.name)
    return "{" + _s(<cstr>n.ns.href) + "}" + _s(<cstr>n.name)


cdef str _name(str tag):
    if tag.startswith(_P):
        return tag[len(_P):]
    if tag.startswith(_DM):
        return "dm:" + tag[len(_DM):]
    return tag.rpartition("}")[2]


cdef str _where(str kind, str ident):
    return f"{kind} {ident[:40]!r}" if ident else kind


cdef inline bint _texty(xmlNode* n) noexcept:
    return n is not NULL and (n.type == XML_TEXT_NODE or n.type == XML_CDATA_SECTION_NODE)


cdef object _collect(xmlNode* n):
    """lxml's text of the text nodes from ``n`` on (None when ``n`` is not one)."""
    if not _texty(n):
        return None
    parts = []
    while _texty(n):
        if n.content is not NULL:
            parts.append(_s(<cstr>n.content))
        n = n.next
    return "".join(parts)


cdef bint _has_words(xmlNode* n) except -1:
    """The text nodes from ``n`` on hold something str.strip() keeps."""
    cdef xmlNode* t = n
    cdef cstr p
    cdef unsigned char c
    while _texty(t):
        p = <cstr>t.content
        if p is not NULL:
            while p[0]:
                c = p[0]
                if c >= 128:  # beyond ASCII: Python's own idea of white space decides
                    return bool((<str>_collect(n)).strip())
                if not (c == 32 or 9 <= c <= 13 or 28 <= c <= 31):
                    return True
                p += 1
        t = t.next
    return False


cdef object _attr(xmlNode* n, const char* name):
    """The value of the attribute ``name`` without a namespace (lxml's ``get``), or None."""
    cdef xmlAttr* a = n.properties
    cdef xmlNode* t
    while a is not NULL:
        if a.ns is NULL and a.name is not NULL and memcmp(a.name, name, strlen(name) + 1) == 0:
            parts = []
            t = a.children
            while t is not NULL:
                if t.content is not NULL:
                    parts.append(_s(<cstr>t.content))
                t = t.next
            return "".join(parts)
        a = a.next
    return None


cdef inline xmlNode* _first_element(xmlNode* n) noexcept:
    while n is not NULL and n.type != XML_ELEMENT_NODE:
        n = n.next
    return n


cdef int _element_count(xmlNode* n) noexcept:
    cdef int k = 0
    n = n.children
    while n is not NULL:
        if n.type == XML_ELEMENT_NODE:
            k += 1
        n = n.next
    return k


cdef int _check_node(xmlNode* child, int ns, str where) except -1:
    """An unqualified child, or text after a child (structural content is elements only)."""
    if ns == NS_NONE:
        raise XmlRejected(f"element <{_clark(child)[:40]}> in {where} has no namespace")
    if _has_words(child.next):
        raise XmlRejected(f"text not allowed in {where}")
    return 0


cdef bint _ascii_ncname(str s) noexcept:
    cdef Py_UCS4 c
    cdef Py_ssize_t i, n = len(s)
    if n == 0:
        return False
    for i in range(n):
        c = s[i]
        if ("a" <= c <= "z") or ("A" <= c <= "Z") or c == "_":
            continue
        if i > 0 and (("0" <= c <= "9") or c == "." or c == "-"):
            continue
        return False
    return True


cdef str _id(xmlNode* el, str what, set seen):
    ident = _attr(el, "id")
    if ident is None:
        raise XmlRejected(f"{what} without id")
    if not _ascii_ncname(ident) and _ncname_match(ident) is None:
        raise XmlRejected(f"{what} id {ident[:40]!r} is not an XML ID")
    if ident in seen:  # xs:ID values are unique across the document
        raise XmlRejected(f"duplicate id {ident[:40]!r}")
    seen.add(ident)
    return <str>ident


cdef object _status(xmlNode* status, str ident):
    cdef xmlNode* child
    cdef int ns
    if _has_words(status.children):
        raise XmlRejected(f"text not allowed in {_where('tuple', ident)} status")
    basic = None
    child = _first_element(status.children)
    while child is not NULL:
        ns = _ns(child)
        if ns == NS_NONE or _texty(child.next):
            _check_node(child, ns, f"{_where('tuple', ident)} status")
        if ns == NS_P or ns == NS_P_LIKE:
            if ns != NS_P or not _named(child, "basic"):
                raise XmlRejected(
                    f"unknown PIDF element <{_name(_clark(child))}> in {_where('tuple', ident)} status"
                )
            if basic is not None:
                raise XmlRejected(f"{_where('tuple', ident)} has two <basic>")
            text = _collect(child.children)
            basic = (text or "").strip()
            if (basic != "open" and basic != "closed") or _element_count(child):  # RFC 3863 section 4.1.4
                raise XmlRejected(f"{_where('tuple', ident)} basic status {basic[:20]!r} is not open or closed")
        child = _first_element(child.next)
    return basic


cdef tuple _tuple(object doc, xmlNode* el, set seen):
    cdef str ident = _id(el, "tuple", seen)
    cdef xmlNode* child
    cdef xmlNode* status = NULL
    cdef xmlNode* contact = NULL
    cdef xmlNode* stamp = NULL
    cdef int ns
    if _has_words(el.children):
        raise XmlRejected(f"text not allowed in {_where('tuple', ident)}")
    child = _first_element(el.children)
    while child is not NULL:
        ns = _ns(child)
        if ns == NS_NONE or _texty(child.next):
            _check_node(child, ns, _where("tuple", ident))
        if ns == NS_P or ns == NS_P_LIKE:
            if ns == NS_P and _named(child, "status"):
                if status is not NULL:
                    raise XmlRejected(f"{_where('tuple', ident)} has two <status>")
                status = child
            elif ns == NS_P and _named(child, "contact"):
                if contact is not NULL:
                    raise XmlRejected(f"{_where('tuple', ident)} has two <contact>")
                contact = child
                prio = _attr(child, "priority")
                if prio is not None and _qvalue(prio.strip()) is None:  # RFC 3863 section 4.1.5
                    raise XmlRejected(
                        f"{_where('tuple', ident)} contact priority {prio[:20]!r} is not a qvalue"
                    )
            elif ns == NS_P and _named(child, "timestamp"):
                if stamp is not NULL:
                    raise XmlRejected(f"{_where('tuple', ident)} has two <timestamp>")
                stamp = child
            elif not (ns == NS_P and _named(child, "note")):
                raise XmlRejected(f"unknown PIDF element <{_name(_clark(child))}> in {_where('tuple', ident)}")
        child = _first_element(child.next)
    if status is NULL:
        raise XmlRejected(f"{_where('tuple', ident)} has no <status>")  # RFC 3863 section 4.1.4
    basic = _status(status, ident)
    ts = None
    if stamp is not NULL:
        ts = _parse_timestamp(_collect(stamp.children), f"{_where('tuple', ident)} timestamp")
    return ("tuple", ident, ts, basic, cetree.elementFactory(doc, el))


cdef tuple _dm_component(object doc, xmlNode* el, str kind, set seen):
    cdef str ident = _id(el, kind, seen)
    cdef xmlNode* child
    cdef xmlNode* stamp = NULL
    cdef bint device_id = False
    cdef int ns
    if _has_words(el.children):
        raise XmlRejected(f"text not allowed in {_where(kind, ident)}")
    child = _first_element(el.children)
    while child is not NULL:
        ns = _ns(child)
        if ns == NS_NONE or _texty(child.next):
            _check_node(child, ns, _where(kind, ident))
        if ns == NS_DM or ns == NS_DM_LIKE:
            if ns == NS_DM and _named(child, "timestamp"):
                if stamp is not NULL:
                    raise XmlRejected(f"{_where(kind, ident)} has two dm:timestamp")
                stamp = child
            elif ns == NS_DM and _named(child, "deviceID") and kind == "device":
                if device_id:
                    raise XmlRejected(f"{_where(kind, ident)} has two dm:deviceID")
                device_id = True
            elif not (ns == NS_DM and _named(child, "note")):
                raise XmlRejected(
                    f"unknown data-model element <{_name(_clark(child))}> in {_where(kind, ident)}"
                )
        child = _first_element(child.next)
    ts = None
    if stamp is not NULL:
        ts = _parse_timestamp(_collect(stamp.children), f"{_where(kind, ident)} timestamp")
    return (kind, ident, ts, None, cetree.elementFactory(doc, el))


def structure(root):
    if not isinstance(root, cetree._Element):
        raise TypeError(f"root must be an lxml element, not {type(root).__name__}")
    cdef cetree._Element r = <cetree._Element>root
    cdef xmlNode* top = r._c_node
    cdef xmlNode* child
    cdef object doc = r._doc
    cdef int ns
    if top.type != XML_ELEMENT_NODE:
        raise XmlRejected("unexpected node in a PIDF structure")
    if not (_ns(top) == NS_P and _named(top, "presence")):
        raise XmlRejected(f"root element <{_name(_clark(top))}> is not a PIDF <presence>")
    entity = (_attr(top, "entity") or "").strip()
    if _has_words(top.children):
        raise XmlRejected("text not allowed in presence")
    cdef set seen = set()
    cdef list tuples = [], persons = [], devices = [], notes = [], extensions = []
    child = _first_element(top.children)
    while child is not NULL:
        ns = _ns(child)
        if ns == NS_NONE or _texty(child.next):
            _check_node(child, ns, "presence")
        if ns == NS_P or ns == NS_P_LIKE:
            if ns == NS_P and _named(child, "tuple"):
                tuples.append(_tuple(doc, child, seen))
            elif ns == NS_P and _named(child, "note"):
                notes.append(cetree.elementFactory(doc, child))
            else:
                raise XmlRejected(f"unknown PIDF element <{_name(_clark(child))}> in presence")
        elif ns == NS_DM and _named(child, "person"):
            persons.append(_dm_component(doc, child, "person", seen))
        elif ns == NS_DM and _named(child, "device"):
            devices.append(_dm_component(doc, child, "device", seen))
        else:
            extensions.append(cetree.elementFactory(doc, child))
        child = _first_element(child.next)
    return entity.strip(), tuples, persons, devices, notes, extensions
