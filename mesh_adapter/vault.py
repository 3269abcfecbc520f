"""Model of the Mesh Security provider ``vault`` contract (osmosis-labs/mesh-security).

The vault holds each user's collateral and grants *liens* on it to staking contracts
(the local/native staking contract and any number of cross-staking contracts such as
``external-staking``). Per user it keeps, exactly as upstream ``UserInfo``:

* ``collateral`` - bonded tokens;
* ``max_lien`` - the largest single lien (a ``ValueRange`` while txs are in flight);
* ``total_slashable`` - the sum over liens of ``floor(lien.amount * lien.slashable)``.

``used = max(max_lien, total_slashable)`` and ``free = collateral - used``. Both terms
matter: a lien can be used in full by its holder, and all liens can be slashed at once.

Execute messages (upstream JSON shapes): ``bond {}`` (funds), ``unbond {amount}``,
``stake_remote {contract, amount, msg}``, ``stake_local {amount, msg}``;
lien-holder callbacks ``release_cross_stake {owner, amount}``,
``release_local_stake {owner}`` (funds), ``commit_tx {tx_id}``, ``rollback_tx {tx_id}``,
``cross_slash {slashes: [{user, slash}], validator}``, ``local_slash {...}``.

Queries: ``account {account}``, ``account_details {account}``, ``config {}``,
``claim {account, lienholder}``, ``account_claims {account, start_after?, limit?}``,
``all_accounts {with_collateral?, start_after?, limit?}``, ``pending_tx {tx_id}``,
``all_pending_txs_desc {start_after?, limit?}``, ``active_external_staking {}``.
"""

from __future__ import annotations



from .errors import (
    ClaimsLocked,
    InsufficientBalance,
    InsufficientLien,
    InvalidMessage,
    NoClaim,
    NoLocalStaking,
    UnexpectedDenom,
    UnknownLienholder,
    UnknownTx,
    WrongTypeTx,
)
from .framework import (
    Contract,
    ExecCtx,
    Response,
    bank_send,
    clamp_page_limit,
    must_pay,
    nonpayable,
    optional,
    require,
    wasm_execute,
)
from .numeric import Dec, ValueRange, coin, max_range, parse_coin, parse_uint


class UserInfo:
    """``vault::state::UserInfo`` with the upstream invariant helpers."""

    def __init__(self, collateral: int = 0, max_lien: ValueRange | None = None,
                 total_slashable: ValueRange | None = None) -> None:
        self.collateral = collateral
        self.max_lien = max_lien or ValueRange()
        self.total_slashable = total_slashable or ValueRange()

    def used_collateral(self) -> ValueRange:
        """``max(max_lien, total_slashable)``, element-wise over the range."""
        return max_range(self.max_lien, self.total_slashable)

    def free_collateral(self) -> ValueRange:
        """``collateral - used`` (low end uses the high end of ``used``)."""
        used = self.used_collateral()
        return ValueRange(max(self.collateral - used.high, 0), max(self.collateral - used.low, 0))

    def verify_collateral(self) -> bool:
        return self.collateral >= self.used_collateral().high

    def to_json(self) -> dict:
        return {"collateral": str(self.collateral), "max_lien": self.max_lien.to_json(),
                "total_slashable": self.total_slashable.to_json()}

    @classmethod
    def from_json(cls, d: dict) -> "UserInfo":
        return cls(int(d["collateral"]), ValueRange.from_json(d["max_lien"]),
                   ValueRange.from_json(d["total_slashable"]))


class Lien:
    """``vault::state::Lien``: amount range and the lien holder's slashable ratio."""

    def __init__(self, amount: ValueRange, slashable: Dec) -> None:
        self.amount = amount
        self.slashable = slashable

    def to_json(self) -> dict:
        return {"amount": self.amount.to_json(), "slashable": str(self.slashable)}

    @classmethod
    def from_json(cls, d: dict) -> "Lien":
        return cls(ValueRange.from_json(d["amount"]), Dec.parse(d["slashable"]))


class Vault(Contract):
    """The provider vault. Build with :meth:`instantiate`; see module docstring for messages."""

    kind = "mesh-vault"
    maps = ("users", "liens")  # per-account: loaded per key on the chain

    @classmethod
    def instantiate(cls, ctx: ExecCtx, msg: dict) -> "Vault":
        """``InstantiateMsg {denom, local_staking?}``.

        ``local_staking`` is ``null`` or ``{"existing": {"existing": <addr>}}``; the vault
        queries ``max_slash {}`` on it (``slash_ratio_dsign`` becomes the local lien ratio).
        """
        nonpayable(ctx)
        denom = require(msg, "denom")
        local: dict | None = None
        info = optional(msg, "local_staking", dict)
        if info is not None:
            existing = info.get("existing")
            addr = existing.get("existing") if isinstance(existing, dict) else None
            if not isinstance(addr, str) or not addr:
                raise InvalidMessage("local_staking: only {existing: {existing: addr}} is supported")
            resp = ctx.query(addr, {"max_slash": {}})
            local = {"contract": addr, "max_slash": str(Dec.parse(resp["slash_ratio_dsign"]))}
        state = {"config": {"denom": denom}, "local_staking": local, "liens": {}, "users": {},
                 "active_external": [], "tx_count": 0, "pending": {}}
        return cls(ctx.contract, state)

    # --- state helpers --------------------------------------------------
    @property
    def denom(self) -> str:
        return self.state["config"]["denom"]

    def _user(self, addr: str) -> UserInfo:
        raw = self.state["users"].get(addr)
        return UserInfo.from_json(raw) if raw else UserInfo()

    def _save_user(self, addr: str, user: UserInfo) -> None:
        self.state["users"][addr] = user.to_json()

    def _lien(self, user: str, holder: str) -> Lien | None:
        raw = self.state["liens"].get(user, {}).get(holder)
        return Lien.from_json(raw) if raw else None

    def _save_lien(self, user: str, holder: str, lien: Lien) -> None:
        self.state["liens"].setdefault(user, {})[holder] = lien.to_json()

    def _remove_lien(self, user: str, holder: str) -> None:
        liens = self.state["liens"].get(user, {})
        liens.pop(holder, None)
        if not liens:
            self.state["liens"].pop(user, None)

    def _user_liens(self, user: str) -> list[tuple[str, Lien]]:
        return [(h, Lien.from_json(raw)) for h, raw in sorted(self.state["liens"].get(user, {}).items())]

    def _recalculate_max_lien(self, user: str, info: UserInfo) -> None:
        acc = ValueRange()
        for _, lien in self._user_liens(user):
            acc = max_range(acc, lien.amount)
        info.max_lien = acc

    def _clear_dust(self, user: str, info: UserInfo) -> None:
        """Deviation from upstream: ``total_slashable`` sums per-operation floors, so after every
        lien is released a few units of rounding dust can remain and lock collateral forever.
        Once the user holds no (non-empty) lien, the dust is cleared."""
        if all(lien.amount.high == 0 for _, lien in self._user_liens(user)):
            info.total_slashable = ValueRange()

    def _check_denom(self, denom: str) -> None:
        if denom != self.denom:
            raise UnexpectedDenom(f"unexpected denom, expected {self.denom}, got {denom}")

    def _next_tx_id(self) -> int:
        self.state["tx_count"] += 1
        return self.state["tx_count"]

    # --- execute --------------------------------------------------------
    def exec_bond(self, ctx: ExecCtx, body: dict) -> Response:
        amount = must_pay(ctx, self.denom)
        user = self._user(ctx.sender)
        user.collateral += amount
        self._save_user(ctx.sender, user)
        return Response().add_attribute("action", "bond").add_attribute("sender", ctx.sender) \
            .add_attribute("amount", coin_str(amount, self.denom))

    def exec_unbond(self, ctx: ExecCtx, body: dict) -> Response:
        nonpayable(ctx)
        amount, denom = parse_coin(require(body, "amount", dict))
        self._check_denom(denom)
        user = self._user(ctx.sender)
        free = user.free_collateral()
        if free.low < amount:
            raise ClaimsLocked(free.to_json())
        user.collateral -= amount
        self._save_user(ctx.sender, user)
        return Response(messages=[bank_send(ctx.sender, [coin(amount, denom)])]) \
            .add_attribute("action", "unbond").add_attribute("sender", ctx.sender) \
            .add_attribute("amount", coin_str(amount, denom))

    def exec_stake_remote(self, ctx: ExecCtx, body: dict) -> Response:
        nonpayable(ctx)
        contract = require(body, "contract")
        amount, denom = parse_coin(require(body, "amount", dict))
        msg = require(body, "msg", (str, dict))
        slashable = Dec.parse(ctx.query(contract, {"max_slash": {}})["slash_ratio_dsign"])
        tx_id = self._stake(ctx.sender, contract, slashable, amount, denom, remote=True)
        if contract not in self.state["active_external"]:
            self.state["active_external"] = sorted(self.state["active_external"] + [contract])
        stake_msg = wasm_execute(contract, {"receive_virtual_stake": {
            "owner": ctx.sender, "amount": coin(amount, denom), "tx_id": tx_id, "msg": msg}})
        return Response(messages=[stake_msg]).add_attribute("action", "stake_remote") \
            .add_attribute("sender", ctx.sender).add_attribute("amount", amount) \
            .add_attribute("tx_id", tx_id)

    def exec_stake_local(self, ctx: ExecCtx, body: dict) -> Response:
        nonpayable(ctx)
        amount, denom = parse_coin(require(body, "amount", dict))
        msg = require(body, "msg", (str, dict))
        local = self.state["local_staking"]
        if local is None:
            raise NoLocalStaking("vault has no local staking contract")
        self._stake(ctx.sender, local["contract"], Dec.parse(local["max_slash"]), amount, denom, remote=False)
        stake_msg = wasm_execute(local["contract"], {"receive_stake": {"owner": ctx.sender, "msg": msg}},
                                 [coin(amount, denom)])
        return Response(messages=[stake_msg]).add_attribute("action", "stake_local") \
            .add_attribute("sender", ctx.sender).add_attribute("amount", amount)

    def exec_release_cross_stake(self, ctx: ExecCtx, body: dict) -> Response:
        nonpayable(ctx)
        owner = require(body, "owner")
        amount, denom = parse_coin(require(body, "amount", dict))
        self._unstake(ctx.sender, owner, amount, denom)
        return Response().add_attribute("action", "release_cross_stake") \
            .add_attribute("sender", ctx.sender).add_attribute("owner", owner).add_attribute("amount", amount)

    def exec_release_local_stake(self, ctx: ExecCtx, body: dict) -> Response:
        owner = require(body, "owner")
        amount = must_pay(ctx, self.denom)
        self._unstake(ctx.sender, owner, amount, self.denom)
        return Response().add_attribute("action", "release_cross_stake") \
            .add_attribute("sender", ctx.sender).add_attribute("owner", owner).add_attribute("amount", amount)

    def exec_commit_tx(self, ctx: ExecCtx, body: dict) -> Response:
        tx_id = _tx_id(body)
        tx = self._load_staking_tx(ctx.sender, tx_id)
        user, holder, amount = tx["user"], tx["lienholder"], int(tx["amount"])
        lien = self._lien(user, holder)
        lien.amount.commit_add(amount)
        self._save_lien(user, holder, lien)
        info = self._user(user)
        info.max_lien = max_range(info.max_lien, lien.amount)
        info.total_slashable.commit_add(lien.slashable.mul_floor(amount))
        self._save_user(user, info)
        del self.state["pending"][str(tx_id)]
        return Response().add_attribute("action", "commit_tx").add_attribute("sender", ctx.sender) \
            .add_attribute("tx_id", tx_id)

    def exec_rollback_tx(self, ctx: ExecCtx, body: dict) -> Response:
        tx_id = _tx_id(body)
        tx = self._load_staking_tx(ctx.sender, tx_id)
        user, holder, amount = tx["user"], tx["lienholder"], int(tx["amount"])
        lien = self._lien(user, holder)
        lien.amount.rollback_add(amount)
        if lien.amount.high == 0:
            self._remove_lien(user, holder)
        else:
            self._save_lien(user, holder, lien)
        info = self._user(user)
        self._recalculate_max_lien(user, info)
        info.total_slashable.rollback_add(Dec.parse(tx["slashable"]).mul_floor(amount))
        self._clear_dust(user, info)
        self._save_user(user, info)
        del self.state["pending"][str(tx_id)]
        return Response().add_attribute("action", "rollback_tx").add_attribute("sender", ctx.sender) \
            .add_attribute("tx_id", tx_id)

    def exec_cross_slash(self, ctx: ExecCtx, body: dict) -> Response:
        return self._slash_entry(ctx, body, "cross_slash")

    def exec_local_slash(self, ctx: ExecCtx, body: dict) -> Response:
        return self._slash_entry(ctx, body, "local_slash")

    # --- internals ------------------------------------------------------
    def _stake(self, sender: str, holder: str, slashable: Dec, amount: int, denom: str, remote: bool) -> int:
        """Upstream ``VaultContract::stake``: grant (or prepare) a lien; returns the tx id (0 local)."""
        self._check_denom(denom)
        lien = self._lien(sender, holder) or Lien(ValueRange(), slashable)
        user = self._user(sender)
        try:
            if remote:
                lien.amount.prepare_add(amount, user.collateral)
                user.max_lien = max_range(user.max_lien, lien.amount)
                user.total_slashable.prepare_add(lien.slashable.mul_floor(amount), user.collateral)
            else:
                lien.amount.add(amount, user.collateral)
                user.max_lien = max_range(user.max_lien, lien.amount)
                user.total_slashable.add(lien.slashable.mul_floor(amount), user.collateral)
        except InsufficientBalance as exc:
            raise InsufficientBalance("insufficient balance") from exc
        if not user.verify_collateral():
            raise InsufficientBalance("insufficient balance")
        self._save_lien(sender, holder, lien)
        self._save_user(sender, user)
        if not remote:
            return 0
        tx_id = self._next_tx_id()
        self.state["pending"][str(tx_id)] = {"in_flight_staking": {
            "id": tx_id, "amount": str(amount), "slashable": str(slashable),
            "user": sender, "lienholder": holder}}
        return tx_id

    def _load_staking_tx(self, sender: str, tx_id: int) -> dict:
        raw = self.state["pending"].get(str(tx_id))
        if raw is None:
            raise UnknownTx(f"no pending tx {tx_id}")
        tx = raw.get("in_flight_staking")
        if tx is None:
            raise WrongTypeTx(f"tx {tx_id} is not an in-flight staking tx")
        if tx["lienholder"] != sender:
            raise WrongTypeTx(f"tx {tx_id} does not belong to contract {sender}")
        return tx

    def _unstake(self, holder: str, owner: str, amount: int, denom: str) -> None:
        """Upstream ``VaultContract::unstake``: release part of ``owner``'s lien to ``holder``."""
        self._check_denom(denom)
        lien = self._lien(owner, holder)
        if lien is None:
            raise UnknownLienholder(f"{holder} holds no lien on {owner}")
        try:
            lien.amount.sub(amount, 0)
        except InsufficientBalance as exc:
            raise InsufficientLien(f"lien of {owner} to {holder} is smaller than {amount}") from exc
        if lien.amount.high == 0:
            self._remove_lien(owner, holder)
        else:
            self._save_lien(owner, holder, lien)
        user = self._user(owner)
        self._recalculate_max_lien(owner, user)
        user.total_slashable.sub(lien.slashable.mul_floor(amount), 0)
        self._clear_dust(owner, user)
        self._save_user(owner, user)

    def _slash_entry(self, ctx: ExecCtx, body: dict, action: str) -> Response:
        nonpayable(ctx)
        slashes = require(body, "slashes", list)
        validator = require(body, "validator")
        parsed = []
        for item in slashes:
            if not isinstance(item, dict):
                raise InvalidMessage("slashes: each entry must be {user, slash}")
            parsed.append((require(item, "user"), parse_uint(require(item, "slash", (str, int)), "slash")))
        msgs = self._slash(ctx.sender, parsed, validator)
        resp = Response(messages=msgs).add_attribute("action", action) \
            .add_attribute("lien_holder", ctx.sender).add_attribute("validator", validator) \
            .add_attribute("users", ", ".join(u for u, _ in parsed))
        return resp

    def _slash(self, holder: str, slashes: list[tuple[str, int]], validator: str) -> list[dict]:
        """Upstream ``VaultContract::slash``: cut collateral and the lien, then propagate."""
        msgs: list[dict] = []
        for user_addr, slash_amount in slashes:
            lien = self._lien(user_addr, holder)
            if lien is None:
                raise UnknownLienholder(f"{holder} holds no lien on {user_addr}")
            user = self._user(user_addr)
            if slash_amount > user.collateral:
                raise InsufficientBalance(f"slash {slash_amount} exceeds collateral of {user_addr}")
            new_collateral = user.collateral - slash_amount
            try:
                lien.amount.sub(slash_amount, 0)
            except InsufficientBalance as exc:
                raise InsufficientLien(f"slash {slash_amount} exceeds lien of {user_addr}") from exc
            self._save_lien(user_addr, holder, lien)
            user.total_slashable.sub(lien.slashable.mul_floor(slash_amount), 0)
            self._recalculate_max_lien(user_addr, user)
            # free collateral after slashing the lien, before adjusting the collateral
            free = user.free_collateral().low
            if free < slash_amount:
                msgs.extend(self._propagate_slash(user_addr, user, new_collateral,
                                                  slash_amount - free, holder, validator))
            user.collateral = new_collateral
            self._recalculate_max_lien(user_addr, user)
            self._clear_dust(user_addr, user)
            self._save_user(user_addr, user)
        return msgs

    def _propagate_slash(self, user_addr: str, user: UserInfo, new_collateral: int, claimed: int,
                         slashed_holder: str, slashed_validator: str) -> list[dict]:
        """Upstream ``propagate_slash``: restore ``free >= 0`` by cutting liens and burning stake.

        If ``max_lien >= total_slashable`` the liens above the new collateral are cut down to it;
        otherwise every lien is cut by ``ceil(claimed / sum(slashable ratios))``.
        """
        msgs: list[dict] = []
        if user.max_lien.high >= user.total_slashable.high:
            for holder, lien in self._user_liens(user_addr):
                if lien.amount.high <= new_collateral:
                    continue
                new_low = min(lien.amount.low, new_collateral)
                new_high = min(lien.amount.high, new_collateral)
                adj_low = lien.amount.low - new_low
                adj_high = lien.amount.high - new_high
                user.total_slashable = ValueRange(
                    user.total_slashable.low - lien.slashable.mul_floor(adj_low),
                    user.total_slashable.high - lien.slashable.mul_floor(adj_high))
                lien.amount = ValueRange(new_low, new_high)
                self._save_lien(user_addr, holder, lien)
                validator = slashed_validator if holder == slashed_holder else None
                msgs.append(self._burn_msg(user_addr, holder, adj_high, validator))
        else:
            ratio_sum = Dec.zero()
            for _, lien in self._user_liens(user_addr):
                ratio_sum = ratio_sum + lien.slashable
            sub_amount = ratio_sum.inv().mul_ceil(claimed)
            for holder, lien in self._user_liens(user_addr):
                user.total_slashable.sub(lien.slashable.mul_floor(sub_amount), 0)
                try:
                    lien.amount.sub(sub_amount, 0)
                except InsufficientBalance as exc:
                    raise InsufficientLien(f"cannot propagate slash over lien {holder}") from exc
                self._save_lien(user_addr, holder, lien)
                validator = slashed_validator if holder == slashed_holder else None
                msgs.append(self._burn_msg(user_addr, holder, sub_amount, validator))
        return msgs

    def _burn_msg(self, user: str, holder: str, amount: int, validator: str | None) -> dict:
        local = self.state["local_staking"]
        body = {"owner": user, "amount": coin(amount, self.denom), "validator": validator}
        if local is not None and local["contract"] == holder:
            return wasm_execute(holder, {"burn_stake": body})
        return wasm_execute(holder, {"burn_virtual_stake": body})

    # --- queries --------------------------------------------------------
    def _account_json(self, user: UserInfo) -> dict:
        return {"denom": self.denom, "bonded": str(user.collateral), "free": user.free_collateral().to_json()}

    def query_account(self, body: dict) -> dict:
        return self._account_json(self._user(require(body, "account")))

    def query_account_details(self, body: dict) -> dict:
        user = self._user(require(body, "account"))
        out = self._account_json(user)
        out.update({"max_lien": user.max_lien.to_json(), "total_slashable": user.total_slashable.to_json()})
        return out

    def query_config(self, body: dict) -> dict:
        local = self.state["local_staking"]
        return {"denom": self.denom, "local_staking": local["contract"] if local else None}

    def query_active_external_staking(self, body: dict) -> dict:
        return {"contracts": list(self.state["active_external"])}

    def query_claim(self, body: dict) -> dict:
        lien = self._lien(require(body, "account"), require(body, "lienholder"))
        if lien is None:
            raise NoClaim("no claim between account and lienholder")
        return lien.to_json()

    def query_account_claims(self, body: dict) -> dict:
        account = require(body, "account")
        start_after = optional(body, "start_after")
        limit = clamp_page_limit(body.get("limit"))
        claims = [{"lienholder": h, "amount": lien.amount.to_json()}
                  for h, lien in self._user_liens(account) if start_after is None or h > start_after]
        return {"claims": claims[:limit]}

    def query_all_accounts(self, body: dict) -> dict:
        with_collateral = bool(optional(body, "with_collateral", bool) or False)
        start_after = optional(body, "start_after")
        limit = clamp_page_limit(body.get("limit"))
        out = []
        for addr in sorted(self.state["users"]):
            if start_after is not None and addr <= start_after:
                continue
            user = self._user(addr)
            if with_collateral and user.collateral == 0:
                continue
            out.append({"user": addr, "account": self._account_json(user)})
        return {"accounts": out[:limit]}

    def query_pending_tx(self, body: dict) -> dict:
        tx_id = _tx_id(body)
        tx = self.state["pending"].get(str(tx_id))
        if tx is None:
            raise UnknownTx(f"no pending tx {tx_id}")
        return tx

    def query_all_pending_txs_desc(self, body: dict) -> dict:
        start_after = optional(body, "start_after", int)
        limit = clamp_page_limit(body.get("limit"))
        ids = sorted((int(i) for i in self.state["pending"]), reverse=True)
        ids = [i for i in ids if start_after is None or i < start_after]
        return {"txs": [self.state["pending"][str(i)] for i in ids[:limit]]}


def coin_str(amount: int, denom: str) -> str:
    """``Coin`` Display form (``100sat``)."""
    return f"{amount}{denom}"


def _tx_id(body: dict) -> int:
    tx_id = require(body, "tx_id", int)
    if tx_id < 0:
        raise InvalidMessage("tx_id must be non-negative")
    return tx_id


def tx_id_of(tx: dict) -> int:
    """``Tx::id`` for any tx variant JSON."""
    ((_, inner),) = tx.items()
    return int(inner["id"])


__all__ = ["Vault", "UserInfo", "Lien", "tx_id_of"]


