"""Reorgs deeper than a lock's confirmations, on the EmbeddedNode (libbitcoinkernel picks the tip).

Documented behaviour (``checkpoint/service.py``): a lock removed *before* its attestation is never
attested (also when the reorg lands between following and submitting); a lock removed *after* its
attestation is flagged ``reorged``, the chain's light client follows the heavier branch and the registry
marks the delegation REORGED; a lock re-mined on the new branch is attested (or proven again with
``add_btc_delegation_inclusion_proof``) once it is k deep there. The same holds
when the reorg happens while the service is stopped."""

from __future__ import annotations

import pytest


from cp_e2e_helpers import E2E, K

from checkpoint.store import submission_key


@pytest.fixture
def env(tmp_path):
    e = E2E(tmp_path)
    yield e
    e.close()


def _fork_without(env: E2E, lock_height: int, n: int) -> list[str]:
    """Mine ``n`` empty blocks on the parent of the lock's block (the kernel switches to them when heavier)."""
    parent = env.node.get_block_hash(lock_height - 1)
    return env.node.mine_fork(parent, n, env.miner.script_pubkey)


def _lc_follows_node(env: E2E) -> None:
    assert env.light_client_tip() == (env.node.get_block_count(), env.node.get_best_block_hash())


def test_reorg_before_attestation_removes_the_lock_it_is_never_attested(env):
    svc = env.service()
    try:
        d = env.lock(svc, "pre")
        (lock_block,) = env.mine(1)
        lock_height = env.node.get_block_count()
        env.mine(K - 1)                                        # depth k-1: not due yet
        assert svc.run_once().submitted == []
        key = submission_key("delegation", d.staking_tx_hash)
        assert svc.store.btc_tx(d.staking_tx_hash).block_hash == lock_block

        new = _fork_without(env, lock_height, K + 2)           # deeper than its confirmations
        assert env.node.get_best_block_hash() == new[-1] and env.node.get_tx_block(d.staking_tx_hash) is None
        rep = svc.run_once()
        assert lock_block in rep.disconnected and rep.connected == new
        assert rep.submitted == [] and svc.store.submission(key).status == "waiting"
        assert svc.store.btc_tx(d.staking_tx_hash).block_hash is None
        _lc_follows_node(env)
        for _ in range(3):
            assert svc.run_once().submitted == []
        assert env.chain_msgs("create_btc_delegation") == [] and env.delegation(d.staking_tx_hash) is None

        # the staking tx is mined again on the new branch: attested once it is k deep there
        if d.staking_tx_hash not in env.node.get_mempool():   # (the node normally resurrects it)
            env.broadcast(d.staking_tx)
        env.mine(1)
        (new_block, _) = env.node.get_tx_block(d.staking_tx_hash)
        env.mine(K)
        rep = env.rounds(svc, lambda r: key in r.submitted)
        (msg,) = env.chain_msgs("create_btc_delegation")
        assert msg["code"] == 0 and msg["body"]["inclusion_proof"]["block_hash"] == new_block
    finally:
        svc.close()


def test_reorg_between_follow_and_submit_is_caught_by_the_recheck(env):
    svc = env.service()
    try:
        d = env.lock(svc, "race")
        env.mine(1)
        lock_height = env.node.get_block_count()
        env.mine(K)
        svc.follow()                                           # the store now says: k deep, due
        svc.relay_headers()
        key = submission_key("delegation", d.staking_tx_hash)
        assert [s.key for s in svc.store.due_submissions(env.node.get_block_count(), K, 1e18)] == [key]
        _fork_without(env, lock_height, K + 2)                 # the reorg lands right now
        rep = svc.submit_due()                                 # no follow first
        assert rep.skipped_not_on_best_chain == [key] and rep.submitted == []
        assert env.chain_msgs("create_btc_delegation") == []
        assert svc.store.submission(key).attempts == 0
    finally:
        svc.close()


def test_reorg_after_attestation_flags_it_reorged(env):
    svc = env.service()
    try:
        d = env.lock(svc, "post")
        (lock_block,) = env.mine(1)
        lock_height = env.node.get_block_count()
        env.mine(K)
        key = submission_key("delegation", d.staking_tx_hash)
        env.rounds(svc, lambda r: key in r.submitted)
        assert env.delegation(d.staking_tx_hash) is not None

        new = _fork_without(env, lock_height, K + 3)           # deeper than the lock's k+1 confirmations
        rep = svc.run_once()
        assert lock_block in rep.disconnected and rep.reorged_attested == [key]
        assert [s.key for s in svc.reorged_attestations()] == [key]
        assert svc.store.submission(key).status == "reorged"
        assert rep.submitted == [] and rep.headers_relayed == len(new)
        _lc_follows_node(env)                                  # the light client took the heavier branch
        assert env.client.query(env.light_client, {"depth": {"hash": lock_block}})["depth"] == -1
        # still flagged on the next rounds, and nothing is (re)submitted
        assert svc.run_once().submitted == [] and svc.store.submission(key).status == "reorged"
        assert len(env.chain_msgs("create_btc_delegation")) == 1
        # the registry marked it REORGED (its block left the light client's main chain; issue 12)
        assert env.delegation(d.staking_tx_hash)["status"] == "REORGED"

        # the lock is mined again on the new branch: once k deep there it is proven again
        if d.staking_tx_hash not in env.node.get_mempool():
            env.broadcast(d.staking_tx)
        env.mine(1 + K)
        rep = env.rounds(svc, lambda r: key in r.submitted)
        sub = svc.store.submission(key)
        new_block = env.node.get_tx_block(d.staking_tx_hash)[0]
        assert sub.status == "done" and sub.attested_block_hash == new_block != lock_block
        (proof,) = env.chain_msgs("add_btc_delegation_inclusion_proof")
        assert proof["code"] == 0 and proof["body"]["inclusion_proof"]["block_hash"] == new_block
        record = env.delegation(d.staking_tx_hash)
        assert record["status"] == "PENDING" and record["inclusion_block_hash"] == new_block  # no covenant quorum here
        assert len(env.chain_msgs("create_btc_delegation")) == 1   # never re-sent
    finally:
        svc.close()


def test_reorg_while_the_service_is_stopped(env):
    store = env.tmp / "cp.sqlite"
    svc = env.service(store)
    a = env.lock(svc, "stopped-attested")
    (block_a,) = env.mine(1)
    height_a = env.node.get_block_count()
    env.mine(K)
    key_a = submission_key("delegation", a.staking_tx_hash)
    env.rounds(svc, lambda r: key_a in r.submitted)
    b = env.lock(svc, "stopped-pending")                     # in the mempool, mined next
    env.mine(1)
    svc.run_once()                                             # b seen at depth 0
    key_b = submission_key("delegation", b.staking_tx_hash)
    assert svc.store.submission(key_b).status == "waiting"
    svc.close()

    _fork_without(env, height_a, K + 5)                        # both locks leave the best chain
    assert env.node.get_tx_block(a.staking_tx_hash) is None and env.node.get_tx_block(b.staking_tx_hash) is None

    svc = env.service(store)                                   # restart on the same file
    try:
        rep = svc.run_once()
        assert block_a in rep.disconnected and rep.reorged_attested == [key_a]
        assert svc.store.submission(key_a).status == "reorged"
        assert svc.store.submission(key_b).status == "waiting" and rep.submitted == []
        _lc_follows_node(env)
        assert env.delegation(b.staking_tx_hash) is None
        assert [m["body"]["staking_tx"] for m in env.chain_msgs("create_btc_delegation")] == [
            a.staking_tx.serialize().hex()]
    finally:
        svc.close()
