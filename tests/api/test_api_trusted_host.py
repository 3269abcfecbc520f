"""DNS-rebinding guard (issue 12): a served API answers only Host headers it trusts (127.0.0.1,
localhost, configured names) and 400 to any other, e.g. a page on evil.example rebound to 127.0.0.1."""

from __future__ import annotations

import http.client

import pytest

from api.app import BackgroundServer, create_app, trusted_hosts

pytestmark = pytest.mark.timeout(60)


def _status(port: int, host: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/v2/network-info", headers={"Host": host})
        return conn.getresponse().status
    finally:
        conn.close()


def test_served_api_checks_the_host_header(source, monkeypatch) -> None:
    monkeypatch.setenv("BTCMESH_API_TRUSTED_HOSTS", "staking.internal, other.internal")
    with BackgroundServer(create_app(source), extra_hosts=["api.devnet"]) as server:
        for host in (f"127.0.0.1:{server.port}", "localhost", f"localhost:{server.port}", "api.devnet",
                     "staking.internal", "other.internal:8000"):
            assert _status(server.port, host) == 200, host
        for host in ("evil.example", f"evil.example:{server.port}", "127.0.0.1.evil.example", "attacker"):
            assert _status(server.port, host) == 400, host


def test_trusted_hosts_defaults(monkeypatch) -> None:
    monkeypatch.delenv("BTCMESH_API_TRUSTED_HOSTS", raising=False)
    assert trusted_hosts() == ["127.0.0.1", "localhost"]
    assert trusted_hosts(["x.dev", "localhost"]) == ["127.0.0.1", "localhost", "x.dev"]
