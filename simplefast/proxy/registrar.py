"""Registrar (RFC 3261 section 10.3), sans-IO.

Theory of operation: ``Registrar.register(msg, now, source)`` takes a REGISTER
that passed ``validate_request`` and returns a :class:`Reply` (status,
reason, extra header pairs) after applying it to the location service. It
follows section 10.3 step by step:

1. the Request-URI's domain must be one of ours (else 404; a proxy in front
   would have forwarded it);
2. (Require was checked by ``validate_request``); 3-4. authentication and
   authorization happen before this call (digest, in the server core);
5. the address-of-record is the To URI, reduced to ``sip:user@domain``
   (scheme sips kept; host lower-cased; no port, parameters or headers);
   its domain must be ours (404);
6. a ``*`` Contact needs ``Expires: 0`` and no other Contact (400); it
   removes every binding, unless one has the same Call-ID and a CSeq not lower
   (then the request is out of order: 500 per step 7's rule);
7. each Contact gets its expiry: the contact's ``expires`` parameter, else
   the Expires header, else ``default_expires``; non-zero values below
   ``min_expires`` get 423 with Min-Expires, values above ``max_expires``
   are shortened. A contact equal (section 19.1.4) to a stored one replaces
   it when the Call-ID differs or the CSeq is higher; a lower CSeq fails with
   500 ("out of order"); the same CSeq is a retransmission whose transaction
   was lost (a killed worker) and leaves the binding as it is; expiry 0
   removes it;
8. the 200 lists every current binding with its remaining ``expires``.

Bindings beyond ``max_contacts`` per AOR get 403. GRUUs are not issued
(issue #4: only when asked with +sip.instance and Supported: gruu; not yet).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from simplefast._impl import sipmsg as _codec
from simplefast._sipshared import qvalue
from simplefast.errors import SipParseError
from simplefast.proxy.location import Binding, Location, LocationFullError

SipMessage = Any


class Reply(NamedTuple):
    status: int
    reason: str
    headers: Sequence[tuple[str, str]] = ()


@dataclass(slots=True)
class RegistrarConfig:
    domains: frozenset[str]
    default_expires: int = 3600
    min_expires: int = 60
    max_expires: int = 86400
    max_contacts: int = 16


def aor_of(uri_text: str) -> tuple[str, str]:
    """(AOR, domain) of a To URI: ``sip:user@host`` canonical form (section 10.3 step 5)."""
    uri = _codec.parse_uri(uri_text)
    if uri.scheme not in ("sip", "sips") or uri.host is None:
        raise SipParseError(f"address-of-record {uri_text[:64]!r} is not a SIP URI")
    host = uri.host.lower()
    user = _unescape_user(uri.user) if uri.user is not None else None
    return (f"{uri.scheme}:{user}@{host}" if user is not None else f"{uri.scheme}:{host}"), host


def _unescape_user(user: str) -> str:
    if "%" not in user:
        return user
    from urllib.parse import unquote

    return unquote(user, errors="surrogateescape")


class Registrar:
    def __init__(self, config: RegistrarConfig, location: Location) -> None:
        self.config = config
        self.location = location

    def is_ours(self, host: str | None) -> bool:
        return host is not None and host.lower() in self.config.domains

    def register(self, msg: SipMessage, now: float, source: str = "", ruri: Any = None) -> Reply:
        """Apply a REGISTER (``ruri``: its Request-URI parsed already, if the caller has it)."""
        cfg = self.config
        if ruri is None:
            ruri = _codec.parse_uri(msg.uri)
        if not self.is_ours(ruri.host):
            return Reply(404, "Not Found", [("Warning", '399 simplefast "domain not served here"')])
        to = msg.to_addr()
        try:
            aor, domain = aor_of(to.uri)
        except SipParseError:
            return Reply(404, "Not Found", [("Warning", '399 simplefast "To is not a SIP URI"')])
        if not self.is_ours(domain):
            return Reply(404, "Not Found", [("Warning", '399 simplefast "AOR domain not served here"')])
        contacts = msg.contacts()
        hdr_expires = msg.expires
        call_id: str = msg.call_id
        cseq: int = msg.cseq_num
        current = self.location.get(aor, now)

        if len(contacts) == 1 and contacts[0].uri == "*":  # step 6 (validate_request: it stands alone)
            if hdr_expires != 0:
                return Reply(400, "Bad Request", [("Warning", '399 simplefast "* needs Expires: 0"')])
            if any(b.call_id == call_id and b.cseq >= cseq for b in current):
                return Reply(500, "Server Internal Error", [("Warning", '399 simplefast "out of order"')])
            self.location.put(aor, [])
            return Reply(200, "OK", [("Date", _http_date())])

        if contacts:
            path = tuple(msg.get_all("Path"))
            updated = list(current)
            for c in contacts:
                raw = c.params.get("expires")
                exp = int(raw) if raw is not None else hdr_expires
                if exp is None:
                    exp = cfg.default_expires
                if 0 < exp < cfg.min_expires:
                    return Reply(423, "Interval Too Brief", [("Min-Expires", str(cfg.min_expires))])
                exp = min(exp, cfg.max_expires)
                idx = -1
                if updated:  # a new AOR (the common case) has nothing to compare with
                    curi = _codec.parse_uri(c.uri)
                    idx = next(
                        (i for i, b in enumerate(updated) if _codec.parse_uri(b.contact).equivalent(curi)), -1
                    )
                if idx >= 0:
                    old = updated[idx]
                    if old.call_id == call_id and old.cseq == cseq:
                        # the same request again, already applied: its transaction went with a
                        # killed worker (or a restart) before the 200 left, and the client
                        # retransmitted. A UA gives every new REGISTER a higher CSeq (section
                        # 10.2), so this is no reordering: the binding stays as it is, and the
                        # client gets the 200 it missed instead of a 500.
                        continue
                    if old.call_id == call_id and old.cseq > cseq:
                        return Reply(
                            500, "Server Internal Error", [("Warning", '399 simplefast "out of order"')]
                        )
                    del updated[idx]
                if exp == 0:
                    continue
                raw_q = c.params.get("q")
                q = _q_value(raw_q)
                if raw_q is not None and q is None:
                    bad = raw_q[:20].replace('"', "'")
                    return Reply(
                        400, "Bad Request", [("Warning", f'399 simplefast "q={bad} is not a qvalue"')]
                    )
                instance = c.params.get("+sip.instance")
                updated.append(Binding(c.uri, now + exp, q, call_id, cseq, path, source, instance))
            if len(updated) > cfg.max_contacts:
                return Reply(
                    403, "Forbidden", [("Warning", f'399 simplefast "more than {cfg.max_contacts} contacts"')]
                )
            try:
                self.location.put(aor, updated)
            except LocationFullError as exc:
                text = str(exc).replace('"', "'")[:120]
                return Reply(
                    503,
                    "Service Unavailable",
                    [("Retry-After", "60"), ("Warning", f'399 simplefast "{text}"')],
                )
            current = updated

        headers = [("Contact", _contact_line(b, now)) for b in current]
        headers.append(("Date", _http_date()))
        return Reply(200, "OK", headers)


def _q_value(raw: str | None) -> float | None:
    return None if raw is None else qvalue(raw)


def _contact_line(b: Binding, now: float) -> str:
    line = f"<{b.contact}>;expires={max(0, int(b.expires_at - now + 0.5))}"
    if b.q is not None:
        line += f";q={b.q:g}"
    return line


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_date_cache: tuple[int, str] = (-1, "")


def _http_date() -> str:
    """RFC 1123 date of the wall clock (one string per second)."""
    global _date_cache
    sec = int(time.time())
    if _date_cache[0] != sec:
        t = time.gmtime(sec)
        text = (
            f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
        )
        _date_cache = (sec, text)
    return _date_cache[1]
