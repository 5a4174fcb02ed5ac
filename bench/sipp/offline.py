"""Offline store-and-forward runner: N MESSAGEs to users with no contact are stored by the server,
then the users REGISTER and the server delivers them to a SIPp UAS.

    .venv/bin/python bench/sipp/offline.py --messages 10000          # starts simplefast (2 workers)
    # an already running server (Kamailio with msilo:
    # bench/peers/kamailio, MSILO_DB=text CHILDREN=2 ./run.sh):
    P=$(cat /tmp/kamailio-bench/kamailio.pid)
    .venv/bin/python bench/sipp/offline.py --messages 10000 --target 127.0.0.1:5070 \\
        --service bench.local --server-pids "$P,$(pgrep -P $P | paste -sd,)"

Users are sip:oXXXX_I@SERVICE, I = 1..U (XXXX random per run, so runs against a long-lived
server do not mix), U = N / --per-user (default 1 message per user).
1. Store: one SIPp runs message_offline_uac.xml N times at --rate R/s (users and message
   numbers from an injection file; for K messages per user the file lists message 1 of every
   user, then message 2 ...). Each MESSAGE must be answered 202 (stored; 200 is counted apart).
   Reported: stored/s = 202s / wall time of the SIPp run, failures and their status codes, and
   the server's CPU per stored message (--server-pids, or the simplefast processes started here).
2. Deliver: a SIPp UAS (message_uas.xml, 200 to every MESSAGE) on its own port, then one SIPp
   runs register_contact.xml U times at --register-rate R2/s: every user registers a contact
   at the UAS's port, and the server sends that user's stored MESSAGEs there.
   t0 = the first REGISTER sent (SIPp's own clock, -trace_shortmsg). The runner follows the UAS's
   -trace_shortmsg log (one line per message it takes) until the UAS has one MESSAGE per stored
   message (distinct Call-IDs), or the REGISTERs are done and no MESSAGE came for --quiet s, or
   --deliver-timeout passed. delivered/s = MESSAGEs / (the last one's arrival - t0).
   Every MESSAGE's Call-ID counts once; a repeated Call-ID is a retransmission by the server.
   With the content check (default; --no-content-check turns the UAS's -trace_msg off) every
   MESSAGE's body identifies the stored message (user and number): lost, duplicated (the same
   message under two Call-IDs) and out-of-order deliveries are counted, and From, To, Date,
   Content-Type and the body are compared with what was sent.
3. Check: the users REGISTER again (same contact); no MESSAGE may arrive within --quiet s after
   that round (the store must be empty). When the server was started here, the rows left in the
   tables of DATA_DIR/offline.sqlite3 are counted too.
Everything runs on 127.0.0.1; every SIPp run is bounded by -m and -timeout, every wait by a deadline.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import secrets
import shlex
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True  # no __pycache__ next to the scenarios
from fanout import (  # noqa: E402
    STAMP,
    Child,
    fmt_cpu,
    free_udp_ports,
    last_stat,
    socket_drops,
    stat_summary,
    udp_counters,
    udp_delta,
)
from steps import children, cpu_and_rss, describe_run, start_simplefast  # noqa: E402

BUFF = str(8 << 20)
FILLER = ": the quick brown fox jumps over the lazy dog, 0123456789 abcdefghijklmno"  # as in the UAC
BODY = re.compile(rb"offline #(\d+) for ([^:\s]+)" + re.escape(FILLER.encode()))
LOCAL_SERVICE = "example.com"  # the --domain of start_simplefast


class ShortLog:
    """Incremental reader of a SIPp -trace_shortmsg file:
    DATE<tab>TIME<tab>EPOCH<tab>S|R<tab>CALL-ID<tab>CSeq:N METHOD<tab>FIRST LINE.
    Keeps the received MESSAGEs: first arrival per Call-ID, repeats (retransmissions)."""

    def __init__(self, path: Path, users: set[str]) -> None:
        self.path, self.users = path, users
        self.pos = 0
        self.tail = b""
        self.first: dict[str, tuple[float, str]] = {}  # Call-ID -> (epoch, R-URI user)
        self.mine = 0  # distinct Call-IDs for this run's users
        self.repeats = 0
        self.foreign = 0  # MESSAGEs for users not of this run
        self.changed = time.monotonic()
        self.sent_first = 0.0  # first and last line we sent (the registrar's REGISTERs)
        self.sent_last = 0.0
        self.recv_last = 0.0

    def poll(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return len(self.first)
        if not data:
            return len(self.first)
        self.pos += len(data)
        data = self.tail + data
        cut = data.rfind(b"\n") + 1
        self.tail = data[cut:]
        for raw in data[:cut].split(b"\n"):
            cols = raw.split(b"\t")
            if len(cols) < 7:
                continue
            try:
                ts = float(cols[2])
            except ValueError:
                continue
            if cols[3] == b"S":
                self.sent_first = self.sent_first or ts
                self.sent_last = ts
                continue
            self.recv_last = ts
            line = cols[6]
            if not line.startswith(b"MESSAGE "):
                continue
            self.changed = time.monotonic()
            cid = cols[4].decode(errors="replace")
            if cid in self.first:
                self.repeats += 1
                continue
            m = re.match(rb"MESSAGE sips?:([^@;>\s]+)@", line)
            user = m.group(1).decode(errors="replace") if m else ""
            if user in self.users:
                self.mine += 1
            else:
                self.foreign += 1
            self.first[cid] = (ts, user)
        return len(self.first)

    def ours(self, since: float = 0.0) -> list[tuple[float, str, str]]:
        """(arrival, user, Call-ID) of the distinct MESSAGEs for this run's users, in arrival order."""
        return sorted((ts, u, c) for c, (ts, u) in self.first.items() if u in self.users and ts >= since)


def parse_messages(path: Path, service: str) -> list[dict[str, Any]]:
    """The MESSAGEs a SIPp UAS received, from its -trace_msg file, in arrival order."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for block in (b"\n" + data).split(b"\n----------------------------------------------- ")[1:]:
        head, _, msg = block.partition(b"\n\n")
        if b"message received" not in head or not msg.startswith(b"MESSAGE "):
            continue
        msg = msg.replace(b"\r\n", b"\n")
        hdrs, _, body = msg.partition(b"\n\n")
        lines = hdrs.split(b"\n")

        def hdr(name: bytes, short: bytes = b"", lines: list[bytes] = lines) -> str | None:
            for ln in lines[1:]:
                k, _, v = ln.partition(b":")
                if k.strip().lower() in (name, short):
                    return v.strip().decode(errors="replace")
            return None

        m = BODY.search(body)
        ruri = lines[0].split(b" ")[1].decode(errors="replace") if b" " in lines[0] else ""
        rm = re.match(r"sips?:([^@;>]+)@", ruri)
        frm, to = hdr(b"from", b"f") or "", hdr(b"to", b"t") or ""
        tm = re.search(r"<?sips?:([^@;>]+)@([^;>\s]+)", to)
        to_aor = (tm.group(1), tm.group(2)) if tm else None
        out.append(
            {
                "call_id": hdr(b"call-id", b"i") or "",
                "ruri_user": rm.group(1) if rm else "",
                "user": m.group(2).decode() if m else None,
                "seq": int(m.group(1)) if m else None,
                "body_ok": bool(m) and body.strip() == m.group(0).strip(),
                "from_ok": f"sip:offsender@{service}" in frm,
                "to_ok": bool(m) and to_aor == (m.group(2).decode(), service),
                "date": hdr(b"date") is not None,
                "ctype_ok": (hdr(b"content-type", b"c") or "").lower().startswith("text/plain"),
            }
        )
    return out


def counts_row(pattern: str) -> dict[str, int]:
    """The last row of a SIPp -trace_counts file (the cwd is the run's folder)."""
    files = sorted(Path(".").glob(pattern))
    if not files:
        return {}
    rows = [r.split(";") for r in files[0].read_text().splitlines() if r.strip()]
    if len(rows) < 2:
        return {}
    out = {}
    for k, v in zip(rows[0], rows[-1], strict=False):
        try:
            out[k] = int(v)
        except ValueError:
            continue
    return out


def error_codes(pattern: str) -> Counter[str]:
    """Status codes of the unexpected responses (-trace_error_codes: comma-separated per period)."""
    codes: Counter[str] = Counter()
    for f in Path(".").glob(pattern):
        for ln in f.read_text(errors="replace").splitlines():
            codes.update(c for c in ln.split(";")[-1].split(",") if c.strip().isdigit())
    return codes


def failed_calls(path: Path, pid: int) -> set[int]:
    """Call numbers named in a SIPp error log (its Call-IDs are CALL_NUMBER-PID@IP)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return set()
    return {int(c) for c in re.findall(rf"\b(\d+)-{pid}@", text)}


def error_kinds(path: Path, top: int = 4) -> tuple[int, list[str]]:
    """Events of a SIPp -trace_err file and the most frequent kinds (the text before the quoted
    message, with every token holding a digit (numbers, Call-IDs, addresses) replaced by N)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return 0, []
    kinds: Counter[str] = Counter()
    for msg in STAMP.split(text)[1:]:
        head = " ".join(msg.split("'", 1)[0].split())
        kinds[re.sub(r"[\w.@:-]*\d[\w.@:-]*", "N", head)[:140]] += 1
    return sum(kinds.values()), [f"{c} x {k}" for k, c in kinds.most_common(top)]


def uas_screen(path: Path) -> dict[str, int]:
    """From the UAS's -trace_screen file: MESSAGEs taken and retransmissions absorbed."""
    try:
        for ln in path.read_text(errors="replace").splitlines():
            if "----------> MESSAGE" in ln:
                cols = ln.split("MESSAGE", 1)[1].split()
                return {"messages": int(cols[0]), "retrans": int(cols[1])}
    except (FileNotFoundError, ValueError, IndexError):
        pass
    return {}


def store_rows(db: Path) -> dict[str, int] | None:
    """Rows of every table of the server's offline store (read-only), or None without one."""
    if not db.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            return {n: con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}
        finally:
            con.close()
    except sqlite3.Error as e:
        return {f"error: {e}": -1}


def sipp_stats(stat: Path) -> dict[str, Any]:
    st = last_stat(stat)
    return {
        "ok": int(st.get("SuccessfulCall(C)", 0) or 0),
        "failed": int(st.get("FailedCall(C)", 0) or 0),
        "retrans": int(st.get("Retransmissions(C)", 0) or 0),
        "other": stat_summary(st) if st else "no stat file",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=10000, help="N: MESSAGEs stored (default 10000)")
    ap.add_argument("--per-user", type=int, default=1, metavar="K", help="messages per user (N/K users)")
    ap.add_argument("--rate", type=int, default=2000, help="MESSAGEs sent per second in stage 1 (2000)")
    ap.add_argument("--register-rate", type=int, default=1000, help="REGISTERs per second in stage 2 (1000)")
    ap.add_argument("--target", help="HOST:PORT of a running server (default: start simplefast)")
    ap.add_argument("--server-pids", default="", help="pids of that server, comma-separated (for CPU/RSS)")
    ap.add_argument("--service", default=LOCAL_SERVICE, help="domain of the URIs (Kamailio's: bench.local)")
    ap.add_argument("--workers", type=int, default=2, help="simplefast workers when it is started here")
    ap.add_argument("--quiet", type=float, default=3.0, help="no-MESSAGE time that ends a wait (s, 3)")
    ap.add_argument(
        "--deliver-timeout", type=float, default=0.0, help="bound on stage 2's wait (s; default 60 + 2 N/R2)"
    )
    ap.add_argument(
        "--no-content-check", action="store_true", help="no -trace_msg on the UAS: counts by Call-ID only"
    )
    ap.add_argument("--server-arg", action="append", default=[], dest="server_args", metavar="ARG",
                    help="extra argument for simplefast: --server-arg=--offline-per-user=200")  # fmt: skip
    ap.add_argument("--json", help="write the numbers to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (SIPp logs) and say where")
    args = ap.parse_args()
    n, k = args.messages, args.per_user
    if n < 1 or k < 1 or n % k:
        ap.error("--messages must be >= 1 and a multiple of --per-user")
    if min(args.rate, args.register_rate) < 1:
        ap.error("rates must be >= 1")
    if not args.target and args.service != LOCAL_SERVICE:
        ap.error(f"the simplefast started here serves {LOCAL_SERVICE}; --service is for --target")
    n_users = n // k
    json_path = Path(args.json).resolve() if args.json else None
    store_s = n / args.rate
    reg_s = n_users / args.register_rate
    deliver_timeout = args.deliver_timeout or 60 + 2 * n / args.register_rate

    describe_run()
    tmp = Path(tempfile.mkdtemp(prefix="sf-offline-"))
    os.chdir(tmp)  # SIPp writes its -trace_counts and -trace_error_codes files into its cwd
    proc = None
    data_dir = tmp / "data"
    if args.target:
        target, pids = args.target, [int(p) for p in args.server_pids.split(",") if p]
        label = f"{args.target} (pids {args.server_pids or '?'})"
    else:
        proc, port = start_simplefast(args.workers, data_dir, args.server_args)
        target, pids = f"127.0.0.1:{port}", children(proc.pid)
        label = f"simplefast, {args.workers} workers"
    if not pids:
        print("warning: no --server-pids: no server CPU figures", flush=True)

    prefix = f"o{secrets.token_hex(2)}_"
    users = [f"{prefix}{i}" for i in range(1, n_users + 1)]
    msgs_csv, users_csv = tmp / "messages.csv", tmp / "users.csv"
    msgs_csv.write_text("SEQUENTIAL\n" + "".join(f"{u};{s};\n" for s in range(1, k + 1) for u in users))
    users_csv.write_text("SEQUENTIAL\n" + "".join(f"{u};1;\n" for u in users))
    uac_port, reg_port, reg2_port, uas_port = free_udp_ports(4)
    common = ["-s", args.service, target, "-i", "127.0.0.1", "-buff_size", BUFF, "-nostdin",
              "-default_behaviors", "all,-bye", "-timeout_error"]  # fmt: skip

    def reg_cmd(port: int, name: str, timeout: int) -> list[str]:
        return ["sipp", "-sf", str(HERE / "register_contact.xml"), *common, "-p", str(port),
                "-inf", str(users_csv), "-key", "contact_port", str(uas_port),
                "-m", str(n_users), "-r", str(args.register_rate), "-l", str(max(args.register_rate, 10)),
                "-timeout", f"{timeout}s",
                "-trace_stat", "-stf", str(tmp / f"{name}_stat.csv"), "-fd", "1",
                "-trace_err", "-error_file", str(tmp / f"{name}_errors.log"), "-trace_error_codes",
                "-trace_shortmsg", "-shortmessage_file", str(tmp / f"{name}_short.log")]  # fmt: skip

    uac_timeout = math.ceil(2 * store_s + 30)
    uac_cmd = ["sipp", "-sf", str(HERE / "message_offline_uac.xml"), *common, "-p", str(uac_port),
               "-inf", str(msgs_csv), "-m", str(n), "-r", str(args.rate), "-l", str(max(args.rate, 10)),
               "-timeout", f"{uac_timeout}s",
               "-trace_stat", "-stf", str(tmp / "store_stat.csv"), "-fd", "1",
               "-trace_err", "-error_file", str(tmp / "store_errors.log"),
               "-trace_counts", "-trace_error_codes"]  # fmt: skip
    reg_timeout = math.ceil(2 * reg_s + 30)
    uas_timeout = math.ceil(deliver_timeout + 2 * reg_timeout + 4 * args.quiet + 60)
    uas_cmd = ["sipp", "-sf", str(HERE / "message_uas.xml"), "-i", "127.0.0.1", "-p", str(uas_port),
               "-buff_size", BUFF, "-nostdin", "-m", str(3 * n + 1000), "-timeout", f"{uas_timeout}s",
               "-trace_shortmsg", "-shortmessage_file", str(tmp / "uas_short.log"),
               "-trace_stat", "-stf", str(tmp / "uas_stat.csv"), "-fd", "1",
               "-trace_err", "-error_file", str(tmp / "uas_errors.log"),
               "-trace_screen", "-screen_file", str(tmp / "uas_screen.log")]  # fmt: skip
    if not args.no_content_check:
        uas_cmd += ["-trace_msg", "-message_file", str(tmp / "uas_messages.log")]
    res: dict[str, Any] = {
        "server": label,
        "target": target,
        "service": args.service,
        "messages": n,
        "per_user": k,
        "users": n_users,
        "user_prefix": prefix,
        "rate": args.rate,
        "register_rate": args.register_rate,
        "content_check": not args.no_content_check,
    }
    uas: Child | None = None
    running: list[Child] = []
    try:
        # ---- stage 1: store
        print("store:", shlex.join(uac_cmd), flush=True)
        cpu0, _ = cpu_and_rss(pids)
        t1 = time.monotonic()
        uac = Child(uac_cmd, "store", tmp / "store_stdout.txt")
        running.append(uac)
        if not uac.wait(uac_timeout + 30):
            uac.kill()
        wall1 = time.monotonic() - t1
        cpu1, rss1 = cpu_and_rss(pids)
        st1 = sipp_stats(tmp / "store_stat.csv")
        cnt = counts_row(f"message_offline_uac_{uac.proc.pid}_counts.csv")
        n202, n200 = cnt.get("2_202_Recv", 0), cnt.get("3_200_Recv", 0)
        codes1 = error_codes(f"message_offline_uac_{uac.proc.pid}_error_codes.*")
        err1 = error_kinds(tmp / "store_errors.log")
        # the messages not stored: call number C sent line C of the file (message (C-1)//U + 1
        # of user (C-1) % U + 1)
        failed_nums = failed_calls(tmp / "store_errors.log", uac.proc.pid)
        not_stored = {(users[(c - 1) % n_users], (c - 1) // n_users + 1) for c in failed_nums if 0 < c <= n}
        res["store"] = {
            "rc": uac.rc,
            "wall_s": wall1,
            "accepted_202": n202,
            "ok_200": n200,
            "calls_ok": st1["ok"],
            "calls_failed": st1["failed"],
            "retrans": st1["retrans"],
            "other_counters": st1["other"],
            "unexpected_codes": dict(codes1),
            "stored_per_s": n202 / wall1,
            "server_cpu_s": cpu1 - cpu0,
            "server_cpu_per_stored_us": 1e6 * (cpu1 - cpu0) / n202 if n202 and pids else None,
            "server_rss_mib": rss1 / (1 << 20),
            "sipp_cpu_s": uac.cpu,
            "error_kinds": err1[1],
            "failed_calls_identified": len(not_stored),
        }
        print(
            f"stored: {n202} x 202, {n200} x 200, {st1['failed']} failed"
            + (f" ({', '.join(f'{c} x {v}' for c, v in codes1.most_common())})" if codes1 else "")
            + f" in {wall1:.2f} s",
            flush=True,
        )
        expected = n202 + n200

        # ---- stage 2: deliver
        uas = Child(uas_cmd, "UAS", tmp / "uas_stdout.txt")
        running.append(uas)
        print("UAS:", shlex.join(uas_cmd), flush=True)
        time.sleep(0.5)
        if uas.poll():
            raise SystemExit(f"the UAS SIPp exited at once ({uas.rc}): see {tmp / 'uas_stdout.txt'}")
        cmd2 = reg_cmd(reg_port, "register", reg_timeout)
        print("register:", shlex.join(cmd2), flush=True)
        uas_log = ShortLog(tmp / "uas_short.log", set(users))
        reg_log = ShortLog(tmp / "register_short.log", set())
        sock_ports = {"server": int(target.rsplit(":", 1)[1]), "uas": uas_port}
        drops0, udp0 = socket_drops(sock_ports), udp_counters()
        cpu2, _ = cpu_and_rss(pids)
        uas_cpu2 = uas.cpu_now()
        t_launch = time.time()
        reg = Child(cmd2, "register", tmp / "register_stdout.txt")
        running.append(reg)
        why = "timeout"
        reg_done_at = 0.0
        while True:
            time.sleep(0.05)
            uas_log.poll()
            if reg.poll() and not reg_done_at:
                reg_done_at = time.monotonic()
            if expected and uas_log.mine >= expected:
                why = "all stored MESSAGEs delivered"
                break
            if reg_done_at and time.monotonic() - max(uas_log.changed, reg_done_at) > args.quiet:
                why = f"REGISTERs done, no MESSAGE for {args.quiet:g} s"
                break
            if time.time() - t_launch > deliver_timeout:
                why = f"--deliver-timeout {deliver_timeout:.0f} s"
                break
            if uas.poll():
                why = f"UAS exited ({uas.rc})"
                break
        t_stop = time.time()
        cpu3, rss3 = cpu_and_rss(pids)
        uas_cpu3 = uas.cpu_now()
        if not reg.wait(max(5.0, reg_timeout + 30 - (time.time() - t_launch))):
            reg.kill()
        reg_log.poll()
        time.sleep(1.0)  # late copies: retransmissions, duplicates
        uas_log.poll()
        drops1, udp1 = socket_drops(sock_ports), udp_counters()
        t0 = reg_log.sent_first or t_launch
        delivered = uas_log.ours()
        first_n = delivered[:expected] if expected else delivered
        t_last = first_n[-1][0] if first_n else float("nan")
        span = t_last - t0 if first_n else float("nan")
        per_user = Counter(u for _, u, _ in delivered)
        st2 = sipp_stats(tmp / "register_stat.csv")
        codes2 = error_codes(f"register_contact_{reg.proc.pid}_error_codes.*")
        res["deliver"] = {
            "stop_reason": why,
            "t0": t0,
            "register_rc": reg.rc,
            "registered_ok": st2["ok"],
            "register_failed": st2["failed"],
            "register_retrans": st2["retrans"],
            "register_unexpected_codes": dict(codes2),
            "register_last_sent_after_t0_s": reg_log.sent_last - t0 if reg_log.sent_last else None,
            "register_last_answer_after_t0_s": reg_log.recv_last - t0 if reg_log.recv_last else None,
            "expected": expected,
            "received_distinct_call_ids": len(delivered),
            "first_message_after_t0_s": delivered[0][0] - t0 if delivered else None,
            "last_message_after_t0_s": span if span == span else None,
            "delivered_per_s": len(first_n) / span if span == span and span > 0 else None,
            "server_retransmissions_received": uas_log.repeats,
            "foreign_messages": uas_log.foreign,
            "users_without_message": n_users - len(per_user),
            "users_with_more_than_k": sum(1 for c in per_user.values() if c > k),
            "server_cpu_s": cpu3 - cpu2,
            "server_cpu_per_delivered_us": 1e6 * (cpu3 - cpu2) / len(first_n) if first_n and pids else None,
            "server_rss_mib": rss3 / (1 << 20),
            "uas_cpu_s": uas_cpu3 - uas_cpu2,
            "register_sipp_cpu_s": reg.cpu,
            "socket_drops": {x: drops1[x] - drops0[x] for x in drops1},
            "udp": udp_delta(udp0, udp1),
        }
        dl = res["deliver"]
        print(f"deliver: {why}; {len(delivered)} MESSAGEs at the UAS", flush=True)

        # ---- stage 3: the store is empty
        mark = time.time()
        seen = len(uas_log.first)
        cmd3 = reg_cmd(reg2_port, "register2", reg_timeout)
        print("check:", shlex.join(cmd3), flush=True)
        reg2 = Child(cmd3, "register2", tmp / "register2_stdout.txt")
        running.append(reg2)
        if not reg2.wait(reg_timeout + 30):
            reg2.kill()
        end = time.monotonic() + args.quiet
        while time.monotonic() < end:
            time.sleep(0.1)
            uas_log.poll()
        st3 = sipp_stats(tmp / "register2_stat.csv")
        again = len(uas_log.first) - seen
        rows = store_rows(data_dir / "offline.sqlite3") if proc is not None else None
        res["check"] = {
            "registered_ok": st3["ok"],
            "register_failed": st3["failed"],
            "messages_after_second_register": again,
            "messages_after_second_register_ours": len(uas_log.ours(since=mark)),
            "store_rows": rows,
        }

        # the UAS: smooth exit (SIGUSR1: no new calls, the running ones end after their 4 s pause)
        try:
            uas.proc.send_signal(signal.SIGUSR1)
        except ProcessLookupError:
            pass
        if not uas.wait(15):
            uas.kill()
        scr = uas_screen(tmp / "uas_screen.log")
        st_u = sipp_stats(tmp / "uas_stat.csv")
        err_u = error_kinds(tmp / "uas_errors.log")
        res["uas"] = {
            "rc": uas.rc,
            "messages_taken": scr.get("messages"),
            "retrans_absorbed": scr.get("retrans"),
            "calls_ok": st_u["ok"],
            "calls_failed": st_u["failed"],
            "error_lines": err_u[0],
            "error_kinds": err_u[1],
            "cpu_s": uas.cpu,
        }

        # content: every delivered message identified by its body
        content: dict[str, Any] | None = None
        if not args.no_content_check:
            # distinct Call-IDs in arrival order; stage 2 = arrived before the second REGISTER round
            arrived = {c: ts for c, (ts, _) in uas_log.first.items()}
            by_cid: dict[str, dict[str, Any]] = {}
            for m in parse_messages(tmp / "uas_messages.log", args.service):
                if m["user"] in uas_log.users or m["ruri_user"] in uas_log.users:
                    by_cid.setdefault(m["call_id"], m)
            uniq = list(by_cid.values())
            in2 = [m for m in uniq if arrived.get(m["call_id"], 0.0) < mark]
            in3 = [m for m in uniq if arrived.get(m["call_id"], 0.0) >= mark]
            ident2 = Counter((m["user"], m["seq"]) for m in in2 if m["user"] is not None)
            order_bad = inversions = 0
            seqs: dict[str, list[int]] = {}
            for m in in2:
                if m["user"] is not None:
                    seqs.setdefault(m["user"], []).append(m["seq"])
            for got in seqs.values():
                firsts = list(dict.fromkeys(got))
                order_bad += firsts != sorted(firsts)
                inversions += sum(1 for a, b in pairwise(firsts) if b < a)
            want = {(u, i) for i in range(1, k + 1) for u in users} - not_stored
            have = set(ident2) & want
            again3 = sum(1 for m in in3 if (m["user"], m["seq"]) in ident2)
            content = {
                "messages_parsed": len(uniq),
                "stage2_messages": len(in2),
                "distinct_stored_messages": len(have),
                "lost": len(want - have),
                "delivered_though_not_accepted": sum(1 for key in ident2 if key in not_stored),
                "duplicated": sum(c - 1 for c in ident2.values() if c > 1),
                "users_out_of_order": order_bad,
                "order_inversions": inversions,
                "check_redelivered": again3,
                "check_first_delivery": len(in3) - again3,
                # on every MESSAGE parsed (both stages)
                "unidentified_bodies": sum(1 for m in uniq if m["user"] is None),
                "ruri_user_mismatch": sum(1 for m in uniq if m["user"] and m["ruri_user"] != m["user"]),
                "body_changed": sum(1 for m in uniq if not m["body_ok"]),
                "from_changed": sum(1 for m in uniq if not m["from_ok"]),
                "to_changed": sum(1 for m in uniq if not m["to_ok"]),
                "without_date": sum(1 for m in uniq if not m["date"]),
                "content_type_changed": sum(1 for m in uniq if not m["ctype_ok"]),
            }
        res["content"] = content

        # ---- report
        s = res["store"]

        def f(x: float | None, fmt: str = ".3f", unit: str = " s") -> str:
            return "n/a" if x is None or x != x else f"{x:{fmt}}{unit}"

        def codes(c: dict[str, int]) -> str:
            return ", ".join(f"{v} x {code}" for code, v in sorted(c.items())) or "none"

        lost_ids = content["lost"] if content else max(0, expected - len(first_n))
        print()
        print(
            f"### offline store-and-forward: {n} MESSAGEs to {n_users} users ({k} each), {label}, "
            f"target {target}, users {prefix}1..{n_users}@{args.service}"
        )
        print()
        print("| | |")
        print("|---|--:|")
        rows_out = [
            ("**stored/s** (202s / SIPp wall time)", f"{s['stored_per_s']:,.0f} (offered {args.rate}/s)"),
            ("stage 1: 202 / 200 / failed (unexpected answers)",
             f"{n202} / {n200} / {s['calls_failed']} ({codes(s['unexpected_codes'])})"),
            ("stage 1: SIPp retransmissions; other non-zero counters",
             f"{s['retrans']}; {s['other_counters']}"),
            ("stage 1: failed MESSAGEs identified in the error log (left out of the lost count)",
             f"{len(not_stored)} of {s['calls_failed']}"),
            ("stage 1: wall time; server CPU", f"{wall1:.2f} s; {fmt_cpu(s['server_cpu_s'], wall1)}"),
            ("**server CPU per stored MESSAGE**", f(s["server_cpu_per_stored_us"], ".0f", " µs")),
            ("**delivered/s** (stored MESSAGEs / (last MESSAGE at the UAS - first REGISTER))",
             f(dl["delivered_per_s"], ",.0f", "")
             + (f" (not valid: {lost_ids} not delivered)" if lost_ids else "")),
            ("MESSAGEs at the UAS (distinct Call-IDs) / stored", f"{len(delivered)} / {expected}"),
            ("first / last MESSAGE after the first REGISTER",
             f"{f(dl['first_message_after_t0_s'])} / {f(dl['last_message_after_t0_s'])}"),
            ("last REGISTER sent / answered after the first",
             f"{f(dl['register_last_sent_after_t0_s'])} / {f(dl['register_last_answer_after_t0_s'])}"),
            (f"REGISTERs ok / failed / retransmitted (offered {args.register_rate}/s)",
             f"{dl['registered_ok']} / {dl['register_failed']} / {dl['register_retrans']}"
             + (f" ({codes(dl['register_unexpected_codes'])})" if dl["register_unexpected_codes"] else "")),
            ("wait ended by", why),
            ("users with no MESSAGE / with more than K",
             f"{dl['users_without_message']} / {dl['users_with_more_than_k']}"),
            ("MESSAGEs retransmitted by the server (same Call-ID again)", str(uas_log.repeats)),
            ("server CPU, first REGISTER to end of wait; per delivered MESSAGE (REGISTER included)",
             f"{fmt_cpu(dl['server_cpu_s'], t_stop - t_launch)}; "
             f"{f(dl['server_cpu_per_delivered_us'], '.0f', ' µs')}"),
            ("UAS SIPp CPU, same interval", fmt_cpu(dl["uas_cpu_s"], t_stop - t_launch)),
            ("socket drops (ss skmem d), stage 2; kernel UDP (host)",
             ", ".join(f"{x} {v}" for x, v in dl["socket_drops"].items()) + f"; {dl['udp']}"),
        ]  # fmt: skip
        if content:
            rows_out += [
                ("**lost** / duplicated stored MESSAGEs by the end of stage 2 (by body)",
                 f"{content['lost']} / {content['duplicated']}"),
                ("delivered though stage 1 failed (e.g. stored, but the 202 was lost)",
                 str(content["delivered_though_not_accepted"])),
                ("users whose MESSAGEs came out of order; inversions (a message after a later one)",
                 f"{content['users_out_of_order']}; {content['order_inversions']}"),
                ("changed (all MESSAGEs): body / From / To / Content-Type; without Date",
                 f"{content['body_changed']} / {content['from_changed']} / {content['to_changed']} / "
                 f"{content['content_type_changed']}; {content['without_date']}"),
                ("R-URI user differs from the body's user; unidentified bodies",
                 f"{content['ruri_user_mismatch']}; {content['unidentified_bodies']}"),
            ]  # fmt: skip
        rows_out += [
            ("**check**: MESSAGEs after a second REGISTER round (store empty: 0)",
             f"{again} (REGISTERs ok {st3['ok']}, failed {st3['failed']})"
             + (f"; by body: {content['check_redelivered']} delivered before, "
                f"{content['check_first_delivery']} first time" if content and again else "")),
            ("rows left in offline.sqlite3",
             "n/a" if rows is None else ", ".join(f"{t} {c}" for t, c in rows.items()) or "no tables"),
            ("UAS: MESSAGEs taken / retransmissions absorbed / failed calls / error lines",
             f"{scr.get('messages', '?')} / {scr.get('retrans', '?')} / {st_u['failed']} / {err_u[0]}"),
        ]  # fmt: skip
        for key, v in rows_out:
            print(f"| {key} | {v} |")
        for name, kinds in (("store", s["error_kinds"]), ("UAS", err_u[1])):
            if kinds:
                print(f"{name} SIPp error log, most frequent kinds:")
                for x in kinds:
                    print("    " + x)
        if json_path:
            json_path.write_text(json.dumps(res, indent=2, sort_keys=True, default=str) + "\n")
            print(f"numbers written to {json_path}")
    finally:
        for c in running:
            c.kill()
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        os.chdir("/")
        if args.keep:
            print(f"SIPp logs kept in {tmp}")
        else:
            subprocess.run(["rm", "-rf", str(tmp)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
