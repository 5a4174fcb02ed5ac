# Batched UDP receive and send, compiled twin of simplefast/_ref/udpio.py.
#
# The reference module is the specification (its docstring has the theory of
# operation); the contract lives in simplefast/_ext/udpio.pyi. Same results,
# same counters, same exceptions; what this twin changes is the cost:
#
#  - recv_batch takes up to 64 datagrams per recvmmsg(2) and send_batch hands
#    up to 64 per sendmmsg(2), both with MSG_DONTWAIT, so a loaded worker
#    makes one syscall per 64 datagrams instead of one each;
#  - the msghdr / iovec / sockaddr arrays of a chunk live on the C stack; the
#    receive buffer (64 x bufsize, at most 4 MiB) is allocated once and kept.
#    A call that finds it in use (re-entered from a finalizer run by the
#    garbage collector while this call builds its result) mallocs its own;
#  - peer addresses: a direct-mapped table of 256 slots maps a raw sockaddr to
#    the (host, port) tuple made for it last time, so a busy peer costs no
#    inet_ntop and no allocation, and replies reuse the very tuple objects;
#  - destinations: a dict keyed by (host, port) holds the packed sockaddr
#    (b"" for an invalid one); it is cleared when it reaches 4096 entries.
#
# The GIL is kept: with MSG_DONTWAIT neither call can block.

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_CheckBuffer, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.list cimport PyList_GET_ITEM
from cpython.long cimport PyLong_AsLongAndOverflow
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeASCII
from libc.errno cimport EAGAIN, EBADF, EINTR, ENOTSOCK, errno
from libc.stdint cimport uint16_t, uint32_t
from libc.stdlib cimport free, malloc
from libc.string cimport memchr, memcmp, memcpy, memset, strerror, strlen
from posix.uio cimport iovec

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    struct sockaddr:
        sa_family_t sa_family
    struct msghdr:
        void* msg_name
        socklen_t msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
        void* msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    struct cmsghdr:
        size_t cmsg_len
        int cmsg_level
        int cmsg_type
    cmsghdr* CMSG_FIRSTHDR(msghdr* m)
    cmsghdr* CMSG_NXTHDR(msghdr* m, cmsghdr* c)
    unsigned char* CMSG_DATA(cmsghdr* c)
    size_t CMSG_LEN(size_t n)
    int recvmmsg(int fd, mmsghdr* vec, unsigned int vlen, int flags, void* timeout)
    int sendmmsg(int fd, mmsghdr* vec, unsigned int vlen, int flags)
    enum:
        AF_INET
        AF_INET6
        MSG_DONTWAIT
        MSG_TRUNC
        SOL_SOCKET
        SCM_TIMESTAMPNS

cdef extern from "<time.h>" nogil:
    struct timespec:
        long tv_sec
        long tv_nsec

cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        uint32_t s_addr
    struct in6_addr:
        unsigned char s6_addr[16]
    struct sockaddr_in:
        sa_family_t sin_family
        uint16_t sin_port
        in_addr sin_addr
    struct sockaddr_in6:
        sa_family_t sin6_family
        uint16_t sin6_port
        uint32_t sin6_flowinfo
        in6_addr sin6_addr
        uint32_t sin6_scope_id
    enum:
        INET6_ADDRSTRLEN

cdef extern from "<arpa/inet.h>" nogil:
    int inet_pton(int af, const char* src, void* dst)
    const char* inet_ntop(int af, const void* src, char* dst, socklen_t size)
    uint16_t htons(uint16_t)
    uint16_t ntohs(uint16_t)

cdef union _control:  # room for the first datagram's ancillary data, aligned for its headers
    cmsghdr hdr
    char buf[64]

cdef union _sa:
    sockaddr sa
    sockaddr_in v4
    sockaddr_in6 v6

MAX_BATCH = 1024
MAX_BUFSIZE = 65535

cdef enum:
    CHUNK = 64            # datagrams per recvmmsg / sendmmsg call (the stack arrays)
    PEER_SLOTS = 256      # received-address table (index: top 8 bits of a 32-bit hash)
    DEST_CACHE_MAX = 4096
    HOST_MAX = 48         # longest IPv6 text (45) + NUL, rounded up

cdef unsigned long long _truncated = 0
cdef unsigned long long _invalid = 0
cdef unsigned long long _send_errors = 0
cdef double _batch_ts = 0.0  # batch_timestamp()
# fd -> the error met after a batch had already kept datagrams (raised next call)
cdef dict _pending = {}


def batch_timestamp():
    """When the kernel received the first datagram the last ``recv_batch`` read; see the stub."""
    return _batch_ts


def truncated():
    """Datagrams dropped by ``recv_batch`` because they were longer than ``bufsize``."""
    return _truncated


def invalid_destinations():
    """Items skipped by ``send_batch`` because their destination was not valid."""
    return _invalid


def send_errors():
    """Datagrams dropped by ``send_batch`` because the kernel refused them."""
    return _send_errors


cdef Py_ssize_t _check_range(str name, object value, Py_ssize_t hi) except -1:
    if type(value) is not int:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not 1 <= value <= hi:
        raise ValueError(f"{name} must be between 1 and {hi}, got {value}")
    return value


cdef object _os_error(int err):
    return OSError(err, strerror(err).decode("utf-8", "replace"))


# ---------------------------------------------------------------- receive

# The receive buffer, kept between calls (see the header).
cdef char* _rbuf = NULL
cdef size_t _rbuf_size = 0
cdef bint _rbuf_busy = False


cdef struct _PeerKey:
    uint32_t family
    uint32_t port
    unsigned char addr[16]

cdef struct _PeerSlot:
    _PeerKey key
    PyObject* tup  # owned reference, or NULL

cdef _PeerSlot _peers[PEER_SLOTS]  # static storage: zeroed


cdef object _peer(const _sa* a, socklen_t alen):
    """(host, port) of a received sockaddr, from the peer table when it is there."""
    cdef _PeerKey key
    cdef uint32_t h
    cdef const uint32_t* w
    cdef char text[HOST_MAX]
    memset(&key, 0, sizeof(key))
    if a.sa.sa_family == AF_INET and alen >= sizeof(sockaddr_in):
        key.family = AF_INET
        key.port = a.v4.sin_port
        memcpy(key.addr, &a.v4.sin_addr, 4)
    elif a.sa.sa_family == AF_INET6 and alen >= sizeof(sockaddr_in6):
        key.family = AF_INET6
        key.port = a.v6.sin6_port
        memcpy(key.addr, &a.v6.sin6_addr, 16)
    else:
        raise ValueError("recv_batch needs an AF_INET or AF_INET6 socket")
    w = <const uint32_t*>key.addr
    h = (w[0] ^ w[1] ^ w[2] ^ w[3] ^ (key.port << 16)) * <uint32_t>0x9E3779B1u
    cdef _PeerSlot* slot = &_peers[h >> 24]
    if slot.tup != NULL and memcmp(&slot.key, &key, sizeof(key)) == 0:
        return <object>slot.tup
    if inet_ntop(key.family, key.addr, text, HOST_MAX) == NULL:
        raise _os_error(errno)
    t = (PyUnicode_DecodeASCII(text, <Py_ssize_t>strlen(text), NULL), <int>ntohs(<uint16_t>key.port))
    Py_XDECREF(slot.tup)
    Py_INCREF(t)
    slot.tup = <PyObject*>t
    slot.key = key
    return t


@cython.boundscheck(False)
@cython.wraparound(False)
def recv_batch(sock, max_msgs=64, bufsize=65535):
    """Up to ``max_msgs`` queued datagrams as ``(data, (host, port))``; see the stub."""
    global _rbuf, _rbuf_size, _rbuf_busy, _truncated, _batch_ts
    cdef Py_ssize_t limit = _check_range("max_msgs", max_msgs, MAX_BATCH)
    cdef size_t bsz = <size_t>_check_range("bufsize", bufsize, MAX_BUFSIZE)
    cdef int fd = sock.fileno()
    _batch_ts = 0.0
    if _pending:
        exc = _pending.pop(fd, None)
        if exc is not None:
            raise exc
    cdef mmsghdr msgs[CHUNK]
    cdef iovec iov[CHUNK]
    cdef _sa names[CHUNK]
    cdef _control control  # the first datagram's ancillary data (its SO_TIMESTAMPNS time)
    cdef cmsghdr* cm
    cdef timespec ts
    cdef bint first = True
    cdef Py_ssize_t got = 0
    cdef int want, k, i, err
    cdef size_t need = <size_t>(CHUNK if limit > CHUNK else limit) * bsz
    cdef char* buf
    cdef bint own = _rbuf_busy
    if own:
        buf = <char*>malloc(need)
        if buf == NULL:
            raise MemoryError()
    else:
        if _rbuf_size < need:
            free(_rbuf)
            _rbuf_size = 0
            _rbuf = <char*>malloc(need)
            if _rbuf == NULL:
                raise MemoryError()
            _rbuf_size = need
        buf = _rbuf
        _rbuf_busy = True
    out = []
    try:
        while got < limit:
            want = <int>(CHUNK if limit - got > CHUNK else limit - got)
            memset(msgs, 0, sizeof(mmsghdr) * want)
            for i in range(want):
                iov[i].iov_base = buf + <size_t>i * bsz
                iov[i].iov_len = bsz
                msgs[i].msg_hdr.msg_name = &names[i]
                msgs[i].msg_hdr.msg_namelen = sizeof(_sa)
                msgs[i].msg_hdr.msg_iov = &iov[i]
                msgs[i].msg_hdr.msg_iovlen = 1
            if first:
                msgs[0].msg_hdr.msg_control = &control
                msgs[0].msg_hdr.msg_controllen = sizeof(control)
            k = recvmmsg(fd, msgs, <unsigned int>want, MSG_DONTWAIT, NULL)
            if k < 0:
                err = errno
                if err == EINTR:
                    continue
                if err == EAGAIN:  # == EWOULDBLOCK on Linux (recvmmsg is Linux-only)
                    break
                exc = _os_error(err)
                if got == 0:
                    raise exc
                _pending[fd] = exc
                break
            if first and k > 0:
                first = False
                cm = CMSG_FIRSTHDR(&msgs[0].msg_hdr)
                while cm != NULL:
                    if (cm.cmsg_level == SOL_SOCKET and cm.cmsg_type == SCM_TIMESTAMPNS
                            and cm.cmsg_len >= CMSG_LEN(sizeof(timespec))):
                        memcpy(&ts, CMSG_DATA(cm), sizeof(timespec))
                        _batch_ts = <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9
                        break
                    cm = CMSG_NXTHDR(&msgs[0].msg_hdr, cm)
            for i in range(k):
                if msgs[i].msg_hdr.msg_flags & MSG_TRUNC:
                    _truncated += 1
                    continue
                data = PyBytes_FromStringAndSize(buf + <size_t>i * bsz, msgs[i].msg_len)
                out.append((data, _peer(&names[i], msgs[i].msg_hdr.msg_namelen)))
                got += 1
            if k < want:
                break  # the queue is empty (or an error is pending in the kernel)
    finally:
        if own:
            free(buf)
        else:
            _rbuf_busy = False
    return out


# ---------------------------------------------------------------- send

cdef dict _dest_cache = {}


cdef socklen_t _parse_dest(object dest, _sa* out) except? 0:
    """Pack a valid (host, port) into ``out`` and return its length; 0 if it is invalid."""
    cdef Py_ssize_t hlen
    cdef const char* p
    cdef char text[HOST_MAX]
    cdef long port
    cdef int overflow
    if type(dest) is not tuple or PyTuple_GET_SIZE(dest) != 2:
        return 0
    host = <object>PyTuple_GET_ITEM(dest, 0)
    port_obj = <object>PyTuple_GET_ITEM(dest, 1)
    if type(host) is not str or type(port_obj) is not int:
        return 0
    cdef PyObject* hit = PyDict_GetItem(_dest_cache, dest)
    if hit != NULL:
        hlen = PyBytes_GET_SIZE(<object>hit)
        memcpy(out, PyBytes_AS_STRING(<object>hit), <size_t>hlen)
        return <socklen_t>hlen
    port = PyLong_AsLongAndOverflow(port_obj, &overflow)
    memset(out, 0, sizeof(_sa))
    hlen = 0
    if not overflow and 1 <= port <= 65535 and PyUnicode_IS_ASCII(host):
        p = PyUnicode_AsUTF8AndSize(host, &hlen)
        if hlen >= HOST_MAX or memchr(p, 0, <size_t>hlen) != NULL:
            hlen = 0
        else:
            memcpy(text, p, <size_t>hlen)
            text[hlen] = 0
            if memchr(text, 58, <size_t>hlen) != NULL:  # 58: ':'
                if inet_pton(AF_INET6, text, &out.v6.sin6_addr) == 1:
                    out.v6.sin6_family = AF_INET6
                    out.v6.sin6_port = htons(<uint16_t>port)
                    hlen = sizeof(sockaddr_in6)
                else:
                    hlen = 0
            elif inet_pton(AF_INET, text, &out.v4.sin_addr) == 1:
                out.v4.sin_family = AF_INET
                out.v4.sin_port = htons(<uint16_t>port)
                hlen = sizeof(sockaddr_in)
            else:
                hlen = 0
    if len(_dest_cache) >= DEST_CACHE_MAX:
        _dest_cache.clear()
    PyDict_SetItem(_dest_cache, dest, PyBytes_FromStringAndSize(<char*>out, hlen))
    return <socklen_t>hlen


cdef int _check_items(object items, Py_ssize_t n) except -1:
    """TypeError for the first item that is not (bytes-like, anything)."""
    cdef Py_buffer view
    cdef Py_ssize_t j
    for j in range(n):
        item = items[j]
        if not isinstance(item, tuple) or PyTuple_GET_SIZE(item) != 2:
            raise TypeError(f"items[{j}] must be a (data, (host, port)) tuple, not {type(item).__name__}")
        data = <object>PyTuple_GET_ITEM(item, 0)
        if PyBytes_CheckExact(data):
            continue
        if not PyObject_CheckBuffer(data):
            raise TypeError(f"items[{j}][0] must be a bytes-like object, not {type(data).__name__}")
        try:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        except BufferError:
            raise TypeError(f"items[{j}][0] must be a C-contiguous buffer") from None
        PyBuffer_Release(&view)
    return 0


@cython.boundscheck(False)
@cython.wraparound(False)
def send_batch(sock, items):
    """Send every item without blocking; the number of items dealt with. See the stub."""
    global _invalid, _send_errors
    if type(items) is not list and type(items) is not tuple:
        items = list(items)
    cdef bint is_list = type(items) is list
    cdef Py_ssize_t n = len(items)
    _check_items(items, n)
    cdef int fd = sock.fileno()
    cdef mmsghdr msgs[CHUNK]
    cdef iovec iov[CHUNK]
    cdef _sa names[CHUNK]
    cdef Py_buffer views[CHUNK]
    cdef bint held[CHUNK]
    cdef Py_ssize_t item_of[CHUNK]
    cdef Py_ssize_t inv_before[CHUNK]
    cdef Py_ssize_t i = 0, j, inv
    cdef int m, s, r, e, q
    cdef socklen_t alen
    cdef PyObject* item
    while i < n:
        m = 0
        inv = 0
        j = i
        try:
            # Build a chunk. n was read once and the items are only read: no
            # Python code runs until the chunk is sent (the checks above made
            # every data object a buffer, the dest cache holds exact types).
            while j < n and m < CHUNK:
                item = PyList_GET_ITEM(items, j) if is_list else PyTuple_GET_ITEM(items, j)
                alen = _parse_dest(<object>PyTuple_GET_ITEM(<object>item, 1), &names[m])
                if alen == 0:
                    inv += 1
                    j += 1
                    continue
                data = <object>PyTuple_GET_ITEM(<object>item, 0)
                held[m] = False
                if PyBytes_CheckExact(data):
                    iov[m].iov_base = PyBytes_AS_STRING(data)
                    iov[m].iov_len = <size_t>PyBytes_GET_SIZE(data)
                else:
                    PyObject_GetBuffer(data, &views[m], PyBUF_SIMPLE)
                    held[m] = True
                    iov[m].iov_base = views[m].buf
                    iov[m].iov_len = <size_t>views[m].len
                memset(&msgs[m], 0, sizeof(mmsghdr))
                msgs[m].msg_hdr.msg_name = &names[m]
                msgs[m].msg_hdr.msg_namelen = alen
                msgs[m].msg_hdr.msg_iov = &iov[m]
                msgs[m].msg_hdr.msg_iovlen = 1
                item_of[m] = j
                inv_before[m] = inv
                m += 1
                j += 1
            s = 0
            while s < m:
                r = sendmmsg(fd, &msgs[s], <unsigned int>(m - s), MSG_DONTWAIT)
                if r >= 0:
                    s += r
                    continue
                e = errno
                if e == EINTR:
                    continue
                if e == EAGAIN:
                    _invalid += <unsigned long long>inv_before[s]
                    return item_of[s]
                if e == EBADF or e == ENOTSOCK:  # the socket itself, not this datagram
                    _invalid += <unsigned long long>inv_before[s]
                    raise _os_error(e)
                # the kernel refused message s (sendmmsg reports an error only
                # for the first message of a call): drop it, go on after it
                _send_errors += 1
                s += 1
            _invalid += <unsigned long long>inv
        finally:
            for q in range(m):
                if held[q]:
                    PyBuffer_Release(&views[q])
        i = j
    return n
