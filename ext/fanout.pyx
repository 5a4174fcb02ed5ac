# NOTIFY fan-out: rendering and client transactions, compiled twin of
# simplefast/_ref/fanout.py.
#
# The reference module is the specification (its docstring has the theory of
# operation); the contract lives in simplefast/_ext/fanout.pyi. Same bytes,
# same tokens, same order; what this twin changes is the cost:
#
#  - a transaction is a 40-byte C struct in a power-of-two table indexed by
#    its number (n & mask; the table doubles when a live transaction holds the
#    slot a new number needs), with its bytes, destination and token in three
#    Python lists beside it: no Python object per transaction;
#  - timers live in FIFO rings, one per duration and source (the first Timer
#    E of each send, each re-armed Timer E interval, Timer F, Timer K). Every
#    ring is sorted by construction (sends come at nondecreasing times;
#    re-arms are made while due entries are taken in global order), so poll
#    is a k-way merge of the ring heads: the same order as the reference's
#    heap, (deadline, n, kind);
#  - send renders with one allocation: the sizes are summed, then memcpy.

import operator

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp, memcpy, strlen

DEF TRYING = 0
DEF PROCEEDING = 1
DEF COMPLETED = 2
DEF FREE = 255
DEF KIND_E = 0
DEF KIND_F = 1
DEF KIND_K = 2
DEF MAX_RINGS = 24


cdef struct Txn:
    uint64_t n
    double interval
    double e_deadline
    uint8_t state
    uint8_t reliable


cdef struct Entry:
    double deadline
    uint64_t n


cdef struct Ring:
    Entry* buf
    Py_ssize_t cap
    Py_ssize_t head
    Py_ssize_t size
    double delay  # of the re-armed E rings: the interval; -1 for the others
    uint8_t kind


cdef int ring_push(Ring* r, double deadline, uint64_t n) except -1:
    cdef Py_ssize_t i, newcap
    cdef Entry* nb
    if r.size == r.cap:
        newcap = r.cap * 2 if r.cap else 1024
        nb = <Entry*>malloc(newcap * sizeof(Entry))
        if nb == NULL:
            raise MemoryError()
        for i in range(r.size):
            nb[i] = r.buf[(r.head + i) % r.cap]
        free(r.buf)
        r.buf = nb
        r.cap = newcap
        r.head = 0
    r.buf[(r.head + r.size) % r.cap].deadline = deadline
    r.buf[(r.head + r.size) % r.cap].n = n
    r.size += 1
    return 0


cdef inline bint entry_less(double d1, uint64_t n1, uint8_t k1, double d2, uint64_t n2, uint8_t k2):
    if d1 != d2:
        return d1 < d2
    if n1 != n2:
        return n1 < n2
    return k1 < k2


@cython.final
cdef class NotifyTxns:
    cdef str _prefix
    cdef bytes _prefix_b
    cdef readonly double t1, t2, t4
    cdef uint64_t _n
    cdef Txn* _slots
    cdef Py_ssize_t _cap  # power of two
    cdef list _data, _dest, _token
    cdef Py_ssize_t _live
    cdef Py_ssize_t _outstanding
    cdef Ring _rings[MAX_RINGS]
    cdef int _nrings
    cdef double _last
    cdef public Py_ssize_t retransmissions, timeouts

    def __cinit__(self):
        self._slots = NULL
        self._nrings = 0

    def __dealloc__(self):
        cdef int i
        free(self._slots)
        for i in range(self._nrings):
            free(self._rings[i].buf)

    def __init__(self, str branch_prefix, *, double t1=0.5, double t2=4.0, double t4=5.0):
        cdef int i
        if not branch_prefix.startswith("z9hG4bK") or not branch_prefix.isascii():
            raise ValueError("branch_prefix must be ASCII and start with z9hG4bK")
        if not (0 < t1 <= t2) or t4 < 0:
            raise ValueError("timers must be 0 < t1 <= t2 and t4 >= 0")
        self._prefix = branch_prefix
        self._prefix_b = branch_prefix.encode("ascii")
        self.t1, self.t2, self.t4 = t1, t2, t4
        self._n = 0
        self._live = 0
        self._outstanding = 0
        self._last = float("-inf")
        self.retransmissions = 0
        self.timeouts = 0
        self._alloc(1024)
        # rings: 0 first E (from send), 1 F, 2 K, then one per re-armed E interval
        self._add_ring(KIND_E, -1.0)
        self._add_ring(KIND_F, -1.0)
        self._add_ring(KIND_K, -1.0)

    cdef int _add_ring(self, uint8_t kind, double delay) except -1:
        if self._nrings == MAX_RINGS:
            raise ValueError("too many timer intervals (t2 / t1 too large)")
        self._rings[self._nrings].buf = NULL
        self._rings[self._nrings].cap = 0
        self._rings[self._nrings].head = 0
        self._rings[self._nrings].size = 0
        self._rings[self._nrings].delay = delay
        self._rings[self._nrings].kind = kind
        self._nrings += 1
        return self._nrings - 1

    cdef int _rearm_ring(self, double interval) except -1:
        cdef int i
        for i in range(3, self._nrings):
            if self._rings[i].delay == interval:
                return i
        return self._add_ring(KIND_E, interval)

    cdef int _alloc(self, Py_ssize_t cap) except -1:
        cdef Txn* slots = <Txn*>malloc(cap * sizeof(Txn))
        cdef Py_ssize_t i
        if slots == NULL:
            raise MemoryError()
        for i in range(cap):
            slots[i].state = FREE
            slots[i].n = 0
        free(self._slots)
        self._slots = slots
        self._cap = cap
        self._data = [None] * cap
        self._dest = [None] * cap
        self._token = [None] * cap
        return 0

    cdef int _grow(self) except -1:
        cdef Txn* old = self._slots
        cdef Py_ssize_t oldcap = self._cap, i, j
        cdef list od = self._data, odest = self._dest, otok = self._token
        self._slots = NULL
        try:
            self._alloc(oldcap * 2)
        except MemoryError:
            self._slots = old
            raise
        for i in range(oldcap):
            if old[i].state != FREE:
                j = <Py_ssize_t>(old[i].n & <uint64_t>(self._cap - 1))
                self._slots[j] = old[i]
                self._data[j] = od[i]
                self._dest[j] = odest[i]
                self._token[j] = otok[i]
        free(old)
        return 0

    property branch_prefix:
        def __get__(self):
            return self._prefix

    def __len__(self):
        return self._live

    property outstanding:
        def __get__(self):
            return self._outstanding

    cdef int _clock(self, double now) except -1:
        if now < self._last:
            raise ValueError(f"time went backwards: {now} after {self._last}")
        self._last = now
        return 0

    cdef inline Py_ssize_t _find(self, uint64_t n):
        cdef Py_ssize_t j
        if n == 0:
            return -1
        j = <Py_ssize_t>(n & <uint64_t>(self._cap - 1))
        if self._slots[j].state == FREE or self._slots[j].n != n:
            return -1
        return j

    cdef void _free(self, Py_ssize_t j):
        self._slots[j].state = FREE
        self._data[j] = None
        self._dest[j] = None
        self._token[j] = None
        self._live -= 1

    def send(self, bytes target not None, bytes via not None, bytes head not None, cseq, bytes state not None,
             bytes ctype not None, bytes body not None, dest, reliable, token, double now):
        cseq = operator.index(cseq)
        self._clock(now)
        if cseq < 0 or cseq > 0xFFFFFFFF:
            raise ValueError("cseq must be 0..2**32-1")
        return self._send(target, via, head, <uint64_t>cseq, PyBytes_AS_STRING(state), PyBytes_GET_SIZE(state),
                          ctype, body, dest, bool(reliable), token, now)

    cdef bytes _send(self, bytes target, bytes via, bytes head, uint64_t cseq, const char* state,
                     Py_ssize_t state_n, bytes ctype, bytes body, dest, bint reliable, token, double now):
        # the clock checked and cseq in range by the caller
        cdef char num[48]
        cdef char hexn[24]
        cdef char clen[32]
        cdef int ln, lh, lc
        cdef Py_ssize_t size, j, lb
        cdef uint64_t n
        cdef char* p
        cdef bytes data
        n = self._n + 1
        j = <Py_ssize_t>(n & <uint64_t>(self._cap - 1))
        while self._slots[j].state != FREE:
            self._grow()
            j = <Py_ssize_t>(n & <uint64_t>(self._cap - 1))
        self._n = n
        lh = _digits(hexn, n, 16)
        ln = _digits(num, cseq, 10)
        lb = PyBytes_GET_SIZE(body)
        lc = _digits(clen, <uint64_t>lb, 10)
        size = (7 + PyBytes_GET_SIZE(target) + 15 + PyBytes_GET_SIZE(via) + 8 + PyBytes_GET_SIZE(self._prefix_b)
                + lh + 2 + PyBytes_GET_SIZE(head) + 6 + ln + 29 + state_n + 2
                + 16 + lc + 4 + lb)
        if lb:
            size += 14 + PyBytes_GET_SIZE(ctype) + 2
        data = PyBytes_FromStringAndSize(NULL, size)
        p = PyBytes_AS_STRING(data)
        p = _put(p, b"NOTIFY ", 7)
        p = _put(p, PyBytes_AS_STRING(target), PyBytes_GET_SIZE(target))
        p = _put(p, b" SIP/2.0\r\nVia: ", 15)
        p = _put(p, PyBytes_AS_STRING(via), PyBytes_GET_SIZE(via))
        p = _put(p, b";branch=", 8)
        p = _put(p, PyBytes_AS_STRING(self._prefix_b), PyBytes_GET_SIZE(self._prefix_b))
        p = _put(p, hexn, lh)
        p = _put(p, b"\r\n", 2)
        p = _put(p, PyBytes_AS_STRING(head), PyBytes_GET_SIZE(head))
        p = _put(p, b"CSeq: ", 6)
        p = _put(p, num, ln)
        p = _put(p, b" NOTIFY\r\nSubscription-State: ", 29)
        p = _put(p, state, state_n)
        p = _put(p, b"\r\n", 2)
        if lb:
            p = _put(p, b"Content-Type: ", 14)
            p = _put(p, PyBytes_AS_STRING(ctype), PyBytes_GET_SIZE(ctype))
            p = _put(p, b"\r\n", 2)
        p = _put(p, b"Content-Length: ", 16)
        p = _put(p, clen, lc)
        p = _put(p, b"\r\n\r\n", 4)
        p = _put(p, PyBytes_AS_STRING(body), lb)
        self._slots[j].n = n
        self._slots[j].state = TRYING
        self._slots[j].reliable = 1 if reliable else 0
        self._slots[j].interval = self.t1
        self._slots[j].e_deadline = now + self.t1
        self._data[j] = data
        self._dest[j] = dest
        self._token[j] = token
        self._live += 1
        self._outstanding += 1
        if not self._slots[j].reliable:
            ring_push(&self._rings[0], now + self.t1, n)
        ring_push(&self._rings[1], now + 64 * self.t1, n)
        return data

    cdef uint64_t _number(self, str branch) except? 0:
        cdef Py_ssize_t lp = len(self._prefix), i, nd
        cdef uint64_t v = 0
        if not branch.startswith(self._prefix):
            return 0
        nd = len(branch) - lp
        if nd < 1 or nd > 16:
            return 0
        cdef uint32_t code
        for i in range(lp, lp + nd):
            code = <uint32_t>branch[i]
            if 48 <= code <= 57:  # 0-9
                v = v * 16 + (code - 48)
            elif 97 <= code <= 102:  # a-f
                v = v * 16 + (code - 87)
            else:
                return 0
        if <uint32_t>branch[lp] == 48:  # a leading zero: never minted
            return 0
        return v

    def owns(self, str branch):
        return branch.startswith(self._prefix)

    def response(self, str branch, int status, double now):
        cdef uint64_t n
        cdef Py_ssize_t j
        self._clock(now)
        n = self._number(branch)
        j = self._find(n)
        if j < 0 or self._slots[j].state == COMPLETED or not (100 <= status <= 699):
            return None
        if status < 200:
            if self._slots[j].state == TRYING:
                self._slots[j].state = PROCEEDING
                if not self._slots[j].reliable:
                    self._slots[j].interval = self.t2
            return None
        token = self._token[j]
        self._outstanding -= 1
        if self._slots[j].reliable or self.t4 == 0:
            self._free(j)
        else:
            self._slots[j].state = COMPLETED
            self._data[j] = b""
            ring_push(&self._rings[2], now + self.t4, n)
        return token

    def absorb(self, list batch, Py_ssize_t start, double now, parse, validate):
        cdef Py_ssize_t i = start
        if i < 0:
            raise ValueError("start must not be negative")
        self._clock(now)
        while i < len(batch) and self._takes(batch[i][0], now, parse, validate):
            i += 1
        return i

    cdef bint _takes(self, data, double now, parse, validate) except -1:
        cdef const char* p
        cdef int status
        if type(data) is not bytes or PyBytes_GET_SIZE(data) < 12:
            return False
        p = PyBytes_AS_STRING(data)
        if memcmp(p, b"SIP/2.0 ", 8) != 0 or (p[8] != 49 and p[8] != 50):  # '1', '2'
            return False
        if self._prefix_b not in <bytes>data:  # cannot be ours: not parsed here
            return False
        try:  # whatever fails here fails again on the general path, which deals with it
            msg = parse(data)
            if msg.is_request or validate(msg) is not None:
                return False
            branch = msg.via_branch
            status = msg.status
        except Exception:
            return False
        if type(branch) is not str or not (<str>branch).startswith(self._prefix) or not (100 <= status <= 299):
            return False
        if self._number(branch) > self._n:  # not sent yet: a pump between runs may send it
            return False
        self.response(branch, status, now)
        return True

    def failed(self, str branch):
        cdef uint64_t n = self._number(branch)
        cdef Py_ssize_t j = self._find(n)
        if j < 0 or self._slots[j].state == COMPLETED:
            return None
        token = self._token[j]
        self._free(j)
        self._outstanding -= 1
        return token

    def next_deadline(self):
        cdef int i
        cdef double best = 0
        cdef bint found = False
        cdef Ring* r
        for i in range(self._nrings):
            r = &self._rings[i]
            if r.size and (not found or r.buf[r.head].deadline < best):
                best = r.buf[r.head].deadline
                found = True
        return best if found else None

    def poll(self, double now):
        cdef list again = [], timed_out = []
        cdef int i, bi
        cdef Ring* r
        cdef Ring* br
        cdef double d, bd = 0
        cdef uint64_t n, bn = 0
        cdef uint8_t bk = 0
        cdef Py_ssize_t j
        cdef double interval
        self._clock(now)
        while True:
            bi = -1
            for i in range(self._nrings):  # the smallest due head: (deadline, n, kind)
                r = &self._rings[i]
                if not r.size:
                    continue
                d = r.buf[r.head].deadline
                if d > now:
                    continue
                n = r.buf[r.head].n
                if bi < 0 or entry_less(d, n, r.kind, bd, bn, bk):
                    bi, bd, bn, bk = i, d, n, r.kind
            if bi < 0:
                break
            br = &self._rings[bi]
            br.head = (br.head + 1) % br.cap
            br.size -= 1
            j = self._find(bn)
            if j < 0:
                continue
            if bk == KIND_E:
                if self._slots[j].state == COMPLETED or self._slots[j].e_deadline != bd:
                    continue
                again.append((self._data[j], self._dest[j]))
                self.retransmissions += 1
                if self._slots[j].state == TRYING:
                    interval = self._slots[j].interval * 2
                    if interval > self.t2:
                        interval = self.t2
                    self._slots[j].interval = interval
                self._slots[j].e_deadline = bd + self._slots[j].interval
                ring_push(&self._rings[self._rearm_ring(self._slots[j].interval)], self._slots[j].e_deadline, bn)
            elif bk == KIND_F:
                if self._slots[j].state == COMPLETED:
                    continue
                timed_out.append(self._token[j])
                self._free(j)
                self.timeouts += 1
                self._outstanding -= 1
            else:
                if self._slots[j].state == COMPLETED:
                    self._free(j)
        return again, timed_out


@cython.cdivision(True)
cdef inline int _digits(char* out, uint64_t v, uint64_t base) noexcept:
    """``v`` in decimal or lower-case hex at ``out`` (room for 20 digits); how many."""
    cdef char tmp[24]
    cdef int k = 0, i
    cdef uint64_t d
    while True:
        d = v % base
        tmp[k] = <char>(48 + d if d < 10 else 87 + d)
        k += 1
        v //= base
        if v == 0:
            break
    for i in range(k):
        out[i] = tmp[k - 1 - i]
    return k


cdef inline char* _put(char* p, const char* s, Py_ssize_t n):
    memcpy(p, s, n)
    return p + n


# ---------------------------------------------------------------- fan-out over rows
#
# RowFan (the reference twin's docstring is the specification): a change
# fanned out from the subscriptions' rows in the shared table. What this twin
# changes is the cost: a row is walked in place (the checks subrow.decode
# makes, without building its fields), its header patched in a copy, the
# NOTIFY rendered by NotifyTxns._send; Python is called for the table's get
# and put, notify_parts, the send and a queue append.

from simplefast._ext import subrow as _subrow_mod

from cpython cimport array
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeASCII, PyUnicode_DecodeUTF8
from libc.math cimport isfinite
from libc.stdint cimport int64_t, uint16_t


cdef extern from "Python.h":
    void* PyUnicode_DATA(object o)


cdef extern from "<arpa/inet.h>" nogil:
    int AF_INET
    int AF_INET6
    const char* inet_ntop(int af, const void* src, char* dst, uint32_t size)


DEF KEY_LEN = 32  # a worker's record of a subscription: its key, NUL-padded (subscribe.Held)
DEF ROW_HEAD = 49  # the header of a layout 2 row (simplefast/_ref/subrow.py)
DEF NO_REC = 0xFFFFFFFF
DEF EXPIRY_SANE = 1e15

cdef object _notify_parts = _subrow_mod.notify_parts
cdef tuple _POLICY_NAMES = _subrow_mod.POLICIES
cdef str _S_TCP = "tcp"
cdef str _S_TLS = "tls"
cdef str _S_CLIENT = "c"


cdef struct RowInfo:
    uint16_t owner
    uint8_t state
    uint32_t cseq
    int64_t version
    double expires_at
    double last_sent
    uint32_t rec
    uint8_t held
    uint8_t policy  # code, 255: a literal name
    uint8_t form
    uint8_t addr
    uint16_t port
    const unsigned char* host
    Py_ssize_t host_n
    uint64_t extra
    uint64_t nroutes


cdef inline bint _varint(const unsigned char* p, Py_ssize_t n, Py_ssize_t* pos, uint64_t* out) noexcept:
    cdef uint64_t v = 0
    cdef int shift = 0
    cdef unsigned char b
    while True:
        if shift > 63 or pos[0] >= n:
            return False
        b = p[pos[0]]
        pos[0] += 1
        if shift == 63 and (b & 0x7F) > 1:  # 2**64 or more: not a row (subrow.decode says so)
            return False
        v |= <uint64_t>(b & 0x7F) << shift
        if b < 0x80:
            out[0] = v
            return True
        shift += 7


cdef inline bint _skip_string(const unsigned char* p, Py_ssize_t n, Py_ssize_t* pos) noexcept:
    cdef uint64_t k
    if not _varint(p, n, pos, &k) or k > <uint64_t>(n - pos[0]):
        return False
    pos[0] += <Py_ssize_t>k
    return True


cdef bint _walk(bytes row, RowInfo* f) noexcept:
    """Whether ``row`` is a whole layout 2 row (what subrow.decode accepts), and its
    fields the fan-out reads."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(row)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(row), pos = ROW_HEAD
    cdef uint8_t flags, ev, ct
    cdef uint64_t k, i
    if n < ROW_HEAD or p[0] != 2:
        return False
    f.owner = p[1] | p[2] << 8
    f.state = p[3]
    memcpy(&f.cseq, p + 4, 4)
    memcpy(&f.version, p + 12, 8)
    memcpy(&f.expires_at, p + 20, 8)
    memcpy(&f.last_sent, p + 36, 8)
    memcpy(&f.rec, p + 44, 4)
    f.held = p[48]
    if f.state > 2 or f.held > 1 or n - pos < 7:
        return False
    flags, ev, ct, f.policy = p[pos], p[pos + 1], p[pos + 2], p[pos + 3]
    f.form, f.addr = p[pos + 4] & 15, p[pos + 4] >> 4
    f.port = p[pos + 5] | p[pos + 6] << 8
    pos += 7
    if flags & ~7 or (ev > 1 and ev != 255) or (ct > 2 and ct != 255) or (f.policy > 3 and f.policy != 255):
        return False
    if f.form > 4 or f.addr > 2:
        return False
    if f.addr == 2:
        if not _varint(p, n, &pos, &k) or k > <uint64_t>(n - pos):
            return False
        f.host, f.host_n = p + pos, <Py_ssize_t>k
        pos += <Py_ssize_t>k
    else:
        f.host_n = 4 if f.addr == 0 else 16
        if n - pos < f.host_n:
            return False
        f.host = p + pos
        pos += f.host_n
    f.extra = 0
    if f.form == 1 or f.form == 3 or f.form == 4:
        if not _varint(p, n, &pos, &f.extra):
            return False
    for i in range(5):  # call_id, remote_tag, local_uri, remote_uri, target
        if not _skip_string(p, n, &pos):
            return False
    for i in range(3):  # resource, watcher, event id, as the flags say
        if flags & (1 << i) and not _skip_string(p, n, &pos):
            return False
    if ev == 255 and not _skip_string(p, n, &pos):
        return False
    if ct == 255 and not _skip_string(p, n, &pos):
        return False
    if f.policy == 255 and not _skip_string(p, n, &pos):
        return False
    if not _varint(p, n, &pos, &f.nroutes):
        return False
    for i in range(f.nroutes):
        if not _skip_string(p, n, &pos):
            return False
    return pos == n


@cython.final
cdef class RowFan:
    cdef NotifyTxns txns
    cdef readonly int index
    cdef bytearray _keys
    cdef dict _long, _pinned, _queued, _rowq, _ctypes
    cdef object _cache
    cdef object _get, _put, _forget, _lost, _send, _wire
    cdef list _wires  # (via, contact) by transport (udp, tcp, tls) * 2 + IPv6
    cdef public Py_ssize_t sent, queued

    def __init__(self, NotifyTxns txns not None, *, int index, bytearray keys not None, dict long not None,
                 dict pinned not None, dict queued not None, cache, dict rowq not None, get, put, forget, lost,
                 send, wire, dict ctypes not None):
        self.txns = txns
        self.index = index
        self._keys, self._long = keys, long
        self._pinned, self._queued, self._cache, self._rowq = pinned, queued, cache, rowq
        self._get, self._put, self._forget, self._lost, self._send = get, put, forget, lost, send
        self._wire = wire
        self._wires = [None] * 6
        self._ctypes = ctypes
        self.sent = 0
        self.queued = 0

    cdef str _key(self, uint32_t r):
        """The key of record ``r`` (None past the records)."""
        cdef Py_ssize_t at = <Py_ssize_t>r * KEY_LEN, k = 0
        cdef const char* p
        if at + KEY_LEN > PyByteArray_GET_SIZE(self._keys):
            return None
        p = PyByteArray_AS_STRING(self._keys) + at
        while k < KEY_LEN and p[k] != 0:
            k += 1
        return PyUnicode_DecodeASCII(p, k, NULL)

    cdef bint _holds(self, uint32_t rec, str key):
        cdef Py_ssize_t at = <Py_ssize_t>rec * KEY_LEN, k = len(key), i
        cdef const char* p
        if rec == NO_REC or at + KEY_LEN > PyByteArray_GET_SIZE(self._keys) or k > KEY_LEN or not key.isascii():
            return False
        p = PyByteArray_AS_STRING(self._keys) + at
        if memcmp(p, PyUnicode_DATA(key), k) != 0:  # an ASCII str's data is its bytes
            return False
        for i in range(k, KEY_LEN):
            if p[i] != 0:
                return False
        return True

    def changed(self, array.array recs not None, Py_ssize_t start, double now, double interval, Py_ssize_t window,
                queue, list bodies not None, body_of):
        cdef Py_ssize_t i = start, sends = 0
        cdef uint32_t r
        cdef RowInfo f
        cdef str key
        cdef object row, ov, body
        cdef double last_sent
        cdef bint later
        cdef Py_ssize_t code
        if recs.ob_descr.typecode != b"I" or recs.ob_descr.itemsize != 4:
            raise TypeError("recs must be an array of typecode 'I'")
        if i < 0:
            raise ValueError("start must not be negative")
        if len(bodies) < len(_POLICY_NAMES):
            raise ValueError("bodies must have a place per policy code")
        while i < len(recs):  # asked each time: a callback may change the list (as the reference)
            r = recs.data.as_uints[i]
            if self._long and r in self._long:
                return i, sends
            key = self._key(r)
            if key is None:
                return i, sends  # not a record (the object path looks for itself)
            if key in self._pinned or key in self._queued:
                return i, sends
            if key in self._cache:
                self._forget(key)
            ov = self._rowq.get(key)
            later = window and (len(queue) or self.txns._outstanding >= window)
            if later and ov is not None and ov[1] is not None:
                # a NOTIFY of this row waits already and nothing was written to the row since:
                # the overlay has what is needed (the reference says why)
                last_sent = ov[1]
                code = ov[3]
                if last_sent + interval > now:
                    return i, sends
            else:
                row = self._get(key)
                if row is not None and type(row) is bytes and PyBytes_GET_SIZE(row) \
                        and PyBytes_AS_STRING(row)[0] == 1:
                    return i, sends  # layout 1: the object path reads it
                if row is None or type(row) is not bytes or PyBytes_GET_SIZE(row) < ROW_HEAD \
                        or PyBytes_AS_STRING(row)[0] != 2:
                    i += 1
                    continue
                if not _walk(<bytes>row, &f):
                    return i, sends  # a row that does not decode: the object path's rule
                if f.owner != self.index or f.rec != r:
                    i += 1
                    continue  # not this record's (the object path finds no subscription either)
                last_sent = f.last_sent
                if ov is not None and ov[1] is not None:
                    last_sent = ov[1]
                if f.state != 0:
                    i += 1
                    continue
                if last_sent + interval > now or f.policy == 255 or f.nroutes:
                    return i, sends
                if not (isfinite(f.expires_at) and -EXPIRY_SANE < f.expires_at - now < EXPIRY_SANE):
                    return i, sends
                code = f.policy
            body = bodies[code]
            if body is None:
                body = bodies[code] = body_of(_POLICY_NAMES[code])
            sends += 1
            if later:
                queue.append((key, None, body, False))
                if ov is None:
                    ov = self._rowq[key] = [0, None, None, None]
                ov[0] += 1
                ov[1] = now
                ov[2] = body.version
                ov[3] = code
                self.queued += 1
            else:
                self._emit(key, <bytes>row, &f, now, body, now, body.version, 0)
            i += 1
        return i, sends

    def pump(self, queue, Py_ssize_t window, double now):
        cdef Py_ssize_t sent = 0
        cdef RowInfo f
        cdef object key, row, ov, last_sent, version, body
        cdef uint8_t held
        while queue and (not window or self.txns._outstanding < window):
            key = queue[0][0]
            if type(key) is not str or key in self._pinned or key in self._queued or key in self._cache:
                break
            row = self._get(key)
            if row is not None and (type(row) is not bytes or not _walk(<bytes>row, &f)
                                    or not (isfinite(f.expires_at)
                                            and -EXPIRY_SANE < f.expires_at - now < EXPIRY_SANE)):
                break  # the caller's object path reads it
            body = queue.popleft()[2]
            ov = self._rowq.get(key)
            last_sent = version = None
            if ov is not None:
                last_sent, version = ov[1], ov[2]
                ov[0] -= 1  # its fields stay while more wait: the row will hold them too
                if ov[0] <= 0:
                    del self._rowq[key]
            if row is None or f.owner != self.index or f.state > 1 or not self._holds(f.rec, <str>key):
                continue  # ended meanwhile: not held here any more
            held = f.held
            if last_sent is None:  # the row has them (an object was written since): as they are
                last_sent, version = f.last_sent, f.version
            else:
                held = 0
            self._emit(<str>key, <bytes>row, &f, now, body, last_sent, version, held)
            sent += 1
        return sent

    cdef int _emit(self, str key, bytes row, RowInfo* f, double now, body, double last_sent, object version_,
                   uint8_t held) except -1:
        cdef char buf[64]
        cdef char state[48]
        cdef int state_n, v6, w
        cdef uint32_t cseq
        cdef long long left
        cdef bytes new
        cdef char* q
        cdef str host
        cdef tuple dest
        cdef object wire, ct, ctype, data
        cdef int64_t version
        cdef object data_
        if f.cseq == 0xFFFFFFFF:
            raise ValueError("cseq must be 0..2**32-1")
        self.txns._clock(now)
        if not (-(1 << 63) <= version_ < (1 << 63)):
            raise OverflowError("a version out of the row's range")
        version = version_
        data_ = body.data
        if type(data_) is not bytes:
            raise TypeError("a body's data must be bytes")
        cseq = f.cseq + 1
        new = PyBytes_FromStringAndSize(PyBytes_AS_STRING(row), PyBytes_GET_SIZE(row))
        q = PyBytes_AS_STRING(new)
        memcpy(q + 4, &cseq, 4)
        memcpy(q + 12, &version, 8)
        memcpy(q + 36, &last_sent, 8)
        q[48] = <char>held
        if f.addr == 2:
            host = PyUnicode_DecodeUTF8(<const char*>f.host, f.host_n, "surrogateescape")
            v6 = ":" in host
        else:
            if inet_ntop(AF_INET if f.addr == 0 else AF_INET6, f.host, buf, sizeof(buf)) == NULL:
                raise ValueError("subscription row: an address that does not print")
            host = PyUnicode_DecodeASCII(buf, strlen(buf), NULL)
            v6 = f.addr == 1
        if f.form == 3:
            dest = (host, f.port, _S_TCP, f.extra)
            w = 2 + v6
        elif f.form == 4:
            dest = (host, f.port, _S_TLS, f.extra)
            w = 4 + v6
        else:
            dest = (host, f.port, _S_CLIENT)
            w = v6
        wire = self._wires[w]
        if wire is None:
            wire = tuple(self._wire(dest))
            if len(wire) != 2 or type(wire[0]) is not bytes or type(wire[1]) is not bytes:
                raise TypeError("wire must give (via, contact) as bytes")
            self._wires[w] = wire
        target, head = _notify_parts(new, key, (<tuple>wire)[1])
        left = <long long>(f.expires_at - now + 0.5)
        if f.state == 0:
            memcpy(state, b"active;expires=", 15)
            state_n = 15
        else:
            memcpy(state, b"pending;expires=", 16)
            state_n = 16
        state_n += _digits(state + state_n, <uint64_t>(left if left > 0 else 0), 10)
        ct = body.content_type
        ctype = self._ctypes.get(ct)
        if ctype is None:
            ctype = self._ctypes[ct] = ct.encode("ascii")
        data = self.txns._send(target, (<tuple>wire)[0], head, cseq, state, state_n, ctype, data_, dest,
                               f.form >= 3, key, now)
        self._send(data, dest)
        self.sent += 1
        if not self._put(key, new):
            self._lost(key, new)
        return 0
