"""The reward path, end to end, over a :class:`~mesh_adapter.framework.MeshHost`.

Consumer → provider (every block, :func:`run_consumer_block`):

1. the host mints the consumer's block reward to the consumer chain (``authority``) and calls the
   consumer distribution's ``allocate {}`` with it: reward + fee pool split over validators by
   power; the virtual-staking delegations' share is kept as its outstanding rewards;
2. ``virtual_staking.collect_rewards {}`` (the reward half of upstream ``handle_epoch``) withdraws
   them and calls ``converter.distribute_rewards {payments}`` with the tokens;
3. the converter sends upstream's ``DistributeBatch`` packet to external staking (direct call):
   FP commission cut and paid (``transfer_rewards`` to the FP's address), the rest by points per
   stake to each delegation's vault account.

Staker (:func:`claim_rewards`): the delegation's vault account calls ``withdraw_rewards
{validator, remote_recipient}``; external staking's ``transfer_rewards`` packet makes the
converter pay the recipient. The chain only lets the Cosmos address the staker's proof of
possession bound be that recipient.

:func:`reward_summary` gives the reconciliation: what the consumer paid into the mesh =
claimed + pending + commission + undistributed + carried (sub-unit points), to the unit.
"""

from __future__ import annotations

from typing import Any

from .deploy import BtcMeshParams
from .errors import NoRewards
from .framework import MeshHost
from .numeric import coin


def run_consumer_block(host: MeshHost, p: BtcMeshParams, block_reward: int | None = None) -> int:
    """One consumer block: mint + allocate the reward (and fees), then the virtual-staking epoch
    forwards its rewards to the provider. Returns the amount paid into the mesh this block."""
    reward = p.block_reward if block_reward is None else block_reward
    funds = [coin(reward, p.virtual_denom)] if reward else []
    atomic = getattr(host, "atomic", None)
    before = consumer_paid(host, p)
    if atomic is not None:
        with atomic():
            _block(host, p, funds)
    else:
        _block(host, p, funds)
    return consumer_paid(host, p) - before


def _block(host: MeshHost, p: BtcMeshParams, funds: list[dict]) -> None:
    if funds:
        host.mint(p.authority, funds)
    host.execute(p.authority, p.consumer_distribution, {"allocate": {}}, funds)
    host.execute(p.authority, p.virtual_staking, {"collect_rewards": {}})


def consumer_paid(host: MeshHost, p: BtcMeshParams) -> int:
    """Rewards the consumer paid into the mesh (withdrawn by virtual staking and forwarded)."""
    return int(host.query(p.consumer_distribution, {"totals": {}})["withdrawn"])


def delegation_rewards(host: MeshHost, p: BtcMeshParams, account: str, validator: str) -> dict[str, int]:
    """``{pending, claimed}`` of one delegation's vault account on its validator."""
    stake = host.query(p.external_staking, {"stake": {"user": account, "validator": validator}})
    pending = host.query(p.external_staking, {"pending_rewards": {"user": account, "validator": validator}})
    return {"pending": int(pending["amount"]["amount"]), "claimed": int(stake["withdrawn_funds"])}


def claim_rewards(host: MeshHost, p: BtcMeshParams, account: str, validator: str, recipient: str) -> int:
    """Pay the account's pending rewards on ``validator`` to ``recipient``; returns the amount (0 if none)."""
    try:
        resp = host.execute(account, p.external_staking, {"withdraw_rewards": {
            "validator": validator, "remote_recipient": recipient}})
    except NoRewards:
        return 0
    return int(resp.attr("amount") or 0)


def validator_rewards(host: MeshHost, p: BtcMeshParams) -> list[dict[str, Any]]:
    """Per-validator totals from external staking (``validator_rewards`` for each)."""
    names = host.query(p.external_staking, {"reward_validators": {}})["validators"]
    return [host.query(p.external_staking, {"validator_rewards": {"validator": v}}) for v in names]


def reward_summary(host: MeshHost, p: BtcMeshParams) -> dict[str, Any]:
    """Totals and the reconciliation: ``paid == claimed + pending + commission + undistributed +
    carried`` (``balanced``), with the consumer's own split (``consumer``)."""
    vals = validator_rewards(host, p)
    keys = ("distributed", "claimed", "pending", "commission", "undistributed", "carried")
    total = {k: sum(int(v[k]) for v in vals) for k in keys}
    paid = consumer_paid(host, p)
    total["paid_by_consumer"] = paid
    total["balanced"] = paid == total["distributed"] == (total["claimed"] + total["pending"] + total["commission"]
                                                         + total["undistributed"] + total["carried"])
    total["converter_balance"] = host.balance(p.converter, p.virtual_denom) if hasattr(host, "balance") else None
    return {"totals": total, "validators": vals, "consumer": host.query(p.consumer_distribution, {"totals": {}})}
