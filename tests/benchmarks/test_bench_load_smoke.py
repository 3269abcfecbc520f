"""Smoke test of ``benchmarks.bench_load`` (issue 12): the load generator drives the chain REST and the
node RPC processes with a few clients and every answer is checked. No timing assertions."""

from __future__ import annotations

import pytest

from benchmarks import bench_load

pytestmark = pytest.mark.timeout(120)


def test_load_benchmark_runs_and_reports_latencies() -> None:
    rows = bench_load.run(clients=8, requests=2)
    assert [r.target for r in rows] == ["reference: trivial app, same stack", "chain REST blocks/latest",
                                        "node RPC getblockchaininfo"]
    for r in rows:
        d = r.as_dict()
        assert r.errors == {} and d["ok"] == 16
        assert 0 < d["p50_ms"] <= d["p99_ms"] <= d["max_ms"]
    assert "p99 ms" in bench_load.format_rows(rows, keep_alive=False)
