"""The loopback HTTP servers (chain REST, node RPC) answer keep-alive requests without Nagle's delay:
accepted sockets inherit TCP_NODELAY from the listening socket (asyncio sets it only on sockets created
with proto TCP, which ``socket.socket()`` is not)."""

from __future__ import annotations

import socket

import httpx
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from http_serving import BackgroundHttpServer


def test_accepted_connections_have_tcp_nodelay() -> None:
    async def hello(_request):  # type: ignore[no-untyped-def]
        return JSONResponse({"ok": True})

    server = BackgroundHttpServer(Starlette(routes=[Route("/", hello)]), name="nodelay").start()
    try:
        assert server._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)  # noqa: SLF001
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert client.recv(4096).startswith(b"HTTP/1.1 200")
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", trust_env=False, timeout=5) as http:
            assert [http.get("/").json() for _ in range(3)] == [{"ok": True}] * 3  # keep-alive reuse
    finally:
        server.stop()
