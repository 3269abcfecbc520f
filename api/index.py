"""The staking API's own index: a database the ``/v2`` routes read instead of scanning the chain per request.

Modelled on Babylon's staking-api-service, whose indexer fills a database from chain events. Here the
:class:`Indexer` follows the registry's change feed (``delegations_updated {after_height}``: every delegation
whose record changed above a chain height, each once, under the height of its last change) and remembers
the chain height it synced to, so it catches up after a restart or a gap by asking only for what changed
since. Finality providers and params (a handful of rows) are re-read each sync; the BTC light-client tip is
read each sync and the delegations whose public state can change at the new tip are re-derived through an
index on ``next_change_tip`` (the lowest tip at which ``api.states.derive_state`` can give another answer).

Stats are counters (per state: count and satoshi, network-wide, per staker and per finality provider, plus
distinct stakers) updated by the difference between a delegation's old and new row, never recomputed.

Storage is SQLAlchemy Core with Alembic migrations (``api/migrations``): SQLite by default
(``sqlite:///path``), PostgreSQL through psycopg (``postgresql+psycopg://...``) for deployments that outgrow
one machine. One process writes (the indexer); any number read.

:class:`IndexedSource` is a ``StakingDataSource`` over the index with fast paths (pages, counters) that
``StakingService`` uses when present; it also reports the index lag (chain height − indexed height).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import (BigInteger, Boolean, Column, Index, Integer, MetaData, String, Table, Text, and_, create_engine,
                        delete, event, select, tuple_)
from sqlalchemy.engine import Connection, Engine

from api.chain_source import delegation_from_json, finality_provider_from_json, params_from_json
from api.source import DataSourceError, DelegationRecord, FinalityProviderRecord, ParamsRecord
from api.states import DelegationState, derive_state

__all__ = ["metadata", "StakingIndex", "ChainFeed", "Indexer", "IndexedSource", "next_change_tip", "IndexLag",
           "install_index_metrics"]

metadata = MetaData()

delegations = Table(
    "delegations", metadata,
    Column("staking_tx_hash", String(64), primary_key=True),
    Column("staker_pk", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("next_change_tip", BigInteger, nullable=True),
    Column("updated_height", BigInteger, nullable=False),
    Column("record", Text, nullable=False),
    Index("ix_delegations_staker", "staker_pk", "staking_tx_hash"),
    Index("ix_delegations_next_change", "next_change_tip"),
)
delegation_fps = Table(
    "delegation_fps", metadata,
    Column("fp_pk", String(66), primary_key=True),
    Column("staking_tx_hash", String(64), primary_key=True),
)
finality_providers = Table(
    "finality_providers", metadata,
    Column("btc_pk", String(66), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("slashed", Boolean, nullable=False),
    Column("record", Text, nullable=False),
)
params_versions = Table(
    "params_versions", metadata,
    Column("version", Integer, primary_key=True),
    Column("record", Text, nullable=False),
)
counters = Table(
    "counters", metadata,
    Column("scope", String(8), primary_key=True),
    Column("key", String(66), primary_key=True),
    Column("name", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False),
)
meta = Table(
    "meta", metadata,
    Column("key", String(32), primary_key=True),
    Column("value", Text, nullable=False),
)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
READER_TTL_S = 0.5
ALL, STAKER, FP = "all", "staker", "fp"


def next_change_tip(rec: DelegationRecord, tip: int) -> int | None:
    """The lowest BTC tip above ``tip`` at which ``derive_state(rec, ·)`` may differ, or None (only a chain
    change can move it then). Thresholds of ``api.states.derive_state``: the unbonding timelock passing, the
    staking timelock entering its last ``unbonding_time`` blocks, and the staking timelock passing."""
    if rec.withdrawn_height is not None or (rec.slashed and rec.has_covenant_quorum):
        return None
    if rec.unbonding_height is not None:
        t = rec.unbonding_height + rec.unbonding_time - 1
        return t if t > tip else None
    if not rec.has_covenant_quorum or rec.start_height is None:
        return None
    end = rec.end_height if rec.end_height is not None else rec.start_height + rec.staking_time
    later = [t for t in (end - rec.unbonding_time, end - 1) if t > tip]
    return min(later) if later else None


def _fp_record(d: dict[str, Any]) -> FinalityProviderRecord:
    """A stored finality-provider row back to its record (fields unknown to this version are dropped)."""
    names = {f.name for f in dataclasses.fields(FinalityProviderRecord)}
    return FinalityProviderRecord(**{k: v for k, v in d.items() if k in names})


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


class StakingIndex:
    """The index database: opened (and migrated to the latest schema with Alembic) from a SQLAlchemy URL."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        kw: dict[str, Any] = {"pool_size": 16, "max_overflow": 48}  # one per API worker thread
        if url.startswith("sqlite"):
            kw["connect_args"] = {"check_same_thread": False}
        self.engine: Engine = create_engine(url, **kw)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        if migrate:
            self.migrate()

    @classmethod
    def sqlite(cls, path: str | Path) -> "StakingIndex":
        """An SQLite index file (created if missing)."""
        return cls(f"sqlite:///{Path(path)}")

    def migrate(self) -> None:
        """``alembic upgrade head`` on this database."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        """Dispose of the connection pool."""
        self.engine.dispose()

    # ------------------------------------------------------------------ small helpers
    @staticmethod
    def get_meta(conn: Connection, key: str, default: str | None = None) -> str | None:
        row = conn.execute(select(meta.c.value).where(meta.c.key == key)).first()
        return default if row is None else row[0]

    @staticmethod
    def set_meta(conn: Connection, values: dict[str, str]) -> None:
        for k, v in values.items():
            _upsert(conn, meta, ["key"], {"key": k, "value": v})


def _upsert(conn: Connection, table: Table, keys: list[str], values: dict[str, Any]) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE, in the dialect's own syntax (SQLite and PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    stmt = dialect_insert(table).values(**values)
    rest = {k: stmt.excluded[k] for k in values if k not in keys}
    conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=rest) if rest else
                 stmt.on_conflict_do_nothing(index_elements=keys))


# ---------------------------------------------------------------------------------------------- the feed
QueryFn = Callable[[str, dict[str, Any]], Any]


@dataclass
class ChainFeed:
    """What the indexer reads from the chain: smart queries to the registry and light client, and the chain
    height (the same query function the API's chain source uses)."""

    query: QueryFn
    registry: str
    light_client: str
    chain_height: Callable[[], int]
    list_finality_providers: Callable[[], Sequence[FinalityProviderRecord]] | None = None
    page: int = 500

    @classmethod
    def for_source(cls, source: Any) -> "ChainFeed":
        """The feed of a ``RegistrySource`` (REST, cosmpy or in-process ``ChainApp``)."""
        from api.explorer.reader import reader_for

        reader = reader_for(source)
        if reader is None:
            raise DataSourceError(f"{type(source).__name__} has no chain to index")
        return cls(source._query, source.registry_address, source.light_client_address,  # noqa: SLF001
                   reader.chain_height, source.list_finality_providers)

    def _q(self, contract: str, msg: dict[str, Any]) -> Any:
        try:
            return self.query(contract, msg)
        except DataSourceError:
            raise
        except Exception as exc:  # transport or contract errors
            raise DataSourceError(f"{next(iter(msg))} query failed: {exc}") from exc

    def changed_since(self, height: int) -> Iterable[dict[str, Any]]:
        """Registry delegations changed above chain height ``height`` (paged, bounded by the feed's size)."""
        cursor = None
        while True:
            body: dict[str, Any] = {"after_height": height, "limit": self.page}
            if cursor is not None:
                body["start_after"] = cursor
            reply = self._q(self.registry, {"delegations_updated": body})
            page = reply.get("delegations") or []
            yield from page
            cursor = reply.get("next")
            if cursor is None or not page:
                return

    def finality_providers(self) -> list[FinalityProviderRecord]:
        """Finality-provider records as the chain source maps them (with whatever it adds, e.g. voting power)."""
        if self.list_finality_providers is not None:
            return list(self.list_finality_providers())
        reply = self._q(self.registry, {"finality_providers": {}}) or {}
        return [finality_provider_from_json(d) for d in reply.get("finality_providers") or []]

    def params(self) -> list[dict[str, Any]]:
        return list((self._q(self.registry, {"params": {}}) or {}).get("params_versions") or [])

    def btc_tip(self) -> int | None:
        reply = self._q(self.light_client, {"tip": {}})
        h = reply.get("height") if isinstance(reply, dict) else None
        return None if h is None else int(h)


# ---------------------------------------------------------------------------------------------- indexer
@dataclass(frozen=True)
class IndexLag:
    """How far the index is behind the chain."""

    chain_height: int
    indexed_height: int
    synced_at: float

    @property
    def blocks(self) -> int:
        return max(0, self.chain_height - self.indexed_height)


class Indexer:
    """Keeps a :class:`StakingIndex` up to date from a :class:`ChainFeed` (see the module docstring)."""

    def __init__(self, index: StakingIndex, feed: ChainFeed) -> None:
        self.index = index
        self.feed = feed
        self.last_chain_height = 0
        self._lock = threading.Lock()
        self._on_sync: list[Callable[[], None]] = []

    def sync(self) -> int:
        """One incremental sync; returns the number of delegation rows written."""
        with self._lock:
            height = int(self.feed.chain_height())
            self.last_chain_height = height
            tip = self.feed.btc_tip()
            fps = self.feed.finality_providers()
            params = self.feed.params()
            with self.index.engine.begin() as conn:
                since = int(StakingIndex.get_meta(conn, "indexed_height", "0") or 0)
                old_tip_s = StakingIndex.get_meta(conn, "btc_tip")
                changed = list(self.feed.changed_since(since)) if height > since or since == 0 else []
                n = _apply(conn, fps, params, changed, tip, None if old_tip_s is None else int(old_tip_s))
                meta_values = {"indexed_height": str(max(height, since)), "synced_at": repr(time.time())}
                if tip is not None:
                    meta_values["btc_tip"] = str(tip)
                StakingIndex.set_meta(conn, meta_values)
        for fn in list(self._on_sync):
            fn()
        return n

    def on_sync(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` after every sync (e.g. to drop response caches)."""
        self._on_sync.append(fn)

    def lag(self) -> IndexLag:
        """Chain height (as of the last sync attempt or now) against the indexed height."""
        with self.index.engine.connect() as conn:
            indexed = int(StakingIndex.get_meta(conn, "indexed_height", "0") or 0)
            synced = float(StakingIndex.get_meta(conn, "synced_at", "0") or 0)
        return IndexLag(max(self.last_chain_height, indexed), indexed, synced)

    def run(self, stop: threading.Event, interval: float = 0.5, on_error: Callable[[Exception], None] | None = None
            ) -> None:
        """Sync every ``interval`` seconds until ``stop`` is set (errors are reported and retried)."""
        while not stop.is_set():
            try:
                self.sync()
            except Exception as exc:  # noqa: BLE001 - the chain may be down; retry next interval
                if on_error is not None:
                    on_error(exc)
            stop.wait(interval)

    def start(self, interval: float = 0.5) -> "threading.Event":
        """Run in a daemon thread; returns the event that stops it."""
        stop = threading.Event()
        threading.Thread(target=self.run, args=(stop, interval), name="btcmesh-api-indexer", daemon=True).start()
        return stop


def _counter_rows(rec: DelegationRecord, state: str, sign: int) -> list[tuple[tuple[str, str, str], int]]:
    out = []
    for scope, key in [(ALL, ""), (STAKER, rec.staker_pk_hex)] + [(FP, fp) for fp in rec.fp_pks_hex]:
        out.append(((scope, key, f"{state}_count"), sign))
        out.append(((scope, key, f"{state}_tvl"), sign * rec.staking_amount))
    out.append(((STAKER, rec.staker_pk_hex, "total_count"), sign))
    out.append(((ALL, "", "total_count"), sign))
    return out


def _apply(conn: Connection, fps: list[FinalityProviderRecord], params: list[dict], changed: list[dict],
           tip: int | None,
           old_tip: int | None) -> int:
    """Write one sync's worth of changes and the counter deltas they imply."""
    # finality providers and params: a handful of rows, rewritten
    old_slashed = {r[0] for r in conn.execute(select(finality_providers.c.btc_pk).where(finality_providers.c.slashed))}
    new_slashed: set[str] = set()
    for pos, rec in enumerate(fps):
        if rec.slashed:
            new_slashed.add(rec.btc_pk_hex)
        _upsert(conn, finality_providers, ["btc_pk"], {"btc_pk": rec.btc_pk_hex, "position": pos,
                                                        "slashed": rec.slashed,
                                                        "record": json.dumps(dataclasses.asdict(rec))})
    for i, p in enumerate(params):
        _upsert(conn, params_versions, ["version"], {"version": int(p.get("version", i)), "record": json.dumps(p)})
    tip_now = tip if tip is not None else (old_tip or 0)

    touched: dict[str, dict | None] = {d["staking_tx_hash"].lower(): d for d in changed}
    # rows whose state depends on what moved: newly slashed FPs, the BTC tip
    newly = new_slashed - old_slashed
    if newly:
        for (h,) in conn.execute(select(delegation_fps.c.staking_tx_hash).where(delegation_fps.c.fp_pk.in_(newly))):
            touched.setdefault(h, None)
    if old_tip is not None and tip_now < old_tip:  # the BTC tip went back (reorg): re-derive everything
        for (h,) in conn.execute(select(delegations.c.staking_tx_hash)):
            touched.setdefault(h, None)
    else:
        for (h,) in conn.execute(select(delegations.c.staking_tx_hash).where(
                and_(delegations.c.next_change_tip.is_not(None), delegations.c.next_change_tip <= tip_now))):
            touched.setdefault(h, None)
    if not touched:
        return 0
    old_rows = {}
    keys = list(touched)
    for start in range(0, len(keys), 500):
        for row in conn.execute(select(delegations).where(delegations.c.staking_tx_hash.in_(keys[start:start + 500]))):
            old_rows[row.staking_tx_hash] = row
    deltas: dict[tuple[str, str, str], int] = {}
    for h, raw in touched.items():
        old = old_rows.get(h)
        if raw is None:
            if old is None:
                continue
            raw = json.loads(old.record)
        rec = delegation_from_json(raw)
        if not rec.slashed and new_slashed.intersection(rec.fp_pks_hex):
            rec = replace(rec, slashed=True)  # the chain may only flag the FP (as StakingService does)
        state = derive_state(rec, tip_now).state.value
        if old is not None:
            old_rec = delegation_from_json(json.loads(old.record))
            for k, v in _counter_rows(old_rec, old.state, -1):
                deltas[k] = deltas.get(k, 0) + v
        for k, v in _counter_rows(rec, state, +1):
            deltas[k] = deltas.get(k, 0) + v
        _upsert(conn, delegations, ["staking_tx_hash"], {
            "staking_tx_hash": h, "staker_pk": rec.staker_pk_hex, "amount": rec.staking_amount, "state": state,
            "next_change_tip": next_change_tip(rec, tip_now),
            "updated_height": int(raw.get("updated_height", old.updated_height if old is not None else 0)),
            "record": json.dumps(raw, sort_keys=True)})
        if old is None:
            for fp in rec.fp_pks_hex:
                _upsert(conn, delegation_fps, ["fp_pk", "staking_tx_hash"], {"fp_pk": fp, "staking_tx_hash": h})
    _write_counters(conn, deltas)
    return len(touched)


def _write_counters(conn: Connection, deltas: dict[tuple[str, str, str], int]) -> None:
    """Apply counter deltas; keep the distinct-staker counters (``stakers``, ``active_stakers``)."""
    deltas = {k: v for k, v in deltas.items() if v}
    if not deltas:
        return
    current: dict[tuple[str, str, str], int] = {}
    keys = list(deltas)
    for start in range(0, len(keys), 300):
        part = keys[start:start + 300]
        for s, k, n, v in conn.execute(select(counters).where(
                tuple_(counters.c.scope, counters.c.key, counters.c.name).in_(part))):
            current[(s, k, n)] = v
    extra: dict[tuple[str, str, str], int] = {}
    for (scope, key, name), d in deltas.items():
        if scope != STAKER or name not in ("total_count", "ACTIVE_count"):
            continue
        before = current.get((scope, key, name), 0)
        after = before + d
        agg = (ALL, "", "stakers" if name == "total_count" else "active_stakers")
        if before <= 0 < after:
            extra[agg] = extra.get(agg, 0) + 1
        elif after <= 0 < before:
            extra[agg] = extra.get(agg, 0) - 1
    if extra:
        for (s, k, n, v) in conn.execute(select(counters).where(
                tuple_(counters.c.scope, counters.c.key, counters.c.name).in_(list(extra)))):
            current[(s, k, n)] = v
        for k, v in extra.items():
            deltas[k] = deltas.get(k, 0) + v
    for (scope, key, name), d in deltas.items():
        value = current.get((scope, key, name), 0) + d
        if value == 0:
            conn.execute(delete(counters).where(and_(counters.c.scope == scope, counters.c.key == key,
                                                     counters.c.name == name)))
        else:
            _upsert(conn, counters, ["scope", "key", "name"], {"scope": scope, "key": key, "name": name,
                                                                "value": value})


# ---------------------------------------------------------------------------------------------- reads
class IndexedSource:
    """A ``StakingDataSource`` over the index (plus the fast paths ``StakingService`` looks for).

    ``upstream`` is the chain source the index follows (the explorer keeps reading chain-only figures
    through it). ``btc_tip_height`` is the tip the states were derived at, so pages, states and counters
    agree with each other."""

    indexed = True

    def __init__(self, index: StakingIndex, indexer: Indexer | None = None, upstream: Any = None) -> None:
        self.index = index
        self.indexer = indexer
        self.upstream = upstream
        self._cache: dict[Any, Any] = {}
        self._stop: threading.Event | None = None
        if indexer is not None:
            indexer.on_sync(self._cache.clear)

    @classmethod
    def follow(cls, upstream: Any, url: str, *, interval: float | None = 0.5) -> "IndexedSource":
        """Index ``upstream`` (a ``RegistrySource``) into the database at ``url``: one sync now, then (with an
        ``interval``) a background thread that keeps syncing."""
        index = StakingIndex(url)
        indexer = Indexer(index, ChainFeed.for_source(upstream))
        indexer.sync()
        src = cls(index, indexer, upstream)
        if interval is not None:
            src._stop = indexer.start(interval)
        return src

    def close(self) -> None:
        """Stop the background indexer and close the database."""
        if self._stop is not None:
            self._stop.set()
        self.index.close()

    def _cached(self, key: Any, fn: Callable[[], Any]) -> Any:
        """Computed once per sync of our own indexer (which clears the cache); a reader without one (another
        process writes) keeps values for ``READER_TTL_S``."""
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is None or (self.indexer is None and now - hit[1] > READER_TTL_S):
            hit = self._cache[key] = (fn(), now)
        return hit[0]

    # --- StakingDataSource
    def get_delegation(self, staking_tx_hash_hex: str) -> DelegationRecord | None:
        with self.index.engine.connect() as conn:
            row = conn.execute(select(delegations.c.record).where(
                delegations.c.staking_tx_hash == staking_tx_hash_hex.lower())).first()
        return None if row is None else delegation_from_json(json.loads(row[0]))

    def list_delegations(self, staker_pk_hex: str | None = None) -> Sequence[DelegationRecord]:
        q = select(delegations.c.record).order_by(delegations.c.staking_tx_hash)
        if staker_pk_hex is not None:
            q = q.where(delegations.c.staker_pk == staker_pk_hex.lower())
        with self.index.engine.connect() as conn:
            return [delegation_from_json(json.loads(r[0])) for r in conn.execute(q)]

    def list_finality_providers(self) -> Sequence[FinalityProviderRecord]:
        def load() -> list[FinalityProviderRecord]:
            with self.index.engine.connect() as conn:
                rows = conn.execute(select(finality_providers.c.record).order_by(finality_providers.c.position))
                return [_fp_record(json.loads(r[0])) for r in rows]
        return list(self._cached("fps", load))

    def params(self) -> Sequence[ParamsRecord]:
        def load() -> list[ParamsRecord]:
            with self.index.engine.connect() as conn:
                rows = conn.execute(select(params_versions).order_by(params_versions.c.version))
                return [params_from_json(json.loads(r.record), r.version) for r in rows]
        return list(self._cached("params", load))

    def btc_tip_height(self) -> int:
        def load() -> int:
            with self.index.engine.connect() as conn:
                v = StakingIndex.get_meta(conn, "btc_tip")
            if v is None:
                raise DataSourceError("the index has not synced a BTC tip yet")
            return int(v)
        return self._cached("tip", load)

    # --- fast paths
    def slashed_fp_pks(self) -> set[str]:
        """Finality providers flagged slashed."""
        return {fp.btc_pk_hex for fp in self.list_finality_providers() if fp.slashed}

    def page_delegations(self, staker_pk_hex: str, after: str, states: Sequence[DelegationState] | None,
                         limit: int) -> tuple[list[DelegationRecord], bool]:
        """One page of a staker's delegations by staking tx hash after ``after``; (records, more)."""
        q = select(delegations.c.record).where(delegations.c.staker_pk == staker_pk_hex.lower())
        if after:
            q = q.where(delegations.c.staking_tx_hash > after)
        if states:
            q = q.where(delegations.c.state.in_([s.value for s in states]))
        q = q.order_by(delegations.c.staking_tx_hash).limit(limit + 1)
        with self.index.engine.connect() as conn:
            rows = [delegation_from_json(json.loads(r[0])) for r in conn.execute(q)]
        return rows[:limit], len(rows) > limit

    def counters(self, scope: str, key: str = "") -> dict[str, int]:
        """Counters of one scope/key (``all``/'' , ``staker``/pk, ``fp``/pk): ``{STATE_count, STATE_tvl, ...}``."""
        with self.index.engine.connect() as conn:
            rows = conn.execute(select(counters.c.name, counters.c.value).where(
                and_(counters.c.scope == scope, counters.c.key == key)))
            return {n: int(v) for n, v in rows}

    def fp_counters(self) -> dict[str, dict[str, int]]:
        """``{fp_pk: counters}`` for every finality provider with delegations."""
        def load() -> dict[str, dict[str, int]]:
            out: dict[str, dict[str, int]] = {}
            with self.index.engine.connect() as conn:
                for k, n, v in conn.execute(select(counters.c.key, counters.c.name, counters.c.value).where(
                        counters.c.scope == FP)):
                    out.setdefault(k, {})[n] = int(v)
            return out
        return self._cached("fp_counters", load)

    def cached(self, key: Any, fn: Callable[[], Any]) -> Any:
        """A value computed once per sync (dropped when the index changes)."""
        return self._cached(("response", key), fn)

    def last_finalized_height(self) -> int | None:
        """The upstream's last finalized chain height (once per sync), when it has one."""
        fn = getattr(self.upstream, "last_finalized_height", None)
        if not callable(fn):
            return None
        return self._cached("finalized", lambda: (fn(),))[0]

    def index_lag(self) -> IndexLag | None:
        """Chain height vs indexed height (None without an indexer)."""
        return None if self.indexer is None else self.indexer.lag()


def install_index_metrics(app: Any, source: IndexedSource) -> None:
    """``GET /metrics`` (Prometheus text): ``btcmesh_api_index_lag_blocks``, ``btcmesh_api_indexed_height`` and
    ``btcmesh_api_index_synced_age_seconds``, read from the index at scrape time."""
    from fastapi import Response
    from prometheus_client import CollectorRegistry, Gauge, generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    registry = CollectorRegistry()
    lag_g = Gauge("btcmesh_api_index_lag_blocks", "Chain blocks the API index is behind the chain", registry=registry)
    height_g = Gauge("btcmesh_api_indexed_height", "Chain height the API index has synced to", registry=registry)
    age_g = Gauge("btcmesh_api_index_synced_age_seconds", "Seconds since the index last synced", registry=registry)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        lag = source.index_lag()
        if lag is not None:
            lag_g.set(lag.blocks)
            height_g.set(lag.indexed_height)
            age_g.set(max(0.0, time.time() - lag.synced_at) if lag.synced_at else float("nan"))
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
