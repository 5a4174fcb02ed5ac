"""The fan-out over rows against the object path, over the traffic of a server.

Random walks (seeded, 300 of them): SUBSCRIBEs from UDP, TCP, TLS and IPv6
peers, some with a Record-Route (the object path's destination rule), fetches,
refreshes that move the flow or the Contact, copies of earlier requests,
unsubscribes, PUBLISHes, NOTIFY answers 200/481/408/100, transport failures,
the policy reloaded (confirm, allow, polite-block, block), every subscription
ended, and time passing through retransmissions, Timer F, expiry and giveup;
windows of 0 to 5, pacing 0 or 5 s, ``notify_grace`` on or off. Each walk
drives six cores: the notifier without the row path (the object path), with
the compiled RowFan and with the reference one (each with its own twin's
NotifyTxns), each with the cache at 0 and at 16 384. After every step every
row-path core sent the same bytes to the same places as the object-path core
of its cache size, and holds the same rows and counters.

Written from a review (2026-12-08) whose harness found the key-reuse case
(tests/unit/test_held.py has it on its own).
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from simplefast._ref import fanout as ref_fanout
from simplefast.presence.agent import PresenceAgent, PresenceConfig
from simplefast.presence.state import MemoryPresentities
from simplefast.presence.subscribe import MemorySubscriptions
from simplefast.proxy.core import CoreConfig, SipCore
from simplefast.proxy.location import MemoryLocation
from simplefast.sip.peer import transport_of
from simplefast.sip.transaction import TransactionLayer
from tests.unit.test_held import PIDF, RES, answer_msg, publish_msg
from tests.unit.test_presence_core import ME

CONFIGS = [(0, "off"), (16384, "off"), (0, "ext"), (16384, "ext"), (0, "ref"), (16384, "ref")]
PEERS: list[tuple[tuple[Any, ...], bool]] = [
    (("10.0.0.9", 5070), False), (("10.0.0.9", 5070, "tcp", 7), True), (("2001:db8::9", 5070), False),
    (("10.0.0.9", 5070, "tls", 8), True),
]  # fmt: skip
WATCHERS = 6


def core(cache: int, mode: str, interval: float, window: int, grace: bool) -> SipCore:
    tl = TransactionLayer(branch_prefix="fixed")
    agent = PresenceAgent(
        tl, MemoryPresentities(),
        PresenceConfig(min_notify_interval=interval, notify_window=window, policies={"other.com": "confirm"},
                       pending_timeout=50.0, notify_grace=grace),
        contact=lambda peer: f"<{ME.contact_uri(transport_of(peer), ':' in str(peer[0]))}>",
        via=lambda dest: ME.sent_by(transport_of(dest), ":" in str(dest[0])), table=MemorySubscriptions(),
    )  # fmt: skip
    n = agent.notifier
    n.config.cache = n.by_key.cache_size = cache
    if mode == "off":
        n.fan = None
    elif mode == "ref":  # the reference twin, with its own twin's transactions
        t, held = n.txns, n.by_key
        n.txns = ref_fanout.NotifyTxns(t.branch_prefix, t1=t.t1, t2=t.t2, t4=t.t4)
        n.fan = ref_fanout.RowFan(
            n.txns, index=n.index, keys=held._keys, long=held._long, pinned=held.pinned, queued=held._queued,
            cache=held._cache, rowq=held._rowq, get=n.table.get, put=n.table.put_row, forget=held._forget,
            lost=held.pin_row, send=tl.send_stateless, wire=n._row_wire, ctypes=n._ctypes,
        )  # fmt: skip
    c = SipCore(CoreConfig(domains=frozenset({"example.com"}), local_hosts=frozenset({"10.0.0.1"})),
                MemoryLocation(), ME, tl=tl, presence=agent)  # fmt: skip
    c.tag_key = b"k" * 16
    c.enable_fast_subscribe()
    return c


def subscribe_msg(w: int, cseq: int, to_tag: str | None, expires: int | None, n: int, rr: bool,
                  port: int | None = None) -> bytes:  # fmt: skip
    dom = "other.com" if w % 3 == 2 else "example.com"
    to = f"<sip:{RES}@example.com>" + (f";tag={to_tag}" if to_tag else "")
    exp = f"Expires: {expires}\r\n" if expires is not None else ""
    route = "Record-Route: <sip:10.0.0.5;lr>\r\n" if rr else ""
    return (
        f"SUBSCRIBE sip:{RES}@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.0.0.9:{5070 + w};branch=z9hG4bKs{n}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:w{w}@{dom}>;tag=f{w}\r\nTo: {to}\r\nCall-ID: call{w}\r\n{route}"
        f"CSeq: {cseq} SUBSCRIBE\r\nContact: <sip:w{w}@10.0.0.9:{port or 5070 + w}>\r\n"
        f"Event: presence\r\n{exp}Content-Length: 0\r\n\r\n"
    ).encode()


def state_of(c: SipCore) -> tuple[Any, ...]:
    n = c.presence.notifier  # type: ignore[union-attr]
    return (dict(n.table.rows_), n.notifies_sent, n.notifies_queued, n.paced, dict(n.ended), dict(n.kept),
            {k: v for k, v in n.held_by.items() if v}, len(n.by_key), len(n._queue))  # fmt: skip


def walk(seed: int, steps: int = 40) -> None:
    rnd = random.Random(seed)
    interval, window, grace = rnd.choice([0.0, 5.0]), rnd.choice([0, 1, 2, 3, 5]), rnd.random() < 0.5
    cores = [core(cache, mode, interval, window, grace) for cache, mode in CONFIGS]
    now = 0.0
    dialogs: dict[int, tuple[str, int, bytes, tuple[Any, ...], bool, bool]] = {}
    pending: list[bytes] = []
    bodies = [PIDF, PIDF.replace(b"open", b"closed")]

    def feed(data: bytes, peer: tuple[Any, ...] = ("10.0.0.9", 5070), reliable: bool = False) -> list[Any]:
        outs = []
        for c in cores:
            c.on_message(data, peer, reliable=reliable, now=now)
            outs.append(c.outgoing())
        return outs

    for n in range(1, steps + 1):
        op = rnd.choice(["sub", "sub", "refresh", "copy", "publish", "publish", "answer", "answer", "wait",
                         "reauth", "tfail", "endall" if rnd.random() < 0.05 else "wait"])  # fmt: skip
        outs: list[Any]
        if op == "sub":
            w = rnd.randrange(WATCHERS)
            peer, rel = PEERS[w % 4] if rnd.random() < 0.5 else PEERS[0]
            expires, rr = rnd.choice([None, 0, 60, 600]), rnd.random() < 0.2
            data = subscribe_msg(w, 1, None, expires, n, rr)
            outs = feed(data, peer, rel)
            ok = [d for d, _ in outs[0] if d.startswith(b"SIP/2.0 200")]
            if ok and expires != 0:
                dialogs[w] = (ok[0].split(b";tag=")[-1].split(b"\r\n")[0].decode(), 1, data, peer, rel, rr)
        elif op in ("refresh", "copy") and dialogs:
            w = rnd.choice(sorted(dialogs))
            tag, cseq, data, peer, rel, rr = dialogs[w]
            if op == "refresh":
                cseq += 1
                data = subscribe_msg(w, cseq, tag, rnd.choice([0, 60, 600, None]), n, rr,
                                     rnd.choice([None, None, 6000]))  # fmt: skip
                if rnd.random() < 0.3:
                    peer, rel = rnd.choice(PEERS)
                dialogs[w] = (tag, cseq, data, peer, rel, rr)
            outs = feed(data, peer, rel)
        elif op == "publish":
            outs = feed(publish_msg(n, bodies[rnd.randrange(2)]))
        elif op == "answer" and pending:
            status = rnd.choice([200, 200, 200, 481, 408, 100])
            outs = feed(answer_msg(pending.pop(rnd.randrange(min(3, len(pending)))), status))
        elif op == "tfail" and pending:
            notify = pending.pop(rnd.randrange(len(pending)))
            outs = []
            for c in cores:
                c.transport_error(notify, now)
                outs.append(c.outgoing())
        elif op == "reauth":
            policy = rnd.choice(["confirm", "allow", "polite-block", "block"])
            outs = []
            for c in cores:
                c.presence.reconfigured(  # type: ignore[union-attr]
                    PresenceConfig(policies={"other.com": policy}, pending_timeout=50.0), [], now
                )
                outs.append(c.outgoing())
        elif op == "endall":
            outs = []
            for c in cores:
                c.presence.deactivate_all(now)  # type: ignore[union-attr]
                outs.append(c.outgoing())
        else:
            now += rnd.choice([0.5, 1, 3, 5, 6, 33, 45, 70, 700])
            outs = []
            for c in cores:
                got = []
                while (t := c.get_timer()) is not None and t <= now:
                    c.handle_timer(t)
                    got += c.outgoing()
                outs.append(got)
        states = [state_of(c) for c in cores]
        for i in range(2, len(cores)):
            base = i % 2  # the object-path core of the same cache size
            assert outs[i] == outs[base], (seed, n, op, CONFIGS[i])
            assert states[i] == states[base], (seed, n, op, CONFIGS[i])
        pending.extend(d for d, _ in outs[0] if d.startswith(b"NOTIFY "))


@pytest.mark.parametrize("first", range(0, 300, 50))
def test_the_row_path_sends_and_keeps_what_the_object_path_does(first: int) -> None:
    for seed in range(first, first + 50):
        walk(seed)
