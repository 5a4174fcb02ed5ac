"""Anchors measured in the same run as our codec.

* httptools (llhttp, C) parsing a 360-byte browser GET: the per-byte speed a
  compiled parser called from Python reaches. Group ``anchor httptools-360``.
* sippy (a pure-Python SIP stack) parsing message (a), with the same field
  reads as bench/test_sipmsg.py. It joins group ``parse publish-380`` so the
  table shows ref, ext and sippy for the same bytes.

Both are used the way their own code uses them: httptools with a protocol
object whose callbacks collect the URL and the headers, one parser per
request; sippy from the ``bytes`` a socket gives (its transaction manager
decodes them before building a ``SipRequest``), header bodies parsed on
demand by ``getHFBody``.
"""

from __future__ import annotations

from typing import Any

import pytest
from benchdata import group, load

HTTP_GET = (
    b"GET /users/alice/presence?view=full HTTP/1.1\r\n"
    b"Host: xcap.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"DNT: 1\r\n"
    b"Connection: keep-alive\r\n"
    b"Upgrade-Insecure-Requests: 1\r\n"
    b"\r\n"
)


class _Request:
    """httptools protocol object: keeps what a server needs from the request head."""

    __slots__ = ("url", "headers", "headers_done", "done")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.done = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_message_complete(self) -> None:
        self.done = True


def test_httptools_get(benchmark: Any) -> None:
    httptools = pytest.importorskip("httptools")

    def parse(data: bytes) -> _Request:
        req = _Request()
        httptools.HttpRequestParser(req).feed_data(data)
        return req

    assert len(HTTP_GET) == 360
    benchmark.group = "anchor httptools-360"
    benchmark.extra_info["impl"] = "httptools"
    benchmark.extra_info["bytes"] = len(HTTP_GET)
    req = benchmark(parse, HTTP_GET)
    assert req.done and req.url == b"/users/alice/presence?view=full"
    assert len(req.headers) == 8 and req.headers[0] == (b"Host", b"xcap.example.com")


def test_sippy_publish(benchmark: Any) -> None:
    pytest.importorskip("sippy")
    from sippy.SipRequest import SipRequest

    def parse_and_read(data: bytes) -> tuple[Any, ...]:
        req = SipRequest(buf=data.decode())
        num, method = req.getHFBody("cseq").getCSeq()
        body = req.getBody()
        return (
            str(req.getHFBody("call-id")),
            num,
            method,
            req.getHFBody("via").getBranch(),  # the top Via: the first 'via' header
            req.getHFBody("from").getTag(),
            req.getHFBody("to").getTag(),
            None if body is None else body.content,
        )

    data = load("publish")
    benchmark.group = group("parse", "publish")
    benchmark.extra_info["impl"] = "sippy"
    benchmark.extra_info["bytes"] = len(data)
    fields = benchmark(parse_and_read, data)
    body = data[data.index(b"\r\n\r\n") + 4 :].decode()
    assert fields == ("81ac@192.0.2.5", 1, "PUBLISH", "z9hG4bK65h", "a6c1", None, body)
