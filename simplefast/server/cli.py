"""``simplefast`` command line."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from simplefast import __version__
from simplefast.errors import ConfigError
from simplefast.server import config as config_mod


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simplefast", description="SIP SIMPLE presence and IM server")
    p.add_argument("--version", action="version", version=f"simplefast {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the server (supervisor + workers)")
    s.add_argument("-c", "--config", type=Path, help="TOML configuration file (see simplefast.toml)")
    s.add_argument(
        "--listen", action="append", metavar="TRANSPORT:HOST:PORT",
        help="listener: udp:127.0.0.1:5060, tcp:[::1]:5060, tls:127.0.0.1:5061, msrp:127.0.0.1:2855 "
        "(MSRP relay; worker i also takes port+1+i), msrps:..., metrics:127.0.0.1:9090 (Prometheus "
        "/metrics of every worker) (repeatable)",
    )  # fmt: skip
    s.add_argument(
        "--domain", action="append", dest="domains", metavar="DOMAIN", help="served domain (repeatable)"
    )
    s.add_argument("--workers", type=int, help="worker processes (default: number of cores)")
    s.add_argument("--data-dir", dest="data_dir", help="state directory (default: ./state)")
    s.add_argument("--no-auth", dest="auth", action="store_const", const=False, help="turn digest auth off")
    s.add_argument(
        "--auth-algorithms", dest="auth_algorithms", metavar="ALG,...",
        help="digest challenges in order of preference (default SHA-256,MD5)",
    )  # fmt: skip
    s.add_argument("--location-capacity", dest="location_capacity", type=int, metavar="N",
                   help="addresses-of-record the shared location table holds (default 50000)")  # fmt: skip
    s.add_argument("--overload-queue-bytes", dest="overload_queue_bytes", type=int, metavar="BYTES",
                   help="shed new requests (503) when this much waits in the socket (0: never)")  # fmt: skip
    s.add_argument("--overload-delay-ms", dest="overload_delay_ms", type=int, metavar="MS",
                   help="shed new requests (503) while datagrams wait longer than this in the kernel"
                        " (0: never)")  # fmt: skip
    s.add_argument("--no-persist", dest="persist_registrations", action="store_const", const=False,
                   help="registrations and presence in memory only (no SQLite write-behind)")  # fmt: skip
    s.add_argument("--no-prefault", dest="prefault_tables", action="store_const", const=False,
                   help="map shared tables lazily (less RSS at start, a page fault per new row)")  # fmt: skip
    s.add_argument("--tls-cert", dest="tls_cert", metavar="PEM", help="certificate chain of tls: listeners")
    s.add_argument("--tls-key", dest="tls_key", metavar="PEM", help="private key of tls: listeners")
    s.add_argument("--tls-ca", dest="tls_ca", metavar="PEM",
                   help="CAs trusted for TLS connections we open (default: the system's)")  # fmt: skip
    s.add_argument("--dns-server", action="append", dest="dns_servers", metavar="ADDR[:PORT]",
                   help="DNS server for RFC 3263 (repeatable; default: /etc/resolv.conf)")  # fmt: skip
    s.add_argument(
        "--min-notify-interval",
        dest="min_notify_interval",
        type=float,
        metavar="SECONDS",
        help="presence: at most one NOTIFY per watcher this often (default 5; 0: off)",
    )
    s.add_argument("--notify-window", dest="notify_window", type=int, metavar="N",
                   help="NOTIFYs per worker awaiting a response (default 500; 0: no limit)")  # fmt: skip
    s.add_argument("--presentity-capacity", dest="presentity_capacity", type=int, metavar="N",
                   help="presentities the shared table holds (default 20000)")  # fmt: skip
    s.add_argument("--subscription-capacity", dest="subscription_capacity", type=int, metavar="N",
                   help="subscriptions the shared table holds (default 200000)")  # fmt: skip
    s.add_argument("--subscription-row-bytes", dest="subscription_row_bytes", type=int, metavar="BYTES",
                   help="one subscription's row in the shared table (default 200; longer rows"
                        " go to a small overflow table)")  # fmt: skip
    s.add_argument("--presentity-state-bytes", dest="presentity_state_bytes", type=int, metavar="BYTES",
                   help="room for one presentity's publications and document (default 8192)")  # fmt: skip
    s.add_argument("--max-body", dest="max_body", type=int, metavar="BYTES",
                   help="IM: larger MESSAGE bodies get 413 (default 65536)")  # fmt: skip
    s.add_argument("--no-offline", dest="offline", action="store_const", const=False,
                   help="IM: no offline store (MESSAGEs to users without a contact get 480)")  # fmt: skip
    s.add_argument("--offline-per-user", dest="offline_per_user", type=int, metavar="N",
                   help="IM: MESSAGEs stored per offline user (default 100)")  # fmt: skip
    s.add_argument("--offline-max-age", dest="offline_max_age", type=int, metavar="SECONDS",
                   help="IM: stored MESSAGEs older than this are dropped (default 604800)")  # fmt: skip
    s.add_argument("--uri-list-service", dest="uri_list_service", metavar="URI",
                   help="IM: RFC 5365 multi-recipient MESSAGE service (sip:list@example.com)")  # fmt: skip
    s.add_argument("--log-level", dest="log_level", choices=["debug", "info", "warning", "error"])
    u = sub.add_parser("user", help="manage digest credentials")
    usub = u.add_subparsers(dest="user_command", required=True)
    ua = usub.add_parser("add", help="add or replace a user (stores HA1 values, never the password)")
    ua.add_argument("aor", metavar="USER@DOMAIN")
    ua.add_argument("--password-file", required=True, type=Path, help="file whose first line is the password")
    ur = usub.add_parser("remove", help="remove a user")
    ur.add_argument("aor", metavar="USER@DOMAIN")
    for q in (ua, ur):
        q.add_argument("-c", "--config", type=Path, help="TOML configuration file (for data_dir)")
        q.add_argument("--data-dir", dest="data_dir", help="state directory (default: ./state)")
    return p


def _user(args: argparse.Namespace) -> int:
    from simplefast.store.users import add_user, remove_user

    cfg = config_mod.load(args.config, {"data_dir": args.data_dir})
    if args.user_command == "add":
        try:
            password = (
                args.password_file.read_text().splitlines()[0] if args.password_file.stat().st_size else ""
            )
        except OSError as exc:
            raise ConfigError(f"--password-file {args.password_file}: {exc.strerror}") from exc
        add_user(cfg.data_dir, args.aor, password)
        print(f"simplefast: user {args.aor} stored in {cfg.data_dir} (send SIGHUP to a running server)")
        return 0
    if not remove_user(cfg.data_dir, args.aor):
        print(f"simplefast: no user {args.aor} in {cfg.data_dir}", file=sys.stderr)
        return 1
    return 0


def _check_bind(cfg: config_mod.Config) -> None:
    """Fail before forking when a listen address cannot be bound (clear message, exit 1)."""
    from simplefast.transport.reuseport import reuseport_tcp_socket, reuseport_udp_socket

    for lc in cfg.listen + cfg.msrp_listen:
        try:
            if lc.transport == "udp":
                reuseport_udp_socket(lc.host, lc.port).close()
            else:
                reuseport_tcp_socket(lc.host, lc.port).close()
        except OSError as exc:
            raise SystemExit(f"simplefast: cannot listen on {lc}: {exc.strerror}") from None
        except socket.gaierror as exc:
            raise SystemExit(f"simplefast: cannot listen on {lc}: {exc}") from None
    for lc in cfg.msrp_listen:  # each worker's own session port (transport/msrp.py)
        for i in range(cfg.workers):
            try:
                reuseport_tcp_socket(lc.host, lc.port + 1 + i).close()
            except OSError as exc:
                raise SystemExit(
                    f"simplefast: cannot listen on {lc}: worker {i}'s session port {lc.port + 1 + i}: "
                    f"{exc.strerror}"
                ) from None
    plain: list[tuple[str, str, int]] = []  # (what, host, port) bound by one process only
    if cfg.chat.enabled:
        host = cfg.chat.msrp_host or cfg.listen[0].host
        port0 = cfg.chat.msrp_port
        plain += [(f"chat focus port of worker {i}", host, port0 + i) for i in range(cfg.workers)]
    if cfg.metrics_listen is not None:
        plain.append((str(cfg.metrics_listen), cfg.metrics_listen.host, cfg.metrics_listen.port))
    for what, host, port in plain:
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((host, port))
        except OSError as exc:
            raise SystemExit(f"simplefast: cannot listen on {what} ({host}:{port}): {exc.strerror}") from None
    if cfg.tls_cert is not None and cfg.tls_key is not None:
        import ssl

        from simplefast.transport.stream import server_context

        try:
            server_context(str(cfg.tls_cert), str(cfg.tls_key))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"server.tls_cert/tls_key: cannot load {cfg.tls_cert}, {cfg.tls_key}: {exc}"
            ) from None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "user":
        try:
            return _user(args)
        except ConfigError as exc:
            print(f"simplefast: {exc}", file=sys.stderr)
            return 2
    if args.command == "serve":
        try:
            listen = None
            if args.listen:
                listen = list(args.listen)
            cfg = config_mod.load(
                args.config,
                {
                    "listen": listen, "domains": args.domains, "workers": args.workers,
                    "data_dir": args.data_dir, "auth": args.auth, "log_level": args.log_level,
                    "auth_algorithms": args.auth_algorithms, "location_capacity": args.location_capacity,
                    "overload_queue_bytes": args.overload_queue_bytes,
                    "overload_delay_ms": args.overload_delay_ms, "tls_cert": args.tls_cert,
                    "tls_key": args.tls_key, "tls_ca": args.tls_ca, "dns_servers": args.dns_servers,
                    "persist_registrations": args.persist_registrations,
                    "persist_presence": args.persist_registrations,  # --no-persist: both
                    "prefault_tables": args.prefault_tables,
                    "min_notify_interval": args.min_notify_interval,
                    "presentity_capacity": args.presentity_capacity,
                    "subscription_capacity": args.subscription_capacity,
                    "subscription_row_bytes": args.subscription_row_bytes,
                    "presentity_state_bytes": args.presentity_state_bytes,
                    "notify_window": args.notify_window,
                    "max_body": args.max_body, "offline": args.offline,
                    "offline_per_user": args.offline_per_user, "offline_max_age": args.offline_max_age,
                    "uri_list_service": args.uri_list_service,
                },
            )  # fmt: skip
            _check_bind(cfg)
        except ConfigError as exc:
            print(f"simplefast: {exc}", file=sys.stderr)
            return 2
        from simplefast.server.supervisor import supervise

        return supervise(cfg)
    return 2


if __name__ == "__main__":
    sys.exit(main())
