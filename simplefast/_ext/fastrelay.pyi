"""The proxy's MESSAGE relay for the common case (RFC 3261 sections 16 and 17).

This stub is the contract both twins implement: ``simplefast._ext.fastrelay``
(Cython) and ``simplefast._ref.fastrelay`` (pure Python, the specification:
its docstring has the theory of operation and the exact requests it takes).
They agree on every datagram out, in order, and every counter. Each twin uses
the codec of its own kind (``_ext.sipmsg`` / ``_ref.sipmsg``).
"""

from typing import Any, final

def loop_hash(msg: Any) -> str:
    """The proxy's loop hash of a request (section 16.6 step 8), 12 hex digits."""

@final
class FastRelay:
    """Relays a MESSAGE over UDP to a user with one registered UDP contact, keeping
    both transactions in one record; declines everything else untouched.

    Args:
        config: read at every call for ``domains`` (the registrar's settings).
        table: the shared location table (AOR -> marshalled bindings).
        me: the proxy's ``ProxyAddress`` (``via``, ``is_me``).
        prefix: what every branch made here starts with (the magic cookie first);
            a response whose branch does not start with it is not ours.
        supported: option tags for ``validate_request``.
        general: the transaction layer's server table: a request whose key it
            holds is declined.
        tag_prefix: ASCII letters and digits, first part of the To tags of the
            408s written here.
        t1, t2, t4: the timer values (seconds).

    Attributes:
        max_body: bodies over it are declined (None: no limit).
        service: (user, host) of the URI-list service, declined (None: none).
        out: (bytes, peer) to send, in order; ``take`` empties it.
        relayed, declined, absorbed, timeouts: counters.
        open: records whose client side waits for a final response.
    """

    max_body: int | None
    service: tuple[str, str] | None
    out: list[tuple[bytes, Any]]
    relayed: int
    declined: int
    absorbed: int
    timeouts: int
    open: int
    @property
    def config(self) -> Any: ...
    @property
    def table(self) -> Any: ...
    @property
    def me(self) -> Any: ...
    @property
    def prefix(self) -> str: ...
    @property
    def supported(self) -> tuple[str, ...]: ...
    @property
    def general(self) -> dict[Any, Any]: ...
    @property
    def tag_prefix(self) -> str: ...
    @property
    def t1(self) -> float: ...
    @property
    def t2(self) -> float: ...
    @property
    def t4(self) -> float: ...
    def __init__(
        self,
        config: Any,
        table: Any,
        me: Any,
        *,
        prefix: str,
        supported: tuple[str, ...],
        general: dict[Any, Any],
        tag_prefix: str,
        t1: float = ...,
        t2: float = ...,
        t4: float = ...,
    ) -> None: ...
    def __len__(self) -> int:
        """Records held."""
    def expecting(self) -> bool:
        """Some record's client side is alive: a response may be ours."""
    def take(self) -> list[tuple[bytes, Any]]:
        """What to send, in order; ``out`` is empty after."""
    def request(self, data: bytes, peer: tuple[Any, ...], now: float, accept: bool = ...) -> Any:
        """True: handled (relayed, answered again or absorbed); a parsed SipMessage:
        declined, nothing changed; None: not a MESSAGE or it does not parse.
        ``accept`` False: only retransmissions of requests held here are taken."""
    def response(self, data: bytes, now: float) -> Any:
        """True: a response on a branch of ours, handled; a parsed SipMessage: not
        ours, nothing changed; None: not a response, or it does not parse."""
    def next_deadline(self) -> float | None:
        """When ``expire`` has work next (may be early, never late); None: no timer."""
    def expire(self, now: float) -> None:
        """Run every timer due at ``now`` (nondecreasing across calls)."""
