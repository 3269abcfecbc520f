"""A local covenant committee (Babylon's covenant emulator, in-process).

Each member checks a registered delegation the way the covenant emulator does — the staking output
rebuilds from the params, staker and FPs; the unbonding and both slashing txs follow the params;
the staker's pre-signatures verify — and only then signs:

* ``unbonding_tx_sig``: a BIP-340 signature of the unbonding tx (unbonding leaf of the staking output);
* ``slashing_tx_sigs``: one Schnorr *adaptor* signature of the staking slashing tx per FP, encrypted
  to that FP's key, so it becomes a valid signature only with the FP's secret (which an EOTS
  double-sign reveals);
* ``slashing_unbonding_tx_sigs``: the same for the unbonding-output slashing tx.

The result is an ``add_covenant_sigs`` message (``docs/CHAIN_MESSAGES.md``)::

    committee = CovenantCommittee.regtest(params)           # sk_i = sha256([i]) devnet keys
    for sigs in committee.sign(delegation_json):            # registry delegation (hex fields)
        client.execute(registry, sigs.to_msg(), wallet)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from btc_staking.adaptor import AdaptorSignature, encrypt_sign
from btc_staking.errors import StakingError
from btc_staking.keys import check_secret, to_xonly, xonly_from_secret
from btc_staking.params import StakingParams, covenant_secret
from btc_staking.signing import script_path_sighash, sign_script_path, verify_script_path_sig
from btc_staking.staking import (
    build_staking_info,
    build_unbonding_info,
    validate_slashing_tx,
    validate_unbonding_tx,
)
from btc_staking.tx import OutPoint, Tx, TxOut

__all__ = ["CovenantError", "CovenantSignatures", "CovenantMember", "CovenantCommittee", "DelegationView"]


class CovenantError(ValueError):
    """The covenant refuses to sign: the delegation breaks a rule (the message says which)."""


@dataclass(frozen=True)
class DelegationView:
    """The fields of a registry delegation the covenant checks and signs (parsed, typed)."""

    staking_tx_hash: str
    staker_pk: bytes
    fp_pks: tuple[bytes, ...]
    staking_time: int
    staking_value: int
    staking_tx: Tx
    staking_output_index: int
    slashing_tx: Tx
    delegator_slashing_sig: bytes
    unbonding_time: int
    unbonding_tx: Tx
    unbonding_slashing_tx: Tx
    delegator_unbonding_slashing_sig: bytes

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "DelegationView":
        """Parse a ``delegation`` query result / ``create_btc_delegation`` body (hex fields)."""
        def raw(name: str) -> bytes:
            v = d.get(name)
            if isinstance(v, (bytes, bytearray)):
                return bytes(v)
            if not isinstance(v, str) or not v:
                raise CovenantError(f"delegation lacks {name}")
            try:
                return bytes.fromhex(v)
            except ValueError as exc:
                raise CovenantError(f"{name} is not hex") from exc

        def tx(name: str) -> Tx:
            try:
                return Tx.parse(raw(name))
            except StakingError as exc:
                raise CovenantError(f"{name} does not parse: {exc}") from exc

        def num(name: str) -> int:
            v = d.get(name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise CovenantError(f"delegation field {name} must be an int, got {v!r}")
            return v

        fps = d.get("fp_btc_pk_list")
        if not isinstance(fps, list) or not fps:
            raise CovenantError("delegation lacks fp_btc_pk_list")
        try:
            fp_pks = tuple(to_xonly(bytes.fromhex(p) if isinstance(p, str) else bytes(p)) for p in fps)
            staker = to_xonly(raw("staker_btc_pk"))
        except (ValueError, StakingError) as exc:
            raise CovenantError(f"bad key in delegation: {exc}") from exc
        staking_tx = tx("staking_tx")
        ub_time = d.get("unbonding_time")
        return cls(
            staking_tx_hash=str(d.get("staking_tx_hash") or staking_tx.txid_hex()),
            staker_pk=staker, fp_pks=fp_pks, staking_time=num("staking_time"),
            staking_value=num("staking_value"), staking_tx=staking_tx,
            staking_output_index=num("staking_output_index"), slashing_tx=tx("slashing_tx"),
            delegator_slashing_sig=raw("delegator_slashing_sig"),
            unbonding_time=ub_time if isinstance(ub_time, int) else -1,
            unbonding_tx=tx("unbonding_tx"), unbonding_slashing_tx=tx("unbonding_slashing_tx"),
            delegator_unbonding_slashing_sig=raw("delegator_unbonding_slashing_sig"),
        )


@dataclass(frozen=True)
class CovenantSignatures:
    """One member's signatures on one delegation."""

    pk: bytes
    staking_tx_hash: str
    slashing_tx_sigs: tuple[AdaptorSignature, ...]
    unbonding_tx_sig: bytes
    slashing_unbonding_tx_sigs: tuple[AdaptorSignature, ...]

    def to_msg(self) -> dict[str, Any]:
        """The ``add_covenant_sigs`` execute message."""
        return {"add_covenant_sigs": {
            "pk": self.pk.hex(),
            "staking_tx_hash": self.staking_tx_hash,
            "slashing_tx_sigs": [s.serialize().hex() for s in self.slashing_tx_sigs],
            "unbonding_tx_sig": self.unbonding_tx_sig.hex(),
            "slashing_unbonding_tx_sigs": [s.serialize().hex() for s in self.slashing_unbonding_tx_sigs],
        }}


@dataclass(frozen=True)
class _Checked:
    """A delegation that passed every covenant check, with the outputs/leaves to sign against."""

    view: DelegationView
    staking_output: TxOut
    unbonding_leaf: bytes
    slashing_leaf: bytes
    unbonding_output: TxOut
    unbonding_slashing_leaf: bytes


def check_delegation(view: DelegationView, params: StakingParams) -> _Checked:
    """Every check the covenant makes before signing; raises :class:`CovenantError`."""
    p = params
    try:
        p.check_staking_time(view.staking_time)
        p.check_staking_value(view.staking_value)
        if view.unbonding_time != p.unbonding_time_blocks:
            raise CovenantError(f"unbonding_time {view.unbonding_time} != params {p.unbonding_time_blocks}")
        info = build_staking_info(view.staker_pk, view.fp_pks, p.covenant_pks, p.covenant_quorum,
                                  view.staking_time, view.staking_value)
        idx = view.staking_output_index
        if not 0 <= idx < len(view.staking_tx.outputs):
            raise CovenantError(f"staking_output_index {idx} out of range")
        out = view.staking_tx.outputs[idx]
        if out.script_pubkey != info.pk_script or out.value != view.staking_value:
            raise CovenantError("staking output does not match the script rebuilt from params, staker and FPs")
        outpoint = OutPoint(view.staking_tx.txid(), idx)
        validate_unbonding_tx(view.unbonding_tx, outpoint, view.staking_value, view.staker_pk, view.fp_pks, p)
        validate_slashing_tx(view.slashing_tx, outpoint, view.staking_value, view.staker_pk, p)
        ub_out = view.unbonding_tx.outputs[0]
        ub_info = build_unbonding_info(view.staker_pk, view.fp_pks, p.covenant_pks, p.covenant_quorum,
                                       p.unbonding_time_blocks, ub_out.value)
        ub_outpoint = OutPoint(view.unbonding_tx.txid(), 0)
        validate_slashing_tx(view.unbonding_slashing_tx, ub_outpoint, ub_out.value, view.staker_pk, p)
    except CovenantError:
        raise
    except StakingError as exc:
        raise CovenantError(f"delegation {view.staking_tx_hash[:16]}… breaks a staking rule: {exc}") from exc
    if not verify_script_path_sig(view.staker_pk, view.delegator_slashing_sig, view.slashing_tx, 0, [out],
                                  info.slashing_script):
        raise CovenantError("the staker's slashing signature does not verify")
    if not verify_script_path_sig(view.staker_pk, view.delegator_unbonding_slashing_sig,
                                  view.unbonding_slashing_tx, 0, [ub_out], ub_info.slashing_script):
        raise CovenantError("the staker's unbonding-slashing signature does not verify")
    return _Checked(view, out, info.unbonding_script, info.slashing_script, ub_out, ub_info.slashing_script)


class CovenantMember:
    """One covenant key."""

    def __init__(self, secret: bytes) -> None:
        check_secret(secret)
        self._secret = bytes(secret)
        self.pk = xonly_from_secret(self._secret)

    def sign(self, delegation: Mapping[str, Any] | DelegationView, params: StakingParams) -> CovenantSignatures:
        """Check ``delegation`` against ``params`` and sign it (raises :class:`CovenantError`)."""
        if self.pk not in params.covenant_pks:
            raise CovenantError(f"{self.pk.hex()} is not a covenant key of these params")
        view = delegation if isinstance(delegation, DelegationView) else DelegationView.from_json(delegation)
        c = check_delegation(view, params)
        slash_msg = script_path_sighash(view.slashing_tx, 0, [c.staking_output], c.slashing_leaf)
        ub_slash_msg = script_path_sighash(view.unbonding_slashing_tx, 0, [c.unbonding_output],
                                           c.unbonding_slashing_leaf)
        return CovenantSignatures(
            pk=self.pk,
            staking_tx_hash=view.staking_tx_hash,
            slashing_tx_sigs=tuple(encrypt_sign(self._secret, fp, slash_msg) for fp in view.fp_pks),
            unbonding_tx_sig=sign_script_path(self._secret, view.unbonding_tx, 0, [c.staking_output],
                                              c.unbonding_leaf),
            slashing_unbonding_tx_sigs=tuple(encrypt_sign(self._secret, fp, ub_slash_msg) for fp in view.fp_pks),
        )


class CovenantCommittee:
    """The covenant members this process holds (any subset of the params' covenant keys)."""

    def __init__(self, secrets: Sequence[bytes], params: StakingParams) -> None:
        members = [CovenantMember(s) for s in secrets]
        if not members:
            raise CovenantError("a committee needs at least one member")
        pks = [m.pk for m in members]
        if len(set(pks)) != len(pks):
            raise CovenantError("duplicate covenant member")
        for m in members:
            if m.pk not in params.covenant_pks:
                raise CovenantError(f"{m.pk.hex()} is not a covenant key of these params")
        self.members = members
        self.params = params

    @classmethod
    def regtest(cls, params: StakingParams, count: int | None = None) -> "CovenantCommittee":
        """Members with the devnet secrets ``sha256([i])`` (``btc_staking.params.covenant_secret``)."""
        n = len(params.covenant_pks) if count is None else count
        return cls([covenant_secret(i) for i in range(n)], params)

    @property
    def quorum(self) -> int:
        return self.params.covenant_quorum

    def sign(self, delegation: Mapping[str, Any] | DelegationView,
             signers: int | None = None) -> list[CovenantSignatures]:
        """Signatures of the first ``signers`` members (default: every member)."""
        view = delegation if isinstance(delegation, DelegationView) else DelegationView.from_json(delegation)
        chosen = self.members if signers is None else self.members[:signers]
        return [m.sign(view, self.params) for m in chosen]

    @staticmethod
    def unbonding_sigs(sigs: Sequence[CovenantSignatures]) -> dict[bytes, bytes]:
        """``{covenant_pk: unbonding_tx_sig}`` (what the staker puts in the unbonding witness)."""
        return {s.pk: s.unbonding_tx_sig for s in sigs}
