"""The notifier's stateless fast path for SUBSCRIBE (RFC 6665, RFC 3261 8.2.7).

This stub is the contract both twins implement: ``simplefast._ext.fastsub``
(Cython) and ``simplefast._ref.fastsub`` (pure Python, the specification:
its docstring has the theory of operation and the exact cases it takes).
They agree on every answer, notifier call and counter. Each twin uses the
codec and the ``to_tag`` of its own kind.
"""

from typing import Any, final

@final
class FastSubscriber:
    """Answers the common SUBSCRIBE over UDP (a presence subscription made,
    refreshed or ended) in one call, without a transaction; declines
    everything else untouched.

    Args:
        config: the SIP core's settings, read at every call (``domains``,
            ``local_hosts``).
        agent: the presence agent: its ``notifier`` (``packages``,
            ``tag_prefix``, ``config``, ``policy``, ``by_key``, ``again``,
            ``make``, ``renew``) keeps the subscriptions as the general path
            does.
        server: the Server header value (ASCII).
        supported: option tags for ``validate_request``.
        tag_key: secret bytes of the subscriptions' tags (``fastreg.to_tag``).
        allow_events: the Allow-Events header value (ASCII); settable.

    Attributes:
        room: None, or ``room(user, host, local)`` naming the chat room of a
            Request-URI (None: no room); a request to a room is declined.
        only_again: answer only copies of requests taken before (the
            worker drains or sheds load), decline the rest.
        answered: SUBSCRIBEs answered here.
        declined: SUBSCRIBEs parsed here and left to the general path.
        notify: after a call that answered, the subscription whose NOTIFY the
            caller sends next (``Notifier.notify_now``), else None.
    """

    room: Any
    only_again: bool
    answered: int
    declined: int
    notify: Any
    allow_events: str
    @property
    def config(self) -> Any: ...
    @property
    def agent(self) -> Any: ...
    @property
    def notifier(self) -> Any: ...
    @property
    def server(self) -> str: ...
    @property
    def supported(self) -> tuple[str, ...]: ...
    @property
    def tag_key(self) -> bytes: ...
    def __init__(
        self,
        config: Any,
        agent: Any,
        *,
        server: str,
        supported: tuple[str, ...],
        tag_key: bytes,
        allow_events: str,
    ) -> None: ...
    def subscribe(self, data: bytes, peer: tuple[Any, ...], now: float) -> Any:
        """Take one datagram.

        Returns:
            ``bytes``: the 200 to send to ``peer`` (then the NOTIFY of
            ``notify``, when set); a ``SipMessage``: a SUBSCRIBE parsed here
            and declined, nothing changed (the caller goes on with it); None:
            not a SUBSCRIBE, or not parseable (the caller parses it as usual
            and answers the error).
        """
