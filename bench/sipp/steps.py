"""Step-load runner: raise the SIPp rate in steps until one fails, report the highest sustained rate.

    .venv/bin/python bench/sipp/steps.py register                       # starts simplefast (2 workers)
    # an already running server (Kamailio: bench/peers/kamailio):
    .venv/bin/python bench/sipp/steps.py register --target 127.0.0.1:5070 --server-pids 1234,1235

A step offers ``rate`` calls/s for ``--seconds`` (3) seconds (``-m rate*seconds``).
It fails when failed calls > 0.1 %, SIPp retransmissions > 0.1 % of calls, or
the achieved rate < 90 % of the offered one (the criteria of the Kamailio
figures in bench/peers/kamailio/). A warm-up step at ``--start`` comes first.
Reported per step: achieved rate, failures, retransmissions, CPU seconds per
second of the server's processes and of SIPp, the server's resident memory (shared memory counted once).
Everything runs on 127.0.0.1; every step is bounded by -m and -timeout.
With ``--pin``, one worker runs on CPU 0 and SIPp on CPU 1 (``taskset``), so the knee is the
server's own and SIPp can offer twice it (bench/README.md "Overload at twice the knee").
With ``--json FILE`` the step rows and the result also go to FILE, rewritten after every
step (``"complete": false`` until the last one; bench/compare.py reads it).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SCENARIOS = {
    "register": ["-sf", str(HERE / "register.xml")],
    # MESSAGE relayed to a SIPp UAS registered as bob (started and registered by this script)
    "message": ["-sf", str(HERE / "message_uac.xml"), "-key", "to", "bob"],
    # initial PUBLISH (~550-byte PIDF) to a new presentity per call
    "publish": ["-sf", str(HERE / "publish.xml")],
    # initial PUBLISH, 3 modifies, refresh, remove: 6 transactions per call (rates are calls)
    "publish_modify": ["-sf", str(HERE / "publish_modify.xml")],
    # SUBSCRIBE -> NOTIFY -> un-SUBSCRIBE -> NOTIFY, presentity alice (needs no publication)
    "subscribe": ["-sf", str(HERE / "subscribe_cycle.xml"), "-key", "pres", "alice"],
}
TICK = os.sysconf("SC_CLK_TCK")


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    """CPU seconds (user + system) of each pid that still exists."""
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def cpu_and_rss(pids: list[int]) -> tuple[float, int]:
    """CPU seconds (user + system) summed over pids that still exist, and their resident
    memory: private pages (RssAnon + RssFile) summed, shared memory (RssShmem: simplefast's
    tables, Kamailio's shm pool) counted once, as the largest any of them maps."""
    cpu, private, shared = 0.0, 0, 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            continue
        cpu += (int(fields[11]) + int(fields[12])) / TICK
        kb = {ln.split(":")[0]: int(ln.split()[1]) for ln in status if ln.startswith("Rss")}
        private += (kb.get("RssAnon", 0) + kb.get("RssFile", 0)) << 10
        shared = max(shared, kb.get("RssShmem", 0) << 10)
    return cpu, private + shared


def describe_run() -> None:
    """The command, SIPp's version and the machine: the head of every runner's output."""
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(
        "sipp:",
        subprocess.run(["sipp", "-v"], capture_output=True, text=True).stdout.strip().splitlines()[0:1],
    )
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?"
    )
    print(f"machine: {platform.node()} {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}")


def start_simplefast(
    workers: int, data_dir: Path, extra: list[str], cpus: str | None = None, capacity: int = 1_000_000
) -> tuple[subprocess.Popen[bytes], int]:
    """``capacity``: of the registrar's and the presentities' tables. The REGISTER and
    PUBLISH scenarios make a new AOR or presentity per call, kept for their Expires (3600 s):
    a sweep must not fill them (a full table answers 500; that is not the knee)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    cmd = [sys.executable, "-m", "simplefast", "serve", "--listen", f"udp:127.0.0.1:{port}", "--domain",
           "example.com", "--workers", str(workers), "--no-auth", "--data-dir", str(data_dir),
           "--location-capacity", str(capacity), "--presentity-capacity", str(capacity),
           "--presentity-state-bytes", "2048",
           "--min-notify-interval", "0", "--log-level", "warning",
           *extra]  # fmt: skip
    if cpus is not None:
        cmd = ["taskset", "-c", cpus, *cmd]
    print("server:", shlex.join(cmd), flush=True)
    proc = subprocess.Popen(cmd, cwd=REPO)
    wait_ready(port)
    return proc, port


def wait_ready(port: int, timeout: float = 60.0) -> None:
    """Until the server answers OPTIONS to its own address with 200 (the readiness probe)."""
    deadline = time.monotonic() + timeout
    n = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            n += 1
            s.sendto(
                (f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
                 f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKr{n};rport\r\n"
                 f"Max-Forwards: 70\r\nFrom: <sip:p@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1:{port}>\r\n"
                 f"Call-ID: ready{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode(),
                ("127.0.0.1", port),
            )  # fmt: skip
            try:
                if s.recv(65535).startswith(b"SIP/2.0 200"):
                    return
            except TimeoutError:
                continue
    raise SystemExit(f"server on port {port} not ready after {timeout} s")


def start_uas(target: str, domain: str, tmp: Path) -> subprocess.Popen[bytes]:
    """A SIPp UAS answering MESSAGE with 200, registered at the server as bob@domain."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    uas = subprocess.Popen(
        ["sipp", "-sf", str(HERE / "message_uas.xml"), "-i", "127.0.0.1", "-p", str(port), "-nostdin",
         "-buff_size", str(8 << 20)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    host, _, tport = target.rpartition(":")
    reg = (
        f"REGISTER sip:{domain} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKstepsreg;rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:bob@{domain}>;tag=s\r\nTo: <sip:bob@{domain}>\r\n"
        f"Call-ID: steps-reg\r\nCSeq: 1 REGISTER\r\nContact: <sip:bob@127.0.0.1:{port}>;expires=3600\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2.0)
        s.sendto(reg, (host, int(tport)))
        answer = s.recv(65535)
    if not answer.startswith(b"SIP/2.0 200"):
        raise SystemExit(f"registering the UAS failed: {answer[:80]!r}")
    print(f"UAS: sipp on 127.0.0.1:{port}, registered as bob@{domain}", flush=True)
    return uas


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [pid, *map(int, out)]


def run_step(
    args: argparse.Namespace, target: str, rate: int, pids: list[int], tmp: Path
) -> dict[str, float]:
    calls = rate * args.seconds
    stat = tmp / f"step{rate}.csv"
    cmd = ["sipp", *SCENARIOS[args.scenario], "-s", args.service, target,
           "-m", str(calls), "-r", str(rate), "-l", str(rate),
           "-timeout", str(args.seconds * 4 + 10), "-nostdin", "-trace_stat", "-stf", str(stat), "-fd", "1",
           "-buff_size", str(8 << 20)]  # fmt: skip
    if args.pin:
        cmd = ["taskset", "-c", "1", *cmd]
    cpu0, _ = cpu_and_rss(pids)
    each0 = cpu_by_pid(pids)
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    cpu1, rss = cpu_and_rss(pids)
    each1 = cpu_by_pid(pids)
    with open(stat, newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    last = dict(zip(rows[0], rows[-1], strict=False))
    ok, failed = int(last["SuccessfulCall(C)"]), int(last["FailedCall(C)"])
    retrans = int(last["Retransmissions(C)"])
    return {
        "offered": rate, "achieved": ok / wall, "ok": ok, "failed": failed, "retrans": retrans,
        "server_cpu": (cpu1 - cpu0) / wall, "sipp_cpu": (usage.ru_utime + usage.ru_stime) / wall,
        "rss_mib": rss / (1 << 20), "calls": calls,
        # CPU seconds per second of each server process (the supervisor or main one first)
        "server_cpu_by_pid": {str(p): round((each1[p] - each0.get(p, 0.0)) / wall, 3) for p in each1},
    }  # fmt: skip


def passed(r: dict[str, float]) -> bool:
    return (r["failed"] <= 0.001 * r["calls"] and r["retrans"] <= 0.001 * r["calls"]
            and r["achieved"] >= 0.9 * r["offered"])  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("--target", help="HOST:PORT of a running server (default: start simplefast)")
    ap.add_argument("--server-pids", default="", help="pids of that server, comma-separated (for CPU/RSS)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--service", default="example.com", help="domain in the scenario (Kamailio's: bench.local)"
    )
    ap.add_argument("--start", type=int, default=4000)
    ap.add_argument("--step", type=int, default=2000)
    ap.add_argument("--max", type=int, default=40000)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--server-arg", action="append", default=[], dest="server_args", metavar="ARG",
                    help="extra argument for simplefast: --server-arg=--no-persist")  # fmt: skip
    ap.add_argument("--json", metavar="FILE", help="also write the step rows and the result to FILE")
    ap.add_argument("--pin", action="store_true",
                    help="one simplefast worker on CPU 0 and SIPp on CPU 1 (taskset): the server's own "
                         "knee, with no CPU shared with SIPp (overload runs)")  # fmt: skip
    args = ap.parse_args()
    if args.pin:
        if args.target or args.scenario == "message":
            raise SystemExit("--pin starts simplefast itself and has no room for the MESSAGE UAS")
        args.workers = 1
    describe_run()
    tmp = Path(tempfile.mkdtemp(prefix="sf-steps-"))
    proc = None
    rates = [args.start, *range(args.start, args.max + 1, args.step)]  # the first is the warm-up
    if args.target:
        target, pids = args.target, [int(p) for p in args.server_pids.split(",") if p]
    else:
        # every call the sweep may make, and a tenth more (the tables' capacity, see start_simplefast)
        capacity = max(1_000_000, sum(rates) * args.seconds * 11 // 10)
        proc, port = start_simplefast(args.workers, tmp / "data", args.server_args, "0" if args.pin else None,
                                      capacity)  # fmt: skip
        target, pids = f"127.0.0.1:{port}", children(proc.pid)
    uas = None
    if args.scenario == "message":
        uas = start_uas(target, args.service, tmp)
    best = 0
    rows: list[dict[str, object]] = []

    def dump(complete: bool) -> None:
        if not args.json:
            return
        out = {"scenario": args.scenario, "target": target, "service": args.service, "start": args.start,
               "step": args.step, "max": args.max, "seconds": args.seconds,
               "command": shlex.join([sys.executable, *sys.argv]), "steps": rows,
               "highest_sustained": best, "complete": complete}  # fmt: skip
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")

    try:
        print("| offered/s | achieved/s | failed | retrans | server CPU | SIPp CPU | server RSS MiB | pass |")
        print("|--:|--:|--:|--:|--:|--:|--:|:-:|")
        for i, rate in enumerate(rates):
            r = run_step(args, target, rate, pids, tmp)
            ok = passed(r)
            tag = "warm-up" if i == 0 else ("yes" if ok else "no")
            cells = [rate, f"{r['achieved']:.0f}", f"{r['failed']:.0f}", f"{r['retrans']:.0f}",
                     f"{r['server_cpu']:.2f}", f"{r['sipp_cpu']:.2f}", f"{r['rss_mib']:.0f}",
                     tag]  # fmt: skip
            print("| " + " | ".join(map(str, cells)) + " |", flush=True)
            if i > 0 and ok:
                best = rate
            rows.append({**r, "warm_up": i == 0, "passed": ok})
            dump(False)
            if i == 0:
                continue
            if not ok:
                break
            time.sleep(1.0)
    finally:
        if uas is not None:
            uas.terminate()
            uas.wait(30)
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    dump(True)
    print(f"highest sustained rate: {best}/s ({args.scenario}, target {target})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
