"""The MSRP endpoint library (simplefast/msrp/endpoint.py) through the real relay (2 workers,
loopback): alice authenticates with digest on the shared listener, bob connects to the session
URI alice got, and a 10 MB message goes each way in 2 KiB chunks, every chunk confirmed, over
TCP and over TLS (RFC 4975, RFC 4976 with AUTH). Then the same through two relays (two servers,
alice a client of A, bob of B)."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import trustme
from liveserver import free_udp_port, start_server

from simplefast.msrp.endpoint import MsrpEndpoint, MsrpSendError


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def _exchange(host: str, mport: int, scheme: str, tls: ssl.SSLContext | None, size: int) -> None:
    relay_uri = f"{scheme}://127.0.0.1:{mport};tcp"
    eve = await MsrpEndpoint.connect(host, mport, f"{scheme}://127.0.0.1:7003/eve;tcp", tls=tls)
    with pytest.raises(MsrpSendError, match="403"):
        await asyncio.wait_for(eve.authenticate(relay_uri, "alice", "wrong"), 10)
    eve.close()
    await eve.wait_closed()
    alice = await MsrpEndpoint.connect(host, mport, f"{scheme}://127.0.0.1:7001/alice;tcp", tls=tls)
    try:
        ok = await asyncio.wait_for(alice.authenticate(relay_uri, "alice", "s3cret"), 10)
        (session,) = ok.use_path
        assert ok.expires and session.startswith(f"{scheme}://127.0.0.1:")
        sport = int(session.split(":")[2].split("/")[0])
        assert sport in (mport + 1, mport + 2)  # the port of the worker holding the session
        bob = await MsrpEndpoint.connect(host, sport, f"{scheme}://127.0.0.1:7002/bob;tcp", tls=tls)
        try:
            bob.session.to_path = [session, alice.session.local_uri]
            alice.session.to_path = [session, bob.session.local_uri]
            big = hashlib.shake_256(b"simplefast").digest(size)
            sent = asyncio.ensure_future(bob.send("application/octet-stream", big, success_report=True))
            got = await asyncio.wait_for(alice.receive(), 120)
            await asyncio.wait_for(sent, 60)  # every chunk's 200 came back through the relay
            assert (got.message_id, got.content_type, len(got.body)) == (
                sent.result(),
                "application/octet-stream",
                size,
            )
            assert got.body == big and got.from_path == [session, bob.session.local_uri]
            # alice's Success-Report (RFC 4975 7.1.2) reaches bob as a REPORT 200
            for _ in range(100):
                if bob.other_events:
                    break
                await asyncio.sleep(0.05)
            (report,) = bob.other_events
            assert (report.message_id, report.status) == (sent.result(), 200)  # type: ignore[union-attr]
            # and back, alice to bob
            mid = await asyncio.wait_for(alice.send("application/octet-stream", big[::-1]), 120)
            back = await asyncio.wait_for(bob.receive(), 60)
            assert back.message_id == mid and back.body == big[::-1]
        finally:
            bob.close()
            await bob.wait_closed()
    finally:
        alice.close()
        await alice.wait_closed()


def tls_setup(
    tmp_path: Path, ca: trustme.CA, transport: str
) -> tuple[str, tuple[str, ...], ssl.SSLContext | None]:
    """The MSRP scheme, the server's TLS arguments and the clients' context for ``transport``."""
    if transport != "tls":
        return "msrp", (), None
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile, cafile = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    certfile.write_bytes(b"".join(p.bytes() for p in cert.cert_chain_pems))
    keyfile.write_bytes(cert.private_key_pem.bytes())
    ca.cert_pem.write_to_path(str(cafile))
    args = ("--tls-cert", str(certfile), "--tls-key", str(keyfile), "--tls-ca", str(cafile))
    return "msrps", args, ssl.create_default_context(cafile=str(cafile))


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_endpoints_exchange_10_mb_through_the_relay(tmp_path: Path, ca: trustme.CA, transport: str) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    subprocess.run(
        [sys.executable, "-m", "simplefast", "user", "add", "alice@example.com", "--password-file", str(pw),
         "--data-dir", str(tmp_path / "data")], check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    mport = free_udp_port()
    scheme, tls_args, client_ctx = tls_setup(tmp_path, ca, transport)
    srv = start_server(tmp_path, auth=True, extra=("--listen", f"{scheme}:127.0.0.1:{mport}", *tls_args))
    try:
        asyncio.run(_exchange("127.0.0.1", mport, scheme, client_ctx, 10_000_000))
    finally:
        assert srv.stop() == 0


async def _two_relays(ports: tuple[int, int], scheme: str, tls: ssl.SSLContext | None, size: int) -> None:
    """alice is a client of relay A, bob of relay B (RFC 4976 section 3): A forwards to B."""
    eps = []
    try:
        uses = []
        for name, port, user in (("alice", ports[0], "alice"), ("bob", ports[1], "bob")):
            me = f"{scheme}://127.0.0.1:700{len(eps) + 1}/{name};tcp"
            ep = await MsrpEndpoint.connect("127.0.0.1", port, me, tls=tls)
            eps.append(ep)
            ok = await asyncio.wait_for(
                ep.authenticate(f"{scheme}://127.0.0.1:{port};tcp", user, "s3cret"), 10
            )
            uses.append(ok.use_path)
        alice, bob = eps
        alice.session.to_path = [*uses[0], *uses[1], bob.session.local_uri]
        bob.session.to_path = [*uses[1], *uses[0], alice.session.local_uri]
        big = hashlib.shake_256(b"two relays").digest(size)
        sent = asyncio.ensure_future(alice.send("application/octet-stream", big))
        got = await asyncio.wait_for(bob.receive(), 120)
        await asyncio.wait_for(sent, 60)
        assert got.body == big and got.from_path == [*uses[1], *uses[0], alice.session.local_uri]
        mid = await asyncio.wait_for(bob.send("text/plain", b"got it"), 30)
        back = await asyncio.wait_for(alice.receive(), 30)
        assert (back.message_id, back.body) == (mid, b"got it")
    finally:
        for ep in eps:
            ep.close()
            await ep.wait_closed()


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_endpoints_exchange_10_mb_through_two_relays(tmp_path: Path, ca: trustme.CA, transport: str) -> None:
    scheme, tls_args, client_ctx = tls_setup(tmp_path, ca, transport)
    servers, ports = [], []
    try:
        for name in ("a", "b"):
            d = tmp_path / name
            d.mkdir()
            pw = d / "pw"
            pw.write_text("s3cret\n")
            for user in ("alice", "bob"):
                subprocess.run(
                    [sys.executable, "-m", "simplefast", "user", "add", f"{user}@example.com",
                     "--password-file", str(pw), "--data-dir", str(d / "data")],
                    check=True, capture_output=True, timeout=30,
                )  # fmt: skip
            mport = free_udp_port()
            servers.append(
                start_server(d, auth=True, extra=("--listen", f"{scheme}:127.0.0.1:{mport}", *tls_args))
            )
            ports.append(mport)
        asyncio.run(_two_relays((ports[0], ports[1]), scheme, client_ctx, 10_000_000))
    finally:
        for srv in servers:
            assert srv.stop() == 0
