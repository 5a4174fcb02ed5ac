"""MSRP relay throughput: N sessions, each a sender streaming one large message through the
relay (simplefast, 2 workers) to a receiver, on loopback.

    .venv/bin/python bench/msrp_relay.py                       # 8 sessions x 32 MiB, 2 KiB chunks
    .venv/bin/python bench/msrp_relay.py --chunk 65536 --mib 64 --sessions 4
    # an already running relay (Kamailio's msrp module: bench/peers/kamailio/run-msrp.sh):
    P=$(cat /tmp/kamailio-msrp/kamailio.pid)
    .venv/bin/python bench/msrp_relay.py --target 127.0.0.1:2856 \\
        --server-pids "$P,$(pgrep -P $P | paste -sd,)"

Each receiver AUTHs on the relay's shared port (the server runs with --no-auth, so AUTH is
granted at once) and gets a session URI on one worker's own port; its sender connects
there and sends SEND chunks with ``Failure-Report: no`` (no responses: pure forwarding).
The receivers parse everything with the compiled framer and check that each message
arrives whole and in order. Reported: MB/s and chunks/s relayed (from the first octet sent
to the last one received), the server's CPU seconds per GB, and the clients' CPU.
Senders and receivers are two processes (asyncio each), sharing the 2 cores with the
server: compare runs made on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "sipp"))
sys.path.insert(0, str(HERE.parent))

from steps import cpu_and_rss, start_simplefast  # noqa: E402

from simplefast._impl import msrpframe  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _receive(port: int, n: int, size: int, paths: mp.Queue, done: mp.Queue) -> None:
    async def one(i: int) -> tuple[int, int]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        me = f"msrp://127.0.0.1:9/recv{i};tcp"
        writer.write(msrpframe.build_request(f"auth{i:04d}", "AUTH", [f"msrp://127.0.0.1:{port};tcp"], [me]))
        parser = msrpframe.MsrpParser(max_chunk_bytes=1 << 20)
        session = None
        got = chunks = 0
        while True:
            data = await reader.read(1 << 20)
            if not data:
                raise RuntimeError(f"receiver {i}: connection closed after {got} octets")
            for m in parser.feed(data):
                if session is None:
                    if m.is_request or m.status != 200:
                        raise RuntimeError(f"receiver {i}: AUTH answered {m.status}")
                    session = m.get("Use-Path")
                    paths.put((i, session, me))
                    continue
                if m.byte_range[0] != got + 1:
                    raise RuntimeError(f"receiver {i}: chunk at {m.byte_range[0]}, expected {got + 1}")
                got += len(m.body)
                chunks += 1
            if got >= size:
                writer.close()
                return got, chunks

    results = await asyncio.gather(*(one(i) for i in range(n)))
    done.put((time.time(), sum(r[0] for r in results), sum(r[1] for r in results), time.process_time()))


def receiver(port: int, n: int, size: int, paths: mp.Queue, done: mp.Queue) -> None:
    asyncio.run(_receive(port, n, size, paths, done))


async def _send(sessions: list[tuple[int, str, str]], size: int, chunk: int, started: mp.Queue) -> None:
    body = bytes(range(256)) * (size // 256)
    prepared = []
    for i, session, to in sessions:
        sport = int(session.split(":")[2].split("/")[0])
        n = iter(range(1, 1 << 30))
        wire = msrpframe.chunk(lambda n=n, i=i: f"s{i}x{next(n):08d}", [session, to],
                               [f"msrp://127.0.0.1:9/send{i};tcp"], f"m{i}", "application/octet-stream", body,
                               chunk_size=chunk, headers=[("Failure-Report", "no")])  # fmt: skip
        prepared.append((sport, wire))
    conns = [await asyncio.open_connection("127.0.0.1", sport) for sport, _ in prepared]
    started.put(time.time())

    async def push(writer: asyncio.StreamWriter, wire: list[bytes]) -> None:
        for c in wire:
            writer.write(c)
            if writer.transport.get_write_buffer_size() > 1 << 20:
                await writer.drain()
        await writer.drain()

    await asyncio.gather(*(push(w, wire) for (_, w), (_, wire) in zip(conns, prepared, strict=True)))
    started.put(time.process_time())
    await asyncio.sleep(30)  # keep the connections until the receivers are done (killed then)


def sender(sessions: list[tuple[int, str, str]], size: int, chunk: int, started: mp.Queue) -> None:
    asyncio.run(_send(sessions, size, chunk, started))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--mib", type=int, default=32, help="MiB per session")
    ap.add_argument("--chunk", type=int, default=2048, help="data octets per chunk")
    ap.add_argument("--json", help="write the numbers here")
    ap.add_argument("--target", help="HOST:PORT of a running relay on 127.0.0.1 (default: start simplefast)")
    ap.add_argument("--server-pids", default="", help="pids of that relay, comma-separated (for CPU/RSS)")
    args = ap.parse_args()
    size = args.mib << 20
    mport = free_port() if args.target is None else int(args.target.rpartition(":")[2])
    with tempfile.TemporaryDirectory(prefix="sf-msrp-") as tmp:
        proc = None
        if args.target is None:
            proc, _ = start_simplefast(2, Path(tmp) / "data", ["--listen", f"msrp:127.0.0.1:{mport}"])
        ctx = mp.get_context("fork")
        paths, done, started = ctx.Queue(), ctx.Queue(), ctx.Queue()
        rx = ctx.Process(target=receiver, args=(mport, args.sessions, size, paths, done))
        tx = None
        try:
            rx.start()
            sessions = sorted(paths.get(timeout=30) for _ in range(args.sessions))
            if proc is not None:
                pids = [proc.pid, *(int(p) for p in os.popen(f"pgrep -P {proc.pid}").read().split())]
            else:
                pids = [int(p) for p in args.server_pids.split(",") if p]
            cpu0, _ = cpu_and_rss(pids)
            tx = ctx.Process(target=sender, args=(sessions, size, args.chunk, started))
            tx.start()
            t0 = started.get(timeout=60)
            t1, octets, chunks, rx_cpu = done.get(timeout=600)
            cpu1, rss = cpu_and_rss(pids)
            tx_cpu = started.get(timeout=60)
        finally:
            for p in (tx, rx):
                if p is not None and p.is_alive():
                    p.kill()
                    p.join(5)
            if proc is not None:
                proc.terminate()
                proc.wait(30)
    secs = t1 - t0
    res = {
        "sessions": args.sessions, "mib_per_session": args.mib, "chunk": args.chunk, "octets": octets,
        "chunks": chunks, "seconds": secs, "mb_per_s": octets / secs / 1e6, "chunks_per_s": chunks / secs,
        "server_cpu_s": cpu1 - cpu0, "server_cpu_s_per_gb": (cpu1 - cpu0) / (octets / 1e9),
        "sender_cpu_s": tx_cpu, "receiver_cpu_s": rx_cpu, "server_rss_mib": rss / 2**20,
    }  # fmt: skip
    print("relay:", f"127.0.0.1:{mport}" if args.target else "simplefast, 2 workers")
    print("| sessions | chunk | relayed | time | MB/s | chunks/s | server CPU | CPU s per GB | clients CPU |")
    print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    mib = octets / 2**20
    print(f"| {args.sessions} | {args.chunk} | {mib:.0f} MiB | {secs:.2f} s | {res['mb_per_s']:.0f} "
          f"| {res['chunks_per_s']:.0f} | {cpu1 - cpu0:.2f} s | {res['server_cpu_s_per_gb']:.2f} "
          f"| {tx_cpu:.2f} + {rx_cpu:.2f} s |")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
