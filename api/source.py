"""The data-source contract the API reads from, and the plain records it returns.

A ``StakingDataSource`` exposes what the Cosmos chain's ``btc_staking``
registry knows (delegations, finality providers, versioned parameters) plus the
BTC tip height of its light client. The API derives the public delegation state
from those facts (``api.states``); sources never compute states themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable


class DataSourceError(RuntimeError):
    """The underlying chain could not be queried (unreachable, bad reply)."""


@dataclass(frozen=True)
class DelegationRecord:
    """One BTC delegation as recorded by the registry.

    Hex strings are lowercase; ``staking_tx_hash_hex`` is the txid in display
    (reversed) byte order; public keys are 32-byte BIP-340 x-only keys.
    Heights are BTC block heights unless named ``cosmos_*``.
    """

    staking_tx_hash_hex: str
    staker_pk_hex: str
    fp_pks_hex: tuple[str, ...]
    staking_amount: int
    staking_time: int
    unbonding_time: int
    staking_output_idx: int = 0
    staking_tx_hex: str = ""
    params_version: int = 0
    has_covenant_quorum: bool = False
    start_height: int | None = None
    end_height: int | None = None
    expired: bool = False
    unbonding_tx_hex: str = ""
    unbonding_height: int | None = None
    withdrawn_height: int | None = None
    slashed: bool = False
    chain_status: str = ""
    reorged: bool = False
    cosmos_height: int | None = None
    cosmos_time: str | None = None


@dataclass(frozen=True)
class FinalityProviderRecord:
    """A registered finality provider."""

    btc_pk_hex: str
    moniker: str = ""
    identity: str = ""
    website: str = ""
    security_contact: str = ""
    details: str = ""
    commission: str = "0"
    address: str = ""
    slashed: bool = False
    jailed: bool = False
    voting_power: int | None = None     # finality module: power at the latest height (None: not known)
    finality_state: str | None = None   # finality module: active | standby | jailed | slashed


@dataclass(frozen=True)
class ParamsRecord:
    """One version of the BTC staking parameters (Babylon ``x/btcstaking`` Params)."""

    version: int
    covenant_pks_hex: tuple[str, ...]
    covenant_quorum: int
    min_staking_value_sat: int
    max_staking_value_sat: int
    min_staking_time_blocks: int
    max_staking_time_blocks: int
    unbonding_time_blocks: int
    unbonding_fee_sat: int
    slashing_rate: str
    slashing_pk_script_hex: str
    min_slashing_tx_fee_sat: int
    btc_confirmation_depth: int
    btc_activation_height: int = 0
    tag_hex: str = ""
    extra: dict = field(default_factory=dict)


@runtime_checkable
class StakingDataSource(Protocol):
    """Read-only view of the chain that ``create_app`` serves.

    Implementations raise ``DataSourceError`` when the chain cannot be reached.
    """

    def get_delegation(self, staking_tx_hash_hex: str) -> DelegationRecord | None:
        """The delegation keyed by this staking txid (display order), or None."""
        ...

    def list_delegations(self, staker_pk_hex: str | None = None) -> Sequence[DelegationRecord]:
        """All delegations, or only those of one staker (x-only pk hex); any order."""
        ...

    def list_finality_providers(self) -> Sequence[FinalityProviderRecord]:
        """All registered finality providers; any order."""
        ...

    def params(self) -> Sequence[ParamsRecord]:
        """Every staking-parameters version known to the chain."""
        ...

    def btc_tip_height(self) -> int:
        """Height of the chain's BTC light-client tip."""
        ...
