"""The staking API served by a real uvicorn on 127.0.0.1 over a real chain's REST gateway (httpx,
bounded waits): the path ``btcmesh api`` takes. Stopping the chain turns every answer into a 503."""

from __future__ import annotations

import httpx
import pytest

from api.app import BackgroundServer
from api.server import app_for_url
from api_chain_helpers import Delegation, FinalityProviderKey, MiniBtc, StakingChain, small_params

pytestmark = pytest.mark.timeout(120)

HTTP_TIMEOUT = 10.0


def test_live_api_over_real_chain_then_chain_down():
    params = small_params()
    fp = FinalityProviderKey("live-fp")
    chain = StakingChain(MiniBtc(), [params])
    try:
        chain.mine(n=2)
        chain.register_fp(fp, "fp-live")
        d = Delegation("live-staker", [fp.pk], 250_000, 300, params)
        chain.create(d, proof=False)
        chain.covenant_quorum(d)
        chain.add_proof(d)
        rest_url = chain.chain.rest.url
        with BackgroundServer(app_for_url(rest_url, timeout=5)) as server:
            assert server.url.startswith("http://127.0.0.1:")
            with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
                health = http.get("/healthcheck")
                assert health.status_code == 200
                assert health.json() == {"data": {"status": "ok", "btc_tip_height": chain.btc.tip_height}}
                got = http.get("/v2/delegation", params={"staking_tx_hash_hex": d.staking_tx_hash})
                assert got.status_code == 200 and got.json()["data"]["state"] == "ACTIVE"
                assert got.json()["data"]["delegation_staking"]["staking_amount"] == 250_000
                fps = http.get("/v2/finality-providers").json()["data"]
                assert [(f["btc_pk"], f["active_tvl"], f["state"]) for f in fps] == [(fp.pk.hex(), 250_000, "active")]
                page = http.get("/v2/delegations", params={"staker_pk_hex": d.staker_pk.hex()}).json()
                assert [x["delegation_staking"]["staking_tx_hash_hex"] for x in page["data"]] == [d.staking_tx_hash]
                missing = http.get("/v2/delegation", params={"staking_tx_hash_hex": "00" * 32})
                assert missing.status_code == 404 and missing.json()["errorCode"] == "NOT_FOUND"
                bad = http.get("/v2/delegation", params={"staking_tx_hash_hex": "00"})
                assert bad.status_code == 400 and "staking_tx_hash_hex" in bad.json()["message"]
                spec = http.get("/openapi.json").json()
                assert {"/v2/delegation", "/v2/delegations", "/v2/finality-providers", "/v2/stats",
                        "/v2/staker/stats", "/v2/params", "/v2/network-info", "/healthcheck"} <= set(spec["paths"])
                docs = http.get("/docs")
                assert docs.status_code == 200 and "swagger-ui" in docs.text.lower()

                chain.close()  # the chain goes away under the running API
                down = http.get("/healthcheck")
                assert down.status_code == 503
                assert down.json()["errorCode"] == "SERVICE_UNAVAILABLE"
                assert f"chain unreachable at {rest_url}" in down.json()["message"]
                assert http.get("/v2/stats").status_code == 503
    finally:
        chain.close()
