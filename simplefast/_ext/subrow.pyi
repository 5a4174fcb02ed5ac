"""The compact row of a subscription in the shared table (layout 2).

This stub is the contract both twins implement: ``simplefast._ext.subrow``
(Cython) and ``simplefast._ref.subrow`` (pure Python, the specification: its
docstring has the layout byte by byte). They write the same bytes, read the
same fields and raise ValueError on the same inputs.
"""

from typing import Any

LAYOUT: int
HEAD_SIZE: int
MAX_ROW: int
LITERAL: int
STATES: tuple[str, ...]
EVENTS: tuple[str, ...]
CONTENT_TYPES: tuple[str, ...]
POLICIES: tuple[str, ...]

def static(sub: Any) -> bytes:
    """The static part of the row of ``sub`` (a ``Subscription``): everything but the
    header. ValueError: a peer of unknown shape, a number out of range, a row longer
    than ``MAX_ROW``."""

def encode(sub: Any) -> bytes:
    """The row of ``sub``: the header from its fields now, then its static part, made
    and kept in ``sub.row_static`` when that is empty. ValueError as ``static``, or an
    unknown state."""

def decode(value: bytes) -> dict[str, Any]:
    """The fields of a layout 2 row: every ``Subscription`` field but ``key`` (the
    table's key), with ``row_static`` the static part. ValueError: anything that is
    not a whole layout 2 row."""

def notify_parts(value: bytes, key: str, contact: bytes) -> tuple[bytes, bytes]:
    """What a NOTIFY of the subscription of row ``value`` takes from it: the target
    (Request-URI) and the header lines the same for every NOTIFY of the dialog (Route
    lines, Max-Forwards, From with ``key`` as tag, To, Call-ID, Contact ``contact``,
    Event), each ending CRLF. ValueError as ``decode``, or a key that is not ASCII."""

def owner(value: bytes) -> int:
    """The owner of a row of layout 1 or 2 (both keep it at offset 1)."""
