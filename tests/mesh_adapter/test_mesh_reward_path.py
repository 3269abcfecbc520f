"""Issue 15: consumer rewards → virtual staking → converter → external staking → BTC delegations.

Exact accounting over seeded random sequences (bond/stake, distribute, fees, slash, unstake,
withdraw, claim): after every step every unit the consumer created is in exactly one place.
"""

from __future__ import annotations

import os
import random

import pytest

from mesh_adapter.consumer import ConsumerDistribution
from mesh_adapter.deploy import BtcMeshParams, deploy_btc_mesh
from mesh_adapter.errors import MeshError, PaymentError, Unauthorized, UnexpectedDenom
from mesh_adapter.external_staking import DISTRIBUTION_POINTS_SCALE
from mesh_adapter.framework import MeshApp
from mesh_adapter.numeric import coin
from mesh_adapter.rewards import claim_rewards, delegation_rewards, reward_summary, run_consumer_block

FPS = {f"{i:02x}" * 32: f"val{i}" for i in (1, 2, 3)}
FP_ADDR = {v: f"fp-owner-{v}" for v in FPS.values()}
STAKERS = [f"staker{i}" for i in range(4)]


def deploy(rng: random.Random | None = None, **kw) -> tuple[MeshApp, object, BtcMeshParams]:
    params = dict(price="1", discount="0", slashing_rate="0.1", unbonding_period=50, fp_to_validator=dict(FPS),
                  block_reward=1000)
    params.update(kw)
    p = BtcMeshParams(**params)
    app = MeshApp()
    ad = deploy_btc_mesh(app, p)
    for i, val in enumerate(FPS.values()):
        rate = ["0.05", "0.1", "0"][i] if rng is None else rng.choice(["0", "0.03", "0.1", "0.333"])
        app.execute(p.authority, p.external_staking, {"set_validator_commission": {
            "valoper": val, "rate": rate, "recipient": FP_ADDR[val]}})
    return app, ad, p


def check_books(app: MeshApp, ad, p: BtcMeshParams, owner: dict[str, str]) -> dict:
    """The sum invariant and where every token sits."""
    s = reward_summary(app, p)
    t, c = s["totals"], s["consumer"]
    assert t["balanced"], t
    assert t["carried"] >= 0 and t["undistributed"] >= 0
    for v in s["validators"]:  # carried is exactly the sub-unit points upstream's alignment keeps
        assert int(v["carried"]) * DISTRIBUTION_POINTS_SCALE == int(v["carried_points"]), v
    # tokens: the converter holds what is not paid out; recipients hold claimed; FPs hold commission
    assert app.balance(p.converter, p.virtual_denom) == t["pending"] + t["undistributed"] + t["carried"]
    assert sum(app.balance(a, p.virtual_denom) for a in STAKERS) == t["claimed"]
    assert sum(app.balance(a, p.virtual_denom) for a in FP_ADDR.values()) == t["commission"]
    assert app.balance(p.virtual_staking, p.virtual_denom) == 0
    # the consumer: every unit minted or paid as fee is in exactly one bucket
    created = int(c["minted"]) + int(c["fees"])
    assert created == int(c["to_native"]) + int(c["to_delegators"]) + int(c["community_pool"]) + int(c["fee_pool"])
    assert int(c["to_delegators"]) == int(c["withdrawn"]) + int(c["outstanding"])
    assert int(c["withdrawn"]) == t["paid_by_consumer"]
    # per delegation pending + claimed sums to the totals
    pend = claimed = 0
    for rec in ad.records.values():
        r = delegation_rewards(app, p, rec["account"], rec["validator"])
        pend, claimed = pend + r["pending"], claimed + r["claimed"]
    assert (pend, claimed) == (t["pending"], t["claimed"])
    return t


def earned(app, p, rec) -> int:
    r = delegation_rewards(app, p, rec["account"], rec["validator"])
    return r["pending"] + r["claimed"]


@pytest.mark.parametrize("seed", range(int(os.environ.get("MESH_REWARD_WALKS", "8"))))
def test_random_reward_walk(seed):
    rng = random.Random(1000 + seed)
    app, ad, p = deploy(rng, price=rng.choice(["1", "3", "0.7"]), discount=rng.choice(["0", "0.25"]),
                        max_cap=rng.choice([10**18, 2_000_000]),
                        consumer_native_power=rng.choice([{}, {"val1": 500_000, "val9": 123_457}]))
    owner: dict[str, str] = {}
    frozen: dict[str, int] = {}  # slashed / unbonding delegations: earned must not grow any more
    n = 0
    for step in range(150):
        op = rng.random()
        try:
            if op < 0.25:
                n += 1
                h = f"{n:064x}"
                ad.on_delegation_active({"staking_tx_hash": h, "staker_btc_pk": f"{rng.randrange(1, 5):02x}" * 32,
                                         "fp_btc_pk": rng.choice(list(FPS)), "value_sat": rng.randrange(1, 3_000_000)})
                owner[h] = rng.choice(STAKERS)
            elif op < 0.55:
                run_consumer_block(app, p, rng.choice([0, 1, 7, 1000, 999_983]))
            elif op < 0.6:
                fee = rng.randrange(1, 5000)
                app.mint("fee-payer", [coin(fee, p.virtual_denom)])
                app.execute("fee-payer", p.consumer_distribution, {"pay_fees": {}}, [coin(fee, p.virtual_denom)])
            elif op < 0.7 and ad.records:
                h = rng.choice(sorted(ad.records))
                ad.on_delegation_unbonding(h)
                frozen.setdefault(h, earned(app, p, ad.records[h]))
            elif op < 0.715:
                fp = rng.choice(list(FPS))
                ad.on_finality_provider_slashed(fp, height=step)
                for h, rec in ad.records.items():
                    if rec["fp_btc_pk"] == fp and rec["status"] == "SLASHED":
                        frozen.setdefault(h, earned(app, p, rec))
            elif op < 0.9 and ad.records:
                h = rng.choice(sorted(ad.records))
                rec = ad.records[h]
                claim_rewards(app, p, rec["account"], rec["validator"], owner[h])
            else:
                app.advance(rng.randrange(1, 40))
                ad.process_matured()
        except MeshError:
            pass  # refused events must leave no trace (checked by the books)
        check_books(app, ad, p, owner)
        for h, e in frozen.items():
            assert earned(app, p, ad.records[h]) == e, (step, h)
    t = check_books(app, ad, p, owner)
    assert t["paid_by_consumer"] > 0


def test_two_stakers_slash_stops_earning_and_claim():
    """B earns the whole run; A earns until its FP is slashed; earned rewards stay claimable."""
    app, ad, p = deploy(block_reward=1000)
    fp_a, fp_b = list(FPS)[:2]
    a = ad.on_delegation_active({"staking_tx_hash": "aa" * 32, "staker_btc_pk": "0a" * 32, "fp_btc_pk": fp_a,
                                 "value_sat": 300_000})
    b = ad.on_delegation_active({"staking_tx_hash": "bb" * 32, "staker_btc_pk": "0b" * 32, "fp_btc_pk": fp_b,
                                 "value_sat": 100_000})
    for _ in range(3):
        assert run_consumer_block(app, p) == 1000  # all consumer power is virtual: everything flows
    ra, rb = (delegation_rewards(app, p, r["account"], r["validator"]) for r in (a, b))
    # by power 3:1 → 750 / 250 per block, minus 5% / 10% commission
    assert ra["pending"] == 3 * (750 - 37) and rb["pending"] == 3 * (250 - 25)
    assert app.balance(FP_ADDR["val1"], "ustake") == 3 * 37 and app.balance(FP_ADDR["val2"], "ustake") == 3 * 25
    ad.on_finality_provider_slashed(fp_a, height=10)
    for _ in range(2):
        assert run_consumer_block(app, p) == 1000  # now all to B's validator
    ra2 = delegation_rewards(app, p, a["account"], a["validator"])
    rb2 = delegation_rewards(app, p, b["account"], b["validator"])
    assert ra2 == ra  # nothing after the slash, nothing lost
    assert rb2["pending"] == rb["pending"] + 2 * (1000 - 100)
    assert claim_rewards(app, p, b["account"], b["validator"], "staker-b") == rb2["pending"]
    assert claim_rewards(app, p, a["account"], a["validator"], "staker-a") == ra["pending"]
    assert app.balance("staker-b", "ustake") == rb2["pending"] and app.balance("staker-a", "ustake") == ra["pending"]
    assert claim_rewards(app, p, b["account"], b["validator"], "staker-b") == 0
    t = reward_summary(app, p)["totals"]
    assert t["balanced"] and t["paid_by_consumer"] == 5000 and t["pending"] + t["carried"] + t["undistributed"] == 0


def test_unbonding_stops_earning_when_unstaked():
    app, ad, p = deploy()
    rec = ad.on_delegation_active({"staking_tx_hash": "cc" * 32, "staker_btc_pk": "0c" * 32,
                                   "fp_btc_pk": list(FPS)[2], "value_sat": 5000})
    run_consumer_block(app, p)
    before = delegation_rewards(app, p, rec["account"], rec["validator"])
    assert before["pending"] == 1000  # val3: commission 0
    ad.on_delegation_unbonding(rec["staking_tx_hash"])
    assert run_consumer_block(app, p) == 0  # no virtual stake left: the consumer pays the mesh nothing
    assert delegation_rewards(app, p, rec["account"], rec["validator"]) == before
    assert reward_summary(app, p)["consumer"]["community_pool"] == "1000"


def test_native_power_shares_and_fees():
    app, ad, p = deploy(consumer_native_power={"val1": 100_000, "valX": 200_000})
    ad.on_delegation_active({"staking_tx_hash": "dd" * 32, "staker_btc_pk": "0d" * 32,
                             "fp_btc_pk": list(FPS)[0], "value_sat": 100_000})
    app.mint("payer", [coin(500, "ustake")])
    app.execute("payer", p.consumer_distribution, {"pay_fees": {}}, [coin(500, "ustake")])
    # total 1500 over power val1 200k (100k native + 100k virtual), valX 200k: 750 / 750; virtual half of 750
    assert run_consumer_block(app, p) == 375
    assert app.balance("val1", "ustake") == 375 and app.balance("valX", "ustake") == 750
    t = reward_summary(app, p)
    assert t["totals"]["balanced"] and t["consumer"]["fees"] == "500"


def test_reward_entry_points_are_guarded():
    app, ad, p = deploy()
    with pytest.raises(Unauthorized):
        app.execute("mallory", p.external_staking, {"distribute_batch": {"rewards": [], "denom": "ustake"}})
    with pytest.raises(Unauthorized):
        app.execute("mallory", p.external_staking, {"set_validator_commission": {
            "valoper": "val1", "rate": "0.5", "recipient": "mallory"}})
    with pytest.raises(Unauthorized):
        app.execute("mallory", p.consumer_distribution, {"allocate": {}})
    with pytest.raises(Unauthorized):
        app.execute("mallory", p.virtual_staking, {"collect_rewards": {}})
    app.mint(p.virtual_staking, [coin(10, "ustake")])
    with pytest.raises(PaymentError):  # the payments must add up to the funds
        app.execute(p.virtual_staking, p.converter, {"distribute_rewards": {
            "payments": [{"validator": "val1", "reward": "11"}]}}, [coin(10, "ustake")])
    with pytest.raises(UnexpectedDenom):
        app.execute(p.authority, p.external_staking, {"distribute_batch": {"rewards": [], "denom": "sat"}})
    with pytest.raises(MeshError):
        app.execute(p.authority, p.external_staking, {"set_validator_commission": {
            "valoper": "val1", "rate": "1.5", "recipient": "x"}})


def test_rewards_without_stake_are_kept_undistributed():
    app, ad, p = deploy()
    app.mint(p.virtual_staking, [coin(10, "ustake")])
    app.execute(p.virtual_staking, p.converter, {"distribute_rewards": {
        "payments": [{"validator": "val3", "reward": "10"}]}}, [coin(10, "ustake")])
    vr = app.query(p.external_staking, {"validator_rewards": {"validator": "val3"}})
    assert vr["undistributed"] == "10" and vr["distributed"] == "10"


def test_state_roundtrip_keeps_pending():
    app, ad, p = deploy()
    rec = ad.on_delegation_active({"staking_tx_hash": "ee" * 32, "staker_btc_pk": "0e" * 32,
                                   "fp_btc_pk": list(FPS)[1], "value_sat": 7777})
    for _ in range(3):
        run_consumer_block(app, p, 333)
    want = delegation_rewards(app, p, rec["account"], rec["validator"])
    app2 = MeshApp()
    from mesh_adapter.plugin import contract_from_state
    for c in app.to_state()["contracts"]:
        app2.add_contract(contract_from_state(c))
    assert isinstance(app2.contracts[p.consumer_distribution], ConsumerDistribution)
    assert delegation_rewards(app2, p, rec["account"], rec["validator"]) == want
