"""SDP offer/answer for one MSRP media stream (RFC 4975 section 8, RFC 3264, RFC 6135), sans-IO.

Theory of operation
-------------------
The chat focus (RFC 7701) answers an INVITE whose SDP body offers MSRP. Two steps, both
pure functions of their arguments (no socket, no clock, standard library only):

``parse_msrp_offer(body)`` -> :class:`MsrpOffer`
    Reads the offer far enough to answer it, or raises :class:`SdpError`, whose
    ``status`` is the SIP response to send and whose ``reason`` is short text safe to
    quote in a ``Warning: 399 host "reason"`` header. Nothing else escapes it, for any
    input (the unit tests fuzz this).

``build_msrp_answer(offer, ...)`` -> ``bytes``
    Writes the answer: one ``m=`` line per offered ``m=`` line, in the offer's order
    (RFC 3264 section 6), the MSRP one accepted with our ``a=path``, the others refused
    with port 0. It refuses (:class:`~simplefast.errors.LocalProtocolError`) any value
    it could not write back so that ``parse_msrp_offer`` reads it unchanged.

Two error classes, so the focus can answer without looking inside:

- **400** (Bad Request): the body is not SDP as RFC 4566 writes it: over
  ``MAX_SDP_BYTES`` or ``MAX_SDP_LINES``; not UTF-8; a control character in a line (HTAB
  aside); a line that is not ``<letter>=<value>``; a type letter RFC 4566 does not define
  (section 5: a parser must ignore a description with a type it does not understand);
  ``v=`` that is not ``0`` or is not the first line; a session-level line (``o s t r z u
  e p``) after the first ``m=``; a repeated ``v``/``o`` or a second ``c=`` at one level;
  an ``o=`` without its six fields; a ``c=`` without its three; an ``m=`` that is not
  ``media port[/count] proto fmt...`` with a port up to 65535; no ``c=`` for the MSRP media
  at either level (section 5.7); an attribute name that is not a token.
- **488** (Not Acceptable Here): well-formed SDP we cannot take: no MSRP media; the MSRP
  media without ``a=path`` or ``a=accept-types`` (RFC 4975 section 8.1 makes both
  mandatory); a path URI not ``msrp://`` or ``msrps://``; an accept type that is not
  ``*``, ``type/*`` or ``type/subtype`` (optionally ``;param=value``); ``a=max-size`` not
  a number; an ``a=setup`` or ``a=connection`` value RFC 4145 does not define; one of
  these MSRP attributes twice at the same level.

Which lines count
    The MSRP media is the first ``m=message`` line whose proto is ``TCP/MSRP`` or
    ``TCP/TLS/MSRP`` (compared without case) and whose port is not 0: a port 0 stream is
    one the offerer has disabled (RFC 3264 section 8.2), so it is answered like any other
    line we refuse. Every other ``m=`` line is kept in ``other_media`` as (index, value)
    so the answer can echo it with port 0. The MSRP attributes are read from the MSRP
    media's own ``a=`` lines; ``a=setup`` and ``a=connection`` may also be session-level
    (RFC 4145 section 4), and the media-level one wins. The media-level ``c=`` wins over
    the session-level one (RFC 4566 section 5.7). MSRP routes by ``a=path``, not by
    ``c=``/``m=`` (RFC 4975 section 8.1), so ``address`` and ``port`` are kept but not
    checked further.

Connection roles (RFC 4145 section 4.1, RFC 6135)
    ``a=setup`` says who opens the TCP connection: ``active`` (I connect), ``passive``
    (connect to me), ``actpass`` (either; offers only), ``holdconn`` (not now). RFC 4975
    has no such attribute: its offerer always connects. RFC 6135 keeps that as the
    behaviour when ``a=setup`` is absent, which is also RFC 4145's default for an offer, so
    an offer without ``a=setup`` reads as ``setup="active"``. :func:`answer_setup` turns
    the offered role into ours: ``active`` -> ``passive``, ``passive`` -> ``active``,
    ``holdconn`` -> ``holdconn`` (RFC 4145 leaves no choice for these), and ``actpass``
    -> ``passive`` (*choice*: either is allowed; the focus has a listener anyone can reach,
    and a client behind NAT cannot be connected to). ``a=connection`` defaults to ``new``.
    (CEMA, RFC 6714's ``a=msrp-cema``, is a different RFC and is not handled here.)

Type negotiation (RFC 4975 section 8.1, RFC 7701 section 6)
    :func:`negotiate_types` intersects two accept-types lists where ``*`` and
    ``type/*`` are wildcards on either side, keeping the narrower of each matching pair,
    in our order. :func:`offer_accepts` asks whether the offer lets us send one type:
    a chat room sends only ``message/cpim`` (RFC 7701 section 6).

Accepted beyond the letter of RFC 4566, each for a reason
    - bare LF line ends as well as CRLF, blank lines (skipped), and a last line with no
      line end (senders that join lines with CRLF rather than end them);
    - no ``v=``, ``o=``, ``s=`` or ``t=`` at all: RFC 4975 section 4 prints its offer with
      only ``c=``, ``m=`` and ``a=`` lines. The origin fields are then ``""``;
    - ``o=`` fields are kept as written (not checked to be numbers), names of attributes
      and the media/proto of ``m=message`` are compared without case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from simplefast.errors import LocalProtocolError, QuotableError

#: The largest SDP body parsed (octets), and the most lines; past either: 400.
MAX_SDP_BYTES = 65536
MAX_SDP_LINES = 200

#: RFC 4145 section 4 values of ``a=setup`` and section 5 values of ``a=connection``.
SETUP_VALUES = frozenset({"active", "passive", "actpass", "holdconn"})
CONNECTION_VALUES = frozenset({"new", "existing"})

# The two MSRP protos of RFC 4975 section 8.1, upper-cased -> "is TLS".
_MSRP_PROTOS = {"TCP/MSRP": False, "TCP/TLS/MSRP": True}
# RFC 4566 section 5: every type letter it defines.
_TYPES = frozenset("vosiuepcbtrzkam")
# Types that only exist at session level (RFC 4566 section 5, the order of a description).
_SESSION_ONLY = frozenset("vostrzuep")
# The single-valued MSRP attributes read from the MSRP media (a repeat: 488).
_MSRP_ATTRS = ("accept-types", "accept-wrapped-types", "path", "max-size", "setup", "connection", "chatroom")

# RFC 4566 section 9 token-char (the same set as RFC 2045's token).
_TOKEN = r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+"
_TOKEN_RE = re.compile(_TOKEN)
# A control character other than HTAB; in a line it also means a stray CR.
_BAD_CHAR = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
# m=<media> <port>[/<number of ports>] <proto> <fmt> ... (RFC 4566 section 5.14).
_PORT = re.compile(r"([0-9]{1,5})(?:/[0-9]{1,5})?")
_DIGITS = re.compile(r"[0-9]{1,19}")
# RFC 4975 section 8.1 accept-types entry: "*" or type/subtype with "*" for a subtype,
# then optional ;name=value parameters (kept as written, lower-cased).
_MEDIA_TYPE = re.compile(rf"(?:\*|({_TOKEN})/(\*|{_TOKEN}))(?:;{_TOKEN}=[^;\s]+)*")
_MSRP_URI = re.compile(r"msrps?://\S", re.IGNORECASE)
_ADDRESS = re.compile(r"[^\s\x00-\x1f\x7f]+")

_SHOW_MAX = 40


class SdpError(QuotableError, ValueError):
    """An SDP offer we refuse, with the SIP status to refuse it with.

    Args:
        status: 400 for a body that is not SDP, 488 (Not Acceptable Here) for well-formed
            SDP with nothing we can accept.
        reason: what was wrong, in a few words; made safe for a SIP ``Warning`` header
            (control characters, quotes and backslashes replaced, cut to 160 characters).
    """

    status: int

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason, status)
        self.status = status

    def __reduce__(self) -> tuple[type, tuple[int, str]]:  # type: ignore[override]
        # The base class pickles as (reason, status); our arguments come the other way.
        return (type(self), (self.status, self.reason))


@dataclass(frozen=True, slots=True)
class MsrpOffer:
    """The MSRP media of an SDP offer, as far as an answerer needs it.

    Attributes:
        origin_user: ``o=`` username (``""`` when the offer has no ``o=``).
        session_id: ``o=`` sess-id, as written.
        session_version: ``o=`` sess-version, as written.
        address: the ``c=`` connection address of the MSRP media (media level wins).
        port: the MSRP ``m=`` port (MSRP routes by ``a=path``; kept for completeness).
        tls: the proto is ``TCP/TLS/MSRP`` (else ``TCP/MSRP``).
        path: the ``a=path`` URIs in order; the last one is the offerer's own.
        accept_types: ``a=accept-types`` entries, lower-cased; may hold ``*``.
        accept_wrapped_types: ``a=accept-wrapped-types`` entries, lower-cased; ``()`` if absent.
        max_size: ``a=max-size`` in octets, None if absent.
        setup: ``active``, ``passive``, ``actpass`` or ``holdconn``; ``active`` when absent.
        connection: ``new`` or ``existing``; ``new`` when absent.
        chatroom: the ``a=chatroom`` tokens (RFC 7701 section 8), lower-cased.
        media_index: which ``m=`` line (0-based) is the MSRP one.
        media_count: how many ``m=`` lines the offer has.
        other_media: (index, ``m=`` value with single spaces) of every other ``m=`` line.
    """

    origin_user: str
    session_id: str
    session_version: str
    address: str
    port: int
    tls: bool
    path: tuple[str, ...]
    accept_types: tuple[str, ...]
    accept_wrapped_types: tuple[str, ...]
    max_size: int | None
    setup: str
    connection: str
    chatroom: frozenset[str]
    media_index: int
    media_count: int
    other_media: tuple[tuple[int, str], ...] = ()


# ---------------------------------------------------------------- parsing


def _show(text: str) -> str:
    """A value cut short for an error message."""
    return text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 3] + "..."


@dataclass(slots=True)
class _Level:
    """What one level (the session, or one media description) said."""

    connection: str | None = None  # the c= address
    fields: tuple[str, ...] = ()  # the m= fields (media level only)
    attrs: list[tuple[str, str | None, int]] = field(default_factory=list)  # (lower name, value, line)


def _lines(body: bytes | bytearray | memoryview | str) -> list[tuple[int, str]]:
    """The non-blank lines of the body as (1-based line number, text), bounds checked."""
    if not isinstance(body, bytes | bytearray | memoryview | str):
        raise TypeError(f"SDP body must be bytes or str, not {type(body).__name__}")
    if isinstance(body, str):
        if len(body) > MAX_SDP_BYTES:  # each character is at least one octet
            raise SdpError(400, f"SDP body exceeds {MAX_SDP_BYTES} bytes")
        try:
            data = body.encode("utf-8")
        except UnicodeEncodeError:
            raise SdpError(400, "SDP body is not valid Unicode") from None
    else:
        data = bytes(body)
    if len(data) > MAX_SDP_BYTES:
        raise SdpError(400, f"SDP body exceeds {MAX_SDP_BYTES} bytes")
    raw_lines = data.split(b"\n")
    if raw_lines[-1] == b"":
        raw_lines.pop()  # the line end of the last line
    if len(raw_lines) > MAX_SDP_LINES:
        raise SdpError(400, f"SDP body exceeds {MAX_SDP_LINES} lines")
    out: list[tuple[int, str]] = []
    for number, raw in enumerate(raw_lines, 1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if not raw.strip(b" \t"):
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SdpError(400, f"SDP line {number} is not UTF-8") from None
        if _BAD_CHAR.search(line):
            raise SdpError(400, f"SDP line {number} holds a control character")
        out.append((number, line))
    return out


def _parse_m(value: str, number: int) -> tuple[str, ...]:
    """The fields of an ``m=`` value: media, port[/count], proto, one or more fmt."""
    fields = tuple(value.split())
    if len(fields) < 4:
        raise SdpError(400, f"SDP line {number}: m= needs media, port, proto and a format")
    port = _PORT.fullmatch(fields[1])
    if port is None or int(port.group(1)) > 65535:
        raise SdpError(400, f"SDP line {number}: m= port {_show(fields[1])!r} is not a port")
    return fields


def _scan(lines: list[tuple[int, str]]) -> tuple[tuple[str, str, str], _Level, list[_Level]]:
    """One pass over the lines: the origin, the session level, and each media level."""
    origin = ("", "", "")
    session = _Level()
    media: list[_Level] = []
    seen_v = seen_o = False
    for position, (number, line) in enumerate(lines):
        if len(line) < 2 or line[1] != "=":
            raise SdpError(400, f"SDP line {number} is not <type>=<value>")
        kind, value = line[0], line[2:]
        if kind not in _TYPES:
            raise SdpError(400, f"SDP line {number}: unknown line type {kind!r}")
        level = media[-1] if media else session
        if kind in _SESSION_ONLY and media:
            raise SdpError(400, f"SDP line {number}: {kind}= after the first m= line")
        if kind == "v":
            if seen_v or position != 0:
                raise SdpError(400, f"SDP line {number}: v= must be the first line, once")
            if value.strip() != "0":
                raise SdpError(400, f"SDP version {_show(value)!r} is not 0")
            seen_v = True
        elif kind == "o":
            if seen_o:
                raise SdpError(400, f"SDP line {number}: a second o= line")
            parts = value.split()
            if len(parts) != 6:
                raise SdpError(400, f"SDP line {number}: o= needs 6 fields")
            origin = (parts[0], parts[1], parts[2])
            seen_o = True
        elif kind == "c":
            parts = value.split()
            if len(parts) != 3:
                raise SdpError(400, f"SDP line {number}: c= needs nettype, addrtype and address")
            if level.connection is not None:
                raise SdpError(400, f"SDP line {number}: a second c= line at one level")
            level.connection = parts[2]
        elif kind == "m":
            media.append(_Level(fields=_parse_m(value, number)))
        elif kind == "a":
            name, colon, attr_value = value.partition(":")
            name = name.strip()
            if not _TOKEN_RE.fullmatch(name):
                raise SdpError(400, f"SDP line {number}: attribute name {_show(name)!r} is not a token")
            level.attrs.append((name.lower(), attr_value if colon else None, number))
    return origin, session, media


def _msrp_attrs(level: _Level, names: tuple[str, ...]) -> dict[str, tuple[str | None, int]]:
    """The attributes ``names`` of one level by name, refusing a repeat (488)."""
    found: dict[str, tuple[str | None, int]] = {}
    for name, value, number in level.attrs:
        if name in names:
            if name in found:
                raise SdpError(488, f"SDP line {number}: a second a={name}")
            found[name] = (value, number)
    return found


def _media_types(name: str, value: str | None, number: int) -> tuple[str, ...]:
    """The entries of an accept-types or accept-wrapped-types value, lower-cased."""
    entries = tuple((value or "").split())
    for entry in entries:
        m = _MEDIA_TYPE.fullmatch(entry)
        if m is None or m.group(1) == "*":
            raise SdpError(488, f"SDP line {number}: a={name} entry {_show(entry)!r} is not a media type")
    return tuple(e.lower() for e in entries)


def _choice(name: str, allowed: frozenset[str], default: str, *found: tuple[str | None, int] | None) -> str:
    """The first level's value of ``name`` that is there (media before session), checked."""
    for item in found:
        if item is None:
            continue
        value, number = item
        word = (value or "").strip().lower()
        if word not in allowed:
            raise SdpError(488, f"SDP line {number}: a={name} value {_show(word)!r} is not one of RFC 4145's")
        return word
    return default


def parse_msrp_offer(body: bytes | bytearray | memoryview | str) -> MsrpOffer:
    """Read the MSRP media of an SDP offer (the body of an INVITE).

    Args:
        body: the SDP body (octets, or text to be encoded as UTF-8), CRLF or LF line
            ends, at most ``MAX_SDP_BYTES`` octets and ``MAX_SDP_LINES`` lines.

    Returns:
        The offer's MSRP media and what the answer needs of the other ``m=`` lines.

    Raises:
        SdpError: ``status`` 400 if the body is not SDP, 488 if it offers no MSRP media we
            can accept (the module docstring lists each case). Nothing else escapes for
            octets or text (a body of another Python type is a TypeError).
    """
    lines = _lines(body)
    if not lines:
        raise SdpError(400, "SDP body is empty")
    origin, session, media = _scan(lines)
    index = -1
    for i, level in enumerate(media):
        fields = level.fields
        if (
            fields[0].lower() == "message"
            and fields[2].upper() in _MSRP_PROTOS
            and int(fields[1].partition("/")[0]) != 0  # RFC 3264 section 8.2: port 0 is disabled
        ):
            index = i
            break
    if index < 0:
        raise SdpError(488, "no MSRP media (m=message with TCP/MSRP or TCP/TLS/MSRP)")
    msrp = media[index]
    fields = msrp.fields
    address = msrp.connection if msrp.connection is not None else session.connection
    if address is None:
        raise SdpError(400, "no c= line for the MSRP media (RFC 4566 section 5.7)")

    attrs = _msrp_attrs(msrp, _MSRP_ATTRS)
    session_attrs = _msrp_attrs(session, ("setup", "connection"))  # RFC 4145 section 4
    path_attr = attrs.get("path")
    path = tuple((path_attr[0] or "").split()) if path_attr else ()
    if not path:
        raise SdpError(488, "the MSRP media has no a=path (RFC 4975 section 8.1)")
    for uri in path:
        if _MSRP_URI.match(uri) is None:
            raise SdpError(488, f"a=path URI {_show(uri)!r} is not msrp: or msrps:")
    types_attr = attrs.get("accept-types")
    accept_types = _media_types("accept-types", *types_attr) if types_attr else ()
    if not accept_types:
        raise SdpError(488, "the MSRP media has no a=accept-types (RFC 4975 section 8.1)")
    wrapped_attr = attrs.get("accept-wrapped-types")
    wrapped = _media_types("accept-wrapped-types", *wrapped_attr) if wrapped_attr else ()
    max_size: int | None = None
    size_attr = attrs.get("max-size")
    if size_attr is not None:
        size_text = (size_attr[0] or "").strip()
        if _DIGITS.fullmatch(size_text) is None:
            raise SdpError(488, f"SDP line {size_attr[1]}: a=max-size {_show(size_text)!r} is not a number")
        max_size = int(size_text)
    room_attr = attrs.get("chatroom")
    chatroom = frozenset(t.lower() for t in (room_attr[0] or "").split()) if room_attr else frozenset()
    setup = _choice("setup", SETUP_VALUES, "active", attrs.get("setup"), session_attrs.get("setup"))
    connection = _choice(
        "connection", CONNECTION_VALUES, "new", attrs.get("connection"), session_attrs.get("connection")
    )
    others = tuple((i, " ".join(level.fields)) for i, level in enumerate(media) if i != index)
    return MsrpOffer(
        origin_user=origin[0],
        session_id=origin[1],
        session_version=origin[2],
        address=address,
        port=int(fields[1].partition("/")[0]),
        tls=_MSRP_PROTOS[fields[2].upper()],
        path=path,
        accept_types=accept_types,
        accept_wrapped_types=wrapped,
        max_size=max_size,
        setup=setup,
        connection=connection,
        chatroom=chatroom,
        media_index=index,
        media_count=len(media),
        other_media=others,
    )


# ---------------------------------------------------------------- negotiation


def answer_setup(offer_setup: str) -> str:
    """Our ``a=setup`` role for an offered one (RFC 4145 section 4.1).

    ``active`` -> ``passive``, ``passive`` -> ``active``, ``holdconn`` -> ``holdconn``,
    ``actpass`` -> ``passive`` (our choice: the focus listens where anyone can reach it).

    Raises:
        SdpError: 488 for a value RFC 4145 does not define.
    """
    role = offer_setup.strip().lower()
    if role == "passive":
        return "active"
    if role in ("active", "actpass"):
        return "passive"
    if role == "holdconn":
        return "holdconn"
    raise SdpError(488, f"a=setup value {_show(role)!r} is not one of RFC 4145's")


def _base(media_type: str) -> str:
    """``type/subtype`` (or ``*``) of an accept-types entry, lower-cased, parameters dropped."""
    return media_type.partition(";")[0].strip().lower()


def _covers(pattern: str, media_type: str) -> bool:
    """Whether the (base) ``pattern`` (``*``, ``type/*`` or exact) takes ``media_type``."""
    if pattern == "*" or pattern == media_type:
        return True
    if pattern.endswith("/*"):
        return media_type != "*" and media_type.partition("/")[0] == pattern[:-2]
    return False


def negotiate_types(offered: tuple[str, ...], ours: tuple[str, ...]) -> tuple[str, ...]:
    """The media types both sides take, in our order (RFC 4975 section 8.1 accept-types).

    ``*`` and ``type/*`` are wildcards on either side. Each pair of entries that overlaps
    contributes the narrower of the two (``text/*`` and ``text/plain`` give
    ``text/plain``; ``*`` and ``*`` give ``*``). Entries are compared without case and
    without parameters; the result is lower-cased, parameters dropped, each type once.

    Args:
        offered: the peer's accept-types (e.g. ``MsrpOffer.accept_types``).
        ours: the types we take or send, in our order of preference.

    Returns:
        The common types; ``()`` when there are none.
    """
    theirs = [_base(t) for t in offered]
    out: list[str] = []
    for mine in (_base(t) for t in ours):
        for other in theirs:
            if _covers(mine, other):
                pick = other
            elif _covers(other, mine):
                pick = mine
            else:
                continue
            if pick not in out:
                out.append(pick)
    return tuple(out)


def offer_accepts(offer: MsrpOffer, content_type: str) -> bool:
    """Whether the offerer takes ``content_type`` (its accept-types has it or a wildcard).

    A chat room checks ``message/cpim`` (RFC 7701 section 6). Parameters of
    ``content_type`` are ignored, case too.
    """
    wanted = _base(content_type)
    return bool(wanted) and any(_covers(_base(t), wanted) for t in offer.accept_types)


# ---------------------------------------------------------------- the answer


def _refuse(what: str) -> LocalProtocolError:
    return LocalProtocolError(f"cannot write SDP answer: {what}", 500)


def _check_types(name: str, types: tuple[str, ...]) -> None:
    for t in types:
        m = _MEDIA_TYPE.fullmatch(t)
        if m is None or m.group(1) == "*":
            raise _refuse(f"{name} entry {t!r} is not a media type")


def build_msrp_answer(
    offer: MsrpOffer,
    *,
    address: str,
    path: str,
    accept_types: tuple[str, ...],
    accept_wrapped_types: tuple[str, ...] = (),
    chatroom: tuple[str, ...] = (),
    setup: str | None = None,
    session_id: str,
    session_version: str = "1",
    origin_user: str = "-",
    port: int = 9,
    max_size: int | None = None,
    connection: str | None = None,
) -> bytes:
    """The SDP answer to ``offer``: its MSRP media accepted, every other ``m=`` refused.

    The body is ``v=0``, ``o=``, ``s=-``, ``c=IN IP4|IP6 address`` (IP6 when the address
    has a ``:``), ``t=0 0``, then one ``m=`` line per offered one in the offer's order
    (RFC 3264 section 6): the MSRP media as ``m=message <port> TCP/MSRP *`` (TLS as
    offered) with ``a=accept-types``, ``a=accept-wrapped-types`` (if any), ``a=path``,
    ``a=max-size`` (if given), ``a=setup``, ``a=connection`` (if given) and
    ``a=chatroom`` (if any tokens); every other one with port 0 and its media, proto and
    formats as offered. Lines end in CRLF.

    Args:
        offer: what :func:`parse_msrp_offer` read.
        address: our host for ``o=`` and ``c=`` (MSRP itself routes by ``path``).
        path: our MSRP URI (or relay URIs then ours, space-separated), ``msrp://``/``msrps://``.
        accept_types: what we take, e.g. ``("message/cpim",)``; not empty.
        accept_wrapped_types: the types we take inside wrappers, e.g. ``("*",)``.
        chatroom: RFC 7701 section 8 tokens, e.g. ``("nickname", "private-messages")``.
        setup: our role (``active``, ``passive`` or ``holdconn``; RFC 4145 forbids
            ``actpass`` in an answer); None derives it with :func:`answer_setup`.
        session_id: ``o=`` sess-id; digits (RFC 4566 section 5.2).
        session_version: ``o=`` sess-version; digits, to be raised on each new answer.
        origin_user: ``o=`` username, no blanks (``-`` is "none").
        port: the ``m=`` port, 1 to 65535; 9 (discard) when we are not listening.
        max_size: ``a=max-size`` in octets, None for none.
        connection: ``a=connection`` (``new`` or ``existing``), None to leave it out.

    Returns:
        The answer body.

    Raises:
        LocalProtocolError: a value above that the answer cannot carry (status hint 500).
        SdpError: 488 when ``setup`` is None and the offer's role is unknown.
    """
    if not _ADDRESS.fullmatch(address):
        raise _refuse(f"address {address!r} is empty or has blanks or controls")
    uris = path.split()
    if not uris or any(_MSRP_URI.match(u) is None or _BAD_CHAR.search(u) for u in uris):
        raise _refuse(f"path {path!r} is not msrp:// or msrps:// URIs")
    if not accept_types:
        raise _refuse("accept_types is empty (RFC 4975 section 8.1 makes it mandatory)")
    _check_types("accept_types", accept_types)
    _check_types("accept_wrapped_types", accept_wrapped_types)
    for token in chatroom:
        if not _TOKEN_RE.fullmatch(token):
            raise _refuse(f"chatroom token {token!r} is not a token")
    role = answer_setup(offer.setup) if setup is None else setup
    if role not in ("active", "passive", "holdconn"):
        raise _refuse(f"setup {role!r} is not active, passive or holdconn")
    if connection is not None and connection not in CONNECTION_VALUES:
        raise _refuse(f"connection {connection!r} is not new or existing")
    for name, digits in (("session_id", session_id), ("session_version", session_version)):
        if _DIGITS.fullmatch(digits) is None:
            raise _refuse(f"{name} {digits!r} is not 1 to 19 digits (RFC 4566 section 5.2)")
    if not _ADDRESS.fullmatch(origin_user):
        raise _refuse(f"origin_user {origin_user!r} is empty or has blanks or controls")
    if not 0 < port <= 65535:
        raise _refuse(f"port {port} is not 1 to 65535")
    if max_size is not None and not 0 <= max_size < 10**19:
        raise _refuse(f"max_size {max_size} is not 0 to 19 digits")

    addrtype = "IP6" if ":" in address else "IP4"
    lines = [
        "v=0",
        f"o={origin_user} {session_id} {session_version} IN {addrtype} {address}",
        "s=-",
        f"c=IN {addrtype} {address}",
        "t=0 0",
    ]
    others = dict(offer.other_media)
    for i in range(offer.media_count):
        if i != offer.media_index:
            # RFC 3264 section 6: a refused stream keeps its media, proto and formats, port 0.
            parts = others.get(i, "").split()
            if len(parts) < 4:
                raise _refuse(f"offer.other_media has no m= line {i}")
            lines.append(f"m={parts[0]} 0 " + " ".join(parts[2:]))
            continue
        proto = "TCP/TLS/MSRP" if offer.tls else "TCP/MSRP"
        lines.append(f"m=message {port} {proto} *")
        lines.append("a=accept-types:" + " ".join(accept_types))
        if accept_wrapped_types:
            lines.append("a=accept-wrapped-types:" + " ".join(accept_wrapped_types))
        lines.append("a=path:" + " ".join(uris))
        if max_size is not None:
            lines.append(f"a=max-size:{max_size}")
        lines.append(f"a=setup:{role}")
        if connection is not None:
            lines.append(f"a=connection:{connection}")
        if chatroom:
            lines.append("a=chatroom:" + " ".join(chatroom))
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")
