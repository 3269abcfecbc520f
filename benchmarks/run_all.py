"""Run every benchmark and print one table (run: .venv/bin/python -m benchmarks [--quick]).

Each row is an operation's rate next to a reference measured in the same run on the same inputs
(raw libsecp256k1 Schnorr or ECDSA verify, libbitcoinkernel script verify), with the ratio.
Absolute rates depend on the machine and its load; compare ratios."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bench_btc_staking, bench_chain, bench_regtest, bench_scale  # noqa: E402
from benchmarks.harness import FULL_BUDGET_S, QUICK_BUDGET_S, Result, format_table, machine_info  # noqa: E402

BENCHMARKS: dict[str, Callable[..., list[Result]]] = {
    "btc_staking": bench_btc_staking.run,
    "regtest": bench_regtest.run,
    "chain": bench_chain.run,
    "scale": bench_scale.run,
}


def check_names(only: Sequence[str] | None) -> list[str]:
    """The selected benchmark names (all when empty); ValueError for an unknown one."""
    names = list(only) if only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    return names


def run_all(budget_s: float, *, quick: bool, only: Sequence[str] | None = None,
            progress: Callable[[str], None] | None = None,
            failures: dict[str, BaseException] | None = None) -> list[Result]:
    """Run the selected benchmarks (all by default) in a fixed order; returns every row.

    With ``failures`` given, a benchmark that raises is recorded there (name → exception) and reported through
    ``progress``, and the others still run; without it the exception propagates."""
    names = check_names(only)
    results: list[Result] = []
    for name in names:
        t0 = time.perf_counter()
        try:
            rows = BENCHMARKS[name](budget_s, quick=quick)
        except Exception as exc:  # noqa: BLE001 - reported, and the run exits non-zero at the end
            if failures is None:
                raise
            failures[name] = exc
            if progress is not None:
                progress(f"{name}: FAILED after {time.perf_counter() - t0:.1f}s: {type(exc).__name__}: {exc}")
            continue
        if progress is not None:
            progress(f"{name}: {len(rows)} rows in {time.perf_counter() - t0:.1f}s")
        results.extend(rows)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help=f"small inputs and {QUICK_BUDGET_S}s per measurement (about 75 s in all on 2 cores; "
                        "a full run takes minutes)")
    p.add_argument("--budget", type=float, default=None,
                   help=f"seconds per measurement (default {FULL_BUDGET_S}, or {QUICK_BUDGET_S} with --quick)")
    p.add_argument("--only", default="", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    p.add_argument("--json", metavar="PATH", help="also write the rows and machine info as JSON")
    a = p.parse_args(argv)
    budget = a.budget if a.budget is not None else (QUICK_BUDGET_S if a.quick else FULL_BUDGET_S)
    if budget <= 0:
        p.error("--budget must be positive")
    only = [n.strip() for n in a.only.split(",") if n.strip()]
    try:
        check_names(only)
    except ValueError as exc:
        p.error(str(exc))
    failures: dict[str, BaseException] = {}
    results = run_all(budget, quick=a.quick, only=only, failures=failures,
                      progress=lambda line: print(line, file=sys.stderr, flush=True))
    info = machine_info()
    info["budget_s"] = f"{budget:g}"
    info["mode"] = "quick" if a.quick else "full"
    print(format_table(results, info))
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": info, "results": [r.as_dict() for r in results],
                                            "failed": {n: f"{type(e).__name__}: {e}" for n, e in failures.items()}},
                                           indent=2))
    for name, exc in failures.items():
        print(f"benchmark {name} FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
