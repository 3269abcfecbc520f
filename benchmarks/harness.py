"""Shared measurement code for the benchmarks.

House rule: every figure is a ratio against a reference measured in the same run, on the same
inputs. A :class:`Reference` is sampled right before and right after each operation it is compared
with (the machine is shared: each row reports the spread of its two samples as drift);
:func:`measure` warms up, then runs an operation
over precomputed inputs for a time budget; :func:`measure_steps` times only the measured part of
steps whose inputs must be made fresh each time (txs that can be accepted only once).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

__all__ = [
    "Bracketed", "Rate", "Reference", "Result", "result", "measure", "measure_steps", "machine_info", "format_table",
    "COLUMNS",
]

MIN_BATCHES = 4  # a measurement spans at least this many timed batches (unless the budget is tiny)


@dataclass(frozen=True)
class Rate:
    """`ops` operations in `seconds` of timed work."""

    ops: int
    seconds: float

    @property
    def per_s(self) -> float:
        """Operations per second."""
        return self.ops / self.seconds if self.seconds > 0 else float("nan")


def measure(fn: Callable[[int], object], n_items: int, budget_s: float, *, warmup_s: float | None = None) -> Rate:
    """Rate of ``fn(i)`` (i cycles over ``n_items`` precomputed inputs) over ``budget_s`` seconds.

    Warm-up first (``warmup_s``, default 10 % of the budget, at least one call per input up to 8).
    Batches are sized from the warm-up so the clock is read rarely; at least one timed call."""
    if n_items < 1:
        raise ValueError("n_items must be >= 1")
    if budget_s <= 0:
        raise ValueError("budget_s must be positive")
    warm_end = time.perf_counter() + (budget_s * 0.1 if warmup_s is None else warmup_s)
    calls, t0 = 0, time.perf_counter()
    while calls < min(n_items, 8) or time.perf_counter() < warm_end:
        fn(calls % n_items)
        calls += 1
    per_call = max((time.perf_counter() - t0) / calls, 1e-7)
    batch = max(1, int(budget_s / MIN_BATCHES / 4 / per_call))
    done, i = 0, 0
    start = time.perf_counter()
    while True:
        for _ in range(batch):
            fn(i)
            i = (i + 1) % n_items
        done += batch
        elapsed = time.perf_counter() - start
        if elapsed >= budget_s:
            return Rate(done, elapsed)


def measure_steps(
    prepare: Callable[[], object],
    op: Callable[[object], int],
    budget_s: float,
    *,
    max_steps: int | None = None,
    warmup_steps: int = 1,
    wall_factor: float = 6.0,
) -> Rate:
    """Rate of ``op(prepare())`` counting only the time inside ``op``, which returns how many
    operations it did (e.g. txs in a block). Stops once the timed total reaches ``budget_s``, after
    ``max_steps`` steps, or when the wall clock (preparation included) passes ``wall_factor`` ×
    budget. ``prepare`` may return None to say its supply is exhausted. Warm-up steps are not counted."""
    for _ in range(warmup_steps):
        item = prepare()
        if item is None:
            raise RuntimeError("nothing to measure: prepare() returned None during warm-up")
        op(item)
    ops, timed, steps = 0, 0.0, 0
    wall_end = time.perf_counter() + wall_factor * budget_s
    while True:
        item = prepare()
        if item is None:
            break
        t0 = time.perf_counter()
        n = op(item)
        timed += time.perf_counter() - t0
        ops += n
        steps += 1
        if timed >= budget_s or (max_steps is not None and steps >= max_steps) or time.perf_counter() >= wall_end:
            break
    if ops == 0:
        raise RuntimeError("nothing was measured (no step completed)")
    return Rate(ops, timed)


@dataclass(frozen=True)
class Bracketed:
    """An operation's rate with the reference rate measured right before and right after it."""

    rate: Rate
    ref_per_s: float
    ref_drift: float


@dataclass
class Reference:
    """A raw reference operation, sampled several times in a run. :meth:`bracket` measures it right
    before and right after an operation (the machine is shared: its speed moves), so each operation
    is compared with the mean of its two neighbouring samples and their spread is reported as drift."""

    name: str
    fn: Callable[[int], object]
    n_items: int
    budget_s: float
    samples: list[Rate] = field(default_factory=list)

    def sample(self) -> Rate:
        """Measure once more and keep the sample."""
        r = measure(self.fn, self.n_items, self.budget_s)
        self.samples.append(r)
        return r

    def bracket(self, op: Callable[[], Rate]) -> Bracketed:
        """Run ``op`` (which measures something) between two samples of this reference; the
        sample after one op is the sample before the next."""
        if not self.samples:
            self.sample()
        before = self.samples[-1]
        rate = op()
        after = self.sample()
        pair = [before.per_s, after.per_s]
        mean = statistics.fmean(pair)
        return Bracketed(rate, mean, (max(pair) - min(pair)) / mean)

    @property
    def per_s(self) -> float:
        """Mean rate over all samples."""
        if not self.samples:
            raise RuntimeError(f"reference {self.name!r} was never measured")
        return statistics.fmean(s.per_s for s in self.samples)

    @property
    def drift(self) -> float:
        """(max − min) / mean of the sampled rates: how much the machine moved during the run."""
        rates = [s.per_s for s in self.samples]
        return (max(rates) - min(rates)) / statistics.fmean(rates) if len(rates) > 1 else 0.0


@dataclass(frozen=True)
class Result:
    """One benchmark row: an operation's rate and the reference it is compared with."""

    bench: str
    name: str
    unit: str
    rate: Rate
    ref_name: str
    ref_per_s: float
    ref_drift: float = 0.0
    note: str = ""

    @property
    def per_s(self) -> float:
        """The operation's rate."""
        return self.rate.per_s

    @property
    def ratio(self) -> float:
        """Operation rate / reference rate (same run, same inputs)."""
        return self.per_s / self.ref_per_s

    @property
    def ref_ops(self) -> float:
        """How many reference operations one operation costs (1 / ratio)."""
        return self.ref_per_s / self.per_s

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form."""
        return {
            "bench": self.bench, "operation": self.name, "unit": self.unit, "rate": self.per_s,
            "ops": self.rate.ops, "seconds": self.rate.seconds, "reference": self.ref_name,
            "reference_rate": self.ref_per_s, "reference_drift": self.ref_drift, "ratio": self.ratio,
            "reference_ops_per_op": self.ref_ops, "note": self.note,
        }


def result(bench: str, name: str, unit: str, m: Bracketed, ref: Reference, note: str = "") -> Result:
    """A Result against the reference samples bracketing it."""
    return Result(bench, name, unit, m.rate, ref.name, m.ref_per_s, m.ref_drift, note)


def machine_info() -> dict[str, str]:
    """CPU count, affinity, load, Python and library versions."""
    info = {
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "platform": platform.platform(),
        "cpu_count": str(os.cpu_count()),
    }
    try:
        info["cpus_usable"] = str(len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        pass
    try:
        info["loadavg"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        pass
    from importlib import metadata

    for dist in ("coincurve", "py-bitcoinkernel", "cosmpy"):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:  # pragma: no cover
            info[dist] = "absent"
    info["utc"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    return info


COLUMNS = ("bench", "operation", "rate", "unit", "n", "reference", "ref/s", "ratio", "ref-ops/op", "drift")


def _fmt_rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.2f}"


def format_table(results: Sequence[Result], info: dict[str, str] | None = None) -> str:
    """Plain-text table: one row per result, then notes and machine info."""
    rows = [COLUMNS]
    for r in results:
        rows.append((r.bench, r.name, _fmt_rate(r.per_s), r.unit, str(r.rate.ops), r.ref_name,
                     _fmt_rate(r.ref_per_s), f"{r.ratio:.4f}", f"{r.ref_ops:,.2f}", f"{100 * r.ref_drift:.0f}%"))
    widths = [max(len(row[c]) for row in rows) for c in range(len(COLUMNS))]
    right = {2, 4, 6, 7, 8, 9}
    lines = []
    for k, row in enumerate(rows):
        cells = [cell.rjust(w) if c in right else cell.ljust(w) for c, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    lines.append("ratio = rate / ref/s (both measured in this run); ref-ops/op = 1 / ratio; "
                 "drift = spread of the two reference samples taken right before and after the row")
    notes = _unique(f"  {r.bench}/{r.name}: {r.note}" for r in results if r.note)
    if notes:
        lines.append("notes:")
        lines.extend(notes)
    if info:
        lines.append("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    return "\n".join(lines)


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


QUICK_BUDGET_S = 0.3
FULL_BUDGET_S = 2.0


def bench_main(run: Callable[..., list[Result]], doc: str, argv: Sequence[str] | None = None) -> None:
    """Command line of one benchmark file: ``--quick`` / ``--budget``, then print its table."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small inputs and a short budget")
    p.add_argument("--budget", type=float, default=None, help="seconds per measurement")
    a = p.parse_args(argv)
    budget = a.budget if a.budget is not None else (QUICK_BUDGET_S if a.quick else FULL_BUDGET_S)
    print(format_table(run(budget, quick=a.quick), machine_info()))
