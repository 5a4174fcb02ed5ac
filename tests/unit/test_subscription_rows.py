"""Subscription rows in the shared tables (presence/subscribe.py ShmSubscriptions, layout 2).

Real shmindex tables (the active implementation), as the workers map them:
a row goes to the table whose values it fits and moves when a refresh
changes its length; one too long for both stays in its worker, counted; a
worker that replaces a killed one takes back rows from both tables and its
NOTIFYs go on with the CSeq; rows a store of layout 1 holds still decode,
and the store writes them back as layout 2.
"""

from __future__ import annotations

import marshal
import struct
from pathlib import Path
from typing import Any

from simplefast._impl import shmindex
from simplefast.presence.agent import PresenceAgent, PresenceConfig
from simplefast.presence.state import MemoryPresentities
from simplefast.presence.subscribe import ShmSubscriptions, Subscription, decode_row, encode_row
from simplefast.proxy.core import CoreConfig, SipCore
from simplefast.proxy.location import MemoryLocation
from simplefast.sip.peer import transport_of
from simplefast.sip.transaction import TransactionLayer
from simplefast.store import presence as store
from tests.unit.test_presence_core import ME, answer, notifies, out

VALUE_MAX = 200


def tables(slots: int = 64) -> tuple[Any, Any]:
    main = shmindex.ShmTable(
        shmindex.create_shared(shmindex.table_size(slots, 32, VALUE_MAX)), slots, 32, VALUE_MAX, create=True
    )
    osize = shmindex.table_size(16, 32, 1024)
    over = shmindex.ShmTable(shmindex.create_shared(osize), 16, 32, 1024, create=True)
    return main, over


def sub(key: str, target: str = "sip:bob@10.0.0.9:5070", routes: tuple[str, ...] = ()) -> Subscription:
    return Subscription(
        key=key, call_id=f"{key}@10.0.0.9", remote_tag="b1", local_uri="sip:alice@example.com",
        remote_uri="sip:bob@example.com", target=target, routes=routes, peer=("10.0.0.9", 5070),
        event="presence", event_id=None, resource="sip:alice@example.com", watcher="sip:bob@example.com",
        content_type="application/pidf+xml", policy="allow", expires_at=600.0, cseq=1, remote_cseq=1,
    )  # fmt: skip


LONG_ROUTES = tuple(f"<sip:proxy{i}.carrier.example.net;lr;transport=udp>" for i in range(4))


def test_rows_go_to_the_table_they_fit_and_move_when_their_length_changes() -> None:
    main, over = tables()
    subs = ShmSubscriptions(main, over)
    short, long = sub("s1"), sub("l1", routes=LONG_ROUTES)
    subs.put(short)
    subs.put(long)
    assert len(encode_row(short)) <= VALUE_MAX < len(encode_row(long)) <= 1024
    assert main.get(b"s1") is not None and over.get(b"s1") is None
    assert over.get(b"l1") is not None and main.get(b"l1") is None
    assert subs.owner("s1") == subs.owner("l1") == 0 and subs.full == 0
    assert {s.key for s in subs.rows(0)} == {"s1", "l1"}
    assert sorted(s.key for s in subs.scan("sip:alice@example.com", "presence")) == ["l1", "s1"]
    assert set(subs.values()) == {"s1", "l1"}
    # a refresh moves the target: the row grows into the overflow table, then shrinks back
    short.target, short.row_static = "sip:" + "b" * 200 + "@10.0.0.9", b""
    subs.put(short)
    assert main.get(b"s1") is None and over.get(b"s1") is not None
    short.target, short.row_static = "sip:bob@10.0.0.9", b""
    subs.put(short)
    assert main.get(b"s1") is not None and over.get(b"s1") is None
    assert decode_row(subs.get("s1") or b"", "s1").target == "sip:bob@10.0.0.9"
    subs.delete("l1")
    subs.delete("s1")
    assert len(main) == len(over) == 0 and subs.owner("l1") is None
    assert subs.take_dirty() == {"s1": b"", "l1": b""}


def test_a_row_too_long_for_both_tables_stays_in_its_worker_and_is_counted() -> None:
    main, over = tables()
    subs = ShmSubscriptions(main, over)
    s = sub("x1")
    subs.put(s)
    s.target, s.row_static = "sip:" + "x" * 1100 + "@10.0.0.9", b""
    subs.put(s)  # the old row would name a stale CSeq: it goes
    assert subs.full == 1 and subs.get("x1") is None and len(main) == len(over) == 0
    assert subs.load("x1", encode_row(s)) is False
    bad = sub("x2")
    bad.cseq = 1 << 33  # out of the row's range: the same
    subs.put(bad)
    assert subs.full == 2 and subs.get("x2") is None
    # a key longer than the tables' (ours never are): counted, and nothing raises
    assert subs.put(sub("x" * 40)) is False and subs.full == 3 and subs.get("x" * 40) is None
    subs.delete("x" * 40)
    # without an overflow table (values that hold 1 KiB already), a long row is counted too
    alone = ShmSubscriptions(main)
    alone.put(sub("l2", routes=LONG_ROUTES))
    assert alone.full == 1 and alone.get("l2") is None


def _agent(table: ShmSubscriptions, index: int) -> tuple[SipCore, PresenceAgent]:
    tl = TransactionLayer()
    agent = PresenceAgent(
        tl, MemoryPresentities(), PresenceConfig(min_notify_interval=0.0),
        contact=lambda peer: f"<{ME.contact_uri(transport_of(peer), False)}>",
        via=lambda dest: ME.sent_by(transport_of(dest), False), table=table, index=index,
    )  # fmt: skip
    core = SipCore(CoreConfig(domains=frozenset({"example.com"}), local_hosts=frozenset({"10.0.0.1"})),
                   MemoryLocation(), ME, tl=tl, presence=agent)  # fmt: skip
    return core, agent


def _subscribe(c: SipCore, call_id: str, routes: str) -> list[Any]:
    data = (
        "SUBSCRIBE sip:alice@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bK{call_id}\r\n"
        f"{routes}Max-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=b1\r\nTo: <sip:alice@example.com>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:bob@10.0.0.9:5070>\r\nEvent: presence\r\n"
        "Expires: 600\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    c.on_message(data, ("10.0.0.9", 5070), reliable=False, now=0.0)
    return out(c)


def test_a_replacement_worker_takes_back_rows_of_both_tables_and_goes_on_with_the_cseq() -> None:
    main, over = tables()
    c1, a1 = _agent(ShmSubscriptions(main, over), index=1)
    rr = "".join(f"Record-Route: {r}\r\n" for r in LONG_ROUTES)
    firsts = []
    for call_id, routes in (("short", ""), ("long", rr)):
        msgs = _subscribe(c1, call_id, routes)
        (n,) = notifies(msgs)
        answer(c1, n)
        firsts.append(n)
    assert len(main) == 1 and len(over) == 1
    # the worker is killed; its replacement (same index) maps the same tables
    c2, a2 = _agent(ShmSubscriptions(main, over), index=1)
    assert a2.notifier.adopt(5.0) == 2
    keys = {n.from_tag for n in firsts}
    assert set(a2.notifier.by_key) == keys
    held = a2.notifier.by_key
    assert {s.routes for s in held.values()} == {(), LONG_ROUTES}
    assert all(s.cseq == 1 for s in held.values())
    # their final NOTIFYs go with CSeq 2, the long one along its route set
    for s in list(held.values()):
        a2.notifier.terminate(s, "deactivated", 6.0)
    sent = notifies(out(c2))
    assert sorted(n.cseq_num for n in sent) == [2, 2]
    long_notify = next(n for n in sent if n.call_id == "long")
    assert long_notify.get_all("Route") == list(LONG_ROUTES)


# Layout 1, as versions up to 876d712 wrote it (a store on disk may still hold such rows).
_HEAD_V1 = struct.Struct("<BHIIqddB")


def layout1(s: Subscription) -> bytes:
    static = (s.key, s.call_id, s.remote_tag, s.local_uri, s.remote_uri, s.target, s.routes, s.peer, s.event,
              s.event_id, s.resource, s.watcher, s.content_type, s.policy)  # fmt: skip
    head = _HEAD_V1.pack(1, s.owner, s.cseq, s.remote_cseq, s.version, s.expires_at, s.subscribed_at, 0)
    return head + marshal.dumps(static)


def test_layout_1_rows_decode_and_the_store_writes_them_back_as_layout_2(tmp_path: Path) -> None:
    s = sub("k1", routes=LONG_ROUTES[:1])
    s.owner, s.cseq, s.version = 3, 9, 4
    old = layout1(s)
    d = decode_row(old, "k1")
    fields = ("key", "call_id", "remote_tag", "local_uri", "remote_uri", "target", "routes", "peer", "event",
              "event_id", "resource", "watcher", "content_type", "policy", "expires_at", "cseq", "owner",
              "version", "state")  # fmt: skip
    assert {f: getattr(d, f) for f in fields} == {f: getattr(s, f) for f in fields}
    assert d.row_static == b""  # made again, as layout 2, by the next encode_row
    assert encode_row(d)[0] == 2
    store.save(tmp_path, {}, {"k1": old}, 100.0, 1000.0)
    _, srows = store.load(tmp_path, 100.0, 1000.0, workers=2)
    assert srows["k1"][0] == 2
    back = decode_row(srows["k1"], "k1")
    assert (back.owner, back.cseq, back.routes, back.peer) == (1, 9, LONG_ROUTES[:1], ("10.0.0.9", 5070))


def test_the_store_moves_the_last_notify_time_onto_the_new_clock(tmp_path: Path) -> None:
    """The row keeps when the last NOTIFY went (pacing); after a reboot the monotonic clock
    starts again, so a restored row's last_sent moves with its other times (else every
    change would be held until the old boot's time)."""
    s = sub("k1")
    s.expires_at, s.subscribed_at, s.last_sent = 1_000_600.0, 1_000_000.0, 1_000_000.0
    fresh = sub("k2")  # no NOTIFY yet: last_sent stays "never"
    fresh.expires_at = 1_000_600.0
    store.save(tmp_path, {}, {"k1": encode_row(s), "k2": encode_row(fresh)}, 1_000_010.0, 2_000_000_000.0)
    _, srows = store.load(tmp_path, 50.0, 2_000_000_060.0, workers=1)
    back, back2 = decode_row(srows["k1"], "k1"), decode_row(srows["k2"], "k2")
    assert back.last_sent == back.subscribed_at == 1_000_000.0 - 1_000_010.0 - 60.0 + 50.0
    assert back2.last_sent == -1e18
