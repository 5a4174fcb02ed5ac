"""Persistence in the data directory (SQLite through the standard library)."""
