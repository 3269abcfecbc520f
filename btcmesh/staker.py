"""Staker-side helper: build and fund the staking tx, pre-sign the slashing txs, sign the unbonding
and withdrawal spends, and produce the proof of possession.

Everything Bitcoin-specific comes from :mod:`btc_staking`; this module only strings the pieces
together the way a Babylon staker does::

    staker = Staker(secret, params)
    tx = staker.fund_staking_tx(wallet, fp_pk, staking_time=150, value=100_000)   # signed by the wallet
    d = staker.delegation(tx, [fp_pk], staking_time=150)                           # pre-signs slashing txs
    material = d.material(pop=staker.pop(submitter_address))                       # create_btc_delegation fields

The *submitter* is the Cosmos account that sends ``create_btc_delegation`` (in btcmesh the
checkpoint service, which attaches the staking tx and its inclusion proof): the proof of
possession is the staker's BIP-340 signature over ``sha256(submitter_bech32_utf8)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from btc_staking.errors import InvalidSignatureError, InvalidTxError
from btc_staking.keys import check_secret, schnorr_sign, to_xonly, xonly_from_secret
from btc_staking.params import StakingParams
from btc_staking.signing import pop_digest, sign_script_path, verify_script_path_sig
from btc_staking.staking import (
    SlashingChangeInfo,
    StakingInfo,
    UnbondingInfo,
    build_slashing_change_info,
    build_slashing_tx,
    build_staking_info,
    build_staking_tx,
    build_unbonding_info,
    build_unbonding_tx,
    build_withdraw_tx,
    staking_pk_script,
    validate_slashing_tx,
    validate_staking_tx,
    validate_unbonding_tx,
)
from btc_staking.tx import OutPoint, Tx, TxIn, TxOut
from btc_staking.witness import timelock_witness, unbonding_witness

__all__ = ["StakerError", "StakingDelegation", "Staker", "DEFAULT_WITHDRAW_FEE", "address_bytes"]

#: Fee (sat) of the staker's timelock-path withdrawals (one input, one output: ~111 vB).
DEFAULT_WITHDRAW_FEE = 500


def address_bytes(bech32_address: str) -> bytes:
    """The raw bytes of a bech32 account address (what a Babylon PoP signs the sha256 of)."""
    from cosmpy.crypto.address import Address

    try:
        return bytes(Address(bech32_address))
    except Exception as exc:  # noqa: BLE001 - cosmpy raises several types for a bad address
        raise StakerError(f"not a bech32 account address: {bech32_address!r:.80}") from exc


class StakerError(ValueError):
    """Misuse of the staker helper (wrong tx, missing covenant quorum, bad signature)."""


@dataclass(frozen=True)
class StakingDelegation:
    """One staking lock and the staker's pre-signed material for it."""

    params: StakingParams
    staker_pk: bytes
    fp_pks: tuple[bytes, ...]
    staking_time: int
    staking_tx: Tx
    staking_output_index: int
    info: StakingInfo
    slashing_tx: Tx
    delegator_slashing_sig: bytes
    unbonding_tx: Tx
    unbonding_info: UnbondingInfo
    unbonding_slashing_tx: Tx
    delegator_unbonding_slashing_sig: bytes

    @property
    def staking_value(self) -> int:
        """Value of the staking output (sat)."""
        return self.info.value

    @property
    def staking_tx_hash(self) -> str:
        """Display-order staking txid (the registry key)."""
        return self.staking_tx.txid_hex()

    @property
    def staking_outpoint(self) -> OutPoint:
        return OutPoint(self.staking_tx.txid(), self.staking_output_index)

    @property
    def staking_output(self) -> TxOut:
        return self.staking_tx.outputs[self.staking_output_index]

    @property
    def unbonding_value(self) -> int:
        return self.unbonding_info.value

    @property
    def unbonding_outpoint(self) -> OutPoint:
        return OutPoint(self.unbonding_tx.txid(), 0)

    @property
    def slashing_change_info(self) -> SlashingChangeInfo:
        """The timelocked output that receives the slashing change."""
        return build_slashing_change_info(self.staker_pk, self.params.unbonding_time_blocks)

    def material(self, pop: bytes) -> dict[str, Any]:
        """``create_btc_delegation`` fields the checkpoint service needs besides the staking tx,
        its output index and the inclusion proof (which it adds itself)."""
        return {
            "staker_btc_pk": self.staker_pk.hex(),
            "pop": bytes(pop).hex(),
            "fp_btc_pk_list": [k.hex() for k in self.fp_pks],
            "staking_time": self.staking_time,
            "staking_value": self.staking_value,
            "slashing_tx": self.slashing_tx.serialize().hex(),
            "delegator_slashing_sig": self.delegator_slashing_sig.hex(),
            "unbonding_time": self.params.unbonding_time_blocks,
            "unbonding_tx": self.unbonding_tx.serialize().hex(),
            "unbonding_value": self.unbonding_value,
            "unbonding_slashing_tx": self.unbonding_slashing_tx.serialize().hex(),
            "delegator_unbonding_slashing_sig": self.delegator_unbonding_slashing_sig.hex(),
        }

    def create_msg(self, pop: bytes, inclusion_proof: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The full ``create_btc_delegation`` body (staking tx included)."""
        body = self.material(pop)
        body["staking_tx"] = self.staking_tx.serialize().hex()
        body["staking_output_index"] = self.staking_output_index
        if inclusion_proof is not None:
            body["inclusion_proof"] = dict(inclusion_proof)
        return body


class Staker:
    """A BTC staker holding one secret key."""

    def __init__(self, secret: bytes, params: StakingParams) -> None:
        check_secret(secret)
        self._secret = bytes(secret)
        self.params = params
        self.pk = xonly_from_secret(self._secret)

    # ------------------------------------------------------------------ identity
    def pop(self, submitter_address: str) -> bytes:
        """BIP-340 proof of possession (Babylon ``types/pop.go``): a signature over sha256 of the
        submitter's *raw* account-address bytes (the bech32 string decoded)."""
        if not isinstance(submitter_address, str) or not submitter_address:
            raise StakerError("submitter address must be a non-empty bech32 string")
        return schnorr_sign(self._secret, pop_digest(address_bytes(submitter_address)))

    # ------------------------------------------------------------------ staking
    def staking_outputs(self, fp_pk: bytes, staking_time: int, value: int) -> list[TxOut]:
        """[staking output, V0 OP_RETURN] (params bounds enforced)."""
        return build_staking_tx(self.pk, fp_pk, self.params, staking_time, value).outputs

    def fund_staking_tx(self, wallet: Any, fp_pk: bytes, staking_time: int, value: int,
                        fee_rate: float = 2.0) -> Tx:
        """A signed staking tx funded by ``wallet`` (a :class:`regtest.wallet.Wallet`); not broadcast."""
        return wallet.fund(self.staking_outputs(fp_pk, staking_time, value), fee_rate)

    def delegation(self, staking_tx: Tx, fp_pks: Sequence[bytes], staking_time: int,
                   value: int | None = None) -> StakingDelegation:
        """Locate the staking output in ``staking_tx`` and pre-sign the slashing txs of both paths."""
        p = self.params
        fps = tuple(to_xonly(k) for k in fp_pks)
        if value is None:
            spk = staking_pk_script(self.pk, fps, p.covenant_pks, p.covenant_quorum, staking_time)
            values = [o.value for o in staking_tx.outputs if o.script_pubkey == spk]
            if len(values) != 1:
                raise StakerError(f"expected exactly one staking output in the tx, found {len(values)}")
            value = values[0]
        try:
            vout = validate_staking_tx(staking_tx, self.pk, fps, p, staking_time, value)
        except InvalidTxError as exc:
            raise StakerError(f"not a staking tx of this staker: {exc}") from exc
        info = build_staking_info(self.pk, fps, p.covenant_pks, p.covenant_quorum, staking_time, value)
        outpoint = OutPoint(staking_tx.txid(), vout)
        slashing = build_slashing_tx(outpoint, value, self.pk, p)
        validate_slashing_tx(slashing, outpoint, value, self.pk, p)
        unbonding = build_unbonding_tx(outpoint, value, self.pk, fps, p)
        validate_unbonding_tx(unbonding, outpoint, value, self.pk, fps, p)
        ub_value = unbonding.outputs[0].value
        ub_info = build_unbonding_info(self.pk, fps, p.covenant_pks, p.covenant_quorum,
                                       p.unbonding_time_blocks, ub_value)
        ub_outpoint = OutPoint(unbonding.txid(), 0)
        ub_slashing = build_slashing_tx(ub_outpoint, ub_value, self.pk, p)
        validate_slashing_tx(ub_slashing, ub_outpoint, ub_value, self.pk, p)
        return StakingDelegation(
            params=p, staker_pk=self.pk, fp_pks=fps, staking_time=staking_time, staking_tx=staking_tx,
            staking_output_index=vout, info=info, slashing_tx=slashing,
            delegator_slashing_sig=sign_script_path(self._secret, slashing, 0, [info.output], info.slashing_script),
            unbonding_tx=unbonding, unbonding_info=ub_info, unbonding_slashing_tx=ub_slashing,
            delegator_unbonding_slashing_sig=sign_script_path(self._secret, ub_slashing, 0, [ub_info.output],
                                                              ub_info.slashing_script),
        )

    # ------------------------------------------------------------------ spends
    def signed_unbonding_tx(self, d: StakingDelegation, covenant_sigs: Mapping[bytes, bytes]) -> Tx:
        """The unbonding tx with its full witness: covenant quorum (each sig checked) + staker sig."""
        self._check_own(d)
        p = self.params
        leaf = d.info.unbonding_script
        good: dict[bytes, bytes] = {}
        for pk, sig in covenant_sigs.items():
            x = to_xonly(pk)
            if x not in p.covenant_pks:
                raise StakerError(f"{x.hex()} is not a covenant key")
            if not verify_script_path_sig(x, sig, d.unbonding_tx, 0, [d.staking_output], leaf):
                raise StakerError(f"covenant {x.hex()[:16]}…'s unbonding signature does not verify")
            good[x] = bytes(sig)
        if len(good) < p.covenant_quorum:
            raise StakerError(f"{len(good)} covenant unbonding signatures, quorum is {p.covenant_quorum}")
        staker_sig = sign_script_path(self._secret, d.unbonding_tx, 0, [d.staking_output], leaf)
        try:
            wit = unbonding_witness(p.covenant_pks, good, p.covenant_quorum, staker_sig, leaf,
                                    d.info.control_block(leaf))
        except InvalidSignatureError as exc:
            raise StakerError(str(exc)) from exc
        return Tx(2, [TxIn(d.staking_outpoint, witness=wit)], list(d.unbonding_tx.outputs), 0)

    def withdraw_tx(self, d: StakingDelegation, dest_script: bytes, *, path: str = "unbonding",
                    fee: int = DEFAULT_WITHDRAW_FEE, slashing_tx: Tx | None = None) -> Tx:
        """Timelock-path withdrawal to ``dest_script``.

        ``path``: ``"staking"`` (staking output after staking_time), ``"unbonding"`` (unbonding output
        after unbonding_time) or ``"slashing_change"`` (change output of the confirmed ``slashing_tx``
        after unbonding_time)."""
        self._check_own(d)
        if path == "staking":
            outpoint, out = d.staking_outpoint, d.staking_output
            leaf, control, lock = d.info.timelock_script, d.info.control_block(d.info.timelock_script), d.staking_time
        elif path == "unbonding":
            outpoint, out = d.unbonding_outpoint, d.unbonding_info.output
            leaf, lock = d.unbonding_info.timelock_script, self.params.unbonding_time_blocks
            control = d.unbonding_info.control_block(leaf)
        elif path == "slashing_change":
            if slashing_tx is None or len(slashing_tx.outputs) != 2:
                raise StakerError("slashing_change withdrawal needs the two-output slashing tx")
            ch = d.slashing_change_info
            if slashing_tx.outputs[1].script_pubkey != ch.pk_script:
                raise StakerError("the slashing tx's second output is not this staker's change output")
            outpoint, out = OutPoint(slashing_tx.txid(), 1), slashing_tx.outputs[1]
            leaf, control, lock = ch.timelock_script, ch.control_block(), ch.lock_time
        else:
            raise StakerError(f"unknown withdrawal path {path!r} (staking | unbonding | slashing_change)")
        tx = build_withdraw_tx(outpoint, out.value, lock, dest_script, fee)
        tx.inputs[0].witness = timelock_witness(sign_script_path(self._secret, tx, 0, [out], leaf), leaf, control)
        return tx

    def _check_own(self, d: StakingDelegation) -> None:
        if d.staker_pk != self.pk:
            raise StakerError("delegation belongs to another staker")
