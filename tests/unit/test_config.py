"""Configuration: TOML + command line, one clear line per mistake, exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from simplefast.errors import ConfigError
from simplefast.server.config import Listen, load, parse_listen
from simplefast.testing import REPO


def test_example_file_loads() -> None:
    cfg = load(REPO / "simplefast.toml", {})
    assert cfg.listen == [Listen("udp", "127.0.0.1", 5060), Listen("tcp", "127.0.0.1", 5060)]
    assert cfg.persist_registrations is True
    assert cfg.tcp_idle_seconds == 3600 and cfg.tcp_max_connections == 16384 and cfg.dns_servers == []
    assert (
        cfg.domains == ["example.com"]
        and cfg.workers == 2
        and cfg.auth is True
        and cfg.location_capacity == 50000
    )
    assert cfg.auth_algorithms == ("SHA-256", "MD5")


def test_command_line_wins(tmp_path: Path) -> None:
    cfg = load(REPO / "simplefast.toml", {"workers": 3, "listen": ["udp:[::1]:5070"], "log_level": "debug"})
    assert cfg.workers == 3 and cfg.listen == [Listen("udp", "::1", 5070)] and cfg.log_level == "debug"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("udp:127.0.0.1", "expected TRANSPORT:HOST:PORT"),
        ("sctp:127.0.0.1:5060", "TRANSPORT one of udp, tcp, tls"),
        ("udp:::1:5060", "IPv6 hosts are written [addr]:port"),
        ("udp:[::1]5060", "IPv6 hosts are written [addr]:port"),
        ("udp:127.0.0.1:70000", "port must be 1-65535"),
    ],
)
def test_bad_listen(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_listen(text)


def test_ipv6_listen() -> None:
    assert str(parse_listen("udp:[::1]:5060")) == "udp:[::1]:5060"


def test_dns_servers_forms() -> None:
    cfg = load(None, {"dns_servers": ["127.0.0.1:5353", "[::1]:53", "192.0.2.1", "[2001:db8::1]"]})
    assert cfg.dns_servers == [("127.0.0.1", 5353), ("::1", 53), ("192.0.2.1", 53), ("2001:db8::1", 53)]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[server]\nworkers = 0\n", "server.workers: 0: must be an integer 1-256"),
        ("[server]\nworkers = true\n", "server.workers"),
        ("[server]\nlisten = 'udp:1.2.3.4:5'\n", "server.listen: must be a non-empty list"),
        ("[server]\nloglevel = 'info'\n", "server.loglevel: unknown key"),
        ("[server]\nlog_level = 'loud'\n", "server.log_level: 'loud': must be one of"),
        ("[server]\nauth = 'yes'\n", "server.auth: must be true or false"),
        ("[server\n", "config file"),
        ("[server]\nlisten = ['tls:127.0.0.1:5061']\n", "a tls: or msrps: listener needs server.tls_cert"),
        ("[server]\nlisten = ['udp:127.0.0.1:5060', 'udp:127.0.0.1:5060']\n", "listed twice"),
        ("[server]\ntls_cert = '/nonexistent.pem'\n", "server.tls_cert: /nonexistent.pem: no such file"),
        ("[server]\ndns_servers = ['ns.example.com']\n", "server.dns_servers: 'ns.example.com': not an IP"),
        ("[server]\ndns_servers = ['127.0.0.1:0']\n", "port must be 1-65535"),
        ("[server]\ntcp_idle_seconds = 1\n", "server.tcp_idle_seconds: 1: must be 10-86400"),
        ("[server]\ntcp_max_connections = 0\n", "server.tcp_max_connections"),
        ("[server]\npersist_registrations = 1\n", "server.persist_registrations: must be true or false"),
        ('[server]\nprefault_tables = "yes"\n', "server.prefault_tables: must be true or false"),
        ("[presence]\ndefault_policy = 'maybe'\n", "presence.default_policy: 'maybe': must be one of"),
        ("[presence]\npolicies = { 'a.com' = 'x' }\n", "presence.policies: must map domains"),
        ("[presence]\nmin_notify_interval = -1\n", "presence.min_notify_interval: -1: must be 0-3600"),
        ("[presence]\nsubscription_capacity = 3\n", "presence.subscription_capacity: 3: must be an integer"),
        ("[presence]\nmin_expires = 100\nmax_expires = 50\n", "presence.min_expires: must not exceed"),
        ("[presence]\nfoo = 1\n", "presence.foo: unknown key"),
        ("[presence]\nwinfo_admins = ['bob']\n", "presence.winfo_admins: must be a list of AORs"),
        ("[other]\nfoo = 1\n", "other: unknown table"),
    ],
)
def test_bad_file(tmp_path: Path, toml: str, message: str) -> None:
    p = tmp_path / "c.toml"
    p.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load(p, {})


def test_cli_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[server]\nworkers = -1\n")
    out = subprocess.run(
        [sys.executable, "-m", "simplefast", "serve", "-c", str(p)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["simplefast: server.workers: -1: must be an integer 1-256"]


def test_cli_missing_file_exit_2(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "simplefast", "serve", "-c", str(tmp_path / "nope.toml")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 2 and "config file" in out.stderr and "No such file" in out.stderr


def test_presence_table_and_cli_override(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text(
        "[presence]\ndefault_policy = 'confirm'\npolicies = { 'Example.com' = 'allow' }\n"
        "min_notify_interval = 2\nsubscription_capacity = 5000\nnotify_grace = true\n"
        "winfo_admins = ['sip:Admin@example.com']\n"
    )
    cfg = load(p, {})
    assert cfg.presence.default_policy == "confirm" and cfg.presence.policies == {"example.com": "allow"}
    assert cfg.presence.policy("sip:b@x.org", "sip:a@example.com", "presence") == "allow"
    assert cfg.presence.policy("sip:b@x.org", "sip:a@other.org", "presence") == "confirm"
    assert cfg.subscription_capacity == 5000 and cfg.presence.notify_grace
    assert cfg.presence.winfo_admins == frozenset({"sip:admin@example.com"})
    assert load(p, {"min_notify_interval": 0.0}).presence.min_notify_interval == 0.0
    assert load(p, {}).presence.min_notify_interval == 2.0


def test_shipped_example_config_loads() -> None:
    from simplefast.testing import REPO

    cfg = load(REPO / "simplefast.toml", {})
    assert cfg.presence.min_notify_interval == 5.0 and cfg.presentity_capacity == 20000


def test_im_table_and_cli_overrides(tmp_path: Path) -> None:
    cfg = load(REPO / "simplefast.toml", {})
    assert (cfg.im.max_body, cfg.im.offline, cfg.im.offline_per_user) == (65536, True, 100)
    assert cfg.im.uri_list_service == "" and cfg.im.offline_max_age == 604800.0
    f = tmp_path / "c.toml"
    f.write_text(
        '[im]\nmax_body = 2000\noffline = false\nuri_list_service = "sip:list@example.com"\n'
        "offline_durable = true\n"
    )
    cfg = load(f, {"offline_per_user": 5, "max_body": 3000})
    assert (cfg.im.max_body, cfg.im.offline, cfg.im.offline_per_user) == (3000, False, 5)
    assert cfg.im.uri_list_service == "sip:list@example.com" and cfg.im.offline_durable is True


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[im]\nmax_bodies = 1\n", "im.max_bodies: unknown key"),
        ("[im]\noffline = 1\n", "im.offline: must be true or false"),
        ("[im]\noffline_per_user = 0\n", "im.offline_per_user: 0: must be an integer 1-1000000"),
        ('[im]\nuri_list_service = "http://x"\n', "im.uri_list_service: 'http://x': must be a SIP URI"),
        ("im = 3\n", "im: must be a table"),
    ],
)
def test_bad_im_table(tmp_path: Path, toml: str, message: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load(f, {})


def test_msrp_table(tmp_path: Path) -> None:
    cfg = load(REPO / "simplefast.toml", {})
    m = cfg.msrp
    assert (m.min_expires, m.default_expires, m.max_expires) == (60, 1800, 3600)
    assert (m.transaction_timeout, m.relay_chunk_bytes, m.forward_other_methods) == (30, 65536, True)
    f = tmp_path / "c.toml"
    f.write_text("[msrp]\nrelay_chunk_bytes = 0\nforward_other_methods = false\ntransaction_timeout = 10\n")
    m = load(f, {}).msrp
    assert (m.relay_chunk_bytes, m.forward_other_methods, m.transaction_timeout) == (0, False, 10)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[msrp]\nchunk = 1\n", "msrp.chunk: unknown key"),
        ("[msrp]\nforward_other_methods = 1\n", "msrp.forward_other_methods: must be true or false"),
        ("[msrp]\nrelay_chunk_bytes = -1\n", "msrp.relay_chunk_bytes: -1: must be an integer 0-1048576"),
        ("[msrp]\nmin_expires = 4000\n", "msrp.default_expires: must lie between"),
        ("msrp = 3\n", "msrp: must be a table"),
    ],
)
def test_bad_msrp_table(tmp_path: Path, toml: str, message: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load(f, {})


def test_msrp_listeners_are_kept_apart_from_sip_ones(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[server]\nlisten = ["udp:127.0.0.1:5060", "msrp:127.0.0.1:2855"]\n')
    cfg = load(f, {})
    assert cfg.listen == [Listen("udp", "127.0.0.1", 5060)]
    assert cfg.msrp_listen == [Listen("msrp", "127.0.0.1", 2855)]
    f.write_text('[server]\nlisten = ["msrp:127.0.0.1:2855"]\n')
    with pytest.raises(ConfigError, match="needs at least one SIP listener"):
        load(f, {})
    f.write_text('[server]\nlisten = ["udp:127.0.0.1:5060", "msrps:127.0.0.1:2855"]\n')
    with pytest.raises(ConfigError, match="msrps: listener needs server.tls_cert"):
        load(f, {})


def test_metrics_listener(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[server]\nlisten = ["udp:127.0.0.1:5060", "metrics:127.0.0.1:9090"]\n')
    cfg = load(f, {})
    assert cfg.metrics_listen == Listen("metrics", "127.0.0.1", 9090)
    assert cfg.listen == [Listen("udp", "127.0.0.1", 5060)]
    f.write_text(
        '[server]\nlisten = ["udp:127.0.0.1:5060", "metrics:127.0.0.1:9090", "metrics:[::1]:9091"]\n'
    )
    with pytest.raises(ConfigError, match="one metrics: listener at most"):
        load(f, {})
    assert load(REPO / "simplefast.toml", {}).metrics_listen is None


def test_chat_table(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        '[chat]\nrooms = ["sip:lobby@chat.example.com"]\nroom_domains = ["Rooms.Example.com"]\n'
        "msrp_port = 2870\nprivate_messages = false\nmax_participants = 5\nbind_timeout = 10\n"
    )
    c = load(f, {}).chat
    assert c.enabled and c.rooms == ["sip:lobby@chat.example.com"] and c.room_domains == ["rooms.example.com"]
    assert (c.msrp_port, c.private_messages, c.nicknames, c.max_participants, c.bind_timeout) == (
        2870, False, True, 5, 10,
    )  # fmt: skip
    assert not load(REPO / "simplefast.toml", {}).chat.enabled


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[chat]\nrooms = ["lobby"]\nmsrp_port = 2870\n', "chat.rooms: must be a list of room URIs"),
        ('[chat]\nrooms = ["sip:a@x.com", "sip:A@y.com"]\nmsrp_port = 2870\n', "same user part"),
        ('[chat]\nrooms = ["sip:a@x.com"]\n', "chat.msrp_port: rooms need"),
        ("[chat]\nmsrp_port = 70000\n", r"chat.msrp_port: 70000: must be an integer 0-65535"),
        ("[chat]\nnicknames = 1\n", "chat.nicknames: must be true or false"),
        ("[chat]\ncolour = 1\n", "chat.colour: unknown key"),
        ('[chat]\nroom_domains = ["a@b"]\n', "chat.room_domains: must be a list of domains"),
        ("[chat]\ntls = true\n", "chat.tls: the focus's TLS listener needs server.tls_cert"),
        ("chat = 3\n", "chat: must be a table"),
        (
            '[chat]\nrelay_password_file = "/nonexistent/pw"\n',
            "chat.relay_password_file: /nonexistent/pw: No such file",
        ),
        ('[chat]\nrelay = "http://x"\n', "chat.relay: 'http://x': must be an MSRP URI"),
        ('[chat]\nrelay = "msrp://127.0.0.1:2855"\n', "must be an MSRP URI"),  # no ;tcp
    ],
)
def test_bad_chat_table(tmp_path: Path, toml: str, message: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load(f, {})


def test_overload_shedding_settings(tmp_path: Path) -> None:
    assert load(None, {}).overload_delay_ms == 100  # by queueing delay, by default
    cfg = load(None, {"overload_queue_bytes": 131072})  # the queue-bytes monitor replaces it
    assert (cfg.overload_queue_bytes, cfg.overload_delay_ms) == (131072, 0)
    assert load(None, {"overload_delay_ms": 0}).overload_delay_ms == 0
    with pytest.raises(ConfigError, match="set one of them"):
        load(None, {"overload_queue_bytes": 131072, "overload_delay_ms": 50})
    f = tmp_path / "c.toml"
    f.write_text("[server]\noverload_delay_ms = -1\n")
    with pytest.raises(ConfigError, match="server.overload_delay_ms: -1: must be an integer 0-60000"):
        load(f, {})
