"""EmbeddedNode: mining, mempool policy, Babylon CSV spends, reorgs and persistence.

Every block the node mines is validated by libbitcoinkernel inside the node; these tests also check
structure independently (PoW, merkle root, BIP34, witness commitment) and run accepted and
rejected spends through two independent interpreters (libbitcoinkernel and btclib)."""

from __future__ import annotations

import pytest
from bitcoin.core.script import CScript
from rt_helpers import FEE, coinbase_coin, new_key, oracles_accept, spend_key_path

from btc_staking.headers import BlockHeader, check_proof_of_work, verify_header_chain
from btc_staking.keys import generate_secret, xonly_from_secret
from btc_staking.merkle import merkle_root
from btc_staking.params import regtest_default_params
from btc_staking.signing import sign_script_path
from btc_staking.staking import build_staking_info, build_withdraw_tx
from btc_staking.tx import OutPoint, Tx, TxOut, hash256
from btc_staking.witness import timelock_witness
from regtest.backend import BackendError, BitcoinBackend, TxRejected
from regtest.embedded import GENESIS_TIME, BlockRejected, EmbeddedNode
from regtest.mining import block_subsidy, build_block

pytestmark = pytest.mark.timeout(60)

REGTEST_GENESIS = "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"


@pytest.fixture
def node():
    n = EmbeddedNode()
    yield n
    if not n._closed:
        n.verify_against_kernel()  # every test ends with node state == libbitcoinkernel's
    n.close()


@pytest.fixture
def funded(node):
    """A node with 101 blocks mined to one key: the height-1 coinbase is mature."""
    key = new_key()
    node.mine_blocks(101, key.spk)
    return node, key


def rejection(node: EmbeddedNode, tx: Tx) -> str:
    with pytest.raises(TxRejected) as info:
        node.send_raw_transaction(tx.serialize())
    return info.value.reason


# ------------------------------------------------------------------ mining


def test_genesis_and_protocol(node):
    assert isinstance(node, BitcoinBackend)
    assert node.get_block_count() == 0
    assert node.get_best_block_hash() == REGTEST_GENESIS == node.get_block_hash(0)
    assert BlockHeader.parse(node.get_block_header(REGTEST_GENESIS)).hash_hex() == REGTEST_GENESIS
    with pytest.raises(BackendError):
        node.get_block_hash(1)
    with pytest.raises(BackendError):
        node.get_block("00" * 32)
    with pytest.raises(BackendError):
        node.get_raw_transaction("zz")
    with pytest.raises(BackendError):
        node.get_block_hash(True)
    with pytest.raises(ValueError):
        node.mine_blocks(-1, b"\x51")
    with pytest.raises(ValueError):
        node.mine_blocks(1, b"")
    with pytest.raises(TxRejected, match="TX decode failed"):
        node.send_raw_transaction("00")  # type: ignore[arg-type]
    with pytest.raises(BackendError):
        node.invalidate_block(REGTEST_GENESIS)
    assert node.get_block_count() == 0 and node.get_mempool() == []


def test_mined_blocks_are_well_formed(node):
    key = new_key()
    hashes = node.mine_blocks(160, key.spk)
    assert node.get_block_count() == 160 and node.get_best_block_hash() == hashes[-1]
    headers = [node.get_block_header(h) for h in hashes]
    verify_header_chain(headers, parent=node.get_block_header(REGTEST_GENESIS))  # linkage + PoW
    for height in (1, 16, 17, 149, 150, 160):
        h = hashes[height - 1]
        header = BlockHeader.parse(node.get_block_header(h))
        assert header.bits == 0x207FFFFF and check_proof_of_work(header)
        txs = node.get_block_txs(h)
        assert merkle_root([t.txid() for t in txs]) == header.merkle_root
        coinbase = txs[0]
        first = next(iter(CScript(coinbase.inputs[0].script_sig)))  # BIP34, parsed by python-bitcoinlib
        assert (int.from_bytes(first, "little") if isinstance(first, bytes) else first) == height  # OP_N -> int
        assert coinbase.outputs[0] == TxOut(block_subsidy(height), key.spk)
        assert node.get_block(h)[:80] == node.get_block_header(h)
    assert block_subsidy(149) == 50 * 10**8 and block_subsidy(150) == 25 * 10**8  # regtest halving
    # deterministic, strictly increasing times above the median time past
    times = [BlockHeader.parse(x).timestamp for x in headers]
    assert times[0] == GENESIS_TIME + 600 and all(b > a for a, b in zip(times, times[1:]))
    assert node.median_time_past() == sorted(times[-11:])[5]


def test_coinbase_maturity(node):
    key = new_key()
    node.mine_blocks(100, key.spk)  # tip 100: height-1 coinbase has 99 confirmations + next block = 100
    op, out = coinbase_coin(node, 1)
    tx = spend_key_path(key, [(op, out)])
    assert oracles_accept(tx, [out])
    reason = rejection(node, spend_key_path(key, [coinbase_coin(node, 2)]))
    assert reason.startswith("bad-txns-premature-spend-of-coinbase"), reason
    # height-1 coinbase: next block is 101, depth 100 -> spendable
    assert node.send_raw_transaction(tx.serialize()) == tx.txid_hex()
    # a block spending an immature coinbase is refused by libbitcoinkernel itself
    early = spend_key_path(key, [coinbase_coin(node, 3)])
    with pytest.raises(BlockRejected) as info:
        node.mine_fork(node.get_best_block_hash(), 1, key.spk, txs=[early])
    assert "premature-spend-of-coinbase" in info.value.reason
    assert node.get_block_count() == 100 and node.get_mempool() == [tx.txid_hex()]


def test_p2tr_key_path_spend_mined_with_fee(funded):
    node, key = funded
    dest = new_key()
    op, out = coinbase_coin(node, 1)
    tx = spend_key_path(key, [(op, out)], [TxOut(10**8, dest.spk), TxOut(out.value - 10**8 - 5_000, key.spk)])
    assert oracles_accept(tx, [out])
    txid = node.send_raw_transaction(tx.serialize())
    assert txid == tx.txid_hex() and node.get_mempool() == [txid]
    assert node.get_mempool_entry(txid).fee == 5_000
    assert node.get_raw_transaction(txid) == tx.serialize()
    assert node.send_raw_transaction(tx.serialize()) == txid  # idempotent, like bitcoind
    miner = new_key()
    (block_hash,) = node.mine_blocks(1, miner.spk)
    assert node.get_mempool() == [] and node.get_tx_height(txid) == 102
    assert node.get_tx_block(txid) == (block_hash, 1)
    txs = node.get_block_txs(block_hash)
    assert [t.txid_hex() for t in txs[1:]] == [txid]
    assert txs[0].outputs[0].value == block_subsidy(102) + 5_000  # fees go to the coinbase
    # segwit block: BIP141 commitment recomputed independently
    commitment = hash256(merkle_root([b"\x00" * 32, tx.wtxid()]) + txs[0].inputs[0].witness[0])
    assert txs[0].outputs[1].script_pubkey == bytes.fromhex("6a24aa21a9ed") + commitment
    assert node.get_raw_transaction(txid) == tx.serialize()
    assert node.get_utxo(op) is None and node.get_utxo(OutPoint(tx.txid(), 0)).output.value == 10**8
    assert [c.output.value for _, c in node.scan_utxos([dest.spk])] == [10**8]


def test_bad_signature_rejected(funded):
    node, key = funded
    op, out = coinbase_coin(node, 1)
    tx = spend_key_path(key, [(op, out)])
    sig = bytearray(tx.inputs[0].witness[0])
    sig[10] ^= 0x01
    tx.inputs[0].witness = [bytes(sig)]
    assert not oracles_accept(tx, [out])
    assert rejection(node, tx) == "mandatory-script-verify-flag-failed (Invalid Schnorr signature)"
    wrong_key = spend_key_path(new_key(), [(op, out)], [TxOut(out.value - FEE, key.spk)])
    assert not oracles_accept(wrong_key, [out])
    assert rejection(node, wrong_key).startswith("mandatory-script-verify-flag-failed")
    assert node.get_mempool() == []
    # the kernel refuses the same tx in a block
    with pytest.raises(BlockRejected) as info:
        node.mine_fork(node.get_best_block_hash(), 1, key.spk, txs=[tx])
    assert info.value.reason.startswith("block-script-verify-flag-failed (Invalid Schnorr signature)")
    assert node.get_block_count() == 101


def test_double_spend_and_missing_inputs(funded):
    node, key = funded
    node.mine_blocks(1, key.spk)
    coin = coinbase_coin(node, 1)
    first = spend_key_path(key, [coin], fee=2_000)
    second = spend_key_path(key, [coin], fee=3_000, dest=new_key().spk)
    node.send_raw_transaction(first.serialize())
    assert rejection(node, second) == "txn-mempool-conflict"
    node.mine_blocks(1, key.spk)
    assert rejection(node, second) == "bad-txns-inputs-missingorspent"
    assert rejection(node, first) == "txn-already-known"
    ghost = spend_key_path(key, [(OutPoint(b"\x11" * 32, 0), coin[1])])
    assert rejection(node, ghost) == "bad-txns-inputs-missingorspent"


def test_mempool_chain_and_policy(funded):
    node, key = funded
    node.mine_blocks(3, key.spk)
    op, out = coinbase_coin(node, 1)
    parent = spend_key_path(key, [(op, out)])
    child = spend_key_path(key, [(OutPoint(parent.txid(), 0), parent.outputs[0])])
    with pytest.raises(TxRejected, match="missingorspent"):
        node.send_raw_transaction(child.serialize())
    node.send_raw_transaction(parent.serialize())
    node.send_raw_transaction(child.serialize())  # spends an unconfirmed output
    assert node.get_mempool() == [parent.txid_hex(), child.txid_hex()]
    node.mine_blocks(1, key.spk)
    assert node.get_tx_height(parent.txid_hex()) == node.get_tx_height(child.txid_hex()) == 105

    coin2 = coinbase_coin(node, 2)
    too_much = spend_key_path(key, [coin2], [TxOut(coin2[1].value + 1, key.spk)])
    assert rejection(node, too_much).startswith("bad-txns-in-belowout")
    assert rejection(node, spend_key_path(key, [coin2], fee=50)).startswith("min relay fee not met")
    assert rejection(node, spend_key_path(key, [coin2], [TxOut(100, key.spk)], fee=0)) == "dust"
    future = spend_key_path(key, [coin2], locktime=node.get_block_count() + 2)
    assert rejection(node, future) == "non-final"
    ok_lock = spend_key_path(key, [coin2], locktime=node.get_block_count())
    node.send_raw_transaction(ok_lock.serialize())
    with pytest.raises(TxRejected, match="TX decode failed"):
        node.send_raw_transaction(b"\x02\x00\x00")
    assert node.test_mempool_accept(ok_lock.serialize()) == "txn-already-in-mempool"


# ------------------------------------------------------------------ Babylon timelock (CSV)


def test_babylon_timelock_path_csv(funded):
    node, key = funded
    params = regtest_default_params()
    staker_sk, fp_sk = generate_secret(), generate_secret()
    staking_time = 5
    info = build_staking_info(
        xonly_from_secret(staker_sk), [xonly_from_secret(fp_sk)], params.covenant_pks,
        params.covenant_quorum, staking_time, 2 * 10**8,
    )
    op, out = coinbase_coin(node, 1)
    stake_tx = spend_key_path(key, [(op, out)], [info.output, TxOut(out.value - 2 * 10**8 - FEE, key.spk)])
    node.send_raw_transaction(stake_tx.serialize())
    node.mine_blocks(1, key.spk)
    stake_height = node.get_tx_height(stake_tx.txid_hex())
    assert stake_height == 102

    withdraw = build_withdraw_tx(OutPoint(stake_tx.txid(), 0), info.value, staking_time, key.spk, FEE)
    sig = sign_script_path(staker_sk, withdraw, 0, [info.output], info.timelock_script)
    withdraw.inputs[0].witness = timelock_witness(sig, info.timelock_script, info.control_block(info.timelock_script))
    # BIP68: spendable in a block at height stake_height + staking_time, i.e. once the tip is one below
    while node.get_block_count() < stake_height + staking_time - 2:
        assert rejection(node, withdraw) == "non-BIP68-final"
        node.mine_blocks(1, key.spk)
    assert rejection(node, withdraw) == "non-BIP68-final"
    # libbitcoinkernel refuses a block that includes it one block early
    with pytest.raises(BlockRejected) as rej:
        node.mine_fork(node.get_best_block_hash(), 1, key.spk, txs=[withdraw])
    assert "nonfinal" in rej.value.reason or "BIP68" in rej.value.reason, rej.value.reason
    node.mine_blocks(1, key.spk)
    assert oracles_accept(withdraw, [info.output])
    # a wrong CSV value in nSequence fails the script (not BIP68): sequence below the script's timelock
    short = withdraw.copy()
    short.inputs[0].sequence = staking_time - 1
    short.inputs[0].witness = timelock_witness(
        sign_script_path(staker_sk, short, 0, [info.output], info.timelock_script),
        info.timelock_script, info.control_block(info.timelock_script),
    )
    assert rejection(node, short) == "mandatory-script-verify-flag-failed (Locktime requirement not satisfied)"
    assert node.send_raw_transaction(withdraw.serialize()) == withdraw.txid_hex()
    node.mine_blocks(1, key.spk)
    assert node.get_tx_height(withdraw.txid_hex()) == stake_height + staking_time


# ------------------------------------------------------------------ reorgs


def test_invalidate_returns_txs_and_heavier_fork(funded):
    node, key = funded
    coin = coinbase_coin(node, 1)
    tx = spend_key_path(key, [coin])
    node.send_raw_transaction(tx.serialize())
    (b102,) = node.mine_blocks(1, key.spk)
    b103, b104 = node.mine_blocks(2, key.spk)
    node.invalidate_block(b102)
    assert node.get_block_count() == 101 and node.get_mempool() == [tx.txid_hex()]
    assert node.get_tx_height(tx.txid_hex()) is None and not node.is_in_active_chain(b103)
    assert node.get_block(b103)  # stale blocks stay readable
    new = node.mine_blocks(1, key.spk)
    assert new[0] != b102 and node.get_tx_height(tx.txid_hex()) == 102
    with pytest.raises(BlockRejected):  # the invalid branch cannot be extended
        node.mine_fork(b104, 1, key.spk)

    # a heavier fork from height 101 carrying a conflicting spend replaces the tip
    tip_before = node.get_best_block_hash()
    conflict = spend_key_path(key, [coin], fee=4_000, dest=new_key().spk)
    fork = node.mine_fork(node.get_block_hash(101), 1, key.spk, txs=[conflict])
    assert node.get_best_block_hash() == tip_before  # equal work: first seen wins
    fork += node.mine_fork(fork[-1], 1, key.spk)
    assert node.get_best_block_hash() == fork[-1] and node.get_block_count() == 103
    assert node.get_tx_height(conflict.txid_hex()) == 102
    assert node.get_mempool() == []  # the original spend conflicts with the fork: dropped
    assert node.get_tx_height(tx.txid_hex()) is None
    with pytest.raises(BackendError):
        node.get_raw_transaction(tx.txid_hex())
    # mining continues on the fork, with the kernel in sync
    node.mine_blocks(2, key.spk)
    assert node.get_block_count() == 105


def test_kernel_rejects_bad_blocks(funded):
    node, key = funded
    tip = node.get_best_block_hash()
    parent = BlockHeader.parse(node.get_block_header(tip))
    _, _, greedy = build_block(parent.hash(), 102, parent.timestamp + 600, key.spk, [], fees=1, extra_nonce=7)
    with pytest.raises(BlockRejected) as info:
        node.submit_block(greedy)
    assert info.value.reason.startswith("bad-cb-amount")
    with pytest.raises(BlockRejected) as info:  # a resubmission is still refused, with the first reason
        node.submit_block(greedy)
    assert info.value.reason.startswith("duplicate-invalid (bad-cb-amount")
    _, _, wrong_height = build_block(parent.hash(), 7, parent.timestamp + 600, key.spk, [], fees=0)
    with pytest.raises(BlockRejected) as info:
        node.submit_block(wrong_height)
    assert "bad-cb-height" in info.value.reason
    _, _, too_old = build_block(parent.hash(), 102, node.median_time_past(), key.spk, [], fees=0)
    with pytest.raises(BlockRejected) as info:
        node.submit_block(too_old)
    assert "time-too-old" in info.value.reason
    assert node.get_best_block_hash() == tip
    _, _, good = build_block(parent.hash(), 102, parent.timestamp + 1, key.spk, [], fees=0)
    assert node.submit_block(good) == node.get_best_block_hash() != tip


# ------------------------------------------------------------------ persistence


def test_persistence_across_restart(tmp_path):
    key = new_key()
    with EmbeddedNode(tmp_path) as node:
        node.mine_blocks(101, key.spk)
        tx = spend_key_path(key, [coinbase_coin(node, 1)])
        node.send_raw_transaction(tx.serialize())
        b102, _ = node.mine_blocks(2, key.spk)
        node.invalidate_block(b102)
        node.mine_blocks(3, key.spk)
        state = (node.get_block_count(), node.get_best_block_hash(), node.get_tx_height(tx.txid_hex()))
        utxos = sorted(node.scan_utxos([key.spk]), key=lambda x: (x[0].txid, x[0].vout))
    assert state[0] == 104 and state[2] == 102
    log = tmp_path / "blocks.log"
    with open(log, "ab") as f:  # a torn write at the end is cut off on restart
        f.write(b"B\xff\x00\x00\x00partial")
    with EmbeddedNode(tmp_path) as node:
        assert (node.get_block_count(), node.get_best_block_hash(), node.get_tx_height(tx.txid_hex())) == state
        assert sorted(node.scan_utxos([key.spk]), key=lambda x: (x[0].txid, x[0].vout)) == utxos
        assert node.get_raw_transaction(tx.txid_hex()) == tx.serialize()
        assert node.verify_against_kernel() == 1  # the rebuilt state matches the re-validating kernel
        with pytest.raises(BlockRejected):
            node.mine_fork(b102, 1, key.spk)  # the invalidation was persisted too
        node.mine_blocks(1, key.spk)
        best = node.get_best_block_hash()
        pending = spend_key_path(key, [coinbase_coin(node, 2)])
        node.send_raw_transaction(pending.serialize())
    with EmbeddedNode(tmp_path) as node:
        assert node.get_best_block_hash() == best
        assert node.get_mempool() == [pending.txid_hex()]  # mempool.dat re-accepted


def test_closed_node_refuses_work():
    node = EmbeddedNode()
    node.close()
    node.close()
    with pytest.raises(BackendError):
        node.mine_blocks(1, b"\x51")


def test_time_based_relative_lock_agrees_with_kernel(funded):
    node, key = funded
    tx0 = spend_key_path(key, [coinbase_coin(node, 1)])
    node.send_raw_transaction(tx0.serialize())
    node.mine_blocks(1, key.spk)
    h = node.get_tx_height(tx0.txid_hex())
    # 4 × 512 s after the coin's block's parent MTP; blocks are 600 s apart -> tip must reach h + 3
    seq = (1 << 22) | 4
    tx1 = spend_key_path(key, [(OutPoint(tx0.txid(), 0), tx0.outputs[0])], sequence=seq)
    while node.get_block_count() < h + 2:
        node.mine_blocks(1, key.spk)
    assert rejection(node, tx1) == "non-BIP68-final"
    with pytest.raises(BlockRejected) as info:
        node.mine_fork(node.get_best_block_hash(), 1, key.spk, txs=[tx1])
    assert "nonfinal" in info.value.reason or "BIP68" in info.value.reason, info.value.reason
    node.mine_blocks(1, key.spk)
    assert node.send_raw_transaction(tx1.serialize()) == tx1.txid_hex()
    node.mine_blocks(1, key.spk)
    assert node.get_tx_height(tx1.txid_hex()) == h + 4


def test_reorg_restores_mempool_chain_and_reconsider(funded):
    node, key = funded
    parent = spend_key_path(key, [coinbase_coin(node, 1)])
    child = spend_key_path(key, [(OutPoint(parent.txid(), 0), parent.outputs[0])])
    node.send_raw_transaction(parent.serialize())
    node.send_raw_transaction(child.serialize())
    (blk,) = node.mine_blocks(1, key.spk)
    tip = node.mine_blocks(1, key.spk)[0]
    node.invalidate_block(blk)
    assert node.get_mempool() == [parent.txid_hex(), child.txid_hex()]
    # the intra-block spend unwound: the parent's output is no confirmed coin any more
    assert node.get_utxo(OutPoint(parent.txid(), 0)) is None
    assert node.get_utxo(coinbase_coin(node, 1)[0]) is not None
    node.verify_against_kernel()
    other = node.mine_blocks(1, new_key().spk)[0]  # same height as blk, mempool included
    assert node.get_tx_height(child.txid_hex()) == 102
    node.reconsider_block(blk)  # blk's branch (2 blocks) outweighs the new one
    assert node.get_best_block_hash() == tip and not node.is_in_active_chain(other)
    assert node.get_tx_block(parent.txid_hex()) == (blk, 1) and node.get_mempool() == []


def test_datadir_is_exclusive(tmp_path):
    with EmbeddedNode(tmp_path):
        with pytest.raises(BackendError, match="in use"):
            EmbeddedNode(tmp_path)
    EmbeddedNode(tmp_path).close()  # released on close


def test_verify_against_kernel_counts_and_detects(funded):
    node, key = funded
    txs = [spend_key_path(key, [coinbase_coin(node, h)]) for h in (1, 2)]
    for tx in txs:
        node.send_raw_transaction(tx.serialize())
    node.mine_blocks(1, key.spk)
    assert node.verify_against_kernel() == 2
    block_hash = node.get_best_block_hash()
    tampered = node._undo[bytes.fromhex(block_hash)[::-1]]
    op, coin = tampered[0]
    tampered[0] = (op, type(coin)(coin.output, coin.height + 1, coin.coinbase))
    with pytest.raises(RuntimeError, match="differs"):
        node.verify_against_kernel()
    tampered[0] = (op, coin)


def test_random_walk_stays_in_step_with_kernel(tmp_path):
    """Seeded random mix of sends (incl. unconfirmed chains), mining, side forks, invalidations and
    reconsiderations; after every step the node must match libbitcoinkernel and keep a coherent
    mempool, and a restart from the datadir must rebuild the same state."""
    import random

    rng = random.Random(4)  # a seed that unwinds intra-block spends in reorgs (caught a real bug)
    key = new_key()
    node = EmbeddedNode(tmp_path)
    try:
        node.mine_blocks(105, key.spk)
        invalidated: list[str] = []
        for step in range(60):
            op = rng.choice(["send", "send", "mine", "fork", "forktx", "badfork", "extend", "invalidate", "reconsider"])
            tip = node.get_block_count()
            if op == "send":
                spendable = [
                    (o, c) for o, c in node.scan_utxos([key.spk])
                    if not c.coinbase or tip + 1 - c.height >= 100
                ]
                spendable += [
                    (OutPoint(e.txid, v), None) for e in map(node.get_mempool_entry, node.get_mempool())
                    for v, out in enumerate(e.tx.outputs) if out.script_pubkey == key.spk
                ]
                rng.shuffle(spendable)
                for outpoint, _ in spendable:
                    coin = node.get_utxo(outpoint, include_mempool=True)
                    if coin is not None and coin.output.value > 10_000:
                        tx = spend_key_path(key, [(outpoint, coin.output)], fee=rng.choice([500, 1_000, 3_000]))
                        assert node.send_raw_transaction(tx.serialize()) == tx.txid_hex()
                        break
            elif op == "mine":
                node.mine_blocks(rng.randint(1, 3), key.spk)
            elif op == "fork":
                base = node.get_block_hash(max(0, tip - rng.randint(0, 3)))
                node.mine_fork(base, rng.randint(1, 4), new_key().spk)
            elif op in ("forktx", "badfork"):  # a side branch carrying a (maybe conflicting / bad) spend
                coins = [(o, c) for o, c in node.scan_utxos([key.spk]) if not c.coinbase or tip + 1 - c.height >= 100]
                if coins:
                    o, c = rng.choice(coins)
                    tx = spend_key_path(key, [(o, c.output)], fee=rng.choice([700, 2_000]), dest=new_key().spk)
                    if op == "badfork":
                        sig = bytearray(tx.inputs[0].witness[0])
                        sig[3] ^= 1
                        tx.inputs[0].witness = [bytes(sig)]
                    base = node.get_block_hash(max(0, tip - rng.randint(0, 2)))
                    try:
                        node.mine_fork(base, rng.randint(1, 4), new_key().spk, txs=[tx])
                    except (BlockRejected, TxRejected):
                        pass  # refused when the branch had to be connected; state checked below
            elif op == "extend":  # grow any known leaf, stale or invalid ones included
                leaves = sorted(set(node._blocks) - {b.header.prev_hash for b in node._blocks.values()})
                try:
                    node.mine_fork(rng.choice(leaves)[::-1].hex(), rng.randint(1, 3), new_key().spk)
                except BlockRejected:
                    pass
            elif op == "invalidate" and tip > 105:
                victim = node.get_block_hash(rng.randint(106, tip))
                node.invalidate_block(victim)
                invalidated.append(victim)
            elif op == "reconsider" and invalidated:
                node.reconsider_block(invalidated.pop(rng.randrange(len(invalidated))))
            node.verify_against_kernel()
            spent = [i.prevout for t in node.get_mempool() for i in node.get_mempool_entry(t).tx.inputs]
            assert len(spent) == len(set(spent)), f"step {step}: double spend inside the mempool"
            for outpoint in spent:
                assert node.get_utxo(outpoint) is not None or outpoint.txid[::-1].hex() in node.get_mempool()
        state = (node.get_block_count(), node.get_best_block_hash(), node.get_mempool(),
                 sorted((o.txid, o.vout) for o, _ in node.scan_utxos([key.spk])))
    finally:
        node.close()
    with EmbeddedNode(tmp_path) as again:
        assert (again.get_block_count(), again.get_best_block_hash(), again.get_mempool(),
                sorted((o.txid, o.vout) for o, _ in again.scan_utxos([key.spk]))) == state
        again.verify_against_kernel()


def test_clock_option_and_future_blocks():
    import time

    now = int(time.time())
    with EmbeddedNode(clock=lambda: now) as node:
        hashes = node.mine_blocks(15, b"\x51")
        times = [BlockHeader.parse(node.get_block_header(h)).timestamp for h in hashes]
        parents = [REGTEST_GENESIS] + hashes[:-1]
        assert times[0] == now and all(t > node.median_time_past(p) for t, p in zip(times, parents))
        assert times[-1] > now  # the MTP rule pushes a frozen clock forward, as bitcoind does
        node.verify_against_kernel()
    with EmbeddedNode(clock=lambda: now + 3 * 3600) as node:  # more than 2 h ahead of the kernel's clock
        with pytest.raises(BlockRejected) as info:
            node.mine_blocks(1, b"\x51")
        assert "time-too-new" in info.value.reason
        assert node.get_block_count() == 0
