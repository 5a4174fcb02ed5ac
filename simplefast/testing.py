"""Helpers shared by tests/ and bench/: the twin fixture and the vector paths.

Importing this module does not import pytest; ``impl_fixture`` does, when
called from a conftest.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from simplefast._impl import load

REPO = Path(__file__).resolve().parent.parent
# A byte-exact copy of shared/vectors (CI runs on a fresh clone without it).
VECTORS = REPO / "tests" / "vectors"
RFC4475 = VECTORS / "sip" / "rfc4475"

IMPL_KINDS: tuple[str, ...] = ("ref", "ext")


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
