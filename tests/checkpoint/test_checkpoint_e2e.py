"""Checkpoint service end to end: EmbeddedNode (libbitcoinkernel) → service → LocalChain over REST
(unmodified cosmpy LedgerClient) → the staking registry shows the delegation ACTIVE; then the
staker unbonds and withdraws on Bitcoin and the service reports both. Plus the chain's rejections
(forged proof, shallow depth, wrong script, replay, bad signatures) with their reasons."""

from __future__ import annotations

import pytest


from cp_e2e_helpers import E2E, K, STAKING_TIME, UNBONDING_TIME, VALUE

from btc_staking.tx import p2tr_script
from checkpoint.chain_client import ChainClient
from checkpoint.errors import ChainError, InvalidInputError
from checkpoint.runner import chain_info, connect
from checkpoint.store import submission_key


@pytest.fixture
def env(tmp_path):
    e = E2E(tmp_path)
    yield e
    e.close()


def test_runner_reads_params_k_and_light_client_base_from_the_chain(env):
    info = chain_info(env.client)
    assert info.chain_id == "btcmesh-cp-e2e"
    assert info.params == env.params and info.k == K
    base_h = env.base["base"]["height"]
    assert info.light_client_base == base_h == env.node.get_block_count()
    assert info.light_client_tip == (base_h, env.node.get_block_hash(base_h))
    svc = env.service()
    try:
        assert svc.start_height == base_h and svc.k == K
    finally:
        svc.close()


def test_a_contract_error_in_a_query_is_not_transient(env):
    assert env.delegation("ab" * 32) is None                          # "delegation ... not found"
    with pytest.raises(ChainError) as info:
        env.client.query(env.registry, {"delegation": {"staking_tx_hash": "zz"}})
    assert not info.value.transient and "staking_tx_hash" in info.value.reason and info.value.code == 400


def test_lock_attested_then_active_unbonded_and_withdrawn(env):
    svc = env.service()
    try:
        staker = env.staker()
        d = env.new_lock(staker)
        txid = d.staking_tx_hash
        svc.register_intent(staker.pk, list(d.fp_pks), STAKING_TIME, VALUE, env.material(staker, d))
        env.broadcast(d.staking_tx)
        (block_hash,) = env.mine(1)
        lock_height = env.node.get_block_count()
        key = submission_key("delegation", txid)

        # depth 0 .. k-1: followed and relayed, not attested
        for _ in range(K):
            rep = svc.run_once()
            assert rep.submitted == [] and rep.relay_error is None and rep.dead_lettered == []
            assert svc.store.submission(key).status == "waiting"
            assert env.light_client_tip() == (env.node.get_block_count(), env.node.get_best_block_hash())
            env.mine(1)
        assert env.delegation(txid) is None and env.chain_msgs("create_btc_delegation") == []

        # depth k: attested with the inclusion proof of the lock's block
        rep = svc.run_once()
        assert rep.submitted == [key], rep
        sub = svc.store.submission(key)
        assert sub.status == "done" and sub.attested_block_hash == block_hash and sub.chain_tx_hash
        (msg,) = env.chain_msgs("create_btc_delegation")
        assert msg["code"] == 0 and msg["sender"] == env.cp_address
        assert msg["body"]["inclusion_proof"] == env.inclusion_proof(txid)
        assert msg["body"]["staking_tx"] == d.staking_tx.serialize().hex()
        # every header above the light client's base was relayed, parent first, once
        relayed = [h for m in env.chain_msgs("insert_headers") for h in m["body"]["headers"]]
        base_h = env.base["base"]["height"]
        assert relayed == [env.node.get_block_header(env.node.get_block_hash(h)).hex()
                           for h in range(base_h + 1, env.node.get_block_count() + 1)]

        record = env.delegation(txid)
        assert record["status"] == "PENDING" and record["start_height"] == lock_height
        assert record["staker_btc_pk"] == staker.pk.hex() and record["staking_value"] == VALUE

        # the covenant committee signs (checks the registered delegation first) → ACTIVE
        env.covenant_quorum(txid)
        assert env.delegation(txid)["status"] == "ACTIVE"
        assert svc.run_once().submitted == []          # idempotent: nothing more to send

        # the staker unbonds on Bitcoin with the covenant's unbonding signatures
        sigs = env.committee.sign(env.delegation(txid), signers=env.params.covenant_quorum)
        unbonding = staker.signed_unbonding_tx(d, env.committee.unbonding_sigs(sigs))
        env.broadcast(unbonding)
        env.mine(1 + K)
        ukey = submission_key("undelegate", unbonding.txid_hex())
        env.rounds(svc, lambda r: ukey in r.submitted or ukey in r.already_on_chain)
        assert env.delegation(txid)["status"] == "UNBONDING"
        (umsg,) = env.chain_msgs("btc_undelegate")
        assert umsg["code"] == 0 and umsg["body"]["unbonding_tx"] == unbonding.serialize().hex()

        # after the unbonding timelock the staker withdraws; the service reports it
        env.mine(UNBONDING_TIME - 1 - K)
        withdraw = staker.withdraw_tx(d, p2tr_script(staker.pk), path="unbonding")
        env.broadcast(withdraw)
        env.mine(1 + K)
        wkey = submission_key("withdraw", withdraw.txid_hex())
        env.rounds(svc, lambda r: wkey in r.submitted)
        assert env.delegation(txid)["status"] == "WITHDRAWN"
        (wmsg,) = env.chain_msgs("report_withdrawal")
        assert wmsg["code"] == 0 and wmsg["body"]["spend_tx"] == withdraw.serialize().hex()
        assert svc.dead_letters() == []
    finally:
        svc.close()


# ---------------------------------------------------------------------------- rejections
@pytest.fixture
def proven(env):
    """A lock mined k deep with its headers relayed by the service (which has no intent for it)."""
    svc = env.service()
    staker = env.staker("rejections")
    d = env.new_lock(staker)
    env.broadcast(d.staking_tx)
    env.mine(1 + K)
    svc.run_once()
    assert env.light_client_tip()[1] == env.node.get_best_block_hash()
    body = d.create_msg(staker.pop(env.cp_address), env.inclusion_proof(d.staking_tx_hash))
    yield env, svc, d, body
    svc.close()


def _rejected(client: ChainClient, body: dict, wallet) -> ChainError:
    with pytest.raises(ChainError) as info:
        client.submit_delegation(body, wallet)
    return info.value


def test_forged_proof_rejected(proven):
    env, _, d, body = proven
    proof = bytearray.fromhex(body["inclusion_proof"]["proof"] or "00" * 32)
    proof[0] ^= 1
    forged = dict(body, inclusion_proof=dict(body["inclusion_proof"], proof=proof.hex()))
    err = _rejected(env.client, forged, env.cp_wallet)
    assert "invalid inclusion proof" in err.reason and not err.transient
    other_index = dict(body, inclusion_proof=dict(body["inclusion_proof"], index=body["inclusion_proof"]["index"] + 1))
    err = _rejected(env.client, other_index, env.cp_wallet)
    assert "invalid inclusion proof" in err.reason and not err.transient
    assert env.delegation(d.staking_tx_hash) is None


def test_unknown_block_and_shallow_depth_rejected(env):
    svc = env.service()
    try:
        staker = env.staker("shallow")
        d = env.new_lock(staker)
        env.broadcast(d.staking_tx)
        env.mine(1)
        body = d.create_msg(staker.pop(env.cp_address), env.inclusion_proof(d.staking_tx_hash))
        err = _rejected(env.client, body, env.cp_wallet)          # header not relayed yet
        assert "unknown header" in err.reason and err.transient
        svc.run_once()                                            # relays it: depth 0
        err = _rejected(env.client, body, env.cp_wallet)
        assert "not k-deep: depth 0 < 2" in err.reason and err.transient
        env.mine(K - 1)
        svc.run_once()
        err = _rejected(env.client, body, env.cp_wallet)
        assert f"not k-deep: depth {K - 1} < {K}" in err.reason and err.transient
        env.mine(1)
        svc.run_once()
        env.client.submit_delegation(body, env.cp_wallet)         # depth k: accepted
        assert env.delegation(d.staking_tx_hash)["status"] == "PENDING"
    finally:
        svc.close()


def test_wrong_script_rejected(proven):
    env, _, d, body = proven
    err = _rejected(env.client, dict(body, staking_time=STAKING_TIME + 1), env.cp_wallet)
    assert "wrong staking script" in err.reason and not err.transient
    err = _rejected(env.client, dict(body, staking_value=VALUE - 1), env.cp_wallet)
    assert "wrong staking script" in err.reason and not err.transient
    err = _rejected(env.client, dict(body, staking_output_index=1), env.cp_wallet)   # the OP_RETURN output
    assert "wrong staking script" in err.reason and not err.transient
    assert env.delegation(d.staking_tx_hash) is None


def test_replayed_attestation_rejected(proven):
    env, _, d, body = proven
    env.client.submit_delegation(body, env.cp_wallet)
    err = _rejected(env.client, body, env.cp_wallet)
    assert "already registered" in err.reason and not err.transient
    assert [m["code"] == 0 for m in env.chain_msgs("create_btc_delegation")] == [True, False]


def test_bad_signatures_rejected(proven):
    env, _, d, body = proven
    sig = bytearray.fromhex(body["delegator_slashing_sig"])
    sig[5] ^= 1
    err = _rejected(env.client, dict(body, delegator_slashing_sig=sig.hex()), env.cp_wallet)
    assert "invalid delegator slashing signature" in err.reason and not err.transient
    sig = bytearray.fromhex(body["delegator_unbonding_slashing_sig"])
    sig[7] ^= 1
    err = _rejected(env.client, dict(body, delegator_unbonding_slashing_sig=sig.hex()), env.cp_wallet)
    assert "invalid delegator unbonding slashing signature" in err.reason and not err.transient
    # a PoP made for another submitter does not verify for the service's account
    staker = env.staker("rejections")
    err = _rejected(env.client, dict(body, pop=staker.pop(str(env.admin_wallet.address())).hex()), env.cp_wallet)
    assert "invalid proof of possession for staker" in err.reason and not err.transient
    # a Cosmos tx signed for another chain id fails the ante handler's signature check
    assert env.chain is not None
    wrong = connect(env.chain.url, chain_id="another-chain", denom=env.denom, gas_price=env.gas_price)
    err = _rejected(wrong, body, env.cp_wallet)
    assert "signature verification failed" in err.reason and not err.transient
    assert env.delegation(d.staking_tx_hash) is None


def test_service_dead_letters_a_rejected_attestation_with_the_chain_reason(env):
    svc = env.service()
    try:
        staker = env.staker("dead-letter")
        d = env.new_lock(staker)
        material = env.material(staker, d)
        sig = bytearray.fromhex(material["delegator_slashing_sig"])
        sig[0] ^= 1
        material["delegator_slashing_sig"] = sig.hex()
        svc.register_intent(staker.pk, list(d.fp_pks), STAKING_TIME, VALUE, material)
        env.broadcast(d.staking_tx)
        env.mine(1 + K)
        key = submission_key("delegation", d.staking_tx_hash)
        env.rounds(svc, lambda r: key in r.dead_lettered)
        (dl,) = svc.dead_letters()
        assert dl.key == key and "invalid delegator slashing signature" in dl.reason
        assert svc.store.submission(key).status == "dead"
        assert svc.run_once().submitted == []                       # never retried
        assert len(env.chain_msgs("create_btc_delegation")) == 1
        assert env.delegation(d.staking_tx_hash) is None
    finally:
        svc.close()


@pytest.mark.parametrize("with_intent", [True, False])
def test_lock_registered_by_the_staker_without_proof_is_proven_by_the_service(env, with_intent):
    """Babylon's pre-approval flow: the staker registers first (no proof), the covenant signs
    (VERIFIED); the service sends only ``add_btc_delegation_inclusion_proof`` → ACTIVE. Without an
    intent the service finds the lock by its V0 OP_RETURN."""
    svc = env.service()
    try:
        staker = env.staker("pre-approval")
        d = env.new_lock(staker)
        admin = str(env.admin_wallet.address())
        env.admin({"create_btc_delegation": d.create_msg(staker.pop(admin))})   # the staker's own account
        assert env.delegation(d.staking_tx_hash)["start_height"] is None
        env.covenant_quorum(d.staking_tx_hash)
        assert env.delegation(d.staking_tx_hash)["status"] == "VERIFIED"
        if with_intent:
            svc.register_intent(staker.pk, list(d.fp_pks), STAKING_TIME, VALUE, env.material(staker, d))
        env.broadcast(d.staking_tx)
        env.mine(1 + K)
        key = submission_key("delegation", d.staking_tx_hash)
        env.rounds(svc, lambda r: key in r.submitted)
        assert (svc.store.btc_tx(d.staking_tx_hash).intent_id is not None) == with_intent
        (proof_msg,) = env.chain_msgs("add_btc_delegation_inclusion_proof")
        assert proof_msg["code"] == 0 and proof_msg["sender"] == env.cp_address
        assert proof_msg["body"] == {"staking_tx_hash": d.staking_tx_hash,
                                     "inclusion_proof": env.inclusion_proof(d.staking_tx_hash)}
        assert [m["sender"] for m in env.chain_msgs("create_btc_delegation")] == [admin]   # none from the service
        record = env.delegation(d.staking_tx_hash)
        assert record["status"] == "ACTIVE" and record["start_height"] == env.node.get_block_count() - K
    finally:
        svc.close()


def test_runner_loop_in_a_thread_attests_while_bitcoin_moves_and_stops_on_the_event(env):
    import threading
    import time

    from checkpoint.runner import run

    svc = env.service()
    stop = threading.Event()
    rounds: list[int] = []
    worker = threading.Thread(target=lambda: rounds.append(run(svc, stop)), daemon=True)
    worker.start()
    try:
        staker = env.staker("threaded")
        d = env.new_lock(staker)
        svc.register_intent(staker.pk, list(d.fp_pks), STAKING_TIME, VALUE, env.material(staker, d))
        env.broadcast(d.staking_tx)
        for _ in range(1 + K):                                 # blocks arrive while the loop runs
            env.mine(1)
            time.sleep(0.05)
        deadline = time.monotonic() + 30
        while env.delegation(d.staking_tx_hash) is None:
            assert time.monotonic() < deadline, "the running service did not attest the lock"
            time.sleep(0.05)
        assert env.delegation(d.staking_tx_hash)["start_height"] == env.node.get_block_count() - K
    finally:
        stop.set()
        worker.join(10)
    assert not worker.is_alive() and rounds and rounds[0] > 0
    assert len(env.chain_msgs("create_btc_delegation")) == 1
    assert svc.store.submission(submission_key("delegation", d.staking_tx_hash)).status == "done"
    svc.close()


def test_slashing_tx_on_bitcoin_is_reported(env):
    """The FP's key (what an EOTS double sign reveals) completes the pre-signed slashing tx with the
    covenant adaptor signatures (``checkpoint.slasher``); the node (libbitcoinkernel) accepts it and
    the service reports it with ``report_btc_slashing``."""
    from checkpoint.slasher import SlashableDelegation, Slasher

    svc = env.service()
    try:
        staker = env.staker("slashed")
        d = env.new_lock(staker)
        svc.register_intent(staker.pk, list(d.fp_pks), STAKING_TIME, VALUE, env.material(staker, d))
        env.broadcast(d.staking_tx)
        env.mine(1 + K)
        key = submission_key("delegation", d.staking_tx_hash)
        env.rounds(svc, lambda r: key in r.submitted)
        env.covenant_quorum(d.staking_tx_hash)
        record = env.delegation(d.staking_tx_hash)
        assert record["status"] == "ACTIVE"
        path, slashing, _ = Slasher(chain=None, bitcoin=env.node).build(  # type: ignore[arg-type]
            SlashableDelegation.from_json(record), env.fp_sks[0], env.params)
        assert path == "staking"
        env.broadcast(slashing)                                   # consensus-checked by the node
        env.mine(1 + K)
        skey = submission_key("slashing", slashing.txid_hex())
        env.rounds(svc, lambda r: skey in r.submitted)
        (msg,) = env.chain_msgs("report_btc_slashing")
        assert msg["code"] == 0 and msg["body"]["slashing_tx"] == slashing.serialize().hex()
        assert env.delegation(d.staking_tx_hash)["slashing_btc_txid"] == slashing.txid_hex()
        assert svc.dead_letters() == []
    finally:
        svc.close()


def test_intent_material_refused_early_when_the_registry_would_refuse_it(env):
    svc = env.service()
    try:
        staker = env.staker("early")
        d = env.new_lock(staker)
        good = env.material(staker, d)
        wrong_pop = dict(good, pop=staker.pop(str(env.admin_wallet.address())).hex())   # for another submitter
        with pytest.raises(InvalidInputError, match="proof of possession for the service's account"):
            svc.register_intent(staker.pk, list(d.fp_pks), STAKING_TIME, VALUE, wrong_pop)
        with pytest.raises(InvalidInputError, match="unbonding_time"):
            svc.register_intent(staker.pk, list(d.fp_pks), STAKING_TIME, VALUE, dict(good, unbonding_time=7))
        with pytest.raises(InvalidInputError, match="unbonding_value"):
            svc.register_intent(staker.pk, list(d.fp_pks), STAKING_TIME, VALUE,
                                dict(good, unbonding_value=VALUE - 1))
        assert svc.store.intents() == []
        assert svc.register_intent(staker.pk, list(d.fp_pks), STAKING_TIME, VALUE, good).material == good
    finally:
        svc.close()
