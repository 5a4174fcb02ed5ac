"""The MESSAGE URI-list service of RFC 5365: expand a multiple-recipient MESSAGE, sans-IO.

Theory of operation
===================

A UAC that wants one MESSAGE delivered to many recipients sends it once to the
MESSAGE URI-list service, with ``Require: recipient-list-message`` (RFC 5365
section 5) and a ``multipart/mixed`` body of two parts (RFC 5365 section 6):
the payload, and the URI list, an ``application/resource-lists+xml`` document
(RFC 4826, the default list format, RFC 5365 section 4) marked
``Content-Disposition: recipient-list`` (RFC 5363). The IM agent
(``simplefast/im/agent.py``) checks the method and the option tag, calls
:func:`expand`, answers 202, and sends every recipient its own MESSAGE with the
body :func:`forwarded_body` builds (RFC 5365 section 7). Nothing here touches a
socket, a clock or a store: bytes in, a value or a :class:`UriListError` out.

``expand()``, cheapest check first; the first failure raises:

1. size: a body over ``max_bytes`` -> 413 (RFC 3261 section 21.4.11);
2. the request's Content-Type must be ``multipart/mixed`` with a valid
   ``boundary`` (RFC 2046 section 5.1.1: 1 to 70 characters of ``bchars``,
   quoted or not) -> 415 (RFC 3261 section 21.4.13) for another type, 400 for a
   bad parameter;
3. the body is split on its delimiters (RFC 2046 section 5.1.1): the preamble
   before the first ``--boundary`` line and the epilogue after the closing
   ``--boundary--`` are ignored, the CRLF before each delimiter belongs to the
   delimiter, a delimiter line may carry trailing blanks (transport padding).
   A line that starts with ``--boundary`` but is no delimiter is refused (the
   boundary "must not appear ... as the prefix of any line" of a part): two
   parsers must never disagree on where a part ends. Bounded: at most
   ``MAX_PARTS`` parts, ``MAX_PART_HEADER_BYTES`` of headers each, CRLF line
   ends only. Any deviation -> 400;
4. the parts are sorted: the one with ``Content-Disposition: recipient-list``
   is the list and must be ``application/resource-lists+xml`` (the only list
   format we take: 415 otherwise, with ``accept`` set for the Accept header,
   RFC 3261 section 21.4.13), in identity/7bit/8bit/binary coding (415
   otherwise); exactly one other part is the payload, passed on untouched with
   its MIME headers. No list part -> 400, or 415 when a resource-lists part is
   there but without the ``recipient-list`` disposition (a disposition we do
   not understand, RFC 3261 section 20.11); two list parts or two payloads ->
   400;
5. the list is parsed by the server's hardened parser (``xmlsafe.parse_xml``:
   no DTD, no entities, no network, bounded size and depth); its refusal keeps
   its status (400, or 413 for size);
6. the document is walked in order (RFC 4826 section 3.1): every ``<list>`` of
   ``<resource-lists>``, nested ``<list>`` flattened up to ``MAX_LIST_DEPTH``
   levels, each ``<entry uri>`` with its ``<display-name>`` and the RFC 5364
   section 4 attributes ``cp:copyControl`` (``to``/``cc``/``bcc``, default
   ``to``) and ``cp:anonymize`` (xs:boolean, default false). Elements of other
   namespaces are extensions and are skipped (the schema's ``xs:any
   ##other``). ``<entry-ref>`` and ``<external>`` point into an XCAP store or
   at an arbitrary URL; this service resolves neither (RFC 5365 section 4 asks
   UAs for flat lists of entries; fetching a URL named by a request is an
   amplification and SSRF hazard, RFC 5363 security considerations) -> 403;
7. each entry URI must be a ``sip``, ``sips``, ``tel`` (RFC 3966) or ``im``
   (RFC 3860, a MESSAGE may target one, RFC 3428) URI without URI headers, at
   most ``MAX_URI_CHARS`` long; anything else -> 400 naming it;
8. duplicates are removed (RFC 5363: a URI-list service avoids sending the
   same request twice to one destination): sip/sips URIs compare by RFC 3261
   section 19.1.4 (``SipURI.equivalent``: scheme and host case-insensitive,
   user case-sensitive, %HH escapes decoded, ``user``/``ttl``/``method``/
   ``maddr``/``transport`` must match, other parameters only when in both),
   tel URIs by RFC 3966 section 4 (visual separators ignored, parameters
   compared case-insensitively in any order), im URIs by local part
   (case-sensitive) and domain (case-insensitive). The first occurrence keeps
   its place; the merged entry takes the more private copy control
   (``bcc`` > ``cc`` > ``to``) and anonymize if either asked for it, so a
   duplicate can never disclose what one of its copies hid;
9. more than ``max_recipients`` distinct recipients -> 403 "Too Many
   Recipients". No RFC names a code: RFC 5363 lets a URI-list service limit the
   size of the lists it accepts (amplification). 403 says "the server
   understood, and refuses; do not repeat as is"; 413 would say the body is
   too large, which it is not (the byte bound is separate), and invites a
   retry with a Retry-After. An empty list -> 400.

``forwarded_body()`` builds the body of the MESSAGE to one recipient (RFC 5365
section 7.3; RFC 5364 sections 3 and 4): the URI list itself is never
forwarded; when the list has ``to`` or ``cc`` recipients, the payload goes out
as the first part of a ``multipart/mixed`` body whose second part is a
``recipient-list-history`` list (``Content-Disposition:
recipient-list-history; handling=optional``, registered by RFC 5364). That
list holds every ``to`` recipient, then every ``cc`` recipient, each with its
copy control and display name; ``bcc`` recipients never appear; anonymized
ones are not named but counted: one ``sip:anonymous@anonymous.invalid`` entry
per copy control with ``cp:count`` (RFC 5364 section 4, the RFC 5365 section 9
Figure 3 example, which this reproduces). With no ``to``/``cc`` recipient the
payload goes out alone, with its own Content-Type. The history document is
the same for every recipient and is built once per expansion (a small LRU
cache keyed by the recipient tuple).
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias
from urllib.parse import unquote

from lxml import etree  # type: ignore[import-untyped]

from simplefast._impl import sipmsg as _codec
from simplefast._sip_types import SipURI
from simplefast.errors import LocalProtocolError, RemoteProtocolError, SipParseError
from simplefast.presence.xmlsafe import XmlRejected, parse_xml

__all__ = [
    "ANONYMOUS_URI",
    "CP_NS",
    "RL_NS",
    "CopyControl",
    "Expansion",
    "Recipient",
    "UriListError",
    "expand",
    "forwarded_body",
]

CopyControl: TypeAlias = Literal["to", "cc", "bcc"]

#: RFC 4826 section 3.2 namespace of ``<resource-lists>``.
RL_NS = "urn:ietf:params:xml:ns:resource-lists"
#: RFC 5364 section 5 namespace of the copy control attributes.
CP_NS = "urn:ietf:params:xml:ns:copycontrol"
#: The URI standing for anonymized recipients in a history list (RFC 5364 section 4,
#: RFC 5365 section 9 Figure 3; the anonymous URI of RFC 3323 section 4.1.1.3).
ANONYMOUS_URI = "sip:anonymous@anonymous.invalid"

RESOURCE_LISTS_TYPE = "application/resource-lists+xml"
MAX_PARTS = 8  # body parts of the incoming multipart/mixed (we need two)
MAX_PART_HEADER_BYTES = 4096  # MIME headers of one part
MAX_LIST_DEPTH = 8  # <list> nesting levels flattened
MAX_URI_CHARS = 1024  # one entry URI
_MAX_PARAMS = 16  # parameters of one Content-Type / Content-Disposition value
_REASON_MAX = 160

_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
}
_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\]+')

_RL = "{" + RL_NS + "}"
_CP_COPY = "{" + CP_NS + "}copyControl"
_CP_ANON = "{" + CP_NS + "}anonymize"
_CP_COUNT = "{" + CP_NS + "}count"
_COPY_VALUES: dict[str, CopyControl] = {"to": "to", "cc": "cc", "bcc": "bcc"}
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}  # xs:boolean lexical space
_PRIVACY = {"to": 0, "cc": 1, "bcc": 2}  # merge of duplicates keeps the most private

_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WS = " \t"
# RFC 2046 section 5.1.1: bchars, 1 to 70 of them, the last not a space.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_BCHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ")
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 3966 section 3: global or local number, then ;parameters.
_TEL = re.compile(
    r"(?P<num>\+[0-9\-.()]*[0-9][0-9\-.()]*|[0-9A-Fa-f*#\-.()]*[0-9A-Fa-f*#][0-9A-Fa-f*#\-.()]*)"
    r"(?P<params>(?:;[A-Za-z0-9\-]+(?:=[A-Za-z0-9\-_.!~*'()\[\]/:&+$%]+)?)*)"
)
_TEL_SEPARATORS = str.maketrans("", "", "-.()")
# RFC 3860 section 3 (an RFC 2822 addr-spec, dot-atom local part, %HH allowed).
_IM = re.compile(
    r"(?P<local>[A-Za-z0-9!#$&'*+\-/=^_`{|}~.%]+)@(?P<domain>[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9])?)"
)

Element: TypeAlias = Any  # an lxml element; lxml ships no types (see xmlsafe)


def _unescape(s: str) -> str:
    """%HH escapes decoded (RFC 3261 section 19.1.4 and RFC 3966 section 4 compare unescaped)."""
    return unquote(s, errors="surrogateescape") if "%" in s else s


class UriListError(RemoteProtocolError):
    """A multiple-recipient MESSAGE we refuse; nothing was sent because of it.

    Args:
        message: what was wrong, where, which limit; cleaned of control
            characters, quotes and backslashes and cut to 160 characters, so
            ``str(exc)`` can go into a ``Warning: 399 host "..."`` header as is.
        status: the SIP status code to answer with (400, 403, 413 or 415).
        reason: the reason phrase; the RFC 3261 phrase of ``status`` if None.
        accept: for a 415, the value of the Accept header the answer must carry
            (RFC 3261 section 21.4.13); None otherwise.

    Attributes:
        status: as above (also ``status_hint``, as for every protocol error).
        reason: the reason phrase of the status line.
        accept: as above.
    """

    status: int
    reason: str
    accept: str | None

    def __init__(
        self, message: str, status: int = 400, reason: str | None = None, accept: str | None = None
    ) -> None:
        message = _UNSAFE.sub(" ", message).strip()
        if len(message) > _REASON_MAX:
            message = message[: _REASON_MAX - 3] + "..."
        super().__init__(message, status)
        self.status = status
        self.reason = reason if reason is not None else _REASONS.get(status, "Bad Request")
        self.accept = accept

    def __reduce__(self) -> tuple[type, tuple[str, int, str, str | None]]:  # type: ignore[override]
        return (type(self), (str(self), self.status, self.reason, self.accept))


@dataclass(frozen=True, slots=True)
class Recipient:
    """One distinct recipient of the list.

    Attributes:
        uri: the entry's ``uri`` attribute, surrounding blanks removed (xs:anyURI
            collapses whitespace); the Request-URI of its MESSAGE.
        display: the entry's ``<display-name>`` text, None when absent.
        copy: its RFC 5364 ``copyControl`` role: "to" (the default), "cc" or "bcc".
        anonymize: RFC 5364 ``anonymize``: never name it to the other recipients.
    """

    uri: str
    display: str | None = None
    copy: CopyControl = "to"
    anonymize: bool = False

    def __post_init__(self) -> None:
        if self.copy not in _PRIVACY:
            raise ValueError(f"copy must be 'to', 'cc' or 'bcc', not {self.copy!r}")


@dataclass(frozen=True, slots=True)
class Expansion:
    """An accepted multiple-recipient MESSAGE.

    Attributes:
        recipients: the distinct recipients, in list order (duplicates merged).
        payload_type: the Content-Type of the payload part (``text/plain;
            charset=us-ascii`` when the part has none, RFC 2045 section 5.2).
        payload_headers: the payload part's other MIME headers (name as written,
            unfolded value), in order; when the payload is forwarded alone they
            belong in the outgoing request's header (Content-ID,
            Content-Disposition, ...).
        payload: the payload part's body, byte for byte.
    """

    recipients: tuple[Recipient, ...]
    payload_type: str
    payload_headers: tuple[tuple[str, str], ...]
    payload: bytes


# ------------------------------------------------------------------ header values


def _skip_ws(s: str, i: int) -> int:
    n = len(s)
    while i < n and s[i] in _WS:
        i += 1
    return i


def _parse_value(value: str, what: str) -> tuple[str, dict[str, str]]:
    """``main *(";" name ["=" token / quoted-string])`` (RFC 2045 section 5.1,
    RFC 2183 section 2, RFC 3261 section 20.11); main and names lower-cased."""
    n = len(value)
    i = _skip_ws(value, 0)
    j = i
    while j < n and (value[j] in _TOKEN or value[j] == "/"):
        j += 1
    main = value[i:j].lower()
    if not main:
        raise UriListError(f"{what} {value[:40]!r} has no value")
    params: dict[str, str] = {}
    i = _skip_ws(value, j)
    while i < n:
        if value[i] != ";":
            raise UriListError(f"{what}: unexpected {value[i]!r} at offset {i}")
        i = _skip_ws(value, i + 1)
        j = i
        while j < n and value[j] in _TOKEN:
            j += 1
        name = value[i:j].lower()
        if not name:
            raise UriListError(f"{what}: empty parameter at offset {i}")
        i = _skip_ws(value, j)
        pval = ""
        if i < n and value[i] == "=":
            i = _skip_ws(value, i + 1)
            if i < n and value[i] == '"':
                buf: list[str] = []
                i += 1
                while True:
                    if i >= n:
                        raise UriListError(f"{what}: unterminated quoted value of {name}")
                    c = value[i]
                    if c == "\\" and i + 1 < n:
                        buf.append(value[i + 1])
                        i += 2
                    elif c == '"':
                        i += 1
                        break
                    else:
                        buf.append(c)
                        i += 1
                pval = "".join(buf)
            else:
                j = i
                while j < n and value[j] in _TOKEN:
                    j += 1
                pval = value[i:j]
                if not pval:
                    raise UriListError(f"{what}: parameter {name} has an empty value")
                i = j
        if name in params:
            raise UriListError(f"{what}: parameter {name} appears twice")
        if len(params) >= _MAX_PARAMS:
            raise UriListError(f"{what}: more than {_MAX_PARAMS} parameters")
        params[name] = pval
        i = _skip_ws(value, i)
    return main, params


def _media_type(value: str, what: str) -> tuple[str, dict[str, str]]:
    main, params = _parse_value(value, what)
    top, slash, sub = main.partition("/")
    if not top or not slash or not sub or "/" in sub:
        raise UriListError(f"{what} {value[:40]!r} is not a type/subtype")
    return main, params


# ------------------------------------------------------------------ multipart


def _boundary_of(content_type: str | None) -> str:
    """The boundary of a ``multipart/mixed`` Content-Type (RFC 2046 section 5.1.1)."""
    accept = "multipart/mixed"
    if content_type is None or not content_type.strip():
        raise UriListError("no Content-Type: multipart/mixed with a URI list expected", 415, accept=accept)
    main, params = _media_type(content_type, "Content-Type")
    if main != "multipart/mixed":  # RFC 5365 section 6
        raise UriListError(f"Content-Type {main} is not multipart/mixed with a URI list", 415, accept=accept)
    boundary = params.get("boundary")
    if boundary is None:
        raise UriListError("multipart/mixed without a boundary parameter")
    if not _BOUNDARY.fullmatch(boundary):
        raise UriListError("multipart boundary is not 1-70 RFC 2046 bchars")
    return boundary


def _split_multipart(body: bytes, boundary: str) -> list[bytes]:
    """The parts of a multipart body, preamble and epilogue dropped (RFC 2046 section 5.1.1)."""
    dash = b"--" + boundary.encode("ascii")
    if body.startswith(dash):
        pos = 0  # no preamble: the first delimiter needs no CRLF before it
    else:
        at = body.find(b"\r\n" + dash)
        if at < 0:
            raise UriListError("no --boundary delimiter line in the multipart body")
        pos = at + 2
    parts: list[bytes] = []
    n = len(body)
    while True:
        after = pos + len(dash)
        if body.startswith(b"--", after):  # the close-delimiter
            end = after + 2
            while end < n and body[end] in b" \t":
                end += 1
            if end != n and not body.startswith(b"\r\n", end):
                raise UriListError(f"junk after the closing delimiter (offset {end})")
            if not parts:
                raise UriListError("multipart body has no parts")
            return parts
        end = after
        while end < n and body[end] in b" \t":  # transport padding
            end += 1
        if not body.startswith(b"\r\n", end):
            if body.startswith(b"\n", end):
                raise UriListError(f"delimiter line ends in a bare LF, CRLF required (offset {pos})")
            raise UriListError(f"a line starts with the boundary but is no delimiter (offset {pos})")
        start = end + 2
        nxt = body.find(b"\r\n" + dash, start - 2)
        if nxt < 0:
            raise UriListError("no closing --boundary-- delimiter")
        if nxt < start:
            raise UriListError(f"empty body part at offset {start}")
        if len(parts) >= MAX_PARTS:
            raise UriListError(f"more than {MAX_PARTS} body parts")
        parts.append(body[start:nxt])
        pos = nxt + 2


def _split_part(part: bytes, index: int) -> tuple[list[tuple[str, str]], bytes]:
    """A part's MIME headers (unfolded) and its body."""
    if part.startswith(b"\r\n"):
        return [], part[2:]  # no headers: text/plain (RFC 2046 section 5.1)
    sep = part.find(b"\r\n\r\n", 0, MAX_PART_HEADER_BYTES + 4)
    if sep < 0:
        if len(part) > MAX_PART_HEADER_BYTES:
            raise UriListError(f"headers of part {index} exceed {MAX_PART_HEADER_BYTES} bytes")
        raise UriListError(f"part {index} has no empty line after its headers")
    try:
        block = part[:sep].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UriListError(f"headers of part {index}: invalid UTF-8 at byte {exc.start}") from None
    headers: list[tuple[str, str]] = []
    for line in block.split("\r\n"):
        if "\r" in line or "\n" in line or "\x00" in line:
            raise UriListError(f"headers of part {index}: bare CR, LF or NUL")
        if line[:1] in (" ", "\t"):  # folded continuation (RFC 5322 section 2.2.3)
            if not headers:
                raise UriListError(f"headers of part {index} start with a continuation line")
            name, value = headers[-1]
            headers[-1] = (name, (value + " " + line.strip(_WS)).strip(_WS))
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(_WS)
        if not colon or not _HEADER_NAME.fullmatch(name.encode("ascii", "replace")):
            raise UriListError(f"headers of part {index}: malformed line {line[:40]!r}")
        headers.append((name, value.strip(_WS)))
    return headers, part[sep + 4 :]


@dataclass(slots=True)
class _Part:
    index: int
    headers: list[tuple[str, str]]
    body: bytes
    ctype: str | None  # the Content-Type value as written
    disposition: str | None  # the disposition type, lower-cased

    def header(self, name: str) -> str | None:
        found = [v for n, v in self.headers if n.lower() == name]
        if len(found) > 1:
            raise UriListError(f"part {self.index} has {len(found)} {name} headers")
        return found[0] if found else None


def _part(raw: bytes, index: int) -> _Part:
    headers, body = _split_part(raw, index)
    p = _Part(index, headers, body, None, None)
    p.ctype = p.header("content-type")
    if p.ctype is not None:
        _media_type(p.ctype, f"Content-Type of part {index}")
    disp = p.header("content-disposition")
    if disp is not None:
        p.disposition = _parse_value(disp, f"Content-Disposition of part {index}")[0]
        if "/" in p.disposition:  # RFC 2183 section 2: a token
            raise UriListError(f"Content-Disposition of part {index} is not a disposition type")
    return p


def _main_type(p: _Part) -> str | None:
    return None if p.ctype is None else _media_type(p.ctype, "Content-Type")[0]


def _sort_parts(parts: list[_Part]) -> tuple[_Part, _Part]:
    """(list part, payload part), per RFC 5365 section 6 and RFC 5363."""
    lists = [p for p in parts if p.disposition == "recipient-list"]
    others = [p for p in parts if p.disposition != "recipient-list"]
    if len(lists) > 1:
        raise UriListError(f"{len(lists)} parts with Content-Disposition: recipient-list, one expected")
    if not lists:
        for p in others:
            if _main_type(p) == RESOURCE_LISTS_TYPE:
                # RFC 3261 section 20.11: a disposition not understood -> 415
                raise UriListError(
                    f"the resource-lists part (part {p.index}) lacks Content-Disposition: recipient-list",
                    415,
                    accept="multipart/mixed",
                )
        raise UriListError("no part with Content-Disposition: recipient-list")
    lst = lists[0]
    if _main_type(lst) != RESOURCE_LISTS_TYPE:  # RFC 5365 section 4: the list format we take
        raise UriListError(
            f"recipient-list part is {lst.ctype or 'untyped'}, not {RESOURCE_LISTS_TYPE}",
            415,
            accept=RESOURCE_LISTS_TYPE,
        )
    cte = (lst.header("content-transfer-encoding") or "binary").strip().lower()
    if cte not in ("binary", "8bit", "7bit"):
        what = f"recipient-list part in Content-Transfer-Encoding {cte[:20]}"
        raise UriListError(what, 415, accept=RESOURCE_LISTS_TYPE)
    cenc = (lst.header("content-encoding") or "identity").strip().lower()
    if cenc != "identity":
        what = f"recipient-list part in Content-Encoding {cenc[:20]}"
        raise UriListError(what, 415, accept=RESOURCE_LISTS_TYPE)
    if len(others) != 1:
        raise UriListError(f"{len(others)} payload parts besides the list, exactly one expected")
    return lst, others[0]


# ------------------------------------------------------------------ the list


def _uri_key(uri: str) -> tuple[tuple[str, ...], SipURI | None]:
    """Validate an entry URI; return its dedup bucket key and, for sip/sips, the
    parsed URI to compare within the bucket (RFC 3261 section 19.1.4 is not a
    plain key: a parameter present on one side only is ignored)."""
    shown = uri[:64]
    if not uri:
        raise UriListError("an entry has an empty uri")
    if len(uri) > MAX_URI_CHARS:
        raise UriListError(f"entry URI {shown!r}... longer than {MAX_URI_CHARS} characters")
    scheme, colon, rest = uri.partition(":")
    scheme = scheme.lower()
    if scheme in ("sip", "sips"):
        try:
            parsed = _codec.parse_uri(uri)
        except (SipParseError, ValueError) as exc:
            raise UriListError(f"entry URI {shown!r} is not a valid SIP URI: {exc}") from None
        if parsed.headers:  # RFC 3261 section 19.1.5: no headers in a Request-URI
            raise UriListError(f"entry URI {shown!r} carries URI headers")
        key = (
            parsed.scheme,
            _unescape(parsed.user or ""),
            "" if parsed.user is None else "@",
            _unescape(parsed.password or ""),
            (parsed.host or "").lower(),
            str(parsed.port),
        )
        return key, parsed
    if scheme == "tel" and colon:
        m = _TEL.fullmatch(rest)
        if m is None:
            raise UriListError(f"entry URI {shown!r} is not a valid tel URI (RFC 3966)")
        num = m.group("num")
        params = sorted(
            (name.lower(), _unescape(val).lower())
            for name, _, val in (p.partition("=") for p in m.group("params").split(";")[1:])
        )
        if num[0] != "+" and not any(name == "phone-context" for name, _ in params):
            raise UriListError(f"entry URI {shown!r}: a local tel number needs phone-context")
        # RFC 3966 section 4: visual separators do not count, hex digits ignore case
        return ("tel", num.translate(_TEL_SEPARATORS).lower(), *(f"{n}={v}" for n, v in params)), None
    if scheme == "im" and colon:
        m = _IM.fullmatch(rest)
        if m is None:
            raise UriListError(f"entry URI {shown!r} is not a valid im URI (RFC 3860)")
        return ("im", _unescape(m.group("local")), m.group("domain").lower()), None
    raise UriListError(f"entry URI {shown!r} is not a sip, sips, tel or im URI")


def _entry(el: Element, where: str) -> Recipient:
    uri = el.get("uri")
    if uri is None:
        raise UriListError(f"{where}: <entry> without a uri attribute")
    uri = uri.strip()  # xs:anyURI collapses whitespace
    display: str | None = None
    for child in el:
        if child.tag == _RL + "display-name":
            if display is not None:
                raise UriListError(f"{where}: <entry> with two <display-name>")
            display = child.text or ""
    raw_copy = el.get(_CP_COPY)
    copy: CopyControl = "to"  # RFC 5364 section 4: the default
    if raw_copy is not None:
        found = _COPY_VALUES.get(raw_copy.strip())
        if found is None:
            raise UriListError(f"{where}: copyControl {raw_copy[:20]!r} is not to, cc or bcc")
        copy = found
    raw_anon = el.get(_CP_ANON)
    anonymize = False
    if raw_anon is not None:
        flag = _BOOLEANS.get(raw_anon.strip())
        if flag is None:
            raise UriListError(f"{where}: anonymize {raw_anon[:20]!r} is not a boolean")
        anonymize = flag
    return Recipient(uri, display, copy, anonymize)


def _walk(root: Element) -> list[Recipient]:
    """Entries in document order; a recursive walk bounded by ``MAX_LIST_DEPTH``."""
    if root.tag != _RL + "resource-lists":
        raise UriListError(f"list root is {str(root.tag)[:60]}, not <resource-lists> of {RL_NS}")
    out: list[Recipient] = []
    for child in root:
        tag = child.tag
        if not isinstance(tag, str) or not tag.startswith(_RL):
            continue
        if tag != _RL + "list":
            raise UriListError(f"unexpected <{tag[len(_RL) :]}> in <resource-lists>")
        _walk_list(child, 1, out)
    return out


def _walk_list(lst: Element, depth: int, out: list[Recipient]) -> None:
    if depth > MAX_LIST_DEPTH:
        raise UriListError(f"lists nested deeper than {MAX_LIST_DEPTH}")
    for child in lst:
        tag = child.tag
        if not isinstance(tag, str) or not tag.startswith(_RL):
            continue  # an extension element of another namespace (xs:any ##other)
        local = tag[len(_RL) :]
        if local == "entry":
            out.append(_entry(child, f"entry at line {child.sourceline}"))
        elif local == "list":
            _walk_list(child, depth + 1, out)
        elif local in ("entry-ref", "external"):
            raise UriListError(
                f"<{local}> at line {child.sourceline} cannot be resolved by this service; "
                "send a flat list of <entry> (RFC 5365 section 4)",
                403,
            )
        elif local != "display-name":
            raise UriListError(f"unexpected <{local}> at line {child.sourceline}")


def _dedupe(entries: list[Recipient]) -> list[Recipient]:
    """Distinct recipients in first-seen order (RFC 5363; equality as in the module docstring)."""
    out: list[Recipient] = []
    buckets: dict[tuple[str, ...], list[tuple[int, SipURI | None]]] = {}
    for r in entries:
        key, parsed = _uri_key(r.uri)
        bucket = buckets.setdefault(key, [])
        for idx, other in bucket:
            if parsed is None or other is None or parsed.equivalent(other):
                first = out[idx]
                out[idx] = Recipient(
                    first.uri,
                    first.display if first.display is not None else r.display,
                    first.copy if _PRIVACY[first.copy] >= _PRIVACY[r.copy] else r.copy,
                    first.anonymize or r.anonymize,
                )
                break
        else:
            bucket.append((len(out), parsed))
            out.append(r)
    return out


# ------------------------------------------------------------------ public API


def expand(
    content_type: str | None, body: bytes, *, max_recipients: int = 100, max_bytes: int = 65536
) -> Expansion:
    """Take a multiple-recipient MESSAGE apart (RFC 5365 sections 4, 6 and 7.1).

    Args:
        content_type: the request's Content-Type header value (None if absent).
        body: the request body.
        max_recipients: most distinct recipients accepted (403 above it).
        max_bytes: largest body accepted (413 above it).

    Returns:
        The distinct recipients and the payload to forward to each.

    Raises:
        UriListError: 400 malformed body, multipart or list; 403 too many
            recipients, or an ``<entry-ref>``/``<external>`` we do not resolve;
            413 body too large; 415 not multipart/mixed, or a list in another
            format or coding (``accept`` says what to put in Accept).
    """
    body = bytes(body)
    if len(body) > max_bytes:
        raise UriListError(f"body of {len(body)} bytes exceeds {max_bytes}", 413)
    boundary = _boundary_of(content_type)
    if not body:
        raise UriListError("empty body: a payload and a URI list expected")
    parts = [_part(raw, i + 1) for i, raw in enumerate(_split_multipart(body, boundary))]
    lst, payload = _sort_parts(parts)
    try:
        root = parse_xml(lst.body, max_bytes=max_bytes)
    except XmlRejected as exc:
        raise UriListError(f"URI list: {exc}", exc.status_hint) from exc
    recipients = _dedupe(_walk(root))
    if not recipients:
        raise UriListError("the URI list has no entries")
    if len(recipients) > max_recipients:
        raise UriListError(
            f"{len(recipients)} recipients, limit {max_recipients}", 403, reason="Too Many Recipients"
        )
    return Expansion(
        recipients=tuple(recipients),
        payload_type=payload.ctype if payload.ctype is not None else "text/plain; charset=us-ascii",
        payload_headers=tuple((n, v) for n, v in payload.headers if n.lower() != "content-type"),
        payload=payload.body,
    )


@functools.lru_cache(maxsize=64)
def _history_xml(recipients: tuple[Recipient, ...]) -> bytes | None:
    """The recipient-list-history document (RFC 5364 sections 3 and 4), or None
    when no recipient is to or cc."""
    shown: dict[str, list[Recipient]] = {"to": [], "cc": []}
    hidden = {"to": 0, "cc": 0}
    for r in recipients:
        if r.copy == "bcc":
            continue  # RFC 5364: bcc recipients are never disclosed
        if r.anonymize:
            hidden[r.copy] += 1  # RFC 5364 section 4: replaced by a counted anonymous entry
        else:
            shown[r.copy].append(r)
    if not (shown["to"] or shown["cc"] or hidden["to"] or hidden["cc"]):
        return None
    root = etree.Element(_RL + "resource-lists", nsmap={None: RL_NS, "cp": CP_NS})
    lst = etree.SubElement(root, _RL + "list")
    for copy in ("to", "cc"):
        for r in shown[copy]:
            entry = etree.SubElement(lst, _RL + "entry")
            entry.set("uri", r.uri)
            entry.set(_CP_COPY, copy)
            if r.display is not None:
                etree.SubElement(entry, _RL + "display-name").text = r.display
        if hidden[copy]:
            entry = etree.SubElement(lst, _RL + "entry")
            entry.set("uri", ANONYMOUS_URI)
            entry.set(_CP_COPY, copy)
            entry.set(_CP_COUNT, str(hidden[copy]))
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return data.rstrip(b"\n")


def _collides(boundary: str, *parts: bytes) -> bool:
    dash = b"--" + boundary.encode("ascii")
    return any(dash in part for part in parts)


def forwarded_body(exp: Expansion, recipient: Recipient, *, boundary: str) -> tuple[str, bytes]:
    """The body of the MESSAGE the service sends to one recipient (RFC 5365 section 7.3).

    The incoming URI list is never forwarded. With ``to``/``cc`` recipients the
    payload part is followed by a ``recipient-list-history`` part (RFC 5364;
    ``bcc`` recipients left out, anonymized ones counted, not named); without,
    the payload goes out alone and ``exp.payload_headers`` belong in the
    request's own header.

    Args:
        exp: the result of :func:`expand`.
        recipient: one of ``exp.recipients``.
        boundary: the multipart boundary to use (RFC 2046 section 5.1.1: 1 to 70
            bchars). Characters outside bchars become ".", and it is cut to 70;
            should it occur in a part, a suffix derived from the parts' digest
            replaces its tail (a sender cannot plant a string that depends on
            itself). The Content-Type returned names the boundary used.

    Returns:
        (Content-Type header value, body bytes).

    Raises:
        ValueError: ``recipient`` is not in ``exp``, or a recipient's URI or display name holds
            characters XML cannot carry (only for Recipients not made by
            :func:`expand`).
        LocalProtocolError: a payload header would break the part's header
            block (only possible for an Expansion not made by :func:`expand`).
    """
    if recipient not in exp.recipients:
        raise ValueError(f"{recipient.uri!r} is not a recipient of this expansion")
    if not _BOUNDARY.fullmatch(boundary):  # RFC 2046 section 5.1.1; e.g. an id with "@" in it
        boundary = "".join(c if c in _BCHARS else "." for c in boundary)[:70].rstrip(" ") or "sf"
    history = _history_xml(exp.recipients)
    if history is None:
        return exp.payload_type, exp.payload
    if _collides(boundary, exp.payload, history):  # RFC 2046 section 5.1.1
        digest = hashlib.sha256(exp.payload + history).hexdigest()[:24]
        boundary = f"{boundary[:40].rstrip()}.{digest}"
        if _collides(boundary, exp.payload, history):
            raise LocalProtocolError("no multipart boundary found outside the parts", 500)
    lines = [("Content-Type", exp.payload_type), *exp.payload_headers]
    for name, value in lines:
        if not _HEADER_NAME.fullmatch(name.encode("ascii", "replace")) or any(c in value for c in "\r\n\x00"):
            raise LocalProtocolError(f"payload header {name[:40]!r} cannot be written", 500)
    head = "".join(f"{name}: {value}\r\n" for name, value in lines).encode("utf-8")
    dash = b"--" + boundary.encode("ascii")
    body = b"".join(
        (
            dash, b"\r\n", head, b"\r\n", exp.payload, b"\r\n",
            dash, b"\r\n",
            b"Content-Type: " + RESOURCE_LISTS_TYPE.encode("ascii") + b"\r\n",
            b"Content-Disposition: recipient-list-history; handling=optional\r\n",  # RFC 5364 section 9.1
            b"\r\n", history, b"\r\n",
            dash, b"--\r\n",
        )
    )  # fmt: skip
    return f'multipart/mixed;boundary="{boundary}"', body
