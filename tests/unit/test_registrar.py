"""Registrar rules (RFC 3261 section 10.3) on the sans-IO core, fake clock."""

from __future__ import annotations

from typing import Any

from simplefast.proxy.core import CoreConfig, SipCore
from simplefast.proxy.location import MemoryLocation
from simplefast.proxy.proxy import ProxyAddress
from simplefast.sip import parse_message
from simplefast.sip.transaction import TransactionLayer

ME = ProxyAddress("10.0.0.1", 5060, 40000)


def core(location: MemoryLocation) -> SipCore:
    return SipCore(CoreConfig(domains=frozenset({"example.com"})), location, ME, tl=TransactionLayer())


def register(c: SipCore, cseq: int, *, branch: str, contact: str = "sip:bob@10.0.0.9:5090") -> Any:
    data = (
        f"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9:5090;branch=z9hG4bK{branch}\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=r\r\nTo: <sip:bob@example.com>\r\n"
        f"Call-ID: reg-bob\r\nCSeq: {cseq} REGISTER\r\nContact: <{contact}>\r\nExpires: 600\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    c.on_message(data, ("10.0.0.9", 5090), reliable=False, now=0.0)
    ((resp, _),) = [(parse_message(d), p) for d, p in c.outgoing()]
    return resp


def test_a_retransmission_whose_transaction_died_with_its_worker_gets_its_200() -> None:
    """Worker A applied REGISTER CSeq 2 to the shared table and was killed before the 200
    left; the retransmission reaches worker B, which has no transaction for it. The same
    Call-ID and CSeq is that request again: 200, the binding unchanged. A lower CSeq is
    still out of order (500)."""
    loc = MemoryLocation()
    a, b = core(loc), core(loc)
    assert register(a, 2, branch="x2").status == 200
    before = loc.get("sip:bob@example.com", 0.0)
    r = register(b, 2, branch="x2")
    assert r.status == 200 and [c.uri for c in r.contacts()] == ["sip:bob@10.0.0.9:5090"]
    assert loc.get("sip:bob@example.com", 0.0) == before
    assert register(b, 1, branch="x1").status == 500
    assert register(b, 3, branch="x3").status == 200
