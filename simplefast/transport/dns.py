"""DNS stub client on asyncio (uvloop too) and the RFC 3263 driver.

API for the sans-IO proxy
-------------------------
One :class:`Resolver` per worker, created inside the running loop::

    resolver = Resolver(DnsClient.from_resolv_conf(), supported={"udp", "tcp"})
    targets = resolver.resolve(UriParts.from_uri(uri), on_targets)
    if targets is not None: ...      # known at once: numeric host or all answers cached;
                                     # on_targets will not be called
    else: ...                        # on_targets(targets) runs later, from the loop
    await resolver.aclose()          # at shutdown: cancels what is in flight

``targets`` is a list of :class:`~simplefast.sip.rfc3263.Target`
``(transport, ip, port)`` in the order to try them; empty when the name does
not resolve or DNS failed. ``await resolver.resolve_async(parts)`` and the
function :func:`resolve_sip_uri` do the same for coroutine callers.

Theory of operation
-------------------
:class:`DnsClient` asks the nameservers of /etc/resolv.conf (or the ones it
is given) with RD=1. Each UDP attempt opens a fresh connected datagram
endpoint, so the kernel picks a random source port, and draws a random id
(RFC 5452); a datagram from another address, with another id or question,
or malformed, is ignored and the wait goes on. An attempt ends at the
reply, at ``timeout`` or at an ICMP error; then the next server is tried,
``attempts`` rounds in all. SERVFAIL/REFUSED move to the next server too.
A reply with TC set is asked again over TCP (RFC 7766, 2-byte length
framing) on the same server. A semaphore bounds queries in flight, and a
question already in flight is shared, not sent twice. A CNAME chain the
server did not chase is followed by asking again (a few links at most).

The driver runs a sans-IO :class:`~simplefast.sip.rfc3263.Resolution`:
answers come from the :class:`~simplefast.sip.rfc3263.DnsCache` when they
can, the rest of a step's questions (A and AAAA, several SRV) go out
concurrently, and every answer, failures included, goes into the cache.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import secrets
import struct
from collections.abc import Callable, Sequence, Set
from contextlib import suppress
from typing import Any, NamedTuple

from simplefast.logs import get_logger
from simplefast.sip.dnswire import (
    CNAME,
    FORMERR,
    NOTIMP,
    REFUSED,
    SERVFAIL,
    Answer,
    DnsFormatError,
    Message,
    build_query,
    extract_answer,
    normalize_name,
    parse_message,
    response_matches,
)
from simplefast.sip.rfc3263 import TRANSPORTS, DnsCache, Resolution, Target, UriParts, feed_from_cache

log = get_logger(__name__)

DEFAULT_NAMESERVERS = (("127.0.0.1", 53),)  # what glibc uses when resolv.conf names none
_ERROR_RCODES = (FORMERR, SERVFAIL, NOTIMP, REFUSED)
_MAX_CHASE = 4


class ResolvConf(NamedTuple):
    nameservers: list[str]
    timeout: float | None
    attempts: int | None


def parse_resolv_conf(text: str) -> ResolvConf:
    """The ``nameserver`` lines (IPv4 and IPv6, at most three as glibc) and the
    ``options timeout:N attempts:N`` of a resolv.conf(5) text."""
    servers: list[str] = []
    timeout: float | None = None
    attempts: int | None = None
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(words) >= 2 and words[0] == "nameserver" and len(servers) < 3:
            addr = words[1]
            try:
                ipaddress.ip_address(addr.split("%", 1)[0])
            except ValueError:
                continue
            servers.append(addr)
        elif words and words[0] == "options":
            for opt in words[1:]:
                key, _, value = opt.partition(":")
                if key in ("timeout", "attempts") and value.isdigit() and 0 < int(value) <= 30:
                    if key == "timeout":
                        timeout = float(value)
                    else:
                        attempts = int(value)
    return ResolvConf(servers, timeout, attempts)


def _same_address(addr: Any, expected: tuple[str, int]) -> bool:
    if addr is None:  # a connected socket only hears from its peer
        return True
    try:
        host = str(addr[0]).split("%", 1)[0]
        want = expected[0].split("%", 1)[0]
        return int(addr[1]) == expected[1] and ipaddress.ip_address(host) == ipaddress.ip_address(want)
    except (ValueError, IndexError, TypeError):
        return False


class _UdpExchange(asyncio.DatagramProtocol):
    """One UDP attempt: resolves ``reply`` with the matching Message, or None
    on an ICMP error or a closed socket."""

    def __init__(self, server: tuple[str, int], qid: int, name: str, qtype: int) -> None:
        self.server, self.qid, self.name, self.qtype = server, qid, name, qtype
        self.reply: asyncio.Future[Message | None] = asyncio.get_running_loop().create_future()
        self.ignored = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.reply.done():
            return
        if not _same_address(addr, self.server):
            self.ignored += 1
            return
        try:
            msg = parse_message(data)
        except DnsFormatError:
            self.ignored += 1
            return
        if not response_matches(msg, self.qid, self.name, self.qtype):
            self.ignored += 1
            return
        self.reply.set_result(msg)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.reply.done():
            self.reply.set_result(None)


class DnsClient:
    """A stub resolver: one question per query, answers as :class:`Answer`.

    Args:
        nameservers: ``(address, port)`` pairs, tried in order.
        timeout: seconds to wait for one server's reply (UDP, or TCP as a whole).
        attempts: rounds over all servers.
        max_concurrent: queries on the network at once (others wait).
        edns_payload: UDP payload size announced with EDNS(0), None for plain DNS.
    """

    def __init__(
        self,
        nameservers: Sequence[tuple[str, int]] = DEFAULT_NAMESERVERS,
        *,
        timeout: float = 2.0,
        attempts: int = 2,
        max_concurrent: int = 64,
        edns_payload: int | None = 1232,
    ) -> None:
        if not nameservers:
            raise ValueError("no nameserver")
        self.nameservers = [(str(h), int(p)) for h, p in nameservers]
        self.timeout, self.attempts, self.edns_payload = timeout, max(1, attempts), edns_payload
        self._sem = asyncio.Semaphore(max_concurrent)
        self._inflight: dict[tuple[str, int], asyncio.Task[Answer]] = {}
        self.sent = self.ignored = self.timeouts = self.tcp_fallbacks = 0

    @classmethod
    def from_resolv_conf(
        cls,
        path: str = "/etc/resolv.conf",
        *,
        timeout: float | None = None,
        attempts: int | None = None,
        max_concurrent: int = 64,
        edns_payload: int | None = 1232,
    ) -> DnsClient:
        """A client for the servers of ``path`` (127.0.0.1 if none); ``timeout``
        and ``attempts`` default to the file's options, else 2 s and 2."""
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                conf = parse_resolv_conf(f.read())
        except OSError:
            conf = ResolvConf([], None, None)
        return cls(
            [(a, 53) for a in conf.nameservers] or DEFAULT_NAMESERVERS,
            timeout=timeout if timeout is not None else conf.timeout or 2.0,
            attempts=attempts if attempts is not None else conf.attempts or 2,
            max_concurrent=max_concurrent,
            edns_payload=edns_payload,
        )

    async def query(self, name: str, qtype: int) -> Answer:
        """Asks for ``(name, qtype)``; never raises for a DNS or network failure:
        the Answer's status says ``timeout`` or ``error`` instead."""
        key = (normalize_name(name), qtype)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._query_chasing(*key))
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        # a caller that is cancelled leaves the shared query running for the others
        return await asyncio.shield(task)

    async def aclose(self) -> None:
        """Cancels the queries in flight."""
        tasks = list(self._inflight.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _query_chasing(self, name: str, qtype: int) -> Answer:
        ans = await self._query(name, qtype)
        chased = 0
        while ans.dangling and qtype != CNAME and chased < _MAX_CHASE:
            chased += 1
            nxt = await self._query(ans.canonical, qtype)
            ttl = nxt.ttl if ans.ttl is None or nxt.ttl is None else min(ans.ttl, nxt.ttl)
            ans = Answer(name, qtype, nxt.status, nxt.records, ttl, nxt.canonical)
        return ans

    async def _query(self, name: str, qtype: int) -> Answer:
        try:
            build_query(name, qtype, 0)
        except ValueError:
            return Answer(name, qtype, "error", canonical=name)
        last_error: Answer | None = None
        async with self._sem:
            for _ in range(self.attempts):
                for server in self.nameservers:
                    msg = await self._udp(server, name, qtype)
                    if msg is not None and msg.truncated:
                        self.tcp_fallbacks += 1
                        msg = await self._tcp(server, name, qtype)
                    if msg is None:
                        continue
                    if msg.rcode in _ERROR_RCODES:
                        last_error = Answer(name, qtype, "error", canonical=name)
                        continue
                    return extract_answer(msg, name, qtype)
                if last_error is not None:  # every server answered or timed out; don't insist
                    return last_error
        return Answer(name, qtype, "timeout", canonical=name)

    async def _udp(self, server: tuple[str, int], name: str, qtype: int) -> Message | None:
        loop = asyncio.get_running_loop()
        qid = secrets.randbits(16)
        data = build_query(name, qtype, qid, edns_payload=self.edns_payload)
        proto = _UdpExchange(server, qid, name, qtype)
        transport: asyncio.DatagramTransport | None = None
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: proto, remote_addr=server)
            transport.sendto(data)
            self.sent += 1
            async with asyncio.timeout(self.timeout):
                return await proto.reply
        except TimeoutError:
            self.timeouts += 1
            return None
        except OSError as exc:
            log.debug("DNS query to %s failed: %s", server, exc)
            return None
        finally:
            self.ignored += proto.ignored
            if transport is not None:
                transport.close()

    async def _tcp(self, server: tuple[str, int], name: str, qtype: int) -> Message | None:
        qid = secrets.randbits(16)
        data = build_query(name, qtype, qid)
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(server[0], server[1])
                writer.write(struct.pack("!H", len(data)) + data)
                await writer.drain()
                while True:  # a server may pipeline; skip what is not ours (RFC 7766 section 7)
                    (size,) = struct.unpack("!H", await reader.readexactly(2))
                    try:
                        msg = parse_message(await reader.readexactly(size))
                    except DnsFormatError:
                        return None  # a stream is not resynchronised after garbage
                    if response_matches(msg, qid, name, qtype) and not msg.truncated:
                        return msg
                    self.ignored += 1
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            log.debug("DNS query over TCP to %s failed: %r", server, exc)
            return None
        finally:
            if writer is not None:
                writer.close()
                with suppress(Exception):
                    await writer.wait_closed()


async def _drive(res: Resolution, client: DnsClient, cache: DnsCache | None) -> list[Target]:
    loop = asyncio.get_running_loop()
    while not res.done:
        queries = feed_from_cache(res, cache, loop.time()) if cache is not None else res.next_queries()
        if res.done:
            break
        if not queries:  # cannot happen: every step asks before it waits
            raise RuntimeError("RFC 3263 resolution stalled")
        answers = await asyncio.gather(*(client.query(n, t) for n, t in queries))
        now = loop.time()
        for (n, t), ans in zip(queries, answers, strict=True):
            if cache is not None:
                cache.put(ans, now)
            res.feed(n, t, ans)
    return list(res.targets)


async def resolve_sip_uri(
    parts: UriParts,
    client: DnsClient,
    cache: DnsCache | None = None,
    *,
    supported: Set[str] = frozenset(TRANSPORTS),
    rng: random.Random | None = None,
) -> list[Target]:
    """RFC 3263 for one URI: the ``(transport, ip, port)`` to try, in order
    (empty when nothing resolves). Independent questions go out together."""
    return await _drive(Resolution(parts, supported=supported, rng=rng), client, cache)


class Resolver:
    """The worker's resolver: a client, a cache and the transports we offer.

    Args:
        client: the DNS client.
        cache: the answer cache (a fresh one if None).
        supported: transports of our listeners ("udp", "tcp", "tls").
        rng: random source of the SRV weighted choice.
    """

    def __init__(
        self,
        client: DnsClient,
        *,
        cache: DnsCache | None = None,
        supported: Set[str] = frozenset(TRANSPORTS),
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.cache = cache if cache is not None else DnsCache()
        self.supported = frozenset(supported)
        self.rng = rng if rng is not None else random.Random()
        self._tasks: set[asyncio.Task[None]] = set()

    def resolve(self, parts: UriParts, callback: Callable[[list[Target]], None]) -> list[Target] | None:
        """Starts resolving ``parts``.

        Returns:
            The targets when no network traffic was needed (numeric host, or
            every answer cached); ``callback`` is then not called. Otherwise
            None, and ``callback(targets)`` is called later from the loop
            (exceptions it raises are logged, not propagated).
        """
        res = Resolution(parts, supported=self.supported, rng=self.rng)
        now = asyncio.get_running_loop().time()
        pending = feed_from_cache(res, self.cache, now)
        if res.done:
            return list(res.targets)
        task = asyncio.get_running_loop().create_task(self._run(res, pending, callback))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return None

    async def resolve_async(self, parts: UriParts) -> list[Target]:
        """Coroutine form of :meth:`resolve`."""
        return await _drive(
            Resolution(parts, supported=self.supported, rng=self.rng), self.client, self.cache
        )

    async def aclose(self) -> None:
        """Cancels every resolution in flight (their callbacks are not called)."""
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.client.aclose()

    async def _run(
        self, res: Resolution, first: list[tuple[str, int]], callback: Callable[[list[Target]], None]
    ) -> None:
        try:
            answers = await asyncio.gather(*(self.client.query(n, t) for n, t in first))
            now = asyncio.get_running_loop().time()
            for (n, t), ans in zip(first, answers, strict=True):
                self.cache.put(ans, now)
                res.feed(n, t, ans)
            targets = await _drive(res, self.client, self.cache)
        except Exception:  # a bug of ours: the caller still hears back
            log.exception("RFC 3263 resolution of %s failed", res.parts)
            targets = []
        try:
            callback(targets)
        except Exception:
            log.exception("RFC 3263 resolution callback failed")
