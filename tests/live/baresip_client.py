"""baresip (Debian's ``baresip-core``) as a real SIP presence client, for the live tests (helpers).

The client runs headless from its own config directory: no audio or video module, the
``cons`` UI on a loopback UDP port (commands go in, their output comes back to the
sender), ``contact`` + ``presence`` for the buddy list (SUBSCRIBE to each contact with
``;presence=p2p``, PUBLISH of our own status when the account has ``pubint``).
It runs with ``-s`` (SIP trace on stdout): a reader thread keeps stdout, so the tests
can look at the messages baresip sent and received, and at what it printed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from liveserver import free_udp_port

from simplefast.sip import parse_message

MODULE_DIRS = (
    "/usr/lib/baresip/modules",
    "/usr/lib/x86_64-linux-gnu/baresip/modules",
    "/usr/local/lib/baresip/modules",
)
NEEDED_MODULES = ("cons.so", "account.so", "contact.so", "presence.so")
ANSI = re.compile(rb"\x1b\[[0-9;]*m")
# one message of the SIP trace (-s): ESC[36;1m#\n<TRANSPORT> <src> -> <dst>\n<message>ESC[;m
TRACE = re.compile(rb"\x1b\[36;1m#\n(UDP|TCP|TLS|WS|WSS) (\S+) -> (\S+)\n(.*?)\x1b\[;m\n", re.S)
HARD_LIMIT = 60  # seconds: baresip quits by itself (-t) even if the test never stops it


def require_baresip() -> tuple[str, str]:
    """The baresip binary and its module directory; the test fails (never skips) without them."""
    exe = shutil.which("baresip")
    if exe is None:
        pytest.fail("baresip is not installed: the live presence test needs Debian's 'baresip-core' "
                    "(apt-get install -y baresip-core)", pytrace=False)  # fmt: skip
    for d in MODULE_DIRS:
        if all(os.path.exists(os.path.join(d, m)) for m in NEEDED_MODULES):
            return exe, d
    pytest.fail(f"baresip modules {', '.join(NEEDED_MODULES)} not found in any of {', '.join(MODULE_DIRS)} "
                "(package 'baresip-core')", pytrace=False)  # fmt: skip


@dataclass
class TracedMessage:
    transport: str
    src: str
    dst: str
    raw: bytes
    sent: bool  # by baresip (src is its sip_listen address or, over TCP, one of its connections)

    @property
    def msg(self):
        return parse_message(self.raw)


@dataclass
class Baresip:
    """One baresip process with one account (``user``@example.com) behind our server."""

    workdir: Path
    server_port: int  # the server's port for ``transport``
    transport: str = "udp"
    user: str = "alice"
    buddies: tuple[str, ...] = ("bob",)
    pubint: int = 600
    regint: int = 600
    sip_port: int = field(default_factory=free_udp_port)
    cons_port: int = field(default_factory=free_udp_port)
    proc: subprocess.Popen[bytes] | None = None
    out: bytearray = field(default_factory=bytearray)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _reader: threading.Thread | None = None
    _cons: socket.socket | None = None

    # -- configuration -------------------------------------------------------------------
    def config_files(self, module_dir: str) -> dict[str, str]:
        t = self.transport
        config = (
            "poll_method\tepoll\n"
            f"sip_listen\t127.0.0.1:{self.sip_port}\n"
            "dns_server\t127.0.0.1:9\n"  # no DNS anywhere: every address is an IP address
            f"module_path\t{module_dir}\n"
            "module\tcons.so\n"
            f"cons_listen\t127.0.0.1:{self.cons_port}\n"
            "module_tmp\taccount.so\n"
            "module_app\tcontact.so\n"
            "module_app\tpresence.so\n"  # and no audio or video module: no device, no codec
        )
        accounts = (
            f"<sip:{self.user}@example.com;transport={t}>"
            f';outbound="sip:127.0.0.1:{self.server_port};transport={t}"'
            f";regint={self.regint};pubint={self.pubint};answermode=manual;mwi=no\n"
        )
        contacts = "".join(f'"{b.title()}" <sip:{b}@example.com>;presence=p2p\n' for b in self.buddies)
        return {"config": config, "accounts": accounts, "contacts": contacts}

    # -- process ---------------------------------------------------------------------------
    def start(self) -> Baresip:
        exe, module_dir = require_baresip()
        cfg = self.workdir / "baresip"
        cfg.mkdir(parents=True, exist_ok=True)
        for name, text in self.config_files(module_dir).items():
            (cfg / name).write_text(text)
        self._cons = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._cons.bind(("127.0.0.1", 0))
        self.proc = subprocess.Popen(
            [exe, "-4", "-s", "-f", str(cfg), "-t", str(HARD_LIMIT)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            cwd=str(cfg), start_new_session=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_output(rb"baresip is ready\.", 10)
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)
            with self._cond:
                if not chunk:
                    self._cond.notify_all()
                    return
                self.out += chunk
                self._cond.notify_all()

    def stop(self, timeout: float = 8.0) -> int | None:
        """SIGTERM (baresip then unpublishes, unsubscribes and unregisters), SIGKILL if it lingers."""
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            if self._reader is not None:
                self._reader.join(2)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            (self.workdir / "baresip.out").write_bytes(bytes(self.out))
        if self._cons is not None:
            self._cons.close()
            self._cons = None
        return rc

    # -- output ----------------------------------------------------------------------------
    def text(self) -> str:
        """Everything baresip printed so far, colours removed."""
        with self._cond:
            return ANSI.sub(b"", bytes(self.out)).decode(errors="replace")

    def wait_output(self, pattern: bytes, timeout: float, start: int = 0) -> re.Match[bytes]:
        """The first match of ``pattern`` in the output (colours removed) after offset ``start``."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                m = rx.search(ANSI.sub(b"", bytes(self.out[start:])))
                if m:
                    return m
                left = deadline - time.monotonic()
                if left <= 0 or self._exited():
                    raise AssertionError(f"baresip printed nothing matching {pattern!r} within {timeout} s; "
                                         f"its output:\n{self.text()[-6000:]}")  # fmt: skip
                self._cond.wait(min(left, 0.2))

    def _exited(self) -> bool:
        """baresip is gone and all it printed has been read."""
        return (
            self.proc is not None
            and self.proc.poll() is not None
            and not (self._reader is not None and self._reader.is_alive())
        )

    def trace(self) -> list[TracedMessage]:
        """The SIP messages of the trace so far."""
        with self._cond:
            data = bytes(self.out)
        mine, server = f"127.0.0.1:{self.sip_port}", f"127.0.0.1:{self.server_port}"
        res = []
        for m in TRACE.finditer(data):
            transport, src, dst = (g.decode() for g in m.group(1, 2, 3))
            raw = m.group(4)
            sent = src == mine or (transport != "UDP" and dst == server)
            res.append(TracedMessage(transport, src, dst, raw, sent))
        return res

    def wait_trace(self, want, timeout: float, what: str, start: int = 0) -> TracedMessage:
        """The first traced message (from the ``start``-th on) for which ``want(TracedMessage)`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            for t in self.trace()[start:]:
                if want(t):
                    return t
            if time.monotonic() > deadline:
                tail = self.text()[-8000:]
                raise AssertionError(f"baresip trace: no {what} within {timeout} s; its output:\n{tail}")
            with self._cond:
                self._cond.wait(0.2)

    # -- commands (cons UI over UDP) -------------------------------------------------------
    def command(self, cmd: str, quiet: float = 0.3, timeout: float = 3.0) -> str:
        """Run a long command (``/contacts``) through the cons UI; its output, colours removed."""
        assert self._cons is not None
        s = self._cons
        while True:  # whatever an earlier command printed late
            s.settimeout(0)
            try:
                s.recv(65535)
            except (BlockingIOError, TimeoutError):
                break
        s.sendto(f"/{cmd}\n".encode(), ("127.0.0.1", self.cons_port))
        out = b""
        deadline = time.monotonic() + timeout
        s.settimeout(quiet)
        while time.monotonic() < deadline:
            try:
                out += s.recv(65535)
            except TimeoutError:
                if out:
                    break
        return ANSI.sub(b"", out).decode(errors="replace")

    def buddy_status(self, buddy: str) -> str | None:
        """Online / Offline / Busy / Unknown as baresip's contact list shows it."""
        for line in self.command("contacts").splitlines():
            if f"<sip:{buddy}@example.com>" in line:
                words = line.replace(">", " ", 1).split() if line.startswith(">") else line.split()
                return words[0] if words else None
        return None

    def wait_buddy_status(self, buddy: str, status: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = self.buddy_status(buddy)
            if seen == status:
                return
            time.sleep(0.1)
        raise AssertionError(f"baresip shows {buddy} as {seen!r}, not {status!r}, after {timeout} s; "
                             f"its output:\n{self.text()[-6000:]}")  # fmt: skip
