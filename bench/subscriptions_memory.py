"""One million subscriptions: shared-table bytes, Python bytes, insert and lookup times.

    .venv/bin/python bench/subscriptions_memory.py [--count 1000000]

What it does, in one process:

1. maps the shared subscription tables for ``--count`` subscriptions, the way
   the supervisor does (``server/shared.py``: slots = count * 4/3, 32-byte
   keys, ``presence.subscription_row_bytes`` values (``--row-bytes``, default
   the configuration's), and the overflow table of longer rows), with
   ``zeroed`` creation;
2. makes ``--count`` subscriptions (with ``--via-core``: SUBSCRIBEs through a
   SIP core, its fast path and notifier, so the objects are the server's own,
   its timer heap included) like the ones a SIPp watcher creates
   (``bench/sipp/watcher.xml``: its From/To/Call-ID/Contact shapes), each as
   the notifier holds it (a ``Subscription``, in the two dicts of
   ``Notifier``: by key and by resource), and writes each
   row (``ShmSubscriptions.put``);
3. looks every one up by key in the table (``owner``: what a worker does for
   an in-dialog SUBSCRIBE), and decodes a sample (``decode_row``);
4. reports the tables' bytes per subscription (mapped, and resident as
   measured from /proc/self/smaps_rollup; and mapped with the marks table,
   which ``server/shared.py`` sizes by the same capacity, not filled here),
   the Python heap per subscription
   (RSS growth minus the table's resident growth), the row sizes and the
   times.
"""

from __future__ import annotations

import argparse
import gc
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simplefast._impl import shmindex  # noqa: E402
from simplefast.presence.subscribe import ShmSubscriptions, Subscription, decode_row, encode_row  # noqa: E402
from simplefast.server.config import Config  # noqa: E402
from simplefast.server.shared import (  # noqa: E402
    MARK_KEY_MAX,
    MARK_VALUE_MAX,
    SUB_KEY_MAX,
    SUB_OVERFLOW_MIN,
    SUB_OVERFLOW_SHARE,
    SUB_OVERFLOW_VALUE_MAX,
    _slots,
)


def rss_and_shmem() -> tuple[int, int]:
    rss = shmem = 0
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("Shared_Dirty:") or line.startswith("Private_Dirty:"):
            pass
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssShmem:"):
            shmem = int(line.split()[1]) * 1024
    return rss, shmem


def make(i: int, now: float) -> Subscription:
    user = f"w12345_{i}"
    sub = Subscription(
        key=f"9f3a1c2bw0.{i:x}", call_id=f"{i}-12345@127.0.0.1", remote_tag=f"12345SIPpTag{i}",
        local_uri="sip:fanout@example.com", remote_uri=f"sip:{user}@example.com",
        target=f"sip:{user}@127.0.0.1:5062", routes=(), peer=("127.0.0.1", 5062), event="presence",
        event_id=None, resource="sip:fanout@example.com", watcher=f"sip:{user}@example.com",
        content_type="application/pidf+xml", policy="allow", expires_at=now + 3600, subscribed_at=now,
        cseq=1, remote_cseq=1, version=0,
    )  # fmt: skip
    return sub


def via_core(table: ShmSubscriptions, n: int, now: float) -> dict[str, Subscription]:
    """``n`` subscriptions made the way the server makes them: SUBSCRIBEs shaped like
    bench/sipp/watcher.xml's through a SIP core and its notifier (rows in ``table``),
    each first NOTIFY answered 200 and its transaction ended. The notifier's ``by_key``."""
    from simplefast.presence.agent import PresenceAgent, PresenceConfig
    from simplefast.presence.state import MemoryPresentities
    from simplefast.proxy.core import CoreConfig, SipCore
    from simplefast.proxy.location import MemoryLocation
    from simplefast.proxy.proxy import ProxyAddress
    from simplefast.sip.peer import transport_of
    from simplefast.sip.transaction import TransactionLayer

    me = ProxyAddress("127.0.0.1", 5060, 40000)
    tl = TransactionLayer()
    agent = PresenceAgent(
        tl, MemoryPresentities(), PresenceConfig(min_notify_interval=0.0, max_expires=3600),
        contact=lambda peer: f"<{me.contact_uri(transport_of(peer), False)}>",
        via=lambda dest: me.sent_by(transport_of(dest), False), table=table,
    )  # fmt: skip
    core = SipCore(CoreConfig(domains=frozenset({"example.com"}), local_hosts=frozenset({"127.0.0.1"})),
                   MemoryLocation(), me, tl=tl, presence=agent)  # fmt: skip
    core.enable_fast_subscribe()  # as the workers do
    notifier = agent.notifier
    res = "sip:fanout@example.com"
    for i in range(n):
        data = (
            f"SUBSCRIBE {res} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{5062 + i % 3};branch=z9hG4bK-{i}-1\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:w12345_{i}@example.com>;tag=12345SIPpTag{i}\r\n"
            f"To: <{res}>\r\nCall-ID: {i}-12345@127.0.0.1\r\nCSeq: 1 SUBSCRIBE\r\n"
            f"Contact: <sip:w12345_{i}@127.0.0.1:{5062 + i % 3}>\r\nEvent: presence\r\n"
            "Accept: application/pidf+xml\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        t = now + i * 0.001  # a thousand SUBSCRIBEs a second: in 3 600 s, none expires
        core.on_message(data, ("127.0.0.1", 5062 + i % 3), reliable=False, now=t)
        for d, _ in core.outgoing():
            if d.startswith(b"NOTIFY "):
                start = d.index(b";branch=") + 8
                notifier.on_response(d[start : d.index(b"\r\n", start)].decode(), 200, t)
        if i % 1000 == 999:
            notifier.handle_timer(t)  # Timer K (T4) of the answered NOTIFYs, as the loop runs it
    notifier.handle_timer(now + n * 0.001 + 10.0)
    assert notifier.count() == n and not len(notifier.txns)
    return notifier.by_key


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--row-bytes", type=int, default=Config().subscription_row_bytes)
    ap.add_argument("--via-core", action="store_true",
                    help="make the subscriptions with SUBSCRIBEs through a SIP core and its notifier"
                         " (what the server holds), not directly")  # fmt: skip
    args = ap.parse_args()
    n = args.count
    value_max = args.row_bytes
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    print(f"machine: {platform.node()}, Python {platform.python_version()}, codec {shmindex.__name__}")
    slots = _slots(n)
    oslots = _slots(n // SUB_OVERFLOW_SHARE + SUB_OVERFLOW_MIN)
    main_size = shmindex.table_size(slots, SUB_KEY_MAX, value_max)
    osize = shmindex.table_size(oslots, SUB_KEY_MAX, SUB_OVERFLOW_VALUE_MAX)
    # the marks table (which workers hold watchers of a resource) is sized by the same capacity
    msize = shmindex.table_size(_slots(n), MARK_KEY_MAX, MARK_VALUE_MAX)
    size = main_size + osize
    gc.disable()
    rss0, shm0 = rss_and_shmem()
    mm, om = shmindex.create_shared(main_size), shmindex.create_shared(osize)
    table = ShmSubscriptions(
        shmindex.ShmTable(mm, slots, SUB_KEY_MAX, value_max, create=True, zeroed=True),
        shmindex.ShmTable(om, oslots, SUB_KEY_MAX, SUB_OVERFLOW_VALUE_MAX, create=True, zeroed=True),
    )
    table.track_dirty = False
    by_key: dict[str, Subscription] = {}
    watchers: dict[tuple[str, str], dict[str, Subscription]] = {}
    now = time.monotonic()
    t0 = time.perf_counter()
    if args.via_core:
        by_key = via_core(table, n, now)
    else:
        for i in range(n):
            sub = make(i, now)
            by_key[sub.key] = sub
            watchers.setdefault((sub.event, sub.resource), {})[sub.key] = sub
            table.put(sub)
    t_insert = time.perf_counter() - t0
    rss1, shm1 = rss_and_shmem()
    keys = list(by_key)
    t0 = time.perf_counter()
    found = sum(1 for k in keys if table.owner(k) == 0)
    t_lookup = time.perf_counter() - t0
    sample = [(k, table.get(k)) for k in keys[:: max(1, n // 1000)]]
    t0 = time.perf_counter()
    decoded = [decode_row(v, k) for k, v in sample if v is not None]
    t_decode = (time.perf_counter() - t0) / max(1, len(decoded))
    row = encode_row(by_key[keys[-1]])
    slot = main_size / slots
    table_res = shm1 - shm0
    python = (rss1 - rss0) - table_res
    print()
    print("| measure | value |")
    print("|---|--:|")
    print(f"| subscriptions | {n:,} (all found again: {found == n}) |")
    per = f"{size / n:,.0f} B per subscription ({slot:.0f} B per slot, {osize / n:.0f} B of overflow table)"
    print(f"| tables mapped | {size / 2**20:,.0f} MiB = {per} |")
    per = f"{(size + msize) / n:,.0f} B per subscription"
    print(f"| with the marks table (mapped, not filled here) | {(size + msize) / 2**20:,.0f} MiB = {per} |")
    print(f"| table resident | {table_res / 2**20:,.0f} MiB = {table_res / n:,.0f} B per subscription |")
    print(f"| row (header + unchanging part) | {len(row)} B of {value_max} |")
    print(f"| rows in the overflow table; kept in no table | {len(table.overflow)}; {table.full} |")
    per = f"{python / n:,.0f} B per subscription"
    print(f"| Python objects in the owning worker | {python / 2**20:,.0f} MiB = {per} |")
    print(f"| insert (make + dicts + row) | {t_insert / n * 1e6:.2f} us each, {t_insert:.1f} s |")
    print(f"| lookup of the owner by key | {t_lookup / n * 1e6:.2f} us each |")
    print(f"| decode a row | {t_decode * 1e6:.2f} us |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
