"""``/healthcheck``."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ServiceDep
from api.errors import ERROR_RESPONSES
from api.models import DataResponse, HealthPublic

router = APIRouter(tags=["health"])


@router.get(
    "/healthcheck",
    summary="Health check",
    description="200 when the service is up and the chain answers (reports its BTC tip); 503 otherwise.",
    response_model=DataResponse[HealthPublic],
    responses={503: ERROR_RESPONSES[503]},
)
def healthcheck(service: ServiceDep) -> DataResponse[HealthPublic]:
    """Liveness and chain reachability."""
    return DataResponse(data=HealthPublic(status="ok", btc_tip_height=service.source.btc_tip_height()))
