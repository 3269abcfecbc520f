"""EmbeddedNode: an in-process regtest Bitcoin node whose every block is validated by libbitcoinkernel.

The node keeps its own block tree, UTXO set, undo data, tx index and mempool; libbitcoinkernel
(py-bitcoinkernel, ``pbk``) is the consensus oracle. Each block is handed to a kernel
``ChainstateManager`` (in-memory block tree and chainstate, block files in a private temp
directory) and the node's active chain always mirrors the kernel's: after every block the node
reorganises its own state onto the kernel's tip. libbitcoinkernel has no ``invalidateblock``, so
:meth:`EmbeddedNode.invalidate_block` marks the block invalid here, builds a fresh kernel and
replays the best remaining chain from genesis (about 0.3 ms per block).

Mempool policy follows Bitcoin Core's ``MemPoolAccept`` order and reject reasons (no RBF, no
package relay): decoding and context-free checks, standardness (version, size, dust), finality,
conflicts, missing inputs, BIP68 sequence locks, coinbase maturity, value in ≥ value out, the
1 sat/vB minimum relay fee, then every input's script through ``pbk.ScriptPubkey.verify`` with all
consensus flags (taproot included, so all spent outputs are passed). libbitcoinkernel exposes only
consensus flags, so policy-only script rules (CLEANSTACK, MINIMALIF, discouraged upgradable NOPs /
witness versions) are not enforced; a failing script is reported with the interpreter's own error,
obtained by showing the kernel a throwaway block (see ``_kernel_script_error``).

With a ``datadir`` every accepted block, invalidation and reconsideration is appended to
``blocks.log``; on restart the log is replayed and each block re-validated by a fresh kernel. The
mempool is saved to ``mempool.dat`` on close and re-accepted (re-validated) on start. Block times are
deterministic (regtest genesis time + 600 s per height, kept above the median time past) unless a
``clock`` is given.
"""

from __future__ import annotations

import fcntl
import os
import re
import struct
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pbk

from btc_staking.errors import StakingError
from btc_staking.headers import BlockHeader
from btc_staking.params import is_dust
from btc_staking.tx import MAX_MONEY, OutPoint, Tx, TxOut, hash256, is_op_return

from .backend import BackendError, TxRejected
from .mining import COINBASE_MATURITY, build_block, kernel_block, parse_block

__all__ = ["Coin", "MempoolEntry", "BlockRejected", "EmbeddedNode", "GENESIS_TIME", "BLOCK_INTERVAL"]

GENESIS_TIME = 1296688602  # regtest genesis nTime
BLOCK_INTERVAL = 600
MEMPOOL_HEIGHT = 0x7FFFFFFF  # Core's MEMPOOL_HEIGHT for coins created by unconfirmed txs
MAX_STANDARD_TX_WEIGHT = 400_000
MAX_BLOCK_WEIGHT = 4_000_000
MIN_RELAY_FEE_PER_KVB = 1000
LOCKTIME_THRESHOLD = 500_000_000
SEQUENCE_FINAL = 0xFFFFFFFF
SEQ_DISABLE = 1 << 31
SEQ_TYPE_TIME = 1 << 22
SEQ_MASK = 0x0000FFFF
_SCRIPT_FLAGS = pbk.ScriptVerificationFlags.ALL

_REC_BLOCK = b"B"
_REC_INVALIDATE = b"I"
_REC_RECONSIDER = b"R"


class BlockRejected(BackendError):
    """libbitcoinkernel refused a block; ``reason`` is the kernel's (e.g. ``bad-cb-amount``)."""

    def __init__(self, reason: str, block_hash: str | None = None) -> None:
        super().__init__(f"block {block_hash or '?'} rejected: {reason}")
        self.reason = reason
        self.block_hash = block_hash


@dataclass(frozen=True)
class Coin:
    """An unspent output; ``height`` is MEMPOOL_HEIGHT for outputs of mempool transactions."""

    output: TxOut
    height: int
    coinbase: bool

    @property
    def confirmed(self) -> bool:
        """True if created by a transaction in the active chain."""
        return self.height != MEMPOOL_HEIGHT


@dataclass(frozen=True)
class MempoolEntry:
    """A transaction accepted into the mempool."""

    tx: Tx
    txid: bytes
    fee: int
    vsize: int
    height: int  # tip height when it entered
    time: int  # median time past of the tip when it entered

    @property
    def txid_hex(self) -> str:
        """Display-order txid."""
        return self.txid[::-1].hex()


@dataclass
class _Block:
    hash: bytes
    header: BlockHeader
    raw: bytes
    txs: list[Tx]
    height: int
    work: int
    seq: int

    @property
    def hash_hex(self) -> str:
        return self.hash[::-1].hex()


# --------------------------------------------------------------------------- kernel


_LOG_LOCK = threading.Lock()  # serialises kernel calls so captured log lines belong to one call
_log_sink: list[str] | None = None
_log_conn: pbk.LoggingConnection | None = None


def _on_kernel_log(msg: str) -> None:
    sink = _log_sink
    if sink is not None:
        sink.append(msg)


def _ensure_log_connection() -> None:
    global _log_conn
    if _log_conn is None:
        _log_conn = pbk.LoggingConnection(_on_kernel_log)


_REASON_PATTERNS = (
    re.compile(r"ConnectBlock [0-9a-f]{64} failed, (.+)$"),
    re.compile(r"AcceptBlock FAILED \((.+)\)$"),
    re.compile(r"Block validation error: (.+)$"),
    re.compile(r"\[error\] [A-Za-z]+: (.+)$"),
)


def _reason_from_logs(lines: Sequence[str]) -> str | None:
    for pattern in _REASON_PATTERNS:
        for line in lines:
            m = pattern.search(line.strip())
            if m:
                return m.group(1).strip()
    return None


class _Kernel:
    """One libbitcoinkernel ChainstateManager: in-memory DBs, block files in a private temp dir."""

    def __init__(self) -> None:
        _ensure_log_connection()
        self._tmp = tempfile.TemporaryDirectory(prefix="btcmesh-kernel-")
        self._checked: list[tuple[bytes, pbk.ValidationMode]] = []
        self._callbacks = pbk.ValidationInterfaceCallbacks(block_checked=self._on_checked)
        self._context = pbk.make_context(pbk.ChainType.REGTEST, validation_callbacks=self._callbacks)
        opts = pbk.ChainstateManagerOptions(self._context, self._tmp.name, str(Path(self._tmp.name) / "blocks"))
        opts.update_block_tree_db_in_memory(True)
        opts.update_chainstate_db_in_memory(True)
        opts.set_worker_threads_num(0)
        self.chainman: pbk.ChainstateManager | None = pbk.ChainstateManager(opts)
        self.known: set[bytes] = {self.tip()}

    def _on_checked(self, _user_data: object, block: pbk.Block, state: pbk.BlockValidationState) -> None:
        self._checked.append((bytes(block.block_hash), state.validation_mode))

    def genesis_raw(self) -> bytes:
        assert self.chainman is not None
        chain = self.chainman.get_active_chain()
        return bytes(self.chainman.blocks[chain.block_tree_entries[0]])

    def tip(self) -> bytes:
        """Active tip hash (internal byte order)."""
        assert self.chainman is not None
        chain = self.chainman.get_active_chain()
        return bytes(chain.block_tree_entries[chain.height].block_hash)

    def submit(self, raw: bytes, block_hash: bytes) -> tuple[list[bytes], str | None]:
        """Process one block. Returns (hashes the kernel found invalid, the kernel's reason if any)."""
        global _log_sink
        assert self.chainman is not None
        with _LOG_LOCK:
            lines: list[str] = []
            self._checked.clear()
            _log_sink = lines
            failed = False
            try:
                self.chainman.process_block(kernel_block(raw))
            except pbk.ProcessBlockException:
                failed = True
            finally:
                _log_sink = None
        self.known.add(block_hash)
        invalid = [h for h, mode in self._checked if mode != pbk.ValidationMode.VALID]
        if failed and block_hash not in invalid:
            invalid.append(block_hash)
        reason = _reason_from_logs(lines) if (failed or invalid) else None
        if (failed or invalid) and reason is None:
            reason = "rejected by libbitcoinkernel"
        return invalid, reason

    def close(self) -> None:
        self.chainman = None  # destroys the chainstate manager (flushes) before its files go
        self._context = None  # type: ignore[assignment]
        self._tmp.cleanup()


# --------------------------------------------------------------------------- node


class EmbeddedNode:
    """In-process regtest node implementing :class:`regtest.backend.BitcoinBackend`.

    Hashes and txids in the public API are display-order hex; raw blocks/txs/headers are bytes.
    All public methods are thread-safe (one re-entrant lock)."""

    def __init__(self, datadir: Path | str | None = None, *, clock: Callable[[], float] | None = None) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self._kernel = _Kernel()
        self._blocks: dict[bytes, _Block] = {}
        self._invalid: set[bytes] = set()
        self._rejected: dict[bytes, str] = {}  # blocks refused on arrival (never stored): hash -> reason
        self._seq = 0
        genesis_raw = self._kernel.genesis_raw()
        header, txs = parse_block(genesis_raw)
        genesis = _Block(header.hash(), header, genesis_raw, txs, 0, header.work, self._next_seq())
        self._blocks[genesis.hash] = genesis
        self._chain: list[bytes] = [genesis.hash]
        self._utxo: dict[OutPoint, Coin] = {}  # the genesis coinbase is unspendable, as in Core
        self._undo: dict[bytes, list[tuple[OutPoint, Coin]]] = {}
        self._txindex: dict[bytes, tuple[bytes, int]] = {genesis.txs[0].txid(): (genesis.hash, 0)}
        self._mempool: dict[bytes, MempoolEntry] = {}
        self._mempool_spends: dict[OutPoint, bytes] = {}
        self._closed = False
        self._log_file = None
        self._lock_file = None
        self.datadir = Path(datadir) if datadir is not None else None
        if self.datadir is not None:
            try:
                self.datadir.mkdir(parents=True, exist_ok=True)
                self._lock_file = open(self.datadir / ".lock", "a+")
                try:
                    fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    raise BackendError(f"datadir {self.datadir} is in use by another node") from None
                self._replay(self.datadir / "blocks.log")
                self._log_file = open(self.datadir / "blocks.log", "ab")
                self._load_mempool(self.datadir / "mempool.dat")
            except BaseException:
                self.close()
                raise

    # ------------------------------------------------------------------ BitcoinBackend

    def get_block_count(self) -> int:
        """Height of the active tip."""
        with self._lock:
            return len(self._chain) - 1

    def get_best_block_hash(self) -> str:
        """Active tip hash (display hex)."""
        with self._lock:
            return self._chain[-1][::-1].hex()

    def get_block_hash(self, height: int) -> str:
        """Hash of the active-chain block at `height`."""
        with self._lock:
            if not isinstance(height, int) or isinstance(height, bool) or not 0 <= height < len(self._chain):
                raise BackendError(f"Block height out of range: {height!r}")
            return self._chain[height][::-1].hex()

    def get_block(self, hash_hex: str) -> bytes:
        """Raw block (any known block, active or not)."""
        with self._lock:
            return self._block(hash_hex).raw

    def get_block_header(self, hash_hex: str) -> bytes:
        """80-byte header."""
        with self._lock:
            return self._block(hash_hex).raw[:80]

    def send_raw_transaction(self, raw: bytes, max_fee_rate: float | None = None) -> str:
        """Accept a transaction into the mempool (idempotent for one already there); returns its txid.
        `max_fee_rate` (sat/vB) refuses absurd fees with ``max-fee-exceeded``, like bitcoind's maxfeerate."""
        with self._lock:
            self._check_open()
            if not isinstance(raw, (bytes, bytearray)):
                raise TxRejected("TX decode failed: raw transaction must be bytes")
            try:
                tx = Tx.parse(bytes(raw))
            except (StakingError, ValueError) as exc:
                raise TxRejected(f"TX decode failed: {exc}") from None
            txid = tx.txid()
            if txid in self._mempool:
                return txid[::-1].hex()
            entry = self._check_tx(tx)
            if max_fee_rate is not None and entry.fee > max_fee_rate * entry.vsize:
                raise TxRejected("max-fee-exceeded", txid[::-1].hex())
            self._add_to_mempool(entry)
            return txid[::-1].hex()

    def get_raw_transaction(self, txid_hex: str) -> bytes:
        """A mempool or confirmed (active chain) transaction."""
        with self._lock:
            tx = self._find_tx(_hash_from_hex(txid_hex, "txid"))
            if tx is None:
                raise BackendError(f"No such mempool or blockchain transaction: {txid_hex}")
            return tx.serialize()

    def get_mempool(self) -> list[str]:
        """Mempool txids in acceptance (dependency) order."""
        with self._lock:
            return [t[::-1].hex() for t in self._mempool]

    def mine_blocks(self, n: int, script_pubkey: bytes) -> list[str]:
        """Mine `n` blocks on the tip paying `script_pubkey`; the first includes the mempool."""
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 10_000:
            raise ValueError(f"block count must be an int in [0, 10000], got {n!r}")
        _check_spk(script_pubkey)
        with self._lock:
            self._check_open()
            out = []
            for _ in range(n):
                out.append(self._mine_one(self._chain[-1], bytes(script_pubkey), None, use_mempool=True))
            return out

    def invalidate_block(self, hash_hex: str) -> None:
        """Mark a block (and so its descendants) invalid and fall back to the best remaining chain.
        Transactions of disconnected blocks go back to the mempool when still valid."""
        with self._lock:
            self._check_open()
            block = self._block(hash_hex)
            if block.height == 0:
                raise BackendError("cannot invalidate the genesis block")
            self._invalidate(block.hash)
            self._append_record(_REC_INVALIDATE, block.hash)

    def reconsider_block(self, hash_hex: str) -> None:
        """Undo invalidate_block: clear the mark on the block, its ancestors and descendants, and
        switch to the most-work chain again (blocks the kernel found invalid stay invalid)."""
        with self._lock:
            self._check_open()
            block = self._block(hash_hex)
            cleared = {a.hash for a in self._ancestors(block.hash, lambda b: b.height == 0)}
            for h in list(self._invalid):
                if h in cleared or block.hash in {a.hash for a in self._ancestors(h, lambda b: b.height == 0)}:
                    self._invalid.discard(h)
            self._reselect()
            self._append_record(_REC_RECONSIDER, block.hash)

    def verify_against_kernel(self) -> int:
        """Cross-check the node's state with libbitcoinkernel's: the same active chain, and for every
        block the same spent coins (value, script, height, coinbase flag) as the kernel's undo data;
        then check the UTXO set against a from-scratch replay of the active chain.
        Returns the number of coins compared; raises RuntimeError on the first difference."""
        with self._lock:
            self._check_open()
            cm = self._kernel.chainman
            assert cm is not None
            chain = cm.get_active_chain()
            if chain.height != len(self._chain) - 1:
                raise RuntimeError(f"kernel height {chain.height} != node height {len(self._chain) - 1}")
            compared = 0
            for height, block_hash in enumerate(self._chain):
                entry = chain.block_tree_entries[height]
                if bytes(entry.block_hash) != block_hash:
                    raise RuntimeError(f"kernel and node differ at height {height}")
                if height == 0:
                    continue
                block = self._blocks[block_hash]
                undo = iter(self._undo[block_hash])
                per_tx = cm.block_spent_outputs[entry].transactions
                if len(per_tx) != len(block.txs) - 1:
                    raise RuntimeError(f"undo data of block {block.hash_hex} covers {len(per_tx)} txs")
                for tx, spent in zip(block.txs[1:], per_tx):
                    coins = spent.coins
                    if len(coins) != len(tx.inputs):
                        raise RuntimeError(f"undo data of {tx.txid_hex()} has {len(coins)} coins")
                    for txin, kcoin in zip(tx.inputs, coins):
                        outpoint, coin = next(undo)
                        kout = kcoin.output
                        theirs = (kout.amount, bytes(kout.script_pubkey), kcoin.confirmation_height, kcoin.is_coinbase)
                        ours = (coin.output.value, coin.output.script_pubkey, coin.height, coin.coinbase)
                        if outpoint != txin.prevout or ours != theirs:
                            raise RuntimeError(f"spent coin of {tx.txid_hex()} differs: node {ours} kernel {theirs}")
                        compared += 1
            # the UTXO set must equal a from-scratch replay of the active chain
            replayed: dict[OutPoint, Coin] = {}
            for height, block_hash in enumerate(self._chain[1:], start=1):
                for pos, tx in enumerate(self._blocks[block_hash].txs):
                    if pos:
                        for txin in tx.inputs:
                            del replayed[txin.prevout]
                    for vout, out in enumerate(tx.outputs):
                        if not is_op_return(out.script_pubkey):
                            replayed[OutPoint(tx.txid(), vout)] = Coin(out, height, pos == 0)
            if replayed != self._utxo:
                extra = set(self._utxo) - set(replayed)
                missing = set(replayed) - set(self._utxo)
                raise RuntimeError(f"UTXO set differs from a replay: {len(extra)} extra, {len(missing)} missing coins")
            return compared

    @property
    def lock(self) -> threading.RLock:
        """The node's re-entrant lock (hold it to read several values consistently)."""
        return self._lock

    def close(self) -> None:
        """Release the kernel and the block log. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
                self._save_mempool(self.datadir / "mempool.dat")  # type: ignore[operator]
            self._kernel.close()
            if self._lock_file is not None:
                self._lock_file.close()  # releases the flock
                self._lock_file = None

    def __enter__(self) -> "EmbeddedNode":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ conveniences

    def mine_fork(self, parent_hash: str, n: int, script_pubkey: bytes, txs: Sequence[Tx | bytes] = ()) -> list[str]:
        """Mine `n` blocks on `parent_hash` (any known block); `txs` go into the first one, in order,
        and the mempool is not used. The fork becomes active only if it has more work than the tip
        (ties keep the first-seen chain, as in Core). Raises BlockRejected when the kernel refuses it."""
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10_000:
            raise ValueError(f"block count must be an int in [1, 10000], got {n!r}")
        _check_spk(script_pubkey)
        parsed = [t if isinstance(t, Tx) else Tx.parse(bytes(t)) for t in txs]
        with self._lock:
            self._check_open()
            parent = self._block(parent_hash).hash
            if self._in_invalid_branch(parent):
                raise BlockRejected("bad-prevblk", parent_hash)
            out = []
            for i in range(n):
                out.append(self._mine_one(parent, bytes(script_pubkey), parsed if i == 0 else [], use_mempool=False))
                parent = bytes.fromhex(out[-1])[::-1]
            return out

    def submit_block(self, raw: bytes) -> str:
        """Add a block built elsewhere (e.g. by a test); returns its hash. Raises BlockRejected."""
        with self._lock:
            self._check_open()
            return self._add_block(bytes(raw))

    def get_tx_height(self, txid_hex: str) -> int | None:
        """Height of the active-chain block containing the tx, or None (mempool / unknown)."""
        with self._lock:
            loc = self._txindex.get(_hash_from_hex(txid_hex, "txid"))
            return None if loc is None else self._blocks[loc[0]].height

    def get_tx_block(self, txid_hex: str) -> tuple[str, int] | None:
        """(block hash, position in block) of a confirmed tx, or None."""
        with self._lock:
            loc = self._txindex.get(_hash_from_hex(txid_hex, "txid"))
            return None if loc is None else (loc[0][::-1].hex(), loc[1])

    def get_utxo(self, outpoint: OutPoint, include_mempool: bool = False) -> Coin | None:
        """The unspent coin at `outpoint` in the active chain (or mempool outputs if asked), else None.
        With include_mempool, coins spent by a mempool tx count as spent."""
        with self._lock:
            if include_mempool:
                if outpoint in self._mempool_spends:
                    return None
                return self._utxo.get(outpoint) or self._mempool_coin(outpoint)
            return self._utxo.get(outpoint)

    def scan_utxos(self, script_pubkeys: Sequence[bytes]) -> list[tuple[OutPoint, Coin]]:
        """Confirmed unspent outputs paying any of `script_pubkeys` (scantxoutset-like)."""
        wanted = {bytes(s) for s in script_pubkeys}
        with self._lock:
            return [(op, c) for op, c in self._utxo.items() if c.output.script_pubkey in wanted]

    def median_time_past(self, hash_hex: str | None = None) -> int:
        """BIP113 median time past of a block (the tip by default)."""
        with self._lock:
            return self._mtp(self._chain[-1] if hash_hex is None else self._block(hash_hex).hash)

    def get_block_height(self, hash_hex: str) -> int:
        """Height of any known block."""
        with self._lock:
            return self._block(hash_hex).height

    def is_in_active_chain(self, hash_hex: str) -> bool:
        """True if the block is on the active chain."""
        with self._lock:
            b = self._block(hash_hex)
            return b.height < len(self._chain) and self._chain[b.height] == b.hash

    def get_block_txs(self, hash_hex: str) -> list[Tx]:
        """Parsed transactions of a known block (coinbase first)."""
        with self._lock:
            return [t.copy() for t in self._block(hash_hex).txs]

    def iter_blocks(self, start_height: int = 0) -> Iterator[tuple[int, str, list[Tx]]]:
        """(height, hash, txs) for active-chain blocks from `start_height` (snapshot at call time)."""
        with self._lock:
            snapshot = [self._blocks[h] for h in self._chain[max(0, start_height):]]
        for b in snapshot:
            yield b.height, b.hash_hex, [t.copy() for t in b.txs]

    def get_block_fees(self, hash_hex: str) -> list[int] | None:
        """Fee of each non-coinbase tx of an active-chain block (from undo data), else None."""
        with self._lock:
            block = self._block(hash_hex)
            undo = self._undo.get(block.hash)
            if undo is None:
                return None
            fees, pos = [], 0
            for tx in block.txs[1:]:
                value_in = sum(coin.output.value for _, coin in undo[pos : pos + len(tx.inputs)])
                pos += len(tx.inputs)
                fees.append(value_in - sum(o.value for o in tx.outputs))
            return fees

    def get_mempool_entry(self, txid_hex: str) -> MempoolEntry:
        """Mempool entry for a txid; BackendError if not in the mempool."""
        with self._lock:
            entry = self._mempool.get(_hash_from_hex(txid_hex, "txid"))
            if entry is None:
                raise BackendError(f"Transaction not in mempool: {txid_hex}")
            return entry

    def chain_work(self, hash_hex: str | None = None) -> int:
        """Cumulative work up to a block (the tip by default)."""
        with self._lock:
            return self._blocks[self._chain[-1]].work if hash_hex is None else self._block(hash_hex).work

    def test_mempool_accept(self, raw: bytes) -> str | None:
        """None if the tx would be accepted now, else the reject reason (the mempool is unchanged)."""
        with self._lock:
            try:
                tx = Tx.parse(bytes(raw))
            except (StakingError, ValueError) as exc:
                return f"TX decode failed: {exc}"
            try:
                self._check_tx(tx)
            except TxRejected as exc:
                return exc.reason
            return None

    # ------------------------------------------------------------------ internals: lookup

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("node is closed")

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _block(self, hash_hex: str) -> _Block:
        b = self._blocks.get(_hash_from_hex(hash_hex, "block hash"))
        if b is None:
            raise BackendError(f"Block not found: {hash_hex}")
        return b

    def _find_tx(self, txid: bytes) -> Tx | None:
        if txid in self._mempool:
            return self._mempool[txid].tx.copy()
        loc = self._txindex.get(txid)
        if loc is not None:
            return self._blocks[loc[0]].txs[loc[1]].copy()
        return None

    def _mempool_coin(self, outpoint: OutPoint) -> Coin | None:
        entry = self._mempool.get(outpoint.txid)
        if entry is None or outpoint.vout >= len(entry.tx.outputs):
            return None
        return Coin(entry.tx.outputs[outpoint.vout], MEMPOOL_HEIGHT, False)

    def _mtp(self, block_hash: bytes) -> int:
        times = []
        b: _Block | None = self._blocks[block_hash]
        while b is not None and len(times) < 11:
            times.append(b.header.timestamp)
            b = self._blocks.get(b.header.prev_hash) if b.height else None
        return sorted(times)[len(times) // 2]

    def _in_invalid_branch(self, block_hash: bytes) -> bool:
        b: _Block | None = self._blocks[block_hash]
        while b is not None:
            if b.hash in self._invalid:
                return True
            if b.height < len(self._chain) and self._chain[b.height] == b.hash:
                return False  # active-chain blocks are valid
            b = self._blocks.get(b.header.prev_hash)
        return False

    def _ancestors(self, block_hash: bytes, stop: Callable[[_Block], bool]) -> list[_Block]:
        """Blocks from `block_hash` back to (excluding) the first one where stop() holds; oldest first."""
        out = []
        b = self._blocks[block_hash]
        while not stop(b):
            out.append(b)
            b = self._blocks[b.header.prev_hash]
        out.reverse()
        return out

    # ------------------------------------------------------------------ internals: blocks

    def _block_time(self, parent: _Block) -> int:
        floor = self._mtp(parent.hash) + 1
        if self._clock is None:
            return max(GENESIS_TIME + BLOCK_INTERVAL * (parent.height + 1), floor)
        return max(int(self._clock()), floor)

    def _mine_one(self, parent_hash: bytes, spk: bytes, txs: list[Tx] | None, use_mempool: bool) -> str:
        parent = self._blocks[parent_hash]
        if use_mempool:
            txs, fees = self._block_template()
        else:
            txs = list(txs or [])
            fees = self._fees_for(txs)
        _, _, raw = build_block(parent.hash, parent.height + 1, self._block_time(parent), spk, txs, fees, self._seq)
        return self._add_block(raw)

    def _block_template(self) -> tuple[list[Tx], int]:
        txs, fees, weight = [], 0, 4000  # room for header and coinbase
        for entry in self._mempool.values():  # insertion order is a valid dependency order
            w = entry.tx.weight()
            if weight + w > MAX_BLOCK_WEIGHT:
                break
            txs.append(entry.tx)
            fees += entry.fee
            weight += w
        return txs, fees

    def _fees_for(self, txs: list[Tx]) -> int:
        """Fees of explicit block txs; prevouts come from earlier txs in the list or any known tx."""
        local = {t.txid(): t for t in txs}
        fees = 0
        for tx in txs:
            value_in = 0
            for txin in tx.inputs:
                src = local.get(txin.prevout.txid) or self._find_tx_anywhere(txin.prevout.txid)
                if src is None or txin.prevout.vout >= len(src.outputs):
                    raise TxRejected("bad-txns-inputs-missingorspent", tx.txid_hex())
                value_in += src.outputs[txin.prevout.vout].value
            fee = value_in - sum(o.value for o in tx.outputs)
            if fee < 0:
                raise TxRejected("bad-txns-in-belowout", tx.txid_hex())
            fees += fee
        return fees

    def _find_tx_anywhere(self, txid: bytes) -> Tx | None:
        tx = self._find_tx(txid)
        if tx is not None:
            return tx
        for b in self._blocks.values():  # stale-branch txs (rare: forks only)
            for t in b.txs:
                if t.txid() == txid:
                    return t
        return None

    def _add_block(self, raw: bytes, *, log: bool = True) -> str:
        """Store a block, let the kernel validate it, then follow the kernel's tip."""
        try:
            header, txs = parse_block(raw)
        except (ValueError, StakingError) as exc:
            raise BlockRejected(f"block decode failed: {exc}") from None
        block_hash = header.hash()
        if block_hash in self._rejected:  # the kernel keeps failed blocks too and would call it a duplicate
            raise BlockRejected(f"duplicate-invalid ({self._rejected[block_hash]})", block_hash[::-1].hex())
        if block_hash in self._blocks:
            if block_hash in self._invalid:
                raise BlockRejected("duplicate-invalid", block_hash[::-1].hex())
            return block_hash[::-1].hex()
        parent = self._blocks.get(header.prev_hash)
        if parent is None:
            raise BlockRejected("prev-blk-not-found", block_hash[::-1].hex())
        if self._in_invalid_branch(parent.hash):
            raise BlockRejected("bad-prevblk", block_hash[::-1].hex())
        # the kernel must know the whole branch (a fresh kernel after invalidate_block may not)
        for anc in self._ancestors(parent.hash, lambda b: b.hash in self._kernel.known):
            self._kernel.submit(anc.raw, anc.hash)
        invalid, reason = self._kernel.submit(raw, block_hash)
        if block_hash in invalid:
            self._rejected[block_hash] = reason or "invalid"
            self._invalid.update(h for h in invalid if h in self._blocks)
            self._sync_to_kernel()
            raise BlockRejected(reason or "invalid", block_hash[::-1].hex())
        block = _Block(block_hash, header, raw, txs, parent.height + 1, parent.work + header.work, self._next_seq())
        self._blocks[block_hash] = block
        if log:
            self._append_record(_REC_BLOCK, raw)
        self._invalid.update(h for h in invalid if h in self._blocks)
        self._sync_to_kernel()
        if invalid:
            raise BlockRejected(reason or "invalid", invalid[0][::-1].hex())
        return block.hash_hex

    def _sync_to_kernel(self) -> None:
        """Reorganise the node's chain state onto the kernel's active tip."""
        target = self._kernel.tip()
        if target == self._chain[-1]:
            return
        if target not in self._blocks:
            raise RuntimeError(f"kernel tip {target[::-1].hex()} unknown to the node")  # pragma: no cover
        self._reorg_to(target)

    def _reorg_to(self, target: bytes) -> None:
        on_active = lambda b: b.height < len(self._chain) and self._chain[b.height] == b.hash  # noqa: E731
        connect = self._ancestors(target, on_active)
        fork_height = (connect[0].height - 1) if connect else self._blocks[target].height
        disconnected: list[Tx] = []
        reorged = len(self._chain) - 1 > fork_height
        while len(self._chain) - 1 > fork_height:
            disconnected[:0] = self._disconnect_tip()
        for b in connect:
            self._connect(b)
        self._refresh_mempool(disconnected, reorged)

    def _connect(self, block: _Block) -> None:
        undo: list[tuple[OutPoint, Coin]] = []
        for pos, tx in enumerate(block.txs):
            txid = tx.txid()
            if pos:
                for txin in tx.inputs:
                    coin = self._utxo.pop(txin.prevout, None)
                    if coin is None:  # pragma: no cover - the kernel accepted the block
                        raise RuntimeError(f"node state diverged from the kernel at {block.hash_hex}")
                    undo.append((txin.prevout, coin))
            for vout, out in enumerate(tx.outputs):
                if not is_op_return(out.script_pubkey):
                    self._utxo[OutPoint(txid, vout)] = Coin(out, block.height, pos == 0)
            self._txindex[txid] = (block.hash, pos)
        self._undo[block.hash] = undo
        self._chain.append(block.hash)

    def _disconnect_tip(self) -> list[Tx]:
        """Undo the tip block like Core's DisconnectBlock: transactions in reverse order, each one's
        outputs removed before its spent coins come back (so intra-block spends unwind correctly)."""
        block = self._blocks[self._chain.pop()]
        undo = self._undo.pop(block.hash)
        for pos in range(len(block.txs) - 1, -1, -1):
            tx = block.txs[pos]
            txid = tx.txid()
            for vout in range(len(tx.outputs)):
                self._utxo.pop(OutPoint(txid, vout), None)
            if self._txindex.get(txid, (None,))[0] == block.hash:
                del self._txindex[txid]
            if pos:
                for _ in tx.inputs:
                    outpoint, coin = undo.pop()
                    self._utxo[outpoint] = coin
        if undo:  # pragma: no cover - connect recorded exactly one coin per input
            raise RuntimeError(f"undo data of {block.hash_hex} does not match its inputs")
        return block.txs[1:]

    def _invalidate(self, block_hash: bytes) -> None:
        self._invalid.add(block_hash)
        self._reselect()

    def _reselect(self) -> None:
        """Make the most-work valid chain active. libbitcoinkernel has no invalidateblock, so when the
        tip has to move off a branch a fresh kernel replays the chosen chain from genesis."""
        for _ in range(len(self._blocks) + 1):
            best = self._best_valid_tip()
            if best == self._chain[-1]:
                return
            old, self._kernel = self._kernel, _Kernel()
            old.close()
            found_invalid = False
            for b in self._ancestors(best, lambda b: b.height == 0):
                invalid, _ = self._kernel.submit(b.raw, b.hash)
                if invalid:
                    self._invalid.update(h for h in invalid if h in self._blocks)
                    found_invalid = True
                    break
            self._sync_to_kernel()
            if not found_invalid:
                return

    def _best_valid_tip(self) -> bytes:
        bad: set[bytes] = set()
        ok: set[bytes] = set()

        def valid(h: bytes) -> bool:
            trail = []
            while h not in ok and h not in bad:
                if h in self._invalid:
                    bad.add(h)
                    break
                trail.append(h)
                b = self._blocks[h]
                if b.height == 0:
                    ok.add(h)
                    break
                h = b.header.prev_hash
            result = h in ok
            (ok if result else bad).update(trail)
            return result

        candidates = [b for b in self._blocks.values() if valid(b.hash)]
        return max(candidates, key=lambda b: (b.work, -b.seq)).hash

    # ------------------------------------------------------------------ internals: mempool

    def _refresh_mempool(self, disconnected: list[Tx], reorged: bool) -> None:
        """Drop confirmed and conflicting txs; re-validate the rest after a reorg (like Core's
        MaybeUpdateMempoolForReorg), disconnected txs first so parents precede children."""
        if not reorged:
            for txid in [t for t in self._mempool if t in self._txindex]:
                self._remove_from_mempool(txid)
            if all(op in self._utxo or op.txid in self._mempool for op in self._mempool_spends):
                return  # no conflicts: the chain only grew, so every remaining tx stays valid
        candidates = list(disconnected) + [e.tx for e in self._mempool.values()]
        self._mempool.clear()
        self._mempool_spends.clear()
        for tx in candidates:
            if tx.txid() in self._txindex or tx.txid() in self._mempool:
                continue
            try:
                self._accept_to_mempool(tx)
            except TxRejected:
                pass

    def _remove_from_mempool(self, txid: bytes) -> None:
        entry = self._mempool.pop(txid)
        for txin in entry.tx.inputs:
            if self._mempool_spends.get(txin.prevout) == txid:
                del self._mempool_spends[txin.prevout]

    def _accept_to_mempool(self, tx: Tx) -> MempoolEntry:
        return self._add_to_mempool(self._check_tx(tx))

    def _add_to_mempool(self, entry: MempoolEntry) -> MempoolEntry:
        tx = entry.tx
        self._mempool[entry.txid] = entry
        for txin in tx.inputs:
            self._mempool_spends[txin.prevout] = entry.txid
        return entry

    def _check_tx(self, tx: Tx) -> MempoolEntry:
        """Core's MemPoolAccept checks, in Core's order. Raises TxRejected; changes nothing."""
        txid = tx.txid()
        reject = lambda reason: TxRejected(reason, txid[::-1].hex())  # noqa: E731
        # CheckTransaction (context-free)
        if not tx.inputs:
            raise reject("bad-txns-vin-empty")
        if not tx.outputs:
            raise reject("bad-txns-vout-empty")
        if len(tx.serialize(include_witness=False)) * 4 > MAX_BLOCK_WEIGHT:
            raise reject("bad-txns-oversize")
        if sum(o.value for o in tx.outputs) > MAX_MONEY:
            raise reject("bad-txns-txouttotal-toolarge")
        if len({i.prevout for i in tx.inputs}) != len(tx.inputs):
            raise reject("bad-txns-inputs-duplicate")
        if any(i.prevout.txid == b"\x00" * 32 and i.prevout.vout == 0xFFFFFFFF for i in tx.inputs):
            raise reject("coinbase" if len(tx.inputs) == 1 else "bad-txns-prevout-null")
        # IsStandardTx
        if not 1 <= tx.version <= 3:
            raise reject("version")
        if tx.weight() > MAX_STANDARD_TX_WEIGHT:
            raise reject("tx-size")
        if len(tx.serialize(include_witness=False)) < 65:
            raise reject("tx-size-small")
        if any(is_dust(o.value, o.script_pubkey) for o in tx.outputs):
            raise reject("dust")
        # finality for the next block
        next_height = len(self._chain)
        tip_mtp = self._mtp(self._chain[-1])
        if not _is_final(tx, next_height, tip_mtp):
            raise reject("non-final")
        if txid in self._mempool:
            raise reject("txn-already-in-mempool")
        for txin in tx.inputs:
            if txin.prevout in self._mempool_spends:
                raise reject("txn-mempool-conflict")
        coins = []
        for txin in tx.inputs:
            coin = self._utxo.get(txin.prevout) or self._mempool_coin(txin.prevout)
            if coin is None:
                if any(OutPoint(txid, v) in self._utxo for v in range(len(tx.outputs))):
                    raise reject("txn-already-known")
                raise reject("bad-txns-inputs-missingorspent")
            coins.append(coin)
        if not self._sequence_locks_ok(tx, coins, next_height, tip_mtp):
            raise reject("non-BIP68-final")
        # CheckTxInputs
        value_in = 0
        for coin in coins:
            if coin.coinbase and next_height - coin.height < COINBASE_MATURITY:
                raise reject(
                    f"bad-txns-premature-spend-of-coinbase, tried to spend coinbase at depth {next_height - coin.height}"
                )
            value_in += coin.output.value
        value_out = sum(o.value for o in tx.outputs)
        if value_in < value_out:
            raise reject(f"bad-txns-in-belowout, value in ({_btc(value_in)}) < value out ({_btc(value_out)})")
        fee = value_in - value_out
        vsize = tx.vsize()
        min_fee = vsize * MIN_RELAY_FEE_PER_KVB // 1000
        if fee < min_fee:
            raise reject(f"min relay fee not met, {fee} < {min_fee}")
        # scripts (libbitcoinkernel, all consensus flags; taproot needs every spent output)
        try:
            ptx = pbk.Transaction(tx.serialize())
            spent = [pbk.TransactionOutput(pbk.ScriptPubkey(c.output.script_pubkey), c.output.value) for c in coins]
            pre = pbk.script.PrecomputedTransactionData(ptx, spent)
        except (RuntimeError, ValueError) as exc:
            raise reject(f"TX decode failed: {exc}") from None
        for i, coin in enumerate(coins):
            try:
                ok = pbk.ScriptPubkey(coin.output.script_pubkey).verify(coin.output.value, ptx, pre, i, _SCRIPT_FLAGS)
            except pbk.ScriptVerifyException as exc:
                raise reject(f"mandatory-script-verify-flag-failed ({exc.status.name}, input {i})") from None
            if not ok:
                detail = self._kernel_script_error(tx, fee) or f"script evaluation failed on input {i}"
                raise reject(f"mandatory-script-verify-flag-failed ({detail})")
        return MempoolEntry(tx.copy(), txid, fee, vsize, next_height - 1, tip_mtp)

    def _kernel_script_error(self, tx: Tx, fee: int) -> str | None:
        """The interpreter's own error text (e.g. ``Invalid Schnorr signature``) for a tx whose script
        check failed: ``ScriptPubkey.verify`` only says no, so a throwaway block holding the mempool and
        `tx` is shown to the kernel, which refuses it and logs the script error. The block never joins
        the node's tree and the kernel's tip does not move (an invalid block is never a candidate)."""
        txs, fees = self._block_template()
        parent = self._blocks[self._chain[-1]]
        _, _, raw = build_block(parent.hash, parent.height + 1, self._block_time(parent), b"\x51", txs + [tx], fees + fee, 2**63 + self._seq)
        invalid, reason = self._kernel.submit(raw, hash256(raw[:80]))
        m = re.match(r"(?:mandatory-|block-)script-verify-flag-failed \((.+?)\)", reason or "")
        return m.group(1) if m else None

    def _sequence_locks_ok(self, tx: Tx, coins: list[Coin], next_height: int, tip_mtp: int) -> bool:
        """BIP68 CalculateSequenceLocks + EvaluateSequenceLocks for the next block."""
        if tx.version < 2:
            return True
        min_height = min_time = -1
        for txin, coin in zip(tx.inputs, coins):
            seq = txin.sequence
            if seq & SEQ_DISABLE:
                continue
            coin_height = coin.height if coin.confirmed else next_height
            if seq & SEQ_TYPE_TIME:
                base = self._chain[max(coin_height - 1, 0)]
                min_time = max(min_time, self._mtp(base) + ((seq & SEQ_MASK) << 9) - 1)
            else:
                min_height = max(min_height, coin_height + (seq & SEQ_MASK) - 1)
        return min_height < next_height and min_time < tip_mtp

    # ------------------------------------------------------------------ internals: persistence

    def _append_record(self, kind: bytes, payload: bytes) -> None:
        if self._log_file is None:
            return
        self._log_file.write(kind + struct.pack("<I", len(payload)) + payload)
        self._log_file.flush()

    def _save_mempool(self, path: Path) -> None:
        """Write the mempool (dependency order) atomically, like bitcoind's mempool.dat."""
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            for entry in self._mempool.values():
                raw = entry.tx.serialize()
                f.write(struct.pack("<I", len(raw)) + raw)
        os.replace(tmp, path)

    def _load_mempool(self, path: Path) -> None:
        """Re-accept the saved mempool; transactions no longer valid are dropped, as in bitcoind."""
        if not path.exists():
            return
        data, pos = path.read_bytes(), 0
        while pos + 4 <= len(data):
            size = struct.unpack("<I", data[pos : pos + 4])[0]
            raw = data[pos + 4 : pos + 4 + size]
            pos += 4 + size
            if len(raw) != size:
                break
            try:
                tx = Tx.parse(raw)
                if tx.txid() not in self._mempool:
                    self._accept_to_mempool(tx)
            except (TxRejected, StakingError, ValueError):
                pass

    def _replay(self, path: Path) -> None:
        """Re-validate every logged block and invalidation; a torn last record is cut off."""
        if not path.exists():
            return
        data = path.read_bytes()
        pos = 0
        while pos + 5 <= len(data):
            kind, size = data[pos : pos + 1], struct.unpack("<I", data[pos + 1 : pos + 5])[0]
            if kind not in (_REC_BLOCK, _REC_INVALIDATE, _REC_RECONSIDER) or pos + 5 + size > len(data):
                break
            payload = data[pos + 5 : pos + 5 + size]
            if kind == _REC_BLOCK:
                try:
                    self._add_block(payload, log=False)
                except BlockRejected:
                    pass  # stays invalid, as it was when first seen
            elif payload in self._blocks and kind == _REC_INVALIDATE:
                self._invalidate(payload)
            elif payload in self._blocks:
                self.reconsider_block(payload[::-1].hex())
            pos += 5 + size
        if pos != len(data):
            with open(path, "r+b") as f:
                f.truncate(pos)


def _is_final(tx: Tx, height: int, mtp: int) -> bool:
    if tx.locktime == 0:
        return True
    limit = height if tx.locktime < LOCKTIME_THRESHOLD else mtp
    if tx.locktime < limit:
        return True
    return all(i.sequence == SEQUENCE_FINAL for i in tx.inputs)


def _btc(sats: int) -> str:
    return f"{sats // 100_000_000}.{sats % 100_000_000:08d}"


def _hash_from_hex(value: str, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 64:
        raise BackendError(f"{what} must be 64 hex characters, got {value!r}")
    try:
        return bytes.fromhex(value)[::-1]
    except ValueError:
        raise BackendError(f"{what} must be 64 hex characters, got {value!r}") from None


def _check_spk(script_pubkey: bytes) -> None:
    if not isinstance(script_pubkey, (bytes, bytearray)) or not 0 < len(script_pubkey) <= 10_000:
        raise ValueError("script_pubkey must be non-empty bytes")
