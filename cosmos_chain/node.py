"""EmbeddedChain: an in-process, single-validator block producer around a :class:`ChainApp`.

It plays CometBFT's part for tests and local runs: a mempool fed by :meth:`EmbeddedChain.broadcast_tx`
(every tx passes CheckTx first), blocks made by :meth:`EmbeddedChain.produce_block`
(FinalizeBlock with the mempool's txs, Commit, then a re-check of what is left, as CometBFT does),
and optionally a background thread that makes a block every ``block_interval`` seconds, or at once
when a tx arrives (``instant=True``).

Block times are strictly increasing: ``max(clock(), previous block time + min_time_step)``, rounded
to microseconds, so a chain restarted from disk never goes back in time.

Example::

    app = ChainApp("bbn-test-1", home=tmp)
    with EmbeddedChain(app, block_interval=0.2, genesis=genesis) as node:
        res = node.broadcast_tx(tx_bytes)            # CheckTx result
        rec = node.wait_for_tx(res.hash, timeout=10)  # committed record
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from .app import ChainApp, TxResult
from .errors import ChainError, TxInMempoolError
from .txcodec import tx_hash

__all__ = [
    "BroadcastResult",
    "EmbeddedChain",
    "MempoolFullError",
    "TxEvictedError",
    "BROADCAST_MODES",
]

log = logging.getLogger(__name__)

#: Broadcast modes: ``sync`` (CheckTx result), ``async`` (same here: the embedded node always checks
#: synchronously), ``commit`` (wait for the block; the SDK's deprecated ``block`` mode).
BROADCAST_MODES = ("sync", "async", "commit")


class MempoolFullError(ChainError):
    """The mempool holds ``max_mempool_txs`` txs (sdk code 20)."""

    code = 20


class TxEvictedError(ChainError):
    """A tx accepted by CheckTx was dropped on re-check after a block (its ``result`` says why)."""

    code = 1

    def __init__(self, message: str, result: TxResult | None = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class BroadcastResult:
    """Answer to a broadcast: the tx hash and CheckTx result, or the DeliverTx result in ``commit`` mode.

    ``height`` is 0 unless the tx was committed (``commit`` mode).
    """

    hash: str
    code: int
    log: str = ""
    codespace: str = ""
    gas_wanted: int = 0
    gas_used: int = 0
    height: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    data: bytes = b""

    @property
    def ok(self) -> bool:
        """True iff code == 0."""
        return self.code == 0

    @classmethod
    def from_result(cls, hash_hex: str, res: TxResult, height: int = 0) -> "BroadcastResult":
        """From a CheckTx/DeliverTx :class:`TxResult`."""
        return cls(hash_hex, res.code, res.log, res.codespace, res.gas_wanted, res.gas_used, height,
                   list(res.events), res.data)


class EmbeddedChain:
    """A single-node chain in this process (see module docstring). Thread-safe."""

    def __init__(
        self,
        app: ChainApp,
        block_interval: float | None = None,
        *,
        genesis: dict[str, Any] | None = None,
        instant: bool = True,
        empty_blocks: bool = True,
        clock: Callable[[], float] = time.time,
        min_time_step: float = 0.001,
        max_block_txs: int = 1000,
        max_mempool_txs: int = 5000,
        autostart: bool = True,
    ) -> None:
        """Wrap ``app``; if it is fresh (height 0) ``genesis`` is applied with ``app.init_chain``.

        ``block_interval=None`` means manual mode: blocks are made only by :meth:`produce_block`
        (and by ``commit`` broadcasts). Otherwise a background thread is started (unless
        ``autostart=False``; then call :meth:`start`).
        """
        if block_interval is not None and block_interval <= 0:
            raise ValueError("block_interval must be positive (or None for manual mode)")
        if max_block_txs < 1 or max_mempool_txs < 1:
            raise ValueError("max_block_txs and max_mempool_txs must be >= 1")
        self.app = app
        self.block_interval = block_interval
        self.instant = instant
        self.empty_blocks = empty_blocks
        self.clock = clock
        self.min_time_step = min_time_step
        self.max_block_txs = max_block_txs
        self.max_mempool_txs = max_mempool_txs
        self._lock = threading.RLock()
        self._cv = threading.Condition(self._lock)
        self._mempool: OrderedDict[str, bytes] = OrderedDict()
        self._evicted: OrderedDict[str, TxResult] = OrderedDict()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.error: BaseException | None = None
        height, _ = app.info()
        if height == 0 and not app.root.data:
            if genesis is None:
                raise ValueError("fresh ChainApp: pass genesis= (or call app.init_chain first)")
            app.init_chain(genesis)
        if block_interval is not None and autostart:
            self.start()

    # ------------------------------------------------------------------ info
    @property
    def chain_id(self) -> str:
        """The chain id."""
        return self.app.chain_id

    @property
    def height(self) -> int:
        """Last committed height."""
        return self.app.info()[0]

    def mempool(self) -> list[str]:
        """Hashes of the txs waiting for a block, in arrival order."""
        with self._lock:
            return list(self._mempool)

    def _last_time(self) -> float:
        blk = self.app.latest_block()
        return float(blk["time"]) if blk else float(self.app.genesis_time)

    # ------------------------------------------------------------------ txs
    def broadcast_tx(self, tx_bytes: bytes, mode: str = "sync", timeout: float = 30.0) -> BroadcastResult:
        """CheckTx ``tx_bytes`` and add it to the mempool; rejected txs come back with code/log.

        ``mode="commit"`` also waits (up to ``timeout`` s) for the block and returns the DeliverTx
        result; in manual mode it makes the block itself.
        """
        if mode not in BROADCAST_MODES:
            raise ValueError(f"unknown broadcast mode {mode!r} (expected one of {BROADCAST_MODES})")
        if not isinstance(tx_bytes, (bytes, bytearray)):
            raise TypeError("tx_bytes must be bytes")
        tx_bytes = bytes(tx_bytes)
        h = tx_hash(tx_bytes)
        with self._cv:
            if h in self._mempool:
                return BroadcastResult(h, TxInMempoolError.code, f"tx {h} already in mempool", "sdk")
            if len(self._mempool) >= self.max_mempool_txs:
                return BroadcastResult(h, MempoolFullError.code, f"mempool is full: {len(self._mempool)} txs", "sdk")
            res = self.app.check_tx(tx_bytes)
            if not res.ok:
                return BroadcastResult.from_result(h, res)
            self._mempool[h] = tx_bytes
            self._evicted.pop(h, None)
            self._cv.notify_all()
            if mode != "commit":
                return BroadcastResult.from_result(h, res)
            if self._thread is None:
                self.produce_block()
        rec = self.wait_for_tx(h, timeout)
        return BroadcastResult.from_result(h, TxResult.from_dict(rec["result"]), rec["height"])

    def wait_for_tx(self, hash_hex: str, timeout: float = 30.0) -> dict[str, Any]:
        """The committed tx record (see :meth:`ChainApp.get_tx`); TimeoutError after ``timeout`` s,
        TxEvictedError if the tx was dropped from the mempool on re-check."""
        h = hash_hex.upper().removeprefix("0X")
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                rec = self.app.get_tx(h)
                if rec is not None:
                    return rec
                if h in self._evicted:
                    res = self._evicted[h]
                    raise TxEvictedError(f"tx {h} dropped from the mempool: {res.log}", res)
                if self.error is not None:
                    raise RuntimeError(f"block producer failed: {self.error!r}") from self.error
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"tx {h} not committed within {timeout}s (height {self.height})")
                self._cv.wait(min(left, 0.5))

    def wait_for_height(self, height: int, timeout: float = 30.0) -> int:
        """Block until ``height`` is committed (TimeoutError after ``timeout`` s); returns the height."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self.height < height:
                if self.error is not None:
                    raise RuntimeError(f"block producer failed: {self.error!r}") from self.error
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"height {height} not reached within {timeout}s (at {self.height})")
                self._cv.wait(min(left, 0.5))
            return self.height

    # ------------------------------------------------------------------ blocks
    def produce_block(self) -> tuple[int, list[TxResult]]:
        """FinalizeBlock + Commit with up to ``max_block_txs`` mempool txs; re-check the rest.

        Returns (new height, per-tx results).
        """
        with self._cv:
            hashes = list(self._mempool)[: self.max_block_txs]
            txs = [self._mempool[h] for h in hashes]
            height = self.height + 1
            t = round(max(self.clock(), self._last_time() + self.min_time_step), 6)
            results, _ = self.app.finalize_block(height, t, txs)
            self.app.commit()
            for h in hashes:
                del self._mempool[h]
            self._recheck()
            self._cv.notify_all()
            return height, results

    def _recheck(self) -> None:
        """CometBFT recheck: CheckTx the remaining txs against the fresh check state."""
        for h, raw in list(self._mempool.items()):
            res = self.app.check_tx(raw)
            if not res.ok:
                del self._mempool[h]
                self._evicted[h] = res
                while len(self._evicted) > 1000:
                    self._evicted.popitem(last=False)
                log.info("evicted tx %s on recheck: %s", h, res.log)

    # ------------------------------------------------------------------ background producer
    def start(self) -> None:
        """Start the background block producer (needs ``block_interval``)."""
        if self.block_interval is None:
            raise ValueError("manual mode (block_interval=None): no background producer")
        with self._lock:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="embedded-chain", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        assert self.block_interval is not None
        last = time.monotonic()
        while True:
            with self._cv:
                while not self._stopping:
                    if self.instant and self._mempool:
                        break
                    left = last + self.block_interval - time.monotonic()
                    if left <= 0 and (self.empty_blocks or self._mempool):
                        break
                    self._cv.wait(left if left > 0 else self.block_interval)
                if self._stopping:
                    return
                try:
                    self.produce_block()
                except BaseException as exc:  # noqa: BLE001 - report, never die silently
                    log.exception("block production failed")
                    self.error = exc
                    self._cv.notify_all()
                    return
            last = time.monotonic()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the background producer (the app stays open; close it yourself)."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
            th, self._thread = self._thread, None
        if th is not None:
            th.join(timeout)
            if th.is_alive():
                raise RuntimeError("block producer did not stop")

    def close(self) -> None:
        """Stop the producer and close the app's database."""
        self.stop()
        self.app.close()

    def __enter__(self) -> "EmbeddedChain":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
