"""Presence (RFC 3856): PIDF documents and their composition; hardened XML parsing.

``xmlsafe`` is the one XML parser of the server; ``pidf`` parses, checks and
composes presence documents. The event framework, publications and watchers
come next (issue #5).
"""
