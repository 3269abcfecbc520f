"""Babylon staking / unbonding outputs and the pre-signed transaction templates."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Sequence

from .errors import InvalidAmountError, InvalidKeyError, InvalidTxError
from .keys import lift_x, to_xonly
from .params import StakingParams, check_slashing_rate, is_dust, mul_f64
from .script import (
    NUMS_KEY,
    TaprootTree,
    check_no_duplicates,
    check_timelock,
    slashing_script,
    timelock_script,
    unbonding_script,
)
from .tx import OutPoint, Tx, TxIn, TxOut

__all__ = [
    "StakingInfo",
    "UnbondingInfo",
    "SlashingChangeInfo",
    "build_staking_info",
    "staking_pk_script",
    "build_unbonding_info",
    "build_slashing_change_info",
    "build_v0_op_return",
    "parse_v0_op_return",
    "parse_v0_staking_tx",
    "build_staking_tx",
    "build_unbonding_tx",
    "build_slashing_tx",
    "build_withdraw_tx",
    "find_staking_output",
    "validate_staking_tx",
    "validate_unbonding_tx",
    "validate_slashing_tx",
    "slashing_amounts",
]

V0_OP_RETURN_DATA_LEN = 71


def _check_value(value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidAmountError(f"value must be a positive int (sat), got {value!r}")
    return value


def _fp_list(fp_pks: Sequence[bytes] | bytes) -> list[bytes]:
    if isinstance(fp_pks, (bytes, bytearray)):
        fp_pks = [bytes(fp_pks)]
    fps = [to_xonly(k) for k in fp_pks]
    if not fps:
        raise InvalidKeyError("at least one finality provider key is required")
    return fps


class _TaprootOutputInfo:
    """Shared accessors of a NUMS-keyed taproot output with ``value`` sat and script ``tree``."""

    value: int
    tree: TaprootTree

    @property
    def pk_script(self) -> bytes:
        """P2TR scriptPubKey of the output."""
        return self.tree.pk_script

    @property
    def output(self) -> TxOut:
        """The output as a TxOut."""
        return TxOut(self.value, self.pk_script)

    def control_block(self, script: bytes) -> bytes:
        """Control block for one of the output's leaves."""
        return self.tree.control_block(script)


@dataclass(frozen=True)
class StakingInfo(_TaprootOutputInfo):
    """The staking output: three leaves [timelock, unbonding, slashing] under NUMS."""

    staker_pk: bytes
    fp_pks: tuple[bytes, ...]
    covenant_pks: tuple[bytes, ...]
    quorum: int
    staking_time: int
    value: int
    timelock_script: bytes
    unbonding_script: bytes
    slashing_script: bytes
    tree: TaprootTree


@dataclass(frozen=True)
class UnbondingInfo(_TaprootOutputInfo):
    """The unbonding output: two leaves [timelock(unbonding_time), slashing] under NUMS."""

    staker_pk: bytes
    fp_pks: tuple[bytes, ...]
    covenant_pks: tuple[bytes, ...]
    quorum: int
    unbonding_time: int
    value: int
    timelock_script: bytes
    slashing_script: bytes
    tree: TaprootTree


@dataclass(frozen=True)
class SlashingChangeInfo:
    """Slashing change output: single leaf timelock(staker, unbonding_time) under NUMS."""

    staker_pk: bytes
    lock_time: int
    timelock_script: bytes
    tree: TaprootTree

    @property
    def pk_script(self) -> bytes:
        """P2TR scriptPubKey of the change output."""
        return self.tree.pk_script

    def control_block(self, script: bytes | None = None) -> bytes:
        """Control block of the single timelock leaf."""
        return self.tree.control_block(script or self.timelock_script)


def _staking_tree(
    staker_pk: bytes, fp_pks: Sequence[bytes] | bytes, covenant_pks: Sequence[bytes], quorum: int, staking_time: int
) -> tuple[bytes, list[bytes], list[bytes], bytes, bytes, bytes, TaprootTree]:
    """Checked keys, the three leaves (timelock, unbonding, slashing) and the tree; the value plays no part."""
    staker = to_xonly(staker_pk)
    fps = _fp_list(fp_pks)
    covs = [to_xonly(k) for k in covenant_pks]
    check_no_duplicates([staker], fps, covs)
    check_timelock(staking_time)
    tl = timelock_script(staker, staking_time)
    ub = unbonding_script(staker, covs, quorum)
    sl = slashing_script(staker, fps, covs, quorum)
    return staker, fps, covs, tl, ub, sl, TaprootTree([tl, ub, sl], NUMS_KEY)


def staking_pk_script(
    staker_pk: bytes, fp_pks: Sequence[bytes] | bytes, covenant_pks: Sequence[bytes], quorum: int, staking_time: int
) -> bytes:
    """The staking output's P2TR pkScript (it does not depend on the value): to find the output in a tx."""
    return _staking_tree(staker_pk, fp_pks, covenant_pks, quorum, staking_time)[-1].pk_script


def build_staking_info(
    staker_pk: bytes,
    fp_pks: Sequence[bytes] | bytes,
    covenant_pks: Sequence[bytes],
    quorum: int,
    staking_time: int,
    staking_value: int,
) -> StakingInfo:
    """Build Babylon's staking output (Go BuildStakingInfo)."""
    staker, fps, covs, tl, ub, sl, tree = _staking_tree(staker_pk, fp_pks, covenant_pks, quorum, staking_time)
    _check_value(staking_value)
    if is_dust(staking_value, tree.pk_script):
        raise InvalidAmountError(f"staking value {staking_value} sat is below the dust threshold of its P2TR output")
    return StakingInfo(staker, tuple(fps), tuple(covs), quorum, staking_time, staking_value, tl, ub, sl, tree)


def build_unbonding_info(
    staker_pk: bytes,
    fp_pks: Sequence[bytes] | bytes,
    covenant_pks: Sequence[bytes],
    quorum: int,
    unbonding_time: int,
    value: int,
) -> UnbondingInfo:
    """Build the unbonding output (Go BuildUnbondingInfo)."""
    staker = to_xonly(staker_pk)
    fps = _fp_list(fp_pks)
    covs = [to_xonly(k) for k in covenant_pks]
    check_no_duplicates([staker], fps, covs)
    check_timelock(unbonding_time)
    _check_value(value)
    tl = timelock_script(staker, unbonding_time)
    sl = slashing_script(staker, fps, covs, quorum)
    tree = TaprootTree([tl, sl], NUMS_KEY)
    return UnbondingInfo(staker, tuple(fps), tuple(covs), quorum, unbonding_time, value, tl, sl, tree)


def build_slashing_change_info(staker_pk: bytes, lock_time: int) -> SlashingChangeInfo:
    """Single-leaf timelock output that receives the slashing change (lock = unbonding time)."""
    staker = to_xonly(staker_pk)
    tl = timelock_script(staker, lock_time)
    return SlashingChangeInfo(staker, lock_time, tl, TaprootTree([tl], NUMS_KEY))


def build_v0_op_return(tag: bytes, staker_pk: bytes, fp_pk: bytes, staking_time: int) -> TxOut:
    """V0 identifiable staking output: OP_RETURN PUSH71(tag4 || 0x00 || staker32 || fp32 || time_be16)."""
    if not isinstance(tag, (bytes, bytearray)) or len(tag) != 4:
        raise InvalidTxError("V0 OP_RETURN tag must be 4 bytes")
    check_timelock(staking_time)
    staker, fp = to_xonly(staker_pk), to_xonly(fp_pk)
    check_no_duplicates([staker], [fp])
    data = bytes(tag) + b"\x00" + staker + fp + staking_time.to_bytes(2, "big")
    return TxOut(0, b"\x6a\x47" + data)


def parse_v0_op_return(script: bytes) -> dict:
    """Parse a V0 OP_RETURN pkScript → {tag, version, staker_pk, fp_pk, staking_time}."""
    if not isinstance(script, (bytes, bytearray)) or len(script) != 73 or script[:2] != b"\x6a\x47":
        raise InvalidTxError("not a V0 staking OP_RETURN (need 6a47 + 71 bytes)")
    data = bytes(script[2:])
    if data[4] != 0:
        raise InvalidTxError(f"unsupported V0 OP_RETURN version {data[4]}")
    staker, fp = data[5:37], data[37:69]
    lift_x(staker)
    lift_x(fp)
    return {
        "tag": data[:4],
        "version": 0,
        "staker_pk": staker,
        "fp_pk": fp,
        "staking_time": int.from_bytes(data[69:71], "big"),
    }


def parse_v0_staking_tx(
    tx: Tx, covenant_pks: Sequence[bytes], quorum: int, tag: bytes | None = None
) -> dict:
    """Go ParseV0StakingTx: one V0 OP_RETURN (73 B, version 0, valid keys) and exactly one output whose
    pkScript equals the staking output rebuilt from it. Returns the OP_RETURN fields plus
    staking_output_index, staking_value and op_return_index. `tag` (if given) must match."""
    if len(tx.outputs) < 2:
        raise InvalidTxError("V0 staking tx needs at least two outputs")
    found: list[tuple[int, dict]] = []
    for i, out in enumerate(tx.outputs):
        spk = out.script_pubkey
        if len(spk) != 73 or spk[:2] != b"\x6a\x47" or spk[6] != 0:
            continue
        try:
            found.append((i, parse_v0_op_return(spk)))
        except (InvalidTxError, InvalidKeyError):
            continue
    if not found:
        raise InvalidTxError("no V0 staking OP_RETURN output")
    if len(found) > 1:
        raise InvalidTxError("more than one V0 staking OP_RETURN output")
    op_index, data = found[0]
    if tag is not None and data["tag"] != bytes(tag):
        raise InvalidTxError(f"OP_RETURN tag {data['tag'].hex()} != expected {bytes(tag).hex()}")
    spk = staking_pk_script(data["staker_pk"], [data["fp_pk"]], covenant_pks, quorum, data["staking_time"])
    matches = [i for i, o in enumerate(tx.outputs) if o.script_pubkey == spk]
    if len(matches) != 1:
        raise InvalidTxError(f"expected exactly one staking output matching the OP_RETURN, found {len(matches)}")
    return {
        **data,
        "staking_output_index": matches[0],
        "staking_value": tx.outputs[matches[0]].value,
        "op_return_index": op_index,
    }


def build_staking_tx(
    staker_pk: bytes,
    fp_pk: bytes,
    params: StakingParams,
    staking_time: int,
    staking_value: int,
    with_op_return: bool = True,
) -> Tx:
    """Unfunded version-2 staking tx: outputs [staking_output, V0 OP_RETURN] (params bounds enforced)."""
    params.check_builder_amounts()
    params.check_staking_time(staking_time)
    params.check_staking_value(staking_value)
    info = build_staking_info(staker_pk, [fp_pk], params.covenant_pks, params.covenant_quorum, staking_time, staking_value)
    outs = [info.output]
    if with_op_return:
        outs.append(build_v0_op_return(params.tag, staker_pk, fp_pk, staking_time))
    return Tx(version=2, inputs=[], outputs=outs, locktime=0)


def build_unbonding_tx(
    staking_outpoint: OutPoint,
    staking_value: int,
    staker_pk: bytes,
    fp_pks: Sequence[bytes] | bytes,
    params: StakingParams,
) -> Tx:
    """Unbonding tx: v2, one input (seq 0xffffffff), one unbonding output of value − unbonding_fee."""
    params.check_builder_amounts()
    _check_value(staking_value)
    value = staking_value - params.unbonding_fee_sat
    if value <= 0:
        raise InvalidAmountError("staking value does not cover the unbonding fee")
    info = build_unbonding_info(
        staker_pk, fp_pks, params.covenant_pks, params.covenant_quorum, params.unbonding_time_blocks, value
    )
    if is_dust(value, info.pk_script):
        raise InvalidAmountError(f"unbonding output {value} sat is dust")
    return Tx(2, [TxIn(staking_outpoint)], [info.output], 0)


def slashing_amounts(funding_value: int, slashing_rate: Decimal | float | str, fee: int) -> tuple[int, int]:
    """(slash, change) with MulF64 rounding; raises InvalidAmountError if either is ≤ 0 or the fee
    is ≤ 0, InvalidParamsError for a rate finer than Babylon's 2 decimal places."""
    _check_value(funding_value)
    slashing_rate = check_slashing_rate(slashing_rate)
    if not isinstance(fee, int) or isinstance(fee, bool) or fee <= 0:
        raise InvalidAmountError(f"slashing tx fee must be a positive int (sat), got {fee!r}")
    slash = mul_f64(funding_value, slashing_rate)
    if slash <= 0:
        raise InvalidAmountError(f"slashing amount {slash} must be positive")
    change = funding_value - slash - fee
    if change <= 0:
        raise InvalidAmountError(f"slashing change {change} must be positive (value {funding_value}, fee {fee})")
    return slash, change


def build_slashing_tx(
    funding_outpoint: OutPoint,
    funding_value: int,
    staker_pk: bytes,
    params: StakingParams,
    fee: int | None = None,
    version: int = 2,
) -> Tx:
    """Slashing tx spending a staking or unbonding output: [slash → slashing_pk_script, change → timelock(S, unbonding_time)]."""
    if version not in (1, 2):
        raise InvalidTxError("slashing tx version must be 1 or 2")
    params.check_builder_amounts()
    fee = params.min_slashing_tx_fee_sat if fee is None else fee
    if not isinstance(fee, int) or fee < params.min_slashing_tx_fee_sat:
        raise InvalidAmountError(f"slashing fee {fee!r} below minimum {params.min_slashing_tx_fee_sat}")
    slash, change = slashing_amounts(funding_value, params.slashing_rate, fee)
    change_info = build_slashing_change_info(staker_pk, params.unbonding_time_blocks)
    if is_dust(slash, params.slashing_pk_script):
        raise InvalidAmountError(f"slashing output {slash} sat is dust")
    if is_dust(change, change_info.pk_script):
        raise InvalidAmountError(f"slashing change output {change} sat is dust")
    outs = [TxOut(slash, params.slashing_pk_script), TxOut(change, change_info.pk_script)]
    return Tx(version, [TxIn(funding_outpoint)], outs, 0)


def build_withdraw_tx(
    funding_outpoint: OutPoint,
    funding_value: int,
    timelock: int,
    dest_script: bytes,
    fee: int,
) -> Tx:
    """Timelock-path withdrawal: version 2, nSequence = timelock (BIP-68 blocks), one output."""
    check_timelock(timelock)
    _check_value(funding_value)
    if not isinstance(fee, int) or fee < 0:
        raise InvalidAmountError(f"fee must be a non-negative int, got {fee!r}")
    value = funding_value - fee
    if value <= 0 or is_dust(value, dest_script):
        raise InvalidAmountError(f"withdraw output {value} sat is dust or negative")
    return Tx(2, [TxIn(funding_outpoint, sequence=timelock)], [TxOut(value, bytes(dest_script))], 0)


def find_staking_output(tx: Tx, pk_script: bytes, value: int) -> int:
    """Index of the unique output with this pkScript and value (InvalidTxError if 0 or ≥2 match)."""
    matches = [i for i, o in enumerate(tx.outputs) if o.script_pubkey == pk_script and o.value == value]
    if len(matches) != 1:
        raise InvalidTxError(f"expected exactly one staking output, found {len(matches)}")
    return matches[0]


def validate_staking_tx(
    tx: Tx,
    staker_pk: bytes,
    fp_pks: Sequence[bytes] | bytes,
    params: StakingParams,
    staking_time: int,
    staking_value: int,
) -> int:
    """Phase-2 staking tx check: params bounds and exactly one matching output; returns its vout."""
    params.check_staking_time(staking_time)
    params.check_staking_value(staking_value)
    info = build_staking_info(staker_pk, fp_pks, params.covenant_pks, params.covenant_quorum, staking_time, staking_value)
    return find_staking_output(tx, info.pk_script, staking_value)


def _check_presigned_input(tx: Tx, outpoint: OutPoint) -> None:
    if len(tx.inputs) != 1:
        raise InvalidTxError("pre-signed tx must have exactly one input")
    txin = tx.inputs[0]
    if txin.prevout != outpoint:
        raise InvalidTxError("pre-signed tx does not spend the expected outpoint")
    if txin.sequence != 0xFFFFFFFF or txin.script_sig:
        raise InvalidTxError("pre-signed tx input must have sequence 0xffffffff and empty scriptSig")
    if tx.locktime != 0:
        raise InvalidTxError("pre-signed tx locktime must be 0")
    if tx.weight() > 400_000:
        raise InvalidTxError("pre-signed tx too heavy")


def validate_unbonding_tx(
    tx: Tx,
    staking_outpoint: OutPoint,
    staking_value: int,
    staker_pk: bytes,
    fp_pks: Sequence[bytes] | bytes,
    params: StakingParams,
) -> None:
    """Babylon unbonding tx rules (spec §2.2): v2, 1-in/1-out, exact fee, exact unbonding output."""
    if tx.version != 2:
        raise InvalidTxError("unbonding tx version must be 2")
    _check_presigned_input(tx, staking_outpoint)
    if len(tx.outputs) != 1:
        raise InvalidTxError("unbonding tx must have exactly one output")
    out = tx.outputs[0]
    if staking_value - out.value != params.unbonding_fee_sat:
        raise InvalidAmountError(
            f"unbonding fee {staking_value - out.value} != required {params.unbonding_fee_sat}"
        )
    info = build_unbonding_info(
        staker_pk, fp_pks, params.covenant_pks, params.covenant_quorum, params.unbonding_time_blocks, out.value
    )
    if out.script_pubkey != info.pk_script:
        raise InvalidTxError("unbonding output pkScript does not match the rebuilt unbonding output")


def validate_slashing_tx(
    tx: Tx,
    funding_outpoint: OutPoint,
    funding_value: int,
    staker_pk: bytes,
    params: StakingParams,
) -> None:
    """Babylon validateSlashingTx rules (spec §2.3)."""
    if tx.version not in (1, 2):
        raise InvalidTxError("slashing tx version must be 1 or 2")
    _check_presigned_input(tx, funding_outpoint)
    if len(tx.outputs) != 2:
        raise InvalidTxError("slashing tx must have exactly two outputs")
    slash_out, change_out = tx.outputs
    if slash_out.script_pubkey != params.slashing_pk_script:
        raise InvalidTxError("slashing output must pay to params.slashing_pk_script")
    if slash_out.value < mul_f64(funding_value, params.slashing_rate):
        raise InvalidAmountError("slashing output below funding_value × slashing_rate")
    change_info = build_slashing_change_info(staker_pk, params.unbonding_time_blocks)
    if change_out.script_pubkey != change_info.pk_script:
        raise InvalidTxError("slashing change output must be timelock(staker, unbonding_time)")
    total = slash_out.value + change_out.value
    if total >= funding_value:
        raise InvalidAmountError("slashing tx outputs must be below the funding value")
    if funding_value - total < params.min_slashing_tx_fee_sat:
        raise InvalidAmountError("slashing tx fee below min_slashing_tx_fee_sat")
    for o in tx.outputs:
        if is_dust(o.value, o.script_pubkey):
            raise InvalidAmountError(f"slashing tx output {o.value} sat is dust")

