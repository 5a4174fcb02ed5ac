"""One worker process: uvloop, its own SO_REUSEPORT sockets, one SIP core."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import uvloop

from simplefast import _impl
from simplefast.errors import ConfigError, SimplefastError
from simplefast.logs import RateLimited, configure, get_logger
from simplefast.msrp.chat import ChatConfig
from simplefast.msrp.focus import ChatFocus, FocusConfig
from simplefast.msrp.relay import MsrpRelay, RelayConfig
from simplefast.presence.agent import PresenceAgent
from simplefast.presence.state import ShmPresentities, mark_prefix
from simplefast.presence.winfo import encode_event
from simplefast.proxy.auth import DigestAuth
from simplefast.proxy.core import CoreConfig, SipCore, branch_prefix
from simplefast.proxy.proxy import ProxyAddress
from simplefast.server.config import Config
from simplefast.server.config import load as load_config
from simplefast.server.metrics import SYNC_SECONDS, WorkerMetrics
from simplefast.server.shared import SUB_OVERFLOW_VALUE_MAX, SharedState
from simplefast.sip.peer import transport_of
from simplefast.sip.transaction import TransactionLayer
from simplefast.store import location as location_store
from simplefast.store import presence as presence_store
from simplefast.store.offline import OfflineStore
from simplefast.store.users import load_users, nonce_secret
from simplefast.transport import handoff
from simplefast.transport.chat import ChatService
from simplefast.transport.dns import DnsClient, Resolver
from simplefast.transport.driver import CoreDriver
from simplefast.transport.msrp import MsrpService
from simplefast.transport.reuseport import (
    SCAN_BYTES,
    SlotOrder,
    attach_payload_hash,
    reuseport_tcp_socket,
    reuseport_udp_socket,
    slot_map,
)
from simplefast.transport.stream import StreamConn, StreamLimits, Streams, client_context, server_context
from simplefast.transport.udp import OverloadMonitor, UdpPort

log = get_logger(__name__)
_send_failed = RateLimited(log, "could not send")
_metrics_failed = RateLimited(log, "metrics sync failed")


def local_hosts(cfg: Config) -> frozenset[str]:
    out: set[str] = set()
    for lc in cfg.listen:
        host = f"[{lc.host}]" if ":" in lc.host else lc.host
        out.add(host.lower())
        out.add(f"{host.lower()}:{lc.port}")
    return frozenset(out)


def _family(host: str) -> str:
    return "6" if ":" in host else "4"


async def _serve(cfg: Config, index: int, shared: SharedState) -> None:
    loop = asyncio.get_running_loop()
    # the slow parts first (loading the CA store takes about 0.1 s): from the moment a
    # listener socket is bound the kernel queues datagrams on it, until the loop reads
    if shared.prefaulted:
        shared.prefault()  # map the tables' pages here too: no fault on a row's first touch
    client_tls = client_context(str(cfg.tls_ca) if cfg.tls_ca else None, cfg.tls_verify)
    server_tls = (
        server_context(str(cfg.tls_cert), str(cfg.tls_key))
        if cfg.tls_cert is not None and cfg.tls_key is not None
        else None
    )
    udp_lcs = [lc for lc in cfg.listen if lc.transport == "udp"]
    stream_lcs = [lc for lc in cfg.listen if lc.transport != "udp"]
    # the worker's own client socket per address family: forwarded requests leave from
    # it so that their responses come back to this worker (docs/process-model.md)
    client_socks: dict[str, socket.socket] = {}
    for lc in cfg.listen:
        fam = _family(lc.host)
        if fam not in client_socks:
            cs = socket.socket(socket.AF_INET6 if fam == "6" else socket.AF_INET, socket.SOCK_DGRAM)
            # as large as the listener's: the responses to a burst of forwarded requests
            # land here, and a full buffer loses them (each then costs a retransmission)
            cs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            cs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
            cs.bind((lc.host, 0))
            cs.setblocking(False)
            client_socks[fam] = cs
    primary = udp_lcs[0] if udp_lcs else cfg.listen[0]
    me = ProxyAddress(
        primary.host, primary.port, client_socks[_family(primary.host)].getsockname()[1],
        listeners=tuple((lc.transport, lc.host, lc.port) for lc in cfg.listen),
        client_ports={f: (cs.getsockname()[0], cs.getsockname()[1]) for f, cs in client_socks.items()},
    )  # fmt: skip
    core_cfg = CoreConfig(domains=cfg.effective_domains(), local_hosts=local_hosts(cfg))
    location = shared.location()
    auth = (
        DigestAuth(nonce_secret(cfg.data_dir), algorithms=cfg.auth_algorithms,
                   nonce_counts=shared.nonce_counts())  # replay protection shared by the workers
        if cfg.auth
        else None
    )  # fmt: skip
    tl = TransactionLayer(branch_prefix=branch_prefix(index))
    pres_store = ShmPresentities(shared.presentity_table())
    sub_table = shared.subscriptions_store()
    pres_store.track_dirty = sub_table.track_dirty = cfg.persist_presence
    presence = PresenceAgent(
        tl, pres_store, cfg.presence,
        contact=lambda peer: f"<{me.contact_uri(transport_of(peer), ':' in str(peer[0]))}>",
        via=lambda dest: me.sent_by(transport_of(dest), ":" in str(dest[0])),
        table=sub_table, index=index,
    )  # fmt: skip
    core = SipCore(core_cfg, location, me, tl=tl, auth=auth, users=load_users(cfg.data_dir) if auth else None,
                   presence=presence)  # fmt: skip
    core.index = index
    # The offline store's writes run in a thread of their own: a write may wait for the
    # other workers' write lock (SQLite's busy handler sleeps up to 100 ms a step), and the
    # loop must not. Its connection is made in that thread; has() reads on the loop's own.
    offline = reader = None
    im_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="offline")
    if cfg.im.offline:
        offline = im_thread.submit(open_offline, cfg).result()
        reader = open_offline(cfg)

    def im_execute(job: Callable[[], Any], done: Callable[[Any, float], None]) -> None:
        def finished(fut: concurrent.futures.Future[Any]) -> None:
            exc = fut.exception()
            loop.call_soon_threadsafe(driver._run, done, exc if exc is not None else fut.result(), "offline")

        fut = im_thread.submit(job)
        fut.add_done_callback(finished)

    offline_marks = shared.offline_table() if shared.offline_marks is not None else None
    core.enable_im(cfg.im, offline, loop.time(), execute=im_execute, reader=reader, marks=offline_marks)
    marks = shared.marks_table()

    def mark_key(event: str, resource: str, i: int) -> bytes:
        return mark_prefix(event, resource) + str(i).encode()

    def mark(event: str, resource: str, on: bool) -> None:
        key = mark_key(event, resource, index)
        if len(key) > marks.key_max:
            return  # such a resource's changes go to every worker (marked() below)
        try:
            marks.put(key, b"1") if on else marks.delete(key)
        except SimplefastError as exc:  # TableFullError: changes of that resource miss this worker
            log.warning("worker %d: subscription marks table full: %s", index, exc)

    digits = [(i, str(i).encode()) for i in range(cfg.workers)]
    base_max = marks.key_max - len(str(cfg.workers))

    def marked(event: str, resource: str) -> list[int]:
        base = mark_prefix(event, resource)  # made once: asked at every subscription made or ended
        if len(base) > base_max:
            return list(range(cfg.workers))
        get = marks.get
        return [i for i, d in digits if get(base + d) is not None]

    if len(marks):  # a replaced worker: its predecessor's marks go; adopting sets them again
        for k in marks.keys():
            if k.endswith(f"\0{index}".encode()):
                marks.delete(k)
    presence.mark, presence.marks = mark, marked
    adopted = presence.restore(loop.time())
    if adopted:
        log.info("worker %d: took back %d subscriptions", index, adopted)

    limits = StreamLimits(max_connections=cfg.tcp_max_connections, idle_seconds=cfg.tcp_idle_seconds)
    streams = Streams(loop, index, limits=limits, client_tls=client_tls)
    udp_out: list[UdpPort] = []  # by listener number
    udp_fam: dict[bool, UdpPort] = {}  # v6? -> the first UDP listener of that family
    client_fam: dict[bool, UdpPort] = {}

    def send(data: bytes, peer: Any) -> None:
        """The dispatcher: the peer names the socket or connection (simplefast/sip/peer.py)."""
        n = len(peer)
        try:
            if n == 2:
                port = udp_fam.get(":" in peer[0])
                if port is not None:
                    port.send(data, peer)
            elif n == 3:
                tag = peer[2]
                port = client_fam.get(":" in peer[0]) if tag == "c" else udp_out[tag]
                if port is not None:
                    port.send(data, (peer[0], peer[1]))
            else:
                streams.send(data, peer)
        except (OSError, ValueError, IndexError, KeyError) as exc:
            _send_failed(f"{type(exc).__name__}: {exc}", peer)

    driver = CoreDriver(core, loop, send)
    streams.driver = driver
    dns = DnsClient(cfg.dns_servers) if cfg.dns_servers else DnsClient.from_resolv_conf()
    driver.resolver = Resolver(dns, supported={"udp", "tcp", "tls"})
    core.proxy.can_resolve = True
    # bound only now: from then on the kernel gives this socket its share of the traffic
    udp_socks = []
    # one worker at a time, so that the slots of the groups follow SlotOrder's file: the
    # steering program sends a datagram naming a worker's marker to that worker's socket
    with SlotOrder(os.path.join(shared.rundir, "udp-slots")).edit() as order:
        for lc in udp_lcs:
            udp_socks.append(reuseport_udp_socket(lc.host, lc.port))
        if cfg.workers > 1 and udp_socks:
            order.append(index)
            slots = slot_map(order, cfg.workers)
            scanned = [attach_payload_hash(s, cfg.workers, slots) for s in udp_socks]
            if min(scanned) < SCAN_BYTES:
                log.warning("worker %d: the steering program scans %d octets, not %d "
                            "(net.core.optmem_max too low for the full program)", index, min(scanned),
                            SCAN_BYTES)  # fmt: skip
    for li, s in enumerate(udp_socks):
        port = UdpPort(s, driver, li, loop)
        udp_out.append(port)
        udp_fam.setdefault(":" in udp_lcs[li].host, port)
    for fam, cs in client_socks.items():
        client_fam[fam == "6"] = UdpPort(cs, driver, "c", loop)
    if cfg.overload_delay_ms:
        for port in udp_out:
            port.set_delay_limit(cfg.overload_delay_ms / 1000)
    udp_ports = [*udp_out, *client_fam.values()]
    for port in udp_ports:
        port.start()
    servers: list[asyncio.AbstractServer] = []
    for lc in stream_lcs:
        tls = server_tls if lc.transport == "tls" else None
        srv: asyncio.AbstractServer = await loop.create_server(
            lambda kind=lc.transport: StreamConn(streams, kind),
            sock=reuseport_tcp_socket(lc.host, lc.port), ssl=tls,
            ssl_handshake_timeout=limits.handshake_seconds if tls is not None else None,
        )  # fmt: skip
        servers.append(srv)
    streams.start()
    msrp_services: list[MsrpService] = []
    for lc in cfg.msrp_listen:  # the MSRP relay (RFC 4976): shared port + this worker's own
        realm = sorted(cfg.effective_domains())[0]
        own_port = lc.port + 1 + index
        relay = MsrpRelay(
            RelayConfig(scheme=lc.transport, host=lc.host, port=own_port, realm=realm, require_auth=cfg.auth,
                        other_ports=(lc.port,),
                        algorithms=tuple(a for a in cfg.auth_algorithms if a in ("MD5", "SHA-256")),
                        min_expires=cfg.msrp.min_expires, default_expires=cfg.msrp.default_expires,
                        max_expires=cfg.msrp.max_expires,
                        transaction_timeout=float(cfg.msrp.transaction_timeout),
                        relay_chunk_bytes=cfg.msrp.relay_chunk_bytes,
                        forward_other_methods=cfg.msrp.forward_other_methods),
            core.users.get(realm, {}), secret=nonce_secret(cfg.data_dir) if cfg.auth else os.urandom(32),
            nonce_counts=shared.nonce_counts() if cfg.auth else None,
        )  # fmt: skip
        svc = MsrpService(loop, relay, client_tls=client_tls)
        tls = server_tls if lc.transport == "msrps" else None
        shared_sock = reuseport_tcp_socket(lc.host, lc.port)
        servers.append(await loop.create_server(svc.protocol, sock=shared_sock, ssl=tls))
        servers.append(await loop.create_server(svc.protocol, lc.host, own_port, ssl=tls))
        msrp_services.append(svc)
    chat_svc: ChatService | None = None
    if cfg.chat.enabled:  # the RFC 7701 chat focus: its own MSRP port per worker
        cc = cfg.chat
        chat_host = cc.msrp_host or primary.host
        focus = ChatFocus(
            FocusConfig(rooms=tuple(cc.rooms), room_domains=tuple(cc.room_domains),
                        msrp_scheme="msrps" if cc.tls else "msrp", msrp_host=chat_host,
                        msrp_port=cc.msrp_port + index,
                        room=ChatConfig(max_participants=cc.max_participants, max_message=cc.max_message,
                                        private_messages=cc.private_messages, nicknames=cc.nicknames,
                                        max_nickname=cc.max_nickname),
                        max_rooms=cc.max_rooms, max_sessions=cc.max_sessions,
                        bind_timeout=float(cc.bind_timeout), workers=cfg.workers,
                        relay=cc.relay or None, relay_user=cc.relay_user,
                        relay_password=_secret(cc.relay_password_file), relay_pool=cc.relay_pool),
            index=index,
            contact=lambda peer: me.contact_uri(transport_of(peer), ":" in str(peer[0])),
            via=lambda dest: me.sent_by(transport_of(dest), ":" in str(dest[0])),
        )  # fmt: skip
        core.enable_focus(focus)
        chat_svc = ChatService(loop, focus, driver, client_tls=client_tls)
        driver.also = chat_svc.flush
        chat_svc.start()  # with a relay: connect to it and AUTH the first session URIs
        servers.append(await loop.create_server(chat_svc.protocol, chat_host, cc.msrp_port + index,
                                                ssl=server_tls if cc.tls else None))  # fmt: skip
    ho: handoff.Handoff | None = None
    if cfg.workers > 1:  # messages between workers (transport/handoff.py)
        ring_sock = handoff.bind(shared.rundir, index)
        _, ho = await loop.create_datagram_endpoint(
            lambda: handoff.Handoff(
                ring_sock, shared.rundir, index, cfg.workers,
                on_ring=driver.datagram,
                on_response=lambda data, peer: driver.datagram(data, peer, 1, reliable=len(peer) == 4),
                on_send=lambda data, peer, origin: streams.send(data, peer, origin),
                on_failed=driver.undeliverable,
                on_dialog=lambda data, peer: driver.datagram(data, peer, 1, reliable=len(peer) == 4),
                on_changed=driver.presence_changed,
                on_watcher=driver.presence_watcher,
                on_batch=driver.hold,
            ),
            sock=ring_sock,
        )  # fmt: skip
        core.handoff = ho.ring
        core.handoff_limit = cfg.workers - 1
        core.route_response = ho.response
        core.route_dialog = ho.dialog
        presence.broadcast = ho.changed
        presence.send_watcher = lambda i, ev: ho.watcher(i, encode_event(ev)) if ho is not None else None
        streams.hand_to = ho.send_on
        streams.report_failed = ho.failed
    monitor = OverloadMonitor(core, loop, udp_socks[0] if udp_socks else client_socks[_family(primary.host)],
                              high=cfg.overload_queue_bytes or 1 << 62)  # fmt: skip
    if cfg.overload_queue_bytes and udp_socks:
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

    # A subscription row that fits no shared table (longer than subscription_row_bytes with
    # the overflow table full, or longer than its values) leaves the subscription in this
    # worker only: said every 5 s while it happens (ShmSubscriptions.full counts the writes)
    unshared = [0]

    def check_unshared() -> None:
        n = sub_table.full
        if n > unshared[0]:
            log.warning("worker %d: %d subscription row writes did not fit the shared tables (rows longer"
                        " than presence.subscription_row_bytes = %d with the overflow table full, or longer"
                        " than %d bytes): those subscriptions live in this worker only and do not survive"
                        " its death or a restart", index, n - unshared[0], cfg.subscription_row_bytes,
                        SUB_OVERFLOW_VALUE_MAX)  # fmt: skip
            unshared[0] = n
        loop.call_later(5.0, check_unshared)

    loop.call_later(5.0, check_unshared)

    # write-behind of the registrations this worker changed (simplefast/store/location.py)
    writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="store")

    def write_behind() -> None:
        rows = location.take_dirty()
        if rows:
            loop.run_in_executor(
                writer, location_store.save_encoded, cfg.data_dir, rows, loop.time(), time.time()
            )
        prows, srows = pres_store.take_dirty(), sub_table.take_dirty()
        if prows or srows:
            loop.run_in_executor(
                writer, presence_store.save, cfg.data_dir, prows, srows, loop.time(), time.time()
            )
        loop.call_later(1.0, write_behind)

    location.track_dirty = cfg.persist_registrations
    core.enable_fast_register(shared.tag_key)  # after track_dirty: it takes the write-behind map
    core.enable_fast_relay()
    if core.enable_fast_publish():  # after enable_fast_register: it takes the shared tag key
        core.fast_pub.watch_table(presence.notifier.watchers, marks, cfg.workers)  # as marked() reads them
    core.enable_fast_subscribe()  # after enable_fast_register: it takes the shared tag key
    if cfg.persist_registrations or cfg.persist_presence:
        loop.call_later(1.0, write_behind)
    wm: WorkerMetrics | None = None
    if cfg.metrics_listen is not None:  # Prometheus (server/metrics.py): counters synced twice a second
        wm = WorkerMetrics(core, driver=driver, msrp_services=msrp_services, chat=chat_svc)
        presence.on_fanout = wm.fanout

        def sync_metrics() -> None:
            try:
                if wm is not None:
                    wm.sync()
            except Exception as exc:  # never the worker's end
                _metrics_failed(f"{type(exc).__name__}: {exc}", "metrics")
            loop.call_later(SYNC_SECONDS, sync_metrics)

        loop.call_later(SYNC_SECONDS, sync_metrics)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    def reload() -> None:
        """SIGHUP: the config file is read again; log level, domains, users and the
        limits (TCP idle time and connection count, overload threshold, drain time, DNS
        servers) change at once. Listeners, workers, TLS files, table capacities and
        auth on/off need a restart."""
        path, overrides = cfg.source
        try:
            new = load_config(path, overrides)
        except ConfigError as exc:
            log.error("worker %d: SIGHUP ignored: %s", index, exc)
            return
        cfg.log_level, cfg.domains = new.log_level, new.domains
        configure(cfg.log_level)
        core.set_domains(cfg.effective_domains())
        removed: list[str] = []
        if auth is not None:
            old_users, core.users = core.users, load_users(cfg.data_dir)
            removed = [
                f"sip:{u}@{d}" for d, us in old_users.items() for u in us if u not in core.users.get(d, {})
            ]

        for svc in msrp_services:
            svc.relay.users = core.users.get(svc.relay.config.realm, {})

        def presence_reload(_: object, now: float) -> None:  # policies and users: RFC 3857 events
            changed = presence.reconfigured(new.presence, removed, now)
            if changed:
                log.info("worker %d: %d subscriptions changed by the reload", index, changed)

        driver._run(presence_reload, None, "reload")
        limits.idle_seconds, limits.max_connections = new.tcp_idle_seconds, new.tcp_max_connections
        cfg.drain_seconds = new.drain_seconds
        if new.overload_queue_bytes != cfg.overload_queue_bytes and udp_socks:
            cfg.overload_queue_bytes = new.overload_queue_bytes
            monitor.stop()
            core.overloaded = False
            if new.overload_queue_bytes:
                monitor.high = new.overload_queue_bytes
                monitor.low = min(monitor.low, monitor.high)
                monitor.start()
        if new.overload_delay_ms != cfg.overload_delay_ms:
            cfg.overload_delay_ms = new.overload_delay_ms
            for port in udp_out:
                port.set_delay_limit(cfg.overload_delay_ms / 1000)
        if new.dns_servers != cfg.dns_servers:
            cfg.dns_servers = new.dns_servers
            old = driver.resolver
            client = DnsClient(cfg.dns_servers) if cfg.dns_servers else DnsClient.from_resolv_conf()
            driver.resolver = Resolver(client, supported={"udp", "tcp", "tls"})
            if old is not None:  # lookups in flight finish on the old one first
                loop.call_later(30.0, lambda: loop.create_task(old.aclose()))
        log.info("worker %d: reloaded: domains %s, %d user realms, tcp idle %.0f s, max %d connections,"
                 " overload %d bytes, %d ms", index, ",".join(sorted(cfg.effective_domains())),
                 len(core.users),
                 limits.idle_seconds, limits.max_connections, cfg.overload_queue_bytes,
                 cfg.overload_delay_ms)  # fmt: skip

    loop.add_signal_handler(signal.SIGHUP, reload)
    # blocked since the fork (server/supervisor.py): one that came during start-up runs now
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
    if auth is None and index == 0:
        log.warning("digest authentication is off (--no-auth): every request is accepted")
    log.info("worker %d serving %s (codec: %s)", index, ", ".join(map(str, cfg.listen)), _impl.ACTIVE)
    await stop.wait()
    # Drain: no new transactions; finish the open ones, at most drain_seconds.
    core.draining = True
    if not cfg.persist_presence:  # nothing survives the stop: watchers should subscribe again
        driver.deactivate_presence()
    if chat_svc is not None:  # chat rooms live in memory: every participant gets a BYE
        chat_svc.step(lambda now: chat_svc.focus.close_all())
    deadline = loop.time() + cfg.drain_seconds
    while core.busy() and loop.time() < deadline:
        await asyncio.sleep(0.05)
    monitor.stop()
    for srv in servers:
        srv.close()
    streams.close_all()
    if chat_svc is not None:
        chat_svc.close()
        fs = chat_svc.focus.stats
        log.info(
            "worker %d chat focus: %d INVITEs, %d joined, %d refused, %d left, %d messages relayed,"
            " %d refused, %d BYEs sent, %d internal errors",
            index, fs.invites, fs.joined, fs.refused, fs.left, fs.messages, fs.refused_messages, fs.byes_sent,
            chat_svc.internal_errors,
        )  # fmt: skip
    for svc in msrp_services:
        svc.close_all()
        log.info(
            "worker %d MSRP relay: %d connections accepted, %d opened (%d failed), %d sessions,"
            " %d back-pressure pauses, %d internal errors",
            index, svc.accepted, svc.opened, svc.connect_failures, svc.sessions, svc.pauses,
            svc.internal_errors,
        )  # fmt: skip
    if driver.resolver is not None:
        await driver.resolver.aclose()
    if ho is not None:
        ho.close()
    writer.shutdown(wait=True)
    try:
        if cfg.persist_registrations:
            location_store.save_encoded(cfg.data_dir, location.take_dirty(), loop.time(), time.time())
        if cfg.persist_presence:
            presence_store.save(cfg.data_dir, pres_store.take_dirty(), sub_table.take_dirty(), loop.time(),
                                time.time())  # fmt: skip
    except Exception as exc:  # the supervisor saves the whole table after the workers stop anyway
        log.error("worker %d: last write-behind failed: %s", index, exc)
    for port in udp_ports:
        port.close()
    driver.close()
    if offline is not None:
        im_thread.submit(offline.close).result()
    if reader is not None:
        reader.close()
    im_thread.shutdown(wait=True)
    if wm is not None:
        wm.sync()  # the last counts of this process stay in its files for the supervisor's scrape
    ims = core.im.stats if core.im is not None else None
    if ims is not None:
        log.info(
            "worker %d IM: %d MESSAGEs stored offline (%d refused), %d delivered later (%d failed),"
            " %d too large, %d URI lists (%d refused): %d copies sent, %d failed; %d IMDNs sent",
            index, ims.stored, ims.store_refused, ims.delivered, ims.delivery_failed, ims.too_large,
            ims.lists, ims.list_refused, ims.list_sent, ims.list_failed, ims.imdn_sent,
        )  # fmt: skip
    notifier = presence.notifier
    log.info(
        "worker %d presence: %d PUBLISH accepted, %d documents composed, %d subscriptions held,"
        " %d NOTIFYs sent (%d waited for the window, %d retransmitted, %d timed out);"
        " subscriptions ended: %s",
        index, presence.published + (core.fast_pub.answered if core.fast_pub is not None else 0),
        presence.publications.composed, notifier.count(), notifier.notifies_sent,
        notifier.notifies_queued, notifier.txns.retransmissions, notifier.txns.timeouts,
        ", ".join(f"{n} {reason}" for reason, n in notifier.ended.most_common()) or "none",
    )  # fmt: skip
    log.info(
        "worker %d stopped: %d received, %d sent, %d unparseable, %d rejected, %d shed (503) in %d overloads"
        " and %d late batches, %d internal errors, %d handed off;"
        " REGISTER fast path: %d answered, %d declined;"
        " PUBLISH fast path: %d answered, %d declined;"
        " SUBSCRIBE fast path: %d answered, %d declined;"
        " MESSAGE relay: %d relayed, %d declined, %d retransmissions absorbed, %d timed out;"
        " connections: %d accepted, %d opened, %d refused, %d failed to open",
        index, core.stats.received, core.stats.sent, core.stats.parse_errors, core.stats.rejected,
        core.stats.shed, monitor.episodes, sum(p.late_batches for p in udp_out), driver.internal_errors,
        core.stats.handed_off,
        *((core.fast.answered, core.fast.declined) if core.fast is not None else (0, 0)),
        *((core.fast_pub.answered, core.fast_pub.declined) if core.fast_pub is not None else (0, 0)),
        *((core.fast_sub.answered, core.fast_sub.declined) if core.fast_sub is not None else (0, 0)),
        *((r.relayed, r.declined, r.absorbed, r.timeouts) if (r := core.relay) is not None else (0, 0, 0, 0)),
        streams.accepted, streams.opened, streams.refused, streams.connect_failures,
    )  # fmt: skip


def _secret(path: str) -> str:
    """The first line of a password file ("" for no file)."""
    if not path:
        return ""
    with open(path, encoding="utf-8") as f:
        return f.readline().rstrip("\r\n")


def open_offline(cfg: Config) -> OfflineStore:
    """The offline MESSAGE store in the data directory (each worker opens its own)."""
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    im = cfg.im
    return OfflineStore(str(cfg.data_dir / "offline.sqlite3"), max_age=im.offline_max_age,
                        per_user=im.offline_per_user, max_bytes=im.max_body,
                        durable=im.offline_durable)  # fmt: skip


def run_worker(cfg: Config, index: int, shared: SharedState) -> int:
    """Entry of a forked worker; returns its exit code."""
    configure(cfg.log_level)
    try:
        uvloop.run(_serve(cfg, index, shared))
    except OSError as exc:
        log.error("worker %d: %s", index, exc)
        return 1
    return 0
