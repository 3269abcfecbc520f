"""The delegation state machine: its edges and the derivation from chain facts + BTC tip."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from api.source import DelegationRecord
from api.states import (
    ALLOWED_TRANSITIONS,
    TERMINAL_STATES,
    DelegationState as S,
    DelegationSubState as Sub,
    InvalidTransitionError,
    can_transition,
    check_transition,
    derive_state,
    timelock_passed,
)
from api_fixtures import A_RECORDS, BTC_TIP, FP_ALPHA, STAKER_A, txid

UB = 20


def base(**kw) -> DelegationRecord:
    fields = dict(
        staking_tx_hash_hex=txid("sm"), staker_pk_hex=STAKER_A, fp_pks_hex=(FP_ALPHA,),
        staking_amount=50_000, staking_time=200, unbonding_time=UB,
    )
    fields.update(kw)
    return DelegationRecord(**fields)


def test_every_state_has_an_entry_and_only_withdrawn_is_terminal():
    assert set(ALLOWED_TRANSITIONS) == set(S)
    assert TERMINAL_STATES == {S.WITHDRAWN}
    for targets in ALLOWED_TRANSITIONS.values():
        assert targets <= set(S)


@pytest.mark.parametrize(
    "a,b",
    [
        (S.PENDING, S.VERIFIED), (S.PENDING, S.ACTIVE), (S.VERIFIED, S.ACTIVE), (S.ACTIVE, S.UNBONDING),
        (S.ACTIVE, S.WITHDRAWABLE), (S.ACTIVE, S.SLASHED), (S.UNBONDING, S.WITHDRAWABLE),
        (S.UNBONDING, S.SLASHED), (S.WITHDRAWABLE, S.WITHDRAWN), (S.SLASHED, S.WITHDRAWN), (S.ACTIVE, S.ACTIVE),
    ],
)
def test_allowed_transitions(a, b):
    assert can_transition(a, b)
    assert check_transition(a, b) is b


@pytest.mark.parametrize(
    "a,b",
    [
        (S.ACTIVE, S.PENDING), (S.ACTIVE, S.VERIFIED), (S.WITHDRAWN, S.ACTIVE), (S.WITHDRAWN, S.WITHDRAWABLE),
        (S.SLASHED, S.ACTIVE), (S.UNBONDING, S.ACTIVE), (S.PENDING, S.SLASHED), (S.PENDING, S.WITHDRAWN),
        (S.ACTIVE, S.WITHDRAWN), (S.WITHDRAWABLE, S.UNBONDING), (S.VERIFIED, S.PENDING),
    ],
)
def test_forbidden_transitions(a, b):
    assert not can_transition(a, b)
    with pytest.raises(InvalidTransitionError, match=f"{a.value} -> {b.value}"):
        check_transition(a, b)


def test_timelock_rule_is_bip68():
    # output at 100 with CSV 10: a spend can be mined at height 110, i.e. once the tip is 109
    assert not timelock_passed(100, 10, 108)
    assert timelock_passed(100, 10, 109)


def test_fixture_records_derive_the_expected_states():
    expected = {
        "ACTIVE": (S.ACTIVE, None), "ACTIVE2": (S.ACTIVE, None), "PENDING": (S.PENDING, None),
        "VERIFIED": (S.VERIFIED, None), "UNBONDING": (S.UNBONDING, Sub.EARLY_UNBONDING),
        "WITHDRAWABLE_EARLY": (S.WITHDRAWABLE, Sub.EARLY_UNBONDING),
        "UNBONDING_TIMELOCK": (S.UNBONDING, Sub.TIMELOCK), "WITHDRAWABLE": (S.WITHDRAWABLE, Sub.TIMELOCK),
        "WITHDRAWN": (S.WITHDRAWN, Sub.TIMELOCK),
    }
    for key, (state, sub) in expected.items():
        d = derive_state(A_RECORDS[key], BTC_TIP)
        assert (d.state, d.sub_state) == (state, sub), key


def test_natural_expiry_timeline():
    # included at 1000, timelock 200 -> end 1200; unbonding time 20
    rec = base(has_covenant_quorum=True, start_height=1000, end_height=1200)
    assert derive_state(rec, 1179).state is S.ACTIVE            # 1179 + 20 < 1200
    assert derive_state(rec, 1180).state is S.UNBONDING         # 1180 + 20 >= 1200 (Babylon EXPIRED)
    assert derive_state(rec, 1198).sub_state is Sub.TIMELOCK
    assert derive_state(rec, 1199).state is S.WITHDRAWABLE      # 1199 + 1 >= 1200
    assert derive_state(replace(rec, withdrawn_height=1205), 1205).state is S.WITHDRAWN


def test_chain_expired_flag_means_unbonding_even_if_tip_lags():
    rec = base(has_covenant_quorum=True, start_height=1000, end_height=1200, expired=True)
    assert derive_state(rec, 1100).state is S.UNBONDING


def test_early_unbonding_timeline():
    rec = base(has_covenant_quorum=True, start_height=1000, end_height=1200)
    unb = replace(rec, unbonding_height=1050)
    assert derive_state(unb, 1050).state is S.UNBONDING
    assert derive_state(unb, 1050).sub_state is Sub.EARLY_UNBONDING
    assert derive_state(unb, 1068).state is S.UNBONDING
    assert derive_state(unb, 1069).state is S.WITHDRAWABLE     # 1069 + 1 >= 1050 + 20
    assert derive_state(replace(unb, withdrawn_height=1070), 1070).sub_state is Sub.EARLY_UNBONDING


def test_slashing_needs_covenant_quorum_and_wins_over_time():
    assert derive_state(base(slashed=True), 10).state is S.PENDING
    assert derive_state(base(slashed=True, has_covenant_quorum=True), 10).state is S.SLASHED
    rec = base(has_covenant_quorum=True, start_height=1000, end_height=1200, slashed=True)
    assert derive_state(rec, 5000).state is S.SLASHED
    assert derive_state(replace(rec, withdrawn_height=1300), 5000).state is S.WITHDRAWN


def _walk(rng: random.Random) -> list[S]:
    """A random but physically possible life of one delegation; returns the observed states."""
    rec = base(staking_time=rng.randint(30, 80), unbonding_time=rng.randint(3, 15))
    tip = 100
    seen = [derive_state(rec, tip).state]
    for _ in range(200):
        state = seen[-1]
        events = ["tip"] * 3
        if not rec.has_covenant_quorum and not rec.slashed:
            events.append("quorum")
        if rec.start_height is None:
            events.append("include")
        if state is S.ACTIVE or (state is S.UNBONDING and rec.unbonding_height is None):
            events.append("unbond")
        if state in (S.WITHDRAWABLE, S.SLASHED):
            events.append("withdraw")
        if not rec.slashed and state is not S.WITHDRAWN:
            events.append("slash")
        if rec.start_height is not None and not rec.reorged and rec.unbonding_height is None \
                and rec.withdrawn_height is None and not rec.slashed:
            events.append("reorg")  # a deep BTC reorg takes the staking tx's block off the main chain
        if rec.reorged:
            events.append("reprove")
        ev = rng.choice(events)
        if ev == "tip":
            tip += rng.randint(1, 4)
        elif ev == "quorum":
            rec = replace(rec, has_covenant_quorum=True)
        elif ev == "include":
            rec = replace(rec, start_height=tip - 6, end_height=tip - 6 + rec.staking_time)
        elif ev == "unbond":
            rec = replace(rec, unbonding_height=tip)
        elif ev == "withdraw":
            rec = replace(rec, withdrawn_height=tip)
        elif ev == "slash":
            rec = replace(rec, slashed=True)
        elif ev == "reorg":
            rec = replace(rec, reorged=True)
        elif ev == "reprove":
            rec = replace(rec, reorged=False, start_height=tip - 6, end_height=tip - 6 + rec.staking_time)
        seen.append(derive_state(rec, tip).state)
    return seen


def test_random_lifecycles_only_take_allowed_edges():
    rng = random.Random(20261125)
    visited: set[S] = set()
    for _ in range(300):
        states = _walk(rng)
        visited.update(states)
        for a, b in zip(states, states[1:]):
            assert can_transition(a, b), f"{a.value} -> {b.value} in {[s.value for s in states]}"
    assert visited == set(S)
