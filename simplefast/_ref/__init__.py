"""Pure-Python reference twins of the compiled modules in simplefast._ext."""
