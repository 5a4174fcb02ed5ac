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
        help="listener, e.g. udp:127.0.0.1:5060 or udp:[::1]:5060 (repeatable)",
    )  # fmt: skip
    s.add_argument(
        "--domain", action="append", dest="domains", metavar="DOMAIN", help="served domain (repeatable)"
    )
    s.add_argument("--workers", type=int, help="worker processes (default: number of cores)")
    s.add_argument("--data-dir", dest="data_dir", help="state directory (default: ./state)")
    s.add_argument("--no-auth", dest="auth", action="store_const", const=False, help="turn digest auth off")
    s.add_argument("--log-level", dest="log_level", choices=["debug", "info", "warning", "error"])
    return p


def _check_bind(cfg: config_mod.Config) -> None:
    """Fail before forking when a listen address cannot be bound (clear message, exit 1)."""
    from simplefast.transport.reuseport import reuseport_udp_socket

    if len(cfg.listen) != 1:
        raise ConfigError("server.listen: one listener for now (several, and tcp/tls: issue #4)")
    for lc in cfg.listen:
        if lc.transport != "udp":
            raise ConfigError(f"server.listen: {lc}: only udp listeners exist so far (tcp/tls: issue #4)")
        try:
            reuseport_udp_socket(lc.host, lc.port).close()
        except OSError as exc:
            raise SystemExit(f"simplefast: cannot listen on {lc}: {exc.strerror}") from None
        except socket.gaierror as exc:
            raise SystemExit(f"simplefast: cannot listen on {lc}: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
