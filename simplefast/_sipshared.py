"""Cold-path helpers both SIP codec twins call, so their results and error
texts are the same by construction: argument checks of the public functions,
nothing per octet."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable
from typing import Any

from simplefast.errors import LocalProtocolError, SipParseError

# Limits past these mean "no limit"; they are clamped so the compiled twin can
# hold them in C integers (and error texts show the clamped value in both).
MAX_BYTES_LIMIT = 1 << 62
MAX_HEADERS_LIMIT = (1 << 31) - 1


def limits(max_header_bytes: int, max_headers: int, max_body_bytes: int) -> tuple[int, int, int]:
    """Checked and clamped (max_header_bytes, max_headers, max_body_bytes)."""
    for name, value in (
        ("max_header_bytes", max_header_bytes),
        ("max_headers", max_headers),
        ("max_body_bytes", max_body_bytes),
    ):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if value < 0:
            raise ValueError(f"{name} must be >= 0, not {value}")
    return (
        min(max_header_bytes, MAX_BYTES_LIMIT),
        min(max_headers, MAX_HEADERS_LIMIT),
        min(max_body_bytes, MAX_BYTES_LIMIT),
    )


def encode_input(text: str, what: str) -> bytes:
    """UTF-8 (surrogateescape) of text handed to a parser; SipParseError when impossible."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise SipParseError(f"{what} {text[:64]!r} cannot be encoded as UTF-8") from None


def encode_output(text: str, what: str) -> bytes:
    """UTF-8 (surrogateescape) of text we are asked to send; LocalProtocolError when impossible."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise LocalProtocolError(f"{what} {text[:64]!r} cannot be encoded as UTF-8") from None


def is_ip_address(text: str) -> bool:
    """An IPv4 or IPv6 address as a received= value (RFC 3261 section 25.1), no brackets."""
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)
    except (OSError, ValueError, UnicodeEncodeError):
        return False
    return True


def check_response_args(
    status: object, reason: str, to_tag: str | None, received: str | None, rport: object
) -> None:
    """build_response's checks of the values the caller gives, in one order for both twins."""
    if not isinstance(status, int) or isinstance(status, bool):
        raise TypeError(f"status must be an int, not {type(status).__name__}")
    if not 100 <= status <= 699:
        raise LocalProtocolError(f"status {status} out of range 100-699")
    if "\r" in reason or "\n" in reason:
        raise LocalProtocolError("reason phrase contains CR or LF")
    encode_output(reason, "reason phrase")
    if to_tag is not None:
        encode_output(to_tag, "To tag")
        if not is_token(to_tag):
            raise LocalProtocolError(f"To tag {to_tag!r} is not a token")
    check_source(received, rport)


def check_source(received: str | None, rport: object) -> None:
    """The packet source given to build_response / forward_request (Via stamping)."""
    if received is not None and not is_ip_address(received):
        raise LocalProtocolError(f"received {received!r} is not an IP address")
    if rport is not None:
        if not isinstance(rport, int) or isinstance(rport, bool):
            raise TypeError(f"rport must be an int, not {type(rport).__name__}")
        if not 1 <= rport <= 65535:
            raise LocalProtocolError(f"rport {rport!r} is not a port")


def header_value(value: object, what: str) -> bytes:
    """A header value we are asked to write as given: a str, not blank, no CR or LF."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if "\r" in value or "\n" in value:
        raise LocalProtocolError(f"{what} contains CR or LF")
    b = encode_output(value, what)
    if not b.strip(b" \t"):
        raise LocalProtocolError(f"{what} is empty")
    return b


def check_forward_args(
    is_request: bool,
    uri: object,
    via: object,
    record_route: object,
    routes: Iterable[object],
    max_forwards: object,
    received: str | None,
    rport: object,
) -> tuple[bytes, bytes, bytes | None, list[bytes]]:
    """forward_request's checks, in one order for both twins; returns the
    encoded (uri, via, record_route, routes)."""
    if not is_request:
        raise ValueError("forward_request needs a request, not a response")
    uri_b = header_value(uri, "Request-URI")
    if b" " in uri_b or b"\t" in uri_b:
        raise LocalProtocolError(f"Request-URI {uri!r} contains white space")
    via_b = header_value(via, "Via")
    rr_b = None if record_route is None else header_value(record_route, "Record-Route")
    if isinstance(routes, (str, bytes)):
        raise TypeError("routes must be a sequence of str, not a single value")
    routes_b = [header_value(r, "Route") for r in routes]
    if not isinstance(max_forwards, int) or isinstance(max_forwards, bool):
        raise TypeError(f"max_forwards must be an int, not {type(max_forwards).__name__}")
    if not 0 <= max_forwards <= 255:
        raise LocalProtocolError(f"max_forwards {max_forwards} out of range 0-255")
    check_source(received, rport)
    return uri_b, via_b, rr_b, routes_b


def header_pair_bytes(name: str, value: str) -> bytes:
    """One extra header line of build_response, checked."""
    encode_output(name, "header name")
    if not is_token(name):
        raise LocalProtocolError(f"header name {name!r} is not a token")
    if "\r" in value or "\n" in value:
        raise LocalProtocolError(f"value of header {name!r} contains CR or LF")
    return (
        encode_output(name, "header name")
        + b": "
        + encode_output(value, f"value of header {name!r}")
        + b"\r\n"
    )


_TOKEN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")


def is_token(text: str) -> bool:
    b = text.encode("utf-8", "surrogateescape")
    return bool(b) and all(c in _TOKEN for c in b)


_QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")


def qvalue(raw: str) -> float | None:
    """RFC 3261 25.1 qvalue ("0" ["." 0*3DIGIT] / "1" ["." 0*3("0")]) as a float; None when
    ``raw`` is not one (the registrar's Contact q, RFC 3863 priority)."""
    return float(raw) if _QVALUE.fullmatch(raw) else None


def source_params(msg: Any, peer: Any) -> dict[str, Any]:
    """received/rport for the previous hop's Via (RFC 3261 18.2.1, RFC 3581 4): what the
    codec stamps on it (``build_response``'s keywords); nothing when the peer has no
    address. Shared by the proxy and the fast paths of either twin."""
    if type(peer) is tuple and len(peer) >= 2 and peer[0]:
        try:
            rport = msg.via_rport
        except SipParseError:
            return {}
        return {"received": peer[0], "rport": peer[1] if rport is not None else None}
    return {}


def negotiate(accepts: list[str], offered: tuple[str, ...]) -> str | None:
    """The first body type of ``offered`` the Accept elements admit (none: the first; the
    codec splits the comma list): the notifier's, and its fast path's (fastsub)."""
    if len(accepts) == 1 and accepts[0] in offered:  # the common case: just what we offer
        return accepts[0]
    wanted = {a.split(";", 1)[0].strip().lower() for a in accepts} - {""}
    if not wanted:
        return offered[0]
    for ct in offered:
        if ct in wanted or f"{ct.split('/', 1)[0]}/*" in wanted or "*/*" in wanted:
            return ct
    return None
