"""Turns data-source records into the public models: states, pages, stats."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from api.errors import NotFoundError
from api.models import (
    BbnStakingParams,
    BtcCheckpointParams,
    DelegationPublic,
    DelegationStaking,
    DelegationUnbonding,
    FinalityProviderDescription,
    FinalityProviderPublic,
    NetworkInfoPublic,
    OverallStatsPublic,
    ParamsPublic,
    StakerStatsPublic,
    StakingStatusPublic,
)
from api.params import encode_pagination_key
from api.source import DelegationRecord, FinalityProviderRecord, StakingDataSource
from api.states import DelegationState, DelegationSubState, DerivedState, derive_state


@dataclass(frozen=True)
class Page:
    """One page of delegations and the cursor of the next one ('' on the last page)."""

    items: list[DelegationPublic]
    next_key: str


def withdrawable_height(rec: DelegationRecord, derived: DerivedState) -> int | None:
    """First BTC tip height at which the relevant timelock has passed (``tip + 1 >= h + T``)."""
    if derived.state in (DelegationState.WITHDRAWN, DelegationState.SLASHED):
        return None
    if rec.unbonding_height is not None:
        return rec.unbonding_height + rec.unbonding_time - 1
    if rec.start_height is not None:
        end = rec.end_height if rec.end_height is not None else rec.start_height + rec.staking_time
        return end - 1
    return None


def to_public(rec: DelegationRecord, btc_tip: int) -> DelegationPublic:
    """Public view of one delegation at the given BTC tip."""
    derived = derive_state(rec, btc_tip)
    end = rec.end_height
    if end is None and rec.start_height is not None:
        end = rec.start_height + rec.staking_time
    return DelegationPublic(
        params_version=rec.params_version,
        staker_btc_pk_hex=rec.staker_pk_hex,
        finality_provider_btc_pks_hex=list(rec.fp_pks_hex),
        delegation_staking=DelegationStaking(
            staking_tx_hash_hex=rec.staking_tx_hash_hex,
            staking_tx_hex=rec.staking_tx_hex,
            staking_output_idx=rec.staking_output_idx,
            staking_timelock=rec.staking_time,
            staking_amount=rec.staking_amount,
            start_height=rec.start_height,
            end_height=end,
            bbn_inception_height=rec.cosmos_height,
            bbn_inception_time=rec.cosmos_time,
        ),
        delegation_unbonding=DelegationUnbonding(
            unbonding_timelock=rec.unbonding_time,
            unbonding_tx=rec.unbonding_tx_hex,
            unbonding_height=rec.unbonding_height,
        ),
        state=derived.state,
        sub_state=derived.sub_state,
        withdrawable_height=withdrawable_height(rec, derived),
    )


def _fp_state(fp: FinalityProviderRecord, active_tvl: int) -> str:
    if fp.finality_state in ("active", "standby", "jailed", "slashed") and not fp.slashed:
        return fp.finality_state  # the finality module's own view (power table, jail)
    if fp.slashed:
        return "slashed"
    if fp.jailed:
        return "jailed"
    return "active" if active_tvl > 0 else "standby"


class StakingService:
    """Read-side logic over a ``StakingDataSource``."""

    def __init__(self, source: StakingDataSource) -> None:
        self.source = source

    def _slashed_fps(self) -> set[str]:
        fast = getattr(self.source, "slashed_fp_pks", None)  # api.index.IndexedSource
        if callable(fast):
            return fast()
        return {fp.btc_pk_hex for fp in self.source.list_finality_providers() if fp.slashed}

    def _indexed(self) -> Any:
        """The source when it is an index with fast paths (``api.index.IndexedSource``), else None."""
        return self.source if getattr(self.source, "indexed", False) else None

    @staticmethod
    def _with_fp_slashing(records: Iterable[DelegationRecord], slashed_fps: set[str]) -> list[DelegationRecord]:
        """Mark delegations to a slashed finality provider as slashed (the chain may only flag the FP)."""
        return [
            replace(r, slashed=True) if not r.slashed and slashed_fps.intersection(r.fp_pks_hex) else r
            for r in records
        ]

    def _records(self, staker_pk_hex: str | None = None) -> list[DelegationRecord]:
        records = self.source.list_delegations(staker_pk_hex)
        if staker_pk_hex is not None:
            records = [r for r in records if r.staker_pk_hex == staker_pk_hex]
        return self._with_fp_slashing(records, self._slashed_fps())

    def _states(self, records: Iterable[DelegationRecord], tip: int) -> list[tuple[DelegationRecord, DelegationState]]:
        return [(r, derive_state(r, tip).state) for r in records]

    def get_delegation(self, staking_tx_hash_hex: str) -> DelegationPublic:
        """One delegation, or ``NotFoundError``."""
        rec = self.source.get_delegation(staking_tx_hash_hex)
        if rec is None:
            raise NotFoundError(f"staking delegation {staking_tx_hash_hex} not found")
        (rec,) = self._with_fp_slashing([rec], self._slashed_fps())
        return to_public(rec, self.source.btc_tip_height())

    def list_delegations(
        self,
        staker_pk_hex: str,
        after: str = "",
        states: Sequence[DelegationState] | None = None,
        limit: int = 20,
    ) -> Page:
        """A page of one staker's delegations, ordered by staking txid, starting after ``after``."""
        tip = self.source.btc_tip_height()
        if self._indexed() is not None:  # one indexed range read (state filter in the index)
            recs, more = self.source.page_delegations(staker_pk_hex, after, states, limit)  # type: ignore[attr-defined]
            slashed = self._slashed_fps()
            items = [to_public(r, tip) for r in self._with_fp_slashing(recs, slashed)]
            key = encode_pagination_key(items[-1].delegation_staking.staking_tx_hash_hex) if more and items else ""
            return Page(items, key)
        wanted = set(states) if states else None
        records = sorted(self._records(staker_pk_hex), key=lambda r: r.staking_tx_hash_hex)
        items: list[DelegationPublic] = []
        more = False
        for rec in records:
            if after and rec.staking_tx_hash_hex <= after:
                continue
            public = to_public(rec, tip)
            if wanted is not None and public.state not in wanted:
                continue
            if len(items) == limit:
                more = True
                break
            items.append(public)
        next_key = encode_pagination_key(items[-1].delegation_staking.staking_tx_hash_hex) if more else ""
        return Page(items, next_key)

    def _memo(self, key: str, fn: Any) -> Any:
        """``fn()`` computed once per index sync when the source is an index (its cache), else every time."""
        cached = getattr(self.source, "cached", None)
        return cached(key, fn) if callable(cached) and self._indexed() is not None else fn()

    def finality_providers(self) -> list[FinalityProviderPublic]:
        """All finality providers with their ACTIVE TVL, largest first."""
        return list(self._memo("finality_providers", self._finality_providers))

    def _finality_providers(self) -> list[FinalityProviderPublic]:
        tip = self.source.btc_tip_height()
        tvl, count = self._active_by_fp(tip)
        out = [
            FinalityProviderPublic(
                btc_pk=fp.btc_pk_hex,
                state=_fp_state(fp, tvl.get(fp.btc_pk_hex, 0)),
                description=FinalityProviderDescription(
                    moniker=fp.moniker,
                    identity=fp.identity,
                    website=fp.website,
                    security_contact=fp.security_contact,
                    details=fp.details,
                ),
                commission=fp.commission,
                active_tvl=tvl.get(fp.btc_pk_hex, 0),
                active_delegations=count.get(fp.btc_pk_hex, 0),
                voting_power=fp.voting_power or 0,
            )
            for fp in self.source.list_finality_providers()
        ]
        out.sort(key=lambda f: (-f.active_tvl, f.btc_pk))
        return out

    def _active_by_fp(self, tip: int) -> tuple[dict[str, int], dict[str, int]]:
        """(ACTIVE satoshi, ACTIVE count) per finality provider: the index's counters, else a scan."""
        idx = self._indexed()
        if idx is not None:
            per_fp = idx.fp_counters()
            return ({fp: c.get("ACTIVE_tvl", 0) for fp, c in per_fp.items()},
                    {fp: c.get("ACTIVE_count", 0) for fp, c in per_fp.items()})
        tvl: dict[str, int] = {}
        count: dict[str, int] = {}
        for rec, state in self._states(self._records(), tip):
            if state is DelegationState.ACTIVE:
                for fp in rec.fp_pks_hex:
                    tvl[fp] = tvl.get(fp, 0) + rec.staking_amount
                    count[fp] = count.get(fp, 0) + 1
        return tvl, count

    def overall_stats(self) -> OverallStatsPublic:
        """Network totals; TVL counts only ACTIVE delegations."""
        return self._memo("overall_stats", self._overall_stats)

    def _overall_stats(self) -> OverallStatsPublic:
        tip = self.source.btc_tip_height()
        idx = self._indexed()
        if idx is not None:  # counters kept by the indexer
            c = idx.counters("all")
            fps = self.finality_providers()
            return OverallStatsPublic(
                active_tvl=c.get("ACTIVE_tvl", 0), active_delegations=c.get("ACTIVE_count", 0),
                active_stakers=c.get("active_stakers", 0),
                active_finality_providers=sum(1 for f in fps if f.state == "active"),
                total_finality_providers=len(fps), total_delegations=c.get("total_count", 0),
                total_stakers=c.get("stakers", 0), btc_tip_height=tip)
        pairs = self._states(self._records(), tip)
        active = [r for r, s in pairs if s is DelegationState.ACTIVE]
        fps = self.finality_providers()
        return OverallStatsPublic(
            active_tvl=sum(r.staking_amount for r in active),
            active_delegations=len(active),
            active_stakers=len({r.staker_pk_hex for r in active}),
            active_finality_providers=sum(1 for f in fps if f.state == "active"),
            total_finality_providers=len(fps),
            total_delegations=len(pairs),
            total_stakers=len({r.staker_pk_hex for r, _ in pairs}),
            btc_tip_height=tip,
        )

    def staker_stats(self, staker_pk_hex: str) -> StakerStatsPublic:
        """One staker's amounts and counts per state bucket."""
        tip = self.source.btc_tip_height()
        buckets = {
            DelegationState.ACTIVE: "active",
            DelegationState.UNBONDING: "unbonding",
            DelegationState.WITHDRAWABLE: "withdrawable",
            DelegationState.SLASHED: "slashed",
        }
        totals = {f"{b}_{k}": 0 for b in buckets.values() for k in ("tvl", "delegations")}
        idx = self._indexed()
        if idx is not None:  # the staker's counters kept by the indexer
            c = idx.counters("staker", staker_pk_hex.lower())
            for state, bucket in buckets.items():
                totals[f"{bucket}_tvl"] = c.get(f"{state.value}_tvl", 0)
                totals[f"{bucket}_delegations"] = c.get(f"{state.value}_count", 0)
            return StakerStatsPublic(**totals)
        for rec, state in self._states(self._records(staker_pk_hex), tip):
            bucket = buckets.get(state)
            if bucket:
                totals[f"{bucket}_tvl"] += rec.staking_amount
                totals[f"{bucket}_delegations"] += 1
        return StakerStatsPublic(**totals)

    def params(self) -> ParamsPublic:
        """All params versions, ascending."""
        return self._memo("params", self._params)

    def _params(self) -> ParamsPublic:
        versions = sorted(self.source.params(), key=lambda p: p.version)
        return ParamsPublic(
            bbn=[
                BbnStakingParams(
                    version=p.version,
                    covenant_pks=list(p.covenant_pks_hex),
                    covenant_quorum=p.covenant_quorum,
                    min_staking_value_sat=p.min_staking_value_sat,
                    max_staking_value_sat=p.max_staking_value_sat,
                    min_staking_time_blocks=p.min_staking_time_blocks,
                    max_staking_time_blocks=p.max_staking_time_blocks,
                    slashing_pk_script=p.slashing_pk_script_hex,
                    min_slashing_tx_fee_sat=p.min_slashing_tx_fee_sat,
                    slashing_rate=p.slashing_rate,
                    unbonding_time_blocks=p.unbonding_time_blocks,
                    unbonding_fee_sat=p.unbonding_fee_sat,
                    btc_activation_height=p.btc_activation_height,
                    tag=p.tag_hex,
                )
                for p in versions
            ],
            btc=[BtcCheckpointParams(version=p.version, btc_confirmation_depth=p.btc_confirmation_depth) for p in versions],
        )

    def network_info(self) -> NetworkInfoPublic:
        """Params plus whether staking is open at the current BTC tip."""
        return self._memo("network_info", self._network_info)

    def _network_info(self) -> NetworkInfoPublic:
        tip = self.source.btc_tip_height()
        params = self.params()
        is_open = any(p.btc_activation_height <= tip for p in params.bbn)
        finalized = getattr(self.source, "last_finalized_height", None)
        info = NetworkInfoPublic(staking_status=StakingStatusPublic(is_staking_open=is_open), params=params,
                                 btc_tip_height=tip, last_finalized_height=finalized() if callable(finalized) else None)
        lag_fn = getattr(self.source, "index_lag", None)  # api.index.IndexedSource
        lag = lag_fn() if callable(lag_fn) else None
        if lag is not None:
            info.index_lag_blocks, info.indexed_height = lag.blocks, lag.indexed_height
        return info


__all__ = ["Page", "StakingService", "to_public", "DelegationSubState"]
