"""Micro-benchmarks for btc_staking (run: .venv/bin/python benchmarks/bench_btc_staking.py).

Each op is printed next to raw libsecp256k1 BIP-340 verification (coincurve) measured in the
same run, with the ratio op_rate / raw_verify_rate."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coincurve import PrivateKey, PublicKeyXOnly  # noqa: E402

from btc_staking import eots  # noqa: E402
from btc_staking.adaptor import encrypt_sign  # noqa: E402
from btc_staking.keys import generate_secret, xonly_from_secret  # noqa: E402
from btc_staking.params import regtest_default_params  # noqa: E402
from btc_staking.signing import sign_script_path  # noqa: E402
from btc_staking.staking import build_slashing_tx, build_staking_info, build_staking_tx, build_unbonding_tx  # noqa: E402
from btc_staking.tx import OutPoint, TxIn  # noqa: E402

BUDGET_S = 2.0  # seconds per measurement


def rate(fn: Callable[[int], None], n_items: int) -> float:
    """Ops/s of fn(i) over a time budget; i cycles through n_items precomputed inputs."""
    fn(0)  # warm-up
    done, start = 0, time.perf_counter()
    while True:
        for i in range(200):
            fn((done + i) % n_items)
        done += 200
        elapsed = time.perf_counter() - start
        if elapsed >= BUDGET_S:
            return done / elapsed


def main() -> None:
    M = 256
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

    results = []
    base = rate(raw_verify, M)
    for name, fn in (
        ("eots_sign", eots_sign),
        ("eots_verify", eots_verify),
        ("eots_extract", eots_extract),
        ("staking_txs_build_sign", staking_build_sign),
        ("adaptor_encrypt_sign", covenant_adaptor_sign),
    ):
        results.append((name, rate(fn, M)))
    base2 = rate(raw_verify, M)  # re-measure: the machine is shared
    base = (base + base2) / 2
    print(f"{'operation':<26}{'ops/s':>12}{'raw schnorr verify ops/s':>28}{'ratio':>10}")
    for name, r in results:
        print(f"{name:<26}{r:>12.0f}{base:>28.0f}{r / base:>10.3f}")


if __name__ == "__main__":
    main()
