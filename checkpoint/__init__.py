"""Checkpoint service: follows Bitcoin, relays headers and attests k-deep BTC staking locks.

Public API: :class:`CheckpointService` (``run_once``, ``run_forever``,
``register_intent``), :func:`build_service` / :func:`run` (configured from a chain's
REST URL, see :mod:`checkpoint.runner`), :class:`ChainClient` / :class:`ChainContracts`,
:class:`CheckpointStore` and the typed errors in :mod:`checkpoint.errors`.
"""

from checkpoint.chain_client import ChainClient, ChainContracts
from checkpoint.errors import ChainError, CheckpointError, InvalidInputError, ReorgTooDeepError, StoreError
from checkpoint.runner import build_service, light_client_genesis, run
from checkpoint.service import CheckpointService, RunReport
from checkpoint.store import CheckpointStore

__all__ = [
    "ChainClient", "ChainContracts", "ChainError", "CheckpointError", "CheckpointService", "CheckpointStore",
    "InvalidInputError", "ReorgTooDeepError", "RunReport", "StoreError", "build_service", "light_client_genesis",
    "run",
]
