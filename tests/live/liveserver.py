"""A real server (supervisor + workers) on a free loopback port, for live tests (helpers)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from simplefast.sip import parse_message

REPO = Path(__file__).resolve().parents[2]


def free_udp_port() -> int:
    """A port free for UDP and TCP on 127.0.0.1 (the live servers listen on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            try:
                t.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


def options(port: int, branch: str = "z9hG4bKprobe", timeout: float = 0.5) -> bytes | None:
    """One OPTIONS to the server's own address; the response datagram or None."""
    req = (
        f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:9;branch={branch};rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\n"
        f"To: <sip:127.0.0.1:{port}>\r\nCall-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    return exchange(port, req, timeout)


def exchange(port: int, data: bytes, timeout: float = 0.5) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, ("127.0.0.1", port))
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


@dataclass
class Server:
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    workers: int
    _stopped: bool = field(default=False)

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        n = 0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log()}")
            n += 1
            resp = options(self.port, branch=f"z9hG4bKready{n}", timeout=0.2)
            if resp is not None and parse_message(resp).status == 200 and self._all_serving():
                return
        raise RuntimeError(f"server not ready after {timeout} s: {self.log()}")

    def _all_serving(self) -> bool:
        """Every worker has its listeners (the OPTIONS above may be answered by the first
        worker up while another still sets up its TCP or MSRP listeners)."""
        text = self.log()
        return all(f"worker {i} serving" in text for i in range(self.workers))

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(
    tmp_path: Path, workers: int = 2, extra: tuple[str, ...] = (), auth: bool = False, domain: bool = True,
    port: int | None = None,
) -> Server:  # fmt: skip
    """``extra`` may add listeners (``--listen tcp:127.0.0.1:PORT``); the first one is UDP on ``port``."""
    port = port or free_udp_port()
    log_path = tmp_path / "server.log"
    cmd = [
        sys.executable, "-m", "simplefast", "serve", "--listen", f"udp:127.0.0.1:{port}",
        *(("--domain", "example.com") if domain else ()),
        "--workers", str(workers), "--data-dir", str(tmp_path / "data"),
        *(() if auth else ("--no-auth",)), *extra,
    ]  # fmt: skip
    if "--dns-server" not in extra:  # live traffic stays on loopback: DNS to a port nobody serves
        cmd += ["--dns-server", "127.0.0.1:9"]
    logf = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=str(REPO), env=dict(os.environ))
    logf.close()
    srv = Server(port, proc, log_path, workers)
    srv.wait_ready()
    return srv
