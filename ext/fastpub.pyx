# The state agent's stateless fast path for PUBLISH, compiled twin of
# simplefast/_ref/fastpub.py.
#
# The reference module is the specification (its docstring has the theory of
# operation and every condition of the cases taken); the contract lives in
# simplefast/_ext/fastpub.pyi. Same answers, same row writes, same counters.
# What this twin changes is the cost of the glue between the calls: the
# prefix test, the URI and header checks, the resource name, the live
# publications and the row run without the interpreter's dispatch; the codec
# (simplefast._ext.sipmsg) parses, the package's check reads the body, and
# the presentity store (simplefast/presence/state.py) reads and writes the row.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memcmp, memcpy

import heapq

from simplefast._ext.fastreg import to_tag as _to_tag
from simplefast._ext.sipmsg import build_response as _build_response
from simplefast._ext.sipmsg import parse_message as _parse_message
from simplefast._ext.sipmsg import parse_uri as _parse_uri
from simplefast._ext.sipmsg import validate_request as _validate_request
from simplefast._sipshared import source_params as _source_params
from simplefast.errors import ProtocolError, SimplefastError, SipParseError
from simplefast.presence.state import CAS_RETRIES as _CAS_RETRIES
from simplefast.presence.state import PubRecord
from simplefast.presence.state import mark_prefix as _mark_prefix

cdef tuple _SIP_SCHEMES = ("sip", "sips")
cdef object _heappush = heapq.heappush


cdef extern from "Python.h":
    int PyFloat_Pack8(double x, char* p, int le) except -1

DEF M_TUPLE = 40   # "(": marshal's tuple, 4-byte little-endian count
DEF M_LIST = 91    # "["
DEF M_INT = 105    # "i": 4-byte little-endian int
DEF M_BYTES = 115  # "s": 4-byte length, octets
DEF M_STR = 117    # "u": 4-byte length, UTF-8
DEF M_FLOAT = 103  # "g": 8-byte little-endian IEEE double


cdef inline char* _u32(char* p, unsigned int v) noexcept:
    p[0] = <char>(v & 0xFF)
    p[1] = <char>((v >> 8) & 0xFF)
    p[2] = <char>((v >> 16) & 0xFF)
    p[3] = <char>((v >> 24) & 0xFF)
    return p + 4


cdef inline char* _blob(char* p, char kind, bytes b) noexcept:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    p[0] = kind
    p = _u32(p + 1, <unsigned int>n)
    memcpy(p, PyBytes_AS_STRING(b), n)
    return p + n


cdef bytes _first_row(str etag, str event, str ctype, bytes body, double now, double end):
    """A presentity's first row as simplefast/presence/state.py ``encode`` gives it to
    ``decode``: marshal's format of ``(1, b"", [(etag, event, ctype, body, now, end)])``,
    written directly (no reference flags: marshal.loads reads it as the same values)."""
    cdef bytes e = etag.encode("utf-8", "surrogatepass")
    cdef bytes v = event.encode("utf-8", "surrogatepass")
    cdef bytes c = ctype.encode("utf-8", "surrogatepass")
    cdef Py_ssize_t n = (5 + 5 + 5 + 5 + 5 + 5 + PyBytes_GET_SIZE(e) + 5 + PyBytes_GET_SIZE(v)
                         + 5 + PyBytes_GET_SIZE(c) + 5 + PyBytes_GET_SIZE(body) + 9 + 9)
    if n > 0x7FFFFFFF:
        raise OverflowError("publication too large for a row")
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n)
    cdef char* p = PyBytes_AS_STRING(out)
    p[0] = M_TUPLE
    p = _u32(p + 1, 3)
    p[0] = M_INT
    p = _u32(p + 1, 1)         # version 1
    p[0] = M_BYTES
    p = _u32(p + 1, 0)         # no document yet
    p[0] = M_LIST
    p = _u32(p + 1, 1)
    p[0] = M_TUPLE
    p = _u32(p + 1, 6)
    p = _blob(p, M_STR, e)
    p = _blob(p, M_STR, v)
    p = _blob(p, M_STR, c)
    p = _blob(p, M_BYTES, body)
    p[0] = M_FLOAT
    PyFloat_Pack8(now, p + 1, 1)
    p[9] = M_FLOAT
    PyFloat_Pack8(end, p + 10, 1)
    return out


cdef inline bint _clean(str v):
    return v.isascii() and "\r" not in v and "\n" not in v


cdef class FastPublisher:
    cdef readonly object config
    cdef readonly object publications
    cdef readonly str server
    cdef readonly tuple supported
    cdef readonly bytes tag_key
    cdef str _allow_events
    cdef public long long answered
    cdef public long long declined
    cdef public object changed
    cdef object _local
    cdef object _marks
    cdef Py_ssize_t _key_max  # of the marks table, less the longest worker index
    cdef list _digits

    def __init__(self, config, publications, *, server, supported, tag_key, allow_events):
        if type(server) is not str or not _clean(server):
            raise ValueError("server must be ASCII without CR or LF")
        self.config = config
        self.publications = publications
        self.server = server
        self.supported = tuple(supported)
        self.tag_key = bytes(tag_key)
        self.allow_events = allow_events
        self.answered = 0
        self.declined = 0
        self.changed = None
        self._marks = None

    def watch_table(self, local, marks, workers):
        self._local = local
        self._marks = marks
        if marks is None:  # publications.watched decides, as before
            return
        self._key_max = marks.key_max - len(str(workers))
        self._digits = [str(i).encode() for i in range(workers)]

    cdef bint _watched(self, str resource, bytes base) except -1:
        """``base``: the resource's marks key prefix (``mark_prefix``), made once per request."""
        cdef object marks = self._marks
        if marks is None:
            return bool(self.publications.watched(resource))
        if ("presence", resource) in self._local:
            return True
        if PyBytes_GET_SIZE(base) > self._key_max:
            return True
        for d in self._digits:
            if marks.get(base + <bytes>d) is not None:
                return True
        return False

    @property
    def allow_events(self):
        return self._allow_events

    @allow_events.setter
    def allow_events(self, value):
        if type(value) is not str or not _clean(value):
            raise ValueError("allow_events must be ASCII without CR or LF")
        self._allow_events = value

    def publish(self, data, tuple peer not None, now):
        if type(now) is not float and type(now) is not int:
            raise TypeError(f"now must be a number, not {type(now).__name__}")
        cdef double t = now
        self.changed = None
        if not isinstance(data, bytes):
            data = bytes(data)
        if PyBytes_GET_SIZE(data) < 8 or memcmp(PyBytes_AS_STRING(data), b"PUBLISH ", 8) != 0:
            return None
        try:
            msg = _parse_message(data)
        except SipParseError:
            return None
        try:
            out = self._apply(msg, peer, t)
        except SipParseError:
            out = None
        if out is None:
            self.declined += 1
            return msg
        self.answered += 1
        return out

    cdef object _apply(self, msg, tuple peer, double now):
        cdef Py_ssize_t n = len(peer)
        cdef long long expires
        cdef double end, first
        cdef int attempt
        if (n != 2 and n != 3) or _validate_request(msg, supported=self.supported) is not None:
            return None
        if msg.to_tag is not None or msg.get("SIP-If-Match") is not None:
            return None
        ruri = _parse_uri(msg.uri)
        scheme = ruri.scheme
        if scheme not in _SIP_SCHEMES or ruri.host is None:
            return None
        host = ruri.host.lower()
        user = ruri.user
        if host not in self.config.domains or user is None or "%" in user:
            return None
        furi = _parse_uri(msg.from_addr().uri)
        if furi.scheme not in _SIP_SCHEMES or furi.host is None:
            return None
        pubs = self.publications
        package = pubs.packages.get("presence")
        event = msg.event
        if package is None or event is None or event.strip().lower() != "presence":
            return None
        check = package.check
        if check is None:
            return None
        raw = msg.expires
        expires = package.default_expires if raw is None else raw
        cfg = pubs.config
        if expires == 0 or expires < cfg.min_expires:
            return None
        if expires > cfg.max_expires:
            expires = cfg.max_expires
        ctype = (msg.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        body = bytes(msg.body)
        if PyBytes_GET_SIZE(body) == 0 or ctype not in package.content_types:
            return None
        resource = f"{scheme}:{user}@{host}"
        base = _mark_prefix("presence", resource)
        if pubs.watched is None or self._watched(resource, base):
            return None
        scan = package.scan
        if scan is None or not scan(body):  # not sure: the full check decides
            try:
                check(body)
            except ProtocolError:
                return None
        etag = _to_tag(self.tag_key, msg.via_branch or "", msg.call_id or "", msg.cseq_num or 0,
                       msg.from_tag or "")
        store = pubs.store
        put_encoded = getattr(store, "put_encoded", None)
        end = now + expires
        for attempt in range(_CAS_RETRIES):
            state = store.load(resource)
            live = []
            again = False
            for p in state.pubs:
                if p.etag == etag:
                    again = True
                if p.expires_at > now:
                    live.append(p)
            retired = state.retired
            if retired:
                retired = tuple([r for r in retired if r[1] > now])
                for r in retired:
                    if r[0] == etag:
                        again = True
            if again:
                break  # the request again (a retransmission): answered as it was
            first = end
            for p in live:
                if p.expires_at < first:
                    first = p.expires_at
            try:
                if state.seq == 0 and put_encoded is not None:  # the presentity's first row
                    written = put_encoded(resource, 0, _first_row(etag, package.name, ctype, body, now, end))
                else:
                    live.append(PubRecord(etag, package.name, ctype, body, now, end))
                    new = state._replace(version=state.version + 1, pubs=tuple(live), document=b"",
                                         seq=state.seq + 1, retired=retired)
                    written = store.replace(resource, state.seq, new)
            except SimplefastError:  # StateFullError: the general path answers 413 or 500
                return None
            if written:
                _heappush(pubs._expiry, (first, resource))
                if self._watched(resource, base):  # someone subscribed meanwhile: the caller notifies
                    self.changed = resource
                break
            pubs.conflicts += 1
        else:
            return None
        headers = (f"SIP-ETag: {etag}\r\nExpires: {expires}\r\nAllow-Events: {self._allow_events}\r\n"
                   f"Server: {self.server}\r\n").encode("ascii")
        return _build_response(msg, 200, "OK", to_tag=etag, extra_headers=headers,
                               **_source_params(msg, peer))
