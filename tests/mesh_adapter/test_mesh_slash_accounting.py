"""Issue 10 §2: after a slash the vault collateral equals what Bitcoin left (the slashing tx's
change output, fee included), on the staking and on the unbonding path; the consumer force-unbonds
the tombstoned validator itself (with ``unbond_slashed`` off too); slashed / unbonded / left are
reported separately."""

from __future__ import annotations

import pytest

from mesh_adapter.deploy import BtcMeshParams, deploy_btc_mesh
from mesh_adapter.errors import InvalidDelegation
from mesh_adapter.framework import MeshApp

FP_A, FP_B = "a1" * 32, "b2" * 32
STAKER = "5a" * 32
VAULT, EXT, VS = "mesh-vault", "mesh-external-staking", "mesh-virtual-staking"
VALUE, SLASH, FEE = 1_000_000, 100_000, 1_000
CHANGE = VALUE - SLASH - FEE  # what the staking-path slashing tx returns to the staker


def h(n: int) -> str:
    return f"{n:064x}"


def deploy(**kw):
    app = MeshApp()
    params = dict(slashing_rate="0.1", unbonding_period=1000, fp_to_validator={FP_A: "valA", FP_B: "valB"})
    params.update(kw)
    return app, deploy_btc_mesh(app, BtcMeshParams(**params))


def activate(ad, n: int, fp: str = FP_A, value: int = VALUE) -> None:
    ad.on_delegation_active({"staking_tx_hash": h(n), "staker_btc_pk": STAKER, "fp_btc_pk": fp, "value_sat": value})


def bonded(app, n: int) -> int:
    return int(app.query(VAULT, {"account": {"account": f"btcdel1{h(n)}"}})["bonded"])


def requests(app) -> dict:
    return {v: int(a) for v, a in app.query(VS, {"bond_requests": {}})["requests"].items()}


@pytest.mark.parametrize("unbond_slashed", [True, False])
def test_collateral_equals_slashing_change_and_consumer_unbonds(unbond_slashed):
    app, ad = deploy(unbond_slashed=unbond_slashed)
    activate(ad, 1)
    activate(ad, 2, FP_B, 500_000)
    report = ad.on_finality_provider_slashed(FP_A, height=5, btc_left={h(1): CHANGE})
    # three figures, separately: virtual stake slashed, virtual stake force-unbonded, BTC left
    assert (report["virtual_slashed"], report["virtual_unbonded"]) == (SLASH, VALUE - SLASH)
    d = report["delegations"][h(1)]
    assert d["btc_left"] == CHANGE and d["collateral_after"] == CHANGE and bonded(app, 1) == CHANGE
    assert app.balance(VAULT, "sat") == CHANGE + 500_000  # collateral tokens == BTC still locked
    # the fee is cut from the lien too (never more lien than collateral), not burned on the consumer
    lien = ad.lien(h(1))
    assert int(lien["amount"]["high"]) <= CHANGE
    assert requests(app) == {"valB": 500_000}  # valA force-unbonded by the consumer, valB untouched
    assert app.query(VS, {"inactive_validators": {}})["validators"] == [
        {"validator": "valA", "tombstoned": True, "unbonded": str(VALUE - SLASH)}]
    rec = ad.delegation(h(1))
    assert rec["slashed_sat"] == SLASH + FEE and rec["btc_left_sat"] == CHANGE
    assert rec["status"] == ("SLASHED" if unbond_slashed else "ACTIVE")
    # everything drains cleanly: liens released after the period, the change burned on withdrawal
    if not unbond_slashed:
        ad.on_delegation_unbonding(h(1))  # the provider unstake reaches a consumer with nothing left
    app.advance(2000)
    ad.process_matured()
    assert ad.lien(h(1)) is None
    assert ad.on_delegation_withdrawn(h(1))["collateral_sat"] == 0
    assert app.balance(VAULT, "sat") == 500_000


def test_unbonding_path_slashing_change():
    """Slashed while unbonding on Bitcoin: the unbonding slashing tx's change (smaller: the
    unbonding fee came first) is what is left; pending unbonds are cut to it."""
    app, ad = deploy()
    activate(ad, 1)
    ad.on_delegation_unbonding(h(1))
    unbonding_value = VALUE - 2_000
    change = unbonding_value - unbonding_value // 10 - FEE
    report = ad.on_finality_provider_slashed(FP_A, height=5, btc_left={h(1): change})
    assert report["virtual_slashed"] == 0 and report["virtual_unbonded"] == 0  # nothing virtual left
    d = report["delegations"][h(1)]
    assert d["collateral_after"] == change == bonded(app, 1)
    assert d["pending_after"] <= change
    app.advance(2000)
    ad.process_matured()
    assert ad.on_delegation_withdrawn(h(1))["collateral_sat"] == 0 and app.balance(VAULT, "sat") == 0


def test_default_btc_left_and_bad_values():
    app, ad = deploy()
    activate(ad, 1)
    with pytest.raises(InvalidDelegation):
        ad.on_finality_provider_slashed(FP_A, height=5, btc_left={h(1): VALUE + 1})
    assert bonded(app, 1) == VALUE and requests(app) == {"valA": VALUE}  # refused: nothing changed
    report = ad.on_finality_provider_slashed(FP_A, height=5)
    assert report["delegations"][h(1)]["collateral_after"] == VALUE - SLASH  # value − floor(value × rate)
