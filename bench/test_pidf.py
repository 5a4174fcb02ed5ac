"""PIDF parse and compose on real-size documents (the RFC examples, 1-2.4 KB).

Groups:

* ``pidf parse``: ``parse_pidf`` of one PUBLISH body (once per PUBLISH);
* ``pidf compose``: ``compose`` of one, and of three, publications (once per
  presentity version; the caller caches the bytes for every watcher).

Inputs: RFC 4479 section 7.1 (939 bytes, entity added) and RFC 4480 section 4
(2.4 KB, leading space removed), from tests/vectors/pidf. Nothing here
asserts on time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from simplefast.presence.pidf import Publication, compose, parse_pidf

VECTORS = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "pidf"
AOR = "sip:alice@example.com"


def _docs() -> dict[str, bytes]:
    im = (VECTORS / "rfc4479-7.1-basic-im-client.xml").read_bytes()
    return {
        "rfc4479-1KB": im.replace(b"<presence ", b'<presence entity="pres:someone@example.com" ', 1),
        "rfc4480-2.4KB": (VECTORS / "rfc4480-4-example.xml").read_bytes().lstrip(b" "),
        "rfc3863-0.8KB": (VECTORS / "rfc3863-4.3.1-default-ns-status-ext.xml").read_bytes(),
    }


DOCS = _docs()


@pytest.mark.benchmark(group="pidf parse")
@pytest.mark.parametrize("name", sorted(DOCS))
def test_parse(benchmark: Any, name: str) -> None:
    data = DOCS[name]
    benchmark.extra_info["bytes"] = len(data)
    benchmark(parse_pidf, data)


@pytest.mark.benchmark(group="pidf compose")
@pytest.mark.parametrize("count", [1, 3])
def test_compose(benchmark: Any, count: int) -> None:
    names = ["rfc4480-2.4KB", "rfc4479-1KB", "rfc3863-0.8KB"][:count]
    pubs = [Publication(f"e{i}", parse_pidf(DOCS[n]), float(i)) for i, n in enumerate(names)]
    out = benchmark(compose, AOR, pubs)
    benchmark.extra_info["bytes_out"] = len(out)
