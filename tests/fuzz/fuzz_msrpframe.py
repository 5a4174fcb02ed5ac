"""Coverage-guided fuzzing of the MSRP framer, differential against the reference.

    make fuzz                      # FUZZ_SECONDS (default 60), after the SIP codec
    .venv/bin/python tests/fuzz/fuzz_msrpframe.py -max_total_time=600 WORKDIR tests/vectors/msrp

Coverage comes from the pure-Python reference (atheris instruments its
bytecode), whose branches follow RFC 4975's grammar, so they guide the search
through the compiled twin's paths too. Every input goes to both twins:

- ``MsrpParser.feed`` over chunks cut at points taken from the input (and
  once whole), with limits taken from the input as well so the 413 edges are
  reached, then one more feed to check that a failed parser stays failed;
- every accessor of every message framed, and ``parse_one`` of its octets.

The harness fails (and libFuzzer keeps the input under
tests/corpus/crashes-msrpframe/) when either twin raises anything but
``MsrpFramingError``, or when the twins disagree on any result or error
(class name, status_hint).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

import atheris

with atheris.instrument_imports(include=["simplefast._ref"]):
    from simplefast._ref import msrpframe as ref_msrp

from simplefast._ext import msrpframe as ext_msrp  # noqa: E402

Outcome = tuple[Any, ...]
_NAMES = ("To-Path", "from-path", "Message-ID", "Byte-Range", "Content-Type", "X-Unknown", "status")


class Disagreement(AssertionError):
    pass


def _try(mod: ModuleType, fn: Callable[[], Any]) -> Outcome:
    try:
        return ("ok", fn())
    except mod.MsrpFramingError as exc:
        return ("err", type(exc).__name__, exc.status_hint)


def _message(mod: ModuleType, m: Any) -> list[Outcome]:
    out: list[Outcome] = [
        (
            "ok",
            (m.is_request, m.tid, m.method, m.status, m.comment, m.flag, m.headers(), bytes(m.body)),
            (m.has_content, m.to_bytes(), m.to_path, m.from_path, m.message_id, m.content_type),
        ),
        _try(mod, lambda: m.byte_range),
    ]
    for name in _NAMES:
        out.append(("ok", m.get(name), m.get_all(name)))
    one = _try(mod, lambda: mod.parse_one(m.to_bytes()))
    out.append(one if one[0] == "err" else ("ok", one[1].to_bytes(), one[1].headers(), bytes(one[1].body)))
    return out


def _cuts(data: bytes) -> list[bytes]:
    """Chunks at points taken from the input itself, so the fuzzer steers them."""
    if not data:
        return [b""]
    n = len(data)
    a = data[0] * 7 % (n + 1)
    b = data[-1] * 13 % (n + 1)
    a, b = sorted((a, b))
    return [data[:a], data[a:b], data[b:]]


def _stream(mod: ModuleType, chunks: list[bytes], limits: dict[str, int]) -> list[Any]:
    parser = mod.MsrpParser(**limits)
    out: list[Any] = []
    for chunk in [*chunks, b"MSRP"]:
        got = _try(mod, lambda c=chunk: parser.feed(c))
        if got[0] == "ok":
            out.append(("feed", [_message(mod, m) for m in got[1]], parser.buffered))
        else:
            out.append(got)
    return out


def observe_all(mod: ModuleType, data: bytes) -> list[Any]:
    n = len(data)
    small = {
        "max_header_bytes": (data[1] if n > 1 else 0) * 2,
        "max_chunk_bytes": (data[2] if n > 2 else 0) * 4,
    }
    return [
        _stream(mod, [data], {}),
        _stream(mod, _cuts(data), {}),
        _stream(mod, _cuts(data), small),
    ]


def test_one_input(data: bytes) -> None:
    ref = observe_all(ref_msrp, data)
    ext = observe_all(ext_msrp, data)
    if ref != ext:
        for i, (r, e) in enumerate(zip(ref, ext, strict=True)):
            if r != e:
                raise Disagreement(f"run {i}: ref={r!r}\next={e!r}")
        raise Disagreement("observation lists differ in shape")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
