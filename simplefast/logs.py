"""Logging through picologging, one logger per module, and a rate limiter for
what peers can trigger (bad packets must never log at warning per packet)."""

from __future__ import annotations

import time

import picologging

_configured = False


def get_logger(name: str) -> picologging.Logger:
    return picologging.getLogger(name)


LEVELS = ("debug", "info", "warning", "error")


def configure(level: str = "info") -> None:
    """One stderr handler on the root logger; safe to call again (SIGHUP).
    ``level`` is one of LEVELS."""
    global _configured
    root = picologging.getLogger()
    levels = {"debug": picologging.DEBUG, "info": picologging.INFO, "warning": picologging.WARNING,
              "error": picologging.ERROR}  # fmt: skip
    root.setLevel(levels[level.lower()])
    if not _configured:
        handler = picologging.StreamHandler()
        # picologging 0.9 garbles %(asctime)s unless datefmt is given
        fmt = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
        handler.setFormatter(picologging.Formatter(fmt, "%Y-%m-%dT%H:%M:%S"))
        root.addHandler(handler)
        _configured = True


class RateLimited:
    """Counts events of one kind; logs the first at warning, then at most one
    summary per ``interval`` seconds; every event is logged at debug."""

    __slots__ = ("log", "what", "interval", "count", "_since", "_next")

    def __init__(self, log: picologging.Logger, what: str, interval: float = 10.0) -> None:
        self.log = log
        self.what = what
        self.interval = interval
        self.count = 0  # total, for metrics
        self._since = 0
        self._next = 0.0

    def __call__(self, detail: str, peer: object) -> None:
        self.count += 1
        self._since += 1
        now = time.monotonic()
        if now >= self._next:
            self.log.warning(
                "%s (%d since last report), latest from %s: %s", self.what, self._since, peer, detail
            )
            self._since = 0
            self._next = now + self.interval
        elif self.log.isEnabledFor(picologging.DEBUG):
            self.log.debug("%s from %s: %s", self.what, peer, detail)
