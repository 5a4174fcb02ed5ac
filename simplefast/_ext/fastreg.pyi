"""The registrar's stateless fast path (RFC 3261 sections 10.3 and 8.2.7).

This stub is the contract both twins implement: ``simplefast._ext.fastreg``
(Cython) and ``simplefast._ref.fastreg`` (pure Python, the specification:
its docstring has the theory of operation and the exact cases it takes).
They agree on every answer, table write and counter. Each twin uses the
codec of its own kind (``_ext.sipmsg`` / ``_ref.sipmsg``).
"""

from typing import Any, final

@final
class FastRegistrar:
    """Answers the common REGISTER over UDP (one Contact, no Path, at most one
    binding already there, with the same Contact) in one call, without a
    transaction; declines everything else untouched.

    Args:
        config: the registrar's settings, read at every call (``domains``,
            ``default_expires``, ``min_expires``, ``max_expires``), so a
            reload that replaces its fields is seen at once.
        table: the shared location table (``shmindex.ShmTable``: AOR ->
            marshalled bindings, the encoding of ``simplefast.proxy.location``).
        server: the Server header value (ASCII).
        supported: option tags for ``validate_request``.
        tag_key: secret bytes mixed into the deterministic To tags.
        dirty: the location's write-behind map (AOR -> encoded bindings, b""
            for removed), updated as the location's ``put`` does; None when
            nothing is written behind.

    Attributes:
        offline: None, or an object whose ``marks`` attribute is the
            offline-store mark table (or None): a REGISTER of a user who may
            have stored MESSAGEs is declined (the slow path delivers them).
        answered: REGISTERs answered here.
        declined: REGISTERs parsed here and left to the slow path.
    """

    offline: Any
    answered: int
    declined: int
    @property
    def config(self) -> Any: ...
    @property
    def table(self) -> Any: ...
    @property
    def server(self) -> str: ...
    @property
    def supported(self) -> tuple[str, ...]: ...
    @property
    def tag_key(self) -> bytes: ...
    @property
    def dirty(self) -> dict[str, bytes] | None: ...
    def __init__(
        self,
        config: Any,
        table: Any,
        *,
        server: str,
        supported: tuple[str, ...],
        tag_key: bytes,
        dirty: dict[str, bytes] | None,
    ) -> None: ...
    def register(self, data: bytes, peer: tuple[Any, ...], now: float, date: str) -> Any:
        """Take one datagram.

        Returns:
            ``bytes``: the 200 to send to ``peer`` (the binding change is made);
            a ``SipMessage``: a REGISTER parsed here and declined, nothing
            changed (the caller goes on with it);
            None: not a REGISTER, or not parseable (the caller parses it as
            usual and answers the error).

        Raises:
            ValueError: ``date`` is not ASCII or holds CR or LF (checked first).
        """

def to_tag(key: bytes, branch: str, call_id: str, cseq: int, from_tag: str) -> str:
    """The To tag of the 200 to a request: 16 lower-case hex digits of a keyed
    64-bit FNV-1a over ``key``, then branch, Call-ID, CSeq number and From tag
    (UTF-8, surrogateescape) each followed by a NUL. The same request gets the
    same tag every time (section 8.2.7: a stateless UAS answers retransmissions
    as it answered the request)."""
