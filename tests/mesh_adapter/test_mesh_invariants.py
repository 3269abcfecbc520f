"""Seeded random walks over the adapter and contracts, checking the mesh invariants after every step."""

from __future__ import annotations

import random

import pytest

from mesh_adapter.deploy import BtcMeshParams, deploy_btc_mesh
from mesh_adapter.errors import MeshError
from mesh_adapter.framework import MeshApp

FPS = {f"{i:02x}" * 32: f"val{i}" for i in (1, 2, 3)}
VAULT, EXT, VS = "mesh-vault", "mesh-external-staking", "mesh-virtual-staking"


def check_invariants(app: MeshApp, ad) -> None:
    total_bonded = 0
    for rec in ad.records.values():
        acct = app.query(VAULT, {"account_details": {"account": rec["account"]}})
        bonded = int(acct["bonded"])
        total_bonded += bonded
        used = max(int(acct["max_lien"]["high"]), int(acct["total_slashable"]["high"]))
        assert bonded >= used, rec  # the max-slash invariant
        stake = app.query(EXT, {"stake": {"user": rec["account"], "validator": rec["validator"]}})
        staked = int(stake["stake"]["high"])
        pending = sum(int(p["amount"]) for p in stake["pending_unbonds"])
        lien = ad.lien(rec["staking_tx_hash"])
        lien_amount = int(lien["amount"]["high"]) if lien else 0
        assert lien_amount == staked + pending, rec  # lien == stake + still-unreleased unbonds
        assert int(acct["total_slashable"]["high"]) <= lien_amount  # floor(x * 0.1) sums
        assert rec["collateral_sat"] == bonded and rec["staked_sat"] == staked
        assert bonded <= rec["value_sat"]
        if rec["status"] == "WITHDRAWN":
            assert bonded == 0 and lien is None
    assert app.balance(VAULT, "sat") == total_bonded  # collateral tokens == BTC still locked
    # consumer virtual stake never exceeds the converted provider stake per validator; a tombstoned
    # validator has none left (the consumer's epoch force-unbonds it, whatever the provider holds)
    tombstoned = {v["validator"] for v in app.query(VS, {"inactive_validators": {}})["validators"] if v["tombstoned"]}
    for val in FPS.values():
        provider = int(app.query(EXT, {"total_stake": {"validator": val}})["total_stake"])
        req = int(app.query(VS, {"bond_requests": {}})["requests"].get(val, "0"))
        if val in tombstoned:
            assert req == 0
            continue
        assert req <= ad.virtual_of(provider) + len(ad.records)  # per-op flooring slack only
        assert req >= ad.virtual_of(provider) - 2 * len(ad.records) - 2


@pytest.mark.parametrize("seed", range(int(__import__("os").environ.get("MESH_WALKS", "6"))))
def test_random_walk(seed):
    rng = random.Random(seed)
    app = MeshApp()
    ad = deploy_btc_mesh(app, BtcMeshParams(price="3", discount="0.3", slashing_rate="0.1", unbonding_period=50,
                                            fp_to_validator=dict(FPS),
                                            max_virtual_per_validator=rng.choice([None, 5_000_000]),
                                            unbond_slashed=rng.choice([True, False])))
    fps = list(FPS)
    n = 0
    slashed: set[str] = set()
    for step in range(120):
        op = rng.random()
        try:
            if op < 0.4:
                n += 1
                ad.on_delegation_active({"staking_tx_hash": f"{n:064x}", "staker_btc_pk": f"{rng.randrange(1, 5):02x}" * 32,
                                         "fp_btc_pk": rng.choice(fps), "value_sat": rng.randrange(1, 3_000_000)})
            elif op < 0.6 and ad.records:
                ad.on_delegation_unbonding(rng.choice(sorted(ad.records)))
            elif op < 0.75 and ad.records:
                ad.on_delegation_withdrawn(rng.choice(sorted(ad.records)))
            elif op < 0.8:
                fp = rng.choice(fps)
                ad.on_finality_provider_slashed(fp, height=step)
                slashed.add(fp)
            else:
                app.advance(rng.randrange(1, 40))
                ad.process_matured()
        except MeshError:
            pass  # refused events (tombstoned FP, withdrawn delegation, ...) must leave no trace
        check_invariants(app, ad)
    app.advance(1000)
    ad.process_matured()
    for h in sorted(ad.records):
        ad.on_delegation_withdrawn(h)
    check_invariants(app, ad)
    app.advance(50)  # withdrawals of still-staked delegations finish after the unbonding period
    ad.process_matured()
    check_invariants(app, ad)
    assert app.balance(VAULT, "sat") == 0
    assert all(r["status"] == "WITHDRAWN" for r in ad.records.values())
