"""Port of upstream external-staking ``distribution`` multitest (points-per-stake rewards)."""

from __future__ import annotations

import pytest

from mesh_adapter.errors import NoRewards, PaymentError
from mesh_adapter.numeric import coin

from mesh_helpers import CROSS, OSMO, STAR, activate, bond, last_cross_tx, setup, stake_remote, unstake

USERS = ["user1", "user2"]
VALS = ["validator1", "validator2"]
REMOTE = ["remote1", "remote2"]


def rewards(app, u, v):
    return int(app.query(CROSS, {"pending_rewards": {"user": USERS[u], "validator": VALS[v]}})["amount"]["amount"])


def distribute(app, v, amount, denom=STAR):
    app.execute("owner", CROSS, {"test_distribute_rewards": {"validator": VALS[v], "rewards": coin(amount, denom)}})


def withdraw(app, u, v, recipient, commit=True):
    app.execute(USERS[u], CROSS, {"withdraw_rewards": {"validator": VALS[v], "remote_recipient": recipient}})
    tx = last_cross_tx(app)
    app.execute(USERS[u], CROSS, {("test_commit_withdraw_rewards" if commit else "test_rollback_withdraw_rewards"):
                                  {"tx_id": tx}})


def test_distribution():
    app, _, _ = setup(unbond_period=100)
    activate(app, CROSS, *VALS)
    bond(app, USERS[0], 600)
    bond(app, USERS[1], 600)
    stake_remote(app, USERS[0], 200, VALS[0])
    stake_remote(app, USERS[0], 100, VALS[1])
    stake_remote(app, USERS[1], 300, VALS[0])

    distribute(app, 0, 50)  # 20 / 30
    distribute(app, 1, 30)  # 30 to users[0]
    assert (rewards(app, 0, 0), rewards(app, 1, 0), rewards(app, 0, 1), rewards(app, 1, 1)) == (20, 30, 30, 0)
    assert app.query(CROSS, {"all_pending_rewards": {"user": USERS[0]}})["rewards"] == [
        {"validator": VALS[0], "rewards": coin(20, STAR)}, {"validator": VALS[1], "rewards": coin(30, STAR)}]
    assert app.query(CROSS, {"all_pending_rewards": {"user": USERS[1]}})["rewards"] == [
        {"validator": VALS[0], "rewards": coin(30, STAR)}]

    distribute(app, 0, 71)  # 28 / 42, 1 token not distributed
    with pytest.raises(PaymentError):
        distribute(app, 1, 100, OSMO)
    assert (rewards(app, 0, 0), rewards(app, 1, 0), rewards(app, 0, 1), rewards(app, 1, 1)) == (48, 72, 30, 0)

    withdraw(app, 0, 0, REMOTE[0])
    withdraw(app, 0, 1, REMOTE[0])
    withdraw(app, 1, 0, REMOTE[1])
    with pytest.raises(NoRewards):
        app.execute(USERS[1], CROSS, {"withdraw_rewards": {"validator": VALS[1], "remote_recipient": REMOTE[1]}})
    assert last_cross_tx(app) is None
    assert (rewards(app, 0, 0), rewards(app, 1, 0), rewards(app, 0, 1), rewards(app, 1, 1)) == (0, 0, 0, 0)

    distribute(app, 0, 9)  # 4 / 6 with the leftover token
    assert (rewards(app, 0, 0), rewards(app, 1, 0)) == (4, 6)
    distribute(app, 0, 11)
    distribute(app, 1, 11)
    unstake(app, USERS[1], 100, VALS[0])       # validators[0] now 200 / 200
    stake_remote(app, USERS[1], 300, VALS[1])  # validators[1] now 100 / 300
    assert (rewards(app, 0, 0), rewards(app, 1, 0), rewards(app, 0, 1), rewards(app, 1, 1)) == (8, 12, 11, 0)

    distribute(app, 0, 20)
    distribute(app, 1, 40)
    assert (rewards(app, 0, 0), rewards(app, 1, 0), rewards(app, 0, 1), rewards(app, 1, 1)) == (18, 22, 21, 30)

    distribute(app, 0, 5)
    assert (rewards(app, 0, 0), rewards(app, 1, 0)) == (20, 25)

    unstake(app, USERS[0], 50, VALS[0])   # 150 / 100
    unstake(app, USERS[1], 100, VALS[0])
    distribute(app, 0, 12)
    assert (rewards(app, 0, 0), rewards(app, 1, 0)) == (28, 29)

    withdraw(app, 0, 0, REMOTE[0])
    withdraw(app, 0, 1, REMOTE[0])
    withdraw(app, 1, 0, "bad_value", commit=False)  # rollback: users[1] keeps its rewards
    assert (rewards(app, 0, 0), rewards(app, 1, 0), rewards(app, 0, 1), rewards(app, 1, 1)) == (0, 29, 0, 30)

    distribute(app, 0, 10)
    distribute(app, 1, 10)
    assert (rewards(app, 0, 0), rewards(app, 1, 0), rewards(app, 0, 1), rewards(app, 1, 1)) == (6, 33, 2, 37)
    assert app.query(CROSS, {"all_pending_rewards": {"user": USERS[1]}})["rewards"] == [
        {"validator": VALS[0], "rewards": coin(33, STAR)}, {"validator": VALS[1], "rewards": coin(37, STAR)}]
    for u, v in ((0, 0), (0, 1), (1, 0), (1, 1)):
        withdraw(app, u, v, REMOTE[u])
    assert (rewards(app, 0, 0), rewards(app, 1, 0), rewards(app, 0, 1), rewards(app, 1, 1)) == (0, 0, 0, 0)


def test_slashing_keeps_rewards_accounting_consistent():
    app, _, _ = setup(local_ratio=None, auto_commit=True)
    activate(app, CROSS, VALS[0])
    bond(app, USERS[0], 1000)
    stake_remote(app, USERS[0], 1000, VALS[0])
    distribute(app, 0, 100)
    app.execute("test", CROSS, {"handle_slashing": {"validator": VALS[0], "height": 1, "time": 0}})
    assert rewards(app, 0, 0) == 100  # earned before the slash is kept
