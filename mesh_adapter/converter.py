"""Consumer side, minimal: the ``converter`` (price normalisation) and ``virtual-staking`` (capped mint).

Converter: a provider packet for ``N`` remote tokens becomes
``floor(floor(N * price) * (1 - discount))`` local virtual tokens
(upstream: ``amount * native_per_foreign * price_adjustment`` with
``price_adjustment = 1 - discount``; each ``Uint128 * Decimal`` floors). The price feed is a
governance-set constant (upstream's "gov-defined feed"), updatable by ``admin``.

Rewards (upstream ``converter_api``): virtual staking calls ``distribute_rewards {payments}`` /
``distribute_reward {validator}`` with the reward tokens; the converter keeps the tokens and sends
upstream's ``DistributeBatch {rewards, denom}`` packet to external staking (a direct call here, no
IBC). The provider's ``transfer_rewards {rewards, recipient}`` packet pays a claim out of them.

Virtual staking: keeps the converter's bond *requests* per validator and delegates them
subject to ``max_cap`` (total virtual tokens it may mint). When requests exceed the cap every
validator is scaled down by ``max_cap / total_requested`` (floor). Upstream rebalances once
per epoch; this model rebalances after every change (an epoch per message).

Tombstoned validators (``handle_valset_update {tombstoned}``, upstream a sudo from the chain,
here from ``admin``) are force-unbonded in that epoch, as upstream ``handle_epoch`` does: their
bond requests go to 0 and the amount is recorded (``inactive_validators``). A later provider
``unstake`` for such a validator is capped at what is left (upstream fails with InsufficientBond).
A validator removed from the active set but not tombstoned (``removals``: a jailed one) keeps its
bond requests, but the epoch delegates nothing to it until an ``additions`` brings it back (the
consumer chain unbonds a jailed validator's delegations; upstream leaves inactive validators out
of the epoch's reward withdrawal); the cap is shared by the active validators' requests.
"""

from __future__ import annotations

from .errors import InsufficientBalance, InvalidConfig, InvalidMessage, PaymentError, Unauthorized, UnexpectedDenom
from .framework import Contract, ExecCtx, Response, bank_send, must_pay, require, split_msg, wasm_execute
from .numeric import Dec, coin, parse_coin, parse_uint


class Converter(Contract):
    """``{price, discount, remote_denom, local_denom, virtual_staking, provider, admin?}``."""

    kind = "mesh-converter"

    @classmethod
    def instantiate(cls, ctx: ExecCtx, msg: dict) -> "Converter":
        price = Dec.parse(require(msg, "price"), "price")
        discount = Dec.parse(require(msg, "discount"), "discount")
        if Dec.one() < discount:
            raise InvalidConfig("discount must be <= 1")
        if price == Dec.zero():
            raise InvalidConfig("price must be positive")
        state = {"price": str(price), "discount": str(discount),
                 "remote_denom": require(msg, "remote_denom"), "local_denom": require(msg, "local_denom"),
                 "virtual_staking": require(msg, "virtual_staking"), "provider": require(msg, "provider"),
                 "admin": msg.get("admin")}
        return cls(ctx.contract, state)

    def normalize(self, amount: int) -> int:
        """Remote tokens -> local virtual tokens (price then discount, both floored)."""
        price = Dec.parse(self.state["price"])
        adjust = Dec.one() - Dec.parse(self.state["discount"])
        return adjust.mul_floor(price.mul_floor(amount))

    def _local(self, value: dict, field: str) -> dict:
        amount, denom = parse_coin(value, field)
        if denom != self.state["remote_denom"]:
            raise UnexpectedDenom(f"expected remote denom {self.state['remote_denom']}, got {denom}")
        return coin(self.normalize(amount), self.state["local_denom"])

    def exec_provider_packet(self, ctx: ExecCtx, body: dict) -> Response:
        """Handle a provider packet (stands in for the IBC channel from external-staking)."""
        if ctx.sender != self.state["provider"]:
            raise Unauthorized("packets only come from the connected provider contract")
        name, pkt = split_msg(body)
        vs = self.state["virtual_staking"]
        msgs = []
        if name == "stake":
            msgs.append(wasm_execute(vs, {"bond": {"validator": require(pkt, "validator"),
                                                   "amount": self._local(require(pkt, "stake", dict), "stake")}}))
        elif name == "unstake":
            msgs.append(wasm_execute(vs, {"unbond": {"validator": require(pkt, "validator"),
                                                     "amount": self._local(require(pkt, "unstake", dict), "unstake")}}))
        elif name == "burn":
            validators = require(pkt, "validators", list)
            total = self._local(require(pkt, "burn", dict), "burn")
            amounts = pkt.get("amounts")
            if isinstance(amounts, dict):
                for v in validators:
                    local = coin(self.normalize(parse_uint(amounts.get(v, "0"), "amounts")), self.state["local_denom"])
                    msgs.append(wasm_execute(vs, {"burn": {"validators": [v], "amount": local}}))
            else:
                msgs.append(wasm_execute(vs, {"burn": {"validators": validators, "amount": total}}))
        elif name == "transfer_rewards":
            amount, denom = parse_coin(require(pkt, "rewards", dict), "rewards")
            if denom != self.state["local_denom"]:
                raise UnexpectedDenom(f"rewards are paid in {self.state['local_denom']}, got {denom}")
            if amount:
                msgs.append(bank_send(require(pkt, "recipient"), [coin(amount, denom)]))
        else:
            raise InvalidMessage(f"unknown provider packet `{name}`")
        return Response(messages=msgs).add_attribute("action", f"packet_{name}")

    def exec_distribute_reward(self, ctx: ExecCtx, body: dict) -> Response:
        """Virtual staking pays one validator's rewards (funds); upstream's ``Distribute`` packet."""
        self._only_virtual_staking(ctx)
        amount = must_pay(ctx, self.state["local_denom"])
        return self._reward_packet([{"validator": require(body, "validator"), "reward": str(amount)}])

    def exec_distribute_rewards(self, ctx: ExecCtx, body: dict) -> Response:
        """Batch form: ``payments [{validator, reward}]`` whose sum must equal the funds sent;
        forwarded as upstream's ``DistributeBatch {rewards, denom}`` packet to external staking.
        The tokens stay here until a ``transfer_rewards`` packet pays a recipient (as upstream)."""
        self._only_virtual_staking(ctx)
        payments = require(body, "payments", list)
        rewards = []
        for p in payments:
            if not isinstance(p, dict):
                raise InvalidMessage("payments: expected [{validator, reward}]")
            rewards.append({"validator": require(p, "validator"), "reward": str(parse_uint(p.get("reward"), "reward"))})
        summed = sum(int(r["reward"]) for r in rewards)
        sent = must_pay(ctx, self.state["local_denom"])
        if summed != sent:
            raise PaymentError(f"sum of rewards ({summed}) does not match funds sent ({sent})")
        return self._reward_packet(rewards)

    def _only_virtual_staking(self, ctx: ExecCtx) -> None:
        if ctx.sender != self.state["virtual_staking"]:
            raise Unauthorized("only the virtual staking contract pays rewards")

    def _reward_packet(self, rewards: list[dict]) -> Response:
        msg = wasm_execute(self.state["provider"], {"distribute_batch": {"rewards": rewards,
                                                                         "denom": self.state["local_denom"]}})
        resp = Response(messages=[msg]).add_attribute("action", "distribute_rewards")
        for r in rewards:
            resp.add_attribute(f"reward_{r['validator']}", r["reward"])
        return resp

    def exec_update_price(self, ctx: ExecCtx, body: dict) -> Response:
        if ctx.sender != self.state["admin"]:
            raise Unauthorized("only admin may update the price")
        price = Dec.parse(require(body, "price"), "price")
        if price == Dec.zero():
            raise InvalidConfig("price must be positive")
        self.state["price"] = str(price)
        return Response().add_attribute("action", "update_price")

    def query_config(self, body: dict) -> dict:
        return dict(self.state)

    def query_normalize(self, body: dict) -> dict:
        return self._local(require(body, "amount", dict), "amount")


class VirtualStaking(Contract):
    """``{denom, converter, max_cap, admin?}``; bond requests -> capped delegations."""

    kind = "mesh-virtual-staking"

    @classmethod
    def instantiate(cls, ctx: ExecCtx, msg: dict) -> "VirtualStaking":
        state = {"denom": require(msg, "denom"), "converter": require(msg, "converter"),
                 "max_cap": str(parse_uint(require(msg, "max_cap", (str, int)), "max_cap")),
                 "admin": msg.get("admin"), "requests": {}, "delegations": {},
                 "distribution": msg.get("distribution")}
        return cls(ctx.contract, state)

    def exec_collect_rewards(self, ctx: ExecCtx, body: dict) -> Response:
        """Sudo (admin): withdraw what the delegations earned on the consumer's distribution
        contract and hand it to the converter as one ``distribute_rewards {payments}`` with the
        tokens attached (the reward half of upstream ``handle_epoch``, with ``reply_rewards``)."""
        if ctx.sender != self.state["admin"]:
            raise Unauthorized("only the chain (admin) runs the epoch")
        dist = self.state.get("distribution")
        resp = Response().add_attribute("action", "collect_rewards")
        if not dist:
            return resp
        payments = ctx.query(dist, {"delegation_rewards": {"delegator": ctx.contract}})["rewards"]
        total = sum(int(p["reward"]) for p in payments)
        if total:
            resp.add_message(wasm_execute(dist, {"withdraw_delegator_rewards": {}}))
            resp.add_message(wasm_execute(self.state["converter"], {"distribute_rewards": {"payments": payments}},
                                          [coin(total, self.state["denom"])]))
        return resp.add_attribute("rewards", total)

    def _amount(self, body: dict) -> int:
        amount, denom = parse_coin(require(body, "amount", dict))
        if denom != self.state["denom"]:
            raise UnexpectedDenom(f"expected {self.state['denom']}, got {denom}")
        return amount

    def _only_converter(self, ctx: ExecCtx) -> None:
        if ctx.sender != self.state["converter"]:
            raise Unauthorized("only the converter may change virtual stake")

    def _tombstoned(self) -> set[str]:
        return {v for v, info in self.state.get("inactive", {}).items() if info["tombstoned"]}

    def _rebalance(self) -> None:
        """Upstream ``handle_epoch``: tombstoned validators are force-unbonded (their bond requests
        zeroed, the amount recorded as ``unbonded``), then requests are scaled under ``max_cap``."""
        for v in sorted(self._tombstoned()):
            have = int(self.state["requests"].get(v, "0"))
            if have:
                info = self.state["inactive"][v]
                info["unbonded"] = str(int(info.get("unbonded", "0")) + have)
                self.state["requests"][v] = "0"
        inactive = self.state.get("inactive", {})
        reqs = {v: int(a) for v, a in self.state["requests"].items() if int(a) > 0 and v not in inactive}
        total = sum(reqs.values())
        cap = int(self.state["max_cap"])
        if total <= cap:
            dels = reqs
        else:
            dels = {v: a * cap // total for v, a in reqs.items()}
        self.state["delegations"] = {v: str(a) for v, a in sorted(dels.items()) if a > 0}

    def exec_bond(self, ctx: ExecCtx, body: dict) -> Response:
        self._only_converter(ctx)
        v = require(body, "validator")
        amount = self._amount(body)
        self.state["requests"][v] = str(int(self.state["requests"].get(v, "0")) + amount)
        self._rebalance()
        return Response().add_attribute("action", "bond").add_attribute("validator", v)

    def exec_unbond(self, ctx: ExecCtx, body: dict) -> Response:
        self._only_converter(ctx)
        v = require(body, "validator")
        amount = self._amount(body)
        have = int(self.state["requests"].get(v, "0"))
        if v in self._tombstoned():  # already force-unbonded by the epoch (upstream: InsufficientBond)
            amount = min(amount, have)
        if have < amount:
            raise InsufficientBalance(f"only {have} bonded to {v}")
        self.state["requests"][v] = str(have - amount)
        self._rebalance()
        return Response().add_attribute("action", "unbond").add_attribute("validator", v)

    def exec_burn(self, ctx: ExecCtx, body: dict) -> Response:
        """Burn ``amount`` evenly over ``validators`` (never below zero)."""
        self._only_converter(ctx)
        validators = require(body, "validators", list)
        amount = self._amount(body)
        if not validators:
            raise InvalidMessage("burn needs at least one validator")
        share, rem = divmod(amount, len(validators))
        for i, v in enumerate(validators):
            have = int(self.state["requests"].get(v, "0"))
            self.state["requests"][v] = str(max(have - share - (1 if i < rem else 0), 0))
        self._rebalance()
        return Response().add_attribute("action", "burn")

    def exec_handle_valset_update(self, ctx: ExecCtx, body: dict) -> Response:
        """Upstream sudo ``handle_valset_update`` (here from ``admin``, the consumer chain's
        stand-in): ``tombstoned``/``removals`` join the inactive list, ``additions`` leave it; the
        epoch (:meth:`_rebalance`) then force-unbonds the tombstoned ones."""
        if ctx.sender != self.state["admin"]:
            raise Unauthorized("only admin (the chain) may report validator set changes")
        lists = {}
        for key in ("additions", "removals", "tombstoned"):
            value = body.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise InvalidMessage(f"`{key}` must be a list of validator names")
            lists[key] = value
        inactive = self.state.setdefault("inactive", {})
        for v in lists["tombstoned"]:
            inactive[v] = {"tombstoned": True, "unbonded": inactive.get(v, {}).get("unbonded", "0")}
        for v in lists["removals"]:
            inactive.setdefault(v, {"tombstoned": False, "unbonded": "0"})
        for v in lists["additions"]:
            if not inactive.get(v, {}).get("tombstoned"):
                inactive.pop(v, None)
        before = {v: info.get("unbonded", "0") for v, info in inactive.items()}
        self._rebalance()
        resp = Response().add_attribute("action", "handle_valset_update")
        for v in sorted(inactive):
            if inactive[v].get("unbonded", "0") != before.get(v):
                resp.add_attribute("unbonded_" + v, str(int(inactive[v]["unbonded"]) - int(before.get(v, "0"))))
        return resp

    def query_inactive_validators(self, body: dict) -> dict:
        """``{validators: [{validator, tombstoned, unbonded}]}`` (``unbonded``: virtual stake the
        epoch force-unbonded from a tombstoned validator)."""
        return {"validators": [{"validator": v, "tombstoned": info["tombstoned"], "unbonded": info.get("unbonded", "0")}
                               for v, info in sorted(self.state.get("inactive", {}).items())]}

    def exec_set_max_cap(self, ctx: ExecCtx, body: dict) -> Response:
        if ctx.sender != self.state["admin"]:
            raise Unauthorized("only admin may set the cap")
        self.state["max_cap"] = str(parse_uint(require(body, "max_cap", (str, int)), "max_cap"))
        self._rebalance()
        return Response().add_attribute("action", "set_max_cap")

    def query_config(self, body: dict) -> dict:
        return {"denom": self.state["denom"], "converter": self.state["converter"], "max_cap": self.state["max_cap"]}

    def query_bond_status(self, body: dict) -> dict:
        delegated = sum(int(a) for a in self.state["delegations"].values())
        return {"cap": coin(int(self.state["max_cap"]), self.state["denom"]),
                "delegated": coin(delegated, self.state["denom"])}

    def query_bond_requests(self, body: dict) -> dict:
        return {"requests": {v: a for v, a in sorted(self.state["requests"].items()) if int(a) > 0}}

    def query_all_delegations(self, body: dict) -> dict:
        return {"delegations": [{"validator": v, "amount": a} for v, a in sorted(self.state["delegations"].items())]}

    def query_delegation(self, body: dict) -> dict:
        v = require(body, "validator")
        return {"validator": v, "amount": self.state["delegations"].get(v, "0")}
