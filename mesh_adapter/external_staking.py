"""Model of the Mesh Security provider ``external-staking`` contract (the cross-staking lien holder).

Per ``(user, validator)`` it keeps a ``Stake``: a ``ValueRange`` of staked tokens plus the
list of pending unbonds ``{amount, release_at}``. Stake arrives from the vault
(``receive_virtual_stake``), is committed when the consumer acknowledges it, and leaves via
``unstake`` -> pending unbond -> ``withdraw_unbonded`` after ``unbonding_period`` seconds,
which calls the vault's ``release_cross_stake`` (releasing the lien, oldest first).

The remote validator set is tracked with a height-indexed state history (active, jailed,
tombstoned, unbonded). ``handle_slashing`` slashes every staker of a validator that was
active at the infraction height: ``floor(stake.high * ratio)`` of the stake and the same
ratio of each still-locked pending unbond, then routes ``cross_slash {slashes, validator}``
to the vault, which cuts collateral/liens and may propagate (``burn_virtual_stake``).

IBC is replaced by direct calls: the consumer-side ``converter`` (if configured) receives the
provider packets ``stake``/``unstake``/``burn`` as ``provider_packet`` messages, and the
acknowledgement path is ``test_commit_stake`` / ``test_commit_unstake`` (upstream's
test-method names) or automatic when ``auto_commit`` is true. If ``authority`` is set, only
it may call the IBC-substitute entry points (commits, valset changes, slashing).

Execute: ``receive_virtual_stake {owner, amount, tx_id, msg}`` (vault only),
``unstake {validator, amount}``, ``withdraw_unbonded {}``,
``burn_virtual_stake {owner, amount, validator?}`` (vault only),
``test_commit_stake|test_rollback_stake|test_commit_unstake|test_rollback_unstake {tx_id}``,
``test_set_active_validator {validator: {valoper, start_height?, start_time?}}``,
``test_jail_validator|test_unjail_validator|test_tombstone_validator|test_remove_validator
{valoper, height, time}``, ``handle_slashing {validator, height, time, tombstone?,
collateral_left?: {user: amount}}`` (alias ``test_handle_slashing``; ``collateral_left`` is ours:
it caps each listed user's remaining stake + locked unbonds, so a BTC slashing tx's fee is cut
too).

Rewards: ``test_distribute_rewards {validator, rewards}`` (authority or converter; alias
``distribute_rewards``), ``distribute_batch {rewards: [{validator, reward}], denom}`` (upstream's
``DistributeBatch`` packet; alias ``test_distribute_rewards_batch``), ``withdraw_rewards
{validator, remote_recipient}`` (sends upstream's ``transfer_rewards`` packet to the converter),
``test_commit_withdraw_rewards|test_rollback_withdraw_rewards {tx_id}``,
``set_validator_commission {valoper, rate, recipient}`` (authority; ours: the finality provider's
commission, cut before the points split and paid with a ``transfer_rewards`` packet);
points-per-stake accounting with a 1e9 scale and per-stake alignment, as upstream.

Query: ``config {}``, ``max_slash {}``, ``stake {user, validator}``,
``pending_rewards {user, validator}``, ``all_pending_rewards {user, start_after?, limit?}``,
``stakes {user, start_after?, limit?}``, ``pending_unbonds {user, validator?}``,
``pending_tx {tx_id}``, ``all_pending_txs_desc {start_after?, limit?}``,
``list_remote_validators {start_after?, limit?}``, ``validator {valoper}``,
``total_stake {validator}``, ``validator_rewards {validator}``, ``reward_validators {}``.
"""

from __future__ import annotations

from .errors import (
    AlreadyTombstoned,
    InvalidConfig,
    InvalidMessage,
    NoRewards,
    NotEnoughStake,
    PaymentError,
    Unauthorized,
    UnexpectedDenom,
    UnknownTx,
    ValidatorNotActive,
    WrongTypeTx,
)
from .framework import (
    Contract,
    ExecCtx,
    Response,
    clamp_page_limit,
    from_binary,
    nonpayable,
    optional,
    require,
    wasm_execute,
)
from .numeric import Dec, ValueRange, coin, parse_coin, parse_uint

ACTIVE, JAILED, TOMBSTONED, UNBONDED = "active", "jailed", "tombstoned", "unbonded"
FIRST_TX_ID_BASE = (2**64 - 1) >> 1  # upstream: ids live above u64::MAX >> 1
DISTRIBUTION_POINTS_SCALE = 1_000_000_000


class ExternalStaking(Contract):
    """The cross-staking contract. Build with :meth:`instantiate`."""

    kind = "mesh-external-staking"
    maps = ("stakes",)  # per-account: loaded per key on the chain

    @classmethod
    def instantiate(cls, ctx: ExecCtx, msg: dict) -> "ExternalStaking":
        """``{denom, rewards_denom, vault, unbonding_period, slash_ratio: {double_sign, offline},
        authority?, converter?, auto_commit?, release_tombstoned_at_once?}``. Ratios above 1 are
        rejected. ``release_tombstoned_at_once`` (default false): upstream's immediate release of
        unstakes from a tombstoned or unbonded validator."""
        nonpayable(ctx)
        period = require(msg, "unbonding_period", int)
        if period < 0:
            raise InvalidConfig("unbonding_period must be >= 0")
        sr = require(msg, "slash_ratio", dict)
        dsign = Dec.parse(require(sr, "double_sign"), "slash_ratio.double_sign")
        offline = Dec.parse(require(sr, "offline"), "slash_ratio.offline")
        if Dec.one() < dsign or Dec.one() < offline:
            raise InvalidConfig("invalid max slashing: ratio above 1")
        config = {
            "denom": require(msg, "denom"),
            "rewards_denom": require(msg, "rewards_denom"),
            "vault": require(msg, "vault"),
            "unbonding_period": period,
            "slash_ratio": {"double_sign": str(dsign), "offline": str(offline)},
            "authority": optional(msg, "authority"),
            "converter": optional(msg, "converter"),
            "auto_commit": bool(optional(msg, "auto_commit", bool) or False),
            "release_tombstoned_at_once": bool(optional(msg, "release_tombstoned_at_once", bool) or False),
        }
        state = {"config": config, "stakes": {}, "distribution": {}, "tx_count": FIRST_TX_ID_BASE,
                 "pending_txs": {}, "validators": {}}
        return cls(ctx.contract, state)

    # --- helpers --------------------------------------------------------
    @property
    def config(self) -> dict:
        return self.state["config"]

    def _check_authority(self, ctx: ExecCtx) -> None:
        auth = self.config["authority"]
        if auth is not None and ctx.sender != auth:
            raise Unauthorized(f"only {auth} may call this entry point")

    def _stake(self, user: str, validator: str) -> dict:
        raw = self.state["stakes"].get(user, {}).get(validator)
        if raw is None:
            return {"stake": ValueRange(), "pending_unbonds": [], "withdrawn_funds": 0, "points_alignment": 0}
        return {"stake": ValueRange.from_json(raw["stake"]),
                "pending_unbonds": [{"amount": int(p["amount"]), "release_at": int(p["release_at"])}
                                    for p in raw["pending_unbonds"]],
                "withdrawn_funds": int(raw["withdrawn_funds"]),
                "points_alignment": int(raw["points_alignment"])}

    def _save_stake(self, user: str, validator: str, stake: dict) -> None:
        self.state["stakes"].setdefault(user, {})[validator] = _stake_json(stake)

    def _dist(self, validator: str) -> dict:
        return self.state["distribution"].setdefault(
            validator, {"total_stake": "0", "points_per_stake": "0", "points_leftover": "0"})

    def _add_total(self, validator: str, delta: int, stake: dict | None = None) -> None:
        """Change a validator's total stake; ``stake`` gets its points alignment updated
        (upstream ``PointsAlignment::stake_increased/decreased``) so rewards stay exact."""
        dist = self._dist(validator)
        dist["total_stake"] = str(int(dist["total_stake"]) + delta)
        if stake is not None:
            stake["points_alignment"] -= delta * int(dist["points_per_stake"])

    def _reward(self, stake: dict, validator: str) -> int:
        """Upstream ``calculate_reward`` on the low end of the stake range."""
        pps = int(self._dist(validator)["points_per_stake"]) if validator in self.state["distribution"] else 0
        points = pps * stake["stake"].low + stake["points_alignment"]
        return points // DISTRIBUTION_POINTS_SCALE - stake["withdrawn_funds"]

    def _next_tx_id(self) -> int:
        self.state["tx_count"] += 1
        return self.state["tx_count"]

    def _history(self, valoper: str) -> list:
        return self.state["validators"].get(valoper, {}).get("history", [])

    def state_at(self, valoper: str, height: int) -> str | None:
        """Validator state at ``height`` (None if unknown then)."""
        out = None
        for h, st in self._history(valoper):
            if h <= height:
                out = st
        return out

    def current_state(self, valoper: str) -> str | None:
        hist = self._history(valoper)
        return hist[-1][1] if hist else None

    def _set_state(self, valoper: str, height: int, st: str) -> None:
        """Append a state change; heights never go backwards, so the last entry is current."""
        entry = self.state["validators"].setdefault(valoper, {"history": []})
        if entry["history"]:
            height = max(height, entry["history"][-1][0])
        entry["history"].append([height, st])

    def _packet(self, packet: dict) -> list[dict]:
        conv = self.config["converter"]
        return [wasm_execute(conv, {"provider_packet": packet})] if conv else []

    def _tx(self, tx_id: int, variant: str) -> dict:
        raw = self.state["pending_txs"].get(str(tx_id))
        if raw is None:
            raise UnknownTx(f"no pending tx {tx_id}")
        if variant not in raw:
            raise WrongTypeTx(f"tx {tx_id} is not {variant}")
        return raw[variant]

    # --- staking --------------------------------------------------------
    def exec_receive_virtual_stake(self, ctx: ExecCtx, body: dict) -> Response:
        if ctx.sender != self.config["vault"]:
            raise Unauthorized("only the vault may send virtual stake")
        owner = require(body, "owner")
        amount, denom = parse_coin(require(body, "amount", dict))
        if denom != self.config["denom"]:
            raise UnexpectedDenom(f"invalid denom, expected {self.config['denom']}")
        tx_id = require(body, "tx_id", int)
        inner = from_binary(require(body, "msg", (str, dict)))
        validator = inner.get("validator")
        if not isinstance(validator, str) or not validator:
            raise InvalidMessage("msg: expected ReceiveVirtualStake {validator}")
        if self.current_state(validator) != ACTIVE:
            raise ValidatorNotActive(f"validator {validator} is not active")
        stake = self._stake(owner, validator)
        stake["stake"].prepare_add(amount, None)
        self._save_stake(owner, validator, stake)
        self.state["pending_txs"][str(tx_id)] = {"in_flight_remote_staking": {
            "id": tx_id, "amount": str(amount), "user": owner, "validator": validator}}
        resp = Response().add_attribute("action", "receive_virtual_stake").add_attribute("owner", owner) \
            .add_attribute("amount", amount).add_attribute("tx_id", tx_id)
        if self.config["auto_commit"]:
            resp.messages.extend(self._commit_stake(tx_id))
        return resp

    def _commit_stake(self, tx_id: int) -> list[dict]:
        tx = self._tx(tx_id, "in_flight_remote_staking")
        user, validator, amount = tx["user"], tx["validator"], int(tx["amount"])
        stake = self._stake(user, validator)
        stake["stake"].commit_add_saturating(amount)  # upstream: saturating up if slashed
        self._add_total(validator, amount, stake)
        self._save_stake(user, validator, stake)
        del self.state["pending_txs"][str(tx_id)]
        return [wasm_execute(self.config["vault"], {"commit_tx": {"tx_id": tx_id}})] + self._packet(
            {"stake": {"validator": validator, "stake": coin(amount, self.config["denom"]), "tx_id": tx_id}})

    def exec_test_commit_stake(self, ctx: ExecCtx, body: dict) -> Response:
        self._check_authority(ctx)
        return Response(messages=self._commit_stake(require(body, "tx_id", int))) \
            .add_attribute("action", "commit_stake")

    def exec_test_rollback_stake(self, ctx: ExecCtx, body: dict) -> Response:
        self._check_authority(ctx)
        tx_id = require(body, "tx_id", int)
        tx = self._tx(tx_id, "in_flight_remote_staking")
        stake = self._stake(tx["user"], tx["validator"])
        stake["stake"].rollback_add_saturating(int(tx["amount"]))
        self._save_stake(tx["user"], tx["validator"], stake)
        del self.state["pending_txs"][str(tx_id)]
        msg = wasm_execute(self.config["vault"], {"rollback_tx": {"tx_id": tx_id}})
        return Response(messages=[msg]).add_attribute("action", "rollback_stake")

    def exec_unstake(self, ctx: ExecCtx, body: dict) -> Response:
        """Schedule ``amount`` for release; the lien is freed after ``unbonding_period``."""
        nonpayable(ctx)
        validator = require(body, "validator")
        amount, denom = parse_coin(require(body, "amount", dict))
        if denom != self.config["denom"]:
            raise UnexpectedDenom(f"invalid denom, expected {self.config['denom']}")
        stake = self._stake(ctx.sender, validator)
        if stake["stake"].low < amount:
            raise NotEnoughStake(stake["stake"].low)
        stake["stake"].prepare_sub(amount, 0)
        self._save_stake(ctx.sender, validator, stake)
        tx_id = self._next_tx_id()
        self.state["pending_txs"][str(tx_id)] = {"in_flight_remote_unstaking": {
            "id": tx_id, "amount": str(amount), "user": ctx.sender, "validator": validator}}
        resp = Response().add_attribute("action", "unstake").add_attribute("amount", amount) \
            .add_attribute("owner", ctx.sender).add_attribute("tx_id", tx_id)
        if self.config["auto_commit"]:
            resp.messages.extend(self._commit_unstake(ctx, tx_id))
        return resp

    def _commit_unstake(self, ctx: ExecCtx, tx_id: int) -> list[dict]:
        tx = self._tx(tx_id, "in_flight_remote_unstaking")
        user, validator, amount = tx["user"], tx["validator"], int(tx["amount"])
        stake = self._stake(user, validator)
        # saturate if a slash cut the stake meanwhile (upstream takes min(amount, high), which
        # can leave high < low and then panics; we never unbond more than high - low). The
        # consumer, which got the slash as a burn, unbonds the same saturated amount.
        amount = min(amount, stake["stake"].high - stake["stake"].low)
        stake["stake"].commit_sub(amount)
        # upstream releases at once when the validator is tombstoned or unbonded (it cannot be
        # slashed any more); by default we keep the unbonding period, as the BTC behind the lien
        # stays timelocked on Bitcoin (docs/MESH_MAPPING.md, "Our choices")
        immediate = (self.config.get("release_tombstoned_at_once", False)
                     and self.current_state(validator) in (TOMBSTONED, UNBONDED))
        release_at = ctx.block.time + (0 if immediate else self.config["unbonding_period"])
        stake["pending_unbonds"].append({"amount": amount, "release_at": release_at})
        self._add_total(validator, -amount, stake)
        self._save_stake(user, validator, stake)
        del self.state["pending_txs"][str(tx_id)]
        return self._packet({"unstake": {"validator": validator,
                                         "unstake": coin(amount, self.config["denom"]), "tx_id": tx_id}})

    def exec_test_commit_unstake(self, ctx: ExecCtx, body: dict) -> Response:
        self._check_authority(ctx)
        return Response(messages=self._commit_unstake(ctx, require(body, "tx_id", int))) \
            .add_attribute("action", "commit_unstake")

    def exec_test_rollback_unstake(self, ctx: ExecCtx, body: dict) -> Response:
        self._check_authority(ctx)
        tx_id = require(body, "tx_id", int)
        tx = self._tx(tx_id, "in_flight_remote_unstaking")
        stake = self._stake(tx["user"], tx["validator"])
        stake["stake"].rollback_sub_saturating(int(tx["amount"]))
        self._save_stake(tx["user"], tx["validator"], stake)
        del self.state["pending_txs"][str(tx_id)]
        return Response().add_attribute("action", "rollback_unstake")

    def exec_withdraw_unbonded(self, ctx: ExecCtx, body: dict) -> Response:
        """Release every matured pending unbond of the sender back to the vault (oldest first)."""
        nonpayable(ctx)
        released = 0
        for validator in sorted(self.state["stakes"].get(ctx.sender, {})):
            stake = self._stake(ctx.sender, validator)
            keep = []
            for p in stake["pending_unbonds"]:
                if p["release_at"] <= ctx.block.time:
                    released += p["amount"]
                else:
                    keep.append(p)
            if len(keep) != len(stake["pending_unbonds"]):
                stake["pending_unbonds"] = keep
                self._save_stake(ctx.sender, validator, stake)
        resp = Response().add_attribute("action", "withdraw_unbonded") \
            .add_attribute("owner", ctx.sender).add_attribute("amount", released)
        if released:
            resp.add_message(wasm_execute(self.config["vault"], {"release_cross_stake": {
                "owner": ctx.sender, "amount": coin(released, self.config["denom"])}}))
        return resp

    def exec_burn_virtual_stake(self, ctx: ExecCtx, body: dict) -> Response:
        """Slash propagation from the vault: burn ``amount`` of ``owner``'s stake.

        Burns from ``validator`` first (if given), then evenly over the owner's other
        validators (remainder to the first ones, in order), then from pending unbonds.
        The lien was already reduced by the vault, so nothing is released back.
        """
        if ctx.sender != self.config["vault"]:
            raise Unauthorized("only the vault may burn virtual stake")
        owner = require(body, "owner")
        amount, denom = parse_coin(require(body, "amount", dict))
        if denom != self.config["denom"]:
            raise UnexpectedDenom(f"invalid denom, expected {self.config['denom']}")
        preferred = optional(body, "validator")
        stakes = {v: self._stake(owner, v) for v in sorted(self.state["stakes"].get(owner, {}))}
        burned: dict[str, int] = {}
        left = amount

        def burn_from(v: str, want: int) -> int:
            st = stakes[v]["stake"]
            take = min(want, st.low)
            if take:
                st.sub(take, 0)
                burned[v] = burned.get(v, 0) + take
            return take

        if preferred in stakes:
            left -= burn_from(preferred, left)
        while left > 0:
            others = [v for v in stakes if stakes[v]["stake"].low > 0]
            if not others:
                break
            share, rem = divmod(left, len(others))
            progressed = 0
            for i, v in enumerate(others):
                progressed += burn_from(v, share + (1 if i < rem else 0))
            left -= progressed
            if progressed == 0:
                break
        for v in stakes:
            if left <= 0:
                break
            keep = []
            for p in stakes[v]["pending_unbonds"]:
                cut = min(p["amount"], left)
                p["amount"] -= cut
                left -= cut
                if p["amount"]:
                    keep.append(p)
            stakes[v]["pending_unbonds"] = keep
        for v, b in burned.items():
            self._add_total(v, -b, stakes[v])
        for v, st in stakes.items():
            self._save_stake(owner, v, st)
        resp = Response().add_attribute("action", "burn_virtual_stake").add_attribute("owner", owner) \
            .add_attribute("amount", amount - left)
        if burned:
            resp.messages.extend(self._packet({"burn": {
                "validators": sorted(burned), "burn": coin(sum(burned.values()), self.config["denom"]),
                "amounts": {v: str(b) for v, b in sorted(burned.items())}}}))
        return resp

    # --- rewards --------------------------------------------------------
    def _check_reward_source(self, ctx: ExecCtx) -> None:
        """Reward packets come from the converter (the IBC channel's stand-in) or the authority."""
        if ctx.sender != self.config["converter"] or not self.config["converter"]:
            self._check_authority(ctx)

    def _rewards(self, validator: str) -> dict:
        return self.state.setdefault("rewards", {}).setdefault(
            validator, {"distributed": "0", "commission": "0", "undistributed": "0"})

    def _distribute(self, validator: str, amount: int, strict: bool) -> list[dict]:
        """Split ``amount`` for ``validator``: the FP commission (``floor(amount * rate)``) to its
        recipient, the rest by points per stake (upstream ``distribute_rewards_unchecked``). With
        no stake on the validator the rest is kept as ``undistributed`` (``strict``: an error)."""
        dist = self._dist(validator)
        total = int(dist["total_stake"])
        if total == 0 and strict:
            raise InvalidMessage(f"no stake on validator {validator} to distribute to")
        tally = self._rewards(validator)
        tally["distributed"] = str(int(tally["distributed"]) + amount)
        comm = self.state.get("commission", {}).get(validator)
        cut = Dec.parse(comm["rate"]).mul_floor(amount) if comm else 0
        msgs = []
        if cut:
            tally["commission"] = str(int(tally["commission"]) + cut)
            msgs += self._packet({"transfer_rewards": {"rewards": coin(cut, self.config["rewards_denom"]),
                                                       "recipient": comm["recipient"]}})
        rest = amount - cut
        if total == 0:
            tally["undistributed"] = str(int(tally["undistributed"]) + rest)
            return msgs
        points = rest * DISTRIBUTION_POINTS_SCALE + int(dist["points_leftover"])
        pps = points // total
        dist["points_leftover"] = str(points - pps * total)
        dist["points_per_stake"] = str(int(dist["points_per_stake"]) + pps)
        return msgs

    def exec_test_distribute_rewards(self, ctx: ExecCtx, body: dict) -> Response:
        """Rewards for ``validator`` arriving from the consumer, split pro rata to stake."""
        self._check_reward_source(ctx)
        validator = require(body, "validator")
        amount, denom = parse_coin(require(body, "rewards", dict), "rewards")
        if denom != self.config["rewards_denom"]:
            raise PaymentError(f"must send '{self.config['rewards_denom']}', got '{denom}'")
        msgs = self._distribute(validator, amount, strict=True)
        return Response(messages=msgs).add_attribute("action", "distribute_rewards") \
            .add_attribute("validator", validator).add_attribute("amount", amount)

    exec_distribute_rewards = exec_test_distribute_rewards

    def exec_distribute_batch(self, ctx: ExecCtx, body: dict) -> Response:
        """Upstream's ``DistributeBatch {rewards: [{validator, reward}], denom}`` packet (alias
        ``test_distribute_rewards_batch``). A validator without stake keeps its share as
        ``undistributed`` (upstream would fail the whole packet on the division by zero)."""
        self._check_reward_source(ctx)
        denom = require(body, "denom")
        if denom != self.config["rewards_denom"]:
            raise UnexpectedDenom(f"invalid denom, expected {self.config['rewards_denom']}")
        msgs = []
        resp = Response().add_attribute("action", "distribute_batch")
        for info in require(body, "rewards", list):
            if not isinstance(info, dict):
                raise InvalidMessage("rewards: expected [{validator, reward}]")
            validator = require(info, "validator")
            amount = parse_uint(info.get("reward"), "reward")
            msgs += self._distribute(validator, amount, strict=False)
            resp.add_attribute(f"reward_{validator}", amount)
        resp.messages.extend(msgs)
        return resp

    exec_test_distribute_rewards_batch = exec_distribute_batch

    def exec_set_validator_commission(self, ctx: ExecCtx, body: dict) -> Response:
        """Authority: the finality provider's commission on ``valoper``'s rewards (``rate`` in
        [0, 1], paid to ``recipient``). Set once, when the FP is mapped (its registration rate)."""
        self._check_authority(ctx)
        valoper = require(body, "valoper")
        rate = Dec.parse(require(body, "rate"), "rate")
        if Dec.one() < rate:
            raise InvalidConfig("commission rate must be <= 1")
        recipient = require(body, "recipient")
        self.state.setdefault("commission", {})[valoper] = {"rate": str(rate), "recipient": recipient}
        return Response().add_attribute("action", "set_validator_commission").add_attribute("valoper", valoper)

    def exec_withdraw_rewards(self, ctx: ExecCtx, body: dict) -> Response:
        """Withdraw rewards of the sender's stake on ``validator`` to ``remote_recipient``."""
        nonpayable(ctx)
        validator = require(body, "validator")
        recipient = require(body, "remote_recipient")
        stake = self._stake(ctx.sender, validator)
        amount = self._reward(stake, validator)
        if amount <= 0:
            raise NoRewards("no rewards to withdraw")
        stake["withdrawn_funds"] += amount  # reserved now; given back on rollback
        self._save_stake(ctx.sender, validator, stake)
        tx_id = self._next_tx_id()
        self.state["pending_txs"][str(tx_id)] = {"in_flight_transfer_funds": {
            "id": tx_id, "amount": str(amount), "staker": ctx.sender, "validator": validator,
            "recipient": recipient}}
        resp = Response().add_attribute("action", "withdraw_rewards").add_attribute("owner", ctx.sender) \
            .add_attribute("validator", validator).add_attribute("recipient", recipient) \
            .add_attribute("amount", amount).add_attribute("tx_id", tx_id)
        # upstream's TransferRewards packet: the consumer's converter pays the recipient
        resp.messages.extend(self._packet({"transfer_rewards": {
            "rewards": coin(amount, self.config["rewards_denom"]), "recipient": recipient, "tx_id": tx_id}}))
        if self.config["auto_commit"]:
            del self.state["pending_txs"][str(tx_id)]
        return resp

    def exec_test_commit_withdraw_rewards(self, ctx: ExecCtx, body: dict) -> Response:
        self._check_authority(ctx)
        tx_id = require(body, "tx_id", int)
        self._tx(tx_id, "in_flight_transfer_funds")
        del self.state["pending_txs"][str(tx_id)]
        return Response().add_attribute("action", "commit_withdraw_rewards")

    def exec_test_rollback_withdraw_rewards(self, ctx: ExecCtx, body: dict) -> Response:
        self._check_authority(ctx)
        tx_id = require(body, "tx_id", int)
        tx = self._tx(tx_id, "in_flight_transfer_funds")
        if self.config["converter"]:
            raise InvalidMessage("the converter already paid this transfer (direct call, no IBC): no rollback")
        stake = self._stake(tx["staker"], tx["validator"])
        stake["withdrawn_funds"] -= int(tx["amount"])
        self._save_stake(tx["staker"], tx["validator"], stake)
        del self.state["pending_txs"][str(tx_id)]
        return Response().add_attribute("action", "rollback_withdraw_rewards")

    # --- validator set --------------------------------------------------
    def exec_test_set_active_validator(self, ctx: ExecCtx, body: dict) -> Response:
        self._check_authority(ctx)
        val = require(body, "validator", dict)
        valoper = require(val, "valoper")
        height = optional(val, "start_height", int)
        self._set_state(valoper, ctx.block.height if height is None else height, ACTIVE)
        return Response().add_attribute("action", "set_active_validator").add_attribute("valoper", valoper)

    def _valset_change(self, ctx: ExecCtx, body: dict, st: str, must_exist: bool = True) -> Response:
        self._check_authority(ctx)
        valoper = require(body, "valoper")
        height = require(body, "height", int)
        if must_exist and self.current_state(valoper) is None:
            raise InvalidMessage(f"unknown validator {valoper}")
        self._set_state(valoper, height, st)
        return Response().add_attribute("action", f"validator_{st}").add_attribute("valoper", valoper)

    def exec_test_jail_validator(self, ctx: ExecCtx, body: dict) -> Response:
        return self._valset_change(ctx, body, JAILED)

    def exec_test_unjail_validator(self, ctx: ExecCtx, body: dict) -> Response:
        if self.current_state(require(body, "valoper")) == TOMBSTONED:
            raise AlreadyTombstoned("a tombstoned validator cannot be unjailed")
        return self._valset_change(ctx, body, ACTIVE)

    def exec_test_tombstone_validator(self, ctx: ExecCtx, body: dict) -> Response:
        return self._valset_change(ctx, body, TOMBSTONED)

    def exec_test_remove_validator(self, ctx: ExecCtx, body: dict) -> Response:
        return self._valset_change(ctx, body, UNBONDED)

    def exec_handle_slashing(self, ctx: ExecCtx, body: dict) -> Response:
        """Slash all stakers of ``validator`` for an infraction at ``height``; tombstone by default."""
        self._check_authority(ctx)
        validator = require(body, "validator")
        height = require(body, "height", int)
        if height < 0 or require(body, "time", int) < 0:
            raise InvalidMessage("height and time must be non-negative")
        tombstone = optional(body, "tombstone", bool)
        tombstone = True if tombstone is None else tombstone
        if self.current_state(validator) == TOMBSTONED or self.state_at(validator, height) != ACTIVE:
            raise AlreadyTombstoned(f"validator {validator} is tombstoned or was not active at {height}")
        sr = self.config["slash_ratio"]
        ratio = Dec.parse(sr["double_sign"] if tombstone else sr["offline"])
        left = self._collateral_left(body, tombstone)
        slashes = []
        stake_burned = 0
        for user in sorted(self.state["stakes"]):
            if validator not in self.state["stakes"][user]:
                continue
            stake = self._stake(user, validator)
            stake_slash = ratio.mul_floor(stake["stake"].high)
            st = stake["stake"]
            stake["stake"] = ValueRange(max(st.low - stake_slash, 0), st.high - stake_slash)
            pending_slash = 0
            for p in stake["pending_unbonds"]:
                if p["release_at"] > ctx.block.time:
                    cut = ratio.mul_floor(p["amount"])
                    p["amount"] -= cut
                    pending_slash += cut
            extra = self._cut_to_collateral_left(stake, left.get(user), ctx.block.time)
            self._add_total(validator, -(stake_slash + extra[0]), stake)
            self._save_stake(user, validator, stake)
            stake_burned += stake_slash
            if stake_slash + pending_slash + sum(extra):
                slashes.append({"user": user, "slash": str(stake_slash + pending_slash + sum(extra))})
        self._set_state(validator, height, TOMBSTONED if tombstone else JAILED)
        msgs = [wasm_execute(self.config["vault"], {"cross_slash": {"slashes": slashes, "validator": validator}})]
        if stake_burned:
            msgs += self._packet({"burn": {"validators": [validator],
                                           "burn": coin(stake_burned, self.config["denom"]),
                                           "amounts": {validator: str(stake_burned)}}})
        return Response(messages=msgs).add_attribute("action", "handle_slashing") \
            .add_attribute("validator", validator).add_attribute("ratio", str(ratio)) \
            .add_attribute("users", ",".join(s["user"] for s in slashes))

    exec_test_handle_slashing = exec_handle_slashing

    @staticmethod
    def _collateral_left(body: dict, tombstone: bool) -> dict[str, int]:
        """``collateral_left {user: amount}`` (our extension, see :meth:`_cut_to_collateral_left`)."""
        raw = optional(body, "collateral_left", dict) or {}
        if raw and not tombstone:
            raise InvalidMessage("collateral_left needs tombstone: true (the consumer unbonds the rest)")
        return {str(u): parse_uint(a, "collateral_left") for u, a in raw.items()}

    @staticmethod
    def _cut_to_collateral_left(stake: dict, left: int | None, now: int) -> tuple[int, int]:
        """Cap what stays slashable-locked (stake + still-locked pending unbonds) at ``left``, the
        collateral that survives outside mesh (BTC: the slashing tx's change output, i.e. after the
        slash *and* the tx fee). The excess is cut from the stake first, then from the newest
        pending unbonds; it is not burned on the consumer (the tombstoned validator's virtual stake
        is unbonded there as a whole). Returns ``(cut from stake, cut from pending)``."""
        if left is None:
            return 0, 0
        locked = [p for p in stake["pending_unbonds"] if p["release_at"] > now]
        excess = stake["stake"].high + sum(p["amount"] for p in locked) - left
        if excess <= 0:
            return 0, 0
        st = stake["stake"]
        from_stake = min(excess, st.high)
        stake["stake"] = ValueRange(max(st.low - from_stake, 0), st.high - from_stake)
        excess -= from_stake
        from_pending = 0
        for p in reversed(locked):
            cut = min(excess, p["amount"])
            p["amount"] -= cut
            from_pending += cut
            excess -= cut
        return from_stake, from_pending

    # --- queries --------------------------------------------------------
    def query_config(self, body: dict) -> dict:
        c = self.config
        return {"denom": c["denom"], "rewards_denom": c["rewards_denom"], "vault": c["vault"],
                "unbonding_period": c["unbonding_period"], "slash_ratio": dict(c["slash_ratio"])}

    def query_max_slash(self, body: dict) -> dict:
        sr = self.config["slash_ratio"]
        return {"slash_ratio_dsign": sr["double_sign"], "slash_ratio_offline": sr["offline"]}

    def query_stake(self, body: dict) -> dict:
        return _stake_json(self._stake(require(body, "user"), require(body, "validator")))

    def query_stakes(self, body: dict) -> dict:
        user = require(body, "user")
        start_after = optional(body, "start_after")
        limit = clamp_page_limit(body.get("limit"))
        out = [{"owner": user, "validator": v, "stake": self._stake(user, v)["stake"].to_json()}
               for v in sorted(self.state["stakes"].get(user, {})) if start_after is None or v > start_after]
        return {"stakes": out[:limit]}

    def query_pending_unbonds(self, body: dict) -> dict:
        user = require(body, "user")
        only = optional(body, "validator")
        out = []
        for v in sorted(self.state["stakes"].get(user, {})):
            if only is not None and v != only:
                continue
            for p in self._stake(user, v)["pending_unbonds"]:
                out.append({"validator": v, "amount": str(p["amount"]), "release_at": p["release_at"]})
        return {"pending": out}

    def query_pending_tx(self, body: dict) -> dict:
        tx_id = require(body, "tx_id", int)
        tx = self.state["pending_txs"].get(str(tx_id))
        if tx is None:
            raise UnknownTx(f"no pending tx {tx_id}")
        return tx

    def query_all_pending_txs_desc(self, body: dict) -> dict:
        start_after = optional(body, "start_after", int)
        limit = clamp_page_limit(body.get("limit"))
        ids = sorted((int(i) for i in self.state["pending_txs"]), reverse=True)
        ids = [i for i in ids if start_after is None or i < start_after]
        return {"txs": [self.state["pending_txs"][str(i)] for i in ids[:limit]]}

    def query_list_remote_validators(self, body: dict) -> dict:
        start_after = optional(body, "start_after")
        limit = body.get("limit")
        limit = 100 if limit is None else parse_uint(limit, "limit")
        vals = [v for v in sorted(self.state["validators"])
                if self.current_state(v) == ACTIVE and (start_after is None or v > start_after)]
        return {"validators": vals[:limit]}

    def query_validator(self, body: dict) -> dict:
        valoper = require(body, "valoper")
        return {"valoper": valoper, "state": self.current_state(valoper),
                "history": [list(e) for e in self._history(valoper)]}

    def query_pending_rewards(self, body: dict) -> dict:
        user, validator = require(body, "user"), require(body, "validator")
        amount = self._reward(self._stake(user, validator), validator)
        reward = coin(amount, self.config["rewards_denom"])
        return {"rewards": reward, "amount": reward}  # upstream's PendingRewards {rewards}; `amount` kept

    def query_all_pending_rewards(self, body: dict) -> dict:
        user = require(body, "user")
        start_after = optional(body, "start_after")
        limit = clamp_page_limit(body.get("limit"))
        out = [{"validator": v, "rewards": coin(self._reward(self._stake(user, v), v), self.config["rewards_denom"])}
               for v in sorted(self.state["stakes"].get(user, {})) if start_after is None or v > start_after]
        return {"rewards": out[:limit]}

    def query_validator_rewards(self, body: dict) -> dict:
        """Totals for one validator: ``distributed`` (received from the consumer), ``commission``
        (paid to the FP), ``undistributed`` (arrived with no stake), ``claimed`` / ``pending``
        (all stakers), ``carried`` (sub-unit points not yet a whole unit for anyone, upstream's
        alignment remainder) and the commission config. distributed = commission + undistributed
        + claimed + pending + carried, exactly."""
        validator = require(body, "validator")
        tally = dict(self.state.get("rewards", {}).get(
            validator, {"distributed": "0", "commission": "0", "undistributed": "0"}))
        claimed = pending = frac_points = 0
        pps = int(self.state["distribution"].get(validator, {}).get("points_per_stake", "0"))
        for user in sorted(self.state["stakes"]):
            if validator in self.state["stakes"][user]:
                st = self._stake(user, validator)
                points = pps * st["stake"].low + st["points_alignment"]
                claimed += st["withdrawn_funds"]
                pending += points // DISTRIBUTION_POINTS_SCALE - st["withdrawn_funds"]
                frac_points += points % DISTRIBUTION_POINTS_SCALE
        leftover = int(self.state["distribution"].get(validator, {}).get("points_leftover", "0"))
        comm = self.state.get("commission", {}).get(validator)
        return {"validator": validator, **tally, "claimed": str(claimed), "pending": str(pending),
                "carried": str(int(tally["distributed"]) - int(tally["commission"]) - int(tally["undistributed"])
                               - claimed - pending),
                "carried_points": str(leftover + frac_points),
                "commission_rate": comm["rate"] if comm else "0",
                "commission_recipient": comm["recipient"] if comm else None}

    def query_reward_validators(self, body: dict) -> dict:
        """Every validator that ever received rewards or has a commission set, sorted."""
        names = set(self.state.get("rewards", {})) | set(self.state.get("commission", {}))
        return {"validators": sorted(names)}

    def query_total_stake(self, body: dict) -> dict:
        dist = self.state["distribution"].get(require(body, "validator"), {"total_stake": "0"})
        return {"total_stake": dist["total_stake"]}


def _stake_json(stake: dict) -> dict:
    return {"stake": stake["stake"].to_json(),
            "pending_unbonds": [{"amount": str(p["amount"]), "release_at": p["release_at"]}
                                for p in stake["pending_unbonds"]],
            "withdrawn_funds": str(stake["withdrawn_funds"]),
            "points_alignment": str(stake["points_alignment"])}
