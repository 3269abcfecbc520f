"""Accounts: numbers assigned on first receipt of funds (or genesis), sequences, public keys."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from cosmpy.crypto.address import Address

from ..errors import InvalidRequestError
from .base import Context, Module, register_module

__all__ = ["AuthModule", "validate_address"]


def validate_address(addr: Any, prefix: str) -> str:
    """Return ``addr`` if it is a valid bech32 address with ``prefix`` (else InvalidRequestError)."""
    if not isinstance(addr, str):
        raise InvalidRequestError(f"address must be a string, got {type(addr).__name__}")
    if type(addr) is str and type(prefix) is str:
        _checked_address(addr, prefix)  # cached; only valid addresses are remembered
        return addr
    return _check_address(addr, prefix)


def _check_address(addr: str, prefix: str) -> str:
    try:
        a = Address(addr)
    except Exception as exc:  # cosmpy raises RuntimeError/ValueError on bad bech32
        raise InvalidRequestError(f"invalid bech32 address {addr!r}: {exc}") from exc
    if not addr.startswith(prefix + "1") or str(a) != addr:
        raise InvalidRequestError(f"address {addr!r} does not have the chain prefix {prefix!r}")
    return addr


# bech32 decode + re-encode is ~0.2 ms; the same few addresses come back in every tx (lru_cache
# never stores a call that raised, so invalid addresses are checked, and reported, every time)
_checked_address = lru_cache(maxsize=8192)(_check_address)


@register_module
class AuthModule(Module):
    """Account store: ``acct/<addr>`` → {address, account_number, sequence, pub_key (hex33|null)}."""

    name = "auth"

    def get_account(self, ctx: Context, address: str) -> dict[str, Any] | None:
        """The account or None."""
        return self.store(ctx).get("acct/" + address)

    def ensure_account(self, ctx: Context, address: str) -> dict[str, Any]:
        """Existing account, or a new one with the next account number."""
        st = self.store(ctx)
        acct = st.get("acct/" + address)
        if acct is None:
            num = st.get("next_account_number", 0)
            acct = {"address": address, "account_number": num, "sequence": 0, "pub_key": None}
            st.set("next_account_number", num + 1)
            st.set("acct/" + address, acct)
        return acct

    def set_account(self, ctx: Context, acct: dict[str, Any]) -> None:
        """Write an account back."""
        self.store(ctx).set("acct/" + acct["address"], acct)

    def init_genesis(self, ctx: Context, genesis: dict[str, Any]) -> None:
        """``{"accounts": [address, ...]}`` pre-creates accounts (in order)."""
        for addr in genesis.get("accounts", []):
            self.ensure_account(ctx, validate_address(addr, ctx.app.prefix))

    def query_account(self, ctx: Context, body: dict[str, Any]) -> dict[str, Any] | None:
        """``{"account": {"address"}}`` → account or null."""
        return self.get_account(ctx, validate_address(body.get("address"), ctx.app.prefix))

    def query_accounts(self, ctx: Context, body: dict[str, Any]) -> list[dict[str, Any]]:
        """``{"accounts": {}}`` → all accounts, sorted by address."""
        return [v for _, v in self.store(ctx).items("acct/")]
