"""Replay of the fuzz corpus: seeds (tests/corpus/sipmsg/) and every input the
fuzzer ever flagged (tests/corpus/crashes/). Each must go through both twins
without an unexpected exception and with identical observations."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from simplefast.testing import REPO, load_impl

CORPUS = REPO / "tests" / "corpus"
_spec = importlib.util.spec_from_file_location("sf_fuzz_observe", REPO / "tests" / "fuzz" / "observe.py")
assert _spec is not None and _spec.loader is not None
observe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(observe)

FILES = sorted(p for d in ("sipmsg", "crashes") for p in (CORPUS / d).glob("*") if p.is_file())


def test_corpus_is_seeded() -> None:
    assert len([p for p in FILES if p.parent.name == "sipmsg"]) >= 50


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_twins_agree_on_corpus_input(path: Path) -> None:
    data = path.read_bytes()
    ref = observe.observe_all(load_impl("ref").sipmsg, data)
    ext = observe.observe_all(load_impl("ext").sipmsg, data)
    assert ref == ext
