"""The two fanout twins against each other: generated sequences of sends, responses, failures and polls.

Both twins get the same calls at the same (nondecreasing) times; every
result must be equal: the rendered bytes, the token (or None) of each
response and failure, each poll's retransmissions and time-outs in order,
``next_deadline``, ``len`` and the counters. Times advance by steps drawn from
a few values, multiples of T1 among them, so deadlines tie often (the order
of ties is part of the contract).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from simplefast.testing import load_impl

REF_IMPL, EXT_IMPL = load_impl("ref"), load_impl("ext")
REF, EXT = REF_IMPL.fanout, EXT_IMPL.fanout
PREFIX = "z9hG4bKd1ffw1n"


def response_bytes(branch: str, shape: str, status: int) -> Any:
    """A datagram answering ``branch``: as a watcher sends it, or bent (each bend is one the
    general path treats differently: dropped, not a response, not ours)."""
    via = f"Via: SIP/2.0/UDP 127.0.0.1:4000;branch={branch}\r\n"
    rest = ("From: <sip:p@example.com>;tag=a\r\nTo: <sip:w@example.com>;tag=b\r\nCall-ID: c\r\n"
            "CSeq: 7 NOTIFY\r\nContent-Length: 0\r\n\r\n")  # fmt: skip
    line = f"SIP/2.0 {status} OK\r\n"
    if shape == "ok":
        return (line + via + rest).encode()
    if shape == "compact":
        return (line + via.replace("Via:", "v:") + rest).encode()
    if shape == "two-vias":
        return (line + via + "Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKo\r\n" + rest).encode()
    if shape == "no-call-id":
        return (line + via + rest.replace("Call-ID: c\r\n", "")).encode()
    if shape == "bad-from":
        return (line + via + rest.replace("<sip:p@example.com>", "<>")).encode()
    if shape == "request":
        return (f"NOTIFY sip:w@example.com SIP/2.0\r\n{via}Max-Forwards: 70\r\n" + rest).encode()
    if shape == "truncated":
        return (line + via)[:-9].encode()
    if shape == "bytearray":
        return bytearray((line + via + rest).encode())
    return (line + via.replace(branch, "z9hG4bKother1") + rest).encode()  # "other"


SHAPES = {"ok", "compact", "two-vias", "no-call-id", "bad-from", "request", "truncated", "bytearray", "other"}
STATUSES = [100, 180, 200, 202, 299, 300, 408, 481]
step = st.sampled_from([0.0, 0.0, 0.1, 0.25, 0.5, 0.5, 1.0, 2.0, 3.7, 4.0, 5.0, 32.0])
op = st.one_of(
    st.tuples(
        st.just("send"), st.booleans(), st.sampled_from([b"", b"<x/>", b"x" * 700]), st.integers(0, 2**32 - 1)
    ),
    st.tuples(
        st.just("response"),
        st.integers(0, 40),
        st.sampled_from([100, 180, 200, 202, 408, 481, 500, 603, 700]),
    ),
    st.tuples(st.just("failed"), st.integers(0, 40)),
    st.tuples(
        st.just("absorb"),
        st.lists(
            st.tuples(st.integers(0, 40), st.sampled_from(sorted(SHAPES)), st.sampled_from(STATUSES)),
            max_size=6,
        ),
    ),
    st.tuples(
        st.just("poll"),
    ),
    st.tuples(
        st.just("garbage"),
        st.sampled_from(["z9hG4bKx", PREFIX, PREFIX + "0", PREFIX + "F", PREFIX + "1" * 20]),
    ),
)


timers = st.sampled_from([(0.5, 4.0, 5.0), (0.5, 0.5, 0.0), (0.1, 1.6, 2.0), (1.0, 3.0, 5.0)])


def run(
    mod: Any, t1t2t4: tuple[float, float, float], ops: list[tuple[Any, ...]], steps: list[float]
) -> list[Any]:
    t1, t2, t4 = t1t2t4
    t = mod.NotifyTxns(PREFIX, t1=t1, t2=t2, t4=t4)
    out: list[Any] = []
    now = 0.0
    branches: list[str] = []
    for i, o in enumerate(ops):
        now += steps[i % len(steps)]
        kind = o[0]
        if kind == "send":
            data = t.send(b"sip:w@127.0.0.1:5070", b"SIP/2.0/UDP 127.0.0.1:4000", b"Call-ID: c\r\n", o[3],
                          b"active;expires=60", b"application/pidf+xml", o[2], ("127.0.0.1", i), o[1], i,
                          now)  # fmt: skip
            branches.append(f"{PREFIX}{len(branches) + 1:x}")
            out.append(data)
        elif kind == "response":
            b = branches[o[1] % len(branches)] if branches else PREFIX + "1"
            out.append(("r", t.response(b, o[2], now)))
        elif kind == "failed":
            b = branches[o[1] % len(branches)] if branches else PREFIX + "1"
            out.append(("f", t.failed(b)))
        elif kind == "absorb":
            batch = []
            for k, shape, status in o[1]:
                branch = branches[k % len(branches)] if branches else PREFIX + "1"
                batch.append((response_bytes(branch, shape, status), ("127.0.0.1", k)))
            codec = (REF_IMPL if mod is REF else EXT_IMPL).sipmsg
            stops, i = [], 0
            while i < len(batch):  # as the driver: a datagram not taken goes elsewhere
                i = t.absorb(batch, i, now, codec.parse_message, codec.validate_request)
                stops.append(i)
                i += 1
            out.append(("a", stops))
        elif kind == "garbage":
            out.append(("g", t.response(o[1], 200, now), t.failed(o[1])))
        else:
            out.append(("p", t.poll(now)))
        out.append((len(t), t.outstanding, t.next_deadline(), t.retransmissions, t.timeouts))
    out.append(("end", t.poll(now + 100.0), len(t)))
    return out


@settings(max_examples=300, deadline=None)
@given(timers, st.lists(op, min_size=1, max_size=60), st.lists(step, min_size=1, max_size=8))
def test_twins_agree(
    t1t2t4: tuple[float, float, float], ops: list[tuple[Any, ...]], steps: list[float]
) -> None:
    assert run(REF, t1t2t4, ops, steps) == run(EXT, t1t2t4, ops, steps)


def test_twins_agree_on_a_burst_with_ties() -> None:
    ops: list[tuple[Any, ...]] = [("send", i % 3 == 0, b"<x/>", i) for i in range(3000)]
    ops += [("response", i, 200 if i % 5 else 180) for i in range(0, 3000, 2)] + [("poll",)] * 50
    steps = [0.0, 0.0, 0.5]
    assert run(REF, (0.5, 4.0, 5.0), ops, steps) == run(EXT, (0.5, 4.0, 5.0), ops, steps)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 400), st.sampled_from(["drop", "insert", "flip"]), st.integers(0, 255)),
        max_size=6,
    ),
    st.sampled_from([200, 180, 481]),
)
def test_absorb_on_mangled_answers_agrees_and_never_raises(
    edits: list[tuple[int, str, int]], status: int
) -> None:
    """A watcher's answer bent at random octets: both twins take it or leave it alike, and
    what they leave is left with their transactions as they were."""
    outs = []
    for mod, impl in ((REF, REF_IMPL), (EXT, EXT_IMPL)):
        t = mod.NotifyTxns(PREFIX)
        via = b"SIP/2.0/UDP 127.0.0.1:4000"
        t.send(b"sip:w@127.0.0.1:5070", via, b"Call-ID: c\r\n", 1, b"active;expires=60", b"", b"",
               ("127.0.0.1", 5070), False, "tok", 0.0)  # fmt: skip
        data = bytearray(response_bytes(PREFIX + "1", "ok", status))
        for pos, how, octet in edits:
            pos %= len(data) + 1
            if how == "drop" and pos < len(data):
                del data[pos]
            elif how == "insert":
                data.insert(pos, octet)
            elif pos < len(data):
                data[pos] = octet
        codec = impl.sipmsg
        end = t.absorb([(bytes(data), ("127.0.0.1", 1))], 0, 0.1, codec.parse_message, codec.validate_request)
        outs.append((end, t.outstanding, len(t), t.response(PREFIX + "1", 200, 0.2)))
    assert outs[0] == outs[1]
