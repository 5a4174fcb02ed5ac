"""MSRP (RFC 4975) and MSRP relays (RFC 4976): sans-IO engines.

``simplefast.msrp.relay``: the relay core (``MsrpRelay``). The framer lives in
``simplefast._ext.msrpframe`` / ``simplefast._ref.msrpframe``; the design note is
``docs/msrp.md``.
"""
