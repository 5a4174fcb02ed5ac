"""Server configuration: TOML file (``tomllib``) overlaid by the command line.

Every key is checked here; a bad value raises ``ConfigError`` whose message
names the key and the problem (the CLI prints it on one line, exit code 2).
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simplefast.errors import ConfigError
from simplefast.im.agent import ImConfig
from simplefast.logs import LEVELS
from simplefast.msrp.relay import parse_msrp_uri
from simplefast.presence.agent import PresenceConfig
from simplefast.presence.subscribe import POLICIES

TRANSPORTS = ("udp", "tcp", "tls", "msrp", "msrps", "metrics")


@dataclass(frozen=True, slots=True)
class Listen:
    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


def parse_listen(text: str, key: str = "listen") -> Listen:
    """``udp:127.0.0.1:5060``, ``tcp:[::1]:5060``."""
    transport, sep, rest = text.partition(":")
    if not sep or transport.lower() not in TRANSPORTS:
        raise ConfigError(
            f"{key}: {text!r}: expected TRANSPORT:HOST:PORT with TRANSPORT one of "
            "udp, tcp, tls, msrp, msrps, metrics"
        )
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0 or rest[end + 1 : end + 2] != ":":
            raise ConfigError(f"{key}: {text!r}: IPv6 hosts are written [addr]:port")
        host, port_text = rest[1:end], rest[end + 2 :]
    else:
        host, sep, port_text = rest.rpartition(":")
        if not sep or not host:
            raise ConfigError(f"{key}: {text!r}: expected TRANSPORT:HOST:PORT")
        if ":" in host:
            raise ConfigError(f"{key}: {text!r}: IPv6 hosts are written [addr]:port")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{key}: {text!r}: port must be 1-65535")
    return Listen(transport.lower(), host, int(port_text))


def _dns_server(text: str) -> tuple[str, int]:
    """``127.0.0.1:53``, ``[::1]:5353`` or a bare address (port 53)."""
    host, port = text, "53"
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[1:end], text[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            raise ConfigError(f"server.dns_servers: {text!r}: IPv6 servers are written [addr]:port")
        port = rest[1:] or "53"
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"server.dns_servers: {text!r}: not an IP address") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"server.dns_servers: {text!r}: port must be 1-65535")
    return host, int(port)


@dataclass(slots=True)
class Config:
    listen: list[Listen] = field(default_factory=lambda: [Listen("udp", "127.0.0.1", 5060)])
    # MSRP relay listeners (msrp:/msrps: in listen); each worker also takes port + 1 + index
    msrp_listen: list[Listen] = field(default_factory=list)
    # Prometheus metrics (metrics: in listen; server/metrics.py), served by the supervisor's child
    metrics_listen: Listen | None = None
    domains: list[str] = field(default_factory=list)
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    data_dir: Path = Path("state")
    auth: bool = True
    auth_algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    log_level: str = "info"
    drain_seconds: float = 5.0
    location_capacity: int = 50_000
    persist_registrations: bool = True  # write-behind to <data_dir>/location.sqlite3
    persist_presence: bool = True  # write-behind to <data_dir>/presence.sqlite3
    prefault_tables: bool = True  # touch every page of the shared tables at start (no page fault per new row)
    overload_queue_bytes: int = 0  # 0: no load shedding (see README: it lost goodput when measured)
    # shed new requests (503) while the batch being read waited longer than this in the kernel
    # (transport/udp.py UdpPort.set_delay_limit); 0: never. Off when overload_queue_bytes is set.
    overload_delay_ms: int = 100
    tls_cert: Path | None = None  # PEM certificate chain of tls: listeners
    tls_key: Path | None = None  # its private key (PEM)
    tls_ca: Path | None = None  # CAs trusted for connections we open (default: the system's)
    tls_verify: bool = True  # check the certificate of servers we connect to
    tcp_idle_seconds: float = 3600.0  # a TCP/TLS connection idle this long is closed
    tcp_max_connections: int = 16384  # per worker
    dns_servers: list[tuple[str, int]] = field(default_factory=list)  # empty: /etc/resolv.conf
    presence: PresenceConfig = field(default_factory=PresenceConfig)  # the [presence] table
    im: ImConfig = field(default_factory=ImConfig)  # the [im] table
    msrp: MsrpSettings = field(default_factory=lambda: MsrpSettings())  # the [msrp] table
    chat: ChatSettings = field(default_factory=lambda: ChatSettings())  # the [chat] table
    # shared-memory tables of presence (sizes fixed at start)
    presentity_capacity: int = 20_000
    subscription_capacity: int = 200_000
    # one subscription's row in the shared table (a longer one goes to a small overflow
    # table: simplefast/server/shared.py)
    subscription_row_bytes: int = 200
    presentity_state_bytes: int = 8192  # publications and composed document of one presentity
    # where it came from, for SIGHUP: the file and the command-line values
    source: tuple[Path | None, dict[str, Any]] = (None, {})

    def effective_domains(self) -> frozenset[str]:
        """Configured domains; without any, the listen hosts stand for the domain."""
        if self.domains:
            return frozenset(d.lower() for d in self.domains)
        return frozenset(lc.host.lower() for lc in self.listen)


_KEYS = {
    "overload_queue_bytes",
    "overload_delay_ms",
    "listen",
    "domains",
    "workers",
    "data_dir",
    "auth",
    "auth_algorithms",
    "log_level",
    "drain_seconds",
    "location_capacity",
    "tls_cert",
    "tls_key",
    "tls_ca",
    "tls_verify",
    "tcp_idle_seconds",
    "tcp_max_connections",
    "dns_servers",
    "persist_registrations",
    "prefault_tables",
    "persist_presence",
}


def load(path: Path | None, overrides: dict[str, Any]) -> Config:
    """Read ``path`` (if given), then apply ``overrides`` (command-line values that were set)."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc
        server = raw.get("server", {})
        if not isinstance(server, dict):
            raise ConfigError("server: must be a table")
        unknown = set(server) - _KEYS
        if unknown:
            raise ConfigError(f"server.{sorted(unknown)[0]}: unknown key")
        presence_raw = raw.get("presence", {})
        if not isinstance(presence_raw, dict):
            raise ConfigError("presence: must be a table")
        im_raw = raw.get("im", {})
        if not isinstance(im_raw, dict):
            raise ConfigError("im: must be a table")
        msrp_raw = raw.get("msrp", {})
        if not isinstance(msrp_raw, dict):
            raise ConfigError("msrp: must be a table")
        chat_raw = raw.get("chat", {})
        if not isinstance(chat_raw, dict):
            raise ConfigError("chat: must be a table")
        unknown = set(raw) - {"server", "presence", "im", "msrp", "chat"}
        if unknown:
            raise ConfigError(
                f"{sorted(unknown)[0]}: unknown table (expected [server], [presence], [im], [msrp], [chat])"
            )
        raw = dict(server)
    else:
        presence_raw = {}
        im_raw = {}
        msrp_raw = {}
        chat_raw = {}
    presence_raw = dict(presence_raw)
    im_raw = dict(im_raw)
    for key in _IM_OVERRIDES:  # command-line values of [im] keys
        if overrides.get(key) is not None:
            im_raw[key] = overrides[key]
    overrides = {k: v for k, v in overrides.items() if k not in _IM_OVERRIDES}
    for key in _PRESENCE_OVERRIDES:  # command-line values of [presence] keys
        if overrides.get(key) is not None:
            presence_raw[key] = overrides[key]
    overrides = {k: v for k, v in overrides.items() if k not in _PRESENCE_OVERRIDES}
    raw.update({k: v for k, v in overrides.items() if v is not None})
    cfg = Config()
    cfg.source = (path, dict(overrides))
    if "listen" in raw:
        items = raw["listen"]
        if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
            raise ConfigError("server.listen: must be a non-empty list of strings like 'udp:127.0.0.1:5060'")
        parsed = [parse_listen(i, "server.listen") for i in items]
        cfg.msrp_listen = [lc for lc in parsed if lc.transport in ("msrp", "msrps")]
        metrics = [lc for lc in parsed if lc.transport == "metrics"]
        if len(metrics) > 1:
            raise ConfigError("server.listen: one metrics: listener at most")
        cfg.metrics_listen = metrics[0] if metrics else None
        cfg.listen = [lc for lc in parsed if lc.transport not in ("msrp", "msrps", "metrics")]
        if not cfg.listen:
            raise ConfigError("server.listen: needs at least one SIP listener (udp, tcp or tls)")
    if "domains" in raw:
        d = raw["domains"]
        if not isinstance(d, list) or not all(isinstance(i, str) and i for i in d):
            raise ConfigError("server.domains: must be a list of domain names")
        cfg.domains = list(d)
    if "workers" in raw:
        w = raw["workers"]
        if not isinstance(w, int) or isinstance(w, bool) or not 1 <= w <= 256:
            raise ConfigError(f"server.workers: {w!r}: must be an integer 1-256")
        cfg.workers = w
    if "data_dir" in raw:
        if not isinstance(raw["data_dir"], str | Path):
            raise ConfigError("server.data_dir: must be a path")
        cfg.data_dir = Path(raw["data_dir"])
    if "auth" in raw:
        if not isinstance(raw["auth"], bool):
            raise ConfigError("server.auth: must be true or false")
        cfg.auth = raw["auth"]
    if "auth_algorithms" in raw:
        algs = raw["auth_algorithms"]
        if isinstance(algs, str):
            algs = [a.strip() for a in algs.split(",")]
        if not isinstance(algs, list) or not algs or any(a not in ("SHA-256", "MD5") for a in algs):
            raise ConfigError(f"server.auth_algorithms: {algs!r}: must list SHA-256 and/or MD5")
        cfg.auth_algorithms = tuple(algs)
    if "log_level" in raw:
        lv = raw["log_level"]
        if not isinstance(lv, str) or lv.lower() not in LEVELS:
            raise ConfigError(f"server.log_level: {lv!r}: must be one of {', '.join(LEVELS)}")
        cfg.log_level = lv.lower()
    if "location_capacity" in raw:
        lc = raw["location_capacity"]
        if not isinstance(lc, int) or isinstance(lc, bool) or not 16 <= lc <= 100_000_000:
            raise ConfigError(f"server.location_capacity: {lc!r}: must be an integer 16-100000000")
        cfg.location_capacity = lc
    if "overload_queue_bytes" in raw:
        oq = raw["overload_queue_bytes"]
        if not isinstance(oq, int) or isinstance(oq, bool) or oq < 0:
            raise ConfigError(f"server.overload_queue_bytes: {oq!r}: must be an integer >= 0 (0: off)")
        cfg.overload_queue_bytes = oq
    if "overload_delay_ms" in raw:
        od = raw["overload_delay_ms"]
        if not isinstance(od, int) or isinstance(od, bool) or not 0 <= od <= 60_000:
            raise ConfigError(f"server.overload_delay_ms: {od!r}: must be an integer 0-60000 (0: off)")
        cfg.overload_delay_ms = od
    if cfg.overload_delay_ms and cfg.overload_queue_bytes:
        if "overload_delay_ms" in raw:
            raise ConfigError(
                "server.overload_delay_ms and server.overload_queue_bytes: set one of them, not both"
            )
        cfg.overload_delay_ms = 0  # the queue-bytes monitor replaces the default
    if "drain_seconds" in raw:
        ds = raw["drain_seconds"]
        if not isinstance(ds, int | float) or isinstance(ds, bool) or not 0 <= ds <= 600:
            raise ConfigError(f"server.drain_seconds: {ds!r}: must be 0-600")
        cfg.drain_seconds = float(ds)
    for key in ("tls_cert", "tls_key", "tls_ca"):
        if key in raw and raw[key] is not None:
            if not isinstance(raw[key], str | Path) or not str(raw[key]):
                raise ConfigError(f"server.{key}: must be a path to a PEM file")
            path_value = Path(raw[key])
            if not path_value.is_file():
                raise ConfigError(f"server.{key}: {path_value}: no such file")
            setattr(cfg, key, path_value)
    if "prefault_tables" in raw:
        if not isinstance(raw["prefault_tables"], bool):
            raise ConfigError("server.prefault_tables: must be true or false")
        cfg.prefault_tables = raw["prefault_tables"]
    if "persist_registrations" in raw:
        if not isinstance(raw["persist_registrations"], bool):
            raise ConfigError("server.persist_registrations: must be true or false")
        cfg.persist_registrations = raw["persist_registrations"]
    if "persist_presence" in raw:
        if not isinstance(raw["persist_presence"], bool):
            raise ConfigError("server.persist_presence: must be true or false")
        cfg.persist_presence = raw["persist_presence"]
    if "tls_verify" in raw:
        if not isinstance(raw["tls_verify"], bool):
            raise ConfigError("server.tls_verify: must be true or false")
        cfg.tls_verify = raw["tls_verify"]
    if "tcp_idle_seconds" in raw:
        ti = raw["tcp_idle_seconds"]
        if not isinstance(ti, int | float) or isinstance(ti, bool) or not 10 <= ti <= 86400:
            raise ConfigError(f"server.tcp_idle_seconds: {ti!r}: must be 10-86400")
        cfg.tcp_idle_seconds = float(ti)
    if "tcp_max_connections" in raw:
        tm = raw["tcp_max_connections"]
        if not isinstance(tm, int) or isinstance(tm, bool) or not 1 <= tm <= 1_000_000:
            raise ConfigError(f"server.tcp_max_connections: {tm!r}: must be an integer 1-1000000")
        cfg.tcp_max_connections = tm
    if "dns_servers" in raw:
        ds_items = raw["dns_servers"]
        if not isinstance(ds_items, list) or not all(isinstance(i, str) for i in ds_items):
            raise ConfigError("server.dns_servers: must be a list of strings like '127.0.0.1:53'")
        cfg.dns_servers = [_dns_server(i) for i in ds_items]
    _load_presence(cfg, presence_raw)
    _load_im(cfg.im, im_raw)
    _load_msrp(cfg.msrp, msrp_raw)
    _load_chat(cfg.chat, chat_raw)
    if cfg.chat.tls and (cfg.tls_cert is None or cfg.tls_key is None):
        raise ConfigError("chat.tls: the focus's TLS listener needs server.tls_cert and server.tls_key")
    if any(lc.transport in ("tls", "msrps") for lc in cfg.listen + cfg.msrp_listen) and (
        cfg.tls_cert is None or cfg.tls_key is None
    ):
        raise ConfigError("server.listen: a tls: or msrps: listener needs server.tls_cert and server.tls_key")
    seen: set[tuple[str, str, int]] = set()
    for lc in cfg.listen:
        k = (lc.transport, lc.host, lc.port)
        if k in seen:
            raise ConfigError(f"server.listen: {lc} is listed twice")
        seen.add(k)
    return cfg


_PRESENCE_OVERRIDES = ("min_notify_interval", "presentity_capacity", "subscription_capacity",
                       "subscription_row_bytes", "presentity_state_bytes", "notify_window")  # fmt: skip
_PRESENCE_INTS = {  # key -> (lowest, highest)
    "min_expires": (0, 86400),
    "max_expires": (1, 86400 * 7),
    "publish_min_expires": (0, 86400),
    "publish_max_expires": (1, 86400 * 7),
    "presentity_capacity": (16, 10_000_000),
    "subscription_capacity": (16, 10_000_000),
    "subscription_row_bytes": (128, 4096),
    "presentity_state_bytes": (1024, 1 << 20),
    "notify_window": (0, 1_000_000),
    "stop_retry_after": (0, 86400),
}


def _load_presence(cfg: Config, raw: dict[str, Any]) -> None:
    """The ``[presence]`` table (simplefast.toml documents every key)."""
    p = cfg.presence
    known = {"default_policy", "policies", "min_notify_interval", "notify_grace", "default_document",
             "default_note", "winfo_admins", "pending_timeout", *_PRESENCE_INTS}  # fmt: skip
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"presence.{sorted(unknown)[0]}: unknown key")
    if "default_policy" in raw:
        if raw["default_policy"] not in POLICIES:
            raise ConfigError(f"presence.default_policy: {raw['default_policy']!r}: must be one of "
                              f"{', '.join(POLICIES)}")  # fmt: skip
        p.default_policy = raw["default_policy"]
    if "policies" in raw:
        pol = raw["policies"]
        if not isinstance(pol, dict) or any(v not in POLICIES for v in pol.values()):
            raise ConfigError(f"presence.policies: must map domains to one of {', '.join(POLICIES)}")
        p.policies = {str(k).lower(): v for k, v in pol.items()}
    if "min_notify_interval" in raw:
        mi = raw["min_notify_interval"]
        if not isinstance(mi, int | float) or isinstance(mi, bool) or not 0 <= mi <= 3600:
            raise ConfigError(f"presence.min_notify_interval: {mi!r}: must be 0-3600 seconds")
        p.min_notify_interval = float(mi)
    if "pending_timeout" in raw:
        pt = raw["pending_timeout"]
        if not isinstance(pt, int | float) or isinstance(pt, bool) or not 0 <= pt <= 86400 * 7:
            raise ConfigError(f"presence.pending_timeout: {pt!r}: must be 0-604800 seconds (0: never)")
        p.pending_timeout = float(pt)
    if "notify_grace" in raw:
        if not isinstance(raw["notify_grace"], bool):
            raise ConfigError("presence.notify_grace: must be true or false")
        p.notify_grace = raw["notify_grace"]
    if "default_document" in raw:
        if raw["default_document"] not in ("closed", "note", "empty"):
            raise ConfigError("presence.default_document: must be closed, note or empty")
        p.default_document = raw["default_document"]
    if "winfo_admins" in raw:
        wa = raw["winfo_admins"]
        if not isinstance(wa, list) or not all(isinstance(a, str) and a.startswith("sip:") for a in wa):
            raise ConfigError("presence.winfo_admins: must be a list of AORs like 'sip:admin@example.com'")
        p.winfo_admins = frozenset(a.lower() for a in wa)
    if "default_note" in raw:
        if not isinstance(raw["default_note"], str):
            raise ConfigError("presence.default_note: must be a string")
        p.default_note = raw["default_note"]
    for key, (lo, hi) in _PRESENCE_INTS.items():
        if key in raw:
            v = raw[key]
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise ConfigError(f"presence.{key}: {v!r}: must be an integer {lo}-{hi}")
            setattr(cfg if hasattr(cfg, key) else p, key, v)
    if p.min_expires > p.max_expires:
        raise ConfigError("presence.min_expires: must not exceed presence.max_expires")
    if p.publish_min_expires > p.publish_max_expires:
        raise ConfigError("presence.publish_min_expires: must not exceed presence.publish_max_expires")


_IM_OVERRIDES = ("max_body", "offline", "offline_per_user", "offline_max_age", "uri_list_service")
_IM_NUMBERS = {  # key -> (lowest, highest)
    "max_body": (0, 1 << 24),
    "offline_per_user": (1, 1_000_000),
    "offline_max_age": (60, 86400 * 365),
    "uri_list_max": (1, 10_000),
}


@dataclass(slots=True)
class MsrpSettings:
    """The ``[msrp]`` table: the relay's policy (simplefast/msrp/relay.py ``RelayConfig``)."""

    min_expires: int = 60
    default_expires: int = 1800
    max_expires: int = 3600
    transaction_timeout: int = 30
    relay_chunk_bytes: int = 65536
    forward_other_methods: bool = True


_MSRP_NUMBERS = {  # key -> (lowest, highest)
    "min_expires": (1, 86400),
    "default_expires": (1, 86400),
    "max_expires": (1, 86400),
    "transaction_timeout": (1, 600),
    "relay_chunk_bytes": (0, 1 << 20),
}


def _load_msrp(m: MsrpSettings, raw: dict[str, Any]) -> None:
    """The ``[msrp]`` table (simplefast.toml documents every key)."""
    unknown = set(raw) - {"forward_other_methods", *_MSRP_NUMBERS}
    if unknown:
        raise ConfigError(f"msrp.{sorted(unknown)[0]}: unknown key")
    if "forward_other_methods" in raw:
        if not isinstance(raw["forward_other_methods"], bool):
            raise ConfigError("msrp.forward_other_methods: must be true or false")
        m.forward_other_methods = raw["forward_other_methods"]
    for key, (lo, hi) in _MSRP_NUMBERS.items():
        if key in raw:
            v = raw[key]
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise ConfigError(f"msrp.{key}: {v!r}: must be an integer {lo}-{hi}")
            setattr(m, key, v)
    if not m.min_expires <= m.default_expires <= m.max_expires:
        raise ConfigError("msrp.default_expires: must lie between msrp.min_expires and msrp.max_expires")


@dataclass(slots=True)
class ChatSettings:
    """The ``[chat]`` table: the RFC 7701 chat focus (simplefast/msrp/focus.py)."""

    rooms: list[str] = field(default_factory=list)
    room_domains: list[str] = field(default_factory=list)
    msrp_host: str = ""  # "": the host of the first SIP listener
    msrp_port: int = 0  # 0: no focus; worker i listens on msrp_port + i
    tls: bool = False
    private_messages: bool = True
    nicknames: bool = True
    max_participants: int = 100
    max_message: int = 1 << 20
    max_nickname: int = 64
    max_rooms: int = 10000
    max_sessions: int = 20000
    bind_timeout: int = 30
    relay: str = ""  # "": participants reach the focus directly
    relay_user: str = ""
    relay_password_file: str = ""
    relay_pool: int = 4

    @property
    def enabled(self) -> bool:
        return self.msrp_port > 0 and bool(self.rooms or self.room_domains)


_CHAT_NUMBERS = {  # key -> (lowest, highest)
    "msrp_port": (0, 65535),
    "max_participants": (1, 100000),
    "max_message": (1, 1 << 30),
    "max_nickname": (1, 1024),
    "max_rooms": (1, 1 << 24),
    "max_sessions": (1, 1 << 24),
    "bind_timeout": (1, 3600),
    "relay_pool": (1, 1000),
}


def _load_chat(c: ChatSettings, raw: dict[str, Any]) -> None:
    """The ``[chat]`` table (simplefast.toml documents every key)."""
    unknown = set(raw) - {"rooms", "room_domains", "msrp_host", "tls", "private_messages", "nicknames",
                          "relay", "relay_user", "relay_password_file", *_CHAT_NUMBERS}  # fmt: skip
    if unknown:
        raise ConfigError(f"chat.{sorted(unknown)[0]}: unknown key")
    if "rooms" in raw:
        rooms = raw["rooms"]
        if not isinstance(rooms, list) or not all(
            isinstance(r, str) and r.startswith(("sip:", "sips:")) and "@" in r for r in rooms
        ):
            raise ConfigError("chat.rooms: must be a list of room URIs like 'sip:lobby@chat.example.com'")
        users = [r.partition(":")[2].partition("@")[0].lower() for r in rooms]
        if len(set(users)) != len(users):
            raise ConfigError("chat.rooms: two rooms with the same user part (room names must differ)")
        c.rooms = list(rooms)
    if "room_domains" in raw:
        doms = raw["room_domains"]
        if not isinstance(doms, list) or not all(isinstance(d, str) and d and "@" not in d for d in doms):
            raise ConfigError("chat.room_domains: must be a list of domains like 'chat.example.com'")
        c.room_domains = [d.lower() for d in doms]
    if "msrp_host" in raw:
        if not isinstance(raw["msrp_host"], str):
            raise ConfigError("chat.msrp_host: must be an IP address or host name")
        c.msrp_host = raw["msrp_host"]
    if "relay" in raw:
        r = raw["relay"]
        if not isinstance(r, str) or (r and parse_msrp_uri(r) is None):
            raise ConfigError(f"chat.relay: {r!r}: must be an MSRP URI like 'msrp://127.0.0.1:2855;tcp'")
        c.relay = r
    for key in ("relay_user", "relay_password_file"):
        if key in raw:
            if not isinstance(raw[key], str):
                raise ConfigError(f"chat.{key}: must be a string")
            setattr(c, key, raw[key])
    if c.relay_password_file:
        try:
            with open(c.relay_password_file, encoding="utf-8") as f:
                f.readline()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
            raise ConfigError(f"chat.relay_password_file: {c.relay_password_file}: {why}") from None
    for key in ("tls", "private_messages", "nicknames"):
        if key in raw:
            if not isinstance(raw[key], bool):
                raise ConfigError(f"chat.{key}: must be true or false")
            setattr(c, key, raw[key])
    for key, (lo, hi) in _CHAT_NUMBERS.items():
        if key in raw:
            v = raw[key]
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise ConfigError(f"chat.{key}: {v!r}: must be an integer {lo}-{hi}")
            setattr(c, key, v)
    if (c.rooms or c.room_domains) and not c.msrp_port:
        raise ConfigError("chat.msrp_port: rooms need the focus's MSRP port (worker i takes msrp_port + i)")


def _load_im(im: ImConfig, raw: dict[str, Any]) -> None:
    """The ``[im]`` table (simplefast.toml documents every key)."""
    unknown = set(raw) - {"offline", "offline_durable", "uri_list_service", *_IM_NUMBERS}
    if unknown:
        raise ConfigError(f"im.{sorted(unknown)[0]}: unknown key")
    if "offline" in raw:
        if not isinstance(raw["offline"], bool):
            raise ConfigError("im.offline: must be true or false")
        im.offline = raw["offline"]
    if "offline_durable" in raw:
        if not isinstance(raw["offline_durable"], bool):
            raise ConfigError("im.offline_durable: must be true or false")
        im.offline_durable = raw["offline_durable"]
    if "uri_list_service" in raw:
        u = raw["uri_list_service"]
        if not isinstance(u, str) or (u and not u.startswith(("sip:", "sips:"))):
            raise ConfigError(f"im.uri_list_service: {u!r}: must be a SIP URI like 'sip:list@example.com'")
        im.uri_list_service = u
    for key, (lo, hi) in _IM_NUMBERS.items():
        if key in raw:
            v = raw[key]
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise ConfigError(f"im.{key}: {v!r}: must be an integer {lo}-{hi}")
            setattr(im, key, float(v) if key == "offline_max_age" else v)
