"""How the engines name the other end of a message: the ``peer`` tuple.

The transaction layer treats a peer as opaque; the core and the proxy need
three things from it: the remote address (received/rport stamping, RFC 3261
section 18.2.1 and RFC 3581), the transport (Via, Record-Route, reliable or
not) and, for streams, which connection. Every peer is a tuple whose first
two items are the remote host (an IP literal without brackets) and port:

    (host, port)               UDP, through the first UDP listener of the address family
    (host, port, li)           UDP, through UDP listener number ``li`` (an int)
    (host, port, "c")          UDP, through the worker's own client socket (forwarded
                               requests leave from it so that responses come back here)
    (host, port, kind, cid)    a stream, ``kind`` "tcp" or "tls": connection ``cid`` when
                               it is still open, else a connection to host:port of that kind
                               (reused if this worker has one, opened if not). ``cid`` 0
                               names no connection.

Connection ids are unique in the server: the owning worker's index sits in
the bits above ``CID_SHIFT`` (``owner_of``), so a worker that must send on a
connection of another hands the message to the owner
(simplefast/transport/handoff.py).

A *flow* is the text form kept with a registration (``Binding.source``):
``udp:host:port`` or ``tcp:host:port/cid`` / ``tls:host:port/cid``, the
connection the REGISTER came on (RFC 5626 section 5.2 in spirit: requests
for that contact reuse it).
"""

from __future__ import annotations

from typing import Any

CID_SHIFT = 40
STREAMS = ("tcp", "tls")


def owner_of(cid: int) -> int:
    """Index of the worker owning connection ``cid``."""
    return cid >> CID_SHIFT


def transport_of(peer: Any) -> str:
    """ "udp", "tcp" or "tls"."""
    if len(peer) == 4:
        return str(peer[2])
    return "udp"


def is_stream(peer: Any) -> bool:
    return len(peer) == 4


def flow_of(peer: Any) -> str:
    """The flow text stored with a registration made through ``peer``."""
    host = peer[0]
    if len(peer) == 4:
        return f"{peer[2]}:{host}:{peer[1]}/{peer[3]}"
    return f"udp:{host}:{peer[1]}"


def stream_of_flow(flow: str) -> tuple[str, str, int, int] | None:
    """(kind, host, port, cid) of a stream flow text; None for UDP or an unknown form."""
    kind, sep, rest = flow.partition(":")
    if not sep or kind not in STREAMS:
        return None
    addr, slash, cid_text = rest.rpartition("/")
    host, colon, port_text = addr.rpartition(":")
    if not slash or not colon or not cid_text.isdigit() or not port_text.isdigit():
        return None
    return kind, host, int(port_text), int(cid_text)
