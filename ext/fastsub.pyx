# The notifier's stateless fast path for SUBSCRIBE, compiled twin of
# simplefast/_ref/fastsub.py.
#
# The reference module is the specification (its docstring has the theory of
# operation and every condition of the cases taken); the contract lives in
# simplefast/_ext/fastsub.pyi. Same answers, same notifier calls, same
# counters. What this twin changes is the cost of the glue between the calls:
# the prefix test, the URI and header checks, the resource and watcher names
# and the answer's headers run without the interpreter's dispatch; the codec
# (simplefast._ext.sipmsg) parses and builds, and the notifier
# (simplefast/presence/subscribe.py) keeps the subscription.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.string cimport memcmp

from simplefast._ext.fastreg import to_tag as _to_tag
from simplefast._ext.sipmsg import build_response as _build_response
from simplefast._ext.sipmsg import parse_message as _parse_message
from simplefast._ext.sipmsg import parse_uri as _parse_uri
from simplefast._ext.sipmsg import validate_request as _validate_request
from simplefast._sipshared import negotiate as _negotiate
from simplefast._sipshared import source_params as _source_params
from simplefast.errors import SipParseError

cdef tuple _SCHEMES = ("sip", "sips")
DEF _AGAIN = 0  # what a request asks of the notifier (_check)
DEF _MAKE = 1
DEF _RENEW = 2
cdef str _ALLOW = "allow"  # presence.subscribe.ALLOW (which imports simplefast._impl, which loads us)


cdef inline bint _clean(str v):
    return v.isascii() and "\r" not in v and "\n" not in v


cdef bint _is_sip_uri(str text) except -1:
    try:
        u = _parse_uri(text)
    except SipParseError:
        return False
    return u.scheme in _SCHEMES and bool(u.host)


cdef class FastSubscriber:
    cdef readonly object config
    cdef readonly object agent
    cdef readonly object notifier
    cdef readonly str server
    cdef readonly tuple supported
    cdef readonly bytes tag_key
    cdef str _allow_events
    cdef public object room
    cdef public bint only_again
    cdef public long long answered
    cdef public long long declined
    cdef public object notify

    def __init__(self, config, agent, *, server, supported, tag_key, allow_events):
        if type(server) is not str or not _clean(server):
            raise ValueError("server must be ASCII without CR or LF")
        self.config = config
        self.agent = agent
        self.notifier = agent.notifier
        self.server = server
        self.supported = tuple(supported)
        self.tag_key = bytes(tag_key)
        self.allow_events = allow_events
        self.room = None
        self.only_again = False
        self.answered = 0
        self.declined = 0
        self.notify = None

    @property
    def allow_events(self):
        return self._allow_events

    @allow_events.setter
    def allow_events(self, value):
        if type(value) is not str or not _clean(value):
            raise ValueError("allow_events must be ASCII without CR or LF")
        self._allow_events = value

    def subscribe(self, data, tuple peer not None, now):
        if type(now) is not float and type(now) is not int:
            raise TypeError(f"now must be a number, not {type(now).__name__}")
        cdef double t = now
        self.notify = None
        if not isinstance(data, bytes):
            data = bytes(data)
        if PyBytes_GET_SIZE(data) < 10 or memcmp(PyBytes_AS_STRING(data), b"SUBSCRIBE ", 10) != 0:
            return None
        try:
            msg = _parse_message(data)
        except SipParseError:
            return None
        cdef tuple plan
        try:  # the checks: nothing changes until they all passed
            plan = self._check(msg, peer, t)
        except SipParseError:
            plan = None
        if plan is None or (self.only_again and plan[0] != _AGAIN):
            self.declined += 1
            return msg
        notifier = self.notifier
        kind = plan[0]
        if kind == _MAKE:
            answer = notifier.make(msg, peer, *plan[1:])
        elif kind == _RENEW:
            answer = notifier.renew(plan[1], peer, *plan[2:])
        else:
            answer = plan[1]
        self.answered += 1
        self.notify = answer[3]
        cdef list h = answer[2]
        headers = (f"{h[0][0]}: {h[0][1]}\r\n{h[1][0]}: {h[1][1]}\r\nAllow-Events: {self._allow_events}\r\n"
                   f"Server: {self.server}\r\n").encode("utf-8", "surrogateescape")
        tag = answer[4] if msg.to_tag is None else None
        return bytes(_build_response(msg, 200, "OK", to_tag=tag, extra_headers=headers,
                                     **_source_params(msg, peer)))

    cdef tuple _check(self, msg, tuple peer, double now):
        cdef Py_ssize_t n = len(peer)
        if (n != 2 and n != 3) or _validate_request(msg, supported=self.supported) is not None:
            return None
        event = msg.get("Event")
        if event is None or (<str>event).strip().lower() != "presence":
            return None
        ruri = _parse_uri(msg.uri)
        scheme = ruri.scheme
        if scheme not in _SCHEMES or ruri.host is None:
            return None
        cdef str host = ruri.host.lower()
        notifier = self.notifier
        package = notifier.packages["presence"]
        self.agent.now = now
        if msg.to_tag is not None:
            return self._in_dialog(msg, peer, ruri, host, package, now)
        user = ruri.user
        if host not in self.config.domains or user is None or "%" in user:
            return None
        if self.room is not None and self.room(user, ruri.host, True) is not None:
            return None
        furi = _parse_uri(msg.from_addr().uri)
        fscheme = furi.scheme
        if fscheme not in _SCHEMES or furi.host is None:
            return None
        fuser = furi.user
        if fuser is not None and "%" in fuser:
            return None
        msg.to_addr()  # make reads it: parsed here, before anything changes
        cdef str resource = f"{scheme}:{user}@{host}"
        cdef str fhost = furi.host.lower()
        cdef str watcher = f"{fscheme}:{fuser}@{fhost}" if fuser is not None else f"{fscheme}:{fhost}"
        tag = _to_tag(self.tag_key, msg.via_branch or "", msg.call_id or "", msg.cseq_num or 0,
                      msg.from_tag or "")
        key = f"{notifier.tag_prefix}{tag}"
        again = notifier.again(key, peer, now)
        if again is not None:
            return (_AGAIN, again)
        ctype = _negotiate(msg.get_all("Accept"), package.content_types)
        if ctype is None:
            return None
        expires = self._expires(msg, package)
        if expires is None or expires == 0:
            return None
        policy = _ALLOW if watcher == resource else notifier.policy(watcher, resource, "presence")
        if policy != _ALLOW:
            return None
        target = msg.contact_uri
        if target is None or not _is_sip_uri(target):
            return None
        return (_MAKE, key, package, None, ctype, expires, policy, target, resource, watcher, now)

    cdef tuple _in_dialog(self, msg, tuple peer, ruri, str host, package, double now):
        config = self.config
        port = ruri.port
        local_hosts = config.local_hosts
        if not (host in config.domains or host in local_hosts
                or (port is not None and f"{host}:{port}" in local_hosts)):
            return None
        if self.room is not None and self.room(ruri.user, ruri.host, True) is not None:
            return None
        notifier = self.notifier
        key = msg.to_tag
        cseq = msg.cseq_num or 0
        sub = notifier.by_key.get(key)
        if sub is None or cseq == sub.remote_cseq:
            if sub is not None and (sub.call_id != msg.call_id or sub.remote_tag != (msg.from_tag or "")):
                return None
            again = notifier.again(key, peer, now, cseq)
            return None if again is None else (_AGAIN, again)
        if sub.call_id != msg.call_id or sub.remote_tag != (msg.from_tag or ""):
            return None
        if sub.event != "presence" or sub.event_id is not None or cseq < sub.remote_cseq:
            return None
        expires = self._expires(msg, package)
        if expires is None:
            return None
        target = msg.contact_uri
        if target is not None and not _is_sip_uri(target):
            return None
        return (_RENEW, sub, package, cseq, target, expires, now)

    cdef object _expires(self, msg, package):
        try:
            expires = msg.expires
        except SipParseError:
            return None
        if expires is None:
            expires = package.default_expires
        cfg = self.notifier.config
        if 0 < expires < cfg.min_expires:
            return None
        return int(min(expires, cfg.max_expires))
