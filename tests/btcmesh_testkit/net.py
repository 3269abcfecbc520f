"""Loopback networking helpers for the tests (127.0.0.1 only)."""

from __future__ import annotations

import socket


def closed_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
