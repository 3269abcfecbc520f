"""Bank: balances, transfers (MsgSend and contract funds), supply."""

from __future__ import annotations

from typing import Any

from ..errors import InsufficientFundsError, InvalidRequestError
from .auth import validate_address
from .base import Coin, Context, Module, parse_coins, register_module, require

__all__ = ["BankModule"]


@register_module
class BankModule(Module):
    """Store: ``bal/<addr>/<denom>`` → amount (decimal string), ``supply/<denom>`` → amount."""

    name = "bank"

    def balance(self, ctx: Context, address: str, denom: str) -> int:
        """Balance (0 if none)."""
        return int(self.store(ctx).get(f"bal/{address}/{denom}", "0"))

    def balances(self, ctx: Context, address: str) -> dict[str, int]:
        """All non-zero balances, sorted by denom."""
        n = len(f"bal/{address}/")
        return {k[n:]: int(v) for k, v in self.store(ctx).items(f"bal/{address}/")}

    def _set(self, ctx: Context, address: str, denom: str, amount: int) -> None:
        st = self.store(ctx)
        if amount:
            st.set(f"bal/{address}/{denom}", str(amount))
        else:
            st.delete(f"bal/{address}/{denom}")

    def mint(self, ctx: Context, address: str, coins: list[Coin] | list[tuple[str, int]]) -> None:
        """Create coins at ``address`` (genesis / module use); creates the account."""
        ctx.app.auth.ensure_account(ctx, address)
        st = self.store(ctx)
        for denom, amount in _norm(coins):
            self._set(ctx, address, denom, self.balance(ctx, address, denom) + amount)
            st.set(f"supply/{denom}", str(int(st.get(f"supply/{denom}", "0")) + amount))

    def burn(self, ctx: Context, address: str, coins: list[Coin] | list[tuple[str, int]]) -> None:
        """Destroy coins held by ``address`` (raises InsufficientFundsError)."""
        st = self.store(ctx)
        for denom, amount in _norm(coins):
            bal = self.balance(ctx, address, denom)
            if bal < amount:
                raise InsufficientFundsError(f"{address} has {bal}{denom}, cannot burn {amount}{denom}")
            self._set(ctx, address, denom, bal - amount)
            st.set(f"supply/{denom}", str(int(st.get(f"supply/{denom}", "0")) - amount))

    def transfer(self, ctx: Context, from_addr: str, to_addr: str, coins: list[Coin] | list[tuple[str, int]]) -> None:
        """Move coins; the receiver's account is created on first receipt."""
        parsed = _norm(coins)
        for denom, amount in parsed:
            bal = self.balance(ctx, from_addr, denom)
            if bal < amount:
                raise InsufficientFundsError(f"insufficient funds: {from_addr} has {bal}{denom}, needs {amount}{denom}")
        if parsed:
            ctx.app.auth.ensure_account(ctx, to_addr)
        for denom, amount in parsed:
            self._set(ctx, from_addr, denom, self.balance(ctx, from_addr, denom) - amount)
            self._set(ctx, to_addr, denom, self.balance(ctx, to_addr, denom) + amount)
        if parsed:
            ctx.emit("transfer", recipient=to_addr, sender=from_addr, amount=_fmt(parsed))

    def init_genesis(self, ctx: Context, genesis: dict[str, Any]) -> None:
        """``{"balances": [{"address", "coins": [{"denom", "amount"}]}]}`` (accounts numbered in order)."""
        for entry in genesis.get("balances", []):
            addr = validate_address(entry.get("address"), ctx.app.prefix)
            self.mint(ctx, addr, parse_coins(entry.get("coins", [])))

    def exec_send(self, ctx: Context, sender: str, body: dict[str, Any], funds: list[Coin]) -> dict[str, Any]:
        """``{"send": {"to_address", "amount": [coins]}}`` (same as MsgSend)."""
        to = validate_address(body.get("to_address"), ctx.app.prefix)
        coins = parse_coins(body.get("amount"))
        require(bool(coins), "send: amount must not be empty", InvalidRequestError)
        self.transfer(ctx, sender, to, coins)
        return {}

    def query_balance(self, ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
        """``{"balance": {"address", "denom"}}`` → {"denom", "amount"}."""
        addr = validate_address(body.get("address"), ctx.app.prefix)
        denom = str(body.get("denom", ""))
        return {"denom": denom, "amount": str(self.balance(ctx, addr, denom))}

    def query_all_balances(self, ctx: Context, body: dict[str, Any]) -> list[dict[str, str]]:
        """``{"all_balances": {"address"}}`` → [{"denom", "amount"}] sorted by denom."""
        addr = validate_address(body.get("address"), ctx.app.prefix)
        return [{"denom": d, "amount": str(a)} for d, a in self.balances(ctx, addr).items()]

    def query_supply(self, ctx: Context, body: dict[str, Any]) -> dict[str, str]:
        """``{"supply": {"denom"}}`` → {"denom", "amount"}."""
        denom = str(body.get("denom", ""))
        return {"denom": denom, "amount": self.store(ctx).get(f"supply/{denom}", "0")}


def _norm(coins: list[Coin] | list[tuple[str, int]]) -> list[tuple[str, int]]:
    if coins and isinstance(coins[0], tuple):
        out = [(str(d), int(a)) for d, a in coins]  # type: ignore[misc]
        for d, a in out:
            if a <= 0:
                raise InvalidRequestError(f"coin amount must be positive, got {a}{d}")
        return out
    return parse_coins(coins)


def _fmt(coins: list[tuple[str, int]]) -> str:
    return ",".join(f"{a}{d}" for d, a in coins)
