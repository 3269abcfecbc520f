"""Mesh Security provider/consumer contract models and the BTC delegation adapter.

Pure Python (stdlib only), integer / fixed-point math, JSON-serialisable state. Contracts:
:class:`Vault`, :class:`ExternalStaking`, :class:`LocalStaking`, :class:`Converter`,
:class:`VirtualStaking` (each ``execute(ctx, sender, msg) -> Response`` / ``query(msg) -> dict``).
Host: :class:`MeshApp` (bank + router + clock, like cw-multi-test). Adapter:
:class:`BtcMeshAdapter` (see ``docs/MESH_MAPPING.md``), wired by :func:`deploy_btc_mesh`.
"""

from .btc_adapter import AdapterConfig, BtcMeshAdapter, DelegationEvent, parse_event
from .converter import Converter, VirtualStaking
from .deploy import BtcMeshParams, adapter_config, deploy_btc_mesh, deployment_plan
from .errors import MeshError
from .external_staking import ExternalStaking
from .framework import BlockInfo, Contract, ExecCtx, MeshApp, MeshHost, Response, from_binary, to_binary
from .local_staking import LocalStaking
from .numeric import Dec, ValueRange, coin
from .plugin import CONTRACT_KINDS, CollateralSource, MeshContract, contract_from_state, register_contract
from .vault import Vault

__all__ = [
    "AdapterConfig", "BlockInfo", "BtcMeshAdapter", "BtcMeshParams", "CONTRACT_KINDS", "CollateralSource",
    "Contract", "Converter", "Dec", "DelegationEvent", "ExecCtx", "ExternalStaking", "LocalStaking", "MeshApp",
    "MeshContract", "MeshError", "MeshHost", "Response", "ValueRange", "Vault", "VirtualStaking",
    "adapter_config", "coin", "contract_from_state", "deploy_btc_mesh", "deployment_plan", "from_binary",
    "parse_event", "register_contract", "to_binary",
]
