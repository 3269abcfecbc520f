"""BTC slasher ("vigilante"): completes and broadcasts the pre-signed slashing txs of slashed FPs.

Flow (spec §4.5), per poll:

1. Ask the chain's finality module which FPs are slashed (``slashed_finality_providers {}``) and
   for their evidence (``evidence {fp_btc_pk}``).
2. Get the FP's secret key twice — from the chain (``extracted_btc_sk``) and by extracting it
   ourselves from the two EOTS signatures in the evidence (``btc_staking.eots.extract_secret``) —
   and refuse to continue unless both agree and ``x'·G`` is the FP key.
3. For every ACTIVE / UNBONDING delegation of that FP (the registry marks those SLASHED; EXPIRED,
   WITHDRAWN and never-active ones are left alone, as Babylon's slasher does), with the params
   version the delegation was registered under (``params_version``), complete the pre-signed slashing tx:
   decrypt the covenant adaptor signatures (covenant keys in descending x-only order, the first
   ``quorum`` ones, each checked to be a valid BIP-340 sig of the slashing sighash), sign the same
   sighash as the FP with the extracted key, check the staker's pre-signature, and assemble the
   witness ``cov sigs (desc, empty for absent) ‖ fp sig ‖ staker sig ‖ slashing leaf ‖ control block``.
   The staking-output slashing tx is used while the staking output is unspent; if the staker's
   unbonding tx is on Bitcoin, the unbonding-output slashing tx instead.
4. Broadcast on Bitcoin, skipping txs the backend already has (idempotent: a confirmed or
   mempool slashing is reported, never re-sent), and report a ``SlashResult`` per delegation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence

from btc_staking import eots
from btc_staking.adaptor import AdaptorSignature
from btc_staking.errors import StakingError
from btc_staking.keys import schnorr_sign, schnorr_verify, to_xonly, xonly_from_secret
from btc_staking.params import StakingParams
from btc_staking.signing import script_path_sighash
from btc_staking.staking import build_staking_info, build_unbonding_info, validate_slashing_tx
from btc_staking.tx import OutPoint, Tx, TxOut
from btc_staking.witness import slashing_witness
from checkpoint.errors import CheckpointError

__all__ = [
    "SlasherError",
    "KeyMismatchError",
    "IncompleteDelegationError",
    "CovenantAdaptorSigs",
    "SlashableDelegation",
    "SlashResult",
    "SlasherChain",
    "QuerySlasherChain",
    "complete_slashing_tx",
    "recover_fp_secret",
    "Slasher",
]

log = logging.getLogger(__name__)

#: Registry statuses whose BTC the slasher takes: what the registry slashed (ACTIVE / UNBONDING
#: turned SLASHED) and, for a registry that does not mark them, ACTIVE / UNBONDING themselves.
SLASHABLE_STATUSES = ("SLASHED", "ACTIVE", "UNBONDING")


class SlasherError(CheckpointError):
    """Base class of slasher errors."""


class KeyMismatchError(SlasherError):
    """The chain's extracted key and our own extraction disagree, or neither matches the FP key."""


class IncompleteDelegationError(SlasherError):
    """A delegation lacks what is needed to complete its slashing tx (sigs, txs, a quorum)."""


# --------------------------------------------------------------------------------------- data
def _b(value: Any, name: str, length: int | None = None) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
    elif isinstance(value, str):
        try:
            raw = bytes.fromhex(value)
        except ValueError as exc:
            raise IncompleteDelegationError(f"{name} is not hex") from exc
    else:
        raise IncompleteDelegationError(f"{name} missing or not bytes/hex: {value!r}")
    if length is not None and len(raw) != length:
        raise IncompleteDelegationError(f"{name} must be {length} bytes, got {len(raw)}")
    return raw


def _pick(d: Mapping[str, Any], *names: str) -> Any:
    for n in names:
        if d.get(n) is not None:
            return d[n]
    return None


@dataclass(frozen=True)
class CovenantAdaptorSigs:
    """One covenant member's adaptor signatures on a slashing tx, one per FP (FP-list order)."""

    cov_pk: bytes
    adaptor_sigs: tuple[AdaptorSignature, ...]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "CovenantAdaptorSigs":
        """``{cov_pk, adaptor_sigs: [hex65, ...]}`` (aliases: ``covenant_pk``, ``sigs``)."""
        pk = to_xonly(_b(_pick(d, "cov_pk", "covenant_pk", "pk"), "cov_pk"))
        sigs = _pick(d, "adaptor_sigs", "sigs", "adaptor_signatures")
        if not isinstance(sigs, list) or not sigs:
            raise IncompleteDelegationError("covenant adaptor_sigs must be a non-empty list")
        try:
            return cls(pk, tuple(AdaptorSignature.parse(_b(s, "adaptor_sig")) for s in sigs))
        except StakingError as exc:
            raise IncompleteDelegationError(f"bad covenant adaptor signature: {exc}") from exc


@dataclass(frozen=True)
class SlashableDelegation:
    """What the slasher needs from a registry delegation."""

    staking_tx_hash: str
    staker_pk: bytes
    fp_pks: tuple[bytes, ...]
    staking_tx: Tx
    staking_output_idx: int
    staking_time: int
    slashing_tx: Tx
    delegator_slashing_sig: bytes
    covenant_slashing_sigs: tuple[CovenantAdaptorSigs, ...]
    unbonding_tx: Tx | None = None
    unbonding_slashing_tx: Tx | None = None
    delegator_unbonding_slashing_sig: bytes | None = None
    covenant_slashing_unbonding_sigs: tuple[CovenantAdaptorSigs, ...] = ()
    status: str = ""
    params_version: int | None = None

    @property
    def staking_output(self) -> TxOut:
        return self.staking_tx.outputs[self.staking_output_idx]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "SlashableDelegation":
        """Parse a registry delegation (hex fields; Babylon field names, common aliases accepted)."""
        def tx(name: str, *aliases: str, required: bool = True) -> Tx | None:
            raw = _pick(d, name, *aliases)
            if raw is None or raw == "":
                if required:
                    raise IncompleteDelegationError(f"delegation lacks {name}")
                return None
            try:
                return Tx.parse(_b(raw, name))
            except StakingError as exc:
                raise IncompleteDelegationError(f"{name} does not parse: {exc}") from exc

        def covs(*names: str) -> tuple[CovenantAdaptorSigs, ...]:
            raw = _pick(d, *names) or []
            if not isinstance(raw, list):
                raise IncompleteDelegationError(f"{names[0]} must be a list")
            return tuple(CovenantAdaptorSigs.from_json(c) for c in raw)

        fps = _pick(d, "fp_btc_pk_list", "fp_pks", "fp_btc_pks")
        if not isinstance(fps, list) or not fps:
            raise IncompleteDelegationError("delegation lacks fp_btc_pk_list")
        staking_tx = tx("staking_tx", "staking_tx_hex")
        assert staking_tx is not None
        ub_sig = _pick(d, "delegator_unbonding_slashing_sig")
        return cls(
            staking_tx_hash=str(_pick(d, "staking_tx_hash") or staking_tx.txid_hex()),
            staker_pk=to_xonly(_b(_pick(d, "staker_btc_pk", "btc_pk", "staker_pk"), "staker_btc_pk")),
            fp_pks=tuple(to_xonly(_b(p, "fp_btc_pk")) for p in fps),
            staking_tx=staking_tx,
            staking_output_idx=int(_pick(d, "staking_output_idx", "staking_output_index") or 0),
            staking_time=int(_pick(d, "staking_time") or 0),
            slashing_tx=tx("slashing_tx"),  # type: ignore[arg-type]
            delegator_slashing_sig=_b(_pick(d, "delegator_slashing_sig"), "delegator_slashing_sig", 64),
            covenant_slashing_sigs=covs("covenant_slashing_sigs", "covenant_sigs"),
            unbonding_tx=tx("unbonding_tx", required=False),
            unbonding_slashing_tx=tx("unbonding_slashing_tx", required=False),
            delegator_unbonding_slashing_sig=None if ub_sig in (None, "") else _b(
                ub_sig, "delegator_unbonding_slashing_sig", 64),
            covenant_slashing_unbonding_sigs=covs("covenant_slashing_unbonding_sigs"),
            status=str(_pick(d, "status") or ""),
            params_version=None if d.get("params_version") is None else int(d["params_version"]),
        )


@dataclass(frozen=True)
class SlashResult:
    """Outcome for one delegation: ``status`` is broadcast | in_mempool | confirmed | rejected | skipped."""

    fp_btc_pk: str
    staking_tx_hash: str
    path: str  # "staking" or "unbonding"
    txid: str
    status: str
    reason: str = ""


# --------------------------------------------------------------------------------------- crypto
def recover_fp_secret(fp_btc_pk: bytes, evidence: Mapping[str, Any], chain_sk_hex: str | None) -> bytes:
    """Extract the FP key from the evidence's two EOTS sigs and compare with the chain's copy."""
    fp = to_xonly(_b(fp_btc_pk, "fp_btc_pk"))
    try:
        height = int(evidence["block_height"])
        own = eots.extract_secret(
            fp, _b(evidence["pub_rand"], "pub_rand", 32),
            eots.vote_message(height, _b(evidence["canonical_app_hash"], "canonical_app_hash", 32)),
            _b(evidence["canonical_finality_sig"], "canonical_finality_sig", 32),
            eots.vote_message(height, _b(evidence["fork_app_hash"], "fork_app_hash", 32)),
            _b(evidence["fork_finality_sig"], "fork_finality_sig", 32))
    except (KeyError, TypeError, StakingError, IncompleteDelegationError) as exc:
        raise KeyMismatchError(f"cannot extract the FP key from the evidence: {exc}") from exc
    if xonly_from_secret(own) != fp:
        raise KeyMismatchError("extracted key does not match the FP public key")
    if chain_sk_hex is not None and _b(chain_sk_hex, "extracted_btc_sk", 32) != own:
        raise KeyMismatchError("the chain's extracted key differs from the one extracted from the evidence")
    return own


def complete_slashing_tx(
    slashing_tx: Tx,
    funding_output: TxOut,
    leaf_script: bytes,
    control_block: bytes,
    covenant_pks: Sequence[bytes],
    quorum: int,
    covenant_sigs: Sequence[CovenantAdaptorSigs],
    fp_pks: Sequence[bytes],
    fp_sk: bytes,
    staker_pk: bytes,
    staker_sig: bytes,
) -> Tx:
    """Return a copy of ``slashing_tx`` with the full slashing-path witness (spec §4.5 steps 1-4)."""
    fp_x = xonly_from_secret(fp_sk)
    fps = [to_xonly(p) for p in fp_pks]
    if fp_x not in fps:
        raise IncompleteDelegationError("the slashed FP is not in this delegation's FP list")
    fp_index = fps.index(fp_x)
    msg = script_path_sighash(slashing_tx, 0, [funding_output], leaf_script)
    if not schnorr_verify(to_xonly(staker_pk), msg, staker_sig):
        raise IncompleteDelegationError("the staker's slashing pre-signature does not verify")
    cov_set = {to_xonly(k) for k in covenant_pks}
    by_pk = {c.cov_pk: c for c in covenant_sigs if c.cov_pk in cov_set}
    decrypted: dict[bytes, bytes] = {}
    for pk in sorted(by_pk, reverse=True):  # descending x-only order, stop at quorum (Go)
        if len(decrypted) == quorum:
            break
        sigs = by_pk[pk].adaptor_sigs
        if fp_index >= len(sigs):
            raise IncompleteDelegationError(f"covenant {pk.hex()} has no adaptor sig for FP #{fp_index}")
        try:
            decrypted[pk] = sigs[fp_index].decrypt_and_verify(fp_sk, pk, msg)
        except StakingError as exc:
            log.warning("covenant %s adaptor sig unusable: %s", pk.hex(), exc)
    if len(decrypted) < quorum:
        raise IncompleteDelegationError(f"only {len(decrypted)} usable covenant signatures, quorum is {quorum}")
    fp_sig = schnorr_sign(fp_sk, msg)
    tx = slashing_tx.copy()
    tx.inputs[0].witness = slashing_witness(covenant_pks, decrypted, quorum, fps, {fp_x: fp_sig},
                                            staker_sig, leaf_script, control_block)
    return tx


# --------------------------------------------------------------------------------------- chain
class SlasherChain(Protocol):
    """Chain queries the slasher needs."""

    def slashed_finality_providers(self) -> list[dict]:
        """``[{fp_btc_pk, extracted_btc_sk, block_height, ...}]``."""

    def evidence(self, fp_btc_pk: str) -> list[dict]:
        """Equivocation evidence records of the FP."""

    def delegations_of_fp(self, fp_btc_pk: str) -> list[dict]:
        """Registry delegations (JSON) that list the FP."""

    def staking_params(self) -> StakingParams:
        """Staking params (covenant keys, quorum, unbonding time, slashing script)."""


@dataclass
class QuerySlasherChain:
    """``SlasherChain`` over smart queries ``query(contract, msg)`` (cosmpy ``ChainClient.query`` or in-process)."""

    query: Callable[[str, dict], Any]
    finality: str
    registry: str
    params: StakingParams | None = None
    delegations_query: Callable[[str], list[dict]] | None = None

    def slashed_finality_providers(self) -> list[dict]:
        return list(self.query(self.finality, {"slashed_finality_providers": {}})["finality_providers"])

    def evidence(self, fp_btc_pk: str) -> list[dict]:
        return list(self.query(self.finality, {"evidence": {"fp_btc_pk": fp_btc_pk}})["evidence"])

    def delegations_of_fp(self, fp_btc_pk: str) -> list[dict]:
        if self.delegations_query is not None:
            return self.delegations_query(fp_btc_pk)
        out: list[dict] = []
        start_after = None
        while True:
            msg: dict[str, Any] = {"fp_btc_pk": fp_btc_pk, "limit": 100}
            if start_after:
                msg["start_after"] = start_after
            reply = self.query(self.registry, {"delegations": msg})
            page = reply.get("delegations", []) if isinstance(reply, dict) else list(reply or [])
            out.extend(page)
            nxt = reply.get("next_key") if isinstance(reply, dict) else None
            if not nxt or not page:
                break
            start_after = nxt
        fp = fp_btc_pk.lower()
        return [d for d in out if fp in [str(p).lower()[-64:] for p in (d.get("fp_btc_pk_list") or [])]]

    def staking_params(self) -> StakingParams:
        if self.params is None:
            versions = self._versions()
            if versions:
                self.params = versions[-1]
            else:
                reply = self.query(self.registry, {"params": {}})
                self.params = StakingParams.from_dict(reply.get("params", reply))
        return self.params

    _versions_cache: list[StakingParams] | None = None

    def _versions(self) -> list[StakingParams]:
        """The registry's params versions (``params {}`` → ``params_versions``); [] if it has none."""
        if self._versions_cache is None:
            try:
                reply = self.query(self.registry, {"params": {}})
            except Exception:  # noqa: BLE001 - a registry without versions: the single params apply
                reply = None
            raw = reply.get("params_versions") if isinstance(reply, dict) else None
            if not isinstance(raw, list):
                return []
            self._versions_cache = [StakingParams.from_dict({k: v for k, v in d.items() if k != "version"})
                                    for d in raw]
        return self._versions_cache

    def params_for_version(self, version: int) -> StakingParams | None:
        """The params version a delegation was registered under (None if the registry has no such version)."""
        versions = self._versions()
        return versions[version] if 0 <= version < len(versions) else None


# --------------------------------------------------------------------------------------- slasher
class BitcoinLike(Protocol):
    """The ``regtest.BitcoinBackend`` subset the slasher uses."""

    def send_raw_transaction(self, raw: bytes) -> str: ...

    def get_raw_transaction(self, txid_hex: str) -> bytes: ...

    def get_mempool(self) -> list[str]: ...


@dataclass
class Slasher:
    """Watches the chain for slashed FPs and slashes their delegations on Bitcoin."""

    chain: SlasherChain
    bitcoin: BitcoinLike
    results: dict[tuple[str, str], SlashResult] = field(default_factory=dict)
    keys: dict[str, bytes] = field(default_factory=dict)

    def _known(self, txid: str) -> str | None:
        """'in_mempool' / 'confirmed' if the backend has the tx, else None."""
        if txid in set(self.bitcoin.get_mempool()):
            return "in_mempool"
        try:
            self.bitcoin.get_raw_transaction(txid)
        except Exception:
            return None
        return "confirmed"

    def poll(self) -> list[SlashResult]:
        """One pass over every slashed FP; returns the results of this pass."""
        out: list[SlashResult] = []
        for entry in self.chain.slashed_finality_providers():
            fp = str(entry["fp_btc_pk"]).lower()
            sk = self.keys.get(fp)
            if sk is None:
                evidence = self.chain.evidence(fp)
                if not evidence:
                    raise KeyMismatchError(f"FP {fp} is slashed but the chain has no evidence for it")
                sk = recover_fp_secret(bytes.fromhex(fp), evidence[0], entry.get("extracted_btc_sk"))
                self.keys[fp] = sk
            for d in self.chain.delegations_of_fp(fp):
                status = str(d.get("status") or "")
                if status and status not in SLASHABLE_STATUSES:
                    log.info("not slashing %s: %s", d.get("staking_tx_hash"), status)
                    continue
                sd = SlashableDelegation.from_json(d)
                out.append(self.slash_delegation(sd, sk, self.params_for(sd)))
        return out

    def params_for(self, d: SlashableDelegation) -> StakingParams:
        """The delegation's own params version when the chain can tell, else the chain's params."""
        by_version = getattr(self.chain, "params_for_version", None)
        if d.params_version is not None and callable(by_version):
            p = by_version(d.params_version)
            if p is not None:
                return p
        return self.chain.staking_params()

    def build(self, d: SlashableDelegation, fp_sk: bytes, params: StakingParams) -> tuple[str, Tx, TxOut]:
        """(path, completed slashing tx, funding output); the unbonding path if the unbonding tx is on Bitcoin."""
        value = d.staking_output.value
        unbonded = d.unbonding_tx is not None and self._known(d.unbonding_tx.txid_hex()) is not None
        if unbonded:
            assert d.unbonding_tx is not None
            if d.unbonding_slashing_tx is None or d.delegator_unbonding_slashing_sig is None:
                raise IncompleteDelegationError("unbonded delegation lacks its unbonding slashing tx/sig")
            ub_out = d.unbonding_tx.outputs[0]
            info = build_unbonding_info(d.staker_pk, d.fp_pks, params.covenant_pks, params.covenant_quorum,
                                        params.unbonding_time_blocks, ub_out.value)
            if info.pk_script != ub_out.script_pubkey:
                raise IncompleteDelegationError("unbonding output does not match the rebuilt unbonding script")
            validate_slashing_tx(d.unbonding_slashing_tx, OutPoint(d.unbonding_tx.txid(), 0), ub_out.value,
                                 d.staker_pk, params)
            tx = complete_slashing_tx(d.unbonding_slashing_tx, ub_out, info.slashing_script,
                                      info.control_block(info.slashing_script), params.covenant_pks,
                                      params.covenant_quorum, d.covenant_slashing_unbonding_sigs, d.fp_pks, fp_sk,
                                      d.staker_pk, d.delegator_unbonding_slashing_sig)
            return "unbonding", tx, ub_out
        info = build_staking_info(d.staker_pk, d.fp_pks, params.covenant_pks, params.covenant_quorum,
                                  d.staking_time, value)
        if info.pk_script != d.staking_output.script_pubkey:
            raise IncompleteDelegationError("staking output does not match the rebuilt staking script")
        validate_slashing_tx(d.slashing_tx, OutPoint(d.staking_tx.txid(), d.staking_output_idx), value,
                             d.staker_pk, params)
        tx = complete_slashing_tx(d.slashing_tx, d.staking_output, info.slashing_script,
                                  info.control_block(info.slashing_script), params.covenant_pks,
                                  params.covenant_quorum, d.covenant_slashing_sigs, d.fp_pks, fp_sk,
                                  d.staker_pk, d.delegator_slashing_sig)
        return "staking", tx, d.staking_output

    def slash_delegation(self, d: SlashableDelegation, fp_sk: bytes, params: StakingParams) -> SlashResult:
        """Complete and broadcast one delegation's slashing tx (idempotent)."""
        fp = xonly_from_secret(fp_sk).hex()
        # a slashing we already confirmed is final: no Bitcoin calls beyond one lookup
        prev = self.results.get((fp, d.staking_tx_hash))
        if prev is not None and prev.status == "confirmed":
            return prev
        try:
            path, tx, _ = self.build(d, fp_sk, params)
        except SlasherError as exc:
            res = SlashResult(fp, d.staking_tx_hash, "", "", "skipped", str(exc))
            self.results[(fp, d.staking_tx_hash)] = res
            return res
        txid = tx.txid_hex()
        known = self._known(txid)
        if known is not None:
            res = SlashResult(fp, d.staking_tx_hash, path, txid, known)
        else:
            try:
                self.bitcoin.send_raw_transaction(tx.serialize())
                res = SlashResult(fp, d.staking_tx_hash, path, txid, "broadcast")
            except Exception as exc:  # TxRejected (e.g. output already withdrawn), transport errors
                res = SlashResult(fp, d.staking_tx_hash, path, txid, "rejected", str(exc))
        self.results[(fp, d.staking_tx_hash)] = res
        log.info("slashing %s/%s via %s: %s %s", fp[:8], d.staking_tx_hash[:8], path, txid, res.status)
        return res
