"""``api.chain_source`` mapping rules on registry-shaped JSON (``docs/CHAIN_MESSAGES.md``), and how
query failures surface through the API: not found -> 404, malformed reply / chain error -> 503."""

from __future__ import annotations

import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from api import create_app
from api.chain_source import RegistrySource, ReplyError, delegation_from_json, params_from_json
from api.server import ContractQueryError
from api_fixtures import FP_ALPHA, STAKER_A, txid

REG, LC = "bbn1registry", "bbn1lightclient"


def chain_delegation(label: str, **kw) -> dict:
    """A delegation object with the registry's field names."""
    d = {
        "staking_tx_hash": txid(label), "staker_btc_pk": STAKER_A, "fp_btc_pk_list": [FP_ALPHA],
        "staking_time": 500, "staking_value": 100_000, "staking_output_index": 0, "staking_tx": "02000000",
        "start_height": 110, "end_height": 610, "unbonding_time": 20, "unbonding_tx": "0200",
        "has_covenant_quorum": True, "status": "ACTIVE", "unbonding_height": None, "withdrawn_height": None,
        "slashed": False, "params_version": 0, "created_height": 7,
    }
    d.update(kw)
    return d


class FakeRegistry:
    """Answers smart queries from a list of delegation objects, paginating like the registry."""

    def __init__(self, delegations: list[dict], tip: int = 200) -> None:
        self.delegations = sorted(delegations, key=lambda d: d["staking_tx_hash"])
        self.tip = tip
        self.calls: list[dict] = []

    def __call__(self, contract: str, msg: dict):
        self.calls.append(msg)
        (name, body), = msg.items()
        if contract == LC and name == "tip":
            return {"height": self.tip, "hash": "00" * 32, "work": "1"}
        if name == "delegation":
            for d in self.delegations:
                if d["staking_tx_hash"] == body["staking_tx_hash"]:
                    return {"delegation": d}
            raise ContractQueryError(500, f"btc_staking: delegation {body['staking_tx_hash']} not found")
        if name == "delegations":
            rows = [d for d in self.delegations if body.get("staker_pk") in (None, d["staker_btc_pk"])
                    and d["staking_tx_hash"] > body.get("start_after", "")]
            page = rows[: body["limit"]]
            more = len(rows) > body["limit"]
            return {"delegations": page, "next_key": page[-1]["staking_tx_hash"] if more else None}
        if name == "finality_providers":
            return {"finality_providers": [{"btc_pk": FP_ALPHA, "addr": "bbn1x", "description": {"moniker": "a"},
                                            "commission": "0.05", "validator": "v", "slashed_height": None,
                                            "active_sat": 0}]}
        if name == "params":
            return {"params_versions": []}
        raise AssertionError(msg)


def test_delegation_mapping():
    rec = delegation_from_json(chain_delegation("x"))
    assert rec.staking_tx_hash_hex == txid("x") and rec.staker_pk_hex == STAKER_A
    assert rec.fp_pks_hex == (FP_ALPHA,) and rec.staking_amount == 100_000
    assert (rec.start_height, rec.end_height, rec.unbonding_height, rec.cosmos_height) == (110, 610, None, 7)
    assert rec.has_covenant_quorum and not rec.slashed and not rec.expired and rec.chain_status == "ACTIVE"
    assert delegation_from_json(chain_delegation("x", status="EXPIRED")).expired
    assert delegation_from_json(chain_delegation("x", status="SLASHED", slashed=False)).slashed
    pending = delegation_from_json(chain_delegation("x", start_height=None, end_height=None,
                                                    has_covenant_quorum=False, status="PENDING"))
    assert pending.start_height is None and pending.end_height is None and not pending.has_covenant_quorum


@pytest.mark.parametrize("missing", ["staking_tx_hash", "staker_btc_pk", "fp_btc_pk_list", "staking_time"])
def test_delegation_missing_field_is_a_reply_error(missing):
    d = chain_delegation("x")
    del d[missing]
    with pytest.raises(ReplyError, match=f"no '{missing}' field"):
        delegation_from_json(d)


def test_params_missing_field_is_a_reply_error():
    with pytest.raises(ReplyError, match="no 'covenant_pks' field"):
        params_from_json({"version": 0})


def test_pagination_followed_to_the_end():
    fake = FakeRegistry([chain_delegation(str(i)) for i in range(7)])
    src = RegistrySource(fake, REG, LC, page_limit=3)
    assert [r.staking_tx_hash_hex for r in src.list_delegations(STAKER_A)] == sorted(txid(str(i)) for i in range(7))
    assert sum(1 for c in fake.calls if "delegations" in c) == 3


def test_pagination_loop_is_refused():
    def looping(contract, msg):
        return {"delegations": [chain_delegation("a")], "next_key": "same"}

    with pytest.raises(ReplyError, match="pagination loops"):
        RegistrySource(looping, REG, LC).list_delegations()


def test_not_found_vs_chain_failure_through_the_api():
    fake = FakeRegistry([chain_delegation("x")])
    client = TestClient(create_app(RegistrySource(fake, REG, LC)))
    assert client.get("/v2/delegation", params={"staking_tx_hash_hex": txid("x")}).json()["data"]["state"] == "ACTIVE"
    resp = client.get("/v2/delegation", params={"staking_tx_hash_hex": "ab" * 32})
    assert resp.status_code == 404

    def broken(contract, msg):
        raise ContractQueryError(500, "btc_staking: store corrupted")

    client = TestClient(create_app(RegistrySource(broken, REG, LC)))
    resp = client.get("/v2/delegation", params={"staking_tx_hash_hex": "ab" * 32})
    assert resp.status_code == 503 and "store corrupted" in resp.json()["message"]


def test_malformed_reply_is_503_not_500():
    fake = FakeRegistry([{k: v for k, v in chain_delegation("x").items() if k != "staking_time"}])
    client = TestClient(create_app(RegistrySource(fake, REG, LC)))
    resp = client.get("/v2/stats")
    assert resp.status_code == 503
    assert resp.json() == {"errorCode": "SERVICE_UNAVAILABLE",
                           "message": "chain query failed: delegation reply has no 'staking_time' field"}
