"""``StakingDataSource`` implementations over the chain's built-in contracts.

The chain exposes its BTC staking registry (``btc_staking``) and BTC light client
(``btc_light_client``) as built-in CosmWasm-style contracts answering JSON smart queries
(``docs/CHAIN_MESSAGES.md``). ``RegistrySource`` maps those replies onto the API's records;
it is parametrised by a *query function* ``(contract_address, msg_dict) -> reply`` so the same
mapping serves

* ``LedgerClientSource``: a remote chain through cosmpy's ``LedgerClient`` (REST or gRPC),
* ``api.server.RestSmartQuery``: the chain's REST gateway over httpx (with a timeout), and
* ``ChainAppSource``: an in-process ``cosmos_chain.app.ChainApp``.

Registry replies used (hex lowercase, txids display order, keys x-only):

* ``delegation {staking_tx_hash}`` → ``{"delegation": {...}}``; error ``delegation ... not found``;
* ``delegations {staker_pk?, start_after?, limit?}`` → ``{"delegations": [...], "next_key"}``;
* ``finality_providers {}`` → ``{"finality_providers": [...]}``;
* ``params {}`` → ``{"params_versions": [{version, ...StakingParams.to_dict()}]}``;
* light client ``tip {}`` → ``{height, hash, work}``;
* finality ``finality_provider {fp_btc_pk}`` → ``{voting_power, state, ...}`` and
  ``last_finalized_height {}`` → ``{height}`` (read when the chain has a finality module; a
  failing finality query leaves those fields unknown rather than failing the request).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from api.source import DataSourceError, DelegationRecord, FinalityProviderRecord, ParamsRecord

QueryFn = Callable[[str, dict[str, Any]], Any]
"""``(contract_address, query_msg) -> decoded JSON reply``."""

NOT_FOUND = re.compile(r"delegation\b.*\bnot found", re.IGNORECASE | re.DOTALL)
"""The registry's error for an unknown staking tx hash."""


class ReplyError(DataSourceError):
    """A registry / light-client reply lacks a field the API needs or has a malformed one."""


def _field(d: Mapping[str, Any], name: str, what: str) -> Any:
    if not isinstance(d, Mapping) or name not in d:
        raise ReplyError(f"{what} reply has no '{name}' field")
    return d[name]


def _int(d: Mapping[str, Any], name: str, what: str, default: int | None = None) -> int:
    v = d.get(name, default) if isinstance(d, Mapping) else default
    if v is None:
        raise ReplyError(f"{what} reply has no '{name}' field")
    try:
        return int(v)
    except (TypeError, ValueError):
        raise ReplyError(f"{what} reply: '{name}' is not an integer ({v!r})") from None


def _opt_height(v: Any) -> int | None:
    """A height that may be absent (None/missing); 0 is a real height only for the light client."""
    return None if v is None or v == "" else int(v)


def _hex(v: Any) -> str:
    return "" if v is None else str(v).lower()


# Chain statuses (Babylon ``BTCDelegationStatus`` names).
PENDING, VERIFIED, ACTIVE, UNBONDING, EXPIRED, WITHDRAWN, SLASHED = (
    "PENDING", "VERIFIED", "ACTIVE", "UNBONDING", "EXPIRED", "WITHDRAWN", "SLASHED")
_QUORUM_STATUSES = {VERIFIED, ACTIVE, UNBONDING, EXPIRED, WITHDRAWN, SLASHED}


def delegation_from_json(d: Mapping[str, Any]) -> DelegationRecord:
    """Map one registry delegation (the ``delegation`` query's object) onto a ``DelegationRecord``."""
    what = "delegation"
    status = str(d.get("status") or "").upper()
    has_quorum = d.get("has_covenant_quorum")
    if has_quorum is None:
        has_quorum = status in _QUORUM_STATUSES
    start = _opt_height(d.get("start_height"))
    staking_time = _int(d, "staking_time", what)
    end = _opt_height(d.get("end_height"))
    if start is None:
        end = None  # the registry may pre-fill end_height; without inclusion it means nothing
    elif end is None:
        end = start + staking_time
    return DelegationRecord(
        staking_tx_hash_hex=_hex(_field(d, "staking_tx_hash", what)),
        staker_pk_hex=_hex(_field(d, "staker_btc_pk", what)),
        fp_pks_hex=tuple(_hex(k) for k in _field(d, "fp_btc_pk_list", what)),
        staking_amount=_int(d, "staking_value", what, d.get("total_sat")),
        staking_time=staking_time,
        unbonding_time=_int(d, "unbonding_time", what),
        staking_output_idx=_int(d, "staking_output_index", what, 0),
        staking_tx_hex=_hex(d.get("staking_tx")),
        params_version=_int(d, "params_version", what, 0),
        has_covenant_quorum=bool(has_quorum),
        start_height=start,
        end_height=end,
        expired=status == EXPIRED,
        unbonding_tx_hex=_hex(d.get("unbonding_tx")),
        unbonding_height=_opt_height(d.get("unbonding_height")),
        withdrawn_height=_opt_height(d.get("withdrawn_height")),
        slashed=bool(d.get("slashed")) or status == SLASHED,
        chain_status=status,
        reorged=status == "REORGED",
        cosmos_height=_opt_height(d.get("created_height")),
        cosmos_time=d.get("created_time"),
    )


def finality_provider_from_json(d: Mapping[str, Any]) -> FinalityProviderRecord:
    """Map one registry finality provider onto a ``FinalityProviderRecord``."""
    desc = d.get("description") or {}
    if not isinstance(desc, Mapping):
        desc = {"moniker": str(desc)}
    return FinalityProviderRecord(
        btc_pk_hex=_hex(_field(d, "btc_pk", "finality provider")),
        moniker=str(desc.get("moniker", "")),
        identity=str(desc.get("identity", "")),
        website=str(desc.get("website", "")),
        security_contact=str(desc.get("security_contact", "")),
        details=str(desc.get("details", "")),
        commission=str(d.get("commission", "0")),
        address=str(d.get("addr", "")),
        slashed=bool(d.get("slashed")) or _opt_height(d.get("slashed_height")) is not None,
        jailed=bool(d.get("jailed", False)),
    )


def params_from_json(d: Mapping[str, Any], version: int = 0) -> ParamsRecord:
    """Map one params version (``{version, ...StakingParams.to_dict()}``) onto a ``ParamsRecord``."""
    what = "params"
    return ParamsRecord(
        version=_int(d, "version", what, version),
        covenant_pks_hex=tuple(_hex(k) for k in _field(d, "covenant_pks", what)),
        covenant_quorum=_int(d, "covenant_quorum", what),
        min_staking_value_sat=_int(d, "min_staking_value_sat", what),
        max_staking_value_sat=_int(d, "max_staking_value_sat", what),
        min_staking_time_blocks=_int(d, "min_staking_time_blocks", what),
        max_staking_time_blocks=_int(d, "max_staking_time_blocks", what),
        unbonding_time_blocks=_int(d, "unbonding_time_blocks", what),
        unbonding_fee_sat=_int(d, "unbonding_fee_sat", what),
        slashing_rate=str(_field(d, "slashing_rate", what)),
        slashing_pk_script_hex=_hex(_field(d, "slashing_pk_script", what)),
        min_slashing_tx_fee_sat=_int(d, "min_slashing_tx_fee_sat", what),
        btc_confirmation_depth=_int(d, "confirmation_depth", what),
        btc_activation_height=_int(d, "btc_activation_height", what, 0),
        tag_hex=_hex(d.get("tag")),
    )


class RegistrySource:
    """``StakingDataSource`` over smart queries to the registry and light-client contracts."""

    def __init__(
        self, query: QueryFn, registry_address: str, light_client_address: str, page_limit: int = 100,
        finality_address: str | None = None,
    ) -> None:
        self._query = query
        self.registry_address = registry_address
        self.light_client_address = light_client_address
        self.page_limit = page_limit
        self.finality_address = finality_address if finality_address is not None else _finality_address(
            registry_address)

    def _finality(self, msg: dict[str, Any]) -> Any:
        """A finality-module query, or None when there is none / it fails (older chains)."""
        if not self.finality_address:
            return None
        try:
            return self._query(self.finality_address, msg)
        except Exception:  # noqa: BLE001 - the finality fields are optional in the API
            return None

    def _q(self, contract: str, msg: dict[str, Any]) -> Any:
        try:
            return self._query(contract, msg)
        except DataSourceError:
            raise
        except Exception as exc:  # transport errors, contract errors
            raise DataSourceError(f"{next(iter(msg))} query failed: {exc}") from exc

    def get_delegation(self, staking_tx_hash_hex: str) -> DelegationRecord | None:
        """See ``StakingDataSource``; the registry's ``delegation ... not found`` error means None."""
        try:
            reply = self._query(self.registry_address, {"delegation": {"staking_tx_hash": staking_tx_hash_hex}})
        except Exception as exc:
            if NOT_FOUND.search(str(exc)):
                return None
            if isinstance(exc, DataSourceError):
                raise
            raise DataSourceError(f"delegation query failed: {exc}") from exc
        d = _field(reply, "delegation", "delegation")
        return delegation_from_json(d) if d else None

    def list_delegations(self, staker_pk_hex: str | None = None) -> Sequence[DelegationRecord]:
        """See ``StakingDataSource``; follows the registry's pagination to the end (bounded)."""
        out: list[DelegationRecord] = []
        start_after: str | None = None
        seen: set[str] = set()
        while True:
            msg: dict[str, Any] = {"limit": self.page_limit}
            if staker_pk_hex is not None:
                msg["staker_pk"] = staker_pk_hex
            if start_after is not None:
                msg["start_after"] = start_after
            reply = self._q(self.registry_address, {"delegations": msg})
            page = [delegation_from_json(d) for d in _field(reply, "delegations", "delegations") or []]
            out.extend(page)
            next_key = reply.get("next_key")
            if not page or not next_key:
                break
            if next_key in seen:
                raise ReplyError(f"delegations pagination loops at next_key {next_key!r}")
            seen.add(next_key)
            start_after = str(next_key)
        return out

    def list_finality_providers(self) -> Sequence[FinalityProviderRecord]:
        """See ``StakingDataSource``."""
        reply = self._q(self.registry_address, {"finality_providers": {}})
        out = []
        for d in _field(reply, "finality_providers", "finality_providers"):
            rec = finality_provider_from_json(d)
            fin = self._finality({"finality_provider": {"fp_btc_pk": rec.btc_pk_hex}})
            # before any FP ever had power (height 0) the finality module has no view: keep the TVL rule
            if isinstance(fin, Mapping) and isinstance(fin.get("voting_power"), int) and fin.get("height"):
                state = str(fin.get("state") or "")
                rec = dataclasses.replace(rec, voting_power=int(fin["voting_power"]), finality_state=state or None,
                                          jailed=rec.jailed or state == "jailed")
            out.append(rec)
        return out

    def last_finalized_height(self) -> int | None:
        """The finality module's last finalized chain height (None: nothing finalized / unknown)."""
        reply = self._finality({"last_finalized_height": {}})
        height = reply.get("height") if isinstance(reply, Mapping) else None
        return int(height) if isinstance(height, int) else None

    def params(self) -> Sequence[ParamsRecord]:
        """See ``StakingDataSource``."""
        reply = self._q(self.registry_address, {"params": {}})
        return [params_from_json(p, i) for i, p in enumerate(_field(reply, "params_versions", "params"))]

    def btc_tip_height(self) -> int:
        """See ``StakingDataSource``."""
        reply = self._q(self.light_client_address, {"tip": {}})
        height = reply.get("height") if isinstance(reply, Mapping) else None
        if height is None:
            raise DataSourceError("light client has no tip yet")
        return int(height)


def _finality_address(registry_address: str) -> str:
    """The finality module's address on the registry's chain (same bech32 prefix)."""
    from cosmos_chain.modules.base import module_address

    prefix, sep, _ = registry_address.rpartition("1")
    try:
        return module_address("finality", prefix) if sep and prefix else ""
    except Exception:  # noqa: BLE001 - not a bech32 address (test doubles): no finality queries
        return ""


def ledger_query_fn(client: Any) -> QueryFn:
    """Smart-query function over a cosmpy ``LedgerClient`` (REST or gRPC)."""
    from cosmpy.protos.cosmwasm.wasm.v1.query_pb2 import QuerySmartContractStateRequest

    def query(addr: str, msg: dict[str, Any]) -> Any:
        req = QuerySmartContractStateRequest(address=addr, query_data=json.dumps(msg, sort_keys=True).encode())
        resp = client.wasm.SmartContractState(req)
        return json.loads(resp.data) if resp.data else None

    return query


class LedgerClientSource(RegistrySource):
    """Remote chain through cosmpy's ``LedgerClient``."""

    def __init__(
        self, client: Any, registry_address: str, light_client_address: str, page_limit: int = 100
    ) -> None:
        super().__init__(ledger_query_fn(client), registry_address, light_client_address, page_limit)
        self.client = client


class ChainAppSource(RegistrySource):
    """An in-process ``cosmos_chain.app.ChainApp`` (queries its latest committed state)."""

    def __init__(self, app: Any, page_limit: int = 100) -> None:
        super().__init__(app.smart_query, app.module_address("btc_staking"), app.module_address("btc_light_client"),
                         page_limit)
        self.app = app
