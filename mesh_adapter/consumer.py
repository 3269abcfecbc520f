"""The consumer chain's reward source: block rewards and fees paid to validators by power.

Upstream Mesh Security relies on the consumer's native ``x/mint`` + ``x/distribution``: every
block the chain mints a reward in its staking denom, adds the fees collected, and splits both
among validators by voting power; each validator's share goes to its delegators by stake, and
the ``virtual-staking`` contract (a delegator like any other) withdraws what its delegations
earned. This contract models exactly that, with integer math and nothing lost:

* ``allocate {}`` (authority; funds = this block's reward, minted by the host) adds the fee pool
  (filled by ``pay_fees {}``), and splits the total over validators by power:
  ``reward_v = floor(total * power_v / total_power)``; the remainder (and everything, when no
  validator has power) goes to the community pool. ``power_v = native_power_v + virtual_v``
  (``virtual_v`` is the virtual-staking contract's delegation on ``v``).
* The virtual-staking delegation's share of ``reward_v`` is ``floor(reward_v * virtual_v /
  power_v)``; it is kept as outstanding rewards of the virtual-staking contract; the rest (the
  native stake's share, remainder included) is sent to the validator operator ``v``.
* ``withdraw_delegator_rewards {}`` (sender = the delegator) sends every outstanding reward of
  the sender and clears it (``DistributionMsg::WithdrawDelegatorReward`` for all validators).

Every unit allocated is in exactly one of ``to_native``, ``to_delegators`` (outstanding +
withdrawn) or ``community_pool``: ``query totals {}`` reports them.
"""

from __future__ import annotations

from .errors import InvalidConfig, InvalidMessage, Unauthorized
from .framework import Contract, ExecCtx, Response, bank_send, must_pay, nonpayable, require
from .numeric import coin, parse_uint


class ConsumerDistribution(Contract):
    """``{denom, virtual_staking, authority, block_reward, native_power?}``."""

    kind = "mesh-consumer-distribution"

    @classmethod
    def instantiate(cls, ctx: ExecCtx, msg: dict) -> "ConsumerDistribution":
        native = msg.get("native_power") or {}
        if not isinstance(native, dict):
            raise InvalidConfig("native_power must map validators to integer powers")
        state = {"denom": require(msg, "denom"), "virtual_staking": require(msg, "virtual_staking"),
                 "authority": require(msg, "authority"),
                 "block_reward": str(parse_uint(require(msg, "block_reward", (str, int)), "block_reward")),
                 "native_power": {v: str(parse_uint(p, "native_power")) for v, p in sorted(native.items())},
                 "fee_pool": "0", "outstanding": {},
                 "totals": {"minted": "0", "fees": "0", "to_native": "0", "to_delegators": "0",
                            "withdrawn": "0", "community_pool": "0", "blocks": 0}}
        return cls(ctx.contract, state)

    def _add(self, key: str, amount: int) -> None:
        t = self.state["totals"]
        t[key] = str(int(t[key]) + amount)

    def _powers(self, ctx: ExecCtx) -> dict[str, tuple[int, int]]:
        """``{validator: (native, virtual)}`` with positive total power, sorted."""
        dels = ctx.query(self.state["virtual_staking"], {"all_delegations": {}})["delegations"]
        virtual = {d["validator"]: int(d["amount"]) for d in dels}
        out = {}
        for v in sorted(set(virtual) | set(self.state["native_power"])):
            native = int(self.state["native_power"].get(v, "0"))
            if native + virtual.get(v, 0) > 0:
                out[v] = (native, virtual.get(v, 0))
        return out

    def exec_pay_fees(self, ctx: ExecCtx, body: dict) -> Response:
        """Fees paid on the consumer (in its staking denom), allocated with the next block."""
        amount = must_pay(ctx, self.state["denom"])
        self.state["fee_pool"] = str(int(self.state["fee_pool"]) + amount)
        self._add("fees", amount)
        return Response().add_attribute("action", "pay_fees").add_attribute("amount", amount)

    def exec_allocate(self, ctx: ExecCtx, body: dict) -> Response:
        """One block: this block's reward (the funds) + the fee pool, to validators by power."""
        if ctx.sender != self.state["authority"]:
            raise Unauthorized("only the consumer chain (authority) allocates block rewards")
        minted = sum(parse_uint(c["amount"]) for c in ctx.funds if c["denom"] == self.state["denom"])
        if any(c["denom"] != self.state["denom"] for c in ctx.funds):
            raise InvalidMessage(f"block rewards must be paid in {self.state['denom']}")
        self._add("minted", minted)
        self.state["totals"]["blocks"] += 1
        total = minted + int(self.state["fee_pool"])
        self.state["fee_pool"] = "0"
        powers = self._powers(ctx)
        total_power = sum(n + v for n, v in powers.values())
        msgs = []
        allocated = 0
        vs = self.state["virtual_staking"]
        for val, (native, virtual) in powers.items():
            reward = total * (native + virtual) // total_power
            allocated += reward
            to_vs = reward * virtual // (native + virtual)
            if to_vs:
                out = self.state["outstanding"].setdefault(vs, {})
                out[val] = str(int(out.get(val, "0")) + to_vs)
                self._add("to_delegators", to_vs)
            if reward - to_vs:
                msgs.append(bank_send(val, [coin(reward - to_vs, self.state["denom"])]))
                self._add("to_native", reward - to_vs)
        self._add("community_pool", total - allocated)
        return Response(messages=msgs).add_attribute("action", "allocate").add_attribute("amount", total)

    def exec_withdraw_delegator_rewards(self, ctx: ExecCtx, body: dict) -> Response:
        """Send all of the sender's outstanding rewards to it."""
        nonpayable(ctx)
        out = self.state["outstanding"].pop(ctx.sender, {})
        amount = sum(int(a) for a in out.values())
        resp = Response().add_attribute("action", "withdraw_delegator_rewards").add_attribute("amount", amount)
        if amount:
            self._add("withdrawn", amount)
            resp.add_message(bank_send(ctx.sender, [coin(amount, self.state["denom"])]))
        return resp

    def exec_set_block_reward(self, ctx: ExecCtx, body: dict) -> Response:
        if ctx.sender != self.state["authority"]:
            raise Unauthorized("only the authority may set the block reward")
        self.state["block_reward"] = str(parse_uint(require(body, "block_reward", (str, int)), "block_reward"))
        return Response().add_attribute("action", "set_block_reward")

    def query_config(self, body: dict) -> dict:
        s = self.state
        return {"denom": s["denom"], "virtual_staking": s["virtual_staking"], "block_reward": s["block_reward"],
                "native_power": dict(s["native_power"])}

    def query_delegation_rewards(self, body: dict) -> dict:
        """``{delegator}`` → ``{rewards: [{validator, reward}]}`` (outstanding, sorted)."""
        out = self.state["outstanding"].get(require(body, "delegator"), {})
        return {"rewards": [{"validator": v, "reward": a} for v, a in sorted(out.items()) if int(a)]}

    def query_totals(self, body: dict) -> dict:
        t = dict(self.state["totals"])
        t["fee_pool"] = self.state["fee_pool"]
        t["outstanding"] = str(sum(int(a) for d in self.state["outstanding"].values() for a in d.values()))
        return t
