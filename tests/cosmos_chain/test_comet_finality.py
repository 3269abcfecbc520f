"""Issue 9 under CometBFT: three validators run the finality module. FPs with 60 / 30 / 10 sats and
``max_active_finality_providers`` = 2 commit randomness and vote through signed txs at node 0; every
node stores the same voting-power table (the 10-sat FP left out, its vote refused), the first vote
alone (60 of 90) does not finalize, the second does, and all three apps agree on every app hash."""

from __future__ import annotations

import pytest

from btcmesh.finality_provider import CallableChannel, ChainRejected, FinalityProvider
from cosmos_chain.comet import CometClient, CometNetwork
from mesh_chain_helpers import Key, assert_apps_agree, comet_execute, comet_smart, make_genesis, stub_registry_app

pytestmark = pytest.mark.timeout(180)

ADMIN, RELAYER = Key.from_seed(90), Key.from_seed(91)
OPS = {n: Key.from_seed(92 + i) for i, n in enumerate("ABC")}
SKS = {n: (0xFC00 + i).to_bytes(32, "big") for i, n in enumerate("ABC")}
SATS = {"A": 60, "B": 30, "C": 10}
STAKER = "5e" * 32
FINALITY = {"params": {"max_active_finality_providers": 2, "signed_blocks_window": 1000, "max_missed": 999}}


def test_power_table_and_finalization_agree_on_three_cometbft_validators(tool_path, tmp_path) -> None:
    genesis = make_genesis([ADMIN, RELAYER, *OPS.values()], {"mesh": {"admin": ADMIN.address}, "finality": FINALITY})
    genesis.pop("genesis_time")
    net = CometNetwork(tool_path("cometbft"), 3, stub_registry_app, tmp_path / "net", app_genesis=genesis,
                       block_time=0.2)
    with net.start(timeout=90):
        c0 = net.nodes[0].client
        app0 = net.nodes[0].server.app  # type: ignore[union-attr]
        addresses = {n: app0.module(n).address for n in ("btc_staking", "finality")}

        def smart(contract: str, msg: dict, client: CometClient = c0):
            return comet_smart(client, contract, msg)

        def submit(key: Key, contract: str, msg: dict) -> dict:
            return comet_execute(c0, key, addresses[contract], msg, net.chain_id)

        fps = {n: FinalityProvider(SKS[n], CallableChannel(lambda m, n=n: submit(OPS[n], "finality", m),
                                                           lambda m: smart("finality", m)), b"comet-fin")
               for n in "ABC"}
        for i, (n, fp) in enumerate(fps.items(), start=1):
            submit(OPS[n], "btc_staking", {"create_finality_provider": {"btc_pk": fp.btc_pk_hex, "validator": "v" + n}})
            submit(RELAYER, "btc_staking", {"set_status": {"delegation": {
                "staking_tx_hash": f"{i:064x}", "staker_btc_pk": STAKER, "fp_btc_pk_list": [fp.btc_pk_hex],
                "staking_value": SATS[n]}, "status": "ACTIVE"}})
        start = c0.latest_height() + 30  # above the heights of the three commit blocks (0.2 s blocks)
        for fp in fps.values():
            fp.commit_pub_rand(start, 50)
        c0.wait_for_height(start + 1, timeout=30)

        want = [{"fp_btc_pk": fps["A"].btc_pk_hex, "voting_power": 60},
                {"fp_btc_pk": fps["B"].btc_pk_hex, "voting_power": 30}]
        with pytest.raises(ChainRejected, match="no voting power"):
            fps["C"].vote_block(start)
        assert fps["A"].vote_block(start)["result"] == "voted"
        assert smart("finality", {"block": {"height": start}})["status"] == "pending"  # 60 of 90: not > 2/3
        assert fps["B"].vote_block(start)["result"] == "voted"
        done = c0.latest_height()
        for node in net.nodes:
            node.client.wait_for_height(done, timeout=30)
            table = smart("finality", {"voting_power_table": {"height": start}}, node.client)
            assert (table["total_power"], table["finality_providers"]) == (90, want)
            assert smart("finality", {"last_finalized_height": {}}, node.client)["height"] == start
            assert smart("finality", {"block": {"height": start}}, node.client)["status"] == "finalized"
        assert_apps_agree(net, done, "all apps past the votes")
