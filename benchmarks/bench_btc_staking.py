"""Micro-benchmarks for btc_staking (run: .venv/bin/python benchmarks/bench_btc_staking.py [--quick]).

Each op is printed next to raw libsecp256k1 BIP-340 verification (coincurve) measured in the
same run (right before and right after each op, averaged), with the ratio op_rate / raw_verify_rate.
``run(budget_s)`` returns the same figures as :class:`benchmarks.harness.Result` rows."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coincurve import PrivateKey, PublicKeyXOnly  # noqa: E402

from benchmarks.harness import Rate, Reference, Result, measure  # noqa: E402

from btc_staking import eots  # noqa: E402
from btc_staking.adaptor import encrypt_sign  # noqa: E402
from btc_staking.keys import generate_secret, xonly_from_secret  # noqa: E402
from btc_staking.params import regtest_default_params  # noqa: E402
from btc_staking.signing import sign_script_path  # noqa: E402
from btc_staking.staking import build_slashing_tx, build_staking_info, build_staking_tx, build_unbonding_tx  # noqa: E402
from btc_staking.tx import OutPoint, TxIn  # noqa: E402

BUDGET_S = 2.0  # seconds per measurement
BENCH = "btc_staking"
REF_NAME = "coincurve schnorr verify"


def rate(fn: Callable[[int], None], n_items: int, budget_s: float = BUDGET_S) -> Rate:
    """Rate of fn(i) over a time budget (after a warm-up); i cycles through n_items precomputed inputs."""
    return measure(fn, n_items, budget_s)


def run(budget_s: float = BUDGET_S, *, quick: bool = False) -> list[Result]:
    """Every op against raw BIP-340 verify, each measured for ``budget_s`` seconds."""
    M = 64 if quick else 256
    sks = [generate_secret() for _ in range(M)]
    pks = [xonly_from_secret(sk) for sk in sks]
    ks = [eots.new_nonce() for _ in range(M)]
    prs = [eots.pub_rand(k) for k in ks]
    m1 = [eots.vote_message(1000 + i, os.urandom(32)) for i in range(M)]
    m2 = [eots.vote_message(1000 + i, os.urandom(32)) for i in range(M)]
    s1 = [eots.sign(sks[i], ks[i], m1[i]) for i in range(M)]
    s2 = [eots.sign(sks[i], ks[i], m2[i]) for i in range(M)]
    digests = [os.urandom(32) for _ in range(M)]
    raw_sigs = [PrivateKey(sks[i]).sign_schnorr(digests[i], os.urandom(32)) for i in range(M)]
    xonly_objs = [PublicKeyXOnly(pk) for pk in pks]

    params = regtest_default_params(num_covenants=5, quorum=3)
    fp = xonly_from_secret(generate_secret())

    def raw_verify(i: int) -> None:
        assert xonly_objs[i].verify(raw_sigs[i], digests[i])

    def eots_sign(i: int) -> None:
        eots.sign(sks[i], ks[i], m1[i])

    def eots_verify(i: int) -> None:
        assert eots.verify(pks[i], prs[i], m1[i], s1[i])

    def eots_extract(i: int) -> None:
        eots.extract_secret(pks[i], prs[i], m1[i], s1[i], m2[i], s2[i])

    def staking_build_sign(i: int) -> None:
        """Staker registration: staking tx + unbonding tx + both slashing txs, 2 staker sigs."""
        staker_sk, staker = sks[i], pks[i]
        tx = build_staking_tx(staker, fp, params, 1000, 100_000)
        tx.inputs.append(TxIn(OutPoint(digests[i], 0)))
        info = build_staking_info(staker, [fp], params.covenant_pks, 3, 1000, 100_000)
        op = OutPoint(tx.txid(), 0)
        ub = build_unbonding_tx(op, 100_000, staker, [fp], params)
        sl = build_slashing_tx(op, 100_000, staker, params)
        sign_script_path(staker_sk, sl, 0, [info.output], info.slashing_script)
        sign_script_path(staker_sk, ub, 0, [info.output], info.unbonding_script)

    def covenant_adaptor_sign(i: int) -> None:
        encrypt_sign(sks[i], fp, digests[i])

    ref = Reference(REF_NAME, raw_verify, M, budget_s)
    notes = {"staking_txs_build_sign": "staking + unbonding + slashing txs built, 2 staker script-path sigs"}
    results = []
    for name, fn in (
        ("eots_sign", eots_sign),
        ("eots_verify", eots_verify),
        ("eots_extract", eots_extract),
        ("staking_txs_build_sign", staking_build_sign),
        ("adaptor_encrypt_sign", covenant_adaptor_sign),
    ):
        m = ref.bracket(lambda: rate(fn, M, budget_s))  # raw verify re-measured around each op: the machine is shared
        results.append(Result(BENCH, name, "ops/s", m.rate, ref.name, m.ref_per_s, m.ref_drift, notes.get(name, "")))
    return results


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer inputs and a short budget")
    p.add_argument("--budget", type=float, default=None, help=f"seconds per measurement (default {BUDGET_S})")
    a = p.parse_args(argv)
    budget = a.budget if a.budget is not None else (0.3 if a.quick else BUDGET_S)
    print(f"{'operation':<26}{'ops/s':>12}{'raw schnorr verify ops/s':>28}{'ratio':>10}")
    for r in run(budget, quick=a.quick):
        print(f"{r.name:<26}{r.per_s:>12.0f}{r.ref_per_s:>28.0f}{r.ratio:>10.3f}")


if __name__ == "__main__":
    main()
