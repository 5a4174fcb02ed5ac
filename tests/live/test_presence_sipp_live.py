"""Presence under SIPp: the subscribe cycle, and 1 000 SIPp watchers kept across a restart and a kill -9.

The watchers run ``bench/sipp/watcher.xml`` in one SIPp: each subscribes to
one presentity, logs every NOTIFY it answers (``notify|call|cseq|state|time``
with ``-trace_logs``) and un-SUBSCRIBEs after ``-recv_timeout`` ms without a
NOTIFY. The server is restarted (SIGTERM, then started again on the same
port and data directory) or has a worker killed while they wait; then one
PUBLISH must reach every watcher with the next CSeq of its dialog.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pytest
from liveserver import Server, free_udp_port, start_server
from presence_client import PIDF, Peer
from test_server_live import sipp

from simplefast.testing import REPO

WATCHERS = 1000


def test_sipp_subscribe_cycle(tmp_path: Path) -> None:
    srv = start_server(tmp_path, extra=("--min-notify-interval", "0"))
    try:
        stats = sipp("subscribe_cycle.xml", srv.port, 2000, 500, tmp_path, ("-key", "pres", "alice"))
        assert stats["SuccessfulCall(C)"] == "2000" and stats["FailedCall(C)"] == "0", stats
        assert stats["Retransmissions(C)"] == "0", stats
    finally:
        assert srv.stop() == 0


def start_watchers(
    srv: Server, tmp_path: Path, presentity: str, idle_ms: int
) -> tuple[subprocess.Popen[bytes], Path]:
    if shutil.which("sipp") is None:
        pytest.fail("sipp is not installed (make test installs Debian's sip-tester)")
    log = tmp_path / "watchers_logs.log"
    cmd = [
        "sipp", "-sf", str(REPO / "bench" / "sipp" / "watcher.xml"), "-s", "example.com",
        f"127.0.0.1:{srv.port}", "-i", "127.0.0.1", "-p", str(free_udp_port()), "-key", "pres", presentity,
        "-recv_timeout", str(idle_ms),
        "-m", str(WATCHERS), "-r", "500", "-l", str(WATCHERS), "-timeout", "90", "-timeout_error", "-nostdin",
        "-buff_size", str(8 << 20), "-trace_logs", "-log_file", str(log),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    return proc, log


def notifies(log: Path) -> dict[int, list[int]]:
    """Watcher (call number) -> CSeqs of the NOTIFYs it answered, in order."""
    out: dict[int, list[int]] = defaultdict(list)
    if log.exists():
        for line in log.read_text(errors="replace").splitlines():
            parts = line.split("|")
            if len(parts) >= 4 and parts[0].endswith("notify"):
                out[int(parts[1])].append(int(float(parts[2])))
    return out


def wait_for(pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def publish(port: int, presentity: str, note: str) -> None:
    p = Peer(port, "pub")
    try:
        body = PIDF.format(entity=f"sip:{presentity}@example.com", basic="open", note=note).encode()
        hdr = "Event: presence\r\nContent-Type: application/pidf+xml\r\nExpires: 600\r\n"
        uri = f"sip:{presentity}@example.com"
        p.request("PUBLISH", uri, call_id=f"pub-{note}", from_tag="p", headers=hdr, body=body, to_uri=uri)
        assert p.response_to(f"pub-{note}", 1, timeout=10).status == 200
    finally:
        p.close()


@pytest.mark.parametrize("how", ["restart", "kill-9"])
def test_1000_sipp_watchers_survive(tmp_path: Path, how: str) -> None:
    presentity = f"kept{os.getpid()}"
    srv = start_server(tmp_path, extra=("--min-notify-interval", "0"))
    watchers = None
    try:
        watchers, log = start_watchers(srv, tmp_path, presentity, idle_ms=20000)
        wait_for(lambda: len(notifies(log)) == WATCHERS, 30, "every watcher's first NOTIFY")
        if how == "restart":
            time.sleep(1.5)  # the write-behind (once a second); a clean stop saves everything anyway
            assert srv.stop() == 0
            srv = start_server(tmp_path, extra=("--min-notify-interval", "0"), port=srv.port)
            assert f"{WATCHERS} subscriptions restored" in srv.log()
        else:
            victim = srv.worker_pids()[0]
            os.kill(victim, signal.SIGKILL)
            wait_for(
                lambda: len(srv.worker_pids()) == 2 and victim not in srv.worker_pids(), 10, "a new worker"
            )
            srv.wait_ready()
            time.sleep(0.5)
        publish(srv.port, presentity, "after")
        wait_for(
            lambda: all(len(c) >= 2 for c in notifies(log).values()), 20, "every watcher's second NOTIFY"
        )
        got = notifies(log)
        assert len(got) == WATCHERS
        assert all(cseqs[:2] == [1, 2] for cseqs in got.values()), [
            c for c in got.values() if c[:2] != [1, 2]
        ][:5]
    finally:
        if watchers is not None:
            watchers.send_signal(signal.SIGUSR1)  # SIPp: stop and exit
            try:
                watchers.wait(15)
            except subprocess.TimeoutExpired:
                watchers.kill()
                watchers.wait()
        if srv.proc.poll() is None:
            srv.stop()
