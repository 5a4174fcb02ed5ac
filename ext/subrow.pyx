# The compact row of a subscription (layout 2), compiled twin of
# simplefast/_ref/subrow.py.
#
# The reference module is the specification: its docstring has the layout,
# byte by byte, and the errors; the contract is simplefast/_ext/subrow.pyi.
# The two twins write the same bytes and read the same fields, and raise
# ValueError on the same inputs. What this twin changes is the cost: the
# header of a row is written into its bytes object directly (once per NOTIFY,
# the hot call), and the static part (once per subscription) is built in a
# C buffer; addresses are packed by the C library's inet_pton / inet_ntop,
# which Python's socket module calls too.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, strcmp


cdef extern from "<arpa/inet.h>" nogil:
    int AF_INET
    int AF_INET6
    int inet_pton(int af, const char* src, void* dst)
    const char* inet_ntop(int af, const void* src, char* dst, uint32_t size)


cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)
    void* PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)


LAYOUT = 2
HEAD_SIZE = 49
MAX_ROW = 65535
LITERAL = 255

STATES = ("active", "pending", "terminated")
EVENTS = ("presence", "presence.winfo")
CONTENT_TYPES = ("application/pidf+xml", "application/watcherinfo+xml", "multipart/related")
POLICIES = ("allow", "confirm", "block", "polite-block")

DEF _HEAD = 49
DEF _MAX = 65535
DEF _F_RESOURCE = 1
DEF _F_WATCHER = 2
DEF _F_EVENT_ID = 4
DEF _P_PAIR = 0
DEF _P_LISTENER = 1
DEF _P_CLIENT = 2
DEF _P_TCP = 3
DEF _P_TLS = 4
DEF _A_V4 = 0
DEF _A_V6 = 1
DEF _A_TEXT = 2

cdef tuple _STATES = STATES
cdef tuple _EVENTS = EVENTS
cdef tuple _CTYPES = CONTENT_TYPES
cdef tuple _POLICIES = POLICIES
cdef str _TCP = "tcp"
cdef str _TLS = "tls"
cdef str _CLIENT = "c"

# the static part is built here (one row at a time: no GIL is released in between)
cdef unsigned char _buf[_MAX + 16]
cdef Py_ssize_t _n = 0


cdef inline int _room(Py_ssize_t k) except -1:
    if _n + k + _HEAD > _MAX:
        raise ValueError(f"subscription row of more than {_MAX} bytes")
    return 0


cdef inline int _put(const void* p, Py_ssize_t k) except -1:
    global _n
    _room(k)
    memcpy(&_buf[_n], p, k)
    _n += k
    return 0


cdef inline int _byte(uint8_t b) except -1:
    global _n
    _room(1)
    _buf[_n] = b
    _n += 1
    return 0


cdef int _varint(object value) except -1:
    if value < 0 or value >= (1 << 64):
        raise ValueError(f"subscription row: {value} does not fit a varint")
    cdef uint64_t n = value
    while n >= 0x80:
        _byte(<uint8_t>((n & 0x7F) | 0x80))
        n >>= 7
    _byte(<uint8_t>n)
    return 0


cdef int _string(str s) except -1:
    cdef bytes b
    if PyUnicode_IS_ASCII(s):
        _varint(PyUnicode_GET_LENGTH(s))
        _put(PyUnicode_DATA(s), PyUnicode_GET_LENGTH(s))
    else:
        b = s.encode("utf-8", "surrogateescape")
        _varint(PyBytes_GET_SIZE(b))
        _put(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))
    return 0


cdef inline uint8_t _code(tuple names, object value):
    cdef Py_ssize_t i
    for i in range(len(names)):
        if names[i] == value:
            return <uint8_t>i
    return 255


cdef int _address(str host, unsigned char* packed) except -1:
    """_A_V4 / _A_V6 with the bytes in ``packed`` when ``host`` is the canonical text of
    an address, else _A_TEXT."""
    cdef bytes b
    cdef char text[64]
    if not PyUnicode_IS_ASCII(host) or PyUnicode_GET_LENGTH(host) >= 64 or "\0" in host:
        return _A_TEXT
    b = host.encode("ascii")
    if inet_pton(AF_INET, PyBytes_AS_STRING(b), packed) == 1:
        if inet_ntop(AF_INET, packed, text, 64) != NULL and strcmp(text, PyBytes_AS_STRING(b)) == 0:
            return _A_V4
        return _A_TEXT
    if inet_pton(AF_INET6, PyBytes_AS_STRING(b), packed) == 1:
        if inet_ntop(AF_INET6, packed, text, 64) != NULL and strcmp(text, PyBytes_AS_STRING(b)) == 0:
            return _A_V6
    return _A_TEXT


def static(sub):
    """The static part of the row of ``sub`` (a ``Subscription``)."""
    global _n
    _n = 0
    cdef str resource = sub.resource, watcher = sub.watcher, local_uri = sub.local_uri
    cdef str remote_uri = sub.remote_uri, event = sub.event, ctype = sub.content_type
    cdef str policy = sub.policy
    cdef object event_id = sub.event_id
    cdef uint8_t flags = ((_F_RESOURCE if resource != local_uri else 0)
                          | (_F_WATCHER if watcher != remote_uri else 0)
                          | (_F_EVENT_ID if event_id is not None else 0))
    cdef uint8_t ev = _code(_EVENTS, event), ct = _code(_CTYPES, ctype), po = _code(_POLICIES, policy)
    _byte(flags)
    _byte(ev)
    _byte(ct)
    _byte(po)
    cdef tuple peer = tuple(sub.peer)
    cdef Py_ssize_t n = len(peer)
    cdef int form = -1, addr
    cdef object extra = None
    cdef unsigned char packed[16]
    cdef uint16_t port
    if n >= 2 and type(peer[0]) is str and type(peer[1]) is int and 0 <= peer[1] <= 0xFFFF:
        if n == 2:
            form = _P_PAIR
        elif n == 3 and type(peer[2]) is int:
            form, extra = _P_LISTENER, peer[2]
        elif n == 3 and peer[2] == _CLIENT:
            form = _P_CLIENT
        elif n == 4 and (peer[2] == _TCP or peer[2] == _TLS) and type(peer[3]) is int:
            form, extra = (_P_TCP if peer[2] == _TCP else _P_TLS), peer[3]
    if form < 0:
        raise ValueError(f"subscription row: a peer of unknown shape {peer!r}")
    if extra is not None and extra < 0:
        raise ValueError("subscription row: a negative listener or connection id")
    addr = _address(peer[0], packed)
    _byte(<uint8_t>(form | addr << 4))
    port = <uint16_t>peer[1]
    _byte(port & 0xFF)
    _byte(port >> 8)
    if addr == _A_TEXT:
        _string(peer[0])
    else:
        _put(packed, 4 if addr == _A_V4 else 16)
    if extra is not None:
        _varint(extra)
    _string(sub.call_id)
    _string(sub.remote_tag)
    _string(local_uri)
    _string(remote_uri)
    _string(sub.target)
    if flags & _F_RESOURCE:
        _string(resource)
    if flags & _F_WATCHER:
        _string(watcher)
    if event_id is not None:
        _string(event_id)
    if ev == 255:
        _string(event)
    if ct == 255:
        _string(ctype)
    if po == 255:
        _string(policy)
    routes = sub.routes
    _varint(len(routes))
    for r in routes:
        _string(r)
    return PyBytes_FromStringAndSize(<char*>_buf, _n)


def encode(sub):
    """The row of ``sub``: the header from its fields now and its static part, made and
    kept in ``sub.row_static`` when that is empty."""
    cdef bytes st = sub.row_static
    if not st:
        st = static(sub)
        sub.row_static = st
    cdef object state = sub.state
    cdef int code = -1
    cdef Py_ssize_t i
    for i in range(3):
        if _STATES[i] == state:
            code = <int>i
            break
    if code < 0:
        raise ValueError(f"subscription row: unknown state {state!r}")
    owner, cseq, rcseq, version = sub.owner, sub.cseq, sub.remote_cseq, sub.version
    if not (0 <= owner <= 0xFFFF and 0 <= cseq <= 0xFFFFFFFF and 0 <= rcseq <= 0xFFFFFFFF
            and -(1 << 63) <= version < (1 << 63)):
        raise ValueError("subscription row: a number out of range")
    rec = sub.rec
    if not -1 <= rec < 0xFFFFFFFF:
        raise ValueError("subscription row: a number out of range")
    cdef double expires_at = sub.expires_at, subscribed_at = sub.subscribed_at, last_sent = sub.last_sent
    cdef uint32_t rec32 = <uint32_t>(rec & 0xFFFFFFFF)
    cdef unsigned char held = 1 if sub.held else 0
    cdef Py_ssize_t k = PyBytes_GET_SIZE(st)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, _HEAD + k)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    cdef uint16_t o16 = <uint16_t>owner
    cdef uint32_t c32 = <uint32_t>cseq, r32 = <uint32_t>rcseq
    cdef int64_t v64 = <int64_t>version
    # little-endian fields (x86-64 and aarch64 Linux are little-endian; _check_endian)
    p[0] = 2
    memcpy(p + 1, &o16, 2)
    p[3] = <unsigned char>code
    memcpy(p + 4, &c32, 4)
    memcpy(p + 8, &r32, 4)
    memcpy(p + 12, &v64, 8)
    memcpy(p + 20, &expires_at, 8)
    memcpy(p + 28, &subscribed_at, 8)
    memcpy(p + 36, &last_sent, 8)
    memcpy(p + 44, &rec32, 4)
    p[48] = held
    memcpy(p + _HEAD, PyBytes_AS_STRING(st), k)
    return out


cdef class _Reader:
    cdef const unsigned char* p
    cdef Py_ssize_t pos, end

    cdef inline const unsigned char* take(self, Py_ssize_t n) except NULL:
        if n < 0 or n > self.end - self.pos:
            raise ValueError("subscription row: truncated")
        cdef const unsigned char* q = self.p + self.pos
        self.pos += n
        return q

    cdef inline uint64_t varint(self) except? 0xFFFFFFFFFFFFFFFF:
        cdef uint64_t n = 0, b
        cdef int shift = 0
        while True:
            if shift > 63:
                raise ValueError("subscription row: varint too long")
            b = self.take(1)[0]
            if shift == 63 and (b & 0x7F) > 1:  # 2**64 or more: no row holds one
                raise ValueError("subscription row: varint too long")
            n |= (b & 0x7F) << shift
            if b < 0x80:
                return n
            shift += 7

    cdef inline str string(self):
        cdef uint64_t n = self.varint()
        if n > <uint64_t>(self.end - self.pos):
            raise ValueError("subscription row: truncated")
        return PyUnicode_DecodeUTF8(<const char*>self.take(<Py_ssize_t>n), <Py_ssize_t>n, "surrogateescape")


cdef inline object _name(tuple names, uint8_t code):
    if code == 255:
        return None
    if code >= len(names):
        raise ValueError(f"subscription row: unknown code {code}")
    return names[code]


cdef const unsigned char* _header(object value) except NULL:
    """The octets of a row whose header is a layout 2 one (the checks of ``decode``, in
    its order)."""
    if type(value) is not bytes:
        raise TypeError(f"value must be bytes, not {type(value).__name__}")
    if PyBytes_GET_SIZE(value) < _HEAD:
        raise ValueError("subscription row: truncated")
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(value)
    if p[0] != 2:
        raise ValueError(f"subscription row layout {p[0]}, expected 2")
    if p[3] >= 3:
        raise ValueError(f"subscription row: unknown state {p[3]}")
    if p[48] > 1:
        raise ValueError(f"subscription row: held {p[48]}")
    return p


def decode(value):
    """The fields of a layout 2 row (every ``Subscription`` field but the key and the
    ones not kept: ``row_static`` is the static part)."""
    cdef const unsigned char* p = _header(value)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(value)
    cdef uint16_t owner
    cdef uint32_t cseq, rcseq
    cdef int64_t version
    cdef double expires_at, subscribed_at, last_sent
    cdef uint32_t rec
    memcpy(&owner, p + 1, 2)
    memcpy(&cseq, p + 4, 4)
    memcpy(&rcseq, p + 8, 4)
    memcpy(&version, p + 12, 8)
    memcpy(&expires_at, p + 20, 8)
    memcpy(&subscribed_at, p + 28, 8)
    memcpy(&last_sent, p + 36, 8)
    memcpy(&rec, p + 44, 4)
    cdef _Reader r = _Reader.__new__(_Reader)
    r.p = p
    r.pos = _HEAD
    r.end = size
    cdef const unsigned char* h = r.take(5)
    cdef uint8_t flags = h[0], pform = h[4]
    if flags & ~7:
        raise ValueError(f"subscription row: unknown flags {flags:#x}")
    cdef list names = [_name(_EVENTS, h[1]), _name(_CTYPES, h[2]), _name(_POLICIES, h[3])]
    cdef int form = pform & 15, addr = pform >> 4
    if form > _P_TLS or addr > _A_TEXT:
        raise ValueError(f"subscription row: unknown peer form {pform:#x}")
    cdef const unsigned char* q = r.take(2)
    cdef int port = q[0] | q[1] << 8
    cdef char text[64]
    cdef str host
    if addr == _A_TEXT:
        host = r.string()
    elif addr == _A_V4:
        inet_ntop(AF_INET, r.take(4), text, 64)
        host = text.decode("ascii")
    else:
        inet_ntop(AF_INET6, r.take(16), text, 64)
        host = text.decode("ascii")
    cdef tuple peer
    if form == _P_PAIR:
        peer = (host, port)
    elif form == _P_LISTENER:
        peer = (host, port, r.varint())
    elif form == _P_CLIENT:
        peer = (host, port, _CLIENT)
    else:
        peer = (host, port, _TCP if form == _P_TCP else _TLS, r.varint())
    call_id = r.string()
    remote_tag = r.string()
    local_uri = r.string()
    remote_uri = r.string()
    target = r.string()
    resource = r.string() if flags & _F_RESOURCE else local_uri
    watcher = r.string() if flags & _F_WATCHER else remote_uri
    event_id = r.string() if flags & _F_EVENT_ID else None
    cdef int i
    for i in range(3):
        if names[i] is None:
            names[i] = r.string()
    cdef uint64_t nroutes = r.varint()
    cdef list routes = []
    while nroutes:
        routes.append(r.string())
        nroutes -= 1
    if r.pos != size:
        raise ValueError("subscription row: bytes after the routes")
    return {
        "call_id": call_id, "remote_tag": remote_tag, "local_uri": local_uri, "remote_uri": remote_uri,
        "target": target, "routes": tuple(routes), "peer": peer, "event": names[0], "event_id": event_id,
        "resource": resource, "watcher": watcher, "content_type": names[1], "policy": names[2],
        "expires_at": expires_at, "subscribed_at": subscribed_at, "cseq": cseq, "remote_cseq": rcseq,
        "version": version, "state": _STATES[p[3]], "owner": owner, "row_static": value[_HEAD:],
        "last_sent": last_sent, "rec": -1 if rec == 0xFFFFFFFF else rec, "held": p[48] == 1,
    }


cdef struct _Span:
    const unsigned char* p
    Py_ssize_t n


cdef bytes _EVENT_B0 = b"presence"
cdef bytes _EVENT_B1 = b"presence.winfo"


cdef inline _Span _span(_Reader r) except *:
    cdef _Span s
    cdef uint64_t n = r.varint()
    if n > <uint64_t>(r.end - r.pos):
        raise ValueError("subscription row: truncated")
    s.n = <Py_ssize_t>n
    s.p = r.take(s.n)
    return s


cdef inline unsigned char* _cat(unsigned char* o, const void* p, Py_ssize_t n) noexcept:
    memcpy(o, p, n)
    return o + n


cdef inline unsigned char* _catb(unsigned char* o, bytes b) noexcept:
    return _cat(o, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))


# the constant text of notify_parts' header block, in order
cdef bytes _L_ROUTE = b"Route: "
cdef bytes _CRLF = b"\r\n"
cdef bytes _L_FROM = b"Max-Forwards: 70\r\nFrom: <"
cdef bytes _L_TAG = b">;tag="
cdef bytes _L_TO = b"\r\nTo: <"
cdef bytes _L_CALL_ID = b"\r\nCall-ID: "
cdef bytes _L_CONTACT = b"\r\nContact: "
cdef bytes _L_EVENT = b"\r\nEvent: "
cdef bytes _L_ID = b";id="
cdef Py_ssize_t _FIXED = (len(_L_FROM) + 2 * len(_L_TAG) + len(_L_TO) + len(_L_CALL_ID) + len(_L_CONTACT)
                          + len(_L_EVENT) + len(_CRLF))


def notify_parts(value, str key, bytes contact):
    """What a NOTIFY of the subscription of row ``value`` (layout 2) takes from it: its
    Request-URI (the target) and the header lines that stay the same for every NOTIFY
    of the dialog (see the reference twin for the lines)."""
    if not key.isascii():
        raise ValueError("notify_parts: the key must be ASCII")
    cdef const unsigned char* p = _header(value)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(value)
    cdef _Reader r = _Reader.__new__(_Reader)
    r.p = p
    r.pos = _HEAD
    r.end = size
    cdef const unsigned char* h = r.take(5)
    cdef uint8_t flags = h[0], ev = h[1], pform = h[4]
    if flags & ~7:
        raise ValueError(f"subscription row: unknown flags {flags:#x}")
    _name(_EVENTS, h[1])
    _name(_CTYPES, h[2])
    _name(_POLICIES, h[3])
    cdef int form = pform & 15, addr = pform >> 4
    if form > _P_TLS or addr > _A_TEXT:
        raise ValueError(f"subscription row: unknown peer form {pform:#x}")
    r.take(2)
    if addr == _A_TEXT:
        _span(r)
    else:
        r.take(4 if addr == _A_V4 else 16)
    if form == _P_LISTENER or form == _P_TCP or form == _P_TLS:
        r.varint()
    cdef _Span call_id = _span(r), remote_tag = _span(r), local_uri = _span(r), remote_uri = _span(r)
    cdef _Span target = _span(r), event_id, event
    event_id.n = -1
    event_id.p = NULL
    if flags & _F_RESOURCE:
        _span(r)
    if flags & _F_WATCHER:
        _span(r)
    if flags & _F_EVENT_ID:
        event_id = _span(r)
    if ev == 255:
        event = _span(r)
    else:
        b = _EVENT_B0 if ev == 0 else _EVENT_B1
        event.p = <const unsigned char*>PyBytes_AS_STRING(b)
        event.n = PyBytes_GET_SIZE(b)
    if h[2] == 255:
        _span(r)
    if h[3] == 255:
        _span(r)
    cdef uint64_t nroutes = r.varint(), i
    cdef Py_ssize_t routes_at = r.pos, routes_len = 0
    for i in range(nroutes):
        routes_len += _span(r).n + PyBytes_GET_SIZE(_L_ROUTE) + 2
    if r.pos != size:
        raise ValueError("subscription row: bytes after the routes")
    cdef bytes kb = key.encode("ascii")
    cdef Py_ssize_t kn = PyBytes_GET_SIZE(kb), cn = PyBytes_GET_SIZE(contact)
    cdef Py_ssize_t total = (routes_len + _FIXED + local_uri.n + kn + remote_uri.n + remote_tag.n + call_id.n
                             + cn + event.n)
    if event_id.n >= 0:
        total += PyBytes_GET_SIZE(_L_ID) + event_id.n
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    cdef unsigned char* o = <unsigned char*>PyBytes_AS_STRING(out)
    cdef _Span rs
    r.pos = routes_at
    for i in range(nroutes):
        rs = _span(r)
        o = _catb(o, _L_ROUTE)
        o = _cat(o, rs.p, rs.n)
        o = _catb(o, _CRLF)
    o = _catb(o, _L_FROM)
    o = _cat(o, local_uri.p, local_uri.n)
    o = _catb(o, _L_TAG)
    o = _cat(o, PyBytes_AS_STRING(kb), kn)
    o = _catb(o, _L_TO)
    o = _cat(o, remote_uri.p, remote_uri.n)
    o = _catb(o, _L_TAG)
    o = _cat(o, remote_tag.p, remote_tag.n)
    o = _catb(o, _L_CALL_ID)
    o = _cat(o, call_id.p, call_id.n)
    o = _catb(o, _L_CONTACT)
    o = _cat(o, PyBytes_AS_STRING(contact), cn)
    o = _catb(o, _L_EVENT)
    o = _cat(o, event.p, event.n)
    if event_id.n >= 0:
        o = _catb(o, _L_ID)
        o = _cat(o, event_id.p, event_id.n)
    o = _catb(o, _CRLF)
    if o != <unsigned char*>PyBytes_AS_STRING(out) + total:
        raise AssertionError("notify_parts: length mismatch")
    return PyBytes_FromStringAndSize(<const char*>target.p, target.n), out


def owner(value):
    """The owner of a row of layout 1 or 2 (both keep it at offset 1)."""
    if type(value) is not bytes:
        raise TypeError(f"value must be bytes, not {type(value).__name__}")
    if PyBytes_GET_SIZE(value) < 3:
        raise ValueError("subscription row: truncated")
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(value)
    return p[1] | p[2] << 8


cdef int _check_endian() except -1:
    cdef uint16_t one = 1
    if (<unsigned char*>&one)[0] != 1:
        raise ImportError("simplefast._ext.subrow writes little-endian rows and needs a little-endian CPU")
    return 0


_check_endian()
