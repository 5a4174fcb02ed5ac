"""The one place that chooses the compiled or the reference implementation.

``SIMPLEFAST_IMPL=ref`` selects the pure-Python twins in ``simplefast._ref``;
anything else (or unset) selects the Cython modules in ``simplefast._ext``.
A missing or broken extension is a startup error, never a silent fallback
(STYLE.md section 5): a server that quietly runs 20x slower is worse than one
that refuses to start.

Usage::

    from simplefast._impl import sipmsg          # the active module
    from simplefast._impl import load
    ref = load("ref"); ref.sipmsg.parse_message(...)   # tests pick explicitly
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType, SimpleNamespace

from simplefast.errors import SimplefastError

# Every hot-path module that exists as a twin (ext/<name>.pyx and
# simplefast/_ref/<name>.py).
MODULES: tuple[str, ...] = (
    "sipmsg", "shmindex", "udpio", "fanout", "msrpframe", "fastreg", "fastrelay", "pidfcheck", "fastpub",
    "pidfscan", "fastsub", "subrow",
)  # fmt: skip

_PACKAGES = {"ext": "simplefast._ext", "ref": "simplefast._ref"}


class ImplementationError(SimplefastError):
    """The requested implementation cannot be loaded."""


def load(kind: str) -> SimpleNamespace:
    """Import every twin module of one kind.

    Args:
        kind: ``"ext"`` (compiled) or ``"ref"`` (pure Python).

    Returns:
        A namespace with ``name`` (the kind) and one attribute per module.

    Raises:
        ImplementationError: unknown kind, or a module that does not import
            (for ``ext``: the extensions were not built; run ``make build``).
    """
    if kind not in _PACKAGES:
        raise ImplementationError(f"SIMPLEFAST_IMPL={kind!r}: expected 'ext' or 'ref'")
    mods: dict[str, ModuleType] = {}
    for name in MODULES:
        dotted = f"{_PACKAGES[kind]}.{name}"
        try:
            mods[name] = importlib.import_module(dotted)
        except ImportError as exc:
            hint = " (the Cython extensions are not built: run `make build`)" if kind == "ext" else ""
            raise ImplementationError(f"cannot import {dotted}{hint}: {exc}") from exc
    return SimpleNamespace(name=kind, **mods)


def _selected() -> str:
    return os.environ.get("SIMPLEFAST_IMPL", "ext").strip().lower() or "ext"


ACTIVE: str = _selected()
_active = load(ACTIVE)
sipmsg: ModuleType = _active.sipmsg
shmindex: ModuleType = _active.shmindex
udpio: ModuleType = _active.udpio
fanout: ModuleType = _active.fanout
msrpframe: ModuleType = _active.msrpframe
fastreg: ModuleType = _active.fastreg
fastrelay: ModuleType = _active.fastrelay
pidfcheck: ModuleType = _active.pidfcheck
fastpub: ModuleType = _active.fastpub
pidfscan: ModuleType = _active.pidfscan
fastsub: ModuleType = _active.fastsub
subrow: ModuleType = _active.subrow
