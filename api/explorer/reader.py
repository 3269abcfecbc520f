"""``ChainReader``: the raw chain queries the explorer needs beyond the ``StakingDataSource`` contract.

The ``/v2`` routes read only what ``StakingDataSource`` offers (delegations, providers, params, the
light-client tip). The explorer also shows the chain height, finality votes and evidence, mesh
virtual stake and vault accounts, and the registry's raw delegation records (tx ids, heights of
each step). ``reader_for(source)`` builds a reader over the same smart-query function the source
uses, so no second connection is configured; a source without one (``InMemorySource``) gets no
reader and the explorer shows "—" for chain-only figures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from api.source import DataSourceError
from cosmos_chain.modules.base import DEFAULT_PREFIX, module_address

QueryFn = Callable[[str, dict[str, Any]], Any]

REGISTRY, LIGHT_CLIENT, FINALITY, MESH = "btc_staking", "btc_light_client", "finality", "mesh"


class ChainReader:
    """Smart queries to the chain's built-in modules by name, plus the chain height."""

    def __init__(self, query: QueryFn, height: Callable[[], int], prefix: str = DEFAULT_PREFIX) -> None:
        self._query = query
        self._height = height
        self.addresses = {m: module_address(m, prefix) for m in (REGISTRY, LIGHT_CLIENT, FINALITY, MESH)}

    def query(self, module: str, msg: dict[str, Any]) -> Any:
        """One smart query to a built-in module; ``DataSourceError`` when the chain cannot answer."""
        try:
            return self._query(self.addresses[module], msg)
        except DataSourceError:
            raise
        except Exception as exc:  # transport or contract errors
            raise DataSourceError(f"{module} {next(iter(msg))} query failed: {exc}") from exc

    def try_query(self, module: str, msg: dict[str, Any]) -> Any | None:
        """Like ``query`` but None when the module rejects the query (e.g. a query another helper has not
        added yet); an unreachable chain still raises."""
        try:
            return self._query(self.addresses[module], msg)
        except Exception as exc:
            if _unreachable(exc):
                raise DataSourceError(f"chain unreachable: {exc}") from exc
            return None

    def chain_height(self) -> int:
        """Latest committed chain height."""
        try:
            return int(self._height())
        except DataSourceError:
            raise
        except Exception as exc:
            raise DataSourceError(f"chain height query failed: {exc}") from exc


def _unreachable(exc: BaseException) -> bool:
    """Transport failures (``api.server.ChainUnreachableError`` has no HTTP ``status``; a contract's
    error reply, ``ContractQueryError``, has one)."""
    if isinstance(exc, (httpx.TransportError, ConnectionError)):
        return True
    return isinstance(exc, DataSourceError) and not hasattr(exc, "status")


def _rest_height(rest_url: str, timeout: float) -> Callable[[], int]:
    client = httpx.Client(base_url=rest_url, timeout=timeout, trust_env=False)

    def height() -> int:
        try:
            resp = client.get("/cosmos/base/tendermint/v1beta1/blocks/latest")
        except httpx.TransportError as exc:
            raise DataSourceError(f"chain unreachable at {rest_url}: {exc or type(exc).__name__}") from exc
        if resp.status_code != 200:
            raise DataSourceError(f"latest block query answered HTTP {resp.status_code}")
        return int(resp.json()["block"]["header"]["height"])

    return height


def _prefix_of(address: str) -> str:
    return address.rsplit("1", 1)[0] if "1" in address else DEFAULT_PREFIX


def reader_for(source: Any) -> ChainReader | None:
    """A reader over the query function of a ``RegistrySource`` (REST, cosmpy or in-process), else None."""
    from api.chain_source import ChainAppSource, LedgerClientSource, RegistrySource

    if not isinstance(source, RegistrySource):
        return None
    query = source._query  # noqa: SLF001 - the same query function, so one connection config
    prefix = _prefix_of(source.registry_address)
    if isinstance(source, ChainAppSource):
        app = source.app
        return ChainReader(query, lambda: int((app.latest_block() or {}).get("height", 0)), prefix)
    if isinstance(source, LedgerClientSource):
        return ChainReader(query, source.client.query_height, prefix)
    rest_url = getattr(query, "url", None)  # api.server.RestSmartQuery (not imported: api.server imports us)
    if isinstance(rest_url, str):
        client = getattr(query, "_client", None)
        timeout = getattr(getattr(client, "timeout", None), "read", None) or 5.0
        return ChainReader(query, _rest_height(rest_url, timeout), prefix)
    return None
