"""Prometheus metrics (``--listen metrics:HOST:PORT``), aggregated over every worker.

Theory of operation
-------------------
The library is ``prometheus-client`` in its multiprocess mode: each process
writes its own values to memory-mapped files in ``<rundir>/metrics`` (the
supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` before it forks anything), and
the metrics process (a child of the supervisor, like the workers) merges them
at every scrape with ``MultiProcessCollector``: counters summed over every
process that ever ran (a replaced worker's counts stay), gauges summed over
the live ones (``livesum``; the supervisor calls ``mark_process_dead`` for a
worker that exits).

The hot paths do not touch the library. They keep plain integer counters
(``SipCore.stats``, the notifier's, the fast paths', the MSRP services') and
``WorkerMetrics.sync`` adds what moved since the last call to the library's
counters, every ``SYNC_SECONDS`` on the worker's loop, and once more when the
worker stops. A scrape is therefore at most that old. The fan-out histogram
is the exception: one ``observe`` per presence change that sent NOTIFYs.

The shared-memory tables (location, presentities, subscriptions) are read at
scrape time by the metrics process itself (``TableCollector``): their headers
hold the entry count and capacity, readable from any process that maps them.

``prometheus_client`` is imported only inside the functions here: it picks its
multiprocess value class at import time, from the environment.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable
from typing import Any

from simplefast.logs import get_logger

log = get_logger(__name__)

SYNC_SECONDS = 0.5
ENV = "PROMETHEUS_MULTIPROC_DIR"
FANOUT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "6xx")


def prepare(rundir: str) -> str:
    """Make the multiprocess directory and point the library at it (before any fork)."""
    path = os.path.join(rundir, "metrics")
    os.makedirs(path, exist_ok=True)
    os.environ[ENV] = path
    return path


class _Metrics:
    """The metric objects of a worker (made once per process)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        c, g = Counter, Gauge
        self.requests = c("simplefast_sip_requests", "SIP requests received, by method", ["method"],
                          registry=None)  # fmt: skip
        self.responses = c("simplefast_sip_responses",
                           "SIP responses the server sent of its own, by method and class",
                           ["method", "class"], registry=None)  # fmt: skip
        self.parse_errors = c("simplefast_sip_parse_errors", "SIP messages that did not parse", registry=None)
        self.rejected = c("simplefast_sip_rejected", "SIP requests that failed validation", registry=None)
        self.shed = c(
            "simplefast_sip_overload_503", "new requests answered 503 under overload", registry=None
        )
        self.retransmissions = c("simplefast_sip_retransmissions",
                                 "retransmissions: absorbed (received again) and sent (timers A, E, G)",
                                 ["direction"], registry=None)  # fmt: skip
        self.in_flight = g("simplefast_sip_transactions", "SIP transactions in flight", ["kind"],
                           multiprocess_mode="livesum", registry=None)  # fmt: skip
        self.handed_off = c("simplefast_handed_off", "messages handed to another worker", registry=None)
        self.subscriptions = g("simplefast_subscriptions", "subscriptions held, by event and state",
                               ["event", "state"], multiprocess_mode="livesum", registry=None)  # fmt: skip
        self.notifies = c("simplefast_notifies", "NOTIFYs: sent, retransmitted, timed out, failed (481, 408, "
                          "timeout, transport), paced (held for the pacing interval)", ["outcome"],
                          registry=None)  # fmt: skip
        self.ended = c("simplefast_subscriptions_ended", "subscriptions ended, by reason", ["reason"],
                       registry=None)  # fmt: skip
        self.publishes = c("simplefast_publish_accepted", "PUBLISH requests accepted", registry=None)
        self.fanout = Histogram("simplefast_fanout_seconds",
                                "time to send the NOTIFYs of one presence change",
                                buckets=FANOUT_BUCKETS, registry=None)  # fmt: skip
        self.messages = c("simplefast_messages", "MESSAGEs: relayed (fast path and proxy), stored offline, "
                          "delivered later, delivery failed", ["outcome"], registry=None)  # fmt: skip
        self.msrp_sessions = c(
            "simplefast_msrp_sessions", "MSRP relay sessions created (AUTH)", registry=None
        )
        self.msrp_bytes = c("simplefast_msrp_bytes", "octets the MSRP relay wrote", registry=None)
        self.msrp_connections = c("simplefast_msrp_connections", "MSRP connections accepted and opened",
                                  ["direction"], registry=None)  # fmt: skip
        self.chat = c("simplefast_chat", "chat focus (RFC 7701): joined, left, messages relayed, refused",
                      ["outcome"], registry=None)  # fmt: skip
        self.internal_errors = c("simplefast_internal_errors", "bugs of ours caught and counted",
                                 registry=None)  # fmt: skip


_made: _Metrics | None = None


def _metrics() -> _Metrics:
    global _made
    if _made is None:
        _made = _Metrics()
    return _made


class WorkerMetrics:
    """A worker's counters, added to the library's every ``SYNC_SECONDS`` (``sync``).

    ``sources`` maps a name to a function giving the counter's total now; every
    name is one (metric, labels) pair, see ``_COUNTERS``.
    """

    def __init__(
        self, core: Any, *, driver: Any, msrp_services: Iterable[Any] = (), chat: Any = None
    ) -> None:
        self.m = _metrics()
        self.core = core
        self.driver = driver
        self.msrp = list(msrp_services)
        self.chat = chat
        self._last: dict[Any, int] = {}

    def _add(self, key: Any, total: int, inc: Callable[[float], None]) -> None:
        delta = total - self._last.get(key, 0)
        if delta > 0:
            inc(delta)
            self._last[key] = total

    def sync(self) -> None:
        m, core, add = self.m, self.core, self._add
        st = core.stats
        methods = dict(st.methods)
        if core.fast is not None:
            methods["REGISTER"] = methods.get("REGISTER", 0) + core.fast.answered
        answered = dict(st.answered)
        if core.fast is not None:
            answered[("REGISTER", 2)] = answered.get(("REGISTER", 2), 0) + core.fast.answered
        fs = core.fast_sub
        if fs is not None:
            methods["SUBSCRIBE"] = methods.get("SUBSCRIBE", 0) + fs.answered
            answered[("SUBSCRIBE", 2)] = answered.get(("SUBSCRIBE", 2), 0) + fs.answered
        fp = core.fast_pub
        if fp is not None:
            methods["PUBLISH"] = methods.get("PUBLISH", 0) + fp.answered
            answered[("PUBLISH", 2)] = answered.get(("PUBLISH", 2), 0) + fp.answered
        relayed = st.messages_forwarded
        if core.relay is not None:
            methods["MESSAGE"] = methods.get("MESSAGE", 0) + core.relay.relayed
            relayed += core.relay.relayed
        for method, n in methods.items():
            add(("req", method), n, m.requests.labels(method).inc)
        for (method, cls), n in answered.items():
            label = _CLASSES[cls - 1] if 1 <= cls <= 6 else "other"
            add(("resp", method, cls), n, m.responses.labels(method, label).inc)
        add("parse", st.parse_errors, m.parse_errors.inc)
        add("rejected", st.rejected, m.rejected.inc)
        add("shed", st.shed, m.shed.inc)
        add("handed", st.handed_off, m.handed_off.inc)
        tl = core.tl
        add(("rtx", "absorbed"), tl.retransmissions_absorbed, m.retransmissions.labels("absorbed").inc)
        sent = tl.retransmitted
        if core.relay is not None:
            add(("rtx", "absorbed-relay"), core.relay.absorbed, m.retransmissions.labels("absorbed").inc)
        m.in_flight.labels("server").set(len(tl.server))
        m.in_flight.labels("client").set(len(tl.client))
        add("internal", self.driver.internal_errors, m.internal_errors.inc)
        presence = core.presence
        if presence is not None:
            n = presence.notifier
            sent += n.txns.retransmissions
            add(("notify", "sent"), n.notifies_sent, m.notifies.labels("sent").inc)
            add(("notify", "retransmitted"), n.txns.retransmissions, m.notifies.labels("retransmitted").inc)
            add(("notify", "timed-out"), n.txns.timeouts, m.notifies.labels("timed-out").inc)
            add(("notify", "paced"), n.paced, m.notifies.labels("paced").inc)
            # SUBSCRIBEs answered again by the notifier (copies of what the fast path took,
            # which have no server transaction to absorb them)
            add(("rtx", "absorbed-subscribe"), n.retransmissions, m.retransmissions.labels("absorbed").inc)
            failed = 0
            for reason, k in list(n.ended.items()):
                add(("ended", reason), k, m.ended.labels(reason).inc)
                if reason.startswith("notify"):  # 481, 408, timeout, transport failure
                    failed += k
            add(("notify", "failed"), failed + sum(n.kept.values()), m.notifies.labels("failed").inc)
            for (event, state), k in list(n.held_by.items()):
                m.subscriptions.labels(event, state).set(k)
            add("publish", presence.published + (fp.answered if fp is not None else 0), m.publishes.inc)
        add(("rtx", "sent"), sent, m.retransmissions.labels("sent").inc)
        add(("msg", "relayed"), relayed, m.messages.labels("relayed").inc)
        im = core.im
        if im is not None:
            s = im.stats
            add(("msg", "stored"), s.stored, m.messages.labels("stored").inc)
            add(("msg", "delivered"), s.delivered, m.messages.labels("delivered-later").inc)
            add(("msg", "failed"), s.delivery_failed, m.messages.labels("delivery-failed").inc)
        for i, svc in enumerate(self.msrp):
            add(("msrp-s", i), svc.sessions, m.msrp_sessions.inc)
            add(("msrp-b", i), svc.bytes_out, m.msrp_bytes.inc)
            add(("msrp-a", i), svc.accepted, m.msrp_connections.labels("accepted").inc)
            add(("msrp-o", i), svc.opened, m.msrp_connections.labels("opened").inc)
        if self.chat is not None:
            fs = self.chat.focus.stats
            for name in ("joined", "left", "messages", "refused"):
                add(("chat", name), getattr(fs, name), m.chat.labels(name).inc)

    def fanout(self, seconds: float) -> None:
        self.m.fanout.observe(seconds)


def worker_restarted() -> None:
    """The supervisor replaced a worker (counted in the supervisor's own file)."""
    from prometheus_client import Counter

    global _restarts
    if _restarts is None:
        _restarts = Counter("simplefast_worker_restarts", "workers replaced after they died", registry=None)
    _restarts.inc()


_restarts: Any = None


def process_dead(pid: int) -> None:
    """A worker exited: its live gauges no longer count."""
    from prometheus_client import multiprocess

    try:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
    except OSError as exc:
        log.warning("metrics: could not drop the gauges of pid %d: %s", pid, exc)


class TableCollector:
    """Fill and capacity of the shared-memory tables, read at scrape time."""

    def __init__(self, tables: dict[str, Any]) -> None:
        self.tables = tables

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import GaugeMetricFamily

        count = GaugeMetricFamily(
            "simplefast_table_entries", "entries in a shared-memory table", labels=["table"]
        )
        cap = GaugeMetricFamily(
            "simplefast_table_capacity", "capacity of a shared-memory table", labels=["table"]
        )
        for name, table in self.tables.items():
            st = table.stats()
            count.add_metric([name], st["count"])
            cap.add_metric([name], st["capacity"])
        yield count
        yield cap


def serve(host: str, port: int, tables: dict[str, Any]) -> int:
    """The metrics process: HTTP on ``host:port``, ``/metrics`` (every other path 404),
    until SIGTERM."""
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from prometheus_client import CollectorRegistry, make_wsgi_app, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(TableCollector(tables))
    app = make_wsgi_app(registry)

    def only_metrics(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"only /metrics here\n"]
        return app(environ, start_response)

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

    class Server(WSGIServer):
        address_family = __import__("socket").AF_INET6 if ":" in host else __import__("socket").AF_INET
        allow_reuse_address = True

    httpd = make_server(host, port, only_metrics, server_class=Server, handler_class=Quiet)
    httpd.timeout = 0.5
    stop = False

    def on_term(_sig: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    log.info("metrics on http://%s:%d/metrics", f"[{host}]" if ":" in host else host, port)
    started = time.monotonic()
    while not stop:
        httpd.handle_request()
    httpd.server_close()
    log.debug("metrics process ran %.1f s", time.monotonic() - started)
    return 0
