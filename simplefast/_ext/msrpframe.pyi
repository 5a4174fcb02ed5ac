"""MSRP framing (RFC 4975 section 9): a streaming parser and a chunk writer.

The contract of the compiled module ``simplefast._ext.msrpframe`` (``ext/msrpframe.pyx``)
and of its pure-Python twin ``simplefast._ref.msrpframe``. Both must give equal results
(or raise the same error class with the same ``status_hint``) for every input.

Parser (``MsrpParser``)
    ``feed(data)`` takes the octets read from a connection, in any split, and returns the
    complete messages they finish, in order; a message cut by a read stays buffered.
    A message is ``start-line headers [content-stuff] end-line`` (section 9):

    - start line ``MSRP SP transact-id SP method CRLF`` (request) or
      ``MSRP SP transact-id SP status-code [SP comment] CRLF`` (response);
      ``transact-id`` is 4-32 characters of ALPHA / DIGIT / "." / "-" / "+" / "%" / "=",
      first one ALPHA or DIGIT (the ``ident`` rule); a method is upper-case ALPHA;
      a status code is three digits;
    - header lines ``name ":" SP value CRLF`` (name: a token; the value: any UTF-8 text
      without CR or LF; folding does not exist in MSRP);
    - a request may carry content: the header block then ends with an empty line
      (CRLF CRLF) and the data runs up to the end-line; without content the end-line
      follows the last header line directly;
    - end-line ``"-------" transact-id flag CRLF``, ``flag`` one of ``$`` (last chunk),
      ``+`` (more chunks follow), ``#`` (message aborted). The data of a chunk ends at the
      first ``CRLF "-------" transact-id flag CRLF`` after the header block: a line in the
      data that starts with seven dashes but is not exactly that (another transaction id,
      a longer id of which ours is a prefix, no valid flag, no CRLF after the flag) is
      data (section 7.1: the sender chooses an id that does not occur in the content).
      The data is taken as octets: no Content-Length exists in MSRP.

    The framer checks syntax only: which headers must be present (To-Path and From-Path
    first, section 9) is the session layer's check, so RFC snippets without them frame.

    Limits: ``max_header_bytes`` (start line + headers + the empty line) and
    ``max_chunk_bytes`` (the data of one chunk). Past either, and on any syntax error,
    ``feed`` raises ``MsrpFramingError`` with ``status_hint`` 400 (syntax) or 413
    (too large); the connection is then unusable (the parser stays failed: every later
    ``feed`` raises the same error). Messages completed before the error in the same
    ``feed`` call are lost with it: callers handle the error as fatal for the connection.

    A response never carries content; a response with an empty line after its headers
    followed by data is a syntax error (400).

Messages (``MsrpMessage``): read-only. ``body`` is the chunk's data: a ``memoryview``
    of the bytes given to ``feed`` when the whole chunk arrived in one call, else
    ``bytes``; compare with ``bytes(m.body)``. Header names keep their case; lookups
    are case-insensitive.

Writer
    ``chunk(...)`` splits one message's content into chunks of at most ``chunk_size``
    data octets with correct Byte-Range (``start-end/total``, 1-based, inclusive,
    section 7.1.1) and flags (``+`` on all but the last, ``$`` on the last), one fresh
    transaction id per chunk (from ``new_tid``) checked not to occur in the chunk's data
    (a colliding id is replaced by the next one from ``new_tid``).
"""

from collections.abc import Callable, Sequence

from simplefast.errors import RemoteProtocolError

MAX_HEADER_BYTES: int  # default: 16384
MAX_CHUNK_BYTES: int  # default: 1048576

class MsrpFramingError(RemoteProtocolError):
    """A framing or syntax error; ``status_hint`` 400 or 413. str() is short and safe
    for a log line or a REPORT's comment."""

class MsrpMessage:
    @property
    def is_request(self) -> bool: ...
    @property
    def tid(self) -> str: ...
    @property
    def method(self) -> str | None:
        """Request method (SEND, REPORT, AUTH, NICKNAME, or any other); None for a response."""
    @property
    def status(self) -> int | None:
        """Response status code; None for a request."""
    @property
    def comment(self) -> str | None:
        """Response comment (after the status code), None if absent or for a request."""
    @property
    def flag(self) -> str:
        """'$', '+' or '#' from the end-line."""
    @property
    def body(self) -> memoryview | bytes:
        """The chunk's data (empty when the message has no content)."""
    @property
    def has_content(self) -> bool:
        """The header block ended with an empty line (a content part), even if empty."""
    def headers(self) -> list[tuple[str, str]]:
        """Every header line, in order, (name as received, value)."""
    def get(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive), None if absent."""
    def get_all(self, name: str) -> list[str]:
        """Every value of header ``name`` in order (case-insensitive)."""
    @property
    def to_path(self) -> list[str]:
        """To-Path URIs (split on whitespace), [] if absent."""
    @property
    def from_path(self) -> list[str]:
        """From-Path URIs (split on whitespace), [] if absent."""
    @property
    def message_id(self) -> str | None: ...
    @property
    def content_type(self) -> str | None: ...
    @property
    def byte_range(self) -> tuple[int, int | None, int | None] | None:
        """Byte-Range as (start, end, total); end/total None for "*"; None if absent.
        Raises MsrpFramingError (400) if the header is present but malformed."""
    def to_bytes(self) -> bytes:
        """The message's octets exactly as received."""

class MsrpParser:
    def __init__(self, *, max_header_bytes: int = ..., max_chunk_bytes: int = ...) -> None: ...
    def feed(self, data: bytes | bytearray | memoryview) -> list[MsrpMessage]: ...
    @property
    def buffered(self) -> int:
        """Octets received and not yet part of a returned message."""

def parse_one(data: bytes) -> MsrpMessage:
    """``data`` must be exactly one complete message (tests, tools); else MsrpFramingError."""

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
    """One request: start line, To-Path, From-Path, ``headers`` in order, then (when
    ``content_type`` is given) Content-Type, an empty line and ``body``, then the
    end-line. Raises ValueError for an invalid tid/method/flag, a header name or value
    that cannot be written (CR, LF), or a body containing this end-line."""

def forward(
    msg: MsrpMessage,
    tid: str,
    to_path: Sequence[str],
    from_path: Sequence[str],
    *,
    part: tuple[int, int] | None = None,
) -> bytes | None:
    """Request ``msg`` as a relay forwards it (RFC 4976 section 3.3), in one buffer:
    ``MSRP <tid> <method as received>``, ``To-Path:`` and ``From-Path:`` from the given
    URIs (joined by one space), then every other header of ``msg`` in order as
    ``name: value`` (name and value as received), then, if ``msg`` has content, an
    empty line, its data and CRLF, then the end-line with ``tid`` and ``msg``'s flag.
    None when the data contains that end-line (section 7.1: pick another tid).

    ``part=(offset, length)``: only those octets of the data (a relay re-chunking,
    RFC 4975 section 7.1.1): every Byte-Range header's value becomes
    ``<start+offset>-<start+offset+length-1>/<total as received>`` (start from
    ``msg.byte_range``) and the flag is ``+`` unless the part ends the data (then
    ``msg``'s own). ValueError when ``msg`` has no data or no Byte-Range, or the part
    is empty or not inside the data.

    Raises TypeError (not an MsrpMessage), ValueError (a response; an invalid tid; a
    path element empty, with whitespace, CR or LF; a bad part)."""

def build_response(
    tid: str,
    status: int,
    comment: str | None,
    to_path: Sequence[str],
    from_path: Sequence[str],
    headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """One response (no content): ``MSRP tid status [comment]``, To-Path, From-Path,
    ``headers``, end-line with ``$``."""

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
    """A SEND message split into chunks (see the module docstring). Each chunk carries
    To-Path, From-Path, Message-ID, Byte-Range, ``headers``, Content-Type. An empty body
    gives one chunk with Byte-Range 1-0/0."""
