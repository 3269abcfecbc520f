"""Attestations per minute (issue 13; run through ``benchmarks/bench_scale.py`` or ``python -m benchmarks``).

N staking locks on an :class:`~regtest.embedded.EmbeddedNode` (real txs funded and signed by a regtest wallet,
mined k deep), each with a registered intent, attested by the :class:`~checkpoint.service.CheckpointService` to
a :class:`~cosmos_chain.rest.LocalChain` producing a block every second, over its REST server with an unmodified
cosmpy ``LedgerClient``: every ``create_btc_delegation`` is fully validated by the registry (inclusion proof
against the relayed headers, staker signatures, PoP). The clock runs from the first round to the last
submission marked done. Batched (``attest_batch`` messages per tx, ``pipeline_depth`` txs in flight) and, in a
full run, one attestation per tx on fewer locks for comparison."""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import Rate, Reference, Result, result

BENCH = "scale"
QUICK_LOCKS = (200,)
FULL_LOCKS = (500, 2000)
BASELINE_LOCKS = 60
BLOCK_INTERVAL = 1.0
ATTEST_BATCH = 100
PIPELINE_DEPTH = 8
STAKING_TIME = 1000
VALUE = 200_000


def _secret(label: str) -> bytes:
    return hashlib.sha256(b"btcmesh-bench-attest/" + label.encode()).digest()


def attest_run(n_locks: int, *, attest_batch: int, pipeline_depth: int, max_s: float = 600.0) -> tuple[float, int]:
    """Build the N locks, then attest them; returns (seconds from the first round to the last one done, done)."""
    from btc_staking.keys import schnorr_sign, xonly_from_secret
    from btc_staking.params import regtest_default_params
    from btc_staking.signing import pop_digest
    from btc_staking.tx import TxOut
    from btcmesh.staker import Staker
    from checkpoint.runner import build_service, connect, light_client_genesis
    from cosmos_chain.genesis import build_genesis, deterministic_wallet
    from cosmos_chain.rest import LocalChain
    from regtest.embedded import EmbeddedNode
    from regtest.wallet import Wallet

    k = 2
    params = regtest_default_params(confirmation_depth=k)
    with tempfile.TemporaryDirectory(prefix="btcmesh-bench-attest-") as tmp:
        node = EmbeddedNode(Path(tmp) / "node")
        chain = None
        svc = None
        try:
            miner = Wallet(node, _secret("miner"))
            node.mine_blocks(110, miner.script_pubkey)
            miner.scan()
            fan = miner.fund([TxOut(VALUE + 20_000, miner.script_pubkey) for _ in range(n_locks)], 2.0)
            node.send_raw_transaction(fan.serialize())
            node.mine_blocks(1, miner.script_pubkey)
            miner.scan()
            cp_wallet = deterministic_wallet("bench-attest/checkpoint")
            admin = deterministic_wallet("bench-attest/admin")
            cp_address = str(cp_wallet.address())
            genesis = build_genesis({cp_address: 10**15, str(admin.address()): 10**15},
                                    chain_id="btcmesh-attest-1", btc_light_client=light_client_genesis(node),
                                    btc_staking={"params": [params.to_dict()]})
            chain = LocalChain("btcmesh-attest-1", genesis, home=str(Path(tmp) / "chain"),
                               block_interval=BLOCK_INTERVAL)
            denom, price = chain.app.fee_params()
            client = connect(chain.url, chain_id="btcmesh-attest-1", denom=denom, gas_price=float(price))
            fp_sk = _secret("fp")
            fp = xonly_from_secret(fp_sk)
            client.execute(client.contracts.btc_staking, {"create_finality_provider": {
                "btc_pk": fp.hex(), "pop": schnorr_sign(fp_sk, pop_digest(bytes(admin.address()))).hex(),
                "description": {"moniker": "bench"}, "commission": "0.05", "validator": "val-bench"}}, admin)
            svc = build_service(node, chain.url, Path(tmp) / "cp.sqlite", wallet=cp_wallet, chain_id="btcmesh-attest-1",
                                denom=denom, gas_price=float(price), poll_interval=0.05, attest_batch=attest_batch,
                                pipeline_depth=pipeline_depth, retry_base_s=0.2, retry_max_s=2.0)
            for i in range(n_locks):
                staker = Staker(_secret(f"staker/{i}"), params)
                tx = staker.fund_staking_tx(miner, fp, STAKING_TIME, VALUE)
                d = staker.delegation(tx, [fp], STAKING_TIME)
                svc.register_intent(staker.pk, [fp], STAKING_TIME, VALUE, d.material(pop=staker.pop(cp_address)))
                node.send_raw_transaction(tx.serialize())
            node.mine_blocks(1 + k, miner.script_pubkey)
            done = 0
            start = time.perf_counter()
            deadline = start + max_s
            while done < n_locks and time.perf_counter() < deadline:
                rep = svc.run_once()
                done += len(rep.submitted) + len(rep.already_on_chain)
                if rep.dead_lettered:
                    raise AssertionError(f"dead-lettered attestations: {svc.dead_letters()[:3]}")
                if not rep.submitted:
                    time.sleep(0.05)
            elapsed = time.perf_counter() - start
            got = sum(1 for s in svc.store.submissions("done"))
            return elapsed, got
        finally:
            if svc is not None:
                svc.close()
            if chain is not None:
                chain.close()
            node.close()


SMOKE_LOCKS = (10,)


def run(budget_s: float = 1.0, *, quick: bool = False, ref: Reference, smoke: bool = False) -> list[Result]:
    """Attestations per minute at N locks (and, in a full run, one per tx on fewer locks)."""
    rows = []
    out: dict[str, Any] = {}
    for n in SMOKE_LOCKS if smoke else QUICK_LOCKS if quick else FULL_LOCKS:
        def batched() -> Rate:
            elapsed, done = attest_run(n, attest_batch=ATTEST_BATCH, pipeline_depth=PIPELINE_DEPTH)
            if done != n:
                raise AssertionError(f"only {done} of {n} attestations done")
            out["elapsed"] = elapsed
            return Rate(done * 60, elapsed)  # per minute

        m = ref.bracket(batched)
        rows.append(result(BENCH, f"attestations_{n}_locks", "attest/min", m, ref,
                           f"{ATTEST_BATCH} per tx, {PIPELINE_DEPTH} txs in flight, {BLOCK_INTERVAL:g} s blocks: "
                           f"{n} done in {out['elapsed']:.1f} s (target >= 3,000/min at 2,000 locks)"))
    if not quick and not smoke:
        def single() -> Rate:
            elapsed, done = attest_run(BASELINE_LOCKS, attest_batch=1, pipeline_depth=1)
            out["elapsed1"] = elapsed
            return Rate(done * 60, elapsed)

        m = ref.bracket(single)
        rows.append(result(BENCH, f"attestations_{BASELINE_LOCKS}_locks_one_per_tx", "attest/min", m, ref,
                           f"baseline: one attestation per tx, waiting for each commit ({out['elapsed1']:.1f} s)"))
    return rows
