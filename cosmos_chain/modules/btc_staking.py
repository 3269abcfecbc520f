"""``btc_staking``: the BTC staking registry (Babylon's x/btcstaking, phase-2 flow).

Finality providers register their BTC key (with a proof of possession) and the Cosmos validator
their virtual stake goes to. Stakers (or the checkpoint service on their behalf) register BTC
delegations with the staking tx, the pre-signed unbonding and slashing txs and the staker's
signatures; the covenant committee adds its signatures; an inclusion proof of the staking tx
(k-deep on the BTC light client) starts the delegation. Messages and replies:
``docs/CHAIN_MESSAGES.md``.

Statuses (Babylon names)::

    PENDING ──quorum──► VERIFIED ──k-deep proof──► ACTIVE
    PENDING ──k-deep proof──► PENDING (with proof) ──quorum──► ACTIVE
    ACTIVE / PENDING with proof ──BTC tip ≥ end_height − unbonding_time──► EXPIRED
    PENDING / VERIFIED / ACTIVE ──btc_undelegate (any unbonding-path spend signed by the staker)──► UNBONDING
    EXPIRED / UNBONDING ──report_withdrawal──► WITHDRAWN
    ACTIVE / UNBONDING delegation of a slashed FP ──► SLASHED ──report_withdrawal──► WITHDRAWN
    PENDING with proof / ACTIVE / EXPIRED ──its block leaves the light client's main chain──► REORGED
    REORGED ──add_btc_delegation_inclusion_proof (the tx is k-deep on the main chain again)──► ACTIVE ...

A SLASHED delegation is withdrawn when the staker takes back what Bitcoin left: the change
output of a slashing tx (after its ``unbonding_time`` timelock), or the staking / unbonding
output itself if no slashing tx was ever mined. It keeps ``slashed: true`` (the API reports
it as slashed-then-withdrawn) and the hooks see ``SLASHED → WITHDRAWN``, so the mesh burns
the collateral it still held for it.

Registration rules as Babylon's: a delegation is validated against the params version in force
at its staking tx's BTC inclusion height (``btc_activation_height``; without a proof: at the
light-client tip, and a later proof must land in the same version); the proof of possession is a
BIP-340 signature over sha256 of the sender's *raw* address bytes (Babylon ``types/pop.go``); a
coinbase staking tx is refused; a proof that arrives when no more than ``unbonding_time`` blocks
are left on the timelock is refused (Babylon ``VerifyInclusionProofAndGetHeight``). A slashed FP's
EXPIRED / WITHDRAWN / not-yet-active delegations are left alone (only ACTIVE and UNBONDING ones
become SLASHED). A BTC reorg deeper than k that takes the staking tx's block off
the light client's main chain makes the delegation REORGED (checked in ``end_block`` from the lowest
height the light client rewrote, ``take_reorg_floor``): it stops counting as stake and the hooks see
``→ REORGED`` (the mesh unstakes it as for an unbonding). If the tx is mined again on the main chain, a
new inclusion proof (``add_btc_delegation_inclusion_proof``) makes it ACTIVE again. Time-based changes (→ EXPIRED) are recomputed in ``end_block`` whenever the light-client tip
height moved, and before any message touches a delegation. Every status change (creation
included, with ``old_status=None``) is reported to ``hooks.on_delegation_status`` (the mesh
wiring sets the hooks; ``None`` falls back to :class:`cosmos_chain.modules.hooks.ChainStakingHooks`, a
no-op on an app without the ``mesh`` module).

Store (``m/btc_staking/``)::

    params              [StakingParams.to_dict(), ...]     versions 0..n
    fp/<pk>             finality provider record
    fp_order/<seq>      <pk>                                registration order
    del/<txid>          delegation record                   (display-order staking txid)
    by_staker/<pk>/<txid>, by_fp/<pk>/<txid>    1           query indexes
    expires/<h:010d>/<txid>  1                              delegations whose status depends on the BTC tip,
                                                            by the tip height h = end_height − unbonding_time
                                                            at which they expire (a tip move reads only h ≤ tip)
    last_tip            BTC tip height of the last refresh
    incl/<h:010d>/<txid> 1                              proven live delegations by inclusion height (reorg scan)
    fp_active_sat/<pk>  sum of the FP's ACTIVE staking values  (kept on every save: ``active_sat`` is O(1))
    by_status/<status>/<txid>  1                            status index (``delegations {status}`` reads only it)
    updated/<cosmos h:012d>/<txid>, upd_at/<txid>             change feed: each delegation once, under the
                                                            chain height of its last change (query
                                                            ``delegations_updated``, what indexers follow)
"""

from __future__ import annotations

import dataclasses
import hashlib
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from btc_staking.adaptor import AdaptorSignature
from btc_staking.errors import StakingError
from btc_staking.keys import schnorr_verify, to_xonly
from btc_staking.merkle import verify_merkle_proof
from btc_staking.params import StakingParams
from btc_staking.signing import script_path_sighash
from btc_staking.staking import (
    build_slashing_change_info,
    build_staking_info,
    build_unbonding_info,
    validate_slashing_tx,
    validate_unbonding_tx,
)
from btc_staking.tx import OutPoint, Tx
from cosmpy.crypto.address import Address

from ..errors import ContractError, InvalidRequestError
from ..store import CacheKV
from .base import Coin, Context, Module, register_module

__all__ = [
    "BtcStakingModule",
    "StakingHooks",
    "RegistryError",
    "PENDING",
    "VERIFIED",
    "ACTIVE",
    "UNBONDING",
    "EXPIRED",
    "WITHDRAWN",
    "SLASHED",
    "REORGED",
    "STATUSES",
]

PENDING, VERIFIED, ACTIVE, UNBONDING, EXPIRED, WITHDRAWN, SLASHED = (
    "PENDING", "VERIFIED", "ACTIVE", "UNBONDING", "EXPIRED", "WITHDRAWN", "SLASHED")
REORGED = "REORGED"  # the staking tx's block left the BTC light client's main chain (deep reorg)
STATUSES = (PENDING, VERIFIED, ACTIVE, UNBONDING, EXPIRED, WITHDRAWN, SLASHED, REORGED)
#: Statuses of a proven delegation that a deep BTC reorg can turn into REORGED.
_REORGABLE = (PENDING, ACTIVE, EXPIRED)
#: Statuses after which the delegation no longer takes covenant signatures or proofs.
_CLOSED = (UNBONDING, WITHDRAWN, SLASHED)
MAX_PAGE = 1000
DEFAULT_PAGE = 100


class RegistryError(ContractError):
    """A registry message was rejected (the log says why)."""


class StakingHooks(Protocol):
    """Called on every delegation status change (creation: ``old_status=None``)."""

    def on_delegation_status(self, ctx: Context, delegation: dict, old_status: str | None, new_status: str) -> None:
        ...


# ---------------------------------------------------------------------------- argument parsing


def _bytes(body: dict[str, Any], name: str, length: int | None = None) -> bytes:
    v = body.get(name)
    if not isinstance(v, str):
        raise InvalidRequestError(f"`{name}` must be a hex string")
    try:
        raw = bytes.fromhex(v)
    except ValueError as exc:
        raise InvalidRequestError(f"`{name}` is not hex") from exc
    if length is not None and len(raw) != length:
        raise InvalidRequestError(f"`{name}` must be {length} bytes, got {len(raw)}")
    return raw


def _int(body: dict[str, Any], name: str, lo: int = 0) -> int:
    v = body.get(name)
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise InvalidRequestError(f"`{name}` must be an integer ≥ {lo}, got {v!r:.60}")
    return v


def _unit_rate(raw: str, what: str) -> Decimal:
    """``raw`` as a finite decimal in [0, 1] (InvalidRequestError naming ``what`` otherwise)."""
    try:
        rate = Decimal(raw)
    except InvalidOperation as exc:
        raise InvalidRequestError(f"{what} is not a decimal: {raw!r:.40}") from exc
    if not rate.is_finite() or not Decimal(0) <= rate <= Decimal(1):
        raise InvalidRequestError(f"{what} must be in [0, 1], got {raw}")
    return rate


def _commission_bounds(genesis: dict[str, Any]) -> list[str]:
    """Genesis ``min_commission_rate`` (Babylon's x/btcstaking param, default 0) and
    ``max_commission_rate`` (ours, default 1): every FP's commission must lie between them."""
    out = [str(_unit_rate(str(genesis.get(key, default)), f"btc_staking genesis: {key}"))
           for key, default in (("min_commission_rate", "0"), ("max_commission_rate", "1"))]
    if Decimal(out[0]) > Decimal(out[1]):
        raise InvalidRequestError("btc_staking genesis: min_commission_rate above max_commission_rate")
    return out


def _key_hex(v: Any, name: str) -> str:
    """Normalise a 32-byte x-only (or 33-byte compressed) hex key to x-only lowercase hex."""
    if not isinstance(v, str):
        raise InvalidRequestError(f"`{name}` must be a hex public key")
    try:
        return to_xonly(bytes.fromhex(v)).hex()
    except ValueError as exc:
        raise InvalidRequestError(f"`{name}`: {exc}") from exc


def _tx(body: dict[str, Any], name: str) -> Tx:
    raw = _bytes(body, name)
    try:
        return Tx.parse(raw)
    except StakingError as exc:
        raise InvalidRequestError(f"`{name}` does not parse: {exc}") from exc


def _txid_arg(v: Any, name: str = "staking_tx_hash") -> str:
    if not isinstance(v, str) or len(v) != 64:
        raise InvalidRequestError(f"`{name}` must be 64 hex characters (display order)")
    try:
        bytes.fromhex(v)
    except ValueError as exc:
        raise InvalidRequestError(f"`{name}` is not hex") from exc
    return v.lower()


def _sighash(tx: Tx, prevout_output: Any, leaf: bytes) -> bytes:
    return script_path_sighash(tx, 0, [prevout_output], leaf)


def _expiry_key(d: dict) -> str:
    """Index key of a live delegation: the BTC tip height at which it expires, then its staking txid."""
    return f"expires/{max(0, d['end_height'] - d['unbonding_time']):010d}/{d['staking_tx_hash']}"


def _incl_key(d: dict) -> str:
    """Index key of a proven delegation by the BTC height of its staking tx's block."""
    return f"incl/{d['start_height']:010d}/{d['staking_tx_hash']}"


def _address_bytes(sender: str) -> bytes | None:
    """The raw bytes of a bech32 account address (None if it is not one)."""
    try:
        return bytes(Address(sender))
    except Exception:  # noqa: BLE001 - cosmpy raises several types for a bad bech32 string
        return None


def _pop_ok(pk_hex: str, sender: str, sig: bytes) -> bool:
    """Babylon ``types/pop.go`` (BIP-340 PoP): a Schnorr signature over sha256(raw address bytes)."""
    raw = _address_bytes(sender)
    return raw is not None and schnorr_verify(bytes.fromhex(pk_hex), hashlib.sha256(raw).digest(), sig)


def _is_coinbase(tx: Tx) -> bool:
    return len(tx.inputs) == 1 and tx.inputs[0].prevout.txid == bytes(32) and tx.inputs[0].prevout.vout == 0xFFFFFFFF


@register_module
class BtcStakingModule(Module):
    """The staking registry (see module docstring)."""

    name = "btc_staking"

    def __init__(self) -> None:
        super().__init__()
        self.hooks: StakingHooks | None = None

    def _hooks(self) -> StakingHooks:
        """The hooks set on the module, else the chain's mesh hooks (so ``check_tx``/``simulate``
        on a node restarted from disk, before any ``begin_block`` installed them, run exactly
        what delivery runs)."""
        if self.hooks is None:
            raise ContractError("btc_staking: no hooks set (ChainApp sets the chain hooks when it adds the module)")
        return self.hooks

    # ------------------------------------------------------------------ genesis
    def init_genesis(self, ctx: Context, genesis: dict[str, Any]) -> None:
        """``{"params": [StakingParams dicts], "finality_providers": [{btc_pk, addr, ...}]}``."""
        raw = genesis.get("params", [])
        if not isinstance(raw, list):
            raise InvalidRequestError("btc_staking genesis: params must be a list of params versions")
        versions = []
        for i, d in enumerate(raw):
            try:
                versions.append(StakingParams.from_dict(d).validate().to_dict())
            except (StakingError, TypeError, AttributeError) as exc:
                raise InvalidRequestError(f"btc_staking genesis: params version {i}: {exc}") from exc
        for i in range(1, len(versions)):
            if versions[i].get("btc_activation_height", 0) < versions[i - 1].get("btc_activation_height", 0):
                raise InvalidRequestError(f"btc_staking genesis: params version {i}: btc_activation_height must not "
                                          "be below the previous version's")
        st = self.store(ctx)
        st.set("params", versions)
        st.set("commission_bounds", _commission_bounds(genesis))
        for i, fp in enumerate(genesis.get("finality_providers", []) or []):
            if not isinstance(fp, dict):
                raise InvalidRequestError(f"btc_staking genesis: finality provider {i} must be an object")
            pk = _key_hex(fp.get("btc_pk"), "btc_pk")
            if st.has("fp/" + pk):
                raise InvalidRequestError(f"btc_staking genesis: finality provider {pk} listed twice")
            self._add_fp(ctx, pk, str(fp.get("addr", "")), fp.get("description") or {},
                         str(fp.get("commission", "0")), str(fp.get("validator", "") or ""))

    # ------------------------------------------------------------------ params
    def params_versions(self, ctx: Context) -> list[dict[str, Any]]:
        """Every params version (dicts)."""
        return self.store(ctx).get("params", [])

    def params(self, ctx: Context, version: int | None = None) -> tuple[int, StakingParams]:
        """(version, params); the last version by default."""
        versions = self.params_versions(ctx)
        if not versions:
            raise RegistryError("no staking params (genesis btc_staking.params is empty)")
        v = len(versions) - 1 if version is None else version
        return v, StakingParams.from_dict(versions[v])

    def params_for_btc_height(self, ctx: Context, height: int) -> tuple[int, StakingParams]:
        """(version, params) in force at BTC ``height``: the last version whose
        ``btc_activation_height`` ≤ height (Babylon ``GetParamsForBtcHeight``)."""
        versions = self.params_versions(ctx)
        found = None
        for i, d in enumerate(versions):
            if int(d.get("btc_activation_height", 0)) <= height:
                found = i
        if found is None:
            if not versions:
                raise RegistryError("no staking params (genesis btc_staking.params is empty)")
            raise RegistryError(f"no staking params for BTC height {height} (first activation height "
                                f"{versions[0].get('btc_activation_height', 0)})")
        return found, StakingParams.from_dict(versions[found])

    def _check_timelock_left(self, ctx: Context, end_height: int, unbonding_time: int) -> None:
        """Babylon: refuse a staking tx whose timelock has no more than ``unbonding_time`` blocks left."""
        tip = self._btc_tip(ctx)
        if tip is not None and tip + unbonding_time >= end_height:
            raise RegistryError(f"staking tx's timelock has no more than unbonding_time ({unbonding_time}) blocks "
                                f"left: ends at BTC height {end_height}, tip {tip}")

    # ------------------------------------------------------------------ light client
    @staticmethod
    def _lc(ctx: Context) -> Any:
        return ctx.module("btc_light_client")

    def _btc_tip(self, ctx: Context) -> int | None:
        return self._lc(ctx).tip_height(ctx)

    def _verify_inclusion(self, ctx: Context, txid: bytes, proof: Any, k: int, what: str) -> tuple[int, str]:
        """Check a ``{block_hash, index, proof}`` for ``txid`` (internal order); returns (height, block hash)."""
        if not isinstance(proof, dict):
            raise InvalidRequestError(f"{what}: inclusion_proof must be {{block_hash, index, proof}}")
        block_hash = _txid_arg(proof.get("block_hash"), "inclusion_proof.block_hash")
        index = _int(proof, "index")
        path = _bytes(proof, "proof")
        lc = self._lc(ctx)
        rec = lc.header_record(ctx, block_hash)
        if rec is None:
            raise RegistryError(f"{what}: unknown header {block_hash} (not in the BTC light client)")
        found = lc.main_chain_header(ctx, block_hash)
        if found is None:
            raise RegistryError(f"{what}: header {block_hash} is not on the BTC main chain")
        height, header = found
        try:
            ok = verify_merkle_proof(txid, header.merkle_root, index, path)
        except StakingError as exc:
            raise RegistryError(f"{what}: invalid inclusion proof: {exc}") from exc
        if not ok:
            raise RegistryError(f"{what}: invalid inclusion proof of tx {txid[::-1].hex()} in block {block_hash}")
        depth = lc.depth(ctx, block_hash)
        if depth < k:
            raise RegistryError(f"{what}: not k-deep: depth {depth} < {k} (block {block_hash})")
        return height, block_hash

    # ------------------------------------------------------------------ finality providers
    def _add_fp(self, ctx: Context, pk: str, addr: str, description: Any, commission: str, validator: str) -> dict:
        if not isinstance(description, dict) or not all(isinstance(v, str) for v in description.values()):
            raise InvalidRequestError("`description` must be an object of strings ({moniker, ...})")
        rate = _unit_rate(commission, "`commission`")
        st = self.store(ctx)
        lo, hi = (Decimal(b) for b in st.get("commission_bounds", ["0", "1"]))
        if not lo <= rate <= hi:  # Babylon: commission >= params.min_commission_rate
            raise RegistryError(f"commission {commission} outside the chain's bounds [min_commission_rate {lo}, "
                                f"max_commission_rate {hi}]")
        seq = int(st.get("fp_count", 0))
        rec = {"btc_pk": pk, "addr": addr, "description": dict(description), "commission": commission,
               "validator": validator, "slashed_height": None, "registered_height": ctx.height}
        st.set("fp/" + pk, rec)
        st.set(f"fp_order/{seq:010d}", pk)
        st.set("fp_count", seq + 1)
        return rec

    def commission_bounds(self, ctx: Context) -> tuple[str, str]:
        """``(min_commission_rate, max_commission_rate)`` set at genesis."""
        lo, hi = self.store(ctx).get("commission_bounds", ["0", "1"])
        return lo, hi

    def finality_provider(self, ctx: Context, btc_pk_hex: str) -> dict | None:
        """The FP record ``{btc_pk, addr, description, commission, validator, slashed_height, ...}`` or None."""
        try:
            pk = to_xonly(bytes.fromhex(btc_pk_hex)).hex()
        except ValueError:
            return None
        return self.store(ctx).get("fp/" + pk)

    def exec_create_finality_provider(self, ctx: Context, sender: str, body: dict[str, Any],
                                      funds: list[Coin]) -> dict[str, Any]:
        """Register an FP: ``{btc_pk, pop, description, commission, validator}``."""
        pk = _key_hex(body.get("btc_pk"), "btc_pk")
        sig = _bytes(body, "pop", 64)
        if not _pop_ok(pk, sender, sig):
            raise RegistryError(f"invalid proof of possession for finality provider {pk} "
                                "(BIP-340 signature over sha256 of the sender's raw address bytes)")
        if self.store(ctx).has("fp/" + pk):
            raise RegistryError(f"finality provider {pk} already registered")
        validator = body.get("validator", "") or ""
        if not isinstance(validator, str):
            raise InvalidRequestError("`validator` must be a string")
        rec = self._add_fp(ctx, pk, sender, body.get("description") or {}, str(body.get("commission", "0")),
                           validator)
        ctx.emit("new_finality_provider", btc_pk=pk, addr=sender, validator=validator)
        return {"btc_pk": rec["btc_pk"]}

    def slash_finality_provider(self, ctx: Context, btc_pk_hex: str, height: int) -> list[dict]:
        """Mark the FP slashed at ``height``; every non-withdrawn delegation of it → SLASHED (hooks
        called). Returns those delegations. Idempotent: an already slashed FP returns []."""
        pk = _key_hex(btc_pk_hex, "btc_pk")
        st = self.store(ctx)
        fp = st.get("fp/" + pk)
        if fp is None:
            raise RegistryError(f"unknown finality provider {pk}")
        if fp.get("slashed_height") is not None:
            return []
        fp["slashed_height"] = int(height)
        st.set("fp/" + pk, fp)
        ctx.emit("finality_provider_slashed", btc_pk=pk, height=str(height))
        out = []
        for d in self.delegations_by_fp(ctx, pk):
            # as Babylon's slasher: only stake that is live on Bitcoin (ACTIVE, UNBONDING) is slashed;
            # EXPIRED / WITHDRAWN / not-yet-active / REORGED delegations are left alone
            if d["status"] not in (ACTIVE, UNBONDING):
                continue
            d["slashed"] = True
            d["slashed_fp"] = pk
            self._set_status(ctx, d, SLASHED)
            out.append(d)
        return out

    def _check_fps_not_slashed(self, ctx: Context, fps: list[str]) -> None:
        for fp in fps:
            rec = self.store(ctx).get("fp/" + fp)
            if rec is not None and rec.get("slashed_height") is not None:
                raise RegistryError(f"finality provider {fp} is slashed")

    def active_sat(self, ctx: Context, btc_pk_hex: str) -> int:
        """Sum of ``staking_value`` of the FP's ACTIVE delegations (a counter kept by ``_save``)."""
        try:
            pk = to_xonly(bytes.fromhex(btc_pk_hex)).hex()
        except ValueError:
            return 0
        return int(self.store(ctx).get("fp_active_sat/" + pk, 0))

    # ------------------------------------------------------------------ delegations: storage + status
    def delegation(self, ctx: Context, staking_tx_hash: str) -> dict | None:
        """The stored delegation record or None."""
        return self.store(ctx).get("del/" + staking_tx_hash.lower())

    def delegations_by_fp(self, ctx: Context, btc_pk_hex: str) -> list[dict]:
        """Every delegation naming this FP, by staking tx hash."""
        try:
            pk = to_xonly(bytes.fromhex(btc_pk_hex)).hex()
        except ValueError:
            return []
        st = self.store(ctx)
        pre = f"by_fp/{pk}/"
        return [st.get("del/" + k[len(pre):]) for k, _ in st.items(pre)]

    def _require(self, ctx: Context, staking_tx_hash: Any) -> dict:
        h = _txid_arg(staking_tx_hash)
        d = self.delegation(ctx, h)
        if d is None:
            raise RegistryError(f"delegation {h} not found")
        self._refresh(ctx, d, self._btc_tip(ctx))
        return d

    def _derive(self, ctx: Context, d: dict, tip: int | None) -> str:
        """Status from the record's facts and the BTC tip (see module docstring)."""
        if d.get("withdrawn_height") is not None:
            return WITHDRAWN  # the BTC left every script; ``slashed`` stays as a fact of the record
        if d.get("slashed"):
            return SLASHED
        if d.get("reorged"):
            return REORGED  # until a new inclusion proof
        if d.get("unbonding_height") is not None:
            return UNBONDING
        if d.get("status") == EXPIRED:
            return EXPIRED  # sticky: the timelock does not come back
        if d.get("start_height") is None:
            return VERIFIED if d["has_covenant_quorum"] else PENDING
        if tip is not None and tip >= d["end_height"] - d["unbonding_time"]:
            return EXPIRED
        return ACTIVE if d["has_covenant_quorum"] else PENDING

    def _save(self, ctx: Context, d: dict) -> None:
        st = self.store(ctx)
        h = d["staking_tx_hash"]
        prev = st.get("del/" + h)
        st.set("del/" + h, d)
        if prev is not None and prev.get("start_height") is not None:
            st.delete(_incl_key(prev))
        if d["start_height"] is not None and d["status"] in _REORGABLE:
            st.set(_incl_key(d), 1)
        if d["start_height"] is not None:
            if d["status"] in (PENDING, ACTIVE):
                st.set(_expiry_key(d), 1)
            else:
                st.delete(_expiry_key(d))
        old_status = None if prev is None else prev.get("status")
        if old_status != d.get("status"):
            if old_status:
                st.delete(f"by_status/{old_status}/{h}")
            if d.get("status"):
                st.set(f"by_status/{d['status']}/{h}", 1)
        was_active, is_active = old_status == ACTIVE, d.get("status") == ACTIVE
        if was_active != is_active:
            delta = d["staking_value"] if is_active else -d["staking_value"]
            for fp in d["fp_btc_pk_list"]:
                st.set("fp_active_sat/" + fp, int(st.get("fp_active_sat/" + fp, 0)) + delta)
        old_height = st.get("upd_at/" + h)
        if old_height != ctx.height:
            if old_height is not None:
                st.delete(f"updated/{old_height:012d}/{h}")
            st.set(f"updated/{ctx.height:012d}/{h}", 1)
            st.set("upd_at/" + h, ctx.height)

    def _set_status(self, ctx: Context, d: dict, new: str | None = None) -> None:
        """Save ``d`` with status ``new`` (default: derived); report a change to the hooks."""
        old = d.get("status")
        if new is None:
            new = self._derive(ctx, d, self._btc_tip(ctx))
        d["status"] = new
        self._save(ctx, d)
        if old != new:
            ctx.emit("btc_delegation_status", staking_tx_hash=d["staking_tx_hash"], old_status=old or "",
                     new_status=new)
            self._hooks().on_delegation_status(ctx, dict(d), old, new)

    def _refresh(self, ctx: Context, d: dict, tip: int | None) -> None:
        new = self._derive(ctx, d, tip)
        if new != d["status"]:
            self._set_status(ctx, d, new)

    def end_block(self, ctx: Context) -> None:
        """Mark delegations a deep BTC reorg took off the main chain; recompute time-based statuses when the
        BTC tip height moved."""
        self._mark_reorged(ctx)
        tip = self._btc_tip(ctx)
        st = self.store(ctx)
        if tip is None or st.get("last_tip") == tip:
            return
        st.set("last_tip", tip)
        # only delegations that expire at or below the new tip can change status (index by expiry height)
        for key, _ in list(st.items_range("expires/", f"expires/{tip + 1:010d}/")):
            # each delegation on its own journal: a failing hook (e.g. the mesh refusing the change)
            # must not halt the chain; that delegation keeps its status and is retried next time
            sub = dataclasses.replace(ctx, kv=CacheKV(ctx.kv), events=[])
            d = self.store(sub).get("del/" + key.rsplit("/", 1)[1])
            try:
                self._refresh(sub, d, tip)
            except ValueError as exc:
                ctx.emit("btc_delegation_status_error", staking_tx_hash=d["staking_tx_hash"], error=str(exc))
                continue
            sub.kv.write()  # type: ignore[union-attr]
            ctx.events.extend(sub.events)

    def _mark_reorged(self, ctx: Context) -> None:
        """REORGED for every proven live delegation whose block is no longer on the light client's main chain
        (only heights at or above the lowest one the light client rewrote since the last block are read)."""
        lc = self._lc(ctx)
        floor = lc.take_reorg_floor(ctx) if hasattr(lc, "take_reorg_floor") else None
        if floor is None:
            return
        st = self.store(ctx)
        for key, _ in list(st.items_range(f"incl/{floor:010d}/", "incl0")):
            d = st.get("del/" + key.rsplit("/", 1)[1])
            if d is None or lc.is_main_chain(ctx, d["inclusion_block_hash"], d["start_height"]):
                continue
            sub = dataclasses.replace(ctx, kv=CacheKV(ctx.kv), events=[])
            d.update(reorged=True, reorged_height=ctx.height, reorged_block_hash=d["inclusion_block_hash"])
            try:
                self._set_status(sub, d, REORGED)
            except ValueError as exc:  # a failing hook must not halt the chain; retried at the next reorg
                ctx.emit("btc_delegation_status_error", staking_tx_hash=d["staking_tx_hash"], error=str(exc))
                continue
            sub.kv.write()  # type: ignore[union-attr]
            ctx.events.extend(sub.events)

    # ------------------------------------------------------------------ create
    def exec_create_btc_delegation(self, ctx: Context, sender: str, body: dict[str, Any],
                                   funds: list[Coin]) -> dict[str, Any]:
        """Register a BTC delegation (checks: docs/CHAIN_MESSAGES.md)."""
        staker = _key_hex(body.get("staker_btc_pk"), "staker_btc_pk")
        pop_sig = _bytes(body, "pop", 64)
        fps_raw = body.get("fp_btc_pk_list")
        if not isinstance(fps_raw, list) or not fps_raw:
            raise InvalidRequestError("`fp_btc_pk_list` must be a non-empty list of keys")
        fps = [_key_hex(k, "fp_btc_pk_list") for k in fps_raw]
        if len(set(fps)) != len(fps):
            raise InvalidRequestError("`fp_btc_pk_list` has duplicate keys")
        staking_time = _int(body, "staking_time", 1)
        staking_value = _int(body, "staking_value", 1)
        out_idx = _int(body, "staking_output_index")
        unbonding_time = _int(body, "unbonding_time", 1)
        unbonding_value = _int(body, "unbonding_value", 1)
        staking_tx = _tx(body, "staking_tx")
        slashing_tx = _tx(body, "slashing_tx")
        unbonding_tx = _tx(body, "unbonding_tx")
        unbonding_slashing_tx = _tx(body, "unbonding_slashing_tx")
        slash_sig = _bytes(body, "delegator_slashing_sig", 64)
        ub_slash_sig = _bytes(body, "delegator_unbonding_slashing_sig", 64)

        h = staking_tx.txid_hex()
        if self.store(ctx).has("del/" + h):
            raise RegistryError(f"delegation {h} already registered")
        if _is_coinbase(staking_tx):
            raise RegistryError(f"staking tx {h} is a coinbase tx: a coinbase tx cannot be used for staking")
        # the params version in force at the staking tx's inclusion height (pre-approval: at the tip)
        included: tuple[int, str] | None = None
        if body.get("inclusion_proof") is not None:
            included = self._verify_inclusion(ctx, staking_tx.txid(), body["inclusion_proof"], 0, "staking tx")
            version, p = self.params_for_btc_height(ctx, included[0])
            depth = self._lc(ctx).depth(ctx, included[1])
            if depth < p.confirmation_depth:
                raise RegistryError(f"staking tx: not k-deep: depth {depth} < {p.confirmation_depth} "
                                    f"(block {included[1]})")
        else:
            tip = self._btc_tip(ctx)
            version, p = self.params(ctx) if tip is None else self.params_for_btc_height(ctx, tip)
        try:
            p.check_staking_time(staking_time)
            p.check_staking_value(staking_value)
        except StakingError as exc:
            raise RegistryError(f"params version {version}: {exc}") from exc
        if unbonding_time != p.unbonding_time_blocks:
            raise RegistryError(f"unbonding_time {unbonding_time} != params unbonding_time_blocks "
                                f"{p.unbonding_time_blocks}")
        if not _pop_ok(staker, sender, pop_sig):
            raise RegistryError(f"invalid proof of possession for staker {staker} "
                                "(BIP-340 signature over sha256 of the sender's raw address bytes)")
        for fp in fps:
            rec = self.store(ctx).get("fp/" + fp)
            if rec is None:
                raise RegistryError(f"unknown finality provider {fp}")
            if rec.get("slashed_height") is not None:
                raise RegistryError(f"finality provider {fp} is slashed")
        cov_hex = {k.hex() for k in p.covenant_pks}
        if staker in fps or staker in cov_hex:
            raise RegistryError("staker key must differ from the finality provider and covenant keys")

        fp_bytes = [bytes.fromhex(k) for k in fps]
        staker_b = bytes.fromhex(staker)
        try:
            info = build_staking_info(staker_b, fp_bytes, p.covenant_pks, p.covenant_quorum, staking_time,
                                      staking_value)
        except StakingError as exc:
            raise RegistryError(f"cannot build the staking output: {exc}") from exc
        if out_idx >= len(staking_tx.outputs):
            raise RegistryError(f"wrong staking script: staking tx has no output {out_idx}")
        out = staking_tx.outputs[out_idx]
        if out.script_pubkey != info.pk_script:
            raise RegistryError(f"wrong staking script: output {out_idx} of {h} is not the staking output "
                                "rebuilt from the params, staker, finality providers and staking time")
        if out.value != staking_value:
            raise RegistryError(f"wrong staking script: output {out_idx} holds {out.value} sat, "
                                f"staking_value says {staking_value}")
        staking_outpoint = OutPoint(staking_tx.txid(), out_idx)
        try:
            validate_unbonding_tx(unbonding_tx, staking_outpoint, staking_value, staker_b, fp_bytes, p)
        except StakingError as exc:
            raise RegistryError(f"invalid unbonding tx: {exc}") from exc
        if unbonding_value != unbonding_tx.outputs[0].value or unbonding_value != staking_value - p.unbonding_fee_sat:
            raise RegistryError(f"invalid unbonding tx: unbonding_value {unbonding_value} != staking value − "
                                f"unbonding fee = {staking_value - p.unbonding_fee_sat}")
        ub_info = build_unbonding_info(staker_b, fp_bytes, p.covenant_pks, p.covenant_quorum,
                                       p.unbonding_time_blocks, unbonding_value)
        try:
            validate_slashing_tx(slashing_tx, staking_outpoint, staking_value, staker_b, p)
        except StakingError as exc:
            raise RegistryError(f"invalid slashing tx: {exc}") from exc
        try:
            validate_slashing_tx(unbonding_slashing_tx, OutPoint(unbonding_tx.txid(), 0), unbonding_value,
                                 staker_b, p)
        except StakingError as exc:
            raise RegistryError(f"invalid unbonding slashing tx: {exc}") from exc
        if not schnorr_verify(staker_b, _sighash(slashing_tx, out, info.slashing_script), slash_sig):
            raise RegistryError("invalid delegator slashing signature (staker's signature of the slashing tx)")
        if not schnorr_verify(staker_b, _sighash(unbonding_slashing_tx, ub_info.output, ub_info.slashing_script),
                              ub_slash_sig):
            raise RegistryError("invalid delegator unbonding slashing signature "
                                "(staker's signature of the unbonding slashing tx)")

        d: dict[str, Any] = {
            "staking_tx_hash": h, "staker_btc_pk": staker, "staker_addr": sender, "fp_btc_pk_list": fps,
            "staking_time": staking_time, "staking_value": staking_value, "total_sat": staking_value,
            "staking_output_index": out_idx, "staking_tx": body["staking_tx"].lower(),
            "start_height": None, "end_height": None, "inclusion_block_hash": None,
            "unbonding_time": unbonding_time, "unbonding_value": unbonding_value,
            "unbonding_tx": body["unbonding_tx"].lower(), "slashing_tx": body["slashing_tx"].lower(),
            "unbonding_slashing_tx": body["unbonding_slashing_tx"].lower(),
            "delegator_slashing_sig": slash_sig.hex(), "delegator_unbonding_slashing_sig": ub_slash_sig.hex(),
            "covenant_sigs": [], "covenant_unbonding_sigs": [], "covenant_slashing_unbonding_sigs": [],
            "has_covenant_quorum": False, "status": None,
            "unbonding_height": None, "unbonding_btc_txid": None,
            "withdrawn_height": None, "withdrawal_btc_txid": None,
            "slashed": False, "slashing_btc_txid": None,
            "params_version": version, "created_height": ctx.height,
        }
        if included is not None:
            height, block_hash = included
            self._check_timelock_left(ctx, height + staking_time, unbonding_time)
            d.update(start_height=height, end_height=height + staking_time, inclusion_block_hash=block_hash)
        st = self.store(ctx)
        st.set(f"by_staker/{staker}/{h}", 1)
        for fp in fps:
            st.set(f"by_fp/{fp}/{h}", 1)
        self._set_status(ctx, d)
        ctx.emit("new_btc_delegation", staking_tx_hash=h, staker_btc_pk=staker, status=d["status"],
                 staking_value=str(staking_value))
        return {"staking_tx_hash": h, "status": d["status"]}

    def exec_add_btc_delegation_inclusion_proof(self, ctx: Context, sender: str, body: dict[str, Any],
                                                funds: list[Coin]) -> dict[str, Any]:
        """``{staking_tx_hash, inclusion_proof}`` for a delegation created without one, or REORGED."""
        d = self._require(ctx, body.get("staking_tx_hash"))
        if d["start_height"] is not None and not d.get("reorged"):
            raise RegistryError(f"delegation {d['staking_tx_hash']} already has an inclusion proof")
        if d["status"] in _CLOSED:
            raise RegistryError(f"delegation {d['staking_tx_hash']} is {d['status']}")
        _, p = self.params(ctx, d["params_version"])
        self._check_fps_not_slashed(ctx, d["fp_btc_pk_list"])
        txid = bytes.fromhex(d["staking_tx_hash"])[::-1]
        height, block_hash = self._verify_inclusion(ctx, txid, body.get("inclusion_proof"), p.confirmation_depth,
                                                    "staking tx")
        in_force, _ = self.params_for_btc_height(ctx, height)
        if in_force != d["params_version"]:
            raise RegistryError(f"staking tx included at BTC height {height}, where params version {in_force} "
                                f"applies; the delegation was validated against version {d['params_version']}")
        self._check_timelock_left(ctx, height + d["staking_time"], d["unbonding_time"])
        d.update(start_height=height, end_height=height + d["staking_time"], inclusion_block_hash=block_hash,
                 reorged=False)
        self._set_status(ctx, d)
        return {"staking_tx_hash": d["staking_tx_hash"], "status": d["status"]}

    # ------------------------------------------------------------------ covenant
    def exec_add_covenant_sigs(self, ctx: Context, sender: str, body: dict[str, Any],
                               funds: list[Coin]) -> dict[str, Any]:
        """One covenant member's signatures (verified; a member's second submission is ignored)."""
        d = self._require(ctx, body.get("staking_tx_hash"))
        h = d["staking_tx_hash"]
        _, p = self.params(ctx, d["params_version"])
        cov = _key_hex(body.get("pk"), "pk")
        if cov not in {k.hex() for k in p.covenant_pks}:
            raise RegistryError(f"{cov} is not a covenant committee member (params version {d['params_version']})")
        if any(c["pk"] == cov for c in d["covenant_sigs"]):
            return {"staking_tx_hash": h, "status": d["status"], "ignored": True}
        if d["status"] in _CLOSED or d["status"] == EXPIRED:
            raise RegistryError(f"delegation {h} is {d['status']}: covenant signatures are no longer accepted")
        self._check_fps_not_slashed(ctx, d["fp_btc_pk_list"])
        fps = [bytes.fromhex(k) for k in d["fp_btc_pk_list"]]
        slash_sigs = body.get("slashing_tx_sigs")
        ub_slash_sigs = body.get("slashing_unbonding_tx_sigs")
        for name, sigs in (("slashing_tx_sigs", slash_sigs), ("slashing_unbonding_tx_sigs", ub_slash_sigs)):
            if not isinstance(sigs, list) or len(sigs) != len(fps):
                raise InvalidRequestError(f"`{name}` must list one adaptor signature per finality provider "
                                          f"({len(fps)})")
        ub_sig = _bytes(body, "unbonding_tx_sig", 64)
        cov_b = bytes.fromhex(cov)
        staker = bytes.fromhex(d["staker_btc_pk"])
        info = build_staking_info(staker, fps, p.covenant_pks, p.covenant_quorum, d["staking_time"],
                                  d["staking_value"])
        ub_info = build_unbonding_info(staker, fps, p.covenant_pks, p.covenant_quorum, p.unbonding_time_blocks,
                                       d["unbonding_value"])
        slashing_tx = Tx.parse(bytes.fromhex(d["slashing_tx"]))
        unbonding_tx = Tx.parse(bytes.fromhex(d["unbonding_tx"]))
        ub_slashing_tx = Tx.parse(bytes.fromhex(d["unbonding_slashing_tx"]))
        checks = (
            ("slashing tx", slash_sigs, _sighash(slashing_tx, info.output, info.slashing_script)),
            ("unbonding slashing tx", ub_slash_sigs,
             _sighash(ub_slashing_tx, ub_info.output, ub_info.slashing_script)),
        )
        parsed: dict[str, list[str]] = {}
        for what, sigs, msg in checks:
            out = []
            for fp, s in zip(fps, sigs):
                try:
                    sig = AdaptorSignature.parse(bytes.fromhex(s) if isinstance(s, str) else b"")
                    ok = sig.verify(cov_b, fp, msg)
                except (StakingError, ValueError) as exc:
                    raise RegistryError(f"invalid covenant adaptor signature on the {what} for finality provider "
                                        f"{fp.hex()}: {exc}") from exc
                if not ok:
                    raise RegistryError(f"invalid covenant adaptor signature on the {what} for finality provider "
                                        f"{fp.hex()} (covenant {cov})")
                out.append(sig.serialize().hex())
            parsed[what] = out
        if not schnorr_verify(cov_b, _sighash(unbonding_tx, info.output, info.unbonding_script), ub_sig):
            raise RegistryError(f"invalid covenant unbonding signature (covenant {cov})")
        d["covenant_sigs"].append({"pk": cov, "adaptor_sigs": parsed["slashing tx"]})
        d["covenant_unbonding_sigs"].append({"pk": cov, "sig": ub_sig.hex()})
        d["covenant_slashing_unbonding_sigs"].append({"pk": cov, "adaptor_sigs": parsed["unbonding slashing tx"]})
        d["has_covenant_quorum"] = len(d["covenant_sigs"]) >= p.covenant_quorum
        self._set_status(ctx, d)
        ctx.emit("covenant_sigs_added", staking_tx_hash=h, covenant_pk=cov, status=d["status"])
        return {"staking_tx_hash": h, "status": d["status"], "ignored": False}

    # ------------------------------------------------------------------ BTC spends
    def exec_btc_undelegate(self, ctx: Context, sender: str, body: dict[str, Any],
                            funds: list[Coin]) -> dict[str, Any]:
        """``{staking_tx_hash, unbonding_tx, inclusion_proof, funding_txs?}`` (Babylon BTCUndelegate):
        any tx that spends the staking output through the unbonding path with a valid staker
        signature (the registered unbonding tx or another one) moves the delegation to UNBONDING.
        It needs a valid inclusion proof on the light client's main chain, not k depth; it is
        refused for an EXPIRED delegation. ``funding_txs`` (hex) give the prevouts of the spend's
        other inputs, needed for the staker signature's sighash."""
        d = self._require(ctx, body.get("staking_tx_hash"))
        h = d["staking_tx_hash"]
        if d["status"] in _CLOSED:
            raise RegistryError(f"delegation {h} is already {d['status']}")
        if d["status"] == REORGED:
            raise RegistryError(f"delegation {h} is REORGED: its staking tx is not on the BTC main chain "
                                "(prove it again first)")
        if d["status"] == EXPIRED:
            raise RegistryError(f"delegation {h} is EXPIRED: it cannot be unbonded early (withdraw it)")
        tx = _tx(body, "unbonding_tx")
        _, p = self.params(ctx, d["params_version"])
        staking_outpoint = OutPoint(bytes.fromhex(h)[::-1], d["staking_output_index"])
        idx = next((i for i, txin in enumerate(tx.inputs) if txin.prevout == staking_outpoint), None)
        if idx is None:
            raise RegistryError(f"tx {tx.txid_hex()} does not spend the staking output of delegation {h}")
        staker = bytes.fromhex(d["staker_btc_pk"])
        fps = [bytes.fromhex(k) for k in d["fp_btc_pk_list"]]
        info = build_staking_info(staker, fps, p.covenant_pks, p.covenant_quorum, d["staking_time"],
                                  d["staking_value"])
        wit = tx.inputs[idx].witness
        if len(wit) >= 2 and wit[-1][:1] == b"\x50":  # BIP-341 annex
            wit = wit[:-1]
        if len(wit) < 3 or wit[-2] != info.unbonding_script:
            raise RegistryError(f"tx {tx.txid_hex()} does not spend the staking output of {h} through its "
                                "unbonding path")
        staker_sig = wit[-3]  # the unbonding leaf checks the staker's signature first (top of the stack)
        prevouts = self._prevouts(tx, {staking_outpoint: info.output}, body.get("funding_txs"))
        if len(staker_sig) != 64 or not schnorr_verify(
                staker, script_path_sighash(tx, idx, prevouts, info.unbonding_script), staker_sig):
            raise RegistryError(f"tx {tx.txid_hex()} does not carry a valid staker signature (BIP-340, "
                                "SIGHASH_DEFAULT) on the unbonding path")
        height, _ = self._verify_inclusion(ctx, tx.txid(), body.get("inclusion_proof"), 0, "unbonding tx")
        registered = Tx.parse(bytes.fromhex(d["unbonding_tx"])).txid() == tx.txid()
        d.update(unbonding_height=height, unbonding_btc_txid=tx.txid_hex(), unbonding_registered_tx=registered)
        self._set_status(ctx, d)
        return {"staking_tx_hash": h, "status": d["status"], "unbonding_height": height}

    @staticmethod
    def _prevouts(tx: Tx, known: dict[OutPoint, Any], funding_txs: Any) -> list[Any]:
        """The outputs every input of ``tx`` spends (``known`` plus ``funding_txs``, hex)."""
        if funding_txs is not None and (not isinstance(funding_txs, list) or len(funding_txs) > 64):
            raise InvalidRequestError("`funding_txs` must be a list of at most 64 hex transactions")
        by_id: dict[bytes, Tx] = {}
        for i, raw in enumerate(funding_txs or []):
            ftx = _tx({"funding_tx": raw}, "funding_tx")
            by_id[ftx.txid()] = ftx
        out = []
        for txin in tx.inputs:
            if txin.prevout in known:
                out.append(known[txin.prevout])
                continue
            ftx = by_id.get(txin.prevout.txid)
            if ftx is None or txin.prevout.vout >= len(ftx.outputs):
                raise RegistryError(f"input {txin.prevout.txid[::-1].hex()}:{txin.prevout.vout} of tx "
                                    f"{tx.txid_hex()}: its funding tx is missing from `funding_txs`")
            out.append(ftx.outputs[txin.prevout.vout])
        return out

    def exec_report_withdrawal(self, ctx: Context, sender: str, body: dict[str, Any],
                               funds: list[Coin]) -> dict[str, Any]:
        """``{staking_tx_hash, spend_tx, inclusion_proof}``: a k-deep timelock-path spend of the
        staking or unbonding output (or, once slashed, of a slashing tx's change output) → WITHDRAWN."""
        d = self._require(ctx, body.get("staking_tx_hash"))
        h = d["staking_tx_hash"]
        if d.get("withdrawn_height") is not None:
            raise RegistryError(f"delegation {h} is already withdrawn")
        tx = _tx(body, "spend_tx")
        _, p = self.params(ctx, d["params_version"])
        staker = bytes.fromhex(d["staker_btc_pk"])
        fps = [bytes.fromhex(k) for k in d["fp_btc_pk_list"]]
        staking_outpoint = OutPoint(bytes.fromhex(h)[::-1], d["staking_output_index"])
        unbonding_outpoint = OutPoint(Tx.parse(bytes.fromhex(d["unbonding_tx"])).txid(), 0)
        # validate_slashing_tx fixed both slashing txs' outputs as [slash, change → timelock(staker)]
        change_outpoints = {OutPoint(Tx.parse(bytes.fromhex(d[k])).txid(), 1)
                            for k in ("slashing_tx", "unbonding_slashing_tx")}
        spendable = {staking_outpoint, unbonding_outpoint} | change_outpoints
        txin = next((i for i in tx.inputs if i.prevout in spendable), None)
        if txin is None:
            raise RegistryError(f"spend tx {tx.txid_hex()} spends neither the staking nor the unbonding output "
                                f"nor a slashing change output of delegation {h}")
        if txin.prevout == staking_outpoint:
            leaf = build_staking_info(staker, fps, p.covenant_pks, p.covenant_quorum, d["staking_time"],
                                      d["staking_value"]).timelock_script
            what = "staking"
        elif txin.prevout in change_outpoints:
            leaf = build_slashing_change_info(staker, p.unbonding_time_blocks).timelock_script
            what = "slashing change"
        else:
            if d.get("unbonding_height") is None and d["status"] != EXPIRED:  # EXPIRED: no btc_undelegate
                raise RegistryError(f"delegation {h}: the unbonding tx has not been reported (btc_undelegate) yet")
            leaf = build_unbonding_info(staker, fps, p.covenant_pks, p.covenant_quorum, p.unbonding_time_blocks,
                                        d["unbonding_value"]).timelock_script
            what = "unbonding"
        wit = txin.witness
        if len(wit) >= 2 and wit[-1][:1] == b"\x50":  # BIP-341 annex
            wit = wit[:-1]
        if len(wit) < 2 or wit[-2] != leaf:
            raise RegistryError(f"spend tx {tx.txid_hex()} does not spend the {what} output through its timelock path")
        height, _ = self._verify_inclusion(ctx, tx.txid(), body.get("inclusion_proof"), p.confirmation_depth,
                                           "withdrawal tx")
        d.update(withdrawn_height=height, withdrawal_btc_txid=tx.txid_hex())
        self._set_status(ctx, d)
        return {"staking_tx_hash": h, "status": d["status"], "withdrawn_height": height}

    def exec_report_btc_slashing(self, ctx: Context, sender: str, body: dict[str, Any],
                                 funds: list[Coin]) -> dict[str, Any]:
        """``{staking_tx_hash, slashing_tx, inclusion_proof}``: record a k-deep slashing tx (bookkeeping)."""
        d = self._require(ctx, body.get("staking_tx_hash"))
        h = d["staking_tx_hash"]
        tx = _tx(body, "slashing_tx")
        known = {Tx.parse(bytes.fromhex(d[k])).txid(): k for k in ("slashing_tx", "unbonding_slashing_tx")}
        if tx.txid() not in known:
            raise RegistryError(f"tx {tx.txid_hex()} is not a registered slashing tx of delegation {h}")
        _, p = self.params(ctx, d["params_version"])
        height, _ = self._verify_inclusion(ctx, tx.txid(), body.get("inclusion_proof"), p.confirmation_depth,
                                           "slashing tx")
        d.update(slashing_btc_txid=tx.txid_hex(), slashing_btc_height=height, slashing_btc_path=known[tx.txid()])
        self._save(ctx, d)
        ctx.emit("btc_slashing_reported", staking_tx_hash=h, slashing_txid=tx.txid_hex(), height=str(height))
        return {"staking_tx_hash": h, "slashing_btc_txid": tx.txid_hex(), "status": d["status"]}

    # ------------------------------------------------------------------ queries
    def query_params(self, ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
        """``{params_versions: [{version, ...}], min_commission_rate, max_commission_rate}``."""
        lo, hi = self.commission_bounds(ctx)
        return {"params_versions": [{"version": i, **v} for i, v in enumerate(self.params_versions(ctx))],
                "min_commission_rate": lo, "max_commission_rate": hi}

    def _fp_view(self, ctx: Context, rec: dict) -> dict[str, Any]:
        out = dict(rec)
        out["active_sat"] = self.active_sat(ctx, rec["btc_pk"])
        out["slashed"] = rec.get("slashed_height") is not None
        return out

    def query_finality_provider(self, ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
        """``{btc_pk}`` → the FP record with ``active_sat``; error if unknown."""
        pk = _key_hex(body.get("btc_pk"), "btc_pk")
        rec = self.store(ctx).get("fp/" + pk)
        if rec is None:
            raise RegistryError(f"finality provider {pk} not found")
        return self._fp_view(ctx, rec)

    def query_finality_providers(self, ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
        """``{}`` → ``{finality_providers: [...]}`` in registration order."""
        st = self.store(ctx)
        return {"finality_providers": [self._fp_view(ctx, st.get("fp/" + pk)) for _, pk in st.items("fp_order/")]}

    @staticmethod
    def _view(d: dict) -> dict[str, Any]:
        return dict(d)

    def query_delegation(self, ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
        """``{staking_tx_hash}`` → ``{delegation}``; error ``delegation ... not found``."""
        h = _txid_arg(body.get("staking_tx_hash"))
        d = self.delegation(ctx, h)
        if d is None:
            raise RegistryError(f"delegation {h} not found")
        return {"delegation": self._view(d)}

    def query_delegations_by_hash(self, ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
        """``{staking_tx_hashes: [...]}`` (at most ``MAX_PAGE``) → ``{delegations: [record | null, ...]}`` in the
        same order: what a submitter asks before sending many attestations (one query, not one per lock)."""
        hashes = body.get("staking_tx_hashes")
        if not isinstance(hashes, list) or not 1 <= len(hashes) <= MAX_PAGE:
            raise InvalidRequestError(f"`staking_tx_hashes` must be a list of 1..{MAX_PAGE} staking tx hashes")
        out = []
        for h in hashes:
            d = self.delegation(ctx, _txid_arg(h))
            out.append(None if d is None else self._view(d))
        return {"delegations": out}

    def query_delegations_updated(self, ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
        """``{after_height, start_after?: {height, staking_tx_hash}, limit?}`` → ``{delegations, next}``: the
        delegations whose last change was at a chain height > ``after_height``, in (height, txid) order, each
        with ``updated_height``; ``next`` is the cursor of the last one when more follow, else null. An indexer
        that remembers the chain height it synced to asks only for what changed since (restart or gap)."""
        after = body.get("after_height", 0)
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise InvalidRequestError("`after_height` must be a non-negative integer")
        lo = f"updated/{after + 1:012d}/"
        cursor = body.get("start_after")
        if cursor is not None:
            if not isinstance(cursor, dict) or not isinstance(cursor.get("height"), int):
                raise InvalidRequestError("`start_after` must be {height, staking_tx_hash}")
            lo = max(lo, f"updated/{cursor['height']:012d}/{_txid_arg(cursor.get('staking_tx_hash'))}\x00")
        limit = body.get("limit", DEFAULT_PAGE)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
            raise InvalidRequestError(f"`limit` must be an integer in [1, {MAX_PAGE}]")
        st = self.store(ctx)
        out: list[dict] = []
        more = False
        for key, _ in st.items_range(lo, "updated0"):
            if len(out) == limit:
                more = True
                break
            _, height, h = key.split("/")
            view = self._view(st.get("del/" + h))
            view["updated_height"] = int(height)
            out.append(view)
        nxt = {"height": out[-1]["updated_height"], "staking_tx_hash": out[-1]["staking_tx_hash"]} if more else None
        return {"delegations": out, "next": nxt}

    def query_delegations(self, ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
        """``{staker_pk?, fp_btc_pk?, status?, start_after?, limit?}`` → ``{delegations, next_key}``
        (by staking tx hash; ``next_key`` is the last hash returned when more follow, else null)."""
        st = self.store(ctx)
        status = body.get("status")
        if status is not None:
            if not isinstance(status, str) or status.upper() not in STATUSES:
                raise InvalidRequestError(f"`status` must be one of {', '.join(STATUSES)}")
            status = status.upper()
        if body.get("staker_pk") is not None:
            pre = f"by_staker/{_key_hex(body['staker_pk'], 'staker_pk')}/"
        elif body.get("fp_btc_pk") is not None:
            pre = f"by_fp/{_key_hex(body['fp_btc_pk'], 'fp_btc_pk')}/"
        elif status is not None:
            pre = f"by_status/{status}/"  # the status index: what a covenant signer polling PENDING asks
        else:
            pre = "del/"
        fp_filter = _key_hex(body["fp_btc_pk"], "fp_btc_pk") if body.get("fp_btc_pk") is not None else None
        start_after = _txid_arg(body["start_after"], "start_after") if body.get("start_after") else None
        limit = body.get("limit", DEFAULT_PAGE)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
            raise InvalidRequestError(f"`limit` must be an integer in [1, {MAX_PAGE}]")
        out: list[dict] = []
        more = False
        lo = pre + start_after + "\x00" if start_after is not None else pre  # start at the cursor, not before
        for key, _ in st.items_range(lo, pre[:-1] + "0"):  # "0" follows "/": the end of the prefix
            h = key[len(pre):]
            d = st.get("del/" + h) if pre != "del/" else _
            if status is not None and d["status"] != status:
                continue
            if fp_filter is not None and fp_filter not in d["fp_btc_pk_list"]:
                continue
            if len(out) == limit:
                more = True
                break
            out.append(self._view(d))
        return {"delegations": out, "next_key": out[-1]["staking_tx_hash"] if more else None}
