"""Frames between workers (simplefast/transport/handoff.py) over real Unix datagram sockets."""

from __future__ import annotations

import asyncio
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from simplefast.transport import handoff


def test_frames_reach_the_worker_they_name(tmp_path: Path) -> None:
    rundir = tempfile.mkdtemp(dir=tmp_path)
    assert stat.S_IMODE(os.stat(rundir).st_mode) == 0o700  # only our user may write to the sockets
    got: list[tuple[Any, ...]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ends = []
        for i in range(3):
            sock = handoff.bind(rundir, i)

            def make(i: int = i, sock: Any = sock) -> handoff.Handoff:
                return handoff.Handoff(
                    sock, rundir, i, 3,
                    on_ring=lambda d, p, h, i=i: got.append((i, "A", d, p, h)),
                    on_response=lambda d, p, i=i: got.append((i, "R", d, p)),
                    on_send=lambda d, p, o, i=i: got.append((i, "S", d, p, o)),
                    on_failed=lambda d, i=i: got.append((i, "F", d)),
                    on_dialog=lambda d, p, i=i: got.append((i, "D", d, p)),
                    on_changed=lambda r, i=i: got.append((i, "P", r)),
                )  # fmt: skip

            _, proto = await loop.create_datagram_endpoint(make, sock=sock)
            ends.append(proto)
        a, b, c = ends
        a.ring(b"ACK sip:x SIP/2.0", ("192.0.2.1", 5060), 1)  # to the next one: b
        c.ring(b"CANCEL", ("2001:db8::1", 5070, 2), 1)  # from listener 2, to a
        a.send_on(2, b"MESSAGE", ("", 0, "tcp", (2 << 40) | 5), origin=0)
        c.response(1, b"SIP/2.0 200 OK", ("192.0.2.9", 41000, "tls", 7))
        b.failed(0, b"MESSAGE lost")
        a.response(2, b"SIP/2.0 200 OK", ("192.0.2.9", 5060))  # a response that came over UDP
        b.dialog(0, b"SUBSCRIBE", ("192.0.2.8", 5070, 1))
        c.changed("sip:alice@example.com")  # to every other worker
        for _ in range(200):  # a burst past the receiver's queue (max_dgram_qlen): parked, not lost
            a.ring(b"x", ("192.0.2.1", 1), 1)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(got) >= 209:
                break
        assert a.lost == b.lost == c.lost == 0
        assert a.batches >= 1  # the burst left as M datagrams, not one send per frame
        for e in ends:
            e.close()
            assert e.transport is not None
            e.transport.close()
        # a frame for a worker that is not there is counted, not raised
        gone = handoff.Handoff(handoff.bind(rundir, 9), rundir, 9, 12, on_ring=print, on_response=print,
                               on_send=print, on_failed=print)  # fmt: skip
        assert gone.send_on(11, b"x", ("h", 1, "tcp", 1), origin=9) is False and gone.lost == 1
        gone.sock.close()

    asyncio.run(main())
    assert (1, "A", b"ACK sip:x SIP/2.0", ("192.0.2.1", 5060), 1) in got
    assert (0, "A", b"CANCEL", ("2001:db8::1", 5070, 2), 1) in got
    assert (2, "S", b"MESSAGE", ("", 0, "tcp", (2 << 40) | 5), 0) in got
    assert (1, "R", b"SIP/2.0 200 OK", ("192.0.2.9", 41000, "tls", 7)) in got
    assert (0, "F", b"MESSAGE lost") in got
    assert (2, "R", b"SIP/2.0 200 OK", ("192.0.2.9", 5060)) in got
    assert (0, "D", b"SUBSCRIBE", ("192.0.2.8", 5070, 1)) in got
    assert {g for g in got if g[1] == "P"} == {
        (0, "P", "sip:alice@example.com"),
        (1, "P", "sip:alice@example.com"),
    }
    assert sum(1 for g in got if g[:3] == (1, "A", b"x")) == 200


def test_a_replaced_worker_binds_over_the_old_socket_file(tmp_path: Path) -> None:
    rundir = tempfile.mkdtemp(dir=tmp_path)
    first = handoff.bind(rundir, 0)
    first.close()  # the old worker died: its socket file stays behind
    second = handoff.bind(rundir, 0)
    assert Path(handoff.address(rundir, 0)).exists()
    second.close()


def test_peer_fields_round_trip_every_peer_shape() -> None:
    from simplefast.transport.handoff import _parse_peer, _peer_fields

    for peer in [
        ("192.0.2.1", 5060),
        ("192.0.2.1", 5060, 2),
        ("::1", 5060, "c"),
        ("", 41000, "tls", 7 << 40),
    ]:
        assert _parse_peer(["R", *_peer_fields(peer).split(" ")]) == peer
