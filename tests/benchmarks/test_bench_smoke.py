"""Smoke test: every benchmark still runs end to end with a tiny budget and reports ratio columns.

No timing assertions (performance is measured by the benchmarks themselves, not by tests)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import run_all
from benchmarks.harness import COLUMNS, Rate, Reference, Result, format_table, machine_info, measure, measure_steps

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
TINY = 0.005  # seconds per measurement: just enough to run each op a few times

EXPECTED = {
    "btc_staking": {"eots_sign", "eots_verify", "eots_extract", "staking_txs_build_sign", "adaptor_encrypt_sign"},
    "regtest": {
        "kernel_verify_keypath", "mempool_accept_keypath", "sendrawtransaction_keypath",
        "mempool_accept_timelock", "kernel_verify_timelock", "mempool_accept_unbonding_3of5",
        "kernel_verify_unbonding_3of5", "mempool_accept_slashing_3of5", "kernel_verify_slashing_3of5",
        "block_connect_1tx", "block_connect_100tx",
    },
    "chain": {
        "deliver_bank_send_1tx_blocks", "deliver_bank_send_50tx_blocks", "checktx_bank_send_50tx_blocks",
        "finalize_commit_bank_send_50tx_blocks", "abci_smart_query_bank_balance",
        "light_client_insert_100headers_per_tx",
        "ledgerclient_send_tokens_e2e", "ledgerclient_query_balance_e2e",
    },
    # issue 13, at the smoke sizes (bench_scale.SMOKE_SIZES / MESH_SMOKE, bench_attest.SMOKE_LOCKS)
    "scale": {f"{op}_{n}" for op in ("activate_one", "empty_block", "tip_move") for n in (10, 30)}
    | {f"api_{r}_{n}" for r in ("delegation", "delegations", "finality_providers", "stats", "staker_stats",
                                  "network_info", "params", "index_build") for n in (10, 30)}
    | {"mesh_activate_one_5", "mesh_activate_one_10", "attestations_10_locks"},
}


def test_every_benchmark_is_listed() -> None:
    assert set(run_all.BENCHMARKS) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_benchmark_runs_and_reports_ratios(name: str) -> None:
    rows = run_all.run_all(TINY, quick=True, only=[name])
    assert {r.name for r in rows} == EXPECTED[name]
    for r in rows:
        assert r.bench == name
        assert r.rate.ops >= 1 and r.rate.seconds > 0
        assert r.ref_name and r.ref_per_s > 0
        assert math.isfinite(r.ratio) and r.ratio > 0
        assert r.ratio == pytest.approx(r.per_s / r.ref_per_s)
        assert r.ref_ops == pytest.approx(1 / r.ratio)
        assert 0 <= r.ref_drift < math.inf
    table = format_table(rows, machine_info())
    lines = table.splitlines()
    assert lines[0].split() == list(COLUMNS)
    assert "ratio" in lines[0] and "ref/s" in lines[0]
    for r in rows:
        row = next(line for line in lines if line.split()[:2] == [name, r.name])
        assert f"{r.ratio:.4f}" in row.split()
    assert any(line.startswith("machine: ") and "cpu_count=" in line and "python=" in line for line in lines)


def test_python_m_benchmarks_prints_one_table_and_json(tmp_path: Path) -> None:
    out_json = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--budget", str(TINY), "--only", "btc_staking",
         "--json", str(out_json)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    header = proc.stdout.splitlines()[0].split()
    assert header == list(COLUMNS)
    assert "mode=quick" in proc.stdout
    data = json.loads(out_json.read_text())
    assert {r["operation"] for r in data["results"]} == EXPECTED["btc_staking"]
    assert all(r["ratio"] > 0 and r["reference"] for r in data["results"])
    assert data["machine"]["cpu_count"]


def test_run_all_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown benchmark"):
        run_all.run_all(TINY, quick=True, only=["nope"])
    with pytest.raises(SystemExit) as exc:
        run_all.main(["--only", "nope", "--budget", str(TINY)])
    assert exc.value.code == 2


def test_measure_warms_up_then_counts_timed_calls() -> None:
    calls: list[int] = []
    r = measure(calls.append, 3, TINY, warmup_s=0)
    warm = min(3, 8)  # at least one call per input (up to 8) before timing
    assert r.ops == len(calls) - warm >= 1
    assert set(calls) == {0, 1, 2}  # inputs cycle
    with pytest.raises(ValueError):
        measure(calls.append, 0, TINY)


def test_measure_steps_counts_only_op_results_after_warmup() -> None:
    supply = iter(range(5))
    seen: list[int] = []

    def op(item: object) -> int:
        seen.append(item)  # type: ignore[arg-type]
        return 10

    r = measure_steps(lambda: next(supply, None), op, budget_s=60)  # the supply runs out first
    assert seen == [0, 1, 2, 3, 4]
    assert r.ops == 40  # 4 measured steps of 10; the warm-up step is not counted
    with pytest.raises(RuntimeError, match="nothing to measure"):
        measure_steps(lambda: None, op, TINY)


def test_reference_mean_and_drift() -> None:
    ref = Reference("x", lambda i: None, 1, TINY)
    with pytest.raises(RuntimeError):
        _ = ref.per_s
    ref.samples += [Rate(100, 1.0), Rate(300, 1.0)]
    assert ref.per_s == 200 and ref.drift == 1.0
    res = Result("b", "op", "ops/s", Rate(50, 1.0), ref.name, ref.per_s, ref.drift)
    assert res.ratio == 0.25 and res.ref_ops == 4
    assert res.as_dict()["ratio"] == 0.25


def test_reference_brackets_each_operation() -> None:
    ref = Reference("x", lambda i: None, 1, TINY)
    a = ref.bracket(lambda: Rate(7, 1.0))
    assert len(ref.samples) == 2 and a.rate == Rate(7, 1.0)
    assert a.ref_per_s == pytest.approx((ref.samples[0].per_s + ref.samples[1].per_s) / 2)
    b = ref.bracket(lambda: Rate(9, 1.0))
    assert len(ref.samples) == 3  # the sample after one op is the sample before the next
    pair = [ref.samples[1].per_s, ref.samples[2].per_s]
    assert b.ref_per_s == pytest.approx(sum(pair) / 2)
    assert b.ref_drift == pytest.approx((max(pair) - min(pair)) / (sum(pair) / 2))


def test_a_failing_benchmark_is_reported_and_the_others_still_print(monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    def broken(budget_s: float, *, quick: bool) -> list[Result]:
        raise AssertionError("/v2/staker/stats: no request completed")

    monkeypatch.setitem(run_all.BENCHMARKS, "broken", broken)
    with pytest.raises(AssertionError):  # without a failures dict the error propagates
        run_all.run_all(TINY, quick=True, only=["broken"])
    code = run_all.main(["--quick", "--budget", str(TINY), "--only", "broken,btc_staking"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "broken: FAILED" in err and "benchmark broken FAILED: AssertionError: /v2/staker/stats" in err
    assert "Traceback" not in err
    rows = [line.split()[1] for line in out.splitlines() if line.startswith("btc_staking ")]
    assert set(rows) == EXPECTED["btc_staking"]  # the other benchmark's table is still printed
