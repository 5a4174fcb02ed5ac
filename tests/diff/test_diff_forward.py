"""The proxy's codec functions, twin against twin: ``build_response`` with the
packet source (``received``/``rport``), ``forward_request`` and
``strip_top_via`` (RFC 3261 section 16.6, 16.7, 18.2.1; RFC 3581 section 4).

Inputs: the RFC 4475 vectors and the flow messages (a fixed set of calls on
each), messages generated around the Via header (several Via lines, several
elements per line, compact ``v``, odd case and LWS, folded lines, IPv4/IPv6
and domain sent-by, rport present/empty/absent, received present/empty/absent,
a source equal to sent-by now and then), and the generic generator of
test_diff_generated. Both twins must give the same bytes or the same error.

Beyond agreement, the reference's outputs are checked for what they mean
(``check_forward``, ``check_strip``): the output parses; the stamped top Via
element has the parameters RFC 3261/3581 ask for; every other Via element,
header line and the body are what the input had. On "clean" messages (header
lines written ``Name: value``, nothing folded) the outputs are compared byte
for byte with the proxy's former Python code (``legacy_forward`` and
``legacy_strip``, kept here as the oracle); the named cases at the end list
where the codec deliberately differs from it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from snapshot import attempt, first_difference
from test_diff_generated import EXT, REF, R, chance, examples, fast, noisy, pick, shrinkable, sip_message, tok
from test_diff_vectors import ALL_VECTORS, vector_id

from simplefast.errors import SipParseError

OUR_VIA = "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKfwd.4f0c"
OUR_RR = "<sip:198.51.100.7:5060;lr>"

# sent-by hosts and packet sources drawn from overlapping pools, so that "source
# equals sent-by" (no received unless rport was asked for) happens often
HOSTS = [
    "192.0.2.1",
    "10.0.0.7",
    "a.example.com",
    "Host-1.Example.NET",
    "[2001:db8::1]",
    "[2001:DB8::1]",
    "[::1]",
    "[::ffff:192.0.2.1]",
]
SOURCES = ["192.0.2.1", "10.0.0.7", "203.0.113.9", "2001:db8::1", "2001:DB8::1", "::1", "2001:db8::99"]
PORTS = [1, 5060, 5062, 40000, 65535]


# ---------------------------------------------------------------- calls


def calls(msg_req: bool, r: R | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, function, kwargs) to run on one message: fixed, plus random ones given r."""
    out: list[tuple[str, str, dict[str, Any]]] = [
        ("build plain", "build_response", {}),
        ("build received+rport", "build_response", {"received": "192.0.2.1", "rport": 5060}),
        ("build v6", "build_response", {"received": "2001:db8::1", "rport": 1}),
        ("build rport only", "build_response", {"rport": 9}),
        ("forward plain", "forward_request", {}),
        ("forward stamped", "forward_request", {"received": "203.0.113.9", "rport": 40000}),
        ("forward v6", "forward_request", {"received": "::1"}),
        ("strip", "strip_top_via", {}),
    ]
    if r is not None:
        src: dict[str, Any] = {}
        if chance(r, 0.8):
            src["received"] = pick(r, SOURCES)
        if chance(r, 0.8):
            src["rport"] = pick(r, PORTS)
        out.append(("build random", "build_response", src))
        out.append(("forward random", "forward_request", src))
    return out


def run(mod: Any, msg: Any, fn: str, kw: dict[str, Any]) -> Any:
    if fn == "build_response":
        return mod.build_response(msg, 200, "OK", **kw)
    if fn == "forward_request":
        return mod.forward_request(
            msg,
            "sip:bob@192.0.2.60:5062",
            OUR_VIA,
            record_route=OUR_RR,
            routes=["<sip:r1;lr>"],
            max_forwards=69,
            **kw,
        )
    return mod.strip_top_via(msg)


def compare(data: bytes, r: R | None = None) -> None:
    """Both twins on one input; then the reference's outputs checked for meaning."""
    try:
        ref_msg = REF.parse_message(data)
    except SipParseError:
        return
    ext_msg = EXT.parse_message(data)
    for label, fn, kw in calls(ref_msg.is_request, r):
        a = attempt(lambda fn=fn, kw=kw: run(REF, ref_msg, fn, kw))
        b = attempt(lambda fn=fn, kw=kw: run(EXT, ext_msg, fn, kw))
        assert a == b, f"{label} {kw} on {data!r}\n{first_difference([(label, a)], [(label, b)])}"
        if a[0] == "err":  # only a request/response mismatch may raise here
            assert a[1] == "builtins.ValueError", (label, a)
            assert (fn == "strip_top_via") == ref_msg.is_request, (label, a)
            continue
        if fn == "forward_request":
            check_forward(ref_msg, a[1], kw)
        elif fn == "strip_top_via" and a[1] is not None:
            check_strip(ref_msg, a[1])
        elif fn == "build_response" and kw:
            check_stamp(ref_msg, reparse(a[1]), kw, 0)


# ---------------------------------------------------------------- meaning


def reparse(out: bytes) -> Any:
    """An output parsed back; the lines we add may take it past the default bounds."""
    return REF.parse_message(out, max_headers=1 << 20, max_header_bytes=1 << 30)


def expected_params(elem: str, received: str | None, rport: int | None) -> dict[str, str | None] | None:
    """RFC 3261 18.2.1 / RFC 3581 4 on a parsed element: its parameters after stamping
    (a received already there takes the source address in place); None when it does not parse."""
    try:
        via = REF.parse_via(elem)
    except SipParseError:
        return None
    params = dict(via.params)
    asked = "rport" in params and params["rport"] is None
    host = via.host[1:-1] if via.host.startswith("[") else via.host
    if asked and rport is not None:
        params["rport"] = str(rport)
    if received is not None and (asked or host.lower() != received.lower()):
        params["received"] = received
    return params


def check_stamp(msg: Any, out: Any, kw: dict[str, Any], skip: int) -> None:
    """The first Via element of ``out`` (after ``skip`` of ours) is msg's, stamped; the rest is msg's."""
    before = msg.get_all("Via")
    after = out.get_all("Via")[skip:]
    assert len(after) == len(before)
    if not before:
        return
    assert after[1:] == before[1:]  # untouched, octet for octet (folding resolved the same way)
    want = expected_params(before[0], kw.get("received"), kw.get("rport"))
    if want is None:
        assert after[0] == before[0]
    elif len(want) > 32:  # received added to an element at the parameter bound: see the named case
        assert after[0].endswith(";received=" + kw["received"])
    else:
        got = REF.parse_via(after[0])
        old = REF.parse_via(before[0])
        assert (got.protocol, got.transport, got.host, got.port) == (
            old.protocol,
            old.transport,
            old.host,
            old.port,
        )
        assert got.params == want and list(got.params) == list(want)


_NOT_FORWARDED = ("route", "max-forwards", "content-length", "l")


def check_forward(msg: Any, out: bytes, kw: dict[str, Any]) -> None:
    fwd = reparse(out)
    assert fwd.method == msg.method and fwd.uri == "sip:bob@192.0.2.60:5062" and fwd.version == "SIP/2.0"
    assert fwd.max_forwards == 69 and fwd.get_all("Route") == ["<sip:r1;lr>"]
    assert fwd.body == msg.body and fwd.content_length == len(msg.body)
    ours = fwd.headers()[:4]
    assert ours == [
        ("Via", OUR_VIA),
        ("Record-Route", OUR_RR),
        ("Route", "<sip:r1;lr>"),
        ("Max-Forwards", "69"),
    ]
    theirs = [(n, v) for n, v in msg.headers() if n.lower() not in _NOT_FORWARDED]
    copied = fwd.headers()[4:-1]
    assert [n for n, _ in copied] == [n for n, _ in theirs]
    top = next((i for i, (n, _) in enumerate(theirs) if n.lower() in ("via", "v")), None)
    assert [v for i, (_, v) in enumerate(copied) if i != top] == [
        v for i, (_, v) in enumerate(theirs) if i != top
    ]
    if top is not None:
        check_stamp(msg, fwd, kw, 1)


def check_strip(msg: Any, out: bytes) -> None:
    resp = reparse(out)
    assert (resp.status, resp.reason, resp.version) == (msg.status, msg.reason, "SIP/2.0")
    assert resp.body == msg.body and resp.content_length == len(msg.body)
    assert [v for v in resp.get_all("Via") if v] == [v for v in msg.get_all("Via")[1:] if v]
    others = [(n, v) for n, v in msg.headers() if n.lower() not in ("via", "v", "content-length", "l")]
    assert [(n, v) for n, v in resp.headers()[:-1] if n.lower() not in ("via", "v")] == others


# ---------------------------------------------------------------- vectors


@pytest.mark.parametrize("path", ALL_VECTORS, ids=vector_id)
def test_vectors(path: Path) -> None:
    compare(path.read_bytes())


# ---------------------------------------------------------------- generated around Via


def lws(r: R) -> str:
    return pick(r, ["", "", "", " ", "  ", "\t"])


def via_element(r: R) -> str:
    proto = pick(r, ["SIP", "SIP", "sip"]) + lws(r) + "/" + lws(r) + "2.0" + lws(r) + "/" + lws(r)
    transport = pick(r, ["UDP", "TCP", "udp", "TLS", "WS"])
    sent_by = pick(r, HOSTS)
    if chance(r, 0.5):
        sent_by += lws(r) + ":" + lws(r) + str(pick(r, PORTS))
    names: list[str] = []
    params = []
    for _ in range(r.randint(0, 4)):
        k = r.random()
        if k < 0.3:
            name, value = pick(r, ["rport", "RPort", "rport"]), pick(r, [None, None, str(pick(r, PORTS))])
        elif k < 0.5:
            name, value = pick(r, ["received", "Received"]), pick(r, [pick(r, SOURCES), None, "[::2]"])
        elif k < 0.75:
            name, value = pick(r, ["branch", "Branch"]), "z9hG4bK" + tok(r)
        else:
            name, value = (
                pick(r, ["maddr", "ttl", "x-q", "comp"]),
                pick(r, ["1", "sigcomp", '"a, b;c"', "[::3]"]),
            )
        if name.lower() in names and not chance(r, 0.05):  # a repeated parameter: the element does not parse
            continue
        names.append(name.lower())
        p = ";" + lws(r) + name
        if value is not None:
            p += lws(r) + "=" + lws(r) + value
        params.append(lws(r) + p)
    return proto + transport + pick(r, [" ", " ", "  ", "\t"]) + sent_by + "".join(params) + lws(r)


def via_line(r: R) -> str:
    elems = [via_element(r) for _ in range(pick(r, [1, 1, 2, 3]))]
    return pick(r, [",", ", ", " ,\t", " , "]).join(elems)


def fold_lws(r: R, value: str, eol: str) -> str:
    """Fold at some white space or next to some ';' and ',' (all LWS places)."""
    out = ""
    for i, c in enumerate(value):
        if i and c in " ;," and chance(r, 0.15):
            out += eol + pick(r, [" ", "\t", "  "])
        out += c
    return out


def via_message(r: R) -> bytes:
    eol = pick(r, ["\r\n", "\r\n", "\n"])
    is_request = chance(r, 0.6)
    lines = [
        f"{pick(r, ['INVITE', 'REGISTER', 'BYE', 'MESSAGE'])} sip:bob@example.com SIP/2.0"
        if is_request
        else pick(r, ["SIP/2.0", "sip/2.0"])
        + " "
        + pick(r, ["100 Trying", "180 Ringing", "200 OK", "486 Busy", "200"])
    ]
    hs: list[tuple[str, str]] = [
        (pick(r, ["Via", "v", "VIA", "V", "via"]), via_line(r)) for _ in range(pick(r, [1, 1, 2, 3]))
    ]
    hs += [
        ("From", "<sip:alice@example.com>;tag=1"),
        ("To", "<sip:bob@example.com>" + pick(r, ["", ";tag=2"])),
        ("Call-ID", "c" + tok(r)),
        ("CSeq", "1 INVITE"),
    ]
    if chance(r, 0.4):
        hs.append(("Route", "<sip:p1.example.com;lr>, <sip:p2;lr>"))
    if chance(r, 0.4):
        hs.append((pick(r, ["Max-Forwards", "max-forwards"]), "70"))
    if chance(r, 0.3):
        hs.append(("Record-Route", "<sip:rr.example.com;lr>"))
    body = pick(r, [b"", b"", b"v=0\r\n", bytes(range(250, 256))])
    cl = pick(r, ["right", "compact", "missing"])
    if cl != "missing":
        hs.append(("Content-Length" if cl == "right" else "l", str(len(body))))
    if chance(r, 0.3):  # the Via lines somewhere else than first
        r.shuffle(hs)
    for name, value in hs:
        if name.lower() in ("via", "v") and chance(r, 0.3):
            value = fold_lws(r, value, eol)
        lines.append(f"{name}{lws(r)}:{lws(r)}{value}")
    return (eol.join(lines) + eol + eol).encode("utf-8", "surrogateescape") + body


def check_via_message(r: R) -> None:
    compare(via_message(r), r)


@examples(300)
@given(shrinkable(check_via_message))
def test_generated_via_shrinkable(_: None) -> None:
    pass


@examples(4000)
@given(fast(check_via_message))
def test_generated_via_fast(_: None) -> None:
    pass


def check_any_message(r: R) -> None:
    compare(noisy(sip_message)(r), r)


@examples(800)
@given(fast(check_any_message))
def test_generated_any_message(_: None) -> None:
    pass


# ---------------------------------------------------------------- the proxy's former code as oracle


def legacy_forward(
    msg: Any, uri: str, via: str, rr: str | None, routes: list[str], mf: int, peer: Any
) -> bytes:
    """What simplefast/proxy/proxy.py built in Python (_forward_bytes + _stamp_via + _first_element)."""
    lines = [f"{msg.method} {uri} SIP/2.0", f"Via: {via}"]
    if rr is not None:
        lines.append(f"Record-Route: {rr}")
    lines += [f"Route: {x}" for x in routes]
    lines.append(f"Max-Forwards: {mf}")
    stamped = False
    for name, value in msg.headers():
        low = name.lower()
        if low in ("route", "max-forwards", "content-length", "l"):
            continue
        if not stamped and low in ("via", "v"):
            stamped = True
            first = msg.get_all("Via")[0]
            at = value.find(first)
            tail = value[at + len(first) :]
            value = _legacy_stamp(first, peer) + tail
        lines.append(f"{name}: {value}")
    body: bytes = msg.body
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


def _legacy_stamp(elem: str, peer: Any) -> str:
    if peer is None:
        return elem
    try:
        via = REF.parse_via(elem)
    except SipParseError:
        return elem
    host = via.host[1:-1] if via.host.startswith("[") else via.host
    asked = "rport" in via.params and via.params["rport"] is None
    if asked:
        elem = re.sub(r";\s*rport(?=\s*(;|$))", f";rport={peer[1]}", elem, count=1, flags=re.IGNORECASE)
    if (asked or host.lower() != str(peer[0]).lower()) and "received" not in via.params:
        elem += f";received={peer[0]}"
    return elem


def legacy_strip(msg: Any) -> bytes | None:
    """What proxy.py's _without_top_via built."""
    lines = [f"SIP/2.0 {msg.status} {msg.reason}"]
    removed = False
    for name, value in msg.headers():
        if not removed and name.lower() in ("via", "v"):
            removed = True
            first = msg.get_all("Via")[0]
            rest = value[value.find(first) + len(first) :].lstrip(" \t").removeprefix(",").strip()
            if rest:
                lines.append(f"{name}: {rest}")
            continue
        if name.lower() in ("content-length", "l"):
            continue
        lines.append(f"{name}: {value}")
    if not removed:
        return None
    body: bytes = msg.body
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


def clean_element(r: R) -> str:
    params = []
    if chance(r, 0.6):
        params.append(pick(r, ["rport", f"rport={pick(r, PORTS)}"]))
    if chance(r, 0.8):
        params.append("branch=z9hG4bK" + tok(r))
    if chance(r, 0.2):
        params.append("ttl=1")
    r.shuffle(params)
    host = pick(r, HOSTS) + (f":{pick(r, PORTS)}" if chance(r, 0.5) else "")
    return f"SIP/2.0/{pick(r, ['UDP', 'TCP'])} {host}" + "".join(";" + p for p in params)


def clean_message(r: R) -> bytes:
    request = chance(r, 0.6)
    lines = [
        "INVITE sip:bob@example.com SIP/2.0" if request else f"SIP/2.0 {pick(r, ['180 Ringing', '200 OK'])}"
    ]
    hs = [
        (pick(r, ["Via", "v"]), ", ".join(clean_element(r) for _ in range(pick(r, [1, 2, 3]))))
        for _ in range(pick(r, [1, 2]))
    ]
    hs += [
        ("From", "<sip:a@example.com>;tag=1"),
        ("To", "<sip:b@example.com>"),
        ("Call-ID", "x" + tok(r)),
        ("CSeq", "1 INVITE"),
    ]
    if chance(r, 0.5):
        hs.append(("Route", "<sip:p1;lr>"))
    if chance(r, 0.5):
        hs.append(("Max-Forwards", "70"))
    body = pick(r, [b"", b"v=0\r\n"])
    hs.append((pick(r, ["Content-Length", "l"]), str(len(body))))
    if chance(r, 0.3):
        r.shuffle(hs)
    return ("\r\n".join(lines + [f"{n}: {v}" for n, v in hs]) + "\r\n\r\n").encode() + body


def check_clean(r: R) -> None:
    data = clean_message(r)
    msg = REF.parse_message(data)
    peer = (pick(r, SOURCES), pick(r, PORTS)) if chance(r, 0.8) else None
    src = {} if peer is None else {"received": peer[0], "rport": peer[1]}
    for mod in (REF, EXT):
        m = mod.parse_message(data)
        if msg.is_request:
            got = mod.forward_request(
                m, "sip:n@192.0.2.9", OUR_VIA, record_route=OUR_RR, routes=["<sip:r>"], max_forwards=5, **src
            )
            assert got == legacy_forward(msg, "sip:n@192.0.2.9", OUR_VIA, OUR_RR, ["<sip:r>"], 5, peer), data
        else:
            assert mod.strip_top_via(m) == legacy_strip(msg), data


@examples(1000)
@given(fast(check_clean))
def test_same_bytes_as_the_former_proxy_code_on_clean_messages(_: None) -> None:
    pass


# ---------------------------------------------------------------- named cases

SIP_REQ = (
    "OPTIONS sip:b@example.com SIP/2.0\r\n{via}"
    "From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n"
)


def _both(data: bytes, fn: str, kw: dict[str, Any]) -> bytes:
    outs = [run(mod, mod.parse_message(data), fn, kw) for mod in (REF, EXT)]
    assert outs[0] == outs[1]
    out: bytes = outs[0]
    return out


@pytest.mark.parametrize(
    ("name", "via", "kw", "want", "legacy"),
    [
        # The former proxy code kept a received= the client wrote (a stale or
        # forged address); RFC 3261 18.2.1 says received carries the packet's
        # source, and an element holds a parameter once: the codec replaces
        # the value in place (as build_response's dict rewrite did before).
        (
            "received already there",
            "Via: SIP/2.0/UDP 10.0.0.1;received=10.9.9.9;rport\r\n",
            {"received": "192.0.2.1", "rport": 7},
            b"Via: SIP/2.0/UDP 10.0.0.1;received=192.0.2.1;rport=7",
            b"Via: SIP/2.0/UDP 10.0.0.1;received=10.9.9.9;rport=7",
        ),
        # The former regex rewrote "; rport" as ";rport=N", dropping the LWS;
        # the codec keeps every octet it does not add.
        (
            "LWS before rport",
            "Via: SIP/2.0/UDP 10.0.0.1 ; rport\r\n",
            {"received": "192.0.2.1", "rport": 7},
            b"Via: SIP/2.0/UDP 10.0.0.1 ; rport=7;received=192.0.2.1",
            b"Via: SIP/2.0/UDP 10.0.0.1 ;rport=7;received=192.0.2.1",
        ),
        # The former code wrote every header as "Name: value", unfolded; the
        # codec copies header octets as received (folding kept).
        (
            "folded top Via",
            "v :SIP/2.0/UDP\r\n 10.0.0.1;rport,\r\n SIP/2.0/TCP b\r\n",
            {"received": "192.0.2.1", "rport": 7},
            b"v :SIP/2.0/UDP\r\n 10.0.0.1;rport=7;received=192.0.2.1,\r\n SIP/2.0/TCP b",
            b"v: SIP/2.0/UDP 10.0.0.1;rport=7;received=192.0.2.1, SIP/2.0/TCP b",
        ),
        # An element repeated on its line: the former code found the first
        # element's text with str.find (fine here); the codec works on offsets.
        (
            "same element twice",
            "Via: SIP/2.0/UDP h;rport, SIP/2.0/UDP h;rport\r\n",
            {"received": "192.0.2.1", "rport": 7},
            b"Via: SIP/2.0/UDP h;rport=7;received=192.0.2.1, SIP/2.0/UDP h;rport",
            b"Via: SIP/2.0/UDP h;rport=7;received=192.0.2.1, SIP/2.0/UDP h;rport",
        ),
    ],
)
def test_named_forward_cases(name: str, via: str, kw: dict[str, Any], want: bytes, legacy: bytes) -> None:
    data = SIP_REQ.format(via=via).encode()
    out = _both(data, "forward_request", kw)
    assert out.split(b"\r\n", 5)[5].startswith(want + b"\r\n"), (name, out)
    msg = REF.parse_message(data)
    old = legacy_forward(
        msg, "sip:bob@192.0.2.60:5062", OUR_VIA, OUR_RR, ["<sip:r1;lr>"], 69, (kw["received"], kw["rport"])
    )
    assert old.split(b"\r\n", 5)[5].startswith(legacy + b"\r\n"), (name, old)


def test_named_build_response_keeps_the_top_via_as_written() -> None:
    # Before: both twins rebuilt the stamped top Via line from its parsed parts
    # (parameter names lower-cased, LWS dropped, transport upper-cased,
    # elements re-joined with ", ", folding removed). Now only the added octets differ.
    data = SIP_REQ.format(
        via="Via: sip / 2.0 / udp  H.example.com ; RPort ; Branch=z9hG4bK1 ,SIP/2.0/TCP b\r\n"
    ).encode()
    out = _both(data, "build_response", {"received": "192.0.2.1", "rport": 5})
    assert out.split(b"\r\n")[1] == (
        b"Via: sip / 2.0 / udp  H.example.com ; RPort=5 ; Branch=z9hG4bK1;received=192.0.2.1 ,SIP/2.0/TCP b"
    )


def test_named_strip_top_via_folded_and_compact() -> None:
    data = b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP me;branch=z9hG4bK1,\r\n  SIP/2.0/UDP them\r\nl: 0\r\n\r\n"
    assert (
        _both(data, "strip_top_via", {})
        == b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP them\r\nContent-Length: 0\r\n\r\n"
    )


def test_named_received_added_at_the_parameter_bound() -> None:
    # RFC 3261 18.2.1: received MUST be added. An element already holding 32
    # parameters (the parser's bound) gets it as a 33rd, and parse_via then
    # refuses the stamped element: the stamp is what the RFC asks for; the bound
    # is ours (both twins do the same).
    params = "".join(f";p{i}" for i in range(31))
    data = SIP_REQ.format(via=f"Via: SIP/2.0/UDP h;rport{params}\r\n").encode()
    out = _both(data, "build_response", {"received": "192.0.2.1", "rport": 5})
    assert out.split(b"\r\n")[1] == f"Via: SIP/2.0/UDP h;rport=5{params};received=192.0.2.1".encode()
    with pytest.raises(SipParseError, match="more than 32 parameters"):
        REF.parse_message(out).vias()
