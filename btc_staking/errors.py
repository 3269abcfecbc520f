"""Typed errors raised by btc_staking. Every invalid input raises a subclass of StakingError."""

from __future__ import annotations

__all__ = [
    "StakingError",
    "InvalidKeyError",
    "InvalidParamsError",
    "DuplicateKeyError",
    "InvalidAmountError",
    "InvalidTimelockError",
    "InvalidTxError",
    "InvalidScriptError",
    "InvalidSignatureError",
    "InvalidProofError",
    "InvalidHeaderError",
    "EOTSError",
    "AdaptorSignatureError",
]


class StakingError(ValueError):
    """Base class of every btc_staking error."""


class InvalidKeyError(StakingError):
    """A key has the wrong length, is not on the curve, or is an invalid scalar."""


class InvalidParamsError(StakingError):
    """Staking parameters are inconsistent (quorum, bounds, rate, ...)."""


class DuplicateKeyError(InvalidKeyError):
    """The same x-only key appears twice among staker / finality-provider / covenant keys."""


class InvalidAmountError(StakingError):
    """A value is negative, dust, outside the params bounds, or the fee is wrong."""


class InvalidTimelockError(StakingError):
    """A timelock is outside the allowed range or does not match the params."""


class InvalidTxError(StakingError):
    """A transaction is malformed or does not follow the expected template."""


class InvalidScriptError(StakingError):
    """A script cannot be built or parsed (e.g. no keys, wrong leaf)."""


class InvalidSignatureError(StakingError):
    """A signature has the wrong length or does not verify."""


class InvalidProofError(StakingError):
    """A merkle (Bitcoin or CometBFT) inclusion proof is malformed or does not verify."""


class InvalidHeaderError(StakingError):
    """A block header is malformed, has insufficient PoW or does not link to its parent."""


class EOTSError(StakingError):
    """An EOTS operation failed (bad randomness, equal messages, extraction mismatch)."""


class AdaptorSignatureError(StakingError):
    """An adaptor signature is malformed or does not verify."""
