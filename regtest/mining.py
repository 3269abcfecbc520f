"""Regtest block building: subsidy, BIP34 coinbase, BIP141 witness commitment, header PoW, block codec."""

from __future__ import annotations

from typing import Sequence

import pbk
from pbk.capi.base import KernelOpaquePtr

from btc_staking.errors import StakingError
from btc_staking.headers import BlockHeader, bits_to_target
from btc_staking.merkle import merkle_root
from btc_staking.script import push_data, push_int
from btc_staking.tx import OutPoint, Tx, TxIn, TxOut, compact_size, hash256

from .wallet import parse_block as _split_block

__all__ = [
    "REGTEST_BITS",
    "HALVING_INTERVAL",
    "COINBASE_MATURITY",
    "BLOCK_VERSION",
    "WITNESS_COMMITMENT_HEADER",
    "block_subsidy",
    "coinbase_script_sig",
    "witness_commitment_script",
    "build_coinbase",
    "solve_header",
    "serialize_block",
    "parse_block",
    "kernel_block",
    "build_block",
]

REGTEST_BITS = 0x207FFFFF
HALVING_INTERVAL = 150  # regtest nSubsidyHalvingInterval
COINBASE_MATURITY = 100
BLOCK_VERSION = 0x20000000  # BIP9 top bits, no deployment signalled
WITNESS_COMMITMENT_HEADER = bytes.fromhex("aa21a9ed")
_NULL_OUTPOINT = OutPoint(b"\x00" * 32, 0xFFFFFFFF)
_MAX_SIZE = 0x02000000  # Core's MAX_SIZE: the largest CompactSize its deserializer accepts


def block_subsidy(height: int) -> int:
    """Block reward at `height` on regtest (50 BTC halving every 150 blocks)."""
    halvings = height // HALVING_INTERVAL
    return 0 if halvings >= 64 else (50 * 100_000_000) >> halvings


def coinbase_script_sig(height: int, extra_nonce: int = 0) -> bytes:
    """BIP34 height push (CScript() << height, so OP_1..OP_16 for 1..16) plus an extra-nonce push.
    The extra nonce keeps sibling blocks distinct and the script within the 2..100 byte limit."""
    return push_int(height) + push_data(extra_nonce.to_bytes(8, "little"))


def witness_commitment_script(txs: Sequence[Tx], reserved: bytes = b"\x00" * 32) -> bytes:
    """BIP141 commitment output script for a block whose non-coinbase transactions are `txs`."""
    wtxids = [b"\x00" * 32] + [t.wtxid() for t in txs]
    commitment = hash256(merkle_root(wtxids) + reserved)
    return b"\x6a\x24" + WITNESS_COMMITMENT_HEADER + commitment


def build_coinbase(height: int, script_pubkey: bytes, value: int, txs: Sequence[Tx], extra_nonce: int = 0) -> Tx:
    """Coinbase paying `value` to `script_pubkey`; adds the witness commitment iff some tx has a witness."""
    txin = TxIn(_NULL_OUTPOINT, coinbase_script_sig(height, extra_nonce), 0xFFFFFFFF)
    outputs = [TxOut(value, bytes(script_pubkey))]
    if any(t.has_witness() for t in txs):
        txin.witness = [b"\x00" * 32]
        outputs.append(TxOut(0, witness_commitment_script(txs)))
    return Tx(2, [txin], outputs, 0)


def solve_header(prev_hash: bytes, merkle: bytes, timestamp: int, bits: int = REGTEST_BITS) -> BlockHeader:
    """Grind the nonce until the header hash meets the target (about two tries at regtest difficulty)."""
    target = bits_to_target(bits)
    for nonce in range(1 << 32):
        header = BlockHeader(BLOCK_VERSION, prev_hash, merkle, timestamp, bits, nonce)
        if int.from_bytes(header.hash(), "little") <= target:
            return header
    raise RuntimeError("nonce space exhausted")  # pragma: no cover - impossible at regtest difficulty


def serialize_block(header: BlockHeader, txs: Sequence[Tx]) -> bytes:
    """Header, tx count and transactions (witness serialization)."""
    return header.serialize() + compact_size(len(txs)) + b"".join(t.serialize() for t in txs)


def kernel_block(raw: bytes) -> pbk.Block:
    """``pbk.Block(raw)`` without pbk's per-byte ctypes array copy (the kernel copies the bytes itself).
    Same object, same RuntimeError ("Failed to create Block") on undecodable data."""
    raw = bytes(raw)
    block = pbk.Block.__new__(pbk.Block)
    KernelOpaquePtr.__init__(block, raw, len(raw))  # c_void_p argument: the bytes' own buffer
    return block


def parse_block(raw: bytes) -> tuple[BlockHeader, list[Tx]]:
    """Split a raw block into its header and transactions.

    The block is split in Python (:func:`regtest.wallet.parse_block`); whatever that strict reading
    refuses (trailing bytes, zero-input or otherwise unusual transactions, truncation) goes to
    libbitcoinkernel's decoder, whose verdict it has always been: the result and errors are the
    kernel path's, only faster for ordinary blocks."""
    if isinstance(raw, (bytes, bytearray)) and len(raw) <= _MAX_SIZE:
        try:
            header, txs = _split_block(bytes(raw))
        except (ValueError, StakingError):
            pass
        else:
            # A tx without inputs is the one case where the split (segwit tried, then legacy) may read a
            # tx differently from Core's deserializer: leave it to the kernel. Every other successful
            # split reads exactly what the kernel reads, and the kernel re-serializes the same bytes.
            if all(t.inputs for t in txs):
                return BlockHeader.parse(header), txs
    return _parse_block_kernel(raw)


def _parse_block_kernel(raw: bytes) -> tuple[BlockHeader, list[Tx]]:
    """The kernel's reading: libbitcoinkernel does the framing, each tx is re-serialized and parsed."""
    try:
        block = kernel_block(raw)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"undecodable block: {exc}") from None
    return BlockHeader.parse(raw[:80]), [Tx.parse(bytes(t)) for t in block.transactions]


def build_block(
    prev_hash: bytes,
    height: int,
    timestamp: int,
    script_pubkey: bytes,
    txs: Sequence[Tx],
    fees: int,
    extra_nonce: int = 0,
) -> tuple[BlockHeader, list[Tx], bytes]:
    """Assemble and mine a block: coinbase (subsidy + fees), merkle root, PoW. Returns (header, txs, raw)."""
    coinbase = build_coinbase(height, script_pubkey, block_subsidy(height) + fees, txs, extra_nonce)
    all_txs = [coinbase, *txs]
    header = solve_header(prev_hash, merkle_root([t.txid() for t in all_txs]), timestamp)
    return header, all_txs, serialize_block(header, all_txs)
