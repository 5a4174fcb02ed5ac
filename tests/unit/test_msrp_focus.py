"""The RFC 7701 chat focus (simplefast/msrp/focus.py), sans-IO: fake clock, no sockets.

The SIP side goes through a ``SipCore`` with the focus enabled (INVITE/ACK/BYE built as
bytes, ``core.outgoing()`` parsed back). The MSRP side drives ``ChatFocus`` directly: each
participant is an ``MsrpSession`` of the endpoint library, and ``Wire`` carries octets
between those sessions and the focus over numbered in-memory connections, sorting what the
focus writes on a connection by To-Path (one connection may carry several sessions).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simplefast._impl import msrpframe, sipmsg
from simplefast.im.cpim import build_cpim, parse_cpim
from simplefast.msrp.chat import ChatConfig
from simplefast.msrp.endpoint import (
    Event,
    MessageFailed,
    MessageReceived,
    MessageSent,
    MsrpSession,
    ResponseReceived,
)
from simplefast.msrp.focus import ChatFocus, Close, Connect, FocusConfig, owner
from simplefast.msrp.sdp import MsrpOffer, parse_msrp_offer
from simplefast.presence.agent import PresenceAgent, PresenceConfig
from simplefast.presence.state import MemoryPresentities
from simplefast.presence.subscribe import MemorySubscriptions
from simplefast.proxy.core import CoreConfig, SipCore
from simplefast.proxy.location import MemoryLocation
from simplefast.proxy.proxy import ProxyAddress
from simplefast.sip.peer import transport_of
from simplefast.sip.transaction import TransactionLayer

ME = ProxyAddress("10.0.0.1", 5060, 40000)
A = ("10.0.0.8", 5080)  # the participants' UAs (UDP)
W = ("10.0.0.9", 5070)  # a conference watcher
TCP = ("10.0.0.8", 5080, "tcp", 7)  # a participant over a TCP connection
ROOM = "sip:lobby@example.com"
KEY = "lobby@example.com"
FOCUS_PORT = 2870
T1 = 0.5
CI = "urn:ietf:params:xml:ns:conference-info"
XCON = "urn:ietf:params:xml:ns:xcon-conference-info"


# ---------------------------------------------------------------- SIP helpers


class Focus(ChatFocus):
    """The focus, remembering the rooms it said changed (the core takes them for its NOTIFYs)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.said: set[str] = set()

    def take_changed(self) -> set[str]:
        got = super().take_changed()
        self.said |= got
        return got


def make(*, presence: bool = False, **cfg: Any) -> tuple[SipCore, Focus]:
    """A core for example.com with the focus on (``lobby@example.com`` and the users of
    ``rooms.example.com``), optionally with presence (conference package)."""
    tl = TransactionLayer()
    agent = None
    if presence:
        agent = PresenceAgent(
            tl, MemoryPresentities(), PresenceConfig(min_notify_interval=0.0),
            contact=lambda peer: f"<{ME.contact_uri(transport_of(peer), False)}>",
            via=lambda dest: ME.sent_by(transport_of(dest), False), table=MemorySubscriptions(),
        )  # fmt: skip
    core = SipCore(CoreConfig(domains=frozenset({"example.com"}), local_hosts=frozenset({"10.0.0.1"})),
                   MemoryLocation(), ME, tl=tl, presence=agent)  # fmt: skip
    cfg.setdefault("rooms", (ROOM,))
    cfg.setdefault("room_domains", ("rooms.example.com",))
    focus = Focus(
        FocusConfig(msrp_host="10.0.0.1", msrp_port=FOCUS_PORT, **cfg),
        contact=lambda peer: ME.contact_uri(transport_of(peer), False),
        via=lambda dest: ME.sent_by(transport_of(dest), False),
    )
    core.enable_focus(focus)
    return core, focus


def changed(focus: Focus) -> set[str]:
    """The rooms the focus said changed since the last call."""
    got = focus.said | focus.take_changed()
    focus.said = set()
    return got


def out(c: SipCore) -> list[Any]:
    return [(sipmsg.parse_message(d), peer) for d, peer in c.outgoing()]


def msrp_uri(user: str) -> str:
    return f"msrp://10.0.0.8:7000/{user}1;tcp"


def offer(user: str = "alice", *, setup: str | None = "active", types: str = "message/cpim text/plain",
          chatroom: str = "nickname private-messages", path: str | None = None) -> bytes:  # fmt: skip
    lines = ["v=0", "o=- 1 1 IN IP4 10.0.0.8", "s=-", "c=IN IP4 10.0.0.8", "t=0 0",
             "m=message 7000 TCP/MSRP *", f"a=accept-types:{types}", "a=accept-wrapped-types:*",
             f"a=path:{path or msrp_uri(user)}"]  # fmt: skip
    if setup is not None:
        lines.append(f"a=setup:{setup}")
    if chatroom:
        lines.append(f"a=chatroom:{chatroom}")
    return ("\r\n".join(lines) + "\r\n").encode()


@dataclass
class Ua:
    """A participant's end of its dialog with a room."""

    user: str
    room: str = ROOM
    peer: Any = A
    call_id: str = ""
    to_tag: str | None = None
    target: str = ""  # the focus's Contact: the Request-URI of in-dialog requests
    cseq: int = 1
    answer: MsrpOffer | None = None
    branches: int = 0

    def __post_init__(self) -> None:
        self.call_id = self.call_id or f"{self.user}-chat"
        self.target = self.target or self.room

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@example.com"

    def request(self, method: str, *, body: bytes = b"", headers: str = "", cseq: int | None = None,
                to_tag: str | None = None, uri: str | None = None) -> bytes:  # fmt: skip
        self.branches += 1
        kind = "TCP" if len(self.peer) == 4 else "UDP"
        tag = to_tag if to_tag is not None else self.to_tag
        to = f"<{self.room}>" + (f";tag={tag}" if tag else "")
        n = self.cseq if cseq is None else cseq
        return (
            f"{method} {uri or self.target} SIP/2.0\r\n"
            f"Via: SIP/2.0/{kind} 10.0.0.8:5080;branch=z9hG4bK{self.call_id}x{self.branches}\r\n"
            f"Max-Forwards: 70\r\nFrom: <{self.uri}>;tag=ft\r\nTo: {to}\r\nCall-ID: {self.call_id}\r\n"
            f"CSeq: {n} {method}\r\n{headers}Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body


def sdp_headers(user: str) -> str:
    return f"Contact: <sip:{user}@10.0.0.8:5080>\r\nContent-Type: application/sdp\r\n"


def send(c: SipCore, ua: Ua, data: bytes, now: float) -> list[Any]:
    c.on_message(data, ua.peer, reliable=len(ua.peer) == 4, now=now)
    return out(c)


def final(msgs: list[Any]) -> Any:
    """The one final response among ``msgs`` (a 100 Trying may come first)."""
    (r,) = [m for m, _ in msgs if not m.is_request and m.status >= 200]
    return r


def invite(c: SipCore, ua: Ua, *, body: bytes | None = None, ctype: str | None = "application/sdp",
           rr: tuple[str, ...] = (), contact: bool = True, now: float = 0.0) -> Any:  # fmt: skip
    """An initial INVITE from ``ua``; the final response (the dialog is noted on ``ua``)."""
    body = offer(ua.user) if body is None else body
    head = f"Contact: <sip:{ua.user}@10.0.0.8:5080>\r\n" if contact else ""
    head += "".join(f"Record-Route: {r}\r\n" for r in rr)
    if ctype is not None and body:
        head += f"Content-Type: {ctype}\r\n"
    r = final(send(c, ua, ua.request("INVITE", body=body, headers=head, to_tag=""), now))
    if r.status == 200:
        ua.to_tag, ua.target = r.to_tag, r.contact_uri
        ua.answer = parse_msrp_offer(r.body)
    return r


def ack(c: SipCore, ua: Ua, now: float) -> list[Any]:
    return send(c, ua, ua.request("ACK"), now)


def in_dialog(c: SipCore, ua: Ua, method: str, now: float, **kw: Any) -> Any:
    ua.cseq += 1
    return final(send(c, ua, ua.request(method, **kw), now))


def join(c: SipCore, ua: Ua, now: float = 0.0, **kw: Any) -> Any:
    r = invite(c, ua, now=now, **kw)
    assert r.status == 200, r.to_bytes()
    ack(c, ua, now)
    return r


def run_until(c: SipCore, t: float) -> list[tuple[float, Any, Any]]:
    """Run every timer due up to ``t``; (when, message, peer) of what was sent meanwhile."""
    sent: list[tuple[float, Any, Any]] = []
    while (nt := c.get_timer()) is not None and nt <= t:
        c.handle_timer(nt)
        sent += [(nt, m, p) for m, p in out(c)]
    return sent


def byes(msgs: list[Any]) -> list[Any]:
    return [m for m in msgs if m.is_request and m.method == "BYE"]


def answer(c: SipCore, req: Any, peer: Any, now: float) -> None:
    """A 200 to one of the core's requests (a BYE of the focus, a conference NOTIFY)."""
    lines = ["SIP/2.0 200 OK", *(f"Via: {v}" for v in req.get_all("Via")), f"From: {req.get('From')}",
             f"To: {req.get('To')}", f"Call-ID: {req.call_id}", f"CSeq: {req.get('CSeq')}",
             "Content-Length: 0"]  # fmt: skip
    c.on_message(("\r\n".join(lines) + "\r\n\r\n").encode(), peer, reliable=len(peer) == 4, now=now)


def room_of(focus: ChatFocus, key: str = KEY) -> list[str]:
    return [uri for uri, _ in focus.members(key)]


# ---------------------------------------------------------------- MSRP helpers


@dataclass
class Wire:
    """In-memory MSRP connections between participants' sessions and the focus."""

    focus: ChatFocus
    on: dict[int, list[MsrpSession]] = field(default_factory=dict)
    parsers: dict[int, Any] = field(default_factory=dict)
    stray: dict[int, list[Any]] = field(default_factory=lambda: defaultdict(list))  # to no session here

    def connect(self, cid: int, *sessions: MsrpSession, now: float, token: int | None = None) -> None:
        self.on.setdefault(cid, []).extend(sessions)
        self.parsers.setdefault(cid, msrpframe.MsrpParser())
        self.focus.connected(cid, now, token)

    def run(self, now: float) -> None:
        """Move octets both ways until all are quiet."""
        for _ in range(200):
            moved = False
            for cid, data in self.focus.take_writes().items():
                moved = True
                for m in self.parsers[cid].feed(data):
                    dest = [s for s in self.on.get(cid, []) if m.to_path and s.local_uri == m.to_path[0]]
                    if dest:
                        dest[0].data(m.to_bytes(), now)
                    else:
                        self.stray[cid].append(m)
            for cid, sessions in self.on.items():
                for s in sessions:
                    up = s.outgoing()
                    if up:
                        moved = True
                        self.focus.data(cid, up, now)
            if not moved:
                return
        raise AssertionError("never quiet")


def session_for(ua: Ua) -> MsrpSession:
    """The participant's MSRP session, aimed at the path of the focus's answer."""
    assert ua.answer is not None
    return MsrpSession(msrp_uri(ua.user), to_path=list(ua.answer.path))


def drain(s: MsrpSession) -> list[Event]:
    evs = []
    while (ev := s.next_event()) is not None:
        evs.append(ev)
    return evs


def cpim(frm: str, to: str, text: bytes) -> bytes:
    return build_cpim([("From", f"<{frm}>"), ("To", f"<{to}>"), ("DateTime", "2026-01-02T03:04:05Z")],
                      "text/plain", text)  # fmt: skip


def heard(s: MsrpSession) -> list[tuple[str, bytes]]:
    """(CPIM From, text) of every message the session received."""
    got = []
    for ev in drain(s):
        if isinstance(ev, MessageReceived):
            assert ev.content_type == "message/cpim"
            msg = parse_cpim(ev.body)
            got.append(((msg.get("From") or "").strip("<> "), msg.body))
    return got


def connected_party(c: SipCore, focus: ChatFocus, wire: Wire, ua: Ua, cid: int, now: float) -> MsrpSession:
    """Join ``ua`` (INVITE, ACK), connect on ``cid`` and bind its session there."""
    join(c, ua, now)
    s = session_for(ua)
    if cid not in wire.on:
        wire.connect(cid, s, now=now)
    else:
        wire.on[cid].append(s)
    s.bind(now)
    wire.run(now)
    assert [type(e) for e in drain(s)] == [MessageSent]
    return s


# ---------------------------------------------------------------- 1. the answer


@pytest.mark.parametrize("setup", ["active", "actpass", None])
def test_invite_with_a_good_offer_gets_200_with_the_focus_answer(setup: str | None) -> None:
    c, focus = make()
    ua = Ua("alice")
    r = invite(c, ua, body=offer("alice", setup=setup))
    assert r.status == 200 and r.to_tag and r.get("Content-Type") == "application/sdp"
    assert r.get("Contact") == "<sip:lobby@10.0.0.1:5060>;isfocus"
    ans = parse_msrp_offer(r.body)
    (path,) = ans.path
    assert path.startswith(f"msrp://10.0.0.1:{FOCUS_PORT}/") and path.endswith(";tcp")
    sid = path.split("/")[3].partition(";")[0]
    assert sid and ans.port == FOCUS_PORT and ans.address == "10.0.0.1"
    assert ans.accept_types == ("message/cpim",) and ans.accept_wrapped_types == ("*",)
    assert ans.chatroom == {"nickname", "private-messages"}
    assert ans.setup == "passive"  # the participant connects (RFC 4975 section 5.4)
    assert room_of(focus) == [ua.uri] and changed(focus) == {KEY}
    assert focus.legs[r.to_tag].sid == sid


def test_each_participant_gets_its_own_session_and_the_tokens_follow_the_room_config() -> None:
    c, _ = make(room=ChatConfig(private_messages=False))
    a, b = Ua("alice"), Ua("bob")
    ra, rb = invite(c, a), invite(c, b)
    assert a.answer is not None and b.answer is not None
    assert a.answer.path != b.answer.path and ra.to_tag != rb.to_tag
    assert b.answer.chatroom == {"nickname"}


def test_a_room_by_its_domain_answers_with_its_own_name_in_the_contact() -> None:
    c, focus = make()
    ua = Ua("alice", room="sip:party@rooms.example.com")
    r = invite(c, ua)
    assert r.status == 200 and r.contact_uri == "sip:party@10.0.0.1:5060"
    assert room_of(focus, "party@rooms.example.com") == [ua.uri]


# ---------------------------------------------------------------- 2. the 2xx until the ACK


def test_the_200_is_retransmitted_over_udp_until_the_ack() -> None:
    c, focus = make(bind_timeout=1000.0)
    ua = Ua("alice")
    r = invite(c, ua)
    sent = run_until(c, 10.0)
    assert [t for t, _, _ in sent] == [0.5, 1.5, 3.5, 7.5]  # T1, then doubling up to T2 (13.3.1.4)
    assert all(m.to_bytes() == r.to_bytes() and p == A for _, m, p in sent)
    ack(c, ua, 10.0)
    assert run_until(c, 100.0) == []
    assert room_of(focus) == [ua.uri]


def test_no_ack_by_64_t1_gets_a_bye_along_the_route_set() -> None:
    c, focus = make()
    ua = Ua("alice")
    rr = ("<sip:p1.example.net;lr>", "<sip:p2.example.net;lr>, <sip:p3.example.net;lr>")
    r = invite(c, ua, rr=rr)
    changed(focus)
    sent = run_until(c, 64 * T1)
    resends = [t for t, m, _ in sent if not m.is_request]
    assert resends[:5] == [0.5, 1.5, 3.5, 7.5, 11.5] and resends[-1] == 31.5
    assert all(b - a <= 4.0 for a, b in zip(resends, resends[1:], strict=False))
    (bye,) = byes([m for _, m, _ in sent])
    assert bye.uri == "sip:alice@10.0.0.8:5080"  # the participant's Contact
    assert bye.from_tag == r.to_tag and bye.to_tag == "ft" and bye.call_id == ua.call_id
    assert bye.get("From") == f"<{ROOM}>;tag={r.to_tag}" and bye.get("To") == f"<{ua.uri}>;tag=ft"
    assert bye.get_all("Route") == [
        "<sip:p1.example.net;lr>",
        "<sip:p2.example.net;lr>",
        "<sip:p3.example.net;lr>",
    ]
    assert bye.cseq_num == 1 and bye.get("CSeq") == "1 BYE"
    assert [p for _, m, p in sent if m.is_request] == [A]
    assert room_of(focus) == [] and changed(focus) == {KEY}
    assert focus.legs == {} and focus.stats.byes_sent == 1


def test_over_a_reliable_transport_the_200_goes_once() -> None:
    c, focus = make()
    ua = Ua("alice", peer=TCP)
    r = invite(c, ua)
    assert r.status == 200
    sent = run_until(c, 64 * T1 - 0.1)
    assert sent == []
    sent = run_until(c, 64 * T1)  # still no ACK: BYE over the same connection
    assert [(m.method, p) for _, m, p in sent] == [("BYE", TCP)]
    assert sent[0][1].get("Via").startswith("SIP/2.0/TCP 10.0.0.1:")
    assert room_of(focus) == []


def test_a_late_ack_after_the_bye_changes_nothing() -> None:
    c, focus = make()
    ua = Ua("alice")
    invite(c, ua)
    sent = run_until(c, 64 * T1)
    (bye,) = byes([m for _, m, _ in sent])
    answer(c, bye, A, 32.5)
    later = ack(c, ua, 33.0)  # no dialog of the focus any more: a room's ACK is dropped, not proxied
    assert later == []
    assert room_of(focus) == [] and focus.legs == {}


# ---------------------------------------------------------------- 3. the MSRP connection


def test_no_msrp_connection_within_bind_timeout_gets_a_bye() -> None:
    c, focus = make(bind_timeout=10.0)
    ua = Ua("alice")
    join(c, ua, 1.0)
    assert run_until(c, 10.9) == []
    sent = run_until(c, 11.0)
    (bye,) = byes([m for _, m, _ in sent])
    assert bye.call_id == ua.call_id and bye.from_tag == ua.to_tag
    assert room_of(focus) == []


def test_a_bound_session_is_not_ended_by_bind_timeout() -> None:
    c, focus = make(bind_timeout=10.0)
    wire = Wire(focus)
    ua = Ua("alice")
    connected_party(c, focus, wire, ua, 1, 1.0)
    assert byes([m for _, m, _ in run_until(c, 100.0)]) == []
    assert room_of(focus) == [ua.uri]


def test_a_session_bound_before_the_ack_needs_no_bind_timeout() -> None:
    c, focus = make(bind_timeout=10.0)
    wire = Wire(focus)
    ua = Ua("alice", peer=TCP)
    invite(c, ua)
    s = session_for(ua)
    wire.connect(1, s, now=0.1)
    s.bind(0.1)
    wire.run(0.1)
    assert [type(e) for e in drain(s)] == [MessageSent]
    ack(c, ua, 0.2)
    assert run_until(c, 100.0) == []
    assert room_of(focus) == [ua.uri]


# ---------------------------------------------------------------- 4. in the dialog


def test_bye_gets_200_and_the_participant_leaves() -> None:
    c, focus = make()
    a, b = Ua("alice"), Ua("bob")
    join(c, a)
    join(c, b)
    changed(focus)
    r = in_dialog(c, a, "BYE", 1.0)
    assert r.status == 200 and r.call_id == a.call_id
    assert room_of(focus) == [b.uri] and changed(focus) == {KEY}
    assert byes([m for _, m, _ in run_until(c, 5.0)]) == []  # no BYE of ours for it
    # the dialog is gone: a second BYE gets 481
    assert in_dialog(c, a, "BYE", 2.0).status == 481


def test_in_dialog_requests_with_wrong_tags_get_481() -> None:
    c, focus = make()
    ua = Ua("alice")
    join(c, ua)
    assert in_dialog(c, ua, "BYE", 1.0, to_tag="nosuchtag").status == 481
    other = Ua("alice", call_id="other-call", target=ua.target, to_tag=ua.to_tag)
    assert in_dialog(c, other, "BYE", 1.0).status == 481  # right tag, wrong Call-ID
    assert room_of(focus) == [ua.uri]


def test_in_dialog_request_with_a_cseq_not_above_the_last_gets_500() -> None:
    c, focus = make()
    ua = Ua("alice")
    join(c, ua)
    assert in_dialog(c, ua, "OPTIONS", 1.0).status == 200  # CSeq 2
    r = final(send(c, ua, ua.request("BYE", cseq=2), 2.0))
    assert r.status == 500
    r = final(send(c, ua, ua.request("BYE", cseq=1), 2.0))
    assert r.status == 500
    assert room_of(focus) == [ua.uri]
    assert in_dialog(c, ua, "BYE", 3.0).status == 200  # CSeq 3


def test_reinvite_gets_200_with_the_same_answer_and_options_200() -> None:
    c, focus = make()
    ua = Ua("alice")
    first = invite(c, ua)
    ack(c, ua, 0.0)
    head = sdp_headers("alice")
    r = in_dialog(c, ua, "INVITE", 1.0, body=offer("alice"), headers=head)
    assert r.status == 200 and r.body == first.body and r.to_tag == first.to_tag
    assert r.get("Contact") == first.get("Contact")
    ack(c, ua, 1.0)
    opt = in_dialog(c, ua, "OPTIONS", 2.0)
    assert opt.status == 200 and "BYE" in (opt.get("Allow") or "")
    assert room_of(focus) == [ua.uri]


def test_the_200_of_a_reinvite_stops_at_its_ack() -> None:
    """RFC 3261 13.3.1.4 for a re-INVITE's 2xx too: its ACK stops the retransmissions,
    and an ACKed re-INVITE never ends the dialog."""
    c, focus = make(bind_timeout=1000.0)
    ua = Ua("alice")
    join(c, ua)
    head = sdp_headers("alice")
    in_dialog(c, ua, "INVITE", 1.0, body=offer("alice"), headers=head)
    sent = run_until(c, 2.0)
    assert [t for t, m, _ in sent if not m.is_request and m.status == 200] == [1.5]
    ack(c, ua, 2.0)
    sent = run_until(c, 100.0)
    assert [m for _, m, _ in sent] == []  # no 200 after the ACK, and no BYE
    assert room_of(focus) == [ua.uri]


def test_options_to_the_room_outside_a_dialog() -> None:
    c, _ = make()
    ua = Ua("erin", room="sip:lobby@example.com")
    r = final(send(c, ua, ua.request("OPTIONS"), 0.0))
    assert r.status == 200 and "INVITE" in (r.get("Allow") or "")


def test_cancel_of_an_answered_invite_changes_nothing() -> None:
    c, focus = make()
    ua = Ua("alice")
    data = ua.request("INVITE", body=offer("alice"), to_tag="",
                      headers=sdp_headers("alice"))  # fmt: skip
    send(c, ua, data, 0.0)
    cancel = (
        data.split(b"\r\n\r\n")[0]
        .replace(b"INVITE", b"CANCEL")
        .replace(f"Content-Length: {len(offer('alice'))}".encode(), b"Content-Length: 0")
    )
    r = final(send(c, ua, cancel + b"\r\n\r\n", 0.1))
    assert r.status == 200 and r.get("CSeq") == "1 CANCEL"
    assert room_of(focus) == [ua.uri]


# ---------------------------------------------------------------- 5. refusals


def test_an_invite_without_sdp_or_of_another_type_gets_488_with_accept() -> None:
    c, focus = make()
    for ua, kw in ((Ua("a1"), {"body": b"", "ctype": None}), (Ua("a2"), {"ctype": "text/plain"})):
        r = invite(c, ua, **kw)
        assert (r.status, r.get("Accept")) == (488, "application/sdp")
        assert (r.get("Warning") or "").startswith("399 ")
    assert room_of(focus) == []


def test_an_offer_without_message_cpim_gets_488() -> None:
    c, focus = make()
    r = invite(c, Ua("alice"), body=offer("alice", types="text/plain"))
    assert r.status == 488 and "message/cpim" in (r.get("Warning") or "")
    assert invite(c, Ua("bob"), body=offer("bob", types="message/*")).status == 200  # a wildcard takes it
    assert room_of(focus) == ["sip:bob@example.com"]


def test_sdp_that_does_not_parse_gets_400() -> None:
    c, focus = make()
    assert invite(c, Ua("alice"), body=b"v=0\r\nthis is not sdp\r\n").status == 400
    assert room_of(focus) == []


def test_setup_holdconn_gets_488() -> None:
    c, focus = make()
    r = invite(c, Ua("alice"), body=offer("alice", setup="holdconn"))
    assert r.status == 488 and "holdconn" in (r.get("Warning") or "")
    assert room_of(focus) == []


def test_refused_invites_leave_no_room_behind() -> None:
    """A room of ``room_domains`` is made for a join: a refused join must not keep it
    (it would count against ``max_rooms`` for ever)."""
    c, focus = make(max_rooms=1)
    room = "sip:party@rooms.example.com"
    assert invite(c, Ua("alice", room=room), body=offer("alice", setup="holdconn")).status == 488
    assert invite(c, Ua("bob", room=room), contact=False).status == 400
    assert invite(c, Ua("carol", room=room), body=offer("carol", types="text/plain")).status == 488
    assert focus.rooms == {}  # the lobby too: a configured room is made on its first join
    ua = Ua("dave", room="sip:other@rooms.example.com")
    assert invite(c, ua).status == 200  # room for one made room still


def test_an_offer_refused_after_the_join_does_not_haunt_a_later_join() -> None:
    """A passive offer whose a=path is no MSRP URI to connect to (port 99999) gets 488. The
    check once came after the room took the participant in, and the room's ParticipantLeft of
    that attempt ended the participant's next, accepted session."""
    c, focus = make()
    wire = Wire(focus)
    ua = Ua("alice", call_id="first-try")
    r = invite(c, ua, body=offer("alice", setup="passive", path="msrp://10.0.0.8:99999/alice1;tcp"))
    assert r.status == 488 and room_of(focus) == []
    a, b = Ua("alice"), Ua("bob")
    alice = connected_party(c, focus, wire, a, 1, 1.0)
    bob = connected_party(c, focus, wire, b, 2, 1.0)
    bob.send_message("message/cpim", cpim(b.uri, ROOM, b"hi"), 2.0)  # the room runs its events
    wire.run(2.0)
    c.focus_step(None, 2.0)
    assert byes([m for m, _ in out(c)]) == []
    assert heard(alice) == [(b.uri, b"hi")]
    assert room_of(focus) == [a.uri, b.uri] and a.to_tag in focus.legs


def test_the_same_participant_uri_twice_gets_403() -> None:
    c, focus = make()
    join(c, Ua("alice"))
    r = invite(c, Ua("alice", call_id="second-device"))
    assert r.status == 403
    assert room_of(focus) == ["sip:alice@example.com"] and len(focus.legs) == 1


def test_a_full_room_gets_486() -> None:
    c, focus = make(room=ChatConfig(max_participants=2))
    join(c, Ua("alice"))
    join(c, Ua("bob"))
    assert invite(c, Ua("carol")).status == 486
    assert len(focus.members(KEY)) == 2


def test_max_rooms_bounds_the_rooms_made_on_join_but_not_the_configured_ones() -> None:
    c, focus = make(max_rooms=1)
    assert invite(c, Ua("alice", room="sip:r1@rooms.example.com")).status == 200
    assert invite(c, Ua("bob", room="sip:r2@rooms.example.com")).status == 403
    assert invite(c, Ua("carol")).status == 200  # the configured lobby


def test_unknown_rooms_have_no_key() -> None:
    _, focus = make()
    assert focus.room_key("nobody", "example.com", local=False) is None
    assert focus.room_key("nobody", "10.0.0.1", local=True) is None
    assert focus.room_key("lobby", "elsewhere.example.net", local=False) is None
    assert focus.room_key(None, "example.com", local=True) is None
    assert focus.members("nobody@example.com") == []


# ---------------------------------------------------------------- 6. rooms and workers


def test_room_keys_of_configured_rooms_and_room_domains() -> None:
    c, focus = make(rooms=("sip:Lobby@Example.COM", "sips:help@desk.example.com"))
    assert focus.room_key("lobby", "example.com", local=False) == KEY
    assert focus.room_key("LOBBY", "EXAMPLE.com", local=False) == KEY
    assert focus.room_key("lobby", "10.0.0.1", local=True) == KEY  # our Contact names it
    assert focus.room_key("help", "desk.example.com", local=False) == "help@desk.example.com"
    assert focus.room_key("Party", "rooms.example.com", local=False) == "party@rooms.example.com"
    assert focus.room_key("party", "10.0.0.1", local=True) is None  # not made yet
    assert "party@rooms.example.com" not in focus.rooms


def test_a_room_made_on_join_goes_with_its_last_participant_a_configured_one_stays() -> None:
    c, focus = make()
    room = "sip:party@rooms.example.com"
    a, b = Ua("alice", room=room), Ua("bob", room=room)
    join(c, a)
    join(c, b)
    assert focus.room_key("party", "10.0.0.1", local=True) == "party@rooms.example.com"
    in_dialog(c, a, "BYE", 1.0)
    assert "party@rooms.example.com" in focus.rooms
    in_dialog(c, b, "BYE", 2.0)
    assert "party@rooms.example.com" not in focus.rooms
    assert focus.room_key("party", "10.0.0.1", local=True) is None
    lobby = Ua("carol")
    join(c, lobby)
    in_dialog(c, lobby, "BYE", 3.0)
    assert KEY in focus.rooms and focus.members(KEY) == []


def test_one_user_part_names_one_room_per_worker() -> None:
    c, focus = make(room_domains=("rooms.example.com", "other.example.com"))
    assert invite(c, Ua("alice", room="sip:x@rooms.example.com")).status == 200
    r = invite(c, Ua("bob", room="sip:x@other.example.com"))
    assert r.status == 403  # x is taken by rooms.example.com's room here
    assert invite(c, Ua("carol", room="sip:lobby@rooms.example.com")).status == 403  # the lobby's name
    assert focus.room_key("x", "10.0.0.1", local=True) == "x@rooms.example.com"
    with pytest.raises(ValueError, match="differ in their user part"):
        ChatFocus(FocusConfig(rooms=("sip:a@one.example.com", "sip:a@two.example.com")))
    with pytest.raises(ValueError, match="no user@host"):
        ChatFocus(FocusConfig(rooms=("sip:example.com",)))


def test_owner_is_stable_and_in_range() -> None:
    names = ["lobby", "party", "x", "help-desk", "ünïcode", ""]
    for workers in range(1, 9):
        focus = ChatFocus(FocusConfig(workers=workers))
        for name in names:
            w = focus.owner(name)
            assert 0 <= w < workers
            assert w == owner(name, workers) == owner(name.upper(), workers)
    assert {owner(n, 1) for n in names} == {0}
    assert len({owner(f"room{i}", 8) for i in range(200)}) == 8  # spread over the workers


# ---------------------------------------------------------------- 7. MSRP


def test_the_bind_send_binds_the_session_on_an_accepted_connection() -> None:
    c, focus = make()
    wire = Wire(focus)
    ua = Ua("alice")
    join(c, ua)
    leg = focus.legs[ua.to_tag or ""]
    assert leg.cid is None
    s = session_for(ua)
    wire.connect(3, s, now=0.5)
    assert leg.cid is None  # accepted, not bound until a request names the session
    s.bind(0.5)
    wire.run(0.5)
    assert [type(e) for e in drain(s)] == [MessageSent] and leg.cid == 3
    assert focus.take_actions() == []


def test_a_request_for_an_unknown_session_gets_481_on_its_connection() -> None:
    _, focus = make()
    focus.connected(9, 0.0)
    nosuch, ghost = [f"msrp://10.0.0.1:{FOCUS_PORT}/nosuch;tcp"], ["msrp://10.0.0.7:7000/g;tcp"]
    head = [("Message-ID", "m1"), ("Byte-Range", "1-2/2")]
    req = msrpframe.build_request(
        "ts481", "SEND", nosuch, ghost, head, content_type="message/cpim", body=b"hi"
    )
    focus.data(9, req, 0.0)
    (resp,) = msrpframe.MsrpParser().feed(focus.take_writes()[9])
    assert not resp.is_request and (resp.tid, resp.status) == ("ts481", 481)
    assert resp.to_path == ghost and resp.from_path == nosuch
    # a REPORT, a response and a SEND with Failure-Report: no are never answered (RFC 4975 7.1.2)
    report = msrpframe.build_request("tr002", "REPORT", nosuch, ghost, [("Message-ID", "m1"),
                                     ("Status", "000 200 OK")])  # fmt: skip
    quiet = msrpframe.build_request("tq003", "SEND", nosuch, ghost, [("Message-ID", "m2"),
                                    ("Failure-Report", "no")])  # fmt: skip
    response = msrpframe.build_response("tx004", 200, "OK", nosuch, ghost)
    focus.data(9, report + quiet + response, 0.0)
    assert focus.take_writes() == {}
    assert focus.take_actions() == []  # the connection stays


def test_a_message_to_the_room_reaches_every_other_participant_in_cpim() -> None:
    c, focus = make()
    wire = Wire(focus)
    uas = [Ua(n) for n in ("alice", "bob", "carol")]
    alice, bob, carol = (connected_party(c, focus, wire, ua, i + 1, 0.0) for i, ua in enumerate(uas))
    body = cpim(uas[0].uri, ROOM, b"hello room")
    mid = alice.send_message("message/cpim", body, 1.0)
    wire.run(1.0)
    for s in (bob, carol):
        (got,) = [e for e in drain(s) if isinstance(e, MessageReceived)]
        assert got.content_type == "message/cpim"
        assert got.body == body  # the CPIM octets as the sender wrote them (RFC 7701 section 9.3)
        assert got.from_path == s.to_path  # from the focus's end of this participant's session
        assert parse_cpim(got.body).get("From") == f"<{uas[0].uri}>"
    assert drain(alice) == [MessageSent(mid)]  # not echoed to the sender
    assert wire.stray == {}
    assert focus.stats.messages == 1
    # a refused one (CPIM From is someone else): 403 to the sender, nothing to the others
    alice.send_message("message/cpim", cpim(uas[1].uri, ROOM, b"I am bob"), 2.0)
    wire.run(2.0)
    assert [(type(e), getattr(e, "status", None)) for e in drain(alice)] == [(MessageFailed, 403)]
    assert drain(bob) == drain(carol) == []


def test_two_sessions_over_one_connection() -> None:
    c, focus = make()
    wire = Wire(focus)
    a, b = Ua("alice"), Ua("bob")
    alice = connected_party(c, focus, wire, a, 5, 0.0)
    bob = connected_party(c, focus, wire, b, 5, 0.0)
    assert focus.legs[a.to_tag or ""].cid == focus.legs[b.to_tag or ""].cid == 5
    alice.send_message("message/cpim", cpim(a.uri, ROOM, b"hi bob"), 1.0)
    wire.run(1.0)
    assert heard(bob) == [(a.uri, b"hi bob")]
    assert [type(e) for e in drain(alice)] == [MessageSent]
    bob.send_message("message/cpim", cpim(b.uri, a.uri, b"psst"), 2.0)  # a private one back
    wire.run(2.0)
    assert heard(alice) == [(b.uri, b"psst")]
    assert [type(e) for e in drain(bob)] == [MessageSent]
    assert wire.stray == {}
    # one leaves with BYE: the connection stays for the other
    in_dialog(c, a, "BYE", 3.0)
    assert focus.take_actions() == []
    bob.send_message("message/cpim", cpim(b.uri, ROOM, b"alone"), 4.0)
    wire.run(4.0)
    assert [type(e) for e in drain(bob)] == [MessageSent]
    in_dialog(c, b, "BYE", 5.0)
    assert focus.take_actions() == [Close(5)]


def test_a_congested_connection_gets_its_octets_when_it_drains() -> None:
    c, focus = make()
    wire = Wire(focus)
    a, b = Ua("alice"), Ua("bob")
    alice = connected_party(c, focus, wire, a, 1, 0.0)
    bob = connected_party(c, focus, wire, b, 2, 0.0)
    focus.congested.add(2)  # the transport's write buffer of connection 2 is full
    alice.send_message("message/cpim", cpim(a.uri, ROOM, b"wait for it"), 1.0)
    wire.run(1.0)
    assert heard(bob) == [] and [type(e) for e in drain(alice)] == [MessageSent]
    focus.resume(2)
    assert focus.congested == set()
    wire.run(1.5)
    assert heard(bob) == [(a.uri, b"wait for it")]


def test_closing_a_connection_ends_every_session_on_it_with_a_bye() -> None:
    c, focus = make()
    wire = Wire(focus)
    a, b, d = Ua("alice"), Ua("bob"), Ua("dave")
    connected_party(c, focus, wire, a, 1, 0.0)
    connected_party(c, focus, wire, b, 1, 0.0)
    connected_party(c, focus, wire, d, 2, 0.0)
    changed(focus)
    focus.closed(1, "connection reset")
    c.focus_step(None, 1.0)
    sent = byes([m for m, _ in out(c)])
    assert sorted((m.call_id, m.from_tag) for m in sent) == sorted(
        [(a.call_id, a.to_tag), (b.call_id, b.to_tag)]
    )
    assert room_of(focus) == [d.uri] and changed(focus) == {KEY}
    assert focus.take_actions() == []  # the connection is gone already
    focus.data(1, b"MSRP x SEND\r\n", 1.0)  # octets of a closed connection: ignored
    assert focus.take_writes() == {}


def test_a_passive_offer_makes_the_focus_connect_after_the_ack() -> None:
    c, focus = make()
    wire = Wire(focus)
    ua = Ua("alice")
    r = invite(c, ua, body=offer("alice", setup="passive", path="msrp://10.0.0.8:7777/alice1;tcp"))
    assert r.status == 200 and ua.answer is not None and ua.answer.setup == "active"
    assert focus.take_actions() == []  # not before the ACK
    ack(c, ua, 0.5)
    (act,) = focus.take_actions()
    assert isinstance(act, Connect) and (act.host, act.port, act.tls) == ("10.0.0.8", 7777, False)
    s = MsrpSession("msrp://10.0.0.8:7777/alice1;tcp", to_path=list(ua.answer.path))
    wire.on[11] = [s]
    wire.parsers[11] = msrpframe.MsrpParser()
    focus.connected(11, 1.0, act.token)
    writes = focus.take_writes()
    (bind,) = msrpframe.MsrpParser().feed(writes[11])
    assert bind.is_request and bind.method == "SEND" and not bind.has_content
    assert bind.to_path == ["msrp://10.0.0.8:7777/alice1;tcp"] and bind.from_path == list(ua.answer.path)
    s.data(writes[11], 1.0)
    wire.run(1.0)
    assert focus.legs[ua.to_tag or ""].cid == 11
    assert byes([m for _, m, _ in run_until(c, 100.0)]) == []  # bound: no bind timeout


def test_a_failed_connect_ends_the_dialog_with_a_bye() -> None:
    c, focus = make()
    ua = Ua("alice")
    join(c, ua, body=offer("alice", setup="passive"))
    (act,) = focus.take_actions()
    assert isinstance(act, Connect)
    focus.connect_failed(act.token, "refused")
    c.focus_step(None, 1.0)
    (bye,) = byes([m for m, _ in out(c)])
    assert bye.call_id == ua.call_id and room_of(focus) == []
    focus.connected(12, 2.0, act.token)  # too late: closed at once
    assert focus.take_actions() == [Close(12)]


def test_a_framing_error_closes_the_connection_and_ends_its_sessions() -> None:
    c, focus = make()
    wire = Wire(focus)
    ua = Ua("alice")
    connected_party(c, focus, wire, ua, 4, 0.0)
    focus.data(4, b"NOT MSRP AT ALL\r\n" * 4, 1.0)
    assert Close(4) in focus.take_actions()
    c.focus_step(None, 1.0)
    assert [m.call_id for m in byes([m for m, _ in out(c)])] == [ua.call_id]


# ---------------------------------------------------------------- 8. conference package


def subscribe_conference(c: SipCore, now: float = 0.0) -> list[Any]:
    data = (
        f"SUBSCRIBE {ROOM} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKconf1\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:watcher@example.com>;tag=w1\r\nTo: <sip:lobby@example.com>\r\n"
        "Call-ID: conf-1\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:watcher@10.0.0.9:5070>\r\n"
        "Event: conference\r\nAccept: application/conference-info+xml\r\nExpires: 600\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    c.on_message(data, W, reliable=False, now=now)
    return out(c)


def notifies(msgs: list[Any]) -> list[Any]:
    return [m for m, _ in msgs if m.is_request and m.method == "NOTIFY"]


def conference(n: Any) -> tuple[str | None, dict[str | None, tuple[str | None, str | None]]]:
    assert n.get("Content-Type") == "application/conference-info+xml" and n.get("Event") == "conference"
    root = ET.fromstring(n.body)
    assert root.get("entity") == ROOM
    users = {
        u.get("entity"): (u.get("state"), u.get(f"{{{XCON}}}nickname")) for u in root.iter(f"{{{CI}}}user")
    }
    return root.get("state"), users


def test_conference_subscription_lists_members_then_follows_joins_and_leaves() -> None:
    c, focus = make(presence=True)
    wire = Wire(focus)
    a, b = Ua("alice"), Ua("bob")
    alice = connected_party(c, focus, wire, a, 1, 0.0)
    join(c, b, 0.0)
    # a nickname for alice (RFC 7701 section 7)
    tid = alice.request("NICKNAME", [("Use-Nickname", '"Al"')], 0.5)
    wire.run(0.5)
    assert drain(alice) == [ResponseReceived(tid, 200, "OK")]
    c.focus_step(None, 0.5)
    out(c)
    msgs = subscribe_conference(c, 1.0)
    ok = final(msgs)
    assert ok.status == 200 and ok.to_tag
    (n,) = notifies(msgs)
    assert conference(n) == ("full", {a.uri: ("full", "Al"), b.uri: ("full", None)})
    answer(c, n, W, 1.1)
    # carol joins: a partial NOTIFY with her alone
    carol = Ua("carol")
    msgs = send(c, carol, carol.request("INVITE", body=offer("carol"), to_tag="",
                headers=sdp_headers("carol")), 2.0)  # fmt: skip
    (n,) = notifies(msgs)
    assert conference(n) == ("partial", {carol.uri: ("full", None)})
    answer(c, n, W, 2.1)
    # bob leaves with BYE: deleted
    b.cseq += 1
    msgs = send(c, b, b.request("BYE"), 3.0)
    assert final(msgs).status == 200
    (n,) = notifies(msgs)
    assert conference(n) == ("partial", {b.uri: ("deleted", None)})
    answer(c, n, W, 3.1)
    # alice drops her nickname (an MSRP-side change): the core's focus_step sends the NOTIFY
    alice.request("NICKNAME", [("Use-Nickname", '""')], 4.0)
    wire.run(4.0)
    c.focus_step(None, 4.0)
    (n,) = notifies(out(c))
    assert conference(n) == ("partial", {a.uri: ("full", None)})


def test_a_subscription_to_a_room_without_event_conference_gets_489() -> None:
    c, _ = make(presence=True)
    data = (
        f"SUBSCRIBE {ROOM} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKconf2\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:watcher@example.com>;tag=w1\r\nTo: <sip:lobby@example.com>\r\n"
        "Call-ID: conf-2\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:watcher@10.0.0.9:5070>\r\n"
        "Event: presence\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    c.on_message(data, W, reliable=False, now=0.0)
    r = final(out(c))
    assert r.status == 489 and "conference" in (r.get("Allow-Events") or "")


# ---------------------------------------------------------------- 9. stopping


def test_close_all_sends_a_bye_to_every_dialog() -> None:
    c, focus = make()
    wire = Wire(focus)
    a, b, d = Ua("alice"), Ua("bob"), Ua("dave", room="sip:party@rooms.example.com")
    connected_party(c, focus, wire, a, 1, 0.0)
    join(c, b, 0.0)
    join(c, d, 0.0)
    assert focus.close_all() == 3
    c.focus_step(None, 1.0)
    sent = byes([m for m, _ in out(c)])
    assert sorted(m.call_id for m in sent) == sorted([a.call_id, b.call_id, d.call_id])
    assert {m.to_tag for m in sent} == {"ft"}
    assert focus.legs == {} and focus.members(KEY) == [] and "party@rooms.example.com" not in focus.rooms
    assert focus.take_actions() == [Close(1)]
    assert focus.close_all() == 0


def test_an_offer_over_the_other_transport_gets_488() -> None:
    """RFC 4975 8.1: the m= proto and the path scheme agree; a TLS focus refuses TCP/MSRP."""
    focus = ChatFocus(FocusConfig(rooms=("sip:lobby@example.com",), msrp_scheme="msrps"))
    body = (
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=message 9 TCP/MSRP *\r\na=accept-types:message/cpim\r\na=path:msrp://127.0.0.1:9/x;tcp\r\n"
    )
    msg = sipmsg.parse_message(
        b"INVITE sip:lobby@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKtls1\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a\r\nTo: <sip:lobby@example.com>\r\n"
        b"Call-ID: tls1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:5999>\r\n"
        b"Content-Type: application/sdp\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    a = focus.invite(msg, ("127.0.0.1", 5999), "lobby@example.com", 0.0)
    assert a.status == 488 and "TCP/TLS/MSRP" in a.headers[0][1]
    assert focus.members("lobby@example.com") == []


# ---------------------------------------------------------------- through a relay (RFC 4976)

RELAY = "msrp://127.0.0.1:2855;tcp"


def _offer_invite(call_id: str, user: str) -> Any:
    body = (
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=message 9 TCP/MSRP *\r\na=accept-types:message/cpim\r\n"
        b"a=path:msrp://127.0.0.1:9/" + user.encode() + b";tcp\r\n"
    )
    return sipmsg.parse_message(
        f"INVITE sip:lobby@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK{call_id}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=a\r\nTo: <sip:lobby@example.com>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:{user}@127.0.0.1:5999>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def _relay_focus(pool: int = 2) -> tuple[ChatFocus, list[Any]]:
    """A focus with a relay, connected (cid 1) and its AUTHs answered 200 by a fake relay."""
    focus = ChatFocus(FocusConfig(rooms=("sip:lobby@example.com",), relay=RELAY, relay_pool=pool))
    focus.start(0.0)
    (act,) = focus.take_actions()
    assert isinstance(act, Connect) and (act.token, act.host, act.port, act.tls) == (
        0,
        "127.0.0.1",
        2855,
        False,
    )
    focus.connected(1, 0.0, 0)
    auths = msrpframe.MsrpParser().feed(focus.take_writes()[1])
    assert [m.method for m in auths] == ["AUTH"] * pool and all(m.to_path == [RELAY] for m in auths)
    assert focus.relay_ready == 0
    for i, m in enumerate(auths):
        ok = msrpframe.build_response(
            m.tid, 200, "OK", m.from_path, [RELAY],
            [("Use-Path", f"msrp://127.0.0.1:2856/r{i};tcp"), ("Expires", "600")],
        )  # fmt: skip
        focus.data(1, ok, 0.1)
    assert focus.relay_ready == pool
    return focus, auths


def test_through_a_relay_the_answer_path_starts_with_a_relay_session() -> None:
    focus, auths = _relay_focus()
    a = focus.invite(_offer_invite("rl1", "alice"), ("127.0.0.1", 5999), "lobby@example.com", 1.0)
    assert a.status == 200
    offer = parse_msrp_offer(a.body)
    assert offer.path[0] == "msrp://127.0.0.1:2856/r0;tcp" and offer.path[1] == auths[0].from_path[0]
    leg = focus.legs[a.to_tag or ""]
    assert leg.cid == 1 and leg.session.to_path == [
        "msrp://127.0.0.1:2856/r0;tcp",
        "msrp://127.0.0.1:9/alice;tcp",
    ]
    # the pool is refilled with a new AUTH at once
    (again,) = msrpframe.MsrpParser().feed(focus.take_writes()[1])
    assert again.method == "AUTH"


def test_through_a_relay_no_ready_session_is_503_and_a_lost_relay_ends_its_legs() -> None:
    focus = ChatFocus(FocusConfig(rooms=("sip:lobby@example.com",), relay=RELAY, relay_pool=1))
    a = focus.invite(_offer_invite("rl2", "alice"), ("127.0.0.1", 5999), "lobby@example.com", 0.0)
    assert a.status == 503 and ("Retry-After", "2") in a.headers
    focus, _ = _relay_focus(pool=1)
    a = focus.invite(_offer_invite("rl3", "bob"), ("127.0.0.1", 5999), "lobby@example.com", 1.0)
    assert a.status == 200
    focus.take_writes()
    focus.closed(1, "gone", 2.0)  # the relay connection: every leg through it ends with a BYE
    assert focus.legs == {} and [k for k, *_ in focus.take_sip()] == ["request"]
    assert not any(isinstance(x, Close) for x in focus.take_actions())
    assert focus.get_timer() == 2.0 + 5.0  # then the connection is made again
    focus.handle_timer(7.0)
    assert [type(x) for x in focus.take_actions()] == [Connect]


def test_past_max_sessions_an_invite_gets_503() -> None:
    focus = ChatFocus(FocusConfig(rooms=("sip:lobby@example.com",), max_sessions=1))
    assert (
        focus.invite(_offer_invite("ms1", "alice"), ("127.0.0.1", 5999), "lobby@example.com", 0.0).status
        == 200
    )
    a = focus.invite(_offer_invite("ms2", "bob"), ("127.0.0.1", 5999), "lobby@example.com", 0.0)
    assert a.status == 503 and ("Retry-After", "30") in a.headers
    assert [u for u, _ in focus.members("lobby@example.com")] == ["sip:alice@example.com"]


# ---------------------------------------------------------------- hostile octets


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=6), st.sampled_from([0, 1, 2]))
def test_any_octets_on_a_connection_never_raise_and_the_room_goes_on(chunks: list[bytes], how: int) -> None:
    """Random octets on a bound connection (after a valid header, a session id of ours, or
    alone): the focus answers, drops or closes that connection, never raises, and another
    participant's session on its own connection still works."""
    c, focus = make()
    wire = Wire(focus)
    alice, bob = Ua("alice"), Ua("bob")
    a = connected_party(c, focus, wire, alice, 1, 1.0)
    b = connected_party(c, focus, wire, bob, 2, 1.0)
    focus.connected(9, 1.0)
    prefix = [b"", b"MSRP t1 SEND\r\nTo-Path: " + a.to_path[-1].encode() + b"\r\n", b"MSRP t1 SEND\r\n"][how]
    data = prefix + b"".join(chunks)
    for cut in range(0, len(data), 37):
        focus.data(9, data[cut : cut + 37], 1.5)
    focus.handle_timer(2.0)
    focus.take_writes()
    focus.take_actions()
    b.send_message("message/cpim", cpim(bob.uri, "sip:lobby@example.com", b"still here"), 2.0)
    wire.run(2.0)
    assert heard(a) == [(bob.uri, b"still here")]


@pytest.mark.parametrize(
    ("frm", "event", "status"),
    [("<tel:+15550100>;tag=w1", "conference", 400), ("<sip:watcher@example.com>;tag=w1", "presence", 489)],
)
def test_a_conference_subscribe_with_a_from_we_cannot_read_or_another_event(
    frm: str, event: str, status: int
) -> None:
    """A From that is no SIP URI gets 400 with a Warning (it once escaped as an internal
    error); a room serves the conference package only (489)."""
    c, _ = make(presence=True)
    data = (
        f"SUBSCRIBE {ROOM} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKconfbad\r\n"
        f"Max-Forwards: 70\r\nFrom: {frm}\r\nTo: <sip:lobby@example.com>\r\n"
        "Call-ID: conf-bad\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:watcher@10.0.0.9:5070>\r\n"
        f"Event: {event}\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    c.on_message(data, W, reliable=False, now=0.0)
    r = final(out(c))
    assert r.status == status
    assert (r.get("Warning") is not None) == (status == 400)
