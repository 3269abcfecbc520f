"""Issue 13: the mesh module stores vault users/liens, external stakes and the adapter's records per key
(``m/mesh/contract/<role>/<map>/<account>``, ``m/mesh/adapter/delegations/<hash>``), so a delegation's stored
mesh state and what one status change writes do not grow with the number of delegations."""

from __future__ import annotations

import pytest

from btc_staking.keys import xonly_from_secret
from mesh_chain_helpers import Chain, Key, StubRegistry

pytestmark = pytest.mark.timeout(120)

ADMIN, FP_OP, RELAYER = (Key.from_seed(i) for i in range(3))
FP = xonly_from_secret((0xA1).to_bytes(32, "big")).hex()
PRE = "m/mesh/"


def h(n: int) -> str:
    return f"{n:064x}"


def set_status(chain: Chain, n: int, status: str) -> None:
    d = {"staking_tx_hash": h(n), "staker_btc_pk": "5a" * 32, "fp_btc_pk_list": [FP], "staking_value": 100_000 + n}
    res = chain.execute(RELAYER, "btc_staking", {"set_status": {"delegation": d, "status": status}}, 5)
    assert res.code == 0, res.log


def activate(chain: Chain, n: int) -> None:
    for status in ("PENDING", "VERIFIED", "ACTIVE"):
        set_status(chain, n, status)


def mesh_items(chain: Chain) -> dict[str, str]:
    return {k: v for k, v in chain.app.root.data.items() if k.startswith(PRE)}


def per_delegation_bytes(items: dict[str, str], n: int) -> int:
    """Bytes (keys + values) of the mesh entries whose key names delegation ``n`` (record, index, account)."""
    return sum(len(k) + len(v) for k, v in items.items() if h(n) in k)


def chain_with(n_active: int) -> Chain:
    chain = Chain.start([ADMIN, FP_OP, RELAYER], {"mesh": {"admin": ADMIN.address, "unbonding_period": 1000}},
                        modules=[StubRegistry()])
    chain.ok(FP_OP, "btc_staking", {"create_finality_provider": {"btc_pk": FP, "validator": "valA"}})
    for n in range(1, n_active + 1):
        activate(chain, n)
    return chain


def changed_keys(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def test_stored_mesh_state_per_delegation_is_bounded_and_a_status_change_writes_what_it_touches() -> None:
    sizes = (8, 32)
    seen = {}
    for n in sizes:
        chain = chain_with(n)
        items = mesh_items(chain)
        shared = sum(len(k) + len(v) for k, v in items.items() if not any(h(i) in k for i in range(1, n + 1)))
        per = [per_delegation_bytes(items, i) for i in range(1, n + 1)]
        # one more activation, then its unbonding: which mesh keys do they write?
        before = mesh_items(chain)
        activate(chain, n + 1)
        act = changed_keys(before, mesh_items(chain))
        before = mesh_items(chain)
        set_status(chain, n + 1, "UNBONDING")
        unb = changed_keys(before, mesh_items(chain))
        assert chain.query("mesh", {"adapter": {"delegation": {"staking_tx_hash": h(n + 1)}}})["delegation"][
            "status"] == "UNBONDING"
        seen[n] = {"shared": shared, "per": per, "act": act, "unb": unb}
    small, big = (seen[n] for n in sizes)
    # a delegation's own entries are the same size whatever the number of delegations (values differ by n only)
    assert max(big["per"]) <= max(small["per"]) + 8 and min(big["per"]) >= min(small["per"]) - 8
    assert 0 < max(big["per"]) < 2500
    # the shared entries (contract configs, totals, bank) hold no per-delegation list: 4x the delegations,
    # at most a few more digits
    assert big["shared"] <= small["shared"] + 64, (small["shared"], big["shared"])
    # an activation / an unbonding writes the same number of mesh keys at both sizes, and only keys of its
    # own delegation besides the shared ones
    for what in ("act", "unb"):
        assert len(big[what]) == len(small[what]), (what, sorted(small[what]), sorted(big[what]))
    for n in sizes:
        for k in seen[n]["act"] | seen[n]["unb"]:
            assert not any(h(i) in k for i in range(1, n + 1)), k


def recomputed(items: dict[str, str]) -> tuple[dict, dict[str, set[str]]]:
    """(totals, status index) recomputed from every stored record."""
    import json
    staked: dict[str, int] = {}
    status: dict[str, int] = {}
    by_status: dict[str, set[str]] = {}
    for k, v in items.items():
        if k.startswith(PRE + "adapter/delegations/"):
            rec = json.loads(v)
            status[rec["status"]] = status.get(rec["status"], 0) + 1
            by_status.setdefault(rec["status"], set()).add(rec["staking_tx_hash"])
            if rec["status"] == "ACTIVE":
                staked[rec["validator"]] = staked.get(rec["validator"], 0) + rec["staked_sat"]
    return {"staked": {v: n for v, n in sorted(staked.items()) if n}, "status": dict(sorted(status.items()))}, by_status


def test_adapter_totals_and_status_index_equal_a_recomputation_through_a_lifecycle() -> None:
    import json
    chain = chain_with(6)
    failing = {"staking_tx_hash": h(99), "staker_btc_pk": "5a" * 32, "fp_btc_pk_list": [FP],
               "staking_value": "not a number"}

    def fails() -> None:
        before = mesh_items(chain)
        res = chain.execute(RELAYER, "btc_staking", {"set_status": {"delegation": failing, "status": "ACTIVE"}})
        assert res.code != 0 and "staking_value" in res.log, res.log
        assert mesh_items(chain) == before

    steps = [lambda: set_status(chain, 2, "UNBONDING"), lambda: set_status(chain, 3, "WITHDRAWN"),
             lambda: chain.block(dt=600), lambda: chain.block(dt=600),  # unbonding period (1000 s) matures
             lambda: set_status(chain, 2, "WITHDRAWN"), lambda: activate(chain, 7),
             fails]  # a failing status change writes nothing
    for step in steps:
        step()
        items = mesh_items(chain)
        totals, by_status = recomputed(items)
        assert json.loads(items[PRE + "adapter_totals"]) == totals
        stored = {}
        for k in items:
            if k.startswith(PRE + "adapter/status/"):
                s, hh = k[len(PRE + "adapter/status/"):].split("/")
                stored.setdefault(s, set()).add(hh)
        assert stored == by_status
        vs = chain.query("mesh", {"adapter": {"validator_virtual_stake": {"validator": "valA"}}})
        assert int(vs["staked_sat"]) == totals["staked"].get("valA", 0)
    assert totals["status"] == {"ACTIVE": 5, "WITHDRAWN": 2}, totals
