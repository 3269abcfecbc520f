"""Response models of the explorer's read-only ``/v2/explorer`` routes (all in OpenAPI).

A figure the chain does not provide (yet) is ``null``; the pages show it as "—".
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from api.models import EXAMPLE_FP_PK, EXAMPLE_STAKER_PK, EXAMPLE_TX_HASH, DelegationPublic
from api.states import DelegationState


class StateTotal(BaseModel):
    """Delegations in one state: count and satoshi."""

    state: DelegationState = Field(examples=["ACTIVE"])
    delegations: int = Field(ge=0, examples=[2])
    sat: int = Field(ge=0, description="Sum of staking amounts, satoshi.", examples=[1_500_000])


class OverviewPublic(BaseModel):
    """Everything the overview page shows."""

    btc_tip_height: int | None = Field(
        default=None, description="Tip of the Bitcoin node the service was told about (null when none).", examples=[140])
    light_client_tip_height: int = Field(ge=0, description="The chain's BTC light-client tip.", examples=[139])
    chain_height: int | None = Field(default=None, description="Latest committed Cosmos chain height.", examples=[90])
    last_finalized_height: int | None = Field(
        default=None, description="Highest chain height finalized by finality votes (null until the chain reports it).",
        examples=[85])
    tvl_by_state: list[StateTotal] = Field(description="Satoshi and delegation count per state (every state listed).")
    active_tvl: int = Field(ge=0, description="Satoshi in ACTIVE delegations.", examples=[500_000])
    total_stakers: int = Field(ge=0, examples=[2])
    active_stakers: int = Field(ge=0, examples=[1])
    total_delegations: int = Field(ge=0, examples=[2])
    total_finality_providers: int = Field(ge=0, examples=[2])
    total_virtual_stake: int | None = Field(
        default=None, description="Sum of the mesh virtual stake on every provider's validator (null without mesh).",
        examples=[450_000])


class ProviderRow(BaseModel):
    """One finality provider as the providers table shows it."""

    btc_pk: str = Field(examples=[EXAMPLE_FP_PK])
    moniker: str = Field(examples=["fp-honest"])
    validator: str = Field(description="Mesh validator the provider maps to ('' if none).", examples=["bbn1..."])
    state: str = Field(description="active | standby | jailed | slashed.", examples=["active"])
    voting_power: int | None = Field(default=None, description="Voting power, when the chain reports it.")
    delegations: int = Field(ge=0, description="Delegations naming the provider, any state.", examples=[1])
    active_sat: int = Field(ge=0, description="Satoshi of its ACTIVE delegations.", examples=[500_000])
    virtual_stake: int | None = Field(default=None, description="Virtual stake on its mesh validator.")
    missed_blocks: int | None = Field(default=None, description="Missed finality votes, when the chain reports it.")
    slashed_height: int | None = Field(default=None, description="Chain height it was slashed at.")
    double_vote_height: int | None = Field(default=None, description="Height it double-voted at (slashed ones).")
    commission: str = Field(examples=["0.05"])


class VoteAtHeight(BaseModel):
    """The provider's vote at one chain height."""

    height: int = Field(ge=1, examples=[42])
    app_hash: str | None = Field(default=None, description="App hash it signed (null: no vote at that height).")
    double_vote: bool = Field(default=False, description="It also signed another app hash at this height.")
    fork_app_hash: str | None = Field(default=None, description="The other app hash of a double vote.")


class ProviderDetail(BaseModel):
    """A provider page: its row, its delegations, its votes per height (newest first)."""

    provider: ProviderRow
    delegations: list[DelegationPublic]
    votes: list[VoteAtHeight]
    votes_from_height: int | None = Field(default=None, description="Lowest height scanned for votes.")
    votes_to_height: int | None = Field(default=None, description="Highest height scanned for votes.")
    extracted_key_known: bool = Field(default=False, description="The chain extracted its secret key (slashed).")


class DelegationRow(BaseModel):
    """One delegation in the delegations table."""

    staking_tx_hash_hex: str = Field(examples=[EXAMPLE_TX_HASH])
    staker_btc_pk_hex: str = Field(examples=[EXAMPLE_STAKER_PK])
    finality_provider_btc_pks_hex: list[str]
    staking_amount: int = Field(ge=0, examples=[1_000_000])
    state: DelegationState = Field(examples=["ACTIVE"])
    start_height: int | None = None


class TimelineStep(BaseModel):
    """One step of a delegation's life."""

    step: str = Field(description="locked | k_deep | attested | covenant_signed | active | unbonding | slashed | "
                                  "slashing_tx | withdrawn.", examples=["locked"])
    label: str = Field(examples=["Locked on Bitcoin"])
    done: bool = Field(description="Reached (false: not yet, shown greyed).")
    btc_height: int | None = Field(default=None, description="Bitcoin height of the step, when it has one.")
    chain_height: int | None = Field(
        default=None, description="Cosmos chain height of the step, when known: registration and slashing from "
        "the chain's records; covenant quorum, ACTIVE, unbonding and withdrawal from the registry's change feed "
        "as this service samples it (every 0.5 s): the exact height of a change seen while it runs; a status "
        "that lasted less than a sample is missed (null).")
    txid: str | None = Field(default=None, description="Bitcoin txid of the step, when it has one.")
    detail: str = Field(default="", examples=["2 of 3 covenant signatures (quorum 2)"])


class SlashingAmounts(BaseModel):
    """What the slashing tx did with the staked satoshi (from the registered, pre-signed slashing tx)."""

    slashing_txid: str = Field(description="The slashing tx (staking or unbonding path).")
    path: str = Field(description="slashing_tx | unbonding_slashing_tx.", examples=["slashing_tx"])
    input_sat: int = Field(ge=0, description="Value of the output the slashing tx spends.", examples=[1_000_000])
    burned_sat: int = Field(ge=0, description="Sent to the slashing pkScript.", examples=[100_000])
    returned_sat: int = Field(ge=0, description="Change back to the staker (timelocked).", examples=[898_000])
    fee_sat: int = Field(ge=0, description="Bitcoin fee of the slashing tx.", examples=[2_000])
    reported_on_chain: bool = Field(description="The mined slashing tx was proven to the registry.")
    btc_height: int | None = Field(default=None, description="BTC height that mined it, once reported.")


class DelegationDetail(BaseModel):
    """A delegation page: the API view, its timeline, slashing amounts and mesh figures."""

    delegation: DelegationPublic
    chain_status: str = Field(description="The registry's own status.", examples=["SLASHED"])
    timeline: list[TimelineStep]
    slashing: SlashingAmounts | None = None
    mesh: dict[str, str | int | None] | None = Field(
        default=None, description="The mesh adapter's record of it (collateral, virtual stake, ...), when any.")


class ValidatorInfo(BaseModel):
    """A mesh validator and the provider it stands for."""

    validator: str
    fp_btc_pk: str
    moniker: str
    state: str | None = Field(default=None, description="Validator state in the provider's external staking.")
    virtual_stake: int | None = None


class StakePoint(BaseModel):
    """Virtual stake per validator at one chain height."""

    height: int = Field(ge=0, examples=[57])
    stakes: dict[str, int] = Field(description="validator → virtual stake.")


class MeshEvent(BaseModel):
    """A slash or jail (or other state change) of a validator."""

    height: int = Field(ge=0, examples=[61])
    validator: str
    kind: str = Field(description="slashed (chain height of the slash) | double vote (its height) | jailed | "
                                  "tombstoned | unjailed | ... (validator state entered, as external staking records it).",
                      examples=["tombstoned"])


class VirtualStakeHistory(BaseModel):
    """Virtual stake per validator over chain heights, recorded by this service since it started."""

    validators: list[ValidatorInfo]
    points: list[StakePoint] = Field(description="Ascending heights; one point per height where it was sampled.")
    events: list[MeshEvent]
    recorded_since_height: int | None = Field(
        default=None, description="First height this service sampled (earlier heights are not known to it).")


class VaultAccount(BaseModel):
    """One vault account: collateral, liens and slashable amount."""

    account: str
    collateral: int = Field(ge=0)
    max_lien: str | None = Field(default=None, description="Largest lien (range as the vault reports it).")
    slashable: str | None = Field(default=None, description="Total slashable (range as the vault reports it).")
    free: str | None = None
    liens: list[dict[str, str]] = Field(default_factory=list, description="[{lienholder, amount}].")


class MeshOverview(BaseModel):
    """The mesh page's table."""

    validators: list[ValidatorInfo]
    accounts: list[VaultAccount]
