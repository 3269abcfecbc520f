"""Ports of upstream vault multitests (contracts/provider/vault/src/multitest.rs) with the same numbers."""

from __future__ import annotations

import pytest

from mesh_adapter.errors import (
    ClaimsLocked, InsufficientBalance, InvalidMessage, NoClaim, PaymentError, UnexpectedDenom,
    UnknownLienholder, WrongTypeTx,
)
from mesh_adapter.numeric import coin

from mesh_helpers import (
    CROSS, LOCAL, OSMO, VAULT, account, activate, bond, claim, details, last_cross_tx, setup,
    stake_local, stake_remote, unstake, vr,
)


def test_instantiation():
    app, vault, _ = setup()
    assert app.query(VAULT, {"config": {}}) == {"denom": OSMO, "local_staking": LOCAL}
    assert app.query(VAULT, {"all_accounts": {"with_collateral": False}}) == {"accounts": []}


def test_bonding():
    app, _, _ = setup()
    user = "user1"
    app.mint(user, [coin(300, OSMO)])
    assert account(app, user) == {"denom": OSMO, "bonded": "0", "free": vr(0)}
    assert app.query(VAULT, {"account_claims": {"account": user}}) == {"claims": []}

    app.execute(user, VAULT, {"bond": {}}, [coin(100, OSMO)])
    assert account(app, user) == {"denom": OSMO, "bonded": "100", "free": vr(100)}
    assert app.balance(user, OSMO) == 200 and app.balance(VAULT, OSMO) == 100

    app.execute(user, VAULT, {"bond": {}}, [coin(150, OSMO)])
    assert account(app, user) == {"denom": OSMO, "bonded": "250", "free": vr(250)}
    assert app.balance(user, OSMO) == 50 and app.balance(VAULT, OSMO) == 250

    app.execute(user, VAULT, {"unbond": {"amount": coin(200, OSMO)}})
    assert account(app, user) == {"denom": OSMO, "bonded": "50", "free": vr(50)}
    assert app.balance(user, OSMO) == 250 and app.balance(VAULT, OSMO) == 50

    app.execute(user, VAULT, {"unbond": {"amount": coin(20, OSMO)}})
    assert account(app, user) == {"denom": OSMO, "bonded": "30", "free": vr(30)}
    assert app.balance(user, OSMO) == 270 and app.balance(VAULT, OSMO) == 30

    with pytest.raises(ClaimsLocked) as err:
        app.execute(user, VAULT, {"unbond": {"amount": coin(100, OSMO)}})
    assert err.value.free == vr(30)


def test_bond_and_unbond_bad_input():
    app, _, _ = setup()
    app.mint("u", [coin(10, OSMO), coin(10, "other")])
    with pytest.raises(PaymentError):
        app.execute("u", VAULT, {"bond": {}})
    with pytest.raises(PaymentError):
        app.execute("u", VAULT, {"bond": {}}, [coin(10, "other")])
    bond(app, "u", 5)
    with pytest.raises(UnexpectedDenom):
        app.execute("u", VAULT, {"unbond": {"amount": coin(1, "other")}})
    with pytest.raises(InvalidMessage):
        app.execute("u", VAULT, {"unbond": {"amount": {"denom": OSMO, "amount": "-1"}}})
    with pytest.raises(InvalidMessage):
        app.execute("u", VAULT, {"unbond": {}, "bond": {}})
    with pytest.raises(InvalidMessage):
        app.execute("u", VAULT, {"no_such_msg": {}})
    with pytest.raises(PaymentError):  # unbond is non-payable
        app.execute("u", VAULT, {"unbond": {"amount": coin(1, OSMO)}}, [coin(1, OSMO)])
    assert account(app, "u")["bonded"] == "5"


def test_stake_local():
    app, _, _ = setup()
    user = "user1"
    bond(app, user, 300)
    assert app.balance(VAULT, OSMO) == 300 and app.balance(LOCAL, OSMO) == 0

    stake_local(app, user, 100)
    assert account(app, user) == {"denom": OSMO, "bonded": "300", "free": vr(200)}
    assert app.query(VAULT, {"account_claims": {"account": user}})["claims"] == [
        {"lienholder": LOCAL, "amount": vr(100)}]
    assert app.balance(VAULT, OSMO) == 200 and app.balance(LOCAL, OSMO) == 100

    stake_local(app, user, 150)
    assert account(app, user)["free"] == vr(50)
    assert claim(app, user, LOCAL) == vr(250)
    assert app.balance(VAULT, OSMO) == 50 and app.balance(LOCAL, OSMO) == 250

    with pytest.raises(InsufficientBalance):  # cannot stake over collateral
        stake_local(app, user, 150)
    with pytest.raises(ClaimsLocked) as err:  # cannot unbond used collateral
        app.execute(user, VAULT, {"unbond": {"amount": coin(100, OSMO)}})
    assert err.value.free == vr(50)

    app.execute("owner", LOCAL, {"unstake": {"owner": user, "amount": coin(50, OSMO)}})
    assert account(app, user)["free"] == vr(100)
    assert claim(app, user, LOCAL) == vr(200)
    assert app.balance(VAULT, OSMO) == 100 and app.balance(LOCAL, OSMO) == 200

    app.execute("owner", LOCAL, {"unstake": {"owner": user, "amount": coin(100, OSMO)}})
    assert account(app, user)["free"] == vr(200)
    assert claim(app, user, LOCAL) == vr(100)
    assert app.balance(VAULT, OSMO) == 200 and app.balance(LOCAL, OSMO) == 100

    with pytest.raises(InsufficientBalance):  # cannot unstake over the lien
        app.execute("owner", LOCAL, {"unstake": {"owner": user, "amount": coin(200, OSMO)}})


def test_stake_cross():
    """Upstream ``stake_cross``: value ranges while in flight, unbonding period, lien release."""
    app, _, cross = setup(unbond_period=100)
    user, validator = "user1", "validator"
    activate(app, CROSS, validator)
    bond(app, user, 300)

    stake_remote(app, user, 100, validator, commit=False)
    assert account(app, user) == {"denom": OSMO, "bonded": "300", "free": vr(200, 300)}
    app.execute("test", CROSS, {"test_commit_stake": {"tx_id": last_cross_tx(app)}})
    assert account(app, user)["free"] == vr(200)
    assert app.query(VAULT, {"account_claims": {"account": user}})["claims"] == [
        {"lienholder": CROSS, "amount": vr(100)}]
    assert app.balance(VAULT, OSMO) == 300 and app.balance(CROSS, OSMO) == 0

    stake_remote(app, user, 150, validator, commit=False)
    assert account(app, user)["free"] == vr(50, 200)
    app.execute("test", CROSS, {"test_commit_stake": {"tx_id": last_cross_tx(app)}})
    assert account(app, user)["free"] == vr(50)
    assert claim(app, user) == vr(250)

    with pytest.raises(InsufficientBalance):
        stake_remote(app, user, 150, validator)
    assert account(app, user)["free"] == vr(50)
    with pytest.raises(ClaimsLocked):
        app.execute(user, VAULT, {"unbond": {"amount": coin(100, OSMO)}})

    # Unstake does not free collateral on the vault right away
    unstake(app, user, 50, validator, commit=False)
    assert account(app, user)["free"] == vr(50)
    assert claim(app, user) == vr(250)

    app.advance(100)
    app.execute("test", CROSS, {"test_commit_unstake": {"tx_id": last_cross_tx(app)}})
    app.advance(99)  # no tokens withdrawn before the unbonding period is over
    app.execute(user, CROSS, {"withdraw_unbonded": {}})
    assert account(app, user)["free"] == vr(50)

    app.advance(1)
    app.execute(user, CROSS, {"withdraw_unbonded": {}})
    assert account(app, user)["free"] == vr(100)
    assert claim(app, user) == vr(200)
    assert app.balance(VAULT, OSMO) == 300 and app.balance(CROSS, OSMO) == 0

    unstake(app, user, 100, validator)
    assert account(app, user)["free"] == vr(100)
    assert claim(app, user) == vr(200)

    # cannot release over the lien (vault rejects, whole tx reverts)
    with pytest.raises(Exception):
        app.execute(CROSS, VAULT, {"release_cross_stake": {"owner": user, "amount": coin(300, OSMO)}})
    assert claim(app, user) == vr(200)


def test_stake_cross_txs():
    """Upstream ``stake_cross_txs``: several in-flight txs, commit out of order, ranges reported."""
    app, _, _ = setup()
    user, user2, validator = "user1", "user2", "validator"
    activate(app, CROSS, validator)
    bond(app, user, 300)
    bond(app, user2, 500)
    assert app.balance(VAULT, OSMO) == 800
    assert app.query(VAULT, {"all_pending_txs_desc": {}})["txs"] == []
    assert len(app.query(VAULT, {"all_accounts": {}})["accounts"]) == 2

    first = int(stake_remote(app, user, 100, validator, commit=False).attr("tx_id"))
    assert len(app.query(VAULT, {"all_pending_txs_desc": {}})["txs"]) == 1
    second = int(stake_remote(app, user, 50, validator, commit=False).attr("tx_id"))
    last = int(stake_remote(app, user2, 100, validator, commit=False).attr("tx_id"))
    assert len(app.query(VAULT, {"all_pending_txs_desc": {}})["txs"]) == 3

    app.execute("test", CROSS, {"test_commit_stake": {"tx_id": last}})
    txs = app.query(VAULT, {"all_pending_txs_desc": {}})["txs"]
    assert [t["in_flight_staking"]["id"] for t in txs] == [second, first]
    assert account(app, user) == {"denom": OSMO, "bonded": "300", "free": vr(150, 300)}
    assert app.query(VAULT, {"account_claims": {"account": user}})["claims"] == [
        {"lienholder": CROSS, "amount": vr(0, 150)}]
    assert app.query(VAULT, {"all_accounts": {}})["accounts"] == [
        {"user": user, "account": {"denom": OSMO, "bonded": "300", "free": vr(150, 300)}},
        {"user": user2, "account": {"denom": OSMO, "bonded": "500", "free": vr(400)}},
    ]

    # only the lien holder may commit a tx
    with pytest.raises(WrongTypeTx):
        app.execute("someone", VAULT, {"commit_tx": {"tx_id": first}})
    app.execute("test", CROSS, {"test_commit_stake": {"tx_id": first}})
    app.execute("test", CROSS, {"test_rollback_stake": {"tx_id": second}})
    assert app.query(VAULT, {"all_pending_txs_desc": {}})["txs"] == []
    assert account(app, user)["free"] == vr(200)
    assert claim(app, user) == vr(100)
    assert app.query(CROSS, {"stake": {"user": user, "validator": validator}})["stake"] == vr(100)


def test_rollback_removes_empty_lien():
    app, _, _ = setup()
    activate(app, CROSS, "v")
    bond(app, "u", 100)
    stake_remote(app, "u", 60, "v", commit=False)
    app.execute("test", CROSS, {"test_rollback_stake": {"tx_id": last_cross_tx(app)}})
    with pytest.raises(NoClaim):
        app.query(VAULT, {"claim": {"account": "u", "lienholder": CROSS}})
    assert details(app, "u")["max_lien"] == vr(0) and details(app, "u")["total_slashable"] == vr(0)


def test_max_lien_and_total_slashable_invariant():
    """free = collateral - max(max_lien, total_slashable) (upstream UserInfo::free_collateral)."""
    from mesh_helpers import add_cross
    app, _, _ = setup(dsign="0.5", local_ratio=None, auto_commit=True)
    add_cross(app, "cross2", "0.5")
    add_cross(app, "cross3", "0.5")
    for c in (CROSS, "cross2", "cross3"):
        activate(app, c, "v")
    bond(app, "u", 100)
    stake_remote(app, "u", 100, "v", CROSS)
    stake_remote(app, "u", 100, "v", "cross2")  # max lien 100, slashable 50+50
    assert details(app, "u") == {"denom": OSMO, "bonded": "100", "free": vr(0),
                                 "max_lien": vr(100), "total_slashable": vr(100)}
    with pytest.raises(InsufficientBalance):  # slashable would be 150 > 100 although max lien is 100
        stake_remote(app, "u", 100, "v", "cross3")
    # the failed stake left nothing behind
    assert details(app, "u")["total_slashable"] == vr(100)
    assert app.query(VAULT, {"account_claims": {"account": "u"}})["claims"] == [
        {"lienholder": "cross2", "amount": vr(100)}, {"lienholder": CROSS, "amount": vr(100)}]


def test_release_from_unknown_lienholder_fails():
    app, _, _ = setup()
    bond(app, "u", 10)
    with pytest.raises(UnknownLienholder):
        app.execute("stranger", VAULT, {"release_cross_stake": {"owner": "u", "amount": coin(1, OSMO)}})


def test_stake_cross_txs_commit_first_while_second_pending():
    """Upstream ``stake_cross_txs`` (second half): ranges after committing the older tx."""
    app, _, _ = setup()
    activate(app, CROSS, "validator")
    bond(app, "user1", 300)
    bond(app, "user2", 500)
    first = int(stake_remote(app, "user1", 100, "validator", commit=False).attr("tx_id"))
    stake_remote(app, "user1", 50, "validator", commit=False)
    last = int(stake_remote(app, "user2", 100, "validator", commit=False).attr("tx_id"))
    app.execute("test", CROSS, {"test_commit_stake": {"tx_id": last}})
    assert account(app, "user2") == {"denom": OSMO, "bonded": "500", "free": vr(400)}
    assert app.query(VAULT, {"account_claims": {"account": "user2"}})["claims"] == [
        {"lienholder": CROSS, "amount": vr(100)}]
    app.execute("test", CROSS, {"test_commit_stake": {"tx_id": first}})
    assert account(app, "user1") == {"denom": OSMO, "bonded": "300", "free": vr(150, 200)}
    assert claim(app, "user1") == vr(100, 150)
    assert app.balance(VAULT, OSMO) == 800


def test_stake_cross_rollback_tx():
    app, _, _ = setup()
    activate(app, CROSS, "validator")
    bond(app, "user1", 300)
    stake_remote(app, "user1", 100, "validator", commit=False)
    assert len(app.query(VAULT, {"all_pending_txs_desc": {}})["txs"]) == 1
    tx = app.query(VAULT, {"all_pending_txs_desc": {}})["txs"][0]["in_flight_staking"]["id"]
    app.execute(CROSS, VAULT, {"rollback_tx": {"tx_id": tx}})
    assert app.query(VAULT, {"all_pending_txs_desc": {}})["txs"] == []
    assert account(app, "user1") == {"denom": OSMO, "bonded": "300", "free": vr(300)}
    # upstream (current vault mock) removes empty liens on rollback
    assert app.query(VAULT, {"account_claims": {"account": "user1"}})["claims"] == []
    assert app.balance(VAULT, OSMO) == 300


def test_multiple_stakes():
    """Upstream ``multiple_stakes``: local 10% and two cross stakers at 60% max slash."""
    from mesh_helpers import add_cross
    app, _, _ = setup(dsign="0.6", local_ratio="0.1")
    cross2 = add_cross(app, "external-staking-2", "0.6").address
    for c in (CROSS, cross2):
        activate(app, c, "validator")
    bond(app, "user1", 1000)
    stake_local(app, "user1", 300)
    stake_remote(app, "user1", 200, "validator", CROSS)
    stake_remote(app, "user1", 100, "validator", cross2)
    assert account(app, "user1") == {"denom": OSMO, "bonded": "1000", "free": vr(700)}
    assert app.query(VAULT, {"account_claims": {"account": "user1"}})["claims"] == [
        {"lienholder": CROSS, "amount": vr(200)},
        {"lienholder": cross2, "amount": vr(100)},
        {"lienholder": LOCAL, "amount": vr(300)},
    ]
    # liens 300 / 400 / 500: max_slash 30 + 240 + 300 = 570 is the collateral usage
    stake_remote(app, "user1", 200, "validator", CROSS)
    stake_remote(app, "user1", 400, "validator", cross2)
    assert account(app, "user1") == {"denom": OSMO, "bonded": "1000", "free": vr(430)}
    assert claim(app, "user1", CROSS) == vr(400) and claim(app, "user1", cross2) == vr(500)
    # cross1 to 900 still fits (30 + 540 + 300 = 870); cross2 to 900 would need 1110 > 1000
    stake_remote(app, "user1", 500, "validator", CROSS)
    with pytest.raises(InsufficientBalance):
        stake_remote(app, "user1", 400, "validator", cross2)
    assert claim(app, "user1", cross2) == vr(500)


def test_all_users_fetching():
    """Upstream ``all_users_fetching``: ``with_collateral`` hides users with zero collateral."""
    app, _, _ = setup()

    def accounts(flag):
        return [(a["user"], a["account"]["bonded"], a["account"]["free"])
                for a in app.query(VAULT, {"all_accounts": {"with_collateral": flag}})["accounts"]]

    assert accounts(False) == [] and accounts(True) == []
    bond(app, "user1", 100)
    assert accounts(False) == accounts(True) == [("user1", "100", vr(100))]
    bond(app, "user2", 200)
    assert accounts(False) == accounts(True) == [("user1", "100", vr(100)), ("user2", "200", vr(200))]
    app.execute("user1", VAULT, {"unbond": {"amount": coin(50, OSMO)}})
    assert accounts(False) == accounts(True) == [("user1", "50", vr(50)), ("user2", "200", vr(200))]
    app.execute("user2", VAULT, {"unbond": {"amount": coin(200, OSMO)}})
    assert accounts(False) == [("user1", "50", vr(50)), ("user2", "0", vr(0))]
    assert accounts(True) == [("user1", "50", vr(50))]
    # pagination: start_after is exclusive, limit caps the page
    page = app.query(VAULT, {"all_accounts": {"start_after": "user1", "limit": 1}})["accounts"]
    assert [a["user"] for a in page] == ["user2"]
