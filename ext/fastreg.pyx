# The registrar's stateless fast path, compiled twin of simplefast/_ref/fastreg.py.
#
# The reference module is the specification (its docstring has the theory of
# operation and every condition of the cases taken); the contract lives in
# simplefast/_ext/fastreg.pyi. Same answers, same table writes, same counters.
# What this twin changes is the cost of the glue between the codec calls:
# the prefix test, the AOR, the To tag (FNV-1a in C), the row (marshal's C
# API) and the Contact/Date/Server lines (one buffer) run without the
# interpreter; the codec (simplefast._ext.sipmsg) does the parsing.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint64_t
from libc.stdio cimport snprintf
from libc.string cimport memcmp

from simplefast._ext.sipmsg import build_response as _build_response
from simplefast._ext.sipmsg import parse_message as _parse_message
from simplefast._ext.sipmsg import parse_uri as _parse_uri
from simplefast._ext.sipmsg import validate_request as _validate_request
from simplefast.errors import SimplefastError, SipParseError

cdef extern from "marshal.h":
    object PyMarshal_WriteObjectToString(object value, int version)
    object PyMarshal_ReadObjectFromString(const char* data, Py_ssize_t size)

DEF MARSHAL_VERSION = 4  # marshal.version of Python 3.11 (what marshal.dumps writes)
cdef extern from *:
    """
    #define SF_FNV_OFFSET 0xCBF29CE484222325ULL
    #define SF_FNV_PRIME 0x100000001B3ULL
    """
    const uint64_t FNV_OFFSET "SF_FNV_OFFSET"
    const uint64_t FNV_PRIME "SF_FNV_PRIME"

cdef bytes _OFFLINE_ALL = b"*"  # simplefast/im/agent.py OFFLINE_ALL
cdef tuple _SIP_SCHEMES = ("sip", "sips")
cdef tuple _EMPTY = ()


cdef inline uint64_t _fnv(uint64_t h, const char* p, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ <unsigned char>p[i]) * FNV_PRIME
    return h


cdef inline uint64_t _fnv_str(uint64_t h, str s):
    cdef bytes b = s.encode("utf-8", "surrogateescape")
    h = _fnv(h, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))
    return (h ^ 0) * FNV_PRIME


cdef str _tag(bytes key, str branch, str call_id, long long cseq, str from_tag):
    cdef uint64_t h = FNV_OFFSET
    cdef char num[24]
    cdef int k
    h = _fnv(h, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))
    h = _fnv_str(h, branch)
    h = _fnv_str(h, call_id)
    k = snprintf(num, sizeof(num), "%lld", cseq)
    h = _fnv(h, num, k)
    h = (h ^ 0) * FNV_PRIME
    h = _fnv_str(h, from_tag)
    k = snprintf(num, sizeof(num), "%016llx", <unsigned long long>h)
    return num[:k].decode("ascii")


def to_tag(key, branch, call_id, cseq, from_tag):
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise TypeError(f"key must be bytes-like, not {type(key).__name__}")
    for name, v in (("branch", branch), ("call_id", call_id), ("from_tag", from_tag)):
        if type(v) is not str:
            raise TypeError(f"{name} must be str, not {type(v).__name__}")
    if type(cseq) is not int:
        raise TypeError(f"cseq must be int, not {type(cseq).__name__}")
    if not -(1 << 63) <= cseq < (1 << 63):
        return _ref_tag(bytes(key), branch, call_id, cseq, from_tag)
    return _tag(bytes(key), branch, call_id, cseq, from_tag)


def _ref_tag(key, branch, call_id, cseq, from_tag):
    # an integer past 64 bits: the reference's loop over its decimal digits
    from simplefast._ref.fastreg import to_tag as ref
    return ref(key, branch, call_id, cseq, from_tag)


cdef object _q_value(str raw):
    """RFC 3261 25.1 qvalue; None if malformed (the reference's rule)."""
    cdef Py_ssize_t n = len(raw), i
    cdef Py_UCS4 c
    if raw == "1" or raw == "0":
        return float(raw)
    if n < 2 or n > 5 or raw[1] != ".":
        return None
    c = raw[0]
    if c == "0":
        for i in range(2, n):
            c = raw[i]
            if c < "0" or c > "9":
                return None
    elif c == "1":
        for i in range(2, n):
            if raw[i] != "0":
                return None
    else:
        return None
    return float(raw)


cdef inline bint _ascii_digits(str s):
    cdef Py_UCS4 c
    if len(s) == 0:
        return False
    for c in s:
        if c < "0" or c > "9":
            return False
    return True


cdef class FastRegistrar:
    cdef readonly object config
    cdef readonly object table
    cdef readonly str server
    cdef readonly tuple supported
    cdef readonly bytes tag_key
    cdef readonly object dirty
    cdef public object offline
    cdef public long long answered
    cdef public long long declined
    cdef bytes _tail  # "Server: ...\r\n"

    def __init__(self, config, table, *, server, supported, tag_key, dirty):
        if type(server) is not str or not (<str>server).isascii() or "\r" in server or "\n" in server:
            raise ValueError("server must be ASCII without CR or LF")
        self.config = config
        self.table = table
        self.server = server
        self.supported = tuple(supported)
        self.tag_key = bytes(tag_key)
        self.dirty = dirty
        self.offline = None
        self.answered = 0
        self.declined = 0
        self._tail = ("Server: " + server + "\r\n").encode("ascii")

    def register(self, data, tuple peer, double now, str date):
        cdef bytes raw
        if not date.isascii() or "\r" in date or "\n" in date:
            raise ValueError("date must be ASCII without CR or LF")
        if type(data) is bytes:
            raw = <bytes>data
        else:
            raw = bytes(data)
        if PyBytes_GET_SIZE(raw) < 9 or memcmp(PyBytes_AS_STRING(raw), b"REGISTER ", 9) != 0:
            return None
        try:
            msg = _parse_message(raw)
        except SipParseError:
            return None
        try:
            out = self._apply(msg, peer, now, date)
        except SipParseError:
            out = None
        if out is None:
            self.declined += 1
            return msg
        self.answered += 1
        return out

    cdef object _apply(self, msg, tuple peer, double now, str date):
        cdef object cfg = self.config
        cdef Py_ssize_t np = len(peer)
        cdef str aor, curi, user, host
        cdef bytes key, value
        cdef list updated, live, lines
        cdef long long exp
        cdef bint unchanged
        cdef char buf[48]
        cdef int k
        cdef object b, old, q, row
        if (np != 2 and np != 3) or _validate_request(msg, supported=self.supported) is not None:
            return None
        domains = cfg.domains
        rhost = _parse_uri(msg.uri).host
        if rhost is None or rhost.lower() not in domains:
            return None
        turi = _parse_uri(msg.to_addr().uri)
        scheme = turi.scheme
        if scheme not in _SIP_SCHEMES or turi.host is None:
            return None
        host = turi.host.lower()
        if host not in domains:
            return None
        u = turi.user
        if u is None:
            aor = scheme + ":" + host
        else:
            user = u
            if "%" in user:
                return None
            aor = scheme + ":" + user + "@" + host
        key = aor.encode("utf-8", "surrogateescape")
        table = self.table
        if PyBytes_GET_SIZE(key) > table.key_max:
            return None
        contacts = msg.contacts()
        if len(contacts) != 1 or msg.get("Path") is not None:
            return None
        c = contacts[0]
        curi = c.uri
        if curi == "*" or not curi.isascii():
            return None
        params = c.params
        if "+sip.instance" in params:
            return None
        rawexp = params.get("expires")
        if rawexp is not None:
            if not _ascii_digits(rawexp):
                return None
            e = int(rawexp)
        else:
            e = msg.expires
            if e is None:
                e = cfg.default_expires
        if 0 < e < cfg.min_expires:
            return None
        hi_o = cfg.max_expires
        if e > hi_o:
            e = hi_o
        exp = e
        q = None
        raw_q = params.get("q")
        if raw_q is not None:
            q = _q_value(raw_q)
            if q is None:
                return None
        off = self.offline
        if off is not None:
            marks = off.marks
            if marks is None or marks.get(key) is not None or marks.get(_OFFLINE_ALL) is not None:
                return None
        call_id = msg.call_id
        cseq = msg.cseq_num
        row = table.get(key)
        live = []
        if row is not None:
            for b in PyMarshal_ReadObjectFromString(PyBytes_AS_STRING(row), PyBytes_GET_SIZE(row)):
                if b[1] > now:
                    live.append(b)
        unchanged = False
        updated = []
        if live:
            if len(live) != 1:
                return None
            old = live[0]
            if old[0] != curi:
                return None
            if old[3] == call_id:
                if old[4] > cseq:
                    return None
                if old[4] == cseq:
                    unchanged = True
                    updated.append(old)
        if not unchanged and exp > 0:
            updated.append((curi, now + exp, q, call_id, cseq, _EMPTY,
                            "udp:" + str(peer[0]) + ":" + str(peer[1]), None))
        if len(updated) > cfg.max_contacts:
            return None
        if updated:
            value = PyMarshal_WriteObjectToString(updated, MARSHAL_VERSION)
            if PyBytes_GET_SIZE(value) > table.value_max:
                return None
            try:
                table.put(key, value)
            except SimplefastError:
                return None
        else:
            value = b""
            table.delete(key)
        if self.dirty is not None:
            self.dirty[aor] = value
        lines = []
        for b in updated:
            k = snprintf(buf, sizeof(buf), ">;expires=%lld", _remaining(b[1], now))
            lines.append(b"Contact: <")
            lines.append((<str>b[0]).encode("ascii"))
            lines.append(buf[:k])
            if b[2] is not None:
                lines.append((";q=" + format(b[2], "g")).encode("ascii"))
            lines.append(b"\r\n")
        lines.append(b"Date: ")
        lines.append(date.encode("ascii"))
        lines.append(b"\r\n")
        lines.append(self._tail)
        received = None
        rport = None
        if peer[0]:
            try:
                vr = msg.via_rport
                received = peer[0]
                if vr is not None:
                    rport = peer[1]
            except SipParseError:
                pass
        tag = None
        if msg.to_tag is None:
            br = msg.via_branch
            ft = msg.from_tag
            tag = _tag(self.tag_key, "" if br is None else br, call_id, cseq, "" if ft is None else ft)
        return _build_response(msg, 200, "OK", to_tag=tag, extra_headers=b"".join(lines),
                               received=received, rport=rport)


cdef inline long long _remaining(double expires_at, double now):
    cdef double r = expires_at - now + 0.5
    if r < 0:
        return 0
    return <long long>r
