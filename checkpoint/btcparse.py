"""Minimal parsed view of Bitcoin blocks and transactions for the follower.

Blocks come from the backend as raw bytes. Framing is done by
:func:`regtest.mining.parse_block` (split in Python; anything unusual falls back to libbitcoinkernel's decoder), every
transaction is parsed with :meth:`btc_staking.tx.Tx.parse` and the header with
:class:`btc_staking.headers.BlockHeader`; the merkle root is recomputed with
:func:`btc_staking.merkle.merkle_root`, so a backend serving a block whose txs
do not match its header is caught here. The result is a small immutable record
so the detector does not depend on any particular tx library. Txids are
display-order hex.
"""

from __future__ import annotations

from dataclasses import dataclass

from btc_staking.errors import StakingError
from btc_staking.headers import BlockHeader
from btc_staking.merkle import merkle_root
from btc_staking.tx import Tx

from checkpoint.errors import InvalidInputError


@dataclass(frozen=True)
class TxInput:
    """One input: the outpoint it spends and its witness stack."""

    prev_txid: str
    prev_vout: int
    witness: tuple[bytes, ...]


@dataclass(frozen=True)
class TxOutput:
    """One output: value in satoshi and its pkScript."""

    value: int
    script_pubkey: bytes


@dataclass(frozen=True)
class ParsedTx:
    """A transaction with its display-order txid and full (witness) serialization."""

    txid: str
    raw: bytes
    inputs: tuple[TxInput, ...]
    outputs: tuple[TxOutput, ...]
    is_coinbase: bool


@dataclass(frozen=True)
class ParsedBlock:
    """A block: display-order hash, 80-byte header, previous hash and its txs."""

    hash: str
    header: bytes
    prev_hash: str
    txs: tuple[ParsedTx, ...]

    @property
    def txids(self) -> list[str]:
        """Display-order txids in block order."""
        return [tx.txid for tx in self.txs]

    @property
    def merkle_root(self) -> bytes:
        """The header's merkle root (internal byte order)."""
        return self.header[36:68]


_NULL_TXID = b"\x00" * 32


def _from_tx(tx: Tx) -> ParsedTx:
    inputs = tuple(TxInput(i.prevout.txid[::-1].hex(), int(i.prevout.vout), tuple(bytes(w) for w in i.witness))
                   for i in tx.inputs)
    outputs = tuple(TxOutput(int(o.value), bytes(o.script_pubkey)) for o in tx.outputs)
    coinbase = len(tx.inputs) == 1 and tx.inputs[0].prevout.txid == _NULL_TXID \
        and tx.inputs[0].prevout.vout == 0xFFFFFFFF
    return ParsedTx(txid=tx.txid_hex(), raw=tx.serialize(), inputs=inputs, outputs=outputs, is_coinbase=coinbase)


def parse_tx(raw: bytes) -> ParsedTx:
    """Parse one serialized transaction; raise ``InvalidInputError`` when malformed."""
    try:
        return _from_tx(Tx.parse(bytes(raw)))
    except (StakingError, ValueError, TypeError) as exc:
        raise InvalidInputError(f"malformed transaction: {exc}") from exc


def parse_block(raw: bytes) -> ParsedBlock:
    """Parse a serialized block; raise ``InvalidInputError`` when malformed or inconsistent."""
    from regtest.mining import parse_block as split_block

    if not isinstance(raw, (bytes, bytearray)) or len(raw) < 81:
        raise InvalidInputError("malformed block: fewer than 81 bytes")
    try:
        header, txs = split_block(bytes(raw))
    except (StakingError, ValueError, TypeError) as exc:
        raise InvalidInputError(f"malformed block: {exc}") from exc
    if not txs:
        raise InvalidInputError("malformed block: no transactions")
    if merkle_root([t.txid() for t in txs]) != header.merkle_root:
        raise InvalidInputError(f"block {header.hash_hex()}: merkle root does not match its transactions")
    return ParsedBlock(hash=header.hash_hex(), header=bytes(raw[:80]), prev_hash=header.prev_hash[::-1].hex(),
                       txs=tuple(_from_tx(t) for t in txs))


def block_header(raw: bytes) -> BlockHeader:
    """Parse an 80-byte header; raise ``InvalidInputError`` when malformed."""
    try:
        return BlockHeader.parse(bytes(raw))
    except (StakingError, ValueError, TypeError) as exc:
        raise InvalidInputError(f"malformed header: {exc}") from exc
