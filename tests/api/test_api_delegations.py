"""GET /v2/delegation and /v2/delegations: lookup, states, pagination, filters, bad input."""

from __future__ import annotations

import pytest

from api.params import encode_pagination_key
from api_fixtures import A_RECORDS, B_RECORDS, FP_ALPHA, STAKER_A, STAKER_B, STAKER_C, compressed, txid

BAD = {"errorCode": "BAD_REQUEST"}


def assert_bad_request(resp, *needles: str) -> None:
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert set(body) == {"errorCode", "message"}
    assert body["errorCode"] == "BAD_REQUEST"
    for needle in needles:
        assert needle in body["message"], body["message"]


def test_get_delegation_returns_full_record(client):
    rec = A_RECORDS["ACTIVE"]
    resp = client.get("/v2/delegation", params={"staking_tx_hash_hex": rec.staking_tx_hash_hex})
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"data"}
    d = body["data"]
    assert d["state"] == "ACTIVE" and d["sub_state"] is None
    assert d["staker_btc_pk_hex"] == STAKER_A
    assert d["finality_provider_btc_pks_hex"] == [FP_ALPHA]
    assert d["delegation_staking"] == {
        "staking_tx_hash_hex": rec.staking_tx_hash_hex, "staking_tx_hex": "", "staking_output_idx": 0,
        "staking_timelock": 500, "staking_amount": 1_000_000, "start_height": 900, "end_height": 1400,
        "bbn_inception_height": 10, "bbn_inception_time": "2026-11-25T03:00:00Z",
    }
    assert d["delegation_unbonding"] == {"unbonding_timelock": 20, "unbonding_tx": "", "unbonding_height": None}
    assert d["withdrawable_height"] == 1399


@pytest.mark.parametrize(
    "key,state,sub",
    [("PENDING", "PENDING", None), ("VERIFIED", "VERIFIED", None), ("UNBONDING", "UNBONDING", "EARLY_UNBONDING"),
     ("UNBONDING_TIMELOCK", "UNBONDING", "TIMELOCK"), ("WITHDRAWABLE", "WITHDRAWABLE", "TIMELOCK"),
     ("WITHDRAWABLE_EARLY", "WITHDRAWABLE", "EARLY_UNBONDING"), ("WITHDRAWN", "WITHDRAWN", "TIMELOCK"),
     ("SLASHED", "SLASHED", None)],
)
def test_get_delegation_states(client, key, state, sub):
    resp = client.get("/v2/delegation", params={"staking_tx_hash_hex": A_RECORDS[key].staking_tx_hash_hex})
    assert resp.status_code == 200
    assert (resp.json()["data"]["state"], resp.json()["data"]["sub_state"]) == (state, sub)


def test_state_follows_btc_tip_and_observed_unbonding(client, source):
    h = A_RECORDS["ACTIVE"].staking_tx_hash_hex
    source.update_delegation(h, unbonding_height=1000, unbonding_tx_hex="02000000")
    d = client.get("/v2/delegation", params={"staking_tx_hash_hex": h}).json()["data"]
    assert (d["state"], d["sub_state"], d["withdrawable_height"]) == ("UNBONDING", "EARLY_UNBONDING", 1019)
    assert d["delegation_unbonding"]["unbonding_tx"] == "02000000"
    source.btc_tip = 1019
    assert client.get("/v2/delegation", params={"staking_tx_hash_hex": h}).json()["data"]["state"] == "WITHDRAWABLE"
    source.update_delegation(h, withdrawn_height=1020)
    assert client.get("/v2/delegation", params={"staking_tx_hash_hex": h}).json()["data"]["state"] == "WITHDRAWN"


def test_fp_slashed_flag_alone_makes_its_delegations_slashed(client, source):
    from dataclasses import replace

    fp = next(f for f in source.list_finality_providers() if f.btc_pk_hex == FP_ALPHA)
    source.put_finality_provider(replace(fp, slashed=True))
    d = client.get("/v2/delegation", params={"staking_tx_hash_hex": A_RECORDS["ACTIVE"].staking_tx_hash_hex})
    assert d.json()["data"]["state"] == "SLASHED"
    # no covenant signatures yet: a PENDING delegation cannot be slashed
    d = client.get("/v2/delegation", params={"staking_tx_hash_hex": A_RECORDS["PENDING"].staking_tx_hash_hex})
    assert d.json()["data"]["state"] == "PENDING"


def test_get_delegation_accepts_uppercase_hex(client):
    h = A_RECORDS["ACTIVE"].staking_tx_hash_hex
    resp = client.get("/v2/delegation", params={"staking_tx_hash_hex": h.upper()})
    assert resp.status_code == 200 and resp.json()["data"]["delegation_staking"]["staking_tx_hash_hex"] == h


def test_get_delegation_unknown_is_404(client):
    resp = client.get("/v2/delegation", params={"staking_tx_hash_hex": txid("nobody")})
    assert resp.status_code == 404
    assert resp.json() == {"errorCode": "NOT_FOUND", "message": f"staking delegation {txid('nobody')} not found"}


@pytest.mark.parametrize(
    "value,needle",
    [("", "expected 64 hex characters"), ("zz" * 32, "not hex"), ("ab" * 31, "got 62"), ("ab" * 33, "got 66"),
     ("abc", "odd number of hex characters"), ("0x" + "ab" * 31, "not hex")],
)
def test_get_delegation_bad_hash(client, value, needle):
    assert_bad_request(client.get("/v2/delegation", params={"staking_tx_hash_hex": value}), "staking_tx_hash_hex", needle)


def test_get_delegation_missing_hash(client):
    assert_bad_request(client.get("/v2/delegation"), "staking_tx_hash_hex is required")


def test_list_delegations_of_staker_sorted_with_states(client):
    resp = client.get("/v2/delegations", params={"staker_pk_hex": STAKER_A})
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"data", "pagination"}
    assert body["pagination"] == {"next_key": ""}
    hashes = [d["delegation_staking"]["staking_tx_hash_hex"] for d in body["data"]]
    assert hashes == sorted(r.staking_tx_hash_hex for r in A_RECORDS.values())
    assert all(d["staker_btc_pk_hex"] == STAKER_A for d in body["data"])
    assert sorted(d["state"] for d in body["data"]) == sorted(
        ["ACTIVE", "ACTIVE", "PENDING", "VERIFIED", "UNBONDING", "UNBONDING", "WITHDRAWABLE", "WITHDRAWABLE",
         "WITHDRAWN", "SLASHED"])


def test_list_delegations_accepts_compressed_key(client):
    resp = client.get("/v2/delegations", params={"staker_pk_hex": compressed("staker-a")})
    assert resp.status_code == 200 and len(resp.json()["data"]) == len(A_RECORDS)


def test_list_delegations_unknown_staker_is_empty(client):
    resp = client.get("/v2/delegations", params={"staker_pk_hex": STAKER_C})
    assert resp.json() == {"data": [], "pagination": {"next_key": ""}}


def test_pagination_walks_all_pages_without_gaps_or_repeats(client):
    seen: list[str] = []
    key = ""
    pages = 0
    for _ in range(10):  # bounded: 25 records in pages of 10
        params = {"staker_pk_hex": STAKER_B, "limit": 10}
        if key:
            params["pagination_key"] = key
        body = client.get("/v2/delegations", params=params).json()
        pages += 1
        seen += [d["delegation_staking"]["staking_tx_hash_hex"] for d in body["data"]]
        key = body["pagination"]["next_key"]
        if not key:
            break
        assert len(body["data"]) == 10
    else:
        pytest.fail("pagination did not end")
    assert pages == 3
    assert seen == sorted(r.staking_tx_hash_hex for r in B_RECORDS)


def test_exact_multiple_of_page_size_has_no_empty_trailing_page(client):
    body = client.get("/v2/delegations", params={"staker_pk_hex": STAKER_B, "limit": 25}).json()
    assert len(body["data"]) == 25 and body["pagination"]["next_key"] == ""


def test_pagination_key_is_opaque_and_stable_under_inserts(client, source):
    first = client.get("/v2/delegations", params={"staker_pk_hex": STAKER_B, "limit": 5}).json()
    key = first["pagination"]["next_key"]
    assert key == encode_pagination_key(first["data"][-1]["delegation_staking"]["staking_tx_hash_hex"])
    assert all(c.isalnum() or c in "-_" for c in key)
    # a new delegation sorting before the cursor does not shift the next page
    from api_fixtures import delegation

    new = delegation("b-new", STAKER_B, FP_ALPHA, 123_000, start_height=990)
    source.put_delegation(new)
    second = client.get("/v2/delegations", params={"staker_pk_hex": STAKER_B, "limit": 5, "pagination_key": key}).json()
    expected = sorted([r.staking_tx_hash_hex for r in B_RECORDS] + [new.staking_tx_hash_hex])
    cursor = first["data"][-1]["delegation_staking"]["staking_tx_hash_hex"]
    after = [h for h in expected if h > cursor][:5]
    assert [d["delegation_staking"]["staking_tx_hash_hex"] for d in second["data"]] == after


def test_state_filter(client):
    body = client.get("/v2/delegations", params={"staker_pk_hex": STAKER_A, "state": "ACTIVE"}).json()
    assert {d["delegation_staking"]["staking_tx_hash_hex"] for d in body["data"]} == {
        A_RECORDS["ACTIVE"].staking_tx_hash_hex, A_RECORDS["ACTIVE2"].staking_tx_hash_hex}
    body = client.get("/v2/delegations", params=[("staker_pk_hex", STAKER_A), ("state", "withdrawable"),
                                                 ("state", "Slashed")]).json()
    assert sorted(d["state"] for d in body["data"]) == ["SLASHED", "WITHDRAWABLE", "WITHDRAWABLE"]


def test_state_filter_with_pagination(client):
    keys, got = "", []
    for _ in range(10):  # bounded
        params = {"staker_pk_hex": STAKER_A, "state": "UNBONDING", "limit": 1}
        if keys:
            params["pagination_key"] = keys
        body = client.get("/v2/delegations", params=params).json()
        got += [d["state"] for d in body["data"]]
        keys = body["pagination"]["next_key"]
        if not keys:
            break
    else:
        pytest.fail("pagination did not end")
    assert got == ["UNBONDING", "UNBONDING"]


@pytest.mark.parametrize(
    "params,needles",
    [
        ({}, ["staker_pk_hex is required"]),
        ({"staker_pk_hex": "xyz"}, ["staker_pk_hex", "not hex"]),
        ({"staker_pk_hex": "ab" * 31}, ["staker_pk_hex", "got 62"]),
        ({"staker_pk_hex": "04" + "ab" * 32}, ["staker_pk_hex", "02 or 03"]),
        ({"staker_pk_hex": "ff" * 32}, ["staker_pk_hex", "not a valid secp256k1 public key"]),
        ({"staker_pk_hex": STAKER_A, "state": "EXPIRED"}, ["invalid state", "ACTIVE"]),
        ({"staker_pk_hex": STAKER_A, "limit": 0}, ["invalid limit", "greater than or equal to 1"]),
        ({"staker_pk_hex": STAKER_A, "limit": 101}, ["invalid limit", "less than or equal to 100"]),
        ({"staker_pk_hex": STAKER_A, "limit": "ten"}, ["invalid limit"]),
        ({"staker_pk_hex": STAKER_A, "pagination_key": "not base64!"}, ["invalid pagination_key"]),
        ({"staker_pk_hex": STAKER_A, "pagination_key": "AAAA"}, ["invalid pagination_key", "wrong length"]),
    ],
)
def test_list_delegations_bad_input(client, params, needles):
    assert_bad_request(client.get("/v2/delegations", params=params), *needles)
