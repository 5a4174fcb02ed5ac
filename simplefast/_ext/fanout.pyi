"""NOTIFY fan-out: rendering and client transactions (RFC 3261 17.1.2), one worker's.

This stub is the contract both twins implement: ``simplefast._ext.fanout``
(Cython) and ``simplefast._ref.fanout`` (pure Python, the specification:
its docstring has the theory of operation and the rendered layout). They
agree on every result, order and error.
"""

from collections.abc import Callable
from typing import Any, SupportsIndex, final

@final
class NotifyTxns:
    """NOTIFY client transactions in a compact table.

    Args:
        branch_prefix: ASCII, starting ``z9hG4bK``; each branch is it plus the
            transaction number in lower-case hex (no leading zero).
        t1, t2, t4: RFC 3261 timers, seconds (0 < t1 <= t2, t4 >= 0).

    Raises:
        ValueError: a bad prefix or timers.
    """

    t1: float
    t2: float
    t4: float
    retransmissions: int  # Timer E firings so far
    timeouts: int  # Timer F expiries so far
    def __init__(self, branch_prefix: str, *, t1: float = ..., t2: float = ..., t4: float = ...) -> None: ...
    @property
    def branch_prefix(self) -> str: ...
    def __len__(self) -> int:
        """Live transactions (trying, proceeding, or completed waiting out Timer K)."""
    @property
    def outstanding(self) -> int:
        """Transactions still waiting for their final response (trying or proceeding)."""
    def send(
        self,
        target: bytes,
        via: bytes,
        head: bytes,
        cseq: SupportsIndex,
        state: bytes,
        ctype: bytes,
        body: bytes,
        dest: Any,
        reliable: object,
        token: Any,
        now: float,
    ) -> bytes:
        """Render one NOTIFY and start its transaction (Timer E unless ``reliable``, and
        Timer F); returns the bytes to send now.

        Raises:
            TypeError: ``cseq`` is not an integer.
            ValueError: ``cseq`` outside 0..2**32-1; ``now`` earlier than a previous call's.
        """
    def owns(self, branch: str) -> bool:
        """Whether ``branch`` starts with this table's prefix."""
    def response(self, branch: str, status: int, now: float) -> Any:
        """A response (top-Via ``branch``, ``status``): the token at the first final
        response of a live transaction; None for anything else (provisional, a
        retransmitted final, a branch that is not live, a status outside 100-699).

        Raises:
            ValueError: ``now`` earlier than a previous call's.
        """
    def absorb(
        self,
        batch: list[tuple[Any, Any]],
        start: int,
        now: float,
        parse: Callable[[bytes], Any],
        validate: Callable[[Any], Any],
    ) -> int:
        """Take from ``batch`` (``(data, peer)`` pairs), from ``start`` on and while they
        come, each response 100-299 whose top-Via branch starts with this table's prefix
        and names a transaction number already sent, as ``response`` would, once
        ``parse(data)`` gave a response that ``validate`` passes (None). A datagram whose
        parse or check raises is not taken. The index of the first datagram not taken
        (``len(batch)`` when all were).

        Raises:
            TypeError: ``batch`` is not a list.
            ValueError: ``start`` negative; ``now`` earlier than a previous call's.
        """
    def failed(self, branch: str) -> Any:
        """The transport could not deliver it: the transaction ends; its token, or None."""
    def next_deadline(self) -> float | None:
        """The earliest timer held (possibly stale: an early wake-up, never a late one)."""
    def poll(self, now: float) -> tuple[list[tuple[bytes, Any]], list[Any]]:
        """Retransmissions due, as ``(data, dest)``, and the tokens of transactions whose
        Timer F fired, in (deadline, transaction number) order.

        Raises:
            ValueError: ``now`` earlier than a previous call's.
        """
