"""Slashing propagation: the five scenarios of upstream docs/ibc/Slashing.md (ported in the
vault multitests as ``cross_slash_scenario_1..5``), with upstream integer rounding.

Upstream keeps ``total_slashable`` as an integer sum of ``floor(amount * ratio)`` per stake
operation, so where the document shows fractions (scenarios 3-5) the contract - and this model -
hold the floored values; those spots are called out below.
"""

from __future__ import annotations


from mesh_helpers import (
    CROSS, LOCAL, OSMO, VAULT, activate, add_cross, bond, claim, details, setup, stake_local, stake_of,
    stake_remote, vr,
)

USER = "user1"


def _slash(app, validator, cross=CROSS):
    return app.execute("test", cross, {"handle_slashing": {"validator": validator, "height": 1, "time": 0}})


def _local_stake(app):
    return int(app.query(LOCAL, {"stake": {"owner": USER}})["amount"])


def test_scenario_1_free_collateral_covers_slash():
    app, _, _ = setup(dsign="0.1", local_ratio="0.1", auto_commit=True)
    activate(app, CROSS, "validator1", "validator2")
    bond(app, USER, 200)
    stake_local(app, USER, 190)
    stake_remote(app, USER, 100, "validator1")
    stake_remote(app, USER, 50, "validator2")
    d = details(app, USER)
    assert (d["max_lien"], d["total_slashable"], d["free"]) == (vr(190), vr(34), vr(10))

    _slash(app, "validator1")  # slashing amount 100 * 0.1 = 10

    d = details(app, USER)
    assert d["bonded"] == "190"
    assert d["max_lien"] == vr(190)
    assert d["total_slashable"] == vr(33)
    assert d["free"] == vr(0)
    assert claim(app, USER, CROSS) == vr(140) and claim(app, USER, LOCAL) == vr(190)
    assert stake_of(app, USER, "validator1") == vr(90) and stake_of(app, USER, "validator2") == vr(50)
    assert _local_stake(app) == 190  # no propagation


def test_scenario_2_no_free_collateral_lien_adjustment():
    app, _, _ = setup(dsign="0.1", local_ratio="0.1", auto_commit=True)
    activate(app, CROSS, "validator1")
    bond(app, USER, 200)
    stake_local(app, USER, 200)
    stake_remote(app, USER, 200, "validator1")
    d = details(app, USER)
    assert (d["max_lien"], d["total_slashable"], d["free"]) == (vr(200), vr(40), vr(0))

    _slash(app, "validator1")  # 20

    d = details(app, USER)
    assert d["bonded"] == "180"
    assert d["max_lien"] == vr(180)
    assert d["total_slashable"] == vr(36)
    assert d["free"] == vr(0)
    assert claim(app, USER, LOCAL) == vr(180)  # 20 unbonded / burned from native staking
    assert claim(app, USER, CROSS) == vr(180)
    assert stake_of(app, USER, "validator1") == vr(180)
    assert _local_stake(app) == 180
    assert app.balance(LOCAL, OSMO) == 180  # burned, not returned


def test_scenario_3_some_free_collateral():
    app, _, _ = setup(dsign="0.1", local_ratio="0.1", auto_commit=True)
    activate(app, CROSS, "validator1")
    bond(app, USER, 200)
    stake_local(app, USER, 190)
    stake_remote(app, USER, 150, "validator1")
    d = details(app, USER)
    assert (d["max_lien"], d["total_slashable"], d["free"]) == (vr(190), vr(34), vr(10))

    _slash(app, "validator1")  # 15

    d = details(app, USER)
    assert d["bonded"] == "185"
    assert d["max_lien"] == vr(185)
    # doc: 18.5 + 13.5 = 32; integer contract: 34 - floor(1.5) - floor(0.5) = 33
    assert d["total_slashable"] == vr(33)
    assert d["free"] == vr(0)
    assert claim(app, USER, LOCAL) == vr(185) and claim(app, USER, CROSS) == vr(135)
    assert stake_of(app, USER, "validator1") == vr(135)
    assert _local_stake(app) == 185


def test_scenario_4_more_delegations():
    app, _, _ = setup(dsign="0.1", local_ratio="0.1", auto_commit=True)
    cross2 = add_cross(app, "external-staking-2", "0.1").address
    activate(app, CROSS, "validator1", "validator2")
    activate(app, cross2, "validator3", "validator4")
    bond(app, USER, 200)
    stake_local(app, USER, 190)
    stake_remote(app, USER, 140, "validator1")
    stake_remote(app, USER, 40, "validator2")
    stake_remote(app, USER, 100, "validator3", cross2)
    stake_remote(app, USER, 88, "validator4", cross2)
    d = details(app, USER)
    # doc: 55.8; integer: 19 + (14 + 4) + (10 + floor(8.8)) = 55
    assert (d["max_lien"], d["total_slashable"], d["free"]) == (vr(190), vr(55), vr(10))

    _slash(app, "validator1")  # 14

    d = details(app, USER)
    assert d["bonded"] == "186"
    assert d["max_lien"] == vr(186)
    assert d["total_slashable"] == vr(54)  # doc: 53.8
    assert d["free"] == vr(0)
    assert claim(app, USER, LOCAL) == vr(186)
    assert claim(app, USER, CROSS) == vr(166)
    assert claim(app, USER, cross2) == vr(186)
    assert stake_of(app, USER, "validator1") == vr(126)
    assert stake_of(app, USER, "validator2") == vr(40)
    assert stake_of(app, USER, "validator3", cross2) == vr(99)  # proportional (even) burn
    assert stake_of(app, USER, "validator4", cross2) == vr(87)
    assert _local_stake(app) == 186


def test_scenario_5_total_slashable_greater_than_max_lien():
    app, _, _ = setup(dsign="0.5", local_ratio="0.1", auto_commit=True)
    cross2 = add_cross(app, "external-staking-2", "0.5").address
    cross3 = add_cross(app, "external-staking-3", "0.5").address
    activate(app, CROSS, "validator1")
    activate(app, cross2, "validator2")
    activate(app, cross3, "validator3")
    bond(app, USER, 200)
    stake_local(app, USER, 100)
    stake_remote(app, USER, 180, "validator1")
    stake_remote(app, USER, 80, "validator2", cross2)
    stake_remote(app, USER, 100, "validator3", cross3)
    d = details(app, USER)
    assert (d["max_lien"], d["total_slashable"], d["free"]) == (vr(180), vr(190), vr(10))

    _slash(app, "validator1")  # 180 * 0.5 = 90

    # every lien is cut by ceil(35 / 1.6) = 22 (doc: 21.875 with fractions)
    d = details(app, USER)
    assert d["bonded"] == "110"
    assert claim(app, USER, LOCAL) == vr(78)
    assert claim(app, USER, CROSS) == vr(68)
    assert claim(app, USER, cross2) == vr(58)
    assert claim(app, USER, cross3) == vr(78)
    assert d["max_lien"] == vr(78)
    assert d["total_slashable"] == vr(110)  # 145 - floor(2.2) - 3 * 11
    assert d["free"] == vr(0)
    assert stake_of(app, USER, "validator1") == vr(68)
    assert stake_of(app, USER, "validator2", cross2) == vr(58)
    assert stake_of(app, USER, "validator3", cross3) == vr(78)
    assert _local_stake(app) == 78


def test_honest_validator_stakers_untouched():
    app, _, _ = setup(dsign="0.1", local_ratio=None, auto_commit=True)
    activate(app, CROSS, "evil", "honest")
    bond(app, "a", 100)
    bond(app, "b", 100)
    stake_remote(app, "a", 100, "evil")
    stake_remote(app, "b", 100, "honest")
    before = details(app, "b")
    _slash(app, "evil")
    assert details(app, "b") == before
    assert stake_of(app, "b", "honest") == vr(100)
    assert details(app, "a")["bonded"] == "90" and stake_of(app, "a", "evil") == vr(90)


def test_cross_slash_from_non_lienholder_rejected_atomically():
    import pytest
    from mesh_adapter.errors import UnknownLienholder
    app, _, _ = setup(local_ratio=None, auto_commit=True)
    activate(app, CROSS, "v")
    bond(app, "a", 100)
    bond(app, "b", 100)
    stake_remote(app, "a", 50, "v")
    with pytest.raises(UnknownLienholder):  # second entry has no lien: nothing is applied
        app.execute(CROSS, VAULT, {"cross_slash": {"slashes": [{"user": "a", "slash": "5"},
                                                               {"user": "b", "slash": "5"}], "validator": "v"}})
    assert details(app, "a")["bonded"] == "100" and claim(app, "a") == vr(50)
