"""Presence on the real server (2 workers): PUBLISH, SUBSCRIBE/NOTIFY, refresh hand-off, over UDP sockets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from liveserver import start_server
from presence_client import PIDF, Peer

SUB = "Contact: <sip:bob@{local}>\r\nEvent: presence\r\nExpires: {expires}\r\n"
WINFO = "Contact: <sip:alice@{local}>\r\nEvent: presence.winfo\r\nExpires: 600\r\n"


def subscribe_several(w: Peer, prefix: str, n: int = 4) -> None:
    """``n`` dialogs (Call-IDs prefix0...), each active with its first NOTIFY: several, so
    that they land on either worker."""
    for i in range(n):
        w.request("SUBSCRIBE", "sip:alice@example.com", call_id=f"{prefix}{i}", from_tag=f"b{i}",
                  headers=SUB.format(local=w.local, expires=600))  # fmt: skip
        assert w.response_to(f"{prefix}{i}", 1).status == 200
        assert w.notify(f"{prefix}{i}").get("Subscription-State") == "active;expires=600"


def kill_a_worker(srv: Any) -> None:
    """kill -9 of the first worker; back when its replacement serves and took back its
    subscriptions."""
    import os
    import signal
    import time

    victim = srv.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = srv.worker_pids()
        if len(pids) == 2 and victim not in pids:
            break
        time.sleep(0.05)
    srv.wait_ready()
    time.sleep(0.3)  # the replacement takes its subscriptions back as it starts


def test_publish_subscribe_refresh_unsubscribe_across_workers(tmp_path: Path) -> None:
    srv = start_server(tmp_path, extra=("--min-notify-interval", "0"))
    w, p = Peer(srv.port, "bob"), Peer(srv.port, "alice")
    try:
        w.request("SUBSCRIBE", "sip:alice@example.com", call_id="s1", from_tag="b1",
                  headers=SUB.format(local=w.local, expires=600))  # fmt: skip
        ok = w.response_to("s1", 1)
        n = w.notify("s1")
        assert ok.status == 200 and n.get("Subscription-State") == "active;expires=600"
        assert b"<basic>closed</basic>" in n.body and n.cseq_num == 1
        tag, cseq = ok.to_tag, 1
        # each PUBLISH has other octets, so the cBPF program spreads them over both workers;
        # whichever worker takes one, the watcher's worker sends the NOTIFY
        etag = None
        for i in range(8):
            body = PIDF.format(entity="sip:alice@example.com", basic="open", note=f"note {i}").encode()
            hdr = "Event: presence\r\nContent-Type: application/pidf+xml\r\nExpires: 600\r\n"
            hdr += f"SIP-If-Match: {etag}\r\n" if etag else ""
            p.request(
                "PUBLISH", "sip:alice@example.com", call_id=f"p{i}", from_tag=f"a{i}", headers=hdr, body=body
            )
            r = p.response_to(f"p{i}", 1)
            assert r.status == 200
            etag = r.get("SIP-ETag")
            n = w.notify("s1")
            cseq += 1
            assert n.cseq_num == cseq and f"note {i}".encode() in n.body
        # refreshes in the dialog: those reaching the other worker are handed to the owner
        for i in range(2, 10):
            w.request("SUBSCRIBE", "sip:alice@example.com", call_id="s1", from_tag="b1", to_tag=tag, cseq=i,
                      headers=SUB.format(local=w.local, expires=300))  # fmt: skip
            assert w.response_to("s1", i).status == 200
            n = w.notify("s1")
            cseq += 1
            assert n.cseq_num == cseq and n.get("Subscription-State") == "active;expires=300"
        w.request("SUBSCRIBE", "sip:alice@example.com", call_id="s1", from_tag="b1", to_tag=tag, cseq=10,
                  headers=SUB.format(local=w.local, expires=0))  # fmt: skip
        assert w.response_to("s1", 10).status == 200
        assert w.notify("s1").get("Subscription-State") == "terminated;reason=timeout"
        w.request("SUBSCRIBE", "sip:alice@example.com", call_id="s1", from_tag="b1", to_tag=tag, cseq=11,
                  headers=SUB.format(local=w.local, expires=300))  # fmt: skip
        assert w.response_to("s1", 11).status == 481
    finally:
        w.close()
        p.close()
        assert srv.stop() == 0
    assert "handed off" in srv.log()


def test_kill_9_of_a_worker_loses_no_subscription(tmp_path: Path) -> None:
    srv = start_server(tmp_path, extra=("--min-notify-interval", "0"))
    watchers = [Peer(srv.port, f"w{i}") for i in range(8)]
    p = Peer(srv.port, "alice")
    try:
        for i, w in enumerate(watchers):  # spread over both workers by the cBPF hash
            w.request("SUBSCRIBE", "sip:alice@example.com", call_id=f"k{i}", from_tag=f"t{i}",
                      headers=SUB.format(local=w.local, expires=600))  # fmt: skip
            assert w.response_to(f"k{i}", 1).status == 200
            assert w.notify(f"k{i}").cseq_num == 1
        kill_a_worker(srv)
        body = PIDF.format(entity="sip:alice@example.com", basic="open", note="after").encode()
        hdr = "Event: presence\r\nContent-Type: application/pidf+xml\r\nExpires: 600\r\n"
        p.request("PUBLISH", "sip:alice@example.com", call_id="kp", from_tag="a", headers=hdr, body=body)
        assert p.response_to("kp", 1).status == 200
        for i, w in enumerate(watchers):
            n = w.notify(f"k{i}")
            assert n.cseq_num == 2 and b"after" in n.body  # the CSeq goes on after the kill
    finally:
        for w in watchers:
            w.close()
        p.close()
        assert srv.stop() == 0
    assert "took back" in srv.log()


def test_restart_keeps_subscriptions_publications_and_notify_cseq(tmp_path: Path) -> None:
    srv = start_server(tmp_path, extra=("--min-notify-interval", "0"))
    watchers = [Peer(srv.port, f"r{i}") for i in range(6)]
    p = Peer(srv.port, "alice")
    try:
        for i, w in enumerate(watchers):
            w.request("SUBSCRIBE", "sip:alice@example.com", call_id=f"r{i}", from_tag=f"t{i}",
                      headers=SUB.format(local=w.local, expires=600))  # fmt: skip
            assert w.response_to(f"r{i}", 1).status == 200
            w.notify(f"r{i}")
        body = PIDF.format(entity="sip:alice@example.com", basic="open", note="before").encode()
        hdr = "Event: presence\r\nContent-Type: application/pidf+xml\r\nExpires: 600\r\n"
        p.request("PUBLISH", "sip:alice@example.com", call_id="rp1", from_tag="a", headers=hdr, body=body)
        etag = p.response_to("rp1", 1).get("SIP-ETag")
        for i, w in enumerate(watchers):
            assert w.notify(f"r{i}").cseq_num == 2
        assert srv.stop() == 0
        srv = start_server(tmp_path, extra=("--min-notify-interval", "0"), port=srv.port)
        assert "6 subscriptions restored" in srv.log()
        # the publication survived: its entity-tag still works, and the watchers hear the change
        body = PIDF.format(entity="sip:alice@example.com", basic="closed", note="after").encode()
        p.request("PUBLISH", "sip:alice@example.com", call_id="rp2", from_tag="a", body=body,
                  headers=hdr + f"SIP-If-Match: {etag}\r\n")  # fmt: skip
        assert p.response_to("rp2", 1).status == 200
        for i, w in enumerate(watchers):
            n = w.notify(f"r{i}")
            assert n.cseq_num == 3 and b"after" in n.body  # the CSeq goes on across the restart
    finally:
        for w in watchers:
            w.close()
        p.close()
        assert srv.stop() == 0


def test_fast_path_publications_are_answered_once_and_survive_a_restart(tmp_path: Path) -> None:
    """PUBLISHes of presentities nobody watches take the stateless fast path: a retransmission
    (the same datagram) gets the same 200 and makes no second publication, and the
    publications are written behind like any other: after a restart a new watcher gets the
    published state, and the entity-tag still refreshes it."""
    srv = start_server(tmp_path, extra=("--min-notify-interval", "0"))
    p, w = Peer(srv.port, "carol"), Peer(srv.port, "bob")
    hdr = "Event: presence\r\nContent-Type: application/pidf+xml\r\nExpires: 600\r\n"
    try:
        etags = {}
        for user in ("carol", "dave", "erin"):
            body = PIDF.format(entity=f"sip:{user}@example.com", basic="open", note=f"{user} here").encode()
            data = p.request("PUBLISH", f"sip:{user}@example.com", call_id=f"f-{user}", from_tag="c",
                             headers=hdr, body=body)  # fmt: skip
            first = p.response_to(f"f-{user}", 1)
            p.send(data)  # the same datagram again, as a retransmission
            again = p.response_to(f"f-{user}", 1)
            assert first.status == again.status == 200
            assert again.get("SIP-ETag") == first.get("SIP-ETag") and again.to_tag == first.to_tag
            etags[user] = first.get("SIP-ETag")
        assert srv.stop() == 0
        # the three PUBLISHes and their retransmissions, whichever worker took each
        fast = [int(n) for n in re.findall(r"PUBLISH fast path: (\d+) answered", srv.log())]
        assert len(fast) == 2 and sum(fast) == 6
        srv = start_server(tmp_path, extra=("--min-notify-interval", "0"), port=srv.port)
        w.request("SUBSCRIBE", "sip:dave@example.com", call_id="fw", from_tag="b",
                  headers=SUB.format(local=w.local, expires=600))  # fmt: skip
        assert w.response_to("fw", 1).status == 200
        n = w.notify("fw")
        assert b"dave here" in n.body and n.body.count(b"<tuple") == 1  # one publication, not two
        p.request("PUBLISH", "sip:erin@example.com", call_id="f-erin-2", from_tag="c",
                  headers=hdr + f"SIP-If-Match: {etags['erin']}\r\n")  # fmt: skip
        assert p.response_to("f-erin-2", 1).status == 200  # a refresh of the restored publication
    finally:
        p.close()
        w.close()
        assert srv.stop() == 0


def test_fast_path_subscriptions_answer_copies_without_a_second_subscription(tmp_path: Path) -> None:
    """SUBSCRIBEs over UDP take the stateless fast path (no server transaction): a copy of
    the initial SUBSCRIBE gets the same 200 and no second NOTIFY, a copy of the unsubscribe
    gets 200 again (not 481) and no second final NOTIFY, and a NOTIFY's CSeq goes on as if
    each request had come once."""
    srv = start_server(tmp_path, extra=("--min-notify-interval", "0"))
    w = Peer(srv.port, "bob")
    try:
        for i in range(3):  # several dialogs: their initial SUBSCRIBEs hash to either worker
            cid = f"fs{i}"
            first = w.request("SUBSCRIBE", "sip:alice@example.com", call_id=cid, from_tag="b",
                              headers=SUB.format(local=w.local, expires=600))  # fmt: skip
            ok1 = w.response_to(cid, 1)
            assert ok1.status == 200 and w.notify(cid).cseq_num == 1
            w.send(first)  # the same datagram again
            ok2 = w.response_to(cid, 1)
            assert ok2.status == 200 and ok2.to_tag == ok1.to_tag
            tag = ok1.to_tag
            bye = w.request("SUBSCRIBE", "sip:alice@example.com", call_id=cid, from_tag="b", to_tag=tag,
                            cseq=2, headers=SUB.format(local=w.local, expires=0))  # fmt: skip
            assert w.response_to(cid, 2).status == 200
            final = w.notify(cid)
            # CSeq 2: the copy of the initial SUBSCRIBE made no NOTIFY
            assert final.cseq_num == 2 and final.get("Subscription-State") == "terminated;reason=timeout"
            w.send(bye)
            again = w.response_to(cid, 2)
            assert again.status == 200 and again.get("Expires") == "0"
            try:
                extra = w.notify(cid, timeout=0.5)
            except TimeoutError:
                extra = None
            assert extra is None, extra
    finally:
        w.close()
        assert srv.stop() == 0
    fast = [int(n) for n in re.findall(r"SUBSCRIBE fast path: (\d+) answered", srv.log())]
    assert len(fast) == 2 and sum(fast) == 12  # every request and every copy


def test_watcherinfo_hears_of_watchers_in_every_worker(tmp_path: Path) -> None:
    srv = start_server(tmp_path, extra=("--min-notify-interval", "0"))
    alice = Peer(srv.port, "alice")
    watchers = [Peer(srv.port, f"v{i}") for i in range(6)]
    try:
        alice.request("SUBSCRIBE", "sip:alice@example.com", call_id="wi", from_tag="a1",
                      headers=WINFO.format(local=alice.local))  # fmt: skip
        assert alice.response_to("wi", 1).status == 200
        n = alice.notify("wi")
        assert b'state="full"' in n.body and b'version="0"' in n.body
        for i, w in enumerate(watchers):  # spread over both workers
            w.request("SUBSCRIBE", "sip:alice@example.com", call_id=f"v{i}", from_tag=f"t{i}",
                      headers=SUB.format(local=w.local, expires=600))  # fmt: skip
            assert w.response_to(f"v{i}", 1).status == 200
            n = alice.notify("wi")  # each watcher, wherever its subscription lives, in a partial NOTIFY
            assert b'state="partial"' in n.body and f'version="{i + 1}"'.encode() in n.body
            assert f"sip:v{i}@example.com".encode() in n.body and b'event="approved"' in n.body
        # a new winfo subscription's full state lists all of them, read from the shared table
        alice.request("SUBSCRIBE", "sip:alice@example.com", call_id="wi2", from_tag="a2",
                      headers=WINFO.format(local=alice.local))  # fmt: skip
        assert alice.response_to("wi2", 1).status == 200
        n = alice.notify("wi2")
        assert all(f"sip:v{i}@example.com".encode() in n.body for i in range(6))
    finally:
        alice.close()
        for w in watchers:
            w.close()
        assert srv.stop() == 0


def test_sighup_with_new_policies_approves_then_rejects(tmp_path: Path) -> None:
    """confirm -> allow on SIGHUP: the pending watcher's next NOTIFY is active; allow ->
    block: its subscription ends with reason rejected (whichever worker holds it)."""
    import signal

    conf = tmp_path / "sf.toml"
    conf.write_text('[presence]\ndefault_policy = "confirm"\nmin_notify_interval = 0\n')
    srv = start_server(tmp_path, extra=("-c", str(conf)))
    w = Peer(srv.port, "bob")
    try:
        w.request("SUBSCRIBE", "sip:alice@example.com", call_id="h1", from_tag="b1",
                  headers=SUB.format(local=w.local, expires=600))  # fmt: skip
        assert w.response_to("h1", 1).status == 200
        assert w.notify("h1").get("Subscription-State").startswith("pending")
        conf.write_text('[presence]\ndefault_policy = "allow"\nmin_notify_interval = 0\n')
        srv.proc.send_signal(signal.SIGHUP)
        n = w.notify("h1")
        assert n.get("Subscription-State").startswith("active") and b"<basic>closed</basic>" in n.body
        conf.write_text('[presence]\ndefault_policy = "block"\nmin_notify_interval = 0\n')
        srv.proc.send_signal(signal.SIGHUP)
        assert w.notify("h1").get("Subscription-State") == "terminated;reason=rejected"
    finally:
        w.close()
        assert srv.stop() == 0
    assert "subscriptions changed by the reload" in srv.log()


def test_a_planned_stop_puts_the_watchers_on_probation(tmp_path: Path) -> None:
    """[presence] stop_retry_after = 120 with --no-persist: SIGTERM ends each subscription with
    terminated;reason=probation;retry-after=120 (come back in two minutes)."""
    conf = tmp_path / "simplefast.toml"
    conf.write_text("[presence]\nstop_retry_after = 120\n")
    srv = start_server(tmp_path, extra=("-c", str(conf), "--no-persist", "--min-notify-interval", "0"))
    w = Peer(srv.port, "bob")
    try:
        subscribe_several(w, "p")
        srv.proc.terminate()
        for i in range(4):
            state = w.notify(f"p{i}").get("Subscription-State")
            assert state == "terminated;reason=probation;retry-after=120"
        assert srv.proc.wait(20) == 0
    finally:
        w.close()
        srv.stop()


def test_stopping_without_persistence_deactivates_the_watchers(tmp_path: Path) -> None:
    """--no-persist: the subscriptions do not outlive the server, so SIGTERM ends each with a
    final NOTIFY terminated;reason=deactivated (RFC 6665 4.2.2: subscribe again at once),
    answered before the worker exits."""
    srv = start_server(tmp_path, extra=("--no-persist", "--min-notify-interval", "0"))
    w = Peer(srv.port, "bob")
    try:
        subscribe_several(w, "d")
        srv.proc.terminate()  # SIGTERM: drain
        for i in range(4):
            assert w.notify(f"d{i}").get("Subscription-State") == "terminated;reason=deactivated"
        assert srv.proc.wait(20) == 0
    finally:
        w.close()
        srv.stop()


def test_in_dialog_messages_reach_the_owning_worker_without_a_hand_off(tmp_path: Path) -> None:
    """The steering cBPF (transport/reuseport.py): the 200s to NOTIFYs and the SUBSCRIBEs
    inside a dialog, all sent to the shared port as SIPp sends them, reach the worker that
    holds the subscription, before and after a worker is killed and replaced."""
    from presence_client import ok

    from simplefast.transport.reuseport import marked_index

    srv = start_server(tmp_path, extra=("--min-notify-interval", "0"))
    watchers = [Peer(srv.port, f"w{i}") for i in range(12)]
    shared = ("127.0.0.1", srv.port)

    def notify(w: Peer, call_id: str) -> object:
        m = w.receive(want=lambda m: m.is_request and m.method == "NOTIFY" and m.call_id == call_id,
                      answer_notify=False)  # fmt: skip
        w.send(ok(m), shared)
        return m

    def refresh_all(cseq: int, expires: int) -> None:
        for i, w in enumerate(watchers):
            w.request("SUBSCRIBE", "sip:alice@example.com", call_id=f"d{i}", from_tag=f"t{i}", to_tag=tags[i],
                      cseq=cseq, headers=SUB.format(local=w.local, expires=expires))  # fmt: skip
            assert w.response_to(f"d{i}", cseq).status == 200
            notify(w, f"d{i}")

    tags: dict[int, str] = {}
    try:
        for i, w in enumerate(watchers):
            w.request("SUBSCRIBE", "sip:alice@example.com", call_id=f"d{i}", from_tag=f"t{i}",
                      headers=SUB.format(local=w.local, expires=600))  # fmt: skip
            r = w.response_to(f"d{i}", 1)
            assert r.status == 200
            tags[i] = r.to_tag
            notify(w, f"d{i}")
        assert {marked_index(t) for t in tags.values()} == {0, 1}  # spread over both workers
        refresh_all(2, 600)
        refresh_all(3, 600)
        kill_a_worker(srv)
        refresh_all(4, 600)
        refresh_all(5, 0)  # un-SUBSCRIBE: 200 and the final NOTIFY
    finally:
        for w in watchers:
            w.close()
        assert srv.stop() == 0
    handed = [int(n) for n in re.findall(r"(\d+) handed off", srv.log())]
    assert len(handed) == 2 and handed == [0, 0]  # the survivor and the replacement


def test_a_subscription_whose_row_fits_no_table_works_and_is_reported(tmp_path: Path) -> None:
    """A route set of more than a kilobyte: the row fits neither the subscription table nor
    its overflow table. The subscription still works (kept in its worker) and the log says
    it will not survive the worker's death or a restart."""
    import time

    srv = start_server(tmp_path, extra=("--min-notify-interval", "0"))
    w, p = Peer(srv.port, "bob"), Peer(srv.port, "alice")
    try:
        # the first route names the watcher, so the NOTIFYs come back to it along the route set
        routes = "".join(f"Record-Route: <sip:{w.local};lr;pad={str(i) * 400}>\r\n" for i in range(3))
        w.request("SUBSCRIBE", "sip:alice@example.com", call_id="big", from_tag="b1",
                  headers=routes + SUB.format(local=w.local, expires=600))  # fmt: skip
        assert w.response_to("big", 1).status == 200
        n = w.notify("big")
        assert n.cseq_num == 1 and len(n.get_all("Route")) == 3
        body = PIDF.format(entity="sip:alice@example.com", basic="open", note="long routes").encode()
        hdr = "Event: presence\r\nContent-Type: application/pidf+xml\r\nExpires: 600\r\n"
        p.request("PUBLISH", "sip:alice@example.com", call_id="bp", from_tag="a", headers=hdr, body=body)
        assert p.response_to("bp", 1).status == 200
        n = w.notify("big")
        assert n.cseq_num == 2 and b"long routes" in n.body
        deadline = time.monotonic() + 12
        while "did not fit the shared tables" not in srv.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "did not fit the shared tables" in srv.log()
    finally:
        w.close()
        p.close()
        assert srv.stop() == 0
