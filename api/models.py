"""Pydantic response models, shaped like Babylon's staking-api-service v2.

Every successful reply is an envelope ``{"data": ...}``; list endpoints add
``{"pagination": {"next_key": ...}}``. Every error is
``{"errorCode": "...", "message": "..."}``.
"""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from api.states import DelegationState, DelegationSubState

T = TypeVar("T")

EXAMPLE_TX_HASH = "5f4a1c1e3bd5f2b0f5d9d8a8b3c2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4"
EXAMPLE_STAKER_PK = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
EXAMPLE_FP_PK = "c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5"
EXAMPLE_COVENANT_PK = "f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9"


class Pagination(BaseModel):
    """Where the next page starts."""

    next_key: str = Field(
        description="Opaque key for the next page: pass it back as `pagination_key`. Empty on the last page.",
        examples=["X0ocHjvV8rD12dios8Lh8Km4x9bl9KOywdDp-Ke2xdQ"],
    )


class DataResponse(BaseModel, Generic[T]):
    """Envelope of every successful reply."""

    data: T = Field(description="The requested object.")


class PaginatedResponse(BaseModel, Generic[T]):
    """Envelope of a paginated list."""

    data: T = Field(description="This page of results.")
    pagination: Pagination = Field(description="Pagination cursor.")


class ErrorResponse(BaseModel):
    """Body of every error reply (4xx and 5xx)."""

    model_config = ConfigDict(populate_by_name=True)

    error_code: Literal[
        "BAD_REQUEST", "NOT_FOUND", "METHOD_NOT_ALLOWED", "INTERNAL_SERVICE_ERROR", "SERVICE_UNAVAILABLE"
    ] = Field(alias="errorCode", description="Machine-readable error class.", examples=["BAD_REQUEST"])
    message: str = Field(
        description="What was wrong, naming the offending parameter.",
        examples=["invalid staker_pk_hex: expected 64 hex characters (32-byte x-only key), got 10"],
    )


# ---------------------------------------------------------------- delegations


class DelegationStaking(BaseModel):
    """The staking transaction and its BTC timeline."""

    staking_tx_hash_hex: str = Field(description="Staking txid, display (reversed) byte order.", examples=[EXAMPLE_TX_HASH])
    staking_tx_hex: str = Field(description="Raw staking transaction, hex (empty if the chain does not keep it).")
    staking_output_idx: int = Field(ge=0, description="Index of the staking output in the staking tx.", examples=[0])
    staking_timelock: int = Field(ge=0, description="Staking timelock in BTC blocks.", examples=[1000])
    staking_amount: int = Field(ge=0, description="Staked amount in satoshi.", examples=[1_000_000])
    start_height: int | None = Field(
        default=None, description="BTC height that included the staking tx (None before the inclusion proof).", examples=[120]
    )
    end_height: int | None = Field(
        default=None, description="BTC height at which the staking timelock ends (start + timelock).", examples=[1120]
    )
    bbn_inception_height: int | None = Field(
        default=None, description="Cosmos chain height at which the delegation was registered.", examples=[42]
    )
    bbn_inception_time: str | None = Field(
        default=None, description="Cosmos block time of registration, ISO 8601.", examples=["2026-11-25T03:00:00Z"]
    )


class DelegationUnbonding(BaseModel):
    """The unbonding path of the delegation."""

    unbonding_timelock: int = Field(ge=0, description="Unbonding timelock in BTC blocks.", examples=[101])
    unbonding_tx: str = Field(description="Raw unbonding transaction, hex (empty if not known).")
    unbonding_height: int | None = Field(
        default=None, description="BTC height that included the observed early-unbonding tx, if any.", examples=[None]
    )


class DelegationPublic(BaseModel):
    """A BTC delegation with its derived state."""

    params_version: int = Field(ge=0, description="Staking parameters version the delegation was created under.", examples=[0])
    staker_btc_pk_hex: str = Field(description="Staker BIP-340 x-only public key.", examples=[EXAMPLE_STAKER_PK])
    finality_provider_btc_pks_hex: list[str] = Field(
        description="Finality providers the stake is delegated to (x-only keys).", examples=[[EXAMPLE_FP_PK]]
    )
    delegation_staking: DelegationStaking
    delegation_unbonding: DelegationUnbonding
    state: DelegationState = Field(description="Public state (see the state machine in the API description).", examples=["ACTIVE"])
    sub_state: DelegationSubState | None = Field(
        default=None,
        description="For UNBONDING/WITHDRAWABLE/WITHDRAWN: whether the timelock expired or the staker unbonded early.",
        examples=[None],
    )
    withdrawable_height: int | None = Field(
        default=None,
        description="First BTC tip height at which the staker can withdraw (timelock passed), when known.",
        examples=[1119],
    )


# ---------------------------------------------------------- finality providers


class FinalityProviderDescription(BaseModel):
    """Self-declared finality provider metadata."""

    moniker: str = Field(examples=["fp-alpha"])
    identity: str = Field(examples=[""])
    website: str = Field(examples=["https://fp-alpha.example"])
    security_contact: str = Field(examples=["security@fp-alpha.example"])
    details: str = Field(examples=[""])


class FinalityProviderPublic(BaseModel):
    """A finality provider with the stake it currently carries."""

    btc_pk: str = Field(description="Finality provider BIP-340 x-only public key.", examples=[EXAMPLE_FP_PK])
    state: Literal["active", "standby", "jailed", "slashed"] = Field(
        description="The finality module's view: `active` has voting power at the latest height (ACTIVE stake, "
        "public randomness, among the top `max_active_finality_providers`), `standby` has none, `jailed` missed "
        "too many votes, `slashed` double-signed. Before finality activates (no FP ever had power): `active` "
        "carries ACTIVE stake.", examples=["active"]
    )
    description: FinalityProviderDescription
    commission: str = Field(description="Commission rate, decimal string.", examples=["0.05"])
    active_tvl: int = Field(ge=0, description="Sum of ACTIVE delegations' amounts, satoshi.", examples=[3_000_000])
    active_delegations: int = Field(ge=0, description="Number of ACTIVE delegations.", examples=[2])
    voting_power: int = Field(default=0, ge=0, description="Finality voting power at the chain's latest height "
                              "(active sats when among the top `max_active_finality_providers` with public "
                              "randomness; 0 otherwise).", examples=[3_000_000])


# ------------------------------------------------------------------------ stats


class OverallStatsPublic(BaseModel):
    """Network-wide staking statistics (only ACTIVE stake counts as TVL)."""

    active_tvl: int = Field(ge=0, description="Sum of ACTIVE delegations' amounts, satoshi.", examples=[4_000_000])
    active_delegations: int = Field(ge=0, description="Number of ACTIVE delegations.", examples=[3])
    active_stakers: int = Field(ge=0, description="Distinct stakers with at least one ACTIVE delegation.", examples=[2])
    active_finality_providers: int = Field(ge=0, description="Finality providers in state `active`.", examples=[2])
    total_finality_providers: int = Field(ge=0, description="All registered finality providers.", examples=[3])
    total_delegations: int = Field(ge=0, description="Delegations in any state.", examples=[7])
    total_stakers: int = Field(ge=0, description="Distinct stakers in any state.", examples=[3])
    btc_tip_height: int = Field(ge=0, description="BTC light-client tip the states were computed at.", examples=[500])


class StakerStatsPublic(BaseModel):
    """One staker's stake, bucketed by state (satoshi and counts)."""

    active_tvl: int = Field(ge=0, examples=[1_000_000])
    active_delegations: int = Field(ge=0, examples=[1])
    unbonding_tvl: int = Field(ge=0, examples=[0])
    unbonding_delegations: int = Field(ge=0, examples=[0])
    withdrawable_tvl: int = Field(ge=0, examples=[500_000])
    withdrawable_delegations: int = Field(ge=0, examples=[1])
    slashed_tvl: int = Field(ge=0, examples=[0])
    slashed_delegations: int = Field(ge=0, examples=[0])


# ---------------------------------------------------------------------- params


class BbnStakingParams(BaseModel):
    """One version of the chain's BTC staking parameters."""

    version: int = Field(ge=0, examples=[0])
    covenant_pks: list[str] = Field(description="Covenant committee x-only keys.", examples=[[EXAMPLE_COVENANT_PK]])
    covenant_quorum: int = Field(ge=1, examples=[1])
    min_staking_value_sat: int = Field(ge=0, examples=[10_000])
    max_staking_value_sat: int = Field(ge=0, examples=[10_000_000_000])
    min_staking_time_blocks: int = Field(ge=0, examples=[100])
    max_staking_time_blocks: int = Field(ge=0, examples=[65535])
    slashing_pk_script: str = Field(description="Slashing destination pkScript, hex.", examples=["0014" + "00" * 20])
    min_slashing_tx_fee_sat: int = Field(ge=0, examples=[1000])
    slashing_rate: str = Field(description="Fraction of stake slashed, decimal string.", examples=["0.1"])
    unbonding_time_blocks: int = Field(ge=0, examples=[101])
    unbonding_fee_sat: int = Field(ge=0, examples=[1000])
    btc_activation_height: int = Field(ge=0, description="First BTC height these params apply to.", examples=[0])
    tag: str = Field(description="Staking OP_RETURN tag, hex.", examples=["62626e31"])


class BtcCheckpointParams(BaseModel):
    """BTC checkpointing parameters."""

    version: int = Field(ge=0, examples=[0])
    btc_confirmation_depth: int = Field(ge=1, description="k: blocks deep a staking tx must be.", examples=[6])


class ParamsPublic(BaseModel):
    """All parameter versions, ascending."""

    bbn: list[BbnStakingParams]
    btc: list[BtcCheckpointParams]


class StakingStatusPublic(BaseModel):
    """Whether new stake can be registered now."""

    is_staking_open: bool = Field(description="True once some params version is active at the BTC tip.", examples=[True])


class NetworkInfoPublic(BaseModel):
    """Network parameters and status."""

    staking_status: StakingStatusPublic
    params: ParamsPublic
    btc_tip_height: int = Field(ge=0, description="BTC light-client tip height.", examples=[500])
    last_finalized_height: int | None = Field(default=None, ge=1, description="Last chain height finalized by "
                                              "the finality providers' votes (null: none yet).", examples=[120])
    index_lag_blocks: int | None = Field(default=None, ge=0, description="How many chain blocks the API's index "
                                         "is behind the chain (null: the API reads the chain directly).",
                                         examples=[0])
    indexed_height: int | None = Field(default=None, ge=0, description="Chain height the API's index has "
                                       "synced to (null: no index).", examples=[120])


class HealthPublic(BaseModel):
    """Liveness of the service and its chain connection."""

    status: Literal["ok"] = Field(examples=["ok"])
    btc_tip_height: int = Field(ge=0, description="BTC light-client tip seen through the data source.", examples=[500])
