"""`RpcBackend`: a `BitcoinBackend` over JSON-RPC, for btcd (v0.26) or bitcoind (or anything
speaking the bitcoind dialect, such as `regtest.rpc_server`).

The dialect gaps are hidden here:

==================  ===================================  =====================================
operation           btcd                                 bitcoind
==================  ===================================  =====================================
mine n blocks       ``generate n`` (to ``--miningaddr``) ``generatetoaddress n addr``
                    or getblocktemplate + submitblock
raw block           ``getblock hash 0`` (int verbosity)  ``getblock hash 0``
raw transaction     ``getrawtransaction txid 0`` (int)   ``getrawtransaction txid false``
detect              ``getinfo`` answers                  ``getnetworkinfo`` answers
==================  ===================================  =====================================

btcd's ``generate`` pays only its ``--miningaddr``. `RpcBackend.mine_blocks` uses it when
``script_pubkey`` is that address's script (pass ``mining_script`` to the constructor, as
`regtest.btcd.BtcdProcess.backend` does); for any other script it builds each block itself from
``getblocktemplate`` (coinbase paying the script, BIP141 commitment, PoW at regtest difficulty)
and hands it to ``submitblock``, so the node validates it like any other block.

``sendrawtransaction`` failures that are the node refusing the transaction raise `TxRejected`
whose ``reason`` is the node's message verbatim; every other JSON-RPC error raises `RpcError`
(a `BackendError`) with the code and message; transport failures raise `BackendError`.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import os
import threading
from typing import Any
from urllib.parse import urlsplit

from btc_staking.tx import Tx

from .address import script_to_address
from .backend import BackendError, TxRejected

__all__ = ["RpcBackend", "RpcError", "REJECT_CODES", "script_to_address"]

# bitcoind: -22 decode failed, -25 verify error (missing inputs), -26 verify rejected (policy /
# consensus), -27 already in chain. btcd answers mempool rejections with -26/-25 and decode errors
# with -22 as well (btcjson.ErrRPCVerify / ErrRPCDeserialization ...).
REJECT_CODES = frozenset({-22, -25, -26, -27})


class RpcError(BackendError):
    """A JSON-RPC error answer: ``code`` and ``message`` are the node's own."""

    def __init__(self, method: str, code: int, message: str) -> None:
        super().__init__(f"{method}: RPC error {code}: {message}")
        self.method = method
        self.code = code
        self.message = message


# ------------------------------------------------------------------------------------- backend
class RpcBackend:
    """A `BitcoinBackend` over HTTP JSON-RPC to 127.0.0.1 (btcd or bitcoind dialect)."""

    def __init__(
        self,
        url: str,
        user: str = "",
        password: str = "",
        dialect: str = "auto",
        timeout: float = 30.0,
        *,
        mining_script: bytes | None = None,
        network: str = "regtest",
    ) -> None:
        if dialect not in ("btcd", "bitcoind", "auto"):
            raise ValueError(f"dialect must be 'btcd', 'bitcoind' or 'auto', got {dialect!r}")
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or parts.port is None:
            raise ValueError(f"RPC url must look like http://127.0.0.1:PORT, got {url!r}")
        if parts.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError(f"only loopback RPC endpoints are allowed, got {parts.hostname!r}")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._host = "127.0.0.1"
        self._port = parts.port
        self._path = parts.path or "/"
        self.url = f"http://127.0.0.1:{self._port}{parts.path}"  # credentials never kept in the URL
        token = base64.b64encode(f"{user or parts.username or ''}:{password or parts.password or ''}".encode())
        self._auth = "Basic " + token.decode()
        self._timeout = timeout
        self._ids = itertools.count(1)
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()  # one request at a time on the keep-alive connection
        self.network = network
        self.mining_script = bytes(mining_script) if mining_script is not None else None
        self.dialect = self._detect() if dialect == "auto" else dialect

    # -- plumbing ------------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        return self._conn

    def _post(self, body: bytes) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json", "Authorization": self._auth}
        for attempt in (0, 1):  # one retry, only when a kept-alive connection had gone stale
            reused = self._conn is not None
            conn = self._connection()
            try:
                conn.request("POST", self._path, body, headers)
                resp = conn.getresponse()
                return resp.status, resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self._drop()
                if attempt or not reused:
                    raise BackendError(f"RPC connection to {self.url} lost: {exc}") from exc
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                raise BackendError(f"RPC request to {self.url} failed: {exc!r}") from exc
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def call(self, method: str, *params: Any) -> Any:
        """One JSON-RPC call; returns ``result`` or raises `RpcError` / `BackendError`."""
        body = json.dumps({"jsonrpc": "1.0", "id": next(self._ids), "method": method, "params": list(params)})
        with self._lock:
            status, data = self._post(body.encode())
        if status == 401:
            raise BackendError(f"RPC authentication to {self.url} failed (HTTP 401)")
        try:
            reply = json.loads(data)
        except ValueError as exc:
            raise BackendError(f"{method}: HTTP {status}, not JSON: {data[:200]!r}") from exc
        if not isinstance(reply, dict):
            raise BackendError(f"{method}: malformed JSON-RPC reply: {reply!r}")
        err = reply.get("error")
        if err:
            if isinstance(err, dict):
                raise RpcError(method, int(err.get("code", 0)), str(err.get("message", "")))
            raise RpcError(method, 0, str(err))
        if status != 200:
            raise BackendError(f"{method}: HTTP {status}: {data[:200]!r}")
        return reply.get("result")

    def _detect(self) -> str:
        try:
            self.call("getnetworkinfo")
            return "bitcoind"
        except RpcError:
            pass
        try:
            info = self.call("getinfo")
        except RpcError as exc:
            raise BackendError(f"cannot tell the node's dialect: neither getnetworkinfo nor getinfo answer ({exc})")
        if isinstance(info, dict) and "version" in info:
            return "btcd"
        raise BackendError(f"cannot tell the node's dialect from getinfo: {info!r}")

    @staticmethod
    def _hex(value: Any, what: str) -> bytes:
        if not isinstance(value, str):
            raise BackendError(f"{what}: expected hex string, got {type(value).__name__}")
        try:
            return bytes.fromhex(value)
        except ValueError as exc:
            raise BackendError(f"{what}: not hex") from exc

    @staticmethod
    def _check_hash(hash_hex: str) -> str:
        if not isinstance(hash_hex, str) or len(hash_hex) != 64:
            raise ValueError(f"expected a 64-char display-order hash, got {hash_hex!r}")
        bytes.fromhex(hash_hex)
        return hash_hex.lower()

    # -- BitcoinBackend ------------------------------------------------------------------------
    def get_block_count(self) -> int:
        """Height of the active tip."""
        return int(self.call("getblockcount"))

    def get_best_block_hash(self) -> str:
        """Hash of the active tip (display hex)."""
        return str(self.call("getbestblockhash"))

    def get_block_hash(self, height: int) -> str:
        """Hash of the active-chain block at ``height``."""
        if not isinstance(height, int) or height < 0:
            raise ValueError(f"height must be a non-negative int, got {height!r}")
        return str(self.call("getblockhash", height))

    def get_block(self, hash_hex: str) -> bytes:
        """Raw serialized block (with witnesses)."""
        return self._hex(self.call("getblock", self._check_hash(hash_hex), 0), "getblock")

    def get_block_header(self, hash_hex: str) -> bytes:
        """Raw 80-byte header."""
        raw = self._hex(self.call("getblockheader", self._check_hash(hash_hex), False), "getblockheader")
        if len(raw) != 80:
            raise BackendError(f"getblockheader returned {len(raw)} bytes, expected 80")
        return raw

    def send_raw_transaction(self, raw: bytes) -> str:
        """Broadcast; returns the txid or raises `TxRejected` with the node's reason verbatim."""
        if not isinstance(raw, (bytes, bytearray)) or not raw:
            raise ValueError("raw transaction must be non-empty bytes")
        txid = None
        try:
            txid = Tx.parse(bytes(raw)).txid_hex()
        except ValueError:
            pass  # let the node say what is wrong with it
        try:
            return str(self.call("sendrawtransaction", bytes(raw).hex()))
        except RpcError as exc:
            if exc.code in REJECT_CODES:
                raise TxRejected(exc.message, txid) from exc
            raise

    def get_raw_transaction(self, txid_hex: str) -> bytes:
        """Raw transaction from the mempool or (txindex) the chain."""
        verbose: Any = 0 if self.dialect == "btcd" else False
        return self._hex(self.call("getrawtransaction", self._check_hash(txid_hex), verbose), "getrawtransaction")

    def get_mempool(self) -> list[str]:
        """Txids in the mempool."""
        return [str(t) for t in self.call("getrawmempool")]

    def mine_blocks(self, n: int, script_pubkey: bytes) -> list[str]:
        """Mine ``n`` blocks whose coinbase pays ``script_pubkey``.

        bitcoind: ``generatetoaddress`` (``generatetodescriptor raw(...)`` for scripts without an
        address form). btcd: ``generate`` when the script is the node's ``--miningaddr``, otherwise
        each block is built from ``getblocktemplate`` and handed to ``submitblock``."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        script = bytes(script_pubkey)
        if not script or len(script) > 10_000:
            raise ValueError("script_pubkey must be 1..10000 bytes")
        if self.dialect == "bitcoind":
            try:
                address = script_to_address(script, self.network)
            except ValueError:  # no address form: bitcoind takes a raw() descriptor
                return [str(h) for h in self.call("generatetodescriptor", n, f"raw({script.hex()})")]
            return [str(h) for h in self.call("generatetoaddress", n, address)]
        if self.mining_script is not None and script == self.mining_script:
            return [str(h) for h in self.call("generate", n)]
        return [self._mine_from_template(script) for _ in range(n)]

    def _mine_from_template(self, script: bytes) -> str:
        """Build one block from ``getblocktemplate`` paying ``script``, solve it and submit it."""
        from btc_staking.merkle import merkle_root

        from .mining import build_coinbase, serialize_block, solve_header  # pbk-backed, loaded lazily

        tpl = self.call("getblocktemplate", {"rules": ["segwit"]})
        try:
            txs = [Tx.parse(bytes.fromhex(t["data"])) for t in tpl.get("transactions", [])]
            height = int(tpl["height"])
            prev = bytes.fromhex(tpl["previousblockhash"])[::-1]
            timestamp = max(int(tpl["curtime"]), int(tpl.get("mintime", 0)))
            bits = int(tpl["bits"], 16)
            value = int(tpl["coinbasevalue"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BackendError(f"unusable getblocktemplate answer: {exc}") from exc
        coinbase = build_coinbase(height, script, value, txs, extra_nonce=int.from_bytes(os.urandom(4), "little"))
        all_txs = [coinbase, *txs]
        header = solve_header(prev, merkle_root([t.txid() for t in all_txs]), timestamp, bits)
        result = self.call("submitblock", serialize_block(header, all_txs).hex())
        if result not in (None, ""):
            raise BackendError(f"submitblock refused the block: {result}")
        return header.hash()[::-1].hex()

    def search_raw_transactions(self, script_pubkey: bytes, skip: int = 0, count: int = 100) -> list[bytes]:
        """btcd only (``--addrindex``): raw txs paying to or spending from the script's address,
        oldest first, mempool included. bitcoind has no address index: BackendError."""
        if self.dialect != "btcd":
            raise BackendError("searchrawtransactions needs btcd's address index (not available on bitcoind)")
        address = script_to_address(bytes(script_pubkey), self.network)
        try:
            found = self.call("searchrawtransactions", address, 0, skip, count)
        except RpcError as exc:
            if exc.code == -5 and "No information available" in exc.message:
                return []
            raise
        return [self._hex(t, "searchrawtransactions") for t in found or []]

    def invalidate_block(self, hash_hex: str) -> None:
        """Mark a block invalid (the tip moves to its parent, its txs return to the mempool)."""
        self.call("invalidateblock", self._check_hash(hash_hex))

    def reconsider_block(self, hash_hex: str) -> None:
        """Undo `invalidate_block`."""
        self.call("reconsiderblock", self._check_hash(hash_hex))

    def close(self) -> None:
        """Close the keep-alive connection."""
        self._drop()

    def __enter__(self) -> "RpcBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RpcBackend({self.url!r}, dialect={self.dialect!r})"

