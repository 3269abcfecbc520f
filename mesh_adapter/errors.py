"""Typed errors for the Mesh Security model.

Every error is a ``ValueError`` subclass (house rule) and mirrors an upstream
``ContractError`` variant where one exists, so callers can match on type.
"""

from __future__ import annotations


class MeshError(ValueError):
    """Base class of every error raised by ``mesh_adapter``."""


class InvalidMessage(MeshError):
    """A JSON message is malformed: unknown variant, missing or mistyped field."""


class InvalidAmount(InvalidMessage):
    """An amount is not a non-negative integer (or a valid Uint128 string)."""


class InvalidDecimal(InvalidMessage):
    """A decimal string is not a valid non-negative 18-digit fixed-point number."""


class UnexpectedDenom(MeshError):
    """The coin has the wrong denom (upstream ``UnexpectedDenom`` / ``InvalidDenom``)."""


class PaymentError(MeshError):
    """Funds are missing, or sent where the message is non-payable (cw_utils)."""


class InsufficientBalance(MeshError):
    """Not enough collateral / bank balance (upstream ``InsufficentBalance``)."""


class ClaimsLocked(MeshError):
    """Unbond exceeds free collateral (upstream ``ClaimsLocked(free)``)."""

    def __init__(self, free: dict) -> None:
        super().__init__(f"claims locked: free collateral is {free}")
        self.free = free


class UnknownLienholder(MeshError):
    """No lien exists between the owner and the sender."""


class InsufficientLien(MeshError):
    """Release larger than the lien."""


class NoClaim(MeshError):
    """No lien (claim) exists for the account and lienholder."""


class NoLocalStaking(MeshError):
    """The vault was instantiated without a local staking contract."""


class Unauthorized(MeshError):
    """The sender may not call this message."""


class UnknownTx(MeshError):
    """No pending transaction with this id."""


class WrongTypeTx(MeshError):
    """The pending transaction has the wrong type or lienholder."""


class ValidatorNotActive(MeshError):
    """Staking to a validator that is not active."""


class AlreadyTombstoned(MeshError):
    """Slashing a validator that is tombstoned or was not active at that height."""


class NotEnoughStake(MeshError):
    """Unstake exceeds the (low end of the) stake (upstream ``NotEnoughStake``)."""

    def __init__(self, available: int) -> None:
        super().__init__(f"not enough stake: {available} available")
        self.available = available


class NoRewards(MeshError):
    """Nothing to withdraw (upstream ``NoRewards``)."""


class InvalidConfig(MeshError):
    """Instantiate parameters are invalid (e.g. a slash ratio above 1)."""


class UnknownContract(MeshError):
    """A message or query is addressed to a contract that does not exist."""


class AdapterError(MeshError):
    """Base class for errors raised by the BTC adapter."""


class InvalidDelegation(AdapterError):
    """A delegation event is malformed (bad hash, key, value or status)."""


class UnknownDelegation(AdapterError):
    """The adapter has no record of this staking tx hash."""


class DuplicateDelegation(AdapterError):
    """The delegation was already activated."""


class UnknownFinalityProvider(AdapterError):
    """The FP BTC public key maps to no mesh validator."""


class InvalidTransition(AdapterError):
    """The delegation cannot move from its current state to the requested one."""
