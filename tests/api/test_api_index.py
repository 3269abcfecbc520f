"""The staking API over its own index (``api.index``), differentially: at every step of a real chain's life
(``LocalChain`` with the registry and light client, cosmpy-signed txs, real staking txs and PoW headers) every
``/v2`` route answers exactly what the API answers reading the chain directly, on SQLite and on PostgreSQL
(a server the test starts from Debian's packages). Also: the index catches up after a restart with a gap
(reading only what changed), stats come from counters, and the lag is reported (network-info, /metrics)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from api import create_app
from api.chain_source import ChainAppSource
from api.index import ChainFeed, IndexedSource, Indexer, StakingIndex
from api_chain_helpers import UNBONDING_TIME, Delegation, FinalityProviderKey, MiniBtc, StakingChain, small_params
from btcmesh_testkit.postgres import PostgresServer, find_pg_bin

pytestmark = pytest.mark.timeout(240)

P = small_params()
ALPHA, BETA = FinalityProviderKey("idx-alpha"), FinalityProviderKey("idx-beta")
LONG = 500


def _deleg(label: str, staker: str, fp: FinalityProviderKey, value: int, time: int = LONG) -> Delegation:
    return Delegation(staker, [fp.pk], value, time, P, funding_label=label)


def _get(client: TestClient, path: str, **params) -> dict:
    resp = client.get(path, params=params)
    assert resp.status_code == 200, (path, params, resp.text)
    return resp.json()


def _pages(client: TestClient, staker: str, **params) -> list[dict]:
    items, key = [], ""
    for _ in range(100):
        body = _get(client, "/v2/delegations", staker_pk_hex=staker, limit=2, pagination_key=key, **params)
        items.extend(body["data"])
        key = body["pagination"]["next_key"]
        if not key:
            return items
    raise AssertionError("pagination did not end")


def _snapshot(client: TestClient, ds: list[Delegation]) -> dict:
    stakers = sorted({d.staker_pk.hex() for d in ds})
    snap: dict = {path: _get(client, path) for path in ("/v2/finality-providers", "/v2/stats", "/v2/params")}
    info = _get(client, "/v2/network-info")["data"]
    snap["network-info"] = {k: v for k, v in info.items() if k not in ("index_lag_blocks", "indexed_height")}
    for d in ds:
        h = d.staking_tx_hash
        resp = client.get("/v2/delegation", params={"staking_tx_hash_hex": h})
        snap[f"delegation/{h}"] = (resp.status_code, resp.json())
    for s in stakers:
        snap[f"staker-stats/{s}"] = _get(client, "/v2/staker/stats", staker_pk_hex=s)
        snap[f"pages/{s}"] = _pages(client, s)
        for state in ("ACTIVE", "PENDING", "WITHDRAWABLE", "UNBONDING"):
            snap[f"pages/{s}/{state}"] = _pages(client, s, state=state)
    return snap


class Life:
    """The chain, its delegations, and a direct-reading API client to compare with."""

    def __init__(self) -> None:
        self.btc = MiniBtc()
        self.chain = StakingChain(self.btc, [P])
        self.direct = TestClient(create_app(ChainAppSource(self.chain.chain.app)))
        self.ds = [_deleg("i1", "A", ALPHA, 300_000), _deleg("i2", "A", BETA, 200_000),
                   _deleg("i3", "B", ALPHA, 150_000), _deleg("i4", "B", BETA, 90_000),
                   _deleg("i5", "C", ALPHA, 110_000, time=P.min_staking_time_blocks)]

    def source(self) -> ChainAppSource:
        return ChainAppSource(self.chain.chain.app)

    def close(self) -> None:
        self.chain.close()


@pytest.fixture
def life() -> Iterator[Life]:
    w = Life()
    try:
        yield w
    finally:
        w.close()


def _follow(life: Life, url: str) -> tuple[IndexedSource, TestClient, int]:
    """Open (or reopen) the index at ``url`` over the chain; one sync (its row count is returned); the test
    syncs by hand afterwards (no background thread)."""
    upstream = life.source()
    indexer = Indexer(StakingIndex(url), ChainFeed.for_source(upstream))
    written = indexer.sync()
    src = IndexedSource(indexer.index, indexer, upstream)
    return src, TestClient(create_app(src)), written


def _same(life: Life, src: IndexedSource, client: TestClient) -> None:
    src.indexer.sync()
    assert _snapshot(client, life.ds) == _snapshot(life.direct, life.ds)
    lag = _get(client, "/v2/network-info")["data"]
    assert lag["indexed_height"] >= 1 and lag["index_lag_blocks"] <= 2  # the chain keeps producing blocks


def _life_of_a_chain(life: Life, url: str) -> None:
    c, ds = life.chain, life.ds
    c.mine(n=3)
    c.register_fp(ALPHA, "fp-alpha", "0.05")
    c.register_fp(BETA, "fp-beta", "0.10")
    src, client, written = _follow(life, url)
    assert written == 0
    _same(life, src, client)
    c.create(ds[0], proof=True)                        # PENDING with proof
    c.create(ds[1], proof=False)                       # PENDING, then VERIFIED
    c.covenant_quorum(ds[1])
    _same(life, src, client)
    c.covenant_quorum(ds[0])                           # ACTIVE
    c.add_proof(ds[1])                                 # ACTIVE
    _same(life, src, client)

    # restart with a gap: the index is closed while the chain goes on; reopened, it catches up and reads
    # only what changed (the three new delegations and the ones whose state the tip moved)
    src.close()
    for d in ds[2:]:
        c.create(d, proof=False)
        c.covenant_quorum(d)
        c.add_proof(d)
    src, client, written = _follow(life, url)
    assert written == 3                                # the three new ones; the two indexed ones did not change
    _same(life, src, client)

    # tip moves alone change public states (the short delegation: UNBONDING(TIMELOCK) then WITHDRAWABLE)
    c.mine(n=P.min_staking_time_blocks)
    _same(life, src, client)
    # early unbonding, then withdrawal after the unbonding timelock
    c.unbond(ds[3])
    _same(life, src, client)
    c.mine(n=UNBONDING_TIME)
    _same(life, src, client)
    c.withdraw(ds[3], after_unbonding=True)
    _same(life, src, client)
    # BETA double-signs: the finality module slashes it, its delegations become SLASHED
    assert c.slash_fp(BETA)["slashed"] is True
    _same(life, src, client)

    # counters agree with the delegations themselves
    stats = _get(client, "/v2/stats")["data"]
    active = [x for x in _snapshot(client, ds).values()
              if isinstance(x, tuple) and x[0] == 200 and x[1]["data"]["state"] == "ACTIVE"]
    assert stats["active_delegations"] == len(active)
    assert stats["active_tvl"] == sum(x[1]["data"]["delegation_staking"]["staking_amount"] for x in active)
    assert stats["total_delegations"] == len(ds) and stats["total_stakers"] == 3
    assert _get(client, "/v2/delegation", staking_tx_hash_hex=ds[1].staking_tx_hash)["data"]["state"] == "SLASHED"

    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "btcmesh_api_index_lag_blocks" in metrics.text
    assert "btcmesh_api_indexed_height" in metrics.text
    src.close()


def test_index_on_sqlite_answers_like_the_chain(life, tmp_path):
    _life_of_a_chain(life, f"sqlite:///{tmp_path / 'index.sqlite'}")
    # the schema came from the Alembic migration
    idx = StakingIndex(f"sqlite:///{tmp_path / 'index.sqlite'}", migrate=False)
    with idx.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0001"
    idx.close()


def test_index_on_postgresql_answers_like_the_chain(life, tool_path):
    bin_dir = find_pg_bin()
    if bin_dir is None:
        tool_path("initdb")  # fails under BTCMESH_REQUIRE_DAEMONS=1 / CI, skips otherwise
    with PostgresServer(bin_dir) as pg:
        _life_of_a_chain(life, pg.url)


def test_api_served_over_rest_with_an_index(life, tmp_path):
    """``app_for_url(..., index_url=...)`` (what ``btcmesh api --index-url`` serves): the index follows the chain
    through its REST server in a background thread."""
    import time

    from api.server import app_for_url

    c = life.chain
    c.mine(n=3)
    c.register_fp(ALPHA, "fp-alpha", "0.05")
    c.create(life.ds[0], proof=True)
    client = TestClient(app_for_url(c.chain.rest.url, timeout=10, index_url=f"sqlite:///{tmp_path / 'i.sqlite'}"))
    info = _get(client, "/v2/network-info")["data"]
    assert info["indexed_height"] >= 1 and 0 <= info["index_lag_blocks"] < 100  # blocks every 50 ms meanwhile
    h = life.ds[0].staking_tx_hash
    assert _get(client, "/v2/delegation", staking_tx_hash_hex=h)["data"]["state"] == "PENDING"
    c.covenant_quorum(life.ds[0])                     # the background indexer picks the change up
    deadline = time.monotonic() + 30
    while _get(client, "/v2/delegation", staking_tx_hash_hex=h)["data"]["state"] != "ACTIVE":
        assert time.monotonic() < deadline, "the index did not follow the chain"
        time.sleep(0.2)
