"""The one hardened XML parser of the server (PIDF, and later policy, XCAP, RLMI), sans-IO.

Theory of operation: ``parse_xml(data)`` turns a body into an lxml element
tree or raises :class:`XmlRejected` (a ``RemoteProtocolError`` whose
``status_hint`` is the SIP status to answer with and whose message is short
and safe to quote in a ``Warning`` header). Nothing else escapes it: lxml
errors, decoding errors and our own limits all become ``XmlRejected``.

The checks, cheapest first, each before the input reaches libxml2:

1. size: more than ``max_bytes`` -> 413 (RFC 3261 §21.4.11); empty -> 400;
2. encoding: UTF-8 (with or without BOM) is taken as is; UTF-16 is taken only
   with a BOM and is transcoded to UTF-8 here; an XML declaration naming any
   other encoding is refused, and the parser is told the input is UTF-8 so
   libxml2 never guesses (EBCDIC, UTF-32 and BOM-less UTF-16 then fail as
   invalid UTF-8);
3. ``<!DOCTYPE`` anywhere: refused. Without a DTD there are no entity
   declarations, so the billion-laughs and quadratic-blowup bombs, external
   entities (XXE, ``file://``, ``http://``) and parameter entities never get
   to the parser. The byte scan also refuses a DOCTYPE-like string inside a
   comment or CDATA section; no presence document needs one.

Then libxml2 parses with every loader off, as a second line should the scan
ever miss a case: ``resolve_entities=False``, ``load_dtd=False``,
``no_network=True``, ``huge_tree=False`` (libxml2's own 256-level depth and
10 MB text-node limits stay on), ``collect_ids=False``. Comments and
processing instructions are dropped while parsing (they carry nothing a
presence server uses, and dropping them keeps them from reaching watchers);
the XML declaration is not a processing instruction and is always accepted.
After the parse: a DTD that slipped through is refused, then the element
count (skipped when the number of ``<`` bytes already bounds it) and the depth (one compiled XPath probe at
``max_depth + 1``) are checked.

Parsers and XPath probes are cached per thread: lxml parsers must not be
shared between threads, and building one costs more than a small parse.
"""

from __future__ import annotations

import re
import threading
from typing import Any, TypeAlias

from lxml import etree  # type: ignore[import-untyped]

from simplefast.errors import QuotableError

#: An lxml element (lxml ships no type information; see the mypy note in the README).
Element: TypeAlias = Any

DEFAULT_MAX_BYTES = 65536
DEFAULT_MAX_DEPTH = 32
DEFAULT_MAX_ELEMENTS = 4096

_XML_DECL = re.compile(rb"<\?xml[ \t\r\n][^>]{0,200}?\?>")
_DECL_ENCODING = re.compile(rb"""encoding[ \t\r\n]*=[ \t\r\n]*["']([^"']{0,40})["']""")
_UTF8_NAMES = frozenset((b"utf-8", b"utf8"))
_UTF16_NAMES = frozenset((b"utf-16", b"utf16"))


class XmlRejected(QuotableError):
    """An XML body we will not accept; nothing was changed because of it.

    Args:
        reason: what was wrong, in a few words; control characters, quotes and
            backslashes are replaced and it is cut to 160 characters, so it can go
            into a ``Warning: 399 host "reason"`` header as is.
        status_hint: the SIP status code to answer with (400, or 413 for size).
    """


class _PerThread(threading.local):
    def __init__(self) -> None:
        self.parsers: dict[bool, Any] = {}
        self.depth_probes: dict[int, Any] = {}


_local = _PerThread()


def _parser(remove_blank_text: bool = False) -> Any:
    """The hardened lxml parser of this thread (exposed for the tests of the second line)."""
    p = _local.parsers.get(remove_blank_text)
    if p is None:
        p = etree.XMLParser(
            encoding="utf-8",
            resolve_entities=False,
            load_dtd=False,
            dtd_validation=False,
            attribute_defaults=False,
            no_network=True,
            huge_tree=False,
            collect_ids=False,
            remove_comments=True,
            remove_pis=True,
            remove_blank_text=remove_blank_text,
            strip_cdata=True,
        )
        _local.parsers[remove_blank_text] = p
    return p


def _depth_probe(max_depth: int) -> Any:
    probe = _local.depth_probes.get(max_depth)
    if probe is None:
        probe = etree.XPath("boolean(" + "/*" * (max_depth + 1) + ")")
        _local.depth_probes[max_depth] = probe
    return probe


# The declarations nearly every body starts with: UTF-8 declared, nothing to check.
PLAIN_DECLS = (b'<?xml version="1.0" encoding="UTF-8"?>', b"<?xml version='1.0' encoding='UTF-8'?>",
                b'<?xml version="1.0" encoding="utf-8"?>')  # fmt: skip


def _to_utf8(data: bytes) -> bytes:
    """The body as UTF-8 bytes, or XmlRejected for an encoding we do not take."""
    if data.startswith(PLAIN_DECLS):
        return data
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            text = data.decode("utf-16")  # strict; the BOM picks the byte order
        except UnicodeDecodeError as exc:
            raise XmlRejected(f"invalid UTF-16 at byte {exc.start}") from None
        if text.startswith("\ufeff"):
            text = text[1:]
        data = text.encode("utf-8", "surrogatepass")
        declared_ok = _UTF16_NAMES | _UTF8_NAMES
    else:
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        declared_ok = _UTF8_NAMES
    if data.startswith(b"<?xml"):
        decl = _XML_DECL.match(data)
        if decl is not None:
            enc = _DECL_ENCODING.search(decl.group(0))
            if enc is not None and enc.group(1).lower() not in declared_ok:
                name = enc.group(1).decode("ascii", "replace")
                raise XmlRejected(f"encoding {name} not accepted (UTF-8 or UTF-16 only)")
    return data


def parse_xml(
    data: bytes | bytearray | memoryview,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    remove_blank_text: bool = False,
) -> Element:
    """Parse an XML body with every loader off and every size bounded.

    Args:
        data: the body, as received.
        max_bytes: largest body accepted (413 above it).
        max_depth: deepest element accepted, the root being at depth 1.
        max_elements: most elements accepted in the whole document.
        remove_blank_text: drop whitespace-only text between elements (lxml's
            heuristic: only where an element has element children).

    Returns:
        The root element.

    Raises:
        XmlRejected: for anything not well-formed, not UTF-8/UTF-16, carrying a
            DTD, or past a bound.
    """
    if len(data) > max_bytes:
        raise XmlRejected(f"XML body of {len(data)} bytes exceeds {max_bytes}", 413)
    raw = bytes(data)
    if not raw or raw.isspace():
        raise XmlRejected("empty XML body")
    raw = _to_utf8(raw)
    if raw.find(b"<!DOCTYPE") >= 0:  # find: `in` first tries the needle as an integer (slower)
        raise XmlRejected("DOCTYPE not allowed (no DTDs or entities)")
    try:
        root = etree.fromstring(raw, _parser(remove_blank_text))
    except etree.XMLSyntaxError as exc:
        msg = exc.msg or "syntax error"
        raise XmlRejected(f"not well-formed XML: {msg}") from None
    except (etree.LxmlError, ValueError, TypeError) as exc:  # defensive: no lxml error escapes
        raise XmlRejected(f"not well-formed XML: {exc}") from None
    if root is None:
        raise XmlRejected("no root element")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise XmlRejected("DOCTYPE not allowed (no DTDs or entities)")
    opening = raw.count(b"<") - raw.count(b"</")  # at least one per element: a bound on both counts
    if opening > max_elements:  # only count when that can exceed
        count = sum(1 for _ in root.iter())
        if count > max_elements:
            raise XmlRejected(f"XML has {count} nodes, limit {max_elements}")
    if opening > max_depth and _depth_probe(max_depth)(root):  # fewer elements cannot nest deeper
        raise XmlRejected(f"XML nesting deeper than {max_depth}")
    return root
