"""checkpoint.btcparse (btc_staking Tx/BlockHeader + regtest framing) checked field by field against
python-bitcoinlib's independent deserializer, plus its typed errors."""

from __future__ import annotations

from dataclasses import replace

import pytest
from bitcoin.core import CBlock, CTransaction, b2lx
from cp_memchain import MemChain

from btc_staking.keys import generate_secret, xonly_from_secret
from btc_staking.params import regtest_default_params
from btc_staking.staking import build_staking_info, build_staking_tx, build_withdraw_tx
from btc_staking.tx import OutPoint, TxIn
from btc_staking.witness import timelock_witness
from checkpoint.btcparse import block_header, parse_block, parse_tx
from checkpoint.errors import InvalidInputError

PARAMS = regtest_default_params()


def _block_with_segwit_txs() -> tuple[MemChain, str]:
    staker, fp = xonly_from_secret(generate_secret()), xonly_from_secret(generate_secret())
    stx = build_staking_tx(staker, fp, PARAMS, 150, 50_000)
    stx.inputs.append(TxIn(OutPoint(b"\x05" * 32, 3), sequence=0xFFFFFFFD))
    info = build_staking_info(staker, [fp], PARAMS.covenant_pks, PARAMS.covenant_quorum, 150, 50_000)
    wd = build_withdraw_tx(OutPoint(stx.txid(), 0), 50_000, 150, b"\x00\x14" + b"\x22" * 20, 500)
    wd.inputs[0] = replace(wd.inputs[0], witness=list(timelock_witness(
        b"\x11" * 64, info.timelock_script, info.control_block(info.timelock_script))))
    chain = MemChain()
    (bh,) = chain.mine(1, [CTransaction.deserialize(t.serialize()) for t in (stx, wd)])
    return chain, bh


def test_block_fields_match_python_bitcoinlib():
    chain, bh = _block_with_segwit_txs()
    raw = chain.get_block(bh)
    ours = parse_block(raw)
    ref = CBlock.deserialize(raw)
    assert ours.hash == b2lx(ref.GetHash()) == bh
    assert ours.prev_hash == b2lx(ref.hashPrevBlock) and ours.header == raw[:80]
    assert ours.merkle_root == ref.hashMerkleRoot
    assert len(ours.txs) == len(ref.vtx) == 3
    for mine, theirs in zip(ours.txs, ref.vtx):
        assert mine.txid == b2lx(theirs.GetTxid())
        assert mine.raw == theirs.serialize()
        assert mine.is_coinbase == theirs.is_coinbase()
        assert [(i.prev_txid, i.prev_vout) for i in mine.inputs] == [
            (b2lx(v.prevout.hash), v.prevout.n) for v in theirs.vin]
        wit = [tuple(bytes(x) for x in w.scriptWitness.stack) for w in theirs.wit.vtxinwit] \
            if not theirs.wit.is_null() else [() for _ in theirs.vin]
        assert [i.witness for i in mine.inputs] == wit
        assert [(o.value, o.script_pubkey) for o in mine.outputs] == [(v.nValue, bytes(v.scriptPubKey))
                                                                     for v in theirs.vout]
        assert parse_tx(mine.raw) == mine
    assert any(i.witness for i in ours.txs[2].inputs)          # the witness survived


def test_malformed_and_inconsistent_blocks_are_typed_errors():
    chain, bh = _block_with_segwit_txs()
    raw = chain.get_block(bh)
    with pytest.raises(InvalidInputError, match="fewer than 81 bytes"):
        parse_block(raw[:80])
    with pytest.raises(InvalidInputError, match="malformed block"):
        parse_block(raw[:-7])
    bad_root = raw[:36] + bytes(32) + raw[68:]                  # header no longer commits to the txs
    with pytest.raises(InvalidInputError, match="merkle root"):
        parse_block(bad_root)
    with pytest.raises(InvalidInputError, match="malformed transaction"):
        parse_tx(b"\x02\x00\x00\x00\x01")
    with pytest.raises(InvalidInputError, match="malformed header"):
        block_header(raw[:79])
    assert block_header(raw[:80]).hash_hex() == bh
