"""Presence through the SIP core (RFC 6665 notifier, RFC 3903 PUBLISH, RFC 3856), fake clock, one process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simplefast.presence.agent import PresenceAgent, PresenceConfig
from simplefast.presence.state import MemoryPresentities
from simplefast.presence.subscribe import MemorySubscriptions
from simplefast.proxy.core import CoreConfig, SipCore
from simplefast.proxy.location import Binding, MemoryLocation
from simplefast.proxy.proxy import ProxyAddress
from simplefast.sip import parse_message
from simplefast.sip.peer import transport_of
from simplefast.sip.transaction import TransactionLayer
from simplefast.testing import REPO

ME = ProxyAddress("10.0.0.1", 5060, 40000)
W = ("10.0.0.9", 5070)  # the watcher
P = ("10.0.0.8", 5080)  # the publisher
PIDF = (REPO / "tests" / "vectors" / "pidf" / "rfc3863-4.2.2-default-ns.xml").read_bytes()
CT = "application/pidf+xml"


def make(interval: float = 0.0, **cfg: Any) -> tuple[SipCore, PresenceAgent]:
    tl = TransactionLayer()
    agent = PresenceAgent(
        tl, MemoryPresentities(), PresenceConfig(min_notify_interval=interval, **cfg),
        contact=lambda peer: f"<{ME.contact_uri(transport_of(peer), False)}>",
        via=lambda dest: ME.sent_by(transport_of(dest), False), table=MemorySubscriptions(),
    )  # fmt: skip
    core = SipCore(CoreConfig(domains=frozenset({"example.com"}), local_hosts=frozenset({"10.0.0.1"})),
                   MemoryLocation(), ME, tl=tl, presence=agent)  # fmt: skip
    return core, agent


def subscribe(c: SipCore, *, cseq: int = 1, to_tag: str | None = None, expires: int | None = 600,
              event: str = "presence", extra: str = "", user: str = "alice", now: float = 0.0,
              call_id: str = "s1", frm: str = "bob") -> list[Any]:  # fmt: skip
    to = f"<sip:{user}@example.com>" + (f";tag={to_tag}" if to_tag else "")
    exp = f"Expires: {expires}\r\n" if expires is not None else ""
    data = (
        f"SUBSCRIBE sip:{user}@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKs{cseq}{call_id}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:{frm}@example.com>;tag=b1\r\nTo: {to}\r\nCall-ID: {call_id}\r\n"
        f"CSeq: {cseq} SUBSCRIBE\r\nContact: <sip:bob@10.0.0.9:5070>\r\nEvent: {event}\r\n{exp}{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    c.on_message(data, W, reliable=False, now=now)
    return out(c)


def publish(c: SipCore, body: bytes = PIDF, *, etag: str | None = None, expires: int = 600, now: float = 0.0,
            n: int = 1, ctype: str = CT) -> list[Any]:  # fmt: skip
    hdr = f"SIP-If-Match: {etag}\r\n" if etag else ""
    ct = f"Content-Type: {ctype}\r\n" if body else ""
    data = (
        f"PUBLISH sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.8:5080;branch=z9hG4bKp{n}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a{n}\r\nTo: <sip:alice@example.com>\r\n"
        f"Call-ID: p{n}\r\nCSeq: 1 PUBLISH\r\nEvent: presence\r\nExpires: {expires}\r\n{hdr}{ct}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    c.on_message(data, P, reliable=False, now=now)
    return out(c)


def out(c: SipCore) -> list[Any]:
    return [(parse_message(d), peer) for d, peer in c.outgoing()]


def answer(c: SipCore, notify: Any, status: int = 200, now: float = 0.0) -> None:
    lines = [f"SIP/2.0 {status} X", *(f"Via: {v}" for v in notify.get_all("Via")),
             f"From: {notify.get('From')}", f"To: {notify.get('To')}", f"Call-ID: {notify.call_id}",
             f"CSeq: {notify.get('CSeq')}", "Content-Length: 0"]  # fmt: skip
    c.on_message(("\r\n".join(lines) + "\r\n\r\n").encode(), ("10.0.0.9", 5070), reliable=False, now=now)


def run_until(c: SipCore, t: float) -> list[Any]:
    """Run every timer due up to ``t``; what was sent meanwhile."""
    sent: list[Any] = []
    while (nt := c.get_timer()) is not None and nt <= t:
        c.handle_timer(nt)
        sent += out(c)
    return sent


def notifies(msgs: list[Any]) -> list[Any]:
    return [m for m, _ in msgs if m.is_request and m.method == "NOTIFY"]


def test_subscribe_gets_200_then_a_notify_with_the_default_document() -> None:
    c, _ = make()
    (ok, okpeer), (n, npeer) = subscribe(c)
    assert (ok.status, ok.get("Expires"), ok.get("Allow-Events")) == (200, "600", "presence, presence.winfo")
    assert ok.to_tag and okpeer == W
    assert n.method == "NOTIFY" and npeer == ("10.0.0.9", 5070, "c")  # from the client socket
    assert n.uri == "sip:bob@10.0.0.9:5070" and n.from_tag == ok.to_tag and n.to_tag == "b1"
    assert n.get("Subscription-State") == "active;expires=600" and n.get("Event") == "presence"
    assert n.get("Content-Type") == CT and b"<basic>closed</basic>" in n.body
    assert b'entity="sip:alice@example.com"' in n.body


def test_publish_reaches_the_watcher_and_cseq_grows() -> None:
    c, agent = make()
    subscribe(c)
    msgs = publish(c, now=1.0)
    assert msgs[0][0].status == 200 and msgs[0][0].get("SIP-ETag")  # the 200 first, then the NOTIFY
    (n,) = notifies(msgs)
    assert n.cseq_num == 2 and b"<basic>open</basic>" in n.body
    etag = msgs[0][0].get("SIP-ETag")
    msgs = publish(c, PIDF.replace(b">open<", b">closed<"), etag=etag, now=2.0, n=2)
    (n,) = notifies(msgs)
    assert n.cseq_num == 3 and b"<basic>closed</basic>" in n.body
    # a refresh (no body) changes nothing a watcher sees: no NOTIFY
    etag = msgs[0][0].get("SIP-ETag")
    msgs = publish(c, b"", etag=etag, now=3.0, n=3)
    assert msgs[0][0].status == 200 and notifies(msgs) == []
    assert agent.publications.version("sip:alice@example.com") == 2


def test_publish_rejections() -> None:
    c, _ = make()
    assert publish(c, b"<presence", n=1)[0][0].status == 400
    r = publish(c, ctype="text/plain", n=2)[0][0]
    assert (r.status, r.get("Accept")) == (415, CT)
    assert publish(c, etag="nope", n=3)[0][0].status == 412
    r = publish(c, expires=5, n=4)[0][0]
    assert (r.status, r.get("Min-Expires")) == (423, "60")


def test_refresh_unsubscribe_and_481() -> None:
    c, agent = make()
    (ok, _), _ = subscribe(c)
    tag = ok.to_tag
    msgs = subscribe(c, cseq=2, to_tag=tag, expires=300, now=10.0)
    assert msgs[0][0].status == 200 and msgs[0][0].get("Expires") == "300"
    assert notifies(msgs)[0].get("Subscription-State") == "active;expires=300"
    msgs = subscribe(c, cseq=3, to_tag=tag, expires=0, now=20.0)
    assert msgs[0][0].status == 200
    (n,) = notifies(msgs)
    assert n.get("Subscription-State") == "terminated;reason=timeout" and n.cseq_num == 3
    assert agent.notifier.count() == 0 and agent.notifier.ended["unsubscribed"] == 1
    assert subscribe(c, cseq=4, to_tag=tag, now=21.0)[0][0].status == 481
    assert subscribe(c, cseq=1, to_tag="unknown", now=21.0, call_id="s9")[0][0].status == 481


def test_bad_event_interval_too_brief_max_expires_and_accept() -> None:
    c, _ = make()
    r = subscribe(c, event="presence.foo")[0][0]
    assert (r.status, r.get("Allow-Events")) == (489, "presence, presence.winfo")
    r = subscribe(c, expires=10, call_id="s2")[0][0]
    assert (r.status, r.get("Min-Expires")) == (423, "60")
    r = subscribe(c, expires=999999, call_id="s3")[0][0]
    assert (r.status, r.get("Expires")) == (200, "3600")
    r = subscribe(c, extra="Accept: text/plain\r\n", call_id="s4")[0][0]
    assert (r.status, r.get("Accept")) == (406, CT)
    r = subscribe(c, extra="Accept: application/*\r\n", call_id="s5")[0][0]
    assert r.status == 200


def test_fetch_gives_one_terminated_notify_and_keeps_nothing() -> None:
    c, agent = make()
    msgs = subscribe(c, expires=0)
    assert msgs[0][0].status == 200
    (n,) = notifies(msgs)
    assert n.get("Subscription-State") == "terminated;reason=timeout" and n.body
    assert agent.notifier.count() == 0


def test_expiry_sends_terminated_timeout() -> None:
    c, agent = make()
    (_, _), (n, _) = subscribe(c, expires=60)
    answer(c, n)
    ns = notifies(run_until(c, 61.0))  # the final NOTIFY (and its retransmissions: unanswered)
    n = ns[0]
    assert {m.cseq_num for m in ns} == {2}
    assert n.get("Subscription-State") == "terminated;reason=timeout"
    assert agent.notifier.count() == 0 and agent.notifier.ended["timeout"] == 1


def test_notify_481_ends_the_subscription() -> None:
    c, agent = make()
    (_, _), (n, _) = subscribe(c)
    answer(c, n, 481)
    assert agent.notifier.count() == 0 and agent.notifier.ended["notify 481"] == 1
    assert notifies(publish(c, now=1.0)) == []


@pytest.mark.parametrize("grace", [False, True])
def test_notify_timeout_ends_it_unless_grace(grace: bool) -> None:
    c, agent = make(notify_grace=grace)
    subscribe(c)
    t = 0.0
    while (nt := c.get_timer()) is not None and nt < 40:  # retransmissions, then Timer F
        t = nt
        c.handle_timer(t)
        out(c)
    assert agent.notifier.count() == (1 if grace else 0)
    if grace:
        assert agent.notifier.kept["notify timeout"] == 1
        assert len(notifies(publish(c, now=t + 1))) == 1  # the next change tries again
    else:
        assert agent.notifier.ended["notify timeout"] == 1


def test_pacing_holds_changes_and_sends_the_latest() -> None:
    c, _ = make(interval=5.0)
    (_, _), (n, _) = subscribe(c)
    answer(c, n)
    assert notifies(publish(c, now=1.0)) == []  # inside 5 s of the first NOTIFY: held
    closed = PIDF.replace(b">open<", b">closed<")  # the same tuple: the newest wins
    assert notifies(publish(c, closed, now=2.0, n=2)) == []
    assert notifies(run_until(c, 4.99)) == []
    (n,) = notifies(run_until(c, 5.0))  # one NOTIFY, with the state current at 5 s
    assert n.cseq_num == 2 and b"<basic>closed</basic>" in n.body and b"<basic>open</basic>" not in n.body
    answer(c, n, now=5.0)
    # the final NOTIFY of an unsubscribe is never held back
    msgs = subscribe(c, cseq=2, to_tag=n.from_tag, expires=0, now=6.0)
    assert notifies(msgs)[0].get("Subscription-State") == "terminated;reason=timeout"


@pytest.mark.parametrize(
    ("policy", "status", "state", "body"),
    [("confirm", 200, "pending", b""), ("block", 403, None, None),
     ("polite-block", 200, "active", b"<basic>closed</basic>"),
     ("allow", 200, "active", b"<basic>open</basic>")],
)  # fmt: skip
def test_policies(policy: str, status: int, state: str | None, body: bytes | None) -> None:
    c, _ = make(default_policy=policy)
    publish(c)  # alice is open
    msgs = subscribe(c)
    assert msgs[0][0].status == status
    if state is None:
        assert notifies(msgs) == []
        return
    (n,) = notifies(msgs)
    assert n.get("Subscription-State").startswith(state)
    assert (body in n.body) if body else n.body == b""


def test_per_domain_policy_and_own_presence() -> None:
    c, _ = make(default_policy="allow", policies={"example.com": "block"})
    assert subscribe(c)[0][0].status == 403
    assert subscribe(c, user="bob", call_id="s2")[0][0].status == 200  # bob watching himself


def test_other_event_of_a_registered_user_is_proxied() -> None:
    c, _ = make()
    b = Binding("sip:alice@10.0.0.7:5090", 1e9, None, "c1", 1)
    c.location.put("sip:alice@example.com", [b])
    msgs = subscribe(c, event="dialog")
    assert msgs[0][0].is_request and msgs[0][0].method == "SUBSCRIBE"  # forwarded to the contact
    assert subscribe(c, event="dialog", user="carol", call_id="s2")[0][0].status == 489


def test_options_lists_allow_events() -> None:
    c, _ = make()
    data = (
        b"OPTIONS sip:10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKo1\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:x@example.com>;tag=1\r\nTo: <sip:10.0.0.1>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    c.on_message(data, W, reliable=False, now=0.0)
    ((r, _),) = out(c)
    assert r.get("Allow-Events") == "presence, presence.winfo"


def test_a_replacement_worker_takes_its_subscriptions_back() -> None:
    c, agent = make()
    (ok, _), (n, _) = subscribe(c)
    table = agent.notifier.table
    c2, agent2 = make()
    agent2.notifier.table = table
    agent2.store = agent2.package.store = agent2.publications.store = agent.store
    assert agent2.restore(1.0) == 1
    msgs = publish(c2, now=2.0)
    (n2,) = notifies(msgs)
    assert n2.cseq_num == n.cseq_num + 1 and n2.from_tag == ok.to_tag  # the CSeq goes on


WINFO_XSD = REPO / "tests" / "vectors" / "winfo" / "rfc3858-6-watcherinfo.xsd"


# the schema imports xml:lang from the W3C's site; the tests stay offline with this stand-in
XML_XSD = b"""<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"
  targetNamespace="http://www.w3.org/XML/1998/namespace">
  <xs:attribute name="lang" type="xs:language"/></xs:schema>"""


def winfo_doc(n: Any) -> Any:
    import tempfile

    from lxml import etree

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "xml.xsd"
        local.write_bytes(XML_XSD)
        text = WINFO_XSD.read_bytes().replace(b"http://www.w3.org/2001/03/xml.xsd", local.as_uri().encode())
        schema = etree.XMLSchema(etree.fromstring(text, etree.XMLParser(no_network=True)))
    doc = etree.fromstring(n.body)
    schema.assertValid(doc)  # every document we send is valid RFC 3858
    return doc


def watchers_of(doc: Any) -> list[tuple[str, str, str]]:
    ns = "{urn:ietf:params:xml:ns:watcherinfo}"
    return [(w.text, w.get("event"), w.get("status")) for w in doc.iter(f"{ns}watcher")]


def test_watcherinfo_full_state_then_partial_events() -> None:
    c, _ = make(default_policy="confirm")
    subscribe(c, call_id="w1")  # bob watches alice: pending (confirm)
    msgs = subscribe(c, event="presence.winfo", frm="alice", call_id="wi")
    assert msgs[0][0].status == 200
    (n,) = [m for m in notifies(msgs) if m.call_id == "wi"]
    assert n.get("Content-Type") == "application/watcherinfo+xml" and n.get("Event") == "presence.winfo"
    doc = winfo_doc(n)
    assert (doc.get("version"), doc.get("state")) == ("0", "full")
    assert watchers_of(doc) == [("sip:bob@example.com", "subscribe", "pending")]
    # another subscription of bob's: a partial NOTIFY with it alone, version 1
    msgs = subscribe(c, call_id="w2", extra="", user="alice", now=1.0)
    (n,) = [m for m in notifies(msgs) if m.call_id == "wi"]
    doc = winfo_doc(n)
    assert (doc.get("version"), doc.get("state")) == ("1", "partial")
    assert watchers_of(doc) == [("sip:bob@example.com", "subscribe", "pending")]
    # bob's first subscription ends (unsubscribe): terminated, event timeout, version 2
    tag = next(m for m, _ in subscribe(c, call_id="w3", now=2.0) if not m.is_request).to_tag
    msgs = subscribe(c, call_id="w3", cseq=2, to_tag=tag, expires=0, now=3.0)
    (n,) = [m for m in notifies(msgs) if m.call_id == "wi"]
    doc = winfo_doc(n)
    assert doc.get("version") == "3" and watchers_of(doc) == [
        ("sip:bob@example.com", "timeout", "terminated")
    ]


def test_watcherinfo_of_someone_else_is_forbidden_and_admins_may() -> None:
    c, _ = make()
    assert subscribe(c, event="presence.winfo", frm="carol", call_id="x1")[0][0].status == 403
    c, _ = make(winfo_admins=frozenset({"sip:carol@example.com"}))
    msgs = subscribe(c, event="presence.winfo", frm="carol", call_id="x2")
    assert msgs[0][0].status == 200 and winfo_doc(notifies(msgs)[0]).get("state") == "full"


def test_notify_window_queues_in_order_and_sends_as_responses_come() -> None:
    c, agent = make(notify_window=2)
    firsts = []
    for i in range(4):
        msgs = subscribe(c, call_id=f"q{i}")
        firsts += notifies(msgs)
    assert len(firsts) == 2 and agent.notifier.notifies_queued == 2  # two wait for room
    publish(c, now=1.0)  # four more, queued behind
    assert agent.notifier.txns.outstanding == 2
    got = []
    pending = list(firsts)
    while pending:
        n = pending.pop(0)
        got.append((n.call_id, n.cseq_num, b"<basic>open</basic>" in n.body))
        answer(c, n, now=1.1)
        pending += notifies(out(c))
    # every NOTIFY went, each subscription's in CSeq order, the published state after the first
    assert sorted(got) == sorted(
        [(f"q{i}", 1, False) for i in range(4)] + [(f"q{i}", 2, True) for i in range(4)]
    )
    assert agent.notifier.txns.outstanding == 0 and not agent.notifier._queue


FULL_PIDF = [
    "rfc3863-4.2.2-default-ns.xml", "rfc3863-4.2.2-prefixed-ns.xml",
    "rfc3863-4.3.1-default-ns-status-ext.xml", "rfc3863-4.3.2-other-ext-elements.xml",
    "rfc4479-7.1-basic-im-client.xml", "rfc4481-4-timed-status.xml",
]  # fmt: skip  # the well-formed complete documents of tests/vectors/pidf (the manifest says which)


def _norm(el: Any) -> Any:
    """An element as (qualified tag, attributes, text, children): prefixes do not matter."""
    text = (el.text or "").strip()
    return (
        el.tag,
        tuple(sorted(el.attrib.items())),
        text,
        tuple(_norm(c) for c in el if isinstance(c.tag, str)),
    )


@pytest.mark.parametrize("name", FULL_PIDF)
def test_every_complete_pidf_vector_reaches_the_watcher_intact(name: str) -> None:
    from lxml import etree

    doc = (REPO / "tests" / "vectors" / "pidf" / name).read_bytes()
    c, _ = make()
    subscribe(c)
    msgs = publish(c, doc, now=1.0)
    assert msgs[0][0].status == 200, msgs[0][0].get("Warning")
    (n,) = notifies(msgs)
    sent = etree.fromstring(doc)
    got = etree.fromstring(n.body)
    assert got.get("entity") == "sip:alice@example.com"  # the presentity's AOR (pidf.compose rule 5)
    have = {_norm(el) for el in got}
    for el in sent:  # every tuple, note, person, device and extension, with all it holds
        if isinstance(el.tag, str):
            assert _norm(el) in have, etree.tostring(el)[:200]


_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["SUBSCRIBE", "PUBLISH"]),
    event=st.one_of(st.sampled_from(["presence", "presence.winfo", "presence;id=7", "dialog", ""]), _text),
    expires=st.one_of(st.sampled_from(["0", "60", "3600", "99999999999", "-1", "x"]), _text),
    accept=st.one_of(st.sampled_from(["application/pidf+xml", "*/*", "text/plain", ""]), _text),
    contact=st.one_of(st.sampled_from(["<sip:w@10.0.0.9:5070>", "*", "<sip:[::1]:5>", ""]), _text),
    to_tag=st.one_of(st.none(), _text.filter(lambda t: t.isalnum())),
    if_match=st.one_of(st.none(), _text),
    body=st.one_of(st.just(b""), st.just(PIDF), st.binary(max_size=200), _text.map(str.encode)),
)
def test_any_header_values_get_an_answer_and_never_raise(
    method: str, event: str, expires: str, accept: str, contact: str, to_tag: str | None,
    if_match: str | None, body: bytes,
) -> None:  # fmt: skip
    c, _ = make()
    to = "<sip:alice@example.com>" + (f";tag={to_tag}" if to_tag else "")
    extra = "".join(
        f"{name}: {value}\r\n"
        for name, value in (("Event", event), ("Expires", expires), ("Accept", accept), ("Contact", contact),
                            ("SIP-If-Match", if_match), ("Content-Type", CT if body else None))
        if value
    )  # fmt: skip
    data = (
        f"{method} sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKfz\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=b1\r\nTo: {to}\r\nCall-ID: fz1\r\n"
        f"CSeq: 1 {method}\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    c.on_message(data, W, reliable=False, now=0.0)
    answers = [m for m, _ in out(c) if not m.is_request]
    assert len(answers) == 1 and 200 <= answers[0].status < 700  # one final answer, whatever came in


def test_record_route_becomes_the_notify_route_set_and_next_hop() -> None:
    c, _ = make()
    rr = "Record-Route: <sip:10.0.0.2;lr>, <sip:10.0.0.3:5070;lr>\r\n"
    rr += "Record-Route: <sip:edge.example.com;lr>\r\n"
    (_, _), (n, dest) = subscribe(c, extra=rr)
    assert n.get_all("Route") == ["<sip:10.0.0.2;lr>", "<sip:10.0.0.3:5070;lr>", "<sip:edge.example.com;lr>"]
    assert dest == ("10.0.0.2", 5060, "c")  # the first route, an address: the next hop


def _winfo_events(msgs: list[Any]) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for n in notifies(msgs):
        if n.call_id == "wi":
            out += watchers_of(winfo_doc(n))
    return out


def test_a_policy_change_approves_pending_and_rejects_active_watchers() -> None:
    """SIGHUP with other policies (PresenceAgent.reconfigured): confirm -> allow makes a
    pending watcher active (NOTIFY with the document; winfo event approved); allow ->
    block ends an active one with reason rejected (winfo event rejected)."""
    c, agent = make(default_policy="confirm")
    (ok, _), (n, _) = subscribe(c, call_id="w1")
    assert n.get("Subscription-State").startswith("pending") and not n.body
    subscribe(c, event="presence.winfo", frm="alice", call_id="wi")
    agent.reconfigured(PresenceConfig(default_policy="allow"), [], 1.0)
    msgs = out(c)
    (n,) = [m for m in notifies(msgs) if m.call_id == "w1"]
    assert n.get("Subscription-State").startswith("active") and b"<basic>closed</basic>" in n.body
    assert _winfo_events(msgs) == [("sip:bob@example.com", "approved", "active")]
    agent.reconfigured(PresenceConfig(default_policy="block"), [], 2.0)
    msgs = out(c)
    (n,) = [m for m in notifies(msgs) if m.call_id == "w1"]
    assert n.get("Subscription-State") == "terminated;reason=rejected"
    assert _winfo_events(msgs) == [("sip:bob@example.com", "rejected", "terminated")]
    assert "wi" in {s.call_id for s in agent.notifier.by_key.values()}  # alice's own winfo stays


def test_a_watcher_left_pending_gives_up_after_pending_timeout() -> None:
    c, agent = make(default_policy="confirm", pending_timeout=30.0)
    for n in notifies(
        subscribe(c, call_id="w1") + subscribe(c, event="presence.winfo", frm="alice", call_id="wi")
    ):
        answer(c, n)  # no retransmissions
    msgs = run_until(c, 29.0)
    assert not [m for m in notifies(msgs) if m.call_id == "w1"]
    msgs = run_until(c, 31.0)
    finals = [m for m in notifies(msgs) if m.call_id == "w1"]  # with its retransmissions (unanswered)
    assert {(m.cseq_num, m.get("Subscription-State")) for m in finals} == {(2, "terminated;reason=giveup")}
    assert set(_winfo_events(msgs)) == {("sip:bob@example.com", "giveup", "terminated")}
    assert agent.notifier.ended["giveup"] == 1


def test_a_removed_user_ends_its_watchers_with_noresource() -> None:
    c, agent = make()
    subscribe(c, call_id="w1")
    subscribe(c, call_id="w2", user="carol")
    agent.reconfigured(PresenceConfig(), ["sip:alice@example.com"], 1.0)
    msgs = out(c)
    (n,) = notifies(msgs)
    assert n.call_id == "w1" and n.get("Subscription-State") == "terminated;reason=noresource"
    assert {s.call_id for s in agent.notifier.by_key.values()} == {"w2"}


def test_stopping_for_a_planned_time_puts_every_subscription_on_probation() -> None:
    """``stop_retry_after``: the same stop ends each subscription with
    terminated;reason=probation;retry-after=N (RFC 6665 4.1.3: subscribe again after N
    seconds), and the winfo subscriber hears event probation (RFC 3857)."""
    c, agent = make(stop_retry_after=300)
    first = notifies(subscribe(c, call_id="w1"))
    first += notifies(subscribe(c, event="presence.winfo", frm="alice", call_id="wi"))
    for m in first:
        answer(c, m, now=1.0)
    c.deactivate_presence(None, 10.0)
    msgs = notifies(out(c))
    assert [(m.call_id, m.get("Subscription-State")) for m in msgs[1:]] == [
        ("w1", "terminated;reason=probation;retry-after=300"),
        ("wi", "terminated;reason=probation;retry-after=300"),
    ]
    assert watchers_of(winfo_doc(msgs[0])) == [("sip:bob@example.com", "probation", "terminated")]
    assert agent.notifier.ended["probation"] == 2 and agent.notifier.count() == 0


def test_stopping_without_persistence_deactivates_every_subscription() -> None:
    """The server stops and keeps no subscription (persist_presence off): each watcher gets
    its final NOTIFY terminated;reason=deactivated (RFC 6665 4.2.2: subscribe again at once),
    the winfo subscriber hears event deactivated (RFC 3857) before its own subscription ends
    the same way, and the drain waits for the answers."""
    c, agent = make()
    first = notifies(subscribe(c, call_id="w1"))  # bob watches alice
    first += notifies(
        subscribe(c, event="presence.winfo", frm="alice", call_id="wi")
    )  # and alice her watchers
    for m in first:
        answer(c, m, now=1.0)
    c.deactivate_presence(None, 10.0)
    msgs = notifies(out(c))
    assert [(m.call_id, m.get("Subscription-State").partition(";")[0]) for m in msgs] == [
        ("wi", "active"),  # the winfo subscriber hears of bob's subscription first (partial)
        ("w1", "terminated"),
        ("wi", "terminated"),
    ]
    assert (
        msgs[1].get("Subscription-State")
        == msgs[2].get("Subscription-State")
        == "terminated;reason=deactivated"
    )
    assert watchers_of(winfo_doc(msgs[0])) == [("sip:bob@example.com", "deactivated", "terminated")]
    assert c.busy()  # the drain waits for the NOTIFYs' answers
    for m in msgs:
        answer(c, m, now=10.1)
    assert not c.busy()
    assert agent.notifier.count() == 0


def test_a_pacing_timer_set_before_a_refresh_notify_does_not_release_the_next_change_early() -> None:
    """RFC 3856 6.10: the interval runs from the last NOTIFY. A change held at 1 (timer at
    5), a refresh's NOTIFY at 2, a change at 3: that one goes at 7, not at 5."""
    c, _ = make(interval=5.0)
    (ok, _), (n, _) = subscribe(c, now=0.0)
    answer(c, n, now=0.0)
    r = publish(c, now=1.0, n=1)
    etag = r[0][0].get("SIP-ETag")
    run_until(c, 2.0)
    got = notifies(subscribe(c, cseq=2, to_tag=ok.to_tag, now=2.0))
    assert [m.cseq_num for m in got] == [2]
    answer(c, got[0], now=2.0)
    run_until(c, 3.0)
    publish(c, PIDF.replace(b">open<", b">closed<"), etag=etag, now=3.0, n=2)
    sent = []
    while (t := c.get_timer()) is not None and t <= 8.0:
        c.handle_timer(t)
        sent += [(t, m.cseq_num) for m in notifies(out(c))]
    assert sent[:1] == [(7.0, 3)]


def test_a_notify_481_ends_the_subscription_and_winfo_hears_at_the_time_of_the_481() -> None:
    """The watcher-information NOTIFY that a 481 causes is sent at the 481's time (it was
    sent at the time of the last request or timer, behind the NOTIFY table's clock once a
    response had moved it: ValueError)."""
    c, agent = make(winfo_admins=frozenset())
    (_, _), (wn, _) = subscribe(c, event="presence.winfo", frm="alice", call_id="wi", now=0.0)
    answer(c, wn, now=0.0)
    got = notifies(subscribe(c, now=1.0))
    n = next(m for m in got if m.get("Event") == "presence")
    for m in got:
        if m is not n:  # answered later: the NOTIFY table's clock moves to 1.6 (and nothing else)
            answer(c, m, now=1.6)
    answer(c, n, 481, now=1.6)
    assert agent.notifier.ended["notify 481"] == 1
    winfo = [m for m in notifies(out(c)) if m.get("Event") == "presence.winfo"]
    assert len(winfo) == 1 and b'event="timeout"' in winfo[0].body
