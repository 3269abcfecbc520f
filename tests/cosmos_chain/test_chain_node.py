"""EmbeddedChain: mempool/CheckTx, block production, recheck eviction, background producer, restart."""

from __future__ import annotations

import pytest

from cosmos_chain.app import ChainApp
from cosmos_chain.node import EmbeddedChain, TxEvictedError
from cosmos_chain.txcodec import tx_hash
from cn_helpers import CHAIN_ID, DENOM, FEE, FUNDS, genesis_for, msg_send, sign, wallets

pytestmark = pytest.mark.timeout(60)

ALICE, BOB, CAROL = wallets(3, "node")
A, B, C = (str(w.address()) for w in (ALICE, BOB, CAROL))


def _node(**kw) -> EmbeddedChain:
    return EmbeddedChain(ChainApp(CHAIN_ID), genesis=genesis_for([ALICE, BOB], genesis_time=1_700_000_000.0), **kw)


def _send(node: EmbeddedChain, wallet, to: str, amount: int, seq: int | None = None, **kw) -> bytes:
    acct = node.app.account(str(wallet.address()))
    assert acct is not None
    return sign(wallet, [msg_send(wallet, to, amount)], sequence=acct["sequence"] if seq is None else seq,
                account_number=acct["account_number"], **kw)


def test_broadcast_then_produce_block_moves_funds() -> None:
    node = _node()
    tx = _send(node, ALICE, C, 1234)
    res = node.broadcast_tx(tx)
    assert res.ok, res.log
    assert res.hash == tx_hash(tx)
    assert node.mempool() == [res.hash]
    assert node.app.balance(C, DENOM) == 0  # nothing before the block
    height, results = node.produce_block()
    assert height == 1 and [r.code for r in results] == [0]
    assert node.mempool() == []
    rec = node.wait_for_tx(res.hash, timeout=1)
    assert rec["height"] == 1 and rec["result"]["code"] == 0
    assert node.app.balance(C, DENOM) == 1234
    assert node.app.balance(A, DENOM) == FUNDS - 1234 - FEE
    assert node.app.account(A)["sequence"] == 1
    assert node.app.latest_block()["tx_hashes"] == [res.hash]


def test_checktx_rejections_never_enter_the_mempool() -> None:
    node = _node()
    bad_seq = _send(node, ALICE, C, 1, seq=5)
    r = node.broadcast_tx(bad_seq)
    assert r.code == 32 and "sequence mismatch" in r.log
    wrong_chain = _send(node, ALICE, C, 1, chain_id="other-chain")
    r = node.broadcast_tx(wrong_chain)
    assert r.code == 4 and "signature verification failed" in r.log
    low_fee = _send(node, ALICE, C, 1, fee=1)
    r = node.broadcast_tx(low_fee)
    assert r.code == 13 and "insufficient fee" in r.log
    r = node.broadcast_tx(b"\x01garbage")
    assert r.code == 2
    assert node.mempool() == []
    ok = _send(node, ALICE, C, 1)
    assert node.broadcast_tx(ok).ok
    dup = node.broadcast_tx(ok)
    assert dup.code == 19 and "already in mempool" in dup.log
    node.produce_block()
    replay = node.broadcast_tx(ok)
    assert replay.code != 0 and "replay" in replay.log
    assert node.mempool() == []


def test_sequences_chain_in_the_mempool_and_recheck_evicts() -> None:
    node = _node(max_block_txs=1)
    # Bob can pay two fees in CheckTx, but his first tx's transfer leaves too little for the second fee.
    app = node.app
    tx0 = _send(node, ALICE, B, 1)  # unrelated tx first so the block limit of 1 bites
    bob_number = app.account(B)["account_number"]
    t1 = sign(BOB, [msg_send(BOB, C, FUNDS - FEE - FEE // 2)], sequence=0, account_number=bob_number)
    t2 = sign(BOB, [msg_send(BOB, C, 1)], sequence=1, account_number=bob_number)
    for t in (tx0, t1, t2):
        r = node.broadcast_tx(t)
        assert r.ok, r.log
    assert len(node.mempool()) == 3
    node.produce_block()  # tx0
    assert node.mempool() == [tx_hash(t1), tx_hash(t2)]
    node.produce_block()  # t1; recheck finds Bob can no longer pay t2's fee
    assert node.mempool() == []
    with pytest.raises(TxEvictedError, match="insufficient funds"):
        node.wait_for_tx(tx_hash(t2), timeout=1)
    assert node.app.balance(C, DENOM) == FUNDS - FEE - FEE // 2
    assert node.app.account(B)["sequence"] == 1


def test_block_times_strictly_increase_with_a_stuck_clock() -> None:
    node = _node(clock=lambda: 1_000.0)  # before genesis time, never moves
    times = []
    for _ in range(3):
        node.produce_block()
        times.append(node.app.latest_block()["time"])
    assert times[0] > 1_700_000_000.0
    assert times[0] < times[1] < times[2]


def test_background_producer_commit_mode_and_empty_blocks() -> None:
    with _node(block_interval=0.05) as node:
        tx = _send(node, ALICE, C, 77)
        res = node.broadcast_tx(tx, mode="commit", timeout=10)
        assert res.ok and res.height >= 1, res.log
        assert node.app.balance(C, DENOM) == 77
        h = node.height
        assert node.wait_for_height(h + 2, timeout=10) >= h + 2  # empty blocks keep coming
    h = node.height
    assert node.error is None
    with pytest.raises(TimeoutError):
        node.wait_for_height(h + 1, timeout=0.3)  # stopped


def test_manual_commit_mode_and_bad_arguments() -> None:
    node = _node()
    res = node.broadcast_tx(_send(node, ALICE, C, 5), mode="commit", timeout=5)
    assert res.ok and res.height == 1
    with pytest.raises(ValueError, match="broadcast mode"):
        node.broadcast_tx(b"x", mode="block-ish")
    with pytest.raises(TimeoutError):
        node.wait_for_tx("00" * 32, timeout=0.1)
    with pytest.raises(ValueError, match="genesis"):
        EmbeddedChain(ChainApp(CHAIN_ID))
    with pytest.raises(ValueError, match="block_interval"):
        EmbeddedChain(ChainApp(CHAIN_ID), 0, genesis={})


def test_restart_from_disk_continues_the_chain(tmp_path) -> None:
    app = ChainApp(CHAIN_ID, home=tmp_path)
    node = EmbeddedChain(app, genesis=genesis_for([ALICE, BOB]))
    node.broadcast_tx(_send(node, ALICE, C, 500))
    node.produce_block()
    node.produce_block()
    height, app_hash = app.info()
    last_time = app.latest_block()["time"]
    app.close()

    app2 = ChainApp(CHAIN_ID, home=tmp_path)
    assert app2.info() == (height, app_hash)
    node2 = EmbeddedChain(app2)  # no genesis needed: state comes from disk
    assert app2.balance(C, DENOM) == 500
    tx = _send(node2, ALICE, C, 1)
    assert app2.account(A)["sequence"] == 1
    assert node2.broadcast_tx(tx).ok
    h, res = node2.produce_block()
    assert h == height + 1 and res[0].ok
    assert app2.latest_block()["time"] > last_time
    assert app2.latest_block()["last_block_hash"] == app2.get_block(height)["hash"]
    assert app2.balance(C, DENOM) == 501
    app2.close()
