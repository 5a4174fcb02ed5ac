"""What the fuzzer (and the corpus replay test) observes of one input.

``observe_all(mod, data)`` runs every entry point of one twin on ``data`` and
returns a list of (what, outcome) pairs, outcome being ("ok", value) or
("err", type name, status_hint, message). Anything other than the codec's own
errors propagates: that is a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from simplefast.errors import LocalProtocolError, SipParseError

_ACCESSORS = (
    "is_request", "method", "uri", "status", "reason", "version", "body",
    "call_id", "cseq_num", "cseq_method", "via_branch", "via_host", "via_port",
    "via_transport", "via_rport", "from_tag", "to_tag", "expires", "event",
    "content_length", "max_forwards", "contact_uri",
)  # fmt: skip
_METHODS = ("to_bytes", "headers", "vias", "from_addr", "to_addr", "contacts")
_NAMES = ("Via", "v", "Contact", "m", "Route", "Supported", "Require", "From", "To", "X-Unknown", "Date")
_FIXED_URIS = ("sip:alice@example.com", "sip:alice@EXAMPLE.com;transport=tcp", "sips:[2001:db8::1]:5061")

Outcome = tuple[Any, ...]


def _try(fn: Callable[[], Any]) -> Outcome:
    try:
        return ("ok", fn())
    except SipParseError as exc:
        return ("err", "SipParseError", exc.status_hint, str(exc))
    except LocalProtocolError as exc:
        return ("err", "LocalProtocolError", exc.status_hint, str(exc))


def _observe_message(mod: ModuleType, msg: Any, out: list[tuple[str, Outcome]]) -> None:
    for name in _ACCESSORS:
        out.append((name, _try(lambda n=name: getattr(msg, n))))
    for name in _METHODS:
        out.append((name + "()", _try(lambda n=name: getattr(msg, n)())))
    for h in _NAMES:
        out.append(("get " + h, _try(lambda h=h: (msg.get(h), msg.get_all(h), msg.count(h)))))
    out.append(("validate", _try(lambda: mod.validate_request(msg))))
    out.append(("validate+", _try(lambda: mod.validate_request(msg, supported=("100rel", "path")))))
    out.append(("unsupported", _try(lambda: mod.unsupported_requires(msg))))
    out.append(("response", _try(lambda: mod.build_response(msg, 200, "OK", to_tag="f00"))))
    out.append(
        (
            "response+",
            _try(
                lambda: mod.build_response(
                    msg,
                    486,
                    "Busy Here",
                    extra_headers=[("Retry-After", "5")],
                    body=b"x",
                    received="192.0.2.7",
                    rport=5070,
                )  # fmt: skip
            ),
        )
    )


def _observe_forwarding(mod: ModuleType, msg: Any, out: list[tuple[str, Outcome]]) -> None:
    """The proxy's builders: a forwarded request, a response less its top Via."""
    if msg.is_request:
        out.append(
            (
                "forward",
                _try(
                    lambda: mod.forward_request(
                        msg,
                        "sip:bob@192.0.2.1;transport=tcp",
                        "SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKf",
                        record_route="<sip:192.0.2.9;lr>",
                        routes=["<sip:192.0.2.8;lr>"],
                        max_forwards=69,
                        received="192.0.2.7",
                        rport=5070,
                    )  # fmt: skip
                ),
            )
        )
    else:
        out.append(("strip-via", _try(lambda: mod.strip_top_via(msg))))


def _observe_validated_first(mod: ModuleType, data: bytes, out: list[tuple[str, Outcome]]) -> None:
    """validate_request before any accessor: it leaves parsed state behind that the
    accessors then use (the order the server calls them in)."""
    fresh = _try(lambda: mod.parse_message(data, max_header_bytes=4096, max_headers=64, max_body_bytes=65536))
    if fresh[0] != "ok":
        return
    msg = fresh[1]
    out.append(("validate first", _try(lambda: mod.validate_request(msg, supported=("path", "outbound")))))
    for name in ("via_branch", "via_host", "via_port", "via_rport", "call_id", "cseq_num", "expires"):
        out.append(("after validate " + name, _try(lambda n=name: getattr(msg, n))))
    out.append(("after validate contacts", _try(lambda: msg.contacts())))
    out.append(("after validate to", _try(lambda: msg.to_addr())))
    _observe_forwarding(mod, msg, out)


def _cuts(data: bytes) -> list[bytes]:
    """Chunks at points taken from the input itself, so the fuzzer steers them."""
    if not data:
        return [b""]
    n = len(data)
    a = data[0] * 7 % (n + 1)
    b = data[-1] * 13 % (n + 1)
    a, b = sorted((a, b))
    return [data[:a], data[a:b], data[b:]]


def _observe_stream(mod: ModuleType, data: bytes, out: list[tuple[str, Outcome]]) -> None:
    parser = mod.SipStreamParser(max_header_bytes=4096, max_body_bytes=65536, max_headers=64)
    for i, chunk in enumerate([*_cuts(data), b"\r\n\r\n"]):
        got = _try(lambda c=chunk: [m.to_bytes() for m in parser.feed(c)])
        out.append((f"feed {i}", got))
        out.append((f"state {i}", ("ok", (parser.buffered, parser.ping_count))))


def _observe_uri(mod: ModuleType, text: str, out: list[tuple[str, Outcome]]) -> None:
    out.append(("uri", _try(lambda: mod.parse_uri(text))))
    for other in _FIXED_URIS:
        out.append(("uri==", _try(lambda o=other: mod.parse_uri(text).equivalent(mod.parse_uri(o)))))


def observe_all(mod: ModuleType, data: bytes) -> list[tuple[str, Outcome]]:
    out: list[tuple[str, Outcome]] = []
    parsed = _try(
        lambda: mod.parse_message(data, max_header_bytes=4096, max_headers=64, max_body_bytes=65536)
    )
    out.append(("parse", ("ok",) if parsed[0] == "ok" else parsed))
    if parsed[0] == "ok":
        _observe_message(mod, parsed[1], out)
        _observe_forwarding(mod, parsed[1], out)
    _observe_validated_first(mod, data, out)
    _observe_stream(mod, data, out)
    text = data.decode("utf-8", "surrogateescape")
    first = text.split("\n", 1)[0].strip()
    _observe_uri(mod, first, out)
    parts = first.split(" ")
    if len(parts) > 1:
        _observe_uri(mod, parts[1], out)
    out.append(("via", _try(lambda: mod.parse_via(first))))
    out.append(("name-addr", _try(lambda: mod.parse_name_addr(first))))
    return out
