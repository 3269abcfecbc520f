"""Benchmarks for the embedded regtest node (run: .venv/bin/python benchmarks/bench_regtest.py [--quick]).

Measured on :class:`regtest.embedded.EmbeddedNode`, all inputs built and signed before timing:

* mempool acceptance of BIP-86 taproot key-path spends: ``test_mempool_accept`` (the full
  MemPoolAccept checks, repeatable on the same txs) and ``send_raw_transaction`` (distinct txs,
  each accepted once);
* Babylon spends from a staking output: timelock path (CSV), covenant unbonding path (3-of-5
  covenants + staker) and slashing path (3-of-5 decrypted covenant adaptor signatures + FP +
  staker), through the mempool checks and through the kernel alone;
* block connection: pre-built blocks of N key-path spends handed to ``submit_block`` (parse,
  libbitcoinkernel ``ProcessNewBlock`` validation, UTXO/undo/txindex update).

References, measured in the same run on the same spends: libbitcoinkernel script verification
(``pbk.ScriptPubkey.verify`` with all consensus flags, transaction and precomputed data built
beforehand) and raw libsecp256k1 BIP-340 verification (coincurve) of each spend's signature
against its sighash.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pbk  # noqa: E402
from coincurve import PublicKeyXOnly  # noqa: E402

from benchmarks.harness import (  # noqa: E402
    Bracketed, Reference, Result, bench_main, measure, measure_steps, result,
)
from btc_staking.adaptor import encrypt_sign  # noqa: E402
from btc_staking.keys import schnorr_sign, xonly_from_secret  # noqa: E402
from btc_staking.params import covenant_secret, is_dust, regtest_default_params  # noqa: E402
from btc_staking.sighash import taproot_sighash  # noqa: E402
from btc_staking.signing import p2tr_key_path_script, sign_key_path, sign_script_path  # noqa: E402
from btc_staking.staking import (  # noqa: E402
    build_slashing_tx, build_staking_info, build_unbonding_tx, build_withdraw_tx,
)
from btc_staking.tx import OutPoint, Tx, TxIn, TxOut  # noqa: E402
from btc_staking.witness import (  # noqa: E402
    key_path_witness, slashing_witness, timelock_witness, unbonding_witness,
)
from regtest.embedded import BLOCK_INTERVAL, GENESIS_TIME, EmbeddedNode  # noqa: E402
from regtest.mining import COINBASE_MATURITY, build_block  # noqa: E402

BENCH = "regtest"
FLAGS = pbk.ScriptVerificationFlags.ALL
COIN_VALUE = 100_000  # sat per fanned-out key-path coin
CHAIN_FEE = 50  # sat per chained spend (blocks skip the relay-fee policy) in the block-connection blocks
FAN_OUT = 1000  # outputs per fan-out tx (about 172k WU, standard)
STAKING_TIME = 10  # blocks (CSV of the timelock path)
STAKING_VALUE = 1_000_000
N_COV, QUORUM = 5, 3


@dataclass(frozen=True)
class Sizes:
    """Input counts: key-path spends for the repeatable checks, distinct txs for sendrawtransaction,
    staking outputs, and the block sizes (txs per block) for block connection."""

    spends: int
    send_pool: int
    staking_outputs: int
    block_txs: tuple[int, ...]


QUICK = Sizes(spends=32, send_pool=1000, staking_outputs=4, block_txs=(1, 100))
FULL = Sizes(spends=64, send_pool=5000, staking_outputs=8, block_txs=(1, 100, 1000))


def _secret(label: str) -> bytes:
    return hashlib.sha256(b"btcmesh-bench/" + label.encode()).digest()


class _Setup:
    """A node with mature coins paying one BIP-86 key, fanned out into many small coins."""

    def __init__(self, sizes: Sizes) -> None:
        self.node = EmbeddedNode()
        self.sk = _secret("regtest-key")
        self.spk = p2tr_key_path_script(self.sk, is_secret=True)
        need = sizes.spends + sizes.send_pool + max(sizes.block_txs)
        n_fan = -(-need // FAN_OUT)
        n_coinbase = n_fan + 1  # + one funding the staking outputs
        self.node.mine_blocks(n_coinbase + COINBASE_MATURITY, self.spk)
        coinbases = [self._coinbase(h) for h in range(1, n_coinbase + 1)]
        coins: list[tuple[OutPoint, TxOut]] = []
        for i in range(n_fan):
            count = min(FAN_OUT, need - len(coins))
            tx = self.spend([coinbases[i]], [TxOut(COIN_VALUE, self.spk)] * count, fee=None)
            self.node.send_raw_transaction(tx.serialize())
            coins += [(OutPoint(tx.txid(), v), tx.outputs[v]) for v in range(count)]
        self.staking_coin = coinbases[-1]
        self.node.mine_blocks(1, self.spk)
        assert self.node.get_mempool() == []
        self.coins = coins

    def _coinbase(self, height: int) -> tuple[OutPoint, TxOut]:
        cb = self.node.get_block_txs(self.node.get_block_hash(height))[0]
        return OutPoint(cb.txid(), 0), cb.outputs[0]

    def spend(self, coins: Sequence[tuple[OutPoint, TxOut]], outputs: list[TxOut], fee: int | None) -> Tx:
        """Key-path spend of `coins`; with fee=None the change (2 sat/vB) goes to our key."""
        tx = Tx(2, [TxIn(op, b"", 0xFFFFFFFD) for op, _ in coins], list(outputs), 0)
        value_in = sum(o.value for _, o in coins)
        if fee is None:
            tx.outputs.append(TxOut(0, self.spk))
            self._sign(tx, coins)
            tx.outputs[-1] = TxOut(value_in - sum(o.value for o in outputs) - 2 * tx.vsize(), self.spk)
        self._sign(tx, coins)
        return tx

    def _sign(self, tx: Tx, coins: Sequence[tuple[OutPoint, TxOut]]) -> None:
        prevouts = [o for _, o in coins]
        for i in range(len(coins)):
            tx.inputs[i].witness = key_path_witness(sign_key_path(self.sk, tx, i, prevouts))

    def take(self, n: int) -> list[tuple[OutPoint, TxOut]]:
        """n unspent confirmed coins (removed from the pool)."""
        if n > len(self.coins):
            raise RuntimeError(f"coin pool exhausted ({len(self.coins)} left, {n} wanted)")
        out, self.coins = self.coins[:n], self.coins[n:]
        return out


@dataclass(frozen=True)
class _Spend:
    """A signed spend and everything both references need, prepared once."""

    tx: Tx
    raw: bytes
    prevout: TxOut
    ptx: pbk.Transaction
    pre: pbk.script.PrecomputedTransactionData
    spk: pbk.ScriptPubkey


def _prepare(tx: Tx, prevout: TxOut) -> _Spend:
    ptx = pbk.Transaction(tx.serialize())
    spent = [pbk.TransactionOutput(pbk.ScriptPubkey(prevout.script_pubkey), prevout.value)]
    pre = pbk.script.PrecomputedTransactionData(ptx, spent)
    s = _Spend(tx, tx.serialize(), prevout, ptx, pre, pbk.ScriptPubkey(prevout.script_pubkey))
    if not s.spk.verify(prevout.value, ptx, pre, 0, FLAGS):
        raise RuntimeError(f"libbitcoinkernel rejects benchmark spend {tx.txid_hex()}")
    return s


def _kernel_verify(spends: Sequence[_Spend]):
    def fn(i: int) -> None:
        s = spends[i]
        if not s.spk.verify(s.prevout.value, s.ptx, s.pre, 0, FLAGS):
            raise AssertionError("kernel rejected a valid spend")

    return fn


def _mempool_accept(node: EmbeddedNode, spends: Sequence[_Spend]):
    def fn(i: int) -> None:
        reason = node.test_mempool_accept(spends[i].raw)
        if reason is not None:
            raise AssertionError(f"mempool rejected a valid spend: {reason}")

    return fn


def _babylon_spends(st: _Setup, count: int) -> tuple[list[_Spend], list[_Spend], list[_Spend]]:
    """Confirmed staking outputs, CSV-mature, and for each a timelock withdrawal, a covenant
    unbonding and a slashing tx (covenant adaptor signatures decrypted with the FP's secret)."""
    params = regtest_default_params(num_covenants=N_COV, quorum=QUORUM)
    cov_sks = [covenant_secret(i) for i in range(N_COV)]
    staker_sk, fp_sk = _secret("staker"), _secret("fp")
    staker, fp = xonly_from_secret(staker_sk), xonly_from_secret(fp_sk)
    info = build_staking_info(staker, [fp], params.covenant_pks, QUORUM, STAKING_TIME, STAKING_VALUE)
    fund = st.spend([st.staking_coin], [info.output] * count, fee=None)
    st.node.send_raw_transaction(fund.serialize())
    st.node.mine_blocks(STAKING_TIME, st.spk)  # confirmed, and deep enough for the CSV
    timelock, unbond, slash = [], [], []
    prevouts = [info.output]
    tl_leaf, ub_leaf, sl_leaf = info.timelock_script, info.unbonding_script, info.slashing_script
    for vout in range(count):
        op = OutPoint(fund.txid(), vout)
        w = build_withdraw_tx(op, STAKING_VALUE, STAKING_TIME, st.spk, fee=1_000)
        sig = sign_script_path(staker_sk, w, 0, prevouts, tl_leaf)
        w.inputs[0].witness = timelock_witness(sig, tl_leaf, info.control_block(tl_leaf))
        timelock.append(_prepare(w, info.output))
        u = build_unbonding_tx(op, STAKING_VALUE, staker, [fp], params)
        chosen = [(vout + j) % N_COV for j in range(QUORUM)]  # vary the covenant subset
        cov = {xonly_from_secret(cov_sks[j]): sign_script_path(cov_sks[j], u, 0, prevouts, ub_leaf) for j in chosen}
        staker_sig = sign_script_path(staker_sk, u, 0, prevouts, ub_leaf)
        u.inputs[0].witness = unbonding_witness(params.covenant_pks, cov, QUORUM, staker_sig, ub_leaf,
                                                info.control_block(ub_leaf))
        unbond.append(_prepare(u, info.output))
        sl = build_slashing_tx(op, STAKING_VALUE, staker, params)
        msg = taproot_sighash(sl, 0, prevouts, 0, leaf_script=sl_leaf)
        adaptors = {xonly_from_secret(cov_sks[j]): encrypt_sign(cov_sks[j], fp, msg) for j in chosen}
        cov = {pk: a.decrypt(fp_sk) for pk, a in adaptors.items()}
        sl.inputs[0].witness = slashing_witness(
            params.covenant_pks, cov, QUORUM, [fp], {fp: schnorr_sign(fp_sk, msg)}, schnorr_sign(staker_sk, msg),
            sl_leaf, info.control_block(sl_leaf),
        )
        slash.append(_prepare(sl, info.output))
    return timelock, unbond, slash


class _BlockMaker:
    """Blocks of `n` key-path spends of confirmed coins; each spend's output replaces its coin, and
    blocks take the coins round-robin so every coin pays the fee equally often."""

    def __init__(self, st: _Setup, frontier: list[tuple[OutPoint, TxOut]]) -> None:
        self.st = st
        self.frontier = frontier
        self.next = 0

    def next_block(self, n: int) -> tuple[bytes, str] | None:
        """A solved block on the tip, or None once the coins can no longer pay the fee."""
        node = self.st.node
        if n > len(self.frontier):
            raise ValueError(f"{n} spends per block need {n} coins, have {len(self.frontier)}")
        txs = []
        for _ in range(n):
            k = self.next
            self.next = (k + 1) % len(self.frontier)
            coin = self.frontier[k]
            if is_dust(coin[1].value - CHAIN_FEE, self.st.spk):
                return None
            tx = self.st.spend([coin], [TxOut(coin[1].value - CHAIN_FEE, self.st.spk)], fee=CHAIN_FEE)
            txs.append(tx)
            self.frontier[k] = (OutPoint(tx.txid(), 0), tx.outputs[0])
        tip = node.get_best_block_hash()
        height = node.get_block_count() + 1
        t = max(GENESIS_TIME + BLOCK_INTERVAL * height, node.median_time_past() + 1)
        header, _, raw = build_block(bytes.fromhex(tip)[::-1], height, t, self.st.spk, txs, n * CHAIN_FEE)
        return raw, header.hash()[::-1].hex()

    def connect(self, item: object) -> int:
        raw, block_hash = item  # type: ignore[misc]
        got = self.st.node.submit_block(raw)
        if got != block_hash or self.st.node.get_best_block_hash() != block_hash:
            raise AssertionError(f"block {block_hash} was not connected as the tip")
        return 1


def run(budget_s: float = 1.0, *, quick: bool = False) -> list[Result]:
    """All regtest measurements; ``budget_s`` is the timed budget of each measurement."""
    sizes = QUICK if quick else FULL
    st = _Setup(sizes)
    try:
        return _run(st, sizes, budget_s)
    finally:
        st.node.close()


def _run(st: _Setup, sizes: Sizes, budget_s: float) -> list[Result]:
    node = st.node
    # --- repeatable key-path spends (same txs for the ops and both references)
    spends = [_prepare(st.spend([c], [TxOut(c[1].value - 500, st.spk)], fee=500), c[1]) for c in st.take(sizes.spends)]
    schnorr_items = []
    for s in spends:
        msg = taproot_sighash(s.tx, 0, [s.prevout], 0)
        schnorr_items.append((PublicKeyXOnly(s.prevout.script_pubkey[2:]), s.tx.inputs[0].witness[0], msg))

    def schnorr(i: int) -> None:
        pk, sig, msg = schnorr_items[i]
        if not pk.verify(sig, msg):
            raise AssertionError("schnorr verify failed")

    kernel = Reference("kernel verify p2tr key-path", _kernel_verify(spends), len(spends), budget_s)
    raw = Reference("coincurve schnorr verify", schnorr, len(spends), budget_s)
    timelock, unbond, slash = _babylon_spends(st, sizes.staking_outputs)
    send_coins = iter(st.take(sizes.send_pool))
    maker = _BlockMaker(st, st.take(max(sizes.block_txs)))

    rows: list[Result] = []

    def row(name: str, unit: str, m: Bracketed, ref: Reference, note: str = "") -> None:
        rows.append(result(BENCH, name, unit, m, ref, note))

    row("kernel_verify_keypath", "verif/s", raw.bracket(kernel.sample), raw,
        "the kernel reference itself, vs raw BIP-340 verify of the same signatures")
    row("mempool_accept_keypath", "tx/s",
        kernel.bracket(lambda: measure(_mempool_accept(node, spends), len(spends), budget_s)), kernel,
        "test_mempool_accept: full MemPoolAccept checks incl. kernel script verify")

    def next_send() -> bytes | None:
        """A fresh signed spend (signed outside the timed part), or None when the coins run out."""
        c = next(send_coins, None)
        return None if c is None else st.spend([c], [TxOut(c[1].value - 500, st.spk)], fee=500).serialize()

    def send(raw_tx: object) -> int:
        node.send_raw_transaction(raw_tx)  # type: ignore[arg-type]
        return 1

    m = kernel.bracket(lambda: measure_steps(next_send, send, budget_s))
    note = "distinct txs, each accepted once into the mempool"
    if m.rate.ops + 1 >= sizes.send_pool:
        note += f" (all {sizes.send_pool} coins used before the budget)"
    row("sendrawtransaction_keypath", "tx/s", m, kernel, note)
    node.mine_blocks(1, st.spk)  # empty the mempool before the block measurements
    for name, items in (("timelock", timelock), ("unbonding_3of5", unbond), ("slashing_3of5", slash)):
        row(f"mempool_accept_{name}", "tx/s",
            kernel.bracket(lambda: measure(_mempool_accept(node, items), len(items), budget_s)), kernel)
        row(f"kernel_verify_{name}", "verif/s",
            kernel.bracket(lambda: measure(_kernel_verify(items), len(items), budget_s)), kernel)
    for n in sizes.block_txs:
        m = kernel.bracket(lambda: measure_steps(lambda: maker.next_block(n), maker.connect, budget_s))
        row(f"block_connect_{n}tx", "blocks/s", m, kernel,
            f"submit_block of pre-built blocks of {n} key-path spend(s) ({n * m.rate.per_s:,.0f} tx/s)")
    if node.verify_against_kernel() <= 0:
        raise AssertionError("the node's spent coins do not match the kernel's undo data")
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    bench_main(run, __doc__, argv)


if __name__ == "__main__":
    main()
