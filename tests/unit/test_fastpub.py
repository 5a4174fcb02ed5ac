"""The state agent's stateless PUBLISH path (FastPublisher), both twins.

What it answers (the cases of simplefast/_ref/fastpub.py's docstring), what it
declines untouched (a SipMessage back, store and expiry heap as they were,
``declined`` + 1), what it does not take at all (None), that the twins agree,
and the key property: a SipCore with the fast path enabled answers every
request with the bytes and the presentity changes of a SipCore without it.
"""

from __future__ import annotations

import marshal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simplefast._impl import ACTIVE, shmindex
from simplefast._impl import sipmsg as active_codec
from simplefast.presence.agent import PresenceAgent, PresenceConfig
from simplefast.presence.pidf import check_pidf, parse_pidf
from simplefast.presence.publish import Package, Publications, PublishConfig
from simplefast.presence.state import (
    MemoryPresentities,
    Presentity,
    PubRecord,
    ShmPresentities,
    decode,
    encode,
    mark_prefix,
)
from simplefast.presence.subscribe import MemorySubscriptions
from simplefast.proxy.core import SUPPORTED, CoreConfig, SipCore
from simplefast.proxy.location import MemoryLocation
from simplefast.proxy.proxy import ProxyAddress, source_params
from simplefast.proxy.registrar import RegistrarConfig
from simplefast.sip.peer import transport_of
from simplefast.sip.transaction import TransactionLayer
from simplefast.testing import VECTORS, OtherCodec, fnv_tag, load_impl

KEY = b"k" * 16
PEER = ("10.1.1.1", 7000)
CT = "application/pidf+xml"
EVENTS = "presence, presence.winfo"
RES = "sip:pres1_1@example.com"
ME = ProxyAddress("10.0.0.1", 5060, 40000)
# bench/sipp/publish.xml with [pid] 1, [call_number] 1, [service] example.com
BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<presence xmlns="urn:ietf:params:xml:ns:pidf" '
    b'xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" '
    b'entity="sip:pres1_1@example.com">\n<tuple id="t1">\n<status><basic>open</basic></status>\n'
    b'<contact priority="0.8">sip:pres1_1@127.0.0.1:5061</contact>\n<timestamp>2025-01-01T12:00:00Z'
    b'</timestamp>\n</tuple>\n<dm:person id="p1">\n<rpid:activities><rpid:on-the-phone/></rpid:activities>\n'
    b"<dm:note>Busy with a call until noon</dm:note>\n</dm:person>\n</presence>\n"
)
CLOSED = BODY.replace(b">open<", b">closed<")
_GOOD = "4.2.2-default-ns 4.2.2-prefixed-ns 4.3.1-default-ns-status-ext 4.3.2-other-ext-elements"
VECTOR_BODIES = [
    (VECTORS / "pidf" / f"rfc{n}.xml").read_bytes()
    for n in [*(f"3863-{x}" for x in _GOOD.split()), "4479-7.1-basic-im-client", "4481-4-timed-status"]
]
_NS = b'xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@example.com"'
BROKEN = {  # bodies check_pidf refuses (the general path answers 400)
    "malformed": b"<presence",
    "not-xml": b"hello",
    "doctype": b'<?xml version="1.0"?><!DOCTYPE presence><presence ' + _NS + b"/>",
    "entity": b'<!DOCTYPE p [<!ENTITY x "y">]><presence ' + _NS + b"><note>&x;</note></presence>",
    "wrong-root": b'<status xmlns="urn:ietf:params:xml:ns:pidf"/>',
    "wrong-namespace": BODY.replace(b'urn:ietf:params:xml:ns:pidf"', b'urn:example"', 1),
    "basic-busy": BODY.replace(b">open<", b">busy<"),
    "fragment": (VECTORS / "pidf" / "rfc4480-3.2-activities-fragment.xml").read_bytes(),
}


def pub(
    *, user: str | None = "pres1_1", host: str = "example.com", scheme: str = "sip", ruri: str | None = None,
    to_tag: str | None = None, if_match: str | None = None, frm: str = "<sip:pres1_1@example.com>",
    event: str | None = "presence", expires: int | str | None = 3600, ctype: str | None = CT,
    body: bytes = BODY, branch: str = "z9hG4bK-1-1-0", rport: bool = True, call_id: str = "1-1@127.0.0.1",
    cseq: int = 1, cseq_method: str = "PUBLISH", from_tag: str | None = "1SIPpTag1", extra: str = "",
) -> bytes:  # fmt: skip
    """A SIPp-shaped PUBLISH (bench/sipp/publish.xml) with the given changes; None drops a
    header; ``extra``: header lines (with CRLF) before Content-Length."""
    aor = f"{scheme}:{user}@{host}" if user is not None else f"{scheme}:{host}"
    text = f"PUBLISH {ruri or aor} SIP/2.0\r\n"
    text += f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch={branch}{';rport' * rport}\r\nMax-Forwards: 70\r\n"
    text += f"From: {frm}{';tag=' + from_tag if from_tag is not None else ''}\r\n"
    text += f"To: <{aor}>{';tag=' + to_tag if to_tag is not None else ''}\r\n"
    text += f"Call-ID: {call_id}\r\nCSeq: {cseq} {cseq_method}\r\n"
    headers = {"Event": event, "Expires": expires, "SIP-If-Match": if_match, "Content-Type": ctype}
    text += "".join(f"{k}: {v}\r\n" for k, v in headers.items() if v is not None)
    text += f"{extra}Content-Length: {len(body)}\r\n\r\n"
    return text.encode("utf-8", "surrogateescape") + body


SIPP = pub()


TAG = fnv_tag(KEY, "z9hG4bK-1-1-0", "1-1@127.0.0.1", 1, "1SIPpTag1")


def header(resp: bytes, name: bytes) -> list[bytes]:
    head, sep, body = resp.partition(b"\r\n\r\n")
    assert sep and body == b""
    return [v for n, _, v in (line.partition(b": ") for line in head.split(b"\r\n")[1:]) if n == name]


def shm_table(key_max: int = 128, value_max: int = 4096, slots: int = 64) -> Any:
    mem = bytearray(shmindex.table_size(slots, key_max, value_max))
    return shmindex.ShmTable(mem, slots, key_max, value_max, create=True)


class Rig:
    """One FastPublisher of a twin on its own Publications (a memory or shared-memory store)."""

    def __init__(self, impl: Any, *, shm: bool = False, value_max: int = 4096, **cfg: Any) -> None:
        self.watched: set[str] = set()
        # as PresenceAgent builds it, with the pre-check of the twin's kind
        pkg = Package("presence", (CT,), parse_pidf, check=check_pidf, scan=impl.pidfscan.scan)
        store = ShmPresentities(shm_table(value_max=value_max)) if shm else MemoryPresentities()
        self.pubs = Publications({"presence": pkg}, PublishConfig(**cfg), store)
        self.store: Any = store
        self.pubs.watched = self.watched.__contains__
        self.config = RegistrarConfig(domains=frozenset({"example.com"}))
        self.fp = impl.fastpub.FastPublisher(
            self.config, self.pubs, server="simplefast", supported=SUPPORTED, tag_key=KEY, allow_events=EVENTS
        )

    def __call__(self, data: bytes, peer: tuple[Any, ...] = PEER, now: float = 100.0) -> Any:
        return self.fp.publish(data, peer, now)

    def ok(self, data: bytes, peer: tuple[Any, ...] = PEER, now: float = 100.0) -> bytes:
        out = self(data, peer, now)
        assert type(out) is bytes, out
        return out

    def state(self) -> tuple[Any, ...]:
        store = self.pubs.store
        rows = {a: store.load(a) for a in store.aors()}
        return rows, sorted(self.pubs._expiry), self.pubs.conflicts

    def counters(self) -> tuple[int, int, str | None]:
        return self.fp.answered, self.fp.declined, self.fp.changed

    def declines(self, data: bytes, peer: tuple[Any, ...] = PEER, now: float = 100.0) -> Any:
        """Asserts a decline: a parsed PUBLISH back, nothing changed, declined + 1."""
        before, (answered, declined, _) = self.state(), self.counters()
        out = self(data, peer, now)
        assert type(out).__name__ == "SipMessage" and out.is_request and out.method == "PUBLISH", out
        assert self.state() == before
        assert self.counters() == (answered, declined + 1, None)
        return out


# ------------------------------------------------------------------ answered


def test_the_sipp_publish_is_taken(impl: Any) -> None:
    r = Rig(impl)
    out = r.ok(SIPP)
    assert out == (
        b"SIP/2.0 200 OK\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-1-0;rport=7000;received=10.1.1.1\r\n"
        b"From: <sip:pres1_1@example.com>;tag=1SIPpTag1\r\n"
        b"To: <sip:pres1_1@example.com>;tag=" + TAG.encode() + b"\r\n"
        b"Call-ID: 1-1@127.0.0.1\r\nCSeq: 1 PUBLISH\r\n"
        b"SIP-ETag: " + TAG.encode() + b"\r\nExpires: 3600\r\nAllow-Events: presence, presence.winfo\r\n"
        b"Server: simplefast\r\nContent-Length: 0\r\n\r\n"
    )
    rec = PubRecord(TAG, "presence", CT, BODY, 100.0, 3700.0)
    assert r.state() == ({RES: Presentity(1, (rec,), b"", 1)}, [(3700.0, RES)], 0)
    assert r.counters() == (1, 0, None)
    # the same 200 as the codec builds for the general path, To tag and stamp included
    msg = impl.sipmsg.parse_message(SIPP)
    hdrs = [("SIP-ETag", TAG), ("Expires", "3600"), ("Allow-Events", EVENTS), ("Server", "simplefast")]
    stamp = source_params(msg, PEER)
    assert out == bytes(impl.sipmsg.build_response(msg, 200, "OK", to_tag=TAG, extra_headers=hdrs, **stamp))


@pytest.mark.parametrize(
    "expires,granted,cfg",
    [(None, 3600, {}), (120, 120, {}), (60, 60, {}), (100000, 86400, {}), (4294967295, 86400, {}),
     (3600, 1000, {"max_expires": 1000}), (None, 1000, {"max_expires": 1000}), (30, 30, {"min_expires": 30})],
)  # fmt: skip
def test_expires_default_and_cut(impl: Any, expires: int | None, granted: int, cfg: dict[str, Any]) -> None:
    r = Rig(impl, **cfg)
    out = r.ok(pub(expires=expires), now=50.5)
    assert header(out, b"Expires") == [str(granted).encode()]
    (rec,) = r.pubs.store.load(RES).pubs
    assert rec.expires_at == 50.5 + granted and rec.changed_at == 50.5
    assert r.pubs._expiry == [(50.5 + granted, RES)]


TAKEN = {
    "host-case": (pub(host="EXAMPLE.Com"), RES),
    "ruri-port-params": (pub(ruri="sip:pres1_1@EXAMPLE.COM:5060;transport=udp"), RES),
    "user-case-kept": (pub(user="Alice"), "sip:Alice@example.com"),
    "sips": (pub(scheme="sips"), "sips:pres1_1@example.com"),
    "from-elsewhere": (pub(frm="<sip:someone@elsewhere.org>"), RES),
    "from-no-user": (pub(frm="<sips:example.net>"), RES),
    "content-type-case-params": (pub(ctype="Application/PIDF+XML; charset=UTF-8"), RES),
    "event-case-id": (pub(event="Presence;id=7"), RES),
    "event-spaces": (pub(event=" presence "), RES),
    "no-rport": (pub(rport=False), RES),
    "no-from-tag": (pub(from_tag=None), RES),
    "no-max-forwards": (SIPP.replace(b"Max-Forwards: 70\r\n", b""), RES),  # not required of a request
    "max-forwards-0": (SIPP.replace(b"Max-Forwards: 70", b"Max-Forwards: 0"), RES),
    "proxy-require": (pub(extra="Proxy-Require: foo\r\nSupported: path\r\n"), RES),
    **{f"rfc-vector-{i}": (pub(body=b), RES) for i, b in enumerate(VECTOR_BODIES)},
}


@pytest.mark.parametrize("name", list(TAKEN))
def test_taken(impl: Any, name: str) -> None:
    data, resource = TAKEN[name]
    r = Rig(impl)
    out = r.ok(data)
    assert r.pubs.store.aors() == [resource]
    (rec,) = r.pubs.store.load(resource).pubs
    assert (rec.content_type, rec.body) == (CT, bytes(impl.sipmsg.parse_message(data).body))
    tag = rec.etag.encode()
    assert header(out, b"SIP-ETag") == [tag] and header(out, b"To")[0].endswith(b">;tag=" + tag)


@pytest.mark.parametrize(
    "peer,via",
    [
        (("10.1.1.1", 7000), b"rport=7000;received=10.1.1.1"),
        (("10.1.1.1", 7000, "c"), b"rport=7000;received=10.1.1.1"),
        (("::1", 7000), b"rport=7000;received=::1"),
        (("", 7000), b"rport"),  # no address: no stamp
    ],
)
def test_via_stamp(impl: Any, peer: tuple[Any, ...], via: bytes) -> None:
    r = Rig(impl)
    out = r.ok(SIPP, peer=peer)
    assert header(out, b"Via") == [b"SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-1-0;" + via]


def test_a_second_publication_joins_the_live_ones(impl: Any) -> None:
    r = Rig(impl)
    r.ok(pub(expires=60))  # ends at 160
    r.ok(pub(branch="z9hG4bK-2", call_id="c2", expires=600), now=110.0)
    r.ok(pub(branch="z9hG4bK-3", call_id="c3", expires=600), now=170.0)  # the first one is gone
    tags = [fnv_tag(KEY, f"z9hG4bK-{i}", f"c{i}", 1, "1SIPpTag1") for i in (2, 3)]
    state = r.pubs.store.load(RES)
    assert (state.version, state.seq, state.document) == (3, 3, b"")
    got = [(p.etag, p.changed_at, p.expires_at) for p in state.pubs]
    assert got == [(tags[0], 110.0, 710.0), (tags[1], 170.0, 770.0)]
    assert sorted(r.pubs._expiry) == [(160.0, RES), (160.0, RES), (710.0, RES)]


def test_the_first_row_in_the_shared_table(impl: Any) -> None:
    """A presentity's first row is written encoded in one go (put_encoded): decode reads the
    record encode would give; the next publication goes through replace."""
    r = Rig(impl, shm=True)
    r.ok(SIPP)
    raw = r.store.table.get(RES.encode())
    want = Presentity(1, (PubRecord(TAG, "presence", CT, BODY, 100.0, 3700.0),), b"", 1)
    assert raw[:8] == (1).to_bytes(8, "big") and decode(1, raw[8:]) == want
    assert marshal.loads(raw[8:]) == marshal.loads(encode(want))
    assert [type(x) for x in marshal.loads(raw[8:])[2][0][4:]] == [float, float]
    assert r.store.take_dirty() == {RES: raw} and r.pubs._expiry == [(3700.0, RES)]
    r.ok(pub(branch="z9hG4bK-2"), now=200.0)
    assert r.pubs.store.load(RES).seq == 2 and len(r.pubs.store.load(RES).pubs) == 2


@pytest.mark.parametrize("first", [True, False], ids=["first-row", "second-row"])
def test_a_row_too_large_for_the_table_is_declined(impl: Any, first: bool) -> None:
    r = Rig(impl, shm=True, value_max=500 if first else 1000)  # one SIPp body fits 1000, two do not
    if not first:
        r.ok(SIPP)
    r.declines(pub(branch="z9hG4bK-2"), now=200.0)
    assert r.store.take_dirty() == ({} if first else {RES: r.store.table.get(RES.encode())})


def marks_table(*keys: bytes, key_max: int = 16) -> Any:
    t = shm_table(key_max=key_max, value_max=8)
    for k in keys:
        t.put(k, b"1")
    return t


def mk(event: str, resource: str, index: str) -> bytes:
    return mark_prefix(event, resource) + index.encode()


WATCH: dict[str, tuple[dict[Any, Any], Any, bool]] = {  # (local watchers, marks, taken)
    "nobody": ({}, marks_table(), True),
    "here": ({("presence", RES): {}}, marks_table(), False),
    "here-other-event": ({("presence.winfo", RES): {}}, marks_table(), True),
    "worker-2": ({}, marks_table(mk("presence", RES, "2")), False),
    "worker-0": ({}, marks_table(mk("presence", RES, "0")), False),
    "worker-3-of-3": ({}, marks_table(mk("presence", RES, "3")), True),
    "other-event": ({}, marks_table(mk("presence.winfo", RES, "1")), True),
    "other-resource": ({}, marks_table(mk("presence", RES + "x", "1")), True),
    "key-fits": ({}, marks_table(key_max=len(mk("presence", RES, "3"))), True),
    "key-too-long": ({}, marks_table(key_max=len(mk("presence", RES, "3")) - 1), False),  # every worker
}


@pytest.mark.parametrize("name", list(WATCH))
def test_watch_table(impl: Any, name: str) -> None:
    """watch_table: whether anyone watches, read from the notifier's watchers and the shared
    marks (simplefast/server/worker.py marked) instead of publications.watched."""
    local, marks, taken = WATCH[name]
    r = Rig(impl)
    r.watched.add(RES)  # not asked any more
    r.fp.watch_table(local, marks, 3)
    r.ok(SIPP) if taken else r.declines(SIPP)


def test_retransmission_is_answered_again_nothing_changed(impl: Any) -> None:
    r = Rig(impl)
    first = r.ok(SIPP)
    state = r.state()
    assert r.ok(SIPP) == first
    assert r.state() == state  # one publication, version 1, no second heap entry
    # later, from another address: the same 200 (Expires as asked), nothing written
    later = r.ok(SIPP, peer=("10.9.9.9", 1), now=3000.0)
    assert header(later, b"SIP-ETag") == header(first, b"SIP-ETag") and r.state() == state
    assert r.counters() == (3, 0, None)
    # past its time but not yet expired: still the request again
    r.ok(SIPP, now=3700.0)
    assert r.pubs.store.load(RES).version == 1
    # expired: its tag is retired for 64*T1, then the same request publishes again
    assert r.pubs.expire(3701.0) == [RES]
    r.ok(SIPP, now=3732.0)
    tag = header(first, b"SIP-ETag")[0].decode()
    assert r.pubs.store.load(RES).pubs == () and r.pubs.store.load(RES).retired[0][0] == tag
    r.ok(SIPP, now=3734.0)
    assert r.pubs.store.load(RES).version == 3 and len(r.pubs.store.load(RES).pubs) == 1


def test_changed_names_a_resource_watched_meanwhile(impl: Any) -> None:
    r = Rig(impl)
    calls: list[str] = []

    def watched(resource: str) -> bool:  # nobody before the write, someone after
        calls.append(resource)
        return len(calls) > 1

    r.pubs.watched = watched
    out = r.ok(SIPP)
    assert out.startswith(b"SIP/2.0 200 OK\r\n") and r.fp.changed == RES
    assert calls == [RES, RES] and r.pubs.store.load(RES).version == 1
    r.pubs.watched = lambda _: False
    r.ok(pub(branch="z9hG4bK-2"))
    assert r.fp.changed is None  # reset at every call
    r.pubs.watched = watched
    r.declines(pub(branch="z9hG4bK-3"))


def test_config_is_read_at_every_call(impl: Any) -> None:
    r = Rig(impl)
    r.declines(pub(host="other.org"))
    r.config.domains = frozenset({"example.com", "other.org"})
    r.pubs.config.max_expires = 1000
    r.fp.allow_events = "presence, conference"  # settable (the chat focus adds its package)
    out = r.ok(pub(host="other.org"))
    assert header(out, b"Expires") == [b"1000"] and header(out, b"Allow-Events") == [b"presence, conference"]


@pytest.mark.parametrize("name", ["server", "allow_events"])
def test_header_values_must_be_ascii_without_line_breaks(impl: Any, name: str) -> None:
    for bad in ("sf\r\nX: y", "s\u00e9rver", "a\nb"):
        with pytest.raises(ValueError):
            kw = {"server": "s", "allow_events": "e", "supported": (), "tag_key": KEY, name: bad}
            impl.fastpub.FastPublisher(RegistrarConfig(frozenset()), Publications({}), **kw)


def test_allow_events_setter_refuses_line_breaks(impl: Any) -> None:
    r = Rig(impl)
    with pytest.raises(ValueError):
        r.fp.allow_events = "presence\r\nX-Injected: 1"


# ------------------------------------------------------------------ declined


NO_CHECK = Package("presence", (CT,), parse_pidf)
CUT = SIPP.replace(b"Content-Length: %d" % len(BODY), b"Content-Length: 100")  # the body cut short
DECLINED: dict[str, tuple[bytes, tuple[Any, ...], Any]] = {
    "stream-peer-tcp": (SIPP, ("127.0.0.1", 5061, "tcp", 3), None),
    "peer-1-tuple": (SIPP, ("127.0.0.1",), None),
    "to-tag": (pub(to_tag="abc"), PEER, None),
    "sip-if-match": (pub(if_match=TAG), PEER, None),
    "ruri-host-not-ours": (pub(host="other.org"), PEER, None),
    "ruri-subdomain": (pub(host="sub.example.com"), PEER, None),
    "ruri-other-host-same-to": (pub(ruri="sip:pres1_1@other.org"), PEER, None),
    "ruri-no-user": (pub(user=None), PEER, None),
    "ruri-user-escaped": (pub(user="pres%41"), PEER, None),
    "ruri-tel": (pub(ruri="tel:+1234567"), PEER, None),
    "ruri-pres": (pub(ruri="pres:pres1_1@example.com"), PEER, None),
    "from-tel": (pub(frm="<tel:+1234567>"), PEER, None),
    "from-pres": (pub(frm="<pres:pres1_1@example.com>"), PEER, None),
    "event-missing": (pub(event=None), PEER, None),
    "event-dialog": (pub(event="dialog"), PEER, None),
    "event-winfo": (pub(event="presence.winfo"), PEER, None),
    "expires-0": (pub(expires=0), PEER, None),
    "expires-59": (pub(expires=59), PEER, None),
    "content-type-missing": (pub(ctype=None), PEER, None),
    "content-type-text": (pub(ctype="text/plain"), PEER, None),
    "body-empty": (pub(body=b""), PEER, None),
    **{f"body-{k}": (pub(body=v), PEER, None) for k, v in BROKEN.items()},
    "body-cut-by-content-length": (CUT, PEER, None),
    "validate-content-length": (SIPP.replace(b"Content-Length: ", b"Content-Length: 1"), PEER, None),
    "watched": (SIPP, PEER, lambda r: r.watched.add(RES)),
    "watched-unset": (SIPP, PEER, lambda r: setattr(r.pubs, "watched", None)),
    "package-without-check": (SIPP, PEER, lambda r: r.pubs.packages.update(presence=NO_CHECK)),
    "no-presence-package": (SIPP, PEER, lambda r: r.pubs.packages.clear()),
    "validate-require": (pub(extra="Require: foo\r\n"), PEER, None),
    "validate-cseq-method": (pub(cseq_method="REGISTER"), PEER, None),
    "validate-max-forwards": (SIPP.replace(b"Max-Forwards: 70", b"Max-Forwards: x"), PEER, None),
    "validate-expires-text": (pub(expires="soon"), PEER, None),
    "validate-two-expires": (pub(extra="Expires: 60\r\n"), PEER, None),
    "validate-event": (pub(event="pres ence"), PEER, None),
    "validate-no-call-id": (SIPP.replace(b"Call-ID: 1-1@127.0.0.1\r\n", b""), PEER, None),
    "validate-version": (SIPP.replace(b" SIP/2.0\r\nVia", b" SIP/3.0\r\nVia", 1), PEER, None),
    "validate-two-content-types": (pub(extra=f"Content-Type: {CT}\r\n"), PEER, None),
    "validate-ruri-headers": (pub(ruri="sip:pres1_1@example.com?subject=x"), PEER, None),
}


# check_pidf refuses it (libxml2: not a valid URI), so pidfscan.scan must not be sure of it
BAD_NS_URI = BODY.replace(b'xmlns:rpid="urn:', b'xmlns:rpid="$rn:')
DECLINED["body-namespace-not-a-uri"] = (pub(body=BAD_NS_URI), PEER, None)


@pytest.mark.parametrize("name", list(DECLINED))
def test_declined(impl: Any, name: str) -> None:
    data, peer, setup = DECLINED[name]
    r = Rig(impl)
    r.ok(pub(user="bystander", call_id="by"))  # a row and a heap entry that must stay as they are
    if setup is not None:
        setup(r)
    msg = r.declines(data, peer)
    assert msg.call_id == impl.sipmsg.parse_message(data).call_id


NOT_TAKEN = {
    "subscribe": SIPP.replace(b"PUBLISH sip", b"SUBSCRIBE sip", 1).replace(b"1 PUBLISH", b"1 SUBSCRIBE"),
    "lower-case": SIPP.replace(b"PUBLISH sip", b"publish sip", 1),
    "no-space": SIPP.replace(b"PUBLISH sip", b"PUBLISHsip", 1),
    "response": b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\n\r\n",
    "empty": b"",
    "publish": b"PUBLISH",
    "publish-space": b"PUBLISH ",
    "garbage": b"PUBLISH \x00\xff\r\n\r\n",
    "bad-header": b"PUBLISH sip:example.com SIP/2.0\r\nVia SIP/2.0/UDP x\r\n\r\n",
    "cut": SIPP[:40],
}


@pytest.mark.parametrize("data", list(NOT_TAKEN.values()), ids=list(NOT_TAKEN))
def test_none(impl: Any, data: bytes) -> None:
    r = Rig(impl)
    r.ok(pub(user="bystander"))
    state = r.state()
    assert r(data) is None
    assert r.state() == state and r.counters() == (1, 0, None)


# ------------------------------------------------------------------ the twins agree

# each request is the SIPp PUBLISH with up to three of these changes (good and bad values)
VARIANTS: dict[str, list[Any]] = {
    "user": ["Alice", "a%41", None],
    "host": ["EXAMPLE.com", "other.org"],
    "scheme": ["sips"],
    "to_tag": ["t1"],
    "if_match": ["e1", TAG],
    "frm": ["<tel:+1234>", "<sip:example.com>"],
    "event": ["Presence;id=1", "dialog", None, "pres ence"],
    "expires": [None, 0, 1, 59, 60, 600, 100000, "soon"],
    "ctype": ["application/PIDF+XML;charset=utf-8", "text/plain", None],
    "body": [CLOSED, b"", *VECTOR_BODIES, *BROKEN.values()],
    "extra": ["Require: foo\r\n", "Supported: path\r\n"],
}


@st.composite
def requests(draw: Any) -> bytes:
    kw: dict[str, Any] = {
        "branch": draw(st.sampled_from(["z9hG4bK-1", "z9hG4bK-2"])),  # a few tags: requests come again
        "call_id": draw(st.sampled_from(["c1", "c2"])),
        "rport": draw(st.booleans()),
    }
    for name in draw(st.lists(st.sampled_from(sorted(VARIANTS)), max_size=3, unique=True)):
        kw[name] = draw(st.sampled_from(VARIANTS[name]))
    return pub(**kw)


_STEP = st.tuples(
    requests(),
    st.sampled_from([PEER, PEER, ("10.1.1.2", 7001, "c"), ("", 7000), ("127.0.0.1", 5061, "tcp", 3)]),
    st.sampled_from([0.0, 0.5, 30.0, 700.0, 4000.0]),  # time since the step before
    st.sampled_from([False, False, True]),  # the resource is watched
    st.integers(0, 2),  # sent again
)


@pytest.mark.parametrize("shm", [False, True], ids=["memory", "shm"])
@settings(max_examples=150)
@given(steps=st.lists(_STEP, min_size=1, max_size=10))
def test_the_twins_agree(shm: bool, steps: list[tuple[bytes, tuple[Any, ...], float, bool, int]]) -> None:
    ref, ext = Rig(load_impl("ref"), shm=shm), Rig(load_impl("ext"), shm=shm)
    now = 100.0
    for i, (data, peer, dt, watched, repeat) in enumerate(steps):
        now += dt
        for rig in (ref, ext):
            rig.watched.clear()
            if watched:
                rig.watched.add(RES)
        for _ in range(1 + repeat):
            a, b = ref(data, peer, now), ext(data, peer, now)
            assert type(a).__name__ == type(b).__name__, (i, a, b)
            if type(a) is bytes:
                assert a == b, i
                check_pidf(bytes(load_impl("ref").sipmsg.parse_message(data).body))  # only good bodies
            elif a is not None:
                assert a.call_id == b.call_id and a.method == b.method == "PUBLISH"
            assert ref.state() == ext.state(), i
            assert ref.counters() == ext.counters(), i
            if shm:  # rows as written (the write-behind map): the same records
                rows = [
                    {k: marshal.loads(v[8:]) for k, v in x.store.take_dirty().items()} for x in (ref, ext)
                ]
                assert rows[0] == rows[1], i


# ------------------------------------------------------------------ the general path


def make_core(impl: Any, fast: bool) -> tuple[SipCore, PresenceAgent]:
    tl = TransactionLayer(branch_prefix="bp")  # the same branches and subscription tags in both cores
    agent = PresenceAgent(
        tl, MemoryPresentities(), PresenceConfig(min_notify_interval=0.0),
        contact=lambda peer: f"<{ME.contact_uri(transport_of(peer), False)}>",
        via=lambda dest: ME.sent_by(transport_of(dest), False), table=MemorySubscriptions(),
    )  # fmt: skip
    c = SipCore(CoreConfig(domains=frozenset({"example.com"}), local_hosts=frozenset({"10.0.0.1"})),
                MemoryLocation(), ME, tl=tl, presence=agent)  # fmt: skip
    c._tag_prefix = "tp."  # the To tags of validate_request's answers
    c.tag_key = KEY
    if fast:
        assert c.enable_fast_publish()
        c.fast_pub = impl.fastpub.FastPublisher(
            c.registrar.config, agent.publications, server=c.config.server_header, supported=SUPPORTED,
            tag_key=KEY, allow_events=c.allow_events,
        )  # fmt: skip
        if impl.name != ACTIVE:
            c.fast_pub = OtherCodec(c.fast_pub, active_codec.parse_message, "publish")
    return c, agent


def etag(n: str) -> str:
    return fnv_tag(KEY, f"z9hG4bK{n}", f"p{n}", 1, "1SIPpTag1")


def p(n: str, user: str = "alice", **kw: Any) -> bytes:
    kw.setdefault("frm", f"<sip:{user}@example.com>")
    return pub(user=user, branch=f"z9hG4bK{n}", call_id=f"p{n}", **kw)


SUB = (
    b"SUBSCRIBE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKs1\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:w@example.com>;tag=w1\r\nTo: <sip:bob@example.com>\r\nCall-ID: s1\r\n"
    b"CSeq: 1 SUBSCRIBE\r\nContact: <sip:w@10.0.0.9:5070>\r\nEvent: presence\r\nExpires: 600\r\n"
    b"Content-Length: 0\r\n\r\n"
)
W = ("10.0.0.9", 5070)
STREAM = ("10.1.1.1", 7000, "tcp", 3)
# name: ([(now, datagram, peer)], how many of them the fast path answers)
SCENARIOS: dict[str, tuple[list[tuple[float, bytes, tuple[Any, ...]]], int]] = {
    "initial-retransmit-modify-refresh-remove": (
        [
            (100.0, p("1"), PEER),
            (100.0, p("1"), PEER),  # the datagram again
            (101.0, p("2", if_match=etag("1"), body=CLOSED), PEER),  # modify: the general path
            (102.0, p("3", if_match=etag("2"), body=b"", ctype=None, expires=120), PEER),  # refresh
            (103.0, p("4", if_match=etag("3"), body=b"", ctype=None, expires=0), PEER),  # removal
            (104.0, p("5", if_match=etag("3"), body=b"", ctype=None, expires=0), PEER),  # 412
            (200.0, p("1"), PEER),  # after Timer J: both paths publish it again (it was removed)
            (201.0, p("1"), PEER),
        ],
        4,
    ),
    "rejections": (
        [
            (100.0, p("1", body=BROKEN["malformed"]), PEER),
            (100.0, p("3", ctype="text/plain"), PEER),
            (100.0, p("4", expires=30), PEER),
            (100.0, p("5", expires=0), PEER),
            (100.0, p("6", event="dialog"), PEER),
            (100.0, p("8", extra="Require: foo\r\n"), PEER),
            (100.0, p("9", frm="<tel:+123>"), PEER),
            (100.0, p("10", host="other.org"), PEER),
            (100.0, p("12", to_tag="x"), PEER),
            (100.0, p("13", if_match="nope"), PEER),
            (100.0, p("14"), STREAM),
            (100.0, p("15", expires=100000, ctype="application/pidf+XML; q=1"), PEER),
        ],
        1,
    ),
    "watched-resource": (
        [
            (100.0, SUB, W),  # 200 and a NOTIFY
            (101.0, p("1", user="bob"), PEER),  # watched: the general path, 200 and a NOTIFY
            (101.0, p("1", user="bob"), PEER),
            (102.0, p("2", user="alice"), PEER),  # nobody watches alice: fast
            (103.0, p("3", user="bob", body=CLOSED), PEER),
        ],
        1,
    ),
    "expiry-and-republish": (
        [
            (100.0, p("1", expires=60), PEER),
            (110.0, p("2", expires=600, user="carol"), PEER),
            (110.0, p("3", expires=600), PEER),
            (150.0, p("1", expires=60), PEER),  # still live, Timer J over: the request again
            (700.0, p("4", expires=60), PEER),  # everything ended in between
            (700.0, p("1", expires=60), PEER),  # ended: published again
        ],
        6,
    ),
}


def run(fast: SipCore, slow: SipCore, now: float, data: bytes, peer: tuple[Any, ...]) -> list[Any]:
    """Timers due, then the datagram, to both cores: the same datagrams out; those of the request."""
    for c in (fast, slow):
        c.handle_timer(now)
    assert fast.outgoing() == slow.outgoing()  # NOTIFY retransmissions
    for c in (fast, slow):
        c.on_message(data, peer, reliable=len(peer) == 4, now=now)
    out = fast.outgoing()
    assert out == slow.outgoing()
    return out


def same_state(fa: PresenceAgent, sa: PresenceAgent) -> None:
    resources = set(fa.store.aors()) | set(sa.store.aors())
    for r in resources:
        assert fa.store.load(r) == sa.store.load(r), r
    assert sorted(fa.publications._expiry) == sorted(sa.publications._expiry)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_fast_path_answers_as_the_general_path(impl: Any, name: str) -> None:
    steps, fast_answers = SCENARIOS[name]
    (fast, fa), (slow, sa) = make_core(impl, True), make_core(impl, False)
    for i, (now, data, peer) in enumerate(steps):
        out = run(fast, slow, now, data, peer)
        assert out and out[0][0].startswith(b"SIP/2.0 "), (i, out)  # the answer first
        same_state(fa, sa)
    assert fast.fast_pub.answered == fast_answers
    assert fast.fast_pub.answered + fast.fast_pub.declined == sum(
        1 for _, d, pr in steps if len(pr) != 4 and d.startswith(b"PUBLISH ")
    )


def test_late_retransmission_after_removal() -> None:
    """The initial PUBLISH's datagram again after its publication was removed, within Timer
    J: the general path's server transaction sends its 200 again and changes nothing; the
    fast path finds the entity-tag among the row's retired ones and changes nothing either."""
    impl = load_impl(ACTIVE)
    (fast, fa), (slow, sa) = make_core(impl, True), make_core(impl, False)
    run(fast, slow, 100.0, p("1"), PEER)
    run(fast, slow, 101.0, p("2", if_match=etag("1"), body=b"", ctype=None, expires=0), PEER)
    run(fast, slow, 102.0, p("1"), PEER)  # the same bytes on both paths...
    assert fa.store.load("sip:alice@example.com").pubs == ()  # ...and alice stays closed
    same_state(fa, sa)


def test_the_core_takes_the_fast_path_for_datagrams_only() -> None:
    c, agent = make_core(load_impl(ACTIVE), True)
    c.on_message(p("1"), PEER, reliable=True, now=100.0)
    assert (c.fast_pub.answered, c.fast_pub.declined) == (0, 0) and len(c.outgoing()) == 1
    c.on_message(p("2"), PEER, reliable=False, now=100.0, hops=1)
    assert (c.fast_pub.answered, c.fast_pub.declined) == (0, 0) and len(c.outgoing()) == 1
    c.on_message(p("3"), PEER, reliable=False, now=100.0)
    assert c.fast_pub.answered == 1 and len(c.outgoing()) == 1
    assert len(agent.publications.of("sip:alice@example.com", "presence")) == 3
    c = SipCore(CoreConfig(domains=frozenset({"example.com"})), MemoryLocation(), ME, tl=TransactionLayer())
    assert c.enable_fast_publish() is False and c.fast_pub is None  # no presence
