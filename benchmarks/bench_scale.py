"""Scale benchmarks (issue 13; run: .venv/bin/python benchmarks/bench_scale.py [--quick]).

Each figure at two state sizes or more, so its growth shows, on chains built by
:mod:`benchmarks.scale_fixture` (real delegations, every validation run):

* ``empty_block_<N>``: FinalizeBlock + Commit of an empty block with N ACTIVE delegations held;
* ``activate_one_<N>``: the block whose covenant-signature tx completes the quorum of one delegation (→ ACTIVE),
  with N active; ``mesh_activate_one_<N>`` the same with the mesh module wired (collateral + virtual stake);
* ``tip_move_<N>``: an ``insert_headers`` block moving the BTC tip by one header with N delegations held (none due);
* ``api_<route>_<N>``: the staking API over its index (SQLite) with 16 concurrent clients, requests/s, with p50
  and p99 latency in the note (at each size; the issue's target is for 10,000);
* ``attestations_<N>_locks``: the checkpoint service attesting N k-deep locks to an embedded chain with 1 s blocks
  (batched and pipelined), attestations per minute (see :mod:`benchmarks.bench_attest`).

Reference, same run: raw libsecp256k1 BIP-340 verify (coincurve), sampled around each row. A full garbage
collection runs (untimed) before each timed block: its pause grows with the whole process heap (the API phase's
objects included), which is the interpreter's cost, not the chain's per-block work."""

from __future__ import annotations

import gc
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coincurve import PrivateKey, PublicKeyXOnly  # noqa: E402

from benchmarks.harness import Bracketed, Rate, Reference, Result, bench_main, measure_steps, result  # noqa: E402
from benchmarks.scale_fixture import ScaleChain  # noqa: E402

BENCH = "scale"
QUICK_SIZES = (100, 1000)
FULL_SIZES = (1000, 10_000)
MESH_QUICK = (100, 1000)
MESH_FULL = (1000, 10_000)  # mesh state is per key (issue 13): as large as the registry rows
SMOKE_SIZES, MESH_SMOKE = (10, 30), (5, 10)  # a budget under SMOKE_BUDGET_S (the smoke test): tiny chains
SMOKE_BUDGET_S = 0.05
API_CLIENTS = 16
API_ROUTES = ("delegation", "delegations", "finality-providers", "stats", "staker/stats", "network-info", "params")


def schnorr_reference(budget_s: float) -> Reference:
    """Raw BIP-340 verify of 64 fresh signatures (the machine's yardstick)."""
    items = []
    for i in range(64):
        sk = PrivateKey(os.urandom(32))
        msg = os.urandom(32)
        items.append((PublicKeyXOnly(sk.public_key_xonly.format()), sk.sign_schnorr(msg), msg))

    def verify(i: int) -> None:
        pk, sig, msg = items[i]
        if not pk.verify(sig, msg):
            raise AssertionError("reference verify failed")

    return Reference("coincurve schnorr verify", verify, len(items), budget_s)


class _Pool:
    """Delegations registered with all but the last covenant signature; each step activates one."""

    def __init__(self, chain: ScaleChain, n: int) -> None:
        self.chain = chain
        q = chain.committee.quorum
        self.hashes = chain.register(chain.build(n), quorum_signers=q - 1)
        self.q = q

    def prepare(self) -> bytes | None:
        if not self.hashes:
            return None
        gc.collect()  # untimed: a full collection's pause scales with the whole process heap, not the chain's work
        h = self.hashes.pop()
        return self.chain.tx(self.chain.covenant_sender, self.chain.registry, [self.chain.covenant_msgs(h, self.q - 1)])

    def op(self, raw: object) -> int:
        self.chain.deliver([raw])  # type: ignore[list-item]
        return 1


def _grow(chain: ScaleChain, target: int, batch: int = 1000) -> None:
    """Add ACTIVE delegations until the chain holds ``target`` (expiring far from the tips used here)."""
    have = chain.status_counts().get("ACTIVE", 0)
    while have < target:
        n = min(batch, target - have)
        chain.register(chain.build(n, staking_time=(1000, 2000, 3000)))
        have += n


def _chain_rows(sizes: Sequence[int], budget_s: float, ref: Reference, *, mesh: bool,
                api_dir: Path | None = None) -> tuple[list[Result], Any]:
    """The chain rows at each size (growing one chain); with ``api_dir`` also the API rows at each size."""
    rows: list[Result] = []
    chain = ScaleChain(mesh=mesh)
    prefix = "mesh_" if mesh else ""
    for n in sizes:
        _grow(chain, n)
        counts = chain.status_counts()
        assert counts.get("ACTIVE", 0) >= n, counts
        steps = 12
        pool = _Pool(chain, steps + 1)
        m = ref.bracket(lambda: measure_steps(pool.prepare, pool.op, budget_s, max_steps=steps))
        rows.append(result(BENCH, f"{prefix}activate_one_{n}", "blocks/s", m, ref,
                           f"{n} ACTIVE held; block = 1 add_covenant_sigs tx completing a quorum "
                           f"({1000 / m.rate.per_s:.1f} ms/block)" + (" incl. mesh hooks" if mesh else "")))
        if mesh:
            continue

        def empty(_: object) -> int:
            chain.deliver([])
            return 1

        m = ref.bracket(lambda: measure_steps(lambda: gc.collect() or True, empty, budget_s, max_steps=50))
        rows.append(result(BENCH, f"empty_block_{n}", "blocks/s", m, ref,
                           f"FinalizeBlock + Commit, no tx, {n} delegations held ({1000 / m.rate.per_s:.1f} ms/block)"))

        def tip(raw: object) -> int:
            chain.deliver([raw])  # type: ignore[list-item]
            return 1

        def next_tip() -> bytes:
            gc.collect()  # untimed (see _Pool.prepare)
            return chain.next_header_tx()

        m = ref.bracket(lambda: measure_steps(next_tip, tip, budget_s, max_steps=20))
        rows.append(result(BENCH, f"tip_move_{n}", "blocks/s", m, ref,
                           f"insert_headers (1 header) block, {n} delegations held, none due "
                           f"({1000 / m.rate.per_s:.1f} ms/block)"))
        if api_dir is not None:
            rows.extend(_api_rows(chain, n, budget_s, ref, api_dir / f"n{n}"))
    return rows, chain


def _api_rows(chain: ScaleChain, n: int, budget_s: float, ref: Reference, tmp: Path) -> list[Result]:
    import httpx

    from api import create_app
    from api.app import BackgroundServer
    from api.chain_source import ChainAppSource
    from api.index import IndexedSource

    t0 = time.perf_counter()
    tmp.mkdir(parents=True, exist_ok=True)
    src = IndexedSource.follow(ChainAppSource(chain.app), f"sqlite:///{tmp / 'api-index.sqlite'}", interval=None)
    index_s = time.perf_counter() - t0
    server = BackgroundServer(create_app(src)).start()
    hashes = list(chain.hashes)
    stakers = sorted({rec.staker_pk_hex for rec in src.list_delegations()})[:256]
    rows: list[Result] = []
    try:
        for route in API_ROUTES:
            def params(i: int) -> dict[str, Any]:
                if route == "delegation":
                    return {"staking_tx_hash_hex": hashes[i % len(hashes)]}
                if route in ("delegations", "staker/stats"):
                    return {"staker_pk_hex": stakers[i % len(stakers)]}
                return {}

            lat: list[float] = []
            errors: list[BaseException] = []
            lock = threading.Lock()
            stop_at = [0.0]
            window_s = [0.0]
            started = [0.0]

            def open_window() -> None:  # run once, by the last client to get ready, before any is released
                started[0] = time.perf_counter()
                stop_at[0] = started[0] + window_s[0]

            def client(k: int, ready: threading.Barrier) -> None:
                try:
                    with httpx.Client(base_url=server.url, timeout=60) as c:
                        i = k
                        # the window opens only once every client is built (a loaded machine may take longer
                        # than the window to start 16 threads), and each client makes at least one request
                        ready.wait(120)
                        while True:
                            t = time.perf_counter()
                            r = c.get(f"/v2/{route}", params=params(i))
                            d = time.perf_counter() - t
                            if r.status_code != 200:
                                raise AssertionError(f"/v2/{route}: {r.status_code} {r.text[:200]}")
                            with lock:
                                lat.append(d)
                            i += API_CLIENTS
                            if time.perf_counter() >= stop_at[0]:
                                break
                except BaseException as exc:  # noqa: BLE001 - reported by the measuring thread
                    errors.append(exc)
                    ready.abort()  # the others stop waiting for this one

            def clients(window: float) -> float:
                """Run API_CLIENTS clients for ``window`` seconds once all are ready; the seconds they took."""
                window_s[0] = window
                ready = threading.Barrier(API_CLIENTS, action=open_window)
                threads = [threading.Thread(target=client, args=(k, ready)) for k in range(API_CLIENTS)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(120)
                return time.perf_counter() - started[0]

            clients(min(0.5, max(budget_s, 0.1)))  # warm-up: connections, caches
            lat.clear()

            def run() -> Rate:
                seconds = clients(max(budget_s, 0.5))
                return Rate(len(lat), seconds)

            m = ref.bracket(run)
            if errors or not lat:
                raise AssertionError(f"/v2/{route}: {errors[:1] or 'no request completed'}")
            lat.sort()
            p50 = statistics.median(lat) * 1000
            p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000
            rows.append(result(BENCH, f"api_{route.replace('/', '_').replace('-', '_')}_{n}", "req/s", m, ref,
                               f"{API_CLIENTS} concurrent clients, {n} delegations indexed: p50 {p50:.1f} ms, "
                               f"p99 {p99:.1f} ms (target p99 < 20 ms)"))
        lag = src.index_lag()
        rows.append(Result(BENCH, f"api_index_build_{n}", "delegations/s", Rate(n, index_s), ref.name, ref.per_s,
                           0.0, f"first sync of an empty index (SQLite); lag after: {lag.blocks if lag else '?'} blocks"))
    finally:
        server.stop()
        src.close()
    return rows


def run(budget_s: float = 1.0, *, quick: bool = False) -> list[Result]:
    """Every scale row (see the module docstring)."""
    import tempfile

    ref = schnorr_reference(budget_s)
    smoke = budget_s < SMOKE_BUDGET_S
    sizes = SMOKE_SIZES if smoke else QUICK_SIZES if quick else FULL_SIZES
    with tempfile.TemporaryDirectory(prefix="btcmesh-bench-api-") as tmp:
        rows, chain = _chain_rows(sizes, budget_s, ref, mesh=False, api_dir=Path(tmp))
        chain.close()
    mesh_rows, mesh_chain = _chain_rows(MESH_SMOKE if smoke else MESH_QUICK if quick else MESH_FULL, budget_s, ref,
                                        mesh=True)
    mesh_chain.close()
    rows.extend(mesh_rows)
    from benchmarks import bench_attest

    rows.extend(bench_attest.run(budget_s, quick=quick, ref=ref, smoke=smoke))
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    bench_main(run, __doc__, argv)


if __name__ == "__main__":
    main()
