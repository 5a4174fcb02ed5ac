"""The shared-memory table, reference beside compiled, at production size.

One table of 1,000,000 slots with 64-byte keys and 256-byte values:
``table_size`` gives 344,065,792 bytes, 344 bytes per slot, 459 bytes per
entry at capacity (750,000 entries). It is filled once with 600,000 entries
by the compiled twin; the layouts are identical, so the reference attaches to
the same mapping (``create=False``) instead of spending minutes filling its own.

Each timed call does one operation on the next key of a shuffled list of
100,000 keys, so the table's memory is touched the way a server touches it
(cache and TLB misses included), not one hot slot. The call includes about
60 ns of Python to fetch the next key, the same for both twins.

Groups: ``shmindex get-hit``, ``shmindex get-miss``, ``shmindex put-replace``;
``extra_info`` carries ``impl``, ``bytes_per_slot`` and ``bytes_per_entry``
(at capacity). Nothing here asserts on time.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from simplefast.testing import load_impl

SLOTS, KEY_MAX, VALUE_MAX = 1_000_000, 64, 256
FILL = 600_000
SAMPLE = 100_000
VALUE = bytes(range(256))


def key(i: int, kind: bytes = b"user") -> bytes:
    """A 64-byte key shaped like an address-of-record."""
    return (b"sip:%s%08d@registrar.example.com;transport=udp;x=" % (kind, i)).ljust(KEY_MAX, b"x")


@pytest.fixture(scope="module")
def mapping() -> Iterator[Any]:
    ext = load_impl("ext").shmindex
    mm = ext.create_shared(ext.table_size(SLOTS, KEY_MAX, VALUE_MAX))
    t = ext.ShmTable(mm, SLOTS, KEY_MAX, VALUE_MAX, create=True)
    for i in range(FILL):
        t.put(key(i), VALUE)
    assert len(t) == FILL
    del t
    yield mm


def cycle(fn: Callable[[bytes], Any], keys: list[bytes]) -> Callable[[], Any]:
    nxt = itertools.cycle(keys).__next__

    def op() -> Any:
        return fn(nxt())

    return op


def _table(impl: SimpleNamespace, mapping: Any, benchmark: Any, what: str) -> Any:
    m = impl.shmindex
    benchmark.group = f"shmindex {what}"
    benchmark.extra_info["impl"] = impl.name
    size = m.table_size(SLOTS, KEY_MAX, VALUE_MAX)
    benchmark.extra_info["bytes_per_slot"] = round(size / SLOTS, 2)
    benchmark.extra_info["bytes_per_entry"] = round(size / (SLOTS * 3 // 4), 2)
    return m.ShmTable(mapping, SLOTS, KEY_MAX, VALUE_MAX, create=False)


def test_get_hit(benchmark: Any, impl: SimpleNamespace, mapping: Any) -> None:
    t = _table(impl, mapping, benchmark, "get-hit")
    keys = [key(i) for i in random.Random(1).sample(range(FILL), SAMPLE)]
    assert t.get(keys[0]) == VALUE
    assert benchmark(cycle(t.get, keys)) == VALUE


def test_get_miss(benchmark: Any, impl: SimpleNamespace, mapping: Any) -> None:
    t = _table(impl, mapping, benchmark, "get-miss")
    keys = [key(i, b"nobody") for i in range(SAMPLE)]
    random.Random(2).shuffle(keys)
    assert t.get(keys[0]) is None
    assert benchmark(cycle(t.get, keys)) is None


def test_put_replace(benchmark: Any, impl: SimpleNamespace, mapping: Any) -> None:
    t = _table(impl, mapping, benchmark, "put-replace")
    keys = [key(i) for i in random.Random(3).sample(range(FILL), SAMPLE)]
    benchmark(cycle(lambda k: t.put(k, VALUE), keys))
    assert len(t) == FILL
    assert t.get(keys[-1]) == VALUE
