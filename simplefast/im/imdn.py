"""Instant Message Disposition Notification (RFC 5438), the parts a server needs. Sans-IO.

Theory of operation
-------------------
The server relays page-mode MESSAGE bodies untouched. It looks inside a
``message/cpim`` body (:mod:`simplefast.im.cpim`) for three things only:

1. Does the message ask for IMDNs? :func:`imdn_request` returns an
   :class:`ImdnRequest` when the CPIM message carries ``imdn.Message-ID`` and
   ``imdn.Disposition-Notification`` (RFC 5438 §7.1.1.3) in the
   ``urn:ietf:params:imdn`` header namespace, plus the ``From``, ``To`` and
   ``DateTime`` that any notification needs; otherwise None. It never raises
   for a body: a malformed CPIM simply gets no server-side IMDN (call
   :func:`~simplefast.im.cpim.parse_cpim` and :func:`request_from_cpim` to see
   why). Requested dispositions are lowercased; unknown ones are ignored.
2. Is it a notification itself? :func:`is_notification`: a CPIM message whose
   content is ``message/imdn+xml``, or whose ``Content-Disposition`` is
   ``notification`` (an aggregated IMDN is ``multipart/mixed``, RFC 5438
   §8.3). Notifications never get notifications: :func:`imdn_request` is None
   for them, so two servers cannot loop on each other.
3. Is it a composing indication? :func:`is_composing`:
   ``application/im-iscomposing+xml`` (RFC 3994), sent as is or wrapped in
   CPIM. Such messages are not stored for later delivery.

When the server stores a message for a recipient who is offline, and the
sender asked for ``processing`` notifications (:func:`wants_processing`),
:func:`stored_notification` builds the processing notification with status
``<stored/>`` that an intermediary may send (RFC 5438 §8.1, "Constructing
Processing Notifications"). The CPIM wrapper:

- ``From``: the server's own URI (the notifier), so the notification does not
  claim to come from the recipient; ``To``: the IM's ``From``;
- ``DateTime``: now, RFC 3339, UTC; ``NS: imdn <urn:ietf:params:imdn>``;
  ``imdn.Message-ID``: a fresh id given by the caller; no
  ``Disposition-Notification`` (a notification requests none);
- ``imdn.IMDN-Route``: one per ``imdn.IMDN-Record-Route`` of the IM, in the
  same order. An intermediary that wants to see the IMDNs adds itself as the
  *top* IMDN-Record-Route (RFC 5438 §6), so the list already runs from the
  hop nearest to us back towards the sender, the order in which the
  notification must visit them (as a SIP UAS keeps Record-Route order).
  :func:`notification_target` gives the URI the SIP MESSAGE is sent to: the
  top IMDN-Route, else the sender;
- content headers ``Content-Type: message/imdn+xml`` and
  ``Content-Disposition: notification`` (RFC 5438 §7.2.1.1).

The XML document (RFC 5438 §11, namespace ``urn:ietf:params:xml:ns:imdn``)
is built with lxml, so every value is escaped: ``message-id`` and ``datetime``
of the IM, ``recipient-uri`` (the URI of the IM's first ``To``) and
``original-recipient-uri`` (the URI of ``imdn.Original-To``, or the recipient
URI when the IM has none: the RELAX NG schema of §11.1.9 allows the two only
together, and RFC 5438's own example answers an IM without Original-To this
way), then ``<processing-notification><status><stored/>``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from lxml import etree  # type: ignore[import-untyped]

from simplefast.im.cpim import (
    CPIM_CT,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_HEADERS,
    CpimError,
    CpimMessage,
    build_cpim,
    media_type,
    parse_cpim,
)

#: Namespace of the IMDN CPIM headers (imdn.Message-ID, ...), RFC 5438 §6.
IMDN_NS = "urn:ietf:params:imdn"
#: Namespace of the IMDN XML document, RFC 5438 §11.
IMDN_XML_NS = "urn:ietf:params:xml:ns:imdn"
#: Media type of an IMDN document.
IMDN_CT = "message/imdn+xml"
#: Media type of a message composition indication, RFC 3994.
ISCOMPOSING_CT = "application/im-iscomposing+xml"

#: The dispositions an IM can ask for (RFC 5438 §5, §7.1.1.3).
DISPOSITIONS = frozenset({"positive-delivery", "negative-delivery", "processing", "display"})

# RFC 5438 Message-ID = Token, and RFC 3862's TOKENCHAR excludes "@", "/", ... Receivers treat
# the id as opaque and common generators put "@host" in it, so a new id need only be one word
# of visible ASCII (it goes into a CPIM header as is).
_MESSAGE_ID = re.compile(r"[\x21-\x7e]+")
_XML_DECL = b'<?xml version="1.0" encoding="UTF-8"?>\n'


@dataclass(frozen=True, slots=True)
class ImdnRequest:
    """What an IM asked to be told about, and where to send the answer.

    Attributes:
        message_id: ``imdn.Message-ID`` of the IM.
        datetime: ``DateTime`` of the IM, as written.
        notifications: requested dispositions, a subset of :data:`DISPOSITIONS`.
        sender: ``From`` of the IM, as written (``Alice <im:alice@example.com>``).
        recipient: the first ``To`` of the IM, as written.
        original_recipient: ``imdn.Original-To``, if present.
        record_route: the ``imdn.IMDN-Record-Route`` values, top first.
    """

    message_id: str
    datetime: str
    notifications: frozenset[str]
    sender: str
    recipient: str
    original_recipient: str | None
    record_route: tuple[str, ...]


def _dispositions(values: list[str]) -> frozenset[str]:
    """The known dispositions of Disposition-Notification values (``a, b;param``)."""
    out = set()
    for value in values:
        for item in value.split(","):
            token = item.split(";", 1)[0].strip(" \t").lower()
            if token in DISPOSITIONS:
                out.add(token)
    return frozenset(out)


def _notification_msg(msg: CpimMessage) -> bool:
    if msg.content_type == IMDN_CT:
        return True
    disposition = msg.get_content("Content-Disposition")
    return disposition is not None and media_type(disposition) == "notification"


def _parse(content_type: str | None, body: bytes, max_bytes: int, max_headers: int) -> CpimMessage | None:
    if media_type(content_type) != CPIM_CT:
        return None
    try:
        return parse_cpim(body, max_bytes=max_bytes, max_headers=max_headers)
    except CpimError:
        return None


def request_from_cpim(msg: CpimMessage) -> ImdnRequest | None:
    """The IMDN request of a parsed CPIM message, or None if it makes none.

    None for a notification (see :func:`is_notification`), and for a message
    without ``imdn.Message-ID``, ``imdn.Disposition-Notification``, ``From``,
    ``To`` or ``DateTime`` (the IMDN document needs the DateTime, RFC 5438 §11;
    the sender must add it when asking for IMDNs).
    """
    if _notification_msg(msg):
        return None
    message_id = msg.get("Message-ID", IMDN_NS)
    requested = msg.get_all("Disposition-Notification", IMDN_NS)
    sender = msg.get("From")
    recipient = msg.get("To")
    when = msg.get("DateTime")
    if not message_id or not requested or not sender or not recipient or not when:
        return None
    return ImdnRequest(
        message_id=message_id,
        datetime=when,
        notifications=_dispositions(requested),
        sender=sender,
        recipient=recipient,
        original_recipient=msg.get("Original-To", IMDN_NS) or None,
        record_route=tuple(msg.get_all("IMDN-Record-Route", IMDN_NS)),
    )


def imdn_request(
    content_type: str | None,
    body: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_headers: int = DEFAULT_MAX_HEADERS,
) -> ImdnRequest | None:
    """The IMDN request of a SIP MESSAGE, or None. Never raises for a body.

    Args:
        content_type: the SIP Content-Type (case and parameters ignored).
        body: the SIP body.
        max_bytes: CPIM bound, as for :func:`~simplefast.im.cpim.parse_cpim`.
        max_headers: CPIM bound, as for :func:`~simplefast.im.cpim.parse_cpim`.

    Returns:
        The request when the body is message/cpim asking for IMDNs (see
        :func:`request_from_cpim`); None for any other body, a malformed CPIM
        body, and a notification.
    """
    msg = _parse(content_type, body, max_bytes, max_headers)
    return None if msg is None else request_from_cpim(msg)


def is_notification(content_type: str | None, body: bytes) -> bool:
    """True for a message/cpim body carrying an IMDN (message/imdn+xml, or
    ``Content-Disposition: notification``). Never raises."""
    msg = _parse(content_type, body, DEFAULT_MAX_BYTES, DEFAULT_MAX_HEADERS)
    return msg is not None and _notification_msg(msg)


def is_composing(content_type: str | None, body: bytes) -> bool:
    """True for an isComposing indication (RFC 3994), bare or wrapped in CPIM. Never raises."""
    mt = media_type(content_type)
    if mt == ISCOMPOSING_CT:
        return True
    msg = _parse(content_type, body, DEFAULT_MAX_BYTES, DEFAULT_MAX_HEADERS)
    return msg is not None and msg.content_type == ISCOMPOSING_CT


def wants_processing(req: ImdnRequest) -> bool:
    """True when the sender asked for processing notifications (RFC 5438 §5)."""
    return "processing" in req.notifications


def uri_of(value: str) -> str:
    """The URI of a ``[Formal-name] <URI>`` header value; the value itself without ``<>``."""
    value = value.strip(" \t")
    if value.endswith(">"):
        start = value.rfind("<")
        if start >= 0:
            return value[start + 1 : -1].strip(" \t")
    return value


def notification_target(req: ImdnRequest) -> str:
    """Where the SIP MESSAGE carrying a notification goes: the URI of the top
    IMDN-Route (the first IMDN-Record-Route of the IM), else the sender's URI."""
    return uri_of(req.record_route[0] if req.record_route else req.sender)


def rfc3339(now: float) -> str:
    """``now`` (seconds since the epoch) as an RFC 3339 UTC date-time, whole seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


def _stored_document(req: ImdnRequest) -> bytes:
    """The IMDN XML document of a processing notification, status stored (RFC 5438 §11)."""
    q = "{" + IMDN_XML_NS + "}"
    root = etree.Element(q + "imdn", nsmap={None: IMDN_XML_NS})

    def sub(parent: object, tag: str, text: str | None = None) -> object:
        el = etree.SubElement(parent, q + tag)
        el.text = text
        return el

    recipient = uri_of(req.recipient)
    original = uri_of(req.original_recipient) if req.original_recipient else recipient
    sub(root, "message-id", req.message_id)
    sub(root, "datetime", req.datetime)
    sub(root, "recipient-uri", recipient)
    sub(root, "original-recipient-uri", original)
    sub(sub(sub(root, "processing-notification"), "status"), "stored")
    return _XML_DECL + bytes(etree.tostring(root, encoding="UTF-8", xml_declaration=False))


def stored_notification(req: ImdnRequest, *, notifier: str, now: float, message_id: str) -> tuple[str, bytes]:
    """The processing notification "stored" an intermediary sends the sender (RFC 5438 §8.1).

    Call it only when :func:`wants_processing` is true; send the result in a
    SIP MESSAGE to :func:`notification_target`.

    Args:
        req: the request of the stored IM.
        notifier: the server's own URI as a CPIM address, e.g. ``<sip:im.example.com>``.
        now: wall-clock time, seconds since the epoch (the notification's DateTime).
        message_id: a new unique ``imdn.Message-ID`` for the notification: a token
            (RFC 5438) preferably, at least one word of visible ASCII.

    Returns:
        ``("message/cpim", body)``.

    Raises:
        ValueError: for a ``message_id`` with blanks or non-ASCII, or a value that cannot
            go into a CPIM header or XML (control characters); values taken from
            :func:`imdn_request` always can.
    """
    if not _MESSAGE_ID.fullmatch(message_id):
        raise ValueError(f"message id {message_id!r} is not one word of visible ASCII")
    headers = [
        ("From", notifier),
        ("To", req.sender),
        ("DateTime", rfc3339(now)),
        ("imdn.Message-ID", message_id),
    ]
    headers += [("imdn.IMDN-Route", hop) for hop in req.record_route]
    body = build_cpim(
        headers,
        IMDN_CT,
        _stored_document(req),
        ns={"imdn": IMDN_NS},
        content_headers=[("Content-Disposition", "notification")],
    )
    return CPIM_CT, body
