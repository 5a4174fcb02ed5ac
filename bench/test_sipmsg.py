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
