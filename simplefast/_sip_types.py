"""Result types shared by both SIP codec twins (``_ext.sipmsg`` and
``_ref.sipmsg``), so a differential test compares them with ``==``.

They are plain named tuples: built only when a caller asks for a structured
view (``parse_uri``, ``parse_via``, ``parse_name_addr``); the hot accessors of
a parsed message return ``str``/``int`` and never build these.
"""

from __future__ import annotations

from typing import NamedTuple

# Parameters keep their order of appearance; names are lower-cased (RFC 3261
# section 19.1.4 / 20: parameter names compare case-insensitively), values are
# kept exactly as written (None for a parameter without "=value").
Params = dict[str, "str | None"]


def _unescape(s: str) -> str:
    """Decode %HH escapes (RFC 3261 section 19.1.4 compares URIs unescaped)."""
    if "%" not in s:
        return s
    out = bytearray()
    raw = s.encode("utf-8", "surrogateescape")
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c == 0x25 and i + 2 < n and _ishex(raw[i + 1 : i + 3]):
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(c)
            i += 1
    return out.decode("utf-8", "surrogateescape")


def _ishex(b: bytes) -> bool:
    return len(b) == 2 and all(c in b"0123456789abcdefABCDEF" for c in b)


_DEFAULT_PORTS = {"sip": 5060, "sips": 5061}
# RFC 3261 section 19.1.4: these parameters must match if present in either.
_MUST_MATCH = ("user", "ttl", "method", "maddr", "transport")


class SipURI(NamedTuple):
    """A parsed URI.

    For ``sip:``/``sips:`` every component is filled in; for any other
    scheme (``tel:``, ``pres:``, ``im:``, unknown) only ``scheme`` and
    ``opaque`` (everything after the colon) are.
    Components keep their %HH escapes; ``host`` keeps the brackets of an IPv6
    reference and its case; ``scheme`` is lower-cased.
    """

    scheme: str
    user: str | None
    password: str | None
    host: str | None
    port: int | None
    params: Params
    headers: tuple[tuple[str, str], ...]
    opaque: str | None

    def equivalent(self, other: SipURI) -> bool:
        """RFC 3261 section 19.1.4 URI comparison."""
        if self.scheme != other.scheme:
            return False
        if self.scheme not in _DEFAULT_PORTS:
            return _unescape(self.opaque or "") == _unescape(other.opaque or "")
        # userinfo compares case-sensitively, after unescaping
        if _unescape(self.user or "") != _unescape(other.user or ""):
            return False
        if (self.user is None) != (other.user is None):
            return False
        if (self.password is None) != (other.password is None):
            return False
        if _unescape(self.password or "") != _unescape(other.password or ""):
            return False
        if (self.host or "").lower() != (other.host or "").lower():
            return False
        # an explicit default port is not equal to an absent one
        if self.port != other.port:
            return False
        for name in _MUST_MATCH:
            if (name in self.params) != (name in other.params):
                return False
        for name, value in self.params.items():
            if name in other.params:
                a, b = value, other.params[name]
                if (a is None) != (b is None):
                    return False
                if a is not None and b is not None and _unescape(a).lower() != _unescape(b).lower():
                    return False
        mine = sorted((n.lower(), _unescape(v)) for n, v in self.headers)
        theirs = sorted((n.lower(), _unescape(v)) for n, v in other.headers)
        return mine == theirs


class NameAddr(NamedTuple):
    """A From/To/Contact/Route style value: ``["display"] <uri> *(;param)``.

    ``display_name`` is None when absent, the unquoted text otherwise
    (quoted-pairs resolved). ``uri`` is the URI text as written (``"*"`` for
    a wildcard Contact). ``params`` are the header parameters after the URI.
    """

    display_name: str | None
    uri: str
    params: Params

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")


class Via(NamedTuple):
    """One Via element: ``SIP/2.0/UDP host:port;params``."""

    protocol: str  # "SIP/2.0", LWS removed, case as written
    transport: str  # upper-cased ("UDP", "TCP", "TLS", ...)
    host: str
    port: int | None
    params: Params

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")
