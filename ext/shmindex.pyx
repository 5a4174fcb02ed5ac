# Shared-memory hash table, compiled twin of simplefast/_ref/shmindex.py.
#
# The reference module is the specification: the same algorithm on the same
# bytes (the differential tests compare whole memory images), the same
# results and the same errors. Read its "theory of operation" first; the
# layout and the lock / seqlock primitives are in ext/_shmlayout.pxd, the
# design in docs/shmindex.md. What this twin adds is what Python cannot do:
#
#  - real atomics (CAS on the pid-in-word stripe locks, fetch-add on the
#    header counters, acquire/release ordering around the seqlocks), so any
#    number of processes may use one table at once;
#  - the buffer is acquired once in __init__ (a Py_buffer kept until
#    __dealloc__) and every operation works on raw pointers into it: no
#    Python object per probe; `get` allocates only the bytes it returns;
#  - a wait for a lock held by another live process releases the GIL.

cimport cython
from cpython.buffer cimport PyBUF_FULL_RO, PyBuffer_IsContiguous, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint32_t, uint64_t, uintptr_t
from libc.string cimport memcmp, memcpy, memset

from _shmlayout cimport (
    SF_EMPTY, SF_HEADER_SIZE, SF_LIVE, SF_MAGIC, SF_SLOT_HEAD, SF_STRIPE_SIZE,
    SF_TOMB, SF_VERSION, sched_yield, sf_addi64, sf_cas32, sf_compact_settled, sf_fnv1a64, sf_ld64,
    sf_ldi64, sf_lock, sf_pid, sf_pid_setup, sf_read_retry, sf_relax, sf_repair, sf_seq_even, sf_shm_header,
    sf_shm_slot, sf_shm_stripe, sf_slot, sf_slot_key, sf_slot_value, sf_st64, sf_stripe_of,
    sf_table, sf_trylock, sf_unlock, sf_write_begin, sf_write_end,
)

import mmap
import os
import time

from simplefast.errors import TableFullError

LAYOUT_VERSION = SF_VERSION

if sf_pid_setup() != 0:
    raise OSError("pthread_atfork failed")

cdef uint64_t _M32 = 0xFFFFFFFFULL
cdef int _MAX_STRIPES = 1024
cdef int _MIN_STRIPE_WIDTH = 16
cdef int _PRUNE_MAX_STRIPES = 4
# put_if_greater: the counter, 8 bytes big-endian, opens the value
cdef int _COUNTER_BYTES = 8
# what _put did
cdef enum:
    _PUT_DONE = 0
    _PUT_REFUSED = 1
    _PUT_FULL = 2


# ---------------------------------------------------------------- geometry

def key_hash(key):
    """FNV-1a 64 of ``key``: the hash both twins place keys by (home = hash % slots)."""
    if type(key) is not bytes:
        raise TypeError(f"key must be bytes, not {type(key).__name__}")
    return sf_fnv1a64(<const unsigned char*>PyBytes_AS_STRING(key), <size_t>PyBytes_GET_SIZE(key))


def _check_int(name, value, lo, hi):
    if type(value) is not int:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _geometry(slots, key_max, value_max):
    """(slots, key_max, value_max, slot_size, nstripes, width, capacity,
    slots_offset, max_nonempty, total), as the reference computes them."""
    n = _check_int("slots", slots, 4, (1 << 32) - 1)
    km = _check_int("key_max", key_max, 1, 65535)
    vm = _check_int("value_max", value_max, 0, 1 << 24)
    slot_size = (SF_SLOT_HEAD + km + vm + 7) & ~7
    width = max(_MIN_STRIPE_WIDTH, -(-n // _MAX_STRIPES))
    nstripes = -(-n // width)
    slots_offset = SF_HEADER_SIZE + nstripes * SF_STRIPE_SIZE
    total = (slots_offset + n * slot_size + 63) & ~63
    return (n, km, vm, slot_size, nstripes, width, n * 3 // 4, slots_offset, n - max(1, n // 8), total)


def table_size(slots, key_max, value_max):
    """Bytes of shared memory one table needs (see the stub for the formula)."""
    return _geometry(slots, key_max, value_max)[9]


def create_shared(size):
    """An anonymous ``MAP_SHARED`` read-write mapping of ``size`` bytes (zero-filled)."""
    _check_int("size", size, 1, 1 << 48)
    m = mmap.mmap(-1, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        try:  # fewer TLB misses on a big table; shmem THP is often off ("never")
            m.madvise(mmap.MADV_HUGEPAGE)
        except OSError:
            pass
    return m


# ---------------------------------------------------------------- C core
# Everything below runs on raw pointers with no Python object; the functions
# that may wait for another process are called with the GIL released.

# Test hook: spins at the race-prone points (between two probe steps, between
# a writer's scan and its write, inside a compaction move) so that the
# multi-process tests meet the interleavings a loaded machine produces. Zero
# (one predictable branch) unless a test sets it with _debug_set_delay.
cdef unsigned long _delay = 0


cdef inline void _pause() noexcept nogil:
    cdef unsigned long k
    if _delay:
        for k in range(_delay):
            sf_relax()


def _debug_set_delay(spins):
    """Test hook: spin ``spins`` CPU pauses at each race-prone point of this process (0: off)."""
    global _delay
    _delay = _check_int("spins", spins, 0, 1 << 32)

cdef inline void _write_entry(sf_table* t, sf_shm_slot* sl, uint64_t hv,
                              const unsigned char* key, uint32_t klen,
                              const unsigned char* val, uint32_t vlen) noexcept nogil:
    sf_write_begin(sl)
    sl.state = SF_LIVE
    sl.hash = hv
    sl.klen = klen
    sl.vlen = vlen
    memcpy(sf_slot_key(sl), key, klen)
    memcpy(sf_slot_value(t, sl), val, vlen)
    sf_write_end(sl)


cdef inline uint64_t _stored_counter(const sf_table* t, sf_shm_slot* sl) noexcept nogil:
    """The counter of a LIVE slot: its first 8 value bytes, big-endian; a shorter
    value reads as if padded with zero bytes on the right."""
    cdef const unsigned char* v = sf_slot_value(t, sl)
    cdef uint32_t vlen = sl.vlen
    cdef uint64_t c = 0
    cdef uint32_t k
    for k in range(8):
        c = (c << 8) | (v[k] if k < vlen else 0)
    return c


cdef inline void _write_state(sf_shm_slot* sl, uint32_t state) noexcept nogil:
    sf_write_begin(sl)
    sl.state = state
    sf_write_end(sl)


cdef int64_t _scan(sf_table* t, const unsigned char* key, uint32_t klen, uint64_t hv,
                   uint64_t h, int64_t* free_out) noexcept nogil:
    """Slot holding ``key`` or -1; ``free_out``: the first free slot of its path or -1.

    Called with the home stripe held. Every slot is read under its seqlock
    (slots of other stripes may be changing).
    """
    cdef uint64_t i = h
    cdef uint64_t n
    cdef int64_t free = -1
    cdef sf_shm_slot* sl
    cdef uint32_t q, st
    cdef bint match
    for n in range(t.nslots):
        sl = sf_slot(t, i)
        while True:
            q = sf_seq_even(t, sl, i)
            st = sl.state
            match = (st == SF_LIVE and sl.hash == hv and sl.klen == klen
                     and memcmp(sf_slot_key(sl), key, klen) == 0)
            if not sf_read_retry(sl, q):
                break
        _pause()
        if match:
            free_out[0] = free
            return <int64_t>i
        if st == SF_EMPTY:
            free_out[0] = <int64_t>i if free < 0 else free
            return -1
        if st == SF_TOMB and free < 0:
            free = <int64_t>i
        i += 1
        if i == t.nslots:
            i = 0
    free_out[0] = free
    return -1


cdef void _prune(sf_table* t, uint64_t h, uint64_t p, uint32_t held1, uint32_t held2) noexcept nogil:
    """Turn into EMPTY every TOMB in [h, cluster end) that no LIVE path crosses.

    Opportunistic: the stripes from h to the cluster's terminating EMPTY slot
    are tried, never waited for; if one is busy, nothing is pruned.
    """
    cdef uint64_t n = t.nslots
    cdef uint64_t e = p + 1
    cdef uint64_t k, i, length
    cdef int64_t j, low, d
    cdef uint32_t sh, se, s, nst, ntaken = 0
    cdef uint32_t taken[4]
    cdef bint ok = True, found = False
    cdef sf_shm_slot* sl
    if e == n:
        e = 0
    for k in range(n):
        if sf_slot(t, e).state == SF_EMPTY:
            found = True
            break
        e += 1
        if e == n:
            e = 0
    if not found:
        return
    sh = sf_stripe_of(t, h)
    se = sf_stripe_of(t, e)
    nst = se - sh + 1 if e >= h else t.nstripes - sh + se + 1
    if nst > t.nstripes:
        nst = t.nstripes
    if nst > <uint32_t>_PRUNE_MAX_STRIPES:
        return
    for k in range(nst):
        s = <uint32_t>((sh + k) % t.nstripes)
        if s == held1 or s == held2:
            continue
        if not sf_trylock(t, s):
            ok = False
            break
        taken[ntaken] = s
        ntaken += 1
    _pause()
    if ok and sf_slot(t, e).state == SF_EMPTY:
        length = (e + n - h) % n
        low = <int64_t>length
        j = <int64_t>length - 1
        while j >= 0:
            i = (h + <uint64_t>j) % n
            sl = sf_slot(t, i)
            if sl.state == SF_LIVE:
                d = <int64_t>((i + n - sl.hash % n) % n)
                if j - d < low:
                    low = j - d
            elif sl.state == SF_TOMB and low > j:
                s = sf_stripe_of(t, i)
                t.stripes[s].nonempty -= 1
                sf_addi64(&t.hdr.nonempty, -1)
                _write_state(sl, SF_EMPTY)
            j -= 1
    for k in range(ntaken):
        sf_unlock(t, taken[k])


cdef void _move(sf_table* t, uint64_t i, uint64_t j) noexcept nogil:
    """Copy the LIVE entry of slot i into slot j (earlier on its path), then tomb i.

    The source is odd first and becomes a TOMB only after the destination is
    complete: a crash in between loses at most this entry, never two copies.
    """
    cdef sf_shm_slot* src = sf_slot(t, i)
    cdef sf_shm_slot* dst = sf_slot(t, j)
    cdef bint was_empty = dst.state == SF_EMPTY
    cdef uint32_t si = sf_stripe_of(t, i), sj = sf_stripe_of(t, j)
    sf_write_begin(src)
    _pause()
    _write_entry(t, dst, src.hash, sf_slot_key(src), src.klen, sf_slot_value(t, src), src.vlen)
    _pause()
    src.state = SF_TOMB
    sf_write_end(src)
    t.stripes[sj].live += 1
    t.stripes[si].live -= 1
    if was_empty:
        t.stripes[sj].nonempty += 1
        sf_addi64(&t.hdr.nonempty, 1)


cdef void _compact_locked(sf_table* t, uint32_t me) noexcept nogil:
    """Compaction proper; every stripe lock is held (see the reference's _compact)."""
    cdef uint64_t n = t.nslots
    cdef uint64_t epoch = sf_ld64(&t.hdr.compact) & _M32
    cdef uint64_t start = 0, k, i, j, end
    cdef int64_t live, total = 0
    cdef uint32_t s
    cdef sf_shm_slot* sl
    sf_st64(&t.hdr.compact, (<uint64_t>me << 32) | ((epoch + 1) & _M32))
    for i in range(n):
        if sf_slot(t, i).state == SF_EMPTY:
            start = i
            break
    # pass 1: every LIVE entry to the first non-LIVE slot of its path
    for k in range(1, n + 1):
        i = (start + k) % n
        sl = sf_slot(t, i)
        if sl.state != SF_LIVE:
            continue
        j = sl.hash % n
        while j != i and sf_slot(t, j).state == SF_LIVE:
            j += 1
            if j == n:
                j = 0
        if j != i:
            _move(t, i, j)
    # pass 2: no LIVE path crosses a TOMB any more; all become EMPTY
    for s in range(t.nstripes):
        live = 0
        i = <uint64_t>s * t.width
        end = i + t.width
        if end > n:
            end = n
        while i < end:
            sl = sf_slot(t, i)
            if sl.state == SF_TOMB:
                _write_state(sl, SF_EMPTY)
            elif sl.state == SF_LIVE:
                live += 1
            i += 1
        t.stripes[s].live = live
        t.stripes[s].nonempty = live
        total += live
    t.hdr.live = total
    t.hdr.nonempty = total
    t.hdr.compactions += 1
    sf_st64(&t.hdr.compact, (epoch + 2) & _M32)


# ---------------------------------------------------------------- the table

@cython.final
cdef class ShmTable:
    """One table in a writable buffer; see ``simplefast/_ext/shmindex.pyi``."""

    cdef Py_buffer _view
    cdef bint _has_view
    cdef sf_table _t
    cdef str _full_message

    def __cinit__(self):
        self._has_view = False
        memset(&self._t, 0, sizeof(sf_table))

    def __dealloc__(self):
        if self._has_view:
            PyBuffer_Release(&self._view)
            self._has_view = False

    def __init__(self, buf, slots, key_max, value_max, *, create, zeroed=False):
        g = _geometry(slots, key_max, value_max)
        if self._has_view:
            PyBuffer_Release(&self._view)
            self._has_view = False
            memset(&self._t, 0, sizeof(sf_table))
        try:
            PyObject_GetBuffer(buf, &self._view, PyBUF_FULL_RO)
        except TypeError:
            raise TypeError(f"buf must be a writable buffer, not {type(buf).__name__}") from None
        self._has_view = True
        if self._view.readonly:
            self._drop_view()
            raise TypeError(f"buf must be a writable buffer ({type(buf).__name__} is read-only)")
        if not PyBuffer_IsContiguous(&self._view, b'C'):
            self._drop_view()
            raise TypeError("buf must be a C-contiguous buffer")
        total = g[9]
        if self._view.len < total:
            have = self._view.len
            self._drop_view()
            raise ValueError(f"buffer is {have} bytes, the table needs {total}")
        if (<uintptr_t>self._view.buf) % 8:
            self._drop_view()
            raise ValueError("buffer is not 8-byte aligned")
        cdef char* base = <char*>self._view.buf
        cdef sf_shm_header* hdr = <sf_shm_header*>base
        if create:
            # zeroed: the caller vouches the buffer is all zero (fresh from create_shared),
            # so only the header is written and the slots' pages stay untouched until used
            memset(base, 0, <size_t>(SF_HEADER_SIZE if zeroed else total))
            hdr.magic = SF_MAGIC
            hdr.version = SF_VERSION
            hdr.header_size = SF_HEADER_SIZE
            hdr.slots = g[0]
            hdr.key_max = g[1]
            hdr.value_max = g[2]
            hdr.slot_size = g[3]
            hdr.nstripes = g[4]
            hdr.stripe_width = g[5]
            hdr.stripe_size = SF_STRIPE_SIZE
            hdr.capacity = g[6]
            hdr.slots_offset = g[7]
            hdr.max_nonempty = g[8]
        else:
            try:
                self._check_header(hdr, g)
            except ValueError:
                self._drop_view()
                raise
        self._t.base = base
        self._t.hdr = hdr
        self._t.stripes = <sf_shm_stripe*>(base + SF_HEADER_SIZE)
        self._t.slots = base + <uint64_t>g[7]
        self._t.nslots = g[0]
        self._t.key_max = g[1]
        self._t.value_max = g[2]
        self._t.slot_size = g[3]
        self._t.nstripes = g[4]
        self._t.width = g[5]
        self._t.capacity = g[6]
        self._t.max_nonempty = g[8]
        self._full_message = f"shared table is full: {g[6]} entries (75% of {g[0]} slots)"

    cdef void _drop_view(self):
        PyBuffer_Release(&self._view)
        self._has_view = False

    cdef _check_header(self, sf_shm_header* hdr, tuple g):
        if hdr.magic != SF_MAGIC:
            raise ValueError(f"buffer holds no simplefast shared table (magic {hdr.magic:#018x})")
        if hdr.version != SF_VERSION:
            raise ValueError(f"shared table layout version {hdr.version}, this build reads {SF_VERSION}")
        fields = (
            ("header_size", hdr.header_size, SF_HEADER_SIZE),
            ("slots", hdr.slots, g[0]),
            ("key_max", hdr.key_max, g[1]),
            ("value_max", hdr.value_max, g[2]),
            ("slot_size", hdr.slot_size, g[3]),
            ("nstripes", hdr.nstripes, g[4]),
            ("stripe_width", hdr.stripe_width, g[5]),
            ("stripe_size", hdr.stripe_size, SF_STRIPE_SIZE),
            ("capacity", hdr.capacity, g[6]),
            ("slots_offset", hdr.slots_offset, g[7]),
            ("max_nonempty", hdr.max_nonempty, g[8]),
        )
        for name, have, expected in fields:
            if have != expected:
                raise ValueError(
                    f"shared table geometry mismatch: {name} is {have} in the buffer, {expected} requested"
                )

    cdef inline void _ready(self) except *:
        if not self._has_view:
            raise ValueError("ShmTable is not initialised")

    # ------------------------------------------------------------ locks

    cdef inline void _lock(self, uint32_t s):
        cdef sf_table* t = &self._t
        if not sf_cas32(&t.stripes[s].owner, 0, sf_pid()):
            with nogil:
                sf_lock(t, s)

    cdef inline bint _lock_second(self, uint32_t s, uint32_t first):
        """Take ``s`` while holding ``first``: wait only upwards, else just try."""
        if s > first:
            self._lock(s)
            return True
        return sf_trylock(&self._t, s)

    cdef inline void _backoff(self):
        with nogil:
            sched_yield()

    # ------------------------------------------------------------ checks

    cdef inline int _check_value_len(self, Py_ssize_t vlen) except -1:
        if vlen > self._t.value_max:
            raise ValueError(f"value is {vlen} bytes, longer than value_max {self._t.value_max}")
        return 0

    cdef inline Py_ssize_t _check_key(self, key) except -1:
        if type(key) is not bytes:
            raise TypeError(f"key must be bytes, not {type(key).__name__}")
        cdef Py_ssize_t klen = PyBytes_GET_SIZE(key)
        if klen > self._t.key_max:
            raise ValueError(f"key is {klen} bytes, longer than key_max {self._t.key_max}")
        return klen

    # ------------------------------------------------------------ API

    @property
    def slots(self):
        return self._t.nslots

    @property
    def key_max(self):
        return self._t.key_max

    @property
    def value_max(self):
        return self._t.value_max

    @property
    def capacity(self):
        return self._t.capacity

    def get(self, key):
        self._ready()
        cdef sf_table* t = &self._t
        cdef uint32_t klen = <uint32_t>self._check_key(key)
        cdef const unsigned char* kp = <const unsigned char*>PyBytes_AS_STRING(key)
        cdef uint64_t hv = sf_fnv1a64(kp, klen)
        cdef uint64_t h = hv % t.nslots
        cdef uint64_t c1, i, n
        cdef sf_shm_slot* sl
        cdef uint32_t q, st, vlen
        cdef object out
        while True:
            c1 = sf_ld64(&t.hdr.compact)
            i = h
            for n in range(t.nslots):
                sl = sf_slot(t, i)
                while True:
                    q = sf_seq_even(t, sl, i)
                    st = sl.state
                    out = None
                    if (st == SF_LIVE and sl.hash == hv and sl.klen == klen
                            and memcmp(sf_slot_key(sl), kp, klen) == 0):
                        vlen = sl.vlen
                        if vlen > t.value_max:  # torn read; the seq check below sends us back
                            vlen = t.value_max
                        out = PyBytes_FromStringAndSize(NULL, vlen)
                        memcpy(PyBytes_AS_STRING(out), sf_slot_value(t, sl), vlen)
                    if not sf_read_retry(sl, q):
                        break
                if out is not None:
                    return out
                if st == SF_EMPTY:
                    break
                _pause()
                i += 1
                if i == t.nslots:
                    i = 0
            # a miss stands unless a compaction ran (or runs) meanwhile
            if c1 == sf_ld64(&t.hdr.compact) and (c1 & 1) == 0:
                return None
            with nogil:
                sf_compact_settled(t)

    def put(self, key, value):
        self._ready()
        cdef uint32_t klen = <uint32_t>self._check_key(key)
        if type(value) is not bytes:
            raise TypeError(f"value must be bytes, not {type(value).__name__}")
        cdef Py_ssize_t vlen = PyBytes_GET_SIZE(value)
        self._check_value_len(vlen)
        if self._put(<const unsigned char*>PyBytes_AS_STRING(key), klen,
                     <const unsigned char*>PyBytes_AS_STRING(value), <uint32_t>vlen,
                     False, 0) == _PUT_FULL:
            raise TableFullError(self._full_message)

    def put_if_greater(self, key, counter, tail=b""):
        """Write ``counter`` (8 bytes big-endian) + ``tail`` unless the stored counter
        is as high: compared under the home stripe lock (see the stub)."""
        self._ready()
        cdef uint32_t klen = <uint32_t>self._check_key(key)
        _check_int("counter", counter, 0, 0xFFFFFFFFFFFFFFFF)
        if type(tail) is not bytes:
            raise TypeError(f"tail must be bytes, not {type(tail).__name__}")
        cdef Py_ssize_t vlen = _COUNTER_BYTES + PyBytes_GET_SIZE(tail)
        self._check_value_len(vlen)
        cdef bytes value = counter.to_bytes(_COUNTER_BYTES, "big") + tail
        cdef int r = self._put(<const unsigned char*>PyBytes_AS_STRING(key), klen,
                               <const unsigned char*>PyBytes_AS_STRING(value), <uint32_t>vlen,
                               True, <uint64_t>counter)
        if r == _PUT_FULL:
            raise TableFullError(self._full_message)
        return r == _PUT_DONE

    cdef int _put(self, const unsigned char* key, uint32_t klen,
                  const unsigned char* val, uint32_t vlen,
                  bint conditional, uint64_t counter):
        """Insert or replace: _PUT_DONE, or _PUT_FULL (a new key, no room). With
        ``conditional``, an existing entry whose stored counter is not lower
        than ``counter`` is left alone: _PUT_REFUSED, nothing written."""
        cdef sf_table* t = &self._t
        cdef uint64_t hv = sf_fnv1a64(key, klen)
        cdef uint64_t h = hv % t.nslots
        cdef uint32_t sh = sf_stripe_of(t, h)
        cdef uint32_t sp, sf
        cdef int64_t found, free, found2, free2
        cdef sf_shm_slot* sl
        cdef bint was_empty
        cdef int compactions = 0
        while True:
            self._lock(sh)
            found = _scan(t, key, klen, hv, h, &free)
            if found >= 0:  # replace in place
                # the home lock serializes every writer of this key and keeps
                # compaction out: the slot holds still from here to the write
                if conditional and _stored_counter(t, sf_slot(t, <uint64_t>found)) >= counter:
                    sf_unlock(t, sh)
                    return _PUT_REFUSED
                if conditional:
                    _pause()  # a test widens the compare-to-write window here
                sp = sf_stripe_of(t, <uint64_t>found)
                if sp != sh and not self._lock_second(sp, sh):
                    sf_unlock(t, sh)
                    self._backoff()
                    continue
                sl = sf_slot(t, <uint64_t>found)
                sf_write_begin(sl)
                sl.vlen = vlen
                memcpy(sf_slot_value(t, sl), val, vlen)
                sf_write_end(sl)
                if sp != sh:
                    sf_unlock(t, sp)
                sf_unlock(t, sh)
                return _PUT_DONE
            if free < 0:  # no free slot on the whole ring: cannot happen below max_nonempty
                sf_unlock(t, sh)
                return _PUT_FULL
            sf = sf_stripe_of(t, <uint64_t>free)
            if sf != sh:
                _pause()
                if not self._lock_second(sf, sh):
                    sf_unlock(t, sh)
                    self._backoff()
                    continue
                found2 = _scan(t, key, klen, hv, h, &free2)
                if found2 != -1 or free2 != free:
                    sf_unlock(t, sf)
                    sf_unlock(t, sh)
                    continue
            sl = sf_slot(t, <uint64_t>free)
            was_empty = sl.state == SF_EMPTY
            if sf_addi64(&t.hdr.live, 1) + 1 > t.capacity:
                sf_addi64(&t.hdr.live, -1)
                if sf != sh:
                    sf_unlock(t, sf)
                sf_unlock(t, sh)
                return _PUT_FULL
            if was_empty and sf_addi64(&t.hdr.nonempty, 1) + 1 > t.max_nonempty:
                sf_addi64(&t.hdr.nonempty, -1)
                sf_addi64(&t.hdr.live, -1)
                if sf != sh:
                    sf_unlock(t, sf)
                sf_unlock(t, sh)
                if compactions == 4:  # others keep refilling: give up as full
                    return _PUT_FULL
                compactions += 1
                self._compact(False)
                continue
            t.stripes[sf].live += 1
            if was_empty:
                t.stripes[sf].nonempty += 1
            _pause()
            _write_entry(t, sl, hv, key, klen, val, vlen)
            if sf != sh:
                sf_unlock(t, sf)
            sf_unlock(t, sh)
            return _PUT_DONE

    def delete(self, key):
        self._ready()
        cdef sf_table* t = &self._t
        cdef uint32_t klen = <uint32_t>self._check_key(key)
        cdef const unsigned char* kp = <const unsigned char*>PyBytes_AS_STRING(key)
        cdef uint64_t hv = sf_fnv1a64(kp, klen)
        cdef uint64_t h = hv % t.nslots
        cdef uint32_t sh = sf_stripe_of(t, h)
        cdef uint32_t sp
        cdef int64_t found, free
        while True:
            self._lock(sh)
            found = _scan(t, kp, klen, hv, h, &free)
            if found < 0:
                sf_unlock(t, sh)
                return False
            sp = sf_stripe_of(t, <uint64_t>found)
            if sp != sh and not self._lock_second(sp, sh):
                sf_unlock(t, sh)
                self._backoff()
                continue
            t.stripes[sp].live -= 1
            sf_addi64(&t.hdr.live, -1)
            _write_state(sf_slot(t, <uint64_t>found), SF_TOMB)
            _prune(t, h, <uint64_t>found, sh, sp)
            if sp != sh:
                sf_unlock(t, sp)
            sf_unlock(t, sh)
            return True

    def __len__(self):
        self._ready()
        cdef int64_t live = sf_ldi64(&self._t.hdr.live)
        return live if live > 0 else 0

    def keys(self):
        self._ready()
        cdef sf_table* t = &self._t
        cdef uint64_t c1, i
        cdef uint32_t q, klen
        cdef sf_shm_slot* sl
        cdef list out
        cdef object k
        while True:
            with nogil:
                c1 = sf_compact_settled(t)
            out = []
            for i in range(t.nslots):
                sl = sf_slot(t, i)
                while True:
                    q = sf_seq_even(t, sl, i)
                    k = None
                    if sl.state == SF_LIVE:
                        klen = sl.klen
                        if klen > t.key_max:  # torn read; retried below
                            klen = t.key_max
                        k = PyBytes_FromStringAndSize(<char*>sf_slot_key(sl), klen)
                    if not sf_read_retry(sl, q):
                        break
                if k is not None:
                    out.append(k)
            if sf_ld64(&t.hdr.compact) == c1:
                return list(dict.fromkeys(out))

    def stats(self):
        self._ready()
        cdef sf_shm_header* hdr = self._t.hdr
        cdef int64_t live = sf_ldi64(&hdr.live)
        cdef int64_t tombs = sf_ldi64(&hdr.nonempty) - live
        return {
            "count": live if live > 0 else 0,
            "capacity": self._t.capacity,
            "slots": self._t.nslots,
            "tombstones": tombs if tombs > 0 else 0,
            "lock_steals": sf_ld64(&hdr.lock_steals),
            "compactions": sf_ld64(&hdr.compactions),
        }

    def compact(self):
        self._ready()
        self._compact(True)

    cdef void _compact(self, bint force):
        cdef sf_table* t = &self._t
        cdef uint32_t s
        cdef uint32_t me = sf_pid()
        for s in range(t.nstripes):
            self._lock(s)
        if force or sf_ldi64(&t.hdr.nonempty) >= t.max_nonempty:
            with nogil:
                _compact_locked(t, me)
        s = t.nstripes
        while s > 0:
            s -= 1
            sf_unlock(t, s)

    # ------------------------------------------------------------ test hooks

    def _debug_hold_lock(self, key, seconds, *, mid_write=False, ready_fd=-1):
        self._ready()
        cdef sf_table* t = &self._t
        cdef uint32_t klen = <uint32_t>self._check_key(key)
        cdef const unsigned char* kp = <const unsigned char*>PyBytes_AS_STRING(key)
        cdef uint64_t hv = sf_fnv1a64(kp, klen)
        cdef uint64_t h = hv % t.nslots
        cdef uint32_t sh = sf_stripe_of(t, h)
        cdef uint32_t st = sh
        cdef int64_t found, free, target
        cdef sf_shm_slot* sl
        cdef bint was_empty
        self._lock(sh)
        if mid_write:
            found = _scan(t, kp, klen, hv, h, &free)
            target = found if found >= 0 else free
            if target < 0:
                sf_unlock(t, sh)
                raise TableFullError(self._full_message)
            st = sf_stripe_of(t, <uint64_t>target)
            if st != sh:
                self._lock(st)
            sl = sf_slot(t, <uint64_t>target)
            if found < 0:  # an insert, stopped where a crash would stop it
                was_empty = sl.state == SF_EMPTY
                sf_addi64(&t.hdr.live, 1)
                t.stripes[st].live += 1
                if was_empty:
                    sf_addi64(&t.hdr.nonempty, 1)
                    t.stripes[st].nonempty += 1
                sf_write_begin(sl)
                sl.state = SF_LIVE
                sl.hash = hv
                sl.klen = klen
                sl.vlen = 0
                memcpy(sf_slot_key(sl), kp, klen)
            else:  # a replace, stopped the same way
                sf_write_begin(sl)
                sl.vlen = 0
        if ready_fd >= 0:
            os.write(ready_fd, b"!")
        time.sleep(seconds)
        if mid_write:
            sf_repair(t, st, 0)  # what a stealer would find and do
            if st != sh:
                sf_unlock(t, st)
        sf_unlock(t, sh)
