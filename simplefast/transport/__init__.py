"""asyncio (uvloop) protocols: sockets in, engine calls, bytes out. No protocol logic here."""
