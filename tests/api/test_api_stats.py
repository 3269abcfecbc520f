"""Finality providers, overall and staker stats: TVL counts only ACTIVE stake."""

from __future__ import annotations

from api_fixtures import (
    A_RECORDS, B_RECORDS, FP_ALPHA, FP_BETA, FP_DELTA, FP_GAMMA, STAKER_A, STAKER_B, STAKER_C,
)
from test_api_delegations import assert_bad_request


def _sum(recs) -> int:
    return sum(r.staking_amount for r in recs)


B_ALPHA = [r for r in B_RECORDS if r.fp_pks_hex == (FP_ALPHA,)]
B_BETA = [r for r in B_RECORDS if r.fp_pks_hex == (FP_BETA,)]


def test_finality_providers_active_tvl(client):
    resp = client.get("/v2/finality-providers")
    assert resp.status_code == 200
    fps = {f["btc_pk"]: f for f in resp.json()["data"]}
    assert set(fps) == {FP_ALPHA, FP_BETA, FP_GAMMA, FP_DELTA}
    alpha_tvl = A_RECORDS["ACTIVE"].staking_amount + _sum(B_ALPHA)
    beta_tvl = A_RECORDS["ACTIVE2"].staking_amount + _sum(B_BETA)
    assert (fps[FP_ALPHA]["active_tvl"], fps[FP_ALPHA]["active_delegations"]) == (alpha_tvl, 1 + len(B_ALPHA))
    assert (fps[FP_BETA]["active_tvl"], fps[FP_BETA]["active_delegations"]) == (beta_tvl, 1 + len(B_BETA))
    # gamma is slashed: its delegation is SLASHED and carries no TVL
    assert (fps[FP_GAMMA]["state"], fps[FP_GAMMA]["active_tvl"]) == ("slashed", 0)
    assert (fps[FP_DELTA]["state"], fps[FP_DELTA]["active_tvl"]) == ("standby", 0)
    assert fps[FP_ALPHA]["state"] == fps[FP_BETA]["state"] == "active"
    assert fps[FP_ALPHA]["description"]["moniker"] == "alpha"
    assert fps[FP_ALPHA]["commission"] == "0.05"
    order = [f["active_tvl"] for f in resp.json()["data"]]
    assert order == sorted(order, reverse=True)


def test_overall_stats(client):
    resp = client.get("/v2/stats")
    assert resp.status_code == 200
    s = resp.json()["data"]
    active = [A_RECORDS["ACTIVE"], A_RECORDS["ACTIVE2"], *B_RECORDS]
    assert s == {
        "active_tvl": _sum(active),
        "active_delegations": len(active),
        "active_stakers": 2,
        "active_finality_providers": 2,
        "total_finality_providers": 4,
        "total_delegations": len(A_RECORDS) + len(B_RECORDS),
        "total_stakers": 2,
        "btc_tip_height": 1000,
    }
    # unbonding, withdrawable, pending... stake is not TVL
    assert s["active_tvl"] < _sum([*A_RECORDS.values(), *B_RECORDS])


def test_overall_stats_move_with_the_btc_tip(client, source):
    before = client.get("/v2/stats").json()["data"]
    # A's ACTIVE delegation and B's first end at 1400: with 20 blocks of unbonding time
    # they stop counting at tip 1380, not at 1379
    source.btc_tip = 1379
    assert client.get("/v2/stats").json()["data"]["active_tvl"] == before["active_tvl"]
    source.btc_tip = 1380
    after = client.get("/v2/stats").json()["data"]
    assert before["active_tvl"] - after["active_tvl"] == A_RECORDS["ACTIVE"].staking_amount + B_RECORDS[0].staking_amount
    assert after["active_delegations"] == before["active_delegations"] - 2


def test_staker_stats_buckets(client):
    resp = client.get("/v2/staker/stats", params={"staker_pk_hex": STAKER_A})
    assert resp.status_code == 200
    a = A_RECORDS
    assert resp.json()["data"] == {
        "active_tvl": a["ACTIVE"].staking_amount + a["ACTIVE2"].staking_amount,
        "active_delegations": 2,
        "unbonding_tvl": a["UNBONDING"].staking_amount + a["UNBONDING_TIMELOCK"].staking_amount,
        "unbonding_delegations": 2,
        "withdrawable_tvl": a["WITHDRAWABLE"].staking_amount + a["WITHDRAWABLE_EARLY"].staking_amount,
        "withdrawable_delegations": 2,
        "slashed_tvl": a["SLASHED"].staking_amount,
        "slashed_delegations": 1,
    }


def test_staker_stats_other_stakers(client):
    b = client.get("/v2/staker/stats", params={"staker_pk_hex": STAKER_B}).json()["data"]
    assert (b["active_tvl"], b["active_delegations"]) == (_sum(B_RECORDS), 25)
    c = client.get("/v2/staker/stats", params={"staker_pk_hex": STAKER_C}).json()["data"]
    assert set(c.values()) == {0}


def test_staker_stats_bad_input(client):
    assert_bad_request(client.get("/v2/staker/stats"), "staker_pk_hex is required")
    assert_bad_request(client.get("/v2/staker/stats", params={"staker_pk_hex": "12" * 20}), "staker_pk_hex", "got 40")
