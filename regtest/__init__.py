"""Regtest Bitcoin backends behind one interface (``BitcoinBackend``).

* ``EmbeddedNode``: in-process regtest chain validated by libbitcoinkernel (default);
  ``RpcServer`` serves it over bitcoind-dialect JSON-RPC.
* ``RpcBackend``: btcd or bitcoind over JSON-RPC; ``BtcdProcess`` runs btcd on loopback.
* ``Wallet``: our own key-based funding wallet.

Everything but the protocol loads lazily, so importing ``regtest.backend`` does not load libbitcoinkernel."""

from __future__ import annotations

import importlib
from typing import Any

from .backend import BackendError, BitcoinBackend, TxRejected

_LAZY = {
    "BlockRejected": "embedded", "Coin": "embedded", "EmbeddedNode": "embedded", "MempoolEntry": "embedded",
    "RpcServer": "rpc_server", "RpcBackend": "rpc", "RpcError": "rpc", "BtcdProcess": "btcd", "Wallet": "wallet",
}

__all__ = ["BackendError", "BitcoinBackend", "TxRejected", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'regtest' has no attribute {name!r}")
