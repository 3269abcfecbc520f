"""Bitcoin merkle proofs and header chains, cross-checked with python-bitcoinlib and libbitcoinkernel."""

from __future__ import annotations

import os
import random

import bitcoin
import bitcoin.core as bc
import pbk
import pytest

from btc_staking.errors import InvalidHeaderError, InvalidProofError
from btc_staking.headers import (
    MAINNET_POW_LIMIT,
    BlockHeader,
    bits_to_target,
    check_proof_of_work,
    header_work,
    target_to_bits,
    verify_header_chain,
)
from btc_staking.merkle import build_merkle_proof, merkle_root, verify_merkle_proof
from btc_staking.tx import hash256

GENESIS = bytes.fromhex(
    "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f61"
    "7fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c"
)
BLOCK1 = bytes.fromhex(
    "010000006fe28c0ab6f1b372c1a6a246ae63f74f931e8365e15a089c68d6190000000000982051fd1e4ba744bbbe680e1fee14677b"
    "a1a3c3540bf7b1cdb606e857233e0e61bc6649ffff001d01e36299"
)


def test_merkle_root_matches_python_bitcoinlib():
    for n in list(range(1, 18)) + [33, 100]:
        txids = [os.urandom(32) for _ in range(n)]
        ref = bc.CBlock.build_merkle_tree_from_txids(txids)[-1]
        assert merkle_root(txids) == ref


def test_merkle_proofs_roundtrip_and_tamper():
    rng = random.Random(1)
    for n in list(range(1, 20)) + [64, 101]:
        txids = [rng.randbytes(32) for _ in range(n)]
        root = merkle_root(txids)
        for i in range(n):
            proof = build_merkle_proof(txids, i)
            assert len(proof) % 32 == 0
            assert verify_merkle_proof(txids[i], root, i, proof)
            if n > 1:
                other = (i + 1) % n
                assert not verify_merkle_proof(txids[i], root, other, proof)
                bad = bytearray(proof)
                bad[0] ^= 1
                assert not verify_merkle_proof(txids[i], root, i, bytes(bad))
                assert not verify_merkle_proof(os.urandom(32), root, i, proof)
                assert not verify_merkle_proof(txids[i], root, i, proof[:-1])
    # single-tx block: empty proof, index 0, txid == root
    t = os.urandom(32)
    assert verify_merkle_proof(t, t, 0, b"")
    assert not verify_merkle_proof(t, t, 1, b"")
    # 64-byte total (txid||root, no siblings) with txid != root is invalid
    assert not verify_merkle_proof(t, os.urandom(32), 0, b"")


def test_merkle_real_block_170():
    """Block 170 (first tx to another person): two txs, root from the real header."""
    coinbase = bytes.fromhex("b1fea52486ce0c62bb442b530a3f0132b826c74e473d1f2c220bfa78111c5082")[::-1]
    spend = bytes.fromhex("f4184fc596403b9d638783cf57adfe4c75c605f6356fbc91338530e9831e9e16")[::-1]
    root = bytes.fromhex("7dac2c5666815c17a3b36427de37bb9d2e2c5ccec3f8633eb91a4205cb4c10ff")[::-1]
    assert merkle_root([coinbase, spend]) == root
    assert verify_merkle_proof(spend, root, 1, coinbase)
    assert build_merkle_proof([coinbase, spend], 1) == coinbase


def test_merkle_bad_inputs():
    with pytest.raises(InvalidProofError):
        merkle_root([])
    with pytest.raises(InvalidProofError):
        merkle_root([b"\x00" * 31])
    with pytest.raises(InvalidProofError):
        build_merkle_proof([os.urandom(32)], 1)
    with pytest.raises(InvalidProofError):
        verify_merkle_proof(b"\x00" * 31, b"\x00" * 32, 0, b"")
    with pytest.raises(InvalidProofError):
        verify_merkle_proof(b"\x00" * 32, b"\x00" * 32, -1, b"")


def test_real_headers_parse_hash_and_chain():
    g, b1 = BlockHeader.parse(GENESIS), BlockHeader.parse(BLOCK1)
    assert g.serialize() == GENESIS and b1.serialize() == BLOCK1
    assert g.hash_hex() == "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
    assert b1.hash_hex() == "00000000839a8e6886ab5951d76f411475428afc90947ee320161bbf18eb6048"
    for raw, h in ((GENESIS, g), (BLOCK1, b1)):
        k = pbk.BlockHeader(raw)  # Bitcoin Core's parser as oracle
        assert str(k.block_hash) == h.hash_hex()
        assert k.bits == h.bits and k.nonce == h.nonce and int(k.timestamp.timestamp()) == h.timestamp
        assert bc.CBlockHeader.deserialize(raw).GetHash() == h.hash()
    assert check_proof_of_work(g, MAINNET_POW_LIMIT) and check_proof_of_work(b1, MAINNET_POW_LIMIT)
    assert g.work == 0x100010001
    assert verify_header_chain([b1], parent=g, pow_limit=MAINNET_POW_LIMIT) == b1.work
    assert verify_header_chain([b1], parent=GENESIS, pow_limit=MAINNET_POW_LIMIT) == b1.work
    assert verify_header_chain([b1], parent=g.hash(), pow_limit=MAINNET_POW_LIMIT) == b1.work
    assert verify_header_chain([GENESIS, BLOCK1], pow_limit=MAINNET_POW_LIMIT) == g.work + b1.work
    with pytest.raises(InvalidHeaderError):
        verify_header_chain([b1, g], pow_limit=MAINNET_POW_LIMIT)  # wrong linkage
    with pytest.raises(InvalidHeaderError):
        verify_header_chain([b1], parent=b1, pow_limit=MAINNET_POW_LIMIT)
    # a bumped nonce breaks PoW
    bumped = BlockHeader(g.version, g.prev_hash, g.merkle_root, g.timestamp, g.bits, g.nonce + 1)
    assert not check_proof_of_work(bumped, MAINNET_POW_LIMIT)
    with pytest.raises(InvalidHeaderError):
        verify_header_chain([bumped], pow_limit=MAINNET_POW_LIMIT)


def _mine(prev: bytes, bits: int = 0x207FFFFF, ts: int = 1_700_000_000) -> BlockHeader:
    for nonce in range(1 << 20):
        h = BlockHeader(0x20000000, prev, os.urandom(32) if nonce == 0 else h.merkle_root, ts, bits, nonce)
        if check_proof_of_work(h):
            return h
    raise AssertionError("could not mine")


def test_regtest_chain_and_pow_vs_python_bitcoinlib():
    bitcoin.SelectParams("regtest")
    try:
        chain, prev = [], b"\x00" * 32
        for _ in range(20):
            h = _mine(prev)
            chain.append(h)
            prev = h.hash()
        assert verify_header_chain(chain) == sum(header_work(0x207FFFFF) for _ in chain)
        assert header_work(0x207FFFFF) == 2
        # PoW decisions agree with python-bitcoinlib's CheckProofOfWork on random headers
        for _ in range(200):
            h = BlockHeader(1, os.urandom(32), os.urandom(32), 1, 0x207FFFFF, random.getrandbits(32))
            try:
                bc.CheckProofOfWork(h.hash(), h.bits)
                ref = True
            except bc.CheckProofOfWorkError:
                ref = False
            assert check_proof_of_work(h) == ref
        broken = chain[:5] + [chain[6]]
        with pytest.raises(InvalidHeaderError):
            verify_header_chain(broken)
    finally:
        bitcoin.SelectParams("mainnet")


def test_bits_encoding():
    for bits in (0x1D00FFFF, 0x207FFFFF, 0x1B0404CB, 0x170331DB, 0x03123456):
        assert target_to_bits(bits_to_target(bits)) == bits
    assert bits_to_target(0x1D00FFFF) == 0xFFFF << 208
    for bad in (0x04923456, 0x00000000, 0xFF123456):  # negative, zero, overflow
        with pytest.raises(InvalidHeaderError):
            bits_to_target(bad)
    with pytest.raises(InvalidHeaderError):
        BlockHeader.parse(GENESIS[:79])
    with pytest.raises(InvalidHeaderError):
        check_proof_of_work(BlockHeader.parse(GENESIS[:72] + (0x207FFFFF).to_bytes(4, "little") + GENESIS[76:]),
                            MAINNET_POW_LIMIT)
    with pytest.raises(InvalidHeaderError):
        verify_header_chain([])
    assert hash256(GENESIS) == BlockHeader.parse(GENESIS).hash()
