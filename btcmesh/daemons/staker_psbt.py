"""``btcmesh stake --psbt DIR`` / ``--psbt-signed DIR``: every tx the staker signs as a BIP-174 PSBT with
the BIP-371 taproot fields, so an outside wallet can sign. PSBTs are read and written with embit
(a maintained PSBT library); nothing of the format is hand-written here.

The staker signs three things: the staking tx (its wallet's BIP-86 key-path inputs), the slashing
tx (staking output, slashing leaf) and the unbonding slashing tx (unbonding output, slashing leaf).
``--psbt DIR`` writes ``staking.psbt``, ``slashing.psbt`` and ``unbonding-slashing.psbt`` (base64)
and ``plan.json`` (what to register once signed). Fields per input: ``PSBT_IN_WITNESS_UTXO``;
key path: ``PSBT_IN_TAP_INTERNAL_KEY`` and ``PSBT_IN_TAP_BIP32_DERIVATION``; script path:
``PSBT_IN_TAP_INTERNAL_KEY`` (the NUMS key), ``PSBT_IN_TAP_MERKLE_ROOT``, ``PSBT_IN_TAP_LEAF_SCRIPT``
(control block → slashing leaf ‖ 0xc0) and ``PSBT_IN_TAP_BIP32_DERIVATION`` (staker key → leaf hash).

``--psbt-signed DIR`` reads the signed files back: key-path signatures from ``PSBT_IN_TAP_KEY_SIG``
(0x13, which embit 0.8 keeps as an unknown field) or a finalized witness, script-path signatures
from ``PSBT_IN_TAP_SCRIPT_SIG``; each is verified against the tx's sighash before it is used, then
the stake goes on exactly as without ``--psbt`` (pre-approval registration, covenant quorum,
broadcast). The proof of possession is still signed from the staker's key file.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["StakePlan", "plan_stake", "plan_to_psbts", "sign_psbts", "finalize", "stake_with_psbt", "PSBT_NAMES",
           "PsbtError"]

PSBT_NAMES = ("staking", "slashing", "unbonding-slashing")
TAP_KEY_SIG = b"\x13"  # BIP-371 PSBT_IN_TAP_KEY_SIG


class PsbtError(ValueError):
    """A PSBT that does not match the plan or lacks a valid signature."""


@dataclass(frozen=True)
class StakePlan:
    """The unsigned txs of one stake and what the PSBTs need to describe them."""

    params: Any
    staker_pk: bytes
    fp_pks: tuple[bytes, ...]
    staking_time: int
    value: int
    staking_tx: Any  # unsigned Tx (witnesses stripped; same txid)
    prevouts: tuple[Any, ...]
    staking_output_index: int
    info: Any
    slashing_tx: Any
    unbonding_tx: Any
    unbonding_info: Any
    unbonding_slashing_tx: Any

    def to_json(self) -> dict:
        return {"staker_pk": self.staker_pk.hex(), "fp_pks": [k.hex() for k in self.fp_pks],
                "staking_time": self.staking_time, "value": self.value,
                "staking_tx": self.staking_tx.serialize().hex(),
                "prevouts": [[o.value, o.script_pubkey.hex()] for o in self.prevouts]}

    @classmethod
    def from_json(cls, d: dict, params: Any) -> "StakePlan":
        from btc_staking.tx import Tx, TxOut

        return _plan(params, bytes.fromhex(d["staker_pk"]), tuple(bytes.fromhex(k) for k in d["fp_pks"]),
                     int(d["staking_time"]), int(d["value"]), Tx.parse(bytes.fromhex(d["staking_tx"])),
                     tuple(TxOut(int(v), bytes.fromhex(s)) for v, s in d["prevouts"]))


def _plan(params: Any, staker_pk: bytes, fps: tuple[bytes, ...], staking_time: int, value: int, tx: Any,
          prevouts: tuple[Any, ...]) -> StakePlan:
    from btc_staking.staking import (
        build_slashing_tx,
        build_staking_info,
        build_unbonding_info,
        build_unbonding_tx,
        validate_staking_tx,
    )
    from btc_staking.tx import OutPoint

    p = params
    vout = validate_staking_tx(tx, staker_pk, fps, p, staking_time, value)
    info = build_staking_info(staker_pk, fps, p.covenant_pks, p.covenant_quorum, staking_time, value)
    outpoint = OutPoint(tx.txid(), vout)
    unbonding = build_unbonding_tx(outpoint, value, staker_pk, fps, p)
    ub_value = unbonding.outputs[0].value
    ub_info = build_unbonding_info(staker_pk, fps, p.covenant_pks, p.covenant_quorum, p.unbonding_time_blocks,
                                   ub_value)
    return StakePlan(p, staker_pk, fps, staking_time, value, tx, prevouts, vout, info,
                     build_slashing_tx(outpoint, value, staker_pk, p), unbonding, ub_info,
                     build_slashing_tx(OutPoint(unbonding.txid(), 0), ub_value, staker_pk, p))


def plan_stake(wallet: Any, staker_pk: bytes, params: Any, fp_pk: bytes, staking_time: int, value: int,
               fee_rate: float) -> StakePlan:
    """Fund the staking tx from ``wallet`` and build the txs to sign (the wallet's signatures are dropped)."""
    from btc_staking.staking import build_staking_tx

    outs = build_staking_tx(staker_pk, fp_pk, params, staking_time, value).outputs
    funded = wallet.fund(outs, fee_rate)
    prevouts = tuple(wallet.prevouts(funded))
    unsigned = funded.copy()
    for txin in unsigned.inputs:
        txin.witness = []
    return _plan(params, staker_pk, (fp_pk,), staking_time, value, unsigned, prevouts)


def _emb_tx(tx: Any) -> Any:
    from embit.transaction import Transaction

    return Transaction.parse(tx.serialize())


def _emb_out(o: Any) -> Any:
    from embit.transaction import TransactionOutput

    return TransactionOutput.parse(o.serialize())


def _derivation(pk: bytes, leaves: list[bytes]) -> tuple[Any, tuple[list[bytes], Any]]:
    from embit import ec, hashes
    from embit.psbt import DerivationPath

    pub = ec.PublicKey.from_xonly(pk)
    fingerprint = hashes.hash160(ec.PublicKey.from_xonly(pk).sec())[:4]  # a plain key: its own fingerprint
    return pub, (leaves, DerivationPath(fingerprint, []))


def plan_to_psbts(plan: StakePlan, wallet_internal_key: bytes) -> dict[str, str]:
    """Base64 PSBTs (BIP-174 + BIP-371 fields) of the staking, slashing and unbonding slashing txs."""
    from embit import ec
    from embit.psbt import PSBT

    from btc_staking.sighash import tapleaf_hash

    out: dict[str, str] = {}
    st = PSBT(_emb_tx(plan.staking_tx))
    for inp, prev in zip(st.inputs, plan.prevouts):
        inp.witness_utxo = _emb_out(prev)
        inp.taproot_internal_key = ec.PublicKey.from_xonly(wallet_internal_key)
        pub, der = _derivation(wallet_internal_key, [])
        inp.taproot_bip32_derivations[pub] = der
    out["staking"] = st.to_string()
    staking_out = plan.staking_tx.outputs[plan.staking_output_index]
    for name, tx, funding, info in (("slashing", plan.slashing_tx, staking_out, plan.info),
                                    ("unbonding-slashing", plan.unbonding_slashing_tx, plan.unbonding_info.output,
                                     plan.unbonding_info)):
        ps = PSBT(_emb_tx(tx))
        inp = ps.inputs[0]
        inp.witness_utxo = _emb_out(funding)
        inp.taproot_internal_key = ec.PublicKey.from_xonly(info.tree.internal_key)
        inp.taproot_merkle_root = info.tree.merkle_root
        leaf = info.slashing_script
        inp.taproot_scripts[info.control_block(leaf)] = leaf + b"\xc0"
        pub, der = _derivation(plan.staker_pk, [tapleaf_hash(leaf)])
        inp.taproot_bip32_derivations[pub] = der
        out[name] = ps.to_string()
    return out


def sign_psbts(psbts: dict[str, str], secret: bytes, plan: StakePlan, aux32: bytes | None = None) -> dict[str, str]:
    """Sign like an outside wallet would, with btc_staking's signer: PSBT_IN_TAP_KEY_SIG for the staking
    tx's key-path inputs, PSBT_IN_TAP_SCRIPT_SIG for the slashing leaves."""
    from embit import ec
    from embit.psbt import PSBT

    from btc_staking.keys import xonly_from_secret
    from btc_staking.sighash import tapleaf_hash
    from btc_staking.signing import sign_key_path, sign_script_path

    out = dict(psbts)
    st = PSBT.from_string(psbts["staking"])
    for i, inp in enumerate(st.inputs):
        inp.unknown[TAP_KEY_SIG] = sign_key_path(secret, plan.staking_tx, i, list(plan.prevouts), aux32=aux32)
    out["staking"] = st.to_string()
    staking_out = plan.staking_tx.outputs[plan.staking_output_index]
    for name, tx, funding, info in (("slashing", plan.slashing_tx, staking_out, plan.info),
                                    ("unbonding-slashing", plan.unbonding_slashing_tx, plan.unbonding_info.output,
                                     plan.unbonding_info)):
        ps = PSBT.from_string(psbts[name])
        leaf = info.slashing_script
        sig = sign_script_path(secret, tx, 0, [funding], leaf, aux32)
        ps.inputs[0].taproot_sigs[(ec.PublicKey.from_xonly(xonly_from_secret(secret)), tapleaf_hash(leaf))] = sig
        out[name] = ps.to_string()
    return out


def finalize(plan: StakePlan, signed: dict[str, str]) -> tuple[Any, bytes, bytes]:
    """(signed staking tx, staker's slashing sig, staker's unbonding slashing sig) from signed PSBTs;
    every signature is verified first (PsbtError otherwise)."""
    from embit import ec
    from embit.psbt import PSBT

    from btc_staking.keys import schnorr_verify
    from btc_staking.sighash import taproot_sighash, tapleaf_hash
    from btc_staking.signing import verify_script_path_sig

    try:
        psbts = {n: PSBT.from_string(signed[n]) for n in PSBT_NAMES}
    except KeyError as exc:
        raise PsbtError(f"missing PSBT {exc}") from None
    except Exception as exc:  # noqa: BLE001 - embit raises its own PSBTError / ValueError for bad input
        raise PsbtError(f"not a valid PSBT: {exc}") from None
    for name, tx in (("staking", plan.staking_tx), ("slashing", plan.slashing_tx),
                     ("unbonding-slashing", plan.unbonding_slashing_tx)):
        if psbts[name].tx.serialize() != _emb_tx(tx).serialize():
            raise PsbtError(f"{name}.psbt is not the planned {name} tx")
    staking = plan.staking_tx.copy()
    for i, inp in enumerate(psbts["staking"].inputs):
        sig = inp.unknown.get(TAP_KEY_SIG)
        if sig is None and inp.final_scriptwitness is not None and len(inp.final_scriptwitness.items) == 1:
            sig = bytes(inp.final_scriptwitness.items[0])
        if sig is None or len(sig) != 64:
            raise PsbtError(f"staking.psbt input {i} has no 64-byte taproot key-path signature")
        msg = taproot_sighash(staking, i, list(plan.prevouts), 0, leaf_script=None)
        if not schnorr_verify(plan.prevouts[i].script_pubkey[2:], msg, sig):
            raise PsbtError(f"staking.psbt input {i}: the key-path signature does not verify")
        staking.inputs[i].witness = [sig]
    sigs = []
    staking_out = plan.staking_tx.outputs[plan.staking_output_index]
    for name, tx, funding, info in (("slashing", plan.slashing_tx, staking_out, plan.info),
                                    ("unbonding-slashing", plan.unbonding_slashing_tx, plan.unbonding_info.output,
                                     plan.unbonding_info)):
        key = (ec.PublicKey.from_xonly(plan.staker_pk), tapleaf_hash(info.slashing_script))
        sig = psbts[name].inputs[0].taproot_sigs.get(key)
        if sig is None or len(sig) != 64:
            raise PsbtError(f"{name}.psbt has no 64-byte staker signature for the slashing leaf")
        if not verify_script_path_sig(plan.staker_pk, bytes(sig), tx, 0, [funding], info.slashing_script):
            raise PsbtError(f"{name}.psbt: the staker's slashing-leaf signature does not verify")
        sigs.append(bytes(sig))
    return staking, sigs[0], sigs[1]


def delegation_from(plan: StakePlan, staking_tx: Any, slashing_sig: bytes, ub_slashing_sig: bytes) -> Any:
    """The :class:`btcmesh.staker.StakingDelegation` (its ``create_msg``) with the outside signatures."""
    from btcmesh.staker import StakingDelegation

    return StakingDelegation(
        params=plan.params, staker_pk=plan.staker_pk, fp_pks=plan.fp_pks, staking_time=plan.staking_time,
        staking_tx=staking_tx, staking_output_index=plan.staking_output_index, info=plan.info,
        slashing_tx=plan.slashing_tx, delegator_slashing_sig=slashing_sig, unbonding_tx=plan.unbonding_tx,
        unbonding_info=plan.unbonding_info, unbonding_slashing_tx=plan.unbonding_slashing_tx,
        delegator_unbonding_slashing_sig=ub_slashing_sig)


def stake_with_psbt(tool: Any, args: argparse.Namespace) -> dict:
    """``stake --psbt DIR`` (write) or ``stake --psbt-signed DIR`` (finish)."""
    params = tool.params()
    if args.psbt:
        if not (args.fp and args.value and args.time):
            raise PsbtError("--psbt needs --fp, --value and --time")
        d = Path(args.psbt)
        d.mkdir(parents=True, exist_ok=True)
        wallet = tool.wallet()
        plan = plan_stake(wallet, tool.staker(params).pk, params, bytes.fromhex(args.fp), args.time, args.value,
                          tool.cfg["staker.fee_rate"])
        psbts = plan_to_psbts(plan, wallet.internal_key)
        for name, b64 in psbts.items():
            (d / f"{name}.psbt").write_text(b64 + "\n")
        (d / "plan.json").write_text(json.dumps(plan.to_json(), indent=1, sort_keys=True))
        tool.log.info("psbts_written", dir=str(d), staking_txid=plan.staking_tx.txid_hex())
        return {"psbts": [str(d / f"{n}.psbt") for n in PSBT_NAMES], "staking_tx_hash": plan.staking_tx.txid_hex()}
    d = Path(args.psbt_signed)
    try:
        plan = StakePlan.from_json(json.loads((d / "plan.json").read_text()), params)
        signed = {n: (d / f"{n}.psbt").read_text().strip() for n in PSBT_NAMES}
    except (OSError, ValueError, KeyError) as exc:
        raise PsbtError(f"cannot read the PSBT directory {d}: {exc}") from None
    staking_tx, s1, s2 = finalize(plan, signed)
    return tool.register_and_broadcast(delegation_from(plan, staking_tx, s1, s2), wait=not args.no_wait)
