"""``StakingDataSource`` implementations over the Cosmos chain's built-in contracts.

The chain exposes its BTC staking registry and BTC light client as built-in
CosmWasm-style contracts answering JSON smart queries. ``RegistrySource`` maps
those JSON replies onto the API's records; it is parametrised by a *query
function* ``(contract_address, msg_dict) -> reply`` so the same mapping serves

* ``LedgerClientSource``: a remote chain through cosmpy's ``LedgerClient``
  (``/cosmwasm/wasm/v1/contract/{addr}/smart/{b64}`` over REST or gRPC), and
* ``ChainAppSource``: an in-process ``cosmos_chain`` app object.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from api.source import DataSourceError, DelegationRecord, FinalityProviderRecord, ParamsRecord

QueryFn = Callable[[str, dict[str, Any]], Any]
"""``(contract_address, query_msg) -> decoded JSON reply``."""


def _pick(d: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    """First present, non-None value among ``names``."""
    for name in names:
        if name in d and d[name] is not None:
            return d[name]
    return default


def _opt_int(v: Any) -> int | None:
    return None if v in (None, "", 0, "0") else int(v)


def _hex(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    return str(v).lower()


def _xonly(v: Any) -> str:
    h = _hex(v)
    return h[2:] if len(h) == 66 else h


# Chain statuses (Babylon ``BTCDelegationStatus`` names, any case).
_QUORUM_STATUSES = {"VERIFIED", "ACTIVE", "UNBONDED", "EXPIRED", "SLASHED", "WITHDRAWN", "UNBONDING"}


def delegation_from_json(d: Mapping[str, Any], covenant_quorum: int | None = None) -> DelegationRecord:
    """Map one registry delegation (JSON) onto a ``DelegationRecord``."""
    status = str(_pick(d, "status", "state", default="")).upper().removeprefix("BTC_DELEGATION_STATUS_")
    sigs = _pick(d, "covenant_sigs", "covenant_signatures", default=None)
    has_quorum = _pick(d, "has_covenant_quorum", "covenant_quorum_reached", default=None)
    if has_quorum is None:
        if sigs is not None and covenant_quorum is not None:
            has_quorum = len(sigs) >= covenant_quorum
        else:
            has_quorum = status in _QUORUM_STATUSES
    start = _opt_int(_pick(d, "start_height", "inclusion_height"))
    staking_time = int(_pick(d, "staking_time", "staking_time_blocks", default=0))
    end = _opt_int(_pick(d, "end_height"))
    undel = _pick(d, "btc_undelegation", "undelegation", default={}) or {}
    unbonding_height = _opt_int(_pick(d, "unbonding_height", "unbonded_height", "undelegation_height"))
    if unbonding_height is None and isinstance(undel, Mapping):
        unbonding_height = _opt_int(_pick(undel, "unbonding_height", "spend_height", "height"))
    return DelegationRecord(
        staking_tx_hash_hex=_hex(_pick(d, "staking_tx_hash", "staking_tx_hash_hex", "staking_txid")),
        staker_pk_hex=_xonly(_pick(d, "staker_btc_pk", "staker_pk", "btc_pk", "staker_pk_hex")),
        fp_pks_hex=tuple(_xonly(p) for p in _pick(d, "fp_btc_pk_list", "fp_pks", "fp_btc_pks", "finality_providers",
                                                  default=())),
        staking_amount=int(_pick(d, "total_sat", "staking_value", "staking_amount", "value", default=0)),
        staking_time=staking_time,
        unbonding_time=int(_pick(d, "unbonding_time", "unbonding_time_blocks", default=0)),
        staking_output_idx=int(_pick(d, "staking_output_idx", "staking_output_index", "staking_vout", default=0)),
        staking_tx_hex=_hex(_pick(d, "staking_tx", "staking_tx_hex")),
        params_version=int(_pick(d, "params_version", default=0)),
        has_covenant_quorum=bool(has_quorum),
        start_height=start,
        end_height=end if end is not None else (start + staking_time if start is not None else None),
        expired=status == "EXPIRED",
        unbonding_tx_hex=_hex(_pick(d, "unbonding_tx", "unbonding_tx_hex")),
        unbonding_height=unbonding_height,
        withdrawn_height=_opt_int(_pick(d, "withdrawn_height", "withdraw_height")),
        slashed=bool(_pick(d, "slashed", default=False)) or status == "SLASHED",
        chain_status=status,
        cosmos_height=_opt_int(_pick(d, "created_height", "cosmos_height", "registered_height")),
        cosmos_time=_pick(d, "created_time", "cosmos_time"),
    )


def finality_provider_from_json(d: Mapping[str, Any]) -> FinalityProviderRecord:
    """Map one registry finality provider (JSON) onto a ``FinalityProviderRecord``."""
    desc = _pick(d, "description", default={}) or {}
    if isinstance(desc, str):
        desc = {"moniker": desc}
    return FinalityProviderRecord(
        btc_pk_hex=_xonly(_pick(d, "btc_pk", "btc_pk_hex", "fp_btc_pk", "pk")),
        moniker=str(_pick(desc, "moniker", default=_pick(d, "moniker", default=""))),
        identity=str(_pick(desc, "identity", default="")),
        website=str(_pick(desc, "website", default="")),
        security_contact=str(_pick(desc, "security_contact", default="")),
        details=str(_pick(desc, "details", default="")),
        commission=str(_pick(d, "commission", default="0")),
        address=str(_pick(d, "addr", "address", "owner", default="")),
        slashed=bool(_pick(d, "slashed", default=False)) or _opt_int(_pick(d, "slashed_btc_height", "slashed_height")) is not None,
        jailed=bool(_pick(d, "jailed", default=False)),
    )


def params_from_json(d: Mapping[str, Any], version: int = 0) -> ParamsRecord:
    """Map one params version (``StakingParams.to_dict()`` shape, plus ``version``) onto a ``ParamsRecord``."""
    return ParamsRecord(
        version=int(_pick(d, "version", default=version)),
        covenant_pks_hex=tuple(_xonly(k) for k in _pick(d, "covenant_pks", default=())),
        covenant_quorum=int(_pick(d, "covenant_quorum", default=0)),
        min_staking_value_sat=int(_pick(d, "min_staking_value_sat", default=0)),
        max_staking_value_sat=int(_pick(d, "max_staking_value_sat", default=0)),
        min_staking_time_blocks=int(_pick(d, "min_staking_time_blocks", default=0)),
        max_staking_time_blocks=int(_pick(d, "max_staking_time_blocks", default=0)),
        unbonding_time_blocks=int(_pick(d, "unbonding_time_blocks", "unbonding_time", default=0)),
        unbonding_fee_sat=int(_pick(d, "unbonding_fee_sat", default=0)),
        slashing_rate=str(_pick(d, "slashing_rate", default="0")),
        slashing_pk_script_hex=_hex(_pick(d, "slashing_pk_script", "slashing_pk_script_hex")),
        min_slashing_tx_fee_sat=int(_pick(d, "min_slashing_tx_fee_sat", default=0)),
        btc_confirmation_depth=int(_pick(d, "confirmation_depth", "btc_confirmation_depth", default=1)),
        btc_activation_height=int(_pick(d, "btc_activation_height", default=0)),
        tag_hex=_hex(_pick(d, "tag", "tag_hex")),
    )


def _unwrap(reply: Any, *keys: str) -> Any:
    """``{"delegation": {...}}`` -> ``{...}``; leaves other shapes alone."""
    if isinstance(reply, Mapping):
        for key in keys:
            if key in reply:
                return reply[key]
    return reply


class RegistrySource:
    """``StakingDataSource`` over smart queries to the registry and light-client contracts."""

    def __init__(
        self, query: QueryFn, registry_address: str, light_client_address: str | None = None, page_limit: int = 100
    ) -> None:
        self._query = query
        self.registry_address = registry_address
        self.light_client_address = light_client_address or registry_address
        self.page_limit = page_limit

    def _q(self, contract: str, msg: dict[str, Any]) -> Any:
        try:
            return self._query(contract, msg)
        except DataSourceError:
            raise
        except Exception as exc:  # transport errors, contract errors
            raise DataSourceError(f"{next(iter(msg))} query failed: {exc}") from exc

    def _quorum(self) -> int | None:
        versions = self.params()
        return max((p.covenant_quorum for p in versions), default=None) if versions else None

    def get_delegation(self, staking_tx_hash_hex: str) -> DelegationRecord | None:
        """See ``StakingDataSource``."""
        try:
            reply = self._query(self.registry_address, {"delegation": {"staking_tx_hash": staking_tx_hash_hex}})
        except Exception as exc:
            if "not found" in str(exc).lower():
                return None
            raise DataSourceError(f"delegation query failed: {exc}") from exc
        d = _unwrap(reply, "delegation")
        if not d:
            return None
        return delegation_from_json(d, self._quorum())

    def list_delegations(self, staker_pk_hex: str | None = None) -> Sequence[DelegationRecord]:
        """See ``StakingDataSource``; follows the registry's own pagination to the end."""
        quorum = self._quorum()
        out: list[DelegationRecord] = []
        start_after: str | None = None
        while True:
            msg: dict[str, Any] = {"limit": self.page_limit}
            if staker_pk_hex is not None:
                msg["staker_pk"] = staker_pk_hex
            if start_after is not None:
                msg["start_after"] = start_after
            reply = self._q(self.registry_address, {"delegations": msg})
            items = _unwrap(reply, "delegations") or []
            page = [delegation_from_json(d, quorum) for d in items]
            out.extend(page)
            next_key = reply.get("next_key") if isinstance(reply, Mapping) else None
            if not page or len(page) < self.page_limit and not next_key:
                break
            start_after = next_key or page[-1].staking_tx_hash_hex
        return out

    def list_finality_providers(self) -> Sequence[FinalityProviderRecord]:
        """See ``StakingDataSource``."""
        reply = self._q(self.registry_address, {"finality_providers": {}})
        return [finality_provider_from_json(d) for d in _unwrap(reply, "finality_providers") or []]

    def params(self) -> Sequence[ParamsRecord]:
        """See ``StakingDataSource``."""
        reply = self._q(self.registry_address, {"params": {}})
        versions = _unwrap(reply, "params_versions", "versions")
        if isinstance(versions, Mapping):
            versions = [_unwrap(versions, "params")]
        return [params_from_json(_unwrap(p, "params") if "covenant_pks" not in p else p, i)
                for i, p in enumerate(versions or [])]

    def btc_tip_height(self) -> int:
        """See ``StakingDataSource``."""
        reply = self._q(self.light_client_address, {"tip": {}})
        tip = _unwrap(reply, "tip")
        height = _pick(tip, "height", "btc_height") if isinstance(tip, Mapping) else tip
        if height is None:
            raise DataSourceError("light client has no tip yet")
        return int(height)


def ledger_query_fn(client: Any) -> QueryFn:
    """Smart-query function over a cosmpy ``LedgerClient`` (REST or gRPC)."""
    if hasattr(client, "query_contract_smart"):
        return lambda addr, msg: client.query_contract_smart(addr, msg)
    from cosmpy.protos.cosmwasm.wasm.v1.query_pb2 import QuerySmartContractStateRequest

    def query(addr: str, msg: dict[str, Any]) -> Any:
        req = QuerySmartContractStateRequest(address=addr, query_data=json.dumps(msg, sort_keys=True).encode())
        resp = client.wasm.SmartContractState(req)
        return json.loads(resp.data) if resp.data else None

    return query


class LedgerClientSource(RegistrySource):
    """Remote chain through cosmpy's ``LedgerClient`` and the registry contract address."""

    def __init__(
        self, client: Any, registry_address: str, light_client_address: str | None = None, page_limit: int = 100
    ) -> None:
        super().__init__(ledger_query_fn(client), registry_address, light_client_address, page_limit)
        self.client = client
