"""Ports of upstream external-staking multitests (staking, unstaking) and validator-state rules."""

from __future__ import annotations

import pytest

from mesh_adapter.errors import (
    AlreadyTombstoned, InvalidConfig, NotEnoughStake, Unauthorized, UnexpectedDenom, ValidatorNotActive,
)
from mesh_adapter.external_staking import ExternalStaking
from mesh_adapter.numeric import coin

from mesh_helpers import (
    CROSS, OSMO, STAR, VAULT, activate, bond, claim, setup, stake_of, stake_remote, unstake, vr,
)


def test_instantiate():
    app, _, _ = setup()
    assert app.query(CROSS, {"stakes": {"user": "user1"}}) == {"stakes": []}
    assert app.query(CROSS, {"max_slash": {}}) == {"slash_ratio_dsign": "0.1", "slash_ratio_offline": "0"}
    assert app.query(CROSS, {"config": {}}) == {
        "denom": OSMO, "rewards_denom": STAR, "vault": VAULT, "unbonding_period": 100,
        "slash_ratio": {"double_sign": "0.1", "offline": "0"}}


def test_instantiate_rejects_ratio_above_one():
    app, _, _ = setup()
    with pytest.raises(InvalidConfig):
        app.instantiate(ExternalStaking, "x", {"denom": OSMO, "rewards_denom": STAR, "vault": VAULT,
                                               "unbonding_period": 1,
                                               "slash_ratio": {"double_sign": "1.1", "offline": "0"}})
    assert "x" not in app.contracts


def test_staking():
    users, validators = ["user1", "user2"], ["validator1", "validator2"]
    app, _, _ = setup()
    activate(app, CROSS, *validators)
    for u in users:
        bond(app, u, 300)
    stake_remote(app, users[0], 100, validators[0])
    stake_remote(app, users[0], 100, validators[1])
    stake_remote(app, users[0], 100, validators[0])
    stake_remote(app, users[1], 200, validators[1])
    stake_remote(app, users[1], 100, validators[0])

    # all tokens only on the vault contract
    assert app.balance(users[0], OSMO) == 0 and app.balance(users[1], OSMO) == 0
    assert app.balance(VAULT, OSMO) == 600 and app.balance(CROSS, OSMO) == 0

    assert stake_of(app, users[0], validators[0]) == vr(200)
    assert stake_of(app, users[0], validators[1]) == vr(100)
    assert stake_of(app, users[1], validators[0]) == vr(100)
    assert stake_of(app, users[1], validators[1]) == vr(200)
    assert app.query(CROSS, {"stakes": {"user": users[0]}})["stakes"] == [
        {"owner": users[0], "validator": validators[0], "stake": vr(200)},
        {"owner": users[0], "validator": validators[1], "stake": vr(100)}]
    assert app.query(CROSS, {"stakes": {"user": users[1]}})["stakes"] == [
        {"owner": users[1], "validator": validators[0], "stake": vr(100)},
        {"owner": users[1], "validator": validators[1], "stake": vr(200)}]


def test_staking_on_unknown_or_inactive_validator_fails():
    app, _, _ = setup()
    bond(app, "u", 100)
    with pytest.raises(ValidatorNotActive):
        stake_remote(app, "u", 10, "unknown")
    activate(app, CROSS, "v")
    app.execute("test", CROSS, {"test_jail_validator": {"valoper": "v", "height": 5, "time": 0}})
    with pytest.raises(ValidatorNotActive):
        stake_remote(app, "u", 10, "v")
    # whole transaction reverted: no lien, no pending tx in the vault
    assert app.query(VAULT, {"account": {"account": "u"}})["free"] == vr(100)
    assert app.query(VAULT, {"all_pending_txs_desc": {}})["txs"] == []
    app.execute("test", CROSS, {"test_unjail_validator": {"valoper": "v", "height": 6, "time": 0}})
    stake_remote(app, "u", 10, "v")
    assert stake_of(app, "u", "v") == vr(10)


def test_unstaking():
    """Upstream ``unstaking``: pending unbonds are released only after the unbonding period."""
    users, validators = ["user1", "user2"], ["validator1", "validator2"]
    app, _, _ = setup(unbond_period=100)
    activate(app, CROSS, *validators)
    for u in users:
        bond(app, u, 300)
    stake_remote(app, users[0], 200, validators[0])
    stake_remote(app, users[0], 100, validators[1])
    stake_remote(app, users[1], 300, validators[0])

    unstake(app, users[0], 20, validators[0])
    unstake(app, users[0], 30, validators[0])
    unstake(app, users[1], 60, validators[0])

    with pytest.raises(NotEnoughStake) as err:
        unstake(app, users[0], 110, validators[1])
    assert err.value.available == 100
    with pytest.raises(NotEnoughStake) as err:
        unstake(app, users[1], 300, validators[0])
    assert err.value.available == 240
    with pytest.raises(NotEnoughStake) as err:
        unstake(app, users[1], 1, validators[1])
    assert err.value.available == 0

    assert stake_of(app, users[0], validators[0]) == vr(150)
    assert stake_of(app, users[0], validators[1]) == vr(100)
    assert stake_of(app, users[1], validators[0]) == vr(240)
    assert stake_of(app, users[1], validators[1]) == vr(0)
    # but not on the vault side
    assert claim(app, users[0]) == vr(300)
    assert claim(app, users[1]) == vr(300)

    for u in users:  # immediate withdraw releases nothing
        app.execute(u, CROSS, {"withdraw_unbonded": {}})
    assert claim(app, users[0]) == vr(300) and claim(app, users[1]) == vr(300)

    app.advance(50)
    for u in users:
        app.execute(u, CROSS, {"withdraw_unbonded": {}})
    assert claim(app, users[0]) == vr(300) and claim(app, users[1]) == vr(300)

    unstake(app, users[0], 70, validators[0])
    unstake(app, users[0], 90, validators[1])
    assert stake_of(app, users[0], validators[0]) == vr(80)
    assert stake_of(app, users[0], validators[1]) == vr(10)
    assert stake_of(app, users[1], validators[0]) == vr(240)
    assert stake_of(app, users[1], validators[1]) == vr(0)

    app.advance(50)  # first batch released, second not yet
    for u in users:
        app.execute(u, CROSS, {"withdraw_unbonded": {}})
    assert claim(app, users[0]) == vr(250)
    assert claim(app, users[1]) == vr(240)

    app.advance(60)  # nothing released automatically
    assert claim(app, users[0]) == vr(250)
    assert claim(app, users[1]) == vr(240)
    for u in users:
        app.execute(u, CROSS, {"withdraw_unbonded": {}})
    assert claim(app, users[0]) == vr(90)
    assert claim(app, users[1]) == vr(240)
    assert app.query(CROSS, {"pending_unbonds": {"user": users[0]}}) == {"pending": []}


def test_unstake_wrong_denom_and_unauthorized_entry_points():
    app, _, _ = setup()
    activate(app, CROSS, "v")
    bond(app, "u", 100)
    stake_remote(app, "u", 50, "v")
    with pytest.raises(UnexpectedDenom):
        app.execute("u", CROSS, {"unstake": {"validator": "v", "amount": coin(1, STAR)}})
    with pytest.raises(Unauthorized):  # only the vault sends virtual stake
        app.execute("u", CROSS, {"receive_virtual_stake": {
            "owner": "u", "amount": coin(1, OSMO), "tx_id": 1, "msg": {"validator": "v"}}})
    with pytest.raises(Unauthorized):
        app.execute("u", CROSS, {"burn_virtual_stake": {"owner": "u", "amount": coin(1, OSMO)}})


def test_authority_restricts_ibc_substitute_entry_points():
    from mesh_adapter.framework import MeshApp
    app = MeshApp()
    app.instantiate(ExternalStaking, "c", {"denom": OSMO, "rewards_denom": STAR, "vault": VAULT,
                                           "unbonding_period": 1, "authority": "relayer",
                                           "slash_ratio": {"double_sign": "0.1", "offline": "0"}})
    with pytest.raises(Unauthorized):
        app.execute("mallory", "c", {"test_set_active_validator": {"validator": {"valoper": "v"}}})
    app.execute("relayer", "c", {"test_set_active_validator": {"validator": {"valoper": "v"}}})
    with pytest.raises(Unauthorized):
        app.execute("mallory", "c", {"handle_slashing": {"validator": "v", "height": 1, "time": 0}})
    assert app.query("c", {"list_remote_validators": {}}) == {"validators": ["v"]}


def test_slashing_cuts_stake_and_pending_unbonds_and_tombstones():
    """10% double-sign slash: stake.high and still-locked pending unbonds lose 10% (floored)."""
    app, _, _ = setup(unbond_period=100, local_ratio=None)
    activate(app, CROSS, "v1", "v2")
    bond(app, "alice", 1000)
    bond(app, "bob", 1000)
    stake_remote(app, "alice", 500, "v1")
    stake_remote(app, "alice", 300, "v2")
    stake_remote(app, "bob", 405, "v1")
    unstake(app, "alice", 100, "v1")  # pending, release_at = 100
    app.advance(10)

    resp = app.execute("test", CROSS, {"handle_slashing": {"validator": "v1", "height": 1, "time": 5}})
    assert resp.attr("users") == "alice,bob"
    # alice: stake 400 -> 360 (slash 40), pending 100 -> 90 (slash 10); bob: 405 -> 365 (slash 40)
    assert stake_of(app, "alice", "v1") == vr(360)
    assert app.query(CROSS, {"pending_unbonds": {"user": "alice"}})["pending"] == [
        {"validator": "v1", "amount": "90", "release_at": 100}]
    assert stake_of(app, "bob", "v1") == vr(365)
    assert stake_of(app, "alice", "v2") == vr(300)  # other validator untouched
    assert app.query(CROSS, {"total_stake": {"validator": "v1"}}) == {"total_stake": "725"}
    # vault: collateral cut by the slash, lien cut by the same amount
    a = app.query(VAULT, {"account_details": {"account": "alice"}})
    assert a["bonded"] == "950" and claim(app, "alice") == vr(750)
    b = app.query(VAULT, {"account_details": {"account": "bob"}})
    assert b["bonded"] == "960" and claim(app, "bob") == vr(365)
    # validator tombstoned: no new stake, no double slashing
    assert app.query(CROSS, {"validator": {"valoper": "v1"}})["state"] == "tombstoned"
    assert app.query(CROSS, {"list_remote_validators": {}}) == {"validators": ["v2"]}
    with pytest.raises(ValidatorNotActive):
        stake_remote(app, "bob", 1, "v1")
    with pytest.raises(AlreadyTombstoned):
        app.execute("test", CROSS, {"handle_slashing": {"validator": "v1", "height": 1, "time": 5}})
    # the slashed pending unbond is released (90) after the period; lien follows
    app.advance(90)
    app.execute("alice", CROSS, {"withdraw_unbonded": {}})
    assert claim(app, "alice") == vr(660)


def test_slashing_requires_active_at_height():
    app, _, _ = setup()
    app.execute("test", CROSS, {"test_set_active_validator": {"validator": {"valoper": "v", "start_height": 10}}})
    with pytest.raises(AlreadyTombstoned):
        app.execute("test", CROSS, {"handle_slashing": {"validator": "v", "height": 9, "time": 0}})
    # jailed now, but active at the infraction height: still slashable (offline ratio 0 here)
    app.execute("test", CROSS, {"test_jail_validator": {"valoper": "v", "height": 20, "time": 0}})
    app.execute("test", CROSS, {"handle_slashing": {"validator": "v", "height": 15, "time": 0}})
    assert app.query(CROSS, {"validator": {"valoper": "v"}})["state"] == "tombstoned"
