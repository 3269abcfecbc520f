"""Issue 10 §1 in embedded mode: the ``valset`` module (own bond + mesh virtual stake → power,
1/3-per-block cap with carry-over, jailed/tombstoned → removed), its genesis checks, ABCI
``validator_updates`` and the REST ``validatorsets`` routes in cosmpy's shapes."""

from __future__ import annotations

import base64

import pytest
from cosmpy.protos.cosmos.base.tendermint.v1beta1.query_pb2 import GetValidatorSetByHeightResponse
from google.protobuf.json_format import ParseDict

from cosmos_chain.abci import ABCIServer
from cosmos_chain.app import ChainApp
from cosmos_chain.errors import InvalidRequestError
from cosmos_chain.rest import RestApi, RestError
from cosmos_chain.modules.base import Context, Module
from mesh_chain_helpers import Chain, Key, StubRegistry

pytestmark = pytest.mark.timeout(60)

ADMIN, OP, RELAYER = (Key.from_seed(70 + i) for i in range(3))
FP = "a7" * 32
KEYS = [base64.b64encode(bytes([0x10 + i]) * 32).decode() for i in range(4)]


def valset_genesis(**kw) -> dict:
    g = {"tokens_per_power": "100000",
         "validators": [{"operator": f"val{i}", "pub_key": KEYS[i], "self_bond": "1000000"} for i in range(4)]}
    g.update(kw)
    return g


def start(**kw) -> Chain:
    c = Chain.start([ADMIN, OP, RELAYER], {"mesh": {"admin": ADMIN.address, "block_reward": 0},
                                           "valset": valset_genesis(**kw)}, modules=[StubRegistry()])
    c.ok(OP, "btc_staking", {"create_finality_provider": {"btc_pk": FP, "validator": "val0"}})
    return c


def powers(c: Chain, height: int | None = None) -> dict[str, int]:
    body = {} if height is None else {"height": height}
    return {v["operator"]: v["power"] for v in c.query("valset", {"validator_set": body})["validators"]}


class AppBackend:
    def __init__(self, app: ChainApp) -> None:
        self.app, self.chain_id = app, app.chain_id

    def query(self, path: str, data: bytes):
        return self.app.query(path, data)


def test_power_follows_virtual_stake_capped_per_block_and_slash_removes() -> None:
    c = start()
    assert [v["power"] for v in c.app.genesis_validators()] == [10, 10, 10, 10]
    d = {"staking_tx_hash": "11" * 32, "staker_btc_pk": "5d" * 32, "fp_btc_pk_list": [FP], "staking_value": 3_000_000}
    res = c.execute(RELAYER, "btc_staking", {"set_status": {"delegation": d, "status": "ACTIVE"}})
    assert res.code == 0, res.log
    # +30 power wanted; under 1/3 of 40 → 13 now, then 1/3 of 53 → 17 (the rest), as ABCI updates
    assert c.app.validator_updates() == [{"operator": "val0", "pub_key": KEYS[0], "power": 23}]
    first = c.app.last_height
    c.block()
    assert c.app.validator_updates() == [{"operator": "val0", "pub_key": KEYS[0], "power": 40}]
    c.block()
    assert c.app.validator_updates() == []
    c.block()
    h = c.app.last_height
    assert powers(c) == {"val0": 40, "val1": 10, "val2": 10, "val3": 10}
    # updates of block H sign from H + 2 (CometBFT's rule, kept in embedded mode)
    assert [powers(c, first + i)["val0"] for i in range(4)] == [10, 10, 23, 40]

    res = c.execute(RELAYER, "btc_staking", {"slash": {"btc_pk": FP, "height": 3}})
    assert res.code == 0, res.log
    assert c.app.validator_updates()[0]["power"] == 40 - 23  # (70 − 1) // 3 = 23 removed now
    seen = []
    for _ in range(3):
        c.block()
        seen += c.app.validator_updates()
    # then (47 − 1) // 3 = 15 more, then the last 2: power 0 removes val0 from the set
    assert [u["power"] for u in seen] == [2, 0]
    c.block()
    assert powers(c) == {"val1": 10, "val2": 10, "val3": 10}

    # REST, cosmpy shapes; the ABCI server turns the updates into ValidatorUpdate protos
    api = RestApi(AppBackend(c.app))
    latest = api.get("/cosmos/base/tendermint/v1beta1/validatorsets/latest", {})
    assert [int(v["voting_power"]) for v in latest["validators"]] == [10, 10, 10]
    assert latest["validators"][0]["pub_key"]["@type"] == "/cosmos.crypto.ed25519.PubKey"
    assert latest["pagination"]["total"] == "3"
    at = api.get(f"/cosmos/base/tendermint/v1beta1/validatorsets/{h}", {})
    ParseDict({k: v for k, v in at.items() if k != "pagination"}, GetValidatorSetByHeightResponse())
    assert int(at["block_height"]) == h and len(at["validators"]) == 4
    with pytest.raises(RestError):
        api.get("/cosmos/base/tendermint/v1beta1/validatorsets/0", {})
    with pytest.raises(RestError):
        api.get(f"/cosmos/base/tendermint/v1beta1/validatorsets/{c.app.last_height + 5}", {})


def test_abci_returns_initial_set_and_updates() -> None:
    from cosmpy.protos.tendermint.abci import types_pb2 as abci

    app = ChainApp("valset-abci-1", modules=[StubRegistry()])
    server = ABCIServer(app)
    genesis = {"valset": valset_genesis(), "mesh": {"block_reward": 0}}
    import json

    resp = server.handle(abci.Request(init_chain=abci.RequestInitChain(
        chain_id="valset-abci-1", app_state_bytes=json.dumps(genesis).encode())))
    assert [(bytes(v.pub_key.ed25519), v.power) for v in resp.init_chain.validators] == \
        [(base64.b64decode(k), 10) for k in KEYS]
    resp = server.handle(abci.Request(finalize_block=abci.RequestFinalizeBlock(height=1)))
    assert list(resp.finalize_block.validator_updates) == []


@pytest.mark.parametrize("bad", [
    {"tokens_per_power": "0"},
    {"validators": [{"operator": "v", "pub_key": "AAAA", "self_bond": "1"}]},
    {"validators": [{"operator": "v", "pub_key": KEYS[0], "self_bond": "-1"}]},
    {"validators": [{"operator": "v", "pub_key": KEYS[0], "self_bond": "10"}]},  # no power at all
    {"validators": [{"operator": "v", "pub_key": KEYS[0], "self_bond": "100000"}] * 2},
    {"extra": 1},
])
def test_genesis_is_checked(bad: dict) -> None:
    app = ChainApp("valset-bad-1", modules=[StubRegistry()])
    with pytest.raises(InvalidRequestError):
        app.init_chain({"valset": valset_genesis(**bad) if "extra" not in bad else {"extra": 1}})


def test_no_section_no_updates() -> None:
    app = ChainApp("valset-none-1", modules=[StubRegistry()])
    app.init_chain({})
    assert app.genesis_validators() == []
    app.finalize_block(1, 1.0, [])
    assert app.validator_updates() == []


class JailDriver(Module):
    """Test driver: the mesh liveness jail / unjail of an FP (what the finality module's hooks call)."""

    name = "jail_driver"

    def exec_jail(self, ctx: Context, sender: str, body: dict, funds: list) -> dict:
        return ctx.module("mesh").jail_finality_provider(ctx, body["fp"], ctx.height) or {}

    def exec_unjail(self, ctx: Context, sender: str, body: dict, funds: list) -> dict:
        ctx.module("mesh").unjail_finality_provider(ctx, body["fp"], ctx.height)
        return {}


def test_jail_removes_and_unjail_restores_power() -> None:
    c = Chain.start([ADMIN, OP, RELAYER], {"mesh": {"admin": ADMIN.address, "block_reward": 0},
                                           "valset": valset_genesis()}, modules=[StubRegistry(), JailDriver()])
    c.ok(OP, "btc_staking", {"create_finality_provider": {"btc_pk": FP, "validator": "val0"}})
    d = {"staking_tx_hash": "12" * 32, "staker_btc_pk": "5d" * 32, "fp_btc_pk_list": [FP], "staking_value": 500_000}
    assert c.execute(RELAYER, "btc_staking", {"set_status": {"delegation": d, "status": "ACTIVE"}}).code == 0
    assert c.query("valset", {"target": {}})["powers"]["val0"] == 15
    c.ok(RELAYER, "jail_driver", {"jail": {"fp": FP}})
    assert c.query("valset", {"target": {}})["powers"]["val0"] == 0  # jailed: own bond and virtual stake out
    for _ in range(4):
        c.block()
    assert "val0" not in powers(c)
    c.ok(RELAYER, "jail_driver", {"unjail": {"fp": FP}})
    for _ in range(4):
        c.block()
    assert powers(c) == {"val0": 15, "val1": 10, "val2": 10, "val3": 10}
