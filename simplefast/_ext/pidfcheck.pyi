"""The structure check of a parsed PIDF document (RFC 3863, RFC 4479).

This stub is the contract both twins implement: ``simplefast._ext.pidfcheck``
(Cython) and ``simplefast._ref.pidfcheck`` (pure Python, the specification;
the rules are listed in simplefast/presence/pidf.py). Same result and the
same ``XmlRejected`` message for every document.
"""

from typing import Any

def structure(
    root: Any,
) -> tuple[
    str,
    list[tuple[str, str, float | None, str | None, Any]],
    list[tuple[str, str, float | None, str | None, Any]],
    list[tuple[str, str, float | None, str | None, Any]],
    list[Any],
    list[Any],
]:
    """Check a parsed ``<presence>`` root (lxml element, parsed with blank text removed)
    and return ``(entity, tuples, persons, devices, notes, extensions)``; each component
    is ``(kind, id, timestamp, basic, element)``.

    Raises:
        XmlRejected: the first rule the document breaks (400), with a message naming it.
    """
