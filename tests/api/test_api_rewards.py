"""``/v2/rewards`` over a real ChainApp (mesh module + a small registry stand-in driving its hooks):
200 replies match the chain's ``rewards`` query and reconcile; 4xx for malformed and unknown input;
503 without a chain source; the routes are in OpenAPI."""

from __future__ import annotations

import json

import pytest
from cosmpy.aerial.wallet import LocalWallet
from cosmpy.crypto.keypairs import PrivateKey
from fastapi.testclient import TestClient

from api import create_app
from api.chain_source import ChainAppSource
from api_chain_helpers import RegistryStandIn, execute_in_block, finalize_block
from btc_staking.keys import xonly_from_secret
from cosmos_chain.app import ChainApp
from cosmos_chain.modules.base import DEFAULT_PREFIX, Context

pytestmark = pytest.mark.timeout(60)

FP = xonly_from_secret((0xA7).to_bytes(32, "big")).hex()
STAKER_PK = xonly_from_secret((0x5E).to_bytes(32, "big")).hex()
TX_HASH = "ab" * 32


def key(seed: int) -> LocalWallet:
    return LocalWallet(PrivateKey((0x72657761 + seed).to_bytes(32, "big")), prefix=DEFAULT_PREFIX)


OPERATOR, STAKER = key(1), key(2)


class MiniRegistry(RegistryStandIn):
    """Registry stand-in: an FP record and ``set_status`` moving one delegation through the hooks."""

    def exec_register(self, ctx: Context, sender: str, body: dict, funds: list) -> dict:
        rec = {"btc_pk": FP, "addr": sender, "validator": "val-a", "commission": "0.1", "slashed_height": 0}
        self.store(ctx).set("fp/" + FP, rec)
        return rec

    def exec_set_status(self, ctx: Context, sender: str, body: dict, funds: list) -> dict:
        d = {"staking_tx_hash": TX_HASH, "staker_btc_pk": STAKER_PK, "fp_btc_pk_list": [FP],
             "staking_value": 200_000, "staker_addr": str(STAKER.address())}
        old = (self.store(ctx).get("del/" + TX_HASH) or {}).get("status")
        self.store(ctx).set("del/" + TX_HASH, dict(d, status=body["status"]))
        self.hooks.on_delegation_status(ctx, d, old, body["status"])
        return {}


class MiniChain:
    def __init__(self) -> None:
        self.app = ChainApp("rewards-api-1", modules=[MiniRegistry()])
        fund = [{"address": str(w.address()), "coins": [{"denom": "ubbn", "amount": "1000000000"}]}
                for w in (OPERATOR, STAKER)]
        self.app.init_chain({"genesis_time": 1_700_000_000, "fees": {"denom": "ubbn", "min_gas_price": "0"},
                             "bank": {"balances": fund},
                             "mesh": {"block_reward": 1000, "unbonding_period": 100}})

    def block(self, txs: list[bytes] = ()) -> None:
        finalize_block(self.app, txs)

    def execute(self, w: LocalWallet, module: str, msg: dict) -> None:
        execute_in_block(self.app, w, module, msg)


@pytest.fixture(scope="module")
def world() -> tuple[MiniChain, TestClient]:
    chain = MiniChain()
    chain.execute(OPERATOR, "btc_staking", {"register": {}})
    chain.execute(STAKER, "btc_staking", {"set_status": {"status": "ACTIVE"}})
    for _ in range(3):
        chain.block()
    chain.execute(STAKER, "mesh", {"claim_rewards": {}})
    chain.block()
    return chain, TestClient(create_app(ChainAppSource(chain.app)))


def test_delegation_staker_fp_and_totals(world):
    chain, client = world
    q = chain.app.smart_query
    mesh = chain.app.module_address("mesh")
    r = client.get("/v2/rewards/delegation", params={"staking_tx_hash_hex": TX_HASH})
    assert r.status_code == 200, r.text
    d = r.json()["data"]
    want = q(mesh, {"rewards": {"delegation": {"staking_tx_hash": TX_HASH}}})
    assert (d["pending"], d["claimed"]) == (want["pending"], want["claimed"])
    assert int(d["claimed"]) > 0 and int(d["pending"]) == 2 * 900  # the claim's block and one more, 10% commission
    assert d["reward_address"] == str(STAKER.address()) and d["mesh_status"] == "ACTIVE"

    s = client.get("/v2/rewards/staker", params={"staker_pk_hex": "02" + STAKER_PK}).json()["data"]
    assert s["staker_pk_hex"] == STAKER_PK and [x["staking_tx_hash_hex"] for x in s["delegations"]] == [TX_HASH]
    assert (s["pending"], s["claimed"]) == (d["pending"], d["claimed"])

    f = client.get("/v2/rewards/finality-provider", params={"fp_pk_hex": FP}).json()["data"]
    assert f["commission_rate"] == "0.1" and f["commission_recipient"] == str(OPERATOR.address())
    assert int(f["commission"]) == int(f["distributed"]) // 10

    t = client.get("/v2/rewards/totals").json()["data"]
    assert t["balanced"] is True and t["block_reward"] == "1000"
    assert int(t["paid_by_consumer"]) == sum(int(t[k]) for k in ("claimed", "pending", "commission",
                                                                 "undistributed", "carried"))
    assert [v["validator"] for v in t["validators"]] == ["val-a"] and t["validators"][0]["finality_provider_pk_hex"] == FP


def test_bad_and_unknown_input(world):
    _, client = world
    cases = [
        ("/v2/rewards/delegation", {"staking_tx_hash_hex": "zz"}, 400),
        ("/v2/rewards/delegation", {}, 400),
        ("/v2/rewards/delegation", {"staking_tx_hash_hex": "cd" * 32}, 404),
        ("/v2/rewards/staker", {"staker_pk_hex": "00" * 32}, 400),
        ("/v2/rewards/finality-provider", {"fp_pk_hex": "12"}, 400),
        ("/v2/rewards/finality-provider", {"fp_pk_hex": STAKER_PK}, 404),
    ]
    for path, params, code in cases:
        r = client.get(path, params=params)
        assert r.status_code == code, (path, params, r.text)
        assert set(r.json()) == {"errorCode", "message"}
    empty = client.get("/v2/rewards/staker", params={"staker_pk_hex": FP}).json()["data"]
    assert empty["delegations"] == [] and empty["pending"] == "0"


def test_no_chain_source_is_503_and_routes_in_openapi():
    from api.memory import InMemorySource

    client = TestClient(create_app(InMemorySource()))
    r = client.get("/v2/rewards/totals")
    assert r.status_code == 503 and "chain" in r.json()["message"]
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/v2/rewards/delegation", "/v2/rewards/staker", "/v2/rewards/finality-provider", "/v2/rewards/totals"):
        assert p in paths and "400" in json.dumps(paths[p]["get"]["responses"])
