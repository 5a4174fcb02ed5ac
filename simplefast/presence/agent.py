"""The presence agent of one worker (RFC 3856): PUBLISH and SUBSCRIBE for our AORs, sans-IO.

It ties the publication engine (``publish.py``), the shared presentity state
(``state.py``) and the notifier (``subscribe.py``) together for the SIP core
(``simplefast/proxy/core.py``), which has already checked that the
Request-URI is an AOR of our domains and authenticated the sender:

- ``publish``: applies a PUBLISH; when the state changed, NOTIFYs the
  watchers here and asks the worker to tell the others (``broadcast``, set by
  the worker: a hand-off frame to every other worker,
  ``simplefast/transport/handoff.py``);
- ``subscribe`` / ``refresh``: the notifier's answers;
- ``remote_changed``: another worker changed a presentity: NOTIFY the
  watchers here, and watch its publications' expiry;
- timers: publication expiry (a change like any other) and the notifier's.

``PresencePackage`` is the ``presence`` event package for the notifier: the
body of a presentity for a policy class, built once per (version, policy
class, content type) and shared by every watcher (DESIGN.md: never per
watcher).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from simplefast.presence.pidf import Publication as PidfPublication
from simplefast.presence.pidf import compose, default_document, parse_pidf
from simplefast.presence.publish import Package, Publications, PublishConfig, Result
from simplefast.presence.state import PresentityStore, PubRecord
from simplefast.presence.subscribe import (
    ALLOW,
    POLICIES,
    POLITE_BLOCK,
    Answer,
    Body,
    Notifier,
    NotifierConfig,
    SubscriptionTable,
)

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
    default_document: str = "closed"  # closed / note / empty (pidf.default_document)
    default_note: str | None = None

    def policy(self, watcher: str, resource: str, event: str) -> str:
        domain = resource.rpartition("@")[2]
        return self.policies.get(domain, self.default_policy)


assert ALLOW in POLICIES


def compose_pidf(resource: str, pubs: Sequence[tuple[PubRecord, Any]]) -> bytes:
    return compose(resource, [PidfPublication(p.etag, doc, p.changed_at) for p, doc in pubs])


class PresencePackage:
    def __init__(self, store: PresentityStore, config: PresenceConfig) -> None:
        self.name = "presence"
        self.content_types: tuple[str, ...] = (PIDF,)
        self.default_expires = 3600
        self.store = store
        self.config = config
        self._bodies: dict[tuple[str, str], Body] = {}  # (resource, policy) -> body of a version

    def version(self, resource: str) -> int:
        return self.store.load(resource).version

    def body(self, resource: str, policy: str, content_type: str) -> Body:
        state = self.store.load(resource)
        key = (resource, policy)
        hit = self._bodies.get(key)
        if hit is not None and hit.version == state.version:
            return hit
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
        contact: Callable[[tuple[Any, ...]], str], via: Callable[[tuple[Any, ...], str], str],
        table: SubscriptionTable | None = None, index: int = 0,
    ) -> None:  # fmt: skip
        self.config = config
        self.store = store
        pidf = Package("presence", (PIDF,), parse_pidf)
        self.publications = Publications(
            {"presence": pidf},
            PublishConfig(min_expires=config.publish_min_expires, max_expires=config.publish_max_expires),
            store,
            compose=compose_pidf,
        )
        self.package = PresencePackage(store, config)
        self.notifier = Notifier(
            tl, {"presence": self.package}, policy=config.policy, contact=contact, via=via,
            config=NotifierConfig(min_expires=config.min_expires, max_expires=config.max_expires,
                                  min_notify_interval=config.min_notify_interval,
                                  notify_grace=config.notify_grace),
            table=table, index=index,
        )  # fmt: skip
        # set by the worker: tell every other worker that a presentity changed
        self.broadcast: Callable[[str], object] | None = None
        self.published = 0

    def publish(self, msg: Any, resource: str, now: float) -> Result:
        event = msg.event
        ctype = msg.get("Content-Type")
        r = self.publications.publish(
            resource, event, msg.get("SIP-If-Match"), msg.expires, ctype, msg.body, now
        )
        if r.status == 200:
            self.published += 1
        return r

    def publish_done(self, r: Result, now: float) -> None:
        """After the answer to a PUBLISH went out: NOTIFY what it changed."""
        if r.changed is not None:
            self._changed(r.changed, now)

    def subscribe(self, msg: Any, peer: tuple[Any, ...], resource: str, watcher: str, now: float) -> Answer:
        return self.notifier.subscribe(msg, peer, resource, watcher, now)

    def refresh(self, msg: Any, peer: tuple[Any, ...], now: float) -> Answer:
        return self.notifier.refresh(msg, peer, now)

    def remote_changed(self, resource: str, now: float) -> None:
        """Another worker changed ``resource``."""
        self.publications.track(resource)
        self.notifier.changed(resource, now)

    def next_deadline(self) -> float | None:
        a = self.publications.next_deadline()
        b = self.notifier.next_deadline()
        if a is None:
            return b
        return a if b is None or a < b else b

    def handle_timer(self, now: float) -> None:
        for resource in self.publications.expire(now):
            self._changed(resource, now)
        self.notifier.handle_timer(now)

    def restore(self, now: float) -> int:
        """At start: watch every presentity's expiry, take back this worker's subscriptions."""
        if self.store.count():  # a scan reads every slot (and makes its page resident)
            for aor in self.store.aors():
                self.publications.track(aor)
        return self.notifier.adopt(now)

    def _changed(self, resource: str, now: float) -> None:
        self.notifier.changed(resource, now)
        if self.broadcast is not None:
            self.broadcast(resource)
