"""baresip (Debian's ``baresip-core``) as a real SIP presence client, for the live tests (helpers).

The client runs headless from its own config directory: no audio or video module, the
``cons`` UI on a loopback UDP port (commands go in, their output comes back to the
sender), ``contact`` + ``presence`` for the buddy list (SUBSCRIBE to each contact with
``;presence=p2p``, PUBLISH of our own status when the account has ``pubint``).
It runs with ``-s`` (SIP trace on stdout): a reader thread keeps stdout, so the tests
can look at the messages baresip sent and received, and at what it printed.

For instant messages (RFC 3428), as checked on baresip 1.0.0 (Debian ``baresip-core``):
``contact.so`` has the ``/message <text>`` command, which sends a MESSAGE (text/plain) to the
*current* contact (the first one of the ``contacts`` file when nothing else was chosen);
baresip's core answers an incoming MESSAGE 200 and hands it to ``menu.so`` (``menu=True``),
which shows it on the UI as ``<peer uri>: "<text>"`` -- through ``ui_output``, i.e. to the
address the last cons command came from, not on stdout: see ``send_command`` / ``wait_ui``.
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


def require_baresip(extra_modules: tuple[str, ...] = ()) -> tuple[str, str]:
    """The baresip binary and its module directory; the test fails (never skips) without them
    (``NEEDED_MODULES`` and ``extra_modules``, e.g. ``("menu.so",)``)."""
    exe = shutil.which("baresip")
    if exe is None:
        pytest.fail("baresip is not installed: the live presence test needs Debian's 'baresip-core' "
                    "(apt-get install -y baresip-core)", pytrace=False)  # fmt: skip
    needed = NEEDED_MODULES + tuple(m for m in extra_modules if m not in NEEDED_MODULES)
    for d in MODULE_DIRS:
        if all(os.path.exists(os.path.join(d, m)) for m in needed):
            return exe, d
    pytest.fail(f"baresip modules {', '.join(needed)} not found in any of {', '.join(MODULE_DIRS)} "
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
    presence: bool = True  # presence.so, and the buddies with ;presence=p2p
    menu: bool = False  # menu.so: shows incoming MESSAGEs on the UI
    account_at_start: bool = True  # False: an empty accounts file, the account comes with add_account()
    proc: subprocess.Popen[bytes] | None = None
    out: bytearray = field(default_factory=bytearray)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _reader: threading.Thread | None = None
    _cons: socket.socket | None = None
    ui: bytearray = field(default_factory=bytearray)  # what the cons UI sent back, read by wait_ui

    # -- configuration -------------------------------------------------------------------
    def config_files(self, module_dir: str) -> dict[str, str]:
        config = (
            "poll_method\tepoll\n"
            f"sip_listen\t127.0.0.1:{self.sip_port}\n"
            "dns_server\t127.0.0.1:9\n"  # no DNS anywhere: every address is an IP address
            f"module_path\t{module_dir}\n"
            "module\tcons.so\n"
            f"cons_listen\t127.0.0.1:{self.cons_port}\n"
            "module_tmp\taccount.so\n"
            "module_app\tcontact.so\n"
            + ("module_app\tpresence.so\n" if self.presence else "")
            + ("module_app\tmenu.so\n" if self.menu else "")
            # and no audio or video module: no device, no codec
        )
        accounts = self.account_line() + "\n" if self.account_at_start else ""
        p2p = ";presence=p2p" if self.presence else ""
        contacts = "".join(f'"{b.title()}" <sip:{b}@example.com>{p2p}\n' for b in self.buddies)
        return {"config": config, "accounts": accounts, "contacts": contacts}

    def account_line(self) -> str:
        """The account, as in the ``accounts`` file (and as ``/uanew`` takes it)."""
        t = self.transport
        return (
            f"<sip:{self.user}@example.com;transport={t}>"
            f';outbound="sip:127.0.0.1:{self.server_port};transport={t}"'
            f";regint={self.regint};pubint={self.pubint};answermode=manual;mwi=no"
        )

    # -- process ---------------------------------------------------------------------------
    def start(self) -> Baresip:
        exe, module_dir = require_baresip(("menu.so",) if self.menu else ())
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

    # -- instant messages and the UI's own output ----------------------------------------------
    def send_command(self, cmd: str) -> None:
        """Send ``/cmd`` to the cons UI without reading anything: what the UI sends back (the
        command's output, and from then on all ``ui_output``, e.g. incoming MESSAGEs shown by
        menu.so) is kept by ``wait_ui``. Not to be mixed with ``command``, which drops it."""
        assert self._cons is not None
        self._cons.sendto(f"/{cmd}\n".encode(), ("127.0.0.1", self.cons_port))

    def wait_ui(self, pattern: bytes, timeout: float, start: int = 0) -> re.Match[bytes]:
        """The first match of ``pattern`` in what the cons UI sent back (colours removed,
        offsets in ``self.ui`` past ``start``)."""
        assert self._cons is not None
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(ANSI.sub(b"", bytes(self.ui[start:])))
            if m:
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                ui, out = ANSI.sub(b"", bytes(self.ui)).decode(errors="replace"), self.text()
                raise AssertionError(f"baresip's UI showed nothing matching {pattern!r} in {timeout} s; "
                                     f"the UI:\n{ui[-4000:]}\nits output:\n{out[-6000:]}")  # fmt: skip
            self._cons.settimeout(min(left, 0.2))
            try:
                self.ui += self._cons.recv(65535)
            except TimeoutError:
                pass

    def add_account(self, timeout: float = 10.0) -> None:
        """``/uanew`` with ``account_line()`` (for ``account_at_start=False``); the UI is then
        attached (see ``send_command``) and this returns once the registration got its 200."""
        mark = len(self.out)
        self.send_command(f"uanew {self.account_line()}")
        t = self.transport.upper()
        self.wait_output(rf"{self.user}@example\.com: \{{0/{t}/v4\}} 200 OK".encode(), timeout, start=mark)

    def message(self, text: str) -> str:
        """``/message text``: a MESSAGE to the current contact (``buddies[0]``); the UI's output."""
        out = self.command(f"message {text}")
        errors = ("contact: current contact not set", "contact: message_send(", "command not found")
        assert not any(e in out for e in errors), out
        return out
