"""A chain backend that reads and writes through a CometBFT node's JSON-RPC.

:class:`CometBackend` implements :class:`cosmos_chain.rest.ChainBackend` (``chain_id``,
``broadcast_tx``, ``query``, ``get_tx``, ``block``) plus simulate, accounts and balances, so
``RestServer(CometBackend(url))`` serves an unmodified cosmpy ``LedgerClient``; every answer comes
from a real CometBFT node (``/broadcast_tx_sync``, ``/tx``,
``/block``, ``/abci_query``). Records have the shapes :class:`cosmos_chain.app.ChainApp` uses
(``get_tx`` / ``get_block`` / ``account``), so a REST server cannot tell the two apart.

Example::

    with run_comet_chain(home, 1, app_genesis=genesis) as net:
        backend = CometBackend(net.nodes[0].rpc_url)
        res = backend.broadcast_tx(tx_bytes)           # CheckTx result (code, log, hash)
        rec = backend.wait_for_tx(res.hash, timeout=10)
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import json
import re
import time
from typing import Any

from .app import TxResult
from .comet import CometClient, CometError, CometRPCError, tx_hash
from .errors import ChainError, TxInMempoolError
from .node import BroadcastResult
from .store import canonical_json
from .txcodec import decode_tx, tx_to_json

__all__ = ["CometBackend", "MEMPOOL_FULL_CODE", "parse_rfc3339"]

MEMPOOL_FULL_CODE = 20
"""SDK ``ErrMempoolIsFull``; CometBFT reports a full mempool as an RPC error."""

BROADCAST_MODES = ("sync", "async", "commit")
_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|z|[+-]\d\d:\d\d)")


def parse_rfc3339(text: str) -> float:
    """CometBFT timestamp (``2026-01-02T03:04:05.123456789Z``) → unix seconds (microsecond precision)."""
    match = _RFC3339.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    base, frac, tz = match.groups()
    stamp = _dt.datetime.fromisoformat(base + ("+00:00" if tz in ("Z", "z") else tz))
    return stamp.timestamp() + int(((frac or "") + "000000")[:6]) / 1e6


def _tx_result(raw: dict[str, Any]) -> TxResult:
    """CometBFT ``ExecTxResult`` JSON → :class:`TxResult`."""
    events = [
        {
            "type": e.get("type", ""),
            "attributes": [{"key": a.get("key", ""), "value": a.get("value", "")} for a in e.get("attributes") or []],
        }
        for e in raw.get("events") or []
    ]
    return TxResult(
        code=int(raw.get("code") or 0),
        log=raw.get("log") or "",
        gas_wanted=int(raw.get("gas_wanted") or 0),
        gas_used=int(raw.get("gas_used") or 0),
        events=events,
        data=base64.b64decode(raw.get("data") or ""),
        codespace=raw.get("codespace") or "",
    )


class CometBackend(CometClient):
    """Chain backend over one CometBFT node's RPC (``http://127.0.0.1:PORT``); every call bounded.

    ``chain_id`` is read from the node's ``/status`` unless given.
    """

    def __init__(self, rpc_url: str, chain_id: str | None = None, timeout: float = 15.0) -> None:
        super().__init__(rpc_url, timeout=timeout)
        self._chain_id = chain_id
        self._block_cache: dict[int, dict[str, Any]] = {}

    # ---- chain -----------------------------------------------------------------------------

    @property
    def chain_id(self) -> str:
        """The node's network (chain id)."""
        if self._chain_id is None:
            self._chain_id = str(self.status()["node_info"]["network"])
        return self._chain_id

    @property
    def height(self) -> int:
        """Latest committed height."""
        return self.latest_height()

    # ---- txs -------------------------------------------------------------------------------

    def broadcast_tx(  # type: ignore[override]
        self, tx_bytes: bytes, mode: str = "sync", timeout: float = 30.0
    ) -> BroadcastResult:
        """Submit ``tx_bytes``; rejected txs come back with code/log (never raise for a bad tx).

        ``sync``/``async``: the CheckTx result (``async`` still waits for CheckTx, like the
        embedded node). ``commit``: waits (``timeout`` s) for the block, returns the DeliverTx result.
        A tx CometBFT's mempool cache already holds (a replay) is answered with code 19.
        """
        if mode not in BROADCAST_MODES:
            raise ValueError(f"unknown broadcast mode {mode!r} (expected one of {BROADCAST_MODES})")
        if not isinstance(tx_bytes, (bytes, bytearray)):
            raise TypeError("tx_bytes must be bytes")
        tx_bytes = bytes(tx_bytes)
        h = tx_hash(tx_bytes)
        try:
            res = self.call("broadcast_tx_sync", tx=base64.b64encode(tx_bytes).decode())
        except CometRPCError as exc:
            text = f"{exc.error.get('message', '')} {exc.error.get('data', '')}"
            if "already exists in cache" in text:
                return BroadcastResult(h, TxInMempoolError.code, f"tx {h} already in mempool cache (replay?)", "sdk")
            if "mempool is full" in text:
                return BroadcastResult(h, MEMPOOL_FULL_CODE, f"mempool is full: {text.strip()}", "sdk")
            raise
        check = BroadcastResult(
            hash=str(res.get("hash") or h).upper(),
            code=int(res.get("code") or 0),
            log=res.get("log") or "",
            codespace=res.get("codespace") or "",
            data=base64.b64decode(res.get("data") or ""),
        )
        if mode != "commit" or not check.ok:
            return check
        rec = self.wait_for_tx(check.hash, timeout)
        return BroadcastResult.from_result(check.hash, TxResult.from_dict(rec["result"]), rec["height"])

    def get_tx(self, hash_hex: str) -> dict[str, Any] | None:
        """Committed tx record ``{hash, height, index, tx (b64), time, result}`` or None."""
        h = hash_hex.upper().removeprefix("0X")
        try:
            binascii.unhexlify(h)
        except (binascii.Error, ValueError):
            return None
        if len(h) != 64:
            return None
        raw = self.tx(h)
        if raw is None:
            return None
        height = int(raw["height"])
        block = self.get_block(height)
        return {
            "hash": h,
            "height": height,
            "index": int(raw.get("index") or 0),
            "tx": raw["tx"],
            "time": block["time"] if block else 0.0,
            "result": _tx_result(raw.get("tx_result") or {}).to_dict(),
        }

    def wait_for_tx(self, hash_hex: str, timeout: float = 30.0) -> dict[str, Any]:  # type: ignore[override]
        """The committed tx record (see :meth:`get_tx`); :class:`CometError` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            rec = self.get_tx(hash_hex)
            if rec is not None:
                return rec
            if time.monotonic() >= deadline:
                raise CometError(f"tx {hash_hex} not committed within {timeout}s at {self.rpc_url}")
            time.sleep(0.1)

    def decoded_tx(self, hash_hex: str) -> tuple[dict[str, Any], Any] | None:
        """(record, decoded tx) for a committed tx."""
        rec = self.get_tx(hash_hex)
        if rec is None:
            return None
        return rec, decode_tx(base64.b64decode(rec["tx"]))

    @staticmethod
    def tx_json(tx_bytes: bytes) -> dict[str, Any]:
        """REST JSON of a tx (decoded locally)."""
        return tx_to_json(decode_tx(tx_bytes))

    def simulate(self, tx_bytes: bytes) -> TxResult:
        """Run a tx against the node's latest state (``/app/simulate``); nothing is committed."""
        code, value, log, _ = self.abci_query("/app/simulate", bytes(tx_bytes))
        if code != 0:
            return TxResult(code, log or f"simulate failed with code {code}")
        return TxResult.from_dict(json.loads(value))

    # ---- blocks ----------------------------------------------------------------------------

    def get_block(self, height: int) -> dict[str, Any] | None:
        """Committed block record (``chain_id, height, time, hash, last_block_hash, app_hash, data_hash,
        txs, tx_hashes``) or None.

        ``app_hash`` is the header's (the state after the previous block), as in CometBFT.
        """
        if height <= 0:
            return None
        if height in self._block_cache:
            return self._block_cache[height]
        try:
            res = self.raw_block(height)
        except CometRPCError as exc:
            if "must be less than or equal" in str(exc) or "is not available" in str(exc):
                return None
            raise
        record = self._block_record(res)
        if len(self._block_cache) > 256:
            self._block_cache.clear()
        self._block_cache[height] = record
        return record

    def latest_block(self) -> dict[str, Any] | None:
        """The last committed block (None before the first)."""
        res = self.raw_block()
        if not res.get("block"):
            return None
        return self._block_record(res)

    def block(self, height: int | None = None) -> dict[str, Any] | None:  # type: ignore[override]
        """Block record at ``height`` (``None``: the latest) or None — the ``ChainBackend`` call."""
        return self.latest_block() if height is None else self.get_block(height)

    def _block_record(self, res: dict[str, Any]) -> dict[str, Any]:
        header = res["block"]["header"]
        txs = list(res["block"]["data"].get("txs") or [])
        return {
            "chain_id": header["chain_id"],
            "height": int(header["height"]),
            "time": parse_rfc3339(header["time"]),
            "time_rfc3339": header["time"],
            "hash": res["block_id"]["hash"],
            "last_block_hash": (header.get("last_block_id") or {}).get("hash", ""),
            "app_hash": header["app_hash"].lower(),
            "data_hash": header["data_hash"],
            "proposer_address": header["proposer_address"],
            "txs": txs,
            "tx_hashes": [hashlib.sha256(base64.b64decode(t)).hexdigest().upper() for t in txs],
        }

    # ---- state queries ---------------------------------------------------------------------

    def query(self, path: str, data: bytes = b"", height: int = 0) -> tuple[int, bytes, str]:
        """ABCI query through the node → (code, value, log), like :meth:`ChainApp.query`."""
        code, value, log, _ = self.abci_query(path, bytes(data), height)
        return code, value, log

    def smart_query(self, contract: str, msg: dict[str, Any]) -> Any:
        """Smart query (contract address or module name) → decoded JSON; ChainError with the app's code."""
        code, value, log = self.query(f"/smart/{contract}", canonical_json(msg).encode())
        if code != 0:
            err = ChainError(log or f"query failed with code {code}")
            err.code = code  # type: ignore[misc]
            raise err
        return json.loads(value)

    def account(self, address: str) -> dict[str, Any] | None:
        """``{address, account_number, sequence, pub_key}`` or None."""
        return self.smart_query("auth", {"account": {"address": address}})

    def balance(self, address: str, denom: str) -> int:
        """Committed balance of one denom."""
        return int(self.smart_query("bank", {"balance": {"address": address, "denom": denom}})["amount"])

    def balances(self, address: str) -> dict[str, int]:
        """Committed balances (denom → amount)."""
        return {c["denom"]: int(c["amount"]) for c in self.smart_query("bank", {"all_balances": {"address": address}})}

    def contract_addresses(self) -> dict[str, str]:
        """Module name → contract address."""
        code, value, log = self.query("/app/contracts")
        if code != 0:
            raise CometError(f"/app/contracts failed: {log}")
        return json.loads(value)
