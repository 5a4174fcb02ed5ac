"""The notifier's stateless SUBSCRIBE path (FastSubscriber), both twins.

What it answers (the cases of simplefast/_ref/fastsub.py's docstring), what it
declines untouched (a SipMessage back, the notifier as it was, ``declined`` +
1), what it does not take at all (None), retransmissions without a
transaction, that the twins agree, and the key property: a SipCore with the
fast path enabled answers every request with the bytes (200s and NOTIFYs) and
the subscriptions of a SipCore without it.
"""

from __future__ import annotations

import itertools
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simplefast._impl import ACTIVE
from simplefast._impl import sipmsg as active_codec
from simplefast.presence.agent import PresenceAgent, PresenceConfig
from simplefast.presence.state import MemoryPresentities
from simplefast.presence.subscribe import TERMINATED, MemorySubscriptions
from simplefast.proxy.core import SUPPORTED, CoreConfig, SipCore
from simplefast.proxy.location import MemoryLocation
from simplefast.proxy.proxy import ProxyAddress
from simplefast.sip.peer import transport_of
from simplefast.sip.transaction import TransactionLayer
from simplefast.testing import OtherCodec, fnv_tag, load_impl

KEY = b"k" * 16
W = ("10.0.0.9", 5070)
STREAM = ("10.0.0.9", 5070, "tcp", 3)
ME = ProxyAddress("10.0.0.1", 5060, 40000)
EVENTS = "presence, presence.winfo"
BRANCH_PREFIX = "bp~sfw0"  # a worker's (after the magic cookie), with its steering marker
TAG_PREFIX = BRANCH_PREFIX  # the notifier's: the branch prefix without the cookie (subscribe.py)


def sub(
    n: str = "1", *, user: str = "alice", host: str = "example.com", ruri: str | None = None,
    to_tag: str | None = None, cseq: int = 1, frm: str = "<sip:w1@example.com>", from_tag: str = "wt",
    event: str | None = "presence", accept: str | None = "application/pidf+xml",
    expires: int | str | None = 600,
    contact: str | None = "<sip:w1@10.0.0.9:5070>", extra: str = "", call_id: str | None = None,
    branch: str | None = None,
) -> bytes:  # fmt: skip
    """A SIPp-shaped SUBSCRIBE (bench/sipp/subscribe_cycle.xml); None drops a header."""
    aor = f"sip:{user}@{host}"
    text = f"SUBSCRIBE {ruri or aor} SIP/2.0\r\n"
    branch = branch or f"z9hG4bK{n}-{cseq}"
    text += f"Via: SIP/2.0/UDP 10.0.0.9:5070;branch={branch};rport\r\nMax-Forwards: 70\r\n"
    text += f"From: {frm};tag={from_tag}\r\nTo: <{aor}>{';tag=' + to_tag if to_tag else ''}\r\n"
    text += f"Call-ID: {call_id or 'c' + n}\r\nCSeq: {cseq} SUBSCRIBE\r\n"
    hdrs = {"Contact": contact, "Event": event, "Accept": accept, "Expires": expires}
    text += "".join(f"{k}: {v}\r\n" for k, v in hdrs.items() if v is not None)
    return f"{text}{extra}Content-Length: 0\r\n\r\n".encode()


def key_of(n: str = "1", cseq: int = 1, from_tag: str = "wt") -> str:
    """Our tag of the subscription the initial SUBSCRIBE ``sub(n)`` makes."""
    return TAG_PREFIX + fnv_tag(KEY, f"z9hG4bK{n}-{cseq}", f"c{n}", cseq, from_tag)


def header(resp: bytes, name: bytes) -> list[bytes]:
    head = resp.partition(b"\r\n\r\n")[0]
    return [v for k, _, v in (line.partition(b": ") for line in head.split(b"\r\n")[1:]) if k == name]


def make_core(impl: Any | None, **cfg: Any) -> tuple[SipCore, PresenceAgent]:
    """A core with the fast path of ``impl`` (None: without it); the same branches and tags
    in every core."""
    tl = TransactionLayer(branch_prefix=BRANCH_PREFIX)
    agent = PresenceAgent(
        tl, MemoryPresentities(), PresenceConfig(min_notify_interval=0.0, **cfg),
        contact=lambda peer: f"<{ME.contact_uri(transport_of(peer), False)}>",
        via=lambda dest: ME.sent_by(transport_of(dest), False), table=MemorySubscriptions(),
    )  # fmt: skip
    ours = CoreConfig(
        domains=frozenset({"example.com"}), local_hosts=frozenset({"10.0.0.1", "10.0.0.1:5060"})
    )
    c = SipCore(ours, MemoryLocation(), ME, tl=tl, presence=agent)
    c._tag_prefix = "tp."
    c.tag_key = KEY
    if impl is not None:
        assert c.enable_fast_subscribe()
        c.fast_sub = impl.fastsub.FastSubscriber(
            c.config, agent, server=c.config.server_header, supported=SUPPORTED, tag_key=KEY,
            allow_events=c.allow_events,
        )  # fmt: skip
        if impl.name != ACTIVE:
            c.fast_sub = OtherCodec(c.fast_sub, active_codec.parse_message, "subscribe")
    return c, agent


class Rig:
    """One FastSubscriber of a twin on a presence agent of its own."""

    def __init__(self, impl: Any, **cfg: Any) -> None:
        self.core, self.agent = make_core(impl, **cfg)
        self.fs = self.core.fast_sub
        self.notifier = self.agent.notifier

    def __call__(self, data: bytes, peer: tuple[Any, ...] = W, now: float = 100.0) -> Any:
        return self.fs.subscribe(data, peer, now)

    def state(self) -> list[tuple[Any, ...]]:
        return [
            (s.key, s.call_id, s.remote_tag, s.target, s.peer, s.remote_cseq, s.expires_at, s.state,
             s.resource, s.watcher, s.content_type, s.policy, s.cseq)
            for s in self.notifier.by_key.values()
        ]  # fmt: skip

    def ok(self, data: bytes, peer: tuple[Any, ...] = W, now: float = 100.0) -> bytes:
        before = self.fs.answered
        out = self(data, peer, now)
        assert type(out) is bytes, out
        assert self.fs.answered == before + 1
        return out

    def declines(self, data: bytes, peer: tuple[Any, ...] = W, now: float = 100.0) -> Any:
        state, declined = self.state(), self.fs.declined
        out = self(data, peer, now)
        assert out is not None and type(out) is not bytes, out
        assert out.method == "SUBSCRIBE"
        assert self.state() == state and self.fs.declined == declined + 1 and self.fs.notify is None
        return out


# ------------------------------------------------------------------ answered


def test_the_sipp_subscribe_cycle_is_taken(impl: Any) -> None:
    r = Rig(impl)
    key = key_of()
    out = r.ok(sub())
    assert out == (
        b"SIP/2.0 200 OK\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bK1-1;rport=5070;received=10.0.0.9\r\n"
        b"From: <sip:w1@example.com>;tag=wt\r\nTo: <sip:alice@example.com>;tag=" + key.encode() + b"\r\n"
        b"Call-ID: c1\r\nCSeq: 1 SUBSCRIBE\r\nExpires: 600\r\nContact: <sip:10.0.0.1:5060>\r\n"
        b"Allow-Events: " + EVENTS.encode() + b"\r\nServer: simplefast\r\nContent-Length: 0\r\n\r\n"
    )
    s = r.fs.notify
    assert (
        r.notifier.by_key[key].expires_at == s.expires_at
        and s.key == key
        and s.resource == "sip:alice@example.com"
        and s.watcher == "sip:w1@example.com"
    )
    assert (s.expires_at, s.remote_cseq, s.state, s.target) == (700.0, 1, "active", "sip:w1@10.0.0.9:5070")
    assert list(r.notifier.watchers) == [("presence", "sip:alice@example.com")]
    out = r.ok(sub(to_tag=key, cseq=2, expires=0), now=110.0)
    assert header(out, b"Expires") == [b"0"] and header(out, b"To") == [
        b"<sip:alice@example.com>;tag=" + key.encode()
    ]
    assert r.fs.notify.key == key and r.fs.notify.state == TERMINATED
    assert not r.notifier.by_key and not r.notifier.watchers
    assert r.notifier.ended["unsubscribed"] == 1 and r.notifier.retired == {key: 2}


def test_the_answer_is_the_general_paths(impl: Any) -> None:
    """The bytes build_response gives for the notifier's headers, as SipCore._respond adds them."""
    r = Rig(impl)
    out = r.ok(sub(expires=100000))
    msg = impl.sipmsg.parse_message(sub(expires=100000))
    hdrs = [("Expires", "3600"), ("Contact", "<sip:10.0.0.1:5060>"), ("Allow-Events", EVENTS),
            ("Server", "simplefast")]  # fmt: skip
    want = impl.sipmsg.build_response(msg, 200, "OK", to_tag=key_of(), extra_headers=hdrs, rport=5070,
                                      received="10.0.0.9")  # fmt: skip
    assert out == bytes(want)


def test_refresh_moves_the_target_and_the_expiry(impl: Any) -> None:
    r = Rig(impl)
    r.ok(sub())
    s = r.fs.notify
    out = r.ok(sub(to_tag=key_of(), cseq=5, expires=None, contact="<sip:w1@10.0.0.10:5080>"), now=200.0)
    assert header(out, b"Expires") == [b"3600"] and r.fs.notify.key == s.key
    s = r.notifier.by_key[s.key]
    assert (s.remote_cseq, s.expires_at, s.target, s.state) == (5, 3800.0, "sip:w1@10.0.0.10:5080", "active")


def test_retransmissions_are_answered_again_nothing_changed(impl: Any) -> None:
    r = Rig(impl)
    first = r.ok(sub())
    state = r.state()
    assert r.ok(sub()) == first and r.fs.notify is None and r.state() == state  # the initial again
    r.ok(sub(to_tag=key_of(), cseq=2, expires=300), now=101.0)
    state = r.state()
    again = r.ok(sub(to_tag=key_of(), cseq=2, expires=300), now=101.0)
    assert header(again, b"Expires") == [b"300"] and r.fs.notify is None and r.state() == state
    bye = r.ok(sub(to_tag=key_of(), cseq=3, expires=0), now=102.0)
    assert r.ok(sub(to_tag=key_of(), cseq=3, expires=0), now=110.0) == bye and r.fs.notify is None
    assert header(r.ok(sub(), now=111.0), b"Expires") == [b"0"]  # the initial once more: ended
    assert r.notifier.retransmissions == 4 and r.state() == []
    # another CSeq of the ended dialog, or the end of the retirement: the general path (481)
    r.declines(sub(to_tag=key_of(), cseq=4, expires=0), now=112.0)
    window = r.notifier.retire_window
    r.notifier.handle_timer(102.0 + window)
    r.notifier.handle_timer(102.0 + 2 * window)
    r.declines(sub(to_tag=key_of(), cseq=3, expires=0), now=102.0 + 2 * window)


@pytest.mark.parametrize(
    "peer,via",
    [(("10.1.1.1", 7000), b"rport=7000;received=10.1.1.1"),
     (("10.1.1.1", 7000, "c"), b"rport=7000;received=10.1.1.1"), (("::1", 7000), b"rport=7000;received=::1")],
)  # fmt: skip
def test_via_stamp(impl: Any, peer: tuple[Any, ...], via: bytes) -> None:
    out = Rig(impl).ok(sub(), peer=peer)
    assert header(out, b"Via") == [b"SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bK1-1;" + via]


TAKEN = {
    "host-case": (sub(host="EXAMPLE.Com"), "sip:alice@example.com"),
    "ruri-port-params": (sub(ruri="sip:alice@example.com:5060;transport=udp"), "sip:alice@example.com"),
    "no-accept": (sub(accept=None), "sip:alice@example.com"),
    "accept-wildcard": (sub(accept="text/plain, application/*"), "sip:alice@example.com"),
    "event-case-spaces": (sub(event=" Presence "), "sip:alice@example.com"),
    "from-no-user": (sub(frm="<sip:example.net>"), "sip:alice@example.com"),
    "itself": (sub(frm="<sip:alice@example.com>"), "sip:alice@example.com"),
    "record-route": (sub(extra="Record-Route: <sip:10.0.0.7;lr>\r\n"), "sip:alice@example.com"),
}


@pytest.mark.parametrize("name", list(TAKEN))
def test_taken(impl: Any, name: str) -> None:
    data, resource = TAKEN[name]
    r = Rig(impl)
    r.ok(data)
    assert r.fs.notify.resource == resource and list(r.notifier.by_key) == [r.fs.notify.key]


# ------------------------------------------------------------------ declined

DECLINED = {
    "other-event": sub(event="dialog"),
    "event-id": sub(event="presence;id=1"),
    "winfo": sub(event="presence.winfo"),
    "no-event": sub(event=None),
    "not-acceptable": sub(accept="text/plain"),
    "too-brief": sub(expires=30),
    "fetch": sub(expires=0),
    "bad-expires": sub(expires="soon"),
    "other-domain": sub(host="other.org"),
    "no-user": sub(ruri="sip:example.com"),
    "escaped-user": sub(user="al%69ce"),
    "from-tel": sub(frm="<tel:+123>"),
    "from-escaped": sub(frm="<sip:w%31@example.com>"),
    "contact-tel": sub(contact="<tel:+123>"),
    "no-contact": sub(contact=None),
    "require": sub(extra="Require: foo\r\n"),
    "unknown-tag": sub(to_tag="nope", cseq=2),
}


@pytest.mark.parametrize("name", list(DECLINED))
def test_declined(impl: Any, name: str) -> None:
    Rig(impl).declines(DECLINED[name])


@pytest.mark.parametrize("policy", ["confirm", "block", "polite-block"])
def test_only_allowed_watchers_are_taken(impl: Any, policy: str) -> None:
    r = Rig(impl, default_policy=policy)
    r.declines(sub())
    r.ok(sub(frm="<sip:alice@example.com>"))  # the presentity itself


def test_a_stream_is_declined(impl: Any) -> None:
    Rig(impl).declines(sub(), peer=STREAM)


IN_DIALOG_DECLINED = {
    "other-call-id": lambda k: sub(to_tag=k, cseq=2, call_id="other"),
    "other-from-tag": lambda k: sub(to_tag=k, cseq=2, from_tag="x"),
    "lower-cseq": lambda k: sub(to_tag=k, cseq=0),
    "too-brief": lambda k: sub(to_tag=k, cseq=2, expires=30),
    "contact-tel": lambda k: sub(to_tag=k, cseq=2, contact="<tel:+1>"),
    "not-ours": lambda k: sub(to_tag=k, cseq=2, ruri="sip:w1@10.9.9.9"),
    "other-event": lambda k: sub(to_tag=k, cseq=2, event="dialog"),
}


@pytest.mark.parametrize("name", list(IN_DIALOG_DECLINED))
def test_in_dialog_declined(impl: Any, name: str) -> None:
    r = Rig(impl)
    r.ok(sub())
    r.declines(IN_DIALOG_DECLINED[name](key_of()), now=101.0)


def test_in_dialog_to_our_contact_is_taken(impl: Any) -> None:
    r = Rig(impl)
    r.ok(sub())
    r.ok(sub(to_tag=key_of(), cseq=2, ruri="sip:10.0.0.1:5060"), now=101.0)
    r.ok(sub(to_tag=key_of(), cseq=3, ruri="sip:w1@10.0.0.1"), now=102.0)


def test_a_chat_room_is_declined(impl: Any) -> None:
    r = Rig(impl)
    r.fs.room = lambda user, host, local: "room@example.com" if user == "room" else None
    r.declines(sub(user="room"))
    r.ok(sub())


NOT_TAKEN = [b"", b"SUBSCRIBE", b"SUBSCRIBEx sip:a SIP/2.0\r\n\r\n", b"OPTIONS sip:a SIP/2.0\r\n\r\n",
             b"SUBSCRIBE \x00 SIP/2.0\r\n\r\n"]  # fmt: skip


@pytest.mark.parametrize("data", NOT_TAKEN)
def test_none(impl: Any, data: bytes) -> None:
    r = Rig(impl)
    assert r(data) is None and (r.fs.answered, r.fs.declined) == (0, 0)


def test_argument_checks(impl: Any) -> None:
    r = Rig(impl)
    with pytest.raises(TypeError):
        r.fs.subscribe(sub(), ["10.0.0.9", 5070], 1.0)
    with pytest.raises(TypeError):
        r.fs.subscribe(sub(), W, "now")
    with pytest.raises(ValueError):
        r.fs.allow_events = "presence\r\nX: y"
    with pytest.raises(ValueError):
        impl.fastsub.FastSubscriber(r.core.config, r.agent, server="a\nb", supported=(), tag_key=KEY,
                                    allow_events="presence")  # fmt: skip


# ------------------------------------------------------------------ the general path


def run(cores: list[SipCore], now: float, data: bytes, peer: tuple[Any, ...]) -> list[Any]:
    """Timers due, then the datagram, to every core: the same datagrams out of each."""
    for c in cores:
        c.handle_timer(now)
    outs = [c.outgoing() for c in cores]
    assert all(o == outs[0] for o in outs), "timers"
    for c in cores:
        c.on_message(data, peer, reliable=len(peer) == 4, now=now)
    outs = [c.outgoing() for c in cores]
    for o in outs[1:]:
        assert o == outs[0]
    return outs[0]


def same_state(agents: list[PresenceAgent]) -> None:
    def state(a: PresenceAgent) -> Any:
        n = a.notifier
        subs = sorted((s.key, s.call_id, s.remote_tag, s.target, s.peer, s.remote_cseq, s.expires_at, s.state,
                       s.cseq, s.version, s.routes) for s in n.by_key.values())  # fmt: skip
        return subs, sorted(n.watchers), dict(n.ended), n.table.rows_

    first = state(agents[0])
    for a in agents[1:]:
        assert state(a) == first


def answer_notifies(cores: list[SipCore], out: list[Any], now: float) -> None:
    """200 to every NOTIFY sent (as SIPp does)."""
    for data, _dest in out:
        if data.startswith(b"NOTIFY "):
            m = active_codec.parse_message(data)
            vias = "".join(f"Via: {v}\r\n" for v in m.get_all("Via"))
            resp = (f"SIP/2.0 200 OK\r\n{vias}From: {m.get('From')}\r\nTo: {m.get('To')}\r\n"
                    f"Call-ID: {m.call_id}\r\nCSeq: {m.get('CSeq')}\r\n"
                    "Content-Length: 0\r\n\r\n").encode()  # fmt: skip
            run(cores, now, resp, W)


# name: ([(now, datagram, peer)], how many of them the fast path answers)
SCENARIOS: dict[str, tuple[list[tuple[float, bytes, tuple[Any, ...]]], int]] = {
    "cycle-with-retransmissions": ([
        (100.0, sub(), W),
        (100.0, sub(), W),  # the datagram again (the general path's transaction answers it)
        (101.0, sub(to_tag=key_of(), cseq=2, expires=300, contact="<sip:w1@10.0.0.9:5071>"), W),
        (101.0, sub(to_tag=key_of(), cseq=2, expires=300, contact="<sip:w1@10.0.0.9:5071>"), W),
        (102.0, sub(to_tag=key_of(), cseq=3, expires=0), W),
        (102.0, sub(to_tag=key_of(), cseq=3, expires=0), W),
        (103.0, sub(to_tag=key_of(), cseq=4), W),  # 481 on both
    ], 6),
    "rejections-on-the-general-path": ([
        (100.0, sub("2", expires=30), W),
        (100.0, sub("3", accept="text/plain"), W),
        (100.0, sub("4", event="dialog"), W),
        (100.0, sub("5", expires=0), W),  # a fetch
        (100.0, sub("6", contact="<tel:+1>"), W),
        (100.0, sub("7"), STREAM),
        (100.0, sub("8", to_tag="unknown", cseq=2), W),
    ], 0),
    "expiry-and-several-watchers": ([
        (100.0, sub("1", expires=60), W),
        (101.0, sub("2", frm="<sip:w2@example.com>"), W),
        (161.0, sub("3", frm="<sip:w3@example.com>", expires=120), W),  # the first one expired
        (170.0, sub("2", to_tag=key_of("2"), cseq=2, expires=0), W),
        (170.0, sub("1", to_tag=key_of("1"), cseq=2, expires=0), W),  # ended by timeout: 481
    ], 4),
}  # fmt: skip


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_fast_path_answers_as_the_general_path(impl: Any, name: str) -> None:
    steps, fast_answers = SCENARIOS[name]
    (fast, fa), (slow, sa) = make_core(impl), make_core(None)
    for now, data, peer in steps:
        out = run([fast, slow], now, data, peer)
        assert out and out[0][0].startswith(b"SIP/2.0 ")  # the answer first, then its NOTIFY
        answer_notifies([fast, slow], out, now)
        same_state([fa, sa])
    assert fast.fast_sub.answered == fast_answers


@pytest.mark.parametrize("mode", ["shedding", "draining"])
def test_copies_are_answered_while_shedding_or_draining(impl: Any, mode: str) -> None:
    """Requests the fast path took have no server transaction: while the worker sheds load or
    drains, their copies are still answered (the general path would shed or drop them), and
    nothing new is taken."""
    c, agent = make_core(impl)
    c.on_message(sub("1"), W, reliable=False, now=100.0)
    first = c.outgoing()[0][0]
    c.on_message(sub("2"), W, reliable=False, now=100.0)
    c.on_message(sub("2", to_tag=key_of("2"), cseq=2, expires=0), W, reliable=False, now=100.0)
    c.outgoing()
    if mode == "shedding":
        c.shed_fraction = 1.0
    else:
        c.draining = True
    c.on_message(sub("1"), W, reliable=False, now=100.0)  # a copy of the initial SUBSCRIBE
    assert c.outgoing() == [(first, W)]  # the same 200, no NOTIFY
    c.on_message(sub("2", to_tag=key_of("2"), cseq=2, expires=0), W, reliable=False, now=101.0)
    ((out, _),) = c.outgoing()  # a copy of the unsubscribe: 200 again
    assert out.startswith(b"SIP/2.0 200 ") and header(out, b"Expires") == [b"0"]
    declined = c.fast_sub.declined
    c.on_message(sub("3"), W, reliable=False, now=101.0)  # new: the general path's to decide
    assert c.fast_sub.declined == declined + 1 and len(agent.notifier.by_key) == 1
    c.on_message(sub("1", to_tag=key_of("1"), cseq=2, expires=300), W, reliable=False, now=101.0)
    assert c.fast_sub.declined == declined + 2  # a refresh is new work too
    assert agent.notifier.by_key[key_of("1")].remote_cseq == (2 if mode == "shedding" else 1)


def test_the_core_takes_the_fast_path_for_datagrams_only() -> None:
    c, agent = make_core(load_impl(ACTIVE))
    c.on_message(sub("1"), STREAM, reliable=True, now=100.0)
    assert (c.fast_sub.answered, c.fast_sub.declined) == (0, 0) and len(c.outgoing()) == 2
    c.on_message(sub("2"), W, reliable=False, now=100.0, hops=1)
    assert (c.fast_sub.answered, c.fast_sub.declined) == (0, 0) and len(c.outgoing()) == 2
    c.shed_fraction = 1.0  # under overload the general path decides (and sheds new ones)
    c.on_message(sub("3"), W, reliable=False, now=100.0)
    assert (c.fast_sub.answered, c.fast_sub.declined) == (0, 1) and c.outgoing()[0][0].startswith(
        b"SIP/2.0 503"
    )
    c.shed_fraction = 0.0
    c.on_message(sub("4"), W, reliable=False, now=100.0)
    assert c.fast_sub.answered == 1 and len(c.outgoing()) == 2
    assert len(agent.notifier.by_key) == 3
    c = SipCore(CoreConfig(domains=frozenset({"example.com"})), MemoryLocation(), ME, tl=TransactionLayer())
    assert c.enable_fast_subscribe() is False and c.fast_sub is None  # no presence


# ------------------------------------------------------------------ the twins agree

VARIANTS: dict[str, list[Any]] = {
    "expires": [None, 0, 30, 60, 600, 100000, "soon"],
    "accept": [None, "text/plain", "application/*", "application/pidf+xml;q=0.5"],
    "event": ["presence", "Presence ", "dialog", "presence;id=2", None],
    "contact": ["<sip:w1@10.0.0.9:5071>", "<tel:+1>", None, "*"],
    "frm": ["<sip:alice@example.com>", "<sip:w%31@example.com>", "<tel:+1>"],
    "host": ["EXAMPLE.com", "other.org"],
    "extra": ["Require: foo\r\n", "Record-Route: <sip:10.0.0.7;lr>\r\n"],
}


_IN_DIALOG = itertools.count()


@st.composite
def requests(draw: Any) -> bytes:
    n = draw(st.sampled_from(["1", "2"]))
    kw: dict[str, Any] = {}
    if draw(st.booleans()):  # in a dialog (of a subscription made before, or none)
        kw["to_tag"] = draw(st.sampled_from([key_of(n), key_of(n), "unknown"]))
        kw["cseq"] = draw(st.integers(1, 4))
    for name in draw(st.lists(st.sampled_from(sorted(VARIANTS)), max_size=3, unique=True)):
        kw[name] = draw(st.sampled_from(VARIANTS[name]))
    if kw:  # another request: its own branch (RFC 3261 8.1.1.7)
        kw["branch"] = f"z9hG4bK{n}-{kw.get('cseq', 1)}-{zlib.crc32(repr(sorted(kw.items())).encode()):x}"
    if "to_tag" in kw:  # and each one in a dialog is sent once (its copies are the step's repeats):
        # a client cannot send one before our tag exists and again after. A counter, not a
        # draw: two draws shrink to the same number, and the general path then answers the
        # second from the transaction of the first (a 481 from before the tag existed)
        kw["branch"] += f"-{next(_IN_DIALOG):x}"
    return sub(n, **kw)


_STEP = st.tuples(
    requests(),
    st.sampled_from([W, W, ("10.1.1.2", 7001, "c"), STREAM]),
    st.sampled_from([0.0, 0.5, 30.0, 700.0]),  # time since the step before
    st.integers(0, 1),  # sent again
)


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(_STEP, min_size=1, max_size=10))
def test_the_twins_agree_with_each_other_and_the_general_path(
    steps: list[tuple[bytes, tuple[Any, ...], float, int]],
) -> None:
    """The twins: the same bytes. The general path: the same subscriptions, and the same
    bytes except where the fast path answers a request again (its 200 states the time left
    then; the general path's transaction sends its first 200 again, within Timer J)."""
    rigs = [make_core(load_impl("ref")), make_core(load_impl("ext")), make_core(None)]
    cores = [c for c, _ in rigs]
    fast, general = cores[:2], cores[2]
    now = 100.0
    for data, peer, dt, repeat in steps:
        now += dt
        for _ in range(1 + repeat):
            again = rigs[0][1].notifier.retransmissions
            for c in cores:
                c.handle_timer(now)
            timers = [c.outgoing() for c in cores]
            assert timers[0] == timers[1] == timers[2]
            for c in cores:
                c.on_message(data, peer, reliable=len(peer) == 4, now=now)
            outs = [c.outgoing() for c in cores]
            assert outs[0] == outs[1]
            if rigs[0][1].notifier.retransmissions == again:
                assert outs[2] == outs[0]
            answer_notifies(fast, outs[0], now)
            answer_notifies([general], outs[2], now)
            same_state([a for _, a in rigs])
    ref, ext = cores[0].fast_sub, cores[1].fast_sub
    assert (ref.answered, ref.declined) == (ext.answered, ext.declined)


# ------------------------------------------------------------------ hostile input


@st.composite
def mangled(draw: Any) -> bytes:
    """A SUBSCRIBE (new or in a dialog) with octets flipped, inserted or cut."""
    data = bytearray(
        draw(st.sampled_from([sub(), sub(to_tag=key_of(), cseq=2), sub(to_tag=key_of(), cseq=3, expires=0)]))
    )
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        how = draw(st.sampled_from(["flip", "insert", "cut"]))
        octet = draw(st.sampled_from([0, 9, 10, 13, 32, 34, 44, 58, 59, 60, 62, 64, 255, *range(0x30, 0x3A)]))
        if how == "flip":
            data[at] = octet
        elif how == "insert":
            data.insert(at, octet)
        else:
            del data[at : at + draw(st.integers(1, 40))]
    return bytes(data)


@settings(max_examples=300, deadline=None)
@given(datas=st.lists(mangled(), min_size=1, max_size=6))
def test_mangled_subscribes_raise_nothing_and_the_twins_agree(datas: list[bytes]) -> None:
    """Whatever the octets, the fast path answers or declines (the core answers the rest or
    drops it); the twins agree on every datagram."""
    rigs = [make_core(load_impl("ref")), make_core(load_impl("ext"))]
    for c, _ in rigs:
        c.on_message(sub(), W, reliable=False, now=100.0)  # a subscription to refresh or end
        c.outgoing()
    for data in datas:
        outs = []
        for c, _ in rigs:
            c.on_message(data, W, reliable=False, now=101.0)
            outs.append(c.outgoing())
        assert outs[0] == outs[1]
    same_state([a for _, a in rigs])
