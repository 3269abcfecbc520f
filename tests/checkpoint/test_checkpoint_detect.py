"""Detector: staking (registered intent and V0 OP_RETURN), unbonding, slashing and withdraw spends.

Transactions are built with btc_staking's real builders and witness layouts.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from bitcoin.core import CTransaction
from cp_memchain import MemChain

from btc_staking.keys import generate_secret, xonly_from_secret
from btc_staking.params import regtest_default_params
from btc_staking.staking import (build_slashing_tx, build_staking_info, build_staking_tx, build_unbonding_info,
                                 build_unbonding_tx, build_withdraw_tx)
from btc_staking.tx import OutPoint, TxIn
from btc_staking.witness import slashing_witness, timelock_witness, unbonding_witness
from checkpoint.errors import InvalidInputError
from checkpoint.service import CheckpointService
from checkpoint.store import submission_key

PARAMS = regtest_default_params()
SIG = b"\x11" * 64


def _ctx(tx) -> CTransaction:
    return CTransaction.deserialize(tx.serialize())


def _funded(tx, n: int = 0):
    tx.inputs.append(TxIn(OutPoint(bytes([n + 1]) * 32, 0)))
    return tx


def _with_witness(tx, witness):
    tx.inputs[0] = replace(tx.inputs[0], witness=list(witness))
    return tx


@pytest.fixture
def keys():
    staker, fp = generate_secret(), generate_secret()
    return xonly_from_secret(staker), xonly_from_secret(fp)


def _svc(chain, tmp_path):
    return CheckpointService(chain, None, tmp_path / "s.sqlite", PARAMS, 2, None, 0.05)  # type: ignore[arg-type]


def test_staking_unbonding_withdraw_detected(tmp_path, keys):
    staker, fp = keys
    chain = MemChain()
    svc = _svc(chain, tmp_path)
    svc.register_intent(staker, [fp], 150, 50_000, {"pop": "ab" * 64})
    stx = _funded(build_staking_tx(staker, fp, PARAMS, 150, 50_000, with_op_return=False))
    unrelated = _funded(build_staking_tx(staker, fp, PARAMS, 151, 50_000, with_op_return=False), 1)
    chain.mine(1, [_ctx(stx), _ctx(unrelated)])
    svc.follow()
    txid = stx.txid_hex()
    row = svc.store.btc_tx(txid)
    assert row.kind == "staking" and row.staking_vout == 0 and row.intent_id is not None
    assert svc.store.btc_tx(unrelated.txid_hex()) is None      # no intent, no OP_RETURN
    assert svc.store.submission(submission_key("delegation", txid)).status == "waiting"

    info = build_staking_info(staker, [fp], PARAMS.covenant_pks, PARAMS.covenant_quorum, 150, 50_000)
    ub = build_unbonding_tx(OutPoint(stx.txid(), 0), 50_000, staker, [fp], PARAMS)
    covsigs = {pk: SIG for pk in PARAMS.covenant_pks[:PARAMS.covenant_quorum]}
    _with_witness(ub, unbonding_witness(PARAMS.covenant_pks, covsigs, PARAMS.covenant_quorum, SIG,
                                        info.unbonding_script, info.control_block(info.unbonding_script)))
    uinfo = build_unbonding_info(staker, [fp], PARAMS.covenant_pks, PARAMS.covenant_quorum,
                                 PARAMS.unbonding_time_blocks, ub.outputs[0].value)
    wd = build_withdraw_tx(OutPoint(ub.txid(), 0), ub.outputs[0].value, PARAMS.unbonding_time_blocks,
                           b"\x00\x14" + b"\x22" * 20, 500)
    _with_witness(wd, timelock_witness(SIG, uinfo.timelock_script, uinfo.control_block(uinfo.timelock_script)))
    chain.mine(1, [_ctx(ub), _ctx(wd)])       # unbonding and its withdraw in the same block
    svc.follow()
    assert svc.store.btc_tx(ub.txid_hex()).kind == "unbonding"
    assert svc.store.btc_tx(ub.txid_hex()).staking_txid == txid
    assert svc.store.btc_tx(wd.txid_hex()).kind == "withdraw"
    assert svc.store.submission(submission_key("undelegate", ub.txid_hex())).status == "waiting"
    # the unbonding-output withdrawal is reported (report_withdrawal) once the undelegation is done
    assert svc.store.submission(submission_key("withdraw", wd.txid_hex())).status == "waiting"
    assert svc._prerequisites(svc.store.submission(submission_key("withdraw", wd.txid_hex())),
                              svc.store.btc_tx(wd.txid_hex())) == [submission_key("delegation", txid),
                                                                  submission_key("undelegate", ub.txid_hex())]


def test_v0_op_return_stake_and_slashing_change_withdraw(tmp_path, keys):
    staker, fp = keys
    chain = MemChain()
    svc = _svc(chain, tmp_path)
    stx = _funded(build_staking_tx(staker, fp, PARAMS, 200, 70_000, with_op_return=True))
    chain.mine(1, [_ctx(stx)])
    svc.follow()
    row = svc.store.btc_tx(stx.txid_hex())
    assert row.kind == "staking" and row.intent_id is None and row.staking_time == 200
    key = submission_key("delegation", stx.txid_hex())
    # no material yet: still a submission (the staker may register it itself and need only the proof)
    assert svc.store.submission(key).status == "waiting" and row.intent_id is None
    svc.store.postpone(key, 1e12, "waiting for registration")
    svc.register_intent(staker, [fp], 200, 70_000, {"pop": "ab" * 64})  # material arrives later
    sub = svc.store.submission(key)
    assert sub.status == "waiting" and sub.next_attempt_at == 0       # due again right away
    assert svc.store.btc_tx(stx.txid_hex()).intent_id is not None

    info = build_staking_info(staker, [fp], PARAMS.covenant_pks, PARAMS.covenant_quorum, 200, 70_000)
    sl = build_slashing_tx(OutPoint(stx.txid(), 0), 70_000, staker, PARAMS)
    covsigs = {pk: SIG for pk in PARAMS.covenant_pks[:PARAMS.covenant_quorum]}
    _with_witness(sl, slashing_witness(PARAMS.covenant_pks, covsigs, PARAMS.covenant_quorum, [fp], {fp: SIG}, SIG,
                                       info.slashing_script, info.control_block(info.slashing_script)))
    from btc_staking.staking import build_slashing_change_info
    cinfo = build_slashing_change_info(staker, PARAMS.unbonding_time_blocks)
    wd = build_withdraw_tx(OutPoint(sl.txid(), 1), sl.outputs[1].value, PARAMS.unbonding_time_blocks,
                           b"\x00\x14" + b"\x22" * 20, 500)
    _with_witness(wd, timelock_witness(SIG, cinfo.timelock_script, cinfo.control_block()))
    chain.mine(1, [_ctx(sl)])
    chain.mine(1, [_ctx(wd)])
    svc.follow()
    assert svc.store.btc_tx(sl.txid_hex()).kind == "slashing"
    assert svc.store.submission(submission_key("slashing", sl.txid_hex())).status == "waiting"  # report_btc_slashing
    assert svc.store.btc_tx(wd.txid_hex()).kind == "withdraw"
    assert svc.store.watched_output(f"{sl.txid_hex()}:0") is None    # the slashed part is not ours
    # the registry has no message for a slashing-change withdrawal: tracked, not submitted
    assert svc.store.submission(submission_key("withdraw", wd.txid_hex())) is None


def test_timelock_withdraw_from_staking_output(tmp_path, keys):
    staker, fp = keys
    chain = MemChain()
    svc = _svc(chain, tmp_path)
    svc.register_intent(staker.hex(), [fp.hex()], 150, 50_000)
    stx = _funded(build_staking_tx(staker, fp, PARAMS, 150, 50_000, with_op_return=False))
    info = build_staking_info(staker, [fp], PARAMS.covenant_pks, PARAMS.covenant_quorum, 150, 50_000)
    wd = build_withdraw_tx(OutPoint(stx.txid(), 0), 50_000, 150, b"\x00\x14" + b"\x22" * 20, 500)
    _with_witness(wd, timelock_witness(SIG, info.timelock_script, info.control_block(info.timelock_script)))
    chain.mine(1, [_ctx(stx)])
    chain.mine(1, [_ctx(wd)])
    svc.follow()
    assert svc.store.btc_tx(wd.txid_hex()).kind == "withdraw"


def test_bad_intents_refused(tmp_path, keys):
    staker, fp = keys
    svc = _svc(MemChain(), tmp_path)
    with pytest.raises(InvalidInputError, match="outside the staking parameters"):
        svc.register_intent(staker, [fp], 5, 50_000)           # below min staking time
    with pytest.raises(InvalidInputError, match="outside the staking parameters"):
        svc.register_intent(staker, [fp], 150, 10)             # below min value
    with pytest.raises(InvalidInputError, match="hex"):
        svc.register_intent("zz", [fp], 150, 50_000)
    with pytest.raises(InvalidInputError, match="finality provider"):
        svc.register_intent(staker, [], 150, 50_000)
    with pytest.raises(InvalidInputError, match="cannot build staking script"):
        svc.register_intent(staker, [staker], 150, 50_000)     # duplicate keys


def test_material_is_checked_against_the_message_schema(tmp_path, keys):
    staker, fp = keys
    svc = _svc(MemChain(), tmp_path)
    with pytest.raises(InvalidInputError, match="unknown create_btc_delegation material field"):
        svc.register_intent(staker, [fp], 150, 50_000, {"staking_tx": "00"})   # the service adds it
    with pytest.raises(InvalidInputError, match="must be lowercase hex"):
        svc.register_intent(staker, [fp], 150, 50_000, {"slashing_tx": "XYZ"})
    with pytest.raises(InvalidInputError, match="does not match the intent"):
        svc.register_intent(staker, [fp], 150, 50_000, {"staking_value": 60_000})
    with pytest.raises(InvalidInputError, match="does not match the intent"):
        svc.register_intent(staker, [fp], 150, 50_000, {"staker_btc_pk": fp.hex()})
    assert svc.store.intents() == []                                       # nothing half-written
    ok = svc.register_intent(staker, [fp], 150, 50_000, {"staker_btc_pk": staker.hex(), "staking_time": 150})
    assert ok.material["staking_time"] == 150
