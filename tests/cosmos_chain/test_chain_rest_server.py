"""The chain's REST gateway on uvicorn (issue 12): a wide listen backlog, 200 clients at once answered
without an error or a reset, and path numbers too large for the store answered 400 (not 500)."""

from __future__ import annotations

import http.client
import json

import pytest
from btcmesh_testkit.net import concurrent_requests, listen_backlog

from cosmos_chain.genesis import build_genesis, deterministic_wallet
from cosmos_chain.rest import LocalChain

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def chain():
    with LocalChain("rest-load-1", build_genesis({str(deterministic_wallet(1).address()): 10**9}),
                    block_interval=0.05) as c:
        yield c


def _get(port: int, path: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


@pytest.mark.parametrize("height", ["99999999999999999999999", "9223372036854775808", "-1", "1e3"])
def test_out_of_range_heights_are_400(chain, height: str) -> None:
    status, body = _get(chain.rest.port, f"/cosmos/base/tendermint/v1beta1/blocks/{height}")
    assert status == 400, body
    assert body["code"] == 3 and body["details"] == []


def test_max_int64_height_is_an_ordinary_not_yet_available(chain) -> None:
    status, body = _get(chain.rest.port, "/cosmos/base/tendermint/v1beta1/blocks/9223372036854775807")
    assert status == 400 and "not available" in body["message"]


def test_wide_backlog_and_200_concurrent_clients(chain) -> None:
    backlog = listen_backlog(chain.rest.port)
    assert backlog is None or backlog >= 512, backlog  # was 5 (socketserver's default)
    results = concurrent_requests(200, lambda i: _get(chain.rest.port, "/cosmos/base/tendermint/v1beta1/blocks/latest"))
    errors = [r for r in results if not (isinstance(r, tuple) and r[0] == 200)]
    assert errors == []
    assert all(int(r[1]["block"]["header"]["height"]) >= 1 for r in results)
