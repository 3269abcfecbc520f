"""FastAPI staking-status service modelled on Babylon's staking-api-service v2.

``create_app(source)`` builds the app over any ``StakingDataSource``;
``serve(source, port)`` runs it on 127.0.0.1. Over a running chain, use ``api.server``:
``serve(chain_rest_url, port=...)`` (what ``btcmesh api`` runs) or ``app_for_chain(ledger_client)``.
"""

from api.app import HOST, BackgroundServer, create_app, serve
from api.source import (
    DataSourceError,
    DelegationRecord,
    FinalityProviderRecord,
    ParamsRecord,
    StakingDataSource,
)
from api.states import ALLOWED_TRANSITIONS, DelegationState, derive_state

__all__ = [
    "ALLOWED_TRANSITIONS",
    "HOST",
    "BackgroundServer",
    "DataSourceError",
    "DelegationRecord",
    "DelegationState",
    "FinalityProviderRecord",
    "ParamsRecord",
    "StakingDataSource",
    "create_app",
    "derive_state",
    "serve",
]
