"""Plugin interface for mesh contracts, and the registry used to rebuild them from state.

A *mesh provider contract plugin* is any class with this shape (all contracts here follow it,
and so would a wrapper around the real CosmWasm contracts)::

    class MyContract(Contract):
        kind = "unique-kind"                          # tag stored in to_state()
        @classmethod
        def instantiate(cls, ctx: ExecCtx, msg: dict) -> "MyContract": ...
        def execute(self, ctx: ExecCtx, sender: str, msg: dict) -> Response: ...
        def query(self, msg: dict) -> dict: ...
        def to_state(self) -> dict: ...               # JSON-serialisable, deterministic
        @classmethod
        def from_state(cls, data: dict) -> "MyContract": ...

``execute`` must leave state untouched when it raises (``Contract.execute`` does this by
running handlers on a copy), raise ``ValueError`` subclasses for bad input, and return its
follow-up calls as CosmWasm ``WasmMsg::Execute`` / ``BankMsg`` dicts in ``Response.messages``;
the host (``MeshApp`` or the chain) dispatches them depth-first and reverts everything if any
fails. Messages and queries use the upstream externally tagged JSON (``{"bond": {}}``).

A *collateral source* (the BTC adapter is one) speaks to the provider plugins only through
their JSON messages via a :class:`~mesh_adapter.framework.MeshHost`; see
:class:`CollateralSource`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from .consumer import ConsumerDistribution
from .converter import Converter, VirtualStaking
from .errors import InvalidMessage
from .external_staking import ExternalStaking
from .framework import Contract, ExecCtx, Response
from .local_staking import LocalStaking
from .vault import Vault


@runtime_checkable
class MeshContract(Protocol):
    """What a chain needs from a built-in mesh contract."""

    kind: str
    address: str

    def execute(self, ctx: ExecCtx, sender: str, msg: dict) -> Response: ...

    def query(self, msg: dict) -> dict: ...

    def to_state(self) -> dict: ...


class CollateralSource(Protocol):
    """An adapter that turns external collateral events into vault / cross-staking messages."""

    def on_delegation_active(self, event: Any) -> dict: ...

    def on_delegation_unbonding(self, event: Any) -> dict: ...

    def on_delegation_withdrawn(self, event: Any) -> dict: ...

    def on_finality_provider_slashed(self, fp_btc_pk: Any, height: int, time: int | None = None) -> dict: ...

    def process_matured(self) -> list[dict]: ...


CONTRACT_KINDS: dict[str, type[Contract]] = {
    cls.kind: cls for cls in (Vault, ExternalStaking, LocalStaking, Converter, VirtualStaking, ConsumerDistribution)
}


def register_contract(cls: type[Contract]) -> type[Contract]:
    """Register another plugin class (usable as a decorator)."""
    if cls.kind in CONTRACT_KINDS and CONTRACT_KINDS[cls.kind] is not cls:
        raise InvalidMessage(f"contract kind {cls.kind!r} already registered")
    CONTRACT_KINDS[cls.kind] = cls
    return cls


def contract_from_state(data: dict) -> Contract:
    """Rebuild any registered contract from its ``to_state()`` output."""
    cls = CONTRACT_KINDS.get(data.get("kind") if isinstance(data, dict) else None)
    if cls is None:
        raise InvalidMessage(f"unknown contract kind in state: {data.get('kind') if isinstance(data, dict) else data!r}")
    return cls.from_state(data)
