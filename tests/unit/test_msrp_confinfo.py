"""Conference state documents of a chat room (simplefast/msrp/confinfo.py), sans-IO.

The full document for RFC 7701's two users is compared with the section 9.6 example
(tests/vectors/msrp, checked against its manifest) element for element. Partial
documents are checked one by one and, with hypothesis, by applying them in order to the
first full document the way a subscriber does (users keyed by entity; ``deleted``
removes) and comparing with the room's latest full document.

Schema validation: the RFC 4575 schema is not among the shared vectors (no ``.xsd``
there has the conference-info namespace), so ``test_schema_if_available`` skips; the
element order of that schema is checked by hand in ``test_element_order``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from simplefast.msrp.confinfo import (
    CONTENT_TYPE,
    MAX_VERSION,
    NS,
    XCON_NS,
    ConferenceState,
    Member,
    Subscriber,
)
from simplefast.testing import MSRP_VECTORS, REPO

ROOM = "sip:chatroom22@chat.example.com"
BOB = Member("sip:bob@example.com", "Dopey Donkey", "Bob Hoskins")
ALICE = Member("sip:alice@atlanta.example.com", "Alice the great", "Alice Kay")
CAROL = Member("sip:carol@example.com", None)
VECTOR = "rfc7701-9.6-conference-info.xml"

C = "{" + NS + "}"
NICK = "{" + XCON_NS + "}nickname"
NSP = {"ci": NS}

UserView = tuple[str | None, str | None]  # (nickname, display text)


# ---------------------------------------------------------------- helpers


def parse(doc: bytes) -> Any:
    assert doc.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    parser = etree.XMLParser(remove_comments=True, resolve_entities=False, no_network=True)
    return etree.fromstring(doc, parser)


def canonical(el: Any) -> tuple[Any, ...]:
    """Tag, attributes, text and children; comments and blank text ignored."""
    text = (el.text or "").strip()
    kids = tuple(canonical(k) for k in el if isinstance(k.tag, str))
    return (el.tag, tuple(sorted(el.attrib.items())), text, kids)


def view(user: Any) -> UserView:
    return (user.get(NICK), user.findtext("ci:display-text", namespaces=NSP))


def users_of(root: Any) -> dict[str, UserView]:
    return {u.get("entity"): view(u) for u in root.iterfind("ci:users/ci:user", NSP)}


def room_with(*members: Member, **kw: Any) -> ConferenceState:
    state = ConferenceState(ROOM, **kw)
    state.set_members(members)
    return state


def user_count(root: Any) -> int | None:
    text = root.findtext("ci:conference-state/ci:user-count", namespaces=NSP)
    return None if text is None else int(text)


# ---------------------------------------------------------------- the RFC 7701 example


def test_vector_is_the_one_in_the_manifest() -> None:
    raw = (MSRP_VECTORS / VECTOR).read_bytes()
    entry = json.loads((MSRP_VECTORS / "manifest.json").read_text())[VECTOR]
    assert (entry["rfc"], entry["section"]) == ("RFC 7701", "9.6")
    assert hashlib.sha256(raw).hexdigest() == entry["sha256"]


def test_full_document_matches_rfc7701_9_6() -> None:
    expected = parse((MSRP_VECTORS / VECTOR).read_bytes())
    state = room_with(BOB, ALICE, subject="MSRP nickname example")
    got = parse(state.full(version=1))
    assert canonical(got) == canonical(expected)
    assert got.nsmap == {None: NS, "xcon": XCON_NS}
    assert CONTENT_TYPE == "application/conference-info+xml"


def test_element_order() -> None:
    # conference-type: conference-description, (host-info), conference-state, users;
    # conference-description-type: (display-text), subject, ..., maximum-user-count
    state = room_with(BOB, CAROL, subject="s", max_users=10)
    root = parse(state.full(version=3))
    assert [k.tag for k in root] == [C + "conference-description", C + "conference-state", C + "users"]
    assert [k.tag for k in root[0]] == [C + "subject", C + "maximum-user-count"]
    assert root[0].findtext("ci:maximum-user-count", namespaces=NSP) == "10"
    assert [k.tag for k in root[1]] == [C + "user-count"]
    assert [(k.get("entity"), k.get("state")) for k in root[2]] == [(BOB.uri, "full"), (CAROL.uri, "full")]
    assert [k.tag for k in root[2][0]] == [C + "display-text"]
    assert len(root[2][1]) == 0 and NICK not in root[2][1].attrib  # no nickname, no display
    assert (root.get("entity"), root.get("state"), root.get("version")) == (ROOM, "full", "3")


def test_without_subject_or_capacity_there_is_no_description() -> None:
    root = parse(room_with(CAROL).full(version=1))
    assert [k.tag for k in root] == [C + "conference-state", C + "users"]
    assert user_count(root) == 1


def _conference_info_xsd() -> Path | None:
    for base in (REPO.parent / "shared" / "vectors", REPO / "tests" / "vectors"):
        for path in sorted(base.rglob("*.xsd")) if base.is_dir() else ():
            if f'targetNamespace="{NS}"' in path.read_text(errors="replace"):
                return path
    return None


def test_schema_if_available() -> None:
    xsd = _conference_info_xsd()
    if xsd is None:
        pytest.skip("no RFC 4575 schema (conference-info namespace) among the shared vectors")
    schema = etree.XMLSchema(etree.parse(str(xsd)))
    state = room_with(BOB, ALICE, subject="MSRP nickname example", max_users=5)
    docs = [state.full(version=1)]
    state.set_members([ALICE, CAROL])
    docs.append(state.partial_since(1, version=2) or b"")
    for doc in docs:
        schema.assertValid(parse(doc))


# ---------------------------------------------------------------- partial documents


def test_partial_add() -> None:
    state = room_with(BOB)
    seen = state.revision
    assert state.set_members([BOB, ALICE]) is True
    root = parse(state.partial_since(seen, version=2) or b"")
    assert (root.get("state"), root.get("version")) == ("partial", "2")
    assert root.find("ci:users", NSP).get("state") == "partial"
    assert [(u.get("entity"), u.get("state")) for u in root.iterfind("ci:users/ci:user", NSP)] == [
        (ALICE.uri, "full")
    ]
    assert users_of(root) == {ALICE.uri: ("Alice the great", "Alice Kay")}
    assert user_count(root) == 2
    assert root.find("ci:conference-description", NSP) is None  # unchanged, not repeated


def test_partial_remove() -> None:
    state = room_with(BOB, ALICE)
    seen = state.revision
    assert state.set_members([ALICE]) is True
    root = parse(state.partial_since(seen) or b"")
    (user,) = root.iterfind("ci:users/ci:user", NSP)
    assert dict(user.attrib) == {"entity": BOB.uri, "state": "deleted"}
    assert len(user) == 0
    assert user_count(root) == 1


def test_partial_nickname_change_and_drop() -> None:
    state = room_with(BOB, ALICE)
    seen = state.revision
    state.set_members([BOB, Member(ALICE.uri, "Alice in Wonderland", ALICE.display)])
    root = parse(state.partial_since(seen) or b"")
    assert users_of(root) == {ALICE.uri: ("Alice in Wonderland", "Alice Kay")}
    assert root.find("ci:conference-state", NSP) is None  # the count did not move
    # a dropped nickname: the full user element replaces the old one, so no attribute
    seen = state.revision
    state.set_members([BOB, Member(ALICE.uri, None, ALICE.display)])
    (user,) = parse(state.partial_since(seen) or b"").iterfind("ci:users/ci:user", NSP)
    assert (user.get("state"), NICK in user.attrib) == ("full", False)


def test_no_change_is_no_revision() -> None:
    state = room_with(BOB, ALICE)
    rev = state.revision
    assert state.set_members([BOB, ALICE]) is False
    assert state.set_members([ALICE, BOB]) is False  # order alone is not state ...
    assert state.revision == rev
    assert state.partial_since(rev) is None
    assert state.members == (ALICE, BOB)  # ... but later full documents use it
    assert list(users_of(parse(state.full()))) == [ALICE.uri, BOB.uri]


def test_changes_that_cancel_out_are_left_out() -> None:
    state = room_with(BOB)
    seen = state.revision
    state.set_members([BOB, CAROL])  # carol comes ...
    state.set_members([BOB])  # ... and goes before the subscriber hears of it
    assert state.partial_since(seen) is None
    state.set_members([BOB, ALICE])
    state.set_members([Member(BOB.uri, "x"), ALICE])
    state.set_members([BOB, ALICE])  # bob's nickname changed and changed back
    root = parse(state.partial_since(seen) or b"")
    assert list(users_of(root)) == [ALICE.uri]


def test_partial_merges_several_revisions() -> None:
    state = room_with(BOB, ALICE, CAROL)
    seen = state.revision
    state.set_members([BOB, CAROL])
    state.set_members([Member(BOB.uri, "B"), CAROL])
    state.set_members([Member(BOB.uri, "B")])
    root = parse(state.partial_since(seen) or b"")
    got = [(u.get("entity"), u.get("state")) for u in root.iterfind("ci:users/ci:user", NSP)]
    assert sorted(got) == sorted([(BOB.uri, "full"), (ALICE.uri, "deleted"), (CAROL.uri, "deleted")])
    assert users_of(root)[BOB.uri] == ("B", None)
    assert user_count(root) == 1


def test_history_overflow_falls_back_to_full() -> None:
    state = ConferenceState(ROOM, subject="s", history=3)
    assert state.oldest_revision == 0
    for i in range(5):
        state.set_members([Member(f"sip:u{i}@example.com", None)])
    assert (state.revision, state.oldest_revision) == (5, 2)
    for since in (0, 1):
        root = parse(state.partial_since(since, version=9) or b"")
        assert (root.get("state"), root.get("version")) == ("full", "9")
        assert root.findtext("ci:conference-description/ci:subject", namespaces=NSP) == "s"
        assert list(users_of(root)) == ["sip:u4@example.com"]
    for since in (2, 3, 4):
        assert parse(state.partial_since(since) or b"").get("state") == "partial"


def test_default_history_is_64() -> None:
    state = ConferenceState(ROOM)
    for i in range(70):
        state.set_members([Member("sip:a@example.com", str(i))])
    assert state.oldest_revision == 70 - 64


# ---------------------------------------------------------------- versions


def test_revision_and_version() -> None:
    state = ConferenceState(ROOM)
    assert (state.revision, state.version) == (0, 0)
    assert parse(state.full()).get("version") == "0"
    state.set_members([BOB])
    assert (state.revision, state.version) == (1, 1)
    assert parse(state.full()).get("version") == "1"  # no version given: the revision
    assert parse(state.full(version=7)).get("version") == "7"
    assert parse(state.full(version=MAX_VERSION)).get("version") == "4294967295"
    with pytest.raises(ValueError, match="unsignedInt"):
        state.full(version=MAX_VERSION + 1)
    with pytest.raises(ValueError):
        state.full(version=-1)
    with pytest.raises(TypeError):
        state.full(version=True)
    with pytest.raises(ValueError, match="not in 0..1"):
        state.partial_since(2)
    with pytest.raises(ValueError):
        state.partial_since(-1)


def test_versions_are_per_subscription() -> None:
    state = room_with(BOB)
    early = Subscriber()
    assert parse(early.next_body(state) or b"").get("version") == "1"
    state.set_members([BOB, ALICE])
    state.set_members([ALICE])
    late = Subscriber()  # subscribes after two changes: still starts at 1, full state
    first = parse(late.next_body(state) or b"")
    assert (first.get("version"), first.get("state")) == ("1", "full")
    assert late.next_body(state) is None  # nothing new
    body = parse(early.next_body(state) or b"")
    assert (body.get("version"), body.get("state")) == ("2", "partial")
    state.set_members([ALICE, CAROL])
    assert parse(early.next_body(state) or b"").get("version") == "3"
    assert parse(late.next_body(state) or b"").get("version") == "2"
    refresh = parse(late.next_body(state, full=True) or b"")  # SUBSCRIBE refresh
    assert (refresh.get("version"), refresh.get("state")) == ("3", "full")
    assert (early.version, early.seen, late.version, late.seen) == (3, 4, 3, 4)


def test_subscriber_version_bound() -> None:
    sub = Subscriber(version=MAX_VERSION, seen=0)
    with pytest.raises(ValueError):
        sub.next_body(room_with(BOB))


# ---------------------------------------------------------------- strings


def test_escaping() -> None:
    odd = Member('sip:x@example.com;p="<&>"', "a<b&c\"d'e>", 'D<&"isplay\tline\nnext')
    state = ConferenceState(ROOM, subject='<subject & "more">')
    state.set_members([odd])
    doc = state.full(version=1)
    assert b'<b&c"' not in doc and b"D<&" not in doc  # written escaped
    root = parse(doc)
    assert users_of(root) == {odd.uri: (odd.nickname, odd.display)}
    assert root.findtext("ci:conference-description/ci:subject", namespaces=NSP) == '<subject & "more">'
    root = parse(state.partial_since(0) or b"")
    assert users_of(root) == {odd.uri: (odd.nickname, odd.display)}
    astral = Member("sip:y@example.com", "\u00e9\U0001f600")  # non-ASCII goes out as UTF-8
    assert users_of(parse(room_with(astral).full())) == {astral.uri: (astral.nickname, None)}


@pytest.mark.parametrize("bad", ["\x00", "\x07", "\x1b[31m", "\ufffe", "\uffff", "\ud800"])
@pytest.mark.parametrize("field", ["uri", "nickname", "display"])
def test_strings_xml_cannot_hold_are_refused(bad: str, field: str) -> None:
    state = room_with(BOB)
    rev, before = state.revision, state.full()
    fields = {"uri": "sip:z@example.com", "nickname": "z", "display": "Z"}
    fields[field] += bad
    with pytest.raises(ValueError, match="XML 1.0 cannot hold"):
        state.set_members([BOB, Member(**fields)])
    assert (state.revision, state.full()) == (rev, before)  # nothing changed


def test_constructor_checks() -> None:
    with pytest.raises(ValueError):
        ConferenceState("sip:r@e\x01")
    with pytest.raises(ValueError):
        ConferenceState(ROOM, subject="\x0c")
    with pytest.raises(ValueError):
        ConferenceState("")
    with pytest.raises(ValueError):
        ConferenceState(ROOM, history=0)
    with pytest.raises(ValueError):
        ConferenceState(ROOM, max_users=-1)


def test_member_list_checks() -> None:
    state = room_with(BOB)
    with pytest.raises(ValueError, match="twice"):
        state.set_members([ALICE, Member(ALICE.uri, "other")])
    with pytest.raises(ValueError, match="empty"):
        state.set_members([Member("", None)])
    with pytest.raises(TypeError):
        state.set_members([("sip:a@b", None)])  # type: ignore[list-item]
    assert state.members == (BOB,)


# ---------------------------------------------------------------- property: partials rebuild the state

URIS = [f"sip:{n}@example.com" for n in ("a", "b", "c", "d", "e")]
members_st = st.lists(
    st.builds(
        Member,
        st.sampled_from(URIS),
        st.sampled_from([None, "n1", "n2", '<&"nick']),
        st.sampled_from([None, "D", "E & <F>"]),
    ),
    unique_by=lambda m: m.uri,
    max_size=len(URIS),
)


def apply(users: dict[str, UserView], doc: bytes, last_version: int) -> tuple[dict[str, UserView], int]:
    """A subscriber's view after one NOTIFY body (RFC 4575 full/partial/deleted)."""
    root = parse(doc)
    version = int(root.get("version"))
    assert version == last_version + 1  # a subscription's versions count up by one
    if root.get("state") == "full":
        return users_of(root), version
    assert root.get("state") == "partial"
    before, users = users, dict(users)
    for u in root.iterfind("ci:users/ci:user", NSP):
        entity = u.get("entity")
        if u.get("state") == "deleted":
            assert entity in users  # only users the subscriber knows are deleted
            del users[entity]
        else:
            assert u.get("state") == "full"
            assert users.get(entity) != view(u)  # only real changes are sent
            users[entity] = view(u)
    count = user_count(root)
    if len(users) != len(before):
        assert count is not None  # a moved user count is sent ...
    assert count is None or count == len(users)  # ... and only the right one
    return users, version


@given(
    history=st.sampled_from([1, 2, 3, 64]),
    steps=st.lists(st.tuples(members_st, st.booleans()), max_size=25),
)
def test_partials_rebuild_the_full_state(history: int, steps: list[tuple[list[Member], bool]]) -> None:
    state = ConferenceState(ROOM, subject="prop", history=history)
    sub = Subscriber()
    users, version = apply({}, sub.next_body(state) or b"", 0)
    for members, notify in steps:
        before = {m.uri: m for m in state.members}
        assert state.set_members(members) == (before != {m.uri: m for m in members})
        if notify:
            body = sub.next_body(state)
            if body is not None:
                users, version = apply(users, body, version)
            assert users == users_of(parse(state.full()))
    body = sub.next_body(state)
    if body is not None:
        users, version = apply(users, body, version)
    latest = parse(state.full())
    assert users == users_of(latest)
    assert len(users) == user_count(latest)
    assert (sub.version, sub.seen) == (version, state.revision)
