"""``negotiate`` (simplefast/_sipshared.py): the body type of a SUBSCRIBE's Accept, for the
notifier and the SUBSCRIBE fast path alike. Its shortcut (one Accept value that is one of
ours) must give what the general rule gives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from simplefast._sipshared import negotiate

TYPES = ["application/pidf+xml", "application/xpidf+xml", "application/*", "*/*", "text/plain",
         "application/pidf+xml;q=0.5", " Application/PIDF+XML ", ""]  # fmt: skip
OFFERED = [("application/pidf+xml",), ("application/pidf+xml", "application/xpidf+xml"),
           ("application/xpidf+xml", "application/pidf+xml")]  # fmt: skip


@given(st.lists(st.sampled_from(TYPES), max_size=3), st.sampled_from(OFFERED))
def test_the_shortcut_gives_what_the_rule_gives(accepts: list[str], offered: tuple[str, ...]) -> None:
    # an empty element more: the rule ignores it, the shortcut (one element) is not taken
    assert negotiate(accepts, offered) == negotiate([*accepts, ""], offered)


def test_examples() -> None:
    assert negotiate(["application/pidf+xml"], OFFERED[1]) == "application/pidf+xml"
    assert negotiate(["application/*"], OFFERED[2]) == "application/xpidf+xml"
    assert negotiate(["text/plain"], OFFERED[0]) is None
    assert negotiate([], OFFERED[0]) == "application/pidf+xml"
