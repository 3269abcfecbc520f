"""``btcmesh demo --mesh upstream``: the demo's mesh events replayed on the upstream contracts.

The chain hosts our Python model of the Mesh Security contracts. Here the same BTC delegation
events the chain's adapter handled (each delegation going ACTIVE, then the bad finality
provider's double sign with the BTC its slashing tx leaves) drive a
:class:`~mesh_adapter.btc_adapter.BtcMeshAdapter` twice: over the upstream contracts in the
``conformance/mesh-upstream`` harness (through :class:`~mesh_adapter.upstream.UpstreamMeshHost`)
and over our contracts in a ``MeshApp``. The outcomes (collateral, virtual stake per validator,
slash report) are compared with each other and with what the chain measured.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from mesh_adapter.deploy import BtcMeshParams, deploy_btc_mesh
from mesh_adapter.framework import BlockInfo, MeshApp
from mesh_adapter.upstream import UpstreamHarness, default_harness_path, deploy_btc_mesh_upstream

REPO_ROOT = Path(__file__).resolve().parents[1]
#: docs/MESH_MAPPING.md: upstream's slashing has no cap of the lien at the BTC left, so the
#: slashing tx fee stays in the vault collateral there.
COLLATERAL_LEFT = "collateral_left"
BUILD_HINT = "build it with scripts/setup.sh --daemons"


class HarnessMissing(ValueError):
    """The upstream-contract harness binary is not built (an expected, one-line error)."""


def require_harness(harness_path: Path | None = None) -> Path:
    """The harness binary's path; :class:`HarnessMissing` (with the build hint) when it is not built."""
    path = Path(harness_path) if harness_path is not None else default_harness_path(REPO_ROOT)
    if not path.is_file():
        raise HarnessMissing(f"the upstream-contract harness is not built ({path} missing): {BUILD_HINT}")
    return path


def _params(config: dict) -> BtcMeshParams:
    known = {f.name for f in fields(BtcMeshParams)}
    return BtcMeshParams(**{k: v for k, v in config.items() if k in known})


FINAL_FIELDS = ("status", "collateral_sat", "staked_sat", "pending_sat", "slashed_sat")


def _outcome(adapter: Any, records: list[dict], validators: list[str], bad_fp: str, height: int,
             btc_left: dict[str, int], advance: Any, period: int) -> dict:
    active = {}
    for r in records:
        adapter.on_delegation_active({"staking_tx_hash": r["staking_tx_hash"], "staker_btc_pk": r["staker_btc_pk"],
                                      "fp_btc_pk": r["fp_btc_pk"], "value_sat": r["value_sat"], "status": "ACTIVE"})
        active[r["staking_tx_hash"]] = adapter.delegation(r["staking_tx_hash"])["collateral_sat"]
    vs_before = {v: adapter.validator_virtual_stake(v) for v in validators}
    report = adapter.on_finality_provider_slashed(bad_fp, height=height, btc_left=btc_left)
    out = {"collateral_active": active, "virtual_stake_before": vs_before,
           "virtual_stake_after": {v: adapter.validator_virtual_stake(v) for v in validators},
           "collateral_after": {r["staking_tx_hash"]: adapter.delegation(r["staking_tx_hash"])["collateral_sat"]
                                for r in records},
           "virtual_slashed": report["virtual_slashed"], "virtual_unbonded": report["virtual_unbonded"]}
    # then what the chain saw until the end: honest delegations that unbonded, withdrawals
    for r in records:
        if r["status"] in ("UNBONDING", "WITHDRAWING", "WITHDRAWN") and r["fp_btc_pk"] != bad_fp:
            adapter.on_delegation_unbonding({**_event(r), "status": "UNBONDING"})
        if r["status"] in ("WITHDRAWING", "WITHDRAWN"):
            adapter.on_delegation_withdrawn({**_event(r), "status": "WITHDRAWN"})
    out["final"] = _fields(adapter, records)  # the chain's end of the demo: unbonding periods still running
    advance(period + 1)
    adapter.process_matured()
    out["settled"] = _fields(adapter, records)  # after the unbonding period
    return out


def _fields(adapter: Any, records: list[dict]) -> dict:
    return {r["staking_tx_hash"]: {k: adapter.delegation(r["staking_tx_hash"])[k] for k in FINAL_FIELDS}
            for r in records}


def _fee_only(key: str, item: Any, ours: Any, theirs: Any, btc_left: dict[str, int]) -> bool:
    """Is this difference the slashing tx fee that upstream leaves in the collateral?"""
    if item not in btc_left:
        return False
    if key == "collateral_after":
        return ours == btc_left[item]
    if key in ("final", "settled") and isinstance(ours, dict) and isinstance(theirs, dict):
        fee = theirs["collateral_sat"] - ours["collateral_sat"]
        money = ("collateral_sat", "slashed_sat", "pending_sat")
        same = {k: v for k, v in ours.items() if k not in money} == {k: v for k, v in theirs.items() if k not in money}
        return (same and ours["collateral_sat"] in (0, btc_left[item]) and ours["slashed_sat"] - theirs["slashed_sat"] == fee
                and theirs["pending_sat"] - ours["pending_sat"] in (0, fee))
    return False


def _event(r: dict) -> dict:
    return {"staking_tx_hash": r["staking_tx_hash"], "staker_btc_pk": r["staker_btc_pk"],
            "fp_btc_pk": r["fp_btc_pk"], "value_sat": r["value_sat"]}


def replay_on_upstream(config: dict, records: list[dict], bad_fp: str, height: int = 1,
                       harness_path: Path | None = None) -> dict:
    """Replay ``records`` (the chain adapter's delegation records) and the slash of ``bad_fp``
    (infraction at ``height`` of the replay's own clock, which starts at height 1).

    ``records`` are the chain's records at the end of the demo: after the slash the replay
    unbonds the honest delegations that unbonded there and withdraws the withdrawn ones;
    ``final`` is that state (comparable with the chain's, whose unbonding periods still run),
    ``settled`` the state once the unbonding period has passed.
    Returns ``{"model": outcome, "upstream": outcome, "chain_final": {hash: fields}, "differences":
    [..]}``; each difference is ``{"what", "model", "upstream", "named"}`` where ``named`` is the
    documented reason (or None: a real mismatch).
    """
    params = _params(config)
    params.fp_to_validator = {r["fp_btc_pk"]: r["validator"] for r in records}
    validators = sorted(set(params.fp_to_validator.values()))
    btc_left = {r["staking_tx_hash"]: int(r["btc_left_sat"]) for r in records
                if r.get("fp_btc_pk") == bad_fp and r.get("btc_left_sat") is not None}
    app = MeshApp(BlockInfo(1, 1_000_000))
    model = deploy_btc_mesh(app, params)
    ours = _outcome(model, records, validators, bad_fp, height, btc_left, app.advance, params.unbonding_period)
    with UpstreamHarness(require_harness(harness_path)) as harness:
        up = deploy_btc_mesh_upstream(harness, params, time=1_000_000, height=1)
        theirs = _outcome(up, records, validators, bad_fp, height, btc_left, up.host.advance,
                          params.unbonding_period)
    differences = []
    for key in ours:
        a, b = ours[key], theirs[key]
        items = a.keys() if isinstance(a, dict) else [None]
        for item in items:
            x, y = (a[item], b.get(item)) if item is not None else (a, b)
            if x != y:
                named = COLLATERAL_LEFT if _fee_only(key, item, x, y, btc_left) else None
                differences.append({"what": f"{key}[{item}]" if item else key, "model": x, "upstream": y,
                                    "named": named})
    chain = {r["staking_tx_hash"]: {k: r.get(k) for k in FINAL_FIELDS} for r in records}
    return {"model": ours, "upstream": theirs, "chain_final": chain, "differences": differences}
