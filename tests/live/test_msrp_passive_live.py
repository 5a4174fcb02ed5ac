"""A passive endpoint (RFC 6135 a=setup:passive) behind the real server's MSRP relay (2 workers,
loopback, auth off): alice authenticates to the relay (AUTH, RFC 4976; with --no-auth the
relay grants it at once with a Use-Path), bob only listens (``MsrpListener``) and expects a
session. Alice's first SEND along [relay session URI, bob's URI] makes the relay open a
connection to the next hop, bob (simplefast/msrp/relay.py ``Connect``), whose SEND binds
bob's session; bob learns his To-Path from its From-Path and answers through the relay:
messages both ways (1 MB in chunks too), a made-up method answered end to end, and, once bob
has closed his session, alice's next request gets bob's listener's 481 through the relay.
Over TCP and over TLS (the relay checks bob's certificate against the test CA)."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import pytest
import trustme
from liveserver import free_udp_port, start_server

from simplefast.msrp.endpoint import MsrpEndpoint, MsrpListener, RequestReceived

pytestmark = pytest.mark.live

T = TypeVar("T")


async def w(aw: Awaitable[T], timeout: float = 15) -> T:
    return await asyncio.wait_for(aw, timeout)


async def _passive_bob(mport: int, scheme: str, client: ssl.SSLContext | None,
                       server: ssl.SSLContext | None) -> None:  # fmt: skip
    listener = await MsrpListener.start("127.0.0.1", 0, tls=server)
    bob = listener.expect(listener.uri("bob"))  # our a=path in the SDP answer; no To-Path yet
    alice_uri = f"{scheme}://127.0.0.1:9/alice;tcp"  # alice is the relay's client: never dialled
    alice = await MsrpEndpoint.connect("127.0.0.1", mport, alice_uri, tls=client)
    try:
        ok = await w(alice.authenticate(f"{scheme}://127.0.0.1:{mport};tcp", "alice", "unused"))
        (session,) = ok.use_path
        assert session.startswith(f"{scheme}://127.0.0.1:")
        alice.session.to_path = [session, bob.session.local_uri]

        mid = await w(alice.send("text/plain", b"hello passive bob"))
        await w(bob.connected())  # the relay opened the connection and its SEND bound it
        got = await w(bob.receive())
        assert (got.message_id, got.body, got.from_path) == (mid, b"hello passive bob", [session, alice_uri])
        assert bob.session.to_path == [session, alice_uri]  # learnt from the From-Path

        mid = await w(bob.send("text/plain", b"hello alice, via the relay"))
        back = await w(alice.receive())
        assert (back.message_id, back.body) == (mid, b"hello alice, via the relay")
        assert back.from_path == [session, bob.session.local_uri]

        big = hashlib.shake_256(b"passive").digest(1 << 20)
        for src, dst in ((alice, bob), (bob, alice)):
            sent = asyncio.ensure_future(src.send("application/octet-stream", big))
            got = await w(dst.receive(), 60)
            assert got.body == big and got.message_id == await w(sent, 60)

        # a made-up method, answered by bob: end to end through the relay
        answer = asyncio.ensure_future(alice.request("FROBNICATE", [("Frob-Level", "11")]))
        ev = await w(bob.other_event())
        assert isinstance(ev, RequestReceived) and ev.msg.get("Frob-Level") == "11"
        assert ev.msg.from_path == [session, alice_uri]
        bob.respond(ev.msg, 299, "Frobnicated")
        assert await w(answer) == (299, "Frobnicated")

        # bob ends his session: the connection the relay opened closes (his only session on it)
        bob.close()
        await w(bob.wait_closed())
        # the relay dials bob again for alice's next request, and bob's listener knows no such
        # session any more: its 481 goes back end to end through the relay (RFC 4975 7.3)
        assert await w(alice.request("FROBNICATE", [])) == (481, "Session Does Not Exist")
    finally:
        alice.close()
        await w(alice.wait_closed())
        listener.close()
        await w(listener.wait_closed())


def _tls(tmp_path: Path) -> tuple[tuple[str, ...], ssl.SSLContext, ssl.SSLContext]:
    """The server's TLS arguments (its CA is the test CA: it checks bob's certificate when it
    dials him), alice's client context and bob's listener context."""
    ca = trustme.CA()
    paths = {}
    for who in ("server", "bob"):
        cert = ca.issue_cert("127.0.0.1")
        paths[who] = (tmp_path / f"{who}-cert.pem", tmp_path / f"{who}-key.pem")
        paths[who][0].write_bytes(b"".join(p.bytes() for p in cert.cert_chain_pems))
        paths[who][1].write_bytes(cert.private_key_pem.bytes())
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    args = (
        "--tls-cert",
        str(paths["server"][0]),
        "--tls-key",
        str(paths["server"][1]),
        "--tls-ca",
        str(cafile),
    )
    bob_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    bob_ctx.load_cert_chain(str(paths["bob"][0]), str(paths["bob"][1]))
    return args, ssl.create_default_context(cafile=str(cafile)), bob_ctx


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_relay_connects_to_a_passive_endpoint(tmp_path: Path, transport: str) -> None:
    mport = free_udp_port()
    if transport == "tls":
        scheme = "msrps"
        tls_args, client, server = _tls(tmp_path)
    else:
        scheme, tls_args, client, server = "msrp", (), None, None
    srv = start_server(tmp_path, extra=("--listen", f"{scheme}:127.0.0.1:{mport}", *tls_args))
    try:
        asyncio.run(w(_passive_bob(mport, scheme, client, server), 180))
    finally:
        assert srv.stop() == 0
