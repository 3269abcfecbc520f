"""Babylon staking life cycles on real nodes: the SAME tests run on the embedded node, on btcd,
and on the embedded node through its bitcoind-dialect RPC server (``RpcBackend``).

Every spend is built with btc_staking, checked by two independent interpreters (libbitcoinkernel
and btclib) before broadcasting, and then has to be accepted — or refused for the right reason —
by the node. Timelocks are small (3–6 blocks) so each test mines only a handful of blocks.
"""

from __future__ import annotations

import os

import pytest
from rt_backends import (  # noqa: F401  (chain is a fixture)
    Chain,
    assert_oracles_accept,
    assert_oracles_reject,
    chain,
    covenant_adaptor_sigs,
    make_parties,
    rejected,
    stake,
    staker_sig,
)

from btc_staking.adaptor import encrypt_sign
from btc_staking.keys import generate_secret, xonly_from_secret
from btc_staking.params import mul_f64
from btc_staking.sighash import taproot_sighash
from btc_staking.signing import sign_script_path
from btc_staking.staking import (
    build_slashing_change_info,
    build_slashing_tx,
    build_staking_info,
    build_unbonding_info,
    build_unbonding_tx,
    build_withdraw_tx,
    validate_slashing_tx,
    validate_unbonding_tx,
)
from btc_staking.tx import OutPoint, Tx, TxIn, TxOut
from btc_staking.witness import timelock_witness, unbonding_witness
from checkpoint.slasher import CovenantAdaptorSigs, complete_slashing_tx

# Substrings of each node's reject reason (Bitcoin Core wording for the embedded node).
NON_FINAL = {"core": "non-BIP68-final", "btcd": "sequence locks on inputs not met"}
BAD_SIG = {"core": "mandatory-script-verify-flag-failed", "btcd": "failed to validate input"}
MISSING = {"core": "bad-txns-inputs-missingorspent", "btcd": "orphan transaction"}
CONFLICT = {"core": "txn-mempool-conflict", "btcd": "output already spent in mempool"}


def timelock_spend(c: Chain, staker_sk: bytes, funding: OutPoint, out: TxOut, leaf: bytes, control: bytes,
                   blocks: int, fee: int = 1_000) -> Tx:
    """Staker's timelock-path withdrawal (nSequence = blocks) back to the wallet, oracle-checked."""
    tx = build_withdraw_tx(funding, out.value, blocks, c.wallet.script_pubkey, fee)
    tx.inputs[0].witness = timelock_witness(sign_script_path(staker_sk, tx, 0, [out], leaf), leaf, control)
    assert_oracles_accept(tx, [out])
    return tx


def mine_until_spendable(c: Chain, tx: Tx, confirmed_at: int, blocks: int) -> None:
    """Check the BIP68 boundary exactly: refused while tip+1 < confirmed_at + blocks, accepted at it."""
    while c.height() + 1 < confirmed_at + blocks:
        reason = rejected(c.backend, tx)
        assert NON_FINAL[c.flavor] in reason, reason
        c.mine(1)
    assert c.backend.send_raw_transaction(tx.serialize()) == tx.txid_hex()
    (block,) = c.mine(1)
    assert tx.txid_hex() in c.block_txids(block)


def unbond(c: Chain, p, s) -> tuple[Tx, object]:
    """Staker + covenant quorum sign the unbonding tx; returns (tx, unbonding info)."""
    ub = build_unbonding_tx(s.outpoint, s.output.value, p.staker_pk, [p.fp_pk], p.params)
    validate_unbonding_tx(ub, s.outpoint, s.output.value, p.staker_pk, [p.fp_pk], p.params)
    leaf = s.info.unbonding_script
    cov_sigs = {xonly_from_secret(sk): sign_script_path(sk, ub, 0, [s.output], leaf) for sk in p.cov_sks[:2]}
    ub.inputs[0].witness = unbonding_witness(
        p.params.covenant_pks, cov_sigs, p.params.covenant_quorum,
        staker_sig(p, ub, s.output, leaf), leaf, s.info.control_block(leaf),
    )
    assert_oracles_accept(ub, [s.output])
    info = build_unbonding_info(p.staker_pk, [p.fp_pk], p.params.covenant_pks, p.params.covenant_quorum,
                                p.params.unbonding_time_blocks, ub.outputs[0].value)
    assert ub.outputs[0].script_pubkey == info.pk_script
    return ub, info


def test_stake_then_withdraw_after_timelock(chain: Chain) -> None:
    p = make_parties()
    s = stake(chain, p, staking_time=4)
    leaf = s.info.timelock_script
    tx = timelock_spend(chain, p.staker_sk, s.outpoint, s.output, leaf, s.info.control_block(leaf), 4)
    mine_until_spendable(chain, tx, s.height, 4)
    coins = {u.outpoint: u.value for u in chain.wallet.utxos()}
    assert coins[OutPoint(tx.txid(), 0)] == s.output.value - 1_000


def test_spend_before_timelock_is_rejected_as_non_final(chain: Chain) -> None:
    p = make_parties()
    s = stake(chain, p, staking_time=5)
    leaf = s.info.timelock_script
    tx = timelock_spend(chain, p.staker_sk, s.outpoint, s.output, leaf, s.info.control_block(leaf), 5)
    reason = rejected(chain.backend, tx)
    assert NON_FINAL[chain.flavor] in reason, reason
    # a tx claiming a shorter relative lock than the script demands fails the script itself
    short = build_withdraw_tx(s.outpoint, s.output.value, 1, chain.wallet.script_pubkey, 1_000)
    short.inputs[0].witness = timelock_witness(
        sign_script_path(p.staker_sk, short, 0, [s.output], leaf), leaf, s.info.control_block(leaf))
    assert_oracles_reject(short, [s.output])
    reason = rejected(chain.backend, short)
    assert BAD_SIG[chain.flavor] in reason, reason
    assert tx.txid_hex() not in chain.backend.get_mempool()


def test_stake_unbond_with_covenant_quorum_then_withdraw(chain: Chain) -> None:
    p = make_parties(unbonding_time=4)
    s = stake(chain, p, staking_time=60)
    ub, info = unbond(chain, p, s)
    assert chain.backend.send_raw_transaction(ub.serialize()) == ub.txid_hex()
    (block,) = chain.mine(1)
    assert ub.txid_hex() in chain.block_txids(block)
    ub_height = chain.height()
    out = ub.outputs[0]
    assert out.value == s.output.value - p.params.unbonding_fee_sat
    tx = timelock_spend(chain, p.staker_sk, OutPoint(ub.txid(), 0), out, info.timelock_script,
                        info.control_block(info.timelock_script), p.params.unbonding_time_blocks)
    mine_until_spendable(chain, tx, ub_height, p.params.unbonding_time_blocks)


def test_unbonding_needs_a_covenant_quorum(chain: Chain) -> None:
    p = make_parties()
    s = stake(chain, p, staking_time=60)
    ub = build_unbonding_tx(s.outpoint, s.output.value, p.staker_pk, [p.fp_pk], p.params)
    leaf = s.info.unbonding_script
    # one covenant signature and one garbage one in the second slot: below quorum
    sk0 = p.cov_sks[0]
    good = sign_script_path(sk0, ub, 0, [s.output], leaf)
    sigs = {xonly_from_secret(sk0): good, xonly_from_secret(p.cov_sks[1]): bytes(64)}
    ub.inputs[0].witness = unbonding_witness(p.params.covenant_pks, sigs, p.params.covenant_quorum,
                                             staker_sig(p, ub, s.output, leaf), leaf, s.info.control_block(leaf))
    assert_oracles_reject(ub, [s.output])
    assert BAD_SIG[chain.flavor] in rejected(chain.backend, ub)


def _slash(chain: Chain, p, funding: OutPoint, funding_out: TxOut, leaf: bytes, control: bytes) -> Tx:
    """Pre-signed slashing tx completed with adaptor sigs decrypted by the FP secret (slasher code)."""
    slashing = build_slashing_tx(funding, funding_out.value, p.staker_pk, p.params)
    validate_slashing_tx(slashing, funding, funding_out.value, p.staker_pk, p.params)
    adaptor = covenant_adaptor_sigs(p, slashing, funding_out, leaf, signers=[0, 1, 2])
    # without the FP secret the adaptor signatures are not signatures: the tx cannot be completed
    other_fp = os.urandom(31) + b"\x01"
    with pytest.raises(ValueError):
        complete_slashing_tx(slashing, funding_out, leaf, control, p.params.covenant_pks,
                             p.params.covenant_quorum, adaptor, [xonly_from_secret(other_fp)], other_fp,
                             p.staker_pk, staker_sig(p, slashing, funding_out, leaf))
    done = complete_slashing_tx(slashing, funding_out, leaf, control, p.params.covenant_pks,
                                p.params.covenant_quorum, adaptor, [p.fp_pk], p.fp_sk, p.staker_pk,
                                staker_sig(p, slashing, funding_out, leaf))
    assert_oracles_accept(done, [funding_out])
    return done


def _check_slashing_outputs(chain: Chain, p, tx: Tx, funding_value: int) -> None:
    slash, change = tx.outputs
    assert slash.script_pubkey == p.params.slashing_pk_script
    assert slash.value == mul_f64(funding_value, p.params.slashing_rate)
    change_info = build_slashing_change_info(p.staker_pk, p.params.unbonding_time_blocks)
    assert change.script_pubkey == change_info.pk_script
    assert change.value == funding_value - slash.value - p.params.min_slashing_tx_fee_sat
    # the confirmed block really holds exactly these outputs
    raw = chain.backend.get_raw_transaction(tx.txid_hex())
    assert Tx.parse(raw).outputs == tx.outputs


def test_slash_staking_output_with_decrypted_adaptor_sigs(chain: Chain) -> None:
    p = make_parties(unbonding_time=3)
    s = stake(chain, p, staking_time=60)
    leaf = s.info.slashing_script
    tx = _slash(chain, p, s.outpoint, s.output, leaf, s.info.control_block(leaf))
    # the same witness without the covenant signatures must not pass
    partial = tx.copy()
    partial.inputs[0].witness = [b""] * 3 + partial.inputs[0].witness[3:]
    assert_oracles_reject(partial, [s.output])
    assert BAD_SIG[chain.flavor] in rejected(chain.backend, partial)
    assert chain.backend.send_raw_transaction(tx.serialize()) == tx.txid_hex()
    (block,) = chain.mine(1)
    assert tx.txid_hex() in chain.block_txids(block)
    _check_slashing_outputs(chain, p, tx, s.output.value)
    # the staker gets the change back through its timelock after unbonding_time blocks
    change_info = build_slashing_change_info(p.staker_pk, p.params.unbonding_time_blocks)
    back = timelock_spend(chain, p.staker_sk, OutPoint(tx.txid(), 1), tx.outputs[1], change_info.timelock_script,
                          change_info.control_block(), p.params.unbonding_time_blocks, fee=500)
    mine_until_spendable(chain, back, chain.height(), p.params.unbonding_time_blocks)


def test_slash_unbonding_output(chain: Chain) -> None:
    p = make_parties(unbonding_time=3)
    s = stake(chain, p, staking_time=60)
    ub, info = unbond(chain, p, s)
    chain.backend.send_raw_transaction(ub.serialize())
    chain.mine(1)
    # the staking output is gone: its (script-valid) slashing tx can no longer be used ...
    stale = _slash(chain, p, s.outpoint, s.output, s.info.slashing_script,
                   s.info.control_block(s.info.slashing_script))
    assert MISSING[chain.flavor] in rejected(chain.backend, stale)
    # ... the unbonding output's slashing tx is the one that slashes now
    out = ub.outputs[0]
    leaf = info.slashing_script
    tx = _slash(chain, p, OutPoint(ub.txid(), 0), out, leaf, info.control_block(leaf))
    assert chain.backend.send_raw_transaction(tx.serialize()) == tx.txid_hex()
    (block,) = chain.mine(1)
    assert tx.txid_hex() in chain.block_txids(block)
    _check_slashing_outputs(chain, p, tx, out.value)


def test_reorg_removing_the_staking_tx_is_seen_by_the_watcher(chain: Chain) -> None:
    p = make_parties()
    s = stake(chain, p, staking_time=10)
    txid = s.tx.txid_hex()
    w = chain.wallet
    assert w.confirmations(txid) == 1 and not w.in_mempool(txid)
    block = chain.backend.get_best_block_hash()
    chain.backend.invalidate_block(block)
    assert chain.height() == s.height - 1
    w.scan()
    assert w.reorgs == 1 and w.height == s.height - 1
    assert w.tx_height(txid) is None and w.confirmations(txid) == 0
    # both nodes put the disconnected staking tx back into the mempool, and the watcher sees it there
    assert txid in chain.backend.get_mempool() and w.in_mempool(txid)
    # its funding coin is unspent on chain again but spent in the mempool: never chosen twice
    funding = {i.prevout for i in s.tx.inputs}
    assert funding <= {u.outpoint for u in w.utxos()}
    assert not funding & {u.outpoint for u in w.spendable()}
    (again,) = chain.mine(1)
    assert again != block and txid in chain.block_txids(again)
    assert w.tx_height(txid) == s.height and not w.in_mempool(txid)
    # a reorg the watcher only notices later, after the new chain is already longer
    chain.backend.invalidate_block(again)
    replacement = chain.backend.mine_blocks(2, w.script_pubkey)
    assert txid in chain.block_txids(replacement[0])
    w.scan()
    assert w.reorgs == 2 and w.height == s.height + 1
    assert w.tx_height(txid) == s.height and w.confirmations(txid) == 2
    assert w._blocks[-2].hash == replacement[0]  # noqa: SLF001


def test_bad_transactions_get_the_nodes_reject_reason(chain: Chain) -> None:
    w = chain.wallet
    dest = TxOut(20_000, w.script_pubkey)
    # bad signature: flip a bit of the key-path signature
    tx = w.fund([dest], 2)
    prevouts = w.prevouts(tx)
    bad = tx.copy()
    sig = bytearray(bad.inputs[0].witness[0])
    sig[10] ^= 1
    bad.inputs[0].witness = [bytes(sig)]
    assert_oracles_reject(bad, prevouts)
    assert BAD_SIG[chain.flavor] in rejected(chain.backend, bad)
    # the good one goes through; a different tx spending the same coin is a conflict
    assert_oracles_accept(tx, prevouts)
    chain.backend.send_raw_transaction(tx.serialize())
    w.scan()
    assert not {i.prevout for i in tx.inputs} & {u.outpoint for u in w.spendable()}
    double = Tx(2, [TxIn(i.prevout) for i in tx.inputs], [TxOut(30_000, w.script_pubkey)], 0)
    _sign_keypath(w, double, prevouts)
    assert {i.prevout for i in double.inputs} & {i.prevout for i in tx.inputs}
    assert_oracles_accept(double, prevouts)
    assert CONFLICT[chain.flavor] in rejected(chain.backend, double)
    # after confirmation, the same double spend now spends a missing (spent) output
    chain.mine(1)
    assert MISSING[chain.flavor] in rejected(chain.backend, double)
    # an input that never existed: validly signed (oracles accept for the claimed prevout) yet refused
    fake_out = TxOut(100_000, w.script_pubkey)
    ghost = Tx(2, [TxIn(OutPoint(os.urandom(32), 0))], [TxOut(90_000, w.script_pubkey)], 0)
    _sign_keypath(w, ghost, [fake_out])
    assert_oracles_accept(ghost, [fake_out])
    assert MISSING[chain.flavor] in rejected(chain.backend, ghost)


def _sign_keypath(w, tx: Tx, prevouts: list[TxOut]) -> None:
    from btc_staking.signing import sign_key_path

    for i in range(len(tx.inputs)):
        tx.inputs[i].witness = [sign_key_path(w._secret, tx, i, prevouts)]  # noqa: SLF001


def test_slash_multi_fp_delegation_with_the_second_fp_key(chain: Chain) -> None:
    """Two FPs: covenants adaptor-sign once per FP; the second FP's key alone completes the tx."""
    p = make_parties(unbonding_time=3)
    fp2_sk = generate_secret()
    fps = [p.fp_pk, xonly_from_secret(fp2_sk)]
    info = build_staking_info(p.staker_pk, fps, p.params.covenant_pks, p.params.covenant_quorum, 30, 80_000)
    funding = chain.wallet.fund([info.output], 2)
    chain.backend.send_raw_transaction(funding.serialize())
    chain.mine(1)
    vout = funding.outputs.index(info.output)
    outpoint, out = OutPoint(funding.txid(), vout), info.output
    slashing = build_slashing_tx(outpoint, out.value, p.staker_pk, p.params)
    leaf = info.slashing_script
    msg = taproot_sighash(slashing, 0, [out], 0, leaf_script=leaf)
    adaptor = [CovenantAdaptorSigs(xonly_from_secret(sk), tuple(encrypt_sign(sk, fp, msg) for fp in fps))
               for sk in p.cov_sks]
    done = complete_slashing_tx(slashing, out, leaf, info.control_block(leaf), p.params.covenant_pks,
                                p.params.covenant_quorum, adaptor, fps, fp2_sk, p.staker_pk,
                                staker_sig(p, slashing, out, leaf))
    assert_oracles_accept(done, [out])
    assert chain.backend.send_raw_transaction(done.serialize()) == done.txid_hex()
    (block,) = chain.mine(1)
    assert done.txid_hex() in chain.block_txids(block)
    _check_slashing_outputs(chain, p, done, out.value)
