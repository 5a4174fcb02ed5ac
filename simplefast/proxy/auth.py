"""Digest authentication (RFC 3261 section 22, RFC 7616 / RFC 8760: MD5 and SHA-256, qop=auth), sans-IO.

Theory of operation
-------------------
Credentials: per user the HA1 of each algorithm, H(username:realm:password),
is kept (``Credentials``); the password itself never is. ``simplefast user
add`` writes them to the users store (simplefast/store/users.py).

Nonces are stateless so that any worker can check any nonce: ``nonce =
base64url(t || salt || HMAC-SHA256(secret, t || salt || realm)[:16])`` with
``t`` the issue time (8 bytes, seconds) and ``salt`` 8 random bytes, so no
two challenges share a nonce. The secret is shared by the workers (created by the
supervisor, kept in the data directory so a restart keeps nonces valid). A
nonce older than ``nonce_ttl`` is stale: the client gets a new challenge
with ``stale=true`` and retries without asking the user.

Replay protection: nc (nonce-count) must grow per nonce. Each worker
remembers the highest nc per nonce it has seen (a bounded table, entries
leave with their nonce); a replay that lands on another worker than the
original is not caught until the shared table carries this (issue #4 step).

Challenges list SHA-256 first, then MD5 (RFC 8760 section 2.4: in the order
of preference); 401 with WWW-Authenticate for REGISTER and requests to the
server, 407 with Proxy-Authenticate for requests the proxy forwards.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from collections import OrderedDict
from dataclasses import dataclass

ALGORITHMS = ("SHA-256", "MD5")
_HASH = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def h(algorithm: str, text: str) -> str:
    return _HASH[algorithm](text.encode("utf-8", "surrogateescape")).hexdigest()


def ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    return h(algorithm, f"{username}:{realm}:{password}")


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    realm: str
    ha1: dict[str, str]  # algorithm -> HA1 hex


Users = dict[str, Credentials]  # username -> credentials, for one realm


@dataclass(frozen=True, slots=True)
class AuthResult:
    ok: bool
    username: str | None = None
    stale: bool = False
    reason: str = ""


def parse_digest(value: str) -> dict[str, str] | None:
    """The parameters of a ``Digest`` credentials header value (names lower-cased), or None."""
    v = value.strip()
    if v[:6].lower() != "digest" or (len(v) > 6 and v[6] not in " \t"):
        return None
    out: dict[str, str] = {}
    i, n = 6, len(v)
    while i < n:
        while i < n and v[i] in " \t,":
            i += 1
        eq = v.find("=", i)
        if eq < 0:
            break
        name = v[i:eq].strip().lower()
        j = eq + 1
        while j < n and v[j] in " \t":
            j += 1
        if j < n and v[j] == '"':
            k, buf = j + 1, []
            while k < n and v[k] != '"':
                if v[k] == "\\" and k + 1 < n:
                    k += 1
                buf.append(v[k])
                k += 1
            if k >= n:
                return None  # unterminated quoted string
            value_text, i = "".join(buf), k + 1
        else:
            k = v.find(",", j)
            k = n if k < 0 else k
            value_text, i = v[j:k].strip(), k
        if not name or name in out:
            return None
        out[name] = value_text
    return out


class DigestAuth:
    def __init__(
        self,
        secret: bytes,
        *,
        algorithms: tuple[str, ...] = ALGORITHMS,
        nonce_ttl: float = 300.0,
        max_tracked: int = 100_000,
    ) -> None:
        if not algorithms or any(a not in _HASH for a in algorithms):
            raise ValueError(f"algorithms must be a non-empty sequence of {', '.join(ALGORITHMS)}")
        self.algorithms = tuple(algorithms)
        self._secret = secret
        self.nonce_ttl = nonce_ttl
        self._nc: OrderedDict[str, int] = OrderedDict()
        self._max_tracked = max_tracked

    def nonce(self, realm: str, now_wall: float) -> str:
        # t || salt || mac: the salt makes every challenge's nonce unique (nc counts per nonce)
        t = struct.pack(">Q", int(now_wall)) + os.urandom(8)
        mac = hmac.new(self._secret, t + realm.encode(), hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(t + mac).decode().rstrip("=")

    def _nonce_time(self, nonce: str, realm: str) -> int | None:
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except ValueError:
            return None
        if len(raw) != 32:
            return None
        t, mac = raw[:16], raw[16:]
        good = hmac.new(self._secret, t + realm.encode(), hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(mac, good):
            return None
        return int(struct.unpack(">Q", t[:8])[0])

    def challenges(self, realm: str, now_wall: float, *, stale: bool = False) -> list[str]:
        """Header values in the configured order of preference (RFC 8760 section 2.4:
        SHA-256 first by default; some UAs, SIPp among them, answer only the
        first challenge and know only MD5, hence the setting)."""
        nonce = self.nonce(realm, now_wall)
        extra = ", stale=true" if stale else ""
        return [
            f'Digest realm="{realm}", nonce="{nonce}", algorithm={alg}, qop="auth"{extra}'
            for alg in self.algorithms
        ]

    def check(
        self,
        header_values: list[str],
        method: str,
        realm: str,
        lookup: dict[str, Credentials],
        now_wall: float,
    ) -> AuthResult:
        """Verify the credentials for ``realm`` among ``header_values`` (Authorization or
        Proxy-Authorization). ``lookup`` maps a username to its credentials in this realm."""
        for value in header_values:
            p = parse_digest(value)
            if p is None or p.get("realm") != realm:
                continue
            return self._check_one(p, method, realm, lookup, now_wall)
        return AuthResult(False, reason="no credentials for this realm")

    def _check_one(
        self, p: dict[str, str], method: str, realm: str, lookup: Users, now_wall: float
    ) -> AuthResult:
        username, nonce, uri, response = p.get("username"), p.get("nonce"), p.get("uri"), p.get("response")
        if not (username and nonce and uri and response):
            return AuthResult(False, reason="incomplete credentials")
        algorithm = p.get("algorithm", "MD5")
        if algorithm not in self.algorithms:
            return AuthResult(False, reason=f"algorithm {algorithm[:20]!r} not supported")
        issued = self._nonce_time(nonce, realm)
        if issued is None:
            return AuthResult(False, reason="nonce not ours")
        cred = lookup.get(username)
        if cred is None or algorithm not in cred.ha1:
            return AuthResult(False, reason="unknown user")
        ha2 = h(algorithm, f"{method}:{uri}")
        qop = p.get("qop")
        if qop is None:  # RFC 2069 compatibility
            expect = h(algorithm, f"{cred.ha1[algorithm]}:{nonce}:{ha2}")
            nc = None
        elif qop == "auth":
            nc_text, cnonce = p.get("nc", ""), p.get("cnonce", "")
            if len(nc_text) != 8 or not cnonce:
                return AuthResult(False, reason="qop=auth needs nc and cnonce")
            try:
                nc = int(nc_text, 16)
            except ValueError:
                return AuthResult(False, reason="nc is not hexadecimal")
            expect = h(algorithm, f"{cred.ha1[algorithm]}:{nonce}:{nc_text}:{cnonce}:auth:{ha2}")
        else:
            return AuthResult(False, reason=f"qop {qop[:20]!r} not supported")
        if not hmac.compare_digest(expect.encode(), response.lower().encode()):
            return AuthResult(False, reason="wrong response")
        if now_wall - issued > self.nonce_ttl:
            return AuthResult(False, username, stale=True, reason="stale nonce")
        if nc is not None:
            last = self._nc.get(nonce, 0)
            if nc <= last:
                return AuthResult(False, reason="nonce count replayed")
            self._nc[nonce] = nc
            self._nc.move_to_end(nonce)
            while len(self._nc) > self._max_tracked:
                self._nc.popitem(last=False)
        return AuthResult(True, username)
