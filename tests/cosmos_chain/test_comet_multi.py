"""Four CometBFT validators on loopback, each with its own ChainApp (own home) and ABCI server.

Checks consensus on the application: a tx sent to one node is committed on all, every app
computes the same app hash at every height, the chain survives one of four validators being
down (3/4 > 2/3 of the voting power), and the stopped validator catches up when it returns.
"""

from __future__ import annotations

from typing import Iterator

import pytest
from cmt_helpers import Key, make_genesis, msg_send, query_account, query_balance, sign_tx, signed_send

from cosmos_chain.app import ChainApp
from cosmos_chain.comet import CometNetwork, CometRPCError, wait_until

pytestmark = pytest.mark.timeout(180)

ALICE, BOB, CAROL = Key.from_seed(11), Key.from_seed(12), Key.from_seed(13)
N_VALIDATORS = 4
BLOCK_ID_FLAG_ABSENT, BLOCK_ID_FLAG_COMMIT = 1, 2


@pytest.fixture(scope="module")
def net4(tool_path, tmp_path_factory) -> Iterator[CometNetwork]:
    """A running 4-validator testnet; always stopped."""
    network = CometNetwork(
        tool_path("cometbft"), N_VALIDATORS, ChainApp, tmp_path_factory.mktemp("comet4"),
        app_genesis=make_genesis([ALICE, BOB]), block_time=0.2,
    )  # fmt: skip
    with network.start(timeout=90):
        yield network


def _common_hashes(net: CometNetwork, nodes: list[int]) -> dict[int, bytes]:
    """Heights every listed node's app committed, checked equal across them; height → app hash."""
    servers = [net.nodes[i].server for i in nodes]
    assert all(s is not None for s in servers)
    seen = [s.committed_hashes() for s in servers]  # type: ignore[union-attr]
    common = set.intersection(*(set(x) for x in seen))
    out: dict[int, bytes] = {}
    for h in sorted(common):
        hashes = {x[h] for x in seen}
        assert len(hashes) == 1, f"app hashes diverge at height {h}: {[x.hex() for x in hashes]}"
        out[h] = hashes.pop()
    return out


def test_validators_are_peers_and_all_vote(net4: CometNetwork) -> None:
    """Each node sees the other three as peers; all 4 validators sign blocks."""
    for node in net4.nodes:  # peers dial each other in the background: 3 of 4 suffice to start
        wait_until(lambda: int(node.client.call("net_info")["n_peers"]) == N_VALIDATORS - 1, 30, "full mesh")
        assert node.server is not None and node.server.errors == []
    assert int(net4.client.call("validators")["total"]) == N_VALIDATORS

    addresses = {v["address"] for v in net4.client.call("validators")["validators"]}
    signers: set[str] = set()

    def all_signed() -> bool:
        # a commit holds the precommits seen by +2/3; under load one validator may be late for a
        # given block, so collect signers over recent blocks until every validator has signed
        height = net4.client.latest_height()
        for h in range(max(1, height - 5), height + 1):
            sigs = net4.client.call("commit", height=str(h))["signed_header"]["commit"]["signatures"]
            signers.update(s["validator_address"] for s in sigs if s["block_id_flag"] == BLOCK_ID_FLAG_COMMIT)
        return signers == addresses

    wait_until(all_signed, 30, "precommits from all 4 validators", interval=0.3)


def test_tx_to_one_node_commits_everywhere(net4: CometNetwork) -> None:
    """A tx broadcast to node 1 is in the same block on all nodes; app state and hashes agree."""
    sender = net4.broadcaster(1)
    chain_id = net4.chain_id
    before = query_balance(sender, CAROL.address)
    raw = signed_send(sender, chain_id, ALICE, CAROL.address, 77_000)
    res = sender.broadcast_tx_sync(raw)
    assert res.code == 0, res.log
    found = [node.client.wait_for_tx(res.hash, timeout=30) for node in net4.nodes]
    assert {int(f["height"]) for f in found} == {int(found[0]["height"])}
    assert all(int(f["tx_result"].get("code", 0)) == 0 for f in found)
    height = int(found[0]["height"])
    net4.wait_for_height(height + 1, timeout=30)
    for node in net4.nodes:
        assert query_balance(node.client, CAROL.address) == before + 77_000
        assert node.client.block_app_hash(height + 1) == net4.nodes[0].client.block_app_hash(height + 1)
    hashes = _common_hashes(net4, list(range(N_VALIDATORS)))
    assert height in hashes and height + 1 in hashes
    assert net4.nodes[2].client.block_app_hash(height + 1) == hashes[height]
    # the replica's mempool saw the tx by gossip: a replay to another node is refused too
    with pytest.raises(CometRPCError, match="already exists in cache"):
        net4.broadcaster(3).broadcast_tx_sync(raw)


def test_txs_entering_at_different_nodes(net4: CometNetwork) -> None:
    """Two accounts each send 3 in-flight txs through different nodes; all commit identically everywhere."""
    dest = Key.from_seed(14).address
    before = query_balance(net4.client, dest)
    hashes: list[str] = []
    for key, node in ((ALICE, 0), (BOB, 2)):
        client = net4.broadcaster(node)
        acct = query_account(client, key.address)
        for i in range(3):
            raw = sign_tx(key, [msg_send(key, dest, 1_000 + i)], sequence=acct.sequence + i,
                          account_number=acct.account_number, chain_id=net4.chain_id)
            res = client.broadcast_tx_sync(raw)
            assert res.code == 0, res.log
            hashes.append(res.hash)
    for node in net4.nodes:
        found = [node.client.wait_for_tx(h, timeout=30) for h in hashes]
        assert all(int(f["tx_result"].get("code", 0)) == 0 for f in found)
    last = max(int(f["height"]) for f in found)
    net4.wait_for_height(last + 1, timeout=30)
    for node in net4.nodes:
        assert query_balance(node.client, dest) == before + 2 * (1_000 + 1_001 + 1_002)
    assert last in _common_hashes(net4, list(range(N_VALIDATORS)))


def test_chain_survives_one_validator_down_and_it_catches_up(net4: CometNetwork) -> None:
    """Stop validator 3: the others keep committing (txs included); on restart it catches up."""
    down = net4.nodes[3]
    live = net4.nodes[:3]
    down.stop()
    stopped_at = max(n.client.latest_height() for n in live)
    client = live[0].client
    before_bob = query_balance(client, BOB.address)
    committed = client.submit(signed_send(client, net4.chain_id, ALICE, BOB.address, 5_000), timeout=30)
    assert int(committed["tx_result"].get("code", 0)) == 0
    tx_height = int(committed["height"])
    target = max(tx_height, stopped_at) + 3
    wait_until(lambda: min(n.client.latest_height() for n in live) >= target, 40, f"3 live validators at {target}")
    commit = client.call("commit", height=str(tx_height))["signed_header"]["commit"]["signatures"]
    flags = sorted(s["block_id_flag"] for s in commit)
    assert flags == [BLOCK_ID_FLAG_ABSENT] + [BLOCK_ID_FLAG_COMMIT] * 3  # validator 3 was down; 3 of 4 sufficed

    down.start(net4.app_factory, net4.log_level)
    resume_from = down.start_height
    assert resume_from <= stopped_at + 1
    catch_up = max(n.client.latest_height() for n in live) + 2
    net4.wait_for_height(catch_up, timeout=60)
    assert down.server is not None and down.server.info_responses[0].height == resume_from
    assert min(down.server.committed_hashes()) == resume_from + 1  # synced the missing blocks, not from genesis
    hashes = _common_hashes(net4, [0, 1, 2, 3])
    assert tx_height in hashes and catch_up in hashes
    assert query_balance(down.client, BOB.address) == before_bob + 5_000
    assert query_balance(down.client, ALICE.address) == query_balance(client, ALICE.address)
    assert down.client.tx(committed["hash"]) is not None
