"""``valset``: the consumer chain's validator set - consensus power from own bond + virtual stake.

Mesh Security exists so that virtual stake secures the consumer chain; this module is where it
does. Each consensus validator has an operator name (the mesh validator name the FPs map to,
``fp_to_validator`` / the registry's ``validator``), an ed25519 consensus key and an own bond::

    tokens(v) = self_bond(v) + virtual stake the mesh delegates to v   (consumer tokens, ``ustake``)
    power(v)  = tokens(v) // tokens_per_power                          (0 if jailed or tombstoned)

as the Cosmos SDK's ``TokensToConsensusPower`` with ``PowerReduction = tokens_per_power`` (default
1,000,000). Virtual stake is the mesh virtual-staking contract's delegation to ``v`` (after its
``max_cap``); jailed/tombstoned is the mesh external-staking state of ``v``.

Every ``end_block`` the target powers are compared with the powers last handed to CometBFT
(``applied``). Changes go out as ABCI ``validator_updates`` (:meth:`ChainApp.validator_updates`;
power 0 removes a validator), but never more than just under 1/3 of the applied total power per
block (the sum of ``|change|``): the rest is carried to the next blocks, so one slash never
removes enough power at once to stall consensus. A validator's power never goes to 0 if that would
leave the set empty. CometBFT applies the updates of block ``H`` from height ``H + 2``; the set
history (``validatorsets/{height}``) follows the same rule, in embedded mode too, so both modes
report the same set for a height.

Genesis section::

    {"tokens_per_power": "1000000",
     "validators": [{"operator": "valA", "pub_key": "<base64 ed25519, 32 bytes>", "self_bond": "10000000"}]}

Under CometBFT a non-empty set replaces the ``genesis.json`` validators (ResponseInitChain);
without a section nothing changes (CometBFT's genesis set stays, no updates).

Queries: ``validator_set {height?}`` → ``{block_height, validators: [{operator, pub_key, power,
address, valcons}]}`` (``address``: CometBFT's hex address), ``params {}``, ``target {}``
(powers the chain is moving towards).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cosmpy.crypto.address import Address

from ..errors import InvalidRequestError
from ..store import JsonStore
from .base import Context, Module, register_module

__all__ = ["ValsetModule", "DEFAULT_TOKENS_PER_POWER", "consensus_address", "power_of"]

DEFAULT_TOKENS_PER_POWER = 1_000_000
_HEIGHT_DIGITS = 20
_INACTIVE_STATES = ("jailed", "tombstoned", "unbonded")


def consensus_address(pub_key: bytes) -> bytes:
    """CometBFT address of an ed25519 key: ``sha256(pub_key)[:20]``."""
    return hashlib.sha256(pub_key).digest()[:20]


def power_of(tokens: int, tokens_per_power: int) -> int:
    """``tokens // tokens_per_power`` (SDK ``TokensToConsensusPower``)."""
    return max(tokens, 0) // tokens_per_power


def _int(value: Any, what: str) -> int:
    try:
        out = int(str(value))
    except ValueError as exc:
        raise InvalidRequestError(f"valset genesis: {what} must be an integer") from exc
    if out < 0:
        raise InvalidRequestError(f"valset genesis: {what} must be non-negative")
    return out


def _height_key(height: int) -> str:
    return "set_at/" + str(height).zfill(_HEIGHT_DIGITS)


@register_module
class ValsetModule(Module):
    """Consensus validators with power from own bond + mesh virtual stake (see module docstring)."""

    name = "valset"

    def __init__(self) -> None:
        super().__init__()
        self.pending_updates: list[dict[str, Any]] = []
        self._view_cache: tuple[str | None, str | None, tuple[dict[str, int], set[str]]] | None = None

    # ------------------------------------------------------------------ genesis
    def init_genesis(self, ctx: Context, genesis: dict[str, Any]) -> None:
        extra = set(genesis) - {"tokens_per_power", "validators"}
        if extra:
            raise InvalidRequestError(f"valset genesis: unknown keys {sorted(extra)}")
        tpp = _int(genesis.get("tokens_per_power", DEFAULT_TOKENS_PER_POWER), "tokens_per_power")
        if tpp == 0:
            raise InvalidRequestError("valset genesis: tokens_per_power must be positive")
        st = self.store(ctx)
        st.set("params", {"tokens_per_power": tpp})
        vals = genesis.get("validators") or []
        if not isinstance(vals, list):
            raise InvalidRequestError("valset genesis: validators must be a list")
        seen_ops: set[str] = set()
        seen_keys: set[str] = set()
        for v in vals:
            if not isinstance(v, dict) or set(v) - {"operator", "pub_key", "self_bond"}:
                raise InvalidRequestError("valset genesis: each validator is {operator, pub_key, self_bond}")
            op, pk = v.get("operator"), v.get("pub_key")
            if not isinstance(op, str) or not op or "/" in op:
                raise InvalidRequestError(f"valset genesis: bad operator {op!r}")
            try:
                key = base64.b64decode(pk, validate=True) if isinstance(pk, str) else b""
            except ValueError:
                key = b""
            if len(key) != 32:
                raise InvalidRequestError(f"valset genesis: {op}: pub_key must be a base64 ed25519 key (32 bytes)")
            if op in seen_ops or pk in seen_keys:
                raise InvalidRequestError(f"valset genesis: duplicate validator {op}")
            seen_ops.add(op)
            seen_keys.add(pk)
            st.set("val/" + op, {"operator": op, "pub_key": pk, "self_bond": str(_int(v.get("self_bond", 0),
                                                                                          f"{op}.self_bond"))})
        applied = {op: p for op, p in self.target(ctx).items() if p > 0}
        if vals and not applied:
            raise InvalidRequestError("valset genesis: no validator has power (self_bond < tokens_per_power)")
        for op, p in applied.items():
            st.set("applied/" + op, p)
        if applied:
            st.set(_height_key(1), applied)

    def genesis_validators(self, ctx: Context) -> list[dict[str, Any]]:
        """The initial set (for ResponseInitChain): ``[{pub_key (base64), power}]``, by operator."""
        st = self.store(ctx)
        return [{"operator": op, "pub_key": st.get("val/" + op)["pub_key"], "power": p}
                for op, p in self._applied(st).items()]

    # ------------------------------------------------------------------ power
    def _tokens_per_power(self, st: JsonStore) -> int:
        return int((st.get("params") or {}).get("tokens_per_power", DEFAULT_TOKENS_PER_POWER))

    @staticmethod
    def _applied(st: JsonStore) -> dict[str, int]:
        return {k[len("applied/"):]: int(v) for k, v in st.items("applied/")}

    def _mesh_view(self, ctx: Context) -> tuple[dict[str, int], set[str]]:
        """(virtual stake delegated per validator, validators jailed/tombstoned/unbonded) from the
        mesh contracts' stored state (read directly: no contract session per block; the parse is
        reused while the stored JSON is unchanged, so a quiet block costs two string compares)."""
        if "mesh" not in ctx.app.modules:
            return {}, set()
        raw_vs, raw_ext = ctx.kv.get("m/mesh/contract/virtual_staking"), ctx.kv.get("m/mesh/contract/external_staking")
        cached = self._view_cache
        if cached is not None and cached[0] == raw_vs and cached[1] == raw_ext:
            return cached[2]
        vs = (json.loads(raw_vs) if raw_vs else {}).get("state") or {}
        delegated = {v: int(a) for v, a in (vs.get("delegations") or {}).items()}
        ext = (json.loads(raw_ext) if raw_ext else {}).get("state") or {}
        inactive = {v for v, info in (ext.get("validators") or {}).items()
                    if info.get("history") and info["history"][-1][1] in _INACTIVE_STATES}
        inactive |= {v for v, info in (vs.get("inactive") or {}).items() if info.get("tombstoned")}
        self._view_cache = (raw_vs, raw_ext, (delegated, inactive))
        return delegated, inactive

    def target(self, ctx: Context) -> dict[str, int]:
        """Power every genesis validator should have now (operator → power)."""
        st = self.store(ctx)
        tpp = self._tokens_per_power(st)
        delegated, inactive = self._mesh_view(ctx)
        out = {}
        for _, v in st.items("val/"):
            op = v["operator"]
            out[op] = 0 if op in inactive else power_of(int(v["self_bond"]) + delegated.get(op, 0), tpp)
        return out

    def end_block(self, ctx: Context) -> None:
        """Move the applied powers towards the target, under 1/3 of the total per block."""
        self.pending_updates = []
        st = self.store(ctx)
        applied = self._applied(st)
        if not applied:
            return
        target = self.target(ctx)
        changes = {op: target.get(op, 0) - applied.get(op, 0) for op in sorted(set(target) | set(applied))}
        changes = {op: d for op, d in changes.items() if d}
        if not changes:
            return
        total = sum(applied.values())
        budget = (total - 1) // 3  # strictly less than a third of the power that signs this block
        if budget == 0 and any(d > 0 for d in changes.values()):
            budget = 1  # a tiny set still grows (adding power cannot stall the set that signs)
        new = dict(applied)
        for op in sorted(changes, key=lambda o: (changes[o] > 0, o)):  # removals first, then additions
            step = max(-budget, min(budget, changes[op]))
            if step < 0 and sum(new.values()) + step <= 0:
                step = -(sum(new.values()) - 1)  # never empty the set
            if step == 0:
                continue
            budget -= abs(step)
            new[op] = new.get(op, 0) + step
            if budget <= 0:
                break
        updates = []
        for op in sorted(new):
            if new[op] == applied.get(op, 0):
                continue
            if new[op] == 0:
                st.delete("applied/" + op)
            else:
                st.set("applied/" + op, new[op])
            val = st.get("val/" + op)
            updates.append({"operator": op, "pub_key": val["pub_key"], "power": new[op]})
            ctx.emit("validator_power", operator=op, power=str(new[op]), target=str(target.get(op, 0)))
        if updates:
            st.set(_height_key(ctx.height + 2), {op: p for op, p in sorted(new.items()) if p > 0})
        self.pending_updates = updates

    # ------------------------------------------------------------------ queries
    def validator_set(self, ctx: Context, height: int | None = None) -> dict[str, Any]:
        """The set that signs block ``height`` (default: the latest committed one, like CometBFT's
        ``/validators``)."""
        st = self.store(ctx)
        at = max(1, ctx.height) if height is None else int(height)
        if at < 1:
            raise InvalidRequestError("height must be greater than 0")
        powers: dict[str, int] = {}
        for _, snap in st.items_range("set_at/", _height_key(at + 1)):
            powers = snap
        vals = []
        for op, p in sorted(powers.items()):
            pk = st.get("val/" + op)["pub_key"]
            addr = consensus_address(base64.b64decode(pk))
            vals.append({"operator": op, "pub_key": pk, "power": int(p), "address": addr.hex().upper(),
                         "valcons": str(Address(addr, prefix=ctx.app.prefix + "valcons"))})
        return {"block_height": at, "validators": vals}

    def query_validator_set(self, ctx: Context, body: dict) -> dict[str, Any]:
        h = body.get("height")
        if h is not None and (isinstance(h, bool) or not isinstance(h, int)):
            raise InvalidRequestError("`height` must be an integer")
        return self.validator_set(ctx, h)

    def query_params(self, ctx: Context, body: dict) -> dict[str, Any]:
        return {"tokens_per_power": str(self._tokens_per_power(self.store(ctx)))}

    def query_target(self, ctx: Context, body: dict) -> dict[str, Any]:
        return {"powers": {op: p for op, p in sorted(self.target(ctx).items())}}
