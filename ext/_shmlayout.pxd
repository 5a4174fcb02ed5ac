# _shmlayout: the memory layout of simplefast's shared-memory tables, and the
# primitives every module that touches such a mapping uses (atomics, the
# FNV-1a hash, the per-slot seqlock, the pid-owned stripe locks and their
# recovery from a dead owner). Header-only: cimport it by bare name,
#     from _shmlayout cimport sf_table, sf_slot, sf_lock, ...
# ext/shmindex.pyx builds the tables on it; ext/fanout.pyx reads them with it.
# simplefast/_ref/shmindex.py implements the same layout in pure Python; the
# differential tests compare the two memory images byte for byte.
#
# Layout, version 1 (native byte order, offsets in bytes; docs/shmindex.md)
# ------------------------------------------------------------------------
# One table is one contiguous region of the mapping, 8-byte aligned (64 is
# better), of table_size(slots, key_max, value_max) bytes, a multiple of 64:
#
#   [header 256][stripes: nstripes x 64][slots: slots x slot_size][pad to 64]
#
# header (sf_shm_header), four cache lines:
#     0 u64 magic        b"SFSHMTB1" read as a native u64
#     8 u32 version      SF_VERSION
#    12 u32 header_size  256
#    16 u64 slots        number of slots (4 .. 2**32-1)
#    24 u32 key_max      longest key, bytes (1 .. 65535)
#    28 u32 value_max    longest value, bytes (0 .. 16 MiB)
#    32 u32 slot_size    align8(24 + key_max + value_max)
#    36 u32 nstripes     ceil(slots / stripe_width) (<= 1024)
#    40 u32 stripe_width max(16, ceil(slots / 1024)) consecutive slots per lock
#    44 u32 stripe_size  64
#    48 u64 capacity     slots * 3 // 4: most LIVE entries (load factor 0.75)
#    56 u64 slots_offset 256 + nstripes * 64
#    64 i64 live         LIVE slots                      } written by every
#    72 i64 nonempty     LIVE + TOMB slots               } insert and delete
#   128 u64 compact      pid << 32 | epoch: epoch is odd while `pid` compacts
#   136 u64 compactions  completed compactions
#   192 u64 lock_steals  locks taken over from dead owners
#   200 u64 max_nonempty slots - max(1, slots // 8): LIVE + TOMB never exceed it
#
# stripe (sf_shm_stripe), one cache line per lock; stripe s covers slots
# [s * stripe_width, min((s + 1) * stripe_width, slots)):
#     0 u32 owner        pid of the process holding the lock, 0 when free
#     8 i64 live         LIVE slots of this stripe      } exact: a stealer
#    16 i64 nonempty     LIVE + TOMB slots of it        } recounts them
#
# slot (sf_shm_slot + key + value):
#     0 u32 seq          seqlock: odd while a writer is inside the slot
#     4 u32 state        0 EMPTY, 1 LIVE, 2 TOMB (deleted)
#     8 u64 hash         FNV-1a 64 of the key (valid when LIVE)
#    16 u32 klen
#    20 u32 vlen
#    24 key[key_max], then value[value_max]; bytes past klen / vlen keep
#       whatever an earlier entry left there (both twins write the same bytes)
#
# Placement: linear probing from home = hash % slots. A LIVE entry is always
# reachable: no EMPTY slot lies between its home and its slot.

from libc.stdint cimport int64_t, uint32_t, uint64_t


cdef extern from *:
    """
    #include <errno.h>
    #include <pthread.h>
    #include <sched.h>
    #include <signal.h>
    #include <stddef.h>
    #include <stdint.h>
    #include <sys/types.h>
    #include <unistd.h>

    typedef struct {
        uint64_t magic;
        uint32_t version;
        uint32_t header_size;
        uint64_t slots;
        uint32_t key_max;
        uint32_t value_max;
        uint32_t slot_size;
        uint32_t nstripes;
        uint32_t stripe_width;
        uint32_t stripe_size;
        uint64_t capacity;
        uint64_t slots_offset;
        int64_t live;
        int64_t nonempty;
        uint8_t _pad1[48];
        uint64_t compact;
        uint64_t compactions;
        uint8_t _pad2[48];
        uint64_t lock_steals;
        uint64_t max_nonempty;
        uint8_t _pad3[48];
    } sf_shm_header;

    typedef struct {
        uint32_t owner;
        uint32_t _pad0;
        int64_t live;
        int64_t nonempty;
        uint8_t _pad[40];
    } sf_shm_stripe;

    typedef struct {
        uint32_t seq;
        uint32_t state;
        uint64_t hash;
        uint32_t klen;
        uint32_t vlen;
    } sf_shm_slot;

    _Static_assert(sizeof(sf_shm_header) == 256, "sf_shm_header is 256 bytes");
    _Static_assert(offsetof(sf_shm_header, slots_offset) == 56, "header line 0");
    _Static_assert(offsetof(sf_shm_header, live) == 64, "header line 1");
    _Static_assert(offsetof(sf_shm_header, compact) == 128, "header line 2");
    _Static_assert(offsetof(sf_shm_header, lock_steals) == 192, "header line 3");
    _Static_assert(offsetof(sf_shm_header, max_nonempty) == 200, "header line 3");
    _Static_assert(sizeof(sf_shm_stripe) == 64, "one cache line per stripe");
    _Static_assert(offsetof(sf_shm_stripe, live) == 8, "stripe counters");
    _Static_assert(sizeof(sf_shm_slot) == 24, "slot head is 24 bytes");

    /* b"SFSHMTB1" read as a little-endian u64 */
    #define SF_MAGIC 0x3142544D48534653ULL

    /* Atomics on the shared mapping (GCC/Clang builtins; lock-free for 4 and
       8 bytes on every 64-bit target, so they work across processes). */
    static inline uint32_t sf_ld32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline uint32_t sf_ld32_rlx(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
    static inline void sf_st32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline void sf_st32_rlx(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
    static inline int sf_cas32(uint32_t *p, uint32_t expected, uint32_t desired) {
        return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
    }
    static inline uint64_t sf_ld64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void sf_st64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline int sf_cas64(uint64_t *p, uint64_t expected, uint64_t desired) {
        return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
    }
    static inline uint64_t sf_add64(uint64_t *p, uint64_t d) { return __atomic_fetch_add(p, d, __ATOMIC_ACQ_REL); }
    static inline int64_t sf_ldi64(const int64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void sf_sti64(int64_t *p, int64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline int64_t sf_addi64(int64_t *p, int64_t d) { return __atomic_fetch_add(p, d, __ATOMIC_ACQ_REL); }
    static inline void sf_fence_acq(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
    static inline void sf_fence_rel(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }
    static inline void sf_relax(void) {
    #if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
    #elif defined(__aarch64__)
        __asm__ __volatile__("yield" ::: "memory");
    #else
        __asm__ __volatile__("" ::: "memory");
    #endif
    }

    /* The pid written into lock words: cached, refreshed in every forked
       child by a pthread_atfork handler (glibc no longer caches getpid). A
       module calls sf_pid_setup() once when it is imported. */
    static uint32_t sf_my_pid = 0;
    static void sf_atfork_child(void) { sf_my_pid = (uint32_t)getpid(); }
    static int sf_pid_setup(void) {
        sf_my_pid = (uint32_t)getpid();
        return pthread_atfork(NULL, NULL, sf_atfork_child);
    }
    static inline uint32_t sf_pid(void) { return sf_my_pid; }

    /* Is the process that owns a lock word still there? kill(pid, 0) fails
       with ESRCH only when no such process exists; EPERM means it exists. A
       zombie counts as alive until its parent reaps it. */
    static inline int sf_alive(uint32_t pid) {
        if (pid == 0) return 0;
        if (kill((pid_t)pid, 0) == 0) return 1;
        return errno != ESRCH;
    }

    /* FNV-1a, 64 bits: h = 0xcbf29ce484222325; per octet h ^= b; h *= 0x100000001b3. */
    static inline uint64_t sf_fnv1a64(const unsigned char *p, size_t n) {
        uint64_t h = 0xcbf29ce484222325ULL;
        for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 0x100000001b3ULL; }
        return h;
    }
    """
    ctypedef struct sf_shm_header:
        uint64_t magic
        uint32_t version
        uint32_t header_size
        uint64_t slots
        uint32_t key_max
        uint32_t value_max
        uint32_t slot_size
        uint32_t nstripes
        uint32_t stripe_width
        uint32_t stripe_size
        uint64_t capacity
        uint64_t slots_offset
        int64_t live
        int64_t nonempty
        uint64_t compact
        uint64_t compactions
        uint64_t lock_steals
        uint64_t max_nonempty

    ctypedef struct sf_shm_stripe:
        uint32_t owner
        int64_t live
        int64_t nonempty

    ctypedef struct sf_shm_slot:
        uint32_t seq
        uint32_t state
        uint64_t hash
        uint32_t klen
        uint32_t vlen

    uint32_t sf_ld32(const uint32_t* p) noexcept nogil
    uint32_t sf_ld32_rlx(const uint32_t* p) noexcept nogil
    void sf_st32(uint32_t* p, uint32_t v) noexcept nogil
    void sf_st32_rlx(uint32_t* p, uint32_t v) noexcept nogil
    bint sf_cas32(uint32_t* p, uint32_t expected, uint32_t desired) noexcept nogil
    uint64_t sf_ld64(const uint64_t* p) noexcept nogil
    void sf_st64(uint64_t* p, uint64_t v) noexcept nogil
    bint sf_cas64(uint64_t* p, uint64_t expected, uint64_t desired) noexcept nogil
    uint64_t sf_add64(uint64_t* p, uint64_t d) noexcept nogil
    int64_t sf_ldi64(const int64_t* p) noexcept nogil
    void sf_sti64(int64_t* p, int64_t v) noexcept nogil
    int64_t sf_addi64(int64_t* p, int64_t d) noexcept nogil
    void sf_fence_acq() noexcept nogil
    void sf_fence_rel() noexcept nogil
    void sf_relax() noexcept nogil
    int sf_pid_setup() noexcept nogil
    uint32_t sf_pid() noexcept nogil
    bint sf_alive(uint32_t pid) noexcept nogil
    uint64_t sf_fnv1a64(const unsigned char* p, size_t n) noexcept nogil
    int sched_yield() noexcept nogil
    const uint64_t SF_MAGIC


cdef enum:
    SF_VERSION = 1
    SF_HEADER_SIZE = 256
    SF_STRIPE_SIZE = 64
    SF_SLOT_HEAD = 24
    SF_MAX_STRIPES = 1024
    SF_MIN_STRIPE_WIDTH = 16
    # slot states
    SF_EMPTY = 0
    SF_LIVE = 1
    SF_TOMB = 2
    # waiting: spin this many times with a pause, then yield the CPU and look
    # at the owner's pid every SF_CHECK_MASK + 1 yields
    SF_SPIN = 256
    SF_CHECK_MASK = 15



# A process-local view of one table: where it is and its geometry (copied out
# of the header when the table is attached). Never stored in shared memory.
cdef struct sf_table:
    char* base
    sf_shm_header* hdr
    sf_shm_stripe* stripes
    char* slots
    uint64_t nslots
    uint64_t slot_size
    uint64_t width
    uint32_t nstripes
    uint32_t key_max
    uint32_t value_max
    int64_t capacity
    int64_t max_nonempty


# ---------------------------------------------------------------- accessors

cdef inline sf_shm_slot* sf_slot(const sf_table* t, uint64_t i) noexcept nogil:
    return <sf_shm_slot*>(t.slots + i * t.slot_size)


cdef inline unsigned char* sf_slot_key(sf_shm_slot* sl) noexcept nogil:
    return (<unsigned char*>sl) + SF_SLOT_HEAD


cdef inline unsigned char* sf_slot_value(const sf_table* t, sf_shm_slot* sl) noexcept nogil:
    return (<unsigned char*>sl) + SF_SLOT_HEAD + t.key_max


cdef inline uint32_t sf_stripe_of(const sf_table* t, uint64_t i) noexcept nogil:
    return <uint32_t>(i // t.width)


cdef inline uint64_t sf_home(const sf_table* t, uint64_t h) noexcept nogil:
    return h % t.nslots


# ---------------------------------------------------------------- seqlock
# Writers hold the stripe lock of the slot they write, so a slot has at most
# one writer: the counter needs no read-modify-write. Readers take no lock:
# read seq (even), read the fields, then check seq did not move.

cdef inline void sf_write_begin(sf_shm_slot* sl) noexcept nogil:
    sf_st32_rlx(&sl.seq, sf_ld32_rlx(&sl.seq) + 1)
    sf_fence_rel()  # the odd count is visible before any field changes


cdef inline void sf_write_end(sf_shm_slot* sl) noexcept nogil:
    sf_st32(&sl.seq, sf_ld32_rlx(&sl.seq) + 1)  # release: fields before the even count


cdef inline bint sf_read_retry(sf_shm_slot* sl, uint32_t seq) noexcept nogil:
    """True when the fields read since ``seq`` may be torn: read them again."""
    sf_fence_acq()
    return sf_ld32_rlx(&sl.seq) != seq


# ---------------------------------------------------------------- locks
# A stripe lock is a u32 holding the owner's pid. Take: CAS 0 -> pid. Give
# back: store 0. A waiter that has spun SF_SPIN times starts yielding and,
# every SF_CHECK_MASK + 1 yields, asks kill(owner, 0) whether the owner still
# exists; when it does not (ESRCH), the waiter CASes the dead pid to its own
# (only one waiter wins), counts a steal and repairs the stripe.

cdef inline void sf_repair(sf_table* t, uint32_t s, uint32_t dead) noexcept nogil:
    """Make stripe ``s`` consistent after its owner died (the caller holds it now).

    A slot left odd was being written: it becomes a tombstone (what was in it
    is lost: at most the one entry that write was about). The stripe's
    counters are recounted from its slots and the difference is carried to
    the header's. A compaction flag left by the dead process is cleared.
    """
    cdef uint64_t i = <uint64_t>s * t.width
    cdef uint64_t end = i + t.width
    cdef int64_t live = 0, nonempty = 0
    cdef uint32_t q, st
    cdef uint64_t c
    cdef sf_shm_slot* sl
    if end > t.nslots:
        end = t.nslots
    while i < end:
        sl = sf_slot(t, i)
        q = sf_ld32_rlx(&sl.seq)
        if q & 1:
            sl.state = SF_TOMB
            sf_st32(&sl.seq, q + 1)
        st = sl.state
        if st == SF_LIVE:
            live += 1
            nonempty += 1
        elif st == SF_TOMB:
            nonempty += 1
        i += 1
    if live != t.stripes[s].live:
        sf_addi64(&t.hdr.live, live - t.stripes[s].live)
        t.stripes[s].live = live
    if nonempty != t.stripes[s].nonempty:
        sf_addi64(&t.hdr.nonempty, nonempty - t.stripes[s].nonempty)
        t.stripes[s].nonempty = nonempty
    c = sf_ld64(&t.hdr.compact)
    if dead != 0 and (c & 1) and <uint32_t>(c >> 32) == dead:
        sf_cas64(&t.hdr.compact, c, (c + 1) & 0xFFFFFFFFULL)


cdef inline bint sf_steal(sf_table* t, uint32_t s, uint32_t owner) noexcept nogil:
    """Take stripe ``s`` from ``owner``, who is dead; False if someone else did first."""
    if sf_cas32(&t.stripes[s].owner, owner, sf_pid()):
        sf_add64(&t.hdr.lock_steals, 1)
        sf_repair(t, s, owner)
        return True
    return False


cdef inline void sf_lock(sf_table* t, uint32_t s) noexcept nogil:
    """Take stripe ``s``, waiting for a live owner and robbing a dead one."""
    cdef uint32_t me = sf_pid()
    cdef uint32_t owner
    cdef unsigned long n = 0
    while True:
        if sf_cas32(&t.stripes[s].owner, 0, me):
            return
        n += 1
        if n < SF_SPIN:
            sf_relax()
            continue
        if (n & SF_CHECK_MASK) == 0:
            owner = sf_ld32(&t.stripes[s].owner)
            if owner != 0 and not sf_alive(owner) and sf_steal(t, s, owner):
                return
        sched_yield()


cdef inline bint sf_trylock(sf_table* t, uint32_t s) noexcept nogil:
    """Take stripe ``s`` if it is free (after a short spin) or its owner is dead."""
    cdef uint32_t me = sf_pid()
    cdef uint32_t owner
    cdef int n
    for n in range(SF_SPIN):
        if sf_cas32(&t.stripes[s].owner, 0, me):
            return True
        sf_relax()
    owner = sf_ld32(&t.stripes[s].owner)
    if owner != 0 and not sf_alive(owner):
        return sf_steal(t, s, owner)
    return False


cdef inline void sf_unlock(sf_table* t, uint32_t s) noexcept nogil:
    sf_st32(&t.stripes[s].owner, 0)


cdef inline uint32_t sf_seq_even(sf_table* t, sf_shm_slot* sl, uint64_t i) noexcept nogil:
    """The slot's sequence count once it is even (no writer inside).

    Waits out a live writer; when the writer is dead (its stripe lock is held
    by a pid that no longer exists) steals the lock, which repairs the slot,
    and gives it back. Never waits for a lock, so a writer may call it while
    holding other stripes.
    """
    cdef uint32_t q, owner, s
    cdef unsigned long n = 0
    while True:
        q = sf_ld32(&sl.seq)
        if (q & 1) == 0:
            return q
        n += 1
        if n < SF_SPIN:
            sf_relax()
            continue
        if (n & SF_CHECK_MASK) == 0:
            s = sf_stripe_of(t, i)
            owner = sf_ld32(&t.stripes[s].owner)
            if owner != 0 and not sf_alive(owner) and sf_steal(t, s, owner):
                sf_unlock(t, s)
                continue
        sched_yield()


cdef inline uint64_t sf_compact_settled(sf_table* t) noexcept nogil:
    """The header's compaction word once no compaction runs (clears a dead compactor's flag)."""
    cdef uint64_t c
    cdef unsigned long n = 0
    while True:
        c = sf_ld64(&t.hdr.compact)
        if (c & 1) == 0:
            return c
        n += 1
        if n < SF_SPIN:
            sf_relax()
            continue
        if (n & SF_CHECK_MASK) == 0 and not sf_alive(<uint32_t>(c >> 32)):
            sf_cas64(&t.hdr.compact, c, (c + 1) & 0xFFFFFFFFULL)
            continue
        sched_yield()
