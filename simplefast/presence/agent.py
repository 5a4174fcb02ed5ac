"""The presence agent of one worker (RFC 3856): PUBLISH and SUBSCRIBE for our AORs, sans-IO.

It ties the publication engine (``publish.py``), the shared presentity state
(``state.py``) and the notifier (``subscribe.py``) together for the SIP core
(``simplefast/proxy/core.py``), which has already checked that the
Request-URI is an AOR of our domains and authenticated the sender:

- ``publish``: applies a PUBLISH; when the state changed, NOTIFYs the
  watchers here and asks the worker to tell the others that hold
  subscriptions to it (``broadcast`` to the workers ``marks`` names, both set
  by the worker: hand-off frames, ``simplefast/transport/handoff.py``, and a
  shared table of marks, ``simplefast/server/shared.py``);
- ``subscribe`` / ``refresh``: the notifier's answers;
- ``remote_changed``: another worker changed a presentity: NOTIFY the
  watchers here;
- timers: publication expiry (a change like any other; the worker that
  wrote a publication watches its expiry, a replacement worker all of them)
  and the notifier's.

``PresencePackage`` is the ``presence`` event package for the notifier: the
body of a presentity for a policy class, built once per (version, policy
class, content type) and shared by every watcher (DESIGN.md: never per
watcher).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from simplefast._impl import pidfscan as _pidfscan
from simplefast.errors import SipParseError
from simplefast.presence.pidf import Publication as PidfPublication
from simplefast.presence.pidf import check_pidf, compose, default_document, parse_pidf
from simplefast.presence.publish import Package, Publications, PublishConfig, Result
from simplefast.presence.state import Presentity, PresentityStore, PubRecord
from simplefast.presence.subscribe import (
    ALLOW,
    BLOCK,
    POLICIES,
    POLITE_BLOCK,
    Answer,
    Body,
    Notifier,
    NotifierConfig,
    Subscription,
    SubscriptionTable,
)
from simplefast.presence.winfo import NAME as WINFO_EVENT
from simplefast.presence.winfo import WATCHED, WatcherEvent, WinfoPackage, event_of
from simplefast.sip import warning_header

PIDF = "application/pidf+xml"


@dataclass(slots=True)
class PresenceConfig:
    default_policy: str = ALLOW
    policies: dict[str, str] = field(default_factory=dict)  # domain -> policy
    min_notify_interval: float = 5.0
    min_expires: int = 60
    max_expires: int = 3600
    publish_min_expires: int = 60
    publish_max_expires: int = 86400
    notify_grace: bool = False
    notify_window: int = 500  # NOTIFYs awaiting their response per worker; more queue (0: no limit)
    default_document: str = "closed"  # closed / note / empty (pidf.default_document)
    default_note: str | None = None
    winfo_admins: frozenset[str] = frozenset()  # AORs that may see anyone's watchers
    pending_timeout: float = 0.0  # pending (confirm) this long: terminated;reason=giveup (0: never)
    # A stop that keeps no subscription (persist_presence off) ends them with reason
    # probation;retry-after=N (watchers come back after N seconds: a planned maintenance)
    # instead of deactivated (at once); 0: deactivated.
    stop_retry_after: int = 0

    def policy(self, watcher: str, resource: str, event: str) -> str:
        if event == WINFO_EVENT:  # a presentity's watchers: itself (the notifier checks) and admins
            return ALLOW if watcher in self.winfo_admins else BLOCK
        if event == "conference":  # a chat room's participant list (simplefast/msrp/conference.py)
            return ALLOW
        domain = resource.rpartition("@")[2]
        return self.policies.get(domain, self.default_policy)


assert ALLOW in POLICIES


def compose_pidf(resource: str, pubs: Sequence[tuple[PubRecord, Any]]) -> bytes:
    return compose(resource, [PidfPublication(p.etag, doc, p.changed_at) for p, doc in pubs])


class PresencePackage:
    def __init__(
        self, store: PresentityStore, config: PresenceConfig,
        documents: Callable[[str], Presentity] | None = None,
    ) -> None:  # fmt: skip
        self.documents = documents or store.load  # the state with its document composed
        self.name = "presence"
        self.content_types: tuple[str, ...] = (PIDF,)
        self.default_expires = 3600
        self.store = store
        self.config = config
        self._bodies: dict[tuple[str, str], Body] = {}
        self._held: tuple[str, Presentity] | None = None  # (resource, policy) -> body of a version

    def version(self, resource: str) -> int:
        return self.store.load(resource).version

    def has_news(self, sub: Subscription) -> bool:
        return self.store.load(sub.resource).version != sub.version

    def prepare(self, sub: Subscription) -> None:
        pass

    def hold(self, resource: str | None) -> None:
        """Around a fan-out: the resource's state is read once, not once per watcher."""
        self._held = None if resource is None else (resource, self.store.load(resource))

    def body(self, sub: Subscription) -> Body:
        return self.policy_body(sub.resource, sub.policy)

    def policy_body(self, resource: str, policy: str) -> Body:
        """The body of ``resource`` for a watcher under ``policy``: it depends on nothing
        else, so the notifier's fan-out over rows asks once per policy class
        (Notifier.changed)."""
        held = self._held
        state = held[1] if held is not None and held[0] == resource else self.store.load(resource)
        key = (resource, policy)
        hit = self._bodies.get(key)
        if hit is not None and hit.version == state.version:
            return hit
        if state.pubs and not state.document:
            state = self.documents(resource)  # composed here (once per version) or by another worker
        if state.document and policy != POLITE_BLOCK:
            data = state.document
        else:
            data = default_document(resource, self.config.default_document, self.config.default_note)
        body = Body(state.version, PIDF, data)
        if len(self._bodies) > 65536:
            self._bodies.clear()
        self._bodies[key] = body
        return body


class PresenceAgent:
    def __init__(
        self, tl: Any, store: PresentityStore, config: PresenceConfig, *,
        contact: Callable[[tuple[Any, ...]], str], via: Callable[[tuple[Any, ...]], str],
        table: SubscriptionTable | None = None, index: int = 0,
    ) -> None:  # fmt: skip
        self.config = config
        self.store = store
        pidf = Package("presence", (PIDF,), parse_pidf, check=check_pidf, scan=_pidfscan.scan)
        self.publications = Publications(
            {"presence": pidf},
            PublishConfig(min_expires=config.publish_min_expires, max_expires=config.publish_max_expires),
            store,
            compose=compose_pidf,
        )
        self.package = PresencePackage(store, config, self.publications.document)
        self.publications.watched = self._watched_anywhere
        self.table = table
        self.winfo = WinfoPackage(self._full_state, clock=lambda: self.now)
        # the time of the message or timer being handled (the SIP core sets it for every
        # message): what the notifier's callbacks (watcher information) act at
        self.now = 0.0
        self.notifier = Notifier(
            tl, {"presence": self.package, WINFO_EVENT: self.winfo}, policy=config.policy, contact=contact,
            via=via, on_watcher=self._watcher_changed, on_watched=self._watched,
            config=NotifierConfig(min_expires=config.min_expires, max_expires=config.max_expires,
                                  min_notify_interval=config.min_notify_interval,
                                  notify_grace=config.notify_grace, notify_window=config.notify_window,
                                  pending_timeout=config.pending_timeout,
                                  probation_retry_after=config.stop_retry_after),
            table=table, index=index,
        )  # fmt: skip
        # set by the worker: tell every other worker that a presentity changed
        self.broadcast: Callable[[str, list[int] | None], object] | None = None
        # set by the worker (a shared table, server/shared.py): marks(event, resource) -> the
        # worker indexes holding subscriptions of that event to resource; mark(event,
        # resource, on) says whether this one does. A change is told only to those
        # (transport/handoff.py). send_watcher(index, event) hands a watcher event on.
        self.marks: Callable[[str, str], list[int]] | None = None
        self.mark: Callable[[str, str, bool], object] | None = None
        self.send_watcher: Callable[[int, WatcherEvent], object] | None = None
        self.index = index
        self.published = 0
        self.on_fanout: Callable[[float], object] | None = None  # set by the worker (metrics)

    def add_package(self, package: Any) -> None:
        """Another event package for the notifier (the chat focus's ``conference``)."""
        n = self.notifier
        n.packages[package.name] = package
        n.allow_events = ", ".join(sorted(n.packages))

    def publish(self, msg: Any, resource: str, now: float, *, etag: str | None = None) -> Result:
        """``etag``: the entity-tag a success mints (Publications.publish), None for one of ours."""
        self.now = now
        event = msg.event
        ctype = msg.get("Content-Type")
        try:
            expires = msg.expires
        except SipParseError as exc:
            return Result(400, "Bad Request", [warning_header(str(exc))])
        r = self.publications.publish(resource, event, msg.get("SIP-If-Match"), expires, ctype, msg.body, now,
                                      etag=etag)  # fmt: skip
        if r.status == 200:
            self.published += 1
        return r

    def publish_done(self, r: Result, now: float) -> None:
        """After the answer to a PUBLISH went out: NOTIFY what it changed."""
        if r.changed is not None:
            self._changed(r.changed, now)

    def changed(self, resource: str, now: float) -> None:
        """The published state of ``resource`` changed outside ``publish`` (the stateless
        fast path, simplefast/_ref/fastpub.py): NOTIFY its watchers, here and elsewhere."""
        self.now = now
        self._changed(resource, now)

    def subscribe(
        self, msg: Any, peer: tuple[Any, ...], resource: str, watcher: str, now: float, tag: str | None = None
    ) -> Answer:
        self.now = now
        return self.notifier.subscribe(msg, peer, resource, watcher, now, tag)

    def refresh(self, msg: Any, peer: tuple[Any, ...], now: float) -> Answer:
        self.now = now
        return self.notifier.refresh(msg, peer, now)

    def remote_changed(self, resource: str, now: float) -> None:
        """Another worker changed ``resource`` (this one holds subscriptions to it)."""
        self._fan_out(resource, now)

    def _fan_out(self, resource: str, now: float) -> None:
        """NOTIFY the presence watchers of ``resource`` held here; the time it took goes to
        ``on_fanout`` (the metrics' histogram) when NOTIFYs went."""
        if self.on_fanout is None:
            self.notifier.changed(resource, now)
            return
        t0 = time.perf_counter()
        if self.notifier.changed(resource, now):
            self.on_fanout(time.perf_counter() - t0)

    def next_deadline(self) -> float | None:
        a = self.publications.next_deadline()
        b = self.notifier.next_deadline()
        if a is None:
            return b
        return a if b is None or a < b else b

    def handle_timer(self, now: float) -> None:
        self.now = now
        for resource in self.publications.expire(now):
            self._changed(resource, now)
        self.notifier.handle_timer(now)

    # ---------------------------------------------------------------- watcher information
    def _full_state(self, resource: str) -> list[WatcherEvent]:
        """Every presence subscription to ``resource`` in every worker (the shared table)."""
        subs = self.notifier.table.scan(resource, WATCHED) if self.notifier.table is not None else []
        return [event_of(s) for s in subs]

    def deactivate_all(self, now: float) -> int:
        """The server stops without keeping subscriptions (``persist_presence`` off): every
        subscription held here ends with ``terminated;reason=deactivated`` (RFC 6665
        4.1.3: subscribe again at once), which its winfo subscribers see as event
        ``deactivated`` (RFC 3857); with ``stop_retry_after`` set, with
        ``terminated;reason=probation;retry-after=N`` (subscribe again after N seconds),
        event ``probation``. How many ended."""
        self.now = now
        reason = "probation" if self.config.stop_retry_after else "deactivated"
        return self.notifier.end_all(reason, now)

    def _watched_anywhere(self, resource: str) -> bool:
        if (WATCHED, resource) in self.notifier.watchers:
            return True
        return bool(self.marks(WATCHED, resource)) if self.marks is not None else False

    def _watched(self, event: str, resource: str, on: bool) -> None:
        if self.mark is not None:
            self.mark(event, resource, on)

    def _watcher_changed(self, sub: Subscription, event: str, status: str) -> None:
        """A subscription here was made or ended: tell the winfo subscribers of its resource."""
        if sub.event != WATCHED:
            return
        targets = self.marks(WINFO_EVENT, sub.resource) if self.marks is not None else [self.index]
        if not targets:
            return
        ev = WatcherEvent(sub.resource, sub.key, sub.remote_uri, event, status, sub.subscribed_at,
                          sub.expires_at)  # fmt: skip
        for i in targets:
            if i == self.index:
                self.watcher_event(ev, self.now)
            elif self.send_watcher is not None:
                self.send_watcher(i, ev)

    def reconfigured(self, new: PresenceConfig, removed: Sequence[str], now: float) -> int:
        """SIGHUP: the policies of ``new`` replace ours and every subscription held here is
        judged again (rejected / approved, Notifier.reauthorize); subscriptions to the
        AORs in ``removed`` (users deleted) end with reason noresource. How many changed."""
        cfg = self.config
        cfg.default_policy, cfg.policies, cfg.winfo_admins = (
            new.default_policy,
            new.policies,
            new.winfo_admins,
        )
        cfg.pending_timeout = self.notifier.config.pending_timeout = new.pending_timeout
        self.now = now
        n = sum(self.notifier.end_resource(aor, "noresource", now) for aor in removed)
        return n + self.notifier.reauthorize(now)

    def watcher_event(self, ev: WatcherEvent, now: float) -> None:
        """A watcher of ``ev.resource`` came or went (here or in another worker)."""
        subs = self.notifier.watchers.get((WINFO_EVENT, ev.resource))
        if not subs:
            return
        for sub in subs.values():
            self.winfo.queue(sub, ev)
        self.now = now
        self.notifier.changed(ev.resource, now, WINFO_EVENT)

    def restore(self, now: float) -> int:
        """At start: watch every presentity's expiry, take back this worker's subscriptions."""
        if self.store.count():  # a scan reads every slot (and makes its page resident)
            for aor in self.store.aors():
                self.publications.track(aor)
        return self.notifier.adopt(now)

    def _changed(self, resource: str, now: float) -> None:
        self._fan_out(resource, now)
        if self.broadcast is not None:
            # only the workers holding subscriptions to it (all of them when unknown)
            targets = self.marks(WATCHED, resource) if self.marks is not None else None
            if targets is None or any(i != self.index for i in targets):
                self.broadcast(resource, targets)
