"""The state agent's stateless fast path for PUBLISH (RFC 3903 section 6, RFC 3261 8.2.7).

This stub is the contract both twins implement: ``simplefast._ext.fastpub``
(Cython) and ``simplefast._ref.fastpub`` (pure Python, the specification:
its docstring has the theory of operation and the exact cases it takes).
They agree on every answer, row write and counter. Each twin uses the codec
and the ``to_tag`` of its own kind.
"""

from typing import Any, final

@final
class FastPublisher:
    """Answers an initial PUBLISH over UDP of a presentity nobody watches in one
    call, without a transaction; declines everything else untouched.

    Args:
        config: the registrar's settings, read at every call (``domains``).
        publications: the presence agent's ``Publications``: its ``packages``
            (``presence``, with ``check``), ``config`` (``min_expires``,
            ``max_expires``), ``store``, ``watched``, expiry heap and
            ``conflicts`` counter are used as the general path uses them.
        server: the Server header value (ASCII).
        supported: option tags for ``validate_request``.
        tag_key: secret bytes of the entity-tags and To tags (``fastreg.to_tag``).
        allow_events: the Allow-Events header value (ASCII); settable.

    Attributes:
        answered: PUBLISHes answered here.
        declined: PUBLISHes parsed here and left to the general path.
        changed: after a call, the resource whose watchers must be notified
            (someone subscribed while the row was written), else None.
    """

    answered: int
    declined: int
    changed: str | None
    allow_events: str
    @property
    def config(self) -> Any: ...
    @property
    def publications(self) -> Any: ...
    @property
    def server(self) -> str: ...
    @property
    def supported(self) -> tuple[str, ...]: ...
    @property
    def tag_key(self) -> bytes: ...
    def __init__(
        self,
        config: Any,
        publications: Any,
        *,
        server: str,
        supported: tuple[str, ...],
        tag_key: bytes,
        allow_events: str,
    ) -> None: ...
    def watch_table(self, local: dict[tuple[str, str], Any], marks: Any, workers: int) -> None:
        """Tell whether a resource is watched from these instead of calling
        ``publications.watched``: ``local``, this worker's watchers (the notifier's
        ``watchers``, keyed ``(event, resource)``), and ``marks``, the shared table of
        ``event NUL resource NUL index`` keys (UTF-8) of the workers holding
        subscriptions, for ``workers`` workers; a key longer than the table's
        ``key_max`` means every worker (simplefast/server/worker.py ``marked``)."""
    def publish(self, data: bytes, peer: tuple[Any, ...], now: float) -> Any:
        """Take one datagram.

        Returns:
            ``bytes``: the 200 to send to ``peer`` (the publication is made);
            a ``SipMessage``: a PUBLISH parsed here and declined, nothing
            changed (the caller goes on with it);
            None: not a PUBLISH, or not parseable (the caller parses it as
            usual and answers the error).
        """
