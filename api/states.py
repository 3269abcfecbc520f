"""Delegation state machine: the public states, their allowed transitions, and
how a delegation's on-chain facts plus the BTC tip height map onto them.

States follow Babylon's staking-api-service v2 (``PENDING`` … ``SLASHED``);
the sub-state says *why* a delegation is unbonding / withdrawable, as the
upstream ``TIMELOCK_*`` / ``EARLY_UNBONDING_*`` names do.

Timelock rule (BIP-68, relative block locks): an output confirmed at height
``h`` with a CSV lock of ``T`` blocks can be spent by a transaction mined at
height ``h + T`` or later, so it is spendable from the mempool once
``tip + 1 >= h + T``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol


class DelegationState(str, Enum):
    """Public delegation state (what ``GET /v2/delegation`` reports)."""

    PENDING = "PENDING"
    """Registered on the Cosmos chain, covenant quorum not reached yet."""
    VERIFIED = "VERIFIED"
    """Covenant quorum reached, BTC inclusion proof not submitted yet."""
    ACTIVE = "ACTIVE"
    """Staking tx k-deep on BTC and attested; stake counts towards TVL."""
    UNBONDING = "UNBONDING"
    """Early unbonding tx observed, or the staking timelock is about to expire."""
    WITHDRAWABLE = "WITHDRAWABLE"
    """The relevant timelock has passed at the BTC tip; the staker may withdraw."""
    WITHDRAWN = "WITHDRAWN"
    """The staker's withdrawal (timelock-path spend) was observed on BTC."""
    SLASHED = "SLASHED"
    """The delegation's finality provider was slashed; the stake was slashed with it."""
    REORGED = "REORGED"
    """A BTC reorg deeper than k took the staking tx's block off the main chain: no stake counts until
    the tx is mined (k deep) and proven again."""


class DelegationSubState(str, Enum):
    """Why a delegation is UNBONDING / WITHDRAWABLE / WITHDRAWN."""

    TIMELOCK = "TIMELOCK"
    """The staking output's own timelock (natural expiry)."""
    EARLY_UNBONDING = "EARLY_UNBONDING"
    """The staker unbonded early through the unbonding transaction."""


ALLOWED_TRANSITIONS: dict[DelegationState, frozenset[DelegationState]] = {
    DelegationState.PENDING: frozenset({DelegationState.VERIFIED, DelegationState.ACTIVE, DelegationState.REORGED}),
    DelegationState.VERIFIED: frozenset({DelegationState.ACTIVE, DelegationState.SLASHED}),
    DelegationState.ACTIVE: frozenset(
        {DelegationState.UNBONDING, DelegationState.WITHDRAWABLE, DelegationState.SLASHED, DelegationState.REORGED}
    ),
    DelegationState.UNBONDING: frozenset(
        {DelegationState.WITHDRAWABLE, DelegationState.SLASHED, DelegationState.REORGED}
    ),
    # Until the staker actually withdraws, the covenant-signed slashing tx can
    # still spend the output: an unspent WITHDRAWABLE delegation can be slashed.
    DelegationState.WITHDRAWABLE: frozenset(
        {DelegationState.WITHDRAWN, DelegationState.SLASHED, DelegationState.REORGED}
    ),
    DelegationState.SLASHED: frozenset({DelegationState.WITHDRAWN}),
    DelegationState.WITHDRAWN: frozenset(),
    DelegationState.REORGED: frozenset(
        {DelegationState.PENDING, DelegationState.ACTIVE, DelegationState.UNBONDING,
         DelegationState.WITHDRAWABLE, DelegationState.SLASHED}
    ),
}
"""Every edge of the state machine. Staying in the same state is always allowed.

PENDING delegations cannot be slashed (no covenant slashing signatures yet);
VERIFIED ones can, since the pre-signed slashing tx already exists.
"""

TERMINAL_STATES: frozenset[DelegationState] = frozenset(
    s for s, nxt in ALLOWED_TRANSITIONS.items() if not nxt
)


class InvalidTransitionError(ValueError):
    """A delegation moved between two states the state machine does not connect."""


def can_transition(current: DelegationState, new: DelegationState) -> bool:
    """True if ``current -> new`` is an edge of the state machine (or a no-op)."""
    return current == new or new in ALLOWED_TRANSITIONS[current]


def check_transition(current: DelegationState, new: DelegationState) -> DelegationState:
    """Return ``new`` if the transition is allowed, else raise ``InvalidTransitionError``."""
    if not can_transition(current, new):
        raise InvalidTransitionError(f"invalid delegation state transition {current.value} -> {new.value}")
    return new


class DelegationFacts(Protocol):
    """What the state derivation needs to know about a delegation (see ``DelegationRecord``)."""

    has_covenant_quorum: bool
    start_height: int | None
    end_height: int | None
    staking_time: int
    unbonding_time: int
    expired: bool
    unbonding_height: int | None
    withdrawn_height: int | None
    slashed: bool


@dataclass(frozen=True)
class DerivedState:
    """A delegation's public state and, where it applies, its sub-state."""

    state: DelegationState
    sub_state: DelegationSubState | None = None


def timelock_passed(confirmed_height: int, lock_blocks: int, btc_tip: int) -> bool:
    """True once a CSV-locked output confirmed at ``confirmed_height`` is spendable after ``btc_tip``."""
    return btc_tip + 1 >= confirmed_height + lock_blocks


def derive_state(facts: DelegationFacts, btc_tip: int) -> DerivedState:
    """Map a delegation's chain facts and the BTC tip height onto its public state.

    Precedence: withdrawal observed > finality provider slashed > early unbonding
    observed > staking timelock (expired on chain or passed at the tip) > chain
    activation status.
    """
    if facts.withdrawn_height is not None:
        sub = DelegationSubState.EARLY_UNBONDING if facts.unbonding_height is not None else DelegationSubState.TIMELOCK
        return DerivedState(DelegationState.WITHDRAWN, None if facts.slashed else sub)
    if facts.slashed and facts.has_covenant_quorum:
        # Without covenant signatures on the slashing tx nothing can be slashed.
        return DerivedState(DelegationState.SLASHED)
    if getattr(facts, "reorged", False):
        return DerivedState(DelegationState.REORGED)
    if facts.unbonding_height is not None:
        if timelock_passed(facts.unbonding_height, facts.unbonding_time, btc_tip):
            return DerivedState(DelegationState.WITHDRAWABLE, DelegationSubState.EARLY_UNBONDING)
        return DerivedState(DelegationState.UNBONDING, DelegationSubState.EARLY_UNBONDING)
    if not facts.has_covenant_quorum:
        return DerivedState(DelegationState.PENDING)
    if facts.start_height is None:
        return DerivedState(DelegationState.VERIFIED)
    end = facts.end_height if facts.end_height is not None else facts.start_height + facts.staking_time
    if timelock_passed(facts.start_height, end - facts.start_height, btc_tip):
        return DerivedState(DelegationState.WITHDRAWABLE, DelegationSubState.TIMELOCK)
    # Babylon stops counting a delegation once fewer than unbonding_time blocks of
    # its timelock remain (``tip + unbonding_time >= end``): it is then "timelock
    # unbonding" until the staking timelock itself passes.
    if facts.expired or btc_tip + facts.unbonding_time >= end:
        return DerivedState(DelegationState.UNBONDING, DelegationSubState.TIMELOCK)
    return DerivedState(DelegationState.ACTIVE)
