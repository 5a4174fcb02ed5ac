"""RFC 7701 chat focus (simplefast/msrp/chat.py), sans-IO: fake clock, no sockets.

Each participant is an ``MsrpSession`` of the endpoint library wired back to back to the
focus's session for it (``run`` moves the octets both ways until all are quiet). Then the
RFC 7701 section 9 examples (tests/vectors/msrp) are fed to a room set up with the RFC's
URIs and the focus's answers compared with the RFC's.
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from simplefast._impl import msrpframe as fr
from simplefast.im.cpim import build_cpim
from simplefast.msrp.chat import (
    ChatConfig,
    ChatError,
    ChatEvent,
    ChatRoom,
    DeliveryFailed,
    MessageRefused,
    MessageRelayed,
    NicknameChanged,
    NicknameError,
    Participant,
    ParticipantLeft,
    RoomFull,
    chatroom_tokens,
    nickname_key,
    parse_use_nickname,
    prepare_nickname,
    same_nickname,
    uri_identity,
)
from simplefast.msrp.endpoint import Event, MessageFailed, MessageReceived, MessageSent, MsrpSession
from simplefast.testing import VECTORS, msrp_vector

T0 = 1_000.0
ROOM = "sip:chatroom22@chat.example.com"
DATE = "2009-03-02T15:02:31-03:00"
NAMES = ("alice", "bob", "carol")


# ---------------------------------------------------------------- helpers


def tids(prefix: str) -> Callable[[], str]:
    seq = itertools.count(1)
    return lambda: f"{prefix}{next(seq):04d}"


@dataclass
class Client:
    uri: str
    session: MsrpSession  # the participant's end
    focus: MsrpSession  # the focus's end, owned by the room


def sip(name: str) -> str:
    return f"sip:{name}@example.com"


def make_room(
    names: tuple[str, ...] = NAMES, *, private: bool = True, **cfg: Any
) -> tuple[ChatRoom, dict[str, Client]]:
    room = ChatRoom(ROOM, ChatConfig(**cfg))
    clients = {}
    for i, name in enumerate(names):
        fpath = f"msrp://chat.example.com:{5000 + i}/f{name};tcp"
        cpath = f"msrp://{name}.example.com:7654/c{name};tcp"
        focus = MsrpSession(fpath, to_path=[cpath], new_tid=tids(f"f{name}"))
        client = MsrpSession(cpath, to_path=[fpath], new_tid=tids(f"c{name}"))
        room.join(sip(name), focus, private_messages=private)
        clients[name] = Client(sip(name), client, focus)
    return room, clients


def run(room: ChatRoom, clients: dict[str, Client], now: float = T0) -> dict[str, bytes]:
    """Move octets both ways until quiet; returns what the room wrote to each client."""
    got = {name: bytearray() for name in clients}
    for _ in range(1000):
        moved = False
        for name, c in clients.items():
            up = c.session.outgoing()
            if up:
                room.data(c.uri, up, now)
                moved = True
            down = room.outgoing(c.uri)
            if down:
                got[name] += down
                c.session.data(down, now)
                moved = True
        if not moved:
            return {k: bytes(v) for k, v in got.items()}
    raise AssertionError("never quiet")


def drain(s: MsrpSession) -> list[Event]:
    out = []
    while (ev := s.next_event()) is not None:
        out.append(ev)
    return out


def events(room: ChatRoom) -> list[ChatEvent]:
    out = []
    while (ev := room.next_event()) is not None:
        out.append(ev)
    return out


def cpim(frm: str | None, to: str | list[str] | None, text: bytes = b"Hello guys") -> bytes:
    headers = []
    for v in [to] if isinstance(to, str) else to or []:
        headers.append(("To", v if v.endswith(">") else f"<{v}>"))
    if frm is not None:
        headers.append(("From", frm if frm.endswith(">") else f"<{frm}>"))
    headers.append(("DateTime", DATE))
    return build_cpim(headers, "text/plain", text)


def say(c: Client, body: bytes, ct: str = "message/cpim") -> str:
    return c.session.send_message(ct, body, T0)


def received(c: Client) -> list[bytes]:
    return [e.body for e in drain(c.session) if isinstance(e, MessageReceived)]


def failed(c: Client) -> list[tuple[int, str]]:
    return [(e.status, e.comment) for e in drain(c.session) if isinstance(e, MessageFailed)]


def nickname(room: ChatRoom, c: Client, value: str | None, tid: str = "nick0001") -> tuple[int, str | None]:
    """Send a NICKNAME (Use-Nickname ``value`` as written) and return the room's answer."""
    headers = [] if value is None else [("Use-Nickname", value)]
    req = fr.build_request(tid, "NICKNAME", c.session.to_path, [c.session.local_uri], headers)
    room.data(c.uri, req, T0)
    [resp] = fr.MsrpParser().feed(room.outgoing(c.uri))
    assert not resp.is_request and resp.tid == tid
    assert resp.to_path == [c.session.local_uri] and resp.from_path == c.session.to_path
    return resp.status, resp.comment


# ---------------------------------------------------------------- messages


def test_public_message_reaches_the_two_others_unchanged() -> None:
    room, cl = make_room()
    body = cpim(sip("alice"), ROOM)
    mid = say(cl["alice"], body)
    run(room, cl)
    for name in ("bob", "carol"):
        [got] = received(cl[name])
        assert got == body  # From (the sender), To (the room) and DateTime kept, section 9.3
    assert drain(cl["alice"].session) == [MessageSent(mid)]  # not echoed back
    assert events(room) == [MessageRelayed(sip("alice"), mid, False, (sip("bob"), sip("carol")))]
    assert room.get_timer() is None  # every forwarded chunk got its 200


def test_public_message_with_to_parameters_display_names_and_no_to() -> None:
    room, cl = make_room()
    bodies = [
        cpim('"Alice" <sip:alice@EXAMPLE.com>', f"<{ROOM};transport=tcp>"),  # identity, not octets
        cpim(sip("alice"), None),  # no To: the room (a choice)
        cpim(sip("alice"), [ROOM, f'"Chatroom 22" <{ROOM}>']),  # the room twice is still the room
    ]
    for b in bodies:
        say(cl["alice"], b)
    run(room, cl)
    assert received(cl["bob"]) == bodies and received(cl["carol"]) == bodies
    assert [type(e) for e in events(room)] == [MessageRelayed] * 3


def test_private_message_reaches_only_its_target() -> None:
    room, cl = make_room()
    body = cpim(sip("alice"), sip("bob"), b"Hello Bob.")
    mid = say(cl["alice"], body)
    run(room, cl)
    assert received(cl["bob"]) == [body]
    assert received(cl["carol"]) == []
    assert drain(cl["alice"].session) == [MessageSent(mid)]
    assert events(room) == [MessageRelayed(sip("alice"), mid, True, (sip("bob"),))]


def test_private_message_by_nickname() -> None:
    room, cl = make_room()
    assert nickname(room, cl["bob"], '"Dopey Donkey"') == (200, "OK")
    body = cpim(sip("alice"), '"dopey  DONKEY" <sip:nobody@example.com>')
    say(cl["alice"], body)
    run(room, cl)
    assert received(cl["bob"]) == [body] and received(cl["carol"]) == []
    room2, cl2 = make_room(nickname_addressing=False)
    nickname(room2, cl2["bob"], '"Dopey Donkey"')
    say(cl2["alice"], body)
    run(room2, cl2)
    assert failed(cl2["alice"]) == [(404, "Failure to resolve recipient's URI")]


@pytest.mark.parametrize(
    ("frm", "to", "status", "comment"),
    [
        (sip("bob"), ROOM, 403, "CPIM From is not the sender"),
        ("sip:alice@example.org", ROOM, 403, "CPIM From is not the sender"),
        (None, ROOM, 400, "CPIM From missing"),
        ("<not a uri>", ROOM, 400, "Malformed CPIM From"),
        (sip("alice"), "sip:dave@example.com", 404, "Failure to resolve recipient's URI"),
        (sip("alice"), sip("alice"), 403, "Private message to the sender"),
        (sip("alice"), [sip("bob"), sip("carol")], 403, "One recipient per private message"),
        (sip("alice"), [ROOM, sip("bob")], 403, "One recipient per private message"),
    ],
)
def test_refused_messages(frm: str | None, to: str | list[str], status: int, comment: str) -> None:
    room, cl = make_room()
    mid = say(cl["alice"], cpim(frm, to))
    wire = run(room, cl)
    assert failed(cl["alice"]) == [(status, comment)]
    assert received(cl["bob"]) == [] and received(cl["carol"]) == []
    assert wire["bob"] == wire["carol"] == b""
    assert events(room) == [MessageRefused(sip("alice"), mid, status, comment, True)]


def test_non_cpim_and_malformed_cpim_are_refused() -> None:
    room, cl = make_room()
    say(cl["alice"], b"Hello guys", ct="text/plain")  # section 6: message/cpim only
    say(cl["alice"], b"To: <sip:chatroom22@chat.example.com>\r\nno blank line")
    run(room, cl)
    assert failed(cl["alice"]) == [(415, "Unsupported Media Type"), (400, "Malformed CPIM body")]
    assert received(cl["bob"]) == []


@pytest.mark.parametrize(("room_allows", "bob_offers"), [(False, True), (True, False)])
def test_private_messages_off_give_428(room_allows: bool, bob_offers: bool) -> None:
    room = ChatRoom(ROOM, ChatConfig(private_messages=room_allows))
    _, cl = make_room()
    for name, c in cl.items():
        room.join(c.uri, c.focus, private_messages=bob_offers or name != "bob")
    say(cl["alice"], cpim(sip("alice"), sip("bob")))
    say(cl["alice"], cpim(sip("alice"), ROOM))  # public ones still flow
    run(room, cl)
    assert failed(cl["alice"]) == [(428, "Private messages not supported")]
    assert len(received(cl["bob"])) == 1


def test_chunked_messages_are_screened_on_the_first_chunk() -> None:
    room, cl = make_room()
    alice = cl["alice"].session
    alice.chunk_size = 100  # To and From complete in the first chunk
    good = cpim(sip("alice"), ROOM, b"x" * 300)
    bad = cpim(sip("bob"), ROOM, b"y" * 300)
    say(cl["alice"], good)
    mid = say(cl["alice"], bad)
    wire = run(room, cl)
    assert received(cl["bob"]) == [good] and received(cl["carol"]) == [good]
    # every chunk of the refused one got the 403, the message failed once
    assert [e for e in drain(alice) if isinstance(e, MessageFailed)] == [
        MessageFailed(mid, 403, "CPIM From is not the sender")
    ]
    statuses = [m.status for m in fr.MsrpParser().feed(wire["alice"])]
    assert statuses.count(403) == -(-len(bad) // 100) and statuses.count(200) == -(-len(good) // 100)
    refused = [e for e in events(room) if isinstance(e, MessageRefused)]
    assert refused == [MessageRefused(sip("alice"), mid, 403, "CPIM From is not the sender", True)]


def test_undecidable_first_chunk_is_decided_when_whole() -> None:
    room, cl = make_room()
    cl["alice"].session.chunk_size = 8  # "To: <sip" ... no complete header line in the first chunk
    mid = say(cl["alice"], cpim(sip("bob"), ROOM))
    run(room, cl)
    assert drain(cl["alice"].session) == [MessageSent(mid)]  # the 200s went before the From was seen
    assert received(cl["bob"]) == [] and received(cl["carol"]) == []
    assert events(room) == [MessageRefused(sip("alice"), mid, 403, "CPIM From is not the sender", False)]


def test_failure_report_no_refusal_is_silent() -> None:
    room, cl = make_room()
    mid = cl["alice"].session.send_message("text/plain", b"hi", T0, failure_report="no")
    wire = run(room, cl)
    assert wire["alice"] == b""
    assert events(room) == [MessageRefused(sip("alice"), mid, 415, "Unsupported Media Type", False)]


def test_message_over_max_message_gets_413() -> None:
    room, cl = make_room(max_message=500)
    assert cl["alice"].focus.max_message == 500  # lowered on the session at join
    ok = cpim(sip("alice"), ROOM, b"a" * (500 - len(cpim(sip("alice"), ROOM, b""))))
    assert len(ok) == 500
    say(cl["alice"], ok)
    say(cl["alice"], cpim(sip("alice"), ROOM, b"a" * 501))
    run(room, cl)
    assert failed(cl["alice"]) == [(413, "Message too large")]
    assert received(cl["bob"]) == [ok]


def test_other_methods_get_501() -> None:
    room, cl = make_room()
    c = cl["alice"]
    req = fr.build_request("frob0001", "FROB", c.session.to_path, [c.session.local_uri])
    room.data(c.uri, req, T0)
    [resp] = fr.MsrpParser().feed(room.outgoing(c.uri))
    assert (resp.tid, resp.status, resp.comment) == ("frob0001", 501, "Unknown method")


# ---------------------------------------------------------------- nicknames


def test_nickname_grant_taken_change_and_release() -> None:
    room, cl = make_room()
    alice, bob, carol = cl["alice"], cl["bob"], cl["carol"]
    assert nickname(room, alice, '"Alice the great"') == (200, "OK")
    assert events(room) == [NicknameChanged(alice.uri, "Alice the great", None)]
    assert room.participant(alice.uri) == Participant(alice.uri, "Alice the great", True)
    assert nickname(room, bob, '"alice THE great"') == (425, "Nickname reserved or already in use")
    assert nickname(room, alice, '"ALICE the great"') == (200, "OK")  # her own: granted again
    assert events(room) == [NicknameChanged(alice.uri, "ALICE the great", "Alice the great")]
    assert nickname(room, alice, '"Alice in Wonderland"') == (200, "OK")  # a change frees the old one
    assert nickname(room, bob, '"Alice the great"') == (200, "OK")
    assert nickname(room, carol, '"alice in wonderland"')[0] == 425
    assert room.leave(alice.uri) is not None  # leaving frees hers
    assert nickname(room, carol, '"alice in wonderland"') == (200, "OK")
    assert [(p.uri, p.nickname) for p in room.participants()] == [
        (bob.uri, "Alice the great"),
        (carol.uri, "alice in wonderland"),
    ]
    assert nickname(room, carol, '""') == (200, "OK")  # an empty one drops it
    assert room.participant(carol.uri) == Participant(carol.uri, None, True)


def test_nickname_comparison_nfkc_and_spaces() -> None:
    room, cl = make_room()
    assert nickname(room, cl["alice"], '"\uff21lice"') == (200, "OK")  # FULLWIDTH A: NFKC gives "Alice"
    assert room.participant(cl["alice"].uri) == Participant(cl["alice"].uri, "Alice", True)
    assert nickname(room, cl["bob"], '"ALICE"')[0] == 425
    assert nickname(room, cl["bob"], '"  Dopey\u00a0\u2003 Donkey "') == (200, "OK")
    assert room.participant(cl["bob"].uri) == Participant(cl["bob"].uri, "Dopey Donkey", True)
    assert nickname(room, cl["carol"], '"dopey donkey"')[0] == 425
    assert nickname(room, cl["carol"], '"\\"Quoted\\" \\\\ name"') == (200, "OK")
    assert room.participant(cl["carol"].uri) == Participant(cl["carol"].uri, '"Quoted" \\ name', True)


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("Alice", 424),  # not a quoted-string
        ('"Alice', 424),
        ('"Al"ice"', 424),
        ('"Alice\\"', 424),
        ('"Al\\ice"', 424),
        ('"   "', 424),  # nothing left after the spaces
        ('"Al\u200bice"', 424),  # ZERO WIDTH SPACE: Cf
        ('"Al\ue000ice"', 424),  # private use
        ('"Al\u2028ice"', 424),  # LINE SEPARATOR
        ('"' + "x" * 65 + '"', 423),
        ('"' + "x" * 10_000 + '"', 423),  # refused before any Unicode work
        (None, 400),
    ],
)
def test_bad_nicknames(value: str | None, status: int) -> None:
    room, cl = make_room()
    assert nickname(room, cl["alice"], value)[0] == status
    assert events(room) == []


def test_two_use_nickname_headers_nicknames_off_and_reserved() -> None:
    room, cl = make_room(reserved_nicknames={"Admin": None, "Boss": sip("bob")})
    c = cl["alice"]
    req = fr.build_request(
        "nick0002", "NICKNAME", c.session.to_path, [c.session.local_uri],
        [("Use-Nickname", '"a"'), ("Use-Nickname", '"b"')],
    )  # fmt: skip
    room.data(c.uri, req, T0)
    [resp] = fr.MsrpParser().feed(room.outgoing(c.uri))
    assert (resp.status, resp.comment) == (400, "More than one Use-Nickname")
    assert nickname(room, c, '"ADMIN"')[0] == 425
    assert nickname(room, c, '"boss"')[0] == 425
    assert nickname(room, cl["bob"], '"boss"') == (200, "OK")
    room2, cl2 = make_room(nicknames=False)
    assert nickname(room2, cl2["alice"], '"Alice"') == (403, "Nicknames not allowed in this room")


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("Alice", "alice", True),
        ("\uff21\uff4c\uff49\uff43\uff45", "alice", True),  # fullwidth
        ("Stra\u00dfe", "strasse", False),  # toLowerCase, not case folding
        ("\u212bngstr\u00f6m", "\u00e5ngstr\u00f6m", True),  # ANGSTROM SIGN: NFKC
        ("e\u0301", "\u00e9", True),  # combining acute: NFKC
        ("\u2163", "iv", True),  # ROMAN NUMERAL FOUR: NFKC then lower
        ("a  b", " a\u3000b ", True),  # spaces
        ("\u0130", "i\u0307", True),  # I WITH DOT ABOVE: full lowercase mapping
        ("Alice", "Alice2", False),
        ("Al\u0000ice", "Alice", False),  # invalid matches nothing
    ],
)
def test_same_nickname(a: str, b: str, same: bool) -> None:
    assert same_nickname(a, b) is same


def test_nickname_functions() -> None:
    assert parse_use_nickname(' "Alice the great" ') == "Alice the great"
    with pytest.raises(NicknameError) as exc:
        prepare_nickname("Alice\tx")  # HTAB: a control
    assert exc.value.status == 424
    assert prepare_nickname("  \uff21lice\u00a0\u00a0the great ") == "Alice the great"
    assert nickname_key("Alice The  Great") == "alice the great"
    with pytest.raises(NicknameError):
        prepare_nickname("x" * 65)
    assert chatroom_tokens("nickname  Private-Messages") == {"nickname", "private-messages"}
    assert uri_identity("sip:Alice@Example.COM;transport=tcp") == ("sip", "Alice", "example.com", "")
    assert uri_identity("im:bob@Example.com") == ("im", "bob@example.com")
    assert uri_identity("not a uri") is None


# ---------------------------------------------------------------- membership and bounds


def test_max_participants_and_join_errors() -> None:
    room, cl = make_room(max_participants=3)
    extra = MsrpSession("msrp://chat.example.com:1/x;tcp", to_path=["msrp://d.example.com:1/d;tcp"])
    with pytest.raises(RoomFull):
        room.join(sip("dave"), extra)
    with pytest.raises(ChatError):
        room.join("SIP:alice@EXAMPLE.com", extra)  # the same identity
    room.leave(sip("carol"))
    closed = MsrpSession("msrp://chat.example.com:1/y;tcp")
    closed.closed()
    with pytest.raises(ChatError):
        room.join(sip("dave"), closed)
    with pytest.raises(ChatError):
        room.join("<bad>", extra)
    assert room.join(sip("dave"), extra) == Participant(sip("dave"), None, False)
    assert len(room) == 3 and sip("dave") in room and sip("carol") not in room


def test_leave() -> None:
    room, cl = make_room()
    nickname(room, cl["alice"], '"Alice"')
    events(room)
    say(cl["alice"], cpim(sip("alice"), ROOM))
    room.data(sip("alice"), cl["alice"].session.outgoing(), T0)
    left = room.leave(sip("alice"))
    assert left is not None and fr.MsrpParser().feed(left)[0].status == 200  # its last answers
    assert room.leave(sip("alice")) is None
    assert events(room)[-1] == ParticipantLeft(sip("alice"), "left")
    assert room.outgoing(sip("alice")) == b""
    room.data(sip("alice"), b"anything", T0)  # ignored
    say(cl["bob"], cpim(sip("bob"), ROOM))
    del cl["alice"]
    run(room, cl)
    assert len(received(cl["carol"])) == 2  # alice's (relayed before she left) and bob's
    assert [p.uri for p in room.participants()] == [sip("bob"), sip("carol")]
    assert nickname(room, cl["bob"], '"alice"') == (200, "OK")  # freed


def test_closed_sessions_are_removed() -> None:
    room, cl = make_room()
    nickname(room, cl["bob"], '"Bob"')
    events(room)
    room.closed(sip("bob"), "connection lost")
    room.data(sip("carol"), b"MSRP garbage\r\n\r\n", T0)  # a framing error closes the session
    evs = events(room)
    assert evs[0] == ParticipantLeft(sip("bob"), "connection lost")
    assert isinstance(evs[1], ParticipantLeft) and evs[1].reason.startswith("framing error")
    assert [p.uri for p in room.participants()] == [sip("alice")]
    assert nickname(room, cl["alice"], '"bob"') == (200, "OK")
    cl["alice"].focus.closed("gone")  # the session closed under the room: noticed on the next data
    room.data(sip("alice"), b"", T0)
    assert events(room)[-1] == ParticipantLeft(sip("alice"), "gone") and len(room) == 0


def test_a_participant_that_does_not_read_is_skipped() -> None:
    room, cl = make_room(max_queued=2000)
    bob = cl.pop("bob")  # never reads: room.outgoing(bob) is not called
    for i in range(8):  # carol reads after each one
        say(cl["alice"], cpim(sip("alice"), ROOM, b"%d" % i + b"z" * 400))
        run(room, cl)
    assert len(received(cl["carol"])) == 8
    skipped = [e for e in events(room) if isinstance(e, DeliveryFailed)]
    assert skipped and all(e == DeliveryFailed(bob.uri, None, 0, "queue full") for e in skipped)
    assert len(room.outgoing(bob.uri)) < 2000 + 1000  # bounded: one message past the mark at most


def test_pending_bound_and_delivery_timeout() -> None:
    room, cl = make_room(max_pending=3)
    bob = cl.pop("bob")
    for _ in range(5):
        say(cl["alice"], cpim(sip("alice"), ROOM))
    run(room, cl)
    assert room.outgoing(bob.uri).count(b" SEND\r\n") == 3  # read, never answered
    evs = events(room)
    assert evs.count(DeliveryFailed(bob.uri, None, 0, "queue full")) == 2
    t = room.get_timer()
    assert t == T0 + 30
    room.handle_timer(t)
    timeouts = [e for e in events(room) if isinstance(e, DeliveryFailed)]
    assert [(e.recipient, e.status) for e in timeouts] == [(bob.uri, 408)] * 3
    assert room.get_timer() is None


# ---------------------------------------------------------------- RFC 7701 section 9

CHAT_A = "msrp://chat.example.com:12763/kjhd37s2s20w2a;tcp"  # the focus's end with Alice
ALICE_PATH = "msrp://client.atlanta.example.com:7654/jshA7weztas;tcp"
CHAT_B = "msrp://chat.example.com:5678/jofofo3;tcp"  # the focus's end with Bob
BOB_PATH = "msrp://client.biloxi.example.com:4923/49dufdje2;tcp"


def rfc_room(alice: str, bob: str, bob_tid: str = "490ej23") -> ChatRoom:
    """Section 9's room: Alice and Bob with the paths of the examples (private messages on)."""
    room = ChatRoom(ROOM)
    sdp = msrp_vector("rfc7701-9.1-f1-invite.msg").decode()
    [attr] = [line for line in sdp.split("\r\n") if line.startswith("a=chatroom:")]
    tokens = chatroom_tokens(attr.partition(":")[2])
    assert tokens == {"nickname", "private-messages"}
    names = iter([bob_tid, "bbbb0001", "bbbb0002"])
    room.join(alice, MsrpSession(CHAT_A, to_path=[ALICE_PATH]), private_messages="private-messages" in tokens)
    room.join(
        bob, MsrpSession(CHAT_B, to_path=[BOB_PATH], new_tid=lambda: next(names)), private_messages=True
    )
    return room


def one(data: bytes) -> Any:
    msgs = fr.MsrpParser().feed(data)
    assert len(msgs) == 1, data
    return msgs[0]


def test_rfc7701_9_2_nickname_425_then_200() -> None:
    alice = "sip:alice@atlanta.example.com"
    room = rfc_room(alice, "sip:bob@example.com")
    bob_nick = fr.build_request(
        "bobnick1", "NICKNAME", [CHAT_B], [BOB_PATH], [("Use-Nickname", '"Alice the great"')]
    )
    room.data("sip:bob@example.com", bob_nick, T0)  # someone holds it already
    assert one(room.outgoing("sip:bob@example.com")).status == 200
    f1 = msrp_vector("rfc7701-9.2-f1-nickname.msg")
    room.data(alice, f1, T0)
    assert room.outgoing(alice) == msrp_vector("rfc7701-9.2-f2-425.msg")  # octet for octet
    # F3 is not printed in full: Alice tries another nickname in a new transaction (F4's tid)
    f3 = f1.replace(b"d93kswow", b"09swk2d").replace(b"Alice the great", b"Alice in Wonderland")
    room.data(alice, f3, T0)
    assert room.outgoing(alice) == msrp_vector("rfc7701-9.2-f4-200ok.msg")
    assert room.participant(alice) == Participant(alice, "Alice in Wonderland", True)

    # section 9.6's conference information document carries the nicknames the room grants
    doc = ET.fromstring((VECTORS / "msrp" / "rfc7701-9.6-conference-info.xml").read_bytes())
    ns = {"ci": "urn:ietf:params:xml:ns:conference-info"}
    xcon = "{urn:ietf:params:xml:ns:xcon-conference-info}nickname"
    users = {u.get("entity"): u.get(xcon) for u in doc.iterfind("ci:users/ci:user", ns)}
    room2 = rfc_room(alice, "sip:bob@example.com")
    for uri, nick, path, chat in (
        (alice, users[alice], ALICE_PATH, CHAT_A),
        ("sip:bob@example.com", users["sip:bob@example.com"], BOB_PATH, CHAT_B),
    ):
        req = fr.build_request("nickxx01", "NICKNAME", [chat], [path], [("Use-Nickname", f'"{nick}"')])
        room2.data(uri, req, T0)
        assert one(room2.outgoing(uri)).status == 200
    assert {p.uri: p.nickname for p in room2.participants()} == users


def test_rfc7701_9_3_regular_message() -> None:
    alice = "sip:alice@atlanta.example.com"
    room = rfc_room(alice, "sip:bob@example.com")
    f1 = msrp_vector("rfc7701-9.3-f1-send-cpim.msg")
    room.data(alice, f1, T0)
    got, want = one(room.outgoing(alice)), one(msrp_vector("rfc7701-9.3-f2-200ok.msg"))
    # the RFC's 200 also carries Message-ID (optional in a response): compare the rest
    assert (got.tid, got.status, got.comment, got.to_path, got.from_path) == (
        want.tid, want.status, want.comment, want.to_path, want.from_path,
    )  # fmt: skip
    fwd, f3 = one(room.outgoing("sip:bob@example.com")), one(msrp_vector("rfc7701-9.3-f3-send-cpim.msg"))
    assert (fwd.method, fwd.tid, fwd.to_path, fwd.from_path, fwd.content_type) == (
        f3.method, f3.tid, f3.to_path, f3.from_path, f3.content_type,
    )  # fmt: skip
    assert bytes(fwd.body) == bytes(f3.body) == bytes(one(f1).body)  # the CPIM body unchanged
    assert fwd.message_id != one(f1).message_id  # a new message of the focus's
    assert [type(e) for e in events(room)] == [MessageRelayed]


def test_rfc7701_9_4_private_message() -> None:
    # section 9.4 writes Alice as sip:alice@example.com (9.1-9.3: @atlanta.example.com)
    alice, bob, carol = "sip:alice@example.com", "sip:bob@example.com", "sip:carol@example.com"
    room = rfc_room(alice, bob, bob_tid="9v9s2")
    room.join(carol, MsrpSession("msrp://chat.example.com:1/c;tcp", to_path=["msrp://c.example.com:1/c;tcp"]))
    room.data(alice, msrp_vector("rfc7701-9.4-f1-send-private.msg"), T0)
    got, want = one(room.outgoing(alice)), one(msrp_vector("rfc7701-9.4-f2-200ok.msg"))
    assert got.tid == "6959ssdf"  # the RFC prints 6959ssdfm (manifest note): ours answers the request
    assert (got.status, got.to_path, got.from_path) == (want.status, want.to_path, want.from_path)
    fwd = one(room.outgoing(bob))
    assert (fwd.tid, fwd.to_path, fwd.from_path) == ("9v9s2", [BOB_PATH], [CHAT_B])
    assert b"To: <sip:bob@example.com>" in bytes(fwd.body)
    assert room.outgoing(carol) == b""
    room.data(bob, msrp_vector("rfc7701-9.4-f4-200ok.msg"), T0)  # Bob's F4 answers our F3
    evs = events(room)
    assert evs == [MessageRelayed(alice, "okj3kw", True, (bob,))]
    assert room.get_timer() is None  # nothing awaited: F4 completed the delivery


def test_rfc7701_9_5_chunked_private_message() -> None:
    alice, bob = "sip:alice@example.com", "sip:bob@example.com"
    room = rfc_room(alice, bob)
    room.data(alice, msrp_vector("rfc7701-9.5-chunk-1.msg"), T0)
    room.data(alice, msrp_vector("rfc7701-9.5-chunk-2.msg"), T0)
    answers = fr.MsrpParser().feed(room.outgoing(alice))
    assert [(m.tid, m.status) for m in answers] == [("7443ruls", 200)] * 2
    # as printed, octets 57-67 are in neither chunk: the message never completes
    assert room.outgoing(bob) == b"" and events(room) == []
    t = room.get_timer()
    assert t is not None
    room.handle_timer(t)
    assert room.get_timer() is None and events(room) == []
    # the first chunk's To alone is enough to refuse when Bob takes no private messages
    room2 = ChatRoom(ROOM)
    room2.join(alice, MsrpSession(CHAT_A, to_path=[ALICE_PATH]))
    room2.join(bob, MsrpSession(CHAT_B, to_path=[BOB_PATH]), private_messages=False)
    room2.data(alice, msrp_vector("rfc7701-9.5-chunk-1.msg"), T0)
    assert one(room2.outgoing(alice)).status == 428
