"""The one-pass PIDF pre-check, reference twin of ext/pidfscan.pyx.

Theory of operation
-------------------
``check_pidf`` (simplefast/presence/pidf.py) is the rule: a PUBLISH body is a
PIDF document when the hardened lxml parser takes it and the structure check
(``pidfcheck``) passes. It builds a tree to walk it, which costs more than
the rest of a PUBLISH. ``scan(data)`` reads the body once with expat, keeps
no tree, and answers True only when it is sure ``check_pidf`` accepts the
body; False means "not sure" (the caller asks ``check_pidf``, which gives the
verdict and the message). So a True is never wrong, and anything unusual is
simply left to the full check:

- sizes: at most ``max_bytes``, nesting at most ``max_depth``, at most
  ``max_elements`` elements (``parse_xml``'s bounds);
- encoding: the body starts with ``<`` and no XML declaration, or with one of
  the plain UTF-8 declarations ``parse_xml`` passes as they are;
- no ``<!DOCTYPE`` anywhere in the octets, and no comment, processing
  instruction, CDATA section, or entity declaration (lxml drops or refuses
  them; we do not need to know which);
- expat (namespace processing, separator U+0001) finds the document well
  formed (this twin runs CPython's expat, the compiled one the system's
  libexpat: both 2.5.0 where it was built and tested); no local name of an
  element or attribute, and no prefix declared, is longer than 1024 bytes
  (libxml2 refuses names past 50 000);
- every namespace declared is one libxml2 surely takes as a URI (it refuses
  the document otherwise: "is not a valid URI"), so none holds ``}`` (lxml's
  Clark tags would compare such a namespace by prefix): a scheme, ``:``, then either
  ``//`` after ``http``/``https`` only, a host of letters, digits, ``.`` and
  ``-``, and an optional path of unreserved characters and ``/``; or (no
  ``//``) letters, digits and ``-._~:/?@!$'()*+,;=`` (no ``%``, ``#``,
  brackets, spaces or non-ASCII). No empty or undeclared namespace, and no
  declaration of the ``xml`` or ``xmlns`` prefix;
- the structure of ``pidf.py``'s rules, read as the elements stream by:
  root ``<presence>`` in the PIDF namespace; in it ``<tuple>`` and ``<note>``
  of PIDF, ``dm:person`` / ``dm:device`` of the data model, anything of
  another namespace (an extension, never looked into); no unqualified
  element where the rules forbid one; text in ``presence``, ``tuple``,
  ``status``, ``dm:person`` and ``dm:device`` only XML white space (space,
  tab, CR, LF: ``str.strip`` also strips other characters, which we leave to
  the full check);
- tuple, person and device ids: present, ASCII NCNames (a letter or ``_``,
  then letters, digits, ``.``, ``-``, ``_``), unique;
- a tuple has exactly one ``<status>``, at most one ``<contact>`` whose
  ``priority`` (if any) is a qvalue after trimming white space, at most one
  ``<timestamp>``, any ``<note>``, no other PIDF element; a status has at most
  one ``<basic>``, no other PIDF element; a basic has no child element and
  its text, trimmed, is ``open`` or ``closed``;
- a person or device has at most one ``dm:timestamp``, any ``dm:note``, and
  (device only) at most one ``dm:deviceID``, no other data-model element;
- a timestamp has no child element and its trimmed text is
  ``YYYY-MM-DDThh:mm:ss[.f+][Z|+hh:mm|-hh:mm]`` in ASCII digits with a real
  date, year 1000 to 9998, hours 0-23 (no ``24:00``), minutes and seconds
  0-59, an offset below 24 hours.
"""

from __future__ import annotations

import calendar
import re
from xml.parsers import expat

from simplefast._sipshared import qvalue as _qvalue
from simplefast.presence.xmlsafe import DEFAULT_MAX_BYTES as _MAX_BYTES
from simplefast.presence.xmlsafe import DEFAULT_MAX_DEPTH as _MAX_DEPTH
from simplefast.presence.xmlsafe import DEFAULT_MAX_ELEMENTS as _MAX_ELEMENTS
from simplefast.presence.xmlsafe import PLAIN_DECLS as _PLAIN_DECLS

_SEP = "\x01"
_P = "urn:ietf:params:xml:ns:pidf"
_DM = "urn:ietf:params:xml:ns:pidf:data-model"
_WS = " \t\r\n"
_NS_URI = re.compile(
    r"https?://[A-Za-z0-9.\-]+(/[A-Za-z0-9\-._~/]*)?\Z|[A-Za-z][A-Za-z0-9+.\-]*:(?!//)[A-Za-z0-9\-._~:/?@!$'()*+,;=]*\Z"
)
_ID = re.compile(r"[A-Za-z_][A-Za-z0-9._\-]*\Z")
_STAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?(Z|[+-]([0-9]{2}):([0-9]{2}))?\Z"
)

_ANY, _ROOT, _TUPLE, _STATUS, _BASIC, _STAMP_K, _PERSON, _DEVICE = range(8)
_STACK = 40
_NAME_MAX = 1024  # longest local name or prefix taken (libxml2 refuses past 50 000 bytes)
_TEXT = 64


class _Unsure(Exception):
    pass


def _stamp_ok(text: str) -> bool:
    m = _STAMP.match(text.strip(_WS))
    if m is None:
        return False
    y, mo, d, h, mi, se = (int(m.group(i)) for i in range(1, 7))
    if not (1000 <= y <= 9998 and 1 <= mo <= 12 and 0 <= h <= 23 and 0 <= mi <= 59 and 0 <= se <= 59):
        return False
    if not 1 <= d <= calendar.monthrange(y, mo)[1]:
        return False
    if m.group(9) is not None and not (int(m.group(9)) <= 23 and int(m.group(10)) <= 59):
        return False
    return True


class _Scan:
    def __init__(self, max_depth: int, max_elements: int) -> None:
        self.max_depth = max_depth
        self.max_elements = max_elements
        self.stack: list[list[int]] = [[_ANY, 0, 0, 0]]  # kind, counters a, b, c (see the twin)
        self.elements = 0
        self.text = b""
        self.ids: set[str] = set()
        self.ids_len = 0

    def _id_ok(self, attrs: dict[str, str]) -> bool:
        v = attrs.get("id")
        if v is None or not v.isascii() or _ID.match(v) is None or v in self.ids:
            return False
        if self.ids_len + len(v) + 1 > 1024:
            return False
        self.ids.add(v)
        self.ids_len += len(v) + 1
        return True

    def start(self, name: str, attrs: dict[str, str]) -> None:
        self.elements += 1
        if self.elements > self.max_elements or len(self.stack) > self.max_depth:
            raise _Unsure
        uri, sep, local = name.rpartition(_SEP)
        if _too_long(local) or any(_too_long(a.rpartition(_SEP)[2]) for a in attrs):
            raise _Unsure
        kind = self._child(attrs, uri if sep else None, local)
        if kind < 0:
            raise _Unsure
        self.stack.append([kind, 0, 0, 0])
        self.text = b""

    def _child(self, attrs: dict[str, str], ns: str | None, local: str) -> int:
        """The kind of an element opening under the top of the stack (its parent's
        counters counted); -1: not sure."""
        if len(self.stack) == 1:
            return _ROOT if ns == _P and local == "presence" else -1
        up = self.stack[-1]
        parent = up[0]

        def first(i: int) -> bool:  # one more of an element that may occur once
            up[i] += 1
            return up[i] == 1

        if parent == _ANY:
            return _ANY
        if parent in (_BASIC, _STAMP_K) or ns is None:
            return -1
        if parent == _ROOT:
            if ns == _P:
                if local == "tuple":
                    return _TUPLE if self._id_ok(attrs) else -1
                return _ANY if local == "note" else -1
            if ns == _DM and local in ("person", "device"):
                if not self._id_ok(attrs):
                    return -1
                return _PERSON if local == "person" else _DEVICE
            return _ANY
        if parent == _TUPLE:
            if ns != _P:
                return _ANY
            if local == "status":
                return _STATUS if first(1) else -1
            if local == "contact":
                prio = attrs.get("priority")
                return _ANY if first(2) and (prio is None or self._qvalue_ok(prio)) else -1
            if local == "timestamp":
                return _STAMP_K if first(3) else -1
            return _ANY if local == "note" else -1
        if parent == _STATUS:
            if ns != _P:
                return _ANY
            return _BASIC if first(1) and local == "basic" else -1
        if ns != _DM:  # person, device
            return _ANY
        if local == "timestamp":
            return _STAMP_K if first(1) else -1
        if local == "deviceID" and parent == _DEVICE:
            return _ANY if first(2) else -1
        return _ANY if local == "note" else -1

    @staticmethod
    def _qvalue_ok(v: str) -> bool:
        v = v.strip(_WS)
        return v.isascii() and _qvalue(v) is not None

    def end(self, name: str) -> None:
        kind, a, _, _ = self.stack.pop()
        if kind == _TUPLE and a != 1:
            raise _Unsure
        if kind == _BASIC:
            if self.text.strip(b" \t\r\n") not in (b"open", b"closed"):
                raise _Unsure
        elif kind == _STAMP_K:
            try:
                text = self.text.decode("ascii")
            except UnicodeDecodeError:
                raise _Unsure from None
            if not _stamp_ok(text):
                raise _Unsure

    def chars(self, data: str) -> None:
        if len(self.stack) == 1:
            return
        kind = self.stack[-1][0]
        if kind == _ANY:
            return
        if kind in (_BASIC, _STAMP_K):
            raw = data.encode("utf-8", "surrogatepass")
            if len(self.text) + len(raw) > _TEXT:
                raise _Unsure
            self.text += raw
            return
        if data.strip(_WS):
            raise _Unsure


def _refuse(*_args: object) -> None:
    raise _Unsure


def _ns_decl(prefix: str | None, uri: str | None) -> None:
    if uri is None or not uri.isascii() or _NS_URI.match(uri) is None or prefix in ("xml", "xmlns"):
        raise _Unsure
    if prefix is not None and _too_long(prefix):
        raise _Unsure


def _too_long(name: str) -> bool:
    return len(name.encode("utf-8", "surrogatepass")) > _NAME_MAX


def scan(
    data: bytes | bytearray | memoryview,
    *,
    max_bytes: int = _MAX_BYTES,
    max_depth: int = _MAX_DEPTH,
    max_elements: int = _MAX_ELEMENTS,
) -> bool:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
    raw = bytes(data)
    if not raw or len(raw) > max_bytes or len(raw) > 0x7FFFFFFF or max_depth > _STACK - 2 or max_depth < 1:
        return False
    max_elements = min(max_elements, 0x7FFFFFFF)  # as the twin: a C int
    if raw.startswith(b"<?xml"):
        if not raw.startswith(_PLAIN_DECLS):
            return False
    elif raw[0] != 0x3C:
        return False
    if raw.find(b"<!DOCTYPE") >= 0:
        return False
    s = _Scan(max_depth, max_elements)
    p = expat.ParserCreate("UTF-8", _SEP)
    p.StartElementHandler = s.start
    p.EndElementHandler = s.end
    p.CharacterDataHandler = s.chars
    p.CommentHandler = _refuse
    p.ProcessingInstructionHandler = _refuse
    p.StartCdataSectionHandler = _refuse
    p.StartDoctypeDeclHandler = _refuse
    p.EntityDeclHandler = _refuse
    p.StartNamespaceDeclHandler = _ns_decl
    try:
        p.Parse(raw, True)
    except (_Unsure, expat.ExpatError):
        return False
    return True
