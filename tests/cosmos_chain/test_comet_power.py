"""Issue 10 §1: BTC virtual stake moves CometBFT consensus power.

Four CometBFT validators (keys from ``cometbft testnet``), each with an own bond of 10 power
units (``tokens_per_power`` 100,000 ustake). BTC delegations become ACTIVE on FP A (→ val0) and FP
B (→ val1): CometBFT's own ``/validators`` shows 20 / 15 / 10 / 10. FP A double-signs (EOTS key
extracted by the finality module) → val0 is tombstoned and removed, the other three keep their
power, the chain goes on. Every power change stays under 1/3 of the total per block (the rest is
carried over), and the ``valset`` history (REST ``validatorsets/{height}``) equals CometBFT's set at
every height.
"""

from __future__ import annotations

import pytest

from btc_staking.keys import xonly_from_secret
from btcmesh.finality_provider import CallableChannel, FinalityProvider
from cosmos_chain.comet import CometClient, CometNetwork, wait_until
from cosmos_chain.rest import RestApi
from mesh_chain_helpers import (
    Key, comet_signed_execute, comet_smart, comet_tx_data, make_genesis, stub_registry_app,
)

pytestmark = pytest.mark.timeout(180)

ADMIN, OP_A, OP_B, RELAYER = (Key.from_seed(40 + i) for i in range(4))
SK_A, SK_B = (0xFB00).to_bytes(32, "big"), (0xFB01).to_bytes(32, "big")
TOKENS_PER_POWER = 100_000
SELF_BOND = 1_000_000  # 10 power each
STAKER = "5c" * 32


def app_genesis(pub_keys: list[str]) -> dict:
    genesis = make_genesis([ADMIN, OP_A, OP_B, RELAYER], {
        "mesh": {"admin": ADMIN.address, "block_reward": 0},
        "valset": {"tokens_per_power": str(TOKENS_PER_POWER), "validators": [
            {"operator": f"val{i}", "pub_key": pk, "self_bond": str(SELF_BOND)} for i, pk in enumerate(pub_keys)]}})
    genesis.pop("genesis_time")
    return genesis


def comet_powers(client: CometClient, height: int | None = None) -> dict[str, int]:
    """CometBFT's own validator set: base64 pubkey → voting power."""
    params = {"per_page": "100"} | ({"height": str(height)} if height else {})
    res = client.call("validators", **params)
    return {v["pub_key"]["value"]: int(v["voting_power"]) for v in res["validators"]}


def test_btc_stake_and_slashing_move_cometbft_power(tool_path, tmp_path) -> None:
    net = CometNetwork(tool_path("cometbft"), 4, stub_registry_app, tmp_path / "net", app_genesis=app_genesis,
                       block_time=0.2)
    with net.start(timeout=90):
        keys = net.consensus_pub_keys()
        val = {f"val{i}": pk for i, pk in enumerate(keys)}
        c0 = net.nodes[0].client
        app0 = net.nodes[0].server.app  # type: ignore[union-attr]
        addresses = {n: app0.module(n).address for n in ("btc_staking", "finality")}

        def smart(contract: str, msg: dict, client: CometClient = c0):
            return comet_smart(client, contract, msg)

        def submit(key: Key, contract: str, *msgs: dict) -> list:
            # consecutive sequences, one broadcast each, same block if fast
            raws = comet_signed_execute(c0, key, addresses[contract], list(msgs), net.chain_id)
            out = [c0.broadcast_tx_sync(raw) for raw in raws]
            results = []
            for r in out:
                assert r.code == 0, r.log
                results.append(comet_tx_data(c0.wait_for_tx(r.hash, timeout=30)["tx_result"]))
            return results

        def expect(powers: dict[str, int], what: str) -> int:
            want = {val[v]: p for v, p in powers.items()}
            wait_until(lambda: comet_powers(c0) == want, 30, f"CometBFT /validators {what}", interval=0.2)
            return c0.latest_height()

        assert comet_powers(c0) == {pk: 10 for pk in keys}  # InitChain's set replaced genesis.json's

        # BTC delegations become ACTIVE: 1,000,000 sat on FP A (val0), 500,000 on FP B (val1); price 1
        fp_a = FinalityProvider(SK_A, CallableChannel(lambda m: submit(OP_A, "finality", m)[0],
                                                      lambda m: smart("finality", m)), b"power")
        pk_b = xonly_from_secret(SK_B).hex()
        submit(OP_A, "btc_staking", {"create_finality_provider": {"btc_pk": fp_a.btc_pk_hex, "validator": "val0"}})
        submit(OP_B, "btc_staking", {"create_finality_provider": {"btc_pk": pk_b, "validator": "val1"}})
        submit(RELAYER, "btc_staking", *[
            {"set_status": {"delegation": {"staking_tx_hash": f"{n:064x}", "staker_btc_pk": STAKER,
                                           "fp_btc_pk_list": [fp], "staking_value": value}, "status": "ACTIVE"}}
            for n, fp, value in ((1, fp_a.btc_pk_hex, 1_000_000), (2, pk_b, 500_000))])
        active_at = expect({"val0": 20, "val1": 15, "val2": 10, "val3": 10}, "after ACTIVE")

        # FP A double-signs: EOTS key extracted, FP slashed, val0 tombstoned → removed from the set
        fp_a.commit_pub_rand(c0.latest_height() + 5, 50)  # randomness only for heights above the commit's
        start = fp_a.commits[-1].start
        c0.wait_for_height(start + 1, timeout=30)
        assert fp_a.vote_block(start)["result"] == "voted"
        assert fp_a.double_sign(start, bytes(32 * [0x66]))["result"] == "slashed"
        slashed_at = expect({"val1": 15, "val2": 10, "val3": 10}, "after the double sign")
        inactive = smart("mesh", {"virtual_staking": {"inactive_validators": {}}})["validators"]
        assert inactive == [{"validator": "val0", "tombstoned": True, "unbonded": "900000"}]

        # the chain goes on committing without val0 (node 0 now follows as a full node)
        net.wait_for_height(slashed_at + 3, timeout=30)

        # every height: CometBFT's set == the valset history (as REST serves it); no block changed
        # a third or more of the power, and the big changes were carried over several blocks
        class Backend:
            chain_id = net.chain_id

            def query(self, path: str, data: bytes):
                code, value, log, _ = c0.abci_query(path, data)
                return code, value, log

        api = RestApi(Backend())
        by_key = {pk: name for name, pk in val.items()}
        history = []
        for height in range(1, slashed_at + 1):
            rest = api.get(f"/cosmos/base/tendermint/v1beta1/validatorsets/{height}", {})
            ours = {v["pub_key"]["key"]: int(v["voting_power"]) for v in rest["validators"]}
            assert ours == comet_powers(c0, height), f"height {height}"
            history.append({by_key[k]: p for k, p in ours.items()})
        for before, after in zip(history, history[1:]):
            total = sum(before.values())
            change = sum(abs(after.get(v, 0) - before.get(v, 0)) for v in set(before) | set(after))
            assert 3 * change < total, (before, after)
        assert {"val0": 2, "val1": 15, "val2": 10, "val3": 10} in history  # −20 capped at 18, then −2
        # CometBFT's /validators answers for the next height (latest + 1), where updates land
        assert history.index({"val0": 20, "val1": 15, "val2": 10, "val3": 10}) + 1 <= active_at + 1
        latest = api.get("/cosmos/base/tendermint/v1beta1/validatorsets/latest", {})
        assert {v["pub_key"]["key"]: int(v["voting_power"]) for v in latest["validators"]} == \
            {val["val1"]: 15, val["val2"]: 10, val["val3"]: 10}
        assert all(v["address"].startswith("bbnvalcons1") for v in latest["validators"])
