"""simplefast: a SIP SIMPLE presence and instant-messaging server."""

__version__ = "0.1.0.dev0"
