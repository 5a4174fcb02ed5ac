"""Build of simplefast's Cython extensions (STYLE.md sections 2 and 3).

Every ``ext/<name>.pyx`` becomes ``simplefast._ext.<name>``. Metadata and
dependencies live in pyproject.toml; this file only describes the extensions.

``SIMPLEFAST_DEBUG=1`` gives the debug build: line tracing (coverage and
profilers see Cython lines), ``-O0 -g``, a ``SIMPLEFAST_DEBUG`` macro for
extra assertions, and annotated HTML next to each ``.pyx`` (read it: yellow
lines inside a hot loop are Python calls to remove).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
EXT_DIR = HERE / "ext"
DEBUG = os.environ.get("SIMPLEFAST_DEBUG", "") not in ("", "0")
# SIMPLEFAST_SANITIZE=1: AddressSanitizer + UBSan build for fuzzing (make fuzz-asan),
# built out of tree so the normal in-place build is untouched.
SANITIZE = os.environ.get("SIMPLEFAST_SANITIZE", "") not in ("", "0")


def _module_names() -> list[str]:
    names = sorted(p.stem for p in EXT_DIR.glob("*.pyx"))
    # Cython looks a module's .pxd up by its full dotted name
    # (simplefast._ext.<name>.pxd), so an ext/<name>.pxd beside the module is
    # silently ignored and its cdef classes are compiled without their fields.
    # Refuse to build rather than produce a broken module (STYLE.md section 2).
    trapped = [n for n in names if (EXT_DIR / f"{n}.pxd").exists()]
    if trapped:
        sys.exit(
            "setup.py: refusing to build: "
            + ", ".join(f"ext/{n}.pxd" for n in trapped)
            + " sits beside its module and would be ignored by Cython; declare the"
            " attributes inside the .pyx, or name the file"
            " ext/simplefast._ext.<name>.pxd if another module must cimport it"
        )
    return names


def _include_dirs(name: str) -> list[str]:
    """pidfcheck walks libxml2's tree through lxml's public C API: lxml's headers (the
    libxml2 ones it was built with). lxml is a build requirement (pyproject.toml)."""
    if name != "pidfcheck":
        return []
    import lxml

    return list(lxml.get_include())


def _extensions() -> list[Extension]:
    from Cython.Build import cythonize  # build-time dependency (pyproject.toml)

    compile_args = ["-Wall", "-Wsign-compare"]
    link_args: list[str] = []
    macros: list[tuple[str, str | None]] = []
    directives: dict[str, object] = {
        "language_level": 3,
        "embedsignature": True,
        # No generated __reduce__ / doctest dict: keeps mypy.stubtest quiet and
        # the compiled modules exporting exactly what the .pyi declares.
        "auto_pickle": False,
        "autotestdict": False,
    }
    if DEBUG:
        compile_args += ["-O0", "-g"]
        macros += [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1"), ("SIMPLEFAST_DEBUG", "1")]
        directives["linetrace"] = True
    elif SANITIZE:
        sanitizers = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
        compile_args += ["-O1", "-g", "-fno-omit-frame-pointer", *sanitizers]
        link_args += sanitizers
        macros += [("SIMPLEFAST_DEBUG", "1")]
    else:
        compile_args += ["-O2"]
    exts = [
        Extension(
            f"simplefast._ext.{name}",
            [f"ext/{name}.pyx"],
            # lxml's etree_defs.h defines a static helper pidfcheck does not use
            extra_compile_args=compile_args + (["-Wno-unused-function"] if name == "pidfcheck" else []),
            extra_link_args=link_args,
            define_macros=macros,
            include_dirs=_include_dirs(name),
            # pidfscan drives libexpat's C API (Debian: libexpat1-dev, installed by the Makefile)
            libraries=["expat"] if name == "pidfscan" else [],
        )
        for name in _module_names()
    ]
    return cythonize(
        exts,
        include_path=["ext"],
        compiler_directives=directives,
        annotate=DEBUG,
        # Rebuild the .c when a directive changes between debug and release.
        force=DEBUG,
    )


setup(ext_modules=_extensions())
