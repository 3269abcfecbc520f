"""FastAPI dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.service import StakingService


def get_service(request: Request) -> StakingService:
    """The ``StakingService`` that ``create_app`` stored on the app."""
    return request.app.state.staking_service


ServiceDep = Annotated[StakingService, Depends(get_service)]
