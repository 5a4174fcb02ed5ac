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

REF = load_impl("ref").fanout
EXT = load_impl("ext").fanout
PREFIX = "z9hG4bKd1ffw1n"

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
