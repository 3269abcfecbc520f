"""BTC adapter: delegation lifecycle -> vault / external staking / consumer state, with real numbers."""

from __future__ import annotations

import json

import pytest

from mesh_adapter.btc_adapter import BtcMeshAdapter, DelegationEvent
from mesh_adapter.deploy import BtcMeshParams, deploy_btc_mesh
from mesh_adapter.errors import (
    AlreadyTombstoned, DuplicateDelegation, InvalidDelegation, InvalidTransition, MeshError,
    UnknownDelegation, UnknownFinalityProvider, ValidatorNotActive,
)
from mesh_adapter.framework import MeshApp

FP_A, FP_B, FP_C = "aa" * 32, "bb" * 32, "cc" * 32
STAKER_1, STAKER_2 = "11" * 32, "22" * 32
VAULT, EXT, VS = "mesh-vault", "mesh-external-staking", "mesh-virtual-staking"


def h(n: int) -> str:
    return f"{n:064x}"


def ev(n: int, staker: str = STAKER_1, fp: str = FP_A, value: int = 1_000_000, status: str = "ACTIVE") -> dict:
    return {"staking_tx_hash": h(n), "staker_btc_pk": staker, "fp_btc_pk": fp, "value_sat": value, "status": status}


def deploy(**kw) -> tuple[MeshApp, BtcMeshAdapter]:
    app = MeshApp()
    params = dict(price="2", discount="0.25", slashing_rate="0.1", unbonding_period=1000,
                  fp_to_validator={FP_A: "valA", FP_B: "valB"})
    params.update(kw)
    return app, deploy_btc_mesh(app, BtcMeshParams(**params))


def vault_acct(app, adapter, n):
    return app.query(VAULT, {"account_details": {"account": adapter.account_for(h(n))}})


def stake(app, adapter, n, val="valA"):
    return app.query(EXT, {"stake": {"user": adapter.account_for(h(n)), "validator": val}})


def virtual(app, val):
    return int(app.query(VS, {"delegation": {"validator": val}})["amount"])


def test_active_bonds_collateral_and_cross_stakes_converted():
    app, ad = deploy()
    out = ad.on_delegation_active(ev(1))
    assert out["account"] == "btcdel1" + h(1) and out["validator"] == "valA"
    assert out["staked_sat"] == 1_000_000 and out["virtual_stake"] == 1_500_000  # 1e6 * 2 * (1 - 0.25)
    d = vault_acct(app, ad, 1)
    assert d["bonded"] == "1000000"
    assert d["max_lien"] == {"low": "1000000", "high": "1000000"}
    assert d["total_slashable"] == {"low": "100000", "high": "100000"}  # 10% max slash
    assert d["free"] == {"low": "0", "high": "0"}
    assert stake(app, ad, 1)["stake"] == {"low": "1000000", "high": "1000000"}
    assert virtual(app, "valA") == 1_500_000
    assert app.balance(VAULT, "sat") == 1_000_000
    assert app.query(EXT, {"all_pending_txs_desc": {}})["txs"] == []  # committed (in-process consumer)
    assert ad.delegations_of(STAKER_1)[0]["staking_tx_hash"] == h(1)


def test_per_validator_cap_on_virtual_stake():
    app, ad = deploy(max_virtual_per_validator=2_000_000)
    ad.on_delegation_active(ev(1))
    out = ad.on_delegation_active(ev(2, STAKER_2))
    # largest s with floor(floor((1e6 + s) * 2) * 0.75) <= 2e6 is 333_333
    assert out["staked_sat"] == 333_333
    assert ad.validator_virtual_stake("valA") == 1_999_999
    d = vault_acct(app, ad, 2)
    assert d["bonded"] == "1000000" and d["free"] == {"low": "666667", "high": "666667"}
    # cap is per validator: valB is empty
    out = ad.on_delegation_active(ev(3, fp=FP_B))
    assert out["staked_sat"] == 1_000_000 and virtual(app, "valB") == 1_500_000
    # full: nothing more staked on valA, collateral still bonded
    out = ad.on_delegation_active(ev(4, value=10))
    assert out["staked_sat"] == 0 and vault_acct(app, ad, 4)["bonded"] == "10"
    assert virtual(app, "valA") == 1_500_000 + 499_999


def test_consumer_max_cap_scales_delegations():
    app, ad = deploy(max_cap=1_500_000)
    ad.on_delegation_active(ev(1))
    ad.on_delegation_active(ev(2, fp=FP_B))
    # 3_000_000 requested against a 1_500_000 mint cap: each validator scaled by half
    assert virtual(app, "valA") == 750_000 and virtual(app, "valB") == 750_000
    assert app.query(VS, {"bond_status": {}})["delegated"] == {"denom": "ustake", "amount": "1500000"}


def test_unbonding_releases_liens_in_order_after_the_period():
    app, ad = deploy()
    ad.on_delegation_active(ev(1))
    ad.on_delegation_active(ev(2, STAKER_2, value=500_000))
    out = ad.on_delegation_unbonding(h(1))
    assert out["status"] == "UNBONDING" and out["staked_sat"] == 0 and out["pending_sat"] == 1_000_000
    assert virtual(app, "valA") == 750_000  # consumer unbonds immediately
    assert ad.lien(h(1)) == {"amount": {"low": "1000000", "high": "1000000"}, "slashable": "0.1"}
    assert vault_acct(app, ad, 1)["free"] == {"low": "0", "high": "0"}  # still locked and slashable

    app.advance(400)
    ad.on_delegation_unbonding(ev(2, STAKER_2, value=500_000, status="UNBONDING"))
    app.advance(599)
    assert ad.process_matured() == []
    assert ad.lien(h(1)) is not None
    app.advance(1)  # t = 1000: first unbond matures, second (t = 1400) not yet
    done = ad.process_matured()
    assert [d["staking_tx_hash"] for d in done] == [h(1)]
    assert ad.lien(h(1)) is None and ad.lien(h(2)) is not None
    assert vault_acct(app, ad, 1)["free"] == {"low": "1000000", "high": "1000000"}
    app.advance(400)
    assert [d["staking_tx_hash"] for d in ad.process_matured()] == [h(2)]
    assert ad.lien(h(2)) is None

    out = ad.on_delegation_withdrawn(h(1))
    assert out["status"] == "WITHDRAWN" and out["collateral_sat"] == 0
    assert vault_acct(app, ad, 1)["bonded"] == "0"
    assert app.balance(ad.account_for(h(1)), "sat") == 0  # unbonded collateral burned
    assert app.balance(VAULT, "sat") == 500_000


def test_withdrawn_from_active_finishes_after_unbonding_period():
    app, ad = deploy(max_virtual_per_validator=750_000)  # 500_000 sats staked, 500_000 free
    out = ad.on_delegation_active(ev(1))
    assert out["staked_sat"] == 500_000
    out = ad.on_delegation_withdrawn(ev(1, status="WITHDRAWN"))
    assert out["status"] == "WITHDRAWING"
    assert out["collateral_sat"] == 500_000  # free part unbonded and burned at once
    assert out["pending_sat"] == 500_000
    app.advance(1000)
    [done] = ad.process_matured()
    assert done["status"] == "WITHDRAWN" and done["collateral_sat"] == 0
    assert app.balance(VAULT, "sat") == 0
    with pytest.raises(InvalidTransition):
        ad.on_delegation_unbonding(h(1))


def test_fp_slashing_cuts_stake_and_collateral_and_spares_honest_fp():
    app, ad = deploy(unbond_slashed=False)
    ad.on_delegation_active(ev(1))
    ad.on_delegation_active(ev(2, STAKER_2, value=2_000_000))
    ad.on_delegation_active(ev(3, fp=FP_B, value=3_000_000))
    honest_before = (vault_acct(app, ad, 3), stake(app, ad, 3, "valB"), virtual(app, "valB"))
    assert virtual(app, "valA") == 4_500_000

    report = ad.on_finality_provider_slashed(FP_A, height=10)
    assert report["validator"] == "valA" and report["ratio"] == "0.1"
    assert report["delegations"][h(1)] == {"collateral_before": 1_000_000, "collateral_after": 900_000,
                                           "stake_before": 1_000_000, "stake_after": 900_000,
                                           "pending_before": 0, "pending_after": 0, "btc_left": 900_000}
    assert report["delegations"][h(2)]["collateral_after"] == 1_800_000
    assert report["delegations"][h(2)]["stake_after"] == 1_800_000
    assert set(report["delegations"]) == {h(1), h(2)}
    d1 = vault_acct(app, ad, 1)
    assert d1["bonded"] == "900000" and d1["max_lien"]["high"] == "900000"
    assert d1["total_slashable"]["high"] == "90000" and d1["free"]["low"] == "0"
    # consumer virtual stake cut by exactly 10%, then the rest force-unbonded by the consumer's epoch
    # (tombstoned validator), although unbond_slashed is off
    assert (report["virtual_slashed"], report["virtual_unbonded"]) == (450_000, 4_050_000)
    assert virtual(app, "valA") == 0
    assert app.query(VS, {"inactive_validators": {}})["validators"] == [
        {"validator": "valA", "tombstoned": True, "unbonded": "4050000"}]
    assert app.balance(VAULT, "sat") == 900_000 + 1_800_000 + 3_000_000
    # honest FP's staker untouched
    assert (vault_acct(app, ad, 3), stake(app, ad, 3, "valB"), virtual(app, "valB")) == honest_before
    # validator tombstoned: new delegations to the slashed FP are refused, and no double slash
    with pytest.raises(ValidatorNotActive):
        ad.on_delegation_active(ev(9))
    with pytest.raises(AlreadyTombstoned):
        ad.on_finality_provider_slashed(FP_A, height=11)


def test_fp_slashing_unbonds_remaining_stake_by_default():
    app, ad = deploy()
    ad.on_delegation_active(ev(1))
    report = ad.on_finality_provider_slashed(FP_A, height=10, time=0)
    assert report["delegations"][h(1)]["stake_after"] == 900_000
    rec = ad.delegation(h(1))
    assert rec["status"] == "SLASHED" and rec["staked_sat"] == 0 and rec["pending_sat"] == 900_000
    assert rec["collateral_sat"] == 900_000 and rec["slashed_sat"] == 100_000
    assert virtual(app, "valA") == 0
    app.advance(1000)
    ad.process_matured()
    assert ad.lien(h(1)) is None
    out = ad.on_delegation_withdrawn(h(1))
    assert out["status"] == "WITHDRAWN" and app.balance(VAULT, "sat") == 0


def test_slashing_mirrors_btc_slash_on_unstaked_collateral():
    """Collateral above the cap is not under a lien, but the BTC slashing tx burns 10% of the
    whole output: the adapter unbonds and burns the difference so collateral == BTC left."""
    app, ad = deploy(max_virtual_per_validator=500_000, unbond_slashed=False)
    out = ad.on_delegation_active(ev(1))
    assert out["staked_sat"] == 333_333
    report = ad.on_finality_provider_slashed(FP_A, height=5)
    r = report["delegations"][h(1)]
    assert r["stake_after"] == 333_333 - 33_333
    assert r["collateral_after"] == 900_000
    assert app.balance(VAULT, "sat") == 900_000


def test_slashing_hits_pending_unbonds():
    app, ad = deploy()
    ad.on_delegation_active(ev(1))
    ad.on_delegation_unbonding(h(1))
    app.advance(10)
    report = ad.on_finality_provider_slashed(FP_A, height=3)
    assert report["delegations"][h(1)]["pending_before"] == 1_000_000
    assert report["delegations"][h(1)]["pending_after"] == 900_000
    assert ad.delegation(h(1))["collateral_sat"] == 900_000
    assert ad.delegation(h(1))["status"] == "SLASHED"
    app.advance(990)
    ad.process_matured()
    assert ad.lien(h(1)) is None


@pytest.mark.parametrize("bad, exc", [
    (dict(staking_tx_hash="zz"), InvalidDelegation),
    (dict(staker_btc_pk="00" * 31), InvalidDelegation),
    (dict(fp_btc_pk="04" + "aa" * 32), InvalidDelegation),
    (dict(value_sat=0), InvalidDelegation),
    (dict(value_sat=-5), InvalidDelegation),
    (dict(value_sat=True), InvalidDelegation),
    (dict(value_sat=1.5), InvalidDelegation),
    (dict(value_sat=21_000_000 * 10**8 + 1), InvalidDelegation),
    (dict(status="BOGUS"), InvalidDelegation),
    (dict(status="UNBONDING"), InvalidTransition),
    (dict(fp_btc_pk=FP_C), UnknownFinalityProvider),
])
def test_bad_input_is_rejected_without_side_effects(bad, exc):
    app, ad = deploy()
    before = json.dumps(app.to_state(), sort_keys=True)
    event = ev(1)
    event.update(bad)
    with pytest.raises(exc):
        ad.on_delegation_active(event)
    assert json.dumps(app.to_state(), sort_keys=True) == before and ad.records == {}


def test_other_bad_input():
    app, ad = deploy()
    with pytest.raises(InvalidDelegation):
        ad.on_delegation_active({"staking_tx_hash": h(1)})
    with pytest.raises(InvalidDelegation):
        ad.on_delegation_active(["not", "a", "dict"])
    ad.on_delegation_active(DelegationEvent(h(1), "02" + STAKER_1, FP_A.upper(), 1000))
    assert ad.delegation(h(1))["staker_btc_pk"] == STAKER_1  # compressed/upper-case keys normalised
    with pytest.raises(DuplicateDelegation):
        ad.on_delegation_active(ev(1))
    with pytest.raises(UnknownDelegation):
        ad.on_delegation_unbonding(h(2))
    with pytest.raises(UnknownFinalityProvider):
        ad.on_finality_provider_slashed(FP_C, height=1)
    with pytest.raises(InvalidDelegation):
        ad.on_finality_provider_slashed(FP_A, height=-1)
    assert issubclass(InvalidDelegation, ValueError) and issubclass(MeshError, ValueError)


def test_failure_mid_event_rolls_everything_back():
    app, ad = deploy()
    calls = []

    class FailingHost:
        def __getattr__(self, name):
            return getattr(app, name)

        def execute(self, sender, contract, msg, funds=None):
            calls.append(next(iter(msg)))
            if "stake_remote" in msg:
                raise ValidatorNotActive("consumer refused")
            return app.execute(sender, contract, msg, funds)

    before = json.dumps(app.to_state(), sort_keys=True)
    ad.host = FailingHost()
    with pytest.raises(ValidatorNotActive):
        ad.on_delegation_active(ev(1))
    assert calls == ["bond", "stake_remote"]
    assert json.dumps(app.to_state(), sort_keys=True) == before  # mint + bond undone
    assert ad.records == {}


def test_event_dispatch_and_state_round_trip():
    app, ad = deploy()
    ad.on_delegation_event(ev(1))
    ad.on_delegation_event(ev(1, status="EXPIRED"))
    assert ad.delegation(h(1))["status"] == "UNBONDING"
    state = json.loads(json.dumps(ad.to_state()))
    ad2 = BtcMeshAdapter.from_state(app, state)
    assert ad2.delegation(h(1)) == ad.delegation(h(1))
    # contracts round-trip through JSON too
    from mesh_adapter.plugin import contract_from_state
    for c in list(app.iter_contracts()):
        clone = contract_from_state(json.loads(json.dumps(c.to_state())))
        assert clone.to_state() == c.to_state()
    vault = contract_from_state(app.contracts[VAULT].to_state())
    assert vault.query({"account": {"account": ad.account_for(h(1))}})["bonded"] == "1000000"


def test_slashing_message_for_hook_dispatch():
    app, ad = deploy(authority="finality-module")
    ad.on_delegation_active(ev(1))
    msg = ad.slashing_message(FP_A, height=7, time=0)
    assert msg == {"wasm": {"execute": {"contract_addr": EXT, "funds": [], "msg": {"handle_slashing": {
        "validator": "valA", "height": 7, "time": 0, "tombstone": True}}}}}
    ex = msg["wasm"]["execute"]
    with pytest.raises(MeshError):  # only the configured authority may slash
        app.execute("someone-else", ex["contract_addr"], ex["msg"])
    app.execute("finality-module", ex["contract_addr"], ex["msg"])
    assert vault_acct(app, ad, 1)["bonded"] == "900000"
    assert stake(app, ad, 1)["stake"]["high"] == "900000"
