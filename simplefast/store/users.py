"""The users store: digest credentials (HA1 per algorithm, never the password)
in ``<data-dir>/users.sqlite3``, and the nonce secret the workers share."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from simplefast.errors import ConfigError
from simplefast.proxy.auth import ALGORITHMS, Credentials, Users, ha1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT NOT NULL,
    realm TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    ha1 TEXT NOT NULL,
    PRIMARY KEY (username, realm, algorithm)
)
"""


def _connect(data_dir: Path) -> sqlite3.Connection:
    data_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(data_dir / "users.sqlite3")
    db.execute(_SCHEMA)
    return db


def split_aor(aor: str) -> tuple[str, str]:
    """``alice@example.com`` (or ``sip:alice@example.com``) -> (username, realm)."""
    text = aor.removeprefix("sip:").removeprefix("sips:")
    user, at, realm = text.partition("@")
    if not at or not user or not realm or any(c in text for c in " \t<>;\"'"):
        raise ConfigError(f"user: {aor!r}: expected USER@DOMAIN")
    return user, realm.lower()


def add_user(data_dir: Path, aor: str, password: str) -> None:
    """Store (or replace) the credentials of ``aor``; realm = its domain."""
    if not password:
        raise ConfigError("user add: the password is empty")
    username, realm = split_aor(aor)
    with _connect(data_dir) as db:
        for alg in ALGORITHMS:
            db.execute(
                "INSERT OR REPLACE INTO users (username, realm, algorithm, ha1) VALUES (?, ?, ?, ?)",
                (username, realm, alg, ha1(alg, username, realm, password)),
            )
    db.close()


def remove_user(data_dir: Path, aor: str) -> bool:
    username, realm = split_aor(aor)
    with _connect(data_dir) as db:
        n = db.execute("DELETE FROM users WHERE username = ? AND realm = ?", (username, realm)).rowcount
    db.close()
    return n > 0


def load_users(data_dir: Path) -> dict[str, Users]:
    """realm -> username -> credentials."""
    path = data_dir / "users.sqlite3"
    if not path.exists():
        return {}
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT username, realm, algorithm, ha1 FROM users").fetchall()
    finally:
        db.close()
    acc: dict[tuple[str, str], dict[str, str]] = {}
    for username, realm, alg, value in rows:
        acc.setdefault((realm, username), {})[alg] = value
    out: dict[str, Users] = {}
    for (realm, username), ha1s in acc.items():
        out.setdefault(realm, {})[username] = Credentials(username, realm, ha1s)
    return out


def nonce_secret(data_dir: Path) -> bytes:
    """The workers' shared nonce secret, created once (mode 0600) and kept across restarts."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "nonce.secret"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_bytes()
        if len(secret) >= 32:
            return secret
        raise ConfigError(f"{path}: shorter than 32 bytes; delete it to make a new one") from None
    with os.fdopen(fd, "wb") as f:
        secret = os.urandom(32)
        f.write(secret)
    return secret
