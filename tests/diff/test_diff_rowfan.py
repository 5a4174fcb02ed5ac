"""The two RowFan twins against each other (the fan-out over rows, fanout.RowFan).

Each twin gets the same world: a worker's records (keys of 32 bytes, a long
one now and then), their rows in a table (SIPp-like subscriptions that the
row path takes, generated ones of every shape from test_diff_subrow, rows of
another owner or record, layout 1, mangled octets, none at all), keys held
as objects (pinned, queued, cached), overlays of queued NOTIFYs, a queue with
entries of objects and of rows. Then a sequence of ``changed`` (from random
starts, with pacing intervals and windows), ``pump``, 200s that free the
window and time passing. After every step both give the same result or the
same error, sent the same bytes to the same places, queued the same
entries, left the same rows and overlays, and made the same calls back
(forget, lost, body_of, wire).
"""

from __future__ import annotations

import copy
from array import array
from collections import OrderedDict, deque
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from simplefast.presence.subscribe import Body, Subscription
from simplefast.testing import load_impl
from tests.diff.test_diff_subrow import mangled, subscriptions

REF = load_impl("ref")
EXT = load_impl("ext")
IDX = 3
PREFIX = "z9hG4bKrowfan.n"

good_peers = st.sampled_from(
    [("10.0.0.9", 5070), ("10.0.0.9", 5071, 0), ("127.0.0.1", 6000, "c"), ("::1", 5080),
     ("10.0.0.7", 5090, "tcp", 12), ("2001:db8::5", 5061, "tls", 3), ("host.example", 5060)]
)  # fmt: skip


@st.composite
def row_for(draw: Any, r: int, key: str, tidy: bool) -> bytes | None:
    """``tidy``: a row the fan-out takes (SIPp's, one of the peer shapes), else anything."""
    kind = "good" if tidy else draw(st.sampled_from(["good", "any", "other", "none", "v1", "mangled"]))
    if kind == "none":
        return None
    if kind == "v1":
        return b"\x01" + draw(st.binary(max_size=60))
    if kind == "mangled":
        return draw(mangled())  # type: ignore[no-any-return]
    sub: Subscription = draw(subscriptions())
    sub.key = key
    if kind in ("good", "other"):
        sub.routes = draw(st.sampled_from([(), (), (), ("<sip:10.0.0.1;lr>",)]))
        sub.peer = draw(good_peers)
        sub.policy = draw(st.sampled_from(REF.subrow.POLICIES + ("custom",)))
        sub.state = draw(st.sampled_from(["active", "pending", "terminated"]))
        sub.cseq = draw(st.integers(0, 5) | st.just(0xFFFFFFFF))
        sub.expires_at = draw(st.floats(0, 4000) | st.sampled_from([1e16, -1e16, float("inf")]))
        if tidy:
            sub.routes, sub.policy, sub.state = (), draw(st.sampled_from(REF.subrow.POLICIES)), "active"
            sub.cseq, sub.expires_at = draw(st.integers(0, 5)), draw(st.floats(0, 4000))
        sub.last_sent = draw(st.sampled_from([-1e18, 0.0, 9.5]) | st.floats(-10, 12))
        sub.remote_cseq, sub.subscribed_at = draw(st.integers(0, 9)), 0.0
        sub.version = draw(st.integers(-1, 10))
        sub.owner, sub.rec = IDX, r
        if kind == "other":
            sub.owner, sub.rec = draw(st.sampled_from([(IDX + 1, r), (IDX, r + 1), (IDX, -1)]))
    sub.row_static = b""
    try:
        return REF.subrow.encode(sub)  # type: ignore[no-any-return]
    except ValueError:
        return None


@st.composite
def worlds(draw: Any) -> dict[str, Any]:
    n = draw(st.integers(1, 8))
    tidy = draw(st.booleans())
    keys = bytearray()
    long: dict[int, str] = {}
    rows: dict[str, bytes | None] = {}
    names = []
    for r in range(n):
        if not tidy and draw(st.sampled_from([False] * 12 + [True])):
            long[r] = "L" * 40 + str(r)
            keys += b"\0" * 32
            names.append(long[r])
            continue
        key = f"k{r}x" + "y" * draw(st.integers(0, 28))
        keys += key.encode() + b"\0" * (32 - len(key))
        names.append(key)
        rows[key] = draw(row_for(r, key, tidy))
    some = st.lists(st.sampled_from(names), max_size=2)
    few = st.sampled_from([0, 0, 0, 1]).flatmap(
        lambda k: st.lists(st.sampled_from(names), min_size=k, max_size=k)
    )
    rowq = {}
    for k in draw(some):
        fields = draw(st.booleans())
        rowq[k] = [
            draw(st.integers(1, 2)),
            draw(st.floats(0, 50)) if fields else None,
            draw(st.integers(0, 9)) if fields else None,
            draw(st.integers(0, 3)) if fields else None,
        ]
    queue: list[tuple[Any, ...]] = []
    for k in draw(st.lists(st.sampled_from(names), max_size=3)):
        queue.append((k, None, Body(draw(st.integers(0, 9)), "application/pidf+xml", b"<q/>"), False))
    if draw(st.booleans()):
        queue.insert(draw(st.integers(0, len(queue))), ("an object", None, None, True))
    return {
        "keys": keys, "long": long, "rows": rows, "rowq": rowq, "queue": queue,
        "pinned": dict.fromkeys(draw(few), "obj"), "queued": dict.fromkeys(draw(few), "obj"),
        "cache": dict.fromkeys(draw(some), "obj"), "refuse": set(draw(some)),
        "recs": array("I", draw(st.permutations(range(n)))),
    }  # fmt: skip


op = st.one_of(
    st.tuples(
        st.just("changed"),
        st.integers(0, 9),
        st.sampled_from([0.0, 0.0, 5.0]),
        st.sampled_from([0, 1, 2, 500]),
    ),
    st.tuples(st.just("pump"), st.just(0), st.just(0.0), st.sampled_from([0, 1, 2, 500])),
    st.tuples(st.just("answer"), st.integers(0, 5), st.just(0.0), st.just(0)),
    st.tuples(st.just("tick"), st.just(0), st.sampled_from([0.0, 0.5, 7.0, 100.0]), st.just(0)),
)


class World:
    def __init__(self, mod: Any, spec: dict[str, Any]) -> None:
        spec = copy.deepcopy(spec)
        self.rows = spec["rows"]
        self.refuse = spec["refuse"]
        self.calls: list[tuple[Any, ...]] = []
        self.out: list[tuple[bytes, Any]] = []
        self.queue: deque[Any] = deque(spec["queue"])
        self.rowq = spec["rowq"]
        self.recs = spec["recs"]
        self.cache = OrderedDict(spec["cache"])
        self.txns = mod.fanout.NotifyTxns(PREFIX)
        self.fan = mod.fanout.RowFan(
            self.txns, index=IDX, keys=spec["keys"], long=spec["long"], pinned=spec["pinned"],
            queued=spec["queued"], cache=self.cache, rowq=self.rowq, get=self.rows.get, put=self.put,
            forget=self.forget, lost=lambda k, row: self.calls.append(("lost", k, row)),
            send=lambda d, dest: self.out.append((d, dest)), wire=self.wire, ctypes={},
        )  # fmt: skip

    def put(self, key: str, row: bytes) -> bool:
        self.calls.append(("put", key))
        if key in self.refuse:
            self.rows.pop(key, None)
            return False
        self.rows[key] = row
        return True

    def forget(self, key: str) -> None:
        self.calls.append(("forget", key))
        self.cache.pop(key, None)

    def wire(self, dest: tuple[Any, ...]) -> tuple[bytes, bytes]:
        self.calls.append(("wire", dest))
        transport = dest[2] if len(dest) == 4 else "udp"
        return f"SIP/2.0/{transport.upper()} 192.0.2.1:5060".encode(), f"<sip:192.0.2.1;{transport}>".encode()

    def body_of(self, policy: str) -> Body:
        self.calls.append(("body", policy))
        return Body(7, "application/pidf+xml", b"<pidf %s/>" % policy.encode())

    def step(self, op: tuple[Any, ...], now: float) -> Any:
        kind, a, f, window = op
        try:
            if kind == "changed":  # as the notifier calls it: on past each record it leaves
                bodies: list[Any] = [None] * len(REF.subrow.POLICIES)
                got, i = [], a
                while True:
                    i, sends = self.fan.changed(
                        self.recs, i, now, f, window, self.queue, bodies, self.body_of
                    )
                    got.append((i, sends))
                    if i >= len(self.recs):
                        return got
                    i += 1
            if kind == "pump":
                return self.fan.pump(self.queue, window, now)
            if kind == "answer":
                sent = [d for d, _ in self.out]
                if a < len(sent):
                    branch = sent[a].split(b";branch=", 1)[1].split(b"\r\n", 1)[0].decode()
                    return self.txns.response(branch, 200, now)
            return None
        except (ValueError, TypeError, OverflowError) as exc:
            return f"{type(exc).__name__}: {exc}"

    def state(self) -> tuple[Any, ...]:
        return (self.out, list(self.queue), self.rows, self.rowq, list(self.cache), self.calls, self.fan.sent,
                self.fan.queued, self.txns.outstanding)  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(worlds(), st.lists(op, min_size=1, max_size=12))
def test_the_twins_fan_out_alike(spec: dict[str, Any], ops: list[tuple[Any, ...]]) -> None:
    ref, ext = World(REF, spec), World(EXT, spec)
    now = 10.0
    for o in ops:
        if o[0] == "tick":
            now += o[2]
            continue
        assert ref.step(o, now) == ext.step(o, now), o
        assert ref.state() == ext.state(), o


def _sub(**kw: Any) -> Subscription:
    s = Subscription(
        key="kA", call_id="c1", remote_tag="t1", local_uri="sip:alice@example.com",
        remote_uri="sip:w1@example.com", target="sip:w1@10.0.0.9:5070", routes=(), peer=("10.0.0.9", 5070),
        event="presence", event_id=None, resource="sip:alice@example.com", watcher="sip:w1@example.com",
        content_type="application/pidf+xml", policy="allow", expires_at=600.0, cseq=4, owner=IDX, rec=0,
    )  # fmt: skip
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def test_the_row_path_is_taken_and_renders_what_the_object_path_does() -> None:
    """A SIPp-like row: the NOTIFY carries the row's dialog, the next CSeq, the state with
    the time left and the body, and the row's header moves (CSeq, version, last_sent)."""
    sub = _sub()
    spec = {
        "keys": bytearray(b"kA" + b"\0" * 30), "long": {}, "rows": {"kA": REF.subrow.encode(sub)},
        "rowq": {}, "queue": [], "pinned": {}, "queued": {}, "cache": {"kA": sub}, "refuse": set(),
        "recs": array("I", [0]),
    }  # fmt: skip
    for mod in (REF, EXT):
        w = World(mod, spec)
        assert w.step(("changed", 0, 0.0, 500), 100.0) == [(1, 1)]
        ((data, dest),) = w.out
        assert dest == ("10.0.0.9", 5070, "c")
        assert data.startswith(
            b"NOTIFY sip:w1@10.0.0.9:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch="
        )
        assert b"\r\nFrom: <sip:alice@example.com>;tag=kA\r\nTo: <sip:w1@example.com>;tag=t1\r\n" in data
        assert b"\r\nCSeq: 5 NOTIFY\r\nSubscription-State: active;expires=500\r\n" in data
        assert data.endswith(b"Content-Type: application/pidf+xml\r\nContent-Length: 13\r\n\r\n<pidf allow/>")
        row = REF.subrow.decode(w.rows["kA"])
        assert (row["cseq"], row["version"], row["last_sent"], row["held"]) == (5, 7, 100.0, False)
        assert ("forget", "kA") in w.calls and not w.cache  # the cached object equals the row: dropped


def _spec(rows: dict[str, bytes], n: int = 1) -> dict[str, Any]:
    keys = bytearray()
    for r in range(n):
        keys += f"k{r}".encode() + b"\0" * (32 - len(f"k{r}"))
    return {"keys": keys, "long": {}, "rows": rows, "rowq": {}, "queue": [], "pinned": {}, "queued": {},
            "cache": {}, "refuse": set(), "recs": array("I", range(n))}  # fmt: skip


def test_the_twins_agree_on_rows_and_callbacks_the_server_never_makes() -> None:
    """Found in review (the generated worlds met none of them): a varint of 2**64 or more,
    a policy written out under a name that has a code, a body whose version or data no row
    or NOTIFY holds, and a callback that shrinks the records while the walk goes on."""
    row = REF.subrow.encode(_sub(key="k0"))
    i = row.index(b"\x02c1")
    huge = row[:i] + bytes([0x82] + [0x80] * 8 + [0x02]) + row[i + 1 :]  # call-id length 2**64 + 2
    literal = REF.subrow.encode(_sub(key="k0", policy="xxxxx")).replace(b"\x05xxxxx", b"\x05allow")
    assert REF.subrow.decode(literal)["policy"] == "allow" and literal[REF.subrow.HEAD_SIZE + 3] == 255
    assert "varint too long" in decoded_error(REF, huge) and "varint too long" in decoded_error(EXT, huge)
    assert decoded_error(REF, literal) == decoded_error(EXT, literal) == ""
    for value in (huge, literal):
        ref, ext = World(REF, _spec({"k0": value})), World(EXT, _spec({"k0": value}))
        assert (
            ref.step(("changed", 0, 0.0, 500), 100.0)
            == ext.step(("changed", 0, 0.0, 500), 100.0)
            == [(0, 0), (1, 0)]
        )
        assert ref.state() == ext.state()  # left to the object path: nothing sent, the row as it was
    for bad in (Body(2**63, "application/pidf+xml", b"<x/>"), Body(1, "application/pidf+xml", None)):
        got = []
        for mod in (REF, EXT):
            w = World(mod, _spec({"k0": row}))
            w.body_of = lambda policy, bad=bad: bad  # type: ignore[method-assign]
            got.append((w.step(("changed", 0, 0.0, 500), 100.0), w.state()))
        assert got[0] == got[1] and got[0][0].startswith(("OverflowError", "TypeError"))
    rows = {f"k{r}": REF.subrow.encode(_sub(key=f"k{r}", rec=r, call_id=f"c{r}")) for r in range(3)}
    got = []
    for mod in (REF, EXT):
        w = World(mod, _spec(rows, 3))

        def send(data: bytes, dest: Any, w: World = w) -> None:
            w.out.append((data, dest))
            if len(w.recs) == 3:
                w.recs.pop()  # as Held.remove's swap-remove would, during the walk

        w.fan = mod.fanout.RowFan(
            w.txns, index=IDX, keys=_spec(rows, 3)["keys"], long={}, pinned={}, queued={}, cache=w.cache,
            rowq=w.rowq, get=w.rows.get, put=w.put, forget=w.forget, lost=lambda k, r: None, send=send,
            wire=w.wire, ctypes={},
        )  # fmt: skip
        got.append(w.fan.changed(w.recs, 0, 100.0, 0.0, 500, w.queue, [None] * 4, w.body_of))
        got.append([d.split(b"Call-ID: ")[1].split(b"\r")[0] for d, _ in w.out])
    assert got[0:2] == got[2:4] == [(2, 2), [b"c0", b"c1"]]


def decoded_error(mod: Any, value: bytes) -> str:
    try:
        mod.subrow.decode(value)
    except ValueError as exc:
        return str(exc)
    return ""
