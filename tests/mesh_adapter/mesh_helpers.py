"""Test helpers: multitest-like setup of vault + external staking (+ local staking)."""

from __future__ import annotations

from mesh_adapter.external_staking import ExternalStaking
from mesh_adapter.framework import MeshApp, to_binary
from mesh_adapter.local_staking import LocalStaking
from mesh_adapter.numeric import ValueRange, coin
from mesh_adapter.vault import Vault, tx_id_of

OSMO = "OSMO"
STAR = "star"
OWNER = "owner"
VAULT = "vault"
LOCAL = "local-staking"
CROSS = "external-staking"


def setup(unbond_period: int = 100, dsign: str = "0.1", local_ratio: str | None = "0.1",
          auto_commit: bool = False, cross_addr: str = CROSS, offline: str = "0") -> tuple[MeshApp, Vault, ExternalStaking]:
    """Vault (optionally with local staking) and one external staking contract, upstream-style."""
    app = MeshApp()
    local = None
    if local_ratio is not None:
        app.instantiate(LocalStaking, LOCAL, {"denom": OSMO, "vault": VAULT, "slash_ratio_dsign": local_ratio})
        local = {"existing": {"existing": LOCAL}}
    vault = app.instantiate(Vault, VAULT, {"denom": OSMO, "local_staking": local})
    cross = app.instantiate(ExternalStaking, cross_addr, {
        "denom": OSMO, "rewards_denom": STAR, "vault": VAULT, "unbonding_period": unbond_period,
        "slash_ratio": {"double_sign": dsign, "offline": offline}, "auto_commit": auto_commit})
    return app, vault, cross


def add_cross(app: MeshApp, addr: str, dsign: str, unbond_period: int = 100) -> ExternalStaking:
    return app.instantiate(ExternalStaking, addr, {
        "denom": OSMO, "rewards_denom": STAR, "vault": VAULT, "unbonding_period": unbond_period,
        "slash_ratio": {"double_sign": dsign, "offline": "0"}, "auto_commit": True})


def activate(app: MeshApp, cross: str, *validators: str) -> None:
    for v in validators:
        app.execute("test", cross, {"test_set_active_validator": {"validator": {"valoper": v}}})


def bond(app: MeshApp, user: str, amount: int) -> None:
    app.mint(user, [coin(amount, OSMO)])
    app.execute(user, VAULT, {"bond": {}}, [coin(amount, OSMO)])


def stake_remote(app: MeshApp, user: str, amount: int, validator: str, cross: str = CROSS, commit: bool = True):
    resp = app.execute(user, VAULT, {"stake_remote": {
        "contract": cross, "amount": coin(amount, OSMO), "msg": to_binary({"validator": validator})}})
    if commit and app.contracts[cross].state["pending_txs"]:
        app.execute("test", cross, {"test_commit_stake": {"tx_id": last_cross_tx(app, cross)}})
    return resp


def stake_local(app: MeshApp, user: str, amount: int) -> None:
    app.execute(user, VAULT, {"stake_local": {"amount": coin(amount, OSMO), "msg": to_binary({})}})


def unstake(app: MeshApp, user: str, amount: int, validator: str, cross: str = CROSS, commit: bool = True) -> None:
    app.execute(user, cross, {"unstake": {"validator": validator, "amount": coin(amount, OSMO)}})
    if commit and app.contracts[cross].state["pending_txs"]:
        app.execute("test", cross, {"test_commit_unstake": {"tx_id": last_cross_tx(app, cross)}})


def last_cross_tx(app: MeshApp, cross: str = CROSS) -> int | None:
    txs = app.query(cross, {"all_pending_txs_desc": {}})["txs"]
    return tx_id_of(txs[0]) if txs else None


def account(app: MeshApp, user: str) -> dict:
    return app.query(VAULT, {"account": {"account": user}})


def details(app: MeshApp, user: str) -> dict:
    return app.query(VAULT, {"account_details": {"account": user}})


def claim(app: MeshApp, user: str, holder: str = CROSS) -> dict:
    return app.query(VAULT, {"claim": {"account": user, "lienholder": holder}})["amount"]


def stake_of(app: MeshApp, user: str, validator: str, cross: str = CROSS) -> dict:
    return app.query(cross, {"stake": {"user": user, "validator": validator}})["stake"]


def vr(low: int, high: int | None = None) -> dict:
    return ValueRange(low, low if high is None else high).to_json()
