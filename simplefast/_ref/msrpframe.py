"""MSRP framing (RFC 4975 section 9), pure-Python reference twin of ``simplefast._ext.msrpframe``.

This module is the readable specification: ``ext/msrpframe.pyx`` must give equal results
and raise the same error class with the same ``status_hint`` for every input. The
contract and the docstrings live in ``simplefast/_ext/msrpframe.pyi``; what the stub
leaves open is settled under "Decisions" below.

Decisions
---------
Where the stub is silent or ambiguous, these readings (closest to RFC 4975) hold.

Framing and streaming

D1. Lines end with CRLF. The start line and every header line are cut at the first
    CRLF; a CR or LF left inside a line makes it malformed (400). No CR/LF/empty line
    is skipped before a start line: MSRP has no keep-alive, so anything but a start
    line where a message begins is a 400.
D2. Header phase: after the start line, each complete line is, in this order of tests,
    (a) exactly ``"-------" tid flag`` (our tid, octet for octet, case-sensitive; flag
    one of ``$+#``): the end-line of a message without content; (b) empty: the end of
    the header block, content follows (a request) or 400 right away (a response: a
    response never carries content, even an empty one); (c) a header line. Any other
    line (folded continuation, another tid's end-line, ...) is a 400.
D3. Data phase (RFC 4975 section 7.1: "the end-line MUST be preceded by a CRLF that is
    not part of the body"): the data starts just after the empty line; the end-line is
    the first ``CRLF "-------" tid flag CRLF`` whose leading CRLF starts at or after the
    data start. So the CRLF of the empty line never doubles as the end-line's CRLF:
    ``...CRLF CRLF -------tid$ CRLF`` has data ``-------tid$`` so far and the message
    goes on; empty data is ``...CRLF CRLF CRLF -------tid$ CRLF``.
D4. ``max_header_bytes`` bounds the header block: start line + header lines (+ the
    empty line when content follows), CRLFs included. The end-line of a message without
    content is not counted. 413 iff that length exceeds the limit, whatever the split:
    a complete line is tested against the limit (its end offset) before its syntax, so a
    malformed line that crosses the limit is a 413; an incomplete line that already
    crosses the limit is a 413 at once unless it is still a prefix of our end-line
    (``"-------" tid [flag [CR]]``, header phase only).
D5. ``max_chunk_bytes`` bounds the data of a chunk (the octets between the empty line
    and the CRLF before the end-line). 413 iff the data length exceeds the limit; the
    parser raises it as soon as the data is known to be longer (every octet before the
    earliest place an end-line could still start is data), not only at the end-line.
D6. Errors are reported in stream order: the first complete line (or limit) that fails
    decides the error, so class and status_hint do not depend on how the input was
    split. Message texts give offsets from the message's first octet.
D7. After an error the parser is failed: every later ``feed`` (even ``feed(b"")``)
    raises the same exception object; ``buffered`` is 0 from then on.
D8. ``body`` is a ``memoryview`` slice of the object passed to ``feed`` when every
    octet of the message (start line to end-line) came in that one ``feed`` call, and
    ``bytes`` otherwise. This holds for empty bodies too (an empty ``memoryview`` for a
    message without content that arrived in one call). ``parse_one`` gives a
    ``memoryview`` of its argument. ``to_bytes()`` is always ``bytes``.

Syntax

D9.  tid: RFC 4975 ``ident``: 4 to 32 octets, ALPHA/DIGIT first, then ALPHA / DIGIT /
     ``. - + % =``. Start line: ``"MSRP" SP tid SP rest`` (``MSRP`` in capitals, single
     SPs). ``rest`` is a response when it is three ASCII digits alone or followed by SP
     (the comment is everything after that SP, possibly empty: ``"200 "`` gives comment
     ``""``; ``"200"`` gives None); else a request when it is one or more of ``A-Z``;
     else 400. Status ``000``-``999`` are all accepted (``status`` is ``int(rest[:3])``).
D10. Header line: ``name ":" SP value`` where name is one or more RFC 4975 ``token``
     characters (``%x21 / %x23-27 / %x2A-2B / %x2D-2E / %x30-39 / %x41-5A / %x5E-7E``;
     the stub says "a token", so a leading ALPHA as in the RFC's ``hname`` is not
     required), then exactly ``": "``; the value is every octet after that SP, kept as
     is (no stripping; may be empty). Values and the comment must decode as strict
     UTF-8 (Python's ``utf-8`` codec: no surrogates, no overlongs) else 400; any other
     octet (HTAB, NUL, ...) is allowed. Decoding happens in ``feed``.
D11. Header lookups (``get``/``get_all``) fold ASCII case only; a name with a non-ASCII
     character matches nothing (``"\u212a"`` KELVIN SIGN does not match ``k``).
D12. ``to_path``/``from_path``: the first such header's value split on runs of SP and
     HTAB (nothing else is whitespace), empty parts dropped.
D13. ``byte_range``: the first Byte-Range value must be exactly
     ``1*DIGIT "-" (1*DIGIT / "*") "/" (1*DIGIT / "*")`` (ASCII digits, no spaces, leading
     zeros allowed), each number at most 2**63 - 1; else MsrpFramingError 400 (on every
     access). Syntax only: ``0-0/0`` or ``5-2/1`` are returned as they are; checking them
     against each other and the data is the session layer's job.

Writers

D14. ``build_request``/``build_response`` raise ValueError for: a tid that is not an
     ident; a method not ``[A-Z]+``; a flag not one of ``$ + #``; a status outside
     0..999 (written as three digits, zero-padded); a header name that is not a token;
     a header value, comment, Content-Type or path element containing CR or LF or not
     encodable as UTF-8; a path element that is empty or contains SP or HTAB (it could
     not be read back); a non-empty body without ``content_type``; a body in which the
     parser would find this end-line (any flag) before the real one. Empty path lists
     are written as an empty value (``"To-Path: "``).
D15. ``chunk``: ``chunk_size`` < 1 is a ValueError. For each chunk, ``new_tid()`` is
     called; an id that is not an ident is a ValueError at once; an id whose ASCII
     octets occur in that chunk's data is dropped and ``new_tid()`` called again, at
     most 16 calls per chunk (ValueError if all 16 collide). Headers in order: To-Path,
     From-Path, Message-ID, Byte-Range, ``headers``, Content-Type.

Limits

D16. ``MsrpParser`` limits are keyword-only ints: TypeError for a non-int (or bool),
     ValueError for a negative one; values above 2**62 are clamped to 2**62.
     ``parse_one`` uses the default limits.

Theory of operation
-------------------
The parser keeps the octets of the message being received in a ``bytearray`` (nothing
before its first octet) and a small state relative to that first octet:

- ``_phase``: START (waiting for the start line), HEADERS, DATA;
- ``_line``: where the next line to examine starts; ``_scan``: where the CRLF search
  (HEADERS) or the end-line search (DATA) resumes, so no octet is searched twice except
  for an overlap of one end-line's length;
- the start line's fields, the headers seen so far and, in DATA, ``_data`` (data start).

``feed`` appends the new octets (or, with nothing buffered, parses the caller's object
in place), runs ``_advance`` for each message until one is incomplete, then drops the
octets of the messages it returned. A message that starts in the new octets is wholly
inside them, so its body can be a slice of the caller's buffer (D8).
"""

from __future__ import annotations

import operator
import re
import typing

from simplefast.errors import RemoteProtocolError

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Sequence

MAX_HEADER_BYTES = 16384
MAX_CHUNK_BYTES = 1048576

_LIMIT_CLAMP = 1 << 62
_MAX_NUMBER = (1 << 63) - 1
_TID_TRIES = 16

_CR = 0x0D
_LF = 0x0A
_SP = 0x20
_DASHES = b"-------"
_FLAGS = b"$+#"

_DIGITS = frozenset(b"0123456789")
_UPPER = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ALNUM = _DIGITS | _UPPER | frozenset(b"abcdefghijklmnopqrstuvwxyz")
_IDENT_CH = _ALNUM | frozenset(b".-+%=")
# RFC 4975 section 9: token = 1*(%x21 / %x23-27 / %x2A-2B / %x2D-2E / %x30-39 / %x41-5A / %x5E-7E)
_TOKEN = frozenset(
    [0x21, *range(0x23, 0x28), 0x2A, 0x2B, 0x2D, 0x2E, *range(0x30, 0x3A), *range(0x41, 0x5B)]
    + list(range(0x5E, 0x7F))
)
_WSP_RUN = re.compile(r"[ \t]+")

_START = 0
_HEADERS = 1
_DATA = 2


class MsrpFramingError(RemoteProtocolError):
    """A framing or syntax error; ``status_hint`` 400 or 413. str() is short and safe
    for a log line or a REPORT's comment."""


def _err(msg: str, status: int = 400) -> MsrpFramingError:
    return MsrpFramingError(msg, status)


def _is_ident(b: bytes) -> bool:
    """RFC 4975 section 9: ident = ALPHANUM 3*31ident-char."""
    return 4 <= len(b) <= 32 and b[0] in _ALNUM and all(c in _IDENT_CH for c in b)


def _is_token(b: bytes) -> bool:
    return len(b) > 0 and all(c in _TOKEN for c in b)


def _snip(b: bytes) -> str:
    return repr(bytes(b[:48]))


def _decode(raw: bytes, what: str, offset: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _err(f"{what} is not valid UTF-8 (offset {offset})") from None


def _limit(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, not {value}")
    return min(value, _LIMIT_CLAMP)


def _match_end(buf: bytes | bytearray, i: int, k: int, n: int) -> int:
    """At ``buf[i:i+k]`` an end-line pattern (CRLF dashes tid) was found: is
    flag + CRLF after it? 1 yes, 0 no, -1 not enough octets to tell."""
    j = i + k
    if j < n and buf[j] not in _FLAGS:
        return 0
    if j + 1 < n and buf[j + 1] != _CR:
        return 0
    if j + 2 < n and buf[j + 2] != _LF:
        return 0
    return 1 if j + 3 <= n else -1


def _first_end_line(buf: bytes, start: int, pat: bytes) -> int:
    """Offset of the first complete ``pat flag CRLF`` in buf[start:], or -1."""
    n = len(buf)
    k = len(pat)
    i = buf.find(pat, start)
    while i >= 0:
        if _match_end(buf, i, k, n) == 1:
            return i
        i = buf.find(pat, i + 1)
    return -1


# ---------------------------------------------------------------- messages


@typing.final
class MsrpMessage:
    """One MSRP request or response (see the stub for the contract)."""

    __slots__ = (
        "_raw",
        "_is_request",
        "_tid",
        "_method",
        "_status",
        "_comment",
        "_flag",
        "_body",
        "_has_content",
        "_hdrs",
        "_keys",
    )

    _raw: bytes
    _is_request: bool
    _tid: str
    _method: str | None
    _status: int | None
    _comment: str | None
    _flag: str
    _body: memoryview | bytes
    _has_content: bool
    _hdrs: list[tuple[str, str]]
    _keys: list[str]

    def __repr__(self) -> str:
        what = self._method if self._is_request else f"{self._status}"
        return f"<MsrpMessage {what} tid={self._tid} flag={self._flag} body={len(self._body)}>"

    @property
    def is_request(self) -> bool:
        return self._is_request

    @property
    def tid(self) -> str:
        return self._tid

    @property
    def method(self) -> str | None:
        return self._method

    @property
    def status(self) -> int | None:
        return self._status

    @property
    def comment(self) -> str | None:
        return self._comment

    @property
    def flag(self) -> str:
        return self._flag

    @property
    def body(self) -> memoryview | bytes:
        return self._body

    @property
    def has_content(self) -> bool:
        return self._has_content

    def headers(self) -> list[tuple[str, str]]:
        return list(self._hdrs)

    def get(self, name: str) -> str | None:
        if not name.isascii():  # D11: header names are ASCII tokens
            return None
        key = name.lower()
        for k, (_, v) in zip(self._keys, self._hdrs, strict=True):
            if k == key:
                return v
        return None

    def get_all(self, name: str) -> list[str]:
        if not name.isascii():
            return []
        key = name.lower()
        return [v for k, (_, v) in zip(self._keys, self._hdrs, strict=True) if k == key]

    def _path(self, name: str) -> list[str]:
        v = self.get(name)
        if v is None:
            return []
        return [p for p in _WSP_RUN.split(v) if p]

    @property
    def to_path(self) -> list[str]:
        return self._path("to-path")

    @property
    def from_path(self) -> list[str]:
        return self._path("from-path")

    @property
    def message_id(self) -> str | None:
        return self.get("message-id")

    @property
    def content_type(self) -> str | None:
        return self.get("content-type")

    @property
    def byte_range(self) -> tuple[int, int | None, int | None] | None:
        v = self.get("byte-range")
        if v is None:
            return None
        return _parse_byte_range(v)

    def to_bytes(self) -> bytes:
        return self._raw


def _number(s: str, star: bool, value: str) -> int | None:
    if star and s == "*":
        return None
    # str.isdigit() accepts non-ASCII digits; the grammar's DIGIT is %x30-39 only.
    if not s or not s.isascii() or not s.isdigit():
        raise _err(f"malformed Byte-Range {value[:48]!r}")
    n = int(s)
    if n > _MAX_NUMBER:
        raise _err(f"Byte-Range number too large in {value[:48]!r}")
    return n


def _parse_byte_range(v: str) -> tuple[int, int | None, int | None]:
    """RFC 4975 section 9: range-start "-" range-end "/" total (D13)."""
    dash = v.find("-")
    slash = v.find("/", dash + 1)
    if dash < 0 or slash < 0:
        raise _err(f"malformed Byte-Range {v[:48]!r}")
    start = _number(v[:dash], False, v)
    end = _number(v[dash + 1 : slash], True, v)
    total = _number(v[slash + 1 :], True, v)
    assert start is not None
    return start, end, total


# ---------------------------------------------------------------- parser


class MsrpParser:
    """RFC 4975 framing on a byte stream (see the stub and the module docstring)."""

    __slots__ = (
        "_buf",
        "_error",
        "_max_header",
        "_max_chunk",
        "_phase",
        "_line",
        "_scan",
        "_data",
        "_dend",
        "_content",
        "_flag",
        "_tid",
        "_endline",
        "_endpat",
        "_is_request",
        "_method",
        "_status",
        "_comment",
        "_hdrs",
    )

    _tid: bytes
    _endline: bytes
    _endpat: bytes
    _method: str | None
    _status: int | None
    _comment: str | None
    _hdrs: list[tuple[str, str]]

    def __init__(
        self, *, max_header_bytes: int = MAX_HEADER_BYTES, max_chunk_bytes: int = MAX_CHUNK_BYTES
    ) -> None:
        self._max_header = _limit("max_header_bytes", max_header_bytes)
        self._max_chunk = _limit("max_chunk_bytes", max_chunk_bytes)
        self._buf = bytearray()
        self._error: MsrpFramingError | None = None
        self._reset()

    def _reset(self) -> None:
        # Every offset below is relative to the first octet of the message being parsed.
        self._phase = _START
        self._line = 0
        self._scan = 0
        self._data = 0
        self._dend = 0
        self._content = False
        self._flag = ""
        self._tid = b""
        self._endline = b""  # "-------" tid
        self._endpat = b""  # CRLF "-------" tid
        self._is_request = False
        self._method = None
        self._status = None
        self._comment = None
        self._hdrs = []

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[MsrpMessage]:
        if self._error is not None:
            raise self._error
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        work: bytes | bytearray
        if self._buf:
            base = len(self._buf)
            self._buf += view
            work = self._buf
        else:
            base = 0
            work = data if type(data) is bytes else view.tobytes()
        n = len(work)
        out: list[MsrpMessage] = []
        m = 0
        try:
            while m < n:
                end = self._advance(work, m, n)
                if end < 0:
                    break
                out.append(self._finish(work, m, end, view, base))
                m = end
        except MsrpFramingError as e:
            self._error = e
            self._buf = bytearray()
            raise
        if work is self._buf:
            del self._buf[:m]
        else:
            self._buf = bytearray(work[m:])
        return out

    # -- one message

    def _advance(self, buf: bytes | bytearray, m: int, n: int) -> int:
        """Parse on from the saved state the message starting at ``m``; the offset just
        past its end-line when complete, else -1 (the state says where to resume)."""
        if self._phase != _DATA:
            while True:
                ls = m + self._line
                i = buf.find(b"\r\n", max(ls, m + self._scan), n)
                if i < 0:
                    self._scan = max(self._line, n - m - 1)  # a final CR may pair with the next LF
                    if n - m > self._max_header and not self._end_line_prefix(buf, ls, n):
                        raise _err(f"header block exceeds {self._max_header} bytes", 413)
                    return -1
                le = i + 2
                if self._phase == _HEADERS and i - ls == len(self._endline) + 1:
                    # D2 (a): the end-line of a message without content
                    if buf.startswith(self._endline, ls) and buf[i - 1] in _FLAGS:
                        self._flag = chr(buf[i - 1])
                        self._data = self._dend = self._line
                        return le
                if le - m > self._max_header:  # D4: the limit before the syntax
                    raise _err(f"header block exceeds {self._max_header} bytes", 413)
                line = bytes(buf[ls:i])
                self._line = self._scan = le - m
                if self._phase == _START:
                    self._parse_start(line)
                    self._phase = _HEADERS
                elif not line:
                    if not self._is_request:
                        raise _err(f"a response carries no content (empty line at offset {ls - m})")
                    self._content = True
                    self._phase = _DATA
                    self._data = self._scan = le - m
                    break
                else:
                    self._parse_header(line, ls - m)
        # DATA (RFC 4975 section 7.1): up to the first CRLF "-------" tid flag CRLF
        pat = self._endpat
        k = len(pat)
        d = m + self._data
        i = buf.find(pat, m + self._scan, n)
        while i >= 0:
            r = _match_end(buf, i, k, n)
            if r == 1:
                if i - d > self._max_chunk:
                    raise _err(f"chunk data exceeds {self._max_chunk} bytes", 413)
                self._flag = chr(buf[i + k])
                self._dend = i - m
                return i + k + 3
            if r < 0:
                self._scan = i - m
                break
            i = buf.find(pat, i + 1, n)
        else:
            # no end-line can start before n - k + 1: everything before it is data
            self._scan = max(self._data, n - m - k + 1)
        if m + self._scan - d > self._max_chunk:  # D5: the data is at least this long
            raise _err(f"chunk data exceeds {self._max_chunk} bytes", 413)
        return -1

    def _end_line_prefix(self, buf: bytes | bytearray, ls: int, n: int) -> bool:
        """Could the incomplete line buf[ls:n] still become our end-line?"""
        if self._phase != _HEADERS:
            return False
        e = self._endline
        p = n - ls
        if p > len(e) + 2:
            return False
        if buf[ls : ls + min(p, len(e))] != e[:p]:
            return False
        if p > len(e) and buf[ls + len(e)] not in _FLAGS:
            return False
        return not (p > len(e) + 1 and buf[ls + len(e) + 1] != _CR)

    def _parse_start(self, line: bytes) -> None:
        """D9: "MSRP" SP transact-id SP (method / status-code [SP comment])."""
        if not line.startswith(b"MSRP "):
            raise _err(f"not an MSRP start line: {_snip(line)}")
        sp = line.find(b" ", 5)
        if sp < 0:
            raise _err(f"start line without method or status: {_snip(line)}")
        tid = line[5:sp]
        if not _is_ident(tid):
            raise _err(f"malformed transaction id {_snip(tid)}")
        rest = line[sp + 1 :]
        if len(rest) >= 3 and all(c in _DIGITS for c in rest[:3]) and (len(rest) == 3 or rest[3] == _SP):
            self._is_request = False
            self._status = int(rest[:3])
            if len(rest) > 3:
                comment = rest[4:]
                if b"\r" in comment or b"\n" in comment:
                    raise _err("CR or LF in the response comment")
                self._comment = _decode(comment, "response comment", sp + 5)
        elif rest and all(c in _UPPER for c in rest):
            self._is_request = True
            self._method = rest.decode("ascii")
        else:
            raise _err(f"malformed method or status in start line {_snip(line)}")
        self._tid = tid
        self._endline = _DASHES + tid
        self._endpat = b"\r\n" + self._endline

    def _parse_header(self, line: bytes, offset: int) -> None:
        """D10: name ":" SP value."""
        colon = line.find(b":")
        name = line[:colon] if colon > 0 else b""
        if not _is_token(name):
            raise _err(f"malformed header line {_snip(line)} (offset {offset})")
        if line[colon + 1 : colon + 2] != b" ":
            raise _err(f"no SP after the colon in header line {_snip(line)} (offset {offset})")
        value = line[colon + 2 :]
        if b"\r" in value or b"\n" in value:
            raise _err(f"CR or LF in header line {_snip(line)} (offset {offset})")
        self._hdrs.append((name.decode("ascii"), _decode(value, "header value", offset)))

    def _finish(self, buf: bytes | bytearray, m: int, end: int, view: memoryview, base: int) -> MsrpMessage:
        msg = MsrpMessage.__new__(MsrpMessage)
        msg._raw = bytes(buf[m:end])
        msg._is_request = self._is_request
        msg._tid = self._tid.decode("ascii")
        msg._method = self._method
        msg._status = self._status
        msg._comment = self._comment
        msg._flag = self._flag
        d0 = m + self._data
        d1 = m + self._dend
        # D8: a view of the caller's object when the whole message came in this call
        msg._body = view[d0 - base : d1 - base] if m >= base else bytes(buf[d0:d1])
        msg._has_content = self._content
        msg._hdrs = self._hdrs
        msg._keys = [h.lower() for h, _ in self._hdrs]
        self._reset()
        return msg


def parse_one(data: bytes) -> MsrpMessage:
    """``data`` must be exactly one complete message (tests, tools); else MsrpFramingError."""
    p = MsrpParser()
    msgs = p.feed(data)
    if not msgs:
        raise _err("incomplete MSRP message")
    if len(msgs) > 1:
        raise _err("more than one MSRP message")
    if p.buffered:
        raise _err(f"{p.buffered} octets after the MSRP message")
    return msgs[0]


# ---------------------------------------------------------------- writers


def _enc_tid(tid: str) -> bytes:
    b = tid.encode("utf-8", "surrogatepass")
    if not _is_ident(b):
        raise ValueError(f"invalid MSRP transaction id {tid!r}")
    return b


def _enc_text(what: str, v: str) -> bytes:
    if "\r" in v or "\n" in v:
        raise ValueError(f"{what} contains CR or LF: {v[:48]!r}")
    try:
        return v.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} cannot be encoded as UTF-8: {v[:48]!r}") from None


def _enc_name(name: str) -> bytes:
    b = name.encode("utf-8", "surrogatepass")
    if not _is_token(b):
        raise ValueError(f"invalid header name {name!r}")
    return b


def _enc_path(what: str, uris: Sequence[str]) -> bytes:
    parts = []
    for u in uris:
        b = _enc_text(what, u)
        if not b or b" " in b or b"\t" in b:
            raise ValueError(f"{what} element {u!r} is empty or contains whitespace")
        parts.append(b)
    return b" ".join(parts)


def _head(
    start: bytes, to_path: Sequence[str], from_path: Sequence[str], headers: Sequence[tuple[str, str]]
) -> list[bytes]:
    out = [start, b"\r\nTo-Path: ", _enc_path("To-Path", to_path), b"\r\nFrom-Path: "]
    out.append(_enc_path("From-Path", from_path))
    for name, value in headers:
        out += [b"\r\n", _enc_name(name), b": ", _enc_text(f"header {name}", value)]
    out.append(b"\r\n")
    return out


def build_request(
    tid: str,
    method: str,
    to_path: Sequence[str],
    from_path: Sequence[str],
    headers: Sequence[tuple[str, str]] = (),
    *,
    content_type: str | None = None,
    body: bytes = b"",
    flag: str = "$",
) -> bytes:
    """One request (see the stub; D14 lists the ValueErrors)."""
    t = _enc_tid(tid)
    if not method or not method.isascii() or not all(c in _UPPER for c in method.encode("ascii")):
        raise ValueError(f"invalid MSRP method {method!r}")
    if len(flag) != 1 or flag not in "$+#":
        raise ValueError(f"invalid end-line flag {flag!r}")
    out = _head(b"MSRP " + t + b" " + method.encode("ascii"), to_path, from_path, headers)
    end = b"-------" + t + flag.encode("ascii") + b"\r\n"
    if content_type is None:
        if len(body):
            raise ValueError("a body needs a content_type")
        out.append(end)
        return b"".join(out)
    data = bytes(body)
    # RFC 4975 section 7.1: the end-line must not occur in the body (any flag: each one ends it)
    if _first_end_line(data + b"\r\n" + end, 0, b"\r\n-------" + t) != len(data):
        raise ValueError(f"the body contains the end-line of transaction {tid}")
    out += [b"Content-Type: ", _enc_text("Content-Type", content_type), b"\r\n\r\n", data, b"\r\n", end]
    return b"".join(out)


def forward(
    msg: MsrpMessage, tid: str, to_path: Sequence[str], from_path: Sequence[str], *,
    part: tuple[int, int] | None = None,
) -> bytes | None:  # fmt: skip
    """The request ``msg`` as a relay forwards it (see the stub)."""
    if not isinstance(msg, MsrpMessage):
        raise TypeError(f"msg must be an MsrpMessage, not {type(msg).__name__}")
    if not msg.is_request:
        raise ValueError("a response is not forwarded as a request")
    t = _enc_tid(tid)
    to_p = _enc_path("To-Path", to_path)
    from_p = _enc_path("From-Path", from_path)
    body = bytes(msg.body)
    flag = msg.flag
    br_val = None
    if part is not None:
        off, length = operator.index(part[0]), operator.index(part[1])
        br = msg.byte_range
        if not msg.has_content or br is None:
            raise ValueError("a part needs a chunk with data and a Byte-Range header")
        if off < 0 or length < 1 or off + length > len(body):
            raise ValueError(f"part ({off}, {length}) is not inside the {len(body)} octets of data")
        first = br[0] + off
        br_val = f"{first}-{first + length - 1}/{'*' if br[2] is None else br[2]}"
        if off + length < len(body):
            flag = "+"
        body = body[off : off + length]
    end = b"-------" + t + flag.encode("ascii") + b"\r\n"
    if msg.has_content and _first_end_line(body + b"\r\n" + end, 0, b"\r\n-------" + t) != len(body):
        return None
    assert msg.method is not None
    out = [b"MSRP ", t, b" ", msg.method.encode("ascii"), b"\r\nTo-Path: ", to_p]
    out += [b"\r\nFrom-Path: ", from_p, b"\r\n"]
    for name, value in msg.headers():
        low = name.lower()
        if low in ("to-path", "from-path"):
            continue
        if br_val is not None and low == "byte-range":
            value = br_val
        out += [name.encode("ascii"), b": ", value.encode("utf-8"), b"\r\n"]
    if msg.has_content:
        out += [b"\r\n", body, b"\r\n"]
    out.append(end)
    return b"".join(out)


def build_response(
    tid: str,
    status: int,
    comment: str | None,
    to_path: Sequence[str],
    from_path: Sequence[str],
    headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """One response (see the stub; D14)."""
    t = _enc_tid(tid)
    status = operator.index(status)
    if not 0 <= status <= 999:
        raise ValueError(f"status code {status} is not three digits")
    start = b"MSRP %s %03d" % (t, status)
    if comment is not None:
        start += b" " + _enc_text("comment", comment)
    out = _head(start, to_path, from_path, headers)
    out.append(b"-------" + t + b"$\r\n")
    return b"".join(out)


def _fresh_tid(new_tid: Callable[[], str], data: bytes) -> str:
    """D15: an id from new_tid that does not occur in the chunk's data."""
    for _ in range(_TID_TRIES):
        tid = new_tid()
        t = _enc_tid(tid)
        if t not in data:
            return tid
    raise ValueError(f"new_tid returned {_TID_TRIES} ids that all occur in the chunk's data")


def chunk(
    new_tid: Callable[[], str],
    to_path: Sequence[str],
    from_path: Sequence[str],
    message_id: str,
    content_type: str,
    body: bytes,
    *,
    chunk_size: int = 2048,
    headers: Sequence[tuple[str, str]] = (),
) -> list[bytes]:
    """A SEND message split into chunks (see the stub; D15)."""
    chunk_size = operator.index(chunk_size)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, not {chunk_size}")
    data = bytes(body)
    total = len(data)
    out: list[bytes] = []
    for off in range(0, total, chunk_size) if total else (0,):
        piece = data[off : off + chunk_size]
        last = off + chunk_size >= total
        tid = _fresh_tid(new_tid, piece)
        # RFC 4975 section 7.1.1: 1-based, inclusive; 1-0/0 for an empty body
        byte_range = f"{off + 1}-{off + len(piece)}/{total}"
        hdrs = [("Message-ID", message_id), ("Byte-Range", byte_range), *headers]
        out.append(
            build_request(
                tid,
                "SEND",
                to_path,
                from_path,
                hdrs,
                content_type=content_type,
                body=piece,
                flag="$" if last else "+",
            )
        )
    return out
