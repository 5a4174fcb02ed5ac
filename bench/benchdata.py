"""Inputs shared by the benchmark modules: the messages in bench/data and the group names.

Group names carry the input's size ("parse publish-380") so that report.py can
put ref, ext and the peers that parse the same bytes on one row.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"

# name -> file in bench/data, in the order the tables list them
MESSAGES: dict[str, str] = {
    "publish": "publish.msg",
    "register": "register.msg",
    "ok200": "ok200.msg",
    "notify_pidf": "notify_pidf.msg",
    "wsinv": "wsinv.msg",
}


def load(name: str) -> bytes:
    """The octets of one message of bench/data."""
    return (DATA / MESSAGES[name]).read_bytes()


def label(name: str) -> str:
    """``publish-380``: the message's name and its size in octets."""
    return f"{name}-{len(load(name))}"


def group(kind: str, name: str) -> str:
    """Benchmark group of one operation on one message, e.g. ``parse publish-380``."""
    return f"{kind} {label(name)}"
