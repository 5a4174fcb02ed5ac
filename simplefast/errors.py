"""Exception classes shared by every simplefast layer.

The hierarchy (STYLE.md section 6)::

    SimplefastError
      ProtocolError                 carries ``status_hint``
        RemoteProtocolError         the peer sent something invalid
          SipParseError             a SIP message or URI we cannot accept
          QuotableError             a body we refuse, with a reason fit for a Warning header
        LocalProtocolError          we tried to send something invalid
      ConfigError                   bad configuration (exit code 2)
      TableFullError                a shared-memory table has no room left

``status_hint`` is the SIP status code to answer with when the offending
input was a request (400 unless an RFC names another code: 413, 416, 420,
481, 489, 505, 513, ...).  Messages say what, where and which limit, e.g.
``"Content-Length b'12x' is not a number (header 5, offset 212)"``.
"""

from __future__ import annotations

import re


class SimplefastError(Exception):
    """Base class of every error simplefast raises on purpose."""


class ProtocolError(SimplefastError):
    """A protocol rule was broken.

    Args:
        message: what was wrong, where, and which limit applied.
        status_hint: the SIP status code to answer a request with.
    """

    status_hint: int

    def __init__(self, message: str, status_hint: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status_hint

    def __reduce__(self) -> tuple[type, tuple[str, int]]:
        return (type(self), (str(self), self.status_hint))


class RemoteProtocolError(ProtocolError):
    """The peer sent something invalid."""


class LocalProtocolError(ProtocolError):
    """We were about to send something invalid (a bug on our side)."""


class SipParseError(RemoteProtocolError):
    """A SIP message, header or URI that does not follow RFC 3261's grammar,
    or one past a configured bound."""


_REASON_MAX = 160
_UNSAFE_REASON = re.compile(r'[\x00-\x1f\x7f"\\]+')


class QuotableError(RemoteProtocolError):
    """A body we refuse (XML, CPIM, ...), with a reason safe to quote in a SIP
    ``Warning: 399 host "reason"`` header: control characters, quotes and
    backslashes are replaced and it is cut to 160 characters.

    Args:
        reason: what was wrong, in a few words.
        status_hint: the SIP status code to answer with (400, or 413 for size).
    """

    def __init__(self, reason: str, status_hint: int = 400) -> None:
        reason = _UNSAFE_REASON.sub(" ", reason).strip()
        if len(reason) > _REASON_MAX:
            reason = reason[: _REASON_MAX - 3] + "..."
        super().__init__(reason, status_hint)

    @property
    def reason(self) -> str:
        """The short reason (the same text as ``str(exc)``)."""
        return str(self)


class ConfigError(SimplefastError):
    """Bad configuration; the message names the key and the problem."""


class TableFullError(SimplefastError):
    """A shared-memory table (simplefast._ext.shmindex) is at its capacity.

    The message names the capacity, e.g. ``"shared table is full: 750000
    entries (75% of 1000000 slots)"``. Raised by an insert of a new key; a
    replace of an existing key never raises it.
    """
