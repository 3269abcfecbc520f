"""The same service, built by ``checkpoint.runner.build_service``, against a real btcd process
(``regtest.btcd.BtcdProcess`` through ``RpcBackend``, btcd dialect): the lock is attested and
becomes ACTIVE on the chain. Needs the btcd binary (``tool_path``: a skip locally, a failure in CI)."""

from __future__ import annotations

import pytest


from cp_e2e_helpers import E2E, K, STAKING_TIME, VALUE, miner_wallet_address

from checkpoint.store import submission_key


@pytest.fixture
def btcd_env(tool_path, tmp_path):
    from regtest.btcd import BtcdProcess

    proc = BtcdProcess(tool_path("btcd"), tmp_path / "btcd", miner_wallet_address())
    proc.start()
    try:
        e = E2E(tmp_path, backend=proc.backend(), on_close=proc.stop, premine=101)
    except BaseException:
        proc.stop()
        raise
    yield e
    e.close()


def test_lock_on_btcd_attested_and_active(btcd_env):
    env = btcd_env
    svc = env.service()
    try:
        base_h = env.base["base"]["height"]
        assert svc.start_height == base_h == env.node.get_block_count()
        staker = env.staker("btcd")
        d = env.new_lock(staker)
        svc.register_intent(staker.pk, list(d.fp_pks), STAKING_TIME, VALUE, env.material(staker, d))
        assert env.broadcast(d.staking_tx) == d.staking_tx_hash
        env.mine(1)
        lock_height = env.node.get_block_count()
        env.mine(K)
        key = submission_key("delegation", d.staking_tx_hash)
        env.rounds(svc, lambda r: key in r.submitted)
        assert env.light_client_tip() == (env.node.get_block_count(), env.node.get_best_block_hash())
        (msg,) = env.chain_msgs("create_btc_delegation")
        assert msg["code"] == 0 and msg["body"]["inclusion_proof"]["block_hash"] == env.node.get_block_hash(lock_height)
        record = env.delegation(d.staking_tx_hash)
        assert record["status"] == "PENDING" and record["start_height"] == lock_height
        env.covenant_quorum(d.staking_tx_hash)
        assert env.delegation(d.staking_tx_hash)["status"] == "ACTIVE"
    finally:
        svc.close()


def _competing_chain(env: E2E, parent_height: int, n: int) -> list[str]:
    """``n`` empty blocks on the block at ``parent_height``, handed to btcd with ``submitblock``: a competing
    chain that btcd switches to once it has more work."""
    from btc_staking.headers import BlockHeader
    from regtest.mining import build_block

    prev = env.node.get_block_hash(parent_height)
    ts = BlockHeader.parse(env.node.get_block_header(env.node.get_best_block_hash())).timestamp
    out = []
    for i in range(n):
        header, _, raw = build_block(bytes.fromhex(prev)[::-1], parent_height + 1 + i, ts + 1 + i,
                                     env.miner.script_pubkey, [], fees=0, extra_nonce=7000 + i)
        assert env.node.call("submitblock", raw.hex()) in (None, "")
        prev = header.hash()[::-1].hex()
        out.append(prev)
    return out


def test_deep_reorg_on_btcd_marks_the_delegation_reorged_then_it_is_proven_again(btcd_env):
    """Issue 12 on a real btcd: a competing chain deeper than k drops the lock's block; the registry marks
    the ACTIVE delegation REORGED; the lock, mined again and k deep, is proven again and ACTIVE."""
    env = btcd_env
    svc = env.service()
    try:
        d = env.lock(svc, "btcd-reorged")
        (lock_block,) = env.mine(1)
        lock_height = env.node.get_block_count()
        env.mine(K)
        key = submission_key("delegation", d.staking_tx_hash)
        env.rounds(svc, lambda r: key in r.submitted)
        env.covenant_quorum(d.staking_tx_hash)
        assert env.delegation(d.staking_tx_hash)["status"] == "ACTIVE"

        fork = _competing_chain(env, lock_height - 1, env.node.get_block_count() - lock_height + 3)
        assert env.node.get_best_block_hash() == fork[-1]
        assert env.node.get_block_hash(lock_height) != lock_block
        env.rounds(svc, lambda r: key in r.reorged_attested)
        assert env.light_client_tip() == (env.node.get_block_count(), fork[-1])
        record = env.delegation(d.staking_tx_hash)
        assert record["status"] == "REORGED" and record["reorged_block_hash"] == lock_block

        if d.staking_tx_hash not in env.node.get_mempool():  # btcd normally puts it back into its mempool
            env.broadcast(d.staking_tx)
        env.mine(1 + K)
        env.rounds(svc, lambda r: key in r.submitted)
        record = env.delegation(d.staking_tx_hash)
        assert record["status"] == "ACTIVE" and record["inclusion_block_hash"] != lock_block
        assert record["inclusion_block_hash"] == env.node.get_block_hash(record["start_height"])
    finally:
        svc.close()
