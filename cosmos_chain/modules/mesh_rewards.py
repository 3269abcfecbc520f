"""The ``mesh`` module's reward path (issue 15), mixed into :class:`~cosmos_chain.modules.mesh.MeshModule`.

Every block (``end_block``) the consumer chain modelled inside the mesh pays its block reward
(``block_reward`` genesis param, in ``virtual_denom``) plus the fees paid to it, to validators by
power; the virtual-staking contract forwards its delegations' share through the converter to
external staking, which takes each finality provider's commission and splits the rest by points
per stake over the BTC delegations' vault accounts (:mod:`mesh_adapter.rewards`). Blocks in which
no delegation is ACTIVE and the consumer has no native power are skipped (no power, no reward), and
so are blocks with ``block_reward`` 0 and an empty fee pool.

The commission is the FP's registration ``commission`` (bounded by the registry's
``min_commission_rate``/``max_commission_rate``), paid to the FP's registering address; it is set on
external staking when the FP's validator is first mapped. The reward address of a delegation is
the Cosmos address its proof of possession bound (the registry's ``staker_addr``).

Execute: ``claim_rewards {staking_tx_hash?, recipient?}`` — the sender must be that address;
every (or the one) delegation of it pays its pending rewards to it; a ``recipient`` other than the
bound address is refused. ``pay_consumer_fees {}`` (funds in the mesh bank's ``virtual_denom``,
sent from the sender's mesh balance) adds to the consumer's fee pool.

Query ``rewards {delegation {staking_tx_hash} | staker {staker_btc_pk} | address {address} |
finality_provider {fp_btc_pk} | totals {}}``.
"""

from __future__ import annotations

from dataclasses import fields
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from mesh_adapter.btc_adapter import BtcMeshAdapter, normalize_pk
from mesh_adapter.deploy import BtcMeshParams
from mesh_adapter.framework import MeshApp
from mesh_adapter.numeric import coin
from mesh_adapter.rewards import claim_rewards, delegation_rewards, reward_summary, run_consumer_block

from ..errors import InvalidRequestError, UnauthorizedError
from .base import Context

ROLE = "consumer_distribution"


def _params(cfg: dict[str, Any]) -> BtcMeshParams:
    names = {f.name for f in fields(BtcMeshParams)}
    return BtcMeshParams(**{k: v for k, v in cfg["params"].items() if k in names})


class MeshRewardsMixin:
    """Reward entry points of the mesh module (mixed into ``MeshModule``, whose ``session``,
    ``config`` and ``store`` it uses; it imports nothing of ``mesh.py``, so no cycle)."""

    # ------------------------------------------------------------------ block
    def pay_block_rewards(self, ctx: Context) -> None:
        """One consumer block (see module docstring); errors are reported, never halt the chain."""
        st = self.store(ctx)
        cfg = st.get("config")
        if not cfg or ROLE not in cfg["contracts"]:
            return
        active = ((st.get("adapter_totals") or {}).get("status") or {}).get("ACTIVE", 0)
        if not cfg["params"].get("consumer_native_power") and not active:
            return
        fee_pool = int(((st.get("contract/" + ROLE) or {}).get("state") or {}).get("fee_pool", "0"))
        if not int(cfg["params"].get("block_reward") or 0) and not fee_pool:
            return
        try:
            with self.session(ctx) as (host, _):
                paid = run_consumer_block(host, _params(cfg))
        except ValueError as exc:
            ctx.emit("mesh_error", where="block_rewards", error=str(exc))
            return
        ctx.emit("mesh_rewards", paid=str(paid), denom=cfg["params"]["virtual_denom"])

    def set_fp_commission(self, ctx: Context, host: MeshApp, adapter: BtcMeshAdapter,
                          fp: str, validator: str) -> None:
        """Give ``validator`` its FP's registration commission (once; needs the registry record)."""
        reg = ctx.app.modules.get("btc_staking")
        rec = reg.finality_provider(ctx, fp) if reg is not None else None  # type: ignore[attr-defined]
        if not rec or not rec.get("addr"):
            return
        ext = adapter.config.external_staking
        # read the commission directly: the ``validator_rewards`` query sums every staker's rewards
        if (host.contracts[ext].state.get("commission") or {}).get(validator) is not None:
            return
        # the registry accepts any decimal in [0, 1] ("5e-2", 20 digits): 18 places, floored, fixed-point
        rate = format(Decimal(str(rec.get("commission") or "0")).quantize(Decimal("1e-18"), ROUND_FLOOR), "f")
        host.execute(adapter.config.authority, ext, {"set_validator_commission": {
            "valoper": validator, "rate": rate, "recipient": rec["addr"]}})

    # ------------------------------------------------------------------ execute
    def exec_claim_rewards(self, ctx: Context, sender: str, body: dict, funds: list) -> dict:
        if funds:
            raise InvalidRequestError("mesh: claim_rewards takes no funds")
        recipient = body.get("recipient", sender)
        if recipient != sender:
            raise UnauthorizedError("mesh: rewards are paid only to the address the staker's proof of possession "
                                    f"bound ({sender}); recipient {recipient!r} refused")
        want = body.get("staking_tx_hash")
        cfg = self.config(ctx)
        p = _params(cfg)
        claimed = []
        with self.session(ctx) as (host, adapter):
            if want is not None:
                rec = adapter.records.get(str(want).lower())
                if rec is None:
                    raise InvalidRequestError(f"mesh: unknown delegation {want}")
                if rec.get("reward_address") != sender:
                    raise UnauthorizedError(f"mesh: delegation {want} pays its rewards to "
                                            f"{rec.get('reward_address')}, not {sender}")
                recs = [rec]
            else:
                recs = [r for _, r in sorted(adapter.records.items()) if r.get("reward_address") == sender]
                if not recs:
                    raise InvalidRequestError(f"mesh: no delegation pays its rewards to {sender}")
            for rec in recs:
                amount = claim_rewards(host, p, rec["account"], rec["validator"], sender)
                if amount:
                    claimed.append({"staking_tx_hash": rec["staking_tx_hash"], "amount": str(amount)})
        total = sum(int(c["amount"]) for c in claimed)
        ctx.emit("mesh_claim_rewards", address=sender, amount=str(total), denom=p.virtual_denom)
        return {"claimed": claimed, "total": coin(total, p.virtual_denom)}

    def exec_pay_consumer_fees(self, ctx: Context, sender: str, body: dict, funds: list) -> dict:
        """Pay ``amount`` of the consumer denom from the sender's mesh balance into the fee pool."""
        if funds:
            raise InvalidRequestError("mesh: pay_consumer_fees spends the mesh balance, not chain funds")
        cfg = self.config(ctx)
        if ROLE not in cfg["contracts"]:
            raise InvalidRequestError("mesh: no consumer distribution in this deployment")
        p = _params(cfg)
        try:
            amount = int(str(body.get("amount")))
        except ValueError as exc:
            raise InvalidRequestError("mesh: pay_consumer_fees needs an integer `amount`") from exc
        if amount <= 0:
            raise InvalidRequestError("mesh: amount must be positive")
        with self.session(ctx) as (host, _):
            host.execute(sender, p.consumer_distribution, {"pay_fees": {}}, [coin(amount, p.virtual_denom)])
        return {"fee_pool": coin(amount, p.virtual_denom)}

    # ------------------------------------------------------------------ queries
    def _delegation_rewards(self, host: MeshApp, p: BtcMeshParams, rec: dict) -> dict[str, Any]:
        r = delegation_rewards(host, p, rec["account"], rec["validator"])
        return {"staking_tx_hash": rec["staking_tx_hash"], "staker_btc_pk": rec["staker_btc_pk"],
                "fp_btc_pk": rec["fp_btc_pk"], "validator": rec["validator"], "status": rec["status"],
                "reward_address": rec.get("reward_address"), "pending": str(r["pending"]),
                "claimed": str(r["claimed"]), "denom": p.virtual_denom}

    def query_rewards(self, ctx: Context, body: dict) -> Any:
        if not isinstance(body, dict) or len(body) != 1:
            raise InvalidRequestError("mesh: rewards query must have exactly one key")
        (name, q), = body.items()
        q = q or {}
        cfg = self.config(ctx)
        p = _params(cfg)
        if ROLE not in cfg["contracts"]:
            raise InvalidRequestError("mesh: no consumer distribution in this deployment")
        with self.session(ctx, write=False) as (host, adapter):
            if name == "delegation":
                h = str(q.get("staking_tx_hash", "")).lower()
                if h not in adapter.records:
                    raise InvalidRequestError(f"mesh: unknown delegation {h}")
                return self._delegation_rewards(host, p, adapter.records[h])
            if name in ("staker", "address"):
                if name == "staker":
                    try:
                        pk = normalize_pk(q.get("staker_btc_pk"), "staker_btc_pk")
                    except ValueError as exc:
                        raise InvalidRequestError(f"mesh: {exc}") from exc
                    recs = [r for _, r in sorted(adapter.records.items()) if r["staker_btc_pk"] == pk]
                else:
                    addr = q.get("address")
                    if not isinstance(addr, str) or not addr:
                        raise InvalidRequestError("mesh: rewards address needs `address`")
                    recs = [r for _, r in sorted(adapter.records.items()) if r.get("reward_address") == addr]
                dels = [self._delegation_rewards(host, p, r) for r in recs]
                return {"delegations": dels, "pending": str(sum(int(d["pending"]) for d in dels)),
                        "claimed": str(sum(int(d["claimed"]) for d in dels)), "denom": p.virtual_denom}
            if name == "finality_provider":
                try:
                    fp = normalize_pk(q.get("fp_btc_pk"), "fp_btc_pk")
                except ValueError as exc:
                    raise InvalidRequestError(f"mesh: {exc}") from exc
                val = adapter.config.fp_to_validator.get(fp)
                if val is None:
                    raise InvalidRequestError(f"mesh: finality provider {fp} has no mesh validator")
                vr = host.query(p.external_staking, {"validator_rewards": {"validator": val}})
                return {"fp_btc_pk": fp, **vr, "denom": p.virtual_denom}
            if name == "totals":
                s = reward_summary(host, p)
                by_val = {v: f for f, v in adapter.config.fp_to_validator.items()}
                for v in s["validators"]:
                    v["fp_btc_pk"] = by_val.get(v["validator"])
                totals = {k: (str(v) if isinstance(v, int) and not isinstance(v, bool) else v)
                          for k, v in s["totals"].items()}
                return {"totals": totals, "validators": s["validators"], "consumer": s["consumer"],
                        "denom": p.virtual_denom, "block_reward": str(p.block_reward)}
        raise InvalidRequestError(f"mesh: unknown rewards query `{name}`")
