"""Side-by-side report: simplefast and Kamailio on this box, one after the other, in one run.

    .venv/bin/python bench/compare.py                          # everything, under 30 minutes
    .venv/bin/python bench/compare.py --only register --only fanout
    .venv/bin/python bench/compare.py --quick --only register --no-kamailio --out /tmp/cmp-smoke
    make bench-compare COMPARE_ARGS='--only msrp'

Scenario by scenario, simplefast (2 workers, started by the runner for each scenario) and then
Kamailio 5.6 (2 children, bench/peers/kamailio, started once and left running between scenarios):

    register, message,       bench/sipp/steps.py: a warm-up step, then the rate raised step by
    publish, subscribe       step until one fails (failed calls or retransmissions > 0.1 %,
                             achieved < 90 % of offered); headline: the highest step that passed
    fanout-1k, fanout-10k    bench/sipp/fanout.py: 1 000 / 10 000 watchers of one presentity,
                             51 PUBLISHes; headline: NOTIFY/s, only when no NOTIFY was lost
    msrp-8k, msrp-1k         bench/msrp_relay.py against simplefast's relay, then Kamailio's msrp
                             module (run-msrp.sh); headline: MB/s relayed

``--only`` also takes the groups ``steps``, ``fanout`` and ``msrp``. simplefast runs with
``--no-persist`` (Kamailio's set-up keeps everything in memory too) unless ``--persist``.

Time: one deadline for the whole run (``--budget``, 28 minutes from the start, installs
included). Each task gets a share of the time left in proportion to its estimate; a steps
task runs only the steps that fit its share, and the steps cut that way are listed as
"skipped (deadline)". A fan-out or MSRP task whose estimate does not fit the time left is
skipped and marked so. A child still running at the deadline is stopped (its process group:
SIGINT, then SIGKILL) and its task marked "stopped at the deadline".

Writes to ``--out`` (bench/results), named <YYYY-MM-DD>-<hostname> (UTC date):
.json (versions, machine, every step, every fan-out and MSRP result, the headlines),
.md (the headline table with simplefast / Kamailio, then the details), -steps.png
(achieved vs offered per scenario), -fanout.png (NOTIFYs received over time since the
first PUBLISH, from the watchers' per-NOTIFY log lines) and .log (every child's output).
The JSON and the Markdown are rewritten after every task, so a stopped run keeps what it got.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import importlib.metadata
import importlib.util
import itertools
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEER = HERE / "peers" / "kamailio"
SCHEMA = "simplefast-bench-compare/1"
WORKERS = 2  # simplefast's workers and Kamailio's children
SERVERS = ("simplefast", "kamailio")
KAM_SIP = ("127.0.0.1", 5070)  # bench/peers/kamailio/kamailio.cfg
KAM_MSRP = ("127.0.0.1", 2856)  # run-msrp.sh's default PORT
KAM_DOMAIN = "bench.local"
KAMDIR = {"sip": "/tmp/kamailio-compare", "msrp": "/tmp/kamailio-compare-msrp"}
KAM_MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")  # the mpath of the peer's .cfg files
KAM_SQL = Path("/usr/share/kamailio/db_sqlite/presence-create.sql")  # run.sh loads it into SQLite
DEFAULT_BUDGET_S = 28 * 60
STOP_GRACE_S = 15.0  # after SIGINT, before SIGKILL
STEP_OVERHEAD_S = 2.0  # per step: SIPp's start and exit, steps.py's pause after a passing step
EXPECTED_STEPS = 10  # steps a task is expected to run before its knee (for the time shares)
SERVER_START_S = 8.0  # a runner starting and stopping simplefast (2 workers, tables prefaulted)


# --- what runs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One row of the report. ``full`` and ``quick`` are the runner's parameters: for steps
    start, step, max, seconds; for fan-out watchers, publishes, procs_simplefast, procs_kamailio
    (and recv_timeout_ms, quiet); for MSRP sessions, mib, chunk."""

    name: str
    kind: str  # "steps", "fanout" or "msrp"
    label: str  # a template over the parameters: label_for()
    unit: str
    full: dict[str, int]
    quick: dict[str, int]


QUICK_STEPS = {"start": 500, "step": 500, "max": 500, "seconds": 1}  # a warm-up and one step at 500/s
QUICK_FANOUT = {
    "publishes": 3,
    "procs_simplefast": 1,
    "procs_kamailio": 1,
    "recv_timeout_ms": 4000,
    "quiet": 2,
}

SCENARIOS = (
    Scenario("register", "steps", "REGISTER, new AOR per call", "/s",
             {"start": 8000, "step": 4000, "max": 64000, "seconds": 3}, QUICK_STEPS),
    Scenario("message", "steps", "MESSAGE relayed to a registered SIPp UAS", "/s",
             {"start": 4000, "step": 2000, "max": 40000, "seconds": 3}, QUICK_STEPS),
    Scenario("publish", "steps", "initial PUBLISH, new presentity per call", "/s",
             {"start": 2000, "step": 2000, "max": 40000, "seconds": 3}, QUICK_STEPS),
    Scenario("subscribe", "steps", "SUBSCRIBE → NOTIFY → un-SUBSCRIBE → NOTIFY", "/s",
             {"start": 1000, "step": 500, "max": 16000, "seconds": 3}, QUICK_STEPS),
    # watcher SIPps: the fastest count for each server in bench/README.md's presence runs
    Scenario("fanout-1k", "fanout", "fan-out, {watchers} watchers × {publishes} PUBLISHes", "NOTIFY/s",
             {"watchers": 1000, "publishes": 51, "procs_simplefast": 3, "procs_kamailio": 1},
             {"watchers": 100, **QUICK_FANOUT}),
    Scenario("fanout-10k", "fanout", "fan-out, {watchers} watchers × {publishes} PUBLISHes", "NOTIFY/s",
             {"watchers": 10000, "publishes": 51, "procs_simplefast": 3, "procs_kamailio": 1},
             {"watchers": 200, **QUICK_FANOUT}),
    # 8 KiB: the largest chunk Kamailio's msrp module relays (bench/peers/kamailio/README.md)
    Scenario("msrp-8k", "msrp", "MSRP relay, {sessions} × {mib} MiB in 8 KiB chunks", "MB/s",
             {"sessions": 1, "mib": 100, "chunk": 8192}, {"sessions": 1, "mib": 1, "chunk": 8192}),
    Scenario("msrp-1k", "msrp", "MSRP relay, {sessions} × {mib} MiB in 1 KiB chunks", "MB/s",
             {"sessions": 8, "mib": 16, "chunk": 1024}, {"sessions": 1, "mib": 1, "chunk": 1024}),
)  # fmt: skip
GROUPS = {kind: tuple(sc.name for sc in SCENARIOS if sc.kind == kind) for kind in ("steps", "fanout", "msrp")}


def label_for(sc: Scenario, params: dict[str, int]) -> str:
    """The scenario's row title with the sizes that ran: "fan-out, 1 000 watchers × 51 PUBLISHes"."""
    return sc.label.format(**{k: fmt_num(v) for k, v in params.items()})


def select_scenarios(only: Sequence[str]) -> list[Scenario]:
    """The scenarios named (or in the groups named), in the table's order; all when none is named."""
    if not only:
        return list(SCENARIOS)
    names = {n for name in only for n in GROUPS.get(name, (name,))}
    unknown = names - {sc.name for sc in SCENARIOS}
    if unknown:
        raise ValueError(f"unknown scenario {', '.join(sorted(unknown))}")
    return [sc for sc in SCENARIOS if sc.name in names]


# --- time ---------------------------------------------------------------------------------------


def plan_rates(start: int, step: int, max_rate: int) -> list[int]:
    """The rates steps.py offers, the warm-up first (its own formula)."""
    return [start, *range(start, max_rate + 1, step)]


def step_cost(seconds: int) -> float:
    """The usual wall time of one step."""
    return seconds + STEP_OVERHEAD_S


def worst_step(seconds: int) -> float:
    """The longest a step can take: steps.py gives SIPp -timeout seconds*4+10."""
    return seconds * 4 + 10 + STEP_OVERHEAD_S


def steps_that_fit(allowance_s: float, seconds: int, startup_s: float) -> int:
    """How many steps (the warm-up included) fit in ``allowance_s``: the server's start, then steps
    of the usual length, with room for the last one (the one that fails) to run into -timeout."""
    spare = allowance_s - startup_s - (worst_step(seconds) - step_cost(seconds))
    return max(0, math.floor(spare / step_cost(seconds)))


def fair_share(remaining_s: float, estimates: Sequence[float]) -> float:
    """The first task's share of the time left, in proportion to its estimate among those of the
    tasks still to run (itself first)."""
    if remaining_s <= 0 or not estimates:
        return 0.0
    total = sum(estimates)
    return remaining_s * estimates[0] / total if total > 0 else remaining_s


def params_of(sc: Scenario, quick: bool) -> dict[str, int]:
    return sc.quick if quick else sc.full


def estimate_s(sc: Scenario, p: dict[str, int], server: str) -> float:
    """A task's expected wall time (seconds), for the time shares."""
    start = SERVER_START_S if server == "simplefast" else 0.0
    if sc.kind == "steps":
        n = min(len(plan_rates(p["start"], p["step"], p["max"])), EXPECTED_STEPS)
        return start + n * step_cost(p["seconds"]) + worst_step(p["seconds"]) - step_cost(p["seconds"])
    if sc.kind == "fanout":
        setup = p["watchers"] / 1000  # fanout.py's --rate: 1 000 watchers/s
        idle = p.get("recv_timeout_ms", 15000 + 1000 * setup) / 1000  # its default idle time
        return start + setup + p["watchers"] * p["publishes"] / 10_000 + idle + 15
    return start + 5 + p["sessions"] * p["mib"] / 50  # MSRP at 50 MB/s at worst


# --- headlines and ratios -----------------------------------------------------------------------


@dataclass(frozen=True)
class Headline:
    """One server's number for one scenario. ``lower_bound``: the run never failed (it stopped at
    its highest planned step or at its time share), so the real figure is at least ``value``."""

    value: float | None
    unit: str
    lower_bound: bool = False
    note: str = ""


def steps_headline(rows: Sequence[dict[str, Any]], cut_by_deadline: bool = False) -> Headline:
    """The highest step that passed, from steps.py's rows (warm-up and skipped rows are ignored)."""
    measured = [r for r in rows if not r.get("warm_up") and r.get("status", "run") == "run"]
    if not measured:
        return Headline(None, "/s", note="no step ran")
    best = max((r["offered"] for r in measured if r["passed"]), default=None)
    if best is None:
        return Headline(None, "/s", note=f"no step passed (first: {fmt_num(measured[0]['offered'])}/s)")
    if measured[-1]["passed"]:
        return Headline(best, "/s", True, "time share reached" if cut_by_deadline else "highest step tried")
    return Headline(best, "/s")


def fanout_headline(res: dict[str, Any] | None) -> Headline:
    """NOTIFY/s of a fanout.py result; not valid (None) when a NOTIFY was lost, as fanout.py says."""
    if not res:
        return Headline(None, "NOTIFY/s", note="no result")
    lost, expected = res.get("notifies_lost") or 0, res.get("notifies_expected") or 0
    if lost:
        pct = 100 * lost / expected if expected else 100.0
        return Headline(
            None, "NOTIFY/s", note=f"{fmt_num(lost)} of {fmt_num(expected)} NOTIFYs lost ({pct:.1f} %)"
        )
    if res.get("notify_per_s") is None:
        return Headline(None, "NOTIFY/s", note="no NOTIFY after the first PUBLISH")
    return Headline(float(res["notify_per_s"]), "NOTIFY/s")


def msrp_headline(res: dict[str, Any] | None) -> Headline:
    if not res or res.get("mb_per_s") is None:
        return Headline(None, "MB/s", note="no result")
    return Headline(float(res["mb_per_s"]), "MB/s", note=f"{fmt_num(res.get('chunks_per_s', 0))} chunks/s")


def ratio(sf: Headline | None, kam: Headline | None) -> tuple[float | None, str]:
    """simplefast / Kamailio, and how to read it: "" exact, "≥" or "≤" when one side is a lower
    bound, "both lower bounds" (direction unknown), "n/a" when either number is missing."""
    if sf is None or kam is None or sf.value is None or kam.value is None or kam.value <= 0:
        return None, "n/a"
    r = sf.value / kam.value
    if sf.lower_bound and kam.lower_bound:
        return r, "both lower bounds"
    if sf.lower_bound:
        return r, "≥"
    if kam.lower_bound:
        return r, "≤"
    return r, ""


def fmt_num(v: float) -> str:
    """Numbers as bench/README.md writes them: 28 000, 310, 12.5, 0.63."""
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}".replace(",", " ")
    if a >= 100 or float(v).is_integer():
        return f"{v:.0f}"
    return f"{v:.1f}" if a >= 10 else f"{v:.2f}"


def headline_cell(h: Headline | None) -> str:
    if h is None:
        return "–"
    if h.value is None:
        return h.note or "n/a"
    unit = h.unit if h.unit.startswith("/") else f" {h.unit}"
    return f"{'≥ ' if h.lower_bound else ''}{fmt_num(h.value)}{unit}"


def ratio_cell(r: float | None, qualifier: str) -> str:
    if r is None:
        return "n/a"
    if qualifier in ("≥", "≤"):
        return f"{qualifier} {r:.2f}×"
    return f"{r:.2f}× ({qualifier})" if qualifier else f"{r:.2f}×"


# --- steps rows ---------------------------------------------------------------------------------

STEP_FIELDS = (
    "offered", "achieved", "ok", "failed", "retrans", "server_cpu", "sipp_cpu", "rss_mib", "calls",
    "server_cpu_by_pid",
)  # fmt: skip


def step_rows(
    scenario: str, server: str, rows: Sequence[dict[str, Any]], cut: Sequence[int]
) -> list[dict[str, Any]]:
    """steps.py's rows tagged with scenario and server, then a "skipped (deadline)" row for each
    rate cut from the plan by the time share, when the last step passed (so they would have run)."""
    out = [
        {
            "scenario": scenario,
            "server": server,
            **{k: r.get(k) for k in STEP_FIELDS},
            "warm_up": bool(r.get("warm_up")),
            "passed": bool(r.get("passed")),
            "status": "run",
        }
        for r in rows
    ]
    if out and out[-1]["passed"] and not out[-1]["warm_up"]:
        for rate in cut:
            row: dict[str, Any] = dict.fromkeys(STEP_FIELDS)
            row.update(scenario=scenario, server=server, offered=rate, warm_up=False, passed=False)
            out.append({**row, "status": "skipped (deadline)"})
    return out


# --- fan-out timeline ---------------------------------------------------------------------------


def parse_notify_times(lines: Iterable[bytes]) -> list[float]:
    """Wall-clock times of the fan-out NOTIFYs in watcher.xml's log lines
    (``notify|CALL|CSEQ|STATE|DATE<tab>TIME<tab>EPOCH.USEC``); the first NOTIFY of each
    subscription and the final one after the un-SUBSCRIBE are left out."""
    out = []
    for raw in lines:
        if not raw.startswith(b"notify|"):
            continue
        parts = raw.rstrip(b"\r\n").split(b"|", 4)
        if len(parts) < 5 or parts[3] in (b"first", b"final"):
            continue
        try:
            out.append(float(parts[4].rsplit(b"\t", 1)[1]))
        except (IndexError, ValueError):
            continue
    return out


def nice_bin(x: float) -> float:
    """The smallest of 1, 2, 5 × 10^k that is >= x (at least 0.01)."""
    x = max(x, 0.01)
    k = math.floor(math.log10(x))
    for m in (1, 2, 5, 10):
        b = m * 10.0**k
        if b >= x * (1 - 1e-9):
            return round(b, 10)
    return round(10.0 ** (k + 1), 10)


def delivery_series(times: Sequence[float], t0: float, bins: int = 200) -> dict[str, Any]:
    """NOTIFYs received per second and in total, in bins of time since ``t0`` (the first PUBLISH).
    ``t`` is each bin's end; about ``bins`` bins over the span."""
    rel = sorted(max(0.0, t - t0) for t in times)
    if not rel:
        return {"bin_s": 0.0, "t": [], "per_s": [], "cumulative": []}
    bin_s = nice_bin(rel[-1] / bins)
    n = int(rel[-1] // bin_s) + 1
    counts = [0] * n
    for x in rel:
        counts[min(n - 1, int(x // bin_s))] += 1
    return {
        "bin_s": bin_s,
        "t": [round((i + 1) * bin_s, 9) for i in range(n)],
        "per_s": [c / bin_s for c in counts],
        "cumulative": list(itertools.accumulate(counts)),
    }


def fanout_logs_dir(output: str) -> Path | None:
    """The folder fanout.py --keep names ("SIPp logs kept in DIR")."""
    m = re.search(r"^SIPp logs kept in (\S+)\s*$", output, re.M)
    return Path(m.group(1)) if m else None


# --- the report ---------------------------------------------------------------------------------


def run_headline(run: dict[str, Any]) -> Headline | None:
    """A run's headline, or None when it did not run."""
    if run["status"].startswith("skipped"):
        return None
    if run["kind"] == "steps":
        rows = [r for r in run.get("steps", []) if r["status"] == "run"]
        return steps_headline(rows, bool(run.get("cut_by_deadline")) or run["status"].startswith("stopped"))
    if run["kind"] == "fanout":
        return fanout_headline(run.get("result"))
    return msrp_headline(run.get("result"))


def headline_rows(
    runs: Sequence[dict[str, Any]], scenarios: Sequence[Scenario], quick: bool = False
) -> list[dict[str, Any]]:
    """Per scenario: each server's headline and simplefast / Kamailio."""
    out = []
    for sc in scenarios:
        hs: dict[str, Headline | None] = {}
        for server in SERVERS:
            run = next((r for r in runs if r["scenario"] == sc.name and r["server"] == server), None)
            hs[server] = run_headline(run) if run is not None else None
        r, q = ratio(hs["simplefast"], hs["kamailio"])
        out.append(
            {
                "scenario": sc.name,
                "label": label_for(sc, params_of(sc, quick)),
                "unit": sc.unit,
                **{s: asdict(h) if h is not None else None for s, h in hs.items()},
                "ratio": r,
                "ratio_qualifier": q,
            }
        )
    return out


def assemble_report(
    meta: dict[str, Any], runs: Sequence[dict[str, Any]], scenarios: Sequence[Scenario]
) -> dict[str, Any]:
    """The JSON document: ``meta`` (date, command, options, versions, machine, files), every step
    row, every fan-out and MSRP result, each run's summary, and the headlines."""
    summary_keys = (
        "scenario",
        "server",
        "kind",
        "status",
        "command",
        "params",
        "started_utc",
        "seconds",
        "estimate_s",
        "allowance_s",
        "planned_rates",
        "cut_by_deadline",
        "rc",
    )
    return {
        "schema": SCHEMA,
        **meta,
        "steps": [row for run in runs if run["kind"] == "steps" for row in run.get("steps", [])],
        "fanout": [
            {
                "scenario": run["scenario"],
                "server": run["server"],
                "status": run["status"],
                "params": run.get("params"),
                "result": run.get("result"),
                "delivery": run.get("delivery"),
            }
            for run in runs
            if run["kind"] == "fanout"
        ],
        "msrp": [
            {
                "scenario": run["scenario"],
                "server": run["server"],
                "status": run["status"],
                "params": run.get("params"),
                "result": run.get("result"),
            }
            for run in runs
            if run["kind"] == "msrp"
        ],
        "runs": [{k: run.get(k) for k in summary_keys} for run in runs],
        "headlines": headline_rows(runs, scenarios, bool(meta.get("options", {}).get("quick"))),
    }


def _headline_of(d: dict[str, Any] | None) -> Headline | None:
    return Headline(**d) if d is not None else None


HEADLINE_WHAT = {"/s": "highest sustained rate", "NOTIFY/s": "NOTIFY/s, none lost", "MB/s": "MB/s relayed"}


def headline_table(report: dict[str, Any]) -> list[str]:
    """The Markdown table: per scenario, each server's headline and simplefast / Kamailio."""
    out = [
        "| scenario | headline | simplefast | Kamailio | simplefast / Kamailio |",
        "|---|---|--:|--:|--:|",
    ]
    for h in report["headlines"]:
        sf, kam = _headline_of(h["simplefast"]), _headline_of(h["kamailio"])
        kam_cell = headline_cell(kam) if report["options"]["kamailio"] else "not run (--no-kamailio)"
        what = HEADLINE_WHAT.get(h["unit"], h["unit"])
        rc = ratio_cell(h["ratio"], h["ratio_qualifier"])
        out.append(f"| {h['label']} | {what} | {headline_cell(sf)} | {kam_cell} | {rc} |")
    return out


def markdown_report(report: dict[str, Any]) -> str:
    """The .md file: the headline table (simplefast / Kamailio), then steps, fan-out, MSRP details,
    what was skipped, the plots and the commands."""
    v, m, opts = report["versions"], report["machine"], report["options"]
    who = (
        f"both servers on this machine, one after the other, {WORKERS} workers / {WORKERS} children"
        if opts["kamailio"]
        else f"simplefast only (--no-kamailio), {WORKERS} workers"
    )
    out = [
        f"# simplefast and Kamailio side by side, {report['date']}, {m['hostname']}",
        "",
        f"One run of `{report['command']}`, {report['started_utc']} to "
        f"{report.get('finished_utc') or '(running)'} UTC: {who},"
        " SIPp and the clients on the same cores. Quote the ratios; absolute figures move between runs"
        " on a shared host.",
        "",
        f"- simplefast {v.get('simplefast') or '?'}, "
        f"Kamailio: {re.sub(r'^version: ', '', v.get('kamailio') or 'not used')}, "
        f"SIPp: {v.get('sipp') or '?'}, Python {v.get('python')}, kernel {v.get('kernel')}",
        f"- machine: {m.get('cpu_model')}, {m.get('cores')} cores, {fmt_num(m.get('ram_gib') or 0)} GiB RAM;"
        f" load average at the start {m.get('loadavg_start')}",
        f"- options: {'quick (smoke sizes, not figures to quote)' if opts['quick'] else 'full'}; simplefast "
        f"{'persisted (its default)' if opts['persist'] else '--no-persist'}; "
        f"time budget {opts['budget_s']:.0f} s",
        "",
        *headline_table(report),
        "",
        "How to read it: a steps headline is the highest offered rate whose step passed (failed calls"
        " and SIPp retransmissions ≤ 0.1 % of calls, achieved ≥ 90 % of offered), after a warm-up step;"
        ' "≥" means the run never failed (it stopped at its highest planned step or at its time share),'
        " so the ratio is a bound. Fan-out NOTIFY/s = watchers × PUBLISHes ÷ (last NOTIFY − first"
        " PUBLISH), only when every NOTIFY arrived. MSRP: octets relayed ÷ (last octet received − first"
        " sent).",
    ]
    steps = report["steps"]
    if steps:
        out += ["", "## Steps", ""]
        for sc in dict.fromkeys(r["scenario"] for r in steps):
            out += [
                f"### {sc}",
                "",
                "| server | offered/s | achieved/s | failed | retrans | server CPU | SIPp CPU "
                "| server RSS MiB | pass |",
                "|---|--:|--:|--:|--:|--:|--:|--:|:-:|",
            ]
            for r in (r for r in steps if r["scenario"] == sc):
                if r["status"] != "run":
                    out.append(f"| {r['server']} | {fmt_num(r['offered'])} | | | | | | | {r['status']} |")
                    continue
                tag = "warm-up" if r["warm_up"] else ("yes" if r["passed"] else "no")
                out.append(
                    f"| {r['server']} | {fmt_num(r['offered'])} | {r['achieved']:.0f} | {r['failed']} "
                    f"| {r['retrans']} | {r['server_cpu']:.2f} | {r['sipp_cpu']:.2f} | {r['rss_mib']:.0f} "
                    f"| {tag} |"
                )
            out.append("")
    fan = [f for f in report["fanout"] if f.get("result")]
    if fan:
        out += [
            "## Fan-out",
            "",
            "| scenario | server | watchers × PUBLISHes (watcher SIPps) | NOTIFY/s | received / expected "
            "| lost | server CPU per NOTIFY | wait ended by |",
            "|---|---|--:|--:|--:|--:|--:|---|",
        ]
        for f in fan:
            res = f["result"]
            got = res.get("notifies_received") or 0
            cpu = res.get("server_cpu_fanout_s")
            per = f"{cpu / got * 1e6:.0f} µs" if cpu is not None and got else "n/a"
            nps = res.get("notify_per_s")
            out.append(
                f"| {f['scenario']} | {f['server']} | {fmt_num(res['watchers'])} × {res['publishes']} "
                f"({res.get('watcher_procs')}) | {fmt_num(nps) if nps is not None else 'n/a'} "
                f"| {fmt_num(got)} / {fmt_num(res.get('notifies_expected') or 0)} "
                f"| {fmt_num(res.get('notifies_lost') or 0)} | {per} | {res.get('stop_reason', '?')} |"
            )
        out.append("")
    msrp = [f for f in report["msrp"] if f.get("result")]
    if msrp:
        out += [
            "## MSRP relay",
            "",
            "| scenario | server | sessions × MiB, chunk | MB/s | chunks/s | relay CPU s per GB |",
            "|---|---|--:|--:|--:|--:|",
        ]
        for f in msrp:
            res = f["result"]
            out.append(
                f"| {f['scenario']} | {f['server']} | {res['sessions']} × {res['mib_per_session']}, "
                f"{res['chunk']} B | {fmt_num(res['mb_per_s'])} | {fmt_num(res['chunks_per_s'])} "
                f"| {res['server_cpu_s_per_gb']:.2f} |"
            )
        out.append("")
    odd = [r for r in report["runs"] if r["status"] != "ok"]
    cut = [r for r in report["runs"] if r.get("cut_by_deadline")]
    if odd or cut:
        out += ["## Not run, stopped or cut", ""]
        out += [f"- {r['scenario']} / {r['server']}: {r['status']}" for r in odd]
        out += [
            f"- {r['scenario']} / {r['server']}: steps cut by its time share (rows marked skipped)"
            for r in cut
        ]
        out.append("")
    files = report.get("files", {})
    if files.get("plots") or files.get("plot_notes"):
        out += ["## Plots", ""]
        out += [f"![{Path(p).stem}]({Path(p).name})" for p in files.get("plots", [])]
        out += [f"- {n}" for n in files.get("plot_notes", [])]
        out.append("")
    cmds = [r for r in report["runs"] if r.get("command")]
    if cmds:
        out += ["## Commands", "", "```"] + [r["command"] for r in cmds] + ["```", ""]
    return "\n".join(out).rstrip() + "\n"


# --- plots --------------------------------------------------------------------------------------


def steps_plot_data(steps: Sequence[dict[str, Any]], scenario: str) -> dict[str, dict[str, list[Any]]]:
    """Per server: offered, achieved and passed of the measured steps (no warm-up, no skipped row)."""
    out: dict[str, dict[str, list[Any]]] = {}
    for r in steps:
        if r["scenario"] != scenario or r["warm_up"] or r["status"] != "run":
            continue
        d = out.setdefault(r["server"], {"offered": [], "achieved": [], "passed": []})
        d["offered"].append(r["offered"])
        d["achieved"].append(r["achieved"])
        d["passed"].append(r["passed"])
    return out


def fanout_plot_data(fanout: Sequence[dict[str, Any]], scenario: str) -> dict[str, dict[str, Any]]:
    """Per server that has a result: its delivery series (None when the logs gave none), NOTIFY/s
    and the NOTIFYs expected after the first PUBLISH (watchers × PUBLISHes)."""
    out = {}
    for f in fanout:
        res = f.get("result")
        if f["scenario"] != scenario or not res:
            continue
        series = f.get("delivery")
        out[f["server"]] = {
            "delivery": series if series and series.get("t") else None,
            "notify_per_s": res.get("notify_per_s"),
            "expected": res["watchers"] * res["publishes"],
        }
    return out


COLOURS = {"simplefast": "tab:blue", "kamailio": "tab:orange"}


def write_plots(report: dict[str, Any], out_dir: Path, stem: str) -> tuple[list[str], list[str]]:
    """The PNGs (matplotlib, Agg): achieved vs offered per steps scenario, and NOTIFYs received over
    time per fan-out scenario (NOTIFY/s bars where a run has no per-NOTIFY times). Returns the
    files written and notes for the report."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], ["matplotlib is not installed: no plots"]
    files, notes = [], []
    titles = {h["scenario"]: h["label"] for h in report["headlines"]}
    step_names = [
        s
        for s in dict.fromkeys(r["scenario"] for r in report["steps"])
        if steps_plot_data(report["steps"], s)
    ]
    if step_names:
        cols = min(2, len(step_names))
        rows = math.ceil(len(step_names) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 4.6 * rows), squeeze=False)
        for ax, name in zip(axes.flat, step_names, strict=False):
            top = 0.0
            for server, d in steps_plot_data(report["steps"], name).items():
                c = COLOURS.get(server, "grey")
                ax.plot(d["offered"], d["achieved"], "o-", color=c, label=server)
                for x, y, ok in zip(d["offered"], d["achieved"], d["passed"], strict=True):
                    ax.plot([x], [y], "o", color=c, markerfacecolor=c if ok else "white")
                top = max(top, *d["offered"], *d["achieved"])
            ax.plot([0, top], [0, top], ":", color="grey", label="achieved = offered")
            ax.plot([0, top], [0, 0.9 * top], "--", color="lightgrey", label="90 % of offered (pass line)")
            ax.set_title(titles.get(name, name), fontsize=10)
            ax.set_xlabel("offered calls/s")
            ax.set_ylabel("achieved calls/s")
            ax.set_xlim(left=0)
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        for ax in list(axes.flat)[len(step_names) :]:
            ax.set_visible(False)
        fig.suptitle(
            "achieved vs offered (filled: step passed, hollow: failed), "
            f"{report['date']} {report['machine']['hostname']}",
            fontsize=10,
        )
        fig.tight_layout()
        path = out_dir / f"{stem}-steps.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(str(path))
    fan_names = [
        s
        for s in dict.fromkeys(f["scenario"] for f in report["fanout"])
        if fanout_plot_data(report["fanout"], s)
    ]
    if fan_names:
        fig, axes = plt.subplots(1, len(fan_names), figsize=(6.4 * len(fan_names), 4.6), squeeze=False)
        for ax, name in zip(axes.flat, fan_names, strict=True):
            data = fanout_plot_data(report["fanout"], name)
            if all(fd["delivery"] for fd in data.values()):
                for server, fd in data.items():
                    ax.plot(
                        [0.0, *fd["delivery"]["t"]],
                        [0, *fd["delivery"]["cumulative"]],
                        color=COLOURS.get(server, "grey"),
                        label=server,
                    )
                expected = max(fd["expected"] for fd in data.values())
                ax.axhline(expected, ls=":", color="grey", label=f"expected {fmt_num(expected)}")
                ax.set_xlabel("seconds after the first PUBLISH")
                ax.set_ylabel("NOTIFYs received (cumulative)")
                ax.set_ylim(bottom=0)
                ax.legend(fontsize=8)
            else:
                servers = list(data)
                vals = [data[s]["notify_per_s"] or 0 for s in servers]
                ax.bar(servers, vals, color=[COLOURS.get(s, "grey") for s in servers])
                ax.set_ylabel("NOTIFY/s")
                notes.append(f"{name}: no per-NOTIFY times for every server, so NOTIFY/s as bars")
            ax.set_title(titles.get(name, name), fontsize=10)
            ax.grid(alpha=0.3)
        fig.suptitle(
            f"fan-out: NOTIFY delivery, {report['date']} {report['machine']['hostname']}", fontsize=10
        )
        fig.tight_layout()
        path = out_dir / f"{stem}-fanout.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(str(path))
    return files, notes


# --- machine and versions -----------------------------------------------------------------------


def cpu_model(cpuinfo: str) -> str:
    return next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), "?"
    )


def mem_total_bytes(meminfo: str) -> int | None:
    m = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.M)
    return int(m.group(1)) << 10 if m else None


def result_stem(date: dt.date, hostname: str) -> str:
    """<YYYY-MM-DD>-<hostname>, the hostname reduced to file-name characters."""
    return f"{date.isoformat()}-{re.sub(r'[^A-Za-z0-9._-]+', '-', hostname) or 'host'}"


def git_rev_from_files(repo: Path) -> str | None:
    """The short commit id of HEAD, read from .git (a folder, or a file naming one) without git."""
    dot = repo / ".git"
    try:
        gd = dot
        if dot.is_file():
            m = re.match(r"gitdir:\s*(\S+)", dot.read_text())
            if not m:
                return None
            gd = (repo / m.group(1)).resolve()
        common = gd
        if (gd / "commondir").is_file():
            common = (gd / (gd / "commondir").read_text().strip()).resolve()
        sha = (gd / "HEAD").read_text().strip()
        if sha.startswith("ref:"):
            ref = sha[4:].strip()
            loose = common / ref
            if loose.is_file():
                sha = loose.read_text().strip()
            else:
                packed = (common / "packed-refs").read_text().splitlines()
                sha = next((ln.split()[0] for ln in packed if ln.split()[1:] == [ref]), "")
    except OSError:
        return None
    return sha[:7] if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", sha) else None


def git_rev(repo: Path) -> str | None:
    rev = git_rev_from_files(repo)
    if rev is None and shutil.which("git"):
        p = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True)
        rev = (p.stdout.strip() or None) if p.returncode == 0 else None
    return rev


def first_line(cmd: list[str]) -> str | None:
    """The first non-empty line a command prints (stdout, then stderr), or None."""
    if not shutil.which(cmd[0]):
        return None
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return next((ln.strip() for ln in (p.stdout + "\n" + p.stderr).splitlines() if ln.strip()), None)


def versions(kamailio: bool) -> dict[str, str | None]:
    try:
        sf_version: str | None = importlib.metadata.version("simplefast")
    except importlib.metadata.PackageNotFoundError:  # not installed: the rev alone
        sf_version = None
    rev = git_rev(REPO)
    return {
        "simplefast": " ".join(x for x in (rev, f"({sf_version})" if sf_version else None) if x) or None,
        "simplefast_rev": rev,
        "kamailio": first_line(["kamailio", "-v"]) if kamailio else None,
        "sipp": first_line(["sipp", "-v"]),
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "kernel": f"{platform.system()} {platform.release()}",
    }


def machine() -> dict[str, Any]:
    def read(path: str) -> str:
        try:
            return Path(path).read_text()
        except OSError:
            return ""

    ram = mem_total_bytes(read("/proc/meminfo"))
    return {
        "hostname": platform.node() or socket.gethostname(),
        "cpu_model": cpu_model(read("/proc/cpuinfo")),
        "cores": os.cpu_count(),
        "ram_gib": round(ram / 2**30, 1) if ram else None,
        "loadavg_start": " ".join(read("/proc/loadavg").split()[:3]) or None,
    }


# --- installs -----------------------------------------------------------------------------------


def missing_packages(
    need_kamailio: bool,
    have_cmd: Callable[[str], object] = shutil.which,
    have_file: Callable[[Path], bool] = Path.exists,
) -> list[str]:
    """The Debian packages whose files this run needs and does not find: SIPp (sip-tester); with
    Kamailio, what bench/peers/kamailio/run.sh and run-msrp.sh use."""
    checks = [("sip-tester", bool(have_cmd("sipp")))]
    if need_kamailio:
        checks += [
            ("kamailio", all(map(have_cmd, ("kamailio", "kamcmd"))) and have_file(KAM_MODULES / "msrp.so")),
            (
                "kamailio-presence-modules",
                all(have_file(KAM_MODULES / m) for m in ("presence.so", "presence_xml.so")),
            ),
            ("kamailio-sqlite-modules", have_file(KAM_MODULES / "db_sqlite.so") and have_file(KAM_SQL)),
            ("sqlite3", bool(have_cmd("sqlite3"))),
        ]
    return [pkg for pkg, ok in checks if not ok]


def ensure_installed(need_kamailio: bool, log: Path) -> list[str]:
    """Install what is missing (apt as root, matplotlib with pip into this interpreter); returns notes.
    Exits when SIPp, or Kamailio when asked for, is still missing."""
    notes = []
    pkgs = missing_packages(need_kamailio)
    if pkgs:
        cmd = "apt-get install -y " + " ".join(pkgs)
        if os.geteuid() != 0:
            print(f"not root: not running apt-get; missing {', '.join(pkgs)}: run `sudo {cmd}`", flush=True)
        else:
            print(f"installing with apt: {' '.join(pkgs)}", flush=True)
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            with open(log, "ab") as f:
                for c in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *pkgs]):
                    f.write(f"\n$ {shlex.join(c)}\n".encode())
                    f.flush()
                    subprocess.run(c, stdout=f, stderr=subprocess.STDOUT, env=env, check=False)
            notes.append(f"installed with apt: {' '.join(pkgs)}")
        still = missing_packages(need_kamailio)
        if "sip-tester" in still:
            raise SystemExit("SIPp is needed: apt-get install -y sip-tester")
        if still:
            raise SystemExit(
                f"Kamailio is needed for the comparison: apt-get install -y {' '.join(still)}"
                " (or pass --no-kamailio)"
            )
    if importlib.util.find_spec("matplotlib") is None:
        print("installing matplotlib with pip (for the plots)", flush=True)
        with open(log, "ab") as f:
            c = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "matplotlib"]
            f.write(f"\n$ {shlex.join(c)}\n".encode())
            f.flush()
            ok = subprocess.run(c, stdout=f, stderr=subprocess.STDOUT, check=False).returncode == 0
        importlib.invalidate_caches()
        notes.append("installed matplotlib with pip" if ok else "pip install matplotlib failed: no plots")
    return notes


# --- children -----------------------------------------------------------------------------------


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a child started in its own process group: SIGINT to the group (the runners clean up
    their SIPps and servers in ``finally``), then SIGKILL to whatever of the group is left."""
    try:
        os.killpg(proc.pid, signal.SIGINT)
    except ProcessLookupError:
        return
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc.returncode is None:
        proc.wait(10)


def run_logged(
    cmd: list[str], log: Path, stop_at: float, env: dict[str, str] | None = None
) -> tuple[int | None, str]:
    """Run ``cmd`` in its own process group, its output appended to ``log``; stop the group at
    ``stop_at`` (time.monotonic()). Returns the exit code (None: stopped) and the output."""
    with open(log, "ab") as f:
        f.write(f"\n$ {shlex.join(cmd)}\n".encode())
        f.flush()
        pos = f.tell()
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
        rc: int | None
        try:
            rc = proc.wait(max(0.0, stop_at - time.monotonic()))
        except subprocess.TimeoutExpired:
            stop_group(proc)
            rc = None
        except KeyboardInterrupt:
            stop_group(proc)
            raise
    with open(log, "rb") as f:
        f.seek(pos)
        return rc, f.read().decode(errors="replace")


def port_free(host: str, port: int, udp: bool) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def pids_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [pid, *map(int, out)]


class Peer:
    """The peer Kamailio (bench/peers/kamailio): its SIP set-up (run.sh) or its MSRP relay
    (run-msrp.sh), one at a time, in folders of its own (KAMDIR)."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.kind: str | None = None
        self.pids: list[int] = []
        self.failed: dict[str, str] = {}

    def ensure(self, kind: str) -> list[int] | str:
        """The pids of the running set-up ``kind`` ("sip" or "msrp"), started if needed; or why not."""
        if self.kind == kind:
            return self.pids
        if kind in self.failed:
            return self.failed[kind]
        self.stop()
        host, port = KAM_SIP if kind == "sip" else KAM_MSRP
        protos = ("udp", "tcp") if kind == "sip" else ("tcp",)
        busy = [f"{proto} {port}" for proto in protos if not port_free(host, port, proto == "udp")]
        if busy:
            self.failed[kind] = f"Kamailio not started: {', '.join(busy)} on {host} in use"
            return self.failed[kind]
        env = {**os.environ, "KAMDIR": KAMDIR[kind], "CHILDREN": str(WORKERS)}
        script = PEER / ("run.sh" if kind == "sip" else "run-msrp.sh")
        rc, out = run_logged(["sh", str(script)], self.log, time.monotonic() + 60, env)
        try:
            main_pid = int((Path(KAMDIR[kind]) / "kamailio.pid").read_text())
        except (OSError, ValueError):
            main_pid = 0
        if rc != 0 or not main_pid:
            last = (out.strip().splitlines() or [f"exit {rc}"])[-1]
            self.failed[kind] = f"Kamailio ({script.name}) did not start: {last}"
            return self.failed[kind]
        print(f"  {out.strip().splitlines()[-1]}", flush=True)
        time.sleep(0.5)  # its children forked
        self.kind, self.pids = kind, pids_of(main_pid)
        return self.pids

    def stop(self) -> None:
        if self.kind is None:
            return
        env = {**os.environ, "KAMDIR": KAMDIR[self.kind]}
        run_logged(["sh", str(PEER / "stop.sh")], self.log, time.monotonic() + 30, env)
        self.kind, self.pids = None, []


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Context:
    args: argparse.Namespace
    deadline: float  # time.monotonic()
    log: Path
    tmp: Path
    peer: Peer

    def left(self) -> float:
        return self.deadline - time.monotonic()


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def server_args(ctx: Context, sc: Scenario, server: str, pids: list[int]) -> list[str]:
    if server == "kamailio":
        host, port = KAM_MSRP if sc.kind == "msrp" else KAM_SIP
        extra = [] if sc.kind == "msrp" else ["--service", KAM_DOMAIN]
        return ["--target", f"{host}:{port}", "--server-pids", ",".join(map(str, pids)), *extra]
    if sc.kind == "msrp":
        return []
    return ["--workers", str(WORKERS)] + ([] if ctx.args.persist else ["--server-arg=--no-persist"])


def status_of(rc: int | None) -> str:
    return "ok" if rc == 0 else ("stopped at the deadline" if rc is None else f"failed (exit {rc})")


def load_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_task(ctx: Context, sc: Scenario, server: str, estimates: Sequence[float]) -> dict[str, Any]:
    p = params_of(sc, ctx.args.quick)
    allowance = fair_share(ctx.left(), estimates)
    run: dict[str, Any] = {
        "scenario": sc.name,
        "server": server,
        "kind": sc.kind,
        "params": p,
        "status": "ok",
        "command": None,
        "started_utc": now_utc(),
        "seconds": 0.0,
        "estimate_s": round(estimates[0], 1),
        "allowance_s": round(allowance, 1),
        "cut_by_deadline": False,
        "rc": None,
    }
    t_start = time.monotonic()
    pids: list[int] = []
    if server == "kamailio":
        got = ctx.peer.ensure("msrp" if sc.kind == "msrp" else "sip")
        if isinstance(got, str):
            run["status"] = f"skipped ({got})"
            return run
        pids = got
    py = sys.executable
    out_json = ctx.tmp / f"{sc.name}-{server}.json"
    if sc.kind == "steps":
        rates = plan_rates(p["start"], p["step"], p["max"])
        run["planned_rates"] = rates
        startup = SERVER_START_S if server == "simplefast" else 0.0
        n_fit = min(len(rates), steps_that_fit(allowance, p["seconds"], startup))
        if n_fit < 2:  # not even the warm-up and one step
            run["status"] = "skipped (deadline)"
            return run
        ran, cut = rates[:n_fit], rates[n_fit:]
        cmd = [py, str(HERE / "sipp" / "steps.py"), sc.name, "--start", str(p["start"]),
               "--step", str(p["step"]), "--max", str(ran[-1]), "--seconds", str(p["seconds"]),
               "--json", str(out_json), *server_args(ctx, sc, server, pids)]  # fmt: skip
        print(
            f"  offered {fmt_num(ran[0])}..{fmt_num(ran[-1])}/s in {len(ran)} steps"
            + (f" ({len(cut)} more planned steps do not fit its {allowance:.0f} s share)" if cut else ""),
            flush=True,
        )
    elif sc.kind == "fanout":
        if estimates[0] > ctx.left():
            run["status"] = "skipped (deadline)"
            return run
        quick = (
            ["--recv-timeout", str(p["recv_timeout_ms"]), "--quiet", str(p["quiet"])] if "quiet" in p else []
        )
        cmd = [py, str(HERE / "sipp" / "fanout.py"), "--watchers", str(p["watchers"]),
               "--publishes", str(p["publishes"]), "--watcher-procs", str(p[f"procs_{server}"]), *quick,
               "--json", str(out_json), "--keep", *server_args(ctx, sc, server, pids)]  # fmt: skip
    else:
        if estimates[0] > ctx.left():
            run["status"] = "skipped (deadline)"
            return run
        cmd = [py, str(HERE / "msrp_relay.py"), "--sessions", str(p["sessions"]), "--mib", str(p["mib"]),
               "--chunk", str(p["chunk"]), "--json", str(out_json),
               *server_args(ctx, sc, server, pids)]  # fmt: skip
    run["command"] = shlex.join(cmd).replace(str(REPO) + "/", "").replace(str(ctx.tmp) + "/", "")
    rc, output = run_logged(cmd, ctx.log, ctx.deadline)
    run["rc"], run["status"] = rc, status_of(rc)
    data = load_json(out_json)
    if sc.kind == "steps":
        rows = data["steps"] if data else []
        # stopped at the deadline: the planned steps after the last one that ran did not run either
        run["steps"] = step_rows(sc.name, server, rows, rates[len(rows) :] if rc is None else cut)
        run["cut_by_deadline"] = bool(cut) and any(r["status"] != "run" for r in run["steps"])
    elif sc.kind == "fanout":
        if data is not None:
            data.pop("watchers_missing_list", None)  # up to N call numbers; the count stays
        run["result"] = data
        logs = fanout_logs_dir(output)
        if logs is not None and logs.is_dir() and logs.name.startswith("sf-fanout-"):
            if data and data.get("t0"):
                times: list[float] = []
                for path in sorted(logs.glob("watchers*_logs.log")):
                    with open(path, "rb") as f:
                        times += parse_notify_times(f)
                run["delivery"] = delivery_series(times, float(data["t0"]))
            shutil.rmtree(logs, ignore_errors=True)  # fanout.py's folder, kept for the times only
    else:
        run["result"] = data
    run["seconds"] = round(time.monotonic() - t_start, 1)
    return run


def write_outputs(
    ctx: Context,
    meta: dict[str, Any],
    runs: list[dict[str, Any]],
    scenarios: Sequence[Scenario],
    stem: str,
    plots: bool,
) -> dict[str, Any]:
    out = Path(ctx.args.out)
    report = assemble_report(meta, runs, scenarios)
    if plots:
        try:
            files, notes = write_plots(report, out, stem)
        except Exception as e:  # a plot must not cost the run its JSON and Markdown
            files, notes = [], [f"plotting failed: {e!r}"]
        meta["files"].update(plots=files, plot_notes=notes)
        report = assemble_report(meta, runs, scenarios)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (out / f"{stem}.md").write_text(markdown_report(report))
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SCENARIO",
        help=f"run only this scenario or group (repeatable): "
        f"{', '.join([*(sc.name for sc in SCENARIOS), *GROUPS])}",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke sizes: one step at 500/s for 1 s, 100/200 "
        "watchers x 3 PUBLISHes, MSRP 1 session x 1 MiB; not figures to quote",
    )
    ap.add_argument(
        "--out", default=str(HERE / "results"), help="folder of the results (default bench/results)"
    )
    ap.add_argument(
        "--no-kamailio", dest="kamailio", action="store_false", help="simplefast only (ratios n/a)"
    )
    ap.add_argument(
        "--persist",
        action="store_true",
        help="simplefast with its SQLite write-behind (its default) instead of --no-persist",
    )
    ap.add_argument(
        "--budget",
        type=float,
        default=DEFAULT_BUDGET_S,
        help=f"seconds for the whole run, installs included (default {DEFAULT_BUDGET_S})",
    )
    args = ap.parse_args()
    try:
        scenarios = select_scenarios(args.only)
    except ValueError as e:
        ap.error(str(e))
    t0 = time.monotonic()
    deadline = t0 + args.budget
    started = dt.datetime.now(dt.UTC)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    host = machine()
    stem = result_stem(started.date(), host["hostname"])
    log = out / f"{stem}.log"
    log.write_text(f"bench/compare.py, {now_utc()} UTC: {shlex.join([sys.executable, *sys.argv])}\n")
    print(
        f"bench/compare.py: {', '.join(sc.name for sc in scenarios)}; deadline in {args.budget:.0f} s; "
        f"children's output in {log}",
        flush=True,
    )
    notes = ensure_installed(args.kamailio, log)
    meta: dict[str, Any] = {
        "date": started.date().isoformat(),
        "started_utc": started.strftime("%Y-%m-%d %H:%M:%S"),
        "finished_utc": None,
        "command": shlex.join(["bench/compare.py", *sys.argv[1:]]),
        "options": {
            "quick": args.quick,
            "only": args.only,
            "kamailio": args.kamailio,
            "persist": args.persist,
            "budget_s": args.budget,
            "workers": WORKERS,
        },
        "versions": versions(args.kamailio),
        "machine": host,
        "install_notes": notes,
        "files": {
            "json": str(out / f"{stem}.json"),
            "markdown": str(out / f"{stem}.md"),
            "log": str(log),
            "plots": [],
            "plot_notes": [],
        },
    }
    for k, v in meta["versions"].items():
        print(f"  {k}: {v}")
    print(f"  machine: {host['cpu_model']}, {host['cores']} cores, {host['ram_gib']} GiB", flush=True)
    servers = SERVERS if args.kamailio else SERVERS[:1]
    tasks = [(sc, server) for sc in scenarios for server in servers]
    ests = [estimate_s(sc, params_of(sc, args.quick), server) for sc, server in tasks]
    runs: list[dict[str, Any]] = []
    ctx = Context(args, deadline, log, Path(tempfile.mkdtemp(prefix="sf-compare-")), Peer(log))
    try:
        for i, (sc, server) in enumerate(tasks):
            print(f"[{now_utc()}] {sc.name} / {server} ({ctx.left():.0f} s left)", flush=True)
            run = run_task(ctx, sc, server, ests[i:])
            runs.append(run)
            h = run_headline(run)
            print(
                f"  {run['status']}: {headline_cell(h)}" + (f" ({h.note})" if h and h.note else ""),
                flush=True,
            )
            write_outputs(ctx, meta, runs, scenarios, stem, plots=False)
    finally:
        ctx.peer.stop()
        shutil.rmtree(ctx.tmp, ignore_errors=True)
        meta["finished_utc"] = now_utc()
        report = write_outputs(ctx, meta, runs, scenarios, stem, plots=True)
    print()
    print("\n".join(headline_table(report)))
    print()
    for f in [meta["files"]["json"], meta["files"]["markdown"], *meta["files"]["plots"], str(log)]:
        print("written:", f)
    for n in meta["files"]["plot_notes"]:
        print("note:", n)
    print(f"total {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
