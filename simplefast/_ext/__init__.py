"""Compiled hot paths (Cython). Built from ext/*.pyx by setup.py."""
