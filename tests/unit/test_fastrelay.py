"""The proxy's compiled MESSAGE relay (FastRelay), both twins.

What it takes (the conditions of simplefast/_ref/fastrelay.py's docstring) and the
copy it forwards, what it declines untouched (a SipMessage back, ``declined`` + 1,
nothing to send, no record), what it does not take at all (None), both transactions
of a record and their timers (E, F, K, J), and the key property: a SipCore with the
relay sends, for every MESSAGE, response and timer, the bytes and destinations of a
SipCore without it (the branch of our Via and the To tag of our own 408s aside).
"""

from __future__ import annotations

import marshal
import re
from collections.abc import Callable
from typing import Any

import pytest

from simplefast._impl import ACTIVE
from simplefast._impl import sipmsg as active_codec
from simplefast.im.agent import ImConfig
from simplefast.proxy.auth import DigestAuth
from simplefast.proxy.core import SUPPORTED, CoreConfig, SipCore
from simplefast.proxy.location import Binding, MemoryLocation, ShmLocation
from simplefast.proxy.proxy import ProxyAddress, _loop_hash, source_params
from simplefast.proxy.registrar import RegistrarConfig
from simplefast.server.shared import AOR_MAX, BINDINGS_MAX
from simplefast.sip.transaction import TransactionLayer
from simplefast.testing import OtherCodec, load_impl

SHM = load_impl("ext").shmindex  # the ext table works with either relay twin
KEY = b"k" * 16
BP = "bp0w0"  # the transaction layer's branch prefix, after the magic cookie
PREFIX = f"z9hG4bK{BP}.r"  # the relay's, as enable_fast_relay makes it
TAG_PREFIX = "5eed5eedr"
T1, T2, T4 = 0.5, 4.0, 5.0
# our client sockets: 10.0.0.1:40000 (IPv4) and [fd00::1]:40006 (IPv6)
ME = ProxyAddress("10.0.0.1", 5060, 40000, client_ports={"4": ("10.0.0.1", 40000), "6": ("fd00::1", 40006)})
PEER = ("10.9.9.9", 5070)  # where the MESSAGE comes from (SIPp)
AOR = "sip:u7@example.com"
CONTACT = "sip:u7@127.0.0.1:5061"
UA = ("127.0.0.1", 5061)  # the registered user agent
DEST = ("127.0.0.1", 5061, "c")  # the forwarded copy leaves from the worker's client socket
REASONS = {100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 200: "OK", 202: "Accepted",
           302: "Moved Temporarily", 408: "Request Timeout", 486: "Busy Here", 603: "Decline"}  # fmt: skip


def new_table(slots: int = 64) -> Any:
    mem = SHM.create_shared(SHM.table_size(slots, AOR_MAX, BINDINGS_MAX))
    return SHM.ShmTable(mem, slots, AOR_MAX, BINDINGS_MAX, create=True, zeroed=True)


def message(
    *,
    ruri: str = AOR,
    branch: str | None = "z9hG4bK-1-1-0",
    sent_by: str = "127.0.0.1:5070",
    rport: bool = True,
    mf: str | None = "70",
    from_tag: str = "1SIPpTag01",
    to: str = AOR,
    call_id: str = "1-1@127.0.0.1",
    cseq: str = "1 MESSAGE",
    body: bytes = b"Hello 1",
    extra: str = "",
    vias: str = "",
) -> bytes:
    """A SIPp-shaped MESSAGE (bench/sipp/message_uac.xml) with the given changes.
    ``extra``: header lines (with CRLF) before Content-Type; ``vias``: Via lines after
    the top one; ``mf`` None: no Max-Forwards."""
    top = f"Via: SIP/2.0/UDP {sent_by}" + (f";branch={branch}" if branch is not None else "")
    text = f"MESSAGE {ruri} SIP/2.0\r\n{top}{';rport' if rport else ''}\r\n{vias}"
    if mf is not None:
        text += f"Max-Forwards: {mf}\r\n"
    text += f"From: <sip:alice@example.com>;tag={from_tag}\r\nTo: <{to}>\r\n"
    text += f"Call-ID: {call_id}\r\nCSeq: {cseq}\r\n"
    text += extra + f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
    return text.encode("utf-8", "surrogateescape") + body


SIPP = message()


def binding(
    contact: str = CONTACT,
    expires_at: float = 3700.0,
    path: tuple[str, ...] = (),
    source: str = "udp:127.0.0.1:5061",
    q: float | None = None,
) -> Binding:
    return Binding(contact, expires_at, q, "reg-1@127.0.0.1", 1, path, source, None)


def reply(codec: Any, fwd: bytes, status: int, to_tag: str | None = "uas1") -> bytes:
    """The user agent's answer to a forwarded copy (all our Vias kept, as a UAS does)."""
    tag = to_tag if status > 100 else None
    return bytes(codec.build_response(codec.parse_message(fwd), status, REASONS[status], to_tag=tag))


def is_sipmessage(x: Any) -> bool:
    return x is not None and x is not True and type(x).__name__ == "SipMessage"


class Rig:
    """One FastRelay of a twin on its own table (u7 bound to CONTACT unless ``bound`` is False)."""

    def __init__(self, impl: Any, *, bound: bool = True, **timers: float) -> None:
        self.impl = impl
        self.codec = impl.sipmsg
        self.table = new_table()
        self.loc = ShmLocation(self.table)
        self.config = RegistrarConfig(domains=frozenset({"example.com"}))
        self.general: dict[Any, Any] = {}
        self.relay = impl.fastrelay.FastRelay(
            self.config, self.table, ME, prefix=PREFIX, supported=SUPPORTED, general=self.general,
            tag_prefix=TAG_PREFIX, **timers,
        )  # fmt: skip
        if bound:
            self.bind(binding())

    def bind(self, *bindings: Binding, aor: str = AOR) -> None:
        self.loc.put(aor, list(bindings))  # the row as the registrar writes it

    def __call__(self, data: bytes = SIPP, peer: tuple[Any, ...] = PEER, now: float = 100.0,
                 accept: bool = True) -> Any:  # fmt: skip
        return self.relay.request(data, peer, now, accept)

    def take(self) -> list[tuple[bytes, Any]]:
        out: list[tuple[bytes, Any]] = self.relay.take()
        assert self.relay.out == []
        return out

    def forward(self, data: bytes = SIPP, peer: tuple[Any, ...] = PEER, now: float = 100.0) -> bytes:
        """Asserts the request is taken and forwarded to DEST; the forwarded copy."""
        assert self(data, peer, now) is True
        ((fwd, dest),) = self.take()
        assert dest == DEST
        return fwd

    def answer(self, fwd: bytes, status: int, now: float, to_tag: str | None = "uas1") -> tuple[bytes, Any]:
        """Feeds the UA's response; (the response, what the relay returned)."""
        resp = reply(self.codec, fwd, status, to_tag)
        return resp, self.relay.response(resp, now)

    def up(self, resp: bytes) -> bytes:
        """The response less our Via, as the general path sends it up."""
        return bytes(self.codec.strip_top_via(self.codec.parse_message(resp)))

    def counters(self) -> tuple[int, ...]:
        r = self.relay
        return (r.relayed, r.declined, r.absorbed, r.timeouts, r.open, len(r), r.expecting())

    def run(self, until: float) -> list[tuple[float, list[tuple[bytes, Any]]]]:
        """expire() at every deadline up to ``until``: (time, what it sent) when it sent something."""
        got = []
        for _ in range(10_000):
            d = self.relay.next_deadline()
            if d is None or d > until:
                break
            self.relay.expire(d)
            out = self.take()
            if out:
                got.append((d, out))
        return got


def loop_of(data: bytes) -> str:
    return str(_loop_hash(active_codec.parse_message(data)))


# ------------------------------------------------------------------ taken


def test_taken_the_sipp_message(impl: Any) -> None:
    r = Rig(impl)
    assert r.relay.next_deadline() is None and not r.relay.expecting() and len(r.relay) == 0
    fwd = r.forward(SIPP)
    loop = loop_of(SIPP)
    assert fwd == (
        b"MESSAGE sip:u7@127.0.0.1:5061 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1:40000;branch=" + f"{PREFIX}1.{loop}".encode() + b"\r\n"
        b"Max-Forwards: 69\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1-1-0;rport=5070;received=10.9.9.9\r\n"
        b"From: <sip:alice@example.com>;tag=1SIPpTag01\r\nTo: <sip:u7@example.com>\r\n"
        b"Call-ID: 1-1@127.0.0.1\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n"
        b"\r\nHello 1"
    )
    branch = impl.sipmsg.parse_message(fwd).via_branch
    assert branch.startswith(PREFIX) and branch.endswith("." + loop)
    assert loop == impl.fastrelay.loop_hash(impl.sipmsg.parse_message(SIPP))
    assert r.counters() == (1, 0, 0, 0, 1, 1, True)
    assert r.relay.next_deadline() == 100.0 + T1
    # a second request: the next branch number (hex)
    for n in range(2, 18):
        data = message(branch=f"z9hG4bK-{n}", call_id=f"{n}@h")
        fwd = r.forward(data)
        assert impl.sipmsg.parse_message(fwd).via_branch == f"{PREFIX}{n:x}.{loop_of(data)}"
    assert r.counters() == (17, 0, 0, 0, 17, 17, True)


@pytest.mark.parametrize("mf,want", [(None, 70), ("1", 0), ("10", 9), ("70", 69), ("255", 254)])
def test_max_forwards_less_one_or_70(impl: Any, mf: str | None, want: int) -> None:
    r = Rig(impl)
    fwd = r.forward(message(mf=mf))
    assert impl.sipmsg.parse_message(fwd).max_forwards == want
    assert fwd.count(b"Max-Forwards:") == 1


@pytest.mark.parametrize(
    "rport,peer,via",
    [
        (True, ("10.9.9.9", 5070), b"127.0.0.1:5070;branch=z9hG4bK-1-1-0;rport=5070;received=10.9.9.9"),
        (False, ("10.9.9.9", 5070), b"127.0.0.1:5070;branch=z9hG4bK-1-1-0;received=10.9.9.9"),
        (True, ("127.0.0.1", 5070), b"127.0.0.1:5070;branch=z9hG4bK-1-1-0;rport=5070;received=127.0.0.1"),
        (False, ("127.0.0.1", 5070), b"127.0.0.1:5070;branch=z9hG4bK-1-1-0"),
        (True, ("10.9.9.9", 5070, 1), b"127.0.0.1:5070;branch=z9hG4bK-1-1-0;rport=5070;received=10.9.9.9"),
        (True, ("10.9.9.9", 5070, "c"), b"127.0.0.1:5070;branch=z9hG4bK-1-1-0;rport=5070;received=10.9.9.9"),
        (True, ("fd00::9", 5070), b"127.0.0.1:5070;branch=z9hG4bK-1-1-0;rport=5070;received=fd00::9"),
        (True, ("", 5070), b"127.0.0.1:5070;branch=z9hG4bK-1-1-0;rport"),  # no address: no stamp
    ],
)
def test_the_upstream_via_is_stamped_as_the_general_path_does(
    impl: Any, rport: bool, peer: tuple[Any, ...], via: bytes
) -> None:
    r = Rig(impl)
    lower = "Via: SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bKlower;rport\r\n"
    data = message(rport=rport, vias=lower)
    fwd = r.forward(data, peer)
    vias = [line for line in fwd.split(b"\r\n") if line.startswith(b"Via: ")]
    assert vias[1:] == [b"Via: SIP/2.0/UDP " + via, lower.strip().encode()]
    # byte for byte what Proxy._forward_bytes writes for the same branch
    codec = impl.sipmsg
    msg = codec.parse_message(data)
    branch = codec.parse_message(fwd).via_branch
    assert fwd == bytes(
        codec.forward_request(msg, CONTACT, ME.via("udp", False, branch), record_route=None, routes=(),
                              max_forwards=69, **source_params(msg, peer))
    )  # fmt: skip


@pytest.mark.parametrize(
    "contact,dest,via",
    [
        ("sip:u7@127.0.0.1", ("127.0.0.1", 5060, "c"), "10.0.0.1:40000"),
        ("sip:127.0.0.1:5099", ("127.0.0.1", 5099, "c"), "10.0.0.1:40000"),
        (CONTACT + ";transport=udp", DEST, "10.0.0.1:40000"),
        (CONTACT + ";transport=UDP;ob", DEST, "10.0.0.1:40000"),
        ("sip:u7@[fd00::7]:5061", ("fd00::7", 5061, "c"), "[fd00::1]:40006"),
        ("sip:u7@[fd00::7]", ("fd00::7", 5060, "c"), "[fd00::1]:40006"),
    ],
)
def test_contact_forms_taken(impl: Any, contact: str, dest: tuple[Any, ...], via: str) -> None:
    r = Rig(impl, bound=False)
    r.bind(binding(contact=contact))
    assert r(SIPP) is True
    ((fwd, got),) = r.take()
    assert got == dest
    assert fwd.startswith(f"MESSAGE {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch={PREFIX}1.".encode())


@pytest.mark.parametrize(
    "data,setup",
    [
        (message(ruri="sip:u7@EXAMPLE.COM"), None),
        (message(ruri="sip:u7@example.com:5060;transport=udp"), None),
        (message(ruri="sip:u7@example.com;user=ip"), None),
        (message(to="sip:someone@else.org"), None),  # the To does not matter, the Request-URI does
        (message(mf=None, rport=False), None),
        (message(extra="Proxy-Require: path\r\n"), None),
        (SIPP, None),
        (message(body=b"x" * 64), lambda r: setattr(r.relay, "max_body", 64)),  # exactly the limit
        (SIPP, lambda r: setattr(r.relay, "service", ("list", "example.com"))),
        (SIPP, lambda r: setattr(r.relay, "service", ("u7", "other.org"))),
        (SIPP, lambda r: r.bind(binding(source=""))),  # a row restored from the store
        (SIPP, lambda r: r.bind(binding(source="sctp:1.2.3.4:5"))),
        (SIPP, lambda r: r.bind(binding(q=0.5))),
        (SIPP, lambda r: r.general.update({("z9hG4bK-1-1-0", "127.0.0.1", 5070, "SUBSCRIBE"): 1})),
    ],
    ids=["ruri-host-case", "ruri-port-params", "ruri-params-headers", "to-elsewhere", "no-mf-no-rport",
         "proxy-require-supported", "plain", "body-at-max", "other-service", "service-other-host",
         "flow-empty", "flow-other", "q", "general-other-method"],
)  # fmt: skip
def test_taken_variants(impl: Any, data: bytes, setup: Callable[[Rig], Any] | None) -> None:
    r = Rig(impl)
    if setup is not None:
        setup(r)
    fwd = r.forward(data)
    assert fwd.startswith(b"MESSAGE sip:u7@127.0.0.1:5061 SIP/2.0\r\n")
    assert r.counters() == (1, 0, 0, 0, 1, 1, True)


def test_config_is_read_at_every_call(impl: Any) -> None:
    r = Rig(impl)
    r.bind(binding(), aor="sip:u7@other.org")
    data = message(ruri="sip:u7@other.org", branch="z9hG4bKo")
    assert is_sipmessage(r(data))
    r.config.domains = frozenset({"example.com", "other.org"})
    assert r(data) is True
    assert r.counters() == (1, 1, 0, 0, 1, 1, True)


# ------------------------------------------------------------------ declined


def two_bindings(r: Rig) -> None:
    r.bind(binding(), binding(contact="sip:u7@127.0.0.1:5062"))


def one(**kw: Any) -> Callable[[Rig], None]:
    def setup(r: Rig) -> None:
        r.bind(binding(**kw))

    return setup


def in_general(r: Rig) -> None:
    r.general[("z9hG4bK-1-1-0", "127.0.0.1", 5070, "MESSAGE")] = object()


def big_body_for(size: int) -> bytes:
    """A body whose relayed copy (first record of a relay) is ``size`` octets."""
    base = len(Rig(load_impl("ref")).forward(message(body=b"x" * 900)))
    return b"x" * (900 + size - base)


OVER_1300 = message(body=big_body_for(1301))
AT_1300 = message(body=big_body_for(1300))

# name: (datagram, peer, setup, accept)
DECLINED: dict[str, tuple[bytes, tuple[Any, ...], Callable[[Rig], Any] | None, bool]] = {
    "tcp-peer": (SIPP, ("127.0.0.1", 5070, "tcp", 3), None, True),
    "tls-peer": (SIPP, ("127.0.0.1", 5070, "tls", 0), None, True),
    "peer-1-tuple": (SIPP, ("10.9.9.9",), None, True),
    "non-cookie-branch": (message(branch="1-1-0"), PEER, None, True),
    "no-branch": (message(branch=None), PEER, None, True),
    "cookie-case": (message(branch="Z9HG4BK-1-1-0"), PEER, None, True),
    "key-in-general": (SIPP, PEER, in_general, True),
    "not-accepted": (SIPP, PEER, None, False),
    "validate-require": (message(extra="Require: foo\r\n"), PEER, None, True),
    "validate-cseq-method": (message(cseq="1 INVITE"), PEER, None, True),
    "validate-no-call-id": (SIPP.replace(b"Call-ID: 1-1@127.0.0.1\r\n", b""), PEER, None, True),
    "validate-version": (SIPP.replace(b" SIP/2.0\r\nVia", b" SIP/3.0\r\nVia", 1), PEER, None, True),
    "validate-content-length": (SIPP.replace(b"Content-Length: 7", b"Content-Length: 70"), PEER, None, True),
    "route-ours": (message(extra="Route: <sip:10.0.0.1:5060;lr>\r\n"), PEER, None, True),
    "route-other": (message(extra="Route: <sip:proxy.other.org;lr>\r\n"), PEER, None, True),
    "max-forwards-0": (message(mf="0"), PEER, None, True),
    "via-of-ours-lower": (
        message(vias="Via: SIP/2.0/UDP 10.0.0.1:40000;branch=z9hG4bKx\r\n"),
        PEER,
        None,
        True,
    ),
    "via-of-ours-listener": (message(vias="Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\n"), PEER, None, True),
    "via-of-ours-top": (message(sent_by="10.0.0.1:5060"), PEER, None, True),
    "via-of-ours-v6": (
        message(vias="Via: SIP/2.0/UDP [FD00::1]:40006;branch=z9hG4bKx\r\n"),
        PEER,
        None,
        True,
    ),
    "ruri-sips": (message(ruri="sips:u7@example.com"), PEER, None, True),
    "ruri-no-user": (
        message(ruri="sip:example.com"),
        PEER,
        lambda r: r.bind(binding(), aor="sip:example.com"),
        True,
    ),
    "ruri-escaped-user": (message(ruri="sip:u%37@example.com"), PEER, None, True),
    "ruri-foreign-domain": (
        message(ruri="sip:u7@other.org"),
        PEER,
        lambda r: r.bind(binding(), aor="sip:u7@other.org"),
        True,
    ),
    "ruri-subdomain": (message(ruri="sip:u7@sub.example.com"), PEER, None, True),
    "ruri-tel": (message(ruri="tel:+15551234"), PEER, None, True),
    "uri-list-service": (SIPP, PEER, lambda r: setattr(r.relay, "service", ("u7", "example.com")), True),
    "body-over-max-body": (SIPP, PEER, lambda r: setattr(r.relay, "max_body", 6), True),
    "body-over-max-body-0": (SIPP, PEER, lambda r: setattr(r.relay, "max_body", 0), True),
    "no-row": (message(ruri="sip:nobody@example.com"), PEER, None, True),
    "user-case": (message(ruri="sip:U7@example.com"), PEER, None, True),
    "aor-too-long": (message(ruri=f"sip:{'x' * 200}@example.com"), PEER, None, True),
    "two-bindings": (SIPP, PEER, two_bindings, True),
    "expired-binding": (SIPP, PEER, one(expires_at=99.0), True),
    "binding-expires-now": (SIPP, PEER, one(expires_at=100.0), True),
    "path": (SIPP, PEER, one(path=("<sip:edge.example.net;lr>",)), True),
    "tcp-flow": (SIPP, PEER, one(source="tcp:127.0.0.1:5061/7"), True),
    "tls-flow": (SIPP, PEER, one(source="tls:127.0.0.1:5061/7"), True),
    "contact-host-name": (SIPP, PEER, one(contact="sip:u7@ua.example.net:5061"), True),
    "contact-localhost": (SIPP, PEER, one(contact="sip:u7@localhost:5061"), True),
    "contact-maddr": (SIPP, PEER, one(contact=CONTACT + ";maddr=10.0.0.9"), True),
    "contact-transport-tcp": (SIPP, PEER, one(contact=CONTACT + ";transport=tcp"), True),
    "contact-transport-tls": (SIPP, PEER, one(contact=CONTACT + ";transport=TLS"), True),
    "contact-transport-sctp": (SIPP, PEER, one(contact=CONTACT + ";transport=sctp"), True),
    "contact-sips": (SIPP, PEER, one(contact="sips:u7@127.0.0.1:5061"), True),
    "contact-tel": (SIPP, PEER, one(contact="tel:+15551234"), True),
    "forwarded-copy-over-1300": (OVER_1300, PEER, None, True),
}


@pytest.mark.parametrize("name", list(DECLINED))
def test_declined(impl: Any, name: str) -> None:
    data, peer, setup, accept = DECLINED[name]
    r = Rig(impl)
    if setup is not None:
        setup(r)
    out = r(data, peer, 100.0, accept)
    assert is_sipmessage(out), out
    assert out.is_request and out.method == "MESSAGE"
    assert out.call_id == impl.sipmsg.parse_message(data).call_id
    assert r.relay.out == [] and r.take() == []
    assert r.counters() == (0, 1, 0, 0, 0, 0, False)
    assert r.relay.next_deadline() is None


def test_the_size_rule_boundary(impl: Any) -> None:
    """A copy of 1300 octets goes over UDP here; 1301 is the general path's (TCP)."""
    r = Rig(impl)
    assert len(r.forward(AT_1300)) == 1300
    r = Rig(impl)
    assert is_sipmessage(r(OVER_1300))


def test_declined_then_taken_again(impl: Any) -> None:
    r = Rig(impl)
    two_bindings(r)
    assert is_sipmessage(r(SIPP))
    r.bind(binding())
    assert r(SIPP) is True  # nothing was kept of the declined one: now a new request
    assert r.counters() == (1, 1, 0, 0, 1, 1, True)
    # a retransmission of a request held here is taken even when new ones are not
    assert r(SIPP, accept=False) is True
    assert r.counters() == (1, 1, 1, 0, 1, 1, True)
    assert is_sipmessage(r(message(branch="z9hG4bKnew"), accept=False))


@pytest.mark.parametrize(
    "data",
    [
        SIPP.replace(b"MESSAGE sip", b"INVITE sip", 1).replace(b"1 MESSAGE", b"1 INVITE"),
        SIPP.replace(b"MESSAGE sip", b"REGISTER sip", 1),
        SIPP.replace(b"MESSAGE sip", b"message sip", 1),
        SIPP.replace(b"MESSAGE sip", b"MESSAGEsip", 1),
        b" " + SIPP,
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\n\r\n",
        b"",
        b"MESSAGE",
        b"MESSAGE ",
        b"MESSAGE \x00\xff\r\n\r\n",
        b"MESSAGE sip:u7@example.com\r\n\r\n",
        b"MESSAGE sip:u7@example.com SIP/2.0\r\nVia SIP/2.0/UDP x\r\n\r\n",
        SIPP[:60],
    ],
    ids=["invite", "register", "lower-case", "no-space", "leading-space", "response", "empty", "message",
         "message-space", "garbage", "no-version", "bad-header", "cut"],
)  # fmt: skip
def test_none(impl: Any, data: bytes) -> None:
    r = Rig(impl)
    assert r(data) is None
    assert r.take() == [] and r.counters() == (0, 0, 0, 0, 0, 0, False)


def test_peer_must_be_a_tuple(impl: Any) -> None:
    r = Rig(impl)
    with pytest.raises(TypeError):
        r(SIPP, ["10.9.9.9", 5070])  # type: ignore[arg-type]


def test_constructor_checks(impl: Any) -> None:
    def make(**kw: Any) -> Any:
        args: dict[str, Any] = {"prefix": PREFIX, "supported": SUPPORTED, "general": {}, "tag_prefix": "ab1"}
        args.update(kw)
        return impl.fastrelay.FastRelay(RegistrarConfig(domains=frozenset()), new_table(8), ME, **args)

    make()
    for kw in ({"prefix": "bp.r"}, {"tag_prefix": "a-b"}, {"tag_prefix": "\u00e9"}, {"t1": 0.0},
               {"t1": 5.0, "t2": 4.0}, {"t4": 0.0}):  # fmt: skip
        with pytest.raises(ValueError):
            make(**kw)


# ------------------------------------------------------------------ transactions


def test_retransmission_before_any_response_is_absorbed(impl: Any) -> None:
    r = Rig(impl)
    r.forward()
    assert r(SIPP, now=100.2) is True
    assert r.take() == []
    assert r(SIPP, ("10.9.9.8", 1), now=100.3, accept=False) is True
    assert r.take() == []
    assert r.counters() == (1, 0, 2, 0, 1, 1, True)


def test_provisional_then_final_go_up_and_are_sent_again(impl: Any) -> None:
    r = Rig(impl)
    fwd = r.forward()
    # a 100 stays here
    _, got = r.answer(fwd, 100, 100.1)
    assert got is True and r.take() == []
    assert r(SIPP, now=100.15) is True and r.take() == []  # nothing sent up yet: absorbed
    r180, got = r.answer(fwd, 180, 100.2)
    assert got is True
    assert r.take() == [(r.up(r180), PEER)]
    assert r.up(r180) == r180.replace(b"Via: SIP/2.0/UDP 10.0.0.1:40000;branch=" + fwd.split(b"branch=")[1]
                                      .split(b"\r\n")[0] + b"\r\n", b"")  # fmt: skip
    assert r(SIPP, now=100.3) is True
    assert r.take() == [(r.up(r180), PEER)]  # the 180 again
    r181, got = r.answer(fwd, 181, 100.35)
    assert got is True and r.take() == [(r.up(r181), PEER)]
    r200, got = r.answer(fwd, 200, 100.4)
    assert got is True
    assert r.take() == [(r.up(r200), PEER)]
    assert r(SIPP, ("10.9.9.8", 1), now=100.5) is True
    assert r.take() == [(r.up(r200), ("10.9.9.8", 1))]  # the 200 again, to where the request came from
    # the 200 again, a late 180: absorbed
    assert r.relay.response(r200, 100.6) is True and r.take() == []
    assert r.answer(fwd, 180, 100.7)[1] is True and r.take() == []
    assert r.answer(fwd, 486, 100.8)[1] is True and r.take() == []
    assert r.counters() == (1, 0, 6, 0, 0, 1, True)


@pytest.mark.parametrize("status", [202, 302, 408, 486, 603])
def test_other_finals(impl: Any, status: int) -> None:
    r = Rig(impl)
    fwd = r.forward()
    resp, got = r.answer(fwd, status, 101.0)
    assert got is True and r.take() == [(r.up(resp), PEER)]
    assert r(SIPP, now=102.0) is True and r.take() == [(r.up(resp), PEER)]
    assert r.counters() == (1, 0, 1, 0, 0, 1, True)


def test_final_without_a_provisional_through_every_timer(impl: Any) -> None:
    r = Rig(impl)
    fwd = r.forward(now=100.0)
    assert r.relay.next_deadline() == 100.5
    r200, got = r.answer(fwd, 200, 100.25)
    assert got is True and r.take() == [(r.up(r200), PEER)]
    # E and F are off; K at 100.25 + T4, J at 100.25 + 64*T1
    assert r.relay.next_deadline() == 105.25
    assert r.run(105.2) == []
    assert r.relay.response(r200, 105.2) is True and r.take() == []
    r.relay.expire(105.25)  # Timer K
    assert not r.relay.expecting() and len(r.relay) == 1
    late = r.relay.response(r200, 105.3)
    assert is_sipmessage(late) and late.status == 200  # for the general path (stateless)
    assert r.take() == []
    assert r.relay.next_deadline() == 132.25
    assert r(SIPP, now=132.2) is True and r.take() == [(r.up(r200), PEER)]
    r.relay.expire(132.25)  # Timer J
    assert len(r.relay) == 0 and r.relay.next_deadline() is None
    assert r.counters() == (1, 0, 2, 0, 0, 0, False)
    # the request again is a new request
    fwd2 = r.forward(now=133.0)
    assert impl.sipmsg.parse_message(fwd2).via_branch == f"{PREFIX}2.{loop_of(SIPP)}"
    assert fwd2.replace(b".r2.", b".r1.") == fwd
    assert r.counters() == (2, 0, 2, 0, 1, 1, True)


def e_times(start: float, first: float, count: int) -> list[float]:
    """Timer E: T1, 2T1, 4T1, then T2 (``first``: the interval of the first ring)."""
    out, t, i = [], start, first
    for _ in range(count):
        t += i
        out.append(t)
        i = min(i * 2, T2)
    return out


def test_timer_e_doubles_up_to_t2(impl: Any) -> None:
    r = Rig(impl)
    fwd = r.forward(now=100.0)
    r.relay.expire(100.49)
    assert r.take() == [] and r.relay.next_deadline() == 100.5
    got = r.run(131.9)
    assert [t for t, _ in got] == [100.5, 101.5, 103.5, 107.5, 111.5, 115.5, 119.5, 123.5, 127.5, 131.5]
    assert e_times(100.0, T1, 10) == [t for t, _ in got]
    assert all(out == [(fwd, DEST)] for _, out in got)
    assert r.counters() == (1, 0, 0, 0, 1, 1, True)


@pytest.mark.parametrize(
    "at,want",
    [
        (100.2, [100.5, 104.5, 108.5, 112.5, 116.5, 120.5, 124.5, 128.5]),  # before the first E
        (100.7, [100.5, 101.5, 105.5, 109.5, 113.5, 117.5, 121.5, 125.5, 129.5]),  # after it
        (103.0, [100.5, 101.5, 103.5, 107.5, 111.5, 115.5, 119.5, 123.5, 127.5, 131.5]),
    ],
)
@pytest.mark.parametrize("status", [100, 180])
def test_timer_e_every_t2_after_a_provisional(impl: Any, at: float, want: list[float], status: int) -> None:
    r = Rig(impl)
    fwd = r.forward(now=100.0)
    got = r.run(at)
    assert r.answer(fwd, status, at)[1] is True
    up = r.take()
    assert len(up) == (status > 100)
    got += r.run(131.99)
    assert [t for t, _ in got] == want
    assert all(out == [(fwd, DEST)] for _, out in got)


def the_408(impl: Any, data: bytes, out: list[tuple[bytes, Any]], peer: tuple[Any, ...] = PEER) -> str:
    """Asserts ``out`` is the 408 the general path writes for ``data`` (any To tag of ours); the tag."""
    ((resp, to),) = out
    assert to == peer
    m = re.search(rb"\r\nTo: <sip:u7@example.com>;tag=([^\r\n;]+)\r\n", resp)
    assert m is not None, resp
    tag = m.group(1).decode()
    assert tag.startswith(TAG_PREFIX)
    codec = impl.sipmsg
    assert resp == bytes(codec.build_response(codec.parse_message(data), 408, "Request Timeout", to_tag=tag))
    return tag


def test_timer_f_408_goes_up(impl: Any) -> None:
    r = Rig(impl)
    fwd = r.forward(now=100.0)
    assert r.run(131.99)[-1] == (131.5, [(fwd, DEST)])
    assert r.relay.next_deadline() == 132.0
    r.relay.expire(132.0)
    tag = the_408(impl, SIPP, r.take())
    assert r.counters() == (1, 0, 0, 1, 0, 1, False)
    assert r.relay.next_deadline() == 164.0  # Timer J
    # the request again: the 408 again
    assert r(SIPP, now=140.0) is True
    assert the_408(impl, SIPP, r.take()) == tag
    # a late 200: not ours any more (the general path forwards it statelessly)
    late = r.relay.response(reply(impl.sipmsg, fwd, 200), 140.5)
    assert is_sipmessage(late) and late.status == 200 and r.take() == []
    late = r.relay.response(reply(impl.sipmsg, fwd, 180), 140.6)
    assert is_sipmessage(late) and r.take() == []
    assert r.run(163.9) == []
    r.relay.expire(164.0)
    assert len(r.relay) == 0 and r.relay.next_deadline() is None
    assert r.counters() == (1, 0, 1, 1, 0, 0, False)


def test_timer_f_after_a_provisional_and_tags_differ(impl: Any) -> None:
    r = Rig(impl)
    fwd = r.forward(now=100.0)
    other = message(branch="z9hG4bK-2", call_id="2@h", from_tag="t2")
    fwd2 = r.forward(other, ("10.9.9.8", 7), now=100.1)
    r180, _ = r.answer(fwd, 180, 100.2)
    assert r.take() == [(r.up(r180), PEER)]
    got = r.run(130.9)
    # the first record's E every T2 from 100.5, the second's at T1, 2T1, 4T1, T2...
    assert got == sorted(
        [(t, [(fwd, DEST)]) for t in [100.5, 104.5, 108.5, 112.5, 116.5, 120.5, 124.5, 128.5]]
        + [(t, [(fwd2, DEST)]) for t in e_times(100.1, T1, 9)]
    )
    assert r(SIPP, now=131.0) is True and r.take() == [(r.up(r180), PEER)]  # the 180 again
    assert r.run(131.99) == [(131.6, [(fwd2, DEST)])]
    r.relay.expire(132.0)
    tag1 = the_408(impl, SIPP, r.take())
    r.relay.expire(132.1)
    tag2 = the_408(impl, other, r.take(), ("10.9.9.8", 7))
    assert tag1 != tag2
    assert r.counters() == (2, 0, 1, 2, 0, 2, False)
    assert r(SIPP, now=140.0) is True
    assert the_408(impl, SIPP, r.take()) == tag1  # the 408 replaced the 180
    assert r.run(164.05) == [] and len(r.relay) == 1
    r.relay.expire(164.1)
    assert len(r.relay) == 0


def test_timer_k_then_j_then_a_new_request(impl: Any) -> None:
    r = Rig(impl)
    fwd = r.forward(now=100.0)
    r200, _ = r.answer(fwd, 200, 101.0)
    r.take()
    assert r.relay.response(r200, 105.99) is True  # Timer K not yet: absorbed
    r.relay.expire(106.0)
    assert not r.relay.expecting()
    assert is_sipmessage(r.relay.response(r200, 106.0))
    assert r(SIPP, now=132.9) is True and r.take() == [(r.up(r200), PEER)]
    r.relay.expire(133.0)
    assert len(r.relay) == 0
    assert r(SIPP, now=133.0) is True
    ((fwd2, dest),) = r.take()
    assert dest == DEST and fwd2 != fwd
    assert r.counters() == (2, 0, 2, 0, 1, 1, True)


def test_responses_not_ours(impl: Any) -> None:
    r = Rig(impl)
    fwd = r.forward()
    codec = impl.sipmsg
    unknown = fwd.replace(f"{PREFIX}1.".encode(), f"{PREFIX}9.".encode())
    general = fwd.replace(f"{PREFIX}1.".encode(), f"z9hG4bK{BP}.1.".encode())
    invite = reply(codec, fwd, 200).replace(b"CSeq: 1 MESSAGE", b"CSeq: 1 INVITE")
    before = r.counters()
    for resp in (reply(codec, unknown, 200), reply(codec, general, 200), invite,
                 reply(codec, fwd, 200).replace(b"Call-ID: 1-1@127.0.0.1\r\n", b"")):  # fmt: skip
        got = r.relay.response(resp, 100.1)
        assert is_sipmessage(got) and not got.is_request
    for data in (
        SIPP,
        b"",
        b"SIP/2.0 200",
        b"SIP/2.0 200 OK\r\nVia SIP/2.0/UDP x\r\n\r\n",
        b"sip/2.0 200 OK\r\n",
    ):
        assert r.relay.response(data, 100.1) is None
    assert r.take() == [] and r.counters() == before


def test_expire_runs_e_and_f_in_deadline_order(impl: Any) -> None:
    """A late expire (the documented order): due Timers E and F in deadline order, across
    the rings."""
    r = Rig(impl)
    fwd1 = r.forward(now=100.0)
    r.relay.expire(100.5)  # the first: ring 2T1, due 101.5
    assert r.take() == [(fwd1, DEST)]
    fwd2 = r.forward(message(branch="z9hG4bK-2", call_id="2@h"), now=101.2)  # ring T1, due 101.7
    r.relay.expire(102.0)
    assert r.take() == [(fwd1, DEST), (fwd2, DEST)]  # 101.5 (ring 2T1) before 101.7 (ring T1)
    # now due 104.0 (ring 4T1) and 103.0 (ring 2T1); F at 132.0 and 133.2
    r.relay.expire(140.0)
    out = r.take()
    assert out[:2] == [(fwd2, DEST), (fwd1, DEST)]
    the_408(impl, SIPP, out[2:3])
    assert len(out) == 4 and out[3][0].startswith(b"SIP/2.0 408 ")
    assert r.counters() == (2, 0, 0, 2, 0, 2, False)


# ------------------------------------------------------------------ the general path


def make_core(
    impl: Any, relay: bool, *, im: ImConfig | None = None, fastreg: bool = False
) -> tuple[SipCore, ShmLocation]:
    loc = ShmLocation(new_table())
    tl = TransactionLayer(branch_prefix=BP)
    c = SipCore(CoreConfig(domains=frozenset({"example.com"})), loc, ME, tl=tl)
    # the To tags of the core's own answers (503, 4xx) come from a random prefix and a
    # counter; the REGISTER tags from tag_key: the same in both cores, so those compare
    c._tag_prefix = "tp."
    c.tag_key = KEY
    if fastreg:  # the registrar's fast path (the active twin) in both cores: rows written alike
        assert c.enable_fast_register(KEY)
    if im is not None:
        c.enable_im(im, None, 0.0)
    if relay:
        assert c.enable_fast_relay()
        assert c.relay.prefix == PREFIX and c.relay.general is tl.server
        # the twin under test, built as enable_fast_relay builds the active one
        c.relay = impl.fastrelay.FastRelay(
            c.registrar.config, loc.table, c.proxy.me, prefix=f"{tl.branch_prefix}.r", supported=SUPPORTED,
            general=tl.server, tag_prefix=TAG_PREFIX, t1=tl.t1, t2=tl.t2, t4=tl.t4,
        )  # fmt: skip
        if impl.name != ACTIVE:
            c.relay = OtherCodec(c.relay, active_codec.parse_message, "request", "response")
        c._relay_im()
    return c, loc


def register(
    *, user: str = "u7", contact: str = f"<{CONTACT}>;expires=3600", call_id: str = "reg-1@127.0.0.1",
    cseq: int = 1, via: str = "UDP 127.0.0.1:5061",
) -> bytes:  # fmt: skip
    return (
        f"REGISTER sip:example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/{via};branch=z9hG4bKreg-{call_id.partition('@')[0]}-{cseq};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=r{cseq}\r\nTo: <sip:{user}@example.com>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: {contact}\r\nUser-Agent: SIPp\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def M(n: int, body: bytes | None = None, **kw: Any) -> bytes:
    """The n-th SIPp MESSAGE (its own branch, Call-ID and From tag; M(1) is SIPP)."""
    args: dict[str, Any] = {
        "branch": f"z9hG4bK-{n}-1-0",
        "call_id": f"{n}-1@127.0.0.1",
        "from_tag": f"{n}SIPpTag01",
        "body": f"Hello {n}".encode() if body is None else body,
    }
    return message(**{**args, **kw})  # fmt: skip


# Steps (each core in turn; both cores' timers run up to the step's time first):
#   ("reg", now, datagram, peer)        a REGISTER (peer of 4: over a stream)
#   ("msg", now, datagram, peer)        a MESSAGE from the sender
#   ("resp", now, status, i)            the UA answers the i-th copy forwarded (from each core's own)
#   ("timers", now)                     only the timers, at every deadline up to now
#   ("late", now)                       one handle_timer(now), without the deadlines before it
#   ("set", name, value)                core.shed_fraction / core.draining
#   ("seq", n)                          the layers' branch counters (as after n-1 branches)
Step = tuple[Any, ...]


def reg(now: float, data: bytes | None = None, peer: tuple[Any, ...] = UA) -> Step:
    return ("reg", now, data if data is not None else register(), peer)


def msg(now: float, data: bytes, peer: tuple[Any, ...] = PEER) -> Step:
    return ("msg", now, data, peer)


def resp(now: float, status: int, i: int = -1) -> Step:
    return ("resp", now, status, i)


def timers(now: float) -> Step:
    return ("timers", now)


# name: (steps, (relayed, declined) by the relay, None: not fixed)
SCENARIOS: dict[str, tuple[list[Step], tuple[int, int] | None]] = {
    "relay-200": ([reg(100.0), msg(101.0, M(1)), resp(101.1, 200), timers(200.0)], (1, 0)),
    "486-final": ([reg(100.0), msg(101.0, M(1)), resp(101.1, 486), msg(101.2, M(1)), timers(200.0)], (1, 0)),
    "603-302-202": (
        [
            reg(100.0),
            msg(101.0, M(1)),
            msg(101.0, M(2)),
            msg(101.0, M(3)),
            resp(101.1, 603, 0),
            resp(101.2, 302, 1),
            resp(101.3, 202, 2),
            msg(102.0, M(1)),
            msg(102.0, M(2)),
            msg(102.0, M(3)),
            timers(200.0),
        ],
        (3, 0),
    ),  # fmt: skip
    "180-then-200": (
        [reg(100.0), msg(101.0, M(1)), resp(101.2, 180), resp(103.0, 200), timers(200.0)],
        (1, 0),
    ),
    "retransmissions-at-each-stage": (
        [
            reg(100.0),
            msg(101.0, M(1)),
            msg(101.2, M(1)),  # before any response: absorbed
            timers(101.6),  # Timer E at 101.5
            resp(101.7, 100),
            msg(101.8, M(1)),  # after a 100: still nothing to send again
            resp(102.0, 180),
            msg(102.1, M(1)),  # the 180 again
            resp(102.2, 180),  # a retransmitted 180 goes up again
            msg(102.3, M(1), ("10.9.9.8", 5071)),  # from elsewhere: the 180 to there
            timers(110.0),  # Timer E every T2
            resp(110.1, 200),
            msg(110.2, M(1)),  # the 200 again
            resp(110.3, 200),  # a retransmitted 200: absorbed
            resp(110.4, 180),  # a late 180: absorbed
            timers(115.1),  # Timer K
            resp(115.2, 200),  # after K: forwarded statelessly by the general path, either core
            msg(140.0, M(1)),  # before J: the 200 again
            timers(142.1),  # Timer J
            msg(142.2, M(1)),  # a new request again: forwarded again (a new branch)
            msg(142.3, M(1)),
            resp(142.4, 200),
            timers(300.0),
        ],
        (2, 0),
    ),
    "timer-e-after-100": (
        [reg(100.0), msg(101.0, M(1)), resp(101.2, 100), timers(120.0), resp(120.1, 200), timers(200.0)],
        (1, 0),
    ),  # fmt: skip
    "timer-f-408": (
        [
            reg(100.0),
            msg(101.0, M(1)),
            timers(133.0),  # E at T1, 2T1, 4T1, T2...; F: the 408
            msg(133.5, M(1)),  # the 408 again
            resp(134.0, 200),  # a late 200: forwarded statelessly in both
            resp(134.1, 180),
            timers(165.0),  # Timer J
            msg(165.1, M(1)),  # a new request
            resp(165.2, 200),
            timers(300.0),
        ],
        (2, 0),
    ),
    "timer-f-after-180": (
        [
            reg(100.0),
            msg(101.0, M(1)),
            resp(101.7, 180),
            msg(120.0, M(1)),
            timers(133.0),
            msg(134.0, M(1)),
            timers(300.0),
        ],
        (1, 0),
    ),  # fmt: skip
    "two-at-once": (
        [
            reg(100.0),
            msg(101.0, M(1)),
            msg(101.0, M(2), ("10.9.9.8", 5071, 1)),
            timers(102.0),
            resp(102.1, 180, 1),
            resp(102.2, 486, 1),
            resp(102.3, 200, 0),
            msg(102.4, M(2), ("10.9.9.8", 5071, 1)),
            msg(102.5, M(1)),
            msg(102.6, M(3)),
            timers(134.7),
            msg(134.8, M(3)),
            timers(300.0),
        ],
        (3, 0),
    ),
    "shedding": (
        [
            reg(100.0),
            msg(101.0, M(1)),
            ("set", "shed_fraction", 1.0),
            msg(101.1, M(2)),  # a new MESSAGE: the general path's 503
            msg(101.2, M(1)),  # relayed before: absorbed
            resp(101.3, 200, 0),
            msg(101.4, M(1)),  # its 200 again
            msg(101.5, M(2)),  # 503 again
            ("set", "shed_fraction", 0.0),
            msg(101.6, M(2)),
            resp(101.7, 200),
            timers(200.0),
        ],
        (2, 2),
    ),
    "draining": (
        [
            reg(100.0),
            msg(101.0, M(1)),
            ("set", "draining", True),
            msg(101.1, M(2)),
            msg(101.2, M(1)),
            resp(101.3, 200),
            msg(101.4, M(1)),
            timers(200.0),
        ],
        (1, 1),
    ),  # fmt: skip
    "declined-two-bindings-then-one": (
        [
            reg(100.0),
            reg(100.1, register(contact="<sip:u7@127.0.0.1:5062>;expires=3600", call_id="reg-2")),
            msg(101.0, M(1)),  # two bindings: the general path forks
            reg(101.5, register(contact="<sip:u7@127.0.0.1:5062>;expires=0", call_id="reg-2", cseq=2)),
            msg(102.0, M(1)),  # one binding now, but the general layer holds the request: not relayed
            resp(102.5, 180, 0),
            msg(102.6, M(1)),
            resp(103.0, 200, 0),
            resp(103.1, 486, 1),
            msg(103.5, M(1)),
            timers(140.0),
            msg(140.1, M(1)),  # after Timer J: a new request, relayed
            resp(140.2, 200),
            timers(300.0),
        ],
        (1, 4),
    ),
    "declined-kinds": (
        [
            reg(100.0),
            msg(101.0, M(1, mf="0")),  # 483
            msg(101.1, M(2, extra="Route: <sip:10.0.0.1:5060;lr>\r\n")),  # our Route: routed here
            msg(101.2, M(3, ruri="sip:nobody@example.com")),  # 480
            msg(101.3, M(4, ruri="sip:u7@other.org")),  # someone else's domain: forwarded (host name: 503)
            msg(101.4, M(5, extra="Require: foo\r\n")),  # 420
            msg(101.5, M(6, branch="1-1-0")),  # RFC 2543 matching
            msg(101.6, M(6, branch="1-1-0")),
            msg(101.7, M(7, vias="Via: SIP/2.0/UDP 10.0.0.1:40000;branch=z9hG4bKspiral\r\n")),
            msg(101.8, M(8, ruri="sips:u7@example.com")),
            msg(101.9, M(9, body=big_body_for(1301))),  # over 1300: TCP
            msg(102.0, M(10), ("127.0.0.1", 5070, "tcp", 9)),  # over a stream: not seen by the relay
            resp(102.5, 200),
            msg(102.6, M(11, extra="Proxy-Require: foo\r\n")),  # 420 (RFC 3261 16.3 step 5)
            timers(300.0),
        ],
        (0, 11),
    ),
    "spiral-and-loop": (
        [
            reg(100.0, register(contact="<sip:u7@10.0.0.1:5060>")),  # a contact that is us
            msg(101.0, M(1)),
            ("spiral", 101.1),  # our copy comes back (another Request-URI): forwarded again
            ("spiral", 101.2),  # and again, the same Request-URI: 482 Loop Detected
            timers(300.0),
        ],
        (1, 2),
    ),
    "mf-and-peers": (
        [
            reg(100.0, register(contact="<sip:u7@[fd00::7]:5061>;expires=3600"), ("fd00::7", 5061)),
            msg(101.0, M(1, mf=None), ("fd00::9", 5070)),
            msg(101.1, M(2, mf="1", rport=False), ("10.9.9.9", 5070, 2)),
            msg(101.2, M(3), ("", 5070)),
            resp(101.3, 200, 0),
            resp(101.4, 180, 1),
            timers(300.0),
        ],
        (3, 0),
    ),
    "registered-over-tcp": (
        [
            reg(100.0, register(via="TCP 127.0.0.1:5061"), ("127.0.0.1", 5061, "tcp", 7)),
            msg(101.0, M(1)),
            msg(101.1, M(1)),
            timers(200.0),
        ],
        (0, 2),
    ),
    "two-bindings-one-expired": (
        [
            reg(100.0),
            reg(100.0, register(contact="<sip:u7@127.0.0.1:5062>;expires=60", call_id="reg-2")),
            msg(161.0, M(1)),  # two in the row: declined; the general path drops the expired one
            msg(161.1, M(1)),
            msg(161.2, M(2)),  # one binding left: relayed
            resp(161.3, 200, 0),
            resp(161.4, 200, 1),
            timers(300.0),
        ],
        (1, 2),
    ),
    "shed-half": (
        [reg(100.0), ("set", "shed_fraction", 0.5)]
        + [msg(101.0 + n / 100, M(n)) for n in range(1, 17)]  # some 503, some forwarded
        + [("set", "shed_fraction", 0.0)]
        + [msg(102.0 + n / 100, M(n)) for n in range(1, 17)]  # the 503'd ones now relayed
        + [resp(102.5, 200, n) for n in range(-6, 0)]
        + [timers(300.0)],
        None,  # which are shed follows hash(Call-ID)
    ),
    "expired-registration": (
        [
            reg(100.0, register(contact=f"<{CONTACT}>;expires=60")),
            msg(159.0, M(1)),
            resp(159.1, 200),
            msg(160.0, M(2)),
            timers(300.0),
        ],
        (1, 1),
    ),  # fmt: skip
}


class Pair:
    """A core with the relay (the twin under test) and one without, fed alike."""

    def __init__(self, impl: Any, im: ImConfig | None = None, fastreg: bool = False) -> None:
        self.fast, self.floc = make_core(impl, True, im=im, fastreg=fastreg)
        self.slow, self.sloc = make_core(impl, False, im=im, fastreg=fastreg)
        self.fwds: dict[int, list[tuple[bytes, Any]]] = {id(self.fast): [], id(self.slow): []}
        self.sent: list[tuple[bytes, Any]] = []  # everything, normalized (the general core's)
        self.timed: list[tuple[float, list[tuple[bytes, Any]]]] = []  # what the timers sent, when

    @property
    def cores(self) -> tuple[SipCore, SipCore]:
        return self.fast, self.slow

    def compare(self, what: Any) -> list[tuple[bytes, Any]]:
        outs = []
        for c in self.cores:
            out = c.outgoing()
            for d, p in out:
                if d.startswith(b"MESSAGE ") and (d, p) not in self.fwds[id(c)]:
                    self.fwds[id(c)].append((d, p))
            outs.append(normalized(out))
        got, want = outs
        assert got == want, (what, got, want)
        assert self.fast.busy() == self.slow.busy(), what
        # the same location writes (the general path drops expired bindings as it reads)
        assert decoded(self.floc.take_dirty()) == decoded(self.sloc.take_dirty()), what
        self.sent += want
        return want

    def timers(self, until: float, what: Any) -> None:
        for _ in range(10_000):
            ds = [d for d in (c.get_timer() for c in self.cores) if d is not None]
            if not ds or min(ds) > until:
                return
            for c in self.cores:
                c.handle_timer(min(ds))
            out = self.compare((what, "timer", min(ds)))
            if out:
                self.timed.append((min(ds), out))
        raise AssertionError("timers do not advance")

    def step(self, i: int, step: Step) -> list[tuple[bytes, Any]]:
        kind = step[0]
        if kind == "set":
            for c in self.cores:
                setattr(c, step[1], step[2])
            return []
        if kind == "seq":
            for c in self.cores:
                c.tl._branch_seq = step[1]
            return []
        now = step[1]
        if kind == "late":
            for c in self.cores:
                c.handle_timer(now)
            return self.compare(i)
        self.timers(now, i)
        if kind == "timers":
            return []
        for c in self.cores:
            if kind in ("reg", "msg"):
                data, peer = step[2], step[3]
                c.on_message(data, peer, reliable=len(peer) == 4, now=now)
            elif kind == "resp":
                fwd, dest = self.fwds[id(c)][step[3]]
                c.on_message(reply(active_codec, fwd, step[2]), (dest[0], dest[1]), reliable=False, now=now)
            elif kind == "spiral":
                fwd, _ = self.fwds[id(c)][-1]
                c.on_message(fwd, ("10.0.0.1", 40000), reliable=False, now=now)
        return self.compare(i)


_OUR_BRANCH = re.compile(rb"branch=z9hG4bK" + BP.encode() + rb"\.r?[0-9a-f]+\.([0-9a-f]{12})")
_TO_TAG = re.compile(rb"(\r\nTo: [^\r\n]*;tag=)[^\r\n;]+")
_DATE = re.compile(rb"\r\nDate: [^\r\n]*\r\n")


def decoded(dirty: dict[str, bytes]) -> dict[str, Any]:
    return {k: marshal.loads(v) if v else b"" for k, v in dirty.items()}


def stats(c: SipCore) -> tuple[int, ...]:
    s = c.stats
    return (s.received, s.parse_errors, s.rejected, s.responses_dropped, s.sent, s.shed, s.handed_off)


def normalized(out: list[tuple[bytes, Any]]) -> list[tuple[bytes, Any]]:
    """Our Via's branch (<prefix>.<n>.<loop> or <prefix>.r<n>.<loop>) less its number, the
    To tag of our own 408s and the Date of the REGISTER answers."""
    res = []
    for d, p in out:
        d = _OUR_BRANCH.sub(rb"branch=z9hG4bK" + BP.encode() + rb".N.\1", d)
        d = _DATE.sub(b"\r\nDate: -\r\n", d)  # the registrar's answers
        if d.startswith(b"SIP/2.0 408 "):
            d = _TO_TAG.sub(rb"\1T", d)
        res.append((d, p))
    return res


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_relay_sends_what_the_general_path_sends(impl: Any, name: str) -> None:
    steps, counts = SCENARIOS[name]
    pair = Pair(impl)
    for i, step in enumerate(steps):
        pair.step(i, step)
    relay = pair.fast.relay
    if counts is not None:
        assert (relay.relayed, relay.declined) == counts
    assert relay.open == 0 and len(relay) == 0 and not relay.expecting()
    assert not pair.fast.busy() and not pair.slow.busy()
    assert stats(pair.fast) == stats(pair.slow)
    rows = [{k: marshal.loads(t.get(k)) for k in t.keys()} for t in (pair.floc.table, pair.sloc.table)]
    assert rows[0] == rows[1]


@pytest.mark.parametrize("name", ["relay-200", "retransmissions-at-each-stage", "timer-f-408", "shedding",
                                  "declined-two-bindings-then-one", "two-bindings-one-expired",
                                  "expired-registration"])  # fmt: skip
def test_the_same_with_the_registrars_fast_path(impl: Any, name: str) -> None:
    steps, counts = SCENARIOS[name]
    pair = Pair(impl, fastreg=True)
    for i, step in enumerate(steps):
        pair.step(i, step)
    assert pair.fast.fast.answered > 0
    assert (pair.fast.relay.relayed, pair.fast.relay.declined) == counts
    assert stats(pair.fast) == stats(pair.slow)


def test_a_scenario_sends_what_is_expected(impl: Any) -> None:
    """The comparison above is of something: the relay core's datagrams, in a plain case."""
    pair = Pair(impl)
    steps = SCENARIOS["retransmissions-at-each-stage"][0]
    outs = [pair.step(i, s) for i, s in enumerate(steps)]
    heads = [[d.split(b"\r\n", 1)[0] for d, _ in out] for out in outs]
    assert heads[1] == [b"MESSAGE sip:u7@127.0.0.1:5061 SIP/2.0"]
    assert heads[2] == [] and heads[4] == [] and heads[5] == []
    assert outs[6] == outs[7] == outs[8] and heads[6] == [b"SIP/2.0 180 Ringing"]
    assert outs[9] == [(outs[6][0][0], ("10.9.9.8", 5071))]
    assert outs[11] == outs[12] == outs[17] and heads[11] == [b"SIP/2.0 200 OK"]
    assert heads[13] == [] and heads[14] == []
    assert outs[16] == [(outs[11][0][0], PEER)]  # after Timer K: stateless, to received/rport
    assert outs[19] == outs[1] and heads[19] == [b"MESSAGE sip:u7@127.0.0.1:5061 SIP/2.0"]
    # two requests, and Timer E at 101.5, 102.5 (then every T2: the 100 came at 101.7), 106.5
    assert [t for t, out in pair.timed if any(p == DEST for _, p in out)] == [101.5, 102.5, 106.5]
    assert sum(1 for _, p in pair.sent if p == DEST) == 2 + 3


def test_with_the_im_rules() -> None:
    """max_body and the URI-list service come from the IM rules (enable_im before or after)."""
    for impl in (load_impl("ref"), load_impl("ext")):
        im = ImConfig(max_body=10, uri_list_service="sip:list@example.com", offline=False)
        pair = Pair(impl, im)
        assert pair.fast.relay.max_body == 10 and pair.fast.relay.service == ("list", "example.com")
        steps = [
            reg(100.0),
            reg(100.0, register(user="list", call_id="reg-l")),
            msg(101.0, M(1, body=b"x" * 11)),  # 413
            msg(101.1, M(2, body=b"x" * 10)),
            msg(101.2, M(3, ruri="sip:list@example.com")),  # the IM rules' answer (403: no Require)
            msg(101.3, M(4, ruri="sip:u8@example.com")),  # 480 (no offline store)
            resp(101.4, 200),
            timers(300.0),
        ]
        heads = [[d.split(b"\r\n", 1)[0] for d, _ in pair.step(i, s)] for i, s in enumerate(steps)]
        assert heads[2:6] == [
            [b"SIP/2.0 413 Request Entity Too Large"],
            [b"MESSAGE sip:u7@127.0.0.1:5061 SIP/2.0"],
            [b"SIP/2.0 403 Forbidden"],
            [b"SIP/2.0 480 Temporarily Unavailable"],
        ]
        assert (pair.fast.relay.relayed, pair.fast.relay.declined) == (1, 3)
    # enable_im after enable_fast_relay
    c, _ = make_core(load_impl("ext"), True)
    assert c.relay.max_body is None and c.relay.service is None
    c.enable_im(ImConfig(max_body=99, uri_list_service="sip:lists.example.com"), None, 0.0)
    assert c.relay.max_body == 99 and c.relay.service == ("", "lists.example.com")


def late_wakeup_steps() -> list[Step]:
    # E at 101.5, 102.5, 104.5, 108.5, ... 128.5, 132.5 (then 136.5); F at 133.0
    return [reg(100.0), msg(101.0, M(1)), timers(132.9), ("late", 137.0), timers(300.0)]


def test_late_wakeup_past_timer_f_sends_no_last_copy(impl: Any) -> None:
    """One expire() finds Timer F due and, later than it, Timer E: F runs first (deadline
    order, as in the transaction layer) and ends the client side, so only the 408 goes out."""
    pair = Pair(impl)
    steps = late_wakeup_steps()
    for i, step in enumerate(steps[:3]):
        pair.step(i, step)
    for c in pair.cores:
        c.handle_timer(137.0)
        assert [d[:12] for d, _ in c.outgoing()] == [b"SIP/2.0 408 "]


def test_late_wakeup_two_records_in_deadline_order(impl: Any) -> None:
    """One late wake-up with Timer E due on two records in different rings: the same
    datagrams as the general path, in the same (deadline) order."""
    pair = Pair(impl)
    for i, step in enumerate([reg(100.0), msg(100.0, M(1)), timers(100.5), msg(101.2, M(2))]):
        pair.step(i, step)
    # M(1): ring 2T1, due 101.5; M(2): ring T1, due 101.7
    outs = []
    for c in pair.cores:
        c.handle_timer(102.0)
        outs.append(normalized(c.outgoing()))
    got, want = outs
    assert [d.split(b"Call-ID: ")[1][:1] for d, _ in want] == [b"1", b"2"]
    assert got == want


def test_late_wakeup_same_as_the_general_path(impl: Any) -> None:
    pair = Pair(impl)
    for i, step in enumerate(late_wakeup_steps()):
        pair.step(i, step)


def boundary_steps() -> list[Step]:
    # the relay's first branch is "<prefix>.r1.<loop>", the general path's "<prefix>.101.<loop>"
    # after 0x100 branches made by the layer (other requests, 408 tags, IM Call-IDs): the relay's
    # copy of this request is 1300 octets, the general path's 1301
    return [("seq", 0x100), reg(100.0), msg(101.0, M(1, body=big_body_for(1300))), timers(101.0)]


def test_size_rule_copies_around_the_boundary(impl: Any) -> None:
    """The one documented difference (simplefast/_ref/fastrelay.py): the 1300-octet rule is
    applied to each path's own copy. Here the relay's copy is 1300 octets and goes over UDP;
    the general path's copy of the same request is one octet longer (its branch number has
    one more digit than the relay's "r1") and goes over TCP. Each follows RFC 3261 18.1.1."""
    pair = Pair(impl)
    steps = boundary_steps()
    for c in pair.cores:
        c.tl._branch_seq = 0x100
    for c in pair.cores:
        c.on_message(steps[1][2], UA, reliable=False, now=100.0)
        c.outgoing()
        c.on_message(steps[2][2], PEER, reliable=False, now=101.0)
    ((fd, fp),) = pair.fast.outgoing()
    ((sd, sp),) = pair.slow.outgoing()
    assert (len(fd), fp) == (1300, DEST)
    assert sp == ("127.0.0.1", 5061, "tcp", 0)  # 1301 over UDP: TCP (written again with a TCP Via)


# ------------------------------------------------------------------ wiring


def test_enable_fast_relay_needs_a_shared_table_and_no_auth() -> None:
    tl = TransactionLayer(branch_prefix=BP)
    c = SipCore(CoreConfig(domains=frozenset({"example.com"})), MemoryLocation(), ME, tl=tl)
    assert c.enable_fast_relay() is False and c.relay is None
    c = SipCore(CoreConfig(domains=frozenset({"example.com"})), ShmLocation(new_table(8)), ME,
                tl=TransactionLayer(branch_prefix=BP), auth=DigestAuth(b"s" * 32))  # fmt: skip
    assert c.enable_fast_relay() is False and c.relay is None
    c = SipCore(CoreConfig(domains=frozenset({"example.com"})), ShmLocation(new_table(8)), ME,
                tl=TransactionLayer(branch_prefix=BP, t1=0.25, t2=2.0, t4=3.0))  # fmt: skip
    assert c.enable_fast_relay() is True
    relay = c.relay
    assert relay.prefix == PREFIX and relay.general is c.tl.server and relay.table is c.location.table  # type: ignore[attr-defined]
    assert (relay.t1, relay.t2, relay.t4) == (0.25, 2.0, 3.0)
    assert relay.config is c.registrar.config and relay.me is c.proxy.me
    assert relay.tag_prefix.isascii() and relay.tag_prefix.isalnum()


def test_busy_while_a_relayed_message_awaits_its_final(impl: Any) -> None:
    c, _ = make_core(impl, True)
    c.on_message(register(), UA, reliable=False, now=100.0)
    c.outgoing()
    assert not c.busy()
    c.on_message(M(1), PEER, reliable=False, now=101.0)
    ((fwd, _),) = c.outgoing()
    assert c.relay.open == 1 and c.busy()
    assert not c.tl.client and all(k[-1] == "REGISTER" for k in c.tl.server)  # all in the relay's record
    assert c.get_timer() == 101.5
    c.on_message(reply(active_codec, fwd, 180), UA, reliable=False, now=101.2)
    assert c.busy()
    c.on_message(reply(active_codec, fwd, 200), UA, reliable=False, now=101.3)
    assert [d[:14] for d, _ in c.outgoing()] == [b"SIP/2.0 180 Ri", b"SIP/2.0 200 OK"]
    assert not c.busy()
    # Timer F ends it too
    c.on_message(M(2), PEER, reliable=False, now=102.0)
    c.outgoing()
    assert c.busy()
    for _ in range(100):
        t = c.get_timer()
        if t is None or t > 134.0:
            break
        c.handle_timer(t)
    assert [d[:12] for d, _ in c.outgoing()][-1] == b"SIP/2.0 408 "
    assert not c.busy() and c.relay.timeouts == 1


def test_the_core_takes_the_relay_path_for_first_hand_datagrams_only(impl: Any) -> None:
    c, _ = make_core(impl, True)
    c.on_message(register(), UA, reliable=False, now=100.0)
    c.outgoing()
    c.on_message(M(1), ("127.0.0.1", 5070, "tcp", 3), reliable=True, now=101.0)
    c.on_message(M(2), PEER, reliable=False, now=101.0, hops=1)
    assert c.relay.relayed == 0 and c.relay.declined == 0
    assert len(c.outgoing()) == 2 and len(c.tl.client) == 2
    c.on_message(M(3), PEER, reliable=False, now=101.0)
    assert c.relay.relayed == 1 and len(c.outgoing()) == 1 and len(c.tl.client) == 2
