"""Bitcoin Core-dialect JSON-RPC server for an :class:`~regtest.embedded.EmbeddedNode`.

An HTTP server on 127.0.0.1 (uvicorn + Starlette via :mod:`http_serving`: backlog 1024,
a bounded worker pool) with basic auth, answering JSON-RPC 1.0/1.1 (bitcoind's
``{"result", "error", "id"}`` with HTTP 500/404 on errors) and 2.0 (HTTP 200, ``jsonrpc`` member),
batches and named parameters, with bitcoind's error codes (-5 not found, -8 bad parameter,
-22 decode failed, -25 missing inputs / fee too high, -26 rejected, -27 already in chain,
-32601 unknown method). Amounts are JSON numbers with 8 decimals, as bitcoind writes them.
Clients such as python-bitcoinlib's ``bitcoin.rpc.Proxy`` work unmodified::

    server = RpcServer(node).start()
    proxy = bitcoin.rpc.Proxy(server.url)
"""

from __future__ import annotations

import base64
import hmac
import inspect
import json
import re
import secrets
import threading
import time
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from btc_staking.headers import BlockHeader, bits_to_target
from btc_staking.tx import OutPoint, Tx, compact_size
from http_serving import BackgroundHttpServer, run_blocking, worker_limiter

from .address import address_to_script
from .address import script_to_address as _script_to_address
from .backend import BackendError, TxRejected
from .embedded import MEMPOOL_HEIGHT, BlockRejected, EmbeddedNode

__all__ = ["RpcServer", "RpcError", "address_to_script", "script_to_address", "script_type", "script_asm"]

RPC_MISC_ERROR = -1
RPC_TYPE_ERROR = -3
RPC_INVALID_ADDRESS_OR_KEY = -5
RPC_INVALID_PARAMETER = -8
RPC_DESERIALIZATION_ERROR = -22
RPC_VERIFY_ERROR = -25
RPC_VERIFY_REJECTED = -26
RPC_VERIFY_ALREADY_IN_CHAIN = -27
RPC_INVALID_REQUEST = -32600
RPC_METHOD_NOT_FOUND = -32601
RPC_PARSE_ERROR = -32700

_HTTP_STATUS = {RPC_INVALID_REQUEST: 400, RPC_METHOD_NOT_FOUND: 404}
_MAX_BODY = 64 * 1024 * 1024
_COIN = 100_000_000
_DIFF1_TARGET = 0x00000000FFFF0000000000000000000000000000000000000000000000000000
DEFAULT_MAX_FEE_RATE = 0.10  # BTC/kvB, bitcoind's sendrawtransaction default


class RpcError(Exception):
    """A JSON-RPC error answer (bitcoind code and message)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- addresses


def script_to_address(script: bytes, network: str = "regtest") -> str | None:
    """Address of a standard scriptPubKey, or None when it has none (bitcoind leaves it out)."""
    try:
        return _script_to_address(script, network)
    except ValueError:
        return None


def script_type(script: bytes) -> str:
    """bitcoind's scriptPubKey ``type`` name."""
    s = bytes(script)
    if s == b"\x51\x02\x4e\x73":
        return "anchor"
    if len(s) == 34 and s[:2] == b"\x51\x20":
        return "witness_v1_taproot"
    if len(s) == 22 and s[:2] == b"\x00\x14":
        return "witness_v0_keyhash"
    if len(s) == 34 and s[:2] == b"\x00\x20":
        return "witness_v0_scripthash"
    if len(s) == 25 and s[:3] == b"\x76\xa9\x14" and s[23:] == b"\x88\xac":
        return "pubkeyhash"
    if len(s) == 23 and s[:2] == b"\xa9\x14" and s[22] == 0x87:
        return "scripthash"
    if s[:1] == b"\x6a":
        return "nulldata"
    if 4 <= len(s) <= 42 and 0x51 <= s[0] <= 0x60 and s[1] == len(s) - 2:
        return "witness_unknown"
    if len(s) in (35, 67) and s[-1] == 0xAC and s[0] == len(s) - 2:
        return "pubkey"
    return "nonstandard"


_OPCODES = {
    0x00: "0", 0x4F: "-1", 0x61: "OP_NOP", 0x63: "OP_IF", 0x64: "OP_NOTIF", 0x67: "OP_ELSE", 0x68: "OP_ENDIF",
    0x69: "OP_VERIFY", 0x6A: "OP_RETURN", 0x75: "OP_DROP", 0x76: "OP_DUP", 0x82: "OP_SIZE", 0x87: "OP_EQUAL",
    0x88: "OP_EQUALVERIFY", 0x9C: "OP_NUMEQUAL", 0x9D: "OP_NUMEQUALVERIFY", 0xA8: "OP_SHA256",
    0xA9: "OP_HASH160", 0xAA: "OP_HASH256", 0xAB: "OP_CODESEPARATOR", 0xAC: "OP_CHECKSIG",
    0xAD: "OP_CHECKSIGVERIFY", 0xAE: "OP_CHECKMULTISIG", 0xAF: "OP_CHECKMULTISIGVERIFY",
    0xB1: "OP_CHECKLOCKTIMEVERIFY", 0xB2: "OP_CHECKSEQUENCEVERIFY", 0xBA: "OP_CHECKSIGADD",
    0x93: "OP_ADD", 0x94: "OP_SUB", 0xA0: "OP_GREATERTHAN", 0xA2: "OP_GREATERTHANOREQUAL", 0x74: "OP_DEPTH",
}


def script_asm(script: bytes) -> str:
    """bitcoind-style disassembly (pushes as hex, small ints as numbers); '[error]' on a bad push."""
    s, i, out = bytes(script), 0, []
    while i < len(s):
        op = s[i]
        i += 1
        if 0x01 <= op <= 0x4E:
            if op < 0x4C:
                n = op
            else:
                width = {0x4C: 1, 0x4D: 2, 0x4E: 4}[op]
                if i + width > len(s):
                    out.append("[error]")
                    break
                n = int.from_bytes(s[i : i + width], "little")
                i += width
            if i + n > len(s):
                out.append("[error]")
                break
            out.append(s[i : i + n].hex())
            i += n
        elif 0x51 <= op <= 0x60:
            out.append(str(op - 0x50))
        else:
            out.append(_OPCODES.get(op, f"OP_UNKNOWN_{op:#04x}"))
    return " ".join(out)


# --------------------------------------------------------------------------- JSON helpers


class _Amount:
    """Satoshis rendered as a bitcoind amount (a JSON number with 8 decimals)."""

    __slots__ = ("sats",)

    def __init__(self, sats: int) -> None:
        self.sats = sats


_AMOUNT_MARK = "\x00amount:"
_AMOUNT_RE = re.compile(r'"\\u0000amount:(-?[0-9]+\.[0-9]{8})"')


def _json_default(obj: Any) -> Any:
    if isinstance(obj, _Amount):
        sign = "-" if obj.sats < 0 else ""
        v = abs(obj.sats)
        return f"{_AMOUNT_MARK}{sign}{v // _COIN}.{v % _COIN:08d}"
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def _dumps(obj: Any) -> bytes:
    text = json.dumps(obj, default=_json_default, separators=(",", ":"))
    return _AMOUNT_RE.sub(lambda m: m.group(1), text).encode()


def _parse_amount_btc(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RpcError(RPC_TYPE_ERROR, "Amount is not a number or string")
    try:
        v = float(value)
    except ValueError:
        raise RpcError(RPC_TYPE_ERROR, "Invalid amount") from None
    if v < 0:
        raise RpcError(RPC_TYPE_ERROR, "Amount out of range")
    return v


def _hash_param(value: Any, name: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise RpcError(RPC_INVALID_PARAMETER, f"{name} must be of length 64 (not {len(value) if isinstance(value, str) else 0}, for '{value}')")
    return value.lower()


def _int_param(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RpcError(RPC_TYPE_ERROR, f"JSON value of type {type(value).__name__} for {name} is not of expected type number")
    return value


def _verbosity(value: Any, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    raise RpcError(RPC_TYPE_ERROR, "verbosity must be a number or boolean")


def _reject_error(exc: TxRejected) -> RpcError:
    reason = exc.reason
    if reason.startswith("TX decode failed"):
        return RpcError(RPC_DESERIALIZATION_ERROR, "TX decode failed. Make sure the tx has at least one input.")
    if reason == "bad-txns-inputs-missingorspent":
        return RpcError(RPC_VERIFY_ERROR, reason)
    if reason == "txn-already-known":
        return RpcError(RPC_VERIFY_ALREADY_IN_CHAIN, "Transaction outputs already in utxo set")
    if reason == "max-fee-exceeded":
        return RpcError(RPC_VERIFY_ERROR, "Fee exceeds maximum configured by user (e.g. -maxtxfee, maxfeerate)")
    return RpcError(RPC_VERIFY_REJECTED, reason)


# --------------------------------------------------------------------------- server


class RpcServer:
    """bitcoind-dialect JSON-RPC over HTTP for an EmbeddedNode, bound to 127.0.0.1 only."""

    def __init__(
        self,
        node: EmbeddedNode,
        host: str = "127.0.0.1",
        port: int = 0,
        user: str = "btcmesh",
        password: str | None = None,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        """`on_stop` runs after the ``stop`` RPC (or stop()) has shut the server down."""
        if host != "127.0.0.1":
            raise ValueError(f"RpcServer binds 127.0.0.1 only, not {host!r}")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"bad port {port!r}")
        if ":" in user:
            raise ValueError("user must not contain ':'")
        self.node = node
        self.host = host
        self.user = user
        self.password = password if password is not None else secrets.token_hex(16)
        self._expected_auth = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        self._httpd: BackgroundHttpServer | None = None
        self._port = port
        self._started_at = time.time()
        self.stopped = threading.Event()
        self._on_stop = on_stop
        self._state_lock = threading.Lock()
        self._methods: dict[str, Callable[..., Any]] = {
            name[4:]: getattr(self, name) for name in dir(self) if name.startswith("rpc_")
        }

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        """The bound port (after start())."""
        return self._httpd.port if self._httpd is not None else self._port

    @property
    def url(self) -> str:
        """``http://user:password@127.0.0.1:port`` (what bitcoin.rpc.Proxy(service_url=...) takes)."""
        return f"http://{self.user}:{self.password}@{self.host}:{self.port}"

    @property
    def plain_url(self) -> str:
        """``http://127.0.0.1:port`` without credentials."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> "RpcServer":
        """Bind and serve in a background thread (uvicorn + Starlette); returns self."""
        if self._httpd is not None:
            raise RuntimeError("RpcServer already started")
        self._httpd = BackgroundHttpServer(self._asgi_app(), self.host, self._port, name="rpc-server")
        self.stopped.clear()
        try:
            self._httpd.start()
        except BaseException:
            self._httpd.stop()
            self._httpd = None
            raise
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and keep-alive connections (idempotent). The node stays open."""
        with self._state_lock:
            httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._port = httpd.port
        httpd.stop()
        self.stopped.set()
        if self._on_stop is not None:
            self._on_stop()

    def _asgi_app(self) -> Starlette:
        limiter: list[Any] = []  # created inside the server's event loop

        def error(status: int, code: int, message: str) -> Response:
            return _json_bytes(status, _dumps({"result": None, "error": {"code": code, "message": message}, "id": None}))

        async def post(request: Request) -> Response:
            if not self.check_auth(request.headers.get("authorization")):
                return Response(b"", status_code=401, headers={"WWW-Authenticate": 'Basic realm="jsonrpc"'})
            try:
                length = int(request.headers.get("content-length", "0"))
            except ValueError:
                length = -1
            if not 0 <= length <= _MAX_BODY:
                resp = error(400, RPC_INVALID_REQUEST, "bad Content-Length")
                resp.headers["connection"] = "close"
                return resp
            try:
                rpc_request = json.loads(await request.body())
            except ValueError:
                return error(500, RPC_PARSE_ERROR, "Parse error")
            if not limiter:
                limiter.append(worker_limiter())
            status, reply = await run_blocking(limiter[0], self.handle, rpc_request)
            return _json_bytes(status, _dumps(reply))

        async def get(request: Request) -> Response:
            return _json_bytes(405, b"JSONRPC server handles only POST requests")

        return Starlette(routes=[Route("/{path:path}", post, methods=["POST"]),
                                 Route("/{path:path}", get, methods=["GET"])])

    def __enter__(self) -> "RpcServer":
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ dispatch

    def check_auth(self, header: str | None) -> bool:
        """Constant-time basic-auth check."""
        if not header or not header.startswith("Basic "):
            return False
        return hmac.compare_digest(header[6:].strip().encode(), self._expected_auth.encode())

    def handle(self, request: Any) -> tuple[int, Any]:
        """One JSON-RPC request object or a batch; returns (HTTP status, reply)."""
        if isinstance(request, list):
            return 200, [self._handle_one(r)[1] for r in request]
        return self._handle_one(request)

    def _handle_one(self, request: Any) -> tuple[int, dict]:
        if not isinstance(request, dict):
            return self._reply(None, None, RpcError(RPC_INVALID_REQUEST, "Invalid Request object"), False)
        v2 = request.get("jsonrpc") == "2.0"
        rid = request.get("id")
        method = request.get("method")
        params = request.get("params", [])
        if not isinstance(method, str):
            return self._reply(rid, None, RpcError(RPC_INVALID_REQUEST, "Method must be a string"), v2)
        if params is None:
            params = []
        if not isinstance(params, (list, dict)):
            return self._reply(rid, None, RpcError(RPC_INVALID_REQUEST, "Params must be an array or object"), v2)
        fn = self._methods.get(method)
        if fn is None:
            return self._reply(rid, None, RpcError(RPC_METHOD_NOT_FOUND, "Method not found"), v2)
        try:
            sig = inspect.signature(fn)
            try:
                bound = sig.bind(*params) if isinstance(params, list) else sig.bind(**params)
            except TypeError as exc:
                raise RpcError(RPC_MISC_ERROR, f"{method}: wrong parameters ({exc})") from None
            return self._reply(rid, fn(*bound.args, **bound.kwargs), None, v2)
        except RpcError as exc:
            return self._reply(rid, None, exc, v2)
        except TxRejected as exc:
            return self._reply(rid, None, _reject_error(exc), v2)
        except BlockRejected as exc:
            return self._reply(rid, None, RpcError(RPC_VERIFY_ERROR, exc.reason), v2)
        except BackendError as exc:
            return self._reply(rid, None, RpcError(RPC_MISC_ERROR, str(exc)), v2)
        except Exception as exc:  # noqa: BLE001 - an RPC server answers, it does not crash
            return self._reply(rid, None, RpcError(RPC_MISC_ERROR, f"{type(exc).__name__}: {exc}"), v2)

    @staticmethod
    def _reply(rid: Any, result: Any, error: RpcError | None, v2: bool) -> tuple[int, dict]:
        err = None if error is None else {"code": error.code, "message": error.message}
        if v2:
            body = {"jsonrpc": "2.0", "id": rid}
            body.update({"error": err} if err else {"result": result})
            return 200, body
        status = 200 if err is None else _HTTP_STATUS.get(error.code, 500)  # type: ignore[union-attr]
        return status, {"result": result, "error": err, "id": rid}

    # ------------------------------------------------------------------ chain

    def _block_json(self, block_hash: str, verbosity: int) -> Any:
        node = self.node
        with node.lock:
            raw = node.get_block(block_hash)
            if verbosity <= 0:
                return raw.hex()
            info = self._header_json(block_hash)
            txs = node.get_block_txs(block_hash)
            stripped = 80 + len(compact_size(len(txs))) + sum(len(t.serialize(include_witness=False)) for t in txs)
            info.update(strippedsize=stripped, size=len(raw), weight=stripped * 3 + len(raw))
            if verbosity == 1:
                info["tx"] = [t.txid_hex() for t in txs]
            else:
                info["tx"] = [self._tx_json(t) for t in txs]
                fees = node.get_block_fees(block_hash)  # undo data: active-chain blocks only, as in bitcoind
                if fees is not None:
                    for item, fee in zip(info["tx"][1:], fees):
                        item["fee"] = _Amount(fee)
            return info

    def _header_json(self, block_hash: str) -> dict:
        node = self.node
        header = BlockHeader.parse(node.get_block_header(block_hash))
        height = node.get_block_height(block_hash)
        tip = node.get_block_count()
        active = node.is_in_active_chain(block_hash)
        out: dict[str, Any] = {
            "hash": block_hash,
            "confirmations": tip - height + 1 if active else -1,
            "height": height,
            "version": header.version,
            "versionHex": f"{header.version & 0xFFFFFFFF:08x}",
            "merkleroot": header.merkle_root[::-1].hex(),
            "time": header.timestamp,
            "mediantime": node.median_time_past(block_hash),
            "nonce": header.nonce,
            "bits": f"{header.bits:08x}",
            "target": f"{bits_to_target(header.bits):064x}",
            "difficulty": _DIFF1_TARGET / bits_to_target(header.bits),
            "chainwork": f"{node.chain_work(block_hash):064x}",
            "nTx": len(node.get_block_txs(block_hash)),
        }
        if height > 0:
            out["previousblockhash"] = header.prev_hash[::-1].hex()
        if active and height < tip:
            out["nextblockhash"] = node.get_block_hash(height + 1)
        return out

    def _tx_json(self, tx: Tx) -> dict:
        vin = []
        for txin in tx.inputs:
            if txin.prevout.txid == b"\x00" * 32 and txin.prevout.vout == 0xFFFFFFFF:
                item: dict[str, Any] = {"coinbase": txin.script_sig.hex()}
            else:
                item = {
                    "txid": txin.prevout.txid[::-1].hex(),
                    "vout": txin.prevout.vout,
                    "scriptSig": {"asm": script_asm(txin.script_sig), "hex": txin.script_sig.hex()},
                }
            if txin.witness:
                item["txinwitness"] = [w.hex() for w in txin.witness]
            item["sequence"] = txin.sequence
            vin.append(item)
        return {
            "txid": tx.txid_hex(),
            "hash": tx.wtxid()[::-1].hex(),
            "version": tx.version,
            "size": len(tx.serialize()),
            "vsize": tx.vsize(),
            "weight": tx.weight(),
            "locktime": tx.locktime,
            "vin": vin,
            "vout": [
                {"value": _Amount(o.value), "n": n, "scriptPubKey": self._spk_json(o.script_pubkey)}
                for n, o in enumerate(tx.outputs)
            ],
            "hex": tx.serialize().hex(),
        }

    @staticmethod
    def _spk_json(script: bytes) -> dict:
        out: dict[str, Any] = {"asm": script_asm(script), "hex": script.hex(), "type": script_type(script)}
        address = script_to_address(script)
        if address is not None:
            out["address"] = address
        return out

    def _mempool_entry_json(self, txid: str) -> dict:
        entry = self.node.get_mempool_entry(txid)
        mempool = set(self.node.get_mempool())
        depends = sorted({i.prevout.txid[::-1].hex() for i in entry.tx.inputs} & mempool)
        spentby = sorted(
            t for t in mempool
            if any(i.prevout.txid == entry.txid for i in self.node.get_mempool_entry(t).tx.inputs)
        )
        fee = _Amount(entry.fee)
        return {
            "vsize": entry.vsize,
            "weight": entry.tx.weight(),
            "time": entry.time,
            "height": entry.height,
            "descendantcount": 1 + len(spentby),
            "descendantsize": entry.vsize,
            "ancestorcount": 1 + len(depends),
            "ancestorsize": entry.vsize,
            "wtxid": entry.tx.wtxid()[::-1].hex(),
            "fees": {"base": fee, "modified": fee, "ancestor": fee, "descendant": fee},
            "depends": depends,
            "spentby": spentby,
            "bip125-replaceable": False,
            "unbroadcast": False,
        }

    # ------------------------------------------------------------------ RPC methods (rpc_<name>)

    def rpc_getblockcount(self) -> int:
        return self.node.get_block_count()

    def rpc_getbestblockhash(self) -> str:
        return self.node.get_best_block_hash()

    def rpc_getblockhash(self, height: Any) -> str:
        height = _int_param(height, "height")
        with self.node.lock:
            if not 0 <= height <= self.node.get_block_count():
                raise RpcError(RPC_INVALID_PARAMETER, "Block height out of range")
            return self.node.get_block_hash(height)

    def rpc_getblock(self, blockhash: Any, verbosity: Any = None) -> Any:
        block_hash = _hash_param(blockhash, "blockhash")
        try:
            return self._block_json(block_hash, _verbosity(verbosity, 1))
        except BackendError:
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Block not found") from None

    def rpc_getblockheader(self, blockhash: Any, verbose: Any = True) -> Any:
        block_hash = _hash_param(blockhash, "blockhash")
        with self.node.lock:
            try:
                raw = self.node.get_block_header(block_hash)
            except BackendError:
                raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Block not found") from None
            return self._header_json(block_hash) if _verbosity(verbose, 1) else raw.hex()

    def rpc_getrawtransaction(self, txid: Any, verbose: Any = 0, blockhash: Any = None, *, verbosity: Any = None) -> Any:
        txid = _hash_param(txid, "parameter 1")
        if verbosity is not None:  # bitcoind ≥ 25 names the second parameter "verbosity"
            verbose = verbosity
        node = self.node
        with node.lock:
            try:
                tx = Tx.parse(node.get_raw_transaction(txid))
            except BackendError:
                tx = None
                if blockhash is not None:  # a stale-block lookup, like bitcoind's blockhash argument
                    bh = _hash_param(blockhash, "parameter 3")
                    try:
                        tx = next((t for t in node.get_block_txs(bh) if t.txid_hex() == txid), None)
                    except BackendError:
                        raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Block hash not found") from None
                if tx is None:
                    raise RpcError(
                        RPC_INVALID_ADDRESS_OR_KEY,
                        "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.",
                    ) from None
            if not _verbosity(verbose, 0):
                return tx.serialize().hex()
            out = self._tx_json(tx)
            loc = node.get_tx_block(txid)
            if loc is not None:
                header = BlockHeader.parse(node.get_block_header(loc[0]))
                out.update(
                    blockhash=loc[0],
                    confirmations=node.get_block_count() - node.get_block_height(loc[0]) + 1,
                    time=header.timestamp,
                    blocktime=header.timestamp,
                )
            return out

    def rpc_decoderawtransaction(self, hexstring: Any, iswitness: Any = None) -> dict:
        try:
            return self._tx_json(Tx.parse(bytes.fromhex(hexstring)))
        except (ValueError, TypeError):
            raise RpcError(RPC_DESERIALIZATION_ERROR, "TX decode failed") from None

    def rpc_sendrawtransaction(self, hexstring: Any, maxfeerate: Any = DEFAULT_MAX_FEE_RATE, maxburnamount: Any = 0) -> str:
        try:
            raw = bytes.fromhex(hexstring) if isinstance(hexstring, str) else None
            tx = Tx.parse(raw) if raw is not None else None
        except ValueError:
            tx = None
        if raw is None or tx is None:
            raise RpcError(RPC_DESERIALIZATION_ERROR, "TX decode failed. Make sure the tx has at least one input.")
        burn = round(_parse_amount_btc(maxburnamount) * _COIN)
        if any(o.script_pubkey[:1] == b"\x6a" and o.value > burn for o in tx.outputs):
            raise RpcError(RPC_VERIFY_ERROR, "Unspendable output exceeds maximum configured by user (maxburnamount)")
        rate = _parse_amount_btc(maxfeerate)
        return self.node.send_raw_transaction(raw, max_fee_rate=rate * _COIN / 1000 if rate else None)

    def rpc_testmempoolaccept(self, rawtxs: Any, maxfeerate: Any = DEFAULT_MAX_FEE_RATE) -> list:
        if not isinstance(rawtxs, list) or not rawtxs:
            raise RpcError(RPC_INVALID_PARAMETER, "Array must contain between 1 and 25 transactions.")
        out = []
        for hx in rawtxs:
            try:
                tx = Tx.parse(bytes.fromhex(hx))
            except (ValueError, TypeError):
                raise RpcError(RPC_DESERIALIZATION_ERROR, "TX decode failed") from None
            reason = self.node.test_mempool_accept(tx.serialize())
            item: dict[str, Any] = {"txid": tx.txid_hex(), "wtxid": tx.wtxid()[::-1].hex()}
            if reason is None:
                item.update(allowed=True, vsize=tx.vsize())
            else:
                item.update(allowed=False, **{"reject-reason": reason.split(",")[0]})
            out.append(item)
        return out

    def rpc_getrawmempool(self, verbose: Any = False, mempool_sequence: Any = False) -> Any:
        with self.node.lock:
            txids = self.node.get_mempool()
            if not _verbosity(verbose, 0):
                return txids
            return {t: self._mempool_entry_json(t) for t in txids}

    def rpc_getmempoolentry(self, txid: Any) -> dict:
        txid = _hash_param(txid, "txid")
        with self.node.lock:
            try:
                return self._mempool_entry_json(txid)
            except BackendError:
                raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Transaction not in mempool") from None

    def rpc_getmempoolinfo(self) -> dict:
        with self.node.lock:
            entries = [self.node.get_mempool_entry(t) for t in self.node.get_mempool()]
        return {
            "loaded": True,
            "size": len(entries),
            "bytes": sum(e.vsize for e in entries),
            "usage": sum(len(e.tx.serialize()) for e in entries),
            "total_fee": _Amount(sum(e.fee for e in entries)),
            "maxmempool": 300_000_000,
            "mempoolminfee": _Amount(1000),
            "minrelaytxfee": _Amount(1000),
            "fullrbf": False,
        }

    def rpc_gettxout(self, txid: Any, n: Any, include_mempool: Any = True) -> Any:
        txid = _hash_param(txid, "txid")
        n = _int_param(n, "n")
        if n < 0:
            raise RpcError(RPC_INVALID_PARAMETER, "Invalid vout")
        with self.node.lock:
            coin = self.node.get_utxo(OutPoint.from_hex(txid, n), include_mempool=bool(include_mempool))
            if coin is None:
                return None
            tip = self.node.get_block_count()
            return {
                "bestblock": self.node.get_best_block_hash(),
                "confirmations": 0 if coin.height == MEMPOOL_HEIGHT else tip - coin.height + 1,
                "value": _Amount(coin.output.value),
                "scriptPubKey": self._spk_json(coin.output.script_pubkey),
                "coinbase": coin.coinbase,
            }

    def rpc_generatetoaddress(self, nblocks: Any, address: Any, maxtries: Any = None) -> list[str]:
        nblocks = _int_param(nblocks, "nblocks")
        if nblocks < 0:
            raise RpcError(RPC_INVALID_PARAMETER, "nblocks must be non-negative")
        try:
            script = address_to_script(address)
        except ValueError:
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Error: Invalid address") from None
        return self.node.mine_blocks(nblocks, script)

    def rpc_generateblock(self, output: Any, transactions: Any, submit: Any = True) -> dict:
        try:
            script = address_to_script(output)
        except ValueError:
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Error: Invalid address") from None
        if not isinstance(transactions, list):
            raise RpcError(RPC_TYPE_ERROR, "transactions must be an array")
        if submit is False:
            raise RpcError(RPC_INVALID_PARAMETER, "submit=false is not supported by the embedded node")
        with self.node.lock:
            txs: list[Tx] = []
            for item in transactions:
                if isinstance(item, str) and len(item) == 64:
                    try:
                        txs.append(self.node.get_mempool_entry(item.lower()).tx)
                        continue
                    except BackendError:
                        raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, f"Transaction {item} not in mempool.") from None
                try:
                    txs.append(Tx.parse(bytes.fromhex(item)))
                except (ValueError, TypeError):
                    raise RpcError(RPC_DESERIALIZATION_ERROR, f"Transaction decode failed for {item}") from None
            try:
                (block_hash,) = self.node.mine_fork(self.node.get_best_block_hash(), 1, script, txs)
            except BlockRejected as exc:
                raise RpcError(RPC_VERIFY_ERROR, f"TestBlockValidity failed: {exc.reason}") from None
            except TxRejected as exc:
                raise RpcError(RPC_VERIFY_ERROR, f"TestBlockValidity failed: {exc.reason}") from None
        return {"hash": block_hash}

    def rpc_submitblock(self, hexdata: Any, dummy: Any = None) -> Any:
        try:
            raw = bytes.fromhex(hexdata)
        except (ValueError, TypeError):
            raise RpcError(RPC_DESERIALIZATION_ERROR, "Block decode failed") from None
        with self.node.lock:
            try:
                known = self.node.get_block_height(BlockHeader.parse(raw[:80]).hash_hex()) >= 0
            except (BackendError, ValueError):
                known = False
            if known:
                return "duplicate"
            try:
                block_hash = self.node.submit_block(raw)
            except BlockRejected as exc:
                return exc.reason.split(",")[0].split(" (")[0]  # BIP22 answers are bare reject codes
            return None if self.node.is_in_active_chain(block_hash) else "inconclusive"

    def rpc_invalidateblock(self, blockhash: Any) -> None:
        try:
            self.node.invalidate_block(_hash_param(blockhash, "blockhash"))
        except BlockRejected:
            raise
        except BackendError:
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Block not found") from None

    def rpc_reconsiderblock(self, blockhash: Any) -> None:
        try:
            self.node.reconsider_block(_hash_param(blockhash, "blockhash"))
        except BackendError:
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Block not found") from None

    def rpc_getblockchaininfo(self) -> dict:
        node = self.node
        with node.lock:
            best = node.get_best_block_hash()
            header = BlockHeader.parse(node.get_block_header(best))
            return {
                "chain": "regtest",
                "blocks": node.get_block_count(),
                "headers": node.get_block_count(),
                "bestblockhash": best,
                "bits": f"{header.bits:08x}",
                "target": f"{bits_to_target(header.bits):064x}",
                "difficulty": _DIFF1_TARGET / bits_to_target(header.bits),
                "time": header.timestamp,
                "mediantime": node.median_time_past(),
                "verificationprogress": 1,
                "initialblockdownload": False,
                "chainwork": f"{node.chain_work():064x}",
                "size_on_disk": 0,
                "pruned": False,
                "warnings": [],
            }

    def rpc_getchaintips(self) -> list:
        with self.node.lock:
            tip = self.node.get_best_block_hash()
            return [{"height": self.node.get_block_count(), "hash": tip, "branchlen": 0, "status": "active"}]

    def rpc_getnetworkinfo(self) -> dict:
        return {
            "version": 280000,
            "subversion": "/btcmesh-embedded:0.1/",
            "protocolversion": 70016,
            "localservices": "0000000000000409",
            "localrelay": True,
            "timeoffset": 0,
            "networkactive": False,
            "connections": 0,
            "connections_in": 0,
            "connections_out": 0,
            "networks": [],
            "relayfee": _Amount(1000),
            "incrementalfee": _Amount(1000),
            "localaddresses": [],
            "warnings": [],
        }

    def rpc_estimatesmartfee(self, conf_target: Any, estimate_mode: Any = "conservative") -> dict:
        _int_param(conf_target, "conf_target")
        return {"errors": ["Insufficient data or no feerate found"], "blocks": 0}  # as a fresh regtest bitcoind

    def rpc_getdifficulty(self) -> float:
        header = BlockHeader.parse(self.node.get_block_header(self.node.get_best_block_hash()))
        return _DIFF1_TARGET / bits_to_target(header.bits)

    def rpc_getmininginfo(self) -> dict:
        with self.node.lock:
            return {
                "blocks": self.node.get_block_count(),
                "difficulty": self.rpc_getdifficulty(),
                "networkhashps": 0,
                "pooledtx": len(self.node.get_mempool()),
                "chain": "regtest",
                "warnings": [],
            }

    def rpc_getconnectioncount(self) -> int:
        return 0

    def rpc_validateaddress(self, address: Any) -> dict:
        try:
            script = address_to_script(address)
        except ValueError as exc:
            return {"isvalid": False, "error": str(exc)}
        out: dict[str, Any] = {"isvalid": True, "address": address, "scriptPubKey": script.hex()}
        out["isscript"] = script_type(script) in ("scripthash", "witness_v0_scripthash")
        out["iswitness"] = script[0] == 0 or 0x51 <= script[0] <= 0x60
        if out["iswitness"]:
            out["witness_version"] = 0 if script[0] == 0 else script[0] - 0x50
            out["witness_program"] = script[2:].hex()
        return out

    def rpc_uptime(self) -> int:
        return int(time.time() - self._started_at)

    def rpc_ping(self) -> None:
        return None

    def rpc_help(self, command: Any = None) -> str:
        return "\n".join(sorted(self._methods)) if command is None else f"{command}"

    def rpc_stop(self) -> str:
        threading.Thread(target=self.stop, name="rpc-stop", daemon=True).start()
        return "Bitcoin Core stopping"


def _json_bytes(status: int, body: bytes) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def main(argv: list[str] | None = None) -> int:
    """``python -m regtest.rpc_server``: serve an EmbeddedNode until the ``stop`` RPC or SIGINT/SIGTERM."""
    import argparse
    import signal

    ap = argparse.ArgumentParser(description="Embedded regtest node (libbitcoinkernel) with bitcoind-dialect RPC")
    ap.add_argument("--datadir", help="persist blocks here (default: in memory)")
    ap.add_argument("--port", type=int, default=18443)
    ap.add_argument("--user", default="btcmesh")
    ap.add_argument("--password", help="default: random, printed on the ready line")
    ap.add_argument("--wall-clock", action="store_true", help="block times from the wall clock (default: deterministic)")
    args = ap.parse_args(argv)
    node = EmbeddedNode(args.datadir, clock=time.time if args.wall_clock else None)
    server = RpcServer(node, port=args.port, user=args.user, password=args.password)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: threading.Thread(target=server.stop, daemon=True).start())
    server.start()
    print(f"ready {server.url} height={node.get_block_count()}", flush=True)
    try:
        while not server.stopped.wait(0.5):
            pass
    finally:
        server.stop()
        node.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
