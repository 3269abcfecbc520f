"""Wiring: instantiate vault + external staking + converter + virtual staking (+ the consumer's
reward distribution) for BTC collateral.

``deployment_plan`` returns ``[(contract_class, address, instantiate_msg), ...]`` in
dependency order, for a chain that hosts the contracts itself; ``deploy_btc_mesh`` runs the plan
on a :class:`MeshApp` and returns a ready :class:`BtcMeshAdapter`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .btc_adapter import AdapterConfig, BtcMeshAdapter
from .consumer import ConsumerDistribution
from .converter import Converter, VirtualStaking
from .external_staking import ExternalStaking
from .framework import MeshApp
from .vault import Vault


@dataclass
class BtcMeshParams:
    """Deployment parameters; ``slashing_rate`` should equal Babylon's ``slashing_rate``."""

    denom: str = "sat"
    virtual_denom: str = "ustake"
    rewards_denom: str = "ustake"
    price: str = "1"
    discount: str = "0"
    slashing_rate: str = "0.1"
    unbonding_period: int = 1_814_400  # seconds (21 days)
    max_cap: int = 10**18
    max_virtual_per_validator: int | None = None
    fp_to_validator: dict[str, str] = field(default_factory=dict)
    authority: str = "btc-mesh-adapter"
    vault: str = "mesh-vault"
    external_staking: str = "mesh-external-staking"
    converter: str = "mesh-converter"
    virtual_staking: str = "mesh-virtual-staking"
    unbond_slashed: bool = True
    #: consumer block reward (``virtual_denom`` units per block), paid with the fees to validators by
    #: power; 0 (the default) turns block rewards off (fees paid to the consumer still flow)
    block_reward: int = 0
    #: consumer validators' native (non-virtual) power, ``{valoper: power}``
    consumer_native_power: dict[str, int] = field(default_factory=dict)
    consumer_distribution: str = "mesh-consumer-distribution"


def deployment_plan(p: BtcMeshParams) -> list[tuple[type, str, dict]]:
    """Contracts to instantiate, in order, with their upstream-shaped instantiate messages."""
    return [
        (Vault, p.vault, {"denom": p.denom, "local_staking": None}),
        (ExternalStaking, p.external_staking, {
            "denom": p.denom, "rewards_denom": p.rewards_denom, "vault": p.vault,
            "unbonding_period": p.unbonding_period,
            "slash_ratio": {"double_sign": p.slashing_rate, "offline": "0"},
            "authority": p.authority, "converter": p.converter, "auto_commit": True}),
        (VirtualStaking, p.virtual_staking, {"denom": p.virtual_denom, "converter": p.converter,
                                             "max_cap": str(p.max_cap), "admin": p.authority,
                                             "distribution": p.consumer_distribution}),
        (Converter, p.converter, {"price": p.price, "discount": p.discount, "remote_denom": p.denom,
                                  "local_denom": p.virtual_denom, "virtual_staking": p.virtual_staking,
                                  "provider": p.external_staking, "admin": p.authority}),
        (ConsumerDistribution, p.consumer_distribution, {
            "denom": p.virtual_denom, "virtual_staking": p.virtual_staking, "authority": p.authority,
            "block_reward": str(p.block_reward), "native_power": dict(p.consumer_native_power)}),
    ]


def adapter_config(p: BtcMeshParams) -> AdapterConfig:
    return AdapterConfig(vault=p.vault, external_staking=p.external_staking, fp_to_validator=dict(p.fp_to_validator),
                         denom=p.denom, price=p.price, discount=p.discount,
                         max_virtual_per_validator=p.max_virtual_per_validator, authority=p.authority,
                         unbond_slashed=p.unbond_slashed, virtual_staking=p.virtual_staking)


def deploy_btc_mesh(app: MeshApp, params: BtcMeshParams | None = None) -> BtcMeshAdapter:
    """Instantiate the plan on ``app``; mapped validators are activated. Returns the adapter."""
    p = params or BtcMeshParams()
    for cls, addr, msg in deployment_plan(p):
        app.instantiate(cls, addr, msg, sender=p.authority)
    adapter = BtcMeshAdapter(app, adapter_config(p))
    for fp, val in sorted(adapter.config.fp_to_validator.items()):
        adapter.register_finality_provider(fp, val)
    return adapter
