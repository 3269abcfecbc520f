"""Minimal parsed view of Bitcoin blocks and transactions for the follower.

Blocks come from the backend as raw bytes; we parse them with python-bitcoinlib
(a declared dependency) into small immutable records so the detector does not
depend on any particular tx library. Txids are display-order hex.
"""

from __future__ import annotations

from dataclasses import dataclass

from bitcoin.core import CBlock, CTransaction, b2lx
from bitcoin.core.serialize import DeserializationExtraDataError, SerializationTruncationError

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


def _parse_ctx(ctx: CTransaction) -> ParsedTx:
    inputs = []
    for i, txin in enumerate(ctx.vin):
        stack: tuple[bytes, ...] = ()
        if ctx.wit is not None and i < len(ctx.wit.vtxinwit):
            stack = tuple(bytes(x) for x in ctx.wit.vtxinwit[i].scriptWitness.stack)
        inputs.append(TxInput(b2lx(txin.prevout.hash), int(txin.prevout.n), stack))
    outputs = tuple(TxOutput(int(o.nValue), bytes(o.scriptPubKey)) for o in ctx.vout)
    return ParsedTx(
        txid=b2lx(ctx.GetTxid()),
        raw=ctx.serialize(),
        inputs=tuple(inputs),
        outputs=outputs,
        is_coinbase=ctx.is_coinbase(),
    )


def parse_tx(raw: bytes) -> ParsedTx:
    """Parse one serialized transaction; raise ``InvalidInputError`` when malformed."""
    try:
        return _parse_ctx(CTransaction.deserialize(bytes(raw)))
    except (SerializationTruncationError, DeserializationExtraDataError, ValueError) as exc:
        raise InvalidInputError(f"malformed transaction: {exc}") from exc


def parse_block(raw: bytes) -> ParsedBlock:
    """Parse a serialized block; raise ``InvalidInputError`` when malformed."""
    if not isinstance(raw, (bytes, bytearray)) or len(raw) < 81:
        raise InvalidInputError("malformed block: fewer than 81 bytes")
    try:
        blk = CBlock.deserialize(bytes(raw))
    except (SerializationTruncationError, DeserializationExtraDataError, ValueError) as exc:
        raise InvalidInputError(f"malformed block: {exc}") from exc
    return ParsedBlock(
        hash=b2lx(blk.GetHash()),
        header=bytes(raw[:80]),
        prev_hash=b2lx(blk.hashPrevBlock),
        txs=tuple(_parse_ctx(tx) for tx in blk.vtx),
    )
