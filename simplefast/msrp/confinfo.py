"""Conference state of a chat room (RFC 4575 ``conference`` package, RFC 7701 nicknames), sans-IO.

Theory of operation
-------------------
The chat focus serves the ``conference`` event package for each room: a
SUBSCRIBE to the room URI with ``Event: conference`` gets NOTIFYs whose body
is an ``application/conference-info+xml`` document listing who is in the
room, each participant with the nickname it holds (RFC 7701 section 7.4: the
``nickname`` attribute of the ``urn:ietf:params:xml:ns:xcon-conference-info``
namespace on the RFC 4575 ``<user>`` element; the example is RFC 7701 section
9.6). This module renders those documents; it keeps no subscription, socket
or clock.

Two counters, kept apart on purpose:

- **revision** (:attr:`ConferenceState.revision`): the room's own change
  counter. It starts at 0 and grows by one each time :meth:`set_members`
  changes anything (a participant joins or leaves, a nickname or display text
  changes). One per room, shared by every subscriber.
- **version**: the ``version`` attribute of the document. RFC 4575 scopes it
  to one subscription: that subscription's NOTIFYs count 1, 2, 3... whatever
  happened in the room before it subscribed, and a subscriber that sees a gap
  asks for the full state again. The room cannot know that number, so every
  render takes it as an argument (``full(version=...)``, ``partial_since(...,
  version=...)``). Left out, the revision is written instead: fine for a
  single subscriber that started with the room, wrong in general.

A subscription therefore remembers two numbers: the version of its last
NOTIFY and the revision that NOTIFY showed. :class:`Subscriber` is that pair:

1. SUBSCRIBE (or a refresh): ``full(version=v + 1)``, remember
   ``seen = revision``;
2. the room changes (the caller learns it from ``set_members`` returning
   True): ``partial_since(seen, version=v + 1)`` gives a ``state="partial"``
   document with only the users that differ between revision ``seen`` and now:
   each one added or changed as a complete ``<user state="full">`` (it replaces
   what the subscriber had, attributes included, so a dropped nickname
   disappears), each one gone as ``<user state="deleted">``, and
   ``<conference-state>`` when the user count moved. A user that came and went
   within the interval, or changed and changed back, is left out.
   ``<users state="partial">`` says the list is a delta (the schema's default
   for ``users`` is ``full``, which would mean "this is everybody").
3. The room keeps the changes of the last ``history`` revisions (64 by
   default). A subscription that fell further behind gets the full document
   instead (with the version it asked for), which the subscriber takes as
   a replacement of everything it had; it is always a correct answer.

Document shape, in the element order of the RFC 4575 schema
(``conference-type``, then ``conference-description-type`` and
``conference-state-type``): ``<conference-info entity state version>``;
``<conference-description>`` with ``<subject>`` and
``<maximum-user-count>`` when given (omitted when neither is);
``<conference-state><user-count>``; ``<users>`` with one ``<user entity
state xcon:nickname>`` per member, in the order the caller gave (join order
from :meth:`simplefast.msrp.chat.ChatRoom.participants`), each with
``<display-text>`` when known. The full document for RFC 7701's two users is
element for element the section 9.6 example.

Choices, where the RFCs leave them open:

- No ``<active>`` in ``<conference-state>`` (optional in the schema, absent
  from RFC 7701's example; a room that can be subscribed to exists).
- No ``<endpoint>`` under ``<user>`` (optional in the schema, absent from the
  example). An endpoint is one device of the user, named by its own URI (the
  Contact of its dialog with the focus), with a ``<status>``. The chat room
  knows one MSRP session per participant URI and no device URI, and lists
  only participants whose session is up, so an endpoint would repeat the user
  URI and always say ``connected``: it would tell a subscriber nothing.
  The SIP side, which knows the dialogs, may add endpoints later.
- Reordering the members alone is not a change: RFC 4575 users are keyed by
  ``entity``, a partial document cannot express order, and subscribers that
  applied partials would disagree with a fresh full document only in order.
  The new order is kept for later full documents.
- Strings XML 1.0 cannot carry (C0 controls other than tab, LF and CR;
  U+FFFE, U+FFFF; lone surrogates) are refused with :class:`ValueError`
  before anything changes, never stripped: the user URI is the key
  subscribers match on, and a silently altered nickname would show a name
  the room never granted. lxml escapes everything else (``<``, ``&``, quotes).

Bounds: the history holds at most ``history`` revisions; each keeps the
previous value of the members that changed in it, so its size follows the
churn of the room. Documents are rendered on each call; the caller caches
per (revision, version) if many subscribers are at the same place.

Evidence: element names, order, attribute types and the ``state`` values
(full, partial, deleted) come from the RFC 4575 schema; ``version`` is an
``xs:unsignedInt``, so versions past 2**32 - 1 raise. The nickname attribute
and the document shape come from RFC 7701 section 7.4 and its 9.6 example
(whose first document is version 1). Not confirmed against RFC 4575's prose,
which could not be read when this was written: the version rules above
(scoped per subscription, starting at 1, a gap makes the subscriber ask for
the full state: the data format's ``version`` rules and the subscriber
processing of section 3.7) and how ``state`` applies to nested elements of a
partial document.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from lxml import etree  # type: ignore[import-untyped]

from simplefast.presence.xmlsafe import Element

CONTENT_TYPE = "application/conference-info+xml"
EVENT = "conference"  # the Event package name (RFC 4575)
NS = "urn:ietf:params:xml:ns:conference-info"
XCON_NS = "urn:ietf:params:xml:ns:xcon-conference-info"

DEFAULT_HISTORY = 64
MAX_VERSION = 2**32 - 1  # xs:unsignedInt

_C = "{" + NS + "}"
_ROOT = _C + "conference-info"
_DESCRIPTION = _C + "conference-description"
_SUBJECT = _C + "subject"
_MAX_USERS = _C + "maximum-user-count"
_STATE = _C + "conference-state"
_USER_COUNT = _C + "user-count"
_USERS = _C + "users"
_USER = _C + "user"
_DISPLAY = _C + "display-text"
_NICKNAME = "{" + XCON_NS + "}nickname"
_NSMAP = {None: NS, "xcon": XCON_NS}
_XML_DECL = b'<?xml version="1.0" encoding="UTF-8"?>\n'

# Anything outside XML 1.0's Char production (section 2.2 of the XML spec).
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _check_text(value: str, what: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    bad = _NOT_XML_CHAR.search(value)
    if bad is not None:
        raise ValueError(
            f"{what} has U+{ord(bad.group()):04X} at index {bad.start()}, which XML 1.0 cannot hold"
        )


def _check_version(version: int) -> int:
    if isinstance(version, bool) or not isinstance(version, int):
        raise TypeError(f"version must be an int, not {type(version).__name__}")
    if not 0 <= version <= MAX_VERSION:
        raise ValueError(f"version {version} is outside 0..{MAX_VERSION} (xs:unsignedInt)")
    return version


@dataclass(frozen=True, slots=True)
class Member:
    """One participant as the conference document shows it.

    Args:
        uri: the participant's URI, the ``entity`` of its ``<user>`` element and the
            key subscribers match users on.
        nickname: the nickname it holds in the room (``xcon:nickname``, RFC 7701
            section 7.4), or None for none.
        display: its display name (``<display-text>``), or None.
    """

    uri: str
    nickname: str | None
    display: str | None = None

    def check(self) -> None:
        """Raise ``ValueError``/``TypeError`` unless every field can be written as XML."""
        _check_text(self.uri, "member URI")
        if not self.uri:
            raise ValueError("member URI is empty")
        if self.nickname is not None:
            _check_text(self.nickname, f"nickname of {self.uri}")
        if self.display is not None:
            _check_text(self.display, f"display text of {self.uri}")


@dataclass(frozen=True, slots=True)
class _Change:
    """One revision: the members it touched, with their values before it."""

    before: dict[str, Member | None]  # uri -> previous member (None: was not in the room)
    count_before: int


class ConferenceState:
    """Versioned state of one room for RFC 4575 NOTIFYs (sans-IO, no clock).

    Args:
        entity: the room URI (``entity`` of ``<conference-info>``).
        subject: the room's subject (``<subject>``), if any.
        max_users: the room's capacity (``<maximum-user-count>``), if it should be shown.
        history: how many revisions are kept for partial documents (at least 1).

    Raises:
        ValueError: for a string XML cannot carry, an empty entity, a negative
            ``max_users`` or a ``history`` below 1.
    """

    __slots__ = ("entity", "subject", "max_users", "_members", "_revision", "_log")

    def __init__(
        self,
        entity: str,
        *,
        subject: str | None = None,
        max_users: int | None = None,
        history: int = DEFAULT_HISTORY,
    ) -> None:
        _check_text(entity, "conference entity")
        if not entity:
            raise ValueError("conference entity is empty")
        if subject is not None:
            _check_text(subject, "subject")
        if max_users is not None and not 0 <= max_users <= MAX_VERSION:
            raise ValueError(f"max_users {max_users} is outside 0..{MAX_VERSION}")
        if history < 1:
            raise ValueError(f"history must keep at least 1 revision, not {history}")
        self.entity = entity
        self.subject = subject
        self.max_users = max_users
        self._members: dict[str, Member] = {}
        self._revision = 0
        self._log: deque[_Change] = deque(maxlen=history)

    # ------------------------------------------------------------ state
    @property
    def revision(self) -> int:
        """The room's change counter: 0 at creation, +1 per effective ``set_members``."""
        return self._revision

    @property
    def version(self) -> int:
        """The version written when a render is given none: the revision (see module docstring)."""
        return self._revision

    @property
    def members(self) -> tuple[Member, ...]:
        """The members, in the order of the last ``set_members``."""
        return tuple(self._members.values())

    @property
    def oldest_revision(self) -> int:
        """The oldest revision ``partial_since`` can still answer with a partial document."""
        return self._revision - len(self._log)

    def set_members(self, members: Iterable[Member]) -> bool:
        """Replace the member list.

        Returns:
            True when a member was added, removed or changed (then ``revision`` grew
            by one and the change is kept for partial documents); False when the set
            of members is the same (the new order is still kept).

        Raises:
            ValueError: two members with one URI, or a string XML cannot carry;
                nothing changes then.
            TypeError: a member that is not a :class:`Member`.
        """
        new: dict[str, Member] = {}
        for m in members:
            if not isinstance(m, Member):
                raise TypeError(f"members must be Member, not {type(m).__name__}")
            m.check()
            if m.uri in new:
                raise ValueError(f"member {m.uri!r} is listed twice")
            new[m.uri] = m
        old = self._members
        before: dict[str, Member | None] = {}
        for uri, m in old.items():
            if new.get(uri) != m:
                before[uri] = m
        for uri in new:
            if uri not in old:
                before[uri] = None
        self._members = new
        if not before:
            return False
        self._log.append(_Change(before, len(old)))
        self._revision += 1
        return True

    # ------------------------------------------------------------ rendering
    def full(self, version: int | None = None) -> bytes:
        """The ``state="full"`` document of the current state.

        Args:
            version: the ``version`` attribute: the subscription's NOTIFY count
                (RFC 4575: per subscription); None writes the revision.

        Raises:
            ValueError: a version outside ``xs:unsignedInt``.
        """
        v = self._revision if version is None else _check_version(version)
        root = self._root("full", v)
        if self.subject is not None or self.max_users is not None:
            desc = etree.SubElement(root, _DESCRIPTION)
            if self.subject is not None:
                etree.SubElement(desc, _SUBJECT).text = self.subject
            if self.max_users is not None:
                etree.SubElement(desc, _MAX_USERS).text = str(self.max_users)
        self._user_count(root)
        users = etree.SubElement(root, _USERS)
        for m in self._members.values():
            users.append(_user(m))
        return _serialize(root)

    def partial_since(self, since: int, version: int | None = None) -> bytes | None:
        """What changed after revision ``since``, as a ``state="partial"`` document.

        Args:
            since: the revision the subscriber's last document showed.
            version: the ``version`` attribute, as for :meth:`full`.

        Returns:
            None when nothing changed since then; the full document (with this
            version) when revision ``since`` is older than the kept history;
            else the partial document (module docstring).

        Raises:
            ValueError: ``since`` is negative or later than the current revision,
                or the version is outside ``xs:unsignedInt``.
        """
        if isinstance(since, bool) or not isinstance(since, int):
            raise TypeError(f"since must be an int, not {type(since).__name__}")
        if not 0 <= since <= self._revision:
            raise ValueError(f"revision {since} is not in 0..{self._revision}")
        v = self._revision if version is None else _check_version(version)
        if since == self._revision:
            return None
        if since < self.oldest_revision:
            return self.full(v)
        window = list(self._log)[since - self.oldest_revision :]
        then: dict[str, Member | None] = {}  # each touched URI as the subscriber last saw it
        for change in window:
            for uri, prev in change.before.items():
                then.setdefault(uri, prev)
        now = self._members
        changed = [m for uri, m in now.items() if uri in then and then[uri] != m]
        gone = [uri for uri, prev in then.items() if prev is not None and uri not in now]
        count_then = window[0].count_before
        if not changed and not gone and count_then == len(now):
            return None  # everything changed back
        root = self._root("partial", v)
        if count_then != len(now):
            self._user_count(root)
        users = etree.SubElement(root, _USERS, state="partial")
        for m in changed:
            users.append(_user(m))
        for uri in gone:
            etree.SubElement(users, _USER, entity=uri, state="deleted")
        return _serialize(root)

    # ------------------------------------------------------------ internals
    def _root(self, state: str, version: int) -> Element:
        root = etree.Element(_ROOT, nsmap=_NSMAP)
        root.set("entity", self.entity)
        root.set("state", state)
        root.set("version", str(version))
        return root

    def _user_count(self, root: Element) -> None:
        st = etree.SubElement(root, _STATE)
        etree.SubElement(st, _USER_COUNT).text = str(len(self._members))


def _user(m: Member) -> Element:
    el = etree.Element(_USER)
    el.set("entity", m.uri)
    el.set("state", "full")
    if m.nickname is not None:
        el.set(_NICKNAME, m.nickname)
    if m.display is not None:
        etree.SubElement(el, _DISPLAY).text = m.display
    return el


def _serialize(root: Element) -> bytes:
    return _XML_DECL + bytes(etree.tostring(root, encoding="UTF-8", xml_declaration=False))


@dataclass(slots=True)
class Subscriber:
    """Where one ``conference`` subscription is: the per-subscription side of the versions.

    Attributes:
        version: the version of the last document rendered for it (0: none yet).
        seen: the room revision that document showed (-1: none yet).
    """

    version: int = 0
    seen: int = -1

    def next_body(self, state: ConferenceState, *, full: bool = False) -> bytes | None:
        """The body of this subscription's next NOTIFY, or None when it has nothing new.

        Args:
            state: the room.
            full: a full document whatever was sent before (SUBSCRIBE refresh).
                The first body is always full.

        Raises:
            ValueError: the subscription would pass version 2**32 - 1.
        """
        version = _check_version(self.version + 1)
        if full or self.seen < 0:
            body: bytes | None = state.full(version)
        else:
            body = state.partial_since(self.seen, version)
        if body is not None:
            self.version = version
        # None means the room shows what this subscriber last saw: it is up to date.
        self.seen = state.revision
        return body
