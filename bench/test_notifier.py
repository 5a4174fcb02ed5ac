"""The notifier's fan-out in one process: what a presence change costs per watcher.

``Notifier.changed`` over 1 000 subscriptions held by one worker (made by
SUBSCRIBEs through the SIP core, as SIPp watchers make them, rows in real
shared tables as the server maps them), then the 1 000 NOTIFY 200s taken by
``on_response``: per call, one change fanned out and every transaction
ended, with the fan-out over rows and without it (``path``). ``extra_info``
has ``notifies``; the figure to read is the time per call divided by it.
The active implementation only (the notifier is Python over the compiled
codec, rows and transactions).

    .venv/bin/python -m pytest bench/test_notifier.py --benchmark-only

Nothing here asserts on time.
"""

from __future__ import annotations

from typing import Any

import pytest

from simplefast._impl import shmindex
from simplefast.presence.agent import PresenceAgent, PresenceConfig
from simplefast.presence.state import MemoryPresentities
from simplefast.presence.subscribe import ShmSubscriptions
from simplefast.proxy.core import CoreConfig, SipCore
from simplefast.proxy.location import MemoryLocation
from simplefast.proxy.proxy import ProxyAddress
from simplefast.server.shared import SUB_KEY_MAX, SUB_OVERFLOW_VALUE_MAX, _slots
from simplefast.sip.peer import transport_of
from simplefast.sip.transaction import TransactionLayer

WATCHERS = 1000
ME = ProxyAddress("127.0.0.1", 5060, 40000)
RES = "sip:fanout@example.com"


def presence_core(capacity: int) -> tuple[SipCore, PresenceAgent]:
    """One worker's core with a presence agent over real shared tables (rows of 200 bytes
    and the overflow table, as the server maps them), no pacing, nothing persisted."""
    slots = _slots(capacity)
    size = shmindex.table_size(slots, SUB_KEY_MAX, 200)
    main = shmindex.ShmTable(shmindex.create_shared(size), slots, SUB_KEY_MAX, 200, create=True)
    over = shmindex.ShmTable(
        shmindex.create_shared(shmindex.table_size(64, SUB_KEY_MAX, SUB_OVERFLOW_VALUE_MAX)), 64, SUB_KEY_MAX,
        SUB_OVERFLOW_VALUE_MAX, create=True,
    )  # fmt: skip
    table = ShmSubscriptions(main, over)
    table.track_dirty = False
    tl = TransactionLayer()
    agent = PresenceAgent(
        tl, MemoryPresentities(), PresenceConfig(min_notify_interval=0.0),
        contact=lambda peer: f"<{ME.contact_uri(transport_of(peer), False)}>",
        via=lambda dest: ME.sent_by(transport_of(dest), False), table=table,
    )  # fmt: skip
    core = SipCore(CoreConfig(domains=frozenset({"example.com"}), local_hosts=frozenset({"127.0.0.1"})),
                   MemoryLocation(), ME, tl=tl, presence=agent)  # fmt: skip
    return core, agent


def _core() -> tuple[SipCore, PresenceAgent]:
    core, agent = presence_core(WATCHERS * 2)
    for i in range(WATCHERS):  # the shape of bench/sipp/watcher.xml's SUBSCRIBE
        data = (
            f"SUBSCRIBE {RES} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-{i}-1\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:w12345_{i}@example.com>;tag=12345SIPpTag{i}\r\n"
            f"To: <{RES}>\r\nCall-ID: {i}-12345@127.0.0.1\r\nCSeq: 1 SUBSCRIBE\r\n"
            f"Contact: <sip:w12345_{i}@127.0.0.1:5062>\r\nEvent: presence\r\nAccept: application/pidf+xml\r\n"
            "Expires: 3600\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        core.on_message(data, ("127.0.0.1", 5062), reliable=False, now=0.0)
    _answer(core, agent, 0.0)
    assert agent.notifier.count() == WATCHERS
    return core, agent


def _answer(core: SipCore, agent: PresenceAgent, now: float) -> int:
    """Answer 200 to every NOTIFY sent, until none is left (the window, 500, lets the
    rest go as the 200s come back); how many."""
    n = 0
    notifier = agent.notifier
    while sent := [d for d, _ in core.outgoing() if d.startswith(b"NOTIFY ")]:
        for data in sent:
            start = data.index(b";branch=") + 8
            notifier.on_response(data[start : data.index(b"\r\n", start)].decode(), 200, now)
        n += len(sent)
    return n


@pytest.mark.parametrize("path", ["rows", "objects"])
def test_change_to_1000_watchers(benchmark: Any, path: str) -> None:
    """``rows``: the fan-out over rows (fanout.RowFan); ``objects``: every NOTIFY through a
    ``Subscription`` (the notifier without it), for the ratio in the same run."""
    core, agent = _core()
    if path == "objects":
        agent.notifier.fan = None
    benchmark.group = "notifier changed x1000"
    benchmark.extra_info["notifies"] = WATCHERS
    clock = [1.0]

    def change() -> int:
        clock[0] += 1.0
        agent.notifier.changed(RES, clock[0])
        return _answer(core, agent, clock[0])

    assert benchmark(change) == WATCHERS
