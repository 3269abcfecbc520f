"""``/v2/mesh/slash`` (issue 10 §2) over a real ChainApp: after a double-sign slash the API reports
virtual stake slashed, virtual stake force-unbonded from the tombstoned validator and BTC left (the
registered slashing tx's change output = the vault collateral) apart; 404 before / for unknown
delegations; 422 for a malformed hash; in OpenAPI."""

from __future__ import annotations

import json

import pytest
from cosmpy.aerial.wallet import LocalWallet
from cosmpy.crypto.keypairs import PrivateKey
from fastapi.testclient import TestClient

from api import create_app
from api.chain_source import ChainAppSource
from api_chain_helpers import RegistryStandIn, execute_in_block
from btc_staking.keys import xonly_from_secret
from btc_staking.tx import OutPoint, Tx, TxIn, TxOut
from cosmos_chain.app import ChainApp
from cosmos_chain.modules.base import DEFAULT_PREFIX, Context

pytestmark = pytest.mark.timeout(60)

FP = xonly_from_secret((0xA8).to_bytes(32, "big")).hex()
STAKER_PK = xonly_from_secret((0x5F).to_bytes(32, "big")).hex()
TX_HASH = "cd" * 32
VALUE, CHANGE = 1_000_000, 898_765
OPERATOR = LocalWallet(PrivateKey((0x736C6173).to_bytes(32, "big")), prefix=DEFAULT_PREFIX)
#: a stand-in slashing tx: output 0 to the slashing script, output 1 the change (what the registry stores)
SLASHING_TX = Tx(inputs=[TxIn(OutPoint(bytes(32), 0))],
                 outputs=[TxOut(100_000, bytes([0x51])), TxOut(CHANGE, bytes([0x51]))]).serialize().hex()


class SlashRegistry(RegistryStandIn):
    """Registry stand-in: one FP on ``val-s``, one delegation moved by ``set_status``, ``slash``."""

    def delegation(self, ctx: Context, staking_tx_hash: str) -> dict | None:
        return self.store(ctx).get("del/" + staking_tx_hash)

    def _status(self, ctx: Context, new: str) -> None:
        d = self.store(ctx).get("del/" + TX_HASH) or {
            "staking_tx_hash": TX_HASH, "staker_btc_pk": STAKER_PK, "fp_btc_pk_list": [FP], "staking_value": VALUE,
            "slashing_tx": SLASHING_TX, "status": None}
        old, d["status"] = d["status"], new
        self.store(ctx).set("del/" + TX_HASH, d)
        self.hooks.on_delegation_status(ctx, dict(d), old, new)

    def exec_register(self, ctx: Context, sender: str, body: dict, funds: list) -> dict:
        self.store(ctx).set("fp/" + FP, {"btc_pk": FP, "addr": sender, "validator": "val-s", "slashed_height": 0})
        return {}

    def exec_set_status(self, ctx: Context, sender: str, body: dict, funds: list) -> dict:
        self._status(ctx, body["status"])
        return {}

    def exec_slash(self, ctx: Context, sender: str, body: dict, funds: list) -> dict:
        fp = self.store(ctx).get("fp/" + FP)
        fp["slashed_height"] = 7
        self.store(ctx).set("fp/" + FP, fp)
        self._status(ctx, "SLASHED")
        return {}


@pytest.fixture
def chain() -> ChainApp:
    app = ChainApp("mesh-slash-api-1", modules=[SlashRegistry()])
    app.init_chain({"genesis_time": 1_700_000_000, "fees": {"denom": "ubbn", "min_gas_price": "0"},
                    "bank": {"balances": [{"address": str(OPERATOR.address()),
                                           "coins": [{"denom": "ubbn", "amount": "1000000000"}]}]},
                    "mesh": {"unbonding_period": 100}})
    return app


def run(app: ChainApp, msg: dict) -> None:
    execute_in_block(app, OPERATOR, "btc_staking", msg)


def test_slash_figures_apart(chain: ChainApp) -> None:
    client = TestClient(create_app(ChainAppSource(chain)))
    run(chain, {"register": {}})
    run(chain, {"set_status": {"status": "ACTIVE"}})
    r = client.get("/v2/mesh/slash", params={"staking_tx_hash_hex": TX_HASH})
    assert r.status_code == 404, r.text  # in the mesh, not slashed
    run(chain, {"slash": {}})
    r = client.get("/v2/mesh/slash", params={"staking_tx_hash_hex": TX_HASH})
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {
        "staking_tx_hash_hex": TX_HASH, "finality_provider_pk_hex": FP, "validator": "val-s", "height": 7,
        "virtual_slashed": "100000", "virtual_unbonded": "900000", "btc_left_sat": str(CHANGE),
        "collateral_sat": str(CHANGE), "btc_lost_sat": str(VALUE - CHANGE)}
    rec = json.loads(json.dumps(chain.smart_query("mesh", {"adapter": {"delegation": {"staking_tx_hash": TX_HASH}}})))
    assert rec["delegation"]["collateral_sat"] == CHANGE  # the chain agrees: collateral = the change output
    assert client.get("/v2/mesh/slash", params={"staking_tx_hash_hex": "ee" * 32}).status_code == 404
    assert client.get("/v2/mesh/slash", params={"staking_tx_hash_hex": "xyz"}).status_code in (400, 422)
    assert "/v2/mesh/slash" in client.get("/openapi.json").json()["paths"]
