"""The supervisor: forks N workers, replaces any that dies, drains on SIGTERM.

Signals are blocked in the supervisor and taken with ``sigtimedwait``, so
there is no handler racing the fork; workers unblock them and install their
own (in the event loop). A worker that dies within ``_FAST_EXIT`` seconds of
its start, ``_MAX_FAST_EXITS`` times in a row, stops the server with exit
code 1 (a port taken, a broken build): a crash loop helps no one.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time

from simplefast.logs import configure, get_logger
from simplefast.server import metrics
from simplefast.server.config import Config
from simplefast.server.shared import SharedState, save_all, save_presence
from simplefast.server.shared import create as create_shared_state
from simplefast.server.worker import open_offline, run_worker
from simplefast.store.users import nonce_secret
from simplefast.transport.reuseport import SlotOrder

log = get_logger(__name__)

_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
_FAST_EXIT = 2.0
_MAX_FAST_EXITS = 5


def _spawn(cfg: Config, index: int, shared: SharedState) -> int:
    pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
                signal.signal(s, signal.SIG_DFL)
            # SIGTERM, SIGINT and SIGHUP stay blocked (pending, not lost) until the worker's
            # loop has its handlers: a stop during start-up is then a clean drain, not a kill
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
            code = run_worker(cfg, index, shared)
        except BaseException:
            log.exception("worker %d failed", index)
        finally:
            os._exit(code)
    return pid


def _spawn_metrics(cfg: Config, shared: SharedState) -> int:
    """The metrics process (server/metrics.py): serves /metrics until SIGTERM."""
    assert cfg.metrics_listen is not None
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
                signal.signal(s, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
            tables = {
                "location": shared.location().table,
                "presentities": shared.presentity_table(),
                "subscriptions": shared.subscription_table(),
            }
            overflow = shared.subscription_overflow_table()
            if overflow is not None:
                tables["subscriptions_overflow"] = overflow
            code = metrics.serve(cfg.metrics_listen.host, cfg.metrics_listen.port, tables)
        except BaseException:
            log.exception("metrics process failed")
        finally:
            os._exit(code)
    return pid


def supervise(cfg: Config) -> int:
    configure(cfg.log_level)
    if cfg.auth:
        nonce_secret(cfg.data_dir)  # created once here, before the workers read it
    if cfg.im.offline:
        try:  # the schema is made (or a foreign file refused) once here, before the workers
            open_offline(cfg).close()
        except RuntimeError as exc:
            log.error("%s", exc)
            return 2
    shared = create_shared_state(cfg)  # mapped before fork: every worker sees it
    shared.rundir = tempfile.mkdtemp(prefix="simplefast-")  # mode 0700: the hand-off sockets
    if cfg.metrics_listen is not None:
        metrics.prepare(shared.rundir)  # before any fork: every process writes its own files there
    try:
        return _supervise(cfg, shared)
    finally:
        shutil.rmtree(shared.rundir, ignore_errors=True)


def _supervise(cfg: Config, shared: SharedState) -> int:
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    workers: dict[int, tuple[int, float]] = {}  # pid -> (index, started)
    for i in range(cfg.workers):
        workers[_spawn(cfg, i, shared)] = (i, time.monotonic())
    metrics_pid = _spawn_metrics(cfg, shared) if cfg.metrics_listen is not None else 0
    metrics_started = time.monotonic()
    metrics_again = 0.0  # when to start the metrics process again (0: not waiting)
    metrics_delay = 0.5  # doubles while it keeps exiting at once (a port taken), up to 60 s
    log.info("supervisor %d: %d workers on %s", os.getpid(), cfg.workers, ", ".join(map(str, cfg.listen)))
    fast_exits = 0
    while True:
        info = signal.sigtimedwait(_SIGNALS, 0.5)
        if metrics_again and time.monotonic() >= metrics_again and not signal.sigpending() & {
            signal.SIGTERM, signal.SIGINT,
        }:  # fmt: skip
            metrics_again = 0.0
            metrics_pid, metrics_started = _spawn_metrics(cfg, shared), time.monotonic()
        while workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid == metrics_pid:
                code = os.waitstatus_to_exitcode(status)
                if signal.sigpending() & {signal.SIGTERM, signal.SIGINT}:
                    metrics_pid = 0
                    continue
                metrics_pid = 0
                if time.monotonic() - metrics_started > 60:
                    metrics_delay = 0.5
                log.warning("metrics process (pid %d) exited with %d; starting a new one in %.1f s",
                            pid, code, metrics_delay)  # fmt: skip
                metrics_again = time.monotonic() + metrics_delay
                metrics_delay = min(metrics_delay * 2, 60.0)
                continue
            if pid not in workers:
                continue
            index, started = workers.pop(pid)
            if cfg.workers > 1:  # its UDP sockets closed: the kernel moved the last slot's into theirs
                SlotOrder(os.path.join(shared.rundir, "udp-slots")).leave(index)
            if cfg.metrics_listen is not None:
                metrics.process_dead(pid)
            code = os.waitstatus_to_exitcode(status)
            fast_exits = fast_exits + 1 if time.monotonic() - started < _FAST_EXIT else 0
            if fast_exits >= _MAX_FAST_EXITS:
                log.error("workers keep exiting at start (last: %d); stopping", code)
                _stop(workers, cfg)
                return 1
            if code != 0 and cfg.persist_registrations:
                save_all(shared, cfg)  # what it had not written behind yet
            if code != 0 and cfg.persist_presence:
                save_presence(shared, cfg)
            if signal.sigpending() & {signal.SIGTERM, signal.SIGINT}:
                continue  # stopping anyway: do not replace it
            log.warning("worker %d (pid %d) exited with %d; starting a new one", index, pid, code)
            workers[_spawn(cfg, index, shared)] = (index, time.monotonic())
            if cfg.metrics_listen is not None:
                metrics.worker_restarted()
        if info is None:
            continue
        if info.si_signo in (signal.SIGTERM, signal.SIGINT):
            log.info("supervisor: %s, draining workers", signal.Signals(info.si_signo).name)
            code = _stop(workers, cfg)
            if metrics_pid:
                _stop({metrics_pid: (-1, 0.0)}, cfg)
            if cfg.persist_registrations:
                log.info("supervisor: %d AORs saved", save_all(shared, cfg))
            if cfg.persist_presence:
                log.info("supervisor: %d subscriptions saved", save_presence(shared, cfg))
            return code
        if info.si_signo == signal.SIGHUP:
            for pid in workers:
                os.kill(pid, signal.SIGHUP)


def _stop(workers: dict[int, tuple[int, float]], cfg: Config) -> int:
    for pid in workers:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + cfg.drain_seconds + 5.0
    ok = True
    while workers and time.monotonic() < deadline:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.05)
            continue
        workers.pop(pid, None)
        ok = ok and os.waitstatus_to_exitcode(status) == 0
    for pid in workers:  # past the drain time
        os.kill(pid, signal.SIGKILL)
        ok = False
    return 0 if ok else 1
