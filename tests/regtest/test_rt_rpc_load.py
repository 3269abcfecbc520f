"""The embedded node's JSON-RPC on uvicorn (issue 12): a wide listen backlog and 200 clients at once,
each answered correctly, with no error or reset."""

from __future__ import annotations

import base64
import http.client
import json

import pytest
from btcmesh_testkit.net import concurrent_requests, listen_backlog

from regtest.embedded import EmbeddedNode
from regtest.rpc_server import RpcServer

pytestmark = pytest.mark.timeout(120)


def test_wide_backlog_and_200_concurrent_clients() -> None:
    node = EmbeddedNode()
    server = RpcServer(node, user="u", password="p").start()
    auth = "Basic " + base64.b64encode(b"u:p").decode()
    try:
        backlog = listen_backlog(server.port)
        assert backlog is None or backlog >= 512, backlog  # was 5 (socketserver's default)

        def call(i: int) -> tuple[int, dict]:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            try:
                conn.request("POST", "/", json.dumps({"id": i, "method": "getblockcount", "params": []}),
                             {"Authorization": auth, "Content-Type": "application/json"})
                r = conn.getresponse()
                return r.status, json.loads(r.read())
            finally:
                conn.close()

        results = concurrent_requests(200, call)
        assert [r for r in results if not isinstance(r, tuple)] == []
        assert [(s, b["id"], b["result"], b["error"]) for s, b in results] == [(200, i, 0, None) for i in range(200)]
    finally:
        server.stop()
        node.close()
