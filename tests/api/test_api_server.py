"""``api.server``: URL handling, loopback-only binding, chain-down behaviour, OpenAPI completeness."""

from __future__ import annotations

import socket
import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from btcmesh_testkit.net import closed_port

from api.server import (
    ChainUnreachableError,
    RestSmartQuery,
    app_for_url,
    check_loopback,
    default_addresses,
    normalize_rest_url,
    uvicorn_config,
)
from cosmos_chain.modules.base import module_address

pytestmark = pytest.mark.timeout(60)


def test_default_addresses_are_the_module_addresses():
    assert default_addresses() == (module_address("btc_staking"), module_address("btc_light_client"))
    reg, lc = default_addresses()
    assert reg.startswith("bbn1") and lc.startswith("bbn1") and reg != lc


@pytest.mark.parametrize("url,want", [
    ("http://127.0.0.1:1317", "http://127.0.0.1:1317"),
    ("rest+http://127.0.0.1:1317/", "http://127.0.0.1:1317"),
    (" https://localhost:1317 ", "https://localhost:1317"),
])
def test_normalize_rest_url(url, want):
    assert normalize_rest_url(url) == want


@pytest.mark.parametrize("url", ["127.0.0.1:1317", "grpc+http://127.0.0.1:9090", "ftp://x", "http://", ""])
def test_normalize_rest_url_rejects_garbage(url):
    with pytest.raises(ValueError, match="chain REST url"):
        normalize_rest_url(url)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_hosts_accepted(host):
    assert check_loopback(host) == host


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com", ""])
def test_non_loopback_hosts_refused(host):
    with pytest.raises(ValueError, match="only binds loopback"):
        check_loopback(host)
    with pytest.raises(ValueError, match="only binds loopback"):
        uvicorn_config("http://127.0.0.1:1317", host=host, port=0)


def test_uvicorn_config_binds_loopback():
    cfg = uvicorn_config("rest+http://127.0.0.1:1317", port=0)
    assert cfg.host == "127.0.0.1" and cfg.port == 0


def test_unreachable_chain_query_raises_typed_error():
    port = closed_port()
    q = RestSmartQuery(f"http://127.0.0.1:{port}", timeout=2)
    try:
        with pytest.raises(ChainUnreachableError, match=f"chain unreachable at http://127.0.0.1:{port}"):
            q(default_addresses()[1], {"tip": {}})
    finally:
        q.close()


@pytest.mark.parametrize("path", [
    "/healthcheck", "/v2/stats", "/v2/finality-providers", "/v2/network-info", "/v2/params",
    f"/v2/delegation?staking_tx_hash_hex={'ab' * 32}",
    "/v2/delegations?staker_pk_hex=79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
])
def test_unreachable_chain_gives_503_naming_the_chain(path):
    port = closed_port()
    client = TestClient(app_for_url(f"http://127.0.0.1:{port}", timeout=2))
    resp = client.get(path)
    assert resp.status_code == 503
    body = resp.json()
    assert body["errorCode"] == "SERVICE_UNAVAILABLE"
    assert f"chain unreachable at http://127.0.0.1:{port}" in body["message"]


def test_bad_parameters_rejected_before_the_chain_is_asked():
    """Validation needs no chain: 400s even when the chain is down."""
    client = TestClient(app_for_url(f"http://127.0.0.1:{closed_port()}", timeout=2))
    resp = client.get("/v2/delegation", params={"staking_tx_hash_hex": "zz" * 32})
    assert resp.status_code == 400 and "not hex" in resp.json()["message"]
    resp = client.get("/v2/delegations", params={"staker_pk_hex": "ab" * 5})
    assert resp.status_code == 400 and "expected 64 or 66 hex characters" in resp.json()["message"]


def test_openapi_every_route_fully_documented():
    """Every operation: summary, description, tags, a 200 response model and documented error responses."""
    client = TestClient(app_for_url(f"http://127.0.0.1:{closed_port()}", timeout=2))
    spec = client.get("/openapi.json").json()
    ops = [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items()]
    assert len(ops) >= 8
    for path, method, op in ops:
        assert method == "get", path
        assert op.get("summary") and op.get("description") and op.get("tags"), path
        ok = op["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok.get("$ref", "").startswith("#/components/schemas/"), path
        err = op["responses"]["503"]["content"]["application/json"]["schema"]
        assert err == {"$ref": "#/components/schemas/ErrorResponse"}, path
        if op.get("parameters"):
            assert "400" in op["responses"], path
            for p in op["parameters"]:
                assert p.get("description"), (path, p["name"])
    assert "404" in spec["paths"]["/v2/delegation"]["get"]["responses"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text.lower() and "/openapi.json" in docs.text
    # no page that needs the internet: FastAPI's ReDoc (CDN script) is not served, /docs is local
    assert client.get("/redoc").status_code == 404


def test_hung_chain_times_out_with_503():
    """A chain that accepts connections but never answers: bounded by the query timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        client = TestClient(app_for_url(f"http://127.0.0.1:{port}", timeout=0.5))
        resp = client.get("/healthcheck")
    assert resp.status_code == 503
    assert f"chain unreachable at http://127.0.0.1:{port}" in resp.json()["message"]
    assert "timed out" in resp.json()["message"].lower()


def test_docs_load_swagger_ui_from_the_service_only():
    """/docs works offline: every asset it references is a local URL the API itself answers."""
    import re

    from api.docs import SWAGGER_UI_DIR, SWAGGER_UI_VERSION

    client = TestClient(app_for_url(f"http://127.0.0.1:{closed_port()}", timeout=2))
    html = client.get("/docs").text
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'""", html)
    refs = [a or b for a, b in refs]
    assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css", "/openapi.json"} <= set(refs), refs
    assert not re.search(r"https?://", html), "the /docs page names an outside URL"
    for ref in refs:
        resp = client.get(ref)
        assert resp.status_code == 200 and resp.content, ref
    assert "validatorUrl" in html and '"validatorUrl": null' in html  # no online validator badge
    assert client.get("/docs/oauth2-redirect").status_code == 200
    assert "Apache License" in (SWAGGER_UI_DIR / "LICENSE").read_text()
    assert f"Swagger UI {SWAGGER_UI_VERSION}" in (SWAGGER_UI_DIR / "VERSION.md").read_text()
    css = (SWAGGER_UI_DIR / "swagger-ui.css").read_text()
    assert not re.search(r"""url\((?!\s*["']?data:)""", css)  # the stylesheet fetches nothing else
