"""Mesh Security on the chain: the ``mesh`` module (the hooks that wire it to staking and finality
live in :mod:`cosmos_chain.modules.hooks`).

``MeshModule`` (built-in contract ``module_address("mesh")``) hosts the :mod:`mesh_adapter`
contracts - vault, external staking, converter, virtual staking - and the
:class:`~mesh_adapter.btc_adapter.BtcMeshAdapter`. Their state lives in the module's store:
small per-contract states (``contract/<role>``), the mesh bank (``balances``), the adapter config
(``adapter``) and ``config`` as JSON values, and everything kept per account or per delegation
under its own key - ``contract/<role>/<map>/<account>`` (vault ``users``/``liens``, external
staking ``stakes``), ``adapter/delegations/<hash>`` (the adapter's records), a status index
``adapter/status/<status>/<hash>`` and ``adapter_totals`` (ACTIVE sats per validator, records per
status; exact). Every entry point runs a private :class:`~mesh_adapter.framework.MeshApp` whose
per-key maps (:class:`mesh_adapter.storage.Map`) load what they read and write back only what
changed, only if it succeeded: a status change costs what it touches, not the number of
delegations. Mesh state is deterministic, part of the app hash, and dropped with a failing tx.
The ``sat`` collateral tokens live in that internal bank (the vault's denom), not in the chain
bank: they stand for BTC locked on Bitcoin, minted on ACTIVE and burned on withdrawal/slashing.

Genesis section (every key optional; see :class:`~mesh_adapter.deploy.BtcMeshParams`)::

    {"admin": "<bech32>", "price": "1", "discount": "0", "slashing_rate": "0.1",
     "unbonding_period": 1814400, "max_cap": "10^18", "max_virtual_per_validator": null,
     "fp_to_validator": {"<fp x-only hex>": "<valoper>"}, "denom": "sat", "virtual_denom": "ustake",
     "rewards_denom": "ustake", "unbond_slashed": true}

``slashing_rate`` defaults to the staking registry's (last params version) and must equal it.

Execute: ``set_price {price}`` (admin only: converter ``update_price`` + adapter price).
Rewards (issue 15): ``block_reward`` / ``consumer_native_power`` genesis keys, ``claim_rewards``,
``pay_consumer_fees`` and the ``rewards`` query live in :mod:`cosmos_chain.modules.mesh_rewards`.
Queries: ``vault``/``external_staking``/``converter``/``virtual_staking`` ``{<contract query>}``
(passthrough), ``adapter {delegation {staking_tx_hash} | validator_virtual_stake {validator} |
delegations_of {staker_btc_pk} | lien {staking_tx_hash} | config {}}``, ``config {}``,
``balance {address, denom?}`` (internal mesh bank), ``slash_report {validator}`` (virtual stake
slashed / force-unbonded, BTC left per delegation).

Hooks (stateless; everything they touch comes from ``ctx``):

* :class:`ChainStakingHooks` - registry status changes → adapter events: into ACTIVE →
  ``on_delegation_active`` (validator from the FP record); ACTIVE → UNBONDING / EXPIRED →
  ``on_delegation_unbonding`` (the lien stays slashable for the unbonding period); → WITHDRAWN
  → ``on_delegation_withdrawn``; → SLASHED → the FP-level mesh slash (once) if the delegation's
  mesh FP is the slashed one, else (another FP of a multi-FP output) like a withdrawal.
  SLASHED → WITHDRAWN (the staker took back what the slashing left on Bitcoin) is a withdrawal
  too: the collateral the vault still holds for that delegation is unbonded and burned, at once
  or, while its lien on the tombstoned validator runs, in ``end_block`` when it matures.
* :class:`ChainFinalityHooks` - for :class:`cosmos_chain.modules.finality.FinalityModule`: FP lookup
  in the registry, canonical app hash = the finality module's recorded hash, slashing = registry
  ``slash_finality_provider`` then adapter ``on_finality_provider_slashed``.

:func:`~cosmos_chain.modules.hooks.install` sets both on an app; every ``ChainApp`` sets them when
its modules are added (``set_default_hooks``), so every node of a testnet, fresh or restarted from
disk, behaves the same without manual wiring.

Mesh validators of finality providers count as active from height 0: an FP is slashable for
any height it ever signed. A mesh validator backs one FP only (Mesh slashes per validator, so a
second FP naming it would share the first one's slashing): delegations of the second are skipped. A delegation naming several FPs is mapped to the first one; if
another of its FPs is slashed, its mesh stake leaves the (honest) validator like a withdrawal.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, fields
from typing import TYPE_CHECKING, Any, Iterator

from btc_staking.tx import Tx
from mesh_adapter.btc_adapter import MATURING_STATUSES, BtcMeshAdapter, normalize_pk
from mesh_adapter.deploy import BtcMeshParams, adapter_config, deployment_plan
from mesh_adapter.errors import AlreadyTombstoned
from mesh_adapter.framework import BlockInfo, Contract, MeshApp
from mesh_adapter.numeric import Dec
from mesh_adapter.plugin import contract_from_state
from mesh_adapter.storage import Map

from ..errors import ContractError, InvalidRequestError, UnauthorizedError
from .base import Context, Module, register_module
from .mesh_rewards import ROLE as _REWARDS_ROLE, MeshRewardsMixin
from ..store import JsonStore, canonical_json

if TYPE_CHECKING:  # pragma: no cover
    from ..app import ChainApp

__all__ = ["MeshModule", "MeshModuleError",
           "mesh_params_from_genesis"]

#: Registry statuses that release virtual stake (the lien stays until the unbonding period ends).
UNBONDING_STATUSES = ("UNBONDING", "EXPIRED", "REORGED")  # REORGED: the BTC lock left the main chain
_CONTRACT_ROLES = ("vault", "external_staking", "converter", "virtual_staking", _REWARDS_ROLE)


class MeshModuleError(ContractError):
    """A mesh-module message or hook could not be applied."""


_RECORDS = "adapter/delegations/"  # + staking tx hash: the adapter's record of one delegation
_STATUS_INDEX = "adapter/status/"  # + status + "/" + hash: which delegations are in which status


class _StoreMapBackend:
    """A :class:`~mesh_adapter.storage.MapBackend` over the keys under ``prefix`` of the module store."""

    def __init__(self, st: JsonStore, prefix: str) -> None:
        self.kv = st.kv
        self.prefix = st.prefix + prefix

    def get_raw(self, key: str) -> str | None:
        return self.kv.get(self.prefix + key)

    def keys(self) -> list[str]:
        n = len(self.prefix)
        return [k[n:] for k, _ in self.kv.iter_prefix(self.prefix)]


def _put(st: JsonStore, key: str, enc: str | None) -> None:
    if enc is None:
        st.kv.delete(st.prefix + key)
    else:
        st.kv.set(st.prefix + key, enc)


def _write_maps(st: JsonStore, role: str, contract: Contract) -> None:
    """Store the changed entries of the contract's per-account maps (``contract/<role>/<map>/<key>``)."""
    for name in contract.maps:
        for key, enc in contract.state[name].dirty():
            _put(st, f"contract/{role}/{name}/{key}", enc)


def _write_records(st: JsonStore, adapter: BtcMeshAdapter, stored_totals: dict) -> None:
    """Store the changed delegation records, their status index entries and the adapter totals."""
    for h, old, new in adapter.records.changes():
        was, now = (old or {}).get("status"), (new or {}).get("status")
        if was != now:
            if was is not None:
                st.delete(f"{_STATUS_INDEX}{was}/{h}")
            if now is not None:
                st.set(f"{_STATUS_INDEX}{now}/{h}", 1)
    for h, enc in adapter.records.dirty():
        _put(st, _RECORDS + h, enc)
    totals = adapter.totals()
    if canonical_json(totals) != canonical_json(stored_totals):
        st.set("adapter_totals", totals)


def mesh_params_from_genesis(section: dict[str, Any]) -> tuple[BtcMeshParams, str | None]:
    """Validate the genesis section → (params, admin). Unknown keys are an error."""
    allowed = {f.name for f in fields(BtcMeshParams)}
    extra = set(section) - allowed - {"admin"}
    if extra:
        raise InvalidRequestError(f"mesh genesis: unknown keys {sorted(extra)}")
    kw = {k: v for k, v in section.items() if k != "admin"}
    for key in ("price", "discount", "slashing_rate"):
        if key in kw:
            kw[key] = str(kw[key])
            try:
                Dec.parse(kw[key], key)
            except ValueError as exc:
                raise InvalidRequestError(f"mesh genesis: {exc}") from exc
    for key in ("unbonding_period", "max_cap", "max_virtual_per_validator", "block_reward"):
        if key in kw and kw[key] is not None:
            try:
                kw[key] = int(str(kw[key]))
            except ValueError as exc:
                raise InvalidRequestError(f"mesh genesis: {key} must be an integer") from exc
            if kw[key] < 0:
                raise InvalidRequestError(f"mesh genesis: {key} must be non-negative")
    if "fp_to_validator" in kw:
        m = kw["fp_to_validator"]
        if not isinstance(m, dict) or not all(isinstance(v, str) and v for v in m.values()):
            raise InvalidRequestError("mesh genesis: fp_to_validator must map fp keys to validator names")
        try:
            kw["fp_to_validator"] = {normalize_pk(k, "fp_to_validator key"): v for k, v in m.items()}
        except ValueError as exc:
            raise InvalidRequestError(f"mesh genesis: {exc}") from exc
        if len(set(m.values())) != len(m):
            raise InvalidRequestError("mesh genesis: fp_to_validator maps two finality providers to one validator")
    native = kw.get("consumer_native_power", {})
    if not isinstance(native, dict) or not all(isinstance(v, str) and v and isinstance(n, int)
                                               and not isinstance(n, bool) and n >= 0 for v, n in native.items()):
        raise InvalidRequestError("mesh genesis: consumer_native_power must map validators to non-negative ints")
    admin = section.get("admin")
    if admin is not None and not (isinstance(admin, str) and admin):
        raise InvalidRequestError("mesh genesis: admin must be an address")
    return BtcMeshParams(**kw), admin


def _registry(ctx: Context) -> Module | None:
    return ctx.app.modules.get("btc_staking")


def _registry_slashing_rate(ctx: Context) -> str | None:
    reg = _registry(ctx)
    if reg is None:
        return None
    try:
        versions = reg.query(ctx, {"params": {}}).get("params_versions") or []
        return str(versions[-1]["slashing_rate"]) if versions else None
    except (ValueError, AttributeError, KeyError, IndexError, TypeError):
        return None  # no params (yet): the mesh genesis value applies


def _delegation_value(delegation: dict) -> int:
    value = delegation.get("staking_value", delegation.get("total_sat"))
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise MeshModuleError(f"delegation {delegation.get('staking_tx_hash')} has no integer staking_value")
    return value


def _delegation_fp(delegation: dict) -> str:
    fps = delegation.get("fp_btc_pk_list") or []
    if not fps:
        raise MeshModuleError(f"delegation {delegation.get('staking_tx_hash')} names no finality provider")
    return normalize_pk(fps[0], "fp_btc_pk")


def _btc_left_after_slashing(ctx: Context, staking_tx_hash: str) -> int | None:
    """Value of the change output (index 1, fixed by ``validate_slashing_tx``) of the slashing tx
    Bitcoin will see for this delegation: the one the registry recorded as mined, else the
    unbonding path's once the unbonding tx is on Bitcoin (the staking output is gone), else the
    staking path's. None if the registry has no such record (then the adapter's default applies)."""
    reg = _registry(ctx)
    lookup = getattr(reg, "delegation", None)
    d = lookup(ctx, staking_tx_hash) if lookup is not None else None
    if not d:
        return None
    key = d.get("slashing_btc_path") or \
        ("unbonding_slashing_tx" if d.get("unbonding_height") is not None else "slashing_tx")
    raw = d.get(key)
    if not isinstance(raw, str):
        return None
    return Tx.parse(bytes.fromhex(raw)).outputs[1].value


@register_module
class MeshModule(MeshRewardsMixin, Module):
    """Mesh Security provider contracts + BTC adapter, persisted in the chain store."""

    name = "mesh"

    # ------------------------------------------------------------------ state plumbing
    @contextlib.contextmanager
    def session(self, ctx: Context, write: bool = True) -> Iterator[tuple[MeshApp, BtcMeshAdapter]]:
        """A private MeshApp at ctx's block over the stored mesh state: the small contract states,
        the bank and the adapter config load whole; per-account maps (vault users/liens, external
        stakes) and the adapter's records load per key when read (:mod:`mesh_adapter.storage`).
        On a clean exit (and ``write``) only what changed is stored back; an exception leaves the
        store untouched (and the tx's CacheKV drops whatever a failing tx wrote)."""
        st = self.store(ctx)
        cfg = st.get("config")
        if cfg is None:
            raise MeshModuleError("mesh module not initialised (no genesis)")
        host = MeshApp(BlockInfo(int(ctx.height), int(ctx.time_unix), ctx.chain_id))
        raw: dict[str, str] = {}
        roles = [r for r in _CONTRACT_ROLES if r in cfg["contracts"]]  # older deployments: no rewards
        for role in roles:
            data = st.get("contract/" + role)
            raw["contract/" + role] = canonical_json(data)
            contract = host.add_contract(contract_from_state(data))
            contract.attach_maps({name: _StoreMapBackend(st, f"contract/{role}/{name}/") for name in contract.maps})
        balances = st.get("balances", {})
        raw["balances"] = canonical_json(balances)
        host.balances = {a: {d: int(v) for d, v in b.items()} for a, b in balances.items()}
        adapter_state = st.get("adapter")
        raw["adapter"] = canonical_json(adapter_state)
        adapter = BtcMeshAdapter.from_state(host, {"config": adapter_state["config"], "delegations": {}})
        totals = st.get("adapter_totals") or {"staked": {}, "status": {}}
        adapter.attach_records(Map(backend=_StoreMapBackend(st, _RECORDS)), totals,
                               lambda status: _StoreMapBackend(st, f"{_STATUS_INDEX}{status}/").keys())
        yield host, adapter
        if not write:
            return
        if ctx.readonly:
            raise MeshModuleError("cannot change mesh state from a query")
        new: dict[str, Any] = {"balances": {a: {d: str(v) for d, v in sorted(b.items()) if v}
                                            for a, b in sorted(host.balances.items()) if any(b.values())},
                               "adapter": {"config": asdict(adapter.config)}}
        for role in roles:
            new["contract/" + role] = host.contracts[cfg["contracts"][role]].to_state(with_maps=False)
        for key, value in new.items():
            if canonical_json(value) != raw[key]:
                st.set(key, value)
        for role in roles:
            _write_maps(st, role, host.contracts[cfg["contracts"][role]])
        _write_records(st, adapter, totals)

    def config(self, ctx: Context) -> dict[str, Any]:
        """``{params, admin, contracts: {role: internal address}}``."""
        cfg = self.store(ctx).get("config")
        if cfg is None:
            raise MeshModuleError("mesh module not initialised (no genesis)")
        return cfg

    # ------------------------------------------------------------------ lifecycle
    def init_genesis(self, ctx: Context, genesis: dict[str, Any]) -> None:
        params, admin = mesh_params_from_genesis(genesis)
        reg_rate = _registry_slashing_rate(ctx)
        if reg_rate is not None:
            if "slashing_rate" not in genesis:
                params.slashing_rate = reg_rate
            elif Dec.parse(params.slashing_rate) != Dec.parse(reg_rate):
                raise InvalidRequestError(f"mesh genesis: slashing_rate {params.slashing_rate} must equal the "
                                          f"staking registry's {reg_rate}")
        host = MeshApp(BlockInfo(0, int(ctx.time_unix), ctx.chain_id))
        try:
            for cls, addr, msg in deployment_plan(params):
                host.instantiate(cls, addr, msg, sender=params.authority)
            adapter = BtcMeshAdapter(host, adapter_config(params))
            for fp, val in sorted(adapter.config.fp_to_validator.items()):
                adapter.register_finality_provider(fp, val, 0)
        except ValueError as exc:
            raise InvalidRequestError(f"mesh genesis: {exc}") from exc
        st = self.store(ctx)
        contracts = {"vault": params.vault, "external_staking": params.external_staking,
                     "converter": params.converter, "virtual_staking": params.virtual_staking,
                     _REWARDS_ROLE: params.consumer_distribution}
        st.set("config", {"params": asdict(params), "admin": admin, "contracts": contracts})
        for role, addr in contracts.items():
            st.set("contract/" + role, host.contracts[addr].to_state(with_maps=False))
            _write_maps(st, role, host.contracts[addr])
        st.set("balances", {})
        st.set("adapter", {"config": asdict(adapter.config)})
        _write_records(st, adapter, {"staked": {}, "status": {}})

    def end_block(self, ctx: Context) -> None:
        """Pay this block's consumer rewards, then release matured unbonds and finish withdrawals
        (``process_matured``)."""
        self.pay_block_rewards(ctx)
        counts = (self.store(ctx).get("adapter_totals") or {}).get("status", {})
        if not any(counts.get(s) for s in MATURING_STATUSES):
            return
        try:
            with self.session(ctx) as (_, adapter):
                changed = adapter.process_matured()
        except ValueError as exc:  # never halt the chain; the state is left as it was
            ctx.emit("mesh_error", where="process_matured", error=str(exc))
            return
        for rec in changed:
            ctx.emit("mesh_delegation", staking_tx_hash=rec["staking_tx_hash"], status=rec["status"],
                     collateral_sat=str(rec["collateral_sat"]), pending_sat=str(rec["pending_sat"]))

    # ------------------------------------------------------------------ hooks (called by ChainStakingHooks)
    def _validator_for(self, ctx: Context, adapter: BtcMeshAdapter, fp: str) -> str | None:
        """The FP's mesh validator: the registry record's ``validator``, else the genesis mapping."""
        reg = _registry(ctx)
        rec = reg.finality_provider(ctx, fp) if reg is not None else None  # type: ignore[attr-defined]
        return (rec or {}).get("validator") or adapter.config.fp_to_validator.get(fp) or None

    def _map_validator(self, host: MeshApp, adapter: BtcMeshAdapter, fp: str, validator: str) -> str | None:
        """Map ``fp`` → ``validator`` (activating a new validator). Returns why the stake cannot be
        placed (validator jailed/tombstoned), or None when it can."""
        mapped = adapter.config.fp_to_validator.get(fp)
        if mapped is not None and mapped != validator:
            if any(r["fp_btc_pk"] == fp for r in adapter.records.values()):
                raise MeshModuleError(f"finality provider {fp} is mapped to {mapped}, registry says {validator}")
        other = sorted(f for f, v in adapter.config.fp_to_validator.items() if v == validator and f != fp)
        if other:  # a mesh slash hits every staker of a validator: one FP per validator
            return f"mesh validator {validator} already backs finality provider {other[0]}"
        state = host.query(adapter.config.external_staking, {"validator": {"valoper": validator}})["state"]
        if state is None:
            adapter.register_finality_provider(fp, validator, 0)
        elif state in ("active", "jailed"):  # jailed: collateral now, WAITING to stake until unjailed
            adapter.set_validator(fp, validator)
        else:
            return f"mesh validator {validator} of finality provider {fp} is {state}"
        return None

    def on_delegation_status(self, ctx: Context, delegation: dict, old: str | None, new: str) -> dict | None:
        """Apply one registry status change to the mesh (see module docstring). A delegation whose
        FP has no mesh validator (or a tombstoned one) is left out of the mesh (event
        ``mesh_skipped``); one whose validator is jailed bonds its collateral and WAITs (staked on
        unjail); one re-proven after a BTC reorg (REORGED → ACTIVE) reuses its record and collateral
        and is staked again once its earlier unbond has matured (``on_delegation_reproven``). Any
        other failure aborts the tx, registry change included."""
        h = str(delegation.get("staking_tx_hash", "")).lower()
        if new == old:
            return None
        skipped = None
        with self.session(ctx) as (host, adapter):
            known = h in adapter.records
            out = None
            if new == "ACTIVE" and known and old == "REORGED":
                rec = adapter.records[h]
                state = host.query(adapter.config.external_staking,
                                   {"validator": {"valoper": rec["validator"]}})["state"]
                if rec["status"] != "UNBONDING" or state not in ("active", "jailed"):
                    skipped = (f"re-proven after a BTC reorg, but its mesh record is {rec['status']} "
                               f"and mesh validator {rec['validator']} is {state}")
                else:  # same record and collateral; staked now, or once its earlier unbond matures
                    out = adapter.on_delegation_reproven(h)
            elif new == "ACTIVE":
                fp = _delegation_fp(delegation)
                validator = self._validator_for(ctx, adapter, fp)
                skipped = (f"finality provider {fp} has no mesh validator" if validator is None
                           else self._map_validator(host, adapter, fp, validator))
                if skipped is None:
                    self.set_fp_commission(ctx, host, adapter, fp, validator)
                    out = adapter.on_delegation_active({
                        "staking_tx_hash": h, "staker_btc_pk": delegation["staker_btc_pk"], "fp_btc_pk": fp,
                        "value_sat": _delegation_value(delegation)})
                    adapter.records[h]["reward_address"] = delegation.get("staker_addr")  # bound by the PoP
            elif new in UNBONDING_STATUSES and known:
                out = adapter.on_delegation_unbonding(h)
            elif new == "WITHDRAWN" and known:
                out = adapter.on_delegation_withdrawn(h)
        if skipped is not None:
            ctx.emit("mesh_skipped", staking_tx_hash=h, reason=skipped)
        if out is None:
            if new == "SLASHED" and known:
                out = self._delegation_slashed(ctx, h, _delegation_fp(delegation))
            if out is None:
                return None
        ctx.emit("mesh_delegation", staking_tx_hash=h, status=out["status"], validator=out["validator"],
                 collateral_sat=str(out["collateral_sat"]), staked_sat=str(out["staked_sat"]),
                 virtual_stake=str(out["virtual_stake"]))
        return out

    @staticmethod
    def _fp_slash_height(ctx: Context, fp: str) -> int | None:
        """Height the FP was slashed at, per the registry or the finality module (None if not)."""
        reg = _registry(ctx)
        rec = reg.finality_provider(ctx, fp) if reg is not None else None  # type: ignore[attr-defined]
        height = (rec or {}).get("slashed_height")
        if isinstance(height, int) and not isinstance(height, bool) and height > 0:
            return height
        fin = ctx.app.modules.get("finality")
        if fin is not None:
            st = fin.query(ctx, {"is_slashed": {"fp_btc_pk": fp}})
            if st.get("slashed"):
                return int(st["block_height"])
        return None

    def _delegation_slashed(self, ctx: Context, staking_tx_hash: str, fp: str) -> dict | None:
        """A delegation turned SLASHED. If its mesh FP is the slashed one, run the FP-level mesh
        slash now (once: later calls find the validator tombstoned). Otherwise another FP named by
        the staking output was slashed: the BTC no longer backs the honest validator, so the stake
        leaves it like a withdrawal (unstaked now, collateral burned once the lien matures)."""
        height = self._fp_slash_height(ctx, fp)
        if height is not None:
            self.slash_finality_provider(ctx, fp, height)
            return None
        with self.session(ctx) as (_, adapter):
            if adapter.records[staking_tx_hash]["status"] not in ("ACTIVE", "UNBONDING", "WAITING"):
                return None
            return adapter.on_delegation_withdrawn(staking_tx_hash)

    def slash_finality_provider(self, ctx: Context, fp_btc_pk: str, height: int) -> dict | None:
        """Slash the FP's mesh validator (upstream rules) and mirror the BTC slashing on collateral.
        Returns the adapter's report, or None when the FP has no mesh validator / it is tombstoned."""
        fp = normalize_pk(fp_btc_pk, "fp_btc_pk")
        with self.session(ctx, write=False) as (host, adapter):
            validator = adapter.config.fp_to_validator.get(fp)
            state = None if validator is None else \
                host.query(adapter.config.external_staking, {"validator": {"valoper": validator}})["state"]
        if validator is None or state is None:
            ctx.emit("mesh_slash", fp_btc_pk=fp, skipped="finality provider has no mesh validator")
            return None
        if state == "tombstoned":
            ctx.emit("mesh_slash", fp_btc_pk=fp, validator=validator, skipped="validator already tombstoned")
            return None
        with self.session(ctx) as (host, adapter):
            left = {h: sat for h, r in adapter.records.items() if r["validator"] == validator
                    and (sat := _btc_left_after_slashing(ctx, h)) is not None}
            try:
                report = adapter.on_finality_provider_slashed(fp, int(height), btc_left=left)
            except AlreadyTombstoned as exc:
                raise MeshModuleError(f"cannot slash mesh validator {validator}: {exc}") from exc
        ctx.emit("mesh_slash", fp_btc_pk=fp, validator=validator, height=str(height), ratio=report["ratio"],
                 virtual_slashed=str(report["virtual_slashed"]), virtual_unbonded=str(report["virtual_unbonded"]),
                 delegations=report["delegations"])
        self.store(ctx).set("slash/" + validator, dict(report, fp_btc_pk=fp, height=int(height)))
        return report

    # ------------------------------------------------------------------ liveness jail (finality hooks)
    def jail_finality_provider(self, ctx: Context, fp_btc_pk: str, height: int) -> dict | None:
        """The FP missed too many finality votes: jail its mesh validator through external staking's
        ``handle_slashing`` with ``tombstone: false`` (Mesh Security's *offline* slash ratio, 0 for
        BTC: nothing is burned), tell the consumer's virtual staking it left the active set (its
        delegation to it drops to 0) and report its virtual stake as 0 until it is unjailed."""
        fp = normalize_pk(fp_btc_pk, "fp_btc_pk")
        with self.session(ctx, write=False) as (host, adapter):
            validator = adapter.config.fp_to_validator.get(fp)
            state = None if validator is None else \
                host.query(adapter.config.external_staking, {"validator": {"valoper": validator}})["state"]
        if validator is None or state != "active":
            ctx.emit("mesh_jail", fp_btc_pk=fp, skipped=f"mesh validator is {state or 'missing'}")
            return None
        with self.session(ctx) as (host, adapter):
            ratio = host.query(adapter.config.external_staking, {"max_slash": {}})["slash_ratio_offline"]
            host.execute(adapter.config.authority, adapter.config.external_staking, {"handle_slashing": {
                "validator": validator, "height": int(height), "time": host.block().time, "tombstone": False}})
            if adapter.config.virtual_staking:  # the consumer drops it from its active set: no virtual stake
                host.execute(adapter.config.authority, adapter.config.virtual_staking,
                             {"handle_valset_update": {"removals": [validator]}})
        self.store(ctx).set("jailed/" + validator, {"fp_btc_pk": fp, "height": int(height)})
        ctx.emit("mesh_jail", fp_btc_pk=fp, validator=validator, height=str(height), ratio=ratio)
        return {"validator": validator, "ratio": ratio}

    def unjail_finality_provider(self, ctx: Context, fp_btc_pk: str, height: int) -> None:
        """Lift the liveness jail of the FP's mesh validator: its virtual stake counts again on both
        sides, and delegations that turned ACTIVE during the jail (WAITING) are staked now."""
        fp = normalize_pk(fp_btc_pk, "fp_btc_pk")
        with self.session(ctx, write=False) as (_, adapter):
            validator = adapter.config.fp_to_validator.get(fp)
        if validator is None or not self.store(ctx).has("jailed/" + validator):
            return
        with self.session(ctx) as (host, adapter):
            host.execute(adapter.config.authority, adapter.config.external_staking,
                         {"test_unjail_validator": {"valoper": validator, "height": int(height)}})
            if adapter.config.virtual_staking:  # back in the consumer's active set: its virtual stake counts
                host.execute(adapter.config.authority, adapter.config.virtual_staking,
                             {"handle_valset_update": {"additions": [validator]}})
            staked = adapter.stake_waiting(validator)  # delegations that turned ACTIVE during the jail
        self.store(ctx).delete("jailed/" + validator)
        ctx.emit("mesh_unjail", fp_btc_pk=fp, validator=validator, height=str(height))
        for rec in staked:
            ctx.emit("mesh_delegation", staking_tx_hash=rec["staking_tx_hash"], status=rec["status"],
                     validator=rec["validator"], collateral_sat=str(rec["collateral_sat"]),
                     staked_sat=str(rec["staked_sat"]), virtual_stake=str(rec["virtual_stake"]))

    def validator_virtual_stake(self, ctx: Context, validator: str) -> int:
        """Virtual stake backing ``validator``: 0 while it is jailed for liveness."""
        if self.store(ctx).has("jailed/" + validator):
            return 0
        with self.session(ctx, write=False) as (_, adapter):
            return adapter.validator_virtual_stake(validator)

    # ------------------------------------------------------------------ execute
    def exec_set_price(self, ctx: Context, sender: str, body: dict, funds: list) -> dict:
        """Admin: set the converter price (consumer tokens per sat) and the adapter's copy of it."""
        cfg = self.config(ctx)
        if cfg.get("admin") is None or sender != cfg["admin"]:
            raise UnauthorizedError("mesh: only the admin may set the price")
        if funds:
            raise InvalidRequestError("mesh: set_price takes no funds")
        price = body.get("price")
        if not isinstance(price, (str, int)) or isinstance(price, bool):
            raise InvalidRequestError("mesh: set_price needs `price` (decimal string)")
        price = str(Dec.parse(str(price), "price"))
        with self.session(ctx) as (host, adapter):
            host.execute(adapter.config.authority, cfg["contracts"]["converter"], {"update_price": {"price": price}})
            adapter.config.price = price
        cfg["params"]["price"] = price
        self.store(ctx).set("config", cfg)
        ctx.emit("mesh_set_price", price=price)
        return {"price": price}

    # ------------------------------------------------------------------ queries
    def _passthrough(self, ctx: Context, role: str, body: dict) -> Any:
        with self.session(ctx, write=False) as (host, _):
            return host.query(self.config(ctx)["contracts"][role], body)

    def query_vault(self, ctx: Context, body: dict) -> Any:
        return self._passthrough(ctx, "vault", body)

    def query_external_staking(self, ctx: Context, body: dict) -> Any:
        return self._passthrough(ctx, "external_staking", body)

    def query_converter(self, ctx: Context, body: dict) -> Any:
        return self._passthrough(ctx, "converter", body)

    def query_virtual_staking(self, ctx: Context, body: dict) -> Any:
        return self._passthrough(ctx, "virtual_staking", body)

    def query_config(self, ctx: Context, body: dict) -> Any:
        return self.config(ctx)

    def query_slash_report(self, ctx: Context, body: dict) -> Any:
        """``{validator}`` → the double-sign slash of that mesh validator, three figures apart:
        ``virtual_slashed`` (consumer virtual stake burned), ``virtual_unbonded`` (what was left on
        the tombstoned validator, force-unbonded by the consumer) and per delegation ``btc_left``
        (= its collateral: the slashing tx's change output); ``{"report": null}`` if never slashed."""
        v = body.get("validator")
        if not isinstance(v, str) or not v:
            raise InvalidRequestError("mesh: slash_report needs `validator`")
        return {"report": self.store(ctx).get("slash/" + v)}

    def query_balance(self, ctx: Context, body: dict) -> Any:
        address = body.get("address")
        if not isinstance(address, str):
            raise InvalidRequestError("mesh: balance needs `address`")
        denom = body.get("denom") or self.config(ctx)["params"]["denom"]
        bal = self.store(ctx).get("balances", {}).get(address, {}).get(denom, "0")
        return {"address": address, "amount": {"denom": denom, "amount": str(bal)}}

    def query_adapter(self, ctx: Context, body: dict) -> Any:
        if not isinstance(body, dict) or len(body) != 1:
            raise InvalidRequestError("mesh: adapter query must have exactly one key")
        (name, q), = body.items()
        q = q or {}
        with self.session(ctx, write=False) as (_, adapter):
            if name == "delegation":
                return {"delegation": adapter.delegation(q.get("staking_tx_hash"))}
            if name == "validator_virtual_stake":
                v = q.get("validator")
                if not isinstance(v, str):
                    raise InvalidRequestError("mesh: validator_virtual_stake needs `validator`")
                jailed = self.store(ctx).has("jailed/" + v)
                return {"validator": v, "virtual_stake": "0" if jailed else str(adapter.validator_virtual_stake(v)),
                        "staked_sat": str(adapter.staked_on(v))}
            if name == "delegations_of":
                return {"delegations": adapter.delegations_of(q.get("staker_btc_pk"))}
            if name == "lien":
                return {"lien": adapter.lien(q.get("staking_tx_hash"))}
            if name == "config":
                return asdict(adapter.config)
        raise InvalidRequestError(f"mesh: unknown adapter query `{name}`")
