# The proxy's compiled-path MESSAGE relay, compiled twin of
# simplefast/_ref/fastrelay.py.
#
# The reference module is the specification (its docstring has the theory of
# operation and every condition of the requests taken); the contract lives in
# simplefast/_ext/fastrelay.pyi. Same bytes out in the same order, same
# counters. What this twin changes is the cost of the glue between the codec
# calls: a record is a C-typed object, its timers are FIFO rings read without
# the interpreter's attribute lookups, the row is decoded with marshal's C API
# and the loop hash input is joined in one buffer; the codec
# (simplefast._ext.sipmsg) does the parsing and the writing.

from collections import deque

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

from simplefast._ext.sipmsg import build_response as _build_response
from simplefast._ext.sipmsg import forward_request as _forward_request
from simplefast._ext.sipmsg import parse_message as _parse_message
from simplefast._ext.sipmsg import parse_uri as _parse_uri
from simplefast._ext.sipmsg import strip_top_via as _strip_top_via
from simplefast._ext.sipmsg import validate_request as _validate_request
from simplefast.errors import LocalProtocolError, SipParseError

from _blake2 import blake2s as _blake2s

cdef extern from "marshal.h":
    object PyMarshal_ReadObjectFromString(const char* data, Py_ssize_t size)

DEF TRYING = 0
DEF PROCEEDING = 1
DEF COMPLETED = 2
DEF TERMINATED = 3
DEF UDP_MAX_REQUEST = 1300

cdef str MAGIC_COOKIE = "z9hG4bK"
cdef tuple _STREAM_FLOWS = ("tcp:", "tls:")
cdef tuple _EMPTY = ()


def loop_hash(msg):
    """Section 16.6 step 8 (the reference's docstring); the general path's ``_loop_hash`` too."""
    return _loop_hash(msg)


cdef str _loop_hash(object msg):
    cdef str text = "\x00".join((
        msg.uri, msg.to_tag or "", msg.from_tag or "", msg.call_id or "", str(msg.cseq_num),
        msg.get("Proxy-Require") or "", msg.get("Proxy-Authorization") or "",
    ))
    return _blake2s(text.encode("utf-8", "surrogateescape"), digest_size=6).hexdigest()


@cython.no_gc  # its fields are str, bytes and tuples of those: no cycle goes through it
cdef class _Rec:
    cdef str skey
    cdef str branch
    cdef tuple peer
    cdef object dest
    cdef object fwd
    cdef object orig
    cdef object last
    cdef int state
    cdef bint srv_final
    cdef double interval
    cdef double e_due
    cdef double f_due
    cdef double k_due
    cdef double j_due


cdef inline bint _numeric_host(str host):
    cdef Py_UCS4 c
    if ":" in host:
        return True
    if len(host) == 0:
        return False
    cdef bint digit = False
    for c in host:
        if c == ".":
            continue
        if c < "0" or c > "9":
            return False
        digit = True
    return digit


cdef class FastRelay:
    cdef readonly object config
    cdef readonly object table
    cdef readonly object me
    cdef readonly str prefix
    cdef readonly tuple supported
    cdef readonly object general
    cdef readonly str tag_prefix
    cdef readonly double t1
    cdef readonly double t2
    cdef readonly double t4
    cdef public object max_body
    cdef public object service
    cdef public list out
    cdef public long long relayed
    cdef public long long declined
    cdef public long long absorbed
    cdef public long long timeouts
    cdef public long long open
    cdef str _via4
    cdef str _via6
    cdef unsigned long long _seq
    cdef unsigned long long _tags
    cdef dict _by_skey
    cdef dict _by_branch
    cdef dict _dests
    cdef dict _e
    cdef list _e_order  # ring intervals, increasing
    cdef object _f
    cdef object _k
    cdef object _j
    cdef object _is_me

    def __init__(self, config, table, me, *, prefix, supported, general, tag_prefix, t1=0.5, t2=4.0, t4=5.0):
        if type(prefix) is not str:
            raise TypeError(f"prefix must be str, not {type(prefix).__name__}")
        if not (<str>prefix).startswith(MAGIC_COOKIE):
            raise ValueError(f"prefix must start with {MAGIC_COOKIE}")
        if type(tag_prefix) is not str:
            raise TypeError(f"tag_prefix must be str, not {type(tag_prefix).__name__}")
        if not (<str>tag_prefix).isascii() or not (<str>tag_prefix).isalnum():
            raise ValueError("tag_prefix must be ASCII letters and digits")
        if type(general) is not dict:
            raise TypeError(f"general must be a dict, not {type(general).__name__}")
        t1, t2, t4 = float(t1), float(t2), float(t4)
        if not (0.0 < t1 <= t2) or t4 <= 0.0:
            raise ValueError("timers must be positive with t1 <= t2")
        self.config = config
        self.table = table
        self.me = me
        self.prefix = prefix
        self.supported = tuple(supported)
        self.general = general
        self.tag_prefix = tag_prefix
        self.t1, self.t2, self.t4 = t1, t2, t4
        self.max_body = None
        self.service = None
        self.out = []
        self.relayed = self.declined = self.absorbed = self.timeouts = self.open = 0
        self._via4 = me.via("udp", False, "")
        self._via6 = me.via("udp", True, "")
        self._is_me = me.is_me
        self._seq = 0
        self._tags = 0
        self._by_skey = {}
        self._by_branch = {}
        self._dests = {}
        self._e = {}
        self._e_order = []
        self._f = deque()
        self._k = deque()
        self._j = deque()

    # ------------------------------------------------------------ state
    def __len__(self):
        return len(self._by_skey)

    def expecting(self):
        return len(self._by_branch) != 0

    def take(self):
        out = self.out
        self.out = []
        return out

    # ------------------------------------------------------------ requests
    def request(self, data, peer, now, accept=True):
        if type(peer) is not tuple:
            raise TypeError(f"peer must be a tuple, not {type(peer).__name__}")
        cdef double t = float(now)
        if not isinstance(data, bytes):
            data = bytes(data)
        if not (<bytes>data).startswith(b"MESSAGE "):
            return None
        try:
            msg = _parse_message(data)
        except SipParseError:
            return None
        cdef bint done
        try:
            done = self._request(msg, <bytes>data, <tuple>peer, t, bool(accept))
        except SipParseError:
            done = False
        if done:
            return True
        self.declined += 1
        return msg

    cdef bint _request(self, object msg, bytes data, tuple peer, double now, bint accept) except -1:
        cdef Py_ssize_t np = len(peer)
        if np != 2 and np != 3:
            return False
        branch = msg.via_branch
        if branch is None or not (<str>branch).startswith(MAGIC_COOKIE):
            return False
        host = msg.via_host
        cdef str lhost = "" if host is None else (<str>host).lower()
        port = msg.via_port
        cdef str skey = f"{branch}\x00{lhost}\x00{port}"
        cdef _Rec rec = self._by_skey.get(skey)
        if rec is not None:
            self.absorbed += 1
            if rec.last is not None:
                self.out.append((rec.last, peer))
            return True
        if not accept or (branch, lhost, port, "MESSAGE") in self.general:
            return False
        if _validate_request(msg, supported=self.supported) is not None:
            return False
        if msg.count("Route"):
            return False
        if msg.count("Proxy-Require"):
            for tag in msg.get_all("Proxy-Require"):
                if tag and tag not in self.supported:
                    return False  # the general path answers 420 (section 16.3 step 5)
        mf = msg.max_forwards
        if mf is not None and mf == 0:
            return False
        is_me = self._is_me
        for v in msg.vias():
            if is_me(v.host, v.port):
                return False
        ruri = _parse_uri(msg.uri)
        rhost = ruri.host
        user = ruri.user
        if ruri.scheme != "sip" or rhost is None or user is None or "%" in user:
            return False
        rhost = (<str>rhost).lower()
        if rhost not in self.config.domains:
            return False
        service = self.service
        if service is not None and service[0] == user and service[1] == rhost:
            return False
        max_body = self.max_body
        if max_body is not None and len(msg.body) > max_body:
            return False
        cdef bytes key = f"sip:{user}@{rhost}".encode("utf-8", "surrogateescape")
        table = self.table
        if len(key) > table.key_max:
            return False
        row = table.get(key)
        if row is None:
            return False
        if not isinstance(row, bytes):
            row = bytes(row)
        bindings = PyMarshal_ReadObjectFromString(PyBytes_AS_STRING(row), PyBytes_GET_SIZE(row))
        if len(bindings) != 1:
            return False
        b = bindings[0]
        if b[1] <= now or b[5] or (<str>b[6]).startswith(_STREAM_FLOWS):
            return False
        contact = b[0]
        dest = self._dest(contact)
        if dest is None:
            return False
        self._seq += 1
        cdef str fbranch = f"{self.prefix}{self._seq:x}.{_loop_hash(msg)}"
        cdef str via = (self._via6 if ":" in (<tuple>dest)[0] else self._via4) + fbranch
        fmf = 70 if mf is None else min(mf - 1, 255)
        received = rport = None
        if peer[0]:
            received = peer[0]
            if msg.via_rport is not None:
                rport = peer[1]
        try:
            fwd = _forward_request(msg, contact, via, record_route=None, routes=_EMPTY, max_forwards=fmf,
                                   received=received, rport=rport)
        except LocalProtocolError:
            return False
        if not isinstance(fwd, bytes):
            fwd = bytes(fwd)
        if PyBytes_GET_SIZE(fwd) > UDP_MAX_REQUEST:
            return False
        rec = _Rec.__new__(_Rec)
        rec.skey = skey
        rec.branch = fbranch
        rec.peer = peer
        rec.dest = dest
        rec.fwd = fwd
        rec.orig = data
        rec.last = None
        rec.state = TRYING
        rec.srv_final = False
        rec.interval = self.t1
        self._by_skey[skey] = rec
        self._by_branch[fbranch] = rec
        self.open += 1
        self.relayed += 1
        self.out.append((fwd, dest))
        rec.e_due = now + self.t1
        self._ring(self.t1).append(rec)
        rec.f_due = now + 64 * self.t1
        self._f.append(rec)
        return True

    cdef object _dest(self, str contact):
        cdef dict dests = self._dests
        got = dests.get(contact, dests)
        if got is not dests:
            return got
        dest = None
        try:
            u = _parse_uri(contact)
        except SipParseError:
            u = None
        if u is not None and u.scheme == "sip" and u.host is not None and "maddr" not in u.params:
            tp = u.params.get("transport")
            host = <str>u.host
            if host.startswith("["):
                host = host[1:-1]
            if (tp is None or tp.lower() == "udp") and _numeric_host(host):
                dest = (host, u.port or 5060, "c")
        if len(dests) >= 65536:
            dests.clear()
        dests[contact] = dest
        return dest

    cdef object _ring(self, double interval):
        q = self._e.get(interval)
        if q is None:
            q = self._e[interval] = deque()
            self._e_order = sorted(self._e)
        return q

    # ------------------------------------------------------------ responses
    def response(self, data, now):
        cdef double t = float(now)
        if not isinstance(data, bytes):
            data = bytes(data)
        if not (<bytes>data).startswith(b"SIP/2.0 "):
            return None
        try:
            msg = _parse_message(data)
        except SipParseError:
            return None
        if msg.is_request:
            return msg
        try:
            branch = msg.via_branch
        except SipParseError:
            return msg
        if branch is None or not (<str>branch).startswith(self.prefix):
            return msg
        cdef _Rec rec = self._by_branch.get(branch)
        if rec is None or msg.cseq_method != "MESSAGE" or _validate_request(msg) is not None:
            return msg
        cdef int status = msg.status
        if rec.state >= COMPLETED:
            self.absorbed += 1
            return True
        if status < 200:
            if rec.state == TRYING:
                rec.state = PROCEEDING
                rec.interval = self.t2
            if status > 100 and not rec.srv_final:
                self._send_up(rec, msg, False, t)
            return True
        rec.state = COMPLETED
        self.open -= 1
        rec.e_due = 0.0
        rec.f_due = 0.0
        rec.fwd = None
        rec.orig = None
        rec.dest = None
        rec.k_due = t + self.t4
        self._k.append(rec)
        if not rec.srv_final:
            self._send_up(rec, msg, True, t)
        return True

    cdef _send_up(self, _Rec rec, object msg, bint final, double now):
        up = _strip_top_via(msg)
        if up is not None:
            if not isinstance(up, bytes):
                up = bytes(up)
            rec.last = up
            self.out.append((up, rec.peer))
        if final:
            self._final(rec, now)

    cdef _final(self, _Rec rec, double now):
        rec.srv_final = True
        rec.j_due = now + 64 * self.t1
        self._j.append(rec)

    # ------------------------------------------------------------ timers
    def next_deadline(self):
        cdef double best = 0.0
        cdef bint have = False
        cdef _Rec rec
        for interval in self._e_order:
            q = self._e[interval]
            while q:
                rec = q[0]
                if rec.e_due != 0.0 and rec.state < COMPLETED:
                    break
                q.popleft()
            if q:
                rec = q[0]
                if not have or rec.e_due < best:
                    best, have = rec.e_due, True
        q = self._f
        while q:
            rec = q[0]
            if rec.f_due != 0.0:
                break
            q.popleft()
        if q:
            rec = q[0]
            if not have or rec.f_due < best:
                best, have = rec.f_due, True
        if self._k:
            rec = self._k[0]
            if not have or rec.k_due < best:
                best, have = rec.k_due, True
        if self._j:
            rec = self._j[0]
            if not have or rec.j_due < best:
                best, have = rec.j_due, True
        return best if have else None

    def expire(self, now):
        cdef double t = float(now)
        cdef _Rec rec
        while True:  # due Timers E and F in deadline order, F first on a tie
            q = self._next_due(t)
            if q is None:
                break
            rec = q.popleft()
            if q is self._f:
                self._timeout(rec, t)
                continue
            self.out.append((rec.fwd, rec.dest))
            if rec.state == TRYING:
                rec.interval = min(rec.interval * 2, self.t2)
            rec.e_due = t + rec.interval
            self._ring(rec.interval).append(rec)
        q = self._k
        while q:
            rec = q[0]
            if rec.k_due > t:
                break
            q.popleft()
            self._by_branch.pop(rec.branch, None)
        q = self._j
        while q:
            rec = q[0]
            if rec.j_due > t:
                break
            q.popleft()
            self._by_skey.pop(rec.skey, None)
            self._by_branch.pop(rec.branch, None)

    cdef object _next_due(self, double now):
        """The ring whose head is the Timer F or E due first at ``now`` (a tie goes to F,
        then to the ring of the smaller interval); cancelled heads are dropped."""
        best = None
        cdef double due = now
        cdef _Rec rec
        q = self._f
        while q:
            rec = q[0]
            if rec.f_due != 0.0:
                break
            q.popleft()
        if q:
            rec = q[0]
            if rec.f_due <= due:
                best, due = q, rec.f_due
        for interval in self._e_order:
            q = self._e[interval]
            while q:
                rec = q[0]
                if rec.e_due != 0.0 and rec.state < COMPLETED:
                    break
                q.popleft()
            if q:
                rec = q[0]
                if rec.e_due <= due and (best is None or rec.e_due < due):
                    best, due = q, rec.e_due
        return best

    cdef _timeout(self, _Rec rec, double now):
        self.timeouts += 1
        self.open -= 1
        rec.state = TERMINATED
        rec.e_due = 0.0
        rec.f_due = 0.0
        self._by_branch.pop(rec.branch, None)
        orig = rec.orig
        rec.fwd = None
        rec.orig = None
        rec.dest = None
        if rec.srv_final or orig is None:
            return
        self._tags += 1
        data = None
        try:
            req = _parse_message(orig)
            data = _build_response(req, 408, "Request Timeout", to_tag=f"{self.tag_prefix}{self._tags:x}")
        except (SipParseError, LocalProtocolError):
            data = None
        if data is not None:
            if not isinstance(data, bytes):
                data = bytes(data)
            rec.last = data
            self.out.append((data, rec.peer))
        self._final(rec, now)
