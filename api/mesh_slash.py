"""Mesh slash figures (issue 10 §2): ``GET /v2/mesh/slash?staking_tx_hash_hex=``, read-only, in OpenAPI.

When a finality provider double-signs, its mesh validator is slashed and tombstoned. Three figures
are reported apart, read from the mesh module's ``slash_report`` and ``adapter delegation`` smart
queries (same connection as the rest of the API, ``api.explorer.reader.reader_for``):

* ``virtual_slashed`` - consumer virtual stake burned on the validator by the slash;
* ``virtual_unbonded`` - what virtual stake was left there, force-unbonded by the consumer;
* ``btc_left_sat`` - what Bitcoin leaves this delegation: the slashing tx's change output (slash
  and tx fee gone), which is also its vault collateral (``collateral_sat``).

404 if the delegation never entered the mesh or its validator was not slashed; 503 without a chain.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from pydantic import BaseModel, Field

from api.errors import ERROR_RESPONSES, NOT_FOUND_RESPONSE, ApiError, NotFoundError
from api.explorer.reader import ChainReader, reader_for
from api.models import EXAMPLE_FP_PK, EXAMPLE_TX_HASH, DataResponse
from api.params import TxHashHex

MESH = "mesh"
AMOUNT = {"examples": ["900000"], "pattern": "^[0-9]+$"}


class MeshSlash(BaseModel):
    """The mesh slash of one delegation's validator, figures apart."""

    staking_tx_hash_hex: str = Field(description="Staking tx hash.", examples=[EXAMPLE_TX_HASH])
    finality_provider_pk_hex: str = Field(description="The slashed FP.", examples=[EXAMPLE_FP_PK])
    validator: str = Field(description="Its mesh validator (tombstoned).", examples=["val-alpha"])
    height: int = Field(description="Infraction height (the double-signed block).", examples=[42])
    virtual_slashed: str = Field(description="Virtual stake burned on the validator by the slash (consumer "
                                 "tokens, all its stakers).", json_schema_extra=AMOUNT)
    virtual_unbonded: str = Field(description="Virtual stake left on the tombstoned validator, force-unbonded "
                                  "by the consumer (all its stakers).", json_schema_extra=AMOUNT)
    btc_left_sat: str = Field(description="BTC this delegation keeps: the change output of its slashing tx "
                              "(slash and fee gone).", json_schema_extra=AMOUNT)
    collateral_sat: str = Field(description="Its vault collateral now (equals btc_left_sat until withdrawn).",
                                json_schema_extra=AMOUNT)
    btc_lost_sat: str = Field(description="value − btc_left: the slash output plus the slashing tx fee.",
                              json_schema_extra=AMOUNT)


class MeshSlashReader:
    """``adapter delegation`` + ``slash_report`` smart queries to the mesh module."""

    def __init__(self, reader: ChainReader | None) -> None:
        self.reader = reader

    def _query(self, msg: dict[str, Any]) -> Any:
        if self.reader is None:
            raise ApiError(503, "mesh slash figures need a chain data source")
        return self.reader.try_query(MESH, msg)

    def delegation(self, staking_tx_hash: str) -> MeshSlash:
        d = self._query({"adapter": {"delegation": {"staking_tx_hash": staking_tx_hash}}})
        if d is None:
            raise NotFoundError(f"delegation {staking_tx_hash} is not in the mesh")
        rec = d["delegation"]
        report = (self._query({"slash_report": {"validator": rec["validator"]}}) or {}).get("report")
        mine = (report or {}).get("delegations", {}).get(rec["staking_tx_hash"])
        if mine is None:
            raise NotFoundError(f"the mesh validator of delegation {staking_tx_hash} was not slashed")
        return MeshSlash(staking_tx_hash_hex=rec["staking_tx_hash"], finality_provider_pk_hex=report["fp_btc_pk"],
                         validator=report["validator"], height=int(report["height"]),
                         virtual_slashed=str(report.get("virtual_slashed") or 0),
                         virtual_unbonded=str(report.get("virtual_unbonded") or 0),
                         btc_left_sat=str(mine["btc_left"]), collateral_sat=str(rec["collateral_sat"]),
                         btc_lost_sat=str(int(rec["value_sat"]) - int(mine["btc_left"])))


router = APIRouter(prefix="/v2/mesh", tags=["mesh"], responses=ERROR_RESPONSES)


@router.get("/slash", summary="Mesh slash of a delegation's validator",
            description="Virtual stake slashed, virtual stake force-unbonded from the tombstoned validator, and "
            "the BTC the delegation keeps (its slashing tx's change output = its vault collateral), apart. 404 if "
            "the delegation is not in the mesh or its validator was not slashed.",
            response_model=DataResponse[MeshSlash], responses=NOT_FOUND_RESPONSE)
def mesh_slash(request: Request, staking_tx_hash_hex: Annotated[TxHashHex, Query(
        description="Staking tx hash, 64 hex.", examples=[EXAMPLE_TX_HASH])]) -> DataResponse[MeshSlash]:
    """One delegation's slash figures."""
    return DataResponse(data=request.app.state.mesh_slash.delegation(staking_tx_hash_hex))


def install_mesh_slash(app: FastAPI, source: Any, reader: ChainReader | None = None) -> MeshSlashReader:
    """Add ``/v2/mesh/slash`` to ``app`` (the API's app over ``source``)."""
    slash = MeshSlashReader(reader if reader is not None else reader_for(source))
    app.state.mesh_slash = slash
    app.include_router(router)
    return slash
