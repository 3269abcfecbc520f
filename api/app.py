"""``create_app`` builds the FastAPI app over a ``StakingDataSource``; ``serve`` runs it on 127.0.0.1."""

from __future__ import annotations

import os
import threading
import time
from typing import Sequence

import uvicorn
from fastapi import FastAPI
from starlette.middleware.trustedhost import TrustedHostMiddleware

from api.docs import install_docs
from api.errors import install_error_handlers
from api.explorer import install_explorer
from api.mesh_slash import install_mesh_slash
from api.rewards import install_rewards
from api.routers import health, v2
from api.service import StakingService
from api.source import StakingDataSource
from api.states import ALLOWED_TRANSITIONS

HOST = "127.0.0.1"
"""The only interface the service ever binds."""

DEFAULT_TRUSTED_HOSTS = ("127.0.0.1", "localhost")
"""Host headers a served API answers (DNS-rebinding guard); add names with ``trusted_hosts=`` or the
comma-separated ``BTCMESH_API_TRUSTED_HOSTS`` environment variable."""


def trusted_hosts(extra: Sequence[str] = ()) -> list[str]:
    """127.0.0.1, localhost, ``extra`` and the names in ``BTCMESH_API_TRUSTED_HOSTS``."""
    env = [h.strip() for h in os.environ.get("BTCMESH_API_TRUSTED_HOSTS", "").split(",") if h.strip()]
    out: list[str] = []
    for h in (*DEFAULT_TRUSTED_HOSTS, *extra, *env):
        if h not in out:
            out.append(h)
    return out


def guard_hosts(app: FastAPI, extra: Sequence[str] = ()) -> FastAPI:
    """Answer 400 to a request whose Host header is not trusted (Starlette's TrustedHostMiddleware).

    Every server that puts the API on a socket (``serve``, :class:`BackgroundServer`,
    ``api.server.serve``) applies it, so a web page on another origin cannot reach the API through a
    rebound DNS name. In-process ASGI use (tests' ``TestClient``) is left as built."""
    if not getattr(app.state, "trusted_hosts", None):
        app.state.trusted_hosts = trusted_hosts(extra)
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=app.state.trusted_hosts)
    return app


def _state_machine_doc() -> str:
    lines = [f"* `{s.value}` → {', '.join(f'`{n.value}`' for n in sorted(nxt, key=lambda x: x.value)) or '(terminal)'}"
             for s, nxt in ALLOWED_TRANSITIONS.items()]
    return "\n".join(lines)


DESCRIPTION = f"""
Staking-status queries for btcmesh's Babylon-style BTC staking registry, modelled on
Babylon's **staking-api-service v2**.

Replies are enveloped as `{{"data": ...}}`; list endpoints add `{{"pagination": {{"next_key": ...}}}}`.
Errors are `{{"errorCode": "BAD_REQUEST" | "NOT_FOUND" | ..., "message": "..."}}`.

### Delegation states
Derived from the chain's registry and its BTC light-client tip:

{_state_machine_doc()}

An early-unbonding tx observed on BTC makes an ACTIVE delegation `UNBONDING`; it becomes
`WITHDRAWABLE` once the unbonding timelock has passed at the BTC tip. A delegation with
fewer than `unbonding_time` blocks of staking timelock left is `UNBONDING` (sub-state
`TIMELOCK`) and `WITHDRAWABLE` once the staking timelock passes. A timelock of `T` blocks on an
output confirmed at height `h` has passed when `tip + 1 >= h + T` (BIP-68). A withdrawal spend
makes it `WITHDRAWN`; a slashed finality provider makes its delegations `SLASHED`.

| registry status | API state |
|---|---|
| `PENDING` | `PENDING` |
| `VERIFIED` | `VERIFIED` |
| `ACTIVE` | `ACTIVE` (or `UNBONDING`/`WITHDRAWABLE` once the tip passed the thresholds above) |
| `EXPIRED` (tip ≥ end − unbonding time) | `UNBONDING` (`TIMELOCK`), then `WITHDRAWABLE` once the staking timelock passed |
| `UNBONDING` (unbonding tx proven) | `UNBONDING` (`EARLY_UNBONDING`), then `WITHDRAWABLE` once the unbonding timelock passed |
| `WITHDRAWN` | `WITHDRAWN` |
| `SLASHED` | `SLASHED` (a delegation without covenant quorum stays `PENDING`: nothing of it can be slashed on BTC) |
| `REORGED` (a BTC reorg deeper than k took its staking tx's block off the main chain) | `REORGED` (no stake counts until the tx is k deep and proven again) |

`/healthcheck` answers 503 with the reason when the chain cannot be reached.
"""

TAGS = [
    {"name": "delegations", "description": "BTC delegations and their states."},
    {"name": "finality providers", "description": "Finality providers and the stake they carry."},
    {"name": "stats", "description": "Aggregate statistics (TVL counts only ACTIVE stake)."},
    {"name": "network", "description": "Staking parameters and network status."},
    {"name": "health", "description": "Service health."},
    {"name": "explorer", "description": "Read-only data of the web explorer (`/explorer`)."},
    {"name": "rewards", "description": "Consumer-chain rewards of BTC delegations and finality-provider commission."},
    {"name": "mesh", "description": "Mesh slash figures of a delegation: virtual stake slashed / unbonded, BTC left."},
]


def create_app(source: StakingDataSource) -> FastAPI:
    """Build the staking-status API over ``source``."""
    app = FastAPI(
        title="btcmesh staking API",
        version="2.0.0",
        summary="BTC staking status for btcmesh (Babylon staking-api-service v2 compatible).",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        docs_url=None,  # install_docs: Swagger UI with its assets served locally, not from a CDN
        redoc_url=None,  # FastAPI's ReDoc page loads its script from a CDN: /docs is the local one
    )
    install_docs(app)
    app.state.staking_service = StakingService(source)
    install_error_handlers(app)
    app.include_router(v2.router)
    app.include_router(health.router)
    install_explorer(app, getattr(source, "upstream", None) or source)  # an index's chain source for chain-only data
    if callable(getattr(source, "index_lag", None)):
        from api.index import install_index_metrics

        install_index_metrics(app, source)
    install_rewards(app, source)
    install_mesh_slash(app, source)
    return app


def serve(source: StakingDataSource, port: int = 8090, log_level: str = "info") -> None:
    """Serve the API on ``127.0.0.1:port`` until interrupted (blocking; for the CLI)."""
    uvicorn.run(guard_hosts(create_app(source)), host=HOST, port=port, log_level=log_level)


class BackgroundServer:
    """The API (over a data source, or an app already built) served on 127.0.0.1 from a daemon thread."""

    def __init__(self, source: StakingDataSource | FastAPI, port: int = 0, log_level: str = "warning",
                 *, extra_hosts: Sequence[str] = ()) -> None:
        app = guard_hosts(source if isinstance(source, FastAPI) else create_app(source), extra_hosts)
        config = uvicorn.Config(app, host=HOST, port=port, log_level=log_level)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="btcmesh-api", daemon=True)

    def start(self, timeout: float = 10.0) -> "BackgroundServer":
        """Start serving; return once the socket is bound (bounded wait)."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise RuntimeError("API server did not start")
            time.sleep(0.02)
        return self

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return self._server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8090``."""
        return f"http://{HOST}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to exit and wait for it (bounded)."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
