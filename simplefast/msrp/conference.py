"""The ``conference`` event package (RFC 4575) of the chat focus's rooms.

Theory of operation: a SUBSCRIBE with ``Event: conference`` to a room URI
(simplefast/proxy/core.py hands it to the worker that holds the room) becomes
a subscription of the presence notifier (simplefast/presence/subscribe.py),
which does dialogs, expiry, pacing and NOTIFY transactions for every package.
This package gives it the bodies: the room's participants with their RFC 7701
nicknames as ``application/conference-info+xml`` (simplefast/msrp/confinfo.py).
The first NOTIFY of a subscription, and the one after each refresh, carries
the full state; the later ones a partial document with what changed since
that subscription's last NOTIFY, versions counted per subscription (RFC 4575
section 4.6). The focus tells the core which rooms changed
(``ChatFocus.take_changed``); the core calls ``notifier.changed`` for them.
The room's state is read from the focus when a body is made, so a NOTIFY
held by pacing shows the latest state, never a stale one.

Subscriptions are not restricted to participants (*choice*: RFC 4575 leaves
the policy to the focus; the SIP authentication of the core applies).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from simplefast.msrp.confinfo import CONTENT_TYPE, ConferenceState, Member, Subscriber
from simplefast.presence.subscribe import Body

CONFERENCE_EVENT = "conference"


@dataclass(slots=True)
class _Sub:
    subscriber: Subscriber = field(default_factory=Subscriber)
    full: bool = True


class ConferencePackage:
    """The ``conference`` package for the notifier (see the module docstring)."""

    def __init__(self, focus: Any) -> None:
        self.name = CONFERENCE_EVENT
        self.content_types: tuple[str, ...] = (CONTENT_TYPE,)
        self.default_expires = 3600
        self.focus = focus
        self._states: dict[str, ConferenceState] = {}
        self._held: str | None = None  # brought up to date once for the whole fan-out (hold)

    def hold(self, resource: str | None) -> None:
        """The notifier around one change's fan-out: the room's state is read from the focus
        once for every subscriber, not once per NOTIFY."""
        self._held = None
        if resource is not None:
            self.state(resource)
            self._held = resource

    def state(self, resource: str) -> ConferenceState:
        """The room's conference state, brought up to date with the focus."""
        st = self._states.get(resource)
        if st is None:
            st = self._states[resource] = ConferenceState(resource)
        if resource != self._held:
            room = resource.partition(":")[2]
            st.set_members(Member(uri, nick) for uri, nick in self.focus.members(room))
        return st

    def has_news(self, sub: Any) -> bool:
        s: _Sub | None = sub.extra
        return s is None or s.full or s.subscriber.seen != self.state(sub.resource).revision

    def prepare(self, sub: Any) -> None:
        """A SUBSCRIBE or a refresh: the next NOTIFY carries the full state."""
        if sub.extra is None:
            sub.extra = _Sub()
        sub.extra.full = True

    def body(self, sub: Any) -> Body:
        s: _Sub | None = sub.extra
        if s is None:  # restored from the store: its versions start again with a full document
            s = sub.extra = _Sub()
        st = self.state(sub.resource)
        data = s.subscriber.next_body(st, full=s.full)
        if data is None:  # nothing new (a refresh of a quiet room is full, so this is rare)
            data = s.subscriber.next_body(st, full=True)
        assert data is not None
        s.full = False
        return Body(st.revision, CONTENT_TYPE, data)

    def forget(self, resource: str) -> None:
        self._states.pop(resource, None)
