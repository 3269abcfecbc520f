"""Network info, params, health, OpenAPI docs, error envelope, serving on 127.0.0.1."""

from __future__ import annotations

import httpx
import pytest

from api import HOST, BackgroundServer, create_app
from api.source import DataSourceError
from api_fixtures import COVENANTS, make_source
from conftest import TestClient


def test_network_info(client):
    resp = client.get("/v2/network-info")
    assert resp.status_code == 200
    d = resp.json()["data"]
    assert d["staking_status"] == {"is_staking_open": True}
    assert d["btc_tip_height"] == 1000
    assert [p["version"] for p in d["params"]["bbn"]] == [0, 1]
    v0 = d["params"]["bbn"][0]
    assert v0["covenant_pks"] == list(COVENANTS)
    assert (v0["covenant_quorum"], v0["unbonding_time_blocks"], v0["unbonding_fee_sat"]) == (2, 20, 1000)
    assert (v0["slashing_rate"], v0["btc_activation_height"], v0["tag"]) == ("0.1", 100, "62746d31")
    assert d["params"]["btc"] == [{"version": 0, "btc_confirmation_depth": 6}, {"version": 1, "btc_confirmation_depth": 6}]


def test_staking_closed_before_activation_height(client, source):
    source.btc_tip = 50
    assert client.get("/v2/network-info").json()["data"]["staking_status"]["is_staking_open"] is False


def test_params(client):
    d = client.get("/v2/params").json()["data"]
    assert set(d) == {"bbn", "btc"} and len(d["bbn"]) == 2


def test_healthcheck(client):
    assert client.get("/healthcheck").json() == {"data": {"status": "ok", "btc_tip_height": 1000}}


class BrokenSource:
    """A source whose chain is down."""

    def __getattr__(self, name):
        def fail(*a, **k):
            raise DataSourceError("connection refused")
        return fail


@pytest.mark.parametrize("path", ["/healthcheck", "/v2/stats", "/v2/finality-providers", "/v2/network-info"])
def test_chain_down_gives_503_with_error_body(path):
    resp = TestClient(create_app(BrokenSource())).get(path)
    assert resp.status_code == 503
    assert resp.json() == {"errorCode": "SERVICE_UNAVAILABLE", "message": "chain query failed: connection refused"}


def test_unknown_route_and_method_use_error_body(client):
    assert client.get("/v2/nope").json() == {"errorCode": "NOT_FOUND", "message": "Not Found"}
    resp = client.post("/v2/stats")
    assert resp.status_code == 405 and resp.json()["errorCode"] == "METHOD_NOT_ALLOWED"


def test_openapi_documents_every_route(client):
    spec = client.get("/openapi.json").json()
    routes = {
        "/v2/delegation", "/v2/delegations", "/v2/finality-providers", "/v2/stats", "/v2/staker/stats",
        "/v2/network-info", "/v2/params", "/healthcheck",
    }
    assert routes <= set(spec["paths"])
    for path in routes:
        op = spec["paths"][path]["get"]
        assert op["summary"] and op["description"] and op["tags"], path
        assert "200" in op["responses"]
    ops = spec["paths"]["/v2/delegations"]["get"]
    params = {p["name"]: p for p in ops["parameters"]}
    assert params["staker_pk_hex"]["required"] is True
    assert params["staker_pk_hex"]["schema"]["pattern"] == "^(0[23])?[0-9a-fA-F]{64}$"
    assert params["limit"]["schema"]["maximum"] == 100 and params["limit"]["schema"]["minimum"] == 1
    assert params["state"]["schema"]["anyOf"][0]["items"] == {"$ref": "#/components/schemas/DelegationState"}
    assert spec["components"]["schemas"]["DelegationState"]["enum"] == [
        "PENDING", "VERIFIED", "ACTIVE", "UNBONDING", "WITHDRAWABLE", "WITHDRAWN", "SLASHED", "REORGED"]
    assert "400" in ops["responses"]
    err = spec["components"]["schemas"]["ErrorResponse"]
    assert set(err["properties"]) == {"errorCode", "message"}
    deleg = spec["components"]["schemas"]["DelegationPublic"]
    assert deleg["properties"]["staker_btc_pk_hex"]["description"]
    assert deleg["properties"]["staker_btc_pk_hex"]["examples"]
    assert "ACTIVE` →" in spec["info"]["description"]
    assert client.get("/docs").status_code == 200


def test_background_server_binds_loopback_only():
    with BackgroundServer(make_source()) as server:
        assert server.url.startswith(f"http://{HOST}:") and HOST == "127.0.0.1"
        resp = httpx.get(f"{server.url}/v2/stats", timeout=5)
        assert resp.status_code == 200 and resp.json()["data"]["active_delegations"] == 27
        sock = server._server.servers[0].sockets[0].getsockname()
        assert sock[0] == "127.0.0.1"
