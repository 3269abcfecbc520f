"""Serve the staking API over a running btcmesh chain (what ``btcmesh api`` runs).

Example::

    from api.server import serve
    serve("http://127.0.0.1:1317", port=8000)      # blocks; Ctrl-C to stop

    # or, in-process, over a cosmpy LedgerClient:
    app = app_for_chain(chain.ledger_client())

The registry and light-client addresses default to the chain's built-in module
addresses, ``module_address("btc_staking")`` / ``module_address("btc_light_client")``.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from typing import Any, Callable, Sequence
from urllib.parse import quote, urlsplit

import httpx
import uvicorn
from fastapi import FastAPI

from api.app import create_app, guard_hosts
from api.chain_source import LedgerClientSource, RegistrySource
from api.source import DataSourceError
from cosmos_chain.modules.base import DEFAULT_PREFIX, module_address

REGISTRY_MODULE = "btc_staking"
LIGHT_CLIENT_MODULE = "btc_light_client"
DEFAULT_TIMEOUT = 5.0


class ChainUnreachableError(DataSourceError):
    """The chain's REST endpoint did not answer (connection refused, timeout)."""


class ContractQueryError(DataSourceError):
    """The chain answered a smart query with an error (``status`` = HTTP status, ``message`` = chain's reason)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def default_addresses(prefix: str = DEFAULT_PREFIX) -> tuple[str, str]:
    """``(registry_address, light_client_address)``: the chain's built-in module addresses."""
    return module_address(REGISTRY_MODULE, prefix), module_address(LIGHT_CLIENT_MODULE, prefix)


def normalize_rest_url(url: str) -> str:
    """``rest+http://h:p/`` or ``http://h:p`` -> ``http://h:p`` (ValueError on anything else)."""
    base = url.strip().removeprefix("rest+").rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"chain REST url must look like http://127.0.0.1:1317, got {url!r}")
    return base


class RestSmartQuery:
    """Smart queries over the chain's REST gateway (``/cosmwasm/wasm/v1/contract/{addr}/smart/{b64}``), with a timeout."""

    def __init__(self, rest_url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = normalize_rest_url(rest_url)
        self._client = httpx.Client(base_url=self.url, timeout=timeout, trust_env=False)

    def __call__(self, contract: str, msg: dict[str, Any]) -> Any:
        """Run one smart query; raise ``ChainUnreachableError`` / ``ContractQueryError``."""
        data = base64.urlsafe_b64encode(json.dumps(msg, sort_keys=True).encode()).decode()
        path = f"/cosmwasm/wasm/v1/contract/{quote(contract, safe='')}/smart/{data}"
        try:
            resp = self._client.get(path)
        except httpx.TransportError as exc:
            raise ChainUnreachableError(f"chain unreachable at {self.url}: {exc or type(exc).__name__}") from exc
        try:
            body = resp.json()
        except ValueError:
            raise ContractQueryError(resp.status_code, f"chain at {self.url} answered HTTP {resp.status_code} "
                                     "with a non-JSON body") from None
        if resp.status_code != 200:
            message = body.get("message") if isinstance(body, dict) else None
            raise ContractQueryError(resp.status_code, str(message or f"HTTP {resp.status_code}"))
        if not isinstance(body, dict) or "data" not in body:
            raise ContractQueryError(resp.status_code, f"chain at {self.url} sent a smart-query reply without data")
        return body["data"]

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()


def source_for_url(
    chain_rest_url: str,
    registry_address: str | None = None,
    light_client_address: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    prefix: str = DEFAULT_PREFIX,
) -> RegistrySource:
    """A ``StakingDataSource`` reading the chain's registry over its REST gateway."""
    reg, lc = default_addresses(prefix)
    return RegistrySource(RestSmartQuery(chain_rest_url, timeout), registry_address or reg, light_client_address or lc)


def app_for_chain(
    ledger_client: Any, registry_address: str | None = None, light_client_address: str | None = None,
    *, prefix: str = DEFAULT_PREFIX,
) -> FastAPI:
    """The API app over a cosmpy ``LedgerClient`` (REST or gRPC) connected to the chain."""
    reg, lc = default_addresses(prefix)
    return create_app(LedgerClientSource(ledger_client, registry_address or reg, light_client_address or lc))


def app_for_url(
    chain_rest_url: str, registry_address: str | None = None, light_client_address: str | None = None,
    *, timeout: float = DEFAULT_TIMEOUT, prefix: str = DEFAULT_PREFIX, index_url: str | None = None,
) -> FastAPI:
    """The API app over the chain's REST gateway at ``chain_rest_url`` (queries time out after ``timeout`` s).
    With ``index_url`` (``sqlite:///path`` or ``postgresql+psycopg://...``) the ``/v2`` routes answer from the
    API's own index of that chain (``api.index``), kept up to date by a background thread."""
    source = source_for_url(chain_rest_url, registry_address, light_client_address, timeout=timeout, prefix=prefix)
    if index_url is not None:
        from api.index import IndexedSource

        return create_app(IndexedSource.follow(source, index_url))  # type: ignore[arg-type]
    return create_app(source)


def check_loopback(host: str) -> str:
    """Return ``host`` if it is a loopback address; the API never binds anything else."""
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        raise ValueError(f"the staking API only binds loopback addresses (e.g. 127.0.0.1), not {host!r}")
    return host


def uvicorn_config(
    chain_rest_url: str, host: str = "127.0.0.1", port: int = 8000, *,
    registry_address: str | None = None, light_client_address: str | None = None,
    timeout: float = DEFAULT_TIMEOUT, log_level: str = "info", extra_hosts: Sequence[str] = (),
    btc_tip: Callable[[], int] | None = None, index_url: str | None = None,
) -> uvicorn.Config:
    """The uvicorn config ``serve`` runs (tests run it in a thread); Host headers are checked
    (127.0.0.1, localhost, ``extra_hosts``, ``BTCMESH_API_TRUSTED_HOSTS``). ``btc_tip`` (e.g. a Bitcoin
    node's ``get_block_count``) puts the node's tip on the explorer's overview."""
    api = app_for_url(chain_rest_url, registry_address, light_client_address, timeout=timeout, index_url=index_url)
    if btc_tip is not None:
        from api.explorer import set_btc_tip_source

        set_btc_tip_source(api, btc_tip)
    app = guard_hosts(api, extra_hosts)
    return uvicorn.Config(app, host=check_loopback(host), port=port, log_level=log_level)


def serve(
    chain_rest_url: str, host: str = "127.0.0.1", port: int = 8000, *,
    registry_address: str | None = None, light_client_address: str | None = None,
    timeout: float = DEFAULT_TIMEOUT, log_level: str = "info", extra_hosts: Sequence[str] = (),
    btc_tip: Callable[[], int] | None = None, index_url: str | None = None,
) -> None:
    """Serve the staking API for the chain at ``chain_rest_url`` on ``host:port`` until interrupted (blocking)."""
    uvicorn.Server(uvicorn_config(chain_rest_url, host, port, registry_address=registry_address,
                                  light_client_address=light_client_address, timeout=timeout,
                                  log_level=log_level, extra_hosts=extra_hosts, btc_tip=btc_tip,
                                  index_url=index_url)).run()


__all__ = [
    "ChainUnreachableError",
    "ContractQueryError",
    "RestSmartQuery",
    "app_for_chain",
    "app_for_url",
    "check_loopback",
    "default_addresses",
    "normalize_rest_url",
    "serve",
    "source_for_url",
    "uvicorn_config",
]
