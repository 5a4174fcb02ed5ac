"""Registrar, location service, routing and digest authentication (sans-IO)."""
