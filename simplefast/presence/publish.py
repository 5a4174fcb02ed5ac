"""Event state publication (RFC 3903): the state agent's side, sans-IO.

Theory of operation
-------------------
``Publications.publish`` applies one PUBLISH, already authenticated and
addressed to a resource of ours, and returns the answer. It follows RFC 3903
section 6 in order:

1. (Request-URI and authentication: checked by the caller.)
2. the Event package must be one we take (``packages``), else 489 with
   Allow-Events;
3. with SIP-If-Match, the entity-tag must name a live publication of this
   resource and package, else 412; without it the request is an initial
   publication and needs a body (400);
4. Expires: absent means the package's default; a non-zero value below
   ``min_expires`` gets 423 with Min-Expires; above ``max_expires`` it is
   shortened; 0 removes the publication named by SIP-If-Match (an initial
   publication with Expires 0 is refused: there is nothing to remove);
5. a body must have a Content-Type the package takes (415 with Accept) and
   parse (the package's parser raises a ProtocolError: its status and
   reason are the answer); a body with SIP-If-Match replaces that
   publication's state (modify), no body only extends its life (refresh);
6. every success mints a new entity-tag: the 200 carries SIP-ETag and the
   granted Expires.

Publications live per (resource, package) in insertion order; each keeps the
time its state last changed (``changed_at``, for composition: the newest
wins). They expire by ``expire(now)``, driven by the caller from
``next_deadline()`` (a heap with lazy deletion). Every call that changes the
state a watcher would see reports the resource in ``Result.changed`` /
``expire``'s return, and bumps the resource's ``version``.

Entity-tags are a random per-instance prefix and a counter: unique for this
instance's life, not guessable from another's. Storage is in this process
for now; the shared-memory table is the next step (issue #5 section 4).
"""

from __future__ import annotations

import heapq
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from simplefast.errors import ProtocolError


@dataclass(frozen=True, slots=True)
class Package:
    """What an event package takes in PUBLISH: its body types (lower-case
    ``type/subtype``) and the parser of a body (raises ProtocolError when the
    body is not acceptable: its ``status_hint`` and message are the answer)."""

    name: str
    content_types: tuple[str, ...]
    parse: Callable[[bytes], Any]
    default_expires: int = 3600


@dataclass(slots=True)
class PublishConfig:
    min_expires: int = 60
    max_expires: int = 86400


@dataclass(slots=True)
class Publication:
    etag: str
    resource: str
    event: str
    content_type: str
    body: bytes
    document: Any  # what the package's parser returned
    changed_at: float  # when its state last changed (a refresh does not change it)
    expires_at: float


class Result(NamedTuple):
    status: int
    reason: str
    headers: list[tuple[str, str]]
    changed: str | None = None  # the resource whose published state changed


@dataclass(slots=True)
class _Resource:
    version: int = 0
    by_event: dict[str, dict[str, Publication]] = field(default_factory=dict)


class Publications:
    def __init__(self, packages: Mapping[str, Package], config: PublishConfig | None = None) -> None:
        self.packages = dict(packages)
        self.config = config or PublishConfig()
        self._resources: dict[str, _Resource] = {}
        self._by_etag: dict[str, Publication] = {}
        self._expiry: list[tuple[float, str]] = []  # (expires_at, etag), stale entries skipped
        self._prefix = secrets.token_hex(5)
        self._seq = 0

    # ------------------------------------------------------------------ queries
    def of(self, resource: str, event: str) -> list[Publication]:
        """The live publications of ``resource`` for ``event``, oldest first."""
        r = self._resources.get(resource)
        if r is None:
            return []
        return list(r.by_event.get(event, {}).values())

    def version(self, resource: str) -> int:
        """Bumped at every change of the resource's published state."""
        r = self._resources.get(resource)
        return r.version if r is not None else 0

    def __len__(self) -> int:
        return len(self._by_etag)

    def next_deadline(self) -> float | None:
        return self._expiry[0][0] if self._expiry else None

    # ------------------------------------------------------------------ PUBLISH
    def publish(
        self, resource: str, event: str | None, if_match: str | None, expires: int | None,
        content_type: str | None, body: bytes, now: float,
    ) -> Result:  # fmt: skip
        """Apply one PUBLISH (header values as received; ``event`` the Event header's
        package name, ``content_type`` without parameters)."""
        cfg = self.config
        package = self.packages.get((event or "").strip().lower())
        if package is None:
            return Result(489, "Bad Event", [("Allow-Events", ", ".join(sorted(self.packages)))])
        old: Publication | None = None
        if if_match is not None:
            old = self._by_etag.get(if_match.strip())
            if old is None or old.resource != resource or old.event != package.name:
                return Result(412, "Conditional Request Failed", [])
        elif not body:
            return Result(400, "Bad Request", [_warning("an initial PUBLISH needs a body")])
        if expires is None:
            expires = package.default_expires
        if expires == 0:
            if old is None:
                return Result(400, "Bad Request", [_warning("Expires: 0 needs SIP-If-Match")])
            self._remove(old)
            return Result(200, "OK", [("Expires", "0")], resource)
        if expires < cfg.min_expires:
            return Result(423, "Interval Too Brief", [("Min-Expires", str(cfg.min_expires))])
        expires = min(expires, cfg.max_expires)
        if body:
            ctype = (content_type or "").split(";", 1)[0].strip().lower()
            if ctype not in package.content_types:
                return Result(415, "Unsupported Media Type", [("Accept", ", ".join(package.content_types))])
            try:
                document = package.parse(body)
            except ProtocolError as exc:
                return Result(
                    exc.status_hint, _REASONS.get(exc.status_hint, "Bad Request"), [_warning(str(exc))]
                )
            etag = self._mint()
            pub = Publication(etag, resource, package.name, ctype, bytes(body), document, now, now + expires)
            if old is not None:
                self._forget(old)  # modify: the new state replaces it, under a new entity-tag
            self._add(pub)
            changed: str | None = resource
        else:
            assert old is not None
            self._forget(old)
            old.etag = self._mint()
            old.expires_at = now + expires
            self._add(old, bump=False)  # refresh: same state, new tag and life
            etag, changed = old.etag, None
        return Result(200, "OK", [("SIP-ETag", etag), ("Expires", str(expires))], changed)

    def expire(self, now: float) -> list[str]:
        """Remove the publications whose time is up; the resources that changed."""
        changed: list[str] = []
        heap = self._expiry
        while heap and heap[0][0] <= now:
            at, etag = heapq.heappop(heap)
            pub = self._by_etag.get(etag)
            if pub is None or pub.expires_at != at:
                continue  # refreshed, modified or removed since
            self._remove(pub)
            if pub.resource not in changed:
                changed.append(pub.resource)
        return changed

    # ------------------------------------------------------------------ internals
    def _mint(self) -> str:
        self._seq += 1
        return f"{self._prefix}{self._seq:x}"

    def _add(self, pub: Publication, *, bump: bool = True) -> None:
        r = self._resources.get(pub.resource)
        if r is None:
            r = self._resources[pub.resource] = _Resource()
        r.by_event.setdefault(pub.event, {})[pub.etag] = pub
        if bump:
            r.version += 1
        self._by_etag[pub.etag] = pub
        heapq.heappush(self._expiry, (pub.expires_at, pub.etag))

    def _forget(self, pub: Publication) -> None:
        """Take ``pub`` out of the indexes (its heap entry goes stale)."""
        self._by_etag.pop(pub.etag, None)
        r = self._resources.get(pub.resource)
        if r is not None:
            pubs = r.by_event.get(pub.event)
            if pubs is not None:
                pubs.pop(pub.etag, None)

    def _remove(self, pub: Publication) -> None:
        self._forget(pub)
        r = self._resources.get(pub.resource)
        if r is None:
            return
        r.version += 1
        if not r.by_event.get(pub.event):
            r.by_event.pop(pub.event, None)
        if not r.by_event:
            # the version must keep growing across an empty spell: a watcher compares it
            self._resources[pub.resource] = _Resource(version=r.version)


_REASONS = {400: "Bad Request", 413: "Request Entity Too Large", 415: "Unsupported Media Type"}


def _warning(text: str) -> tuple[str, str]:
    clean = "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text[:160])
    return ("Warning", f'399 simplefast "{clean}"')


def event_package(header: str | None) -> str | None:
    """The package name of an Event header value (``presence;id=1`` -> ``presence``)."""
    if header is None:
        return None
    return header.split(";", 1)[0].strip().lower() or None
