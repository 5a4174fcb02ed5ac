"""Page-mode IM (RFC 3428) between two real SIP clients through the real server: two baresip
processes (Debian's ``baresip-core``), alice and bob, each with its own config directory.

How baresip 1.0.0 does IM (checked on this machine, see baresip_client): alice sends with the
``/message <text>`` command of ``contact.so`` (to her current contact, bob, the only one in
her ``contacts`` file); bob's core answers 200 and ``menu.so`` shows ``<from uri>: "<text>"``
on the cons UI. Over UDP and over TCP (``;transport=tcp`` on the account, the server listening
on TCP too):

1. both registered: alice's MESSAGE is relayed to bob, bob shows it, alice gets the 200;
2. bob has no client running: alice's two MESSAGEs are answered 202 (stored); bob's baresip
   starts and registers; both are delivered in order with the original From/To, a Date and
   the text, and bob shows them; then a third one, bob online, is relayed at once (200).

The test fails, never skips, when baresip (or its menu module) is missing.
"""

from __future__ import annotations

import re
import time
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from baresip_client import Baresip, TracedMessage, require_baresip
from liveserver import Server, free_udp_port, start_server


def start(tmp_path: Path, transport: str) -> tuple[Server, int]:
    """The server (UDP and TCP listeners) and its port for ``transport``."""
    tcp_port = free_udp_port()
    srv = start_server(tmp_path, extra=("--listen", f"tcp:127.0.0.1:{tcp_port}"))
    return srv, srv.port if transport == "udp" else tcp_port


def client(tmp_path: Path, user: str, peer: str, port: int, transport: str, **kw) -> Baresip:
    """A baresip for IM only: ``peer`` its one contact, menu.so to show what comes in, no presence."""
    return Baresip(tmp_path / user, port, transport, user=user, buddies=(peer,), pubint=0,
                   presence=False, menu=True, **kw)  # fmt: skip


def message(*, sent: bool):
    """A predicate on traced messages: a MESSAGE request baresip sent (or received)."""
    return lambda t: t.sent == sent and t.msg.is_request and t.msg.method == "MESSAGE"


def final_response(to: TracedMessage, *, sent: bool):
    """A predicate on traced messages: the final response to the request ``to``."""
    r = to.msg

    def want(t: TracedMessage) -> bool:
        m = t.msg
        return (t.sent == sent and not m.is_request and m.status >= 200 and m.call_id == r.call_id
                and m.cseq_num == r.cseq_num and m.cseq_method == "MESSAGE")  # fmt: skip

    return want


def wait_registered(ua: Baresip) -> None:
    ua.wait_output(rf"{ua.user}@example\.com: \{{0/{ua.transport.upper()}/v4\}} 200 OK".encode(), 10)


def received(ua: Baresip, count: int, timeout: float = 10.0) -> list[TracedMessage]:
    """The MESSAGEs ``ua`` received, once there are ``count`` of them."""
    deadline = time.monotonic() + timeout
    while True:
        got = [t for t in ua.trace() if message(sent=False)(t)]
        if len(got) >= count:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"baresip received {len(got)} MESSAGEs, not {count}, within {timeout} s; "
                                 f"its output:\n{ua.text()[-8000:]}")  # fmt: skip
        time.sleep(0.1)


def send(ua: Baresip, text: str, status: int) -> TracedMessage:
    """``/message text`` on ``ua``: the MESSAGE it sent, once answered ``status``."""
    start = len(ua.trace())
    ua.message(text)
    sent = ua.wait_trace(message(sent=True), 5, f"MESSAGE {text!r}", start=start)
    assert sent.msg.uri == "sip:bob@example.com" and sent.msg.body == text.encode(), sent.raw
    assert sent.transport == ua.transport.upper() and sent.msg.get("Content-Type") == "text/plain"
    r = ua.wait_trace(final_response(sent, sent=False), 5, f"final response to the MESSAGE {text!r}")
    assert r.msg.status == status, r.raw.decode(errors="replace")
    return sent


def shown(*texts: str) -> bytes:
    """What bob's UI shows for alice's ``texts``, in this order."""
    return b"(?s)" + b".*".join(re.escape(f'sip:alice@example.com: "{t}"'.encode()) for t in texts)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_baresip_to_baresip_message(tmp_path: Path, transport: str) -> None:
    require_baresip(("menu.so",))
    T = transport.upper()
    srv, port = start(tmp_path, transport)
    alice = client(tmp_path, "alice", "bob", port, transport)
    bob = client(tmp_path, "bob", "alice", port, transport)
    try:
        alice.start()
        bob.start()
        wait_registered(alice)
        wait_registered(bob)
        bob.send_command("reginfo")  # bob's UI output (incoming MESSAGEs) now comes to us
        bob.wait_ui(rb"sip:bob@example\.com +OK", 5)

        text = f"Hello Bob, alice here over {transport}!"
        sent = send(alice, text, 200)  # the 200 is bob's, relayed back by the server
        (got,) = received(bob, 1)
        m = got.msg
        assert got.transport == T and m.body == text.encode() and m.get("Content-Type") == "text/plain"
        assert m.uri.startswith("sip:bob-") and "@127.0.0.1:" in m.uri, m.uri  # bob's registered contact
        assert (m.get("From"), m.get("To"), m.call_id) == (sent.msg.get("From"), "<sip:bob@example.com>",
                                                           sent.msg.call_id)  # fmt: skip
        if transport == "tcp":  # over the connection bob registered on
            reg = next(t for t in bob.trace() if t.sent and t.msg.is_request and t.msg.method == "REGISTER")
            assert (got.src, got.dst) == (reg.dst, reg.src), (got.src, got.dst, reg.src, reg.dst)
        ans = bob.wait_trace(final_response(got, sent=True), 5, "bob's answer to the MESSAGE")
        assert ans.msg.status == 200
        bob.wait_ui(shown(text), 5)
    finally:
        alice.stop()
        bob.stop()
        assert srv.stop() == 0


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_offline_messages_reach_baresip_when_it_registers(tmp_path: Path, transport: str) -> None:
    require_baresip(("menu.so",))
    T = transport.upper()
    srv, port = start(tmp_path, transport)
    alice = client(tmp_path, "alice", "bob", port, transport)
    # bob's baresip starts later, with no account: the UI is attached before it registers
    # (/uanew), so that it shows what the server delivers right after the REGISTER's 200
    bob = client(tmp_path, "bob", "alice", port, transport, account_at_start=False)
    try:
        alice.start()
        wait_registered(alice)
        texts = ["first, while you were out", "second, still out"]
        stored = [send(alice, t, 202) for t in texts]  # bob has no contact: stored, 202 Accepted

        bob.start()
        bob.add_account()  # /uanew: REGISTER, 200
        got = received(bob, 2)
        assert [t.msg.body for t in got] == [t.encode() for t in texts]  # both, in order
        for g, s in zip(got, stored, strict=True):
            m = g.msg
            assert g.transport == T and m.uri.startswith("sip:bob-"), g.raw
            assert m.get("From") == s.msg.get("From") and m.get("To") == s.msg.get("To"), g.raw
            assert m.get("Content-Type") == "text/plain", g.raw
            date = m.get("Date")
            assert date and parsedate_to_datetime(date).tzinfo is not None, g.raw
            ans = bob.wait_trace(final_response(g, sent=True), 5, "bob's answer to a stored MESSAGE")
            assert ans.msg.status == 200
        bob.wait_ui(shown(*texts), 5)

        # bob online now: relayed at once, and the stored ones did not come again
        live = "third, you are back"
        send(alice, live, 200)
        got = received(bob, 3)
        assert [t.msg.body for t in got] == [t.encode() for t in [*texts, live]]
        bob.wait_ui(shown(*texts, live), 5)
    finally:
        alice.stop()
        bob.stop()
        assert srv.stop() == 0
