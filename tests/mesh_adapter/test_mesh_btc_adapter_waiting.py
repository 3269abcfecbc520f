"""BTC adapter, WAITING records: a delegation re-proven after a BTC reorg reuses its collateral and is
staked again once its earlier unbond has matured; one that turns ACTIVE while its validator is jailed
bonds collateral and is staked on unjail; the consumer delegates nothing to a removed (jailed)
validator until it is added back."""

from __future__ import annotations

import pytest

from mesh_adapter.errors import InvalidTransition
from test_mesh_btc_adapter import EXT, FP_A, STAKER_2, VAULT, VS, deploy, ev, h, stake, vault_acct, virtual


def jail(app, ad, validator: str = "valA") -> None:
    app.advance(10)
    app.execute(ad.config.authority, EXT, {"handle_slashing": {
        "validator": validator, "height": app.block().height, "time": app.block().time, "tombstone": False}})


def unjail(app, ad, validator: str = "valA") -> None:
    app.advance(10)
    app.execute(ad.config.authority, EXT, {"test_unjail_validator": {"valoper": validator,
                                                                     "height": app.block().height}})


def test_reproven_before_maturity_waits_and_reuses_the_collateral():
    app, ad = deploy()
    ad.on_delegation_active(ev(1))
    ad.on_delegation_unbonding(h(1))  # REORGED: stake left through the unstake path
    app.advance(400)
    out = ad.on_delegation_reproven(h(1))
    assert (out["status"], out["staked_sat"], out["pending_sat"], out["virtual_stake"]) == ("WAITING", 0, 1_000_000, 0)
    assert out["collateral_sat"] == 1_000_000 and out["proofs"] == 2
    assert app.balance(VAULT, "sat") == 1_000_000  # no second mint
    assert ad.on_delegation_reproven(h(1))["status"] == "WAITING"  # idempotent
    app.advance(599)
    assert ad.process_matured() == [] and virtual(app, "valA") == 0
    app.advance(1)  # t = 1000: the earlier unbond matures, its lien goes, the same collateral is staked
    done = ad.process_matured()
    assert [(d["staking_tx_hash"], d["status"], d["staked_sat"], d["virtual_stake"]) for d in done] == \
        [(h(1), "ACTIVE", 1_000_000, 1_500_000)]
    assert virtual(app, "valA") == 1_500_000 and app.balance(VAULT, "sat") == 1_000_000
    assert ad.lien(h(1)) == {"amount": {"low": "1000000", "high": "1000000"}, "slashable": "0.1"}
    assert vault_acct(app, ad, 1)["free"] == {"low": "0", "high": "0"}


def test_reproven_after_maturity_is_staked_at_once_and_only_from_unbonding():
    app, ad = deploy()
    ad.on_delegation_active(ev(1))
    assert ad.on_delegation_reproven(h(1))["status"] == "ACTIVE"  # never left: nothing to do
    ad.on_delegation_unbonding(h(1))
    app.advance(1000)
    out = ad.on_delegation_reproven(h(1))
    assert (out["status"], out["staked_sat"], out["pending_sat"]) == ("ACTIVE", 1_000_000, 0)
    assert stake(app, ad, 1)["stake"] == {"low": "1000000", "high": "1000000"}
    ad.on_delegation_withdrawn(h(1))
    app.advance(1000)
    ad.process_matured()
    with pytest.raises(InvalidTransition):
        ad.on_delegation_reproven(h(1))


def test_active_while_jailed_waits_then_stakes_on_unjail():
    app, ad = deploy()
    ad.on_delegation_active(ev(1))
    jail(app, ad)
    app.execute(ad.config.authority, VS, {"handle_valset_update": {"removals": ["valA"]}})
    assert virtual(app, "valA") == 0  # consumer: the jailed validator gets no delegation
    assert app.query(VS, {"bond_requests": {}})["requests"] == {"valA": "1500000"}  # requests kept
    out = ad.on_delegation_active(ev(2, STAKER_2, value=400_000))
    assert (out["status"], out["collateral_sat"], out["staked_sat"]) == ("WAITING", 400_000, 0)
    assert ad.stake_waiting("valA") == [] and ad.process_matured() == []  # still jailed
    unjail(app, ad)
    app.execute(ad.config.authority, VS, {"handle_valset_update": {"additions": ["valA"]}})
    assert virtual(app, "valA") == 1_500_000
    staked = ad.stake_waiting("valA")
    assert [(d["staking_tx_hash"], d["status"], d["virtual_stake"]) for d in staked] == [(h(2), "ACTIVE", 600_000)]
    assert virtual(app, "valA") == 2_100_000 and ad.validator_virtual_stake("valA") == 2_100_000


def test_waiting_delegation_slashed_keeps_the_btc_left():
    app, ad = deploy()
    ad.on_delegation_active(ev(1))
    jail(app, ad)
    ad.on_delegation_active(ev(2, STAKER_2, value=400_000))
    unjail(app, ad)  # unjailed but not yet staked: a double sign lands first
    report = ad.on_finality_provider_slashed(FP_A, app.block().height, btc_left={h(2): 359_000})
    assert report["delegations"][h(2)]["collateral_after"] == 359_000
    rec = ad.delegation(h(2))
    assert (rec["status"], rec["collateral_sat"], rec["slashed_sat"]) == ("SLASHED", 359_000, 41_000)
    assert ad.stake_waiting("valA") == []  # never staked on a tombstoned validator
