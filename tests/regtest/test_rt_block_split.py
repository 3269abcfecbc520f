"""`regtest.mining.parse_block` splits blocks in Python but must read exactly what libbitcoinkernel reads.

Every case compares the outcome (header, txs, or the error) with the kernel's own reading
(`_parse_block_kernel`: pbk decodes the block, each tx re-serialized by the kernel).
"""

from __future__ import annotations

import pbk
import pytest

from btc_staking.tx import OutPoint, Tx, TxIn, TxOut, compact_size
from regtest import mining
from regtest.embedded import EmbeddedNode
from regtest.mining import _parse_block_kernel, build_block, kernel_block, parse_block

SPK = bytes.fromhex("5120") + bytes(range(32))


def _outcome(fn, raw: bytes) -> tuple:
    try:
        header, txs = fn(raw)
    except Exception as exc:  # noqa: BLE001 - the error itself is what is compared
        return ("error", type(exc), str(exc))
    return ("ok", header, txs, [t.serialize() for t in txs])


def _same_as_kernel(raw: bytes) -> tuple:
    got = _outcome(parse_block, raw)
    assert got == _outcome(_parse_block_kernel, raw)
    return got


def _spend(n_in: int = 1, witness: bool = True) -> Tx:
    ins = [TxIn(OutPoint(bytes([i + 1]) * 32, i), b"" if witness else b"\x51", 0xFFFFFFFD) for i in range(n_in)]
    if witness:
        for txin in ins:
            txin.witness = [b"\x07" * 64]
    return Tx(2, ins, [TxOut(12_345, SPK)], 0)


def _block(txs: list[Tx]) -> bytes:
    return build_block(b"\x11" * 32, 5, 1_700_000_000, SPK, txs, 0)[2]


def _raw_block(tx_blobs: list[bytes]) -> bytes:
    """A block whose transactions are given as raw bytes (possibly odd ones)."""
    header = _block([])[:80]
    return header + compact_size(len(tx_blobs)) + b"".join(tx_blobs)


def test_ordinary_blocks_are_split_without_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    raws = [_block([]), _block([_spend()]), _block([_spend(3), _spend(1, witness=False), _spend(2)])]
    expected = [_outcome(_parse_block_kernel, r) for r in raws]

    def refuse(_raw: bytes) -> None:
        raise AssertionError("ordinary blocks must not need the kernel's decoder")

    monkeypatch.setattr(mining, "_parse_block_kernel", refuse)
    assert [_outcome(parse_block, r) for r in raws] == expected
    assert all(e[0] == "ok" for e in expected)


def test_node_blocks_read_the_same() -> None:
    node = EmbeddedNode()
    try:
        hashes = node.mine_blocks(3, SPK)
        for h in [node.get_block_hash(0), *hashes]:
            kind, header, txs, _ = _same_as_kernel(node.get_block(h))
            assert kind == "ok" and header.hash()[::-1].hex() == h
            assert [t.txid_hex() for t in txs] == [t.txid_hex() for t in node.get_block_txs(h)]
    finally:
        node.close()


def test_trailing_bytes_are_ignored_like_the_kernel() -> None:
    raw = _block([_spend()])
    got = _same_as_kernel(raw + b"\x00\x01\x02")
    assert got == _outcome(parse_block, raw)


def test_zero_input_transactions_follow_the_kernel() -> None:
    empty = (2).to_bytes(4, "little") + b"\x00\x00" + b"\x00" * 4  # Core reads: no inputs, no outputs
    legacy_no_inputs = (2).to_bytes(4, "little") + b"\x00" + b"\x01" + TxOut(5, SPK).serialize() + b"\x00" * 4
    segwit_no_inputs = (2).to_bytes(4, "little") + b"\x00\x01\x00\x01" + TxOut(5, SPK).serialize() + b"\x00" * 4
    cb = _spend().serialize()
    for blob in (empty, legacy_no_inputs, segwit_no_inputs):
        _same_as_kernel(_raw_block([cb, blob]))


def test_malformed_blocks_fail_like_the_kernel() -> None:
    raw = _block([_spend(2)])
    t = _spend()
    empty_witness = bytearray(t.serialize())
    empty_witness[-4 - 1 - 1 - 64 : -4] = b"\x00"  # witness stack of the only input emptied, marker kept
    bad_flag = bytearray(t.serialize())
    bad_flag[5] = 0x02
    cases = [
        raw[:-1],
        raw[:79],
        b"",
        raw[:80] + b"\xfd\x01\x00",  # non-canonical tx count
        _raw_block([bytes(empty_witness)]),
        _raw_block([bytes(bad_flag)]),
        _raw_block([_spend(1, witness=False).serialize()[:-2]]),
    ]
    for case in cases:
        got = _same_as_kernel(case)
        if case is not cases[0]:
            continue
        assert got == ("error", ValueError, "undecodable block: Failed to create Block")


def test_kernel_block_is_pbk_block() -> None:
    raw = _block([_spend(2), _spend(1, witness=False)])
    ours, theirs = kernel_block(raw), pbk.Block(raw)
    assert type(ours) is pbk.Block
    assert bytes(ours.block_hash) == bytes(theirs.block_hash)
    assert [bytes(t) for t in ours.transactions] == [bytes(t) for t in theirs.transactions]
    with pytest.raises(RuntimeError, match="^Failed to create Block$"):
        kernel_block(raw[:-1])
