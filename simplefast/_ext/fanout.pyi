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

@final
class RowFan:
    """A change fanned out to a resource's watchers from their rows in the shared
    table, without a ``Subscription`` object each (the reference's docstring is the
    specification; docs/presence.md, "Fan-out over rows").

    Args:
        txns: the worker's NOTIFY transactions (of the same twin).
        index: the worker's index (a row it holds names it as owner).
        keys: the worker's records, 32 bytes each (``Held._keys``); ``long``: record ->
            key longer than 32 bytes (left to the object path).
        pinned, queued, cache: keys of subscriptions the worker holds as objects: one
            pinned or queued is left to the object path; one only cached is forgotten
            (``forget(key)``) since its row equals it.
        rowq: key -> [NOTIFYs of its row queued, last_sent, version] (see the reference).
        get, put: the table's ``get(key) -> bytes | None`` and ``put_row(key, row) ->
            bool``; ``lost(key, row)``: a row ``put`` refused.
        send: ``send(data, dest)``, the transaction layer's stateless send.
        wire: ``wire(dest) -> (via, contact)``, our Via sent-by and Contact for a
            destination, asked once per transport and address family.
        ctypes: content type -> its bytes (shared with the notifier).

    Raises:
        TypeError: ``txns`` of the other twin, or a dict argument that is not one.
    """

    index: int
    sent: int  # NOTIFYs sent from rows
    queued: int  # NOTIFYs of rows that waited for room in the window
    def __init__(
        self,
        txns: NotifyTxns,
        *,
        index: int,
        keys: bytearray,
        long: dict[int, str],
        pinned: dict[str, Any],
        queued: dict[str, Any],
        cache: Any,
        rowq: dict[str, list[Any]],
        get: Callable[[str], bytes | None],
        put: Callable[[str, bytes], bool],
        forget: Callable[[str], object],
        lost: Callable[[str, bytes], object],
        send: Callable[[bytes, Any], object],
        wire: Callable[[Any], tuple[bytes, bytes]],
        ctypes: dict[str, bytes],
    ) -> None: ...
    def changed(
        self,
        recs: Any,
        start: SupportsIndex,
        now: float,
        interval: float,
        window: int,
        queue: Any,
        bodies: list[Any],
        body_of: Callable[[str], Any],
    ) -> tuple[int, int]:
        """NOTIFY the active watchers of records ``recs[start:]`` (an ``array('I')``):
        sent now, or queued as ``(key, None, body, False)`` when the window is full.
        ``bodies``: a place per policy code (``subrow.POLICIES``), filled by
        ``body_of(policy)`` once per change. Returns ``(i, sends)``: the index of the
        first record left to the caller's object path (``len(recs)`` when none) and
        the NOTIFYs sent or queued.

        Raises:
            TypeError: ``recs`` not an ``array('I')``.
            ValueError: ``start`` negative, ``bodies`` too short, ``now`` earlier than
                the transactions' clock, a CSeq past 2**32-1.
        """
    def pump(self, queue: Any, window: int, now: float) -> int:
        """Send the row entries at the head of ``queue`` while the window has room; stop
        at an object's entry or a row entry the object path must send. How many went.

        Raises:
            ValueError: ``now`` earlier than the transactions' clock, a CSeq past 2**32-1.
        """
