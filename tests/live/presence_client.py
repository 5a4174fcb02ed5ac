"""A small SIP watcher/publisher over a UDP socket, for the presence live tests."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

from simplefast.sip import parse_message

PIDF = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{entity}">'
    '<tuple id="t1"><status><basic>{basic}</basic></status><note>{note}</note></tuple></presence>'
)


@dataclass
class Peer:
    port: int  # the server's
    user: str
    sock: socket.socket = field(init=False)
    seq: int = 0
    inbox: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)

    @property
    def local(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes, addr: tuple[str, int] | None = None) -> None:
        self.sock.sendto(data, addr or ("127.0.0.1", self.port))

    def request(
        self,
        method: str,
        uri: str,
        *,
        call_id: str,
        from_tag: str,
        to_tag: str | None = None,
        cseq: int = 1,
        headers: str = "",
        body: bytes = b"",
        to_uri: str | None = None,
    ) -> bytes:
        self.seq += 1
        to = f"<{to_uri or uri}>" + (f";tag={to_tag}" if to_tag else "")
        head = (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.local};branch=z9hG4bK{self.user}{self.seq}x;rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:{self.user}@example.com>;tag={from_tag}\r\nTo: {to}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n{headers}Content-Length: {len(body)}\r\n\r\n"
        )
        data = head.encode() + body
        self.send(data)
        return data

    def receive(self, timeout: float = 5.0, *, answer_notify: bool = True, want=None):
        """The next message (matching ``want`` if given); NOTIFYs are answered 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, m in enumerate(self.inbox):
                if want is None or want(m):
                    return self.inbox.pop(i)
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            m = parse_message(data)
            if m.is_request and m.method == "NOTIFY" and answer_notify:
                self.send(ok(m), addr)
            self.inbox.append(m)
        raise TimeoutError(f"{self.user}: nothing matching within {timeout} s (inbox: {len(self.inbox)})")

    def response_to(self, call_id: str, cseq: int, timeout: float = 5.0):
        return self.receive(
            timeout,
            want=lambda m: (
                not m.is_request and m.call_id == call_id and m.cseq_num == cseq and m.status >= 200
            ),
        )

    def notify(self, call_id: str, timeout: float = 5.0):
        return self.receive(
            timeout, want=lambda m: m.is_request and m.method == "NOTIFY" and m.call_id == call_id
        )


def ok(m) -> bytes:
    lines = ["SIP/2.0 200 OK"]
    lines += [f"Via: {v}" for v in m.get_all("Via")]
    lines += [
        f"From: {m.get('From')}",
        f"To: {m.get('To')}",
        f"Call-ID: {m.call_id}",
        f"CSeq: {m.get('CSeq')}",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
