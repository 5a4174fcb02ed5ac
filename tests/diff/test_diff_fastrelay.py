"""The two FastRelay twins against each other, on generated MESSAGE and response sequences.

Each twin runs on its own table with the same rows (one UDP binding of several
shapes, two bindings, an expiring one, Path, stream flows, contacts with a host
name, maddr, transport=tcp, sips, the URI-list user), the same config, prefix,
tag prefix and timers. Both get the same steps: a new MESSAGE from a small grammar
with the distinctions the relay makes (Request-URI scheme, user and domain,
Max-Forwards, Route, Require, a Via of ours, body size against ``max_body`` and the
1300-octet rule, branch with or without the cookie, UDP and stream peers), the
previous request again, a response (100/180/2xx/3xx-6xx, sometimes twice, sometimes
on a branch unknown here or for another method) built from the last forwarded copy,
``expire`` at increasing times or at ``next_deadline()``, a key of the general layer,
``accept`` off, and now and then a mutated datagram (simplefast.testing.mutate).
After every step: the same kind of result, byte-identical ``take()`` lists (peers
equal), the same counters, ``len()``, ``expecting()`` and ``next_deadline()``; and a
wake-up is never late (``expire`` sends nothing before ``next_deadline()``).
``loop_hash`` is compared with the general path's ``_loop_hash`` on generated requests.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from simplefast._impl import sipmsg as active_codec
from simplefast.proxy.core import SUPPORTED
from simplefast.proxy.location import Binding, ShmLocation
from simplefast.proxy.proxy import ProxyAddress, _loop_hash
from simplefast.proxy.registrar import RegistrarConfig
from simplefast.server.shared import AOR_MAX, BINDINGS_MAX
from simplefast.testing import load_impl, mutate

REF = load_impl("ref")
EXT = load_impl("ext")
SHM = EXT.shmindex  # the ext table works with either relay twin
ME = ProxyAddress("10.0.0.1", 5060, 40000, client_ports={"4": ("10.0.0.1", 40000), "6": ("fd00::1", 40006)})
PREFIX = "z9hG4bKbp0w0.r"
TAG_PREFIX = "feedr"
START = 1000.0


def b(contact: str, *, expires_at: float = START + 3600, path: tuple[str, ...] = (),
      source: str = "udp:127.0.0.1:5061") -> Binding:  # fmt: skip
    return Binding(contact, expires_at, None, "reg@h", 1, path, source, None)


ROWS: dict[str, list[Binding]] = {
    "sip:u1@example.com": [b("sip:u1@127.0.0.1:5061")],
    "sip:u2@example.com": [b("sip:u2@[fd00::7]:5062;transport=UDP", source="")],
    "sip:ub@example.com": [b("sip:10.0.0.5")],
    "sip:u3@example.com": [b("sip:u3@127.0.0.1:5061"), b("sip:u3@127.0.0.1:5062")],
    "sip:u4@example.com": [b("sip:u4@127.0.0.1:5061", expires_at=START + 40)],  # expires during a run
    "sip:u5@example.com": [b("sip:u5@127.0.0.1:5061", path=("<sip:edge.example.net;lr>",))],
    "sip:u6@example.com": [b("sip:u6@127.0.0.1:5061", source="tcp:127.0.0.1:5061/7")],
    "sip:u7@example.com": [b("sip:u7@ua.example.net:5061")],
    "sip:u8@example.com": [b("sip:u8@127.0.0.1:5061;maddr=10.0.0.9")],
    "sip:u9@example.com": [b("sip:u9@127.0.0.1:5061;transport=tcp")],
    "sip:ua@example.com": [b("sips:ua@127.0.0.1:5061")],
    "sip:u1@other.org": [b("sip:u1@127.0.0.1:5063")],
    "sip:list@example.com": [b("sip:list@127.0.0.1:5064")],
    "sip:U1@example.com": [b("sip:U1@127.0.0.1:5065")],
}

# Each choice: (values the relay takes, values it declines or that break the parse). A
# request is "plain" (every choice from the first list), "one-off" (one choice from the
# second) or "wild" (every choice from both): relayed requests, and so transactions and
# timers, are common, and every way out is taken on its own as well as in company.
CHOICES: dict[str, tuple[list[Any], list[Any]]] = {
    "user": (["u1", "u2", "ub"], ["u3", "u4", "u5", "u6", "u7", "u8", "u9", "ua", "nobody", "u%31", "list",
                                  "U1", None, "x" * 130]),
    "host": (["example.com", "EXAMPLE.com", "example.com:5060"], ["other.org"]),
    "scheme": (["sip"], ["sips", "tel"]),
    "mf": ([None, "70", "1", "2"], ["0", "x", "70, 70"]),
    "route": ([None], ["<sip:10.0.0.1:5060;lr>", "<sip:proxy.other.org;lr>"]),
    "require": ([None], ["foo", "path"]),
    "lower_via": ([None, "SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bKlow"],
                  ["SIP/2.0/UDP 10.0.0.1:40000;branch=z9hG4bKours", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKo"]),
    "body": ([b"hi", b"x" * 60], [b"y" * 100, b"z" * 1000]),
    "branch": (["z9hG4bK-1", "z9hG4bK-2", "z9hG4bK-3"], ["nocookie-1", None]),
    "peer_shape": ([2, 2, 3], [4, 1]),
    "cseq": (["1 MESSAGE", "2 MESSAGE"], ["1 INVITE", "x MESSAGE"]),
}  # fmt: skip


def pick(draw: Any, mode: str, name: str) -> Any:
    ok, bad = CHOICES[name]
    return draw(st.sampled_from(ok + bad if mode == "wild" else bad if mode == name else ok))


@st.composite
def messages(draw: Any) -> tuple[bytes, tuple[Any, ...]]:
    """One MESSAGE datagram and the peer it comes from."""
    mode = draw(st.sampled_from(["plain", "plain", "plain", "one-off", "one-off", "one-off", "wild"]))
    if mode == "one-off":
        mode = draw(st.sampled_from(sorted(CHOICES)))
    user, host, scheme = pick(draw, mode, "user"), pick(draw, mode, "host"), pick(draw, mode, "scheme")
    if scheme == "tel":
        ruri = "tel:+15551234"
    else:
        ruri = f"{scheme}:{user}@{host}" if user is not None else f"{scheme}:{host}"
    branch = pick(draw, mode, "branch")
    sent_by = draw(
        st.sampled_from(["127.0.0.1:5070", "127.0.0.1:5070", "Client.Example.COM", "10.0.0.1:5060"])
    )
    if sent_by == "10.0.0.1:5060" and mode != "wild":
        sent_by = "127.0.0.1:5070"  # our own address on top: only now and then
    top = f"Via: SIP/2.0/UDP {sent_by}" + (f";branch={branch}" if branch is not None else "")
    lines = [f"MESSAGE {ruri} SIP/2.0", top + (";rport" if draw(st.booleans()) else "")]
    lower = pick(draw, mode, "lower_via")
    if lower is not None:
        lines.append(f"Via: {lower}")
    mf = pick(draw, mode, "mf")
    if mf is not None:
        lines.append(f"Max-Forwards: {mf}")
    route = pick(draw, mode, "route")
    if route is not None:
        lines.append(f"Route: {route}")
    lines.append(f"From: <sip:alice@example.com>;tag={draw(st.sampled_from(['f1', 'f2']))}")
    lines.append(f"To: <sip:{user or 'x'}@example.com>{draw(st.sampled_from(['', '', ';tag=t1']))}")
    lines.append(f"Call-ID: {draw(st.sampled_from(['c1@h', 'c2@h']))}")
    lines.append(f"CSeq: {pick(draw, mode, 'cseq')}")
    require = pick(draw, mode, "require")
    if require is not None:
        lines.append(f"Require: {require}")
    extra = draw(st.sampled_from([None, None, None, "Proxy-Require: foo", "Proxy-Authorization: Digest x=1"]))
    if extra is not None:
        lines.append(extra)
    body = pick(draw, mode, "body")
    lines.append("Content-Type: text/plain")
    data = ("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    host_ = draw(st.sampled_from(["10.9.9.9", "10.9.9.9", "fd00::9", ""]))
    shape = pick(draw, mode, "peer_shape")
    peer: tuple[Any, ...]
    if shape == 2:
        peer = (host_, 5070)
    elif shape == 3:
        peer = (host_, 5070, draw(st.sampled_from([0, 1, "c"])))
    elif shape == 4:
        peer = (host_, 5070, draw(st.sampled_from(["tcp", "tls"])), 3)
    else:
        peer = (host_,)
    return data, peer


STATUSES = [100, 100, 180, 183, 200, 200, 202, 302, 408, 486, 503, 603]
RESPONSE_KINDS = ["plain", "plain", "plain", "twice", "unknown", "method", "no-via-left", "general-branch"]
STEP_TIMES = [0.0, 0.0, 0.1, 0.5, 1.0, 4.0, 5.0, 32.0, 33.0]
STEPS = st.one_of(
    messages().map(lambda m: ("new", m)),
    st.just(("again",)),
    st.tuples(st.just("resp"), st.sampled_from(STATUSES), st.sampled_from(RESPONSE_KINDS)),
    st.tuples(st.just("expire"), st.sampled_from(STEP_TIMES)),
    st.just(("deadline",)),
    st.tuples(st.just("tick"), st.sampled_from(STEP_TIMES)),
    st.just(("mutate",)),
    st.just(("general",)),
    st.tuples(st.just("accept"), st.booleans()),
)
TIMERS = [(0.5, 4.0, 5.0), (0.25, 1.0, 2.0), (0.5, 0.5, 5.0), (0.05, 4.0, 5.0)]


def new_table() -> Any:
    mem = SHM.create_shared(SHM.table_size(32, AOR_MAX, BINDINGS_MAX))
    return SHM.ShmTable(mem, 32, AOR_MAX, BINDINGS_MAX, create=True, zeroed=True)


class Twin:
    def __init__(self, impl: Any, domains: frozenset[str], timers: tuple[float, float, float],
                 max_body: int | None, service: tuple[str, str] | None) -> None:  # fmt: skip
        self.table = new_table()
        loc = ShmLocation(self.table)
        for aor, bindings in ROWS.items():
            loc.put(aor, bindings)
        self.general: dict[Any, Any] = {}
        t1, t2, t4 = timers
        self.relay = impl.fastrelay.FastRelay(
            RegistrarConfig(domains=domains), self.table, ME, prefix=PREFIX, supported=SUPPORTED,
            general=self.general, tag_prefix=TAG_PREFIX, t1=t1, t2=t2, t4=t4,
        )  # fmt: skip
        self.relay.max_body = max_body
        self.relay.service = service

    def state(self) -> tuple[Any, ...]:
        r = self.relay
        return (
            r.relayed,
            r.declined,
            r.absorbed,
            r.timeouts,
            r.open,
            len(r),
            r.expecting(),
            r.next_deadline(),
        )

    def take(self) -> list[tuple[bytes, Any]]:
        out: list[tuple[bytes, Any]] = self.relay.take()
        assert self.relay.out == []
        return out


def outcome(f: Any, *args: Any) -> Any:
    try:
        out = f(*args)
    except Exception as exc:  # noqa: BLE001 - both twins must fail alike
        return ("raised", type(exc).__name__)
    if out is None or out is True:
        return out
    assert type(out).__name__ == "SipMessage", out
    if out.is_request:
        return ("declined", out.method, safe(lambda: out.call_id), safe(lambda: out.via_branch))
    return ("not ours", out.status, safe(lambda: out.call_id))


def safe(f: Any) -> Any:
    try:
        return f()
    except Exception as exc:  # noqa: BLE001 - a malformed header of a declined datagram
        return ("raised", type(exc).__name__)


def response_to(fwd: bytes, status: int, kind: str) -> list[bytes]:
    """The UA's response(s) to a forwarded copy."""
    codec = active_codec
    if kind == "unknown":
        fwd = re.sub(
            rb"branch=" + PREFIX.encode() + rb"[0-9a-f]+", b"branch=" + PREFIX.encode() + b"fff", fwd
        )
    elif kind == "general-branch":
        fwd = fwd.replace(b"branch=" + PREFIX.encode(), b"branch=z9hG4bKbp0w0.", 1)
    tag = "uas" if status > 100 else None
    data = bytes(codec.build_response(codec.parse_message(fwd), status, "Whatever", to_tag=tag))
    if kind == "method":
        data = data.replace(b" MESSAGE\r\n", b" INFO\r\n")
    elif kind == "no-via-left":  # a UAS that kept our Via only
        head, _, rest = data.partition(b"\r\n")
        vias = [line for line in rest.split(b"\r\n") if line.startswith(b"Via: ")]
        data = head + b"\r\n" + rest.replace(b"\r\n".join(vias), vias[0], 1)
    return [data, data] if kind == "twice" else [data]


FALLBACK_FWD = (
    b"MESSAGE sip:u1@127.0.0.1:5061 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:40000;branch=" + PREFIX.encode()
    + b"1.000000000000\r\nMax-Forwards: 69\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n"
    b"From: <sip:alice@example.com>;tag=f1\r\nTo: <sip:u1@example.com>\r\nCall-ID: c1@h\r\n"
    b"CSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
)  # fmt: skip
FIRST = (
    b"MESSAGE sip:u1@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=f1\r\nTo: <sip:u1@example.com>\r\n"
    b"Call-ID: c1@h\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
)


def check_loop_hash(data: bytes) -> None:
    try:
        m_ref, m_ext, m_act = (REF.sipmsg.parse_message(data), EXT.sipmsg.parse_message(data),
                               active_codec.parse_message(data))  # fmt: skip
    except Exception:  # noqa: BLE001 - not parsed: nothing to hash
        return
    want = hashed(_loop_hash, m_act)
    assert hashed(REF.fastrelay.loop_hash, m_ref) == want
    assert hashed(EXT.fastrelay.loop_hash, m_ext) == want


def hashed(f: Any, msg: Any) -> Any:
    try:
        return f(msg)
    except Exception as exc:  # noqa: BLE001 - a malformed To or CSeq: all alike
        return ("raised", type(exc).__name__)


@settings(max_examples=450)
@given(
    st.lists(STEPS, min_size=1, max_size=10),
    st.sampled_from(TIMERS),
    st.sampled_from([None, None, 64]),
    st.sampled_from([None, ("list", "example.com")]),
    st.sampled_from([frozenset({"example.com"}), frozenset({"example.com", "other.org"})]),
    st.data(),
)  # fmt: skip
def test_twins_agree(
    steps: list[tuple[Any, ...]], timers: tuple[float, float, float], max_body: int | None,
    service: tuple[str, str] | None, domains: frozenset[str], data: Any,
) -> None:  # fmt: skip
    ref, ext = (Twin(impl, domains, timers, max_body, service) for impl in (REF, EXT))
    now = START
    accept = True
    last_req: tuple[bytes, tuple[Any, ...]] = (FIRST, ("10.9.9.9", 5070))
    last_dgram = FIRST
    fwd: bytes | None = None
    for i, step in enumerate([("again",), *steps]):  # FIRST is relayed: a record from the start
        kind = step[0]
        results: list[Any] = []
        if kind in ("new", "again"):
            if kind == "new":
                last_req = step[1]
                check_loop_hash(last_req[0])
            raw, peer = last_req
            last_dgram = raw
            want = outcome(ref.relay.request, raw, peer, now, accept)
            results = [want, outcome(ext.relay.request, raw, peer, now, accept)]
            event(f"request {kind}: {want if want is None or want is True else want[0]}")
        elif kind == "resp":
            for resp in response_to(fwd or FALLBACK_FWD, step[1], step[2]):
                last_dgram = resp
                want = outcome(ref.relay.response, resp, now)
                results += [want, outcome(ext.relay.response, resp, now)]
                event(f"response {step[2]}: {want if want is None or want is True else want[0]}")
        elif kind in ("expire", "deadline"):
            if kind == "expire":
                now += step[1]
            else:
                d = ref.relay.next_deadline()
                now = max(now, d if d is not None else now)
            for t in (ref, ext):
                before = t.relay.next_deadline()
                t.relay.expire(now)
                if t.relay.out:  # never late: something was due at the deadline announced
                    assert before is not None and before <= now, (i, before, now)
                after = t.relay.next_deadline()
                assert after is None or after > now, (i, after, now)
        elif kind == "tick":
            now += step[1]
        elif kind == "mutate":
            sent = mutate(last_dgram, data)
            for f in ("request", "response"):
                args = (sent, last_req[1], now, accept) if f == "request" else (sent, now)
                want = outcome(getattr(ref.relay, f), *args)
                results += [want, outcome(getattr(ext.relay, f), *args)]
        elif kind == "general":
            try:
                m = active_codec.parse_message(last_req[0])
                key = (m.via_branch, (m.via_host or "").lower(), m.via_port, "MESSAGE")
            except Exception:  # noqa: BLE001 - no key to hold
                key = None
            for t in (ref, ext):
                t.general[key] = True
        elif kind == "accept":
            accept = step[1]
        assert results[0::2] == results[1::2], (i, step, results)
        out_ref, out_ext = ref.take(), ext.take()
        assert out_ext == out_ref, (i, step)
        for d, p in out_ref:
            if d.startswith(b"MESSAGE ") and p[2:] == ("c",):
                branch = active_codec.parse_message(d).via_branch
                assert branch.startswith(PREFIX), branch
                if kind in ("new", "again"):  # a copy just made: the general path's loop hash
                    assert branch.endswith("." + _loop_hash(active_codec.parse_message(last_req[0])))
                    event("forwarded")
                else:
                    event(f"resent by Timer E ({kind})")
                fwd = d if kind in ("new", "again") else fwd
            elif d.startswith(b"SIP/2.0 408 "):
                event("408 of Timer F")
        assert ext.state() == ref.state(), (i, step, ref.state(), ext.state())
        r = ref.relay
        assert 0 <= r.open <= len(r), (r.open, len(r))
        assert r.expecting() or r.open == 0


def test_fallback_copy_is_not_ours_until_relayed() -> None:
    """FALLBACK_FWD's branch names a record number no relay has made yet."""
    for impl in (REF, EXT):
        t = Twin(impl, frozenset({"example.com"}), TIMERS[0], None, None)
        (resp,) = response_to(FALLBACK_FWD, 200, "plain")
        assert outcome(t.relay.response, resp, START)[0] == "not ours"


# ------------------------------------------------------------------ loop_hash

HEADER_TEXT = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="\\"),
                      min_size=1, max_size=12)  # fmt: skip


@settings(max_examples=300)
@given(
    messages(),
    st.one_of(st.none(), HEADER_TEXT),
    st.one_of(st.none(), HEADER_TEXT),
    st.one_of(st.none(), HEADER_TEXT),
    st.integers(0, 2**31 - 1),
    st.sampled_from(["", ";user=phone", ";transport=udp", "\u00e9"]),
)  # fmt: skip
def test_loop_hash_is_the_general_paths(
    m: tuple[bytes, Any], preq: str | None, pauth: str | None, to_tag: str | None, cseq: int, param: str
) -> None:
    raw = m[0]
    head, sep, body = raw.partition(b"\r\n\r\n")
    first, _, rest = head.partition(b"\r\n")
    first = first.replace(b" SIP/2.0", param.encode() + b" SIP/2.0", 1)
    rest = re.sub(rb"CSeq: \S+", b"CSeq: %d" % cseq, rest, count=1)
    if to_tag is not None:
        rest = re.sub(rb"(To: <[^>]*>)[^\r\n]*", rb"\1;tag=" + to_tag.encode(), rest, count=1)
    for name, value in (("Proxy-Require", preq), ("Proxy-Authorization", pauth)):
        if value is not None:
            rest += f"\r\n{name}: {value}".encode()
    data = first + b"\r\n" + rest + sep + body
    check_loop_hash(data)
    try:
        msg = EXT.sipmsg.parse_message(data)
    except Exception:  # noqa: BLE001
        return
    h = hashed(EXT.fastrelay.loop_hash, msg)
    assert type(h) is tuple or re.fullmatch(r"[0-9a-f]{12}", h)
