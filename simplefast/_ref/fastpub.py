"""The state agent's stateless fast path for PUBLISH, reference twin of ext/fastpub.pyx.

Theory of operation
-------------------
Most PUBLISHes a presence server sees are initial publications over UDP of a
presentity nobody watches yet (a phone coming on line, a load test). Through
the general path (server transaction, event dispatch, the core's presence
branch, ``Publications.publish``, a response from header pairs) each costs a
hundred and more microseconds of Python around the body check.
``FastPublisher.publish`` takes the datagram itself and, for those requests
only, does RFC 3903 section 6 in one call and returns the 200; for anything
else it changes nothing and hands the parsed request back, and the general
path (``simplefast.presence.publish``, the specification of every rule
below) answers it.

Stateless (RFC 3261 section 8.2.7). No transaction is kept. The entity-tag
(and the To tag) of the answer is a keyed hash of the request's branch,
Call-ID, CSeq and From tag (``fastreg.to_tag``), and the general path gives
an initial PUBLISH the same one. A retransmission therefore finds a live
publication with the entity-tag it would mint (live, or past its time and
not yet expired), or, when that publication was modified, refreshed,
removed or expired since, the tag among the row's retired
ones (kept 64*T1, ``Presentity.retired``): it is the request again, and it
is answered as before without a new publication (on either path,
``Publications.publish`` has the same rule). Every publication write
keeps only the retired tags whose window has not passed.

Taken here (every condition, else declined):

- the datagram starts ``PUBLISH`` and parses, ``validate_request`` passes,
  and the peer is a UDP peer (a 2- or 3-tuple);
- no To tag and no SIP-If-Match (an initial publication);
- the Request-URI is sip/sips with a host of ``config.domains``
  (case-insensitive) and a user part without ``%`` escape; the resource is
  ``scheme:user@host`` with the host lower-cased; the From URI is a SIP URI
  with a host (the general path answers 400 otherwise);
- the Event package is ``presence`` and the publications take it with a
  ``check`` (the body's checks without building the document);
- Expires (absent: the package's default) is not 0 and not below the
  publications' ``min_expires``; it is cut to ``max_expires``;
- the Content-Type (without parameters, lower-cased) is one the package
  takes, the body is not empty, and ``check`` accepts it (a body it refuses
  is declined: the general path answers the error). The package's
  ``scan`` (for PIDF the one-pass ``pidfscan.scan``), when it has one, is
  asked first: its True is a sure "``check`` accepts it", and only its "not
  sure" costs the full check;
- nobody watches the resource (``publications.watched``; when that is not
  set, every request is declined): a watched presentity's document is kept
  and its watchers notified by the general path;
- the row's compare-and-swap succeeds within the general path's retries and
  the row fits the table.

Then the presentity's row holds the live publications and the new one, with
version + 1 and no document (composed by its first reader, as
``Publications._write`` leaves it), the expiry heap of the publications gets
the row's next deadline, and the 200 is ``build_response`` of the request
with the top Via stamped (received, and rport when asked), the To tag,
``SIP-ETag``, ``Expires``, ``Allow-Events`` and ``Server``: the bytes the
general path writes for the same request. If someone started watching the
resource while the row was written, ``changed`` names it: the caller
notifies its watchers as the general path does after its answer.
"""

from __future__ import annotations

import heapq
from typing import Any as _Any

from simplefast._ref import sipmsg as _codec
from simplefast._ref.fastreg import to_tag as _to_tag
from simplefast._sipshared import source_params as _source_params
from simplefast.errors import ProtocolError, SimplefastError, SipParseError
from simplefast.presence.state import CAS_RETRIES as _CAS_RETRIES
from simplefast.presence.state import PubRecord
from simplefast.presence.state import encode as _encode
from simplefast.presence.state import mark_prefix as _mark_prefix
from simplefast.presence.state import still_retired as _still_retired


def _clean(v: object) -> bool:
    return type(v) is str and v.isascii() and "\r" not in v and "\n" not in v


class FastPublisher:
    def __init__(self, config: _Any, publications: _Any, *, server: str, supported: tuple[str, ...],
                 tag_key: bytes, allow_events: str) -> None:  # fmt: skip
        if not _clean(server):
            raise ValueError("server must be ASCII without CR or LF")
        self.config = config
        self.publications = publications
        self.server = server
        self.supported = tuple(supported)
        self.tag_key = bytes(tag_key)
        self.allow_events = allow_events
        self.answered = 0
        self.declined = 0
        self.changed: str | None = None
        self._local: _Any = None
        self._marks: _Any = None
        self._workers = 0

    def watch_table(self, local: _Any, marks: _Any, workers: int) -> None:
        """Tell whether a resource is watched from these instead of calling
        ``publications.watched``: ``local``, this worker's watchers (the notifier's
        ``watchers``, keyed ``(event, resource)``), and ``marks``, the shared table of
        ``event NUL resource NUL index`` keys of the workers holding subscriptions, for
        ``workers`` workers (simplefast/server/worker.py ``marked``: a key too long for
        the table means every worker)."""
        self._local, self._marks, self._workers = local, marks, int(workers)

    def _watched(self, resource: str, base: bytes) -> bool:
        """``base``: the resource's marks key prefix (``mark_prefix``), made once per request."""
        marks = self._marks
        if marks is None:
            return bool(self.publications.watched(resource))
        if ("presence", resource) in self._local:
            return True
        if len(base) + len(str(self._workers)) > marks.key_max:
            return True
        return any(marks.get(base + str(i).encode()) is not None for i in range(self._workers))

    @property
    def allow_events(self) -> str:
        return self._allow_events

    @allow_events.setter
    def allow_events(self, value: str) -> None:
        if not _clean(value):
            raise ValueError("allow_events must be ASCII without CR or LF")
        self._allow_events = value

    def publish(self, data: bytes, peer: tuple[_Any, ...], now: float) -> _Any:
        if type(peer) is not tuple:
            raise TypeError(f"peer must be a tuple, not {type(peer).__name__}")
        if type(now) not in (int, float):
            raise TypeError(f"now must be a number, not {type(now).__name__}")
        now = float(now)
        self.changed = None
        if not isinstance(data, bytes):
            data = bytes(data)
        if not data.startswith(b"PUBLISH "):
            return None
        try:
            msg = _codec.parse_message(data)
        except SipParseError:
            return None
        try:
            out = self._apply(msg, peer, now)
        except SipParseError:
            out = None
        if out is None:
            self.declined += 1
            return msg
        self.answered += 1
        return out

    def _apply(self, msg: _Any, peer: tuple[_Any, ...], now: float) -> bytes | None:
        """The 200, the change made; None: declined, nothing changed."""
        if len(peer) not in (2, 3) or _codec.validate_request(msg, supported=self.supported) is not None:
            return None
        if msg.to_tag is not None or msg.get("SIP-If-Match") is not None:
            return None
        ruri = _codec.parse_uri(msg.uri)
        if ruri.scheme not in ("sip", "sips") or ruri.host is None:
            return None
        host = ruri.host.lower()
        user = ruri.user
        if host not in self.config.domains or user is None or "%" in user:
            return None
        furi = _codec.parse_uri(msg.from_addr().uri)
        if furi.scheme not in ("sip", "sips") or furi.host is None:
            return None
        pubs = self.publications
        package = pubs.packages.get("presence")
        event = msg.event
        if package is None or package.check is None or event is None or event.strip().lower() != "presence":
            return None
        expires = msg.expires
        if expires is None:
            expires = package.default_expires
        cfg = pubs.config
        if expires == 0 or expires < cfg.min_expires:
            return None
        expires = min(expires, cfg.max_expires)
        ctype = (msg.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        body = bytes(msg.body)
        if not body or ctype not in package.content_types:
            return None
        resource = f"{ruri.scheme}:{user}@{host}"
        base = _mark_prefix("presence", resource)
        if pubs.watched is None or self._watched(resource, base):
            return None
        scan = package.scan
        if scan is None or not scan(body):  # not sure: the full check decides
            try:
                package.check(body)
            except ProtocolError:
                return None
        etag = _to_tag(self.tag_key, msg.via_branch or "", msg.call_id or "", msg.cseq_num or 0,
                      msg.from_tag or "")  # fmt: skip
        store = pubs.store
        put_encoded = getattr(store, "put_encoded", None)
        for _ in range(_CAS_RETRIES):
            state = store.load(resource)
            live = [p for p in state.pubs if p.expires_at > now]
            retired = _still_retired(state, now)
            if any(p.etag == etag for p in state.pubs) or any(r[0] == etag for r in retired):
                break  # the request again (a retransmission): answered as it was
            live.append(PubRecord(etag, package.name, ctype, body, now, now + expires))
            new = state._replace(version=state.version + 1, pubs=tuple(live), document=b"", seq=state.seq + 1,
                                 retired=retired)  # fmt: skip
            try:
                if state.seq == 0 and put_encoded is not None:  # the presentity's first row
                    written = put_encoded(resource, 0, _encode(new))
                else:
                    written = store.replace(resource, state.seq, new)
            except SimplefastError:  # StateFullError: the general path answers 413 or 500
                return None
            if written:
                heapq.heappush(pubs._expiry, (min(p.expires_at for p in live), resource))
                if self._watched(resource, base):  # someone subscribed meanwhile: the caller notifies
                    self.changed = resource
                break
            pubs.conflicts += 1
        else:
            return None
        headers = [("SIP-ETag", etag), ("Expires", str(expires)), ("Allow-Events", self._allow_events),
                   ("Server", self.server)]  # fmt: skip
        stamp = _source_params(msg, peer)
        return bytes(_codec.build_response(msg, 200, "OK", to_tag=etag, extra_headers=headers, **stamp))
