"""Helpers shared by tests/ and bench/: the twin fixture and the vector paths.

Importing this module does not import pytest; ``impl_fixture`` does, when
called from a conftest.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from simplefast._impl import load

REPO = Path(__file__).resolve().parent.parent
# A byte-exact copy of shared/vectors (CI runs on a fresh clone without it).
VECTORS = REPO / "tests" / "vectors"
RFC4475 = VECTORS / "sip" / "rfc4475"

IMPL_KINDS: tuple[str, ...] = ("ref", "ext")

MSRP_VECTORS = VECTORS / "msrp"
_MSRP_CONTINUATION = re.compile(rb"\\\r\n[ \t]*")


def msrp_vector(name: str) -> bytes:
    """An MSRP vector's octets, with RFC 4976's page-width line continuations joined.

    RFC 4976 wraps long header lines with a trailing "\\"; the RFC says neither the backslash
    nor the line break is part of the real message. The continuation line's indentation is
    page layout too: the grammar puts one SP between To-Path URIs (section 9 of RFC 4975), and
    that SP is the one printed before the backslash. So backslash + CRLF + the next line's
    leading spaces are dropped (manifest.json says which vectors have them).
    """
    raw = (MSRP_VECTORS / name).read_bytes()
    manifest = json.loads((MSRP_VECTORS / "manifest.json").read_text())
    if "line continuations" in manifest[name]["note"]:
        raw = _MSRP_CONTINUATION.sub(b"", raw)
    return raw


def mutate(raw: bytes, data: Any) -> bytes:
    """1 to 4 random edits of ``raw`` (flip an octet, cut a run, duplicate a run), drawn
    from a hypothesis ``st.data()`` object: for "malformed input gets our error" tests."""
    from hypothesis import strategies as st

    out = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "dup"]))
        i = data.draw(st.integers(0, len(out) - 1))
        if op == "flip":
            out[i] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del out[i : i + data.draw(st.integers(1, 20))]
        else:
            out[i:i] = out[i : i + data.draw(st.integers(1, 40))]
        if not out:
            break
    return bytes(out)


def msrp_summary(m: Any) -> tuple[Any, ...]:
    """Everything a parsed MSRP message says, for comparing twins and runs."""
    return (m.is_request, m.tid, m.method, m.status, m.comment, m.flag, m.headers(), bytes(m.body),
            m.has_content, m.to_bytes())  # fmt: skip


def load_impl(kind: str) -> SimpleNamespace:
    """The twin modules of one kind ("ref" or "ext")."""
    return load(kind)


def impl_fixture() -> Any:
    """A session fixture ``impl`` parametrized over both twins (ids ref, ext)."""
    import pytest

    @pytest.fixture(scope="session", params=IMPL_KINDS, ids=IMPL_KINDS)
    def impl(request: pytest.FixtureRequest) -> SimpleNamespace:
        return load_impl(request.param)

    return impl


class OtherCodec:
    """A twin of one kind under a SipCore whose codec is of the other (ref under ext, or the
    other way): what the methods named in ``methods`` decline (a SipMessage of the twin's
    codec) is parsed again by ``parse``, the core's codec, since a message of one codec does
    not go into the other's functions. Their other results (None, True, bytes) pass as they
    are; every other attribute, read or set, is the wrapped twin's."""

    def __init__(self, inner: Any, parse: Any, *methods: str) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_parse", parse)
        object.__setattr__(self, "_methods", frozenset(methods))

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in self._methods:
            return attr

        def call(data: bytes, *args: Any) -> Any:
            out = attr(data, *args)
            return out if out is None or out is True or type(out) is bytes else self._parse(data)

        return call

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._inner, name, value)

    def __len__(self) -> int:
        return len(self._inner)


def fnv_tag(key: bytes, branch: str, call_id: str, cseq: int, from_tag: str) -> str:
    """An independent FNV-1a 64 of ``fastreg.to_tag``'s documented input (the oracle of the
    fast paths' To tags and entity-tags)."""
    data = key + b"".join(
        s.encode("utf-8", "surrogateescape") + b"\x00" for s in (branch, call_id, str(cseq), from_tag)
    )
    h = 0xCBF29CE484222325
    for c in data:
        h = ((h ^ c) * 0x100000001B3) & ((1 << 64) - 1)
    return f"{h:016x}"
