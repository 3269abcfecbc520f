"""``/v2`` staking-status routes (Babylon staking-api-service v2 shapes)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import ServiceDep
from api.errors import ERROR_RESPONSES, NOT_FOUND_RESPONSE
from api.models import (
    EXAMPLE_STAKER_PK,
    EXAMPLE_TX_HASH,
    DataResponse,
    DelegationPublic,
    FinalityProviderPublic,
    NetworkInfoPublic,
    OverallStatsPublic,
    Pagination,
    PaginatedResponse,
    ParamsPublic,
    StakerStatsPublic,
)
from api.params import BtcPkHex, PaginationKey, StateFilter, TxHashHex
from api.states import DelegationState

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20

router = APIRouter(prefix="/v2", responses=ERROR_RESPONSES)

StakingTxHashQuery = Annotated[
    TxHashHex,
    Query(
        description="Staking transaction hash (txid), 64 hex characters, display byte order.",
        examples=[EXAMPLE_TX_HASH],
        json_schema_extra={"pattern": "^[0-9a-fA-F]{64}$"},
    ),
]
StakerPkQuery = Annotated[
    BtcPkHex,
    Query(
        description="Staker BTC public key: 64-hex x-only (BIP-340) or 66-hex compressed (02/03 prefix).",
        examples=[EXAMPLE_STAKER_PK],
        json_schema_extra={"pattern": "^(0[23])?[0-9a-fA-F]{64}$"},
    ),
]


@router.get(
    "/delegation",
    tags=["delegations"],
    summary="Get a delegation",
    description="Retrieves one BTC delegation by its staking transaction hash, with its state derived "
    "from the chain's registry and the BTC light-client tip.",
    response_model=DataResponse[DelegationPublic],
    responses=NOT_FOUND_RESPONSE,
)
def get_delegation(service: ServiceDep, staking_tx_hash_hex: StakingTxHashQuery) -> DataResponse[DelegationPublic]:
    """Delegation by staking tx hash."""
    return DataResponse(data=service.get_delegation(staking_tx_hash_hex))


@router.get(
    "/delegations",
    tags=["delegations"],
    summary="List a staker's delegations",
    description="Lists the delegations of one staker, ordered by staking tx hash, one page at a time. "
    "Pass `pagination.next_key` back as `pagination_key` for the next page; an empty `next_key` marks "
    "the last page. Optionally keep only some states (repeat `state` for several).",
    response_model=PaginatedResponse[list[DelegationPublic]],
)
def list_delegations(
    service: ServiceDep,
    staker_pk_hex: StakerPkQuery,
    pagination_key: Annotated[
        PaginationKey,
        Query(description="Opaque cursor from a previous reply's `pagination.next_key`; omit for the first page."),
    ] = "",
    state: Annotated[
        list[StateFilter] | None,
        Query(description="Only delegations in these states (case-insensitive; repeatable).", examples=[["ACTIVE"]]),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"Page size, 1..{MAX_PAGE_SIZE}.", examples=[DEFAULT_PAGE_SIZE])
    ] = DEFAULT_PAGE_SIZE,
) -> PaginatedResponse[list[DelegationPublic]]:
    """Paginated delegations of one staker."""
    states: list[DelegationState] | None = list(state) if state else None
    page = service.list_delegations(staker_pk_hex, after=pagination_key, states=states, limit=limit)
    return PaginatedResponse(data=page.items, pagination=Pagination(next_key=page.next_key))


@router.get(
    "/finality-providers",
    tags=["finality providers"],
    summary="List finality providers",
    description="All registered finality providers with their active TVL (sum of ACTIVE delegations, "
    "satoshi) and active delegation count, largest TVL first.",
    response_model=DataResponse[list[FinalityProviderPublic]],
)
def list_finality_providers(service: ServiceDep) -> DataResponse[list[FinalityProviderPublic]]:
    """Finality providers with active TVL."""
    return DataResponse(data=service.finality_providers())


@router.get(
    "/stats",
    tags=["stats"],
    summary="Overall staking stats",
    description="Network-wide totals. Only ACTIVE delegations count towards TVL.",
    response_model=DataResponse[OverallStatsPublic],
)
def overall_stats(service: ServiceDep) -> DataResponse[OverallStatsPublic]:
    """Overall stats."""
    return DataResponse(data=service.overall_stats())


@router.get(
    "/staker/stats",
    tags=["stats"],
    summary="Staker stats",
    description="One staker's stake bucketed by state: active, unbonding, withdrawable, slashed "
    "(satoshi and counts). A staker with no delegations gets all zeros.",
    response_model=DataResponse[StakerStatsPublic],
)
def staker_stats(service: ServiceDep, staker_pk_hex: StakerPkQuery) -> DataResponse[StakerStatsPublic]:
    """Per-staker stats."""
    return DataResponse(data=service.staker_stats(staker_pk_hex))


@router.get(
    "/network-info",
    tags=["network"],
    summary="Network info",
    description="Staking parameters (every version) and whether staking is open at the BTC tip.",
    response_model=DataResponse[NetworkInfoPublic],
)
def network_info(service: ServiceDep) -> DataResponse[NetworkInfoPublic]:
    """Network params and status."""
    return DataResponse(data=service.network_info())


@router.get(
    "/params",
    tags=["network"],
    summary="Staking parameters",
    description="Every version of the BTC staking (`bbn`) and checkpointing (`btc`) parameters, ascending.",
    response_model=DataResponse[ParamsPublic],
)
def params(service: ServiceDep) -> DataResponse[ParamsPublic]:
    """Staking params."""
    return DataResponse(data=service.params())
