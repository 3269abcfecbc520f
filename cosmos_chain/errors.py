"""Typed chain errors; each carries an ABCI code and subclasses ValueError (house convention)."""

from __future__ import annotations

__all__ = [
    "ChainError",
    "TxDecodeError",
    "UnauthorizedError",
    "InvalidSequenceError",
    "InsufficientFundsError",
    "InsufficientFeeError",
    "OutOfGasError",
    "UnknownAddressError",
    "InvalidRequestError",
    "TxInMempoolError",
    "WrongChainError",
    "ContractError",
    "CODESPACE",
]

CODESPACE = "sdk"


class ChainError(ValueError):
    """Base error; ``code`` is the ABCI result code (Cosmos SDK numbering where one exists)."""

    code = 1
    codespace = CODESPACE


class TxDecodeError(ChainError):
    """Malformed tx bytes (sdk code 2)."""

    code = 2


class InvalidSequenceError(ChainError):
    """Wrong or replayed account sequence (sdk code 32)."""

    code = 32


class UnauthorizedError(ChainError):
    """Bad signature, signer mismatch (sdk code 4)."""

    code = 4


class InsufficientFundsError(ChainError):
    """Balance too low (sdk code 5)."""

    code = 5


class UnknownAddressError(ChainError):
    """Unknown account / contract (sdk code 9)."""

    code = 9


class OutOfGasError(ChainError):
    """Gas limit below gas used (sdk code 11)."""

    code = 11


class InsufficientFeeError(ChainError):
    """Fee below gas_limit × min gas price (sdk code 13)."""

    code = 13


class InvalidRequestError(ChainError):
    """Structurally invalid message (sdk code 18)."""

    code = 18


class TxInMempoolError(ChainError):
    """Same tx bytes already seen (sdk code 19)."""

    code = 19


class WrongChainError(ChainError):
    """Signature made for another chain (reported as unauthorized, code 4)."""

    code = 4


class ContractError(ChainError):
    """A built-in contract rejected the message (wasm-like code 5 in codespace ``wasm``)."""

    code = 5
    codespace = "wasm"
