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
from libc.stdio cimport snprintf
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp, memcpy

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

    def send(self, bytes target, bytes via, bytes head, cseq, bytes state, bytes ctype, bytes body,
             dest, reliable, token, double now):
        cdef char num[48]
        cdef char hexn[24]
        cdef char clen[32]
        cdef int ln, lh, lc
        cdef Py_ssize_t size, j, lb
        cdef uint64_t n
        cdef char* p
        cdef bytes data
        cseq = operator.index(cseq)
        self._clock(now)
        if cseq < 0 or cseq > 0xFFFFFFFF:
            raise ValueError("cseq must be 0..2**32-1")
        n = self._n + 1
        j = <Py_ssize_t>(n & <uint64_t>(self._cap - 1))
        while self._slots[j].state != FREE:
            self._grow()
            j = <Py_ssize_t>(n & <uint64_t>(self._cap - 1))
        self._n = n
        lh = snprintf(hexn, sizeof(hexn), "%llx", <unsigned long long>n)
        ln = snprintf(num, sizeof(num), "%lu", <unsigned long>cseq)
        lb = PyBytes_GET_SIZE(body)
        lc = snprintf(clen, sizeof(clen), "%zd", lb)
        size = (7 + PyBytes_GET_SIZE(target) + 15 + PyBytes_GET_SIZE(via) + 8 + PyBytes_GET_SIZE(self._prefix_b)
                + lh + 2 + PyBytes_GET_SIZE(head) + 6 + ln + 29 + PyBytes_GET_SIZE(state) + 2
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
        p = _put(p, PyBytes_AS_STRING(state), PyBytes_GET_SIZE(state))
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


cdef inline char* _put(char* p, const char* s, Py_ssize_t n):
    memcpy(p, s, n)
    return p + n
