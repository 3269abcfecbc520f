"""``InMemorySource``: a ``StakingDataSource`` over records held in memory."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from api.source import DelegationRecord, FinalityProviderRecord, ParamsRecord


class InMemorySource:
    """Holds delegations, finality providers, params and a BTC tip; mutable for tests and demos."""

    def __init__(
        self,
        delegations: Iterable[DelegationRecord] = (),
        finality_providers: Iterable[FinalityProviderRecord] = (),
        params: Iterable[ParamsRecord] = (),
        btc_tip: int = 0,
    ) -> None:
        self._delegations = {d.staking_tx_hash_hex: d for d in delegations}
        self._fps = {f.btc_pk_hex: f for f in finality_providers}
        self._params = list(params)
        self.btc_tip = btc_tip

    def put_delegation(self, rec: DelegationRecord) -> None:
        """Insert or replace a delegation."""
        self._delegations[rec.staking_tx_hash_hex] = rec

    def update_delegation(self, staking_tx_hash_hex: str, **changes: Any) -> DelegationRecord:
        """Replace fields of a stored delegation (e.g. ``unbonding_height=...``)."""
        rec = replace(self._delegations[staking_tx_hash_hex], **changes)
        self._delegations[staking_tx_hash_hex] = rec
        return rec

    def put_finality_provider(self, fp: FinalityProviderRecord) -> None:
        """Insert or replace a finality provider."""
        self._fps[fp.btc_pk_hex] = fp

    def get_delegation(self, staking_tx_hash_hex: str) -> DelegationRecord | None:
        """See ``StakingDataSource``."""
        return self._delegations.get(staking_tx_hash_hex)

    def list_delegations(self, staker_pk_hex: str | None = None) -> Sequence[DelegationRecord]:
        """See ``StakingDataSource``."""
        return [d for d in self._delegations.values() if staker_pk_hex is None or d.staker_pk_hex == staker_pk_hex]

    def list_finality_providers(self) -> Sequence[FinalityProviderRecord]:
        """See ``StakingDataSource``."""
        return list(self._fps.values())

    def params(self) -> Sequence[ParamsRecord]:
        """See ``StakingDataSource``."""
        return list(self._params)

    def btc_tip_height(self) -> int:
        """See ``StakingDataSource``."""
        return self.btc_tip
