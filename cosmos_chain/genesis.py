"""Helpers to build a :class:`~cosmos_chain.app.ChainApp` genesis dict with funded accounts.

Example::

    alice = deterministic_wallet(1)
    genesis = build_genesis({str(alice.address()): 10_000_000}, min_gas_price="0.01")
"""

from __future__ import annotations

import hashlib
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from cosmpy.aerial.wallet import LocalWallet
from cosmpy.crypto.keypairs import PrivateKey

from .modules.auth import validate_address
from .modules.base import DEFAULT_PREFIX

__all__ = ["DEFAULT_DENOM", "DEFAULT_MIN_GAS_PRICE", "build_genesis", "deterministic_wallet"]

DEFAULT_DENOM = "ubbn"
DEFAULT_MIN_GAS_PRICE = "0.01"


def deterministic_wallet(seed: int | str | bytes, prefix: str = DEFAULT_PREFIX) -> LocalWallet:
    """A cosmpy ``LocalWallet`` whose secret is sha256(b"btcmesh-test-key/" + seed) (tests, devnets only)."""
    if isinstance(seed, int):
        seed = str(seed)
    if isinstance(seed, str):
        seed = seed.encode()
    secret = hashlib.sha256(b"btcmesh-test-key/" + seed).digest()
    return LocalWallet(PrivateKey(secret), prefix=prefix)


def build_genesis(
    balances: Mapping[str, int | Mapping[str, int]],
    *,
    denom: str = DEFAULT_DENOM,
    min_gas_price: str | Decimal = DEFAULT_MIN_GAS_PRICE,
    genesis_time: float | None = None,
    chain_id: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    **sections: dict[str, Any],
) -> dict[str, Any]:
    """Genesis funding each address: ``{addr: amount_of_denom}`` or ``{addr: {denom: amount}}``.

    Accounts are numbered in the given order. Extra module sections (``finality={...}``) are copied in.
    Raises ValueError on a bad address, amount or gas price.
    """
    try:
        price = Decimal(str(min_gas_price))
    except InvalidOperation as exc:
        raise ValueError(f"bad min_gas_price {min_gas_price!r}") from exc
    if not price.is_finite() or price < 0:
        raise ValueError("min_gas_price must be a non-negative decimal")
    entries = []
    for addr, amount in balances.items():
        validate_address(addr, prefix)
        coins = {denom: amount} if isinstance(amount, int) else dict(amount)
        out = []
        for d, a in sorted(coins.items()):
            if not isinstance(a, int) or isinstance(a, bool) or a <= 0:
                raise ValueError(f"genesis amount for {addr} must be a positive int, got {a!r}{d}")
            out.append({"denom": d, "amount": str(a)})
        entries.append({"address": addr, "coins": out})
    genesis: dict[str, Any] = {
        "fees": {"denom": denom, "min_gas_price": str(price)},
        "auth": {"accounts": list(balances)},
        "bank": {"balances": entries},
    }
    if genesis_time is not None:
        genesis["genesis_time"] = float(genesis_time)
    if chain_id is not None:
        genesis["chain_id"] = chain_id
    for name, section in sections.items():
        if name in genesis:
            raise ValueError(f"genesis section {name!r} is built here; pass balances instead")
        genesis[name] = section
    return genesis
