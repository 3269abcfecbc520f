"""The Cosmos REST (grpc-gateway) subset that an unmodified cosmpy ``LedgerClient`` uses.

Served on loopback by uvicorn + Starlette (:mod:`http_serving`: backlog 1024, a bounded
worker pool) in front of a :class:`ChainBackend`
(:class:`EmbeddedBackend` for an in-process :class:`~cosmos_chain.node.EmbeddedChain`; a CometBFT
host can provide its own). Responses are protobuf JSON (``google.protobuf.json_format``, proto field
names, 64-bit ints as strings), errors are grpc-gateway shaped: HTTP status +
``{"code": <grpc code>, "message": ..., "details": []}``.

Routes:

* ``GET  /cosmos/auth/v1beta1/accounts/{address}``
* ``GET  /cosmos/bank/v1beta1/balances/{address}`` and ``.../balances/{address}/by_denom?denom=D``
* ``POST /cosmos/tx/v1beta1/simulate`` (``{"tx_bytes"}`` or cosmpy's ``{"tx"}`` JSON)
* ``POST /cosmos/tx/v1beta1/txs`` (``{"tx_bytes", "mode"}``; SYNC, ASYNC, BLOCK = wait for commit)
* ``GET  /cosmos/tx/v1beta1/txs/{hash}`` (404 ``tx not found: HASH`` while unknown)
* ``GET  /cosmos/base/tendermint/v1beta1/blocks/latest``, ``.../blocks/{height}``, ``.../node_info``, ``.../syncing``
* ``GET  /cosmos/base/tendermint/v1beta1/validatorsets/latest``, ``.../validatorsets/{height}`` (``valset`` module)
* ``GET  /cosmos/consensus/v1/params`` (cosmpy's gas strategy reads ``block.max_gas``)
* ``GET  /cosmwasm/wasm/v1/contract/{address}/smart/{base64 query}`` → ``{"data": <JSON reply>}``
"""

from __future__ import annotations

import base64
import binascii
import copy
import ipaddress
import json
import logging
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qs, unquote

from cosmpy.protos.cosmos.auth.v1beta1.query_pb2 import QueryAccountRequest, QueryAccountResponse
from cosmpy.protos.cosmos.bank.v1beta1.query_pb2 import (
    QueryAllBalancesRequest,
    QueryAllBalancesResponse,
    QueryBalanceRequest,
    QueryBalanceResponse,
)
from cosmpy.protos.cosmos.base.tendermint.v1beta1.query_pb2 import GetLatestBlockResponse, GetNodeInfoResponse
from cosmpy.protos.cosmos.consensus.v1.query_pb2 import QueryParamsResponse as ConsensusParamsResponse
from cosmpy.protos.cosmos.tx.v1beta1.service_pb2 import (
    BroadcastMode,
    BroadcastTxRequest,
    BroadcastTxResponse,
    GetTxResponse,
    SimulateRequest,
    SimulateResponse,
)
from cosmpy.protos.cosmos.tx.v1beta1.tx_pb2 import TxRaw
from cosmpy.protos.cosmwasm.wasm.v1.query_pb2 import QuerySmartContractStateRequest, QuerySmartContractStateResponse
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .errors import ChainError
from http_serving import DEFAULT_WORKERS, BackgroundHttpServer, run_blocking, worker_limiter
from .node import BroadcastResult, EmbeddedChain
from .queries import abci_event_dicts
from .txcodec import decode_tx, tx_to_json

__all__ = [
    "ChainBackend",
    "EmbeddedBackend",
    "RestServer",
    "LocalChain",
    "RestError",
    "grpc_code_for",
    "block_proto_dict",
    "tx_response_dict",
    "wasm_msgs_as_base64",
    "APP_NAME",
    "APP_VERSION",
    "SDK_VERSION",
]

log = logging.getLogger(__name__)

APP_NAME = "btcmesh"
APP_VERSION = "0.1.0"
SDK_VERSION = "v0.50.0"  # the REST/protobuf surface we emulate
DEFAULT_CONSENSUS_PARAMS: dict[str, Any] = {
    "block": {"max_bytes": str(1 << 21), "max_gas": "-1"},
    "evidence": {"max_age_num_blocks": "100000", "max_age_duration": "172800s", "max_bytes": "1048576"},
    "validator": {"pub_key_types": ["ed25519"]},
}

MAX_HEIGHT = (1 << 63) - 1  # int64, as the SDK's height fields

# grpc status codes
GRPC_OK, GRPC_UNKNOWN, GRPC_INVALID_ARGUMENT, GRPC_NOT_FOUND, GRPC_ALREADY_EXISTS = 0, 2, 3, 5, 6
GRPC_RESOURCE_EXHAUSTED, GRPC_UNIMPLEMENTED, GRPC_INTERNAL, GRPC_UNAUTHENTICATED = 8, 12, 13, 16
_GRPC_NAMES = {0: "OK", 2: "Unknown", 3: "InvalidArgument", 5: "NotFound", 6: "AlreadyExists",
               8: "ResourceExhausted", 12: "Unimplemented", 13: "Internal", 16: "Unauthenticated"}
_HTTP_FOR_GRPC = {0: 200, 2: 500, 3: 400, 5: 404, 6: 409, 8: 429, 12: 501, 13: 500, 16: 401}
# ABCI (sdk) code → grpc code, as the SDK's error registry maps them for queries.
_GRPC_FOR_ABCI = {1: GRPC_INTERNAL, 2: GRPC_INVALID_ARGUMENT, 3: GRPC_INVALID_ARGUMENT, 4: GRPC_UNAUTHENTICATED,
                  5: GRPC_INVALID_ARGUMENT, 6: GRPC_UNIMPLEMENTED, 7: GRPC_INVALID_ARGUMENT, 9: GRPC_NOT_FOUND,
                  11: GRPC_RESOURCE_EXHAUSTED, 13: GRPC_INVALID_ARGUMENT, 18: GRPC_INVALID_ARGUMENT,
                  19: GRPC_ALREADY_EXISTS, 20: GRPC_RESOURCE_EXHAUSTED, 26: GRPC_INVALID_ARGUMENT,
                  32: GRPC_INVALID_ARGUMENT}

_MODES = {
    BroadcastMode.BROADCAST_MODE_SYNC: "sync",
    BroadcastMode.BROADCAST_MODE_ASYNC: "async",
    BroadcastMode.BROADCAST_MODE_BLOCK: "commit",
}


def grpc_code_for(abci_code: int) -> int:
    """The grpc status code a query failing with ``abci_code`` is reported with."""
    return _GRPC_FOR_ABCI.get(abci_code, GRPC_UNKNOWN)


class RestError(Exception):
    """An error answer: grpc ``code`` (HTTP status derived from it) and ``message``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        """HTTP status as grpc-gateway maps the grpc code."""
        return _HTTP_FOR_GRPC.get(self.code, 500)

    def body(self) -> dict[str, Any]:
        """grpc-gateway error JSON."""
        return {"code": self.code, "message": self.message, "details": []}


# ---------------------------------------------------------------------- backend
@runtime_checkable
class ChainBackend(Protocol):
    """What the REST (and gRPC) servers need from a chain.

    Records use :class:`~cosmos_chain.app.ChainApp`'s shapes: ``get_tx`` → ``{hash, height, index,
    tx (base64), time (unix s), result: TxResult.to_dict()}``; ``block`` → ``{chain_id, height, time,
    hash (hex), last_block_hash, app_hash (hex, of the previous block), data_hash, txs (base64 list), ...}``.
    """

    chain_id: str

    def broadcast_tx(self, tx_bytes: bytes, mode: str) -> BroadcastResult:
        """CheckTx + mempool; ``mode`` in ``sync``/``async``/``commit`` (wait for the block)."""
        ...

    def query(self, path: str, data: bytes) -> tuple[int, bytes, str]:
        """ABCI query at the latest height → (code, value, log); paths as :meth:`ChainApp.query`."""
        ...

    def get_tx(self, hash_hex: str) -> dict[str, Any] | None:
        """Committed tx record or None."""
        ...

    def block(self, height: int | None) -> dict[str, Any] | None:
        """Committed block record (``None`` height: the latest) or None."""
        ...


class EmbeddedBackend:
    """:class:`ChainBackend` over an :class:`EmbeddedChain` (calls the app directly)."""

    def __init__(self, node: EmbeddedChain, commit_timeout: float = 30.0) -> None:
        self.node = node
        self.commit_timeout = commit_timeout

    @property
    def chain_id(self) -> str:
        """The chain id."""
        return self.node.chain_id

    def broadcast_tx(self, tx_bytes: bytes, mode: str) -> BroadcastResult:
        """See :meth:`EmbeddedChain.broadcast_tx`."""
        return self.node.broadcast_tx(tx_bytes, mode, timeout=self.commit_timeout)

    def query(self, path: str, data: bytes) -> tuple[int, bytes, str]:
        """See :meth:`ChainApp.query`."""
        return self.node.app.query(path, data)

    def get_tx(self, hash_hex: str) -> dict[str, Any] | None:
        """See :meth:`ChainApp.get_tx`."""
        return self.node.app.get_tx(hash_hex)

    def block(self, height: int | None) -> dict[str, Any] | None:
        """See :meth:`ChainApp.get_block`."""
        if height is None:
            return self.node.app.latest_block()
        return self.node.app.get_block(height)


# ---------------------------------------------------------------------- JSON builders
def _to_dict(msg: Message) -> dict[str, Any]:
    return MessageToDict(msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def _timestamp(t: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(round(float(t) * 1_000_000)) * 1000)
    return ts


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(float(t), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _hexbytes(h: str) -> bytes:
    try:
        return bytes.fromhex(h or "")
    except ValueError:
        return b""


def block_proto_dict(rec: dict[str, Any]) -> dict[str, Any]:
    """``GetLatestBlockResponse``/``GetBlockByHeightResponse`` JSON for a block record."""
    header = {
        "version": {"block": "11", "app": "1"},
        "chain_id": rec["chain_id"],
        "height": str(rec["height"]),
        "time": _timestamp(rec["time"]).ToJsonString(),
        "last_block_id": {"hash": base64.b64encode(_hexbytes(rec.get("last_block_hash", ""))).decode()},
        "data_hash": base64.b64encode(_hexbytes(rec.get("data_hash", ""))).decode(),
        "app_hash": base64.b64encode(_hexbytes(rec.get("app_hash", ""))).decode(),
    }
    block = {"header": header, "data": {"txs": list(rec.get("txs", []))}}
    sdk_header = dict(header)
    msg = ParseDict(
        {"block_id": {"hash": base64.b64encode(_hexbytes(rec.get("hash", ""))).decode()},
         "block": block, "sdk_block": {"header": sdk_header, "data": block["data"]}},
        GetLatestBlockResponse(),
    )
    return _to_dict(msg)


def _tx_json(tx_bytes: bytes) -> dict[str, Any]:
    """REST JSON of a tx (wasm ``msg`` as a JSON object, as the SDK gateway renders it)."""
    return tx_to_json(decode_tx(tx_bytes))


def tx_response_dict(rec: dict[str, Any]) -> dict[str, Any]:
    """``cosmos.base.abci.v1beta1.TxResponse`` JSON for a committed tx record."""
    res = rec["result"]
    tx_bytes = base64.b64decode(rec["tx"])
    return {
        "height": str(rec["height"]),
        "txhash": rec["hash"],
        "codespace": res.get("codespace", "") if res["code"] else "",
        "code": res["code"],
        "data": base64.b64decode(res.get("data", "")).hex().upper(),
        "raw_log": res.get("log", ""),
        "logs": [],
        "info": "",
        "gas_wanted": str(res.get("gas_wanted", 0)),
        "gas_used": str(res.get("gas_used", 0)),
        "tx": {"@type": "/cosmos.tx.v1beta1.Tx", **_tx_json(tx_bytes)},
        "timestamp": _rfc3339(rec["time"]),
        "events": abci_event_dicts(res.get("events", [])),
    }


def _broadcast_response(r: BroadcastResult) -> dict[str, Any]:
    return {
        "tx_response": {
            "height": str(r.height),
            "txhash": r.hash,
            "codespace": r.codespace if r.code else "",
            "code": r.code,
            "data": r.data.hex().upper(),
            "raw_log": r.log,
            "logs": [],
            "info": "",
            "gas_wanted": str(r.gas_wanted),
            "gas_used": str(r.gas_used),
            "tx": None,
            "timestamp": "",
            "events": abci_event_dicts(r.events),
        }
    }


def wasm_msgs_as_base64(tx_json: dict[str, Any]) -> None:
    """cosmpy posts MsgExecuteContract.msg as a JSON object; re-encode it as the bytes it sent.

    The wasm gateway keeps the raw JSON text; ``json.dumps`` with default separators and the
    original key order reproduces what cosmpy/requests serialised, so signatures still match.
    """
    for m in (tx_json.get("body") or {}).get("messages") or []:
        if isinstance(m, dict) and "msg" in m and not isinstance(m["msg"], str):
            m["msg"] = base64.b64encode(json.dumps(m["msg"]).encode()).decode()


def _tx_bytes_from_request(body: dict[str, Any]) -> bytes:
    """``tx_bytes`` (base64) or a JSON ``tx`` → raw TxRaw bytes."""
    if body.get("tx_bytes"):
        try:
            return base64.b64decode(body["tx_bytes"], validate=True)
        except (binascii.Error, TypeError) as exc:
            raise RestError(GRPC_INVALID_ARGUMENT, f"tx_bytes is not base64: {exc}") from exc
    if isinstance(body.get("tx"), dict):
        tx_json = json.loads(json.dumps(body["tx"]))
        wasm_msgs_as_base64(tx_json)
        try:
            req = ParseDict({"tx": tx_json}, SimulateRequest())
        except ParseError as exc:
            raise RestError(GRPC_INVALID_ARGUMENT, f"invalid tx JSON: {exc}") from exc
        tx = req.tx
        return TxRaw(
            body_bytes=tx.body.SerializeToString(),
            auth_info_bytes=tx.auth_info.SerializeToString(),
            signatures=list(tx.signatures),
        ).SerializeToString()
    raise RestError(GRPC_INVALID_ARGUMENT, "empty txs are not allowed: give tx_bytes or tx")


# ---------------------------------------------------------------------- validator sets (issue 10 §1)
def validator_set_route(api: "RestApi", which: str) -> dict[str, Any]:
    """``GET /cosmos/base/tendermint/v1beta1/validatorsets/{latest|height}`` in cosmpy's
    ``GetLatestValidatorSetResponse`` / ``GetValidatorSetByHeightResponse`` JSON (from the
    ``valset`` module over ABCI query, so embedded and CometBFT backends answer alike)."""
    from cosmpy.protos.cosmos.base.tendermint.v1beta1 import query_pb2 as tm

    if which == "latest":
        resp = api.query_proto("/cosmos.base.tendermint.v1beta1.Service/GetLatestValidatorSet",
                               tm.GetLatestValidatorSetRequest(), tm.GetLatestValidatorSetResponse)
    else:
        try:
            height = int(which)
        except ValueError:
            raise RestError(GRPC_INVALID_ARGUMENT, f"invalid height {which!r}") from None
        if not 1 <= height <= MAX_HEIGHT:
            raise RestError(GRPC_INVALID_ARGUMENT, f"height must be in 1..{MAX_HEIGHT}")
        resp = api.query_proto("/cosmos.base.tendermint.v1beta1.Service/GetValidatorSetByHeight",
                               tm.GetValidatorSetByHeightRequest(height=height), tm.GetValidatorSetByHeightResponse)
    out = _to_dict(resp)
    out["pagination"] = {"next_key": None, "total": str(len(resp.validators))}
    return out


# ---------------------------------------------------------------------- the API (transport-free)
class RestApi:
    """Routes → JSON; raises :class:`RestError`. Separate from HTTP so it can be unit-tested."""

    def __init__(self, backend: ChainBackend, node_info: dict[str, str] | None = None) -> None:
        self.backend = backend
        self.node_info = {"moniker": "btcmesh-node", **(node_info or {})}
        self.consensus_params = DEFAULT_CONSENSUS_PARAMS
        self._block_cache: OrderedDict[tuple[Any, Any], dict[str, Any]] = OrderedDict()
        self._cache_lock = threading.Lock()

    def query_proto(self, path: str, req: Message, resp_cls: type[Message]) -> Message:
        code, value, log_ = self.backend.query(path, req.SerializeToString())
        if code != 0:
            raise RestError(grpc_code_for(code), log_ or f"query {path} failed with code {code}")
        try:
            return resp_cls.FromString(value)
        except DecodeError as exc:
            raise RestError(GRPC_INTERNAL, f"bad {resp_cls.DESCRIPTOR.full_name} from the chain: {exc}") from exc

    def get(self, path: str, params: dict[str, list[str]]) -> dict[str, Any]:
        """Answer a GET."""
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts[:4] == ["cosmos", "auth", "v1beta1", "accounts"] and len(parts) == 5:
            req = QueryAccountRequest(address=parts[4])
            return _to_dict(self.query_proto("/cosmos.auth.v1beta1.Query/Account", req, QueryAccountResponse))
        if parts[:4] == ["cosmos", "bank", "v1beta1", "balances"] and len(parts) in (5, 6):
            addr = parts[4]
            if len(parts) == 6 and parts[5] != "by_denom":
                raise RestError(GRPC_UNIMPLEMENTED, "Not Implemented")
            if len(parts) == 6 or "denom" in params:
                denom = (params.get("denom") or [""])[0]
                if not denom:
                    raise RestError(GRPC_INVALID_ARGUMENT, "invalid denom")
                return _to_dict(self.query_proto("/cosmos.bank.v1beta1.Query/Balance",
                                            QueryBalanceRequest(address=addr, denom=denom), QueryBalanceResponse))
            resp = self.query_proto("/cosmos.bank.v1beta1.Query/AllBalances", QueryAllBalancesRequest(address=addr),
                               QueryAllBalancesResponse)
            d = _to_dict(resp)
            d["pagination"] = {"next_key": None, "total": str(len(resp.balances))}
            return d
        if parts[:4] == ["cosmos", "tx", "v1beta1", "txs"] and len(parts) == 5:
            return self.get_tx(parts[4])
        if parts[:5] == ["cosmos", "base", "tendermint", "v1beta1", "blocks"] and len(parts) == 6:
            return self.get_block(parts[5])
        if parts == ["cosmos", "base", "tendermint", "v1beta1", "node_info"]:
            return self.get_node_info()
        if parts == ["cosmos", "base", "tendermint", "v1beta1", "syncing"]:
            return {"syncing": False}
        if parts[:5] == ["cosmos", "base", "tendermint", "v1beta1", "validatorsets"] and len(parts) == 6:
            return validator_set_route(self, parts[5])
        if parts == ["cosmos", "consensus", "v1", "params"]:
            return _to_dict(ParseDict({"params": self.consensus_params}, ConsensusParamsResponse()))
        if parts[:4] == ["cosmwasm", "wasm", "v1", "contract"] and len(parts) >= 7 and parts[5] == "smart":
            # base64 may contain '/', so the query is the rest of the path
            return self.smart_query(parts[4], "/".join(parts[6:]))
        raise RestError(GRPC_UNIMPLEMENTED, "Not Implemented")

    def post(self, path: str, body: Any) -> dict[str, Any]:
        """Answer a POST."""
        if not isinstance(body, dict):
            raise RestError(GRPC_INVALID_ARGUMENT, "request body must be a JSON object")
        if path.rstrip("/") == "/cosmos/tx/v1beta1/simulate":
            return self.simulate(body)
        if path.rstrip("/") == "/cosmos/tx/v1beta1/txs":
            return self.broadcast(body)
        raise RestError(GRPC_UNIMPLEMENTED, "Not Implemented")

    # -- handlers
    def get_tx(self, hash_hex: str) -> dict[str, Any]:
        """``GetTxResponse`` JSON; NotFound ``tx not found: HASH`` while not committed."""
        h = hash_hex.upper().removeprefix("0X")
        try:
            ok = len(bytes.fromhex(h)) == 32
        except ValueError:
            ok = False
        if not ok:
            raise RestError(GRPC_INVALID_ARGUMENT, f"invalid tx hash {hash_hex!r}: expected 64 hex characters")
        rec = self.backend.get_tx(h)
        if rec is None:
            raise RestError(GRPC_NOT_FOUND, f"tx not found: {h}")
        resp = tx_response_dict(rec)
        return {"tx": {k: v for k, v in resp["tx"].items() if k != "@type"}, "tx_response": resp}

    def get_block(self, which: str) -> dict[str, Any]:
        """``GetLatestBlockResponse`` / ``GetBlockByHeightResponse`` JSON."""
        if which == "latest":
            rec = self.backend.block(None)
            if rec is None:
                raise RestError(GRPC_NOT_FOUND, "no block committed yet")
            return self._block_json(rec)
        try:
            height = int(which)
        except ValueError:
            raise RestError(GRPC_INVALID_ARGUMENT, f"invalid height {which!r}") from None
        if height < 1:
            raise RestError(GRPC_INVALID_ARGUMENT, "height must be greater than 0")
        if height > MAX_HEIGHT:
            raise RestError(GRPC_INVALID_ARGUMENT, f"height {which} is out of range (max {MAX_HEIGHT})")
        rec = self.backend.block(height)
        if rec is None:
            latest = self.backend.block(None)
            top = latest["height"] if latest else 0
            raise RestError(GRPC_INVALID_ARGUMENT if height > top else GRPC_NOT_FOUND,
                            f"requested block height {height} is not available (latest {top})")
        return self._block_json(rec)

    def _block_json(self, rec: dict[str, Any]) -> dict[str, Any]:
        """:func:`block_proto_dict`, cached by block hash (committed blocks never change; a poll of
        ``blocks/latest`` by many clients then costs one protobuf round trip per block)."""
        key = (rec.get("hash"), rec.get("height"))
        hit = self._block_cache.get(key)
        if hit is None:
            hit = block_proto_dict(rec)
            with self._cache_lock:
                self._block_cache[key] = hit
                while len(self._block_cache) > 64:
                    self._block_cache.popitem(last=False)
        return copy.deepcopy(hit)

    def get_node_info(self) -> dict[str, Any]:
        """``GetNodeInfoResponse`` JSON."""
        msg = ParseDict(
            {
                "default_node_info": {"network": self.backend.chain_id, "moniker": self.node_info["moniker"],
                                      "version": "0.38.0"},
                "application_version": {"name": APP_NAME, "app_name": APP_NAME, "version": APP_VERSION,
                                        "cosmos_sdk_version": SDK_VERSION, "go_version": "none (python)"},
            },
            GetNodeInfoResponse(),
        )
        return _to_dict(msg)

    def smart_query(self, address: str, query_b64: str) -> dict[str, Any]:
        """wasm smart query → ``{"data": <JSON reply>}`` (the gateway renders the raw JSON inline)."""
        try:
            raw = base64.b64decode(query_b64 + "=" * (-len(query_b64) % 4), altchars=b"-_" if "-" in query_b64
                                   or "_" in query_b64 else None, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RestError(GRPC_INVALID_ARGUMENT, f"query data is not base64: {exc}") from exc
        resp = self.query_proto("/cosmwasm.wasm.v1.Query/SmartContractState",
                           QuerySmartContractStateRequest(address=address, query_data=raw),
                           QuerySmartContractStateResponse)
        try:
            data = json.loads(resp.data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RestError(GRPC_INTERNAL, f"contract reply is not JSON: {exc}") from exc
        return {"data": data}

    def simulate(self, body: dict[str, Any]) -> dict[str, Any]:
        """``SimulateResponse`` JSON; a failing tx → error with the chain's reason."""
        raw = _tx_bytes_from_request(body)
        resp = self.query_proto("/cosmos.tx.v1beta1.Service/Simulate", SimulateRequest(tx_bytes=raw), SimulateResponse)
        return _to_dict(resp)

    def broadcast(self, body: dict[str, Any]) -> dict[str, Any]:
        """``BroadcastTxResponse`` JSON; CheckTx rejections are HTTP 200 with a non-zero code (as the SDK)."""
        try:
            req = ParseDict(body, BroadcastTxRequest())
        except ParseError as exc:
            raise RestError(GRPC_INVALID_ARGUMENT, f"invalid broadcast request: {exc}") from exc
        if not req.tx_bytes:
            raise RestError(GRPC_INVALID_ARGUMENT, "invalid empty tx")
        mode = _MODES.get(req.mode)
        if mode is None:
            raise RestError(GRPC_INVALID_ARGUMENT, "supported types: sync, async, block (commit)")
        try:
            result = self.backend.broadcast_tx(bytes(req.tx_bytes), mode)
        except TimeoutError as exc:
            raise RestError(GRPC_UNKNOWN, f"timed out waiting for tx to be included in a block: {exc}") from exc
        except ChainError as exc:  # e.g. evicted while waiting for the block
            raise RestError(GRPC_UNKNOWN, str(exc)) from exc
        return _to_dict(ParseDict(_broadcast_response(result), BroadcastTxResponse()))


# ---------------------------------------------------------------------- HTTP transport
MAX_BODY = 4 << 20  # bytes of a POST body


def _json_response(status: int, payload: dict[str, Any]) -> Response:
    return Response(json.dumps(payload).encode(), status_code=status, media_type="application/json")


def rest_asgi_app(api: RestApi, workers: int = DEFAULT_WORKERS) -> Starlette:
    """The Starlette app answering every GET/POST through ``api`` (blocking calls in a bounded pool)."""
    limiter: list[Any] = []  # the CapacityLimiter, created inside the server's event loop

    async def endpoint(request: Request) -> Response:
        if not limiter:
            limiter.append(worker_limiter(workers))
        # the raw path, split before unquoting (as grpc-gateway): base64 queries may hold %2F
        path = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
        try:
            if request.method == "GET":
                params = parse_qs(request.scope.get("query_string", b"").decode("latin-1"))
                payload = await run_blocking(limiter[0], api.get, path, params)
            else:
                try:
                    n = int(request.headers.get("content-length") or 0)
                except ValueError:
                    n = -1
                if not 0 <= n <= MAX_BODY:
                    resp = _json_response(400, RestError(
                        GRPC_INVALID_ARGUMENT, f"bad request body length (max {MAX_BODY} bytes)").body())
                    resp.headers["connection"] = "close"  # the body is not read: the connection cannot be reused
                    return resp
                raw = await request.body()
                try:
                    body = json.loads(raw or b"{}", object_pairs_hook=OrderedDict)
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    raise RestError(GRPC_INVALID_ARGUMENT, f"request body is not JSON: {exc}") from exc
                payload = await run_blocking(limiter[0], api.post, path, body)
            return _json_response(200, payload)
        except RestError as exc:
            return _json_response(exc.http_status, exc.body())
        except OverflowError as exc:  # a number too large for the store (e.g. a 30-digit height)
            return _json_response(400, RestError(GRPC_INVALID_ARGUMENT, f"number out of range: {exc}").body())
        except Exception as exc:  # noqa: BLE001 - answer, never drop the connection
            log.exception("REST %s %s failed", request.method, path)
            return _json_response(500, {"code": GRPC_INTERNAL,
                                        "message": f"internal error ({type(exc).__name__}): {exc}", "details": []})

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])])


class RestServer:
    """The REST gateway for :class:`RestApi` on loopback (uvicorn + Starlette); ``port=0`` picks a free port.

    The socket is bound in the constructor; ``workers`` bounds the threads answering at once.
    Use ``url`` for plain HTTP and ``cosmpy_url`` (``rest+http://...``) for ``NetworkConfig``.
    """

    def __init__(self, node_or_backend: EmbeddedChain | ChainBackend, host: str = "127.0.0.1", port: int = 0,
                 *, node_info: dict[str, str] | None = None, workers: int = DEFAULT_WORKERS) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"RestServer only listens on loopback, not {host!r}")
        backend = EmbeddedBackend(node_or_backend) if isinstance(node_or_backend, EmbeddedChain) else node_or_backend
        self.api = RestApi(backend, node_info)
        self._http = BackgroundHttpServer(rest_asgi_app(self.api, workers), host, port, name="rest")

    @property
    def port(self) -> int:
        """The bound port."""
        return self._http.port

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self._http.host}:{self.port}"

    @property
    def cosmpy_url(self) -> str:
        """``rest+http://host:port`` for cosmpy's ``NetworkConfig``."""
        return "rest+" + self.url

    def start(self) -> "RestServer":
        """Serve in a daemon thread (idempotent)."""
        self._http.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and the keep-alive connections."""
        self._http.stop()

    def __enter__(self) -> "RestServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalChain:
    """A ready-to-use local chain: :class:`ChainApp` + :class:`EmbeddedChain` + :class:`RestServer`.

    Example::

        with LocalChain("bbn-local-1", build_genesis({addr: 10**9})) as chain:
            client = chain.ledger_client()
            client.send_tokens(...).wait_to_complete()
    """

    def __init__(self, chain_id: str, genesis: dict[str, Any] | None, *, home: str | None = None,
                 block_interval: float = 0.2, app_kwargs: dict[str, Any] | None = None) -> None:
        from .app import ChainApp

        self.app = ChainApp(chain_id, home, **(app_kwargs or {}))
        try:
            self.node = EmbeddedChain(self.app, block_interval, genesis=genesis)
            self.rest = RestServer(self.node).start()
        except BaseException:
            self.app.close()
            raise

    @property
    def url(self) -> str:
        """``rest+http://127.0.0.1:PORT`` (cosmpy ``NetworkConfig.url``)."""
        return self.rest.cosmpy_url

    def network_config(self, fee_minimum_gas_price: float | None = None) -> Any:
        """cosmpy ``NetworkConfig`` for this chain (fee denom and price from the chain's own params)."""
        from cosmpy.aerial.config import NetworkConfig

        denom, price = self.app.fee_params()
        return NetworkConfig(chain_id=self.app.chain_id, url=self.url, fee_denomination=denom,
                             staking_denomination=denom,
                             fee_minimum_gas_price=float(price) if fee_minimum_gas_price is None
                             else fee_minimum_gas_price)

    def ledger_client(self, query_interval_secs: float = 0.1, query_timeout_secs: float = 30) -> Any:
        """An (unmodified) cosmpy ``LedgerClient`` talking to :attr:`rest`."""
        from cosmpy.aerial.client import LedgerClient

        return LedgerClient(self.network_config(), query_interval_secs=query_interval_secs,  # type: ignore[arg-type]
                            query_timeout_secs=query_timeout_secs)  # type: ignore[arg-type]

    def close(self) -> None:
        """Stop the server and the node, close the database."""
        self.rest.stop()
        self.node.close()

    def __enter__(self) -> "LocalChain":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
