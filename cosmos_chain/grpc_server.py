"""gRPC twin of :mod:`cosmos_chain.rest`: the same subset, for ``LedgerClient`` with ``grpc+http://``.

Services (cosmpy's generated servicers): ``cosmos.auth.v1beta1.Query/Account``,
``cosmos.bank.v1beta1.Query/{Balance,AllBalances}``, ``cosmos.tx.v1beta1.Service/{Simulate,BroadcastTx,GetTx}``,
``cosmos.base.tendermint.v1beta1.Service/{GetLatestBlock,GetBlockByHeight,GetNodeInfo,GetSyncing}``,
``cosmos.consensus.v1.Query/Params`` and ``cosmwasm.wasm.v1.Query/SmartContractState``. Errors are grpc
statuses with the chain's reason as details (an unknown tx: ``NotFound``, ``tx not found: HASH``).
Unimplemented methods answer ``UNIMPLEMENTED`` (the servicers' defaults).
"""

from __future__ import annotations

import ipaddress
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, NoReturn

import grpc
from cosmpy.protos.cosmos.auth.v1beta1 import query_pb2_grpc as auth_grpc
from cosmpy.protos.cosmos.auth.v1beta1.query_pb2 import QueryAccountResponse
from cosmpy.protos.cosmos.bank.v1beta1 import query_pb2_grpc as bank_grpc
from cosmpy.protos.cosmos.bank.v1beta1.query_pb2 import QueryAllBalancesResponse, QueryBalanceResponse
from cosmpy.protos.cosmos.base.tendermint.v1beta1 import query_pb2_grpc as tm_grpc
from cosmpy.protos.cosmos.base.tendermint.v1beta1.query_pb2 import (
    GetBlockByHeightResponse,
    GetLatestBlockResponse,
    GetNodeInfoResponse,
    GetSyncingResponse,
)
from cosmpy.protos.cosmos.consensus.v1 import query_pb2_grpc as consensus_grpc
from cosmpy.protos.cosmos.consensus.v1.query_pb2 import QueryParamsResponse as ConsensusParamsResponse
from cosmpy.protos.cosmos.tx.v1beta1 import service_pb2_grpc as tx_grpc
from cosmpy.protos.cosmos.tx.v1beta1.service_pb2 import (
    BroadcastTxResponse,
    GetTxResponse,
    SimulateRequest,
    SimulateResponse,
)
from cosmpy.protos.cosmos.tx.v1beta1.tx_pb2 import TxRaw
from cosmpy.protos.cosmwasm.wasm.v1 import query_pb2_grpc as wasm_grpc
from cosmpy.protos.cosmwasm.wasm.v1.query_pb2 import QuerySmartContractStateResponse
from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.message import Message

from .node import EmbeddedChain
from .rest import GRPC_INVALID_ARGUMENT, ChainBackend, EmbeddedBackend, RestApi, RestError, wasm_msgs_as_base64

__all__ = ["GrpcServer"]

_STATUS = {s.value[0]: s for s in grpc.StatusCode}


def _abort(context: grpc.ServicerContext, exc: RestError) -> NoReturn:
    context.abort(_STATUS.get(exc.code, grpc.StatusCode.UNKNOWN), exc.message)
    raise AssertionError("unreachable")  # context.abort raises


def _call(context: grpc.ServicerContext, fn: Callable[[], Message]) -> Message:
    try:
        return fn()
    except RestError as exc:
        _abort(context, exc)


class _Handlers:
    """All servicer methods, delegating to :class:`RestApi` (same validation, same errors)."""

    def __init__(self, api: RestApi) -> None:
        self.api = api

    def query(self, path: str, request: Message, resp_cls: type[Message], context: grpc.ServicerContext) -> Message:
        return _call(context, lambda: self.api.query_proto(path, request, resp_cls))

    def simulate(self, request: Any, context: grpc.ServicerContext) -> Message:
        def run() -> Message:
            if request.tx_bytes:
                raw = bytes(request.tx_bytes)
            elif request.HasField("tx"):
                tx = request.tx
                raw = TxRaw(body_bytes=tx.body.SerializeToString(), auth_info_bytes=tx.auth_info.SerializeToString(),
                            signatures=list(tx.signatures)).SerializeToString()
            else:
                raise RestError(GRPC_INVALID_ARGUMENT, "empty txs are not allowed: give tx_bytes or tx")
            return self.api.query_proto("/cosmos.tx.v1beta1.Service/Simulate", SimulateRequest(tx_bytes=raw),
                                   SimulateResponse)

        return _call(context, run)

    def get_tx(self, request: Any, context: grpc.ServicerContext) -> Message:
        def run() -> Message:
            d = self.api.get_tx(request.hash)
            wasm_msgs_as_base64(d["tx"])
            wasm_msgs_as_base64(d["tx_response"]["tx"])
            return ParseDict(d, GetTxResponse())

        return _call(context, run)

    def broadcast(self, request: Any, context: grpc.ServicerContext) -> Message:
        def run() -> Message:
            return ParseDict(self.api.broadcast(MessageToDict(request, preserving_proto_field_name=True)),
                             BroadcastTxResponse())

        return _call(context, run)

    def block(self, which: str, resp_cls: type[Message], context: grpc.ServicerContext) -> Message:
        return _call(context, lambda: ParseDict(self.api.get_block(which), resp_cls()))


def _servicers(h: _Handlers) -> list[tuple[Callable[[Any, grpc.Server], None], Any]]:
    class Auth(auth_grpc.QueryServicer):
        def Account(self, request, context):  # noqa: N802 - generated API
            return h.query("/cosmos.auth.v1beta1.Query/Account", request, QueryAccountResponse, context)

    class Bank(bank_grpc.QueryServicer):
        def Balance(self, request, context):  # noqa: N802
            return h.query("/cosmos.bank.v1beta1.Query/Balance", request, QueryBalanceResponse, context)

        def AllBalances(self, request, context):  # noqa: N802
            return h.query("/cosmos.bank.v1beta1.Query/AllBalances", request, QueryAllBalancesResponse, context)

    class Tx(tx_grpc.ServiceServicer):
        def Simulate(self, request, context):  # noqa: N802
            return h.simulate(request, context)

        def GetTx(self, request, context):  # noqa: N802
            return h.get_tx(request, context)

        def BroadcastTx(self, request, context):  # noqa: N802
            return h.broadcast(request, context)

    class Tendermint(tm_grpc.ServiceServicer):
        def GetLatestBlock(self, request, context):  # noqa: N802
            return h.block("latest", GetLatestBlockResponse, context)

        def GetBlockByHeight(self, request, context):  # noqa: N802
            return h.block(str(request.height), GetBlockByHeightResponse, context)

        def GetNodeInfo(self, request, context):  # noqa: N802
            return ParseDict(h.api.get_node_info(), GetNodeInfoResponse())

        def GetSyncing(self, request, context):  # noqa: N802
            return GetSyncingResponse(syncing=False)

    class Consensus(consensus_grpc.QueryServicer):
        def Params(self, request, context):  # noqa: N802
            return ParseDict({"params": h.api.consensus_params}, ConsensusParamsResponse())

    class Wasm(wasm_grpc.QueryServicer):
        def SmartContractState(self, request, context):  # noqa: N802
            resp = h.query("/cosmwasm.wasm.v1.Query/SmartContractState", request, QuerySmartContractStateResponse,
                           context)
            try:
                json.loads(resp.data)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                context.abort(grpc.StatusCode.INTERNAL, f"contract reply is not JSON: {exc}")
            return resp

    return [
        (auth_grpc.add_QueryServicer_to_server, Auth()),
        (bank_grpc.add_QueryServicer_to_server, Bank()),
        (tx_grpc.add_ServiceServicer_to_server, Tx()),
        (tm_grpc.add_ServiceServicer_to_server, Tendermint()),
        (consensus_grpc.add_QueryServicer_to_server, Consensus()),
        (wasm_grpc.add_QueryServicer_to_server, Wasm()),
    ]


class GrpcServer:
    """gRPC server on loopback (``port=0``: a free port); ``cosmpy_url`` is ``grpc+http://host:port``."""

    def __init__(self, node_or_backend: EmbeddedChain | ChainBackend, host: str = "127.0.0.1", port: int = 0,
                 *, max_workers: int = 8, node_info: dict[str, str] | None = None) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"GrpcServer only listens on loopback, not {host!r}")
        backend = EmbeddedBackend(node_or_backend) if isinstance(node_or_backend, EmbeddedChain) else node_or_backend
        self.api = RestApi(backend, node_info)
        self._server = grpc.server(ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"))
        for add, servicer in _servicers(_Handlers(self.api)):
            add(servicer, self._server)
        self.host = host
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"cannot bind gRPC server to {host}:{port}")
        self._started = False

    @property
    def cosmpy_url(self) -> str:
        """``grpc+http://host:port`` for cosmpy's ``NetworkConfig``."""
        return f"grpc+http://{self.host}:{self.port}"

    def start(self) -> "GrpcServer":
        """Start serving (idempotent)."""
        if not self._started:
            self._server.start()
            self._started = True
        return self

    def stop(self, grace: float = 1.0) -> None:
        """Stop serving."""
        self._server.stop(grace).wait(10)
        self._started = False

    def __enter__(self) -> "GrpcServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
