"""Differential driver: the same op sequence through ``mesh_adapter`` and the upstream harness.

``ModelWorld`` mirrors the harness's operations (``conformance/mesh-upstream/src/main.rs``) on a
``MeshApp`` holding our vault, external-staking, converter and virtual-staking, with the same
names. ``snapshot()`` on either side gives the compared state, normalised to one shape:
per user the vault account (bonded, free, max_lien, total_slashable), the claims, and per
validator the stake range and pending unbonds; per validator the virtual stake; the vault's and
external staking's pending (in-flight) txs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from mesh_adapter.converter import Converter, VirtualStaking
from mesh_adapter.external_staking import ExternalStaking
from mesh_adapter.framework import MeshApp, to_binary
from mesh_adapter.numeric import coin
from mesh_adapter.upstream import UpstreamHarness
from mesh_adapter.vault import Vault, tx_id_of

DENOM = "sat"
LOCAL = "ustake"
RELAYER = "relayer"
START_TIME = 1_000_000
START_HEIGHT = 100


@dataclass
class Config:
    unbonding_period: int = 100
    slash_ratio_dsign: str = "0.1"
    slash_ratio_offline: str = "0.05"
    price: str = "1"
    discount: str = "0"
    validators: list[str] = field(default_factory=lambda: ["val1", "val2", "val3"])
    #: the model's option for upstream's immediate release (see RELEASE_TOMBSTONED_KEEPS_PERIOD)
    release_tombstoned_at_once: bool = True

    def reset_op(self) -> dict:
        return {"op": "reset", "denom": DENOM, "local_denom": LOCAL, "unbonding_period": self.unbonding_period,
                "slash_ratio_dsign": self.slash_ratio_dsign, "slash_ratio_offline": self.slash_ratio_offline,
                "price": self.price, "discount": self.discount, "validators": list(self.validators),
                "time": START_TIME, "height": START_HEIGHT}


class ModelWorld:
    """Our Python contracts wired like the harness (no authority, explicit acks, converter packets)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.app = MeshApp()
        self.app._block.time = START_TIME
        self.app._block.height = START_HEIGHT
        self.users: list[str] = []
        self.with_rewards = False  # snapshots carry each stake's pending rewards (reward sequences)
        self.app.instantiate(Vault, "vault", {"denom": DENOM, "local_staking": None}, sender="owner")
        self.app.instantiate(ExternalStaking, "external_staking", {
            "denom": DENOM, "rewards_denom": LOCAL, "vault": "vault", "unbonding_period": cfg.unbonding_period,
            "slash_ratio": {"double_sign": cfg.slash_ratio_dsign, "offline": cfg.slash_ratio_offline},
            "converter": "converter", "auto_commit": False,
            "release_tombstoned_at_once": cfg.release_tombstoned_at_once}, sender="owner")
        self.app.instantiate(VirtualStaking, "virtual_staking", {
            "denom": LOCAL, "converter": "converter", "max_cap": str(10**30)}, sender="owner")
        self.app.instantiate(Converter, "converter", {
            "price": cfg.price, "discount": cfg.discount, "remote_denom": DENOM, "local_denom": LOCAL,
            "virtual_staking": "virtual_staking", "provider": "external_staking"}, sender="owner")
        for v in cfg.validators:
            self._activate(v)

    def _user(self, name: str) -> str:
        if name not in self.users:
            self.users.append(name)
        return name

    def _activate(self, v: str) -> None:
        self.app.execute(RELAYER, "external_staking", {"test_set_active_validator": {
            "validator": {"valoper": v, "start_height": self.app.block().height}}})

    def _last_tx(self, variant: str | None = None) -> int:
        """The newest pending external-staking tx (of ``variant`` if given)."""
        txs = self.app.query("external_staking", {"all_pending_txs_desc": {"limit": 1000}})["txs"]
        return next(tx_id_of(tx) for tx in txs if variant is None or variant in tx)

    def call(self, op: dict) -> dict:
        try:
            return {"ok": True, "result": self._run(op)}
        except ValueError as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    def _run(self, op: dict) -> Any:
        name = op["op"]
        app = self.app
        if name == "bond":
            user, funds = self._user(op["user"]), [coin(int(op["amount"]), DENOM)]
            with app.atomic():
                app.mint(user, funds)
                app.execute(user, "vault", {"bond": {}}, funds)
        elif name == "unbond":
            app.execute(self._user(op["user"]), "vault", {"unbond": {"amount": coin(int(op["amount"]), DENOM)}})
        elif name == "stake_remote":
            user = self._user(op["user"])
            app.execute(user, "vault", {"stake_remote": {
                "contract": "external_staking", "amount": coin(int(op["amount"]), DENOM),
                "msg": to_binary({"validator": op["validator"]})}})
            if op.get("commit", True):
                app.execute(RELAYER, "external_staking", {"test_commit_stake": {
                    "tx_id": self._last_tx("in_flight_remote_staking")}})
        elif name == "unstake":
            user = self._user(op["user"])
            app.execute(user, "external_staking", {"unstake": {
                "validator": op["validator"], "amount": coin(int(op["amount"]), DENOM)}})
            if op.get("commit", True):
                app.execute(RELAYER, "external_staking", {"test_commit_unstake": {
                    "tx_id": self._last_tx("in_flight_remote_unstaking")}})
        elif name in ("commit_stake", "rollback_stake", "commit_unstake", "rollback_unstake"):
            app.execute(RELAYER, "external_staking", {f"test_{name}": {"tx_id": int(op["tx_id"])}})
        elif name == "withdraw_unbonded":
            app.execute(self._user(op["user"]), "external_staking", {"withdraw_unbonded": {}})
        elif name == "advance":
            app.advance(int(op.get("seconds", 0)), int(op.get("blocks", 1)))
        elif name == "activate":
            self._activate(op["validator"])
        elif name == "slash":
            block = app.block()
            resp = app.execute(RELAYER, "external_staking", {"handle_slashing": {
                "validator": op["validator"], "height": int(op.get("infraction_height", block.height)),
                "time": int(op.get("infraction_time", 0)), "tombstone": op.get("kind", "double_sign") == "double_sign"}})
            burned: dict[str, int] = {}
            for msg in resp.messages:
                packet = msg.get("wasm", {}).get("execute", {}).get("msg", {}).get("provider_packet", {})
                for v, amount in packet.get("burn", {}).get("amounts", {}).items():
                    burned[v] = burned.get(v, 0) + int(amount)
            return {"burned": burned}
        elif name == "distribute":  # upstream's DistributeBatch, via the test entry point (issue 15)
            rewards = [{"validator": v, "reward": str(int(a))} for v, a in op["rewards"]]
            total = sum(int(a) for _, a in op["rewards"])
            with app.atomic():  # the consumer's reward tokens sit in the converter (as upstream)
                if total:
                    app.mint("converter", [coin(total, LOCAL)])
                app.execute(RELAYER, "external_staking", {"test_distribute_rewards_batch": {
                    "denom": op.get("denom", LOCAL), "rewards": rewards}})
        elif name == "withdraw_rewards":
            user = self._user(op["user"])
            app.execute(user, "external_staking", {"withdraw_rewards": {
                "validator": op["validator"], "remote_recipient": f"remote-{user}"}})
            app.execute(RELAYER, "external_staking", {"test_commit_withdraw_rewards": {"tx_id": self._last_tx()}})
        elif name == "snapshot":
            return self.snapshot(op.get("validators", []))
        else:
            raise NotImplementedError(name)
        return {}

    def snapshot(self, validators: list[str]) -> dict:
        users = {}
        for u in self.users:
            acct = self.app.query("vault", {"account_details": {"account": u}})
            claims = self.app.query("vault", {"account_claims": {"account": u}})["claims"]
            stakes = {}
            for s in self.app.query("external_staking", {"stakes": {"user": u}})["stakes"]:
                full = self.app.query("external_staking", {"stake": {"user": u, "validator": s["validator"]}})
                stakes[s["validator"]] = {"stake": _rng(full["stake"]), "pending_unbonds": [
                    (int(p["amount"]), int(p["release_at"])) for p in full["pending_unbonds"]]}
                if self.with_rewards:
                    stakes[s["validator"]]["rewards"] = int(self.app.query("external_staking", {"pending_rewards": {
                        "user": u, "validator": s["validator"]}})["amount"]["amount"])
            users[u] = {"account": _account(acct),
                        "claims": [(c["lienholder"], _rng(c["amount"])) for c in claims], "stakes": stakes}
        vs = {v: int(self.app.query("virtual_staking", {"delegation": {"validator": v}})["amount"]) for v in validators}
        txs = {c: self.app.query(c, {"all_pending_txs_desc": {"limit": 30}})["txs"] for c in ("vault", "external_staking")}
        return {"users": users, "virtual_stake": vs, "pending_txs": txs}


def _rng(r: dict) -> tuple[int, int]:
    """A ValueRange in either spelling ({low, high} ours, {l, h} upstream)."""
    return (int(r.get("low", r.get("l"))), int(r.get("high", r.get("h"))))


def _account(a: dict) -> dict:
    return {"bonded": int(a["bonded"]), "free": _rng(a["free"]), "max_lien": _rng(a["max_lien"]),
            "total_slashable": _rng(a["total_slashable"])}


def upstream_snapshot(raw: dict) -> dict:
    """Normalise the harness's ``snapshot`` reply to :meth:`ModelWorld.snapshot`'s shape."""
    users = {}
    for u, d in raw["users"].items():
        stakes = {}
        for s in d["stakes"]["stakes"]:
            st = s["stake"]
            stakes[s["validator"]] = {"stake": _rng(st["stake"]), "pending_unbonds": [
                (int(p["amount"]), int(p["release_at"]) // 1_000_000_000) for p in st["pending_unbonds"]]}
        users[u] = {"account": _account(d["account"]),
                    "claims": [(c["lienholder"], _rng(c["amount"])) for c in d["claims"]["claims"]],
                    "stakes": stakes}
    return {"users": users, "virtual_stake": {v: int(x) for v, x in raw["virtual_stake"].items()}}


class UpstreamWorld:
    """The harness side, with the same ``call`` / ``snapshot`` as :class:`ModelWorld`."""

    def __init__(self, harness: UpstreamHarness, cfg: Config) -> None:
        self.h = harness
        self.cfg = cfg
        harness.run(cfg.reset_op())
        self.users: list[str] = []
        self.with_rewards = False

    def call(self, op: dict) -> dict:
        if "user" in op and op["user"] not in self.users:
            self.users.append(op["user"])
        if op["op"] == "distribute":
            return self.h.call({"op": "exec", "sender": RELAYER, "contract": "external_staking", "msg": {
                "test_distribute_rewards_batch": {"denom": op.get("denom", LOCAL), "rewards": [
                    {"validator": v, "reward": str(int(a))} for v, a in op["rewards"]]}}})
        if op["op"] == "withdraw_rewards":
            out = self.h.call({"op": "exec", "sender": op["user"], "contract": "external_staking", "msg": {
                "withdraw_rewards": {"validator": op["validator"], "remote_recipient": f"remote-{op['user']}"}}})
            if not out["ok"]:
                return out
            txs = self.h.run({"op": "query", "contract": "external_staking", "msg": {"all_pending_txs_desc": {}}})
            tx_id = next(iter(txs["txs"][0].values()))["id"]
            return self.h.call({"op": "exec", "sender": RELAYER, "contract": "external_staking",
                                "msg": {"test_commit_withdraw_rewards": {"tx_id": tx_id}}})
        return self.h.call(op)

    def snapshot(self, validators: list[str]) -> dict:
        snap = upstream_snapshot(self.h.run({"op": "snapshot", "users": self.users, "validators": validators}))
        if self.with_rewards:
            for u, d in snap["users"].items():
                for v, st in d["stakes"].items():
                    r = self.h.run({"op": "query", "contract": "external_staking",
                                    "msg": {"pending_rewards": {"user": u, "validator": v}}})
                    st["rewards"] = int(r["rewards"]["amount"])
        snap["pending_txs"] = {c: self.h.run({"op": "query", "contract": c, "msg": {
            "all_pending_txs_desc": {"limit": 30}}})["txs"] for c in ("vault", "external_staking")}
        return snap


USERS = ("alice", "bob", "carol")


def random_sequence(seed: int, length: int = 40, validators: tuple[str, ...] = ("val1", "val2", "val3"),
                    in_flight: bool = False) -> list[dict]:
    """Seeded ops. Stake/unstake amounts are multiples of 100 while a validator is unslashed, so
    the consumer's reported slash amount is an exact ratio (see ``EFFECTIVE_SLASH_RATIO``).
    ``in_flight``: some stakes/unstakes stay in flight and ``ack`` ops commit or roll back the
    newest of a kind later (off by default: the reward sequences build on the plain ones)."""
    rnd = random.Random(seed)
    ops: list[dict] = []
    for _ in range(length):
        kinds = ["bond", "stake_remote", "unstake", "withdraw_unbonded", "release", "slash", "unbond", "advance"]
        weights = [20, 26, 16, 7, 6, 7, 9, 6]
        if in_flight:  # also leave txs in flight and settle them later (commit or rollback)
            kinds, weights = kinds + ["ack"], weights + [10]
        kind = rnd.choices(kinds, weights=weights)[0]
        user, val = rnd.choice(USERS), rnd.choice(validators)
        if kind == "bond":
            ops.append({"op": "bond", "user": user, "amount": rnd.randrange(1, 30) * 100})
        elif kind == "stake_remote":
            # mostly an amount that fits the free collateral (resolved against the model's state)
            ops.append({"op": "stake_remote", "user": user, "validator": val, "amount": rnd.randrange(1, 15) * 100,
                        "_fit": rnd.random() if rnd.random() < 0.9 else None})
            if in_flight:
                ops[-1]["commit"] = rnd.random() > 0.2
        elif kind == "unstake":
            # mostly part or all of a stake the user has (resolved against the model's state)
            ops.append({"op": "unstake", "user": user, "validator": val, "amount": rnd.randrange(1, 8) * 100,
                        "_pick": rnd.random() if rnd.random() < 0.9 else None})
            if in_flight:
                ops[-1]["commit"] = rnd.random() > 0.2
        elif kind == "ack":
            # settle an in-flight tx (newest of its kind, resolved against the model's state)
            ops.append({"op": rnd.choice(["commit", "rollback"]), "_tx": rnd.choice(["stake", "unstake"])})
        elif kind == "withdraw_unbonded":
            ops.append({"op": "withdraw_unbonded", "user": user})
        elif kind == "release":
            ops.append({"op": "release", "user": user})
        elif kind == "slash":
            ops.append({"op": "slash", "validator": val, "kind": rnd.choice(["double_sign", "offline"])})
        elif kind == "unbond":
            ops.append({"op": "unbond", "user": user, "amount": rnd.randrange(1, 2000), "_free": rnd.random() < 0.6})
        else:
            ops.append({"op": "advance", "seconds": rnd.randrange(0, 80)})
    return ops
