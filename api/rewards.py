"""Rewards routes (issue 15): ``/v2/rewards/...``, read-only, in OpenAPI.

Consumer-chain rewards reach BTC delegations through the mesh module (``docs/MESH_MAPPING.md``,
"Rewards"); these routes read its ``rewards`` smart query over the same connection as the rest of
the API (``api.explorer.reader.reader_for``). A source without a chain (``InMemorySource``) answers
503. Amounts are integer strings of the consumer's staking denom (``denom``).

* ``GET /v2/rewards/delegation?staking_tx_hash_hex=`` — pending and claimed of one delegation;
* ``GET /v2/rewards/staker?staker_pk_hex=`` — a staker's delegations and their sums;
* ``GET /v2/rewards/finality-provider?fp_pk_hex=`` — the provider's commission (rate, recipient, paid);
* ``GET /v2/rewards/totals`` — per validator and overall, with the reconciliation
  ``paid_by_consumer = claimed + pending + commission + undistributed + carried``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from pydantic import BaseModel, Field

from api.errors import ERROR_RESPONSES, NOT_FOUND_RESPONSE, ApiError, NotFoundError
from api.explorer.reader import ChainReader, reader_for
from api.models import EXAMPLE_FP_PK, EXAMPLE_STAKER_PK, EXAMPLE_TX_HASH, DataResponse
from api.params import BtcPkHex, TxHashHex

MESH = "mesh"
AMOUNT = {"examples": ["12345"], "pattern": "^[0-9]+$"}


class DelegationRewards(BaseModel):
    """Rewards of one BTC delegation (its mesh vault account on its FP's validator)."""

    staking_tx_hash_hex: str = Field(description="Staking tx hash.", examples=[EXAMPLE_TX_HASH])
    staker_pk_hex: str = Field(description="Staker x-only key.", examples=[EXAMPLE_STAKER_PK])
    finality_provider_pk_hex: str = Field(description="The FP the stake backs.", examples=[EXAMPLE_FP_PK])
    validator: str = Field(description="The FP's mesh validator on the consumer.", examples=["val-alpha"])
    mesh_status: str = Field(description="Mesh status (ACTIVE, WAITING, UNBONDING, SLASHED, WITHDRAWING, "
                                         "WITHDRAWN).",
                             examples=["ACTIVE"])
    reward_address: str | None = Field(description="Cosmos address the staker's proof of possession bound: "
                                       "the only address claims pay to.", examples=["bbn1..."])
    pending: str = Field(description="Earned, not yet claimed.", json_schema_extra=AMOUNT)
    claimed: str = Field(description="Claimed so far.", json_schema_extra=AMOUNT)
    denom: str = Field(description="Reward denom (the consumer's staking denom).", examples=["ustake"])


class StakerRewards(BaseModel):
    """All delegations of one staker key."""

    staker_pk_hex: str = Field(examples=[EXAMPLE_STAKER_PK])
    pending: str = Field(description="Sum of pending.", json_schema_extra=AMOUNT)
    claimed: str = Field(description="Sum of claimed.", json_schema_extra=AMOUNT)
    denom: str = Field(examples=["ustake"])
    delegations: list[DelegationRewards]


class ValidatorRewards(BaseModel):
    """What one mesh validator's stakers received from the consumer, and where it went."""

    validator: str = Field(examples=["val-alpha"])
    finality_provider_pk_hex: str | None = Field(description="The FP mapped to it.", examples=[EXAMPLE_FP_PK])
    distributed: str = Field(description="Received from the consumer for this validator.", json_schema_extra=AMOUNT)
    commission: str = Field(description="Paid to the FP.", json_schema_extra=AMOUNT)
    commission_rate: str = Field(description="FP commission rate (set at registration).", examples=["0.05"])
    commission_recipient: str | None = Field(description="The FP's address.", examples=["bbn1..."])
    claimed: str = Field(json_schema_extra=AMOUNT)
    pending: str = Field(json_schema_extra=AMOUNT)
    undistributed: str = Field(description="Arrived while no stake was on the validator.", json_schema_extra=AMOUNT)
    carried: str = Field(description="Sub-unit remainders of the points-per-stake split (upstream alignment), "
                         "not yet a whole unit for anyone.", json_schema_extra=AMOUNT)


class FinalityProviderCommission(ValidatorRewards):
    """One FP's commission."""

    denom: str = Field(examples=["ustake"])


class RewardTotals(BaseModel):
    """Everything the consumer paid into the mesh, and where every unit is."""

    paid_by_consumer: str = Field(json_schema_extra=AMOUNT)
    claimed: str = Field(json_schema_extra=AMOUNT)
    pending: str = Field(json_schema_extra=AMOUNT)
    commission: str = Field(json_schema_extra=AMOUNT)
    undistributed: str = Field(json_schema_extra=AMOUNT)
    carried: str = Field(json_schema_extra=AMOUNT)
    balanced: bool = Field(description="paid_by_consumer = claimed + pending + commission + undistributed + "
                           "carried, to the unit.")
    block_reward: str = Field(description="The consumer's block reward (per block).", json_schema_extra=AMOUNT)
    denom: str = Field(examples=["ustake"])
    consumer: dict[str, Any] = Field(description="The consumer's own split: minted, fees, to native validators, "
                                     "to the virtual-staking delegations, community pool.")
    validators: list[ValidatorRewards]


class RewardsReader:
    """``rewards`` smart queries to the mesh module."""

    def __init__(self, reader: ChainReader | None) -> None:
        self.reader = reader

    def _query(self, msg: dict[str, Any], missing: str) -> Any:
        if self.reader is None:
            raise ApiError(503, "rewards need a chain data source")
        out = self.reader.try_query(MESH, {"rewards": msg})
        if out is None:
            raise NotFoundError(missing)
        return out

    def delegation(self, staking_tx_hash: str) -> DelegationRewards:
        d = self._query({"delegation": {"staking_tx_hash": staking_tx_hash}},
                        f"no mesh rewards record for delegation {staking_tx_hash}")
        return _delegation(d)

    def staker(self, staker_pk: str) -> StakerRewards:
        d = self._query({"staker": {"staker_btc_pk": staker_pk}}, f"no rewards for staker {staker_pk}")
        return StakerRewards(staker_pk_hex=staker_pk, pending=d["pending"], claimed=d["claimed"], denom=d["denom"],
                             delegations=[_delegation(x) for x in d["delegations"]])

    def finality_provider(self, fp_pk: str) -> FinalityProviderCommission:
        d = self._query({"finality_provider": {"fp_btc_pk": fp_pk}},
                        f"finality provider {fp_pk} has no mesh validator")
        return FinalityProviderCommission(**_validator(d), denom=d["denom"])

    def totals(self) -> RewardTotals:
        d = self._query({"totals": {}}, "the chain reports no rewards")
        t = d["totals"]
        return RewardTotals(**{k: str(t[k]) for k in ("paid_by_consumer", "claimed", "pending", "commission",
                                                      "undistributed", "carried")},
                            balanced=bool(t["balanced"]), block_reward=d["block_reward"], denom=d["denom"],
                            consumer=d["consumer"], validators=[ValidatorRewards(**_validator(v))
                                                                for v in d["validators"]])


def _delegation(d: dict[str, Any]) -> DelegationRewards:
    return DelegationRewards(staking_tx_hash_hex=d["staking_tx_hash"], staker_pk_hex=d["staker_btc_pk"],
                             finality_provider_pk_hex=d["fp_btc_pk"], validator=d["validator"],
                             mesh_status=d["status"], reward_address=d.get("reward_address"),
                             pending=d["pending"], claimed=d["claimed"], denom=d["denom"])


def _validator(d: dict[str, Any]) -> dict[str, Any]:
    keys = ("validator", "distributed", "commission", "commission_rate", "commission_recipient", "claimed",
            "pending", "undistributed", "carried")
    return {"finality_provider_pk_hex": d.get("fp_btc_pk"), **{k: d.get(k) for k in keys}}


def _rewards(request: Request) -> RewardsReader:
    return request.app.state.rewards


router = APIRouter(prefix="/v2/rewards", tags=["rewards"], responses=ERROR_RESPONSES)


@router.get("/delegation", summary="Rewards of a delegation",
            description="Pending and claimed consumer rewards of one BTC delegation. 404 if the delegation never "
            "entered the mesh.", response_model=DataResponse[DelegationRewards], responses=NOT_FOUND_RESPONSE)
def delegation_rewards(request: Request, staking_tx_hash_hex: Annotated[TxHashHex, Query(
        description="Staking tx hash, 64 hex.", examples=[EXAMPLE_TX_HASH])]) -> DataResponse[DelegationRewards]:
    """One delegation."""
    return DataResponse(data=_rewards(request).delegation(staking_tx_hash_hex))


@router.get("/staker", summary="Rewards of a staker",
            description="Every mesh delegation of one staker key with pending and claimed rewards, and their sums "
            "(zeros and an empty list for a staker without mesh delegations).",
            response_model=DataResponse[StakerRewards])
def staker_rewards(request: Request, staker_pk_hex: Annotated[BtcPkHex, Query(
        description="Staker BTC key (x-only or compressed).", examples=[EXAMPLE_STAKER_PK])]) \
        -> DataResponse[StakerRewards]:
    """One staker."""
    return DataResponse(data=_rewards(request).staker(staker_pk_hex))


@router.get("/finality-provider", summary="A finality provider's commission",
            description="The FP's commission rate (set at registration, within the chain's bounds), its recipient "
            "and the commission paid so far, with its validator's reward totals. 404 if it has no mesh validator.",
            response_model=DataResponse[FinalityProviderCommission], responses=NOT_FOUND_RESPONSE)
def fp_commission(request: Request, fp_pk_hex: Annotated[BtcPkHex, Query(
        description="Finality provider x-only key.", examples=[EXAMPLE_FP_PK])]) \
        -> DataResponse[FinalityProviderCommission]:
    """One FP's commission."""
    return DataResponse(data=_rewards(request).finality_provider(fp_pk_hex))


@router.get("/totals", summary="Reward totals and reconciliation",
            description="Totals distributed per validator and overall, with the reconciliation line "
            "paid_by_consumer = claimed + pending + commission + undistributed + carried.",
            response_model=DataResponse[RewardTotals])
def reward_totals(request: Request) -> DataResponse[RewardTotals]:
    """Totals."""
    return DataResponse(data=_rewards(request).totals())


def install_rewards(app: FastAPI, source: Any, reader: ChainReader | None = None) -> RewardsReader:
    """Add the ``/v2/rewards`` routes to ``app`` (the API's app over ``source``)."""
    rewards = RewardsReader(reader if reader is not None else reader_for(source))
    app.state.rewards = rewards
    app.include_router(router)
    return rewards
