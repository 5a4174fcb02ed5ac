"""Both twins of the SIP codec observe every published vector identically.

Every ``.dat`` under tests/vectors/sip/ (RFC 4475, sectioned and not) and every
``.msg`` under tests/vectors/flows/ goes through ``parse_message`` with every
accessor (snapshot.py); every URI written in those messages through
``parse_uri`` (plus ``equivalent``), and every header value and comma element
through ``parse_via`` and ``parse_name_addr``.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from snapshot import (
    first_difference,
    snapshot,
    snapshot_text,
    snapshot_uri,
    unexpected,
)

from simplefast.testing import VECTORS

SIP_VECTORS = sorted((VECTORS / "sip").rglob("*.dat"))
FLOW_VECTORS = sorted((VECTORS / "flows").glob("*.msg"))
ALL_VECTORS = SIP_VECTORS + FLOW_VECTORS


def vector_id(p: Path) -> str:
    return str(p.relative_to(VECTORS))


def test_vectors_are_there() -> None:
    # 33 sectioned RFC 4475 messages, the unsectioned test.dat, 25 flow messages.
    assert len(SIP_VECTORS) == 34
    assert len(FLOW_VECTORS) == 25


# Anything that looks like a URI: <...> contents, and scheme:... runs.
_ANGLE = re.compile(rb"<([^<>\r\n]*)>")
_SCHEMED = re.compile(rb"(?<![A-Za-z0-9+.-])(?:sips?|tel|pres|im|mailto|https?|urn|cid):[^\s<>\"]+", re.I)


def uris_in(data: bytes) -> list[str]:
    found: set[bytes] = set()
    first = data.lstrip(b"\r\n").split(b"\n", 1)[0].rstrip(b"\r").split(b" ")
    if len(first) >= 2:
        found.add(first[1])
    found.update(_ANGLE.findall(data))
    for m in _SCHEMED.findall(data):
        found.add(m)
        # also the shorter readings a header parser would take: up to ';' ',' '>' '?'
        for sep in (b";", b",", b"?", b">"):
            found.add(m.split(sep, 1)[0])
    return sorted(u.decode("utf-8", "surrogateescape") for u in found)


def header_texts(ref: SimpleNamespace, data: bytes) -> list[str]:
    """Every header value of the message, and every comma element of it."""
    try:
        msg = ref.sipmsg.parse_message(data)
    except ref.sipmsg.SipParseError:
        return []
    out: set[str] = set()
    for name, value in msg.headers():
        out.add(value)
        out.update(msg.get_all(name))
    return sorted(out)


@pytest.mark.parametrize("path", ALL_VECTORS, ids=vector_id)
def test_message_snapshots_agree(path: Path, ref: SimpleNamespace, ext: SimpleNamespace) -> None:
    data = path.read_bytes()
    a = snapshot(ref.sipmsg, data)
    b = snapshot(ext.sipmsg, data)
    assert a == b, first_difference(a, b)
    assert unexpected(a) == []
    assert unexpected(b) == []


@pytest.mark.parametrize("path", ALL_VECTORS, ids=vector_id)
def test_bytearray_and_memoryview_inputs_agree(
    path: Path, ref: SimpleNamespace, ext: SimpleNamespace
) -> None:
    # parse_message accepts bytes, bytearray and memoryview: same result for all three.
    data = path.read_bytes()
    want = snapshot(ref.sipmsg, data)
    for conv in (bytearray, memoryview):
        assert snapshot(ref.sipmsg, conv(data)) == want
        assert snapshot(ext.sipmsg, conv(data)) == want


@pytest.mark.parametrize("path", ALL_VECTORS, ids=vector_id)
def test_small_limits_agree(path: Path, ref: SimpleNamespace, ext: SimpleNamespace) -> None:
    # The bounds (513 / 413) around the message's own sizes.
    data = path.read_bytes()
    n = len(data)
    for limits in (
        {"max_header_bytes": n // 2},
        {"max_header_bytes": 64},
        {"max_headers": 3},
        {"max_headers": 0},
        {"max_body_bytes": 0},
        {"max_body_bytes": 10},
    ):
        a = snapshot(ref.sipmsg, data, **limits)
        b = snapshot(ext.sipmsg, data, **limits)
        assert a == b, (limits, first_difference(a, b))


@pytest.mark.parametrize("path", ALL_VECTORS, ids=vector_id)
def test_uris_in_vector_agree(path: Path, ref: SimpleNamespace, ext: SimpleNamespace) -> None:
    uris = uris_in(path.read_bytes())
    assert uris
    for text in uris:
        a = snapshot_uri(ref.sipmsg, text)
        b = snapshot_uri(ext.sipmsg, text)
        assert a == b, (text, first_difference(a, b))
        assert unexpected(a) == [], text


@pytest.mark.parametrize("path", ALL_VECTORS, ids=vector_id)
def test_header_values_agree(path: Path, ref: SimpleNamespace, ext: SimpleNamespace) -> None:
    for text in header_texts(ref, path.read_bytes()):
        a = snapshot_text(ref.sipmsg, text)
        b = snapshot_text(ext.sipmsg, text)
        assert a == b, (text, first_difference(a, b))
        assert unexpected(a) == [], text
