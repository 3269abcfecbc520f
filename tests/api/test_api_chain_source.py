"""The staking API over a REAL chain: ``LocalChain`` with the BTC light client and staking registry,
driven by cosmpy-signed txs (real staking txs, PoW headers, merkle proofs), queried through the API
with FastAPI's ``TestClient`` over ``api.server.app_for_chain`` (cosmpy ``LedgerClient``) and
``app_for_url`` (the chain's REST gateway).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from api.chain_source import ChainAppSource, RegistrySource
from api.params import encode_pagination_key
from api.server import app_for_chain, app_for_url
from cosmos_chain.modules.base import module_address
from api_chain_helpers import (
    K,
    UNBONDING_TIME,
    Delegation,
    FinalityProviderKey,
    MiniBtc,
    StakingChain,
    TxFailed,
    small_params,
)

pytestmark = pytest.mark.timeout(180)

P0 = small_params()
P1 = small_params(unbonding_fee_sat=2_000)  # the last version applies to new delegations
ALPHA, BETA, GAMMA, DELTA = (FinalityProviderKey(n) for n in ("alpha", "beta", "gamma", "delta"))
LONG = 500


@dataclass
class World:
    """The chain and the delegations in each state."""

    chain: StakingChain
    d: dict[str, Delegation]
    client: TestClient
    rest_client: TestClient


def _deleg(label: str, staker: str, fp: FinalityProviderKey, value: int, time: int = LONG) -> Delegation:
    return Delegation(staker, [fp.pk], value, time, P1, funding_label=label)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    btc = MiniBtc()
    # the FPs never vote here: a liveness window that does not jail them during the module
    chain = StakingChain(btc, [P0, P1], extra_genesis={"finality": {"params": {
        "signed_blocks_window": 100_000, "max_missed": 99_999}}})
    try:
        chain.mine(n=3)
        chain.register_fp(ALPHA, "fp-alpha", "0.05")
        chain.register_fp(BETA, "fp-beta", "0.10")
        chain.register_fp(GAMMA, "fp-gamma", "0.02")
        chain.register_fp(DELTA, "fp-delta", "0.03")
        d = {
            "active_a1": _deleg("a1", "A", ALPHA, 300_000),
            "active_a2": _deleg("a2", "A", BETA, 200_000),
            "active_b1": _deleg("b1", "B", ALPHA, 150_000),
            "pending": _deleg("p", "A", ALPHA, 60_000),
            "verified": _deleg("v", "B", BETA, 70_000),
            "expired": _deleg("e", "C", BETA, 80_000, time=P1.min_staking_time_blocks),
            "unbonded_old": _deleg("uo", "A", ALPHA, 90_000),
            "withdrawn": _deleg("w", "C", ALPHA, 110_000),
            "unbonding": _deleg("un", "B", BETA, 120_000),
            "slashed": _deleg("s", "C", DELTA, 130_000),
            # staking time 10: proven at s (tip s+K), then the final unbonding mines 1+K blocks -> tip s+5:
            # past end - unbonding_time (chain EXPIRED) but the staking timelock has not passed yet
            "expiring": _deleg("x", "B", GAMMA, 140_000, time=10),
        }
        # pending: k-deep proof, no covenant quorum (only one member signed)
        chain.create(d["pending"], proof=True)
        chain.covenant_quorum(d["pending"], members=1)
        # verified: quorum, no inclusion proof (pre-approval flow)
        chain.create(d["verified"], proof=False)
        chain.covenant_quorum(d["verified"])
        # active: quorum first, then the proof
        for name in ("active_a1", "active_a2", "active_b1", "expired", "unbonded_old", "withdrawn", "unbonding",
                     "slashed"):
            chain.create(d[name], proof=False)
            chain.covenant_quorum(d[name])
            chain.add_proof(d[name])
        # early unbonding + withdrawal of the unbonding output after its timelock
        chain.unbond(d["withdrawn"])
        chain.unbond(d["unbonded_old"])
        chain.mine(n=UNBONDING_TIME)
        chain.withdraw(d["withdrawn"], after_unbonding=True)
        # the short delegation's staking timelock passes
        chain.mine(n=P1.min_staking_time_blocks)
        # DELTA double-signs: the finality module extracts its key and slashes it in the registry
        world_slash = chain.slash_fp(DELTA)
        assert world_slash["slashed"] is True
        chain.create(d["expiring"], proof=False)
        chain.covenant_quorum(d["expiring"])
        chain.add_proof(d["expiring"])
        # the last unbonding: its timelock has not passed at the final tip
        chain.unbond(d["unbonding"])
        # ALPHA and BETA commit randomness: they get voting power (their ACTIVE sats); GAMMA does not
        for fp in (ALPHA, BETA):
            chain.commit_randomness(fp, 3_000)
        chain.wait_for_height(chain.height() + 1)
        client = TestClient(app_for_chain(chain.client))
        rest_client = TestClient(app_for_url(chain.chain.rest.url, timeout=10))
        yield World(chain, d, client, rest_client)
    finally:
        chain.close()


def _get(client: TestClient, path: str, **params) -> dict:
    resp = client.get(path, params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _delegation(world: World, name: str, client: TestClient | None = None) -> dict:
    return _get(client or world.client, "/v2/delegation", staking_tx_hash_hex=world.d[name].staking_tx_hash)["data"]


EXPECTED = {
    "active_a1": ("ACTIVE", None),
    "active_a2": ("ACTIVE", None),
    "active_b1": ("ACTIVE", None),
    "pending": ("PENDING", None),
    "verified": ("VERIFIED", None),
    "expired": ("WITHDRAWABLE", "TIMELOCK"),
    "unbonded_old": ("WITHDRAWABLE", "EARLY_UNBONDING"),
    "withdrawn": ("WITHDRAWN", "EARLY_UNBONDING"),
    "unbonding": ("UNBONDING", "EARLY_UNBONDING"),
    "slashed": ("SLASHED", None),
    "expiring": ("UNBONDING", "TIMELOCK"),
}

CHAIN_STATUS = {
    "active_a1": "ACTIVE", "active_a2": "ACTIVE", "active_b1": "ACTIVE", "pending": "PENDING",
    "verified": "VERIFIED", "expired": "EXPIRED", "unbonded_old": "UNBONDING", "withdrawn": "WITHDRAWN",
    "unbonding": "UNBONDING", "slashed": "SLASHED", "expiring": "EXPIRED",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_delegation_state_by_hash(world, name):
    d = world.d[name]
    for client in (world.client, world.rest_client):
        got = _delegation(world, name, client)
        assert (got["state"], got["sub_state"]) == EXPECTED[name], (name, got)
        assert got["staker_btc_pk_hex"] == d.staker_pk.hex()
        assert got["finality_provider_btc_pks_hex"] == [k.hex() for k in d.fps]
        staking = got["delegation_staking"]
        assert staking["staking_tx_hash_hex"] == d.staking_tx_hash
        assert staking["staking_amount"] == d.value and staking["staking_timelock"] == d.staking_time
        assert staking["staking_output_idx"] == 0
        assert staking["staking_tx_hex"] == d.staking_tx.serialize().hex()
        assert got["delegation_unbonding"]["unbonding_timelock"] == UNBONDING_TIME
        assert got["params_version"] == 1


def test_delegation_heights_match_the_btc_chain(world):
    btc = world.chain.btc
    got = _delegation(world, "active_a1")
    block, _ = btc.find(world.d["active_a1"].staking_tx)
    assert got["delegation_staking"]["start_height"] == block.height
    assert got["delegation_staking"]["end_height"] == block.height + LONG
    assert got["withdrawable_height"] == block.height + LONG - 1
    assert got["delegation_staking"]["bbn_inception_height"] >= 1
    unb = _delegation(world, "unbonding")
    ublock, _ = btc.find(world.d["unbonding"].unbonding_tx)
    assert unb["delegation_unbonding"]["unbonding_height"] == ublock.height
    assert unb["withdrawable_height"] == ublock.height + UNBONDING_TIME - 1
    assert btc.tip_height < unb["withdrawable_height"]  # still unbonding at the tip
    verified = _delegation(world, "verified")
    assert verified["delegation_staking"]["start_height"] is None


def test_unknown_delegation_is_404(world):
    for client in (world.client, world.rest_client):
        resp = client.get("/v2/delegation", params={"staking_tx_hash_hex": "ab" * 32})
        assert resp.status_code == 404
        assert resp.json() == {"errorCode": "NOT_FOUND", "message": f"staking delegation {'ab' * 32} not found"}


@pytest.mark.parametrize("value,why", [("xy" * 32, "not hex"), ("ab" * 31, "expected 64 hex characters"),
                                       ("abc", "odd number of hex characters")])
def test_bad_tx_hash_is_400(world, value, why):
    resp = world.client.get("/v2/delegation", params={"staking_tx_hash_hex": value})
    assert resp.status_code == 400 and resp.json()["errorCode"] == "BAD_REQUEST"
    assert why in resp.json()["message"] and "staking_tx_hash_hex" in resp.json()["message"]


def test_delegations_by_staker_paginated(world):
    staker_a = world.d["active_a1"].staker_pk.hex()
    want = sorted(d.staking_tx_hash for d in world.d.values() if d.staker_pk.hex() == staker_a)
    assert len(want) == 4
    seen: list[str] = []
    key = ""
    for _ in range(10):  # bounded
        body = _get(world.client, "/v2/delegations", staker_pk_hex=staker_a, limit=3, pagination_key=key)
        seen += [x["delegation_staking"]["staking_tx_hash_hex"] for x in body["data"]]
        assert all(x["staker_btc_pk_hex"] == staker_a for x in body["data"])
        key = body["pagination"]["next_key"]
        if not key:
            break
    assert seen == want
    # the compressed (02/03) form of the key selects the same delegations
    body = _get(world.rest_client, "/v2/delegations", staker_pk_hex="02" + staker_a, limit=100)
    assert sorted(x["delegation_staking"]["staking_tx_hash_hex"] for x in body["data"]) == want
    # state filter
    body = _get(world.client, "/v2/delegations", staker_pk_hex=staker_a, state="active")
    assert {x["delegation_staking"]["staking_tx_hash_hex"] for x in body["data"]} == {
        world.d["active_a1"].staking_tx_hash, world.d["active_a2"].staking_tx_hash}


def test_delegations_of_unknown_staker_is_empty(world):
    body = _get(world.client, "/v2/delegations", staker_pk_hex=FinalityProviderKey("nobody").pk.hex())
    assert body == {"data": [], "pagination": {"next_key": ""}}


@pytest.mark.parametrize("params,why", [
    ({"staker_pk_hex": "00" * 32}, "not a valid secp256k1 public key"),
    ({"staker_pk_hex": "04" + "11" * 32}, "33-byte key must start with 02 or 03"),
    ({}, "staker_pk_hex is required"),
    ({"pagination_key": "!!!"}, "not a pagination key"),
    ({"pagination_key": encode_pagination_key("ab" * 32)[:-4]}, "wrong length"),
    ({"limit": 0}, "invalid limit"),
    ({"limit": 101}, "invalid limit"),
    ({"state": "BOGUS"}, "invalid state"),
])
def test_bad_delegations_params_are_400(world, params, why):
    q = {"staker_pk_hex": world.d["active_a1"].staker_pk.hex(), **params}
    if params == {}:
        q = {}
    resp = world.client.get("/v2/delegations", params=q)
    assert resp.status_code == 400, resp.text
    assert why in resp.json()["message"]


def test_finality_providers_with_active_tvl(world):
    for client in (world.client, world.rest_client):
        fps = {f["btc_pk"]: f for f in _get(client, "/v2/finality-providers")["data"]}
        assert set(fps) == {ALPHA.pk.hex(), BETA.pk.hex(), GAMMA.pk.hex(), DELTA.pk.hex()}
        assert fps[DELTA.pk.hex()]["state"] == "slashed" and fps[DELTA.pk.hex()]["active_tvl"] == 0
        d = world.d
        assert fps[ALPHA.pk.hex()]["active_tvl"] == d["active_a1"].value + d["active_b1"].value
        assert fps[ALPHA.pk.hex()]["active_delegations"] == 2
        assert fps[BETA.pk.hex()]["active_tvl"] == d["active_a2"].value
        assert fps[GAMMA.pk.hex()]["active_tvl"] == 0 and fps[GAMMA.pk.hex()]["state"] == "standby"
        assert fps[ALPHA.pk.hex()]["state"] == "active"
        # finality (issue 9): power = ACTIVE sats for the FPs with randomness, none for the others
        assert fps[ALPHA.pk.hex()]["voting_power"] == fps[ALPHA.pk.hex()]["active_tvl"]
        assert fps[BETA.pk.hex()]["voting_power"] == d["active_a2"].value and fps[BETA.pk.hex()]["state"] == "active"
        assert fps[GAMMA.pk.hex()]["voting_power"] == 0 and fps[DELTA.pk.hex()]["voting_power"] == 0
        assert fps[ALPHA.pk.hex()]["description"]["moniker"] == "fp-alpha"
        assert fps[ALPHA.pk.hex()]["description"]["website"] == "https://fp-alpha.example"
        assert fps[BETA.pk.hex()]["commission"] == "0.10"
        for pk, fp in fps.items():  # the registry's own bookkeeping agrees
            assert fp["active_tvl"] == world.chain.query(world.chain.registry, {"finality_provider": {"btc_pk": pk}})[
                "active_sat"], pk
        order = [f["btc_pk"] for f in _get(client, "/v2/finality-providers")["data"]]
        assert order[0] == ALPHA.pk.hex() and order[1] == BETA.pk.hex()


def test_overall_and_staker_stats(world):
    d = world.d
    stats = _get(world.client, "/v2/stats")["data"]
    active = [d["active_a1"], d["active_a2"], d["active_b1"]]
    assert stats["active_tvl"] == sum(x.value for x in active)
    assert stats["active_delegations"] == 3 and stats["active_stakers"] == 2
    assert stats["total_delegations"] == len(d) and stats["total_stakers"] == 3
    assert stats["total_finality_providers"] == 4 and stats["active_finality_providers"] == 2
    assert stats["btc_tip_height"] == world.chain.btc.tip_height
    assert _get(world.rest_client, "/v2/stats")["data"] == stats
    b = _get(world.client, "/v2/staker/stats", staker_pk_hex=d["unbonding"].staker_pk.hex())["data"]
    assert b["active_tvl"] == d["active_b1"].value and b["active_delegations"] == 1
    # early unbonding and timelock unbonding (chain EXPIRED, timelock not passed) both count as unbonding
    assert b["unbonding_tvl"] == d["unbonding"].value + d["expiring"].value and b["unbonding_delegations"] == 2
    c = _get(world.client, "/v2/staker/stats", staker_pk_hex=d["expired"].staker_pk.hex())["data"]
    assert c["withdrawable_tvl"] == d["expired"].value and c["active_tvl"] == 0
    assert c["slashed_tvl"] == d["slashed"].value and c["slashed_delegations"] == 1


def test_params_and_network_info(world):
    params = _get(world.client, "/v2/params")["data"]
    assert [p["version"] for p in params["bbn"]] == [0, 1]
    v0, v1 = params["bbn"]
    assert v0["covenant_pks"] == [k.hex() for k in P0.covenant_pks] and v0["covenant_quorum"] == P0.covenant_quorum
    assert v0["unbonding_fee_sat"] == 1_000 and v1["unbonding_fee_sat"] == 2_000
    assert v0["min_staking_time_blocks"] == P0.min_staking_time_blocks
    assert v0["slashing_pk_script"] == P0.slashing_pk_script.hex() and v0["tag"] == P0.tag.hex()
    assert v0["slashing_rate"] == str(P0.slashing_rate)
    assert [p["btc_confirmation_depth"] for p in params["btc"]] == [K, K]
    info = _get(world.rest_client, "/v2/network-info")["data"]
    assert info["params"] == params and info["btc_tip_height"] == world.chain.btc.tip_height
    assert info["staking_status"]["is_staking_open"] is True
    # DELTA's lone vote (it alone had power then) finalized its block
    fin = world.chain.query(module_address("finality"), {"last_finalized_height": {}})["height"]
    assert isinstance(fin, int) and info["last_finalized_height"] == fin


def test_health_reports_the_btc_tip(world):
    for client in (world.client, world.rest_client):
        assert _get(client, "/healthcheck") == {"data": {"status": "ok", "btc_tip_height": world.chain.btc.tip_height}}


def test_registry_source_maps_the_chain_records(world):
    """The source layer itself: records as the registry reports them."""
    src = RegistrySource(world.chain.query, world.chain.registry, world.chain.light_client, page_limit=2)
    recs = {r.staking_tx_hash_hex: r for r in src.list_delegations()}  # several registry pages
    assert set(recs) == {d.staking_tx_hash for d in world.d.values()}
    pending = recs[world.d["pending"].staking_tx_hash]
    assert pending.has_covenant_quorum is False and pending.start_height is not None
    verified = recs[world.d["verified"].staking_tx_hash]
    assert verified.has_covenant_quorum is True and verified.start_height is None
    withdrawn = recs[world.d["withdrawn"].staking_tx_hash]
    assert withdrawn.withdrawn_height is not None and withdrawn.unbonding_height is not None
    assert withdrawn.unbonding_tx_hex == world.d["withdrawn"].unbonding_tx.serialize().hex()
    assert {n: recs[d.staking_tx_hash].chain_status for n, d in world.d.items()} == CHAIN_STATUS
    assert src.get_delegation("cd" * 32) is None
    assert src.btc_tip_height() == world.chain.btc.tip_height
    # the in-process source over the same ChainApp sees the same records
    local = ChainAppSource(world.chain.chain.app)
    assert {r.staking_tx_hash_hex: r for r in local.list_delegations()} == recs
    assert local.list_finality_providers() == src.list_finality_providers()
    assert local.params() == src.params() and local.btc_tip_height() == src.btc_tip_height()


def test_chain_refuses_what_the_api_must_never_show(world):
    """A delegation the registry rejected leaves nothing behind: the API still says 404."""
    bad = _deleg("bad", "D", ALPHA, 9_000)  # below min_staking_value_sat (10_000)
    with pytest.raises(TxFailed):
        world.chain.create(bad, proof=False)
    resp = world.client.get("/v2/delegation", params={"staking_tx_hash_hex": bad.staking_tx_hash})
    assert resp.status_code == 404
