"""The explorer's routes: read-only JSON under ``/v2/explorer`` (in OpenAPI) and the HTML pages.

Pages (``/explorer``, ``/explorer/providers``, ``/explorer/providers/{btc_pk}``,
``/explorer/delegations``, ``/explorer/delegations/{staking_tx_hash}``, ``/explorer/mesh``) are one
small HTML shell each; ``static/explorer/explorer.js`` fills them from the JSON routes and polls every
few seconds. Assets, uPlot included, are served from ``/explorer/assets`` (no internet needed).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Path as PathParam, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from api.errors import ERROR_RESPONSES, NOT_FOUND_RESPONSE
from api.explorer.data import DEFAULT_VOTE_HEIGHTS, MAX_VOTE_HEIGHTS, ExplorerService
from api.explorer.models import (
    DelegationDetail,
    DelegationRow,
    MeshOverview,
    OverviewPublic,
    ProviderDetail,
    ProviderRow,
    VirtualStakeHistory,
)
from api.models import EXAMPLE_FP_PK, EXAMPLE_TX_HASH, DataResponse
from api.params import BtcPkHex, StateFilter, TxHashHex

STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "explorer"
ASSETS_PATH = "/explorer/assets"
UPLOT_VERSION = "1.6.32"


def get_explorer(request: Request) -> ExplorerService:
    """The ``ExplorerService`` ``install_explorer`` stored on the app."""
    return request.app.state.explorer


ExplorerDep = Annotated[ExplorerService, Depends(get_explorer)]

router = APIRouter(prefix="/v2/explorer", tags=["explorer"], responses=ERROR_RESPONSES)


@router.get("/overview", summary="Explorer overview",
            description="BTC tip and light-client tip, chain height and last finalized height, TVL by state, "
            "stakers, delegations and total virtual stake. Figures the chain does not report are null.",
            response_model=DataResponse[OverviewPublic])
def overview(explorer: ExplorerDep) -> DataResponse[OverviewPublic]:
    """Overview numbers."""
    return DataResponse(data=explorer.overview())


@router.get("/finality-providers", summary="Finality providers table",
            description="Every provider with its mesh validator, state, voting power, delegations, active "
            "satoshi, virtual stake and missed blocks (null where the chain does not report them).",
            response_model=DataResponse[list[ProviderRow]])
def providers(explorer: ExplorerDep) -> DataResponse[list[ProviderRow]]:
    """Providers table."""
    return DataResponse(data=explorer.providers())


@router.get("/finality-providers/{btc_pk}", summary="A finality provider with its votes per height",
            description="The provider's row, its delegations and its finality votes per chain height, newest "
            "first, with double votes marked. Votes are scanned over the newest `limit` heights it committed "
            "public randomness for (below `before_height` when given); heights with double-vote evidence are "
            "always included.",
            response_model=DataResponse[ProviderDetail], responses=NOT_FOUND_RESPONSE)
def provider(
    explorer: ExplorerDep,
    btc_pk: Annotated[BtcPkHex, PathParam(description="Provider x-only key, 64 hex.", examples=[EXAMPLE_FP_PK])],
    before_height: Annotated[int | None, Query(ge=1, description="Only heights below this one (paging).")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_VOTE_HEIGHTS, description="Heights to scan.")] = DEFAULT_VOTE_HEIGHTS,
) -> DataResponse[ProviderDetail]:
    """Provider page data."""
    return DataResponse(data=explorer.provider(btc_pk, before_height, limit))


@router.get("/delegations", summary="All delegations, filtered",
            description="Every delegation (newest BTC height first), optionally only some states (repeat "
            "`state`) and only those whose staker key or staking tx hash equals `search`.",
            response_model=DataResponse[list[DelegationRow]])
def delegations(
    explorer: ExplorerDep,
    state: Annotated[list[StateFilter] | None, Query(description="States to keep (repeatable).")] = None,
    search: Annotated[str, Query(max_length=66, description="Staker key (x-only or compressed) or staking tx hash.")]
    = "",
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many rows.")] = 200,
) -> DataResponse[list[DelegationRow]]:
    """Delegations table."""
    return DataResponse(data=explorer.delegations(state, search, limit))


@router.get("/delegations/{staking_tx_hash}", summary="A delegation with its timeline",
            description="The delegation (as `/v2/delegation`), its timeline (locked, k-deep, attested, "
            "covenant-signed, ACTIVE, unbonding or slashed, withdrawn: heights and tx ids), for a slashed one "
            "the burned, returned and fee amounts of its slashing tx, and its mesh record.",
            response_model=DataResponse[DelegationDetail], responses=NOT_FOUND_RESPONSE)
def delegation(
    explorer: ExplorerDep,
    staking_tx_hash: Annotated[TxHashHex, PathParam(description="Staking txid, 64 hex.", examples=[EXAMPLE_TX_HASH])],
) -> DataResponse[DelegationDetail]:
    """Delegation page data."""
    return DataResponse(data=explorer.delegation(staking_tx_hash))


@router.get("/mesh/virtual-stake-history", summary="Virtual stake per validator over chain heights",
            description="Virtual stake on each provider's mesh validator, sampled by this service at each new "
            "chain height since it started (`recorded_since_height`), with slash and jail events.",
            response_model=DataResponse[VirtualStakeHistory])
def virtual_stake_history(explorer: ExplorerDep) -> DataResponse[VirtualStakeHistory]:
    """Chart data."""
    return DataResponse(data=explorer.history())


@router.get("/mesh", summary="Mesh validators and vault accounts",
            description="Each validator's state and virtual stake; each vault account's collateral, liens and "
            "slashable amount.", response_model=DataResponse[MeshOverview])
def mesh(explorer: ExplorerDep) -> DataResponse[MeshOverview]:
    """Mesh page table."""
    return DataResponse(data=explorer.mesh())


# ---------------------------------------------------------------------------------------- pages
pages = APIRouter(include_in_schema=False)

TITLES = {"overview": "Overview", "providers": "Finality providers", "provider": "Finality provider",
          "delegations": "Delegations", "delegation": "Delegation", "mesh": "Mesh"}


LOGO_SVG = (
    '<svg class="logo" viewBox="0 0 26 26" aria-hidden="true"><circle cx="13" cy="13" r="13" fill="#f7931a"/>'
    '<path d="M8 8.5 18 8.5M8 17.5 18 17.5M8 8.5 13 13 8 17.5M18 8.5 13 13 18 17.5" stroke="#111" '
    'stroke-width="1.8" fill="none" stroke-linecap="round"/><circle cx="13" cy="13" r="2.4" fill="#111"/></svg>'
)


def page_html(page: str, arg: str = "") -> str:
    """The HTML shell of one page (filled by explorer.js)."""
    nav = "".join(
        f'<a href="/explorer{href}" class="{"on" if page.startswith(key) else ""}">{label}</a>'
        for key, href, label in (("overview", "", "Overview"), ("provider", "/providers", "Providers"),
                                 ("delegation", "/delegations", "Delegations"), ("mesh", "/mesh", "Mesh")))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{TITLES[page]} · btcmesh explorer</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{ASSETS_PATH}/vendor/uplot/uPlot.min.css">
<link rel="stylesheet" href="{ASSETS_PATH}/explorer.css">
</head><body data-page="{page}" data-arg="{html.escape(arg, quote=True)}">
<header><a class="brand" href="/explorer">{LOGO_SVG}btcmesh explorer</a><nav>{nav}</nav>
<span id="live" class="live" title="refreshes every few seconds">live</span></header>
<div id="banner" class="banner" hidden></div>
<main id="app"><p class="muted">Loading…</p></main>
<footer>Read-only view of the btcmesh chain · <a href="/openapi.json">OpenAPI</a></footer>
<script src="{ASSETS_PATH}/vendor/uplot/uPlot.iife.min.js"></script>
<script src="{ASSETS_PATH}/explorer.js"></script>
</body></html>"""


def _page(page: str, arg: str = "") -> HTMLResponse:
    return HTMLResponse(page_html(page, arg), headers={"Cache-Control": "no-store"})


@pages.get("/explorer", response_class=HTMLResponse)
def overview_page() -> HTMLResponse:
    return _page("overview")


@pages.get("/explorer/providers", response_class=HTMLResponse)
def providers_page() -> HTMLResponse:
    return _page("providers")


@pages.get("/explorer/providers/{btc_pk}", response_class=HTMLResponse)
def provider_page(btc_pk: str) -> HTMLResponse:
    return _page("provider", btc_pk)


@pages.get("/explorer/delegations", response_class=HTMLResponse)
def delegations_page() -> HTMLResponse:
    return _page("delegations")


@pages.get("/explorer/delegations/{staking_tx_hash}", response_class=HTMLResponse)
def delegation_page(staking_tx_hash: str) -> HTMLResponse:
    return _page("delegation", staking_tx_hash)


@pages.get("/explorer/mesh", response_class=HTMLResponse)
def mesh_page() -> HTMLResponse:
    return _page("mesh")


@pages.get("/explorer/", response_class=RedirectResponse)
def explorer_slash() -> RedirectResponse:
    return RedirectResponse("/explorer")
