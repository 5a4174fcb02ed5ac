"""RFC 3903 publications (simplefast/presence/publish.py) with a fake clock and the real PIDF parser."""

from __future__ import annotations

import pytest

from simplefast.presence.pidf import parse_pidf
from simplefast.presence.publish import Package, Publications, PublishConfig, event_package
from simplefast.testing import REPO

PIDF = (REPO / "tests" / "vectors" / "pidf" / "rfc3863-4.2.2-default-ns.xml").read_bytes()
PIDF2 = PIDF.replace(b"<basic>open</basic>", b"<basic>closed</basic>")
ME = "sip:someone@example.com"
CT = "application/pidf+xml"


def store(**cfg: int) -> Publications:
    presence = Package("presence", (CT,), parse_pidf)
    return Publications({"presence": presence}, PublishConfig(**cfg))


def headers(result: object) -> dict[str, str]:
    return dict(result.headers)  # type: ignore[attr-defined]


def test_initial_publication_mints_an_etag_with_the_granted_expiry() -> None:
    p = store()
    r = p.publish(ME, "presence", None, None, CT, PIDF, now=0.0)
    assert (r.status, r.changed) == (200, ME)
    h = headers(r)
    assert h["Expires"] == "3600" and h["SIP-ETag"]
    (pub,) = p.of(ME, "presence")
    assert pub.etag == h["SIP-ETag"] and pub.body == PIDF and p.version(ME) == 1


def test_refresh_modify_remove_each_with_a_new_etag() -> None:
    p = store()
    e1 = headers(p.publish(ME, "presence", None, 600, CT, PIDF, now=0.0))["SIP-ETag"]
    # refresh: no body, new tag and life, the state (and version) unchanged
    r = p.publish(ME, "presence", e1, 600, None, b"", now=10.0)
    e2 = headers(r)["SIP-ETag"]
    assert r.status == 200 and e2 != e1 and r.changed is None and p.version(ME) == 1
    assert p.publish(ME, "presence", e1, 600, None, b"", now=11.0).status == 412  # the old tag is gone
    # modify: a body with SIP-If-Match replaces the state
    r = p.publish(ME, "presence", e2, 600, CT, PIDF2, now=20.0)
    e3 = headers(r)["SIP-ETag"]
    assert (r.status, r.changed) == (200, ME) and p.version(ME) == 2
    (pub,) = p.of(ME, "presence")
    assert pub.body == PIDF2 and pub.changed_at == 20.0
    # remove: Expires 0
    r = p.publish(ME, "presence", e3, 0, None, b"", now=30.0)
    assert (r.status, headers(r), r.changed) == (200, {"Expires": "0"}, ME)
    assert p.of(ME, "presence") == [] and p.version(ME) == 3 and len(p) == 0


def test_rejections_change_nothing() -> None:
    p = store()
    e1 = headers(p.publish(ME, "presence", None, None, CT, PIDF, now=0.0))["SIP-ETag"]
    before = (p.version(ME), [x.etag for x in p.of(ME, "presence")])
    r = p.publish(ME, "dialog", None, None, CT, PIDF, now=1.0)
    assert (r.status, headers(r)["Allow-Events"]) == (489, "presence")
    assert p.publish(ME, None, None, None, CT, PIDF, now=1.0).status == 489
    assert p.publish(ME, "presence", None, None, CT, b"", now=1.0).status == 400  # initial needs a body
    assert p.publish(ME, "presence", None, 0, CT, PIDF, now=1.0).status == 400  # nothing to remove
    assert p.publish(ME, "presence", "nope", None, None, b"", now=1.0).status == 412
    assert p.publish("sip:other@example.com", "presence", e1, None, None, b"", now=1.0).status == 412
    r = p.publish(ME, "presence", None, None, "text/plain", b"hi", now=1.0)
    assert (r.status, headers(r)["Accept"]) == (415, CT)
    r = p.publish(ME, "presence", None, 10, CT, PIDF, now=1.0)
    assert (r.status, headers(r)["Min-Expires"]) == (423, "60")
    r = p.publish(ME, "presence", e1, None, CT, b"<presence", now=1.0)  # malformed XML: 400, state kept
    assert r.status == 400 and "Warning" in headers(r)
    r = p.publish(ME, "presence", None, None, CT, b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>', now=1.0)
    assert r.status == 400
    assert (p.version(ME), [x.etag for x in p.of(ME, "presence")]) == before


def test_expires_is_bounded_and_publications_expire() -> None:
    p = store(max_expires=7200)
    r = p.publish(ME, "presence", None, 100000, CT, PIDF, now=0.0)
    assert headers(r)["Expires"] == "7200"
    e = headers(p.publish(ME, "presence", None, 100, CT, PIDF2, now=0.0))["SIP-ETag"]
    assert len(p.of(ME, "presence")) == 2 and p.next_deadline() == 100.0
    # the short one is refreshed before it ends: its old deadline passes without effect
    p.publish(ME, "presence", e, 300, None, b"", now=50.0)
    assert p.expire(120.0) == [] and len(p.of(ME, "presence")) == 2
    assert p.expire(350.0) == [ME] and len(p.of(ME, "presence")) == 1
    v = p.version(ME)
    assert p.expire(7200.0) == [ME] and p.of(ME, "presence") == [] and p.version(ME) == v + 1
    assert p.next_deadline() is None


@pytest.mark.parametrize(
    ("header", "name"), [("presence", "presence"), ("Presence;id=7", "presence"), (" ", None), (None, None)]
)
def test_event_package_names(header: str | None, name: str | None) -> None:
    assert event_package(header) == name


def test_state_too_large_for_the_shared_table_gets_413_and_keeps_the_old_state() -> None:
    from simplefast._impl import shmindex
    from simplefast.presence.state import ShmPresentities

    size = shmindex.table_size(64, 128, 2048)
    table = shmindex.ShmTable(bytearray(size), 64, 128, 2048, create=True)
    presence = Package("presence", (CT,), parse_pidf)
    p = Publications({"presence": presence}, PublishConfig(), ShmPresentities(table))
    r = p.publish(ME, "presence", None, None, CT, PIDF, now=0.0)
    assert r.status == 200 and p.version(ME) == 1
    big = PIDF.replace(b"</presence>", b"<note>" + b"x" * 3000 + b"</note></presence>")
    r = p.publish(ME, "presence", None, None, CT, big, now=1.0)
    assert r.status == 413 and "presentity_state_bytes" in headers(r)["Warning"]
    assert p.version(ME) == 1 and len(p.of(ME, "presence")) == 1


def test_the_same_initial_request_again_changes_nothing_while_its_tag_is_live_or_retired() -> None:
    """A caller-named entity-tag (the SIP core's hash of the request): the request again gets the
    same 200 while its publication lives, and for 64*T1 after a modify, refresh or removal retired
    the tag; after that window it is a new publication."""
    p = store()
    first = p.publish(ME, "presence", None, 600, CT, PIDF, now=0.0, etag="t1")
    assert (first.status, headers(first)["SIP-ETag"], first.changed) == (200, "t1", ME)
    again = p.publish(ME, "presence", None, 600, CT, PIDF, now=1.0, etag="t1")
    assert again == first._replace(changed=None) and p.version(ME) == 1
    # modify: t1 retired; a late copy of the initial request does not bring its state back
    assert p.publish(ME, "presence", "t1", 600, CT, PIDF2, now=2.0, etag="t2").status == 200
    late = p.publish(ME, "presence", None, 600, CT, PIDF, now=30.0, etag="t1")
    assert (late.status, headers(late)["SIP-ETag"], late.changed) == (200, "t1", None)
    assert [x.body for x in p.of(ME, "presence")] == [PIDF2] and p.version(ME) == 2
    # refresh retires t2, removal retires t3: both still recognised
    p.publish(ME, "presence", "t2", 600, None, b"", now=3.0, etag="t3")
    p.publish(ME, "presence", "t3", 0, None, b"", now=4.0, etag="t4")
    for tag in ("t1", "t2", "t3"):
        assert p.publish(ME, "presence", None, 600, CT, PIDF, now=20.0, etag=tag).changed is None
    assert p.of(ME, "presence") == [] and [r[0] for r in p.state(ME).retired] == ["t1", "t2", "t3"]
    # the window (32 s) has passed for t1 (retired at 2.0): a new publication; the write drops it
    r = p.publish(ME, "presence", None, 600, CT, PIDF, now=34.5, etag="t1")
    assert r.changed == ME and [x.etag for x in p.of(ME, "presence")] == ["t1"]
    assert [r[0] for r in p.state(ME).retired] == ["t2", "t3"]  # retired at 3.0 and 4.0


def test_retired_tags_are_capped_and_rows_without_them_decode() -> None:
    from simplefast.presence.state import EMPTY, decode, encode

    p = store()
    tag = "t0"
    p.publish(ME, "presence", None, 600, CT, PIDF, now=0.0, etag=tag)
    for i in range(1, 30):
        p.publish(ME, "presence", tag, 600, None, b"", now=float(i) / 10, etag=f"t{i}")
        tag = f"t{i}"
    state = p.state(ME)
    assert [r[0] for r in state.retired] == [f"t{i}" for i in range(13, 29)]  # the newest 16
    assert decode(state.seq, encode(state)) == state
    plain = state._replace(retired=())
    assert decode(plain.seq, encode(plain)) == plain and len(encode(plain)) < len(encode(state))
    assert decode(0, encode(EMPTY)) == EMPTY


def test_a_stored_body_the_parser_refuses_now_is_left_out_of_the_document() -> None:
    """A body taken by the check (or the pre-check) that the full parser refuses when the
    document is composed: that publication is left out and counted, the rest composes."""
    from simplefast.presence.pidf import Publication, compose
    from simplefast.presence.xmlsafe import XmlRejected

    def parse(body: bytes) -> object:
        if b"refuse-me" in body:
            raise XmlRejected("not now")
        return parse_pidf(body)

    pres = Package("presence", (CT,), parse, check=lambda body: None)
    p = Publications({"presence": pres}, PublishConfig(), compose=lambda r, docs: compose(
        r, [Publication(d.etag, doc, d.changed_at) for d, doc in docs]))  # fmt: skip
    p.watched = lambda r: False  # kept unparsed, as for a presentity nobody watches
    p.publish(ME, "presence", None, 600, CT, PIDF, now=0.0)
    p.publish(ME, "presence", None, 600, CT, PIDF2 + b"<!-- refuse-me -->", now=1.0)
    state = p.document(ME)
    assert p.unreadable == 1 and b"<basic>open</basic>" in state.document
