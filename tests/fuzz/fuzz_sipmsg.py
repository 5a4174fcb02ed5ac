"""Coverage-guided fuzzing of the SIP codec, differential against the reference.

    make fuzz                      # FUZZ_SECONDS (default 60)
    .venv/bin/python tests/fuzz/fuzz_sipmsg.py -max_total_time=600 WORKDIR tests/corpus/sipmsg

Coverage comes from the pure-Python reference (atheris instruments its
bytecode); its branches follow the grammar step by step, so they guide the
search through the compiled twin's paths too. Every input goes to both twins:
``parse_message`` with every accessor, ``validate_request`` and
``build_response``; ``SipStreamParser`` over chunks cut at points taken from
the input; ``parse_uri``, ``parse_via`` and ``parse_name_addr`` on pieces of
it. The harness fails (and libFuzzer keeps the input under
tests/corpus/crashes/) when

- either twin raises anything but ``SipParseError`` (``LocalProtocolError``
  from ``build_response`` only for values we pass in, which never happens
  with these arguments), or
- the twins disagree on any result or error (type, status_hint, message).

A crashing input becomes a regression test by staying in tests/corpus/crashes/
(tests/unit/test_corpus.py replays every file there and in tests/corpus/sipmsg/).
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))

with atheris.instrument_imports(include=["simplefast._ref", "simplefast._sip_types"]):
    from simplefast._ref import sipmsg as ref_sipmsg

from observe import observe_all  # noqa: E402

from simplefast._ext import sipmsg as ext_sipmsg  # noqa: E402


class Disagreement(AssertionError):
    pass


def test_one_input(data: bytes) -> None:
    ref = observe_all(ref_sipmsg, data)
    ext = observe_all(ext_sipmsg, data)
    if ref != ext:
        for (key, r), (_, e) in zip(ref, ext, strict=True):
            if r != e:
                raise Disagreement(f"{key}: ref={r!r} ext={e!r}")
        raise Disagreement("observation lists differ in shape")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
