"""Wiring between the chain's modules: the registry and finality hooks that drive ``mesh``.

* :class:`ChainStakingHooks` - ``btc_staking`` registry status changes → :class:`MeshModule`.
* :class:`ChainFinalityHooks` - for :class:`~cosmos_chain.modules.finality.FinalityModule`: FP
  lookup in the registry, canonical app hash = the finality module's recorded hash, slashing =
  registry ``slash_finality_provider`` then the mesh FP slash.

This module imports ``finality`` and ``mesh``; neither imports it (nor each other): ``ChainApp``
calls :func:`set_default_hooks` whenever a module is added, so every app, fresh or restarted from
disk, runs with the chain hooks unless a caller set its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Context, Module
from .finality import FinalityModule
from .mesh import MeshModule, MeshModuleError

if TYPE_CHECKING:  # pragma: no cover
    from ..app import ChainApp

__all__ = ["ChainStakingHooks", "ChainFinalityHooks", "set_default_hooks", "install"]


def _registry(ctx: Context) -> Module | None:
    return ctx.app.modules.get("btc_staking")


class ChainStakingHooks:
    """``StakingHooks`` for the ``btc_staking`` registry: forwards status changes to ``mesh``."""

    def on_delegation_status(self, ctx: Context, delegation: dict, old_status: str | None, new_status: str) -> None:
        mesh = ctx.app.modules.get("mesh")
        if isinstance(mesh, MeshModule):
            mesh.on_delegation_status(ctx, delegation, old_status, new_status)


class ChainFinalityHooks:
    """``FinalityHooks`` for :class:`cosmos_chain.modules.finality.FinalityModule` on a ChainApp."""

    knows_blocks = True

    def is_registered(self, ctx: Context, fp_btc_pk: str) -> bool:
        reg = _registry(ctx)
        return reg is not None and reg.finality_provider(ctx, fp_btc_pk) is not None  # type: ignore[attr-defined]

    def is_slashed(self, ctx: Context, fp_btc_pk: str) -> bool:
        """Slashed in the registry (e.g. through another path than this chain's finality votes)."""
        reg = _registry(ctx)
        rec = reg.finality_provider(ctx, fp_btc_pk) if reg is not None else None  # type: ignore[attr-defined]
        return bool(rec and (rec.get("slashed_height") or rec.get("slashed")))

    def active_sat(self, ctx: Context, fp_btc_pk: str) -> int:
        """Sats of the FP's ACTIVE delegations in the registry (0 without one)."""
        reg = _registry(ctx)
        fn = getattr(reg, "active_sat", None)
        return int(fn(ctx, fp_btc_pk)) if callable(fn) else 0

    def fp_owner(self, ctx: Context, fp_btc_pk: str) -> str | None:
        """The address that registered the FP (the only one that may unjail it)."""
        reg = _registry(ctx)
        rec = reg.finality_provider(ctx, fp_btc_pk) if reg is not None else None  # type: ignore[attr-defined]
        return (rec or {}).get("addr") or None

    def jail_finality_provider(self, ctx: Context, fp_btc_pk: str, height: int) -> None:
        """Liveness jail: jail the FP's mesh validator (offline slash ratio) and drop its virtual stake."""
        mesh = ctx.app.modules.get("mesh")
        fn = getattr(mesh, "jail_finality_provider", None)
        if callable(fn):
            fn(ctx, fp_btc_pk, height)

    def unjail_finality_provider(self, ctx: Context, fp_btc_pk: str, height: int) -> None:
        mesh = ctx.app.modules.get("mesh")
        fn = getattr(mesh, "unjail_finality_provider", None)
        if callable(fn):
            fn(ctx, fp_btc_pk, height)

    def canonical_app_hash(self, ctx: Context, height: int) -> bytes | None:
        fin = ctx.app.modules.get("finality")
        return None if fin is None else fin.app_hash_at(ctx, height)  # type: ignore[attr-defined]

    def slash_finality_provider(self, ctx: Context, fp_btc_pk: str, evidence: dict, extracted_sk: bytes) -> None:
        height = int(evidence["block_height"])
        reg = _registry(ctx)
        if reg is None:
            raise MeshModuleError("no btc_staking registry to slash the finality provider in")
        slashed = reg.slash_finality_provider(ctx, fp_btc_pk, height)  # type: ignore[attr-defined]
        ctx.emit("registry_slash", fp_btc_pk=fp_btc_pk, delegations=[d["staking_tx_hash"] for d in slashed or []])
        mesh = ctx.app.modules.get("mesh")
        if isinstance(mesh, MeshModule):
            mesh.slash_finality_provider(ctx, fp_btc_pk, height)


def set_default_hooks(app: "ChainApp") -> None:
    """Give the registry and the finality module the chain hooks unless they already have hooks."""
    fin = app.modules.get("finality")
    if fin is not None and getattr(fin, "hooks", None) is None:
        fin.hooks = ChainFinalityHooks()  # type: ignore[attr-defined]
    reg = app.modules.get("btc_staking")
    if reg is not None and getattr(reg, "hooks", None) is None:
        reg.hooks = ChainStakingHooks()  # type: ignore[attr-defined]


def install(app: "ChainApp") -> MeshModule:
    """Make sure ``app`` has the finality and mesh modules (add them before ``init_chain``) and
    that the registry and the finality module use the chain hooks. Idempotent; hooks already set
    explicitly are kept."""
    if "finality" not in app.modules:
        app.add_module(FinalityModule())
    if "mesh" not in app.modules:
        app.add_module(MeshModule())
    set_default_hooks(app)
    return app.modules["mesh"]  # type: ignore[return-value]
