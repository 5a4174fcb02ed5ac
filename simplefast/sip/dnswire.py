"""DNS messages on the wire (RFC 1035), sans-IO: build a query, parse a reply.

Theory of operation
-------------------
The stub client in ``simplefast/transport/dns.py`` asks a recursive resolver
(RD=1) one question per message and needs five record types: A, AAAA (RFC
3596), CNAME, SRV (RFC 2782) and NAPTR (RFC 3403); SOA is read too, for the
negative-caching TTL of RFC 2308. Everything else is skipped, its length
still checked.

    data = build_query("_sip._udp.example.com", SRV, qid)      # qid: the caller's random 16 bits
    msg = parse_message(reply)                                  # raises DnsFormatError only
    if response_matches(msg, qid, "_sip._udp.example.com", SRV):
        ans = extract_answer(msg, "_sip._udp.example.com", SRV) # follows the CNAME chain

Input is hostile (anyone can send a datagram to our source port), so the
parser checks every length against the buffer and every name bound: a label
is at most 63 bytes, a name at most 255 (RFC 1035 section 2.3.4), and a
compression pointer (section 4.1.4) must point before the place where the
current run of labels began and at most ``MAX_POINTER_HOPS`` of them are
followed, so a name cannot loop. Any malformed input raises
:class:`DnsFormatError` and nothing else.

Names are text without the trailing dot, lower-cased (DNS compares them
case-insensitively, RFC 4343); the root is ``"."``. A label byte that is not
printable ASCII, a dot or a backslash inside a label is written ``\\DDD``
(RFC 1035 section 5.1), which :func:`encode_name` reads back.

A reply with TC set (section 4.1.1) is parsed up to its question only: the
caller repeats the query over TCP (RFC 7766) and ignores the partial data.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import ClassVar, Final, Literal

# RFC 1035 section 3.2.2, RFC 3596, RFC 2782, RFC 3403, RFC 6891
A: Final = 1
NS: Final = 2
CNAME: Final = 5
SOA: Final = 6
AAAA: Final = 28
SRV: Final = 33
NAPTR: Final = 35
OPT: Final = 41
CLASS_IN: Final = 1
TYPE_NAMES: Final = {A: "A", NS: "NS", CNAME: "CNAME", SOA: "SOA", AAAA: "AAAA", SRV: "SRV", NAPTR: "NAPTR"}

# RFC 1035 section 4.1.1 RCODE
NOERROR: Final = 0
FORMERR: Final = 1
SERVFAIL: Final = 2
NXDOMAIN: Final = 3
NOTIMP: Final = 4
REFUSED: Final = 5

MAX_POINTER_HOPS: Final = 32
MAX_CNAME_CHAIN: Final = 16
_HEADER = struct.Struct("!HHHHHH")
_U16 = struct.Struct("!H")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength


class DnsFormatError(ValueError):
    """A DNS message that does not follow RFC 1035 (or one past a bound)."""


# ---------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class ARecord:
    rtype: ClassVar[int] = A
    name: str
    ttl: int
    address: str


@dataclass(frozen=True, slots=True)
class AAAARecord:
    rtype: ClassVar[int] = AAAA
    name: str
    ttl: int
    address: str  # compressed text form, no brackets


@dataclass(frozen=True, slots=True)
class CNAMERecord:
    rtype: ClassVar[int] = CNAME
    name: str
    ttl: int
    target: str


@dataclass(frozen=True, slots=True)
class SRVRecord:
    """RFC 2782; ``target == "."`` means the service is decidedly not offered."""

    rtype: ClassVar[int] = SRV
    name: str
    ttl: int
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class NAPTRRecord:
    """RFC 3403 section 4.1; flags, services and regexp as Latin-1 text."""

    rtype: ClassVar[int] = NAPTR
    name: str
    ttl: int
    order: int
    preference: int
    flags: str
    services: str
    regexp: str
    replacement: str


@dataclass(frozen=True, slots=True)
class SOARecord:
    rtype: ClassVar[int] = SOA
    name: str
    ttl: int
    mname: str
    rname: str
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int


Record = ARecord | AAAARecord | CNAMERecord | SRVRecord | NAPTRRecord | SOARecord


@dataclass(frozen=True, slots=True)
class Question:
    name: str
    qtype: int
    qclass: int = CLASS_IN


@dataclass(frozen=True, slots=True)
class Message:
    """A parsed message. Sections hold only the record types above, class IN."""

    id: int
    is_response: bool
    opcode: int
    authoritative: bool
    truncated: bool
    recursion_desired: bool
    recursion_available: bool
    rcode: int
    questions: tuple[Question, ...]
    answers: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()


Status = Literal["ok", "nodata", "nxdomain", "error", "timeout"]


@dataclass(frozen=True, slots=True)
class Answer:
    """The outcome of one question, as the resolver and the cache use it.

    ``status``: ``ok`` (``records`` holds the RRset), ``nodata`` (the name
    exists, no record of that type), ``nxdomain``, ``error`` (SERVFAIL,
    REFUSED, ... from every server) or ``timeout`` (no server answered).
    ``ttl``: seconds the answer may be cached: the smallest TTL of the RRset
    and the CNAME chain leading to it, or for a negative answer the RFC 2308
    section 5 value min(SOA TTL, SOA MINIMUM); None when the reply gave none.
    ``canonical``: the name at the end of the CNAME chain (``name`` if none).
    """

    name: str
    qtype: int
    status: Status
    records: tuple[Record, ...] = ()
    ttl: int | None = None
    canonical: str = ""

    @property
    def usable(self) -> bool:
        """True unless the lookup failed (a definite "no" is usable)."""
        return self.status in ("ok", "nodata", "nxdomain")

    @property
    def dangling(self) -> bool:
        """A CNAME chain that stops before the data and without an SOA: a resolver
        that did not chase the chain; the client may ask again for ``canonical``."""
        return self.status == "nodata" and self.ttl is None and self.canonical != self.name


# ---------------------------------------------------------------- names


def _label_text(label: bytes) -> str:
    if all(0x21 <= c <= 0x7E and c not in (0x2E, 0x5C) for c in label):
        return label.decode("ascii")
    out = []
    for c in label:
        if 0x21 <= c <= 0x7E and c not in (0x2E, 0x5C):
            out.append(chr(c))
        else:
            out.append(f"\\{c:03d}")
    return "".join(out)


def _read_name(buf: bytes, off: int, end: int) -> tuple[str, int]:
    """Reads a possibly compressed name at ``off``; its own labels must lie
    before ``end``. Returns the name and the offset just past it."""
    labels: list[str] = []
    wire_len = 1  # the root label
    pos = off
    run_start = off
    limit = end
    after = -1
    hops = 0
    while True:
        if pos >= limit:
            raise DnsFormatError(f"name at offset {off} runs past the end of its field ({limit})")
        n = buf[pos]
        kind = n & 0xC0
        if n == 0:
            if after < 0:
                after = pos + 1
            break
        if kind == 0xC0:
            if pos + 1 >= limit:
                raise DnsFormatError(f"compression pointer at offset {pos} is cut short")
            ptr = ((n & 0x3F) << 8) | buf[pos + 1]
            if after < 0:
                after = pos + 2
            hops += 1
            if hops > MAX_POINTER_HOPS:
                raise DnsFormatError(f"name at offset {off} follows more than {MAX_POINTER_HOPS} pointers")
            # RFC 1035 section 4.1.4 points at a prior occurrence: strictly before
            # this run of labels, so every jump goes backwards and none can loop.
            if ptr < _HEADER.size or ptr >= run_start:
                raise DnsFormatError(f"compression pointer at offset {pos} to {ptr} does not point back")
            pos = run_start = ptr
            limit = len(buf)
            continue
        if kind != 0:
            raise DnsFormatError(f"unsupported label type 0x{kind:02x} at offset {pos}")
        if pos + 1 + n > limit:
            raise DnsFormatError(f"label at offset {pos} ({n} bytes) runs past the end of its field")
        wire_len += n + 1
        if wire_len > 255:
            raise DnsFormatError(f"name at offset {off} is longer than 255 bytes")
        labels.append(_label_text(buf[pos + 1 : pos + 1 + n].lower()))
        pos += n + 1
    return (".".join(labels) if labels else "."), after


def encode_name(name: str) -> bytes:
    """The uncompressed wire form of ``name`` (a trailing dot is optional;
    ``\\DDD`` and ``\\X`` escapes are read as in RFC 1035 section 5.1).

    Raises:
        ValueError: an empty label, a label over 63 bytes, a name over 255
            bytes, a bad escape or a character outside printable ASCII.
    """
    if name == ".":
        return b"\x00"
    out = bytearray()
    label = bytearray()
    i, n = 0, len(name)
    while i < n:
        ch = name[i]
        if ch == ".":
            if not label:
                raise ValueError(f"empty label in DNS name {name!r}")
            if len(label) > 63:
                raise ValueError(f"label longer than 63 bytes in DNS name {name!r}")
            out.append(len(label))
            out += label
            label.clear()
            i += 1
            continue
        if ch == "\\":
            digits = name[i + 1 : i + 4]
            if len(digits) == 3 and all(d in "0123456789" for d in digits) and int(digits) <= 255:
                label.append(int(digits))
                i += 4
                continue
            if i + 1 < n and 0x21 <= ord(name[i + 1]) <= 0x7E and name[i + 1] not in "0123456789":
                label.append(ord(name[i + 1]))
                i += 2
                continue
            raise ValueError(f"bad escape in DNS name {name!r}")
        c = ord(ch)
        if not 0x21 <= c <= 0x7E:
            raise ValueError(f"character {ch!r} not allowed in DNS name {name!r}")
        label.append(c)
        i += 1
    if label:
        if len(label) > 63:
            raise ValueError(f"label longer than 63 bytes in DNS name {name!r}")
        out.append(len(label))
        out += label
    elif not out:
        raise ValueError("empty DNS name")
    out.append(0)
    if len(out) > 255:
        raise ValueError(f"DNS name longer than 255 bytes: {name[:40]!r}...")
    return bytes(out)


def normalize_name(name: str) -> str:
    """The form names take in parsed messages: lower case, no trailing dot."""
    if name == ".":
        return name
    if name.endswith(".") and not name.endswith("\\."):
        name = name[:-1]
    return name.lower()


# ---------------------------------------------------------------- query


def build_query(name: str, qtype: int, qid: int, *, edns_payload: int | None = None) -> bytes:
    """A standard query (opcode 0) with RD=1 and one question of class IN.

    Args:
        name: the domain name to ask for.
        qtype: the record type (A, AAAA, SRV, NAPTR, ...).
        qid: the message id, 0..65535; the caller draws it at random (RFC 5452).
        edns_payload: when set, an OPT record (RFC 6891) advertising this UDP
            payload size, so larger replies come without truncation.

    Raises:
        ValueError: a bad name (see :func:`encode_name`), id or type.
    """
    if not 0 <= qid <= 0xFFFF or not 0 <= qtype <= 0xFFFF:
        raise ValueError(f"query id {qid} or type {qtype} out of range")
    arcount = 0 if edns_payload is None else 1
    parts = [
        _HEADER.pack(qid, 0x0100, 1, 0, 0, arcount),
        encode_name(name),
        struct.pack("!HH", qtype, CLASS_IN),
    ]
    if edns_payload is not None:
        if not 512 <= edns_payload <= 0xFFFF:
            raise ValueError(f"EDNS payload size {edns_payload} out of range")
        parts.append(b"\x00" + _RR_FIXED.pack(OPT, edns_payload, 0, 0))
    return b"".join(parts)


# ---------------------------------------------------------------- parsing


def _read_charstring(buf: bytes, pos: int, end: int) -> tuple[str, int]:
    if pos >= end:
        raise DnsFormatError(f"character-string at offset {pos} runs past its record")
    n = buf[pos]
    if pos + 1 + n > end:
        raise DnsFormatError(f"character-string at offset {pos} ({n} bytes) runs past its record")
    return buf[pos + 1 : pos + 1 + n].decode("latin-1"), pos + 1 + n


def _read_rdata(buf: bytes, rtype: int, name: str, ttl: int, pos: int, end: int) -> Record | None:
    rdlen = end - pos
    rec: Record
    if rtype == A:
        if rdlen != 4:
            raise DnsFormatError(f"A record of {rdlen} bytes at offset {pos}")
        rec = ARecord(name, ttl, str(ipaddress.IPv4Address(buf[pos:end])))
        return rec
    if rtype == AAAA:
        if rdlen != 16:
            raise DnsFormatError(f"AAAA record of {rdlen} bytes at offset {pos}")
        return AAAARecord(name, ttl, str(ipaddress.IPv6Address(buf[pos:end])))
    if rtype == CNAME:
        target, p = _read_name(buf, pos, end)
        rec = CNAMERecord(name, ttl, target)
    elif rtype == SRV:
        if rdlen < 7:
            raise DnsFormatError(f"SRV record of {rdlen} bytes at offset {pos}")
        prio, weight, port = struct.unpack_from("!HHH", buf, pos)
        target, p = _read_name(buf, pos + 6, end)
        rec = SRVRecord(name, ttl, prio, weight, port, target)
    elif rtype == NAPTR:
        if rdlen < 8:
            raise DnsFormatError(f"NAPTR record of {rdlen} bytes at offset {pos}")
        order, pref = struct.unpack_from("!HH", buf, pos)
        flags, p = _read_charstring(buf, pos + 4, end)
        services, p = _read_charstring(buf, p, end)
        regexp, p = _read_charstring(buf, p, end)
        replacement, p = _read_name(buf, p, end)
        rec = NAPTRRecord(name, ttl, order, pref, flags, services, regexp, replacement)
    elif rtype == SOA:
        mname, p = _read_name(buf, pos, end)
        rname, p = _read_name(buf, p, end)
        if end - p != 20:
            raise DnsFormatError(f"SOA record at offset {pos} has {end - p} bytes of counters, not 20")
        serial, refresh, retry, expire, minimum = struct.unpack_from("!IIIII", buf, p)
        return SOARecord(name, ttl, mname, rname, serial, refresh, retry, expire, minimum)
    else:
        return None  # a type we do not use; its length was checked by the caller
    if p != end:
        raise DnsFormatError(f"{TYPE_NAMES[rtype]} record at offset {pos} has {end - p} trailing bytes")
    return rec


def _read_section(buf: bytes, pos: int, count: int, out: list[Record]) -> int:
    n = len(buf)
    for _ in range(count):
        name, pos = _read_name(buf, pos, n)
        if pos + _RR_FIXED.size > n:
            raise DnsFormatError(f"resource record at offset {pos} is cut short")
        rtype, rclass, ttl, rdlen = _RR_FIXED.unpack_from(buf, pos)
        pos += _RR_FIXED.size
        end = pos + rdlen
        if end > n:
            raise DnsFormatError(f"RDATA at offset {pos} ({rdlen} bytes) runs past the message ({n})")
        if ttl & 0x80000000:
            ttl = 0  # RFC 2181 section 8: a TTL with the top bit set is read as zero
        if rclass == CLASS_IN:
            rec = _read_rdata(buf, rtype, name, ttl, pos, end)
            if rec is not None:
                out.append(rec)
        pos = end
    return pos


def parse_message(data: bytes | bytearray | memoryview) -> Message:
    """Parses a DNS message (query or reply).

    A reply with TC set is parsed up to its questions; its records are left out.

    Raises:
        DnsFormatError: anything malformed: short header, a name, label,
            pointer or RDATA out of bounds, a record whose RDATA does not
            match its type.
    """
    buf = bytes(data)
    if len(buf) < _HEADER.size:
        raise DnsFormatError(f"DNS message of {len(buf)} bytes is shorter than its header")
    qid, flags, qd, an, ns, ar = _HEADER.unpack_from(buf, 0)
    truncated = bool(flags & 0x0200)
    pos = _HEADER.size
    questions = []
    for _ in range(qd):
        qname, pos = _read_name(buf, pos, len(buf))
        if pos + 4 > len(buf):
            raise DnsFormatError(f"question at offset {pos} is cut short")
        qtype, qclass = struct.unpack_from("!HH", buf, pos)
        pos += 4
        questions.append(Question(qname, qtype, qclass))
    answers: list[Record] = []
    authority: list[Record] = []
    additional: list[Record] = []
    if not truncated:
        pos = _read_section(buf, pos, an, answers)
        pos = _read_section(buf, pos, ns, authority)
        _read_section(buf, pos, ar, additional)
    return Message(
        id=qid,
        is_response=bool(flags & 0x8000),
        opcode=(flags >> 11) & 0xF,
        authoritative=bool(flags & 0x0400),
        truncated=truncated,
        recursion_desired=bool(flags & 0x0100),
        recursion_available=bool(flags & 0x0080),
        rcode=flags & 0xF,
        questions=tuple(questions),
        answers=tuple(answers),
        authority=tuple(authority),
        additional=tuple(additional),
    )


def parse_response(data: bytes | bytearray | memoryview) -> Message:
    """:func:`parse_message` for a reply: QR must be set.

    Raises:
        DnsFormatError: malformed, or not a reply.
    """
    msg = parse_message(data)
    if not msg.is_response:
        raise DnsFormatError("DNS message is a query, not a reply")
    return msg


def response_matches(msg: Message, qid: int, name: str, qtype: int) -> bool:
    """True when ``msg`` is the reply to our query: same id, a reply to a
    standard query, and the same single question (RFC 5452 section 9.1).
    A reply without a question matches on the id alone if it carries nothing
    to believe: an error rcode (some servers send FORMERR or REFUSED that way)
    or the TC bit (which only makes us ask again over TCP)."""
    if msg.id != qid or not msg.is_response or msg.opcode != 0:
        return False
    if not msg.questions:
        return msg.truncated or msg.rcode in (FORMERR, SERVFAIL, NOTIMP, REFUSED)
    if len(msg.questions) != 1:
        return False
    q = msg.questions[0]
    return q.name == normalize_name(name) and q.qtype == qtype and q.qclass == CLASS_IN


def _negative_ttl(msg: Message) -> int | None:
    for rec in msg.authority:
        if isinstance(rec, SOARecord):
            return min(rec.ttl, rec.minimum)  # RFC 2308 section 5
    return None


def extract_answer(msg: Message, name: str, qtype: int) -> Answer:
    """The answer to ``(name, qtype)`` in a matching reply: the RRset at the end
    of the CNAME chain in the answer section (at most ``MAX_CNAME_CHAIN`` links;
    a longer or looping chain counts as an error)."""
    name = normalize_name(name)
    if msg.rcode not in (NOERROR, NXDOMAIN) or msg.truncated:
        return Answer(name, qtype, "error", canonical=name)
    current = name
    ttl: int | None = None
    if qtype != CNAME:
        cnames = {r.name: r for r in msg.answers if isinstance(r, CNAMERecord)}
        for _ in range(MAX_CNAME_CHAIN + 1):
            link = cnames.get(current)
            if link is None:
                break
            current = link.target
            ttl = link.ttl if ttl is None else min(ttl, link.ttl)
        else:
            return Answer(name, qtype, "error", canonical=current)
    if msg.rcode == NXDOMAIN:
        return Answer(name, qtype, "nxdomain", ttl=_negative_ttl(msg), canonical=current)
    records = tuple(r for r in msg.answers if r.rtype == qtype and r.name == current)
    if not records:
        return Answer(name, qtype, "nodata", ttl=_negative_ttl(msg), canonical=current)
    low = min(r.ttl for r in records)
    return Answer(name, qtype, "ok", records, low if ttl is None else min(ttl, low), current)
