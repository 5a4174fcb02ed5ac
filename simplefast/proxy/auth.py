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

Replay protection: nc (nonce-count) must grow per nonce; a request whose nc
is not above the highest one seen for its nonce is refused ("nonce count
replayed"). The highest nc per nonce is kept behind the ``NonceCounts``
protocol. With several workers it is ``SharedNonceCounts``: one shared-memory
table (``shmindex``, mapped by the supervisor before fork, handed out by
``SharedState.nonce_counts()``) whose ``put_if_greater`` compares and stores
under the nonce's stripe lock, so a replay is refused whichever worker it
reaches, and of two copies racing on two workers exactly one passes. An entry
holds (nc, issue time); a sweep, run at most every ``sweep_every`` seconds by
whichever worker claims it first, deletes the nonces expired for longer than
``SWEEP_GRACE``: a request with an expired nonce is refused as stale before
its nc is looked at, so forgetting the nonce is safe. When the table is full,
a new nonce is tracked in the worker's own memory instead (counted in
``SharedNonceCounts.full`` and logged): for that nonce a replay to another
worker is not caught. One process (tests, a single worker) passes nothing and
gets ``LocalNonceCounts``, a bounded per-process table with the same sweep.

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
from typing import Protocol

from simplefast.errors import TableFullError
from simplefast.logs import RateLimited, get_logger

log = get_logger(__name__)

ALGORITHMS = ("SHA-256", "MD5")
NONCE_LEN = 43  # base64url of 32 bytes (time 8, salt 8, MAC 16), no padding: the only length we accept
SWEEP_GRACE = 5.0  # seconds past nonce_ttl before a nonce's count is forgotten (clocks read a bit apart)
SWEEP_KEY = b"#sweep"  # the shared table's sweep claim: not base64url, so never a nonce
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


class NonceCounts(Protocol):
    """The highest nonce-count accepted per nonce: replay protection.

    ``advance`` is the whole check: it records ``nc`` for ``nonce`` and
    returns True only when ``nc`` is higher than every count recorded for that
    nonce before; an implementation shared by processes does the comparison
    and the store as one atomic step. ``issued`` is the nonce's issue time
    (wall clock, seconds): ``sweep(expired_before)`` may forget the nonces
    issued before that time, and returns how many it forgot.
    """

    def advance(self, nonce: str, nc: int, issued: float) -> bool: ...

    def sweep(self, expired_before: float) -> int: ...


class LocalNonceCounts:
    """``NonceCounts`` in this process's memory (one worker, tests, and the
    shared table's overflow). At most ``max_tracked`` nonces: beyond that the
    one used least recently is forgotten (its replays would pass again; a
    table that size holds every nonce of a busy nonce_ttl). ``sweep`` scans
    the whole table, so it does so at most every ``sweep_every`` seconds."""

    def __init__(self, max_tracked: int = 100_000, *, sweep_every: float = 60.0) -> None:
        self._nc: OrderedDict[str, tuple[int, float]] = OrderedDict()  # nonce -> (nc, issued)
        self.max_tracked = max_tracked
        self.sweep_every = sweep_every
        self._next_sweep = float("-inf")

    def __len__(self) -> int:
        return len(self._nc)

    def last(self, nonce: str) -> int:
        """The highest count recorded for ``nonce``, 0 when none."""
        entry = self._nc.get(nonce)
        return 0 if entry is None else entry[0]

    def advance(self, nonce: str, nc: int, issued: float) -> bool:
        if nc <= self.last(nonce):
            return False
        self._nc[nonce] = (nc, issued)
        self._nc.move_to_end(nonce)
        while len(self._nc) > self.max_tracked:
            self._nc.popitem(last=False)
        return True

    def sweep(self, expired_before: float) -> int:
        if expired_before < self._next_sweep:
            return 0
        self._next_sweep = expired_before + self.sweep_every
        old = [n for n, (_, issued) in self._nc.items() if issued < expired_before]
        for n in old:
            del self._nc[n]
        return len(old)


class CounterTable(Protocol):
    """What ``SharedNonceCounts`` uses of ``simplefast._ext.shmindex.ShmTable``."""

    def put_if_greater(self, key: bytes, counter: int, tail: bytes = ...) -> bool: ...

    def get(self, key: bytes) -> bytes | None: ...

    def delete(self, key: bytes) -> bool: ...

    def keys(self) -> list[bytes]: ...


class SharedNonceCounts:
    """``NonceCounts`` in a shared-memory table, one per server, used by every worker.

    Key: the nonce (``NONCE_LEN`` ASCII bytes). Value (16 bytes, via
    ``put_if_greater``): nc then the issue time in whole seconds, both u64
    big-endian. ``advance`` is one ``put_if_greater``: atomic across processes.

    ``sweep(expired_before)``: each worker tries at most once a second to
    claim the current period (``expired_before // sweep_every``) by advancing
    the ``SWEEP_KEY`` entry to it; the one worker that succeeds scans the
    table (``keys`` then a ``get`` per entry: tens of ms for a full table of
    65,536 nonces compiled) and deletes the entries issued before
    ``expired_before``.
    A wall clock set back delays sweeps until it passes the last period again.

    Full table: ``TableFullError`` on a new nonce sends that nonce to a
    per-worker ``LocalNonceCounts`` (``full`` counts these; a warning is
    logged at most every 10 s). Such a nonce's replays are caught only on
    the worker that saw it. The fallback is consulted first for every nonce,
    so a nonce tracked there keeps its count when the table has room again.
    """

    def __init__(
        self, table: CounterTable, *, sweep_every: float = 60.0, max_fallback: int = 100_000
    ) -> None:
        self._table = table
        self.sweep_every = sweep_every
        self.fallback = LocalNonceCounts(max_fallback, sweep_every=sweep_every)
        self._full = RateLimited(log, "shared nonce table full: a new nonce is tracked by this worker only")
        self._next_claim = float("-inf")

    @property
    def full(self) -> int:
        """Advances that found the table full and used the per-worker fallback."""
        return self._full.count

    def advance(self, nonce: str, nc: int, issued: float) -> bool:
        if nc <= self.fallback.last(nonce):  # tracked here while the table was full
            return False
        try:
            return self._table.put_if_greater(
                nonce.encode("utf-8", "surrogateescape"), nc, max(0, int(issued)).to_bytes(8, "big")
            )
        except TableFullError as exc:
            self._full(str(exc), "this worker")
        except ValueError:  # a key longer than the table's key_max: not one of our nonces
            pass
        return self.fallback.advance(nonce, nc, issued)

    def sweep(self, expired_before: float) -> int:
        if expired_before < self._next_claim:
            return 0
        self._next_claim = expired_before + 1.0
        removed = self.fallback.sweep(expired_before)
        try:
            claimed = self._table.put_if_greater(SWEEP_KEY, max(0, int(expired_before // self.sweep_every)))
        except TableFullError:  # no room for the claim (a table not made by SharedState): sweep anyway
            claimed = True
        if not claimed:
            return removed  # another worker sweeps this period
        for key in self._table.keys():
            value = self._table.get(key)
            if key == SWEEP_KEY or value is None or len(value) != 16:
                continue
            if int.from_bytes(value[8:], "big") < expired_before and self._table.delete(key):
                removed += 1
        return removed


class DigestAuth:
    def __init__(
        self,
        secret: bytes,
        *,
        algorithms: tuple[str, ...] = ALGORITHMS,
        nonce_ttl: float = 300.0,
        max_tracked: int = 100_000,
        nonce_counts: NonceCounts | None = None,
    ) -> None:
        """``nonce_counts``: where the highest nc per nonce is kept; a worker of a
        multi-process server passes ``SharedState.nonce_counts()``. None: a
        ``LocalNonceCounts(max_tracked)`` of this instance."""
        if not algorithms or any(a not in _HASH for a in algorithms):
            raise ValueError(f"algorithms must be a non-empty sequence of {', '.join(ALGORITHMS)}")
        self.algorithms = tuple(algorithms)
        self._secret = secret
        self.nonce_ttl = nonce_ttl
        self.nonce_counts: NonceCounts = (
            LocalNonceCounts(max_tracked) if nonce_counts is None else nonce_counts
        )

    def nonce(self, realm: str, now_wall: float) -> str:
        # t || salt || mac: the salt makes every challenge's nonce unique (nc counts per nonce)
        t = struct.pack(">Q", int(now_wall)) + os.urandom(8)
        mac = hmac.new(self._secret, t + realm.encode(), hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(t + mac).decode().rstrip("=")

    def _nonce_time(self, nonce: str, realm: str) -> int | None:
        if len(nonce) != NONCE_LEN:
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce + "=")
        except ValueError:
            return None
        if base64.urlsafe_b64encode(raw).decode().rstrip("=") != nonce:
            return None  # only the very string we issue: one key per nonce for the nc table
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
            counts = self.nonce_counts
            counts.sweep(now_wall - self.nonce_ttl - SWEEP_GRACE)  # cheap unless a sweep is due
            if nc == 0 or not counts.advance(nonce, nc, issued):  # counts start at 00000001
                return AuthResult(False, reason="nonce count replayed")
        return AuthResult(True, username)
