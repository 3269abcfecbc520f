"""Deep BTC reorgs leave no phantom stake (issue 12): when the light client's main chain no longer holds a
delegation's staking-tx block, the registry marks it REORGED, its virtual stake leaves the mesh through
the unstake path, the API shows REORGED, and once the tx is k deep on the main chain again a new
inclusion proof makes it ACTIVE: the mesh reuses its collateral (no second mint) and stakes it again
once the earlier unstake's unbond has matured (WAITING until then)."""

from __future__ import annotations

import pytest
from chain_helpers import K
from test_chain_registry import LC, REG, SUBMITTER, World

from api.chain_source import delegation_from_json
from api.states import DelegationState, derive_state

pytestmark = pytest.mark.timeout(120)


def _mesh(w: World, h: str) -> dict:
    return w.chain.query("mesh", {"adapter": {"delegation": {"staking_tx_hash": h}}})["delegation"]


def _relay_branch(w: World, tip) -> None:
    """Make the branch ending at ``tip`` the BTC main chain and relay the headers the light client lacks."""
    w.btc.reorg_to(tip)
    new = [b for b in w.btc.best if w.chain.query(LC, {"header_by_hash": {"hash": b.hash}})["hash"] is None]
    w.chain.ok(SUBMITTER, LC, {"insert_headers": {"headers": [b.raw for b in new]}})
    assert w.chain.query(LC, {"tip": {}})["hash"] == tip.hash


def _api_state(w: World, h: str) -> DelegationState:
    d = w.chain.query(REG, {"delegation": {"staking_tx_hash": h}})["delegation"]
    return derive_state(delegation_from_json(d), w.chain.query(LC, {"tip": {}})["height"]).state


def test_deep_reorg_marks_reorged_unstakes_and_the_tx_can_be_proven_again() -> None:
    w = World()  # the chain hooks: registry status changes reach the mesh
    w.register_fp("a", validator="valoper-a")
    s = w.stake("reorged-carol", value=300_000)
    w.create(s)
    w.covenants(s)
    h = s.staking_tx_hash
    assert w.status(s) == "ACTIVE" and _mesh(w, h)["staked_sat"] > 0
    fp = s.fps[0].hex() if hasattr(s, "fps") else w.delegation(s)["fp_btc_pk_list"][0]
    assert w.chain.query(REG, {"finality_provider": {"btc_pk": fp}})["active_sat"] == 300_000
    # a competing branch from below the lock's block, K + 3 blocks long, without the staking tx
    lock_block, _ = w.btc.find(s.staking_tx)
    parent = w.btc.by_hash[lock_block.header.prev_hash[::-1].hex()]
    fork = w.btc.mine_on(parent, n=(w.btc.tip.height - parent.height) + 3)
    _relay_branch(w, fork[-1])
    d = w.delegation(s)
    assert d["status"] == "REORGED" and d["reorged_block_hash"] == lock_block.hash
    assert w.chain.query(REG, {"finality_provider": {"btc_pk": fp}})["active_sat"] == 0
    m = _mesh(w, h)
    assert m["staked_sat"] == 0 and m["status"] == "UNBONDING"  # virtual stake left via the unstake path
    assert _api_state(w, h) == DelegationState.REORGED
    assert w.chain.query(REG, {"delegations": {"status": "REORGED"}})["delegations"][0]["staking_tx_hash"] == h
    # an old proof (block off the main chain) and an undelegation are refused while REORGED
    old = {"add_btc_delegation_inclusion_proof": {"staking_tx_hash": h, "inclusion_proof": {
        "block_hash": lock_block.hash, "index": 1, "proof": "00" * 32}}}
    assert "not on the BTC main chain" in w.fails(SUBMITTER, old)
    # the tx comes back on the main chain: once k deep it is proven again and ACTIVE
    again = w.btc.mine_on(w.btc.tip, [s.staking_tx], n=1 + K)
    _relay_branch(w, again[-1])
    assert w.status(s) == "REORGED"
    msg = {"add_btc_delegation_inclusion_proof": {"staking_tx_hash": h,
                                                  "inclusion_proof": w.btc.inclusion_proof(s.staking_tx)}}
    assert w.chain.ok(SUBMITTER, REG, msg)["status"] == "ACTIVE"
    d = w.delegation(s)
    assert d["start_height"] == again[0].height and d["inclusion_block_hash"] == again[0].hash
    assert w.chain.query(REG, {"finality_provider": {"btc_pk": fp}})["active_sat"] == 300_000
    assert _api_state(w, h) == DelegationState.ACTIVE
    m = _mesh(w, h)
    assert m["collateral_sat"] == 300_000  # one collateral per staking tx, not a second mint
    # the earlier unstake still holds the lien (Mesh cannot cancel an unbonding): WAITING, no virtual stake
    assert (m["status"], m["staked_sat"], m["pending_sat"], m["virtual_stake"]) == ("WAITING", 0, 300_000, 0)
    # once that unbond matures, the same collateral is staked again on the FP's validator
    w.chain.time += w.chain.query("mesh", {"config": {}})["params"]["unbonding_period"]
    w.chain.block()
    m = _mesh(w, h)
    assert (m["status"], m["staked_sat"], m["pending_sat"], m["collateral_sat"]) == ("ACTIVE", 300_000, 0, 300_000)
    vs = w.chain.query("mesh", {"adapter": {"validator_virtual_stake": {"validator": "valoper-a"}}})
    assert int(vs["virtual_stake"]) == m["virtual_stake"] > 0


def test_shallow_reorg_that_keeps_the_block_changes_nothing() -> None:
    w = World()
    w.register_fp("a", validator="valoper-a")
    s = w.stake("reorged-dave", value=200_000)
    w.create(s)
    w.covenants(s)
    fork = w.btc.mine_on(w.btc.best[-2], n=3)  # replaces only the tip, above the lock's block
    _relay_branch(w, fork[-1])
    assert w.status(s) == "ACTIVE" and w.delegation(s).get("reorged") in (None, False)
