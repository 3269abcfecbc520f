"""Checks shared by the demo end-to-end tests (embedded and real-daemon runs)."""

from __future__ import annotations

from btc_staking.tx import Tx
from btcmesh.demo import DemoResult

from .oracles import btclib_verify, kernel_verify

#: The Bitcoin spends every demo run must mine.
DEMO_SPENDS = {"staking tx A", "staking tx B", "slashing tx A", "slashing change withdrawal A", "unbonding tx B",
               "withdrawal B"}


def assert_demo_spends_valid(demo: DemoResult) -> None:
    """Every expected spend is mined, matches its txid and passes both oracles on every input; the
    kernel-replayed chain spent exactly the coins the demo's txs spend."""
    assert DEMO_SPENDS <= set(demo.spends)
    for label, rec in demo.spends.items():
        assert rec.height is not None and 0 < rec.height <= demo.btc_height, label
        tx = Tx.parse(rec.raw)
        assert tx.txid_hex() == rec.txid
        for i in range(len(tx.inputs)):
            assert kernel_verify(tx, rec.prevouts, i), f"{label} input {i}: libbitcoinkernel refuses it"
            assert btclib_verify(tx, rec.prevouts, i), f"{label} input {i}: btclib refuses it"
    assert demo.kernel_checked_spent_coins == sum(len(Tx.parse(r.raw).inputs) for r in demo.spends.values())
