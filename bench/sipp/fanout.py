"""Fan-out runner: N watchers of one presentity, P PUBLISHes to it, how fast do the N x P NOTIFYs arrive.

    .venv/bin/python bench/sipp/fanout.py --watchers 1000                 # starts simplefast (2 workers)
    # an already running server (Kamailio: bench/peers/kamailio, CHILDREN=2 ./run.sh):
    P=$(cat /tmp/kamailio-bench/kamailio.pid)
    .venv/bin/python bench/sipp/fanout.py --watchers 1000 --target 127.0.0.1:5070 \\
        --service bench.local --server-pids "$P,$(pgrep -P $P | paste -sd,)"

1. One SIPp runs watcher.xml N times (-r RATE, -l N, all calls alive at once) on its own port,
   every watcher subscribing to the same fresh presentity (-key pres fan<pid><time>); its idle
   time (-recv_timeout) covers the set-up and the publishes. With -trace_logs each watcher
   writes one line per NOTIFY it takes (call number, CSeq, Subscription-State, wall clock in us).
   With --watcher-procs K the N watchers are split over K such SIPps (N/K each, RATE/K each, every
   one on its own port with its own logs), so that one SIPp thread is not what bounds the NOTIFY/s;
   everything below is summed over the K (a watcher is a (SIPp, call number) pair).
2. When all N have their first NOTIFY (bounded wait), t0 is taken and one SIPp runs
   publisher.xml P times back to back (-l 1, -r 10000): one publication, modified P - 1 times,
   so every PUBLISH is a new state and must give each watcher one NOTIFY.
3. The runner waits until every watcher has 1 + P distinct NOTIFYs (by CSeq), or the publisher
   is done and no NOTIFY came for --quiet seconds, or --fanout-timeout passed.
   NOTIFY/s = N x P / (time the last NOTIFY was received - t0).
4. Then the watchers idle out, un-SUBSCRIBE (200 + terminated NOTIFY) and the SIPps exit
   (bounded wait); their failed calls, retransmissions and error logs are reported.
Everything runs on 127.0.0.1; every SIPp run is bounded by -m and -timeout ... -timeout_error.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True  # no __pycache__ next to the scenarios
from steps import children, cpu_and_rss, describe_run, start_simplefast  # noqa: E402

BUFF = str(8 << 20)


def free_udp_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(int(s.getsockname()[1]))
    finally:
        for s in socks:
            s.close()
    return ports


class Child:
    """A SIPp process reaped with wait4, so its CPU time (rusage) is known."""

    def __init__(self, cmd: list[str], name: str, out: Path) -> None:
        self.cmd, self.name = cmd, name
        self.out = open(out, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.started = time.time()
        self.rc: int | None = None
        self.ended = 0.0
        self.cpu = 0.0

    def poll(self) -> bool:
        """True once the process has exited."""
        if self.rc is not None:
            return True
        pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
        if pid == 0:
            return False
        self.rc = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.rc
        self.ended = time.time()
        self.cpu = usage.ru_utime + usage.ru_stime
        self.out.close()
        return True

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.poll():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def cpu_now(self) -> float:
        return self.cpu if self.rc is not None else cpu_and_rss([self.proc.pid])[0]

    def kill(self) -> None:
        if self.rc is None:
            print(f"killing {self.name} SIPp (pid {self.proc.pid})", flush=True)
            try:
                self.proc.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.wait(10)


class LogWatch:
    """Cheap progress on a growing SIPp log: counts marker strings in the new bytes (no parsing)."""

    def __init__(self, path: Path, *markers: bytes) -> None:
        self.path, self.markers = path, markers
        self.counts = dict.fromkeys(markers, 0)
        self.pos = 0
        self.tail = b""
        self.changed = time.monotonic()

    def poll(self) -> dict[bytes, int]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return self.counts
        if data:
            self.pos += len(data)
            data = self.tail + data
            cut = data.rfind(b"\n") + 1
            self.tail = data[cut:]
            for m in self.markers:
                self.counts[m] += data.count(m, 0, cut)
            self.changed = time.monotonic()
        return self.counts


class Completion:
    """Incremental: how many watchers have all their NOTIFYs (distinct CSeqs, the final one excluded).
    Reads only the log's new complete lines at each update, so the checks stay cheap during the run."""

    def __init__(self, path: Path, need: int) -> None:
        self.path, self.need = path, need
        self.pos = 0
        self.tail = b""
        self.cseqs: dict[bytes, set[bytes]] = {}
        self.complete = 0

    def update(self) -> int:
        with open(self.path, "rb") as f:
            f.seek(self.pos)
            data = f.read()
        self.pos += len(data)
        data = self.tail + data
        cut = data.rfind(b"\n") + 1
        self.tail = data[cut:]
        for raw in data[:cut].split(b"\n"):
            if not raw.startswith(b"notify|"):
                continue
            parts = raw.split(b"|", 4)
            if len(parts) < 5 or parts[3] == b"final":
                continue
            got = self.cseqs.setdefault(parts[1], set())
            if parts[2] not in got:
                got.add(parts[2])
                if len(got) == self.need:
                    self.complete += 1
        return self.complete


def parse_watchers(path: Path, until: float | None = None) -> dict[str, Any]:
    """Per watcher: the distinct CSeqs of the NOTIFYs before the un-SUBSCRIBE, and the time of the last.

    Only complete lines; with ``until`` only NOTIFYs taken at or before that wall-clock time."""
    cseqs: dict[int, set[int]] = {}
    lines = dups = finals = terminated = 0
    last_ts, last_call = 0.0, 0
    states: Counter[str] = Counter()
    with open(path, "rb") as f:
        data = f.read()
    data = data[: data.rfind(b"\n") + 1]
    for raw in data.split(b"\n"):
        if not raw.startswith(b"notify|"):
            continue
        try:
            _, call, cs, state, stamp = raw.decode().split("|", 4)
            ts = float(stamp.rsplit("\t", 1)[1])
            c, q = int(call), int(cs)
        except (ValueError, IndexError):
            continue
        if until is not None and ts > until:
            continue
        if state == "final":
            finals += 1
            continue
        lines += 1
        states[state] += 1
        if state == "terminated":
            terminated += 1
        got = cseqs.setdefault(c, set())
        if q in got:
            dups += 1
            continue
        got.add(q)
        if ts > last_ts:
            last_ts, last_call = ts, c
    return {
        "cseqs": cseqs,
        "lines": lines,
        "dups": dups,
        "finals": finals,
        "terminated": terminated,
        "last_ts": last_ts,
        "last_call": last_call,
        "states": states,
    }


def parse_publisher(path: Path) -> list[float]:
    out = []
    try:
        for ln in path.read_text().splitlines():
            if ln.startswith("publish|"):
                out.append(float(ln.rsplit("\t", 1)[1]))
    except FileNotFoundError:
        pass
    return sorted(out)


def last_stat(path: Path) -> dict[str, str]:
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f, delimiter=";") if r]
    except FileNotFoundError:
        return {}
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


def stat_summary(st: dict[str, str]) -> str:
    """The non-zero cumulative failure/retransmission counters of a -trace_stat file."""
    keep = []
    for k, v in st.items():
        if not k.endswith("(C)") or k.startswith(
            ("CallRate", "IncomingCall", "OutgoingCall", "TotalCallCreated")
        ):
            continue
        if k.startswith(("SuccessfulCall", "CurrentCall")):
            continue
        try:
            if float(v) != 0:
                keep.append(f"{k[:-3]} {v}")
        except ValueError:
            continue
    return ", ".join(keep) or "none"


STAMP = re.compile(r"\d{4}-\d\d-\d\d\t[\d:.]+\t\d+\.\d+: ")


def error_summary(
    paths: list[Path], expected: re.Pattern[str] | None = None, top: int = 6
) -> tuple[int, int, list[str]]:
    """(events, expected events, the most frequent other kinds with counts) of SIPp -trace_err files,
    summed over the files.

    SIPp writes its events as "DATE<tab>TIME<tab>EPOCH: message", not always ending them with a newline."""
    kinds: Counter[str] = Counter()
    n = exp = 0
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            continue
        for msg in STAMP.split(text)[1:]:
            n += 1
            msg = " ".join(msg.split())
            if expected is not None and expected.search(msg):
                exp += 1
                continue
            kinds[re.sub(r"\d+", "N", msg)[:160]] += 1
    return n, exp, [f"{c} x {k}" for k, c in kinds.most_common(top)]


def screen_summary(path: Path) -> tuple[dict[str, int], list[str]]:
    """From a -trace_screen file: the scenario screen's message table and its totals
    (retransmissions received and sent, unexpected messages, dead-call and out-of-call messages)."""
    tot = {"recv_retrans": 0, "sent_retrans": 0, "unexpected": 0, "dead_call_msgs": 0, "out_of_call_msgs": 0}
    table: list[str] = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return tot, table
    inside = False
    for ln in lines:
        m = re.search(r"(\d+) dead call msg.*?(\d+) out-of-call msg", ln)
        if m and not table:
            tot["dead_call_msgs"], tot["out_of_call_msgs"] = int(m.group(1)), int(m.group(2))
        if "Messages  Retrans" in ln:
            inside = True
            table.append(ln.rstrip())
            continue
        if inside:
            if "<----------" not in ln and "---------->" not in ln:
                break
            table.append(ln.rstrip())
            cols = ln.split("<----------" if "<----------" in ln else "---------->", 1)[1].split()
            if "<----------" in ln:
                tot["recv_retrans"] += int(cols[1])
                if len(cols) > 3:
                    tot["unexpected"] += int(cols[3])
            elif len(cols) > 1 and not ln.split()[0].isdigit():  # requests, not the 200s we re-send
                tot["sent_retrans"] += int(cols[1])
    return tot, table


def sum_stats(stats: list[dict[str, str]]) -> dict[str, str]:
    """The cumulative (C) counters of several -trace_stat rows, summed (one row: returned as is)."""
    if len(stats) == 1:
        return stats[0]
    out: dict[str, str] = {}
    for st in stats:
        for k, v in st.items():
            if not k.endswith("(C)"):
                continue
            try:
                x = float(v)
            except ValueError:
                continue
            tot = float(out.get(k, 0)) + x
            out[k] = str(int(tot)) if tot == int(tot) else f"{tot:g}"
    return out


def merge_watchers(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """parse_watchers of the K watcher SIPps as one result; its cseqs keyed by (SIPp 1..K, call number)
    (call numbers repeat across the SIPps)."""
    out: dict[str, Any] = {
        "cseqs": {},
        "lines": 0,
        "dups": 0,
        "finals": 0,
        "terminated": 0,
        "last_ts": 0.0,
        "last_call": None,
        "states": Counter(),
    }
    for i, part in enumerate(parts, 1):
        out["cseqs"].update({(i, c): got for c, got in part["cseqs"].items()})
        for k in ("lines", "dups", "finals", "terminated"):
            out[k] += part[k]
        out["states"].update(part["states"])
        if part["last_ts"] > out["last_ts"]:
            out["last_ts"], out["last_call"] = part["last_ts"], (i, part["last_call"])
    return out


class WatcherProc:
    """One of the K watcher SIPps: its share of the N watchers and of the rate, its port, its files."""

    def __init__(self, idx: int, k: int, port: int, n: int, rate: float, tmp: Path) -> None:
        self.idx, self.port, self.n, self.rate = idx, port, n, rate
        self.name = "watchers" if k == 1 else f"watchers{idx}"  # K = 1: the file names of before
        self.label = "watcher SIPp" if k == 1 else f"watcher SIPp {idx}"
        self.log = tmp / f"{self.name}_logs.log"
        self.err = tmp / f"{self.name}_errors.log"
        self.stat = tmp / f"{self.name}_stat.csv"
        self.screen = tmp / f"{self.name}_screen.log"
        self.stdout = tmp / f"{self.name}_stdout.txt"
        self.lw = LogWatch(self.log, b"|first|", b"notify|")
        self.child: Child | None = None
        self.cpu0 = self.cpu1 = 0.0

    def rate_arg(self) -> str:
        return str(int(self.rate)) if self.rate == int(self.rate) else f"{self.rate:.6g}"

    def exited(self) -> bool:
        return self.child is not None and self.child.poll()


def udp_counters() -> dict[str, int]:
    """The kernel's UDP counters (/proc/net/snmp, whole host): drops show as RcvbufErrors/SndbufErrors."""
    rows = [ln.split()[1:] for ln in Path("/proc/net/snmp").read_text().splitlines() if ln.startswith("Udp:")]
    return dict(zip(rows[0], map(int, rows[1]), strict=False)) if len(rows) >= 2 else {}


def socket_drops(ports: dict[str, int], rbuf: dict[str, int] | None = None) -> dict[str, int]:
    """Datagrams dropped so far by the UDP sockets bound to each port (``ss -uanm``, skmem d<N>; summed
    over a port's sockets: simplefast's workers share theirs with SO_REUSEPORT). ``rbuf`` gets each
    port's receive buffer size (skmem rb<N>, the largest of its sockets)."""
    out = dict.fromkeys(ports, 0)
    try:
        text = subprocess.run(["ss", "-uanm"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return out
    port = None
    for ln in text.splitlines():
        if "skmem:(" in ln:
            m = re.search(r"\bd(\d+)\)", ln)
            rb = re.search(r"\brb(\d+)", ln)
            for name, p in ports.items():
                if port == p and m:
                    out[name] += int(m.group(1))
                if port == p and rb and rbuf is not None:
                    rbuf[name] = max(rbuf.get(name, 0), int(rb.group(1)))
            continue
        cols = ln.split()
        port = (
            int(cols[3].rsplit(":", 1)[1])
            if len(cols) >= 4 and cols[3].rsplit(":", 1)[-1].isdigit()
            else None
        )
    return out


def udp_delta(a: dict[str, int], b: dict[str, int]) -> str:
    keys = ("InErrors", "RcvbufErrors", "SndbufErrors")
    return ", ".join(f"{k} {b.get(k, 0) - a.get(k, 0)}" for k in keys)


def fmt_cpu(cpu: float, secs: float) -> str:
    return f"{cpu:.2f} s ({cpu / secs:.2f} cores)" if secs > 0 else f"{cpu:.2f} s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--watchers", type=int, required=True, help="N: watchers (SIPp calls of watcher.xml)")
    ap.add_argument("--publishes", type=int, default=51, help="P: PUBLISHes, back to back (default 51)")
    ap.add_argument("--target", help="HOST:PORT of a running server (default: start simplefast)")
    ap.add_argument("--server-pids", default="", help="pids of that server, comma-separated (for CPU/RSS)")
    ap.add_argument("--service", default="example.com", help="domain of the URIs (Kamailio's: bench.local)")
    ap.add_argument("--workers", type=int, default=2, help="simplefast workers when it is started here")
    ap.add_argument("--rate", type=int, default=1000, help="watchers started per second (default 1000)")
    ap.add_argument(
        "--recv-timeout", type=int, default=0, help="watcher idle time in ms (default 15000 + N/rate s)"
    )
    ap.add_argument(
        "--quiet",
        type=float,
        default=5.0,
        help="stop waiting when the publisher is done and no NOTIFY came for this long (s)",
    )
    ap.add_argument(
        "--fanout-timeout",
        type=float,
        default=0.0,
        help="bound on the NOTIFY wait after t0 (s; default 120 + N*P/2000)",
    )
    ap.add_argument(
        "--server-arg",
        action="append",
        default=[],
        dest="server_args",
        metavar="ARG",
        help="extra argument for simplefast: --server-arg=--no-persist",
    )
    ap.add_argument(
        "--watcher-arg",
        action="append",
        default=[],
        dest="watcher_args",
        metavar="ARG",
        help="extra argument for the watchers' SIPp: --watcher-arg=-max_recv_loops --watcher-arg=10000",
    )
    ap.add_argument(
        "--watcher-procs",
        type=int,
        default=1,
        metavar="K",
        help="split the N watchers over K SIPp processes (own port and logs, N/K watchers and RATE/K "
        "each; default 1)",
    )
    ap.add_argument("--json", help="write the numbers to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (SIPp logs) and say where")
    args = ap.parse_args()
    n_w, n_p = args.watchers, args.publishes
    if n_w < 1 or n_p < 1:
        ap.error("--watchers and --publishes must be >= 1")
    k_w = args.watcher_procs
    if not 1 <= k_w <= n_w:
        ap.error("--watcher-procs must be between 1 and --watchers")
    setup_s = n_w / args.rate
    recv_timeout = args.recv_timeout or int(15000 + 1000 * setup_s)
    fanout_timeout = args.fanout_timeout or 120 + n_w * n_p / 2000
    sub_wait = max(5.0, recv_timeout / 1000 - 5)  # the first watcher must not idle out before t0

    describe_run()
    tmp = Path(tempfile.mkdtemp(prefix="sf-fanout-"))
    proc = None
    publisher: Child | None = None
    wps: list[WatcherProc] = []
    if args.target:
        target, pids = args.target, [int(p) for p in args.server_pids.split(",") if p]
        label = f"{args.target} (pids {args.server_pids or '?'})"
    else:
        proc, port = start_simplefast(args.workers, tmp / "data", args.server_args)
        target, pids = f"127.0.0.1:{port}", children(proc.pid)
        label = f"simplefast, {args.workers} workers"
    if not pids:
        print("warning: no --server-pids: no server CPU/RSS figures", flush=True)
    pres = f"fan{os.getpid()}{int(time.time())}"
    *wports, pport = free_udp_ports(k_w + 1)
    for i, wport in enumerate(wports):
        n_i = n_w // k_w + (1 if i < n_w % k_w else 0)
        wps.append(WatcherProc(i + 1, k_w, wport, n_i, args.rate * n_i / n_w, tmp))
    plog = tmp / "publisher_logs.log"
    sipp_timeout = math.ceil(sub_wait + 10 + fanout_timeout + 2 * recv_timeout / 1000 + 60)
    wcmds = [
        ["sipp", "-sf", str(HERE / "watcher.xml"), "-s", args.service, "-key", "pres", pres, target,
         "-i", "127.0.0.1", "-p", str(wp.port), "-m", str(wp.n), "-r", wp.rate_arg(), "-l", str(wp.n),
         "-recv_timeout", str(recv_timeout), "-timeout", f"{sipp_timeout}s", "-timeout_error",
         "-buff_size", BUFF, "-nostdin", "-default_behaviors", "all,-bye",
         "-trace_logs", "-log_file", str(wp.log),
         "-trace_err", "-error_file", str(wp.err),
         "-trace_stat", "-stf", str(wp.stat), "-fd", "3600",
         "-trace_screen", "-screen_file", str(wp.screen),
         *args.watcher_args]
        for wp in wps
    ]  # fmt: skip
    pcmd = ["sipp", "-sf", str(HERE / "publisher.xml"), "-s", args.service, "-key", "pres", pres, target,
            "-i", "127.0.0.1", "-p", str(pport), "-m", str(n_p), "-l", "1", "-r", "10000",
            "-timeout", f"{math.ceil(fanout_timeout + 10)}s", "-timeout_error",
            "-buff_size", BUFF, "-nostdin", "-default_behaviors", "all,-bye",
            "-trace_logs", "-log_file", str(plog),
            "-trace_err", "-error_file", str(tmp / "publisher_errors.log"),
            "-trace_stat", "-stf", str(tmp / "publisher_stat.csv"), "-fd", "3600"]  # fmt: skip
    for wp, wcmd in zip(wps, wcmds, strict=True):
        print("watchers:" if k_w == 1 else f"watchers {wp.idx}/{k_w}:", shlex.join(wcmd), flush=True)
    print("publisher:", shlex.join(pcmd), flush=True)
    res: dict[str, Any] = {
        "server": label,
        "target": target,
        "watchers": n_w,
        "watcher_procs": k_w,
        "watchers_per_proc": [wp.n for wp in wps],
        "publishes": n_p,
        "presentity": pres,
        "rate": args.rate,
        "recv_timeout_ms": recv_timeout,
    }

    def children_of(ws: list[WatcherProc]) -> list[Child]:
        return [wp.child for wp in ws if wp.child is not None]

    try:
        cpu_start, _ = cpu_and_rss(pids)
        udp_start = udp_counters()
        t_start = time.time()
        for wp, wcmd in zip(wps, wcmds, strict=True):
            wp.child = Child(wcmd, wp.label, wp.stdout)

        def first_notifies() -> int:
            return sum(wp.lw.poll()[b"|first|"] for wp in wps)

        def exited() -> list[WatcherProc]:
            return [wp for wp in wps if wp.exited()]

        # all watchers subscribed: N first NOTIFYs (bounded)
        deadline = time.monotonic() + sub_wait
        while first_notifies() < n_w and time.monotonic() < deadline and not exited():
            time.sleep(0.05)
        subscribed = sum(wp.lw.counts[b"|first|"] for wp in wps)
        t_sub = time.time() - t_start
        res.update(subscribed=subscribed, subscribe_s=t_sub)
        print(f"subscribed: {subscribed}/{n_w} watchers got their first NOTIFY in {t_sub:.2f} s", flush=True)
        if exited():
            for wp in exited():
                print(f"{wp.label} exited early with {wp.child.rc if wp.child else '?'}", flush=True)
        elif subscribed < n_w:
            print(
                f"warning: only {subscribed}/{n_w} subscribed after {sub_wait:.0f} s; publishing anyway",
                flush=True,
            )
        time.sleep(0.2)  # the 200s to the last NOTIFYs

        # the publishes
        cpu0, _ = cpu_and_rss(pids)
        udp0 = udp_counters()
        sock_ports = {
            "server": int(target.rsplit(":", 1)[1]),
            **{wp.name: wp.port for wp in wps},
            "publisher": pport,
        }
        drops0 = socket_drops(sock_ports)
        for wp in wps:
            wp.cpu0 = wp.child.cpu_now() if wp.child else 0.0
        wcpu0 = sum(wp.cpu0 for wp in wps)
        t0 = time.time()
        publisher = Child(pcmd, "publisher", tmp / "publisher_stdout.txt")
        expected = n_w * (1 + n_p)
        why = "timeout"
        done = [Completion(wp.log, 1 + n_p) for wp in wps]
        while True:
            time.sleep(0.05)
            got = sum(wp.lw.poll()[b"notify|"] for wp in wps)
            pub_done = publisher.poll()
            now = time.monotonic()
            # parse only once enough lines are in (counting them is cheaper), then incrementally
            if got >= expected and sum(c.update() for c in done) >= n_w:
                why = "all NOTIFYs in"
                break
            if pub_done and now - max(wp.lw.changed for wp in wps) > args.quiet:
                why = f"publisher done, no NOTIFY for {args.quiet:g} s"
                break
            if time.time() - t0 > fanout_timeout:
                why = f"--fanout-timeout {fanout_timeout:.0f} s"
                break
            gone = exited()
            if gone:
                why = ", ".join(f"{wp.label} exited ({wp.child.rc if wp.child else '?'})" for wp in gone)
                break
        t_stop = time.time()
        cpu1, rss1 = cpu_and_rss(pids)
        udp1 = udp_counters()
        rbufs: dict[str, int] = {}
        drops1 = socket_drops(sock_ports, rbufs)
        res["socket_rcvbuf"] = rbufs
        drops: dict[str, int] = {}
        for k in drops1:
            drops[k] = drops1[k] - drops0[k]
            if k_w > 1 and k == wps[-1].name:  # K > 1: the K watcher sockets, then their sum
                drops["watchers_total"] = sum(drops[wp.name] for wp in wps)
        res["socket_drops_fanout"] = drops
        for wp in wps:
            wp.cpu1 = wp.child.cpu_now() if wp.child else 0.0
        wcpu1 = sum(wp.cpu1 for wp in wps)
        if not publisher.wait(max(5.0, fanout_timeout + 15 - (time.time() - t0))):
            publisher.kill()

        fans = [parse_watchers(wp.log, until=t_stop) for wp in wps]
        fan = merge_watchers(fans)
        pub = parse_publisher(plog)
        counts = {
            (wp.idx, c): len(fan["cseqs"].get((wp.idx, c), ())) for wp in wps for c in range(1, wp.n + 1)
        }
        received = sum(counts.values())
        short = {w: k for w, k in counts.items() if k < 1 + n_p}
        lost = sum(1 + n_p - k for k in short.values())
        extra = sum(k - 1 - n_p for k in counts.values() if k > 1 + n_p)
        fan_in = sum(max(0, k - 1) for k in counts.values())  # NOTIFYs after the first
        t_last = fan["last_ts"]
        span = t_last - t0 if t_last > t0 else float("nan")

        def watcher_id(w: tuple[int, int]) -> str:
            """A watcher as printed: its call number (K = 1) or SIPp:call."""
            return str(w[1]) if k_w == 1 else f"{w[0]}:{w[1]}"

        res.update(
            stop_reason=why,
            t0=t0,
            last_notify=t_last,
            last_notify_after_t0_s=span if span == span else None,
            notify_per_s=n_w * n_p / span if span == span else None,
            received_fanout_per_s=fan_in / span if span == span else None,
            notifies_received=received,
            notifies_expected=expected,
            notifies_lost=lost,
            notifies_extra=extra,
            duplicate_notifies=fan["dups"],
            watchers_missing=len(short),
            terminated_by_server=fan["terminated"],
            publish_200s=len(pub),
            publisher_rc=publisher.rc,
            publisher_cpu_s=publisher.cpu,
            publish_first_200_s=pub[0] - t0 if pub else None,
            publish_last_200_s=pub[-1] - t0 if pub else None,
            publisher_wall_s=publisher.ended - t0 if publisher.rc is not None else None,
            drain_after_last_200_s=(t_last - pub[-1]) if pub and t_last else None,
            server_cpu_fanout_s=cpu1 - cpu0,
            fanout_wall_s=t_stop - t0,
            server_rss_mib=rss1 / (1 << 20),
            watcher_sipp_cpu_fanout_s=wcpu1 - wcpu0,
        )

        # the watchers idle out, un-SUBSCRIBE and end (bounded, one deadline for all K)
        print(
            f"fan-out wait ended: {why}; waiting for the watchers to un-SUBSCRIBE (idle {recv_timeout} ms)",
            flush=True,
        )
        deadline = time.monotonic() + recv_timeout / 1000 + 90
        for c in children_of(wps):
            if not c.wait(max(0.0, deadline - time.monotonic())):
                c.kill()
        cpu_end, rss_end = cpu_and_rss(pids)
        udp_end = udp_counters()
        res.update(udp_fanout=udp_delta(udp0, udp1), udp_run=udp_delta(udp_start, udp_end))
        t_end = time.time()
        afters = [parse_watchers(wp.log) for wp in wps]
        after = merge_watchers(afters)
        late = after["lines"] - fan["lines"]
        wsts = [last_stat(wp.stat) for wp in wps]
        wst, pst = sum_stats(wsts), last_stat(tmp / "publisher_stat.csv")
        werr = error_summary([wp.err for wp in wps], re.compile(r"receive timeout|jumping to label"))
        perr = error_summary([tmp / "publisher_errors.log"])
        screens = [screen_summary(wp.screen) for wp in wps]
        scr = {k: sum(s[0][k] for s in screens) for k in screens[0][0]}
        res.update({f"watcher_screen_{k}": v for k, v in scr.items()})
        rcs = [wp.child.rc if wp.child else None for wp in wps]
        wcpu_total = sum(c.cpu for c in children_of(wps))
        res.update(
            watcher_rc=next((rc for rc in rcs if rc != 0), 0),
            watcher_rcs=rcs,
            watcher_calls_ok=int(wst.get("SuccessfulCall(C)", 0) or 0),
            watcher_calls_failed=int(wst.get("FailedCall(C)", 0) or 0),
            watcher_retrans=int(wst.get("Retransmissions(C)", 0) or 0),
            watcher_stat_other=stat_summary(wst),
            watcher_sipp_cpu_s=wcpu_total,
            final_notifies=after["finals"],
            notifies_after_wait=late,
            publisher_calls_ok=int(pst.get("SuccessfulCall(C)", 0) or 0),
            publisher_calls_failed=int(pst.get("FailedCall(C)", 0) or 0),
            publisher_retrans=int(pst.get("Retransmissions(C)", 0) or 0),
            server_cpu_total_s=cpu_end - cpu_start,
            run_wall_s=t_end - t_start,
            server_rss_end_mib=rss_end / (1 << 20),
            watcher_error_lines=werr[0],
            watcher_error_idle_lines=werr[1],
            publisher_error_lines=perr[0],
            publisher_error_kinds=perr[2],  # what a failed PUBLISH got (SIPp's words, numbers as N)
        )
        # per watcher SIPp (K > 1): where the NOTIFYs, losses and CPU went
        detail = []
        for wp, part, st in zip(wps, fans, wsts, strict=True):
            mine = [k for (i, _), k in counts.items() if i == wp.idx]
            detail.append(
                {
                    "proc": wp.idx,
                    "port": wp.port,
                    "watchers": wp.n,
                    "rate": wp.rate,
                    "notifies_received": sum(mine),
                    "notifies_lost": sum(1 + n_p - k for k in mine if k < 1 + n_p),
                    "duplicate_notifies": part["dups"],
                    "last_notify_after_t0_s": part["last_ts"] - t0 if part["last_ts"] > t0 else None,
                    "sipp_cpu_fanout_s": wp.cpu1 - wp.cpu0,
                    "sipp_cpu_s": wp.child.cpu if wp.child else None,
                    "socket_drops_fanout": drops[wp.name],
                    "calls_ok": int(st.get("SuccessfulCall(C)", 0) or 0),
                    "calls_failed": int(st.get("FailedCall(C)", 0) or 0),
                    "rc": wp.child.rc if wp.child else None,
                }
            )
        res["watcher_procs_detail"] = detail

        def f(x: float | None, fmt: str = ".3f", unit: str = " s") -> str:
            return "n/a" if x is None or x != x else f"{x:{fmt}}{unit}"

        pct = 100 * lost / expected
        procs = "1 watcher SIPp" if k_w == 1 else f"{k_w} watcher SIPps"
        print()
        print(
            f"### fan-out: {n_w} watchers ({procs}) x {n_p} PUBLISHes, {label}, target {target}, "
            f"presentity {pres}"
        )
        print()
        print("| | |")
        print("|---|--:|")
        rows = [
            (
                "**NOTIFY/s** (N x P / (last NOTIFY - t0))",
                f(res["notify_per_s"], ",.0f", "") + (f" (not valid: {pct:.1f} % lost)" if lost else ""),
            ),
            ("fan-out NOTIFYs received / (last NOTIFY - t0)", f(res["received_fanout_per_s"], ",.0f", "")),
            ("last NOTIFY received after t0", f(span)),
            ("NOTIFYs received / expected (1 + P per watcher)", f"{received} / {expected}"),
            ("**lost NOTIFYs**", f"{lost} ({pct:.2f} %)"),
            ("watchers missing NOTIFYs", f"{len(short)} of {n_w}"),
            ("extra / duplicate NOTIFYs (same CSeq twice)", f"{extra} / {fan['dups']}"),
            ("subscriptions terminated by the server during the run", str(fan["terminated"])),
            (
                "watcher SIPp processes, K (watchers each)",
                f"{k_w} ({', '.join(str(wp.n) for wp in wps)})",
            ),
            ("watchers subscribed before t0 (time)", f"{subscribed} ({t_sub:.2f} s)"),
            (
                "PUBLISH 200s / P; publisher failed calls, retrans",
                f"{len(pub)} / {n_p}; {res['publisher_calls_failed']}, {res['publisher_retrans']}",
            ),
            (
                "first / last PUBLISH 200 after t0",
                f"{f(res['publish_first_200_s'])} / {f(res['publish_last_200_s'])}",
            ),
            ("publisher SIPp wall time from t0 (start to exit)", f(res["publisher_wall_s"])),
            ("last NOTIFY after the last PUBLISH 200", f(res["drain_after_last_200_s"])),
            ("wait ended by", why),
            ("server CPU, t0 to end of wait", fmt_cpu(cpu1 - cpu0, t_stop - t0)),
            (
                "server CPU, whole run (subscribe, fan-out, un-SUBSCRIBE)",
                fmt_cpu(cpu_end - cpu_start, t_end - t_start),
            ),
            (
                "server RSS after the fan-out / at the end",
                f"{rss1 / (1 << 20):.0f} / {rss_end / (1 << 20):.0f} MiB",
            ),
            (
                f"watcher SIPp CPU{f' (sum of {k_w})' if k_w > 1 else ''}, t0 to end of wait / whole run",
                f"{fmt_cpu(wcpu1 - wcpu0, t_stop - t0)} / {wcpu_total:.2f} s",
            ),
            ("publisher SIPp CPU", f"{publisher.cpu:.2f} s"),
            (
                "watcher calls ok / failed (exit code" + ("s" if k_w > 1 else "") + ")",
                f"{res['watcher_calls_ok']} / {res['watcher_calls_failed']} ({', '.join(map(str, rcs))})",
            ),
            (
                "watcher SIPp retransmissions; other non-zero counters",
                f"{res['watcher_retrans']}; {res['watcher_stat_other']}",
            ),
            ("terminated NOTIFYs after the un-SUBSCRIBE", f"{after['finals']} of {n_w}"),
            ("NOTIFYs taken after the wait ended (not counted above)", str(late)),
            (
                "watcher SIPp: retransmissions received (absorbed) / SUBSCRIBEs it retransmitted",
                f"{scr['recv_retrans']} / {scr['sent_retrans']}",
            ),
            (
                "watcher SIPp: unexpected / dead-call / out-of-call messages",
                f"{scr['unexpected']} / {scr['dead_call_msgs']} / {scr['out_of_call_msgs']}",
            ),
            (
                "watcher error log events: idle timeouts (expected) / others",
                f"{werr[1]} / {werr[0] - werr[1]}",
            ),
            ("publisher error log events", f"{perr[0]}" + (f" ({'; '.join(perr[2])})" if perr[2] else "")),
            ("kernel UDP drops (host), t0 to end of wait", res["udp_fanout"]),
            (
                "datagrams dropped by the sockets (ss skmem d), t0 to end of wait",
                ", ".join(f"{k} {v}" for k, v in res["socket_drops_fanout"].items()),
            ),
            (
                "receive buffers of those sockets (ss skmem rb)",
                ", ".join(f"{k} {v}" for k, v in rbufs.items()) or "n/a",
            ),
            ("kernel UDP drops (host), whole run", res["udp_run"]),
        ]
        if k_w > 1:
            for d in detail:
                rows.append(
                    (
                        f"watcher SIPp {d['proc']} (port {d['port']}): NOTIFYs / lost / dups; last NOTIFY; "
                        "CPU t0 to end of wait / whole run; socket drops; calls ok / failed (exit code)",
                        f"{d['notifies_received']} / {d['notifies_lost']} / {d['duplicate_notifies']}; "
                        f"{f(d['last_notify_after_t0_s'])}; "
                        f"{fmt_cpu(d['sipp_cpu_fanout_s'], t_stop - t0)} / {f(d['sipp_cpu_s'], '.2f')}; "
                        f"{d['socket_drops_fanout']}; {d['calls_ok']} / {d['calls_failed']} ({d['rc']})",
                    )
                )
        for k, v in rows:
            print(f"| {k} | {v} |")
        if short:
            hist = Counter(short.values())
            print()
            print(
                f"**LOST NOTIFYs: {lost} of {expected} ({pct:.2f} %); "
                f"{len(short)} of {n_w} watchers got fewer than {1 + n_p}.**"
            )
            print("NOTIFYs received -> watchers: " + ", ".join(f"{k}: {v}" for k, v in sorted(hist.items())))
            print(
                "watchers (call numbers"
                + ("" if k_w == 1 else " as SIPp:call")
                + ") missing some: "
                + " ".join(map(watcher_id, sorted(short)[:40]))
                + (" ..." if len(short) > 40 else "")
            )
            res["lost_histogram"] = {str(k): v for k, v in sorted(hist.items())}
            # K = 1: call numbers (as before); K > 1: "SIPp:call" strings
            res["watchers_missing_list"] = [w[1] if k_w == 1 else watcher_id(w) for w in sorted(short)]
        else:
            print()
            print(f"no NOTIFY lost: every watcher got {1 + n_p}.")
        for wp, (_, table) in zip(wps, screens, strict=True):
            if table:
                print()
                print(f"{wp.label}" + (f" (port {wp.port})" if k_w > 1 else "") + ", final scenario screen:")
                print("```")
                print("\n".join(table))
                print("```")
        for name, (n, exp, kinds) in (("watchers", werr), ("publisher", perr)):
            if kinds:
                print(f"{name} SIPp error log ({n} lines, {exp} expected idle timeouts), other kinds:")
                for k in kinds:
                    print("    " + k)
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2, sort_keys=True, default=str) + "\n")
            print(f"numbers written to {args.json}")
    finally:
        for c in ([publisher] if publisher is not None else []) + children_of(wps):
            c.kill()
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if args.keep:
            print(f"SIPp logs kept in {tmp}")
        else:
            subprocess.run(["rm", "-rf", str(tmp)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
