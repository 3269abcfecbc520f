"""Helpers for the EmbeddedNode / RpcServer tests: keys, coinbase coins, signed P2TR spends, oracles."""

from __future__ import annotations

from dataclasses import dataclass

from btcmesh_testkit.oracles import btclib_verify, kernel_verify

from btc_staking.keys import generate_secret
from btc_staking.signing import p2tr_key_path_script, sign_key_path
from btc_staking.tx import OutPoint, Tx, TxIn, TxOut
from btc_staking.witness import key_path_witness
from regtest.embedded import EmbeddedNode

__all__ = ["Key", "new_key", "coinbase_coin", "spend_key_path", "oracles_accept", "FEE"]

FEE = 1_000


@dataclass(frozen=True)
class Key:
    """A BIP-86 key: secret and its P2TR scriptPubKey."""

    secret: bytes
    spk: bytes


def new_key() -> Key:
    """Fresh random P2TR key."""
    sk = generate_secret()
    return Key(sk, p2tr_key_path_script(sk, is_secret=True))


def coinbase_coin(node: EmbeddedNode, height: int) -> tuple[OutPoint, TxOut]:
    """Output 0 of the coinbase of the active block at `height`."""
    cb = node.get_block_txs(node.get_block_hash(height))[0]
    return OutPoint(cb.txid(), 0), cb.outputs[0]


def spend_key_path(
    key: Key,
    coins: list[tuple[OutPoint, TxOut]],
    outputs: list[TxOut] | None = None,
    *,
    dest: bytes | None = None,
    fee: int = FEE,
    sequence: int = 0xFFFFFFFD,
    locktime: int = 0,
) -> Tx:
    """Spend `coins` (all paying key.spk) with BIP-86 key-path signatures; default one output to dest."""
    if outputs is None:
        outputs = [TxOut(sum(c[1].value for c in coins) - fee, dest or key.spk)]
    tx = Tx(2, [TxIn(op, b"", sequence) for op, _ in coins], list(outputs), locktime)
    prevouts = [o for _, o in coins]
    for i in range(len(coins)):
        tx.inputs[i].witness = key_path_witness(sign_key_path(key.secret, tx, i, prevouts))
    return tx


def oracles_accept(tx: Tx, prevouts: list[TxOut]) -> bool:
    """Both independent interpreters (libbitcoinkernel, btclib) accept every input; asserts they agree."""
    results = []
    for i in range(len(tx.inputs)):
        k, b = kernel_verify(tx, prevouts, i), btclib_verify(tx, prevouts, i)
        assert k == b, f"oracles disagree on input {i}: kernel={k} btclib={b}"
        results.append(k)
    return all(results)
