"""Benchmarks for the Python Cosmos chain (run: .venv/bin/python benchmarks/bench_chain.py [--quick]).

Measured, with every tx signed by cosmpy (SIGN_MODE_DIRECT) before timing:

* :class:`cosmos_chain.node.EmbeddedChain` over :class:`cosmos_chain.app.ChainApp` (in memory):
  bank-send txs delivered per second for several block sizes: CheckTx (``broadcast_tx``) of every
  tx, then one block (FinalizeBlock + Commit, ``produce_block``); CheckTx and FinalizeBlock+Commit
  are also reported on their own;
* ABCI smart queries (``/smart/bank`` balance, JSON in and out) per second;
* the BTC light client: regtest-PoW headers per second through ``insert_headers`` txs (one tx of
  many headers per block: CheckTx, FinalizeBlock, Commit);
* end to end through :class:`cosmos_chain.rest.LocalChain` (REST server, background block
  producer) with an unmodified cosmpy ``LedgerClient``: ``send_tokens(...).wait_to_complete()``
  one after another, and ``query_bank_balance``. These are latency-bound (HTTP round trips, block
  interval, cosmpy's polling), not CPU-bound.

Reference, measured in the same run: raw libsecp256k1 ECDSA verification (coincurve) of the very
signatures carried by the benchmark txs over their SignDoc bytes (decoded with cosmpy's protos).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import coincurve  # noqa: E402
from coincurve.ecdsa import cdata_to_der, deserialize_compact  # noqa: E402
from cosmpy.aerial.tx import SigningCfg, Transaction, TxFee  # noqa: E402
from cosmpy.aerial.wallet import LocalWallet  # noqa: E402
from cosmpy.protos.cosmos.bank.v1beta1.tx_pb2 import MsgSend  # noqa: E402
from cosmpy.protos.cosmos.base.v1beta1.coin_pb2 import Coin  # noqa: E402
from cosmpy.protos.cosmos.tx.v1beta1.tx_pb2 import SignDoc, TxBody, TxRaw  # noqa: E402
from cosmpy.protos.cosmwasm.wasm.v1.tx_pb2 import MsgExecuteContract  # noqa: E402

from benchmarks.harness import (  # noqa: E402
    Bracketed, Rate, Reference, Result, bench_main, measure, measure_steps, result,
)
from btc_staking.headers import BlockHeader  # noqa: E402
from cosmos_chain.app import ChainApp  # noqa: E402
from cosmos_chain.genesis import build_genesis, deterministic_wallet  # noqa: E402
from cosmos_chain.node import EmbeddedChain  # noqa: E402
from cosmos_chain.rest import LocalChain  # noqa: E402
from regtest.mining import REGTEST_BITS, solve_header  # noqa: E402

BENCH = "chain"
CHAIN_ID = "btcmesh-bench-1"
DENOM = "ubbn"
GAS_LIMIT = 200_000
FEE = 2_000  # GAS_LIMIT × 0.01 ubbn min gas price
FUNDS = 10**15
E2E_BLOCK_INTERVAL = 0.02
LIGHT_CLIENT = "btc_light_client"
HEADERS_GAS_LIMIT = 5_000_000


@dataclass(frozen=True)
class Sizes:
    """Block sizes (txs per block), the number of distinct txs/queries behind the repeatable
    measurements, and whether to run the end-to-end LedgerClient part."""

    block_txs: tuple[int, ...]
    items: int
    headers_per_tx: int
    e2e: bool = True


QUICK = Sizes(block_txs=(1, 50), items=32, headers_per_tx=100)
FULL = Sizes(block_txs=(1, 100, 500), items=128, headers_per_tx=500)


class _Signer:
    """cosmpy-signed MsgSend txs from a few accounts, sequences tracked here."""

    def __init__(self, wallets: Sequence[LocalWallet], account_numbers: Sequence[int], chain_id: str) -> None:
        self.wallets = list(wallets)
        self.numbers = list(account_numbers)
        self.sequences = [0] * len(wallets)
        self.chain_id = chain_id
        self.recipients = [str(deterministic_wallet(f"bench-chain-to-{i}").address()) for i in range(16)]
        self.count = 0

    def next_tx(self) -> bytes:
        """A 1-ubbn MsgSend from the next sender (round-robin) to one of 16 recipients."""
        k = self.count % len(self.wallets)
        w = self.wallets[k]
        to = self.recipients[self.count % len(self.recipients)]
        self.count += 1
        return self.sign(k, MsgSend(from_address=str(w.address()), to_address=to,
                                    amount=[Coin(denom=DENOM, amount="1")]), GAS_LIMIT)

    def sign(self, k: int, msg: Any, gas_limit: int) -> bytes:
        """Seal and sign (SIGN_MODE_DIRECT) one message from wallet `k`; fee = gas_limit × 0.01 ubbn."""
        w = self.wallets[k]
        tx = Transaction()
        tx.add_message(msg)
        fee = TxFee(amount=f"{gas_limit // 100}{DENOM}", gas_limit=gas_limit)
        tx.seal(SigningCfg.direct(w.public_key(), self.sequences[k]), fee=fee)
        tx.sign(w.signer(), self.chain_id, self.numbers[k])
        tx.complete()
        self.sequences[k] += 1
        return tx.tx.SerializeToString()


class _Headers:
    """Regtest-PoW headers extending a trusted base, sent as ``insert_headers`` txs by a relayer."""

    def __init__(self, node: EmbeddedChain, signer: _Signer, relayer: int, base: BlockHeader, per_tx: int) -> None:
        self.node = node
        self.signer = signer
        self.relayer = relayer
        self.last = base
        self.per_tx = per_tx
        self.contract = node.app.module_address(LIGHT_CLIENT)
        self.sender = str(signer.wallets[relayer].address())

    def prepare(self) -> bytes:
        headers = []
        for _ in range(self.per_tx):
            self.last = solve_header(self.last.hash(), os.urandom(32), self.last.timestamp + 600, REGTEST_BITS)
            headers.append(self.last.serialize().hex())
        msg = MsgExecuteContract(sender=self.sender, contract=self.contract,
                                 msg=json.dumps({"insert_headers": {"headers": headers}}).encode())
        return self.signer.sign(self.relayer, msg, HEADERS_GAS_LIMIT)

    def op(self, item: object) -> int:
        r = self.node.broadcast_tx(item)  # type: ignore[arg-type]
        if not r.ok:
            raise AssertionError(f"CheckTx rejected insert_headers: {r.code} {r.log}")
        _, results = self.node.produce_block()
        if len(results) != 1 or results[0].code != 0:
            raise AssertionError(f"insert_headers failed: {[(x.code, x.log) for x in results]}")
        return self.per_tx

    def check(self) -> None:
        """The chain's light-client tip is the last header sent."""
        tip = self.node.app.smart_query(LIGHT_CLIENT, {"tip": {}})
        if tip["hash"] != self.last.hash()[::-1].hex():
            raise AssertionError(f"light client tip {tip} is not the last header sent")


def _ecdsa_items(txs: Sequence[bytes], signer: _Signer) -> list[tuple[coincurve.PublicKey, bytes, bytes]]:
    """(pubkey, DER sig, SignDoc bytes) of each tx, decoded with cosmpy's protos (not our codec)."""
    by_addr = {str(w.address()): (w, n) for w, n in zip(signer.wallets, signer.numbers)}
    out = []
    for raw in txs:
        tx_raw = TxRaw.FromString(raw)
        body = TxBody.FromString(tx_raw.body_bytes)
        sender = MsgSend.FromString(body.messages[0].value).from_address
        wallet, number = by_addr[sender]
        doc = SignDoc(body_bytes=tx_raw.body_bytes, auth_info_bytes=tx_raw.auth_info_bytes, chain_id=signer.chain_id,
                      account_number=number).SerializeToString()
        pk = coincurve.PublicKey(wallet.public_key().public_key_bytes)
        der = cdata_to_der(deserialize_compact(tx_raw.signatures[0]))
        if not pk.verify(der, doc):
            raise RuntimeError("benchmark tx signature does not verify")
        out.append((pk, der, doc))
    return out


class _Deliver:
    """One step = CheckTx every tx of a pre-signed block, then FinalizeBlock + Commit."""

    def __init__(self, node: EmbeddedChain, signer: _Signer) -> None:
        self.node = node
        self.signer = signer
        self.steps: list[tuple[int, float, float]] = []  # (txs, CheckTx seconds, FinalizeBlock+Commit seconds)

    def prepare(self, n: int) -> list[bytes]:
        return [self.signer.next_tx() for _ in range(n)]

    def op(self, item: object) -> int:
        txs: list[bytes] = item  # type: ignore[assignment]
        t0 = time.perf_counter()
        for raw in txs:
            r = self.node.broadcast_tx(raw)
            if not r.ok:
                raise AssertionError(f"CheckTx rejected a valid tx: {r.code} {r.log}")
        t1 = time.perf_counter()
        _, results = self.node.produce_block()
        t2 = time.perf_counter()
        if len(results) != len(txs) or any(r.code != 0 for r in results):
            raise AssertionError(f"FinalizeBlock failed: {[(r.code, r.log) for r in results if r.code]}")
        self.steps.append((len(txs), t1 - t0, t2 - t1))
        return len(txs)

    def split(self, skip: int = 1) -> tuple[Rate, Rate]:
        """CheckTx and FinalizeBlock+Commit rates over the steps after the first `skip` (warm-up)."""
        steps = self.steps[skip:]
        n = sum(s[0] for s in steps)
        return Rate(n, sum(s[1] for s in steps)), Rate(n, sum(s[2] for s in steps))


def run(budget_s: float = 1.0, *, quick: bool = False) -> list[Result]:
    """All chain measurements; ``budget_s`` is the timed budget of each measurement."""
    sizes = QUICK if quick else FULL
    senders = [deterministic_wallet(f"bench-chain-{i}") for i in range(4)]
    relayer = deterministic_wallet("bench-chain-relayer")
    base = solve_header(b"\x00" * 32, os.urandom(32), 1_700_000_000, REGTEST_BITS)
    genesis = build_genesis({str(w.address()): FUNDS for w in [*senders, relayer]}, denom=DENOM, min_gas_price="0.01",
                            btc_light_client={"base": {"height": 0, "header": base.serialize().hex()}})
    app = ChainApp(CHAIN_ID)
    node = EmbeddedChain(app, genesis=genesis, max_block_txs=10**6, max_mempool_txs=10**6)
    try:
        numbers = [app.account(str(w.address()))["account_number"] for w in senders]  # type: ignore[index]
        signer = _Signer(senders, numbers, CHAIN_ID)
        relayer_number = app.account(str(relayer.address()))["account_number"]  # type: ignore[index]
        relay = _Signer([relayer], [relayer_number], CHAIN_ID)
        deliver = _Deliver(node, signer)
        # reference inputs: the signatures of real benchmark txs (delivered first, so none is wasted)
        ref_txs = deliver.prepare(sizes.items)
        deliver.op(ref_txs)
        ecdsa = _ecdsa_items(ref_txs, signer)

        def ecdsa_verify(i: int) -> None:
            pk, der, doc = ecdsa[i]
            if not pk.verify(der, doc):
                raise AssertionError("ECDSA verify failed")

        ref = Reference("coincurve ecdsa verify", ecdsa_verify, len(ecdsa), budget_s)
        rows: list[Result] = []
        for n in sizes.block_txs:
            deliver.steps.clear()
            m = ref.bracket(lambda: measure_steps(lambda: deliver.prepare(n), deliver.op, budget_s))
            note = f"CheckTx each + FinalizeBlock + Commit, {n} tx/block ({m.rate.per_s / n:,.1f} blocks/s)"
            rows.append(result(BENCH, f"deliver_bank_send_{n}tx_blocks", "tx/s", m, ref, note))
            if n == max(sizes.block_txs):
                check, final = deliver.split(skip=1)  # measure_steps' warm-up step is not counted
                rows.append(result(BENCH, f"checktx_bank_send_{n}tx_blocks", "tx/s",
                                   Bracketed(check, m.ref_per_s, m.ref_drift), ref,
                                   "broadcast_tx (CheckTx, mempool insert) alone"))
                rows.append(result(BENCH, f"finalize_commit_bank_send_{n}tx_blocks", "tx/s",
                                   Bracketed(final, m.ref_per_s, m.ref_drift), ref,
                                   "produce_block (FinalizeBlock + Commit + recheck) alone"))
        queries = [json.dumps({"balance": {"address": a, "denom": DENOM}}).encode() for a in signer.recipients]

        def smart_query(i: int) -> None:
            code, value, log = app.query("/smart/bank", queries[i])
            if code != 0 or b'"amount"' not in value:
                raise AssertionError(f"smart query failed: {code} {log}")

        m = ref.bracket(lambda: measure(smart_query, len(queries), budget_s))
        rows.append(result(BENCH, "abci_smart_query_bank_balance", "queries/s", m, ref,
                           "ChainApp.query('/smart/bank', JSON) on committed state"))
        lc = _Headers(node, relay, 0, base, sizes.headers_per_tx)
        m = ref.bracket(lambda: measure_steps(lc.prepare, lc.op, budget_s))
        lc.check()
        rows.append(result(BENCH, f"light_client_insert_{lc.per_tx}headers_per_tx", "headers/s", m, ref,
                           "insert_headers txs (link + PoW + bits checks, store) through CheckTx + FinalizeBlock "
                           f"+ Commit, one tx per block ({m.rate.per_s / lc.per_tx:,.1f} tx/s)"))
        if sizes.e2e:
            rows.extend(_e2e(budget_s, ref))
        return rows
    finally:
        node.close()


def _e2e(budget_s: float, ref: Reference) -> list[Result]:
    """cosmpy LedgerClient → REST → EmbeddedChain (background producer)."""
    wallet = deterministic_wallet("bench-chain-e2e")
    to = deterministic_wallet("bench-chain-e2e-to").address()
    genesis = build_genesis({str(wallet.address()): FUNDS}, denom=DENOM, min_gas_price="0.01")
    rows = []
    with LocalChain(CHAIN_ID + "-e2e", genesis, block_interval=E2E_BLOCK_INTERVAL) as chain:
        client = chain.ledger_client(query_interval_secs=0.005, query_timeout_secs=30)
        sent = [0]

        def send(_: Any) -> int:
            tx = client.send_tokens(to, 1, DENOM, wallet).wait_to_complete()
            if tx.response is None or tx.response.code != 0:
                raise AssertionError(f"send_tokens failed: {tx.response}")
            sent[0] += 1
            return 1

        m = ref.bracket(lambda: measure_steps(lambda: True, send, budget_s))
        rows.append(result(BENCH, "ledgerclient_send_tokens_e2e", "tx/s", m, ref,
                           f"sequential send_tokens().wait_to_complete() over REST, block interval "
                           f"{E2E_BLOCK_INTERVAL}s (latency-bound)"))

        def query(_: int) -> None:
            if client.query_bank_balance(to, DENOM) < 1:
                raise AssertionError("balance query returned nothing")

        m = ref.bracket(lambda: measure(query, 1, budget_s))
        rows.append(result(BENCH, "ledgerclient_query_balance_e2e", "queries/s", m, ref,
                           "query_bank_balance over REST (HTTP round trip)"))
        if client.query_bank_balance(to, DENOM) != sent[0]:
            raise AssertionError("recipient balance does not match the sends")
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    bench_main(run, __doc__, argv)


if __name__ == "__main__":
    main()
