"""Stream framing (SipStreamParser) agrees between the twins and does not
depend on how the stream is cut into chunks.

For each vector, and for concatenations of two or three vectors with
keep-alive CRLFCRLF (RFC 5626 section 3.5.1) and stray CRLFs between some:

- every split point into two chunks: ext and ref record the same trace (feed
  by feed: messages, errors, ping_count, buffered, and what feeds after an
  error do), and what the trace amounts to is what the reference gives when
  fed everything at once;
- one byte at a time (a handful of vectors and every concatenation), with full
  message snapshots;
- each framed message observes exactly as ``parse_message`` of its own
  octets (``to_bytes()``) does.

A stream message without Content-Length has an empty body (the stub), so the
RFC 4475 vectors without one, or with a wrong one, frame differently than as
a datagram, and the flow vectors with ``Content-Length: ...`` fail with 400:
those errors are compared too. When a feed raises, the messages completed
earlier in that same feed are lost with it, so with an error the messages
delivered depend on the cut: they must then be a prefix of what byte-at-a-time
feeding delivers.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from snapshot import (
    Snapshot,
    first_difference,
    snapshot,
    snapshot_stream,
    stream_outcome,
    unexpected,
)
from test_diff_vectors import ALL_VECTORS, vector_id

from simplefast.testing import load_impl

PING = b"\r\n\r\n"
# Full snapshots at every FULL_STRIDE-th split point (light summaries at all).
FULL_STRIDE = 23


def _framable(path: Path) -> bool:
    """A vector that is exactly one message with a right Content-Length."""
    data = path.read_bytes()
    sipmsg = load_impl("ref").sipmsg
    try:
        msg = sipmsg.parse_message(data)
        return msg.content_length == len(msg.body) and msg.to_bytes() == data
    except sipmsg.SipParseError:
        return False


FRAMABLE = [p for p in ALL_VECTORS if _framable(p)]
NOT_FRAMABLE = [p for p in ALL_VECTORS if p not in FRAMABLE]


def _concatenations() -> list[tuple[str, bytes]]:
    """Deterministic mixes of two or three vectors with pings/CRLFs between."""
    seps = [b"", PING, b"\r\n", PING + PING, b"\r\n\r\n\r\n", b"\n"]
    out: list[tuple[str, bytes]] = []
    n = len(FRAMABLE)
    for i in range(8):
        parts = [FRAMABLE[(i * 5) % n], FRAMABLE[(i * 7 + 3) % n]]
        if i % 2:
            parts.append(FRAMABLE[(i * 11 + 1) % n])
        data = PING if i % 3 == 0 else b""
        for k, p in enumerate(parts):
            if k:
                data += seps[(i + k) % len(seps)]
            data += p.read_bytes()
        if i % 4 == 1:
            data += PING
        out.append(("+".join(p.stem for p in parts) + f"#{i}", data))
    # one with a vector that cannot be framed (error mid-stream), one with a
    # message cut short at the end (buffered)
    bad = NOT_FRAMABLE[0].read_bytes()
    out.append(("good+bad+good", FRAMABLE[0].read_bytes() + PING + bad + FRAMABLE[1].read_bytes()))
    last = FRAMABLE[2].read_bytes()
    out.append(("good+partial", FRAMABLE[3].read_bytes() + last[: len(last) // 2]))
    return out


CONCATS = _concatenations()
# byte-at-a-time on a handful of single vectors
BYTEWISE = [ALL_VECTORS[i] for i in (0, 5, 17, 30, 34, 40, 50)] + NOT_FRAMABLE[:2]


def test_selection() -> None:
    assert len(FRAMABLE) >= 10
    assert len(CONCATS) == 10


def _trace(mod: Any, chunks: list[bytes], full: bool) -> Snapshot:
    return snapshot_stream(mod, chunks, full=full)


_OFFSET = re.compile(r"offset \d+")


def _unplaced(err: Any) -> Any:
    """An error outcome without its "offset N": in a stream, both twins count
    offsets from the start of the parser's internal buffer, which moves with
    the chunking (see test_sipmsg_cases.py::test_stream_error_offset_*)."""
    if err is None:
        return None
    return (*err[:3], _OFFSET.sub("offset N", err[3]))


def _check_equivalent_outcome(got: Snapshot, whole: Snapshot, bytewise: Snapshot | None, label: str) -> None:
    """``got`` (some chunking) amounts to what feeding everything at once gives."""
    g_msgs, g_err, g_state = stream_outcome(got)
    w_msgs, w_err, w_state = stream_outcome(whole)
    g_err, w_err = _unplaced(g_err), _unplaced(w_err)
    assert g_err == w_err, label
    assert g_state == w_state, label
    if w_err is None:
        assert g_msgs == w_msgs, label
    else:
        assert bytewise is not None
        b_msgs = stream_outcome(bytewise)[0]
        assert g_msgs == b_msgs[: len(g_msgs)], label


def _check_against_datagram(ref: SimpleNamespace, trace: Snapshot) -> None:
    """Every full message snapshot in the trace == parse_message of its octets."""
    for msg_snap in stream_outcome(trace)[0]:
        raw = dict(msg_snap)["to_bytes()"]
        assert raw[0] == "ok"
        dgram = snapshot(ref.sipmsg, raw[1])
        assert dgram[0] == ("parse_message", ("ok",))
        assert dgram[1:] == msg_snap, first_difference(dgram[1:], msg_snap)


def _run_splits(ref: SimpleNamespace, ext: SimpleNamespace, data: bytes) -> None:
    whole_light = _trace(ref.sipmsg, [data], False)
    whole_full = _trace(ref.sipmsg, [data], True)
    assert whole_full == _trace(ext.sipmsg, [data], True), first_difference(
        whole_full, _trace(ext.sipmsg, [data], True)
    )
    _check_against_datagram(ref, whole_full)
    bytewise = None
    if stream_outcome(whole_light)[1] is not None:
        bytewise = _trace(ref.sipmsg, [data[i : i + 1] for i in range(len(data))], False)
    for k in range(len(data) + 1):
        chunks = [data[:k], data[k:]]
        full = k % FULL_STRIDE == 0 or k == len(data)
        a = _trace(ref.sipmsg, chunks, full)
        b = _trace(ext.sipmsg, chunks, full)
        assert a == b, (k, first_difference(a, b))
        assert unexpected(a) == [] and unexpected(b) == [], k
        _check_equivalent_outcome(
            a if not full else _trace(ref.sipmsg, chunks, False), whole_light, bytewise, k
        )


def _run_bytewise(ref: SimpleNamespace, ext: SimpleNamespace, data: bytes) -> None:
    chunks = [data[i : i + 1] for i in range(len(data))]
    a = _trace(ref.sipmsg, chunks, True)
    b = _trace(ext.sipmsg, chunks, True)
    assert a == b, first_difference(a, b)
    assert unexpected(a) == []
    assert unexpected(b) == []
    _check_against_datagram(ref, a)
    whole = _trace(ref.sipmsg, [data], False)
    light = _trace(ref.sipmsg, chunks, False)
    _check_equivalent_outcome(light, whole, light, "bytewise")


@pytest.mark.parametrize("path", ALL_VECTORS, ids=vector_id)
def test_every_split_point(path: Path, ref: SimpleNamespace, ext: SimpleNamespace) -> None:
    _run_splits(ref, ext, path.read_bytes())


@pytest.mark.parametrize("path", BYTEWISE, ids=vector_id)
def test_byte_at_a_time(path: Path, ref: SimpleNamespace, ext: SimpleNamespace) -> None:
    _run_bytewise(ref, ext, path.read_bytes())


@pytest.mark.parametrize(("label", "data"), CONCATS, ids=[c[0] for c in CONCATS])
def test_concatenation_every_split_point(
    label: str, data: bytes, ref: SimpleNamespace, ext: SimpleNamespace
) -> None:
    _run_splits(ref, ext, data)


@pytest.mark.parametrize(("label", "data"), CONCATS, ids=[c[0] for c in CONCATS])
def test_concatenation_byte_at_a_time(
    label: str, data: bytes, ref: SimpleNamespace, ext: SimpleNamespace
) -> None:
    _run_bytewise(ref, ext, data)


@pytest.mark.parametrize(("label", "data"), CONCATS[:4], ids=[c[0] for c in CONCATS[:4]])
def test_concatenation_three_chunks(
    label: str, data: bytes, ref: SimpleNamespace, ext: SimpleNamespace
) -> None:
    # Cuts into three chunks on a coarse grid (the pairs of split points).
    whole = _trace(ref.sipmsg, [data], False)
    step = max(1, len(data) // 40)
    for i, j in itertools.combinations(range(0, len(data) + 1, step), 2):
        chunks = [data[:i], data[i:j], data[j:]]
        a = _trace(ref.sipmsg, chunks, False)
        b = _trace(ext.sipmsg, chunks, False)
        assert a == b, ((i, j), first_difference(a, b))
        if stream_outcome(whole)[1] is None:
            _check_equivalent_outcome(a, whole, None, f"{i},{j}")


@pytest.mark.parametrize("limits", [{"max_header_bytes": 200}, {"max_headers": 5}, {"max_body_bytes": 3}])
def test_stream_limits(limits: dict[str, int], ref: SimpleNamespace, ext: SimpleNamespace) -> None:
    # 513 / 413 from the stream parser, at every split point of one concatenation.
    data = CONCATS[1][1]
    for k in range(0, len(data) + 1, 3):
        chunks = [data[:k], data[k:]]
        a = snapshot_stream(ref.sipmsg, chunks, full=False, **limits)
        b = snapshot_stream(ext.sipmsg, chunks, full=False, **limits)
        assert a == b, (k, first_difference(a, b))


def test_pings_only(ref: SimpleNamespace, ext: SimpleNamespace) -> None:
    # keep-alives and stray line ends, with nothing else
    for data in (PING * 3, b"\r\n" * 5, b"\r\n\r", b"\n\r\n\r\n", b"\r\r\n\n\r\n\r\n", b"\n\n\n\n"):
        for k in range(len(data) + 1):
            chunks = [data[:k], data[k:]]
            a = _trace(ref.sipmsg, chunks, True)
            b = _trace(ext.sipmsg, chunks, True)
            assert a == b, (data, k)
            _check_equivalent_outcome(a, _trace(ref.sipmsg, [data], True), None, repr((data, k)))
