"""XML Schema datatypes the presence documents use: ``xs:dateTime`` and ``xs:ID`` (NCName).

Shared by the PIDF structure check (both twins of ``pidfcheck``) and composition.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from simplefast.presence.xmlsafe import XmlRejected

# xs:ID is an NCName: a letter or "_" first, then letters, digits, ".", "-", "_".
NCNAME = re.compile(r"[^\W\d][\w.\-\u00b7\u0300-\u036f\u203f\u2040]*\Z")
_DATETIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?\Z")


def parse_timestamp(text: str | None, where: str = "timestamp") -> float:
    """An ``xs:dateTime`` as POSIX seconds (no zone: UTC). Raises XmlRejected."""
    t = (text or "").strip()
    m = _DATETIME.match(t)
    if m is None:
        raise XmlRejected(f"{where} {t[:40]!r} is not an xs:dateTime")
    extra = timedelta(0)
    if m.group(4) == "24":  # xs:dateTime allows 24:00:00 for the end of a day
        if m.group(5) != "00" or m.group(6) != "00" or (m.group(7) or ".0").strip(".0"):
            raise XmlRejected(f"{where} {t[:40]!r} is not an xs:dateTime")
        t = t[:11] + "00" + t[13:]
        extra = timedelta(days=1)
    try:
        dt = datetime.fromisoformat(t)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return (dt + extra).timestamp()
    except (ValueError, OverflowError):
        raise XmlRejected(f"{where} {t[:40]!r} is not a valid date and time") from None
