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
   granted Expires (but see "the same request again" below).

An initial publication whose caller names the entity-tag to mint (``etag``:
the SIP core gives a keyed hash of the request, ``fastreg.to_tag``) and
finds a live publication of the resource with that tag already is the same
request again (a retransmission that outlived its transaction, or one the
stateless fast path of ``simplefast/_ref/fastpub.py`` answered first): it
gets the same 200 and changes nothing; a publication past its time that
the expiry has not removed yet counts too. So does one whose tag was
retired (by a modify, refresh, removal or expiry of that publication) less
than ``RETRANSMIT_WINDOW`` (64*T1) ago: the row keeps such tags that long
(``Presentity.retired``, the newest 16), so a late copy of the initial
request does not bring back the state it was replaced by.

Publications live in a ``PresentityStore`` (``state.py``): in memory for one
process, or the shared-memory table every worker uses, where each change is
a compare-and-swap of the presentity's row, retried when another worker
changed it in between (``conflicts`` counts the retries). Each publication
keeps the time its state last changed (``changed_at``, for composition: the
newest wins). A change the watchers would see (new state, modify, remove,
expiry) bumps the presentity's ``version`` and reports the resource in
``Result.changed`` / ``expire``'s return; its document is built with
``compose`` by the first reader of that version (``document``: once per
version, never per watcher, and never for a presentity nobody watches) and
stored in the row for the others. A refresh changes no version.

Expiry: ``expire(now)``, driven by the caller from ``next_deadline()`` (a
heap of (deadline, resource), stale entries skipped). A worker tracks the
presentities it changed and those it is told about (``track``); two workers
expiring the same publication is harmless: the second finds it gone.

Entity-tags the caller does not name are a random per-instance prefix and
a counter: unique for this instance's life, not guessable from another's. A tag names a publication of
one resource only (the lookup is in that resource's row).
"""

from __future__ import annotations

import heapq
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from simplefast.errors import ProtocolError
from simplefast.presence.state import (
    CAS_RETRIES,
    RETRANSMIT_WINDOW,
    MemoryPresentities,
    Presentity,
    PresentityStore,
    PubRecord,
    StateFullError,
    still_retired,
)
from simplefast.sip import warning_header


@dataclass(frozen=True, slots=True)
class Package:
    """What an event package takes in PUBLISH: its body types (lower-case
    ``type/subtype``) and the parser of a body (raises ProtocolError when the
    body is not acceptable: its ``status_hint`` and message are the answer)."""

    name: str
    content_types: tuple[str, ...]
    parse: Callable[[bytes], Any]
    default_expires: int = 3600
    # The same checks without keeping the result (a body nobody watches is never
    # composed); None: ``parse`` and drop what it gives.
    check: Callable[[bytes], None] | None = None
    # A quicker pre-check: True only when ``check`` surely accepts the body (for
    # PIDF: simplefast/_ref/pidfscan.py); False is "not sure", and ``check`` decides.
    scan: Callable[[bytes], bool] | None = None


@dataclass(slots=True)
class PublishConfig:
    min_expires: int = 60
    max_expires: int = 86400


class Result(NamedTuple):
    status: int
    reason: str
    headers: list[tuple[str, str]]
    changed: str | None = None  # the resource whose published state changed


class Publications:
    def __init__(
        self, packages: Mapping[str, Package], config: PublishConfig | None = None,
        store: PresentityStore | None = None,
        compose: Callable[[str, Sequence[tuple[PubRecord, Any]]], bytes] | None = None,
    ) -> None:  # fmt: skip
        self.packages = dict(packages)
        self.config = config or PublishConfig()
        self.store: PresentityStore = store if store is not None else MemoryPresentities()
        # (resource, [(publication, parsed document)]) -> the document watchers get
        self.compose = compose
        self._expiry: list[tuple[float, str]] = []  # (expires_at, resource), stale entries skipped
        self._prefix = secrets.token_hex(5)
        self._seq = 0
        self._parsed: dict[bytes, Any] = {}  # body -> the package's parse of it
        self.conflicts = 0  # compare-and-swap retries (another worker changed it meanwhile)
        self.composed = 0  # documents composed (once per version with watchers, here or elsewhere)
        # set by the agent: whether anyone (in any worker) subscribes to a resource
        self.watched: Callable[[str], bool] | None = None
        self.too_large = 0  # composed documents that did not fit the row
        self.unreadable = 0  # stored bodies the package's parser refused when composing

    # ------------------------------------------------------------------ queries
    def of(self, resource: str, event: str) -> list[PubRecord]:
        """The live publications of ``resource`` for ``event``, oldest first."""
        return [p for p in self.store.load(resource).pubs if p.event == event]

    def version(self, resource: str) -> int:
        """Bumped at every change of the resource's published state."""
        return self.store.load(resource).version

    def state(self, resource: str) -> Presentity:
        return self.store.load(resource)

    def __len__(self) -> int:
        return sum(len(self.store.load(a).pubs) for a in self.store.aors())

    def next_deadline(self) -> float | None:
        return self._expiry[0][0] if self._expiry else None

    def track(self, resource: str, state: Presentity | None = None) -> None:
        """Watch ``resource``'s publications for expiry (a change made elsewhere, or
        the state restored at start). Every worker may expire a publication: the
        compare-and-swap makes the first one do it and the others find nothing."""
        if state is None:
            state = self.store.load(resource)
        if state.pubs:
            heapq.heappush(self._expiry, (min(p.expires_at for p in state.pubs), resource))

    # ------------------------------------------------------------------ PUBLISH
    def publish(
        self, resource: str, event: str | None, if_match: str | None, expires: int | None,
        content_type: str | None, body: bytes, now: float, *, etag: str | None = None,
    ) -> Result:  # fmt: skip
        """Apply one PUBLISH (header values as received; ``event`` the Event header's
        package name, ``content_type`` without parameters; ``etag`` the entity-tag a
        success mints, None for one of ours)."""
        cfg = self.config
        package = self.packages.get((event or "").strip().lower())
        if package is None:
            return Result(489, "Bad Event", [("Allow-Events", ", ".join(sorted(self.packages)))])
        tag = if_match.strip() if if_match is not None else None
        if tag is None and not body:
            return Result(400, "Bad Request", [warning_header("an initial PUBLISH needs a body")])
        if expires is None:
            expires = package.default_expires
        if expires == 0 and tag is None:
            return Result(400, "Bad Request", [warning_header("Expires: 0 needs SIP-If-Match")])
        if 0 < expires < cfg.min_expires:
            return Result(423, "Interval Too Brief", [("Min-Expires", str(cfg.min_expires))])
        expires = min(expires, cfg.max_expires)
        ctype = ""
        if body and expires:
            ctype = (content_type or "").split(";", 1)[0].strip().lower()
            if ctype not in package.content_types:
                return Result(415, "Unsupported Media Type", [("Accept", ", ".join(package.content_types))])
            try:  # kept only when someone watches: a presentity nobody watches is never composed
                self._parse(package, bytes(body), keep=self.watched is None or self.watched(resource))
            except ProtocolError as exc:
                return Result(
                    exc.status_hint, _REASONS.get(exc.status_hint, "Bad Request"), [warning_header(str(exc))]
                )
        for _ in range(CAS_RETRIES):
            state = self.store.load(resource)
            old: PubRecord | None = None
            if tag is not None:
                old = next((p for p in state.pubs if p.etag == tag and p.event == package.name), None)
                if old is None or old.expires_at <= now:
                    return Result(412, "Conditional Request Failed", [])
            live = [p for p in state.pubs if p is not old and p.expires_at > now]
            retired = still_retired(state, now)
            if (
                tag is None
                and etag is not None
                and (any(p.etag == etag for p in state.pubs) or any(r[0] == etag for r in retired))
            ):  # a publication past its time that the expiry has not removed yet counts too
                return Result(200, "OK", [("SIP-ETag", etag), ("Expires", str(expires))])  # the request again
            if old is not None:  # modify, refresh, removal: a late retransmission of its request is no news
                retired = (*retired, (old.etag, now + RETRANSMIT_WINDOW))[-_RETIRED_MAX:]
            expired = len(live) + (old is not None) != len(state.pubs)
            if expires == 0:
                headers = [("Expires", "0")]
                changed = True
            else:
                new_tag = etag if etag is not None else self._mint()
                if body:
                    live.append(PubRecord(new_tag, package.name, ctype, bytes(body), now, now + expires))
                    changed = True
                else:
                    assert old is not None  # refresh: same state, new tag and life
                    live.append(old._replace(etag=new_tag, expires_at=now + expires))
                    changed = expired
                headers = [("SIP-ETag", new_tag), ("Expires", str(expires))]
            try:
                written = self._write(resource, state, live, changed, retired)
            except StateFullError as exc:
                return Result(exc.status_hint, _REASONS.get(exc.status_hint, "Server Internal Error"),
                              [warning_header(str(exc))])  # fmt: skip
            if written:
                return Result(200, "OK", headers, resource if changed else None)
            self.conflicts += 1
        return Result(
            500, "Server Internal Error", [warning_header("the presentity changed too often; retry")]
        )

    def expire(self, now: float) -> list[str]:
        """Remove the publications whose time is up; the resources that changed."""
        changed: list[str] = []
        heap = self._expiry
        due: set[str] = set()
        while heap and heap[0][0] <= now:
            due.add(heapq.heappop(heap)[1])
        for resource in sorted(due):
            for _ in range(CAS_RETRIES):
                state = self.store.load(resource)
                live = [p for p in state.pubs if p.expires_at > now]
                if len(live) == len(state.pubs):
                    break  # refreshed or removed since, or another worker expired them
                # their tags are retired too: a retransmission of a short publication's request
                # (publish_min_expires below 64*T1) must not publish it again
                ended = tuple((p.etag, now + RETRANSMIT_WINDOW) for p in state.pubs if p.expires_at <= now)
                retired = (*still_retired(state, now), *ended)[-_RETIRED_MAX:]
                try:
                    written = self._write(resource, state, live, True, retired)
                except StateFullError:  # fewer publications always fit: cannot happen
                    break
                if written:
                    changed.append(resource)
                    break
                self.conflicts += 1
        return changed

    # ------------------------------------------------------------------ internals
    def _mint(self) -> str:
        self._seq += 1
        return f"{self._prefix}{self._seq:x}"

    def _parse(self, package: Package, body: bytes, *, keep: bool = True) -> Any:
        doc = self._parsed.get(body)
        if doc is None:
            if not keep and package.check is not None:
                if package.scan is None or not package.scan(body):
                    package.check(body)
                return None
            doc = package.parse(body)
            if keep:  # for the composition to come
                if len(self._parsed) >= _PARSED_MAX:
                    self._parsed.clear()
                self._parsed[body] = doc
        return doc

    def document(self, resource: str) -> Presentity:
        """The resource's state with its composed document: composed here if the last
        change left it to the first reader (``_write``), and stored for the other workers
        when nothing changed meanwhile (else this one is still right for the version read)."""
        state = self.store.load(resource)
        if state.document or not state.pubs or self.compose is None:
            return state
        docs = []
        for p in state.pubs:
            try:
                docs.append((p, self._parse(self.packages[p.event], p.body)))
            except ProtocolError:  # taken once, refused now (a check changed): left out
                self.unreadable += 1
        done = state._replace(document=self.compose(resource, docs), seq=state.seq + 1)
        try:
            self.store.replace(resource, state.seq, done)
        except StateFullError:  # the document does not fit the row: each reader composes it
            self.too_large += 1
        self.composed += 1
        return done

    def _write(
        self, resource: str, state: Presentity, live: list[PubRecord], changed: bool,
        retired: tuple[tuple[str, float], ...],
    ) -> bool:  # fmt: skip
        """Compare-and-swap the new publication list (and, when the state changed, a new
        version; a refresh keeps both). The document of a new version is composed by its
        first reader (``document``): a presentity nobody watches never has one built."""
        document = state.document
        if changed:
            document = b""
        version = state.version + 1 if changed else state.version
        new = Presentity(version, tuple(live), document, state.seq + 1, retired)
        if not self.store.replace(resource, state.seq, new):
            return False
        if live:
            heapq.heappush(self._expiry, (min(p.expires_at for p in live), resource))
        return True


_RETIRED_MAX = 16  # retired tags kept per presentity (the newest)
_PARSED_MAX = 4096
_REASONS = {400: "Bad Request", 413: "Request Entity Too Large", 415: "Unsupported Media Type",
            500: "Server Internal Error"}  # fmt: skip


def event_package(header: str | None) -> str | None:
    """The package name of an Event header value (``presence;id=1`` -> ``presence``)."""
    if header is None:
        return None
    return header.split(";", 1)[0].strip().lower() or None
