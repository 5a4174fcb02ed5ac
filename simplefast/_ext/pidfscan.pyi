"""The one-pass PIDF pre-check: True only when ``check_pidf`` surely accepts the body.

This stub is the contract both twins implement: ``simplefast._ext.pidfscan``
(Cython over libexpat's C API) and ``simplefast._ref.pidfscan`` (pure
Python over ``xml.parsers.expat``, the specification: its docstring has
every rule). They give the same answer for every input.
"""

def scan(
    data: bytes | bytearray | memoryview,
    *,
    max_bytes: int = ...,
    max_depth: int = ...,
    max_elements: int = ...,
) -> bool:
    """Read ``data`` once with expat, keeping no tree.

    Returns:
        True: ``simplefast.presence.pidf.check_pidf`` (with the same bounds)
        accepts the body; False: not sure (the caller asks ``check_pidf``).

    Raises:
        TypeError: ``data`` is not bytes-like.
    """
