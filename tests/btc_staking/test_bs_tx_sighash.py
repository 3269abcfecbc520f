"""Transaction serialization and BIP-341 sighashes against python-bitcoinlib and btclib."""

from __future__ import annotations

import os
import random

import pytest
from bitcoin.core import CTransaction
from btclib.hashes import tagged_hash as btclib_tagged_hash
from btclib.script import sig_hash as btclib_sighash
from btclib.tx.tx import Tx as BTx
from btclib.tx.tx_out import TxOut as BTxOut

from btc_staking.errors import InvalidKeyError, InvalidTxError
from btc_staking.keys import generate_secret, xonly_from_secret
from btc_staking.sighash import tapleaf_hash, taproot_sighash
from btc_staking.signing import p2tr_key_path_script
from btc_staking.tx import OutPoint, Tx, TxIn, TxOut, p2tr_script, p2wpkh_script


def _random_tx(rng: random.Random, n_in: int, n_out: int, witness: bool) -> Tx:
    ins = [
        TxIn(OutPoint(rng.randbytes(32), rng.randrange(5)), b"", rng.choice([0xFFFFFFFF, 0xFFFFFFFD, 10, 0]),
             [rng.randbytes(rng.choice([0, 1, 64, 65, 300])) for _ in range(rng.randrange(1, 4))] if witness else [])
        for _ in range(n_in)
    ]
    outs = [TxOut(rng.randrange(1, 10**8), p2tr_script(rng.randbytes(32))) for _ in range(n_out)]
    return Tx(rng.choice([1, 2]), ins, outs, rng.choice([0, 800_000]))


def test_tx_serialization_matches_python_bitcoinlib():
    rng = random.Random(3)
    for _ in range(30):
        tx = _random_tx(rng, rng.randrange(1, 4), rng.randrange(1, 4), rng.random() < 0.7)
        raw = tx.serialize()
        ref = CTransaction.deserialize(raw)
        assert ref.serialize() == raw
        assert ref.GetTxid() == tx.txid()
        assert tx.txid_hex() == ref.GetTxid()[::-1].hex()
        assert Tx.parse(raw) == tx
        assert Tx.parse(tx.serialize(include_witness=False)).serialize() == tx.serialize(include_witness=False)
        b = BTx.parse(raw)
        assert b.vsize == tx.vsize() and b.weight == tx.weight()
        assert b.id == tx.txid()[::-1] and b.hash == tx.wtxid()[::-1]


def test_taproot_sighash_matches_btclib_all_types():
    rng = random.Random(11)
    for _ in range(40):
        n_in = rng.randrange(1, 4)
        tx = _random_tx(rng, n_in, rng.randrange(1, 4), False)
        prevouts = [TxOut(rng.randrange(1, 10**8), p2tr_script(rng.randbytes(32))) for _ in range(n_in)]
        btx = BTx.parse(tx.serialize())
        bprev = [BTxOut(o.value, o.script_pubkey) for o in prevouts]
        leaf = rng.randbytes(rng.randrange(1, 80))
        for ht in (0x00, 0x01, 0x02, 0x03, 0x81, 0x82, 0x83):
            for i in range(n_in):
                if ht & 3 == 3 and i >= len(tx.outputs):
                    with pytest.raises(InvalidTxError):
                        taproot_sighash(tx, i, prevouts, ht)
                    continue
                key = btclib_sighash.taproot(btx, i, bprev, ht, 0, b"", b"")
                assert taproot_sighash(tx, i, prevouts, ht) == key
                ext = btclib_tagged_hash(b"TapLeaf", b"\xc0" + bytes([len(leaf)]) + leaf) + b"\x00" + b"\xff" * 4
                assert tapleaf_hash(leaf) == ext[:32]
                script = btclib_sighash.taproot(btx, i, bprev, ht, 1, b"", ext)
                assert taproot_sighash(tx, i, prevouts, ht, leaf_script=leaf) == script


def test_tx_bad_inputs():
    with pytest.raises(InvalidTxError):
        OutPoint(b"\x00" * 31, 0)
    with pytest.raises(InvalidTxError):
        OutPoint(b"\x00" * 32, -1)
    with pytest.raises(InvalidTxError):
        TxOut(-1, b"")
    with pytest.raises(InvalidTxError):
        TxOut(21_000_001 * 10**8, b"")
    with pytest.raises(InvalidTxError):
        TxIn(OutPoint(b"\x00" * 32, 0), sequence=2**32)
    tx = Tx(2, [TxIn(OutPoint(os.urandom(32), 0))], [TxOut(1000, p2tr_script(os.urandom(32)))], 0)
    raw = tx.serialize()
    for bad in (raw[:-1], raw + b"\x00", b"", raw[:4] + b"\x00\x02" + raw[5:]):
        with pytest.raises(InvalidTxError):
            Tx.parse(bad)
    with pytest.raises(InvalidTxError):
        taproot_sighash(tx, 1, [tx.outputs[0]])
    with pytest.raises(InvalidTxError):
        taproot_sighash(tx, 0, [])
    with pytest.raises(InvalidTxError):
        taproot_sighash(tx, 0, [tx.outputs[0]], hash_type=0x04)
    with pytest.raises(InvalidKeyError):
        p2tr_script(b"\x00" * 33)
    with pytest.raises(InvalidKeyError):
        p2wpkh_script(b"\x04" * 33)


def test_bip86_output_key_vector():
    """BIP-86 test vector (account 0, first receiving address)."""
    internal = bytes.fromhex("cc8a4bc64d897bddc5fbc2f670f7a8ba0b386779106cf1223c6fc5d7cd6fc115")
    assert p2tr_key_path_script(internal).hex() == (
        "5120a60869f0dbcf1dc659c9cecbaf8050135ea9e8cdc487053f1dc6880949dc684c"
    )
    sk = generate_secret()
    assert p2tr_key_path_script(sk, is_secret=True) == p2tr_key_path_script(xonly_from_secret(sk))


def test_unfunded_zero_input_tx_roundtrip():
    """Unfunded staking txs (no inputs) parse back (extended reading first, then legacy, like Bitcoin Core)."""
    from btc_staking.params import regtest_default_params
    from btc_staking.staking import build_staking_tx

    for with_op_return in (True, False):
        tx = build_staking_tx(xonly_from_secret(generate_secret()), xonly_from_secret(generate_secret()),
                              regtest_default_params(), 200, 50_000, with_op_return=with_op_return)
        assert not tx.inputs
        assert Tx.parse(tx.serialize()) == tx
