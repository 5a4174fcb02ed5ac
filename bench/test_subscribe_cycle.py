"""The subscribe cycle in one process: what one SIPp ``subscribe_cycle.xml`` call costs the core.

One worker's ``SipCore`` with the fast paths the server enables (REGISTER's
tag key, the SUBSCRIBE fast path), presence rows in real shared tables as
the server maps them (``test_notifier.presence_core``). Per call of the benchmark, ``CYCLES`` cycles, each:
SUBSCRIBE (Expires 600) -> 200 + NOTIFY, the NOTIFY's 200 -> in-dialog
SUBSCRIBE Expires 0 -> 200 + final NOTIFY, its 200; the datagrams go through
``CoreDriver.datagrams`` as the UDP socket hands them over. ``extra_info``
has ``cycles``: read the time per call divided by it.

    .venv/bin/python -m pytest bench/test_subscribe_cycle.py --benchmark-only

Nothing here asserts on time.
"""

from __future__ import annotations

import itertools
from typing import Any

from test_notifier import presence_core

from simplefast.proxy.core import SipCore
from simplefast.transport.driver import CoreDriver

CYCLES = 500
PEER = ("127.0.0.1", 5062)


class _Loop:
    now = 0.0

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, cb: Any) -> Any:
        return self

    def cancel(self) -> None:
        pass


def _core() -> tuple[SipCore, CoreDriver, list[bytes]]:
    core, _ = presence_core(CYCLES * 4)
    core.tag_key = b"k" * 16
    assert core.enable_fast_subscribe()
    sent: list[bytes] = []
    driver = CoreDriver(core, _Loop(), lambda data, peer: sent.append(data))  # type: ignore[arg-type]
    return core, driver, sent


def _subscribe(n: int, cseq: int, to_tag: str | None, expires: int) -> bytes:
    tag = f";tag={to_tag}" if to_tag else ""
    return (
        f"SUBSCRIBE sip:alice@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-{n}-{cseq};rport\r\nMax-Forwards: 70\r\n"
        f"From: <sip:w1_{n}@example.com>;tag=1SIPpTag{n}\r\nTo: <sip:alice@example.com>{tag}\r\n"
        f"Call-ID: {n}-1@127.0.0.1\r\nCSeq: {cseq} SUBSCRIBE\r\nContact: <sip:w1_{n}@127.0.0.1:5062>\r\n"
        f"Event: presence\r\nAccept: application/pidf+xml\r\nExpires: {expires}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def _ok(notify: bytes) -> bytes:
    """The watcher's 200, as the scenario builds it (Via, From, To, Call-ID, CSeq of the NOTIFY)."""
    head = notify.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    keep = [h for h in head[1:] if h.split(b":", 1)[0] in (b"Via", b"From", b"To", b"Call-ID", b"CSeq")]
    tail = [b"Contact: <sip:127.0.0.1:5062>", b"Content-Length: 0", b"", b""]
    return b"\r\n".join([b"SIP/2.0 200 OK", *keep, *tail])


def test_subscribe_cycle(benchmark: Any) -> None:
    core, driver, sent = _core()
    benchmark.group = "subscribe cycle"
    benchmark.extra_info["cycles"] = CYCLES
    counter = itertools.count()

    def notify_of(out: list[bytes]) -> bytes:
        return next(d for d in out if d.startswith(b"NOTIFY "))

    def cycles() -> int:
        ended = 0
        driver.loop.now += 1.0  # type: ignore[attr-defined]
        for _ in range(CYCLES):
            n = next(counter)
            sent.clear()
            driver.datagrams([(_subscribe(n, 1, None, 600), PEER)])
            ok = next(d for d in sent if d.startswith(b"SIP/2.0 200"))
            tag = ok.split(b"\r\nTo: ", 1)[1].split(b"tag=", 1)[1].split(b"\r\n", 1)[0].decode()
            first = notify_of(sent)
            sent.clear()
            driver.datagrams([(_ok(first), PEER)])
            driver.datagrams([(_subscribe(n, 2, tag, 0), PEER)])
            last = notify_of(sent)
            sent.clear()
            driver.datagrams([(_ok(last), PEER)])
            ended += b"terminated" in last
        return ended

    assert benchmark(cycles) == CYCLES
    assert core.presence is not None and core.presence.notifier.count() == 0
