"""The MSRP framer, reference beside compiled: the relay's hot path.

Every benchmark runs twice through the ``impl`` fixture (ids ``ref`` and
``ext``) and lands in one group, so the two twins sit side by side;
``extra_info`` carries the implementation, the octets and the chunks handled,
from which chunks/s and MB/s follow (median time / count).

- ``parse 1KiB chunks``: a stream of SEND chunks with 1 KiB of data each (a
  chat relay's usual traffic), read in 64 KiB pieces as a socket delivers
  them: per-chunk overhead dominates (chunks/s);
- ``parse 64KiB chunks``: file-transfer sized chunks, each cut by a read
  boundary: the data scan dominates (MB/s);
- ``chunk 1MiB``: chunk() writing a 1 MiB message (default 2048-octet chunks,
  and 64 KiB chunks).

The module is imported by name (simplefast._ref.msrpframe /
simplefast._ext.msrpframe) so the suite does not depend on the twin registry.
Nothing here asserts on time: the checks only make sure every benchmark
measures what it claims.
"""

from __future__ import annotations

import importlib
import random
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

READ = 64 * 1024
TO_PATH = ["msrp://relay.example.com:2855/kjfjan;tcp", "msrp://bob.example.com:8888/9di4eae923wzd;tcp"]
FROM_PATH = ["msrp://alice.example.com:7777/iau39soe2843z;tcp"]


def _module(impl: SimpleNamespace) -> ModuleType:
    return importlib.import_module(f"simplefast._{impl.name}.msrpframe")


def _data(size: int, seed: int) -> bytes:
    """Text-like octets with CRLFs and the odd dash line, as chat and CPIM carry."""
    rnd = random.Random(seed)
    words = [b"hello", b"msrp", b"relay", b"\xc3\xa9t\xc3\xa9", b"-------", b"chunk", b"data", b"\r\n"]
    out = bytearray()
    while len(out) < size:
        out += rnd.choice(words) + b" "
    return bytes(out[:size])


def _stream(count: int, size: int) -> bytes:
    """``count`` SEND chunks of one message, ``size`` data octets each (the framing a relay sees)."""
    body = _data(count * size, 1)
    rnd = random.Random(2)
    parts = []
    for i in range(count):
        tid = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(12))
        piece = body[i * size : (i + 1) * size]
        parts.append(
            b"MSRP %s SEND\r\n"
            b"To-Path: %s\r\nFrom-Path: %s\r\n"
            b"Message-ID: 87652491\r\nByte-Range: %d-%d/%d\r\nContent-Type: text/plain\r\n\r\n"
            b"%s\r\n-------%s%s\r\n"
            % (
                tid.encode(),
                " ".join(TO_PATH).encode(),
                FROM_PATH[0].encode(),
                i * size + 1,
                (i + 1) * size,
                count * size,
                piece,
                tid.encode(),
                b"$" if i == count - 1 else b"+",
            )
        )
    return b"".join(parts)


def _reads(stream: bytes) -> tuple[bytes, ...]:
    return tuple(stream[i : i + READ] for i in range(0, len(stream), READ))


def relay(msrp: ModuleType, reads: tuple[bytes, ...]) -> int:
    """Frame a connection's reads with a fresh parser and touch what a relay forwards."""
    parser = msrp.MsrpParser()
    n = 0
    for data in reads:
        for m in parser.feed(data):
            n += len(m.body) + len(m.tid) + len(m.flag)
    return n


def _tag(benchmark: Any, impl: SimpleNamespace, group: str, octets: int, chunks: int) -> None:
    benchmark.group = group
    benchmark.extra_info["impl"] = impl.name
    benchmark.extra_info["bytes"] = octets
    benchmark.extra_info["chunks"] = chunks


@pytest.mark.parametrize(("size", "count"), [(1024, 512), (64 * 1024, 32)], ids=["1KiB", "64KiB"])
def test_parse_chunks(benchmark: Any, impl: SimpleNamespace, size: int, count: int) -> None:
    msrp = _module(impl)
    stream = _stream(count, size)
    reads = _reads(stream)
    _tag(
        benchmark, impl, f"parse {size // 1024}KiB chunks x{count} ({len(stream)} octets)", len(stream), count
    )
    parser = msrp.MsrpParser()
    msgs = [m for data in reads for m in parser.feed(data)]
    assert len(msgs) == count and parser.buffered == 0
    assert all(len(m.body) == size for m in msgs) and msgs[-1].flag == "$"
    assert benchmark(relay, msrp, reads) == count * (size + 12 + 1)


# Deterministic transaction ids, made before timing: what is measured is the
# writer, not the caller's id generator.
TIDS = tuple(f"tid{i:08x}" for i in range(1, 1024))


def write(msrp: ModuleType, body: bytes, chunk_size: int) -> list[bytes]:
    out: list[bytes] = msrp.chunk(
        iter(TIDS).__next__,
        TO_PATH,
        FROM_PATH,
        "87652491",
        "application/octet-stream",
        body,
        chunk_size=chunk_size,
    )
    return out


@pytest.mark.parametrize("chunk_size", [2048, 64 * 1024])
def test_chunk_1mib(benchmark: Any, impl: SimpleNamespace, chunk_size: int) -> None:
    msrp = _module(impl)
    body = _data(1 << 20, 3)
    count = -(-len(body) // chunk_size)
    _tag(benchmark, impl, f"chunk 1MiB in {chunk_size}-octet chunks", len(body), count)
    chunks = write(msrp, body, chunk_size)
    assert len(chunks) == count
    parser = msrp.MsrpParser()
    assert b"".join(bytes(m.body) for m in parser.feed(b"".join(chunks))) == body
    assert len(benchmark(write, msrp, body, chunk_size)) == count
