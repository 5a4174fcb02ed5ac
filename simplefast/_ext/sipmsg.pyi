"""SIP message codec (RFC 3261 section 7, 18.3, 19, 20, 25).

This stub is the contract both twins implement: ``simplefast._ext.sipmsg``
(Cython) and ``simplefast._ref.sipmsg`` (pure Python). They must agree on
every result and on every error (type, ``status_hint`` and message).

Parsing model: ``parse_message`` frames one message (start line, header
lines, body) and records offsets; header values become ``str`` only when
asked for. Structured header syntax (Via, name-addr, CSeq, ...) is checked
by the accessors that need it and by ``validate_request``; a malformed value
raises ``SipParseError`` from the accessor.

Text: header values, URIs and reason phrases are decoded as UTF-8 with
``surrogateescape`` so any octet survives a round trip. A folded header value
(RFC 3261 section 7.3.1) is returned with each line's surrounding white space
removed and the lines joined by one SP.
"""

from collections.abc import Iterable, Sequence
from typing import final

from simplefast._sip_types import NameAddr, SipURI, Via
from simplefast.errors import SipParseError as SipParseError

DEFAULT_MAX_HEADER_BYTES: int  # 16384: start line + header block, CRLFs included
DEFAULT_MAX_HEADERS: int  # 256 header lines (a folded header counts once)
DEFAULT_MAX_BODY_BYTES: int  # 1 MiB: Content-Length above this gets 413
SUPPORTED_URI_SCHEMES: frozenset[str]  # Request-URI schemes validate_request accepts

@final
class SipMessage:
    """A parsed SIP message. Immutable; cheap until fields are asked for."""

    @property
    def is_request(self) -> bool: ...
    @property
    def method(self) -> str | None:
        """Request method as written (case-sensitive, RFC 3261 7.1); None for responses."""
    @property
    def uri(self) -> str | None:
        """Request-URI text; None for responses."""
    @property
    def status(self) -> int | None:
        """Status code 100..699; None for requests."""
    @property
    def reason(self) -> str | None:
        """Reason phrase (may be empty); None for requests."""
    @property
    def version(self) -> str:
        """ "SIP/2.0" as written on the start line."""
    def get(self, name: str) -> str | None:
        """First value of a header, whole line (not comma-split); None if absent.

        Case-insensitive; compact forms (i, f, t, v, m, l, c, k, e, s, o, u,
        r, x, y, b, a, j, d, n) and full names are the same header.
        """
    def get_all(self, name: str) -> list[str]:
        """Every value of a header in order. Headers whose grammar is a
        comma-separated list (Via, Contact, Route, Record-Route, Path,
        Allow, Supported, Require, ...) are split at commas outside quotes
        and angle brackets; empty elements are kept as ''. Other headers
        (WWW-Authenticate, Authorization, Date, unknown ones...) are not
        split."""
    def count(self, name: str) -> int:
        """Number of header lines with this name (not comma elements)."""
    def headers(self) -> list[tuple[str, str]]:
        """Every header line as (name as written, value), in order."""
    @property
    def body(self) -> bytes:
        """The body: Content-Length octets (fewer if the datagram is short),
        or the rest of the datagram when Content-Length is absent."""
    def to_bytes(self) -> bytes:
        """The message's own octets: start line to end of body (leading
        CRLFs and trailing datagram octets excluded)."""
    # --- hot typed accessors (lazy, cached). Malformed values raise SipParseError.
    @property
    def call_id(self) -> str | None: ...
    @property
    def cseq_num(self) -> int | None:
        """CSeq sequence number, 0 <= n < 2**31 (RFC 3261 8.1.1.5)."""
    @property
    def cseq_method(self) -> str | None: ...
    @property
    def via_branch(self) -> str | None:
        """branch parameter of the top Via (None if absent)."""
    @property
    def via_host(self) -> str | None:
        """sent-by host of the top Via (IPv6 keeps its brackets)."""
    @property
    def via_port(self) -> int | None:
        """sent-by port of the top Via, None when not written."""
    @property
    def via_transport(self) -> str | None:
        """Transport of the top Via, upper-cased."""
    @property
    def via_rport(self) -> int | None:
        """rport of the top Via: None absent, 0 present without a value
        (RFC 3581 request), else the port."""
    @property
    def from_tag(self) -> str | None: ...
    @property
    def to_tag(self) -> str | None: ...
    @property
    def expires(self) -> int | None:
        """Expires header, 0 <= n <= 2**32-1."""
    @property
    def event(self) -> str | None:
        """Event package (the token before any ';'), as written."""
    @property
    def content_length(self) -> int | None: ...
    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards, 0..255."""
    @property
    def contact_uri(self) -> str | None:
        """URI of the first Contact value ('*' for the wildcard)."""
    # --- structured views (build named tuples)
    def vias(self) -> list[Via]: ...
    def from_addr(self) -> NameAddr | None: ...
    def to_addr(self) -> NameAddr | None: ...
    def contacts(self) -> list[NameAddr]: ...

def parse_message(
    data: bytes | bytearray | memoryview,
    *,
    max_header_bytes: int = ...,
    max_headers: int = ...,
    max_body_bytes: int = ...,
) -> SipMessage:
    """Parse one whole message (one datagram).

    Leading CRLFs are skipped. Without Content-Length the body is the rest of
    the datagram; with it, octets past it are ignored and a short body is kept
    short (``validate_request`` answers it with 400).

    Limits must be >= 0 (ValueError otherwise); values past 2**62 (2**31-1 for
    ``max_headers``) mean no limit and are clamped. Offsets in error texts count
    from the first octet of the datagram (on a stream: of the message).

    Raises:
        SipParseError: malformed start line or header line (400), header
            block or header count past its bound (513), Content-Length not
            a number (400) or past ``max_body_bytes`` (413).
    """

def validate_request(msg: SipMessage, *, supported: Iterable[str] = ...) -> tuple[int, str] | None:
    """RFC 3261 section 8.2 / 16.3 checks of a parsed message.

    For a response, the structural checks below apply (no Request-URI, CSeq
    method or Require checks) and a non-None result means: drop it (a
    response is never answered; RFC 3261 section 18.1.2).

    Returns None when the request may be processed, else (status, reason):
    505 for a SIP version other than 2.0; 400 for a missing or repeated
    required header (Via, From, To, Call-ID, CSeq), a malformed Via, From,
    To, Contact, CSeq, Max-Forwards, Expires or Date, a CSeq method that
    differs from the request method, Content-Length larger than the body,
    or a Request-URI carrying headers; 416 for a Request-URI scheme other
    than sip, sips, tel, pres, im; 420 when Require names an option tag not
    in ``supported`` (ignored for ACK and CANCEL).
    """

def unsupported_requires(msg: SipMessage, supported: Iterable[str] = ...) -> list[str]:
    """Option tags of Require not in ``supported`` (for the Unsupported header of a 420)."""

def parse_uri(text: str) -> SipURI:
    """Parse a URI (RFC 3261 section 19.1 for sip/sips, RFC 3986 scheme for others).

    Raises:
        SipParseError: not a URI, bad host, port past 65535, a repeated
            URI parameter.
    """

def parse_via(value: str) -> Via:
    """Parse one Via element (a single comma element of a Via header)."""

def parse_name_addr(value: str) -> NameAddr:
    """Parse one From/To/Contact/Route element (name-addr or addr-spec)."""

def build_response(
    req: SipMessage,
    status: int,
    reason: str,
    *,
    to_tag: str | None = None,
    extra_headers: bytes | bytearray | memoryview | Sequence[tuple[str, str]] = ...,
    body: bytes | bytearray | memoryview = b"",
    received: str | None = None,
    rport: int | None = None,
) -> bytes:
    """Build a response to ``req`` (RFC 3261 section 8.2.6.2).

    Copies every Via line, From, To, Call-ID and CSeq as written; adds
    ``;tag=to_tag`` to To when given and To has no tag. ``extra_headers`` is
    either preformatted lines (each ending in CRLF) or (name, value) pairs.
    Content-Length is always written. With ``received``/``rport`` (the
    packet's source), the first element of the top Via is stamped (see
    "Via stamping" below); every other octet of that line is kept as written.

    Via stamping (RFC 3261 section 18.2.1, RFC 3581 section 4), also done by
    ``forward_request``: an ``rport`` without a value becomes
    ``rport=<rport>`` in place (when ``rport`` is given); ``received`` is
    written when it differs from the sent-by host (case-insensitive, IPv6
    brackets ignored, compared as text) or when the element has an empty
    ``rport``: appended as ``;received=<ip>`` after the element's last
    octet, or, if the element already carries ``received``, as that
    parameter's value (in place). A folded Via keeps its folding; a Via
    element that does not parse is left as written.

    Raises:
        LocalProtocolError: a value we were asked to write would make an
            invalid message: status outside 100-699, CR or LF in the reason
            or a header value, a header name or To tag that is not a token,
            ``received`` that is not an IP address, ``rport`` outside 1-65535.
    """

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
    """The copy of request ``msg`` a proxy forwards (RFC 3261 section 16.6).

    Writes ``<METHOD> <uri> SIP/2.0`` (the method as written), ``Via: <via>``
    (our new top Via, given whole), ``Record-Route: <record_route>`` when not
    None, one ``Route: <r>`` line per element of ``routes``, ``Max-Forwards:
    <max_forwards>``, then every header line of ``msg`` in order as written
    (folding kept) except Route, Max-Forwards and Content-Length (``l``),
    the first element of its first Via stamped with ``received``/``rport``
    as ``build_response`` stamps it (the rest of that line kept), then
    ``Content-Length: <len(body)>``, an empty line and the body.

    Raises:
        ValueError: ``msg`` is a response.
        TypeError: a value is not a str (``routes`` a str or not iterable),
            ``max_forwards`` or ``rport`` not an int.
        LocalProtocolError: ``uri``, ``via``, ``record_route`` or a route
            empty, holding CR or LF or not encodable as UTF-8; white space in
            ``uri``; ``max_forwards`` outside 0-255; ``received`` or
            ``rport`` as in ``build_response``.
    """

def strip_top_via(msg: SipMessage) -> bytes | None:
    """Response ``msg`` less its first Via element (RFC 3261 section 16.7 step 3).

    ``SIP/2.0 <status> <reason>`` (reason as written), then every header
    line as written except Content-Length (``l``); of the first Via line the
    first element is removed: the line is dropped when nothing follows that
    element's comma, else it becomes ``<name as written>: <the rest>`` (LWS
    after the comma skipped, folding in the rest kept). Then
    ``Content-Length: <len(body)>``, an empty line and the body. None when
    ``msg`` has no Via.

    Raises:
        ValueError: ``msg`` is a request.
    """

@final
class SipStreamParser:
    """Frames messages on a stream (TCP/TLS): RFC 3261 section 18.3.

    ``feed(data)`` returns every message completed by ``data``. CRLFs between
    messages are skipped; a CRLFCRLF keep-alive (RFC 5626 section 3.5.1)
    increments ``ping_count`` so the transport can answer with CRLF. A
    missing Content-Length means an empty body. After an error the parser is
    broken: every further ``feed`` raises the same error (close the
    connection).
    """

    def __init__(
        self,
        max_header_bytes: int = ...,
        max_body_bytes: int = ...,
        max_headers: int = ...,
    ) -> None: ...
    def feed(self, data: bytes | bytearray | memoryview) -> list[SipMessage]: ...
    @property
    def buffered(self) -> int:
        """Octets received but not yet part of a complete message."""
    @property
    def ping_count(self) -> int: ...
