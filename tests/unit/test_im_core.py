"""Page-mode IM through the SIP core (RFC 3428, 3261 18.1.1, 3994, 5438, 5365), fake clock.

The offline store is the real SQLite one in a temporary directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simplefast.im.agent import ImConfig
from simplefast.proxy.core import CoreConfig, SipCore
from simplefast.proxy.location import MemoryLocation
from simplefast.proxy.proxy import ProxyAddress
from simplefast.sip import parse_message
from simplefast.sip.transaction import TransactionLayer
from simplefast.store.offline import OfflineStore
from simplefast.testing import REPO

ME = ProxyAddress("10.0.0.1", 5060, 40000)
A = ("10.0.0.8", 5080)  # alice's UA
B = ("10.0.0.9", 5090)  # bob's UA
VECTORS = REPO / "tests" / "vectors"


def make(tmp_path: Path, **cfg: Any) -> SipCore:
    core = SipCore(CoreConfig(domains=frozenset({"example.com"}), local_hosts=frozenset({"10.0.0.1"})),
                   MemoryLocation(), ME, tl=TransactionLayer())  # fmt: skip
    conf = ImConfig(**cfg)
    store = OfflineStore(str(tmp_path / "offline.sqlite3"), per_user=conf.offline_per_user,
                         max_bytes=conf.max_body)  # fmt: skip
    core.enable_im(conf, store, 0.0)
    return core


def out(c: SipCore) -> list[Any]:
    return [(parse_message(d), peer) for d, peer in c.outgoing()]


def message(c: SipCore, body: bytes = b"hello bob", *, to: str = "bob", ctype: str = "text/plain",
            n: int = 1, now: float = 0.0, extra: str = "", uri: str | None = None) -> list[Any]:  # fmt: skip
    data = (
        f"MESSAGE {uri or f'sip:{to}@example.com'} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.0.0.8:5080;branch=z9hG4bKm{n}\r\nMax-Forwards: 70\r\n"
        f"From: <sip:alice@example.com>;tag=a{n}\r\nTo: <sip:{to}@example.com>\r\nCall-ID: m{n}\r\n"
        f"CSeq: {n} MESSAGE\r\nDate: Sat, 13 Nov 2010 23:29:00 GMT\r\n{extra}Content-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    c.on_message(data, A, reliable=False, now=now)
    return out(c)


def register(c: SipCore, user: str = "bob", *, n: int = 1, now: float = 0.0, contact: str | None = None,
             expires: int = 600) -> list[Any]:  # fmt: skip
    contact = contact or f"<sip:{user}@10.0.0.9:5090>"
    data = (
        f"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9:5090;branch=z9hG4bKr{n}{user}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=r{n}\r\nTo: <sip:{user}@example.com>\r\n"
        f"Call-ID: reg-{user}\r\nCSeq: {n} REGISTER\r\nContact: {contact}\r\nExpires: {expires}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    c.on_message(data, B, reliable=False, now=now)
    return out(c)


def answer(c: SipCore, req: Any, status: int = 200, now: float = 0.0, peer: Any = B) -> list[Any]:
    lines = [f"SIP/2.0 {status} X", *(f"Via: {v}" for v in req.get_all("Via")),
             f"From: {req.get('From')}", f"To: {req.get('To')};tag=uas", f"Call-ID: {req.call_id}",
             f"CSeq: {req.get('CSeq')}", "Content-Length: 0"]  # fmt: skip
    c.on_message(("\r\n".join(lines) + "\r\n\r\n").encode(), peer, reliable=False, now=now)
    return out(c)


def requests(msgs: list[Any], method: str = "MESSAGE") -> list[Any]:
    return [(m, p) for m, p in msgs if m.is_request and m.method == method]


def responses(msgs: list[Any]) -> list[int]:
    return [m.status for m, _ in msgs if not m.is_request]


def run_until(c: SipCore, t: float) -> list[Any]:
    sent: list[Any] = []
    while (nt := c.get_timer()) is not None and nt <= t:
        c.handle_timer(nt)
        sent += out(c)
    return sent


# ---------------------------------------------------------------- relay and sizes
def test_online_user_gets_the_message_relayed(tmp_path: Path) -> None:
    c = make(tmp_path)
    register(c)
    msgs = message(c)
    ((fwd, peer),) = requests(msgs)
    assert fwd.uri == "sip:bob@10.0.0.9:5090" and peer == ("10.0.0.9", 5090, "c")
    assert fwd.body == b"hello bob" and fwd.get("Via").startswith("SIP/2.0/UDP")
    assert responses(answer(c, fwd)) == [200]


def test_a_large_message_goes_to_a_udp_contact_over_tcp(tmp_path: Path) -> None:
    c = make(tmp_path)
    register(c)
    body = b"x" * 1400  # RFC 3261 18.1.1: over 1300 octets, path MTU unknown
    ((fwd, peer),) = requests(message(c, body))
    assert peer == ("10.0.0.9", 5090, "tcp", 0) and fwd.get("Via").startswith("SIP/2.0/TCP")
    assert fwd.body == body


def test_a_large_message_to_a_contact_that_insists_on_udp_gets_513(tmp_path: Path) -> None:
    c = make(tmp_path)
    register(c, contact="<sip:bob@10.0.0.9:5090;transport=udp>")
    msgs = message(c, b"x" * 1400)
    assert requests(msgs) == [] and responses(msgs) == [513]


def test_a_large_message_whose_tcp_connection_fails_gets_513(tmp_path: Path) -> None:
    c = make(tmp_path)
    register(c)
    ((fwd, _),) = requests(message(c, b"x" * 1400))
    c.transport_error(fwd.to_bytes(), 0.1)
    assert responses(out(c)) == [513]


def test_a_body_over_the_limit_gets_413_with_a_reason(tmp_path: Path) -> None:
    c = make(tmp_path, max_body=100)
    register(c)
    ((resp, _),) = message(c, b"y" * 101)
    assert resp.status == 413 and "100" in (resp.get("Warning") or "")


# ---------------------------------------------------------------- offline store
def test_offline_user_messages_are_stored_and_delivered_in_order_on_register(tmp_path: Path) -> None:
    c = make(tmp_path)
    for i in range(1, 4):
        assert responses(message(c, f"message {i}".encode(), n=i, now=float(i))) == [202]
    msgs = register(c, now=10.0)
    assert responses(msgs) == [200]
    delivered = []
    for i in range(1, 4):
        ((m, peer),) = requests(msgs)
        assert peer == ("10.0.0.9", 5090, "c") and m.uri == "sip:bob@10.0.0.9:5090"
        assert m.body == f"message {i}".encode() and m.get("Content-Type") == "text/plain"
        assert m.get("From") == f"<sip:alice@example.com>;tag=a{i}" and m.get("To") == "<sip:bob@example.com>"
        assert m.get("Date") == "Sat, 13 Nov 2010 23:29:00 GMT"
        delivered.append(m.call_id)
        msgs = answer(c, m, 200, now=10.0 + i)  # the next goes out only after this one's 200
    assert requests(msgs) == [] and len(set(delivered)) == 3
    assert c.im is not None and c.im.stats.delivered == 3
    assert requests(register(c, n=2, now=20.0)) == []  # nothing left


def test_a_failed_delivery_stays_stored_for_the_next_register(tmp_path: Path) -> None:
    c = make(tmp_path)
    message(c, b"first", n=1)
    message(c, b"second", n=2)
    ((m, _),) = requests(register(c, now=1.0))
    assert m.body == b"first"
    assert requests(answer(c, m, 480, now=2.0)) == []  # failed: the round stops, nothing deleted
    ((m, _),) = requests(register(c, n=2, now=3.0))
    assert m.body == b"first"
    ((m, _),) = requests(answer(c, m, 200, now=4.0))
    assert m.body == b"second"


def test_a_delivery_that_times_out_stays_stored(tmp_path: Path) -> None:
    c = make(tmp_path)
    message(c, b"only")
    ((m, _),) = requests(register(c, now=1.0))
    run_until(c, 40.0)  # Timer F: 408 for the branch
    ((m2, _),) = requests(register(c, n=2, now=41.0))
    assert m2.body == b"only" and m2.call_id != m.call_id


def test_stored_messages_survive_a_restart(tmp_path: Path) -> None:
    c = make(tmp_path)
    message(c, b"kept across a restart")
    assert c.im is not None and c.im.store is not None
    c.im.store.close()
    c2 = make(tmp_path)
    ((m, _),) = requests(register(c2, now=5.0))
    assert m.body == b"kept across a restart"


def test_iscomposing_is_relayed_never_stored(tmp_path: Path) -> None:
    c = make(tmp_path)
    body = (VECTORS / "im" / "rfc3994-5-active.xml").read_bytes()
    assert responses(message(c, body, ctype="application/im-iscomposing+xml")) == [480]
    assert requests(register(c)) == []
    ((m, _),) = requests(message(c, body, ctype="application/im-iscomposing+xml", n=2))
    assert m.body == body  # online: relayed


def test_the_per_user_cap_gets_480_with_a_reason(tmp_path: Path) -> None:
    c = make(tmp_path, offline_per_user=2)
    assert responses(message(c, n=1)) == [202]
    assert responses(message(c, n=2)) == [202]
    ((resp, _),) = message(c, n=3)
    assert resp.status == 480 and resp.get("Warning")
    assert responses(message(c, to="carol", n=4)) == [202]  # another user's room is their own


def test_without_the_offline_store_an_offline_user_gets_480(tmp_path: Path) -> None:
    c = make(tmp_path, offline=False)
    assert responses(message(c)) == [480]


def test_messages_past_their_age_are_dropped(tmp_path: Path) -> None:
    c = make(tmp_path, offline_max_age=3600.0)
    assert c.im is not None and c.im.store is not None
    c.im.store.max_age = 3600.0
    clock = [1000.0]
    c.im.wall = lambda: clock[0]
    message(c)
    clock[0] += 7200
    run_until(c, 120.0)  # the sweep
    assert c.im.store.count() == 0
    assert requests(register(c, now=121.0)) == []


# ---------------------------------------------------------------- IMDN (RFC 5438)
def _cpim_request(notification: str) -> bytes:
    return (
        "From: Alice <im:alice@example.com>\r\nTo: Bob <im:bob@example.com>\r\n"
        "NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: 34jk324j\r\n"
        "DateTime: 2006-04-04T12:16:49-05:00\r\n"
        f"imdn.Disposition-Notification: {notification}\r\n\r\n"
        "Content-type: text/plain\r\nContent-length: 12\r\n\r\nHello World\n"
    ).encode()


def test_a_stored_message_asking_for_processing_gets_a_stored_notification(tmp_path: Path) -> None:
    c = make(tmp_path)
    register(c, "alice", contact="<sip:alice@10.0.0.8:5080>")
    msgs = message(c, _cpim_request("positive-delivery, processing"), ctype="message/cpim")
    assert responses(msgs) == [202]
    ((n, peer),) = requests(msgs)
    assert n.uri == "sip:alice@10.0.0.8:5080" and n.get("Content-Type") == "message/cpim"
    assert b"<stored/>" in n.body and b"34jk324j" in n.body
    assert b"content-disposition: notification" in n.body.lower()


def test_no_stored_notification_unless_processing_was_asked(tmp_path: Path) -> None:
    c = make(tmp_path)
    register(c, "alice", contact="<sip:alice@10.0.0.8:5080>")
    msgs = message(c, _cpim_request("positive-delivery, display"), ctype="message/cpim")
    assert responses(msgs) == [202] and requests(msgs) == []


def test_cpim_messages_are_relayed_untouched(tmp_path: Path) -> None:
    c = make(tmp_path)
    register(c)
    body = _cpim_request("positive-delivery, processing")
    ((m, _),) = requests(message(c, body, ctype="message/cpim"))
    assert m.body == body


# ---------------------------------------------------------------- RFC 5365 URI lists
LIST_URI = "sip:list@example.com"


def _list_body(entries: list[tuple[str, str]], text: bytes = b"Hi all") -> tuple[str, bytes]:
    items = "".join(f'<entry uri="{u}" cp:copyControl="{cc}"/>' for u, cc in entries)
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\r\n'
        '<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"'
        f' xmlns:cp="urn:ietf:params:xml:ns:copycontrol"><list>{items}</list></resource-lists>'
    )
    body = (
        "--bnd\r\nContent-Type: text/plain\r\n\r\n" + text.decode() + "\r\n"
        "--bnd\r\nContent-Type: application/resource-lists+xml\r\nContent-Disposition: recipient-list\r\n\r\n"
        + xml
        + "\r\n--bnd--\r\n"
    ).encode()
    return "multipart/mixed;boundary=bnd", body


def test_a_uri_list_message_goes_to_each_recipient(tmp_path: Path) -> None:
    c = make(tmp_path, uri_list_service=LIST_URI)
    register(c, "bob")
    register(c, "carol", contact="<sip:carol@10.0.0.7:5070>")
    ctype, body = _list_body([("sip:bob@example.com", "to"), ("sip:carol@example.com", "cc"),
                              ("sip:dave@example.com", "bcc")])  # fmt: skip
    msgs = message(c, body, ctype=ctype, uri=LIST_URI, to="list", extra="Require: recipient-list-message\r\n")
    assert responses(msgs) == [202]
    sent = requests(msgs)
    assert {m.uri for m, _ in sent} == {"sip:bob@10.0.0.9:5090", "sip:carol@10.0.0.7:5070"}
    for m, _ in sent:
        assert b"Hi all" in m.body and b"dave" not in m.body  # bcc never shown
        assert m.get("From") == "<sip:alice@example.com>;tag=a1"
    assert c.im is not None and c.im.stats.stored == 1  # dave is offline: stored for him
    ((d, _),) = requests(register(c, "dave", contact="<sip:dave@10.0.0.6:5060>", now=1.0))
    assert b"Hi all" in d.body


def test_a_malformed_uri_list_gets_4xx_and_sends_nothing(tmp_path: Path) -> None:
    c = make(tmp_path, uri_list_service=LIST_URI)
    register(c)
    msgs = message(c, b"--bnd\r\nno end", ctype="multipart/mixed;boundary=bnd", uri=LIST_URI, to="list",
                   extra="Require: recipient-list-message\r\n")  # fmt: skip
    assert requests(msgs) == []
    ((resp, _),) = msgs
    assert 400 <= resp.status < 500 and resp.get("Warning")


def test_a_list_over_the_limit_sends_nothing(tmp_path: Path) -> None:
    c = make(tmp_path, uri_list_service=LIST_URI, uri_list_max=2)
    register(c)
    ctype, body = _list_body([(f"sip:u{i}@example.com", "to") for i in range(3)])
    msgs = message(c, body, ctype=ctype, uri=LIST_URI, to="list", extra="Require: recipient-list-message\r\n")
    assert requests(msgs) == [] and 400 <= responses(msgs)[0] < 500


def test_the_uri_list_service_needs_require_recipient_list(tmp_path: Path) -> None:
    c = make(tmp_path, uri_list_service=LIST_URI)
    ctype, body = _list_body([("sip:bob@example.com", "to")])
    msgs = message(c, body, ctype=ctype, uri=LIST_URI, to="list")
    assert requests(msgs) == [] and responses(msgs) == [403]


def test_rfc5365_section_9_message(tmp_path: Path) -> None:
    """The RFC's own MESSAGE: 202; the users of example.com (offline here) get it
    stored, the other domains need DNS, which this core has not got: each of those
    fails on its own and touches no other."""
    data = (VECTORS / "flows" / "rfc5365-9-f1-message-multipart.msg").read_bytes()
    head, body = data.split(b"\r\n\r\n", 1)  # the RFC prints Content-Length: 501; the body is longer
    data = head.replace(b"Content-Length: 501", b"Content-Length: %d" % len(body)) + b"\r\n\r\n" + body
    c = make(tmp_path, uri_list_service="sip:list-service.example.com")
    c.on_message(data, A, reliable=False, now=0.0)
    assert responses(out(c)) == [202]
    assert c.im is not None
    assert (c.im.stats.stored, c.im.stats.list_failed) == (3, 4)  # bill, eddy, andy; four elsewhere
    ((bill, _),) = requests(register(c, "bill", contact="<sip:bill@10.0.0.5:5060>", now=1.0))
    assert b"Hello World!" in bill.body
    assert b"ted@" not in bill.body and b"andy@" not in bill.body  # bcc
    assert b"randy@" not in bill.body and b"carol@example.net" not in bill.body  # anonymized
    assert b"joe@example.org" in bill.body  # cc, shown in the recipient-list-history


def test_store_writes_answer_when_committed_and_a_register_in_between_is_not_missed(tmp_path: Path) -> None:
    """With an executor (the worker's store thread), the 202 goes when the put has run;
    a REGISTER that came before the commit found nothing, so the commit delivers."""
    c = make(tmp_path)
    jobs: list[Any] = []
    assert c.im is not None
    c.im.execute = lambda job, done: jobs.append((job, done))

    def run_jobs(now: float) -> None:
        while jobs:
            job, done = jobs.pop(0)
            done(job(), now)

    assert message(c, b"racing") == []  # no answer before the commit
    assert requests(register(c, now=0.5)) == []  # nothing committed yet
    assert len(jobs) == 1
    run_jobs(1.0)  # the put, then (bob has a contact now) the claim
    msgs = out(c)
    assert responses(msgs) == [202]
    ((m, _),) = requests(msgs)
    assert m.body == b"racing"
    answer(c, m, 200, now=1.2)
    run_jobs(1.3)  # the delete, then a claim that finds nothing
    assert c.im.store is not None and c.im.store.count() == 0


def test_offline_marks_spare_sqlite_on_registers_of_users_without_messages(tmp_path: Path) -> None:
    """The shared marks table (server/shared.py) says which users have stored MESSAGEs: a
    REGISTER of anyone else never reads SQLite; delivering the last message clears it."""
    from simplefast._impl import shmindex

    mm = shmindex.create_shared(shmindex.table_size(64, 128, 8))
    marks = shmindex.ShmTable(mm, 64, 128, 8, create=True, zeroed=True)
    c = make(tmp_path)
    assert c.im is not None and c.im.store is not None
    c.im.marks = marks
    reads = []
    real_has = c.im.store.has
    c.im.reader = c.im.store
    c.im.store.has = lambda aor, now: reads.append(aor) or real_has(aor, now)  # type: ignore[method-assign]
    register(c, "carol", contact="<sip:carol@10.0.0.7:5070>")
    assert reads == []  # no mark, no query
    message(c, b"for bob")
    assert marks.get(b"sip:bob@example.com") == b"1"
    ((m, _),) = requests(register(c, now=1.0))
    answer(c, m, 200, now=1.1)
    assert marks.get(b"sip:bob@example.com") is None  # delivered: cleared
    reads.clear()
    register(c, n=2, now=2.0)
    assert reads == []
    # a mark whose messages are gone (expired) is cleared by the next REGISTER's look
    marks.put(b"sip:dave@example.com", b"1")
    register(c, "dave", contact="<sip:dave@10.0.0.6:5060>", now=3.0)
    assert (
        reads == ["sip:dave@example.com", "sip:dave@example.com"]
        and marks.get(b"sip:dave@example.com") is None
    )
