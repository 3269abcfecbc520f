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
