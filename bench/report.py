"""Markdown summary of a pytest-benchmark JSON file (``make bench`` writes .benchmarks/last.json).

Usage: python bench/report.py [.benchmarks/last.json]

Entries are paired by their benchmark group (one input, one operation) and
told apart by ``extra_info["impl"]`` (ref, ext, sippy, httptools); sizes come
from ``extra_info["bytes"]``. Prints, from medians:

* every entry: median, min and IQR in µs, ns/byte, rounds;
* per group: ref/ext, sippy/ext, and ext's ns/byte over httptools' ns/byte;
* the targets of bench/README.md, each marked met or not met.

Informational only: it exits 0 whether targets are met or not (1 only when
the file cannot be read). Standard library only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# order of the rows inside a group and of the groups themselves
IMPL_ORDER = ("ext", "ref", "sippy", "httptools")
KIND_ORDER = ("parse", "validate", "build_response", "stream", "anchor")

HTTPTOOLS_GROUP = "anchor httptools-360"
TARGET_GROUP = "parse publish-380"
BUILD_GROUP = "build_response publish-380"
MIN_RATIO = 20.0  # ext at least 20x the reference and 20x sippy
BUILD_BUDGET_US = 1.0  # build_response under 1 µs

Entry = dict[str, Any]


def _us(seconds: float) -> str:
    us = seconds * 1e6
    if us >= 100:
        return f"{us:.0f}"
    if us >= 10:
        return f"{us:.1f}"
    return f"{us:.2f}"


def _ratio(x: float | None) -> str:
    return "" if x is None else f"{x:.1f}×" if x >= 10 else f"{x:.2f}×"


def _median(e: Entry | None) -> float | None:
    return None if e is None else float(e["stats"]["median"])


def _ns_per_byte(e: Entry | None) -> float | None:
    if e is None:
        return None
    size = e.get("extra_info", {}).get("bytes")
    return float(e["stats"]["median"]) * 1e9 / size if size else None


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _impl_rank(impl: str) -> tuple[int, str]:
    return (IMPL_ORDER.index(impl) if impl in IMPL_ORDER else len(IMPL_ORDER), impl)


def group_entries(benchmarks: list[Entry]) -> dict[str, dict[str, Entry]]:
    """{group: {impl: entry}}, groups in KIND_ORDER then in run order."""
    groups: dict[str, dict[str, Entry]] = {}
    for b in benchmarks:
        name = b.get("group") or b["name"]
        impl = b.get("extra_info", {}).get("impl") or b.get("param") or b["name"]
        groups.setdefault(name, {})[impl] = b
    first = {g: i for i, g in enumerate(groups)}

    def rank(g: str) -> tuple[int, int]:
        kind = g.split(" ", 1)[0]
        return (KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER), first[g])

    return {g: groups[g] for g in sorted(groups, key=rank)}


def render(data: dict[str, Any]) -> str:
    groups = group_entries(data.get("benchmarks", []))
    mi = data.get("machine_info", {})
    cpu = mi.get("cpu", {}).get("brand_raw") or mi.get("processor") or "?"
    out = [
        "## Benchmark report",
        "",
        f"Run {data.get('datetime', '?')}; Python {mi.get('python_version', '?')} "
        f"({mi.get('python_implementation', '?')}); CPU {cpu}. Medians of one run.",
        "",
        "| group | impl | bytes | median µs | min µs | IQR µs | ns/byte | rounds |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for g, entries in groups.items():
        for impl in sorted(entries, key=_impl_rank):
            e = entries[impl]
            st = e["stats"]
            size = e.get("extra_info", {}).get("bytes")
            nspb = _ns_per_byte(e)
            out.append(
                f"| {g} | {impl} | {size or ''} | {_us(st['median'])} | {_us(st['min'])} "
                f"| {_us(st['iqr'])} | {'' if nspb is None else f'{nspb:.2f}'} | {st['rounds']} |"
            )

    http_nspb = _ns_per_byte(groups.get(HTTPTOOLS_GROUP, {}).get("httptools"))
    out += [
        "",
        "Ratios of medians (ext's ns/byte over httptools' ns/byte: below 1 is faster per byte).",
        "",
        "| group | ref/ext | sippy/ext | ext ns/B ÷ httptools ns/B |",
        "|---|--:|--:|--:|",
    ]
    for g, entries in groups.items():
        ext = entries.get("ext")
        if ext is None:
            continue
        ext_median = _median(ext)
        cells = (
            _ratio(_div(_median(entries.get("ref")), ext_median)),
            _ratio(_div(_median(entries.get("sippy")), ext_median)),
            _ratio(_div(_ns_per_byte(ext), http_nspb)),
        )
        out.append(f"| {g} | {' | '.join(cells)} |")

    out += ["", "Targets (bench/README.md):", ""]
    target = groups.get(TARGET_GROUP, {})
    ext_a = target.get("ext")
    if ext_a is not None and http_nspb is not None:
        size = ext_a["extra_info"]["bytes"]
        budget = http_nspb * size / 1e3
        got = float(ext_a["stats"]["median"]) * 1e6
        out.append(
            f"- ext {TARGET_GROUP}: {got:.2f} µs ({_ns_per_byte(ext_a):.2f} ns/B) vs httptools "
            f"{http_nspb:.2f} ns/B × {size} B = {budget:.2f} µs: {_verdict(got <= budget)}"
        )
    for other in ("ref", "sippy"):
        r = _div(_median(target.get(other)), _median(ext_a))
        if r is not None:
            out.append(f"- {other}/ext on {TARGET_GROUP}: {r:.1f}× (≥ {MIN_RATIO:.0f}×): {_verdict(r >= 20)}")
    build = groups.get(BUILD_GROUP, {})
    for impl in sorted(build, key=_impl_rank):
        us = float(build[impl]["stats"]["median"]) * 1e6
        goal = f" (< {BUILD_BUDGET_US:g} µs): {_verdict(us < BUILD_BUDGET_US)}" if impl == "ext" else ""
        out.append(f"- {impl} build_response (200 OK to (a)): {us:.2f} µs{goal}")
    return "\n".join(out)


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else ".benchmarks/last.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"report.py: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    print(render(data))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
