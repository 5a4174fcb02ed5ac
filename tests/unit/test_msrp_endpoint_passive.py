"""MSRP passive side and connection reuse (simplefast/msrp/endpoint.py; RFC 4975 sections 5.4,
7.1.1, 7.3; RFC 6135 a=setup / a=connection:existing): real asyncio on 127.0.0.1 with ephemeral
ports, every wait bounded. An active ``MsrpEndpoint.connect`` to an ``MsrpListener`` that expects
the session: the binding request, messages both ways (1 MB in chunks too), a request of a
made-up method answered with ``respond``, 481 for a session id nobody expects, 403 for a first
request from elsewhere, two sessions on one connection (``attach``) told apart by To-Path,
closing one of them, then the last, a framing error, and the listener closing."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trustme

from simplefast._impl import msrpframe as fr
from simplefast.msrp.endpoint import (
    MsrpEndpoint,
    MsrpListener,
    MsrpSendError,
    MsrpSession,
    RequestReceived,
)

T = TypeVar("T")
WAIT = 10.0  # seconds: the bound on every wait (loopback answers in milliseconds)
R481 = r"(: |status=)481\b"  # MsrpSendError of send ("<mid>: 481 ...") and of bind ("status=481")
R403 = r"(: |status=)403\b"


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 60))


async def w(aw: Awaitable[T]) -> T:
    return await asyncio.wait_for(aw, WAIT)


def alice_uri(name: str = "alice") -> str:
    return f"msrp://127.0.0.1:9/{name};tcp"  # the active side's path URI (never connected to)


async def pair(**kw: Any) -> tuple[MsrpListener, MsrpEndpoint, MsrpEndpoint]:
    """A listener expecting bob's session, alice connected to it and bound."""
    listener = await MsrpListener.start("127.0.0.1", 0)
    bob = listener.expect(listener.uri("bob"), **kw)
    alice = await MsrpEndpoint.connect(
        "127.0.0.1", listener.port, alice_uri(), to_path=[bob.session.local_uri]
    )
    await w(alice.bind())
    await w(bob.connected())
    return listener, alice, bob


async def closed(*eps: MsrpEndpoint) -> None:
    for ep in eps:
        ep.close()
        await w(ep.wait_closed())


# ---------------------------------------------------------------- one session


def test_bind_learns_the_peer_path_and_messages_go_both_ways() -> None:
    async def test() -> None:
        listener, alice, bob = await pair()
        try:
            assert bob.session.to_path == [alice.session.local_uri]  # learnt from the From-Path
            assert bob.session.local_uri == f"msrp://127.0.0.1:{listener.port}/bob;tcp"
            mid = await w(alice.send("text/plain", b"hello bob"))
            got = await w(bob.receive())
            assert (got.message_id, got.body, got.from_path) == (mid, b"hello bob", [alice.session.local_uri])
            mid = await w(bob.send("text/plain", b"hello alice", success_report=True))
            got = await w(alice.receive())
            assert (got.message_id, got.body) == (mid, b"hello alice")
            report = await w(bob.other_event())  # alice's REPORT 200 (RFC 4975 7.1.2)
            assert (report.message_id, report.status) == (mid, 200)  # type: ignore[union-attr]
        finally:
            await closed(alice)
            await w(bob.wait_closed())  # the one session's connection is gone on both sides
            assert bob.session.closed_reason == "connection closed"
            listener.close()
            await w(listener.wait_closed())

    run(test)


@pytest.mark.parametrize("sender", ["alice", "bob"])
def test_one_megabyte_in_chunks(sender: str) -> None:
    async def test() -> None:
        listener, alice, bob = await pair(chunk_size=4096)
        try:
            src, dst = (alice, bob) if sender == "alice" else (bob, alice)
            big = hashlib.shake_256(sender.encode()).digest(1 << 20)
            sent = asyncio.ensure_future(src.send("application/octet-stream", big))
            got = await w(dst.receive())
            mid = await w(sent)  # every chunk's 200 came back
            assert got.message_id == mid and got.body == big
        finally:
            await closed(alice, bob)
            listener.close()
            await w(listener.wait_closed())

    run(test)


@pytest.mark.parametrize("asker", ["alice", "bob"])
def test_made_up_method_is_answered_with_respond(asker: str) -> None:
    async def test() -> None:
        listener, alice, bob = await pair()
        try:
            src, dst = (alice, bob) if asker == "alice" else (bob, alice)
            answer = asyncio.ensure_future(src.request("FROBNICATE", [("Frob-Level", "11")]))
            ev = await w(dst.other_event())
            assert isinstance(ev, RequestReceived)
            assert (ev.msg.method, ev.msg.get("Frob-Level")) == ("FROBNICATE", "11")
            dst.respond(ev.msg, 299, "Frobnicated")
            assert await w(answer) == (299, "Frobnicated")
        finally:
            await closed(alice, bob)
            listener.close()
            await w(listener.wait_closed())

    run(test)


def test_passive_side_cannot_send_before_it_is_bound() -> None:
    async def test() -> None:
        listener = await MsrpListener.start("127.0.0.1", 0)
        try:
            bob = listener.expect(listener.uri(), to_path=[alice_uri()])
            with pytest.raises(MsrpSendError, match="not connected"):
                await w(bob.send("text/plain", b"too early"))
        finally:
            listener.close()
            await w(listener.wait_closed())

    run(test)


def test_unknown_session_gets_481_and_binds_nothing() -> None:
    async def test() -> None:
        listener = await MsrpListener.start("127.0.0.1", 0)
        bob = listener.expect(listener.uri("bob"))
        eve = await MsrpEndpoint.connect(
            "127.0.0.1", listener.port, alice_uri("eve"), to_path=[listener.uri("nobody")]
        )
        try:
            with pytest.raises(MsrpSendError, match=R481):
                await w(eve.bind())  # a SEND: hop by hop
            assert await w(eve.request("FROBNICATE", [])) == (481, "Session Does Not Exist")
            # the same URI with another authority names another session (RFC 4975 6.1)
            eve.session.to_path = [bob.session.local_uri.replace("127.0.0.1", "127.0.0.2")]
            with pytest.raises(MsrpSendError, match=R481):
                await w(eve.send("text/plain", b"x"))
            assert not bob._bound.done()  # bob still waits for his peer
        finally:
            await closed(eve)
            listener.close()
            await w(listener.wait_closed())
        with pytest.raises(MsrpSendError, match="listener closed"):
            await w(bob.connected())

    run(test)


def test_481_is_a_response_naming_the_uri_the_request_named() -> None:
    """RFC 4975 7.3 on the wire: To-Path the request's first From-Path URI, From-Path the
    To-Path URI it named; a REPORT or a SEND with Failure-Report no gets nothing."""

    async def test() -> None:
        listener = await MsrpListener.start("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        try:
            nobody = listener.uri("nobody")
            frm = ["msrp://127.0.0.1:9/relay1;tcp", alice_uri()]
            quiet = [("Message-ID", "m0"), ("Byte-Range", "1-1/1"), ("Failure-Report", "no")]
            writer.write(fr.build_request("quiet001", "SEND", [nobody], frm, quiet, content_type="text/plain",
                                          body=b"x"))  # fmt: skip
            report = [("Message-ID", "m0"), ("Status", "000 200 OK")]
            writer.write(fr.build_request("report01", "REPORT", [nobody], frm, report))
            writer.write(fr.build_request("send0001", "SEND", [nobody], frm, [("Message-ID", "m1")]))
            parser = fr.MsrpParser()
            msgs: list[Any] = []
            while not msgs:
                msgs += parser.feed(await w(reader.read(65536)))
            (resp,) = msgs
            assert (resp.tid, resp.status, resp.comment) == ("send0001", 481, "Session Does Not Exist")
            assert (resp.to_path, resp.from_path) == (frm[:1], [nobody])
        finally:
            writer.close()
            listener.close()
            await w(listener.wait_closed())

    run(test)


def test_first_request_from_another_path_gets_403_and_does_not_bind() -> None:
    async def test() -> None:
        listener = await MsrpListener.start("127.0.0.1", 0)
        bob = listener.expect(listener.uri("bob"), to_path=[alice_uri()])
        eve = await MsrpEndpoint.connect("127.0.0.1", listener.port, alice_uri("eve"),
                                         to_path=[bob.session.local_uri])  # fmt: skip
        try:
            with pytest.raises(MsrpSendError, match=R403):
                await w(eve.bind())
            assert not bob._bound.done()
            alice = await MsrpEndpoint.connect("127.0.0.1", listener.port, alice_uri(),
                                               to_path=[bob.session.local_uri])  # fmt: skip
            await w(alice.bind())
            await w(bob.connected())
            assert bob.session.to_path == [alice_uri()]
            # bound to alice's connection: the same session on eve's gets 481 (RFC 4975 5.4)
            eve.session.local_uri = alice_uri()
            with pytest.raises(MsrpSendError, match=R481):
                await w(eve.send("text/plain", b"hijack"))
            await closed(alice)
        finally:
            await closed(eve)
            listener.close()
            await w(listener.wait_closed())

    run(test)


def test_expect_refuses_a_uri_without_session_id_and_a_session_id_in_use() -> None:
    async def test() -> None:
        listener = await MsrpListener.start("127.0.0.1", 0)
        try:
            with pytest.raises(ValueError, match="no session id"):
                listener.expect(f"msrp://127.0.0.1:{listener.port};tcp")
            listener.expect(listener.uri("bob"))
            with pytest.raises(ValueError, match="in use"):
                listener.expect(listener.uri("bob"))
            assert listener.uri() != listener.uri()  # fresh random session ids
        finally:
            listener.close()
            await w(listener.wait_closed())
        with pytest.raises(ValueError, match="closed"):
            listener.expect(listener.uri("carol"))

    run(test)


# ---------------------------------------------------------------- several sessions on one connection


async def two_on_one() -> tuple[MsrpListener, list[MsrpEndpoint], list[MsrpEndpoint]]:
    """Bob expects two sessions; alice opens one connection for the first and attaches the
    second to it (a=connection:existing)."""
    listener = await MsrpListener.start("127.0.0.1", 0)
    bobs = [listener.expect(listener.uri(f"bob{i}")) for i in (1, 2)]
    a1 = await MsrpEndpoint.connect("127.0.0.1", listener.port, alice_uri("alice1"),
                                    to_path=[bobs[0].session.local_uri])  # fmt: skip
    a2 = MsrpEndpoint.attach(a1, alice_uri("alice2"), to_path=[bobs[1].session.local_uri])
    for a, b in zip((a1, a2), bobs, strict=True):
        await w(a.bind())
        await w(b.connected())
    return listener, [a1, a2], bobs


async def exchange(a: MsrpEndpoint, b: MsrpEndpoint, text: bytes) -> None:
    mid = await w(a.send("text/plain", text + b" a->b"))
    got = await w(b.receive())
    assert (got.message_id, got.body) == (mid, text + b" a->b")
    mid = await w(b.send("text/plain", text + b" b->a"))
    got = await w(a.receive())
    assert (got.message_id, got.body) == (mid, text + b" b->a")


def test_two_sessions_share_one_connection_each_gets_its_own() -> None:
    async def test() -> None:
        listener, alices, bobs = await two_on_one()
        try:
            assert alices[0].transport is alices[1].transport
            assert bobs[0].transport is bobs[1].transport  # one accepted connection
            assert len(listener._conns) == 1
            assert [b.session.to_path for b in bobs] == [[a.session.local_uri] for a in alices]
            # interleaved, chunked: each message reaches its own session only
            big = [hashlib.shake_256(bytes([i])).digest(50_000) for i in (1, 2)]
            sends = [asyncio.ensure_future(a.send("application/octet-stream", big[i]))
                     for i, a in enumerate(alices)]  # fmt: skip
            got = [await w(b.receive()) for b in bobs]
            await w(asyncio.gather(*sends))
            assert [g.body for g in got] == big
            assert all(b._received.empty() for b in bobs)
            for i in (0, 1):
                await exchange(alices[i], bobs[i], b"session %d" % i)
            with pytest.raises(ValueError, match="already on this connection"):
                MsrpEndpoint.attach(alices[0], alice_uri("alice2"), to_path=[bobs[1].session.local_uri])
        finally:
            for ep in [*alices, *bobs]:
                ep.close()
            listener.close()
            await w(listener.wait_closed())

    run(test)


@pytest.mark.parametrize("side", ["passive", "active"])
def test_closing_one_session_keeps_the_other_and_the_last_closes_the_connection(side: str) -> None:
    async def test() -> None:
        listener, alices, bobs = await two_on_one()
        try:
            mine, theirs = (bobs, alices) if side == "passive" else (alices, bobs)
            mine[0].close()
            await w(mine[0].wait_closed())
            assert mine[0].session.closed_reason == "session closed"
            with pytest.raises(MsrpSendError, match="session closed"):
                await w(mine[0].send("text/plain", b"gone"))
            # the far end's session 1 now names a session that does not exist there
            with pytest.raises(MsrpSendError, match=R481):
                await w(theirs[0].send("text/plain", b"anyone?"))
            await exchange(alices[1], bobs[1], b"still here")
            assert not mine[1].transport.is_closing()  # type: ignore[union-attr]
            mine[1].close()  # the last one on this connection: it closes (RFC 4975 5.4)
            for ep in [mine[1], *theirs]:
                await w(ep.wait_closed())
                assert ep.session.closed_reason == "connection closed"
            await asyncio.sleep(0)
            assert not listener._conns
        finally:
            listener.close()
            await w(listener.wait_closed())

    run(test)


def test_passive_side_attaches_a_session_to_an_accepted_connection() -> None:
    """Bob answers a=connection:existing for a second session on the connection alice opened:
    his new session goes on it, alice's arrives by its To-Path."""

    async def test() -> None:
        listener = await MsrpListener.start("127.0.0.1", 0)
        bob1 = listener.expect(listener.uri("bob1"))
        a1 = await MsrpEndpoint.connect("127.0.0.1", listener.port, alice_uri("alice1"),
                                        to_path=[bob1.session.local_uri])  # fmt: skip
        try:
            await w(a1.bind())
            await w(bob1.connected())
            bob2 = MsrpEndpoint.attach(bob1, listener.uri("bob2"), to_path=[alice_uri("alice2")])
            a2 = MsrpEndpoint.attach(a1, alice_uri("alice2"), to_path=[bob2.session.local_uri])
            await exchange(a2, bob2, b"second")
            await exchange(a1, bob1, b"first")
        finally:
            a1.close()
            listener.close()
            await w(listener.wait_closed())
        assert bob1.session.closed_reason is not None and bob2.session.closed_reason is not None

    run(test)


def test_attach_to_a_closed_connection_raises() -> None:
    async def test() -> None:
        listener, alice, bob = await pair()
        await closed(alice)
        with pytest.raises(ConnectionError):
            MsrpEndpoint.attach(alice, alice_uri("again"), to_path=[bob.session.local_uri])
        listener.close()
        await w(listener.wait_closed())

    run(test)


def test_framing_error_ends_every_session_on_the_connection() -> None:
    async def test() -> None:
        listener = await MsrpListener.start("127.0.0.1", 0)
        bobs = [listener.expect(listener.uri(f"bob{i}")) for i in (1, 2)]
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        try:
            for i, b in enumerate(bobs):
                hdrs = [("Message-ID", f"m{i}"), ("Byte-Range", "1-0/0")]
                writer.write(
                    fr.build_request(f"bind000{i}", "SEND", [b.session.local_uri], [alice_uri()], hdrs)
                )
            for b in bobs:
                await w(b.connected())
            writer.write(b"MSRP not-a-valid-start line\r\n\r\n")
            for b in bobs:
                await w(b.wait_closed())
                assert (b.session.closed_reason or "").startswith("framing error")
            answers = fr.MsrpParser().feed(await w(reader.read()))  # up to EOF: the connection closed
            assert [(m.tid, m.status) for m in answers] == [("bind0000", 200), ("bind0001", 200)]
        finally:
            writer.close()
            listener.close()
            await w(listener.wait_closed())

    run(test)


def test_listener_close_ends_bound_and_expected_sessions() -> None:
    async def test() -> None:
        listener, alice, bob = await pair()
        waiting = listener.expect(listener.uri("later"))
        listener.close()
        await w(listener.wait_closed())
        await w(alice.wait_closed())
        await w(bob.wait_closed())
        with pytest.raises(MsrpSendError, match="listener closed"):
            await w(waiting.connected())
        await w(bob.connected())  # bob was bound: it returns
        with pytest.raises(OSError):
            await MsrpEndpoint.connect("127.0.0.1", listener.port, alice_uri())

    run(test)


def test_expected_session_closed_before_binding_is_forgotten() -> None:
    async def test() -> None:
        listener = await MsrpListener.start("127.0.0.1", 0)
        bob = listener.expect(listener.uri("bob"))
        bob.close()
        with pytest.raises(MsrpSendError, match="closed"):
            await w(bob.connected())
        alice = await MsrpEndpoint.connect("127.0.0.1", listener.port, alice_uri(),
                                           to_path=[bob.session.local_uri])  # fmt: skip
        try:
            with pytest.raises(MsrpSendError, match=R481):
                await w(alice.bind())
            listener.expect(bob.session.local_uri)  # the session id is free again
        finally:
            await closed(alice)
            listener.close()
            await w(listener.wait_closed())

    run(test)


def test_an_endpoint_given_to_create_connection_still_works() -> None:
    """``MsrpEndpoint`` is still an asyncio protocol of its own (the old way to make one)."""

    async def test() -> None:
        listener = await MsrpListener.start("127.0.0.1", 0)
        bob = listener.expect(listener.uri("bob"))
        loop = asyncio.get_running_loop()
        _, alice = await loop.create_connection(
            lambda: MsrpEndpoint(MsrpSession(alice_uri(), to_path=[bob.session.local_uri])),
            "127.0.0.1", listener.port,
        )  # fmt: skip
        try:
            await w(alice.bind())
            await w(bob.connected())
            await exchange(alice, bob, b"old style")
        finally:
            await closed(alice)
            await w(bob.wait_closed())
            listener.close()
            await w(listener.wait_closed())

    run(test)


# ---------------------------------------------------------------- TLS


def test_listener_over_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def test() -> None:
        listener = await MsrpListener.start("127.0.0.1", 0, tls=server_ctx)
        bob = listener.expect(listener.uri("bob"))
        assert bob.session.local_uri.startswith("msrps://127.0.0.1:")
        alice = await MsrpEndpoint.connect("127.0.0.1", listener.port, "msrps://127.0.0.1:9/alice;tcp",
                                           tls=client_ctx, to_path=[bob.session.local_uri])  # fmt: skip
        try:
            await w(alice.bind())
            await w(bob.connected())
            await exchange(alice, bob, b"secret")
        finally:
            await closed(alice)
            listener.close()
            await w(listener.wait_closed())

    run(test)
