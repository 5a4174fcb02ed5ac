"""simplefast.transport.dns against a real DNS server (dnslib) on loopback.

The zone (RFC 3263 style, documentation addresses; nothing is sent to them):

    sip.test             NAPTR 10 "SIPS+D2T" _sips._tcp / 20 "SIP+D2T" _sip._tcp / 30 "SIP+D2U" _sip._udp
    _sips._tcp.sip.test  SRV 0 0 5061 edge      _sip._tcp  SRV 0 0 5060 edge
    _sip._udp.sip.test   SRV 0 10 5060 a1, SRV 1 0 5062 alias
    edge                 A 192.0.2.10, AAAA 2001:db8::10;  a1 A 192.0.2.11
    alias                CNAME a2 (chased by the server); a2 A 192.0.2.12
    lazy.test            CNAME a2.sip.test, not chased: the client asks again
    srv-only.test        no NAPTR; _sip._tcp SRV 0 0 5070 host.srv-only.test (A 192.0.2.20)
    plain.test           A 192.0.2.30 only
    big.test             60 A records: over UDP truncated (TC, dnslib drops the question), whole over TCP
    servfail.test        SERVFAIL;  anything else NXDOMAIN (with an SOA)

Each test runs on asyncio and on uvloop, under a 5-second bound; traffic only
to 127.0.0.1 (and ::1 when the host has it).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvloop
from dnslib import AAAA as DL_AAAA
from dnslib import CNAME as DL_CNAME
from dnslib import NAPTR as DL_NAPTR
from dnslib import QTYPE, RCODE, RR, SOA, DNSRecord
from dnslib import SRV as DL_SRV
from dnslib import A as DL_A
from dnslib.server import DNSHandler, DNSLogger, DNSServer

from simplefast.sip.dnswire import AAAA, SRV, A, ARecord
from simplefast.sip.rfc3263 import DnsCache, Target, UriParts
from simplefast.transport.dns import DnsClient, Resolver, parse_resolv_conf, resolve_sip_uri

pytestmark = pytest.mark.live

T = TypeVar("T")


def _zone() -> dict[tuple[str, int], list[RR]]:
    z: dict[tuple[str, int], list[RR]] = {}

    def add(owner: str, rtype: int, rdata: Any, ttl: int = 300) -> None:
        z.setdefault((owner, rtype), []).append(RR(owner, rtype, ttl=ttl, rdata=rdata))

    for order, service, repl in ((10, b"SIPS+D2T", "_sips._tcp"), (20, b"SIP+D2T", "_sip._tcp"),
                                 (30, b"SIP+D2U", "_sip._udp")):  # fmt: skip
        add("sip.test", QTYPE.NAPTR, DL_NAPTR(order, 50, b"s", service, b"", f"{repl}.sip.test"))
    add("_sips._tcp.sip.test", QTYPE.SRV, DL_SRV(0, 0, 5061, "edge.sip.test"))
    add("_sip._tcp.sip.test", QTYPE.SRV, DL_SRV(0, 0, 5060, "edge.sip.test"))
    add("_sip._udp.sip.test", QTYPE.SRV, DL_SRV(0, 10, 5060, "a1.sip.test"))
    add("_sip._udp.sip.test", QTYPE.SRV, DL_SRV(1, 0, 5062, "alias.sip.test"))
    add("edge.sip.test", QTYPE.A, DL_A("192.0.2.10"))
    add("edge.sip.test", QTYPE.AAAA, DL_AAAA("2001:db8::10"))
    add("a1.sip.test", QTYPE.A, DL_A("192.0.2.11"))
    add("alias.sip.test", QTYPE.CNAME, DL_CNAME("a2.sip.test"), ttl=60)
    add("a2.sip.test", QTYPE.A, DL_A("192.0.2.12"), ttl=120)
    add("lazy.test", QTYPE.CNAME, DL_CNAME("a2.sip.test"))
    add("_sip._tcp.srv-only.test", QTYPE.SRV, DL_SRV(0, 0, 5070, "host.srv-only.test"))
    add("host.srv-only.test", QTYPE.A, DL_A("192.0.2.20"))
    add("plain.test", QTYPE.A, DL_A("192.0.2.30"))
    for i in range(60):
        add("big.test", QTYPE.A, DL_A(f"198.51.100.{i}"))
    return z


class ZoneResolver:
    """A recursive resolver's view of the zone (CNAMEs chased, except lazy.test)."""

    def __init__(self) -> None:
        self.zone = _zone()
        self.names = {name for name, _ in self.zone}
        self.asked: Counter[tuple[str, int, str]] = Counter()
        self.lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = request.q.qtype
        with self.lock:
            self.asked[(qname, qtype, handler.protocol)] += 1
        reply = request.reply()
        if qname == "servfail.test":
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        name = qname
        for _ in range(8):
            if qtype != QTYPE.CNAME and (name, QTYPE.CNAME) in self.zone:
                cname = self.zone[(name, QTYPE.CNAME)][0]
                reply.add_answer(cname)
                if qname == "lazy.test":
                    break
                name = str(cname.rdata.label).rstrip(".")
                continue
            for rr in self.zone.get((name, qtype), []):
                reply.add_answer(rr)
            break
        if not reply.rr:
            if qname not in self.names:
                reply.header.rcode = RCODE.NXDOMAIN
            soa = SOA("ns.test", "hostmaster.test", (1, 3600, 600, 86400, 15))
            reply.add_auth(RR("test", QTYPE.SOA, ttl=30, rdata=soa))
        return reply


class TruncatingHandler(DNSHandler):
    udplen = 512  # dnslib truncates bigger UDP replies (TC set, records and question dropped)


class Nameserver:
    """dnslib on one port, UDP and TCP."""

    def __init__(self, address: str = "127.0.0.1") -> None:
        self.resolver = ZoneResolver()
        logger = DNSLogger(logf=lambda _s: None)
        for _ in range(20):
            udp = DNSServer(self.resolver, address=address, port=0, logger=logger, handler=TruncatingHandler)
            port = udp.server.server_address[1]
            try:
                tcp = DNSServer(self.resolver, address=address, port=port, tcp=True, logger=logger,
                                handler=TruncatingHandler)  # fmt: skip
            except OSError:
                udp.server.server_close()
                continue
            break
        else:
            raise RuntimeError("no port free for both UDP and TCP")
        self.address, self.port, self.servers = address, int(port), (udp, tcp)
        self.threads = [threading.Thread(target=s.server.serve_forever, args=(0.02,), daemon=True)
                        for s in self.servers]  # fmt: skip
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        for s, t in zip(self.servers, self.threads, strict=True):
            s.server.shutdown()
            s.server.server_close()
            t.join(2)


@pytest.fixture(scope="module")
def ns() -> Iterator[Nameserver]:
    server = Nameserver()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, T]], T]:
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def runner(coro: Coroutine[Any, Any, T]) -> T:
        async def bounded() -> T:
            async with asyncio.timeout(5):
                return await coro

        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(bounded())

    return runner


def client_for(*servers: tuple[str, int], timeout: float = 1.0, attempts: int = 1) -> DnsClient:
    return DnsClient(list(servers), timeout=timeout, attempts=attempts)


# ---------------------------------------------------------------- RFC 3263 through the wire


def test_naptr_srv_cname_to_targets(ns: Nameserver, run: Any) -> None:
    async def go() -> list[Target]:
        client = client_for((ns.address, ns.port))
        return await resolve_sip_uri(UriParts("sip", "sip.test"), client, DnsCache())

    assert run(go()) == [
        Target("tls", "192.0.2.10", 5061), Target("tls", "2001:db8::10", 5061),
        Target("tcp", "192.0.2.10", 5060), Target("tcp", "2001:db8::10", 5060),
        Target("udp", "192.0.2.11", 5060), Target("udp", "192.0.2.12", 5062),
    ]  # fmt: skip


def test_sips_and_supported_transports(ns: Nameserver, run: Any) -> None:
    async def go() -> tuple[list[Target], list[Target]]:
        client = client_for((ns.address, ns.port))
        sips = await resolve_sip_uri(UriParts("sips", "sip.test"), client)
        udp = await resolve_sip_uri(UriParts("sip", "sip.test"), client, supported={"udp"})
        return sips, udp

    sips, udp = run(go())
    assert sips == [Target("tls", "192.0.2.10", 5061), Target("tls", "2001:db8::10", 5061)]
    assert udp == [Target("udp", "192.0.2.11", 5060), Target("udp", "192.0.2.12", 5062)]


def test_srv_without_naptr_and_address_fallback(ns: Nameserver, run: Any) -> None:
    async def go() -> list[list[Target]]:
        client = client_for((ns.address, ns.port))
        return [
            await resolve_sip_uri(UriParts("sip", "srv-only.test"), client),
            await resolve_sip_uri(UriParts("sip", "plain.test"), client),
            await resolve_sip_uri(UriParts("sip", "plain.test", 5099, "tcp"), client),
            await resolve_sip_uri(UriParts("sip", "missing.test"), client),
            await resolve_sip_uri(UriParts("sip", "127.0.0.1", None, "tcp"), client),
        ]

    srv_only, plain, port, missing, numeric = run(go())
    assert srv_only == [Target("tcp", "192.0.2.20", 5070)]
    assert plain == [Target("udp", "192.0.2.30", 5060)]
    assert port == [Target("tcp", "192.0.2.30", 5099)]
    assert missing == []
    assert numeric == [Target("tcp", "127.0.0.1", 5060)]


def test_truncated_reply_falls_back_to_tcp(ns: Nameserver, run: Any) -> None:
    async def go() -> tuple[Any, int, list[Target]]:
        client = client_for((ns.address, ns.port))
        ans = await client.query("big.test", A)
        fallbacks = client.tcp_fallbacks
        targets = await resolve_sip_uri(UriParts("sip", "big.test", 5060), client)
        return ans, fallbacks, targets

    ans, fallbacks, targets = run(go())
    assert ans.status == "ok" and fallbacks == 1
    assert {r.address for r in ans.records} == {f"198.51.100.{i}" for i in range(60)}
    assert len(targets) == 16  # Resolution's max_targets
    assert ns.resolver.asked[("big.test", QTYPE.A, "tcp")] >= 2


def test_cname_answers_and_chasing(ns: Nameserver, run: Any) -> None:
    async def go() -> tuple[Any, Any]:
        client = client_for((ns.address, ns.port))
        return await client.query("alias.sip.test", A), await client.query("LAZY.test.", A)

    alias, lazy = run(go())
    assert alias.records == (ARecord("a2.sip.test", 120, "192.0.2.12"),) and alias.ttl == 60
    assert alias.canonical == "a2.sip.test"
    assert lazy.status == "ok" and lazy.name == "lazy.test"
    assert [r.address for r in lazy.records] == ["192.0.2.12"]  # type: ignore[union-attr]


def test_negative_answers(ns: Nameserver, run: Any) -> None:
    async def go() -> list[Any]:
        client = client_for((ns.address, ns.port))
        return [await client.query("missing.test", A), await client.query("plain.test", AAAA),
                await client.query("servfail.test", A), await client.query("bad name.test", A)]  # fmt: skip

    nx, nodata, fail, bad = run(go())
    assert (nx.status, nx.ttl) == ("nxdomain", 15)
    assert (nodata.status, nodata.ttl) == ("nodata", 15)
    assert fail.status == "error" and not fail.usable
    assert bad.status == "error"


# ---------------------------------------------------------------- failures of the path


@pytest.fixture
def silent() -> Iterator[tuple[str, int]]:
    """A nameserver that never answers: a bound UDP socket nobody reads."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        yield ("127.0.0.1", s.getsockname()[1])


def test_timeout_then_next_server(ns: Nameserver, silent: tuple[str, int], run: Any) -> None:
    async def go() -> tuple[list[Target], DnsClient, float]:
        client = client_for(silent, (ns.address, ns.port), timeout=0.3)
        t0 = time.monotonic()
        targets = await resolve_sip_uri(UriParts("sip", "plain.test", 5060), client)
        return targets, client, time.monotonic() - t0

    targets, client, took = run(go())
    assert targets == [Target("udp", "192.0.2.30", 5060)]
    assert client.timeouts == 2 and 0.25 < took < 2.0  # A and AAAA, concurrently, each waited once


def test_only_a_silent_server_times_out(silent: tuple[str, int], run: Any) -> None:
    async def go() -> tuple[Any, list[Target], float]:
        client = client_for(silent, timeout=0.2, attempts=2)
        t0 = time.monotonic()
        ans = await client.query("plain.test", A)
        resolver = Resolver(client, supported={"udp"})
        targets = await resolver.resolve_async(UriParts("sip", "plain.test"))
        await resolver.aclose()
        return ans, targets, time.monotonic() - t0

    ans, targets, took = run(go())
    assert ans.status == "timeout" and not ans.usable
    assert targets == [] and took < 3.0


def test_icmp_refused_moves_on_at_once(ns: Nameserver, run: Any) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        closed = ("127.0.0.1", s.getsockname()[1])

    async def go() -> tuple[Any, float]:
        client = client_for(closed, (ns.address, ns.port), timeout=3.0)
        t0 = time.monotonic()
        return await client.query("plain.test", A), time.monotonic() - t0

    ans, took = run(go())
    assert ans.status == "ok" and took < 1.5


class Impostor(asyncio.DatagramProtocol):
    """Answers every query with junk, a wrong id, a wrong question, then the truth."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        query = DNSRecord.parse(data)
        good = query.reply()
        good.add_answer(RR(str(query.q.qname), QTYPE.A, ttl=60, rdata=DL_A("192.0.2.99")))
        wrong_id = DNSRecord.parse(good.pack())
        wrong_id.header.id = (query.header.id + 1) & 0xFFFF
        wrong_q = DNSRecord.question("other.test", "A").reply()
        wrong_q.header.id = query.header.id
        for packet in (b"\x00\x01garbage", wrong_id.pack(), wrong_q.pack(), data, good.pack()):
            self.transport.sendto(packet, addr)


def test_mismatched_replies_are_ignored(run: Any) -> None:
    async def go() -> tuple[Any, DnsClient]:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Impostor, local_addr=("127.0.0.1", 0))
        try:
            client = client_for(transport.get_extra_info("sockname")[:2])
            return await client.query("x.test", A), client
        finally:
            transport.close()

    ans, client = run(go())
    assert [r.address for r in ans.records] == ["192.0.2.99"] and client.ignored == 4


def test_tcp_stream_skips_foreign_replies(run: Any) -> None:
    """A TCP server that first sends a reply with another id, then ours."""

    async def go() -> Any:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            (size,) = struct.unpack("!H", await reader.readexactly(2))
            query = DNSRecord.parse(await reader.readexactly(size))
            good = query.reply()
            good.add_answer(RR(str(query.q.qname), QTYPE.A, ttl=60, rdata=DL_A("192.0.2.77")))
            other = DNSRecord.parse(good.pack())
            other.header.id ^= 0x5555
            for msg in (other.pack(), good.pack()):
                writer.write(struct.pack("!H", len(msg)) + msg)
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        try:
            port = server.sockets[0].getsockname()[1]
            client = client_for(("127.0.0.1", port))
            return await client._tcp(("127.0.0.1", port), "t.test", A)
        finally:
            server.close()
            await server.wait_closed()

    msg = run(go())
    assert msg is not None and [r.address for r in msg.answers] == ["192.0.2.77"]


# ---------------------------------------------------------------- the proxy's API


def test_resolver_callback_then_cache(ns: Nameserver, run: Any) -> None:
    async def go() -> tuple[Any, list[list[Target]], Any, Any]:
        resolver = Resolver(client_for((ns.address, ns.port)), supported={"udp", "tcp"})
        got: list[list[Target]] = []
        done = asyncio.Event()

        def callback(targets: list[Target]) -> None:
            got.append(targets)
            done.set()

        first = resolver.resolve(UriParts("sip", "sip.test"), callback)
        await done.wait()
        cached = resolver.resolve(UriParts("sip", "sip.test"), callback)
        numeric = resolver.resolve(UriParts("sip", "[::1]", 5070), callback)
        await resolver.aclose()
        return first, got, cached, numeric

    first, got, cached, numeric = run(go())
    expected = [Target("tcp", "192.0.2.10", 5060), Target("tcp", "2001:db8::10", 5060),
                Target("udp", "192.0.2.11", 5060), Target("udp", "192.0.2.12", 5062)]  # fmt: skip
    assert first is None and got == [expected]
    assert cached == expected and numeric == [Target("udp", "::1", 5070)]


def test_concurrent_resolutions_share_queries(ns: Nameserver, run: Any) -> None:
    async def go() -> list[list[Target]]:
        resolver = Resolver(client_for((ns.address, ns.port)), cache=DnsCache(max_ttl=0))
        parts = UriParts("sip", "srv-only.test")
        before = Counter(ns.resolver.asked)
        results = await asyncio.gather(*(resolver.resolve_async(parts) for _ in range(5)))
        after = Counter(ns.resolver.asked)
        after.subtract(before)
        assert after[("_sip._tcp.srv-only.test", SRV, "udp")] == 1  # one question for all five
        await resolver.aclose()
        return list(results)

    results = run(go())
    assert all(r == [Target("tcp", "192.0.2.20", 5070)] for r in results)


def test_ipv6_nameserver(run: Any) -> None:
    try:
        server = Nameserver("::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    try:

        async def go() -> list[Target]:
            return await resolve_sip_uri(UriParts("sip", "plain.test"), client_for(("::1", server.port)))

        assert run(go()) == [Target("udp", "192.0.2.30", 5060)]
    finally:
        server.stop()


def test_resolv_conf(tmp_path: Path) -> None:
    text = """# generated
search example.com
nameserver 127.0.0.53
nameserver ::1 ; comment
nameserver fe80::1%eth0
nameserver not-an-address
nameserver 10.0.0.1
options edns0 timeout:3 attempts:4 rotate
"""
    conf = parse_resolv_conf(text)
    assert conf.nameservers == ["127.0.0.53", "::1", "fe80::1%eth0"] and (conf.timeout, conf.attempts) == (
        3.0,
        4,
    )
    path = tmp_path / "resolv.conf"
    path.write_text(text)
    client = DnsClient.from_resolv_conf(str(path), timeout=0.5)
    assert client.nameservers[:2] == [("127.0.0.53", 53), ("::1", 53)]
    assert (client.timeout, client.attempts) == (0.5, 4)
    assert DnsClient.from_resolv_conf(str(tmp_path / "absent")).nameservers == [("127.0.0.1", 53)]
