"""The hardened XML parser: hostile and malformed inputs all end in XmlRejected, nothing is fetched."""

from __future__ import annotations

import pickle
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree  # type: ignore[import-untyped]

from simplefast.errors import RemoteProtocolError
from simplefast.presence.xmlsafe import XmlRejected, _parser, parse_xml

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>
"""

QUADRATIC = (
    b'<?xml version="1.0"?>\n<!DOCTYPE q [<!ENTITY a "'
    + b"x" * 20000
    + b'">]>\n<q>'
    + b"&a;" * 2000
    + b"</q>"
)

XXE_FILE = b"""<?xml version="1.0"?>
<!DOCTYPE p [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@example.com"><note>&xxe;</note></presence>
"""

PARAM_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE p [<!ENTITY % pe SYSTEM "file:///etc/passwd"> %pe;]>
<p/>
"""


def _remote_dtd(port: int) -> list[bytes]:
    """Documents that would make a careless parser connect to 127.0.0.1:port."""
    url = f"http://127.0.0.1:{port}/evil.dtd".encode()
    return [
        b'<?xml version="1.0"?>\n<!DOCTYPE p SYSTEM "' + url + b'">\n<p>&x;</p>',
        b'<?xml version="1.0"?>\n<!DOCTYPE p [<!ENTITY x SYSTEM "' + url + b'">]>\n<p>&x;</p>',
        b'<?xml version="1.0"?>\n<!DOCTYPE p [<!ENTITY % r SYSTEM "' + url + b'"> %r;]>\n<p/>',
        b'<p xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="' + url + b'"/></p>',
        b'<p xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="u ' + url + b'"/>',
    ]


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.3)
    try:
        yield srv
    finally:
        srv.close()


def _assert_no_connection(srv: socket.socket) -> None:
    with pytest.raises(TimeoutError):
        conn, _ = srv.accept()
        conn.close()


def test_well_formed_document_parses() -> None:
    root = parse_xml(b'<?xml version="1.0" encoding="UTF-8"?>\n<a xmlns="urn:x"><b c="d">e</b></a>')
    assert root.tag == "{urn:x}a" and root[0].get("c") == "d" and root[0].text == "e"


def test_rejection_is_a_remote_protocol_error_with_status_and_warning_safe_reason() -> None:
    with pytest.raises(XmlRejected) as info:
        parse_xml(b'<a b="1" b="2"/>')
    exc = info.value
    assert isinstance(exc, RemoteProtocolError) and exc.status_hint == 400
    assert exc.reason == str(exc) and exc.reason.startswith("not well-formed XML")
    assert '"' not in exc.reason and "\n" not in exc.reason and len(exc.reason) <= 160
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is XmlRejected and again.status_hint == 400 and again.reason == exc.reason
    long = XmlRejected('x"\\\r\n' * 100)
    assert len(long.reason) == 160 and '"' not in long.reason and "\\" not in long.reason


@pytest.mark.parametrize(
    "data",
    [
        BILLION_LAUGHS,
        QUADRATIC,
        XXE_FILE,
        PARAM_ENTITY,
        b'<!DOCTYPE a SYSTEM "a.dtd"><a/>',
        b"<!DOCTYPE a><a/>",
    ],
    ids=["billion-laughs", "quadratic", "xxe-file", "parameter-entity", "external-dtd", "bare-doctype"],
)
def test_any_doctype_is_refused(data: bytes) -> None:
    with pytest.raises(XmlRejected, match="DOCTYPE"):
        parse_xml(data, max_bytes=1 << 20)


def test_doctype_in_utf16_is_refused() -> None:
    with pytest.raises(XmlRejected, match="DOCTYPE"):
        parse_xml(XXE_FILE.decode().encode("utf-16"))


@pytest.mark.parametrize("data", [BILLION_LAUGHS, QUADRATIC, XXE_FILE, PARAM_ENTITY])
def test_second_line_parser_expands_and_loads_nothing(data: bytes) -> None:
    # Past the DOCTYPE scan, libxml2 itself must not expand or fetch anything.
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError:
        return
    text = etree.tostring(root)
    assert b"root:" not in text and len(text) < 10000


def test_second_line_parser_loads_no_local_files(tmp_path: Path) -> None:
    dtd = tmp_path / "e.dtd"
    dtd.write_bytes(b'<!ENTITY x "FROM-DTD">')
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"FROM-FILE")
    docs = [
        b'<!DOCTYPE p SYSTEM "' + dtd.as_uri().encode() + b'"><p>&x;</p>',
        b'<!DOCTYPE p [<!ENTITY x SYSTEM "' + secret.as_uri().encode() + b'">]><p>&x;</p>',
        b'<!DOCTYPE p [<!ENTITY % r SYSTEM "' + dtd.as_uri().encode() + b'"> %r;]><p>&x;</p>',
    ]
    loose = etree.XMLParser(load_dtd=True, resolve_entities=True, no_network=False)
    for doc in docs:
        assert b"FROM-" in etree.tostring(etree.fromstring(doc, loose))  # the inputs do bite
        assert b"FROM-" not in etree.tostring(etree.fromstring(doc, _parser()))
        with pytest.raises(XmlRejected):
            parse_xml(doc)


def test_listener_detects_a_connection(listener: socket.socket) -> None:
    # The no-connection tests below are only as good as this detector.
    with socket.create_connection(listener.getsockname(), timeout=1):
        conn, _ = listener.accept()
        conn.close()


def test_remote_dtd_and_entities_never_connect(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    for doc in _remote_dtd(port):
        try:
            parse_xml(doc)
        except XmlRejected:
            pass
    _assert_no_connection(listener)


def test_second_line_parser_never_connects(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    for doc in _remote_dtd(port):
        try:
            etree.fromstring(doc, _parser())
        except etree.XMLSyntaxError:
            pass
    _assert_no_connection(listener)


def test_size_bound_is_413() -> None:
    with pytest.raises(XmlRejected, match="exceeds 100") as info:
        parse_xml(b"<a>" + b"x" * 200 + b"</a>", max_bytes=100)
    assert info.value.status_hint == 413


def test_depth_bound() -> None:
    ok = b"<a>" * 8 + b"</a>" * 8
    parse_xml(ok, max_depth=8)
    with pytest.raises(XmlRejected, match="deeper than 7"):
        parse_xml(ok, max_depth=7)
    with pytest.raises(XmlRejected, match="deeper than 32"):
        parse_xml(b"<a>" * 33 + b"</a>" * 33)
    with pytest.raises(XmlRejected):  # libxml2's own limit, far below Python's recursion
        parse_xml(b"<a>" * 100000 + b"</a>" * 100000, max_bytes=1 << 20, max_depth=1 << 20)


def test_element_count_bound() -> None:
    doc = b"<a>" + b"<b/>" * 99 + b"</a>"
    parse_xml(doc, max_elements=100)
    with pytest.raises(XmlRejected, match="limit 99"):
        parse_xml(doc, max_elements=99)
    parse_xml(b"<a>" + b"&lt;" * 1000 + b"</a>", max_elements=10)  # many "<" bytes, one element


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"   \n",
        b"<a>",
        b"<a></b>",
        b"<a/><b/>",
        b"text",
        b"<a>&undefined;</a>",
        b"<a>&#0;</a>",
        b"<a>\x00</a>",
        b"<a>\xff\xfe</a>",
        b"<p:a/>",
        b' <?xml version="1.0"?><a/>',
        b'<?xml version="1.0" encoding="ISO-8859-1"?><a>\xe9</a>',
        b'<?xml version="1.0" encoding="EBCDIC-US"?><a/>',
        "<a/>".encode("utf-32"),
        "<a/>".encode("utf-16-le"),  # no BOM: refused (read as UTF-8, NUL bytes)
        b"\xff\xfe<\x00a\x00\x00\xd8/\x00>\x00",  # UTF-16 with a lone surrogate
        b"<a><![CDATA[x]]]></a",
        b"<a b='<'/>",
    ],
)
def test_malformed_is_rejected(data: bytes) -> None:
    with pytest.raises(XmlRejected):
        parse_xml(data)


def test_accepted_encodings() -> None:
    assert parse_xml(b"\xef\xbb\xbf<a>\xc3\xa9</a>").text == "\u00e9"
    assert parse_xml('<?xml version="1.0" encoding="utf-16"?><a>\u00e9</a>'.encode("utf-16")).text == "\u00e9"
    assert parse_xml("\ufeff<a>\u00e9</a>".encode("utf-16-be")).text == "\u00e9"
    assert parse_xml(b"<?xml version='1.0' encoding='UTF-8' standalone='yes'?><a/>").tag == "a"


def test_comments_and_processing_instructions_are_dropped() -> None:
    root = parse_xml(b'<?xml version="1.0"?><?xml-stylesheet href="x"?><a><!-- c --><?pi x?><b/></a>')
    assert [c.tag for c in root] == ["b"] and root.getprevious() is None


def test_remove_blank_text_keeps_leaf_whitespace() -> None:
    root = parse_xml(b"<a>\n  <b> </b>\n  <c>x</c>\n</a>", remove_blank_text=True)
    assert root.text is None and root[0].text == " " and root[0].tail is None


@given(st.binary(max_size=512))
def test_random_bytes_only_raise_xml_rejected(data: bytes) -> None:
    try:
        parse_xml(data)
    except XmlRejected:
        pass


_names = st.sampled_from(["a", "b", "p:c", "tuple", "x-y"])
_pieces = st.sampled_from(
    [
        "<a>",
        "</a>",
        "<b/>",
        '<c d="1">',
        "</c>",
        "&amp;",
        "&x;",
        "<!DOCTYPE a>",
        '<!ENTITY x "y">',
        "<![CDATA[",
        "]]>",
        "<!--",
        "-->",
        "<?pi?>",
        '<?xml version="1.0"?>',
        'xmlns:p="urn:p"',
        "\u00e9",
        "\x00",
        " ",
    ]
)


@given(st.lists(st.one_of(_pieces, _names, st.text(max_size=5)), max_size=40))
def test_random_markup_only_raises_xml_rejected(parts: list[str]) -> None:
    data = "".join(parts).encode("utf-8", "surrogatepass")
    try:
        parse_xml(data, max_depth=4, max_elements=8)
    except XmlRejected:
        pass
