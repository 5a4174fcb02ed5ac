# SIP message codec, compiled twin of simplefast/_ref/sipmsg.py.
#
# The reference module is the specification: same results, same errors
# (type, status_hint, message) for every input. The contract lives in
# simplefast/_ext/sipmsg.pyi. Read the reference's "theory of operation"
# first; this file follows it step by step, on raw pointers and offsets:
#
#  - parse_message walks the buffer once with memchr, recording per header
#    (name start/end, value start/end, folded, key) in a C array. Keys are
#    small ints for the headers we know (compact forms share the full name's
#    key), 0 for others, found by length bucket + case-insensitive compare.
#  - nothing becomes a Python object until asked: accessors decode on demand
#    and cache. The top Via, From and To are parsed by C scanners into
#    offsets (ViaC / NameAddrC / ParamList); named tuples are built only by
#    the structured views, straight from the buffer's offsets and without
#    their Python-level __new__ (see "result objects").
#  - validate_request scans the tokenized headers with the same C parsers
#    and makes no Python object for a valid message; it leaves the top Via
#    parsed in the message's cache. Error texts naming a URI are decoded
#    only when raised (UriText).
#  - error texts are built exactly as the reference builds them, on the
#    (cold) error path only.
#  - the writers (build_response, forward_request, strip_top_via) size the
#    output first, allocate one bytes object and memcpy header lines straight
#    from the parsed buffer; the top Via is stamped through a Stamp (at most
#    two edits computed on the cached top-Via offsets, see _via_stamp).

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeUTF8
from libc.stdlib cimport free, malloc, realloc
from cpython.ref cimport PyObject, Py_INCREF
from cpython.tuple cimport PyTuple_SET_ITEM
from libc.string cimport memchr, memcmp, memcpy, memset

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)

cdef extern from *:
    """
    /* An instance of a tuple subclass (the result named tuples) with n empty
       slots: what tuple.__new__(cls, items) allocates before copying the
       items in, without the Python-level __new__ of namedtuple. */
    static PyObject* __sf_tuple_alloc(PyObject* cls, Py_ssize_t n) {
        return ((PyTypeObject*)cls)->tp_alloc((PyTypeObject*)cls, n);
    }
    /* p[:n] (ASCII) as a str, each octet mapped through table. */
    static PyObject* __sf_ascii_map(const unsigned char* p, Py_ssize_t n, const unsigned char* table) {
        PyObject* s = PyUnicode_New(n, 127);
        Py_UCS1* d;
        Py_ssize_t i;
        if (s == NULL || n == 0)
            return s;
        d = PyUnicode_1BYTE_DATA(s);
        for (i = 0; i < n; i++)
            d[i] = table[p[i]];
        return s;
    }
    """
    object __sf_tuple_alloc(object cls, Py_ssize_t n)
    object __sf_ascii_map(const unsigned char* p, Py_ssize_t n, const unsigned char* table)

cdef extern from "<arpa/inet.h>" nogil:
    int inet_pton(int af, const char* src, void* dst)
    enum:
        AF_INET
        AF_INET6

from simplefast._sip_types import NameAddr, SipURI, Via
from simplefast import _sipshared as _shared
from simplefast.errors import SipParseError

DEFAULT_MAX_HEADER_BYTES = 16384
DEFAULT_MAX_HEADERS = 256
DEFAULT_MAX_BODY_BYTES = 1 << 20
_BYTES_LIMIT = _shared.MAX_BYTES_LIMIT
_HEADERS_LIMIT = _shared.MAX_HEADERS_LIMIT

ctypedef unsigned char uchar

# ---------------------------------------------------------------- char classes

cdef enum:
    C_TOK = 1
    C_DIG = 2
    C_HEX = 4
    C_ALP = 8
    C_SCH = 16
    C_USR = 32
    C_PAS = 64
    C_PRM = 128
    C_HDR = 256
    C_HST = 512
    C_IP6 = 1024
    C_GEN = 2048
    C_WSP = 4096

cdef unsigned short _cls[256]
cdef uchar _lower[256]
cdef uchar _upper[256]

cdef void _fill(bytes chars, unsigned short flag):
    cdef uchar c
    for c in chars:
        _cls[c] |= flag

cdef void _init_classes():
    cdef int i
    for i in range(256):
        _cls[i] = 0
        _lower[i] = i + 32 if 65 <= i <= 90 else i
        _upper[i] = i - 32 if 97 <= i <= 122 else i
    alpha = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    digits = b"0123456789"
    alnum = alpha + digits
    unreserved = alnum + b"-_.!~*'()"
    token = alnum + b"-.!%*_+`'~"
    _fill(token, C_TOK)
    _fill(digits, C_DIG)
    _fill(b"0123456789abcdefABCDEF", C_HEX)
    _fill(alpha, C_ALP)
    _fill(alnum + b"+-.", C_SCH)
    _fill(unreserved + b"&=+$,;?/", C_USR)
    _fill(unreserved + b"&=+$,", C_PAS)
    _fill(unreserved + b"[]/:&+$", C_PRM)
    _fill(unreserved + b"[]/?:+$", C_HDR)
    _fill(alnum + b"-.", C_HST)
    _fill(b"0123456789abcdefABCDEF:.", C_IP6)
    _fill(token + b":[]", C_GEN)
    _fill(b" \t", C_WSP)

_init_classes()

cdef inline bint _is(uchar c, unsigned short flag) noexcept nogil:
    return (_cls[c] & flag) != 0

# ---------------------------------------------------------------- header keys

_COMPACT = {
    b"a": b"accept-contact", b"b": b"referred-by", b"c": b"content-type",
    b"d": b"request-disposition", b"e": b"content-encoding", b"f": b"from",
    b"i": b"call-id", b"j": b"reject-contact", b"k": b"supported",
    b"l": b"content-length", b"m": b"contact", b"n": b"identity-info",
    b"o": b"event", b"r": b"refer-to", b"s": b"subject", b"t": b"to",
    b"u": b"allow-events", b"v": b"via", b"x": b"session-expires", b"y": b"identity",
}
_LIST_HEADERS = frozenset([
    b"accept", b"accept-contact", b"accept-encoding", b"accept-language", b"alert-info",
    b"allow", b"allow-events", b"call-info", b"contact", b"content-encoding",
    b"content-language", b"error-info", b"history-info", b"in-reply-to",
    b"p-asserted-identity", b"p-preferred-identity", b"path", b"proxy-require", b"reason",
    b"record-route", b"reject-contact", b"request-disposition", b"require", b"route",
    b"security-client", b"security-server", b"security-verify", b"service-route",
    b"supported", b"unsupported", b"via", b"warning",
])

# keys with a fixed number (used by the C code); the rest are numbered after
cdef enum:
    K_OTHER = 0
    K_VIA = 1
    K_FROM = 2
    K_TO = 3
    K_CALL_ID = 4
    K_CSEQ = 5
    K_CONTACT = 6
    K_CONTENT_LENGTH = 7
    K_MAX_FORWARDS = 8
    K_EXPIRES = 9
    K_EVENT = 10
    K_REQUIRE = 11
    K_DATE = 12
    K_FIRST_FREE = 13

_FIXED = [b"via", b"from", b"to", b"call-id", b"cseq", b"contact", b"content-length",
          b"max-forwards", b"expires", b"event", b"require", b"date"]
_names = list(_FIXED)
for _n in sorted(set(_COMPACT.values()) | _LIST_HEADERS | {b"content-type", b"subject"}):
    if _n not in _names:
        _names.append(_n)
# canonical lower-case name -> key; compact letters map to their full name's key
_KEY = {n: i + 1 for i, n in enumerate(_names)}
for _c, _full in _COMPACT.items():
    _KEY[_c] = _KEY[_full]
cdef int _NKEYS = len(_names) + 1
cdef int K_ROUTE = _KEY[b"route"]
cdef bint _is_list[128]
for _i in range(128):
    _is_list[_i] = False
for _n in _LIST_HEADERS:
    _is_list[<int>_KEY[_n]] = True

# length-bucketed table for the parse-time lookup
cdef enum:
    MAXKEYLEN = 24
cdef const uchar* _kname[128]
cdef int _klen[128]
cdef int _kid[128]
cdef int _bucket_start[MAXKEYLEN + 1]
cdef int _bucket_count[MAXKEYLEN + 1]
_KEEP = sorted(_KEY.items(), key=lambda kv: len(kv[0]))

cdef void _init_keys():
    cdef int j = 0, L
    for L in range(MAXKEYLEN + 1):
        _bucket_start[L] = 0
        _bucket_count[L] = 0
    for name, kid in _KEEP:
        L = len(name)
        if _bucket_count[L] == 0:
            _bucket_start[L] = j
        _bucket_count[L] += 1
        _kname[j] = <const uchar*>PyBytes_AS_STRING(name)
        _klen[j] = L
        _kid[j] = kid
        j += 1

_init_keys()

cdef inline int _key_of(const uchar* p, Py_ssize_t n) noexcept nogil:
    cdef int j, k, end
    cdef const uchar* q
    if n > MAXKEYLEN:
        return K_OTHER
    j = _bucket_start[n]
    end = j + _bucket_count[n]
    while j < end:
        q = _kname[j]
        k = 0
        while k < n and _lower[p[k]] == q[k]:
            k += 1
        if k == n:
            return _kid[j]
        j += 1
    return K_OTHER

cdef dict _QCACHE = {}

cdef tuple _query(str name):
    """(key, canonical lower-case bytes) of a header name given by a caller."""
    cdef tuple r = _QCACHE.get(name)
    if r is not None:
        return r
    try:
        low = name.encode("utf-8", "surrogateescape").lower()
    except UnicodeEncodeError:
        return (K_OTHER, b"\x00")  # matches no header (names are ASCII tokens)
    low = _COMPACT.get(low, low)
    r = (_KEY.get(low, K_OTHER), low)
    if len(_QCACHE) < 1024:
        _QCACHE[name] = r
    return r

# ---------------------------------------------------------------- small helpers

cdef inline str _s(const uchar* p, Py_ssize_t n):
    return PyUnicode_DecodeUTF8(<const char*>p, n, "surrogateescape")

_METHODS = ("REGISTER", "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "SUBSCRIBE", "NOTIFY",
            "PUBLISH", "MESSAGE", "INFO", "PRACK", "UPDATE", "REFER")
_METHODS_B = tuple([_m.encode("ascii") for _m in _METHODS])
cdef enum:
    NMETHODS = 14
cdef const char* _mt_c[NMETHODS]
cdef Py_ssize_t _mt_l[NMETHODS]
cdef PyObject* _mt_o[NMETHODS]

cdef void _intern_table(tuple names, tuple names_b, const char** c, Py_ssize_t* l, PyObject** o, int n):
    """Fill a table of shared strings: C text and length to compare against, and the
    str object handed out (kept alive by the module-level tuples)."""
    cdef int j
    for j in range(n):
        c[j] = PyBytes_AS_STRING(names_b[j])
        l[j] = PyBytes_GET_SIZE(names_b[j])
        o[j] = <PyObject*>names[j]

_intern_table(_METHODS, _METHODS_B, _mt_c, _mt_l, _mt_o, NMETHODS)

cdef str _method_s(const uchar* p, Py_ssize_t n):
    """p[:n] decoded; one shared str for the RFC methods (written in upper case)."""
    cdef int j
    for j in range(NMETHODS):
        if _mt_l[j] == n and memcmp(p, _mt_c[j], n) == 0:
            return <str>_mt_o[j]
    return _s(p, n)

cdef inline bytes _b(const uchar* p, Py_ssize_t n):
    return PyBytes_FromStringAndSize(<const char*>p, n)

cdef inline bytes _b1(const uchar* p, Py_ssize_t i, Py_ssize_t n):
    """p[i:i+1] as bytes (empty past the end), as the reference's b[i:i+1]."""
    if i >= n:
        return b""
    return _b(p + i, 1)

cdef inline object _err(str msg, int status=400):
    return SipParseError(msg, status)

cdef inline Py_ssize_t _skip_ws(const uchar* b, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    while i < n and (b[i] == 32 or b[i] == 9):
        i += 1
    return i

cdef inline Py_ssize_t _rskip_ws(const uchar* b, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    """End of b[i:n] less trailing SP/HT (i when it is all white space)."""
    while n > i and (b[n - 1] == 32 or b[n - 1] == 9):
        n -= 1
    return n

cdef inline Py_ssize_t _span(const uchar* b, Py_ssize_t i, Py_ssize_t n, unsigned short flag) noexcept nogil:
    """End of the run of octets of class flag from i: four octets a step
    (independent loads, one branch), then one at a time."""
    while i + 4 <= n and (_cls[b[i]] & _cls[b[i + 1]] & _cls[b[i + 2]] & _cls[b[i + 3]] & flag):
        i += 4
    while i < n and (_cls[b[i]] & flag):
        i += 1
    return i

cdef inline Py_ssize_t _token_end(const uchar* b, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    return _span(b, i, n, C_TOK)

cdef inline bint _all_digits(const uchar* b, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    if n == 0:
        return False
    for i in range(n):
        if not _is(b[i], C_DIG):
            return False
    return True

cdef inline unsigned long long _digits_value(const uchar* b, Py_ssize_t n) noexcept nogil:
    """Value of at most 18 digits (callers bound n first)."""
    cdef unsigned long long v = 0
    cdef Py_ssize_t i
    for i in range(n):
        v = v * 10 + (b[i] - 48)
    return v

cdef inline Py_ssize_t _nz(const uchar* b, Py_ssize_t n) noexcept nogil:
    """Leading '0's of a digit run, keeping its last digit (1*DIGIT: '0070' is 70)."""
    cdef Py_ssize_t z = 0
    while z < n - 1 and b[z] == 48:
        z += 1
    return z

cdef bint _host_ok(const uchar* h, Py_ssize_t n) noexcept nogil:
    """RFC 3261 section 25.1 structure of a host of alphanum, '-', '.' (see the reference)."""
    cdef Py_ssize_t i, ls, groups = 1, run = 0
    cdef bint v4 = True     # so far a valid run of IPv4 groups
    cdef uchar c
    for i in range(n):  # all digits and dots: IPv4address, else a hostname
        c = h[i]
        if c == 46:
            if run == 0:
                v4 = False
            groups += 1
            run = 0
        elif 48 <= c <= 57:
            run += 1
            if run > 3:
                v4 = False
        else:
            break
    else:
        return v4 and groups == 4 and run > 0
    if n > 0 and h[n - 1] == 46:
        n -= 1
    ls = 0
    for i in range(n + 1):
        if i == n or h[i] == 46:
            if i == ls or h[ls] == 45 or h[i - 1] == 45:
                return False
            if i == n:
                return _is(h[ls], C_ALP)
            ls = i + 1
    return False

cdef inline bint _ci_eq(const uchar* p, Py_ssize_t n, const char* lit, Py_ssize_t ln) noexcept nogil:
    """p[:n].lower() == lit (lit lower-case)."""
    cdef Py_ssize_t i
    if n != ln:
        return False
    for i in range(n):
        if _lower[p[i]] != <uchar>lit[i]:
            return False
    return True

cdef bytes _as_bytes(object data):
    if type(data) is bytes:
        return <bytes>data
    return bytes(data)

# ---------------------------------------------------------------- result objects
# The named tuples of simplefast._sip_types are built without a call of their
# Python-level __new__ (one Python frame per result): the tuple subclass is
# allocated and its slots filled, which is what namedtuple's __new__ does
# (tuple.__new__(cls, items)). Every value is made before the allocation, so
# no garbage collection can see a half-filled tuple.

for _t, _nf in ((NameAddr, 3), (SipURI, 8), (Via, 5)):
    if not (isinstance(_t, type) and issubclass(_t, tuple) and len(_t._fields) == _nf):
        raise ImportError(f"simplefast._ext.sipmsg: {_t!r} is not the {_nf}-field named tuple it builds")
cdef object _NameAddr_t = NameAddr
cdef object _SipURI_t = SipURI
cdef object _Via_t = Via

cdef inline void _slot(object t, Py_ssize_t i, object v) noexcept:
    Py_INCREF(v)
    PyTuple_SET_ITEM(t, i, v)

cdef object _mk_name_addr(object display, object uri, object params):
    cdef object t = __sf_tuple_alloc(_NameAddr_t, 3)
    _slot(t, 0, display)
    _slot(t, 1, uri)
    _slot(t, 2, params)
    return t

cdef object _mk_via(object protocol, object transport, object host, object port, object params):
    cdef object t = __sf_tuple_alloc(_Via_t, 5)
    _slot(t, 0, protocol)
    _slot(t, 1, transport)
    _slot(t, 2, host)
    _slot(t, 3, port)
    _slot(t, 4, params)
    return t

cdef object _mk_uri(object scheme, object user, object password, object host, object port,
                    object params, object headers, object opaque):
    cdef object t = __sf_tuple_alloc(_SipURI_t, 8)
    _slot(t, 0, scheme)
    _slot(t, 1, user)
    _slot(t, 2, password)
    _slot(t, 3, host)
    _slot(t, 4, port)
    _slot(t, 5, params)
    _slot(t, 6, headers)
    _slot(t, 7, opaque)
    return t

# parameter names met on nearly every message: one shared str each (hash cached)
_PNAMES = ("tag", "branch", "rport", "received", "expires", "transport", "lr", "user",
           "maddr", "ttl", "method", "ob", "q", "reg-id", "+sip.instance", "alias")
_PNAMES_B = tuple([_t.encode("ascii") for _t in _PNAMES])
cdef enum:
    MAXPNAMES = 16
cdef const char* _pn_c[MAXPNAMES]
cdef Py_ssize_t _pn_l[MAXPNAMES]
cdef PyObject* _pn_o[MAXPNAMES]

_intern_table(_PNAMES, _PNAMES_B, _pn_c, _pn_l, _pn_o, MAXPNAMES)

cdef inline bint _ascii(const uchar* p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t k
    for k in range(n):
        if p[k] >= 128:
            return False
    return True

cdef str _pname(const uchar* p, Py_ssize_t n):
    """p[:n].lower() as a str: the reference's lower-cased parameter name."""
    cdef int j
    for j in range(MAXPNAMES):
        if _pn_l[j] == n and _ci_eq(p, n, _pn_c[j], n):
            return <str>_pn_o[j]
    if not _ascii(p, n):
        return _s(p, n).lower()
    return __sf_ascii_map(p, n, _lower)

cdef str _upper_s(const uchar* p, Py_ssize_t n):
    """p[:n] decoded and upper-cased (Via transport)."""
    if n == 3:
        if _ci_eq(p, 3, "udp", 3):
            return "UDP"
        if _ci_eq(p, 3, "tcp", 3):
            return "TCP"
        if _ci_eq(p, 3, "tls", 3):
            return "TLS"
    if not _ascii(p, n):
        return _s(p, n).upper()
    return __sf_ascii_map(p, n, _upper)

# ---------------------------------------------------------------- parameters

cdef enum:
    MAXPARAMS = 32

cdef struct Param:
    Py_ssize_t ns, ne, vs, ve    # ve < 0: no value

cdef struct ParamList:
    int n
    Param items[MAXPARAMS]

cdef Py_ssize_t _quoted_end(const uchar* b, Py_ssize_t i, Py_ssize_t n, str what) except -1:
    """b[i] is '"'; offset just past the closing quote."""
    cdef Py_ssize_t j = i + 1
    cdef uchar c
    while j < n:
        c = b[j]
        if c == 92:
            if j + 1 >= n or b[j + 1] == 13 or b[j + 1] == 10:
                break
            j += 2
            continue
        if c == 34:
            return j + 1
        j += 1
    raise _err(f"unterminated quoted string in {what}")

cdef inline bint _name_eq(const uchar* b, Param* a, Param* c) noexcept nogil:
    cdef Py_ssize_t k, L = a.ne - a.ns
    if c.ne - c.ns != L:
        return False
    for k in range(L):
        if _lower[b[a.ns + k]] != _lower[b[c.ns + k]]:
            return False
    return True

cdef int _parse_params(const uchar* b, Py_ssize_t n, Py_ssize_t i, ParamList* pl, str what) except -1:
    cdef Py_ssize_t ne, ve
    cdef Param* p
    cdef int k
    pl.n = 0
    while True:
        i = _skip_ws(b, i, n)
        if i >= n:
            return 0
        if b[i] != 59:
            raise _err(f"unexpected {_b1(b, i, n)!r} at offset {i} in {what}")
        i = _skip_ws(b, i + 1, n)
        ne = _token_end(b, i, n)
        if ne == i:
            raise _err(f"empty parameter at offset {i} in {what}")
        if pl.n >= MAXPARAMS:
            raise _err(f"more than {MAXPARAMS} parameters in {what}")
        p = &pl.items[pl.n]
        p.ns = i
        p.ne = ne
        p.vs = -1
        p.ve = -1
        i = _skip_ws(b, ne, n)
        if i < n and b[i] == 61:
            i = _skip_ws(b, i + 1, n)
            if i < n and b[i] == 34:
                ve = _quoted_end(b, i, n, what)
            else:
                ve = _span(b, i, n, C_GEN)
                if ve == i:
                    raise _err(f"empty value of parameter {_s(b + p.ns, ne - p.ns).lower()!r} in {what}")
            p.vs = i
            p.ve = ve
            i = ve
        for k in range(pl.n):
            if _name_eq(b, &pl.items[k], p):
                raise _err(f"parameter {_s(b + p.ns, ne - p.ns).lower()!r} appears more than once in {what}")
        pl.n += 1

cdef int _find_param(const uchar* b, ParamList* pl, const char* lit, Py_ssize_t ln) noexcept:
    cdef int k
    for k in range(pl.n):
        if _ci_eq(b + pl.items[k].ns, pl.items[k].ne - pl.items[k].ns, lit, ln):
            return k
    return -1

cdef dict _params_dict(const uchar* b, ParamList* pl):
    cdef dict d = {}
    cdef int k
    cdef Param* p
    for k in range(pl.n):
        p = &pl.items[k]
        d[_pname(b + p.ns, p.ne - p.ns)] = None if p.ve < 0 else _s(b + p.vs, p.ve - p.vs)
    return d

# ---------------------------------------------------------------- Via

cdef struct ViaC:
    Py_ssize_t n1s, n1e, n2s, n2e, ts, te    # protocol name, version, transport
    Py_ssize_t hs, he
    int port                                  # -1: none
    ParamList params

cdef struct UriText:
    # a URI as its error texts name it, decoded only when one is raised:
    # the caller's str (parse_uri), or when NULL the octets b[:n] decoded (the
    # reference parses the decoded text of a header's URI)
    PyObject* text
    const uchar* b
    Py_ssize_t n

cdef str _utext(UriText* ut):
    if ut.text != NULL:
        return <str>ut.text
    return _s(ut.b, ut.n)

cdef object _what(object what, UriText* ut):
    """what, or for a URI (what None) the reference's f"URI {text[:64]!r}"."""
    if what is None:
        return f"URI {_utext(ut)[:64]!r}"
    return what

cdef int _parse_hostport(const uchar* b, Py_ssize_t n, Py_ssize_t i, bint lws,
                         Py_ssize_t* hs, Py_ssize_t* he, int* port, object what, UriText* ut) except -1:
    """Returns the offset after host[:port]; see the reference's _parse_hostport.
    what names the context in error texts; None for a URI, named by ut."""
    cdef Py_ssize_t e, j, ps, k
    cdef const uchar* q
    hs[0] = i
    if i < n and b[i] == 91:
        q = <const uchar*>memchr(b + i, 93, n - i)
        e = -1 if q == NULL else q - b
        if e < 0 or e == i + 1:
            raise _err(f"malformed IPv6 reference in {_what(what, ut)}")
        for k in range(i + 1, e):
            if not _is(b[k], C_IP6):
                raise _err(f"malformed IPv6 reference in {_what(what, ut)}")
        i = e + 1
    else:
        i = _span(b, i, n, C_HST)
        if i == hs[0]:
            raise _err(f"missing host in {_what(what, ut)}")
        if not _host_ok(b + hs[0], i - hs[0]):
            raise _err(f"malformed host {_s(b + hs[0], i - hs[0])[:64]!r} in {_what(what, ut)}")
    he[0] = i
    port[0] = -1
    j = _skip_ws(b, i, n) if lws else i
    if j < n and b[j] == 58:
        j = _skip_ws(b, j + 1, n) if lws else j + 1
        ps = j
        while j < n and _is(b[j], C_DIG):
            j += 1
        k = _nz(b + ps, j - ps)
        if j == ps or j - ps - k > 5 or _digits_value(b + ps + k, j - ps - k) > 65535:
            raise _err(f"malformed port {_b(b + ps, min(j + 1, n) - ps)[:8]!r} in {_what(what, ut)}")
        port[0] = <int>_digits_value(b + ps + k, j - ps - k)
        i = j
    return i

cdef int _parse_via(const uchar* b, Py_ssize_t n, ViaC* v) except -1:
    cdef Py_ssize_t i = _skip_ws(b, 0, n), e = 0
    cdef Py_ssize_t s[3]
    cdef Py_ssize_t t[3]
    cdef int k
    for k in range(3):
        e = _token_end(b, i, n)
        if e == i:
            raise _err(f"malformed sent-protocol in Via {_s(b, n)[:64]!r}")
        s[k] = i
        t[k] = e
        i = _skip_ws(b, e, n)
        if k < 2:
            if i >= n or b[i] != 47:
                raise _err(f"malformed sent-protocol in Via {_s(b, n)[:64]!r}")
            i = _skip_ws(b, i + 1, n)
    if i == e:
        raise _err(f"no white space after the transport in Via {_s(b, n)[:64]!r}")
    v.n1s = s[0]; v.n1e = t[0]; v.n2s = s[1]; v.n2e = t[1]; v.ts = s[2]; v.te = t[2]
    i = _parse_hostport(b, n, i, True, &v.hs, &v.he, &v.port, "Via", NULL)
    _parse_params(b, n, i, &v.params, "Via")
    return 0

cdef object _via_obj(const uchar* b, ViaC* v):
    cdef object protocol
    if v.n2s == v.n1e + 1:  # "SIP/2.0" written without LWS: one span
        if v.n2e - v.n1s == 7 and memcmp(b + v.n1s, b"SIP/2.0", 7) == 0:
            protocol = "SIP/2.0"
        else:
            protocol = _s(b + v.n1s, v.n2e - v.n1s)
    else:
        protocol = _s(b + v.n1s, v.n1e - v.n1s) + "/" + _s(b + v.n2s, v.n2e - v.n2s)
    return _mk_via(protocol,
                   _upper_s(b + v.ts, v.te - v.ts),
                   _s(b + v.hs, v.he - v.hs),
                   None if v.port < 0 else v.port,
                   _params_dict(b, &v.params))

cdef object _input(str text, str what):
    """What a parser reads of text: the str itself when ASCII (its UTF-8 is its
    own buffer, see _txt), else its UTF-8 (surrogateescape) encoding."""
    if text is not None and PyUnicode_IS_ASCII(text):
        return text
    return _encode_input(text, what)

def parse_via(str value):
    cdef object src = _input(value, "Via")
    cdef Py_ssize_t n
    cdef const uchar* p = <const uchar*>_txt(src, &n)
    cdef ViaC v
    _parse_via(p, n, &v)
    return _via_obj(p, &v)

# ---------------------------------------------------------------- name-addr

cdef struct NameAddrC:
    Py_ssize_t ds, de      # display name (ds < 0: none)
    bint quoted
    Py_ssize_t us, ue      # URI
    ParamList params

cdef int _check_uri_shape(const uchar* u, Py_ssize_t n, const uchar* v, Py_ssize_t vn) except -1:
    cdef Py_ssize_t i
    if n == 0 or not _is(u[0], C_ALP):
        raise _err(f"no URI in {_s(v, vn)[:64]!r}")
    i = 1
    while i < n and _is(u[i], C_SCH):
        i += 1
    if i >= n or u[i] != 58:
        raise _err(f"no URI scheme in {_s(v, vn)[:64]!r}")
    return 0

cdef int _parse_name_addr(const uchar* v, Py_ssize_t vn, NameAddrC* na, Py_ssize_t* base) except -1:
    """Parse v[:vn]; offsets in na are relative to v + base[0] (the value
    stripped of surrounding SP/HT, as the reference strips it)."""
    cdef Py_ssize_t a = 0, z = vn, n, i, qe, e, q, semi, ue, k
    cdef const uchar* b
    cdef const uchar* f
    while a < z and (v[a] == 32 or v[a] == 9):
        a += 1
    while z > a and (v[z - 1] == 32 or v[z - 1] == 9):
        z -= 1
    base[0] = a
    b = v + a
    n = z - a
    na.ds = -1
    na.de = -1
    na.quoted = False
    na.params.n = 0
    if n == 1 and b[0] == 42:
        na.us = 0
        na.ue = 1
        return 0
    if n and b[0] == 60:  # "<URI>...": no display name, no quote before the '<'
        i = 0
    elif n and b[0] == 34:
        qe = _quoted_end(b, 0, n, "display name")
        na.ds = 1
        na.de = qe - 1
        na.quoted = True
        i = _skip_ws(b, qe, n)
        if i >= n or b[i] != 60:
            raise _err(f"quoted display name not followed by <URI> in {_s(v, vn)[:64]!r}")
    else:
        f = <const uchar*>memchr(b, 60, n)
        i = -1 if f == NULL else f - b
        f = <const uchar*>memchr(b, 34, n)
        q = -1 if f == NULL else f - b
        if 0 <= q < i:
            i = -1
    if i >= 0:
        if not na.quoted:
            a = 0
            z = i
            while a < z and (b[a] == 32 or b[a] == 9):
                a += 1
            while z > a and (b[z - 1] == 32 or b[z - 1] == 9):
                z -= 1
            for k in range(a, z):
                if not _is(b[k], C_TOK | C_WSP):
                    raise _err(f"display name {_s(b + a, min(z - a, 64))!r} must be quoted (it holds {_b(b + k, 1)!r})")
            if z > a:
                na.ds = a
                na.de = z
        f = <const uchar*>memchr(b + i, 62, n - i)
        if f == NULL:
            raise _err(f"unterminated <URI> in {_s(v, vn)[:64]!r}")
        e = f - b
        na.us = i + 1
        na.ue = e
        _check_uri_shape(b + i + 1, e - i - 1, v, vn)
        _parse_params(b, n, e + 1, &na.params, "header parameters")
        return 0
    f = <const uchar*>memchr(b, 59, n)
    semi = -1 if f == NULL else f - b
    ue = n if semi < 0 else semi
    while ue > 0 and (b[ue - 1] == 32 or b[ue - 1] == 9):
        ue -= 1
    for k in range(ue):
        if b[k] == 44 or b[k] == 63 or b[k] == 32 or b[k] == 9:
            raise _err(f"URI {_s(b, min(ue, 64))!r} must be enclosed in <> (it holds {_b(b + k, 1)!r})")
    _check_uri_shape(b, ue, v, vn)
    na.us = 0
    na.ue = ue
    _parse_params(b, n, ue if semi < 0 else semi, &na.params, "header parameters")
    return 0

cdef str _unquote(const uchar* b, Py_ssize_t n):
    cdef bytearray out
    cdef Py_ssize_t i = 0
    if memchr(b, 92, n) == NULL:
        return _s(b, n)
    out = bytearray()
    while i < n:
        if b[i] == 92 and i + 1 < n:
            i += 1
        out.append(b[i])
        i += 1
    return bytes(out).decode("utf-8", "surrogateescape")

cdef object _na_obj(const uchar* b, NameAddrC* na):
    cdef object display = None
    if na.ds >= 0:
        display = _unquote(b + na.ds, na.de - na.ds) if na.quoted else _s(b + na.ds, na.de - na.ds)
    return _mk_name_addr(display, _s(b + na.us, na.ue - na.us), _params_dict(b, &na.params))

def parse_name_addr(str value):
    cdef object src = _input(value, "name-addr")
    cdef Py_ssize_t n, base
    cdef const uchar* p = <const uchar*>_txt(src, &n)
    cdef NameAddrC na
    _parse_name_addr(p, n, &na, &base)
    return _na_obj(p + base, &na)

# ---------------------------------------------------------------- comma lists

cdef list _split_commas(const uchar* b, Py_ssize_t n):
    """Split at commas outside quotes and <...>; elements stripped of SP/HT."""
    cdef list out = []
    cdef Py_ssize_t start = 0, i = 0, a, z
    cdef bint quoted = False, angle = False
    cdef uchar c
    if memchr(b, 44, n) == NULL:
        out.append(_s(b, n))
        return out
    while i < n:
        c = b[i]
        if quoted:
            if c == 92:
                i += 1
            elif c == 34:
                quoted = False
        elif angle:
            if c == 62:
                angle = False
        elif c == 34:
            quoted = True
        elif c == 60:
            angle = True
        elif c == 44:
            out.append(_strip_s(b, start, i))
            start = i + 1
        i += 1
    out.append(_strip_s(b, start, n))
    return out

cdef inline str _strip_s(const uchar* b, Py_ssize_t a, Py_ssize_t z):
    while a < z and (b[a] == 32 or b[a] == 9):
        a += 1
    while z > a and (b[z - 1] == 32 or b[z - 1] == 9):
        z -= 1
    return _s(b + a, z - a)

cdef Py_ssize_t _first_elem_end(const uchar* b, Py_ssize_t n) noexcept nogil:
    """End of the first comma element of b[:n] (n when there is no comma)."""
    return _elem_end(b, n, 0)

# ---------------------------------------------------------------- scalar values

cdef Py_ssize_t _parse_cseq(const uchar* b, Py_ssize_t n, long* num) except -1:
    """Returns the offset of the method (it runs to n); num gets the number."""
    cdef Py_ssize_t i = 0, j, e, z
    while i < n and _is(b[i], C_DIG):
        i += 1
    j = _skip_ws(b, i, n)
    if i == 0 or j == i or j >= n:
        raise _err(f"CSeq {_s(b, n)[:64]!r} is malformed")
    e = _token_end(b, j, n)
    if e != n:
        raise _err(f"CSeq {_s(b, n)[:64]!r} is malformed")
    z = _nz(b, i)
    if i - z > 10 or _digits_value(b + z, i - z) > 2147483647:
        raise _err(f"CSeq number {_s(b, i)[:32]} is out of range (0 to 2**31-1)")
    num[0] = <long>_digits_value(b + z, i - z)
    return j

# a C constant: the literal 2**32-1 in a comparison would be a Python int
cdef unsigned long long _MAX_DELTA = 4294967295

cdef long long _parse_delta(const uchar* b, Py_ssize_t n, str what) except -1:
    if not _all_digits(b, n):
        raise _err(f"{what} {_s(b, n)[:32]!r} is not a number")
    cdef Py_ssize_t z = _nz(b, n)
    if n - z > 10 or _digits_value(b + z, n - z) > _MAX_DELTA:
        raise _err(f"{what} {_s(b, n)[:32]!r} is out of range (0 to 2**32-1)")
    return <long long>_digits_value(b + z, n - z)

cdef int _parse_max_forwards(const uchar* b, Py_ssize_t n) except -1:
    if not _all_digits(b, n):
        raise _err(f"Max-Forwards {_s(b, n)[:32]!r} is not a number")
    cdef Py_ssize_t z = _nz(b, n)
    if n - z > 3 or _digits_value(b + z, n - z) > 255:
        raise _err(f"Max-Forwards {_s(b, n)[:32]!r} is out of range (0 to 255)")
    return <int>_digits_value(b + z, n - z)

cdef int _event_span(const uchar* b, Py_ssize_t n, Py_ssize_t* ea, Py_ssize_t* ez) except -1:
    """The event package b[ea:ez] (checked, no object made)."""
    cdef const uchar* f = <const uchar*>memchr(b, 59, n)
    cdef Py_ssize_t a = 0, z = n if f == NULL else f - b
    while a < z and (b[a] == 32 or b[a] == 9):
        a += 1
    while z > a and (b[z - 1] == 32 or b[z - 1] == 9):
        z -= 1
    if z == a or _token_end(b, a, z) != z:
        raise _err(f"Event {_s(b, n)[:64]!r} is malformed")
    ea[0] = a
    ez[0] = z
    return 0

cdef str _parse_event(const uchar* b, Py_ssize_t n):
    cdef Py_ssize_t a, z
    _event_span(b, n, &a, &z)
    return _s(b + a, z - a)

cdef int _rport_value(const uchar* b, Param* p) except -2:
    cdef Py_ssize_t n, z
    if p.ve < 0:
        return 0
    n = p.ve - p.vs
    z = _nz(b + p.vs, n)
    if not _all_digits(b + p.vs, n) or n - z > 5 or _digits_value(b + p.vs + z, n - z) > 65535:
        raise _err(f"Via rport {_s(b + p.vs, n)[:16]!r} is not a port")
    return <int>_digits_value(b + p.vs + z, n - z)

_WKDAYS = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
_MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")

cdef bint _check_date(bytes b):
    cdef Py_ssize_t k
    if len(b) != 29 or b[3:5] != b", " or b[25:] != b" GMT":
        return False
    if b[:3] not in _WKDAYS or b[8:11] not in _MONTHS:
        return False
    if b[7] != 32 or b[11] != 32 or b[16] != 32 or b[19] != 58 or b[22] != 58:
        return False
    for k in (5, 6, 12, 13, 14, 15, 17, 18, 20, 21, 23, 24):
        if not _is(b[k], C_DIG):
            return False
    return True

# ---------------------------------------------------------------- the message

cdef struct Hdr:
    Py_ssize_t ns, ne, vs, ve
    int key
    int folded

cdef enum:
    INLINE_HDRS = 24

@cython.final
@cython.freelist(8)
cdef class SipMessage:
    """A parsed SIP message (see the stub for the contract)."""

    cdef bytes _buf
    cdef const uchar* _p
    cdef Py_ssize_t _start, _end, _body_start, _body_end
    cdef Hdr* _hdrs
    cdef int _n, _cap
    cdef Hdr _inline[INLINE_HDRS]
    cdef bint _is_request
    # start line: request (method, uri, version) / response (version, reason)
    cdef Py_ssize_t _a0, _a1, _b0, _b1, _v0, _v1
    cdef int _status
    cdef long long _cl          # -1: no Content-Length
    # caches
    cdef int _cseq_state        # 0 unknown, 1 parsed, 2 absent
    cdef long _cseq_num
    cdef object _cseq_method    # None until asked: the method is _cseq_mp[:_cseq_mn]
    cdef const uchar* _cseq_mp
    cdef Py_ssize_t _cseq_mn
    cdef bytes _cseq_keep       # owns _cseq_mp when the CSeq was folded
    cdef int _via_state         # 0 unknown, 1 parsed, 2 absent
    cdef ViaC _via
    cdef const uchar* _via_p
    cdef Py_ssize_t _via_n      # length of the (stripped) top Via element at _via_p
    cdef bytes _via_keep        # owns _via_p when the Via was folded
    cdef object _via_branch_s, _via_host_s   # made on first read (None until then)
    cdef object _call_id_s
    cdef int _from_state, _to_state
    cdef object _from_tag, _to_tag

    def __cinit__(self):
        self._hdrs = self._inline
        self._cap = INLINE_HDRS
        self._n = 0

    def __dealloc__(self):
        if self._hdrs != self._inline:
            free(self._hdrs)

    def __repr__(self):
        if self._is_request:
            return f"<SipMessage {self.method} {self.uri}>"
        return f"<SipMessage {self.status} {self.reason}>"

    cdef int _add(self, Py_ssize_t ns, Py_ssize_t ne, Py_ssize_t vs, Py_ssize_t ve, int key) except -1:
        cdef Hdr* h
        if self._n == self._cap:
            if self._hdrs == self._inline:
                h = <Hdr*>malloc(2 * self._cap * sizeof(Hdr))
                if h == NULL:
                    raise MemoryError()
                memcpy(h, self._inline, self._n * sizeof(Hdr))
            else:
                h = <Hdr*>realloc(self._hdrs, 2 * self._cap * sizeof(Hdr))
                if h == NULL:
                    raise MemoryError()
            self._hdrs = h
            self._cap *= 2
        h = &self._hdrs[self._n]
        h.ns = ns
        h.ne = ne
        h.vs = vs
        h.ve = ve
        h.key = key
        h.folded = 0
        self._n += 1
        return 0

    # -- start line
    @property
    def is_request(self):
        return self._is_request

    @property
    def method(self):
        return _method_s(self._p + self._a0, self._a1 - self._a0) if self._is_request else None

    @property
    def uri(self):
        return _s(self._p + self._b0, self._b1 - self._b0) if self._is_request else None

    @property
    def status(self):
        return None if self._is_request else self._status

    @property
    def reason(self):
        return None if self._is_request else _s(self._p + self._b0, self._b1 - self._b0)

    @property
    def version(self):
        return _s(self._p + self._v0, self._v1 - self._v0)

    # -- headers
    cdef bytes _raw_value(self, Hdr* h):
        """The value bytes, folding resolved (reference: _value before decoding)."""
        cdef const uchar* p = self._p
        if not h.folded:
            return _b(p + h.vs, h.ve - h.vs)
        parts = [line.strip(b" \t\r") for line in _b(p + h.vs, h.ve - h.vs).split(b"\n")]
        return b" ".join([x for x in parts if x])

    cdef object _view(self, Hdr* h, const uchar** p, Py_ssize_t* n):
        """Where a header's value is: ``p[0]``, ``n[0]``. Returns the bytes the
        caller keeps alive while it reads them (a folded value is unfolded into
        new bytes), or None (the value is read in place)."""
        cdef bytes raw
        if h.folded:
            raw = self._raw_value(h)
            p[0] = <const uchar*>PyBytes_AS_STRING(raw)
            n[0] = PyBytes_GET_SIZE(raw)
            return raw
        p[0] = self._p + h.vs
        n[0] = h.ve - h.vs
        return None

    cdef str _value(self, Hdr* h):
        if not h.folded:
            return _s(self._p + h.vs, h.ve - h.vs)
        return self._raw_value(h).decode("utf-8", "surrogateescape")

    cdef Hdr* _first(self, int key) noexcept:
        cdef int i
        for i in range(self._n):
            if self._hdrs[i].key == key:
                return &self._hdrs[i]
        return NULL

    cdef bint _match(self, Hdr* h, int key, bytes low) noexcept:
        cdef Py_ssize_t k, L
        cdef const uchar* q
        if key != K_OTHER:
            return h.key == key
        if h.key != K_OTHER:
            return False
        L = h.ne - h.ns
        if L != PyBytes_GET_SIZE(low):
            return False
        q = <const uchar*>PyBytes_AS_STRING(low)
        for k in range(L):
            if _lower[self._p[h.ns + k]] != q[k]:
                return False
        return True

    def get(self, str name):
        cdef tuple kq = _query(name)
        cdef int key = kq[0], i
        cdef bytes low = kq[1]
        for i in range(self._n):
            if self._match(&self._hdrs[i], key, low):
                return self._value(&self._hdrs[i])
        return None

    def get_all(self, str name):
        cdef tuple kq = _query(name)
        cdef int key = kq[0], i
        cdef bytes low = kq[1], raw
        cdef list out = []
        cdef Hdr* h
        cdef bint split = key != K_OTHER and _is_list[key]
        for i in range(self._n):
            h = &self._hdrs[i]
            if self._match(h, key, low):
                if not split:
                    out.append(self._value(h))
                elif h.folded:
                    raw = self._raw_value(h)
                    out.extend(_split_commas(<const uchar*>PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw)))
                else:
                    out.extend(_split_commas(self._p + h.vs, h.ve - h.vs))
        return out

    def count(self, str name):
        cdef tuple kq = _query(name)
        cdef int key = kq[0], i, c = 0
        cdef bytes low = kq[1]
        for i in range(self._n):
            if self._match(&self._hdrs[i], key, low):
                c += 1
        return c

    def headers(self):
        cdef int i
        cdef Hdr* h
        cdef list out = []
        for i in range(self._n):
            h = &self._hdrs[i]
            out.append((_s(self._p + h.ns, h.ne - h.ns), self._value(h)))
        return out

    @property
    def body(self):
        return _b(self._p + self._body_start, self._body_end - self._body_start)

    def to_bytes(self):
        if self._start == 0 and self._end == PyBytes_GET_SIZE(self._buf):
            return self._buf
        return _b(self._p + self._start, self._end - self._start)

    # -- hot accessors
    @property
    def call_id(self):
        cdef Hdr* h
        if self._call_id_s is None:  # a transaction and dialog key: read many times
            h = self._first(K_CALL_ID)
            if h == NULL:
                return None
            self._call_id_s = self._value(h)
        return self._call_id_s

    cdef int _load_cseq(self) except -1:
        cdef Hdr* h
        cdef bytes raw
        cdef const uchar* p
        cdef Py_ssize_t n, j
        if self._cseq_state:
            return 0
        h = self._first(K_CSEQ)
        if h == NULL:
            self._cseq_state = 2
            return 0
        if h.folded:
            raw = self._raw_value(h)
            p = <const uchar*>PyBytes_AS_STRING(raw)
            n = PyBytes_GET_SIZE(raw)
            self._cseq_keep = raw
        else:
            p = self._p + h.vs
            n = h.ve - h.vs
        j = _parse_cseq(p, n, &self._cseq_num)
        self._cseq_mp = p + j
        self._cseq_mn = n - j
        self._cseq_state = 1
        return 0

    @property
    def cseq_num(self):
        self._load_cseq()
        return self._cseq_num if self._cseq_state == 1 else None

    @property
    def cseq_method(self):
        self._load_cseq()
        if self._cseq_state != 1:
            return None
        if self._cseq_method is None:
            self._cseq_method = _method_s(self._cseq_mp, self._cseq_mn)
        return self._cseq_method

    cdef int _load_via(self) except -1:
        cdef Hdr* h
        cdef const uchar* p
        cdef Py_ssize_t n, a, z
        if self._via_state:
            return 0
        h = self._first(K_VIA)
        if h == NULL:
            self._via_state = 2
            return 0
        self._via_keep = self._view(h, &p, &n)
        z = _first_elem_end(p, n)
        a = 0
        if z < n:  # the reference strips a split element of SP/HT
            a = _skip_ws(p, 0, z)
            z = _rskip_ws(p, a, z)
        _parse_via(p + a, z - a, &self._via)
        self._via_p = p + a
        self._via_n = z - a
        self._via_state = 1
        return 0

    @property
    def via_branch(self):
        cdef int k
        self._load_via()
        if self._via_state != 1:
            return None
        k = _find_param(self._via_p, &self._via.params, "branch", 6)
        if k < 0:
            return None
        if self._via.params.items[k].ve < 0:
            return None
        if self._via_branch_s is None:  # the transaction layer reads it more than once
            self._via_branch_s = _s(self._via_p + self._via.params.items[k].vs,
                                    self._via.params.items[k].ve - self._via.params.items[k].vs)
        return self._via_branch_s

    @property
    def via_host(self):
        self._load_via()
        if self._via_state != 1:
            return None
        if self._via_host_s is None:
            self._via_host_s = _s(self._via_p + self._via.hs, self._via.he - self._via.hs)
        return self._via_host_s

    @property
    def via_port(self):
        self._load_via()
        if self._via_state != 1 or self._via.port < 0:
            return None
        return self._via.port

    @property
    def via_transport(self):
        self._load_via()
        if self._via_state != 1:
            return None
        return _upper_s(self._via_p + self._via.ts, self._via.te - self._via.ts)

    @property
    def via_rport(self):
        cdef int k
        self._load_via()
        if self._via_state != 1:
            return None
        k = _find_param(self._via_p, &self._via.params, "rport", 5)
        if k < 0:
            return None
        return _rport_value(self._via_p, &self._via.params.items[k])

    cdef object _tag_of(self, int key):
        """(present, tag) of From/To; raises SipParseError when malformed."""
        cdef Hdr* h = self._first(key)
        cdef NameAddrC na
        cdef Py_ssize_t base
        cdef bytes raw
        cdef const uchar* p
        cdef Py_ssize_t n
        cdef int k
        if h == NULL:
            return None
        raw = self._view(h, &p, &n)
        _parse_name_addr(p, n, &na, &base)
        k = _find_param(p + base, &na.params, "tag", 3)
        if k < 0 or na.params.items[k].ve < 0:
            return None
        return _s(p + base + na.params.items[k].vs, na.params.items[k].ve - na.params.items[k].vs)

    @property
    def from_tag(self):
        if not self._from_state:
            self._from_tag = self._tag_of(K_FROM)
            self._from_state = 1
        return self._from_tag

    @property
    def to_tag(self):
        if not self._to_state:
            self._to_tag = self._tag_of(K_TO)
            self._to_state = 1
        return self._to_tag

    cdef object _scalar(self, int key, int kind):
        cdef Hdr* h = self._first(key)
        cdef bytes raw
        cdef const uchar* p
        cdef Py_ssize_t n
        if h == NULL:
            return None
        raw = self._view(h, &p, &n)
        if kind == 0:
            return _parse_delta(p, n, "Expires")
        if kind == 1:
            return _parse_max_forwards(p, n)
        return _parse_event(p, n)

    cdef int _check_scalar(self, int key, int kind) except -1:
        """_scalar's checks (same errors), making no object."""
        cdef Hdr* h = self._first(key)
        cdef bytes raw
        cdef const uchar* p
        cdef Py_ssize_t n, a, z
        if h == NULL:
            return 0
        raw = self._view(h, &p, &n)
        if kind == 0:
            _parse_delta(p, n, "Expires")
        elif kind == 1:
            _parse_max_forwards(p, n)
        else:
            _event_span(p, n, &a, &z)
        return 0

    @property
    def expires(self):
        return self._scalar(K_EXPIRES, 0)

    @property
    def max_forwards(self):
        return self._scalar(K_MAX_FORWARDS, 1)

    @property
    def event(self):
        return self._scalar(K_EVENT, 2)

    @property
    def content_length(self):
        return None if self._cl < 0 else self._cl

    @property
    def contact_uri(self):
        cdef Hdr* h = self._first(K_CONTACT)
        cdef bytes raw
        cdef const uchar* p
        cdef Py_ssize_t n, z, a
        cdef NameAddrC na
        cdef Py_ssize_t base
        if h == NULL:
            return None
        raw = self._view(h, &p, &n)
        z = _first_elem_end(p, n)
        a = 0
        if z < n:  # the reference strips a split element of SP/HT
            a = _skip_ws(p, 0, z)
            z = _rskip_ws(p, a, z)
        _parse_name_addr(p + a, z - a, &na, &base)
        return _s(p + a + base + na.us, na.ue - na.us)

    # -- structured views
    # Parsed straight from the buffer: the reference parses the decoded value
    # (or its comma elements, stripped of SP/HT), whose UTF-8 (surrogateescape)
    # octets are the buffer's octets, so results and error texts are the same.
    cdef object _addr(self, int key):
        cdef Hdr* h = self._first(key)
        cdef bytes raw
        cdef const uchar* p
        cdef Py_ssize_t n, base
        cdef NameAddrC na
        if h == NULL:
            return None
        raw = self._view(h, &p, &n)
        _parse_name_addr(p, n, &na, &base)
        return _na_obj(p + base, &na)

    cdef list _elements(self, int key):
        """Every comma element of every header with this key, parsed: Via
        (key K_VIA) or name-addr (Contact) results, in order."""
        cdef list out = []
        cdef int i
        cdef Hdr* h
        cdef bytes raw
        cdef const uchar* p
        cdef Py_ssize_t n, s, e, a, z, base
        cdef ViaC v
        cdef NameAddrC na
        for i in range(self._n):
            h = &self._hdrs[i]
            if h.key != key:
                continue
            raw = self._view(h, &p, &n)
            s = 0
            while True:
                e = _elem_end(p, n, s)
                a = _skip_ws(p, s, e)
                z = _rskip_ws(p, a, e)
                if key == K_VIA:
                    _parse_via(p + a, z - a, &v)
                    out.append(_via_obj(p + a, &v))
                else:
                    _parse_name_addr(p + a, z - a, &na, &base)
                    out.append(_na_obj(p + a + base, &na))
                if e >= n:
                    break
                s = e + 1
        return out

    def vias(self):
        return self._elements(K_VIA)

    def from_addr(self):
        return self._addr(K_FROM)

    def to_addr(self):
        return self._addr(K_TO)

    def contacts(self):
        return self._elements(K_CONTACT)

# ---------------------------------------------------------------- framing

cdef inline bint _check_version(const uchar* v, Py_ssize_t n) noexcept:
    cdef Py_ssize_t dot, k
    if n < 7 or _lower[v[0]] != 115 or _lower[v[1]] != 105 or _lower[v[2]] != 112 or v[3] != 47:
        return False
    dot = 4
    while dot < n and v[dot] != 46:
        dot += 1
    if dot == n or dot == 4 or dot == n - 1:
        return False
    for k in range(4, dot):
        if not _is(v[k], C_DIG):
            return False
    for k in range(dot + 1, n):
        if not _is(v[k], C_DIG):
            return False
    return True

cdef int _parse_start_line(SipMessage msg, const uchar* d, Py_ssize_t pos, Py_ssize_t le) except -1:
    cdef const uchar* line = d + pos
    cdef Py_ssize_t n = le - pos, sp, sp1, sp2, after, j
    cdef const uchar* f
    cdef int status
    cdef uchar c
    if n >= 4 and _lower[line[0]] == 115 and _lower[line[1]] == 105 and _lower[line[2]] == 112 and line[3] == 47:
        f = <const uchar*>memchr(line, 32, n)
        if f == NULL:
            raise _err(f"malformed Status-Line {_b(line, min(n, 64))!r} (offset {pos})")
        sp = f - line
        if not _check_version(line, sp):
            raise _err(f"malformed SIP version {_b(line, min(sp, 32))!r} in Status-Line (offset {pos})")
        after = sp + 4
        if after > n or not (_is(line[sp + 1], C_DIG) and _is(line[sp + 2], C_DIG) and _is(line[sp + 3], C_DIG)):
            raise _err(f"malformed status code in Status-Line {_b(line, min(n, 64))!r} (offset {pos})")
        if after < n and line[after] != 32:
            raise _err(f"status code in {_b(line, min(n, 64))!r} is not three digits (offset {pos})")
        status = (line[sp + 1] - 48) * 100 + (line[sp + 2] - 48) * 10 + (line[sp + 3] - 48)
        if status < 100 or status > 699:
            raise _err(f"status code {status} out of range 100-699 (offset {pos})")
        msg._is_request = False
        msg._status = status
        msg._v0 = pos
        msg._v1 = pos + sp
        if after < n:
            msg._b0 = pos + after + 1
        else:
            msg._b0 = le
        msg._b1 = le
        return 0
    f = <const uchar*>memchr(line, 32, n)
    sp1 = -1 if f == NULL else f - line
    if sp1 <= 0:
        raise _err(f"malformed Request-Line {_b(line, min(n, 64))!r} (offset {pos})")
    for j in range(sp1):
        if not _is(line[j], C_TOK):
            raise _err(f"invalid character {_b(line + j, 1)!r} in method (offset {pos})")
    f = <const uchar*>memchr(line + sp1 + 1, 32, n - sp1 - 1)
    if f == NULL:
        raise _err(f"malformed Request-Line {_b(line, min(n, 64))!r} (offset {pos})")
    sp2 = f - line
    if sp2 == sp1 + 1:
        raise _err(f"empty Request-URI (offset {pos + sp1 + 1})")
    if not _check_version(line + sp2 + 1, n - sp2 - 1):
        raise _err(f"malformed SIP version {_b(line + sp2 + 1, min(n - sp2 - 1, 32))!r} in Request-Line (offset {pos + sp2 + 1})")
    _check_request_uri(line + sp1 + 1, sp2 - sp1 - 1, pos + sp1 + 1)
    msg._is_request = True
    msg._status = 0
    msg._a0 = pos
    msg._a1 = pos + sp1
    msg._b0 = pos + sp1 + 1
    msg._b1 = pos + sp2
    msg._v0 = pos + sp2 + 1
    msg._v1 = le
    return 0

cdef int _check_request_uri(const uchar* u, Py_ssize_t n, Py_ssize_t offset) except -1:
    cdef Py_ssize_t i, j
    cdef uchar c
    if not _is(u[0], C_ALP):
        raise _err(f"Request-URI {_b(u, min(n, 64))!r} does not start with a scheme (offset {offset})")
    i = 1
    while i < n and _is(u[i], C_SCH):
        i += 1
    if i >= n or u[i] != 58:
        raise _err(f"Request-URI {_b(u, min(n, 64))!r} has no scheme (offset {offset})")
    for j in range(n):
        c = u[j]
        if c <= 32 or c >= 127 or c == 60 or c == 62 or c == 34:
            raise _err(f"invalid character {_b(u + j, 1)!r} in Request-URI (offset {offset + j})")
    return 0

cdef Py_ssize_t _next_line(const uchar* d, Py_ssize_t p, Py_ssize_t end, Py_ssize_t start,
                           Py_ssize_t maxh) except -1:
    cdef const uchar* f = <const uchar*>memchr(d + p, 10, end - p) if end > p else NULL
    cdef Py_ssize_t nl
    if f == NULL:
        if end - start > maxh:
            raise _err(f"header block exceeds {maxh} bytes", 513)
        if p == start:
            raise _err("start line is not terminated by CRLF")
        raise _err("header section is not terminated by an empty line")
    nl = f - d
    if nl + 1 - start > maxh:
        raise _err(f"header block exceeds {maxh} bytes", 513)
    # a lone CR inside a line (see the reference): one memchr per line
    f = <const uchar*>memchr(d + p, 13, nl - 1 - p) if nl - 1 > p else NULL
    if f != NULL:
        raise _err(f"CR without LF inside a line (offset {f - d})")
    return nl

cdef long long _parse_content_length(const uchar* raw, Py_ssize_t n, int index, Py_ssize_t offset,
                                     long long max_body) except -2:
    if not _all_digits(raw, n):
        raise _err(f"Content-Length {_b(raw, min(n, 32))!r} is not a number (header {index}, offset {offset})")
    cdef Py_ssize_t z = _nz(raw, n)
    if n - z > 18 or <long long>_digits_value(raw + z, n - z) > max_body:
        raise _err(f"Content-Length {_b(raw, min(n, 32))!r} exceeds the body limit of {max_body} bytes", 413)
    return <long long>_digits_value(raw + z, n - z)

cdef SipMessage _frame(bytes data, Py_ssize_t start, Py_ssize_t end, bint stream,
                       Py_ssize_t maxh, int maxn, long long maxb):
    cdef const uchar* d = <const uchar*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t pos = start, nl, le, p, ve, vs, colon, ne, i, body_start, body_end
    cdef const uchar* f
    cdef SipMessage msg
    cdef Hdr* h
    cdef uchar c0
    cdef long long cl = -1, nv
    cdef int index
    cdef bytes raw
    while pos < end and (d[pos] == 13 or d[pos] == 10):
        pos += 1
    if pos >= end:
        raise _err("empty message")
    msg = SipMessage.__new__(SipMessage)
    msg._buf = data
    msg._p = d
    msg._start = pos
    nl = _next_line(d, pos, end, pos, maxh)
    le = nl - 1 if nl > pos and d[nl - 1] == 13 else nl
    _parse_start_line(msg, d, pos, le)
    p = nl + 1
    while True:
        if p >= end:
            raise _err("header section is not terminated by an empty line")
        nl = _next_line(d, p, end, pos, maxh)
        le = nl - 1 if nl > p and d[nl - 1] == 13 else nl
        if le == p:
            body_start = nl + 1
            break
        c0 = d[p]
        if c0 == 32 or c0 == 9:
            if msg._n == 0:
                raise _err(f"continuation line before the first header (offset {p})")
            h = &msg._hdrs[msg._n - 1]
            ve = le
            while ve > p and (d[ve - 1] == 32 or d[ve - 1] == 9):
                ve -= 1
            if ve > p:
                h.ve = ve
                h.folded = 1
            p = nl + 1
            continue
        f = <const uchar*>memchr(d + p, 58, le - p)
        if f == NULL:
            raise _err(f"header line without a colon (header {msg._n + 1}, offset {p})")
        colon = f - d
        ne = colon
        while ne > p and (d[ne - 1] == 32 or d[ne - 1] == 9):
            ne -= 1
        if ne == p:
            raise _err(f"empty header name (header {msg._n + 1}, offset {p})")
        for i in range(p, ne):
            if not _is(d[i], C_TOK):
                raise _err(f"invalid character {_b(d + i, 1)!r} in header name (header {msg._n + 1}, offset {i})")
        if msg._n >= maxn:
            raise _err(f"more than {maxn} header lines", 513)
        vs = colon + 1
        while vs < le and (d[vs] == 32 or d[vs] == 9):
            vs += 1
        ve = le
        while ve > vs and (d[ve - 1] == 32 or d[ve - 1] == 9):
            ve -= 1
        msg._add(p, ne, vs, ve, _key_of(d + p, ne - p))
        p = nl + 1
    for index in range(msg._n):
        h = &msg._hdrs[index]
        if h.key == K_CONTENT_LENGTH:
            if h.folded:
                raw = msg._raw_value(h)
                nv = _parse_content_length(<const uchar*>PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw),
                                           index + 1, h.vs, maxb)
            else:
                nv = _parse_content_length(d + h.vs, h.ve - h.vs, index + 1, h.vs, maxb)
            if cl >= 0 and nv != cl:
                raise _err(f"conflicting Content-Length values {cl} and {nv} (header {index + 1})")
            cl = nv
    msg._cl = cl
    msg._body_start = body_start
    if cl < 0:
        body_end = body_start if stream else end
    else:
        body_end = min(body_start + cl, end)
    msg._body_end = body_end
    msg._end = body_end
    return msg

def parse_message(data, *, max_header_bytes=DEFAULT_MAX_HEADER_BYTES,
                  max_headers=DEFAULT_MAX_HEADERS, max_body_bytes=DEFAULT_MAX_BODY_BYTES):
    cdef bytes buf = _as_bytes(data)
    if (max_header_bytes is DEFAULT_MAX_HEADER_BYTES and max_headers is DEFAULT_MAX_HEADERS
            and max_body_bytes is DEFAULT_MAX_BODY_BYTES):
        return _frame(buf, 0, PyBytes_GET_SIZE(buf), False, 16384, 256, 1 << 20)
    mh, mn, mb = _shared.limits(max_header_bytes, max_headers, max_body_bytes)
    return _frame(buf, 0, PyBytes_GET_SIZE(buf), False, mh, mn, mb)

# ---------------------------------------------------------------- URIs

cdef int _check_chars(const uchar* b, Py_ssize_t n, unsigned short allowed, str what, UriText* ut) except -1:
    cdef Py_ssize_t i = 0
    cdef uchar c
    while True:
        i = _span(b, i, n, allowed)  # no class allowed here holds '%'
        if i >= n:
            return 0
        c = b[i]
        if c == 37:
            if i + 2 >= n or not _is(b[i + 1], C_HEX) or not _is(b[i + 2], C_HEX):
                raise _err(f"bad escape in {what} of URI {_utext(ut)[:64]!r}")
            i += 3
            continue
        raise _err(f"invalid character {_b(b + i, 1)!r} in {what} of URI {_utext(ut)[:64]!r}")

cdef struct UriC:
    bint sip
    Py_ssize_t ss, se          # scheme
    Py_ssize_t us, ue          # user (us < 0: none)
    Py_ssize_t ps, pe          # password (ps < 0: none)
    Py_ssize_t hs, he          # host
    int port
    Py_ssize_t qs              # offset of '?' (qs < 0: no headers)
    Py_ssize_t rs              # start of the part after the scheme's ':'
    ParamList params

cdef int _parse_uri(const uchar* b, Py_ssize_t n, UriC* u, UriText* ut) except -1:
    cdef Py_ssize_t i, at, colon, m, s, e, vs, k, ub
    cdef const uchar* r
    cdef const uchar* f
    cdef Param* pp
    if n == 0 or not _is(b[0], C_ALP):
        raise _err(f"URI {_utext(ut)[:64]!r} has no scheme")
    i = 1
    while i < n and _is(b[i], C_SCH):
        i += 1
    if i >= n or b[i] != 58:
        raise _err(f"URI {_utext(ut)[:64]!r} has no scheme")
    u.ss = 0
    u.se = i
    u.rs = i + 1
    u.us = u.ps = u.qs = -1
    u.params.n = 0
    u.port = -1
    u.sip = _ci_eq(b, i, "sip", 3) or _ci_eq(b, i, "sips", 4)
    r = b + i + 1
    m = n - i - 1
    if not u.sip:
        if m == 0:
            raise _err(f"URI {_utext(ut)[:64]!r} is empty after the scheme")
        for k in range(m):
            if r[k] <= 32 or r[k] >= 127 or r[k] == 60 or r[k] == 62 or r[k] == 34:
                raise _err(f"invalid character {_b(r + k, 1)!r} in URI {_utext(ut)[:64]!r}")
        return 0
    f = <const uchar*>memchr(r, 64, m)
    if f != NULL:
        at = f - r
        f = <const uchar*>memchr(r, 58, at)
        colon = -1 if f == NULL else f - r
        ub = at if colon < 0 else colon
        if ub == 0:
            raise _err(f"empty user part in URI {_utext(ut)[:64]!r}")
        _check_chars(r, ub, C_USR, "user part", ut)
        u.us = u.rs
        u.ue = u.rs + ub
        if colon >= 0:
            _check_chars(r + colon + 1, at - colon - 1, C_PAS, "password", ut)
            u.ps = u.rs + colon + 1
            u.pe = u.rs + at
        r = r + at + 1
        m = m - at - 1
    # offsets below are relative to r; convert when storing
    i = _parse_hostport(r, m, 0, False, &u.hs, &u.he, &u.port, None, ut)
    u.hs += r - b
    u.he += r - b
    while i < m and r[i] == 59:
        s = i + 1
        e = s
        while e < m and r[e] != 59 and r[e] != 63 and r[e] != 61:
            e += 1
        if e == s:
            raise _err(f"empty parameter in URI {_utext(ut)[:64]!r}")
        _check_chars(r + s, e - s, C_PRM, "parameter", ut)
        if u.params.n >= MAXPARAMS:
            raise _err(f"more than {MAXPARAMS} parameters in URI {_utext(ut)[:64]!r}")
        pp = &u.params.items[u.params.n]
        pp.ns = s + (r - b)
        pp.ne = e + (r - b)
        pp.vs = pp.ve = -1
        if e < m and r[e] == 61:
            vs = e + 1
            e = vs
            while e < m and r[e] != 59 and r[e] != 63:
                e += 1
            _check_chars(r + vs, e - vs, C_PRM, "parameter", ut)
            pp.vs = vs + (r - b)
            pp.ve = e + (r - b)
        for k in range(u.params.n):
            if _name_eq(b, &u.params.items[k], pp):
                raise _err(f"URI parameter {_s(b + pp.ns, pp.ne - pp.ns).lower()!r} appears more than once in {_utext(ut)[:64]!r}")
        u.params.n += 1
        i = e
    if i < m and r[i] == 63:
        u.qs = i + (r - b)
        _check_uri_headers(r + i + 1, m - i - 1, ut)
        i = m
    if i < m:
        raise _err(f"unexpected {_b(r + i, 1)!r} in URI {_utext(ut)[:64]!r}")
    return 0

cdef int _check_uri_headers(const uchar* h, Py_ssize_t n, UriText* ut) except -1:
    cdef Py_ssize_t s = 0, e, eq
    cdef const uchar* f
    while True:
        f = <const uchar*>memchr(h + s, 38, n - s) if n > s else NULL
        e = n if f == NULL else f - h
        f = <const uchar*>memchr(h + s, 61, e - s) if e > s else NULL
        eq = -1 if f == NULL else f - h
        if eq <= s:
            raise _err(f"malformed header {_b(h + s, min(e - s, 32))!r} in URI {_utext(ut)[:64]!r}")
        _check_chars(h + s, eq - s, C_HDR, "header", ut)
        _check_chars(h + eq + 1, e - eq - 1, C_HDR, "header", ut)
        if e >= n:
            return 0
        s = e + 1

cdef object _uri_obj(const uchar* b, Py_ssize_t n, UriC* u):
    cdef list headers
    cdef object scheme, hdrs = ()
    cdef Py_ssize_t eq
    if not u.sip:  # the scheme is ALPHA *(alphanum / "+" / "-" / "."): ASCII
        return _mk_uri(__sf_ascii_map(b, u.se, _lower), None, None, None, None, {}, (),
                       _s(b + u.rs, n - u.rs))
    scheme = "sip" if u.se == 3 else "sips"
    if u.qs >= 0:
        headers = []
        for item in _b(b + u.qs + 1, n - u.qs - 1).split(b"&"):
            eq = item.find(b"=")
            headers.append((item[:eq].decode("utf-8", "surrogateescape"),
                            item[eq + 1:].decode("utf-8", "surrogateescape")))
        hdrs = tuple(headers)
    return _mk_uri(
        scheme,
        None if u.us < 0 else _s(b + u.us, u.ue - u.us),
        None if u.ps < 0 else _s(b + u.ps, u.pe - u.ps),
        _s(b + u.hs, u.he - u.hs),
        None if u.port < 0 else u.port,
        _params_dict(b, &u.params),
        hdrs,
        None,
    )

def parse_uri(str text):
    cdef object src = _input(text, "URI")
    cdef Py_ssize_t n
    cdef const uchar* p = <const uchar*>_txt(src, &n)
    cdef UriC u
    cdef UriText ut
    ut.text = <PyObject*>text
    ut.b = p
    ut.n = n
    _parse_uri(p, n, &u, &ut)
    return _uri_obj(p, n, &u)

# ---------------------------------------------------------------- validation

SUPPORTED_URI_SCHEMES = frozenset(["sip", "sips", "tel", "pres", "im"])
_REQUIRED = (("Via", K_VIA), ("From", K_FROM), ("To", K_TO), ("Call-ID", K_CALL_ID), ("CSeq", K_CSEQ))
_SINGLE = tuple((n, _KEY[n.lower().encode()]) for n in
                ("From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Length", "Content-Type", "Expires"))
# the same keys as C arrays, scanned without touching the tuples (names only for the answer)
cdef enum:
    NREQUIRED = 5
    NSINGLE = 8
cdef int _required_key[NREQUIRED]
cdef int _single_key[NSINGLE]

cdef void _init_checks():
    cdef int j
    for j in range(NREQUIRED):
        _required_key[j] = _REQUIRED[j][1]
    for j in range(NSINGLE):
        _single_key[j] = _SINGLE[j][1]

_init_checks()

cdef Py_ssize_t _elem_end(const uchar* b, Py_ssize_t n, Py_ssize_t i) noexcept nogil:
    """End of the comma element starting at i: the first comma outside a
    quoted string (backslash escapes the next octet) and <...>, else n (the
    state machine of _split_commas, with the <...> and quoted runs skipped
    in one go)."""
    cdef const uchar* f
    cdef uchar c
    if i >= n or memchr(b + i, 44, n - i) == NULL:  # no comma at all: one element
        return n
    while i < n:
        c = b[i]
        if c == 44:
            return i
        if c == 60:
            f = <const uchar*>memchr(b + i + 1, 62, n - i - 1)
            if f == NULL:
                return n
            i = f - b + 1
        elif c == 34:
            i += 1
            while i < n and b[i] != 34:
                if b[i] == 92:
                    i += 1
                i += 1
            i += 1
        else:
            i += 1
    return n

cdef int _check_uri(const uchar* p, Py_ssize_t n) except -1:
    cdef UriC u
    cdef UriText ut
    ut.text = NULL
    ut.b = p
    ut.n = n
    _parse_uri(p, n, &u, &ut)
    return 0

cdef int _check_elements(SipMessage msg, int key, int what, int skip) except -1:
    """validate_request's checks of every comma element of Via (what=0) or
    Contact (what=1), in the reference's order: all elements parsed first,
    then (Contact) each URI and expires parameter. The first ``skip``
    elements are taken as checked (the top Via, parsed by _load_via)."""
    cdef int i, rnd, count = 0, stars = 0
    cdef Hdr* h
    cdef bytes keep
    cdef const uchar* p = NULL
    cdef Py_ssize_t n, s, e, a = 0, z, base = 0
    cdef ViaC v
    cdef NameAddrC na
    for rnd in range(1 if what == 0 else 2):
        for i in range(msg._n):
            h = &msg._hdrs[i]
            if h.key != key:
                continue
            keep = msg._view(h, &p, &n)
            s = 0
            while True:
                e = _elem_end(p, n, s)
                a = _skip_ws(p, s, e)
                z = _rskip_ws(p, a, e)
                if what == 0:
                    if skip:
                        skip -= 1
                    else:
                        _parse_via(p + a, z - a, &v)
                else:
                    _parse_name_addr(p + a, z - a, &na, &base)
                    if rnd == 0:
                        count += 1
                        stars += na.ue - na.us == 1 and p[a + base + na.us] == 42
                    else:
                        _check_contact(p + a + base, &na)
                if e >= n:
                    break
                s = e + 1
        if rnd == 0 and what == 1:
            if stars and count > 1:
                raise _err("'*' must be the only Contact")
            if count <= 1:
                # one element (the usual REGISTER): it is still parsed in na,
                # at p + a + base (keep owns a folded value): no second round
                if count == 1:
                    _check_contact(p + a + base, &na)
                return 0
    return 0

cdef int _check_contact(const uchar* b, NameAddrC* na) except -1:
    """The URI (unless '*') and the expires parameter of a parsed Contact element."""
    cdef int k
    cdef Param* pp
    if not (na.ue - na.us == 1 and b[na.us] == 42):
        _check_uri(b + na.us, na.ue - na.us)
    k = _find_param(b, &na.params, "expires", 7)
    if k >= 0 and na.params.items[k].ve >= 0:
        pp = &na.params.items[k]
        _parse_delta(b + pp.vs, pp.ve - pp.vs, "Contact expires")
    return 0

cdef int _check_addr(SipMessage msg, int key) except -1:
    """parse_name_addr + parse_uri of From/To (absent: the reference parses '')."""
    cdef Hdr* h = msg._first(key)
    cdef bytes keep
    cdef const uchar* p
    cdef Py_ssize_t n, base
    cdef NameAddrC na
    if h == NULL:
        p = <const uchar*>b""
        n = 0
    elif h.folded:
        keep = msg._raw_value(h)
        p = <const uchar*>PyBytes_AS_STRING(keep)
        n = PyBytes_GET_SIZE(keep)
    else:
        p = msg._p + h.vs
        n = h.ve - h.vs
    _parse_name_addr(p, n, &na, &base)
    _check_uri(p + base + na.us, na.ue - na.us)
    return 0

def unsupported_requires(SipMessage msg, supported=()):
    known = set(supported)
    return [t for t in msg.get_all("require") if t and t not in known]

def validate_request(SipMessage msg, *, supported=()):
    # Checks run on the tokenized headers in the reference's order; Python
    # objects are made only for an answer (or the Require check, which needs
    # ``supported``). Error texts are those of the reference's accessors.
    cdef str what
    cdef int i, k
    cdef int counts[128]
    cdef UriC u
    cdef UriText ut
    cdef Hdr* h
    cdef bytes keep
    cdef const uchar* p
    cdef Py_ssize_t n
    cdef bint req = msg._is_request
    if not _ci_eq(msg._p + msg._v0, msg._v1 - msg._v0, "sip/2.0", 7):
        return 505, "Version Not Supported"
    memset(counts, 0, sizeof(counts))
    for i in range(msg._n):
        counts[msg._hdrs[i].key] += 1
    for k in range(NREQUIRED):
        if counts[_required_key[k]] == 0:
            return 400, f"Missing {_REQUIRED[k][0]} header"
    for k in range(NSINGLE):
        if counts[_single_key[k]] > 1:
            return 400, f"Multiple {_SINGLE[k][0]} headers"
    if msg._cl >= 0 and msg._cl > msg._body_end - msg._body_start:
        return 400, "Content-Length larger than the message body"
    if req:
        ut.text = NULL
        ut.b = msg._p + msg._b0
        ut.n = msg._b1 - msg._b0
        try:
            _parse_uri(ut.b, ut.n, &u, &ut)
        except SipParseError as e:
            return 400, f"Malformed Request-URI: {e}"
        if not u.sip and __sf_ascii_map(msg._p + msg._b0, u.se, _lower) not in SUPPORTED_URI_SCHEMES:
            return 416, "Unsupported URI Scheme"
        if u.sip and u.qs >= 0:
            return 400, "Request-URI must not contain headers"
    what = "CSeq"
    try:
        # the reference compares msg.cseq_method with msg.method: the same
        # octets (decoding is one-to-one), and it reads CSeq for a response too
        msg._load_cseq()
        if req and not (msg._cseq_mn == msg._a1 - msg._a0
                        and memcmp(msg._cseq_mp, msg._p + msg._a0, msg._cseq_mn) == 0):
            return 400, "CSeq method does not match the request method"
        what = "Call-ID"
        h = msg._first(K_CALL_ID)
        keep = msg._view(h, &p, &n)
        if n == 0:
            return 400, "Malformed Call-ID"
        for i in range(n):
            if p[i] <= 0x20 or p[i] == 0x7F:
                return 400, "Malformed Call-ID"
        what = "Max-Forwards"
        msg._check_scalar(K_MAX_FORWARDS, 1)
        what = "Expires"
        msg._check_scalar(K_EXPIRES, 0)
        what = "Via"
        # the top Via through the message's cache (the same element, the same
        # errors): the via_* accessors read it next without parsing again
        msg._load_via()
        _check_elements(msg, K_VIA, 0, 1)
        what = "From"
        _check_addr(msg, K_FROM)
        what = "To"
        _check_addr(msg, K_TO)
        what = "Contact"
        _check_elements(msg, K_CONTACT, 1, 0)
        what = "Event"
        msg._check_scalar(K_EVENT, 2)
    except SipParseError as e:
        return 400, f"Malformed {what}: {e}"
    if counts[K_DATE]:
        if not _check_date(msg._raw_value(msg._first(K_DATE))):
            return 400, "Malformed Date"
    if req and counts[K_REQUIRE] and not (msg._a1 - msg._a0 == 3 and memcmp(msg._p + msg._a0, b"ACK", 3) == 0) \
            and not (msg._a1 - msg._a0 == 6 and memcmp(msg._p + msg._a0, b"CANCEL", 6) == 0):
        if unsupported_requires(msg, supported):
            return 420, "Bad Extension"
    return None

# ---------------------------------------------------------------- responses

cdef struct Stamp:
    # edits of the buffer that stamp the top Via (see _via_stamp), in buffer order:
    # [s, e) is replaced by pre + txt
    int n
    Py_ssize_t s[2]
    Py_ssize_t e[2]
    const char* pre[2]
    Py_ssize_t npre[2]
    const char* txt[2]
    Py_ssize_t ntxt[2]
    Py_ssize_t delta            # output length minus input length
    char port[8]

cdef Py_ssize_t _fold_pos(const uchar* r, Py_ssize_t n, Py_ssize_t x) noexcept nogil:
    """Offset in r[:n] (a folded value as written) of octet x of the value as
    _raw_value reads it (lines stripped of SP/HT/CR, joined by one SP)."""
    cdef Py_ssize_t i = 0, le, a, z, u = 0
    cdef bint first = True
    cdef const uchar* f
    while i <= n:
        f = <const uchar*>memchr(r + i, 10, n - i) if i < n else NULL
        le = n if f == NULL else f - r
        a = i
        z = le
        while a < z and (r[a] == 32 or r[a] == 9 or r[a] == 13):
            a += 1
        while z > a and (r[z - 1] == 32 or r[z - 1] == 9 or r[z - 1] == 13):
            z -= 1
        if z > a:
            if not first:
                u += 1
            first = False
            if x < u + (z - a):
                return a + (x - u)
            u += z - a
        i = le + 1
    return n

cdef inline Py_ssize_t _fmt_uint(char* out, unsigned long long v) noexcept nogil:
    """Decimal digits of v into out (at most 20); returns their number."""
    cdef char tmp[20]
    cdef Py_ssize_t k = 0, j
    while True:
        tmp[k] = <char>(48 + v % 10)
        k += 1
        v //= 10
        if v == 0:
            break
    for j in range(k):
        out[j] = tmp[k - 1 - j]
    return k

cdef inline void _stamp_add(Stamp* st, Py_ssize_t s, Py_ssize_t e, const char* pre, Py_ssize_t npre,
                            const char* txt, Py_ssize_t ntxt) noexcept nogil:
    st.s[st.n] = s
    st.e[st.n] = e
    st.pre[st.n] = pre
    st.npre[st.n] = npre
    st.txt[st.n] = txt
    st.ntxt[st.n] = ntxt
    st.n += 1

cdef int _via_stamp(SipMessage msg, Hdr* h, object received, int rport, Stamp* st) except -1:
    """RFC 3261 section 18.2.1 (received) and RFC 3581 section 4 (rport), as
    the reference's _via_stamp: edits over the parsed top Via element, every
    other octet kept. ``received`` is a checked IP address or None; rport 0 is
    none. ``st`` keeps pointers into ``received``: the caller holds it."""
    cdef const uchar* b
    cdef const uchar* ip = NULL
    cdef Py_ssize_t ipn = 0, hs, he, k, off, s, e, n
    cdef int kr, kc
    cdef bint asked, differs
    cdef Param* pr
    cdef Param* pc
    st.n = 0
    st.delta = 0
    try:
        msg._load_via()
    except SipParseError:
        return 0  # a malformed Via is sent back as written
    if msg._via_state != 1:
        return 0
    b = msg._via_p
    kr = _find_param(b, &msg._via.params, "rport", 5)
    asked = kr >= 0 and msg._via.params.items[kr].ve < 0
    if asked and rport > 0:
        pr = &msg._via.params.items[kr]
        st.port[0] = 61  # '='
        n = _fmt_uint(st.port + 1, <unsigned long long>rport)
        _stamp_add(st, pr.ne, pr.ne, NULL, 0, st.port, n + 1)
    if received is not None:
        ip = <const uchar*>PyUnicode_AsUTF8AndSize(received, &ipn)
        hs = msg._via.hs
        he = msg._via.he
        if b[hs] == 91:
            hs += 1
            he -= 1
        differs = he - hs != ipn
        if not differs:
            for k in range(ipn):
                if _lower[b[hs + k]] != _lower[ip[k]]:
                    differs = True
                    break
        if asked or differs:
            kc = _find_param(b, &msg._via.params, "received", 8)
            if kc < 0:
                _stamp_add(st, msg._via_n, msg._via_n, ";received=", 10, <const char*>ip, ipn)
            else:
                pc = &msg._via.params.items[kc]
                if pc.ve < 0:
                    _stamp_add(st, pc.ne, pc.ne, "=", 1, <const char*>ip, ipn)
                else:
                    _stamp_add(st, pc.vs, pc.ve, NULL, 0, <const char*>ip, ipn)
    if st.n == 2 and st.s[1] < st.s[0]:
        st.s[0], st.s[1] = st.s[1], st.s[0]
        st.e[0], st.e[1] = st.e[1], st.e[0]
        st.pre[0], st.pre[1] = st.pre[1], st.pre[0]
        st.npre[0], st.npre[1] = st.npre[1], st.npre[0]
        st.txt[0], st.txt[1] = st.txt[1], st.txt[0]
        st.ntxt[0], st.ntxt[1] = st.ntxt[1], st.ntxt[0]
    # element offsets -> buffer offsets
    if not h.folded:
        off = b - msg._p
        for k in range(st.n):
            st.s[k] += off
            st.e[k] += off
    else:
        off = b - <const uchar*>PyBytes_AS_STRING(msg._via_keep)
        for k in range(st.n):
            s = st.s[k] + off
            e = st.e[k] + off
            st.e[k] = h.vs + _fold_pos(msg._p + h.vs, h.ve - h.vs, e - 1) + 1
            st.s[k] = h.vs + _fold_pos(msg._p + h.vs, h.ve - h.vs, s) if e > s else st.e[k]
    for k in range(st.n):
        st.delta += st.npre[k] + st.ntxt[k] - (st.e[k] - st.s[k])
    return 0

cdef char* _put_stamped(char* w, const uchar* p, Py_ssize_t start, Py_ssize_t end, Stamp* st) noexcept:
    """p[start:end] with the stamp's edits applied."""
    cdef int k
    for k in range(st.n):
        w = _put(w, p + start, st.s[k] - start)
        if st.npre[k]:
            w = _put(w, st.pre[k], st.npre[k])
        w = _put(w, st.txt[k], st.ntxt[k])
        start = st.e[k]
    return _put(w, p + start, end - start)

cdef inline char* _put(char* w, const void* src, Py_ssize_t n) noexcept:
    memcpy(w, src, n)
    return w + n

cdef bytes _encode_input(str text, str what):
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        _shared.encode_input(text, what)  # raises SipParseError
        raise

cdef bint _is_token(str text):
    cdef bytes b = text.encode("utf-8", "surrogateescape")
    cdef const uchar* p = <const uchar*>PyBytes_AS_STRING(b)
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(b)
    for i in range(n):
        if not _is(p[i], C_TOK):
            return False
    return n > 0

def build_response(SipMessage req, status, str reason, *, to_tag=None, extra_headers=(),
                   body=b"", received=None, rport=None):
    cdef Py_ssize_t total, blen
    cdef int i
    cdef Hdr* h
    cdef bint top_via = True, add_tag = False
    cdef const uchar* p = req._p
    cdef bytes reason_b, tag_b = None, extra_b, out, tail
    cdef char* w
    cdef Stamp st
    cdef int stamped = -1       # index of the Via header stamped
    # the common call (int status, no received/rport, plain ASCII reason) is checked
    # inline; anything else goes through the checks the reference uses
    if not (type(status) is int and 100 <= status <= 699
            and (<str>reason).isascii() and "\r" not in reason and "\n" not in reason
            and (to_tag is None or (type(to_tag) is str and (<str>to_tag).isascii() and _is_token(to_tag)))
            and (received is None or _plain_ip(received))
            and (rport is None or (type(rport) is int and 1 <= rport <= 65535))):
        _shared.check_response_args(status, reason, to_tag, received, rport)
    if type(body) is not bytes:
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError(f"body must be bytes-like, not {type(body).__name__}")
        body = bytes(body)
    blen = PyBytes_GET_SIZE(body)
    reason_b = reason.encode("utf-8", "surrogateescape")
    if isinstance(extra_headers, (bytes, bytearray, memoryview)):
        extra_b = bytes(extra_headers)
    else:
        parts = []
        for name, value in extra_headers:
            if (type(name) is str and type(value) is str and (<str>name).isascii() and (<str>value).isascii()
                    and _is_token(name) and "\r" not in value and "\n" not in value):
                parts.append((<str>name).encode("ascii") + b": " + (<str>value).encode("ascii") + b"\r\n")
            else:
                parts.append(_shared.header_pair_bytes(name, value))
        extra_b = b"".join(parts)
    if to_tag is not None:
        try:
            add_tag = req.to_tag is None
        except SipParseError:
            add_tag = False
        if add_tag:
            tag_b = b";tag=" + (<str>to_tag).encode("utf-8", "surrogateescape")
    tail = b"Content-Length: %d\r\n\r\n" % blen
    # size first, then one allocation and memcpy of every piece
    total = 12 + PyBytes_GET_SIZE(reason_b) + 2
    for i in range(req._n):
        h = &req._hdrs[i]
        if h.key == K_VIA:
            if top_via and (received is not None or rport is not None):
                _via_stamp(req, h, received, 0 if rport is None else rport, &st)
                stamped = i
                total += st.delta
            total += h.ve - h.ns + 2
            top_via = False
        elif h.key == K_TO or h.key == K_FROM or h.key == K_CALL_ID or h.key == K_CSEQ:
            total += h.ve - h.ns + 2
            if h.key == K_TO and add_tag:
                total += PyBytes_GET_SIZE(tag_b)
    total += PyBytes_GET_SIZE(extra_b) + PyBytes_GET_SIZE(tail) + blen
    out = PyBytes_FromStringAndSize(NULL, total)
    w = PyBytes_AS_STRING(out)
    w = _put(w, b"SIP/2.0 ", 8)
    w[0] = <char>(48 + status // 100)
    w[1] = <char>(48 + status // 10 % 10)
    w[2] = <char>(48 + status % 10)
    w[3] = 32
    w = _put(w + 4, PyBytes_AS_STRING(reason_b), PyBytes_GET_SIZE(reason_b))
    w = _put(w, b"\r\n", 2)
    for i in range(req._n):
        h = &req._hdrs[i]
        if h.key == K_VIA:
            if i == stamped:
                w = _put_stamped(w, p, h.ns, h.ve, &st)
            else:
                w = _put(w, p + h.ns, h.ve - h.ns)
            w = _put(w, b"\r\n", 2)
        elif h.key == K_TO or h.key == K_FROM or h.key == K_CALL_ID or h.key == K_CSEQ:
            w = _put(w, p + h.ns, h.ve - h.ns)
            if h.key == K_TO and add_tag:
                w = _put(w, PyBytes_AS_STRING(tag_b), PyBytes_GET_SIZE(tag_b))
            w = _put(w, b"\r\n", 2)
    w = _put(w, PyBytes_AS_STRING(extra_b), PyBytes_GET_SIZE(extra_b))
    w = _put(w, PyBytes_AS_STRING(tail), PyBytes_GET_SIZE(tail))
    _put(w, PyBytes_AS_STRING(body), blen)
    return out

# ---------------------------------------------------------------- forwarding

cdef inline bint _plain_arg(object o, bint no_ws) noexcept:
    """o is an ASCII str that _shared.header_value accepts as is (the common case,
    checked without a Python call): not starting with SP/HT, no CR or LF, with
    ``no_ws`` no SP/HT at all. False sends the caller to the shared checks."""
    cdef const char* t
    cdef Py_ssize_t n, k
    cdef char c
    if type(o) is not str or not PyUnicode_IS_ASCII(o):
        return False
    t = PyUnicode_AsUTF8AndSize(o, &n)
    if n == 0 or t[0] == 32 or t[0] == 9:
        return False
    for k in range(n):
        c = t[k]
        if c == 13 or c == 10 or (no_ws and (c == 32 or c == 9)):
            return False
    return True

cdef inline const char* _txt(object o, Py_ssize_t* n) except NULL:
    """The octets of a checked value: bytes, or an ASCII str (its own buffer)."""
    if type(o) is bytes:
        n[0] = PyBytes_GET_SIZE(o)
        return PyBytes_AS_STRING(o)
    return PyUnicode_AsUTF8AndSize(o, n)

cdef bint _plain_ip(object o) noexcept:
    """o is an ASCII str that _shared.is_ip_address accepts: the same libc
    inet_pton socket.inet_pton calls (no NUL, which Python refuses). False
    sends the caller to the shared checks, which decide."""
    cdef const char* t
    cdef Py_ssize_t n
    cdef unsigned char addr[16]
    if type(o) is not str or not PyUnicode_IS_ASCII(o):
        return False
    t = PyUnicode_AsUTF8AndSize(o, &n)
    if n == 0 or n > 64 or memchr(t, 0, n) != NULL:
        return False
    return inet_pton(AF_INET6 if memchr(t, 58, n) != NULL else AF_INET, t, addr) == 1

def forward_request(SipMessage msg, uri, via, *, record_route, routes, max_forwards,
                    received=None, rport=None):
    cdef Py_ssize_t total, n, blen, k, nd_mf, nd_cl
    cdef int i
    cdef Hdr* h
    cdef const uchar* p = msg._p
    cdef const char* t
    cdef bint fast, top_via = True
    cdef Stamp st
    cdef int stamped = -1
    cdef bytes out
    cdef char* w
    cdef char mf_txt[20]
    cdef char cl_txt[20]
    fast = (msg._is_request and _plain_arg(uri, True) and _plain_arg(via, False)
            and (record_route is None or _plain_arg(record_route, False))
            and (type(routes) is list or type(routes) is tuple)
            and type(max_forwards) is int and 0 <= max_forwards <= 255
            and (received is None or _plain_ip(received))
            and (rport is None or (type(rport) is int and 1 <= rport <= 65535)))
    if fast:
        for r in routes:
            if not _plain_arg(r, False):
                fast = False
                break
    if not fast:  # anything unusual: the reference's checks (they raise, or encode)
        uri, via, record_route, routes = _shared.check_forward_args(
            msg._is_request, uri, via, record_route, routes, max_forwards, received, rport)
    blen = msg._body_end - msg._body_start
    nd_mf = _fmt_uint(mf_txt, <unsigned long long>(<int>max_forwards))
    nd_cl = _fmt_uint(cl_txt, <unsigned long long>blen)
    # size first, then one allocation and memcpy of every piece
    _txt(uri, &n)
    total = (msg._a1 - msg._a0) + 1 + n + 10
    _txt(via, &n)
    total += 5 + n + 2
    if record_route is not None:
        _txt(record_route, &n)
        total += 14 + n + 2
    for r in routes:
        _txt(r, &n)
        total += 7 + n + 2
    total += 14 + nd_mf + 2
    for i in range(msg._n):
        h = &msg._hdrs[i]
        if h.key == K_ROUTE or h.key == K_MAX_FORWARDS or h.key == K_CONTENT_LENGTH:
            continue
        if h.key == K_VIA and top_via:
            top_via = False
            if received is not None or rport is not None:
                _via_stamp(msg, h, received, 0 if rport is None else rport, &st)
                stamped = i
                total += st.delta
        total += h.ve - h.ns + 2
    total += 16 + nd_cl + 4 + blen
    out = PyBytes_FromStringAndSize(NULL, total)
    w = PyBytes_AS_STRING(out)
    w = _put(w, p + msg._a0, msg._a1 - msg._a0)
    w[0] = 32
    t = _txt(uri, &n)
    w = _put(w + 1, t, n)
    w = _put(w, b" SIP/2.0\r\nVia: ", 15)
    t = _txt(via, &n)
    w = _put(w, t, n)
    w = _put(w, b"\r\n", 2)
    if record_route is not None:
        w = _put(w, b"Record-Route: ", 14)
        t = _txt(record_route, &n)
        w = _put(w, t, n)
        w = _put(w, b"\r\n", 2)
    for r in routes:
        w = _put(w, b"Route: ", 7)
        t = _txt(r, &n)
        w = _put(w, t, n)
        w = _put(w, b"\r\n", 2)
    w = _put(w, b"Max-Forwards: ", 14)
    w = _put(w, mf_txt, nd_mf)
    w = _put(w, b"\r\n", 2)
    for i in range(msg._n):
        h = &msg._hdrs[i]
        if h.key == K_ROUTE or h.key == K_MAX_FORWARDS or h.key == K_CONTENT_LENGTH:
            continue
        if i == stamped:
            w = _put_stamped(w, p, h.ns, h.ve, &st)
        else:
            w = _put(w, p + h.ns, h.ve - h.ns)
        w = _put(w, b"\r\n", 2)
    w = _put(w, b"Content-Length: ", 16)
    w = _put(w, cl_txt, nd_cl)
    w = _put(w, b"\r\n\r\n", 4)
    _put(w, p + msg._body_start, blen)
    return out

def strip_top_via(SipMessage msg):
    cdef Py_ssize_t total, blen, rest = 0, nd_cl
    cdef int i, iv = -1
    cdef Hdr* h
    cdef const uchar* p = msg._p
    cdef bytes out
    cdef char* w
    cdef char cl_txt[20]
    if msg._is_request:
        raise ValueError("strip_top_via needs a response, not a request")
    for i in range(msg._n):
        if msg._hdrs[i].key == K_VIA:
            iv = i
            break
    if iv < 0:
        return None
    # the rest of the first Via line after its first element's comma, LWS skipped
    h = &msg._hdrs[iv]
    rest = h.vs + _first_elem_end(p + h.vs, h.ve - h.vs) + 1
    while rest < h.ve and (p[rest] == 32 or p[rest] == 9 or p[rest] == 13 or p[rest] == 10):
        rest += 1
    blen = msg._body_end - msg._body_start
    nd_cl = _fmt_uint(cl_txt, <unsigned long long>blen)
    total = 12 + (msg._b1 - msg._b0) + 2
    for i in range(msg._n):
        h = &msg._hdrs[i]
        if h.key == K_CONTENT_LENGTH:
            continue
        if i == iv:
            if rest < h.ve:
                total += (h.ne - h.ns) + 2 + (h.ve - rest) + 2
        else:
            total += h.ve - h.ns + 2
    total += 16 + nd_cl + 4 + blen
    out = PyBytes_FromStringAndSize(NULL, total)
    w = PyBytes_AS_STRING(out)
    w = _put(w, b"SIP/2.0 ", 8)
    w[0] = <char>(48 + msg._status // 100)
    w[1] = <char>(48 + msg._status // 10 % 10)
    w[2] = <char>(48 + msg._status % 10)
    w[3] = 32
    w = _put(w + 4, p + msg._b0, msg._b1 - msg._b0)
    w = _put(w, b"\r\n", 2)
    for i in range(msg._n):
        h = &msg._hdrs[i]
        if h.key == K_CONTENT_LENGTH:
            continue
        if i == iv:
            if rest < h.ve:
                w = _put(w, p + h.ns, h.ne - h.ns)
                w = _put(w, b": ", 2)
                w = _put(w, p + rest, h.ve - rest)
                w = _put(w, b"\r\n", 2)
        else:
            w = _put(w, p + h.ns, h.ve - h.ns)
            w = _put(w, b"\r\n", 2)
    w = _put(w, b"Content-Length: ", 16)
    w = _put(w, cl_txt, nd_cl)
    w = _put(w, b"\r\n\r\n", 4)
    _put(w, p + msg._body_start, blen)
    return out

# ---------------------------------------------------------------- streams

cdef Py_ssize_t _find_header_end(const uchar* d, Py_ssize_t start, Py_ssize_t end, Py_ssize_t resume,
                                 Py_ssize_t* where) noexcept:
    """See the reference: returns the end of the header block or -1; where
    gets the LF before the empty line, or the offset to resume from."""
    cdef Py_ssize_t i = resume if resume > start else start
    cdef const uchar* f
    while i < end:
        f = <const uchar*>memchr(d + i, 10, end - i)
        if f == NULL:
            break
        i = f - d
        if i + 1 >= end:
            where[0] = i
            return -1
        if d[i + 1] == 10:
            where[0] = i
            return i + 2
        if d[i + 1] == 13:
            if i + 2 >= end:
                where[0] = i
                return -1
            if d[i + 2] == 10:
                where[0] = i
                return i + 3
        i += 1
    where[0] = end
    return -1

@cython.final
cdef class SipStreamParser:
    """RFC 3261 section 18.3 framing on a byte stream (see the stub)."""

    cdef bytes _buf
    cdef Py_ssize_t _resume, _need, _pings
    cdef object _error
    cdef Py_ssize_t _max_header
    cdef long long _max_body
    cdef int _max_headers

    def __init__(self, max_header_bytes=DEFAULT_MAX_HEADER_BYTES,
                 max_body_bytes=DEFAULT_MAX_BODY_BYTES, max_headers=DEFAULT_MAX_HEADERS):
        self._buf = b""
        self._resume = 0
        self._need = 0
        self._error = None
        self._pings = 0
        if (type(max_header_bytes) is int and type(max_headers) is int and type(max_body_bytes) is int
                and 0 <= max_header_bytes <= _BYTES_LIMIT and 0 <= max_headers <= _HEADERS_LIMIT
                and 0 <= max_body_bytes <= _BYTES_LIMIT):
            self._max_header, self._max_headers, self._max_body = max_header_bytes, max_headers, max_body_bytes
        else:  # errors and clamping exactly as the reference
            self._max_header, self._max_headers, self._max_body = _shared.limits(
                max_header_bytes, max_headers, max_body_bytes)

    @property
    def buffered(self):
        return PyBytes_GET_SIZE(self._buf)

    @property
    def ping_count(self):
        return self._pings

    def feed(self, data):
        cdef bytes buf
        cdef list out = []
        cdef Py_ssize_t pos = 0, n, hend, where, total, k
        cdef const uchar* d
        cdef SipMessage msg
        cdef uchar c
        if self._error is not None:
            raise self._error
        if PyBytes_GET_SIZE(self._buf):
            buf = self._buf + _as_bytes(data)
        else:
            buf = _as_bytes(data)
        n = PyBytes_GET_SIZE(buf)
        if self._need > n:
            self._buf = buf
            return out
        d = <const uchar*>PyBytes_AS_STRING(buf)
        try:
            while pos < n:
                c = d[pos]
                if c == 13 or c == 10:
                    if n - pos >= 4 and d[pos] == 13 and d[pos + 1] == 10 and d[pos + 2] == 13 and d[pos + 3] == 10:
                        self._pings += 1
                        pos += 4
                    elif n - pos < 4 and _crlf_prefix(d + pos, n - pos):
                        break
                    else:
                        pos += 1
                    self._resume = pos
                    continue
                hend = _find_header_end(d, pos, n, self._resume, &where)
                if hend < 0:
                    if n - pos > self._max_header:
                        raise _err(f"header block exceeds {self._max_header} bytes", 513)
                    self._resume = where
                    break
                if hend - pos > self._max_header:
                    raise _err(f"header block exceeds {self._max_header} bytes", 513)
                try:
                    msg = _frame(buf, pos, hend, True, self._max_header, self._max_headers, self._max_body)
                except SipParseError:
                    # offsets counted from the message's first octet (see the reference)
                    _frame(buf[pos:hend], 0, hend - pos, True, self._max_header, self._max_headers,
                           self._max_body)
                    raise
                total = hend + (msg._cl if msg._cl > 0 else 0)
                if total > n:
                    self._need = total - pos
                    self._resume = where
                    break
                self._need = 0
                msg._body_end = total
                msg._end = total
                out.append(msg)
                pos = total
                self._resume = pos
        except SipParseError as e:
            self._error = e
            self._buf = b""
            raise
        self._buf = buf[pos:]
        self._resume -= pos
        return out

cdef inline bint _crlf_prefix(const uchar* p, Py_ssize_t n) noexcept:
    """p[:n] (n < 4) is a prefix of CRLFCRLF."""
    cdef const char* ping = b"\r\n\r\n"
    cdef Py_ssize_t k
    for k in range(n):
        if p[k] != <uchar>ping[k]:
            return False
    return True
