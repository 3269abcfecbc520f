"""Serve an ASGI app (Starlette/FastAPI) with uvicorn from a background thread, on a socket bound at once.

The chain's REST gateway (:mod:`cosmos_chain.rest`) and the embedded Bitcoin node's JSON-RPC
(:mod:`regtest.rpc_server`) both use it; it is a package of its own, depending on nothing of ours, so
that neither of those packages depends on the other. uvicorn does the HTTP (keep-alive, pipelining, a listen
backlog of :data:`DEFAULT_BACKLOG`, an overall connection cap); handlers that block (chain queries,
waiting for a block) run in a bounded thread pool (:func:`run_blocking` with a ``CapacityLimiter``),
so a burst of clients queues instead of spawning a thread each or stalling in the kernel's accept queue.

The socket is bound in the constructor, so ``port`` is known (and a busy port fails) before
``start()``; ``stop()`` closes the listener and every keep-alive connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import threading
import time
from typing import Any, Callable, TypeVar

import anyio
import anyio.to_thread
import uvicorn

__all__ = ["BackgroundHttpServer", "DEFAULT_BACKLOG", "DEFAULT_WORKERS", "run_blocking", "worker_limiter"]

log = logging.getLogger(__name__)

#: listen(2) backlog: room for a few hundred simultaneous connects (the kernel caps it at somaxconn).
DEFAULT_BACKLOG = 1024
#: Threads that run blocking handlers at once; further requests wait for one (no thread per request).
DEFAULT_WORKERS = 16
#: uvicorn answers 503 beyond this many open connections + requests in flight.
DEFAULT_MAX_CONNECTIONS = 4096

T = TypeVar("T")


def worker_limiter(workers: int = DEFAULT_WORKERS) -> anyio.CapacityLimiter:
    """A limiter for :func:`run_blocking` (create it inside the server's event loop or lazily)."""
    return anyio.CapacityLimiter(workers)


async def run_blocking(limiter: anyio.CapacityLimiter, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in a worker thread, at most ``limiter.total_tokens`` at once."""
    return await anyio.to_thread.run_sync(fn, *args, limiter=limiter)


class BackgroundHttpServer:
    """uvicorn serving ``app`` on ``host:port`` (loopback only) from a daemon thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *, name: str = "http",
                 backlog: int = DEFAULT_BACKLOG, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 keep_alive_s: int = 30) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"{name} server only listens on loopback, not {host!r}")
        self.name = name
        self.host = host
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # accepted sockets inherit TCP_NODELAY; asyncio sets it only on sockets whose proto is TCP, and
            # socket.socket() leaves proto 0, so without this every keep-alive reply waited ~40 ms (Nagle
            # against the client's delayed ACK)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock.bind((host, port))
            self._sock.listen(backlog)
        except OSError:
            self._sock.close()
            raise
        self.port: int = self._sock.getsockname()[1]
        # log_config=None: leave the process's logging alone (uvicorn would dictConfig it)
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", backlog=backlog,
                                limit_concurrency=max_connections, timeout_keep_alive=keep_alive_s,
                                timeout_graceful_shutdown=5, http="h11", loop="asyncio")
        self._server = uvicorn.Server(config)
        if logging.getLogger("uvicorn.error").level == logging.NOTSET:
            logging.getLogger("uvicorn.error").setLevel(logging.WARNING)  # no "Started server process" lines
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  (uvicorn < 0.29)
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def started(self) -> bool:
        """Whether uvicorn accepts connections."""
        return bool(self._server.started)

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except Exception:  # noqa: BLE001 - logged; stop() still works
            log.exception("%s server on port %d failed", self.name, self.port)

    def start(self, timeout: float = 10.0) -> "BackgroundHttpServer":
        """Serve in a daemon thread; returns once uvicorn accepts (bounded wait). Idempotent."""
        if self._closed:
            raise RuntimeError(f"{self.name} server was stopped")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"{self.name}-{self.port}", daemon=True)
            self._thread.start()
            deadline = time.monotonic() + timeout
            while not self._server.started:
                if time.monotonic() > deadline or not self._thread.is_alive():
                    self.stop()
                    raise RuntimeError(f"{self.name} server on 127.0.0.1:{self.port} did not start")
                time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, end keep-alive connections, wait for the thread (bounded). Idempotent."""
        self._closed = True
        thread, self._thread = self._thread, None
        if thread is not None:
            self._server.should_exit = True
            if thread is not threading.current_thread():
                thread.join(timeout)
                if thread.is_alive():  # requests still running after the graceful timeout
                    self._server.force_exit = True
                    thread.join(timeout)
        try:
            self._sock.close()
        except OSError:
            pass
