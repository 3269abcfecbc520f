"""Shared builders for the slasher / finality tests: a fully pre-signed Babylon delegation.

Every signature is produced by btc_staking the way the real parties do it: the staker signs
both slashing txs, each covenant member adaptor-signs them with ``encrypt_sign`` to every FP key
(and plainly signs the unbonding tx). No tests live here."""

from __future__ import annotations


from btcmesh_testkit.oracles import btclib_verify, kernel_verify

from btc_staking.adaptor import encrypt_sign
from btc_staking.keys import xonly_from_secret
from btc_staking.params import StakingParams
from btc_staking.sighash import taproot_sighash
from btc_staking.signing import sign_script_path
from btc_staking.staking import (
    build_slashing_tx,
    build_staking_info,
    build_unbonding_info,
    build_unbonding_tx,
)
from btc_staking.tx import OutPoint, Tx

__all__ = ["presign_delegation", "kernel_verify", "btclib_verify", "covenant_unbonding_sigs"]


def _adaptor_sigs(cov_sks: list[bytes], fp_pks: list[bytes], tx: Tx, funding_out, leaf: bytes,
                  signers: list[int] | None) -> list[dict]:
    msg = taproot_sighash(tx, 0, [funding_out], 0, leaf_script=leaf)
    idxs = range(len(cov_sks)) if signers is None else signers
    return [{"cov_pk": xonly_from_secret(cov_sks[i]).hex(),
             "adaptor_sigs": [encrypt_sign(cov_sks[i], fp, msg).serialize().hex() for fp in fp_pks]}
            for i in idxs]


def presign_delegation(params: StakingParams, cov_sks: list[bytes], staker_sk: bytes, fp_pks: list[bytes],
                       staking_tx: Tx, vout: int, staking_time: int, signers: list[int] | None = None) -> dict:
    """Registry-shaped JSON of a delegation whose staking output is ``staking_tx.outputs[vout]``."""
    staker = xonly_from_secret(staker_sk)
    out = staking_tx.outputs[vout]
    info = build_staking_info(staker, fp_pks, params.covenant_pks, params.covenant_quorum, staking_time, out.value)
    assert info.pk_script == out.script_pubkey, "staking output does not match the params/keys"
    outpoint = OutPoint(staking_tx.txid(), vout)
    slashing = build_slashing_tx(outpoint, out.value, staker, params)
    unbonding = build_unbonding_tx(outpoint, out.value, staker, fp_pks, params)
    ub_out = unbonding.outputs[0]
    ub_info = build_unbonding_info(staker, fp_pks, params.covenant_pks, params.covenant_quorum,
                                   params.unbonding_time_blocks, ub_out.value)
    ub_slashing = build_slashing_tx(OutPoint(unbonding.txid(), 0), ub_out.value, staker, params)
    return {
        "staking_tx_hash": staking_tx.txid_hex(),
        "staker_btc_pk": staker.hex(),
        "fp_btc_pk_list": [fp.hex() for fp in fp_pks],
        "staking_tx": staking_tx.serialize().hex(),
        "staking_output_idx": vout,
        "staking_time": staking_time,
        "total_sat": out.value,
        "slashing_tx": slashing.serialize(include_witness=False).hex(),
        "delegator_slashing_sig": sign_script_path(staker_sk, slashing, 0, [out], info.slashing_script).hex(),
        "covenant_slashing_sigs": _adaptor_sigs(cov_sks, fp_pks, slashing, out, info.slashing_script, signers),
        "unbonding_tx": unbonding.serialize(include_witness=False).hex(),
        "unbonding_slashing_tx": ub_slashing.serialize(include_witness=False).hex(),
        "delegator_unbonding_slashing_sig": sign_script_path(staker_sk, ub_slashing, 0, [ub_out],
                                                             ub_info.slashing_script).hex(),
        "covenant_slashing_unbonding_sigs": _adaptor_sigs(cov_sks, fp_pks, ub_slashing, ub_out,
                                                          ub_info.slashing_script, signers),
        "status": "ACTIVE",
    }


def covenant_unbonding_sigs(params: StakingParams, cov_sks: list[bytes], staker_sk: bytes, d: dict) -> tuple[Tx, list]:
    """Fully sign the delegation's unbonding tx (staker + quorum of covenants) for broadcasting."""
    from btc_staking.witness import unbonding_witness

    staker = xonly_from_secret(staker_sk)
    staking_tx = Tx.parse(bytes.fromhex(d["staking_tx"]))
    out = staking_tx.outputs[d["staking_output_idx"]]
    info = build_staking_info(staker, [bytes.fromhex(p) for p in d["fp_btc_pk_list"]], params.covenant_pks,
                              params.covenant_quorum, d["staking_time"], out.value)
    ub = Tx.parse(bytes.fromhex(d["unbonding_tx"]))
    leaf = info.unbonding_script
    cov = {xonly_from_secret(sk): sign_script_path(sk, ub, 0, [out], leaf) for sk in cov_sks}
    ub.inputs[0].witness = unbonding_witness(params.covenant_pks, cov, params.covenant_quorum,
                                             sign_script_path(staker_sk, ub, 0, [out], leaf), leaf,
                                             info.control_block(leaf))
    return ub, [out]
