"""SIP layer: the message codec (compiled or reference, see simplefast._impl)
and, in later modules, the sans-IO transaction and dialog engines."""

from simplefast._impl import sipmsg as _codec
from simplefast._sip_types import NameAddr, SipURI, Via
from simplefast.errors import SipParseError

SipMessage = _codec.SipMessage
SipStreamParser = _codec.SipStreamParser
parse_message = _codec.parse_message
validate_request = _codec.validate_request
unsupported_requires = _codec.unsupported_requires
parse_uri = _codec.parse_uri
parse_via = _codec.parse_via
parse_name_addr = _codec.parse_name_addr
build_response = _codec.build_response
forward_request = _codec.forward_request
strip_top_via = _codec.strip_top_via


def warning_header(text: str) -> tuple[str, str]:
    """A ``Warning: 399 simplefast "..."`` header (RFC 3261 20.43) saying ``text``: printable
    ASCII only, quotes and backslashes replaced, at most 160 characters."""
    clean = "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text[:160])
    return ("Warning", f'399 simplefast "{clean}"')


__all__ = [
    "NameAddr",
    "SipMessage",
    "SipParseError",
    "SipStreamParser",
    "SipURI",
    "Via",
    "build_response",
    "forward_request",
    "parse_message",
    "parse_name_addr",
    "parse_uri",
    "parse_via",
    "strip_top_via",
    "unsupported_requires",
    "validate_request",
    "warning_header",
]
