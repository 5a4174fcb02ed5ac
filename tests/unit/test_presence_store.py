"""The presence write-behind store (simplefast/store/presence.py): round trip, clock shift, expiry, owners."""

from __future__ import annotations

from pathlib import Path

from simplefast.presence.state import Presentity, PubRecord, decode, encode
from simplefast.presence.subscribe import Subscription, decode_row, encode_row
from simplefast.store import presence as store


def sub(key: str, expires_at: float, owner: int, cseq: int) -> Subscription:
    return Subscription(
        key=key, call_id="c", remote_tag="r", local_uri="sip:a@example.com", remote_uri="sip:b@example.com",
        target="sip:b@10.0.0.9", routes=("<sip:10.0.0.2;lr>",), peer=("10.0.0.9", 5060), event="presence",
        event_id=None, resource="sip:a@example.com", watcher="sip:b@example.com",
        content_type="application/pidf+xml", policy="allow", expires_at=expires_at, cseq=cseq, owner=owner,
    )  # fmt: skip


def test_round_trip_moves_times_to_the_new_clock_and_drops_expired_subscriptions(tmp_path: Path) -> None:
    pub = PubRecord("e1", "presence", "application/pidf+xml", b"<x/>", 90.0, 700.0)
    p = Presentity(3, (pub,), b"<doc/>", 5)
    pres = {"sip:a@example.com": (5).to_bytes(8, "big") + encode(p)}
    subs = {
        "k1": encode_row(sub("k1", 400.0, 3, 7)),  # 300 s left at save time
        "k2": encode_row(sub("k2", 150.0, 0, 1)),  # 50 s left
    }
    # saved at monotonic 100 = wall 1000; loaded 60 s later (wall 1060) on a clock at 5
    store.save(tmp_path, pres, subs, 100.0, 1000.0)
    prows, srows = store.load(tmp_path, 5.0, 1060.0, workers=2)
    (value,) = prows.values()
    q = decode(int.from_bytes(value[:8], "big"), value[8:])
    assert (q.version, q.seq, q.document) == (3, 5, b"<doc/>")
    assert q.pubs[0].expires_at == 700.0 - 100.0 - 60.0 + 5.0 and q.pubs[0].etag == "e1"
    assert list(srows) == ["k1"]  # k2 ended while the server was down
    restored = decode_row(srows["k1"], "k1")
    assert restored.owner == 1  # owner 3 of a server now running 2 workers
    assert restored.expires_at == 400.0 - 100.0 - 60.0 + 5.0
    assert (
        restored.cseq == 7
        and restored.routes == ("<sip:10.0.0.2;lr>",)
        and restored.peer == ("10.0.0.9", 5060)
    )


def test_deletes_and_replace_all(tmp_path: Path) -> None:
    subs = {"k1": encode_row(sub("k1", 400.0, 0, 1))}
    store.save(tmp_path, {}, subs, 0.0, 0.0)
    store.save(tmp_path, {}, {"k1": b""}, 0.0, 0.0)
    assert store.load(tmp_path, 0.0, 0.0, 1) == ({}, {})
    store.save(tmp_path, {}, subs, 0.0, 0.0)
    store.save(tmp_path, {}, {}, 0.0, 0.0, replace_all=True)
    assert store.load(tmp_path, 0.0, 0.0, 1) == ({}, {})


def test_an_undecodable_row_is_skipped(tmp_path: Path) -> None:
    store.save(tmp_path, {"sip:a@example.com": b"\0" * 8 + b"junk"}, {"k": b"junk"}, 0.0, 0.0)
    assert store.load(tmp_path, 0.0, 0.0, 1) == ({}, {})
