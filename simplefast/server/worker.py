"""One worker process: uvloop, its own SO_REUSEPORT sockets, one SIP core."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import os
import signal
import socket
import time

import uvloop

from simplefast import _impl
from simplefast.errors import ConfigError
from simplefast.logs import configure, get_logger
from simplefast.proxy.auth import DigestAuth
from simplefast.proxy.core import CoreConfig, SipCore
from simplefast.proxy.proxy import ProxyAddress
from simplefast.server.config import Config
from simplefast.server.config import load as load_config
from simplefast.server.shared import SharedState
from simplefast.store import location as location_store
from simplefast.store.users import load_users, nonce_secret
from simplefast.transport import handoff
from simplefast.transport.reuseport import attach_payload_hash, reuseport_udp_socket
from simplefast.transport.udp import OverloadMonitor, UdpListener, UdpSockets

log = get_logger(__name__)


def local_hosts(cfg: Config) -> frozenset[str]:
    out: set[str] = set()
    for lc in cfg.listen:
        host = f"[{lc.host}]" if ":" in lc.host else lc.host
        out.add(host.lower())
        out.add(f"{host.lower()}:{lc.port}")
    return frozenset(out)


async def _serve(cfg: Config, index: int, shared: SharedState) -> None:
    loop = asyncio.get_running_loop()
    lc = cfg.listen[0]  # one UDP listener per worker for now (the CLI checks this)
    sock = reuseport_udp_socket(lc.host, lc.port)
    if cfg.workers > 1:
        attach_payload_hash(sock, cfg.workers)
    # the worker's own client socket: forwarded requests leave from it (see UdpSockets)
    csock = socket.socket(sock.family, socket.SOCK_DGRAM)
    csock.bind((lc.host, 0))
    csock.setblocking(False)
    me = ProxyAddress(lc.host, lc.port, csock.getsockname()[1])
    core_cfg = CoreConfig(domains=cfg.effective_domains(), local_hosts=local_hosts(cfg))
    location = shared.location()
    auth = DigestAuth(nonce_secret(cfg.data_dir), algorithms=cfg.auth_algorithms) if cfg.auth else None
    core = SipCore(core_cfg, location, me, auth=auth, users=load_users(cfg.data_dir) if auth else None)
    sockets = UdpSockets()
    transports: list[asyncio.BaseTransport] = []
    protocols: list[UdpListener] = []
    for s, is_client in ((sock, False), (csock, True)):
        transport, proto = await loop.create_datagram_endpoint(
            lambda c=is_client: UdpListener(core, loop, sockets, client=c),  # type: ignore[misc]
            sock=s,
        )
        transports.append(transport)
        protocols.append(proto)
    if cfg.workers > 1:  # ACK/CANCEL whose INVITE lives in another worker (transport/handoff.py)
        listener = protocols[0]

        def deliver(data: bytes, peer: object, hops: int) -> None:
            listener.deliver(data, peer, hops)

        ring_sock = handoff.bind(os.getppid(), index)
        _, ring = await loop.create_datagram_endpoint(
            lambda: handoff.HandoffRing(ring_sock, os.getppid(), index, cfg.workers, deliver), sock=ring_sock
        )
        core.handoff = ring.send
        core.handoff_limit = cfg.workers - 1
    monitor = OverloadMonitor(core, loop, sock, high=cfg.overload_queue_bytes or 1 << 62)
    if cfg.overload_queue_bytes:
        monitor.start()

    # The cyclic GC walks every live container: with a few hundred thousand
    # transactions waiting out Timer J that took 0.45 s pauses (measured), past
    # T1, so clients retransmitted. Freezing what has lived a second moves it
    # out of the collector's walk; refcounting still frees it. The cost: a
    # reference cycle made more than a second ago is never collected (the
    # engines make none).
    def freeze_old() -> None:
        gc.freeze()
        loop.call_later(1.0, freeze_old)

    loop.call_later(1.0, freeze_old)

    # write-behind of the registrations this worker changed (simplefast/store/location.py)
    writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="store")

    def write_behind() -> None:
        rows = location.take_dirty()
        if rows:
            loop.run_in_executor(
                writer, location_store.save_encoded, cfg.data_dir, rows, loop.time(), time.time()
            )
        loop.call_later(1.0, write_behind)

    loop.call_later(1.0, write_behind)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    def reload() -> None:
        """SIGHUP: the config file is read again; log level, domains and users change at
        once (listeners, workers, capacities and auth on/off need a restart)."""
        path, overrides = cfg.source
        try:
            new = load_config(path, overrides)
        except ConfigError as exc:
            log.error("worker %d: SIGHUP ignored: %s", index, exc)
            return
        cfg.log_level, cfg.domains = new.log_level, new.domains
        configure(cfg.log_level)
        core.set_domains(cfg.effective_domains())
        if auth is not None:
            core.users = load_users(cfg.data_dir)
        log.info("worker %d: reloaded: domains %s, %d user realms", index,
                 ",".join(sorted(cfg.effective_domains())), len(core.users))  # fmt: skip

    loop.add_signal_handler(signal.SIGHUP, reload)
    if auth is None and index == 0:
        log.warning("digest authentication is off (--no-auth): every request is accepted")
    log.info("worker %d serving %s (codec: %s)", index, ", ".join(map(str, cfg.listen)), _impl.ACTIVE)
    await stop.wait()
    # Drain: no new transactions; finish the open ones, at most drain_seconds.
    core.draining = True
    deadline = loop.time() + cfg.drain_seconds
    while core.busy() and loop.time() < deadline:
        await asyncio.sleep(0.05)
    monitor.stop()
    writer.shutdown(wait=True)
    try:
        location_store.save_encoded(cfg.data_dir, location.take_dirty(), loop.time(), time.time())
    except Exception as exc:  # the supervisor saves the whole table after the workers stop anyway
        log.error("worker %d: last write-behind failed: %s", index, exc)
    for t in transports:
        t.close()
    log.info(
        "worker %d stopped: %d received, %d sent, %d unparseable, %d rejected, %d shed (503) in %d overloads,"
        " %d internal errors, %d handed off",
        index, core.stats.received, core.stats.sent, core.stats.parse_errors, core.stats.rejected,
        core.stats.shed, monitor.episodes, sum(p.internal_errors for p in protocols), core.stats.handed_off,
    )  # fmt: skip


def run_worker(cfg: Config, index: int, shared: SharedState) -> int:
    """Entry of a forked worker; returns its exit code."""
    configure(cfg.log_level)
    try:
        uvloop.run(_serve(cfg, index, shared))
    except OSError as exc:
        log.error("worker %d: %s", index, exc)
        return 1
    return 0
