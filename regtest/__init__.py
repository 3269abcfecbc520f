"""Regtest Bitcoin backends: the BitcoinBackend protocol, the embedded libbitcoinkernel node, RPC.

``EmbeddedNode`` and friends load lazily so importing ``regtest.backend`` does not load libbitcoinkernel."""

from __future__ import annotations

from typing import Any

from .backend import BackendError, BitcoinBackend, TxRejected

__all__ = ["BackendError", "BitcoinBackend", "TxRejected", "BlockRejected", "Coin", "EmbeddedNode", "MempoolEntry"]

_LAZY = {"BlockRejected", "Coin", "EmbeddedNode", "MempoolEntry"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import embedded

        return getattr(embedded, name)
    raise AttributeError(f"module 'regtest' has no attribute {name!r}")
