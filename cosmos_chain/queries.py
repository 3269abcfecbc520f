"""ABCI query paths → protobuf / JSON answers (used by ``ChainApp.query``)."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

from cosmpy.protos.cosmos.auth.v1beta1.auth_pb2 import BaseAccount
from cosmpy.protos.cosmos.auth.v1beta1.query_pb2 import QueryAccountRequest, QueryAccountResponse
from cosmpy.protos.cosmos.bank.v1beta1.query_pb2 import (
    QueryAllBalancesRequest,
    QueryAllBalancesResponse,
    QueryBalanceRequest,
    QueryBalanceResponse,
)
from cosmpy.protos.cosmos.base.abci.v1beta1.abci_pb2 import GasInfo, Result
from cosmpy.protos.cosmos.base.v1beta1.coin_pb2 import Coin
from cosmpy.protos.cosmos.crypto.secp256k1.keys_pb2 import PubKey
from cosmpy.protos.cosmos.tx.v1beta1.service_pb2 import SimulateRequest, SimulateResponse
from cosmpy.protos.cosmwasm.wasm.v1.query_pb2 import QuerySmartContractStateRequest, QuerySmartContractStateResponse
from google.protobuf.any_pb2 import Any as ProtoAny
from google.protobuf.message import DecodeError

from .errors import ChainError, InvalidRequestError, UnknownAddressError
from .modules.auth import validate_address
from .store import canonical_json

if TYPE_CHECKING:  # pragma: no cover
    from .app import ChainApp

__all__ = ["dispatch", "base_account_any", "simulate_response", "abci_event_dicts"]


class UnknownQueryError(ChainError):
    """Unknown query path (sdk code 6)."""

    code = 6


def base_account_any(acct: dict[str, Any]) -> ProtoAny:
    """``/cosmos.auth.v1beta1.BaseAccount`` packed in an Any."""
    ba = BaseAccount(address=acct["address"], account_number=acct["account_number"], sequence=acct["sequence"])
    if acct.get("pub_key"):
        pk = ProtoAny()
        pk.Pack(PubKey(key=bytes.fromhex(acct["pub_key"])), type_url_prefix="/")
        ba.pub_key.CopyFrom(pk)
    a = ProtoAny()
    a.Pack(ba, type_url_prefix="/")
    return a


def abci_event_dicts(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events as in Cosmos JSON (attributes with index=true)."""
    return [
        {"type": e["type"], "attributes": [{"key": a["key"], "value": a["value"], "index": True} for a in e["attributes"]]}
        for e in events
    ]


def simulate_response(app: "ChainApp", tx_bytes: bytes) -> SimulateResponse:
    """Simulate → SimulateResponse (raises ChainError-like ValueError on failure)."""
    res = app.simulate(tx_bytes)
    if res.code != 0:
        err = ChainError(res.log)
        err.code = res.code  # type: ignore[misc]
        raise err
    resp = SimulateResponse(gas_info=GasInfo(gas_wanted=res.gas_wanted, gas_used=res.gas_used), result=Result(data=res.data, log=res.log))
    from cosmpy.protos.tendermint.abci.types_pb2 import Event, EventAttribute

    for e in res.events:
        resp.result.events.append(
            Event(type=e["type"], attributes=[EventAttribute(key=a["key"], value=a["value"], index=True) for a in e["attributes"]])
        )
    return resp


def _parse(cls: Any, data: bytes) -> Any:
    try:
        return cls.FromString(data)
    except DecodeError as exc:
        raise InvalidRequestError(f"cannot decode {cls.DESCRIPTOR.full_name}: {exc}") from exc


LATEST_VALIDATOR_SET_PATH = "/cosmos.base.tendermint.v1beta1.Service/GetLatestValidatorSet"
VALIDATOR_SET_BY_HEIGHT_PATH = "/cosmos.base.tendermint.v1beta1.Service/GetValidatorSetByHeight"


def validator_set_response(app: "ChainApp", path: str, data: bytes) -> Any:
    """The ``valset`` module's set as cosmpy's ``GetLatestValidatorSetResponse`` /
    ``GetValidatorSetByHeightResponse`` (ed25519 keys, bech32 ``<prefix>valcons`` addresses)."""
    from cosmpy.protos.cosmos.base.query.v1beta1.pagination_pb2 import PageResponse
    from cosmpy.protos.cosmos.base.tendermint.v1beta1 import query_pb2 as tm
    from cosmpy.protos.cosmos.crypto.ed25519.keys_pb2 import PubKey as Ed25519PubKey

    if path == LATEST_VALIDATOR_SET_PATH:
        _parse(tm.GetLatestValidatorSetRequest, data)
        height, resp = None, tm.GetLatestValidatorSetResponse()
    else:
        req = _parse(tm.GetValidatorSetByHeightRequest, data)
        if req.height < 1:
            raise InvalidRequestError("height must be greater than 0")
        if req.height > app.last_height:
            raise InvalidRequestError(f"requested height {req.height} is above the latest {app.last_height}")
        height, resp = req.height, tm.GetValidatorSetByHeightResponse()
    vs = app.module("valset").validator_set(app.query_context(), height)  # type: ignore[attr-defined]
    resp.block_height = vs["block_height"]
    for v in vs["validators"]:
        pk = ProtoAny()
        pk.Pack(Ed25519PubKey(key=base64.b64decode(v["pub_key"])), type_url_prefix="/")
        resp.validators.append(tm.Validator(address=v["valcons"], pub_key=pk, voting_power=v["power"],
                                            proposer_priority=0))
    resp.pagination.CopyFrom(PageResponse(total=len(vs["validators"])))
    return resp


def dispatch(app: "ChainApp", path: str, data: bytes) -> bytes:
    """Answer one query path (see ``ChainApp.query``)."""
    if path == "/cosmwasm.wasm.v1.Query/SmartContractState":
        req = _parse(QuerySmartContractStateRequest, data)
        try:
            msg = json.loads(req.query_data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidRequestError(f"query data is not JSON: {exc}") from exc
        reply = app.smart_query(req.address, msg)
        return QuerySmartContractStateResponse(data=canonical_json(reply).encode()).SerializeToString()
    if path.startswith("/smart/"):
        try:
            msg = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidRequestError(f"query data is not JSON: {exc}") from exc
        return canonical_json(app.smart_query(path[len("/smart/"):], msg)).encode()
    if path == "/cosmos.auth.v1beta1.Query/Account":
        req = _parse(QueryAccountRequest, data)
        validate_address(req.address, app.prefix)
        acct = app.account(req.address)
        if acct is None:
            raise UnknownAddressError(f"account {req.address} not found")
        return QueryAccountResponse(account=base_account_any(acct)).SerializeToString()
    if path == "/cosmos.bank.v1beta1.Query/Balance":
        req = _parse(QueryBalanceRequest, data)
        validate_address(req.address, app.prefix)
        amt = app.balance(req.address, req.denom)
        return QueryBalanceResponse(balance=Coin(denom=req.denom, amount=str(amt))).SerializeToString()
    if path == "/cosmos.bank.v1beta1.Query/AllBalances":
        req = _parse(QueryAllBalancesRequest, data)
        validate_address(req.address, app.prefix)
        coins = [Coin(denom=d, amount=str(a)) for d, a in app.balances(req.address).items()]
        return QueryAllBalancesResponse(balances=coins).SerializeToString()
    if path == "/cosmos.tx.v1beta1.Service/Simulate":
        req = _parse(SimulateRequest, data)
        raw = req.tx_bytes or (req.tx.SerializeToString() if req.HasField("tx") else b"")
        return simulate_response(app, raw).SerializeToString()
    if path == "/app/simulate":
        return canonical_json(app.simulate(data).to_dict()).encode()
    if path == "/app/contracts":
        return canonical_json(app.contract_addresses()).encode()
    if path in (LATEST_VALIDATOR_SET_PATH, VALIDATOR_SET_BY_HEIGHT_PATH):
        return validator_set_response(app, path, data).SerializeToString()
    raise UnknownQueryError(f"unknown query path {path!r}")
