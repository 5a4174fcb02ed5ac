"""The registrar's stateless fast path (FastRegistrar), both twins.

What it answers (the cases of simplefast/_ref/fastreg.py's docstring), what
it declines untouched (a SipMessage back, table and write-behind map as they
were, ``declined`` + 1), what it does not take at all (None), and the key
property: a SipCore with the fast path enabled answers every REGISTER with the
bytes (Date aside) and the location changes of a SipCore without it.
"""

from __future__ import annotations

import marshal
import re
from types import SimpleNamespace
from typing import Any

import pytest

from simplefast._impl import ACTIVE
from simplefast._impl import sipmsg as active_codec
from simplefast.proxy.core import SUPPORTED, CoreConfig, SipCore
from simplefast.proxy.location import ShmLocation
from simplefast.proxy.proxy import ProxyAddress
from simplefast.proxy.registrar import RegistrarConfig
from simplefast.server.shared import AOR_MAX, BINDINGS_MAX
from simplefast.sip.transaction import TransactionLayer
from simplefast.testing import OtherCodec, fnv_tag, load_impl

SHM = load_impl("ext").shmindex  # the ext table works with either fastreg twin
KEY = b"k" * 16
DATE = "Mon, 01 Jan 2024 00:00:00 GMT"
PEER = ("10.1.1.1", 7000)
AOR = "sip:u7@example.com"
AOR_KEY = AOR.encode()
CONTACT = "sip:u7@127.0.0.1:5061"
ME = ProxyAddress("10.0.0.1", 5060, 40000)


def new_table(slots: int = 64) -> Any:
    mem = SHM.create_shared(SHM.table_size(slots, AOR_MAX, BINDINGS_MAX))
    return SHM.ShmTable(mem, slots, AOR_MAX, BINDINGS_MAX, create=True, zeroed=True)


def reg(
    *,
    user: str | None = "u7",
    to_host: str = "example.com",
    to_scheme: str = "sip",
    to_tag: str | None = None,
    ruri: str = "sip:example.com",
    contact: str | None = f"<{CONTACT}>;expires=3600",
    call_id: str = "7-1@127.0.0.1",
    cseq: int = 1,
    cseq_method: str = "REGISTER",
    branch: str = "z9hG4bK-1-7-0",
    rport: bool = True,
    from_tag: str | None = "1SIPpTag7",
    extra: str = "",
    vias: str = "",
) -> bytes:
    """A SIPp-shaped REGISTER (bench/sipp/register.xml) with the given changes.
    ``contact`` None: no Contact header; ``extra``: header lines (with CRLF) before
    User-Agent; ``vias``: further Via lines after the top one."""
    to_uri = f"{to_scheme}:{user}@{to_host}" if user is not None else f"{to_scheme}:{to_host}"
    lines = [
        f"REGISTER {ruri} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch={branch}{';rport' if rport else ''}",
    ]
    text = "\r\n".join(lines) + "\r\n" + vias
    text += "Max-Forwards: 70\r\n"
    text += f"From: <sip:u7@example.com>{';tag=' + from_tag if from_tag is not None else ''}\r\n"
    text += f"To: <{to_uri}>{';tag=' + to_tag if to_tag is not None else ''}\r\n"
    text += f"Call-ID: {call_id}\r\nCSeq: {cseq} {cseq_method}\r\n"
    if contact is not None:
        text += f"Contact: {contact}\r\n"
    text += extra + "User-Agent: SIPp\r\nContent-Length: 0\r\n\r\n"
    return text.encode("utf-8", "surrogateescape")


SIPP = (
    b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-7-0;rport\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:u7@example.com>;tag=1SIPpTag7\r\nTo: <sip:u7@example.com>\r\n"
    b"Call-ID: 7-1@127.0.0.1\r\nCSeq: 1 REGISTER\r\nContact: <sip:u7@127.0.0.1:5061>;expires=3600\r\n"
    b"User-Agent: SIPp\r\nContent-Length: 0\r\n\r\n"
)


class Marks:
    """The offline-store mark table's read side (``get``)."""

    def __init__(self, *keys: bytes) -> None:
        self.keys = set(keys)

    def get(self, key: bytes) -> bytes | None:
        return b"1" if key in self.keys else None


class Rig:
    """One FastRegistrar of a twin on its own table and write-behind map."""

    def __init__(self, impl: Any, *, table: Any = None, dirty: bool = True, server: str = "simplefast",
                 **cfg: Any) -> None:  # fmt: skip
        self.table = table if table is not None else new_table()
        self.dirty: dict[str, bytes] | None = {} if dirty else None
        self.config = RegistrarConfig(domains=frozenset({"example.com"}), **cfg)
        self.fr = impl.fastreg.FastRegistrar(
            self.config, self.table, server=server, supported=SUPPORTED, tag_key=KEY, dirty=self.dirty
        )

    def __call__(self, data: bytes, peer: tuple[Any, ...] = PEER, now: float = 100.0) -> Any:
        return self.fr.register(data, peer, now, DATE)

    def ok(self, data: bytes, peer: tuple[Any, ...] = PEER, now: float = 100.0) -> bytes:
        out = self(data, peer, now)
        assert type(out) is bytes, out
        return out

    def raw(self) -> dict[bytes, bytes]:
        return {k: self.table.get(k) for k in self.table.keys()}

    def rows(self) -> dict[bytes, list[tuple[Any, ...]]]:
        return {k: marshal.loads(v) for k, v in self.raw().items()}

    def row(self, key: bytes = AOR_KEY) -> list[tuple[Any, ...]] | None:
        v = self.table.get(key)
        return None if v is None else marshal.loads(v)

    def declines(self, data: bytes, peer: tuple[Any, ...] = PEER, now: float = 100.0) -> Any:
        """Asserts a decline: a parsed REGISTER back, nothing changed, declined + 1."""
        raw, dirty = self.raw(), dict(self.dirty or {})
        answered, declined = self.fr.answered, self.fr.declined
        out = self(data, peer, now)
        assert out is not None and type(out) is not bytes, out
        assert type(out).__name__ == "SipMessage" and out.is_request and out.method == "REGISTER"
        assert self.raw() == raw
        assert dict(self.dirty or {}) == dirty
        assert (self.fr.answered, self.fr.declined) == (answered, declined + 1)
        return out


def header_lines(resp: bytes) -> list[bytes]:
    head, sep, body = resp.partition(b"\r\n\r\n")
    assert sep and body == b""
    return head.split(b"\r\n")


def header(resp: bytes, name: bytes) -> list[bytes]:
    return [line.partition(b": ")[2] for line in header_lines(resp)[1:] if line.partition(b": ")[0] == name]


def binding(
    contact: str = CONTACT,
    expires_at: float = 3700.0,
    q: float | None = None,
    call_id: str = "7-1@127.0.0.1",
    cseq: int = 1,
    source: str = "udp:10.1.1.1:7000",
) -> tuple[Any, ...]:
    return (contact, expires_at, q, call_id, cseq, (), source, None)


# ------------------------------------------------------------------ answered


def test_new_aor_the_sipp_register(impl: Any) -> None:
    r = Rig(impl)
    out = r.ok(SIPP)
    tag = fnv_tag(KEY, "z9hG4bK-1-7-0", "7-1@127.0.0.1", 1, "1SIPpTag7")
    assert out == (
        b"SIP/2.0 200 OK\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-7-0;rport=7000;received=10.1.1.1\r\n"
        b"From: <sip:u7@example.com>;tag=1SIPpTag7\r\n"
        b"To: <sip:u7@example.com>;tag=" + tag.encode() + b"\r\n"
        b"Call-ID: 7-1@127.0.0.1\r\nCSeq: 1 REGISTER\r\n"
        b"Contact: <sip:u7@127.0.0.1:5061>;expires=3600\r\n"
        b"Date: " + DATE.encode() + b"\r\nServer: simplefast\r\nContent-Length: 0\r\n\r\n"
    )
    assert r.rows() == {AOR_KEY: [binding(expires_at=3700.0)]}
    assert type(r.row()[0][1]) is float  # type: ignore[index]
    assert r.dirty == {AOR: r.table.get(AOR_KEY)}
    assert (r.fr.answered, r.fr.declined) == (1, 0)


def test_to_tag_is_the_documented_fnv(impl: Any) -> None:
    f = impl.fastreg.to_tag
    assert f(KEY, "z9hG4bK-1-7-0", "7-1@127.0.0.1", 1, "1SIPpTag7") == fnv_tag(
        KEY, "z9hG4bK-1-7-0", "7-1@127.0.0.1", 1, "1SIPpTag7"
    )
    assert f(b"", "", "", 0, "") == fnv_tag(b"", "", "", 0, "")
    assert f(b"x", "b", "c", -5, "\udcff") == fnv_tag(b"x", "b", "c", -5, "\udcff")
    assert re.fullmatch(r"[0-9a-f]{16}", f(b"", "", "", 0, ""))
    # each part is NUL-terminated: moving text between parts changes the tag
    assert f(KEY, "ab", "c", 1, "") != f(KEY, "a", "bc", 1, "")


def test_answer_to_tag_uses_branch_call_id_cseq_and_from_tag(impl: Any) -> None:
    r = Rig(impl)
    out = r.ok(reg(from_tag=None, branch="z9hG4bKzz", call_id="cid-9", cseq=3))
    (to,) = header(out, b"To")
    assert to == b"<sip:u7@example.com>;tag=" + fnv_tag(KEY, "z9hG4bKzz", "cid-9", 3, "").encode()
    # a To tag in the request is kept as it is, no second tag
    out = r.ok(reg(to_tag="abc", branch="z9hG4bKzy", call_id="cid-9", cseq=4))
    assert header(out, b"To") == [b"<sip:u7@example.com>;tag=abc"]


@pytest.mark.parametrize("same_call_id", [True, False], ids=["same-call-id", "new-call-id"])
def test_refresh_of_the_same_contact(impl: Any, same_call_id: bool) -> None:
    r = Rig(impl)
    r.ok(reg(cseq=5))
    cid = "7-1@127.0.0.1" if same_call_id else "other-call"
    cseq = 6 if same_call_id else 2  # another Call-ID: any CSeq replaces the binding
    out = r.ok(reg(cseq=cseq, call_id=cid, branch="z9hG4bK-2", contact=f"<{CONTACT}>;expires=600"), now=200.0)
    assert header(out, b"Contact") == [f"<{CONTACT}>;expires=600".encode()]
    assert r.rows() == {AOR_KEY: [binding(expires_at=800.0, call_id=cid, cseq=cseq)]}
    assert r.dirty == {AOR: r.table.get(AOR_KEY)}
    assert (r.fr.answered, r.fr.declined) == (2, 0)


def test_retransmission_is_answered_again_identically_binding_unchanged(impl: Any) -> None:
    r = Rig(impl)
    first = r.ok(reg(cseq=3))
    rows = r.rows()
    again = r.ok(reg(cseq=3))
    assert again == first  # To tag included
    assert r.rows() == rows
    # later, and with another source and expiry: still the request again, the binding stays
    later = r.ok(reg(cseq=3, contact=f"<{CONTACT}>;expires=60"), peer=("10.9.9.9", 1), now=1100.0)
    assert header(later, b"Contact") == [f"<{CONTACT}>;expires=2600".encode()]
    assert header(later, b"To") == header(first, b"To")
    assert r.rows() == rows
    assert r.dirty == {AOR: r.table.get(AOR_KEY)}
    assert (r.fr.answered, r.fr.declined) == (3, 0)


def test_retransmission_of_a_removal_keeps_the_binding(impl: Any) -> None:
    """Same Call-ID and CSeq as the stored binding, expires=0: the request again, the
    binding stays (the general path's rule: the same CSeq leaves it as it is)."""
    r = Rig(impl)
    r.ok(reg(cseq=3))
    rows = r.rows()
    out = r.ok(reg(cseq=3, contact=f"<{CONTACT}>;expires=0"), now=150.0)
    assert header(out, b"Contact") == [f"<{CONTACT}>;expires=3550".encode()]
    assert r.rows() == rows


@pytest.mark.parametrize("how", ["param", "header"])
def test_expires_zero_removes(impl: Any, how: str) -> None:
    r = Rig(impl)
    r.ok(reg(cseq=1))
    r.dirty.clear()  # type: ignore[union-attr]
    if how == "param":
        data = reg(cseq=2, branch="z9hG4bK-2", contact=f"<{CONTACT}>;expires=0")
    else:
        data = reg(cseq=2, branch="z9hG4bK-2", contact=f"<{CONTACT}>", extra="Expires: 0\r\n")
    out = r.ok(data, now=200.0)
    assert header(out, b"Contact") == []
    assert [line.partition(b":")[0] for line in header_lines(out)[1:]] == [
        b"Via", b"From", b"To", b"Call-ID", b"CSeq", b"Date", b"Server", b"Content-Length"
    ]  # fmt: skip
    assert r.table.get(AOR_KEY) is None and len(r.table) == 0
    assert r.dirty == {AOR: b""}


def test_expires_zero_for_an_unknown_aor(impl: Any) -> None:
    r = Rig(impl)
    out = r.ok(reg(contact=f"<{CONTACT}>;expires=0"))
    assert header(out, b"Contact") == []
    assert r.rows() == {} and r.dirty == {AOR: b""}


def test_expires_header_when_the_contact_has_none(impl: Any) -> None:
    r = Rig(impl)
    out = r.ok(reg(contact=f"<{CONTACT}>", extra="Expires: 120\r\n"))
    assert header(out, b"Contact") == [f"<{CONTACT}>;expires=120".encode()]
    assert r.row() == [binding(expires_at=220.0)]
    # the Contact's parameter wins over the header
    out = r.ok(reg(cseq=2, contact=f"<{CONTACT}>;expires=300", extra="Expires: 120\r\n"))
    assert header(out, b"Contact") == [f"<{CONTACT}>;expires=300".encode()]


@pytest.mark.parametrize("default", [3600, 1800])
def test_default_expires_when_neither(impl: Any, default: int) -> None:
    r = Rig(impl, default_expires=default)
    out = r.ok(reg(contact=f"<{CONTACT}>"))
    assert header(out, b"Contact") == [f"<{CONTACT}>;expires={default}".encode()]
    assert r.row() == [binding(expires_at=100.0 + default)]


@pytest.mark.parametrize(
    "contact,extra",
    [
        (f"<{CONTACT}>;expires=100000", ""),
        (f"<{CONTACT}>;expires=4294967295", ""),
        (f"<{CONTACT}>", "Expires: 4294967295\r\n"),
    ],
)
def test_expiry_above_max_is_cut(impl: Any, contact: str, extra: str) -> None:
    r = Rig(impl)
    out = r.ok(reg(contact=contact, extra=extra))
    assert header(out, b"Contact") == [f"<{CONTACT}>;expires=86400".encode()]
    assert r.row() == [binding(expires_at=100.0 + 86400)]


def test_expiry_of_exactly_min_expires_is_taken(impl: Any) -> None:
    r = Rig(impl)
    out = r.ok(reg(contact=f"<{CONTACT}>;expires=60"))
    assert header(out, b"Contact") == [f"<{CONTACT}>;expires=60".encode()]


@pytest.mark.parametrize(
    "raw,text,value",
    [("0.5", "0.5", 0.5), ("1", "1", 1.0), ("0.", "0", 0.0), ("0", "0", 0.0), ("1.000", "1", 1.0),
     ("0.05", "0.05", 0.05), ("0.123", "0.123", 0.123), ("1.0", "1", 1.0)],
)  # fmt: skip
def test_valid_q(impl: Any, raw: str, text: str, value: float) -> None:
    r = Rig(impl)
    out = r.ok(reg(contact=f"<{CONTACT}>;q={raw};expires=3600"))
    assert header(out, b"Contact") == [f"<{CONTACT}>;expires=3600;q={text}".encode()]
    assert r.row() == [binding(q=value)]
    assert type(r.row()[0][2]) is float  # type: ignore[index]


def test_q_without_a_value_is_no_q(impl: Any) -> None:
    r = Rig(impl)
    out = r.ok(reg(contact=f"<{CONTACT}>;q;expires=3600"))
    assert header(out, b"Contact") == [f"<{CONTACT}>;expires=3600".encode()]
    assert r.row() == [binding(q=None)]


@pytest.mark.parametrize("at", [160.0, 161.5, 5000.0])
def test_an_expired_only_binding_is_replaced(impl: Any, at: float) -> None:
    r = Rig(impl)
    r.ok(reg(contact="<sip:old@10.0.0.1>;expires=60", call_id="a", cseq=9))  # expires at 160
    out = r.ok(reg(contact=f"<{CONTACT}>;expires=3600", call_id="a", cseq=1, branch="z9hG4bK-2"), now=at)
    assert header(out, b"Contact") == [f"<{CONTACT}>;expires=3600".encode()]
    assert r.rows() == {AOR_KEY: [binding(expires_at=at + 3600, call_id="a", cseq=1)]}
    assert r.dirty == {AOR: r.table.get(AOR_KEY)}


def test_an_expired_binding_removed_by_expires_zero(impl: Any) -> None:
    r = Rig(impl)
    r.ok(reg(contact="<sip:old@10.0.0.1>;expires=60"))
    out = r.ok(reg(contact=f"<{CONTACT}>;expires=0", cseq=2, branch="z9hG4bK-2"), now=500.0)
    assert header(out, b"Contact") == []
    assert r.rows() == {} and r.dirty == {AOR: b""}


@pytest.mark.parametrize(
    "rport,peer,via",
    [
        (True, ("10.1.1.1", 7000), b"127.0.0.1:5061;branch=z9hG4bK-1-7-0;rport=7000;received=10.1.1.1"),
        (False, ("10.1.1.1", 7000), b"127.0.0.1:5061;branch=z9hG4bK-1-7-0;received=10.1.1.1"),
        (True, ("127.0.0.1", 5061), b"127.0.0.1:5061;branch=z9hG4bK-1-7-0;rport=5061;received=127.0.0.1"),
        (False, ("127.0.0.1", 5061), b"127.0.0.1:5061;branch=z9hG4bK-1-7-0"),
        (True, ("10.1.1.1", 7000, 1), b"127.0.0.1:5061;branch=z9hG4bK-1-7-0;rport=7000;received=10.1.1.1"),
        (True, ("10.1.1.1", 7000, "c"), b"127.0.0.1:5061;branch=z9hG4bK-1-7-0;rport=7000;received=10.1.1.1"),
        (True, ("::1", 7000), b"127.0.0.1:5061;branch=z9hG4bK-1-7-0;rport=7000;received=::1"),
        (True, ("", 7000), b"127.0.0.1:5061;branch=z9hG4bK-1-7-0;rport"),  # no address: no stamp
    ],
)
def test_received_and_rport_on_the_top_via_only(
    impl: Any, rport: bool, peer: tuple[Any, ...], via: bytes
) -> None:
    r = Rig(impl)
    second = "SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bKlower;rport\r\n"
    out = r.ok(reg(rport=rport, vias=f"Via: {second}"), peer=peer)
    assert header(out, b"Via") == [b"SIP/2.0/UDP " + via, second.strip().encode()]
    assert r.row() == [binding(source=f"udp:{peer[0]}:{peer[1]}")]
    # the same as the codec stamps for the general path
    sip = impl.sipmsg
    msg = sip.parse_message(reg(rport=rport, vias=f"Via: {second}"))
    from simplefast.proxy.proxy import source_params

    assert header(sip.build_response(msg, 200, "OK", **source_params(msg, peer)), b"Via") == header(
        out, b"Via"
    )


def test_malformed_rport_value_gets_no_stamp(impl: Any) -> None:
    r = Rig(impl)
    out = r.ok(reg().replace(b";rport\r\n", b";rport=abc\r\n"))
    assert header(out, b"Via") == [b"SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-7-0;rport=abc"]


def test_header_order_of_the_200(impl: Any) -> None:
    r = Rig(impl, server="sf/1.0 (test)")
    data = reg(
        contact=f'"Bob" <{CONTACT}>;q=0.5;expires=600',
        vias="Via: SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bK-a\r\n"
        "v: SIP/2.0/UDP 10.0.0.8;branch=z9hG4bK-b\r\n",
        extra="Allow: INVITE\r\nSupported: path\r\nRecord-Route: <sip:p>\r\nExpires: 900\r\n",
    )
    out = r.ok(data)
    lines = header_lines(out)
    assert lines[0] == b"SIP/2.0 200 OK"
    names = [line.partition(b":")[0] for line in lines[1:]]
    assert names == [b"Via", b"Via", b"v", b"From", b"To", b"Call-ID", b"CSeq", b"Contact", b"Date",
                     b"Server", b"Content-Length"]  # fmt: skip
    assert header(out, b"Contact") == [f"<{CONTACT}>;expires=600;q=0.5".encode()]
    assert header(out, b"Date") == [DATE.encode()]
    assert header(out, b"Server") == [b"sf/1.0 (test)"]
    assert header(out, b"Content-Length") == [b"0"]


@pytest.mark.parametrize(
    "kw,aor",
    [
        ({"user": None}, "sip:example.com"),
        ({"to_scheme": "sips"}, "sips:u7@example.com"),
        ({"to_host": "EXAMPLE.Com"}, "sip:u7@example.com"),
        ({"ruri": "sip:EXAMPLE.COM"}, "sip:u7@example.com"),
        ({"ruri": "sip:example.com:5060;transport=udp"}, "sip:u7@example.com"),
        ({"user": "U7"}, "sip:U7@example.com"),  # the user part keeps its case
    ],
)
def test_the_aor(impl: Any, kw: dict[str, Any], aor: str) -> None:
    r = Rig(impl)
    r.ok(reg(**kw))
    assert r.rows() == {aor.encode(): [binding()]}
    assert list(r.dirty) == [aor]  # type: ignore[arg-type]


def test_without_write_behind_map(impl: Any) -> None:
    r = Rig(impl, dirty=False)
    r.ok(SIPP)
    assert r.row() == [binding()]


def test_offline_store_without_a_mark_for_the_user(impl: Any) -> None:
    r = Rig(impl)
    r.fr.offline = SimpleNamespace(marks=Marks(b"sip:other@example.com"))
    r.ok(SIPP)
    assert r.row() == [binding()]


def test_config_fields_are_read_at_every_call(impl: Any) -> None:
    r = Rig(impl)
    r.declines(reg(ruri="sip:other.org", to_host="other.org"))
    r.config.domains = frozenset({"example.com", "other.org"})
    r.config.max_expires = 1000
    out = r.ok(reg(ruri="sip:other.org", to_host="other.org"))
    assert header(out, b"Contact") == [f"<{CONTACT}>;expires=1000".encode()]


def test_server_must_be_ascii_without_line_breaks(impl: Any) -> None:
    for bad in ("sf\r\nX: y", "s\u00e9rver", "a\nb"):
        with pytest.raises(ValueError):
            Rig(impl, server=bad)


# ------------------------------------------------------------------ declined


def two_bindings(r: Rig) -> None:
    r.table.put(AOR_KEY, marshal.dumps([binding(), binding(contact="sip:u7@10.0.0.2", call_id="x")]))


def one_binding(contact: str = "sip:u7@10.0.0.2", call_id: str = "7-1@127.0.0.1", cseq: int = 5) -> Any:
    def setup(r: Rig) -> None:
        r.table.put(AOR_KEY, marshal.dumps([binding(contact=contact, call_id=call_id, cseq=cseq)]))

    return setup


DECLINED: dict[str, tuple[bytes, Any, Any]] = {
    # name: (datagram, peer, setup)
    "request-uri-not-ours": (reg(ruri="sip:other.org"), PEER, None),
    "request-uri-user-elsewhere": (reg(ruri="sip:u7@other.org"), PEER, None),
    "to-domain-not-ours": (reg(to_host="other.org"), PEER, None),
    "to-domain-subdomain": (reg(to_host="sub.example.com"), PEER, None),
    "to-tel-uri": (reg().replace(b"To: <sip:u7@example.com>", b"To: <tel:+123456>"), PEER, None),
    "two-contacts-one-header": (reg(contact=f"<{CONTACT}>, <sip:u7@10.0.0.2>"), PEER, None),
    "two-contact-headers": (reg(extra="Contact: <sip:u7@10.0.0.2>\r\n"), PEER, None),
    "no-contact": (reg(contact=None), PEER, None),
    "contact-star": (reg(contact="*", extra="Expires: 0\r\n"), PEER, None),
    "contact-star-no-expires": (reg(contact="*"), PEER, None),
    "path": (reg(extra="Path: <sip:edge.example.net;lr>\r\n"), PEER, None),
    "sip-instance": (reg(contact=f'<{CONTACT}>;+sip.instance="<urn:uuid:1>"'), PEER, None),
    "sip-instance-flag": (reg(contact=f"<{CONTACT}>;+sip.instance"), PEER, None),
    "expires-param-below-min": (reg(contact=f"<{CONTACT}>;expires=59"), PEER, None),
    "expires-param-1": (reg(contact=f"<{CONTACT}>;expires=1"), PEER, None),
    "expires-header-below-min": (reg(contact=f"<{CONTACT}>", extra="Expires: 30\r\n"), PEER, None),
    "q-1.5": (reg(contact=f"<{CONTACT}>;q=1.5"), PEER, None),
    "q-0.1234": (reg(contact=f"<{CONTACT}>;q=0.1234"), PEER, None),
    "q-x": (reg(contact=f"<{CONTACT}>;q=x"), PEER, None),
    "q-1.01": (reg(contact=f"<{CONTACT}>;q=1.01"), PEER, None),
    "q-.5": (reg(contact=f"<{CONTACT}>;q=.5"), PEER, None),
    "q-2": (reg(contact=f"<{CONTACT}>;q=2"), PEER, None),
    "q-quoted": (reg(contact=f'<{CONTACT}>;q="0.5"'), PEER, None),
    "to-user-escaped": (reg(user="u%41"), PEER, None),
    "to-user-escaped-lower": (reg(user="%6bx"), PEER, None),
    "to-user-not-ascii": (reg(user="J\u00fcrgen"), PEER, None),  # validate_request: malformed To
    "contact-not-ascii": (reg(contact="<sip:j\u00fcrgen@10.0.0.2>"), PEER, None),
    "aor-too-long": (reg(user="x" * (AOR_MAX - len("sip:@example.com") + 1)), PEER, None),
    "row-too-long": (reg(contact=f"<sip:{'y' * 700}@10.0.0.2>"), PEER, None),
    "aor-has-two-bindings": (reg(), PEER, two_bindings),
    "aor-binding-other-contact": (reg(), PEER, one_binding()),
    "aor-binding-uri-params": (reg(), PEER, one_binding(contact=CONTACT + ";transport=udp")),
    "aor-binding-case-of-host": (reg(), PEER, one_binding(contact="sip:u7@LOCALHOST:5061")),
    "same-call-id-lower-cseq": (reg(cseq=4), PEER, one_binding(contact=CONTACT, cseq=5)),
    "same-call-id-lower-cseq-removal": (
        reg(cseq=4, contact=f"<{CONTACT}>;expires=0"),
        PEER,
        one_binding(contact=CONTACT, cseq=5),
    ),
    "validate-cseq-method": (reg(cseq_method="INVITE"), PEER, None),
    "validate-contact-expires-abc": (reg(contact=f"<{CONTACT}>;expires=abc"), PEER, None),
    "validate-contact-expires-2**32": (reg(contact=f"<{CONTACT}>;expires=4294967296"), PEER, None),
    "validate-expires-header": (reg(extra="Expires: soon\r\n"), PEER, None),
    "validate-require": (reg(extra="Require: foo\r\n"), PEER, None),
    "validate-no-call-id": (reg().replace(b"Call-ID: 7-1@127.0.0.1\r\n", b""), PEER, None),
    "validate-two-cseq": (reg(extra="CSeq: 2 REGISTER\r\n"), PEER, None),
    "validate-no-headers": (b"REGISTER sip:example.com SIP/2.0\r\n\r\n", PEER, None),
    "validate-version": (reg().replace(b" SIP/2.0\r\nVia", b" SIP/3.0\r\nVia", 1), PEER, None),
    "stream-peer-tcp": (reg(), ("127.0.0.1", 5061, "tcp", 3), None),
    "stream-peer-tls": (reg(), ("127.0.0.1", 5061, "tls", 0), None),
    "peer-1-tuple": (reg(), ("127.0.0.1",), None),
}


@pytest.mark.parametrize("name", list(DECLINED))
def test_declined(impl: Any, name: str) -> None:
    data, peer, setup = DECLINED[name]
    r = Rig(impl)
    r.ok(reg(user="bystander", call_id="by"))  # a row and a dirty entry that must stay as they are
    if setup is not None:
        setup(r)
    msg = r.declines(data, peer)
    assert msg.call_id == impl.sipmsg.parse_message(data).call_id


@pytest.mark.parametrize(
    "marks",
    [Marks(AOR_KEY), Marks(b"*"), None, Marks(b"sip:u7@example.com", b"*")],
    ids=["aor", "all", "no-marks", "both"],
)
def test_declined_for_offline_marks(impl: Any, marks: Any) -> None:
    r = Rig(impl)
    r.fr.offline = SimpleNamespace(marks=marks)
    r.declines(SIPP)
    r.fr.offline = None
    r.ok(SIPP)


def test_declined_when_the_table_is_full(impl: Any) -> None:
    r = Rig(impl, table=new_table(slots=8))
    i = 0
    while True:
        out = r(reg(user=f"u{i}", call_id=f"c{i}"))
        if type(out) is not bytes:
            break
        i += 1
        assert i < 100
    assert r.fr.declined == 1 and r.fr.answered == i
    rows, dirty = r.raw(), dict(r.dirty)  # type: ignore[arg-type]
    r.declines(reg(user="late", call_id="late"))
    assert r.raw() == rows and r.dirty == dirty
    # an AOR already there is still refreshed
    r.ok(reg(user="u0", call_id="c0", cseq=2))


def test_declined_then_answered_counts(impl: Any) -> None:
    r = Rig(impl)
    r.declines(reg(contact=f"<{CONTACT}>;expires=30"))
    r.ok(reg(cseq=2))
    r.declines(reg(cseq=1))  # out of order now
    assert (r.fr.answered, r.fr.declined) == (1, 2)


# ------------------------------------------------------------------ not taken


@pytest.mark.parametrize(
    "data",
    [
        SIPP.replace(b"REGISTER sip", b"INVITE sip", 1).replace(b"1 REGISTER", b"1 INVITE"),
        SIPP.replace(b"REGISTER sip", b"MESSAGE sip", 1).replace(b"1 REGISTER", b"1 MESSAGE"),
        SIPP.replace(b"REGISTER sip", b"OPTIONS sip", 1),
        SIPP.replace(b"REGISTER sip", b"register sip", 1),
        SIPP.replace(b"REGISTER sip", b"REGISTERsip", 1),
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\n\r\n",
        b"",
        b"REGISTER",
        b"REGISTER ",
        b"REGISTER \x00\xff\r\n\r\n",
        b"REGISTER sip:example.com\r\n\r\n",
        b"REGISTER sip:example.com SIP/2.0\r\nVia SIP/2.0/UDP x\r\n\r\n",
        SIPP[:40],
    ],
    ids=[
        "invite",
        "message",
        "options",
        "lower-case",
        "no-space",
        "response",
        "empty",
        "register",
        "register-space",
        "garbage",
        "no-version",
        "bad-header",
        "cut",
    ],  # fmt: skip
)
def test_none(impl: Any, data: bytes) -> None:
    r = Rig(impl)
    r.ok(reg(user="bystander"))
    rows, dirty = r.raw(), dict(r.dirty)  # type: ignore[arg-type]
    assert r(data) is None
    assert r.raw() == rows and r.dirty == dirty
    assert (r.fr.answered, r.fr.declined) == (1, 0)


# ------------------------------------------------------------------ the general path


def make_core(impl: Any, fast: bool, slots: int = 64) -> tuple[SipCore, ShmLocation]:
    loc = ShmLocation(new_table(slots))
    c = SipCore(CoreConfig(domains=frozenset({"example.com"})), loc, ME, tl=TransactionLayer())
    # the To tags of the core's other answers (validate_request's 400/420) come from a
    # random prefix and a counter: the same prefix in both cores, so those compare too
    c._tag_prefix = "tp."
    if fast:
        assert c.enable_fast_register(KEY)
        # the twin under test, built as enable_fast_register builds the active one
        c.fast = impl.fastreg.FastRegistrar(
            c.registrar.config, loc.table, server=c.config.server_header, supported=SUPPORTED,
            tag_key=KEY, dirty=loc.dirty_map(),
        )  # fmt: skip
        c.fast.offline = c._fast_offline()
        if impl.name != ACTIVE:
            c.fast = OtherCodec(c.fast, active_codec.parse_message, "register")
    else:
        c.tag_key = KEY
    return c, loc


_DATE = re.compile(rb"\r\nDate: [^\r\n]*\r\n")


def normalized(out: list[tuple[bytes, Any]]) -> list[tuple[bytes, Any]]:
    return [(_DATE.sub(b"\r\nDate: -\r\n", d), p) for d, p in out]


def decoded(dirty: dict[str, bytes]) -> dict[str, Any]:
    return {k: marshal.loads(v) if v else b"" for k, v in dirty.items()}


def n(branch: str, **kw: Any) -> bytes:
    return reg(branch=f"z9hG4bK{branch}", **kw)


A2 = "sip:u7@10.0.0.2:5062"
# (now, datagram, peer): each scenario is fed to both cores in order.
SCENARIOS: dict[str, tuple[list[tuple[float, bytes, tuple[Any, ...]]], int]] = {
    # name: (steps, how many of them the fast path answers)
    "new-refresh-retransmit-remove": (
        [
            (100.0, n("1", cseq=1), PEER),
            (100.0, n("1", cseq=1), PEER),  # the datagram again, at once
            (200.0, n("2", cseq=2, contact=f"<{CONTACT}>;expires=600"), PEER),
            (
                300.0,
                n("2b", cseq=2, contact=f"<{CONTACT}>;expires=600"),
                PEER,
            ),  # the request again, new branch
            (400.0, n("3", cseq=3, contact=f"<{CONTACT}>", call_id="new"), ("10.1.1.2", 7001, 1)),
            (500.0, n("4", cseq=4, contact=f"<{CONTACT}>;expires=0", call_id="new"), PEER),
            (600.0, n("5", cseq=5, contact=f"<{CONTACT}>;expires=0", call_id="new"), PEER),
        ],
        7,
    ),
    "retransmission-after-timer-j": (
        [
            (100.0, n("1", cseq=1), PEER),
            (200.0, n("1", cseq=1), PEER),  # the server transaction is gone by now: answered again
        ],
        2,
    ),
    "423-then-200": (
        [
            (100.0, n("1", contact=f"<{CONTACT}>;expires=30"), PEER),
            (100.0, n("1", contact=f"<{CONTACT}>;expires=30"), PEER),
            (100.5, n("2", cseq=2, contact=f"<{CONTACT}>;expires=60"), PEER),
            (101.0, n("3", cseq=3, contact=f"<{CONTACT}>", extra="Expires: 10\r\n"), PEER),
        ],
        1,
    ),
    "500-out-of-order": (
        [
            (100.0, n("1", cseq=5), PEER),
            (101.0, n("2", cseq=4), PEER),
            (102.0, n("3", cseq=4, contact=f"<{CONTACT}>;expires=0"), PEER),
            (103.0, n("4", cseq=4, call_id="other"), PEER),  # another Call-ID: any CSeq
            (104.0, n("5", cseq=6, call_id="other", contact="*", extra="Expires: 0\r\n"), PEER),
        ],
        2,
    ),
    "second-contact-then-back-to-one": (
        [
            (100.0, n("1", cseq=1), PEER),
            (110.0, n("2", cseq=2, contact=f"<{A2}>;expires=120;q=0.7"), PEER),  # two bindings: general path
            (120.0, n("3", cseq=3), PEER),  # two bindings: general path
            (130.0, n("4", cseq=4, contact=f"<{A2}>;expires=0"), PEER),
            (140.0, n("5", cseq=5), PEER),  # one binding, the same Contact: fast again
            (250.0, n("6", cseq=6, contact=f"<{A2}>;expires=60"), PEER),
            (320.0, n("7", cseq=7, contact=f"<{A2}>;expires=60"), PEER),
            (3000.0, n("8", cseq=8, contact=f"<{A2}>;expires=60"), PEER),  # two live: general path
            (5000.0, n("9", cseq=9, contact=f"<{A2}>;expires=60"), PEER),  # both expired: fast
        ],
        3,
    ),
    "equivalent-contact-through-the-general-path": (
        [
            (100.0, n("1", contact="<sip:u7@LocalHost:5061>"), PEER),
            (100.0, n("2", cseq=2, contact="<sip:u7@localhost:5061>;expires=900"), PEER),
            (100.0, n("3", cseq=3, contact="<sip:u7@localhost:5061>;expires=900"), PEER),
        ],
        2,
    ),
    "expired-binding-replaced": (
        [
            (100.0, n("1", contact="<sip:old@10.0.0.1>;expires=60"), PEER),
            (160.0, n("2", cseq=2), PEER),
            (4000.0, n("3", cseq=3, contact=f"<{CONTACT}>;expires=0"), PEER),
            (4000.0, n("4", cseq=4, contact="<sip:old@10.0.0.1>;expires=60"), PEER),
            (4060.0, n("5", cseq=5, contact=None), PEER),  # a query: general path, nothing live
        ],
        4,
    ),
    "declined-kinds": (
        [
            (100.0, n("1", extra="Path: <sip:edge.example.net;lr>\r\n"), PEER),
            (101.0, n("2", cseq=2), PEER),
            (102.0, n("3", cseq=3, contact=f'<{CONTACT}>;+sip.instance="<urn:uuid:1>"'), PEER),
            (103.0, n("4", cseq=4, contact=f"<{CONTACT}>;q=1.5"), PEER),
            (104.0, n("5", cseq=5, contact=f"<{CONTACT}>;q=0.5;expires=0"), PEER),
            (105.0, n("6", cseq=6, contact=None), PEER),
            (106.0, n("7", cseq=7, user="u%37"), PEER),
            (107.0, n("8", cseq=8, cseq_method="INVITE"), PEER),
            (108.0, n("9", cseq=9, contact=f"<{CONTACT}>;q=0.25"), PEER),
            (109.0, n("10", cseq=10, contact=f"<{CONTACT}>, <{A2}>"), PEER),
            (109.5, n("10b", cseq=11, contact=f"<{A2}>;expires=0"), PEER),
            (110.0, n("11", cseq=11, user="U7"), PEER),
            (111.0, n("12", cseq=12, to_host="EXAMPLE.com", ruri="sip:Example.COM"), PEER),
            (112.0, n("13", cseq=13, contact=f"<sip:{'y' * 700}@10.0.0.2>"), PEER),  # 503
            (113.0, n("14", cseq=14, extra="Require: foo\r\n"), PEER),  # 420
            (114.0, n("15", cseq=15, rport=False), ("10.9.9.9", 1)),
            (115.0, n("16", cseq=16, to_tag="abc"), PEER),
            (116.0, n("17", cseq=17, from_tag=None), PEER),
            (117.0, n("18", cseq=18), ("", 7000)),
            (118.0, reg(branch="z9hG4bK19", cseq=19).replace(b";rport\r\n", b";rport=x\r\n"), PEER),
            (119.0, n("20", cseq=20, user=None), PEER),
            (120.0, n("21", cseq=21, to_scheme="sips"), PEER),
            (121.0, n("22", cseq=22, contact=f"<{CONTACT}>;expires=4294967295;q=1"), PEER),
            (122.0, n("23", cseq=23, user="x" * 200), PEER),  # an AOR longer than the key: 503
        ],
        13,
    ),
    "stream-peer-and-defaults": (
        [
            (100.0, n("1", contact=f"<{CONTACT}>"), ("127.0.0.1", 5061, "tcp", 7)),
            (100.0, n("2", contact=f"<{CONTACT}>", cseq=2), PEER),
            (
                130.0,
                n("3", contact=f"<{CONTACT}>", cseq=3, extra="Expires: 120\r\n"),
                ("10.1.1.1", 7000, "c"),
            ),
        ],
        2,
    ),
    "fractional-now": (
        [
            (100.25, n("1", contact=f"<{CONTACT}>;expires=61"), PEER),
            (100.75, n("2", cseq=2, contact=f"<{CONTACT}>;expires=60"), PEER),
            (130.5, n("2b", cseq=2, contact=f"<{CONTACT}>;expires=60"), PEER),  # the request again
            (160.74, n("3", cseq=2, contact=f"<{CONTACT}>;expires=60"), PEER),
            (160.75, n("4", cseq=2, contact=f"<{CONTACT}>;expires=60"), PEER),  # expired right now
        ],
        5,
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_fast_path_answers_as_the_general_path(impl: Any, name: str) -> None:
    steps, fast_answers = SCENARIOS[name]
    fast, floc = make_core(impl, True)
    slow, sloc = make_core(impl, False)
    aors: set[str] = set()
    for i, (now, data, peer) in enumerate(steps):
        for c in (fast, slow):
            c.handle_timer(now)
            c.on_message(data, peer, reliable=len(peer) == 4, now=now)
        got, want = normalized(fast.outgoing()), normalized(slow.outgoing())
        assert got == want, (i, got, want)
        assert len(want) == 1, (i, want)  # every step gets its answer
        fd, sd = floc.take_dirty(), sloc.take_dirty()
        if any(d == data and now - t < 32.0 for t, d, _ in steps[:i]):
            # the datagram again within Timer J: the general path's server transaction sends
            # its 200 again; the stateless fast path applies the request again, which leaves
            # the binding as it is, and marks it for the write-behind with the same row
            assert sd == {}, i
            for aor, v in fd.items():
                assert decoded({aor: v}) == decoded({aor: sloc.table.get(aor.encode()) or b""}), i
        else:
            assert decoded(fd) == decoded(sd), i
        aors |= set(sd)
        for aor in aors:
            assert floc.get(aor, now) == sloc.get(aor, now), (i, aor)
        assert decoded(floc.take_dirty()) == decoded(sloc.take_dirty()), i
    assert fast.fast.answered == fast_answers
    assert fast.fast.answered + fast.fast.declined == sum(1 for _, _, p in steps if len(p) != 4)


def test_enable_fast_register_needs_a_shared_table_and_no_auth() -> None:
    from simplefast.proxy.location import MemoryLocation

    c = SipCore(CoreConfig(domains=frozenset({"example.com"})), MemoryLocation(), ME, tl=TransactionLayer())
    assert c.enable_fast_register(KEY) is False and c.fast is None
    assert c.tag_key == KEY
    c, _ = make_core(load_impl("ext"), False)
    assert c.enable_fast_register(KEY) is True and c.fast is not None


def test_the_core_takes_the_fast_path_for_datagrams_only() -> None:
    c, loc = make_core(load_impl("ext"), True)
    c.on_message(SIPP, PEER, reliable=True, now=100.0)  # a stream's message: the general path
    assert c.fast.answered == 0 and c.fast.declined == 0
    assert len(c.outgoing()) == 1
    c.on_message(reg(branch="z9hG4bK2", cseq=2), PEER, reliable=False, now=100.0, hops=1)
    assert c.fast.answered == 0 and len(c.outgoing()) == 1
    c.on_message(reg(branch="z9hG4bK3", cseq=3), PEER, reliable=False, now=100.0)
    assert c.fast.answered == 1 and len(c.outgoing()) == 1
    assert [b.cseq for b in loc.get(AOR, 100.0)] == [3]


@pytest.mark.parametrize("fast", [True, False], ids=["fast-enabled", "general-only"])
def test_an_aor_too_long_for_the_table_gets_503(fast: bool) -> None:
    """The fast path declines it; the general path answers 503 (location.get finds nothing,
    location.put refuses the key), and nothing is written."""
    c, loc = make_core(load_impl("ext"), fast)
    c.on_message(reg(user="x" * 200), PEER, reliable=False, now=100.0)
    ((resp, _peer),) = c.outgoing()
    assert resp.startswith(b"SIP/2.0 503 Service Unavailable\r\n")
    assert c.fast is None or (c.fast.answered, c.fast.declined) == (0, 1)
    assert loc.take_dirty() == {} and len(loc.table) == 0
