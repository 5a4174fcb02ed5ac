"""docs/operator.md, run as written: every command of the operator's guide is executed here.

How the guide is read (docs/operator.md, "How to read the commands", says the same to the reader):

- ```sh blocks run in document order with ``bash -e``, in one scratch directory that holds
  symlinks to the repository's ``.venv`` and ``bench/`` and a copy of ``simplefast.toml``, so
  the commands run as written from the repository root. The guide's port variables
  (``SF_PORT``, ``SF_TLS_PORT``, ``SF_MSRP_PORT``, ``SF_METRICS_PORT``) are set to free loopback
  ports; that is the only substitution, and the guide writes them as ``${SF_PORT:-5060}``.
- A block whose logical line starts ``.venv/bin/simplefast serve`` (without ``||`` or
  ``--help``) starts a server: its earlier lines run first, then that line in the background
  (its last line). It must answer OPTIONS on ``$SF_PORT`` with 200 and log every worker as
  serving within READY_TIMEOUT. It runs until the next block that is not a second-terminal
  block, then gets SIGTERM and must exit 0 (or has exited 0 already, stopped by the guide).
- A block whose first line is ``# second terminal, while the server runs`` runs while that
  server is up, with ``SF_PID`` set to the supervisor's pid.
- A ```text block right after a ```sh block (only blank lines between) is its output: each
  non-empty line must appear in what the block printed, ``...`` standing for any text. For a
  server, that is its log at its stop; for a second-terminal block, its own output or the
  server's log (waited for up to LOG_WAIT seconds).
- ```toml blocks load with ``simplefast.server.config.load``; one whose first line is
  ``# NAME.toml`` is also written to NAME.toml for the commands (minimal.toml must start a
  server: a block serves ``-c minimal.toml``).
- Every ``make TARGET`` in the guide's code is a Makefile target; the step-runner command lines
  in ```text blocks (too long to run here) use only options their ``--help`` lists.
- The key tables of section 2 name every key ``config.py`` accepts, no other; a numeric key's
  bounds are the ones the check enforces; a default written as a TOML value is the built-in one.
- Every ``simplefast serve`` option and every metric name appears in the guide.

Everything runs on 127.0.0.1 (and ::1), every process and wait is bounded.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from liveserver import REPO, free_udp_port, options

from simplefast.errors import ConfigError
from simplefast.server import config as config_mod
from simplefast.server import metrics as metrics_mod
from simplefast.server.cli import _parser
from simplefast.sip import parse_message

pytestmark = pytest.mark.live

GUIDE = REPO / "docs" / "operator.md"
SECOND = "# second terminal, while the server runs"
SERVE = ".venv/bin/simplefast serve"
BLOCK_TIMEOUT = 120.0  # one block of commands (the SIPp runs take a few seconds)
READY_TIMEOUT = 60.0  # a server's start (prefaulting its tables included)
STOP_TIMEOUT = 30.0  # SIGTERM to exit: drain_seconds (5) + the supervisor's 5 s + saving
LOG_WAIT = 10.0  # for a line to appear in a running server's log
TOOLS = ("sipp", "curl", "openssl")


@dataclass
class Block:
    lang: str
    text: str
    line: int  # of the opening fence, 1-based
    output: Block | None = None

    def where(self) -> str:
        return f"docs/operator.md:{self.line}"


def parse_blocks(md: str) -> list[Block]:
    lines = md.splitlines()
    blocks: list[Block] = []
    i, last_end = 0, -1
    while i < len(lines):
        m = re.match(r"^```(\S*)\s*$", lines[i])
        if m is None:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and lines[j] != "```":
            j += 1
        assert j < len(lines), f"docs/operator.md:{i + 1}: unclosed code block"
        block = Block(m.group(1), "\n".join(lines[i + 1 : j]) + "\n", i + 1)
        between = lines[last_end:i] if last_end >= 0 else ["x"]
        if (
            block.lang == "text"
            and blocks
            and blocks[-1].lang == "sh"
            and not any(s.strip() for s in between)
        ):
            blocks[-1].output = block
        blocks.append(block)
        last_end = i = j + 1
    return blocks


def logical_lines(text: str) -> list[str]:
    """Lines with their backslash continuations joined."""
    out: list[str] = []
    cur = ""
    for raw in text.splitlines():
        if raw.endswith("\\"):
            cur += raw[:-1]
            continue
        out.append(cur + raw)
        cur = ""
    if cur:
        out.append(cur)
    return out


def is_server_line(line: str) -> bool:
    return line.startswith(SERVE) and "||" not in line and "--help" not in line


def missing(expected: Block | None, got: str) -> list[str]:
    """Lines of ``expected`` not found in ``got`` (``...``: any text within a line)."""
    if expected is None:
        return []
    out = []
    for line in expected.text.splitlines():
        if line.strip():
            pattern = ".*".join(re.escape(part) for part in line.split("..."))
            if re.search(pattern, got) is None:
                out.append(line)
    return out


def guide() -> str:
    return GUIDE.read_text()


def free_tcp_ports(count: int, taken: set[int]) -> int:
    """A base port with ``count`` consecutive ports free for TCP on 127.0.0.1, none in ``taken``."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        ports = range(base, base + count)
        if base + count > 65535 or taken.intersection(ports):
            continue
        socks = []
        try:
            for p in ports:
                t = socket.socket()
                socks.append(t)
                t.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for t in socks:
                t.close()
        taken.update(ports)
        return base
    raise RuntimeError("no free TCP ports")


def guide_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SIMPLEFAST_IMPL", None)  # the guide shows the default build's lines ("codec: ext")
    taken: set[int] = set()
    sip = free_udp_port()
    taken.add(sip)
    env["SF_PORT"] = str(sip)
    env["SF_TLS_PORT"] = str(free_tcp_ports(1, taken))
    env["SF_MSRP_PORT"] = str(free_tcp_ports(3, taken))  # PORT and PORT+1+i for the guide's 2 workers
    env["SF_METRICS_PORT"] = str(free_tcp_ports(1, taken))
    return env


def scratch(tmp: Path) -> Path:
    """A directory where the guide's commands run as from the repository root."""
    (tmp / ".venv").symlink_to(REPO / ".venv")
    (tmp / "bench").symlink_to(REPO / "bench")
    shutil.copy(REPO / "simplefast.toml", tmp / "simplefast.toml")
    for block in parse_blocks(guide()):
        first = block.text.splitlines()[0] if block.text.strip() else ""
        m = re.match(r"^# ([\w.-]+\.toml)$", first)
        if block.lang == "toml" and m:
            (tmp / m.group(1)).write_text(block.text)
    return tmp


def run_block(block: Block, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """The block with bash -e in its own session; whatever it left running is stopped after."""
    proc = subprocess.Popen(
        ["bash", "-e", "-c", block.text], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(
            f"{block.where()}: still running after {BLOCK_TIMEOUT} s:\n{out.decode(errors='replace')}"
        )
    _kill_group(proc.pid, signal.SIGTERM)  # e.g. a background SIPp the block did not stop
    return proc.returncode, out.decode(errors="replace")


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    log: Path
    block: Block
    command: str

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(block: Block, command: str, cwd: Path, env: dict[str, str], n: int) -> Server:
    log = cwd / f"server-{n}.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            ["bash", "-c", "exec " + command], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    srv = Server(proc, log, block, command)
    port = int(env["SF_PORT"])
    deadline = time.monotonic() + READY_TIMEOUT
    k = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{block.where()}: the server exited with {proc.returncode}:\n{srv.text()}")
        k += 1
        resp = options(port, branch=f"z9hG4bKguide{n}x{k}", timeout=0.2)
        if resp is not None and parse_message(resp).status == 200 and _all_serving(srv.text()):
            return srv
    stop_server(srv, check=False)
    pytest.fail(f"{block.where()}: the server was not ready after {READY_TIMEOUT} s:\n{srv.text()}")


def _all_serving(log: str) -> bool:
    m = re.search(r"supervisor \d+: (\d+) workers on", log)
    return m is not None and all(f"worker {i} serving" in log for i in range(int(m.group(1))))


def stop_server(srv: Server, check: bool = True) -> None:
    if srv.proc.poll() is None:
        srv.proc.send_signal(signal.SIGTERM)
    try:
        code = srv.proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        _kill_group(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait()
        pytest.fail(f"{srv.block.where()}: the server did not stop within {STOP_TIMEOUT} s:\n{srv.text()}")
    if not check:
        return
    assert code == 0, f"{srv.block.where()}: the server exited with {code}:\n{srv.text()}"
    lost = missing(srv.block.output, srv.text())
    assert not lost, f"{srv.block.where()}: not in the server's log: {lost}\n{srv.text()}"


def test_every_sh_block_runs_as_written(tmp_path: Path) -> None:
    absent = [t for t in TOOLS if shutil.which(t) is None]
    if absent:
        pytest.skip(f"the guide's commands need {', '.join(absent)} (make test installs SIPp)")
    cwd = scratch(tmp_path)
    env = guide_env()
    server: Server | None = None
    served: list[str] = []
    ran = 0
    try:
        for block in parse_blocks(guide()):
            if block.lang != "sh":
                continue
            ran += 1
            if block.text.startswith(SECOND):
                assert server is not None, f"{block.where()}: a second-terminal block without a server"
                code, out = run_block(block, cwd, env | {"SF_PID": str(server.proc.pid)})
                assert code == 0, f"{block.where()} exited with {code}:\n{out}"
                deadline = time.monotonic() + LOG_WAIT
                while (lost := missing(block.output, out + server.text())) and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert not lost, f"{block.where()}: not printed: {lost}\n{out}\nserver log:\n{server.text()}"
                continue
            if server is not None:
                stop_server(server)
                server = None
            lines = logical_lines(block.text)
            at = [i for i, line in enumerate(lines) if is_server_line(line)]
            if not at:
                code, out = run_block(block, cwd, env)
                assert code == 0, f"{block.where()} exited with {code}:\n{out}"
                lost = missing(block.output, out)
                assert not lost, f"{block.where()}: not printed: {lost}\n{out}"
                continue
            assert len(at) == 1 and not any(s.strip() for s in lines[at[0] + 1 :]), (
                f"{block.where()}: a server command must be the block's last command"
            )
            before = "\n".join(lines[: at[0]])
            if before.strip():
                pre = Block("sh", before + "\n", block.line)
                code, out = run_block(pre, cwd, env)
                assert code == 0, f"{block.where()}: the lines before the server exited with {code}:\n{out}"
            server = start_server(block, lines[at[0]], cwd, env, len(served))
            served.append(lines[at[0]])
        if server is not None:
            stop_server(server)
            server = None
    finally:
        if server is not None:
            stop_server(server, check=False)
    assert ran >= 10 and len(served) >= 5, (ran, served)
    assert any("-c minimal.toml" in c for c in served), "the minimal configuration is never served"


def test_toml_blocks_load(tmp_path: Path) -> None:
    names = []
    for n, block in enumerate(b for b in parse_blocks(guide()) if b.lang == "toml"):
        path = tmp_path / f"block{n}.toml"
        path.write_text(block.text)
        try:
            config_mod.load(path, {})
        except ConfigError as exc:
            pytest.fail(f"{block.where()}: {exc}")
        names.append(block.text.splitlines()[0])
    assert "# minimal.toml" in names
    assert "# overload.toml" in names
    config_mod.load(REPO / "simplefast.toml", {})  # the file the guide points to


def _code(md: str) -> str:
    """The guide's code: fenced blocks and inline spans."""
    fenced = "\n".join(b.text for b in parse_blocks(md))
    prose = re.sub(r"^```.*?^```", "", md, flags=re.S | re.M)
    return fenced + "\n" + "\n".join(re.findall(r"`([^`\n]+)`", prose))


def _make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w.-]*)\s*:(?!=)", (REPO / "Makefile").read_text(), re.M))


def test_make_targets_exist() -> None:
    named = set(re.findall(r"(?:^|[\s;&(])make ([a-z][\w-]*)", _code(guide()), re.M))
    assert {"run", "test", "bench"} <= named
    named.discard("bench-compare")  # see the next test
    assert named <= _make_targets(), named - _make_targets()


def test_make_bench_compare_target() -> None:
    assert "make bench-compare" in guide()
    if "bench-compare" not in _make_targets():
        pytest.skip("the guide names make bench-compare; the Makefile does not have it yet")


def test_text_commands_use_real_options() -> None:
    helps: dict[str, str] = {}
    checked = 0
    for block in parse_blocks(guide()):
        if block.lang != "text":
            continue
        for line in logical_lines(block.text):
            m = re.match(r"^\.venv/bin/python (bench/sipp/\w+\.py) (.*)$", line)
            if m is None:
                continue
            script = m.group(1)
            if script not in helps:
                helps[script] = subprocess.run(
                    [sys.executable, str(REPO / script), "--help"], capture_output=True, text=True,
                    timeout=60, check=True,
                ).stdout  # fmt: skip
            for opt in re.findall(r"(?:^|\s)(--[a-z][\w-]*)", m.group(2)):
                assert opt in helps[script], f"{block.where()}: {script} has no {opt}"
                checked += 1
    assert checked >= 10


def _accepted(func: str) -> set[str]:
    """The keys a ``_load_*`` function of config.py accepts: its set literals."""
    tree = ast.parse(Path(config_mod.__file__).read_text())
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == func)
    keys: set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Set):
            for elt in node.elts:
                if isinstance(elt, ast.Constant) and isinstance(elt.value, str):
                    keys.add(elt.value)
                elif isinstance(elt, ast.Starred) and isinstance(elt.value, ast.Name):
                    keys |= set(getattr(config_mod, elt.value.id))
    return keys


def _key_tables(md: str) -> dict[str, list[list[str]]]:
    tables: dict[str, list[list[str]]] = {}
    current: str | None = None
    for line in md.splitlines():
        m = re.match(r"^### `\[(\w+)\]`", line)
        if m:
            current = m.group(1)
            tables[current] = []
        elif line.startswith("#"):
            current = None
        elif current is not None and line.startswith("| `"):
            tables[current].append([c.strip() for c in line.strip().strip("|").split("|")])
    return tables


def _settings(path: Path) -> dict[str, Any]:
    d = dataclasses.asdict(config_mod.load(path, {}))
    d.pop("source")
    return d


def test_key_tables_match_config(tmp_path: Path) -> None:
    tables = _key_tables(guide())
    accepted = {
        "server": set(config_mod._KEYS),
        "presence": _accepted("_load_presence"),
        "im": _accepted("_load_im"),
        "msrp": _accepted("_load_msrp"),
        "chat": _accepted("_load_chat"),
    }
    assert set(tables) == set(accepted)
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    baseline = _settings(empty)
    path = tmp_path / "one.toml"
    bounded = 0
    for table, rows in tables.items():
        keys = [row[0].strip("`") for row in rows]
        assert sorted(keys) == sorted(set(keys)), f"[{table}]: a key listed twice"
        assert set(keys) == accepted[table], (
            f"[{table}]: missing {accepted[table] - set(keys)}, unknown {set(keys) - accepted[table]}"
        )
        for key, default, bounds, _meaning in (row[:4] for row in rows):
            key = key.strip("`")
            m = re.fullmatch(r"`([^`]+)`", default)
            if m:  # the documented default, written out, changes nothing
                path.write_text(f"[{table}]\n{key} = {m.group(1)}\n")
                tomllib.loads(path.read_text())
                assert _settings(path) == baseline, f"[{table}] {key}: the default is not {m.group(1)}"
            m = re.fullmatch(r"(-?\d+) to (\d+)", bounds)
            if m:
                lo, hi = int(m.group(1)), int(m.group(2))
                for bad in (lo - 1, hi + 1):
                    path.write_text(f"[{table}]\n{key} = {bad}\n")
                    with pytest.raises(ConfigError) as err:
                        config_mod.load(path, {})
                    assert f"{lo}-{hi}" in str(err.value), f"[{table}] {key}: {err.value}"
                bounded += 1
    assert bounded >= 30


def test_serve_options_and_metrics_are_named() -> None:
    text = guide()
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    serve = sub.choices["serve"]
    opts = {o for a in serve._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
    assert opts and not {o for o in opts if o not in text}, {o for o in opts if o not in text}
    names = set(re.findall(r'"(simplefast_[a-z0-9_]+)"', Path(metrics_mod.__file__).read_text()))
    assert len(names) >= 20
    assert not {n for n in names if n not in text}, {n for n in names if n not in text}
