"""SIP message codec, pure-Python reference twin of ``simplefast._ext.sipmsg``.

This module is the readable specification: the Cython module must give the
same results and raise the same errors (type, status_hint, message) for every
input. The contract and the semantics are documented in
``simplefast/_ext/sipmsg.pyi``.

Theory of operation
-------------------
``parse_message`` frames one message in a buffer:

1. skip CR/LF octets before the start line (RFC 3261 section 7.5);
2. parse the start line (Request-Line or Status-Line, section 7.1/7.2) strictly:
   single SPs, a scheme on the Request-URI, ``SIP/x.y``, a three-digit code;
3. walk header lines: a line starting with SP/HT continues the previous
   header (folding, section 7.3.1); every other line is ``token *WSP ":"
   value``; an empty line ends the header section. Each header is recorded
   as offsets (name start/end, value start/end, folded flag) plus a canonical
   name (lower-case, compact forms expanded);
4. Content-Length (section 18.3 and 20.14) frames the body; in a datagram
   the body is the rest of the datagram when it is absent.

Nothing else is interpreted at parse time. Accessors decode values on demand
and parse their structure (Via, name-addr, CSeq, ...) with the small
recursive-descent helpers below, raising ``SipParseError`` for bad syntax.
``SipStreamParser`` finds the end of the header block (resuming its search
where it stopped), then frames with the same code.

Writers (``build_response``, ``forward_request``, ``strip_top_via``) copy
header lines as octets (name start to value end, folding included) and never
re-encode them. Stamping the top Via with the packet's source (RFC 3261
section 18.2.1, RFC 3581 section 4) is a splice: the first element is parsed
to offsets (``_scan_via``), at most two edits are computed in those offsets
(``rport=<port>`` into an empty rport, ``received=<ip>`` appended or put in
place of an existing value) and mapped back to the buffer, through the line
starts when the header was folded (``_value_lines``); all other octets stay.
"""

from __future__ import annotations

import typing

from simplefast import _sipshared as _shared
from simplefast._sip_types import NameAddr, SipURI, Via
from simplefast.errors import SipParseError

if typing.TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from simplefast._sip_types import Params

DEFAULT_MAX_HEADER_BYTES = 16384
DEFAULT_MAX_HEADERS = 256
DEFAULT_MAX_BODY_BYTES = 1 << 20

_SP = 0x20
_HT = 0x09
_CR = 0x0D
_LF = 0x0A
_WSP = b" \t"

_TOKEN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
_DIGITS = frozenset(b"0123456789")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ALPHA = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_SCHEME = _ALPHA | _DIGITS | frozenset(b"+-.")
_ALNUM = _ALPHA | _DIGITS
_UNRESERVED = _ALNUM | frozenset(b"-_.!~*'()")
# RFC 3261 section 25.1 character classes of the SIP-URI grammar (% handled apart)
_USER_CH = _UNRESERVED | frozenset(b"&=+$,;?/")
_PASS_CH = _UNRESERVED | frozenset(b"&=+$,")
_PARAM_CH = _UNRESERVED | frozenset(b"[]/:&+$")
_HDR_CH = _UNRESERVED | frozenset(b"[]/?:+$")
_HOST_CH = _ALNUM | frozenset(b"-.")
_IPV6_CH = _HEX | frozenset(b":.")
# characters a generic parameter value may hold besides a quoted string:
# token / host (IPv6 references included)
_GENVAL_CH = _TOKEN | frozenset(b":[]")

# Compact forms (RFC 3261 section 7.3.3 and the IANA SIP header registry).
_COMPACT = {
    b"a": b"accept-contact",
    b"b": b"referred-by",
    b"c": b"content-type",
    b"d": b"request-disposition",
    b"e": b"content-encoding",
    b"f": b"from",
    b"i": b"call-id",
    b"j": b"reject-contact",
    b"k": b"supported",
    b"l": b"content-length",
    b"m": b"contact",
    b"n": b"identity-info",
    b"o": b"event",
    b"r": b"refer-to",
    b"s": b"subject",
    b"t": b"to",
    b"u": b"allow-events",
    b"v": b"via",
    b"x": b"session-expires",
    b"y": b"identity",
}

# Headers whose grammar is a comma-separated list (RFC 3261 section 7.3.1):
# get_all splits them. Everything else, notably WWW-Authenticate,
# Authorization, Proxy-Authenticate, Proxy-Authorization and Date (which
# contain commas), and unknown headers, is returned line by line.
_LIST_HEADERS = frozenset(
    [
        b"accept",
        b"accept-contact",
        b"accept-encoding",
        b"accept-language",
        b"alert-info",
        b"allow",
        b"allow-events",
        b"call-info",
        b"contact",
        b"content-encoding",
        b"content-language",
        b"error-info",
        b"history-info",
        b"in-reply-to",
        b"p-asserted-identity",
        b"p-preferred-identity",
        b"path",
        b"proxy-require",
        b"reason",
        b"record-route",
        b"reject-contact",
        b"request-disposition",
        b"require",
        b"route",
        b"security-client",
        b"security-server",
        b"security-verify",
        b"service-route",
        b"supported",
        b"unsupported",
        b"via",
        b"warning",
    ]
)

# validate_request: a request must carry these (RFC 3261 section 8.1.1) ...
_REQUIRED = ("Via", "From", "To", "Call-ID", "CSeq")
# ... and may carry these at most once.
_SINGLE = ("From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Length", "Content-Type", "Expires")
SUPPORTED_URI_SCHEMES = frozenset(["sip", "sips", "tel", "pres", "im"])

_MAX_PARAMS = 32  # parameters per Via / name-addr / URI (a bound, STYLE.md section 1)
_MAX_CSEQ = (1 << 31) - 1  # RFC 3261 section 8.1.1.5
_MAX_DELTA = (1 << 32) - 1  # delta-seconds, RFC 3261 section 25.1 (32-bit)
_WKDAYS = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
_MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")


def _err(msg: str, status: int = 400) -> SipParseError:
    return SipParseError(msg, status)


def _dec(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _enc(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def _query(name: str) -> bytes:
    """Canonical key of a header name asked for; one matching no header when it
    cannot be encoded (header names are ASCII tokens)."""
    try:
        return _canon(name.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return b"\x00"


def _canon(name: bytes) -> bytes:
    low = name.lower()  # bytes.lower() folds ASCII only, as header names are ASCII tokens
    return _COMPACT.get(low, low)


# ---------------------------------------------------------------- framing


class _Header:
    __slots__ = ("name_start", "name_end", "value_start", "value_end", "folded", "key")

    def __init__(self, ns: int, ne: int, vs: int, ve: int, key: bytes) -> None:
        self.name_start = ns
        self.name_end = ne
        self.value_start = vs
        self.value_end = ve
        self.folded = False
        self.key = key


def _check_version(v: bytes) -> bool:
    """SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT ("SIP" case-insensitive)."""
    if len(v) < 7 or v[:4].upper() != b"SIP/":
        return False
    dot = v.find(b".", 4)
    if dot <= 4 or dot == len(v) - 1:
        return False
    return all(c in _DIGITS for c in v[4:dot]) and all(c in _DIGITS for c in v[dot + 1 :])


def _find_header_end(data: bytes, start: int, end: int, resume: int) -> tuple[int, int]:
    """Find the empty line that closes the header block in data[start:end].

    Returns (offset just past the empty line, offset of the LF before it),
    or (-1, where to resume the search).
    """
    i = data.find(b"\n", max(resume, start), end)
    while i >= 0:
        if i + 1 >= end:
            return -1, i
        nxt = data[i + 1]
        if nxt == _LF:
            return i + 2, i
        if nxt == _CR:
            if i + 2 >= end:
                return -1, i
            if data[i + 2] == _LF:
                return i + 3, i
        i = data.find(b"\n", i + 1, end)
    return -1, end


@typing.final
class SipMessage:
    """A parsed SIP message (see the stub for the contract)."""

    __slots__ = (
        "_buf",
        "_start",
        "_end",
        "_body_start",
        "_body_end",
        "_hdrs",
        "_is_request",
        "_method",
        "_uri",
        "_version",
        "_status",
        "_reason",
        "_content_length",
        "_cache",
    )

    _buf: bytes
    _start: int
    _end: int
    _body_start: int
    _body_end: int
    _hdrs: list[_Header]
    _is_request: bool
    _method: str | None
    _uri: str | None
    _version: str
    _status: int | None
    _reason: str | None
    _content_length: int | None
    _cache: dict[str, object]

    def __repr__(self) -> str:
        if self._is_request:
            return f"<SipMessage {self._method} {self._uri}>"
        return f"<SipMessage {self._status} {self._reason}>"

    # -- start line
    @property
    def is_request(self) -> bool:
        return self._is_request

    @property
    def method(self) -> str | None:
        return self._method

    @property
    def uri(self) -> str | None:
        return self._uri

    @property
    def status(self) -> int | None:
        return self._status

    @property
    def reason(self) -> str | None:
        return self._reason

    @property
    def version(self) -> str:
        return self._version

    # -- headers
    def _value(self, h: _Header) -> str:
        raw = self._buf[h.value_start : h.value_end]
        if h.folded:
            parts = [line.strip(b" \t\r") for line in raw.split(b"\n")]
            raw = b" ".join(p for p in parts if p)
        return _dec(raw)

    def _first(self, key: bytes) -> str | None:
        for h in self._hdrs:
            if h.key == key:
                return self._value(h)
        return None

    def get(self, name: str) -> str | None:
        return self._first(_query(name))

    def get_all(self, name: str) -> list[str]:
        key = _query(name)
        out: list[str] = []
        split = key in _LIST_HEADERS
        for h in self._hdrs:
            if h.key == key:
                v = self._value(h)
                if split:
                    out.extend(_split_commas(v))
                else:
                    out.append(v)
        return out

    def count(self, name: str) -> int:
        key = _query(name)
        return sum(1 for h in self._hdrs if h.key == key)

    def headers(self) -> list[tuple[str, str]]:
        return [(_dec(self._buf[h.name_start : h.name_end]), self._value(h)) for h in self._hdrs]

    @property
    def body(self) -> bytes:
        return self._buf[self._body_start : self._body_end]

    def to_bytes(self) -> bytes:
        if self._start == 0 and self._end == len(self._buf):
            return self._buf
        return self._buf[self._start : self._end]

    # -- hot accessors
    def _cached(self, name: str, compute: object) -> object:
        try:
            return self._cache[name]
        except KeyError:
            pass
        value = compute()  # type: ignore[operator]
        self._cache[name] = value
        return value

    @property
    def call_id(self) -> str | None:
        return self._first(b"call-id")

    def _cseq(self) -> tuple[int, str] | None:
        v = self._first(b"cseq")
        return None if v is None else _parse_cseq(v)

    @property
    def cseq_num(self) -> int | None:
        c = self._cached("cseq", self._cseq)
        return None if c is None else c[0]  # type: ignore[index]

    @property
    def cseq_method(self) -> str | None:
        c = self._cached("cseq", self._cseq)
        return None if c is None else c[1]  # type: ignore[index]

    def _top_via(self) -> Via | None:
        for h in self._hdrs:
            if h.key == b"via":
                return parse_via(_split_commas(self._value(h))[0])
        return None

    def _via(self) -> Via | None:
        return self._cached("via", self._top_via)  # type: ignore[return-value]

    @property
    def via_branch(self) -> str | None:
        v = self._via()
        return None if v is None else v.params.get("branch")

    @property
    def via_host(self) -> str | None:
        v = self._via()
        return None if v is None else v.host

    @property
    def via_port(self) -> int | None:
        v = self._via()
        return None if v is None else v.port

    @property
    def via_transport(self) -> str | None:
        v = self._via()
        return None if v is None else v.transport

    @property
    def via_rport(self) -> int | None:
        v = self._via()
        if v is None or "rport" not in v.params:
            return None
        return _rport_value(v.params["rport"])

    def _addr(self, key: bytes) -> NameAddr | None:
        v = self._first(key)
        return None if v is None else parse_name_addr(v)

    @property
    def from_tag(self) -> str | None:
        a = self._cached("from", lambda: self._addr(b"from"))
        return None if a is None else a.params.get("tag")  # type: ignore[attr-defined]

    @property
    def to_tag(self) -> str | None:
        a = self._cached("to", lambda: self._addr(b"to"))
        return None if a is None else a.params.get("tag")  # type: ignore[attr-defined]

    @property
    def expires(self) -> int | None:
        v = self._first(b"expires")
        return None if v is None else _parse_delta(v, "Expires")

    @property
    def event(self) -> str | None:
        v = self._first(b"event")
        return None if v is None else _parse_event(v)

    @property
    def content_length(self) -> int | None:
        return self._content_length

    @property
    def max_forwards(self) -> int | None:
        v = self._first(b"max-forwards")
        return None if v is None else _parse_max_forwards(v)

    @property
    def contact_uri(self) -> str | None:
        for h in self._hdrs:
            if h.key == b"contact":
                return parse_name_addr(_split_commas(self._value(h))[0]).uri
        return None

    # -- structured views
    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self.get_all("via")]

    def from_addr(self) -> NameAddr | None:
        return self._addr(b"from")

    def to_addr(self) -> NameAddr | None:
        return self._addr(b"to")

    def contacts(self) -> list[NameAddr]:
        return [parse_name_addr(v) for v in self.get_all("contact")]


def _parse_start_line(msg: SipMessage, line: bytes, offset: int) -> None:
    if line[:4].upper() == b"SIP/":
        sp = line.find(b" ")
        if sp < 0:
            raise _err(f"malformed Status-Line {line[:64]!r} (offset {offset})")
        version = line[:sp]
        if not _check_version(version):
            raise _err(f"malformed SIP version {version[:32]!r} in Status-Line (offset {offset})")
        code = line[sp + 1 : sp + 4]
        after = sp + 4
        if len(code) != 3 or not all(c in _DIGITS for c in code):
            raise _err(f"malformed status code in Status-Line {line[:64]!r} (offset {offset})")
        if after < len(line) and line[after] != _SP:
            raise _err(f"status code in {line[:64]!r} is not three digits (offset {offset})")
        status = int(code)
        if status < 100 or status > 699:
            raise _err(f"status code {status} out of range 100-699 (offset {offset})")
        msg._is_request = False
        msg._method = None
        msg._uri = None
        msg._version = _dec(version)
        msg._status = status
        msg._reason = _dec(line[after + 1 :]) if after < len(line) else ""
        return
    sp1 = line.find(b" ")
    if sp1 <= 0:
        raise _err(f"malformed Request-Line {line[:64]!r} (offset {offset})")
    method = line[:sp1]
    for c in method:
        if c not in _TOKEN:
            raise _err(f"invalid character {bytes([c])!r} in method (offset {offset})")
    sp2 = line.find(b" ", sp1 + 1)
    if sp2 < 0:
        raise _err(f"malformed Request-Line {line[:64]!r} (offset {offset})")
    uri = line[sp1 + 1 : sp2]
    if not uri:
        raise _err(f"empty Request-URI (offset {offset + sp1 + 1})")
    version = line[sp2 + 1 :]
    if not _check_version(version):
        raise _err(f"malformed SIP version {version[:32]!r} in Request-Line (offset {offset + sp2 + 1})")
    _check_request_uri(uri, offset + sp1 + 1)
    msg._is_request = True
    msg._method = _dec(method)
    msg._uri = _dec(uri)
    msg._version = _dec(version)
    msg._status = None
    msg._reason = None


def _check_request_uri(uri: bytes, offset: int) -> None:
    """Request-URI = SIP-URI / SIPS-URI / absoluteURI: a scheme, then no
    white space, controls, non-ASCII, '<', '>' or '"' (RFC 3261 section 25.1)."""
    if uri[0] not in _ALPHA:
        raise _err(f"Request-URI {uri[:64]!r} does not start with a scheme (offset {offset})")
    i = 1
    while i < len(uri) and uri[i] in _SCHEME:
        i += 1
    if i >= len(uri) or uri[i] != 0x3A:
        raise _err(f"Request-URI {uri[:64]!r} has no scheme (offset {offset})")
    for j, c in enumerate(uri):
        if c <= 0x20 or c >= 0x7F or c in b'<>"':
            raise _err(f"invalid character {bytes([c])!r} in Request-URI (offset {offset + j})")


def _sig(digits: bytes) -> bytes:
    """A digit run without its leading zeros (1*DIGIT: '0070' is 70), at least one digit."""
    return digits.lstrip(b"0") or digits[-1:]


def _parse_content_length(raw: bytes, index: int, offset: int, max_body: int) -> int:
    if not raw or not all(c in _DIGITS for c in raw):
        raise _err(f"Content-Length {raw[:32]!r} is not a number (header {index}, offset {offset})")
    if len(_sig(raw)) > 18 or int(raw) > max_body:
        raise _err(f"Content-Length {raw[:32]!r} exceeds the body limit of {max_body} bytes", 413)
    return int(raw)


def _next_line(data: bytes, p: int, end: int, start: int, max_header_bytes: int) -> int:
    """Offset of the LF ending the line at p; the header block (start line to
    empty line) may not exceed max_header_bytes."""
    nl = data.find(b"\n", p, end)
    if nl < 0:
        if end - start > max_header_bytes:
            raise _err(f"header block exceeds {max_header_bytes} bytes", 513)
        if p == start:
            raise _err("start line is not terminated by CRLF")
        raise _err("header section is not terminated by an empty line")
    if nl + 1 - start > max_header_bytes:
        raise _err(f"header block exceeds {max_header_bytes} bytes", 513)
    # CR appears only in CRLF (RFC 3261 section 25.1): a lone CR inside a
    # line would be a line break to another parser (header smuggling).
    cr = data.find(b"\r", p, nl - 1)
    if cr >= 0:
        raise _err(f"CR without LF inside a line (offset {cr})")
    return nl


def _frame(
    data: bytes,
    start: int,
    end: int,
    stream: bool,
    max_header_bytes: int,
    max_headers: int,
    max_body_bytes: int,
) -> SipMessage:
    """Parse the message at data[start:end] (see the theory of operation).

    In stream mode the caller has checked that data[start:end] holds the
    whole header block; the body is framed by the caller.
    """
    pos = start
    while pos < end and data[pos] in (_CR, _LF):
        pos += 1
    if pos >= end:
        raise _err("empty message")
    msg = SipMessage.__new__(SipMessage)
    msg._buf = data
    msg._start = pos
    msg._cache = {}
    nl = _next_line(data, pos, end, pos, max_header_bytes)
    le = nl - 1 if nl > pos and data[nl - 1] == _CR else nl
    _parse_start_line(msg, data[pos:le], pos)
    hdrs: list[_Header] = []
    p = nl + 1
    body_start = -1
    while True:
        if p >= end:
            raise _err("header section is not terminated by an empty line")
        nl = _next_line(data, p, end, msg._start, max_header_bytes)
        le = nl - 1 if nl > p and data[nl - 1] == _CR else nl
        if le == p:
            body_start = nl + 1
            break
        c0 = data[p]
        if c0 == _SP or c0 == _HT:
            if not hdrs:
                raise _err(f"continuation line before the first header (offset {p})")
            h = hdrs[-1]
            ve = le
            while ve > p and data[ve - 1] in _WSP:
                ve -= 1
            if ve > p:
                h.value_end = ve
                h.folded = True
            p = nl + 1
            continue
        colon = data.find(b":", p, le)
        if colon < 0:
            raise _err(f"header line without a colon (header {len(hdrs) + 1}, offset {p})")
        ne = colon
        while ne > p and data[ne - 1] in _WSP:
            ne -= 1
        if ne == p:
            raise _err(f"empty header name (header {len(hdrs) + 1}, offset {p})")
        for i in range(p, ne):
            if data[i] not in _TOKEN:
                where = f"(header {len(hdrs) + 1}, offset {i})"
                raise _err(f"invalid character {data[i : i + 1]!r} in header name {where}")
        if len(hdrs) >= max_headers:
            raise _err(f"more than {max_headers} header lines", 513)
        vs = colon + 1
        while vs < le and data[vs] in _WSP:
            vs += 1
        ve = le
        while ve > vs and data[ve - 1] in _WSP:
            ve -= 1
        hdrs.append(_Header(p, ne, vs, ve, _canon(data[p:ne])))
        p = nl + 1
    msg._hdrs = hdrs
    # Content-Length (RFC 3261 section 18.3): equal repeats are tolerated.
    cl: int | None = None
    for index, h in enumerate(hdrs, 1):
        if h.key == b"content-length":
            raw = _enc(msg._value(h)) if h.folded else data[h.value_start : h.value_end]
            n = _parse_content_length(raw, index, h.value_start, max_body_bytes)
            if cl is not None and n != cl:
                raise _err(f"conflicting Content-Length values {cl} and {n} (header {index})")
            cl = n
    msg._content_length = cl
    msg._body_start = body_start
    if cl is None:
        body_end = body_start if stream else end
    else:
        body_end = min(body_start + cl, end)
    msg._body_end = body_end
    msg._end = body_end
    return msg


def parse_message(
    data: bytes | bytearray | memoryview,
    *,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    max_headers: int = DEFAULT_MAX_HEADERS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> SipMessage:
    buf = data if type(data) is bytes else bytes(data)
    max_header_bytes, max_headers, max_body_bytes = _shared.limits(
        max_header_bytes, max_headers, max_body_bytes
    )
    return _frame(buf, 0, len(buf), False, max_header_bytes, max_headers, max_body_bytes)


# ---------------------------------------------------------------- header syntax


def _split_commas(value: str) -> list[str]:
    """Split at commas outside quoted strings and <...> (RFC 3261 section 7.3.1)."""
    if "," not in value:
        return [value]
    out: list[str] = []
    start = 0
    quoted = angle = False
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif angle:
            if c == ">":
                angle = False
        elif c == '"':
            quoted = True
        elif c == "<":
            angle = True
        elif c == ",":
            out.append(value[start:i].strip(" \t"))
            start = i + 1
        i += 1
    out.append(value[start:].strip(" \t"))
    return out


def _skip_ws(b: bytes, i: int) -> int:
    while i < len(b) and b[i] in _WSP:
        i += 1
    return i


def _token_end(b: bytes, i: int) -> int:
    while i < len(b) and b[i] in _TOKEN:
        i += 1
    return i


def _quoted_end(b: bytes, i: int, what: str) -> int:
    """b[i] is '"'; return the offset just past the closing quote."""
    j = i + 1
    while j < len(b):
        c = b[j]
        if c == 0x5C:  # quoted-pair
            if j + 1 >= len(b) or b[j + 1] in (_CR, _LF):
                break
            j += 2
            continue
        if c == 0x22:
            return j + 1
        j += 1
    raise _err(f"unterminated quoted string in {what}")


class _Param(typing.NamedTuple):
    """One generic-param as offsets: name [ns, ne), value [vs, ve) (vs = ve = -1: no value)."""

    name: bytes  # lower-case
    ns: int
    ne: int
    vs: int
    ve: int


def _param_spans(b: bytes, i: int, what: str) -> list[_Param]:
    """*( SEMI generic-param ), generic-param = token [ EQUAL gen-value ]."""
    spans: list[_Param] = []
    seen: set[bytes] = set()
    n = len(b)
    while True:
        i = _skip_ws(b, i)
        if i >= n:
            return spans
        if b[i] != 0x3B:
            raise _err(f"unexpected {b[i : i + 1]!r} at offset {i} in {what}")
        i = _skip_ws(b, i + 1)
        ns = i
        ne = _token_end(b, i)
        if ne == i:
            raise _err(f"empty parameter at offset {i} in {what}")
        if len(spans) >= _MAX_PARAMS:
            raise _err(f"more than {_MAX_PARAMS} parameters in {what}")
        name = b[ns:ne].lower()
        i = _skip_ws(b, ne)
        vs = ve = -1
        if i < n and b[i] == 0x3D:
            i = _skip_ws(b, i + 1)
            if i < n and b[i] == 0x22:
                ve = _quoted_end(b, i, what)
            else:
                ve = i
                while ve < n and b[ve] in _GENVAL_CH:
                    ve += 1
                if ve == i:
                    raise _err(f"empty value of parameter {_dec(name)!r} in {what}")
            vs = i
            i = ve
        if name in seen:
            raise _err(f"parameter {_dec(name)!r} appears more than once in {what}")
        seen.add(name)
        spans.append(_Param(name, ns, ne, vs, ve))


def _parse_params(b: bytes, i: int, what: str) -> Params:
    return {_dec(p.name): None if p.vs < 0 else _dec(b[p.vs : p.ve]) for p in _param_spans(b, i, what)}


class _ViaSpans(typing.NamedTuple):
    """One Via element as offsets into its octets."""

    parts: list[bytes]  # protocol name, version, transport as written
    hs: int  # sent-by host [hs, he), IPv6 with its brackets
    he: int
    port: int | None
    params: list[_Param]


def _scan_via(b: bytes, value: str) -> _ViaSpans:
    """Parse one Via element (``value`` is its text, for error messages)."""
    n = len(b)
    i = _skip_ws(b, 0)
    parts: list[bytes] = []
    for k in range(3):
        e = _token_end(b, i)
        if e == i:
            raise _err(f"malformed sent-protocol in Via {value[:64]!r}")
        parts.append(b[i:e])
        i = _skip_ws(b, e)
        if k < 2:
            if i >= n or b[i] != 0x2F:
                raise _err(f"malformed sent-protocol in Via {value[:64]!r}")
            i = _skip_ws(b, i + 1)
    if i == e:
        raise _err(f"no white space after the transport in Via {value[:64]!r}")
    hs = i
    he, port, i = _hostport_spans(b, i, "Via", True)
    return _ViaSpans(parts, hs, he, port, _param_spans(b, i, "Via"))


def parse_via(value: str) -> Via:
    b = _shared.encode_input(value, "Via")
    v = _scan_via(b, value)
    params = {_dec(p.name): None if p.vs < 0 else _dec(b[p.vs : p.ve]) for p in v.params}
    return Via(
        _dec(v.parts[0] + b"/" + v.parts[1]), _dec(v.parts[2].upper()), _dec(b[v.hs : v.he]), v.port, params
    )


def _host_ok(h: bytes) -> bool:
    """RFC 3261 section 25.1 structure of a host made of alphanum, '-' and '.'.

    All digits and dots: IPv4address (four groups of 1 to 3 digits). Otherwise
    a hostname: labels not empty, starting and ending with alphanum, the last
    (toplabel) starting with a letter; one trailing '.' allowed.
    """
    if all(c in _DIGITS or c == 0x2E for c in h):
        parts = h.split(b".")
        return len(parts) == 4 and all(1 <= len(p) <= 3 for p in parts)
    labels = (h[:-1] if h.endswith(b".") else h).split(b".")
    for label in labels:
        if not label or label[0] not in _ALNUM or label[-1] not in _ALNUM:
            return False
    return labels[-1][0] in _ALPHA


def _parse_hostport(b: bytes, i: int, what: str, lws: bool) -> tuple[str, int | None, int]:
    """host [ ":" port ]; returns (host, port or None, offset after).

    With ``lws`` (header context) white space may surround the colon.
    """
    he, port, end = _hostport_spans(b, i, what, lws)
    return _dec(b[i:he]), port, end


def _hostport_spans(b: bytes, i: int, what: str, lws: bool) -> tuple[int, int | None, int]:
    """host [ ":" port ] at b[i:]; returns (end of the host, port or None, offset after)."""
    n = len(b)
    hs = i
    if i < n and b[i] == 0x5B:
        e = b.find(b"]", i)
        if e < 0 or e == i + 1 or not all(c in _IPV6_CH for c in b[i + 1 : e]):
            raise _err(f"malformed IPv6 reference in {what}")
        i = e + 1
    else:
        while i < n and b[i] in _HOST_CH:
            i += 1
        if i == hs:
            raise _err(f"missing host in {what}")
        if not _host_ok(b[hs:i]):
            raise _err(f"malformed host {_dec(b[hs:i][:64])!r} in {what}")
    he = i
    port: int | None = None
    j = _skip_ws(b, i) if lws else i
    if j < n and b[j] == 0x3A:
        j = _skip_ws(b, j + 1) if lws else j + 1
        ps = j
        while j < n and b[j] in _DIGITS:
            j += 1
        if j == ps or len(_sig(b[ps:j])) > 5 or int(b[ps:j]) > 65535:
            raise _err(f"malformed port {b[ps : j + 1][:8]!r} in {what}")
        port = int(b[ps:j])
        i = j
    return he, port, i


def parse_name_addr(value: str) -> NameAddr:
    b = _shared.encode_input(value, "name-addr").strip(_WSP)
    n = len(b)
    if b == b"*":
        return NameAddr(None, "*", {})
    display: str | None = None
    if n and b[0] == 0x22:
        qe = _quoted_end(b, 0, "display name")
        display = _unquote(b[1 : qe - 1])
        i = _skip_ws(b, qe)
        if i >= n or b[i] != 0x3C:
            raise _err(f"quoted display name not followed by <URI> in {value[:64]!r}")
    else:
        i = b.find(b"<")
        q = b.find(b'"')
        if 0 <= q < i:
            i = -1  # '<' inside a quoted parameter of an addr-spec
    if i >= 0:
        if display is None:
            dn = b[:i].strip(_WSP)
            for c in dn:
                if c not in _TOKEN and c not in _WSP:
                    raise _err(f"display name {_dec(dn[:64])!r} must be quoted (it holds {bytes([c])!r})")
            display = _dec(dn) if dn else None
        e = b.find(b">", i)
        if e < 0:
            raise _err(f"unterminated <URI> in {value[:64]!r}")
        uri = b[i + 1 : e]
        _check_uri_shape(uri, value)
        params = _parse_params(b, e + 1, "header parameters")
        return NameAddr(display, _dec(uri), params)
    # addr-spec: the URI ends at the first ';' (RFC 3261 section 20.10: a URI
    # with a comma, question mark or semicolon must be enclosed in <>).
    semi = b.find(b";")
    uri = (b if semi < 0 else b[:semi]).rstrip(_WSP)
    for c in uri:
        if c in b",?" or c in _WSP:
            raise _err(f"URI {_dec(uri[:64])!r} must be enclosed in <> (it holds {bytes([c])!r})")
    _check_uri_shape(uri, value)
    params = _parse_params(b, len(uri) if semi < 0 else semi, "header parameters")
    return NameAddr(None, _dec(uri), params)


def _check_uri_shape(uri: bytes, value: str) -> None:
    if not uri or uri[0] not in _ALPHA:
        raise _err(f"no URI in {value[:64]!r}")
    i = 1
    while i < len(uri) and uri[i] in _SCHEME:
        i += 1
    if i >= len(uri) or uri[i] != 0x3A:
        raise _err(f"no URI scheme in {value[:64]!r}")


def _unquote(b: bytes) -> str:
    if 0x5C not in b:
        return _dec(b)
    out = bytearray()
    i = 0
    while i < len(b):
        if b[i] == 0x5C and i + 1 < len(b):
            i += 1
        out.append(b[i])
        i += 1
    return _dec(bytes(out))


def _all_digits(b: bytes) -> bool:
    return bool(b) and all(c in _DIGITS for c in b)


def _parse_cseq(value: str) -> tuple[int, str]:
    b = _enc(value)
    i = 0
    while i < len(b) and b[i] in _DIGITS:
        i += 1
    j = _skip_ws(b, i)
    if i == 0 or j == i or j >= len(b):
        raise _err(f"CSeq {value[:64]!r} is malformed")
    e = _token_end(b, j)
    if e != len(b):
        raise _err(f"CSeq {value[:64]!r} is malformed")
    if len(_sig(b[:i])) > 10 or int(b[:i]) > _MAX_CSEQ:
        raise _err(f"CSeq number {_dec(b[:i][:32])} is out of range (0 to 2**31-1)")
    return int(b[:i]), _dec(b[j:])


def _parse_delta(value: str, what: str) -> int:
    b = _enc(value)
    if not _all_digits(b):
        raise _err(f"{what} {value[:32]!r} is not a number")
    if len(_sig(b)) > 10 or int(b) > _MAX_DELTA:
        raise _err(f"{what} {value[:32]!r} is out of range (0 to 2**32-1)")
    return int(b)


def _parse_max_forwards(value: str) -> int:
    b = _enc(value)
    if not _all_digits(b):
        raise _err(f"Max-Forwards {value[:32]!r} is not a number")
    if len(_sig(b)) > 3 or int(b) > 255:
        raise _err(f"Max-Forwards {value[:32]!r} is out of range (0 to 255)")
    return int(b)


def _parse_event(value: str) -> str:
    b = _enc(value)
    semi = b.find(b";")
    ev = (b if semi < 0 else b[:semi]).strip(_WSP)
    if not ev or _token_end(ev, 0) != len(ev):
        raise _err(f"Event {value[:64]!r} is malformed")
    return _dec(ev)


def _rport_value(v: str | None) -> int:
    if v is None:
        return 0
    b = _enc(v)
    if not _all_digits(b) or len(_sig(b)) > 5 or int(b) > 65535:
        raise _err(f"Via rport {v[:16]!r} is not a port")
    return int(b)


def _check_date(value: str) -> bool:
    """rfc1123-date: wkday "," SP 2DIGIT SP month SP 4DIGIT SP time SP "GMT"."""
    b = _enc(value)
    if len(b) != 29 or b[3:5] != b", " or b[25:] != b" GMT":
        return False
    if b[:3] not in _WKDAYS or b[8:11] not in _MONTHS:
        return False
    if b[7] != _SP or b[11] != _SP or b[16] != _SP or b[19] != 0x3A or b[22] != 0x3A:
        return False
    digits = b[5:7] + b[12:16] + b[17:19] + b[20:22] + b[23:25]
    return all(c in _DIGITS for c in digits)


# ---------------------------------------------------------------- URIs


def _check_chars(b: bytes, allowed: frozenset[int], what: str, text: str) -> None:
    i = 0
    n = len(b)
    while i < n:
        c = b[i]
        if c == 0x25:
            if i + 2 >= n or b[i + 1] not in _HEX or b[i + 2] not in _HEX:
                raise _err(f"bad escape in {what} of URI {text[:64]!r}")
            i += 3
            continue
        if c not in allowed:
            raise _err(f"invalid character {bytes([c])!r} in {what} of URI {text[:64]!r}")
        i += 1


def parse_uri(text: str) -> SipURI:
    b = _shared.encode_input(text, "URI")
    n = len(b)
    if not n or b[0] not in _ALPHA:
        raise _err(f"URI {text[:64]!r} has no scheme")
    i = 1
    while i < n and b[i] in _SCHEME:
        i += 1
    if i >= n or b[i] != 0x3A:
        raise _err(f"URI {text[:64]!r} has no scheme")
    scheme = _dec(b[:i].lower())
    rest = b[i + 1 :]
    if scheme not in ("sip", "sips"):
        if not rest:
            raise _err(f"URI {text[:64]!r} is empty after the scheme")
        for c in rest:
            if c <= 0x20 or c >= 0x7F or c in b'<>"':
                raise _err(f"invalid character {bytes([c])!r} in URI {text[:64]!r}")
        return SipURI(scheme, None, None, None, None, {}, (), _dec(rest))
    user: str | None = None
    password: str | None = None
    at = rest.find(b"@")
    if at >= 0:
        userinfo = rest[:at]
        colon = userinfo.find(b":")
        ub = userinfo if colon < 0 else userinfo[:colon]
        if not ub:
            raise _err(f"empty user part in URI {text[:64]!r}")
        _check_chars(ub, _USER_CH, "user part", text)
        user = _dec(ub)
        if colon >= 0:
            pb = userinfo[colon + 1 :]
            _check_chars(pb, _PASS_CH, "password", text)
            password = _dec(pb)
        rest = rest[at + 1 :]
    host, port, i = _parse_hostport(rest, 0, f"URI {text[:64]!r}", False)
    m = len(rest)
    params: Params = {}
    while i < m and rest[i] == 0x3B:
        s = i + 1
        e = s
        while e < m and rest[e] not in b";?=":
            e += 1
        if e == s:
            raise _err(f"empty parameter in URI {text[:64]!r}")
        _check_chars(rest[s:e], _PARAM_CH, "parameter", text)
        if len(params) >= _MAX_PARAMS:
            raise _err(f"more than {_MAX_PARAMS} parameters in URI {text[:64]!r}")
        name = _dec(rest[s:e].lower())
        value: str | None = None
        if e < m and rest[e] == 0x3D:
            vs = e + 1
            e = vs
            while e < m and rest[e] not in b";?":
                e += 1
            _check_chars(rest[vs:e], _PARAM_CH, "parameter", text)
            value = _dec(rest[vs:e])
        if name in params:
            raise _err(f"URI parameter {name!r} appears more than once in {text[:64]!r}")
        params[name] = value
        i = e
    headers: list[tuple[str, str]] = []
    if i < m and rest[i] == 0x3F:
        for item in rest[i + 1 :].split(b"&"):
            eq = item.find(b"=")
            if eq <= 0:
                raise _err(f"malformed header {item[:32]!r} in URI {text[:64]!r}")
            _check_chars(item[:eq], _HDR_CH, "header", text)
            _check_chars(item[eq + 1 :], _HDR_CH, "header", text)
            headers.append((_dec(item[:eq]), _dec(item[eq + 1 :])))
        i = m
    if i < m:
        raise _err(f"unexpected {rest[i : i + 1]!r} in URI {text[:64]!r}")
    return SipURI(scheme, user, password, host, port, params, tuple(headers), None)


# ---------------------------------------------------------------- validation


def unsupported_requires(msg: SipMessage, supported: Iterable[str] = ()) -> list[str]:
    known = set(supported)
    return [t for t in msg.get_all("require") if t and t not in known]


def validate_request(msg: SipMessage, *, supported: Iterable[str] = ()) -> tuple[int, str] | None:
    req = msg.is_request
    if msg.version.upper() != "SIP/2.0":
        return 505, "Version Not Supported"
    for name in _REQUIRED:
        if msg.count(name) == 0:
            return 400, f"Missing {name} header"
    for name in _SINGLE:
        if msg.count(name) > 1:
            return 400, f"Multiple {name} headers"
    cl = msg.content_length
    if cl is not None and cl > len(msg.body):
        return 400, "Content-Length larger than the message body"
    if req:
        try:
            ruri = parse_uri(msg.uri or "")
        except SipParseError as e:
            return 400, f"Malformed Request-URI: {e}"
        if ruri.scheme not in SUPPORTED_URI_SCHEMES:
            return 416, "Unsupported URI Scheme"
        if ruri.headers:
            return 400, "Request-URI must not contain headers"
    what = "CSeq"
    try:
        if msg.cseq_method != msg.method and req:
            return 400, "CSeq method does not match the request method"
        what = "Call-ID"
        cid = _enc(msg.call_id or "")
        if not cid or any(c <= 0x20 or c == 0x7F for c in cid):
            return 400, "Malformed Call-ID"
        # The accessors raise on a malformed value; their results are not needed here.
        what = "Max-Forwards"
        _ = msg.max_forwards
        what = "Expires"
        _ = msg.expires
        what = "Via"
        msg.vias()
        for what in ("From", "To"):
            a = parse_name_addr(msg.get(what) or "")
            parse_uri(a.uri)
        what = "Contact"
        contacts = msg.contacts()
        if len(contacts) > 1 and any(c.uri == "*" for c in contacts):
            raise _err("'*' must be the only Contact")
        for c in contacts:
            if c.uri != "*":
                parse_uri(c.uri)
            exp = c.params.get("expires")
            if exp is not None:
                _parse_delta(exp, "Contact expires")
        what = "Event"
        _ = msg.event
    except SipParseError as e:
        return 400, f"Malformed {what}: {e}"
    date = msg.get("date")
    if date is not None and not _check_date(date):
        return 400, "Malformed Date"
    if req and msg.method not in ("ACK", "CANCEL") and unsupported_requires(msg, supported):
        return 420, "Bad Extension"
    return None


# ---------------------------------------------------------------- responses


def _header_bytes(msg: SipMessage, h: _Header) -> bytes:
    return msg._buf[h.name_start : h.value_end]


def _first_comma(b: bytes, i: int, n: int) -> int:
    """Offset of the first comma of b[i:n] outside quoted strings and <...>, else n."""
    quoted = angle = False
    while i < n:
        c = b[i]
        if quoted:
            if c == 0x5C:  # quoted-pair
                i += 1
            elif c == 0x22:
                quoted = False
        elif angle:
            if c == 0x3E:
                angle = False
        elif c == 0x22:
            quoted = True
        elif c == 0x3C:
            angle = True
        elif c == 0x2C:
            return i
        i += 1
    return n


def _value_lines(msg: SipMessage, h: _Header) -> tuple[bytes, list[tuple[int, int]]]:
    """The value as ``_value`` reads it (a folded value's lines stripped and
    joined by one SP), in octets, and where each of its lines starts:
    (offset in that value, offset in the buffer)."""
    buf = msg._buf
    if not h.folded:
        return buf[h.value_start : h.value_end], [(0, h.value_start)]
    out = b""
    starts: list[tuple[int, int]] = []
    pos = h.value_start
    for line in buf[h.value_start : h.value_end].split(b"\n"):
        part = line.strip(b" \t\r")
        if part:
            if out:
                out += b" "
            starts.append((len(out), pos + len(line) - len(line.lstrip(b" \t\r"))))
            out += part
        pos += len(line) + 1
    return out, starts


def _via_stamp(
    msg: SipMessage, h: _Header, received: str | None, rport: int | None
) -> list[tuple[int, int, bytes]]:
    """Edits (start, end, new octets), as buffer offsets in order, that stamp
    the first element of Via header ``h`` with the packet's source address.

    RFC 3261 section 18.2.1: ``received`` is added when the sent-by host is
    not the source address; RFC 3581 section 4: an ``rport`` without a value
    gets the source port, and then ``received`` is added even when it equals
    sent-by. A ``received`` the element already carries gets the source
    address as its value (an element holds a parameter once). Every other
    octet stays as written; a malformed element gets no edits.
    """
    value, starts = _value_lines(msg, h)
    a, z = 0, _first_comma(value, 0, len(value))
    if z < len(value):  # a comma element is stripped of SP/HT, as get_all splits it
        while a < z and value[a] in _WSP:
            a += 1
        while z > a and value[z - 1] in _WSP:
            z -= 1
    elem = value[a:z]
    try:
        via = _scan_via(elem, _dec(elem))
    except SipParseError:
        return []
    params = {p.name: p for p in via.params}
    rp = params.get(b"rport")
    asked = rp is not None and rp.vs < 0
    host = elem[via.hs : via.he]
    if host.startswith(b"["):
        host = host[1:-1]
    edits: list[tuple[int, int, bytes]] = []  # offsets in elem
    if rp is not None and asked and rport is not None:
        edits.append((rp.ne, rp.ne, b"=%d" % rport))
    if received is not None and (asked or host.lower() != _enc(received).lower()):
        ip = _enc(received)
        rc = params.get(b"received")
        if rc is None:
            edits.append((len(elem), len(elem), b";received=" + ip))
        elif rc.vs < 0:
            edits.append((rc.ne, rc.ne, b"=" + ip))
        else:
            edits.append((rc.vs, rc.ve, ip))
    edits.sort(key=lambda e: e[0])

    def buf_at(x: int) -> int:
        """Buffer offset of octet x of the value (never a joining SP)."""
        line_start, at = [s for s in starts if s[0] <= x][-1]
        return at + x - line_start

    out = []
    for s, e, new in edits:
        end = buf_at(a + e - 1) + 1
        out.append((buf_at(a + s) if e > s else end, end, new))
    return out


def _spliced(buf: bytes, start: int, end: int, edits: list[tuple[int, int, bytes]]) -> bytes:
    """buf[start:end] with the edits (in order, inside that range) applied."""
    out = []
    for s, e, new in edits:
        out += [buf[start:s], new]
        start = e
    out.append(buf[start:end])
    return b"".join(out)


def build_response(
    req: SipMessage,
    status: int,
    reason: str,
    *,
    to_tag: str | None = None,
    extra_headers: bytes | bytearray | memoryview | Sequence[tuple[str, str]] = (),
    body: bytes | bytearray | memoryview = b"",
    received: str | None = None,
    rport: int | None = None,
) -> bytes:
    _shared.check_response_args(status, reason, to_tag, received, rport)
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise TypeError(f"body must be bytes-like, not {type(body).__name__}")
    body = bytes(body)
    out = [b"SIP/2.0 %d " % status + _enc(reason) + b"\r\n"]
    top_via = True
    for h in req._hdrs:
        key = h.key
        if key == b"via":
            if top_via and (received is not None or rport is not None):
                edits = _via_stamp(req, h, received, rport)
                out.append(_spliced(req._buf, h.name_start, h.value_end, edits) + b"\r\n")
            else:
                out.append(_header_bytes(req, h) + b"\r\n")
            top_via = False
        elif key == b"to":
            line = _header_bytes(req, h)
            if to_tag is not None:
                try:
                    has_tag = req.to_tag is not None
                except SipParseError:
                    has_tag = True
                if not has_tag:
                    line += b";tag=" + _enc(to_tag)
            out.append(line + b"\r\n")
        elif key in (b"from", b"call-id", b"cseq"):
            out.append(_header_bytes(req, h) + b"\r\n")
    if isinstance(extra_headers, (bytes, bytearray, memoryview)):
        out.append(bytes(extra_headers))
    else:
        for name, value in extra_headers:
            out.append(_shared.header_pair_bytes(name, value))
    out.append(b"Content-Length: %d\r\n\r\n" % len(body))
    out.append(body)
    return b"".join(out)


# Headers forward_request writes itself (RFC 3261 section 16.6 steps 3, 6, 7)
_NOT_FORWARDED = frozenset([b"route", b"max-forwards", b"content-length"])


def forward_request(
    msg: SipMessage,
    uri: str,
    via: str,
    *,
    record_route: str | None,
    routes: Sequence[str],
    max_forwards: int,
    received: str | None = None,
    rport: int | None = None,
) -> bytes:
    uri_b, via_b, rr_b, routes_b = _shared.check_forward_args(
        msg._is_request, uri, via, record_route, routes, max_forwards, received, rport
    )
    buf = msg._buf
    out = [_enc(msg._method or "") + b" " + uri_b + b" SIP/2.0\r\n", b"Via: " + via_b + b"\r\n"]
    if rr_b is not None:
        out.append(b"Record-Route: " + rr_b + b"\r\n")
    out += [b"Route: " + r + b"\r\n" for r in routes_b]
    out.append(b"Max-Forwards: %d\r\n" % max_forwards)
    stamp = received is not None or rport is not None
    top_via = True
    for h in msg._hdrs:
        if h.key in _NOT_FORWARDED:
            continue
        edits: list[tuple[int, int, bytes]] = []
        if h.key == b"via" and top_via:
            top_via = False
            if stamp:
                edits = _via_stamp(msg, h, received, rport)
        out.append(_spliced(buf, h.name_start, h.value_end, edits) + b"\r\n")
    body = msg.body
    out.append(b"Content-Length: %d\r\n\r\n" % len(body))
    out.append(body)
    return b"".join(out)


def strip_top_via(msg: SipMessage) -> bytes | None:
    if msg._is_request:
        raise ValueError("strip_top_via needs a response, not a request")
    buf = msg._buf
    out = [b"SIP/2.0 %d " % (msg._status or 0) + _enc(msg._reason or "") + b"\r\n"]
    found = False
    for h in msg._hdrs:
        if h.key == b"content-length":
            continue
        if h.key == b"via" and not found:
            found = True
            # the rest of the line after the first element's comma, LWS skipped
            rest = _first_comma(buf, h.value_start, h.value_end) + 1
            while rest < h.value_end and buf[rest] in b" \t\r\n":
                rest += 1
            if rest < h.value_end:
                out.append(buf[h.name_start : h.name_end] + b": " + buf[rest : h.value_end] + b"\r\n")
            continue
        out.append(buf[h.name_start : h.value_end] + b"\r\n")
    if not found:
        return None
    body = msg.body
    out.append(b"Content-Length: %d\r\n\r\n" % len(body))
    out.append(body)
    return b"".join(out)


# ---------------------------------------------------------------- streams


@typing.final
class SipStreamParser:
    """RFC 3261 section 18.3 framing on a byte stream (see the stub)."""

    __slots__ = ("_buf", "_resume", "_need", "_error", "_pings", "_max_header", "_max_body", "_max_headers")

    def __init__(
        self,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_headers: int = DEFAULT_MAX_HEADERS,
    ) -> None:
        self._buf = b""
        self._resume = 0
        self._need = 0  # octets the message at the buffer start needs (0: unknown)
        self._error: SipParseError | None = None
        self._pings = 0
        self._max_header, self._max_headers, self._max_body = _shared.limits(
            max_header_bytes, max_headers, max_body_bytes
        )

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def ping_count(self) -> int:
        return self._pings

    def feed(self, data: bytes | bytearray | memoryview) -> list[SipMessage]:
        if self._error is not None:
            raise self._error
        buf = self._buf + bytes(data) if self._buf else bytes(data)
        out: list[SipMessage] = []
        pos = 0
        n = len(buf)
        if self._need > n:
            self._buf = buf
            return out
        try:
            while pos < n:
                c = buf[pos]
                if c == _CR or c == _LF:
                    # keep-alive: CRLFCRLF is a ping (RFC 5626 section 3.5.1)
                    if buf.startswith(b"\r\n\r\n", pos):
                        self._pings += 1
                        pos += 4
                    elif n - pos < 4 and b"\r\n\r\n".startswith(buf[pos:]):
                        break
                    else:
                        pos += 1
                    self._resume = pos
                    continue
                hend, resume = _find_header_end(buf, pos, n, self._resume)
                if hend < 0:
                    if n - pos > self._max_header:
                        raise _err(f"header block exceeds {self._max_header} bytes", 513)
                    self._resume = resume
                    break
                if hend - pos > self._max_header:
                    raise _err(f"header block exceeds {self._max_header} bytes", 513)
                try:
                    msg = _frame(buf, pos, hend, True, self._max_header, self._max_headers, self._max_body)
                except SipParseError:
                    # Offsets in the error count from the message's first octet, so the
                    # text does not depend on how the stream was chunked: frame it alone.
                    _frame(
                        buf[pos:hend],
                        0,
                        hend - pos,
                        True,
                        self._max_header,
                        self._max_headers,
                        self._max_body,
                    )
                    raise
                total = hend + (msg._content_length or 0)
                if total > n:
                    self._need = total - pos
                    self._resume = resume
                    break
                self._need = 0
                msg._body_end = msg._end = total
                out.append(msg)
                pos = total
                self._resume = pos
        except SipParseError as e:
            self._error = e
            self._buf = b""
            raise
        self._buf = buf[pos:]
        self._resume -= pos
        return out
