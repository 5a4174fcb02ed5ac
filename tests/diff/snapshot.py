"""Everything one twin of the SIP codec lets a caller observe, as a plain value.

``snapshot(mod, data)`` parses ``data`` with ``mod.parse_message`` and runs
every accessor, view, ``validate_request``, ``unsupported_requires`` and a set
of ``build_response``, ``forward_request`` and ``strip_top_via`` calls on the
result. Each item is recorded on its own as
``(what, outcome)``, the outcome being ``("ok", value)`` or
``("err", exception type, status_hint, message)``, so one failing accessor
never hides the others. Two twins agree on an input when their snapshots are
equal (``==``).

Values are made plain first (``_plain``): named tuples keep their class name,
dicts become ordered item tuples (parameter order is part of the contract), and
ints and bools are tagged with their type so ``1 == True`` cannot hide a
difference.

``snapshot_uri``, ``snapshot_via`` and ``snapshot_name_addr`` do the same for
the structured parsers, ``snapshot_stream`` for ``SipStreamParser`` fed a list
of chunks. ``unexpected(snap)`` lists the items that raised something the
contract does not allow there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import Any

Outcome = tuple[Any, ...]
Snapshot = tuple[tuple[str, Outcome], ...]

# Header names asked of every message with get / get_all / count: full and
# compact forms in several cases, list and non-list headers, unknown names.
HEADER_NAMES: tuple[str, ...] = (
    "Via", "v", "VIA", "V", "From", "f", "To", "t", "Call-ID", "i", "call-id", "CSeq", "cseq",
    "Contact", "m", "Content-Length", "l", "Content-Type", "c", "Content-Encoding", "e",
    "Max-Forwards", "Expires", "Event", "o", "Allow-Events", "u", "Subject", "s", "Supported", "k",
    "Require", "Proxy-Require", "Unsupported", "Route", "Record-Route", "Path", "Allow", "Accept",
    "Date", "WWW-Authenticate", "Authorization", "Proxy-Authenticate", "Warning", "Refer-To", "r",
    "Referred-By", "b", "Session-Expires", "x", "Accept-Contact", "a", "Reject-Contact", "j",
    "Request-Disposition", "d", "Identity", "y", "Identity-Info", "n", "P-Asserted-Identity",
    "X-Unknown", "x-unknown", "NewFangledHeader", "Unknown-Header", "q", "z", "", "Via ", "é",
)  # fmt: skip

ACCESSORS: tuple[str, ...] = (
    "call_id", "cseq_num", "cseq_method", "via_branch", "via_host", "via_port", "via_transport",
    "via_rport", "from_tag", "to_tag", "expires", "event", "content_length", "max_forwards",
    "contact_uri",
)  # fmt: skip

START_LINE: tuple[str, ...] = ("is_request", "method", "uri", "status", "reason", "version")

# URIs every parsed URI is compared with (SipURI.equivalent, both directions).
FIXED_URIS: tuple[str, ...] = (
    "sip:alice@example.com",
    "sip:alice@EXAMPLE.COM",
    "sip:%61lice@example.com;transport=tcp",
    "sip:alice@example.com;transport=TCP;lr",
    "sips:[2001:db8::1]:5061",
    "sip:example.com:5060",
    "sip:alice:secret@example.com?subject=hi&priority=urgent",
    "tel:+1-201-555-0123",
)

# build_response calls with good arguments (they must never raise) ...
_GOOD_RESPONSES: tuple[tuple[str, tuple[Any, ...], dict[str, Any]], ...] = (
    ("200 tag", (200, "OK"), {"to_tag": "abc"}),
    ("100 plain", (100, "Trying"), {}),
    (
        "486 received+rport+extra+body",
        (486, "Busy Here"),
        {
            "to_tag": "x-1",
            "received": "192.0.2.7",
            "rport": 5070,
            "extra_headers": [("Retry-After", "5"), ("Warning", '399 h "ü"')],
            "body": b"body\r\n",
        },
    ),
    ("180 received only", (180, "Ringing"), {"received": "192.0.2.7"}),
    ("183 rport only", (183, ""), {"rport": 1}),
    ("202 received=[::1]", (202, "Accepted"), {"received": "::1", "rport": 65535}),
    ("603 extra bytes", (603, "Decline"), {"extra_headers": b"Server: t\r\nX: \xff\r\n"}),
    ("699 empty extras", (699, "x" * 3), {"extra_headers": (), "body": b""}),
    ("200 bytearray body", (200, "OK"), {"body": bytearray(b"ab"), "extra_headers": bytearray(b"A: b\r\n")}),
    ("200 memoryview body", (200, "OK"), {"body": memoryview(b"abc"), "extra_headers": memoryview(b"")}),
    (
        "200 received+rport equal",
        (200, "OK"),
        {"received": "192.0.2.1", "rport": 5060, "to_tag": "t.~!%*_+`'-"},
    ),
)
# ... and with bad ones (LocalProtocolError is the only error allowed).
_BAD_RESPONSES: tuple[tuple[str, tuple[Any, ...], dict[str, Any]], ...] = (
    ("bad status 99", (99, "Low"), {}),
    ("bad status 700", (700, "High"), {}),
    ("bad reason CR", (200, "O\rK"), {}),
    ("bad header colon", (200, "OK"), {"extra_headers": [("X:Y", "1")]}),
    ("bad header LF", (200, "OK"), {"extra_headers": [("X", "1\n2")]}),
    ("bad header name empty", (200, "OK"), {"extra_headers": [("", "1")]}),
    ("bad header name space", (200, "OK"), {"extra_headers": [("X Y", "1")]}),
    ("bad to_tag space", (200, "OK"), {"to_tag": "a b"}),
    ("bad to_tag empty", (200, "OK"), {"to_tag": ""}),
    ("bad to_tag semicolon", (200, "OK"), {"to_tag": "a;b"}),
    ("bad received name", (200, "OK"), {"received": "example.com"}),
    ("bad received empty", (200, "OK"), {"received": ""}),
    ("bad received brackets", (200, "OK"), {"received": "[::1]"}),
    ("bad rport 0", (200, "OK"), {"rport": 0}),
    ("bad rport 65536", (200, "OK"), {"rport": 65536}),
    ("bad rport negative", (200, "OK"), {"rport": -1, "received": "192.0.2.7"}),
)

# forward_request calls (a request must never make them raise; a response
# raises ValueError) ...
FORWARD_VIA = "SIP/2.0/UDP proxy.example.net:5060;branch=z9hG4bKsnap.1"
_GOOD_FORWARDS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("plain", {"record_route": "<sip:proxy.example.net;lr>", "routes": (), "max_forwards": 69}),
    (
        "received+rport",
        {
            "record_route": None,
            "routes": ["<sip:a.example.org;lr>", "<sip:[2001:db8::2];lr>"],
            "max_forwards": 0,
            "received": "192.0.2.7",
            "rport": 5070,
        },
    ),
    ("received=::1", {"record_route": None, "routes": [], "max_forwards": 255, "received": "::1"}),
    ("rport only", {"record_route": '"é" <sip:p;lr>', "routes": ("<sip:x>",), "max_forwards": 1, "rport": 1}),
    ("received=sent-by", {"record_route": None, "routes": [], "max_forwards": 2, "received": "192.0.2.1"}),
)
# ... and with bad ones (LocalProtocolError, ValueError for a response).
_BAD_FORWARDS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("uri space", "sip:a b", {}),
    ("uri CRLF", "sip:a\r\nX: y", {}),
    ("route LF", "sip:a", {"routes": ["<sip:r>\n"]}),
    ("max_forwards 256", "sip:a", {"max_forwards": 256}),
    ("received name", "sip:a", {"received": "example.com", "rport": 1}),
)


def _forward_kw(kw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"record_route": None, "routes": (), "max_forwards": 70}
    out.update(kw)
    return out


def _plain(v: Any) -> Any:
    """A value comparable with == that keeps types and order visible."""
    if v is None or isinstance(v, str | bytes):
        return v
    if isinstance(v, bool | int | float):
        return (type(v).__name__, v)
    if isinstance(v, dict):
        return ("dict", tuple((_plain(k), _plain(x)) for k, x in v.items()))
    if isinstance(v, tuple) and hasattr(v, "_fields"):
        return (type(v).__qualname__, tuple(_plain(x) for x in v))
    if isinstance(v, tuple | list):
        return (type(v).__name__, tuple(_plain(x) for x in v))
    return ("?", type(v).__qualname__, repr(v))


def err_outcome(exc: BaseException) -> Outcome:
    return (
        "err",
        f"{type(exc).__module__}.{type(exc).__qualname__}",
        getattr(exc, "status_hint", None),
        str(exc),
    )


def attempt(fn: Callable[[], Any]) -> Outcome:
    try:
        return ("ok", _plain(fn()))
    except Exception as exc:
        return err_outcome(exc)


_PARSE_ERR = "simplefast.errors.SipParseError"
_LOCAL_ERR = "simplefast.errors.LocalProtocolError"


def _allowed(what: str) -> frozenset[str]:
    """Error types the contract allows for an item of a snapshot."""
    if what.startswith("build bad"):
        return frozenset([_LOCAL_ERR])
    if what.startswith("forward bad"):
        return frozenset([_LOCAL_ERR, "builtins.ValueError"])
    if what.startswith(("forward ", "strip_top_via")):
        return frozenset(["builtins.ValueError"])
    if what.startswith(("build ", "validate", "unsupported", "repr", "stream state")):
        return frozenset()
    return frozenset([_PARSE_ERR])


def unexpected(snap: Iterable[tuple[str, Outcome]]) -> list[tuple[str, Outcome]]:
    """Items whose error the contract does not allow (nested stream items included)."""
    bad = []
    for what, out in snap:
        if out[0] == "err" and out[1] not in _allowed(what):
            bad.append((what, out))
        elif out[0] == "ok" and what.startswith("stream feed"):
            for msg_snap in out[1]:
                if msg_snap and isinstance(msg_snap[0], tuple):  # a full snapshot, not a light summary
                    bad.extend(unexpected(msg_snap))
    return bad


def _message_items(mod: ModuleType, msg: Any, names: Sequence[str]) -> list[tuple[str, Outcome]]:
    out: list[tuple[str, Outcome]] = []
    add = out.append
    for a in START_LINE:
        add((a, attempt(lambda a=a: getattr(msg, a))))
    add(("headers()", attempt(msg.headers)))
    add(("body", attempt(lambda: msg.body)))
    add(("to_bytes()", attempt(msg.to_bytes)))
    for a in ACCESSORS:
        add((a, attempt(lambda a=a: getattr(msg, a))))
    add(("vias()", attempt(msg.vias)))
    add(("from_addr()", attempt(msg.from_addr)))
    add(("to_addr()", attempt(msg.to_addr)))
    add(("contacts()", attempt(msg.contacts)))
    for h in names:
        add((f"get {h!r}", attempt(lambda h=h: msg.get(h))))
        add((f"get_all {h!r}", attempt(lambda h=h: msg.get_all(h))))
        add((f"count {h!r}", attempt(lambda h=h: msg.count(h))))
    add(("validate", attempt(lambda: mod.validate_request(msg))))
    add(("validate supported", attempt(lambda: mod.validate_request(msg, supported=("100rel", "path")))))
    add(("unsupported", attempt(lambda: mod.unsupported_requires(msg))))
    add(("unsupported supported", attempt(lambda: mod.unsupported_requires(msg, ["100rel", "path"]))))
    for label, args, kw in _GOOD_RESPONSES:
        add((f"build {label}", attempt(lambda args=args, kw=kw: mod.build_response(msg, *args, **kw))))
    for label, args, kw in _BAD_RESPONSES:
        add((f"build {label}", attempt(lambda args=args, kw=kw: mod.build_response(msg, *args, **kw))))
    for label, kw in _GOOD_FORWARDS:
        add(
            (
                f"forward {label}",
                attempt(lambda kw=kw: mod.forward_request(msg, "sip:next@192.0.2.99", FORWARD_VIA, **kw)),
            )
        )
    for label, uri, kw in _BAD_FORWARDS:
        add(
            (
                f"forward bad {label}",
                attempt(lambda uri=uri, kw=kw: mod.forward_request(msg, uri, FORWARD_VIA, **_forward_kw(kw))),
            )
        )
    add(("strip_top_via", attempt(lambda: mod.strip_top_via(msg))))
    # The accessors cache: asking again (after everything else) must give the same.
    for a in ACCESSORS:
        add((a + " again", attempt(lambda a=a: getattr(msg, a))))
    add(("repr", attempt(lambda: repr(msg))))
    return out


def message_snapshot(mod: ModuleType, msg: Any) -> Snapshot:
    """Snapshot of an already parsed message (from parse_message or a stream)."""
    names = list(HEADER_NAMES)
    try:
        names += sorted({n for n, _ in msg.headers()} - set(names))
    except Exception:  # recorded by _message_items anyway
        pass
    return tuple(_message_items(mod, msg, names))


def snapshot(mod: ModuleType, data: bytes, **limits: int) -> Snapshot:
    """Everything observable of ``mod.parse_message(data, **limits)``."""
    try:
        msg = mod.parse_message(data, **limits)
    except Exception as exc:
        return (("parse_message", err_outcome(exc)),)
    return (("parse_message", ("ok",)), *message_snapshot(mod, msg))


def _uri_items(mod: ModuleType, text: str) -> list[tuple[str, Outcome]]:
    out = [("parse_uri", attempt(lambda: mod.parse_uri(text)))]
    if out[0][1][0] != "ok":
        return out
    uri = mod.parse_uri(text)
    for other in FIXED_URIS:
        o = mod.parse_uri(other)
        out.append((f"equivalent {other}", attempt(lambda o=o: uri.equivalent(o))))
        out.append((f"equivalent rev {other}", attempt(lambda o=o: o.equivalent(uri))))
    out.append(("equivalent self", attempt(lambda: uri.equivalent(uri))))
    return out


def snapshot_uri(mod: ModuleType, text: str) -> Snapshot:
    """parse_uri fields plus equivalent() against FIXED_URIS."""
    return tuple(_uri_items(mod, text))


def snapshot_via(mod: ModuleType, text: str) -> Snapshot:
    items = [("parse_via", attempt(lambda: mod.parse_via(text)))]
    items.append(("parse_via branch", attempt(lambda: mod.parse_via(text).branch)))
    return tuple(items)


def snapshot_name_addr(mod: ModuleType, text: str) -> Snapshot:
    items = [("parse_name_addr", attempt(lambda: mod.parse_name_addr(text)))]
    items.append(("parse_name_addr tag", attempt(lambda: mod.parse_name_addr(text).tag)))
    return tuple(items)


def snapshot_text(mod: ModuleType, text: str) -> Snapshot:
    """One string through every structured parser."""
    return snapshot_uri(mod, text) + snapshot_via(mod, text) + snapshot_name_addr(mod, text)


def light_message(msg: Any) -> Outcome:
    """A cheap summary of a framed message (for the many stream chunkings)."""
    return (msg.to_bytes(), msg.body, msg.headers(), msg.content_length, msg.method, msg.status)


def snapshot_stream(
    mod: ModuleType,
    chunks: Iterable[bytes],
    *,
    full: bool = True,
    after_error: Sequence[bytes] = (b"INVITE", b""),
    **limits: int,
) -> Snapshot:
    """Feed ``chunks`` to one ``SipStreamParser``; record, per feed, the messages
    returned (full snapshots or light summaries), then ``ping_count`` and
    ``buffered``. After the first error, every chunk in ``after_error`` is
    fed too (the parser must raise the same error again)."""
    parser = mod.SipStreamParser(**limits)
    out: list[tuple[str, Outcome]] = []
    summary = message_snapshot if full else (lambda _m, msg: light_message(msg))
    for i, chunk in enumerate(chunks):
        try:
            msgs = parser.feed(chunk)
        except Exception as exc:
            out.append((f"stream feed {i}", err_outcome(exc)))
            out.append((f"stream state {i}", attempt(lambda: (parser.ping_count, parser.buffered))))
            for j, more in enumerate(after_error):
                out.append((f"stream feed after error {j}", attempt(lambda m=more: parser.feed(m))))
                out.append(
                    (f"stream state after error {j}", attempt(lambda: (parser.ping_count, parser.buffered)))
                )
            return tuple(out)
        out.append((f"stream feed {i}", ("ok", tuple(summary(mod, m) for m in msgs))))
        out.append((f"stream state {i}", attempt(lambda: (parser.ping_count, parser.buffered))))
    return tuple(out)


def stream_outcome(trace: Snapshot) -> tuple[tuple[Any, ...], Outcome, Any]:
    """What a stream trace amounts to, whatever the chunking: (every message in
    order, the error or None, the final (ping_count, buffered) state)."""
    msgs: list[Any] = []
    error: Outcome | None = None
    state: Any = None
    for what, out in trace:
        if what.startswith("stream feed after"):
            break
        if what.startswith("stream feed"):
            if out[0] == "ok":
                msgs.extend(out[1])
            else:
                error = out
        elif what.startswith("stream state"):
            state = out
    return tuple(msgs), error, state


def first_difference(a: Sequence[tuple[str, Outcome]], b: Sequence[tuple[str, Outcome]]) -> str:
    """A readable account of where two snapshots part (for assertion messages)."""
    for (wa, oa), (wb, ob) in zip(a, b, strict=False):
        if wa != wb:
            return f"item order differs: {wa!r} vs {wb!r}"
        if oa != ob:
            return f"{wa}:\n  ref={oa!r}\n  ext={ob!r}"
    if len(a) != len(b):
        return f"lengths differ: {len(a)} vs {len(b)}; extra: {(a[len(b) :] or b[len(a) :])[:1]!r}"
    return "equal"
