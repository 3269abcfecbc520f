"""The key-based funding wallet on both backends: maturity, coin selection, fees, reservations,
mempool spends, reorgs and clear errors. Every funded tx is checked by both script oracles."""

from __future__ import annotations

import math

import pytest
from rt_backends import Chain, assert_oracles_accept, chain, make_chain, rejected  # noqa: F401  (fixture)

from btc_staking.keys import generate_secret
from btc_staking.params import dust_threshold
from btc_staking.tx import OutPoint, Tx, TxOut
from regtest.wallet import (
    COINBASE_MATURITY,
    DustOutputError,
    InsufficientFundsError,
    Wallet,
    WalletError,
    bip143_sighash,
    block_hash,
    parse_block,
)

COIN = 50 * 10**8
OTHER = bytes.fromhex("0014" + "22" * 20)


def test_coinbase_maturity(tool_path, tmp_path) -> None:
    for kind in ("embedded", "btcd"):
        c = make_chain(kind, tool_path, tmp_path / kind, mature_blocks=100)
        try:
            w = c.wallet
            assert w.height == 100 and len(w.utxos()) == 100
            # at tip 100 the block-1 coinbase can go into block 101: 101 - 1 = COINBASE_MATURITY
            assert COINBASE_MATURITY == 100 and w.balance() == COIN
            tx = w.fund([TxOut(10_000, OTHER)], 1)
            assert_oracles_accept(tx, w.prevouts(tx))
            c.backend.invalidate_block(c.backend.get_best_block_hash())
            w.scan()
            assert w.balance() == 0 and w.balance(spendable_only=False) == 99 * COIN
            with pytest.raises(InsufficientFundsError, match="immature"):
                w.fund([TxOut(10_000, OTHER)], 1)
            # the node agrees: one block short of maturity the spend is refused, then accepted
            reason = rejected(c.backend, tx)
            assert "premature" in reason or "before required maturity" in reason, reason
            c.mine(1)
            assert c.backend.send_raw_transaction(tx.serialize()) == tx.txid_hex()
        finally:
            c.close()


def test_fund_pays_outputs_change_and_fee(chain: Chain) -> None:
    w = chain.wallet
    assert w.balance() == 2 * COIN  # tip 101: the coinbases of blocks 1 and 2 can go into block 102
    tx = w.fund([TxOut(1_000_000, OTHER), TxOut(0, b"\x6a\x04test")], 3)
    prevouts = w.prevouts(tx)
    assert_oracles_accept(tx, prevouts)
    assert tx.outputs[:2] == [TxOut(1_000_000, OTHER), TxOut(0, b"\x6a\x04test")]
    change = tx.outputs[2]
    assert change.script_pubkey == w.script_pubkey
    fee = sum(p.value for p in prevouts) - sum(o.value for o in tx.outputs)
    assert fee == math.ceil(tx.vsize() * 3)
    txid = chain.backend.send_raw_transaction(tx.serialize())
    assert txid in chain.backend.get_mempool()
    w.scan()
    assert w.balance() == COIN  # one of the two mature coins is spent in the mempool
    chain.mine(1)
    # the change is a confirmed non-coinbase coin; block 3's coinbase matured with block 102
    assert w.balance() == change.value + 2 * COIN
    assert any(u.outpoint == OutPoint(tx.txid(), 2) and not u.coinbase for u in w.utxos())


def test_multi_input_selection_and_send(chain: Chain) -> None:
    w = chain.wallet
    chain.mine(1)
    assert w.balance() == 3 * COIN
    txid = w.send([TxOut(COIN + COIN // 2, OTHER)], 1.5)
    tx = Tx.parse(chain.backend.get_raw_transaction(txid))
    assert len(tx.inputs) == 2
    assert_oracles_accept(tx, [TxOut(COIN, w.script_pubkey)] * 2)
    assert w.balance() == COIN  # two coins spent in the mempool, one left
    (block,) = chain.mine(1)
    assert txid in chain.block_txids(block)


def test_reserved_coins_are_not_reused_until_released(chain: Chain) -> None:
    w = chain.wallet
    tx = w.fund([TxOut(10_000, OTHER)], 1)
    second = w.fund([TxOut(10_000, OTHER)], 1)
    assert second.inputs[0].prevout != tx.inputs[0].prevout
    with pytest.raises(InsufficientFundsError):
        w.fund([TxOut(10_000, OTHER)], 1)
    w.release(tx)
    again = w.fund([TxOut(10_000, OTHER)], 1)
    assert again.inputs[0].prevout == tx.inputs[0].prevout


def test_mempool_spend_by_someone_else_is_excluded(chain: Chain) -> None:
    """A tx spending the wallet's coin that the wallet did not send itself (another copy of it)."""
    w = chain.wallet
    twin = Wallet(chain.backend, w._secret, verify=assert_oracles_accept)  # noqa: SLF001 - same key, own state
    twin.scan()
    theirs = twin.fund([TxOut(10_000, OTHER)], 1)
    chain.backend.send_raw_transaction(theirs.serialize())
    assert w.balance() == 2 * COIN  # not rescanned yet
    w.scan()
    assert w.balance() == COIN
    ours = w.fund([TxOut(10_000, OTHER)], 1)
    assert ours.inputs[0].prevout != theirs.inputs[0].prevout
    chain.backend.send_raw_transaction(ours.serialize())


def test_bad_requests_raise_clear_errors(chain: Chain) -> None:
    w = chain.wallet
    with pytest.raises(DustOutputError):
        w.fund([TxOut(dust_threshold(OTHER) - 1, OTHER)], 1)
    assert w.fund([TxOut(dust_threshold(OTHER), OTHER)], 1)
    with pytest.raises(WalletError, match="fee_rate"):
        w.fund([TxOut(10_000, OTHER)], 0)
    with pytest.raises(WalletError, match="at least one output"):
        w.fund([], 1)
    with pytest.raises(InsufficientFundsError, match="need"):
        w.fund([TxOut(10**15, OTHER)], 1)
    with pytest.raises(WalletError, match="not watched"):
        w.tx_height("00" * 32)
    with pytest.raises(ValueError):
        Wallet(chain.backend, b"\x00" * 32)


def test_reorg_rolls_back_and_rescans(chain: Chain) -> None:
    w = chain.wallet
    tx = w.fund([TxOut(100_000, w.script_pubkey)], 1)  # pay ourselves
    chain.backend.send_raw_transaction(tx.serialize())
    w.watch(tx.txid_hex())
    (block,) = chain.mine(1)
    assert w.tx_height(tx.txid_hex()) == 102
    coins_before = {u.outpoint for u in w.utxos()}
    assert OutPoint(tx.txid(), 0) in coins_before
    chain.backend.invalidate_block(block)
    w.scan()
    assert w.reorgs == 1 and w.height == 101
    assert w.tx_height(tx.txid_hex()) is None
    assert OutPoint(tx.txid(), 0) not in {u.outpoint for u in w.utxos()}
    assert tx.inputs[0].prevout in {u.outpoint for u in w.utxos()}  # the spent coin is back
    # a longer replacement chain: the wallet follows it block by block
    chain.mine(3)
    assert w.height == 104 == chain.height()
    assert [b.hash for b in w._blocks[-3:]] == [chain.backend.get_block_hash(h) for h in (102, 103, 104)]  # noqa: SLF001


def test_parse_block_matches_the_backend(chain: Chain) -> None:
    chain.wallet.send([TxOut(50_000, OTHER)], 1)
    (h,) = chain.mine(1)
    raw = chain.backend.get_block(h)
    header, txs = parse_block(raw)
    assert block_hash(header) == h and header == chain.backend.get_block_header(h)
    assert len(txs) == 2
    for t in txs:
        assert chain.backend.get_raw_transaction(t.txid_hex()) == t.serialize()
    with pytest.raises(WalletError):
        parse_block(raw + b"\x00")


def test_fresh_wallet_with_unrelated_key_sees_nothing(chain: Chain) -> None:
    other = Wallet(chain.backend, generate_secret())
    assert other.scan() == 101
    assert other.balance(spendable_only=False) == 0 and other.utxos() == []


def test_verify_hook_refusal_reserves_nothing(chain: Chain) -> None:
    calls = []

    def refuse(tx: Tx, prevouts: list[TxOut]) -> None:
        calls.append((tx, prevouts))
        raise ValueError("oracle says no")

    w = Wallet(chain.backend, chain.wallet._secret, verify=refuse)  # noqa: SLF001
    w.scan()
    before = w.balance()
    with pytest.raises(ValueError, match="oracle says no"):
        w.fund([TxOut(10_000, OTHER)], 1)
    assert w.balance() == before and len(calls) == 1
    tx, prevouts = calls[0]
    assert_oracles_accept(tx, prevouts)  # the refused tx was in fact valid and fully signed


def test_bip143_sighash_vector() -> None:
    """BIP-143 'Native P2WPKH' example, second input."""
    unsigned = Tx.parse(bytes.fromhex(
        "0100000002fff7f7881a8099afa6940d42d1e7f6362bec38171ea3edf433541db4e4ad969f0000000000eeffffff"
        "ef51e1b804cc89d182d279655c3aa89e815b1b309fe287d9b2b55d57b90ec68a0100000000ffffffff02202cb206"
        "000000001976a9148280b37df378db99f66f85c95a783a76ac7a6d5988ac9093510d000000001976a9143bde42db"
        "ee7e4dbe6a21b2d50ce2f0167faa815988ac11000000"))
    code = bytes.fromhex("76a9141d0f172a0ecb48aee1be1f2687d2963ae33f71a188ac")
    assert bip143_sighash(unsigned, 1, code, 600_000_000).hex() == (
        "c37af31116d1b27caf68aae9e3ac82f1477929014d5b917657d0eb49478cb670")


def test_p2wpkh_wallet_receives_and_spends(chain: Chain) -> None:
    wpkh = Wallet(chain.backend, generate_secret(), verify=assert_oracles_accept, address_type="p2wpkh")
    assert wpkh.script_pubkey[:2] == b"\x00\x14" and wpkh.address.startswith("bcrt1q")
    chain.wallet.send([TxOut(300_000, wpkh.script_pubkey), TxOut(200_000, wpkh.script_pubkey)], 2)
    chain.mine(1)
    wpkh.scan()
    assert wpkh.balance() == 500_000 and len(wpkh.utxos()) == 2
    tx = wpkh.fund([TxOut(450_000, OTHER)], 2)  # needs both coins: two BIP-143 ECDSA inputs
    assert len(tx.inputs) == 2 and all(len(i.witness) == 2 for i in tx.inputs)
    fee = 500_000 - sum(o.value for o in tx.outputs)
    assert math.ceil(tx.vsize() * 2) <= fee <= math.ceil((tx.vsize() + 2) * 2)  # dummy sigs are max-size
    txid = chain.backend.send_raw_transaction(tx.serialize())
    (block,) = chain.mine(1)
    assert txid in chain.block_txids(block)
    wpkh.scan()
    assert wpkh.balance() == sum(o.value for o in tx.outputs if o.script_pubkey == wpkh.script_pubkey)
    with pytest.raises(WalletError, match="address_type"):
        Wallet(chain.backend, generate_secret(), address_type="p2pkh")


class _RacingBackend:
    """Passes everything through; while the block at ``height`` is being fetched, the chain is
    reorganised under the scan (that block invalidated, a longer branch mined)."""

    def __init__(self, inner, height: int, script: bytes) -> None:
        self.inner, self.height, self.script, self.fired = inner, height, script, False

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def get_block(self, hash_hex: str) -> bytes:
        raw = self.inner.get_block(hash_hex)
        if not self.fired and hash_hex == self.inner.get_block_hash(self.height):
            self.fired = True
            self.inner.invalidate_block(hash_hex)
            self.inner.mine_blocks(3, self.script)
        return raw


def test_scan_survives_a_reorg_racing_it(chain: Chain) -> None:
    chain.backend.mine_blocks(3, chain.wallet.script_pubkey)  # 102..104, not scanned by anyone yet
    racer = _RacingBackend(chain.backend, 103, chain.wallet.script_pubkey)
    w = Wallet(racer, chain.wallet._secret)  # noqa: SLF001
    assert w.scan() == 105 and racer.fired and w.reorgs == 1
    fresh = Wallet(chain.backend, chain.wallet._secret)  # noqa: SLF001
    fresh.scan()
    assert w.utxos() == fresh.utxos() and len(w.utxos()) == 105
    assert [b.hash for b in w._blocks] == [chain.backend.get_block_hash(h) for h in range(106)]  # noqa: SLF001


def test_watch_finds_already_mined_txs(chain: Chain) -> None:
    txid = chain.wallet.send([TxOut(40_000, OTHER)], 1)
    chain.mine(2)
    chain.wallet.watch(txid)
    assert chain.wallet.tx_height(txid) == 102 and chain.wallet.confirmations(txid) == 2
    chain.backend.invalidate_block(chain.backend.get_block_hash(102))
    chain.wallet.scan()
    assert chain.wallet.tx_height(txid) is None and chain.wallet.in_mempool(txid)
