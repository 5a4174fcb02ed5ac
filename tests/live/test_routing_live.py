"""The proxy forwarding to host names: RFC 3263 through a real DNS server (dnslib) on loopback."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dnslib import NAPTR, QTYPE, RCODE, RR, SRV, A, DNSRecord
from dnslib.server import DNSHandler, DNSLogger, DNSServer
from liveserver import Server, free_udp_port, start_server
from test_stream_live import message, udp_transactions

from simplefast.sip import build_response, parse_message

pytestmark = pytest.mark.live


class Zone:
    """svc.test: NAPTR -> SRV _sip._udp -> uas.svc.test A 127.0.0.1 (port of a UDP UAS);
    tcponly.test: SRV _sip._tcp only, to a TCP UAS; dead.test: SRV with two targets, the
    first one refusing TCP connections (RFC 3263 4.3: the next one is tried)."""

    def __init__(self, udp_port: int, tcp_port: int, dead_port: int) -> None:
        self.records: dict[tuple[str, int], list[RR]] = {}
        self.add("svc.test", QTYPE.NAPTR, NAPTR(10, 10, b"s", b"SIP+D2U", b"", "_sip._udp.svc.test"))
        self.add("_sip._udp.svc.test", QTYPE.SRV, SRV(10, 1, udp_port, "uas.svc.test"))
        self.add("uas.svc.test", QTYPE.A, A("127.0.0.1"))
        self.add("_sip._tcp.tcponly.test", QTYPE.SRV, SRV(10, 1, tcp_port, "uas.svc.test"))
        self.add("_sip._tcp.dead.test", QTYPE.SRV, SRV(10, 1, dead_port, "uas.svc.test"))
        self.add("_sip._tcp.dead.test", QTYPE.SRV, SRV(20, 1, tcp_port, "uas.svc.test"))

    def add(self, name: str, qtype: int, rdata: Any) -> None:
        self.records.setdefault((name, qtype), []).append(RR(name, qtype, rdata=rdata, ttl=60))

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        name = str(request.q.qname).rstrip(".").lower()
        reply = request.reply()
        for rr in self.records.get((name, request.q.qtype), []):
            reply.add_answer(rr)
        if not reply.rr and not any(n == name for n, _ in self.records):
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class UdpUas(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.got: list[bytes] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            msg = parse_message(data)
            if msg.is_request:
                self.got.append(msg.body)
                self.sock.sendto(build_response(msg, 200, "OK", to_tag="uas"), addr)


class TcpUas(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.lsock.settimeout(0.2)
        self.port = int(self.lsock.getsockname()[1])
        self.got: list[bytes] = []
        self.stop = threading.Event()

    def run(self) -> None:
        from simplefast.sip import SipStreamParser

        conns: list[tuple[socket.socket, Any]] = []
        while not self.stop.is_set():
            try:
                c, _ = self.lsock.accept()
                c.settimeout(0.05)
                conns.append((c, SipStreamParser()))
            except TimeoutError:
                pass
            for c, parser in conns:
                try:
                    chunk = c.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    continue
                for msg in parser.feed(chunk):
                    if msg.is_request:
                        self.got.append(msg.body)
                        c.sendall(build_response(msg, 200, "OK", to_tag="tuas"))
        for c, _ in conns:
            c.close()
        self.lsock.close()


@pytest.fixture
def routed(tmp_path: Path) -> Iterator[tuple[Server, UdpUas, TcpUas]]:
    udp_uas, tcp_uas = UdpUas(), TcpUas()
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    zone = Zone(udp_uas.port, tcp_uas.port, int(dead.getsockname()[1]))
    logger = DNSLogger(logf=lambda _s: None)
    dns = DNSServer(zone, address="127.0.0.1", port=0, logger=logger)
    dns.start_thread()
    dns_port = dns.server.server_address[1]
    udp_uas.start()
    tcp_uas.start()
    port = free_udp_port()
    srv = start_server(tmp_path, workers=2, port=port, extra=("--dns-server", f"127.0.0.1:{dns_port}"))
    yield srv, udp_uas, tcp_uas
    srv.stop()
    for t in (udp_uas, tcp_uas):
        t.stop.set()
        t.join(2)
    udp_uas.sock.close()
    dead.close()
    dns.stop()
    dns.server.server_close()


def foreign(uri_host: str, branch: str, body: bytes) -> bytes:
    return message("x", branch, body=body).replace(
        b"sip:x@example.com SIP/2.0", f"sip:x@{uri_host} SIP/2.0".encode(), 1
    )


def test_host_names_are_resolved_naptr_srv_a_then_forwarded(routed: tuple[Server, UdpUas, TcpUas]) -> None:
    srv, udp_uas, tcp_uas = routed
    reqs = [foreign("svc.test", f"z9hG4bKdns{i}", f"d{i}".encode()) for i in range(10)]
    assert udp_transactions(srv.port, reqs) == {f"z9hG4bKdns{i}": 200 for i in range(10)}
    assert sorted(udp_uas.got) == sorted(f"d{i}".encode() for i in range(10))
    # SRV for _sip._tcp only: the request goes over TCP
    assert udp_transactions(srv.port, [foreign("tcponly.test", "z9hG4bKtcpo", b"t")]) == {"z9hG4bKtcpo": 200}
    assert tcp_uas.got == [b"t"]


def test_a_refused_target_falls_over_to_the_next_and_no_records_is_503(
    routed: tuple[Server, UdpUas, TcpUas],
) -> None:
    srv, _, tcp_uas = routed
    assert udp_transactions(srv.port, [foreign("dead.test", "z9hG4bKdead", b"f")]) == {"z9hG4bKdead": 200}
    assert tcp_uas.got == [b"f"]
    assert udp_transactions(srv.port, [foreign("nowhere.test", "z9hG4bKnx", b"n")]) == {"z9hG4bKnx": 503}
