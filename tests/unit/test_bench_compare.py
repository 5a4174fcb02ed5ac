"""bench/compare.py's pure parts: time shares, headlines and ratios, step rows, the fan-out
timeline, the JSON document and the Markdown report. No SIPp, no server."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("sf_bench_compare", REPO / "bench" / "compare.py")
assert _spec is not None and _spec.loader is not None
compare = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = compare  # dataclasses look their module up
_spec.loader.exec_module(compare)

Headline = compare.Headline


def step(
    offered: int, achieved: float, passed: bool, warm_up: bool = False, failed: int = 0
) -> dict[str, Any]:
    """A row as bench/sipp/steps.py --json writes it."""
    return {
        "offered": offered, "achieved": achieved, "ok": int(achieved * 3), "failed": failed, "retrans": 0,
        "server_cpu": 1.2, "sipp_cpu": 0.4, "rss_mib": 300.0, "calls": offered * 3,
        "warm_up": warm_up, "passed": passed,
    }  # fmt: skip


# --- scenarios and time --------------------------------------------------------------------------


def test_select_scenarios_all_groups_and_order() -> None:
    assert [sc.name for sc in compare.select_scenarios([])] == [sc.name for sc in compare.SCENARIOS]
    names = [sc.name for sc in compare.select_scenarios(["msrp", "register", "fanout-10k"])]
    assert names == ["register", "fanout-10k", "msrp-8k", "msrp-1k"]  # the table's order, not the options'
    assert [sc.name for sc in compare.select_scenarios(["register", "register"])] == ["register"]
    assert {sc.kind for sc in compare.select_scenarios(["steps"])} == {"steps"}
    with pytest.raises(ValueError, match="nope"):
        compare.select_scenarios(["nope"])


def test_plan_rates_is_steps_py_formula() -> None:
    assert compare.plan_rates(8000, 4000, 20000) == [8000, 8000, 12000, 16000, 20000]
    q = compare.QUICK_STEPS
    assert compare.plan_rates(q["start"], q["step"], q["max"]) == [500, 500]  # warm-up, one step


def test_steps_that_fit() -> None:
    # 3 s steps cost 5 s; the failing one may take 3*4+10+2 = 24 s, 19 more than usual
    assert compare.step_cost(3) == 5.0 and compare.worst_step(3) == 24.0
    assert compare.steps_that_fit(100, 3, 8) == 14  # (100 - 8 - 19) // 5
    assert compare.steps_that_fit(8 + 19 + 9.99, 3, 8) == 1
    assert compare.steps_that_fit(10, 3, 8) == 0
    assert compare.steps_that_fit(-50, 3, 0) == 0


def test_fair_share() -> None:
    assert compare.fair_share(600, [100, 200, 300]) == pytest.approx(100)
    assert compare.fair_share(600, [300]) == 600
    assert compare.fair_share(0, [1, 2]) == 0 and compare.fair_share(-5, [1]) == 0
    assert compare.fair_share(100, []) == 0
    assert compare.fair_share(100, [0, 0]) == 100


def test_full_plan_fits_the_default_budget() -> None:
    """The estimates of the full run (both servers) leave slack under the 28-minute deadline."""
    total = sum(
        compare.estimate_s(sc, sc.full, server) for sc in compare.SCENARIOS for server in compare.SERVERS
    )
    assert total < 0.8 * compare.DEFAULT_BUDGET_S
    assert compare.DEFAULT_BUDGET_S < 30 * 60
    quick = sum(compare.estimate_s(sc, sc.quick, "simplefast") for sc in compare.SCENARIOS)
    assert quick < total / 4


def test_estimates_grow_with_the_work() -> None:
    fan1k, fan10k = (sc for sc in compare.SCENARIOS if sc.kind == "fanout")
    assert compare.estimate_s(fan10k, fan10k.full, "kamailio") > compare.estimate_s(
        fan1k, fan1k.full, "kamailio"
    )
    reg = compare.SCENARIOS[0]
    # simplefast is started by the runner; Kamailio is already up
    assert (
        compare.estimate_s(reg, reg.full, "simplefast") - compare.estimate_s(reg, reg.full, "kamailio") == 8
    )


# --- headlines and ratios ------------------------------------------------------------------------


def test_steps_headline_knee() -> None:
    rows = [step(8000, 7900, True, warm_up=True), step(8000, 7950, True), step(12000, 11800, True),
            step(16000, 11000, False)]  # fmt: skip
    assert compare.steps_headline(rows) == Headline(12000, "/s")


def test_steps_headline_never_failed_is_a_lower_bound() -> None:
    rows = [step(500, 490, True, warm_up=True), step(500, 495, True)]
    h = compare.steps_headline(rows)
    assert h == Headline(500, "/s", True, "highest step tried")
    assert compare.steps_headline(rows, cut_by_deadline=True).note == "time share reached"


def test_steps_headline_nothing_passed_or_ran() -> None:
    rows = [step(8000, 5000, False, warm_up=True), step(8000, 6000, False, failed=40)]
    h = compare.steps_headline(rows)
    assert h.value is None and "no step passed" in h.note and "8 000/s" in h.note
    assert compare.steps_headline([step(8000, 8000, True, warm_up=True)]).note == "no step ran"
    skipped = {**step(12000, 0, False), "status": "skipped (deadline)"}
    assert compare.steps_headline([step(8000, 7900, True), skipped]).lower_bound  # skipped rows ignored


def test_fanout_headline() -> None:
    ok = {"notify_per_s": 21728.4, "notifies_lost": 0, "notifies_expected": 52000}
    assert compare.fanout_headline(ok) == Headline(21728.4, "NOTIFY/s")
    lost = {"notify_per_s": 5000.0, "notifies_lost": 504750, "notifies_expected": 520000}
    h = compare.fanout_headline(lost)
    assert h.value is None and h.note == "504 750 of 520 000 NOTIFYs lost (97.1 %)"
    assert compare.fanout_headline(None).note == "no result"
    assert compare.fanout_headline({"notify_per_s": None, "notifies_lost": 0}).value is None


def test_msrp_headline() -> None:
    h = compare.msrp_headline({"mb_per_s": 310.2, "chunks_per_s": 37865.0})
    assert h == Headline(310.2, "MB/s", note="37 865 chunks/s")
    assert compare.msrp_headline({}).value is None


def test_ratio() -> None:
    sf, kam = Headline(28000, "/s"), Headline(20000, "/s")
    assert compare.ratio(sf, kam) == (1.4, "")
    assert compare.ratio(Headline(28000, "/s", True), kam) == (1.4, "≥")
    assert compare.ratio(sf, Headline(20000, "/s", True)) == (1.4, "≤")
    assert compare.ratio(Headline(1, "/s", True), Headline(1, "/s", True)) == (1.0, "both lower bounds")
    assert compare.ratio(sf, None) == (None, "n/a")
    assert compare.ratio(sf, Headline(None, "/s")) == (None, "n/a")
    assert compare.ratio(sf, Headline(0, "/s")) == (None, "n/a")


def test_cells_and_numbers() -> None:
    assert compare.fmt_num(28000) == "28 000" and compare.fmt_num(1234567.8) == "1 234 568"
    assert (
        compare.fmt_num(310.4) == "310"
        and compare.fmt_num(12.5) == "12.5"
        and compare.fmt_num(0.634) == "0.63"
    )
    assert compare.fmt_num(12.0) == "12"
    assert compare.headline_cell(Headline(28000, "/s")) == "28 000/s"
    assert compare.headline_cell(Headline(500, "/s", True)) == "≥ 500/s"
    assert compare.headline_cell(Headline(310.2, "MB/s")) == "310 MB/s"
    assert compare.headline_cell(Headline(None, "NOTIFY/s", note="x lost")) == "x lost"
    assert compare.headline_cell(None) == "–"
    assert compare.ratio_cell(1.4, "") == "1.40×"
    assert compare.ratio_cell(1.4, "≥") == "≥ 1.40×"
    assert compare.ratio_cell(1.0, "both lower bounds") == "1.00× (both lower bounds)"
    assert compare.ratio_cell(None, "n/a") == "n/a"


# --- step rows -----------------------------------------------------------------------------------


def test_step_rows_tagged_and_cut_steps_marked() -> None:
    rows = [step(8000, 7900, True, warm_up=True), step(8000, 7950, True), step(12000, 11800, True)]
    out = compare.step_rows("register", "kamailio", rows, [16000, 20000])
    assert [r["status"] for r in out] == ["run", "run", "run", "skipped (deadline)", "skipped (deadline)"]
    assert all(r["scenario"] == "register" and r["server"] == "kamailio" for r in out)
    assert out[3]["offered"] == 16000 and out[3]["achieved"] is None and not out[3]["passed"]
    assert set(compare.STEP_FIELDS) <= set(out[0])


def test_step_rows_no_skipped_rows_after_the_knee() -> None:
    """Once a step failed, the cut rates would never have run: nothing is marked skipped."""
    rows = [step(8000, 7900, True, warm_up=True), step(8000, 5000, False)]
    out = compare.step_rows("register", "simplefast", rows, [12000])
    assert [r["status"] for r in out] == ["run", "run"]
    assert compare.step_rows("register", "simplefast", [], [8000]) == []


# --- fan-out timeline ----------------------------------------------------------------------------

LOG = b"""watcher 1: start
notify|1|1|first|2026-12-07\t10:00:00.000000\t1000.000000
notify|2|1|first|2026-12-07\t10:00:00.000000\t1000.100000
notify|1|2|active|2026-12-07\t10:00:01.000000\t1001.000000
notify|2|2|active|2026-12-07\t10:00:01.000000\t1001.250000
notify|1|3|active|2026-12-07\t10:00:01.000000\t1001.900000
notify|1|4|terminated|2026-12-07\t10:00:01.000000\t1002.000000
notify|1|5|final|2026-12-07\t10:00:09.000000\t1009.000000
notify|2|3|active|garbage
notify|2|3|act
"""


def test_parse_notify_times() -> None:
    times = compare.parse_notify_times(LOG.splitlines(keepends=True))
    assert times == [1001.0, 1001.25, 1001.9, 1002.0]  # first, final and broken lines left out


def test_delivery_series() -> None:
    s = compare.delivery_series([1001.0, 1001.25, 1001.9, 1002.0], t0=1000.5, bins=10)
    assert s["bin_s"] == 0.2  # span 1.5 s / 10 bins -> 0.15 -> 0.2
    assert s["cumulative"][-1] == 4 and s["cumulative"] == sorted(s["cumulative"])
    assert len(s["t"]) == len(s["per_s"]) == len(s["cumulative"]) == 8
    assert s["t"][-1] == pytest.approx(1.6)
    assert sum(s["per_s"]) * s["bin_s"] == pytest.approx(4)
    assert compare.delivery_series([], 0.0)["t"] == []
    # a NOTIFY stamped before t0 (clock granularity) counts in the first bin
    assert compare.delivery_series([999.99, 1000.5], 1000.0, bins=5)["cumulative"][0] == 1


def test_nice_bin() -> None:
    assert compare.nice_bin(0.15) == 0.2
    assert compare.nice_bin(0.2) == 0.2
    assert compare.nice_bin(0.26) == 0.5
    assert compare.nice_bin(0.7) == 1.0
    assert compare.nice_bin(0.0) == 0.01
    assert compare.nice_bin(3.0) == 5.0


def test_fanout_logs_dir() -> None:
    out = "no NOTIFY lost: every watcher got 52.\nSIPp logs kept in /tmp/sf-fanout-abc123\n"
    assert compare.fanout_logs_dir(out) == Path("/tmp/sf-fanout-abc123")
    assert compare.fanout_logs_dir("numbers written to x.json\n") is None


# --- the report ----------------------------------------------------------------------------------


def steps_run(
    server: str, rows: list[dict[str, Any]], status: str = "ok", cut: bool = False
) -> dict[str, Any]:
    return {"scenario": "register", "server": server, "kind": "steps", "status": status,
            "command": f"steps {server}", "cut_by_deadline": cut,
            "steps": compare.step_rows("register", server, rows, [40000] if cut else [])}  # fmt: skip


def sample_runs() -> list[dict[str, Any]]:
    sf = [step(12000, 11900, True, warm_up=True), step(12000, 11950, True), step(28000, 27000, True),
          step(32000, 25000, False)]  # fmt: skip
    kam = [step(12000, 11900, True, warm_up=True), step(12000, 11950, True), step(20000, 19000, True),
           step(24000, 15000, False, failed=300)]  # fmt: skip
    fan = {"watchers": 1000, "publishes": 51, "watcher_procs": 2, "notify_per_s": 21728.0, "notifies_lost": 0,
           "notifies_expected": 52000, "notifies_received": 52000, "server_cpu_fanout_s": 2.0,
           "stop_reason": "all NOTIFYs in", "t0": 1000.0}  # fmt: skip
    kfan = {**fan, "watcher_procs": 1, "notify_per_s": 14682.0}
    msrp = {"sessions": 1, "mib_per_session": 100, "chunk": 8192, "mb_per_s": 310.0, "chunks_per_s": 37800.0,
            "server_cpu_s_per_gb": 3.2}  # fmt: skip
    series = compare.delivery_series([1000.5, 1001.0, 1002.0], 1000.0)
    return [
        steps_run("simplefast", sf),
        steps_run("kamailio", kam),
        {"scenario": "fanout-1k", "server": "simplefast", "kind": "fanout", "status": "ok", "result": fan,
         "delivery": series},
        {"scenario": "fanout-1k", "server": "kamailio", "kind": "fanout", "status": "ok", "result": kfan,
         "delivery": series},
        {"scenario": "msrp-8k", "server": "simplefast", "kind": "msrp", "status": "ok", "result": msrp},
        {"scenario": "msrp-8k", "server": "kamailio", "kind": "msrp", "status": "skipped (deadline)"},
    ]  # fmt: skip


def meta(kamailio: bool = True) -> dict[str, Any]:
    return {
        "date": "2026-12-07", "started_utc": "2026-12-07 10:00:00", "finished_utc": "2026-12-07 10:25:00",
        "command": "bench/compare.py",
        "options": {"quick": False, "only": [], "kamailio": kamailio, "persist": False, "budget_s": 1680.0},
        "versions": {"simplefast": "abc1234 (0.1.0.dev0)", "kamailio": "version: kamailio 5.6.3",
                     "sipp": "SIPp v3.6.1", "python": "3.11.7 (CPython)", "kernel": "Linux 6.1"},
        "machine": {"hostname": "box", "cpu_model": "AMD EPYC", "cores": 2, "ram_gib": 23.5,
                    "loadavg_start": "0.5 0.4 0.3"},
        "files": {"plots": ["/x/2026-12-07-box-steps.png"], "plot_notes": []},
    }  # fmt: skip


def scen(*names: str) -> list[Any]:
    return compare.select_scenarios(list(names))


def test_assemble_report_schema() -> None:
    report = compare.assemble_report(meta(), sample_runs(), scen("register", "fanout-1k", "msrp-8k"))
    json.dumps(report)  # JSON all the way down
    assert report["schema"] == compare.SCHEMA
    assert report["versions"]["kamailio"].startswith("version: kamailio")
    assert len(report["steps"]) == 8 and {r["server"] for r in report["steps"]} == {"simplefast", "kamailio"}
    for r in report["steps"]:
        assert {"scenario", "server", "offered", "achieved", "failed", "retrans", "server_cpu", "sipp_cpu",
                "rss_mib", "status"} <= set(r)  # fmt: skip
    assert [f["server"] for f in report["fanout"]] == ["simplefast", "kamailio"]
    assert report["fanout"][0]["delivery"]["cumulative"][-1] == 3
    assert [m["status"] for m in report["msrp"]] == ["ok", "skipped (deadline)"]
    assert [r["status"] for r in report["runs"]].count("ok") == 5
    heads = {h["scenario"]: h for h in report["headlines"]}
    assert (
        heads["register"]["simplefast"]["value"] == 28000 and heads["register"]["kamailio"]["value"] == 20000
    )
    assert heads["register"]["ratio"] == pytest.approx(1.4) and heads["register"]["ratio_qualifier"] == ""
    assert heads["fanout-1k"]["ratio"] == pytest.approx(21728 / 14682)
    assert heads["msrp-8k"]["kamailio"] is None and heads["msrp-8k"]["ratio"] is None


def test_markdown_report() -> None:
    report = compare.assemble_report(meta(), sample_runs(), scen("register", "fanout-1k", "msrp-8k"))
    md = compare.markdown_report(report)
    assert "| REGISTER, new AOR per call | highest sustained rate | 28 000/s | 20 000/s | 1.40× |" in md
    assert (
        "| fan-out, 1 000 watchers × 51 PUBLISHes | NOTIFY/s, none lost "
        "| 21 728 NOTIFY/s | 14 682 NOTIFY/s | 1.48× |" in md
    )
    assert "| MSRP relay, 1 × 100 MiB in 8 KiB chunks | MB/s relayed | 310 MB/s | – | n/a |" in md
    assert "- msrp-8k / kamailio: skipped (deadline)" in md
    assert "| kamailio | 24 000 | 15000 | 300 |" in md  # the failing step is in the steps table
    assert "![2026-12-07-box-steps](2026-12-07-box-steps.png)" in md
    assert (
        "| fanout-1k | simplefast | 1 000 × 51 (2) | 21 728 | 52 000 / 52 000 | 0 | 38 µs | all NOTIFYs in |"
        in md
    )
    assert "steps simplefast" in md  # the commands


def test_labels_show_the_sizes_that_ran() -> None:
    """--quick runs smaller fan-outs and transfers: the rows say which."""
    fan1k = next(sc for sc in compare.SCENARIOS if sc.name == "fanout-1k")
    assert compare.label_for(fan1k, fan1k.full) == "fan-out, 1 000 watchers × 51 PUBLISHes"
    assert compare.label_for(fan1k, fan1k.quick) == "fan-out, 100 watchers × 3 PUBLISHes"
    quick = {**meta(), "options": {**meta()["options"], "quick": True}}
    report = compare.assemble_report(quick, sample_runs(), scen("register", "msrp-8k"))
    assert [h["label"] for h in report["headlines"]] == [
        "REGISTER, new AOR per call",
        "MSRP relay, 1 × 1 MiB in 8 KiB chunks",
    ]
    assert "quick (smoke sizes, not figures to quote)" in compare.markdown_report(report)


def test_markdown_report_without_kamailio() -> None:
    runs = [r for r in sample_runs() if r["server"] == "simplefast"]
    report = compare.assemble_report(meta(kamailio=False), runs, scen("register"))
    md = compare.markdown_report(report)
    assert "| 28 000/s | not run (--no-kamailio) | n/a |" in md
    assert report["headlines"][0]["kamailio"] is None


def test_report_of_cut_and_stopped_runs() -> None:
    rows = [step(12000, 11900, True, warm_up=True), step(12000, 11950, True), step(36000, 35000, True)]
    runs = [
        steps_run("simplefast", rows, cut=True),
        steps_run("kamailio", rows, status="stopped at the deadline"),
    ]
    report = compare.assemble_report(meta(), runs, scen("register"))
    h = report["headlines"][0]
    assert h["simplefast"]["lower_bound"] and h["simplefast"]["note"] == "time share reached"
    assert h["kamailio"]["note"] == "time share reached"  # stopped: the deadline, not the plan, ended it
    assert h["ratio_qualifier"] == "both lower bounds"
    md = compare.markdown_report(report)
    assert "| simplefast | 40 000 | | | | | | | skipped (deadline) |" in md
    assert "- register / kamailio: stopped at the deadline" in md
    assert "- register / simplefast: steps cut by its time share" in md


# --- plot data -----------------------------------------------------------------------------------


def test_steps_plot_data() -> None:
    report = compare.assemble_report(meta(), sample_runs(), scen("register"))
    d = compare.steps_plot_data(report["steps"], "register")
    assert d["simplefast"] == {"offered": [12000, 28000, 32000], "achieved": [11950, 27000, 25000],
                               "passed": [True, True, False]}  # fmt: skip
    assert compare.steps_plot_data(report["steps"], "message") == {}


def test_fanout_plot_data() -> None:
    report = compare.assemble_report(meta(), sample_runs(), scen("fanout-1k"))
    d = compare.fanout_plot_data(report["fanout"], "fanout-1k")
    assert d["simplefast"]["expected"] == 51000 and d["kamailio"]["notify_per_s"] == 14682.0
    assert d["simplefast"]["delivery"]["cumulative"][-1] == 3
    no_times = [{**f, "delivery": None} for f in report["fanout"]]
    assert compare.fanout_plot_data(no_times, "fanout-1k")["kamailio"]["delivery"] is None


def test_write_plots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    report = compare.assemble_report(meta(), sample_runs(), scen("register", "fanout-1k"))
    files, notes = compare.write_plots(report, tmp_path, "stem")
    assert [Path(f).name for f in files] == ["stem-steps.png", "stem-fanout.png"]
    assert all(Path(f).read_bytes().startswith(b"\x89PNG") for f in files)
    assert notes == []
    report["fanout"][1]["delivery"] = None  # one server without per-NOTIFY times: bars
    _, notes = compare.write_plots(report, tmp_path, "stem2")
    assert notes and "bars" in notes[0]


# --- machine, versions, installs -----------------------------------------------------------------


def test_machine_parsers_and_stem() -> None:
    assert compare.cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n") == "AMD EPYC 7B13"
    assert compare.cpu_model("") == "?"
    assert compare.mem_total_bytes("MemTotal:       24683780 kB\nMemFree: 1 kB\n") == 24683780 << 10
    assert compare.mem_total_bytes("") is None
    assert compare.result_stem(dt.date(2026, 12, 7), "box-1.lan") == "2026-12-07-box-1.lan"
    assert compare.result_stem(dt.date(2026, 12, 7), "a b/c") == "2026-12-07-a-b-c"


SHA = "0123456789abcdef0123456789abcdef01234567"


def test_git_rev_from_files(tmp_path: Path) -> None:
    git = tmp_path / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    assert compare.git_rev_from_files(tmp_path) is None  # no such branch yet
    (git / "packed-refs").write_text(f"# pack-refs with: peeled\n{SHA} refs/heads/main\n")
    assert compare.git_rev_from_files(tmp_path) == "0123456"
    (git / "refs" / "heads" / "main").write_text("f" * 40 + "\n")
    assert compare.git_rev_from_files(tmp_path) == "fffffff"  # a loose ref wins
    (git / "HEAD").write_text(SHA + "\n")  # detached
    assert compare.git_rev_from_files(tmp_path) == "0123456"
    assert compare.git_rev_from_files(tmp_path / "nowhere") is None


def test_git_rev_from_files_worktree(tmp_path: Path) -> None:
    main = tmp_path / "main" / ".git"
    wt = main / "worktrees" / "wt"
    wt.mkdir(parents=True)
    (main / "refs" / "heads").mkdir(parents=True)
    (main / "refs" / "heads" / "topic").write_text(SHA + "\n")
    (wt / "HEAD").write_text("ref: refs/heads/topic\n")
    (wt / "commondir").write_text("../..\n")
    checkout = tmp_path / "wt"
    checkout.mkdir()
    (checkout / ".git").write_text(f"gitdir: {wt}\n")
    assert compare.git_rev_from_files(checkout) == "0123456"


def test_missing_packages() -> None:
    def nothing(_: object) -> bool:
        return False

    def everything(_: object) -> bool:
        return True

    assert compare.missing_packages(False, nothing, nothing) == ["sip-tester"]
    assert compare.missing_packages(True, nothing, nothing) == [
        "sip-tester", "kamailio", "kamailio-presence-modules", "kamailio-sqlite-modules", "sqlite3",
    ]  # fmt: skip
    assert compare.missing_packages(True, everything, everything) == []
    no_presence = compare.missing_packages(
        True, everything, lambda p: p.name not in ("presence.so", "presence_xml.so")
    )
    assert no_presence == ["kamailio-presence-modules"]
