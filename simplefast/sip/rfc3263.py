"""RFC 3263 section 4: from a SIP or SIPS URI to an ordered list of
(transport, IP address, port) to try, sans-IO; and a DNS answer cache.

Theory of operation
-------------------
A :class:`Resolution` never touches the network or a clock. It asks
questions and is fed answers; whoever drives it (``transport/dns.py``, the
tests) sends the questions, possibly all at once::

    res = Resolution(UriParts("sip", "example.com"), supported={"udp", "tcp"})
    while not res.done:
        for name, qtype in res.next_queries():       # each question once
            ...                                      # ask DNS (or the cache)
        res.feed(name, qtype, answer)                # an Answer, records, or None = failed
    res.targets                                      # [Target("udp", "192.0.2.1", 5060), ...]

TARGET is the ``maddr`` parameter if present, else the host (section 4).
The steps, each waiting for every answer of the one before:

    numeric TARGET                     -> done: port from the URI or the transport's default
    explicit port                      -> ADDRESS of TARGET with that port     (4.1, 4.2)
    transport param, no port           -> SRV _sip(s)._proto.TARGET            (4.2)
    neither                            -> NAPTR TARGET                         (4.1)
    NAPTR: usable records ("s" flag, a service we accept and support),
           by order then preference    -> SRV of each replacement, same order
           none                        -> SRV for every supported transport    (4.1)
    SRV:   records of every query, in query order, each RRset sorted by priority
           and weighted choice (RFC 2782) -> ADDRESS of each target with its port
           no record at all            -> ADDRESS of TARGET, default port      (4.2)
    ADDRESS: A and AAAA (``address_types``, in that order) of every host

Transports are "udp", "tcp" and "tls"; a SIPS URI only ever gives "tls"
(SIPS+D2T, ``_sips._tcp``; ``transport=tcp`` in a SIPS URI is TLS). For a SIP
URI the NAPTR services SIP+D2U, SIP+D2T and SIPS+D2T are accepted. When
neither NAPTR nor SRV tell, a SIP URI goes over UDP and a SIPS URI over TLS
(the first supported transport if that one is not). An SRV RRset that is
only the target "." means the service is not offered there (RFC 2782):
it yields nothing, and it counts as "SRV records found" so no fallback.

A failed query (timeout, SERVFAIL) is treated like an empty answer so the
procedure goes on with its next step; ``failed`` tells the caller that an
empty result may be transient (503 rather than 404). Bounds: at most
``max_queries`` questions, ``max_hosts`` SRV targets, ``max_targets`` results.

:class:`DnsCache` keeps answers keyed by (name, qtype) with the time passed
in: positive answers for their TTL capped at ``max_ttl``, NXDOMAIN/NODATA
for the RFC 2308 SOA value capped at ``negative_ttl``, failures for
``failure_ttl``; least recently used entries go first when full.
"""

from __future__ import annotations

import ipaddress
import random
from collections import OrderedDict
from collections.abc import Iterable, Sequence, Set
from itertools import groupby
from typing import Final, NamedTuple

from simplefast._sip_types import SipURI
from simplefast.sip.dnswire import (
    AAAA,
    NAPTR,
    SRV,
    A,
    AAAARecord,
    Answer,
    ARecord,
    NAPTRRecord,
    Record,
    SRVRecord,
    normalize_name,
)

TRANSPORTS: Final = ("udp", "tcp", "tls")
DEFAULT_PORTS: Final = {"udp": 5060, "tcp": 5060, "tls": 5061}
# RFC 3263 section 4.1 / IANA "SIP NAPTR Resource Record Services Field"
_SIP_SERVICES: Final = {"sip+d2u": "udp", "sip+d2t": "tcp", "sips+d2t": "tls"}
_SIPS_SERVICES: Final = {"sips+d2t": "tls"}
_SRV_PREFIX: Final = {"udp": "_sip._udp.", "tcp": "_sip._tcp.", "tls": "_sips._tcp."}

Query = tuple[str, int]


class Target(NamedTuple):
    """One next hop: a transport, a numeric IP address (no brackets), a port."""

    transport: str
    host: str
    port: int


class UriParts(NamedTuple):
    """What RFC 3263 needs of a URI. ``transport`` is the URI parameter as
    written (any case), ``host`` may keep the brackets of an IPv6 reference."""

    scheme: str
    host: str
    port: int | None = None
    transport: str | None = None
    maddr: str | None = None

    @classmethod
    def from_uri(cls, uri: SipURI) -> UriParts:
        """From a parsed ``sip:``/``sips:`` URI (``parse_uri``).

        Raises:
            ValueError: another scheme, or no host.
        """
        if uri.scheme not in ("sip", "sips") or not uri.host:
            raise ValueError(f"not a SIP URI with a host: scheme {uri.scheme!r}")
        return cls(uri.scheme, uri.host, uri.port, uri.params.get("transport"), uri.params.get("maddr"))


def numeric_host(host: str) -> str | None:
    """The canonical text of an IPv4 or IPv6 literal (brackets allowed), else None."""
    h = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return str(ipaddress.ip_address(h))
    except ValueError:
        return None


def order_srv(records: Iterable[SRVRecord], rng: random.Random) -> list[SRVRecord]:
    """RFC 2782 ordering: ascending priority; within a priority, repeatedly pick
    one of the records left with a chance proportional to its weight.

    RFC 2782's usage rules draw from [0, sum] inclusive with the weight-0
    records first, which gives them a draw of 0 but skews small weights
    (weights 1 and 2 would come out 50/50, not 1:2 as the Weight field's
    definition asks). We draw from [0, sum) so the split is exact; weight-0
    records follow the others of their priority, in random order.
    """
    out: list[SRVRecord] = []
    for _, group in groupby(sorted(records, key=lambda r: r.priority), key=lambda r: r.priority):
        pool = list(group)
        while pool:
            total = sum(r.weight for r in pool)
            if total == 0:
                out.append(pool.pop(rng.randrange(len(pool))))
                continue
            draw = rng.randrange(total)
            running = 0
            for i, rec in enumerate(pool):
                running += rec.weight
                if running > draw:
                    out.append(pool.pop(i))
                    break
    return out


def _transport_of(param: str | None, scheme: str) -> str | None:
    """The transport a URI asks for (section 4.1), "" when it names one we do
    not know (sctp, ws, ...), None when it names none."""
    if param is None:
        return None
    t = param.lower()
    if scheme == "sips":
        return "tls" if t in ("tcp", "tls") else ""
    return t if t in TRANSPORTS else ""


_NAPTR_STEP, _SRV_STEP, _ADDR_STEP, _DONE = range(4)


class Resolution:
    """One RFC 3263 resolution; see the module docstring.

    Args:
        parts: the URI's scheme, host, port, transport and maddr.
        supported: the transports we can send on (our listeners).
        rng: the random source of the RFC 2782 weighted choice.
        address_types: which address records to ask for, in result order.
        max_queries: questions asked at most; further ones count as failed.
        max_hosts: SRV targets resolved at most.
        max_targets: results kept at most.
    """

    def __init__(
        self,
        parts: UriParts,
        *,
        supported: Set[str] = frozenset(TRANSPORTS),
        rng: random.Random | None = None,
        address_types: Sequence[int] = (A, AAAA),
        max_queries: int = 32,
        max_hosts: int = 8,
        max_targets: int = 16,
    ) -> None:
        self.parts = parts
        self.scheme = parts.scheme.lower()
        self.supported = frozenset(t for t in supported if t in TRANSPORTS)
        if self.scheme == "sips":
            self.supported &= {"tls"}
        self.rng = rng if rng is not None else random.Random()
        self.address_types = tuple(address_types)
        self.max_queries, self.max_hosts, self.max_targets = max_queries, max_hosts, max_targets
        self.targets: list[Target] = []
        self.done = False
        self.failed = False  # some question failed: an empty result may be transient
        self.reason = ""  # why the result is empty, when it is
        self.queries_asked = 0
        self._outbox: list[Query] = []
        self._pending: set[Query] = set()
        self._answers: dict[Query, tuple[Record, ...]] = {}
        self._srv_plan: list[tuple[str, str]] = []  # (transport, SRV name)
        self._hosts: list[tuple[str, str, int]] = []  # (transport, host name, port)
        self._fallback_transport = ""
        self._target = ""
        self._step = _DONE
        self._start()

    # ------------------------------------------------------------ interface

    def next_queries(self) -> list[Query]:
        """The questions to ask now, each returned once: ``(name, qtype)``."""
        out, self._outbox = self._outbox, []
        return out

    def feed(self, name: str, qtype: int, result: Answer | Sequence[Record] | None) -> None:
        """The answer to a question from :meth:`next_queries`.

        Args:
            result: an :class:`Answer` (a failed one counts as None), the
                records themselves (empty for NXDOMAIN/NODATA), or None when
                the query failed. Records of another type are ignored.
        """
        key = (normalize_name(name), qtype)
        if key not in self._pending:
            return  # not asked, or answered already
        self._pending.discard(key)
        if isinstance(result, Answer):
            records: tuple[Record, ...] | None = result.records if result.usable else None
        else:
            records = None if result is None else tuple(result)
        if records is None:
            self.failed = True
            records = ()
        self._answers[key] = records
        if not self._pending:
            self._advance()

    # ------------------------------------------------------------ steps

    def _ask(self, name: str, qtype: int) -> None:
        key = (normalize_name(name), qtype)
        if key in self._pending or key in self._answers:
            return
        if self.queries_asked >= self.max_queries:
            self.failed = True
            self.reason = f"more than {self.max_queries} DNS questions"
            self._answers[key] = ()
            return
        self.queries_asked += 1
        self._pending.add(key)
        self._outbox.append(key)

    def _finish(self, reason: str = "") -> None:
        self._step = _DONE
        self.done = True
        if not self.targets and not self.reason:
            self.reason = reason or "no address found"

    def _start(self) -> None:
        p = self.parts
        target = p.maddr or p.host
        asked = _transport_of(p.transport, self.scheme)
        # section 4.1: no transport and no NAPTR/SRV -> UDP for sip, TLS (over TCP) for sips
        default = "tls" if self.scheme == "sips" else "udp"
        if default not in self.supported:
            default = next((t for t in TRANSPORTS if t in self.supported), "")
        ip = numeric_host(target)
        if self.scheme not in ("sip", "sips"):
            self._finish(f"scheme {p.scheme!r} is not sip or sips")
        elif asked == "":
            self._finish(f"transport {p.transport!r} is not usable with {self.scheme}")
        elif asked is not None and asked not in self.supported:
            self._finish(f"transport {asked} is not offered here")
        elif not default:
            self._finish("no usable transport")
        elif ip is not None:  # sections 4.1 and 4.2: no DNS at all
            t = asked or default
            self.targets.append(Target(t, ip, p.port or DEFAULT_PORTS[t]))
            self._finish()
        else:
            self._target = target = normalize_name(target)
            self._fallback_transport = asked or default
            if p.port is not None:  # section 4.2: explicit port -> A/AAAA only
                self._hosts = [(asked or default, target, p.port)]
                self._lookup_hosts()
            elif asked is not None:  # section 4.2: SRV for that transport only
                self._srv_plan = [(asked, _SRV_PREFIX[asked] + target)]
                self._lookup_srv()
            else:
                self._step = _NAPTR_STEP
                self._ask(target, NAPTR)
                self._advance_if_idle()

    def _advance_if_idle(self) -> None:
        if not self._pending and not self.done:
            self._advance()

    def _advance(self) -> None:
        if self._step == _NAPTR_STEP:
            self._after_naptr()
        elif self._step == _SRV_STEP:
            self._after_srv()
        elif self._step == _ADDR_STEP:
            self._after_addresses()

    def _after_naptr(self) -> None:
        services = _SIPS_SERVICES if self.scheme == "sips" else _SIP_SERVICES
        usable = []
        for rec in self._answers.get((self._target, NAPTR), ()):
            if not isinstance(rec, NAPTRRecord) or rec.flags.lower() != "s" or rec.replacement == ".":
                continue
            transport = services.get(rec.services.lower())
            if transport is not None and transport in self.supported:
                usable.append(rec)
        usable.sort(key=lambda r: (r.order, r.preference))
        seen: set[str] = set()
        for rec in usable:
            if rec.replacement not in seen:
                seen.add(rec.replacement)
                self._srv_plan.append((services[rec.services.lower()], rec.replacement))
        if self._srv_plan:
            # section 4.2: SRV processing failing, use the transport NAPTR chose first
            self._fallback_transport = self._srv_plan[0][0]
        else:  # section 4.1: no NAPTR -> SRV for every transport we support
            self._srv_plan = [(t, _SRV_PREFIX[t] + self._target) for t in TRANSPORTS if t in self.supported]
        self._lookup_srv()

    def _lookup_srv(self) -> None:
        self._step = _SRV_STEP
        for _, name in self._srv_plan:
            self._ask(name, SRV)
        self._advance_if_idle()

    def _after_srv(self) -> None:
        found = False
        for transport, name in self._srv_plan:
            records = [
                r for r in self._answers.get((normalize_name(name), SRV), ()) if isinstance(r, SRVRecord)
            ]
            found = found or bool(records)
            for rec in order_srv(records, self.rng):
                if rec.target != "." and len(self._hosts) < self.max_hosts:
                    self._hosts.append((transport, rec.target, rec.port))
        if not found:  # section 4.2: no SRV records -> A/AAAA of TARGET, default port
            t = self._fallback_transport
            self._hosts = [(t, self._target, DEFAULT_PORTS[t])]
        elif not self._hosts:
            self.reason = "SRV says the service is not offered (target '.')"
        self._lookup_hosts()

    def _lookup_hosts(self) -> None:
        self._step = _ADDR_STEP
        for _, host, _ in self._hosts:
            if numeric_host(host) is None:
                for qtype in self.address_types:
                    self._ask(host, qtype)
        self._advance_if_idle()

    def _after_addresses(self) -> None:
        seen: set[Target] = set()
        for transport, host, port in self._hosts:
            ip = numeric_host(host)
            if ip is not None:
                addresses = [ip]
            else:
                addresses = []
                for qtype in self.address_types:
                    for rec in self._answers.get((normalize_name(host), qtype), ()):
                        if isinstance(rec, ARecord | AAAARecord) and rec.rtype == qtype:
                            addresses.append(rec.address)
            for address in addresses:
                t = Target(transport, address, port)
                if t not in seen and len(self.targets) < self.max_targets:
                    seen.add(t)
                    self.targets.append(t)
        self._finish()


def feed_from_cache(res: Resolution, cache: DnsCache, now: float) -> list[Query]:
    """Answers ``res``'s questions from ``cache`` as far as it can; returns the
    questions that must go to the network (empty when ``res`` is done or waits)."""
    out: list[Query] = []
    while True:
        queries = res.next_queries()
        if not queries:
            return out
        for name, qtype in queries:
            hit = cache.get(name, qtype, now)
            if hit is None:
                out.append((name, qtype))
            else:
                res.feed(name, qtype, hit)


class DnsCache:
    """Answers by (name, qtype), with expiry; time is passed in.

    Args:
        max_entries: entries kept at most (least recently used evicted).
        max_ttl: cap on positive TTLs, seconds.
        negative_ttl: cap on NXDOMAIN/NODATA lifetime, and its value when the
            reply carried no SOA.
        failure_ttl: lifetime of a failed lookup (timeout, SERVFAIL); 0 keeps none.
    """

    def __init__(
        self,
        *,
        max_entries: int = 4096,
        max_ttl: float = 3600.0,
        negative_ttl: float = 30.0,
        failure_ttl: float = 5.0,
    ) -> None:
        self.max_entries = max_entries
        self.max_ttl, self.negative_ttl, self.failure_ttl = max_ttl, negative_ttl, failure_ttl
        self._entries: OrderedDict[Query, tuple[float, Answer]] = OrderedDict()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lifetime(self, answer: Answer) -> float:
        """Seconds ``answer`` stays cached (0: not at all)."""
        if answer.status == "ok":
            return min(float(answer.ttl or 0), self.max_ttl)
        if answer.usable:
            return self.negative_ttl if answer.ttl is None else min(float(answer.ttl), self.negative_ttl)
        return self.failure_ttl

    def put(self, answer: Answer, now: float) -> None:
        life = self.lifetime(answer)
        key = (normalize_name(answer.name), answer.qtype)
        if life <= 0:
            self._entries.pop(key, None)
            return
        self._entries[key] = (now + life, answer)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def get(self, name: str, qtype: int, now: float) -> Answer | None:
        key = (normalize_name(name), qtype)
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        if entry[0] <= now:
            del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[1]

    def purge(self, now: float) -> int:
        """Drops every expired entry; returns how many."""
        dead = [k for k, (expires, _) in self._entries.items() if expires <= now]
        for k in dead:
            del self._entries[k]
        return len(dead)
