"""The notifier side of SIP events (RFC 6665), sans-IO: subscriptions and their NOTIFYs.

Theory of operation
-------------------
``Notifier.subscribe`` takes an initial SUBSCRIBE (already routed to a
resource of ours and authenticated) and returns the answer; when it makes a
subscription the caller sends the 200 and then calls ``notify_now``, which
queues the first NOTIFY (RFC 6665 §4.2.1.2: at once). ``Notifier.refresh``
takes a SUBSCRIBE inside one of our dialogs (refresh, or Expires 0:
unsubscribe). Checks, in order:

- the Event package must be registered (``EventPackage``), else 489 with
  Allow-Events;
- Accept must admit one of the package's body types, else 406;
- Expires (absent: the package default) below ``min_expires`` and not 0:
  423 with Min-Expires; above ``max_expires``: shortened, the 200 states it;
- the authorization policy (``Policy``) decides the state: ``allow`` makes it
  active, ``confirm`` pending (the watcher waits; its NOTIFYs carry no
  state), ``polite-block`` active with the package's "nothing to see"
  document, ``block`` a 403;
- Expires 0 on an initial SUBSCRIBE is a fetch: one NOTIFY with the state
  and ``terminated;reason=timeout``, nothing kept.

A subscription is one dialog: the local tag is ours (the To tag of the 200,
unique: ``tag_prefix``, the worker's branch prefix with its steering marker,
then the caller's ``tag``, a keyed hash of the request, or else a counter),
the NOTIFYs carry CSeq numbers of our own that only grow, the route set is
the SUBSCRIBE's Record-Route.

Retransmissions without a transaction (the stateless fast path,
``simplefast/_ref/fastsub.py``, answers SUBSCRIBEs without one; RFC 3261
8.2.7). An initial SUBSCRIBE whose ``tag`` makes the key of a live
subscription is that request again: 200 with the time it has left, no new
subscription and no NOTIFY; a key that ended less than 64*T1 ago (``retired``)
gets 200 with Expires 0. A SUBSCRIBE inside a dialog with the CSeq of the
last one taken (equal is not out of order, RFC 3261 12.2.2) is answered 200
again without a NOTIFY; once the subscription ended, the CSeq of its last
SUBSCRIBE (an unsubscribe, say) is answered 200 with Expires 0 for 64*T1,
and any other gets 481. A key whose NOTIFYs still wait in the queue after its
subscription ended (a long backlog) counts as retired until they are gone:
the queue's entries name the key, so it is not made again meanwhile.

NOTIFYs go back along the flow the SUBSCRIBE came on: over the same
connection for TCP/TLS, for UDP to the first route or else to the address
the SUBSCRIBE came from (which is where a watcher behind NAT can be
reached); the remote target (Contact) is the Request-URI.

Changes: ``changed(resource, now)`` is called for every new version of a
resource (here or in another worker); each active subscription whose last
NOTIFY showed an older version gets one, paced (RFC 3856 §6.10): at most one
per ``min_notify_interval`` seconds per subscription; a change inside the
interval is held and the NOTIFY, when it goes, carries the state current
then (never a stale one; never out of order, since the CSeq and the version
only grow). A final NOTIFY is never held back.

NOTIFY outcomes (RFC 6665 §4.2.2): 481 ends the subscription; 408, Timer F
or a transport failure end it too, unless ``notify_grace`` is on, when the
subscription stays and the next change tries again. Every end is counted by
reason in ``ended``.

Flow control: at most ``notify_window`` NOTIFYs of this worker wait for
their final response at once; more wait in a FIFO queue (each with the body
of the state it reports, so every change still reaches each watcher, in
order and with growing CSeqs) and go as responses or time-outs free the
window. A burst (one PUBLISH to ten thousand watchers, or fifty back to
back) then leaves at the pace the watchers answer, instead of overflowing
their sockets and retransmitting into them.

A subscription is its row in a ``SubscriptionTable`` (shared memory in the
server), which names the owning worker: a SUBSCRIBE inside the dialog that
reaches another worker is handed to the owner, and a worker that replaces a
killed one takes its rows back (``adopt``). The owner keeps only small
references (``Held``, ``by_key``: a 32-byte record of the key, its place in
its resource's list (``watchers``: (event, resource) -> its subscriptions
here; ``on_watched`` reports when the first comes and the last goes) and an
expiry timer) and decodes the row when it needs the subscription: every
method that changes a ``Subscription`` writes it back before returning. The
last ones used stay decoded (``NotifierConfig.cache``).

Fan-out over rows: for a package with ``policy_body`` (presence), ``changed``
lets ``fanout.RowFan`` NOTIFY the watchers straight from their rows, without
an object each; it leaves to the object path above, in place, the ones it
must (an object newer than the row, pacing, a route set: its docstring and
docs/presence.md say which). A NOTIFY it queues is ``(key, None, body,
False)``, and what the object path would have set on the object then is in
``Held._rowq`` until the NOTIFY goes.
"""

from __future__ import annotations

import heapq
import itertools
import marshal
import math
import struct
from array import array
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, cast

from simplefast._impl import fanout as _fanout
from simplefast._impl import sipmsg as _codec
from simplefast._impl import subrow as _subrow
from simplefast._sipshared import is_ip_address, negotiate
from simplefast.errors import SimplefastError, SipParseError
from simplefast.sip import warning_header
from simplefast.sip.peer import STREAMS

ALLOW = "allow"
CONFIRM = "confirm"
BLOCK = "block"
POLITE_BLOCK = "polite-block"
POLICIES = (ALLOW, CONFIRM, BLOCK, POLITE_BLOCK)

ACTIVE, PENDING, TERMINATED = "active", "pending", "terminated"


class Body(NamedTuple):
    version: int
    content_type: str
    data: bytes


class EventPackage(Protocol):
    """What a package gives the notifier: its name, the body types it sends, the
    state for one subscription now (``body``: the version it shows, by which
    ``has_news`` tells whether a held NOTIFY still has something to say), and
    ``prepare``, called for every SUBSCRIBE (initial or refresh) before its NOTIFY."""

    name: str
    content_types: tuple[str, ...]
    default_expires: int

    def has_news(self, sub: Subscription) -> bool: ...

    def body(self, sub: Subscription) -> Body: ...

    def prepare(self, sub: Subscription) -> None: ...


Policy = Callable[[str, str, str], str]  # (watcher AOR, resource, event) -> one of POLICIES


@dataclass(slots=True)
class NotifierConfig:
    min_expires: int = 60
    max_expires: int = 3600
    min_notify_interval: float = 5.0
    notify_grace: bool = False  # a NOTIFY timeout keeps the subscription (retry on the next change)
    # NOTIFYs of this worker waiting for their final response at once; more wait in a queue,
    # in order, and go as responses come back (0: no limit). See "Flow control" above.
    notify_window: int = 500
    # a subscription still pending (policy confirm) this many seconds after it was made
    # ends with reason giveup (RFC 6665 4.2.2; RFC 3857 event "giveup"); 0: it waits for
    # its expiry
    pending_timeout: float = 0.0
    # The final NOTIFYs of subscriptions ended with reason probation carry
    # ``retry-after`` this many seconds (RFC 6665 4.1.3); 0: none.
    probation_retry_after: int = 0
    # subscriptions kept decoded as objects (the last got or changed; see Held); 0: none
    cache: int = 16384


@dataclass(slots=True, eq=False)
class Subscription:
    key: str  # our tag: the dialog's local tag, unique
    call_id: str
    remote_tag: str
    local_uri: str  # the To URI of the SUBSCRIBE: From of our NOTIFYs
    remote_uri: str  # its From URI
    target: str  # its Contact: the NOTIFYs' Request-URI
    routes: tuple[str, ...]
    peer: tuple[Any, ...]  # the flow it came on
    event: str
    event_id: str | None
    resource: str
    watcher: str  # the watcher's AOR (policy)
    content_type: str
    policy: str
    expires_at: float
    subscribed_at: float = 0.0
    cseq: int = 0  # of our last NOTIFY
    remote_cseq: int = 0  # of the watcher's last SUBSCRIBE
    version: int = -1  # of the state its last NOTIFY carried
    last_sent: float = -1e18
    held: bool = False  # a change waits for the pacing interval
    state: str = ACTIVE
    owner: int = 0
    rec: int = -1  # the owning worker's record of it (Held), -1: none
    # What a NOTIFY takes from the subscription, made when the first one goes and kept
    # with the object (which Held keeps only for the last ones used: see Held)
    row_static: bytes = field(default=b"", repr=False)  # the unchanging part of its row (encode_row)
    head: bytes = field(default=b"", repr=False)  # the NOTIFY headers that never change
    target_b: bytes = field(default=b"", repr=False)  # target, encoded
    wire: tuple[Any, bytes, bool] | None = field(default=None, repr=False)  # (destination, Via, reliable)
    extra: Any = field(default=None, repr=False)  # the package's own (not kept in the shared row)


class SubscriptionTable(Protocol):
    def put(self, sub: Subscription, row: bytes | None = None) -> bool:
        """Write the row of ``sub`` (``row``: ``encode_row(sub)`` made already); False when
        it fits no table (the subscription is then kept in its worker only)."""
        ...

    def put_row(self, key: str, row: bytes) -> bool:
        """Write ``row`` (a whole row of layout 2) as the row of ``key``; False as ``put``."""
        ...

    def get(self, key: str) -> bytes | None: ...

    def delete(self, key: str) -> None: ...

    def owner(self, key: str) -> int | None: ...

    def rows(self, owner: int) -> Iterable[Subscription]: ...

    def scan(self, resource: str, event: str) -> list[Subscription]:
        """Every subscription to ``resource`` for ``event``, whichever worker owns it."""
        ...


class MemorySubscriptions:
    """One process (tests): the same encoded rows as the shared table, in a dict."""

    def __init__(self) -> None:
        self.rows_: dict[str, bytes] = {}

    def put(self, sub: Subscription, row: bytes | None = None) -> bool:
        try:
            self.rows_[sub.key] = encode_row(sub) if row is None else row
        except ValueError:
            self.rows_.pop(sub.key, None)
            return False
        return True

    def put_row(self, key: str, row: bytes) -> bool:
        self.rows_[key] = row
        return True

    def get(self, key: str) -> bytes | None:
        return self.rows_.get(key)

    def delete(self, key: str) -> None:
        self.rows_.pop(key, None)

    def owner(self, key: str) -> int | None:
        raw = self.rows_.get(key)
        return None if raw is None else row_owner(raw)

    def rows(self, owner: int) -> list[Subscription]:
        return [s for s in (decode_row(v, k) for k, v in self.rows_.items()) if s.owner == owner]

    def scan(self, resource: str, event: str) -> list[Subscription]:
        subs = (decode_row(v, k) for k, v in self.rows_.items())
        return [s for s in subs if s.resource == resource and s.event == event]


class ShmSubscriptions:
    """Rows in shared-memory tables (``shmindex``): our tag -> ``encode_row``.

    Only the owner writes a row; any worker reads one to find the owner. A row
    goes to ``table`` (values of ``presence.subscription_row_bytes``) when it
    fits, else to ``overflow`` (a smaller table of longer values: a long route
    set or long URIs), never to both; a row too long for either stays in its
    worker only and is counted in ``full``, as is one that finds its table full."""

    def __init__(self, table: Any, overflow: Any = None) -> None:
        self.table = table
        self.overflow = overflow
        self.full = 0  # subscriptions that did not fit (kept in this worker only)
        self.track_dirty = True  # False: not persisted (nothing to write behind)
        self._dirty: dict[str, bytes] = {}  # key -> value as last written here (b"": deleted)

    def put(self, sub: Subscription, row: bytes | None = None) -> bool:
        value = row
        if value is None:
            try:
                value = encode_row(sub)
            except ValueError:
                value = b""  # a number out of range: kept here only, like a row too long
        return self.put_row(sub.key, value)

    def put_row(self, key: str, row: bytes) -> bool:
        if not self._put(key.encode("ascii", "replace"), row):
            self.full += 1
            self.delete(key)  # an old row would name a stale CSeq
            return False
        if self.track_dirty:
            self._dirty[key] = row
        return True

    def _put(self, key: bytes, value: bytes) -> bool:
        """Write ``value`` to the table it fits, and drop the key from the other one (a
        refresh may have moved the row across); False: it fits neither, or a table is full
        (or the key is longer than the tables' keys: ours never are)."""
        table, other = self.table, self.overflow
        if len(key) > table.key_max:
            return False
        if not value or len(value) > table.value_max:
            table, other = other, table
            if table is None or not value or len(value) > table.value_max:
                return False
        try:
            table.put(key, value)
        except SimplefastError:  # TableFullError
            return False
        if other is not None and len(other):  # an empty table has nothing to drop
            other.delete(key)
        return True

    def delete(self, key: str) -> None:
        k = key.encode("ascii", "replace")
        if len(k) <= self.table.key_max:  # a longer one was never stored
            self.table.delete(k)
            if self.overflow is not None and len(self.overflow):
                self.overflow.delete(k)
        if self.track_dirty:
            self._dirty[key] = b""

    def take_dirty(self) -> dict[str, bytes]:
        """Rows changed through this process since the last call (b"": deleted)."""
        out, self._dirty = self._dirty, {}
        return out

    def load(self, key: str, value: bytes) -> bool:
        """Restore a row at start; False when it fits no table (it is then lost)."""
        return self._put(key.encode("ascii"), value)

    def get(self, key: str) -> bytes | None:
        """The row of ``key`` as stored, from whichever table holds it."""
        try:
            k = key.encode("ascii")
            raw = self.table.get(k)
            if raw is None and self.overflow is not None and len(self.overflow):
                raw = self.overflow.get(k)
        except (UnicodeEncodeError, ValueError):
            return None
        return raw  # type: ignore[no-any-return]

    def owner(self, key: str) -> int | None:
        raw = self.get(key)
        return None if raw is None else row_owner(raw)

    def rows(self, owner: int) -> Iterator[Subscription]:
        """The subscriptions of ``owner``, decoded one at a time (a worker taking back a
        million does not hold them all at once)."""
        return (s for s in self._all() if s.owner == owner)

    def scan(self, resource: str, event: str) -> list[Subscription]:
        return [s for s in self._all() if s.resource == resource and s.event == event]

    def values(self) -> dict[str, bytes]:
        """Every row as stored, of both tables (the supervisor saves them whole)."""
        return dict(self._raw())

    def _raw(self) -> Iterator[tuple[str, bytes]]:
        for table in (self.table, self.overflow):
            if table is None or not len(table):  # a scan reads every slot (and makes its page resident)
                continue
            for k in table.keys():
                raw = table.get(k)
                if raw is not None:
                    yield k.decode("ascii", "replace"), raw

    def _all(self) -> Iterator[Subscription]:
        for key, raw in self._raw():
            try:
                yield decode_row(raw, key)
            except (ValueError, EOFError, TypeError, struct.error):
                continue


# A row (layout 2, simplefast/_ref/subrow.py): a fixed header with what changes while
# the subscription lives (written with every NOTIFY: the CSeq a replacement worker or a
# restarted server goes on from), then the fields that never change, packed (made once,
# kept in ``Subscription.row_static``; a refresh that moves the target or the flow makes
# it again). Layout 1 (a smaller header, then marshal of the unchanging fields and the
# key) is still read: rows a store written by an earlier version holds.
_HEAD_V1 = struct.Struct(
    "<BHIIqddB"
)  # layout, owner, cseq, remote_cseq, version, expires_at, subscribed_at, state
_STATIC_V1 = ("key", "call_id", "remote_tag", "local_uri", "remote_uri", "target", "routes", "peer", "event",
              "event_id", "resource", "watcher", "content_type", "policy")  # fmt: skip
_STATE_NAMES = (ACTIVE, PENDING, TERMINATED)


def encode_row(sub: Subscription) -> bytes:
    """The shared-table (and store) value of a subscription (layout 2). ValueError: a
    field the layout cannot hold (a peer of unknown shape, a number out of range)."""
    return _subrow.encode(sub)  # type: ignore[no-any-return]


def decode_row(value: bytes, key: str) -> Subscription:
    """The subscription of the row of ``key`` (layout 2, or 1 as earlier versions wrote
    it); ValueError for another layout or a row that does not decode."""
    if value[:1] == b"\x02":
        return Subscription(key=key, **_subrow.decode(value))
    layout, owner, cseq, rcseq, version, expires_at, subscribed_at, state = _HEAD_V1.unpack_from(value)
    if layout != 1:
        raise ValueError(f"subscription row layout {layout}, expected 1 or 2")
    kw = dict(zip(_STATIC_V1, marshal.loads(value[_HEAD_V1.size :]), strict=True))
    kw["routes"] = tuple(kw["routes"])
    kw["peer"] = tuple(kw["peer"])
    # row_static stays empty: the next encode_row makes the layout 2 one
    return Subscription(**kw, owner=owner, cseq=cseq, remote_cseq=rcseq, version=version,
                        expires_at=expires_at, subscribed_at=subscribed_at,
                        state=_STATE_NAMES[state])  # fmt: skip


def row_owner(value: bytes) -> int:
    return _subrow.owner(value)  # type: ignore[no-any-return]


# A worker's record of a subscription it holds: its key, NUL-padded (the tables' keys are
# at most this long; a longer one is kept in Held._long).
_REC = 32
_TICKS = 8  # expiry timers: buckets of 1/_TICKS second
_NO_KEY = b"\0" * _REC


class Held:
    """The subscriptions a worker holds (``Notifier.by_key``), kept as their rows.

    A subscription lives in its row of the shared table (``table``). This
    worker keeps for each one a record: its key (32 bytes), its place in its
    resource's list (``lists``: (event, resource) -> record numbers, 4 bytes
    each) and its expiry timer (its record number in a bucket of 1/8 s): about
    45 bytes, where a ``Subscription`` object with its strings takes about a
    kilobyte. The row names the record (``Subscription.rec``).

    ``get`` decodes the row into a ``Subscription``: a copy, which whoever
    changes it writes back with ``put`` before going back to the event loop.
    The last ``cache`` subscriptions got or put are kept as objects, in the
    order they came (a fan-out to a resource's watchers then decodes none);
    every change is written through, so dropping one loses nothing. Kept as
    objects for good (``pinned``): a subscription whose row fits no table (it
    has no other copy), and one whose package keeps state of its own (``extra``:
    watcher information).
    """

    def __init__(self, table: SubscriptionTable, index: int, cache: int) -> None:
        self.table = table
        self.index = index
        self.cache_size = cache
        self._keys = bytearray()  # record r: _REC bytes at r * _REC
        self._pos = array("I")  # record r: its place in its list
        self._free = array("I")
        self._long: dict[int, str] = {}  # record -> key longer than _REC bytes
        self.lists: dict[tuple[str, str], array[int]] = {}
        self.pinned: dict[str, Subscription] = {}
        self._cache: OrderedDict[str, Subscription] = OrderedDict()
        self._recs: dict[int, Subscription] = {}  # the cached ones by record (fan-out)
        # key -> [subscription, NOTIFYs of it in the notifier's queue]: while it has one
        # there, that object is the subscription (what its queued NOTIFYs were given)
        self._queued: dict[str, list[Any]] = {}
        # key -> [NOTIFYs of its row in the notifier's queue, last_sent, version, policy code]:
        # what the fan-out over rows (fanout.RowFan) queued and the object path would have set
        # on the object then; get applies them to an object it decodes, put clears them (None)
        self._rowq: dict[str, list[Any]] = {}
        self._count = 0
        # expiry timers: bucket (ceil(when * _TICKS)) -> record numbers, and the buckets in a
        # heap; an entry of a record refreshed, ended or reused meanwhile is skipped (the
        # row's expiry decides)
        self._buckets: dict[int, array[int]] = {}
        self._heap: list[int] = []

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def keys(self) -> list[str]:
        return list(self.iter_keys())

    def iter_keys(self) -> Iterator[str]:
        """The keys held, record by record (one removed meanwhile is skipped)."""
        r = 0
        while r < len(self._pos):
            k = self._key(r)
            if k:
                yield k
            r += 1

    def values(self) -> list[Subscription]:
        """Every subscription held here (decoded: for the rare paths that visit all)."""
        return [s for s in map(self.get, self.keys()) if s is not None]

    def _key(self, r: int) -> str:
        if self._long and r in self._long:
            return self._long[r]
        return self._keys[r * _REC : (r + 1) * _REC].rstrip(b"\0").decode("ascii")

    def _holds(self, r: int, key: str) -> bool:
        if not 0 <= r < len(self._pos):
            return False
        if len(key) > _REC:
            return self._long.get(r) == key
        kb = key.encode("ascii", "replace")
        return self._keys[r * _REC : (r + 1) * _REC] == kb + _NO_KEY[len(kb) :]

    def get(self, key: str) -> Subscription | None:
        sub = self._cache.get(key) or self.pinned.get(key)
        if sub is not None:
            return sub
        q = self._queued.get(key)
        if q is not None and self._holds(q[0].rec, key):
            self._remember(q[0])
            return q[0]  # type: ignore[no-any-return]
        raw = self.table.get(key)
        if raw is None or row_owner(raw) != self.index:
            return None
        try:
            sub = decode_row(raw, key)
        except (ValueError, EOFError, TypeError, struct.error):
            return None
        if not self._holds(sub.rec, key):
            return None  # a row of this index this worker did not take (a predecessor's)
        if self._rowq:
            ov = self._rowq.get(key)
            if ov is not None and ov[1] is not None:
                sub.last_sent, sub.version, sub.held = ov[1], ov[2], False
        self._remember(sub)
        return sub

    def _remember(self, sub: Subscription) -> None:
        cache = self._cache
        if not self.cache_size:
            return
        if sub.key not in cache and len(cache) >= self.cache_size:
            old = cache.popitem(last=False)[1]
            self._recs.pop(old.rec, None)
        cache[sub.key] = sub
        self._recs[sub.rec] = sub

    def _forget(self, key: str) -> None:
        sub = self._cache.pop(key, None)
        if sub is not None:
            self._recs.pop(sub.rec, None)

    def queue(self, sub: Subscription) -> None:
        """A NOTIFY of ``sub`` waits in the notifier's queue: ``get`` gives this object
        until the NOTIFY goes (``Notifier.pump`` counts it down; its row is written then)."""
        q = self._queued.get(sub.key)
        if q is None:
            self._queued[sub.key] = [sub, 1]
        else:
            q[1] += 1

    def holds(self, sub: Subscription) -> bool:
        """Whether ``sub`` is held here (its record names it)."""
        key = sub.key
        return self._cache.get(key) is sub or self._holds(sub.rec, key)

    def put(self, sub: Subscription, row: bytes | None = None) -> None:
        """Write ``sub`` through to its row (``row``: ``encode_row(sub)``, made already)."""
        if self._rowq:
            ov = self._rowq.get(sub.key)
            if ov is not None:
                ov[1] = ov[2] = None  # the row now holds them
        if not self.table.put(sub, row) or sub.extra is not None:
            self.pinned[sub.key] = sub
            self._forget(sub.key)
        elif self._cache.get(sub.key) is not sub:
            if self.pinned:
                self.pinned.pop(sub.key, None)
            self._remember(sub)

    def pin_row(self, key: str, row: bytes) -> None:
        """A row the fan-out over rows could not write back (it fits no table now): the
        subscription is kept here as an object, like one ``put`` could not write."""
        self.pinned[key] = decode_row(row, key)
        self._forget(key)

    def busy(self, key: str) -> bool:
        """Whether NOTIFYs of ``key`` wait in the notifier's queue (of an object or a row)."""
        return key in self._queued or key in self._rowq

    def row_done(self, key: str) -> None:
        """A NOTIFY of ``key``'s row left the notifier's queue (see ``_rowq``)."""
        ov = self._rowq.get(key)
        if ov is not None:
            ov[0] -= 1
            if ov[0] <= 0:
                del self._rowq[key]

    def __getitem__(self, key: str) -> Subscription:
        sub = self.get(key)
        if sub is None:
            raise KeyError(key)
        return sub

    def add(self, sub: Subscription, *, write: bool = True) -> bool:
        """Hold ``sub`` (new, or taken back from a predecessor): a record, its place in its
        list, its expiry timer, its row (``write`` False: the caller's first NOTIFY writes
        it; until then the object is kept). True when it is the first of its (event,
        resource)."""
        key = sub.key
        if self._free:
            r = self._free.pop()
        else:
            r = len(self._pos)
            self._pos.append(0)
            self._keys += _NO_KEY
        if len(key) > _REC or not key.isascii():
            self._long[r] = key
        else:
            self._keys[r * _REC : (r + 1) * _REC] = key.encode("ascii") + _NO_KEY[len(key) :]
        sub.rec, sub.owner = r, self.index
        lk = (sub.event, sub.resource)
        lst = self.lists.get(lk)
        first = lst is None
        if lst is None:
            lst = self.lists[lk] = array("I")
        self._pos[r] = len(lst)
        lst.append(r)
        self._count += 1
        self.expire_at(sub)
        if write:
            self.put(sub)
        else:
            self._remember(sub)
        return first

    def remove(self, sub: Subscription) -> bool | None:
        """Hold ``sub`` no more (its row deleted); True when it was the last of its (event,
        resource), None when it was not held."""
        r = sub.rec
        if not self._holds(r, sub.key):
            return None
        lk = (sub.event, sub.resource)
        lst = self.lists[lk]
        i = self._pos[r]
        last = lst.pop()
        if last != r:  # the last record takes the place of the one that goes
            lst[i] = last
            self._pos[last] = i
        if not lst:
            del self.lists[lk]
        self._long.pop(r, None)
        self._keys[r * _REC : (r + 1) * _REC] = _NO_KEY
        self._free.append(r)
        self._count -= 1
        self._forget(sub.key)
        self.pinned.pop(sub.key, None)
        ov = self._rowq.get(sub.key)
        if ov is not None:  # its queued NOTIFYs are dropped as they come up: the count stays till then
            ov[1] = ov[2] = None
        self.table.delete(sub.key)
        return not lst

    def keys_of(self, event: str, resource: str) -> list[str]:
        lst = self.lists.get((event, resource))
        return list(map(self._key, lst)) if lst else []

    def subs_of(self, event: str, resource: str) -> list[Subscription]:
        """The subscriptions to (event, resource) held here (the cached ones without
        decoding even their key)."""
        lst = self.lists.get((event, resource))
        if not lst:
            return []
        out = []
        recs, get, key = self._recs, self.get, self._key
        for r in lst:
            sub = recs.get(r) or get(key(r))
            if sub is not None:
                out.append(sub)
        return out

    def expire_at(self, sub: Subscription) -> None:
        """Set the expiry timer of ``sub`` (at ``sub.expires_at``, in its bucket)."""
        b = math.ceil(sub.expires_at * _TICKS)
        bucket = self._buckets.get(b)
        if bucket is None:
            bucket = self._buckets[b] = array("I")
            heapq.heappush(self._heap, b)
        bucket.append(sub.rec)

    def next_expiry(self) -> float | None:
        return self._heap[0] / _TICKS if self._heap else None

    def expiring(self, now: float) -> list[str]:
        """The keys whose expiry timer went off by ``now`` (each to check: a refresh may
        have moved it)."""
        out: list[str] = []
        heap, limit = self._heap, now * _TICKS
        while heap and heap[0] <= limit:
            for r in self._buckets.pop(heapq.heappop(heap)):
                if r < len(self._pos):
                    k = self._key(r)
                    if k:
                        out.append(k)
        return out


class Watchers:
    """``Notifier.watchers``: which (event, resource) pairs this worker holds
    subscriptions of, and those subscriptions (``get``: decoded, a dict by key)."""

    def __init__(self, held: Held) -> None:
        self._held = held

    def __contains__(self, lk: object) -> bool:
        return lk in self._held.lists

    def __len__(self) -> int:
        return len(self._held.lists)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._held.lists))

    def get(self, lk: tuple[str, str], default: Any = None) -> dict[str, Subscription] | Any:
        if lk not in self._held.lists:
            return default
        subs = {}
        for k in self._held.keys_of(*lk):
            sub = self._held.get(k)
            if sub is not None:
                subs[k] = sub
        return subs

    def __getitem__(self, lk: tuple[str, str]) -> dict[str, Subscription]:
        if lk not in self._held.lists:
            raise KeyError(lk)
        return self.get(lk)

    def keys(self) -> list[tuple[str, str]]:
        return list(self._held.lists)


class Answer(NamedTuple):
    status: int
    reason: str
    headers: list[tuple[str, str]]
    sub: Subscription | None = None  # made or refreshed: send the 200 with its tag, then notify_now
    to_tag: str | None = None


class Notifier:
    def __init__(
        self, tl: Any, packages: dict[str, EventPackage], *, policy: Policy,
        contact: Callable[[tuple[Any, ...]], str], via: Callable[[tuple[Any, ...]], str],
        config: NotifierConfig | None = None, table: SubscriptionTable | None = None,
        index: int = 0, tag_prefix: str = "",
        on_watcher: Callable[[Subscription, str, str], object] | None = None,
        on_watched: Callable[[str, str, bool], object] | None = None,
    ) -> None:  # fmt: skip
        self.tl = tl
        self.packages = packages
        self.policy = policy
        self.contact = contact  # our Contact URI for a flow (of its transport and family: contact_of)
        self.via = via  # our Via sent-by for a NOTIFY to a peer ("SIP/2.0/UDP host:port")
        # the NOTIFY client transactions (ext/fanout.pyx); their branches carry the
        # transaction layer's prefix, so a response reaching another worker is handed here
        self.txns = _fanout.NotifyTxns(f"{tl.branch_prefix}.n", t1=tl.t1, t2=tl.t2, t4=tl.t4)
        self._vias: dict[tuple[str, bool], bytes] = {}
        self._contacts: dict[tuple[str, bool], str] = {}
        self._contacts_b: dict[tuple[str, bool], bytes] = {}
        self._ctypes: dict[str, bytes] = {}  # Content-Type values, encoded
        self.config = config or NotifierConfig()
        self.table: SubscriptionTable = table if table is not None else MemorySubscriptions()
        self.index = index
        # the branch prefix: random, and in the server the worker's steering marker, so a
        # SUBSCRIBE inside the dialog reaches this worker from the kernel
        # (transport/reuseport.py) rather than by a hand-off
        self.tag_prefix = tag_prefix or tl.branch_prefix[7:]
        self._seq = itertools.count(1)
        self.by_key = Held(self.table, index, self.config.cache)  # key -> subscription held here
        self.watchers = Watchers(self.by_key)  # (event, resource) -> subscriptions held here
        # on_watcher(sub, event, status): a subscription was made or ended (RFC 3858 event
        # and status names; for watcher information)
        self.on_watcher = on_watcher
        # on_watched(event, resource, on): this worker now holds subscriptions of that event
        # to that resource (on), or no more (off): who needs to hear of a change
        self.on_watched = on_watched
        # pacing and giveup timers (expiry timers are in by_key): (when, kind, key); stale
        # entries skipped
        self._timers: list[tuple[float, int, str]] = []
        # (subscription, reason, body, final), or (key, None, body, False) for a NOTIFY the
        # fan-out over rows queued (see pump)
        self._queue: deque[tuple[Subscription | str, str | None, Body | None, bool]] = deque()
        self._queued_n = 0  # NOTIFYs of objects that waited for room in the window
        self.ended: Counter[str] = Counter()  # subscriptions ended, by reason
        self.held_by: Counter[tuple[str, str]] = Counter()  # (event, state) -> subscriptions held here
        self.paced = 0  # changes that waited for a subscription's pacing interval (RFC 3856 6.10)
        self.kept: Counter[str] = Counter()  # NOTIFY failures survived (notify_grace)
        self._sent = 0  # NOTIFYs sent from objects
        # the fan-out over rows (docs/presence.md): changes reach the watchers of a package
        # that has ``policy_body`` from their rows, without an object each; None: every
        # NOTIFY goes the object path (the tests compare the two)
        held = self.by_key
        self.fan: Any = _fanout.RowFan(
            self.txns, index=index, keys=held._keys, long=held._long, pinned=held.pinned, queued=held._queued,
            cache=held._cache, rowq=held._rowq, get=self.table.get, put=self.table.put_row,
            forget=held._forget, lost=held.pin_row, send=tl.send_stateless, wire=self._row_wire,
            ctypes=self._ctypes,
        )  # fmt: skip
        self.allow_events = ", ".join(sorted(packages))
        # keys of subscriptions that ended -> the CSeq of their last SUBSCRIBE, for 64*T1
        # (two generations: an entry lives one to two windows); see "Retransmissions"
        self.retired: dict[str, int] = {}
        self._retired_old: dict[str, int] = {}
        self._retired_since = 0.0
        self.retire_window = 64 * tl.t1
        self.retransmissions = 0  # SUBSCRIBEs answered again (see "Retransmissions")

    # ------------------------------------------------------------------ SUBSCRIBE
    def subscribe(
        self, msg: Any, peer: tuple[Any, ...], resource: str, watcher: str, now: float, tag: str | None = None
    ) -> Answer:
        """An initial SUBSCRIBE (no To tag) for ``resource`` by ``watcher`` (AORs); ``tag``:
        our tag's part after ``tag_prefix`` (the request's keyed hash, see
        "Retransmissions"), None for a counter."""
        try:
            return self._subscribe(msg, peer, resource, watcher, now, tag)
        except SipParseError as exc:  # a header the checks before did not need (Contact: *, ...)
            return Answer(400, "Bad Request", [warning_header(str(exc))])

    def again(self, key: str, peer: tuple[Any, ...], now: float, cseq: int | None = None) -> Answer | None:
        """The answer to a SUBSCRIBE that is one taken already (see "Retransmissions"):
        ``key``, the tag of an initial one (``cseq`` None), or the To tag of one in a
        dialog with its ``cseq``. 200 with the time left (Expires 0 once ended); None: a
        request to take."""
        sub = self.by_key.get(key)
        if sub is not None:
            if cseq is not None and cseq != sub.remote_cseq:
                return None
            left = max(0, int(sub.expires_at - now + 0.5))
            peer = sub.peer
        else:
            last = self.is_retired(key, now)
            if last is None and self.by_key.busy(key):
                # an ended subscription of this key still has NOTIFYs waiting (their entries name
                # the key): a copy of its SUBSCRIBE does not make it again while they do
                last = -1
            if last is None or (cseq is not None and cseq != last):
                return None
            left = 0
        self.retransmissions += 1
        headers = [("Expires", str(left)), ("Contact", self.contact_of(tuple(peer)))]
        return Answer(200, "OK", headers, None, key)

    def is_retired(self, key: str, now: float) -> int | None:
        """The CSeq of the last SUBSCRIBE of a subscription that ended less than 64*T1 ago."""
        self._rotate(now)
        cseq = self.retired.get(key)
        return self._retired_old.get(key) if cseq is None else cseq

    def _rotate(self, now: float) -> None:
        # an entry moves to the old generation at the first turn after it was made, and
        # goes at the next one: it lives at least a window
        if now - self._retired_since >= self.retire_window:
            self._retired_old, self.retired = self.retired, {}
            self._retired_since = now

    def _subscribe(
        self, msg: Any, peer: tuple[Any, ...], resource: str, watcher: str, now: float, tag: str | None
    ) -> Answer:
        if tag is not None:
            key = f"{self.tag_prefix}{tag}"
            again = self.again(key, peer, now)
            if again is not None:
                return again
        else:
            key = f"{self.tag_prefix}{next(self._seq):x}"
        package, event_id, bad = self._package(msg)
        if bad is not None:
            return bad
        assert package is not None
        ctype = negotiate(msg.get_all("Accept"), package.content_types)
        if ctype is None:
            return Answer(406, "Not Acceptable", [("Accept", ", ".join(package.content_types))])
        expires, bad = self._expires(msg, package)
        if bad is not None:
            return bad
        policy = ALLOW if watcher == resource else self.policy(watcher, resource, package.name)
        if policy == BLOCK:
            return Answer(403, "Forbidden", [])
        target = msg.contact_uri
        if target is None or not _is_sip_uri(target):
            return Answer(400, "Bad Request", [warning_header("SUBSCRIBE needs a Contact with a SIP URI")])
        return self.make(msg, peer, key, package, event_id, ctype, expires, policy, target, resource, watcher,
                         now)  # fmt: skip

    def make(
        self, msg: Any, peer: tuple[Any, ...], key: str, package: EventPackage, event_id: str | None,
        ctype: str, expires: int, policy: str, target: str, resource: str, watcher: str, now: float,
    ) -> Answer:  # fmt: skip
        """The subscription an initial SUBSCRIBE makes, every check passed (both paths):
        kept (``expires`` 0: a fetch, not kept), and its 200."""
        sub = Subscription(
            key=key, call_id=msg.call_id, remote_tag=msg.from_tag or "", local_uri=msg.to_addr().uri,
            remote_uri=msg.from_addr().uri, target=target, routes=tuple(_record_routes(msg)),
            peer=tuple(peer), event=package.name, event_id=event_id, resource=resource, watcher=watcher,
            content_type=ctype, policy=policy, expires_at=now + expires, remote_cseq=msg.cseq_num,
            state=PENDING if policy == CONFIRM else ACTIVE, owner=self.index, subscribed_at=now,
        )  # fmt: skip
        package.prepare(sub)
        headers = [("Expires", str(expires)), ("Contact", self.contact_of(sub.peer))]
        if expires == 0:  # a fetch: one NOTIFY, nothing kept
            sub.state = TERMINATED
            return Answer(200, "OK", headers, sub, key)
        self._add(sub, new=True)
        return Answer(200, "OK", headers, sub, key)

    def refresh(self, msg: Any, peer: tuple[Any, ...], now: float) -> Answer:
        """A SUBSCRIBE in one of our dialogs: refresh, or unsubscribe (Expires 0)."""
        try:
            return self._refresh(msg, peer, now)
        except SipParseError as exc:
            return Answer(400, "Bad Request", [warning_header(str(exc))])

    def _refresh(self, msg: Any, peer: tuple[Any, ...], now: float) -> Answer:
        key = msg.to_tag or ""
        cseq = msg.cseq_num or 0
        sub = self.by_key.get(key)
        if sub is not None and (sub.call_id != msg.call_id or sub.remote_tag != (msg.from_tag or "")):
            return Answer(481, "Subscription Does Not Exist", [])
        if sub is None or cseq == sub.remote_cseq:
            again = self.again(key, peer, now, cseq)
            if again is not None or sub is None:
                return again or Answer(481, "Subscription Does Not Exist", [])
        package, event_id, bad = self._package(msg)
        if bad is not None:
            return bad
        if package is None or package.name != sub.event or event_id != sub.event_id:
            return Answer(481, "Subscription Does Not Exist", [])  # another subscription's event
        if cseq < sub.remote_cseq:
            return Answer(500, "Server Internal Error", [warning_header("CSeq out of order")])
        expires, bad = self._expires(msg, package)
        if bad is not None:
            return bad
        target = msg.contact_uri
        if target is not None and not _is_sip_uri(target):
            return Answer(400, "Bad Request", [warning_header("Contact is not a SIP URI")])
        return self.renew(sub, peer, package, cseq, target, expires, now)

    def renew(
        self, sub: Subscription, peer: tuple[Any, ...], package: EventPackage, cseq: int, target: str | None,
        expires: int, now: float,
    ) -> Answer:  # fmt: skip
        """A SUBSCRIBE in the dialog of ``sub``, every check passed (both paths): refreshed,
        or ended (``expires`` 0), and its 200."""
        sub.remote_cseq = cseq
        if target is not None and target != sub.target:
            sub.target = target  # a refresh may update the remote target (RFC 6665 §4.1.2.1)
            sub.row_static = sub.target_b = b""
        if tuple(peer) != sub.peer:
            sub.peer = tuple(peer)  # our Contact and where NOTIFYs go follow the flow
            sub.row_static = sub.head = b""
            sub.wire = None
        package.prepare(sub)
        headers = [("Expires", str(expires)), ("Contact", self.contact_of(sub.peer))]
        if expires == 0:
            self._remove(sub, "unsubscribed")
            sub.state = TERMINATED
        else:
            sub.expires_at = now + expires
            self.by_key.expire_at(sub)
            self.by_key.put(sub)
        return Answer(200, "OK", headers, sub, sub.key)

    def notify_now(self, sub: Subscription, now: float, reason: str | None = None) -> None:
        """The NOTIFY a SUBSCRIBE asks for: the state now (RFC 6665 §4.2.1.2), also for a
        refresh; ``terminated`` for a fetch or an unsubscribe."""
        self._send(sub, now, reason or ("timeout" if sub.state == TERMINATED else None))

    @property
    def notifies_sent(self) -> int:
        return self._sent + (self.fan.sent if self.fan is not None else 0)

    @property
    def notifies_queued(self) -> int:
        """NOTIFYs that waited for room in the window."""
        return self._queued_n + (self.fan.queued if self.fan is not None else 0)

    # ------------------------------------------------------------------ changes
    def changed(self, resource: str, now: float, event: str = "presence") -> int:
        """The state of ``resource`` changed: NOTIFY its ``event`` subscribers here (paced);
        how many went."""
        lst = self.by_key.lists.get((event, resource))
        if not lst:
            return 0
        sent = 0
        interval = self.config.min_notify_interval
        package = self.packages[event]
        hold = getattr(package, "hold", None)  # read the resource's state once for the whole loop
        if hold is not None:
            hold(resource)
        try:
            policy_body = getattr(package, "policy_body", None)
            if self.fan is None or policy_body is None:
                sent = self._changed(self.by_key.subs_of(event, resource), now, interval)
            else:
                sent = self._fan(lst, resource, policy_body, now, interval)
        finally:
            if hold is not None:
                hold(None)
        return sent

    def _fan(self, recs: Any, resource: str, policy_body: Any, now: float, interval: float) -> int:
        """``changed`` over rows (fanout.RowFan); the records it leaves go the object path,
        one at a time and in their place, so the NOTIFYs go in the same order."""
        held = self.by_key
        bodies: list[Body | None] = [None] * len(_subrow.POLICIES)  # made once per policy code

        def body_of(policy: str) -> Body:
            return policy_body(resource, policy)  # type: ignore[no-any-return]

        i = sent = 0
        while True:
            k: int
            i, k = self.fan.changed(recs, i, now, interval, self.config.notify_window, self._queue, bodies,
                                    body_of)  # fmt: skip
            sent += k
            if i >= len(recs):
                return sent
            r = recs[i]
            sub = held._recs.get(r) or held.get(held._key(r))
            if sub is not None:
                sent += self._changed([sub], now, interval)
            i += 1

    def _changed(self, subs: list[Subscription], now: float, interval: float) -> int:
        sent = 0
        for sub in subs:
            if sub.state != ACTIVE:
                continue
            due = sub.last_sent + interval
            if due > now:
                if not sub.held:
                    sub.held = True
                    self.paced += 1
                    heapq.heappush(self._timers, (due, _PACE, sub.key))
                    self.by_key.put(sub)
                continue
            self._send(sub, now, None)
            sent += 1
        return sent

    # ------------------------------------------------------------------ NOTIFY outcomes
    def owns(self, branch: str) -> bool:
        """Whether a response with this top-Via branch answers one of our NOTIFYs."""
        return bool(self.txns.owns(branch))

    def on_response(self, branch: str, status: int, now: float) -> None:
        """A response to one of our NOTIFYs (RFC 6665 §4.2.2 for the failures)."""
        key: str | None = self.txns.response(branch, status, now)
        if key is None:
            return
        if status >= 300:
            sub = self.by_key.get(key)
            if sub is None:  # ended meanwhile (this was its final NOTIFY, say)
                pass
            elif status == 481:
                self._remove(sub, "notify 481")
            elif status == 408:
                self._failed(sub, "notify 408")
        if self._queue:
            self.pump(now)

    def on_transport_failed(self, branch: str, now: float) -> None:
        key: str | None = self.txns.failed(branch)
        if key is not None:
            sub = self.by_key.get(key)
            if sub is not None:
                self._failed(sub, "notify transport failure")
            if self._queue:
                self.pump(now)

    def _failed(self, sub: Subscription, reason: str) -> None:
        if self.config.notify_grace and sub.state != TERMINATED:
            self.kept[reason] += 1
            sub.version = -1  # the next change gets through
            self.by_key.put(sub)
            return
        self._remove(sub, reason)

    # ------------------------------------------------------------------ timers
    def next_deadline(self) -> float | None:
        # after every batch of datagrams (CoreDriver.after): no list, no call per source
        t: float | None = self.txns.next_deadline()
        heap = self.by_key._heap
        if heap and (t is None or heap[0] / _TICKS < t):
            t = heap[0] / _TICKS
        timers = self._timers
        if timers and (t is None or timers[0][0] < t):
            t = timers[0][0]
        return t

    def handle_timer(self, now: float) -> None:
        self._rotate(now)
        again, timed_out = self.txns.poll(now)
        for data, dest in again:
            self.tl.send_stateless(data, dest)
        for key in timed_out:
            sub = self.by_key.get(key)
            if sub is not None:
                self._failed(sub, "notify timeout")
        if self._queue:
            self.pump(now)
        for key in self.by_key.expiring(now):
            sub = self.by_key.get(key)
            if sub is not None and sub.expires_at <= now:
                self._remove(sub, "timeout")
                sub.state = TERMINATED
                self._send(sub, now, "timeout")
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, kind, key = heapq.heappop(timers)
            sub = self.by_key.get(key)
            if sub is None:
                continue
            if kind == _GIVEUP:
                if sub.state == PENDING:  # nobody decided in time (keys are never reused)
                    self.terminate(sub, "giveup", now)
            elif sub.held:
                due = sub.last_sent + self.config.min_notify_interval
                if due > now:  # set before a NOTIFY that went since: the interval runs from that one
                    heapq.heappush(timers, (due, _PACE, key))
                    continue
                sub.held = False
                if sub.state == ACTIVE and self.packages[sub.event].has_news(sub):
                    self._send(sub, now, None)
                else:
                    self.by_key.put(sub)

    # ------------------------------------------------------------------ authorization
    def terminate(self, sub: Subscription, reason: str, now: float) -> None:
        """End a subscription held here: the final NOTIFY (``terminated;reason=...``,
        RFC 6665 4.2.2) and the watcher-information event of that reason."""
        self._remove(sub, reason)
        sub.state = TERMINATED
        self._send(sub, now, reason)

    def end_resource(self, resource: str, reason: str, now: float) -> int:
        """End every subscription held here to ``resource`` (e.g. noresource: the user was
        removed); how many."""
        ended = 0
        for event in self.packages:
            for sub in list(self.watchers.get((event, resource), {}).values()):
                self.terminate(sub, reason, now)
                ended += 1
        return ended

    def end_all(self, reason: str, now: float) -> int:
        """End every subscription held here (the server stops and keeps no subscription:
        ``deactivated``, the watchers should subscribe again at once, or ``probation``, they
        should after ``probation_retry_after`` seconds; RFC 6665 4.1.3):
        watcher-information ones (``*.winfo``, RFC 3857's template) last, so that their
        subscribers still hear of the others. How many."""
        ended = 0
        for lk in sorted(self.watchers.keys(), key=lambda lk: lk[0].endswith(".winfo")):
            for sub in self.watchers.get(lk, {}).values():
                if sub.state != TERMINATED:
                    self.terminate(sub, reason, now)
                    ended += 1
        return ended

    def reauthorize(self, now: float) -> int:
        """The policy changed (a SIGHUP, until XCAP pres-rules arrive): judge every
        subscription held here again. Blocked now: ``terminated;reason=rejected``.
        Pending and now allowed (or polite-blocked): active, with a NOTIFY (event
        ``approved``). Active under another policy class: a NOTIFY of what the new one
        sees. Active and now ``confirm``: left active (no way back to pending in RFC
        3857's state machine). Returns how many changed."""
        changed = 0
        for key in self.by_key.iter_keys():  # one at a time: a million decoded at once would not fit
            sub = self.by_key.get(key)
            if sub is None or sub.state == TERMINATED:
                continue
            policy = (
                ALLOW if sub.watcher == sub.resource else self.policy(sub.watcher, sub.resource, sub.event)
            )
            if policy == BLOCK:
                self.terminate(sub, "rejected", now)
            elif policy == CONFIRM or (policy == sub.policy and sub.state == ACTIVE):
                continue
            else:
                approved = sub.state == PENDING
                self.held_by[(sub.event, sub.state)] -= 1
                self.held_by[(sub.event, ACTIVE)] += 1
                sub.state, sub.policy = ACTIVE, policy
                sub.row_static = b""  # the policy is part of the row's unchanging part
                self.by_key.put(sub)
                if approved and self.on_watcher is not None:
                    self.on_watcher(sub, "approved", ACTIVE)
                self._send(sub, now, None)
            changed += 1
        return changed

    # ------------------------------------------------------------------ workers
    def owner_of(self, key: str) -> int | None:
        return self.table.owner(key)

    def adopt(self, now: float) -> int:
        """Take back the subscriptions this worker index owned (a replaced worker), and
        NOTIFY those whose resource changed meanwhile; how many were taken."""
        n = 0
        for sub in self.table.rows(self.index):
            if sub.key in self.by_key:
                continue
            if sub.expires_at <= now:
                self.table.delete(sub.key)
                self.ended["timeout"] += 1
                continue
            sub.held = False  # its pacing timer went with the killed worker (has_news below)
            self._add(sub)
            n += 1
            if sub.state == ACTIVE and self.packages[sub.event].has_news(sub):
                self._send(sub, now, None)
        return n

    def count(self) -> int:
        return len(self.by_key)

    # ------------------------------------------------------------------ internals
    def contact_of(self, peer: tuple[Any, ...]) -> str:
        """Our Contact for a flow: ``contact`` depends on the flow's transport and address
        family only (as ``via`` does), so it is made once for each."""
        key = (peer[2] if len(peer) == 4 else "udp", ":" in str(peer[0]))
        c = self._contacts.get(key)
        if c is None:
            c = self._contacts[key] = self.contact(peer)
        return c

    def _package(self, msg: Any) -> tuple[EventPackage | None, str | None, Answer | None]:
        event = msg.get("Event")
        name, event_id = _event(event)
        package = self.packages.get(name or "")
        if package is None:
            return None, None, Answer(489, "Bad Event", [("Allow-Events", self.allow_events)])
        return package, event_id, None

    def _expires(self, msg: Any, package: EventPackage) -> tuple[int, Answer | None]:
        try:
            expires = msg.expires
        except SipParseError:
            return 0, Answer(400, "Bad Request", [warning_header("malformed Expires")])
        if expires is None:
            expires = package.default_expires
        cfg = self.config
        if 0 < expires < cfg.min_expires:
            return 0, Answer(423, "Interval Too Brief", [("Min-Expires", str(cfg.min_expires))])
        return min(expires, cfg.max_expires), None

    def _add(self, sub: Subscription, *, new: bool = False) -> None:
        sub.owner = self.index
        self.held_by[(sub.event, sub.state)] += 1
        # a new one's row is written with its first NOTIFY (notify_now, which the caller
        # calls after sending the 200); the caller checked that the key is not held (again)
        if self.by_key.add(sub, write=not new) and self.on_watched is not None:
            self.on_watched(sub.event, sub.resource, True)
        if sub.state == PENDING and self.config.pending_timeout:
            heapq.heappush(self._timers, (sub.subscribed_at + self.config.pending_timeout, _GIVEUP, sub.key))
        if new and self.on_watcher is not None:
            self.on_watcher(sub, "subscribe" if sub.state == PENDING else "approved", sub.state)

    def _remove(self, sub: Subscription, reason: str) -> None:
        last = self.by_key.remove(sub)
        if last is None:
            return
        self.held_by[(sub.event, sub.state)] -= 1
        if last and self.on_watched is not None:
            self.on_watched(sub.event, sub.resource, False)
        self.retired[sub.key] = sub.remote_cseq
        self.ended[reason] += 1
        if self.on_watcher is not None:  # RFC 3857 names the reasons it has; the rest is a timeout
            self.on_watcher(sub, reason if reason in _WINFO_REASONS else "timeout", TERMINATED)

    def _send(self, sub: Subscription, now: float, reason: str | None) -> None:
        """A NOTIFY of the state now: sent at once, or queued behind others when the window
        is full (its body is taken now, so each change still reaches the watcher in order)."""
        sub.last_sent = now
        sub.held = False
        body: Body | None = None
        if sub.state != PENDING:
            body = self.packages[sub.event].body(sub)
            sub.version = body.version
        window = self.config.notify_window
        if window and (self._queue or self.txns.outstanding >= window):
            self._queue.append((sub, reason, body, sub.state == TERMINATED or reason is not None))
            self._queued_n += 1
            self.by_key.queue(sub)  # this object is the subscription until the NOTIFY goes
            return
        self._emit(sub, now, reason, body)

    def pump(self, now: float) -> int:
        """Send queued NOTIFYs while the window has room; how many went. A queued NOTIFY of
        a subscription that ended meanwhile is dropped, unless it is the final one."""
        window = self.config.notify_window
        queue = self._queue
        held = self.by_key
        queued = held._queued
        sent = 0
        while queue and (not window or self.txns.outstanding < window):
            if type(queue[0][0]) is str:  # queued by the fan-out over rows
                if self.fan is not None:
                    sent += self.fan.pump(queue, window, now)
                    if not queue or (window and self.txns.outstanding >= window):
                        break
                if type(queue[0][0]) is str:  # its key has an object here: sent from that
                    entry = queue.popleft()
                    key, body = cast(str, entry[0]), entry[2]
                    held.row_done(key)
                    obj = held.get(key)
                    if obj is not None:
                        self._emit(obj, now, None, body, True)
                        sent += 1
                    continue
            obj_, reason, body, final = queue.popleft()
            sub = cast(Subscription, obj_)  # an object's entry (a row's has a str: above)
            q = queued.get(sub.key)  # Held.queue's count, down (a burst takes this path per NOTIFY)
            if q is not None:
                q[1] -= 1
                if not q[1]:
                    del queued[sub.key]
            holds = held.holds(sub)
            if not final and not holds:
                continue
            self._emit(sub, now, reason, body, holds)
            sent += 1
        return sent

    def _emit(
        self, sub: Subscription, now: float, reason: str | None, b: Body | None, holds: bool | None = None
    ) -> None:
        sub.cseq += 1
        if reason is not None or sub.state == TERMINATED:
            st = f"terminated;reason={reason or 'timeout'}"
            if reason == "probation" and self.config.probation_retry_after:
                st += f";retry-after={self.config.probation_retry_after}"
            state = st.encode("ascii")
        else:
            remaining = int(sub.expires_at - now + 0.5)
            state = b"%s;expires=%d" % (_STATE_B[sub.state], remaining if remaining > 0 else 0)
        body = ctype = b""
        if b is not None:
            body = b.data
            ctype = self._ctypes.get(b.content_type) or self._ctype(b.content_type)
        # the row with this CSeq (written back below); a new copy of the subscription takes its
        # Request-URI and header block from it, kept with the object while it is cached
        try:
            row: bytes | None = _subrow.encode(sub)
        except ValueError:  # a field no row holds (the subscription is kept here only)
            row = None
        head = sub.head
        if not head:  # from the row (the Request-URI too): the object may be a new copy of it
            contact = self._contact_b(sub.peer)
            if row is not None:
                sub.target_b, head = _subrow.notify_parts(row, sub.key, contact)
            else:
                sub.target_b, head = sub.target.encode("utf-8", "surrogateescape"), self._head(sub)
            sub.head = head
        if not sub.target_b:
            sub.target_b = sub.target.encode("utf-8", "surrogateescape")
        dest, via, reliable = sub.wire or self._wire(sub)
        data = self.txns.send(
            sub.target_b, via, head, sub.cseq, state, ctype, body, dest, reliable, sub.key, now
        )
        self.tl.send_stateless(data, dest)
        self._sent += 1
        if self.by_key.holds(sub) if holds is None else holds:
            self.by_key.put(sub, row)  # the CSeq and version a restarted worker goes on from

    def _ctype(self, content_type: str) -> bytes:
        c = self._ctypes[content_type] = content_type.encode("ascii")
        return c

    def _wire(self, sub: Subscription) -> tuple[Any, bytes, bool]:
        """Where a NOTIFY of ``sub`` goes, our Via for it, whether reliable (kept in
        ``sub.wire``)."""
        dest = _destination(sub)
        wire = sub.wire = (dest, self._via_b(dest), len(sub.peer) == 4)
        return wire

    def _via_b(self, dest: tuple[Any, ...]) -> bytes:
        vkey = (dest[2] if len(dest) == 4 else "udp", ":" in str(dest[0]))
        via = self._vias.get(vkey)
        if via is None:
            via = self._vias[vkey] = self.via(dest).encode("ascii")
        return via

    def _row_wire(self, dest: tuple[Any, ...]) -> tuple[bytes, bytes]:
        """Our Via and Contact for a NOTIFY to ``dest`` (the fan-out over rows; a UDP
        destination's transport and address family are its flow's)."""
        return self._via_b(dest), self._contact_b(dest)

    def _contact_b(self, peer: tuple[Any, ...]) -> bytes:
        key = (peer[2] if len(peer) == 4 else "udp", ":" in str(peer[0]))
        c = self._contacts_b.get(key)
        if c is None:
            c = self._contacts_b[key] = self.contact_of(peer).encode("utf-8", "surrogateescape")
        return c

    def _head(self, sub: Subscription) -> bytes:
        routes = "".join(f"Route: {r}\r\n" for r in sub.routes)
        ev = sub.event if sub.event_id is None else f"{sub.event};id={sub.event_id}"
        return (
            f"{routes}Max-Forwards: 70\r\nFrom: <{sub.local_uri}>;tag={sub.key}\r\n"
            f"To: <{sub.remote_uri}>;tag={sub.remote_tag}\r\nCall-ID: {sub.call_id}\r\n"
            f"Contact: {self.contact_of(sub.peer)}\r\nEvent: {ev}\r\n"
        ).encode("utf-8", "surrogateescape")


_PACE, _GIVEUP = 1, 2
_STATE_B = {ACTIVE: b"active", PENDING: b"pending"}  # Subscription-State values, encoded once
# termination reasons (RFC 6665 4.2.2) that are also watcher-information events (RFC 3857 3.2.4)
_WINFO_REASONS = frozenset({"rejected", "giveup", "noresource", "deactivated", "probation", "timeout"})


def _destination(sub: Subscription) -> tuple[Any, ...]:
    """Where a NOTIFY goes: the SUBSCRIBE's connection for TCP/TLS; for UDP the first
    route when it names an address, else the SUBSCRIBE's source; sent from the worker's
    client socket (``"c"``: its responses come back to this worker)."""
    peer = sub.peer
    if len(peer) == 4 and peer[2] in STREAMS:
        return peer
    if sub.routes:
        try:
            u = _codec.parse_uri(_codec.parse_name_addr(sub.routes[0]).uri)
        except SipParseError:
            u = None
        host = u.host.strip("[]") if u is not None and u.host is not None else ""
        if u is not None and is_ip_address(host):
            return (host, u.port or 5060, "c")
    return (peer[0], peer[1], "c")


def _is_sip_uri(text: str) -> bool:
    """A remote target we can send NOTIFYs to (not ``*``, not a tel: or http: URI)."""
    try:
        u = _codec.parse_uri(text)
    except SipParseError:
        return False
    return u.scheme in ("sip", "sips") and bool(u.host)


def _record_routes(msg: Any) -> list[str]:
    """The route set of a dialog we are the UAS of: Record-Route as received (RFC 3261
    12.1.1); the codec splits the comma lists."""
    return [v.strip() for v in msg.get_all("Record-Route") if v.strip()]


def _event(value: str | None) -> tuple[str | None, str | None]:
    """(package, id) of an Event header value."""
    if value is None:
        return None, None
    name, _, params = value.partition(";")
    event_id = None
    for p in params.split(";"):
        k, _, v = p.partition("=")
        if k.strip().lower() == "id":
            event_id = v.strip()
    return name.strip().lower() or None, event_id
