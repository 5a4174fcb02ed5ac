"""A batch of datagrams with the responses to our NOTIFYs taken in compiled runs
(``CoreDriver.datagrams`` -> ``SipCore.take_notify_responses`` -> ``NotifyTxns.absorb``)
against the same datagrams given one by one to ``SipCore.on_message``: the same
bytes go out, in the same order, and the same subscriptions are left.

Batches mix the watchers' answers (200, 180, 481, 408, some malformed, some
retransmitted) with SUBSCRIBEs, PUBLISHes and garbage, in generated orders; the
notifier's window is 2, so most 200s release a queued NOTIFY.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings, target
from hypothesis import strategies as st

from simplefast.proxy.core import SipCore
from simplefast.transport.driver import CoreDriver
from tests.unit.test_held import PIDF, answer_msg, core, publish_msg, subscribe_msg


class _Loop:
    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, cb: Any) -> Any:
        return self  # the test runs the timers itself

    def cancel(self) -> None:
        pass


def _answer_bent(notify: bytes, how: str) -> bytes:
    if how == "no-call-id":  # the general path drops it
        return b"\r\n".join(h for h in answer_msg(notify, 200).split(b"\r\n") if not h.startswith(b"Call-ID"))
    if how == "garbage":
        return b"SIP/2.0 200 OK\r\nVia: ;;;" + notify.split(b"branch=")[1].split(b"\r\n")[0] + b"\r\n\r\n"
    return answer_msg(notify, int(how))


items = st.lists(
    st.one_of(
        st.tuples(
            st.just("answer"),
            st.sampled_from(["200", "200", "200", "180", "481", "408", "no-call-id", "garbage"]),
            st.integers(0, 5),
        ),  # fmt: skip
        st.tuples(st.just("again"), st.just(""), st.integers(0, 5)),  # an answer sent before, again
        st.tuples(st.just("sub"), st.just(""), st.integers(0, 5)),
        st.tuples(st.just("publish"), st.just(""), st.integers(0, 1)),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(items, st.sampled_from([0.0, 0.0, 0.3, 6.0, 40.0]), st.sampled_from([0, "c"])),
        min_size=1,
        max_size=8,
    )
)
def test_batches_with_notify_responses_taken_in_runs_act_as_one_by_one(batches: list[Any]) -> None:
    a, b = core(16384, False), core(16384, False)
    loop = _Loop()
    sent_a: list[bytes] = []
    driver = CoreDriver(a, loop, lambda data, peer: sent_a.append(data))  # type: ignore[arg-type]
    taken = _count_taken(a)
    pending: list[bytes] = []  # NOTIFYs sent (the same by both), not answered yet
    answered: list[bytes] = []
    n = 0
    bodies = [PIDF, PIDF.replace(b"open", b"closed")]
    for w in range(4):  # four watchers, the third of another domain (pending: confirm)
        n += 1
        batch = [(subscribe_msg(w, 1, None, 600, n), ("10.0.0.9", 5070 + w))]
        driver.datagrams(batch)
        pending += [d for d in _one_by_one(b, batch, loop.now) if d.startswith(b"NOTIFY ")]
    n += 1
    driver.datagrams([(publish_msg(n, bodies[1]), ("10.0.0.8", 5080))])
    pending += [d for d in _one_by_one(b, [(publish_msg(n, bodies[1]), ("10.0.0.8", 5080))], loop.now)
                if d.startswith(b"NOTIFY ")]  # fmt: skip
    sent_a.clear()
    for spec, step, tag in batches:
        loop.now += step
        for c in (a, b):  # timers first, the same for both
            while (t := c.get_timer()) is not None and t <= loop.now:
                c.handle_timer(t)
        timer_out = [d for d, _ in a.outgoing()]
        assert timer_out == [d for d, _ in b.outgoing()]
        pending += [d for d in timer_out if d.startswith(b"NOTIFY ")]
        batch = []
        for kind, how, k in spec:
            n += 1
            if kind == "answer" and pending:
                notify = pending.pop(k % len(pending))
                data = _answer_bent(notify, how)
                answered.append(data)
            elif kind == "again" and answered:
                data = answered[k % len(answered)]
            elif kind == "sub":
                data = subscribe_msg(k, 1, None, 600, n)
            elif kind == "publish":
                data = publish_msg(n, bodies[k])
            else:
                continue
            batch.append((data, ("10.0.0.9", 5070)))
        driver.datagrams(batch, tag)  # tag: the client socket's, as the NOTIFYs' answers come
        mine = _one_by_one(b, [(d, (p[0], p[1], tag) if tag else p) for d, p in batch], loop.now)
        assert sent_a == mine
        pending += [d for d in mine if d.startswith(b"NOTIFY ")]
        sent_a.clear()
    na, nb = a.presence.notifier, b.presence.notifier  # type: ignore[union-attr]
    assert na.table.rows_ == nb.table.rows_
    assert (na.txns.outstanding, len(na.txns), na.notifies_sent) == (nb.txns.outstanding, len(nb.txns),
                                                                     nb.notifies_sent)  # fmt: skip
    assert a.stats.received == b.stats.received
    assert driver.internal_errors == 0
    target(float(taken[0]), label="datagrams taken in runs")  # examples where runs are long


def _count_taken(c: SipCore) -> list[int]:
    n = [0]
    take = c.take_notify_responses

    def counted(batch: list[tuple[bytes, Any]], start: int, now: float) -> int:
        end = take(batch, start, now)
        n[0] += end - start
        return end

    c.take_notify_responses = counted  # type: ignore[method-assign]
    return n


def _two_answered() -> tuple[SipCore, CoreDriver, list[bytes], list[tuple[bytes, Any]]]:
    """Two watchers subscribed (the window: 2), their first NOTIFYs' 200s in one batch."""
    c = core(16384, False)
    sent: list[bytes] = []
    driver = CoreDriver(c, _Loop(), lambda data, peer: sent.append(data))  # type: ignore[arg-type]
    for w in range(2):
        driver.datagrams([(subscribe_msg(w, 1, None, 600, w), ("10.0.0.9", 5070 + w))])
    notifies = [d for d in sent if d.startswith(b"NOTIFY ")]
    assert len(notifies) == 2
    return c, driver, sent, [(answer_msg(d, 200), ("10.0.0.9", 5070)) for d in notifies]


def test_a_run_is_taken_once_even_when_the_pump_fails() -> None:
    c, driver, _, batch = _two_answered()
    taken = _count_taken(c)
    before = c.stats.received

    def broken(now: float) -> None:
        raise RuntimeError("a bug in the pump")

    c.pump_notifies = broken  # type: ignore[method-assign]
    driver.datagrams(batch)
    assert taken[0] == 2 and c.stats.received == before + 2 and driver.internal_errors == 1
    assert c.presence is not None and c.presence.notifier.txns.outstanding == 0


def test_a_failing_take_leaves_the_rest_of_the_batch_to_on_message() -> None:
    c, driver, _, batch = _two_answered()
    calls = [0]

    def broken(batch: list[tuple[bytes, Any]], start: int, now: float) -> int:
        calls[0] += 1
        raise RuntimeError("a bug in the compiled pass")

    c.take_notify_responses = broken  # type: ignore[method-assign]
    before = c.stats.received
    driver.datagrams(batch)
    assert calls[0] == 1 and driver.internal_errors == 1  # once per batch, not per datagram
    assert c.stats.received == before + 2  # each went through on_message
    assert c.presence is not None and c.presence.notifier.txns.outstanding == 0


def _one_by_one(c: SipCore, batch: list[tuple[bytes, Any]], now: float) -> list[bytes]:
    for data, peer in batch:
        c.on_message(data, peer, reliable=False, now=now)
    return [d for d, _ in c.outgoing()]
