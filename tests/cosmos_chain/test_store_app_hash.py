"""The incremental app hash (cosmos_chain.store): it depends only on the set of (key, value) pairs, never
on write order, overlay nesting or whether the tree was built incrementally or from scratch after a
restart; computing it over an overlay leaves the committed tree untouched; and chains fed the same
blocks (continuously, across a restart from SQLite, and replayed on a fresh app) agree at every height.
The CometBFT tests (test_comet_single/multi) check the same hash across real validators."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from cosmos_chain.app import ChainApp
from cosmos_chain.store import CacheKV, RootKV, state_hash
from mesh_chain_helpers import Chain, Key, StubRegistry

pytestmark = pytest.mark.timeout(120)


def _random_state(rng: random.Random, n: int) -> dict[str, str]:
    return {f"m/x/{rng.randrange(10**6):06d}/{i}": "v" * rng.randrange(0, 50) + str(i) for i in range(n)}


def test_hash_depends_only_on_content_not_on_write_order_or_overlays() -> None:
    rng = random.Random(13)
    state = _random_state(rng, 3000)
    scratch = RootKV(state)
    ordered = RootKV()
    keys = list(state)
    rng.shuffle(keys)
    for k in keys:  # one by one, with noise that is later undone
        ordered.set(k, "noise")
        ordered.set("m/tmp/" + k, "1")
    assert state_hash(ordered) != state_hash(scratch)
    for k in keys:
        ordered.set(k, state[k])
        ordered.delete("m/tmp/" + k)
    assert state_hash(ordered) == state_hash(scratch)

    # nested overlays: the hash over the overlay equals the committed hash after write, and computing it
    # does not change the root's hash
    before = state_hash(scratch)
    outer = CacheKV(scratch)
    inner = CacheKV(outer)
    outer.set(keys[0], "changed")
    inner.set(keys[0], "changed again")  # the innermost write wins
    inner.delete(keys[1])
    inner.set("m/new/key", "1")
    h = state_hash(inner)
    assert state_hash(scratch) == before
    inner.write()
    assert state_hash(outer) == h
    outer.write()
    assert state_hash(scratch) == h
    assert state_hash(RootKV(dict(scratch.data))) == h  # a restart rebuilds the same tree


def test_hash_changes_with_any_key_or_value_and_empty_state_is_stable() -> None:
    empty = state_hash(RootKV())
    a = RootKV({"k": "v"})
    assert state_hash(a) != empty
    assert state_hash(RootKV({"k": "w"})) != state_hash(a)
    assert state_hash(RootKV({"k2": "v"})) != state_hash(a)
    a.delete("k")
    assert state_hash(a) == empty


def test_prefix_and_range_reads_see_overlays_and_deletes_in_order() -> None:
    root = RootKV({f"p/{i:03d}": str(i) for i in range(20)} | {"q/1": "x", "o/9": "y"})
    c = CacheKV(root)
    c.delete("p/003")
    c.set("p/0025", "new")
    assert [k for k, _ in c.iter_prefix("p/00")] == ["p/000", "p/001", "p/002", "p/0025", "p/004", "p/005",
                                                     "p/006", "p/007", "p/008", "p/009"]
    assert [k for k, _ in c.iter_range("p/002", "p/005")] == ["p/002", "p/0025", "p/004"]
    c.write()
    assert [k for k, _ in root.iter_range("p/002", "p/005")] == ["p/002", "p/0025", "p/004"]
    root.set("p/0026", "z")
    root.delete("p/004")
    assert [k for k, _ in root.iter_prefix("p/002")] == ["p/002", "p/0025", "p/0026"]


ADMIN, OP, RELAYER = (Key.from_seed(130 + i) for i in range(3))
MESH_GENESIS = {"admin": ADMIN.address, "price": "2", "discount": "0.25", "unbonding_period": 1000}


def _status_msg(n: int, fp: str, status: str) -> dict:
    return {"set_status": {"delegation": {"staking_tx_hash": f"{n:064x}", "staker_btc_pk": "5c" * 32,
                                          "fp_btc_pk_list": [fp], "staking_value": 100_000 + n}, "status": status}}


def test_chains_fed_the_same_blocks_agree_across_restart_and_replay(tmp_path: Path) -> None:
    home = tmp_path / "node"
    chain = Chain.start([ADMIN, OP, RELAYER], {"mesh": MESH_GENESIS}, modules=[StubRegistry()], home=home)
    fp = "ab" * 32
    chain.ok(OP, "btc_staking", {"create_finality_provider": {"btc_pk": fp, "validator": "valA"}})
    for n in range(1, 7):
        chain.ok(RELAYER, "btc_staking", _status_msg(n, fp, "ACTIVE"))
    # restart from SQLite in the middle; the rebuilt tree must give the persisted hash
    info = chain.app.info()
    chain.app.close()
    chain.app = ChainApp(chain.app.chain_id, home, modules=[StubRegistry()])
    assert chain.app.info() == info
    assert state_hash(chain.app.root) == info[1]
    for n in range(1, 4):
        chain.ok(RELAYER, "btc_staking", _status_msg(n, fp, "UNBONDING"))
    chain.block()
    ours = [bytes.fromhex(chain.app.get_block(b.height)["result_app_hash"]) for b in chain.blocks]
    assert chain.replay(modules=[StubRegistry()]) == ours
    assert len(set(ours)) == len(ours)  # every block changed state (txs, per-block records)
    assert state_hash(RootKV(dict(chain.app.root.data))) == chain.app.last_app_hash
