"""simplefast.sip.rfc3263: the RFC 3263 section 4 procedure against an
in-memory zone, RFC 2782 ordering with seeded randomness, and the cache on a
fake clock."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import pytest

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
)
from simplefast.sip.rfc3263 import (
    DnsCache,
    Resolution,
    Target,
    UriParts,
    feed_from_cache,
    numeric_host,
    order_srv,
)

Zone = dict[tuple[str, int], Sequence[Record] | None]  # None: the query fails (timeout, SERVFAIL)


def naptr(owner: str, order: int, pref: int, service: str, repl: str, flags: str = "s") -> NAPTRRecord:
    return NAPTRRecord(owner, 300, order, pref, flags, service, "", repl)


def srv(owner: str, prio: int, weight: int, port: int, target: str) -> SRVRecord:
    return SRVRecord(owner, 300, prio, weight, port, target)


def a(owner: str, *addrs: str) -> list[Record]:
    return [ARecord(owner, 300, x) for x in addrs]


def aaaa(owner: str, *addrs: str) -> list[Record]:
    return [AAAARecord(owner, 300, x) for x in addrs]


def run(res: Resolution, zone: Zone) -> list[list[tuple[str, int]]]:
    """Answers every question from ``zone`` (absent = NXDOMAIN); returns the batches asked."""
    batches = []
    while not res.done:
        batch = res.next_queries()
        assert batch, "a resolution that is not done must ask something"
        batches.append(batch)
        for name, qtype in batch:
            res.feed(name, qtype, zone.get((name, qtype), ()))
    assert res.next_queries() == []
    return batches


# RFC 3263 section 4.1 and 4.2 examples (example.com)
RFC_ZONE: Zone = {
    ("example.com", NAPTR): [
        naptr("example.com", 50, 50, "SIPS+D2T", "_sips._tcp.example.com"),
        naptr("example.com", 90, 50, "SIP+D2T", "_sip._tcp.example.com"),
        naptr("example.com", 100, 50, "SIP+D2U", "_sip._udp.example.com"),
    ],
    ("_sips._tcp.example.com", SRV): [srv("_sips._tcp.example.com", 0, 0, 5061, "tls.example.com")],
    ("_sip._tcp.example.com", SRV): [srv("_sip._tcp.example.com", 0, 0, 5060, "server1.example.com")],
    ("_sip._udp.example.com", SRV): [
        srv("_sip._udp.example.com", 0, 1, 5060, "server1.example.com"),
        srv("_sip._udp.example.com", 0, 2, 5060, "server2.example.com"),
    ],
    ("tls.example.com", A): a("tls.example.com", "192.0.2.50"),
    ("server1.example.com", A): a("server1.example.com", "192.0.2.1"),
    ("server1.example.com", AAAA): aaaa("server1.example.com", "2001:db8::1"),
    ("server2.example.com", A): a("server2.example.com", "192.0.2.2"),
}


# ---------------------------------------------------------------- no DNS


@pytest.mark.parametrize(
    ("parts", "target"),
    [
        (UriParts("sip", "192.0.2.1"), Target("udp", "192.0.2.1", 5060)),
        (UriParts("sip", "192.0.2.1", 5070), Target("udp", "192.0.2.1", 5070)),
        (UriParts("sip", "192.0.2.1", None, "TCP"), Target("tcp", "192.0.2.1", 5060)),
        (UriParts("sip", "192.0.2.1", None, "tls"), Target("tls", "192.0.2.1", 5061)),
        (UriParts("sips", "[2001:DB8::1]"), Target("tls", "2001:db8::1", 5061)),
        (UriParts("sips", "[2001:db8::1]", 6000, "tcp"), Target("tls", "2001:db8::1", 6000)),
        (UriParts("sip", "example.com", None, None, "192.0.2.9"), Target("udp", "192.0.2.9", 5060)),
    ],
)
def test_numeric_target_needs_no_dns(parts: UriParts, target: Target) -> None:
    res = Resolution(parts)
    assert res.done and res.targets == [target] and res.next_queries() == []


@pytest.mark.parametrize(
    ("parts", "supported"),
    [
        (UriParts("sip", "example.com", None, "sctp"), {"udp", "tcp", "tls"}),
        (UriParts("sips", "example.com", None, "udp"), {"udp", "tcp", "tls"}),
        (UriParts("sip", "example.com", None, "tcp"), {"udp"}),
        (UriParts("sips", "example.com"), {"udp", "tcp"}),
        (UriParts("tel", "example.com"), {"udp"}),
    ],
)
def test_impossible_requests_end_at_once(parts: UriParts, supported: set[str]) -> None:
    res = Resolution(parts, supported=supported)
    assert res.done and res.targets == [] and res.reason and res.next_queries() == []


def test_from_uri() -> None:
    uri = SipURI(
        "sips", "bob", None, "Example.COM", None, {"transport": "tcp", "maddr": "h.example"}, (), None
    )
    assert UriParts.from_uri(uri) == UriParts("sips", "Example.COM", None, "tcp", "h.example")
    with pytest.raises(ValueError):
        UriParts.from_uri(SipURI("tel", None, None, None, None, {}, (), "+1234"))


def test_numeric_host() -> None:
    assert numeric_host("[::1]") == "::1" and numeric_host("10.0.0.1") == "10.0.0.1"
    assert numeric_host("example.com") is None and numeric_host("[example.com]") is None


# ---------------------------------------------------------------- the steps


def test_explicit_port_asks_only_addresses() -> None:
    res = Resolution(UriParts("sip", "Server1.Example.COM.", 5080))
    batches = run(res, RFC_ZONE)
    assert batches == [[("server1.example.com", A), ("server1.example.com", AAAA)]]
    assert res.targets == [Target("udp", "192.0.2.1", 5080), Target("udp", "2001:db8::1", 5080)]


def test_explicit_port_sips_is_tls_and_address_types() -> None:
    res = Resolution(UriParts("sips", "server1.example.com", 5081), address_types=(AAAA,))
    run(res, RFC_ZONE)
    assert res.targets == [Target("tls", "2001:db8::1", 5081)]


def test_rfc3263_naptr_example_all_transports() -> None:
    res = Resolution(UriParts("sip", "example.com"), rng=random.Random(1))
    batches = run(res, RFC_ZONE)
    assert batches[0] == [("example.com", NAPTR)]
    # the SRV of every NAPTR at once, in NAPTR order
    assert batches[1] == [("_sips._tcp.example.com", SRV), ("_sip._tcp.example.com", SRV),
                          ("_sip._udp.example.com", SRV)]  # fmt: skip
    hosts = ("tls.example.com", "server1.example.com", "server2.example.com")
    assert set(batches[2]) == {(h, t) for h in hosts for t in (A, AAAA)}
    assert res.targets[:3] == [Target("tls", "192.0.2.50", 5061), Target("tcp", "192.0.2.1", 5060),
                               Target("tcp", "2001:db8::1", 5060)]  # fmt: skip
    assert set(res.targets[3:]) == {Target("udp", "192.0.2.1", 5060), Target("udp", "2001:db8::1", 5060),
                                    Target("udp", "192.0.2.2", 5060)}  # fmt: skip
    assert not res.failed


def test_naptr_filtered_by_supported_transports() -> None:
    res = Resolution(UriParts("sip", "example.com"), supported={"udp"}, rng=random.Random(1))
    batches = run(res, RFC_ZONE)
    assert batches[1] == [("_sip._udp.example.com", SRV)]
    assert {t.transport for t in res.targets} == {"udp"}


def test_sips_uses_only_sips_naptr() -> None:
    res = Resolution(UriParts("sips", "example.com"))
    batches = run(res, RFC_ZONE)
    assert batches[1] == [("_sips._tcp.example.com", SRV)]
    assert res.targets == [Target("tls", "192.0.2.50", 5061)]


def test_naptr_order_preference_flags_and_services() -> None:
    zone: Zone = {
        ("d.example", NAPTR): [
            naptr("d.example", 20, 10, "SIP+D2U", "_sip._udp.d.example"),
            naptr("d.example", 10, 20, "sip+d2t", "_sip._tcp.d.example"),
            naptr("d.example", 10, 10, "SIP+D2S", "_sip._sctp.d.example"),  # sctp: not ours
            naptr("d.example", 5, 10, "SIP+D2T", "other.d.example", flags="a"),  # not an SRV pointer
            naptr("d.example", 5, 10, "E2U+sip", "x.d.example"),  # not SIP
            naptr("d.example", 30, 10, "SIP+D2T", "_sip._tcp.d.example"),  # same replacement again
        ],
        ("_sip._tcp.d.example", SRV): [srv("_sip._tcp.d.example", 0, 0, 5070, "h.d.example")],
        ("_sip._udp.d.example", SRV): [srv("_sip._udp.d.example", 0, 0, 5071, "h.d.example")],
        ("h.d.example", A): a("h.d.example", "192.0.2.3"),
    }
    res = Resolution(UriParts("sip", "d.example"))
    batches = run(res, zone)
    assert batches[1] == [("_sip._tcp.d.example", SRV), ("_sip._udp.d.example", SRV)]
    assert batches[2] == [("h.d.example", A), ("h.d.example", AAAA)]  # one host, asked once
    assert res.targets == [Target("tcp", "192.0.2.3", 5070), Target("udp", "192.0.2.3", 5071)]


def test_no_naptr_srv_for_each_supported_transport() -> None:
    zone: Zone = {
        ("_sip._tcp.s.example", SRV): [srv("_sip._tcp.s.example", 0, 0, 5060, "h.s.example")],
        ("h.s.example", A): a("h.s.example", "192.0.2.4"),
    }
    res = Resolution(UriParts("sip", "s.example"), supported={"tcp", "udp"})
    batches = run(res, zone)
    assert batches[:2] == [
        [("s.example", NAPTR)],
        [("_sip._udp.s.example", SRV), ("_sip._tcp.s.example", SRV)],
    ]
    assert res.targets == [Target("tcp", "192.0.2.4", 5060)]


def test_no_naptr_no_srv_falls_back_to_addresses() -> None:
    zone: Zone = {
        ("p.example", A): a("p.example", "192.0.2.5"),
        ("p.example", AAAA): aaaa("p.example", "2001:db8::5"),
    }
    res = Resolution(UriParts("sip", "p.example"))
    batches = run(res, zone)
    assert len(batches[1]) == 3 and batches[2] == [("p.example", A), ("p.example", AAAA)]
    assert res.targets == [Target("udp", "192.0.2.5", 5060), Target("udp", "2001:db8::5", 5060)]
    res = Resolution(UriParts("sips", "p.example"))
    batches = run(res, zone)
    assert batches[1] == [("_sips._tcp.p.example", SRV)]
    assert res.targets[0] == Target("tls", "192.0.2.5", 5061)
    res = Resolution(UriParts("sip", "p.example"), supported={"tcp"})  # UDP not offered: first supported
    run(res, zone)
    assert res.targets[0] == Target("tcp", "192.0.2.5", 5060)


def test_transport_param_without_port_asks_that_srv() -> None:
    res = Resolution(UriParts("sip", "example.com", None, "tcp"))
    batches = run(res, RFC_ZONE)
    assert batches[0] == [("_sip._tcp.example.com", SRV)]
    assert res.targets == [Target("tcp", "192.0.2.1", 5060), Target("tcp", "2001:db8::1", 5060)]
    res = Resolution(UriParts("sips", "p.example", None, "tcp"))
    batches = run(res, {("p.example", A): a("p.example", "192.0.2.5")})
    assert batches[0] == [("_sips._tcp.p.example", SRV)]
    assert res.targets == [Target("tls", "192.0.2.5", 5061)]


def test_maddr_is_the_target() -> None:
    res = Resolution(UriParts("sip", "elsewhere.example", None, None, "example.com"), supported={"tls"})
    batches = run(res, RFC_ZONE)
    assert batches[0] == [("example.com", NAPTR)]
    assert res.targets == [Target("tls", "192.0.2.50", 5061)]


def test_srv_dot_target_means_not_offered() -> None:
    zone: Zone = {
        ("_sip._udp.n.example", SRV): [srv("_sip._udp.n.example", 0, 0, 0, ".")],
        ("n.example", A): a("n.example", "192.0.2.6"),
    }
    res = Resolution(UriParts("sip", "n.example"), supported={"udp"})
    run(res, zone)
    assert res.targets == [] and "not offered" in res.reason


def test_naptr_pointing_to_missing_srv_uses_naptr_transport() -> None:
    zone: Zone = {
        ("m.example", NAPTR): [naptr("m.example", 1, 1, "SIP+D2T", "_sip._tcp.m.example")],
        ("m.example", A): a("m.example", "192.0.2.7"),
    }
    res = Resolution(UriParts("sip", "m.example"))
    run(res, zone)
    assert res.targets == [Target("tcp", "192.0.2.7", 5060)]


def test_failures_continue_and_are_flagged() -> None:
    zone: Zone = {
        ("f.example", NAPTR): None,
        ("_sip._udp.f.example", SRV): None,
        ("f.example", A): a("f.example", "192.0.2.8"),
    }
    res = Resolution(UriParts("sip", "f.example"), supported={"udp"})
    run(res, zone)
    assert res.failed and res.targets == [Target("udp", "192.0.2.8", 5060)]
    res = Resolution(UriParts("sip", "f.example", 5060))
    res.next_queries()
    res.feed("f.example", A, Answer("f.example", A, "timeout"))
    res.feed("f.example", AAAA, Answer("f.example", AAAA, "nxdomain"))
    assert res.done and res.failed and res.targets == []


def test_feed_ignores_unasked_and_wrong_types() -> None:
    res = Resolution(UriParts("sip", "h.example", 5060), address_types=(A,))
    assert res.next_queries() == [("h.example", A)]
    res.feed("x.example", A, a("x.example", "192.0.2.1"))  # not asked
    assert not res.done
    res.feed("H.EXAMPLE.", A, [*aaaa("h.example", "2001:db8::9"), *a("h.example", "192.0.2.9")])
    assert res.done and res.targets == [Target("udp", "192.0.2.9", 5060)]
    res.feed("h.example", A, a("h.example", "192.0.2.10"))  # answered already
    assert res.targets == [Target("udp", "192.0.2.9", 5060)]


def test_bounds() -> None:
    many = [srv("_sip._udp.b.example", 0, 0, 5060, f"h{i}.b.example") for i in range(40)]
    zone: Zone = {("_sip._udp.b.example", SRV): many}
    zone.update(
        {(f"h{i}.b.example", A): a(f"h{i}.b.example", f"192.0.2.{i}", f"198.51.100.{i}") for i in range(40)}
    )
    res = Resolution(UriParts("sip", "b.example", None, "udp"), max_hosts=5, max_targets=7)
    batches = run(res, zone)
    assert len(batches[1]) == 10 and len(res.targets) == 7
    res = Resolution(UriParts("sip", "b.example", None, "udp"), max_queries=4)
    batches = run(res, zone)
    assert sum(len(b) for b in batches) == 4 and res.failed and "DNS questions" in res.reason
    assert len(res.targets) == 4  # two hosts (random order: all weights 0) with A and AAAA asked


# ---------------------------------------------------------------- RFC 2782


class ScriptedRandom(random.Random):
    def __init__(self, draws: list[int]) -> None:
        super().__init__(0)
        self.draws = draws
        self.asked: list[int] = []

    def randrange(self, stop: int) -> int:  # type: ignore[override]
        self.asked.append(stop)
        return self.draws.pop(0)


def test_order_srv_algorithm() -> None:
    recs = [srv("s", 1, 10, 1, "a"), srv("s", 0, 0, 2, "z"), srv("s", 0, 20, 3, "b"),
            srv("s", 0, 30, 4, "c"), srv("s", 2, 0, 5, "d"), srv("s", 2, 0, 6, "e")]  # fmt: skip
    rng = ScriptedRandom([20, 19, 0, 0, 1, 0])
    # priority 0: z(0) b(20) c(30), sum 50, draw 20 -> running 0, 20, 50: first above 20 is c;
    # then z(0) b(20), sum 20, draw 19 -> b; then z alone (sum 0: uniform) -> z;
    # priority 1: a; priority 2: d(0) e(0), sum 0, uniform: index 1 -> e, then d
    assert [r.target for r in order_srv(recs, rng)] == ["c", "b", "z", "a", "e", "d"]
    assert rng.asked == [50, 20, 1, 10, 2, 1]


def test_order_srv_weights_are_proportional() -> None:
    # RFC 3263 section 4.2 example: server1 weight 1, server2 weight 2, same priority
    recs = [srv("s", 0, 1, 5060, "server1"), srv("s", 0, 2, 5060, "server2"), srv("s", 1, 5, 5060, "backup")]
    rng = random.Random(20020601)
    firsts = Counter(order_srv(recs, rng)[0].target for _ in range(3000))
    assert firsts["backup"] == 0
    assert 0.28 < firsts["server1"] / 3000 < 0.39 and 0.61 < firsts["server2"] / 3000 < 0.72
    assert all(order_srv(recs, rng)[2].target == "backup" for _ in range(50))


def test_seeded_resolutions_are_reproducible() -> None:
    def once(seed: int) -> list[Target]:
        res = Resolution(UriParts("sip", "example.com"), supported={"udp"}, rng=random.Random(seed))
        run(res, RFC_ZONE)
        return res.targets

    assert once(7) == once(7)
    orders = {tuple(t.host for t in once(seed)) for seed in range(40)}
    assert len(orders) == 2  # server1 first, or server2 first


# ---------------------------------------------------------------- cache


def ok(name: str, qtype: int, ttl: int) -> Answer:
    return Answer(name, qtype, "ok", tuple(a(name, "192.0.2.1")), ttl, name)


def test_cache_expiry_and_max_ttl() -> None:
    cache = DnsCache(max_ttl=100)
    cache.put(ok("h.example", A, 30), now=1000.0)
    cache.put(ok("l.example", A, 86400), now=1000.0)
    assert cache.get("H.example.", A, 1029.9) is not None
    assert cache.get("h.example", AAAA, 1000.0) is None
    assert cache.get("h.example", A, 1030.0) is None and len(cache) == 1
    assert cache.get("l.example", A, 1099.0) is not None and cache.get("l.example", A, 1100.0) is None
    cache.put(ok("z.example", A, 0), now=0.0)  # TTL 0: use once, never cache
    assert len(cache) == 0


def test_negative_and_failure_caching() -> None:
    cache = DnsCache(negative_ttl=30, failure_ttl=5)
    cache.put(Answer("nx.example", A, "nxdomain", ttl=3600), now=0.0)  # SOA says an hour: capped
    cache.put(Answer("nd.example", A, "nodata", ttl=10), now=0.0)
    cache.put(Answer("ns.example", A, "nodata"), now=0.0)  # no SOA: the cap
    cache.put(Answer("to.example", A, "timeout"), now=0.0)
    got = cache.get("nx.example", A, 29.0)
    assert got is not None and got.status == "nxdomain"
    assert cache.get("nx.example", A, 30.0) is None
    assert cache.get("nd.example", A, 9.0) is not None and cache.get("nd.example", A, 10.0) is None
    assert cache.get("ns.example", A, 29.0) is not None
    assert cache.get("to.example", A, 4.0) is not None and cache.get("to.example", A, 5.0) is None
    assert DnsCache(failure_ttl=0).lifetime(Answer("x", A, "error")) == 0


def test_cache_is_bounded_lru() -> None:
    cache = DnsCache(max_entries=3)
    for i in range(3):
        cache.put(ok(f"h{i}.example", A, 60), now=0.0)
    assert cache.get("h0.example", A, 1.0) is not None  # h0 now most recent
    cache.put(ok("h3.example", A, 60), now=1.0)
    assert len(cache) == 3 and cache.get("h1.example", A, 1.0) is None
    assert cache.get("h0.example", A, 1.0) is not None
    assert cache.purge(now=100.0) == 3 and len(cache) == 0


def test_feed_from_cache_completes_a_resolution() -> None:
    cache = DnsCache()
    res = Resolution(UriParts("sip", "example.com"), supported={"udp"}, rng=random.Random(3))
    asked = feed_from_cache(res, cache, now=0.0)
    assert asked == [("example.com", NAPTR)]
    # answer from the zone into the cache, as the transport driver does
    while not res.done:
        for name, qtype in asked:
            recs = tuple(RFC_ZONE.get((name, qtype)) or ())
            cache.put(
                Answer(name, qtype, "ok" if recs else "nxdomain", recs, 300 if recs else None, name), 0.0
            )
            res.feed(name, qtype, cache.get(name, qtype, 0.0))
        asked = feed_from_cache(res, cache, now=0.0)
    first = res.targets
    again = Resolution(UriParts("sip", "example.com"), supported={"udp"}, rng=random.Random(3))
    assert feed_from_cache(again, cache, now=10.0) == [] and again.done and again.targets == first
    later = Resolution(UriParts("sip", "example.com"), supported={"udp"})
    assert feed_from_cache(later, cache, now=400.0) == [("example.com", NAPTR)]  # expired
