"""NOTIFY fan-out rendering (``ext/fanout.pyx`` beside its twin), reference beside compiled.

What one watcher of a presence change costs in the table: ``NotifyTxns.send``
renders the NOTIFY (Request-URI, Via with a fresh branch, the dialog's
prebuilt headers, CSeq, Subscription-State, Content-Type, a 550-byte PIDF
body) and starts its client transaction (Timers E and F); ``response`` takes
its 200 and ends it (Timer K is zero for UDP: nothing is left behind).

Groups:
- ``fanout send+200``: one NOTIFY rendered and its 200 matched, the pair per call;
- ``fanout send x1000``: a change fanned out to 1 000 watchers (1 000 sends, then
  the 1 000 200s outside the timing), per call; ``extra_info`` has ``notifies``.

Headers and body are shaped like the server's (simplefast/presence/subscribe.py
``_head``). Nothing here asserts on time.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

PREFIX = "z9hG4bKbenchw0.n"
TARGET = b"sip:watcher@192.0.2.10:5060;transport=udp"
VIA = b"SIP/2.0/UDP 192.0.2.1:5060"
HEAD = (
    b"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=5a1f3c.1\r\n"
    b"To: <sip:watcher@example.com>;tag=8871234\r\nCall-ID: 4c6f2e91-bench@192.0.2.10\r\n"
    b"Contact: <sip:192.0.2.1:5060>\r\nEvent: presence\r\n"
)
STATE = b"active;expires=3599"
CTYPE = b"application/pidf+xml"
BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<presence xmlns="urn:ietf:params:xml:ns:pidf" '
    b'xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" '
    b'xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:alice@example.com">'
    b'<tuple id="t1"><status><basic>open</basic></status><contact>sip:alice@192.0.2.20</contact>'
    b"<timestamp>2026-12-07T12:00:00Z</timestamp></tuple>"
    b'<dm:person id="p1"><rpid:activities><rpid:busy/></rpid:activities>'
    b"<dm:note>In a meeting until three</dm:note></dm:person>"
    b'<dm:device id="d1"><dm:deviceID>mac:8c:16:45:aa:bb:cc</dm:deviceID></dm:device></presence>'
).ljust(550, b" ")
DEST = ("192.0.2.10", 5060)


def _txns(impl: SimpleNamespace, benchmark: Any, group: str) -> Any:
    benchmark.group = f"fanout {group}"
    benchmark.extra_info["impl"] = impl.name
    return impl.fanout.NotifyTxns(PREFIX)


def _branch(data: bytes) -> str:
    start = data.index(b";branch=") + 8
    end = data.index(b"\r\n", start)
    return data[start:end].decode().partition(";")[0]


def test_send_and_200(benchmark: Any, impl: SimpleNamespace) -> None:
    t = _txns(impl, benchmark, "send+200")
    cseq = itertools.count(1)
    clock = itertools.count()

    def one() -> Any:
        now = next(clock) * 1e-6
        data = t.send(TARGET, VIA, HEAD, next(cseq), STATE, CTYPE, BODY, DEST, False, "w", now)
        return t.response(_branch(data), 200, now)

    assert benchmark(one) == "w"
    assert t.outstanding == 0


def test_fan_out_to_1000(benchmark: Any, impl: SimpleNamespace) -> None:
    t = _txns(impl, benchmark, "send x1000")
    benchmark.extra_info["notifies"] = 1000
    cseq = itertools.count(1)
    clock = itertools.count()
    sent: list[bytes] = []

    def setup() -> tuple[tuple[()], dict[str, Any]]:
        now = next(clock) * 1e-3
        for data in sent:  # the previous round's 200s, outside the timing
            t.response(_branch(data), 200, now)
        sent.clear()
        return (), {}

    def change() -> None:
        now = next(clock) * 1e-3
        n = next(cseq)
        send = t.send
        for _ in range(1000):
            sent.append(send(TARGET, VIA, HEAD, n, STATE, CTYPE, BODY, DEST, False, None, now))

    benchmark.pedantic(change, setup=setup, rounds=50, iterations=1)
    assert len(sent) == 1000 and sent[0].startswith(b"NOTIFY " + TARGET)
