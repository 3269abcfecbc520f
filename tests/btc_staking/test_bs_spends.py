"""Every Babylon spend path, signed by btc_staking, checked by Bitcoin Core (libbitcoinkernel)
and btclib's script engine."""

from __future__ import annotations

import os
import random

import pytest
from bs_oracles import both_accept

from btc_staking import eots
from btc_staking.adaptor import AdaptorSignature, encrypt_sign
from btc_staking.errors import AdaptorSignatureError, InvalidSignatureError
from btc_staking.keys import generate_secret, schnorr_sign, schnorr_verify, xonly_from_secret
from btc_staking.params import covenant_secret, regtest_default_params
from btc_staking.sighash import SIGHASH_ALL, taproot_sighash
from btc_staking.signing import p2tr_key_path_script, sign_key_path, sign_script_path
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
from btc_staking.tx import OutPoint, Tx, TxIn, TxOut, p2wpkh_script
from btc_staking.witness import slashing_witness, timelock_witness, unbonding_witness

N_COV, QUORUM = 5, 3
STAKING_TIME, VALUE = 150, 2_000_000
DEST = p2wpkh_script(bytes.fromhex("02" + "11" * 32))


@pytest.fixture(scope="module")
def setup():
    params = regtest_default_params(num_covenants=N_COV, quorum=QUORUM)
    cov_sks = [covenant_secret(i) for i in range(N_COV)]
    staker_sk, fp_sk = generate_secret(), generate_secret()
    staker, fp = xonly_from_secret(staker_sk), xonly_from_secret(fp_sk)
    info = build_staking_info(staker, [fp], params.covenant_pks, QUORUM, STAKING_TIME, VALUE)
    # A staking tx (funding input is irrelevant to the spends under test).
    staking_tx = Tx(2, [TxIn(OutPoint(os.urandom(32), 0))], [info.output], 0)
    return dict(params=params, cov_sks=cov_sks, staker_sk=staker_sk, fp_sk=fp_sk, staker=staker, fp=fp,
                info=info, staking_tx=staking_tx, outpoint=OutPoint(staking_tx.txid(), 0))


def _sign_covenants(cov_sks, idxs, tx, prevouts, leaf):
    return {xonly_from_secret(cov_sks[i]): sign_script_path(cov_sks[i], tx, 0, prevouts, leaf) for i in idxs}


# ---------------------------------------------------------------- timelock path
def test_timelock_withdraw_from_staking_output(setup):
    s, info = setup, setup["info"]
    prevouts = [info.output]
    tx = build_withdraw_tx(s["outpoint"], VALUE, STAKING_TIME, DEST, fee=500)
    assert tx.version == 2 and tx.inputs[0].sequence == STAKING_TIME
    sig = sign_script_path(s["staker_sk"], tx, 0, prevouts, info.timelock_script)
    tx.inputs[0].witness = timelock_witness(sig, info.timelock_script, info.control_block(info.timelock_script))
    assert both_accept(tx, prevouts)

    # sequence one block too low → CSV fails (re-signed, so only the timelock is wrong)
    low = build_withdraw_tx(s["outpoint"], VALUE, STAKING_TIME - 1, DEST, fee=500)
    sig = sign_script_path(s["staker_sk"], low, 0, prevouts, info.timelock_script)
    low.inputs[0].witness = timelock_witness(sig, info.timelock_script, info.control_block(info.timelock_script))
    assert not both_accept(low, prevouts)

    # version 1 disables BIP-68 → CSV fails
    v1 = build_withdraw_tx(s["outpoint"], VALUE, STAKING_TIME, DEST, fee=500)
    v1.version = 1
    sig = sign_script_path(s["staker_sk"], v1, 0, prevouts, info.timelock_script)
    v1.inputs[0].witness = timelock_witness(sig, info.timelock_script, info.control_block(info.timelock_script))
    assert not both_accept(v1, prevouts)

    # signature by another key → fails
    bad = build_withdraw_tx(s["outpoint"], VALUE, STAKING_TIME, DEST, fee=500)
    sig = sign_script_path(s["fp_sk"], bad, 0, prevouts, info.timelock_script)
    bad.inputs[0].witness = timelock_witness(sig, info.timelock_script, info.control_block(info.timelock_script))
    assert not both_accept(bad, prevouts)


# ---------------------------------------------------------------- unbonding path
def _unbonding(setup):
    s, info = setup, setup["info"]
    tx = build_unbonding_tx(s["outpoint"], VALUE, s["staker"], [s["fp"]], s["params"])
    validate_unbonding_tx(tx, s["outpoint"], VALUE, s["staker"], [s["fp"]], s["params"])
    return tx, [info.output]


def test_unbonding_with_covenant_quorum(setup):
    s, info = setup, setup["info"]
    leaf, cb = info.unbonding_script, info.control_block(info.unbonding_script)
    rng = random.Random(7)
    for _ in range(4):  # several different covenant subsets
        tx, prevouts = _unbonding(setup)
        idxs = rng.sample(range(N_COV), QUORUM)
        cov = _sign_covenants(s["cov_sks"], idxs, tx, prevouts, leaf)
        staker_sig = sign_script_path(s["staker_sk"], tx, 0, prevouts, leaf)
        tx.inputs[0].witness = unbonding_witness(s["params"].covenant_pks, cov, QUORUM, staker_sig, leaf, cb)
        assert sum(1 for w in tx.inputs[0].witness[:N_COV] if w) == QUORUM
        assert both_accept(tx, prevouts)


def test_unbonding_rejects_missing_extra_or_misordered_sigs(setup):
    s, info = setup, setup["info"]
    leaf, cb = info.unbonding_script, info.control_block(info.unbonding_script)
    tx, prevouts = _unbonding(setup)
    cov_all = _sign_covenants(s["cov_sks"], range(N_COV), tx, prevouts, leaf)
    staker_sig = sign_script_path(s["staker_sk"], tx, 0, prevouts, leaf)
    good = unbonding_witness(s["params"].covenant_pks, cov_all, QUORUM, staker_sig, leaf, cb)
    tx.inputs[0].witness = good
    assert both_accept(tx, prevouts)

    # our builder refuses fewer than quorum
    two = {k: cov_all[k] for k in list(cov_all)[:2]}
    with pytest.raises(InvalidSignatureError):
        unbonding_witness(s["params"].covenant_pks, two, QUORUM, staker_sig, leaf, cb)
    # a hand-made witness with one signature missing is rejected by the oracles
    missing = list(good)
    missing[[i for i, w in enumerate(good[:N_COV]) if w][0]] = b""
    tx.inputs[0].witness = missing
    assert not both_accept(tx, prevouts)
    # more than quorum (NUMEQUAL, not ≥) is rejected
    desc = sorted(s["params"].covenant_pks, reverse=True)
    tx.inputs[0].witness = [cov_all[k] for k in desc] + [staker_sig, leaf, cb]
    assert not both_accept(tx, prevouts)
    # ascending instead of descending order is rejected
    tx.inputs[0].witness = list(reversed(good[:N_COV])) + good[N_COV:]
    assert not both_accept(tx, prevouts)
    # missing staker signature is rejected
    tx.inputs[0].witness = good[:N_COV] + [b""] + good[N_COV + 1 :]
    assert not both_accept(tx, prevouts)


# ---------------------------------------------------------------- slashing paths
def _slash(setup, funding_outpoint, funding_out: TxOut, leaf: bytes, cb: bytes, fp_sks, fp_index=0,
           cov_idxs=(0, 2, 4), decrypt_with=None):
    """Full Babylon slashing flow: covenant adaptor sigs → FP double-signs → key extracted via EOTS →
    adaptor sigs decrypted → witness. Returns (tx, prevouts, witness parts)."""
    s = setup
    params = s["params"]
    fp_pks = [xonly_from_secret(k) for k in fp_sks]
    tx = build_slashing_tx(funding_outpoint, funding_out.value, s["staker"], params)
    validate_slashing_tx(tx, funding_outpoint, funding_out.value, s["staker"], params)
    prevouts = [funding_out]
    msg = taproot_sighash(tx, 0, prevouts, 0, leaf_script=leaf)
    staker_sig = schnorr_sign(s["staker_sk"], msg)

    # covenants pre-sign: adaptor signature encrypted to the FP key
    culprit_sk, culprit_pk = fp_sks[fp_index], fp_pks[fp_index]
    asigs = {}
    for i in cov_idxs:
        a = encrypt_sign(s["cov_sks"][i], culprit_pk, msg)
        assert a.verify(xonly_from_secret(s["cov_sks"][i]), culprit_pk, msg)
        asigs[xonly_from_secret(s["cov_sks"][i])] = AdaptorSignature.parse(a.serialize())

    # the FP double-signs one height with the same randomness → its key is extracted
    k = eots.new_nonce()
    pr = eots.pub_rand(k)
    m1, m2 = eots.vote_message(42, os.urandom(32)), eots.vote_message(42, os.urandom(32))
    s1, s2 = eots.sign(culprit_sk, k, m1), eots.sign(culprit_sk, k, m2)
    extracted = eots.extract_secret(culprit_pk, pr, m1, s1, m2, s2)
    assert xonly_from_secret(extracted) == culprit_pk

    dec = extracted if decrypt_with is None else decrypt_with
    cov_sigs = {pk: a.decrypt(dec) for pk, a in asigs.items()}
    fp_sig = schnorr_sign(dec, msg)
    w = slashing_witness(params.covenant_pks, cov_sigs, QUORUM, fp_pks, {culprit_pk: fp_sig}, staker_sig, leaf, cb)
    tx.inputs[0].witness = w
    return tx, prevouts, asigs, cov_sigs, msg


def test_slashing_from_staking_output(setup):
    s, info = setup, setup["info"]
    tx, prevouts, asigs, cov_sigs, msg = _slash(
        s, s["outpoint"], info.output, info.slashing_script, info.control_block(info.slashing_script), [s["fp_sk"]]
    )
    assert both_accept(tx, prevouts)
    assert tx.outputs[0].script_pubkey == s["params"].slashing_pk_script
    # adaptor sig + final sig reveal the FP secret
    for pk, a in asigs.items():
        assert xonly_from_secret(a.extract(cov_sigs[pk])) == s["fp"]


def test_slashing_with_wrong_decryption_key_rejected(setup):
    s, info = setup, setup["info"]
    wrong = generate_secret()
    tx, prevouts, asigs, cov_sigs, msg = _slash(
        s, s["outpoint"], info.output, info.slashing_script, info.control_block(info.slashing_script),
        [s["fp_sk"]], decrypt_with=wrong,
    )
    assert not both_accept(tx, prevouts)
    for pk, a in asigs.items():
        assert not schnorr_verify(pk, msg, cov_sigs[pk])
        with pytest.raises(AdaptorSignatureError):
            a.decrypt_and_verify(wrong, pk, msg)


def test_slashing_from_unbonding_output_and_change_withdrawal(setup):
    s = setup
    params = s["params"]
    ub_tx = build_unbonding_tx(s["outpoint"], VALUE, s["staker"], [s["fp"]], params)
    ub_info = build_unbonding_info(s["staker"], [s["fp"]], params.covenant_pks, QUORUM,
                                   params.unbonding_time_blocks, VALUE - params.unbonding_fee_sat)
    assert ub_tx.outputs[0] == ub_info.output
    tx, prevouts, *_ = _slash(s, OutPoint(ub_tx.txid(), 0), ub_info.output, ub_info.slashing_script,
                              ub_info.control_block(ub_info.slashing_script), [s["fp_sk"]], cov_idxs=(1, 2, 3))
    assert both_accept(tx, prevouts)

    # the slashing change output is spendable by the staker after unbonding_time blocks
    change = build_slashing_change_info(s["staker"], params.unbonding_time_blocks)
    change_out = tx.outputs[1]
    assert change_out.script_pubkey == change.pk_script
    wd = build_withdraw_tx(OutPoint(tx.txid(), 1), change_out.value, params.unbonding_time_blocks, DEST, fee=300)
    sig = sign_script_path(s["staker_sk"], wd, 0, [change_out], change.timelock_script)
    wd.inputs[0].witness = timelock_witness(sig, change.timelock_script, change.control_block())
    assert both_accept(wd, [change_out])


def test_unbonding_output_timelock_withdraw(setup):
    s = setup
    params = s["params"]
    ub_info = build_unbonding_info(s["staker"], [s["fp"]], params.covenant_pks, QUORUM,
                                   params.unbonding_time_blocks, VALUE - params.unbonding_fee_sat)
    op = OutPoint(os.urandom(32), 0)
    for seq, ok in ((params.unbonding_time_blocks, True), (params.unbonding_time_blocks - 1, False)):
        wd = build_withdraw_tx(op, ub_info.value, seq, DEST, fee=400)
        sig = sign_script_path(s["staker_sk"], wd, 0, [ub_info.output], ub_info.timelock_script)
        wd.inputs[0].witness = timelock_witness(sig, ub_info.timelock_script,
                                                ub_info.control_block(ub_info.timelock_script))
        assert both_accept(wd, [ub_info.output]) is ok


def test_slashing_multi_fp(setup):
    """Three FPs: FP multisig is 1-of-3 CHECKSIGADD; exactly one FP signature, others empty."""
    s = setup
    params = s["params"]
    fp_sks = [generate_secret() for _ in range(3)]
    fps = [xonly_from_secret(k) for k in fp_sks]
    info = build_staking_info(s["staker"], fps, params.covenant_pks, QUORUM, STAKING_TIME, VALUE)
    op = OutPoint(os.urandom(32), 1)
    for culprit in range(3):
        tx, prevouts, *_ = _slash(s, op, info.output, info.slashing_script,
                                  info.control_block(info.slashing_script), fp_sks, fp_index=culprit)
        assert both_accept(tx, prevouts)


# ---------------------------------------------------------------- key path (wallet)
def test_key_path_p2tr_spend():
    for _ in range(4):
        sk = generate_secret()
        spk = p2tr_key_path_script(sk, is_secret=True)
        prev = TxOut(50_000, spk)
        other = TxOut(20_000, p2tr_key_path_script(xonly_from_secret(generate_secret())))
        tx = Tx(2, [TxIn(OutPoint(os.urandom(32), 3)), TxIn(OutPoint(os.urandom(32), 0))],
                [TxOut(69_000, DEST)], 0)
        prevouts = [prev, other]
        tx.inputs[0].witness = [sign_key_path(sk, tx, 0, prevouts)]
        assert both_accept(tx, prevouts, 0)
        tx.inputs[0].witness = [sign_key_path(sk, tx, 0, prevouts, hash_type=SIGHASH_ALL)]
        assert len(tx.inputs[0].witness[0]) == 65
        assert both_accept(tx, prevouts, 0)
        # untweaked key signature is rejected
        msg = taproot_sighash(tx, 0, prevouts)
        tx.inputs[0].witness = [schnorr_sign(sk, msg)]
        assert not both_accept(tx, prevouts, 0)
        # changing an output after signing invalidates the signature
        tx.inputs[0].witness = [sign_key_path(sk, tx, 0, prevouts)]
        tx.outputs[0] = TxOut(68_999, DEST)
        assert not both_accept(tx, prevouts, 0)


def test_stake_expansion_two_inputs(setup):
    """Spec §2.6: input 0 spends the old staking output via the unbonding leaf (staker + covenant quorum),
    input 1 is a key-path funding UTXO; signatures commit to both prevouts."""
    s, info = setup, setup["info"]
    params = s["params"]
    wallet_sk = generate_secret()
    funding = TxOut(500_000, p2tr_key_path_script(wallet_sk, is_secret=True))
    new_info = build_staking_info(s["staker"], [s["fp"]], params.covenant_pks, QUORUM, STAKING_TIME,
                                  VALUE + 400_000)
    tx = Tx(2, [TxIn(s["outpoint"]), TxIn(OutPoint(os.urandom(32), 1))], [new_info.output], 0)
    prevouts = [info.output, funding]
    leaf, cb = info.unbonding_script, info.control_block(info.unbonding_script)
    cov = _sign_covenants(s["cov_sks"], (0, 1, 3), tx, prevouts, leaf)
    staker_sig = sign_script_path(s["staker_sk"], tx, 0, prevouts, leaf)
    tx.inputs[0].witness = unbonding_witness(params.covenant_pks, cov, QUORUM, staker_sig, leaf, cb)
    tx.inputs[1].witness = [sign_key_path(wallet_sk, tx, 1, prevouts)]
    assert both_accept(tx, prevouts, 0) and both_accept(tx, prevouts, 1)
    # a signature computed over only the first prevout (single-input sighash) does not verify
    lone = Tx(2, [TxIn(s["outpoint"])], [new_info.output], 0)
    wrong = sign_script_path(s["staker_sk"], lone, 0, [info.output], leaf)
    tx.inputs[0].witness = unbonding_witness(params.covenant_pks, cov, QUORUM, wrong, leaf, cb)
    assert not both_accept(tx, prevouts, 0)
