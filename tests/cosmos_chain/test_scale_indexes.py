"""The registry's scale indexes (issue 13), checked against a recomputation from the records:

* ``fp_active_sat/<pk>``: the per-FP ACTIVE sum that ``active_sat`` now reads in O(1) equals the sum over
  the FP's delegations at every step (activation, expiry, slashing);
* ``expires/<h>/<txid>``: a live delegation is indexed under the tip height at which it expires and leaves
  the index when it does (a tip move reads only the due entries);
* ``by_status/<status>/<txid>``: ``delegations {status}`` reads only the delegations in that status;
* ``delegations_updated``: the change feed returns every delegation exactly once, under the chain height of
  its last change, ordered and paginated, and only what changed after a given height."""

from __future__ import annotations

import json

import pytest

import test_chain_registry as reg_world  # the registry test's World (BTC chain + ChainApp + helpers)
from chain_helpers import UNBONDING_TIME

pytestmark = pytest.mark.timeout(180)

REG = reg_world.REG


@pytest.fixture
def world() -> reg_world.World:
    w = reg_world.World()
    w.register_fp("a")
    return w


def _recomputed_active_sat(world, fp_hex: str) -> int:
    ctx = world.chain.app.query_context()
    reg = world.chain.app.module(REG)
    return sum(d["staking_value"] for d in reg.delegations_by_fp(ctx, fp_hex) if d["status"] == "ACTIVE")


def _fp_active(world, fp_hex: str) -> int:
    return world.chain.query(REG, {"finality_provider": {"btc_pk": fp_hex}})["active_sat"]


def _feed(world, after: int, limit: int = 100) -> list[dict]:
    out, cursor = [], None
    for _ in range(50):
        body = {"after_height": after, "limit": limit}
        if cursor:
            body["start_after"] = cursor
        reply = world.chain.query(REG, {"delegations_updated": body})
        out.extend(reply["delegations"])
        cursor = reply["next"]
        if cursor is None:
            return out
    raise AssertionError("change feed did not end")


def test_counters_expiry_index_and_change_feed_follow_the_records(world):
    fp = reg_world.FPA.hex()
    s1 = world.stake("idx-1", value=100_000, time=12)
    s2 = world.stake("idx-2", value=250_000, time=200)
    for s in (s1, s2):
        world.create(s)
        assert _fp_active(world, fp) == _recomputed_active_sat(world, fp)
        world.covenants(s)
        assert _fp_active(world, fp) == _recomputed_active_sat(world, fp)
    assert _fp_active(world, fp) == 350_000

    keys = world.chain.module_state(REG)
    d1 = world.delegation(s1)
    expiry = d1["end_height"] - UNBONDING_TIME
    assert f"m/{REG}/expires/{expiry:010d}/{s1.staking_tx_hash}" in keys

    # the change feed: each delegation once, ordered by (height of last change, txid)
    feed = _feed(world, 0)
    assert sorted(d["staking_tx_hash"] for d in feed) == sorted([s1.staking_tx_hash, s2.staking_tx_hash])
    assert [(d["updated_height"], d["staking_tx_hash"]) for d in feed] == sorted(
        (d["updated_height"], d["staking_tx_hash"]) for d in feed)
    assert _feed(world, 0, limit=1) == feed                               # paginated, same result
    mark = world.chain.app.last_height
    assert _feed(world, mark) == []

    # s1 expires on a tip move: it leaves the expiry index, the counter follows, the feed shows only s1
    world.mine(n=expiry - world.btc.tip.height)
    assert world.status(s1) == "EXPIRED" and world.status(s2) == "ACTIVE"
    keys = world.chain.module_state(REG)
    assert not any(k.startswith(f"m/{REG}/expires/") and k.endswith(s1.staking_tx_hash) for k in keys)
    assert _fp_active(world, fp) == _recomputed_active_sat(world, fp) == 250_000
    changed = _feed(world, mark)
    assert [d["staking_tx_hash"] for d in changed] == [s1.staking_tx_hash]
    assert changed[0]["status"] == "EXPIRED" and changed[0]["updated_height"] > mark
    assert len(_feed(world, 0)) == 2                                      # still one entry per delegation

    # the status index: `delegations {status}` returns exactly the records in that status, paginated
    for status in ("ACTIVE", "EXPIRED", "PENDING"):
        want = sorted(h for h in (s1.staking_tx_hash, s2.staking_tx_hash) if world.status(
            s1 if h == s1.staking_tx_hash else s2) == status)
        got, cursor = [], None
        for _ in range(10):
            body = {"status": status, "limit": 1, **({"start_after": cursor} if cursor else {})}
            reply = world.chain.query(REG, {"delegations": body})
            got += [d["staking_tx_hash"] for d in reply["delegations"]]
            cursor = reply["next_key"]
            if cursor is None:
                break
        assert got == want, status

    # slashing the FP: every delegation SLASHED, the counter drops to zero
    world.chain.ok(reg_world.SUBMITTER, "slash_trigger", {"slash": {"btc_pk": fp, "height": 7}})
    assert _fp_active(world, fp) == _recomputed_active_sat(world, fp) == 0

    # many records in one query (what the checkpoint service asks before a batch), in order, null if unknown
    by_hash = world.chain.query(REG, {"delegations_by_hash": {"staking_tx_hashes": [
        s2.staking_tx_hash, "ab" * 32, s1.staking_tx_hash]}})["delegations"]
    assert [d and d["staking_tx_hash"] for d in by_hash] == [s2.staking_tx_hash, None, s1.staking_tx_hash]
    for bad in ({"staking_tx_hashes": []}, {"staking_tx_hashes": "x"}, {"staking_tx_hashes": ["zz"]}):
        assert world.chain.app.query("/smart/" + REG, json.dumps({"delegations_by_hash": bad}).encode())[0] != 0

    for bad in ({"after_height": -1}, {"after_height": 0, "limit": 0},
                {"after_height": 0, "start_after": {"height": "x"}}):
        assert "must" in world.chain.app.query(
            "/smart/" + REG, json.dumps({"delegations_updated": bad}).encode())[2]
