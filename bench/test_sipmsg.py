"""The SIP codec, reference beside compiled, on the messages of bench/data.

Every benchmark runs twice through the ``impl`` fixture (ids ``ref`` and
``ext``) and lands in one group per input, so the two twins sit side by side.
``extra_info["impl"]`` names the implementation and ``extra_info["bytes"]`` the
input size, which bench/report.py turns into ns/byte and ratios.

Nothing here asserts on time: the checks only make sure every benchmark
measures what it claims (the message parses, the fields are what they are).
"""

from __future__ import annotations

from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from benchdata import MESSAGES, group, load

# What a server reads from every message before it can route it: the
# transaction and dialog keys and the body.
Fields = tuple[str | None, int | None, str | None, str | None, str | None, str | None, bytes]


def parse_and_read(sipmsg: ModuleType, data: bytes) -> Fields:
    """Parse one datagram and read Call-ID, CSeq, top Via branch, From/To tags and the body."""
    msg = sipmsg.parse_message(data)
    return (
        msg.call_id,
        msg.cseq_num,
        msg.cseq_method,
        msg.via_branch,
        msg.from_tag,
        msg.to_tag,
        msg.body,
    )


def parse_and_validate(sipmsg: ModuleType, data: bytes) -> tuple[int, str] | None:
    """Parse one datagram and run the RFC 3261 section 8.2 checks on it."""
    return sipmsg.validate_request(sipmsg.parse_message(data))


def feed_chunks(sipmsg: ModuleType, chunks: tuple[bytes, ...]) -> list[Any]:
    """Frame a TCP byte stream that arrives in several reads, with a fresh parser."""
    parser = sipmsg.SipStreamParser()
    out: list[Any] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out


def _tag(benchmark: Any, impl: SimpleNamespace, kind: str, name: str, size: int | None) -> None:
    benchmark.group = group(kind, name)
    benchmark.extra_info["impl"] = impl.name
    if size is not None:
        benchmark.extra_info["bytes"] = size


@pytest.mark.parametrize("name", list(MESSAGES))
def test_parse(benchmark: Any, impl: SimpleNamespace, name: str) -> None:
    data = load(name)
    _tag(benchmark, impl, "parse", name, len(data))
    fields = parse_and_read(impl.sipmsg, data)
    assert fields[0] and fields[1] is not None and fields[2] and fields[3]
    assert fields[4] is not None
    result = benchmark(parse_and_read, impl.sipmsg, data)
    assert result == fields


def test_validate_publish(benchmark: Any, impl: SimpleNamespace) -> None:
    data = load("publish")
    _tag(benchmark, impl, "validate", "publish", len(data))
    assert parse_and_validate(impl.sipmsg, data) is None
    assert benchmark(parse_and_validate, impl.sipmsg, data) is None


def test_build_response_publish(benchmark: Any, impl: SimpleNamespace) -> None:
    data = load("publish")
    _tag(benchmark, impl, "build_response", "publish", None)
    msg = impl.sipmsg.parse_message(data)  # parsed once, outside the timed function
    resp = benchmark(impl.sipmsg.build_response, msg, 200, "OK", to_tag="9fxced76sl")
    benchmark.extra_info["response_bytes"] = len(resp)
    assert resp.startswith(b"SIP/2.0 200 OK\r\n")
    assert impl.sipmsg.parse_message(resp).to_tag == "9fxced76sl"


STREAM = ("publish", "register", "notify_pidf")


def test_stream_feed(benchmark: Any, impl: SimpleNamespace) -> None:
    data = b"".join(load(name) for name in STREAM)
    # three reads: the first ends inside REGISTER's Contact line, the second inside NOTIFY's body
    cut1, cut2 = len(data) // 3, 2 * len(data) // 3
    chunks = (data[:cut1], data[cut1:cut2], data[cut2:])
    benchmark.group = f"stream {'+'.join(STREAM)}-{len(data)}"
    benchmark.extra_info["impl"] = impl.name
    benchmark.extra_info["bytes"] = len(data)
    assert [m.cseq_method for m in feed_chunks(impl.sipmsg, chunks)] == ["PUBLISH", "REGISTER", "NOTIFY"]
    assert len(benchmark(feed_chunks, impl.sipmsg, chunks)) == 3


# The proxy's hot path (RFC 3261 section 16): the response to a request that came
# through NAT (rport asked, source differs from sent-by), the forwarded copy of a
# request, and a response less our Via on its way back.
SOURCE = {"received": "203.0.113.9", "rport": 41122}


@pytest.mark.parametrize("name", ["register", "publish"])
def test_build_response_stamped(benchmark: Any, impl: SimpleNamespace, name: str) -> None:
    data = load(name)
    _tag(benchmark, impl, "build_response stamped", name, None)
    msg = impl.sipmsg.parse_message(data)
    resp = benchmark(impl.sipmsg.build_response, msg, 200, "OK", to_tag="9fxced76sl", **SOURCE)
    top = impl.sipmsg.parse_message(resp).vias()[0]
    assert top.params["rport"] == "41122" and top.params["received"] == "203.0.113.9"


def forward(sipmsg: ModuleType, msg: Any) -> bytes:
    """The forwarded copy a record-routing proxy sends on (one Route left)."""
    out: bytes = sipmsg.forward_request(
        msg,
        "sip:alice@192.0.2.60:5062;transport=tcp",
        "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK8e2a3c7f1d.4f0c2a1b9e3d",
        record_route="<sip:198.51.100.7:5060;lr>",
        routes=["<sip:edge.example.com;lr>"],
        max_forwards=69,
        **SOURCE,
    )
    return out


@pytest.mark.parametrize("name", ["register", "publish", "wsinv"])
def test_forward_request(benchmark: Any, impl: SimpleNamespace, name: str) -> None:
    data = load(name)
    _tag(benchmark, impl, "forward_request", name, len(data))
    msg = impl.sipmsg.parse_message(data)
    out = benchmark(forward, impl.sipmsg, msg)
    fwd = impl.sipmsg.parse_message(out)
    assert fwd.via_branch == "z9hG4bK8e2a3c7f1d.4f0c2a1b9e3d" and fwd.max_forwards == 69
    assert fwd.body == msg.body


def test_strip_top_via(benchmark: Any, impl: SimpleNamespace) -> None:
    data = load("ok200")
    _tag(benchmark, impl, "strip_top_via", "ok200", len(data))
    msg = impl.sipmsg.parse_message(data)
    out = benchmark(impl.sipmsg.strip_top_via, msg)
    assert out is not None and impl.sipmsg.parse_message(out).via_host == "192.0.2.60"


# The registrar's path (simplefast/proxy/registrar.py) on the REGISTER SIPp sends
# (uac registration scenario, one contact), beside the messages of bench/data: the
# RFC 3261 section 8.2 checks, the structured views it asks for and the typed
# accessors it reads. The structured views are not cached on the message, so
# they are timed on a message parsed once; the top-Via accessors are cached, so
# they are timed on a fresh parse (subtract the "parse-only" group).
SIPP_REGISTER = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-1-0;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:u1@example.com>;tag=123SIPpTag001\r\n"
    b"To: <sip:u1@example.com>\r\n"
    b"Call-ID: 1-123@127.0.0.1\r\n"
    b"CSeq: 1 REGISTER\r\n"
    b"Contact: <sip:u1@127.0.0.1:5061>;expires=3600\r\n"
    b"User-Agent: SIPp\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)
REG_MESSAGES = ("sipp_register", "register", "publish")
SUPPORTED = ("path", "outbound")


def _reg_data(name: str) -> bytes:
    return SIPP_REGISTER if name == "sipp_register" else load(name)


def _reg_tag(benchmark: Any, impl: SimpleNamespace, kind: str, name: str) -> bytes:
    data = _reg_data(name)
    benchmark.group = f"{kind} {name}-{len(data)}"
    benchmark.extra_info["impl"] = impl.name
    benchmark.extra_info["bytes"] = len(data)
    return data


def parse_validate_supported(sipmsg: ModuleType, data: bytes) -> tuple[int, str] | None:
    """Parse one datagram, then validate_request with the options the server supports."""
    return sipmsg.validate_request(sipmsg.parse_message(data), supported=SUPPORTED)


def parse_via_fields(
    sipmsg: ModuleType, data: bytes
) -> tuple[str | None, str | None, int | None, int | None]:
    """Parse one datagram, then read the top Via's branch, host, port and rport."""
    msg = sipmsg.parse_message(data)
    return (msg.via_branch, msg.via_host, msg.via_port, msg.via_rport)


def scalars(msg: Any) -> tuple[int | None, str | None, int | None, int | None]:
    """Expires, Call-ID, CSeq number and rport of a parsed message."""
    return (msg.expires, msg.call_id, msg.cseq_num, msg.via_rport)


def register_path(sipmsg: ModuleType, data: bytes) -> Any:
    """Everything the registrar asks of one REGISTER, parse included."""
    msg = sipmsg.parse_message(data)
    if sipmsg.validate_request(msg, supported=SUPPORTED) is not None:
        return None
    return (
        sipmsg.parse_uri(msg.uri),
        msg.to_addr(),
        msg.contacts(),
        msg.via_branch,
        msg.via_host,
        msg.via_port,
        msg.via_rport,
        msg.expires,
        msg.call_id,
        msg.cseq_num,
    )


@pytest.mark.parametrize("name", REG_MESSAGES)
def test_reg_parse_only(benchmark: Any, impl: SimpleNamespace, name: str) -> None:
    data = _reg_tag(benchmark, impl, "parse-only", name)
    assert benchmark(impl.sipmsg.parse_message, data).cseq_num is not None


@pytest.mark.parametrize("name", REG_MESSAGES)
def test_reg_validate(benchmark: Any, impl: SimpleNamespace, name: str) -> None:
    data = _reg_tag(benchmark, impl, "validate+parse", name)
    assert parse_validate_supported(impl.sipmsg, data) is None
    assert benchmark(parse_validate_supported, impl.sipmsg, data) is None


@pytest.mark.parametrize(
    "uri", ["sip:example.com", "sip:u1@127.0.0.1:5061", "sip:alice@192.0.2.50:52720;transport=udp;ob"]
)
def test_reg_parse_uri(benchmark: Any, impl: SimpleNamespace, uri: str) -> None:
    benchmark.group = f"parse_uri {uri}"
    benchmark.extra_info["impl"] = impl.name
    benchmark.extra_info["bytes"] = len(uri)
    assert benchmark(impl.sipmsg.parse_uri, uri).scheme == "sip"


@pytest.mark.parametrize("name", REG_MESSAGES)
def test_reg_to_addr(benchmark: Any, impl: SimpleNamespace, name: str) -> None:
    msg = impl.sipmsg.parse_message(_reg_tag(benchmark, impl, "to_addr", name))
    assert benchmark(msg.to_addr).uri.startswith("sip:")


@pytest.mark.parametrize("name", REG_MESSAGES)
def test_reg_from_addr(benchmark: Any, impl: SimpleNamespace, name: str) -> None:
    msg = impl.sipmsg.parse_message(_reg_tag(benchmark, impl, "from_addr", name))
    assert benchmark(msg.from_addr).tag is not None


@pytest.mark.parametrize("name", ["sipp_register", "register"])
def test_reg_contacts(benchmark: Any, impl: SimpleNamespace, name: str) -> None:
    msg = impl.sipmsg.parse_message(_reg_tag(benchmark, impl, "contacts", name))
    assert len(benchmark(msg.contacts)) == 1


@pytest.mark.parametrize("name", REG_MESSAGES)
def test_reg_vias(benchmark: Any, impl: SimpleNamespace, name: str) -> None:
    msg = impl.sipmsg.parse_message(_reg_tag(benchmark, impl, "vias", name))
    assert len(benchmark(msg.vias)) == 1


@pytest.mark.parametrize("name", REG_MESSAGES)
def test_reg_via_fields(benchmark: Any, impl: SimpleNamespace, name: str) -> None:
    data = _reg_tag(benchmark, impl, "via+parse", name)
    fields = parse_via_fields(impl.sipmsg, data)
    assert fields[0] and fields[1] and fields[3] == 0
    assert benchmark(parse_via_fields, impl.sipmsg, data) == fields


@pytest.mark.parametrize("name", REG_MESSAGES)
def test_reg_scalars(benchmark: Any, impl: SimpleNamespace, name: str) -> None:
    msg = impl.sipmsg.parse_message(_reg_tag(benchmark, impl, "scalars", name))
    assert benchmark(scalars, msg)[1]


@pytest.mark.parametrize("name", ["sipp_register", "register"])
def test_reg_register_path(benchmark: Any, impl: SimpleNamespace, name: str) -> None:
    data = _reg_tag(benchmark, impl, "registrar path", name)
    expected = register_path(impl.sipmsg, data)
    assert expected is not None
    assert benchmark(register_path, impl.sipmsg, data) == expected
