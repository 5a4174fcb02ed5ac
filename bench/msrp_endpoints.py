"""Two endpoints of ours (simplefast/msrp/endpoint.py) talking through an MSRP relay:
alice AUTHs at the relay, bob connects to the session URI she got, and a message of
``--mib`` MiB goes each way in ``--chunk``-octet chunks, every chunk confirmed (Failure-Report
yes), plus a short text message with Success-Report. Prints the time and MB/s of each
direction.

    .venv/bin/python bench/msrp_endpoints.py                      # simplefast, 2 workers, --no-auth
    bench/peers/kamailio/run-msrp.sh                              # Kamailio's msrp module
    .venv/bin/python bench/msrp_endpoints.py --target 127.0.0.1:2856 --one-way --failure-report no

The Kamailio peer config (bench/peers/kamailio/msrp.cfg) relays a session's requests only
toward the client that AUTHed and sends no immediate 200 (RFC 4976 3.2), so through it only
bob -> alice works, with Failure-Report no (nothing awaited) or partial.

Everything runs on 127.0.0.1 and stops by itself (each step has a timeout).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import socket
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "sipp"))
sys.path.insert(0, str(HERE.parent))

from steps import start_simplefast  # noqa: E402

from simplefast.msrp.endpoint import MsrpEndpoint  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run(host: str, port: int, mib: int, chunk: int, fr: str, one_way: bool) -> None:
    relay_uri = f"msrp://{host}:{port};tcp"
    alice = await MsrpEndpoint.connect(host, port, "msrp://127.0.0.1:7001/alice;tcp", chunk_size=chunk)
    ok = await asyncio.wait_for(alice.authenticate(relay_uri, "alice", "unused"), 10)
    (session,) = ok.use_path
    shost, sport = session.split("://")[1].split("/")[0].rsplit(":", 1)
    print(f"relay {relay_uri}: AUTH 200, session {session} (Expires {ok.expires})")
    bob = await MsrpEndpoint.connect(shost, int(sport), "msrp://127.0.0.1:7002/bob;tcp", chunk_size=chunk)
    bob.session.to_path = [session, alice.session.local_uri]
    alice.session.to_path = [session, bob.session.local_uri]
    await asyncio.wait_for(bob.send("text/plain", b"hello alice", failure_report=fr), 10)
    got = await asyncio.wait_for(alice.receive(), 10)
    assert got.body == b"hello alice", got
    big = hashlib.shake_256(b"msrp").digest(mib << 20)
    ways = [("bob -> alice", bob, alice), ("alice -> bob", alice, bob)]
    for name, a, b in ways[:1] if one_way else ways:
        t0 = time.perf_counter()
        sending = asyncio.ensure_future(a.send("application/octet-stream", big, failure_report=fr))
        msg = await asyncio.wait_for(b.receive(), 300)
        await asyncio.wait_for(sending, 60)
        dt = time.perf_counter() - t0
        assert msg.body == big, f"{name}: the message changed on the way"
        how = "every chunk confirmed" if fr == "yes" else f"Failure-Report {fr}"
        print(f"{name}: {mib} MiB in {chunk}-octet chunks, {how}: {dt:.2f} s, "
              f"{len(big) / dt / 1e6:.0f} MB/s")  # fmt: skip
    for ep in (alice, bob):
        ep.close()
        await ep.wait_closed()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", help="HOST:PORT of a running relay (default: start simplefast)")
    ap.add_argument("--mib", type=int, default=10)
    ap.add_argument("--chunk", type=int, default=2048)
    ap.add_argument("--failure-report", default="yes", choices=("yes", "no", "partial"))
    ap.add_argument("--one-way", action="store_true", help="bob -> alice only")
    args = ap.parse_args()
    if args.target:
        host, port = args.target.rsplit(":", 1)
        asyncio.run(run(host, int(port), args.mib, args.chunk, args.failure_report, args.one_way))
        return
    with tempfile.TemporaryDirectory(prefix="sf-msrp-ep-") as tmp:
        mport = free_port()
        proc, _ = start_simplefast(2, Path(tmp) / "data", ["--listen", f"msrp:127.0.0.1:{mport}"])
        try:
            asyncio.run(run("127.0.0.1", mport, args.mib, args.chunk, args.failure_report, args.one_way))
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
