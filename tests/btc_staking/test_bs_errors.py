"""Every invalid input raises a typed StakingError subclass; builder rules (amounts, dust, templates)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from decimal import Decimal

import pytest

from btc_staking import errors as E
from btc_staking.keys import (
    N,
    generate_secret,
    lift_x,
    pubkey_from_secret,
    schnorr_sign,
    schnorr_verify,
    to_xonly,
    xonly_from_secret,
)
from btc_staking.params import (
    StakingParams,
    covenant_secret,
    dust_threshold,
    is_dust,
    mul_f64,
    regtest_default_params,
)
from btc_staking.script import (
    TaprootTree,
    multisig_script,
    push_int,
    slashing_script,
    timelock_script,
    unbonding_script,
)
from btc_staking.staking import (
    build_slashing_tx,
    build_staking_info,
    build_staking_tx,
    build_unbonding_tx,
    build_v0_op_return,
    build_withdraw_tx,
    parse_v0_op_return,
    slashing_amounts,
    validate_slashing_tx,
    validate_staking_tx,
    validate_unbonding_tx,
)
from btc_staking.tx import OutPoint, Tx, TxIn, TxOut, p2pkh_script, p2tr_script, p2wpkh_script
from btc_staking.witness import timelock_witness, unbonding_witness

PARAMS = regtest_default_params(num_covenants=5, quorum=3)
STAKER_SK, FP_SK = generate_secret(), generate_secret()
STAKER, FP = xonly_from_secret(STAKER_SK), xonly_from_secret(FP_SK)
OP = OutPoint(os.urandom(32), 0)


def test_error_hierarchy():
    for cls in (E.InvalidKeyError, E.InvalidParamsError, E.DuplicateKeyError, E.InvalidAmountError,
                E.InvalidTimelockError, E.InvalidTxError, E.InvalidSignatureError, E.InvalidProofError,
                E.InvalidHeaderError, E.EOTSError, E.AdaptorSignatureError, E.InvalidScriptError):
        assert issubclass(cls, E.StakingError) and issubclass(cls, ValueError)


# ------------------------------------------------------------------ keys
@pytest.mark.parametrize("bad", [b"", b"\x02" * 31, b"\x02" * 34, b"\x04" + b"\x01" * 32, "02" * 33, None])
def test_bad_key_length_or_type(bad):
    with pytest.raises(E.InvalidKeyError):
        to_xonly(bad)


def test_key_not_on_curve_and_bad_secrets():
    x = bytes.fromhex("ff" * 32)  # > p: no point
    with pytest.raises(E.InvalidKeyError):
        lift_x(x)
    with pytest.raises(E.InvalidKeyError):
        to_xonly(b"\x02" + x)
    for sk in (b"\x00" * 32, N.to_bytes(32, "big"), b"\x01" * 31):
        with pytest.raises(E.InvalidKeyError):
            xonly_from_secret(sk)
    with pytest.raises(E.InvalidSignatureError):
        schnorr_sign(generate_secret(), b"\x00" * 31)
    with pytest.raises(E.InvalidSignatureError):
        schnorr_verify(STAKER, b"\x00" * 32, b"\x00" * 63)


def test_02_03_prefix_equivalence():
    pk = pubkey_from_secret(STAKER_SK).format()
    odd_twin = bytes([pk[0] ^ 1]) + pk[1:]
    assert timelock_script(pk, 500) == timelock_script(odd_twin, 500) == timelock_script(pk[1:], 500)


# ------------------------------------------------------------------ duplicates
def test_duplicate_keys_rejected():
    covs = list(PARAMS.covenant_pks)
    with pytest.raises(E.DuplicateKeyError):
        build_staking_info(STAKER, [STAKER], covs, 3, 500, 100_000)  # staker == FP
    with pytest.raises(E.DuplicateKeyError):
        build_staking_info(covs[0], [FP], covs, 3, 500, 100_000)  # staker == covenant
    with pytest.raises(E.DuplicateKeyError):
        build_staking_info(STAKER, [covs[1]], covs, 3, 500, 100_000)  # FP == covenant
    with pytest.raises(E.DuplicateKeyError):
        build_staking_info(STAKER, [FP], covs[:4] + [covs[0]], 3, 500, 100_000)
    with pytest.raises(E.DuplicateKeyError):  # same x with 02 and 03 prefixes
        multisig_script([b"\x02" + FP, b"\x03" + FP], 1, False)
    with pytest.raises(E.DuplicateKeyError):
        unbonding_script(STAKER, [STAKER], 1)
    with pytest.raises(E.DuplicateKeyError):
        dataclasses.replace(PARAMS, covenant_pks=(covs[0], covs[0], covs[1])).validate()


def test_staking_value_below_dust_rejected_without_params():
    """The param-free builder refuses a dust staking output (330 sat is the P2TR threshold)."""
    covs = list(PARAMS.covenant_pks)
    info = build_staking_info(STAKER, [FP], covs, 3, 500, 330)
    assert dust_threshold(info.pk_script) == 330
    for value in (1, 329):
        with pytest.raises(E.InvalidAmountError, match="dust"):
            build_staking_info(STAKER, [FP], covs, 3, 500, value)


# ------------------------------------------------------------------ scripts
def test_script_errors_and_push_int():
    expect = {0: "00", 1: "51", 16: "60", 17: "0111", 127: "017f", 128: "028000", 255: "02ff00",
              1000: "02e803", 32767: "02ff7f", 32768: "03008000", 65535: "03ffff00", -1: "4f"}
    for v, h in expect.items():
        assert push_int(v).hex() == h
    with pytest.raises(E.InvalidScriptError):
        multisig_script([], 1, False)
    with pytest.raises(E.InvalidParamsError):
        multisig_script([STAKER, FP], 3, False)  # quorum > keys
    with pytest.raises(E.InvalidParamsError):
        multisig_script([STAKER, FP], 0, False)
    with pytest.raises(E.InvalidParamsError):
        slashing_script(STAKER, [FP], PARAMS.covenant_pks, 6)
    leaf = timelock_script(STAKER, 10)
    with pytest.raises(E.InvalidScriptError):
        TaprootTree([leaf, leaf])
    with pytest.raises(E.InvalidScriptError):
        TaprootTree([])
    with pytest.raises(E.InvalidScriptError):
        TaprootTree([leaf]).control_block(timelock_script(STAKER, 11))


@pytest.mark.parametrize("blocks", [0, -1, 65536, 1.5, True, "10"])
def test_timelock_out_of_range(blocks):
    with pytest.raises(E.InvalidTimelockError):
        timelock_script(STAKER, blocks)


# ------------------------------------------------------------------ params
def _bad(**kw):
    with pytest.raises(E.InvalidParamsError):
        dataclasses.replace(PARAMS, **kw).validate()


def test_params_validation():
    assert PARAMS.validate() is PARAMS
    _bad(covenant_quorum=6)  # quorum > keys
    _bad(covenant_quorum=0)
    _bad(covenant_quorum=2)  # 2·q ≤ n
    _bad(covenant_pks=())
    _bad(min_staking_value_sat=0)
    _bad(max_staking_value_sat=PARAMS.min_staking_value_sat - 1)
    _bad(min_staking_time_blocks=0)
    _bad(max_staking_time_blocks=65536)
    _bad(max_staking_time_blocks=PARAMS.min_staking_time_blocks - 1)
    _bad(unbonding_time_blocks=0)
    _bad(unbonding_time_blocks=70_000)
    _bad(unbonding_fee_sat=0)
    _bad(unbonding_fee_sat=PARAMS.min_staking_value_sat)
    _bad(min_slashing_tx_fee_sat=0)
    _bad(slashing_rate=Decimal("0"))
    _bad(slashing_rate=Decimal("1"))
    _bad(slashing_rate=Decimal("0.12345"))  # > 2 decimals
    _bad(slashing_rate=Decimal("0.125"))  # Babylon IsSlashingRateValid: at most 2 decimals
    _bad(slashing_pk_script=b"")
    _bad(tag=b"\x01\x02\x03")
    _bad(confirmation_depth=0)
    # minimum slashing output would be dust for a P2PKH slashing script
    _bad(slashing_rate=Decimal("0.01"))
    # ... but an OP_RETURN slashing script is exempt from dust
    dataclasses.replace(PARAMS, slashing_rate=Decimal("0.01"), slashing_pk_script=b"\x6a").validate()
    with pytest.raises(E.InvalidParamsError):
        StakingParams.from_dict({**PARAMS.to_dict(), "bogus": 1})
    with pytest.raises(E.InvalidParamsError):
        StakingParams.from_dict({k: v for k, v in PARAMS.to_dict().items() if k != "covenant_quorum"})
    with pytest.raises(E.InvalidParamsError):
        dataclasses.replace(PARAMS, slashing_rate="abc")


def test_params_roundtrip_and_regtest_defaults():
    d = PARAMS.to_dict()
    assert StakingParams.from_dict(d) == PARAMS
    p = regtest_default_params()
    assert p.covenant_pks == tuple(xonly_from_secret(hashlib.sha256(bytes([i])).digest()) for i in range(3))
    assert covenant_secret(0) == hashlib.sha256(b"\x00").digest()
    assert p.covenant_quorum == 2 and p.unbonding_time_blocks == 10 and p.confirmation_depth == 6
    assert p.min_staking_time_blocks == 100 and p.max_staking_time_blocks == 65535
    # 33-byte covenant keys are normalised to x-only
    p33 = dataclasses.replace(p, covenant_pks=tuple(b"\x02" + k for k in p.covenant_pks))
    assert p33.covenant_pks == p.covenant_pks


# ------------------------------------------------------------------ amounts / dust
def test_mulf64_rounding_and_dust():
    assert mul_f64(25, Decimal("0.1")) == 3  # 2.5 rounds half up (Python round() gives 2)
    assert round(25 * 0.1) == 2
    assert mul_f64(100_000, Decimal("0.1")) == 10_000
    assert mul_f64(1_000_001, "0.15") == 150_000  # 150000.15
    assert dust_threshold(p2tr_script(b"\x01" * 32)) == 330
    assert dust_threshold(p2wpkh_script(pubkey_from_secret(STAKER_SK).format())) == 294
    assert dust_threshold(p2pkh_script(pubkey_from_secret(STAKER_SK).format())) == 546
    assert not is_dust(0, b"\x6a\x01\x00")


def test_amount_errors():
    with pytest.raises(E.InvalidAmountError):
        build_staking_tx(STAKER, FP, PARAMS, 500, PARAMS.min_staking_value_sat - 1)
    with pytest.raises(E.InvalidAmountError):
        build_staking_tx(STAKER, FP, PARAMS, 500, PARAMS.max_staking_value_sat + 1)
    with pytest.raises(E.InvalidTimelockError):
        build_staking_tx(STAKER, FP, PARAMS, PARAMS.min_staking_time_blocks - 1, 100_000)
    with pytest.raises(E.InvalidAmountError):
        build_staking_info(STAKER, [FP], PARAMS.covenant_pks, 3, 500, 0)
    with pytest.raises(E.InvalidAmountError):
        build_unbonding_tx(OP, PARAMS.unbonding_fee_sat, STAKER, [FP], PARAMS)
    with pytest.raises(E.InvalidAmountError):  # unbonding output would be dust
        build_unbonding_tx(OP, PARAMS.unbonding_fee_sat + 100, STAKER, [FP], PARAMS)
    with pytest.raises(E.InvalidAmountError):
        slashing_amounts(5_000, Decimal("0.9"), 1_000)  # change ≤ 0
    with pytest.raises(E.InvalidAmountError):
        slashing_amounts(4, Decimal("0.1"), 1)  # slash rounds to 0
    with pytest.raises(E.InvalidAmountError):  # fee below min
        build_slashing_tx(OP, 100_000, STAKER, PARAMS, fee=PARAMS.min_slashing_tx_fee_sat - 1)
    with pytest.raises(E.InvalidAmountError):  # change output dust
        build_slashing_tx(OP, 1_400, STAKER, dataclasses.replace(PARAMS, slashing_rate=Decimal("0.5")))
    with pytest.raises(E.InvalidAmountError):
        build_withdraw_tx(OP, 1_000, 10, p2tr_script(b"\x01" * 32), fee=800)
    with pytest.raises(E.InvalidTxError):
        build_slashing_tx(OP, 100_000, STAKER, PARAMS, version=3)


# ------------------------------------------------------------------ tx templates
def test_staking_tx_builder_and_validator():
    tx = build_staking_tx(STAKER, FP, PARAMS, 500, 100_000)
    info = build_staking_info(STAKER, [FP], PARAMS.covenant_pks, 3, 500, 100_000)
    assert tx.version == 2 and tx.outputs[0] == info.output
    op = parse_v0_op_return(tx.outputs[1].script_pubkey)
    assert op == {"tag": PARAMS.tag, "version": 0, "staker_pk": STAKER, "fp_pk": FP, "staking_time": 500}
    funded = Tx(2, [TxIn(OP)], [TxOut(5_000, p2tr_script(b"\x02" * 32))] + tx.outputs, 0)
    assert validate_staking_tx(funded, STAKER, [FP], PARAMS, 500, 100_000) == 1
    with pytest.raises(E.InvalidTxError):  # wrong value → no match
        validate_staking_tx(funded, STAKER, [FP], PARAMS, 500, 100_001)
    with pytest.raises(E.InvalidTxError):  # two matches
        validate_staking_tx(Tx(2, [TxIn(OP)], [info.output, info.output], 0), STAKER, [FP], PARAMS, 500, 100_000)
    with pytest.raises(E.InvalidTimelockError):
        validate_staking_tx(funded, STAKER, [FP], PARAMS, 65_536, 100_000)


def test_op_return_errors():
    good = build_v0_op_return(b"bbn1", STAKER, FP, 64000).script_pubkey
    assert good.hex().endswith("fa00")  # big-endian 64000
    for bad in (good[:-1], b"\x6a\x48" + good[2:], good[:6] + b"\x01" + good[7:],
                good[:7] + b"\xff" * 32 + good[39:]):
        with pytest.raises((E.InvalidTxError, E.InvalidKeyError)):
            parse_v0_op_return(bad)
    with pytest.raises(E.InvalidTxError):
        build_v0_op_return(b"bbn", STAKER, FP, 10)
    with pytest.raises(E.DuplicateKeyError):
        build_v0_op_return(b"bbn1", STAKER, STAKER, 10)


def test_unbonding_and_slashing_validators():
    ub = build_unbonding_tx(OP, 100_000, STAKER, [FP], PARAMS)
    validate_unbonding_tx(ub, OP, 100_000, STAKER, [FP], PARAMS)
    assert ub.outputs[0].value == 100_000 - PARAMS.unbonding_fee_sat
    v1 = ub.copy()
    v1.version = 1
    with pytest.raises(E.InvalidTxError):
        validate_unbonding_tx(v1, OP, 100_000, STAKER, [FP], PARAMS)
    with pytest.raises(E.InvalidAmountError):  # fee must be exact
        validate_unbonding_tx(ub, OP, 100_001, STAKER, [FP], PARAMS)
    seq = ub.copy()
    seq.inputs[0].sequence = 0xFFFFFFFD
    with pytest.raises(E.InvalidTxError):
        validate_unbonding_tx(seq, OP, 100_000, STAKER, [FP], PARAMS)
    with pytest.raises(E.InvalidTxError):  # different unbonding time than params
        validate_unbonding_tx(ub, OP, 100_000, STAKER, [FP], dataclasses.replace(PARAMS, unbonding_time_blocks=11))

    sl = build_slashing_tx(OP, 100_000, STAKER, PARAMS)
    validate_slashing_tx(sl, OP, 100_000, STAKER, PARAMS)
    assert sl.outputs[0].value == 10_000 and sl.outputs[1].value == 100_000 - 10_000 - 1_000
    under = sl.copy()
    under.outputs[0] = TxOut(9_999, PARAMS.slashing_pk_script)
    with pytest.raises(E.InvalidAmountError):
        validate_slashing_tx(under, OP, 100_000, STAKER, PARAMS)
    swapped = sl.copy()
    swapped.outputs = list(reversed(sl.outputs))
    with pytest.raises(E.InvalidTxError):
        validate_slashing_tx(swapped, OP, 100_000, STAKER, PARAMS)
    staking_time_change = build_slashing_tx(OP, 100_000, STAKER, dataclasses.replace(PARAMS, unbonding_time_blocks=500))
    with pytest.raises(E.InvalidTxError):  # change must use the unbonding time
        validate_slashing_tx(staking_time_change, OP, 100_000, STAKER, PARAMS)
    low_fee = sl.copy()
    low_fee.outputs[1] = TxOut(sl.outputs[1].value + 1, sl.outputs[1].script_pubkey)
    with pytest.raises(E.InvalidAmountError):
        validate_slashing_tx(low_fee, OP, 100_000, STAKER, PARAMS)
    with pytest.raises(E.InvalidTxError):
        validate_slashing_tx(sl, OutPoint(os.urandom(32), 0), 100_000, STAKER, PARAMS)


def test_witness_errors():
    info = build_staking_info(STAKER, [FP], PARAMS.covenant_pks, 3, 500, 100_000)
    cb = info.control_block(info.timelock_script)
    with pytest.raises(E.InvalidSignatureError):
        timelock_witness(b"\x00" * 65, info.timelock_script, cb)
    with pytest.raises(E.InvalidSignatureError):
        timelock_witness(b"\x00" * 64, info.timelock_script, cb[:-1])
    with pytest.raises(E.InvalidKeyError):  # signature from a non-member
        unbonding_witness(PARAMS.covenant_pks, {FP: b"\x00" * 64}, 3, b"\x00" * 64, info.unbonding_script, cb)
