"""Acceptance: the finality module's state (randomness commitments, votes, evidence, slashed FPs)
and the mesh slashing it caused survive a restart of the chain from its home directory, and the
restarted node goes on: the honest FP keeps voting with its committed randomness, the slashed one
stays refused, an old vote is still a duplicate."""

from __future__ import annotations

from pathlib import Path

import pytest

from btc_staking.keys import secret_even_y
from btcmesh.finality_provider import AppChannel, ChainRejected, FinalityProvider
from cosmos_chain.app import ChainApp
from mesh_chain_helpers import Chain, Key, StubRegistry

pytestmark = pytest.mark.timeout(120)

ADMIN, OP_A, OP_B, RELAYER = (Key.from_seed(40 + i) for i in range(4))
SK_A, SK_B = ((0xACC0 + i).to_bytes(32, "big") for i in range(2))
MESH_GENESIS = {"admin": ADMIN.address, "price": "2", "discount": "0.25", "unbonding_period": 1000}
STAKER = "5c" * 32


def _fp(chain: Chain, sk: bytes, op: Key) -> FinalityProvider:
    return FinalityProvider(sk, AppChannel(chain.app, op.wallet, deliver=lambda tx: chain.block([tx])[0]), b"acc")


def _app_hash(chain: Chain, height: int) -> bytes:
    """Block ``height``'s header app hash (what votes sign)."""
    return bytes.fromhex(chain.app.get_block(height)["app_hash"])


def _result_hash(chain: Chain, height: int) -> bytes:
    return bytes.fromhex(chain.app.get_block(height)["result_app_hash"])


def _snapshot(chain: Chain, fps: list[FinalityProvider], heights: list[int]) -> dict:
    q = lambda m: chain.query("finality", m)  # noqa: E731
    snap = {"evidence": q({"list_evidence": {}}), "slashed": q({"slashed_finality_providers": {}})}
    for fp in fps:
        snap[f"commits/{fp.btc_pk_hex}"] = q({"pub_rand_commits": {"fp_btc_pk": fp.btc_pk_hex}})
        snap[f"is_slashed/{fp.btc_pk_hex}"] = q({"is_slashed": {"fp_btc_pk": fp.btc_pk_hex}})
    for h in heights:
        snap[f"votes/{h}"] = q({"votes_at_height": {"height": h}})
        snap[f"apphash/{h}"] = q({"block_app_hash": {"height": h}})
    for n in (1, 2):
        snap[f"mesh/{n}"] = chain.query("mesh", {"adapter": {"delegation": {"staking_tx_hash": f"{n:064x}"}}})
    return snap


def test_finality_state_survives_a_restart_and_the_chain_goes_on(tmp_path: Path) -> None:
    home = tmp_path / "node"
    lenient = {"params": {"signed_blocks_window": 1000, "max_missed": 999}}  # votes come late here
    chain = Chain.start([ADMIN, OP_A, OP_B, RELAYER], {"mesh": MESH_GENESIS, "finality": lenient},
                        modules=[StubRegistry()], home=home)
    fp_a, fp_b = _fp(chain, SK_A, OP_A), _fp(chain, SK_B, OP_B)
    for n, (op, fp, val) in enumerate(((OP_A, fp_a, "valA"), (OP_B, fp_b, "valB")), start=1):
        chain.ok(op, "btc_staking", {"create_finality_provider": {"btc_pk": fp.btc_pk_hex, "validator": val}})
        chain.ok(RELAYER, "btc_staking", {"set_status": {"delegation": {
            "staking_tx_hash": f"{n:064x}", "staker_btc_pk": STAKER, "fp_btc_pk_list": [fp.btc_pk_hex],
            "staking_value": 1_000_000}, "status": "ACTIVE"}})
    start = chain.app.last_height + 3  # above the heights of the two commit blocks
    fp_a.commit_pub_rand(start, 50)
    fp_b.commit_pub_rand(start, 50)
    chain.block()
    chain.block()
    voted = [start, start + 1]
    for h in voted:
        assert fp_a.vote(h, _app_hash(chain, h))["result"] == "voted"
        assert fp_b.vote(h, _app_hash(chain, h))["result"] == "voted"
    out = fp_a.double_sign(start + 1, bytes(32 * [0x13]))
    assert out["result"] == "slashed" and out["extracted_btc_sk"] == secret_even_y(SK_A).hex()
    before = _snapshot(chain, [fp_a, fp_b], voted)
    assert len(before["evidence"]["evidence"]) == 1 and before[f"is_slashed/{fp_a.btc_pk_hex}"]["slashed"]
    assert before["mesh/1"]["delegation"]["status"] == "SLASHED"
    assert before["mesh/2"]["delegation"]["status"] == "ACTIVE"
    info = chain.app.info()

    # restart: a new ChainApp on the same home directory
    chain.app.close()
    chain.app = ChainApp(chain.app.chain_id, home, modules=[StubRegistry()])
    assert chain.app.info() == info  # the Info handshake: persisted height and app hash
    assert _snapshot(chain, [fp_a, fp_b], voted) == before

    # the restarted chain goes on with the persisted state
    fp_a.chain = AppChannel(chain.app, OP_A.wallet, deliver=lambda tx: chain.block([tx])[0])
    fp_b.chain = AppChannel(chain.app, OP_B.wallet, deliver=lambda tx: chain.block([tx])[0])
    assert fp_b.chain.submit(fp_b.vote_msg(voted[0], _app_hash(chain, voted[0])))["result"] == "duplicate"
    nxt = chain.app.last_height - 1
    assert fp_b.vote(nxt, _app_hash(chain, nxt))["result"] == "voted"  # randomness committed before the restart
    with pytest.raises(ChainRejected, match="is slashed"):
        fp_a.vote(nxt, _app_hash(chain, nxt))
    assert chain.query("finality", {"list_evidence": {}}) == before["evidence"]
    # every block before and after the restart replays to the same app hashes on a fresh app
    assert chain.replay(modules=[StubRegistry()]) == [_result_hash(chain, b.height) for b in chain.blocks]
