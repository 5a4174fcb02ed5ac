"""The implementation switch (simplefast/_impl.py) and twin parity."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from simplefast import _impl
from simplefast.testing import load_impl


def _public(mod: object) -> set[str]:
    # Imported modules and `from __future__ import annotations` are not API.
    import __future__

    import types

    return {
        n
        for n in dir(mod)
        if not n.startswith("_") and not isinstance(getattr(mod, n), types.ModuleType | __future__._Feature)
    }


def test_ext_is_loaded() -> None:
    ext = load_impl("ext")
    assert ext.sipmsg.__name__ == "simplefast._ext.sipmsg"
    # A compiled module, not the .pyi stub or a Python file.
    assert ext.sipmsg.__file__.endswith(".so")


def test_active_follows_environment() -> None:
    want = os.environ.get("SIMPLEFAST_IMPL", "ext") or "ext"
    assert _impl.ACTIVE == want
    assert _impl.sipmsg.__name__ == f"simplefast._{want}.sipmsg"


@pytest.mark.parametrize("name", _impl.MODULES)
def test_twins_export_the_same_names(name: str) -> None:
    ref = getattr(load_impl("ref"), name)
    ext = getattr(load_impl("ext"), name)
    assert _public(ref) == _public(ext)


def test_unknown_kind_is_an_error() -> None:
    with pytest.raises(_impl.ImplementationError, match="expected 'ext' or 'ref'"):
        _impl.load("fast")


def _run(env_impl: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SIMPLEFAST_IMPL=env_impl)
    code = "from simplefast import _impl; print(_impl.ACTIVE, _impl.sipmsg.__name__)"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_env_selects_reference() -> None:
    out = _run("ref")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ref", "simplefast._ref.sipmsg"]


def test_bad_env_fails_at_startup() -> None:
    out = _run("turbo")
    assert out.returncode != 0
    assert "SIMPLEFAST_IMPL='turbo'" in out.stderr


def test_missing_extension_is_a_startup_error_not_a_fallback(tmp_path: object) -> None:
    # Import the package from a copy without the compiled module: selecting ext must fail loudly.
    import shutil
    from pathlib import Path

    src = Path(_impl.__file__).resolve().parent
    dst = Path(str(tmp_path)) / "simplefast"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    env = dict(os.environ, SIMPLEFAST_IMPL="ext", PYTHONPATH=str(tmp_path))
    code = "import simplefast._impl"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, cwd=str(tmp_path)
    )
    assert out.returncode != 0
    assert "the Cython extensions are not built: run `make build`" in out.stderr
