"""Loopback networking helpers for the tests (127.0.0.1 only)."""

from __future__ import annotations

import socket


def closed_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listen_backlog(port: int) -> int | None:
    """The listen(2) backlog of the loopback socket on ``port`` (``ss -ltn`` Send-Q), or None without ``ss``."""
    import shutil
    import subprocess

    if shutil.which("ss") is None:
        return None
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, timeout=10).stdout
    fields = out.split()
    return int(fields[2]) if len(fields) >= 3 and fields[0] == "LISTEN" else None


def concurrent_requests(n: int, request, timeout_s: float = 60.0) -> list:
    """Run ``request(i)`` from ``n`` threads released at once; returns their results (exceptions included)."""
    import threading

    results: list = [None] * n
    gate = threading.Barrier(n)

    def worker(i: int) -> None:
        try:
            gate.wait(timeout_s)
            results[i] = request(i)
        except BaseException as exc:  # noqa: BLE001 - returned to the caller
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s)
    return results
