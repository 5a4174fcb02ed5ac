"""Prometheus metrics on the real server (2 workers, loopback): scraped during a SIPp REGISTER
load and after it, the counters move by what the load implies (requests and 2xx by SIPp's
count plus its retransmissions, the location table's fill by the AORs registered); a SIPp
subscribe cycle moves the SUBSCRIBE, NOTIFY and subscription counters by its call count and
leaves no subscription held; a worker killed with SIGKILL is counted as restarted and its
counts stay in the totals (server/metrics.py)."""

from __future__ import annotations

import csv
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from liveserver import free_udp_port, start_server
from prometheus_client.parser import text_string_to_metric_families

from simplefast.testing import REPO


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    for _ in range(50):  # the metrics process may still be starting
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).close()
            break
        except OSError:
            time.sleep(0.1)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(m: dict, name: str, **labels: str) -> float:
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


def settled(port: int, name: str, want: float, **labels: str) -> dict:
    """Scrape until ``name`` reaches ``want`` (the workers sync twice a second), at most 5 s."""
    deadline = time.monotonic() + 5
    while True:
        m = scrape(port)
        if value(m, name, **labels) >= want or time.monotonic() > deadline:
            return m
        time.sleep(0.2)


def sipp_popen(scenario: str, port: int, calls: int, rate: int, stat: Path, *extra: str) -> subprocess.Popen:
    cmd = [
        "sipp", "-sf", str(REPO / "bench" / "sipp" / scenario), "-s", "example.com", f"127.0.0.1:{port}",
        "-m", str(calls), "-r", str(rate), "-l", "1000", "-timeout", "60", "-nostdin",
        "-trace_stat", "-stf", str(stat), "-fd", "1", *extra,
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=stat.parent)


def last_row(stat: Path) -> dict[str, str]:
    with open(stat, newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    return dict(zip(rows[0], rows[-1], strict=False))


def test_counters_follow_sipp_load(tmp_path: Path) -> None:
    mport = free_udp_port()
    srv = start_server(
        tmp_path, extra=("--listen", f"metrics:127.0.0.1:{mport}", "--min-notify-interval", "0")
    )
    try:
        before = scrape(mport)
        assert value(before, "simplefast_table_capacity", table="location") > 0
        assert value(before, "simplefast_sip_requests_total", method="REGISTER") == 0
        # REGISTER: 3 000 at 500/s, scraped while it runs and after
        stat = tmp_path / "register.csv"
        proc = sipp_popen("register.xml", srv.port, 3000, 500, stat)
        time.sleep(2.5)
        during = scrape(mport)
        assert proc.wait(90) == 0
        reg = last_row(stat)
        assert reg["SuccessfulCall(C)"] == "3000", reg
        rtx = int(reg["Retransmissions(C)"])
        n_during = value(during, "simplefast_sip_requests_total", method="REGISTER")
        assert 0 < n_during < 3000  # it was moving
        after = settled(mport, "simplefast_sip_requests_total", 3000 + rtx, method="REGISTER")
        assert value(after, "simplefast_sip_requests_total", method="REGISTER") == 3000 + rtx
        options = value(after, "simplefast_sip_requests_total", method="OPTIONS")  # readiness probes
        assert (
            value(after, "simplefast_sip_responses_total", method="REGISTER", **{"class": "2xx"})
            == 3000 + rtx
        )
        assert value(after, "simplefast_sip_responses_total", method="OPTIONS", **{"class": "2xx"}) == options
        assert value(after, "simplefast_table_entries", table="location") == 3000
        assert value(after, "simplefast_sip_parse_errors_total") == 0
        # the subscribe cycle: SUBSCRIBE, NOTIFY, un-SUBSCRIBE, final NOTIFY per call
        stat = tmp_path / "subscribe.csv"
        proc = sipp_popen("subscribe_cycle.xml", srv.port, 500, 250, stat, "-key", "pres", "alice")
        assert proc.wait(90) == 0
        sub = last_row(stat)
        assert sub["SuccessfulCall(C)"] == "500" and sub["FailedCall(C)"] == "0", sub
        rtx = int(sub["Retransmissions(C)"])
        m = settled(mport, "simplefast_subscriptions_ended_total", 500, reason="unsubscribed")
        assert value(m, "simplefast_subscriptions_ended_total", reason="unsubscribed") == 500
        assert 1000 <= value(m, "simplefast_sip_requests_total", method="SUBSCRIBE") <= 1000 + rtx
        assert value(m, "simplefast_notifies_total", outcome="sent") == 1000
        # a copy of an unsubscribe the fast path took (no transaction of it): the notifier
        # answers it again, counted as an absorbed retransmission
        absorbed = value(m, "simplefast_sip_retransmissions_total", direction="absorbed")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            s.settimeout(5)
            lport = s.getsockname()[1]

            def subscribe(cseq: int, to_tag: str = "", expires: int = 600) -> bytes:
                return (
                    f"SUBSCRIBE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lport};"
                    f"branch=z9hG4bKcopy{cseq};rport\r\nMax-Forwards: 70\r\n"
                    "From: <sip:w@example.com>;tag=cw\r\n"
                    f"To: <sip:alice@example.com>{to_tag}\r\nCall-ID: copy1\r\nCSeq: {cseq} SUBSCRIBE\r\n"
                    f"Contact: <sip:w@127.0.0.1:{lport}>\r\nEvent: presence\r\nExpires: {expires}\r\n"
                    "Content-Length: 0\r\n\r\n"
                ).encode()

            def answer(cseq: int) -> bytes:
                """Our response of that CSeq; NOTIFYs on the way are left unanswered."""
                while True:
                    data = s.recvfrom(65535)[0]
                    if data.startswith(b"SIP/2.0 ") and f"CSeq: {cseq} SUBSCRIBE".encode() in data:
                        return data

            s.sendto(subscribe(1), ("127.0.0.1", srv.port))
            tag = re.search(rb"To: <sip:alice@example.com>;tag=([^\r;>]+)", answer(1))
            assert tag is not None
            bye = subscribe(2, f";tag={tag.group(1).decode()}", expires=0)
            for _ in range(2):  # the unsubscribe and a copy of it: 200 both times
                s.sendto(bye, ("127.0.0.1", srv.port))
                assert answer(2).startswith(b"SIP/2.0 200 ")
        m = settled(mport, "simplefast_sip_retransmissions_total", absorbed + 1, direction="absorbed")
        assert value(m, "simplefast_sip_retransmissions_total", direction="absorbed") >= absorbed + 1
        # methods nobody knows are counted as "other": a sender cannot grow the label set
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            s.settimeout(2)
            lport = s.getsockname()[1]
            for i in range(3):
                s.sendto(
                    f"XYZZY{i} sip:nobody@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lport};"
                    f"branch=z9hG4bKodd{i}\r\nMax-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=o{i}\r\n"
                    f"To: <sip:nobody@example.com>\r\nCall-ID: odd{i}\r\nCSeq: 1 XYZZY{i}\r\n"
                    "Content-Length: 0\r\n\r\n".encode(),
                    ("127.0.0.1", srv.port),
                )
                s.recvfrom(65535)  # its final answer
        m = settled(mport, "simplefast_sip_requests_total", 3, method="other")
        assert value(m, "simplefast_sip_requests_total", method="other") == 3
        assert not [k for k in m if "XYZZY" in str(k)]
        assert value(m, "simplefast_subscriptions", event="presence", state="active") == 0
        # a worker killed: replaced, counted, and what it counted is still in the totals
        pid = re.search(r" (\d+) INFO simplefast.server.worker: worker 0 serving", srv.log())
        assert pid is not None
        os.kill(int(pid.group(1)), signal.SIGKILL)
        m = settled(mport, "simplefast_worker_restarts_total", 1)
        assert value(m, "simplefast_worker_restarts_total") == 1
        assert value(m, "simplefast_sip_requests_total", method="REGISTER") == value(
            after, "simplefast_sip_requests_total", method="REGISTER"
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5) as r:
            assert b"simplefast_fanout_seconds_bucket" in r.read()
    finally:
        assert srv.stop() in (0, 1)  # the replaced worker's start may race the stop
