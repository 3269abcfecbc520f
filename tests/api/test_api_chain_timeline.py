"""Delegation timelines on a real chain, one BTC block at a time: every state the API reports is
reached through an edge of ``api.states.ALLOWED_TRANSITIONS``, and changes exactly at the BTC tip
the timelock rule (and the reply's ``withdrawable_height``) says."""

from __future__ import annotations

import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from api.server import app_for_chain
from api.states import DelegationState, check_transition
from api_chain_helpers import UNBONDING_TIME, Delegation, FinalityProviderKey, MiniBtc, StakingChain, small_params

pytestmark = pytest.mark.timeout(180)


class Tracker:
    """Follows one delegation through the API and checks each observed change."""

    def __init__(self, chain: StakingChain, client: TestClient, d: Delegation) -> None:
        self.chain, self.client, self.d = chain, client, d
        self.history: list[tuple[str, str | None]] = []

    def observe(self) -> dict:
        resp = self.client.get("/v2/delegation", params={"staking_tx_hash_hex": self.d.staking_tx_hash})
        assert resp.status_code == 200, resp.text
        data = resp.json()["data"]
        state = (data["state"], data["sub_state"])
        if self.history and self.history[-1] != state:
            check_transition(DelegationState(self.history[-1][0]), DelegationState(state[0]))
        if not self.history or self.history[-1] != state:
            self.history.append(state)
        return data

    def chain_status(self) -> str:
        return self.chain.query(self.chain.registry, {"delegation": {"staking_tx_hash": self.d.staking_tx_hash}})[
            "delegation"]["status"]


@pytest.fixture(scope="module")
def setup():
    params = small_params()
    chain = StakingChain(MiniBtc(), [params])
    try:
        chain.mine(n=2)
        fp = FinalityProviderKey("timeline-fp")
        chain.register_fp(fp, "fp-timeline")
        yield chain, TestClient(app_for_chain(chain.client)), params, fp
    finally:
        chain.close()


def test_early_unbonding_timeline(setup):
    chain, client, params, fp = setup
    d = Delegation("timeline-early", [fp.pk], 200_000, 300, params)
    t = Tracker(chain, client, d)
    chain.create(d, proof=False)
    assert t.observe()["state"] == "PENDING"
    chain.covenant_quorum(d, members=1)
    assert t.observe()["state"] == "PENDING"
    chain.covenant_quorum(d, members=2)  # member 0 again is ignored, member 1 completes the quorum
    assert t.observe()["state"] == "VERIFIED"
    chain.add_proof(d)
    assert t.observe()["state"] == "ACTIVE" and t.chain_status() == "ACTIVE"
    chain.unbond(d)
    data = t.observe()
    assert (data["state"], data["sub_state"]) == ("UNBONDING", "EARLY_UNBONDING")
    flip = data["withdrawable_height"]
    assert flip == data["delegation_unbonding"]["unbonding_height"] + UNBONDING_TIME - 1
    for _ in range(UNBONDING_TIME + 2):  # bounded: one BTC block at a time
        data = t.observe()
        want = "WITHDRAWABLE" if chain.btc.tip_height >= flip else "UNBONDING"
        assert data["state"] == want, (chain.btc.tip_height, flip, data)
        assert t.chain_status() == "UNBONDING"  # the registry waits for the withdrawal itself
        if chain.btc.tip_height > flip:
            break
        chain.mine()
    chain.withdraw(d, after_unbonding=True)
    assert t.observe()["state"] == "WITHDRAWN" and t.chain_status() == "WITHDRAWN"
    assert t.history == [("PENDING", None), ("VERIFIED", None), ("ACTIVE", None),
                         ("UNBONDING", "EARLY_UNBONDING"), ("WITHDRAWABLE", "EARLY_UNBONDING"),
                         ("WITHDRAWN", "EARLY_UNBONDING")]


def test_natural_expiry_timeline(setup):
    chain, client, params, fp = setup
    staking_time = params.min_staking_time_blocks
    d = Delegation("timeline-expiry", [fp.pk], 150_000, staking_time, params)
    t = Tracker(chain, client, d)
    chain.create(d, proof=True)  # proven first: PENDING with a start height
    data = t.observe()
    assert data["state"] == "PENDING" and data["delegation_staking"]["start_height"] is not None
    chain.covenant_quorum(d)
    data = t.observe()
    end = data["delegation_staking"]["end_height"]
    assert data["withdrawable_height"] == end - 1
    for _ in range(staking_time + 2):  # bounded
        tip = chain.btc.tip_height
        data, status = t.observe(), t.chain_status()
        if tip + 1 >= end:
            assert (data["state"], data["sub_state"]) == ("WITHDRAWABLE", "TIMELOCK"), tip
        elif tip + UNBONDING_TIME >= end:
            assert (data["state"], data["sub_state"]) == ("UNBONDING", "TIMELOCK"), tip
        else:
            assert data["state"] == "ACTIVE", tip
        # the registry's EXPIRED starts exactly where the API stops counting the stake
        assert status == ("EXPIRED" if tip >= end - UNBONDING_TIME else "ACTIVE"), tip
        if tip >= end:
            break
        chain.mine()
    assert t.history == [("PENDING", None), ("ACTIVE", None), ("UNBONDING", "TIMELOCK"), ("WITHDRAWABLE", "TIMELOCK")]
    chain.withdraw(d, after_unbonding=False)
    assert t.observe()["state"] == "WITHDRAWN" and t.chain_status() == "WITHDRAWN"
    assert t.history[-1] == ("WITHDRAWN", "TIMELOCK")
