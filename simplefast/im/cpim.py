"""Message/CPIM (RFC 3862), parsed only as far as a server needs, with bounds. Sans-IO.

Theory of operation
-------------------
A SIP MESSAGE whose Content-Type is ``message/cpim`` carries, as its body
(RFC 3862 §2; the ``Message/CPIM`` MIME header of §2.1 *is* the SIP
Content-Type, so it is not part of the body)::

    message headers          From, To, DateTime, NS, imdn.Message-ID, ...   (§2.2)
    <blank line>
    content headers          Content-Type, Content-Disposition, ...         (§2.4, MIME)
    <blank line>
    content                  the encapsulated object, to the end of the body

``parse_cpim(data)`` splits that into a :class:`CpimMessage` or raises
:class:`CpimError` (a ``RemoteProtocolError`` and a ``ValueError``; its text is
short and safe to quote in a SIP ``Warning`` header). Nothing else escapes it.
The server reads a few headers (IMDN, isComposing) and relays the body
untouched, so the parser keeps things as written:

- header names as written (``imdn.Message-ID``); values only trimmed of
  surrounding blanks. Header parameters (``Subject:;lang=fr text``, §3.1) stay
  in the value; :func:`split_header_params` separates them. The escapes of
  §2.3 (``\\"``, ``\\\\``, ``\\uXXXX``, ...) stay raw; :func:`unescape_value`
  decodes them on request. No header the server reads (Message-ID, DateTime,
  URIs, Disposition-Notification tokens) needs either.
- names are compared without regard to case (RFC 3862 writes them with fixed
  case; no two defined headers differ only in case, and clients are sloppy).
- namespaces (§3.3): an ``NS: prefix <uri>`` header binds ``prefix``; the
  unprefixed names are in ``urn:ietf:params:cpim-headers:`` unless an ``NS``
  header without prefix rebinds the default. Declarations apply to the whole
  header block (not only to the headers after them); a later declaration of
  the same prefix wins. :meth:`CpimMessage.get` resolves a name in a namespace:
  ``imdn.Message-ID`` with ``NS: imdn <urn:ietf:params:imdn>`` is
  ``get("Message-ID", "urn:ietf:params:imdn")``.
- the content runs to the end of the body. A ``Content-Length`` content
  header is not checked (RFC 5438 prints ``Content-length: ...``).

Accepted beyond the letter of RFC 3862, each for a reason:

- bare LF line ends as well as CRLF (hand-written clients);
- folded header lines (a line starting with SP/HTAB continues the previous
  header; MIME content headers may be folded, RFC 5322 §2.2.3; RFC 5438 §8.3
  prints one). The fold becomes one SP;
- the missing blank line of RFC 5438's examples (§7.1.1.3, §7.2.1.1, §8.1,
  §8.3 print the content headers straight after the message headers). When
  the first header block holds a header named ``Content-*`` (a MIME name; no
  CPIM message header is so named), the content headers start there and the
  content follows that block's blank line. ``strict=True`` refuses this.

Refused, cheapest check first: a body over ``max_bytes`` (413, RFC 3261
§21.4.11); more than ``max_headers`` headers in both blocks together; a header
block not ended by a blank line; header octets that are not UTF-8; control
characters (other than HTAB) or the non-characters U+FFFE/U+FFFF in a header
(§3.1 HEADERCHAR excludes controls; refusing them here also keeps every header
value safe to put into XML); a header line without a colon; a header name that
is not ``[prefix "."] Name`` of token characters (§3.1), or not a MIME
field-name for content headers; a malformed ``NS`` value. Work is linear in
the body size.

``build_cpim(...)`` is the serializer (NS headers first, then the others,
then ``Content-Type`` and the other content headers, then the body); it
refuses (``ValueError``) anything it could not read back unchanged, so
``parse_cpim(build_cpim(...))`` returns exactly what was given.
:meth:`CpimMessage.to_bytes` writes a parsed message back in canonical form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from simplefast.errors import QuotableError

#: The default namespace of unprefixed CPIM header names (RFC 3862 §3.3).
CPIM_NS = "urn:ietf:params:cpim-headers:"
#: The media type of a CPIM body.
CPIM_CT = "message/cpim"

DEFAULT_MAX_BYTES = 65536
DEFAULT_MAX_HEADERS = 64


# RFC 3862 §3.1: Name = 1*NAMECHAR, the token characters without ".";
# Header-name = [ Name-prefix "." ] Name.
_NAMECHARS = r"A-Za-z0-9!#$%&'*+\-^_`|~"
_CPIM_NAME = re.compile(rf"(?:[{_NAMECHARS}]+\.)?[{_NAMECHARS}]+")
_PREFIX = re.compile(rf"[{_NAMECHARS}]+")
# RFC 5322 §3.6.8 field-name = 1*ftext (printable US-ASCII but ":").
_MIME_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")
# §3.1 HEADERCHAR has no controls; HTAB is tolerated as white space.
_BAD_HEADER_CHAR = re.compile("[\x00-\x08\x0a-\x1f\x7f\ufffe\uffff]")
# NS: [ Name-prefix SP ] "<" URI ">"   (RFC 3862 §4.6)
_NS_VALUE = re.compile(rf"(?:([{_NAMECHARS}]+)[ \t]*)?<([^<>\s]+)>")
_BLANKS = " \t"


class CpimError(QuotableError, ValueError):
    """A message/cpim body we cannot read.

    Args:
        reason: what was wrong, in a few words; control characters, quotes and
            backslashes are replaced and it is cut to 160 characters, so it can go
            into a ``Warning: 399 host "reason"`` header as is.
        status_hint: the SIP status code to answer with (400, or 413 for size).
    """


def media_type(content_type: str | None) -> str | None:
    """The lowercased ``type/subtype`` of a Content-Type value, parameters dropped.

    Returns None for None or a value with nothing before the first ``;``.
    """
    if content_type is None:
        return None
    mt = content_type.split(";", 1)[0].strip(_BLANKS).lower()
    return mt or None


@dataclass(frozen=True, slots=True)
class CpimMessage:
    """One parsed message/cpim body.

    Attributes:
        headers: the message headers in order, as (name as written, trimmed
            value); the ``NS`` headers are among them.
        ns: prefix -> namespace URI from the ``NS`` headers; ``""`` is the
            default namespace (``CPIM_NS`` unless rebound).
        content_headers: the MIME headers of the encapsulated object, in order.
        body: the encapsulated content, byte for byte.
    """

    headers: tuple[tuple[str, str], ...]
    ns: dict[str, str] = field(hash=False)
    content_headers: tuple[tuple[str, str], ...]
    body: bytes

    def get_all(self, name: str, namespace: str = CPIM_NS) -> list[str]:
        """Every value of header ``name`` in ``namespace``, in order.

        Args:
            name: the header name without prefix, e.g. ``"Message-ID"``; case is ignored.
            namespace: the namespace URI the name belongs to (RFC 3862 §3.3).
        """
        prefixes = {p.lower(): uri for p, uri in self.ns.items()}
        want = name.lower()
        out = []
        for hname, value in self.headers:
            ns, local = _namespace_of(hname, prefixes)
            if ns == namespace and local.lower() == want:
                out.append(value)
        return out

    def get(self, name: str, namespace: str = CPIM_NS) -> str | None:
        """The first value of header ``name`` in ``namespace``, or None."""
        values = self.get_all(name, namespace)
        return values[0] if values else None

    def get_content(self, name: str) -> str | None:
        """The first value of content (MIME) header ``name``, case ignored, or None."""
        want = name.lower()
        for hname, value in self.content_headers:
            if hname.lower() == want:
                return value
        return None

    @property
    def content_type(self) -> str | None:
        """The lowercased media type of the content, without parameters, or None."""
        return media_type(self.get_content("Content-Type"))

    def to_bytes(self) -> bytes:
        """The message in canonical form (CRLF, both blank lines); parses back equal."""
        return _serialize(self.headers, self.content_headers, self.body)


def _namespace_of(name: str, prefixes: dict[str, str]) -> tuple[str | None, str]:
    """(namespace URI or None for an undeclared prefix, local name) of a header name."""
    prefix, dot, local = name.rpartition(".")
    if not dot:
        return prefixes.get("", CPIM_NS), name
    return prefixes.get(prefix.lower()), local


def _serialize(
    headers: tuple[tuple[str, str], ...] | list[tuple[str, str]],
    content_headers: tuple[tuple[str, str], ...] | list[tuple[str, str]],
    body: bytes,
) -> bytes:
    out = bytearray()
    for name, value in headers:
        out += f"{name}: {value}\r\n".encode()
    out += b"\r\n"
    for name, value in content_headers:
        out += f"{name}: {value}\r\n".encode()
    out += b"\r\n"
    out += body
    return bytes(out)


class _Reader:
    """Reads header blocks from a body, counting headers against one budget."""

    __slots__ = ("data", "pos", "line", "count", "max_headers")

    def __init__(self, data: bytes, max_headers: int) -> None:
        self.data = data
        self.pos = 0
        self.line = 0
        self.count = 0
        self.max_headers = max_headers

    def block(self, what: str) -> list[tuple[int, str, str]]:
        """Headers up to the next blank line, as (line number, name, value), unfolded."""
        data = self.data
        out: list[tuple[int, list[str]]] = []
        while True:
            nl = data.find(b"\n", self.pos)
            if nl < 0:
                raise CpimError(f"{what} not ended by a blank line (RFC 3862 §2)")
            raw = data[self.pos : nl]
            self.pos = nl + 1
            self.line += 1
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if not raw:
                break
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise CpimError(f"header line {self.line} is not UTF-8") from None
            if _BAD_HEADER_CHAR.search(text):
                raise CpimError(f"control character in header line {self.line}")
            if text[0] in _BLANKS:  # a folded line continues the previous header
                if not out:
                    raise CpimError(f"header line {self.line} continues no header")
                out[-1][1].append(text.strip(_BLANKS))
                continue
            self.count += 1
            if self.count > self.max_headers:
                raise CpimError(f"more than {self.max_headers} headers")
            out.append((self.line, [text]))
        headers = []
        for lineno, parts in out:
            text = " ".join(parts)
            name, colon, value = text.partition(":")
            if not colon:
                raise CpimError(f"header line {lineno} has no colon")
            if not _MIME_NAME.fullmatch(name):
                raise CpimError(f"invalid header name on line {lineno}")
            headers.append((lineno, name, value.strip(_BLANKS)))
        return headers


def parse_cpim(
    data: bytes | bytearray | memoryview,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_headers: int = DEFAULT_MAX_HEADERS,
    strict: bool = False,
) -> CpimMessage:
    """Parse a message/cpim body (the SIP body, RFC 3862 §2).

    Args:
        data: the body as received.
        max_bytes: largest body accepted (413 above it).
        max_headers: most headers accepted, message and content headers together.
        strict: refuse a body whose content headers follow the message headers
            without a blank line (RFC 5438's examples; accepted by default).

    Returns:
        The message headers, namespaces, content headers and content.

    Raises:
        CpimError: for anything listed under "Refused" in the module docstring.
    """
    size = data.nbytes if isinstance(data, memoryview) else len(data)
    if size > max_bytes:  # before copying anything
        raise CpimError(f"CPIM body of {size} bytes exceeds {max_bytes}", 413)
    raw = bytes(data)
    reader = _Reader(raw, max_headers)
    first = reader.block("message headers")
    split = None
    if not strict:
        split = next((i for i, (_, n, _) in enumerate(first) if n.lower().startswith("content-")), None)
    if split is None:
        message = first
        content = reader.block("content headers")
    else:  # RFC 5438's examples: no blank line between the two blocks
        message, content = first[:split], first[split:]
    ns = {"": CPIM_NS}
    for lineno, name, value in message:
        if not _CPIM_NAME.fullmatch(name):
            raise CpimError(f"invalid CPIM header name on line {lineno} (RFC 3862 §3.1)")
        if name.lower() == "ns":
            m = _NS_VALUE.fullmatch(value)
            if m is None:
                raise CpimError(f"malformed NS header on line {lineno} (RFC 3862 §4.6)")
            ns[m.group(1) or ""] = m.group(2)
    return CpimMessage(
        headers=tuple((n, v) for _, n, v in message),
        ns=ns,
        content_headers=tuple((n, v) for _, n, v in content),
        body=raw[reader.pos :],
    )


def _check_value(what: str, value: str) -> None:
    if _BAD_HEADER_CHAR.search(value) or value != value.strip(_BLANKS):
        raise ValueError(f"{what} {value!r} has control characters or surrounding blanks")


def build_cpim(
    headers: list[tuple[str, str]],
    content_type: str,
    body: bytes,
    *,
    ns: dict[str, str] | None = None,
    content_headers: list[tuple[str, str]] | None = None,
) -> bytes:
    """Serialize a message/cpim body.

    Args:
        headers: message headers in order (name as it should be written, value).
        content_type: the Content-Type of the content, e.g. ``"text/plain; charset=utf-8"``.
        body: the content.
        ns: prefix -> namespace URI, written as ``NS`` headers before the others
            (``""`` rebinds the default namespace).
        content_headers: more MIME headers, written after Content-Type.

    Returns:
        NS headers, the headers, a blank line, Content-Type and the content
        headers, a blank line, the body; lines end in CRLF.

    Raises:
        ValueError: for a name or value that would not read back unchanged: a
            name outside RFC 3862 §3.1 (message headers) or RFC 5322 (content
            headers), a ``Content-*`` message header, a value with control
            characters or surrounding blanks, a second Content-Type.
    """
    lines: list[tuple[str, str]] = []
    for prefix, uri in (ns or {}).items():
        if prefix and not _PREFIX.fullmatch(prefix):
            raise ValueError(f"invalid namespace prefix {prefix!r}")
        if not uri or re.search(r"[<>\s]", uri) or _BAD_HEADER_CHAR.search(uri):
            raise ValueError(f"invalid namespace URI {uri!r}")
        lines.append(("NS", f"{prefix} <{uri}>" if prefix else f"<{uri}>"))
    for name, value in headers:
        if not _CPIM_NAME.fullmatch(name) or name.lower().startswith("content-"):
            raise ValueError(f"invalid CPIM header name {name!r}")
        _check_value(f"header {name}", value)
        lines.append((name, value))
    mime = [("Content-Type", content_type), *(content_headers or [])]
    for i, (name, value) in enumerate(mime):
        if not _MIME_NAME.fullmatch(name) or (i and name.lower() == "content-type"):
            raise ValueError(f"invalid or repeated content header name {name!r}")
        _check_value(f"content header {name}", value)
    return _serialize(lines, mime, body)


def split_header_params(value: str) -> tuple[dict[str, str], str]:
    """Separate the parameters written before a header value (RFC 3862 §3.1).

    ``Subject:;lang=fr beau temps`` has the value ``;lang=fr beau temps``, which
    splits into ``({"lang": "fr"}, "beau temps")``. Parameter names are
    lowercased; a quoted parameter value is kept with its quotes. A value that
    does not start with ``;`` has no parameters; a malformed parameter list is
    returned untouched as ``({}, value)``. Never raises.
    """
    params: dict[str, str] = {}
    rest = value
    while rest.startswith(";"):
        m = re.match(r';([^=\s;]+)=("(?:[^"\\]|\\.)*"|[^\s;"]+)', rest)
        if m is None:
            return {}, value
        params[m.group(1).lower()] = m.group(2)
        rest = rest[m.end() :]
    if params and rest and rest[0] not in _BLANKS + ";":
        return {}, value
    return params, rest.strip(_BLANKS)


_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "b": "\b", "t": "\t", "n": "\n", "r": "\r"}
_ESCAPE = re.compile(r"\\(u[0-9A-Fa-f]{4}|.)", re.DOTALL)


def unescape_value(value: str) -> str:
    """Decode the character escapes of RFC 3862 §2.3 in a header value.

    ``\\\\``, ``\\"``, ``\\'``, ``\\b``, ``\\t``, ``\\n``, ``\\r`` and ``\\uXXXX``
    are decoded; any other backslash pair is kept as written. The result may
    hold control characters: it is for display, not for writing back into a
    header. Never raises.
    """

    def one(m: re.Match[str]) -> str:
        esc = m.group(1)
        if len(esc) == 5:
            return chr(int(esc[1:], 16))
        return _ESCAPES.get(esc, m.group(0))

    return _ESCAPE.sub(one, value)
