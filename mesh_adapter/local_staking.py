"""Minimal native (local) staking contract, like upstream's vault multitest ``local_staking`` mock.

It receives collateral from the vault (``stake_local``), reports ``max_slash``, returns
stake with ``unstake {owner, amount}`` (which calls the vault's ``release_local_stake``
with the funds), and burns stake on ``burn_stake {owner, amount, validator}`` during
slash propagation. BTC stake never uses it; it exists so the vault's native-lien paths
(and upstream's slashing scenarios, which mix native and cross stake) can be exercised.
"""

from __future__ import annotations

from .errors import InsufficientBalance, InvalidConfig, Unauthorized
from .framework import Contract, ExecCtx, Response, must_pay, nonpayable, require, wasm_execute
from .numeric import Dec, coin, parse_coin


class LocalStaking(Contract):
    """Native staking stub; state: ``{denom, vault, slash_ratio, stakes}``."""

    kind = "mesh-local-staking"

    @classmethod
    def instantiate(cls, ctx: ExecCtx, msg: dict) -> "LocalStaking":
        """``{denom, vault, slash_ratio_dsign, slash_ratio_offline}``."""
        dsign = Dec.parse(require(msg, "slash_ratio_dsign"))
        offline = Dec.parse(msg.get("slash_ratio_offline", "0"))
        if Dec.one() < dsign or Dec.one() < offline:
            raise InvalidConfig("slash ratios must be <= 1")
        state = {"denom": require(msg, "denom"), "vault": require(msg, "vault"),
                 "slash_ratio": {"double_sign": str(dsign), "offline": str(offline)}, "stakes": {}}
        return cls(ctx.contract, state)

    def exec_receive_stake(self, ctx: ExecCtx, body: dict) -> Response:
        if ctx.sender != self.state["vault"]:
            raise Unauthorized("only the vault can stake")
        owner = require(body, "owner")
        amount = must_pay(ctx, self.state["denom"])
        self.state["stakes"][owner] = str(int(self.state["stakes"].get(owner, "0")) + amount)
        return Response().add_attribute("action", "receive_stake").add_attribute("owner", owner)

    def exec_unstake(self, ctx: ExecCtx, body: dict) -> Response:
        nonpayable(ctx)
        owner = require(body, "owner")
        amount, denom = parse_coin(require(body, "amount", dict))
        self._take(owner, amount)
        msg = wasm_execute(self.state["vault"], {"release_local_stake": {"owner": owner}}, [coin(amount, denom)])
        return Response(messages=[msg]).add_attribute("action", "unstake")

    def exec_burn_stake(self, ctx: ExecCtx, body: dict) -> Response:
        if ctx.sender != self.state["vault"]:
            raise Unauthorized("only the vault can burn stake")
        owner = require(body, "owner")
        amount, denom = parse_coin(require(body, "amount", dict))
        self._take(owner, amount)
        return Response(messages=[{"bank": {"burn": {"amount": [coin(amount, denom)]}}}]) \
            .add_attribute("action", "burn_stake").add_attribute("owner", owner).add_attribute("amount", amount)

    def _take(self, owner: str, amount: int) -> None:
        have = int(self.state["stakes"].get(owner, "0"))
        if have < amount:
            raise InsufficientBalance(f"{owner} has only {have} staked")
        self.state["stakes"][owner] = str(have - amount)

    def query_max_slash(self, body: dict) -> dict:
        sr = self.state["slash_ratio"]
        return {"slash_ratio_dsign": sr["double_sign"], "slash_ratio_offline": sr["offline"]}

    def query_stake(self, body: dict) -> dict:
        return {"amount": self.state["stakes"].get(require(body, "owner"), "0")}
