"""The RFC 7701 chat focus on the real server (2 workers, loopback): three participants join a
room with SIP INVITE (SDP offer/answer for MSRP, RFC 4975 section 8) and the MSRP endpoint
library; nicknames (200, then 425 for a taken one), a message to the room reaches the two
others in CPIM naming the sender, a private message reaches its one recipient, a conference
subscription (RFC 4575) lists the participants with their nicknames and follows a BYE with a
partial NOTIFY, a participant's BYE ends its MSRP session, and a stopping server sends BYE to
everyone left. Over TCP and TLS for the MSRP side; plus the refusals (488 for an offer without
message/cpim, 481 for a BYE outside any dialog)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from liveserver import start_server
from lxml import etree
from presence_client import Peer, ok
from test_msrp_endpoint_live import tls_setup

from simplefast.im.cpim import parse_cpim
from simplefast.msrp.endpoint import MsrpEndpoint
from simplefast.msrp.sdp import parse_msrp_offer

CI = "urn:ietf:params:xml:ns:conference-info"
XCON = "urn:ietf:params:xml:ns:xcon-conference-info"
ROOM = "sip:lobby@example.com"


def offer(path: str, scheme: str, types: str = "message/cpim text/plain") -> bytes:
    proto = "TCP/TLS/MSRP" if scheme == "msrps" else "TCP/MSRP"
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=message 9 {proto} *\r\na=accept-types:{types}\r\na=accept-wrapped-types:*\r\n"
        f"a=path:{path}\r\na=setup:active\r\na=chatroom:nickname private-messages\r\n"
    ).encode()


def cpim(sender: str, to: str, text: str) -> bytes:
    return (
        f"From: <{sender}>\r\nTo: <{to}>\r\nDateTime: 2026-12-07T12:00:00Z\r\n\r\n"
        f"Content-Type: text/plain\r\n\r\n{text}"
    ).encode()


class Participant:
    def __init__(self, port: int, user: str, scheme: str) -> None:
        self.sip = Peer(port, user)
        self.user = user
        self.uri = f"sip:{user}@example.com"
        self.scheme = scheme
        self.path = f"{scheme}://127.0.0.1:9/{user}s1;tcp"
        self.call_id = f"{user}-chat"
        self.cseq = 1
        self.to_tag = ""
        self.contact = ""
        self.ep: MsrpEndpoint | None = None

    def invite(self, types: str = "message/cpim text/plain"):
        head = f"Contact: <sip:{self.user}@{self.sip.local}>\r\nContent-Type: application/sdp\r\n"
        self.sip.request("INVITE", ROOM, call_id=self.call_id, from_tag="ft", cseq=self.cseq, headers=head,
                         body=offer(self.path, self.scheme, types))  # fmt: skip
        r = self.sip.response_to(self.call_id, self.cseq)
        if r.status == 200:
            self.to_tag = r.to_tag
            self.contact = r.contact_uri
        return r

    def in_dialog(self, method: str) -> None:
        if method != "ACK":
            self.cseq += 1
        self.sip.request(method, self.contact, call_id=self.call_id, from_tag="ft", to_tag=self.to_tag,
                         cseq=self.cseq, to_uri=ROOM)  # fmt: skip

    async def join(self, tls: ssl.SSLContext | None) -> list[str]:
        r = self.invite()
        for _ in range(20):  # through a relay: its session URIs may still be on their way (503)
            if r.status != 503:
                break
            await asyncio.sleep(0.25)
            self.cseq += 1
            r = self.invite()
        assert r.status == 200, r.to_bytes()
        assert ";isfocus" in r.get("Contact") and r.contact_uri.startswith("sip:lobby@")
        answer = parse_msrp_offer(r.body)
        assert answer.accept_types == ("message/cpim",)
        assert {"nickname", "private-messages"} <= answer.chatroom
        assert answer.setup == "passive"
        self.in_dialog("ACK")
        first = answer.path[0]  # the focus's URI, or its relay's session URI (RFC 4976)
        hostport = first.split("://")[1].split("/")[0]
        host, port = hostport.rsplit(":", 1)
        self.ep = await MsrpEndpoint.connect(host, int(port), self.path, tls=tls, to_path=list(answer.path))
        await asyncio.wait_for(self.ep.bind(), 10)
        return list(answer.path)

    async def say(self, to: str, text: str) -> None:
        assert self.ep is not None
        await asyncio.wait_for(self.ep.send("message/cpim", cpim(self.uri, to, text)), 10)

    async def hear(self, timeout: float = 10.0) -> tuple[str, str, str]:
        """(CPIM From URI, CPIM To URI, text) of the next message."""
        assert self.ep is not None
        m = await asyncio.wait_for(self.ep.receive(), timeout)
        assert m.content_type == "message/cpim"
        c = parse_cpim(m.body)
        frm, to = c.get("From") or "", c.get("To") or ""
        return frm.strip("<> "), to.strip("<> "), c.body.decode()


def conference_users(body: bytes) -> tuple[str, dict[str, str | None]]:
    root = etree.fromstring(body)
    users = {
        u.get("entity"): (u.get("state"), u.get(f"{{{XCON}}}nickname")) for u in root.iter(f"{{{CI}}}user")
    }
    return root.get("state"), users  # type: ignore[return-value]


def write_config(tmp_path: Path, msrp_port: int, tls: bool, relay: str = "") -> Path:
    cfg = tmp_path / "chat.toml"
    cfg.write_text(
        f'[presence]\nmin_notify_interval = 0\n\n[chat]\nrooms = ["{ROOM}"]\n'
        f'room_domains = ["rooms.example.com"]\nmsrp_port = {msrp_port}\ntls = {"true" if tls else "false"}\n'
        f'relay = "{relay}"\n'
    )
    return cfg


async def _chat(srv: Any, scheme: str, tls: ssl.SSLContext | None, relayed: bool) -> None:
    everyone = [Participant(srv.port, u, scheme) for u in ("alice", "bob", "carol")]
    try:
        await _talk(srv, everyone, tls, relayed)
    finally:
        for p in everyone:
            if p.ep is not None:
                p.ep.close()
                await p.ep.wait_closed()
            p.sip.close()


async def _talk(srv: Any, everyone: list[Participant], tls: ssl.SSLContext | None, relayed: bool) -> None:
    alice, bob, carol = everyone
    for p in everyone:
        path = await p.join(tls)
        assert len(path) == (2 if relayed else 1)  # [relay session URI,] focus URI
    assert alice.ep is not None and bob.ep is not None and carol.ep is not None
    # nicknames (RFC 7701 section 7): granted, then taken
    granted = await asyncio.wait_for(alice.ep.request("NICKNAME", [("Use-Nickname", '"Alice"')]), 10)
    assert granted == (200, "OK")
    status, _ = await asyncio.wait_for(bob.ep.request("NICKNAME", [("Use-Nickname", '"alice"')]), 10)
    assert status == 425
    # conference subscription (RFC 4575): carol watches the room
    carol.sip.request("SUBSCRIBE", ROOM, call_id="carol-conf", from_tag="cf", cseq=1,
                      headers=f"Event: conference\r\nContact: <sip:carol@{carol.sip.local}>\r\n"
                              "Accept: application/conference-info+xml\r\nExpires: 600\r\n")  # fmt: skip
    assert carol.sip.response_to("carol-conf", 1).status == 200
    n = carol.sip.notify("carol-conf")
    assert n.get("Content-Type") == "application/conference-info+xml"
    state, users = conference_users(n.body)
    assert state == "full"
    assert users == {alice.uri: ("full", "Alice"), bob.uri: ("full", None), carol.uri: ("full", None)}
    # a message to the room: the two others get it, From naming alice
    await alice.say(ROOM, "hello room")
    for p in (bob, carol):
        assert await p.hear() == (alice.uri, ROOM, "hello room")
    # a private message (section 6.2): bob only
    await alice.say(bob.uri, "psst bob")
    assert await bob.hear() == (alice.uri, bob.uri, "psst bob")
    await carol.say(ROOM, "anyone?")
    assert await alice.hear() == (carol.uri, ROOM, "anyone?")
    assert await bob.hear() == (carol.uri, ROOM, "anyone?")
    assert alice.ep._received.empty() and carol.ep._received.empty()  # carol never saw the private one
    # bob leaves with BYE: 200, his MSRP connection is closed, carol's NOTIFY says deleted
    bob.in_dialog("BYE")
    assert bob.sip.response_to(bob.call_id, bob.cseq).status == 200
    if not relayed:  # through the relay the connection is the relay's (shared): it stays
        await asyncio.wait_for(bob.ep.wait_closed(), 10)
    n = carol.sip.notify("carol-conf")
    state, users = conference_users(n.body)
    assert state == "partial" and users == {bob.uri: ("deleted", None)}
    await alice.say(ROOM, "bye bob")
    assert await carol.hear() == (alice.uri, ROOM, "bye bob")
    assert bob.ep._received.empty()
    # the stopping server ends the two dialogs left with a BYE each and closes their sessions
    stopped = asyncio.get_running_loop().run_in_executor(None, srv.stop)
    for p in (alice, carol):
        bye = p.sip.receive(10, want=lambda m: m.is_request and m.method == "BYE")
        assert bye.call_id == p.call_id and bye.to_tag == "ft"
        p.sip.send(ok(bye))
        assert p.ep is not None
        await asyncio.wait_for(p.ep.wait_closed(), 10)
    assert await stopped == 0


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.mark.parametrize("transport", ["tcp", "tls", "tcp-relay", "tls-relay"])
def test_three_party_chat(tmp_path: Path, ca: trustme.CA, transport: str) -> None:
    """``-relay``: the focus's path goes through the server's own MSRP relay (RFC 4976): the
    participants connect to the relay's session URI, the relay to the focus over the focus's
    AUTH connection."""
    from liveserver import free_udp_port

    msrp_port = free_udp_port()
    extra: tuple[str, ...] = ()
    tls = None
    scheme = "msrps" if transport.startswith("tls") else "msrp"
    if scheme == "msrps":
        _, extra, tls = tls_setup(tmp_path, ca, "tls")
    relay = ""
    if transport.endswith("-relay"):
        rport = free_udp_port()
        extra = (*extra, "--listen", f"{scheme}:127.0.0.1:{rport}")
        relay = f"{scheme}://127.0.0.1:{rport};tcp"
    cfg = write_config(tmp_path, msrp_port, scheme == "msrps", relay)
    srv = start_server(tmp_path, extra=("-c", str(cfg), *extra))
    try:
        asyncio.run(_chat(srv, scheme, tls, bool(relay)))
    finally:
        srv.stop()
    log = srv.log()
    assert "chat focus:" in log and "0 internal errors" in log


def test_refusals(tmp_path: Path) -> None:
    from liveserver import free_udp_port

    cfg = write_config(tmp_path, free_udp_port(), False)
    srv = start_server(tmp_path, extra=("-c", str(cfg)))
    try:
        p = Participant(srv.port, "dave", "msrp")
        r = p.invite(types="text/plain")  # RFC 7701 section 6: the room takes message/cpim
        assert r.status == 488 and "message/cpim" in r.get("Warning")
        p.call_id, p.cseq = "dave-2", 1
        p.sip.request("INVITE", ROOM, call_id="dave-2", from_tag="ft",
                      headers=f"Contact: <sip:dave@{p.sip.local}>\r\nContent-Type: application/sdp\r\n",
                      body=b"v=0\r\nthis is not sdp")  # fmt: skip
        assert p.sip.response_to("dave-2", 1).status in (400, 488)
        p.call_id, p.contact, p.to_tag = "dave-3", f"sip:lobby@127.0.0.1:{srv.port}", "nosuchtag"
        p.in_dialog("BYE")
        assert p.sip.response_to("dave-3", p.cseq).status == 481
        # a room made on first join in a room domain, gone with its last participant
        q = Participant(srv.port, "erin", "msrp")
        q.sip.request("OPTIONS", "sip:newroom@rooms.example.com", call_id="erin-o", from_tag="o")
        assert q.sip.response_to("erin-o", 1).status == 200
        p.sip.close()
        q.sip.close()
    finally:
        assert srv.stop() == 0
