"""The notifier's stateless fast path for SUBSCRIBE, reference twin of ext/fastsub.pyx.

Theory of operation
-------------------
A presence server's steady load is the life of subscriptions: an initial
SUBSCRIBE, refreshes, an unsubscribe, each answered 200 and followed by a
NOTIFY. Through the general path (server transaction, event dispatch, the
core's presence branch, the notifier's checks, a response from header
pairs) the two SUBSCRIBEs of a subscription's life cost about a hundred
microseconds of Python. ``FastSubscriber.subscribe`` takes the datagram
itself and, for the common requests only, makes the same checks and calls
the notifier's own ``make`` (a new subscription) or ``renew`` (a refresh or
an unsubscribe) in one call, then returns the 200; the caller sends it and
then the NOTIFY it owes (``notify``). For anything else it changes nothing
and hands the parsed request back, and the general path
(``simplefast.presence.subscribe.Notifier``, the specification of every
rule below) answers it.

Stateless (RFC 3261 section 8.2.7). No transaction is kept. Our tag of a new
subscription is the notifier's ``tag_prefix`` and a keyed hash of the
request's branch, Call-ID, CSeq and From tag (``fastreg.to_tag``); the
general path of the worker gives an initial SUBSCRIBE the same one. A
retransmission finds the subscription it made, or its key among the ended
ones (``Notifier.again``), and is answered 200 again without a new
subscription or NOTIFY, on either path; so is a SUBSCRIBE in a dialog with
the CSeq of the dialog's last one, and, for 64*T1 after a subscription
ended, its last SUBSCRIBE (the unsubscribe). The prefix is the worker's
(random for each process, with its steering marker): a copy reaches the
worker that took the request (the kernel sends equal datagrams to the same
socket) unless the workers changed in between, and in another worker it is
a new request, as it would be for the general path's transactions.

While the worker drains or sheds load (``only_again``, set by the caller)
only those copies are answered here: everything else is declined, and the
general path drops or sheds what is new.

Taken here (every condition, else declined):

- the datagram starts ``SUBSCRIBE`` and parses, ``validate_request``
  passes, and the peer is a UDP peer (a 2- or 3-tuple);
- the Event header is ``presence`` (no parameters; case and surrounding
  blanks aside);
- without a To tag (a new subscription): the Request-URI is sip/sips with
  a host of ``config.domains`` (case-insensitive) and a user part without
  ``%`` escape, and names no chat room (``room``); the resource is
  ``scheme:user@host`` with the host lower-cased; the From URI is sip/sips
  with a host and a user part without ``%`` (the watcher is made the same
  way, ``scheme:host`` without a user); a retransmission is answered here
  (above); else the Accept elements admit ``application/pidf+xml`` (or
  there are none), Expires (absent: the package's default) is not 0 and
  not below ``min_expires`` (cut to ``max_expires``), the policy for the
  watcher is ``allow`` (the presentity itself always is), and the Contact
  is a SIP URI;
- with a To tag: the Request-URI is sip/sips with a host that is ours
  (``config.domains``, or ``local_hosts`` with or without the port) and
  names no chat room; a subscription of this worker has that tag (or it
  ended and this is its last SUBSCRIBE again), with the request's Call-ID
  and From tag, for ``presence`` without an id; the CSeq is not lower than
  the dialog's (equal: answered again); Expires is 0 or in bounds as above;
  a Contact, when there is one, is a SIP URI.

Then the notifier's ``make`` or ``renew`` does what the general path does,
and the 200 is ``build_response`` of the request with the top Via stamped
(received, and rport when asked), the To tag (a new subscription),
``Expires``, ``Contact``, ``Allow-Events`` and ``Server``: the bytes the
general path writes for the same request. ``notify`` is the subscription
whose NOTIFY the caller sends next (``Notifier.notify_now``), None after a
retransmission.
"""

from __future__ import annotations

from typing import Any as _Any

from simplefast._ref import sipmsg as _codec
from simplefast._ref.fastreg import to_tag as _to_tag
from simplefast._sipshared import negotiate as _negotiate
from simplefast._sipshared import source_params as _source_params
from simplefast.errors import SipParseError

_SCHEMES = ("sip", "sips")
_AGAIN, _MAKE, _RENEW = 0, 1, 2  # what a request asks of the notifier (_check)
_ALLOW = "allow"  # presence.subscribe.ALLOW (which imports simplefast._impl, which loads us)


def _is_sip_uri(text: str) -> bool:
    """A remote target NOTIFYs can go to (presence.subscribe's check, with this twin's codec)."""
    try:
        u = _codec.parse_uri(text)
    except SipParseError:
        return False
    return u.scheme in _SCHEMES and bool(u.host)


def _clean(v: object) -> bool:
    return type(v) is str and v.isascii() and "\r" not in v and "\n" not in v


class FastSubscriber:
    def __init__(self, config: _Any, agent: _Any, *, server: str, supported: tuple[str, ...], tag_key: bytes,
                 allow_events: str) -> None:  # fmt: skip
        if not _clean(server):
            raise ValueError("server must be ASCII without CR or LF")
        self.config = config
        self.agent = agent
        self.notifier = agent.notifier
        self.server = server
        self.supported = tuple(supported)
        self.tag_key = bytes(tag_key)
        self.allow_events = allow_events
        self.room: _Any = None
        self.only_again = False
        self.answered = 0
        self.declined = 0
        self.notify: _Any = None

    @property
    def allow_events(self) -> str:
        return self._allow_events

    @allow_events.setter
    def allow_events(self, value: str) -> None:
        if not _clean(value):
            raise ValueError("allow_events must be ASCII without CR or LF")
        self._allow_events = value

    def subscribe(self, data: bytes, peer: tuple[_Any, ...], now: float) -> _Any:
        if type(peer) is not tuple:
            raise TypeError(f"peer must be a tuple, not {type(peer).__name__}")
        if type(now) not in (int, float):
            raise TypeError(f"now must be a number, not {type(now).__name__}")
        now = float(now)
        self.notify = None
        if not isinstance(data, bytes):
            data = bytes(data)
        if not data.startswith(b"SUBSCRIBE "):
            return None
        try:
            msg = _codec.parse_message(data)
        except SipParseError:
            return None
        try:  # the checks: nothing changes until they all passed
            plan = self._check(msg, peer, now)
        except SipParseError:
            plan = None
        if plan is None or (self.only_again and plan[0] != _AGAIN):
            self.declined += 1
            return msg
        notifier = self.notifier
        if plan[0] == _MAKE:
            answer = notifier.make(msg, peer, *plan[1:])
        elif plan[0] == _RENEW:
            answer = notifier.renew(plan[1], peer, *plan[2:])
        else:
            answer = plan[1]
        self.answered += 1
        self.notify = answer.sub
        headers = [*answer.headers, ("Allow-Events", self._allow_events), ("Server", self.server)]
        stamp = _source_params(msg, peer)
        tag = answer.to_tag if msg.to_tag is None else None
        return bytes(_codec.build_response(msg, 200, "OK", to_tag=tag, extra_headers=headers, **stamp))

    def _check(self, msg: _Any, peer: tuple[_Any, ...], now: float) -> tuple[_Any, ...] | None:
        """What to do: ``(_AGAIN, answer)``, ``(_MAKE, make's arguments after msg and peer)``,
        ``(_RENEW, sub, renew's arguments after sub and peer)``; None: declined."""
        if len(peer) not in (2, 3) or _codec.validate_request(msg, supported=self.supported) is not None:
            return None
        event = msg.get("Event")
        if event is None or event.strip().lower() != "presence":
            return None
        ruri = _codec.parse_uri(msg.uri)
        if ruri.scheme not in _SCHEMES or ruri.host is None:
            return None
        host = ruri.host.lower()
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
        furi = _codec.parse_uri(msg.from_addr().uri)
        if furi.scheme not in _SCHEMES or furi.host is None:
            return None
        fuser = furi.user
        if fuser is not None and "%" in fuser:
            return None
        msg.to_addr()  # make reads it: parsed here, before anything changes
        resource = f"{ruri.scheme}:{user}@{host}"
        fhost = furi.host.lower()
        watcher = f"{furi.scheme}:{fuser}@{fhost}" if fuser is not None else f"{furi.scheme}:{fhost}"
        tag = _to_tag(self.tag_key, msg.via_branch or "", msg.call_id or "", msg.cseq_num or 0,
                      msg.from_tag or "")  # fmt: skip
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

    def _in_dialog(self, msg: _Any, peer: tuple[_Any, ...], ruri: _Any, host: str, package: _Any,
                   now: float) -> tuple[_Any, ...] | None:  # fmt: skip
        config = self.config
        port = ruri.port
        local = (
            host in config.domains
            or host in config.local_hosts
            or (port is not None and f"{host}:{port}" in config.local_hosts)
        )
        if not local:
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

    def _expires(self, msg: _Any, package: _Any) -> int | None:
        """Expires as the notifier takes it (absent: the default; cut to the maximum);
        None: malformed or below the minimum (the general path answers those)."""
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
