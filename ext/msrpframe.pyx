# MSRP framing (RFC 4975 section 9), compiled twin of simplefast/_ref/msrpframe.py.
#
# The contract lives in simplefast/_ext/msrpframe.pyi; the reference module is
# the specification, and the readings the stub leaves open are its "Decisions"
# D1..D16 (cited below by number). Same messages, same error class and
# status_hint, for every input and every way of cutting it into reads.
#
# Theory of operation
# -------------------
# A message is parsed by a resumable step function (_Parser._step) over the
# octets of the message so far, d[0:n] (d = the message's first octet). It
# returns 1 when the message is complete (its length in _cur_len) and 0 when
# it needs more octets; it raises MsrpFramingError on a syntax error or a
# limit. Its state survives between calls, so no octet is searched twice
# (except for an overlap shorter than one end-line):
#
#   PH_START    start line not complete
#   PH_HEADERS  start line parsed; _line = start of the next header line
#   PH_DATA     the header block ended with an empty line; _scan = where the
#               end-line search resumes (no end-line starts before it)
#
# In PH_START and PH_HEADERS, _scan is where the CRLF search resumes (D1: a
# line ends at the first CRLF; a lone CR or LF inside it is a 400 once the
# line is complete). The data's end (D3) is found by __sf_find_endpat, a SIMD
# scan (SSE2, AVX2 when the CPU has it, memmem elsewhere) for offsets with CR,
# a dash two octets on and the tid's last octet where CRLF "-------" tid would
# end it, confirmed by memcmp; the flag and the CRLF after it are then checked,
# a near miss resumes one octet later, a partial match at the end of the
# octets we have is resumed at its start.
#
# Buffers (STYLE.md 4). feed() takes a memoryview of the caller's object once
# (no copy). Messages that start and end inside one feed() are parsed in place
# and keep that view: body is a slice of it (D8). A message cut by the end of
# a read is copied into _pend, a bytearray holding only the unfinished message
# from its first octet; offsets are relative to the message start, so they
# stay valid. The next feed() appends the new octets to _pend in growing
# pieces (4 KiB, then doubling) until the message completes, so a small tail
# does not make us copy the whole next read; the finished bytearray is handed
# to the message (no copy) and parsing goes on in place in the new data.
# When the caller's buffer is writable (a bytearray it may reuse), a message
# parsed in place also keeps a bytes copy of its octets, so headers() and
# to_bytes() stay what was received, as the reference's do; body is still the
# view D8 asks for.
#
# Headers are stored as offsets (name, value) and decoded when asked; the
# values were checked to be strict UTF-8 during feed (D10), so decoding
# cannot fail later.
#
# Limits (STYLE.md 1, D4, D5): the header block and the data of one chunk;
# each is raised as soon as the octets received prove it exceeded, so the
# error does not depend on how the stream was cut (D6).

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.unicode cimport PyUnicode_DecodeUTF8, PyUnicode_DecodeASCII
from libc.stdint cimport uint64_t
from libc.stdio cimport snprintf
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcmp, memcpy

import operator

cdef extern from "Python.h":
    Py_buffer* PyMemoryView_GET_BUFFER(object mview)

cdef extern from *:
    """
    #include <string.h>
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #endif

    /* Offset of the first h[i:i+nl] equal to needle (CR LF "-------" tid, nl >= 13)
       with i <= n - nl, or -1. With SSE2 (AVX2 when the CPU has it) 16 (32)
       candidate offsets a step, a candidate having CR at i, "-" at i + 2 and
       the tid's last octet at i + nl - 1, so dash lines of other ids and
       "CR LF SP -" rarely reach the memcmp. The tail, and targets without
       SSE2, go to memmem. Every load ends at or before h + n. */
    #if defined(__SSE2__)
    #define __SF_PROBE(i, mask)                                                     \
        while (mask) {                                                             \
            Py_ssize_t p_ = (i) + __builtin_ctz(mask);                             \
            if (memcmp(h + p_ + 1, needle + 1, (size_t)(nl - 2)) == 0)             \
                return p_;                                                         \
            mask &= mask - 1;                                                      \
        }
    #endif

    #if defined(__GNUC__) && defined(__x86_64__) && defined(__SSE2__)
    #include <immintrin.h>
    #define __SF_HAVE_AVX2_PATH 1
    __attribute__((target("avx2")))
    static Py_ssize_t __sf_find_endpat_avx2(const unsigned char* h, Py_ssize_t n,
                                            const unsigned char* needle, Py_ssize_t nl,
                                            Py_ssize_t* next) {
        Py_ssize_t i = 0;
        const __m256i cr = _mm256_set1_epi8('\\r');
        const __m256i dash = _mm256_set1_epi8('-');
        const __m256i last = _mm256_set1_epi8((char)needle[nl - 1]);
        while (i + nl - 1 + 32 <= n) {
            __m256i a = _mm256_loadu_si256((const __m256i*)(h + i));
            __m256i b = _mm256_loadu_si256((const __m256i*)(h + i + 2));
            __m256i c = _mm256_loadu_si256((const __m256i*)(h + i + nl - 1));
            unsigned int mask = (unsigned int)_mm256_movemask_epi8(_mm256_and_si256(
                _mm256_and_si256(_mm256_cmpeq_epi8(a, cr), _mm256_cmpeq_epi8(b, dash)),
                _mm256_cmpeq_epi8(c, last)));
            __SF_PROBE(i, mask)
            i += 32;
        }
        *next = i;
        return -1;
    }
    static int __sf_use_avx2 = -1;
    #endif

    static Py_ssize_t __sf_find_endpat(const unsigned char* h, Py_ssize_t n,
                                       const unsigned char* needle, Py_ssize_t nl) {
        Py_ssize_t i = 0;
        const void* f;
        if (n < nl)
            return -1;
    #if defined(__SF_HAVE_AVX2_PATH)
        if (__sf_use_avx2 < 0)
            __sf_use_avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
        if (__sf_use_avx2 && n >= 256) {
            Py_ssize_t r = __sf_find_endpat_avx2(h, n, needle, nl, &i);
            if (r >= 0)
                return r;
        }
    #endif
    #if defined(__SSE2__)
        {
            const __m128i cr = _mm_set1_epi8('\\r');
            const __m128i dash = _mm_set1_epi8('-');
            const __m128i last = _mm_set1_epi8((char)needle[nl - 1]);
            while (i + nl - 1 + 16 <= n) {
                __m128i a = _mm_loadu_si128((const __m128i*)(h + i));
                __m128i b = _mm_loadu_si128((const __m128i*)(h + i + 2));
                __m128i c = _mm_loadu_si128((const __m128i*)(h + i + nl - 1));
                unsigned int mask = (unsigned int)_mm_movemask_epi8(_mm_and_si128(
                    _mm_and_si128(_mm_cmpeq_epi8(a, cr), _mm_cmpeq_epi8(b, dash)),
                    _mm_cmpeq_epi8(c, last)));
                __SF_PROBE(i, mask)
                i += 16;
            }
        }
    #endif
        if (i > n - nl)
            return -1;
        f = memmem(h + i, (size_t)(n - i), needle, (size_t)nl);
        return f == NULL ? -1 : (Py_ssize_t)((const unsigned char*)f - h);
    }

    /* Length of the prefix of p[:n], in whole 16-octet blocks, that is ASCII
       without CR or LF (0 without SSE2): the fast path of header values. */
    static Py_ssize_t __sf_plain_prefix(const unsigned char* p, Py_ssize_t n) {
        Py_ssize_t i = 0;
    #if defined(__SSE2__)
        const __m128i cr = _mm_set1_epi8('\\r');
        const __m128i lf = _mm_set1_epi8('\\n');
        while (i + 16 <= n) {
            __m128i v = _mm_loadu_si128((const __m128i*)(p + i));
            __m128i bad = _mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf));
            if (_mm_movemask_epi8(_mm_or_si128(v, bad)))  /* a high bit, a CR or an LF */
                break;
            i += 16;
        }
    #endif
        return i;
    }
    """
    Py_ssize_t __sf_find_endpat(const unsigned char* h, Py_ssize_t n,
                                const unsigned char* needle, Py_ssize_t nl) noexcept nogil
    Py_ssize_t __sf_plain_prefix(const unsigned char* p, Py_ssize_t n) noexcept nogil

cdef extern from *:
    """
    /* An instance of cls made by its tp_new (cls a subclass of a cdef class
       without __new__ of its own): no Python-level call. */
    static PyObject* __sf_new(PyObject* cls, PyObject* args) {
        return ((PyTypeObject*)cls)->tp_new((PyTypeObject*)cls, args, NULL);
    }
    """
    object __sf_new(object cls, object args)

from simplefast.errors import RemoteProtocolError

MAX_HEADER_BYTES = 16384
MAX_CHUNK_BYTES = 1048576

cdef Py_ssize_t _LIMIT_CLAMP = 1 << 62       # D16
_MAX_NUMBER = (1 << 63) - 1                  # D13
cdef int _TID_TRIES = 16                     # D15


class MsrpFramingError(RemoteProtocolError):
    """A framing or syntax error; ``status_hint`` 400 or 413. str() is short and safe
    for a log line or a REPORT's comment."""


ctypedef unsigned char uchar

# ---------------------------------------------------------------- char classes

cdef enum:
    C_IDENT = 1     # ident-char: ALPHA / DIGIT / "." / "-" / "+" / "%" / "="
    C_ALNUM = 2
    C_TOKEN = 4     # RFC 4975 section 9 token
    C_UPPER = 8
    C_DIGIT = 16
    C_FLAG = 32     # continuation-flag: "$" / "+" / "#"
    C_WSP = 64      # SP / HTAB: what separates path URIs (D12)

cdef uchar _cls[256]

cdef void _fill(bytes chars, uchar flag) noexcept:
    cdef uchar c
    for c in chars:
        _cls[c] |= flag

cdef void _init_classes() noexcept:
    cdef int i
    for i in range(256):
        _cls[i] = 0
    upper = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    alnum = upper + upper.lower() + b"0123456789"
    _fill(alnum + b".-+%=", C_IDENT)
    _fill(alnum, C_ALNUM)
    # %x21 / %x23-27 / %x2A-2B / %x2D-2E / %x30-39 / %x41-5A / %x5E-7E
    _fill(bytes([0x21, 0x23, 0x24, 0x25, 0x26, 0x27, 0x2A, 0x2B, 0x2D, 0x2E])
          + bytes(range(0x30, 0x3A)) + bytes(range(0x41, 0x5B)) + bytes(range(0x5E, 0x7F)), C_TOKEN)
    _fill(upper, C_UPPER)
    _fill(b"0123456789", C_DIGIT)
    _fill(b"$+#", C_FLAG)
    _fill(b" \t", C_WSP)

_init_classes()

cdef inline bint _is(uchar c, uchar flag) noexcept nogil:
    return (_cls[c] & flag) != 0

cdef inline uchar _low(uchar c) noexcept nogil:
    return c + 32 if 65 <= c <= 90 else c

cdef inline bint _plain8(const uchar* p) noexcept nogil:
    """p[:8] is ASCII without CR or LF (word at a time: no high bit, no zero
    byte in w ^ CRs nor in w ^ LFs)."""
    cdef uint64_t w, x, y
    memcpy(&w, p, 8)
    x = w ^ 0x0D0D0D0D0D0D0D0DULL
    y = w ^ 0x0A0A0A0A0A0A0A0AULL
    return ((w | ((x - 0x0101010101010101ULL) & ~x) | ((y - 0x0101010101010101ULL) & ~y))
            & 0x8080808080808080ULL) == 0

cdef Py_ssize_t _text_bad(const uchar* p, Py_ssize_t n) noexcept nogil:
    """Index of the first octet of p[:n] that makes it not strict UTF-8 text
    without CR or LF (what Python's strict utf-8 codec accepts, D10), or -1."""
    cdef Py_ssize_t i = __sf_plain_prefix(p, n)
    cdef uchar c, c1
    while i < n:
        if i + 8 <= n and _plain8(p + i):
            i += 8
            continue
        c = p[i]
        if c < 0x80:
            if c == 13 or c == 10:
                return i
            i += 1
        elif 0xC2 <= c <= 0xDF:
            if i + 1 >= n or (p[i + 1] & 0xC0) != 0x80:
                return i
            i += 2
        elif 0xE0 <= c <= 0xEF:
            if i + 2 >= n:
                return i
            c1 = p[i + 1]
            if (c1 & 0xC0) != 0x80 or (p[i + 2] & 0xC0) != 0x80:
                return i
            if (c == 0xE0 and c1 < 0xA0) or (c == 0xED and c1 > 0x9F):
                return i  # overlong, or a surrogate
            i += 3
        elif 0xF0 <= c <= 0xF4:
            if i + 3 >= n:
                return i
            c1 = p[i + 1]
            if (c1 & 0xC0) != 0x80 or (p[i + 2] & 0xC0) != 0x80 or (p[i + 3] & 0xC0) != 0x80:
                return i
            if (c == 0xF0 and c1 < 0x90) or (c == 0xF4 and c1 > 0x8F):
                return i  # overlong, or past U+10FFFF
            i += 4
        else:
            return i
    return -1

# ---------------------------------------------------------------- errors and strings

cdef object _error(str msg, int status=400):
    return MsrpFramingError(msg, status)

cdef inline str _s(const uchar* p, Py_ssize_t n):
    """p[:n] as text; checked to be strict UTF-8 during feed."""
    return PyUnicode_DecodeUTF8(<const char*>p, n, NULL)

cdef inline str _a(const uchar* p, Py_ssize_t n):
    """p[:n], ASCII (a token or an ident)."""
    return PyUnicode_DecodeASCII(<const char*>p, n, NULL)

cdef str _snip(const uchar* p, Py_ssize_t n):
    """A short, printable rendering of p[:n] for an error message."""
    return repr(PyBytes_FromStringAndSize(<const char*>p, n if n < 48 else 48))

cdef object _too_big_header(Py_ssize_t limit):
    return _error(f"header block exceeds {limit} bytes", 413)

cdef object _too_big_chunk(Py_ssize_t limit):
    return _error(f"chunk data exceeds {limit} bytes", 413)

# ---------------------------------------------------------------- messages

cdef struct Hdr:
    Py_ssize_t ns, ne, vs, ve   # name and value, relative to the message's first octet

cdef enum:
    INLINE_HDRS = 8

cdef const uchar* _EMPTY = <const uchar*>b""


cdef class _Message:
    """The C side of MsrpMessage: offsets into the octets received."""

    cdef object _owner          # keeps _p alive: the feed's memoryview, or a bytearray
    cdef const uchar* _p        # the message's first octet
    cdef Py_ssize_t _len
    cdef object _view           # the feed's memoryview when parsed in place (D8), else None
    cdef Py_ssize_t _voff       # the message's offset in _view
    cdef Py_ssize_t _tid_e      # transact-id at [5, _tid_e)
    cdef Py_ssize_t _a0, _a1    # method (request) or comment (response; _a0 < 0: none)
    cdef int _status            # -1 for a request
    cdef bint _content
    cdef Py_ssize_t _bs, _be    # data
    cdef uchar _flag
    cdef Hdr* _hdrs
    cdef int _n, _cap
    cdef Hdr _inline[INLINE_HDRS]
    cdef object _body_c, _tid_c

    def __cinit__(self):
        self._hdrs = self._inline
        self._cap = INLINE_HDRS
        self._n = 0
        self._p = _EMPTY
        self._len = 0
        self._tid_e = 5
        self._status = -1
        self._a0 = self._a1 = 0
        self._bs = self._be = 0
        self._flag = 36  # "$"

    def __dealloc__(self):
        if self._hdrs != self._inline:
            free(self._hdrs)

    def __repr__(self):
        what = self.method if self._status < 0 else self._status
        return f"<MsrpMessage {what} tid={self.tid} flag={self.flag} body={self._be - self._bs}>"

    cdef int _add(self, Py_ssize_t ns, Py_ssize_t ne, Py_ssize_t vs, Py_ssize_t ve) except -1:
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
        self._n += 1
        return 0

    # -- start line and end-line

    @property
    def is_request(self):
        return self._status < 0

    @property
    def tid(self):
        if self._tid_c is None:
            self._tid_c = _a(self._p + 5, self._tid_e - 5) if self._tid_e > 5 else ""
        return self._tid_c

    @property
    def method(self):
        if self._status >= 0:
            return None
        return _method_s(self._p + self._a0, self._a1 - self._a0)

    @property
    def status(self):
        return None if self._status < 0 else self._status

    @property
    def comment(self):
        if self._status < 0 or self._a0 < 0:
            return None
        return _s(self._p + self._a0, self._a1 - self._a0)

    @property
    def flag(self):
        return "$" if self._flag == 36 else "+" if self._flag == 43 else "#"

    @property
    def has_content(self):
        return self._content

    @property
    def body(self):
        if self._body_c is None:
            if self._view is not None:
                self._body_c = self._view[self._voff + self._bs:self._voff + self._be]
            else:
                self._body_c = PyBytes_FromStringAndSize(<const char*>self._p + self._bs, self._be - self._bs)
        return self._body_c

    def to_bytes(self):
        return PyBytes_FromStringAndSize(<const char*>self._p, self._len)

    # -- headers

    def headers(self):
        cdef list out = []
        cdef int i
        cdef Hdr* h
        for i in range(self._n):
            h = &self._hdrs[i]
            out.append((_a(self._p + h.ns, h.ne - h.ns), _s(self._p + h.vs, h.ve - h.vs)))
        return out

    cdef int _find(self, const uchar* q, Py_ssize_t nq, int start) noexcept:
        """Index of the first header from ``start`` named q[:nq] (lower-case
        ASCII), ASCII case folded (D11); -1 if none."""
        cdef int i
        cdef Py_ssize_t k
        cdef Hdr* h
        for i in range(start, self._n):
            h = &self._hdrs[i]
            if h.ne - h.ns != nq:
                continue
            k = 0
            while k < nq and _low(self._p[h.ns + k]) == q[k]:
                k += 1
            if k == nq:
                return i
        return -1

    cdef object _first(self, const char* q, Py_ssize_t nq):
        cdef int i = self._find(<const uchar*>q, nq, 0)
        if i < 0:
            return None
        return _s(self._p + self._hdrs[i].vs, self._hdrs[i].ve - self._hdrs[i].vs)

    cdef list _path(self, const char* q, Py_ssize_t nq):
        """D12: the first such header's value split on runs of SP / HTAB."""
        cdef int i = self._find(<const uchar*>q, nq, 0)
        cdef list out = []
        cdef Py_ssize_t k, j, e
        if i < 0:
            return out
        k = self._hdrs[i].vs
        e = self._hdrs[i].ve
        while True:
            while k < e and _is(self._p[k], C_WSP):
                k += 1
            if k >= e:
                return out
            j = k
            while j < e and not _is(self._p[j], C_WSP):
                j += 1
            out.append(_s(self._p + k, j - k))
            k = j

    def get(self, str name):
        cdef bytes q = _query(name)
        if q is None:
            return None
        return self._first(PyBytes_AS_STRING(q), PyBytes_GET_SIZE(q))

    def get_all(self, str name):
        cdef bytes q = _query(name)
        cdef list out = []
        cdef int i = 0
        cdef Hdr* h
        if q is None:
            return out
        while True:
            i = self._find(<const uchar*>PyBytes_AS_STRING(q), PyBytes_GET_SIZE(q), i)
            if i < 0:
                return out
            h = &self._hdrs[i]
            out.append(_s(self._p + h.vs, h.ve - h.vs))
            i += 1

    @property
    def to_path(self):
        return self._path("to-path", 7)

    @property
    def from_path(self):
        return self._path("from-path", 9)

    @property
    def message_id(self):
        return self._first("message-id", 10)

    @property
    def content_type(self):
        return self._first("content-type", 12)

    @property
    def byte_range(self):
        cdef int i = self._find(<const uchar*>"byte-range", 10, 0)
        if i < 0:
            return None
        return _byte_range(self._p + self._hdrs[i].vs, self._hdrs[i].ve - self._hdrs[i].vs)


# The public classes are thin Python subclasses (no instance dict: __slots__ is
# empty) of the cdef classes that hold the C fields. The stub marks neither
# @final nor @disjoint_base, and a cdef class with C fields is a disjoint base
# (PEP 800), which mypy.stubtest reports; a subclass of the same layout is not.
# MsrpParser.__init__ is Python-level for its keyword-only signature (a cdef
# class's __init__ shows stubtest only (*args, **kwargs)). If the stub marks the
# two classes @final, they can become @cython.final cdef classes again.
class MsrpMessage(_Message):
    """One parsed MSRP message, read-only (see the stub for the contract)."""

    __slots__ = ()


cdef object _MsrpMessage_t = MsrpMessage
cdef tuple _NO_ARGS = ()

_METHODS = ("SEND", "REPORT", "AUTH", "NICKNAME")
cdef tuple _METHODS_B = tuple([_m.encode("ascii") for _m in _METHODS])

cdef str _method_s(const uchar* p, Py_ssize_t n):
    """p[:n] as a str; one shared object for the methods of RFC 4975/4976/7701."""
    cdef int j
    cdef bytes b
    for j in range(4):
        b = <bytes>_METHODS_B[j]
        if PyBytes_GET_SIZE(b) == n and memcmp(p, PyBytes_AS_STRING(b), n) == 0:
            return <str>_METHODS[j]
    return _a(p, n)

cdef dict _QCACHE = {}

cdef bytes _query(str name):
    """The lower-case ASCII octets a header name given by a caller matches, or
    None: a name with a non-ASCII character matches nothing (D11)."""
    cdef object r = _QCACHE.get(name)
    if r is None:
        r = name.lower().encode("ascii") if name.isascii() else False
        if len(_QCACHE) < 1024:
            _QCACHE[name] = r
    return <bytes>r if r is not False else None

cdef object _number(const uchar* p, Py_ssize_t n, const uchar* v, Py_ssize_t vn):
    cdef object x = int(_a(p, n))
    if x > _MAX_NUMBER:
        raise _error(f"Byte-Range number too large in {_snip(v, vn)}")
    return x

cdef object _byte_range(const uchar* p, Py_ssize_t n):
    """D13: 1*DIGIT "-" (1*DIGIT / "*") "/" (1*DIGIT / "*"), numbers < 2**63."""
    cdef Py_ssize_t i = 0, s1, e0, e1, t0, t1
    while i < n and _is(p[i], C_DIGIT):
        i += 1
    s1 = i
    if s1 == 0 or i >= n or p[i] != 45:
        raise _bad_range(p, n)
    i += 1
    e0 = i
    if i < n and p[i] == 42:
        i += 1
    else:
        while i < n and _is(p[i], C_DIGIT):
            i += 1
    e1 = i
    if e1 == e0 or i >= n or p[i] != 47:
        raise _bad_range(p, n)
    i += 1
    t0 = i
    if i < n and p[i] == 42:
        i += 1
    else:
        while i < n and _is(p[i], C_DIGIT):
            i += 1
    t1 = i
    if t1 == t0 or i != n:
        raise _bad_range(p, n)
    start = _number(p, s1, p, n)
    end = None if p[e0] == 42 else _number(p + e0, e1 - e0, p, n)
    total = None if p[t0] == 42 else _number(p + t0, t1 - t0, p, n)
    return (start, end, total)

cdef object _bad_range(const uchar* p, Py_ssize_t n):
    return _error(f"malformed Byte-Range {_snip(p, n)}")

# ---------------------------------------------------------------- the parser

cdef enum:
    PH_START = 0
    PH_HEADERS = 1
    PH_DATA = 2
    MAX_TID = 32
    NEEDLE_MAX = 9 + MAX_TID   # CRLF "-------" transact-id
    FIRST_PIECE = 4096


cdef class _Parser:
    """The C side of MsrpParser."""

    cdef Py_ssize_t _max_header, _max_chunk
    cdef object _err            # the error that failed the connection (D7), or None
    cdef bytearray _pend        # octets of the unfinished message, from its first octet
    cdef _Message _cur          # the message being parsed, or None
    cdef int _phase
    cdef Py_ssize_t _line       # PH_HEADERS: start of the next line
    cdef Py_ssize_t _scan       # where the CRLF / end-line search resumes
    cdef Py_ssize_t _cur_len    # length of the message _step just completed
    cdef uchar _needle[NEEDLE_MAX]   # CRLF "-------" tid
    cdef Py_ssize_t _nlen

    def __cinit__(self):
        self._max_header = MAX_HEADER_BYTES
        self._max_chunk = MAX_CHUNK_BYTES
        self._err = None
        self._pend = bytearray()
        self._reset()

    cdef void _reset(self) noexcept:
        self._cur = None
        self._phase = PH_START
        self._line = 0
        self._scan = 0

    cdef int _configure(self, object max_header_bytes, object max_chunk_bytes) except -1:
        self._max_header = _limit("max_header_bytes", max_header_bytes)
        self._max_chunk = _limit("max_chunk_bytes", max_chunk_bytes)
        return 0

    @property
    def buffered(self):
        return PyByteArray_GET_SIZE(self._pend)

    def feed(self, data):
        cdef object mv
        cdef Py_buffer* pb
        cdef const uchar* d
        cdef Py_ssize_t n, pos = 0, take, piece, plen, k
        cdef list out = []
        cdef _Message m
        if self._err is not None:
            raise self._err
        mv = memoryview(data)
        if mv.ndim != 1 or mv.format != "B":
            mv = mv.cast("B")
        elif not mv.c_contiguous:
            mv = memoryview(mv.tobytes())  # a strided view: parse a contiguous copy
        pb = PyMemoryView_GET_BUFFER(mv)
        d = <const uchar*>pb.buf
        n = pb.len
        try:
            if PyByteArray_GET_SIZE(self._pend) and n:
                # finish the message cut by the last read, in _pend
                piece = FIRST_PIECE
                while True:
                    take = n - pos if n - pos < piece else piece
                    plen = PyByteArray_GET_SIZE(self._pend)
                    PyByteArray_Resize(self._pend, plen + take)
                    memcpy(PyByteArray_AS_STRING(self._pend) + plen, d + pos, take)
                    pos += take
                    if self._step(<const uchar*>PyByteArray_AS_STRING(self._pend), plen + take):
                        k = self._cur_len
                        m = self._finish()
                        m._owner = self._pend
                        m._p = <const uchar*>PyByteArray_AS_STRING(self._pend)
                        out.append(m)
                        pos -= plen + take - k  # the octets after it are parsed in place below
                        self._pend = bytearray()
                        break
                    if pos == n:
                        return out
                    piece *= 2
            while pos < n:
                if self._step(d + pos, n - pos):
                    k = self._cur_len
                    m = self._finish()
                    if pb.readonly:
                        m._owner = mv
                        m._p = d + pos
                    else:
                        # the caller may write into its buffer later: keep a copy of
                        # the octets (to_bytes, headers); body stays a view (D8)
                        m._owner = PyBytes_FromStringAndSize(<const char*>d + pos, k)
                        m._p = <const uchar*>PyBytes_AS_STRING(m._owner)
                    m._view = mv
                    m._voff = pos
                    out.append(m)
                    pos += k
                else:
                    self._pend = bytearray(mv[pos:])
                    break
        except MsrpFramingError as e:
            self._err = e
            self._pend = bytearray()
            self._reset()
            raise
        return out

    cdef _Message _finish(self):
        """The message _step completed, detached; the parser is reset for the next."""
        cdef _Message m = self._cur
        m._len = self._cur_len
        self._reset()
        return m

    cdef int _step(self, const uchar* d, Py_ssize_t n) except -1:
        """Parse on, from the saved state, the message whose octets so far are
        d[:n]: 1 complete, 0 more octets needed."""
        cdef const uchar* f
        cdef Py_ssize_t ls, i, le, k
        if self._cur is None:
            self._cur = <_Message>__sf_new(_MsrpMessage_t, _NO_ARGS)
        while True:
            if self._phase == PH_DATA:
                return self._find_end(d, n)
            # D1: the line ends at the first CRLF from ls
            ls = self._line
            k = self._scan if self._scan > ls else ls
            while True:
                f = <const uchar*>memchr(d + k, 10, n - k) if k < n else NULL
                if f == NULL:
                    # a final CR may pair with the next read's LF: resume at n
                    self._scan = n
                    if n > self._max_header and not self._end_line_prefix(d, ls, n):
                        raise _too_big_header(self._max_header)
                    return 0
                i = f - d
                if i > ls and d[i - 1] == 13:
                    break
                k = i + 1
            i -= 1  # the CR
            le = i + 2
            # D2 (a): the end-line of a message without content
            if self._phase == PH_HEADERS and i - ls == self._nlen - 1 and _is(d[i - 1], C_FLAG) \
                    and memcmp(d + ls, self._needle + 2, self._nlen - 2) == 0:
                self._cur._flag = d[i - 1]
                self._cur._bs = self._cur._be = ls
                self._cur_len = le
                return 1
            if le > self._max_header:  # D4: the limit before the syntax
                raise _too_big_header(self._max_header)
            self._line = self._scan = le
            if self._phase == PH_START:
                self._start_line(d, i)
                self._phase = PH_HEADERS
            elif i == ls:
                # D2 (b): the empty line; content follows (section 9 content-stuff)
                if self._cur._status >= 0:
                    raise _error(f"a response carries no content (empty line at offset {ls})")
                self._cur._content = True
                self._cur._bs = le
                self._phase = PH_DATA
            else:
                self._header_line(d, ls, i)

    cdef bint _end_line_prefix(self, const uchar* d, Py_ssize_t ls, Py_ssize_t n) noexcept:
        """Could the incomplete line d[ls:n] still become our end-line,
        "-------" tid flag CR (then LF)? (D4)"""
        cdef Py_ssize_t p = n - ls, t = self._nlen - 2  # len("-------" tid)
        if self._phase != PH_HEADERS or p > t + 2:
            return False
        if memcmp(d + ls, self._needle + 2, p if p < t else t) != 0:
            return False
        if p > t and not _is(d[ls + t], C_FLAG):
            return False
        return not (p > t + 1 and d[ls + t + 1] != 13)

    cdef int _start_line(self, const uchar* d, Py_ssize_t e) except -1:
        """D9: "MSRP" SP transact-id SP (method / status-code [SP comment]);
        d[:e] is the line without its CRLF."""
        cdef _Message m = self._cur
        cdef Py_ssize_t j, k, r
        if e < 5 or memcmp(d, b"MSRP ", 5) != 0:
            raise _error(f"not an MSRP start line: {_snip(d, e)}")
        j = 5
        while j < e and d[j] != 32:
            j += 1
        if j >= e:
            raise _error(f"start line without method or status: {_snip(d, e)}")
        if not _ident(d + 5, j - 5):
            raise _error(f"malformed transaction id {_snip(d + 5, j - 5)}")
        k = j + 1
        r = e - k  # the rest
        if r >= 3 and _is(d[k], C_DIGIT) and _is(d[k + 1], C_DIGIT) and _is(d[k + 2], C_DIGIT) \
                and (r == 3 or d[k + 3] == 32):
            m._status = (d[k] - 48) * 100 + (d[k + 1] - 48) * 10 + (d[k + 2] - 48)
            if r == 3:
                m._a0 = m._a1 = -1
            else:
                if _text_bad(d + k + 4, r - 4) >= 0:
                    raise _error(f"response comment is not valid UTF-8 text (offset {k + 4})")
                m._a0 = k + 4
                m._a1 = e
        else:
            j = k
            while j < e and _is(d[j], C_UPPER):
                j += 1
            if j == k or j != e:
                raise _error(f"malformed method or status in start line {_snip(d, e)}")
            m._status = -1
            m._a0 = k
            m._a1 = e
        m._tid_e = k - 1
        memcpy(self._needle, b"\r\n-------", 9)
        memcpy(self._needle + 9, d + 5, k - 6)
        self._nlen = 9 + k - 6
        return 0

    cdef int _header_line(self, const uchar* d, Py_ssize_t ls, Py_ssize_t e) except -1:
        """D10: name ":" SP value; d[ls:e] is the line without its CRLF."""
        cdef Py_ssize_t j = ls
        while j < e and _is(d[j], C_TOKEN):
            j += 1
        if j == ls or j >= e or d[j] != 58:
            raise _error(f"malformed header line {_snip(d + ls, e - ls)} (offset {ls})")
        if j + 1 >= e or d[j + 1] != 32:
            raise _error(f"no SP after the colon in header line {_snip(d + ls, e - ls)} (offset {ls})")
        if _text_bad(d + j + 2, e - j - 2) >= 0:
            raise _error(f"header value is not valid UTF-8 text (offset {ls})")
        self._cur._add(ls, j, j + 2, e)
        return 0

    cdef int _find_end(self, const uchar* d, Py_ssize_t n) except -1:
        """D3, D5: the data runs up to the first CRLF "-------" tid flag CRLF
        whose CRLF starts at or after the data start."""
        cdef Py_ssize_t s = self._scan, k, j, nl = self._nlen
        cdef Py_ssize_t bs = self._cur._bs
        cdef bint partial = False
        while True:
            k = __sf_find_endpat(d + s, n - s, self._needle, nl)
            if k < 0:
                # no end-line can start before n - nl + 1: everything before it is data
                s = n - nl + 1 if n - nl + 1 > bs else bs
                break
            k += s
            j = k + nl
            if (j < n and not _is(d[j], C_FLAG)) or (j + 1 < n and d[j + 1] != 13) \
                    or (j + 2 < n and d[j + 2] != 10):
                s = k + 1  # a near miss: data
                continue
            if j + 3 > n:
                s = k  # flag or CRLF not here yet
                break
            if k - bs > self._max_chunk:
                raise _too_big_chunk(self._max_chunk)
            self._cur._be = k
            self._cur._flag = d[j]
            self._cur_len = j + 3
            return 1
        self._scan = s
        if s - bs > self._max_chunk:  # D5: the data is at least this long
            raise _too_big_chunk(self._max_chunk)
        return 0


class MsrpParser(_Parser):
    """Streaming MSRP framer (see the stub for the contract)."""

    __slots__ = ()

    def __init__(self, *, max_header_bytes=MAX_HEADER_BYTES, max_chunk_bytes=MAX_CHUNK_BYTES):
        (<_Parser>self)._configure(max_header_bytes, max_chunk_bytes)


cdef inline bint _ident(const uchar* p, Py_ssize_t n) noexcept:
    """RFC 4975 section 9: ident = ALPHANUM 3*31ident-char (D9)."""
    cdef Py_ssize_t i
    if n < 4 or n > MAX_TID or not _is(p[0], C_ALNUM):
        return False
    for i in range(1, n):
        if not _is(p[i], C_IDENT):
            return False
    return True

cdef Py_ssize_t _limit(str name, object value) except -1:
    """D16: keyword-only ints, clamped to 2**62."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, not {value}")
    return _LIMIT_CLAMP if value > _LIMIT_CLAMP else value

# ---------------------------------------------------------------- parse_one

def parse_one(data):
    cdef _Parser p = MsrpParser()
    cdef list msgs = p.feed(data)
    if not msgs:
        raise _error("incomplete MSRP message")
    if len(msgs) > 1:
        raise _error("more than one MSRP message")
    if p.buffered:
        raise _error(f"{p.buffered} octets after the MSRP message")
    return msgs[0]

# ---------------------------------------------------------------- writers
# D14, D15. Each writer sizes its output and fills one bytes object.

cdef bytes _enc_tid(object tid):
    cdef bytes b = tid.encode("utf-8", "surrogatepass")
    if not _ident(<const uchar*>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b)):
        raise ValueError(f"invalid MSRP transaction id {tid!r}")
    return b

cdef bytes _enc_text(str what, object v):
    if "\r" in v or "\n" in v:
        raise ValueError(f"{what} contains CR or LF: {v[:48]!r}")
    try:
        return v.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} cannot be encoded as UTF-8: {v[:48]!r}") from None

cdef bytes _enc_name(object name):
    cdef bytes b = name.encode("utf-8", "surrogatepass")
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(b)
    cdef const uchar* p = <const uchar*>PyBytes_AS_STRING(b)
    if n == 0:
        raise ValueError(f"invalid header name {name!r}")
    for i in range(n):
        if not _is(p[i], C_TOKEN):
            raise ValueError(f"invalid header name {name!r}")
    return b

cdef bytes _enc_path(str what, object uris):
    cdef list parts = []
    cdef bytes b
    for u in uris:
        b = _enc_text(what, u)
        # memchr, not `b" " in b`: bytes.__contains__ tries the needle as an integer
        # first, and the TypeError it formats and clears cost a microsecond per element
        if (not b or memchr(PyBytes_AS_STRING(b), 32, PyBytes_GET_SIZE(b)) != NULL
                or memchr(PyBytes_AS_STRING(b), 9, PyBytes_GET_SIZE(b)) != NULL):
            raise ValueError(f"{what} element {u!r} is empty or contains whitespace")
        parts.append(b)
    return b" ".join(parts)

cdef bytes _enc_headers(object headers):
    """The header lines of ``headers``: CRLF name ": " value, each."""
    cdef list parts = []
    for name, value in headers:
        parts += (b"\r\n", _enc_name(name), b": ", _enc_text(f"header {name}", value))
    return b"".join(parts)

cdef inline char* _put(char* w, const void* src, Py_ssize_t n) noexcept:
    memcpy(w, src, n)
    return w + n

cdef inline char* _putb(char* w, bytes b) noexcept:
    return _put(w, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))

cdef bytes _request(bytes t, bytes method, bytes to_p, bytes from_p, bytes hdrs, bytes ctype,
                    const uchar* body, Py_ssize_t nbody, uchar flag,
                    const char* mid=NULL, Py_ssize_t nmid=0, bytes hdrs2=b""):
    """MSRP t method CRLF To-Path: to_p CRLF From-Path: from_p hdrs mid hdrs2 CRLF
    [Content-Type: ctype CRLF CRLF body CRLF] "-------" t flag CRLF
    (ctype None: no content; hdrs, mid and hdrs2 are header lines, each led by CRLF)."""
    cdef Py_ssize_t size = (5 + PyBytes_GET_SIZE(t) + 1 + PyBytes_GET_SIZE(method) + 11 + PyBytes_GET_SIZE(to_p)
                            + 13 + PyBytes_GET_SIZE(from_p) + PyBytes_GET_SIZE(hdrs) + nmid
                            + PyBytes_GET_SIZE(hdrs2) + 2 + 7 + PyBytes_GET_SIZE(t) + 3)
    cdef bytes out
    cdef char* w
    if ctype is not None:
        size += 14 + PyBytes_GET_SIZE(ctype) + 4 + nbody + 2
    out = PyBytes_FromStringAndSize(NULL, size)
    w = PyBytes_AS_STRING(out)
    w = _put(w, b"MSRP ", 5)
    w = _putb(w, t)
    w = _put(w, b" ", 1)
    w = _putb(w, method)
    w = _put(w, b"\r\nTo-Path: ", 11)
    w = _putb(w, to_p)
    w = _put(w, b"\r\nFrom-Path: ", 13)
    w = _putb(w, from_p)
    w = _putb(w, hdrs)
    if nmid:
        w = _put(w, mid, nmid)
    w = _putb(w, hdrs2)
    w = _put(w, b"\r\n", 2)
    if ctype is not None:
        w = _put(w, b"Content-Type: ", 14)
        w = _putb(w, ctype)
        w = _put(w, b"\r\n\r\n", 4)
        w = _put(w, body, nbody)
        w = _put(w, b"\r\n", 2)
    w = _put(w, b"-------", 7)
    w = _putb(w, t)
    w[0] = <char>flag
    w[1] = 13
    w[2] = 10
    return out

cdef bint _ends_early(const uchar* body, Py_ssize_t n, bytes t):
    """The parser would find CRLF "-------" t flag CRLF in body + CRLF, i.e.
    before the real end-line (D14)."""
    cdef uchar needle[NEEDLE_MAX]
    cdef Py_ssize_t nl = 9 + PyBytes_GET_SIZE(t), s = 0, k, j
    memcpy(needle, b"\r\n-------", 9)
    memcpy(needle + 9, PyBytes_AS_STRING(t), nl - 9)
    # CRLF "-------" t lies inside body (it ends with t: no CR, no LF), and so
    # does the flag; the CRLF after the flag may be the one we add after body.
    while True:
        k = __sf_find_endpat(body + s, n - s, needle, nl)
        if k < 0:
            return False
        k += s
        j = k + nl
        if j < n and _is(body[j], C_FLAG):
            if j + 1 == n or (j + 2 < n and body[j + 1] == 13 and body[j + 2] == 10):
                return True
        s = k + 1

def build_request(tid, method, to_path, from_path, headers=(), *, content_type=None, body=b"", flag="$"):
    cdef bytes t = _enc_tid(tid)
    cdef bytes ctype = None
    cdef const uchar[::1] bv
    cdef const uchar* bp = _EMPTY
    cdef Py_ssize_t nb = 0
    if not method or not method.isascii() or not _upper_word(method):
        raise ValueError(f"invalid MSRP method {method!r}")
    if len(flag) != 1 or flag not in "$+#":
        raise ValueError(f"invalid end-line flag {flag!r}")
    to_p = _enc_path("To-Path", to_path)
    from_p = _enc_path("From-Path", from_path)
    hdrs = _enc_headers(headers)
    if content_type is None:
        if len(body):
            raise ValueError("a body needs a content_type")
    else:
        data = bytes(body)
        bp = <const uchar*>PyBytes_AS_STRING(data)
        nb = PyBytes_GET_SIZE(data)
        # RFC 4975 section 7.1: the end-line must not occur in the body (any flag ends it)
        if _ends_early(bp, nb, t):
            raise ValueError(f"the body contains the end-line of transaction {tid}")
        ctype = _enc_text("Content-Type", content_type)
    return _request(t, method.encode("ascii"), to_p, from_p, hdrs, ctype, bp, nb, ord(flag))

cdef bint _upper_word(str s):
    cdef Py_UCS4 c
    for c in s:
        if not (65 <= c <= 90):
            return False
    return True

cdef bint _is_path_header(_Message m, Hdr* h) noexcept:
    """The header is To-Path or From-Path (ASCII case folded)."""
    cdef Py_ssize_t n = h.ne - h.ns, k
    cdef const uchar* q
    if n == 7:
        q = <const uchar*>b"to-path"
    elif n == 9:
        q = <const uchar*>b"from-path"
    else:
        return False
    for k in range(n):
        if _low(m._p[h.ns + k]) != q[k]:
            return False
    return True

cdef bint _is_byte_range(_Message m, Hdr* h) noexcept:
    cdef Py_ssize_t k
    cdef const uchar* q = <const uchar*>b"byte-range"
    if h.ne - h.ns != 10:
        return False
    for k in range(10):
        if _low(m._p[h.ns + k]) != q[k]:
            return False
    return True

def forward(msg, tid, to_path, from_path, *, part=None):
    if not isinstance(msg, _Message):
        raise TypeError(f"msg must be an MsrpMessage, not {type(msg).__name__}")
    cdef _Message m = <_Message>msg
    if m._status >= 0:
        raise ValueError("a response is not forwarded as a request")
    cdef bytes t = _enc_tid(tid)
    cdef bytes to_p = _enc_path("To-Path", to_path)
    cdef bytes from_p = _enc_path("From-Path", from_path)
    cdef const uchar* body = m._p + m._bs
    cdef Py_ssize_t nb = m._be - m._bs, nt = PyBytes_GET_SIZE(t), nmeth = m._a1 - m._a0
    cdef Py_ssize_t size, i, off = 0
    cdef Hdr* h
    cdef bytes out
    cdef bytes br_val = None
    cdef char* w
    cdef uchar flag = m._flag
    if part is not None:
        off, length = part
        off = operator.index(off)
        length = operator.index(length)
        br = msg.byte_range
        if not m._content or br is None:
            raise ValueError("a part needs a chunk with data and a Byte-Range header")
        if off < 0 or length < 1 or off + length > nb:
            raise ValueError(f"part ({off}, {length}) is not inside the {nb} octets of data")
        first = br[0] + off
        total = "*" if br[2] is None else str(br[2])
        br_val = f"{first}-{first + length - 1}/{total}".encode("ascii")
        if off + length < nb:
            flag = 43  # "+": more of this chunk follows
        body = body + off
        nb = length
    if m._content and _ends_early(body, nb, t):
        return None
    size = 5 + nt + 1 + nmeth + 11 + PyBytes_GET_SIZE(to_p) + 13 + PyBytes_GET_SIZE(from_p) + 2
    for i in range(m._n):
        h = &m._hdrs[i]
        if _is_path_header(m, h):
            continue
        if br_val is not None and _is_byte_range(m, h):
            size += (h.ne - h.ns) + 2 + PyBytes_GET_SIZE(br_val) + 2
        else:
            size += (h.ne - h.ns) + 2 + (h.ve - h.vs) + 2
    if m._content:
        size += 2 + nb + 2
    size += 7 + nt + 3
    out = PyBytes_FromStringAndSize(NULL, size)
    w = PyBytes_AS_STRING(out)
    w = _put(w, b"MSRP ", 5)
    w = _putb(w, t)
    w = _put(w, b" ", 1)
    w = _put(w, m._p + m._a0, nmeth)
    w = _put(w, b"\r\nTo-Path: ", 11)
    w = _putb(w, to_p)
    w = _put(w, b"\r\nFrom-Path: ", 13)
    w = _putb(w, from_p)
    w = _put(w, b"\r\n", 2)
    for i in range(m._n):
        h = &m._hdrs[i]
        if _is_path_header(m, h):
            continue
        w = _put(w, m._p + h.ns, h.ne - h.ns)
        w = _put(w, b": ", 2)
        if br_val is not None and _is_byte_range(m, h):
            w = _putb(w, br_val)
        else:
            w = _put(w, m._p + h.vs, h.ve - h.vs)
        w = _put(w, b"\r\n", 2)
    if m._content:
        w = _put(w, b"\r\n", 2)
        w = _put(w, body, nb)
        w = _put(w, b"\r\n", 2)
    w = _put(w, b"-------", 7)
    w = _putb(w, t)
    w[0] = <char>flag
    w[1] = 13
    w[2] = 10
    return out

def build_response(tid, status, comment, to_path, from_path, headers=()):
    cdef bytes t = _enc_tid(tid)
    status = operator.index(status)
    if not 0 <= status <= 999:
        raise ValueError(f"status code {status} is not three digits")
    start = b"%03d" % status
    if comment is not None:
        start += b" " + _enc_text("comment", comment)
    to_p = _enc_path("To-Path", to_path)
    from_p = _enc_path("From-Path", from_path)
    hdrs = _enc_headers(headers)
    return _request(t, start, to_p, from_p, hdrs, None, _EMPTY, 0, 36)

def chunk(new_tid, to_path, from_path, message_id, content_type, body, *, chunk_size=2048, headers=()):
    cdef list out = []
    cdef Py_ssize_t total, off, size, piece, tries
    cdef bytes data, t, to_p = None, from_p, mid, ctype, extra
    cdef const uchar* p
    cdef char br[80]
    cdef int nbr
    cdef bint first = True
    size = operator.index(chunk_size)
    if size < 1:
        raise ValueError(f"chunk_size must be >= 1, not {chunk_size}")
    data = bytes(body)
    p = <const uchar*>PyBytes_AS_STRING(data)
    total = PyBytes_GET_SIZE(data)
    off = 0
    while True:
        piece = total - off if total - off < size else size
        # D15: an id that does not occur in this chunk's data, at most 16 tries
        for tries in range(_TID_TRIES + 1):
            if tries == _TID_TRIES:
                raise ValueError(f"new_tid returned {_TID_TRIES} ids that all occur in the chunk's data")
            tid = new_tid()
            t = _enc_tid(tid)
            if not _occurs(p + off, piece, t):
                break
        if first:
            # the parts every chunk shares, checked in build_request's order
            to_p = _enc_path("To-Path", to_path)
            from_p = _enc_path("From-Path", from_path)
            mid = b"\r\nMessage-ID: " + _enc_text("header Message-ID", message_id)
            extra = _enc_headers(headers)
            ctype = _enc_text("Content-Type", content_type)
            first = False
        # RFC 4975 section 7.1.1: 1-based, inclusive; 1-0/0 for an empty body
        nbr = snprintf(br, sizeof(br), "\r\nByte-Range: %zd-%zd/%zd", off + 1, off + piece, total)
        out.append(_request(t, b"SEND", to_p, from_p, mid, ctype, p + off, piece,
                            36 if off + size >= total else 43, br, nbr, extra))
        off += size
        if off >= total:
            return out

cdef bint _occurs(const uchar* h, Py_ssize_t n, bytes t) noexcept:
    cdef Py_ssize_t nt = PyBytes_GET_SIZE(t)
    if n < nt:
        return False
    return memmem(h, n, PyBytes_AS_STRING(t), nt) != NULL

cdef extern from "<string.h>" nogil:
    void* memmem(const void* haystack, size_t haystacklen, const void* needle, size_t needlelen)
