"""Watcher information (RFC 3857 event package, RFC 3858 document format), sans-IO.

Theory of operation
-------------------
A presentity (or a configured administrator) subscribes to
``presence.winfo`` for a resource and learns who watches it. The package
answers the notifier (``subscribe.py``) with ``application/watcherinfo+xml``
documents, versioned per winfo subscription (RFC 3858 §4.3: the version
starts at 0 and grows by one with every NOTIFY of that subscription):

- the NOTIFY that follows a SUBSCRIBE or a refresh carries the full state:
  every presence subscription to the resource, in every worker, read from
  the shared subscription table (``full_state``; a scan of the table, which
  is fine for the rate of winfo SUBSCRIBEs and costs nothing on the
  presence path);
- a change to one presence subscription of the resource (made, approved,
  ended; ``WatcherEvent``) reaches the winfo subscribers as a
  ``state="partial"`` document with that watcher, the RFC 3858 event
  naming what happened: ``subscribe`` (new, pending or active), ``approved``,
  ``timeout`` (expired, unsubscribed, or its NOTIFYs failed), ``rejected``
  (blocked), ``giveup``, ``deactivated``, ``probation``, ``noresource``.

Watcher events happen in the worker that owns the presence subscription;
winfo subscriptions live in whichever worker took them. Each worker that
holds winfo subscriptions for a resource says so in a small shared table
(``marks``: key ``resource\\0index``, written by that worker only), so a
worker with a watcher event sends it only to the workers marked for that
resource (a hand-off frame), or queues it here. A presence subscription
change costs one table lookup per worker when nobody watches the resource's
watchers.
"""

from __future__ import annotations

import marshal
from collections.abc import Callable
from typing import NamedTuple
from xml.sax.saxutils import escape, quoteattr

from simplefast.presence.subscribe import Body, Subscription

WINFO = "application/watcherinfo+xml"
NAME = "presence.winfo"
WATCHED = "presence"  # the package whose watchers are shown

# RFC 3858 values
EVENTS = ("subscribe", "approved", "deactivated", "probation", "rejected", "timeout", "giveup", "noresource")
STATUSES = ("pending", "active", "waiting", "terminated")


class WatcherEvent(NamedTuple):
    """One watcher of a resource as a winfo document shows it."""

    resource: str
    id: str  # the presence subscription's key
    uri: str  # the watcher (From URI of its SUBSCRIBE)
    event: str  # one of EVENTS: what happened
    status: str  # one of STATUSES
    subscribed_at: float  # when the subscription was made (duration-subscribed)
    expires_at: float


class _State:
    """What a winfo subscription keeps besides its notifier row (``Subscription.extra``)."""

    __slots__ = ("pending", "full")

    def __init__(self) -> None:
        self.pending: list[WatcherEvent] = []
        self.full = True  # the next NOTIFY carries the full state


def render(resource: str, version: int, full: bool, watchers: list[WatcherEvent], now: float) -> bytes:
    """A watcherinfo document (RFC 3858 §4) for one resource."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="{version}"'
        f' state="{"full" if full else "partial"}">',
        f"<watcher-list resource={quoteattr(resource)} package={quoteattr(WATCHED)}>",
    ]
    for w in watchers:
        duration = max(0, int(now - w.subscribed_at))
        expiration = max(0, int(w.expires_at - now + 0.5))
        extra = f' expiration="{expiration}"' if w.status in ("active", "pending") else ""
        out.append(
            f"<watcher id={quoteattr(w.id)} event={quoteattr(w.event)} status={quoteattr(w.status)}"
            f' duration-subscribed="{duration}"{extra}>{escape(w.uri)}</watcher>'
        )
    out.append("</watcher-list></watcherinfo>")
    return "".join(out).encode("utf-8", "surrogateescape")


def event_of(sub: Subscription) -> WatcherEvent:
    """The watcher element of a live presence subscription (full state)."""
    status = {"active": "active", "pending": "pending"}.get(sub.state, "terminated")
    event = "subscribe" if status == "pending" else "approved"
    return WatcherEvent(
        sub.resource, sub.key, sub.remote_uri, event, status, sub.subscribed_at, sub.expires_at
    )


class WinfoPackage:
    """The ``presence.winfo`` package for the notifier."""

    def __init__(self, full_state: Callable[[str], list[WatcherEvent]], clock: Callable[[], float]) -> None:
        self.name = NAME
        self.content_types: tuple[str, ...] = (WINFO,)
        self.default_expires = 3600
        self.full_state = full_state
        self.clock = clock  # the time written into documents (duration-subscribed, expiration)

    def has_news(self, sub: Subscription) -> bool:
        st = sub.extra
        return st is None or st.full or bool(st.pending)

    def version(self, resource: str) -> int:  # not versioned per resource (per subscription instead)
        return 0

    def prepare(self, sub: Subscription) -> None:
        """A SUBSCRIBE or refresh: the next NOTIFY carries the full state."""
        if sub.extra is None:
            sub.extra = _State()
        sub.extra.full = True
        sub.extra.pending.clear()

    def queue(self, sub: Subscription, ev: WatcherEvent) -> None:
        if sub.extra is None:
            sub.extra = _State()
        sub.extra.pending.append(ev)

    def body(self, sub: Subscription) -> Body:
        st: _State | None = sub.extra
        if st is None:
            st = sub.extra = _State()
        version = sub.version + 1  # -1 before the first NOTIFY: that one is version 0
        now = self.clock()
        if st.full:
            watchers = self.full_state(sub.resource)
            doc = render(sub.resource, version, True, watchers, now)
        else:
            doc = render(sub.resource, version, False, st.pending, now)
        st.full = False
        st.pending = []
        return Body(version, WINFO, doc)


def may_watch(watcher: str, resource: str, admins: frozenset[str]) -> bool:
    """Who may subscribe to a resource's watcher information: itself and administrators."""
    return watcher == resource or watcher in admins


def encode_event(ev: WatcherEvent) -> bytes:
    return marshal.dumps(tuple(ev))


def decode_event(data: bytes) -> WatcherEvent:
    return WatcherEvent._make(marshal.loads(data))
