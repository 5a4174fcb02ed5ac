"""Page-mode IM in the server core (RFC 3428, 3994, 5438, 5365), sans-IO.

Theory of operation
-------------------
The core hands every MESSAGE that passed authentication to
:meth:`PageMode.on_message` before the proxy sees it. The answer is either a
final response the core sends, or None: the proxy relays the MESSAGE as any
other request (every registered contact, forking, best response; a body over
1300 octets goes to a UDP contact over TCP, RFC 3261 section 18.1.1, see
simplefast/proxy/proxy.py). When the proxy finds no contact for a user of
ours (its 480), the core asks :meth:`PageMode.unreachable` (rule 3).

1. A body over ``max_body`` octets: 413 with a Warning naming the limit.
2. The URI-list service (``uri_list_service``; RFC 5365): a MESSAGE to it
   needs ``Require: recipient-list-message`` and a multipart body with the list
   (simplefast/im/urilist.py). A malformed or too long list gets its 4xx and
   nothing is sent; otherwise 202, and one MESSAGE per recipient, each sent
   and accounted for on its own (a recipient of ours who is offline gets it
   stored like any other MESSAGE).
3. A MESSAGE to a user of our domains with no registered contact is stored
   (simplefast/store/offline.py) and answered 202 Accepted, when the sender
   may use the store (an authenticated user of our domains; anyone under
   ``--no-auth``) and the body is not an isComposing indication (RFC 3994
   section 3: those are relayed, never stored; the proxy answers them 480).
   A user's full store gets 480 with a Warning; a user that does not exist
   (auth on) 404. A stored MESSAGE that asked for a ``processing``
   disposition (RFC 5438, CPIM body) makes the server send its sender a
   ``stored`` notification.
4. When a user registers (:meth:`registered`, called by the core after a
   200 to a REGISTER that kept contacts), its stored MESSAGEs are delivered
   oldest first, one at a time: each is claimed from the store (a lease, so
   another worker handling a REGISTER of the same user at the same moment
   does not send it too), sent to the address-of-record through the proxy
   (every contact, as a new MESSAGE with the original From, To, Date and
   body), deleted on a 2xx and released on a failure, which stops the round:
   the next REGISTER tries again. Nothing is deleted before a 2xx.

Requests the server originates go through ``Proxy.originate``: routing,
RFC 3263, forking and the size rule are the proxy's.
"""

from __future__ import annotations

import email.utils
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from simplefast._impl import sipmsg as _codec
from simplefast.errors import SipParseError
from simplefast.im import imdn, urilist
from simplefast.logs import RateLimited, get_logger
from simplefast.proxy.location import Location
from simplefast.proxy.proxy import Proxy
from simplefast.proxy.registrar import aor_of
from simplefast.sip import warning_header
from simplefast.store.offline import OfflineFull, OfflineStore, OfflineStoreError, Stored

log = get_logger(__name__)

SipMessage = Any
Answer = tuple[int, str, list[tuple[str, str]]]

# execute(job, done): run job() (in the store's thread) and then done(result, now) on the
# loop, result being job's return value or the exception it raised
Execute = Callable[[Callable[[], Any], Callable[[Any, float], None]], None]

# Headers of a stored MESSAGE kept for its delivery, besides From, To, Date and the body.
_KEPT = ("Subject", "Priority", "In-Reply-To", "Reply-To", "Organization", "User-Agent")


@dataclass(slots=True)
class ImConfig:
    max_body: int = 65536  # larger MESSAGE bodies get 413
    offline: bool = True  # store MESSAGEs for users with no contact
    offline_max_age: float = 7 * 86400.0  # stored MESSAGEs older than this are dropped
    offline_per_user: int = 100  # per-user cap of the store
    uri_list_service: str = ""  # RFC 5365 service URI (sip:user@domain); empty: none
    uri_list_max: int = 100  # most recipients in one list
    offline_durable: bool = False  # SQLite synchronous=FULL: stored MESSAGEs survive an OS crash too


class ImStats:
    __slots__ = (
        "stored", "store_refused", "delivered", "delivery_failed", "too_large", "lists",
        "list_refused", "list_sent", "list_failed", "imdn_sent",
    )  # fmt: skip

    def __init__(self) -> None:
        self.stored = self.store_refused = self.delivered = self.delivery_failed = 0
        self.too_large = self.lists = self.list_refused = self.list_sent = self.list_failed = 0
        self.imdn_sent = 0


class PageMode:
    SWEEP = 60.0  # seconds between expiry sweeps of the store

    def __init__(
        self,
        config: ImConfig,
        proxy: Proxy,
        location: Location,
        store: OfflineStore | None,
        *,
        server_uri: str,
        is_ours: Callable[[str | None], bool],
        new_id: Callable[[], str],
        now: float = 0.0,
        wall: Callable[[], float] = time.time,
        execute: Execute | None = None,
        reader: OfflineStore | None = None,
        marks: Any = None,
    ) -> None:
        self.config = config
        self.proxy = proxy
        self.location = location
        # The store's writes go through ``execute(job, done)``: the worker runs the job in
        # the store's own thread (a write can wait on another worker's lock) and calls
        # done(result, now) back on the loop; without it they run here and now. ``reader``
        # (default: the store) answers has() on the calling thread: a WAL read never waits.
        self.store = store if config.offline else None
        self.reader = reader if reader is not None else self.store
        self.execute = execute
        # marks: the shared table of AORs with stored MESSAGEs (server/shared.py): a
        # REGISTER of a user without one costs a shared-memory read, not an SQLite query.
        # None: ask the store every time.
        self.marks = marks
        self.server_uri = server_uri  # our own identity in IMDNs (sip:domain)
        self.is_ours = is_ours
        self.new_id = new_id  # a fresh unique token (Call-IDs, IMDN Message-IDs)
        self.wall = wall
        self.stats = ImStats()
        self._service = _service_key(config.uri_list_service)
        self._batches: dict[str, list[Stored]] = {}  # AOR -> claimed messages being delivered here
        self._puts: deque[tuple[tuple[Any, ...], Callable[[Any, float], None]]] = deque()
        self._putting = False  # a put job is in the store's thread
        self._next_sweep = now + self.SWEEP
        self._store_error = RateLimited(log, "offline store error")
        self._list_failure = RateLimited(log, "URI-list recipient failed")

    @property
    def service_key(self) -> tuple[str, str] | None:
        """(user, host) of the URI-list service, as ``on_message`` compares Request-URIs."""
        return self._service

    # ------------------------------------------------------------ MESSAGE in
    def on_message(self, msg: SipMessage, now: float, *, local_sender: Callable[[], bool]) -> Answer | None:
        """A MESSAGE (authenticated already), before the proxy routes it: an answer for
        the core (size limit, the URI-list service), or None to route it.

        ``local_sender()``: the sender is an authenticated user of ours (always true
        without auth); asked only for the URI-list service (it parses the From).
        """
        if len(msg.body) > self.config.max_body:
            self.stats.too_large += 1
            warn = warning_header(f"message body over {self.config.max_body} octets")
            return 413, "Request Entity Too Large", [warn]
        if self._service is not None and _service_key(msg.uri) == self._service:
            return self._uri_list(msg, now, local_sender=local_sender())
        return None

    def unreachable(
        self, msg: SipMessage, now: float, *, local_sender: bool, known_user: Callable[[str], bool],
        reply: Callable[[int, str, list[tuple[str, str]], float], None],
    ) -> bool:  # fmt: skip
        """The proxy found no contact for this MESSAGE's user of ours (it would answer
        480): True when the MESSAGE is taken (``reply`` gets the answer, at once or when
        the store has committed it), False to let the 480 stand. Asked only then, so a
        MESSAGE to a user who is online costs nothing here."""
        if self.store is None:
            return False
        body: bytes = msg.body
        ctype = msg.get("Content-Type")
        if not local_sender or imdn.is_composing(ctype, body):
            return False  # not allowed to store, or never stored (RFC 3994 section 3): 480
        try:
            aor = aor_of(msg.uri)[0]
        except SipParseError:
            return False
        if not known_user(aor):
            reply(404, "Not Found", [], now)
            return True
        wall = self.wall()  # the time of arrival orders the user's messages
        date = msg.get("Date") or email.utils.formatdate(wall, usegmt=True)
        extra = tuple((name, v) for name in _KEPT for v in msg.get_all(name))
        args = (
            aor,
            msg.get("From") or "",
            msg.get("To") or "",
            ctype or "text/plain",
            body,
            date,
            wall,
            extra,
        )

        def stored(result: Any, now: float) -> None:
            if isinstance(result, OfflineFull):
                self.stats.store_refused += 1
                reply(480, "Temporarily Unavailable", [warning_header(str(result))], now)
            elif isinstance(result, BaseException):
                self.stats.store_refused += 1
                self._store_error(repr(result), aor)
                reply(500, "Server Internal Error", [warning_header("offline store unavailable")], now)
            else:
                self.stats.stored += 1
                reply(202, "Accepted", [], now)
                req = imdn.imdn_request(ctype, body)
                if req is not None and imdn.wants_processing(req):
                    self._send_stored_imdn(msg, req, now)
                self._after_store(aor, now)

        self._put(args, stored, now)
        return True

    def _put(self, args: tuple[Any, ...], done: Callable[[Any, float], None], now: float) -> None:
        """Store one MESSAGE: queued, and every put queued while the store's thread is busy
        goes in one transaction (one commit) when it is free: a group commit."""
        self._puts.append((args, done))
        if not self._putting:
            self._putting = True
            self._run(self._put_job, self._put_done, now)

    def _put_job(self) -> list[tuple[Callable[[Any, float], None], Any]]:
        """In the store's thread: every queued put in one transaction."""
        store = self.store
        assert store is not None
        batch = []
        while self._puts:  # appended by the loop's thread, taken here: deque is thread-safe
            batch.append(self._puts.popleft())
        try:
            results: list[Any] = list(store.put_many([a for a, _ in batch]))
        except Exception as exc:  # the transaction failed: every put of it did
            results = [exc] * len(batch)
        return [(d, r) for (_, d), r in zip(batch, results, strict=True)]

    def _put_done(self, result: Any, now: float) -> None:
        self._putting = False
        if isinstance(result, BaseException):  # a bug in _put_job itself
            self._store_error(repr(result), "put")
            result = []
        for done, r in result:
            done(r, now)
        if self._puts and not self._putting:  # queued meanwhile
            self._putting = True
            self._run(self._put_job, self._put_done, now)

    def _after_store(self, aor: str, now: float) -> None:
        """A put committed: mark the user (after the commit: see _unmark), and if the user
        registered while it was on its way (the REGISTER found nothing yet), deliver now
        rather than at the next REGISTER."""
        if self.marks is not None:
            try:
                self.marks.put(_mark_key(aor), b"1")
            except Exception as exc:  # TableFullError: from now on every REGISTER asks SQLite
                self._store_error(f"offline marks: {exc}", aor)
                try:
                    self.marks.put(OFFLINE_ALL, b"1")
                except Exception:
                    self.marks = None
        if aor not in self._batches and self.location.get(aor, now):
            self._claim(aor, now)

    def _marked(self, aor: str) -> bool:
        """The user may have stored MESSAGEs (a false answer is never wrong)."""
        m = self.marks
        return m is None or m.get(_mark_key(aor)) is not None or m.get(OFFLINE_ALL) is not None

    def _unmark(self, aor: str) -> None:
        """The user's store looked empty: clear the mark, then look again. A put commits
        before its worker marks; so either this second look sees it, or its mark comes
        after this clearing and stays."""
        m, reader = self.marks, self.reader
        if m is None or reader is None:
            return
        key = _mark_key(aor)
        m.delete(key)
        try:
            if reader.has(aor, self.wall()):
                m.put(key, b"1")
        except (OfflineStoreError, sqlite3.Error) as exc:
            self._store_error(repr(exc), aor)
            m.put(key, b"1")

    def _run(self, job: Callable[[], Any], done: Callable[[Any, float], None], now: float) -> None:
        """A store job: in the store's thread when the worker gave an executor."""
        if self.execute is not None:
            self.execute(job, done)
            return
        try:
            result = job()
        except Exception as exc:
            result = exc
        done(result, now)

    def _send_stored_imdn(self, msg: SipMessage, req: imdn.ImdnRequest, now: float) -> None:
        """RFC 5438: an intermediary that stores a message may tell its sender so."""
        ctype, body = imdn.stored_notification(
            req,
            notifier=f"<{self.server_uri}>",
            now=self.wall(),
            message_id=self.new_id().partition("@")[0],
        )
        sender = imdn.notification_target(req)  # the top IMDN-Route, else the CPIM sender
        if not sender.startswith(("sip:", "sips:")):
            try:
                sender = msg.from_addr().uri  # an im: URI: the SIP sender instead
            except SipParseError:
                return
        tag = self.new_id().partition("@")[0][-10:]
        request = self._request(sender, f"<{self.server_uri}>;tag={tag}", f"<{sender}>", ctype, body, [])
        if request is not None and self.proxy.originate(request, now, _ignore) is None:
            self.stats.imdn_sent += 1

    # ------------------------------------------------------------ RFC 5365
    def _uri_list(self, msg: SipMessage, now: float, *, local_sender: bool) -> Answer:
        if not local_sender:
            return 403, "Forbidden", [warning_header("the URI-list service is for our users only")]
        if not {"recipient-list-message", "recipient-list"} & set(msg.get_all("Require")):
            # RFC 5365 section 4.1 names the option tag recipient-list-message
            return 403, "Forbidden", [warning_header("Require: recipient-list-message expected")]
        try:
            exp = urilist.expand(
                msg.get("Content-Type"), msg.body, max_recipients=self.config.uri_list_max,
                max_bytes=self.config.max_body,
            )  # fmt: skip
        except urilist.UriListError as exc:
            self.stats.list_refused += 1
            hdrs = [warning_header(str(exc))]
            if exc.accept:
                hdrs.append(("Accept", exc.accept))
            return exc.status, exc.reason, hdrs
        self.stats.lists += 1
        from_value = msg.get("From") or ""
        for rcpt in exp.recipients:
            ctype, body = urilist.forwarded_body(exp, rcpt, boundary=f"sf{self.new_id()[:16]}")
            # the payload alone keeps its own MIME headers (Content-ID, Content-Disposition)
            extra = list(exp.payload_headers) if body is exp.payload else []
            self._send_copy(msg, from_value, rcpt.uri, ctype, body, now, extra)
        return 202, "Accepted", []

    def _send_copy(
        self, msg: SipMessage, from_value: str, uri: str, ctype: str, body: bytes, now: float,
        extra: list[tuple[str, str]],
    ) -> None:  # fmt: skip
        """One recipient's MESSAGE of a URI list: relayed, or stored when it is our
        user and offline; a failure is counted and logged, and touches no other."""
        stats = self.stats
        try:
            parts = _codec.parse_uri(uri)
        except SipParseError:
            stats.list_failed += 1
            return
        if (
            self.store is not None
            and parts.scheme in ("sip", "sips")
            and self.is_ours(parts.host)
            and parts.user
        ):
            aor = aor_of(uri)[0]
            if not self.location.get(aor, now):
                wall = self.wall()
                args = (aor, from_value, f"<{uri}>", ctype, body, email.utils.formatdate(wall, usegmt=True),
                        wall, tuple(extra))  # fmt: skip

                def stored(result: Any, now: float) -> None:
                    if isinstance(result, BaseException):
                        stats.list_failed += 1
                        self._list_failure(repr(result), uri)
                    else:
                        stats.stored += 1
                        stats.list_sent += 1
                        self._after_store(aor, now)

                self._put(args, stored, now)
                return
        request = self._request(uri, from_value, f"<{uri}>", ctype, body, extra)
        if request is None:
            stats.list_failed += 1
            return

        def done(status: int, now: float) -> None:
            if 200 <= status < 300:
                stats.list_sent += 1
            else:
                stats.list_failed += 1
                self._list_failure(f"final status {status}", uri)

        answer = self.proxy.originate(request, now, done)
        if answer is not None:
            done(answer[0], now)

    # ------------------------------------------------------------ delivery
    BATCH = 10  # messages claimed at once, then sent one after the other
    LEASE = 90.0  # seconds a claim holds them (a batch of slow successes must fit)

    def registered(self, msg: SipMessage, now: float) -> None:
        """A REGISTER got its 200 and kept contacts: deliver what is stored for the user."""
        if self.store is None:
            return
        try:
            aor = aor_of(msg.to_addr().uri)[0]
        except SipParseError:
            return
        if aor not in self._batches and self._marked(aor):  # not delivering this user's already
            self._claim(aor, now)

    def _claim(self, aor: str, now: float, *, delete: int | None = None) -> None:
        """Claim the user's oldest messages (nothing while another worker's claim of
        them is live: that worker is delivering, in order) and send the first.
        ``delete``: the message just delivered, deleted by the same job first (then
        the claim, a write, is made only if anything is left)."""
        assert self.store is not None and self.reader is not None
        if delete is None:
            try:
                if not self.reader.has(aor, self.wall()):  # a read: on this thread, never waits
                    self._unmark(aor)
                    return
            except (OfflineStoreError, sqlite3.Error) as exc:
                self._store_error(repr(exc), aor)
                return
        store, wall = self.store, self.wall()
        batch, lease = self.BATCH, self.LEASE
        self._batches[aor] = []  # claiming: a second REGISTER meanwhile starts nothing

        def job() -> list[Stored]:
            if delete is not None:
                store.delivered(delete)
                if not store.has(aor, wall):
                    return []
            return store.claim(aor, wall, limit=batch, lease=lease, in_order=True)

        def claimed(result: Any, now: float) -> None:
            if isinstance(result, BaseException):
                self._store_error(repr(result), aor)
                result = []
            if result:
                self._batches[aor] = list(result)
                self._send_head(aor, now)
            else:
                del self._batches[aor]
                if delete is not None:  # delivered the last one, nothing came since
                    self._unmark(aor)

        self._run(job, claimed, now)

    def _send_head(self, aor: str, now: float) -> None:
        """Send the first message of the user's batch (the next after its 2xx)."""
        item = self._batches[aor][0]
        request = self._request(aor, item.sender, item.to, item.content_type, item.body,
                                [("Date", item.date), *item.extra])  # fmt: skip
        if request is None:  # cannot be written into a request any more: dropped
            self.stats.delivery_failed += 1
            self._delivered(aor, 200, now)
            return
        answer = self.proxy.originate(request, now, lambda status, now: self._delivered(aor, status, now))
        if answer is not None:
            self._delivered(aor, answer[0], now)

    def _delivered(self, aor: str, status: int, now: float) -> None:
        """The outcome of the head of the user's batch: a 2xx deletes it and the next
        goes; anything else releases the rest of the batch for the next REGISTER. The
        store's jobs run in order, so a claim made after a delete sees it done."""
        store = self.store
        assert store is not None
        batch = self._batches[aor]
        item = batch.pop(0)
        if 200 <= status < 300:
            self.stats.delivered += 1
            if not batch:  # the last of the batch: delete it and claim what came since, in one job
                del self._batches[aor]
                self._claim(aor, now, delete=item.id)
                return
            self._run(lambda: store.delivered(item.id), self._job_done, now)
        else:
            self.stats.delivery_failed += 1
            ids, wall = [item.id, *(it.id for it in batch)], self.wall()

            def release() -> None:
                for i in ids:
                    store.release(i, wall)

            self._run(release, self._job_done, now)
            batch.clear()
        if batch:
            self._send_head(aor, now)
            return
        del self._batches[aor]

    def _job_done(self, result: Any, now: float) -> None:
        if isinstance(result, BaseException):
            self._store_error(repr(result), "delivery")

    # ------------------------------------------------------------ timers
    def next_deadline(self) -> float | None:
        return self._next_sweep if self.store is not None else None

    def handle_timer(self, now: float) -> None:
        """Drop stored MESSAGEs past their age (every SWEEP seconds)."""
        if self.store is None or now < self._next_sweep:
            return
        self._next_sweep = now + self.SWEEP
        store, wall = self.store, self.wall()
        self._run(lambda: store.expire(wall), self._job_done, now)

    # ------------------------------------------------------------ helpers
    def _request(
        self, ruri: str, from_value: str, to_value: str, ctype: str, body: bytes, extra: list[tuple[str, str]]
    ) -> SipMessage | None:
        """A parsed MESSAGE of ours, without a Via (the proxy adds it)."""
        head = [
            f"MESSAGE {ruri} SIP/2.0", f"From: {from_value}", f"To: {to_value}",
            f"Call-ID: {self.new_id()}", "CSeq: 1 MESSAGE", "Max-Forwards: 70",
            *(f"{n}: {v}" for n, v in extra), f"Content-Type: {ctype}", f"Content-Length: {len(body)}",
        ]  # fmt: skip
        data = ("\r\n".join(head) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body
        try:
            return _codec.parse_message(data)
        except SipParseError:
            return None


OFFLINE_ALL = b"*"  # see simplefast/server/shared.py


def _mark_key(aor: str) -> bytes:
    return aor.encode("utf-8", "surrogateescape")


def _ignore(status: int, now: float) -> None:
    return None


def _service_key(uri: str) -> tuple[str, str] | None:
    """(user, host) of a URI, for comparing a Request-URI with the service's (RFC 5365
    section 9 names its service by a host alone: sip:list-service.example.com)."""
    if not uri:
        return None
    try:
        u = _codec.parse_uri(uri)
    except SipParseError:
        return None
    if u.host is None:
        return None
    return u.user or "", u.host.lower()
