"""The subscriptions a worker holds as rows (presence/subscribe.py ``Held``).

``Held`` keeps, per subscription, a 32-byte record of its key, its place in
its resource's list and its expiry timer; the subscription itself is its
row, decoded by ``get`` (a copy, written back by ``put``), with the last
ones kept as objects (``cache``). Tested here: records, lists and their
swap-remove, reuse of a freed record (a stale reference finds nothing),
long keys, expiry buckets, the cache's order and size, pinned subscriptions
(a row that fits no table, a package's own state), rows of another worker.

And the property the design rests on: a notifier keeping no object (cache
0, every access decodes the row) behaves exactly as one keeping them all.
Two SIP cores, one of each, get the same hypothesis-drawn sequences of
SUBSCRIBEs (new, refreshed, ended, copies), PUBLISHes, NOTIFY answers (200,
481, 408, none), pacing, a small NOTIFY window, pending watchers given up,
and time, with and without ``notify_grace``; they send the same bytes and
keep the same rows.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simplefast.presence.agent import PresenceAgent, PresenceConfig
from simplefast.presence.state import MemoryPresentities
from simplefast.presence.subscribe import Held, MemorySubscriptions, Subscription
from simplefast.proxy.core import CoreConfig, SipCore
from simplefast.proxy.location import MemoryLocation
from simplefast.sip.peer import transport_of
from simplefast.sip.transaction import TransactionLayer
from simplefast.testing import REPO
from tests.unit.test_presence_core import ME


def sub(key: str, resource: str = "sip:a@example.com", expires_at: float = 600.0) -> Subscription:
    return Subscription(
        key=key, call_id=f"c-{key}", remote_tag="t", local_uri=resource, remote_uri="sip:w@example.com",
        target="sip:w@10.0.0.9", routes=(), peer=("10.0.0.9", 5060), event="presence", event_id=None,
        resource=resource, watcher="sip:w@example.com", content_type="application/pidf+xml", policy="allow",
        expires_at=expires_at,
    )  # fmt: skip


def test_records_lists_and_swap_remove() -> None:
    h = Held(MemorySubscriptions(), 0, cache=0)
    subs = [sub(f"k{i}") for i in range(4)]
    assert [h.add(s) for s in subs] == [True, False, False, False]
    assert [s.rec for s in subs] == [0, 1, 2, 3] and len(h) == 4
    assert h.keys_of("presence", "sip:a@example.com") == ["k0", "k1", "k2", "k3"]
    assert h.remove(subs[1]) is False  # the last record takes its place
    assert h.keys_of("presence", "sip:a@example.com") == ["k0", "k3", "k2"]
    assert h.remove(subs[1]) is None  # not held any more
    got = h.get("k3")
    assert got is not None and got is not subs[3] and got.rec == 3  # a copy, decoded from the row
    # the freed record goes to the next subscription; a stale reference to it finds nothing
    new = sub("k9", resource="sip:b@example.com")
    assert h.add(new) is True and new.rec == 1
    assert h.get("k1") is None and not h.holds(subs[1]) and h.holds(new)
    assert sorted(h.keys()) == ["k0", "k2", "k3", "k9"]
    for s in (subs[0], subs[2], subs[3]):
        h.remove(s)
    assert h.remove(new) is True and not h.lists and len(h) == 0 and not h.table.rows_  # type: ignore[attr-defined]


def test_long_keys_rows_of_others_and_expiry_buckets() -> None:
    table = MemorySubscriptions()
    h = Held(table, 1, cache=0)
    long = sub("x" * 40, expires_at=10.05)
    h.add(long)
    assert h.get("x" * 40) is not None and h.keys() == ["x" * 40]
    other = sub("o1")
    other.owner = 2
    table.put(other)  # a row of another worker: not held here
    assert h.get("o1") is None and "o1" not in h
    # expiry: a bucket of 1/8 s, at or after the time (10.05 -> 10.125)
    assert h.next_expiry() == 10.125
    assert h.expiring(10.1) == [] and h.expiring(10.125) == ["x" * 40] and h.next_expiry() is None


def test_the_cache_keeps_the_last_ones_and_pins_what_has_no_other_copy() -> None:
    class Refusing(MemorySubscriptions):
        def put(self, s: Subscription, row: bytes | None = None) -> bool:
            if s.key == "big":
                return False
            return super().put(s, row)

    h = Held(Refusing(), 0, cache=2)
    a, b, c = sub("a"), sub("b"), sub("c")
    for s in (a, b, c):
        h.add(s)
    assert h.get("c") is c and h.get("b") is b and h.get("a") is not a  # a went first
    big = sub("big")
    h.add(big)
    assert h.pinned == {"big": big} and h.get("big") is big  # its only copy
    winfo = sub("w")
    winfo.extra = object()  # a package's own state is not in the row
    h.add(winfo)
    assert h.get("w") is winfo and "w" in h.pinned
    h.remove(big)
    assert "big" not in h.pinned and h.get("big") is None


# ---------------------------------------------------------------- cache 0 == cache all

PIDF = (REPO / "tests" / "vectors" / "pidf" / "rfc3863-4.2.2-default-ns.xml").read_bytes()
RES = "alice"


def core(cache: int, grace: bool, rows: bool = True, interval: float = 5.0) -> SipCore:
    tl = TransactionLayer(branch_prefix="fixed")
    agent = PresenceAgent(
        tl, MemoryPresentities(),
        PresenceConfig(min_notify_interval=interval, notify_window=2, policies={"other.com": "confirm"},
                       pending_timeout=50.0, notify_grace=grace),
        contact=lambda peer: f"<{ME.contact_uri(transport_of(peer), False)}>",
        via=lambda dest: ME.sent_by(transport_of(dest), False), table=MemorySubscriptions(),
    )  # fmt: skip
    agent.notifier.config.cache = cache
    agent.notifier.by_key.cache_size = cache
    if not rows:
        agent.notifier.fan = None  # every NOTIFY through a Subscription object
    c = SipCore(CoreConfig(domains=frozenset({"example.com"}), local_hosts=frozenset({"10.0.0.1"})),
                MemoryLocation(), ME, tl=tl, presence=agent)  # fmt: skip
    c.tag_key = b"k" * 16
    c.enable_fast_subscribe()
    return c


def subscribe_msg(w: int, cseq: int, to_tag: str | None, expires: int | None, n: int) -> bytes:
    dom = "other.com" if w % 3 == 2 else "example.com"
    to = f"<sip:{RES}@example.com>" + (f";tag={to_tag}" if to_tag else "")
    exp = f"Expires: {expires}\r\n" if expires is not None else ""
    return (
        f"SUBSCRIBE sip:{RES}@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.0.0.9:{5070 + w};branch=z9hG4bKs{n}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:w{w}@{dom}>;tag=f{w}\r\nTo: {to}\r\nCall-ID: call{w}\r\n"
        f"CSeq: {cseq} SUBSCRIBE\r\nContact: <sip:w{w}@10.0.0.9:{5070 + w}>\r\nEvent: presence\r\n{exp}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def publish_msg(n: int, body: bytes) -> bytes:
    return (
        f"PUBLISH sip:{RES}@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.8:5080;branch=z9hG4bKp{n}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:{RES}@example.com>;tag=a{n}\r\nTo: <sip:{RES}@example.com>\r\n"
        f"Call-ID: p{n}\r\nCSeq: 1 PUBLISH\r\nEvent: presence\r\nExpires: 60\r\n"
        f"Content-Type: application/pidf+xml\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def answer_msg(notify: bytes, status: int) -> bytes:
    head = notify.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    keep = [h for h in head[1:] if h.split(b":", 1)[0] in (b"Via", b"From", b"To", b"Call-ID", b"CSeq")]
    return b"\r\n".join([b"SIP/2.0 %d X" % status, *keep, b"Content-Length: 0", b"", b""])


ops = st.lists(
    st.one_of(
        st.tuples(st.just("sub"), st.integers(0, 5), st.sampled_from([None, 0, 60, 600])),
        st.tuples(st.just("refresh"), st.integers(0, 5), st.sampled_from([0, 60, 600, None])),
        st.tuples(st.just("copy"), st.integers(0, 5), st.just(0)),
        st.tuples(st.just("publish"), st.integers(0, 1), st.just(0)),
        st.tuples(st.just("answer"), st.sampled_from([200, 200, 481, 408]), st.integers(0, 3)),
        st.tuples(st.just("wait"), st.sampled_from([0.5, 3, 6, 45, 70, 700]), st.just(0)),
    ),
    max_size=30,
)


@pytest.mark.parametrize(("grace", "interval"), [(False, 5.0), (True, 5.0), (False, 0.0)])
@settings(max_examples=150, deadline=None)
@given(seq=ops)
def test_a_notifier_keeping_no_object_behaves_as_one_keeping_them_all(
    grace: bool, interval: float, seq: list[Any]
) -> None:
    """And the fan-out over rows (the first two) sends what the object path (the last two)
    does, in the same order, and leaves the same rows."""
    cores = [core(0, grace, True, interval), core(16384, grace, True, interval),
             core(0, grace, False, interval), core(16384, grace, False, interval)]  # fmt: skip
    now = 0.0
    state: dict[int, tuple[str, int, bytes]] = {}  # watcher -> (our tag, last CSeq, last request)
    pending: list[bytes] = []  # NOTIFYs not answered yet (the same for both)
    bodies = [PIDF, PIDF.replace(b"open", b"closed")]
    n = 0

    def feed(data: bytes) -> list[bytes]:
        outs = []
        for c in cores:
            c.on_message(data, ("10.0.0.9", 5070), reliable=False, now=now)
            outs.append([d for d, _ in c.outgoing()])
        assert all(o == outs[0] for o in outs)
        same_state()
        return outs[0]

    def same_state() -> None:  # the rows and what the notifier counts, after every step
        got = []
        for c in cores:
            n = c.presence.notifier  # type: ignore[union-attr]
            got.append((n.table.rows_, n.notifies_sent, n.notifies_queued, n.paced, n.ended, n.kept,
                        +n.held_by, len(n.by_key), len(n._queue)))  # fmt: skip
        assert all(g == got[0] for g in got)

    def collect(out: list[bytes]) -> None:
        pending.extend(d for d in out if d.startswith(b"NOTIFY "))

    for op, a, b in seq:
        n += 1
        if op == "sub":
            data = subscribe_msg(a, 1, None, b, n)
            out = feed(data)
            ok = [d for d in out if d.startswith(b"SIP/2.0 200")]
            if ok and b != 0:
                tag = ok[0].split(b";tag=")[-1].split(b"\r\n")[0].decode()
                state[a] = (tag, 1, data)
            collect(out)
        elif op in ("refresh", "copy") and a in state:
            tag, cseq, last = state[a]
            if op == "copy":
                data = last
            else:
                cseq += 1
                data = subscribe_msg(a, cseq, tag, b, n)
                state[a] = (tag, cseq, data)
            collect(feed(data))
        elif op == "publish":
            collect(feed(publish_msg(n, bodies[a])))
        elif op == "answer":
            for notify in pending[: b + 1]:
                collect(feed(answer_msg(notify, a)))
            del pending[: b + 1]
        elif op == "wait":
            now += a
            outs = []
            for c in cores:
                got = []
                while (t := c.get_timer()) is not None and t <= now:
                    c.handle_timer(t)
                    got += [d for d, _ in c.outgoing()]
                outs.append(got)
            assert all(o == outs[0] for o in outs)
            same_state()
            collect(outs[0])
    rows = [c.presence.notifier.table.rows_ for c in cores]  # type: ignore[union-attr]
    assert all(r == rows[0] for r in rows)
    assert len({len(c.presence.notifier.by_key) for c in cores}) == 1  # type: ignore[union-attr]
    # the same NOTIFYs went (sent and queued), whichever path
    assert (
        len(
            {
                (c.presence.notifier.notifies_sent, c.presence.notifier.notifies_queued)  # type: ignore[union-attr]
                for c in cores
            }
        )
        == 1
    )


@pytest.mark.parametrize("rows", [True, False])
def test_a_late_copy_of_a_subscribe_does_not_remake_a_key_whose_notifies_wait(rows: bool) -> None:
    """Our tag is a keyed hash of the request, so a copy of an initial SUBSCRIBE that comes
    after its subscription ended and its retired entry went makes the same key again. While
    NOTIFYs of the old subscription still wait in the queue (their entries name the key) it
    is answered as retired, 200 with Expires 0, and the old NOTIFYs go as the old one's:
    the same with and without the fan-out over rows, with and without the cache."""
    results = []
    for cache in (0, 16384):
        c = core(cache, True, rows, interval=0.0)
        n = c.presence.notifier  # type: ignore[union-attr]
        n.config.notify_window = 1

        def feed(data: bytes, now: float, c: SipCore = c) -> list[bytes]:
            while (t := c.get_timer()) is not None and t <= now:
                c.handle_timer(t)
            c.outgoing()
            c.on_message(data, ("10.0.0.9", 5070), reliable=False, now=now)
            return [d for d, _ in c.outgoing()]

        first = {}
        for w in range(6):  # each initial NOTIFY answered
            data = subscribe_msg(w, 1, None, 3600, 100 + w)
            out = feed(data, 0.0)
            tag = out[0].split(b";tag=")[-1].split(b"\r\n")[0].decode()
            first[w] = (tag, data)
            for d in out:
                if d.startswith(b"NOTIFY"):
                    feed(answer_msg(d, 200), 0.0)
        # watcher 0's NOTIFY goes, unanswered; the others wait, each 32 s (Timer F) behind the one
        # before (the window is 1)
        feed(publish_msg(1, PIDF), 1.0)
        tag, data = first[5]
        assert n.by_key.busy(tag)
        feed(subscribe_msg(5, 2, tag, 0, 200), 2.0)  # watcher 5 unsubscribes; its change NOTIFY waits
        feed(publish_msg(2, PIDF.replace(b"open", b"closed")), 69.0)  # time passes, the backlog stays
        assert tag not in n.retired and tag not in n._retired_old and n.by_key.busy(tag)
        out = feed(data, 70.0)  # the copy: same bytes, same tag
        assert out and out[0].startswith(b"SIP/2.0 200 ") and b"\r\nExpires: 0\r\n" in out[0]
        assert not any(d.startswith(b"NOTIFY") for d in out) and tag not in n.by_key
        results.append((n.table.rows_, n.notifies_sent, n.retransmissions))
    assert results[0] == results[1]


def test_a_reload_that_raises_the_pending_timeout_still_gives_up() -> None:
    """The giveup timer is set when the subscription is made; a SIGHUP raising
    pending_timeout meanwhile does not leave the pending watcher waiting for ever."""
    from tests.unit.test_presence_core import answer, make, notifies, run_until, subscribe

    c, agent = make(policies={"example.com": "confirm"}, pending_timeout=50.0)
    (_, _), (n, _) = subscribe(c, now=0.0, expires=3600)
    answer(c, n, now=0.0)
    assert n.get("Subscription-State") == "pending;expires=3600"
    agent.reconfigured(PresenceConfig(policies={"example.com": "confirm"}, pending_timeout=100.0), [], 1.0)
    sent = notifies(run_until(c, 60.0))
    assert [m.get("Subscription-State") for m in sent][:1] == ["terminated;reason=giveup"]
    assert agent.notifier.ended["giveup"] == 1 and agent.notifier.count() == 0
