# The one-pass PIDF pre-check, compiled twin of simplefast/_ref/pidfscan.py.
#
# The reference module is the specification (its docstring: what "sure" means
# and every rule); the contract lives in simplefast/_ext/pidfscan.pyi. Same
# answer for every input.
#
# What this twin changes is the cost: the reference drives expat through
# pyexpat, a Python call per element and text run; here libexpat's callbacks
# are C functions over a fixed state (a stack of element kinds, a small text
# buffer, the ids seen), and no Python object is made until the answer. One
# expat parser per thread is reset and reused (XML_ParserReset), as creating
# one costs more than scanning a typical body.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.string cimport memcmp, memcpy, strcmp, strlen

import os
import threading

cdef extern from "string.h":
    void* memmem(const void* haystack, size_t hlen, const void* needle, size_t nlen)

cdef extern from "expat.h":
    ctypedef struct XML_ParserStruct
    ctypedef XML_ParserStruct* XML_Parser
    ctypedef char XML_Char
    ctypedef unsigned char XML_Bool
    ctypedef void (*XML_StartElementHandler)(void* ud, const XML_Char* name, const XML_Char** atts) noexcept
    ctypedef void (*XML_EndElementHandler)(void* ud, const XML_Char* name) noexcept
    ctypedef void (*XML_CharacterDataHandler)(void* ud, const XML_Char* s, int n) noexcept
    ctypedef void (*XML_CommentHandler)(void* ud, const XML_Char* data) noexcept
    ctypedef void (*XML_ProcessingInstructionHandler)(void* ud, const XML_Char* target,
                                                      const XML_Char* data) noexcept
    ctypedef void (*XML_StartCdataSectionHandler)(void* ud) noexcept
    ctypedef void (*XML_StartNamespaceDeclHandler)(void* ud, const XML_Char* prefix,
                                                   const XML_Char* uri) noexcept
    ctypedef void (*XML_EndNamespaceDeclHandler)(void* ud, const XML_Char* prefix) noexcept
    ctypedef void (*XML_StartDoctypeDeclHandler)(void* ud, const XML_Char* name, const XML_Char* sysid,
                                                 const XML_Char* pubid, int has_internal) noexcept
    ctypedef void (*XML_EntityDeclHandler)(void* ud, const XML_Char* name, int is_param,
                                           const XML_Char* value, int value_length, const XML_Char* base,
                                           const XML_Char* sysid, const XML_Char* pubid,
                                           const XML_Char* notation) noexcept
    enum XML_Status:
        XML_STATUS_ERROR
        XML_STATUS_OK
    XML_Parser XML_ParserCreateNS(const XML_Char* encoding, XML_Char sep)
    XML_Bool XML_ParserReset(XML_Parser p, const XML_Char* encoding)
    void XML_ParserFree(XML_Parser p)
    void XML_SetUserData(XML_Parser p, void* ud)
    void XML_SetElementHandler(XML_Parser p, XML_StartElementHandler s, XML_EndElementHandler e)
    void XML_SetCharacterDataHandler(XML_Parser p, XML_CharacterDataHandler h)
    void XML_SetCommentHandler(XML_Parser p, XML_CommentHandler h)
    void XML_SetProcessingInstructionHandler(XML_Parser p, XML_ProcessingInstructionHandler h)
    void XML_SetStartCdataSectionHandler(XML_Parser p, XML_StartCdataSectionHandler h)
    void XML_SetNamespaceDeclHandler(XML_Parser p, XML_StartNamespaceDeclHandler s,
                                     XML_EndNamespaceDeclHandler e)
    void XML_SetStartDoctypeDeclHandler(XML_Parser p, XML_StartDoctypeDeclHandler h)
    void XML_SetEntityDeclHandler(XML_Parser p, XML_EntityDeclHandler h)
    XML_Status XML_Parse(XML_Parser p, const char* s, int len, int is_final)
    XML_Status XML_StopParser(XML_Parser p, XML_Bool resumable)
    int XML_SetHashSalt(XML_Parser p, unsigned long salt)

from simplefast.presence.xmlsafe import DEFAULT_MAX_BYTES as _MAX_BYTES
from simplefast.presence.xmlsafe import DEFAULT_MAX_DEPTH as _MAX_DEPTH
from simplefast.presence.xmlsafe import DEFAULT_MAX_ELEMENTS as _MAX_ELEMENTS
from simplefast.presence.xmlsafe import PLAIN_DECLS as _PLAIN_DECLS

DEF SEP = 1           # the namespace separator: U+0001 cannot occur in an XML 1.0 document
DEF STACK = 40        # deepest nesting held (scan is not sure of a max_depth above STACK - 2)
DEF NAME_MAX = 1024   # longest local name or prefix taken (libxml2 refuses past 50 000 bytes)
DEF TEXT = 64         # longest <basic> / <timestamp> text kept
DEF IDS = 1024        # bytes of ids kept (NUL-separated); more: not sure

DEF K_ANY = 0         # content not checked (extensions, notes, contact)
DEF K_ROOT = 1
DEF K_TUPLE = 2
DEF K_STATUS = 3
DEF K_BASIC = 4
DEF K_STAMP = 5
DEF K_PERSON = 6
DEF K_DEVICE = 7

DEF NS_NONE = 0
DEF NS_P = 1
DEF NS_DM = 2
DEF NS_OTHER = 3

cdef const char* P_NS = b"urn:ietf:params:xml:ns:pidf"
cdef const char* DM_NS = b"urn:ietf:params:xml:ns:pidf:data-model"


cdef struct Frame:
    int kind
    int a  # tuple: <status> seen; status: <basic>; person/device: dm:timestamp
    int b  # tuple: <contact>; device: dm:deviceID
    int c  # tuple: <timestamp>


cdef struct Scan:
    XML_Parser parser
    int unsure
    int depth
    int elements
    int max_depth
    int max_elements
    int text_len
    int ids_len
    Frame stack[STACK]
    char text[TEXT]
    char ids[IDS]


cdef inline void _stop(Scan* s) noexcept:
    if not s.unsure:
        s.unsure = 1
        XML_StopParser(s.parser, 0)


cdef inline bint _ws(char c) noexcept:
    return c == 32 or c == 9 or c == 10 or c == 13


cdef int _split(const char* name, const char** local) noexcept:
    """The namespace of an expat name ("uri\x01local" or "local"); -1: a local name longer
    than NAME_MAX (libxml2 refuses names past 50 000 bytes). No URI holds "}" (lxml's
    Clark tags would compare it by prefix): _ns_decl refused every such declaration."""
    cdef const char* p = name
    cdef Py_ssize_t n
    while p[0] != 0 and p[0] != SEP:
        p += 1
    if p[0] == 0:
        local[0] = name
        return -1 if p - name > NAME_MAX else NS_NONE
    local[0] = p + 1
    if strlen(p + 1) > NAME_MAX:
        return -1
    n = p - name
    if n == 27 and memcmp(name, P_NS, 27) == 0:
        return NS_P
    if n == 38 and memcmp(name, DM_NS, 38) == 0:
        return NS_DM
    return NS_OTHER


cdef bint _attr_names_ok(const XML_Char** atts) noexcept:
    """Every attribute's local name at most NAME_MAX bytes."""
    cdef int i = 0
    cdef const char* p
    while atts[i] != NULL:
        p = atts[i]
        while p[0] != 0 and p[0] != SEP:
            p += 1
        if p[0] == SEP:
            if strlen(p + 1) > NAME_MAX:
                return False
        elif p - atts[i] > NAME_MAX:
            return False
        i += 2
    return True


cdef const char* _attr(const XML_Char** atts, const char* name) noexcept:
    cdef int i = 0
    while atts[i] != NULL:
        if strcmp(atts[i], name) == 0:
            return atts[i + 1]
        i += 2
    return NULL


cdef bint _id_ok(Scan* s, const XML_Char** atts) noexcept:
    """An ASCII NCName id, not seen before (kept for the next ones)."""
    cdef const char* v = _attr(atts, b"id")
    cdef Py_ssize_t n, i, at
    cdef char c
    if v == NULL:
        return False
    n = strlen(v)
    if n == 0:
        return False
    c = v[0]
    if not ((65 <= c <= 90) or (97 <= c <= 122) or c == 95):
        return False
    for i in range(1, n):
        c = v[i]
        if not ((65 <= c <= 90) or (97 <= c <= 122) or (48 <= c <= 57) or c == 95 or c == 46 or c == 45):
            return False
    at = 0
    while at < s.ids_len:
        if strcmp(s.ids + at, v) == 0:
            return False
        at += strlen(s.ids + at) + 1
    if s.ids_len + n + 1 > IDS:
        return False
    memcpy(s.ids + s.ids_len, v, n + 1)
    s.ids_len += n + 1
    return True


cdef bint _qvalue_ok(const char* v) noexcept:
    """RFC 3261 qvalue after XML white space is trimmed: 0[.ddd] or 1[.000]."""
    cdef Py_ssize_t n = strlen(v), i = 0, j
    while n > 0 and _ws(v[n - 1]):
        n -= 1
    while i < n and _ws(v[i]):
        i += 1
    if i >= n:
        return False
    if v[i] != 48 and v[i] != 49:
        return False
    if n - i == 1:
        return True
    if v[i + 1] != 46 or n - i > 5:
        return False
    for j in range(i + 2, n):
        if v[i] == 48:
            if not (48 <= v[j] <= 57):
                return False
        elif v[j] != 48:
            return False
    return True


cdef inline int _num(const char* p, int n) noexcept:
    cdef int v = 0, i
    for i in range(n):
        if not (48 <= p[i] <= 57):
            return -1
        v = v * 10 + (p[i] - 48)
    return v


cdef bint _stamp_ok(const char* t, int n) noexcept:
    """xs:dateTime as the reference takes it (years 1000-9998, no 24:00, offsets below
    24 h), after XML white space is trimmed."""
    cdef int i = 0, y, mo, d, h, mi, se, days, k
    while n > 0 and _ws(t[n - 1]):
        n -= 1
    while i < n and _ws(t[i]):
        i += 1
    t += i
    n -= i
    if n < 19 or t[4] != 45 or t[7] != 45 or t[10] != 84 or t[13] != 58 or t[16] != 58:
        return False
    y = _num(t, 4)
    mo = _num(t + 5, 2)
    d = _num(t + 8, 2)
    h = _num(t + 11, 2)
    mi = _num(t + 14, 2)
    se = _num(t + 17, 2)
    if y < 1000 or y > 9998 or mo < 1 or mo > 12 or d < 1 or h < 0 or h > 23 or mi < 0 or mi > 59:
        return False
    if se < 0 or se > 59:
        return False
    if mo == 2:
        days = 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    elif mo == 4 or mo == 6 or mo == 9 or mo == 11:
        days = 30
    else:
        days = 31
    if d > days:
        return False
    k = 19
    if k < n and t[k] == 46:  # fraction: one digit at least
        k += 1
        if k >= n or not (48 <= t[k] <= 57):
            return False
        while k < n and 48 <= t[k] <= 57:
            k += 1
    if k == n:
        return True
    if t[k] == 90:  # Z
        return k + 1 == n
    if (t[k] == 43 or t[k] == 45) and n - k == 6 and t[k + 3] == 58:
        h = _num(t + k + 1, 2)
        mi = _num(t + k + 4, 2)
        return 0 <= h <= 23 and 0 <= mi <= 59
    return False


cdef inline bint _first(int* n) noexcept:
    """Count one more of an element that may occur once: True for the first."""
    n[0] += 1
    return n[0] == 1


cdef int _child(Scan* s, const XML_Char** atts, int ns, const char* local) noexcept:
    """The kind of an element opening at depth s.depth (its parent's counters counted);
    -1: not sure."""
    cdef Frame* up
    cdef const char* prio
    cdef int parent
    if s.depth == 1:
        return K_ROOT if ns == NS_P and strcmp(local, b"presence") == 0 else -1
    up = &s.stack[s.depth - 1]
    parent = up.kind
    if parent == K_ANY:
        return K_ANY
    if parent == K_BASIC or parent == K_STAMP or ns == NS_NONE:
        return -1  # an element inside <basic> / a timestamp, or an unqualified one
    if parent == K_ROOT:
        if ns == NS_P:
            if strcmp(local, b"tuple") == 0:
                return K_TUPLE if _id_ok(s, atts) else -1
            return K_ANY if strcmp(local, b"note") == 0 else -1
        if ns == NS_DM and (strcmp(local, b"person") == 0 or strcmp(local, b"device") == 0):
            if not _id_ok(s, atts):
                return -1
            return K_PERSON if local[0] == 112 else K_DEVICE
        return K_ANY  # an extension
    if parent == K_TUPLE:
        if ns != NS_P:
            return K_ANY
        if strcmp(local, b"status") == 0:
            return K_STATUS if _first(&up.a) else -1
        if strcmp(local, b"contact") == 0:
            prio = _attr(atts, b"priority")
            return K_ANY if _first(&up.b) and (prio == NULL or _qvalue_ok(prio)) else -1
        if strcmp(local, b"timestamp") == 0:
            return K_STAMP if _first(&up.c) else -1
        return K_ANY if strcmp(local, b"note") == 0 else -1
    if parent == K_STATUS:
        if ns != NS_P:
            return K_ANY
        return K_BASIC if _first(&up.a) and strcmp(local, b"basic") == 0 else -1
    if ns != NS_DM:  # K_PERSON, K_DEVICE
        return K_ANY
    if strcmp(local, b"timestamp") == 0:
        return K_STAMP if _first(&up.a) else -1
    if strcmp(local, b"deviceID") == 0 and parent == K_DEVICE:
        return K_ANY if _first(&up.b) else -1
    return K_ANY if strcmp(local, b"note") == 0 else -1


cdef void _start(void* ud, const XML_Char* name, const XML_Char** atts) noexcept:
    cdef Scan* s = <Scan*>ud
    cdef const char* local = NULL
    cdef int ns, kind
    if s.unsure:
        return
    s.elements += 1
    s.depth += 1
    if s.elements > s.max_elements or s.depth > s.max_depth:
        _stop(s)
        return
    ns = _split(name, &local)
    kind = -1 if ns < 0 or not _attr_names_ok(atts) else _child(s, atts, ns, local)
    if kind < 0:
        _stop(s)
        return
    s.stack[s.depth].kind = kind
    s.stack[s.depth].a = 0
    s.stack[s.depth].b = 0
    s.stack[s.depth].c = 0
    s.text_len = 0


cdef void _end(void* ud, const XML_Char* name) noexcept:
    cdef Scan* s = <Scan*>ud
    cdef Frame* f
    if s.unsure:
        return
    f = &s.stack[s.depth]
    if f.kind == K_TUPLE:
        if f.a != 1:
            _stop(s)
            return
    elif f.kind == K_BASIC:
        if not _basic_ok(s.text, s.text_len):
            _stop(s)
            return
    elif f.kind == K_STAMP:
        if not _stamp_ok(s.text, s.text_len):
            _stop(s)
            return
    s.depth -= 1


cdef bint _basic_ok(const char* t, int n) noexcept:
    cdef int i = 0
    while n > 0 and _ws(t[n - 1]):
        n -= 1
    while i < n and _ws(t[i]):
        i += 1
    n -= i
    return (n == 4 and memcmp(t + i, b"open", 4) == 0) or (n == 6 and memcmp(t + i, b"closed", 6) == 0)


cdef void _text(void* ud, const XML_Char* p, int n) noexcept:
    cdef Scan* s = <Scan*>ud
    cdef int kind, i
    if s.unsure or s.depth == 0:
        return
    kind = s.stack[s.depth].kind
    if kind == K_ANY:
        return
    if kind == K_BASIC or kind == K_STAMP:
        if s.text_len + n > TEXT:
            _stop(s)
            return
        memcpy(s.text + s.text_len, p, n)
        s.text_len += n
        return
    for i in range(n):  # structural elements: white space only
        if not _ws(p[i]):
            _stop(s)
            return


cdef inline bint _alnum(char c) noexcept:
    return (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122)


cdef bint _uri_ok(const char* u) noexcept:
    """A namespace name libxml2 surely takes as a URI (see the reference's _NS_URI)."""
    cdef const char* p = u
    cdef char c
    if not ((65 <= u[0] <= 90) or (97 <= u[0] <= 122)):
        return False
    p += 1
    while _alnum(p[0]) or p[0] == 43 or p[0] == 46 or p[0] == 45:  # scheme: + . -
        p += 1
    if p[0] != 58:  # ":"
        return False
    p += 1
    if p[0] == 47 and p[1] == 47:  # "//": only http(s)://host[/path]
        if not ((p - u == 5 and memcmp(u, b"http:", 5) == 0) or (p - u == 6 and memcmp(u, b"https:", 6) == 0)):
            return False
        p += 2
        if not (_alnum(p[0]) or p[0] == 46 or p[0] == 45):
            return False
        while _alnum(p[0]) or p[0] == 46 or p[0] == 45:
            p += 1
        if p[0] == 0:
            return True
        if p[0] != 47:
            return False
        while p[0] != 0:
            c = p[0]
            if not (_alnum(c) or c == 45 or c == 46 or c == 95 or c == 126 or c == 47):
                return False
            p += 1
        return True
    while p[0] != 0:  # opaque: unreserved, and the sub-delims and gen-delims that are safe here
        c = p[0]
        if not (_alnum(c) or c == 45 or c == 46 or c == 95 or c == 126 or c == 58 or c == 47 or c == 63
                or c == 64 or c == 33 or c == 36 or c == 39 or c == 40 or c == 41 or c == 42 or c == 43
                or c == 44 or c == 59 or c == 61):
            return False
        p += 1
    return True


cdef void _ns_decl(void* ud, const XML_Char* prefix, const XML_Char* uri) noexcept:
    cdef Scan* s = <Scan*>ud
    if s.unsure:
        return
    if uri == NULL or not _uri_ok(uri):
        _stop(s)
    elif prefix != NULL and (strcmp(prefix, b"xml") == 0 or strcmp(prefix, b"xmlns") == 0
                             or strlen(prefix) > NAME_MAX):
        _stop(s)


cdef void _refuse(void* ud, const XML_Char* data) noexcept:
    _stop(<Scan*>ud)


cdef void _refuse_pi(void* ud, const XML_Char* target, const XML_Char* data) noexcept:
    _stop(<Scan*>ud)


cdef void _refuse_cdata(void* ud) noexcept:
    _stop(<Scan*>ud)


cdef void _refuse_doctype(void* ud, const XML_Char* name, const XML_Char* sysid, const XML_Char* pubid,
                          int has_internal) noexcept:
    _stop(<Scan*>ud)


cdef void _refuse_entity(void* ud, const XML_Char* name, int is_param, const XML_Char* value,
                         int value_length, const XML_Char* base, const XML_Char* sysid,
                         const XML_Char* pubid, const XML_Char* notation) noexcept:
    _stop(<Scan*>ud)


cdef class _Scanner:
    """One reusable expat parser (per thread), with a hash salt of its own: without
    one, expat asks the kernel for a new salt at every document (a getrandom call)."""
    cdef XML_Parser parser
    cdef unsigned long salt
    cdef Scan s

    def __cinit__(self):
        self.parser = XML_ParserCreateNS(b"UTF-8", SEP)
        if self.parser == NULL:
            raise MemoryError("expat: no parser")
        self.salt = int.from_bytes(os.urandom(8), "little") | 1

    def __dealloc__(self):
        if self.parser != NULL:
            XML_ParserFree(self.parser)

    cdef bint run(self, const char* data, Py_ssize_t n, int max_depth, int max_elements):
        cdef XML_Parser p = self.parser
        cdef Scan* s = &self.s
        if not XML_ParserReset(p, b"UTF-8"):
            return False
        XML_SetHashSalt(p, self.salt)
        s.parser = p
        s.unsure = 0
        s.depth = 0
        s.elements = 0
        s.max_depth = max_depth
        s.max_elements = max_elements
        s.text_len = 0
        s.ids_len = 0
        XML_SetUserData(p, s)
        XML_SetElementHandler(p, _start, _end)
        XML_SetCharacterDataHandler(p, _text)
        XML_SetCommentHandler(p, _refuse)
        XML_SetProcessingInstructionHandler(p, _refuse_pi)
        XML_SetStartCdataSectionHandler(p, _refuse_cdata)
        XML_SetStartDoctypeDeclHandler(p, _refuse_doctype)
        XML_SetEntityDeclHandler(p, _refuse_entity)
        XML_SetNamespaceDeclHandler(p, _ns_decl, NULL)
        if XML_Parse(p, data, <int>n, 1) != XML_STATUS_OK:
            return False
        return not s.unsure


cdef object _local = threading.local()


def scan(data, *, max_bytes=_MAX_BYTES, max_depth=_MAX_DEPTH,
         max_elements=_MAX_ELEMENTS):
    cdef bytes raw
    cdef Py_ssize_t n
    cdef const char* p
    cdef _Scanner sc
    cdef long long limit_bytes = max_bytes, limit_depth = max_depth, limit_elements = max_elements
    if isinstance(data, bytes):
        raw = <bytes>data
    elif isinstance(data, (bytearray, memoryview)):
        raw = bytes(data)
    else:
        raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
    n = PyBytes_GET_SIZE(raw)
    p = PyBytes_AS_STRING(raw)
    if n == 0 or n > limit_bytes or n > 0x7FFFFFFF or limit_depth > STACK - 2 or limit_depth < 1:
        return False
    if limit_elements > 0x7FFFFFFF:
        limit_elements = 0x7FFFFFFF  # a body under 2 GiB holds fewer elements than that
    if n >= 5 and memcmp(p, b"<?xml", 5) == 0:
        if not raw.startswith(_PLAIN_DECLS):
            return False
    elif p[0] != 60:  # "<": no BOM, no declaration of another encoding, no leading text
        return False
    if memmem(p, n, b"<!DOCTYPE", 9) != NULL:
        return False
    sc = getattr(_local, "scanner", None)
    if sc is None:
        sc = _Scanner()
        _local.scanner = sc
    return sc.run(p, n, <int>limit_depth, <int>max(limit_elements, -1))
