"""Typed errors raised by the checkpoint service (all subclass ``ValueError``)."""

from __future__ import annotations


class CheckpointError(ValueError):
    """Base class of every checkpoint error."""


class InvalidInputError(CheckpointError):
    """A caller handed the service malformed data (bad hex, bad key, bad params...)."""


class StoreError(CheckpointError):
    """The SQLite state is inconsistent or belongs to a different configuration."""


class ReorgTooDeepError(CheckpointError):
    """No stored block hash is on the backend's best chain any more."""


class ChainError(CheckpointError):
    """The Cosmos chain refused or failed a request.

    ``transient`` says whether retrying the very same request may succeed
    (connection problems, sequence races, mempool full); deterministic
    rejections (bad proof, wrong script, already registered, bad signature)
    have ``transient=False`` and must not be retried.
    """

    def __init__(self, reason: str, *, code: int | None = None, transient: bool) -> None:
        super().__init__(reason if code is None else f"code {code}: {reason}")
        self.reason = reason
        self.code = code
        self.transient = transient
